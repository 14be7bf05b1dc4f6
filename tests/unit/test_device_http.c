/* The device's HTTP layer: URL parsing and the strict response parser, with
 * a table of bad answers (each must be refused, and say why), good answers
 * (Content-Length, chunked, Retry-After; a body without framing is refused), and byte-at-a-time feeding
 * (a complete answer is recognised exactly at its last byte). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "enroll/http_client.h"

static enr_code parse(const char *text, bool eof, size_t max, enr_http_response *r, bool *complete,
                      enr_error *err)
{
    return enr_http_response_parse((const unsigned char *)text, strlen(text), eof, max, r, complete, err);
}

static void test_bad_answers(void **state)
{
    (void)state;
    static const struct {
        const char *text;
        const char *why; /* a word the message must contain */
    } bad[] = {
        {"HTTP/2 200 OK\r\n\r\n", "status line"},
        {"HTTP/1.1 200 OK\n\n", "bare LF"},
        {"HTTP/1.1 200 OK\r\nA: b\n\r\n", "bare LF"},
        {"HTTP/1.1 200 OK\r\nA: b\rX\r\n\r\n", "bare CR"},
        {"HTTP/1.1 2000 OK\r\n\r\n", "three digits"},
        {"HTTP/1.1 20x OK\r\n\r\n", "three digits"},
        {"HTTP/1.1 100 Continue\r\n\r\n", "outside"},
        {"HTTP/1.1 600 Nope\r\n\r\n", "outside"},
        {"HTTP/1.1  200 OK\r\n\r\n", "three digits"},
        {"http/1.1 200 OK\r\n\r\n", "status line"},
        {"<html>hello</html>", "status line"},
        {"HTTP/1.1 200 OK\r\nContent-Length : 2\r\n\r\nok", "token"},
        {"HTTP/1.1 200 OK\r\n folded: x\r\n\r\n", "folding"},
        {"HTTP/1.1 200 OK\r\nA: b\r\n c\r\n\r\n", "folding"},
        {"HTTP/1.1 200 OK\r\nA\x01: b\r\n\r\n", "token"},
        {"HTTP/1.1 200 OK\r\nA: b\x01c\r\n\r\n", "control"},
        {"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n", "decimal"},
        {"HTTP/1.1 200 OK\r\nContent-Length: 1x\r\n\r\n", "decimal"},
        {"HTTP/1.1 200 OK\r\nContent-Length: \r\n\r\n", "decimal"},
        {"HTTP/1.1 200 OK\r\nContent-Length: 2, 2\r\n\r\nok", "decimal"},
        {"HTTP/1.1 200 OK\r\nContent-Length: 99999999999999999999\r\n\r\n", "decimal"},
        {"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nok", "different"},
        {"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n",
         "ambiguous"},
        {"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", "Transfer-Encoding"},
        {"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n",
         "Transfer-Encoding"},
        {"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nz\r\n", "hexadecimal"},
        {"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n\r\n", "hexadecimal"},
        {"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2x\r\nok\r\n0\r\n\r\n", "junk"},
        {"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nokX\r\n0\r\n\r\n", "CRLF"},
        {"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nFFFFFFFFFFFFFFFFFFFF\r\n", "limit"},
        {"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n41\r\n", "limit"},
        {"HTTP/1.1 200 OK\r\nContent-Length: 65\r\n\r\n", "limit"},
        {"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokEXTRA", "after the end"},
        {"HTTP/1.1 204 No Content\r\n\r\nx", "after the end"},
        {"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\nX", "after the end"},
        /* Close-delimited: a forged FIN could have cut it short. */
        {"HTTP/1.0 200 OK\r\n\r\nto the end", "framing"},
        {"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n\r\n{\"status\":", "framing"},
        {"HTTP/1.1 401 Unauthorized\r\n\r\n", "framing"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        enr_http_response r = {0};
        bool complete = true;
        enr_error err = {0};
        enr_code rc = parse(bad[i].text, true, 64, &r, &complete, &err);
        if (rc != ENR_E_PARSE || strstr(err.message, bad[i].why) == NULL)
            fail_msg("case %zu (%s): rc %d, message '%s'", i, bad[i].text, rc, err.message);
        assert_false(complete);
        assert_null(r.body);
    }
}

static void test_truncated_answers(void **state)
{
    (void)state;
    static const char *const cut[] = {
        "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nok",
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n",
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n",
        "HTTP/1.1 200 OK\r\nA: b\r\n",
        "HTTP/1.1 200",
    };
    for (size_t i = 0; i < sizeof cut / sizeof cut[0]; i++) {
        enr_http_response r = {0};
        bool complete = true;
        enr_error err = {0};
        assert_int_equal(parse(cut[i], false, 64, &r, &complete, &err), ENR_OK);
        assert_false(complete);
        assert_int_equal(parse(cut[i], true, 64, &r, &complete, &err), ENR_E_PARSE);
        assert_non_null(strstr(err.message, "closed"));
    }
}

static void expect_good(const char *text, bool eof, int status, long retry, const char *body, const char *ctype)
{
    enr_http_response r = {0};
    bool complete = false;
    enr_error err = {0};
    if (parse(text, eof, 64, &r, &complete, &err) != ENR_OK || !complete)
        fail_msg("'%s' refused: %s", text, err.message);
    assert_int_equal(r.status, status);
    assert_int_equal(r.retry_after, retry);
    assert_int_equal(r.body_len, strlen(body));
    assert_string_equal((const char *)r.body, body);
    assert_string_equal(r.content_type, ctype);
    enr_http_response_free(&r);
}

static void test_good_answers(void **state)
{
    (void)state;
    expect_good("HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Type: application/json\r\n\r\n{}", false, 200, -1,
                "{}", "application/json");
    expect_good("HTTP/1.1 202 Accepted\r\nretry-after:  3 \r\ncontent-length:0\r\n\r\n", false, 202, 3, "", "");
    expect_good("HTTP/1.1 503 \r\nRetry-After: Wed, 21 Oct 2015 07:28:00 GMT\r\nContent-Length: 1\r\n\r\nx",
                false, 503, -1, "x", "");
    expect_good("HTTP/1.1 200 OK\r\nTransfer-Encoding: Chunked\r\n\r\n2;ext=1\r\nab\r\n3\r\ncde\r\n0\r\nT: v\r\n\r\n",
                false, 200, -1, "abcde", "");
    expect_good("HTTP/1.1 204 No Content\r\n\r\n", false, 204, -1, "", "");
    expect_good("HTTP/1.1 401 Unauthorized\r\nContent-Length: 2\r\nContent-Length: 2\r\n\r\nno", false, 401, -1,
                "no", "");
}

/* Fed a byte at a time, the parser never completes early and never refuses
 * a prefix of a good answer. */
static void test_byte_at_a_time(void **state)
{
    (void)state;
    const char *text = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nabcd\r\n0\r\n\r\n";
    size_t n = strlen(text);
    for (size_t i = 1; i <= n; i++) {
        enr_http_response r = {0};
        bool complete = false;
        enr_error err = {0};
        assert_int_equal(enr_http_response_parse((const unsigned char *)text, i, false, 64, &r, &complete, &err),
                         ENR_OK);
        assert_true(complete == (i == n));
        enr_http_response_free(&r);
    }
}

static void test_head_limit(void **state)
{
    (void)state;
    size_t n = ENR_HTTP_HEAD_MAX + 100;
    char *text = malloc(n + 1);
    assert_non_null(text);
    strcpy(text, "HTTP/1.1 200 OK\r\n");
    size_t used = strlen(text);
    while (used + 12 < n) {
        memcpy(text + used, "X-Pad: abc\r\n", 12);
        used += 12;
    }
    text[used] = '\0';
    enr_http_response r = {0};
    bool complete;
    enr_error err = {0};
    assert_int_equal(parse(text, false, 64, &r, &complete, &err), ENR_E_PARSE);
    assert_true(strstr(err.message, "too many") != NULL || strstr(err.message, "too large") != NULL);
    free(text);
}

static void test_urls(void **state)
{
    (void)state;
    enr_url u;
    enr_error err;
    assert_int_equal(enr_url_parse("https://127.0.0.1:8443", &u, &err), ENR_OK);
    assert_string_equal(u.host, "127.0.0.1");
    assert_int_equal(u.port, 8443);
    assert_true(u.host_is_ip);
    assert_int_equal(enr_url_parse("https://dps.example.com/base/", &u, &err), ENR_OK);
    assert_int_equal(u.port, 443);
    assert_false(u.host_is_ip);
    assert_string_equal(u.base_path, "/base");
    assert_int_equal(enr_url_parse("https://[::1]:9", &u, &err), ENR_OK);
    assert_string_equal(u.host, "::1");
    assert_true(u.host_is_ip);
    static const char *const bad[] = {"http://x", "https://", "https://u@h", "https://h:0", "https://h:65536",
                                      "https://h:x", "https://h/p?q", "https://h#f", "https://[::1", "https://[zz]",
                                      "ftp://h", "https://h h"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        if (enr_url_parse(bad[i], &u, &err) != ENR_E_USAGE)
            fail_msg("URL '%s' accepted", bad[i]);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bad_answers),   cmocka_unit_test(test_truncated_answers),
        cmocka_unit_test(test_good_answers),  cmocka_unit_test(test_byte_at_a_time),
        cmocka_unit_test(test_head_limit),    cmocka_unit_test(test_urls),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
