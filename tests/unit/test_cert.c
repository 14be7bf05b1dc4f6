/* Certificates: reading (bundles, every encoding, bad input), describing,
 * verifying (one test per reason), and time parsing. The PKI is built here
 * with the OpenSSL API, so validity periods can be set exactly. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <jansson.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "enroll/cert.h"
#include "enroll/fileio.h"

#define DAY (24L * 3600L)
#define YEAR (365L * DAY)

/* ---- building a PKI ---------------------------------------------------- */

typedef struct cert_spec {
    const char *cn;
    long serial;
    long not_before; /* seconds relative to the fixture's `now` */
    long not_after;
    const char *basic_constraints; /* X509V3 config syntax, or NULL */
    const char *key_usage;
    const char *ext_key_usage;
    const char *crl_dp;
    const char *aia;
} cert_spec;

typedef struct issued {
    EVP_PKEY *key;
    X509 *cert;
} issued;

/* Everything the verify tests need, built once per group. */
typedef struct pki {
    time_t now;
    issued root, inter, leaf, server_leaf, expired_leaf, sub, leaf_under_sub, by_leaf, other_root,
        same_name_root;
    X509 *tampered_leaf;
    X509_CRL *root_crl, *inter_crl_revoking_leaf, *inter_crl_expired;
} pki;

static void add_ext(X509 *cert, X509 *issuer, int nid, const char *value)
{
    if (value == NULL)
        return;
    X509V3_CTX ctx;
    X509V3_set_ctx(&ctx, issuer, cert, NULL, NULL, 0);
    X509_EXTENSION *ext = X509V3_EXT_conf_nid(NULL, &ctx, nid, value);
    assert_non_null(ext);
    assert_int_equal(X509_add_ext(cert, ext, -1), 1);
    X509_EXTENSION_free(ext);
}

static issued issue(time_t now, const cert_spec *spec, const issued *issuer)
{
    issued out = {EVP_EC_gen("P-256"), X509_new()};
    assert_non_null(out.key);
    X509 *cert = out.cert;
    assert_int_equal(X509_set_version(cert, X509_VERSION_3), 1);
    assert_int_equal(ASN1_INTEGER_set(X509_get_serialNumber(cert), spec->serial), 1);
    X509_NAME *name = X509_get_subject_name(cert);
    assert_int_equal(X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_UTF8,
                                                (const unsigned char *)spec->cn, -1, -1, 0), 1);
    X509 *issuer_cert = issuer ? issuer->cert : cert;
    EVP_PKEY *issuer_key = issuer ? issuer->key : out.key;
    assert_int_equal(X509_set_issuer_name(cert, X509_get_subject_name(issuer_cert)), 1);
    assert_non_null(X509_time_adj_ex(X509_getm_notBefore(cert), 0, spec->not_before, &now));
    assert_non_null(X509_time_adj_ex(X509_getm_notAfter(cert), 0, spec->not_after, &now));
    assert_int_equal(X509_set_pubkey(cert, out.key), 1);
    add_ext(cert, issuer_cert, NID_basic_constraints, spec->basic_constraints);
    add_ext(cert, issuer_cert, NID_key_usage, spec->key_usage);
    add_ext(cert, issuer_cert, NID_ext_key_usage, spec->ext_key_usage);
    add_ext(cert, issuer_cert, NID_subject_key_identifier, "hash");
    add_ext(cert, issuer_cert, NID_authority_key_identifier, "keyid:always");
    add_ext(cert, issuer_cert, NID_crl_distribution_points, spec->crl_dp);
    add_ext(cert, issuer_cert, NID_info_access, spec->aia);
    assert_true(X509_sign(cert, issuer_key, EVP_sha256()) > 0);
    return out;
}

static void issued_free(issued *i)
{
    EVP_PKEY_free(i->key);
    X509_free(i->cert);
}

static X509_CRL *make_crl(time_t now, const issued *issuer, long last_update, long next_update,
                          const X509 *revoke)
{
    X509_CRL *crl = X509_CRL_new();
    assert_non_null(crl);
    assert_int_equal(X509_CRL_set_version(crl, X509_CRL_VERSION_2), 1);
    assert_int_equal(X509_CRL_set_issuer_name(crl, X509_get_subject_name(issuer->cert)), 1);
    ASN1_TIME *t = X509_time_adj_ex(NULL, 0, last_update, &now);
    assert_int_equal(X509_CRL_set1_lastUpdate(crl, t), 1);
    ASN1_TIME_free(t);
    t = X509_time_adj_ex(NULL, 0, next_update, &now);
    assert_int_equal(X509_CRL_set1_nextUpdate(crl, t), 1);
    ASN1_TIME_free(t);
    if (revoke != NULL) {
        X509_REVOKED *entry = X509_REVOKED_new();
        ASN1_INTEGER *serial = ASN1_INTEGER_dup(X509_get0_serialNumber(revoke));
        assert_int_equal(X509_REVOKED_set_serialNumber(entry, serial), 1);
        ASN1_INTEGER_free(serial);
        t = X509_time_adj_ex(NULL, 0, -DAY, &now);
        assert_int_equal(X509_REVOKED_set_revocationDate(entry, t), 1);
        ASN1_TIME_free(t);
        ASN1_ENUMERATED *reason = ASN1_ENUMERATED_new();
        assert_int_equal(ASN1_ENUMERATED_set(reason, 1 /* keyCompromise */), 1);
        assert_int_equal(X509_REVOKED_add1_ext_i2d(entry, NID_crl_reason, reason, 0, 0), 1);
        ASN1_ENUMERATED_free(reason);
        assert_int_equal(X509_CRL_add0_revoked(crl, entry), 1);
    }
    assert_int_equal(X509_CRL_sort(crl), 1);
    assert_true(X509_CRL_sign(crl, issuer->key, EVP_sha256()) > 0);
    return crl;
}

/* The leaf with the last byte of its signature flipped. */
static X509 *tamper(const X509 *cert)
{
    unsigned char *der = NULL;
    int n = i2d_X509(cert, &der);
    assert_true(n > 0);
    der[n - 1] ^= 0x01;
    const unsigned char *p = der;
    X509 *out = d2i_X509(NULL, &p, n);
    OPENSSL_free(der);
    assert_non_null(out);
    return out;
}

static const char CA_BC_1[] = "critical,CA:TRUE,pathlen:1";
static const char CA_BC_0[] = "critical,CA:TRUE,pathlen:0";
static const char CA_KU[] = "critical,keyCertSign,cRLSign";
static const char LEAF_KU[] = "critical,digitalSignature";

static int pki_setup(void **state)
{
    pki *p = calloc(1, sizeof *p);
    assert_non_null(p);
    p->now = time(NULL);
    cert_spec root = {"root", 1, -5 * YEAR, 10 * YEAR, CA_BC_1, CA_KU, NULL, NULL, NULL};
    cert_spec inter = {"inter", 2, -5 * YEAR, 5 * YEAR, CA_BC_0, CA_KU, NULL, NULL, NULL};
    cert_spec leaf = {"dev-001", 1001, -DAY, YEAR, "CA:FALSE", LEAF_KU, "clientAuth",
                      "URI:http://crl.example/inter.crl",
                      "OCSP;URI:http://ocsp.example,caIssuers;URI:http://ca.example/inter.crt"};
    cert_spec server = {"srv-001", 1002, -DAY, YEAR, "CA:FALSE", LEAF_KU, "serverAuth", NULL, NULL};
    cert_spec expired = {"dev-old", 1003, -2 * YEAR, -YEAR, "CA:FALSE", LEAF_KU, "clientAuth", NULL, NULL};
    cert_spec sub = {"sub", 3, -DAY, YEAR, CA_BC_0, CA_KU, NULL, NULL, NULL};
    cert_spec under_sub = {"dev-002", 1004, -DAY, YEAR, "CA:FALSE", LEAF_KU, "clientAuth", NULL, NULL};
    cert_spec by_leaf = {"dev-003", 1005, -DAY, YEAR, "CA:FALSE", LEAF_KU, "clientAuth", NULL, NULL};
    cert_spec other_root = {"other-root", 9, -5 * YEAR, 10 * YEAR, CA_BC_1, CA_KU, NULL, NULL, NULL};
    p->root = issue(p->now, &root, NULL);
    p->inter = issue(p->now, &inter, &p->root);
    p->leaf = issue(p->now, &leaf, &p->inter);
    p->server_leaf = issue(p->now, &server, &p->inter);
    p->expired_leaf = issue(p->now, &expired, &p->inter);
    p->sub = issue(p->now, &sub, &p->inter);
    p->leaf_under_sub = issue(p->now, &under_sub, &p->sub);
    p->by_leaf = issue(p->now, &by_leaf, &p->leaf);
    p->other_root = issue(p->now, &other_root, NULL);
    p->same_name_root = issue(p->now, &root, NULL); /* same name, different key */
    p->tampered_leaf = tamper(p->leaf.cert);
    p->root_crl = make_crl(p->now, &p->root, -DAY, 30 * DAY, NULL);
    p->inter_crl_revoking_leaf = make_crl(p->now, &p->inter, -DAY, 30 * DAY, p->leaf.cert);
    p->inter_crl_expired = make_crl(p->now, &p->inter, -60 * DAY, -30 * DAY, NULL);
    *state = p;
    return 0;
}

static int pki_teardown(void **state)
{
    pki *p = *state;
    issued *all[] = {&p->root, &p->inter, &p->leaf, &p->server_leaf, &p->expired_leaf, &p->sub,
                     &p->leaf_under_sub, &p->by_leaf, &p->other_root, &p->same_name_root};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
        issued_free(all[i]);
    X509_free(p->tampered_leaf);
    X509_CRL_free(p->root_crl);
    X509_CRL_free(p->inter_crl_revoking_leaf);
    X509_CRL_free(p->inter_crl_expired);
    free(p);
    return 0;
}

/* ---- verify: one case per reason --------------------------------------- */

typedef struct verify_case {
    const char *what;
    X509 *leaf;
    X509 *roots[2];
    X509 *untrusted[3];
    X509_CRL *crls[2];
    enr_purpose purpose;
    time_t at;
    enr_verify_reason want;
    int want_depth;
    const char *want_in_message; /* NULL: no check */
} verify_case;

static STACK_OF(X509) *stack_of(X509 *const *certs, size_t n)
{
    STACK_OF(X509) *sk = sk_X509_new_null();
    for (size_t i = 0; i < n && certs[i] != NULL; i++)
        assert_true(sk_X509_push(sk, certs[i]) > 0);
    return sk;
}

static void run_case(const verify_case *c)
{
    STACK_OF(X509) *roots = stack_of(c->roots, 2);
    STACK_OF(X509) *untrusted = stack_of(c->untrusted, 3);
    STACK_OF(X509_CRL) *crls = sk_X509_CRL_new_null();
    for (size_t i = 0; i < 2 && c->crls[i] != NULL; i++)
        assert_true(sk_X509_CRL_push(crls, c->crls[i]) > 0);
    enr_verify_options opts = {.roots = roots, .untrusted = untrusted, .crls = crls, .purpose = c->purpose, .at = c->at};
    enr_verify_result result;
    enr_error err;
    enr_code rc = enr_cert_verify(c->leaf, &opts, &result, &err);
    if (rc != (c->want == ENR_VERIFY_OK ? ENR_OK : ENR_E_VERIFY) || result.reason != c->want ||
        (c->want != ENR_VERIFY_OK && result.depth != c->want_depth))
        fail_msg("%s: rc %d, reason %s at depth %d (%s), wanted %s at depth %d", c->what, rc,
                 result.reason_name, result.depth, result.message,
                 enr_verify_reason_name(c->want), c->want_depth);
    assert_string_equal(result.reason_name, enr_verify_reason_name(c->want));
    if (c->want != ENR_VERIFY_OK) {
        assert_true(strlen(result.message) > 20);
        assert_non_null(strstr(err.message, result.reason_name));
        assert_true(result.subject[0] != '\0');
    }
    if (c->want_in_message != NULL && strstr(result.message, c->want_in_message) == NULL)
        fail_msg("%s: '%s' not in '%s'", c->what, c->want_in_message, result.message);
    sk_X509_free(roots);
    sk_X509_free(untrusted);
    sk_X509_CRL_free(crls);
}

static void expiry_text(const X509 *cert, int not_after, char *out, size_t len)
{
    struct tm tm;
    assert_int_equal(ASN1_TIME_to_tm(not_after ? X509_get0_notAfter(cert) : X509_get0_notBefore(cert), &tm), 1);
    snprintf(out, len, "%04d-%02d-%02dT%02d:%02d:%02dZ", tm.tm_year + 1900, tm.tm_mon + 1,
             tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec);
}

static void test_verify_good_chain(void **state)
{
    pki *p = *state;
    verify_case cases[] = {
        {"client leaf", p->leaf.cert, {p->root.cert}, {p->inter.cert}, {NULL}, ENR_PURPOSE_CLIENT, 0,
         ENR_VERIFY_OK, 0, NULL},
        {"any purpose", p->leaf.cert, {p->root.cert}, {p->inter.cert}, {NULL}, ENR_PURPOSE_ANY, 0,
         ENR_VERIFY_OK, 0, NULL},
        {"server leaf", p->server_leaf.cert, {p->root.cert}, {p->inter.cert}, {NULL},
         ENR_PURPOSE_SERVER, 0, ENR_VERIFY_OK, 0, NULL},
        {"with CRLs", p->server_leaf.cert, {p->root.cert}, {p->inter.cert},
         {p->root_crl, p->inter_crl_revoking_leaf}, ENR_PURPOSE_SERVER, 0, ENR_VERIFY_OK, 0, NULL},
        {"two roots", p->leaf.cert, {p->other_root.cert, p->root.cert}, {p->inter.cert}, {NULL},
         ENR_PURPOSE_CLIENT, 0, ENR_VERIFY_OK, 0, NULL},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        run_case(&cases[i]);

    STACK_OF(X509) *roots = stack_of((X509 *[]){p->root.cert}, 1);
    STACK_OF(X509) *untrusted = stack_of((X509 *[]){p->inter.cert}, 1);
    enr_verify_options opts = {.roots = roots, .untrusted = untrusted, .purpose = ENR_PURPOSE_CLIENT};
    enr_verify_result result;
    enr_error err;
    assert_int_equal(enr_cert_verify(p->leaf.cert, &opts, &result, &err), ENR_OK);
    assert_int_equal(result.chain_length, 3);
    assert_int_equal(result.reason, ENR_VERIFY_OK);
    sk_X509_free(roots);
    sk_X509_free(untrusted);
}

static void test_verify_expired_and_not_yet_valid(void **state)
{
    pki *p = *state;
    char leaf_end[32], old_end[32], leaf_start[32];
    expiry_text(p->leaf.cert, 1, leaf_end, sizeof leaf_end);
    expiry_text(p->expired_leaf.cert, 1, old_end, sizeof old_end);
    expiry_text(p->leaf.cert, 0, leaf_start, sizeof leaf_start);
    verify_case cases[] = {
        {"expired now", p->expired_leaf.cert, {p->root.cert}, {p->inter.cert}, {NULL},
         ENR_PURPOSE_CLIENT, 0, ENR_VERIFY_EXPIRED, 0, old_end},
        {"expired at a later time", p->leaf.cert, {p->root.cert}, {p->inter.cert}, {NULL},
         ENR_PURPOSE_CLIENT, p->now + 2 * YEAR, ENR_VERIFY_EXPIRED, 0, leaf_end},
        {"not yet valid at an earlier time", p->leaf.cert, {p->root.cert}, {p->inter.cert}, {NULL},
         ENR_PURPOSE_CLIENT, p->now - 30 * DAY, ENR_VERIFY_NOT_YET_VALID, 0, leaf_start},
        {"valid at an earlier time", p->expired_leaf.cert, {p->root.cert}, {p->inter.cert}, {NULL},
         ENR_PURPOSE_CLIENT, p->now - 18 * 30 * DAY, ENR_VERIFY_OK, 0, NULL},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        run_case(&cases[i]);
}

static void test_verify_unknown_issuer(void **state)
{
    pki *p = *state;
    verify_case cases[] = {
        {"missing intermediate", p->leaf.cert, {p->root.cert}, {NULL}, {NULL}, ENR_PURPOSE_CLIENT, 0,
         ENR_VERIFY_UNKNOWN_ISSUER, 0, "CN=inter"},
        {"wrong root", p->leaf.cert, {p->other_root.cert}, {p->inter.cert}, {NULL},
         ENR_PURPOSE_CLIENT, 0, ENR_VERIFY_UNKNOWN_ISSUER, 1, "CN=root"},
        {"root with the same name, other key", p->leaf.cert, {p->same_name_root.cert},
         {p->inter.cert}, {NULL}, ENR_PURPOSE_CLIENT, 0, ENR_VERIFY_UNKNOWN_ISSUER, 1, NULL},
        {"untrusted self-signed at the top", p->leaf.cert, {p->other_root.cert},
         {p->inter.cert, p->root.cert}, {NULL}, ENR_PURPOSE_CLIENT, 0, ENR_VERIFY_UNKNOWN_ISSUER, 2,
         "self-signed"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        run_case(&cases[i]);
}

static void test_verify_chain_structure(void **state)
{
    pki *p = *state;
    verify_case cases[] = {
        {"flipped signature byte", p->tampered_leaf, {p->root.cert}, {p->inter.cert}, {NULL},
         ENR_PURPOSE_CLIENT, 0, ENR_VERIFY_BAD_SIGNATURE, 0, "CN=inter"},
        {"CA below a pathlen:0 CA", p->leaf_under_sub.cert, {p->root.cert},
         {p->inter.cert, p->sub.cert}, {NULL}, ENR_PURPOSE_CLIENT, 0, ENR_VERIFY_PATHLEN_EXCEEDED, 2,
         "at most 0"},
        {"leaf used as an issuer", p->by_leaf.cert, {p->root.cert}, {p->inter.cert, p->leaf.cert},
         {NULL}, ENR_PURPOSE_ANY, 0, ENR_VERIFY_NOT_A_CA, 1, "CN=dev-001"},
        {"serverAuth leaf for a client", p->server_leaf.cert, {p->root.cert}, {p->inter.cert},
         {NULL}, ENR_PURPOSE_CLIENT, 0, ENR_VERIFY_WRONG_USAGE, 0, "serverAuth"},
        {"clientAuth leaf for a server", p->leaf.cert, {p->root.cert}, {p->inter.cert}, {NULL},
         ENR_PURPOSE_SERVER, 0, ENR_VERIFY_WRONG_USAGE, 0, "clientAuth"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        run_case(&cases[i]);
}

static void test_verify_revocation(void **state)
{
    pki *p = *state;
    verify_case cases[] = {
        {"revoked leaf", p->leaf.cert, {p->root.cert}, {p->inter.cert},
         {p->root_crl, p->inter_crl_revoking_leaf}, ENR_PURPOSE_CLIENT, 0, ENR_VERIFY_REVOKED, 0,
         "keyCompromise"},
        {"no CRL from the root", p->server_leaf.cert, {p->root.cert}, {p->inter.cert},
         {p->inter_crl_revoking_leaf}, ENR_PURPOSE_SERVER, 0, ENR_VERIFY_CRL_PROBLEM, 1, "CN=root"},
        {"no CRL from the intermediate", p->server_leaf.cert, {p->root.cert}, {p->inter.cert},
         {p->root_crl}, ENR_PURPOSE_SERVER, 0, ENR_VERIFY_CRL_PROBLEM, 0, "CN=inter"},
        {"expired CRL", p->server_leaf.cert, {p->root.cert}, {p->inter.cert},
         {p->root_crl, p->inter_crl_expired}, ENR_PURPOSE_SERVER, 0, ENR_VERIFY_CRL_PROBLEM, 0,
         "renewal"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        run_case(&cases[i]);
}

static void test_verify_refuses_bad_arguments(void **state)
{
    pki *p = *state;
    enr_verify_result result;
    enr_error err;
    enr_verify_options none = {0};
    assert_int_equal(enr_cert_verify(p->leaf.cert, &none, &result, &err), ENR_E_USAGE);
    assert_non_null(strstr(err.message, "--root"));
    assert_int_equal(enr_cert_verify(p->leaf.cert, NULL, &result, &err), ENR_E_USAGE);
    STACK_OF(X509) *roots = stack_of((X509 *[]){p->root.cert}, 1);
    enr_verify_options opts = {.roots = roots, .purpose = ENR_PURPOSE_ANY};
    assert_int_equal(enr_cert_verify(NULL, &opts, &result, &err), ENR_E_USAGE);
    /* Without an intermediates stack: the root itself verifies. */
    assert_int_equal(enr_cert_verify(p->root.cert, &opts, &result, &err), ENR_OK);
    assert_int_equal(result.chain_length, 1);
    sk_X509_free(roots);
}

/* ---- reading ------------------------------------------------------------ */

static char *pem_of(X509 *cert)
{
    BIO *bio = BIO_new(BIO_s_mem());
    assert_int_equal(PEM_write_bio_X509(bio, cert), 1);
    char *data;
    long n = BIO_get_mem_data(bio, &data);
    char *out = strndup(data, (size_t)n);
    BIO_free(bio);
    return out;
}

static unsigned char *der_of(X509 *cert, size_t *len)
{
    unsigned char *der = NULL;
    int n = i2d_X509(cert, &der);
    assert_true(n > 0);
    *len = (size_t)n;
    return der;
}

static void assert_same_cert(X509 *a, X509 *b)
{
    assert_int_equal(X509_cmp(a, b), 0);
}

static void test_read_bundle_and_single_encodings(void **state)
{
    pki *p = *state;
    char *leaf = pem_of(p->leaf.cert), *inter = pem_of(p->inter.cert), *root = pem_of(p->root.cert);
    char bundle[16384];
    /* Explanatory text before and between blocks, as `openssl x509 -subject`
     * output and ca-certificates bundles have it. */
    snprintf(bundle, sizeof bundle, "subject=CN = dev-001\n%s\n# Issuer: CN=root\n%s%s\n", leaf,
             inter, root);
    STACK_OF(X509) *certs = NULL;
    enr_error err;
    assert_int_equal(enr_cert_read_all((unsigned char *)bundle, strlen(bundle), &certs, &err), ENR_OK);
    assert_int_equal(sk_X509_num(certs), 3);
    assert_same_cert(sk_X509_value(certs, 0), p->leaf.cert);
    assert_same_cert(sk_X509_value(certs, 1), p->inter.cert);
    assert_same_cert(sk_X509_value(certs, 2), p->root.cert);
    sk_X509_pop_free(certs, X509_free);

    X509 *one = NULL;
    assert_int_equal(enr_cert_read_one((unsigned char *)bundle, strlen(bundle), &one, &err), ENR_E_PARSE);
    assert_null(one);
    assert_non_null(strstr(err.message, "holds 3"));
    assert_int_equal(enr_cert_read_one((unsigned char *)leaf, strlen(leaf), &one, &err), ENR_OK);
    assert_same_cert(one, p->leaf.cert);
    X509_free(one);

    size_t der_len;
    unsigned char *der = der_of(p->leaf.cert, &der_len);
    assert_int_equal(enr_cert_read_one(der, der_len, &one, &err), ENR_OK);
    assert_same_cert(one, p->leaf.cert);
    X509_free(one);
    /* Headerless base64, the form DPS carries in JSON. */
    unsigned char b64[4096];
    int b64_len = EVP_EncodeBlock(b64, der, (int)der_len);
    assert_int_equal(enr_cert_read_one(b64, (size_t)b64_len, &one, &err), ENR_OK);
    assert_same_cert(one, p->leaf.cert);
    X509_free(one);
    OPENSSL_free(der);

    /* The legacy label some tools still write. */
    char legacy[8192];
    snprintf(legacy, sizeof legacy, "-----BEGIN X509 CERTIFICATE-----\n%s\n-----END X509 CERTIFICATE-----\n", b64);
    assert_int_equal(enr_cert_read_one((unsigned char *)legacy, strlen(legacy), &one, &err), ENR_OK);
    X509_free(one);
    free(leaf);
    free(inter);
    free(root);
}

static void test_read_file(void **state)
{
    pki *p = *state;
    char dir[] = "/tmp/enroll-test-cert-XXXXXX";
    assert_non_null(mkdtemp(dir));
    char path[64];
    snprintf(path, sizeof path, "%s/chain.pem", dir);
    char *a = pem_of(p->leaf.cert), *b = pem_of(p->inter.cert);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fprintf(f, "%s%s", a, b);
    fclose(f);
    STACK_OF(X509) *certs = NULL;
    enr_error err;
    assert_int_equal(enr_cert_read_file(path, &certs, &err), ENR_OK);
    assert_int_equal(sk_X509_num(certs), 2);
    sk_X509_pop_free(certs, X509_free);
    char missing[96];
    snprintf(missing, sizeof missing, "%s/missing.pem", dir);
    assert_int_not_equal(enr_cert_read_file(missing, &certs, &err), ENR_OK);
    assert_null(certs);
    assert_non_null(strstr(err.message, "missing.pem"));
    unlink(path);
    rmdir(dir);
    free(a);
    free(b);
}

static void test_read_crls(void **state)
{
    pki *p = *state;
    BIO *bio = BIO_new(BIO_s_mem());
    assert_int_equal(PEM_write_bio_X509_CRL(bio, p->root_crl), 1);
    assert_int_equal(PEM_write_bio_X509_CRL(bio, p->inter_crl_revoking_leaf), 1);
    char *data;
    long n = BIO_get_mem_data(bio, &data);
    STACK_OF(X509_CRL) *crls = NULL;
    enr_error err;
    assert_int_equal(enr_crl_read_all((unsigned char *)data, (size_t)n, &crls, &err), ENR_OK);
    assert_int_equal(sk_X509_CRL_num(crls), 2);
    sk_X509_CRL_pop_free(crls, X509_CRL_free);
    BIO_free(bio);

    unsigned char *der = NULL;
    int len = i2d_X509_CRL(p->root_crl, &der);
    assert_int_equal(enr_crl_read_all(der, (size_t)len, &crls, &err), ENR_OK);
    assert_int_equal(sk_X509_CRL_num(crls), 1);
    sk_X509_CRL_pop_free(crls, X509_CRL_free);
    OPENSSL_free(der);

    /* A certificate is not a CRL. */
    char *cert = pem_of(p->leaf.cert);
    assert_int_equal(enr_crl_read_all((unsigned char *)cert, strlen(cert), &crls, &err), ENR_E_PARSE);
    assert_non_null(strstr(err.message, "'CERTIFICATE'"));
    free(cert);
}

typedef struct bad_input {
    const char *what;
    unsigned char *data;
    size_t len;
    const char *want_in_message;
} bad_input;

static bad_input text_case(const char *what, const char *text, const char *want)
{
    return (bad_input){what, (unsigned char *)strdup(text), strlen(text), want};
}

static bad_input bytes_case(const char *what, const unsigned char *bytes, size_t len, const char *want)
{
    unsigned char *copy = malloc(len ? len : 1);
    memcpy(copy, bytes, len);
    return (bad_input){what, copy, len, want};
}

/* Deterministic noise, so that a failure reproduces. */
static unsigned char *noise(size_t len)
{
    unsigned char *out = malloc(len);
    uint64_t x = 0x9e3779b97f4a7c15u;
    for (size_t i = 0; i < len; i++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out[i] = (unsigned char)x;
    }
    out[0] = 0x30; /* looks like DER at first glance */
    return out;
}

static void test_read_bad_input(void **state)
{
    pki *p = *state;
    char *leaf = pem_of(p->leaf.cert), *inter = pem_of(p->inter.cert);
    size_t der_len;
    unsigned char *der = der_of(p->leaf.cert, &der_len);
    char buf[16384];
    static const unsigned char HUGE_LENGTH[] = {0x30, 0x84, 0x7f, 0xff, 0xff, 0xff, 0x02, 0x01, 0x01};
    static const unsigned char NOT_A_CERT[] = {0x30, 0x03, 0x02, 0x01, 0x01};

    bad_input cases[20];
    size_t n = 0;
    cases[n++] = text_case("empty", "", "empty");
    cases[n++] = text_case("whitespace", " \n\t\n", "empty");
    snprintf(buf, sizeof buf, "%.*s", (int)(strlen(leaf) / 2), leaf);
    cases[n++] = text_case("truncated PEM", buf, "byte");
    snprintf(buf, sizeof buf, "%s-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEIAX42UqSxmc66YHBlBhkM+TwtGkmfZANLOZ97drE9QuB\n-----END PRIVATE KEY-----\n", leaf);
    cases[n++] = text_case("bundle with a key", buf, "'PRIVATE KEY'");
    snprintf(buf, sizeof buf, "%s%.*s", leaf, (int)(strlen(inter) - 30), inter);
    cases[n++] = text_case("second block truncated", buf, "PEM block 2");
    snprintf(buf, sizeof buf, "%s-----END CERTIFICATE-----\n%s", leaf, inter);
    cases[n++] = text_case("stray END line", buf, "boundary");
    cases[n++] = text_case("garbage base64", "MIIB!!!notbase64", "base64");
    cases[n++] = text_case("base64 not a multiple of 4", "MIIBCgKCAQEA1", "base64");
    cases[n++] = bytes_case("huge DER length", HUGE_LENGTH, sizeof HUGE_LENGTH, "DER");
    cases[n++] = bytes_case("DER that is not a certificate", NOT_A_CERT, sizeof NOT_A_CERT, "not an X.509");
    unsigned char twice[8192];
    memcpy(twice, der, der_len);
    memcpy(twice + der_len, der, der_len);
    cases[n++] = bytes_case("two DER certificates", twice, 2 * der_len, "exactly one");
    cases[n++] = bytes_case("DER with trailing bytes", twice, der_len + 3, "unexpected data");
    cases[n++] = bytes_case("binary junk", (const unsigned char *)"\x01\x02\x03", 3, "unrecognised");
    size_t leaf_len = strlen(leaf);
    memcpy(buf, leaf, leaf_len);
    memcpy(buf + leaf_len, "\x01\x02junk\n", 7);
    memcpy(buf + leaf_len + 7, inter, strlen(inter) + 1);
    cases[n++] = bytes_case("binary between blocks", (unsigned char *)buf, strlen(buf), "binary data");
    cases[n++] = (bad_input){"1 MiB of noise", noise(ENR_INPUT_LIMIT), ENR_INPUT_LIMIT, NULL};
    cases[n++] = (bad_input){"over the limit", noise(ENR_INPUT_LIMIT + 1), ENR_INPUT_LIMIT + 1, "limit"};

    for (size_t i = 0; i < n; i++) {
        STACK_OF(X509) *certs = NULL;
        enr_error err;
        enr_error_clear(&err);
        enr_code rc = enr_cert_read_all(cases[i].data, cases[i].len, &certs, &err);
        if (rc != ENR_E_PARSE || certs != NULL || err.message[0] == '\0')
            fail_msg("%s: rc %d, message '%s'", cases[i].what, rc, err.message);
        if (cases[i].want_in_message && strstr(err.message, cases[i].want_in_message) == NULL)
            fail_msg("%s: '%s' not in '%s'", cases[i].what, cases[i].want_in_message, err.message);
        free(cases[i].data);
    }
    OPENSSL_free(der);
    free(leaf);
    free(inter);
}

/* An error in a later block names an offset into the whole input. */
static void test_read_offsets_count_from_the_start(void **state)
{
    pki *p = *state;
    char *leaf = pem_of(p->leaf.cert);
    char buf[16384];
    size_t first = strlen(leaf);
    snprintf(buf, sizeof buf, "%s%s", leaf, leaf);
    size_t bad = first + strlen("-----BEGIN CERTIFICATE-----\n") + 10;
    buf[bad] = '!';
    STACK_OF(X509) *certs = NULL;
    enr_error err;
    assert_int_equal(enr_cert_read_all((unsigned char *)buf, strlen(buf), &certs, &err), ENR_E_PARSE);
    char want[64];
    snprintf(want, sizeof want, "at byte %zu:", bad);
    if (strstr(err.message, want) == NULL)
        fail_msg("'%s' not in '%s'", want, err.message);
    snprintf(want, sizeof want, "PEM block 2 at byte %zu", first);
    assert_non_null(strstr(err.message, want));
    free(leaf);
}

/* ---- describing --------------------------------------------------------- */

static void test_describe_json(void **state)
{
    pki *p = *state;
    char *text = NULL;
    enr_error err;
    assert_int_equal(enr_cert_describe_json(p->leaf.cert, &text, &err), ENR_OK);
    json_t *root = json_loads(text, 0, NULL);
    assert_non_null(root);
    assert_int_equal(json_integer_value(json_object_get(root, "version")), 3);
    assert_string_equal(json_string_value(json_object_get(root, "serial")), "03E9"); /* 1001 */
    assert_string_equal(json_string_value(json_object_get(root, "subject")), "CN=dev-001");
    assert_string_equal(json_string_value(json_object_get(root, "issuer")), "CN=inter");
    assert_false(json_is_true(json_object_get(root, "self_signed")));
    char want[32];
    expiry_text(p->leaf.cert, 1, want, sizeof want);
    assert_string_equal(json_string_value(json_object_get(json_object_get(root, "validity"), "not_after")), want);
    assert_string_equal(json_string_value(json_object_get(json_object_get(root, "public_key"), "type")), "ec-p256");

    unsigned char md[32];
    unsigned int md_len = 0;
    assert_int_equal(X509_digest(p->leaf.cert, EVP_sha256(), md, &md_len), 1);
    char hex[65];
    for (unsigned i = 0; i < md_len; i++)
        snprintf(hex + 2 * i, 3, "%02x", md[i]);
    assert_string_equal(json_string_value(json_object_get(root, "fingerprint_sha256")), hex);

    const ASN1_OCTET_STRING *skid = X509_get0_subject_key_id(p->inter.cert);
    char ski[64] = "";
    for (int i = 0; i < ASN1_STRING_length(skid); i++)
        snprintf(ski + 2 * i, 3, "%02x", ASN1_STRING_get0_data(skid)[i]);
    size_t i;
    json_t *ext;
    int seen = 0;
    json_array_foreach(json_object_get(root, "extensions"), i, ext) {
        const char *name = json_string_value(json_object_get(ext, "name"));
        json_t *value = json_object_get(ext, "value");
        if (strcmp(name, "authorityKeyIdentifier") == 0) {
            assert_string_equal(json_string_value(json_object_get(value, "key_id")), ski);
            seen |= 1;
        } else if (strcmp(name, "crlDistributionPoints") == 0) {
            json_t *uri = json_array_get(json_object_get(json_array_get(value, 0), "full_name"), 0);
            assert_string_equal(json_string_value(json_object_get(uri, "value")), "http://crl.example/inter.crl");
            seen |= 2;
        } else if (strcmp(name, "authorityInfoAccess") == 0) {
            assert_string_equal(json_string_value(json_object_get(json_array_get(value, 0), "method")), "OCSP");
            assert_string_equal(json_string_value(json_object_get(json_array_get(value, 1), "method")), "caIssuers");
            seen |= 4;
        } else if (strcmp(name, "subjectKeyIdentifier") == 0) {
            assert_true(json_is_string(value));
            seen |= 8;
        } else if (strcmp(name, "extendedKeyUsage") == 0) {
            assert_string_equal(json_string_value(json_array_get(value, 0)), "clientAuth");
            seen |= 16;
        }
    }
    assert_int_equal(seen, 31);
    json_decref(root);
    free(text);

    assert_int_equal(enr_cert_describe_json(p->root.cert, &text, &err), ENR_OK);
    root = json_loads(text, 0, NULL);
    assert_true(json_is_true(json_object_get(root, "self_signed")));
    json_decref(root);
    free(text);
}

static void test_describe_text(void **state)
{
    pki *p = *state;
    char *text = NULL;
    enr_error err;
    assert_int_equal(enr_cert_describe_text(p->leaf.cert, &text, &err), ENR_OK);
    const char *want[] = {"Certificate:\n", "Version: 3 (0x2)", "Serial Number: 03E9",
                          "Issuer: CN=inter", "Subject: CN=dev-001", "Not After:  ",
                          "Public Key: EC P-256 (256 bit)", "Signature Algorithm: ecdsa-with-SHA256",
                          "crlDistributionPoints", "SHA-256 Fingerprint: "};
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++)
        if (strstr(text, want[i]) == NULL)
            fail_msg("'%s' not in:\n%s", want[i], text);
    free(text);
}

/* ---- time --------------------------------------------------------------- */

static void test_time_parse(void **state)
{
    (void)state;
    static const struct { const char *text; time_t want; } GOOD[] = {
        {"2026-11-24T20:00:00Z", 1795550400},
        {"2026-11-24t20:00:00z", 1795550400},
        {"2026-11-24 20:00:00Z", 1795550400},
        {"2026-11-24T22:00:00+02:00", 1795550400},
        {"2026-11-24T15:30:00-04:30", 1795550400},
        {"2026-11-24T20:00:00.999Z", 1795550400},
        {"2026-11-24", 1795478400},
        {"2024-02-29T00:00:00Z", 1709164800},
        {"1970-01-01T00:00:01Z", 1},
        {"2100-01-01", 4102444800},
    };
    for (size_t i = 0; i < sizeof GOOD / sizeof GOOD[0]; i++) {
        time_t t = 0;
        enr_error err;
        if (enr_time_parse(GOOD[i].text, &t, &err) != ENR_OK || t != GOOD[i].want)
            fail_msg("%s: got %lld (%s)", GOOD[i].text, (long long)t, err.message);
    }
    static const char *const BAD[] = {
        "", "2026", "2026-11", "2026-13-01", "2026-02-29", "2026-11-31", "2026-11-24T", "2026-11-24T20:00",
        "2026-11-24T20:00:00", "2026-11-24T24:00:00Z", "2026-11-24T20:60:00Z", "2026-11-24T20:00:00+2:00",
        "2026-11-24T20:00:00+02", "2026-11-24T20:00:00Zjunk", "2026-11-24T20:00:00.Z", "26-11-24",
        "tomorrow", "2026-11-24x", "2026-11-24T20:00:00+24:00",
    };
    for (size_t i = 0; i < sizeof BAD / sizeof BAD[0]; i++) {
        time_t t = 0;
        enr_error err;
        enr_error_clear(&err);
        if (enr_time_parse(BAD[i], &t, &err) != ENR_E_USAGE || strstr(err.message, "RFC 3339") == NULL)
            fail_msg("'%s' accepted or unclear: '%s'", BAD[i], err.message);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_verify_good_chain),
        cmocka_unit_test(test_verify_expired_and_not_yet_valid),
        cmocka_unit_test(test_verify_unknown_issuer),
        cmocka_unit_test(test_verify_chain_structure),
        cmocka_unit_test(test_verify_revocation),
        cmocka_unit_test(test_verify_refuses_bad_arguments),
        cmocka_unit_test(test_read_bundle_and_single_encodings),
        cmocka_unit_test(test_read_file),
        cmocka_unit_test(test_read_crls),
        cmocka_unit_test(test_read_bad_input),
        cmocka_unit_test(test_read_offsets_count_from_the_start),
        cmocka_unit_test(test_describe_json),
        cmocka_unit_test(test_describe_text),
        cmocka_unit_test(test_time_parse),
    };
    return cmocka_run_group_tests(tests, pki_setup, pki_teardown);
}
