/* DPS wire shapes: the errorCode table (and docs/errors.md), api-version,
 * paths, the register request reader (with a table of bad bodies), the
 * writers' exact member names and types, and writer -> reader round trips. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <jansson.h>
#include <openssl/evp.h>
#include <openssl/x509.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dps/dps_internal.h"
#include "enroll/dps.h"
#include "enroll/input.h"

#define T_2026_11_23_08_00 ((time_t)1795420800) /* 2026-11-23T08:00:00Z */

/* ---- helpers ---------------------------------------------------------- */

static char *read_text(const char *rel)
{
    const char *dir = getenv("ENROLL_TEST_DATA");
    assert_non_null(dir);
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", dir, rel);
    FILE *f = fopen(path, "rb");
    if (f == NULL)
        fail_msg("cannot open %s", path);
    char *buf = malloc(1 << 20);
    assert_non_null(buf);
    size_t n = fread(buf, 1, (1 << 20) - 1, f);
    fclose(f);
    buf[n] = '\0';
    return buf;
}

static bool printable(const char *s)
{
    for (; *s != '\0'; s++)
        if ((unsigned char)*s < 0x20 || (unsigned char)*s > 0x7e)
            return false;
    return true;
}

static json_t *load(const char *text)
{
    json_error_t jerr;
    json_t *doc = json_loads(text, JSON_REJECT_DUPLICATES, &jerr);
    if (doc == NULL)
        fail_msg("writer output is not JSON (%s): %s", jerr.text, text);
    return doc;
}

static const char *str_at(json_t *obj, const char *key)
{
    json_t *v = json_object_get(obj, key);
    if (!json_is_string(v))
        fail_msg("%s is not a string", key);
    return json_string_value(v);
}

static EVP_PKEY *new_key(void)
{
    EVP_PKEY *key = EVP_EC_gen("P-256");
    assert_non_null(key);
    return key;
}

static X509_NAME *cn_name(const char *cn)
{
    X509_NAME *name = X509_NAME_new();
    assert_non_null(name);
    assert_int_equal(X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC,
                                                (const unsigned char *)cn, -1, -1, 0),
                     1);
    return name;
}

/* A self-signed certificate: the writer only needs well-formed DER. */
static unsigned char *cert_der(const char *cn, size_t *len)
{
    EVP_PKEY *key = new_key();
    X509 *x = X509_new();
    assert_non_null(x);
    X509_NAME *name = cn_name(cn);
    assert_int_equal(X509_set_version(x, 2), 1);
    ASN1_INTEGER_set(X509_get_serialNumber(x), 1);
    X509_set_subject_name(x, name);
    X509_set_issuer_name(x, name);
    X509_gmtime_adj(X509_getm_notBefore(x), 0);
    X509_gmtime_adj(X509_getm_notAfter(x), 3600);
    X509_set_pubkey(x, key);
    assert_true(X509_sign(x, key, EVP_sha256()) > 0);
    unsigned char *der = NULL;
    int n = i2d_X509(x, &der);
    assert_true(n > 0);
    *len = (size_t)n;
    X509_NAME_free(name);
    X509_free(x);
    EVP_PKEY_free(key);
    return der;
}

static char *csr_b64(const char *cn)
{
    EVP_PKEY *key = new_key();
    X509_REQ *req = X509_REQ_new();
    assert_non_null(req);
    X509_NAME *name = cn_name(cn);
    X509_REQ_set_subject_name(req, name);
    X509_REQ_set_pubkey(req, key);
    assert_true(X509_REQ_sign(req, key, EVP_sha256()) > 0);
    unsigned char *der = NULL;
    int n = i2d_X509_REQ(req, &der);
    assert_true(n > 0);
    char *b64 = NULL;
    enr_error err;
    assert_int_equal(enr_base64_encode(der, (size_t)n, &b64, &err), ENR_OK);
    OPENSSL_free(der);
    X509_NAME_free(name);
    X509_REQ_free(req);
    EVP_PKEY_free(key);
    return b64;
}

/* ---- the errorCode table ------------------------------------------------- */

static void test_error_table(void **state)
{
    (void)state;
    assert_int_equal(enr_dps_error_code(ENR_DPS_OK), 0);
    for (int i = 1; i < ENR_DPS_ERROR_COUNT; i++) {
        enr_dps_error e = (enr_dps_error)i;
        int code = enr_dps_error_code(e);
        if (code < 100000 || code > 599999)
            fail_msg("%s has errorCode %d, not six digits", enr_dps_error_name(e), code);
        assert_int_equal(enr_dps_error_http_status(e), code / 1000);
        assert_true(strlen(enr_dps_error_summary(e)) > 10);
        enr_dps_error back = ENR_DPS_OK;
        assert_true(enr_dps_error_from_code(code, &back));
        assert_int_equal(back, e);
        for (int k = 1; k < i; k++) {
            if (enr_dps_error_code((enr_dps_error)k) == code)
                fail_msg("errorCode %d is used twice", code);
            if (strcmp(enr_dps_error_name((enr_dps_error)k), enr_dps_error_name(e)) == 0)
                fail_msg("name %s is used twice", enr_dps_error_name(e));
        }
    }
    enr_dps_error unused;
    assert_false(enr_dps_error_from_code(400999, &unused));
    assert_false(enr_dps_error_from_code(0, &unused));
    assert_int_equal(enr_dps_error_code(ENR_DPS_ERROR_COUNT), 0);
    /* The numbers are the protocol: pin a few so a reordering cannot move them. */
    assert_int_equal(enr_dps_error_code(ENR_DPS_MALFORMED_BODY), 400001);
    assert_int_equal(enr_dps_error_code(ENR_DPS_CERT_AUTH_FAILED), 401002);
    assert_int_equal(enr_dps_error_code(ENR_DPS_UNKNOWN_OPERATION), 404003);
    assert_int_equal(enr_dps_error_code(ENR_DPS_BODY_TOO_LARGE), 413001);
    assert_int_equal(enr_dps_error_code(ENR_DPS_STORE_UNAVAILABLE), 503001);
}

static void test_docs_list_every_code(void **state)
{
    (void)state;
    char *doc = read_text("../../docs/errors.md");
    for (int i = 1; i < ENR_DPS_ERROR_COUNT; i++) {
        enr_dps_error e = (enr_dps_error)i;
        char row[160];
        snprintf(row, sizeof row, "\n| %d | %d | `%s` |", enr_dps_error_code(e),
                 enr_dps_error_http_status(e), enr_dps_error_name(e));
        if (strstr(doc, row) == NULL)
            fail_msg("docs/errors.md has no row starting%s", row);
    }
    /* ...and no row for a code the library does not know. */
    size_t rows = 0;
    for (const char *p = strstr(doc, "\n| "); p != NULL; p = strstr(p + 1, "\n| ")) {
        if (p[3] < '0' || p[3] > '9')
            continue;
        rows++;
        enr_dps_error e;
        int code = (int)strtol(p + 3, NULL, 10);
        if (!enr_dps_error_from_code(code, &e))
            fail_msg("docs/errors.md lists %d, which the library does not know", code);
    }
    assert_int_equal(rows, ENR_DPS_ERROR_COUNT - 1);
    free(doc);
}

/* ---- api-version ------------------------------------------------------------- */

static void test_api_versions(void **state)
{
    (void)state;
    static const struct {
        const char *value;
        int want; /* 0: refused */
    } CASES[] = {
        {"2019-03-31", ENR_DPS_API_2019_03_31},
        {"2021-11-01-preview", ENR_DPS_API_2021_11_01_PREVIEW},
        {"2025-07-01-preview", ENR_DPS_API_2025_07_01_PREVIEW},
        {"2025-07-01-PREVIEW", ENR_DPS_API_2025_07_01_PREVIEW},
        {NULL, 0},
        {"", 0},
        {"2019-03-31-preview", 0},
        {"2025-07-01", 0},
        {"2021-11-01-preview ", 0},
        {"2019-03-31x", 0},
        {"2018-11-01", 0},
        {"2025-7-1-preview", 0},
        {"2025-07-01-preview\n", 0},
    };
    for (size_t i = 0; i < sizeof CASES / sizeof CASES[0]; i++) {
        enr_dps_api_generation gen = 0;
        enr_error err;
        enr_code rc = enr_dps_api_version_check(CASES[i].value, &gen, &err);
        if (CASES[i].want != 0) {
            if (rc != ENR_OK)
                fail_msg("api-version %s refused: %s", CASES[i].value, err.message);
            assert_int_equal(gen, CASES[i].want);
            continue;
        }
        if (rc == ENR_OK)
            fail_msg("api-version '%s' accepted", CASES[i].value);
        assert_non_null(
            strstr(err.message, "2019-03-31, 2021-11-01-preview or 2025-07-01-preview"));
        assert_true(printable(err.message));
        if (CASES[i].value == NULL)
            assert_non_null(strstr(err.message, "missing"));
    }
    assert_string_equal(enr_dps_api_version_name(ENR_DPS_API_2021_11_01_PREVIEW),
                        "2021-11-01-preview");
}

/* ---- registration ids and paths ---------------------------------------------- */

static void test_registration_ids(void **state)
{
    (void)state;
    char long_id[ENR_DPS_REGISTRATION_ID_MAX + 2];
    memset(long_id, 'a', sizeof long_id - 1);
    long_id[sizeof long_id - 1] = '\0';
    static const char *GOOD[] = {"dev-001", "a", "A.b_c:d-", "0", "dev-", "x:1"};
    static const char *BAD[] = {"", "dev.", "dev_", "dev:", "dev 1", "dev/1", "dév", "dev\n"};
    enr_error err;
    for (size_t i = 0; i < sizeof GOOD / sizeof GOOD[0]; i++)
        if (enr_dps_registration_id_check(GOOD[i], strlen(GOOD[i]), &err) != ENR_OK)
            fail_msg("'%s' refused: %s", GOOD[i], err.message);
    for (size_t i = 0; i < sizeof BAD / sizeof BAD[0]; i++) {
        if (enr_dps_registration_id_check(BAD[i], strlen(BAD[i]), &err) == ENR_OK)
            fail_msg("'%s' accepted", BAD[i]);
        assert_true(printable(err.message));
    }
    assert_int_equal(enr_dps_registration_id_check(long_id, 128, &err), ENR_OK);
    assert_int_equal(enr_dps_registration_id_check(long_id, 129, &err), ENR_E_PARSE);
    assert_non_null(strstr(err.message, "129"));
    assert_true(enr_dps_registration_id_equal("Dev-001", "dEV-001"));
    assert_false(enr_dps_registration_id_equal("dev-001", "dev-0011"));
    assert_false(enr_dps_registration_id_equal("dev-001", NULL));
}

static void test_paths(void **state)
{
    (void)state;
    static const struct {
        const char *path;
        enr_dps_error want;
        int kind;
        const char *scope, *id, *op;
    } CASES[] = {
        {"/0ne00ABC/registrations/dev-001/register", ENR_DPS_OK, ENR_DPS_PATH_REGISTER,
         "0ne00ABC", "dev-001", ""},
        {"/0ne00ABC/registrations/Dev-001/operations/4.abc.1-2", ENR_DPS_OK,
         ENR_DPS_PATH_OPERATION_STATUS, "0ne00ABC", "Dev-001", "4.abc.1-2"},
        {"/s/registrations/dev%3A001/register", ENR_DPS_OK, ENR_DPS_PATH_REGISTER, "s",
         "dev:001", ""},
        {"/s/registrations/dev%2d001/register", ENR_DPS_OK, ENR_DPS_PATH_REGISTER, "s",
         "dev-001", ""},
        {"", ENR_DPS_UNKNOWN_PATH, 0, NULL, NULL, NULL},
        {"/", ENR_DPS_UNKNOWN_PATH, 0, NULL, NULL, NULL},
        {"s/registrations/dev/register", ENR_DPS_UNKNOWN_PATH, 0, NULL, NULL, NULL},
        {"/s/registrations/dev/register/", ENR_DPS_UNKNOWN_PATH, 0, NULL, NULL, NULL},
        {"/s/registrations/dev/register/x", ENR_DPS_UNKNOWN_PATH, 0, NULL, NULL, NULL},
        {"/s/registrations/dev/operations", ENR_DPS_UNKNOWN_PATH, 0, NULL, NULL, NULL},
        {"/s/registrations/dev/operations/op/x", ENR_DPS_UNKNOWN_PATH, 0, NULL, NULL, NULL},
        {"/s/registrations/dev/operations/op/x/y/z", ENR_DPS_UNKNOWN_PATH, 0, NULL, NULL, NULL},
        {"/s/Registrations/dev/register", ENR_DPS_UNKNOWN_PATH, 0, NULL, NULL, NULL},
        {"/s/registrations/dev/Register", ENR_DPS_UNKNOWN_PATH, 0, NULL, NULL, NULL},
        {"/s/registrations/dev/register?api-version=2019-03-31", ENR_DPS_UNKNOWN_PATH, 0, NULL,
         NULL, NULL},
        {"//registrations/dev/register", ENR_DPS_UNKNOWN_ID_SCOPE, 0, NULL, NULL, NULL},
        {"/s%20x/registrations/dev/register", ENR_DPS_UNKNOWN_ID_SCOPE, 0, NULL, NULL, NULL},
        {"/s/registrations//register", ENR_DPS_REGISTRATION_ID_INVALID, 0, NULL, NULL, NULL},
        {"/s/registrations/dev%2F001/register", ENR_DPS_REGISTRATION_ID_INVALID, 0, NULL, NULL,
         NULL},
        {"/s/registrations/dev%00/register", ENR_DPS_REGISTRATION_ID_INVALID, 0, NULL, NULL,
         NULL},
        {"/s/registrations/dev%zz/register", ENR_DPS_REGISTRATION_ID_INVALID, 0, NULL, NULL,
         NULL},
        {"/s/registrations/dev%2/register", ENR_DPS_REGISTRATION_ID_INVALID, 0, NULL, NULL, NULL},
        {"/s/registrations/dev%/register", ENR_DPS_REGISTRATION_ID_INVALID, 0, NULL, NULL, NULL},
        {"/s/registrations/dev./register", ENR_DPS_REGISTRATION_ID_INVALID, 0, NULL, NULL, NULL},
        {"/s/registrations/dev/operations/", ENR_DPS_UNKNOWN_OPERATION, 0, NULL, NULL, NULL},
        {"/s/registrations/dev/operations/op%2Fx", ENR_DPS_UNKNOWN_OPERATION, 0, NULL, NULL,
         NULL},
        {"/s/registrations/dev/operations/op%20x", ENR_DPS_UNKNOWN_OPERATION, 0, NULL, NULL,
         NULL},
    };
    for (size_t i = 0; i < sizeof CASES / sizeof CASES[0]; i++) {
        enr_dps_path p;
        enr_dps_error dps_err = ENR_DPS_INTERNAL;
        enr_error err;
        enr_code rc = enr_dps_path_parse(CASES[i].path, &p, &dps_err, &err);
        if (dps_err != CASES[i].want)
            fail_msg("%s: got %s (%s), want %s", CASES[i].path, enr_dps_error_name(dps_err),
                     rc == ENR_OK ? "ok" : err.message, enr_dps_error_name(CASES[i].want));
        if (CASES[i].want != ENR_DPS_OK) {
            assert_int_not_equal(rc, ENR_OK);
            assert_true(printable(err.message));
            continue;
        }
        assert_int_equal(rc, ENR_OK);
        assert_int_equal(p.kind, CASES[i].kind);
        assert_string_equal(p.id_scope, CASES[i].scope);
        assert_string_equal(p.registration_id, CASES[i].id);
        assert_string_equal(p.operation_id, CASES[i].op);
    }
    /* Limits: 128-character ids pass, 129 do not; long paths are refused. */
    char path[2048];
    char id[130];
    memset(id, 'a', 128);
    id[128] = '\0';
    snprintf(path, sizeof path, "/s/registrations/%s/register", id);
    enr_dps_path p;
    enr_dps_error dps_err;
    enr_error err;
    assert_int_equal(enr_dps_path_parse(path, &p, &dps_err, &err), ENR_OK);
    strcpy(id + 128, "a");
    snprintf(path, sizeof path, "/s/registrations/%s/register", id);
    assert_int_not_equal(enr_dps_path_parse(path, &p, &dps_err, &err), ENR_OK);
    assert_int_equal(dps_err, ENR_DPS_REGISTRATION_ID_INVALID);
    memset(path, 'x', 1500);
    memcpy(path, "/s/registrations/", 17);
    path[1500] = '\0';
    assert_int_not_equal(enr_dps_path_parse(path, &p, &dps_err, &err), ENR_OK);
    assert_int_equal(dps_err, ENR_DPS_UNKNOWN_PATH);
}

/* ---- the register request ----------------------------------------------------- */

typedef struct bad_body {
    const char *label;
    char *body; /* owned */
    size_t len;
    enr_dps_error want;
    const char *message_has;
} bad_body;

static bad_body make_bad(const char *label, const char *text, enr_dps_error want,
                         const char *message_has)
{
    char *copy = strdup(text);
    assert_non_null(copy);
    return (bad_body){label, copy, strlen(text), want, message_has};
}

static char *repeat_wrap(const char *head, const char *open, const char *close, int depth,
                         const char *tail)
{
    size_t cap = strlen(head) + strlen(tail) + (size_t)depth * (strlen(open) + strlen(close)) + 8;
    char *s = malloc(cap);
    assert_non_null(s);
    strcpy(s, head);
    for (int i = 0; i < depth; i++)
        strcat(s, open);
    strcat(s, "1");
    for (int i = 0; i < depth; i++)
        strcat(s, close);
    strcat(s, tail);
    return s;
}

static char *big_body(size_t total)
{
    char *s = malloc(total + 1);
    assert_non_null(s);
    /* An extra member (ignored) fills the body: the payload has its own limit. */
    const char *head = "{\"registrationId\":\"dev-001\",\"tpm\":\"";
    size_t h = strlen(head);
    memcpy(s, head, h);
    memset(s + h, 'x', total - h - 2);
    memcpy(s + total - 2, "\"}", 2);
    s[total] = '\0';
    return s;
}

/* A body whose payload is a string of `compact` bytes as compact JSON. */
static char *payload_body(size_t compact)
{
    const char *head = "{\"registrationId\":\"dev-001\",\"payload\":\"";
    size_t h = strlen(head), inner = compact - 2;
    char *s = malloc(h + inner + 3);
    assert_non_null(s);
    memcpy(s, head, h);
    memset(s + h, 'p', inner);
    memcpy(s + h + inner, "\"}", 3);
    return s;
}

static size_t bad_bodies(bad_body *t)
{
    size_t n = 0;
    char id129[200];
    memset(id129, 0, sizeof id129);
    strcpy(id129, "{\"registrationId\":\"");
    memset(id129 + strlen(id129), 'a', 129);
    strcat(id129, "\"}");
    t[n++] = make_bad("not JSON", "registrationId=dev-001", ENR_DPS_MALFORMED_BODY,
                      "not valid JSON");
    t[n++] = make_bad("JSON array", "[{\"registrationId\":\"dev-001\"}]", ENR_DPS_MALFORMED_BODY,
                      "array");
    t[n++] = make_bad("JSON string", "\"dev-001\"", ENR_DPS_MALFORMED_BODY, "not valid JSON");
    t[n++] = make_bad("duplicate keys",
                      "{\"registrationId\":\"dev-001\",\"registrationId\":\"dev-001\"}",
                      ENR_DPS_MALFORMED_BODY, "appears twice");
    t[n++] = make_bad("duplicate csr",
                      "{\"registrationId\":\"dev-001\",\"csr\":\"AAAA\",\"csr\":\"BBBB\"}",
                      ENR_DPS_MALFORMED_BODY, "appears twice");
    t[n++] = make_bad("registrationId missing", "{\"csr\":\"MIIB\"}", ENR_DPS_MALFORMED_BODY,
                      "registrationId is missing");
    t[n++] = make_bad("registrationId number", "{\"registrationId\":7}", ENR_DPS_MALFORMED_BODY,
                      "must be a string, not a number");
    t[n++] = make_bad("registrationId null", "{\"registrationId\":null}",
                      ENR_DPS_MALFORMED_BODY, "not null");
    t[n++] = make_bad("registrationId object", "{\"registrationId\":{\"id\":\"dev-001\"}}",
                      ENR_DPS_MALFORMED_BODY, "not an object");
    t[n++] = make_bad("registrationId mismatch", "{\"registrationId\":\"dev-002\"}",
                      ENR_DPS_REGISTRATION_ID_MISMATCH, "differs from 'dev-001' in the path");
    t[n++] = make_bad("registrationId too long", id129, ENR_DPS_REGISTRATION_ID_INVALID,
                      "129 characters");
    t[n++] = make_bad("registrationId bad char", "{\"registrationId\":\"dev/001\"}",
                      ENR_DPS_REGISTRATION_ID_INVALID, "0x2f at position 3");
    t[n++] = make_bad("registrationId non-ASCII", "{\"registrationId\":\"d\\u00e9v\"}",
                      ENR_DPS_REGISTRATION_ID_INVALID, "0xc3 at position 1");
    t[n++] = make_bad("registrationId bad last char", "{\"registrationId\":\"dev-001.\"}",
                      ENR_DPS_REGISTRATION_ID_INVALID, "ends in '.'");
    t[n++] = make_bad("registrationId empty", "{\"registrationId\":\"\"}",
                      ENR_DPS_REGISTRATION_ID_INVALID, "empty");
    t[n++] = make_bad("csr number", "{\"registrationId\":\"dev-001\",\"csr\":12}",
                      ENR_DPS_MALFORMED_BODY, "csr must be a string");
    t[n++] = make_bad("csr object", "{\"registrationId\":\"dev-001\",\"csr\":{}}",
                      ENR_DPS_MALFORMED_BODY, "not an object");
    t[n++] = make_bad("clientCertificateCsr array",
                      "{\"registrationId\":\"dev-001\",\"clientCertificateCsr\":[\"AAAA\"]}",
                      ENR_DPS_MALFORMED_BODY, "clientCertificateCsr must be a string");
    t[n++] = make_bad("csr true", "{\"registrationId\":\"dev-001\",\"csr\":true}",
                      ENR_DPS_MALFORMED_BODY, "not a boolean");
    t[n++] = make_bad("csr PEM",
                      "{\"registrationId\":\"dev-001\",\"csr\":\"-----BEGIN CERTIFICATE "
                      "REQUEST-----\\nMIIB\\n-----END CERTIFICATE REQUEST-----\\n\"}",
                      ENR_DPS_CSR_NOT_DECODABLE, "without the -----BEGIN");
    t[n++] = make_bad("csr bad char", "{\"registrationId\":\"dev-001\",\"csr\":\"MIIB*AAA\"}",
                      ENR_DPS_CSR_NOT_DECODABLE, "outside base64 at position 4");
    t[n++] = make_bad("csr empty", "{\"registrationId\":\"dev-001\",\"csr\":\"\"}",
                      ENR_DPS_CSR_NOT_DECODABLE, "csr is empty");
    t[n++] = make_bad("csr only whitespace", "{\"registrationId\":\"dev-001\",\"csr\":\" \\n\"}",
                      ENR_DPS_CSR_NOT_DECODABLE, "csr is empty");
    t[n++] = make_bad("csr and clientCertificateCsr differ",
                      "{\"registrationId\":\"dev-001\",\"csr\":\"AAAA\","
                      "\"clientCertificateCsr\":\"BBBB\"}",
                      ENR_DPS_CSR_FIELDS_DIFFER, "different requests");
    t[n++] = make_bad("trailing garbage", "{\"registrationId\":\"dev-001\"} x",
                      ENR_DPS_MALFORMED_BODY, "unexpected data after");
    t[n++] = make_bad("two objects", "{\"registrationId\":\"dev-001\"}{}",
                      ENR_DPS_MALFORMED_BODY, "unexpected data after");
    t[n++] = make_bad("truncated", "{\"registrationId\":\"dev-001\"", ENR_DPS_MALFORMED_BODY,
                      "ends too early");
    t[n++] = make_bad("empty body", "", ENR_DPS_MALFORMED_BODY, "empty");
    t[n++] = make_bad("whitespace body", " \n", ENR_DPS_MALFORMED_BODY, "not valid JSON");
    t[n++] = make_bad("NUL in registrationId", "{\"registrationId\":\"dev\\u0000-001\"}",
                      ENR_DPS_MALFORMED_BODY, "\\u0000");
    t[n++] = make_bad("NUL in payload",
                      "{\"registrationId\":\"dev-001\",\"payload\":{\"a\":\"x\\u0000\"}}",
                      ENR_DPS_MALFORMED_BODY, "\\u0000");
    t[n++] = make_bad("NUL in a key", "{\"registrationId\":\"dev-001\",\"a\\u0000b\":1}",
                      ENR_DPS_MALFORMED_BODY, "\\u0000");
    t[n++] = make_bad("invalid UTF-8", "{\"registrationId\":\"dev-\xff\"}",
                      ENR_DPS_MALFORMED_BODY, "UTF-8");
    t[n++] = make_bad("control character", "{\"registrationId\":\"dev\x01\"}",
                      ENR_DPS_MALFORMED_BODY, "not valid JSON");
    t[n++] = make_bad("number overflow", "{\"registrationId\":\"dev-001\",\"payload\":1e999}",
                      ENR_DPS_MALFORMED_BODY, "out of range");
    char *deep = repeat_wrap("{\"registrationId\":\"dev-001\",\"payload\":", "[", "]", 40, "}");
    t[n++] = make_bad("deeply nested payload (arrays)", deep, ENR_DPS_MALFORMED_BODY,
                      "deeper than 32 levels");
    free(deep);
    deep = repeat_wrap("{\"registrationId\":\"dev-001\",\"payload\":", "{\"a\":", "}", 32, "}");
    t[n++] = make_bad("deeply nested payload (objects)", deep, ENR_DPS_MALFORMED_BODY,
                      "deeper than 32 levels");
    free(deep);
    deep = repeat_wrap("", "[", "]", 20000, "");
    t[n++] = make_bad("20000 brackets", deep, ENR_DPS_MALFORMED_BODY, "deeper than 32");
    free(deep);
    char *csr = malloc(ENR_DPS_CSR_CHARS_MAX + 200);
    assert_non_null(csr);
    strcpy(csr, "{\"registrationId\":\"dev-001\",\"csr\":\"");
    size_t at = strlen(csr);
    memset(csr + at, 'A', ENR_DPS_CSR_CHARS_MAX + 4);
    strcpy(csr + at + ENR_DPS_CSR_CHARS_MAX + 4, "\"}");
    t[n++] = make_bad("csr too long", csr, ENR_DPS_CSR_NOT_DECODABLE, "the limit is 32768");
    free(csr);
    char *payload = payload_body(ENR_DPS_PAYLOAD_MAX + 1);
    t[n++] = make_bad("payload one byte over 4 KiB", payload, ENR_DPS_PAYLOAD_TOO_LARGE, "the limit is 4096");
    free(payload);
    payload = repeat_wrap("{\"registrationId\":\"dev-001\",\"payload\":[", "1,", "", 3000, "]}");
    t[n++] = make_bad("payload of 6003 bytes in an array", payload, ENR_DPS_PAYLOAD_TOO_LARGE, "6003 bytes as compact JSON");
    free(payload);
    t[n] = (bad_body){"1 MiB body", big_body(1u << 20), 1u << 20, ENR_DPS_BODY_TOO_LARGE,
                      "1048576 bytes; the limit is 65536"};
    n++;
    t[n] = (bad_body){"one byte over the limit", big_body(ENR_DPS_REQUEST_BODY_MAX + 1),
                      ENR_DPS_REQUEST_BODY_MAX + 1, ENR_DPS_BODY_TOO_LARGE, "the limit is 65536"};
    n++;
    static const char RAW_NUL[] = "{\"registrationId\":\"dev\0-001\"}";
    t[n] = (bad_body){"raw NUL byte", malloc(sizeof RAW_NUL), sizeof RAW_NUL - 1,
                      ENR_DPS_MALFORMED_BODY, "not valid JSON"};
    memcpy(t[n].body, RAW_NUL, sizeof RAW_NUL);
    n++;
    return n;
}

static void test_request_bad_input_table(void **state)
{
    (void)state;
    bad_body table[64];
    size_t n = bad_bodies(table);
    assert_true(n < sizeof table / sizeof table[0]);
    for (size_t i = 0; i < n; i++) {
        enr_dps_register_request *req = NULL;
        enr_dps_error dps_err = ENR_DPS_OK;
        enr_error err;
        enr_error_clear(&err);
        enr_code rc = enr_dps_register_request_parse(table[i].body, table[i].len, "dev-001", &req,
                                                     &dps_err, &err);
        if (rc == ENR_OK)
            fail_msg("%s: accepted", table[i].label);
        assert_null(req);
        if (dps_err != table[i].want)
            fail_msg("%s: got %s (%s), want %s", table[i].label, enr_dps_error_name(dps_err),
                     err.message, enr_dps_error_name(table[i].want));
        if (strstr(err.message, table[i].message_has) == NULL)
            fail_msg("%s: message '%s' does not say '%s'", table[i].label, err.message,
                     table[i].message_has);
        if (!printable(err.message) || strstr(err.message, "JSON_") != NULL)
            fail_msg("%s: message is not clean: '%s'", table[i].label, err.message);
        free(table[i].body);
    }
}

static enr_dps_register_request *parse_ok(const char *body, const char *path_id)
{
    enr_dps_register_request *req = NULL;
    enr_dps_error dps_err = ENR_DPS_INTERNAL;
    enr_error err;
    if (enr_dps_register_request_parse(body, strlen(body), path_id, &req, &dps_err, &err) !=
        ENR_OK)
        fail_msg("refused %s: %s", body, err.message);
    assert_int_equal(dps_err, ENR_DPS_OK);
    return req;
}

static void test_request_good(void **state)
{
    (void)state;
    /* Classic: no CSR; extra members ignored; id compared case-insensitively. */
    enr_dps_register_request *req =
        parse_ok("{\"registrationId\":\"Dev-001\",\"tpm\":{\"endorsementKey\":\"x\"},"
                 "\"extra\":[1,2]}",
                 "dev-001");
    assert_string_equal(enr_dps_register_request_registration_id(req), "Dev-001");
    assert_null(enr_dps_register_request_csr(req));
    assert_int_equal(enr_dps_register_request_csr_field(req), ENR_DPS_CSR_NONE);
    assert_null(enr_dps_register_request_payload(req));
    enr_csr *csr = NULL;
    enr_dps_error dps_err;
    enr_error err;
    assert_int_not_equal(enr_dps_register_request_decode_csr(req, &csr, &dps_err, &err), ENR_OK);
    assert_int_equal(dps_err, ENR_DPS_CSR_NOT_DECODABLE);
    enr_dps_register_request_free(req);

    /* null means absent */
    req = parse_ok("{\"registrationId\":\"dev-001\",\"csr\":null,\"clientCertificateCsr\":null,"
                   "\"payload\":null}",
                   "dev-001");
    assert_null(enr_dps_register_request_csr(req));
    assert_null(enr_dps_register_request_payload(req));
    enr_dps_register_request_free(req);

    /* payload is kept as compact JSON */
    req = parse_ok("{\"payload\": {\"model\": \"m1\", \"n\": [1, true, null]},"
                   " \"registrationId\": \"dev-001\"}",
                   "dev-001");
    assert_string_equal(enr_dps_register_request_payload(req),
                        "{\"model\":\"m1\",\"n\":[1,true,null]}");
    enr_dps_register_request_free(req);
    req = parse_ok("{\"registrationId\":\"dev-001\",\"payload\":\"text\"}", "dev-001");
    assert_string_equal(enr_dps_register_request_payload(req), "\"text\"");
    enr_dps_register_request_free(req);

    /* Depth 32 in all (the body object is level 1) is allowed, and the
     * deepest payload a request may carry is echoed in an answer the device
     * can read. */
    char *deep = repeat_wrap("{\"registrationId\":\"dev-001\",\"payload\":", "[", "]", 31, "}");
    req = parse_ok(deep, "dev-001");
    enr_dps_assignment a = {.operation_id = "op-1", .registration_id = "dev-001",
                            .payload_json = enr_dps_register_request_payload(req)};
    char *text = NULL;
    assert_int_equal(enr_dps_write_assigned(&a, &text, &err), ENR_OK);
    enr_dps_register_response *r = NULL;
    assert_int_equal(enr_dps_register_response_parse(text, strlen(text), &r, &err), ENR_OK);
    assert_string_equal(enr_dps_response_payload(r), a.payload_json);
    enr_dps_register_response_free(r);
    free(text);
    enr_dps_register_request_free(req);
    free(deep);
    /* Brackets inside strings do not count. */
    char *brackets = repeat_wrap("{\"registrationId\":\"dev-001\",\"payload\":\"", "[{", "", 100,
                                 "\\\"\"}");
    req = parse_ok(brackets, "dev-001");
    enr_dps_register_request_free(req);
    free(brackets);
    /* A payload of exactly 4 KiB passes. */
    char *payload = payload_body(ENR_DPS_PAYLOAD_MAX);
    req = parse_ok(payload, "dev-001");
    assert_int_equal(strlen(enr_dps_register_request_payload(req)), ENR_DPS_PAYLOAD_MAX);
    enr_dps_register_request_free(req);
    free(payload);
    /* Exactly at the size limit passes. */
    char *big = big_body(ENR_DPS_REQUEST_BODY_MAX);
    req = parse_ok(big, "dev-001");
    enr_dps_register_request_free(req);
    free(big);
}

static void test_request_csr_fields(void **state)
{
    (void)state;
    char *b64 = csr_b64("dev-001");
    char body[8192];
    enr_dps_error dps_err;
    enr_error err;

    snprintf(body, sizeof body, "{\"registrationId\":\"dev-001\",\"csr\":\"%s\"}", b64);
    enr_dps_register_request *req = parse_ok(body, "dev-001");
    assert_string_equal(enr_dps_register_request_csr(req), b64);
    assert_int_equal(enr_dps_register_request_csr_field(req), ENR_DPS_CSR_FIELD_CSR);
    enr_csr *csr = NULL;
    assert_int_equal(enr_dps_register_request_decode_csr(req, &csr, &dps_err, &err), ENR_OK);
    assert_int_equal(enr_csr_verify(csr, &err), ENR_OK);
    enr_csr_free(csr);
    enr_dps_register_request_free(req);

    snprintf(body, sizeof body, "{\"registrationId\":\"dev-001\",\"clientCertificateCsr\":\"%s\"}",
             b64);
    req = parse_ok(body, "dev-001");
    assert_string_equal(enr_dps_register_request_csr(req), b64);
    assert_int_equal(enr_dps_register_request_csr_field(req), ENR_DPS_CSR_FIELD_CLIENT);
    enr_dps_register_request_free(req);

    snprintf(body, sizeof body,
             "{\"registrationId\":\"dev-001\",\"csr\":\"%s\",\"clientCertificateCsr\":\"%s\"}", b64,
             b64);
    req = parse_ok(body, "dev-001");
    assert_int_equal(enr_dps_register_request_csr_field(req), ENR_DPS_CSR_FIELD_BOTH);
    enr_dps_register_request_free(req);

    /* Line-wrapped base64 (as some encoders write it) is the same request. */
    size_t len = strlen(b64);
    char wrapped[8192];
    size_t w = 0;
    for (size_t i = 0; i < len; i++) {
        if (i > 0 && i % 64 == 0) {
            memcpy(wrapped + w, "\\r\\n", 4);
            w += 4;
        }
        wrapped[w++] = b64[i];
    }
    wrapped[w] = '\0';
    snprintf(body, sizeof body,
             "{\"registrationId\":\"dev-001\",\"csr\":\"%s\",\"clientCertificateCsr\":\"%s\"}",
             wrapped, b64);
    req = parse_ok(body, "dev-001");
    assert_string_equal(enr_dps_register_request_csr(req), b64);
    enr_dps_register_request_free(req);

    /* Base64 alphabet but not a request: caught when decoded. */
    req = parse_ok("{\"registrationId\":\"dev-001\",\"csr\":\"AAAAAAAA\"}", "dev-001");
    assert_int_not_equal(enr_dps_register_request_decode_csr(req, &csr, &dps_err, &err), ENR_OK);
    assert_int_equal(dps_err, ENR_DPS_CSR_NOT_DECODABLE);
    assert_null(csr);
    assert_non_null(strstr(err.message, "csr: "));
    enr_dps_register_request_free(req);
    free(b64);
}

/* ---- writers ------------------------------------------------------------------- */

typedef struct chain3 {
    unsigned char *der[3];
    size_t len[3];
    enr_dps_der blobs[3];
} chain3;

static void chain3_make(chain3 *c)
{
    static const char *CNS[] = {"dev-001", "Intermediate", "Root"};
    for (int i = 0; i < 3; i++) {
        c->der[i] = cert_der(CNS[i], &c->len[i]);
        c->blobs[i] = (enr_dps_der){c->der[i], c->len[i], .encoded = false};
    }
}

static void chain3_free(chain3 *c)
{
    for (int i = 0; i < 3; i++)
        OPENSSL_free(c->der[i]);
}

static enr_dps_assignment sample_assignment(const chain3 *c)
{
    return (enr_dps_assignment){
        .operation_id = "4.abc.0001",
        .registration_id = "dev-001",
        .created_at = T_2026_11_23_08_00,
        .updated_at = T_2026_11_23_08_00 + 5,
        .assigned_hub = "mqtt.example.net",
        .device_id = "dev-001",
        .substatus = ENR_DPS_SUBSTATUS_INITIAL_ASSIGNMENT,
        .etag = "\"etag-1\"",
        .payload_json = "{\"firmware\":\"1.2\"}",
        .chain = c != NULL ? c->blobs : NULL,
        .chain_len = c != NULL ? 3 : 0,
    };
}

static char *b64_of(const unsigned char *der, size_t len)
{
    char *b64 = NULL;
    enr_error err;
    assert_int_equal(enr_base64_encode(der, len, &b64, &err), ENR_OK);
    return b64;
}

static void test_write_assigning(void **state)
{
    (void)state;
    char *text = NULL;
    enr_error err;
    assert_int_equal(enr_dps_write_assigning("4.abc.0001", &text, &err), ENR_OK);
    assert_string_equal(text, "{\"operationId\":\"4.abc.0001\",\"status\":\"assigning\"}");
    free(text);
    assert_int_equal(enr_dps_write_operation_status_assigning("4.abc.0001", "dev-001", &text, &err),
                     ENR_OK);
    assert_string_equal(text, "{\"operationId\":\"4.abc.0001\",\"status\":\"assigning\","
                              "\"registrationState\":{\"registrationId\":\"dev-001\","
                              "\"status\":\"assigning\"}}");
    free(text);
    assert_int_equal(enr_dps_write_assigning("bad/id", &text, &err), ENR_E_USAGE);
    assert_null(text);
    assert_int_equal(enr_dps_write_assigning(NULL, &text, &err), ENR_E_USAGE);
    assert_int_equal(enr_dps_write_operation_status_assigning("op", "dev\"x", &text, &err),
                     ENR_E_USAGE);
    assert_null(text);
}

static void test_write_assigned_shape(void **state)
{
    (void)state;
    chain3 c;
    chain3_make(&c);
    enr_dps_assignment a = sample_assignment(&c);
    char *text = NULL;
    enr_error err;
    assert_int_equal(enr_dps_write_assigned(&a, &text, &err), ENR_OK);
    json_t *doc = load(text);
    assert_string_equal(str_at(doc, "operationId"), "4.abc.0001");
    assert_string_equal(str_at(doc, "status"), "assigned");
    json_t *rs = json_object_get(doc, "registrationState");
    assert_true(json_is_object(rs));
    assert_string_equal(str_at(rs, "registrationId"), "dev-001");
    assert_string_equal(str_at(rs, "createdDateTimeUtc"), "2026-11-23T08:00:00.0000000Z");
    assert_string_equal(str_at(rs, "lastUpdatedDateTimeUtc"), "2026-11-23T08:00:05.0000000Z");
    assert_string_equal(str_at(rs, "assignedHub"), "mqtt.example.net");
    assert_string_equal(str_at(rs, "deviceId"), "dev-001");
    assert_string_equal(str_at(rs, "status"), "assigned");
    assert_string_equal(str_at(rs, "substatus"), "initialAssignment");
    assert_string_equal(str_at(rs, "etag"), "\"etag-1\"");
    json_t *payload = json_object_get(rs, "payload");
    assert_true(json_is_object(payload));
    assert_string_equal(str_at(payload, "firmware"), "1.2");

    json_t *chain = json_object_get(rs, "issuedCertificateChain");
    assert_true(json_is_array(chain));
    assert_int_equal(json_array_size(chain), 3);
    for (size_t i = 0; i < 3; i++) {
        json_t *item = json_array_get(chain, i);
        assert_true(json_is_string(item));
        char *want = b64_of(c.der[i], c.len[i]);
        assert_string_equal(json_string_value(item), want); /* leaf first, no whitespace */
        free(want);
    }
    assert_string_equal(str_at(rs, "issuedClientCertificate"),
                        json_string_value(json_array_get(chain, 0)));
    json_t *bundle = json_object_get(rs, "trustBundle");
    assert_true(json_is_object(bundle));
    json_t *certs = json_object_get(bundle, "certificates");
    assert_true(json_is_array(certs));
    assert_int_equal(json_array_size(certs), 1);
    const char *pem = str_at(json_array_get(certs, 0), "certificate");
    assert_non_null(strstr(pem, "-----BEGIN CERTIFICATE-----\n"));
    enr_decoded d;
    assert_int_equal(enr_decode((const unsigned char *)pem, strlen(pem), &d, NULL, &err), ENR_OK);
    assert_int_equal(d.encoding, ENR_ENCODING_PEM);
    assert_int_equal(d.der_len, c.len[2]);
    assert_memory_equal(d.der, c.der[2], c.len[2]); /* the root */
    enr_decoded_free(&d);
    json_decref(doc);
    free(text);
    chain3_free(&c);
}

static void test_write_assigned_classic(void **state)
{
    (void)state;
    enr_dps_assignment a = sample_assignment(NULL);
    a.etag = NULL;
    a.payload_json = NULL;
    a.substatus = ENR_DPS_SUBSTATUS_REPROVISIONED_TO_INITIAL_ASSIGNMENT;
    char *text = NULL;
    enr_error err;
    assert_int_equal(enr_dps_write_assigned(&a, &text, &err), ENR_OK);
    json_t *doc = load(text);
    json_t *rs = json_object_get(doc, "registrationState");
    static const char *ABSENT[] = {"issuedCertificateChain", "issuedClientCertificate",
                                   "trustBundle", "etag", "payload", "errorCode"};
    for (size_t i = 0; i < sizeof ABSENT / sizeof ABSENT[0]; i++)
        if (json_object_get(rs, ABSENT[i]) != NULL)
            fail_msg("a classic assignment carries %s", ABSENT[i]);
    assert_string_equal(str_at(rs, "substatus"), "reprovisionedToInitialAssignment");
    json_decref(doc);
    free(text);

    /* Neither hub nor device id: both absent. One without the other: refused. */
    a.assigned_hub = NULL;
    a.device_id = NULL;
    assert_int_equal(enr_dps_write_assigned(&a, &text, &err), ENR_OK);
    doc = load(text);
    rs = json_object_get(doc, "registrationState");
    assert_null(json_object_get(rs, "assignedHub"));
    assert_null(json_object_get(rs, "deviceId"));
    json_decref(doc);
    free(text);
    a.assigned_hub = "mqtt.example.net";
    assert_int_equal(enr_dps_write_assigned(&a, &text, &err), ENR_E_USAGE);
    assert_null(text);
    assert_non_null(strstr(err.message, "both or neither"));
    a.assigned_hub = NULL;
    a.device_id = "dev-001";
    assert_int_equal(enr_dps_write_assigned(&a, &text, &err), ENR_E_USAGE);
}

/* The direct writer (enrolld's answers) writes exactly jansson's text, for
 * every combination of the optional members; strings that need escaping
 * or a payload take jansson's path and still read back. */
static void test_write_assigned_direct_is_jansson(void **state)
{
    (void)state;
    chain3 c;
    chain3_make(&c);
    for (int variant = 0; variant < 32; variant++) {
        enr_dps_assignment a = sample_assignment(variant & 1 ? &c : NULL);
        a.payload_json = NULL;
        a.etag = "5f0c2a9e-etag"; /* enrolld's etags: plain ASCII */
        if (variant & 2)
            a.assigned_hub = a.device_id = NULL;
        if (variant & 4)
            a.etag = NULL;
        if (variant & 8)
            a.renewal_window = "P7D", a.renew_after = 1795000000;
        if (variant & 16)
            a.etag = ""; /* an empty member is still written */
        assert_true(enr_dps_assignment_plain(&a));
        char *direct = NULL, *reference = NULL;
        enr_error err;
        assert_int_equal(enr_dps_write_assigned(&a, &direct, &err), ENR_OK);
        assert_int_equal(enr_dps_write_assigned_json(&a, &reference, &err), ENR_OK);
        if (strcmp(direct, reference) != 0)
            fail_msg("variant %d:\n%s\n%s", variant, direct, reference);
        if (a.chain_len > 0) {
            /* The operation's copy: no certificate member, the rest as
             * written; completed with the chain it is the answer again. */
            char *kept = NULL, *kept_json = NULL, *completed = NULL;
            enr_dps_assignment k = a;
            k.certificate_apart = true;
            assert_int_equal(enr_dps_write_assigned(&k, &kept, &err), ENR_OK);
            assert_int_equal(enr_dps_write_assigned_json(&k, &kept_json, &err), ENR_OK);
            assert_string_equal(kept, kept_json);
            assert_null(strstr(kept, "issuedCertificateChain"));
            assert_null(strstr(kept, "issuedClientCertificate"));
            assert_null(strstr(kept, "trustBundle"));
            assert_true((strstr(kept, "renewAfterUtc") != NULL) == ((variant & 8) != 0));
            assert_true(strlen(kept) < strlen(direct) / 2);
            assert_int_equal(enr_dps_complete_assigned(kept, strlen(kept), a.chain, a.chain_len, &completed, &err),
                             ENR_OK);
            if (strcmp(completed, direct) != 0)
                fail_msg("variant %d completed:\n%s\n%s", variant, completed, direct);
            free(kept);
            free(kept_json);
            free(completed);
        }
        free(direct);
        free(reference);
    }
    enr_dps_assignment a = sample_assignment(&c);
    a.payload_json = NULL;
    a.etag = "\"q\\u\u00e9\""; /* quotes, a backslash, UTF-8: jansson's path */
    assert_false(enr_dps_assignment_plain(&a));
    char *text = NULL;
    enr_error err;
    assert_int_equal(enr_dps_write_assigned(&a, &text, &err), ENR_OK);
    json_t *doc = load(text);
    assert_string_equal(str_at(json_object_get(doc, "registrationState"), "etag"), a.etag);
    json_decref(doc);
    free(text);
    a.etag = "\xff"; /* not UTF-8: refused on either path */
    assert_int_equal(enr_dps_write_assigned(&a, &text, &err), ENR_E_USAGE);
    chain3_free(&c);
}

/* enr_dps_complete_assigned reads only what certificate_apart wrote:
 * anything else is ENR_E_PARSE, never a half-made answer. */
static void test_complete_assigned_refusals(void **state)
{
    (void)state;
    chain3 c;
    chain3_make(&c);
    enr_dps_assignment a = sample_assignment(&c);
    a.payload_json = NULL;
    char *whole = NULL, *failed = NULL;
    enr_error err;
    assert_int_equal(enr_dps_write_assigned(&a, &whole, &err), ENR_OK);
    enr_dps_failure f = {.operation_id = a.operation_id, .registration_id = a.registration_id,
                         .created_at = a.created_at, .updated_at = a.updated_at, .error = ENR_DPS_ENROLLMENT_DISABLED};
    assert_int_equal(enr_dps_write_failed(&f, &failed, &err), ENR_OK);
    struct {
        const char *what, *text;
    } bad[] = {
        {"empty", ""},
        {"not JSON", "{\"operationId\":"},
        {"not an object", "[1]"},
        {"an answer that already has its certificates", whole},
        {"a failed answer", failed},
        {"no registrationState", "{\"operationId\":\"4.5\",\"status\":\"assigned\"}"},
        {"no createdDateTimeUtc",
         "{\"operationId\":\"4.5\",\"status\":\"assigned\",\"registrationState\":{\"registrationId\":\"d\","
         "\"status\":\"assigned\",\"substatus\":\"initialAssignment\","
         "\"lastUpdatedDateTimeUtc\":\"2026-01-01T00:00:00.0000000Z\"}}"},
        {"unknown substatus",
         "{\"operationId\":\"4.5\",\"status\":\"assigned\",\"registrationState\":{\"registrationId\":\"d\","
         "\"createdDateTimeUtc\":\"2026-01-01T00:00:00.0000000Z\",\"status\":\"assigned\",\"substatus\":\"x\","
         "\"lastUpdatedDateTimeUtc\":\"2026-01-01T00:00:00.0000000Z\"}}"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char *out = NULL;
        enr_code rc = enr_dps_complete_assigned(bad[i].text, strlen(bad[i].text), a.chain, a.chain_len, &out, &err);
        if (rc == ENR_OK)
            fail_msg("%s: completed to %s", bad[i].what, out);
        assert_int_equal(rc, ENR_E_PARSE);
        assert_null(out);
    }
    free(whole);
    free(failed);
    chain3_free(&c);
}

static void test_write_assigned_refusals(void **state)
{
    (void)state;
    chain3 c;
    chain3_make(&c);
    char *text = NULL;
    enr_error err;
    enr_dps_assignment a = sample_assignment(&c);
    a.payload_json = "{\"a\":1,\"a\":2}";
    assert_int_equal(enr_dps_write_assigned(&a, &text, &err), ENR_E_USAGE);
    a = sample_assignment(&c);
    a.payload_json = "{";
    assert_int_equal(enr_dps_write_assigned(&a, &text, &err), ENR_E_USAGE);
    char *deep = repeat_wrap("", "[", "]", ENR_DPS_PAYLOAD_DEPTH_MAX + 1, "");
    a.payload_json = deep;
    assert_int_equal(enr_dps_write_assigned(&a, &text, &err), ENR_E_USAGE);
    assert_non_null(strstr(err.message, "deeper than 31"));
    free(deep);
    /* An answer a device could not read is not written. */
    size_t huge_len = ENR_DPS_RESPONSE_BODY_MAX;
    char *huge = malloc(huge_len + 3);
    assert_non_null(huge);
    huge[0] = '"';
    memset(huge + 1, 'p', huge_len);
    strcpy(huge + 1 + huge_len, "\"");
    a.payload_json = huge;
    assert_int_equal(enr_dps_write_assigned(&a, &text, &err), ENR_E_USAGE);
    assert_non_null(strstr(err.message, "devices read at most"));
    free(huge);
    a = sample_assignment(&c);
    /* Bytes from outside (not flagged as encoded here) are walked: a
     * flagged chain writes the same text, only without the walk. */
    char *walked = NULL, *trusted = NULL;
    assert_int_equal(enr_dps_write_assigned(&a, &walked, &err), ENR_OK);
    enr_dps_der flagged[3];
    for (int i = 0; i < 3; i++)
        flagged[i] = (enr_dps_der){c.der[i], c.len[i], .encoded = true};
    a.chain = flagged;
    assert_int_equal(enr_dps_write_assigned(&a, &trusted, &err), ENR_OK);
    assert_string_equal(walked, trusted);
    free(walked);
    free(trusted);
    enr_dps_der broken[2] = {c.blobs[0], {c.der[1], c.len[1] - 1, .encoded = false}};
    a.chain = broken;
    a.chain_len = 2;
    assert_int_equal(enr_dps_write_assigned(&a, &text, &err), ENR_E_USAGE);
    assert_non_null(strstr(err.message, "chain element 1"));
    unsigned char *padded = malloc(c.len[0] + 1);
    assert_non_null(padded);
    memcpy(padded, c.der[0], c.len[0]);
    padded[c.len[0]] = 0;
    enr_dps_der extra[1] = {{padded, c.len[0] + 1, .encoded = false}};
    a.chain = extra;
    a.chain_len = 1;
    assert_int_equal(enr_dps_write_assigned(&a, &text, &err), ENR_E_USAGE);
    free(padded);
    a = sample_assignment(&c);
    a.chain_len = ENR_DPS_CHAIN_MAX + 1;
    assert_int_equal(enr_dps_write_assigned(&a, &text, &err), ENR_E_USAGE);
    a = sample_assignment(&c);
    a.registration_id = "dev-001.";
    assert_int_equal(enr_dps_write_assigned(&a, &text, &err), ENR_E_USAGE);
    a = sample_assignment(&c);
    a.assigned_hub = "bad\xff";
    assert_int_equal(enr_dps_write_assigned(&a, &text, &err), ENR_E_USAGE);
    a = sample_assignment(&c);
    a.substatus = (enr_dps_substatus)42;
    assert_int_equal(enr_dps_write_assigned(&a, &text, &err), ENR_E_USAGE);
    assert_null(text);
    chain3_free(&c);
}

static void test_write_failed_and_error(void **state)
{
    (void)state;
    enr_dps_failure f = {
        .operation_id = "4.abc.0002",
        .registration_id = "dev-001",
        .created_at = T_2026_11_23_08_00,
        .updated_at = T_2026_11_23_08_00,
        .error = ENR_DPS_CSR_CN_MISMATCH,
        .message = "the CSR's CN is 'dev-002'; expected 'dev-001'",
    };
    char *text = NULL;
    enr_error err;
    assert_int_equal(enr_dps_write_failed(&f, &text, &err), ENR_OK);
    json_t *doc = load(text);
    assert_string_equal(str_at(doc, "status"), "failed");
    json_t *rs = json_object_get(doc, "registrationState");
    assert_string_equal(str_at(rs, "status"), "failed");
    assert_true(json_is_integer(json_object_get(rs, "errorCode")));
    assert_int_equal(json_integer_value(json_object_get(rs, "errorCode")), 400007);
    assert_string_equal(str_at(rs, "errorMessage"), f.message);
    assert_null(json_object_get(rs, "assignedHub"));
    assert_null(json_object_get(rs, "issuedCertificateChain"));
    json_decref(doc);
    free(text);

    f.disabled = true;
    f.error = ENR_DPS_ENROLLMENT_DISABLED;
    f.message = NULL;
    assert_int_equal(enr_dps_write_failed(&f, &text, &err), ENR_OK);
    doc = load(text);
    assert_string_equal(str_at(doc, "status"), "disabled");
    rs = json_object_get(doc, "registrationState");
    assert_string_equal(str_at(rs, "errorMessage"),
                        enr_dps_error_summary(ENR_DPS_ENROLLMENT_DISABLED));
    json_decref(doc);
    free(text);
    f.error = ENR_DPS_OK;
    assert_int_equal(enr_dps_write_failed(&f, &text, &err), ENR_E_USAGE);

    assert_int_equal(enr_dps_write_error(ENR_DPS_CERT_AUTH_FAILED, "Invalid certificate.\n\x1b[31m",
                                         "6f1c1a7e-0000-4000-8000-000000000001",
                                         T_2026_11_23_08_00, &text, &err),
                     ENR_OK);
    assert_string_equal(text, "{\"errorCode\":401002,"
                              "\"trackingId\":\"6f1c1a7e-0000-4000-8000-000000000001\","
                              "\"message\":\"Invalid certificate.??[31m\","
                              "\"timestampUtc\":\"2026-11-23T08:00:00.0000000Z\"}");
    free(text);
    assert_int_equal(enr_dps_write_error(ENR_DPS_THROTTLED, NULL, NULL, T_2026_11_23_08_00, &text,
                                         &err),
                     ENR_OK);
    doc = load(text);
    assert_null(json_object_get(doc, "trackingId"));
    assert_string_equal(str_at(doc, "message"), enr_dps_error_summary(ENR_DPS_THROTTLED));
    json_decref(doc);
    free(text);
    assert_int_equal(enr_dps_write_error(ENR_DPS_OK, NULL, NULL, 0, &text, &err), ENR_E_USAGE);
    assert_int_equal(enr_dps_write_error(ENR_DPS_ERROR_COUNT, NULL, NULL, 0, &text, &err),
                     ENR_E_USAGE);
    /* Long messages are cut, never rejected. */
    char long_message[3000];
    memset(long_message, 'm', sizeof long_message - 1);
    long_message[sizeof long_message - 1] = '\0';
    assert_int_equal(enr_dps_write_error(ENR_DPS_INTERNAL, long_message, NULL, 0, &text, &err),
                     ENR_OK);
    doc = load(text);
    assert_int_equal(strlen(str_at(doc, "message")), 1024);
    json_decref(doc);
    free(text);
}

/* ---- round trips: writer -> reader ----------------------------------------------- */

static enr_dps_register_response *read_ok(const char *text)
{
    enr_dps_register_response *r = NULL;
    enr_error err;
    if (enr_dps_register_response_parse(text, strlen(text), &r, &err) != ENR_OK)
        fail_msg("reader refused %s: %s", text, err.message);
    return r;
}

static void test_round_trip_assigned(void **state)
{
    (void)state;
    chain3 c;
    chain3_make(&c);
    enr_dps_assignment a = sample_assignment(&c);
    char *text = NULL;
    enr_error err;
    assert_int_equal(enr_dps_write_assigned(&a, &text, &err), ENR_OK);
    enr_dps_register_response *r = read_ok(text);
    assert_int_equal(enr_dps_response_status(r), ENR_DPS_STATUS_ASSIGNED);
    assert_string_equal(enr_dps_response_operation_id(r), "4.abc.0001");
    assert_true(enr_dps_response_has_registration_state(r));
    assert_int_equal(enr_dps_response_registration_status(r), ENR_DPS_STATUS_ASSIGNED);
    assert_string_equal(enr_dps_response_registration_id(r), "dev-001");
    assert_string_equal(enr_dps_response_assigned_hub(r), "mqtt.example.net");
    assert_string_equal(enr_dps_response_device_id(r), "dev-001");
    assert_string_equal(enr_dps_response_substatus(r), "initialAssignment");
    assert_string_equal(enr_dps_response_etag(r), "\"etag-1\"");
    assert_string_equal(enr_dps_response_payload(r), "{\"firmware\":\"1.2\"}");
    time_t t = 0;
    assert_int_equal(enr_dps_time_parse(enr_dps_response_created(r), &t, &err), ENR_OK);
    assert_int_equal(t, a.created_at);
    assert_int_equal(enr_dps_time_parse(enr_dps_response_last_updated(r), &t, &err), ENR_OK);
    assert_int_equal(t, a.updated_at);
    assert_int_equal(enr_dps_response_chain_len(r), 3);
    for (size_t i = 0; i < 3; i++) {
        size_t len = 0;
        const unsigned char *der = enr_dps_response_chain_der(r, i, &len);
        assert_int_equal(len, c.len[i]);
        assert_memory_equal(der, c.der[i], len);
    }
    size_t len = 0;
    assert_null(enr_dps_response_chain_der(r, 3, &len));
    const unsigned char *leaf = enr_dps_response_client_certificate(r, &len);
    assert_int_equal(len, c.len[0]);
    assert_memory_equal(leaf, c.der[0], len);
    assert_int_equal(enr_dps_response_trust_bundle_len(r), 1);
    const unsigned char *root = enr_dps_response_trust_bundle_der(r, 0, &len);
    assert_int_equal(len, c.len[2]);
    assert_memory_equal(root, c.der[2], len);
    assert_int_equal(enr_dps_response_error_code(r), 0);
    assert_null(enr_dps_response_error_message(r));
    assert_null(enr_dps_response_renewal_window(r));
    assert_null(enr_dps_response_renew_after(r));
    enr_dps_register_response_free(r);
    free(text);

    /* The renewal hint goes out with a certificate and reads back. */
    a.renewal_window = "P7D";
    a.renew_after = a.created_at + 23 * 86400;
    assert_int_equal(enr_dps_write_assigned(&a, &text, &err), ENR_OK);
    r = read_ok(text);
    assert_string_equal(enr_dps_response_renewal_window(r), "P7D");
    assert_int_equal(enr_dps_time_parse(enr_dps_response_renew_after(r), &t, &err), ENR_OK);
    assert_int_equal(t, a.renew_after);
    enr_dps_register_response_free(r);
    free(text);

    /* Classic: nothing issued, so no renewal hint either. */
    a = sample_assignment(NULL);
    a.renewal_window = "P7D";
    a.renew_after = a.created_at + 23 * 86400;
    assert_int_equal(enr_dps_write_assigned(&a, &text, &err), ENR_OK);
    assert_null(strstr(text, "renew"));
    r = read_ok(text);
    assert_int_equal(enr_dps_response_chain_len(r), 0);
    assert_null(enr_dps_response_client_certificate(r, &len));
    assert_int_equal(enr_dps_response_trust_bundle_len(r), 0);
    enr_dps_register_response_free(r);
    free(text);
    chain3_free(&c);
}

static void test_round_trip_other_bodies(void **state)
{
    (void)state;
    char *text = NULL;
    enr_error err;
    assert_int_equal(enr_dps_write_assigning("op-1", &text, &err), ENR_OK);
    enr_dps_register_response *r = read_ok(text);
    assert_int_equal(enr_dps_response_status(r), ENR_DPS_STATUS_ASSIGNING);
    assert_string_equal(enr_dps_response_operation_id(r), "op-1");
    assert_false(enr_dps_response_has_registration_state(r));
    enr_dps_register_response_free(r);
    free(text);

    assert_int_equal(enr_dps_write_operation_status_assigning("op-1", "dev-001", &text, &err),
                     ENR_OK);
    r = read_ok(text);
    assert_true(enr_dps_response_has_registration_state(r));
    assert_int_equal(enr_dps_response_registration_status(r), ENR_DPS_STATUS_ASSIGNING);
    assert_string_equal(enr_dps_response_registration_id(r), "dev-001");
    enr_dps_register_response_free(r);
    free(text);

    enr_dps_failure f = {.operation_id = "op-1", .registration_id = "dev-001",
                         .error = ENR_DPS_CSR_LINT_ERROR,
                         .message = "csr.signature.weak_hash: SHA1"};
    assert_int_equal(enr_dps_write_failed(&f, &text, &err), ENR_OK);
    r = read_ok(text);
    assert_int_equal(enr_dps_response_status(r), ENR_DPS_STATUS_FAILED);
    assert_int_equal(enr_dps_response_error_code(r), 400009);
    assert_string_equal(enr_dps_response_error_message(r), f.message);
    enr_dps_register_response_free(r);
    free(text);

    assert_int_equal(enr_dps_write_error(ENR_DPS_UNKNOWN_OPERATION, "no such operation", "t-1",
                                         T_2026_11_23_08_00, &text, &err),
                     ENR_OK);
    r = read_ok(text);
    assert_int_equal(enr_dps_response_status(r), ENR_DPS_STATUS_FAILED);
    assert_null(enr_dps_response_operation_id(r));
    assert_int_equal(enr_dps_response_error_code(r), 404003);
    assert_string_equal(enr_dps_response_error_message(r), "no such operation");
    assert_string_equal(enr_dps_response_tracking_id(r), "t-1");
    enr_dps_register_response_free(r);
    free(text);

    /* Some services name the top-level message errorMessage. */
    r = read_ok("{\"errorCode\":401002,\"errorMessage\":\"Invalid certificate.\"}");
    assert_string_equal(enr_dps_response_error_message(r), "Invalid certificate.");
    enr_dps_register_response_free(r);
}

static void test_response_bad_input(void **state)
{
    (void)state;
    static const struct {
        const char *body;
        const char *message_has;
    } CASES[] = {
        {"", "empty"},
        {"[]", "array"},
        {"{}", "neither operationId nor errorCode"},
        {"{\"operationId\":\"op\"}", "status is missing"},
        {"{\"operationId\":\"op\",\"status\":\"done\"}", "not a registration status"},
        {"{\"operationId\":7,\"status\":\"assigning\"}", "operationId must be a string"},
        {"{\"operationId\":\"../x\",\"status\":\"assigning\"}", "operationId is not"},
        {"{\"operationId\":\"\",\"status\":\"assigning\"}", "operationId is not"},
        {"{\"operationId\":\"op\",\"status\":\"assigned\",\"registrationState\":[]}",
         "registrationState must be an object"},
        {"{\"operationId\":\"op\",\"status\":\"assigned\",\"registrationState\":"
         "{\"assignedHub\":\"h\"}}",
         "assignedHub and deviceId must come together"},
        {"{\"operationId\":\"op\",\"status\":\"assigned\",\"registrationState\":"
         "{\"deviceId\":\"d\"}}",
         "assignedHub and deviceId must come together"},
        {"{\"operationId\":\"op\",\"status\":\"assigned\",\"registrationState\":"
         "{\"assignedHub\":\"\",\"deviceId\":\"d\"}}",
         "empty"},
        {"{\"operationId\":\"op\",\"status\":\"assigned\",\"registrationState\":"
         "{\"registrationId\":\"a/b\"}}",
         "registrationId"},
        {"{\"operationId\":\"op\",\"status\":\"assigned\",\"registrationState\":"
         "{\"issuedCertificateChain\":\"MIIB\"}}",
         "issuedCertificateChain must be an array"},
        {"{\"operationId\":\"op\",\"status\":\"assigned\",\"registrationState\":"
         "{\"issuedCertificateChain\":[]}}",
         "issuedCertificateChain must be an array"},
        {"{\"operationId\":\"op\",\"status\":\"assigned\",\"registrationState\":"
         "{\"issuedCertificateChain\":[1]}}",
         "issuedCertificateChain must be an array"},
        {"{\"operationId\":\"op\",\"status\":\"assigned\",\"registrationState\":"
         "{\"issuedCertificateChain\":[\"MII B\"]}}",
         "not plain base64"},
        {"{\"operationId\":\"op\",\"status\":\"assigned\",\"registrationState\":"
         "{\"issuedCertificateChain\":[\"AAAA\"]}}",
         "issuedCertificateChain element"},
        {"{\"operationId\":\"op\",\"status\":\"assigned\",\"registrationState\":"
         "{\"issuedClientCertificate\":{}}}",
         "issuedClientCertificate must be a base64 string"},
        {"{\"operationId\":\"op\",\"status\":\"assigned\",\"registrationState\":"
         "{\"trustBundle\":[]}}",
         "trustBundle must be"},
        {"{\"operationId\":\"op\",\"status\":\"assigned\",\"registrationState\":"
         "{\"trustBundle\":{\"certificates\":[{\"certificate\":1}]}}}",
         "trustBundle.certificates[] must be"},
        {"{\"operationId\":\"op\",\"status\":\"assigned\",\"registrationState\":"
         "{\"trustBundle\":{\"certificates\":[{\"certificate\":\"MIIB\"}]}}}",
         "trustBundle certificate"},
        {"{\"operationId\":\"op\",\"status\":\"failed\",\"registrationState\":"
         "{\"errorCode\":\"400001\"}}",
         "errorCode must be an integer"},
        {"{\"errorCode\":-1}", "errorCode must be an integer"},
        {"{\"errorCode\":400001,\"message\":5}", "message must be a string"},
        {"{\"errorCode\":400001,\"timestampUtc\":\"yesterday\"}",
         "timestampUtc is not a timestamp"},
        {"{\"operationId\":\"op\",\"status\":\"assigned\",\"registrationState\":"
         "{\"createdDateTimeUtc\":\"2026-02-30T00:00:00Z\"}}",
         "createdDateTimeUtc is not a timestamp"},
        {"{\"operationId\":\"op\",\"status\":\"assigning\"} {}", "unexpected data after"},
    };
    for (size_t i = 0; i < sizeof CASES / sizeof CASES[0]; i++) {
        enr_dps_register_response *r = NULL;
        enr_error err;
        enr_error_clear(&err);
        if (enr_dps_register_response_parse(CASES[i].body, strlen(CASES[i].body), &r, &err) ==
            ENR_OK)
            fail_msg("accepted %s", CASES[i].body);
        assert_null(r);
        if (strstr(err.message, CASES[i].message_has) == NULL)
            fail_msg("%s: message '%s' does not say '%s'", CASES[i].body, err.message,
                     CASES[i].message_has);
        assert_true(printable(err.message));
    }
    /* Bigger than the answer limit. */
    size_t big = ENR_DPS_RESPONSE_BODY_MAX + 1;
    char *body = malloc(big);
    assert_non_null(body);
    memset(body, ' ', big);
    body[0] = '{';
    body[big - 1] = '}';
    enr_dps_register_response *r = NULL;
    enr_error err;
    assert_int_equal(enr_dps_register_response_parse(body, big, &r, &err), ENR_E_PARSE);
    assert_non_null(strstr(err.message, "limit"));
    free(body);
}

/* ---- time and tracking ids ------------------------------------------------------ */

static void test_times(void **state)
{
    (void)state;
    char text[ENR_DPS_TIME_SIZE];
    enr_error err;
    assert_int_equal(enr_dps_time_format(T_2026_11_23_08_00, text, &err), ENR_OK);
    assert_string_equal(text, "2026-11-23T08:00:00.0000000Z");
    assert_int_equal(enr_dps_time_format(0, text, &err), ENR_OK);
    assert_string_equal(text, "1970-01-01T00:00:00.0000000Z");
    assert_int_equal(enr_dps_time_format((time_t)253402300800LL, text, &err), ENR_E_USAGE);
    assert_int_equal(enr_dps_time_format((time_t)-62135596800LL, text, &err), ENR_OK);
    assert_string_equal(text, "0001-01-01T00:00:00.0000000Z");
    assert_int_equal(enr_dps_time_format((time_t)253402300799LL, text, &err), ENR_OK);
    assert_string_equal(text, "9999-12-31T23:59:59.0000000Z");
    /* Beside strftime, and back through the parser, across the range. */
    for (long long t = -62135596800LL; t < 253402300800LL; t += 7919LL * 86400 + 3671) {
        time_t tt = (time_t)t;
        struct tm tm;
        char want[ENR_DPS_TIME_SIZE + 8];
        assert_non_null(gmtime_r(&tt, &tm));
        size_t n = strftime(want, sizeof want, "%Y-%m-%dT%H:%M:%S", &tm);
        assert_true(n > 0);
        snprintf(want + n, sizeof want - n, ".0000000Z");
        if (tm.tm_year + 1900 < 1000) /* glibc's %Y does not pad */
            continue;
        assert_int_equal(enr_dps_time_format(tt, text, &err), ENR_OK);
        assert_string_equal(text, want);
        time_t back = 0;
        assert_int_equal(enr_dps_time_parse(text, &back, &err), ENR_OK);
        assert_int_equal((long long)back, t);
    }
    static const struct {
        const char *text;
        long long want; /* -1: refused */
    } CASES[] = {
        {"2026-11-23T08:00:00.0000000Z", 1795420800LL},
        {"2026-11-23T08:00:00Z", 1795420800LL},
        {"2026-11-23T08:00:00.5Z", 1795420800LL},
        {"2024-02-29T23:59:59.123456789Z", 1709251199LL},
        {"1970-01-01T00:00:00Z", 0},
        {"2023-02-29T00:00:00Z", -1},
        {"2026-11-23T24:00:00Z", -1},
        {"2026-11-23T08:00:00", -1},
        {"2026-11-23T08:00:00.Z", -1},
        {"2026-11-23T08:00:00.1234567890Z", -1},
        {"2026-11-23 08:00:00Z", -1},
        {"2026-13-01T00:00:00Z", -1},
        {"2026-11-23T08:00:00ZZ", -1},
        {"+026-11-23T08:00:00Z", -1},
        {"", -1},
    };
    for (size_t i = 0; i < sizeof CASES / sizeof CASES[0]; i++) {
        time_t t = 0;
        enr_code rc = enr_dps_time_parse(CASES[i].text, &t, &err);
        if (CASES[i].want < 0) {
            if (rc == ENR_OK)
                fail_msg("accepted %s", CASES[i].text);
            continue;
        }
        if (rc != ENR_OK)
            fail_msg("refused %s: %s", CASES[i].text, err.message);
        assert_int_equal((long long)t, CASES[i].want);
    }
}

static void test_tracking_id(void **state)
{
    (void)state;
    char a[ENR_DPS_TRACKING_ID_SIZE], b[ENR_DPS_TRACKING_ID_SIZE];
    enr_error err;
    assert_int_equal(enr_dps_tracking_id_new(a, &err), ENR_OK);
    assert_int_equal(enr_dps_tracking_id_new(b, &err), ENR_OK);
    assert_int_equal(strlen(a), 36);
    assert_string_not_equal(a, b);
    assert_int_equal(a[8], '-');
    assert_int_equal(a[14], '4');
    assert_non_null(strchr("89ab", a[19]));
    for (size_t i = 0; i < 36; i++) {
        bool dash = i == 8 || i == 13 || i == 18 || i == 23;
        if (dash ? a[i] != '-' : strchr("0123456789abcdef", a[i]) == NULL || a[i] == '\0')
            fail_msg("tracking id %s: character %zu", a, i);
    }
}

/* Operation ids carry when they started (for a node that did not start
 * one); any other id is not ours and says nothing. */
static void test_operation_ids(void **state)
{
    (void)state;
    enr_error err;
    char a[ENR_DPS_OPERATION_ID_SIZE], b[ENR_DPS_OPERATION_ID_SIZE];
    assert_int_equal(enr_dps_operation_id_new(1764892800, a, &err), ENR_OK);
    assert_int_equal(enr_dps_operation_id_new(1764892800, b, &err), ENR_OK);
    assert_string_not_equal(a, b);
    assert_true(strlen(a) <= ENR_DPS_OPERATION_ID_MAX && strspn(a, "0123456789abcdef.-") == strlen(a));
    time_t t = 0;
    assert_true(enr_dps_operation_id_started(a, &t));
    assert_int_equal(t, 1764892800);
    static const char *const NOT_OURS[] = {
        "", ".", "no-such-op", "1.not-one-of-ours", "g92a1b00.9f0c8a2e-3d1b-4c5a-8e7f-0a1b2c3d4e5f",
        "692a1b00", "692a1b00.", "692a1b00.9f0c8a2e-3d1b-4c5a-8e7f-0a1b2c3d4e5", /* one short */
        "1000000000000000.9f0c8a2e-3d1b-4c5a-8e7f-0a1b2c3d4e5f",                  /* 16 digits */
        "692A1B00.9f0c8a2e-3d1b-4c5a-8e7f-0a1b2c3d4e5f", NULL};
    for (size_t i = 0; NOT_OURS[i] != NULL; i++)
        if (enr_dps_operation_id_started(NOT_OURS[i], &t))
            fail_msg("'%s' was taken for an operation id of ours", NOT_OURS[i]);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_error_table),
        cmocka_unit_test(test_docs_list_every_code),
        cmocka_unit_test(test_api_versions),
        cmocka_unit_test(test_registration_ids),
        cmocka_unit_test(test_paths),
        cmocka_unit_test(test_request_bad_input_table),
        cmocka_unit_test(test_request_good),
        cmocka_unit_test(test_request_csr_fields),
        cmocka_unit_test(test_write_assigning),
        cmocka_unit_test(test_write_assigned_shape),
        cmocka_unit_test(test_write_assigned_classic),
        cmocka_unit_test(test_write_assigned_refusals),
        cmocka_unit_test(test_write_assigned_direct_is_jansson),
        cmocka_unit_test(test_complete_assigned_refusals),
        cmocka_unit_test(test_write_failed_and_error),
        cmocka_unit_test(test_round_trip_assigned),
        cmocka_unit_test(test_round_trip_other_bodies),
        cmocka_unit_test(test_response_bad_input),
        cmocka_unit_test(test_times),
        cmocka_unit_test(test_tracking_id),
        cmocka_unit_test(test_operation_ids),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
