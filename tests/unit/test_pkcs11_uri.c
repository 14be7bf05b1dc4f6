/* RFC 7512 URI parsing: what good URIs decode to, and that every kind of
 * bad input is refused with a message rather than accepted or crashing. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "enroll/pkcs11_uri.h"

static enr_pkcs11_uri *parse_ok(const char *text)
{
    enr_pkcs11_uri *uri = NULL;
    enr_error err = {0};
    enr_code rc = enr_pkcs11_uri_parse(text, &uri, &err);
    if (rc != ENR_OK)
        print_error("unexpected failure for %s: %s\n", text, err.message);
    assert_int_equal(rc, ENR_OK);
    assert_non_null(uri);
    return uri;
}

static void test_full_uri(void **state)
{
    (void)state;
    enr_pkcs11_uri *uri = parse_ok(
        "pkcs11:token=enroll-test;manufacturer=SoftHSM%20project;serial=a1b2;model=SoftHSM%20v2;"
        "object=dev%20key;id=%01%02%ff;type=private;slot-id=42"
        "?module-path=/usr/lib/softhsm/libsofthsm2.so&pin-source=file:/run/pin");
    assert_string_equal(enr_pkcs11_uri_token(uri), "enroll-test");
    assert_string_equal(enr_pkcs11_uri_manufacturer(uri), "SoftHSM project");
    assert_string_equal(enr_pkcs11_uri_serial(uri), "a1b2");
    assert_string_equal(enr_pkcs11_uri_model(uri), "SoftHSM v2");
    assert_string_equal(enr_pkcs11_uri_object(uri), "dev key");
    assert_string_equal(enr_pkcs11_uri_type(uri), "private");
    assert_int_equal(enr_pkcs11_uri_slot_id(uri), 42);
    assert_string_equal(enr_pkcs11_uri_module_path(uri), "/usr/lib/softhsm/libsofthsm2.so");
    assert_string_equal(enr_pkcs11_uri_pin_source(uri), "file:/run/pin");
    size_t id_len = 0;
    const unsigned char *id = enr_pkcs11_uri_id(uri, &id_len);
    static const unsigned char want_id[] = {0x01, 0x02, 0xff};
    assert_int_equal(id_len, sizeof want_id);
    assert_memory_equal(id, want_id, sizeof want_id);
    enr_pkcs11_uri_free(uri);
}

static void test_absent_attributes(void **state)
{
    (void)state;
    enr_pkcs11_uri *uri = parse_ok("pkcs11:object=devkey");
    assert_string_equal(enr_pkcs11_uri_object(uri), "devkey");
    assert_null(enr_pkcs11_uri_token(uri));
    assert_null(enr_pkcs11_uri_manufacturer(uri));
    assert_null(enr_pkcs11_uri_serial(uri));
    assert_null(enr_pkcs11_uri_model(uri));
    assert_null(enr_pkcs11_uri_type(uri));
    assert_null(enr_pkcs11_uri_module_path(uri));
    assert_null(enr_pkcs11_uri_pin_source(uri));
    size_t id_len = 99;
    assert_null(enr_pkcs11_uri_id(uri, &id_len));
    assert_int_equal(id_len, 0);
    assert_int_equal(enr_pkcs11_uri_slot_id(uri), -1);
    enr_pkcs11_uri_free(uri);
}

static void test_binary_id_with_nul(void **state)
{
    (void)state;
    enr_pkcs11_uri *uri = parse_ok("pkcs11:id=%00%41%00");
    size_t id_len = 0;
    const unsigned char *id = enr_pkcs11_uri_id(uri, &id_len);
    static const unsigned char want_id[] = {0x00, 0x41, 0x00};
    assert_int_equal(id_len, 3);
    assert_memory_equal(id, want_id, 3);
    enr_pkcs11_uri_free(uri);
}

static void test_minimal_and_edge_forms(void **state)
{
    (void)state;
    /* RFC 7512: an empty path is valid and matches everything. */
    enr_pkcs11_uri_free(parse_ok("pkcs11:"));
    enr_pkcs11_uri_free(parse_ok("pkcs11:?module-path=/m.so"));
    /* The scheme is case-insensitive (RFC 3986 section 3.1). */
    enr_pkcs11_uri_free(parse_ok("PKCS11:token=t"));

    /* '=' and '&' are allowed inside path values; '/', '?' and '|' in query values. */
    enr_pkcs11_uri *uri = parse_ok("pkcs11:object=a=b&c;token=%3b?module-path=/x?y|z");
    assert_string_equal(enr_pkcs11_uri_object(uri), "a=b&c");
    assert_string_equal(enr_pkcs11_uri_token(uri), ";");
    assert_string_equal(enr_pkcs11_uri_module_path(uri), "/x?y|z");
    enr_pkcs11_uri_free(uri);

    /* Lower- and upper-case hex, UTF-8 decoded bytes, empty values. */
    uri = parse_ok("pkcs11:object=caf%C3%a9;token=");
    assert_string_equal(enr_pkcs11_uri_object(uri), "caf\xc3\xa9");
    assert_string_equal(enr_pkcs11_uri_token(uri), "");
    enr_pkcs11_uri_free(uri);

    /* Unknown query attributes are ignored (RFC 7512 section 2.4), and
     * so are the other known path attributes' effects on these getters. */
    uri = parse_ok("pkcs11:library-version=2.40;library-manufacturer=x;library-description=y;"
                   "slot-description=s;slot-manufacturer=m?x-vendor=1&module-name=softhsm2");
    assert_null(enr_pkcs11_uri_module_path(uri));
    enr_pkcs11_uri_free(uri);
}

static void test_null_input(void **state)
{
    (void)state;
    enr_pkcs11_uri *uri = (enr_pkcs11_uri *)1;
    enr_error err = {0};
    assert_int_equal(enr_pkcs11_uri_parse(NULL, &uri, &err), ENR_E_USAGE);
    assert_null(uri);
    assert_true(err.message[0] != '\0');
    enr_pkcs11_uri_free(NULL);
}

typedef struct bad_case {
    const char *what;
    const char *text;
    enr_code code;
    const char *mentions; /* a fragment the message must contain */
} bad_case;

static const bad_case BAD_CASES[] = {
    {"empty", "", ENR_E_USAGE, "empty"},
    {"missing scheme", "token=t;object=k", ENR_E_USAGE, "pkcs11:"},
    {"other scheme", "file:/etc/key.pem", ENR_E_USAGE, "pkcs11:"},
    {"scheme prefix only", "pkcs11", ENR_E_USAGE, "pkcs11:"},
    {"lone percent", "pkcs11:object=a%", ENR_E_USAGE, "offset 15"},
    {"bad hex escape", "pkcs11:object=%zz", ENR_E_USAGE, "percent-escape"},
    {"half bad hex escape", "pkcs11:object=%4g", ENR_E_USAGE, "percent-escape"},
    {"truncated escape", "pkcs11:object=%4", ENR_E_USAGE, "percent-escape"},
    {"truncated escape before ;", "pkcs11:object=%4;token=t", ENR_E_USAGE, "percent-escape"},
    {"bad escape in query", "pkcs11:?module-path=%g0", ENR_E_USAGE, "percent-escape"},
    {"bad escape in ignored query attr", "pkcs11:?x-foo=%", ENR_E_USAGE, "percent-escape"},
    {"duplicate attribute", "pkcs11:token=a;object=k;token=b", ENR_E_USAGE, "token appears twice"},
    {"duplicate id", "pkcs11:id=%01;id=%01", ENR_E_USAGE, "twice"},
    {"duplicate query attribute", "pkcs11:?module-path=/a&module-path=/b", ENR_E_USAGE, "twice"},
    {"unknown path attribute", "pkcs11:token=t;label=k", ENR_E_USAGE, "unknown path attribute 'label'"},
    {"vendor path attribute", "pkcs11:x-foo=1", ENR_E_USAGE, "unknown path attribute"},
    {"pin-value", "pkcs11:token=t?pin-value=1234", ENR_E_USAGE, "pin-source"},
    {"pin-value in path", "pkcs11:pin-value=1234", ENR_E_USAGE, "pin-source"},
    {"attribute without =", "pkcs11:token", ENR_E_USAGE, "no '='"},
    {"attribute without = after another", "pkcs11:token=t;object", ENR_E_USAGE, "no '='"},
    {"query attribute without =", "pkcs11:?module-path", ENR_E_USAGE, "no '='"},
    {"empty name", "pkcs11:=x", ENR_E_USAGE, "empty name"},
    {"doubled separator", "pkcs11:token=t;;object=k", ENR_E_USAGE, "empty attribute"},
    {"trailing separator", "pkcs11:token=t;", ENR_E_USAGE, "empty attribute"},
    {"leading separator", "pkcs11:;token=t", ENR_E_USAGE, "empty attribute"},
    {"doubled query separator", "pkcs11:?a=1&&b=2", ENR_E_USAGE, "empty attribute"},
    {"NUL in label", "pkcs11:object=dev%00key", ENR_E_USAGE, "NUL"},
    {"NUL in token", "pkcs11:token=%00", ENR_E_USAGE, "NUL"},
    {"NUL in module-path", "pkcs11:?module-path=/lib%00.so", ENR_E_USAGE, "NUL"},
    {"raw space", "pkcs11:token=my token", ENR_E_USAGE, "%20"},
    {"raw slash in path", "pkcs11:object=a/b", ENR_E_USAGE, "%2F"},
    {"raw control byte", "pkcs11:object=a\x01", ENR_E_USAGE, "0x01"},
    {"raw high byte", "pkcs11:object=caf\xc3\xa9", ENR_E_USAGE, "0xc3"},
    {"fragment", "pkcs11:object=a#frag", ENR_E_USAGE, "'#'"},
    {"bad char in name", "pkcs11:tok%65n=t", ENR_E_USAGE, "'%'"},
    {"slot-id not a number", "pkcs11:slot-id=abc", ENR_E_USAGE, "slot-id"},
    {"slot-id empty", "pkcs11:slot-id=", ENR_E_USAGE, "slot-id"},
    {"slot-id negative", "pkcs11:slot-id=-1", ENR_E_USAGE, "slot-id"},
    {"slot-id overflow", "pkcs11:slot-id=99999999999999999999999", ENR_E_USAGE, "too large"},
    {"unknown type", "pkcs11:type=banana", ENR_E_USAGE, "type"},
    {"bad library-version", "pkcs11:library-version=2.x", ENR_E_USAGE, "library-version"},
    {"library-version with trailing dot", "pkcs11:library-version=2.", ENR_E_USAGE,
     "library-version"},
};
#define BAD_CASE_COUNT (sizeof BAD_CASES / sizeof BAD_CASES[0])

static void expect_refused(const char *what, const char *text, enr_code code, const char *mentions)
{
    enr_pkcs11_uri *uri = (enr_pkcs11_uri *)1;
    enr_error err = {0};
    enr_code rc = enr_pkcs11_uri_parse(text, &uri, &err);
    if (rc != code || (mentions != NULL && strstr(err.message, mentions) == NULL))
        print_error("case '%s': got %s, message: %s\n", what, enr_code_name(rc), err.message);
    assert_int_equal(rc, code);
    assert_null(uri);
    assert_int_equal(err.code, code);
    assert_true(err.message[0] != '\0');
    if (mentions != NULL)
        assert_non_null(strstr(err.message, mentions));
}

static void test_bad_inputs(void **state)
{
    (void)state;
    for (size_t i = 0; i < BAD_CASE_COUNT; i++)
        expect_refused(BAD_CASES[i].what, BAD_CASES[i].text, BAD_CASES[i].code,
                       BAD_CASES[i].mentions);
}

static void test_pin_value_not_echoed(void **state)
{
    (void)state;
    enr_pkcs11_uri *uri = NULL;
    enr_error err = {0};
    assert_int_equal(enr_pkcs11_uri_parse("pkcs11:token=t?pin-value=s3cr3t-PIN", &uri, &err),
                     ENR_E_USAGE);
    assert_null(strstr(err.message, "s3cr3t"));
    assert_non_null(strstr(err.message, "ENROLL_PKCS11_PIN"));
    assert_non_null(strstr(err.message, "--pin-file"));
}

static char *uri_of_length(size_t len)
{
    char *text = malloc(len + 1);
    assert_non_null(text);
    memcpy(text, "pkcs11:object=", 14);
    memset(text + 14, 'a', len - 14);
    text[len] = '\0';
    return text;
}

static void test_length_limit(void **state)
{
    (void)state;
    char *at_limit = uri_of_length(4096);
    enr_pkcs11_uri_free(parse_ok(at_limit));
    free(at_limit);

    char *over = uri_of_length(4097);
    expect_refused("over-long URI", over, ENR_E_USAGE, "4096");
    free(over);

    /* Far over: the parser must not scan (or copy) the whole input. */
    char *huge = uri_of_length(1 << 20);
    expect_refused("huge URI", huge, ENR_E_USAGE, "4096");
    free(huge);
}

static void test_error_null_tolerated(void **state)
{
    (void)state;
    enr_pkcs11_uri *uri = NULL;
    assert_int_equal(enr_pkcs11_uri_parse("pkcs11:token=t;token=u", &uri, NULL), ENR_E_USAGE);
    assert_null(uri);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_full_uri),
        cmocka_unit_test(test_absent_attributes),
        cmocka_unit_test(test_binary_id_with_nul),
        cmocka_unit_test(test_minimal_and_edge_forms),
        cmocka_unit_test(test_null_input),
        cmocka_unit_test(test_bad_inputs),
        cmocka_unit_test(test_pin_value_not_echoed),
        cmocka_unit_test(test_length_limit),
        cmocka_unit_test(test_error_null_tolerated),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
