/* The CSR linter: each fixture in tests/data/lint carries one fault and must
 * produce exactly the findings for it; bad input of every kind must give an
 * error finding, never a crash; the rule table, the JSON and docs/lint.md
 * must agree with what the linter emits. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <jansson.h>
#include <openssl/evp.h>
#include <openssl/x509.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "enroll/csr.h"
#include "enroll/lint.h"

#define MAX_IDS 6

/* ---- helpers ---------------------------------------------------------- */

static char *data_path(const char *rel)
{
    const char *dir = getenv("ENROLL_TEST_DATA");
    assert_non_null(dir);
    size_t n = strlen(dir) + strlen(rel) + 2;
    char *path = malloc(n);
    assert_non_null(path);
    snprintf(path, n, "%s/%s", dir, rel);
    return path;
}

static unsigned char *read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL)
        fail_msg("cannot open %s", path);
    unsigned char *buf = NULL;
    size_t cap = 0, n = 0;
    for (;;) {
        if (n == cap) {
            cap = cap ? cap * 2 : 4096;
            buf = realloc(buf, cap + 1);
            assert_non_null(buf);
        }
        size_t got = fread(buf + n, 1, cap - n, f);
        if (got == 0)
            break;
        n += got;
    }
    fclose(f);
    buf[n] = '\0';
    *len = n;
    return buf;
}

static unsigned char *read_data(const char *rel, size_t *len)
{
    char *path = data_path(rel);
    unsigned char *buf = read_file(path, len);
    free(path);
    return buf;
}

static enr_lint_report *lint_bytes(const unsigned char *in, size_t len, const char *expect_cn)
{
    enr_lint_options opts = {expect_cn};
    enr_lint_report *report = NULL;
    enr_error err = {0};
    assert_int_equal(enr_lint_csr(in, len, &opts, &report, &err), ENR_OK);
    assert_non_null(report);
    return report;
}

static enr_lint_report *lint_data(const char *rel, const char *expect_cn)
{
    size_t len;
    unsigned char *in = read_data(rel, &len);
    enr_lint_report *report = lint_bytes(in, len, expect_cn);
    free(in);
    return report;
}

static void print_report(const char *what, const enr_lint_report *report)
{
    for (size_t i = 0; i < enr_lint_report_count(report); i++) {
        const enr_finding *f = enr_lint_report_get(report, i);
        print_message("  %s: %s [%s] %s\n", what, enr_severity_name(f->severity), f->id,
                      f->message);
    }
}

/* The report holds every expected id and no other. */
static void assert_ids_exactly(const char *what, const enr_lint_report *report,
                               const char *const *ids)
{
    bool ok = true;
    for (size_t k = 0; ids[k] != NULL; k++)
        if (!enr_lint_report_has(report, ids[k])) {
            print_message("%s: missing %s\n", what, ids[k]);
            ok = false;
        }
    for (size_t i = 0; i < enr_lint_report_count(report); i++) {
        const char *id = enr_lint_report_get(report, i)->id;
        bool expected = false;
        for (size_t k = 0; ids[k] != NULL; k++)
            expected = expected || strcmp(ids[k], id) == 0;
        if (!expected) {
            print_message("%s: unexpected %s\n", what, id);
            ok = false;
        }
    }
    if (!ok) {
        print_report(what, report);
        fail_msg("%s: findings differ from the expected set", what);
    }
}

static const enr_finding *find(const enr_lint_report *report, const char *id)
{
    for (size_t i = 0; i < enr_lint_report_count(report); i++)
        if (strcmp(enr_lint_report_get(report, i)->id, id) == 0)
            return enr_lint_report_get(report, i);
    fail_msg("no finding %s", id);
    return NULL;
}

static const enr_lint_rule *rule_for(const char *id)
{
    size_t n = 0;
    const enr_lint_rule *rules = enr_lint_rules(&n);
    for (size_t i = 0; i < n; i++)
        if (strcmp(rules[i].id, id) == 0)
            return &rules[i];
    return NULL;
}

/* Every finding's id is in the rule table, with the table's severity (a
 * host-name-like CN is the one documented exception: a warning). */
static void assert_findings_documented(const enr_lint_report *report)
{
    for (size_t i = 0; i < enr_lint_report_count(report); i++) {
        const enr_finding *f = enr_lint_report_get(report, i);
        const enr_lint_rule *rule = rule_for(f->id);
        if (rule == NULL)
            fail_msg("finding id %s is not in enr_lint_rules()", f->id);
        bool cn_dns = strcmp(f->id, "csr.name.dns_syntax") == 0 &&
                      f->severity == ENR_SEVERITY_WARNING && strstr(f->message, "(CN)") != NULL;
        if (!cn_dns)
            assert_int_equal(f->severity, rule->severity);
        assert_non_null(f->message);
        assert_true(strlen(f->message) > 10);
    }
}

/* The JSON parses, and says what the report says. */
static void assert_json_matches(const enr_lint_report *report)
{
    char *text = NULL;
    enr_error err;
    assert_int_equal(enr_lint_report_json(report, &text, &err), ENR_OK);
    json_error_t jerr;
    json_t *root = json_loads(text, 0, &jerr);
    if (root == NULL)
        fail_msg("report JSON does not parse: %s", jerr.text);
    json_t *findings = json_object_get(root, "findings");
    assert_true(json_is_array(findings));
    assert_int_equal(json_array_size(findings), enr_lint_report_count(report));
    for (size_t i = 0; i < json_array_size(findings); i++) {
        const enr_finding *f = enr_lint_report_get(report, i);
        json_t *item = json_array_get(findings, i);
        assert_string_equal(json_string_value(json_object_get(item, "id")), f->id);
        assert_string_equal(json_string_value(json_object_get(item, "severity")),
                            enr_severity_name(f->severity));
        assert_string_equal(json_string_value(json_object_get(item, "message")), f->message);
    }
    json_t *worst = json_object_get(root, "worst");
    if (enr_lint_report_worst(report) == 0)
        assert_true(json_is_null(worst));
    else
        assert_string_equal(json_string_value(worst),
                            enr_severity_name((enr_severity)enr_lint_report_worst(report)));
    assert_true(json_is_object(json_object_get(root, "counts")));
    json_decref(root);
    free(text);
}

/* What every lint result must satisfy, whatever the input. */
static void assert_report_sane(const enr_lint_report *report)
{
    assert_findings_documented(report);
    assert_json_matches(report);
}

/* A fresh, clean request made in process: EC P-256, SHA-256, one CN. */
/* Signs REQ with KEY and returns its DER (malloc'd); frees both. */
static unsigned char *signed_der(X509_REQ *req, EVP_PKEY *key, size_t *len)
{
    assert_true(X509_REQ_set_pubkey(req, key));
    assert_true(X509_REQ_sign(req, key, EVP_sha256()) > 0);
    unsigned char *der = NULL;
    int n = i2d_X509_REQ(req, &der);
    assert_true(n > 0);
    unsigned char *copy = malloc((size_t)n);
    assert_non_null(copy);
    memcpy(copy, der, (size_t)n);
    OPENSSL_free(der);
    X509_REQ_free(req);
    EVP_PKEY_free(key);
    *len = (size_t)n;
    return copy;
}

static unsigned char *make_clean_der(const char *cn, size_t *len)
{
    EVP_PKEY *key = EVP_EC_gen("P-256");
    X509_REQ *req = X509_REQ_new();
    assert_non_null(key);
    assert_non_null(req);
    assert_true(X509_REQ_set_version(req, X509_REQ_VERSION_1));
    assert_true(X509_NAME_add_entry_by_txt(X509_REQ_get_subject_name(req), "CN", MBSTRING_UTF8,
                                           (const unsigned char *)cn, -1, -1, 0));
    return signed_der(req, key, len);
}

static char *base64_of(const unsigned char *der, size_t len)
{
    char *b64 = malloc((len + 2) / 3 * 4 + 1);
    assert_non_null(b64);
    EVP_EncodeBlock((unsigned char *)b64, der, (int)len);
    return b64;
}

static char *pem_of(const char *label, const unsigned char *der, size_t len)
{
    char *b64 = base64_of(der, len);
    size_t n = strlen(b64) + 2 * strlen(label) + 64;
    char *pem = malloc(n);
    assert_non_null(pem);
    snprintf(pem, n, "-----BEGIN %s-----\n%s\n-----END %s-----\n", label, b64, label);
    free(b64);
    return pem;
}

/* ---- the rule table, severities, docs --------------------------------- */

static void test_rule_table(void **state)
{
    (void)state;
    size_t n = 0;
    const enr_lint_rule *rules = enr_lint_rules(&n);
    assert_non_null(rules);
    assert_true(n >= 25);
    for (size_t i = 0; i < n; i++) {
        assert_true(strncmp(rules[i].id, "csr.", 4) == 0);
        assert_non_null(strchr(rules[i].id + 4, '.'));
        assert_true(rules[i].severity >= ENR_SEVERITY_NOTICE &&
                    rules[i].severity <= ENR_SEVERITY_ERROR);
        assert_true(strlen(rules[i].summary) > 10);
        for (size_t k = 0; k < i; k++)
            if (strcmp(rules[i].id, rules[k].id) == 0)
                fail_msg("rule id %s appears twice", rules[i].id);
    }
    assert_int_equal(rule_for("csr.signature.weak_hash")->severity, ENR_SEVERITY_ERROR);
    assert_int_equal(rule_for("csr.subject.cn_missing")->severity, ENR_SEVERITY_WARNING);
    assert_int_equal(rule_for("csr.subject.email_in_dn")->severity, ENR_SEVERITY_NOTICE);
}

static void test_docs_list_every_rule(void **state)
{
    (void)state;
    size_t len, n = 0;
    unsigned char *doc = read_data("../../docs/lint.md", &len);
    const enr_lint_rule *rules = enr_lint_rules(&n);
    for (size_t i = 0; i < n; i++) {
        char cell[128];
        snprintf(cell, sizeof cell, "`%s`", rules[i].id);
        if (strstr((const char *)doc, cell) == NULL)
            fail_msg("docs/lint.md does not document %s", rules[i].id);
    }
    free(doc);
}

static void test_severity_names(void **state)
{
    (void)state;
    enr_error err;
    enr_severity sev = ENR_SEVERITY_NOTICE;
    assert_string_equal(enr_severity_name(ENR_SEVERITY_ERROR), "error");
    assert_string_equal(enr_severity_name(ENR_SEVERITY_WARNING), "warning");
    assert_string_equal(enr_severity_name(ENR_SEVERITY_NOTICE), "notice");
    assert_int_equal(enr_severity_parse("error", &sev, &err), ENR_OK);
    assert_int_equal(sev, ENR_SEVERITY_ERROR);
    assert_int_equal(enr_severity_parse("warning", &sev, &err), ENR_OK);
    assert_int_equal(sev, ENR_SEVERITY_WARNING);
    assert_int_equal(enr_severity_parse("notice", &sev, &err), ENR_OK);
    assert_int_equal(sev, ENR_SEVERITY_NOTICE);
    assert_true(ENR_SEVERITY_ERROR > ENR_SEVERITY_WARNING &&
                ENR_SEVERITY_WARNING > ENR_SEVERITY_NOTICE);
    assert_int_equal(enr_severity_parse("fatal", &sev, &err), ENR_E_USAGE);
    assert_non_null(strstr(err.message, "fatal"));
    assert_int_equal(enr_severity_parse("", &sev, &err), ENR_E_USAGE);
    assert_int_equal(enr_severity_parse(NULL, &sev, &err), ENR_E_USAGE);
}

static void test_bad_arguments(void **state)
{
    (void)state;
    enr_lint_report *report = NULL;
    enr_error err;
    assert_int_equal(enr_lint_csr(NULL, 5, NULL, &report, &err), ENR_E_USAGE);
    assert_null(report);
    assert_int_equal(enr_lint_csr((const unsigned char *)"x", 1, NULL, NULL, &err), ENR_E_USAGE);
    assert_int_equal(enr_lint_report_json(NULL, NULL, &err), ENR_E_USAGE);
    /* The accessors accept a missing report. */
    assert_int_equal(enr_lint_report_count(NULL), 0);
    assert_null(enr_lint_report_get(NULL, 0));
    assert_int_equal(enr_lint_report_worst(NULL), 0);
    assert_false(enr_lint_report_has(NULL, "csr.encoding.malformed"));
    enr_lint_report_free(NULL);
}

/* ---- the seed requests ------------------------------------------------ */

static void test_seed002_wikipedia(void **state)
{
    (void)state;
    enr_lint_report *report = lint_data("seed002-wikipedia.csr", NULL);
    static const char *const ids[] = {"csr.signature.weak_hash", "csr.subject.country_invalid",
                                      "csr.name.wildcard", "csr.subject.email_in_dn", NULL};
    assert_ids_exactly("seed002", report, ids);
    assert_int_equal(enr_lint_report_count(report), 4);
    /* openssl says the MD5 signature verifies, and the CN is there. */
    assert_false(enr_lint_report_has(report, "csr.signature.invalid"));
    assert_false(enr_lint_report_has(report, "csr.subject.cn_missing"));
    assert_false(enr_lint_report_has(report, "csr.encoding.not_der"));
    assert_non_null(strstr(find(report, "csr.signature.weak_hash")->message, "md5"));
    assert_non_null(strstr(find(report, "csr.subject.country_invalid")->message, "'EN'"));
    assert_non_null(strstr(find(report, "csr.name.wildcard")->message, "*.wikipedia.org"));
    assert_non_null(strstr(find(report, "csr.subject.email_in_dn")->message, "emailAddress"));
    assert_int_equal(enr_lint_report_worst(report), ENR_SEVERITY_ERROR);
    /* Stable order: the order the checks run. */
    assert_string_equal(enr_lint_report_get(report, 0)->id, "csr.signature.weak_hash");
    assert_string_equal(enr_lint_report_get(report, 1)->id, "csr.subject.country_invalid");
    assert_string_equal(enr_lint_report_get(report, 2)->id, "csr.name.wildcard");
    assert_string_equal(enr_lint_report_get(report, 3)->id, "csr.subject.email_in_dn");
    assert_report_sane(report);

    char *text = NULL;
    enr_error err;
    assert_int_equal(enr_lint_report_json(report, &text, &err), ENR_OK);
    json_t *root = json_loads(text, 0, NULL);
    assert_non_null(root);
    assert_string_equal(json_string_value(json_object_get(root, "worst")), "error");
    json_t *counts = json_object_get(root, "counts");
    assert_int_equal(json_integer_value(json_object_get(counts, "error")), 2);
    assert_int_equal(json_integer_value(json_object_get(counts, "warning")), 1);
    assert_int_equal(json_integer_value(json_object_get(counts, "notice")), 1);
    json_decref(root);
    free(text);
    enr_lint_report_free(report);
}

static void test_seed000_invalid(void **state)
{
    (void)state;
    enr_lint_report *report = lint_data("seed000-invalid.csr", NULL);
    assert_int_equal(enr_lint_report_count(report), 1);
    const enr_finding *f = enr_lint_report_get(report, 0);
    assert_string_equal(f->id, "csr.encoding.malformed");
    assert_int_equal(f->severity, ENR_SEVERITY_ERROR);
    assert_non_null(strstr(f->message, "byte 0"));
    assert_report_sane(report);
    enr_lint_report_free(report);
}

/* ---- clean requests --------------------------------------------------- */

static void test_clean_requests(void **state)
{
    (void)state;
    static const char *const none[] = {NULL};
    static const char *const files[] = {"lint/clean-ec-p256.csr", "lint/clean-ed25519.csr",
                                        "lint/clean-rsa-pss.csr"};
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
        enr_lint_report *report = lint_data(files[i], NULL);
        assert_ids_exactly(files[i], report, none);
        assert_int_equal(enr_lint_report_worst(report), 0);
        assert_report_sane(report);
        enr_lint_report_free(report);
    }
}

/* The same clean request as DER, PEM (both labels) and headerless base64. */
static void test_clean_in_every_encoding(void **state)
{
    (void)state;
    size_t len;
    unsigned char *der = make_clean_der("dev-001", &len);
    char *pem = pem_of("CERTIFICATE REQUEST", der, len);
    char *pem_new = pem_of("NEW CERTIFICATE REQUEST", der, len);
    char *b64 = base64_of(der, len);
    struct {
        const char *what;
        const unsigned char *in;
        size_t len;
    } forms[] = {
        {"der", der, len},
        {"pem", (unsigned char *)pem, strlen(pem)},
        {"pem-new", (unsigned char *)pem_new, strlen(pem_new)},
        {"base64", (unsigned char *)b64, strlen(b64)},
    };
    for (size_t i = 0; i < sizeof forms / sizeof forms[0]; i++) {
        enr_lint_report *report = lint_bytes(forms[i].in, forms[i].len, "dev-001");
        if (enr_lint_report_count(report) != 0) {
            print_report(forms[i].what, report);
            fail_msg("%s: a clean request has findings", forms[i].what);
        }
        assert_report_sane(report);
        enr_lint_report_free(report);
    }
    free(b64);
    free(pem_new);
    free(pem);
    free(der);
}

/* ---- one fault per fixture -------------------------------------------- */

typedef struct fixture_case {
    const char *file;
    const char *ids[MAX_IDS];
    const char *message_part; /* some words the first finding must contain */
} fixture_case;

static const fixture_case FIXTURES[] = {
    {"lint/rsa-1024.csr", {"csr.key.rsa_too_small"}, "1024 bits"},
    {"lint/rsa-exponent-3.csr", {"csr.key.rsa_exponent"}, "exponent is 3"},
    {"lint/ec-secp256k1.csr", {"csr.key.ec_curve"}, "secp256k1"},
    {"lint/ec-p521.csr", {"csr.key.ec_curve"}, "P-521"},
    {"lint/ed448.csr", {"csr.key.unsupported_algorithm"}, "Ed448"},
    {"lint/sha1.csr", {"csr.signature.weak_hash"}, "ecdsa-with-SHA1"},
    {"lint/signature-bad.csr", {"csr.signature.invalid"}, "does not verify"},
    {"lint/version-1.csr", {"csr.version.invalid"}, "version field is 1"},
    {"lint/empty-subject.csr", {"csr.subject.empty"}, "subject is empty"},
    {"lint/no-cn.csr", {"csr.subject.cn_missing"}, "no CN"},
    {"lint/cn-multiple.csr", {"csr.subject.cn_multiple"}, "2 CNs"},
    {"lint/cn-65-chars.csr", {"csr.subject.value_too_long"}, "65 characters"},
    {"lint/cn-empty-value.csr", {"csr.subject.value_empty"}, "field 1 (CN)"},
    {"lint/cn-bmpstring.csr", {"csr.subject.string_type"}, "BMPString"},
    {"lint/cn-hostname-bad.csr", {"csr.name.dns_syntax"}, "'_'"},
    {"lint/country-usa.csr", {"csr.subject.country_invalid"}, "US"},
    {"lint/country-lowercase.csr", {"csr.subject.country_invalid"}, "GB"},
    {"lint/country-utf8.csr", {"csr.subject.string_type"}, "PrintableString"},
    {"lint/printable-with-at.csr", {"csr.subject.string_invalid"}, "'@'"},
    {"lint/ia5-high-byte.csr",
     {"csr.subject.string_invalid", "csr.subject.email_in_dn"},
     "0xe9"},
    {"lint/utf8-invalid.csr", {"csr.encoding.malformed"}, "invalid utf8string"},
    {"lint/attr-duplicate-ext-req.csr", {"csr.attributes.duplicate"}, "extensionRequest"},
    {"lint/attr-duplicate-challenge.csr", {"csr.attributes.duplicate"}, "challengePassword"},
    {"lint/attr-challenge-two-values.csr", {"csr.attributes.value_count"}, "2 values"},
    {"lint/attr-unknown.csr", {"csr.attributes.unknown"}, "1.3.6.1.4.1.55555.2"},
    {"lint/ext-duplicate-oid.csr", {"csr.attributes.duplicate"}, "subjectAltName"},
    {"lint/ext-req-malformed.csr", {"csr.extensions.malformed"}, "INTEGER"},
    {"lint/ext-not-der.csr", {"csr.encoding.not_der"}, "extensionRequest"},
    {"lint/ext-unknown-critical.csr", {"csr.extensions.unknown_critical"}, "1.3.6.1.4.1.55555.1"},
    {"lint/san-wildcard.csr", {"csr.name.wildcard"}, "'*.example.com'"},
    {"lint/san-bad-dns.csr", {"csr.name.dns_syntax"}, "entry 2"},
    {"lint/san-empty.csr", {"csr.extensions.san_empty"}, "no names"},
    {"lint/san-ip-length.csr", {"csr.extensions.san_ip_length"}, "5 bytes"},
    {"lint/san-malformed.csr", {"csr.extensions.malformed"}, "subjectAltName"},
    {"lint/trailing-garbage.csr", {"csr.encoding.trailing_data"}, "27 byte(s)"},
    {"lint/pem-label-wrong.csr", {"csr.encoding.pem_label"}, "'CERTIFICATE'"},
    {"lint/length-not-minimal.der", {"csr.encoding.not_der"}, "byte 1"},
};

static void test_fixtures(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof FIXTURES / sizeof FIXTURES[0]; i++) {
        const fixture_case *c = &FIXTURES[i];
        enr_lint_report *report = lint_data(c->file, NULL);
        assert_ids_exactly(c->file, report, c->ids);
        const char *message = enr_lint_report_get(report, 0)->message;
        if (strstr(message, c->message_part) == NULL)
            fail_msg("%s: message '%s' does not say '%s'", c->file, message, c->message_part);
        assert_report_sane(report);
        enr_lint_report_free(report);
    }
}

/* The service's path (a request enr_csr_parse read, linted in place) finds
 * exactly what linting the raw bytes finds, for every request it can parse;
 * and the verdict on the signature is the one enr_csr_verify keeps. */
static void assert_parsed_path_agrees(const char *what, const unsigned char *in, size_t len)
{
    enr_csr *csr = NULL;
    enr_error err;
    if (enr_csr_parse(in, len, &csr, &err) != ENR_OK)
        return;
    enr_lint_report *raw = lint_bytes(in, len, "dev-001");
    enr_lint_options opts = {"dev-001"};
    enr_lint_report *parsed = NULL;
    assert_int_equal(enr_lint_csr_parsed(csr, &opts, &parsed, &err), ENR_OK);
    bool same = enr_lint_report_count(raw) == enr_lint_report_count(parsed);
    for (size_t i = 0; same && i < enr_lint_report_count(raw); i++) {
        /* OpenSSL's own reason text may differ: the verdict may be one kept from before. */
        const char *a = enr_lint_report_get(raw, i)->message, *b = enr_lint_report_get(parsed, i)->message;
        const char *a_end = strstr(a, " (openssl:"), *b_end = strstr(b, " (openssl:");
        size_t a_len = a_end ? (size_t)(a_end - a) : strlen(a), b_len = b_end ? (size_t)(b_end - b) : strlen(b);
        same = strcmp(enr_lint_report_get(raw, i)->id, enr_lint_report_get(parsed, i)->id) == 0 &&
               a_len == b_len && memcmp(a, b, a_len) == 0;
    }
    if (!same) {
        print_report("raw", raw);
        print_report("parsed", parsed);
        fail_msg("%s: the parsed-request lint differs from the raw one", what);
    }
    bool invalid = enr_lint_report_has(parsed, "csr.signature.invalid");
    bool verifies = enr_csr_verify(csr, &err) == ENR_OK;
    if (invalid == verifies && enr_lint_report_has(parsed, "csr.signature.unknown_algorithm") == 0)
        fail_msg("%s: lint says signature %s, enr_csr_verify says %s", what, invalid ? "invalid" : "fine",
                 verifies ? "fine" : "invalid");
    enr_lint_report_free(raw);
    enr_lint_report_free(parsed);
    enr_csr_free(csr);
}

static void test_parsed_path_agrees(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof FIXTURES / sizeof FIXTURES[0]; i++) {
        size_t len;
        unsigned char *in = read_data(FIXTURES[i].file, &len);
        assert_parsed_path_agrees(FIXTURES[i].file, in, len);
        free(in);
    }
    size_t len;
    unsigned char *der = make_clean_der("dev-001", &len);
    unsigned char *flipped = malloc(len);
    assert_non_null(flipped);
    for (size_t at = 0; at < len; at++) {
        memcpy(flipped, der, len);
        flipped[at] ^= 0x01;
        char what[64];
        snprintf(what, sizeof what, "DER with byte %zu ^ 0x01", at);
        assert_parsed_path_agrees(what, flipped, len);
    }
    free(flipped);
    free(der);
    enr_lint_report *report = NULL;
    enr_error err;
    assert_int_equal(enr_lint_csr_parsed(NULL, NULL, &report, &err), ENR_E_USAGE);
}

static void test_dns_syntax_severity(void **state)
{
    (void)state;
    enr_lint_report *san = lint_data("lint/san-bad-dns.csr", NULL);
    assert_int_equal(find(san, "csr.name.dns_syntax")->severity, ENR_SEVERITY_ERROR);
    /* Only the bad name, not the good one before it. */
    assert_int_equal(enr_lint_report_count(san), 1);
    assert_non_null(strstr(find(san, "csr.name.dns_syntax")->message, "'exa mple..com'"));
    enr_lint_report_free(san);
    enr_lint_report *cn = lint_data("lint/cn-hostname-bad.csr", NULL);
    assert_int_equal(find(cn, "csr.name.dns_syntax")->severity, ENR_SEVERITY_WARNING);
    assert_int_equal(enr_lint_report_worst(cn), ENR_SEVERITY_WARNING);
    enr_lint_report_free(cn);
}

/* ---- --expect-cn ------------------------------------------------------ */

static void test_expect_cn(void **state)
{
    (void)state;
    enr_lint_report *match = lint_data("lint/clean-ec-p256.csr", "dev-001");
    assert_int_equal(enr_lint_report_count(match), 0);
    enr_lint_report_free(match);

    enr_lint_report *other = lint_data("lint/clean-ec-p256.csr", "dev-002");
    static const char *const mismatch[] = {"csr.subject.cn_mismatch", NULL};
    assert_ids_exactly("expect dev-002", other, mismatch);
    const char *message = find(other, "csr.subject.cn_mismatch")->message;
    assert_non_null(strstr(message, "'dev-001'"));
    assert_non_null(strstr(message, "'dev-002'"));
    assert_int_equal(enr_lint_report_worst(other), ENR_SEVERITY_ERROR);
    enr_lint_report_free(other);

    /* Exactly: a prefix or a different case is not the registration id. */
    enr_lint_report *prefix = lint_data("lint/clean-ec-p256.csr", "dev-00");
    assert_true(enr_lint_report_has(prefix, "csr.subject.cn_mismatch"));
    enr_lint_report_free(prefix);
    enr_lint_report *upper = lint_data("lint/clean-ec-p256.csr", "DEV-001");
    assert_true(enr_lint_report_has(upper, "csr.subject.cn_mismatch"));
    enr_lint_report_free(upper);

    enr_lint_report *no_cn = lint_data("lint/no-cn.csr", "dev-001");
    static const char *const missing[] = {"csr.subject.cn_missing", "csr.subject.cn_mismatch",
                                          NULL};
    assert_ids_exactly("no CN, expect dev-001", no_cn, missing);
    enr_lint_report_free(no_cn);

    /* Without the option there is no such check. */
    enr_lint_report *plain = lint_data("lint/no-cn.csr", NULL);
    assert_false(enr_lint_report_has(plain, "csr.subject.cn_mismatch"));
    enr_lint_report_free(plain);
}

/* ---- encodings built in the test -------------------------------------- */

static void test_trailing_data_inside_der(void **state)
{
    (void)state;
    size_t len;
    unsigned char *der = make_clean_der("dev-001", &len);
    unsigned char *longer = malloc(len + 5);
    assert_non_null(longer);
    memcpy(longer, der, len);
    memcpy(longer + len, "\x01\x02\x03\x04\x05", 5);

    static const char *const trailing[] = {"csr.encoding.trailing_data", NULL};
    enr_lint_report *report = lint_bytes(longer, len + 5, NULL);
    assert_ids_exactly("der + 5", report, trailing);
    char where[64];
    snprintf(where, sizeof where, "from byte %zu of the input", len);
    assert_non_null(strstr(find(report, "csr.encoding.trailing_data")->message, "5 byte(s)"));
    assert_non_null(strstr(find(report, "csr.encoding.trailing_data")->message, where));
    assert_int_equal(enr_lint_report_worst(report), ENR_SEVERITY_WARNING);
    enr_lint_report_free(report);

    char *b64 = base64_of(longer, len + 5);
    report = lint_bytes((unsigned char *)b64, strlen(b64), NULL);
    assert_ids_exactly("base64(der + 5)", report, trailing);
    assert_non_null(strstr(find(report, "csr.encoding.trailing_data")->message, "inside"));
    enr_lint_report_free(report);
    free(b64);
    free(longer);
    free(der);
}

static void test_non_minimal_length(void **state)
{
    (void)state;
    size_t len;
    unsigned char *der = make_clean_der("dev-001", &len);
    /* The outer header is not covered by the signature: 30 81 LL -> 30 82 00 LL. */
    assert_int_equal(der[1], 0x81);
    unsigned char *ber = malloc(len + 1);
    assert_non_null(ber);
    ber[0] = 0x30;
    ber[1] = 0x82;
    ber[2] = 0x00;
    memcpy(ber + 3, der + 2, len - 2);
    enr_lint_report *report = lint_bytes(ber, len + 1, NULL);
    static const char *const not_der[] = {"csr.encoding.not_der", NULL};
    assert_ids_exactly("non-minimal length", report, not_der);
    assert_non_null(strstr(find(report, "csr.encoding.not_der")->message, "byte 1"));
    enr_lint_report_free(report);
    free(ber);
    free(der);
}

/* A request (unsigned) whose subject holds C=US and the two-valued RDN
 * CN=ab + O=cd, in the order `rdn_first` says; NULL cn: an empty subject. */
static X509_REQ *rdn_request(bool rdn_first, const char *cn)
{
    X509_REQ *req = X509_REQ_new();
    assert_non_null(req);
    X509_NAME *name = X509_REQ_get_subject_name(req);
    if (cn != NULL && !rdn_first)
        assert_true(X509_NAME_add_entry_by_txt(name, "C", MBSTRING_UTF8, (const unsigned char *)"US", -1, -1, 0));
    if (cn != NULL) {
        assert_true(X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_UTF8, (const unsigned char *)cn, -1, -1, 0));
        assert_true(X509_NAME_add_entry_by_txt(name, "O", MBSTRING_UTF8, (const unsigned char *)"cd", -1, -1, -1));
    }
    if (cn != NULL && rdn_first)
        assert_true(X509_NAME_add_entry_by_txt(name, "C", MBSTRING_UTF8, (const unsigned char *)"US", -1, -1, 0));
    return req;
}

static unsigned char *make_rdn_der(bool rdn_first, const char *cn, size_t *len)
{
    EVP_PKEY *key = EVP_EC_gen("P-256");
    assert_non_null(key);
    return signed_der(rdn_request(rdn_first, cn), key, len);
}

static unsigned char *find_bytes(unsigned char *hay, size_t len, const unsigned char *needle, size_t n)
{
    for (size_t i = 0; i + n <= len; i++)
        if (memcmp(hay + i, needle, n) == 0)
            return hay + i;
    return NULL;
}

/* Swaps the two members of make_rdn_der's multi-valued RDN (cn "ab"):
 * SEQUENCE { OID 2.5.4.3, UTF8String "ab" } sorts before the O member (same
 * length), so swapped the SET is not in DER order. Returns the offset of the
 * first swapped member. */
static size_t swap_rdn_members(unsigned char *der, size_t len)
{
    static const unsigned char cn_member[] = {0x30, 0x09, 0x06, 0x03, 0x55, 0x04, 0x03, 0x0c, 0x02, 'a', 'b'};
    static const unsigned char o_member[] = {0x30, 0x09, 0x06, 0x03, 0x55, 0x04, 0x0a, 0x0c, 0x02, 'c', 'd'};
    unsigned char *cn_at = find_bytes(der, len, cn_member, sizeof cn_member);
    assert_non_null(cn_at);
    assert_memory_equal(cn_at + sizeof cn_member, o_member, sizeof o_member);
    memcpy(cn_at, o_member, sizeof o_member);
    memcpy(cn_at + sizeof o_member, cn_member, sizeof cn_member);
    return (size_t)(cn_at - der);
}

/* make_rdn_der's request with its RDN's members swapped and signed again
 * over the bytes as sent: a valid proof of possession in BER. */
static unsigned char *make_unsorted_rdn_der(size_t *len)
{
    EVP_PKEY *key = EVP_EC_gen("P-256");
    assert_non_null(key);
    assert_true(EVP_PKEY_up_ref(key));
    unsigned char *der = signed_der(rdn_request(true, "ab"), key, len);
    const unsigned char *p = der;
    X509_REQ *req = d2i_X509_REQ(NULL, &p, (long)*len);
    assert_non_null(req);
    const ASN1_BIT_STRING *old_sig = NULL;
    X509_REQ_get0_signature(req, &old_sig, NULL);
    size_t sig_len = (size_t)ASN1_STRING_length(old_sig);
    X509_REQ_free(req);
    swap_rdn_members(der, *len);
    /* The signed part is the outer SEQUENCE's first element. */
    long outer_len, tbs_len;
    int tag, cls;
    p = der;
    assert_int_equal(ASN1_get_object(&p, &outer_len, &tag, &cls, (long)*len), V_ASN1_CONSTRUCTED);
    const unsigned char *tbs = p;
    assert_int_equal(ASN1_get_object(&p, &tbs_len, &tag, &cls, outer_len), V_ASN1_CONSTRUCTED);
    size_t tbs_total = (size_t)(p - tbs) + (size_t)tbs_len;
    /* An ECDSA signature's DER length varies: sign until it fits the BIT STRING. */
    unsigned char sig[80];
    size_t n = 0;
    for (int tries = 0; tries < 200 && n != sig_len; tries++) {
        EVP_MD_CTX *md = EVP_MD_CTX_new();
        n = sizeof sig;
        assert_true(md != NULL && EVP_DigestSignInit(md, NULL, EVP_sha256(), NULL, key) == 1 &&
                    EVP_DigestSign(md, sig, &n, tbs, tbs_total) == 1);
        EVP_MD_CTX_free(md);
    }
    assert_int_equal(n, sig_len);
    memcpy(der + *len - sig_len, sig, sig_len);
    EVP_PKEY_free(key);
    return der;
}

/* The subject is encoded afresh for the DER check: a multi-valued RDN in
 * DER order passes wherever it stands, and one whose SET members are out of
 * order (BER, not DER: the signature covers the bytes as sent) is found. */
static void test_subject_set_order(void **state)
{
    (void)state;
    for (int first = 0; first < 2; first++) {
        size_t len;
        unsigned char *der = make_rdn_der(first, "ab", &len);
        enr_lint_report *report = lint_bytes(der, len, NULL);
        assert_false(enr_lint_report_has(report, "csr.encoding.not_der"));
        assert_false(enr_lint_report_has(report, "csr.signature.invalid"));
        enr_lint_report_free(report);

        size_t cn_at = swap_rdn_members(der, len);
        report = lint_bytes(der, len, NULL);
        assert_true(enr_lint_report_has(report, "csr.encoding.not_der"));
        char where[64];
        snprintf(where, sizeof where, "byte %zu", cn_at + 6); /* 03 (CN) against 0a (O) */
        assert_non_null(strstr(find(report, "csr.encoding.not_der")->message, where));
        enr_lint_report_free(report);
        free(der);
    }
    size_t len;
    unsigned char *der = make_rdn_der(false, NULL, &len);
    enr_lint_report *report = lint_bytes(der, len, NULL);
    assert_false(enr_lint_report_has(report, "csr.encoding.not_der"));
    enr_lint_report_free(report);
    free(der);
}

/* A parsed request is re-encoded in place for the DER check, after its
 * signature's verdict is kept: a BER request validly signed over the bytes
 * as sent is found not DER but keeps its proof of possession, as raw linting
 * says; a DER request still encodes to the bytes it came from. */
static void test_parsed_request_reencoded_in_place(void **state)
{
    (void)state;
    size_t len;
    unsigned char *ber = make_unsorted_rdn_der(&len);
    enr_lint_report *raw = lint_bytes(ber, len, NULL);
    assert_true(enr_lint_report_has(raw, "csr.encoding.not_der"));
    assert_false(enr_lint_report_has(raw, "csr.signature.invalid"));
    enr_lint_report_free(raw);

    enr_csr *csr = NULL;
    enr_error err;
    assert_int_equal(enr_csr_parse(ber, len, &csr, &err), ENR_OK);
    enr_lint_report *parsed = NULL;
    assert_int_equal(enr_lint_csr_parsed(csr, NULL, &parsed, &err), ENR_OK);
    assert_true(enr_lint_report_has(parsed, "csr.encoding.not_der"));
    assert_false(enr_lint_report_has(parsed, "csr.signature.invalid"));
    assert_int_equal(enr_csr_verify(csr, &err), ENR_OK);
    enr_lint_report_free(parsed);
    enr_csr_free(csr);
    free(ber);

    unsigned char *der = make_rdn_der(true, "ab", &len);
    assert_int_equal(enr_csr_parse(der, len, &csr, &err), ENR_OK);
    assert_int_equal(enr_lint_csr_parsed(csr, NULL, &parsed, &err), ENR_OK);
    assert_int_equal(enr_lint_report_count(parsed), 0);
    unsigned char *again = NULL;
    int n = i2d_X509_REQ(enr_csr_x509_req(csr), &again);
    assert_int_equal(n, (int)len);
    assert_memory_equal(again, der, len);
    assert_int_equal(enr_csr_verify(csr, &err), ENR_OK);
    OPENSSL_free(again);
    enr_lint_report_free(parsed);
    enr_csr_free(csr);
    free(der);
}

/* A request with 1500 unknown attributes: linting stays fast, and the report
 * is capped while its counts stay true. (OpenSSL refuses to add duplicate
 * attributes, so they differ in their last arc.) */
static void test_many_attributes(void **state)
{
    (void)state;
    EVP_PKEY *key = EVP_EC_gen("P-256");
    X509_REQ *req = X509_REQ_new();
    assert_true(X509_NAME_add_entry_by_txt(X509_REQ_get_subject_name(req), "CN", MBSTRING_UTF8,
                                           (const unsigned char *)"dev-001", -1, -1, 0));
    for (int i = 0; i < 1500; i++) {
        char oid[64];
        snprintf(oid, sizeof oid, "1.3.6.1.4.1.55555.3.%d", 1000 + i);
        assert_true(X509_REQ_add1_attr_by_txt(req, oid, MBSTRING_UTF8,
                                              (const unsigned char *)"x", 1));
    }
    assert_true(X509_REQ_set_pubkey(req, key));
    assert_true(X509_REQ_sign(req, key, EVP_sha256()) > 0);
    unsigned char *der = NULL;
    int n = i2d_X509_REQ(req, &der);
    assert_true(n > 0);
    enr_lint_report *report = lint_bytes(der, (size_t)n, NULL);
    static const char *const unknown[] = {"csr.attributes.unknown", NULL};
    assert_ids_exactly("1500 attributes", report, unknown);
    assert_int_equal(enr_lint_report_count(report), 1000);
    assert_int_equal(enr_lint_report_worst(report), ENR_SEVERITY_NOTICE);
    char *text = NULL;
    enr_error err;
    assert_int_equal(enr_lint_report_json(report, &text, &err), ENR_OK);
    json_t *root = json_loads(text, 0, NULL);
    assert_non_null(root);
    json_t *counts = json_object_get(root, "counts");
    assert_int_equal(json_integer_value(json_object_get(counts, "notice")), 1500);
    assert_int_equal(json_integer_value(json_object_get(counts, "error")), 0);
    assert_int_equal(json_integer_value(json_object_get(root, "suppressed")), 500);
    json_decref(root);
    free(text);
    enr_lint_report_free(report);
    OPENSSL_free(der);
    X509_REQ_free(req);
    EVP_PKEY_free(key);
}

/* ---- bad input: an error finding, never a crash ----------------------- */

static void assert_error_report(const char *what, const unsigned char *in, size_t len)
{
    enr_lint_report *report = lint_bytes(in, len, "dev-001");
    if (enr_lint_report_worst(report) != ENR_SEVERITY_ERROR) {
        print_report(what, report);
        fail_msg("%s: no error finding", what);
    }
    assert_report_sane(report);
    enr_lint_report_free(report);
}

/* Input that never gets as far as a request: only the encoding finding. */
static void assert_only_malformed(const char *what, const unsigned char *in, size_t len)
{
    enr_lint_report *report = lint_bytes(in, len, "dev-001");
    static const char *const malformed[] = {"csr.encoding.malformed", NULL};
    assert_ids_exactly(what, report, malformed);
    assert_int_equal(enr_lint_report_count(report), 1);
    if (strstr(enr_lint_report_get(report, 0)->message, "byte") == NULL)
        fail_msg("%s: no byte offset in '%s'", what, enr_lint_report_get(report, 0)->message);
    assert_report_sane(report);
    enr_lint_report_free(report);
}

static void test_bad_input_table(void **state)
{
    (void)state;
    static const unsigned char huge_length[] = {0x30, 0x84, 0x7f, 0xff, 0xff, 0xff, 0x02, 0x01};
    static const unsigned char not_a_request[] = {0x30, 0x03, 0x02, 0x01, 0x01};
    static const unsigned char indefinite[] = {0x30, 0x80, 0x02, 0x01, 0x00, 0x00, 0x00};
    static const unsigned char nuls[16] = {0};
    struct {
        const char *what;
        const char *text;
    } texts[] = {
        {"empty", ""},
        {"whitespace only", " \n\t\r\n  "},
        {"base64 garbage", "!!!this is not base64 $$$"},
        {"base64 of junk", "QUJDREVGR0g="},
        {"base64 bad padding", "MIIB=Vtw"},
        {"BEGIN without END", "-----BEGIN CERTIFICATE REQUEST-----\nMIIBVTCBvwIBADBT\n"},
        {"END label differs",
         "-----BEGIN CERTIFICATE REQUEST-----\nMAMCAQE=\n-----END CERTIFICATE-----\n"},
        {"PEM with headers",
         "-----BEGIN CERTIFICATE REQUEST-----\nProc-Type: 4,ENCRYPTED\n\nMAMCAQE=\n"
         "-----END CERTIFICATE REQUEST-----\n"},
        {"PEM empty body",
         "-----BEGIN CERTIFICATE REQUEST-----\n-----END CERTIFICATE REQUEST-----\n"},
        {"PEM of a non-request", "-----BEGIN CERTIFICATE REQUEST-----\nMAMCAQE=\n-----END "
                                 "CERTIFICATE REQUEST-----\n"},
        {"bare BEGIN", "-----BEGIN "},
    };
    for (size_t i = 0; i < sizeof texts / sizeof texts[0]; i++)
        assert_only_malformed(texts[i].what, (const unsigned char *)texts[i].text,
                              strlen(texts[i].text));
    assert_only_malformed("huge length", huge_length, sizeof huge_length);
    assert_only_malformed("DER not a request", not_a_request, sizeof not_a_request);
    assert_only_malformed("indefinite length", indefinite, sizeof indefinite);
    assert_only_malformed("NUL bytes", nuls, sizeof nuls);

    size_t len;
    unsigned char *der = make_clean_der("dev-001", &len);
    char *pem = pem_of("CERTIFICATE REQUEST", der, len);
    for (size_t cut = 1; cut < strlen(pem); cut += 17) {
        char what[64];
        snprintf(what, sizeof what, "PEM cut at %zu", cut);
        assert_error_report(what, (unsigned char *)pem, cut);
    }
    for (size_t cut = 1; cut < len; cut += 7) {
        char what[64];
        snprintf(what, sizeof what, "DER cut at %zu", cut);
        assert_only_malformed(what, der, cut);
    }
    char *crl = pem_of("X509 CRL", der, len);
    enr_lint_report *report = lint_bytes((unsigned char *)crl, strlen(crl), NULL);
    static const char *const label[] = {"csr.encoding.pem_label", NULL};
    assert_ids_exactly("wrong PEM label", report, label);
    assert_non_null(strstr(find(report, "csr.encoding.pem_label")->message, "'X509 CRL'"));
    enr_lint_report_free(report);
    free(crl);
    free(pem);
    free(der);
}

/* Every single-bit change to a signed request must be caught somewhere:
 * in the encoding, the structure, the key or the signature. */
static void test_bit_flips(void **state)
{
    (void)state;
    size_t len;
    unsigned char *der = make_clean_der("dev-001", &len);
    unsigned char *flipped = malloc(len);
    assert_non_null(flipped);
    static const unsigned char masks[] = {0x01, 0x80, 0x10};
    for (size_t m = 0; m < sizeof masks; m++) {
        for (size_t at = 0; at < len; at++) {
            memcpy(flipped, der, len);
            flipped[at] ^= masks[m];
            char what[64];
            snprintf(what, sizeof what, "DER with byte %zu ^ 0x%02x", at, masks[m]);
            assert_error_report(what, flipped, len);
        }
    }
    free(flipped);
    free(der);
}

/* Deterministic, so a failure can be reproduced. */
static uint32_t next_random(uint32_t *state)
{
    uint32_t x = *state;
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    return *state = x;
}

static void test_large_inputs(void **state)
{
    (void)state;
    const size_t mib = (size_t)1 << 20;
    unsigned char *buf = malloc(mib);
    assert_non_null(buf);
    uint32_t seed = 0x2545F491u;
    for (size_t i = 0; i < mib; i++)
        buf[i] = (unsigned char)next_random(&seed);
    assert_only_malformed("1 MiB random", buf, mib);
    buf[0] = 0x30; /* looks like DER from the first byte on */
    assert_only_malformed("1 MiB random after 0x30", buf, mib);
    memset(buf, 'A', mib);
    assert_only_malformed("1 MiB of 'A'", buf, mib);
    memset(buf, 'A', mib - 1); /* not a multiple of 4 */
    assert_only_malformed("1 MiB - 1 of 'A'", buf, mib - 1);
    free(buf);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rule_table),
        cmocka_unit_test(test_docs_list_every_rule),
        cmocka_unit_test(test_severity_names),
        cmocka_unit_test(test_bad_arguments),
        cmocka_unit_test(test_seed002_wikipedia),
        cmocka_unit_test(test_seed000_invalid),
        cmocka_unit_test(test_clean_requests),
        cmocka_unit_test(test_clean_in_every_encoding),
        cmocka_unit_test(test_fixtures),
        cmocka_unit_test(test_parsed_path_agrees),
        cmocka_unit_test(test_dns_syntax_severity),
        cmocka_unit_test(test_expect_cn),
        cmocka_unit_test(test_trailing_data_inside_der),
        cmocka_unit_test(test_non_minimal_length),
        cmocka_unit_test(test_subject_set_order),
        cmocka_unit_test(test_parsed_request_reencoded_in_place),
        cmocka_unit_test(test_many_attributes),
        cmocka_unit_test(test_bad_input_table),
        cmocka_unit_test(test_bit_flips),
        cmocka_unit_test(test_large_inputs),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
