/* The pre-provisioning hook client (include/enroll/aws_hook.h): the answer
 * parser's bad-input table and its good answers, then whole calls against
 * an HTTPS server this test runs on 127.0.0.1 (a thread on OpenSSL, with a
 * throwaway CA and a server certificate for IP 127.0.0.1 made here). The
 * server records what it received, so the test judges the request as the
 * hook sees it: method, exact path, Content-Type, the documented fields.
 * Each way of not saying yes must end in its typed reason: denied (allow
 * false), failed (HTTP 500, a malformed answer, a certificate of another
 * CA, a refused connection), timeout (a server that never answers, and one
 * that trickles bytes), the latter within the deadline plus slack. */
#define _GNU_SOURCE /* asprintf, strcasestr */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <jansson.h>
#include <netinet/in.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "enroll/aws_hook.h"
#include "enroll/aws_template.h"
#include "enroll/store.h"

/* ---- the answer parser --------------------------------------------------- */

#define RAW(text) text, sizeof(text) - 1 /* with the NUL bytes inside */

static void test_answer_bad_input(void **state)
{
    (void)state;
    static const struct {
        const char *text;
        size_t len;       /* 0: strlen(text) */
        const char *why;  /* a word the message must hold */
    } bad[] = {
        {"", 0, "empty"},
        {"not json", 0, "not JSON"},
        {"{\"allowProvisioning\": true", 0, "not JSON"},
        {"{\"allowProvisioning\": true}x", 0, "not JSON"},
        {"true", 0, "a boolean, not a JSON object"},
        {"[{\"allowProvisioning\": true}]", 0, "an array, not a JSON object"},
        {"\"allowProvisioning\"", 0, "a string, not a JSON object"},
        {"null", 0, "null, not a JSON object"},
        {"{}", 0, "no allowProvisioning"},
        {"{\"allowprovisioning\": true}", 0, "no allowProvisioning"},
        {"{\"allowProvisioning\": \"true\"}", 0, "a string, not a boolean"},
        {"{\"allowProvisioning\": 1}", 0, "a number, not a boolean"},
        {"{\"allowProvisioning\": null}", 0, "null, not a boolean"},
        {"{\"allowProvisioning\": {}}", 0, "an object, not a boolean"},
        {"{\"allowProvisioning\": true, \"allowProvisioning\": false}", 0, "duplicate"},
        {"{\"allowProvisioning\": true, \"x\": {\"a\": 1, \"a\": 2}}", 0, "duplicate"},
        {"{\"allowProvisioning\": true, \"parameterOverrides\": []}", 0, "an array, not an object"},
        {"{\"allowProvisioning\": true, \"parameterOverrides\": \"a=b\"}", 0, "a string, not an object"},
        {"{\"allowProvisioning\": true, \"parameterOverrides\": {\"a\": 1}}", 0, "a number, not a string"},
        {"{\"allowProvisioning\": true, \"parameterOverrides\": {\"a\": null}}", 0, "null, not a string"},
        {"{\"allowProvisioning\": true, \"parameterOverrides\": {\"a\": true}}", 0, "a boolean, not a string"},
        {"{\"allowProvisioning\": true, \"parameterOverrides\": {\"a\": {}}}", 0, "an object, not a string"},
        {"{\"allowProvisioning\": true, \"parameterOverrides\": {\"\": \"v\"}}", 0, "a name of 0 bytes"},
        {"{\"allowProvisioning\": true, \"parameterOverrides\": {\"a\": \"x\", \"a\": \"y\"}}", 0, "duplicate"},
        /* NUL, escaped or raw, in a value or a key, read or ignored */
        {"{\"allowProvisioning\": true, \"parameterOverrides\": {\"a\": \"x\\u0000y\"}}", 0, "not JSON"},
        {"{\"allowProvisioning\": true, \"parameterOverrides\": {\"a\\u0000\": \"x\"}}", 0, "not JSON"},
        {"{\"allowProvisioning\": true, \"other\": \"\\u0000\"}", 0, "not JSON"},
        {RAW("{\"allowProvisioning\": true, \"other\": \"a\0b\"}"), "not JSON"},
        {RAW("{\"allowProvisioning\": true}\0"), "not JSON"},
        /* not UTF-8 */
        {"{\"allowProvisioning\": true, \"other\": \"\xff\"}", 0, "not JSON"},
        {"{\"allowProvisioning\": true, \"parameterOverrides\": {\"a\": \"\xc3\"}}", 0, "not JSON"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        size_t len = bad[i].len ? bad[i].len : strlen(bad[i].text);
        enr_aws_hook_answer a = {true, NULL};
        enr_error err = {0};
        enr_code rc = enr_aws_hook_answer_parse(bad[i].text, len, &a, &err);
        if (rc != ENR_E_PARSE || err.reason != ENR_R_NONE || strstr(err.message, bad[i].why) == NULL)
            fail_msg("case %zu (%s): rc %d, reason %d, message '%s'", i, bad[i].text, rc, err.reason, err.message);
        assert_false(a.allow);
        assert_null(a.parameter_overrides);
    }
}

/* A JSON object of n overrides, names of name_len bytes and values of
 * value_len bytes. */
static char *overrides_doc(size_t n, size_t name_len, size_t value_len)
{
    json_t *o = json_object();
    char *name = malloc(name_len + 16), *value = malloc(value_len + 1);
    assert_non_null(name);
    assert_non_null(value);
    memset(value, 'v', value_len);
    value[value_len] = '\0';
    for (size_t i = 0; i < n; i++) {
        memset(name, 'n', name_len);
        snprintf(name + name_len - (name_len < 4 ? name_len : 4), 16, "%04zu", i % 10000);
        name[name_len] = '\0';
        assert_int_equal(json_object_set_new(o, name, json_string(value)), 0);
    }
    json_t *doc = json_pack("{s:b, s:o}", "allowProvisioning", 1, "parameterOverrides", o);
    char *text = json_dumps(doc, JSON_COMPACT);
    json_decref(doc);
    free(name);
    free(value);
    assert_non_null(text);
    return text;
}

static enr_code parse_text(const char *text, enr_aws_hook_answer *a, enr_error *err)
{
    return enr_aws_hook_answer_parse(text, strlen(text), a, err);
}

static void test_answer_bounds(void **state)
{
    (void)state;
    static const struct {
        size_t n, name_len, value_len;
        bool ok;
        const char *why;
    } cases[] = {
        {ENR_AWS_PARAMETERS_MAX, 8, 8, true, NULL},
        {ENR_AWS_PARAMETERS_MAX + 1, 8, 8, false, "over the 64 allowed"},
        {1, ENR_AWS_NAME_MAX, 8, true, NULL},
        {1, ENR_AWS_NAME_MAX + 1, 8, false, "a name of 129 bytes"},
        {1, 8, ENR_AWS_STRING_MAX, true, NULL},
        {1, 8, ENR_AWS_STRING_MAX + 1, false, "over the 4096 allowed"},
        {1, 8, 0, true, NULL},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char *text = overrides_doc(cases[i].n, cases[i].name_len, cases[i].value_len);
        enr_aws_hook_answer a = {0};
        enr_error err = {0};
        enr_code rc = parse_text(text, &a, &err);
        if (cases[i].ok) {
            if (rc != ENR_OK)
                fail_msg("case %zu refused: %s", i, err.message);
            assert_true(a.allow);
            assert_int_equal(json_object_size(a.parameter_overrides), cases[i].n);
        } else if (rc != ENR_E_PARSE || strstr(err.message, cases[i].why) == NULL) {
            fail_msg("case %zu: rc %d, message '%s'", i, rc, err.message);
        }
        enr_aws_hook_answer_clear(&a);
        free(text);
    }
    /* The body: 64 KiB at most, whatever it holds. */
    size_t big = ENR_AWS_HOOK_ANSWER_MAX + 1;
    char *text = malloc(big + 1);
    assert_non_null(text);
    memset(text, ' ', big);
    memcpy(text, "{\"allowProvisioning\": true}", 27);
    text[big] = '\0';
    enr_aws_hook_answer a = {0};
    enr_error err = {0};
    assert_int_equal(enr_aws_hook_answer_parse(text, big, &a, &err), ENR_E_PARSE);
    assert_non_null(strstr(err.message, "over the 65536 allowed"));
    assert_int_equal(enr_aws_hook_answer_parse(text, big - 1, &a, &err), ENR_OK); /* trailing spaces are JSON */
    assert_true(a.allow);
    enr_aws_hook_answer_clear(&a);
    free(text);
}

static void test_answer_good(void **state)
{
    (void)state;
    enr_aws_hook_answer a = {0};
    enr_error err = {0};
    assert_int_equal(parse_text("{\"allowProvisioning\": true}", &a, &err), ENR_OK);
    assert_true(a.allow);
    assert_null(a.parameter_overrides);
    assert_int_equal(parse_text("{\"allowProvisioning\": false, \"parameterOverrides\": {\"a\": \"b\"}}", &a, &err),
                     ENR_OK);
    assert_false(a.allow); /* a successful parse: the caller judges it */
    assert_string_equal(json_string_value(json_object_get(a.parameter_overrides, "a")), "b");
    enr_aws_hook_answer_clear(&a);
    assert_null(a.parameter_overrides);
    /* null overrides are absent; unknown keys of any shape are ignored */
    assert_int_equal(parse_text("{\"extra\": [1, {\"x\": null}], \"parameterOverrides\": null, "
                                "\"allowProvisioning\": true, \"AllowProvisioning\": false}",
                                &a, &err),
                     ENR_OK);
    assert_true(a.allow);
    assert_null(a.parameter_overrides);
    assert_int_equal(parse_text(" \n{\"allowProvisioning\":true,\"parameterOverrides\":{}}\n", &a, &err), ENR_OK);
    assert_true(a.allow);
    assert_int_equal(json_object_size(a.parameter_overrides), 0);
    enr_aws_hook_answer_clear(&a);
    /* UTF-8 beyond ASCII is text like any other */
    assert_int_equal(parse_text("{\"allowProvisioning\":true,\"parameterOverrides\":{\"Ort\":\"K\xc3\xb6ln\"}}", &a,
                                &err),
                     ENR_OK);
    assert_string_equal(json_string_value(json_object_get(a.parameter_overrides, "Ort")), "K\xc3\xb6ln");
    enr_aws_hook_answer_clear(&a);
    enr_aws_hook_answer_clear(NULL);
    assert_int_equal(enr_aws_hook_answer_parse(NULL, 1, &a, &err), ENR_E_USAGE);
    assert_int_equal(enr_aws_hook_answer_parse("{}", 2, NULL, &err), ENR_E_USAGE);
}

/* What the parser echoes of an answer is quoted: printable ASCII, bounded. */
static void test_answer_messages_quoted(void **state)
{
    (void)state;
    enr_aws_hook_answer a = {0};
    enr_error err = {0};
    const char *text = "{\"allowProvisioning\": true, \"parameterOverrides\": {\"evil\\nname\\u001b[31m\": 1}}";
    assert_int_equal(parse_text(text, &a, &err), ENR_E_PARSE);
    for (const char *p = err.message; *p != '\0'; p++)
        if (*p < 0x20 || *p > 0x7e)
            fail_msg("unquoted byte 0x%02x in '%s'", (unsigned char)*p, err.message);
    assert_int_equal(parse_text("{\"allowProvisioning\": tru\x1b[31m}", &a, &err), ENR_E_PARSE);
    for (const char *p = err.message; *p != '\0'; p++)
        if (*p < 0x20 || *p > 0x7e)
            fail_msg("unquoted byte 0x%02x in '%s'", (unsigned char)*p, err.message);
}

/* ---- certificates (the test's own CAs) ----------------------------------- */

typedef struct pki {
    EVP_PKEY *ca_key, *other_ca_key, *server_key;
    X509 *ca, *other_ca;
    X509 *server_cert;       /* by ca, for IP 127.0.0.1 */
    X509 *other_server_cert; /* by other_ca, for IP 127.0.0.1 */
    X509 *wrong_name_cert;   /* by ca, for IP 127.0.0.2 */
    X509 *localhost_cert;    /* by ca, for DNS localhost */
    char *ca_pem;            /* ca only */
} pki;

static void add_ext(X509 *cert, X509 *issuer, int nid, const char *value)
{
    X509V3_CTX ctx;
    X509V3_set_ctx(&ctx, issuer, cert, NULL, NULL, 0);
    X509_EXTENSION *ext = X509V3_EXT_conf_nid(NULL, &ctx, nid, value);
    assert_non_null(ext);
    assert_int_equal(X509_add_ext(cert, ext, -1), 1);
    X509_EXTENSION_free(ext);
}

static X509 *make_cert(EVP_PKEY *pub, const char *cn, X509 *issuer, EVP_PKEY *issuer_key, const char *san)
{
    static long serial = 1;
    X509 *cert = X509_new();
    assert_non_null(cert);
    assert_int_equal(X509_set_version(cert, X509_VERSION_3), 1);
    assert_int_equal(ASN1_INTEGER_set(X509_get_serialNumber(cert), serial++), 1);
    X509_NAME *name = X509_get_subject_name(cert);
    assert_int_equal(X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, (const unsigned char *)cn, -1, -1, 0), 1);
    assert_int_equal(X509_set_issuer_name(cert, issuer ? X509_get_subject_name(issuer) : name), 1);
    assert_non_null(X509_gmtime_adj(X509_getm_notBefore(cert), -3600));
    assert_non_null(X509_gmtime_adj(X509_getm_notAfter(cert), 3600));
    assert_int_equal(X509_set_pubkey(cert, pub), 1);
    X509 *signer_cert = issuer ? issuer : cert;
    if (san == NULL) {
        add_ext(cert, signer_cert, NID_basic_constraints, "critical,CA:TRUE");
        add_ext(cert, signer_cert, NID_key_usage, "critical,keyCertSign,cRLSign");
    } else {
        add_ext(cert, signer_cert, NID_basic_constraints, "critical,CA:FALSE");
        add_ext(cert, signer_cert, NID_ext_key_usage, "serverAuth");
        add_ext(cert, signer_cert, NID_subject_alt_name, san);
    }
    assert_true(X509_sign(cert, issuer_key, EVP_sha256()) > 0);
    return cert;
}

static char *pem_of(X509 *cert)
{
    BIO *bio = BIO_new(BIO_s_mem());
    assert_non_null(bio);
    assert_int_equal(PEM_write_bio_X509(bio, cert), 1);
    char *data = NULL;
    long n = BIO_get_mem_data(bio, &data);
    assert_true(n > 0);
    char *out = strndup(data, (size_t)n);
    BIO_free(bio);
    assert_non_null(out);
    return out;
}

/* ---- the HTTPS server ------------------------------------------------------ */

typedef enum server_mode {
    ANSWER,  /* read the request, answer `answer` */
    SILENT,  /* read the request, never answer */
    TRICKLE  /* read the request, then a byte of a valid head every 50 ms, never finishing */
} server_mode;

typedef struct server {
    pthread_t thread;
    int listen_fd;
    unsigned short port;
    SSL_CTX *ctx;
    server_mode mode;
    const char *answer;           /* the whole HTTP response */
    /* what it received */
    bool handshake_done;
    char request_line[512];
    char content_type[128];
    bool got_request;
    char body[16384];             /* the request's body, NUL-terminated */
} server;

static SSL_CTX *server_ctx(X509 *cert, EVP_PKEY *key)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
    assert_non_null(ctx);
    assert_int_equal(SSL_CTX_use_certificate(ctx, cert), 1);
    assert_int_equal(SSL_CTX_use_PrivateKey(ctx, key), 1);
    return ctx;
}

/* Reads the request head and its Content-Length body. */
static bool read_request(server *s, SSL *ssl)
{
    size_t cap = 256 * 1024, used = 0;
    char *buf = malloc(cap + 1);
    if (buf == NULL)
        return false;
    char *end = NULL;
    size_t want = 0;
    for (;;) {
        int n = SSL_read(ssl, buf + used, (int)(cap - used));
        if (n <= 0)
            break;
        used += (size_t)n;
        buf[used] = '\0';
        if (end == NULL && (end = strstr(buf, "\r\n\r\n")) != NULL) {
            const char *cl = strcasestr(buf, "\r\ncontent-length:");
            want = cl != NULL && cl < end ? strtoul(cl + 17, NULL, 10) : 0;
        }
        if (end != NULL && used >= (size_t)(end + 4 - buf) + want)
            break;
        if (used == cap)
            break;
    }
    bool ok = end != NULL;
    if (ok) {
        char *eol = strstr(buf, "\r\n");
        snprintf(s->request_line, sizeof s->request_line, "%.*s", (int)(eol - buf), buf);
        const char *ct = strcasestr(buf, "\r\ncontent-type:");
        if (ct != NULL && ct < end) {
            ct += 15;
            while (*ct == ' ')
                ct++;
            snprintf(s->content_type, sizeof s->content_type, "%.*s", (int)strcspn(ct, "\r"), ct);
        }
        s->got_request = true;
        snprintf(s->body, sizeof s->body, "%.*s", (int)want, end + 4);
    }
    free(buf);
    return ok;
}

static void *server_main(void *arg)
{
    server *s = arg;
    struct pollfd pfd = {s->listen_fd, POLLIN, 0};
    if (poll(&pfd, 1, 10000) != 1) /* nobody came: the test fails on its own */
        return NULL;
    int fd = accept(s->listen_fd, NULL, NULL);
    if (fd < 0)
        return NULL;
    SSL *ssl = SSL_new(s->ctx);
    SSL_set_fd(ssl, fd);
    if (SSL_accept(ssl) == 1) {
        s->handshake_done = true;
        if (read_request(s, ssl)) {
            if (s->mode == ANSWER) {
                (void)SSL_write(ssl, s->answer, (int)strlen(s->answer));
                (void)SSL_shutdown(ssl);
            } else if (s->mode == SILENT) {
                char c;
                (void)SSL_read(ssl, &c, 1); /* until the client gives up and closes */
            } else {
                const char *head = "HTTP/1.1 200 OK\r\nX-Slow: ";
                for (size_t i = 0;; i++) {
                    const char *b = i < strlen(head) ? head + i : "a";
                    if (SSL_write(ssl, b, 1) != 1) /* the client closed */
                        break;
                    usleep(50 * 1000);
                }
            }
        }
    }
    SSL_free(ssl);
    close(fd);
    ERR_clear_error();
    return NULL;
}

static int listen_local(unsigned short *port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(fd >= 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = 0};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof a), 0);
    assert_int_equal(listen(fd, 4), 0);
    socklen_t len = sizeof a;
    assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &len), 0);
    *port = ntohs(a.sin_port);
    return fd;
}

static void server_start(server *s, X509 *cert, EVP_PKEY *key, server_mode mode, const char *answer)
{
    memset(s, 0, sizeof *s);
    s->ctx = server_ctx(cert, key);
    s->mode = mode;
    s->answer = answer;
    s->listen_fd = listen_local(&s->port);
    assert_int_equal(pthread_create(&s->thread, NULL, server_main, s), 0);
}

static void server_stop(server *s)
{
    assert_int_equal(pthread_join(s->thread, NULL), 0);
    close(s->listen_fd);
    SSL_CTX_free(s->ctx);
}

/* ---- calls --------------------------------------------------------------- */

static int group_setup(void **state)
{
    pki *p = calloc(1, sizeof *p);
    if (p == NULL)
        return -1;
    p->ca_key = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
    p->other_ca_key = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
    p->server_key = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
    if (p->ca_key == NULL || p->other_ca_key == NULL || p->server_key == NULL)
        return -1;
    p->ca = make_cert(p->ca_key, "hook test CA", NULL, p->ca_key, NULL);
    p->other_ca = make_cert(p->other_ca_key, "hook test CA", NULL, p->other_ca_key, NULL); /* same name */
    p->server_cert = make_cert(p->server_key, "hook", p->ca, p->ca_key, "IP:127.0.0.1");
    p->other_server_cert = make_cert(p->server_key, "hook", p->other_ca, p->other_ca_key, "IP:127.0.0.1");
    p->wrong_name_cert = make_cert(p->server_key, "hook", p->ca, p->ca_key, "IP:127.0.0.2,DNS:127.0.0.1");
    p->localhost_cert = make_cert(p->server_key, "hook", p->ca, p->ca_key, "DNS:localhost");
    p->ca_pem = pem_of(p->ca);
    *state = p;
    signal(SIGPIPE, SIG_IGN); /* as enrolld: a closed peer is an error, not a signal */
    return 0;
}

static int group_teardown(void **state)
{
    pki *p = *state;
    X509_free(p->ca);
    X509_free(p->other_ca);
    X509_free(p->server_cert);
    X509_free(p->other_server_cert);
    X509_free(p->wrong_name_cert);
    X509_free(p->localhost_cert);
    EVP_PKEY_free(p->ca_key);
    EVP_PKEY_free(p->other_ca_key);
    EVP_PKEY_free(p->server_key);
    free(p->ca_pem);
    free(p);
    return 0;
}

#define DEVICE_PEM "-----BEGIN CERTIFICATE-----\nMIIBdevicecertificate\n-----END CERTIFICATE-----\n"
#define SECRET_PARAM "s3cret-serial-4711"

static long long now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

typedef struct call_result {
    enr_code rc;
    enr_error err;
    enr_aws_hook_answer answer;
    long long elapsed_ms;
} call_result;

static call_result call(const pki *p, const char *url, int timeout_ms)
{
    json_t *params = json_pack("{s:s, s:s}", "SerialNumber", SECRET_PARAM, "Location", "hall 3");
    assert_non_null(params);
    enr_aws_hook_target t = {url, p->ca_pem, timeout_ms};
    enr_aws_hook_input in = {"c1a1", "ce41", DEVICE_PEM, "arn:aws:iot:eu-central-1:123456789012:provisiontemplate/T1",
                             "sensor-7", params};
    call_result r = {0};
    long long start = now_ms();
    r.rc = enr_aws_hook_call(&t, &in, &r.answer, &r.err);
    r.elapsed_ms = now_ms() - start;
    json_decref(params);
    /* Whatever happened, the message holds nothing of the request. */
    if (strstr(r.err.message, "BEGIN CERTIFICATE") != NULL || strstr(r.err.message, SECRET_PARAM) != NULL)
        fail_msg("the message holds the request: %s", r.err.message);
    return r;
}

static void expect_refused(const call_result *r, enr_reason reason, const char *word)
{
    if (r->rc != ENR_E_POLICY || r->err.reason != reason || strstr(r->err.message, word) == NULL)
        fail_msg("rc %d, reason %d (wanted %d), message '%s' (wanted '%s')", r->rc, r->err.reason, reason,
                 r->err.message, word);
    assert_false(r->answer.allow);
    assert_null(r->answer.parameter_overrides);
}

static char *response(const char *status, const char *body)
{
    char *out = NULL;
    assert_true(asprintf(&out, "HTTP/1.1 %s\r\nContent-Type: application/json\r\nContent-Length: %zu\r\n\r\n%s",
                         status, strlen(body), body) > 0);
    return out;
}

static void test_call_allowed_with_overrides(void **state)
{
    pki *p = *state;
    char *answer = response("200 OK", "{\"allowProvisioning\":true,\"parameterOverrides\":{\"Location\":\"hall 4\","
                                      "\"Extra\":\"x\"},\"note\":[1]}");
    server s;
    server_start(&s, p->server_cert, p->server_key, ANSWER, answer);
    char url[128];
    snprintf(url, sizeof url, "https://127.0.0.1:%u/hooks/pre-provision", s.port);
    call_result r = call(p, url, 0);
    server_stop(&s);
    if (r.rc != ENR_OK)
        fail_msg("refused: %s", r.err.message);
    assert_true(r.answer.allow);
    assert_int_equal(json_object_size(r.answer.parameter_overrides), 2);
    assert_string_equal(json_string_value(json_object_get(r.answer.parameter_overrides, "Location")), "hall 4");
    assert_string_equal(json_string_value(json_object_get(r.answer.parameter_overrides, "Extra")), "x");
    enr_aws_hook_answer_clear(&r.answer);

    /* What the hook received: AWS's document, at exactly the URL's path. */
    assert_string_equal(s.request_line, "POST /hooks/pre-provision HTTP/1.1");
    assert_string_equal(s.content_type, "application/json");
    json_error_t jerr;
    json_t *got = json_loads(s.body, JSON_REJECT_DUPLICATES, &jerr);
    if (got == NULL)
        fail_msg("the hook received no JSON: %s", jerr.text);
    assert_string_equal(json_string_value(json_object_get(got, "claimCertificateId")), "c1a1");
    assert_string_equal(json_string_value(json_object_get(got, "certificateId")), "ce41");
    assert_string_equal(json_string_value(json_object_get(got, "certificatePem")), DEVICE_PEM);
    assert_string_equal(json_string_value(json_object_get(got, "templateArn")),
                        "arn:aws:iot:eu-central-1:123456789012:provisiontemplate/T1");
    assert_string_equal(json_string_value(json_object_get(got, "clientId")), "sensor-7");
    json_t *params = json_object_get(got, "parameters");
    assert_true(json_is_object(params));
    assert_int_equal(json_object_size(params), 2);
    assert_string_equal(json_string_value(json_object_get(params, "SerialNumber")), SECRET_PARAM);
    assert_string_equal(json_string_value(json_object_get(params, "Location")), "hall 3");
    assert_int_equal(json_object_size(got), 6);
    json_decref(got);
    free(answer);
}

/* The path is the URL's, exactly: "/" when it has none, a trailing '/' kept;
 * an answer without overrides; no parameters are sent as {}; any 2xx. */
static void test_call_paths(void **state)
{
    pki *p = *state;
    static const struct {
        const char *suffix, *line;
    } cases[] = {
        {"", "POST / HTTP/1.1"},
        {"/", "POST / HTTP/1.1"},
        {"/a/b/", "POST /a/b/ HTTP/1.1"},
        {"/x", "POST /x HTTP/1.1"},
    };
    char *answer = response("201 Created", "{\"allowProvisioning\":true}");
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        server s;
        server_start(&s, p->server_cert, p->server_key, ANSWER, answer);
        char url[128];
        snprintf(url, sizeof url, "https://127.0.0.1:%u%s", s.port, cases[i].suffix);
        enr_aws_hook_target t = {url, p->ca_pem, 2000};
        enr_aws_hook_input in = {"a", "b", DEVICE_PEM, "arn", "client", NULL};
        enr_aws_hook_answer a = {0};
        enr_error err = {0};
        enr_code rc = enr_aws_hook_call(&t, &in, &a, &err);
        server_stop(&s);
        if (rc != ENR_OK)
            fail_msg("%s: %s", url, err.message);
        assert_true(a.allow);
        assert_null(a.parameter_overrides);
        assert_string_equal(s.request_line, cases[i].line);
        json_t *got = json_loads(s.body, 0, NULL);
        assert_non_null(got);
        assert_true(json_is_object(json_object_get(got, "parameters")));
        assert_int_equal(json_object_size(json_object_get(got, "parameters")), 0);
        json_decref(got);
    }
    free(answer);
}

/* A host name: resolved on the client's helper thread (the deadline covers
 * resolution too), then each address in turn (::1 may be refused first). */
static void test_call_by_name(void **state)
{
    pki *p = *state;
    char *answer = response("200 OK", "{\"allowProvisioning\":true}");
    server s;
    server_start(&s, p->localhost_cert, p->server_key, ANSWER, answer);
    char url[128];
    snprintf(url, sizeof url, "https://localhost:%u/pre", s.port);
    call_result r = call(p, url, 2000);
    server_stop(&s);
    if (r.rc != ENR_OK)
        fail_msg("refused: %s", r.err.message);
    assert_true(r.answer.allow);
    assert_string_equal(s.request_line, "POST /pre HTTP/1.1");
    free(answer);
}

static void test_call_denied(void **state)
{
    pki *p = *state;
    char *answer = response("200 OK", "{\"allowProvisioning\":false,\"parameterOverrides\":{\"a\":\"b\"}}");
    server s;
    server_start(&s, p->server_cert, p->server_key, ANSWER, answer);
    char url[128];
    snprintf(url, sizeof url, "https://127.0.0.1:%u/pre", s.port);
    call_result r = call(p, url, 0);
    server_stop(&s);
    expect_refused(&r, ENR_R_HOOK_DENIED, "allowProvisioning false");
    assert_non_null(strstr(r.err.message, url));
    free(answer);
}

static void test_call_http_500(void **state)
{
    pki *p = *state;
    /* The body would allow: the status decides first. */
    char *answer = response("500 Internal Server Error", "{\"allowProvisioning\":true}");
    server s;
    server_start(&s, p->server_cert, p->server_key, ANSWER, answer);
    char url[128];
    snprintf(url, sizeof url, "https://127.0.0.1:%u/pre", s.port);
    call_result r = call(p, url, 0);
    server_stop(&s);
    expect_refused(&r, ENR_R_HOOK_FAILED, "answered HTTP 500");
    assert_non_null(strstr(r.err.message, url));
    free(answer);
}

static void test_call_malformed(void **state)
{
    pki *p = *state;
    static const char *const bodies[] = {
        "{\"allowProvisioning\":\"yes\"}",
        "<html>ok</html>",
        "{\"allowProvisioning\":true,\"parameterOverrides\":{\"a\":1}}",
        "",
    };
    for (size_t i = 0; i < sizeof bodies / sizeof bodies[0]; i++) {
        char *answer = response("200 OK", bodies[i]);
        server s;
        server_start(&s, p->server_cert, p->server_key, ANSWER, answer);
        char url[128];
        snprintf(url, sizeof url, "https://127.0.0.1:%u/pre", s.port);
        call_result r = call(p, url, 0);
        server_stop(&s);
        expect_refused(&r, ENR_R_HOOK_FAILED, "malformed");
        free(answer);
    }
    /* Not HTTP at all, and a body over the bound. */
    server s;
    server_start(&s, p->server_cert, p->server_key, ANSWER, "SSH-2.0-OpenSSH\r\n");
    char url[128];
    snprintf(url, sizeof url, "https://127.0.0.1:%u/pre", s.port);
    call_result r = call(p, url, 0);
    server_stop(&s);
    expect_refused(&r, ENR_R_HOOK_FAILED, "failed");
    char *big = malloc(ENR_AWS_HOOK_ANSWER_MAX + 2);
    assert_non_null(big);
    memset(big, ' ', ENR_AWS_HOOK_ANSWER_MAX + 1);
    big[ENR_AWS_HOOK_ANSWER_MAX + 1] = '\0';
    memcpy(big, "{\"allowProvisioning\":true}", 26);
    char *answer = response("200 OK", big);
    server_start(&s, p->server_cert, p->server_key, ANSWER, answer);
    snprintf(url, sizeof url, "https://127.0.0.1:%u/pre", s.port);
    r = call(p, url, 0);
    server_stop(&s);
    expect_refused(&r, ENR_R_HOOK_FAILED, "failed");
    free(answer);
    free(big);
}

static void expect_timeout(const pki *p, server_mode mode)
{
    server s;
    server_start(&s, p->server_cert, p->server_key, mode, NULL);
    char url[128];
    snprintf(url, sizeof url, "https://127.0.0.1:%u/pre", s.port);
    call_result r = call(p, url, 300);
    server_stop(&s);
    expect_refused(&r, ENR_R_HOOK_TIMEOUT, "within 300 ms");
    if (r.elapsed_ms < 290 || r.elapsed_ms >= 2000)
        fail_msg("timed out after %lld ms (300 allowed)", r.elapsed_ms);
    assert_true(s.handshake_done);
    assert_true(s.got_request);
}

static void test_call_server_never_answers(void **state)
{
    expect_timeout(*state, SILENT);
}

/* Each byte comes well within any per-read timeout; only a deadline for
 * the whole call ends it. */
static void test_call_server_trickles(void **state)
{
    expect_timeout(*state, TRICKLE);
}

static void test_call_untrusted_server(void **state)
{
    pki *p = *state;
    char *answer = response("200 OK", "{\"allowProvisioning\":true}");
    /* A certificate of another CA (of the same name), and one of our CA for
     * another address (its DNS name "127.0.0.1" does not count for an IP). */
    X509 *certs[] = {p->other_server_cert, p->wrong_name_cert};
    for (size_t i = 0; i < 2; i++) {
        server s;
        server_start(&s, certs[i], p->server_key, ANSWER, answer);
        char url[128];
        snprintf(url, sizeof url, "https://127.0.0.1:%u/pre", s.port);
        call_result r = call(p, url, 0);
        server_stop(&s);
        expect_refused(&r, ENR_R_HOOK_FAILED, "not trusted");
        assert_false(s.got_request); /* nothing was sent */
    }
    free(answer);
}

static void test_call_connection_refused(void **state)
{
    pki *p = *state;
    unsigned short port;
    int fd = listen_local(&port);
    close(fd); /* nobody listens there now */
    char url[128];
    snprintf(url, sizeof url, "https://127.0.0.1:%u/pre", port);
    call_result r = call(p, url, 0);
    expect_refused(&r, ENR_R_HOOK_FAILED, "refused");
    assert_true(r.elapsed_ms < 2000);
}

static void test_call_bad_configuration(void **state)
{
    pki *p = *state;
    enr_aws_hook_input in = {"a", "b", DEVICE_PEM, "arn", "client", NULL};
    enr_aws_hook_answer a = {0};
    enr_error err = {0};
    /* Configuration that cannot be used refuses, typed like any failure. */
    static const char *const urls[] = {"http://127.0.0.1:1/pre", "https://127.0.0.1:1/pre?key=s3cret",
                                       "https://127.0.0.1:1/pre#s3cret", "https://u@127.0.0.1/",
                                       "https://127.0.0.1:1/pre\r\nX: y"};
    for (size_t i = 0; i < sizeof urls / sizeof urls[0]; i++) {
        enr_aws_hook_target t = {urls[i], p->ca_pem, 0};
        assert_int_equal(enr_aws_hook_call(&t, &in, &a, &err), ENR_E_POLICY);
        assert_int_equal(err.reason, ENR_R_HOOK_FAILED);
        assert_null(strchr(err.message, '\n')); /* quoted */
        assert_null(strstr(err.message, "s3cret")); /* a query or fragment is not echoed */
        assert_non_null(strstr(err.message, "is not https://host"));
    }
    enr_aws_hook_target no_ca = {"https://127.0.0.1:1/pre", "not a PEM", 0};
    assert_int_equal(enr_aws_hook_call(&no_ca, &in, &a, &err), ENR_E_POLICY);
    assert_int_equal(err.reason, ENR_R_HOOK_FAILED);
    assert_non_null(strstr(err.message, "no certificate"));
    /* The caller's mistakes. */
    enr_aws_hook_target t = {"https://127.0.0.1:1/pre", p->ca_pem, ENR_AWS_HOOK_TIMEOUT_MIN_MS - 1};
    assert_int_equal(enr_aws_hook_call(&t, &in, &a, &err), ENR_E_USAGE);
    t.timeout_ms = ENR_AWS_HOOK_TIMEOUT_MAX_MS + 1;
    assert_int_equal(enr_aws_hook_call(&t, &in, &a, &err), ENR_E_USAGE);
    t.timeout_ms = 0;
    enr_aws_hook_input no_id = {"a", NULL, DEVICE_PEM, "arn", "client", NULL};
    assert_int_equal(enr_aws_hook_call(&t, &no_id, &a, &err), ENR_E_USAGE);
    json_t *bad_params = json_pack("{s:i}", "n", 1);
    enr_aws_hook_input numbers = {"a", "b", DEVICE_PEM, "arn", "client", bad_params};
    assert_int_equal(enr_aws_hook_call(&t, &numbers, &a, &err), ENR_E_USAGE);
    json_decref(bad_params);
    enr_aws_hook_input not_utf8 = {"a", "b", DEVICE_PEM, "arn", "cli\xff", NULL};
    assert_int_equal(enr_aws_hook_call(&t, &not_utf8, &a, &err), ENR_E_USAGE);
    assert_int_equal(enr_aws_hook_call(NULL, &in, &a, &err), ENR_E_USAGE);
    assert_int_equal(enr_aws_hook_call(&t, &in, NULL, &err), ENR_E_USAGE);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_answer_bad_input),
        cmocka_unit_test(test_answer_bounds),
        cmocka_unit_test(test_answer_good),
        cmocka_unit_test(test_answer_messages_quoted),
        cmocka_unit_test(test_call_allowed_with_overrides),
        cmocka_unit_test(test_call_paths),
        cmocka_unit_test(test_call_by_name),
        cmocka_unit_test(test_call_denied),
        cmocka_unit_test(test_call_http_500),
        cmocka_unit_test(test_call_malformed),
        cmocka_unit_test(test_call_server_never_answers),
        cmocka_unit_test(test_call_server_trickles),
        cmocka_unit_test(test_call_untrusted_server),
        cmocka_unit_test(test_call_connection_refused),
        cmocka_unit_test(test_call_bad_configuration),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
