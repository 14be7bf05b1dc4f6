#include <openssl/asn1t.h>
#include <openssl/err.h>
#include <openssl/provider.h>
#include <openssl/x509v3.h>
#include <stdlib.h>
#include <limits.h>
#include <string.h>

#include "csr/csr_internal.h"
#include "enroll/pubkey.h"

void enr_csr_free(enr_csr *csr)
{
    if (csr == NULL)
        return;
    X509_REQ_free(csr->req);
    EVP_PKEY_free(csr->public_key);
    free(csr->der);
    free(csr);
}

X509_REQ *enr_csr_x509_req(const enr_csr *csr)
{
    return csr->req;
}

EVP_PKEY *enr_csr_public_key(const enr_csr *csr)
{
    return csr->public_key;
}

enr_encoding enr_csr_input_encoding(const enr_csr *csr)
{
    return csr->input_encoding;
}

static enr_code push_extension(STACK_OF(X509_EXTENSION) *exts, int nid, int critical, void *value,
                               enr_error *err)
{
    X509_EXTENSION *ext = X509V3_EXT_i2d(nid, critical, value);
    if (ext == NULL || !sk_X509_EXTENSION_push(exts, ext)) {
        X509_EXTENSION_free(ext);
        return enr_error_openssl(err, ENR_E_CRYPTO, "cannot encode the %s extension", OBJ_nid2sn(nid));
    }
    return ENR_OK;
}

static enr_code add_requested_extensions(const enr_csr_spec *spec, X509_REQ *req, enr_error *err)
{
    STACK_OF(X509_EXTENSION) *exts = sk_X509_EXTENSION_new_null();
    if (exts == NULL)
        return enr_error_set(err, ENR_E_NOMEM, "out of memory");
    enr_code rc = ENR_OK;
    BASIC_CONSTRAINTS *bc = NULL;
    if (spec->is_ca) {
        bc = BASIC_CONSTRAINTS_new();
        if (bc == NULL) {
            rc = enr_error_set(err, ENR_E_NOMEM, "out of memory");
            goto done;
        }
        bc->ca = 0xFF;
        if (spec->pathlen >= 0) {
            bc->pathlen = ASN1_INTEGER_new();
            if (bc->pathlen == NULL || !ASN1_INTEGER_set(bc->pathlen, spec->pathlen)) {
                rc = enr_error_set(err, ENR_E_NOMEM, "out of memory");
                goto done;
            }
        }
        if ((rc = push_extension(exts, NID_basic_constraints, 1, bc, err)) != ENR_OK)
            goto done;
    }
    /* RFC 5280 4.2.1.3: keyUsage SHOULD be critical when present. */
    if (spec->key_usage != NULL &&
        (rc = push_extension(exts, NID_key_usage, 1, spec->key_usage, err)) != ENR_OK)
        goto done;
    if (spec->ext_key_usage != NULL &&
        (rc = push_extension(exts, NID_ext_key_usage, 0, spec->ext_key_usage, err)) != ENR_OK)
        goto done;
    /* RFC 5280 4.2.1.6: critical only when the subject is empty. */
    if (spec->san != NULL &&
        (rc = push_extension(exts, NID_subject_alt_name, X509_NAME_entry_count(spec->subject) == 0,
                             spec->san, err)) != ENR_OK)
        goto done;
    if (sk_X509_EXTENSION_num(exts) > 0 && !X509_REQ_add_extensions(req, exts))
        rc = enr_error_openssl(err, ENR_E_CRYPTO, "cannot add the requested extensions");
done:
    BASIC_CONSTRAINTS_free(bc);
    sk_X509_EXTENSION_pop_free(exts, X509_EXTENSION_free);
    return rc;
}

/* `input`: the DER the request was read from, kept as it came (a re-encoding
 * would hide what the linter must see); NULL for a request built here. */
static enr_code finish_from_req(X509_REQ *req, EVP_PKEY *public_key, enr_encoding enc,
                                const enr_decoded *input, enr_csr **out, enr_error *err)
{
    enr_csr *csr = calloc(1, sizeof *csr);
    if (csr == NULL)
        return enr_error_set(err, ENR_E_NOMEM, "out of memory");
    unsigned char *der = NULL;
    int n = -1;
    if (input != NULL && input->der_len <= INT_MAX && (der = OPENSSL_malloc(input->der_len)) != NULL) {
        memcpy(der, input->der, input->der_len);
        n = (int)input->der_len;
    } else if (input == NULL)
        n = i2d_X509_REQ(req, &der);
    if (n <= 0) {
        free(csr);
        return enr_error_openssl(err, ENR_E_CRYPTO, "cannot encode the request");
    }
    csr->der = malloc((size_t)n);
    if (csr->der == NULL) {
        OPENSSL_free(der);
        free(csr);
        return enr_error_set(err, ENR_E_NOMEM, "out of memory");
    }
    memcpy(csr->der, der, (size_t)n);
    OPENSSL_free(der);
    csr->der_len = (size_t)n;
    csr->req = req;
    csr->public_key = public_key;
    EVP_PKEY_up_ref(public_key);
    csr->input_encoding = enc;
    *out = csr;
    return ENR_OK;
}

enr_code enr_csr_build(const enr_csr_spec *spec, enr_signer *signer, enr_csr **out, enr_error *err)
{
    *out = NULL;
    if (spec->subject == NULL && spec->san == NULL)
        return enr_error_set(err, ENR_E_USAGE,
                             "the request needs a subject (--subject or --dn) or a subjectAltName (--san)");
    X509_REQ *req = X509_REQ_new();
    X509_ALGOR *alg = NULL;
    unsigned char *tbs = NULL, *sig = NULL;
    size_t sig_len = 0;
    ASN1_BIT_STRING *bits = NULL;
    enr_code rc = ENR_OK;
    X509_NAME *empty = NULL;
    if (req == NULL) {
        rc = enr_error_set(err, ENR_E_NOMEM, "out of memory");
        goto fail;
    }
    if (spec->subject == NULL)
        empty = X509_NAME_new();
    if (!X509_REQ_set_version(req, X509_REQ_VERSION_1) ||
        !X509_REQ_set_subject_name(req, spec->subject ? spec->subject : empty)) {
        rc = enr_error_openssl(err, ENR_E_CRYPTO, "cannot fill in the request");
        goto fail;
    }
    if ((rc = enr_spki_copy(X509_REQ_get_X509_PUBKEY(req), enr_signer_spki(signer), err)) != ENR_OK)
        goto fail;
    if ((rc = add_requested_extensions(spec, req, err)) != ENR_OK)
        goto fail;
    if (spec->challenge_password != NULL &&
        !X509_REQ_add1_attr_by_NID(req, NID_pkcs9_challengePassword, MBSTRING_UTF8,
                                   (const unsigned char *)spec->challenge_password, -1)) {
        rc = enr_error_openssl(err, ENR_E_CRYPTO, "cannot add the challenge password");
        goto fail;
    }

    /* Sign the CertificationRequestInfo through the signer, so that a token
     * key signs inside the token exactly like a file key signs in memory. */
    if ((rc = enr_signer_algorithm(signer, spec->md, &alg, err)) != ENR_OK)
        goto fail;
    if (!X509_REQ_set1_signature_algo(req, alg)) {
        rc = enr_error_openssl(err, ENR_E_CRYPTO, "cannot set the signature algorithm");
        goto fail;
    }
    int tbs_len = i2d_re_X509_REQ_tbs(req, &tbs);
    if (tbs_len <= 0) {
        rc = enr_error_openssl(err, ENR_E_CRYPTO, "cannot encode the request body");
        goto fail;
    }
    if ((rc = enr_signer_sign(signer, spec->md, tbs, (size_t)tbs_len, &sig, &sig_len, err)) != ENR_OK)
        goto fail;
    bits = ASN1_BIT_STRING_new();
    if (bits == NULL || sig_len > INT32_MAX || !ASN1_BIT_STRING_set(bits, sig, (int)sig_len)) {
        rc = enr_error_set(err, ENR_E_NOMEM, "out of memory");
        goto fail;
    }
    /* A signature is a whole number of octets: say "0 unused bits" explicitly. */
    bits->flags &= ~(ASN1_STRING_FLAG_BITS_LEFT | 0x07);
    bits->flags |= ASN1_STRING_FLAG_BITS_LEFT;
    X509_REQ_set0_signature(req, bits);
    bits = NULL;

    /* A file key's public half is derived from it, so its signature needs no
     * second look; a token could be holding a different key than the URI's
     * public object, so check what it signed. */
    if (enr_signer_is_token(signer) && X509_REQ_verify(req, enr_signer_public_key(signer)) != 1) {
        rc = enr_error_openssl(err, ENR_E_VERIFY,
                               "the new request's signature does not verify (is the key in the token "
                               "the one the URI names?)");
        goto fail;
    }
    rc = finish_from_req(req, enr_signer_public_key(signer), ENR_ENCODING_DER, NULL, out, err);
    if (rc == ENR_OK)
        req = NULL;
fail:
    X509_NAME_free(empty);
    X509_ALGOR_free(alg);
    OPENSSL_free(tbs);
    OPENSSL_free(sig);
    ASN1_BIT_STRING_free(bits);
    X509_REQ_free(req);
    return rc;
}

/* A library context with no decoders (only the "null" provider), used for
 * parsing requests: OpenSSL 3.0 then skips its opportunistic public-key
 * decoding, whose per-call setup costs more than an ECDSA verification, and
 * enr_pubkey_from_spki builds the key instead. Created once, never changed. */
static OSSL_LIB_CTX *no_decoders;
static CRYPTO_ONCE no_decoders_once = CRYPTO_ONCE_STATIC_INIT;

static void no_decoders_init(void)
{
    OSSL_LIB_CTX *ctx = OSSL_LIB_CTX_new();
    if (ctx != NULL && OSSL_PROVIDER_load(ctx, "null") == NULL) {
        OSSL_LIB_CTX_free(ctx);
        ctx = NULL;
    }
    no_decoders = ctx;
}

static OSSL_LIB_CTX *decoder_free_libctx(void)
{
    /* On failure parsing still works, only slower, in the default context. */
    return CRYPTO_THREAD_run_once(&no_decoders_once, no_decoders_init) ? no_decoders : NULL;
}

X509_REQ *enr_csr_d2i_fast(const unsigned char *der, size_t len)
{
    const unsigned char *p = der;
    return len <= (size_t)LONG_MAX ? (X509_REQ *)ASN1_item_d2i_ex(NULL, &p, (long)len, ASN1_ITEM_rptr(X509_REQ),
                                                                 decoder_free_libctx(), NULL)
                                   : NULL;
}

enr_code enr_csr_parse(const unsigned char *in, size_t len, enr_csr **out, enr_error *err)
{
    *out = NULL;
    enr_decoded dec;
    enr_code rc = enr_decode(in, len, &dec, NULL, err);
    if (rc != ENR_OK)
        return rc;
    if (dec.encoding == ENR_ENCODING_PEM && strcmp(dec.pem_label, "CERTIFICATE REQUEST") != 0 &&
        strcmp(dec.pem_label, "NEW CERTIFICATE REQUEST") != 0) {
        rc = enr_error_set(err, ENR_E_PARSE,
                           "expected a CERTIFICATE REQUEST PEM block but found '%s' (for a "
                           "certificate use `enroll cert show`, for a key `enroll key show`)",
                           dec.pem_label);
        goto done;
    }
    if (dec.trailing_len > 0) {
        rc = enr_error_set(err, ENR_E_PARSE,
                           "%zu bytes of unexpected data after the request, at %s byte %zu (`enroll "
                           "csr lint` shows details)",
                           dec.trailing_len, dec.trailing_in_der ? "DER" : "input", dec.trailing_offset);
        goto done;
    }
    const unsigned char *p = dec.der;
    X509_REQ *req = (X509_REQ *)ASN1_item_d2i_ex(NULL, &p, (long)dec.der_len, ASN1_ITEM_rptr(X509_REQ),
                                                 decoder_free_libctx(), NULL);
    if (req == NULL) {
        rc = enr_error_openssl(err, ENR_E_PARSE,
                               "the %s data is well-formed DER but not a PKCS#10 CertificationRequest",
                               enr_encoding_name(dec.encoding));
        goto done;
    }
    EVP_PKEY *key = NULL;
    if ((rc = enr_pubkey_from_spki(X509_REQ_get_X509_PUBKEY(req), &key, err)) != ENR_OK) {
        X509_REQ_free(req);
        enr_error_prefix(err, "the request's public key");
        goto done;
    }
    ERR_clear_error();
    rc = finish_from_req(req, key, dec.encoding, &dec, out, err);
    EVP_PKEY_free(key);
    if (rc != ENR_OK)
        X509_REQ_free(req);
done:
    enr_decoded_free(&dec);
    return rc;
}

enr_code enr_csr_verify(const enr_csr *csr, enr_error *err)
{
    /* The verdict is a property of the immutable request, kept in it. */
    int *verified = &((enr_csr *)csr)->verified;
    if (*verified == 0)
        *verified = X509_REQ_verify_ex(csr->req, csr->public_key, NULL, NULL) == 1 ? 1 : -1;
    if (*verified < 0)
        return enr_error_openssl(err, ENR_E_VERIFY,
                                 "the request's self-signature does not verify: it was not signed "
                                 "by the private key of the public key it carries");
    ERR_clear_error();
    return ENR_OK;
}

enr_code enr_csr_format_parse(const char *name, enr_csr_format *out, enr_error *err)
{
    if (strcmp(name, "pem") == 0)
        *out = ENR_CSR_PEM;
    else if (strcmp(name, "der") == 0)
        *out = ENR_CSR_DER;
    else if (strcmp(name, "b64") == 0 || strcmp(name, "base64") == 0)
        *out = ENR_CSR_BASE64;
    else
        return enr_error_set(err, ENR_E_USAGE, "--format '%s': choose pem, der or b64", name);
    return ENR_OK;
}

enr_code enr_csr_encode_alloc(const enr_csr *csr, enr_csr_format format, unsigned char **out,
                              size_t *len, enr_error *err)
{
    *out = NULL;
    *len = 0;
    char *text = NULL;
    enr_code rc;
    switch (format) {
    case ENR_CSR_DER:
        if ((*out = malloc(csr->der_len)) == NULL)
            return enr_error_set(err, ENR_E_NOMEM, "out of memory");
        memcpy(*out, csr->der, csr->der_len);
        *len = csr->der_len;
        return ENR_OK;
    case ENR_CSR_PEM:
        rc = enr_pem_encode("CERTIFICATE REQUEST", csr->der, csr->der_len, &text, err);
        break;
    case ENR_CSR_BASE64:
        rc = enr_base64_encode(csr->der, csr->der_len, &text, err);
        break;
    default:
        return enr_error_set(err, ENR_E_USAGE, "unknown output format %d", (int)format);
    }
    if (rc != ENR_OK)
        return rc;
    *out = (unsigned char *)text;
    *len = strlen(text);
    return ENR_OK;
}

enr_code enr_csr_encode(const enr_csr *csr, enr_csr_format format, unsigned char *buf, size_t cap,
                        size_t *written, size_t *needed, enr_error *err)
{
    unsigned char *tmp;
    size_t len;
    enr_code rc = enr_csr_encode_alloc(csr, format, &tmp, &len, err);
    if (rc != ENR_OK)
        return rc;
    size_t need = len + (format == ENR_CSR_DER ? 0 : 1);
    if (needed != NULL)
        *needed = need;
    if (buf == NULL || cap < need) {
        free(tmp);
        return enr_error_set(err, ENR_E_USAGE, "buffer too small: %zu bytes needed, %zu given", need,
                             cap);
    }
    memcpy(buf, tmp, len);
    if (format != ENR_CSR_DER)
        buf[len] = '\0';
    free(tmp);
    if (written != NULL)
        *written = len;
    return ENR_OK;
}
