/* The store's AWS fleet provisioning: templates (checked at creation, with
 * their claim CAs), pending certificates and ownership tokens (hashed,
 * single use, bound to the connection, one hour), RegisterThing's
 * activation with the collision rule and rotation, the sweep of expired
 * pending certificates, and the migration from schema version 3. Every
 * refusal is checked to leave the store as it was. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <libpq-fe.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "enroll/store.h"

static const char ISSUER[] = "CN=Test Issuing CA";
static const char SPKI[] = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";
/* The claim certificate's fingerprint (a connection that has no thing). */
static const char CLAIM_A[] = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
static const char CLAIM_B[] = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";
static const time_t T0 = 1800000000; /* the injected clock */

static const char TEMPLATE[] =
    "{\"Parameters\": {\"SerialNumber\": {\"Type\": \"String\"}},"
    " \"Resources\": {\"thing\": {\"Type\": \"AWS::IoT::Thing\","
    "  \"Properties\": {\"ThingName\": {\"Ref\": \"SerialNumber\"}}}}}";
/* A Ref to a parameter that is not declared: it can never be evaluated. */
static const char BAD_TEMPLATE[] =
    "{\"Resources\": {\"thing\": {\"Type\": \"AWS::IoT::Thing\","
    "  \"Properties\": {\"ThingName\": {\"Fn::Join\": [\"-\", [\"x\", {\"Ref\": \"Nope\"}]]}}}}}";

/* Set (ENROLL_TEST_PG_URL, tests/pg/pg_run.sh) to run every test against
 * PostgreSQL instead of SQLite. */
static const char *PG_URL;

static PGconn *pg_connect(void)
{
    PGconn *pg = PQconnectdb(PG_URL);
    if (PQstatus(pg) != CONNECTION_OK)
        fail_msg("cannot connect to %s: %s", PG_URL, PQerrorMessage(pg));
    PQclear(PQexec(pg, "SET client_min_messages TO warning"));
    return pg;
}

static void pg_exec_raw(const char *sql)
{
    PGconn *pg = pg_connect();
    PGresult *res = PQexec(pg, sql);
    if (PQresultStatus(res) != PGRES_COMMAND_OK && PQresultStatus(res) != PGRES_TUPLES_OK)
        fail_msg("%s: %s", sql, PQerrorMessage(pg));
    PQclear(res);
    PQfinish(pg);
}

typedef struct fixture {
    char dir[64];
    enr_store *store;
    unsigned char *ca_der;
    size_t ca_der_len;
    /* Fake certificate bodies: distinct bytes, so distinct fingerprints. */
    unsigned char der[16][5];
} fixture;

static X509 *self_signed(const char *cn)
{
    EVP_PKEY *key = EVP_EC_gen("P-256");
    assert_non_null(key);
    X509 *x = X509_new();
    assert_non_null(x);
    assert_int_equal(X509_set_version(x, X509_VERSION_3), 1);
    assert_int_equal(ASN1_INTEGER_set(X509_get_serialNumber(x), 7), 1);
    assert_non_null(X509_gmtime_adj(X509_getm_notBefore(x), 0));
    assert_non_null(X509_gmtime_adj(X509_getm_notAfter(x), 86400));
    X509_NAME *name = X509_get_subject_name(x);
    assert_int_equal(X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, (const unsigned char *)cn, -1, -1, 0), 1);
    assert_int_equal(X509_set_issuer_name(x, name), 1);
    assert_int_equal(X509_set_pubkey(x, key), 1);
    assert_true(X509_sign(x, key, EVP_sha256()) > 0);
    EVP_PKEY_free(key);
    return x;
}

static void put_ca(fixture *f, const char *name, enr_ca_role role, bool verified)
{
    enr_error err;
    enr_ca_record ca = {.role = role};
    snprintf(ca.name, sizeof ca.name, "%s", name);
    ca.certificate.data = f->ca_der;
    ca.certificate.len = f->ca_der_len;
    if (role == ENR_CA_ISSUING)
        snprintf(ca.key_ref, sizeof ca.key_ref, "/etc/enroll/%s", name);
    else
        snprintf(ca.verification_code, sizeof ca.verification_code, "code-%s", name);
    if (enr_store_create_ca(f->store, &ca, NULL, &err) != ENR_OK)
        fail_msg("create CA %s: %s", name, err.message);
    if (verified && enr_store_set_ca_verification(f->store, name, "", true, NULL, &err) != ENR_OK)
        fail_msg("verify CA %s: %s", name, err.message);
}

static enr_aws_template_record template_record(const char *name, const char *body)
{
    enr_aws_template_record t = {0};
    snprintf(t.name, sizeof t.name, "%s", name);
    t.body = (char *)body;
    snprintf(t.claim_cas[0], sizeof t.claim_cas[0], "claim-ca");
    t.claim_ca_count = 1;
    snprintf(t.policy, sizeof t.policy, "p30");
    return t;
}

static int setup(void **state)
{
    fixture *f = calloc(1, sizeof *f);
    if (f == NULL)
        return -1;
    snprintf(f->dir, sizeof f->dir, "/tmp/enroll-test-store-aws-XXXXXX");
    if (mkdtemp(f->dir) == NULL)
        return -1;
    if (PG_URL != NULL)
        pg_exec_raw("DROP SCHEMA public CASCADE; CREATE SCHEMA public;");
    enr_error err;
    if (enr_store_open(PG_URL != NULL ? PG_URL : f->dir, &f->store, &err) != ENR_OK) {
        fprintf(stderr, "setup: %s\n", err.message);
        return -1;
    }
    X509 *x = self_signed("Claim CA");
    int len = i2d_X509(x, &f->ca_der);
    X509_free(x);
    if (len <= 0)
        return -1;
    f->ca_der_len = (size_t)len;
    for (size_t i = 0; i < 16; i++) {
        unsigned char d[5] = {0x30, 0x03, 0x02, 0x01, (unsigned char)(i + 1)};
        memcpy(f->der[i], d, sizeof d);
    }
    *state = f;
    put_ca(f, "issuing", ENR_CA_ISSUING, false);
    put_ca(f, "claim-ca", ENR_CA_BOOTSTRAP, true);
    put_ca(f, "unproven", ENR_CA_BOOTSTRAP, false);
    enr_credential_policy p = {0};
    snprintf(p.name, sizeof p.name, "p30");
    snprintf(p.validity, sizeof p.validity, "P30D");
    snprintf(p.renewal_window, sizeof p.renewal_window, "P7D");
    snprintf(p.ca_name, sizeof p.ca_name, "issuing");
    snprintf(p.key_types, sizeof p.key_types, "ec-p256");
    if (enr_store_create_policy(f->store, &p, NULL, &err) != ENR_OK)
        return -1;
    enr_aws_template_record t = template_record("fleet", TEMPLATE);
    if (enr_store_create_aws_template(f->store, &t, NULL, &err) != ENR_OK) {
        fprintf(stderr, "setup: %s\n", err.message);
        return -1;
    }
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

static sqlite3 *raw_db(const fixture *f)
{
    char path[128];
    snprintf(path, sizeof path, "%s/enroll.db", f->dir);
    sqlite3 *db = NULL;
    assert_int_equal(sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE, NULL), SQLITE_OK);
    return db;
}

static long long raw_count(const fixture *f, const char *sql)
{
    if (PG_URL != NULL) {
        PGconn *pg = pg_connect();
        PGresult *res = PQexec(pg, sql);
        if (PQresultStatus(res) != PGRES_TUPLES_OK)
            fail_msg("%s: %s", sql, PQerrorMessage(pg));
        long long n = atoll(PQgetvalue(res, 0, 0));
        PQclear(res);
        PQfinish(pg);
        return n;
    }
    sqlite3 *db = raw_db(f);
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK)
        fail_msg("%s: %s", sql, sqlite3_errmsg(db));
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    long long n = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    sqlite3_close(db);
    return n;
}

/* Every row a RegisterThing or a template change could touch, as text:
 * equal snapshots mean nothing was written. */
static char *snapshot(const fixture *f)
{
    static const char *const QUERIES[] = {
        "SELECT name || template || attributes_json || groups_json || COALESCE(thing_type, '') || enabled || "
        "updated_at FROM aws_thing ORDER BY name",
        "SELECT issuer || serial || COALESCE(thing, '-') || status || updated_at FROM aws_certificate ORDER BY serial",
        "SELECT token_sha256 || COALESCE(CAST(consumed_at AS TEXT), '-') FROM aws_ownership_token ORDER BY token_sha256",
        "SELECT serial || revoked || COALESCE(CAST(revocation_reason AS TEXT), '-') FROM certificate ORDER BY id",
        "SELECT name || enabled || updated_at FROM aws_template ORDER BY name",
        "SELECT template || ca_name FROM aws_template_claim_ca ORDER BY template, position",
        "SELECT COUNT(*) FROM audit_event",
        NULL};
    size_t cap = 1 << 16, used = 0;
    char *out = calloc(1, cap);
    assert_non_null(out);
    if (PG_URL != NULL) {
        PGconn *pg = pg_connect();
        for (size_t i = 0; QUERIES[i] != NULL; i++) {
            PGresult *res = PQexec(pg, QUERIES[i]);
            if (PQresultStatus(res) != PGRES_TUPLES_OK)
                fail_msg("%s: %s", QUERIES[i], PQerrorMessage(pg));
            for (int r = 0; r < PQntuples(res); r++)
                used += (size_t)snprintf(out + used, cap - used, "%s\n", PQgetvalue(res, r, 0));
            PQclear(res);
            used += (size_t)snprintf(out + used, cap - used, "--\n");
        }
        PQfinish(pg);
        return out;
    }
    sqlite3 *db = raw_db(f);
    for (size_t i = 0; QUERIES[i] != NULL; i++) {
        sqlite3_stmt *st = NULL;
        assert_int_equal(sqlite3_prepare_v2(db, QUERIES[i], -1, &st, NULL), SQLITE_OK);
        while (sqlite3_step(st) == SQLITE_ROW)
            used += (size_t)snprintf(out + used, cap - used, "%s\n", (const char *)sqlite3_column_text(st, 0));
        sqlite3_finalize(st);
        used += (size_t)snprintf(out + used, cap - used, "--\n");
    }
    sqlite3_close(db);
    return out;
}

static void fingerprint_of(const unsigned char *der, size_t len, char out[65])
{
    unsigned char md[32];
    unsigned int n = 0;
    assert_int_equal(EVP_Digest(der, len, md, &n, EVP_sha256(), NULL), 1);
    for (size_t i = 0; i < 32; i++)
        snprintf(out + 2 * i, 3, "%02x", md[i]);
}

/* A certificate "issued" through the MQTT API: serial N, body der[N-1]. */
static enr_certificate issued(fixture *f, int n)
{
    enr_certificate c = {0};
    snprintf(c.issuer, sizeof c.issuer, "%s", ISSUER);
    snprintf(c.serial, sizeof c.serial, "%02X", n);
    snprintf(c.subject, sizeof c.subject, "CN=device-%d", n);
    snprintf(c.spki_sha256, sizeof c.spki_sha256, "%s", SPKI);
    c.not_before = T0;
    c.not_after = T0 + 30 * 86400;
    c.der.data = f->der[n - 1];
    c.der.len = sizeof f->der[n - 1];
    return c;
}

static void pending(fixture *f, int n, const char *connection, time_t now, char token[ENR_AWS_TOKEN_MAX + 1])
{
    enr_certificate c = issued(f, n);
    enr_aws_pending p = {.certificate = &c, .template_name = "fleet", .connection_fingerprint = connection, .now = now};
    enr_error err;
    if (enr_store_aws_create_pending(f->store, &p, token, NULL, &err) != ENR_OK)
        fail_msg("pending %d: %s", n, err.message);
}

static enr_code register_thing(fixture *f, const char *token, const char *connection, const char *thing, time_t now,
                               enr_aws_register_result *result, enr_error *err)
{
    enr_aws_register r = {.token = token,
                          .connection_fingerprint = connection,
                          .template_name = "fleet",
                          .thing_name = thing,
                          .attributes_json = "{\"room\": \"7\", \"floor\": \"2\"}",
                          .groups_json = "[\"sensors\"]",
                          .thing_type = "Sensor",
                          .now = now};
    return enr_store_aws_register_thing(f->store, &r, result, NULL, err);
}

static void register_ok(fixture *f, const char *token, const char *connection, const char *thing, time_t now,
                        enr_aws_register_result *result)
{
    enr_error err;
    if (register_thing(f, token, connection, thing, now, result, &err) != ENR_OK)
        fail_msg("register %s: %s", thing, err.message);
}

/* A refusal with this reason that writes nothing. */
static void register_refused(fixture *f, const char *token, const char *connection, const char *thing, time_t now,
                             enr_reason reason)
{
    char *before = snapshot(f);
    enr_aws_register_result result;
    enr_error err = {0};
    enr_code rc = register_thing(f, token, connection, thing, now, &result, &err);
    if (rc != ENR_E_POLICY || err.reason != reason)
        fail_msg("expected reason %d, got code %d reason %d: %s", reason, rc, err.reason, err.message);
    assert_int_equal(result.superseded.count, 0);
    char *after = snapshot(f);
    assert_string_equal(before, after);
    free(before);
    free(after);
}

static enr_aws_cert_status status_of(fixture *f, const char *thing, const char *serial)
{
    enr_aws_thing t;
    enr_error err;
    if (enr_store_get_aws_thing(f->store, thing, &t, &err) != ENR_OK)
        fail_msg("thing %s: %s", thing, err.message);
    enr_aws_cert_status s = 0;
    for (size_t i = 0; i < t.certificate_count; i++)
        if (strcmp(t.certificates[i].serial, serial) == 0)
            s = t.certificates[i].status;
    enr_aws_thing_free(&t);
    return s;
}

/* ---- templates ---------------------------------------------------------- */

static void test_template_round_trip(void **state)
{
    fixture *f = *state;
    enr_error err;
    static const char CA_PEM_HEAD[] = "-----BEGIN CERTIFICATE-----\n";
    /* A hook: https, a CA, the default timeout. */
    X509 *x = self_signed("Hook CA");
    BIO *bio = BIO_new(BIO_s_mem());
    assert_int_equal(PEM_write_bio_X509(bio, x), 1);
    char *pem = NULL;
    long pem_len = BIO_get_mem_data(bio, &pem);
    char *ca_pem = strndup(pem, (size_t)pem_len);
    BIO_free(bio);
    X509_free(x);
    assert_memory_equal(ca_pem, CA_PEM_HEAD, sizeof CA_PEM_HEAD - 1);

    enr_aws_template_record t = template_record("with-hook_2", TEMPLATE);
    snprintf(t.hook_url, sizeof t.hook_url, "https://hook.example.com:8443/pre");
    t.hook_ca_pem = ca_pem;
    t.allow_server_keygen = true;
    assert_int_equal(enr_store_create_aws_template(f->store, &t, NULL, &err), ENR_OK);
    assert_int_equal(t.hook_timeout_ms, 5000);

    enr_aws_template_record got;
    assert_int_equal(enr_store_get_aws_template(f->store, "with-hook_2", &got, &err), ENR_OK);
    assert_string_equal(got.body, TEMPLATE);
    assert_string_equal(got.hook_url, "https://hook.example.com:8443/pre");
    assert_string_equal(got.hook_ca_pem, ca_pem);
    assert_int_equal(got.hook_timeout_ms, 5000);
    assert_true(got.allow_server_keygen);
    assert_true(got.enabled);
    assert_int_equal(got.claim_ca_count, 1);
    assert_string_equal(got.claim_cas[0], "claim-ca");
    assert_string_equal(got.policy, "p30");
    enr_aws_template_record_free(&got);
    /* The one made in setup: no hook, no server key generation. */
    assert_int_equal(enr_store_get_aws_template(f->store, "fleet", &got, &err), ENR_OK);
    assert_false(got.allow_server_keygen);
    assert_string_equal(got.hook_url, "");
    assert_null(got.hook_ca_pem);
    assert_int_equal(got.hook_timeout_ms, 0);
    enr_aws_template_record_free(&got);

    enr_aws_template_list list;
    assert_int_equal(enr_store_list_aws_templates(f->store, &list, &err), ENR_OK);
    assert_int_equal(list.count, 2);
    assert_string_equal(list.items[0].name, "fleet");
    assert_string_equal(list.items[1].name, "with-hook_2");
    assert_int_equal(list.items[1].claim_ca_count, 1);
    enr_aws_template_list_free(&list);

    assert_int_equal(enr_store_set_aws_template_enabled(f->store, "fleet", false, NULL, &err), ENR_OK);
    assert_int_equal(enr_store_set_aws_template_enabled(f->store, "fleet", false, NULL, &err), ENR_OK);
    assert_int_equal(enr_store_get_aws_template(f->store, "fleet", &got, &err), ENR_OK);
    assert_false(got.enabled);
    enr_aws_template_record_free(&got);
    /* A disabled template issues nothing. */
    char token[ENR_AWS_TOKEN_MAX + 1];
    enr_certificate c = issued(f, 1);
    enr_aws_pending p = {.certificate = &c, .template_name = "fleet", .connection_fingerprint = CLAIM_A};
    assert_int_equal(enr_store_aws_create_pending(f->store, &p, token, NULL, &err), ENR_E_POLICY);
    assert_int_equal(err.reason, ENR_R_TEMPLATE_DISABLED);
    assert_int_equal(raw_count(f, "SELECT COUNT(*) FROM certificate"), 0);
    assert_int_equal(enr_store_set_aws_template_enabled(f->store, "fleet", true, NULL, &err), ENR_OK);

    assert_int_equal(enr_store_delete_aws_template(f->store, "with-hook_2", NULL, &err), ENR_OK);
    assert_int_equal(enr_store_get_aws_template(f->store, "with-hook_2", &got, &err), ENR_E_NOTFOUND);
    assert_int_equal(raw_count(f, "SELECT COUNT(*) FROM aws_template_claim_ca WHERE template = 'with-hook_2'"), 0);
    assert_int_equal(enr_store_delete_aws_template(f->store, "with-hook_2", NULL, &err), ENR_E_NOTFOUND);
    assert_int_equal(enr_store_set_aws_template_enabled(f->store, "nope", true, NULL, &err), ENR_E_NOTFOUND);
    free(ca_pem);
}

static void test_template_refusals_write_nothing(void **state)
{
    fixture *f = *state;
    char *before = snapshot(f);
    enr_error err;
    enr_aws_template_record t;

    t = template_record("bad", BAD_TEMPLATE);
    assert_int_equal(enr_store_create_aws_template(f->store, &t, NULL, &err), ENR_E_PARSE);
    /* The message names the place inside the template. */
    assert_non_null(strstr(err.message, "Resources.thing.Properties.ThingName"));
    assert_non_null(strstr(err.message, "template 'bad'"));

    t = template_record("not json", TEMPLATE);
    assert_int_equal(enr_store_create_aws_template(f->store, &t, NULL, &err), ENR_E_USAGE);
    t = template_record("dots.not.allowed", TEMPLATE);
    assert_int_equal(enr_store_create_aws_template(f->store, &t, NULL, &err), ENR_E_USAGE);
    t = template_record("fleet", TEMPLATE);
    assert_int_equal(enr_store_create_aws_template(f->store, &t, NULL, &err), ENR_E_EXISTS);
    t = template_record("nobody", "{\"Resources\": {}}");
    assert_int_equal(enr_store_create_aws_template(f->store, &t, NULL, &err), ENR_E_PARSE);

    t = template_record("unproven", TEMPLATE);
    snprintf(t.claim_cas[0], sizeof t.claim_cas[0], "unproven");
    assert_int_equal(enr_store_create_aws_template(f->store, &t, NULL, &err), ENR_E_POLICY);
    assert_int_equal(err.reason, ENR_R_CA_UNVERIFIED);
    snprintf(t.claim_cas[0], sizeof t.claim_cas[0], "issuing");
    assert_int_equal(enr_store_create_aws_template(f->store, &t, NULL, &err), ENR_E_POLICY);
    assert_int_equal(err.reason, ENR_R_CA_UNVERIFIED);
    snprintf(t.claim_cas[0], sizeof t.claim_cas[0], "missing");
    assert_int_equal(enr_store_create_aws_template(f->store, &t, NULL, &err), ENR_E_NOTFOUND);
    /* The second of two claim CAs is checked too, and the first row rolls back. */
    t = template_record("two", TEMPLATE);
    snprintf(t.claim_cas[1], sizeof t.claim_cas[1], "unproven");
    t.claim_ca_count = 2;
    assert_int_equal(enr_store_create_aws_template(f->store, &t, NULL, &err), ENR_E_POLICY);
    snprintf(t.claim_cas[1], sizeof t.claim_cas[1], "claim-ca");
    assert_int_equal(enr_store_create_aws_template(f->store, &t, NULL, &err), ENR_E_USAGE); /* named twice */
    t = template_record("none", TEMPLATE);
    t.claim_ca_count = 0;
    assert_int_equal(enr_store_create_aws_template(f->store, &t, NULL, &err), ENR_E_USAGE);

    t = template_record("nopolicy", TEMPLATE);
    snprintf(t.policy, sizeof t.policy, "p99");
    assert_int_equal(enr_store_create_aws_template(f->store, &t, NULL, &err), ENR_E_NOTFOUND);

    /* Hooks: https only, with a CA, a timeout in range. */
    t = template_record("hook", TEMPLATE);
    snprintf(t.hook_url, sizeof t.hook_url, "http://hook.example.com/");
    t.hook_ca_pem = "-----BEGIN CERTIFICATE-----\n";
    assert_int_equal(enr_store_create_aws_template(f->store, &t, NULL, &err), ENR_E_USAGE);
    assert_non_null(strstr(err.message, "https://"));
    snprintf(t.hook_url, sizeof t.hook_url, "https://hook.example.com/");
    assert_int_equal(enr_store_create_aws_template(f->store, &t, NULL, &err), ENR_E_USAGE); /* no certificate */
    t.hook_ca_pem = NULL;
    assert_int_equal(enr_store_create_aws_template(f->store, &t, NULL, &err), ENR_E_USAGE);
    snprintf(t.hook_url, sizeof t.hook_url, "https://user:pw@hook.example.com/");
    assert_int_equal(enr_store_create_aws_template(f->store, &t, NULL, &err), ENR_E_USAGE);
    t = template_record("hook", TEMPLATE);
    t.hook_timeout_ms = 5000; /* without a hook */
    assert_int_equal(enr_store_create_aws_template(f->store, &t, NULL, &err), ENR_E_USAGE);

    char *after = snapshot(f);
    assert_string_equal(before, after);
    free(before);
    free(after);
}

/* ---- tokens ------------------------------------------------------------- */

static void test_token_is_random_hashed_and_single_use(void **state)
{
    fixture *f = *state;
    char token[ENR_AWS_TOKEN_MAX + 1], other[ENR_AWS_TOKEN_MAX + 1];
    pending(f, 1, CLAIM_A, T0, token);
    pending(f, 2, CLAIM_A, T0, other);
    /* 32 random bytes in base64url without padding. */
    assert_int_equal(strlen(token), 43);
    assert_int_equal(strspn(token, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"), 43);
    assert_string_not_equal(token, other);
    /* Stored only as its hash: the text is nowhere in the database. */
    char sql[256];
    snprintf(sql, sizeof sql,
             "SELECT COUNT(*) FROM aws_ownership_token WHERE token_sha256 = '%s' OR issuer = '%s' OR "
             "connection_fingerprint = '%s'",
             token, token, token);
    assert_int_equal(raw_count(f, sql), 0);
    assert_int_equal(raw_count(f, "SELECT COUNT(*) FROM aws_certificate WHERE status = 'pending'"), 2);
    assert_int_equal(raw_count(f, "SELECT COUNT(*) FROM certificate WHERE registration_id IS NULL"), 2);

    enr_aws_register_result result;
    register_ok(f, token, CLAIM_A, "dev-1", T0 + 10, &result);
    assert_true(result.thing_created);
    assert_string_equal(result.serial, "01");
    assert_int_equal(result.superseded.count, 0);
    enr_aws_register_result_free(&result);

    enr_aws_thing t;
    enr_error err;
    assert_int_equal(enr_store_get_aws_thing(f->store, "dev-1", &t, &err), ENR_OK);
    assert_string_equal(t.template_name, "fleet");
    assert_string_equal(t.attributes_json, "{\"floor\":\"2\",\"room\":\"7\"}"); /* canonical */
    assert_string_equal(t.groups_json, "[\"sensors\"]");
    assert_string_equal(t.thing_type, "Sensor");
    assert_true(t.enabled);
    assert_int_equal(t.created_at, T0 + 10);
    assert_int_equal(t.certificate_count, 1);
    assert_int_equal(t.certificates[0].status, ENR_AWS_CERT_ACTIVE);
    assert_string_equal(enr_aws_cert_status_name(t.certificates[0].status), "active");
    enr_aws_thing_free(&t);

    /* Reused: refused, whoever asks, and nothing changes. */
    register_refused(f, token, CLAIM_A, "dev-1", T0 + 11, ENR_R_TOKEN_USED);
    register_refused(f, token, CLAIM_A, "dev-9", T0 + 11, ENR_R_TOKEN_USED);
    /* Never issued, or not even token-shaped. */
    register_refused(f, "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", CLAIM_A, "dev-2", T0 + 11, ENR_R_TOKEN_UNKNOWN);
    register_refused(f, "", CLAIM_A, "dev-2", T0 + 11, ENR_R_TOKEN_UNKNOWN);
    /* The second token still works. */
    register_ok(f, other, CLAIM_A, "dev-2", T0 + 12, &result);
    enr_aws_register_result_free(&result);
}

static void test_token_expires_after_an_hour(void **state)
{
    fixture *f = *state;
    char token[ENR_AWS_TOKEN_MAX + 1], late[ENR_AWS_TOKEN_MAX + 1];
    pending(f, 1, CLAIM_A, T0, token);
    pending(f, 2, CLAIM_A, T0, late);
    register_refused(f, late, CLAIM_A, "dev-2", T0 + ENR_AWS_TOKEN_LIFETIME, ENR_R_TOKEN_EXPIRED);
    register_refused(f, late, CLAIM_A, "dev-2", T0 + 86400, ENR_R_TOKEN_EXPIRED);
    enr_aws_register_result result;
    register_ok(f, token, CLAIM_A, "dev-1", T0 + ENR_AWS_TOKEN_LIFETIME - 1, &result);
    enr_aws_register_result_free(&result);
}

static void test_token_of_another_connection_or_template(void **state)
{
    fixture *f = *state;
    enr_error err;
    char token[ENR_AWS_TOKEN_MAX + 1];
    pending(f, 1, CLAIM_A, T0, token);
    register_refused(f, token, CLAIM_B, "dev-1", T0 + 1, ENR_R_TOKEN_WRONG_CONNECTION);

    enr_aws_template_record t = template_record("other", TEMPLATE);
    assert_int_equal(enr_store_create_aws_template(f->store, &t, NULL, &err), ENR_OK);
    char *before = snapshot(f);
    enr_aws_register r = {.token = token, .connection_fingerprint = CLAIM_A, .template_name = "other",
                          .thing_name = "dev-1", .now = T0 + 1};
    enr_aws_register_result result;
    assert_int_equal(enr_store_aws_register_thing(f->store, &r, &result, NULL, &err), ENR_E_POLICY);
    assert_int_equal(err.reason, ENR_R_TOKEN_TEMPLATE_MISMATCH);
    char *after = snapshot(f);
    assert_string_equal(before, after);
    free(before);
    free(after);

    /* An operator revoked the pending certificate: it cannot be activated. */
    assert_int_equal(enr_store_revoke_certificate(f->store, ISSUER, "01", 0, T0 + 2, NULL, &err), ENR_OK);
    register_refused(f, token, CLAIM_A, "dev-1", T0 + 3, ENR_R_CREDENTIAL_REVOKED);
}

/* ---- things: collisions and rotation ----------------------------------- */

static void test_thing_name_collision(void **state)
{
    fixture *f = *state;
    char a[ENR_AWS_TOKEN_MAX + 1], b[ENR_AWS_TOKEN_MAX + 1];
    enr_aws_register_result result;
    pending(f, 1, CLAIM_A, T0, a);
    register_ok(f, a, CLAIM_A, "dev-1", T0 + 1, &result);
    enr_aws_register_result_free(&result);
    /* Another device, through a claim certificate (even the same claim:
     * claims are shared), asks for the same thing: it has an active
     * certificate that is not this connection's. */
    pending(f, 2, CLAIM_B, T0 + 2, b);
    register_refused(f, b, CLAIM_B, "dev-1", T0 + 3, ENR_R_THING_OWNED);
    /* The refusal wrote nothing: the token still registers another name. */
    register_ok(f, b, CLAIM_B, "dev-2", T0 + 4, &result);
    enr_aws_register_result_free(&result);
    assert_int_equal(status_of(f, "dev-1", "01"), ENR_AWS_CERT_ACTIVE);

    /* A thing without a live active certificate (its certificate was
     * revoked) may be provisioned again. */
    enr_error err;
    assert_int_equal(enr_store_revoke_certificate(f->store, ISSUER, "01", 1, T0 + 5, NULL, &err), ENR_OK);
    char c[ENR_AWS_TOKEN_MAX + 1];
    pending(f, 3, CLAIM_B, T0 + 6, c);
    register_ok(f, c, CLAIM_B, "dev-1", T0 + 7, &result);
    assert_false(result.thing_created);
    assert_int_equal(result.superseded.count, 1); /* the revoked one is marked superseded */
    enr_aws_register_result_free(&result);
    assert_int_equal(status_of(f, "dev-1", "01"), ENR_AWS_CERT_SUPERSEDED);
    assert_int_equal(raw_count(f, "SELECT revocation_reason FROM certificate WHERE serial = '01'"), 1);
}

static void test_rotation_supersedes_and_revokes(void **state)
{
    fixture *f = *state;
    enr_error err;
    char token[ENR_AWS_TOKEN_MAX + 1], fp[3][65];
    enr_aws_register_result result;
    for (int i = 0; i < 3; i++)
        fingerprint_of(f->der[i], sizeof f->der[i], fp[i]);
    pending(f, 1, CLAIM_A, T0, token);
    register_ok(f, token, CLAIM_A, "dev-1", T0 + 1, &result);
    enr_aws_register_result_free(&result);

    /* Renewal authenticated by the current certificate, twice. */
    for (int n = 2; n <= 3; n++) {
        time_t now = T0 + 100 * n;
        pending(f, n, fp[n - 2], now, token);
        register_ok(f, token, fp[n - 2], "dev-1", now + 1, &result);
        assert_false(result.thing_created);
        assert_int_equal(result.superseded.count, 1);
        char serial[3];
        snprintf(serial, sizeof serial, "%02X", n - 1);
        assert_string_equal(result.superseded.items[0].serial, serial);
        assert_true(result.superseded.items[0].revoked);
        assert_int_equal(result.superseded.items[0].revocation_reason, CRL_REASON_SUPERSEDED);
        enr_aws_register_result_free(&result);
        enr_certificate c;
        assert_int_equal(enr_store_get_certificate(f->store, ISSUER, serial, &c, &err), ENR_OK);
        assert_true(c.revoked);
        assert_int_equal(c.revocation_reason, CRL_REASON_SUPERSEDED);
        assert_int_equal(c.revoked_at, now + 1);
        enr_certificate_free(&c);
    }
    enr_aws_thing t;
    assert_int_equal(enr_store_get_aws_thing(f->store, "dev-1", &t, &err), ENR_OK);
    assert_int_equal(t.certificate_count, 3);
    size_t active = 0;
    for (size_t i = 0; i < t.certificate_count; i++)
        active += t.certificates[i].status == ENR_AWS_CERT_ACTIVE;
    assert_int_equal(active, 1);
    assert_int_equal(t.certificates[0].status, ENR_AWS_CERT_SUPERSEDED);
    assert_int_equal(t.certificates[1].status, ENR_AWS_CERT_SUPERSEDED);
    assert_int_equal(t.certificates[2].status, ENR_AWS_CERT_ACTIVE);
    assert_string_equal(t.certificates[2].fingerprint_sha256, fp[2]);
    enr_aws_thing_free(&t);
    assert_int_equal(raw_count(f, "SELECT COUNT(*) FROM aws_certificate WHERE status = 'pending'"), 0);

    /* A device renews its own thing only. */
    pending(f, 4, fp[2], T0 + 1000, token);
    register_refused(f, token, fp[2], "dev-2", T0 + 1001, ENR_R_THING_MISMATCH);
    /* A superseded certificate is no one's: its connection is a stranger. */
    pending(f, 5, fp[0], T0 + 1000, token);
    register_refused(f, token, fp[0], "dev-1", T0 + 1001, ENR_R_THING_OWNED);
}

static void test_disabled_thing(void **state)
{
    fixture *f = *state;
    enr_error err;
    char token[ENR_AWS_TOKEN_MAX + 1], fp[65];
    enr_aws_register_result result;
    pending(f, 1, CLAIM_A, T0, token);
    register_ok(f, token, CLAIM_A, "dev-1", T0 + 1, &result);
    enr_aws_register_result_free(&result);
    assert_int_equal(enr_store_set_aws_thing_enabled(f->store, "dev-1", false, NULL, &err), ENR_OK);
    fingerprint_of(f->der[0], sizeof f->der[0], fp);
    pending(f, 2, fp, T0 + 2, token);
    register_refused(f, token, fp, "dev-1", T0 + 3, ENR_R_THING_DISABLED);
    assert_int_equal(enr_store_set_aws_thing_enabled(f->store, "dev-1", true, NULL, &err), ENR_OK);
    register_ok(f, token, fp, "dev-1", T0 + 4, &result);
    enr_aws_register_result_free(&result);
    assert_int_equal(enr_store_set_aws_thing_enabled(f->store, "dev-9", false, NULL, &err), ENR_E_NOTFOUND);

    enr_aws_thing_list list;
    assert_int_equal(enr_store_list_aws_things(f->store, NULL, &list, &err), ENR_OK);
    assert_int_equal(list.count, 1);
    assert_string_equal(list.items[0].name, "dev-1");
    enr_aws_thing_list_free(&list);
    assert_int_equal(enr_store_list_aws_things(f->store, "other", &list, &err), ENR_OK);
    assert_int_equal(list.count, 0);
    enr_aws_thing_list_free(&list);
    assert_int_equal(enr_store_get_aws_thing(f->store, "bad name!", &(enr_aws_thing){0}, &err), ENR_E_USAGE);
}

/* ---- the sweep ---------------------------------------------------------- */

static void test_sweep_revokes_expired_pending(void **state)
{
    fixture *f = *state;
    enr_error err;
    char used[ENR_AWS_TOKEN_MAX + 1], stale[ENR_AWS_TOKEN_MAX + 1], fresh[ENR_AWS_TOKEN_MAX + 1];
    enr_aws_register_result result;
    pending(f, 1, CLAIM_A, T0, used);
    pending(f, 2, CLAIM_A, T0, stale);
    pending(f, 3, CLAIM_A, T0 + 1800, fresh);
    register_ok(f, used, CLAIM_A, "dev-1", T0 + 5, &result);
    enr_aws_register_result_free(&result);

    enr_certificate_list revoked;
    assert_int_equal(enr_store_aws_sweep_pending(f->store, T0 + ENR_AWS_TOKEN_LIFETIME - 1, 100, NULL, &revoked, &err),
                     ENR_OK);
    assert_int_equal(revoked.count, 0);
    enr_certificate_list_free(&revoked);

    enr_audit_event ev = {0};
    snprintf(ev.kind, sizeof ev.kind, "aws.sweep");
    snprintf(ev.outcome, sizeof ev.outcome, "ok");
    long long audits = raw_count(f, "SELECT COUNT(*) FROM audit_event");
    assert_int_equal(enr_store_aws_sweep_pending(f->store, T0 + ENR_AWS_TOKEN_LIFETIME, 100, &ev, &revoked, &err),
                     ENR_OK);
    assert_int_equal(revoked.count, 1);
    assert_string_equal(revoked.items[0].serial, "02");
    assert_true(revoked.items[0].revoked);
    assert_int_equal(revoked.items[0].revocation_reason, CRL_REASON_CESSATION_OF_OPERATION);
    enr_certificate_list_free(&revoked);
    assert_int_equal(raw_count(f, "SELECT COUNT(*) FROM audit_event"), audits + 1);
    assert_int_equal(raw_count(f, "SELECT COUNT(*) FROM aws_certificate WHERE status = 'revoked' AND serial = '02'"), 1);
    assert_int_equal(raw_count(f, "SELECT revoked FROM certificate WHERE serial = '02'"), 1);
    /* The activated one and the fresh one are untouched; the row stays
     * (revoked, not dropped: the CRL needs it). */
    assert_int_equal(raw_count(f, "SELECT revoked FROM certificate WHERE serial = '01'"), 0);
    assert_int_equal(raw_count(f, "SELECT COUNT(*) FROM aws_certificate WHERE status = 'pending'"), 1);
    /* Nothing left to sweep: no event. */
    assert_int_equal(enr_store_aws_sweep_pending(f->store, T0 + ENR_AWS_TOKEN_LIFETIME, 100, &ev, NULL, &err), ENR_OK);
    assert_int_equal(raw_count(f, "SELECT COUNT(*) FROM audit_event"), audits + 1);
    register_refused(f, stale, CLAIM_A, "dev-2", T0 + ENR_AWS_TOKEN_LIFETIME + 1, ENR_R_TOKEN_EXPIRED);
    assert_int_equal(enr_store_aws_sweep_pending(f->store, 0, 0, NULL, NULL, &err), ENR_E_USAGE);
    /* Later, the fresh one goes too, and the limit bounds a batch. */
    assert_int_equal(enr_store_aws_sweep_pending(f->store, T0 + 1800 + ENR_AWS_TOKEN_LIFETIME, 1, NULL, &revoked, &err),
                     ENR_OK);
    assert_int_equal(revoked.count, 1);
    assert_string_equal(revoked.items[0].serial, "03");
    enr_certificate_list_free(&revoked);
}

/* ---- migration ---------------------------------------------------------- */

/* A database at schema version 3 (what the previous enroll wrote) with a
 * CA and a certificate in it: opening it migrates to the newest version and keeps
 * the rows. Made by taking version 4's tables away again. */
static void test_migration_from_version_3(void **state)
{
    fixture *f = *state;
    char token[ENR_AWS_TOKEN_MAX + 1];
    pending(f, 1, CLAIM_A, T0, token);
    enr_store_close(f->store);
    f->store = NULL;
    static const char DOWNGRADE[] =
        "DROP TABLE aws_ownership_token; DROP TABLE aws_certificate; DROP TABLE aws_thing;"
        "DROP TABLE aws_template_claim_ca; DROP TABLE aws_template; DROP TABLE crl_number;"
        "DROP INDEX certificate_revoked;"
        "ALTER TABLE credential_policy DROP COLUMN ocsp_url; ALTER TABLE credential_policy DROP COLUMN crl_url;"
        "ALTER TABLE enrollment_group DROP COLUMN basic_secret_sha256;"
        "ALTER TABLE individual_enrollment DROP COLUMN basic_secret_sha256;"
        "ALTER TABLE credential_policy DROP COLUMN allow_server_keygen;"
        "ALTER TABLE operation DROP COLUMN certificate_issuer; ALTER TABLE operation DROP COLUMN certificate_serial;"
        "DELETE FROM schema_version WHERE version >= 4;";
    if (PG_URL != NULL) {
        pg_exec_raw(DOWNGRADE);
    } else {
        sqlite3 *db = raw_db(f);
        char *msg = NULL, sql[1024];
        snprintf(sql, sizeof sql, "PRAGMA foreign_keys = OFF; BEGIN; %s COMMIT;", DOWNGRADE);
        if (sqlite3_exec(db, sql, NULL, NULL, &msg) != SQLITE_OK)
            fail_msg("downgrade: %s", msg);
        sqlite3_close(db);
    }
    assert_int_equal(raw_count(f, "SELECT MAX(version) FROM schema_version"), 3);

    enr_error err;
    assert_int_equal(enr_store_open(PG_URL != NULL ? PG_URL : f->dir, &f->store, &err), ENR_OK);
    assert_int_equal(raw_count(f, "SELECT MAX(version) FROM schema_version"), 9);
    assert_int_equal(raw_count(f, "SELECT COUNT(*) FROM certificate WHERE serial = '01'"), 1);
    assert_int_equal(raw_count(f, "SELECT COUNT(*) FROM ca"), 3);
    assert_int_equal(raw_count(f, "SELECT COUNT(*) FROM aws_template"), 0);
    assert_int_equal(enr_store_integrity_check(f->store, &err), ENR_OK);
    enr_aws_template_record t = template_record("fleet", TEMPLATE);
    assert_int_equal(enr_store_create_aws_template(f->store, &t, NULL, &err), ENR_OK);
    pending(f, 2, CLAIM_A, T0, token);
    enr_aws_register_result result;
    register_ok(f, token, CLAIM_A, "dev-1", T0 + 1, &result);
    enr_aws_register_result_free(&result);
}

int main(void)
{
    PG_URL = getenv("ENROLL_TEST_PG_URL");
    if (PG_URL != NULL && PG_URL[0] == '\0')
        PG_URL = NULL;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_template_round_trip, setup, teardown),
        cmocka_unit_test_setup_teardown(test_template_refusals_write_nothing, setup, teardown),
        cmocka_unit_test_setup_teardown(test_token_is_random_hashed_and_single_use, setup, teardown),
        cmocka_unit_test_setup_teardown(test_token_expires_after_an_hour, setup, teardown),
        cmocka_unit_test_setup_teardown(test_token_of_another_connection_or_template, setup, teardown),
        cmocka_unit_test_setup_teardown(test_thing_name_collision, setup, teardown),
        cmocka_unit_test_setup_teardown(test_rotation_supersedes_and_revokes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_disabled_thing, setup, teardown),
        cmocka_unit_test_setup_teardown(test_sweep_revokes_expired_pending, setup, teardown),
        cmocka_unit_test_setup_teardown(test_migration_from_version_3, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
