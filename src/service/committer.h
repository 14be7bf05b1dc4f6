/* Internal to enrolld: the group committer. Workers hand it registrations
 * ready to commit; one thread with its own store connection commits all
 * that are waiting in one transaction (one fsync for the lot), then calls
 * each job's `done` (on the committer's thread) so its worker can answer.
 * While a commit runs the next batch gathers, so the batch grows with the
 * load and a lone request waits for one commit only. */
#ifndef ENROLL_SERVICE_COMMITTER_H
#define ENROLL_SERVICE_COMMITTER_H

#include "enroll/error.h"
#include "service/registration.h"

typedef struct committer committer;

enr_code committer_new(const char *data_dir, committer **out, enr_error *err);
/* Thread-safe. job->done and job->done_arg must be set. */
void committer_submit(committer *c, registration_job *job);
/* Commits what is queued, calls its `done`s, and stops the thread. */
void committer_free(committer *c);

#endif
