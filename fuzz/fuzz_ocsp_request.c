/* An OCSP request as enrolld's /ocsp hands it to the responder: answered
 * against a scratch store that serves one CA (made once per process, its
 * key in a file), so requests naming it reach the store and the signing
 * path, and every other one the refusals. */
#include <limits.h>
#include <openssl/ocsp.h>
#include <openssl/x509.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "enroll/ca.h"
#include "enroll/ocsp.h"
#include "enroll/store.h"
#include "fuzz_scratch.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void die(const char *what, const enr_error *err)
{
    fprintf(stderr, "fuzz_ocsp_request: %s: %s\n", what, err->message);
    abort();
}

/* Its scratch directory: fuzz_scratch.h. */
static enr_ocsp_responder *responder(void)
{
    static enr_ocsp_responder *r;
    if (r != NULL)
        return r;
    char dir[96], ca_dir[128];
    fuzz_scratch_dir("ocsp", dir, sizeof dir);
    snprintf(ca_dir, sizeof ca_dir, "%s/ca", dir);
    (void)mkdir(dir, 0700);
    enr_error err;
    struct stat st;
    if (stat(ca_dir, &st) != 0) {
        enr_ca_init_options opts = {.dir = ca_dir, .subject = "/CN=Fuzz OCSP CA"};
        if (enr_ca_init(&opts, &err) != ENR_OK)
            die("no CA", &err);
    }
    enr_store *store = NULL;
    if (enr_store_open_sqlite(dir, &store, &err) != ENR_OK)
        die("no scratch store", &err);
    enr_ca *ca = NULL;
    if (enr_ca_open_public(ca_dir, &ca, &err) != ENR_OK)
        die("cannot open the CA", &err);
    enr_ca_record rec = {.role = ENR_CA_ISSUING};
    snprintf(rec.name, sizeof rec.name, "fuzz");
    snprintf(rec.key_ref, sizeof rec.key_ref, "%s", ca_dir);
    unsigned char *der = NULL;
    int len = i2d_X509(enr_ca_cert(ca), &der);
    rec.certificate = (enr_buf){der, len > 0 ? (size_t)len : 0};
    enr_code rc = enr_store_create_ca(store, &rec, NULL, &err);
    if (rc != ENR_OK && rc != ENR_E_EXISTS)
        die("cannot record the CA", &err);
    OPENSSL_free(der);
    enr_ca_free(ca);
    if (enr_ocsp_responder_new(store, &r, &err) != ENR_OK)
        die("no responder", &err);
    return r; /* the store lives as long as the process */
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    unsigned char *resp = NULL;
    size_t resp_len = 0;
    enr_ocsp_outcome outcome;
    enr_error err;
    if (enr_ocsp_answer(responder(), data, size, 0, &resp, &resp_len, &outcome, &err) == ENR_OK) {
        /* Whatever was asked, the answer is an OCSPResponse. */
        const unsigned char *p = resp;
        OCSP_RESPONSE *o = d2i_OCSP_RESPONSE(NULL, &p, (long)resp_len);
        if (o == NULL)
            abort();
        OCSP_RESPONSE_free(o);
    }
    free(resp);
    return 0;
}
