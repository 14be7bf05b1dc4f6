/* The store: schema and migrations, every record's create/read/list path,
 * the registration commit's atomicity, revocation, file permissions,
 * secrets kept out of error messages, and durability across kill -9. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <openssl/x509.h>
#include <signal.h>
#include <libpq-fe.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "enroll/ca.h"
#include "enroll/csr.h"
#include "enroll/name.h"
#include "enroll/signer.h"
#include "enroll/store.h"

/* base64("secret-key-material-1234567890abcdef"): must never show up in an error. */
static const char SECRET_KEY[] = "c2VjcmV0LWtleS1tYXRlcmlhbC0xMjM0NTY3ODkwYWJjZGVm";
static const char SECOND_KEY[] = "b3RoZXIta2V5LW1hdGVyaWFsLTA5ODc2NTQzMjE=";
static const char ISSUER[] = "CN=Test Issuing CA";
static const char SPKI[] = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";

/* Set (ENROLL_TEST_PG_URL, tests/pg/pg_run.sh) to run every test against
 * PostgreSQL instead of SQLite: one suite for both backends. */
static const char *PG_URL;

typedef struct fixture {
    char dir[64];
    char location[512]; /* what enr_store_open is given: dir, or PG_URL */
    enr_store *store;
    unsigned char *ca_der; /* a real certificate, for CA rows and x509 enrollments */
    size_t ca_der_len;
} fixture;

/* ---- helpers ------------------------------------------------------------ */

static X509 *self_signed(const char *cn, const unsigned char *serial, size_t serial_len)
{
    EVP_PKEY *key = EVP_EC_gen("P-256");
    assert_non_null(key);
    X509 *x = X509_new();
    assert_non_null(x);
    assert_int_equal(X509_set_version(x, X509_VERSION_3), 1);
    BIGNUM *bn = BN_bin2bn(serial, (int)serial_len, NULL);
    assert_non_null(BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(x)));
    BN_free(bn);
    assert_non_null(X509_gmtime_adj(X509_getm_notBefore(x), 0));
    assert_non_null(X509_gmtime_adj(X509_getm_notAfter(x), 86400));
    X509_NAME *name = X509_get_subject_name(x);
    assert_int_equal(
        X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, (const unsigned char *)cn, -1, -1, 0), 1);
    assert_int_equal(X509_set_issuer_name(x, name), 1);
    assert_int_equal(X509_set_pubkey(x, key), 1);
    assert_true(X509_sign(x, key, EVP_sha256()) > 0);
    EVP_PKEY_free(key);
    return x;
}

/* Runs SQL on the test's PostgreSQL database, outside the store. */
static void pg_exec_raw(const char *sql)
{
    PGconn *pg = PQconnectdb(PG_URL);
    if (PQstatus(pg) != CONNECTION_OK)
        fail_msg("cannot connect to %s: %s", PG_URL, PQerrorMessage(pg));
    PQclear(PQexec(pg, "SET client_min_messages TO warning"));
    PGresult *res = PQexec(pg, sql);
    if (PQresultStatus(res) != PGRES_COMMAND_OK && PQresultStatus(res) != PGRES_TUPLES_OK)
        fail_msg("%s: %s", sql, PQerrorMessage(pg));
    PQclear(res);
    PQfinish(pg);
}

/* An empty database: every test starts from nothing, as with a new
 * SQLite directory. */
static void pg_reset(void)
{
    pg_exec_raw("DROP SCHEMA public CASCADE; CREATE SCHEMA public;");
}

/* A store nobody has opened yet, for tests that race to create one. */
static void fresh_location(const fixture *f, const char *name, char *out, size_t cap)
{
    if (PG_URL != NULL) {
        pg_reset();
        snprintf(out, cap, "%s", PG_URL);
    } else {
        snprintf(out, cap, "%s/%s", f->dir, name);
    }
}

static int setup(void **state)
{
    fixture *f = calloc(1, sizeof *f);
    if (f == NULL)
        return -1;
    snprintf(f->dir, sizeof f->dir, "/tmp/enroll-test-store-XXXXXX");
    if (mkdtemp(f->dir) == NULL)
        return -1;
    if (PG_URL != NULL)
        pg_reset();
    snprintf(f->location, sizeof f->location, "%s", PG_URL != NULL ? PG_URL : f->dir);
    enr_error err;
    if (enr_store_open(f->location, &f->store, &err) != ENR_OK) {
        fprintf(stderr, "setup: %s\n", err.message);
        return -1;
    }
    static const unsigned char serial[] = {0x01, 0x02};
    X509 *x = self_signed("Test Bootstrap CA", serial, sizeof serial);
    int len = i2d_X509(x, &f->ca_der);
    X509_free(x);
    if (len <= 0)
        return -1;
    f->ca_der_len = (size_t)len;
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture *f = *state;
    enr_store_close(f->store);
    OPENSSL_free(f->ca_der);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", f->dir);
    int rc = system(cmd) == 0 ? 0 : -1;
    free(f);
    return rc;
}

static void reopen(fixture *f)
{
    enr_error err;
    enr_store_close(f->store);
    f->store = NULL;
    if (enr_store_open(f->location, &f->store, &err) != ENR_OK)
        fail_msg("reopen: %s", err.message);
}

static sqlite3 *raw_db(const fixture *f)
{
    char path[128];
    snprintf(path, sizeof path, "%s/enroll.db", f->dir);
    sqlite3 *db = NULL;
    assert_int_equal(sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE, NULL), SQLITE_OK);
    return db;
}

static long long raw_count(sqlite3 *db, const char *sql)
{
    sqlite3_stmt *st = NULL;
    assert_int_equal(sqlite3_prepare_v2(db, sql, -1, &st, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    long long n = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    return n;
}

/* One number from SQL run on the store's database, behind its back. */
static long long store_count(const fixture *f, const char *sql)
{
    if (PG_URL == NULL) {
        sqlite3 *db = raw_db(f);
        long long n = raw_count(db, sql);
        sqlite3_close(db);
        return n;
    }
    PGconn *pg = PQconnectdb(PG_URL);
    assert_int_equal(PQstatus(pg), CONNECTION_OK);
    PGresult *res = PQexec(pg, sql);
    assert_int_equal(PQresultStatus(res), PGRES_TUPLES_OK);
    long long n = atoll(PQgetvalue(res, 0, 0));
    PQclear(res);
    PQfinish(pg);
    return n;
}

static void put_ca(fixture *f, const char *name, enr_ca_role role)
{
    enr_error err;
    enr_ca_record ca = {.role = role};
    snprintf(ca.name, sizeof ca.name, "%s", name);
    ca.certificate.data = f->ca_der;
    ca.certificate.len = f->ca_der_len;
    if (role == ENR_CA_ISSUING)
        snprintf(ca.key_ref, sizeof ca.key_ref, "pkcs11:token=ca;object=%s", name);
    else
        snprintf(ca.verification_code, sizeof ca.verification_code, "code-%s", name);
    if (enr_store_create_ca(f->store, &ca, NULL, &err) != ENR_OK)
        fail_msg("create CA %s: %s", name, err.message);
}

static void put_policy(fixture *f, const char *name, const char *ca_name)
{
    enr_error err;
    enr_credential_policy p = {0};
    snprintf(p.name, sizeof p.name, "%s", name);
    snprintf(p.validity, sizeof p.validity, "P30D");
    snprintf(p.renewal_window, sizeof p.renewal_window, "P7D");
    snprintf(p.ca_name, sizeof p.ca_name, "%s", ca_name);
    snprintf(p.key_types, sizeof p.key_types, "ec-p256,ec-p384");
    if (enr_store_create_policy(f->store, &p, NULL, &err) != ENR_OK)
        fail_msg("create policy %s: %s", name, err.message);
}

static enr_enrollment symmetric_enrollment(enr_enrollment_kind kind, const char *id, const char *policy)
{
    enr_enrollment e = {.kind = kind, .attestation = ENR_ATTEST_SYMMETRIC, .enabled = true};
    snprintf(e.id, sizeof e.id, "%s", id);
    snprintf(e.primary_key, sizeof e.primary_key, "%s", SECRET_KEY);
    snprintf(e.secondary_key, sizeof e.secondary_key, "%s", SECOND_KEY);
    snprintf(e.policy, sizeof e.policy, "%s", policy);
    snprintf(e.assigned_hub, sizeof e.assigned_hub, "mqtt.example.net:8883");
    return e;
}

static enr_registration registration(const char *id, const char *group)
{
    enr_registration r = {.enrollment_kind = ENR_ENROLLMENT_GROUP};
    snprintf(r.registration_id, sizeof r.registration_id, "%s", id);
    snprintf(r.enrollment_id, sizeof r.enrollment_id, "%s", group);
    snprintf(r.status, sizeof r.status, "assigned");
    snprintf(r.substatus, sizeof r.substatus, "initialAssignment");
    snprintf(r.device_id, sizeof r.device_id, "%s", id);
    snprintf(r.assigned_hub, sizeof r.assigned_hub, "mqtt.example.net:8883");
    snprintf(r.etag, sizeof r.etag, "etag-1");
    return r;
}

static unsigned char FAKE_DER[] = {0x30, 0x03, 0x02, 0x01, 0x01};

static enr_certificate certificate(const char *issuer, const char *serial, time_t not_after)
{
    enr_certificate c = {0};
    snprintf(c.issuer, sizeof c.issuer, "%s", issuer);
    snprintf(c.serial, sizeof c.serial, "%s", serial);
    snprintf(c.subject, sizeof c.subject, "CN=device");
    snprintf(c.spki_sha256, sizeof c.spki_sha256, "%s", SPKI);
    c.not_before = not_after - 30 * 86400;
    c.not_after = not_after;
    c.der.data = FAKE_DER;
    c.der.len = sizeof FAKE_DER;
    return c;
}

static enr_operation operation(const char *id)
{
    enr_operation op = {0};
    snprintf(op.operation_id, sizeof op.operation_id, "%s", id);
    snprintf(op.status, sizeof op.status, "assigned");
    return op;
}

static enr_audit_event audit(const char *kind, const char *registration_id, const char *outcome,
                             int reason_code, const char *detail)
{
    enr_audit_event a = {.reason_code = reason_code};
    snprintf(a.kind, sizeof a.kind, "%s", kind);
    snprintf(a.registration_id, sizeof a.registration_id, "%s", registration_id);
    snprintf(a.outcome, sizeof a.outcome, "%s", outcome);
    snprintf(a.detail, sizeof a.detail, "%s", detail);
    return a;
}

/* A registration with a certificate and an operation named after it. */
static enr_code commit(enr_store *store, const char *registration_id, const char *issuer, const char *serial,
                       time_t not_after, enr_error *err)
{
    enr_registration r = registration(registration_id, "fleet");
    enr_certificate c = certificate(issuer, serial, not_after);
    char op_id[ENR_STORE_ID_MAX + 1];
    snprintf(op_id, sizeof op_id, "op-%s-%s", registration_id, serial);
    enr_operation op = operation(op_id);
    enr_audit_event a = audit("register", registration_id, "ok", 0, "issued");
    return enr_store_commit_registration(store, &r, &c, &op, &a, err);
}

static void commit_ok(fixture *f, const char *registration_id, const char *serial, time_t not_after)
{
    enr_error err;
    if (commit(f->store, registration_id, ISSUER, serial, not_after, &err) != ENR_OK)
        fail_msg("commit %s %s: %s", registration_id, serial, err.message);
}

/* ---- schema ------------------------------------------------------------- */

static void test_schema_created_and_reopen_is_idempotent(void **state)
{
    fixture *f = *state;
    assert_string_equal(enr_store_backend(f->store), PG_URL != NULL ? "postgresql" : "sqlite");
    put_ca(f, "issuing", ENR_CA_ISSUING);
    reopen(f);
    reopen(f);
    enr_error err;
    enr_ca_record ca;
    assert_int_equal(enr_store_get_ca(f->store, "issuing", &ca, &err), ENR_OK);
    enr_ca_record_free(&ca);
    assert_int_equal(enr_store_integrity_check(f->store, &err), ENR_OK);
    /* One row per migration, applied once whatever the reopens. */
    assert_int_equal(store_count(f, "SELECT COUNT(*) FROM schema_version"), 9);
    assert_int_equal(store_count(f, "SELECT MAX(version) FROM schema_version"), 9);
    static const char *const TABLE_NAMES[] = {"ca", "credential_policy", "enrollment_group",
                                              "individual_enrollment", "registration", "certificate",
                                              "operation", "audit_event", "compromised_key", NULL};
    if (PG_URL != NULL) {
        /* No password or option of the URL in what the store says it is. */
        assert_non_null(strstr(enr_store_location(f->store), "postgresql://"));
        for (size_t i = 0; TABLE_NAMES[i] != NULL; i++) {
            char sql[160];
            snprintf(sql, sizeof sql, "SELECT COUNT(*) FROM information_schema.tables WHERE table_name = '%s'",
                     TABLE_NAMES[i]);
            if (store_count(f, sql) != 1)
                fail_msg("table %s missing", TABLE_NAMES[i]);
        }
        assert_int_equal(store_count(f, "SELECT COUNT(*) FROM pg_settings WHERE name = 'synchronous_commit' "
                                        "AND setting = 'off'"), 0);
        return;
    }

    sqlite3 *db = raw_db(f);
    sqlite3_stmt *st = NULL;
    assert_int_equal(sqlite3_prepare_v2(db, "PRAGMA journal_mode", -1, &st, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    assert_string_equal((const char *)sqlite3_column_text(st, 0), "wal");
    sqlite3_finalize(st);
    /* Every table the service needs. */
    static const char *const TABLES[] = {"ca", "credential_policy", "enrollment_group",
                                         "individual_enrollment", "registration", "certificate",
                                         "operation", "audit_event", "compromised_key", NULL};
    for (size_t i = 0; TABLES[i] != NULL; i++) {
        char sql[160];
        snprintf(sql, sizeof sql, "SELECT COUNT(*) FROM sqlite_master WHERE type='table' AND name='%s'",
                 TABLES[i]);
        if (raw_count(db, sql) != 1)
            fail_msg("table %s missing", TABLES[i]);
    }
    sqlite3_close(db);
}

static void test_newer_schema_refused(void **state)
{
    fixture *f = *state;
    enr_store_close(f->store);
    f->store = NULL;
    if (PG_URL != NULL) {
        pg_exec_raw("INSERT INTO schema_version VALUES (99, 0)");
    } else {
        sqlite3 *db = raw_db(f);
        assert_int_equal(sqlite3_exec(db, "INSERT INTO schema_version VALUES (99, 0)", NULL, NULL, NULL),
                         SQLITE_OK);
        sqlite3_close(db);
    }
    enr_error err;
    enr_store *store = NULL;
    assert_int_equal(enr_store_open(f->location, &store, &err), ENR_E_UNSUPPORTED);
    assert_null(store);
    assert_non_null(strstr(err.message, "schema version 99"));
    assert_non_null(strstr(err.message, "newer"));
    /* It names the database. */
    assert_non_null(strstr(err.message, PG_URL != NULL ? "postgresql://" : "enroll.db"));
}

static void test_open_refusals(void **state)
{
    fixture *f = *state;
    if (PG_URL != NULL) {
        enr_error err;
        enr_store *store = NULL;
        /* Nothing listens there: refused at once (not hung), as unavailable. */
        assert_int_equal(enr_store_open("postgresql://enroll:hunter2secret@127.0.0.1:1/enroll", &store, &err),
                         ENR_E_IO);
        assert_null(store);
        assert_null(strstr(err.message, "hunter2secret"));
        assert_non_null(strstr(err.message, "127.0.0.1"));
        assert_int_equal(enr_store_open("postgresql://[broken", &store, &err), ENR_E_USAGE);
        return;
    }
    enr_error err;
    enr_store *store = NULL;
    assert_int_equal(enr_store_open_sqlite("", &store, &err), ENR_E_USAGE);
    assert_int_equal(enr_store_open_sqlite("/nonexistent-enroll-dir/sub", &store, &err), ENR_E_IO);
    assert_non_null(strstr(err.message, "/nonexistent-enroll-dir/sub"));
    /* A data directory that does not exist yet is made, private. */
    char sub[128];
    snprintf(sub, sizeof sub, "%s/data", f->dir);
    assert_int_equal(enr_store_open_sqlite(sub, &store, &err), ENR_OK);
    struct stat st;
    assert_int_equal(stat(sub, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0700);
    enr_store_close(store);
    /* A file that is not a database is refused, not overwritten. */
    char junk_dir[128], junk[160];
    snprintf(junk_dir, sizeof junk_dir, "%s/junk", f->dir);
    assert_int_equal(mkdir(junk_dir, 0700), 0);
    snprintf(junk, sizeof junk, "%s/enroll.db", junk_dir);
    FILE *fp = fopen(junk, "w");
    assert_non_null(fp);
    for (int i = 0; i < 100; i++)
        fputs("this is not an SQLite database at all. ", fp);
    fclose(fp);
    assert_int_equal(enr_store_open_sqlite(junk_dir, &store, &err), ENR_E_IO);
    assert_non_null(strstr(err.message, "enroll.db"));
}

static void assert_mode_0600(const char *dir, const char *file)
{
    char path[160];
    snprintf(path, sizeof path, "%s/%s", dir, file);
    struct stat st;
    if (stat(path, &st) != 0)
        fail_msg("%s: %s", path, strerror(errno));
    if ((st.st_mode & 0777) != 0600)
        fail_msg("%s has mode %o, not 600", path, (unsigned)(st.st_mode & 0777));
}

static void test_database_files_are_private(void **state)
{
    fixture *f = *state;
    if (PG_URL != NULL)
        skip(); /* SQLite's files; PostgreSQL's are the server's */
    mode_t old = umask(0);
    char dir[128];
    snprintf(dir, sizeof dir, "%s/umask0", f->dir);
    enr_error err;
    enr_store *store = NULL;
    assert_int_equal(enr_store_open_sqlite(dir, &store, &err), ENR_OK);
    umask(old);
    enr_audit_event a = audit("test", "", "ok", 0, "a write makes the WAL");
    assert_int_equal(enr_store_record_audit(store, &a, &err), ENR_OK);
    assert_mode_0600(dir, "enroll.db");
    assert_mode_0600(dir, "enroll.db-wal");
    assert_mode_0600(dir, "enroll.db-shm");
    enr_store_close(store);

    /* A database left readable by others is made private again on open. */
    char path[160];
    snprintf(path, sizeof path, "%s/enroll.db", dir);
    assert_int_equal(chmod(path, 0644), 0);
    assert_int_equal(enr_store_open_sqlite(dir, &store, &err), ENR_OK);
    assert_mode_0600(dir, "enroll.db");
    enr_store_close(store);
}

/* ---- CAs and policies --------------------------------------------------- */

static void test_ca_records(void **state)
{
    fixture *f = *state;
    enr_error err;
    put_ca(f, "issuing", ENR_CA_ISSUING);
    put_ca(f, "bootstrap", ENR_CA_BOOTSTRAP);

    enr_ca_record ca = {0};
    assert_int_equal(enr_store_get_ca(f->store, "issuing", &ca, &err), ENR_OK);
    assert_int_equal(ca.role, ENR_CA_ISSUING);
    assert_int_equal(ca.certificate.len, f->ca_der_len);
    assert_memory_equal(ca.certificate.data, f->ca_der, f->ca_der_len);
    assert_string_equal(ca.key_ref, "pkcs11:token=ca;object=issuing");
    assert_null(ca.chain_pem);
    assert_true(ca.created_at > 0);
    enr_ca_record_free(&ca);

    /* Taken name; unknown name. */
    enr_ca_record dup = {.role = ENR_CA_BOOTSTRAP, .certificate = {f->ca_der, f->ca_der_len}};
    snprintf(dup.name, sizeof dup.name, "issuing");
    assert_int_equal(enr_store_create_ca(f->store, &dup, NULL, &err), ENR_E_EXISTS);
    assert_non_null(strstr(err.message, "'issuing' exists"));
    assert_int_equal(enr_store_get_ca(f->store, "nope", &ca, &err), ENR_E_NOTFOUND);

    /* Refusals before the database: a PIN in the key reference, no key for
     * an issuing CA, a key for a bootstrap CA, bytes that are no certificate. */
    enr_ca_record bad = {.role = ENR_CA_ISSUING, .certificate = {f->ca_der, f->ca_der_len}};
    snprintf(bad.name, sizeof bad.name, "bad");
    snprintf(bad.key_ref, sizeof bad.key_ref, "pkcs11:token=ca;object=k?pin-value=1234");
    assert_int_equal(enr_store_create_ca(f->store, &bad, NULL, &err), ENR_E_USAGE);
    assert_non_null(strstr(err.message, "pin-value"));
    assert_null(strstr(err.message, "1234"));
    bad.key_ref[0] = '\0';
    assert_int_equal(enr_store_create_ca(f->store, &bad, NULL, &err), ENR_E_USAGE);
    bad.role = ENR_CA_BOOTSTRAP;
    snprintf(bad.key_ref, sizeof bad.key_ref, "/etc/ca.key");
    assert_int_equal(enr_store_create_ca(f->store, &bad, NULL, &err), ENR_E_USAGE);
    bad.key_ref[0] = '\0';
    unsigned char junk[] = {0x30, 0x03, 0x02, 0x01, 0x01};
    bad.certificate = (enr_buf){junk, sizeof junk};
    assert_int_equal(enr_store_create_ca(f->store, &bad, NULL, &err), ENR_E_USAGE);
    assert_non_null(strstr(err.message, "DER X.509"));

    /* Proof of possession for the bootstrap CA. */
    enr_audit_event a = audit("ca.verify", "", "ok", 0, "bootstrap CA verified");
    assert_int_equal(enr_store_set_ca_verification(f->store, "bootstrap", "", true, &a, &err), ENR_OK);
    assert_int_equal(enr_store_get_ca(f->store, "bootstrap", &ca, &err), ENR_OK);
    assert_true(ca.verified);
    assert_string_equal(ca.verification_code, "");
    enr_ca_record_free(&ca);
    assert_int_equal(enr_store_set_ca_verification(f->store, "issuing", "abc", false, NULL, &err),
                     ENR_E_NOTFOUND);
    assert_int_equal(enr_store_set_ca_verification(f->store, "bootstrap", "", false, NULL, &err), ENR_E_USAGE);

    enr_ca_record_list list;
    assert_int_equal(enr_store_list_cas(f->store, &list, &err), ENR_OK);
    assert_int_equal(list.count, 2);
    assert_string_equal(list.items[0].name, "bootstrap");
    assert_string_equal(list.items[1].name, "issuing");
    enr_ca_record_list_free(&list);

    enr_audit_list events;
    assert_int_equal(enr_store_list_audit(f->store, NULL, &events, &err), ENR_OK);
    assert_int_equal(events.count, 1);
    assert_string_equal(events.items[0].kind, "ca.verify");
    enr_audit_list_free(&events);
}

static void test_credential_policies(void **state)
{
    fixture *f = *state;
    enr_error err;
    put_ca(f, "issuing", ENR_CA_ISSUING);
    put_policy(f, "cert-policy", "issuing");

    enr_credential_policy p;
    assert_int_equal(enr_store_get_policy(f->store, "cert-policy", &p, &err), ENR_OK);
    assert_string_equal(p.validity, "P30D");
    assert_string_equal(p.renewal_window, "P7D");
    assert_string_equal(p.ca_name, "issuing");
    assert_string_equal(p.key_types, "ec-p256,ec-p384");
    assert_int_equal(enr_store_get_policy(f->store, "other", &p, &err), ENR_E_NOTFOUND);

    enr_credential_policy bad = {0};
    snprintf(bad.name, sizeof bad.name, "cert-policy");
    snprintf(bad.validity, sizeof bad.validity, "P30D");
    snprintf(bad.renewal_window, sizeof bad.renewal_window, "P7D");
    snprintf(bad.ca_name, sizeof bad.ca_name, "issuing");
    snprintf(bad.key_types, sizeof bad.key_types, "ec-p256");
    assert_int_equal(enr_store_create_policy(f->store, &bad, NULL, &err), ENR_E_EXISTS);
    snprintf(bad.name, sizeof bad.name, "p2");
    snprintf(bad.ca_name, sizeof bad.ca_name, "missing-ca");
    assert_int_equal(enr_store_create_policy(f->store, &bad, NULL, &err), ENR_E_NOTFOUND);
    assert_non_null(strstr(err.message, "missing-ca"));
    snprintf(bad.ca_name, sizeof bad.ca_name, "issuing");
    snprintf(bad.validity, sizeof bad.validity, "30 days");
    assert_int_equal(enr_store_create_policy(f->store, &bad, NULL, &err), ENR_E_USAGE);
    assert_non_null(strstr(err.message, "policy 'p2'"));
    snprintf(bad.validity, sizeof bad.validity, "P7D");
    assert_int_equal(enr_store_create_policy(f->store, &bad, NULL, &err), ENR_E_USAGE);
    assert_non_null(strstr(err.message, "shorter than validity"));
    snprintf(bad.validity, sizeof bad.validity, "P1M");
    snprintf(bad.key_types, sizeof bad.key_types, "ec-p256,rsa-1024");
    assert_int_equal(enr_store_create_policy(f->store, &bad, NULL, &err), ENR_E_USAGE);
    snprintf(bad.key_types, sizeof bad.key_types, ",");
    assert_int_equal(enr_store_create_policy(f->store, &bad, NULL, &err), ENR_E_USAGE);
    snprintf(bad.key_types, sizeof bad.key_types, "rsa-3072");
    enr_audit_event a = audit("policy.create", "", "ok", 0, "p2");
    assert_int_equal(enr_store_create_policy(f->store, &bad, &a, &err), ENR_OK);

    enr_policy_list list;
    assert_int_equal(enr_store_list_policies(f->store, &list, &err), ENR_OK);
    assert_int_equal(list.count, 2);
    assert_string_equal(list.items[0].name, "cert-policy");
    assert_string_equal(list.items[1].name, "p2");
    assert_string_equal(list.items[1].validity, "P1M");
    enr_policy_list_free(&list);
}

/* ---- enrollments -------------------------------------------------------- */

/* A policy's URLs: stored and read back; anything OpenSSL's extension
 * syntax would read as more than one URL, or not http(s), is refused. */
static void test_policy_urls(void **state)
{
    fixture *f = *state;
    enr_error err;
    put_ca(f, "issuing", ENR_CA_ISSUING);
    enr_credential_policy p = {0};
    snprintf(p.name, sizeof p.name, "with-urls");
    snprintf(p.validity, sizeof p.validity, "P30D");
    snprintf(p.renewal_window, sizeof p.renewal_window, "P7D");
    snprintf(p.ca_name, sizeof p.ca_name, "issuing");
    snprintf(p.key_types, sizeof p.key_types, "ec-p256");
    snprintf(p.ocsp_url, sizeof p.ocsp_url, "https://enroll.example.com:8443/ocsp");
    snprintf(p.crl_url, sizeof p.crl_url, "http://crl.example.com/devices.crl");
    assert_int_equal(enr_store_create_policy(f->store, &p, NULL, &err), ENR_OK);
    enr_credential_policy got;
    assert_int_equal(enr_store_get_policy(f->store, "with-urls", &got, &err), ENR_OK);
    assert_string_equal(got.ocsp_url, "https://enroll.example.com:8443/ocsp");
    assert_string_equal(got.crl_url, "http://crl.example.com/devices.crl");
    static const char *const BAD[] = {"ftp://a.example/x", "http://a.example/x,OCSP;URI:http://b",
                                      "http://a.example/x y", "http://a.example/\x01", "example.com/ocsp", NULL};
    for (size_t i = 0; BAD[i] != NULL; i++) {
        snprintf(p.name, sizeof p.name, "bad-%zu", i);
        snprintf(p.ocsp_url, sizeof p.ocsp_url, "%s", BAD[i]);
        if (enr_store_create_policy(f->store, &p, NULL, &err) != ENR_E_USAGE)
            fail_msg("OCSP URL '%s' was taken", BAD[i]);
    }
    enr_credential_policy none;
    assert_int_equal(enr_store_get_policy(f->store, "bad-0", &none, &err), ENR_E_NOTFOUND);
}

static void test_enrollments(void **state)
{
    fixture *f = *state;
    enr_error err;
    put_ca(f, "issuing", ENR_CA_ISSUING);
    put_policy(f, "cert-policy", "issuing");

    enr_enrollment g = symmetric_enrollment(ENR_ENROLLMENT_GROUP, "Fleet-A", "cert-policy");
    enr_audit_event a = audit("enrollment.create", "", "ok", 0, "group fleet-a");
    assert_int_equal(enr_store_create_enrollment(f->store, &g, &a, &err), ENR_OK);
    assert_string_equal(g.id, "fleet-a"); /* ids compare case-insensitively */
    assert_true(g.etag[0] != '\0');
    assert_true(g.created_at > 0);

    enr_buf certs[2] = {{f->ca_der, f->ca_der_len}, {f->ca_der, f->ca_der_len}};
    enr_enrollment x = {.kind = ENR_ENROLLMENT_GROUP, .attestation = ENR_ATTEST_X509, .enabled = true,
                        .certificates = certs, .certificate_count = 2};
    snprintf(x.id, sizeof x.id, "x509-fleet");
    snprintf(x.assigned_hub, sizeof x.assigned_hub, "mqtt.example.net");
    assert_int_equal(enr_store_create_enrollment(f->store, &x, NULL, &err), ENR_OK);

    enr_enrollment d = symmetric_enrollment(ENR_ENROLLMENT_INDIVIDUAL, "Dev-001", "");
    d.secondary_key[0] = '\0';
    assert_int_equal(enr_store_create_enrollment(f->store, &d, NULL, &err), ENR_OK);

    enr_enrollment got;
    assert_int_equal(enr_store_get_enrollment(f->store, ENR_ENROLLMENT_GROUP, "FLEET-a", &got, &err), ENR_OK);
    assert_string_equal(got.id, "fleet-a");
    assert_int_equal(got.attestation, ENR_ATTEST_SYMMETRIC);
    assert_string_equal(got.primary_key, SECRET_KEY);
    assert_string_equal(got.secondary_key, SECOND_KEY);
    assert_string_equal(got.policy, "cert-policy");
    assert_string_equal(got.etag, g.etag);
    assert_true(got.enabled);
    assert_int_equal(got.certificate_count, 0);
    enr_enrollment_free(&got);

    assert_int_equal(enr_store_get_enrollment(f->store, ENR_ENROLLMENT_GROUP, "x509-fleet", &got, &err),
                     ENR_OK);
    assert_int_equal(got.attestation, ENR_ATTEST_X509);
    assert_int_equal(got.certificate_count, 2);
    assert_int_equal(got.certificates[1].len, f->ca_der_len);
    assert_memory_equal(got.certificates[1].data, f->ca_der, f->ca_der_len);
    assert_string_equal(got.primary_key, "");
    assert_string_equal(got.policy, "");
    enr_enrollment_free(&got);

    assert_int_equal(enr_store_get_enrollment(f->store, ENR_ENROLLMENT_INDIVIDUAL, "DEV-001", &got, &err),
                     ENR_OK);
    assert_string_equal(got.id, "dev-001");
    assert_string_equal(got.secondary_key, "");
    enr_enrollment_free(&got);
    /* A group and an individual enrollment live in different tables. */
    assert_int_equal(enr_store_get_enrollment(f->store, ENR_ENROLLMENT_GROUP, "dev-001", &got, &err),
                     ENR_E_NOTFOUND);
    assert_non_null(strstr(err.message, "dev-001"));

    /* Disable and enable again: a new etag each time. */
    char etag[ENR_STORE_ETAG_MAX + 1];
    snprintf(etag, sizeof etag, "%s", g.etag);
    assert_int_equal(
        enr_store_set_enrollment_enabled(f->store, ENR_ENROLLMENT_GROUP, "fleet-a", false, NULL, &err), ENR_OK);
    assert_int_equal(enr_store_get_enrollment(f->store, ENR_ENROLLMENT_GROUP, "fleet-a", &got, &err), ENR_OK);
    assert_false(got.enabled);
    assert_string_not_equal(got.etag, etag);
    enr_enrollment_free(&got);
    assert_int_equal(
        enr_store_set_enrollment_enabled(f->store, ENR_ENROLLMENT_INDIVIDUAL, "nobody", false, NULL, &err),
        ENR_E_NOTFOUND);

    enr_enrollment_list list;
    assert_int_equal(enr_store_list_enrollments(f->store, ENR_ENROLLMENT_GROUP, &list, &err), ENR_OK);
    assert_int_equal(list.count, 2);
    assert_int_equal(list.items[0].kind, ENR_ENROLLMENT_GROUP);
    size_t x509_at = strcmp(list.items[0].id, "x509-fleet") == 0 ? 0 : 1;
    assert_string_equal(list.items[x509_at].id, "x509-fleet");
    assert_int_equal(list.items[x509_at].certificate_count, 2);
    assert_false(list.items[1 - x509_at].enabled);
    enr_enrollment_list_free(&list);
    assert_int_equal(enr_store_list_enrollments(f->store, ENR_ENROLLMENT_INDIVIDUAL, &list, &err), ENR_OK);
    assert_int_equal(list.count, 1);
    enr_enrollment_list_free(&list);

    /* Wrong attestation shapes, unknown policy, taken id. */
    enr_enrollment bad = symmetric_enrollment(ENR_ENROLLMENT_GROUP, "g2", "cert-policy");
    bad.certificates = certs;
    bad.certificate_count = 1;
    assert_int_equal(enr_store_create_enrollment(f->store, &bad, NULL, &err), ENR_E_USAGE);
    bad = symmetric_enrollment(ENR_ENROLLMENT_GROUP, "g2", "cert-policy");
    bad.attestation = ENR_ATTEST_X509;
    bad.certificates = certs;
    bad.certificate_count = 1;
    assert_int_equal(enr_store_create_enrollment(f->store, &bad, NULL, &err), ENR_E_USAGE);
    bad.primary_key[0] = bad.secondary_key[0] = '\0';
    bad.certificate_count = 0;
    assert_int_equal(enr_store_create_enrollment(f->store, &bad, NULL, &err), ENR_E_USAGE);
    bad = symmetric_enrollment(ENR_ENROLLMENT_GROUP, "g2", "no-such-policy");
    assert_int_equal(enr_store_create_enrollment(f->store, &bad, NULL, &err), ENR_E_NOTFOUND);
    assert_non_null(strstr(err.message, "no-such-policy"));
    bad = symmetric_enrollment(ENR_ENROLLMENT_GROUP, "FLEET-A", "");
    assert_int_equal(enr_store_create_enrollment(f->store, &bad, NULL, &err), ENR_E_EXISTS);
    bad = symmetric_enrollment(ENR_ENROLLMENT_GROUP, "bad id", "");
    assert_int_equal(enr_store_create_enrollment(f->store, &bad, NULL, &err), ENR_E_USAGE);
    bad = symmetric_enrollment(ENR_ENROLLMENT_GROUP, "g3", "");
    bad.assigned_hub[0] = '\0';
    assert_int_equal(enr_store_create_enrollment(f->store, &bad, NULL, &err), ENR_E_USAGE);

    /* Failed creations left nothing behind; the one audit event is there. */
    assert_int_equal(enr_store_list_enrollments(f->store, ENR_ENROLLMENT_GROUP, &list, &err), ENR_OK);
    assert_int_equal(list.count, 2);
    enr_enrollment_list_free(&list);
    enr_audit_list events;
    assert_int_equal(enr_store_list_audit(f->store, NULL, &events, &err), ENR_OK);
    assert_int_equal(events.count, 1);
    enr_audit_list_free(&events);
}

/* ---- registrations ------------------------------------------------------ */

static void test_commit_and_lookups(void **state)
{
    fixture *f = *state;
    enr_error err;
    time_t now = time(NULL);

    enr_registration r = registration("Dev-001", "Fleet");
    r.created_at = 1000;
    r.updated_at = 1000;
    enr_certificate c = certificate(ISSUER, "0a1b2c", now + 86400);
    snprintf(c.policy, sizeof c.policy, "cert-policy");
    enr_operation op = operation("op-1");
    op.result_json = "{\"status\":\"assigned\"}";
    enr_audit_event a = audit("register", "Dev-001", "ok", 0, "certificate issued");
    assert_int_equal(enr_store_commit_registration(f->store, &r, &c, &op, &a, &err), ENR_OK);

    enr_registration got;
    assert_int_equal(enr_store_get_registration(f->store, "DEV-001", &got, &err), ENR_OK);
    assert_string_equal(got.registration_id, "dev-001");
    assert_string_equal(got.enrollment_id, "fleet");
    assert_int_equal(got.enrollment_kind, ENR_ENROLLMENT_GROUP);
    assert_string_equal(got.status, "assigned");
    assert_string_equal(got.substatus, "initialAssignment");
    assert_string_equal(got.device_id, "Dev-001");
    assert_string_equal(got.etag, "etag-1");
    assert_int_equal(got.created_at, 1000);
    assert_string_equal(got.last_certificate_issuer, ISSUER);
    assert_string_equal(got.last_certificate_serial, "0A1B2C");

    enr_certificate cert;
    assert_int_equal(enr_store_get_certificate(f->store, ISSUER, "0A1B2C", &cert, &err), ENR_OK);
    assert_string_equal(cert.registration_id, "dev-001");
    assert_string_equal(cert.policy, "cert-policy");
    assert_string_equal(cert.subject, "CN=device");
    assert_string_equal(cert.spki_sha256, SPKI);
    assert_int_equal(cert.not_after, now + 86400);
    assert_int_equal(cert.der.len, sizeof FAKE_DER);
    assert_memory_equal(cert.der.data, FAKE_DER, sizeof FAKE_DER);
    assert_false(cert.revoked);
    assert_true(cert.id > 0);
    enr_certificate_free(&cert);
    /* Any spelling of the same integer finds it. */
    assert_int_equal(enr_store_get_certificate(f->store, ISSUER, "000a1b2c", &cert, &err), ENR_OK);
    enr_certificate_free(&cert);
    assert_int_equal(enr_store_get_certificate(f->store, "CN=Other", "0A1B2C", &cert, &err), ENR_E_NOTFOUND);

    enr_operation got_op;
    assert_int_equal(enr_store_get_operation(f->store, "op-1", &got_op, &err), ENR_OK);
    assert_string_equal(got_op.registration_id, "dev-001");
    assert_string_equal(got_op.status, "assigned");
    assert_string_equal(got_op.result_json, "{\"status\":\"assigned\"}");
    enr_operation_free(&got_op);
    assert_int_equal(enr_store_get_operation(f->store, "op-2", &got_op, &err), ENR_E_NOTFOUND);

    /* Registering again (classic, no certificate): the registration is
     * updated, keeps its creation time and its last certificate. */
    r = registration("dev-001", "fleet");
    snprintf(r.substatus, sizeof r.substatus, "reprovisionedToInitialAssignment");
    snprintf(r.etag, sizeof r.etag, "etag-2");
    r.created_at = 2000;
    op = operation("op-2");
    assert_int_equal(enr_store_commit_registration(f->store, &r, NULL, &op, NULL, &err), ENR_OK);
    assert_int_equal(enr_store_get_registration(f->store, "dev-001", &got, &err), ENR_OK);
    assert_int_equal(got.created_at, 1000);
    assert_string_equal(got.etag, "etag-2");
    assert_string_equal(got.substatus, "reprovisionedToInitialAssignment");
    assert_string_equal(got.last_certificate_serial, "0A1B2C");

    /* A certificate or operation of another registration is refused. */
    r = registration("dev-001", "fleet");
    c = certificate(ISSUER, "0a1b2d", now + 86400);
    snprintf(c.registration_id, sizeof c.registration_id, "dev-002");
    op = operation("op-3");
    assert_int_equal(enr_store_commit_registration(f->store, &r, &c, &op, NULL, &err), ENR_E_USAGE);
    c.registration_id[0] = '\0';
    snprintf(op.registration_id, sizeof op.registration_id, "dev-002");
    assert_int_equal(enr_store_commit_registration(f->store, &r, &c, &op, NULL, &err), ENR_E_USAGE);
    /* Bad fields. */
    op.registration_id[0] = '\0';
    snprintf(r.status, sizeof r.status, "happy");
    assert_int_equal(enr_store_commit_registration(f->store, &r, &c, &op, NULL, &err), ENR_E_USAGE);
    r = registration("dev-001", "fleet");
    r.device_id[0] = '\0';
    assert_int_equal(enr_store_commit_registration(f->store, &r, &c, &op, NULL, &err), ENR_E_USAGE);
    assert_non_null(strstr(err.message, "go together"));
    r = registration("dev-001", "fleet");
    snprintf(c.serial, sizeof c.serial, "xyz");
    assert_int_equal(enr_store_commit_registration(f->store, &r, &c, &op, NULL, &err), ENR_E_USAGE);
    c = certificate(ISSUER, "0a1b2d", now + 86400);
    c.not_before = c.not_after + 1;
    assert_int_equal(enr_store_commit_registration(f->store, &r, &c, &op, NULL, &err), ENR_E_USAGE);
    c = certificate(ISSUER, "0a1b2d", now + 86400);
    c.spki_sha256[3] = 'z';
    assert_int_equal(enr_store_commit_registration(f->store, &r, &c, &op, NULL, &err), ENR_E_USAGE);
    assert_int_equal(enr_store_get_operation(f->store, "op-3", &got_op, &err), ENR_E_NOTFOUND);
}

static void test_commit_is_all_or_nothing(void **state)
{
    fixture *f = *state;
    enr_error err;
    time_t now = time(NULL);
    commit_ok(f, "dev-a", "7F01", now + 86400);

    /* A second registration whose certificate repeats the serial: the whole
     * commit fails with ENR_E_EXISTS (the CA then draws a new serial), and
     * neither its registration, nor its operation, nor its audit event is
     * written. */
    enr_registration r = registration("dev-b", "fleet");
    enr_certificate c = certificate(ISSUER, "7f01", now + 86400);
    enr_operation op = operation("op-b");
    enr_audit_event a = audit("register", "dev-b", "ok", 0, "issued to dev-b");
    assert_int_equal(enr_store_commit_registration(f->store, &r, &c, &op, &a, &err), ENR_E_EXISTS);
    assert_non_null(strstr(err.message, "7F01"));
    enr_registration got;
    assert_int_equal(enr_store_get_registration(f->store, "dev-b", &got, &err), ENR_E_NOTFOUND);
    enr_operation got_op;
    assert_int_equal(enr_store_get_operation(f->store, "op-b", &got_op, &err), ENR_E_NOTFOUND);
    enr_audit_filter only_b = {.registration_id = "dev-b"};
    enr_audit_list events;
    assert_int_equal(enr_store_list_audit(f->store, &only_b, &events, &err), ENR_OK);
    assert_int_equal(events.count, 0);
    enr_audit_list_free(&events);

    /* An update of an existing registration is rolled back too. */
    r = registration("dev-a", "fleet");
    snprintf(r.etag, sizeof r.etag, "changed");
    op = operation("op-a2");
    assert_int_equal(enr_store_commit_registration(f->store, &r, &c, &op, &a, &err), ENR_E_EXISTS);
    assert_int_equal(enr_store_get_registration(f->store, "dev-a", &got, &err), ENR_OK);
    assert_string_equal(got.etag, "etag-1");

    /* A repeated operation id fails the commit the same way. */
    r = registration("dev-b", "fleet");
    c = certificate(ISSUER, "7F02", now + 86400);
    op = operation("op-dev-a-7F01");
    assert_int_equal(enr_store_commit_registration(f->store, &r, &c, &op, &a, &err), ENR_E_EXISTS);
    enr_certificate cert;
    assert_int_equal(enr_store_get_certificate(f->store, ISSUER, "7F02", &cert, &err), ENR_E_NOTFOUND);

    /* The same serial from another issuer is another certificate. */
    assert_int_equal(commit(f->store, "dev-b", "CN=Other Issuing CA", "7F01", now + 86400, &err), ENR_OK);
    enr_certificate_list all;
    assert_int_equal(enr_store_list_certificates(f->store, NULL, &all, &err), ENR_OK);
    assert_int_equal(all.count, 2);
    enr_certificate_list_free(&all);
}

/* Group commit: one transaction, each item on its own. */
static void test_group_commit(void **state)
{
    fixture *f = *state;
    enr_error err;
    time_t now = time(NULL);
    commit_ok(f, "dev-a", "7F01", now + 86400);
    enr_registration r[4] = {registration("dev-b", "fleet"), registration("dev-c", "fleet"),
                             registration("dev-d", "fleet"), registration("dev-e", "fleet")};
    enr_certificate c[4] = {certificate(ISSUER, "7F02", now + 86400), certificate(ISSUER, "7F01", now + 86400),
                            certificate(ISSUER, "7F03", now + 86400), certificate(ISSUER, "7F04", now + 86400)};
    enr_operation op[4] = {operation("op-b"), operation("op-c"), operation("op-d"), operation("op-e")};
    enr_audit_event a[4] = {audit("register", "dev-b", "ok", 0, "b"), audit("register", "dev-c", "ok", 0, "c"),
                            audit("register", "dev-d", "ok", 0, "d"), audit("register", "dev-e", "ok", 0, "e")};
    enr_registration_commit items[4];
    for (int i = 0; i < 4; i++)
        items[i] = (enr_registration_commit){.registration = &r[i], .certificate = &c[i], .operation = &op[i],
                                             .audit = &a[i], .result = ENR_E_INTERNAL};
    items[3].certificate = NULL;          /* a classic registration among them */
    snprintf(r[2].registration_id, sizeof r[2].registration_id, "bad id!"); /* refused before the backend */
    assert_int_equal(enr_store_commit_registrations(f->store, items, 4, &err), ENR_OK);
    assert_int_equal(items[0].result, ENR_OK);
    assert_int_equal(items[1].result, ENR_E_EXISTS); /* dev-a holds 7F01 */
    assert_non_null(strstr(items[1].error.message, "7F01"));
    assert_int_equal(items[2].result, ENR_E_USAGE);
    assert_int_equal(items[3].result, ENR_OK);
    enr_registration got;
    assert_int_equal(enr_store_get_registration(f->store, "dev-b", &got, &err), ENR_OK);
    assert_string_equal(got.last_certificate_serial, "7F02");
    assert_int_equal(enr_store_get_registration(f->store, "dev-e", &got, &err), ENR_OK);
    /* The failed item left nothing behind: no registration, operation or audit event. */
    assert_int_equal(enr_store_get_registration(f->store, "dev-c", &got, &err), ENR_E_NOTFOUND);
    enr_operation got_op = {0};
    assert_int_equal(enr_store_get_operation(f->store, "op-c", &got_op, &err), ENR_E_NOTFOUND);
    enr_audit_filter only_c = {.registration_id = "dev-c"};
    enr_audit_list events;
    assert_int_equal(enr_store_list_audit(f->store, &only_c, &events, &err), ENR_OK);
    assert_int_equal(events.count, 0);
    enr_audit_list_free(&events);
    assert_int_equal(enr_store_get_operation(f->store, "op-e", &got_op, &err), ENR_OK);
    enr_operation_free(&got_op);
    enr_certificate_list all;
    assert_int_equal(enr_store_list_certificates(f->store, NULL, &all, &err), ENR_OK);
    assert_int_equal(all.count, 2);
    enr_certificate_list_free(&all);
    /* An operator disabled dev-b meanwhile: its next commit writes nothing. */
    assert_int_equal(enr_store_set_registration_enabled(f->store, "dev-b", false, NULL, &err), ENR_OK);
    enr_registration again = registration("dev-b", "fleet");
    enr_certificate again_cert = certificate(ISSUER, "7F09", now + 86400);
    enr_operation again_op = operation("op-b2");
    enr_registration_commit one = {.registration = &again, .certificate = &again_cert, .operation = &again_op,
                                   .result = ENR_E_INTERNAL};
    assert_int_equal(enr_store_commit_registrations(f->store, &one, 1, &err), ENR_OK);
    assert_int_equal(one.result, ENR_E_POLICY);
    assert_int_equal(one.error.reason, ENR_R_REGISTRATION_DISABLED);
    assert_int_equal(enr_store_get_registration(f->store, "dev-b", &got, &err), ENR_OK);
    assert_string_equal(got.status, "disabled");
    assert_string_equal(got.last_certificate_serial, "7F02");
    assert_int_equal(enr_store_get_operation(f->store, "op-b2", &got_op, &err), ENR_E_NOTFOUND);
    enr_certificate none;
    assert_int_equal(enr_store_get_certificate(f->store, ISSUER, "7F09", &none, &err), ENR_E_NOTFOUND);
    assert_int_equal(enr_store_commit_registration(f->store, &again, &again_cert, &again_op, NULL, &err), ENR_E_POLICY);
    /* An empty batch is fine; a missing array is not. */
    assert_int_equal(enr_store_commit_registrations(f->store, NULL, 0, &err), ENR_OK);
    assert_int_equal(enr_store_commit_registrations(f->store, NULL, 2, &err), ENR_E_USAGE);
}

/* One batch, judged as if its items were committed one after another
 * (PostgreSQL decides the whole batch in one query, SQLite item by item):
 * a renewal of a device registered earlier in the batch, a serial taken
 * earlier in the batch, a registration bound to its enrollment by an
 * earlier item, a classic registration keeping the certificate before it. */
static void test_group_commit_within_one_batch(void **state)
{
    fixture *f = *state;
    enr_error err;
    time_t now = time(NULL);
    enum { N = 6 };
    enr_registration r[N] = {registration("dev-x", "fleet"), registration("dev-x", "fleet"),
                             registration("dev-y", "fleet"), registration("dev-x", "other"),
                             registration("dev-z", "fleet"), registration("dev-x", "fleet")};
    enr_certificate c[N] = {certificate(ISSUER, "8A01", now + 86400), certificate(ISSUER, "8A02", now + 86400),
                            certificate(ISSUER, "8A02", now + 86400), certificate(ISSUER, "8A03", now + 86400),
                            certificate(ISSUER, "8A04", now + 86400), certificate(ISSUER, "8A05", now + 86400)};
    enr_operation op[N] = {operation("op-x1"), operation("op-x2"), operation("op-y1"),
                           operation("op-x3"), operation("op-z1"), operation("op-x4")};
    enr_audit_event a[N] = {audit("register", "dev-x", "ok", 0, "x1"), audit("register", "dev-x", "ok", 0, "x2"),
                            audit("register", "dev-y", "ok", 0, "y1"), audit("register", "dev-x", "ok", 0, "x3"),
                            audit("register", "dev-z", "ok", 0, "z1"), audit("register", "dev-x", "ok", 0, "x4")};
    enr_registration_commit items[N];
    for (int i = 0; i < N; i++)
        items[i] = (enr_registration_commit){.registration = &r[i], .certificate = &c[i], .operation = &op[i],
                                             .audit = &a[i], .result = ENR_E_INTERNAL};
    items[4].certificate = NULL; /* classic registrations */
    items[5].certificate = NULL;
    assert_int_equal(enr_store_commit_registrations(f->store, items, N, &err), ENR_OK);
    assert_int_equal(items[0].result, ENR_OK);
    assert_int_equal(items[1].result, ENR_OK);
    assert_int_equal(items[2].result, ENR_E_EXISTS);
    assert_int_equal(items[3].result, ENR_E_POLICY);
    assert_int_equal(items[3].error.reason, ENR_R_ENROLLMENT_MISMATCH);
    assert_int_equal(items[4].result, ENR_OK);
    assert_int_equal(items[5].result, ENR_OK);
    /* An operation id the store holds already: that item alone is refused. */
    enr_registration again[2] = {registration("dev-w", "fleet"), registration("dev-v", "fleet")};
    enr_operation again_op[2] = {operation("op-x1"), operation("op-v1")};
    enr_registration_commit two[2];
    for (int i = 0; i < 2; i++)
        two[i] = (enr_registration_commit){.registration = &again[i], .operation = &again_op[i],
                                           .result = ENR_E_INTERNAL};
    assert_int_equal(enr_store_commit_registrations(f->store, two, 2, &err), ENR_OK);
    assert_int_equal(two[0].result, ENR_E_EXISTS);
    assert_int_equal(two[1].result, ENR_OK);
    enr_registration got;
    assert_int_equal(enr_store_get_registration(f->store, "dev-w", &got, &err), ENR_E_NOTFOUND);
    assert_int_equal(enr_store_get_registration(f->store, "dev-v", &got, &err), ENR_OK);
    assert_int_equal(enr_store_get_registration(f->store, "dev-x", &got, &err), ENR_OK);
    assert_string_equal(got.enrollment_id, "fleet");
    assert_string_equal(got.last_certificate_serial, "8A02");
    assert_int_equal(enr_store_get_registration(f->store, "dev-y", &got, &err), ENR_E_NOTFOUND);
    assert_int_equal(enr_store_get_registration(f->store, "dev-z", &got, &err), ENR_OK);
    /* A batch of one (committed without a savepoint) that fails after its
     * first write leaves nothing either, and the next batch commits. */
    enr_registration lone = registration("dev-u", "fleet");
    enr_operation lone_taken = operation("op-x1"), lone_free = operation("op-u1");
    enr_audit_event lone_audit = audit("register", "dev-u", "ok", 0, "u1");
    enr_registration_commit alone = {.registration = &lone, .operation = &lone_taken, .audit = &lone_audit,
                                     .result = ENR_E_INTERNAL};
    assert_int_equal(enr_store_commit_registrations(f->store, &alone, 1, &err), ENR_OK);
    assert_int_equal(alone.result, ENR_E_EXISTS);
    assert_int_equal(enr_store_get_registration(f->store, "dev-u", &got, &err), ENR_E_NOTFOUND);
    enr_audit_filter only_u = {.registration_id = "dev-u"};
    enr_audit_list u_events;
    assert_int_equal(enr_store_list_audit(f->store, &only_u, &u_events, &err), ENR_OK);
    assert_int_equal(u_events.count, 0);
    enr_audit_list_free(&u_events);
    alone = (enr_registration_commit){.registration = &lone, .operation = &lone_free, .audit = &lone_audit,
                                      .result = ENR_E_INTERNAL};
    assert_int_equal(enr_store_commit_registrations(f->store, &alone, 1, &err), ENR_OK);
    assert_int_equal(alone.result, ENR_OK);
    assert_int_equal(enr_store_get_registration(f->store, "dev-u", &got, &err), ENR_OK);
    enr_certificate_filter of_x = {.registration_id = "dev-x"};
    enr_certificate_list certs;
    assert_int_equal(enr_store_list_certificates(f->store, &of_x, &certs, &err), ENR_OK);
    assert_int_equal(certs.count, 2);
    assert_string_equal(certs.items[0].serial, "8A01");
    assert_string_equal(certs.items[1].serial, "8A02");
    enr_certificate_list_free(&certs);
    enr_operation got_op = {0};
    assert_int_equal(enr_store_get_operation(f->store, "op-x3", &got_op, &err), ENR_E_NOTFOUND);
    assert_int_equal(enr_store_get_operation(f->store, "op-y1", &got_op, &err), ENR_E_NOTFOUND);
    assert_int_equal(enr_store_get_operation(f->store, "op-x4", &got_op, &err), ENR_OK);
    enr_operation_free(&got_op);
    enr_audit_filter only_x = {.registration_id = "dev-x"};
    enr_audit_list events;
    assert_int_equal(enr_store_list_audit(f->store, &only_x, &events, &err), ENR_OK);
    assert_int_equal(events.count, 3);
    assert_string_equal(events.items[0].detail, "x1");
    assert_string_equal(events.items[2].detail, "x4");
    enr_audit_list_free(&events);
}

/* Where SQLite puts temporary files: set in main, before SQLite reads it. */
static char sqlite_tmpdir[] = "/tmp/enroll-test-store-tmp-XXXXXX";

/* Group commits keep their statement journals in memory (temp_store=MEMORY):
 * with SQLite's default, a journal outgrowing 64 KiB in a batch went to a
 * temporary file, and every page each later item changed was written there
 * too. Batches of the service's shape (random ids and serials, so each item
 * changes pages of its own) create no file where SQLite keeps them. */
static void test_group_commit_writes_no_temporary_file(void **state)
{
    fixture *f = *state;
    if (PG_URL != NULL)
        return; /* a SQLite matter */
    int watch = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
    assert_true(watch >= 0);
    assert_true(inotify_add_watch(watch, sqlite_tmpdir, IN_CREATE) >= 0);
    /* The watch sees what SQLite creates there: with the default temp_store,
     * a savepoint in WAL mode whose journal outgrows 64 KiB spills to a file. */
    char path[160];
    snprintf(path, sizeof path, "%s/control.db", f->dir);
    sqlite3 *db = NULL;
    assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
    assert_int_equal(sqlite3_exec(db, "PRAGMA journal_mode=WAL; CREATE TABLE t (b BLOB); WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL "
                                      "SELECT i + 1 FROM n WHERE i < 64) INSERT INTO t SELECT zeroblob(3000) FROM n; "
                                      "BEGIN; SAVEPOINT s; UPDATE t SET b = randomblob(3000); RELEASE s; COMMIT;",
                                 NULL, NULL, NULL),
                     SQLITE_OK);
    sqlite3_close(db);
    char events[4096];
    assert_true(read(watch, events, sizeof events) > 0);

    time_t now = time(NULL);
    enum { BATCHES = 30, N = 64 };
    static enr_registration r[N];
    static enr_certificate c[N];
    static enr_operation op[N];
    static enr_audit_event a[N];
    enr_registration_commit items[N];
    enr_error err;
    for (int b = 0; b < BATCHES; b++) {
        for (int i = 0; i < N; i++) {
            unsigned char rnd[8];
            char hex[17], id[40], serial[24], opid[40];
            assert_int_equal(RAND_bytes(rnd, sizeof rnd), 1);
            for (int k = 0; k < 8; k++)
                snprintf(hex + 2 * k, 3, "%02x", rnd[k]);
            snprintf(id, sizeof id, "dev-%s", hex);
            snprintf(serial, sizeof serial, "5%s", hex);
            snprintf(opid, sizeof opid, "op-%04d-%02d", b, i);
            r[i] = registration(id, "fleet");
            c[i] = certificate(ISSUER, serial, now + 86400);
            op[i] = operation(opid);
            a[i] = audit("register", id, "ok", 0, opid);
            items[i] = (enr_registration_commit){.registration = &r[i], .certificate = &c[i],
                                                 .operation = &op[i], .audit = &a[i], .result = ENR_E_INTERNAL};
        }
        assert_int_equal(enr_store_commit_registrations(f->store, items, N, &err), ENR_OK);
        for (int i = 0; i < N; i++)
            assert_int_equal(items[i].result, ENR_OK);
    }
    ssize_t got = read(watch, events, sizeof events);
    if (got > 0)
        fail_msg("the group commits created a temporary file in %s", sqlite_tmpdir);
    assert_true(got < 0 && errno == EAGAIN);
    close(watch);
    assert_int_equal(store_count(f, "SELECT COUNT(*) FROM registration"), BATCHES * N);
}

/* What attestation saw is checked again inside the group commit: the
 * enrollment still enabled, the operational certificate presented still
 * unrevoked (and still there). */
static void test_group_commit_rechecks_the_credential(void **state)
{
    fixture *f = *state;
    enr_error err;
    time_t now = time(NULL);
    put_ca(f, "issuing", ENR_CA_ISSUING);
    put_policy(f, "cert-policy", "issuing");
    enr_enrollment g = symmetric_enrollment(ENR_ENROLLMENT_GROUP, "fleet", "cert-policy");
    assert_int_equal(enr_store_create_enrollment(f->store, &g, NULL, &err), ENR_OK);
    commit_ok(f, "dev-a", "7F01", now + 86400); /* dev-a's operational certificate */

    enr_registration r = registration("dev-a", "fleet");
    enr_certificate c = certificate(ISSUER, "7F02", now + 86400);
    enr_operation op = operation("op-renew-1");
    enr_registration_commit item = {.registration = &r, .certificate = &c, .operation = &op,
                                    .credential_issuer = ISSUER, .credential_serial = "7F01",
                                    .require_enrollment_enabled = true};
    assert_int_equal(enr_store_commit_registrations(f->store, &item, 1, &err), ENR_OK);
    assert_int_equal(item.result, ENR_OK); /* all still as attestation saw it */

    /* The credential revoked while the renewal was in flight. */
    assert_int_equal(enr_store_revoke_certificate(f->store, ISSUER, "7F02", 1, 0, NULL, &err), ENR_OK);
    c = certificate(ISSUER, "7F03", now + 86400);
    op = operation("op-renew-2");
    item = (enr_registration_commit){.registration = &r, .certificate = &c, .operation = &op,
                                     .credential_issuer = ISSUER, .credential_serial = "7F02",
                                     .require_enrollment_enabled = true};
    assert_int_equal(enr_store_commit_registrations(f->store, &item, 1, &err), ENR_OK);
    assert_int_equal(item.result, ENR_E_POLICY);
    assert_int_equal(item.error.reason, ENR_R_CREDENTIAL_REVOKED);
    enr_certificate got;
    assert_int_equal(enr_store_get_certificate(f->store, ISSUER, "7F03", &got, &err), ENR_E_NOTFOUND);

    /* A credential the store does not hold. */
    item.credential_serial = "7FFF";
    assert_int_equal(enr_store_commit_registrations(f->store, &item, 1, &err), ENR_OK);
    assert_int_equal(item.result, ENR_E_POLICY);

    /* The enrollment disabled meanwhile (no certificate credential: SAS). */
    assert_int_equal(enr_store_set_enrollment_enabled(f->store, ENR_ENROLLMENT_GROUP, "fleet", false, NULL, &err),
                     ENR_OK);
    item = (enr_registration_commit){.registration = &r, .certificate = &c, .operation = &op,
                                     .require_enrollment_enabled = true};
    assert_int_equal(enr_store_commit_registrations(f->store, &item, 1, &err), ENR_OK);
    assert_int_equal(item.result, ENR_E_POLICY);
    assert_int_equal(item.error.reason, ENR_R_ENROLLMENT_DISABLED);
    assert_non_null(strstr(item.error.message, "enrollment 'fleet' was disabled"));
    assert_int_equal(enr_store_get_certificate(f->store, ISSUER, "7F03", &got, &err), ENR_E_NOTFOUND);
    enr_operation got_op;
    assert_int_equal(enr_store_get_operation(f->store, "op-renew-2", &got_op, &err), ENR_E_NOTFOUND);
}

static enr_certificate certificate_with_key(const char *serial, time_t not_after, char spki_digit)
{
    enr_certificate c = certificate(ISSUER, serial, not_after);
    memset(c.spki_sha256, spki_digit, ENR_STORE_SPKI_HEX);
    c.spki_sha256[ENR_STORE_SPKI_HEX] = '\0';
    return c;
}

static enr_code commit_one(fixture *f, enr_registration *r, enr_certificate *c, const char *op_id,
                           enr_registration_commit *item)
{
    enr_error err;
    static enr_operation op;
    op = operation(op_id);
    *item = (enr_registration_commit){.registration = r, .certificate = c, .operation = &op,
                                      .require_enrollment_enabled = true, .result = ENR_E_INTERNAL};
    assert_int_equal(enr_store_commit_registrations(f->store, item, 1, &err), ENR_OK);
    return item->result;
}

/* A key revoked for keyCompromise is blocked for good, by every path:
 * revoking one certificate, revoking a registration, or recording a
 * revocation made elsewhere; other reasons block nothing. */
static void test_compromised_keys_are_blocked(void **state)
{
    fixture *f = *state;
    enr_error err;
    time_t now = time(NULL);
    put_ca(f, "issuing", ENR_CA_ISSUING);
    put_policy(f, "cert-policy", "issuing");
    enr_enrollment g = symmetric_enrollment(ENR_ENROLLMENT_GROUP, "fleet", "cert-policy");
    assert_int_equal(enr_store_create_enrollment(f->store, &g, NULL, &err), ENR_OK);
    enr_registration r = registration("dev-a", "fleet");
    enr_registration_commit item;
    enr_certificate a1 = certificate_with_key("A1", now + 86400, 'a');
    assert_int_equal(commit_one(f, &r, &a1, "op-1", &item), ENR_OK);
    char spki_a[ENR_STORE_SPKI_HEX + 1];
    snprintf(spki_a, sizeof spki_a, "%s", a1.spki_sha256);
    bool blocked = true;
    assert_int_equal(enr_store_key_compromised(f->store, spki_a, &blocked, &err), ENR_OK);
    assert_false(blocked);
    /* superseded (4) blocks nothing ... */
    assert_int_equal(enr_store_revoke_certificate(f->store, ISSUER, "A1", 4, 0, NULL, &err), ENR_OK);
    assert_int_equal(enr_store_key_compromised(f->store, spki_a, &blocked, &err), ENR_OK);
    assert_false(blocked);
    enr_certificate a2 = certificate_with_key("A2", now + 86400, 'a');
    assert_int_equal(commit_one(f, &r, &a2, "op-2", &item), ENR_OK);
    /* ... keyCompromise (1) does, for any registration's request. */
    assert_int_equal(enr_store_revoke_certificate(f->store, ISSUER, "A2", 1, 0, NULL, &err), ENR_OK);
    assert_int_equal(enr_store_key_compromised(f->store, spki_a, &blocked, &err), ENR_OK);
    assert_true(blocked);
    enr_registration other = registration("dev-b", "fleet");
    enr_certificate a3 = certificate_with_key("A3", now + 86400, 'A'); /* the same hash, upper case */
    assert_int_equal(commit_one(f, &other, &a3, "op-3", &item), ENR_E_POLICY);
    assert_int_equal(item.error.reason, ENR_R_KEY_COMPROMISED);
    enr_certificate none;
    assert_int_equal(enr_store_get_certificate(f->store, ISSUER, "A3", &none, &err), ENR_E_NOTFOUND);

    /* Revoking a whole registration for keyCompromise blocks each of its keys. */
    enr_certificate b1 = certificate_with_key("B1", now + 86400, 'b');
    assert_int_equal(commit_one(f, &other, &b1, "op-4", &item), ENR_OK);
    assert_int_equal(enr_store_revoke_registration(f->store, "dev-b", 1, 0, NULL, NULL, &err), ENR_OK);
    assert_int_equal(enr_store_key_compromised(f->store, b1.spki_sha256, &blocked, &err), ENR_OK);
    assert_true(blocked);

    /* A revocation recorded elsewhere (a CA directory's own index). */
    char spki_c[ENR_STORE_SPKI_HEX + 1];
    memset(spki_c, 'c', ENR_STORE_SPKI_HEX);
    spki_c[ENR_STORE_SPKI_HEX] = '\0';
    assert_int_equal(enr_store_block_key(f->store, spki_c, ISSUER, "c1", 0, NULL, &err), ENR_OK);
    assert_int_equal(enr_store_block_key(f->store, spki_c, ISSUER, "c2", 0, NULL, &err), ENR_OK); /* kept once */
    assert_int_equal(enr_store_key_compromised(f->store, spki_c, &blocked, &err), ENR_OK);
    assert_true(blocked);
    assert_int_equal(enr_store_block_key(f->store, "not-hex", ISSUER, "c1", 0, NULL, &err), ENR_E_USAGE);
    assert_int_equal(enr_store_key_compromised(f->store, "short", &blocked, &err), ENR_E_USAGE);
    assert_int_equal(store_count(f, "SELECT COUNT(*) FROM compromised_key"), 3);
}

/* A registration stays with its enrollment: a commit through another group
 * is refused with its reason until an operator moves it; an individual
 * enrollment takes its own id over. */
static void test_registration_stays_with_its_enrollment(void **state)
{
    fixture *f = *state;
    enr_error err;
    time_t now = time(NULL);
    put_ca(f, "issuing", ENR_CA_ISSUING);
    put_policy(f, "cert-policy", "issuing");
    enr_enrollment a = symmetric_enrollment(ENR_ENROLLMENT_GROUP, "fleet", "cert-policy");
    enr_enrollment b = symmetric_enrollment(ENR_ENROLLMENT_GROUP, "other", "cert-policy");
    assert_int_equal(enr_store_create_enrollment(f->store, &a, NULL, &err), ENR_OK);
    assert_int_equal(enr_store_create_enrollment(f->store, &b, NULL, &err), ENR_OK);
    enr_registration in_a = registration("dev-a", "fleet");
    enr_registration_commit item;
    enr_certificate c1 = certificate_with_key("C1", now + 86400, '1');
    assert_int_equal(commit_one(f, &in_a, &c1, "op-1", &item), ENR_OK);
    enr_registration in_b = registration("dev-a", "other");
    enr_certificate c2 = certificate_with_key("C2", now + 86400, '2');
    assert_int_equal(commit_one(f, &in_b, &c2, "op-2", &item), ENR_E_POLICY);
    assert_int_equal(item.error.reason, ENR_R_ENROLLMENT_MISMATCH);
    enr_registration got;
    assert_int_equal(enr_store_get_registration(f->store, "dev-a", &got, &err), ENR_OK);
    assert_string_equal(got.enrollment_id, "fleet");

    /* The operator moves it; then the other group's commit goes through. */
    enr_audit_event moved = audit("admin.registration.move", "dev-a", "ok", 0, "moved to other");
    assert_int_equal(enr_store_move_registration(f->store, "Dev-A", ENR_ENROLLMENT_GROUP, "other", &moved, &err),
                     ENR_OK);
    assert_int_equal(commit_one(f, &in_b, &c2, "op-3", &item), ENR_OK);
    assert_int_equal(enr_store_get_registration(f->store, "dev-a", &got, &err), ENR_OK);
    assert_string_equal(got.enrollment_id, "other");
    assert_int_equal(enr_store_move_registration(f->store, "dev-a", ENR_ENROLLMENT_GROUP, "nope", NULL, &err),
                     ENR_E_NOTFOUND);
    assert_int_equal(enr_store_move_registration(f->store, "dev-zz", ENR_ENROLLMENT_GROUP, "fleet", NULL, &err),
                     ENR_E_NOTFOUND);
    assert_int_equal(enr_store_move_registration(f->store, "dev-a", ENR_ENROLLMENT_INDIVIDUAL, "dev-b", NULL, &err),
                     ENR_E_USAGE);

    /* An individual enrollment for the id decides from now on. */
    enr_enrollment own = symmetric_enrollment(ENR_ENROLLMENT_INDIVIDUAL, "dev-a", "cert-policy");
    assert_int_equal(enr_store_create_enrollment(f->store, &own, NULL, &err), ENR_OK);
    enr_registration individually = registration("dev-a", "dev-a");
    individually.enrollment_kind = ENR_ENROLLMENT_INDIVIDUAL;
    enr_certificate c3 = certificate_with_key("C3", now + 86400, '3');
    assert_int_equal(commit_one(f, &individually, &c3, "op-4", &item), ENR_OK);
    enr_certificate c4 = certificate_with_key("C4", now + 86400, '4');
    assert_int_equal(commit_one(f, &in_b, &c4, "op-5", &item), ENR_E_POLICY);
    assert_int_equal(item.error.reason, ENR_R_ENROLLMENT_MISMATCH);
    enr_audit_filter only_a = {.registration_id = "dev-a"};
    enr_audit_list events;
    assert_int_equal(enr_store_list_audit(f->store, &only_a, &events, &err), ENR_OK);
    assert_int_equal(events.count, 1);
    assert_string_equal(events.items[0].kind, "admin.registration.move");
    enr_audit_list_free(&events);
}

/* Rotation: the old primary becomes the secondary, atomically. */
static void test_key_rotation(void **state)
{
    fixture *f = *state;
    enr_error err;
    put_ca(f, "issuing", ENR_CA_ISSUING);
    put_policy(f, "cert-policy", "issuing");
    enr_enrollment g = symmetric_enrollment(ENR_ENROLLMENT_GROUP, "fleet", "cert-policy");
    assert_int_equal(enr_store_create_enrollment(f->store, &g, NULL, &err), ENR_OK);
    char old_primary[ENR_STORE_KEY_MAX + 1], old_etag[ENR_STORE_ETAG_MAX + 1];
    snprintf(old_primary, sizeof old_primary, "%s", g.primary_key);
    snprintf(old_etag, sizeof old_etag, "%s", g.etag);
    static const char NEW_KEY[] = "bmV3LWtleS1uZXcta2V5LW5ldy1rZXktbmV3LWtleQ==";
    assert_int_equal(enr_store_rotate_enrollment_key(f->store, ENR_ENROLLMENT_GROUP, "Fleet", NEW_KEY, NULL, &err),
                     ENR_OK);
    enr_enrollment got;
    assert_int_equal(enr_store_get_enrollment(f->store, ENR_ENROLLMENT_GROUP, "fleet", &got, &err), ENR_OK);
    assert_string_equal(got.primary_key, NEW_KEY);
    assert_string_equal(got.secondary_key, old_primary);
    assert_string_not_equal(got.etag, old_etag);
    enr_enrollment_free(&got);
    assert_int_equal(enr_store_rotate_enrollment_key(f->store, ENR_ENROLLMENT_GROUP, "fleet", "not base64!", NULL,
                                                     &err),
                     ENR_E_USAGE);
    assert_null(strstr(err.message, "not base64!"));
    assert_int_equal(enr_store_rotate_enrollment_key(f->store, ENR_ENROLLMENT_GROUP, "nope", NEW_KEY, NULL, &err),
                     ENR_E_NOTFOUND);
}

/* EST: an enrollment's Basic secret hash (either kind) and a policy's
 * serverkeygen flag, stored and read back; a hash that is not 64
 * lower-case hex digits never reaches the store. */
static void test_est_fields(void **state)
{
    fixture *f = *state;
    enr_error err;
    put_ca(f, "issuing", ENR_CA_ISSUING);
    put_policy(f, "cert-policy", "issuing");
    enr_credential_policy p = {0};
    snprintf(p.name, sizeof p.name, "keygen");
    snprintf(p.validity, sizeof p.validity, "P30D");
    snprintf(p.renewal_window, sizeof p.renewal_window, "P7D");
    snprintf(p.ca_name, sizeof p.ca_name, "issuing");
    snprintf(p.key_types, sizeof p.key_types, "ec-p256");
    p.allow_server_keygen = true;
    assert_int_equal(enr_store_create_policy(f->store, &p, NULL, &err), ENR_OK);
    enr_credential_policy got_policy;
    assert_int_equal(enr_store_get_policy(f->store, "keygen", &got_policy, &err), ENR_OK);
    assert_true(got_policy.allow_server_keygen);
    assert_int_equal(enr_store_get_policy(f->store, "cert-policy", &got_policy, &err), ENR_OK);
    assert_false(got_policy.allow_server_keygen);

    enr_enrollment g = symmetric_enrollment(ENR_ENROLLMENT_GROUP, "fleet", "cert-policy");
    assert_int_equal(enr_store_create_enrollment(f->store, &g, NULL, &err), ENR_OK);
    static const char HASH[] = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
    assert_int_equal(enr_store_set_enrollment_basic_secret(f->store, ENR_ENROLLMENT_GROUP, "Fleet", HASH, NULL, &err),
                     ENR_OK);
    enr_enrollment got;
    assert_int_equal(enr_store_get_enrollment(f->store, ENR_ENROLLMENT_GROUP, "fleet", &got, &err), ENR_OK);
    assert_string_equal(got.basic_secret_sha256, HASH);
    assert_string_not_equal(got.etag, g.etag);
    enr_enrollment_free(&got);
    static const char *const BAD[] = {"BA7816BF8F01CFEA414140DE5DAE2223B00361A396177A9CB410FF61F20015AD", "abc",
                                      "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015adff",
                                      "secret-in-the-clear-secret-in-the-clear-secret-in-the-clear-123", NULL};
    for (size_t i = 0; BAD[i] != NULL; i++)
        if (enr_store_set_enrollment_basic_secret(f->store, ENR_ENROLLMENT_GROUP, "fleet", BAD[i], NULL, &err) !=
            ENR_E_USAGE)
            fail_msg("EST secret hash '%s' was taken", BAD[i]);
    assert_int_equal(enr_store_set_enrollment_basic_secret(f->store, ENR_ENROLLMENT_GROUP, "nope", HASH, NULL, &err),
                     ENR_E_NOTFOUND);
    assert_int_equal(enr_store_set_enrollment_basic_secret(f->store, ENR_ENROLLMENT_GROUP, "fleet", NULL, NULL, &err),
                     ENR_OK);
    assert_int_equal(enr_store_get_enrollment(f->store, ENR_ENROLLMENT_GROUP, "fleet", &got, &err), ENR_OK);
    assert_string_equal(got.basic_secret_sha256, "");
    enr_enrollment_free(&got);
}

/* The details of the audit events left, oldest first, joined by spaces. */
static void audit_left(fixture *f, char *out, size_t size)
{
    enr_error err;
    enr_audit_list events;
    assert_int_equal(enr_store_list_audit(f->store, NULL, &events, &err), ENR_OK);
    size_t used = 0;
    out[0] = '\0';
    for (size_t i = 0; i < events.count; i++)
        used += (size_t)snprintf(out + used, size - used, "%s%s", i > 0 ? " " : "", events.items[i].detail);
    enr_audit_list_free(&events);
}

static size_t prune(fixture *f, time_t before, long keep_rows, size_t limit)
{
    enr_error err;
    size_t deleted = 99;
    if (enr_store_prune_audit(f->store, before, keep_rows, limit, &deleted, &err) != ENR_OK)
        fail_msg("prune: %s", err.message);
    return deleted;
}

/* Retention deletes the oldest first, by either rule, a limit at a time. */
static void test_audit_retention(void **state)
{
    fixture *f = *state;
    enr_error err;
    enr_audit_event ten[10];
    for (int i = 0; i < 10; i++) {
        char detail[8];
        snprintf(detail, sizeof detail, "e%d", i);
        ten[i] = audit("register", "dev-r", "ok", 0, detail);
        ten[i].at = 1000 + 10 * i;
    }
    assert_int_equal(enr_store_record_audits(f->store, ten, 10, &err), ENR_OK);
    char left[200];

    assert_int_equal(prune(f, 0, 0, 100), 0); /* no rule: nothing goes */
    assert_int_equal(prune(f, 0, 10, 100), 0);
    assert_int_equal(prune(f, 999, 0, 100), 0);

    /* Rows: the newest 7 stay; 2 at a time. */
    assert_int_equal(prune(f, 0, 7, 2), 2);
    audit_left(f, left, sizeof left);
    assert_string_equal(left, "e2 e3 e4 e5 e6 e7 e8 e9");
    assert_int_equal(prune(f, 0, 7, 2), 1);
    assert_int_equal(prune(f, 0, 7, 2), 0);
    audit_left(f, left, sizeof left);
    assert_string_equal(left, "e3 e4 e5 e6 e7 e8 e9");

    /* Age: what was written before the first event at or after 1055. */
    assert_int_equal(prune(f, 1055, 0, 100), 3);
    audit_left(f, left, sizeof left);
    assert_string_equal(left, "e6 e7 e8 e9");
    assert_int_equal(prune(f, 1055, 0, 100), 0);

    /* An event older than its predecessors (a clock set back) waits for
     * them: the oldest first is by the order of writing. */
    enr_audit_event late = audit("register", "dev-r", "ok", 0, "late");
    late.at = 1001;
    assert_int_equal(enr_store_record_audit(f->store, &late, &err), ENR_OK);
    assert_int_equal(prune(f, 1055, 0, 100), 0);

    /* Both rules: the one that deletes more wins. */
    assert_int_equal(prune(f, 1075, 2, 100), 3); /* rows: all but e9 and late; age: e6 e7 */
    audit_left(f, left, sizeof left);
    assert_string_equal(left, "e9 late");
    assert_int_equal(prune(f, 2000, 5, 100), 2); /* age: everything */
    audit_left(f, left, sizeof left);
    assert_string_equal(left, "");
    assert_int_equal(prune(f, 2000, 5, 100), 0); /* an empty table */
}

static void test_rejection_writes_only_audit(void **state)
{
    fixture *f = *state;
    enr_error err;
    enr_audit_event a = audit("register", "Dev-X", "rejected", 401002, "SAS signature does not match");
    assert_int_equal(enr_store_record_audit(f->store, &a, &err), ENR_OK);
    /* Text that looks like a credential is withheld; control characters repaired. */
    enr_audit_event leak = audit("register", "dev-y", "rejected", 401002,
                                 "bad token SharedAccessSignature sr=x&sig=abc&se=1");
    assert_int_equal(enr_store_record_audit(f->store, &leak, &err), ENR_OK);
    char pasted[ENR_STORE_DETAIL_MAX + 1];
    snprintf(pasted, sizeof pasted, "group key %s did not verify", SECRET_KEY);
    enr_audit_event key = audit("register", "dev-k", "rejected", 401002, pasted);
    assert_int_equal(enr_store_record_audit(f->store, &key, &err), ENR_OK);
    enr_audit_event hex = audit("revoke", "dev-h", "ok", 0,
                                "serial 7F0102030405060708090A0B0C0D0E0F10111213 spki " /* hex is no secret */
                                "00112233445566778899aabbccddeeff00112233445566778899");
    assert_int_equal(enr_store_record_audit(f->store, &hex, &err), ENR_OK);
    enr_audit_event ctrl = audit("register", "Dev\n-Z", "rejected", 400001, "line\nbreak"); /* kept as sent */
    assert_int_equal(enr_store_record_audit(f->store, &ctrl, &err), ENR_OK);
    enr_audit_event wrong = audit("register", "", "maybe", 0, "");
    assert_int_equal(enr_store_record_audit(f->store, &wrong, &err), ENR_E_USAGE);

    enr_audit_list events;
    assert_int_equal(enr_store_list_audit(f->store, NULL, &events, &err), ENR_OK);
    assert_int_equal(events.count, 5);
    assert_string_equal(events.items[0].registration_id, "dev-x"); /* found like its registration */
    assert_string_equal(events.items[0].outcome, "rejected");
    assert_int_equal(events.items[0].reason_code, 401002);
    assert_true(events.items[0].at > 0);
    assert_null(strstr(events.items[1].detail, "sig="));
    assert_null(strstr(events.items[2].detail, SECRET_KEY));
    assert_non_null(strstr(events.items[2].detail, "withheld"));
    assert_non_null(strstr(events.items[3].detail, "7F0102030405060708090A0B0C0D0E0F10111213")); /* hex stays */
    assert_string_equal(events.items[4].registration_id, "Dev?-Z");
    assert_string_equal(events.items[4].detail, "line?break");
    int64_t first = events.items[0].id;
    enr_audit_list_free(&events);

    enr_audit_filter of_x = {.registration_id = "DEV-X"};
    assert_int_equal(enr_store_list_audit(f->store, &of_x, &events, &err), ENR_OK);
    assert_int_equal(events.count, 1);
    enr_audit_list_free(&events);

    enr_audit_filter after = {.after_id = first, .limit = 1};
    assert_int_equal(enr_store_list_audit(f->store, &after, &events, &err), ENR_OK);
    assert_int_equal(events.count, 1);
    assert_string_equal(events.items[0].registration_id, "dev-y");
    enr_audit_list_free(&events);

    enr_registration_list regs;
    assert_int_equal(enr_store_list_registrations(f->store, NULL, &regs, &err), ENR_OK);
    assert_int_equal(regs.count, 0);
    enr_registration_list_free(&regs);
    enr_certificate_list certs;
    assert_int_equal(enr_store_list_certificates(f->store, NULL, &certs, &err), ENR_OK);
    assert_int_equal(certs.count, 0);
    enr_certificate_list_free(&certs);
}

static void test_list_registrations(void **state)
{
    fixture *f = *state;
    enr_error err;
    time_t now = time(NULL);
    commit_ok(f, "dev-3", "01", now + 86400);
    commit_ok(f, "dev-1", "02", now + 86400);
    commit_ok(f, "dev-2", "03", now + 86400);
    enr_registration r = registration("dev-4", "other-fleet");
    snprintf(r.status, sizeof r.status, "failed");
    r.device_id[0] = r.assigned_hub[0] = '\0';
    enr_operation op = operation("op-4");
    snprintf(op.status, sizeof op.status, "failed");
    assert_int_equal(enr_store_commit_registration(f->store, &r, NULL, &op, NULL, &err), ENR_OK);

    enr_registration_list list;
    assert_int_equal(enr_store_list_registrations(f->store, NULL, &list, &err), ENR_OK);
    assert_int_equal(list.count, 4);
    assert_string_equal(list.items[0].registration_id, "dev-1");
    assert_string_equal(list.items[3].registration_id, "dev-4");
    assert_string_equal(list.items[3].device_id, "");
    enr_registration_list_free(&list);

    enr_registration_filter fleet = {.enrollment_kind = ENR_ENROLLMENT_GROUP, .enrollment_id = "FLEET"};
    assert_int_equal(enr_store_list_registrations(f->store, &fleet, &list, &err), ENR_OK);
    assert_int_equal(list.count, 3);
    enr_registration_list_free(&list);
    enr_registration_filter individual = {.enrollment_kind = ENR_ENROLLMENT_INDIVIDUAL};
    assert_int_equal(enr_store_list_registrations(f->store, &individual, &list, &err), ENR_OK);
    assert_int_equal(list.count, 0);
    enr_registration_list_free(&list);
    enr_registration_filter failed = {.status = "failed"};
    assert_int_equal(enr_store_list_registrations(f->store, &failed, &list, &err), ENR_OK);
    assert_int_equal(list.count, 1);
    enr_registration_list_free(&list);
    enr_registration_filter page = {.after = "dev-1", .limit = 2};
    assert_int_equal(enr_store_list_registrations(f->store, &page, &list, &err), ENR_OK);
    assert_int_equal(list.count, 2);
    assert_string_equal(list.items[0].registration_id, "dev-2");
    assert_string_equal(list.items[1].registration_id, "dev-3");
    enr_registration_list_free(&list);
    enr_registration_filter bad = {.status = "sleeping"};
    assert_int_equal(enr_store_list_registrations(f->store, &bad, &list, &err), ENR_E_USAGE);
}

static void test_registration_disable_enable(void **state)
{
    fixture *f = *state;
    enr_error err;
    time_t now = time(NULL);
    commit_ok(f, "dev-1", "01", now + 86400);
    enr_registration before, r;
    assert_int_equal(enr_store_get_registration(f->store, "dev-1", &before, &err), ENR_OK);
    assert_string_equal(before.status, "assigned");

    enr_audit_event a = audit("admin.registration.disable", "dev-1", "ok", 0, "disabled");
    assert_int_equal(enr_store_set_registration_enabled(f->store, "DEV-1", false, &a, &err), ENR_OK);
    assert_int_equal(enr_store_get_registration(f->store, "dev-1", &r, &err), ENR_OK);
    assert_string_equal(r.status, "disabled");
    assert_string_not_equal(r.etag, before.etag);
    /* Everything else is what it was. */
    assert_string_equal(r.substatus, before.substatus);
    assert_string_equal(r.device_id, before.device_id);
    assert_string_equal(r.assigned_hub, before.assigned_hub);
    assert_string_equal(r.last_certificate_serial, before.last_certificate_serial);
    assert_int_equal(r.created_at, before.created_at);
    enr_registration_filter disabled = {.status = "disabled"};
    enr_registration_list list;
    assert_int_equal(enr_store_list_registrations(f->store, &disabled, &list, &err), ENR_OK);
    assert_int_equal(list.count, 1);
    enr_registration_list_free(&list);
    /* Certificates are untouched: revocation is separate. */
    enr_certificate_filter revoked = {.revoked = ENR_REVOKED_ONLY};
    enr_certificate_list certs;
    assert_int_equal(enr_store_list_certificates(f->store, &revoked, &certs, &err), ENR_OK);
    assert_int_equal(certs.count, 0);
    enr_certificate_list_free(&certs);

    /* Twice: still disabled, and enabling gives back "assigned", not "disabled". */
    assert_int_equal(enr_store_set_registration_enabled(f->store, "dev-1", false, NULL, &err), ENR_OK);
    assert_int_equal(enr_store_set_registration_enabled(f->store, "dev-1", true, NULL, &err), ENR_OK);
    assert_int_equal(enr_store_get_registration(f->store, "dev-1", &r, &err), ENR_OK);
    assert_string_equal(r.status, "assigned");
    assert_int_equal(enr_store_set_registration_enabled(f->store, "dev-1", true, NULL, &err), ENR_OK);
    assert_int_equal(enr_store_get_registration(f->store, "dev-1", &r, &err), ENR_OK);
    assert_string_equal(r.status, "assigned");

    /* A failed registration comes back failed. */
    enr_registration fr = registration("dev-2", "fleet");
    snprintf(fr.status, sizeof fr.status, "failed");
    enr_operation op = operation("op-2");
    snprintf(op.status, sizeof op.status, "failed");
    assert_int_equal(enr_store_commit_registration(f->store, &fr, NULL, &op, NULL, &err), ENR_OK);
    assert_int_equal(enr_store_set_registration_enabled(f->store, "dev-2", false, NULL, &err), ENR_OK);
    assert_int_equal(enr_store_set_registration_enabled(f->store, "dev-2", true, NULL, &err), ENR_OK);
    assert_int_equal(enr_store_get_registration(f->store, "dev-2", &r, &err), ENR_OK);
    assert_string_equal(r.status, "failed");

    assert_int_equal(enr_store_set_registration_enabled(f->store, "nobody", false, &a, &err), ENR_E_NOTFOUND);
    assert_non_null(strstr(err.message, "nobody"));
    assert_int_equal(enr_store_set_registration_enabled(f->store, "bad id!", false, NULL, &err), ENR_E_USAGE);

    /* One audit event: the refused change wrote none. */
    enr_audit_list events;
    enr_audit_filter af = {.registration_id = "dev-1"};
    assert_int_equal(enr_store_list_audit(f->store, &af, &events, &err), ENR_OK);
    size_t disables = 0;
    for (size_t i = 0; i < events.count; i++)
        disables += strcmp(events.items[i].kind, "admin.registration.disable") == 0;
    assert_int_equal(disables, 1);
    enr_audit_list_free(&events);
}

/* ---- certificates ------------------------------------------------------- */

static void test_certificate_filters(void **state)
{
    fixture *f = *state;
    enr_error err;
    time_t now = 1800000000;
    commit_ok(f, "dev-1", "A1", now - 10);          /* expired */
    commit_ok(f, "dev-1", "A2", now + 3600);        /* within an hour */
    commit_ok(f, "dev-2", "A3", now + 86400);       /* within a day */
    commit_ok(f, "dev-2", "A4", now + 30 * 86400);  /* later */
    assert_int_equal(enr_store_revoke_certificate(f->store, ISSUER, "A3", 1, now, NULL, &err), ENR_OK);

    enr_certificate_list list;
    enr_certificate_filter hour = {.expiring_within = 3600, .now = now};
    assert_int_equal(enr_store_list_certificates(f->store, &hour, &list, &err), ENR_OK);
    assert_int_equal(list.count, 1);
    assert_string_equal(list.items[0].serial, "A2");
    enr_certificate_list_free(&list);

    enr_certificate_filter day = {.expiring_within = 86400, .now = now};
    assert_int_equal(enr_store_list_certificates(f->store, &day, &list, &err), ENR_OK);
    assert_int_equal(list.count, 2);
    enr_certificate_list_free(&list);
    day.revoked = ENR_REVOKED_NONE;
    assert_int_equal(enr_store_list_certificates(f->store, &day, &list, &err), ENR_OK);
    assert_int_equal(list.count, 1);
    assert_string_equal(list.items[0].serial, "A2");
    enr_certificate_list_free(&list);

    enr_certificate_filter revoked = {.revoked = ENR_REVOKED_ONLY};
    assert_int_equal(enr_store_list_certificates(f->store, &revoked, &list, &err), ENR_OK);
    assert_int_equal(list.count, 1);
    assert_string_equal(list.items[0].serial, "A3");
    assert_true(list.items[0].revoked);
    assert_int_equal(list.items[0].revocation_reason, 1);
    assert_int_equal(list.items[0].revoked_at, now);
    enr_certificate_list_free(&list);

    enr_certificate_filter of_dev = {.registration_id = "DEV-2", .issuer = ISSUER};
    assert_int_equal(enr_store_list_certificates(f->store, &of_dev, &list, &err), ENR_OK);
    assert_int_equal(list.count, 2);
    enr_certificate_list_free(&list);
    enr_certificate_filter other_issuer = {.issuer = "CN=Nobody"};
    assert_int_equal(enr_store_list_certificates(f->store, &other_issuer, &list, &err), ENR_OK);
    assert_int_equal(list.count, 0);
    enr_certificate_list_free(&list);

    /* Paging by id. */
    enr_certificate_filter page = {.limit = 3};
    assert_int_equal(enr_store_list_certificates(f->store, &page, &list, &err), ENR_OK);
    assert_int_equal(list.count, 3);
    page.after_id = list.items[2].id;
    enr_certificate_list_free(&list);
    assert_int_equal(enr_store_list_certificates(f->store, &page, &list, &err), ENR_OK);
    assert_int_equal(list.count, 1);
    assert_string_equal(list.items[0].serial, "A4");
    enr_certificate_list_free(&list);

    enr_certificate_filter negative = {.expiring_within = -1};
    assert_int_equal(enr_store_list_certificates(f->store, &negative, &list, &err), ENR_E_USAGE);
}

static void test_revocation(void **state)
{
    fixture *f = *state;
    enr_error err;
    time_t now = time(NULL);
    commit_ok(f, "dev-1", "B1", now + 86400);
    commit_ok(f, "dev-1", "B2", now + 86400);
    commit_ok(f, "dev-1", "B3", now + 86400);
    commit_ok(f, "dev-2", "B4", now + 86400);

    enr_audit_event a = audit("revoke", "dev-1", "ok", 0, "key compromise reported");
    assert_int_equal(enr_store_revoke_certificate(f->store, ISSUER, "b1", 1, 0, &a, &err), ENR_OK);
    assert_int_equal(enr_store_revoke_certificate(f->store, ISSUER, "B1", 1, 0, NULL, &err), ENR_E_EXISTS);
    assert_non_null(strstr(err.message, "revoked already"));
    assert_int_equal(enr_store_revoke_certificate(f->store, ISSUER, "B9", 1, 0, NULL, &err), ENR_E_NOTFOUND);
    assert_int_equal(enr_store_revoke_certificate(f->store, ISSUER, "B2", 7, 0, NULL, &err), ENR_E_USAGE);
    assert_int_equal(enr_store_revoke_certificate(f->store, ISSUER, "B2", 11, 0, NULL, &err), ENR_E_USAGE);

    /* The rest of dev-1, returned for the CRL; B1 is not revoked twice. */
    enr_certificate_list revoked;
    assert_int_equal(enr_store_revoke_registration(f->store, "Dev-1", 5, 12345, &a, &revoked, &err), ENR_OK);
    assert_int_equal(revoked.count, 2);
    assert_string_equal(revoked.items[0].serial, "B2");
    assert_string_equal(revoked.items[1].serial, "B3");
    assert_true(revoked.items[1].revoked);
    assert_int_equal(revoked.items[1].revocation_reason, 5);
    assert_int_equal(revoked.items[1].revoked_at, 12345);
    enr_certificate_list_free(&revoked);

    enr_certificate cert;
    assert_int_equal(enr_store_get_certificate(f->store, ISSUER, "B1", &cert, &err), ENR_OK);
    assert_int_equal(cert.revocation_reason, 1); /* the first revocation stands */
    enr_certificate_free(&cert);
    assert_int_equal(enr_store_get_certificate(f->store, ISSUER, "B3", &cert, &err), ENR_OK);
    assert_true(cert.revoked);
    enr_certificate_free(&cert);
    assert_int_equal(enr_store_get_certificate(f->store, ISSUER, "B4", &cert, &err), ENR_OK);
    assert_false(cert.revoked);
    enr_certificate_free(&cert);

    /* Nothing left to revoke; unknown registration; NULL list. */
    assert_int_equal(enr_store_revoke_registration(f->store, "dev-1", 5, 0, NULL, &revoked, &err), ENR_OK);
    assert_int_equal(revoked.count, 0);
    enr_certificate_list_free(&revoked);
    assert_int_equal(enr_store_revoke_registration(f->store, "dev-9", 5, 0, NULL, &revoked, &err),
                     ENR_E_NOTFOUND);
    assert_int_equal(enr_store_revoke_registration(f->store, "dev-2", 4, 0, NULL, NULL, &err), ENR_OK);
    assert_int_equal(enr_store_get_certificate(f->store, ISSUER, "B4", &cert, &err), ENR_OK);
    assert_true(cert.revoked);
    enr_certificate_free(&cert);

    enr_audit_filter of_dev = {.registration_id = "dev-1"};
    enr_audit_list events;
    assert_int_equal(enr_store_list_audit(f->store, &of_dev, &events, &err), ENR_OK);
    size_t revokes = 0;
    for (size_t i = 0; i < events.count; i++)
        revokes += strcmp(events.items[i].kind, "revoke") == 0;
    assert_int_equal(revokes, 2);
    enr_audit_list_free(&events);
}

static void test_certificate_from_x509(void **state)
{
    fixture *f = *state;
    enr_error err;
    /* Top bit set: DER has a leading 00 octet, `openssl x509 -serial` does not print it. */
    static const unsigned char serial[] = {0x80, 0x01, 0xab, 0xcd};
    X509 *x = self_signed("dev-x509", serial, sizeof serial);
    enr_certificate c;
    assert_int_equal(enr_certificate_from_x509(x, &c, &err), ENR_OK);
    assert_string_equal(c.serial, "8001ABCD");
    assert_string_equal(c.issuer, "CN=dev-x509");
    assert_string_equal(c.subject, "CN=dev-x509");
    assert_int_equal(c.not_after - c.not_before, 86400);
    assert_int_equal(strlen(c.spki_sha256), 64);
    assert_int_equal((long)c.der.len, (long)i2d_X509(x, NULL));

    /* The same text `openssl x509 -serial` shows (i2a_ASN1_INTEGER). */
    BIO *bio = BIO_new(BIO_s_mem());
    i2a_ASN1_INTEGER(bio, X509_get0_serialNumber(x));
    char printed[64] = "";
    int n = BIO_read(bio, printed, sizeof printed - 1);
    assert_true(n > 0);
    printed[n] = '\0';
    BIO_free(bio);
    assert_string_equal(c.serial, printed);

    enr_registration r = registration("dev-x509", "fleet");
    enr_operation op = operation("op-x509");
    assert_int_equal(enr_store_commit_registration(f->store, &r, &c, &op, NULL, &err), ENR_OK);
    enr_certificate got;
    assert_int_equal(enr_store_get_certificate(f->store, c.issuer, printed, &got, &err), ENR_OK);
    assert_memory_equal(got.der.data, c.der.data, c.der.len);
    enr_certificate_free(&got);
    enr_certificate_free(&c);
    X509_free(x);
    assert_int_equal(enr_certificate_from_x509(NULL, &c, &err), ENR_E_USAGE);
}

/* ---- issuance through the store (what enrolld does) --------------------- */

typedef struct issue_context {
    enr_store *store;
    const char *registration_id;
    int calls;
} issue_context;

static enr_code record_in_store(void *ctx, X509 *cert, const char *profile, enr_error *err)
{
    issue_context *ic = ctx;
    ic->calls++;
    enr_certificate c;
    enr_code rc = enr_certificate_from_x509(cert, &c, err);
    if (rc != ENR_OK)
        return rc;
    enr_registration r = registration(ic->registration_id, "fleet");
    char op_id[64];
    snprintf(op_id, sizeof op_id, "op-issue-%d", ic->calls);
    enr_operation op = operation(op_id);
    enr_audit_event a = audit("register", ic->registration_id, "ok", 0, profile);
    rc = enr_store_commit_registration(ic->store, &r, &c, &op, &a, err);
    enr_certificate_free(&c);
    return rc;
}

static void test_issue_records_through_store(void **state)
{
    fixture *f = *state;
    enr_error err;
    char ca_dir[128], key[128];
    snprintf(ca_dir, sizeof ca_dir, "%s/ca", f->dir);
    snprintf(key, sizeof key, "%s/dev.key", f->dir);
    enr_ca_init_options init = {.dir = ca_dir, .subject = "/CN=Store Test CA", .pathlen = -1};
    assert_int_equal(enr_ca_init(&init, &err), ENR_OK);
    enr_ca *ca = NULL;
    enr_profile *profile = NULL;
    assert_int_equal(enr_ca_open(ca_dir, NULL, NULL, &ca, &err), ENR_OK);
    assert_int_equal(enr_profile_new("device", &profile, &err), ENR_OK);
    assert_int_equal(enr_key_generate_file(ENR_KEY_EC_P256, key, NULL, true, &err), ENR_OK);
    enr_signer *signer = NULL;
    assert_int_equal(enr_signer_open(key, NULL, NULL, &signer, &err), ENR_OK);
    enr_csr_spec *spec = enr_csr_spec_new();
    assert_int_equal(enr_csr_spec_add_dn(spec, "CN=dev-issue", &err), ENR_OK);
    enr_csr *csr = NULL;
    assert_int_equal(enr_csr_build(spec, signer, &csr, &err), ENR_OK);

    issue_context ic = {f->store, "dev-issue", 0};
    X509 *cert = NULL;
    assert_int_equal(enr_ca_sign(ca, csr, profile, 0, &cert, &err), ENR_OK);
    assert_int_equal(record_in_store(&ic, cert, "device", &err), ENR_OK);

    /* What the device receives is what the store holds. */
    enr_certificate mine;
    assert_int_equal(enr_certificate_from_x509(cert, &mine, &err), ENR_OK);
    enr_certificate stored;
    assert_int_equal(enr_store_get_certificate(f->store, mine.issuer, mine.serial, &stored, &err), ENR_OK);
    assert_string_equal(stored.registration_id, "dev-issue");
    assert_int_equal(stored.der.len, mine.der.len);
    assert_memory_equal(stored.der.data, mine.der.data, mine.der.len);
    enr_registration r;
    assert_int_equal(enr_store_get_registration(f->store, "dev-issue", &r, &err), ENR_OK);
    assert_string_equal(r.last_certificate_serial, mine.serial);
    enr_certificate_free(&stored);
    enr_certificate_free(&mine);
    X509_free(cert);

    enr_csr_free(csr);
    enr_csr_spec_free(spec);
    enr_signer_free(signer);
    enr_profile_free(profile);
    enr_ca_free(ca);
}

/* ---- secrets ------------------------------------------------------------ */

static void assert_no_secret(const enr_error *err, const char *context)
{
    /* The whole key, and any 12-character piece of it. */
    if (err->message[0] == '\0')
        fail_msg("%s: no error message", context);
    for (size_t i = 0; i + 12 <= sizeof SECRET_KEY - 1; i++) {
        char piece[13];
        memcpy(piece, SECRET_KEY + i, 12);
        piece[12] = '\0';
        if (strstr(err->message, piece) != NULL)
            fail_msg("%s: the message shows the key: %s", context, err->message);
    }
}

static void test_errors_never_show_a_key(void **state)
{
    fixture *f = *state;
    enr_error err;
    put_ca(f, "issuing", ENR_CA_ISSUING);
    put_policy(f, "cert-policy", "issuing");
    enr_enrollment e = symmetric_enrollment(ENR_ENROLLMENT_GROUP, "fleet", "cert-policy");
    assert_int_equal(enr_store_create_enrollment(f->store, &e, NULL, &err), ENR_OK);

    e = symmetric_enrollment(ENR_ENROLLMENT_GROUP, "fleet", "cert-policy");
    assert_int_equal(enr_store_create_enrollment(f->store, &e, NULL, &err), ENR_E_EXISTS);
    assert_no_secret(&err, "taken id");

    e = symmetric_enrollment(ENR_ENROLLMENT_GROUP, "fleet-2", "no-policy");
    assert_int_equal(enr_store_create_enrollment(f->store, &e, NULL, &err), ENR_E_NOTFOUND);
    assert_no_secret(&err, "unknown policy");

    e = symmetric_enrollment(ENR_ENROLLMENT_GROUP, "fleet-2", "");
    snprintf(e.primary_key, sizeof e.primary_key, "%s!", SECRET_KEY);
    assert_int_equal(enr_store_create_enrollment(f->store, &e, NULL, &err), ENR_E_USAGE);
    assert_no_secret(&err, "primary key not base64");

    e = symmetric_enrollment(ENR_ENROLLMENT_GROUP, "fleet-2", "");
    snprintf(e.secondary_key, sizeof e.secondary_key, "%s=", SECRET_KEY);
    assert_int_equal(enr_store_create_enrollment(f->store, &e, NULL, &err), ENR_E_USAGE);
    assert_no_secret(&err, "secondary key not base64");

    e = symmetric_enrollment(ENR_ENROLLMENT_GROUP, "fleet-2", "");
    memset(e.primary_key, 'A', sizeof e.primary_key); /* no NUL in the field */
    memcpy(e.primary_key, SECRET_KEY, sizeof SECRET_KEY - 1);
    assert_int_equal(enr_store_create_enrollment(f->store, &e, NULL, &err), ENR_E_USAGE);
    assert_no_secret(&err, "unterminated key");

    e = symmetric_enrollment(ENR_ENROLLMENT_GROUP, "fleet-2", "");
    e.attestation = ENR_ATTEST_X509;
    assert_int_equal(enr_store_create_enrollment(f->store, &e, NULL, &err), ENR_E_USAGE);
    assert_no_secret(&err, "x509 with keys");

    e = symmetric_enrollment(ENR_ENROLLMENT_GROUP, "fleet 2!", "");
    assert_int_equal(enr_store_create_enrollment(f->store, &e, NULL, &err), ENR_E_USAGE);
    assert_no_secret(&err, "bad id");

    e = symmetric_enrollment(ENR_ENROLLMENT_INDIVIDUAL, SECRET_KEY, ""); /* a key pasted as the id */
    e.id[ENR_STORE_ID_MAX - 1] = '\0';
    for (size_t i = strlen(e.id); i < ENR_STORE_ID_MAX - 1; i++)
        e.id[i] = '=';
    assert_int_equal(enr_store_create_enrollment(f->store, &e, NULL, &err), ENR_E_USAGE);
    assert_no_secret(&err, "key as id");

    enr_enrollment got;
    assert_int_equal(enr_store_get_enrollment(f->store, ENR_ENROLLMENT_GROUP, "unknown", &got, &err),
                     ENR_E_NOTFOUND);
    assert_no_secret(&err, "unknown enrollment");
    assert_int_equal(
        enr_store_set_enrollment_enabled(f->store, ENR_ENROLLMENT_INDIVIDUAL, "fleet", false, NULL, &err),
        ENR_E_NOTFOUND);
    assert_no_secret(&err, "disable unknown");
}

/* ---- the interface ------------------------------------------------------ */

typedef struct fake_backend {
    int commits;
    enr_registration seen;
    enr_certificate seen_cert;
    bool closed;
} fake_backend;

static enr_code fake_commit(void *impl, const enr_registration *registration, const enr_certificate *cert,
                            const enr_operation *op, const enr_audit_event *audit, enr_error *err)
{
    fake_backend *fb = impl;
    fb->commits++;
    fb->seen = *registration;
    fb->seen_cert = *cert;
    assert_string_equal(op->registration_id, registration->registration_id);
    assert_non_null(audit);
    assert_true(audit->at > 0);
    return ENR_OK;
}

static void fake_close(void *impl)
{
    ((fake_backend *)impl)->closed = true;
}

static void test_backend_sees_checked_values(void **state)
{
    (void)state;
    static const enr_store_ops FAKE = {.name = "fake", .close = fake_close, .commit_registration = fake_commit};
    fake_backend fb = {0};
    enr_store *store = NULL;
    enr_error err;
    assert_int_equal(enr_store_new(&FAKE, &fb, &store, &err), ENR_OK);
    assert_string_equal(enr_store_backend(store), "fake");

    enr_registration r = registration("Dev-ABC", "Fleet");
    enr_certificate c = certificate(ISSUER, "00ab", 2000000000);
    enr_operation op = operation("op-1");
    enr_audit_event a = audit("register", "Dev-ABC", "ok", 0, "");
    assert_int_equal(enr_store_commit_registration(store, &r, &c, &op, &a, &err), ENR_OK);
    assert_int_equal(fb.commits, 1);
    assert_string_equal(fb.seen.registration_id, "dev-abc");
    assert_string_equal(fb.seen.enrollment_id, "fleet");
    assert_string_equal(fb.seen.last_certificate_serial, "AB");
    assert_string_equal(fb.seen_cert.serial, "AB");
    assert_string_equal(fb.seen_cert.registration_id, "dev-abc");
    assert_true(fb.seen_cert.issued_at > 0);

    /* Refused before the backend. */
    r = registration("dev abc", "fleet");
    assert_int_equal(enr_store_commit_registration(store, &r, &c, &op, &a, &err), ENR_E_USAGE);
    assert_int_equal(fb.commits, 1);
    /* What the backend cannot do says so. */
    enr_ca_record ca;
    assert_int_equal(enr_store_get_ca(store, "x", &ca, &err), ENR_E_UNSUPPORTED);
    assert_non_null(strstr(err.message, "fake"));
    assert_int_equal(enr_store_integrity_check(store, &err), ENR_E_UNSUPPORTED);

    enr_store_close(store);
    assert_true(fb.closed);
    assert_int_equal(enr_store_get_ca(NULL, "x", &ca, &err), ENR_E_USAGE);
}

/* ---- durability --------------------------------------------------------- */

/* Runs in a child: commits until killed, writing each serial to `fd` only
 * after its commit returned. No cmocka here: a failed assert would unwind
 * into the parent's test runner copy. */
static void commit_forever(const char *dir, int fd, int round, int limit)
{
    enr_error err;
    enr_store *store = NULL;
    if (enr_store_open(dir, &store, &err) != ENR_OK)
        _exit(2);
    for (int i = 0; i < limit; i++) {
        char serial[32], registration_id[32], line[40];
        snprintf(serial, sizeof serial, "7%02X%08X", round, i);
        snprintf(registration_id, sizeof registration_id, "dev-%d", i % 37);
        if (commit(store, registration_id, ISSUER, serial, time(NULL) + 86400, &err) != ENR_OK) {
            fprintf(stderr, "child commit: %s\n", err.message);
            _exit(3);
        }
        int n = snprintf(line, sizeof line, "%s\n", serial);
        if (write(fd, line, (size_t)n) != n)
            _exit(4);
    }
    enr_store_close(store);
    _exit(0);
}

static pid_t spawn_committer(const char *dir, int round, int limit, int *read_fd)
{
    int fds[2];
    assert_int_equal(pipe(fds), 0);
    fflush(NULL);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        close(fds[0]);
        commit_forever(dir, fds[1], round, limit);
    }
    close(fds[1]);
    *read_fd = fds[0];
    return pid;
}

typedef struct serials {
    char (*items)[32];
    size_t count, cap;
} serials;

static void serials_add(serials *s, const char *serial)
{
    if (s->count == s->cap) {
        s->cap = s->cap ? s->cap * 2 : 256;
        s->items = realloc(s->items, s->cap * sizeof *s->items);
        assert_non_null(s->items);
    }
    snprintf(s->items[s->count++], sizeof s->items[0], "%s", serial);
}

static int compare_serials(const void *a, const void *b)
{
    return strcmp(a, b);
}

/* CRL numbers: one more than the last, never below what the CA directory
 * would use, per issuer, and shared by every connection (each node may
 * hold its own copy of the CA directory). */
static void test_crl_numbers(void **state)
{
    fixture *f = *state;
    enr_error err;
    int64_t n = 0;
    assert_int_equal(enr_store_next_crl_number(f->store, ISSUER, 1, &n, &err), ENR_OK);
    assert_int_equal(n, 1);
    assert_int_equal(enr_store_next_crl_number(f->store, ISSUER, 1, &n, &err), ENR_OK);
    assert_int_equal(n, 2);
    /* A directory that is ahead (CRLs made before the store knew) wins. */
    assert_int_equal(enr_store_next_crl_number(f->store, ISSUER, 10, &n, &err), ENR_OK);
    assert_int_equal(n, 10);
    /* A second connection (another node, another copy of the directory at 3). */
    enr_store *other = NULL;
    assert_int_equal(enr_store_open(f->location, &other, &err), ENR_OK);
    assert_int_equal(enr_store_next_crl_number(other, ISSUER, 3, &n, &err), ENR_OK);
    assert_int_equal(n, 11);
    enr_store_close(other);
    /* Per issuer. */
    assert_int_equal(enr_store_next_crl_number(f->store, "CN=Another CA", 1, &n, &err), ENR_OK);
    assert_int_equal(n, 1);
    assert_int_equal(enr_store_next_crl_number(f->store, ISSUER, 1, &n, &err), ENR_OK);
    assert_int_equal(n, 12);
    assert_int_equal(enr_store_next_crl_number(f->store, ISSUER, 0, &n, &err), ENR_E_USAGE);
    /* Revocation state: how many, and the latest. */
    int64_t count = -1;
    time_t latest = -1, now = time(NULL);
    assert_int_equal(enr_store_revocation_state(f->store, ISSUER, &count, &latest, &err), ENR_OK);
    assert_int_equal(count, 0);
    assert_int_equal(latest, 0);
    commit_ok(f, "dev-r", "C1", now + 86400);
    commit_ok(f, "dev-r", "C2", now + 86400);
    assert_int_equal(enr_store_revoke_certificate(f->store, ISSUER, "C1", 4, now - 100, NULL, &err), ENR_OK);
    assert_int_equal(enr_store_revoke_certificate(f->store, ISSUER, "C2", 4, now - 50, NULL, &err), ENR_OK);
    assert_int_equal(enr_store_revocation_state(f->store, ISSUER, &count, &latest, &err), ENR_OK);
    assert_int_equal(count, 2);
    assert_int_equal(latest, now - 50);
    assert_int_equal(enr_store_revocation_state(f->store, "CN=Another CA", &count, &latest, &err), ENR_OK);
    assert_int_equal(count, 0);
    assert_int_equal(enr_store_next_crl_number(f->store, "", 1, &n, &err), ENR_E_USAGE);
}

static void test_kill9_keeps_every_reported_certificate(void **state)
{
    fixture *f = *state;
    enr_error err;
    enr_store_close(f->store); /* no connection crosses a fork */
    f->store = NULL;
    serials reported = {0};
    static const int KILL_AFTER[] = {200, 233, 257};
    for (int round = 0; round < 3; round++) {
        int fd;
        pid_t pid = spawn_committer(f->location, round, 1000000, &fd);
        FILE *in = fdopen(fd, "r");
        assert_non_null(in);
        char line[64];
        int seen = 0;
        bool killed = false;
        while (fgets(line, sizeof line, in) != NULL) {
            line[strcspn(line, "\n")] = '\0';
            serials_add(&reported, line);
            if (++seen == KILL_AFTER[round] && !killed) {
                assert_int_equal(kill(pid, SIGKILL), 0);
                killed = true;
            }
        }
        fclose(in);
        int status = 0;
        assert_int_equal(waitpid(pid, &status, 0), pid);
        if (!WIFSIGNALED(status) || WTERMSIG(status) != SIGKILL)
            fail_msg("round %d: the committer ended with status %d before it was killed", round, status);
        assert_true(seen >= KILL_AFTER[round]);

        /* Restart: recovery, integrity, and every acknowledged certificate. */
        assert_int_equal(enr_store_open(f->location, &f->store, &err), ENR_OK);
        if (enr_store_integrity_check(f->store, &err) != ENR_OK)
            fail_msg("round %d: %s", round, err.message);
        for (size_t i = 0; i < reported.count; i++) {
            enr_certificate c;
            if (enr_store_get_certificate(f->store, ISSUER, reported.items[i], &c, &err) != ENR_OK)
                fail_msg("round %d: serial %s was reported committed but is missing: %s", round,
                         reported.items[i], err.message);
            enr_certificate_free(&c);
        }
        enr_certificate_list all;
        assert_int_equal(enr_store_list_certificates(f->store, NULL, &all, &err), ENR_OK);
        assert_true(all.count >= reported.count);
        char (*stored)[ENR_STORE_SERIAL_MAX + 1] = calloc(all.count, sizeof *stored);
        assert_non_null(stored);
        for (size_t i = 0; i < all.count; i++)
            memcpy(stored[i], all.items[i].serial, sizeof stored[i]);
        qsort(stored, all.count, sizeof *stored, compare_serials);
        for (size_t i = 1; i < all.count; i++)
            if (strcmp(stored[i - 1], stored[i]) == 0)
                fail_msg("serial %s stored twice", stored[i]);
        free(stored);
        enr_certificate_list_free(&all);
        enr_store_close(f->store);
        f->store = NULL;
    }
    free(reported.items);
    assert_int_equal(enr_store_open(f->location, &f->store, &err), ENR_OK);
}

static void test_concurrent_writers_wait_instead_of_failing(void **state)
{
    fixture *f = *state;
    enr_error err;
    enr_store_close(f->store);
    f->store = NULL;
    /* A fresh directory: the writers also race to create and migrate it. */
    char fresh[512];
    fresh_location(f, "fresh", fresh, sizeof fresh);
    enum { WRITERS = 3, EACH = 150 };
    pid_t pids[WRITERS];
    int fds[WRITERS];
    for (int w = 0; w < WRITERS; w++)
        pids[w] = spawn_committer(fresh, 10 + w, EACH, &fds[w]);
    for (int w = 0; w < WRITERS; w++) {
        char buf[4096];
        while (read(fds[w], buf, sizeof buf) > 0)
            ;
        close(fds[w]);
        int status = 0;
        assert_int_equal(waitpid(pids[w], &status, 0), pids[w]);
        if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
            fail_msg("writer %d failed (status %d): SQLITE_BUSY should have waited", w, status);
    }
    assert_int_equal(enr_store_open(fresh, &f->store, &err), ENR_OK);
    enr_certificate_list all;
    assert_int_equal(enr_store_list_certificates(f->store, NULL, &all, &err), ENR_OK);
    assert_int_equal(all.count, WRITERS * EACH);
    enr_certificate_list_free(&all);
}

/* enrolld opens one connection per worker in one process. Opening the
 * second must not drop the first one's POSIX locks (closing any descriptor
 * of the file does that), or another process checkpoints and truncates the
 * WAL under the first, and its later commits vanish from everyone else's
 * view until it closes. Found by the registration integration test. */
static void test_second_connection_keeps_the_first_visible(void **state)
{
    fixture *f = *state;
    if (PG_URL != NULL)
        skip(); /* SQLite's POSIX locks */
    enr_error err;
    enr_store *second = NULL;
    assert_int_equal(enr_store_open_sqlite(f->dir, &second, &err), ENR_OK);
    char cmd[512];
    for (int round = 1; round <= 3; round++) {
        enr_audit_event audit = {0};
        snprintf(audit.kind, sizeof audit.kind, "probe");
        snprintf(audit.outcome, sizeof audit.outcome, "ok");
        assert_int_equal(enr_store_record_audit(f->store, &audit, &err), ENR_OK);
        /* Another process reads (and, closing last, would checkpoint). */
        snprintf(cmd, sizeof cmd, "test \"$(sqlite3 %s/enroll.db \"select count(*) from audit_event where kind='probe'\")\" = %d",
                 f->dir, round);
        if (system(cmd) != 0)
            fail_msg("round %d: another process does not see the commit", round);
    }
    enr_store_close(second);
}

int main(void)
{
    PG_URL = getenv("ENROLL_TEST_PG_URL");
    if (PG_URL != NULL && PG_URL[0] == '\0')
        PG_URL = NULL;
    if (mkdtemp(sqlite_tmpdir) == NULL || setenv("SQLITE_TMPDIR", sqlite_tmpdir, 1) != 0)
        return 1;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_schema_created_and_reopen_is_idempotent, setup, teardown),
        cmocka_unit_test_setup_teardown(test_newer_schema_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_open_refusals, setup, teardown),
        cmocka_unit_test_setup_teardown(test_database_files_are_private, setup, teardown),
        cmocka_unit_test_setup_teardown(test_ca_records, setup, teardown),
        cmocka_unit_test_setup_teardown(test_credential_policies, setup, teardown),
        cmocka_unit_test_setup_teardown(test_policy_urls, setup, teardown),
        cmocka_unit_test_setup_teardown(test_enrollments, setup, teardown),
        cmocka_unit_test_setup_teardown(test_commit_and_lookups, setup, teardown),
        cmocka_unit_test_setup_teardown(test_group_commit, setup, teardown),
        cmocka_unit_test_setup_teardown(test_compromised_keys_are_blocked, setup, teardown),
        cmocka_unit_test_setup_teardown(test_registration_stays_with_its_enrollment, setup, teardown),
        cmocka_unit_test_setup_teardown(test_key_rotation, setup, teardown),
        cmocka_unit_test_setup_teardown(test_est_fields, setup, teardown),
        cmocka_unit_test_setup_teardown(test_group_commit_rechecks_the_credential, setup, teardown),
        cmocka_unit_test_setup_teardown(test_group_commit_within_one_batch, setup, teardown),
        cmocka_unit_test_setup_teardown(test_group_commit_writes_no_temporary_file, setup, teardown),
        cmocka_unit_test_setup_teardown(test_commit_is_all_or_nothing, setup, teardown),
        cmocka_unit_test_setup_teardown(test_rejection_writes_only_audit, setup, teardown),
        cmocka_unit_test_setup_teardown(test_list_registrations, setup, teardown),
        cmocka_unit_test_setup_teardown(test_registration_disable_enable, setup, teardown),
        cmocka_unit_test_setup_teardown(test_certificate_filters, setup, teardown),
        cmocka_unit_test_setup_teardown(test_revocation, setup, teardown),
        cmocka_unit_test_setup_teardown(test_certificate_from_x509, setup, teardown),
        cmocka_unit_test_setup_teardown(test_issue_records_through_store, setup, teardown),
        cmocka_unit_test_setup_teardown(test_errors_never_show_a_key, setup, teardown),
        cmocka_unit_test_setup_teardown(test_backend_sees_checked_values, setup, teardown),
        cmocka_unit_test_setup_teardown(test_crl_numbers, setup, teardown),
        cmocka_unit_test_setup_teardown(test_audit_retention, setup, teardown),
        cmocka_unit_test_setup_teardown(test_kill9_keeps_every_reported_certificate, setup, teardown),
        cmocka_unit_test_setup_teardown(test_concurrent_writers_wait_instead_of_failing, setup, teardown),
        cmocka_unit_test_setup_teardown(test_second_connection_keeps_the_first_visible, setup, teardown),
    };
    int failed = cmocka_run_group_tests(tests, NULL, NULL);
    rmdir(sqlite_tmpdir);
    return failed;
}
