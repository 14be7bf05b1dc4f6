/* PKCS#10 certificate signing requests: build (with any enr_signer), parse
 * from PEM/DER/headerless base64, verify the self-signature, describe. */
#ifndef ENROLL_CSR_H
#define ENROLL_CSR_H

#include <openssl/x509.h>
#include <stdbool.h>
#include <stddef.h>

#include "enroll/error.h"
#include "enroll/input.h"
#include "enroll/signer.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- what to request ---------------------------------------------------- */

typedef struct enr_csr_spec enr_csr_spec;

enr_csr_spec *enr_csr_spec_new(void);
void enr_csr_spec_free(enr_csr_spec *spec);

/* "/C=US/O=Acme, Inc./CN=dev-001" (see name.h), or one "CN=dev-001" field at a time. */
enr_code enr_csr_spec_set_subject(enr_csr_spec *spec, const char *subject, enr_error *err);
enr_code enr_csr_spec_add_dn(enr_csr_spec *spec, const char *field_eq_value, enr_error *err);
/* One or more comma-separated "DNS:x", "IP:1.2.3.4", "URI:u", "email:e". */
enr_code enr_csr_spec_add_san(enr_csr_spec *spec, const char *list, enr_error *err);
/* Comma-separated names: digitalSignature, keyEncipherment, keyAgreement, ... */
enr_code enr_csr_spec_set_key_usage(enr_csr_spec *spec, const char *list, enr_error *err);
/* Comma-separated: clientAuth, serverAuth, codeSigning, emailProtection,
 * timeStamping, OCSPSigning, or dotted OIDs. */
enr_code enr_csr_spec_set_ext_key_usage(enr_csr_spec *spec, const char *list, enr_error *err);
/* basicConstraints CA:TRUE (critical); pathlen < 0 means no limit. */
enr_code enr_csr_spec_set_ca(enr_csr_spec *spec, int pathlen, enr_error *err);
enr_code enr_csr_spec_set_challenge_password(enr_csr_spec *spec, const char *password,
                                             enr_error *err);
/* "sha256" (default), "sha384", "sha512". Ignored for Ed25519 keys. */
enr_code enr_csr_spec_set_hash(enr_csr_spec *spec, const char *name, enr_error *err);

/* ---- a request ---------------------------------------------------------- */

typedef struct enr_csr enr_csr;

/* Builds and signs. The result verifies (checked before returning). */
enr_code enr_csr_build(const enr_csr_spec *spec, enr_signer *signer, enr_csr **out,
                       enr_error *err);

/* Parses PEM ("CERTIFICATE REQUEST" or "NEW CERTIFICATE REQUEST"), DER or
 * headerless base64. Trailing data after the request is an error here (the
 * linter reports it as a finding instead). */
enr_code enr_csr_parse(const unsigned char *in, size_t len, enr_csr **out, enr_error *err);
void enr_csr_free(enr_csr *csr);

/* The OpenSSL object (borrowed) and the public key (borrowed). A parsed
 * request's X509_REQ is read without OpenSSL's own public-key decoding (it
 * costs more than the signature check), so X509_REQ_get0_pubkey() on it
 * returns NULL: use enr_csr_public_key(). */
X509_REQ *enr_csr_x509_req(const enr_csr *csr);
EVP_PKEY *enr_csr_public_key(const enr_csr *csr);
enr_encoding enr_csr_input_encoding(const enr_csr *csr);

/* Proof of possession: ENR_OK only when the self-signature verifies. */
enr_code enr_csr_verify(const enr_csr *csr, enr_error *err);

typedef enum enr_csr_format {
    ENR_CSR_PEM = 0,
    ENR_CSR_DER,
    ENR_CSR_BASE64 /* base64 DER, no header lines, no newlines: the DPS JSON form */
} enr_csr_format;

enr_code enr_csr_format_parse(const char *name, enr_csr_format *out, enr_error *err);

/* Encodes into the caller's buffer. When it is too small (or NULL) the call
 * returns ENR_E_USAGE with `*needed` set, so a caller can size it exactly.
 * PEM and base64 output are NUL-terminated (not counted in *written). */
enr_code enr_csr_encode(const enr_csr *csr, enr_csr_format format, unsigned char *buf,
                        size_t cap, size_t *written, size_t *needed, enr_error *err);
/* The same into a new buffer (free with free()). */
enr_code enr_csr_encode_alloc(const enr_csr *csr, enr_csr_format format, unsigned char **out,
                              size_t *len, enr_error *err);

/* A description: JSON text (free with free()), or human text like
 * `openssl req -text` (free with free()). */
enr_code enr_csr_describe_json(const enr_csr *csr, char **out, enr_error *err);
enr_code enr_csr_describe_text(const enr_csr *csr, char **out, enr_error *err);

#ifdef __cplusplus
}
#endif
#endif
