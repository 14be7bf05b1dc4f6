#include "service/committer.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <time.h>

#include "enroll/store.h"

/* More than this waits for the next transaction: keeps a transaction's
 * work (and the latency of its first job) bounded. */
#define BATCH_MAX 256

struct committer {
    enr_store *store;
    pthread_t thread;
    pthread_mutex_t lock;
    pthread_cond_t wake;
    registration_job *head, *tail; /* FIFO */
    bool stopping;
    bool started;
};

static double seconds_now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

static void commit_batch(committer *c, registration_job **jobs, size_t n)
{
    enr_registration_commit items[BATCH_MAX];
    for (size_t i = 0; i < n; i++)
        items[i] = jobs[i]->item;
    enr_error err;
    double t0 = seconds_now();
    (void)enr_store_commit_registrations(c->store, items, n, &err); /* each item carries its result */
    double ms = (seconds_now() - t0) * 1000.0;
    for (size_t i = 0; i < n; i++) {
        jobs[i]->item.result = items[i].result;
        jobs[i]->item.error = items[i].error;
        jobs[i]->commit_ms = ms;
    }
    for (size_t i = 0; i < n; i++)
        jobs[i]->done(jobs[i], jobs[i]->done_arg);
}

static void *committer_main(void *arg)
{
    committer *c = arg;
    registration_job *batch[BATCH_MAX];
    for (;;) {
        pthread_mutex_lock(&c->lock);
        while (c->head == NULL && !c->stopping)
            pthread_cond_wait(&c->wake, &c->lock);
        if (c->head == NULL && c->stopping) {
            pthread_mutex_unlock(&c->lock);
            return NULL;
        }
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
        commit_batch(c, batch, n);
    }
}

enr_code committer_new(const char *data_dir, committer **out, enr_error *err)
{
    *out = NULL;
    committer *c = calloc(1, sizeof *c);
    if (c == NULL)
        return enr_error_set(err, ENR_E_NOMEM, "out of memory");
    pthread_mutex_init(&c->lock, NULL);
    pthread_cond_init(&c->wake, NULL);
    enr_code rc = enr_store_open_sqlite(data_dir, &c->store, err);
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
    free(c);
}
