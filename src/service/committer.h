/* Internal to enrolld: the group committer, the service's one store writer.
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
#ifndef ENROLL_SERVICE_COMMITTER_H
#define ENROLL_SERVICE_COMMITTER_H

#include <stdbool.h>
#include <stddef.h>

#include "enroll/error.h"
#include "enroll/store.h"
#include "service/registration.h"

typedef struct committer committer;

typedef struct committer_options {
    int audit_max_age_days; /* 0: no age bound */
    long audit_max_rows;    /* 0: no row bound */
} committer_options;

enr_code committer_new(const char *data_dir, const committer_options *options, committer **out, enr_error *err);
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
