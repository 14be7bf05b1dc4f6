/* The provisioning core without any transport: attestation alone, the
 * policy gates alone, and whole registrations through enr_provision_submit
 * on an event loop (200, 202 and polls, refusals by their typed reason, a
 * refusal at commit after the 202, createdDateTimeUtc kept). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <event2/event.h>
#include <jansson.h>
#include <openssl/evp.h>
#include <openssl/x509.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "enroll/admin.h"
#include "enroll/ca.h"
#include "enroll/csr.h"
#include "enroll/provision.h"
#include "enroll/pubkey.h"
#include "enroll/sas.h"
#include "enroll/signer.h"
#include "enroll/store.h"

#define SCOPE "0ne00000042"
#define API "2025-07-01-preview"

static char dir[] = "/tmp/enroll-test-provision-XXXXXX";
static char data[600], issuing[600], key_file[600];
static char group_key[128];

static void admin(enr_store *store, const char *command, const char *args, char **result)
{
    enr_admin_context ctx = {.actor = "test_provision"};
    enr_error err;
    char *out = NULL;
    if (enr_admin_execute(store, &ctx, command, args, strlen(args), &out, &err) != ENR_OK)
        fail_msg("%s: %s", command, err.message);
    if (result != NULL)
        *result = out;
    else
        enr_admin_result_free(out);
}

static int setup(void **state)
{
    (void)state;
    if (mkdtemp(dir) == NULL)
        return -1;
    char root[600];
    snprintf(root, sizeof root, "%s/root", dir);
    snprintf(issuing, sizeof issuing, "%s/issuing", dir);
    snprintf(data, sizeof data, "%s/data", dir);
    snprintf(key_file, sizeof key_file, "%s/dev.key", dir);
    enr_error err;
    enr_ca_init_options r = {.dir = root, .subject = "/CN=Test Root", .pathlen = -1};
    enr_ca_init_options i = {.dir = issuing, .subject = "/CN=Test Devices", .pathlen = -1, .parent_dir = root};
    enr_store *store = NULL;
    if (enr_ca_init(&r, &err) != ENR_OK || enr_ca_init(&i, &err) != ENR_OK ||
        enr_key_generate_file(ENR_KEY_EC_P256, key_file, NULL, true, &err) != ENR_OK ||
        enr_store_open_sqlite(data, &store, &err) != ENR_OK) {
        fprintf(stderr, "setup: %s\n", err.message);
        return -1;
    }
    char args[1400];
    snprintf(args, sizeof args, "{\"name\":\"devices\",\"ca_dir\":\"%s\"}", issuing);
    admin(store, "ca.add", args, NULL);
    admin(store, "policy.new", "{\"name\":\"p30\",\"validity\":\"P30D\",\"renewal_window\":\"P7D\",\"ca\":\"devices\"}",
          NULL);
    char *keys = NULL;
    admin(store, "group.new", "{\"id\":\"fleet\",\"policy\":\"p30\",\"symmetric\":true}", &keys);
    json_t *doc = json_loads(keys, 0, NULL);
    const char *primary = json_string_value(json_object_get(doc, "primary_key"));
    if (primary == NULL)
        return -1;
    snprintf(group_key, sizeof group_key, "%s", primary);
    json_decref(doc);
    enr_admin_result_free(keys);
    enr_store_close(store);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    char cmd[700];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    return system(cmd) == 0 ? 0 : -1;
}

/* A SAS token of the group's derived key for `rid`, expiring at `se`. */
static char *token_for(const char *rid, time_t se)
{
    enr_error err;
    char *device_key = NULL, *token = NULL;
    assert_int_equal(enr_sas_derive_device_key(group_key, rid, &device_key, &err), ENR_OK);
    assert_int_equal(enr_sas_token_make(SCOPE, rid, device_key, se, &token, &err), ENR_OK);
    enr_sas_secret_free(device_key);
    return token;
}

static enr_csr *csr_for(const char *cn, const char *san)
{
    enr_error err;
    enr_signer *s = NULL;
    assert_int_equal(enr_signer_open(key_file, NULL, NULL, &s, &err), ENR_OK);
    enr_csr_spec *spec = enr_csr_spec_new();
    char dn[200];
    snprintf(dn, sizeof dn, "CN=%s", cn);
    assert_int_equal(enr_csr_spec_add_dn(spec, dn, &err), ENR_OK);
    if (san != NULL)
        assert_int_equal(enr_csr_spec_add_san(spec, san, &err), ENR_OK);
    enr_csr *csr = NULL;
    assert_int_equal(enr_csr_build(spec, s, &csr, &err), ENR_OK);
    enr_csr_spec_free(spec);
    enr_signer_free(s);
    return csr;
}

/* {"registrationId": rid, "csr": base64 DER} */
static char *body_for(const char *rid, const char *san)
{
    enr_csr *csr = csr_for(rid, san);
    unsigned char *der = NULL;
    size_t len = 0;
    enr_error err;
    assert_int_equal(enr_csr_encode_alloc(csr, ENR_CSR_DER, &der, &len, &err), ENR_OK);
    char *b64 = malloc(4 * ((len + 2) / 3) + 1);
    assert_non_null(b64);
    EVP_EncodeBlock((unsigned char *)b64, der, (int)len);
    char *body = NULL;
    assert_true(asprintf(&body, "{\"registrationId\":\"%s\",\"csr\":\"%s\"}", rid, b64) > 0);
    free(b64);
    OPENSSL_free(der);
    enr_csr_free(csr);
    return body;
}

/* ---- attestation alone ------------------------------------------------- */

static void test_attestation_alone(void **state)
{
    (void)state;
    enr_error err;
    enr_store *store = NULL;
    assert_int_equal(enr_store_open_sqlite(data, &store, &err), ENR_OK);
    enr_attest_options o = {.id_scope = SCOPE, .sas_max_lifetime = 86400};
    char message[600];
    enr_attested who;

    char *good = token_for("dev-att", time(NULL) + 600);
    enr_peer_credential peer = {.sas_token = good};
    assert_int_equal(enr_attest(store, &o, &peer, "dev-att", &who, message, sizeof message), ENR_DPS_OK);
    assert_true(who.found);
    assert_string_equal(who.enrollment.id, "fleet"); /* a new registration: the group decides */
    assert_false(who.registered);
    assert_int_equal(enr_attested_allows(&who, "dev-att", message, sizeof message), ENR_DPS_OK);
    enr_attested_free(&who);

    /* Another device's token, an expired one, one living too long, none. */
    char *other = token_for("dev-other", time(NULL) + 600);
    peer.sas_token = other;
    assert_int_equal(enr_attest(store, &o, &peer, "dev-att", &who, message, sizeof message), ENR_DPS_AUTH_FAILED);
    enr_attested_free(&who);
    char *expired = token_for("dev-att", time(NULL) - 3600);
    peer.sas_token = expired;
    assert_int_equal(enr_attest(store, &o, &peer, "dev-att", &who, message, sizeof message), ENR_DPS_TOKEN_EXPIRED);
    enr_attested_free(&who);
    char *long_lived = token_for("dev-att", time(NULL) + 10 * 86400);
    peer.sas_token = long_lived;
    assert_int_equal(enr_attest(store, &o, &peer, "dev-att", &who, message, sizeof message), ENR_DPS_TOKEN_EXPIRED);
    enr_attested_free(&who);
    peer.sas_token = NULL;
    assert_int_equal(enr_attest(store, &o, &peer, "dev-att", &who, message, sizeof message), ENR_DPS_AUTH_FAILED);
    enr_attested_free(&who);
    peer.sas_token = "SharedAccessSignature garbage";
    assert_int_equal(enr_attest(store, &o, &peer, "dev-att", &who, message, sizeof message), ENR_DPS_AUTH_FAILED);
    enr_attested_free(&who);

    /* A disabled group: attested, but not allowed. */
    admin(store, "group.disable", "{\"id\":\"fleet\"}", NULL);
    peer.sas_token = good;
    assert_int_equal(enr_attest(store, &o, &peer, "dev-att", &who, message, sizeof message), ENR_DPS_OK);
    assert_int_equal(enr_attested_allows(&who, "dev-att", message, sizeof message), ENR_DPS_ENROLLMENT_DISABLED);
    enr_attested_free(&who);
    admin(store, "group.enable", "{\"id\":\"fleet\"}", NULL);

    enr_sas_secret_free(good);
    enr_sas_secret_free(other);
    enr_sas_secret_free(expired);
    enr_sas_secret_free(long_lived);
    enr_store_close(store);
}

/* ---- policy alone ------------------------------------------------------ */

static void test_policy_alone(void **state)
{
    (void)state;
    enr_error err;
    enr_store *store = NULL;
    assert_int_equal(enr_store_open_sqlite(data, &store, &err), ENR_OK);
    char message[600];
    enr_csr *csr = csr_for("dev-pol", NULL);
    assert_int_equal(enr_provision_check_csr(store, csr, "dev-pol", message, sizeof message), ENR_DPS_OK);
    assert_int_equal(enr_provision_check_csr(store, csr, "dev-else", message, sizeof message), ENR_DPS_CSR_CN_MISMATCH);

    enr_provision_policy p;
    assert_int_equal(enr_provision_policy_load(store, "p30", "dev-pol", &p, &err), ENR_OK);
    assert_string_equal(p.ca_name, "devices");
    assert_string_equal(p.renewal_window, "P7D");
    assert_non_null(p.profile);
    enr_provision_policy_free(&p);
    assert_int_equal(enr_provision_policy_load(store, "nope", "dev-pol", &p, &err), ENR_E_NOTFOUND);

    /* A refusal by a rule maps by its reason, never by its words. */
    enr_error refusal;
    enr_error_refuse(&refusal, ENR_R_NAME_NOT_ALLOWED, "subjectAltName DNS:turkey.example: no key here");
    assert_int_equal(enr_provision_error_of_refusal(&refusal), ENR_DPS_CSR_LINT_ERROR);
    enr_error_refuse(&refusal, ENR_R_REGISTRATION_DISABLED, "registration certificate-7 is disabled");
    assert_int_equal(enr_provision_error_of_refusal(&refusal), ENR_DPS_REGISTRATION_DISABLED);

    /* A key blocked for keyCompromise is refused before anything is signed. */
    char spki[ENR_STORE_SPKI_HEX + 1];
    assert_int_equal(enr_spki_sha256_hex(X509_REQ_get_X509_PUBKEY(enr_csr_x509_req(csr)), spki, &err), ENR_OK);
    assert_int_equal(enr_store_block_key(store, spki, "CN=Test Devices", "01", time(NULL), NULL, &err), ENR_OK);
    assert_int_equal(enr_provision_check_csr(store, csr, "dev-pol", message, sizeof message),
                     ENR_DPS_CSR_KEY_COMPROMISED);
    enr_csr_free(csr);
    enr_store_close(store);
    /* The other tests need a usable key. */
    assert_int_equal(enr_key_generate_file(ENR_KEY_EC_P256, key_file, NULL, true, &err), ENR_OK);
}

/* ---- the asynchronous core --------------------------------------------- */

typedef struct harness {
    struct event_base *base;
    enr_provision_shared *shared;
    enr_provision *core;
    int finals;                /* outcomes the observer saw */
    int last_final_status;
    int last_final_code;
} harness;

typedef struct answer {
    bool done;
    int status;
    enr_dps_error error;
    int retry_after;
    char *body;
} answer;

static void answered(void *ctx, const enr_provision_outcome *o)
{
    answer *a = ctx;
    assert_false(a->done); /* exactly once */
    a->done = true;
    a->status = o->status;
    a->error = o->error;
    a->retry_after = o->retry_after;
    a->body = strdup(o->body);
}

static void observed(void *arg, const enr_provision_outcome *o)
{
    harness *h = arg;
    h->finals++;
    h->last_final_status = o->status;
    h->last_final_code = o->error_code;
}

static void harness_start(harness *h, long assigning_after_ms)
{
    memset(h, 0, sizeof *h);
    enr_error err;
    enr_provision_options o = {.store_location = data, .id_scope = SCOPE, .assigning_after_ms = assigning_after_ms,
                               .audit_refusal_samples = 5};
    h->base = event_base_new();
    assert_non_null(h->base);
    assert_int_equal(enr_provision_shared_new(&o, &h->shared, &err), ENR_OK);
    assert_int_equal(enr_provision_new(h->shared, h->base, &h->core, &err), ENR_OK);
    enr_provision_set_observer(h->core, observed, h);
}

static void harness_stop(harness *h)
{
    enr_provision_flush_audit(h->core);
    enr_provision_shared_stop(h->shared);
    enr_provision_free(h->core);
    enr_provision_shared_free(h->shared);
    event_base_free(h->base);
}

/* Runs the loop until `until` holds (at most 10 s). */
static void run_until(harness *h, bool (*until)(void *), void *arg)
{
    for (int i = 0; i < 1000 && !until(arg); i++) {
        struct timeval ten_ms = {0, 10 * 1000};
        event_base_loopexit(h->base, &ten_ms);
        event_base_dispatch(h->base);
    }
    assert_true(until(arg));
}

static bool is_done(void *arg)
{
    return ((answer *)arg)->done;
}

typedef struct finals_at_least {
    harness *h;
    int n;
} finals_at_least;

static bool enough_finals(void *arg)
{
    finals_at_least *f = arg;
    return f->h->finals >= f->n;
}

static answer do_register(harness *h, const char *rid, const char *san)
{
    char *token = token_for(rid, time(NULL) + 600);
    char *body = body_for(rid, san);
    enr_provision_request req = {.verb = ENR_PROVISION_REGISTER, .id_scope = SCOPE, .registration_id = rid,
                                 .api_version = API, .peer = {.sas_token = token}, .body = body,
                                 .body_len = strlen(body)};
    answer a = {0};
    (void)enr_provision_submit(h->core, &req, answered, &a);
    enr_sas_secret_free(token);
    free(body);
    run_until(h, is_done, &a);
    return a;
}

static answer do_poll(harness *h, const char *rid, const char *operation_id)
{
    char *token = token_for(rid, time(NULL) + 600);
    enr_provision_request req = {.verb = ENR_PROVISION_OPERATION_STATUS, .id_scope = SCOPE,
                                 .registration_id = rid, .operation_id = operation_id, .api_version = API,
                                 .peer = {.sas_token = token}};
    answer a = {0};
    assert_null(enr_provision_submit(h->core, &req, answered, &a)); /* polls answer at once */
    assert_true(a.done);
    enr_sas_secret_free(token);
    return a;
}

static const char *member(json_t *doc, const char *a, const char *b)
{
    json_t *v = json_object_get(doc, a);
    return json_string_value(b ? json_object_get(v, b) : v);
}

static void test_register_through_the_core(void **state)
{
    (void)state;
    harness h;
    harness_start(&h, 5000);
    answer first = do_register(&h, "dev-core", NULL);
    assert_int_equal(first.status, 200);
    assert_int_equal(h.finals, 1);
    assert_int_equal(h.last_final_status, 200);
    json_t *doc = json_loads(first.body, 0, NULL);
    assert_non_null(doc);
    assert_string_equal(member(doc, "status", NULL), "assigned");
    json_t *chain = json_object_get(json_object_get(doc, "registrationState"), "issuedCertificateChain");
    assert_int_equal(json_array_size(chain), 3); /* leaf, issuing CA, root */
    const char *created = member(doc, "registrationState", "createdDateTimeUtc");
    assert_non_null(created);

    /* createdDateTimeUtc is the registration's first creation, not each
     * request's time. */
    sleep(1);
    answer again = do_register(&h, "dev-core", NULL);
    assert_int_equal(again.status, 200);
    json_t *doc2 = json_loads(again.body, 0, NULL);
    assert_string_equal(member(doc2, "registrationState", "createdDateTimeUtc"), created);
    assert_string_not_equal(member(doc2, "registrationState", "lastUpdatedDateTimeUtc"), created);

    /* The operation stays readable: a poll reads the stored answer. */
    answer poll = do_poll(&h, "dev-core", member(doc2, "operationId", NULL));
    assert_int_equal(poll.status, 200);
    assert_string_equal(poll.body, again.body);
    /* The first registration's operation kept its answer without the
     * certificates, naming the certificate record instead; its poll joins
     * them back to the very text the device was sent. */
    sqlite3 *db = NULL;
    char path[700];
    snprintf(path, sizeof path, "%s/enroll.db", data);
    assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
    sqlite3_stmt *st = NULL;
    assert_int_equal(sqlite3_prepare_v2(db,
                                        "SELECT o.result_json, o.certificate_serial, c.serial FROM operation o "
                                        "JOIN certificate c ON c.issuer = o.certificate_issuer AND "
                                        "c.serial = o.certificate_serial WHERE o.operation_id = ?",
                                        -1, &st, NULL),
                     SQLITE_OK);
    sqlite3_bind_text(st, 1, member(doc, "operationId", NULL), -1, SQLITE_TRANSIENT);
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    const char *kept = (const char *)sqlite3_column_text(st, 0);
    assert_null(strstr(kept, "issuedCertificateChain"));
    assert_null(strstr(kept, "BEGIN CERTIFICATE"));
    assert_true(strlen(kept) * 3 < strlen(first.body));
    sqlite3_finalize(st);
    sqlite3_close(db);
    answer first_poll = do_poll(&h, "dev-core", member(doc, "operationId", NULL));
    assert_int_equal(first_poll.status, 200);
    assert_string_equal(first_poll.body, first.body);
    free(first_poll.body);
    /* Not by another device. */
    answer theirs = do_poll(&h, "dev-else", member(doc2, "operationId", NULL));
    assert_int_equal(theirs.status, 404);
    assert_int_equal(theirs.error, ENR_DPS_UNKNOWN_OPERATION);

    json_decref(doc);
    json_decref(doc2);
    free(first.body);
    free(again.body);
    free(poll.body);
    free(theirs.body);
    harness_stop(&h);
}

/* The two misclassifications of text-searching: a refused SAN whose text
 * holds "key" is a lint error (not 400 key-not-allowed), and a disabled
 * registration named certificate-7 is 403002 (not a certificate failure). */
static void test_refusals_by_reason(void **state)
{
    (void)state;
    harness h;
    harness_start(&h, 5000);
    answer turkey = do_register(&h, "dev-turkey", "DNS:turkey.example");
    assert_int_equal(turkey.status, 400);
    assert_int_equal(turkey.error, ENR_DPS_CSR_LINT_ERROR);
    assert_non_null(strstr(turkey.body, "turkey.example"));
    assert_int_equal(h.last_final_code, enr_dps_error_code(ENR_DPS_CSR_LINT_ERROR));

    answer ok = do_register(&h, "certificate-7", NULL);
    assert_int_equal(ok.status, 200);
    enr_error err;
    enr_store *store = NULL;
    assert_int_equal(enr_store_open_sqlite(data, &store, &err), ENR_OK);
    assert_int_equal(enr_store_set_registration_enabled(store, "certificate-7", false, NULL, &err), ENR_OK);
    enr_store_close(store);
    answer refused = do_register(&h, "certificate-7", NULL);
    assert_int_equal(refused.status, 403);
    assert_int_equal(refused.error, ENR_DPS_REGISTRATION_DISABLED);
    assert_non_null(strstr(refused.body, "403002"));

    /* Refused before the core: wrong idScope, api-version, a bad id. */
    char *token = token_for("dev-x", time(NULL) + 600);
    enr_provision_request req = {.verb = ENR_PROVISION_REGISTER, .id_scope = "0ne0000other",
                                 .registration_id = "dev-x", .api_version = API, .peer = {.sas_token = token},
                                 .body = "{}", .body_len = 2};
    answer scope = {0};
    assert_null(enr_provision_submit(h.core, &req, answered, &scope));
    assert_int_equal(scope.error, ENR_DPS_UNKNOWN_ID_SCOPE);
    req.id_scope = SCOPE;
    req.api_version = "2010-01-01";
    answer version = {0};
    assert_null(enr_provision_submit(h.core, &req, answered, &version));
    assert_int_equal(version.error, ENR_DPS_API_VERSION_UNSUPPORTED);
    req.api_version = API;
    req.registration_id = "dev x/../";
    answer bad_id = {0};
    assert_null(enr_provision_submit(h.core, &req, answered, &bad_id));
    assert_int_equal(bad_id.error, ENR_DPS_REGISTRATION_ID_INVALID);
    enr_sas_secret_free(token);

    free(turkey.body);
    free(ok.body);
    free(refused.body);
    free(scope.body);
    free(version.body);
    free(bad_id.body);
    harness_stop(&h);

    /* Every refusal reached the audit trail, written by the committer. */
    assert_int_equal(enr_store_open_sqlite(data, &store, &err), ENR_OK);
    enr_audit_filter f = {.registration_id = "certificate-7"};
    enr_audit_list events;
    assert_int_equal(enr_store_list_audit(store, &f, &events, &err), ENR_OK);
    bool found = false;
    for (size_t i = 0; i < events.count; i++)
        found = found || events.items[i].reason_code == 403002;
    assert_true(found);
    enr_audit_list_free(&events);
    enr_store_close(store);
}

/* 202 at once (assigning_after_ms 0); while the store is held the poll
 * reads "assigning"; a registration disabled meanwhile is refused at
 * commit, and the poll then reads "failed" with 403002. */
static void test_assigning_then_failed(void **state)
{
    (void)state;
    harness h;
    harness_start(&h, 0);
    answer first = do_register(&h, "dev-held", NULL);
    assert_int_equal(first.status, 202);
    finals_at_least one = {&h, 1};
    run_until(&h, enough_finals, &one);
    assert_int_equal(h.last_final_status, 200);
    json_t *doc = json_loads(first.body, 0, NULL);
    answer poll = do_poll(&h, "dev-held", member(doc, "operationId", NULL));
    assert_int_equal(poll.status, 200);
    assert_non_null(strstr(poll.body, "\"assigned\""));
    json_decref(doc);
    free(poll.body);
    free(first.body);

    sqlite3 *db = NULL;
    char path[700];
    snprintf(path, sizeof path, "%s/enroll.db", data);
    assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
    assert_int_equal(sqlite3_exec(db, "BEGIN IMMEDIATE", NULL, NULL, NULL), SQLITE_OK);
    answer held = do_register(&h, "dev-held", NULL);
    assert_int_equal(held.status, 202);
    assert_int_equal(held.retry_after, 1);
    doc = json_loads(held.body, 0, NULL);
    const char *op = member(doc, "operationId", NULL);
    answer waiting = do_poll(&h, "dev-held", op);
    assert_int_equal(waiting.status, 202);
    assert_non_null(strstr(waiting.body, "\"assigning\""));
    assert_int_equal(sqlite3_exec(db, "UPDATE registration SET status = 'disabled' WHERE registration_id = 'dev-held'",
                                  NULL, NULL, NULL),
                     SQLITE_OK);
    assert_int_equal(sqlite3_exec(db, "COMMIT", NULL, NULL, NULL), SQLITE_OK);
    sqlite3_close(db);
    finals_at_least two = {&h, 2};
    run_until(&h, enough_finals, &two);
    assert_int_equal(h.last_final_code, 403002);
    answer failed = do_poll(&h, "dev-held", op);
    assert_int_equal(failed.status, 200);
    assert_non_null(strstr(failed.body, "\"failed\""));
    assert_non_null(strstr(failed.body, "403002"));
    assert_null(strstr(failed.body, "issuedCertificateChain"));
    json_decref(doc);
    free(held.body);
    free(waiting.body);
    free(failed.body);
    harness_stop(&h);
}

/* A front end whose peer left cancels: its callback never comes, and the
 * registration still commits. */
static void test_cancel(void **state)
{
    (void)state;
    harness h;
    harness_start(&h, 5000);
    char *token = token_for("dev-gone", time(NULL) + 600);
    char *body = body_for("dev-gone", NULL);
    enr_provision_request req = {.verb = ENR_PROVISION_REGISTER, .id_scope = SCOPE, .registration_id = "dev-gone",
                                 .api_version = API, .peer = {.sas_token = token}, .body = body,
                                 .body_len = strlen(body)};
    answer a = {0};
    enr_provision_call *call = enr_provision_submit(h.core, &req, answered, &a);
    assert_non_null(call);
    enr_provision_cancel(call);
    finals_at_least one = {&h, 1};
    run_until(&h, enough_finals, &one);
    assert_false(a.done);
    assert_int_equal(h.last_final_status, 200);
    enr_sas_secret_free(token);
    free(body);
    harness_stop(&h);
}

/* Once per connection (MQTT's CONNECT): the checks before any verb. */
static void test_authenticate(void **state)
{
    (void)state;
    harness h;
    harness_start(&h, 5000);
    char message[600];
    char *token = token_for("dev-conn", time(NULL) + 600);
    enr_peer_credential peer = {.sas_token = token};
    assert_int_equal(enr_provision_authenticate(h.core, SCOPE, "dev-conn", API, &peer, NULL, message, sizeof message),
                     ENR_DPS_OK);
    assert_int_equal(enr_provision_authenticate(h.core, SCOPE, "dev-else", API, &peer, NULL, message, sizeof message),
                     ENR_DPS_AUTH_FAILED);
    assert_int_equal(enr_provision_authenticate(h.core, "0ne0000other", "dev-conn", API, &peer, NULL, message,
                                                sizeof message),
                     ENR_DPS_UNKNOWN_ID_SCOPE);
    assert_int_equal(enr_provision_authenticate(h.core, SCOPE, "dev-conn", NULL, &peer, NULL, message, sizeof message),
                     ENR_DPS_API_VERSION_UNSUPPORTED);
    assert_int_equal(enr_provision_authenticate(h.core, SCOPE, "dev conn", API, &peer, NULL, message, sizeof message),
                     ENR_DPS_REGISTRATION_ID_INVALID);
    peer.sas_token = NULL;
    assert_int_equal(enr_provision_authenticate(h.core, SCOPE, "dev-conn", API, &peer, NULL, message, sizeof message),
                     ENR_DPS_AUTH_FAILED);
    assert_int_equal(h.finals, 5); /* each refusal observed (and audited) */
    enr_sas_secret_free(token);
    harness_stop(&h);
}

/* ---- grants: CONNECT's attestation standing in for the register's ------ */

static void admin_now(const char *command, const char *args, char **result)
{
    enr_error err;
    enr_store *store = NULL;
    assert_int_equal(enr_store_open_sqlite(data, &store, &err), ENR_OK);
    admin(store, command, args, result);
    enr_store_close(store);
}

/* A token of a device key derived from group key `key`. */
static char *token_with(const char *key, const char *rid, time_t se)
{
    enr_error err;
    char *device_key = NULL, *token = NULL;
    assert_int_equal(enr_sas_derive_device_key(key, rid, &device_key, &err), ENR_OK);
    assert_int_equal(enr_sas_token_make(SCOPE, rid, device_key, se, &token, &err), ENR_OK);
    enr_sas_secret_free(device_key);
    return token;
}

static enr_provision_grant *connect_as(harness *h, const char *rid, const char *token)
{
    enr_peer_credential peer = {.sas_token = token};
    enr_provision_grant *g = NULL;
    char message[600];
    assert_int_equal(enr_provision_authenticate(h->core, SCOPE, rid, API, &peer, &g, message, sizeof message),
                     ENR_DPS_OK);
    assert_non_null(g);
    return g;
}

static answer register_with(harness *h, const char *rid, const char *token, enr_provision_grant *g)
{
    char *body = body_for(rid, NULL);
    enr_provision_request req = {.verb = ENR_PROVISION_REGISTER, .id_scope = SCOPE, .registration_id = rid,
                                 .api_version = API, .peer = {.sas_token = token}, .body = body,
                                 .body_len = strlen(body), .grant = g};
    answer a = {0};
    (void)enr_provision_submit(h->core, &req, answered, &a);
    free(body);
    run_until(h, is_done, &a);
    return a;
}

static void expect_refused(answer a, harness *h, enr_dps_error e, const char *says)
{
    assert_true(a.status >= 400);
    assert_int_equal(a.error, e);
    assert_int_equal(h->last_final_code, enr_dps_error_code(e)); /* observed: audited like any refusal */
    if (says != NULL && strstr(a.body, says) == NULL)
        fail_msg("expected \"%s\" in %s", says, a.body);
    free(a.body);
}

static void expect_ok(answer a)
{
    assert_int_equal(a.status, 200);
    free(a.body);
}

/* A grant holds only for its registration id, its token and the token's
 * lifetime, once; the commit refuses it when the enrollment changed since
 * or an individual enrollment took the id over. */
static void test_grant_bounds(void **state)
{
    (void)state;
    char *keys = NULL;
    admin_now("group.new", "{\"id\":\"granted\",\"policy\":\"p30\",\"symmetric\":true}", &keys);
    json_t *doc = json_loads(keys, 0, NULL);
    char key[128];
    snprintf(key, sizeof key, "%s", json_string_value(json_object_get(doc, "primary_key")));
    json_decref(doc);
    enr_admin_result_free(keys);
    harness h;
    harness_start(&h, 5000);
    time_t hour = time(NULL) + 3600;

    char *t1 = token_with(key, "dev-g1", hour);
    enr_provision_grant *g1 = connect_as(&h, "dev-g1", t1);
    expect_ok(register_with(&h, "dev-g1", t1, g1));

    /* Another registration id on the connection: attested, and refused. */
    char *t2 = token_with(key, "dev-g2", hour);
    enr_provision_grant *g2 = connect_as(&h, "dev-g2", t2);
    expect_refused(register_with(&h, "dev-g3", t2, g2), &h, ENR_DPS_AUTH_FAILED, "does not verify");

    /* Another token than CONNECT's (a forgery): attested, and refused. */
    char *t4 = token_with(key, "dev-g4", hour);
    char *forged = strdup(t4); /* as long as t4, one signature byte off */
    assert_non_null(forged);
    char *sig = strstr(forged, "sig=") + 4;
    while (*sig == '%')
        sig += 3;
    *sig = *sig == 'A' ? 'B' : 'A';
    enr_provision_grant *g4 = connect_as(&h, "dev-g4", t4);
    expect_refused(register_with(&h, "dev-g4", forged, g4), &h, ENR_DPS_AUTH_FAILED, "does not verify");

    /* A token that expires while connected: its grant ends at se, and the
     * register after the allowed skew is refused as expired. */
    char *t5 = token_with(key, "dev-g5", time(NULL) - ENR_PROVISION_SAS_SKEW_DEFAULT + 1);
    enr_provision_grant *g5 = connect_as(&h, "dev-g5", t5);
    sleep(2);
    expect_refused(register_with(&h, "dev-g5", t5, g5), &h, ENR_DPS_TOKEN_EXPIRED, NULL);

    /* Once: a second register on the connection is attested again. */
    char *t8 = token_with(key, "dev-g8", hour);
    enr_provision_grant *g8 = connect_as(&h, "dev-g8", t8);
    expect_ok(register_with(&h, "dev-g8", t8, g8));

    /* The key rotated since CONNECT (the old primary still verifies as the
     * secondary): the commit sees the enrollment changed and refuses; a
     * fresh attestation of the same token is fine. */
    char *t6 = token_with(key, "dev-g6", hour);
    enr_provision_grant *g6 = connect_as(&h, "dev-g6", t6);
    admin_now("key.rotate", "{\"group\":\"granted\"}", NULL);
    expect_refused(register_with(&h, "dev-g6", t6, g6), &h, ENR_DPS_AUTH_FAILED, "changed since");
    expect_ok(register_with(&h, "dev-g6", t6, NULL));

    /* An operator blocks an id with a disabled individual enrollment while
     * it is connected: the grant (from its group) is refused at commit. */
    char *t7 = token_with(key, "dev-g7", hour);
    enr_provision_grant *g7 = connect_as(&h, "dev-g7", t7);
    admin_now("individual.new", "{\"id\":\"dev-g7\",\"policy\":\"p30\",\"symmetric\":true}", NULL);
    admin_now("individual.disable", "{\"id\":\"dev-g7\"}", NULL);
    expect_refused(register_with(&h, "dev-g7", t7, g7), &h, ENR_DPS_AUTH_FAILED, "individual enrollment");
    expect_refused(register_with(&h, "dev-g7", t7, NULL), &h, ENR_DPS_ENROLLMENT_DISABLED, NULL);

    /* g8 was spent: with the original key gone, its second register is a
     * fresh attestation that fails, not the grant's commit check. */
    admin_now("key.rotate", "{\"group\":\"granted\"}", NULL);
    expect_refused(register_with(&h, "dev-g8", t8, g8), &h, ENR_DPS_AUTH_FAILED, "does not verify");

    /* An X.509 peer gets no grant (its validity is not one number). */
    enr_provision_grant *none = (enr_provision_grant *)&h;
    enr_peer_credential nothing = {0};
    char message[600];
    assert_int_equal(enr_provision_authenticate(h.core, SCOPE, "dev-g9", API, &nothing, &none, message,
                                                sizeof message),
                     ENR_DPS_AUTH_FAILED);
    assert_null(none);

    enr_provision_grant *grants[] = {g1, g2, g4, g5, g6, g7, g8};
    for (size_t i = 0; i < sizeof grants / sizeof grants[0]; i++)
        enr_provision_grant_free(grants[i]);
    free(forged);
    char *tokens[] = {t1, t2, t4, t5, t6, t7, t8};
    for (size_t i = 0; i < sizeof tokens / sizeof tokens[0]; i++)
        enr_sas_secret_free(tokens[i]);
    harness_stop(&h);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_attestation_alone),
        cmocka_unit_test(test_policy_alone),
        cmocka_unit_test(test_register_through_the_core),
        cmocka_unit_test(test_refusals_by_reason),
        cmocka_unit_test(test_assigning_then_failed),
        cmocka_unit_test(test_cancel),
        cmocka_unit_test(test_authenticate),
        cmocka_unit_test(test_grant_bounds),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
