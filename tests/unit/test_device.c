/* The device library without a service: renewal timing with an injected
 * clock (not due: nothing happens; due: it tries), the backoff it asks the
 * injected sleep for (bounded, growing, jittered), the fallback from the
 * operational certificate to the bootstrap credential, and that a failed
 * renewal changes nothing but the last result on disk. */
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
#include <unistd.h>

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

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_renewal_timing_and_backoff, setup, teardown),
        cmocka_unit_test_setup_teardown(test_configured_window, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_config, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
