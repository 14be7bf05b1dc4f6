/* EST (RFC 7030, as updated by RFC 8951): its paths, bodies and answers,
 * and nothing of how they travel. enrolld's EST front end
 * (src/service/est_http.c) reads requests with these and hands the CSR to
 * the provisioning core like any other registration.
 *
 *   /.well-known/est[/{label}]/{operation}
 *     label: an enrollment group's id (it selects the enrollment, and so
 *     the policy); none: the enrollment attestation decides, as for DPS.
 *
 * Bodies are base64 of DER whatever Content-Transfer-Encoding says (RFC
 * 8951): line breaks and other white space between characters are
 * accepted; nothing else is. */
#ifndef ENROLL_EST_H
#define ENROLL_EST_H

#include <stdbool.h>
#include <stddef.h>

#include <openssl/x509.h>

#include "enroll/error.h"
#include "enroll/store.h"

#define ENR_EST_PREFIX "/.well-known/est"
/* A CSR is a few hundred bytes; even RSA-4096 with extensions stays far
 * below this. Bigger bodies are refused before they are decoded. */
#define ENR_EST_BODY_MAX ((size_t)16 * 1024)
#define ENR_EST_LABEL_MAX 128

typedef enum enr_est_operation {
    ENR_EST_CACERTS = 1,
    ENR_EST_SIMPLEENROLL,
    ENR_EST_SIMPLEREENROLL,
    ENR_EST_CSRATTRS,
    ENR_EST_SERVERKEYGEN,
} enr_est_operation;

/* Why a request is not EST: the front end's status follows from it. */
typedef enum enr_est_reason {
    ENR_EST_OK = 0,
    ENR_EST_NOT_EST,          /* not under /.well-known/est: another route's business (404 there) */
    ENR_EST_UNKNOWN_OPERATION, /* 404 */
    ENR_EST_BAD_LABEL,        /* 404: RFC 7030 labels are path segments; ours are enrollment group ids */
    ENR_EST_BAD_BODY,         /* 400: not base64 of one DER value */
    ENR_EST_BODY_TOO_LARGE,   /* 413 */
} enr_est_reason;

typedef struct enr_est_path {
    enr_est_operation operation;
    char label[ENR_EST_LABEL_MAX + 1]; /* "" for none */
} enr_est_path;

/* The operation a path names. ENR_EST_OK, or why not. */
enr_est_reason enr_est_path_parse(const char *path, enr_est_path *out);
/* Whether the operation is a POST (the others are GETs). */
bool enr_est_operation_is_post(enr_est_operation op);
const char *enr_est_operation_name(enr_est_operation op);

/* The DER in a base64 body: exactly one DER value, nothing after it.
 * ENR_EST_OK with *der (free) and *len, or the reason, with a message in
 * err saying at which byte. */
enr_est_reason enr_est_body_decode(const char *body, size_t len, unsigned char **der, size_t *der_len,
                                   enr_error *err);

/* base64 of `der` in lines of 64 characters (RFC 7030's bodies), each
 * ending "\r\n". *out is NUL-terminated; free it. */
enr_code enr_est_base64_lines(const unsigned char *der, size_t len, char **out, size_t *out_len, enr_error *err);

/* A certs-only SignedData (PKCS#7 = CMS here; RFC 7030 §4.1.3: "application/pkcs7-mime;
 * smime-type=certs-only") holding `certs` in order, as DER. */
enr_code enr_est_certs_only(STACK_OF(X509) *certs, unsigned char **der, size_t *len, enr_error *err);
/* The same from DER certificates. */
enr_code enr_est_certs_only_der(const unsigned char *const *certs, const size_t *lens, size_t count,
                                unsigned char **der, size_t *len, enr_error *err);

/* The CsrAttrs (RFC 7030 §4.5.2) a policy asks for: the key types it
 * allows (id-ecPublicKey with each curve, rsaEncryption), the signature
 * algorithm that goes with the first, and the subject's commonName
 * (which must be the registration id). DER; free it. */
enr_code enr_est_csrattrs(const char *key_types, unsigned char **der, size_t *len, enr_error *err);

/* HTTP Basic's secret, as an enrollment keeps it: lower-case hex of its
 * SHA-256 (the secret is 256 random bits, so no slow hash is needed). */
void enr_est_secret_hash(const char *secret, size_t len, char out[ENR_STORE_SHA256_HEX + 1]);
/* A new secret: base64 of 32 random bytes. */
enr_code enr_est_secret_new(char out[64], enr_error *err);

/* The credentials of an "Authorization: Basic ..." header: user and
 * password (NUL-terminated, in `buf` of `cap` bytes). false when the header
 * is not Basic or does not decode to user:password. */
bool enr_est_basic_parse(const char *header, char *buf, size_t cap, const char **user, const char **password);

#endif
