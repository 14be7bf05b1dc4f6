/* A private, minimal blocking HTTPS client for `enroll admin --url`: one
 * connection, one POST, Connection: close, the answer read to EOF. Kept
 * behind cli_admin_remote alone so the shared client can replace it. */
#include <ctype.h>
#include <jansson.h>
#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/time.h>

#include "cli/admin_remote.h"
#include "enroll/admin.h"

#define ANSWER_MAX (8 * 1024 * 1024)
#define TIMEOUT_SECONDS 30

typedef struct target {
    char host[256];
    char port[8];
    bool is_ip;
} target;

/* https://HOST[:PORT][/], HOST a name, an IPv4 address or [IPv6]. */
static enr_code parse_url(const char *url, target *t, enr_error *err)
{
    memset(t, 0, sizeof *t);
    if (strncasecmp(url, "https://", 8) != 0)
        return enr_error_set(err, ENR_E_USAGE, "--url '%.200s' must start with https://", url);
    const char *p = url + 8, *end;
    if (*p == '[') {
        end = strchr(p, ']');
        if (end == NULL || (size_t)(end - p - 1) >= sizeof t->host)
            return enr_error_set(err, ENR_E_USAGE, "--url '%.200s': a bad [IPv6] address", url);
        snprintf(t->host, sizeof t->host, "%.*s", (int)(end - p - 1), p + 1);
        t->is_ip = true;
        end++;
    } else {
        end = p + strcspn(p, ":/");
        if (end == p || (size_t)(end - p) >= sizeof t->host)
            return enr_error_set(err, ENR_E_USAGE, "--url '%.200s' has no host", url);
        snprintf(t->host, sizeof t->host, "%.*s", (int)(end - p), p);
        t->is_ip = strspn(t->host, "0123456789.") == strlen(t->host);
    }
    snprintf(t->port, sizeof t->port, "443");
    if (*end == ':') {
        size_t digits = strspn(end + 1, "0123456789");
        if (digits == 0 || digits > 5 || atoi(end + 1) > 65535)
            return enr_error_set(err, ENR_E_USAGE, "--url '%.200s': a bad port", url);
        snprintf(t->port, sizeof t->port, "%.*s", (int)digits, end + 1);
        end += 1 + digits;
    }
    if (*end != '\0' && strcmp(end, "/") != 0)
        return enr_error_set(err, ENR_E_USAGE, "--url '%.200s': give https://HOST:PORT only (the admin routes are "
                                               "under /admin/v1)", url);
    return ENR_OK;
}

static enr_code tls_context(const char *cert, const char *key, const char *trust, SSL_CTX **out, enr_error *err)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    if (ctx == NULL)
        return enr_error_openssl(err, ENR_E_CRYPTO, "cannot create a TLS context");
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
    enr_code rc = ENR_OK;
    if (trust != NULL ? SSL_CTX_load_verify_locations(ctx, trust, NULL) != 1
                      : SSL_CTX_set_default_verify_paths(ctx) != 1)
        rc = enr_error_openssl(err, ENR_E_IO, "%s: cannot load the trusted CA certificates",
                               trust ? trust : "the system's trust store");
    else if (SSL_CTX_use_certificate_chain_file(ctx, cert) != 1)
        rc = enr_error_openssl(err, ENR_E_IO, "%s: cannot load the admin certificate", cert);
    else if (SSL_CTX_use_PrivateKey_file(ctx, key, SSL_FILETYPE_PEM) != 1)
        rc = enr_error_openssl(err, ENR_E_IO, "%s: cannot load the admin key", key);
    else if (SSL_CTX_check_private_key(ctx) != 1)
        rc = enr_error_openssl(err, ENR_E_USAGE, "%s does not belong to %s", key, cert);
    if (rc != ENR_OK) {
        SSL_CTX_free(ctx);
        return rc;
    }
    *out = ctx;
    return ENR_OK;
}

static enr_code send_all(BIO *bio, const char *data, size_t len, enr_error *err)
{
    while (len > 0) {
        int n = BIO_write(bio, data, len > 65536 ? 65536 : (int)len);
        if (n <= 0)
            return enr_error_openssl(err, ENR_E_IO, "sending the request failed");
        data += n;
        len -= (size_t)n;
    }
    return ENR_OK;
}

static enr_code read_all(BIO *bio, char **out, size_t *out_len, enr_error *err)
{
    size_t cap = 16384, len = 0;
    char *buf = malloc(cap);
    if (buf == NULL)
        return enr_error_set(err, ENR_E_NOMEM, "out of memory");
    for (;;) {
        if (cap - len < 4096) {
            if (cap >= ANSWER_MAX) {
                free(buf);
                return enr_error_set(err, ENR_E_PARSE, "the answer is larger than %d bytes", ANSWER_MAX);
            }
            char *grown = realloc(buf, cap * 2);
            if (grown == NULL) {
                free(buf);
                return enr_error_set(err, ENR_E_NOMEM, "out of memory");
            }
            buf = grown;
            cap *= 2;
        }
        int n = BIO_read(bio, buf + len, (int)(cap - len - 1));
        if (n > 0) {
            len += (size_t)n;
            continue;
        }
        if (n == 0 || !BIO_should_retry(bio))
            break;
    }
    ERR_clear_error(); /* EOF without close_notify is how some servers end */
    buf[len] = '\0';
    *out = buf;
    *out_len = len;
    return ENR_OK;
}

/* "HTTP/1.1 200 OK\r\n...\r\n\r\nBODY": the status and where the body starts. */
static enr_code parse_answer(char *raw, size_t len, int *status, char **body, size_t *body_len, enr_error *err)
{
    char *head_end = strstr(raw, "\r\n\r\n");
    if (strncmp(raw, "HTTP/1.", 7) != 0 || len < 12 || head_end == NULL)
        return enr_error_set(err, ENR_E_PARSE, "the service did not answer HTTP");
    *status = atoi(raw + 9);
    *body = head_end + 4;
    *body_len = len - (size_t)(*body - raw);
    /* Content-Length, when given, is the body; anything after it is not ours. */
    for (char *line = strstr(raw, "\r\n"); line != NULL && line < head_end; line = strstr(line + 2, "\r\n")) {
        if (strncasecmp(line + 2, "Content-Length:", 15) == 0) {
            long n = strtol(line + 17, NULL, 10);
            if (n < 0 || (size_t)n > *body_len)
                return enr_error_set(err, ENR_E_PARSE, "the answer ended early");
            *body_len = (size_t)n;
        }
    }
    (*body)[*body_len] = '\0';
    return ENR_OK;
}

static enr_code code_named(const char *name)
{
    for (int c = ENR_E_USAGE; c <= ENR_E_INTERNAL; c++)
        if (name != NULL && strcmp(enr_code_name((enr_code)c), name) == 0)
            return (enr_code)c;
    return ENR_E_INTERNAL;
}

/* An error answer: the service's message and code; refusals of the credential say so. */
static enr_code answer_error(int status, const char *body, enr_error *err)
{
    json_t *o = json_loads(body, 0, NULL);
    const char *message = json_string_value(json_object_get(json_object_get(o, "error"), "message"));
    const char *code = json_string_value(json_object_get(json_object_get(o, "error"), "code"));
    enr_code rc;
    if (status == 401 || status == 403)
        rc = enr_error_set(err, ENR_E_POLICY, "enrolld refused the admin credential (HTTP %d): %s", status,
                           message ? message : "no reason given");
    else if (message != NULL)
        rc = enr_error_set(err, code_named(code), "%s", message);
    else
        rc = enr_error_set(err, status == 404 ? ENR_E_NOTFOUND : ENR_E_IO,
                           "enrolld answered HTTP %d (is the admin API on? `admin` in its config)", status);
    json_decref(o);
    return rc;
}

enr_code cli_admin_remote(const char *url, const char *cert, const char *key, const char *trust,
                          const char *command, const char *args, char **result, enr_error *err)
{
    *result = NULL;
    target t;
    enr_code rc = parse_url(url, &t, err);
    if (rc != ENR_OK)
        return rc;
    char path[96];
    if (strcmp(command, "crl.export") == 0)
        snprintf(path, sizeof path, "/admin/v1/crl");
    else {
        snprintf(path, sizeof path, "/admin/v1/%s", command);
        char *dot = strchr(path + 10, '.');
        if (dot != NULL)
            *dot = '/';
    }
    SSL_CTX *ctx = NULL;
    if ((rc = tls_context(cert, key, trust, &ctx, err)) != ENR_OK)
        return rc;
    BIO *bio = BIO_new_ssl_connect(ctx);
    SSL *ssl = NULL;
    char hostport[300];
    snprintf(hostport, sizeof hostport, "%s%s%s:%s", t.is_ip && strchr(t.host, ':') ? "[" : "", t.host,
             t.is_ip && strchr(t.host, ':') ? "]" : "", t.port);
    if (bio == NULL || BIO_get_ssl(bio, &ssl) != 1 || ssl == NULL)
        rc = enr_error_openssl(err, ENR_E_CRYPTO, "cannot create a TLS connection");
    if (rc == ENR_OK) {
        BIO_set_conn_hostname(bio, hostport);
        /* The server certificate must name the host we asked for. */
        if (t.is_ip)
            X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), t.host);
        else if (SSL_set_tlsext_host_name(ssl, t.host) != 1 || SSL_set1_host(ssl, t.host) != 1)
            rc = enr_error_openssl(err, ENR_E_CRYPTO, "cannot set the host name");
    }
    bool connected = rc == ENR_OK && BIO_do_connect(bio) > 0;
    if (rc == ENR_OK && !connected && SSL_get_verify_result(ssl) == X509_V_OK)
        rc = enr_error_openssl(err, ENR_E_IO, "cannot connect to %s", hostport);
    if (rc == ENR_OK && SSL_get_verify_result(ssl) != X509_V_OK) {
        ERR_clear_error();
        rc = enr_error_set(err, ENR_E_VERIFY, "%s: the server certificate does not verify: %s%s", hostport,
                           X509_verify_cert_error_string(SSL_get_verify_result(ssl)),
                           trust ? "" : " (give --trust ROOT.pem)");
    }
    int fd = -1;
    if (rc == ENR_OK && BIO_get_fd(bio, &fd) >= 0 && fd >= 0) {
        struct timeval tv = {TIMEOUT_SECONDS, 0};
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    }
    size_t args_len = strlen(args);
    char head[512];
    int head_len = snprintf(head, sizeof head,
                            "POST %s HTTP/1.1\r\nHost: %s\r\nUser-Agent: enroll-admin\r\n"
                            "Content-Type: application/json\r\nContent-Length: %zu\r\nConnection: close\r\n\r\n",
                            path, hostport, args_len);
    if (rc == ENR_OK)
        rc = send_all(bio, head, (size_t)head_len, err);
    if (rc == ENR_OK)
        rc = send_all(bio, args, args_len, err);
    if (rc == ENR_OK)
        (void)BIO_flush(bio);
    char *raw = NULL, *body = NULL;
    size_t raw_len = 0, body_len = 0;
    int status = 0;
    if (rc == ENR_OK)
        rc = read_all(bio, &raw, &raw_len, err);
    if (rc == ENR_OK)
        rc = parse_answer(raw, raw_len, &status, &body, &body_len, err);
    if (rc == ENR_OK && status != 200)
        rc = answer_error(status, body, err);
    if (rc == ENR_OK && (*result = strndup(body, body_len)) == NULL)
        rc = enr_error_set(err, ENR_E_NOMEM, "out of memory");
    if (raw != NULL) {
        OPENSSL_cleanse(raw, raw_len); /* key.show answers keys */
        free(raw);
    }
    BIO_free_all(bio);
    SSL_CTX_free(ctx);
    return rc;
}
