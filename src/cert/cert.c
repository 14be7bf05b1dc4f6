/* Reading certificates and CRLs: one or many, PEM, DER or headerless base64. */
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/x509.h>
#include <stdlib.h>
#include <string.h>

#include "cert/cert_internal.h"
#include "core/hex.h"
#include "enroll/cert.h"
#include "enroll/fileio.h"

/* "X509 CERTIFICATE" is the pre-RFC 7468 label some old tools still write. */
static const char *const CERT_LABELS[] = {"CERTIFICATE", "X509 CERTIFICATE", NULL};
static const enr_bundle_kind CERT_KIND = {"certificate", CERT_LABELS};

static const char *const CRL_LABELS[] = {"X509 CRL", NULL};
static const enr_bundle_kind CRL_KIND = {"CRL", CRL_LABELS};

/* How to turn one bundle item into an OpenSSL object of some type. */
typedef struct object_type {
    const enr_bundle_kind *kind;
    const char *structure; /* "an X.509 certificate", for messages */
    const char *hint;      /* what else it might be */
    void *(*d2i)(const unsigned char **p, long len);
    void (*free)(void *obj);
} object_type;

static void *d2i_cert(const unsigned char **p, long len)
{
    return d2i_X509(NULL, p, len);
}

static void free_cert(void *cert)
{
    X509_free(cert);
}

static void *d2i_crl(const unsigned char **p, long len)
{
    return d2i_X509_CRL(NULL, p, len);
}

static void free_crl(void *crl)
{
    X509_CRL_free(crl);
}

static const object_type CERT_TYPE = {&CERT_KIND, "an X.509 certificate",
                                      "a CSR? try `enroll csr show`", d2i_cert, free_cert};
static const object_type CRL_TYPE = {&CRL_KIND, "a CRL (X.509 CertificateList)",
                                     "a certificate? CRLs come from `openssl ca -gencrl` or the CA",
                                     d2i_crl, free_crl};

/* d2i for one bundle item, refusing extra bytes (enr_decode already cut the
 * DER to one object, so a short read means OpenSSL saw something else). */
static void *parse_item(const enr_bundle *bundle, size_t index, const object_type *type,
                        enr_error *err)
{
    const enr_bundle_item *item = &bundle->items[index];
    const unsigned char *p = item->der;
    void *obj = item->der_len <= (size_t)LONG_MAX ? type->d2i(&p, (long)item->der_len) : NULL;
    if (obj != NULL && (size_t)(p - item->der) == item->der_len) {
        ERR_clear_error();
        return obj;
    }
    if (obj != NULL)
        type->free(obj);
    char where[96];
    enr_bundle_where(bundle, index, type->kind->noun, where, sizeof where);
    enr_error_openssl(err, ENR_E_PARSE, "%s is well-formed DER but not %s (%s)", where,
                      type->structure, type->hint);
    return NULL;
}

/* Every object in `in`, in order, on a new stack (the typed STACK_OF
 * wrappers are casts of this one). */
static enr_code parse_all(const unsigned char *in, size_t len, const object_type *type,
                          OPENSSL_STACK **out, enr_error *err)
{
    *out = NULL;
    enr_bundle bundle;
    enr_code rc = enr_bundle_decode(in, len, type->kind, &bundle, err);
    if (rc != ENR_OK)
        return rc;
    OPENSSL_STACK *objs = OPENSSL_sk_new_null();
    if (objs == NULL)
        rc = enr_error_set(err, ENR_E_NOMEM, "out of memory");
    for (size_t i = 0; rc == ENR_OK && i < bundle.count; i++) {
        void *obj = parse_item(&bundle, i, type, err);
        if (obj == NULL)
            rc = ENR_E_PARSE;
        else if (!OPENSSL_sk_push(objs, obj)) {
            type->free(obj);
            rc = enr_error_set(err, ENR_E_NOMEM, "out of memory");
        }
    }
    enr_bundle_free(&bundle);
    if (rc != ENR_OK) {
        while (OPENSSL_sk_num(objs) > 0)
            type->free(OPENSSL_sk_pop(objs));
        OPENSSL_sk_free(objs);
        return rc;
    }
    *out = objs;
    return ENR_OK;
}

static enr_code parse_file(const char *path, const object_type *type, OPENSSL_STACK **out,
                           enr_error *err)
{
    *out = NULL;
    enr_buf buf;
    enr_code rc = enr_file_read(path, ENR_INPUT_LIMIT, &buf, err);
    if (rc != ENR_OK)
        return rc;
    rc = parse_all(buf.data, buf.len, type, out, err);
    enr_buf_free(&buf);
    if (rc != ENR_OK)
        enr_error_prefix(err, "%s", path);
    return rc;
}

enr_code enr_cert_read_all(const unsigned char *in, size_t len, STACK_OF(X509) **out,
                           enr_error *err)
{
    OPENSSL_STACK *objs = NULL;
    enr_code rc = parse_all(in, len, &CERT_TYPE, &objs, err);
    *out = (STACK_OF(X509) *)objs;
    return rc;
}

enr_code enr_cert_read_file(const char *path, STACK_OF(X509) **out, enr_error *err)
{
    OPENSSL_STACK *objs = NULL;
    enr_code rc = parse_file(path, &CERT_TYPE, &objs, err);
    *out = (STACK_OF(X509) *)objs;
    return rc;
}

enr_code enr_cert_read_one(const unsigned char *in, size_t len, X509 **out, enr_error *err)
{
    *out = NULL;
    STACK_OF(X509) *certs = NULL;
    enr_code rc = enr_cert_read_all(in, len, &certs, err);
    if (rc != ENR_OK)
        return rc;
    int n = sk_X509_num(certs);
    if (n != 1) {
        sk_X509_pop_free(certs, X509_free);
        return enr_error_set(err, ENR_E_PARSE,
                             "expected one certificate but the input holds %d: give the "
                             "certificate alone (a bundle's other certificates belong elsewhere)",
                             n);
    }
    *out = sk_X509_shift(certs);
    sk_X509_free(certs);
    return ENR_OK;
}

enr_code enr_crl_read_all(const unsigned char *in, size_t len, STACK_OF(X509_CRL) **out,
                          enr_error *err)
{
    OPENSSL_STACK *objs = NULL;
    enr_code rc = parse_all(in, len, &CRL_TYPE, &objs, err);
    *out = (STACK_OF(X509_CRL) *)objs;
    return rc;
}

enr_code enr_crl_read_file(const char *path, STACK_OF(X509_CRL) **out, enr_error *err)
{
    OPENSSL_STACK *objs = NULL;
    enr_code rc = parse_file(path, &CRL_TYPE, &objs, err);
    *out = (STACK_OF(X509_CRL) *)objs;
    return rc;
}

enr_code enr_cert_fingerprint(const X509 *cert, char out[ENR_CERT_FINGERPRINT_HEX + 1], enr_error *err)
{
    unsigned char md[32];
    unsigned int n = 0;
    out[0] = '\0';
    if (cert == NULL || X509_digest(cert, EVP_sha256(), md, &n) != 1 || n != sizeof md) {
        ERR_clear_error();
        return enr_error_set(err, ENR_E_CRYPTO, "cannot compute the certificate's SHA-256 fingerprint");
    }
    enr_hex_lower(md, n, out);
    return ENR_OK;
}
