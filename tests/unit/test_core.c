/* error, fileio, input (PEM/DER/base64 detection), name (subject syntax). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <openssl/x509.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "enroll/fileio.h"
#include "enroll/input.h"
#include "enroll/name.h"

static char tmpdir[] = "/tmp/enroll-test-core-XXXXXX";

static int setup(void **state)
{
    (void)state;
    return mkdtemp(tmpdir) ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", tmpdir);
    return system(cmd) == 0 ? 0 : -1;
}

static void test_atomic_write_mode_and_no_overwrite(void **state)
{
    (void)state;
    char path[256];
    snprintf(path, sizeof path, "%s/secret.pem", tmpdir);
    enr_error err;
    umask(0);
    assert_int_equal(enr_file_write_atomic(path, "abc", 3, 0600, false, &err), ENR_OK);
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
    assert_int_equal(st.st_size, 3);

    assert_int_equal(enr_file_write_atomic(path, "xyz!", 4, 0600, false, &err), ENR_E_EXISTS);
    assert_non_null(strstr(err.message, "--force"));
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_size, 3); /* untouched */

    assert_int_equal(enr_file_write_atomic(path, "xyz!", 4, 0600, true, &err), ENR_OK);
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_size, 4);
    umask(022);

    /* No temporary files are left behind. */
    char cmd[300];
    snprintf(cmd, sizeof cmd, "ls %s | grep -c tmp- >/dev/null", tmpdir);
    assert_int_not_equal(system(cmd), 0);
}

static void test_read_limit(void **state)
{
    (void)state;
    char path[256];
    snprintf(path, sizeof path, "%s/big", tmpdir);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    for (int i = 0; i < 5000; i++)
        fputc('A', f);
    fclose(f);
    enr_buf buf;
    enr_error err;
    assert_int_equal(enr_file_read(path, 4096, &buf, &err), ENR_E_PARSE);
    assert_non_null(strstr(err.message, "4096"));
    assert_int_equal(enr_file_read(path, 5000, &buf, &err), ENR_OK);
    assert_int_equal(buf.len, 5000);
    assert_int_equal(buf.data[5000], '\0');
    enr_buf_free(&buf);
    assert_int_equal(enr_file_read("/nonexistent/x", 10, &buf, &err), ENR_E_NOTFOUND);
    assert_int_equal(enr_file_read(tmpdir, 10, &buf, &err), ENR_E_IO);
}

static void test_secret_file_first_line(void **state)
{
    (void)state;
    char path[256];
    snprintf(path, sizeof path, "%s/pin", tmpdir);
    FILE *f = fopen(path, "w");
    fputs("87654321\r\nignored\n", f);
    fclose(f);
    char *pin = NULL;
    enr_error err;
    assert_int_equal(enr_secret_read_file(path, &pin, &err), ENR_OK);
    assert_string_equal(pin, "87654321");
    enr_secret_free(pin);
    f = fopen(path, "w");
    fclose(f);
    assert_int_equal(enr_secret_read_file(path, &pin, &err), ENR_E_USAGE);
}

/* A tiny valid DER object: SEQUENCE { INTEGER 5 }. */
static const unsigned char SEQ[] = {0x30, 0x03, 0x02, 0x01, 0x05};

static void test_decode_forms(void **state)
{
    (void)state;
    enr_decoded d;
    enr_error err;
    size_t off;
    assert_int_equal(enr_decode(SEQ, sizeof SEQ, &d, &off, &err), ENR_OK);
    assert_int_equal(d.encoding, ENR_ENCODING_DER);
    assert_int_equal(d.der_len, 5);
    assert_int_equal(d.trailing_len, 0);
    enr_decoded_free(&d);

    const char *b64 = "  MAMCAQU=\n";
    assert_int_equal(enr_decode((const unsigned char *)b64, strlen(b64), &d, &off, &err), ENR_OK);
    assert_int_equal(d.encoding, ENR_ENCODING_BASE64);
    assert_memory_equal(d.der, SEQ, 5);
    enr_decoded_free(&d);

    const char *pem = "junk before\n-----BEGIN THING-----\nMAMC\nAQU=\n-----END THING-----\n\n";
    assert_int_equal(enr_decode((const unsigned char *)pem, strlen(pem), &d, &off, &err), ENR_OK);
    assert_int_equal(d.encoding, ENR_ENCODING_PEM);
    assert_string_equal(d.pem_label, "THING");
    assert_memory_equal(d.der, SEQ, 5);
    assert_int_equal(d.trailing_len, 0);
    enr_decoded_free(&d);

    const char *trail = "-----BEGIN THING-----\nMAMCAQU=\n-----END THING-----\nextra\n";
    assert_int_equal(enr_decode((const unsigned char *)trail, strlen(trail), &d, &off, &err), ENR_OK);
    assert_int_equal(d.trailing_offset, strlen(trail) - 6);
    assert_int_equal(d.trailing_len, 6);
    enr_decoded_free(&d);

    unsigned char der_trailing[] = {0x30, 0x03, 0x02, 0x01, 0x05, 0x00, 0x00};
    assert_int_equal(enr_decode(der_trailing, sizeof der_trailing, &d, &off, &err), ENR_OK);
    assert_int_equal(d.der_len, 5);
    assert_int_equal(d.trailing_offset, 5);
    assert_int_equal(d.trailing_len, 2);
    assert_int_equal(d.trailing_in_der, 1);
    enr_decoded_free(&d);
}

static void test_decode_bad_inputs(void **state)
{
    (void)state;
    static const struct {
        const char *name;
        const char *data;
        size_t len; /* 0: strlen */
        size_t offset;
        const char *needle;
    } CASES[] = {
        {"empty", "", 0, 0, "empty"},
        {"whitespace", " \n\t ", 0, 0, "empty"},
        {"bad base64 char", "MAMC$QU=", 0, 4, "alphabet"},
        {"base64 not multiple of 4", "MAMCAQ", 0, 6, "multiple of 4"},
        {"data after padding", "MA==MAMC", 0, 4, "after '='"},
        {"truncated PEM", "-----BEGIN X-----\nMAMCAQU=\n", 0, 27, "END"},
        {"mismatched END", "-----BEGIN X-----\nMAMCAQU=\n-----END Y-----\n", 0, 27, "match"},
        {"PEM headers", "-----BEGIN X-----\nProc-Type: 4,ENCRYPTED\nMAMCAQU=\n-----END X-----\n", 0, 27,
         "headers"},
        {"DER truncated", "\x30\x05\x02\x01\x05", 5, 0, "past the end"},
        {"DER huge length", "\x30\x84\x7f\xff\xff\xff\x00", 7, 0, "DER error"},
        {"DER inner break", "\x30\x03\x02\x05\x05", 5, 2, "DER error"},
        {"DER indefinite", "\x30\x80\x02\x01\x05\x00\x00", 7, 0, "DER error"},
        {"binary garbage", "\x01\x02\x03\xff", 4, 0, "not PEM"},
    };
    for (size_t i = 0; i < sizeof CASES / sizeof CASES[0]; i++) {
        enr_decoded d;
        enr_error err;
        size_t off = 999;
        size_t len = CASES[i].len ? CASES[i].len : strlen(CASES[i].data);
        enr_code rc = enr_decode((const unsigned char *)CASES[i].data, len, &d, &off, &err);
        if (rc != ENR_E_PARSE || off != CASES[i].offset || strstr(err.message, CASES[i].needle) == NULL)
            fail_msg("case '%s': rc=%d offset=%zu message=%s", CASES[i].name, rc, off, err.message);
    }
}

static void test_pem_base64_encode_roundtrip(void **state)
{
    (void)state;
    unsigned char big[200];
    for (size_t i = 0; i < sizeof big; i++)
        big[i] = (unsigned char)i;
    /* SEQUENCE { OCTET STRING (194 bytes) } */
    big[0] = 0x30;
    big[1] = 0x81;
    big[2] = 197;
    big[3] = 0x04;
    big[4] = 0x81;
    big[5] = 194;
    char *pem = NULL;
    enr_error err;
    assert_int_equal(enr_pem_encode("CERTIFICATE REQUEST", big, sizeof big, &pem, &err), ENR_OK);
    assert_non_null(strstr(pem, "-----BEGIN CERTIFICATE REQUEST-----\n"));
    /* 64-character lines as RFC 7468 asks. */
    assert_int_equal(strchr(pem + 36, '\n') - (pem + 36), 64);
    enr_decoded d;
    size_t off;
    assert_int_equal(enr_decode((unsigned char *)pem, strlen(pem), &d, &off, &err), ENR_OK);
    assert_int_equal(d.der_len, sizeof big);
    assert_memory_equal(d.der, big, sizeof big);
    enr_decoded_free(&d);
    free(pem);
}

static void test_name_parse_types_and_escapes(void **state)
{
    (void)state;
    X509_NAME *name = NULL;
    enr_error err;
    assert_int_equal(enr_name_parse("/C=US/ST=California/O=Acme, Inc./CN=dev-001/serialNumber=AB 12"
                                    "/emailAddress=ops@acme.example/UID=u1",
                                    &name, &err),
                     ENR_OK);
    assert_int_equal(X509_NAME_entry_count(name), 7);
    static const int TYPES[] = {V_ASN1_PRINTABLESTRING, V_ASN1_UTF8STRING, V_ASN1_UTF8STRING,
                                V_ASN1_UTF8STRING,      V_ASN1_PRINTABLESTRING, V_ASN1_IA5STRING,
                                V_ASN1_UTF8STRING};
    for (int i = 0; i < 7; i++)
        assert_int_equal(ASN1_STRING_type(X509_NAME_ENTRY_get_data(X509_NAME_get_entry(name, i))), TYPES[i]);
    char *s = enr_name_format(name);
    assert_string_equal(s, "C=US, ST=California, O=Acme\\, Inc., CN=dev-001, serialNumber=AB 12, "
                           "emailAddress=ops@acme.example, UID=u1");
    free(s);
    char *cn = enr_name_common_name(name);
    assert_string_equal(cn, "dev-001");
    free(cn);
    X509_NAME_free(name);

    assert_int_equal(enr_name_parse("/CN=a\\/b\\+c+UID=x/O=o", &name, &err), ENR_OK);
    assert_int_equal(X509_NAME_entry_count(name), 3);
    /* CN and UID share one RDN (set 0), O is the next. */
    assert_int_equal(X509_NAME_ENTRY_set(X509_NAME_get_entry(name, 0)), 0);
    assert_int_equal(X509_NAME_ENTRY_set(X509_NAME_get_entry(name, 1)), 0);
    assert_int_equal(X509_NAME_ENTRY_set(X509_NAME_get_entry(name, 2)), 1);
    cn = enr_name_common_name(name);
    assert_string_equal(cn, "a/b+c");
    free(cn);
    X509_NAME_free(name);
}

static void test_name_parse_bad(void **state)
{
    (void)state;
    static const struct {
        const char *text;
        const char *needle;
    } CASES[] = {
        {"CN=x", "start with '/'"},
        {"/", "empty"},
        {"/CN", "no '=value'"},
        {"/CN=", "empty value"},
        {"/XX=1", "unknown subject field"},
        {"/C=USA", "ISO 3166"},
        {"/C=EN", "ISO 3166"},
        {"/C=us", "ISO 3166"},
        {"/serialNumber=a@b", "PrintableString"},
        {"/emailAddress=\xc3\xa9@x", "ASCII"},
        {"/CN=\xff\xfe", "UTF-8"},
        {"/CN=x\\", "escapes nothing"},
        {"/CN=x+", "joins nothing"},
        {"/CN=0123456789012345678901234567890123456789012345678901234567890123456789", "at most 64"},
    };
    for (size_t i = 0; i < sizeof CASES / sizeof CASES[0]; i++) {
        X509_NAME *name = NULL;
        enr_error err;
        enr_code rc = enr_name_parse(CASES[i].text, &name, &err);
        if (rc != ENR_E_USAGE || name != NULL || strstr(err.message, CASES[i].needle) == NULL)
            fail_msg("subject '%s': rc=%d message=%s", CASES[i].text, rc, err.message);
    }
}

static void test_rules(void **state)
{
    (void)state;
    assert_true(enr_country_code_valid("US"));
    assert_true(enr_country_code_valid("GB"));
    assert_false(enr_country_code_valid("UK"));
    assert_false(enr_country_code_valid("EN"));
    assert_false(enr_country_code_valid("U"));
    assert_int_equal(enr_utf8_chars((const unsigned char *)"\xc3\xa9t\xc3\xa9", 5), 3);
    assert_int_equal(enr_utf8_chars((const unsigned char *)"\xc0\xaf", 2), -1); /* overlong */
    assert_int_equal(enr_utf8_chars((const unsigned char *)"\xed\xa0\x80", 3), -1); /* surrogate */
    assert_int_equal(enr_utf8_chars((const unsigned char *)"\xe2\x82", 2), -1); /* truncated */
    assert_true(enr_printable_string_valid((const unsigned char *)"Ab 1'()+,-./:=?", 15));
    assert_false(enr_printable_string_valid((const unsigned char *)"a*b", 3));
    assert_false(enr_printable_string_valid((const unsigned char *)"a@b", 3));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_atomic_write_mode_and_no_overwrite),
        cmocka_unit_test(test_read_limit),
        cmocka_unit_test(test_secret_file_first_line),
        cmocka_unit_test(test_decode_forms),
        cmocka_unit_test(test_decode_bad_inputs),
        cmocka_unit_test(test_pem_base64_encode_roundtrip),
        cmocka_unit_test(test_name_parse_types_and_escapes),
        cmocka_unit_test(test_name_parse_bad),
        cmocka_unit_test(test_rules),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
