/* Internal to the provisioning core: the group committer, the service's one store writer.
 * Workers hand it registrations ready to commit; one thread with its own
 * store connection commits all that are waiting in one transaction (one
 * fsync for the lot), then calls each job's `done` (on the committer's
 * thread) so its worker can answer. While a commit runs the next batch
 * gathers, so the batch grows with the load and a lone request waits for
 * one commit only.
 * The same thread, about once a second and never on a worker's loop:
 * writes the refusal audit events the workers hand it (one transaction for
 * all), prunes audit events past their retention (bounded batches), and
 * keeps the store's health: not ok after a write failed (until one
 * succeeds) or while a write transaction cannot begin. */
#ifndef ENROLL_PROVISION_COMMITTER_H
#define ENROLL_PROVISION_COMMITTER_H

#include <stdbool.h>
#include <stddef.h>

#include "enroll/error.h"
#include "enroll/store.h"

/* A registration ready to commit: nothing may reach the device until the
 * store holds it. */
typedef struct registration_job {
    enr_registration_commit item;  /* points into the fields below; item.result is the outcome */
    enr_registration registration;
    enr_certificate certificate;   /* owns its DER */
    enr_operation operation;
    enr_audit_event audit;
    char credential_issuer[ENR_STORE_DN_MAX + 1]; /* an operational certificate presented, or "" */
    char credential_serial[ENR_STORE_SERIAL_MAX + 1];
    char enrollment_etag[ENR_STORE_ETAG_MAX + 1]; /* attested before the request (a grant), or "" */
    char *answer;                  /* the 200 body, sent once committed */
    char *kept_answer;             /* the operation's copy: without the certificates when one was issued */
    bool issued;
    char registration_id[ENR_STORE_ID_MAX + 1];
    double commit_ms;              /* the group commit's duration */
    /* Called on the committer's thread once the commit is over. */
    void (*done)(struct registration_job *job, void *arg);
    void *done_arg;
    void *context;                 /* the core's pending registration */
    struct registration_job *next;
} registration_job;

void registration_job_free(registration_job *job);

typedef struct committer committer;

typedef struct committer_options {
    int audit_max_age_days; /* 0: no age bound */
    long audit_max_rows;    /* 0: no row bound */
} committer_options;

enr_code committer_new(const char *store_location, const committer_options *options, committer **out, enr_error *err);
/* Thread-safe. job->done and job->done_arg must be set. */
void committer_submit(committer *c, registration_job *job);
/* Thread-safe: copies the events, written with the next flush. Beyond a
 * bound (the store is slower than the refusals) the rest are counted in
 * one event instead. */
void committer_submit_audit(committer *c, const enr_audit_event *events, size_t count);
/* Thread-safe: false while the store cannot take commits. */
bool committer_store_ok(committer *c);
/* Commits what is queued, calls its `done`s, and stops the thread. */
void committer_free(committer *c);

#endif
