/* The group committer: jobs from several threads all reach the store, each
 * `done` is called once with the job's own result, a failing job does not
 * take the others down, and a failed commit is answered as "store
 * unavailable" without any certificate reaching the device. */
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
#include "service/committer.h"
#include "service/registration.h"

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

static void test_failed_job_is_answered_as_unavailable(void **state)
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

    registrar *r = NULL;
    assert_int_equal(registrar_new(dir, "0ne00000001", &r, &err), ENR_OK);
    registration_answer answer;
    registrar_finish(r, first, &answer);
    assert_int_equal(answer.status, 200);
    assert_true(answer.issued);
    assert_string_equal(answer.body, "{\"status\":\"assigned\"}");
    assert_null(first->answer); /* taken */
    free(answer.body);
    registrar_finish(r, clash, &answer);
    assert_int_equal(answer.status, 503);
    assert_false(answer.issued);
    assert_non_null(strstr(answer.body, "\"errorCode\":503"));
    assert_null(strstr(answer.body, "assigned"));
    assert_string_equal(answer.registration_id, "dev-b");
    free(answer.body);
    registrar_free(r);

    enr_store *store = NULL;
    assert_int_equal(enr_store_open_sqlite(dir, &store, &err), ENR_OK);
    enr_registration got;
    assert_int_equal(enr_store_get_registration(store, "dev-b", &got, &err), ENR_E_NOTFOUND);
    assert_int_equal(enr_store_get_registration(store, "dev-c", &got, &err), ENR_OK);
    enr_audit_filter only_b = {.registration_id = "dev-b"};
    enr_audit_list events;
    assert_int_equal(enr_store_list_audit(store, &only_b, &events, &err), ENR_OK);
    assert_int_equal(events.count, 1); /* the refusal, nothing else */
    assert_string_equal(events.items[0].outcome, "error");
    enr_audit_list_free(&events);
    enr_store_close(store);
    registration_job_free(first);
    registration_job_free(clash);
    registration_job_free(after);
    remove_dir(dir);
}

/* A refusal at commit time is answered from its typed reason, never from
 * the words of its message: a disabled registration named certificate-7
 * or enrollment-7 is 403002 (a search for "certificate" once made it
 * 401002, one for "enrollment" 403001). */
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

        registrar *r = NULL;
        assert_int_equal(registrar_new(dir, "0ne00000001", &r, &err), ENR_OK);
        registration_answer answer;
        registrar_finish(r, again, &answer);
        assert_int_equal(answer.status, 403);
        assert_int_equal(answer.error_code, 403002);
        assert_non_null(strstr(answer.body, "\"errorCode\":403002"));
        free(answer.body);
        registrar_free(r);
        registration_job_free(first);
        registration_job_free(again);
    }
    remove_dir(dir);
}

static registrar_operation_state stub_state;
static enr_dps_error stub_why;

static registrar_operation_state operation_state_stub(void *arg, const char *operation_id,
                                                      const char *registration_id, enr_dps_error *why)
{
    (void)arg;
    *why = stub_why;
    return strcmp(operation_id, "op-x") == 0 && strcmp(registration_id, "dev-p") == 0 ? stub_state
                                                                                     : REGISTRAR_OPERATION_UNKNOWN;
}

/* What a polling device reads for an operation answered 202: assigning
 * while the commit runs, failed (so it starts over) when the commit failed,
 * unknown otherwise. */
static void test_operation_states(void **state)
{
    (void)state;
    char *dir = temp_dir();
    enr_error err;
    static const char KEY[] = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=";
    enr_store *store = NULL;
    assert_int_equal(enr_store_open_sqlite(dir, &store, &err), ENR_OK);
    enr_enrollment e = {.kind = ENR_ENROLLMENT_INDIVIDUAL, .attestation = ENR_ATTEST_SYMMETRIC, .enabled = true};
    snprintf(e.id, sizeof e.id, "dev-p");
    snprintf(e.primary_key, sizeof e.primary_key, "%s", KEY);
    snprintf(e.assigned_hub, sizeof e.assigned_hub, "mqtt.example.net");
    if (enr_store_create_enrollment(store, &e, NULL, &err) != ENR_OK)
        fail_msg("%s", err.message);
    enr_store_close(store);
    char *token = NULL;
    assert_int_equal(enr_sas_token_make("0ne00000001", "dev-p", KEY, time(NULL) + 600, &token, &err), ENR_OK);

    registrar *r = NULL;
    assert_int_equal(registrar_new(dir, "0ne00000001", &r, &err), ENR_OK);
    registrar_set_in_flight(r, operation_state_stub, NULL);
    registration_request q = {.path = "/0ne00000001/registrations/dev-p/operations/op-x",
                              .api_version = "2025-07-01-preview", .authorization = token};
    registration_answer a;

    stub_state = REGISTRAR_OPERATION_ASSIGNING;
    registrar_handle(r, &q, &a);
    assert_int_equal(a.status, 202);
    assert_int_equal(a.retry_after, 1);
    assert_non_null(strstr(a.body, "\"status\":\"assigning\""));
    free(a.body);

    stub_state = REGISTRAR_OPERATION_FAILED;
    registrar_handle(r, &q, &a);
    assert_int_equal(a.status, 200);
    assert_non_null(strstr(a.body, "\"status\":\"failed\""));
    assert_non_null(strstr(a.body, "503"));
    assert_null(strstr(a.body, "issuedCertificateChain"));
    free(a.body);

    /* Refused at commit for a typed reason after the 202: the poll says which. */
    stub_why = ENR_DPS_CSR_KEY_COMPROMISED;
    registrar_handle(r, &q, &a);
    assert_int_equal(a.status, 200);
    assert_non_null(strstr(a.body, "\"status\":\"failed\""));
    assert_non_null(strstr(a.body, "400011"));
    assert_null(strstr(a.body, "503001"));
    free(a.body);
    stub_why = ENR_DPS_OK;

    stub_state = REGISTRAR_OPERATION_UNKNOWN;
    registrar_handle(r, &q, &a);
    assert_int_equal(a.status, 404);
    free(a.body);

    /* Another device never learns the state of dev-p's operation. */
    stub_state = REGISTRAR_OPERATION_ASSIGNING;
    registration_request other = q;
    other.authorization = "SharedAccessSignature sr=x&sig=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA%3D&se=1&skn=registration";
    registrar_handle(r, &other, &a);
    assert_int_equal(a.status / 100, 4);
    assert_null(strstr(a.body, "assigning"));
    free(a.body);

    registrar_free(r);
    enr_sas_secret_free(token);
    remove_dir(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_jobs_from_many_threads_all_commit),
        cmocka_unit_test(test_failed_job_is_answered_as_unavailable),
        cmocka_unit_test(test_commit_refusal_is_answered_by_reason),
        cmocka_unit_test(test_operation_states),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
