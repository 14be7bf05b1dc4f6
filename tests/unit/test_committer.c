/* The group committer: jobs from several threads all reach the store, each
 * `done` is called once with the job's own result, a failing job does not
 * take the others down (its result says why; the core answers it,
 * test_provision). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "enroll/sas.h"
#include "enroll/store.h"
#include "provision/committer.h"

#define THREADS 4
#define JOBS_PER_THREAD 50

static unsigned char FAKE_DER[] = {0x30, 0x03, 0x02, 0x01, 0x01};
static const char ISSUER[] = "CN=Test Issuing CA";

typedef struct tally {
    _Atomic int done;
    _Atomic int ok;
    _Atomic int exists;
} tally;

static void count_done(registration_job *job, void *arg)
{
    tally *t = arg;
    if (job->item.result != ENR_OK && getenv("DEBUG_COMMITTER"))
        fprintf(stderr, "%s: %s\n", job->registration_id, job->item.error.message);
    if (job->item.result == ENR_OK)
        atomic_fetch_add(&t->ok, 1);
    else if (job->item.result == ENR_E_EXISTS)
        atomic_fetch_add(&t->exists, 1);
    atomic_fetch_add(&t->done, 1);
}

/* A job as the registrar makes it: registration, certificate (serial given,
 * or none), operation, audit event and the answer to send. */
static registration_job *job_new(const char *rid, const char *serial, tally *t)
{
    registration_job *job = calloc(1, sizeof *job);
    assert_non_null(job);
    enr_registration *r = &job->registration;
    r->enrollment_kind = ENR_ENROLLMENT_GROUP;
    snprintf(r->registration_id, sizeof r->registration_id, "%s", rid);
    snprintf(r->enrollment_id, sizeof r->enrollment_id, "fleet");
    snprintf(r->status, sizeof r->status, "assigned");
    snprintf(r->device_id, sizeof r->device_id, "%s", rid);
    snprintf(r->assigned_hub, sizeof r->assigned_hub, "mqtt.example.net:8883");
    snprintf(r->etag, sizeof r->etag, "etag-1");
    enr_certificate *c = &job->certificate;
    if (serial != NULL) {
        snprintf(c->issuer, sizeof c->issuer, "%s", ISSUER);
        snprintf(c->serial, sizeof c->serial, "%s", serial);
        snprintf(c->subject, sizeof c->subject, "CN=%s", rid);
        memset(c->spki_sha256, 'a', 64);
        c->not_before = time(NULL) - 60;
        c->not_after = time(NULL) + 86400;
        c->der.data = malloc(sizeof FAKE_DER);
        assert_non_null(c->der.data);
        memcpy(c->der.data, FAKE_DER, sizeof FAKE_DER);
        c->der.len = sizeof FAKE_DER;
    }
    snprintf(job->operation.operation_id, sizeof job->operation.operation_id, "op-%s", rid);
    snprintf(job->operation.status, sizeof job->operation.status, "assigned");
    job->answer = strdup("{\"status\":\"assigned\"}");
    job->operation.result_json = job->answer;
    snprintf(job->audit.kind, sizeof job->audit.kind, "register");
    snprintf(job->audit.registration_id, sizeof job->audit.registration_id, "%s", rid);
    snprintf(job->audit.outcome, sizeof job->audit.outcome, "ok");
    snprintf(job->registration_id, sizeof job->registration_id, "%s", rid);
    job->issued = serial != NULL;
    job->item = (enr_registration_commit){.registration = &job->registration,
                                          .certificate = serial ? &job->certificate : NULL,
                                          .operation = &job->operation, .audit = &job->audit,
                                          .result = ENR_E_INTERNAL};
    job->done = count_done;
    job->done_arg = t;
    return job;
}

typedef struct producer {
    committer *c;
    tally *t;
    int index;
    registration_job *jobs[JOBS_PER_THREAD];
} producer;

static void *produce(void *arg)
{
    producer *p = arg;
    for (int i = 0; i < JOBS_PER_THREAD; i++) {
        char rid[64], serial[32];
        snprintf(rid, sizeof rid, "dev-%d-%d", p->index, i);
        snprintf(serial, sizeof serial, "%02X%04X", p->index + 1, i + 1);
        p->jobs[i] = job_new(rid, i % 5 == 4 ? NULL : serial, p->t);
        committer_submit(p->c, p->jobs[i]);
    }
    return NULL;
}

static char *temp_dir(void)
{
    char *dir = strdup("/tmp/enroll-test-committer-XXXXXX");
    assert_non_null(dir);
    assert_non_null(mkdtemp(dir));
    return dir;
}

static void remove_dir(char *dir)
{
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    assert_int_equal(system(cmd), 0);
    free(dir);
}

static void test_jobs_from_many_threads_all_commit(void **state)
{
    (void)state;
    char *dir = temp_dir();
    enr_error err;
    committer *c = NULL;
    assert_int_equal(committer_new(dir, NULL, &c, &err), ENR_OK);
    tally t = {0};
    producer producers[THREADS];
    pthread_t threads[THREADS];
    for (int i = 0; i < THREADS; i++) {
        producers[i] = (producer){.c = c, .t = &t, .index = i};
        assert_int_equal(pthread_create(&threads[i], NULL, produce, &producers[i]), 0);
    }
    for (int i = 0; i < THREADS; i++)
        pthread_join(threads[i], NULL);
    committer_free(c); /* commits what is still queued before it returns */
    assert_int_equal(atomic_load(&t.done), THREADS * JOBS_PER_THREAD);
    assert_int_equal(atomic_load(&t.ok), THREADS * JOBS_PER_THREAD);
    for (int i = 0; i < THREADS; i++)
        for (int j = 0; j < JOBS_PER_THREAD; j++)
            registration_job_free(producers[i].jobs[j]);

    enr_store *store = NULL;
    assert_int_equal(enr_store_open_sqlite(dir, &store, &err), ENR_OK);
    enr_registration_list regs;
    assert_int_equal(enr_store_list_registrations(store, NULL, &regs, &err), ENR_OK);
    assert_int_equal(regs.count, THREADS * JOBS_PER_THREAD);
    enr_registration_list_free(&regs);
    enr_certificate_list certs;
    assert_int_equal(enr_store_list_certificates(store, NULL, &certs, &err), ENR_OK);
    assert_int_equal(certs.count, THREADS * JOBS_PER_THREAD * 4 / 5);
    enr_certificate_list_free(&certs);
    assert_int_equal(enr_store_integrity_check(store, &err), ENR_OK);
    enr_store_close(store);
    remove_dir(dir);
}

static void test_failed_job_rolls_back_alone(void **state)
{
    (void)state;
    char *dir = temp_dir();
    enr_error err;
    committer *c = NULL;
    assert_int_equal(committer_new(dir, NULL, &c, &err), ENR_OK);
    tally t = {0};
    registration_job *first = job_new("dev-a", "7F01", &t);
    registration_job *clash = job_new("dev-b", "7F01", &t); /* the same serial again */
    registration_job *after = job_new("dev-c", "7F02", &t);
    committer_submit(c, first);
    committer_submit(c, clash);
    committer_submit(c, after);
    committer_free(c);
    assert_int_equal(atomic_load(&t.done), 3);
    assert_int_equal(first->item.result, ENR_OK);
    assert_int_equal(clash->item.result, ENR_E_EXISTS);
    assert_int_equal(after->item.result, ENR_OK);

    enr_store *store = NULL;
    assert_int_equal(enr_store_open_sqlite(dir, &store, &err), ENR_OK);
    enr_registration got;
    assert_int_equal(enr_store_get_registration(store, "dev-b", &got, &err), ENR_E_NOTFOUND);
    assert_int_equal(enr_store_get_registration(store, "dev-c", &got, &err), ENR_OK);
    enr_audit_filter only_b = {.registration_id = "dev-b"};
    enr_audit_list events;
    assert_int_equal(enr_store_list_audit(store, &only_b, &events, &err), ENR_OK);
    assert_int_equal(events.count, 0); /* rolled back: the core audits its refusal (test_provision) */
    enr_audit_list_free(&events);
    enr_store_close(store);
    registration_job_free(first);
    registration_job_free(clash);
    registration_job_free(after);
    remove_dir(dir);
}

/* A refusal at commit time carries its typed reason, whatever the words
 * of its message: a disabled registration named certificate-7 or
 * enrollment-7 is ENR_R_REGISTRATION_DISABLED (test_provision answers it
 * 403002). */
static void test_commit_refusal_is_answered_by_reason(void **state)
{
    (void)state;
    char *dir = temp_dir();
    enr_error err;
    static const char *const IDS[] = {"certificate-7", "enrollment-7", "key-7"};
    for (size_t i = 0; i < sizeof IDS / sizeof IDS[0]; i++) {
        committer *c = NULL;
        assert_int_equal(committer_new(dir, NULL, &c, &err), ENR_OK);
        tally t = {0};
        char serial[8];
        snprintf(serial, sizeof serial, "7E0%zu", i);
        registration_job *first = job_new(IDS[i], serial, &t);
        committer_submit(c, first);
        committer_free(c);
        assert_int_equal(first->item.result, ENR_OK);

        enr_store *store = NULL;
        assert_int_equal(enr_store_open_sqlite(dir, &store, &err), ENR_OK);
        assert_int_equal(enr_store_set_registration_enabled(store, IDS[i], false, NULL, &err), ENR_OK);
        enr_store_close(store);

        assert_int_equal(committer_new(dir, NULL, &c, &err), ENR_OK);
        snprintf(serial, sizeof serial, "7E1%zu", i);
        registration_job *again = job_new(IDS[i], serial, &t);
        snprintf(again->operation.operation_id, sizeof again->operation.operation_id, "op-again-%zu", i);
        committer_submit(c, again);
        committer_free(c);
        assert_int_equal(again->item.result, ENR_E_POLICY);
        assert_int_equal(again->item.error.reason, ENR_R_REGISTRATION_DISABLED);

        registration_job_free(first);
        registration_job_free(again);
    }
    remove_dir(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_jobs_from_many_threads_all_commit),
        cmocka_unit_test(test_failed_job_rolls_back_alone),
        cmocka_unit_test(test_commit_refusal_is_answered_by_reason),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
