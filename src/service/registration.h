/* Internal to enrolld: the DPS registration pipeline, one per worker thread
 * (it owns a store connection and the issuing CAs it has opened).
 *   request -> path/api-version/idScope -> attestation (SAS) -> enrollment
 *   -> body -> CSR verify + lint + policy -> issue -> a job for the group
 *   committer (registration, certificate, operation, audit) -> answer once
 *   it is committed (registrar_finish).
 * A rejection leaves at its step with one DPS error and writes only an
 * audit event. */
#ifndef ENROLL_SERVICE_REGISTRATION_H
#define ENROLL_SERVICE_REGISTRATION_H

#include <stdbool.h>
#include <stddef.h>

#include <openssl/x509.h>

#include "enroll/error.h"
#include "enroll/dps.h"
#include "enroll/store.h"

typedef struct registrar registrar;

typedef struct registration_request {
    const char *path;          /* without the query */
    const char *api_version;   /* the api-version query value, or NULL */
    const char *authorization; /* the Authorization header, or NULL */
    const char *body;
    size_t body_len;
    bool is_put;               /* PUT .../register; otherwise GET .../operations/{id} */
    X509 *client_cert;         /* the TLS client certificate (X.509 attestation), or NULL */
    STACK_OF(X509) *client_chain; /* what the client sent with it, or NULL */
} registration_request;

/* A registration ready to commit, for the group committer (committer.h):
 * nothing may reach the device until the store holds it. */
typedef struct registration_job {
    enr_registration_commit item;  /* points into the fields below; item.result is the outcome */
    enr_registration registration;
    enr_certificate certificate;   /* owns its DER */
    enr_operation operation;
    enr_audit_event audit;
    char credential_issuer[ENR_STORE_DN_MAX + 1]; /* an operational certificate presented, or "" */
    char credential_serial[ENR_STORE_SERIAL_MAX + 1];
    char *answer;                  /* the 200 body, sent once committed */
    bool issued;
    char registration_id[129];
    double commit_ms;              /* the group commit's duration */
    /* For the committer and the server. */
    void (*done)(struct registration_job *job, void *arg);
    void *done_arg;
    void *context;
    struct registration_job *next;
} registration_job;

void registration_job_free(registration_job *job);

typedef struct registration_answer {
    int status;                /* HTTP status */
    char *body;                /* JSON, malloc'ed */
    const char *route;         /* for the request log */
    char registration_id[129]; /* for the request log; may be empty */
    int error_code;            /* the DPS errorCode of a rejection; 0 when answered */
    enr_dps_error error;       /* the same as the enum (ENR_DPS_OK when answered) */
    bool issued;               /* a certificate was issued and committed */
    double commit_ms;          /* time in the store commit, when there was one */
    registration_job *pending; /* accepted: commit this, then registrar_finish; no body yet */
    int retry_after;           /* seconds for a Retry-After header; 0: none */
} registration_answer;

enr_code registrar_new(const char *data_dir, const char *id_scope, registrar **out, enr_error *err);
void registrar_free(registrar *r);
/* The longest a SAS token may live beyond now (its `se`); a token minted
 * for longer is refused as 401003 even when genuine. Default
 * ENR_SERVICE_SAS_MAX_LIFETIME_DEFAULT. */
void registrar_set_sas_max_lifetime(registrar *r, long seconds);
/* True when `path` is one of the DPS routes (so the caller hands it here). */
bool registrar_owns_path(const char *path);
void registrar_handle(registrar *r, const registration_request *req, registration_answer *out);
/* Tells the operation-status route about operations answered 202 whose
 * commit is still running (so they read "assigning", not "unknown"), or
 * whose commit failed (they read "failed", and the device starts over). */
typedef enum registrar_operation_state {
    REGISTRAR_OPERATION_UNKNOWN = 0,
    REGISTRAR_OPERATION_ASSIGNING,
    REGISTRAR_OPERATION_FAILED
} registrar_operation_state;
/* For REGISTRAR_OPERATION_FAILED, *why is the refusal the commit ended
 * with (ENR_DPS_STORE_UNAVAILABLE when the store failed; a typed refusal
 * such as ENR_DPS_CSR_KEY_COMPROMISED when a re-check refused it). */
typedef registrar_operation_state (*registrar_in_flight_fn)(void *arg, const char *operation_id,
                                                            const char *registration_id, enr_dps_error *why);
void registrar_set_in_flight(registrar *r, registrar_in_flight_fn fn, void *arg);
/* Where a refusal's audit event goes: with no sink it is written to the
 * store at once (its own transaction); enrolld's workers gather them and
 * hand them to the committer in batches (server.c). */
typedef void (*registrar_refusal_fn)(void *arg, const enr_audit_event *audit);
void registrar_set_refusal_sink(registrar *r, registrar_refusal_fn fn, void *arg);
/* The answer for an accepted registration once its commit is over (the
 * job's item.result says how it went); takes the job's answer body. */
void registrar_finish(registrar *r, registration_job *job, registration_answer *out);

#endif
