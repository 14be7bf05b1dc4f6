/* The wire shapes of the Device Provisioning Service (DPS) registration
 * protocol, as enrolld speaks it over HTTPS: the api-version check, the
 * request path, the register request body, the service's answers (202
 * assigning, operation status, the final 200 body, error bodies) and a strict
 * reader of those answers for the device side. The errorCodes are
 * documented in docs/errors.md.
 *
 * Everything here is pure text in, text out: no I/O, no global state. */
#ifndef ENROLL_DPS_H
#define ENROLL_DPS_H

#include <stdbool.h>
#include <stddef.h>
#include <time.h>

#include "enroll/csr.h"
#include "enroll/error.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- limits ------------------------------------------------------------- */

#define ENR_DPS_REQUEST_BODY_MAX (64u * 1024u)   /* a register body */
#define ENR_DPS_RESPONSE_BODY_MAX (256u * 1024u) /* any answer the device reads */
#define ENR_DPS_JSON_DEPTH_MAX 32                /* arrays/objects, the top level counts */
/* A payload sits one level down in a request and two in an answer: the
 * writers hold it to the depth a request may carry, and the answer reader
 * allows the extra level, so whatever the service echoes the device can read. */
#define ENR_DPS_PAYLOAD_DEPTH_MAX (ENR_DPS_JSON_DEPTH_MAX - 1)
#define ENR_DPS_RESPONSE_DEPTH_MAX (ENR_DPS_PAYLOAD_DEPTH_MAX + 2)
#define ENR_DPS_REGISTRATION_ID_MAX 128
#define ENR_DPS_ID_SCOPE_MAX 64
#define ENR_DPS_OPERATION_ID_MAX 128
#define ENR_DPS_CSR_CHARS_MAX (32u * 1024u) /* base64 characters of one CSR */
#define ENR_DPS_PAYLOAD_MAX 4096u           /* a request's payload, as compact JSON text */
#define ENR_DPS_CHAIN_MAX 8                 /* certificates in issuedCertificateChain */
#define ENR_DPS_TRACKING_ID_SIZE 37         /* a UUID and its NUL */
#define ENR_DPS_TIME_SIZE 29                /* "2026-11-23T08:00:00.0000000Z" and its NUL */

/* ---- errorCodes ----------------------------------------------------------
 * One entry per documented errorCode (docs/errors.md). The enum order is not
 * part of the protocol; the numbers returned by enr_dps_error_code() are, and
 * a number is never reused for another meaning: new errors get new numbers. */

typedef enum enr_dps_error {
    ENR_DPS_OK = 0, /* no error: errorCode 0, not sent */
    ENR_DPS_MALFORMED_BODY,
    ENR_DPS_REGISTRATION_ID_MISMATCH,
    ENR_DPS_REGISTRATION_ID_INVALID,
    ENR_DPS_API_VERSION_UNSUPPORTED,
    ENR_DPS_CSR_NOT_DECODABLE,
    ENR_DPS_CSR_SIGNATURE_INVALID,
    ENR_DPS_CSR_CN_MISMATCH,
    ENR_DPS_CSR_KEY_NOT_ALLOWED,
    ENR_DPS_CSR_LINT_ERROR,
    ENR_DPS_CSR_FIELDS_DIFFER,
    ENR_DPS_AUTH_FAILED,      /* SAS token does not verify (or no credential at all) */
    ENR_DPS_CERT_AUTH_FAILED, /* X.509 attestation: the TLS client certificate */
    ENR_DPS_TOKEN_EXPIRED,
    ENR_DPS_ENROLLMENT_DISABLED,
    ENR_DPS_REGISTRATION_DISABLED,
    ENR_DPS_UNKNOWN_ID_SCOPE,
    ENR_DPS_UNKNOWN_ENROLLMENT,
    ENR_DPS_UNKNOWN_OPERATION,
    ENR_DPS_UNKNOWN_PATH,
    ENR_DPS_METHOD_NOT_ALLOWED,
    ENR_DPS_BODY_TOO_LARGE,
    ENR_DPS_PAYLOAD_TOO_LARGE,
    ENR_DPS_THROTTLED,
    ENR_DPS_INTERNAL,
    ENR_DPS_STORE_UNAVAILABLE,
    ENR_DPS_CSR_KEY_COMPROMISED, /* the key of a certificate revoked for keyCompromise */
    /* The provisioning core's refusals that only EST's requests meet. */
    ENR_DPS_RENEWAL_SUBJECT_DIFFERS,  /* a renewal's CSR changed the subject or SAN */
    ENR_DPS_SERVER_KEYGEN_NOT_ALLOWED,
    ENR_DPS_ENROLLMENT_MISMATCH,      /* not under the enrollment group the request names */
    ENR_DPS_NO_CREDENTIAL_POLICY,     /* the enrollment issues no certificates */
    ENR_DPS_ERROR_COUNT /* not an error: the number of values above */
} enr_dps_error;

/* The six-digit errorCode (0 for ENR_DPS_OK or an out-of-range value). */
int enr_dps_error_code(enr_dps_error e);
/* The HTTP status that goes with it: errorCode / 1000 (200 for ENR_DPS_OK). */
int enr_dps_error_http_status(enr_dps_error e);
/* A short stable name, e.g. "malformed_body" (as in docs/errors.md). */
const char *enr_dps_error_name(enr_dps_error e);
/* One sentence for the error body when the caller has nothing better. */
const char *enr_dps_error_summary(enr_dps_error e);
/* The reverse of enr_dps_error_code(): false when the number is not ours. */
bool enr_dps_error_from_code(int code, enr_dps_error *out);

/* ---- api-version -------------------------------------------------------- */

typedef enum enr_dps_api_generation {
    ENR_DPS_API_2019_03_31 = 1,         /* classic: no CSR, nothing issued */
    ENR_DPS_API_2021_11_01_PREVIEW = 2, /* CSR in "clientCertificateCsr" */
    ENR_DPS_API_2025_07_01_PREVIEW = 3  /* CSR in "csr" (Azure Device Registry) */
} enr_dps_api_generation;

/* Checks the api-version query value (NULL when the query has none). On
 * failure the answer is ENR_DPS_API_VERSION_UNSUPPORTED (HTTP 400) and the
 * message lists the accepted values. The "-preview" suffix is compared
 * case-insensitively; the date must match exactly. */
enr_code enr_dps_api_version_check(const char *query_value, enr_dps_api_generation *out,
                                   enr_error *err);
const char *enr_dps_api_version_name(enr_dps_api_generation gen);

/* ---- identifiers -------------------------------------------------------- */

/* 1..128 characters of [A-Za-z0-9._:-], the last one alphanumeric or '-'.
 * The message says which character (and where) is wrong. */
enr_code enr_dps_registration_id_check(const char *id, size_t len, enr_error *err);
/* Registration ids compare case-insensitively (ASCII). */
bool enr_dps_registration_id_equal(const char *a, const char *b);

/* A random (version 4) UUID for trackingId, lowercase, NUL-terminated. */
enr_code enr_dps_tracking_id_new(char out[ENR_DPS_TRACKING_ID_SIZE], enr_error *err);

/* An operation id: "<start time, hex seconds>.<random UUID>". The start
 * time lets any node sharing the store tell an operation still being
 * committed elsewhere ("assigning": poll again) from one that never
 * existed; it is a hint, never a credential (the poll is authenticated
 * and an unknown id only ever gets "assigning" for a bounded time). */
#define ENR_DPS_OPERATION_ID_SIZE (16 + 1 + ENR_DPS_TRACKING_ID_SIZE)
enr_code enr_dps_operation_id_new(time_t now, char out[ENR_DPS_OPERATION_ID_SIZE], enr_error *err);
/* The start time an operation id of ours carries; false for any other id. */
bool enr_dps_operation_id_started(const char *id, time_t *started);

/* ---- time ---------------------------------------------------------------- */

/* "2026-11-23T08:00:00.0000000Z": UTC with seven fractional digits as DPS
 * writes it. Years outside 0000..9999 are refused (ENR_E_USAGE). */
enr_code enr_dps_time_format(time_t t, char out[ENR_DPS_TIME_SIZE], enr_error *err);
/* Reads "YYYY-MM-DDTHH:MM:SS[.f{1,9}]Z" (the fraction is dropped). */
enr_code enr_dps_time_parse(const char *text, time_t *out, enr_error *err);

/* ---- request path --------------------------------------------------------- */

typedef enum enr_dps_path_kind {
    ENR_DPS_PATH_REGISTER = 1,        /* /{idScope}/registrations/{registrationId}/register */
    ENR_DPS_PATH_OPERATION_STATUS = 2 /* .../{registrationId}/operations/{operationId} */
} enr_dps_path_kind;

typedef struct enr_dps_path {
    enr_dps_path_kind kind;
    char id_scope[ENR_DPS_ID_SCOPE_MAX + 1];
    char registration_id[ENR_DPS_REGISTRATION_ID_MAX + 1]; /* as sent (case kept) */
    char operation_id[ENR_DPS_OPERATION_ID_MAX + 1];       /* "" for register */
} enr_dps_path;

/* Parses the path component of the request URI (no query: split it off
 * first). Each segment is percent-decoded once and then must satisfy its
 * syntax: idScope 1..64 of [A-Za-z0-9._-], the registration id as above, the
 * operation id 1..128 of [A-Za-z0-9._:-]. Empty or extra segments (a trailing
 * '/' included) are refused. `dps_err` says which errorCode to answer:
 * ENR_DPS_UNKNOWN_PATH (no such endpoint), ENR_DPS_UNKNOWN_ID_SCOPE,
 * ENR_DPS_REGISTRATION_ID_INVALID or ENR_DPS_UNKNOWN_OPERATION. */
enr_code enr_dps_path_parse(const char *path, enr_dps_path *out, enr_dps_error *dps_err,
                            enr_error *err);

/* ---- the register request --------------------------------------------------
 * {"registrationId": "dev-001", "payload": {...}, "csr": "<base64 DER>",
 *  "clientCertificateCsr": "<base64 DER>"}
 * - The body must be one JSON object (UTF-8, no duplicate keys, nothing after
 *   it, at most ENR_DPS_JSON_DEPTH_MAX levels deep, no \u0000), at most
 *   ENR_DPS_REQUEST_BODY_MAX bytes.
 * - registrationId is required and must equal the path's id, compared
 *   case-insensitively.
 * - csr / clientCertificateCsr are strings of headerless base64 (whitespace
 *   inside is dropped, PEM header lines are refused). Either may be sent; when
 *   both are, they must carry the same base64. Neither: a classic
 *   registration.
 * - payload is any JSON value, kept as compact JSON text (numbers are
 *   re-serialised, so 0.1 may come back as 0.10000000000000001) of at most
 *   ENR_DPS_PAYLOAD_MAX bytes (ENR_DPS_PAYLOAD_TOO_LARGE). It is the
 *   device's data for the enrollment (DPS hands it to a custom allocation
 *   policy); enrolld neither stores nor echoes it.
 * - A JSON null for csr, clientCertificateCsr or payload means "absent".
 * - Other top-level members are ignored: device SDKs send extras such as
 *   "tpm" that enrolld has no use for. */

typedef struct enr_dps_register_request enr_dps_register_request;

typedef enum enr_dps_csr_field {
    ENR_DPS_CSR_NONE = 0,          /* classic registration */
    ENR_DPS_CSR_FIELD_CSR = 1,     /* "csr" only */
    ENR_DPS_CSR_FIELD_CLIENT = 2,  /* "clientCertificateCsr" only */
    ENR_DPS_CSR_FIELD_BOTH = 3     /* both, carrying the same request */
} enr_dps_csr_field;

/* On failure `*dps_err` is the errorCode to answer (ENR_DPS_MALFORMED_BODY,
 * ENR_DPS_BODY_TOO_LARGE, ENR_DPS_PAYLOAD_TOO_LARGE, ENR_DPS_REGISTRATION_ID_INVALID,
 * ENR_DPS_REGISTRATION_ID_MISMATCH, ENR_DPS_CSR_NOT_DECODABLE,
 * ENR_DPS_CSR_FIELDS_DIFFER, or ENR_DPS_INTERNAL when memory ran out) and
 * err->message is fit to send back to the device. */
enr_code enr_dps_register_request_parse(const char *body, size_t len,
                                        const char *path_registration_id,
                                        enr_dps_register_request **out, enr_dps_error *dps_err,
                                        enr_error *err);
void enr_dps_register_request_free(enr_dps_register_request *req);

/* The id exactly as the body sent it (the group key derivation needs that). */
const char *enr_dps_register_request_registration_id(const enr_dps_register_request *req);
/* The CSR as base64 without whitespace, or NULL for a classic registration. */
const char *enr_dps_register_request_csr(const enr_dps_register_request *req);
enr_dps_csr_field enr_dps_register_request_csr_field(const enr_dps_register_request *req);
/* Compact JSON text of "payload", or NULL when there is none. */
const char *enr_dps_register_request_payload(const enr_dps_register_request *req);

/* Decodes the CSR (ENR_DPS_CSR_NOT_DECODABLE on failure). It does not check
 * the signature: enr_csr_verify() failing maps to ENR_DPS_CSR_SIGNATURE_INVALID. */
enr_code enr_dps_register_request_decode_csr(const enr_dps_register_request *req, enr_csr **out,
                                             enr_dps_error *dps_err, enr_error *err);

/* ---- answers ---------------------------------------------------------------
 * Writers return compact JSON text in `*out` (free with free()). They refuse
 * (ENR_E_USAGE) ids that fail the syntax above, so nothing a device sent can
 * reach a body unchecked. */

typedef enum enr_dps_status {
    ENR_DPS_STATUS_UNKNOWN = 0,
    ENR_DPS_STATUS_ASSIGNING,
    ENR_DPS_STATUS_ASSIGNED,
    ENR_DPS_STATUS_FAILED,
    ENR_DPS_STATUS_DISABLED,
    ENR_DPS_STATUS_UNASSIGNED
} enr_dps_status;

const char *enr_dps_status_name(enr_dps_status s);

typedef enum enr_dps_substatus {
    ENR_DPS_SUBSTATUS_INITIAL_ASSIGNMENT = 0,
    ENR_DPS_SUBSTATUS_DEVICE_DATA_MIGRATED,
    ENR_DPS_SUBSTATUS_DEVICE_DATA_RESET,
    ENR_DPS_SUBSTATUS_REPROVISIONED_TO_INITIAL_ASSIGNMENT
} enr_dps_substatus;

const char *enr_dps_substatus_name(enr_dps_substatus s);

typedef struct enr_dps_der {
    const unsigned char *der;
    size_t len;
    /* Written by OpenSSL's encoder in this process (i2d_X509): one DER
     * object, which the writers do not walk again. Leave false for bytes
     * from anywhere else (a store, a file, the wire): they are checked. */
    bool encoded;
} enr_dps_der;

typedef struct enr_dps_assignment {
    const char *operation_id;    /* required */
    const char *registration_id; /* required */
    time_t created_at;           /* createdDateTimeUtc */
    time_t updated_at;           /* lastUpdatedDateTimeUtc */
    const char *assigned_hub;    /* assignedHub and deviceId: both or neither */
    const char *device_id;
    enr_dps_substatus substatus;
    const char *etag;         /* NULL: omitted */
    const char *payload_json; /* NULL: omitted; otherwise any JSON text */
    /* Leaf first, then each issuer up to and including the root. None (NULL,
     * 0) for a classic registration: then no certificate member is written.
     * Otherwise issuedCertificateChain (base64 DER each), issuedClientCertificate
     * (the leaf) and trustBundle (the last element, as PEM) are written. */
    const enr_dps_der *chain;
    size_t chain_len;
    /* With a certificate: when the device should renew it, from the
     * credential policy (seed 003's renewalWindow). Written as
     * registrationState.renewalWindow (ISO 8601) and .renewAfterUtc, enrolld
     * extensions that DPS clients ignore. NULL / 0: omitted. */
    const char *renewal_window;
    time_t renew_after;
    /* The answer as an operation keeps it: written as with a certificate
     * but without the certificate members, which are a registration's
     * largest bytes and already in its certificate record (chain ignored;
     * enr_dps_complete_assigned joins them back). */
    bool certificate_apart;
} enr_dps_assignment;

typedef struct enr_dps_failure {
    const char *operation_id;    /* required */
    const char *registration_id; /* required */
    time_t created_at;
    time_t updated_at;
    enr_dps_error error; /* not ENR_DPS_OK */
    const char *message; /* NULL: enr_dps_error_summary() */
    const char *etag;    /* NULL: omitted */
    bool disabled;       /* status "disabled" instead of "failed" */
} enr_dps_failure;

/* 202: {"operationId": "...", "status": "assigning"} */
enr_code enr_dps_write_assigning(const char *operation_id, char **out, enr_error *err);
/* 202: the same with "registrationState": {"registrationId", "status": "assigning"} */
enr_code enr_dps_write_operation_status_assigning(const char *operation_id,
                                                  const char *registration_id, char **out,
                                                  enr_error *err);
/* 200: the final body with status "assigned". */
enr_code enr_dps_write_assigned(const enr_dps_assignment *a, char **out, enr_error *err);
/* An answer written with certificate_apart, completed with `chain` (leaf
 * first): the text enr_dps_write_assigned writes for the same assignment
 * with that chain. ENR_E_PARSE when `kept` is not such an answer. */
enr_code enr_dps_complete_assigned(const char *kept, size_t len, const enr_dps_der *chain, size_t chain_len,
                                   char **out, enr_error *err);
/* 200: the final body with status "failed" (or "disabled"); the registrationState
 * carries errorCode and errorMessage. */
enr_code enr_dps_write_failed(const enr_dps_failure *f, char **out, enr_error *err);
/* Every writer refuses (ENR_E_USAGE) to produce an answer longer than
 * ENR_DPS_RESPONSE_BODY_MAX or a payload deeper than ENR_DPS_PAYLOAD_DEPTH_MAX:
 * the device-side reader would refuse it. */

/* The error body sent with HTTP enr_dps_error_http_status(e):
 * {"errorCode", "trackingId", "message", "timestampUtc"}. A NULL message uses
 * enr_dps_error_summary(e); a NULL tracking id omits trackingId. The message
 * is reduced to printable ASCII and at most 1024 bytes. */
enr_code enr_dps_write_error(enr_dps_error e, const char *message, const char *tracking_id,
                             time_t now, char **out, enr_error *err);

/* ---- reading an answer (the device side) -----------------------------------
 * Reads any of the bodies above (and DPS's own): an operation body with
 * operationId and status, or an error body with errorCode (which reads as
 * status "failed" with no operation id). Strict types, bounded sizes
 * (ENR_DPS_RESPONSE_BODY_MAX, ENR_DPS_RESPONSE_DEPTH_MAX, ENR_DPS_CHAIN_MAX);
 * assignedHub and deviceId must come together; certificates must be base64
 * DER (PEM in trustBundle). Unknown members are ignored. */

typedef struct enr_dps_register_response enr_dps_register_response;

enr_code enr_dps_register_response_parse(const char *body, size_t len,
                                         enr_dps_register_response **out, enr_error *err);
void enr_dps_register_response_free(enr_dps_register_response *r);

enr_dps_status enr_dps_response_status(const enr_dps_register_response *r);
/* NULL when absent (an error body). */
const char *enr_dps_response_operation_id(const enr_dps_register_response *r);
bool enr_dps_response_has_registration_state(const enr_dps_register_response *r);
/* registrationState members; each NULL when absent. */
enr_dps_status enr_dps_response_registration_status(const enr_dps_register_response *r);
const char *enr_dps_response_registration_id(const enr_dps_register_response *r);
const char *enr_dps_response_assigned_hub(const enr_dps_register_response *r);
const char *enr_dps_response_device_id(const enr_dps_register_response *r);
const char *enr_dps_response_substatus(const enr_dps_register_response *r);
const char *enr_dps_response_etag(const enr_dps_register_response *r);
const char *enr_dps_response_created(const enr_dps_register_response *r);
const char *enr_dps_response_last_updated(const enr_dps_register_response *r);
const char *enr_dps_response_payload(const enr_dps_register_response *r); /* JSON text */
/* enrolld's renewal hint (see enr_dps_assignment): renewalWindow as ISO 8601
 * text and renewAfterUtc as a timestamp; NULL when absent. */
const char *enr_dps_response_renewal_window(const enr_dps_register_response *r);
const char *enr_dps_response_renew_after(const enr_dps_register_response *r);
/* issuedCertificateChain, leaf first (0 when absent). */
size_t enr_dps_response_chain_len(const enr_dps_register_response *r);
const unsigned char *enr_dps_response_chain_der(const enr_dps_register_response *r, size_t i,
                                                size_t *len);
/* issuedClientCertificate (NULL when absent). */
const unsigned char *enr_dps_response_client_certificate(const enr_dps_register_response *r,
                                                         size_t *len);
/* trustBundle.certificates[*].certificate, decoded to DER. */
size_t enr_dps_response_trust_bundle_len(const enr_dps_register_response *r);
const unsigned char *enr_dps_response_trust_bundle_der(const enr_dps_register_response *r,
                                                       size_t i, size_t *len);
/* errorCode (0 when none) and the message: top-level "message" or
 * "errorMessage", or registrationState's "errorMessage". */
int enr_dps_response_error_code(const enr_dps_register_response *r);
const char *enr_dps_response_error_message(const enr_dps_register_response *r);
const char *enr_dps_response_tracking_id(const enr_dps_register_response *r);

#ifdef __cplusplus
}
#endif
#endif
