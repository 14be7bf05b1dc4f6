/* Internal: JSON descriptions of the pieces CSRs and certificates share
 * (names, public keys, extensions), so both describe them the same way. */
#ifndef ENROLL_CORE_DESCRIBE_H
#define ENROLL_CORE_DESCRIBE_H

#include <jansson.h>
#include <openssl/x509.h>

#include "enroll/error.h"

/* [{"field":"CN","oid":"2.5.4.3","value":"dev-001","string_type":"UTF8String"}, ...] */
json_t *enr_describe_name_fields(const X509_NAME *name);
/* {"algorithm":"EC","curve":"P-256","bits":256,"type":"ec-p256","spki_sha256":"..."} */
json_t *enr_describe_public_key(const EVP_PKEY *key, enr_error *err);
/* [{"name":"subjectAltName","oid":"2.5.29.17","critical":false,"value":...,"text":"..."}] */
json_t *enr_describe_extensions(const STACK_OF(X509_EXTENSION) *exts);
/* The same, also decoding what only certificates carry: subjectKeyIdentifier
 * (lowercase hex), authorityKeyIdentifier {"key_id","issuer","serial"},
 * crlDistributionPoints [{"full_name":[names]}], authorityInfoAccess
 * [{"method":"OCSP"|"caIssuers","location":name}]. */
json_t *enr_describe_cert_extensions(const STACK_OF(X509_EXTENSION) *exts);
/* "ecdsa-with-SHA256" style name of an AlgorithmIdentifier. */
json_t *enr_describe_algorithm(const X509_ALGOR *alg);

/* Renders what enr_describe_extensions made, indented, for text output. */
void enr_describe_extensions_text(json_t *exts, BIO *out, int indent);

/* A string member for text rendering: `fallback` when absent or empty. */
const char *enr_describe_text_of(json_t *obj, const char *key, const char *fallback);
/* A JSON string taking (and freeing) `s`; null for NULL. */
json_t *enr_describe_owned_string(char *s);

/* Dumps `obj` to a newly allocated string with a trailing newline. */
enr_code enr_describe_dump(json_t *obj, char **out, enr_error *err);

#endif
