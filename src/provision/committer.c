#include "provision/committer.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "enroll/store.h"

/* More than this waits for the next transaction: keeps a transaction's
 * work (and the latency of its first job) bounded. */
#define BATCH_MAX 256
/* Audit events waiting for a flush; beyond, they are only counted. */
#define AUDIT_QUEUE_MAX 4096
/* After a failed write the store reads unhealthy at least this long: a
 * write small enough to fit (the recovery probe) does not make a full disk
 * look healthy again at once. */
#define FAILED_HOLD_MS 10000
/* Retention deletes in slices of this many rows, each its own
 * transaction, one between two commit batches: a slice holds the
 * registrations queued behind it for a few milliseconds, where a second's
 * worth of deletions at once (thousands of rows, each a random page of the
 * by-registration index) held them for a quarter of a second. */
#define PRUNE_SLICE 250
/* At most this many slices a second (100,000 rows): more than any
 * registration rate adds, so a backlog shrinks, yet bounded. */
#define PRUNE_SLICES_PER_TICK 400

struct committer {
    enr_store *store;
    committer_options options;
    pthread_t thread;
    pthread_mutex_t lock;
    pthread_cond_t wake;
    registration_job *head, *tail; /* FIFO */
    enr_audit_event *audits;       /* AUDIT_QUEUE_MAX */
    size_t audit_count;
    unsigned long audit_overflow;  /* refusals beyond the queue, since the last flush */
    bool stopping;
    bool started;
    _Atomic bool write_failed;     /* the last write failed; cleared by one that succeeds */
    _Atomic bool cannot_begin;     /* the last probe could not begin a write transaction */
    _Atomic long long hold_until_ms; /* not ok before this (monotonic ms): FAILED_HOLD_MS after a failure */
    /* The committer thread's own: retention found more to delete than one
     * slice, and the slices run this tick. */
    bool prune_backlog;
    int prune_slices;
};

static double seconds_now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

static long long ms_now(void)
{
    return (long long)(seconds_now() * 1000.0);
}

static void note_write(committer *c, enr_code rc)
{
    /* A refused item (a taken serial, a disabled enrollment) is the store
     * working; I/O errors, a full disk, a lock held too long are not. */
    if (rc == ENR_E_IO || rc == ENR_E_NOMEM || rc == ENR_E_INTERNAL) {
        atomic_store(&c->write_failed, true);
        atomic_store(&c->hold_until_ms, ms_now() + FAILED_HOLD_MS);
    } else if (rc == ENR_OK) {
        atomic_store(&c->write_failed, false);
    }
}

static void commit_batch(committer *c, registration_job **jobs, size_t n)
{
    enr_registration_commit items[BATCH_MAX];
    for (size_t i = 0; i < n; i++)
        items[i] = jobs[i]->item;
    enr_error err;
    double t0 = seconds_now();
    enr_code rc = enr_store_commit_registrations(c->store, items, n, &err); /* each item carries its result */
    double ms = (seconds_now() - t0) * 1000.0;
    enr_code worst = rc;
    for (size_t i = 0; i < n; i++) {
        jobs[i]->item.result = items[i].result;
        jobs[i]->item.error = items[i].error;
        jobs[i]->commit_ms = ms;
        if (items[i].result == ENR_E_IO)
            worst = ENR_E_IO;
    }
    note_write(c, worst);
    for (size_t i = 0; i < n; i++)
        jobs[i]->done(jobs[i], jobs[i]->done_arg);
}

/* The refusals gathered since the last flush, in one transaction. */
static void flush_audits(committer *c, enr_audit_event *batch)
{
    pthread_mutex_lock(&c->lock);
    size_t n = c->audit_count;
    unsigned long overflow = c->audit_overflow;
    memcpy(batch, c->audits, n * sizeof *batch);
    c->audit_count = 0;
    c->audit_overflow = 0;
    pthread_mutex_unlock(&c->lock);
    if (overflow > 0) {
        enr_audit_event *o = &batch[n++];
        memset(o, 0, sizeof *o);
        snprintf(o->kind, sizeof o->kind, "register");
        snprintf(o->outcome, sizeof o->outcome, "rejected");
        snprintf(o->detail, sizeof o->detail,
                 "%lu more refusals, not itemized: they came faster than the store took them", overflow);
    }
    if (n == 0)
        return;
    enr_error err;
    enr_code rc = enr_store_record_audits(c->store, batch, n, &err);
    note_write(c, rc);
    if (rc != ENR_OK)
        fprintf(stderr, "{\"event\":\"audit_write_failed\",\"events\":%zu,\"error\":\"%s\"}\n", n,
                enr_code_name(rc));
}

/* One slice of retention; prune_backlog says whether another may follow this tick. */
static enr_code prune_slice(committer *c)
{
    enr_error err;
    time_t before = c->options.audit_max_age_days > 0 ? time(NULL) - (time_t)c->options.audit_max_age_days * 86400
                                                       : 0;
    size_t deleted = 0;
    enr_code rc = enr_store_prune_audit(c->store, before, c->options.audit_max_rows, PRUNE_SLICE, &deleted, &err);
    note_write(c, rc);
    c->prune_slices++;
    c->prune_backlog = rc == ENR_OK && deleted == PRUNE_SLICE && c->prune_slices < PRUNE_SLICES_PER_TICK;
    return rc;
}

/* Once a second: retention's first slice, and the store's health. */
static void maintain(committer *c)
{
    enr_error err;
    enr_code probe = ENR_E_NOTFOUND; /* no write tried yet this tick */
    c->prune_slices = 0;
    if (c->options.audit_max_age_days > 0 || c->options.audit_max_rows != 0)
        probe = prune_slice(c); /* a DELETE takes the write lock even when it deletes nothing */
    /* Whether a write can begin: the pruning said so, or a probe. One
     * attempt a tick, so a lock held elsewhere delays the registrations
     * waiting behind it by one busy timeout at most. */
    enr_code rc = probe != ENR_E_NOTFOUND ? probe : enr_store_check_writable(c->store, &err);
    atomic_store(&c->cannot_begin, rc != ENR_OK);
    if (rc == ENR_OK && atomic_load(&c->write_failed) && ms_now() >= atomic_load(&c->hold_until_ms)) {
        /* Writes failed and none has been tried since: try one (it is the
         * record of the recovery; when the store still fails nothing is
         * written). */
        enr_audit_event e = {0};
        snprintf(e.kind, sizeof e.kind, "store");
        snprintf(e.outcome, sizeof e.outcome, "ok");
        snprintf(e.detail, sizeof e.detail, "the store takes writes again after a failed write");
        note_write(c, enr_store_record_audits(c->store, &e, 1, &err));
    }
}

static void *committer_main(void *arg)
{
    committer *c = arg;
    registration_job *batch[BATCH_MAX];
    enr_audit_event *audits = malloc((AUDIT_QUEUE_MAX + 1) * sizeof *audits);
    double next_tick = seconds_now() + 1.0;
    for (;;) {
        pthread_mutex_lock(&c->lock);
        while (c->head == NULL && !c->stopping && !c->prune_backlog && seconds_now() < next_tick) {
            struct timespec until;
            clock_gettime(CLOCK_REALTIME, &until);
            until.tv_nsec += 200 * 1000 * 1000;
            if (until.tv_nsec >= 1000000000L) {
                until.tv_sec++;
                until.tv_nsec -= 1000000000L;
            }
            (void)pthread_cond_timedwait(&c->wake, &c->lock, &until);
        }
        bool stopping = c->stopping;
        size_t n = 0;
        while (c->head != NULL && n < BATCH_MAX) {
            batch[n++] = c->head;
            c->head = c->head->next;
        }
        if (c->head == NULL)
            c->tail = NULL;
        pthread_mutex_unlock(&c->lock);
        for (size_t i = 0; i < n; i++)
            batch[i]->next = NULL;
        if (n > 0)
            commit_batch(c, batch, n);
        if (c->prune_backlog && !stopping)
            (void)prune_slice(c); /* a failure is noted; the next tick tries again */
        if (stopping || seconds_now() >= next_tick) {
            if (audits != NULL)
                flush_audits(c, audits);
            if (!stopping)
                maintain(c);
            next_tick = seconds_now() + 1.0;
        }
        if (stopping && n == 0)
            break;
    }
    free(audits);
    return NULL;
}

enr_code committer_new(const char *store_location, const committer_options *options, committer **out, enr_error *err)
{
    *out = NULL;
    committer *c = calloc(1, sizeof *c);
    if (c == NULL || (c->audits = calloc(AUDIT_QUEUE_MAX, sizeof *c->audits)) == NULL) {
        free(c);
        return enr_error_set(err, ENR_E_NOMEM, "out of memory");
    }
    if (options != NULL)
        c->options = *options;
    pthread_mutex_init(&c->lock, NULL);
    pthread_cond_init(&c->wake, NULL);
    enr_code rc = enr_store_open(store_location, &c->store, err);
    if (rc == ENR_OK && pthread_create(&c->thread, NULL, committer_main, c) != 0)
        rc = enr_error_set(err, ENR_E_INTERNAL, "cannot start the store committer thread");
    if (rc != ENR_OK) {
        committer_free(c);
        return rc;
    }
    c->started = true;
    *out = c;
    return ENR_OK;
}

void committer_submit(committer *c, registration_job *job)
{
    job->next = NULL;
    pthread_mutex_lock(&c->lock);
    if (c->tail != NULL)
        c->tail->next = job;
    else
        c->head = job;
    c->tail = job;
    pthread_cond_signal(&c->wake);
    pthread_mutex_unlock(&c->lock);
}

void committer_submit_audit(committer *c, const enr_audit_event *events, size_t count)
{
    pthread_mutex_lock(&c->lock);
    for (size_t i = 0; i < count; i++) {
        if (c->audit_count < AUDIT_QUEUE_MAX)
            c->audits[c->audit_count++] = events[i];
        else
            c->audit_overflow++;
    }
    pthread_mutex_unlock(&c->lock); /* no wake-up: written with the next tick */
}

bool committer_store_ok(committer *c)
{
    return !atomic_load(&c->write_failed) && !atomic_load(&c->cannot_begin) &&
           ms_now() >= atomic_load(&c->hold_until_ms);
}

void committer_free(committer *c)
{
    if (c == NULL)
        return;
    if (c->started) {
        pthread_mutex_lock(&c->lock);
        c->stopping = true;
        pthread_cond_signal(&c->wake);
        pthread_mutex_unlock(&c->lock);
        pthread_join(c->thread, NULL);
    }
    enr_store_close(c->store);
    pthread_cond_destroy(&c->wake);
    pthread_mutex_destroy(&c->lock);
    free(c->audits);
    free(c);
}

void registration_job_free(registration_job *job)
{
    if (job == NULL)
        return;
    enr_certificate_free(&job->certificate);
    free(job->answer);
    free(job->kept_answer);
    free(job);
}
