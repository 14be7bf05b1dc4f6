/* TLS client authentication with a key that stays in a PKCS#11 token
 * (tls_key.h): real TLS 1.3 and TLS 1.2 handshakes in memory (a BIO pair)
 * against an OpenSSL server that requires and verifies a client
 * certificate, the client's key in SoftHSM2 in a temporary directory. The
 * server, in the process's default library context with ordinary keys, is
 * the judge: it must have seen and verified our certificate, which in
 * TLS 1.3 (and 1.2 with a certificate request) means it checked a
 * CertificateVerify signature only the token could make. */
#define _XOPEN_SOURCE 700 /* nftw */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <ftw.h>
#include <limits.h>
#include <openssl/err.h>
#include <openssl/provider.h>
#include <openssl/rsa.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "enroll/error.h"
#include "enroll/signer.h"
#include "enroll/tls_key.h"

#define MODULE "/usr/lib/softhsm/libsofthsm2.so"
#define TOKEN "enroll-tls"
#define SO_PIN "12345678"
#define PIN "87654321"
#define WRONG_PIN "11223344"

typedef struct fixture {
    bool ready; /* false: SoftHSM2 is not installed, token tests fail */
    char dir[PATH_MAX];
    EVP_PKEY *ca_key;
    X509 *ca;
    EVP_PKEY *server_key;
    X509 *server_cert;
} fixture;

static const enr_token_options OPTIONS = {MODULE, PIN};

/* ---- certificates (the test's own small CA) ----------------------------- */

static void add_ext(X509 *cert, X509 *issuer, int nid, const char *value)
{
    X509V3_CTX ctx;
    X509V3_set_ctx(&ctx, issuer, cert, NULL, NULL, 0);
    X509_EXTENSION *ext = X509V3_EXT_conf_nid(NULL, &ctx, nid, value);
    assert_non_null(ext);
    assert_int_equal(X509_add_ext(cert, ext, -1), 1);
    X509_EXTENSION_free(ext);
}

static X509 *make_cert(EVP_PKEY *pub, const char *cn, X509 *issuer, EVP_PKEY *issuer_key,
                       bool ca)
{
    static long serial = 1;
    X509 *cert = X509_new();
    assert_non_null(cert);
    assert_int_equal(X509_set_version(cert, X509_VERSION_3), 1);
    assert_int_equal(ASN1_INTEGER_set(X509_get_serialNumber(cert), serial++), 1);
    X509_NAME *name = X509_get_subject_name(cert);
    assert_int_equal(X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, (const unsigned char *)cn,
                                                -1, -1, 0),
                     1);
    assert_int_equal(
        X509_set_issuer_name(cert, issuer ? X509_get_subject_name(issuer) : name), 1);
    assert_non_null(X509_gmtime_adj(X509_getm_notBefore(cert), -3600));
    assert_non_null(X509_gmtime_adj(X509_getm_notAfter(cert), 3600));
    assert_int_equal(X509_set_pubkey(cert, pub), 1);
    X509 *signer_cert = issuer ? issuer : cert;
    if (ca) {
        add_ext(cert, signer_cert, NID_basic_constraints, "critical,CA:TRUE");
        add_ext(cert, signer_cert, NID_key_usage, "critical,keyCertSign,cRLSign");
    } else {
        add_ext(cert, signer_cert, NID_basic_constraints, "critical,CA:FALSE");
        add_ext(cert, signer_cert, NID_ext_key_usage, "clientAuth,serverAuth");
    }
    assert_true(X509_sign(cert, issuer_key, EVP_sha256()) > 0);
    return cert;
}

/* ---- SoftHSM2 in a temporary directory --------------------------------- */

static void write_text(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    assert_int_equal(fputs(text, f) >= 0, 1);
    assert_int_equal(fclose(f), 0);
}

static int softhsm_setup(fixture *f)
{
    const char *tmp = getenv("TMPDIR");
    snprintf(f->dir, sizeof f->dir, "%s/enroll-tls-XXXXXX", tmp && tmp[0] ? tmp : "/tmp");
    if (mkdtemp(f->dir) == NULL)
        return -1;
    char path[PATH_MAX + 32], text[PATH_MAX + 128];
    snprintf(path, sizeof path, "%s/tokens", f->dir);
    if (mkdir(path, 0700) != 0)
        return -1;
    snprintf(text, sizeof text,
             "directories.tokendir = %s/tokens\nobjectstore.backend = file\nlog.level = ERROR\n",
             f->dir);
    snprintf(path, sizeof path, "%s/softhsm2.conf", f->dir);
    write_text(path, text);
    setenv("SOFTHSM2_CONF", path, 1);
    unsetenv("ENROLL_PKCS11_MODULE");
    unsetenv("ENROLL_PKCS11_PIN");
    if (system("softhsm2-util --init-token --free --label " TOKEN " --so-pin " SO_PIN
               " --pin " PIN " >/dev/null") != 0)
        return -1;
    return 0;
}

static int group_setup(void **state)
{
    fixture *f = calloc(1, sizeof *f);
    if (f == NULL)
        return -1;
    *state = f;
    f->ca_key = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
    f->server_key = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
    if (f->ca_key == NULL || f->server_key == NULL)
        return -1;
    f->ca = make_cert(f->ca_key, "test CA", NULL, f->ca_key, true);
    f->server_cert = make_cert(f->server_key, "server", f->ca, f->ca_key, false);
    if (access(MODULE, R_OK) != 0)
        return 0;
    if (softhsm_setup(f) != 0)
        return -1;
    f->ready = true;
    return 0;
}

static int remove_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path);
}

static int group_teardown(void **state)
{
    fixture *f = *state;
    if (f->dir[0] != '\0')
        nftw(f->dir, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
    X509_free(f->server_cert);
    X509_free(f->ca);
    EVP_PKEY_free(f->server_key);
    EVP_PKEY_free(f->ca_key);
    free(f);
    return 0;
}

static fixture *require_softhsm(void **state)
{
    fixture *f = *state;
    /* Not a skip: a machine without SoftHSM2 would pass without running these. */
    if (!f->ready)
        fail_msg("SoftHSM2 (%s) is not installed: scripts/install-deps.sh installs softhsm2", MODULE);
    return f;
}

/* ---- the handshake ----------------------------------------------------- */

static bool step(SSL *ssl, bool *done)
{
    if (*done)
        return true;
    int r = SSL_do_handshake(ssl);
    if (r == 1) {
        *done = true;
        return true;
    }
    int e = SSL_get_error(ssl, r);
    return e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE;
}

typedef struct outcome {
    bool ok;
    bool server_saw_cert; /* the server has our certificate and verified it */
    int version;
    char client_error[256];
} outcome;

/* One handshake between a client SSL_CTX (made in the key's library
 * context) and a server requiring a client certificate from `f->ca`. */
static outcome handshake(const fixture *f, SSL_CTX *client_ctx, int version, X509 *client_cert)
{
    outcome out = {0};
    SSL_CTX *sctx = SSL_CTX_new(TLS_server_method());
    assert_non_null(sctx);
    assert_int_equal(SSL_CTX_set_min_proto_version(sctx, version), 1);
    assert_int_equal(SSL_CTX_set_max_proto_version(sctx, version), 1);
    assert_int_equal(SSL_CTX_use_certificate(sctx, f->server_cert), 1);
    assert_int_equal(SSL_CTX_use_PrivateKey(sctx, f->server_key), 1);
    assert_int_equal(X509_STORE_add_cert(SSL_CTX_get_cert_store(sctx), f->ca), 1);
    SSL_CTX_set_verify(sctx, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, NULL);

    assert_int_equal(SSL_CTX_set_min_proto_version(client_ctx, version), 1);
    assert_int_equal(SSL_CTX_set_max_proto_version(client_ctx, version), 1);
    assert_int_equal(X509_STORE_add_cert(SSL_CTX_get_cert_store(client_ctx), f->ca), 1);
    SSL_CTX_set_verify(client_ctx, SSL_VERIFY_PEER, NULL);

    SSL *server = SSL_new(sctx), *client = SSL_new(client_ctx);
    BIO *a = NULL, *b = NULL;
    assert_non_null(server);
    assert_non_null(client);
    assert_int_equal(BIO_new_bio_pair(&a, 0, &b, 0), 1);
    SSL_set_bio(client, a, a);
    SSL_set_bio(server, b, b);
    SSL_set_connect_state(client);
    SSL_set_accept_state(server);

    bool cdone = false, sdone = false, cok = true, sok = true;
    for (int i = 0; i < 64 && cok && sok && !(cdone && sdone); i++) {
        cok = step(client, &cdone);
        if (!cok)
            ERR_error_string_n(ERR_peek_last_error(), out.client_error, sizeof out.client_error);
        sok = step(server, &sdone);
    }
    out.ok = cdone && sdone;
    X509 *seen = SSL_get1_peer_certificate(server);
    out.server_saw_cert = out.ok && seen != NULL && X509_cmp(seen, client_cert) == 0 &&
                          SSL_get_verify_result(server) == X509_V_OK;
    out.version = SSL_version(client);
    X509_free(seen);
    SSL_free(client);
    SSL_free(server);
    SSL_CTX_free(sctx);
    ERR_clear_error();
    return out;
}

/* The client side for `signer`, with a certificate for `cert_key` (the
 * signer's own public key, or another to provoke a mismatch). */
typedef struct client {
    enr_tls_key *key;
    SSL_CTX *ctx;
    X509 *cert;
} client;

static enr_code client_make(const fixture *f, enr_signer *signer, EVP_PKEY *cert_key, client *c,
                            enr_error *err)
{
    memset(c, 0, sizeof *c);
    enr_code rc = enr_tls_key_new(signer, &c->key, err);
    if (rc != ENR_OK)
        return rc;
    c->ctx = SSL_CTX_new_ex(enr_tls_key_libctx(c->key), NULL, TLS_client_method());
    assert_non_null(c->ctx);
    c->cert = make_cert(cert_key ? cert_key : enr_signer_public_key(signer), "device", f->ca,
                        f->ca_key, false);
    assert_int_equal(SSL_CTX_use_certificate(c->ctx, c->cert), 1);
    return enr_tls_key_use(c->key, c->ctx, err);
}

static void client_free(client *c)
{
    SSL_CTX_free(c->ctx);
    enr_tls_key_free(c->key);
    X509_free(c->cert);
}

static enr_signer *token_signer(enr_key_type type, const char *label)
{
    char uri[256];
    snprintf(uri, sizeof uri, "pkcs11:token=" TOKEN ";object=%s", label);
    enr_error err = {0};
    enr_code rc = enr_key_generate_token(type, uri, &OPTIONS, true, &err);
    if (rc != ENR_OK)
        print_error("generate %s: %s\n", uri, err.message);
    assert_int_equal(rc, ENR_OK);
    enr_signer *signer = NULL;
    rc = enr_signer_open(uri, NULL, &OPTIONS, &signer, &err);
    if (rc != ENR_OK)
        print_error("open %s: %s\n", uri, err.message);
    assert_int_equal(rc, ENR_OK);
    assert_true(enr_signer_is_token(signer));
    return signer;
}

static void expect_handshake(const fixture *f, enr_signer *signer, int version,
                             const char *client_sigalgs)
{
    client c;
    enr_error err = {0};
    enr_code rc = client_make(f, signer, NULL, &c, &err);
    if (rc != ENR_OK)
        print_error("client: %s\n", err.message);
    assert_int_equal(rc, ENR_OK);
    if (client_sigalgs != NULL)
        assert_int_equal(SSL_CTX_set1_client_sigalgs_list(c.ctx, client_sigalgs), 1);
    outcome o = handshake(f, c.ctx, version, c.cert);
    if (!o.ok)
        print_error("handshake (version 0x%x) failed: %s\n", version, o.client_error);
    assert_true(o.ok);
    assert_true(o.server_saw_cert);
    assert_int_equal(o.version, version);
    client_free(&c);
}

/* ---- tests ------------------------------------------------------------- */

static void test_ec_p256_tls13_and_tls12(void **state)
{
    fixture *f = require_softhsm(state);
    enr_signer *signer = token_signer(ENR_KEY_EC_P256, "tls-ec256");
    expect_handshake(f, signer, TLS1_3_VERSION, NULL);
    expect_handshake(f, signer, TLS1_2_VERSION, NULL);
    enr_signer_free(signer);
    /* Nothing of ours leaked into the process's default library context. */
    assert_int_equal(OSSL_PROVIDER_available(NULL, "enroll-signer"), 0);
}

static void test_ec_p384_tls13(void **state)
{
    fixture *f = require_softhsm(state);
    enr_signer *signer = token_signer(ENR_KEY_EC_P384, "tls-ec384");
    expect_handshake(f, signer, TLS1_3_VERSION, NULL);
    expect_handshake(f, signer, TLS1_2_VERSION, "ECDSA+SHA384");
    enr_signer_free(signer);
}

/* TLS 1.3 signs with RSA-PSS; TLS 1.2 with PKCS#1 v1.5 when told so. */
static void test_rsa_tls13_pss_and_tls12_pkcs1(void **state)
{
    fixture *f = require_softhsm(state);
    enr_signer *signer = token_signer(ENR_KEY_RSA_2048, "tls-rsa");
    expect_handshake(f, signer, TLS1_3_VERSION, NULL);
    expect_handshake(f, signer, TLS1_2_VERSION, "RSA+SHA256");
    expect_handshake(f, signer, TLS1_2_VERSION, "RSA-PSS+SHA384");
    enr_signer_free(signer);
}

/* EVP_PKEY_sign over a digest (no handshake): ECDSA and RSA-PSS from the
 * token, verified with the public key by the default provider. */
static void sign_prehashed(EVP_PKEY *pkey, EVP_PKEY *pub, bool pss)
{
    static const unsigned char data[] = "handshake transcript, more or less";
    unsigned char digest[EVP_MAX_MD_SIZE];
    unsigned int digest_len = 0;
    assert_int_equal(EVP_Digest(data, sizeof data, digest, &digest_len, EVP_sha384(), NULL), 1);
    EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new_from_pkey(NULL, pkey, NULL);
    assert_non_null(ctx);
    assert_int_equal(EVP_PKEY_sign_init(ctx), 1);
    assert_int_equal(EVP_PKEY_CTX_set_signature_md(ctx, EVP_sha384()), 1);
    if (pss) {
        assert_int_equal(EVP_PKEY_CTX_set_rsa_padding(ctx, RSA_PKCS1_PSS_PADDING), 1);
        assert_int_equal(EVP_PKEY_CTX_set_rsa_pss_saltlen(ctx, RSA_PSS_SALTLEN_DIGEST), 1);
    }
    size_t len = 0;
    assert_int_equal(EVP_PKEY_sign(ctx, NULL, &len, digest, digest_len), 1);
    unsigned char *sig = malloc(len);
    assert_non_null(sig);
    assert_int_equal(EVP_PKEY_sign(ctx, sig, &len, digest, digest_len), 1);
    EVP_PKEY_CTX_free(ctx);

    EVP_PKEY_CTX *vctx = EVP_PKEY_CTX_new_from_pkey(NULL, pub, "provider=default");
    assert_non_null(vctx);
    assert_int_equal(EVP_PKEY_verify_init(vctx), 1);
    assert_int_equal(EVP_PKEY_CTX_set_signature_md(vctx, EVP_sha384()), 1);
    if (pss) {
        assert_int_equal(EVP_PKEY_CTX_set_rsa_padding(vctx, RSA_PKCS1_PSS_PADDING), 1);
        assert_int_equal(EVP_PKEY_CTX_set_rsa_pss_saltlen(vctx, RSA_PSS_SALTLEN_DIGEST), 1);
    }
    assert_int_equal(EVP_PKEY_verify(vctx, sig, len, digest, digest_len), 1);
    digest[0] ^= 1;
    assert_int_not_equal(EVP_PKEY_verify(vctx, sig, len, digest, digest_len), 1);
    EVP_PKEY_CTX_free(vctx);
    free(sig);
    ERR_clear_error();
}

static void test_sign_prehashed(void **state)
{
    require_softhsm(state);
    enr_signer *ec = token_signer(ENR_KEY_EC_P256, "tls-pre-ec");
    enr_signer *rsa = token_signer(ENR_KEY_RSA_2048, "tls-pre-rsa");
    enr_tls_key *eck = NULL, *rsak = NULL;
    enr_error err = {0};
    assert_int_equal(enr_tls_key_new(ec, &eck, &err), ENR_OK);
    assert_int_equal(enr_tls_key_new(rsa, &rsak, &err), ENR_OK);
    sign_prehashed(enr_tls_key_pkey(eck), enr_signer_public_key(ec), false);
    sign_prehashed(enr_tls_key_pkey(rsak), enr_signer_public_key(rsa), true);
    sign_prehashed(enr_tls_key_pkey(rsak), enr_signer_public_key(rsa), false);

    /* A PSS salt other than the digest length cannot be asked of the token:
     * refused, not signed some other way. */
    unsigned char digest[32] = {1}, sig[512];
    size_t len = sizeof sig;
    EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new_from_pkey(NULL, enr_tls_key_pkey(rsak), NULL);
    assert_non_null(ctx);
    assert_int_equal(EVP_PKEY_sign_init(ctx), 1);
    assert_int_equal(EVP_PKEY_CTX_set_signature_md(ctx, EVP_sha256()), 1);
    assert_int_equal(EVP_PKEY_CTX_set_rsa_padding(ctx, RSA_PKCS1_PSS_PADDING), 1);
    assert_int_equal(EVP_PKEY_CTX_set_rsa_pss_saltlen(ctx, 20), 1);
    assert_int_not_equal(EVP_PKEY_sign(ctx, sig, &len, digest, sizeof digest), 1);
    EVP_PKEY_CTX_free(ctx);
    ERR_clear_error();
    enr_tls_key_free(rsak);
    enr_tls_key_free(eck);
    enr_signer_free(rsa); /* reverse order of opening (token.h) */
    enr_signer_free(ec);
}

/* A certificate for another key is refused before any handshake. */
static void test_mismatched_certificate(void **state)
{
    fixture *f = require_softhsm(state);
    enr_signer *signer = token_signer(ENR_KEY_EC_P256, "tls-mismatch");
    EVP_PKEY *other = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
    assert_non_null(other);
    client c;
    enr_error err = {0};
    assert_int_equal(client_make(f, signer, other, &c, &err), ENR_E_VERIFY);
    assert_non_null(strstr(err.message, "another key"));
    /* And had it been used anyway, the server would not accept it. */
    SSL_CTX_free(c.ctx);
    c.ctx = SSL_CTX_new_ex(enr_tls_key_libctx(c.key), NULL, TLS_client_method());
    assert_non_null(c.ctx);
    assert_int_equal(SSL_CTX_use_certificate(c.ctx, c.cert), 1);
    ERR_set_mark();
    if (SSL_CTX_use_PrivateKey(c.ctx, enr_tls_key_pkey(c.key)) == 1) {
        outcome o = handshake(f, c.ctx, TLS1_3_VERSION, c.cert);
        assert_false(o.server_saw_cert);
    }
    ERR_pop_to_mark();
    client_free(&c);
    EVP_PKEY_free(other);
    enr_signer_free(signer);
}

/* Without a client key the server refuses: the tests above do judge. */
static void test_server_requires_certificate(void **state)
{
    fixture *f = *state;
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    assert_non_null(ctx);
    outcome o = handshake(f, ctx, TLS1_3_VERSION, f->server_cert);
    assert_false(o.server_saw_cert);
    SSL_CTX_free(ctx);
}

/* A wrong PIN stops at opening the key, with a message that names the
 * problem and not the PIN; nothing half-made is left to use. */
static void test_wrong_pin(void **state)
{
    require_softhsm(state);
    enr_signer_free(token_signer(ENR_KEY_EC_P256, "tls-pin"));
    const enr_token_options wrong = {MODULE, WRONG_PIN};
    enr_signer *signer = (enr_signer *)1;
    enr_error err = {0};
    assert_int_equal(enr_signer_open("pkcs11:token=" TOKEN ";object=tls-pin", NULL, &wrong,
                                     &signer, &err),
                     ENR_E_LOCKED);
    assert_null(signer);
    assert_non_null(strstr(err.message, "CKR_PIN_INCORRECT"));
    assert_null(strstr(err.message, WRONG_PIN));
}

/* A key file works the same way (and needs no token). */
static void test_file_key(void **state)
{
    fixture *f = *state;
    char path[] = "/tmp/enroll-tls-key-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    close(fd);
    enr_error err = {0};
    assert_int_equal(enr_key_generate_file(ENR_KEY_EC_P256, path, NULL, true, &err), ENR_OK);
    enr_signer *signer = NULL;
    assert_int_equal(enr_signer_open(path, NULL, NULL, &signer, &err), ENR_OK);
    expect_handshake(f, signer, TLS1_3_VERSION, NULL);
    expect_handshake(f, signer, TLS1_2_VERSION, NULL);
    enr_signer_free(signer);
    remove(path);
}

static void test_ed25519_refused(void **state)
{
    (void)state;
    char path[] = "/tmp/enroll-tls-key-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    close(fd);
    enr_error err = {0};
    assert_int_equal(enr_key_generate_file(ENR_KEY_ED25519, path, NULL, true, &err), ENR_OK);
    enr_signer *signer = NULL;
    assert_int_equal(enr_signer_open(path, NULL, NULL, &signer, &err), ENR_OK);
    enr_tls_key *key = (enr_tls_key *)1;
    assert_int_equal(enr_tls_key_new(signer, &key, &err), ENR_E_UNSUPPORTED);
    assert_null(key);
    enr_signer_free(signer);
    remove(path);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_server_requires_certificate),
        cmocka_unit_test(test_file_key),
        cmocka_unit_test(test_ed25519_refused),
        cmocka_unit_test(test_ec_p256_tls13_and_tls12),
        cmocka_unit_test(test_ec_p384_tls13),
        cmocka_unit_test(test_rsa_tls13_pss_and_tls12_pkcs1),
        cmocka_unit_test(test_sign_prehashed),
        cmocka_unit_test(test_mismatched_certificate),
        cmocka_unit_test(test_wrong_pin),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
