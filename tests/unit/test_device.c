/* The device library without a service: renewal timing with an injected
 * clock (not due: nothing happens; due: it tries), the backoff it asks the
 * injected sleep for (bounded, growing, jittered), the fallback from the
 * operational certificate to the bootstrap credential (refused, or not
 * usable locally: a corrupt chain, a key that does not match it, a missing
 * key), that a failed renewal changes nothing but the last result on disk,
 * the store lock and the reload under it, and pruning that recognises the
 * current key whatever the spelling of its path. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <fcntl.h>
#include <unistd.h>

#include "device/device_internal.h"
#include "enroll/device.h"
#include "enroll/fileio.h"
#include "enroll/signer.h"

#define T0 ((time_t)1795420800) /* 2026-11-23T08:00:00Z */
#define DAY 86400

typedef struct fake {
    time_t now;
    long sleeps[16];
    int nsleep;
    char log[4096];
} fake;

static time_t fake_clock(void *ctx) { return ((fake *)ctx)->now; }
static bool fake_sleep(void *ctx, long ms)
{
    fake *f = ctx;
    if (f->nsleep < 16)
        f->sleeps[f->nsleep++] = ms;
    return true;
}
static bool fake_sleep_stop(void *ctx, long ms)
{
    (void)fake_sleep(ctx, ms);
    return false; /* as on SIGTERM */
}
static void fake_log(void *ctx, const char *m)
{
    fake *f = ctx;
    strncat(f->log, m, sizeof f->log - strlen(f->log) - 2);
    strcat(f->log, "\n");
}

static char g_dir[256];

static void write_text(const char *name, const char *text)
{
    char path[512];
    snprintf(path, sizeof path, "%s/%s", g_dir, name);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

static char *read_text(const char *name)
{
    char path[512];
    snprintf(path, sizeof path, "%s/%s", g_dir, name);
    enr_buf b;
    enr_error err;
    assert_int_equal(enr_file_read(path, 1 << 20, &b, &err), ENR_OK);
    return (char *)b.data;
}

/* A store as provisioning leaves it, for a certificate valid T0..T0+30d,
 * pointing at a service nobody listens on. */
static int setup(void **state)
{
    (void)state;
    snprintf(g_dir, sizeof g_dir, "/tmp/enroll-device-unit-XXXXXX");
    assert_non_null(mkdtemp(g_dir));
    char path[512];
    enr_error err;
    snprintf(path, sizeof path, "%s/device.key", g_dir);
    assert_int_equal(enr_key_generate_file(ENR_KEY_EC_P256, path, NULL, false, &err), ENR_OK);
    /* A self-signed certificate, only so the trust file parses. */
    EVP_PKEY *k = EVP_EC_gen("P-256");
    X509 *c = X509_new();
    X509_set_version(c, 2);
    ASN1_INTEGER_set(X509_get_serialNumber(c), 1);
    X509_NAME_add_entry_by_txt(X509_get_subject_name(c), "CN", MBSTRING_ASC, (const unsigned char *)"t", -1, -1, 0);
    X509_set_issuer_name(c, X509_get_subject_name(c));
    X509_gmtime_adj(X509_getm_notBefore(c), 0);
    X509_gmtime_adj(X509_getm_notAfter(c), 3600);
    X509_set_pubkey(c, k);
    assert_true(X509_sign(c, k, EVP_sha256()) > 0);
    snprintf(path, sizeof path, "%s/service-trust.pem", g_dir);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    PEM_write_X509(f, c);
    fclose(f);
    X509_free(c);
    EVP_PKEY_free(k);
    write_text("device-key.txt", "jzpcfhstT2CBo8XnCStNb3GDlae5y93g8QITJDVGV2h6i5ytvs/Q4fIDFCU2R1hpeai5ytDh8gMUJTZHWGl6iw==\n");
    char id[2048];
    snprintf(id, sizeof id,
             "{\"version\": 1, \"registration_id\": \"dev-001\", \"url\": \"https://127.0.0.1:1\",\n"
             " \"id_scope\": \"0ne1\", \"api_version\": \"2025-07-01-preview\", \"auth\": \"device-key\",\n"
             " \"symmetric_key_file\": \"%s/device-key.txt\", \"key\": \"%s/device.key\", \"key_type\": \"ec-p256\",\n"
             " \"renew_before_seconds\": 0, \"generation\": 1, \"cert\": \"cert-1.pem\", \"serial\": \"0A\",\n"
             " \"not_before\": \"2026-11-23T08:00:00Z\", \"not_after\": \"2026-12-23T08:00:00Z\",\n"
             " \"last_result\": \"ok\", \"last_message\": \"certificate 0A\"}\n",
             g_dir, g_dir);
    write_text("identity.json", id);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_dir);
    return system(cmd) == 0 ? 0 : -1;
}

static void test_renewal_timing_and_backoff(void **state)
{
    (void)state;
    fake f = {.now = T0};
    enr_device_config o = {.clock = fake_clock, .sleep = fake_sleep, .log = fake_log, .ctx = &f,
                           .max_attempts = 3, .backoff_initial_ms = 1000, .backoff_max_ms = 1500,
                           .timeout_ms = 2000};
    enr_device *d = NULL;
    enr_error err = {0};
    assert_int_equal(enr_device_open(g_dir, &o, &d, &err), ENR_OK);
    /* 2/3 of 30 days after notBefore. */
    assert_int_equal(enr_device_renew_at(d), T0 + 20 * DAY);
    bool renewed = true;
    f.now = T0 + 20 * DAY - 1;
    assert_int_equal(enr_device_renew_if_due(d, f.now, &renewed, &err), ENR_OK);
    assert_false(renewed);
    assert_int_equal(f.nsleep, 0);
    assert_string_equal(f.log, "");

    f.now = T0 + 20 * DAY;
    assert_int_equal(enr_device_renew_if_due(d, f.now, &renewed, &err), ENR_E_IO);
    assert_false(renewed);
    assert_non_null(strstr(err.message, "127.0.0.1"));
    /* No operational chain on disk: it fell back to the bootstrap key. */
    assert_non_null(strstr(f.log, "using the bootstrap credential"));
    /* 3 attempts, 2 waits: equal jitter in [500, 1000], then capped [750, 1500]. */
    assert_int_equal(f.nsleep, 2);
    assert_in_range(f.sleeps[0], 500, 1000);
    assert_in_range(f.sleeps[1], 750, 1500);
    enr_device_free(d);

    /* On disk only the outcome changed; the identity is the same. */
    enr_device_status s;
    assert_int_equal(enr_device_status_read(g_dir, &s, &err), ENR_OK);
    assert_string_equal(s.serial, "0A");
    assert_int_equal(s.generation, 1);
    assert_string_equal(s.last_result, "error");
    assert_int_equal(s.last_attempt, T0 + 20 * DAY);
    char *text = read_text("identity.json");
    assert_null(strstr(text, "jzpcfhst")); /* the key itself is never stored */
    free(text);
}

static void test_configured_window(void **state)
{
    (void)state;
    fake f = {.now = T0};
    enr_device_config o = {.clock = fake_clock, .sleep = fake_sleep, .ctx = &f, .renew_before_seconds = 7 * DAY};
    enr_device *d = NULL;
    enr_error err = {0};
    assert_int_equal(enr_device_open(g_dir, &o, &d, &err), ENR_OK);
    assert_int_equal(enr_device_renew_at(d), T0 + 23 * DAY);
    enr_device_free(d);
}

/* identity.json as a power cut, a full disk or a hand edit may leave it:
 * refused with a message naming the file, never half-loaded. */
static void test_identity_bad_input(void **state)
{
    (void)state;
#define MIN_MEMBERS "\"registration_id\":\"dev-1\",\"url\":\"https://h:1\",\"id_scope\":\"s\"," \
                    "\"key\":\"key.pem\",\"auth\":\"group-key\""
    static const struct {
        const char *text;
        const char *why;
    } BAD[] = {
        {"", "not an identity file"},
        {"{", "not an identity file"},
        {"{\"version\":1,\"registration_id\":\"dev", "not an identity file"},       /* torn write */
        {"[1]", "not an identity file"},
        {"\"identity\"", "not an identity file"},
        {"{" MIN_MEMBERS "}", "not an identity file"},                                     /* no version */
        {"{\"version\":2," MIN_MEMBERS "}", "not an identity file"},                     /* a newer one */
        {"{\"version\":\"1\"," MIN_MEMBERS "}", "not an identity file"},
        {"{\"version\":1,\"version\":1," MIN_MEMBERS "}", "not an identity file"},     /* duplicate key */
        {"{\"version\":1}", "required members missing"},
        {"{\"version\":1,\"registration_id\":7,\"url\":\"https://h:1\",\"id_scope\":\"s\","
         "\"key\":\"key.pem\",\"auth\":\"group-key\"}", "required members missing"},  /* wrong type */
        {"{\"version\":1,\"url\":\"https://h:1\",\"id_scope\":\"s\",\"key\":\"k\",\"auth\":\"a\"}",
         "required members missing"},
        {"{\"version\":1," MIN_MEMBERS "} trailing", "not an identity file"},
    };
    for (size_t i = 0; i < sizeof BAD / sizeof BAD[0]; i++) {
        dev_identity id;
        enr_error err = {0};
        if (dev_identity_parse(BAD[i].text, strlen(BAD[i].text), "s/identity.json", &id, &err) != ENR_E_PARSE)
            fail_msg("case %zu was accepted: %s", i, BAD[i].text);
        if (strstr(err.message, "s/identity.json") == NULL || strstr(err.message, BAD[i].why) == NULL)
            fail_msg("case %zu: message '%s' does not say '%s' about the file", i, err.message, BAD[i].why);
        assert_null(id.registration_id); /* nothing half-loaded */
    }
    static const char good[] = "{\"version\":1," MIN_MEMBERS ",\"generation\":3,\"cert\":\"cert-3.pem\"}";
    dev_identity id;
    enr_error err = {0};
    assert_int_equal(dev_identity_parse(good, strlen(good), "s/identity.json", &id, &err), ENR_OK);
    assert_string_equal(id.registration_id, "dev-1");
    assert_int_equal(id.generation, 3);
    assert_string_equal(id.cert, "cert-3.pem");
    dev_identity_free(&id);
#undef MIN_MEMBERS
}

static void test_bad_config(void **state)
{
    (void)state;
    enr_device *d = NULL;
    enr_error err = {0};
    enr_device_config c = {.url = "http://x", .id_scope = "s", .registration_id = "dev-1",
                           .auth = ENR_DEVICE_AUTH_GROUP_KEY, .symmetric_key_file = "k", .key_ref = "k.pem",
                           .trust_file = "t.pem", .store_dir = g_dir};
    assert_int_equal(enr_device_new(&c, &d, &err), ENR_E_USAGE); /* plain HTTP */
    c.url = "https://x";
    c.registration_id = "bad id";
    assert_int_equal(enr_device_new(&c, &d, &err), ENR_E_USAGE);
    c.registration_id = "dev-1";
    c.auth = ENR_DEVICE_AUTH_NONE;
    assert_int_equal(enr_device_new(&c, &d, &err), ENR_E_USAGE);
    c.auth = ENR_DEVICE_AUTH_X509;
    assert_int_equal(enr_device_new(&c, &d, &err), ENR_E_USAGE); /* no bootstrap cert */
    assert_null(d);
    assert_int_equal(enr_device_open("/nonexistent-store", NULL, &d, &err), ENR_E_NOTFOUND);
}

/* identity.json with `from` replaced by `to`. */
static void edit_identity(const char *from, const char *to)
{
    char *text = read_text("identity.json");
    char *at = strstr(text, from);
    assert_non_null(at);
    char out[4096];
    snprintf(out, sizeof out, "%.*s%s%s", (int)(at - text), text, to, at + strlen(from));
    free(text);
    write_text("identity.json", out);
}

/* A renewal from T0 + 20 days against nobody (127.0.0.1:1), once. */
static void renew_against_nobody(fake *f, enr_code want)
{
    enr_device_config o = {.clock = fake_clock, .sleep = fake_sleep, .log = fake_log, .ctx = f, .max_attempts = 1,
                           .timeout_ms = 2000};
    enr_device *d = NULL;
    enr_error err = {0};
    assert_int_equal(enr_device_open(g_dir, &o, &d, &err), ENR_OK);
    bool renewed = true;
    f->now = T0 + 20 * DAY;
    assert_int_equal(enr_device_renew_if_due(d, f->now, &renewed, &err), want);
    assert_false(renewed);
    enr_device_free(d);
}

static void test_saved_window_not_longer_than_lifetime(void **state)
{
    (void)state;
    /* A saved window of 31 days on a 30-day certificate would renew at every
     * check forever: it is ignored (2/3 of the lifetime applies). */
    edit_identity("\"renew_before_seconds\": 0", "\"renew_before_seconds\": 2678400");
    enr_device *d = NULL;
    enr_error err = {0};
    assert_int_equal(enr_device_open(g_dir, NULL, &d, &err), ENR_OK);
    assert_int_equal(enr_device_renew_at(d), T0 + 20 * DAY);
    enr_device_free(d);
    /* Given to one run, the same window means "renew now". */
    fake f = {.now = T0};
    enr_device_config o = {.clock = fake_clock, .ctx = &f, .renew_before_seconds = 31 * DAY};
    assert_int_equal(enr_device_open(g_dir, &o, &d, &err), ENR_OK);
    assert_int_equal(enr_device_renew_at(d), T0);
    enr_device_free(d);
}

static void test_corrupt_chain_falls_back(void **state)
{
    (void)state;
    write_text("chain-1.pem", "-----BEGIN CERTIFICATE-----\nnot base64 at all\n-----END CERTIFICATE-----\n");
    edit_identity("\"cert\": \"cert-1.pem\"", "\"cert\": \"cert-1.pem\", \"chain\": \"chain-1.pem\"");
    fake f = {.now = T0};
    renew_against_nobody(&f, ENR_E_IO);
    assert_non_null(strstr(f.log, "using the bootstrap credential"));
}

static void test_mismatched_key_falls_back(void **state)
{
    (void)state;
    /* A certificate for another key than device.key. */
    char *other = read_text("service-trust.pem");
    write_text("chain-1.pem", other);
    free(other);
    edit_identity("\"cert\": \"cert-1.pem\"", "\"cert\": \"cert-1.pem\", \"chain\": \"chain-1.pem\"");
    fake f = {.now = T0};
    renew_against_nobody(&f, ENR_E_IO);
    assert_non_null(strstr(f.log, "client key"));
    assert_non_null(strstr(f.log, "using the bootstrap credential"));
}

static void test_missing_key_made_again(void **state)
{
    (void)state;
    char path[512];
    snprintf(path, sizeof path, "%s/device.key", g_dir);
    assert_int_equal(unlink(path), 0);
    fake f = {.now = T0};
    renew_against_nobody(&f, ENR_E_IO);
    assert_non_null(strstr(f.log, "is missing"));
    assert_non_null(strstr(f.log, "bootstrap credential"));
    struct stat st;
    assert_int_equal(stat(path, &st), 0); /* a new key, for the bootstrap registration's CSR */
    assert_int_equal(st.st_mode & 0777, 0600);
}

static void test_store_lock(void **state)
{
    (void)state;
    char path[512];
    snprintf(path, sizeof path, "%s/.lock", g_dir);
    int fd = open(path, O_RDWR | O_CREAT, 0600);
    assert_true(fd >= 0);
    assert_int_equal(flock(fd, LOCK_EX), 0); /* another process, as far as flock is concerned */
    assert_int_equal(write(fd, "4242\n", 5), 5);
    fake f = {.now = T0};
    enr_device_config o = {.clock = fake_clock, .sleep = fake_sleep_stop, .log = fake_log, .ctx = &f,
                           .max_attempts = 1};
    enr_device *d = NULL;
    enr_error err = {0};
    assert_int_equal(enr_device_open(g_dir, &o, &d, &err), ENR_OK);
    bool renewed = true;
    f.now = T0 + 20 * DAY;
    assert_int_equal(enr_device_renew_if_due(d, f.now, &renewed, &err), ENR_E_IO);
    assert_false(renewed);
    assert_non_null(strstr(err.message, "in use by another enroll process (pid 4242"));
    assert_non_null(strstr(f.log, "waiting for it"));
    assert_null(strstr(f.log, "due for renewal")); /* nothing attempted without the lock */
    close(fd);
    /* Released: the renewal goes ahead (and fails against nobody). */
    f.log[0] = '\0';
    assert_int_equal(enr_device_renew_if_due(d, f.now, &renewed, &err), ENR_E_IO);
    assert_non_null(strstr(f.log, "due for renewal"));
    enr_device_free(d);
}

static void test_reload_before_renewal(void **state)
{
    (void)state;
    fake f = {.now = T0};
    enr_device_config o = {.clock = fake_clock, .sleep = fake_sleep, .log = fake_log, .ctx = &f, .max_attempts = 1};
    enr_device *d = NULL;
    enr_error err = {0};
    assert_int_equal(enr_device_open(g_dir, &o, &d, &err), ENR_OK);
    /* Meanwhile another process renewed: generation 2, valid from T0 + 19 days. */
    edit_identity("\"generation\": 1", "\"generation\": 2");
    edit_identity("\"not_before\": \"2026-11-23T08:00:00Z\", \"not_after\": \"2026-12-23T08:00:00Z\"",
                  "\"not_before\": \"2026-12-12T08:00:00Z\", \"not_after\": \"2027-01-11T08:00:00Z\"");
    bool renewed = true;
    f.now = T0 + 20 * DAY; /* due for the identity this device opened, not for the current one */
    assert_int_equal(enr_device_renew_if_due(d, f.now, &renewed, &err), ENR_OK);
    assert_false(renewed);
    assert_string_equal(f.log, "");
    assert_int_equal(enr_device_renew_at(d), T0 + 19 * DAY + 20 * DAY);
    enr_device_free(d);
}

static void test_prune_keeps_current_key_by_identity(void **state)
{
    (void)state;
    /* The store reached through a symlink and with a trailing slash: the
     * key must still be recognised as the one to keep. */
    char link[300], spelled[320], keep[400];
    for (int g = 1; g <= 4; g++) {
        char name[32];
        snprintf(name, sizeof name, "cert-%d.pem", g);
        write_text(name, "x");
    }
    write_text("key-1.pem", "k");
    write_text("key-2.pem", "k");
    snprintf(link, sizeof link, "%s-link", g_dir);
    (void)unlink(link);
    assert_int_equal(symlink(g_dir, link), 0);
    snprintf(spelled, sizeof spelled, "%s/", link);
    snprintf(keep, sizeof keep, "%s/key-2.pem", g_dir);
    const char *keepers[] = {keep};
    dev_store_prune(spelled, 4, keepers, 1);
    char path[512];
    snprintf(path, sizeof path, "%s/key-2.pem", g_dir);
    assert_int_equal(access(path, F_OK), 0);        /* named by the identity: kept */
    snprintf(path, sizeof path, "%s/key-1.pem", g_dir);
    assert_int_not_equal(access(path, F_OK), 0);    /* named by nothing: removed */
    snprintf(path, sizeof path, "%s/cert-2.pem", g_dir);
    assert_int_not_equal(access(path, F_OK), 0);
    snprintf(path, sizeof path, "%s/cert-3.pem", g_dir);
    assert_int_equal(access(path, F_OK), 0);
    assert_int_equal(unlink(link), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_renewal_timing_and_backoff, setup, teardown),
        cmocka_unit_test_setup_teardown(test_configured_window, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_config, setup, teardown),
        cmocka_unit_test(test_identity_bad_input),
        cmocka_unit_test_setup_teardown(test_saved_window_not_longer_than_lifetime, setup, teardown),
        cmocka_unit_test_setup_teardown(test_corrupt_chain_falls_back, setup, teardown),
        cmocka_unit_test_setup_teardown(test_mismatched_key_falls_back, setup, teardown),
        cmocka_unit_test_setup_teardown(test_missing_key_made_again, setup, teardown),
        cmocka_unit_test_setup_teardown(test_store_lock, setup, teardown),
        cmocka_unit_test_setup_teardown(test_reload_before_renewal, setup, teardown),
        cmocka_unit_test_setup_teardown(test_prune_keeps_current_key_by_identity, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
