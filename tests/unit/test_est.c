/* EST's wire (enroll/est.h): a bad-input table for each reader (bodies,
 * paths, Basic credentials), each refused with its typed reason; what is
 * accepted round-trips; certs-only and CsrAttrs are read back with
 * OpenSSL's own decoders. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <openssl/asn1.h>
#include <openssl/pem.h>
#include <openssl/pkcs7.h>
#include <openssl/x509.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "enroll/est.h"

/* base64 of DER 30 03 02 01 01 (SEQUENCE { INTEGER 1 }) */
#define SEQ_B64 "MAMCAQE="

static void test_body_bad_inputs(void **state)
{
    (void)state;
    static const struct {
        const char *body;
        enr_est_reason want;
        const char *says;
    } CASES[] = {
        {"", ENR_EST_BAD_BODY, "empty"},
        {"   \r\n", ENR_EST_BAD_BODY, "empty"},
        {"MAMCAQ", ENR_EST_BAD_BODY, "cut short"},
        {"MAMC*QE=", ENR_EST_BAD_BODY, "byte 4"},
        {"MAMCAQ=E", ENR_EST_BAD_BODY, "byte 7"},
        {"MA=CAQE=", ENR_EST_BAD_BODY, "byte 3"},
        {"MAMCAQE===", ENR_EST_BAD_BODY, "byte 9"},
        {"-----BEGIN CERTIFICATE REQUEST-----", ENR_EST_BAD_BODY, "byte 0"},
        {"MAMCAQEA", ENR_EST_BAD_BODY, "follow the DER"},     /* a byte after the value */
        {"MAQCAQE=", ENR_EST_BAD_BODY, "DER"},                /* length 4, 3 bytes there */
        {"MIAC", ENR_EST_BAD_BODY, "DER"},                    /* indefinite length */
        {"AAAA", ENR_EST_BAD_BODY, "DER"},
    };
    for (size_t i = 0; i < sizeof CASES / sizeof CASES[0]; i++) {
        unsigned char *der = (unsigned char *)"x";
        size_t len = 99;
        enr_error err = {0};
        enr_est_reason why = enr_est_body_decode(CASES[i].body, strlen(CASES[i].body), &der, &len, &err);
        if (why != CASES[i].want || strstr(err.message, CASES[i].says) == NULL)
            fail_msg("body %zu '%s': reason %d, message '%s'", i, CASES[i].body, (int)why, err.message);
        assert_null(der);
        assert_int_equal(len, 0);
    }
    size_t big = ENR_EST_BODY_MAX + 1;
    char *huge = malloc(big);
    assert_non_null(huge);
    memset(huge, 'A', big);
    unsigned char *der = NULL;
    size_t len = 0;
    enr_error err;
    assert_int_equal(enr_est_body_decode(huge, big, &der, &len, &err), ENR_EST_BODY_TOO_LARGE);
    free(huge);
}

static void test_body_accepts_white_space(void **state)
{
    (void)state;
    static const char *const GOOD[] = {SEQ_B64, "MAMC\r\nAQE=\r\n", " M A M C A Q E = ", "MAMCAQE=\n\n"};
    for (size_t i = 0; i < sizeof GOOD / sizeof GOOD[0]; i++) {
        unsigned char *der = NULL;
        size_t len = 0;
        enr_error err;
        assert_int_equal(enr_est_body_decode(GOOD[i], strlen(GOOD[i]), &der, &len, &err), ENR_EST_OK);
        assert_int_equal(len, 5);
        assert_memory_equal(der, "\x30\x03\x02\x01\x01", 5);
        char *lines = NULL;
        size_t lines_len = 0;
        assert_int_equal(enr_est_base64_lines(der, len, &lines, &lines_len, &err), ENR_OK);
        assert_string_equal(lines, SEQ_B64 "\r\n");
        free(lines);
        free(der);
    }
}

static void test_paths(void **state)
{
    (void)state;
    static const struct {
        const char *path;
        enr_est_reason want;
        enr_est_operation op;
        const char *label;
    } CASES[] = {
        {"/.well-known/est/cacerts", ENR_EST_OK, ENR_EST_CACERTS, ""},
        {"/.well-known/est/simpleenroll", ENR_EST_OK, ENR_EST_SIMPLEENROLL, ""},
        {"/.well-known/est/fleet-a/simplereenroll", ENR_EST_OK, ENR_EST_SIMPLEREENROLL, "fleet-a"},
        {"/.well-known/est/g.1:x_y/csrattrs", ENR_EST_OK, ENR_EST_CSRATTRS, "g.1:x_y"},
        {"/.well-known/est/serverkeygen", ENR_EST_OK, ENR_EST_SERVERKEYGEN, ""},
        {"/.well-known/est", ENR_EST_UNKNOWN_OPERATION, 0, ""},
        {"/.well-known/est/", ENR_EST_UNKNOWN_OPERATION, 0, ""},
        {"/.well-known/est/fullcmc", ENR_EST_UNKNOWN_OPERATION, 0, ""},
        {"/.well-known/est/CACERTS", ENR_EST_UNKNOWN_OPERATION, 0, ""},
        {"/.well-known/est/a/b/cacerts", ENR_EST_UNKNOWN_OPERATION, 0, ""},
        {"/.well-known/est//cacerts", ENR_EST_BAD_LABEL, 0, ""},
        {"/.well-known/est/a%20b/cacerts", ENR_EST_BAD_LABEL, 0, ""},
        {"/.well-known/est/../cacerts", ENR_EST_OK, ENR_EST_CACERTS, ".."},
        {"/.well-known/estx/cacerts", ENR_EST_NOT_EST, 0, ""},
        {"/ocsp", ENR_EST_NOT_EST, 0, ""},
        {NULL, ENR_EST_NOT_EST, 0, ""},
    };
    for (size_t i = 0; i < sizeof CASES / sizeof CASES[0]; i++) {
        enr_est_path p;
        enr_est_reason why = enr_est_path_parse(CASES[i].path, &p);
        if (why != CASES[i].want)
            fail_msg("path %zu '%s': reason %d", i, CASES[i].path ? CASES[i].path : "(null)", (int)why);
        if (why == ENR_EST_OK) {
            assert_int_equal(p.operation, CASES[i].op);
            assert_string_equal(p.label, CASES[i].label);
        }
    }
    char long_label[300];
    snprintf(long_label, sizeof long_label, "/.well-known/est/%0129d/cacerts", 0);
    enr_est_path p;
    assert_int_equal(enr_est_path_parse(long_label, &p), ENR_EST_BAD_LABEL);
}

static void test_basic(void **state)
{
    (void)state;
    char buf[128];
    const char *user, *password;
    assert_true(enr_est_basic_parse("Basic ZGV2LTE6czpl", buf, sizeof buf, &user, &password)); /* dev-1:s:e */
    assert_string_equal(user, "dev-1");
    assert_string_equal(password, "s:e");
    assert_true(enr_est_basic_parse("basic  ZGV2LTE6 ", buf, sizeof buf, &user, &password)); /* dev-1: */
    assert_string_equal(password, "");
    static const char *const BAD[] = {
        NULL, "", "Bearer abc", "Basic", "Basic ", "Basic ZGV2LTE",    /* cut short */
        "Basic ZGV2LTE=", "Basic Z*V2", "Basic ZG=2LTE6", "Basic ZGV2LTE6czpl=",
        "Basic ZGV2",                                                  /* "dev": no colon */
        "Basic AGE6Yg==",                                              /* NUL inside */
    };
    for (size_t i = 0; i < sizeof BAD / sizeof BAD[0]; i++)
        if (enr_est_basic_parse(BAD[i], buf, sizeof buf, &user, &password))
            fail_msg("Basic %zu '%s' accepted", i, BAD[i] ? BAD[i] : "(null)");
    /* Credentials longer than the buffer are refused, not cut. */
    char big[400] = "Basic ";
    memset(big + 6, 'Q', 200);
    big[206] = '\0';
    assert_false(enr_est_basic_parse(big, buf, sizeof buf, &user, &password));
}

static void test_certs_only(void **state)
{
    (void)state;
    char dir[] = "/tmp/enroll-test-est-XXXXXX", cmd[512], path[128];
    assert_non_null(mkdtemp(dir));
    snprintf(path, sizeof path, "%s/c.pem", dir);
    snprintf(cmd, sizeof cmd,
             "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout /dev/null -subj /CN=t "
             "-days 1 -out %s 2>/dev/null", path);
    assert_int_equal(system(cmd), 0);
    FILE *f = fopen(path, "r");
    assert_non_null(f);
    X509 *x = PEM_read_X509(f, NULL, NULL, NULL);
    fclose(f);
    unlink(path);
    rmdir(dir);
    assert_non_null(x);
    unsigned char *der = NULL;
    size_t len = 0;
    enr_error err;
    STACK_OF(X509) *certs = sk_X509_new_null();
    sk_X509_push(certs, x);
    assert_int_equal(enr_est_certs_only(certs, &der, &len, &err), ENR_OK);
    const unsigned char *p = der;
    PKCS7 *p7 = d2i_PKCS7(NULL, &p, (long)len);
    assert_non_null(p7);
    assert_true(PKCS7_type_is_signed(p7));
    assert_int_equal(sk_X509_num(p7->d.sign->cert), 1);
    assert_int_equal(X509_cmp(sk_X509_value(p7->d.sign->cert, 0), x), 0);
    assert_int_equal(sk_PKCS7_SIGNER_INFO_num(p7->d.sign->signer_info), 0);
    /* Degenerate: id-data named, no eContent at all. */
    assert_int_equal(OBJ_obj2nid(p7->d.sign->contents->type), NID_pkcs7_data);
    assert_null(p7->d.sign->contents->d.ptr);
    PKCS7_free(p7);
    OPENSSL_free(der);
    sk_X509_pop_free(certs, X509_free);
}

static bool contains_bytes(const unsigned char *hay, size_t len, const char *needle, size_t n)
{
    for (size_t i = 0; i + n <= len; i++)
        if (memcmp(hay + i, needle, n) == 0)
            return true;
    return false;
}

static void test_csrattrs(void **state)
{
    (void)state;
    unsigned char *der = NULL;
    size_t len = 0;
    enr_error err;
    assert_int_equal(enr_est_csrattrs("ec-p384,rsa-2048", &der, &len, &err), ENR_OK);
    const unsigned char *p = der;
    ASN1_TYPE *t = d2i_ASN1_TYPE(NULL, &p, (long)len);
    assert_non_null(t);
    assert_int_equal(ASN1_TYPE_get(t), V_ASN1_SEQUENCE);
    assert_int_equal((size_t)(p - der), len);
    /* The curve's OID (secp384r1: 1.3.132.0.34 = 06 05 2b 81 04 00 22) and
     * ecdsa-with-SHA384 (1.2.840.10045.4.3.3) are in it. */
    assert_true(contains_bytes(der, len, "\x06\x05\x2b\x81\x04\x00\x22", 7));
    assert_true(contains_bytes(der, len, "\x06\x08\x2a\x86\x48\xce\x3d\x04\x03\x03", 10));
    ASN1_TYPE_free(t);
    OPENSSL_free(der);
    assert_int_not_equal(enr_est_csrattrs("ec-p256,dsa-1024", &der, &len, &err), ENR_OK);
}

static void test_secret_hash(void **state)
{
    (void)state;
    char hex[ENR_STORE_SHA256_HEX + 1];
    enr_est_secret_hash("abc", 3, hex);
    assert_string_equal(hex, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    char a[64], b[64];
    enr_error err;
    assert_int_equal(enr_est_secret_new(a, &err), ENR_OK);
    assert_int_equal(enr_est_secret_new(b, &err), ENR_OK);
    assert_int_equal(strlen(a), 44);
    assert_string_not_equal(a, b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_body_bad_inputs), cmocka_unit_test(test_body_accepts_white_space),
        cmocka_unit_test(test_paths),           cmocka_unit_test(test_basic),
        cmocka_unit_test(test_certs_only),      cmocka_unit_test(test_csrattrs),
        cmocka_unit_test(test_secret_hash),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
