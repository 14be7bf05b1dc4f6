/* The certificate reader as `enroll cert show` and `enroll verify` use it:
 * split a bundle, parse each certificate, describe it as JSON and text, and
 * run the verifier so that its messages are built from hostile names and
 * times. The same bytes also go through the CRL reader, which shares the
 * bundle splitting, and each CRL read is described (`enroll crl show`). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "enroll/cert.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* A fixed time, so that a run does not depend on the clock. */
#define FUZZ_TIME ((time_t)1795550400) /* 2026-11-24T20:00:00Z */

static void describe_each(STACK_OF(X509) *certs)
{
    for (int i = 0; i < sk_X509_num(certs); i++) {
        enr_error err;
        char *text = NULL;
        if (enr_cert_describe_json(sk_X509_value(certs, i), &text, &err) == ENR_OK)
            free(text);
        if (enr_cert_describe_text(sk_X509_value(certs, i), &text, &err) == ENR_OK)
            free(text);
    }
}

/* The first certificate against the rest as roots and intermediates. */
static void verify_first(STACK_OF(X509) *certs, STACK_OF(X509_CRL) *crls)
{
    enr_verify_options opts = {
        .roots = certs, .untrusted = certs, .crls = crls, .purpose = ENR_PURPOSE_CLIENT, .at = FUZZ_TIME};
    enr_verify_result result;
    enr_error err;
    enr_code rc = enr_cert_verify(sk_X509_value(certs, 0), &opts, &result, &err);
    if (rc == ENR_E_VERIFY && (result.message[0] == '\0' || result.reason_name == NULL))
        abort(); /* a failure must always say why */
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    enr_error err;
    STACK_OF(X509) *certs = NULL;
    if (enr_cert_read_all(data, size, &certs, &err) == ENR_OK) {
        if (sk_X509_num(certs) < 1)
            abort(); /* success promises at least one */
        describe_each(certs);
        verify_first(certs, NULL);
        sk_X509_pop_free(certs, X509_free);
    } else if (err.message[0] == '\0') {
        abort();
    }
    STACK_OF(X509_CRL) *crls = NULL;
    if (enr_crl_read_all(data, size, &crls, &err) == ENR_OK) {
        for (int i = 0; i < sk_X509_CRL_num(crls); i++) {
            char *text = NULL;
            if (enr_crl_describe_json(sk_X509_CRL_value(crls, i), &text, &err) == ENR_OK)
                free(text);
            if (enr_crl_describe_text(sk_X509_CRL_value(crls, i), &text, &err) == ENR_OK)
                free(text);
        }
        sk_X509_CRL_pop_free(crls, X509_CRL_free);
    }
    return 0;
}
