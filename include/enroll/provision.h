/* The provisioning core: everything a registration is, whatever carried it.
 *
 * A front end (DPS over HTTPS, DPS over MQTT; later AWS fleet provisioning,
 * EST) translates what arrived into an enr_provision_request: who the
 * transport says the peer is (a SAS token, a TLS peer certificate and the
 * chain it sent), the registration id, the parsed verb and the body. The
 * core attests the peer, applies the enrollment's policy, issues, hands the
 * registration to the group committer and completes the request with a typed
 * outcome (status, errorCode, the DPS answer document) by calling the front
 * end back on the event loop that asked. Nothing here knows HTTP or MQTT.
 *
 *   submit -> attest (enr_attest) -> enrollment/registration enabled
 *     -> body -> CSR gates (enr_provision_check_csr) -> policy
 *     (enr_provision_policy_load) -> sign (enr_ca_sign) -> a job for the
 *     group committer -> committed: done(200) | slow: done(202), the
 *     operation readable by any front end until the store holds it.
 *
 * Threads: one enr_provision_shared per service (the committer thread and
 * the table of operations still being committed), one enr_provision per
 * worker event loop (its own store connection and CA cache). An
 * enr_provision is used only on its loop's thread. */
#ifndef ENROLL_PROVISION_H
#define ENROLL_PROVISION_H

#include <stdbool.h>
#include <stddef.h>
#include <time.h>

#include <openssl/x509.h>

#include "enroll/ca.h"
#include "enroll/csr.h"
#include "enroll/dps.h"
#include "enroll/error.h"
#include "enroll/ocsp.h"
#include "enroll/signer.h"
#include "enroll/store.h"

struct event_base;

/* ---- attestation: who the peer is, and who decides about it ------------ */

/* What the transport says about the peer. Borrowed for the call. */
typedef struct enr_peer_credential {
    const char *sas_token;        /* a SAS token (HTTP Authorization, MQTT password), or NULL */
    X509 *certificate;            /* the TLS client certificate, or NULL */
    STACK_OF(X509) *chain;        /* what the client sent with it, or NULL */
    /* EST's HTTP Basic: the password (the user must be the registration
     * id), checked against the enrollment's secret hash; NULL: none. A
     * SAS token wins over it, it wins over the certificate. */
    const char *basic_password;
} enr_peer_credential;

typedef struct enr_attested {
    enr_enrollment enrollment;    /* the enrollment that decided (found) */
    bool found;
    enr_registration registration; /* as the store held it (registered) */
    bool registered;
    /* Renewal with an operational certificate: which one (the commit checks
     * again that it is still unrevoked). Empty otherwise. */
    char credential_issuer[ENR_STORE_DN_MAX + 1];
    char credential_serial[ENR_STORE_SERIAL_MAX + 1];
    /* A SAS token's expiry (its se) when a token attested; 0 otherwise. */
    time_t token_expiry;
    /* EST's Basic with a group's secret for a registration already bound
     * to the group: the secret is shared by the group's devices, so it
     * cannot speak for one that exists (it could take it over with a key
     * of its own). It only fetches again what a request for the same key
     * made (a 202's retry). */
    bool repeat_only;
} enr_attested;

#define ENR_PROVISION_SAS_SKEW_DEFAULT 300L

typedef struct enr_attest_options {
    const char *id_scope;
    long sas_max_lifetime;        /* seconds a SAS token may live beyond now */
    long sas_skew;                /* seconds of clock skew allowed; 0: ENR_PROVISION_SAS_SKEW_DEFAULT */
    time_t now;                   /* 0: the current time */
    struct enr_sas_mac *mac;      /* HMAC-SHA256 reused across attestations (one per thread), or NULL */
} enr_attest_options;

/* Attests `registration_id`: a SAS token (when present) against the keys of
 * who decides (the id's individual enrollment; else the enrollment its
 * registration is bound to; else any group), or else the TLS certificate
 * (CN = id; the enrollment's certificate, a proven group CA, or the
 * registration's own operational certificate for renewal). ENR_DPS_OK
 * or the refusal, with `message` for the device. *out is filled as far as
 * it got; free it with enr_attested_free either way. */
enr_dps_error enr_attest(enr_store *store, const enr_attest_options *opts, const enr_peer_credential *peer,
                         const char *registration_id, enr_attested *out, char *message, size_t cap);
/* What a registration needs beyond attestation: its enrollment enabled and
 * the registration not disabled by an operator. (A poll needs only the
 * attestation: the device may still read how its operation ended.) */
enr_dps_error enr_attested_allows(const enr_attested *a, const char *registration_id, char *message,
                                     size_t cap);
void enr_attested_free(enr_attested *a);

/* ---- policy: what may be issued ----------------------------------------- */

/* The CSR's own gates, before anything is signed: it verifies and lints
 * clean for this registration id (CN = id; the key's type and size), and
 * its key is not blocked for keyCompromise in the store. */
enr_dps_error enr_provision_check_csr(enr_store *store, const enr_csr *csr, const char *registration_id,
                                      char *message, size_t cap);

/* An enrollment's credential policy as issuance needs it. */
typedef struct enr_provision_policy {
    char name[ENR_STORE_ID_MAX + 1];
    char ca_name[ENR_STORE_ID_MAX + 1];
    char renewal_window[ENR_STORE_DURATION_MAX + 1]; /* "" for none */
    enr_profile *profile;         /* device profile: validity, CN forced to the id, key types */
    char key_types[ENR_STORE_KEY_TYPES_MAX + 1]; /* "" for the default */
    bool allow_server_keygen;     /* EST's serverkeygen */
} enr_provision_policy;

/* Loads policy `name` and builds its profile for `registration_id`.
 * ENR_E_NOTFOUND when there is no such policy; ENR_E_USAGE when it is
 * unusable (bad validity or key types: an operator's mistake). */
enr_code enr_provision_policy_load(enr_store *store, const char *name, const char *registration_id,
                                   enr_provision_policy *out, enr_error *err);
void enr_provision_policy_free(enr_provision_policy *p);

/* A key the service makes for a device (EST's serverkeygen, AWS's
 * CreateKeysAndCertificate), and a CSR for it with `subject`, to go
 * through the same gates and signing as a device's own. */
enr_code enr_provision_server_key(enr_key_type type, const X509_NAME *subject, EVP_PKEY **key_out,
                                  enr_csr **csr_out, enr_error *err);

/* The DPS errorCode of a refusal by a rule, from its typed reason. */
enr_dps_error enr_provision_error_of_refusal(const enr_error *refusal);

/* ---- the asynchronous core ---------------------------------------------- */

typedef struct enr_provision_shared enr_provision_shared;
typedef struct enr_provision enr_provision;

typedef struct enr_provision_options {
    const char *store_location;         /* the store */
    const char *id_scope;         /* the one idScope served */
    long sas_max_lifetime;        /* 0: ENR_PROVISION_SAS_MAX_LIFETIME_DEFAULT */
    long assigning_after_ms;      /* answer 202 when the commit takes longer; 0: always 202 */
    int audit_max_age_days;       /* audit pruning (0: no bound) */
    long audit_max_rows;
    int audit_refusal_samples;    /* refusals itemized per loop, errorCode and second */
} enr_provision_options;

/* Default for limits.sas_token_max_lifetime_seconds: one day. Device SDKs
 * make tokens for an hour. */
#define ENR_PROVISION_SAS_MAX_LIFETIME_DEFAULT 86400L

/* The committer thread and the table of operations in flight. Strings of
 * `opts` are copied. */
enr_code enr_provision_shared_new(const enr_provision_options *opts, enr_provision_shared **out, enr_error *err);
/* Shutting down, in this order: enr_provision_flush_audit on every loop
 * (their last refusals), enr_provision_shared_stop (commits what is queued
 * and stops the committer thread: every registration is then committed or
 * not), enr_provision_free on every loop, enr_provision_shared_free. */
void enr_provision_shared_stop(enr_provision_shared *s);
void enr_provision_shared_free(enr_provision_shared *s);
/* Thread-safe: false while the store cannot take commits (for /healthz). */
bool enr_provision_store_ok(enr_provision_shared *s);

/* One per event loop; `base` runs its timers and its completions. */
enr_code enr_provision_new(enr_provision_shared *s, struct event_base *base, enr_provision **out, enr_error *err);
/* Requests still waiting are dropped unanswered: call it after the loop
 * and its front ends have stopped, and after enr_provision_shared_stop. */
void enr_provision_free(enr_provision *p);

/* OCSP (include/enroll/ocsp.h) from this loop's store: the DER response to
 * a DER request, made at once (a store read per certificate asked about;
 * the first request for a CA also issues its responder certificate). */
enr_code enr_provision_ocsp(enr_provision *p, const unsigned char *req, size_t len, unsigned char **resp,
                            size_t *resp_len, enr_ocsp_outcome *outcome, enr_error *err);
/* EST's reads, answered at once from this loop's store: the CA
 * certificates devices should trust (the issuing CA of `group`'s policy
 * and its chain; with no group, those of every policy), and the key types
 * `group`'s policy allows (for csrattrs). ENR_E_NOTFOUND: no such group,
 * or it has no credential policy. */
enr_code enr_provision_ca_certificates(enr_provision *p, const char *group, STACK_OF(X509) **out, enr_error *err);
enr_code enr_provision_group_key_types(enr_provision *p, const char *group, char *out, size_t cap, enr_error *err);
/* Hands this second's refusal audit events to the committer now (the core
 * does it once a second by itself). */
void enr_provision_flush_audit(enr_provision *p);

typedef enum enr_provision_verb {
    ENR_PROVISION_REGISTER,          /* register (DPS PUT .../register) */
    ENR_PROVISION_OPERATION_STATUS,  /* poll an operation (DPS GET .../operations/{id}) */
    /* A DER CSR in, a certificate and its chain out (EST's simpleenroll,
     * simplereenroll and serverkeygen): the registration id is the CSR's
     * subject CN, and no idScope or api-version is asked for. */
    ENR_PROVISION_ENROLL,
} enr_provision_verb;

/* What enr_provision_authenticate proved for one peer (see there), owned
 * by the front end for that connection. */
typedef struct enr_provision_grant enr_provision_grant;

typedef struct enr_provision_request {
    enr_provision_verb verb;
    const char *id_scope;            /* as the device named it */
    const char *registration_id;     /* as the device named it (path, MQTT client id) */
    const char *operation_id;        /* OPERATION_STATUS */
    const char *api_version;         /* NULL: none sent */
    enr_peer_credential peer;
    const char *body;                /* REGISTER: the JSON body, not NUL-terminated */
    size_t body_len;
    /* REGISTER: the grant enr_provision_authenticate gave this connection,
     * or NULL. Spent by the first register that carries it, used or not. */
    enr_provision_grant *grant;
    /* ENROLL: body is the CSR's DER. */
    const char *basic_user;          /* HTTP Basic's user (must be the CSR's CN), or NULL */
    const char *enrollment_group;    /* the enrollment group that must decide (an EST label), or NULL */
    bool renewal;                    /* only the current certificate attests; the CSR keeps its subject and SAN */
    bool server_keygen;              /* the key is made here (when the policy allows) and answered once */
} enr_provision_request;

typedef struct enr_provision_outcome {
    int status;                      /* DPS's HTTP status: 200, 202, 4xx, 5xx */
    enr_dps_error error;             /* ENR_DPS_OK unless refused */
    int error_code;                  /* its errorCode; 0 when answered */
    const char *body;                /* the JSON answer document; valid during the callback */
    int retry_after;                 /* seconds to wait before polling; 0: none */
    const char *route;               /* "register" or "operation", for logs */
    const char *registration_id;     /* may be "" */
    bool issued;                     /* a certificate was issued and committed */
    double commit_ms;                /* the group commit's duration, when there was one */
    const char *message;             /* a refusal's reason, for the peer; NULL otherwise */
    /* ENROLL, 200: the certificate, then its issuers up to the root (DER);
     * with server_keygen also the key made for it (PKCS#8 DER, never
     * stored: this is its one appearance). Valid during the callback. */
    const enr_dps_der *chain;
    size_t chain_len;
    const unsigned char *private_key;
    size_t private_key_len;
} enr_provision_outcome;

/* Called exactly once per submitted request, on the loop's thread, unless
 * the request was cancelled first. */
typedef void (*enr_provision_done_fn)(void *ctx, const enr_provision_outcome *outcome);

typedef struct enr_provision_call enr_provision_call;

/* Sees the final outcome of every registration (committed, or refused at
 * any step, also after a 202 when nobody waits any more) and of every
 * refusal, once each: for metrics. Not polls' answers, not 202s. */
void enr_provision_set_observer(enr_provision *p, enr_provision_done_fn fn, void *arg);

/* Starts a request. A refusal, a poll and anything answered at once call
 * `done` before this returns (and it returns NULL); otherwise the call
 * returns a handle and `done` comes later from the loop. All of `req` is
 * read before this returns. */
enr_provision_call *enr_provision_submit(enr_provision *p, const enr_provision_request *req,
                                         enr_provision_done_fn done, void *ctx);
/* The front end's peer went away: `done` will not be called. The
 * registration itself goes on (it is committed or not, as the store says). */
void enr_provision_cancel(enr_provision_call *call);

/* For transports that authenticate once per connection (MQTT's CONNECT):
 * the same checks a request gets before its verb (registration id,
 * api-version, idScope, attestation, the enrollment and registration
 * enabled), answered at once. ENR_DPS_OK, or the refusal (audited like any
 * other) with a message for the log.
 *
 * With `grant` (may be NULL) and a SAS token that attested, *grant
 * receives what was proved (else NULL), for the connection's first
 * register request to carry instead of being attested again: the device
 * registers right after CONNECT, with the same token, so attesting twice
 * is the same two HMACs and store reads over again. The core uses a grant
 * only on the loop that made it, for exactly the registration id and
 * token it was made for, before the token's se, and once; anything else,
 * and every other request (polls, a second register, X.509 peers whose
 * validity is not one number), is attested again as before. What
 * attestation saw is checked again inside the commit as for any
 * registration (enrollment enabled, registration not disabled, credential
 * unrevoked), and in addition that the enrollment is unchanged since
 * CONNECT (its etag: a rotated key refuses) and not overtaken by an
 * individual enrollment for the id. Free it with enr_provision_grant_free
 * when the connection goes. */
enr_dps_error enr_provision_authenticate(enr_provision *p, const char *id_scope, const char *registration_id,
                                         const char *api_version, const enr_peer_credential *peer,
                                         enr_provision_grant **grant, char *message, size_t cap);
void enr_provision_grant_free(enr_provision_grant *grant);

/* Answers a request the front end refused before it reached the core (a
 * malformed path or topic, an unknown api-version): the DPS error document
 * with a tracking id, audited like any refusal. */
void enr_provision_refuse(enr_provision *p, enr_dps_error e, const char *message, const char *registration_id,
                          const char *route, enr_provision_done_fn done, void *ctx);

#endif
