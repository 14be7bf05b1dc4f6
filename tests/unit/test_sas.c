/* SAS tokens: known answers judged by the openssl command (not by our own
 * HMAC), make/parse/verify round trips, each verification outcome, and a
 * table of malformed headers that must each be refused with a message. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "enroll/sas.h"

#define SCOPE "0ne00000A0A"
#define REG_ID "dev-001"
#define EXPIRY_TEXT "1767225600"
#define EXPIRY ((time_t)1767225600) /* 2026-01-01T00:00:00Z */
/* The sr Microsoft's Node/Python/C# SDKs send, written out by hand. */
#define SR_UPPER SCOPE "%2Fregistrations%2F" REG_ID
/* The sr azure-sdk-for-c sends. */
#define SR_LOWER SCOPE "%2fregistrations%2f" REG_ID

/* A 64-byte device key, as hex (for openssl) and as base64 (for us). */
#define DEVICE_KEY_HEX                                                                         \
    "8f3a5c7e1b2d4f6081a3c5e7092b4d6f718395a7b9cbdde0f1021324354657687a8b9cadbecfd0e1f2031425" \
    "3647586979a8b9cad0e1f2031425364758697a8b"
#define DEVICE_KEY_B64                                                                         \
    "jzpcfhstT2CBo8XnCStNb3GDlae5y93g8QITJDVGV2h6i5ytvs/Q4fIDFCU2R1hpeai5ytDh8gMUJTZHWGl6iw=="
#define SECOND_KEY_HEX "5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a"
#define SECOND_KEY_B64 "WlpaWlpaWlpaWlpaWlpaWlpaWlpaWlpaWlpaWlpaWlo="
#define GROUP_KEY_HEX "00112233445566778899aabbccddeeff0f1e2d3c4b5a69788796a5b4c3d2e1f0"
#define GROUP_KEY_B64 "ABEiM0RVZneImaq7zN3u/w8eLTxLWml4h5altMPS4fA="

/* The same answers from Python's hmac module, so a broken openssl command
 * cannot make the test pass vacuously. */
#define KAT_SIG_B64 "/qeccBARE2cP/I6wrODxexC9j+9pReyBFqar9UzVtP8="
#define KAT_SIG_LOWER_SR_B64 "mwTUH3y5mOwyzVMiLNJyk6kXYYvoVyzY83dyQtZ8xPY="
#define KAT_DERIVED_B64 "jxi8NyuV1iLtTJcWl+55+8Hk0zsMNZRkjLjegssqRmE="

/* A well-formed signature value for parser tests: base64 of fb 00 * 31. */
#define SIG_FIELD "sig=%2BwAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA%3D"
#define SIG_FIELD_RAW "sig=+wAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="

/* ---- helpers ---------------------------------------------------------- */

/* Runs a shell command and returns its first output line, newline removed. */
static void run_line(const char *cmd, char *out, size_t cap)
{
    FILE *p = popen(cmd, "r");
    assert_non_null(p);
    if (fgets(out, (int)cap, p) == NULL)
        out[0] = '\0';
    int status = pclose(p);
    if (status != 0)
        print_error("command failed (%d): %s\n", status, cmd);
    assert_int_equal(status, 0);
    out[strcspn(out, "\r\n")] = '\0';
}

/* base64(HMAC-SHA256(hex key, msg)) computed by the openssl command. `msg`
 * is passed through printf '%s' and may hold no single quote. */
static void openssl_hmac_b64(const char *key_hex, const char *msg_a, const char *msg_b,
                             char *out, size_t cap)
{
    char cmd[1024];
    if (msg_b == NULL)
        snprintf(cmd, sizeof cmd, "printf '%%s' '%s'", msg_a);
    else
        snprintf(cmd, sizeof cmd, "printf '%%s\\n%%s' '%s' '%s'", msg_a, msg_b);
    size_t used = strlen(cmd);
    snprintf(cmd + used, sizeof cmd - used,
             " | openssl dgst -sha256 -mac HMAC -macopt hexkey:%s -binary | openssl base64 -A",
             key_hex);
    run_line(cmd, out, cap);
}

/* What Microsoft's SDKs do to a base64 signature, written independently. */
static void url_encode_b64(const char *b64, char *out, size_t cap)
{
    size_t n = 0;
    for (const char *p = b64; *p != '\0' && n + 4 < cap; p++) {
        const char *esc = *p == '+' ? "%2B" : *p == '/' ? "%2F" : *p == '=' ? "%3D" : NULL;
        if (esc != NULL) {
            memcpy(out + n, esc, 3);
            n += 3;
        } else {
            out[n++] = *p;
        }
    }
    out[n] = '\0';
}

/* Not inlined: gcc 12 at -O3 then mistakes the returned token for the
 * address of the local `token` (-Wdangling-pointer) in its callers. */
__attribute__((noinline)) static char *make_ok(const char *scope, const char *id, const char *key, time_t expiry)
{
    char *token = NULL;
    enr_error err = {0};
    enr_code rc = enr_sas_token_make(scope, id, key, expiry, &token, &err);
    if (rc != ENR_OK)
        print_error("make failed: %s\n", err.message);
    assert_int_equal(rc, ENR_OK);
    assert_non_null(token);
    return token;
}

static enr_sas_token *parse_ok(const char *header)
{
    enr_sas_token *t = NULL;
    enr_error err = {0};
    enr_code rc = enr_sas_token_parse(header, &t, &err);
    if (rc != ENR_OK)
        print_error("parse failed for %s: %s\n", header, err.message);
    assert_int_equal(rc, ENR_OK);
    assert_non_null(t);
    return t;
}

/* Verifies `header` against the device key (and optionally a second one). */
static enr_code verify_header(const char *header, const char *scope, const char *id,
                              const char *const *keys, size_t key_count, time_t now, long skew,
                              long max_lifetime, int *index, enr_error *err)
{
    enr_sas_token *t = parse_ok(header);
    enr_code rc = enr_sas_token_verify(t, scope, id, keys, key_count, now, skew, max_lifetime,
                                       index, err);
    enr_sas_token_free(t);
    return rc;
}

static const char *const DEVICE_KEYS[] = {DEVICE_KEY_B64};

/* Asserts a refusal that explains itself and leaks no secret. */
static void assert_refused(enr_code rc, const enr_error *err, enr_code want, const char *fragment)
{
    if (rc != want || strstr(err->message, fragment) == NULL)
        print_error("got %d \"%s\", wanted %d containing \"%s\"\n", rc, err->message, want,
                    fragment);
    assert_int_equal(rc, want);
    assert_true(err->message[0] != '\0');
    assert_non_null(strstr(err->message, fragment));
    assert_null(strstr(err->message, DEVICE_KEY_B64));
    assert_null(strstr(err->message, SECOND_KEY_B64));
    assert_null(strstr(err->message, GROUP_KEY_B64));
    assert_null(strstr(err->message, "wAAAAAAAAAAAAAAAA"));
    assert_null(strstr(err->message, "qeccBARE2cP"));
}

/* ---- registration ids ------------------------------------------------- */

static void test_registration_id_valid(void **state)
{
    (void)state;
    static const char *const good[] = {"dev-001", "a", "A.b_c:d-", "device:42", "x-"};
    static const char *const bad[] = {"", "dev.", "dev_", "dev:", "dev 1", "dev/1", "dév",
                                      "dev%31"};
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++)
        assert_true(enr_registration_id_valid(good[i]));
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        assert_false(enr_registration_id_valid(bad[i]));
    assert_false(enr_registration_id_valid(NULL));
    char id[ENR_REGISTRATION_ID_MAX + 2];
    memset(id, 'a', sizeof id);
    id[ENR_REGISTRATION_ID_MAX] = '\0';
    assert_true(enr_registration_id_valid(id));
    id[ENR_REGISTRATION_ID_MAX] = 'a';
    id[ENR_REGISTRATION_ID_MAX + 1] = '\0';
    assert_false(enr_registration_id_valid(id));
}

/* ---- known answers ---------------------------------------------------- */

static void test_key_constants_agree(void **state)
{
    (void)state;
    static const char *const pairs[][2] = {{DEVICE_KEY_B64, DEVICE_KEY_HEX},
                                           {SECOND_KEY_B64, SECOND_KEY_HEX},
                                           {GROUP_KEY_B64, GROUP_KEY_HEX}};
    for (size_t i = 0; i < 3; i++) {
        char cmd[512], hex[256];
        snprintf(cmd, sizeof cmd,
                 "printf '%%s' '%s' | openssl base64 -d -A | od -An -v -tx1 | tr -d ' \\n'",
                 pairs[i][0]);
        run_line(cmd, hex, sizeof hex);
        assert_string_equal(hex, pairs[i][1]);
    }
}

static void test_derive_kat(void **state)
{
    (void)state;
    char want[128];
    openssl_hmac_b64(GROUP_KEY_HEX, REG_ID, NULL, want, sizeof want);
    assert_string_equal(want, KAT_DERIVED_B64);
    char *key = NULL;
    enr_error err = {0};
    assert_int_equal(enr_sas_derive_device_key(GROUP_KEY_B64, REG_ID, &key, &err), ENR_OK);
    assert_string_equal(key, want);
    enr_sas_secret_free(key);
}

/* Ids differing only in case are one registration with one key: the
 * derivation is over the lower-case id (HMAC computed by openssl). */
static void test_derive_is_over_the_canonical_id(void **state)
{
    (void)state;
    char *lower = NULL, *upper = NULL, *mixed = NULL;
    assert_int_equal(enr_sas_derive_device_key(GROUP_KEY_B64, "sensor-1", &lower, NULL), ENR_OK);
    assert_int_equal(enr_sas_derive_device_key(GROUP_KEY_B64, "SENSOR-1", &upper, NULL), ENR_OK);
    assert_int_equal(enr_sas_derive_device_key(GROUP_KEY_B64, "Sensor-1", &mixed, NULL), ENR_OK);
    assert_string_equal(lower, upper);
    assert_string_equal(lower, mixed);
    char want[128];
    openssl_hmac_b64(GROUP_KEY_HEX, "sensor-1", NULL, want, sizeof want);
    assert_string_equal(mixed, want);
    enr_sas_secret_free(lower);
    enr_sas_secret_free(upper);
    enr_sas_secret_free(mixed);
}

static void test_derive_refuses_bad_keys(void **state)
{
    (void)state;
    static const struct {
        const char *key;
        const char *fragment;
    } cases[] = {
        {"", "empty"},
        {"not base64!", "multiple of 4"},
        {"ABEi M0RVZneImaq7zN3u/w8eLTxLWml4h5altMPS4fA", "alphabet"},
        {"ABEiM0RVZneImaq7zN3u/w8eLTxLWml4h5altMPS4fA", "multiple of 4"},
        {"AB=iM0RVZneImaq7zN3u/w8eLTxLWml4h5altMPS4fA=", "'=' before the end"},
        {"ABEiM0RVZneImaq7zN3u/w8eLTxLWml4h5altMPS4fB=", "unused bits"},
        {"ABEiM0RVZneImaq7zN3u/w==", "decodes to 16"}, /* 16 bytes: fine, see below */
        {"ABEiM0RVZneImaq7zN3u", "decodes to 15 bytes"},
        {"ABEiM0RVZneImaq7zN3u-w8eLTxLWml4h5altMPS4fA=", "alphabet"}, /* base64url */
        {DEVICE_KEY_B64 "AAAA", "too long"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char *key = NULL;
        enr_error err = {0};
        enr_code rc = enr_sas_derive_device_key(cases[i].key, REG_ID, &key, &err);
        if (strcmp(cases[i].fragment, "decodes to 16") == 0) {
            assert_int_equal(rc, ENR_OK);
            enr_sas_secret_free(key);
            continue;
        }
        assert_refused(rc, &err, ENR_E_USAGE, cases[i].fragment);
        assert_null(key);
    }
    char *key = NULL;
    enr_error err = {0};
    assert_refused(enr_sas_derive_device_key(GROUP_KEY_B64, "dev.", &key, &err), &err,
                   ENR_E_USAGE, "registration id 'dev.' is not valid");
    assert_refused(enr_sas_derive_device_key(NULL, REG_ID, &key, &err), &err, ENR_E_USAGE,
                   "group key is missing");
}

static void test_make_kat(void **state)
{
    (void)state;
    char sig[128], sig_enc[256], want[512];
    openssl_hmac_b64(DEVICE_KEY_HEX, SR_UPPER, EXPIRY_TEXT, sig, sizeof sig);
    assert_string_equal(sig, KAT_SIG_B64);
    url_encode_b64(sig, sig_enc, sizeof sig_enc);
    snprintf(want, sizeof want,
             "SharedAccessSignature sr=%s&sig=%s&se=" EXPIRY_TEXT "&skn=registration", SR_UPPER,
             sig_enc);
    char *token = make_ok(SCOPE, REG_ID, DEVICE_KEY_B64, EXPIRY);
    assert_string_equal(token, want);
    enr_sas_secret_free(token);
}

static void test_make_refuses_bad_arguments(void **state)
{
    (void)state;
    char *token = NULL;
    enr_error err = {0};
    assert_refused(enr_sas_token_make(SCOPE, "dev/1", DEVICE_KEY_B64, EXPIRY, &token, &err), &err,
                   ENR_E_USAGE, "registration id");
    assert_refused(enr_sas_token_make("a/b", REG_ID, DEVICE_KEY_B64, EXPIRY, &token, &err), &err,
                   ENR_E_USAGE, "ID scope");
    assert_refused(enr_sas_token_make("", REG_ID, DEVICE_KEY_B64, EXPIRY, &token, &err), &err,
                   ENR_E_USAGE, "ID scope");
    assert_refused(enr_sas_token_make(SCOPE, REG_ID, DEVICE_KEY_B64, -1, &token, &err), &err,
                   ENR_E_USAGE, "before 1970");
    assert_refused(enr_sas_token_make(SCOPE, REG_ID, "short", EXPIRY, &token, &err), &err,
                   ENR_E_USAGE, "device key");
    assert_null(token);
}

/* ---- round trips and verification outcomes ---------------------------- */

static void test_round_trip(void **state)
{
    (void)state;
    char *token = make_ok(SCOPE, REG_ID, DEVICE_KEY_B64, EXPIRY);
    enr_sas_token *t = parse_ok(token);
    assert_string_equal(enr_sas_token_sr(t), SR_UPPER);
    assert_string_equal(enr_sas_token_resource(t), SCOPE "/registrations/" REG_ID);
    assert_string_equal(enr_sas_token_se(t), EXPIRY_TEXT);
    assert_int_equal(enr_sas_token_expiry(t), EXPIRY);
    assert_string_equal(enr_sas_token_key_name(t), "registration");
    size_t sig_len = 0;
    const unsigned char *sig = enr_sas_token_signature(t, &sig_len);
    assert_int_equal(sig_len, 32);
    assert_int_equal(sig[0], 0xfe); /* KAT_SIG_B64 begins "/qe" */
    enr_error err = {0};
    int index = 99;
    assert_int_equal(enr_sas_token_verify(t, SCOPE, REG_ID, DEVICE_KEYS, 1, EXPIRY - 60,
                                          ENR_SAS_DEFAULT_SKEW_SECONDS, 0, &index, &err),
                     ENR_OK);
    assert_int_equal(index, 0);
    enr_sas_token_free(t);
    enr_sas_secret_free(token);
}

static void test_group_derived_round_trip(void **state)
{
    (void)state;
    char *device_key = NULL;
    assert_int_equal(enr_sas_derive_device_key(GROUP_KEY_B64, REG_ID, &device_key, NULL), ENR_OK);
    char *token = make_ok(SCOPE, REG_ID, device_key, EXPIRY);
    const char *const keys[] = {device_key};
    enr_error err = {0};
    assert_int_equal(verify_header(token, SCOPE, REG_ID, keys, 1, EXPIRY, 0, 0, NULL, &err),
                     ENR_OK);
    enr_sas_secret_free(token);
    enr_sas_secret_free(device_key);
}

static void test_primary_and_secondary(void **state)
{
    (void)state;
    const char *const keys[] = {DEVICE_KEY_B64, SECOND_KEY_B64};
    char *by_primary = make_ok(SCOPE, REG_ID, DEVICE_KEY_B64, EXPIRY);
    char *by_secondary = make_ok(SCOPE, REG_ID, SECOND_KEY_B64, EXPIRY);
    enr_error err = {0};
    int index = -7;
    assert_int_equal(verify_header(by_primary, SCOPE, REG_ID, keys, 2, EXPIRY, 0, 0, &index, &err),
                     ENR_OK);
    assert_int_equal(index, 0);
    assert_int_equal(
        verify_header(by_secondary, SCOPE, REG_ID, keys, 2, EXPIRY, 0, 0, &index, &err), ENR_OK);
    assert_int_equal(index, 1);
    /* An enrollment without a secondary key passes NULL in its place. */
    const char *const only_secondary[] = {NULL, SECOND_KEY_B64};
    assert_int_equal(verify_header(by_secondary, SCOPE, REG_ID, only_secondary, 2, EXPIRY, 0, 0,
                                   &index, &err),
                     ENR_OK);
    assert_int_equal(index, 1);
    /* The same key twice: the first match is reported. */
    const char *const twice[] = {SECOND_KEY_B64, SECOND_KEY_B64};
    assert_int_equal(
        verify_header(by_secondary, SCOPE, REG_ID, twice, 2, EXPIRY, 0, 0, &index, &err), ENR_OK);
    assert_int_equal(index, 0);
    enr_sas_secret_free(by_primary);
    enr_sas_secret_free(by_secondary);
}

static void test_wrong_key(void **state)
{
    (void)state;
    char *token = make_ok(SCOPE, REG_ID, SECOND_KEY_B64, EXPIRY);
    enr_error err = {0};
    int index = 5;
    enr_code rc = verify_header(token, SCOPE, REG_ID, DEVICE_KEYS, 1, EXPIRY, 0, 0, &index, &err);
    assert_refused(rc, &err, ENR_E_VERIFY, "signature does not match");
    assert_int_equal(index, -1);
    enr_sas_secret_free(token);
}

/* Tampering with the expiry after signing must break the signature. */
static void test_altered_expiry(void **state)
{
    (void)state;
    char *token = make_ok(SCOPE, REG_ID, DEVICE_KEY_B64, EXPIRY);
    char *se = strstr(token, "&se=" EXPIRY_TEXT);
    assert_non_null(se);
    se[4] = '2';
    enr_error err = {0};
    enr_code rc = verify_header(token, SCOPE, REG_ID, DEVICE_KEYS, 1, EXPIRY, 0, 0, NULL, &err);
    assert_refused(rc, &err, ENR_E_VERIFY, "signature does not match");
    enr_sas_secret_free(token);
}

static void test_expiry_and_skew_boundary(void **state)
{
    (void)state;
    char *token = make_ok(SCOPE, REG_ID, DEVICE_KEY_B64, EXPIRY);
    enr_error err = {0};
    /* se == now - skew is the last accepted moment. */
    assert_int_equal(verify_header(token, SCOPE, REG_ID, DEVICE_KEYS, 1, EXPIRY + 300, 300, 0,
                                   NULL, &err),
                     ENR_OK);
    enr_code rc =
        verify_header(token, SCOPE, REG_ID, DEVICE_KEYS, 1, EXPIRY + 301, 300, 0, NULL, &err);
    assert_refused(rc, &err, ENR_E_POLICY, "expired at 2026-01-01T00:00:00Z");
    assert_int_equal(err.reason, ENR_R_TOKEN_TIME); /* what the service answers 401003 on */
    rc = verify_header(token, SCOPE, REG_ID, DEVICE_KEYS, 1, EXPIRY + 1, 0, 0, NULL, &err);
    assert_refused(rc, &err, ENR_E_POLICY, "expired");
    assert_int_equal(
        verify_header(token, SCOPE, REG_ID, DEVICE_KEYS, 1, EXPIRY, 0, 0, NULL, &err), ENR_OK);
    enr_sas_secret_free(token);
}

static void test_future_limit(void **state)
{
    (void)state;
    char *token = make_ok(SCOPE, REG_ID, DEVICE_KEY_B64, EXPIRY);
    enr_error err = {0};
    /* Accepted up to now + skew + max lifetime. */
    time_t now = EXPIRY - 3600 - 300;
    assert_int_equal(
        verify_header(token, SCOPE, REG_ID, DEVICE_KEYS, 1, now, 300, 3600, NULL, &err), ENR_OK);
    enr_code rc =
        verify_header(token, SCOPE, REG_ID, DEVICE_KEYS, 1, now - 1, 300, 3600, NULL, &err);
    assert_refused(rc, &err, ENR_E_POLICY, "too far in the future");
    assert_int_equal(err.reason, ENR_R_TOKEN_TIME);
    /* 0 means no limit: a token valid for centuries is still accepted. */
    assert_int_equal(verify_header(token, SCOPE, REG_ID, DEVICE_KEYS, 1, 0, 300, 0, NULL, &err),
                     ENR_OK);
    enr_sas_secret_free(token);
}

static void test_wrong_scope(void **state)
{
    (void)state;
    char *token = make_ok(SCOPE, REG_ID, DEVICE_KEY_B64, EXPIRY);
    enr_error err = {0};
    enr_code rc =
        verify_header(token, "0ne00000B0B", REG_ID, DEVICE_KEYS, 1, EXPIRY, 0, 0, NULL, &err);
    assert_refused(rc, &err, ENR_E_POLICY, "ID scope '" SCOPE "', not '0ne00000B0B'");
    /* The scope is compared exactly. */
    rc = verify_header(token, "0NE00000A0A", REG_ID, DEVICE_KEYS, 1, EXPIRY, 0, 0, NULL, &err);
    assert_refused(rc, &err, ENR_E_POLICY, "ID scope");
    enr_sas_secret_free(token);
}

static void test_wrong_registration_id(void **state)
{
    (void)state;
    char *token = make_ok(SCOPE, REG_ID, DEVICE_KEY_B64, EXPIRY);
    enr_error err = {0};
    enr_code rc =
        verify_header(token, SCOPE, "dev-002", DEVICE_KEYS, 1, EXPIRY, 0, 0, NULL, &err);
    assert_refused(rc, &err, ENR_E_POLICY, "registration id '" REG_ID "', not 'dev-002'");
    assert_int_equal(err.reason, ENR_R_NONE); /* another resource: not a time problem */
    rc = verify_header(token, SCOPE, "dev-00", DEVICE_KEYS, 1, EXPIRY, 0, 0, NULL, &err);
    assert_refused(rc, &err, ENR_E_POLICY, "registration id");
    enr_sas_secret_free(token);
}

static void test_registration_id_case_insensitive(void **state)
{
    (void)state;
    char *token = make_ok(SCOPE, "Dev-001", DEVICE_KEY_B64, EXPIRY);
    enr_error err = {0};
    assert_int_equal(
        verify_header(token, SCOPE, "dev-001", DEVICE_KEYS, 1, EXPIRY, 0, 0, NULL, &err), ENR_OK);
    assert_int_equal(
        verify_header(token, SCOPE, "DEV-001", DEVICE_KEYS, 1, EXPIRY, 0, 0, NULL, &err), ENR_OK);
    enr_sas_secret_free(token);
}

static void test_resource_not_a_registration(void **state)
{
    (void)state;
    static const char *const headers[] = {
        "SharedAccessSignature sr=" SCOPE "%2Fdevices%2F" REG_ID "&" SIG_FIELD
        "&se=1&skn=registration",
        "SharedAccessSignature sr=" SCOPE "&" SIG_FIELD "&se=1&skn=registration",
        "SharedAccessSignature sr=" SCOPE "%2Fregistrations%2F&" SIG_FIELD
        "&se=1&skn=registration",
    };
    for (size_t i = 0; i < sizeof headers / sizeof headers[0]; i++) {
        enr_error err = {0};
        enr_code rc =
            verify_header(headers[i], SCOPE, REG_ID, DEVICE_KEYS, 1, EXPIRY, 0, 0, NULL, &err);
        assert_refused(rc, &err, ENR_E_POLICY, "is not of the form");
    }
    enr_error err = {0};
    enr_code rc = verify_header("SharedAccessSignature sr=" SR_UPPER "&" SIG_FIELD
                                "&se=1&skn=iothubowner",
                                SCOPE, REG_ID, DEVICE_KEYS, 1, EXPIRY, 0, 0, NULL, &err);
    assert_refused(rc, &err, ENR_E_POLICY, "key name (skn) 'iothubowner'");
}

/* Swaps the four fields of a made token into every order. */
static void test_field_order_permutations(void **state)
{
    (void)state;
    char *token = make_ok(SCOPE, REG_ID, DEVICE_KEY_B64, EXPIRY);
    const char *body = token + strlen("SharedAccessSignature ");
    char fields[4][256];
    const char *p = body;
    for (int f = 0; f < 4; f++) {
        size_t n = strcspn(p, "&");
        assert_true(n < sizeof fields[f]);
        memcpy(fields[f], p, n);
        fields[f][n] = '\0';
        p += n + (p[n] == '&');
    }
    int count = 0;
    for (int a = 0; a < 4; a++)
        for (int b = 0; b < 4; b++)
            for (int c = 0; c < 4; c++) {
                int d = 6 - a - b - c;
                if (a == b || a == c || b == c || d < 0 || d > 3 || d == a || d == b || d == c)
                    continue;
                char header[4 * 256 + 32];
                snprintf(header, sizeof header, "SharedAccessSignature %s&%s&%s&%s", fields[a],
                         fields[b], fields[c], fields[d]);
                enr_error err = {0};
                assert_int_equal(verify_header(header, SCOPE, REG_ID, DEVICE_KEYS, 1, EXPIRY, 0,
                                               0, NULL, &err),
                                 ENR_OK);
                count++;
            }
    assert_int_equal(count, 24);
    enr_sas_secret_free(token);
}

/* azure-sdk-for-c style: lowercase escapes, signed over the lowercase sr. */
static void test_lowercase_escapes_accepted(void **state)
{
    (void)state;
    char sig[128], header[512];
    openssl_hmac_b64(DEVICE_KEY_HEX, SR_LOWER, EXPIRY_TEXT, sig, sizeof sig);
    assert_string_equal(sig, KAT_SIG_LOWER_SR_B64);
    char sig_enc[256];
    url_encode_b64(sig, sig_enc, sizeof sig_enc);
    for (char *q = sig_enc; *q != '\0'; q++)
        if (q[0] == '%')
            q[2] = (char)(q[2] >= 'A' && q[2] <= 'F' ? q[2] - 'A' + 'a' : q[2]);
    snprintf(header, sizeof header,
             "SharedAccessSignature sr=%s&sig=%s&se=" EXPIRY_TEXT "&skn=registration", SR_LOWER,
             sig_enc);
    enr_sas_token *t = parse_ok(header);
    assert_string_equal(enr_sas_token_sr(t), SR_LOWER);
    assert_string_equal(enr_sas_token_resource(t), SCOPE "/registrations/" REG_ID);
    enr_error err = {0};
    int index = -1;
    assert_int_equal(
        enr_sas_token_verify(t, SCOPE, REG_ID, DEVICE_KEYS, 1, EXPIRY, 0, 0, &index, &err),
        ENR_OK);
    assert_int_equal(index, 0);
    enr_sas_token_free(t);

    /* The HMAC covers sr as sent: the same signature under the other
     * spelling of sr does not verify. */
    snprintf(header, sizeof header,
             "SharedAccessSignature sr=%s&sig=%s&se=" EXPIRY_TEXT "&skn=registration", SR_UPPER,
             sig_enc);
    enr_code rc = verify_header(header, SCOPE, REG_ID, DEVICE_KEYS, 1, EXPIRY, 0, 0, NULL, &err);
    assert_refused(rc, &err, ENR_E_VERIFY, "signature does not match");
}

/* sig is percent-decoded once and '+' is not a space. */
static void test_sig_plus_stays_plus(void **state)
{
    (void)state;
    enr_sas_token *encoded =
        parse_ok("SharedAccessSignature sr=" SR_UPPER "&" SIG_FIELD "&se=1&skn=registration");
    enr_sas_token *raw =
        parse_ok("SharedAccessSignature sr=" SR_UPPER "&" SIG_FIELD_RAW "&se=1&skn=registration");
    size_t n1 = 0, n2 = 0;
    const unsigned char *s1 = enr_sas_token_signature(encoded, &n1);
    const unsigned char *s2 = enr_sas_token_signature(raw, &n2);
    assert_int_equal(n1, 32);
    assert_int_equal(n2, 32);
    assert_memory_equal(s1, s2, 32);
    assert_int_equal(s1[0], 0xfb);
    enr_sas_token_free(encoded);
    enr_sas_token_free(raw);
    /* Decoding twice would turn %252B into '+'; once leaves "%2B", not base64. */
    enr_sas_token *t = NULL;
    enr_error err = {0};
    enr_code rc = enr_sas_token_parse("SharedAccessSignature sr=" SR_UPPER
                                      "&sig=%252BwAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA%253D"
                                      "&se=1&skn=registration",
                                      &t, &err);
    assert_refused(rc, &err, ENR_E_PARSE, "not base64");
    assert_null(t);
}

static void test_scheme_case_and_spaces(void **state)
{
    (void)state;
    enr_sas_token *t =
        parse_ok("sharedaccesssignature   sr=" SR_UPPER "&" SIG_FIELD "&se=1&skn=registration");
    assert_string_equal(enr_sas_token_sr(t), SR_UPPER);
    enr_sas_token_free(t);
}

static void test_verify_refuses_bad_configuration(void **state)
{
    (void)state;
    char *token = make_ok(SCOPE, REG_ID, DEVICE_KEY_B64, EXPIRY);
    enr_sas_token *t = parse_ok(token);
    enr_error err = {0};
    const char *const bad_secondary[] = {DEVICE_KEY_B64, "not a key"};
    assert_refused(enr_sas_token_verify(t, SCOPE, REG_ID, bad_secondary, 2, EXPIRY, 0, 0, NULL,
                                        &err),
                   &err, ENR_E_USAGE, "keys_b64[1]");
    const char *const none[] = {NULL, NULL};
    assert_refused(enr_sas_token_verify(t, SCOPE, REG_ID, none, 2, EXPIRY, 0, 0, NULL, &err),
                   &err, ENR_E_USAGE, "no key");
    assert_refused(enr_sas_token_verify(t, SCOPE, REG_ID, NULL, 0, EXPIRY, 0, 0, NULL, &err),
                   &err, ENR_E_USAGE, "no key");
    assert_refused(
        enr_sas_token_verify(t, SCOPE, REG_ID, DEVICE_KEYS, 1, EXPIRY, -1, 0, NULL, &err), &err,
        ENR_E_USAGE, "negative");
    assert_refused(
        enr_sas_token_verify(t, SCOPE, "bad id!", DEVICE_KEYS, 1, EXPIRY, 0, 0, NULL, &err), &err,
        ENR_E_USAGE, "registration id");
    assert_refused(
        enr_sas_token_verify(NULL, SCOPE, REG_ID, DEVICE_KEYS, 1, EXPIRY, 0, 0, NULL, &err), &err,
        ENR_E_USAGE, "no token");
    enr_sas_token_free(t);
    enr_sas_secret_free(token);
}

/* ---- the parser's bad-input table ------------------------------------- */

#define P "SharedAccessSignature "
#define SR "sr=" SR_UPPER
#define SE "se=" EXPIRY_TEXT
#define SKN "skn=registration"

static const struct bad_header {
    const char *name;
    const char *header;
    const char *fragment;
} BAD_HEADERS[] = {
    {"empty", "", "empty"},
    {"no scheme", SR "&" SIG_FIELD "&" SE "&" SKN, "does not start with 'SharedAccessSignature '"},
    {"other scheme", "Bearer abc", "does not start with"},
    {"scheme glued to fields", "SharedAccessSignaturesr=x", "does not start with"},
    {"scheme only", "SharedAccessSignature", "no fields"},
    {"scheme and spaces", P "   ", "no fields"},
    {"missing sr", P SIG_FIELD "&" SE "&" SKN, "'sr' field is missing"},
    {"missing sig", P SR "&" SE "&" SKN, "'sig' field is missing"},
    {"missing se", P SR "&" SIG_FIELD "&" SKN, "'se' field is missing"},
    {"missing skn", P SR "&" SIG_FIELD "&" SE, "'skn' field is missing"},
    {"duplicate sr", P SR "&" SIG_FIELD "&" SE "&" SKN "&" SR, "'sr' field appears twice"},
    {"duplicate se", P SE "&" SR "&" SIG_FIELD "&" SE "&" SKN, "'se' field appears twice (bytes 22"},
    {"unknown field", P SR "&" SIG_FIELD "&" SE "&" SKN "&foo=1", "unknown field 'foo'"},
    {"uppercase name", P "SR=" SR_UPPER "&" SIG_FIELD "&" SE "&" SKN, "unknown field 'SR'"},
    {"se not numeric", P SR "&" SIG_FIELD "&se=abc&" SKN, "decimal digits"},
    {"se negative", P SR "&" SIG_FIELD "&se=-1&" SKN, "decimal digits"},
    {"se signed", P SR "&" SIG_FIELD "&se=+1&" SKN, "decimal digits"},
    {"se escaped", P SR "&" SIG_FIELD "&se=%31&" SKN, "decimal digits"},
    {"se overflow", P SR "&" SIG_FIELD "&se=9223372036854775808&" SKN, "too large"},
    {"se far overflow", P SR "&" SIG_FIELD "&se=99999999999999999999999&" SKN, "too large"},
    {"sig not base64", P SR "&sig=****&" SE "&" SKN, "not base64"},
    {"sig truncated", P SR "&sig=%2BwAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA&" SE "&" SKN,
     "multiple of 4"},
    {"sig base64url", P SR "&sig=-wAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA%3D&" SE "&" SKN,
     "alphabet"},
    {"sig wrong length", P SR "&sig=AAAAAAAAAAAAAAAAAAAAAA%3D%3D&" SE "&" SKN,
     "decodes to 16 bytes"},
    {"sig space escape", P SR "&sig=%20wAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA%3D&" SE "&" SKN,
     "alphabet"},
    {"bad escape %zz", P "sr=%zz&" SIG_FIELD "&" SE "&" SKN, "not followed by two hex digits"},
    {"bad escape %4 at end", P SIG_FIELD "&" SE "&" SKN "&sr=abc%4",
     "not followed by two hex digits"},
    {"bad escape %4 before &", P "sr=abc%4&" SIG_FIELD "&" SE "&" SKN,
     "not followed by two hex digits"},
    {"lone % in skn", P SR "&" SIG_FIELD "&" SE "&skn=%", "'%' at byte"},
    {"NUL via %00 in sr", P "sr=" SCOPE "%00%2Fregistrations%2F" REG_ID "&" SIG_FIELD "&" SE "&" SKN,
     "NUL"},
    {"control via %0A in sr", P "sr=a%0Ab&" SIG_FIELD "&" SE "&" SKN, "control"},
    {"non-ASCII via %C3 in skn", P SR "&" SIG_FIELD "&" SE "&skn=%C3%A9", "non-ASCII"},
    {"empty value", P SR "&" SIG_FIELD "&se=&" SKN, "'se' field at byte"},
    {"no equals", P SR "&" SIG_FIELD "&" SE "&skn", "has no '='"},
    {"no name", P "=x&" SR "&" SIG_FIELD "&" SE "&" SKN, "no name"},
    {"empty field", P SR "&&" SIG_FIELD "&" SE "&" SKN, "empty field at byte"},
    {"trailing &", P SR "&" SIG_FIELD "&" SE "&" SKN "&", "empty field"},
    {"leading &", P "&" SR "&" SIG_FIELD "&" SE "&" SKN, "empty field at byte 22"},
    {"space inside", P SR "&" SIG_FIELD "& " SE "&" SKN, "a space"},
    {"trailing space", P SR "&" SIG_FIELD "&" SE "&" SKN " ", "a space"},
    {"tab inside", P SR "\t&" SIG_FIELD "&" SE "&" SKN, "control"},
    {"raw non-ASCII", P SR "\xc3\xa9&" SIG_FIELD "&" SE "&" SKN, "not ASCII"},
};

static void test_parse_bad_input_table(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof BAD_HEADERS / sizeof BAD_HEADERS[0]; i++) {
        enr_sas_token *t = (enr_sas_token *)&t; /* must be reset to NULL */
        enr_error err = {0};
        enr_code rc = enr_sas_token_parse(BAD_HEADERS[i].header, &t, &err);
        if (rc != ENR_E_PARSE || strstr(err.message, BAD_HEADERS[i].fragment) == NULL)
            print_error("case \"%s\": got %d \"%s\"\n", BAD_HEADERS[i].name, rc, err.message);
        assert_refused(rc, &err, ENR_E_PARSE, BAD_HEADERS[i].fragment);
        assert_null(t);
    }
}

static void test_parse_oversized(void **state)
{
    (void)state;
    /* A real token padded past the limit by a long sr. */
    size_t len = ENR_SAS_TOKEN_MAX + 1;
    char *header = malloc(len + 1);
    assert_non_null(header);
    memset(header, 'a', len);
    memcpy(header, P "sr=", strlen(P "sr="));
    header[len] = '\0';
    enr_sas_token *t = NULL;
    enr_error err = {0};
    assert_refused(enr_sas_token_parse(header, &t, &err), &err, ENR_E_PARSE, "longer than 2048");
    assert_null(t);
    /* Exactly at the limit the length is fine (the parse fails later). */
    header[ENR_SAS_TOKEN_MAX] = '\0';
    enr_code rc = enr_sas_token_parse(header, &t, &err);
    assert_int_equal(rc, ENR_E_PARSE);
    assert_null(strstr(err.message, "longer than"));
    free(header);
}

static void test_parse_usage(void **state)
{
    (void)state;
    enr_sas_token *t = NULL;
    enr_error err = {0};
    assert_refused(enr_sas_token_parse(NULL, &t, &err), &err, ENR_E_USAGE, "no header");
    assert_refused(enr_sas_token_parse("x", NULL, &err), &err, ENR_E_USAGE, "no output");
    /* err may be NULL. */
    assert_int_equal(enr_sas_token_parse("", &t, NULL), ENR_E_PARSE);
}

/* The reused HMAC gives what the one-shot one gives, whatever key came
 * before it: derivation, a match, a mismatch, two keys. */
static void test_reused_mac_same_results(void **state)
{
    (void)state;
    enr_error err;
    enr_sas_mac *m = NULL;
    assert_int_equal(enr_sas_mac_new(&m, &err), ENR_OK);
    for (int round = 0; round < 3; round++) {
        char *once = NULL, *reused = NULL;
        assert_int_equal(enr_sas_derive_device_key(GROUP_KEY_B64, REG_ID, &once, &err), ENR_OK);
        assert_int_equal(enr_sas_derive_device_key_with(m, GROUP_KEY_B64, REG_ID, &reused, &err), ENR_OK);
        assert_string_equal(once, reused);
        char *header = NULL;
        assert_int_equal(enr_sas_token_make(SCOPE, REG_ID, DEVICE_KEY_B64, 4102444800, &header, &err), ENR_OK);
        enr_sas_token *t = parse_ok(header);
        int index = -1;
        const char *const two[] = {once, DEVICE_KEY_B64};
        assert_int_equal(enr_sas_token_verify_with(m, t, SCOPE, REG_ID, two, 2, 4102444000, 300, 0, &index, &err),
                         ENR_OK);
        assert_int_equal(index, 1);
        assert_int_equal(enr_sas_token_verify_with(m, t, SCOPE, REG_ID, two, 1, 4102444000, 300, 0, &index, &err),
                         ENR_E_VERIFY);
        assert_int_equal(enr_sas_token_verify(t, SCOPE, REG_ID, two, 1, 4102444000, 300, 0, &index, &err),
                         ENR_E_VERIFY);
        enr_sas_token_free(t);
        enr_sas_secret_free(header);
        enr_sas_secret_free(once);
        enr_sas_secret_free(reused);
    }
    enr_sas_mac_free(m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_registration_id_valid),
        cmocka_unit_test(test_key_constants_agree),
        cmocka_unit_test(test_derive_kat),
        cmocka_unit_test(test_derive_is_over_the_canonical_id),
        cmocka_unit_test(test_derive_refuses_bad_keys),
        cmocka_unit_test(test_make_kat),
        cmocka_unit_test(test_make_refuses_bad_arguments),
        cmocka_unit_test(test_round_trip),
        cmocka_unit_test(test_group_derived_round_trip),
        cmocka_unit_test(test_primary_and_secondary),
        cmocka_unit_test(test_wrong_key),
        cmocka_unit_test(test_altered_expiry),
        cmocka_unit_test(test_expiry_and_skew_boundary),
        cmocka_unit_test(test_future_limit),
        cmocka_unit_test(test_wrong_scope),
        cmocka_unit_test(test_wrong_registration_id),
        cmocka_unit_test(test_registration_id_case_insensitive),
        cmocka_unit_test(test_resource_not_a_registration),
        cmocka_unit_test(test_field_order_permutations),
        cmocka_unit_test(test_lowercase_escapes_accepted),
        cmocka_unit_test(test_sig_plus_stays_plus),
        cmocka_unit_test(test_scheme_case_and_spaces),
        cmocka_unit_test(test_verify_refuses_bad_configuration),
        cmocka_unit_test(test_parse_bad_input_table),
        cmocka_unit_test(test_parse_oversized),
        cmocka_unit_test(test_parse_usage),
        cmocka_unit_test(test_reused_mac_same_results),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
