#define _GNU_SOURCE /* memmem */
/* CSR build/parse/verify/encode through the library API, for every key type. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <openssl/x509v3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "enroll/csr.h"
#include "enroll/pubkey.h"
#include "enroll/signer.h"

static char dir[] = "/tmp/enroll-test-csr-XXXXXX";

static int setup(void **state)
{
    (void)state;
    return mkdtemp(dir) ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    return system(cmd) == 0 ? 0 : -1;
}

static enr_signer *new_signer(enr_key_type type)
{
    char path[256];
    snprintf(path, sizeof path, "%s/%s.key", dir, enr_key_type_name(type));
    enr_error err;
    assert_int_equal(enr_key_generate_file(type, path, NULL, true, &err), ENR_OK);
    enr_signer *s = NULL;
    assert_int_equal(enr_signer_open(path, NULL, NULL, &s, &err), ENR_OK);
    return s;
}

static enr_csr *build(enr_signer *s, const char *hash)
{
    enr_error err;
    enr_csr_spec *spec = enr_csr_spec_new();
    assert_int_equal(enr_csr_spec_set_subject(spec, "/O=Acme, Inc./CN=dev-001", &err), ENR_OK);
    assert_int_equal(enr_csr_spec_add_san(spec, "DNS:dev-001.example,IP:10.0.0.1", &err), ENR_OK);
    assert_int_equal(enr_csr_spec_set_key_usage(spec, "digitalSignature", &err), ENR_OK);
    assert_int_equal(enr_csr_spec_set_ext_key_usage(spec, "clientAuth", &err), ENR_OK);
    if (hash)
        assert_int_equal(enr_csr_spec_set_hash(spec, hash, &err), ENR_OK);
    enr_csr *csr = NULL;
    assert_int_equal(enr_csr_build(spec, s, &csr, &err), ENR_OK);
    enr_csr_spec_free(spec);
    return csr;
}

static void test_every_key_type_roundtrips(void **state)
{
    (void)state;
    for (int t = ENR_KEY_EC_P256; t <= ENR_KEY_ED25519; t++) {
        if (t == ENR_KEY_RSA_4096 || t == ENR_KEY_RSA_3072)
            continue; /* slow keygen; the CLI interop test covers them */
        enr_signer *s = new_signer((enr_key_type)t);
        enr_csr *csr = build(s, NULL);
        enr_error err;
        assert_int_equal(enr_csr_verify(csr, &err), ENR_OK);
        assert_true(enr_pubkey_equal(enr_csr_public_key(csr), enr_signer_public_key(s)));

        for (int f = ENR_CSR_PEM; f <= ENR_CSR_BASE64; f++) {
            unsigned char *out;
            size_t len;
            assert_int_equal(enr_csr_encode_alloc(csr, (enr_csr_format)f, &out, &len, &err), ENR_OK);
            enr_csr *back = NULL;
            assert_int_equal(enr_csr_parse(out, len, &back, &err), ENR_OK);
            assert_int_equal(enr_csr_verify(back, &err), ENR_OK);
            assert_int_equal(X509_NAME_cmp(X509_REQ_get_subject_name(enr_csr_x509_req(back)),
                                           X509_REQ_get_subject_name(enr_csr_x509_req(csr))), 0);
            enr_csr_free(back);
            free(out);
        }
        enr_csr_free(csr);
        enr_signer_free(s);
    }
}

static void test_encode_into_caller_buffer(void **state)
{
    (void)state;
    enr_signer *s = new_signer(ENR_KEY_EC_P256);
    enr_csr *csr = build(s, "sha384");
    enr_error err;
    size_t needed = 0, written = 0;
    assert_int_equal(enr_csr_encode(csr, ENR_CSR_BASE64, NULL, 0, &written, &needed, &err), ENR_E_USAGE);
    assert_true(needed > 100);
    unsigned char small[16];
    assert_int_equal(enr_csr_encode(csr, ENR_CSR_BASE64, small, sizeof small, &written, &needed, &err),
                     ENR_E_USAGE);
    assert_non_null(strstr(err.message, "too small"));
    unsigned char *buf = malloc(needed);
    assert_int_equal(enr_csr_encode(csr, ENR_CSR_BASE64, buf, needed, &written, NULL, &err), ENR_OK);
    assert_int_equal(written + 1, needed);
    assert_int_equal(buf[written], '\0');
    assert_null(strchr((char *)buf, '\n')); /* one line, as DPS wants in JSON */
    assert_null(strchr((char *)buf, '-'));
    free(buf);

    /* The DER form is the exact encoding; its signature algorithm is the requested hash. */
    assert_int_equal(enr_csr_encode(csr, ENR_CSR_DER, NULL, 0, NULL, &needed, &err), ENR_E_USAGE);
    unsigned char *der = malloc(needed);
    assert_int_equal(enr_csr_encode(csr, ENR_CSR_DER, der, needed, &written, NULL, &err), ENR_OK);
    const unsigned char *p = der;
    X509_REQ *req = d2i_X509_REQ(NULL, &p, (long)written);
    assert_non_null(req);
    assert_int_equal(X509_REQ_get_signature_nid(req), NID_ecdsa_with_SHA384);
    X509_REQ_free(req);
    free(der);
    enr_csr_free(csr);
    enr_signer_free(s);
}

static void test_tampered_request_does_not_verify(void **state)
{
    (void)state;
    enr_signer *s = new_signer(ENR_KEY_EC_P256);
    enr_csr *csr = build(s, NULL);
    enr_error err;
    unsigned char *der;
    size_t len;
    assert_int_equal(enr_csr_encode_alloc(csr, ENR_CSR_DER, &der, &len, &err), ENR_OK);
    /* Change one letter of "dev-001" inside the signed body. */
    unsigned char *hit = memmem(der, len, "dev-001", 7);
    assert_non_null(hit);
    hit[6] = '2';
    enr_csr *tampered = NULL;
    assert_int_equal(enr_csr_parse(der, len, &tampered, &err), ENR_OK);
    assert_int_equal(enr_csr_verify(tampered, &err), ENR_E_VERIFY);
    assert_non_null(strstr(err.message, "does not verify"));
    enr_csr_free(tampered);
    free(der);
    enr_csr_free(csr);
    enr_signer_free(s);
}

static void test_spec_refusals(void **state)
{
    (void)state;
    enr_error err;
    enr_csr_spec *spec = enr_csr_spec_new();
    enr_signer *s = new_signer(ENR_KEY_EC_P256);
    enr_csr *csr = NULL;
    assert_int_equal(enr_csr_build(spec, s, &csr, &err), ENR_E_USAGE);
    assert_null(csr);
    static const char *BAD_SANS[] = {"DNS:", "DNS:-bad.example", "DNS:a..b", "IP:1.2.3",
                                     "URI:no-scheme", "email:no-at", "X:y", "DNS:a b", ","};
    for (size_t i = 0; i < sizeof BAD_SANS / sizeof BAD_SANS[0]; i++)
        if (enr_csr_spec_add_san(spec, BAD_SANS[i], &err) != ENR_E_USAGE)
            fail_msg("SAN '%s' accepted", BAD_SANS[i]);
    assert_int_equal(enr_csr_spec_set_key_usage(spec, "digitalSignature,bogus", &err), ENR_E_USAGE);
    assert_int_equal(enr_csr_spec_set_ext_key_usage(spec, "nope", &err), ENR_E_USAGE);
    assert_int_equal(enr_csr_spec_set_ext_key_usage(spec, "1.3.6.1.5.5.7.3.2,serverAuth", &err), ENR_OK);
    assert_int_equal(enr_csr_spec_set_hash(spec, "md5", &err), ENR_E_USAGE);
    assert_int_equal(enr_csr_spec_set_challenge_password(spec, "", &err), ENR_E_USAGE);
    assert_int_equal(enr_csr_spec_add_dn(spec, "CN", &err), ENR_E_USAGE);
    assert_int_equal(enr_csr_spec_add_dn(spec, "CN=ok", &err), ENR_OK);
    assert_int_equal(enr_csr_build(spec, s, &csr, &err), ENR_OK);
    enr_csr_free(csr);
    enr_csr_spec_free(spec);
    enr_signer_free(s);
}

static void test_key_file_refuses_overwrite(void **state)
{
    (void)state;
    char path[256];
    snprintf(path, sizeof path, "%s/once.key", dir);
    enr_error err;
    assert_int_equal(enr_key_generate_file(ENR_KEY_EC_P256, path, "pw", false, &err), ENR_OK);
    assert_int_equal(enr_key_generate_file(ENR_KEY_EC_P256, path, NULL, false, &err), ENR_E_EXISTS);
    enr_signer *s = NULL;
    assert_int_equal(enr_signer_open(path, NULL, NULL, &s, &err), ENR_E_LOCKED);
    assert_int_equal(enr_signer_open(path, "wrong", NULL, &s, &err), ENR_E_LOCKED);
    assert_int_equal(enr_signer_open(path, "pw", NULL, &s, &err), ENR_OK);
    enr_signer_free(s);
    enr_key_type t;
    assert_int_equal(enr_key_type_parse("rsa-1024", &t, &err), ENR_E_USAGE);
}

/* Parsing imports EC keys field by field (see enr_pubkey_from_spki): an
 * off-curve point must still be refused, and other curves still parse. */
static void test_parse_checks_ec_points(void **state)
{
    (void)state;
    enr_signer *s = new_signer(ENR_KEY_EC_P256);
    enr_csr *csr = build(s, NULL);
    enr_error err;
    unsigned char *der;
    size_t len;
    assert_int_equal(enr_csr_encode_alloc(csr, ENR_CSR_DER, &der, &len, &err), ENR_OK);
    /* The uncompressed point 04||X||Y follows the 8-byte curve OID; change Y's last byte. */
    unsigned char oid[] = {0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07};
    unsigned char *at = memmem(der, len, oid, sizeof oid);
    assert_non_null(at);
    unsigned char *point = at + sizeof oid + 3; /* BIT STRING tag, length, unused-bits */
    assert_int_equal(point[0], 0x04);
    point[64] ^= 0x01;
    enr_csr *bad = NULL;
    assert_int_equal(enr_csr_parse(der, len, &bad, &err), ENR_E_PARSE);
    assert_null(bad);
    assert_non_null(strstr(err.message, "public key"));
    free(der);
    enr_csr_free(csr);
    enr_signer_free(s);

    /* The point at infinity with a signature forged without a key. */
    {
        char path[512];
        snprintf(path, sizeof path, "%s/ec-point-at-infinity.der", getenv("ENROLL_TEST_DATA"));
        FILE *f = fopen(path, "rb");
        assert_non_null(f);
        unsigned char buf[1024];
        size_t n = fread(buf, 1, sizeof buf, f);
        fclose(f);
        enr_csr *forged = NULL;
        enr_code rc = enr_csr_parse(buf, n, &forged, &err);
        if (rc == ENR_OK) {
            rc = enr_csr_verify(forged, &err);
            enr_csr_free(forged);
        }
        assert_int_not_equal(rc, ENR_OK);
    }

    static const char *OTHER_CURVES[] = {"lint/ec-secp256k1.csr", "lint/ec-p521.csr"};
    for (size_t i = 0; i < 2; i++) {
        char path[512];
        snprintf(path, sizeof path, "%s/%s", getenv("ENROLL_TEST_DATA"), OTHER_CURVES[i]);
        FILE *f = fopen(path, "rb");
        assert_non_null(f);
        unsigned char buf[4096];
        size_t n = fread(buf, 1, sizeof buf, f);
        fclose(f);
        enr_csr *other = NULL;
        assert_int_equal(enr_csr_parse(buf, n, &other, &err), ENR_OK);
        assert_int_equal(enr_csr_verify(other, &err), ENR_OK);
        enr_csr_free(other);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_every_key_type_roundtrips),
        cmocka_unit_test(test_encode_into_caller_buffer),
        cmocka_unit_test(test_tampered_request_does_not_verify),
        cmocka_unit_test(test_spec_refusals),
        cmocka_unit_test(test_key_file_refuses_overwrite),
        cmocka_unit_test(test_parse_checks_ec_points),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
