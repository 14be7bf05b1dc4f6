/* CA library: durations, signing without a record (enr_ca_sign), the index's
 * crash tolerance, serial properties. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <openssl/x509v3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "enroll/ca.h"
#include "enroll/duration.h"

static char dir[] = "/tmp/enroll-test-ca-XXXXXX";
static char root[600], issuing[600];

static int setup(void **state)
{
    (void)state;
    if (mkdtemp(dir) == NULL)
        return -1;
    snprintf(root, sizeof root, "%s/root", dir);
    snprintf(issuing, sizeof issuing, "%s/issuing", dir);
    enr_error err;
    enr_ca_init_options r = {.dir = root, .subject = "/CN=Test Root", .pathlen = -1};
    enr_ca_init_options i = {.dir = issuing, .subject = "/CN=Test Issuing", .pathlen = -1, .parent_dir = root};
    if (enr_ca_init(&r, &err) != ENR_OK || enr_ca_init(&i, &err) != ENR_OK) {
        fprintf(stderr, "setup: %s\n", err.message);
        return -1;
    }
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    char cmd[700];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    return system(cmd) == 0 ? 0 : -1;
}

static void test_durations(void **state)
{
    (void)state;
    enr_duration d;
    enr_error err;
    assert_int_equal(enr_duration_parse("P1Y2M3DT4H5M6S", &d, &err), ENR_OK);
    assert_int_equal(d.years, 1);
    assert_int_equal(d.months, 2);
    assert_int_equal(d.days, 3);
    assert_int_equal(d.seconds, 4 * 3600 + 5 * 60 + 6);
    assert_int_equal(enr_duration_parse("P2W", &d, &err), ENR_OK);
    assert_int_equal(d.days, 14);
    assert_int_equal(enr_duration_parse("PT12H", &d, &err), ENR_OK);
    assert_int_equal(d.seconds, 12 * 3600);
    char text[64];
    enr_duration_format(&d, text, sizeof text);
    assert_string_equal(text, "PT12H");
    /* Calendar arithmetic: one month from 31 January 2026 lands in March (timegm normalises). */
    time_t jan31 = 1769817600; /* 2026-01-31T00:00:00Z */
    enr_duration month = {0, 1, 0, 0};
    char at[32];
    enr_time_format(enr_duration_apply(jan31, &month, 1), at, sizeof at);
    assert_string_equal(at, "2026-03-03T00:00:00Z");
    enr_duration year = {1, 0, 0, 0};
    enr_time_format(enr_duration_apply(jan31, &year, 1), at, sizeof at);
    assert_string_equal(at, "2027-01-31T00:00:00Z");
    enr_time_format(enr_duration_apply(jan31, &year, -1), at, sizeof at);
    assert_string_equal(at, "2025-01-31T00:00:00Z");

    static const char *BAD[] = {"", "30D", "P", "PT", "P1.5D", "P1H", "PT1D", "P1D1Y", "P1YT",
                                "P-1D", "P99999999999D", "PT1HT1M", "P1DX", "P1Y1Y",
                                "P499999992W", "P300000D300000D", "P2000Y", "PT99999999999S"};
    for (size_t i = 0; i < sizeof BAD / sizeof BAD[0]; i++) {
        enr_error e2;
        if (enr_duration_parse(BAD[i], &d, &e2) != ENR_E_USAGE || e2.message[0] == '\0')
            fail_msg("duration '%s' accepted", BAD[i]);
    }
}

static enr_csr *device_csr(const char *cn)
{
    char key[700];
    snprintf(key, sizeof key, "%s/dev.key", dir);
    enr_error err;
    enr_signer *s = NULL;
    assert_int_equal(enr_key_generate_file(ENR_KEY_EC_P256, key, NULL, true, &err), ENR_OK);
    assert_int_equal(enr_signer_open(key, NULL, NULL, &s, &err), ENR_OK);
    enr_csr_spec *spec = enr_csr_spec_new();
    assert_int_equal(enr_csr_spec_add_dn(spec, cn, &err), ENR_OK);
    enr_csr *csr = NULL;
    assert_int_equal(enr_csr_build(spec, s, &csr, &err), ENR_OK);
    enr_csr_spec_free(spec);
    enr_signer_free(s);
    return csr;
}

static void test_sign_records_nothing(void **state)
{
    (void)state;
    enr_error err;
    enr_ca *ca = NULL;
    enr_profile *profile = NULL;
    assert_int_equal(enr_ca_open(issuing, NULL, NULL, &ca, &err), ENR_OK);
    assert_int_equal(enr_profile_new("device", &profile, &err), ENR_OK);
    enr_csr *csr = device_csr("CN=dev-rec");

    X509 *a = NULL, *b = NULL;
    assert_int_equal(enr_ca_sign(ca, csr, profile, 0, &a, &err), ENR_OK);
    assert_int_equal(enr_ca_sign(ca, csr, profile, 0, &b, &err), ENR_OK);
    const ASN1_INTEGER *serial = X509_get0_serialNumber(a);
    assert_int_equal(ASN1_STRING_length(serial), 20);
    assert_true((ASN1_STRING_get0_data(serial)[0] & 0x80) == 0);
    assert_true(ASN1_STRING_get0_data(serial)[0] != 0);
    /* Each signature draws its own serial (a caller whose store refused one
     * signs again). */
    assert_int_not_equal(ASN1_INTEGER_cmp(serial, X509_get0_serialNumber(b)), 0);
    X509_free(a);
    X509_free(b);

    /* The caller records: the directory index is untouched. */
    char path[700];
    snprintf(path, sizeof path, "%s/issued.jsonl", issuing);
    FILE *f = fopen(path, "r");
    assert_null(f);

    /* The same refusals as enr_ca_issue, typed. */
    enr_csr *other = device_csr("CN=dev-other");
    assert_int_equal(enr_profile_set_key_types(profile, "ec-p384", &err), ENR_OK);
    assert_int_equal(enr_ca_sign(ca, other, profile, 0, &a, &err), ENR_E_POLICY);
    assert_int_equal(err.reason, ENR_R_KEY_NOT_ALLOWED);
    assert_null(a);
    enr_csr_free(other);

    enr_csr_free(csr);
    enr_profile_free(profile);
    enr_ca_free(ca);
}

static void test_index_tolerates_torn_last_line(void **state)
{
    (void)state;
    enr_error err;
    enr_ca *ca = NULL;
    enr_profile *profile = NULL;
    assert_int_equal(enr_ca_open(issuing, NULL, NULL, &ca, &err), ENR_OK);
    assert_int_equal(enr_profile_new("device", &profile, &err), ENR_OK);
    enr_csr *csr = device_csr("CN=dev-idx");
    X509 *cert = NULL;
    assert_int_equal(enr_ca_issue(ca, csr, profile, 0, &cert, &err), ENR_OK);
    X509_free(cert);
    enr_ca_free(ca);

    /* A crash mid-append leaves a line without its newline: ignored. */
    char path[700];
    snprintf(path, sizeof path, "%s/issued.jsonl", issuing);
    FILE *f = fopen(path, "a");
    fputs("{\"serial\":\"0A0B", f);
    fclose(f);
    assert_int_equal(enr_ca_open(issuing, NULL, NULL, &ca, &err), ENR_OK);
    enr_issued *items = NULL;
    size_t count = 0;
    assert_int_equal(enr_ca_list(ca, &items, &count, &err), ENR_OK);
    assert_int_equal(count, 1);
    assert_string_equal(items[0].subject, "CN=dev-idx");
    free(items);

    /* The next issuance drops the torn tail instead of gluing onto it. */
    assert_int_equal(enr_ca_issue(ca, csr, profile, 0, &cert, &err), ENR_OK);
    X509_free(cert);
    enr_ca_free(ca);
    assert_int_equal(enr_ca_open(issuing, NULL, NULL, &ca, &err), ENR_OK);
    assert_int_equal(enr_ca_list(ca, &items, &count, &err), ENR_OK);
    assert_int_equal(count, 2);
    free(items);
    enr_ca_free(ca);

    /* A broken complete line is corruption: refuse to guess. */
    f = fopen(path, "a");
    fputs("\nnot json\n", f);
    fclose(f);
    assert_int_equal(enr_ca_open(issuing, NULL, NULL, &ca, &err), ENR_E_PARSE);
    assert_non_null(strstr(err.message, "issued.jsonl"));
    enr_csr_free(csr);
    enr_profile_free(profile);
}

/* The store.json note (on the root directory: an earlier test leaves the issuing index damaged): round trip, attaching elsewhere refused, and a
 * bad-input table for the parser. */
static void test_attachment_note(void **state)
{
    (void)state;
    enr_error err;
    enr_ca *ca = NULL;
    char location[ENR_CA_STORE_LOCATION_MAX + 1], name[129];
    assert_int_equal(enr_ca_open_public(root, &ca, &err), ENR_OK);
    assert_int_equal(enr_ca_attachment(ca, location, name, &err), ENR_E_NOTFOUND);
    assert_int_equal(enr_ca_attach(root, "/var/lib/enroll", "devices", &err), ENR_OK);
    assert_int_equal(enr_ca_attachment(ca, location, name, &err), ENR_OK);
    assert_string_equal(location, "/var/lib/enroll");
    assert_string_equal(name, "devices");
    assert_int_equal(enr_ca_attach(root, "/var/lib/enroll", "devices", &err), ENR_OK); /* again: fine */
    assert_int_equal(enr_ca_attach(root, "/srv/other", "devices", &err), ENR_E_EXISTS);
    assert_non_null(strstr(err.message, "/var/lib/enroll"));
    assert_int_equal(enr_ca_attach(root, "", "devices", &err), ENR_E_USAGE);
    enr_ca_free(ca);

    static const struct {
        const char *text;
        enr_code want;
    } CASES[] = {
        {"{\"store\": \"/d\", \"name\": \"n\"}", ENR_OK},
        {"", ENR_E_PARSE},
        {"{", ENR_E_PARSE},
        {"[]", ENR_E_PARSE},
        {"{\"store\": \"/d\"}", ENR_E_PARSE},                                     /* no name */
        {"{\"store\": \"/d\", \"name\": \"n\", \"extra\": 1}", ENR_E_PARSE},        /* unknown member */
        {"{\"store\": \"/d\", \"store\": \"/e\", \"name\": \"n\"}", ENR_E_PARSE}, /* duplicate */
        {"{\"store\": 7, \"name\": \"n\"}", ENR_E_PARSE},                          /* wrong type */
        {"{\"store\": \"\", \"name\": \"n\"}", ENR_E_PARSE},                       /* empty */
        {"{\"store\": \"/d\\u0000/x\", \"name\": \"n\"}", ENR_E_PARSE},            /* NUL inside */
        {"{\"store\": \"/d\", \"name\": \"n\"} trailing", ENR_E_PARSE},
    };
    for (size_t i = 0; i < sizeof CASES / sizeof CASES[0]; i++) {
        enr_code got = enr_ca_attachment_parse(CASES[i].text, strlen(CASES[i].text), location, name, &err);
        if (got != CASES[i].want)
            fail_msg("case %zu (%s): got %d, want %d", i, CASES[i].text, got, CASES[i].want);
    }
    char long_name[300];
    memset(long_name, 'a', sizeof long_name);
    char text[400];
    snprintf(text, sizeof text, "{\"store\": \"/d\", \"name\": \"%.*s\"}", 129, long_name);
    assert_int_equal(enr_ca_attachment_parse(text, strlen(text), location, name, &err), ENR_E_PARSE);
}

static void test_profile_refusals(void **state)
{
    (void)state;
    enr_error err;
    enr_profile *p = NULL;
    assert_int_equal(enr_profile_new("webserver", &p, &err), ENR_E_USAGE);
    assert_int_equal(enr_profile_new("device", &p, &err), ENR_OK);
    assert_int_equal(enr_profile_allow_san(p, "DNS", &err), ENR_E_USAGE);
    assert_int_equal(enr_profile_allow_san(p, "X400:*", &err), ENR_E_USAGE);
    assert_int_equal(enr_profile_allow_san(p, "DNS:", &err), ENR_E_USAGE);
    assert_int_equal(enr_profile_set_validity(p, "PT10S", &err), ENR_E_USAGE);
    assert_int_equal(enr_profile_set_key_types(p, "ec-p256,rsa-1024", &err), ENR_E_USAGE);
    assert_int_equal(enr_profile_force_cn(p, "", &err), ENR_E_USAGE);
    int reason = -1;
    assert_int_equal(enr_revocation_reason_parse("keyCompromise", &reason, &err), ENR_OK);
    assert_int_equal(reason, 1);
    assert_int_equal(enr_revocation_reason_parse("removeFromCRL", &reason, &err), ENR_E_USAGE);
    assert_string_equal(enr_revocation_reason_name(5), "cessationOfOperation");
    enr_profile_free(p);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_durations),
        cmocka_unit_test(test_sign_records_nothing),
        cmocka_unit_test(test_index_tolerates_torn_last_line),
        cmocka_unit_test(test_profile_refusals),
        cmocka_unit_test(test_attachment_note),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
