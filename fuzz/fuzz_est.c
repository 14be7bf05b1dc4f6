/* EST's readers as enrolld uses them (enroll/est.h). The first byte picks
 * one (low two bits): 0 a request body (base64 of DER, RFC 8951), 1 a
 * path, 2 an Authorization header, 3 a policy's key types for csrattrs.
 * What a reader accepts must hold up: a body written again in EST's lines
 * reads back the same DER; an accepted path names a real operation; Basic
 * credentials split at the first colon; CsrAttrs are one DER value. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>

#include "enroll/csr.h"
#include "enroll/est.h"
#include "enroll/input.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void fuzz_body(const char *body, size_t len)
{
    unsigned char *der = NULL;
    size_t der_len = 0;
    enr_error err;
    if (enr_est_body_decode(body, len, &der, &der_len, &err) != ENR_EST_OK) {
        if (der != NULL)
            abort();
        return;
    }
    char *lines = NULL;
    size_t lines_len = 0;
    unsigned char *again = NULL;
    size_t again_len = 0;
    if (der_len == 0 || enr_est_base64_lines(der, der_len, &lines, &lines_len, &err) != ENR_OK ||
        enr_est_body_decode(lines, lines_len, &again, &again_len, &err) != ENR_EST_OK || again_len != der_len ||
        memcmp(again, der, der_len) != 0)
        abort();
    enr_csr *csr = NULL;
    if (enr_csr_parse(der, der_len, &csr, &err) == ENR_OK)
        enr_csr_free(csr);
    free(again);
    free(lines);
    free(der);
}

static void fuzz_path(const char *path)
{
    enr_est_path p;
    if (enr_est_path_parse(path, &p) != ENR_EST_OK)
        return;
    if (strcmp(enr_est_operation_name(p.operation), "unknown") == 0 || strlen(p.label) > ENR_EST_LABEL_MAX ||
        strchr(p.label, '/') != NULL)
        abort();
}

static void fuzz_basic(const char *header)
{
    char buf[512];
    const char *user = NULL, *password = NULL;
    if (!enr_est_basic_parse(header, buf, sizeof buf, &user, &password))
        return;
    if (user == NULL || password == NULL || strchr(user, ':') != NULL || password != user + strlen(user) + 1)
        abort();
    OPENSSL_cleanse(buf, sizeof buf);
}

static void fuzz_key_types(const char *types)
{
    unsigned char *der = NULL;
    size_t len = 0, object = 0, bad = 0;
    enr_error err;
    if (enr_est_csrattrs(types, &der, &len, &err) != ENR_OK)
        return;
    if (enr_der_check(der, len, &object, &bad, &err) != ENR_OK || object != len)
        abort();
    OPENSSL_free(der);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    const char *rest = (const char *)data + 1;
    size_t len = size - 1;
    if ((data[0] & 3) == 0) {
        fuzz_body(rest, len);
        return 0;
    }
    char *text = malloc(len + 1); /* the other readers take C strings */
    if (text == NULL)
        return 0;
    memcpy(text, rest, len);
    text[len] = '\0';
    switch (data[0] & 3) {
    case 1: fuzz_path(text); break;
    case 2: fuzz_basic(text); break;
    default: fuzz_key_types(text); break;
    }
    free(text);
    return 0;
}
