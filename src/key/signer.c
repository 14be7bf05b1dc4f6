#include "enroll/signer.h"

#include <openssl/err.h>
#include <openssl/objects.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "enroll/fileio.h"
#include "pkcs11/token.h"

struct enr_signer {
    EVP_PKEY *key;            /* file keys: the private key; tokens: NULL */
    EVP_PKEY *public_key;     /* always set */
    enr_token_key *token_key; /* tokens only */
    /* File keys: a DigestSign context initialised once for template_md and
     * copied per signature, so OpenSSL 3 fetches algorithms once, not per
     * certificate. */
    EVP_MD_CTX *template_ctx;
    const EVP_MD *template_md;
    X509_PUBKEY *spki;
};

static const struct {
    enr_key_type type;
    const char *name;
    const char *algorithm;
    const char *curve;
    size_t rsa_bits;
} KEY_TYPES[] = {
    {ENR_KEY_EC_P256, "ec-p256", "EC", "P-256", 0},
    {ENR_KEY_EC_P384, "ec-p384", "EC", "P-384", 0},
    {ENR_KEY_RSA_2048, "rsa-2048", "RSA", NULL, 2048},
    {ENR_KEY_RSA_3072, "rsa-3072", "RSA", NULL, 3072},
    {ENR_KEY_RSA_4096, "rsa-4096", "RSA", NULL, 4096},
    {ENR_KEY_ED25519, "ed25519", "ED25519", NULL, 0},
};
#define KEY_TYPE_COUNT (sizeof KEY_TYPES / sizeof KEY_TYPES[0])

enr_code enr_key_type_parse(const char *name, enr_key_type *out, enr_error *err)
{
    for (size_t i = 0; i < KEY_TYPE_COUNT; i++)
        if (strcmp(KEY_TYPES[i].name, name) == 0) {
            *out = KEY_TYPES[i].type;
            return ENR_OK;
        }
    return enr_error_set(err, ENR_E_USAGE,
                         "unknown key type '%s' (choose ec-p256, ec-p384, rsa-2048, rsa-3072, "
                         "rsa-4096 or ed25519)",
                         name);
}

const char *enr_key_type_name(enr_key_type type)
{
    for (size_t i = 0; i < KEY_TYPE_COUNT; i++)
        if (KEY_TYPES[i].type == type)
            return KEY_TYPES[i].name;
    return "unknown";
}

bool enr_key_ref_is_token(const char *ref)
{
    return strncasecmp(ref, "pkcs11:", 7) == 0; /* URI schemes are case-insensitive */
}

typedef struct keygen_progress {
    enr_keygen_progress_fn fn;
    void *arg;
} keygen_progress;

/* OpenSSL's keygen callback: for RSA it is called for every prime candidate
 * and test (EVP_PKEY_CTX_get_keygen_info phase 0..3), which is what makes
 * rsa-4096 take seconds; the caller decides what to show. */
static int keygen_cb(EVP_PKEY_CTX *ctx)
{
    keygen_progress *p = EVP_PKEY_CTX_get_app_data(ctx);
    if (p != NULL && p->fn != NULL)
        p->fn(EVP_PKEY_CTX_get_keygen_info(ctx, 0), p->arg);
    return 1; /* never abandon the generation */
}

static EVP_PKEY *generate(enr_key_type type, enr_keygen_progress_fn fn, void *arg, enr_error *err)
{
    for (size_t i = 0; i < KEY_TYPE_COUNT; i++) {
        if (KEY_TYPES[i].type != type)
            continue;
        EVP_PKEY *key = NULL;
        keygen_progress progress = {fn, arg};
        EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new_from_name(NULL, KEY_TYPES[i].algorithm, NULL);
        bool ok = ctx != NULL && EVP_PKEY_keygen_init(ctx) > 0;
        if (ok && KEY_TYPES[i].curve != NULL)
            ok = EVP_PKEY_CTX_set_group_name(ctx, KEY_TYPES[i].curve) > 0;
        if (ok && KEY_TYPES[i].rsa_bits != 0)
            ok = EVP_PKEY_CTX_set_rsa_keygen_bits(ctx, (int)KEY_TYPES[i].rsa_bits) > 0;
        if (ok && fn != NULL) {
            EVP_PKEY_CTX_set_app_data(ctx, &progress);
            EVP_PKEY_CTX_set_cb(ctx, keygen_cb);
        }
        if (!ok || EVP_PKEY_generate(ctx, &key) <= 0) {
            EVP_PKEY_free(key);
            key = NULL;
            enr_error_openssl(err, ENR_E_CRYPTO, "generating a %s key failed", KEY_TYPES[i].name);
        }
        EVP_PKEY_CTX_free(ctx);
        return key;
    }
    enr_error_set(err, ENR_E_USAGE, "unknown key type %d", (int)type);
    return NULL;
}

enr_code enr_key_generate(enr_key_type type, EVP_PKEY **out, enr_error *err)
{
    *out = generate(type, NULL, NULL, err);
    return *out != NULL ? ENR_OK : err->code;
}

enr_code enr_key_generate_file(enr_key_type type, const char *path, const char *passphrase,
                               bool overwrite, enr_error *err)
{
    return enr_key_generate_file_progress(type, path, passphrase, overwrite, NULL, NULL, err);
}

enr_code enr_key_generate_file_progress(enr_key_type type, const char *path, const char *passphrase,
                                        bool overwrite, enr_keygen_progress_fn progress, void *arg,
                                        enr_error *err)
{
    if (!overwrite && strcmp(path, "-") != 0) {
        FILE *probe = fopen(path, "r");
        if (probe != NULL) {
            fclose(probe);
            return enr_error_set(err, ENR_E_EXISTS,
                                 "%s: already exists; refusing to overwrite a key (use --force to replace it)",
                                 path);
        }
    }
    EVP_PKEY *key = generate(type, progress, arg, err);
    if (key == NULL)
        return err ? err->code : ENR_E_CRYPTO;

    /* Secure-heap BIO: the plaintext key is wiped when the BIO is freed. */
    BIO *bio = BIO_new(BIO_s_secmem());
    enr_code rc = ENR_OK;
    if (bio == NULL) {
        rc = enr_error_openssl(err, ENR_E_NOMEM, "out of memory");
        goto done;
    }
    int ok;
    if (passphrase != NULL)
        ok = PEM_write_bio_PKCS8PrivateKey(bio, key, EVP_aes_256_cbc(), passphrase,
                                           (int)strlen(passphrase), NULL, NULL);
    else
        ok = PEM_write_bio_PrivateKey(bio, key, NULL, NULL, 0, NULL, NULL);
    if (!ok) {
        rc = enr_error_openssl(err, ENR_E_CRYPTO, "cannot encode the new key");
        goto done;
    }
    char *pem = NULL;
    long pem_len = BIO_get_mem_data(bio, &pem);
    rc = enr_file_write_atomic(path, pem, (size_t)pem_len, 0600, overwrite, err);
done:
    BIO_free(bio);
    EVP_PKEY_free(key);
    return rc;
}

enr_code enr_key_generate_token(enr_key_type type, const char *uri, const enr_token_options *opts,
                                bool overwrite, enr_error *err)
{
    return enr_token_key_generate(type, uri, opts, overwrite, err);
}

typedef struct passphrase_request {
    const char *passphrase;
    int asked;
} passphrase_request;

static int passphrase_cb(char *buf, int size, int rwflag, void *u)
{
    passphrase_request *req = u;
    req->asked = 1;
    if (req->passphrase == NULL)
        return -1;
    size_t n = strlen(req->passphrase);
    if (size < 0 || n > (size_t)size)
        return -1;
    memcpy(buf, req->passphrase, n);
    return (int)n;
}

static enr_code open_file_key(const char *path, const char *passphrase, EVP_PKEY **out,
                              enr_error *err)
{
    enr_buf buf;
    enr_code rc = enr_file_read(path, 64 * 1024, &buf, err);
    if (rc != ENR_OK)
        return rc;
    BIO *bio = BIO_new_mem_buf(buf.data, (int)buf.len);
    passphrase_request req = {passphrase, 0};
    EVP_PKEY *key = bio ? PEM_read_bio_PrivateKey(bio, NULL, passphrase_cb, &req) : NULL;
    BIO_free(bio);
    if (key == NULL && !req.asked) {
        ERR_clear_error();
        const unsigned char *p = buf.data;
        key = d2i_AutoPrivateKey(NULL, &p, (long)buf.len);
    }
    OPENSSL_cleanse(buf.data, buf.len);
    enr_buf_free(&buf);
    if (key == NULL) {
        /* Missing or wrong, the key stays locked: one code for both, so a
         * caller never tells "no passphrase" from "bad passphrase" by wording. */
        if (req.asked && passphrase == NULL)
            return enr_error_set(err, ENR_E_LOCKED,
                                 "%s: the key is encrypted; give its passphrase with --pass-file", path);
        if (req.asked)
            return enr_error_openssl(err, ENR_E_LOCKED,
                                     "%s: cannot decrypt the key (wrong passphrase?)", path);
        return enr_error_openssl(err, ENR_E_PARSE,
                                 "%s: not a private key (expected PEM or DER PKCS#8, PKCS#1 or SEC1)",
                                 path);
    }
    ERR_clear_error();
    *out = key;
    return ENR_OK;
}

/* A public-only copy, so that describing or comparing never touches private material. */
static EVP_PKEY *public_copy(EVP_PKEY *key)
{
    unsigned char *der = NULL;
    int n = i2d_PUBKEY(key, &der);
    if (n <= 0)
        return NULL;
    const unsigned char *p = der;
    EVP_PKEY *pub = d2i_PUBKEY(NULL, &p, n);
    OPENSSL_free(der);
    return pub;
}

enr_code enr_signer_open(const char *ref, const char *passphrase, const enr_token_options *opts,
                         enr_signer **out, enr_error *err)
{
    *out = NULL;
    enr_signer *s = calloc(1, sizeof *s);
    if (s == NULL)
        return enr_error_set(err, ENR_E_NOMEM, "out of memory");
    enr_code rc;
    if (enr_key_ref_is_token(ref)) {
        enr_token_options none = {NULL, NULL};
        rc = enr_token_key_open(ref, opts ? opts : &none, &s->token_key, &s->public_key, err);
    } else {
        rc = open_file_key(ref, passphrase, &s->key, err);
        if (rc == ENR_OK) {
            s->public_key = public_copy(s->key);
            if (s->public_key == NULL)
                rc = enr_error_openssl(err, ENR_E_CRYPTO, "%s: cannot extract the public key", ref);
        }
    }
    if (rc == ENR_OK && !X509_PUBKEY_set(&s->spki, s->public_key))
        rc = enr_error_openssl(err, ENR_E_CRYPTO, "%s: cannot encode the public key", ref);
    if (rc != ENR_OK) {
        enr_signer_free(s);
        return rc;
    }
    *out = s;
    return ENR_OK;
}

void enr_signer_free(enr_signer *signer)
{
    if (signer == NULL)
        return;
    EVP_MD_CTX_free(signer->template_ctx);
    X509_PUBKEY_free(signer->spki);
    EVP_PKEY_free(signer->key);
    EVP_PKEY_free(signer->public_key);
    enr_token_key_free(signer->token_key);
    free(signer);
}

EVP_PKEY *enr_signer_public_key(const enr_signer *signer)
{
    return signer->public_key;
}

const X509_PUBKEY *enr_signer_spki(const enr_signer *signer)
{
    return signer->spki;
}

bool enr_signer_is_token(const enr_signer *signer)
{
    return signer->token_key != NULL;
}

static bool is_ed25519(const enr_signer *signer)
{
    return EVP_PKEY_get_base_id(signer->public_key) == EVP_PKEY_ED25519;
}

enr_code enr_signer_algorithm(const enr_signer *signer, const EVP_MD *md, X509_ALGOR **out,
                              enr_error *err)
{
    *out = NULL;
    int sig_nid = NID_undef, param_type = V_ASN1_UNDEF;
    int key_nid = EVP_PKEY_get_base_id(signer->public_key);
    if (key_nid == EVP_PKEY_ED25519) {
        sig_nid = NID_ED25519;
    } else {
        if (md == NULL)
            md = EVP_sha256();
        if (!OBJ_find_sigid_by_algs(&sig_nid, EVP_MD_get_type(md), key_nid))
            return enr_error_set(err, ENR_E_UNSUPPORTED,
                                 "no signature algorithm for a %s key with %s",
                                 EVP_PKEY_get0_type_name(signer->public_key), EVP_MD_get0_name(md));
        /* RFC 4055: RSA PKCS#1 v1.5 carries NULL parameters; RFC 5758: ECDSA none. */
        if (key_nid == EVP_PKEY_RSA)
            param_type = V_ASN1_NULL;
    }
    X509_ALGOR *alg = X509_ALGOR_new();
    if (alg == NULL || !X509_ALGOR_set0(alg, OBJ_nid2obj(sig_nid), param_type, NULL)) {
        X509_ALGOR_free(alg);
        return enr_error_openssl(err, ENR_E_CRYPTO, "cannot build the signature algorithm");
    }
    *out = alg;
    return ENR_OK;
}

static EVP_MD_CTX *signing_context(enr_signer *signer, const EVP_MD *md, enr_error *err);

enr_code enr_signer_sign(enr_signer *signer, const EVP_MD *md, const unsigned char *tbs,
                         size_t tbs_len, unsigned char **sig, size_t *sig_len, enr_error *err)
{
    *sig = NULL;
    *sig_len = 0;
    if (md == NULL)
        md = EVP_sha256();
    if (signer->token_key != NULL)
        return enr_token_key_sign(signer->token_key, md, tbs, tbs_len, sig, sig_len, err);

    EVP_MD_CTX *ctx = signing_context(signer, md, err);
    if (ctx == NULL)
        return err ? err->code : ENR_E_CRYPTO;
    enr_code rc = ENR_OK;
    size_t len = 0;
    unsigned char *buf = NULL;
    if (EVP_DigestSign(ctx, NULL, &len, tbs, tbs_len) != 1 || (buf = OPENSSL_malloc(len)) == NULL ||
        EVP_DigestSign(ctx, buf, &len, tbs, tbs_len) != 1) {
        OPENSSL_free(buf);
        rc = enr_error_openssl(err, ENR_E_CRYPTO, "signing failed");
    } else {
        *sig = buf;
        *sig_len = len;
    }
    EVP_MD_CTX_free(ctx);
    return rc;
}

enr_code enr_signer_sign_digest(enr_signer *signer, const EVP_MD *md, bool rsa_pss,
                                const unsigned char *digest, size_t digest_len,
                                unsigned char **sig, size_t *sig_len, enr_error *err)
{
    *sig = NULL;
    *sig_len = 0;
    int base = EVP_PKEY_get_base_id(signer->public_key);
    if (base != EVP_PKEY_EC && base != EVP_PKEY_RSA)
        return enr_error_set(err, ENR_E_UNSUPPORTED, "a %s key cannot sign a digest",
                             EVP_PKEY_get0_type_name(signer->public_key));
    if (rsa_pss && base != EVP_PKEY_RSA)
        return enr_error_set(err, ENR_E_USAGE, "RSA-PSS asked of a %s key",
                             EVP_PKEY_get0_type_name(signer->public_key));
    if (signer->token_key != NULL)
        return enr_token_key_sign_digest(signer->token_key, md, rsa_pss, digest, digest_len, sig,
                                         sig_len, err);

    EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new_from_pkey(NULL, signer->key, NULL);
    unsigned char *buf = NULL;
    size_t len = 0;
    int ok = ctx != NULL && EVP_PKEY_sign_init(ctx) == 1 &&
             EVP_PKEY_CTX_set_signature_md(ctx, md) == 1;
    if (ok && rsa_pss)
        ok = EVP_PKEY_CTX_set_rsa_padding(ctx, RSA_PKCS1_PSS_PADDING) == 1 &&
             EVP_PKEY_CTX_set_rsa_mgf1_md(ctx, md) == 1 &&
             EVP_PKEY_CTX_set_rsa_pss_saltlen(ctx, RSA_PSS_SALTLEN_DIGEST) == 1;
    ok = ok && EVP_PKEY_sign(ctx, NULL, &len, digest, digest_len) == 1 &&
         (buf = OPENSSL_malloc(len)) != NULL &&
         EVP_PKEY_sign(ctx, buf, &len, digest, digest_len) == 1;
    EVP_PKEY_CTX_free(ctx);
    if (!ok) {
        OPENSSL_free(buf);
        return enr_error_openssl(err, ENR_E_CRYPTO, "signing the %s digest failed",
                                 EVP_MD_get0_name(md));
    }
    *sig = buf;
    *sig_len = len;
    return ENR_OK;
}

/* A ready DigestSign context for `md` (file keys only); NULL on failure. */
static EVP_MD_CTX *signing_context(enr_signer *signer, const EVP_MD *md, enr_error *err)
{
    if (is_ed25519(signer))
        md = NULL;
    if (signer->template_ctx == NULL || signer->template_md != md) {
        EVP_MD_CTX_free(signer->template_ctx);
        signer->template_ctx = EVP_MD_CTX_new();
        signer->template_md = md;
        if (signer->template_ctx == NULL ||
            EVP_DigestSignInit_ex(signer->template_ctx, NULL, md ? EVP_MD_get0_name(md) : NULL, NULL,
                                  NULL, signer->key, NULL) != 1) {
            EVP_MD_CTX_free(signer->template_ctx);
            signer->template_ctx = NULL;
            enr_error_openssl(err, ENR_E_CRYPTO, "cannot prepare signing");
            return NULL;
        }
    }
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    if (ctx == NULL || EVP_MD_CTX_copy_ex(ctx, signer->template_ctx) != 1) {
        EVP_MD_CTX_free(ctx);
        enr_error_openssl(err, ENR_E_CRYPTO, "cannot copy the signing context");
        return NULL;
    }
    return ctx;
}

/* Puts `sig` into a BIT STRING that says "0 unused bits" explicitly. */
static enr_code set_signature_bits(ASN1_BIT_STRING *bits, const unsigned char *sig, size_t len,
                                   enr_error *err)
{
    if (len > INT32_MAX || !ASN1_BIT_STRING_set(bits, (unsigned char *)sig, (int)len))
        return enr_error_set(err, ENR_E_NOMEM, "out of memory");
    bits->flags &= ~(ASN1_STRING_FLAG_BITS_LEFT | 0x07);
    bits->flags |= ASN1_STRING_FLAG_BITS_LEFT;
    return ENR_OK;
}

/* OpenSSL 3.0 has no setters for a certificate's signature fields, so a token
 * key fills the embedded ones in place: the inner algorithm (part of what is
 * signed), then, after signing the re-encoded TBSCertificate, the outer
 * algorithm and the signature. */
static enr_code sign_cert_in_token(enr_signer *signer, X509 *cert, const EVP_MD *md, enr_error *err)
{
    X509_ALGOR *alg = NULL;
    unsigned char *tbs = NULL, *sig = NULL;
    size_t sig_len = 0;
    enr_code rc = enr_signer_algorithm(signer, md, &alg, err);
    if (rc != ENR_OK)
        return rc;
    const ASN1_BIT_STRING *outer_sig = NULL;
    const X509_ALGOR *outer_alg = NULL;
    X509_get0_signature(&outer_sig, &outer_alg, cert);
    int tbs_len;
    if (!X509_ALGOR_copy((X509_ALGOR *)X509_get0_tbs_sigalg(cert), alg) ||
        (tbs_len = i2d_re_X509_tbs(cert, &tbs)) <= 0) {
        rc = enr_error_openssl(err, ENR_E_CRYPTO, "cannot encode the certificate body");
        goto done;
    }
    if ((rc = enr_signer_sign(signer, md, tbs, (size_t)tbs_len, &sig, &sig_len, err)) != ENR_OK)
        goto done;
    if (!X509_ALGOR_copy((X509_ALGOR *)outer_alg, alg)) {
        rc = enr_error_openssl(err, ENR_E_CRYPTO, "cannot set the signature algorithm");
        goto done;
    }
    rc = set_signature_bits((ASN1_BIT_STRING *)outer_sig, sig, sig_len, err);
done:
    X509_ALGOR_free(alg);
    OPENSSL_free(tbs);
    OPENSSL_free(sig);
    return rc;
}

enr_code enr_signer_sign_cert(enr_signer *signer, X509 *cert, const EVP_MD *md, enr_error *err)
{
    if (md == NULL)
        md = EVP_sha256();
    if (signer->token_key != NULL)
        return sign_cert_in_token(signer, cert, md, err);
    EVP_MD_CTX *ctx = signing_context(signer, md, err);
    if (ctx == NULL)
        return err ? err->code : ENR_E_CRYPTO;
    int ok = X509_sign_ctx(cert, ctx) > 0;
    EVP_MD_CTX_free(ctx);
    return ok ? ENR_OK : enr_error_openssl(err, ENR_E_CRYPTO, "signing the certificate failed");
}

/* There is no way at all to reach a CRL's inner AlgorithmIdentifier in 3.0,
 * so a token-signed CRL is first signed by a throwaway key of the same type
 * (which fills in both identifiers, as they depend only on key type and
 * hash), and then the token's signature over the re-encoded TBSCertList
 * replaces the throwaway one. CRLs are rare; the extra key costs little. */
static enr_code sign_crl_in_token(enr_signer *signer, X509_CRL *crl, const EVP_MD *md,
                                  enr_error *err)
{
    EVP_PKEY_CTX *kctx = EVP_PKEY_CTX_new_from_pkey(NULL, signer->public_key, NULL);
    EVP_PKEY *throwaway = NULL;
    unsigned char *tbs = NULL, *sig = NULL;
    size_t sig_len = 0;
    enr_code rc = ENR_OK;
    if (kctx == NULL || EVP_PKEY_keygen_init(kctx) != 1 || EVP_PKEY_keygen(kctx, &throwaway) != 1) {
        rc = enr_error_openssl(err, ENR_E_CRYPTO, "cannot prepare the CRL signature algorithm");
        goto done;
    }
    if (X509_CRL_sign(crl, throwaway, is_ed25519(signer) ? NULL : md) <= 0) {
        rc = enr_error_openssl(err, ENR_E_CRYPTO, "cannot prepare the CRL signature algorithm");
        goto done;
    }
    int tbs_len = i2d_re_X509_CRL_tbs(crl, &tbs);
    if (tbs_len <= 0) {
        rc = enr_error_openssl(err, ENR_E_CRYPTO, "cannot encode the CRL body");
        goto done;
    }
    if ((rc = enr_signer_sign(signer, md, tbs, (size_t)tbs_len, &sig, &sig_len, err)) != ENR_OK)
        goto done;
    const ASN1_BIT_STRING *outer_sig = NULL;
    X509_CRL_get0_signature(crl, &outer_sig, NULL);
    rc = set_signature_bits((ASN1_BIT_STRING *)outer_sig, sig, sig_len, err);
done:
    EVP_PKEY_CTX_free(kctx);
    EVP_PKEY_free(throwaway);
    OPENSSL_free(tbs);
    OPENSSL_free(sig);
    return rc;
}

enr_code enr_signer_sign_crl(enr_signer *signer, X509_CRL *crl, const EVP_MD *md, enr_error *err)
{
    if (md == NULL)
        md = EVP_sha256();
    if (signer->token_key != NULL)
        return sign_crl_in_token(signer, crl, md, err);
    EVP_MD_CTX *ctx = signing_context(signer, md, err);
    if (ctx == NULL)
        return err ? err->code : ENR_E_CRYPTO;
    int ok = X509_CRL_sign_ctx(crl, ctx) > 0;
    EVP_MD_CTX_free(ctx);
    return ok ? ENR_OK : enr_error_openssl(err, ENR_E_CRYPTO, "signing the CRL failed");
}

enr_code enr_signer_token_facts_get(const enr_signer *signer, enr_signer_token_facts *out,
                                    enr_error *err)
{
    memset(out, 0, sizeof *out);
    if (signer->token_key == NULL)
        return ENR_OK;
    return enr_token_key_facts(signer->token_key, out, err);
}
