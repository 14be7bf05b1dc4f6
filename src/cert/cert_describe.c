/* Describing a certificate, as JSON and as text (the text is rendered from
 * the JSON, so the two never disagree). */
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/x509v3.h>
#include <stdlib.h>
#include <string.h>

#include "cert/cert_internal.h"
#include "core/describe.h"
#include "enroll/cert.h"
#include "enroll/name.h"

static json_t *time_json(const ASN1_TIME *t)
{
    char text[ENR_RFC3339_MAX];
    return enr_asn1_time_rfc3339(t, text) ? json_string(text) : json_null();
}

static json_t *validity_json(const X509 *cert)
{
    json_t *o = json_object();
    json_object_set_new(o, "not_before", time_json(X509_get0_notBefore(cert)));
    json_object_set_new(o, "not_after", time_json(X509_get0_notAfter(cert)));
    return o;
}

/* A key OpenSSL cannot decode (an algorithm it does not know, a damaged
 * point) is still worth describing by its algorithm. */
static json_t *public_key_json(X509 *cert, enr_error *err)
{
    EVP_PKEY *key = X509_get0_pubkey(cert);
    ERR_clear_error();
    if (key != NULL)
        return enr_describe_public_key(key, err);
    json_t *o = json_object();
    X509_ALGOR *alg = NULL;
    X509_PUBKEY *spki = X509_get_X509_PUBKEY(cert);
    if (spki != NULL && X509_PUBKEY_get0_param(NULL, NULL, NULL, &alg, spki) == 1 && alg != NULL)
        json_object_set_new(o, "algorithm", enr_describe_algorithm(alg));
    else
        json_object_set_new(o, "algorithm", json_null());
    json_object_set_new(o, "decodable", json_false());
    return o;
}

static json_t *fingerprint_json(const X509 *cert)
{
    char hex[ENR_CERT_FINGERPRINT_HEX + 1];
    enr_error err;
    return enr_cert_fingerprint(cert, hex, &err) == ENR_OK ? json_string(hex) : json_null();
}

static json_t *describe(X509 *cert, enr_error *err)
{
    json_t *key = public_key_json(cert, err);
    if (key == NULL)
        return NULL;
    json_t *root = json_object();
    json_object_set_new(root, "version", json_integer(X509_get_version(cert) + 1));
    json_object_set_new(root, "serial", enr_describe_owned_string(enr_serial_hex(X509_get0_serialNumber(cert))));
    const X509_NAME *issuer = X509_get_issuer_name(cert), *subject = X509_get_subject_name(cert);
    json_object_set_new(root, "issuer", enr_describe_owned_string(enr_name_format(issuer)));
    json_object_set_new(root, "issuer_fields", enr_describe_name_fields(issuer));
    json_object_set_new(root, "subject", enr_describe_owned_string(enr_name_format(subject)));
    json_object_set_new(root, "subject_fields", enr_describe_name_fields(subject));
    json_object_set_new(root, "validity", validity_json(cert));
    /* Self-signed: issuer name equals subject and the signature verifies with
     * its own key, as a root's does. */
    json_object_set_new(root, "self_signed", json_boolean(X509_self_signed(cert, 1) == 1));
    ERR_clear_error();
    json_object_set_new(root, "public_key", key);
    const X509_ALGOR *alg = NULL;
    X509_get0_signature(NULL, &alg, cert);
    json_object_set_new(root, "signature_algorithm", enr_describe_algorithm(alg));
    json_object_set_new(root, "extensions", enr_describe_cert_extensions(X509_get0_extensions(cert)));
    json_object_set_new(root, "fingerprint_sha256", fingerprint_json(cert));
    return root;
}

enr_code enr_cert_describe_json(X509 *cert, char **out, enr_error *err)
{
    *out = NULL;
    json_t *root = describe(cert, err);
    if (root == NULL)
        return err ? err->code : ENR_E_INTERNAL;
    enr_code rc = enr_describe_dump(root, out, err);
    json_decref(root);
    return rc;
}

static void print_public_key(BIO *bio, json_t *key)
{
    const char *algorithm = enr_describe_text_of(key, "algorithm", "unknown");
    if (json_is_false(json_object_get(key, "decodable"))) {
        BIO_printf(bio, "    Public Key: %s (cannot be decoded)\n", algorithm);
        return;
    }
    const char *curve = json_string_value(json_object_get(key, "curve"));
    BIO_printf(bio, "    Public Key: %s%s%s (%lld bit)\n", algorithm, curve ? " " : "",
               curve ? curve : "", (long long)json_integer_value(json_object_get(key, "bits")));
    if (json_object_get(key, "exponent"))
        BIO_printf(bio, "        Exponent: %lld\n",
                   (long long)json_integer_value(json_object_get(key, "exponent")));
    /* Fingerprints are spelled one way in every output, text and JSON:
     * lowercase hex without separators (docs/cli.md), as sha256sum prints. */
    BIO_printf(bio, "        SPKI SHA-256: %s\n", enr_describe_text_of(key, "spki_sha256", ""));
}

static void print_certificate(BIO *bio, json_t *root)
{
    json_int_t version = json_integer_value(json_object_get(root, "version"));
    BIO_printf(bio, "Certificate:\n");
    BIO_printf(bio, "    Version: %lld (0x%llx)\n", (long long)version, (long long)(version - 1));
    BIO_printf(bio, "    Serial Number: %s\n", enr_describe_text_of(root, "serial", "(none)"));
    BIO_printf(bio, "    Issuer: %s\n", enr_describe_text_of(root, "issuer", "(empty)"));
    json_t *validity = json_object_get(root, "validity");
    BIO_printf(bio, "    Validity:\n");
    BIO_printf(bio, "        Not Before: %s\n", enr_describe_text_of(validity, "not_before", "(invalid time)"));
    BIO_printf(bio, "        Not After:  %s\n", enr_describe_text_of(validity, "not_after", "(invalid time)"));
    BIO_printf(bio, "    Subject: %s%s\n", enr_describe_text_of(root, "subject", "(empty)"),
               json_is_true(json_object_get(root, "self_signed")) ? " (self-signed)" : "");
    print_public_key(bio, json_object_get(root, "public_key"));
    BIO_printf(bio, "    Signature Algorithm: %s\n", enr_describe_text_of(root, "signature_algorithm", "unknown"));
    json_t *exts = json_object_get(root, "extensions");
    if (json_array_size(exts) > 0) {
        BIO_printf(bio, "    Extensions:\n");
        enr_describe_extensions_text(exts, bio, 8);
    }
    BIO_printf(bio, "    SHA-256 Fingerprint: %s\n", enr_describe_text_of(root, "fingerprint_sha256", ""));
}

static enr_code bio_to_string(BIO *bio, char **out, enr_error *err)
{
    char *data;
    long n = BIO_get_mem_data(bio, &data);
    char *text = malloc((size_t)n + 1);
    if (text == NULL)
        return enr_error_set(err, ENR_E_NOMEM, "out of memory");
    memcpy(text, data, (size_t)n);
    text[n] = '\0';
    *out = text;
    return ENR_OK;
}

enr_code enr_cert_describe_text(X509 *cert, char **out, enr_error *err)
{
    *out = NULL;
    json_t *root = describe(cert, err);
    if (root == NULL)
        return err ? err->code : ENR_E_INTERNAL;
    BIO *bio = BIO_new(BIO_s_mem());
    enr_code rc;
    if (bio == NULL)
        rc = enr_error_set(err, ENR_E_NOMEM, "out of memory");
    else {
        print_certificate(bio, root);
        rc = bio_to_string(bio, out, err);
    }
    BIO_free(bio);
    json_decref(root);
    return rc;
}
