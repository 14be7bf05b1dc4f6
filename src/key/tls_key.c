/* A built-in OpenSSL 3 provider around enr_signer (tls_key.h).
 *
 * Key management: "EC" and "RSA" (the names libssl recognises a key type
 * by), holding the public half as an ordinary default-provider EVP_PKEY
 * (questions about the key, comparisons and export go to it) plus the
 * borrowed signer. A key made without a signer is public only: that is how
 * OpenSSL compares our key with a certificate's, by importing the
 * certificate's key into our key management.
 *
 * Signature: one algorithm with a name of its own, which the key management
 * names as the one for its keys, so OpenSSL never pairs our keys with the
 * default provider's ECDSA/RSA nor the default provider's keys with ours.
 * It hashes in software and hands the digest to enr_signer_sign_digest.
 *
 * The library context prefers the default provider ("?provider=default"),
 * so that fetching "EC" or "RSA" for anything but our key (the server's
 * key, ECDHE) finds the default provider's full implementation. */
#include "enroll/tls_key.h"

#include <openssl/core_dispatch.h>
#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/params.h>
#include <openssl/provider.h>
#include <openssl/rsa.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "enroll/pubkey.h"

#define PROVIDER_NAME "enroll-signer"
#define PROVIDER_QUERY "provider=" PROVIDER_NAME
#define SIGNATURE_NAME "ENROLL-SIGNER"
/* The import parameter that carries the enr_signer pointer. */
#define PARAM_SIGNER "enroll-signer"

struct enr_tls_key {
    OSSL_LIB_CTX *libctx;
    OSSL_PROVIDER *ours;
    OSSL_PROVIDER *deflt;
    EVP_PKEY *pkey;
    enr_signer *signer; /* borrowed */
};

/* ---- key management -------------------------------------------------- */

typedef enum { KIND_EC, KIND_RSA } key_kind;

typedef struct prov_key {
    key_kind kind;
    EVP_PKEY *pub;      /* public half, in the default library context */
    enr_signer *signer; /* NULL for a public key */
} prov_key;

static const char *kind_name(key_kind kind)
{
    return kind == KIND_EC ? "EC" : "RSA";
}

static void *key_new(key_kind kind)
{
    prov_key *k = calloc(1, sizeof *k);
    if (k != NULL)
        k->kind = kind;
    return k;
}

static void *ec_new(void *provctx)
{
    return key_new(KIND_EC);
}

static void *rsa_new(void *provctx)
{
    return key_new(KIND_RSA);
}

static void key_free(void *keydata)
{
    prov_key *k = keydata;
    if (k == NULL)
        return;
    EVP_PKEY_free(k->pub);
    free(k);
}

static int key_has(const void *keydata, int selection)
{
    const prov_key *k = keydata;
    if (k == NULL)
        return 0;
    if ((selection & OSSL_KEYMGMT_SELECT_PRIVATE_KEY) != 0 && k->signer == NULL)
        return 0;
    if ((selection & (OSSL_KEYMGMT_SELECT_PUBLIC_KEY | OSSL_KEYMGMT_SELECT_ALL_PARAMETERS)) != 0 &&
        k->pub == NULL)
        return 0;
    return 1;
}

static int key_match(const void *keydata1, const void *keydata2, int selection)
{
    const prov_key *a = keydata1, *b = keydata2;
    if (a == NULL || b == NULL || a->pub == NULL || b->pub == NULL || a->kind != b->kind)
        return 0;
    if ((selection & OSSL_KEYMGMT_SELECT_KEYPAIR) != 0)
        return enr_pubkey_equal(a->pub, b->pub);
    return EVP_PKEY_parameters_eq(a->pub, b->pub) == 1;
}

static int key_import(void *keydata, int selection, const OSSL_PARAM params[])
{
    prov_key *k = keydata;
    if (k == NULL || k->pub != NULL)
        return 0;
    const OSSL_PARAM *p = OSSL_PARAM_locate_const(params, PARAM_SIGNER);
    if (p != NULL) {
        const void *ptr = NULL;
        size_t len = 0;
        if (!OSSL_PARAM_get_octet_ptr(p, &ptr, &len) || ptr == NULL)
            return 0;
        /* Only enr_tls_key_new, which owns this library context, imports
         * with a signer; the const is the param API's. */
        enr_signer *signer = (enr_signer *)(uintptr_t)ptr;
        EVP_PKEY *pub = enr_signer_public_key(signer);
        if (!EVP_PKEY_is_a(pub, kind_name(k->kind)) || !EVP_PKEY_up_ref(pub))
            return 0;
        k->pub = pub;
        k->signer = signer;
        return 1;
    }
    /* Without a signer there is nothing to sign with: a public key only. */
    if ((selection & OSSL_KEYMGMT_SELECT_PRIVATE_KEY) != 0)
        return 0;
    OSSL_PARAM *copy = OSSL_PARAM_dup(params);
    EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new_from_name(NULL, kind_name(k->kind), "provider=default");
    int ok = copy != NULL && ctx != NULL && EVP_PKEY_fromdata_init(ctx) == 1 &&
             EVP_PKEY_fromdata(ctx, &k->pub,
                               (selection & OSSL_KEYMGMT_SELECT_PUBLIC_KEY) != 0
                                   ? EVP_PKEY_PUBLIC_KEY
                                   : EVP_PKEY_KEY_PARAMETERS,
                               copy) == 1;
    EVP_PKEY_CTX_free(ctx);
    OSSL_PARAM_free(copy);
    return ok;
}

static int key_export(void *keydata, int selection, OSSL_CALLBACK *cb, void *cbarg)
{
    const prov_key *k = keydata;
    /* The private half cannot leave the token: what can be exported is the
     * public key and the domain parameters. */
    if (k == NULL || k->pub == NULL ||
        (selection & (OSSL_KEYMGMT_SELECT_PUBLIC_KEY | OSSL_KEYMGMT_SELECT_ALL_PARAMETERS)) == 0)
        return 0;
    OSSL_PARAM *params = NULL;
    int what = (selection & OSSL_KEYMGMT_SELECT_PUBLIC_KEY) != 0 ? EVP_PKEY_PUBLIC_KEY
                                                                 : EVP_PKEY_KEY_PARAMETERS;
    if (EVP_PKEY_todata(k->pub, what, &params) != 1)
        return 0;
    int ok = cb(params, cbarg);
    OSSL_PARAM_free(params);
    return ok;
}

static const OSSL_PARAM EC_TYPES[] = {
    OSSL_PARAM_utf8_string(OSSL_PKEY_PARAM_GROUP_NAME, NULL, 0),
    OSSL_PARAM_octet_string(OSSL_PKEY_PARAM_PUB_KEY, NULL, 0),
    OSSL_PARAM_END,
};

static const OSSL_PARAM RSA_TYPES[] = {
    OSSL_PARAM_BN(OSSL_PKEY_PARAM_RSA_N, NULL, 0),
    OSSL_PARAM_BN(OSSL_PKEY_PARAM_RSA_E, NULL, 0),
    OSSL_PARAM_END,
};

static const OSSL_PARAM *ec_types(int selection)
{
    return EC_TYPES;
}

static const OSSL_PARAM *rsa_types(int selection)
{
    return RSA_TYPES;
}

/* Size, security strength, group and the like are the public key's. */
static int key_get_params(void *keydata, OSSL_PARAM params[])
{
    const prov_key *k = keydata;
    if (k == NULL || k->pub == NULL)
        return 0;
    return EVP_PKEY_get_params(k->pub, params);
}

static const OSSL_PARAM GETTABLE[] = {
    OSSL_PARAM_int(OSSL_PKEY_PARAM_BITS, NULL),
    OSSL_PARAM_int(OSSL_PKEY_PARAM_SECURITY_BITS, NULL),
    OSSL_PARAM_int(OSSL_PKEY_PARAM_MAX_SIZE, NULL),
    OSSL_PARAM_utf8_string(OSSL_PKEY_PARAM_DEFAULT_DIGEST, NULL, 0),
    OSSL_PARAM_utf8_string(OSSL_PKEY_PARAM_GROUP_NAME, NULL, 0),
    OSSL_PARAM_utf8_string(OSSL_PKEY_PARAM_EC_POINT_CONVERSION_FORMAT, NULL, 0),
    OSSL_PARAM_octet_string(OSSL_PKEY_PARAM_PUB_KEY, NULL, 0),
    OSSL_PARAM_octet_string(OSSL_PKEY_PARAM_ENCODED_PUBLIC_KEY, NULL, 0),
    OSSL_PARAM_BN(OSSL_PKEY_PARAM_RSA_N, NULL, 0),
    OSSL_PARAM_BN(OSSL_PKEY_PARAM_RSA_E, NULL, 0),
    OSSL_PARAM_END,
};

static const OSSL_PARAM *key_gettable_params(void *provctx)
{
    return GETTABLE;
}

static const char *key_operation_name(int operation_id)
{
    return operation_id == OSSL_OP_SIGNATURE ? SIGNATURE_NAME : NULL;
}

static void *key_dup(const void *keydata, int selection)
{
    const prov_key *k = keydata;
    prov_key *copy = key_new(k->kind);
    if (copy == NULL)
        return NULL;
    if (k->pub != NULL && !EVP_PKEY_up_ref(k->pub)) {
        free(copy);
        return NULL;
    }
    copy->pub = k->pub;
    if ((selection & OSSL_KEYMGMT_SELECT_PRIVATE_KEY) != 0)
        copy->signer = k->signer;
    return copy;
}

#define KEYMGMT_COMMON(types)                                                          \
    {OSSL_FUNC_KEYMGMT_FREE, (void (*)(void))key_free},                                \
        {OSSL_FUNC_KEYMGMT_HAS, (void (*)(void))key_has},                              \
        {OSSL_FUNC_KEYMGMT_MATCH, (void (*)(void))key_match},                          \
        {OSSL_FUNC_KEYMGMT_IMPORT, (void (*)(void))key_import},                        \
        {OSSL_FUNC_KEYMGMT_IMPORT_TYPES, (void (*)(void))types},                       \
        {OSSL_FUNC_KEYMGMT_EXPORT, (void (*)(void))key_export},                        \
        {OSSL_FUNC_KEYMGMT_EXPORT_TYPES, (void (*)(void))types},                       \
        {OSSL_FUNC_KEYMGMT_GET_PARAMS, (void (*)(void))key_get_params},                \
        {OSSL_FUNC_KEYMGMT_GETTABLE_PARAMS, (void (*)(void))key_gettable_params},      \
        {OSSL_FUNC_KEYMGMT_QUERY_OPERATION_NAME, (void (*)(void))key_operation_name},  \
        {OSSL_FUNC_KEYMGMT_DUP, (void (*)(void))key_dup},                              \
    {                                                                                  \
        0, NULL                                                                        \
    }

static const OSSL_DISPATCH EC_KEYMGMT[] = {
    {OSSL_FUNC_KEYMGMT_NEW, (void (*)(void))ec_new},
    KEYMGMT_COMMON(ec_types),
};

static const OSSL_DISPATCH RSA_KEYMGMT[] = {
    {OSSL_FUNC_KEYMGMT_NEW, (void (*)(void))rsa_new},
    KEYMGMT_COMMON(rsa_types),
};

/* ---- signature -------------------------------------------------------- */

typedef struct sig_ctx {
    prov_key *key;
    EVP_MD *md;        /* NULL until set: then guessed from the digest length */
    EVP_MD_CTX *mdctx; /* digest-sign only */
    bool pss;          /* RSA only */
    /* A PSS salt or MGF1 hash other than TLS's (salt = digest length, MGF1
     * with the same hash) cannot be asked of the signer. */
    bool pss_unsupported;
} sig_ctx;

static void *sig_newctx(void *provctx, const char *propq)
{
    return calloc(1, sizeof(sig_ctx));
}

static void sig_freectx(void *vctx)
{
    sig_ctx *c = vctx;
    if (c == NULL)
        return;
    EVP_MD_CTX_free(c->mdctx);
    EVP_MD_free(c->md);
    free(c);
}

static void *sig_dupctx(void *vctx)
{
    const sig_ctx *c = vctx;
    sig_ctx *d = calloc(1, sizeof *d);
    if (d == NULL)
        return NULL;
    *d = *c;
    d->md = NULL;
    d->mdctx = NULL;
    if (c->md != NULL) {
        if (!EVP_MD_up_ref(c->md)) {
            sig_freectx(d);
            return NULL;
        }
        d->md = c->md;
    }
    /* EVP_DigestSignFinal finishes on a copy, so the copy carries the
     * hash state so far. */
    if (c->mdctx != NULL &&
        ((d->mdctx = EVP_MD_CTX_new()) == NULL || EVP_MD_CTX_copy_ex(d->mdctx, c->mdctx) != 1)) {
        sig_freectx(d);
        return NULL;
    }
    return d;
}

static int set_md(sig_ctx *c, const char *name)
{
    EVP_MD *md = EVP_MD_fetch(NULL, name, "provider=default");
    if (md == NULL)
        return 0;
    EVP_MD_free(c->md);
    c->md = md;
    return 1;
}

static int sig_set_ctx_params(void *vctx, const OSSL_PARAM params[])
{
    sig_ctx *c = vctx;
    if (c == NULL)
        return 0;
    const OSSL_PARAM *p;
    if ((p = OSSL_PARAM_locate_const(params, OSSL_SIGNATURE_PARAM_DIGEST)) != NULL) {
        const char *name = NULL;
        if (!OSSL_PARAM_get_utf8_string_ptr(p, &name) || !set_md(c, name))
            return 0;
    }
    if ((p = OSSL_PARAM_locate_const(params, OSSL_SIGNATURE_PARAM_PAD_MODE)) != NULL) {
        int mode = 0;
        const char *name = NULL;
        if (p->data_type == OSSL_PARAM_UTF8_STRING) {
            if (!OSSL_PARAM_get_utf8_string_ptr(p, &name))
                return 0;
            mode = strcmp(name, OSSL_PKEY_RSA_PAD_MODE_PSS) == 0   ? RSA_PKCS1_PSS_PADDING
                   : strcmp(name, OSSL_PKEY_RSA_PAD_MODE_PKCSV15) == 0 ? RSA_PKCS1_PADDING
                                                                       : 0;
        } else if (!OSSL_PARAM_get_int(p, &mode)) {
            return 0;
        }
        if (c->key == NULL || c->key->kind != KIND_RSA ||
            (mode != RSA_PKCS1_PSS_PADDING && mode != RSA_PKCS1_PADDING))
            return 0;
        c->pss = mode == RSA_PKCS1_PSS_PADDING;
    }
    if ((p = OSSL_PARAM_locate_const(params, OSSL_SIGNATURE_PARAM_PSS_SALTLEN)) != NULL) {
        int len = 0;
        const char *name = NULL;
        if (p->data_type == OSSL_PARAM_UTF8_STRING) {
            if (!OSSL_PARAM_get_utf8_string_ptr(p, &name))
                return 0;
            if (strcmp(name, OSSL_PKEY_RSA_PSS_SALT_LEN_DIGEST) == 0)
                len = RSA_PSS_SALTLEN_DIGEST;
            else
                c->pss_unsupported = true;
        } else if (!OSSL_PARAM_get_int(p, &len)) {
            return 0;
        }
        /* A number may still equal the digest length: checked when signing. */
        if (len != RSA_PSS_SALTLEN_DIGEST && (c->md == NULL || len != EVP_MD_get_size(c->md)))
            c->pss_unsupported = true;
    }
    if ((p = OSSL_PARAM_locate_const(params, OSSL_SIGNATURE_PARAM_MGF1_DIGEST)) != NULL) {
        const char *name = NULL;
        if (!OSSL_PARAM_get_utf8_string_ptr(p, &name))
            return 0;
        if (c->md == NULL || !EVP_MD_is_a(c->md, name))
            c->pss_unsupported = true;
    }
    return 1;
}

static const OSSL_PARAM SETTABLE[] = {
    OSSL_PARAM_utf8_string(OSSL_SIGNATURE_PARAM_DIGEST, NULL, 0),
    OSSL_PARAM_int(OSSL_SIGNATURE_PARAM_PAD_MODE, NULL),
    OSSL_PARAM_utf8_string(OSSL_SIGNATURE_PARAM_PSS_SALTLEN, NULL, 0),
    OSSL_PARAM_utf8_string(OSSL_SIGNATURE_PARAM_MGF1_DIGEST, NULL, 0),
    OSSL_PARAM_END,
};

static const OSSL_PARAM *sig_settable_ctx_params(void *vctx, void *provctx)
{
    return SETTABLE;
}

static int sig_sign_init(void *vctx, void *provkey, const OSSL_PARAM params[])
{
    sig_ctx *c = vctx;
    prov_key *k = provkey;
    if (c == NULL || k == NULL || k->signer == NULL)
        return 0;
    c->key = k;
    EVP_MD_free(c->md);
    c->md = NULL;
    c->pss = false;
    c->pss_unsupported = false;
    return sig_set_ctx_params(c, params);
}

static size_t signature_max(const sig_ctx *c)
{
    int n = EVP_PKEY_get_size(c->key->pub);
    return n > 0 ? (size_t)n : 0;
}

/* Signs a digest in the token. The signer's message goes to OpenSSL's
 * error queue, where the TLS caller finds it. */
static int sign_digest(sig_ctx *c, unsigned char *sig, size_t *siglen, size_t sigsize,
                       const unsigned char *digest, size_t digest_len)
{
    if (c->md == NULL) {
        /* EVP_PKEY_sign without a digest named: ECDSA needs only the length. */
        const char *guess = digest_len == 32 ? "SHA256" : digest_len == 48 ? "SHA384"
                            : digest_len == 64 ? "SHA512" : NULL;
        if (c->key->kind != KIND_EC || guess == NULL || !set_md(c, guess)) {
            ERR_raise_data(ERR_LIB_USER, ERR_R_PASSED_INVALID_ARGUMENT,
                           "no digest named for a %zu-byte digest", digest_len);
            return 0;
        }
    }
    if (c->pss && c->pss_unsupported) {
        ERR_raise_data(ERR_LIB_USER, ERR_R_UNSUPPORTED,
                       "RSA-PSS only with MGF1 of the same hash and a digest-long salt");
        return 0;
    }
    unsigned char *out = NULL;
    size_t out_len = 0;
    enr_error e;
    enr_error_clear(&e);
    if (enr_signer_sign_digest(c->key->signer, c->md, c->pss, digest, digest_len, &out,
                               &out_len, &e) != ENR_OK) {
        ERR_raise_data(ERR_LIB_USER, ERR_R_OPERATION_FAIL, "%s", e.message);
        return 0;
    }
    int ok = out_len <= sigsize;
    if (ok) {
        memcpy(sig, out, out_len);
        *siglen = out_len;
    } else {
        ERR_raise_data(ERR_LIB_USER, ERR_R_PASSED_INVALID_ARGUMENT, "signature buffer too small");
    }
    OPENSSL_free(out);
    return ok;
}

static int sig_sign(void *vctx, unsigned char *sig, size_t *siglen, size_t sigsize,
                    const unsigned char *tbs, size_t tbslen)
{
    sig_ctx *c = vctx;
    if (c == NULL || c->key == NULL)
        return 0;
    if (sig == NULL) {
        *siglen = signature_max(c);
        return 1;
    }
    return sign_digest(c, sig, siglen, sigsize, tbs, tbslen);
}

static int sig_digest_sign_init(void *vctx, const char *mdname, void *provkey,
                                const OSSL_PARAM params[])
{
    sig_ctx *c = vctx;
    if (!sig_sign_init(vctx, provkey, NULL))
        return 0;
    if (!set_md(c, mdname != NULL ? mdname : "SHA256"))
        return 0;
    if (c->mdctx == NULL && (c->mdctx = EVP_MD_CTX_new()) == NULL)
        return 0;
    if (EVP_DigestInit_ex2(c->mdctx, c->md, NULL) != 1)
        return 0;
    return sig_set_ctx_params(c, params);
}

static int sig_digest_sign_update(void *vctx, const unsigned char *data, size_t len)
{
    sig_ctx *c = vctx;
    if (c == NULL || c->mdctx == NULL)
        return 0;
    return EVP_DigestUpdate(c->mdctx, data, len);
}

static int sig_digest_sign_final(void *vctx, unsigned char *sig, size_t *siglen, size_t sigsize)
{
    sig_ctx *c = vctx;
    if (c == NULL || c->key == NULL || c->mdctx == NULL)
        return 0;
    if (sig == NULL) {
        *siglen = signature_max(c);
        return 1;
    }
    unsigned char digest[EVP_MAX_MD_SIZE];
    unsigned int digest_len = 0;
    if (EVP_DigestFinal_ex(c->mdctx, digest, &digest_len) != 1)
        return 0;
    return sign_digest(c, sig, siglen, sigsize, digest, digest_len);
}

static const OSSL_DISPATCH SIGNATURE[] = {
    {OSSL_FUNC_SIGNATURE_NEWCTX, (void (*)(void))sig_newctx},
    {OSSL_FUNC_SIGNATURE_FREECTX, (void (*)(void))sig_freectx},
    {OSSL_FUNC_SIGNATURE_DUPCTX, (void (*)(void))sig_dupctx},
    {OSSL_FUNC_SIGNATURE_SIGN_INIT, (void (*)(void))sig_sign_init},
    {OSSL_FUNC_SIGNATURE_SIGN, (void (*)(void))sig_sign},
    {OSSL_FUNC_SIGNATURE_DIGEST_SIGN_INIT, (void (*)(void))sig_digest_sign_init},
    {OSSL_FUNC_SIGNATURE_DIGEST_SIGN_UPDATE, (void (*)(void))sig_digest_sign_update},
    {OSSL_FUNC_SIGNATURE_DIGEST_SIGN_FINAL, (void (*)(void))sig_digest_sign_final},
    {OSSL_FUNC_SIGNATURE_SET_CTX_PARAMS, (void (*)(void))sig_set_ctx_params},
    {OSSL_FUNC_SIGNATURE_SETTABLE_CTX_PARAMS, (void (*)(void))sig_settable_ctx_params},
    {0, NULL},
};

/* ---- the provider ----------------------------------------------------- */

static const OSSL_ALGORITHM KEYMGMT_ALGS[] = {
    {"EC:id-ecPublicKey:1.2.840.10045.2.1", PROVIDER_QUERY, EC_KEYMGMT,
     "EC key whose private half signs through enroll's signer"},
    {"RSA:rsaEncryption:1.2.840.113549.1.1.1", PROVIDER_QUERY, RSA_KEYMGMT,
     "RSA key whose private half signs through enroll's signer"},
    {NULL, NULL, NULL, NULL},
};

static const OSSL_ALGORITHM SIGNATURE_ALGS[] = {
    {SIGNATURE_NAME, PROVIDER_QUERY, SIGNATURE, "signing through enroll's signer"},
    {NULL, NULL, NULL, NULL},
};

static const OSSL_ALGORITHM *provider_query(void *provctx, int operation_id, int *no_cache)
{
    *no_cache = 0;
    switch (operation_id) {
    case OSSL_OP_KEYMGMT:
        return KEYMGMT_ALGS;
    case OSSL_OP_SIGNATURE:
        return SIGNATURE_ALGS;
    default:
        return NULL;
    }
}

static const OSSL_DISPATCH PROVIDER[] = {
    {OSSL_FUNC_PROVIDER_QUERY_OPERATION, (void (*)(void))provider_query},
    {0, NULL},
};

static int provider_init(const OSSL_CORE_HANDLE *handle, const OSSL_DISPATCH *in,
                         const OSSL_DISPATCH **out, void **provctx)
{
    /* Everything a key needs travels with the key (its signer), so the
     * provider itself has no state; the core handle serves as context. */
    *out = PROVIDER;
    *provctx = (void *)(uintptr_t)handle;
    return 1;
}

/* ---- the public side ------------------------------------------------- */

enr_code enr_tls_key_new(enr_signer *signer, enr_tls_key **out, enr_error *err)
{
    *out = NULL;
    EVP_PKEY *pub = enr_signer_public_key(signer);
    const char *kind = EVP_PKEY_is_a(pub, "EC") ? "EC" : EVP_PKEY_is_a(pub, "RSA") ? "RSA" : NULL;
    if (kind == NULL)
        return enr_error_set(err, ENR_E_UNSUPPORTED,
                             "TLS client authentication with a %s key is not supported (EC and "
                             "RSA keys are)",
                             EVP_PKEY_get0_type_name(pub));
    enr_tls_key *k = calloc(1, sizeof *k);
    if (k == NULL)
        return enr_error_set(err, ENR_E_NOMEM, "out of memory");
    k->signer = signer;
    enr_code rc = ENR_OK;
    void *signer_ptr = signer;
    OSSL_PARAM params[] = {
        OSSL_PARAM_construct_octet_ptr(PARAM_SIGNER, &signer_ptr, 0),
        OSSL_PARAM_construct_end(),
    };
    EVP_PKEY_CTX *ctx = NULL;
    if ((k->libctx = OSSL_LIB_CTX_new()) == NULL ||
        OSSL_PROVIDER_add_builtin(k->libctx, PROVIDER_NAME, provider_init) != 1 ||
        (k->deflt = OSSL_PROVIDER_load(k->libctx, "default")) == NULL ||
        (k->ours = OSSL_PROVIDER_load(k->libctx, PROVIDER_NAME)) == NULL ||
        EVP_set_default_properties(k->libctx, "?provider=default") != 1) {
        rc = enr_error_openssl(err, ENR_E_CRYPTO, "cannot set up the TLS key provider");
        goto done;
    }
    if ((ctx = EVP_PKEY_CTX_new_from_name(k->libctx, kind, PROVIDER_QUERY)) == NULL ||
        EVP_PKEY_fromdata_init(ctx) != 1 ||
        EVP_PKEY_fromdata(ctx, &k->pkey, EVP_PKEY_KEYPAIR, params) != 1)
        rc = enr_error_openssl(err, ENR_E_CRYPTO, "cannot make the TLS key");
done:
    EVP_PKEY_CTX_free(ctx);
    if (rc != ENR_OK) {
        enr_tls_key_free(k);
        return rc;
    }
    *out = k;
    return ENR_OK;
}

void enr_tls_key_free(enr_tls_key *key)
{
    if (key == NULL)
        return;
    EVP_PKEY_free(key->pkey);
    OSSL_PROVIDER_unload(key->ours);
    OSSL_PROVIDER_unload(key->deflt);
    OSSL_LIB_CTX_free(key->libctx);
    free(key);
}

OSSL_LIB_CTX *enr_tls_key_libctx(const enr_tls_key *key)
{
    return key->libctx;
}

EVP_PKEY *enr_tls_key_pkey(const enr_tls_key *key)
{
    return key->pkey;
}

enr_code enr_tls_key_use(enr_tls_key *key, SSL_CTX *ctx, enr_error *err)
{
    X509 *cert = SSL_CTX_get0_certificate(ctx);
    if (cert == NULL)
        return enr_error_set(err, ENR_E_USAGE, "no client certificate set for the TLS key");
    EVP_PKEY *cert_key = X509_get0_pubkey(cert);
    if (cert_key == NULL)
        return enr_error_openssl(err, ENR_E_PARSE, "cannot read the client certificate's key");
    if (!enr_pubkey_equal(cert_key, enr_signer_public_key(key->signer)))
        return enr_error_set(err, ENR_E_VERIFY,
                             "the client certificate is for another key than the one in %s",
                             enr_signer_is_token(key->signer) ? "the token" : "the key file");
    if (SSL_CTX_use_PrivateKey(ctx, key->pkey) != 1)
        return enr_error_openssl(err, ENR_E_CRYPTO, "cannot use the key for TLS");
    return ENR_OK;
}
