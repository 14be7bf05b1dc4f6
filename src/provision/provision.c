/* The provisioning core's asynchronous half: a request in, attestation,
 * policy, signing, the group commit, and one outcome back to the front end
 * on its own loop (provision.h). */
#include "enroll/provision.h"

#include <event2/event.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "enroll/ca.h"
#include "enroll/csr.h"
#include "enroll/dps.h"
#include "enroll/duration.h"
#include "enroll/pubkey.h"
#include "enroll/sas.h"
#include "enroll/store.h"
#include "provision/ca_cache.h"
#include "provision/committer.h"

/* A store's unique (issuer, serial) index refusing a drawn serial (another
 * node drew it): sign again with a new one, this many times. */
#define RESIGN_MAX 3
/* EST: a 202 tells the device to send the same request again after this
 * many seconds; a request for the same key within ENROLL_AGAIN_SECONDS of
 * the registration's newest certificate gets that certificate back. */
#define ENROLL_RETRY_AFTER 2
#define ENROLL_AGAIN_SECONDS 600
/* How long a failed operation reads "failed" before it is unknown. */
#define FAILED_OPERATION_SECONDS 300
/* How long an operation unknown here but started moments ago (its id says
 * when) is taken for one another node sharing the store is still
 * committing: answered "assigning" until then, 404 after (the device
 * registers again). Far beyond any commit that will still succeed. */
#define OPERATION_ELSEWHERE_SECONDS 60
/* Refusal kinds tallied per second; more codes share the last slot. */
#define REFUSAL_KINDS 16

/* Operations answered 202 whose commit is still running, or failed. */
typedef struct operation_entry {
    char operation_id[ENR_STORE_ID_MAX + 1];
    char registration_id[ENR_STORE_ID_MAX + 1];
    time_t failed_until;   /* 0: still assigning; else its commit failed, said until then */
    enr_dps_error failure; /* why, when failed_until is set */
    struct operation_entry *next;
} operation_entry;

struct enr_provision_shared {
    enr_provision_options opts;
    char *store_location, *id_scope;
    committer *committer;
    pthread_mutex_t ops_lock;
    operation_entry *ops;
    atomic_int next_loop;
};

struct refusal_tally {
    int code;
    int sampled;
    unsigned long more;
    char outcome[ENR_STORE_WORD_MAX + 1];
};

struct enr_provision {
    enr_provision_shared *s;
    struct event_base *base;
    int index;                      /* names this loop in audit details */
    enr_store *store;
    enr_attest_options attest;
    enr_ca_cache *cas;
    enr_ocsp_responder *ocsp; /* made on the first OCSP request */
    /* Refusals of this second: a few itemized per errorCode, the rest
     * counted; handed to the committer once a second (one transaction),
     * never written on the loop. */
    struct refusal_tally refusals[REFUSAL_KINDS];
    enr_audit_event *samples;
    size_t sample_count;
    struct event *flush_timer;
    /* Registrations the committer has finished with, to complete here. */
    pthread_mutex_t committed_lock;
    registration_job *committed;
    struct event *committed_event;
    /* assigning_after_ms as one of libevent's common timeouts: every
     * waiting registration arms the same duration, so a queue beats the heap. */
    const struct timeval *assigning_after;
    enr_provision_call *calls;      /* registrations waiting for their commit */
    enr_provision_done_fn observer;
    void *observer_arg;
};

/* What a registration's commit is made of, kept until the store has it
 * (a taken serial is signed again from it). */
typedef struct commit_facts {
    char registration_id[ENR_STORE_ID_MAX + 1]; /* as the device sent it */
    enr_enrollment_kind enrollment_kind;
    char enrollment_id[ENR_STORE_ID_MAX + 1];
    char assigned_hub[ENR_STORE_HUB_MAX + 1];
    char credential_issuer[ENR_STORE_DN_MAX + 1];
    char credential_serial[ENR_STORE_SERIAL_MAX + 1];
    /* Attested at the connection's start (a grant), not by this request:
     * the etag of the enrollment that decided then, for the commit to
     * check nothing changed since; "" otherwise. */
    char enrollment_etag[ENR_STORE_ETAG_MAX + 1];
    char operation_id[ENR_DPS_OPERATION_ID_SIZE];
    time_t created_at;                          /* the registration's first creation */
} commit_facts;

struct enr_provision_call {
    enr_provision *p;
    commit_facts facts;
    enr_csr *csr;                   /* NULL: a classic registration */
    enr_provision_policy policy;
    int resigns;
    registration_job *job;          /* in the committer */
    enr_provision_done_fn done;     /* NULL: cancelled, or answered 202 */
    void *ctx;
    struct event *timer;            /* 202 when the commit takes too long */
    bool answered;                  /* 202 sent: the device polls the operation */
    /* ENROLL (EST): answered with the certificate and chain, not DPS's
     * document; a 202 means "ask again", with no operation to poll. */
    bool enroll;
    const char *route;
    enr_dps_der issuers[ENR_ISSUERS_MAX]; /* copies: the CA cache may close the CA meanwhile */
    size_t issuer_count;
    unsigned char *private_key;     /* serverkeygen: PKCS#8 DER, cleansed when freed */
    size_t private_key_len;
    enr_provision_call *prev, *next;
};

/* ---- outcomes ---------------------------------------------------------- */

static void refusal_audited(enr_provision *p, const enr_audit_event *audit)
{
    int k = 0;
    while (k < REFUSAL_KINDS && p->refusals[k].code != 0 && p->refusals[k].code != audit->reason_code)
        k++;
    if (k == REFUSAL_KINDS)
        k = REFUSAL_KINDS - 1; /* more codes than slots: the last one counts them all */
    struct refusal_tally *t = &p->refusals[k];
    if (t->code == 0) {
        t->code = audit->reason_code;
        snprintf(t->outcome, sizeof t->outcome, "%s", audit->outcome);
    }
    if (t->sampled < p->s->opts.audit_refusal_samples && p->samples != NULL) {
        p->samples[p->sample_count++] = *audit;
        t->sampled++;
    } else {
        t->more++;
    }
}

void enr_provision_flush_audit(enr_provision *p)
{
    committer *c = p->s->committer;
    if (c == NULL)
        return;
    if (p->sample_count > 0)
        committer_submit_audit(c, p->samples, p->sample_count);
    for (int k = 0; k < REFUSAL_KINDS && p->refusals[k].code != 0; k++) {
        struct refusal_tally *t = &p->refusals[k];
        if (t->more == 0)
            continue;
        enr_audit_event e = {0};
        snprintf(e.kind, sizeof e.kind, "register");
        snprintf(e.outcome, sizeof e.outcome, "%s", t->outcome);
        e.reason_code = t->code;
        snprintf(e.detail, sizeof e.detail,
                 "%lu more refusals with errorCode %d within a second on worker %d, not itemized "
                 "(audit.refusal_samples_per_second are)",
                 t->more, t->code, p->index);
        committer_submit_audit(c, &e, 1);
    }
    memset(p->refusals, 0, sizeof p->refusals);
    p->sample_count = 0;
}

static void flush_tick(evutil_socket_t fd, short what, void *arg)
{
    (void)fd, (void)what;
    enr_provision_flush_audit(arg);
}

static void deliver(enr_provision *p, enr_provision_done_fn done, void *ctx, const enr_provision_outcome *o,
                    bool final)
{
    if (done != NULL)
        done(ctx, o);
    if (final && p->observer != NULL)
        p->observer(p->observer_arg, o);
}

/* A refusal: one DPS error document, an audit event (tallied, written by
 * the committer), nothing else. */
static void refuse(enr_provision *p, enr_dps_error e, const char *message, const char *registration_id,
                   const char *route, enr_provision_done_fn done, void *ctx)
{
    char tracking[ENR_DPS_TRACKING_ID_SIZE] = "";
    enr_error err;
    (void)enr_dps_tracking_id_new(tracking, &err);
    char *body = NULL;
    if (enr_dps_write_error(e, message, tracking, time(NULL), &body, &err) != ENR_OK)
        body = NULL;
    enr_provision_outcome o = {
        .status = enr_dps_error_http_status(e), .error = e, .error_code = enr_dps_error_code(e),
        .body = body ? body : "{\"errorCode\":500001,\"message\":\"internal error\"}", .route = route,
        .registration_id = registration_id ? registration_id : "", .message = message};
    enr_audit_event audit = {0};
    snprintf(audit.kind, sizeof audit.kind, "register");
    snprintf(audit.registration_id, sizeof audit.registration_id, "%s", o.registration_id);
    snprintf(audit.outcome, sizeof audit.outcome, "%s", o.status >= 500 ? "error" : "rejected");
    audit.reason_code = o.error_code;
    snprintf(audit.detail, sizeof audit.detail, "%s", message);
    refusal_audited(p, &audit);
    deliver(p, done, ctx, &o, true);
    free(body);
}

void enr_provision_refuse(enr_provision *p, enr_dps_error e, const char *message, const char *registration_id,
                          const char *route, enr_provision_done_fn done, void *ctx)
{
    refuse(p, e, message, registration_id, route, done, ctx);
}

/* ---- the operations table (shared by every loop) ----------------------- */

static void ops_add(enr_provision_shared *s, const char *operation_id, const char *registration_id)
{
    operation_entry *e = calloc(1, sizeof *e);
    if (e == NULL)
        return; /* the poll reads "unknown" until the store has it; the device registers again */
    snprintf(e->operation_id, sizeof e->operation_id, "%s", operation_id);
    snprintf(e->registration_id, sizeof e->registration_id, "%s", registration_id);
    pthread_mutex_lock(&s->ops_lock);
    e->next = s->ops;
    s->ops = e;
    pthread_mutex_unlock(&s->ops_lock);
}

/* The commit is over: a committed operation (failure ENR_DPS_OK) is the
 * store's to answer; a failed one reads "failed" with its errorCode for a
 * while, so a polling device learns why and starts over. */
static void ops_done(enr_provision_shared *s, const char *operation_id, enr_dps_error failure)
{
    pthread_mutex_lock(&s->ops_lock);
    for (operation_entry **at = &s->ops; *at != NULL; at = &(*at)->next)
        if (strcmp((*at)->operation_id, operation_id) == 0) {
            operation_entry *e = *at;
            if (failure == ENR_DPS_OK) {
                *at = e->next;
                free(e);
            } else {
                e->failed_until = time(NULL) + FAILED_OPERATION_SECONDS;
                e->failure = failure;
            }
            break;
        }
    pthread_mutex_unlock(&s->ops_lock);
}

typedef enum op_state { OP_UNKNOWN, OP_ASSIGNING, OP_FAILED } op_state;

static op_state ops_find(enr_provision_shared *s, const char *operation_id, const char *registration_id,
                         enr_dps_error *why)
{
    op_state state = OP_UNKNOWN;
    time_t now = time(NULL);
    pthread_mutex_lock(&s->ops_lock);
    for (operation_entry **at = &s->ops; *at != NULL;) {
        operation_entry *e = *at;
        if (e->failed_until != 0 && e->failed_until < now) { /* said long enough */
            *at = e->next;
            free(e);
            continue;
        }
        if (state == OP_UNKNOWN && strcmp(e->operation_id, operation_id) == 0 &&
            strcasecmp(e->registration_id, registration_id) == 0) {
            state = e->failed_until != 0 ? OP_FAILED : OP_ASSIGNING;
            *why = e->failure;
        }
        at = &e->next;
    }
    pthread_mutex_unlock(&s->ops_lock);
    return state;
}

/* ---- issuing ----------------------------------------------------------- */

/* The job the group committer commits in one transaction: registration,
 * certificate (cert NULL: a classic registration), operation and audit
 * event, with the answer written now (it is also the operation's stored
 * result). Nothing reaches the device before the commit. */
static enr_code make_job(const commit_facts *f, const enr_provision_policy *policy, const enr_issuing_ca *issuer,
                         X509 *cert, registration_job **out, enr_error *err)
{
    *out = NULL;
    time_t now = time(NULL);
    enr_dps_der chain[1 + ENR_ISSUERS_MAX];
    size_t chain_len = 0;
    enr_code rc = ENR_OK;
    enr_certificate rec = {0};
    if (cert != NULL && (rc = enr_certificate_from_x509(cert, &rec, err)) == ENR_OK) {
        /* The store's copy of the leaf is the chain's first element: one
         * encoding (i2d_X509's, in enr_certificate_from_x509). */
        chain[chain_len++] = (enr_dps_der){rec.der.data, rec.der.len, .encoded = true};
        for (size_t i = 0; i < issuer->issuer_count; i++)
            chain[chain_len++] = issuer->issuers[i];
    }
    const char *window = cert != NULL && policy->renewal_window[0] ? policy->renewal_window : NULL;
    time_t renew_after = 0;
    enr_duration d;
    if (window != NULL && enr_duration_parse(window, &d, err) == ENR_OK) {
        time_t not_after = enr_asn1_time_to_time_t(X509_get0_notAfter(cert));
        if (not_after > 0)
            renew_after = enr_duration_apply(not_after, &d, -1);
    }
    char etag[ENR_STORE_ETAG_MAX + 1] = "";
    (void)enr_store_make_etag(etag, err);
    const char *hub = f->assigned_hub[0] ? f->assigned_hub : NULL;
    /* No payload: in DPS registrationState.payload is what a custom
     * allocation policy returns, never the device's own payload echoed (that
     * would also store it in every operation). */
    enr_dps_assignment a = {
        .operation_id = f->operation_id, .registration_id = f->registration_id, .created_at = f->created_at,
        .updated_at = now, .assigned_hub = hub, .device_id = hub ? f->registration_id : NULL,
        .substatus = ENR_DPS_SUBSTATUS_INITIAL_ASSIGNMENT, .etag = etag,
        .chain = chain_len ? chain : NULL, .chain_len = chain_len,
        .renewal_window = renew_after != 0 ? window : NULL, .renew_after = renew_after,
    };
    registration_job *job = rc == ENR_OK ? calloc(1, sizeof *job) : NULL;
    if (rc == ENR_OK && job == NULL)
        rc = enr_error_set(err, ENR_E_NOMEM, "out of memory");
    if (rc == ENR_OK)
        rc = enr_dps_write_assigned(&a, &job->answer, err);
    if (rc == ENR_OK && cert != NULL) {
        /* The operation keeps the answer without the certificates (three
         * quarters of its bytes): they are in the certificate record and
         * its CA, and a poll joins them back (operation_answer). */
        a.certificate_apart = true;
        rc = enr_dps_write_assigned(&a, &job->kept_answer, err);
    }
    if (rc != ENR_OK) {
        enr_certificate_free(&rec);
        registration_job_free(job);
        return rc;
    }
    enr_registration *reg = &job->registration;
    snprintf(reg->registration_id, sizeof reg->registration_id, "%s", f->registration_id);
    reg->enrollment_kind = f->enrollment_kind;
    snprintf(reg->enrollment_id, sizeof reg->enrollment_id, "%s", f->enrollment_id);
    snprintf(reg->status, sizeof reg->status, "assigned");
    snprintf(reg->substatus, sizeof reg->substatus, "initialAssignment");
    snprintf(reg->device_id, sizeof reg->device_id, "%s", f->registration_id);
    snprintf(reg->assigned_hub, sizeof reg->assigned_hub, "%s", f->assigned_hub);
    snprintf(reg->etag, sizeof reg->etag, "%s", etag);
    if (cert != NULL) {
        snprintf(rec.registration_id, sizeof rec.registration_id, "%s", f->registration_id);
        snprintf(rec.policy, sizeof rec.policy, "%s", policy->name);
    }
    job->certificate = rec; /* takes the DER */
    snprintf(job->operation.operation_id, sizeof job->operation.operation_id, "%s", f->operation_id);
    snprintf(job->operation.status, sizeof job->operation.status, "assigned");
    job->operation.result_json = cert != NULL ? job->kept_answer : job->answer;
    if (cert != NULL) {
        snprintf(job->operation.certificate_issuer, sizeof job->operation.certificate_issuer, "%s", rec.issuer);
        snprintf(job->operation.certificate_serial, sizeof job->operation.certificate_serial, "%s", rec.serial);
    }
    snprintf(job->audit.kind, sizeof job->audit.kind, "register");
    snprintf(job->audit.registration_id, sizeof job->audit.registration_id, "%s", f->registration_id);
    snprintf(job->audit.outcome, sizeof job->audit.outcome, "ok");
    snprintf(job->audit.detail, sizeof job->audit.detail, "%s",
             cert ? "certificate issued" : "assigned without a certificate");
    job->issued = cert != NULL;
    snprintf(job->registration_id, sizeof job->registration_id, "%s", f->registration_id);
    snprintf(job->credential_issuer, sizeof job->credential_issuer, "%s", f->credential_issuer);
    snprintf(job->credential_serial, sizeof job->credential_serial, "%s", f->credential_serial);
    snprintf(job->enrollment_etag, sizeof job->enrollment_etag, "%s", f->enrollment_etag);
    job->item = (enr_registration_commit){
        .registration = &job->registration, .certificate = cert ? &job->certificate : NULL,
        .operation = &job->operation, .audit = &job->audit,
        .credential_issuer = job->credential_serial[0] ? job->credential_issuer : NULL,
        .credential_serial = job->credential_serial[0] ? job->credential_serial : NULL,
        .require_enrollment_enabled = true,
        .enrollment_etag = job->enrollment_etag[0] ? job->enrollment_etag : NULL, .result = ENR_E_INTERNAL};
    *out = job;
    return ENR_OK;
}

static void drop_issuers(enr_provision_call *call)
{
    for (size_t i = 0; i < call->issuer_count; i++)
        free((void *)call->issuers[i].der);
    call->issuer_count = 0;
}

static enr_code keep_issuers(enr_provision_call *call, const enr_issuing_ca *issuer)
{
    drop_issuers(call);
    for (size_t i = 0; i < issuer->issuer_count; i++) {
        unsigned char *copy = malloc(issuer->issuers[i].len);
        if (copy == NULL)
            return ENR_E_NOMEM;
        memcpy(copy, issuer->issuers[i].der, issuer->issuers[i].len);
        call->issuers[call->issuer_count++] = (enr_dps_der){copy, issuer->issuers[i].len, issuer->issuers[i].encoded};
    }
    return ENR_OK;
}

/* Signs the call's CSR (none: a classic registration) and makes its job.
 * Refusals come back typed: *e says which DPS error. */
static enr_code sign_and_pack(enr_provision *p, enr_provision_call *call, enr_dps_error *e, enr_error *err)
{
    const enr_issuing_ca *issuer = NULL;
    X509 *cert = NULL;
    if (call->csr != NULL) {
        if ((issuer = enr_ca_cache_get(p->cas, call->policy.ca_name, err)) == NULL) {
            fprintf(stderr, "{\"event\":\"policy_error\",\"policy\":\"%s\",\"message\":\"%s\"}\n",
                    call->policy.name, err->message);
            *e = ENR_DPS_INTERNAL;
            return enr_error_set(err, ENR_E_INTERNAL, "the credential policy of this enrollment cannot be used");
        }
        if (call->enroll && keep_issuers(call, issuer) != ENR_OK) {
            *e = ENR_DPS_INTERNAL;
            return enr_error_set(err, ENR_E_NOMEM, "out of memory");
        }
        enr_code rc = enr_ca_sign(issuer->ca, call->csr, call->policy.profile, 0, &cert, err);
        if (rc != ENR_OK) {
            *e = rc == ENR_E_POLICY   ? enr_provision_error_of_refusal(err)
                 : rc == ENR_E_VERIFY ? ENR_DPS_CSR_SIGNATURE_INVALID
                                      : ENR_DPS_INTERNAL;
            return rc;
        }
    }
    enr_code rc = make_job(&call->facts, &call->policy, issuer, cert, &call->job, err);
    X509_free(cert);
    if (rc != ENR_OK)
        *e = ENR_DPS_INTERNAL;
    return rc;
}

/* ---- completion -------------------------------------------------------- */

static void call_unlink(enr_provision_call *call)
{
    enr_provision *p = call->p;
    if (call->prev != NULL)
        call->prev->next = call->next;
    else if (p->calls == call)
        p->calls = call->next;
    if (call->next != NULL)
        call->next->prev = call->prev;
    call->prev = call->next = NULL;
}

static void call_free(enr_provision_call *call)
{
    if (call == NULL)
        return;
    if (call->timer != NULL)
        event_free(call->timer);
    registration_job_free(call->job);
    enr_csr_free(call->csr);
    enr_provision_policy_free(&call->policy);
    drop_issuers(call);
    OPENSSL_clear_free(call->private_key, call->private_key_len);
    free(call);
}

/* On the committer's thread: hand the job back to its loop. */
static void job_committed(registration_job *job, void *arg)
{
    enr_provision *p = arg;
    pthread_mutex_lock(&p->committed_lock);
    /* Only the job that finds the list empty wakes the loop: the others
     * ride along, as committed_ready takes the whole list at once. Each
     * wake-up from this thread is a write(2) to the loop's notify pipe. */
    bool wake = p->committed == NULL;
    job->next = p->committed;
    p->committed = job;
    pthread_mutex_unlock(&p->committed_lock);
    if (wake)
        event_active(p->committed_event, EV_READ, 0);
}

static void submit_job(enr_provision *p, enr_provision_call *call)
{
    call->job->context = call;
    call->job->done = job_committed;
    call->job->done_arg = p;
    committer_submit(p->s->committer, call->job);
}

/* DPS's asynchronous answer: 202, the operation id, when to poll. The
 * request is over; the commit goes on, and the operation reads
 * "assigning" until the store has it. */
static void answer_assigning(enr_provision_call *call)
{
    enr_provision *p = call->p;
    char *body = NULL;
    enr_error err;
    if (call->enroll && call->done != NULL) {
        /* Nothing to poll: the device sends its request again (RFC 7030
         * §4.2.3) and gets what this commit stored (do_enroll). */
        enr_provision_done_fn done = call->done;
        call->done = NULL;
        enr_provision_outcome o = {.status = 202, .body = "", .retry_after = ENROLL_RETRY_AFTER, .route = call->route,
                                   .registration_id = call->facts.registration_id,
                                   .message = "the certificate is being recorded: send the same request again"};
        deliver(p, done, call->ctx, &o, false);
        return;
    }
    if (call->done == NULL ||
        enr_dps_write_assigning(call->facts.operation_id, &body, &err) != ENR_OK)
        return; /* cancelled; or the device gets its answer when the commit is over */
    ops_add(p->s, call->facts.operation_id, call->facts.registration_id);
    call->answered = true;
    enr_provision_done_fn done = call->done;
    call->done = NULL;
    enr_provision_outcome o = {.status = 202, .body = body, .retry_after = 1, .route = "register",
                               .registration_id = call->facts.registration_id};
    deliver(p, done, call->ctx, &o, false);
    free(body);
}

static void assigning_timeout(evutil_socket_t fd, short what, void *arg)
{
    (void)fd, (void)what;
    answer_assigning(arg);
}

static void finish(enr_provision *p, enr_provision_call *call)
{
    registration_job *job = call->job;
    enr_provision_outcome o = {.route = "register", .registration_id = call->facts.registration_id,
                               .commit_ms = job->commit_ms};
    enr_dps_error failure = ENR_DPS_OK;
    enr_dps_der chain[1 + ENR_ISSUERS_MAX];
    if (call->enroll)
        o.route = call->route;
    if (job->item.result == ENR_OK) {
        o.status = 200;
        o.issued = job->issued;
        o.body = job->answer;
        if (call->enroll) {
            chain[0] = (enr_dps_der){job->certificate.der.data, job->certificate.der.len, .encoded = true};
            memcpy(chain + 1, call->issuers, call->issuer_count * sizeof chain[0]);
            o.chain = chain;
            o.chain_len = 1 + call->issuer_count;
            o.private_key = call->private_key;
            o.private_key_len = call->private_key_len;
            o.body = "";
        }
        if (call->answered)
            ops_done(p->s, call->facts.operation_id, ENR_DPS_OK);
        deliver(p, call->done, call->ctx, &o, true);
        return;
    }
    if (job->item.result == ENR_E_POLICY) { /* refused meanwhile: the store's re-check says why */
        failure = enr_provision_error_of_refusal(&job->item.error);
        if (call->answered)
            ops_done(p->s, call->facts.operation_id, failure);
        refuse(p, failure, job->item.error.message, call->facts.registration_id, o.route, call->done, call->ctx);
        return;
    }
    /* Nothing was stored, so nothing is sent: the device tries again. */
    fprintf(stderr, "{\"event\":\"commit_failed\",\"registration_id\":\"%s\",\"message\":\"%s\"}\n",
            call->facts.registration_id, enr_code_name(job->item.result));
    if (call->answered)
        ops_done(p->s, call->facts.operation_id, ENR_DPS_STORE_UNAVAILABLE);
    refuse(p, ENR_DPS_STORE_UNAVAILABLE, "the registration could not be recorded; try again",
           call->facts.registration_id, o.route, call->done, call->ctx);
}

static void committed_ready(evutil_socket_t fd, short what, void *arg)
{
    (void)fd, (void)what;
    enr_provision *p = arg;
    pthread_mutex_lock(&p->committed_lock);
    registration_job *job = p->committed;
    p->committed = NULL;
    pthread_mutex_unlock(&p->committed_lock);
    while (job != NULL) {
        registration_job *next = job->next;
        enr_provision_call *call = job->context;
        job->next = NULL;
        if (job->item.result == ENR_E_EXISTS && call->csr != NULL && call->resigns < RESIGN_MAX) {
            /* The serial was taken (another node drew it): sign again. */
            call->resigns++;
            registration_job_free(call->job);
            call->job = NULL;
            enr_dps_error e;
            enr_error err;
            if (sign_and_pack(p, call, &e, &err) == ENR_OK) {
                submit_job(p, call);
                job = next;
                continue;
            }
            if (call->answered)
                ops_done(p->s, call->facts.operation_id, e);
            refuse(p, e, err.message, call->facts.registration_id, call->enroll ? call->route : "register", call->done,
                   call->ctx);
        } else {
            finish(p, call);
        }
        call_unlink(call);
        call_free(call);
        job = next;
    }
}

/* ---- requests ---------------------------------------------------------- */

/* A new call for `rid` as `who` attested it: what its commit will need. */
static enr_provision_call *call_new(enr_provision *p, const char *rid, const enr_attested *who, bool granted,
                                    enr_dps_error *e, char *message, size_t cap)
{
    enr_error err;
    enr_provision_call *call = calloc(1, sizeof *call);
    if (call == NULL) {
        *e = ENR_DPS_INTERNAL;
        snprintf(message, cap, "out of memory");
        return NULL;
    }
    call->p = p;
    commit_facts *f = &call->facts;
    snprintf(f->registration_id, sizeof f->registration_id, "%s", rid);
    f->enrollment_kind = who->enrollment.kind;
    snprintf(f->enrollment_id, sizeof f->enrollment_id, "%s", who->enrollment.id);
    snprintf(f->assigned_hub, sizeof f->assigned_hub, "%s", who->enrollment.assigned_hub);
    snprintf(f->credential_issuer, sizeof f->credential_issuer, "%s", who->credential_issuer);
    snprintf(f->credential_serial, sizeof f->credential_serial, "%s", who->credential_serial);
    if (granted)
        snprintf(f->enrollment_etag, sizeof f->enrollment_etag, "%s", who->enrollment.etag);
    /* createdDateTimeUtc is when the registration first came, as in DPS. */
    f->created_at = who->registered && who->registration.created_at > 0 ? who->registration.created_at : time(NULL);
    if (enr_dps_operation_id_new(time(NULL), f->operation_id, &err) != ENR_OK) {
        *e = ENR_DPS_INTERNAL;
        snprintf(message, cap, "no randomness for an operation id");
        free(call);
        return NULL;
    }
    return call;
}

/* The policy named by the attested enrollment, for `rid`. */
static enr_dps_error load_policy(enr_provision *p, const char *policy, const char *rid, enr_provision_call *call,
                                 char *message, size_t cap)
{
    enr_error err;
    enr_code rc = enr_provision_policy_load(p->store, policy, rid, &call->policy, &err);
    if (rc == ENR_OK)
        return ENR_DPS_OK;
    fprintf(stderr, "{\"event\":\"policy_error\",\"policy\":\"%s\",\"message\":\"%s\"}\n", policy, err.message);
    snprintf(message, cap, "the credential policy of this enrollment cannot be used");
    return rc == ENR_E_IO ? ENR_DPS_STORE_UNAVAILABLE : ENR_DPS_INTERNAL;
}

/* Signs, hands the call to the committer and waits: answered once the
 * store has it, or 202 first if that takes longer than
 * assigning_after_ms. On a refusal the call is freed and refused. */
static void call_start(enr_provision *p, enr_provision_call *call, enr_provision_done_fn done, void *ctx,
                       enr_provision_call **out)
{
    enr_error err;
    enr_dps_error e;
    if (sign_and_pack(p, call, &e, &err) != ENR_OK) {
        char rid[ENR_STORE_ID_MAX + 1];
        snprintf(rid, sizeof rid, "%s", call->facts.registration_id);
        const char *route = call->enroll ? call->route : "register";
        call_free(call);
        refuse(p, e, err.message, rid, route, done, ctx);
        return;
    }
    call->done = done;
    call->ctx = ctx;
    call->next = p->calls;
    if (p->calls != NULL)
        p->calls->prev = call;
    p->calls = call;
    submit_job(p, call);
    /* A key made here exists only in this call: the device gets it with
     * its certificate or not at all, never a 202 that would lose it. */
    if (call->private_key != NULL) {
        *out = call;
        return;
    }
    if (p->s->opts.assigning_after_ms <= 0) {
        answer_assigning(call);
        return; /* done was called: the front end holds no handle */
    }
    if ((call->timer = evtimer_new(p->base, assigning_timeout, call)) != NULL)
        evtimer_add(call->timer, p->assigning_after);
    *out = call;
}

/* `granted`: `who` is a grant's, attested at the connection's start. */
static void do_register(enr_provision *p, const enr_provision_request *req, const enr_attested *who, bool granted,
                        enr_provision_done_fn done, void *ctx, enr_provision_call **out)
{
    char message[600];
    enr_error err;
    const char *rid = req->registration_id;
    enr_dps_register_request *body = NULL;
    enr_dps_error e = enr_attested_allows(who, rid, message, sizeof message);
    enr_provision_call *call = NULL;
    if (e != ENR_DPS_OK)
        goto refused;
    if (enr_dps_register_request_parse(req->body ? req->body : "", req->body_len, rid, &body, &e, &err) != ENR_OK) {
        snprintf(message, sizeof message, "%s", err.message);
        goto refused;
    }
    if ((call = call_new(p, rid, who, granted, &e, message, sizeof message)) == NULL)
        goto refused;
    const char *policy = who->enrollment.policy[0] ? who->enrollment.policy : NULL;
    if (enr_dps_register_request_csr(body) != NULL && policy != NULL) {
        if (enr_dps_register_request_decode_csr(body, &call->csr, &e, &err) != ENR_OK) {
            snprintf(message, sizeof message, "%s", err.message);
            goto refused;
        }
        if ((e = enr_provision_check_csr(p->store, call->csr, rid, message, sizeof message)) != ENR_DPS_OK ||
            (e = load_policy(p, policy, rid, call, message, sizeof message)) != ENR_DPS_OK)
            goto refused;
    } /* else a classic DPS registration: assign, issue nothing */
    enr_dps_register_request_free(body);
    call_start(p, call, done, ctx, out);
    return;
refused:
    enr_dps_register_request_free(body);
    call_free(call);
    refuse(p, e, message, rid, "register", done, ctx);
}

/* ---- enrollment from a DER CSR (EST) ----------------------------------- */

/* The CSR's one subject CN as text: the registration id. */
static bool csr_common_name(const enr_csr *csr, char *out, size_t cap)
{
    X509_NAME *subject = X509_REQ_get_subject_name(enr_csr_x509_req(csr));
    int at = X509_NAME_get_index_by_NID(subject, NID_commonName, -1);
    if (at < 0 || X509_NAME_get_index_by_NID(subject, NID_commonName, at) >= 0)
        return false;
    unsigned char *utf8 = NULL;
    int n = ASN1_STRING_to_UTF8(&utf8, X509_NAME_ENTRY_get_data(X509_NAME_get_entry(subject, at)));
    bool ok = n > 0 && (size_t)n < cap && memchr(utf8, '\0', (size_t)n) == NULL;
    if (ok) {
        memcpy(out, utf8, (size_t)n);
        out[n] = '\0';
    }
    OPENSSL_free(utf8);
    return ok;
}

/* RFC 7030 §4.2.2: a renewal asks for the subject and subjectAltName of
 * the certificate it renews. */
static bool same_names(const enr_csr *csr, X509 *cert)
{
    X509_REQ *req = enr_csr_x509_req(csr);
    if (X509_NAME_cmp(X509_REQ_get_subject_name(req), X509_get_subject_name(cert)) != 0)
        return false;
    STACK_OF(X509_EXTENSION) *exts = X509_REQ_get_extensions(req);
    int at = X509v3_get_ext_by_NID(exts, NID_subject_alt_name, -1);
    const ASN1_OCTET_STRING *want = at >= 0 ? X509_EXTENSION_get_data(X509v3_get_ext(exts, at)) : NULL;
    int cert_at = X509_get_ext_by_NID(cert, NID_subject_alt_name, -1);
    const ASN1_OCTET_STRING *have = cert_at >= 0 ? X509_EXTENSION_get_data(X509_get_ext(cert, cert_at)) : NULL;
    bool same = (want == NULL) == (have == NULL) && (want == NULL || ASN1_OCTET_STRING_cmp(want, have) == 0);
    sk_X509_EXTENSION_pop_free(exts, X509_EXTENSION_free);
    return same;
}

/* A device answered 202 sends the same request again (RFC 7030 §4.2.3):
 * its answer is the certificate the first one made, once the store has
 * it, not a second certificate. That is the registration's newest
 * certificate when it is for the same key, unrevoked, and recent. */
static bool answer_again(enr_provision *p, const enr_attested *who, const enr_csr *csr, const char *rid,
                         const char *route, enr_provision_done_fn done, void *ctx)
{
    enr_error err;
    const enr_registration *reg = &who->registration;
    if (!who->registered || reg->last_certificate_serial[0] == '\0' || !who->enrollment.policy[0])
        return false;
    /* A renewal presenting the newest certificate asks for a new one. */
    if (who->credential_serial[0] != '\0' && strcmp(who->credential_serial, reg->last_certificate_serial) == 0 &&
        strcmp(who->credential_issuer, reg->last_certificate_issuer) == 0)
        return false;
    enr_certificate c = {0};
    if (enr_store_get_certificate(p->store, reg->last_certificate_issuer, reg->last_certificate_serial, &c, &err) !=
        ENR_OK)
        return false;
    char spki[ENR_STORE_SPKI_HEX + 1];
    bool same = !c.revoked && c.issued_at >= time(NULL) - ENROLL_AGAIN_SECONDS &&
                enr_spki_sha256_hex(X509_REQ_get_X509_PUBKEY(enr_csr_x509_req(csr)), spki, &err) == ENR_OK &&
                strcmp(spki, c.spki_sha256) == 0;
    enr_credential_policy policy = {0}; /* for its CA's name only */
    const enr_issuing_ca *issuer = NULL;
    if (same && enr_store_get_policy(p->store, who->enrollment.policy, &policy, &err) == ENR_OK)
        issuer = enr_ca_cache_get(p->cas, policy.ca_name, &err);
    if (issuer != NULL) {
        enr_dps_der chain[1 + ENR_ISSUERS_MAX];
        chain[0] = (enr_dps_der){c.der.data, c.der.len, .encoded = false}; /* from the store */
        memcpy(chain + 1, issuer->issuers, issuer->issuer_count * sizeof chain[0]);
        enr_provision_outcome o = {.status = 200, .body = "", .route = route, .registration_id = rid,
                                   .chain = chain, .chain_len = 1 + issuer->issuer_count};
        deliver(p, done, ctx, &o, false);
    }
    enr_certificate_free(&c);
    return issuer != NULL;
}

/* An operation's answer kept without its certificate (make_job), with the
 * certificate record it names and that record's CA chain joined back in.
 * Fails when the record's policy now names a CA that did not issue it (a
 * re-key since): the device registers again rather than get a chain its
 * certificate does not verify against. */
static enr_code operation_answer(enr_provision *p, const enr_operation *op, char **out, enr_error *err)
{
    *out = NULL;
    enr_certificate c = {0};
    enr_credential_policy policy = {0};
    const enr_issuing_ca *issuer = NULL;
    enr_code rc = op->result_json != NULL
                      ? enr_store_get_certificate(p->store, op->certificate_issuer, op->certificate_serial, &c, err)
                      : enr_error_set(err, ENR_E_NOTFOUND, "the operation kept no answer");
    if (rc == ENR_OK && (rc = enr_store_get_policy(p->store, c.policy, &policy, err)) == ENR_OK &&
        (issuer = enr_ca_cache_get(p->cas, policy.ca_name, err)) == NULL)
        rc = err->code;
    if (rc == ENR_OK) {
        const unsigned char *der = c.der.data;
        X509 *leaf = d2i_X509(NULL, &der, (long)c.der.len);
        if (leaf == NULL || X509_check_issued(enr_ca_cert(issuer->ca), leaf) != X509_V_OK)
            rc = enr_error_set(err, ENR_E_POLICY, "CA '%s' no longer is the issuer of certificate %s",
                               policy.ca_name, c.serial);
        X509_free(leaf);
        ERR_clear_error();
    }
    if (rc == ENR_OK) {
        enr_dps_der chain[1 + ENR_ISSUERS_MAX];
        chain[0] = (enr_dps_der){c.der.data, c.der.len, .encoded = false}; /* from the store */
        memcpy(chain + 1, issuer->issuers, issuer->issuer_count * sizeof chain[0]);
        rc = enr_dps_complete_assigned(op->result_json, strlen(op->result_json), chain, 1 + issuer->issuer_count,
                                       out, err);
    }
    enr_certificate_free(&c);
    return rc;
}

/* The new key as PKCS#8 DER (RFC 7030 §4.4.2; i2d_PrivateKey would write
 * SEC1 or PKCS#1), for the one answer that carries it. */
static enr_code private_key_der(EVP_PKEY *key, unsigned char **out, size_t *len)
{
    PKCS8_PRIV_KEY_INFO *p8 = EVP_PKEY2PKCS8(key);
    unsigned char *der = NULL;
    int n = p8 != NULL ? i2d_PKCS8_PRIV_KEY_INFO(p8, &der) : -1;
    PKCS8_PRIV_KEY_INFO_free(p8);
    if (n <= 0)
        return ENR_E_CRYPTO;
    *out = der;
    *len = (size_t)n;
    return ENR_OK;
}

/* The key type serverkeygen makes: the policy's first EC or Ed25519 type.
 * RSA is never made here: an RSA-4096 generation would stall the loop's
 * other devices for seconds. */
static bool server_key_type(const char *key_types, enr_key_type *out)
{
    char list[ENR_STORE_KEY_TYPES_MAX + 1], *save = NULL;
    snprintf(list, sizeof list, "%s", key_types[0] ? key_types : "ec-p256");
    for (char *t = strtok_r(list, ",", &save); t != NULL; t = strtok_r(NULL, ",", &save)) {
        enr_error err;
        enr_key_type kt;
        if (enr_key_type_parse(t, &kt, &err) == ENR_OK &&
            (kt == ENR_KEY_EC_P256 || kt == ENR_KEY_EC_P384 || kt == ENR_KEY_ED25519)) {
            *out = kt;
            return true;
        }
    }
    return false;
}

static void do_enroll(enr_provision *p, const enr_provision_request *req, enr_provision_done_fn done, void *ctx,
                      enr_provision_call **out)
{
    const char *route = req->server_keygen ? "serverkeygen" : req->renewal ? "simplereenroll" : "simpleenroll";
    char message[600], rid[ENR_DPS_REGISTRATION_ID_MAX + 1] = "";
    enr_error err;
    enr_dps_error e = ENR_DPS_OK;
    enr_csr *csr = NULL;
    enr_attested who = {0};
    enr_provision_call *call = NULL;
    EVP_PKEY *server_key = NULL;
    enr_peer_credential peer = req->peer;
    if (req->renewal) /* only the certificate being renewed speaks for it */
        peer.sas_token = peer.basic_password = NULL;
    if (enr_csr_parse((const unsigned char *)req->body, req->body_len, &csr, &err) != ENR_OK) {
        e = ENR_DPS_CSR_NOT_DECODABLE;
        snprintf(message, sizeof message, "the body is not a PKCS#10 CSR: %s", err.message);
    } else if (!csr_common_name(csr, rid, sizeof rid) || enr_dps_registration_id_check(rid, strlen(rid), &err) != ENR_OK) {
        e = ENR_DPS_REGISTRATION_ID_INVALID;
        snprintf(message, sizeof message, "the CSR's subject must have one CN, the registration id: 1-128 characters "
                                          "of [A-Za-z0-9._:-]");
        rid[0] = '\0';
    } else if (!req->renewal && req->basic_user != NULL && !enr_dps_registration_id_equal(req->basic_user, rid)) {
        e = ENR_DPS_AUTH_FAILED;
        snprintf(message, sizeof message, "the Basic user must be the registration id, the CSR's CN (%s)", rid);
    } else if (req->renewal && peer.certificate == NULL) {
        e = ENR_DPS_CERT_AUTH_FAILED;
        snprintf(message, sizeof message, "a renewal is authenticated by the certificate it renews: present it as the "
                                          "TLS client certificate");
    } else if ((e = enr_attest(p->store, &p->attest, &peer, rid, &who, message, sizeof message)) != ENR_DPS_OK ||
               (e = enr_attested_allows(&who, rid, message, sizeof message)) != ENR_DPS_OK) {
        /* refused as attestation says */
    } else if (req->enrollment_group != NULL && (who.enrollment.kind != ENR_ENROLLMENT_GROUP ||
                                                  strcasecmp(who.enrollment.id, req->enrollment_group) != 0)) {
        e = ENR_DPS_ENROLLMENT_MISMATCH;
        snprintf(message, sizeof message, "registration %s is not under enrollment group %s", rid, req->enrollment_group);
    } else if (req->renewal && who.credential_serial[0] == '\0') {
        e = ENR_DPS_CERT_AUTH_FAILED;
        snprintf(message, sizeof message, "a renewal needs the registration's current certificate as the TLS client "
                                          "certificate (a bootstrap certificate enrolls, it does not renew)");
    } else if (req->renewal && !same_names(csr, peer.certificate)) {
        e = ENR_DPS_RENEWAL_SUBJECT_DIFFERS;
        snprintf(message, sizeof message, "a renewal's CSR must ask for the subject and subjectAltName of the "
                                          "certificate it renews");
    } else if (!who.enrollment.policy[0]) {
        e = ENR_DPS_NO_CREDENTIAL_POLICY;
        snprintf(message, sizeof message, "enrollment %s has no credential policy: it issues no certificates",
                 who.enrollment.id);
    } else if (!req->server_keygen &&
               (e = enr_provision_check_csr(p->store, csr, rid, message, sizeof message)) != ENR_DPS_OK) {
        /* proof of possession and the key gate, before anything is answered */
    } else if (!req->server_keygen && answer_again(p, &who, csr, rid, route, done, ctx)) {
        goto out;
    } else if (who.repeat_only) {
        e = ENR_DPS_AUTH_FAILED;
        snprintf(message, sizeof message, "registration %s exists: the group's EST secret registers new devices only; "
                                          "renew with simplereenroll and the current certificate", rid);
    } else if ((call = call_new(p, rid, &who, false, &e, message, sizeof message)) != NULL &&
               (e = load_policy(p, who.enrollment.policy, rid, call, message, sizeof message)) == ENR_DPS_OK) {
        call->enroll = true;
        call->route = route;
        enr_key_type type = ENR_KEY_EC_P256;
        if (req->server_keygen && !call->policy.allow_server_keygen) {
            e = ENR_DPS_SERVER_KEYGEN_NOT_ALLOWED;
            snprintf(message, sizeof message, "the credential policy %s does not let the service make keys: make one "
                                              "and use simpleenroll", call->policy.name);
        } else if (req->server_keygen && !server_key_type(call->policy.key_types, &type)) {
            e = ENR_DPS_SERVER_KEYGEN_NOT_ALLOWED;
            snprintf(message, sizeof message, "the credential policy %s allows only RSA keys, which the service does "
                                              "not make: make one and use simpleenroll", call->policy.name);
        } else if (req->server_keygen &&
                   (enr_provision_server_key(type, X509_REQ_get_subject_name(enr_csr_x509_req(csr)), &server_key,
                                             &call->csr, &err) != ENR_OK ||
                    private_key_der(server_key, &call->private_key, &call->private_key_len) != ENR_OK)) {
            e = ENR_DPS_INTERNAL;
            snprintf(message, sizeof message, "cannot make a key");
        } else if (req->server_keygen) {
            e = enr_provision_check_csr(p->store, call->csr, rid, message, sizeof message);
        } else {
            call->csr = csr;
            csr = NULL;
        }
        if (e == ENR_DPS_OK) {
            call_start(p, call, done, ctx, out);
            call = NULL;
            goto out;
        }
    }
    call_free(call);
    refuse(p, e, message, rid, route, done, ctx);
out:
    EVP_PKEY_free(server_key);
    enr_csr_free(csr);
    enr_attested_free(&who);
}

static void do_operation(enr_provision *p, const enr_provision_request *req, enr_provision_done_fn done, void *ctx)
{
    enr_error err;
    const char *rid = req->registration_id, *op_id = req->operation_id ? req->operation_id : "";
    enr_provision_outcome o = {.status = 200, .route = "operation", .registration_id = rid};
    char *body = NULL;
    /* The in-flight table first: an entry leaves it only after its COMMIT
     * returned, so when it is not there the store read below sees it. */
    enr_dps_error why = ENR_DPS_OK;
    op_state state = ops_find(p->s, op_id, rid, &why);
    if (state == OP_ASSIGNING && enr_dps_write_operation_status_assigning(op_id, rid, &body, &err) == ENR_OK) {
        o.status = 202; /* answered 202 and still being committed: poll again */
        o.retry_after = 1;
    } else if (state == OP_FAILED) {
        time_t now = time(NULL);
        bool store = why == ENR_DPS_STORE_UNAVAILABLE || why == ENR_DPS_OK;
        enr_dps_failure f = {.operation_id = op_id, .registration_id = rid, .created_at = now, .updated_at = now,
                             .error = store ? ENR_DPS_STORE_UNAVAILABLE : why,
                             .message = store ? "the registration could not be recorded; register again" : NULL};
        if (enr_dps_write_failed(&f, &body, &err) != ENR_OK)
            body = NULL;
    }
    if (body == NULL) {
        enr_operation op = {0};
        enr_code found = enr_store_get_operation(p->store, op_id, &op, &err);
        time_t started = 0, now = time(NULL);
        if (found == ENR_E_NOTFOUND && enr_dps_operation_id_started(op_id, &started) && started <= now + 5 &&
            now - started <= OPERATION_ELSEWHERE_SECONDS &&
            enr_dps_write_operation_status_assigning(op_id, rid, &body, &err) == ENR_OK) {
            /* Started on another node sharing the store, and not committed
             * yet: what that node would answer. */
            o.status = 202;
            o.retry_after = 1;
            o.body = body;
            deliver(p, done, ctx, &o, false);
            free(body);
            return;
        }
        if (found != ENR_OK || !enr_dps_registration_id_equal(op.registration_id, rid) || op.result_json == NULL) {
            enr_operation_free(&op);
            refuse(p, found == ENR_E_IO ? ENR_DPS_STORE_UNAVAILABLE : ENR_DPS_UNKNOWN_OPERATION,
                   found == ENR_E_IO ? "the store is unavailable" : "no such operation for this registration", rid,
                   "operation", done, ctx);
            return;
        }
        if (op.certificate_serial[0] == '\0') {
            body = op.result_json;
            op.result_json = NULL;
        } else if (operation_answer(p, &op, &body, &err) != ENR_OK) {
            enr_operation_free(&op);
            refuse(p, ENR_DPS_STORE_UNAVAILABLE, "the operation's certificate cannot be read; register again", rid,
                   "operation", done, ctx);
            return;
        }
        enr_operation_free(&op);
    }
    o.body = body;
    deliver(p, done, ctx, &o, false);
    free(body);
}

/* ---- grants: attested once per connection ------------------------------ */

struct enr_provision_grant {
    const enr_provision *p;       /* the loop whose core attested */
    char registration_id[ENR_DPS_REGISTRATION_ID_MAX + 1]; /* exactly as authenticated */
    char *sas_token;              /* the token that attested; cleansed when freed */
    size_t sas_token_len;
    time_t expires;               /* the token's se: never used at or after it */
    bool spent;
    enr_attested who;
};

void enr_provision_grant_free(enr_provision_grant *g)
{
    if (g == NULL)
        return;
    enr_attested_free(&g->who);
    OPENSSL_clear_free(g->sas_token, g->sas_token_len + 1);
    OPENSSL_cleanse(g, sizeof *g); /* the enrollment's keys were in who */
    free(g);
}

/* Takes the grant over `who` (a SAS attestation just made on `p`); NULL
 * when there is nothing to grant or no memory (the request is then
 * attested as any other). */
static enr_provision_grant *grant_new(const enr_provision *p, const char *registration_id,
                                      const enr_peer_credential *peer, enr_attested *who)
{
    if (peer->sas_token == NULL || who->token_expiry <= 0 || !who->found)
        return NULL;
    enr_provision_grant *g = calloc(1, sizeof *g);
    size_t len = strlen(peer->sas_token);
    if (g == NULL || (g->sas_token = OPENSSL_malloc(len + 1)) == NULL) {
        free(g);
        return NULL;
    }
    memcpy(g->sas_token, peer->sas_token, len + 1);
    g->sas_token_len = len;
    g->p = p;
    snprintf(g->registration_id, sizeof g->registration_id, "%s", registration_id);
    g->expires = who->token_expiry;
    g->who = *who;
    memset(who, 0, sizeof *who); /* moved into the grant */
    return g;
}

/* Whether `req` may stand on its grant instead of a new attestation:
 * a register, on the loop that attested, the same id (byte for byte) and
 * the same token, before the token's se, the first time. Any register
 * carrying a grant spends it, so it is worth at most one registration,
 * whose store snapshot (created, registered) is then at most one CONNECT
 * old. */
static const enr_attested *grant_take(const enr_provision *p, const enr_provision_request *req, time_t now)
{
    enr_provision_grant *g = req->grant;
    if (g == NULL || req->verb != ENR_PROVISION_REGISTER || g->spent)
        return NULL;
    g->spent = true;
    const char *token = req->peer.sas_token;
    if (g->p != p || token == NULL || strcmp(req->registration_id, g->registration_id) != 0 ||
        strlen(token) != g->sas_token_len || CRYPTO_memcmp(token, g->sas_token, g->sas_token_len) != 0 ||
        now >= g->expires)
        return NULL;
    return &g->who;
}

enr_provision_call *enr_provision_submit(enr_provision *p, const enr_provision_request *req,
                                         enr_provision_done_fn done, void *ctx)
{
    enr_provision_call *call = NULL;
    if (req->verb == ENR_PROVISION_ENROLL) {
        do_enroll(p, req, done, ctx, &call);
        return call;
    }
    const char *route = req->verb == ENR_PROVISION_REGISTER ? "register" : "operation";
    const char *rid = req->registration_id ? req->registration_id : "";
    enr_error err;
    enr_dps_api_generation gen;
    if (enr_dps_registration_id_check(rid, strlen(rid), &err) != ENR_OK) {
        refuse(p, ENR_DPS_REGISTRATION_ID_INVALID, err.message, NULL, route, done, ctx);
        return NULL;
    }
    if (enr_dps_api_version_check(req->api_version, &gen, &err) != ENR_OK) {
        refuse(p, ENR_DPS_API_VERSION_UNSUPPORTED, err.message, rid, route, done, ctx);
        return NULL;
    }
    if (req->id_scope == NULL || strcmp(req->id_scope, p->s->id_scope) != 0) {
        refuse(p, ENR_DPS_UNKNOWN_ID_SCOPE, "unknown idScope", rid, route, done, ctx);
        return NULL;
    }
    const enr_attested *granted = grant_take(p, req, time(NULL));
    if (granted != NULL) {
        do_register(p, req, granted, true, done, ctx, &call);
        return call;
    }
    char message[600];
    enr_attested who;
    enr_dps_error e = enr_attest(p->store, &p->attest, &req->peer, rid, &who, message, sizeof message);
    if (e != ENR_DPS_OK)
        refuse(p, e, message, rid, route, done, ctx);
    else if (req->verb == ENR_PROVISION_REGISTER)
        do_register(p, req, &who, false, done, ctx, &call);
    else
        do_operation(p, req, done, ctx);
    enr_attested_free(&who);
    return call;
}

enr_dps_error enr_provision_authenticate(enr_provision *p, const char *id_scope, const char *registration_id,
                                         const char *api_version, const enr_peer_credential *peer,
                                         enr_provision_grant **grant, char *message, size_t cap)
{
    if (grant != NULL)
        *grant = NULL;
    const char *rid = registration_id ? registration_id : "";
    enr_error err;
    enr_dps_api_generation gen;
    enr_dps_error e = ENR_DPS_OK;
    enr_attested who = {0};
    if (enr_dps_registration_id_check(rid, strlen(rid), &err) != ENR_OK) {
        e = ENR_DPS_REGISTRATION_ID_INVALID;
        snprintf(message, cap, "%s", err.message);
        rid = "";
    } else if (enr_dps_api_version_check(api_version, &gen, &err) != ENR_OK) {
        e = ENR_DPS_API_VERSION_UNSUPPORTED;
        snprintf(message, cap, "%s", err.message);
    } else if (id_scope == NULL || strcmp(id_scope, p->s->id_scope) != 0) {
        e = ENR_DPS_UNKNOWN_ID_SCOPE;
        snprintf(message, cap, "unknown idScope");
    } else if ((e = enr_attest(p->store, &p->attest, peer, rid, &who, message, cap)) == ENR_DPS_OK) {
        e = enr_attested_allows(&who, rid, message, cap);
    }
    if (e == ENR_DPS_OK && grant != NULL)
        *grant = grant_new(p, rid, peer, &who);
    enr_attested_free(&who);
    if (e != ENR_DPS_OK)
        refuse(p, e, message, rid, "connect", NULL, NULL);
    return e;
}

void enr_provision_cancel(enr_provision_call *call)
{
    if (call != NULL)
        call->done = NULL;
}

/* ---- lifecycle --------------------------------------------------------- */

static char *dup_or_null(const char *s)
{
    return s != NULL ? strdup(s) : NULL;
}

enr_code enr_provision_shared_new(const enr_provision_options *opts, enr_provision_shared **out, enr_error *err)
{
    *out = NULL;
    if (opts->id_scope == NULL || opts->id_scope[0] == '\0' || strlen(opts->id_scope) > ENR_DPS_ID_SCOPE_MAX)
        return enr_error_set(err, ENR_E_USAGE,
                             "config: \"id_scope\" (1-64 characters) is required for the registration API");
    enr_provision_shared *s = calloc(1, sizeof *s);
    if (s == NULL)
        return enr_error_set(err, ENR_E_NOMEM, "out of memory");
    s->opts = *opts;
    s->store_location = dup_or_null(opts->store_location);
    s->id_scope = dup_or_null(opts->id_scope);
    s->opts.store_location = s->store_location;
    s->opts.id_scope = s->id_scope;
    if (s->opts.sas_max_lifetime <= 0)
        s->opts.sas_max_lifetime = ENR_PROVISION_SAS_MAX_LIFETIME_DEFAULT;
    pthread_mutex_init(&s->ops_lock, NULL);
    committer_options copts = {.audit_max_age_days = opts->audit_max_age_days, .audit_max_rows = opts->audit_max_rows};
    enr_code rc = (s->store_location == NULL || s->id_scope == NULL)
                      ? enr_error_set(err, ENR_E_NOMEM, "out of memory")
                      : committer_new(s->store_location, &copts, &s->committer, err);
    if (rc != ENR_OK) {
        enr_provision_shared_free(s);
        return rc;
    }
    *out = s;
    return ENR_OK;
}

void enr_provision_shared_stop(enr_provision_shared *s)
{
    if (s == NULL)
        return;
    committer_free(s->committer);
    s->committer = NULL;
}

void enr_provision_shared_free(enr_provision_shared *s)
{
    if (s == NULL)
        return;
    enr_provision_shared_stop(s);
    for (operation_entry *e = s->ops, *next; e != NULL; e = next) {
        next = e->next;
        free(e);
    }
    pthread_mutex_destroy(&s->ops_lock);
    free(s->store_location);
    free(s->id_scope);
    free(s);
}

bool enr_provision_store_ok(enr_provision_shared *s)
{
    return s->committer == NULL || committer_store_ok(s->committer);
}

enr_code enr_provision_new(enr_provision_shared *s, struct event_base *base, enr_provision **out, enr_error *err)
{
    *out = NULL;
    enr_provision *p = calloc(1, sizeof *p);
    if (p == NULL)
        return enr_error_set(err, ENR_E_NOMEM, "out of memory");
    p->s = s;
    p->base = base;
    p->index = atomic_fetch_add(&s->next_loop, 1);
    p->attest = (enr_attest_options){.id_scope = s->id_scope, .sas_max_lifetime = s->opts.sas_max_lifetime};
    pthread_mutex_init(&p->committed_lock, NULL);
    /* This loop's own HMAC (enr_sas_mac is one per thread). */
    enr_code rc = enr_sas_mac_new(&p->attest.mac, err);
    if (rc == ENR_OK)
        rc = enr_store_open(s->store_location, &p->store, err);
    if (rc == ENR_OK)
        rc = enr_ca_cache_new(p->store, &p->cas, err);
    int samples = s->opts.audit_refusal_samples;
    if (rc == ENR_OK && samples > 0 &&
        (p->samples = calloc((size_t)samples * REFUSAL_KINDS, sizeof *p->samples)) == NULL)
        rc = enr_error_set(err, ENR_E_NOMEM, "out of memory");
    struct timeval second = {1, 0};
    struct timeval after = {s->opts.assigning_after_ms / 1000, (s->opts.assigning_after_ms % 1000) * 1000};
    if (rc == ENR_OK &&
        ((p->committed_event = event_new(base, -1, 0, committed_ready, p)) == NULL ||
         (p->flush_timer = event_new(base, -1, EV_PERSIST, flush_tick, p)) == NULL ||
         event_add(p->flush_timer, &second) != 0 ||
         (s->opts.assigning_after_ms > 0 &&
          (p->assigning_after = event_base_init_common_timeout(base, &after)) == NULL)))
        rc = enr_error_set(err, ENR_E_NOMEM, "cannot set up the provisioning core's events");
    if (rc != ENR_OK) {
        enr_provision_free(p);
        return rc;
    }
    *out = p;
    return ENR_OK;
}

void enr_provision_set_observer(enr_provision *p, enr_provision_done_fn fn, void *arg)
{
    p->observer = fn;
    p->observer_arg = arg;
}

enr_code enr_provision_ocsp(enr_provision *p, const unsigned char *req, size_t len, unsigned char **resp,
                            size_t *resp_len, enr_ocsp_outcome *outcome, enr_error *err)
{
    if (p->ocsp == NULL) {
        enr_code rc = enr_ocsp_responder_new(p->store, &p->ocsp, err);
        if (rc != ENR_OK)
            return rc;
    }
    return enr_ocsp_answer(p->ocsp, req, len, 0, resp, resp_len, outcome, err);
}

/* The credential policy of enrollment group `group` (an EST label):
 * ENR_E_NOTFOUND when there is no such group or it has none. */
static enr_code group_policy(enr_provision *p, const char *group, enr_credential_policy *out, enr_error *err)
{
    enr_enrollment e = {0};
    enr_code rc = enr_store_get_enrollment(p->store, ENR_ENROLLMENT_GROUP, group, &e, err);
    if (rc == ENR_OK && !e.policy[0])
        rc = enr_error_set(err, ENR_E_NOTFOUND, "enrollment group %s has no credential policy", e.id);
    if (rc == ENR_OK)
        rc = enr_store_get_policy(p->store, e.policy, out, err);
    enr_enrollment_free(&e);
    return rc;
}

enr_code enr_provision_group_key_types(enr_provision *p, const char *group, char *out, size_t cap, enr_error *err)
{
    enr_credential_policy policy = {0};
    enr_code rc = group_policy(p, group, &policy, err);
    if (rc == ENR_OK)
        snprintf(out, cap, "%s", policy.key_types);
    return rc;
}

static void add_once(STACK_OF(X509) *out, X509 *x)
{
    bool seen = false;
    for (int k = 0; k < sk_X509_num(out) && !seen; k++)
        seen = X509_cmp(sk_X509_value(out, k), x) == 0;
    if (seen || sk_X509_push(out, x) <= 0)
        X509_free(x);
}

/* Adds CA `name`'s certificate and chain as the store records them: no CA
 * key is opened for an unauthenticated request. false when the store
 * cannot be read (*io) or the CA is gone or unreadable (skipped). */
static bool add_ca_certificates(enr_store *store, const char *name, STACK_OF(X509) *out, bool *io)
{
    enr_ca_record ca = {0};
    enr_error err;
    enr_code rc = enr_store_get_ca(store, name, &ca, &err);
    *io = rc == ENR_E_IO;
    if (rc != ENR_OK)
        return false;
    const unsigned char *der = ca.certificate.data;
    X509 *x = d2i_X509(NULL, &der, (long)ca.certificate.len);
    bool ok = x != NULL;
    if (ok)
        add_once(out, x);
    BIO *chain = ca.chain_pem != NULL ? BIO_new_mem_buf(ca.chain_pem, -1) : NULL;
    for (X509 *c; chain != NULL && (c = PEM_read_bio_X509(chain, NULL, NULL, NULL)) != NULL;)
        add_once(out, c);
    ERR_clear_error(); /* the end of the PEM text */
    BIO_free(chain);
    enr_ca_record_free(&ca);
    return ok;
}

enr_code enr_provision_ca_certificates(enr_provision *p, const char *group, STACK_OF(X509) **out, enr_error *err)
{
    *out = sk_X509_new_null();
    if (*out == NULL)
        return enr_error_set(err, ENR_E_NOMEM, "out of memory");
    enr_code rc = ENR_OK;
    enr_policy_list policies = {0};
    if (group != NULL) {
        enr_credential_policy *one = calloc(1, sizeof *one);
        rc = one != NULL ? group_policy(p, group, one, err) : enr_error_set(err, ENR_E_NOMEM, "out of memory");
        if (rc == ENR_OK) {
            policies.items = one;
            policies.count = 1;
            one = NULL;
        }
        free(one);
    } else {
        rc = enr_store_list_policies(p->store, &policies, err);
    }
    /* Every policy's CA that can be read; one that cannot is left out, not
     * the answer. */
    bool io = false;
    for (size_t i = 0; rc == ENR_OK && i < policies.count && !io; i++)
        (void)add_ca_certificates(p->store, policies.items[i].ca_name, *out, &io);
    enr_policy_list_free(&policies);
    if (rc == ENR_OK && io)
        rc = enr_error_set(err, ENR_E_IO, "the store is unavailable");
    if (rc == ENR_OK && sk_X509_num(*out) == 0)
        rc = enr_error_set(err, ENR_E_NOTFOUND, "no CA issues certificates here");
    if (rc != ENR_OK) {
        sk_X509_pop_free(*out, X509_free);
        *out = NULL;
    }
    return rc;
}

void enr_provision_free(enr_provision *p)
{
    if (p == NULL)
        return;
    enr_ocsp_responder_free(p->ocsp);
    /* Registrations the committer finished after the loop stopped: committed
     * or not as the store says, never answered (their front ends are gone). */
    for (registration_job *job = p->committed, *next; job != NULL; job = next) {
        next = job->next;
        enr_provision_call *call = job->context;
        call_unlink(call);
        call_free(call);
    }
    while (p->calls != NULL) { /* still in a committer that never ran them: not ours to free */
        enr_provision_call *call = p->calls;
        call_unlink(call);
        call->job = NULL;
        call_free(call);
    }
    if (p->committed_event != NULL)
        event_free(p->committed_event);
    if (p->flush_timer != NULL)
        event_free(p->flush_timer);
    enr_ca_cache_free(p->cas);
    enr_store_close(p->store);
    enr_sas_mac_free(p->attest.mac);
    free(p->samples);
    pthread_mutex_destroy(&p->committed_lock);
    free(p);
}
