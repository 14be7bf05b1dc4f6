/* An OCSP responder (RFC 6960) over the store: for every issuing CA in
 * it, the status of a certificate by serial (good, revoked with its time
 * and reason, unknown), answered from the store at the moment of the
 * request, so a revocation shows in the next response. Requests and
 * responses are DER (the HTTP front end carries them); nothing here knows
 * HTTP.
 *
 * Responses are signed by a delegated responder: for each CA a key made in
 * memory when first needed and a certificate the CA issues for it (EKU
 * OCSPSigning, id-pkix-ocsp-nocheck, valid three days, renewed when less
 * than one is left), sent with the CA's chain so a client that trusts the
 * root verifies the response. The responder key never leaves the process.
 *
 * Threads: one responder per thread (it holds a store connection's
 * handle and opened CAs). */
#ifndef ENROLL_OCSP_H
#define ENROLL_OCSP_H

#include <stddef.h>
#include <time.h>

#include "enroll/error.h"
#include "enroll/store.h"

#ifdef __cplusplus
extern "C" {
#endif

#define ENR_OCSP_REQUEST_MAX 65536 /* bytes; larger requests are malformed */
#define ENR_OCSP_REQUESTS_MAX 16   /* CertIDs in one request */
#define ENR_OCSP_NEXT_UPDATE 300   /* seconds: how long a client may keep a response */

typedef struct enr_ocsp_responder enr_ocsp_responder;

/* STORE is borrowed and must outlive the responder. */
enr_code enr_ocsp_responder_new(enr_store *store, enr_ocsp_responder **out, enr_error *err);
void enr_ocsp_responder_free(enr_ocsp_responder *responder);

/* Why a request got no certificate status (answered anyway, with the
 * OCSPResponseStatus RFC 6960 names). */
typedef enum enr_ocsp_outcome {
    ENR_OCSP_ANSWERED = 0,   /* successful: one status per CertID */
    ENR_OCSP_MALFORMED,      /* malformedRequest: not an OCSPRequest, none or too many CertIDs */
    ENR_OCSP_UNAUTHORIZED,   /* unauthorized: a CertID of a CA this store does not serve */
    ENR_OCSP_TRY_LATER,      /* tryLater: the store could not be read */
    ENR_OCSP_INTERNAL        /* internalError: the responder could not sign */
} enr_ocsp_outcome;

/* The OCSPResponse (DER, *resp to free with free()) to REQ. Always an
 * answer when ENR_OK: a refusal is a response too (*outcome says which).
 * NOW 0: the current time. ENR_E_NOMEM only when no answer can be made. */
enr_code enr_ocsp_answer(enr_ocsp_responder *responder, const unsigned char *req, size_t len, time_t now,
                         unsigned char **resp, size_t *resp_len, enr_ocsp_outcome *outcome, enr_error *err);

const char *enr_ocsp_outcome_name(enr_ocsp_outcome outcome);

#ifdef __cplusplus
}
#endif
#endif
