/* The blocking HTTPS client (http_client.h): non-blocking sockets driven by
 * poll() against one deadline, so no step (connect, handshake, a stalled
 * server trickling bytes) can hang a device agent. With a total deadline
 * (total_timeout_ms) every step's deadline is cut to it, name resolution
 * included (on a helper thread: getaddrinfo cannot be interrupted). */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "enroll/http_client.h"
#include "enroll/tls_key.h"

struct enr_http_client {
    enr_url url;
    SSL_CTX *ctx;
    enr_tls_key *tls_key; /* with a client_signer: owns the library context of ctx */
    int connect_timeout_ms, io_timeout_ms;
    int total_timeout_ms; /* 0: none */
    bool trust_in_memory; /* trust_pem: say "the configured CA" rather than --trust */
    size_t max_body;
};

/* ---- URLs ---- */

static bool host_char(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
           c == '.';
}

enr_code enr_url_parse(const char *url, enr_url *out, enr_error *err)
{
    return enr_url_parse_scheme(url, "https", 443, out, err);
}

enr_code enr_url_parse_scheme(const char *url, const char *scheme, unsigned short default_port, enr_url *out,
                              enr_error *err)
{
    if (url == NULL || out == NULL || scheme == NULL)
        return enr_error_set(err, ENR_E_USAGE, "no URL given");
    memset(out, 0, sizeof *out);
    size_t sl = strlen(scheme);
    if (strncasecmp(url, scheme, sl) != 0 || strncmp(url + sl, "://", 3) != 0)
        return enr_error_set(err, ENR_E_USAGE,
                             "URL '%.200s' must start with %s:// (the service hands out credentials)", url,
                             scheme);
    const char *h = url + sl + 3, *end;
    if (*h == '[') {
        end = strchr(h, ']');
        if (end == NULL || (size_t)(end - h - 1) >= sizeof out->host || end == h + 1)
            return enr_error_set(err, ENR_E_USAGE, "URL '%.200s': unterminated IPv6 address", url);
        memcpy(out->host, h + 1, (size_t)(end - h - 1));
        struct in6_addr a6;
        if (inet_pton(AF_INET6, out->host, &a6) != 1)
            return enr_error_set(err, ENR_E_USAGE, "URL '%.200s': bad IPv6 address", url);
        out->host_is_ip = true;
        end++;
    } else {
        end = h;
        while (host_char(*end))
            end++;
        if (end == h || (size_t)(end - h) >= sizeof out->host)
            return enr_error_set(err, ENR_E_USAGE, "URL '%.200s': missing or too long host name", url);
        memcpy(out->host, h, (size_t)(end - h));
        struct in_addr a4;
        out->host_is_ip = inet_pton(AF_INET, out->host, &a4) == 1;
    }
    out->port = default_port;
    if (*end == ':') {
        char *stop;
        errno = 0;
        if (end[1] < '0' || end[1] > '9')
            return enr_error_set(err, ENR_E_USAGE, "URL '%.200s': bad port", url);
        unsigned long port = strtoul(end + 1, &stop, 10);
        if (errno != 0 || port == 0 || port > 65535)
            return enr_error_set(err, ENR_E_USAGE, "URL '%.200s': port must be 1..65535", url);
        out->port = (unsigned short)port;
        end = stop;
    }
    if (*end == '/') {
        size_t n = strlen(end);
        while (n > 0 && end[n - 1] == '/')
            n--;
        if (n >= sizeof out->base_path)
            return enr_error_set(err, ENR_E_USAGE, "URL '%.200s': path too long", url);
        for (size_t i = 0; i < n; i++)
            if (!(host_char(end[i]) || end[i] == '/' || end[i] == '_' || end[i] == '~' || end[i] == '%'))
                return enr_error_set(err, ENR_E_USAGE, "URL '%.200s': character '%c' not allowed in the path",
                                     url, end[i]);
        memcpy(out->base_path, end, n);
        end += strlen(end);
    }
    if (*end != '\0')
        return enr_error_set(err, ENR_E_USAGE,
                             "URL '%.200s': unexpected '%c' (give %s://host[:port][/path] only)", url, *end,
                             scheme);
    return ENR_OK;
}

/* ---- the client ---- */

/* Trust anchors given as PEM text: every certificate in it goes into the
 * context's store (as SSL_CTX_load_verify_locations does for a file). */
static enr_code add_trust_pem(SSL_CTX *ctx, OSSL_LIB_CTX *libctx, const char *pem, enr_error *err)
{
    BIO *bio = BIO_new_mem_buf(pem, -1);
    if (bio == NULL)
        return enr_error_openssl(err, ENR_E_NOMEM, "out of memory");
    STACK_OF(X509_INFO) *infos = PEM_X509_INFO_read_bio_ex(bio, NULL, NULL, NULL, libctx, NULL);
    BIO_free(bio);
    if (infos == NULL)
        return enr_error_openssl(err, ENR_E_PARSE, "cannot read the trust anchor PEM");
    X509_STORE *store = SSL_CTX_get_cert_store(ctx);
    int added = 0;
    enr_code rc = ENR_OK;
    for (int i = 0; i < sk_X509_INFO_num(infos); i++) {
        X509_INFO *info = sk_X509_INFO_value(infos, i);
        if (info->x509 == NULL)
            continue;
        if (X509_STORE_add_cert(store, info->x509) != 1) {
            rc = enr_error_openssl(err, ENR_E_CRYPTO, "cannot add a trust anchor");
            break;
        }
        added++;
    }
    sk_X509_INFO_pop_free(infos, X509_INFO_free);
    ERR_clear_error();
    if (rc == ENR_OK && added == 0)
        rc = enr_error_set(err, ENR_E_PARSE, "the trust anchor PEM holds no certificate");
    return rc;
}

enr_code enr_tls_client_context_new(const enr_http_client_options *opts, SSL_CTX **ctx_out, enr_tls_key **key_out,
                                    enr_error *err)
{
    if (opts == NULL || ctx_out == NULL || key_out == NULL)
        return enr_error_set(err, ENR_E_USAGE, "enr_tls_client_context_new: NULL argument");
    *ctx_out = NULL;
    *key_out = NULL;
    if ((opts->trust_file == NULL) == (opts->trust_pem == NULL))
        return enr_error_set(err, ENR_E_USAGE, "a trust anchor for the service is required: a file or PEM "
                                               "text, not both");
    bool has_cert = opts->client_cert != NULL || opts->client_cert_file != NULL;
    bool has_key = opts->client_signer != NULL || opts->client_key_file != NULL;
    if (has_cert != has_key)
        return enr_error_set(err, ENR_E_USAGE, "a client certificate needs its key, and a key its certificate");
    enr_tls_key *key = NULL;
    SSL_CTX *ctx = NULL;
    enr_code rc = ENR_OK;
    /* A signer's key is an EVP_PKEY of a provider that lives in the
     * tls_key's own library context, so the TLS context must be made there. */
    if (opts->client_signer != NULL && (rc = enr_tls_key_new(opts->client_signer, &key, err)) != ENR_OK)
        goto fail;
    ctx = key != NULL ? SSL_CTX_new_ex(enr_tls_key_libctx(key), NULL, TLS_client_method())
                      : SSL_CTX_new(TLS_client_method());
    if (ctx == NULL || !SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION)) {
        rc = enr_error_openssl(err, ENR_E_CRYPTO, "cannot make a TLS context");
        goto fail;
    }
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
    if (opts->trust_pem != NULL) {
        if ((rc = add_trust_pem(ctx, key != NULL ? enr_tls_key_libctx(key) : NULL, opts->trust_pem, err)) != ENR_OK)
            goto fail;
    } else if (!SSL_CTX_load_verify_locations(ctx, opts->trust_file, NULL)) {
        rc = enr_error_openssl(err, ENR_E_IO, "cannot load the trust anchor %s", opts->trust_file);
        goto fail;
    }
    if (opts->client_cert != NULL) {
        if (SSL_CTX_use_certificate(ctx, opts->client_cert) != 1) {
            rc = enr_error_openssl(err, ENR_E_CRYPTO, "cannot use the client certificate");
            goto fail;
        }
        for (int i = 0; opts->client_chain != NULL && i < sk_X509_num(opts->client_chain); i++)
            if (SSL_CTX_add1_chain_cert(ctx, sk_X509_value(opts->client_chain, i)) != 1) {
                rc = enr_error_openssl(err, ENR_E_CRYPTO, "cannot add the client chain");
                goto fail;
            }
    } else if (opts->client_cert_file != NULL &&
               SSL_CTX_use_certificate_chain_file(ctx, opts->client_cert_file) != 1) {
        rc = enr_error_openssl(err, ENR_E_IO, "cannot load the client certificate %s", opts->client_cert_file);
        goto fail;
    }
    if (key != NULL) {
        if ((rc = enr_tls_key_use(key, ctx, err)) != ENR_OK)
            goto fail;
    } else if (opts->client_key_file != NULL) {
        if (SSL_CTX_use_PrivateKey_file(ctx, opts->client_key_file, SSL_FILETYPE_PEM) != 1) {
            rc = enr_error_openssl(err, ENR_E_IO, "cannot load the client key %s", opts->client_key_file);
            goto fail;
        }
        if (SSL_CTX_check_private_key(ctx) != 1) {
            rc = enr_error_openssl(err, ENR_E_VERIFY, "the client key does not belong to the client certificate");
            goto fail;
        }
    }
    *ctx_out = ctx;
    *key_out = key;
    return ENR_OK;
fail:
    SSL_CTX_free(ctx); /* before the key that owns its library context */
    enr_tls_key_free(key);
    return rc;
}

enr_code enr_tls_expect_host(X509_VERIFY_PARAM *param, const char *host, bool host_is_ip, enr_error *err)
{
    /* Name check: an IP address against the IP SANs, a name against DNS SANs. */
    if (host_is_ip) {
        if (X509_VERIFY_PARAM_set1_ip_asc(param, host) != 1)
            return enr_error_openssl(err, ENR_E_CRYPTO, "cannot set the expected IP address");
        return ENR_OK;
    }
    /* SANs only (a subject CN is not a name check anyone audits), and a
     * wildcard only as a whole left-most label. */
    X509_VERIFY_PARAM_set_hostflags(param, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS |
                                               X509_CHECK_FLAG_NEVER_CHECK_SUBJECT);
    if (X509_VERIFY_PARAM_set1_host(param, host, 0) != 1)
        return enr_error_openssl(err, ENR_E_CRYPTO, "cannot set the expected host name");
    return ENR_OK;
}

enr_code enr_http_client_new(const char *url, const enr_http_client_options *opts,
                             enr_http_client **out, enr_error *err)
{
    if (out == NULL || opts == NULL)
        return enr_error_set(err, ENR_E_USAGE, "enr_http_client_new: NULL argument");
    *out = NULL;
    if ((opts->trust_file == NULL) == (opts->trust_pem == NULL))
        return enr_error_set(err, ENR_E_USAGE, "a trust anchor for the service is required: a file or PEM "
                                               "text, not both");
    enr_http_client *c = calloc(1, sizeof *c);
    if (c == NULL)
        return enr_error_set(err, ENR_E_NOMEM, "out of memory");
    enr_code rc = enr_url_parse(url, &c->url, err);
    if (rc != ENR_OK)
        goto fail;
    c->connect_timeout_ms = opts->connect_timeout_ms > 0 ? opts->connect_timeout_ms : 10000;
    c->io_timeout_ms = opts->io_timeout_ms > 0 ? opts->io_timeout_ms : 30000;
    c->max_body = opts->max_body > 0 ? opts->max_body : ENR_HTTP_BODY_DEFAULT_MAX;
    c->total_timeout_ms = opts->total_timeout_ms > 0 ? opts->total_timeout_ms : 0;
    c->trust_in_memory = opts->trust_pem != NULL;
    if ((rc = enr_tls_client_context_new(opts, &c->ctx, &c->tls_key, err)) != ENR_OK)
        goto fail;
    *out = c;
    return ENR_OK;
fail:
    enr_http_client_free(c);
    return rc;
}

void enr_http_client_free(enr_http_client *client)
{
    if (client == NULL)
        return;
    SSL_CTX_free(client->ctx);
    enr_tls_key_free(client->tls_key);
    free(client);
}

static long long now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Waits for `events` on fd until the deadline: 1 ready, 0 timed out, -1 error. */
static int wait_fd(int fd, short events, long long deadline)
{
    for (;;) {
        long long left = deadline - now_ms();
        if (left <= 0)
            return 0;
        struct pollfd pfd = {fd, events, 0};
        int n = poll(&pfd, 1, left > 60000 ? 60000 : (int)left);
        if (n > 0)
            return 1;
        if (n < 0 && errno != EINTR)
            return -1;
    }
}

/* No deadline: the per-step timeouts alone. */
#define NO_DEADLINE LLONG_MAX

static long long sooner(long long a, long long b)
{
    return a < b ? a : b;
}

/* getaddrinfo on a helper thread, for a caller with a deadline: the caller
 * waits until the deadline at most; a thread still resolving then finishes
 * on its own, and whichever of the two lets go last frees the job. */
typedef struct resolve_job {
    pthread_mutex_t lock;
    pthread_cond_t cond; /* CLOCK_MONOTONIC, like now_ms */
    int refs;            /* the caller and the thread */
    bool done;
    int status;          /* getaddrinfo's */
    struct addrinfo *res;
    struct addrinfo hints;
    char host[ENR_HTTP_HOST_MAX + 1];
    char port[8];
} resolve_job;

static void resolve_job_release(resolve_job *j)
{
    pthread_mutex_lock(&j->lock);
    int left = --j->refs;
    pthread_mutex_unlock(&j->lock);
    if (left > 0)
        return;
    if (j->res != NULL)
        freeaddrinfo(j->res);
    pthread_cond_destroy(&j->cond);
    pthread_mutex_destroy(&j->lock);
    free(j);
}

static void *resolve_thread(void *arg)
{
    resolve_job *j = arg;
    struct addrinfo *res = NULL;
    int g = getaddrinfo(j->host, j->port, &j->hints, &res);
    pthread_mutex_lock(&j->lock);
    j->status = g;
    j->res = g == 0 ? res : NULL;
    j->done = true;
    pthread_cond_signal(&j->cond);
    pthread_mutex_unlock(&j->lock);
    resolve_job_release(j);
    return NULL;
}

/* getaddrinfo's status (0: *res is the caller's), or EAI_AGAIN with
 * *timed_out when the deadline passed first. */
static int resolve(const enr_http_client *c, const char *port, const struct addrinfo *hints, long long deadline,
                   struct addrinfo **res, bool *timed_out)
{
    *timed_out = false;
    *res = NULL;
    if (deadline == NO_DEADLINE || c->url.host_is_ip) /* an address is not looked up */
        return getaddrinfo(c->url.host, port, hints, res);
    resolve_job *j = calloc(1, sizeof *j);
    if (j == NULL)
        return EAI_MEMORY;
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    bool cond_ok = pthread_cond_init(&j->cond, &ca) == 0;
    pthread_condattr_destroy(&ca);
    if (!cond_ok || pthread_mutex_init(&j->lock, NULL) != 0) {
        if (cond_ok)
            pthread_cond_destroy(&j->cond);
        free(j);
        return EAI_SYSTEM;
    }
    j->refs = 2;
    j->hints = *hints;
    snprintf(j->host, sizeof j->host, "%s", c->url.host);
    snprintf(j->port, sizeof j->port, "%s", port);
    pthread_attr_t ta;
    pthread_t tid;
    pthread_attr_init(&ta);
    pthread_attr_setdetachstate(&ta, PTHREAD_CREATE_DETACHED);
    int created = pthread_create(&tid, &ta, resolve_thread, j);
    pthread_attr_destroy(&ta);
    if (created != 0) {
        j->refs = 1;
        resolve_job_release(j);
        errno = created;
        return EAI_SYSTEM;
    }
    struct timespec until = {(time_t)(deadline / 1000), (long)(deadline % 1000) * 1000000L};
    int status = EAI_AGAIN;
    pthread_mutex_lock(&j->lock);
    while (!j->done)
        if (pthread_cond_timedwait(&j->cond, &j->lock, &until) == ETIMEDOUT)
            break;
    if (j->done) {
        status = j->status;
        *res = j->res;
        j->res = NULL;
    } else {
        *timed_out = true;
    }
    pthread_mutex_unlock(&j->lock);
    resolve_job_release(j);
    return status;
}

static enr_code connect_any(const enr_http_client *c, long long total_deadline, int *fd_out, enr_error *err)
{
    char port[8];
    snprintf(port, sizeof port, "%u", c->url.port);
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM,
                             .ai_flags = c->url.host_is_ip ? AI_NUMERICHOST : 0};
    struct addrinfo *res = NULL;
    bool timed_out = false;
    int g = resolve(c, port, &hints, total_deadline, &res, &timed_out);
    if (timed_out)
        return enr_error_set(err, ENR_E_IO, "cannot resolve %s: no answer within the %d ms allowed", c->url.host,
                             c->total_timeout_ms);
    if (g != 0)
        return enr_error_set(err, ENR_E_IO, "cannot resolve %s: %s", c->url.host, gai_strerror(g));
    int saved = 0;
    for (struct addrinfo *a = res; a != NULL && now_ms() < total_deadline; a = a->ai_next) {
        int fd = socket(a->ai_family, a->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, a->ai_protocol);
        if (fd < 0) {
            saved = errno;
            continue;
        }
        int one = 1;
        (void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        int r = connect(fd, a->ai_addr, a->ai_addrlen);
        if (r != 0 && errno == EINPROGRESS) {
            int w = wait_fd(fd, POLLOUT, sooner(now_ms() + c->connect_timeout_ms, total_deadline));
            socklen_t sl = sizeof saved;
            if (w == 1 && getsockopt(fd, SOL_SOCKET, SO_ERROR, &saved, &sl) == 0 && saved == 0)
                r = 0;
            else if (w == 0)
                timed_out = true;
            else if (w < 0)
                saved = errno;
        } else if (r != 0) {
            saved = errno;
        }
        if (r == 0) {
            freeaddrinfo(res);
            *fd_out = fd;
            return ENR_OK;
        }
        close(fd);
    }
    freeaddrinfo(res);
    if (now_ms() >= total_deadline)
        return enr_error_set(err, ENR_E_IO, "cannot connect to %s port %u: timed out (the %d ms allowed passed)",
                             c->url.host, c->url.port, c->total_timeout_ms);
    if (timed_out && saved == 0)
        return enr_error_set(err, ENR_E_IO, "cannot connect to %s port %u: timed out after %d ms", c->url.host,
                             c->url.port, c->connect_timeout_ms);
    return enr_error_set(err, ENR_E_IO, "cannot connect to %s port %u: %s", c->url.host, c->url.port,
                         strerror(saved ? saved : ECONNREFUSED));
}

/* Drives one SSL call to completion against the deadline. Returns the
 * call's result (> 0 done, 0 clean EOF for reads) or -1 on error/timeout,
 * with *timed_out telling which. */
typedef int (*ssl_op)(SSL *ssl, void *buf, int len);

static int op_read(SSL *ssl, void *buf, int len) { return SSL_read(ssl, buf, len); }
static int op_write(SSL *ssl, void *buf, int len) { return SSL_write(ssl, buf, len); }
static int op_connect(SSL *ssl, void *buf, int len)
{
    (void)buf;
    (void)len;
    return SSL_connect(ssl);
}

static int drive(SSL *ssl, int fd, ssl_op op, void *buf, int len, long long deadline, bool *timed_out,
                 bool *eof)
{
    *timed_out = false;
    *eof = false;
    for (;;) {
        ERR_clear_error();
        int r = op(ssl, buf, len);
        if (r > 0)
            return r;
        int e = SSL_get_error(ssl, r);
        short ev;
        if (e == SSL_ERROR_WANT_READ)
            ev = POLLIN;
        else if (e == SSL_ERROR_WANT_WRITE)
            ev = POLLOUT;
        else if (e == SSL_ERROR_ZERO_RETURN) {
            *eof = true;
            return 0;
        } else if (e == SSL_ERROR_SSL && op == op_read &&
                   ERR_GET_REASON(ERR_peek_error()) == SSL_R_UNEXPECTED_EOF_WHILE_READING) {
            /* A close without close_notify may be forged: it is safe to read
             * as the end only because the parser accepts framed answers alone
             * (Content-Length or chunked) and refuses an unfinished one. */
            ERR_clear_error();
            *eof = true;
            return 0;
        } else
            return -1;
        int w = wait_fd(fd, ev, deadline);
        if (w == 0) {
            *timed_out = true;
            return -1;
        }
        if (w < 0)
            return -1;
    }
}

static bool has_crlf(const char *s)
{
    return s != NULL && strpbrk(s, "\r\n") != NULL;
}

/* The request head: method, path, Host, the caller's fields, framing. */
static enr_code build_head(const enr_http_client *c, const enr_http_request *req, char **out, size_t *len,
                           enr_error *err)
{
    if (req->method == NULL || req->path == NULL || req->path[0] != '/' || has_crlf(req->method) ||
        has_crlf(req->path) || strchr(req->path, ' ') != NULL || strchr(req->method, ' ') != NULL)
        return enr_error_set(err, ENR_E_USAGE, "bad HTTP method or path");
    size_t cap = 256 + strlen(req->method) + strlen(req->path) + strlen(c->url.host) + strlen(c->url.base_path);
    for (size_t i = 0; i < req->header_count; i++) {
        const enr_http_header *h = &req->headers[i];
        if (h->name == NULL || h->value == NULL || has_crlf(h->name) || has_crlf(h->value) ||
            strchr(h->name, ':') != NULL)
            return enr_error_set(err, ENR_E_USAGE, "bad HTTP header field (name or value with CR, LF or ':')");
        cap += strlen(h->name) + strlen(h->value) + 4;
    }
    char *b = malloc(cap);
    if (b == NULL)
        return enr_error_set(err, ENR_E_NOMEM, "out of memory");
    bool v6 = strchr(c->url.host, ':') != NULL;
    int n = snprintf(b, cap, "%s %s%s HTTP/1.1\r\nHost: %s%s%s:%u\r\n", req->method, c->url.base_path, req->path,
                     v6 ? "[" : "", c->url.host, v6 ? "]" : "", c->url.port);
    size_t used = n > 0 ? (size_t)n : 0;
    for (size_t i = 0; i < req->header_count; i++) {
        n = snprintf(b + used, cap - used, "%s: %s\r\n", req->headers[i].name, req->headers[i].value);
        used += n > 0 ? (size_t)n : 0;
    }
    n = snprintf(b + used, cap - used, "Content-Length: %zu\r\nConnection: close\r\n\r\n", req->body_len);
    used += n > 0 ? (size_t)n : 0;
    *out = b;
    *len = used;
    return ENR_OK;
}

static enr_code tls_failure(const enr_http_client *c, SSL *ssl, bool timed_out, const char *step, enr_error *err)
{
    if (timed_out)
        return enr_error_set(err, ENR_E_IO, "%s %s: timed out", step, c->url.host);
    long v = SSL_get_verify_result(ssl);
    if (v != X509_V_OK)
        return enr_error_set(err, ENR_E_VERIFY,
                             "the service at %s is not trusted: %s (check %s: it must hold the root "
                             "that issued the service's certificate, and the certificate must name %s)",
                             c->url.host, X509_verify_cert_error_string(v),
                             c->trust_in_memory ? "the configured CA" : "--trust", c->url.host);
    unsigned long e = ERR_peek_error();
    if (e != 0)
        return enr_error_openssl(err, ENR_E_IO, "%s %s failed", step, c->url.host);
    return enr_error_set(err, ENR_E_IO, "%s %s failed: %s", step, c->url.host,
                         errno ? strerror(errno) : "connection closed");
}

enr_code enr_http_client_send(enr_http_client *c, const enr_http_request *req, enr_http_response *resp,
                              enr_error *err)
{
    if (c == NULL || req == NULL || resp == NULL || (req->body == NULL && req->body_len > 0))
        return enr_error_set(err, ENR_E_USAGE, "enr_http_client_send: NULL argument");
    memset(resp, 0, sizeof *resp);
    char *head = NULL;
    size_t head_len = 0;
    enr_code rc = build_head(c, req, &head, &head_len, err);
    if (rc != ENR_OK)
        return rc;
    int fd = -1;
    SSL *ssl = NULL;
    unsigned char *buf = NULL;
    /* Taken before anything else: the whole call is bounded by it. */
    long long total_deadline = c->total_timeout_ms > 0 ? now_ms() + c->total_timeout_ms : NO_DEADLINE;
    if ((rc = connect_any(c, total_deadline, &fd, err)) != ENR_OK)
        goto done;
    long long deadline = sooner(now_ms() + c->io_timeout_ms, total_deadline);
    int allowed_ms = deadline == total_deadline ? c->total_timeout_ms : c->io_timeout_ms;
    ssl = SSL_new(c->ctx);
    if (ssl == NULL || SSL_set_fd(ssl, fd) != 1) {
        rc = enr_error_openssl(err, ENR_E_CRYPTO, "cannot make a TLS connection object");
        goto done;
    }
    /* The name check, and SNI (which is for names only). */
    if ((rc = enr_tls_expect_host(SSL_get0_param(ssl), c->url.host, c->url.host_is_ip, err)) != ENR_OK)
        goto done;
    if (!c->url.host_is_ip && SSL_set_tlsext_host_name(ssl, c->url.host) != 1) {
        rc = enr_error_openssl(err, ENR_E_CRYPTO, "cannot set the expected host name");
        goto done;
    }
    bool timed_out, eof;
    errno = 0;
    if (drive(ssl, fd, op_connect, NULL, 0, deadline, &timed_out, &eof) <= 0) {
        rc = tls_failure(c, ssl, timed_out, "TLS handshake with", err);
        goto done;
    }
    const unsigned char *parts[2] = {(const unsigned char *)head, req->body};
    size_t lens[2] = {head_len, req->body_len};
    for (int p = 0; p < 2; p++) {
        for (size_t off = 0; off < lens[p];) {
            size_t n = lens[p] - off > 16384 ? 16384 : lens[p] - off;
            int w = drive(ssl, fd, op_write, (void *)(uintptr_t)(parts[p] + off), (int)n, deadline, &timed_out, &eof);
            if (w <= 0) {
                rc = tls_failure(c, ssl, timed_out, "sending to", err);
                goto done;
            }
            off += (size_t)w;
        }
    }
    size_t cap = ENR_HTTP_HEAD_MAX + c->max_body + c->max_body / 4 + 4096, used = 0;
    size_t alloc = 16384;
    buf = malloc(alloc);
    if (buf == NULL) {
        rc = enr_error_set(err, ENR_E_NOMEM, "out of memory");
        goto done;
    }
    for (;;) {
        if (used == alloc) {
            if (alloc >= cap) {
                rc = enr_error_set(err, ENR_E_PARSE, "the answer from %s is larger than %zu bytes", c->url.host,
                                   cap);
                goto done;
            }
            size_t na = alloc * 2 > cap ? cap : alloc * 2;
            unsigned char *nb = realloc(buf, na);
            if (nb == NULL) {
                rc = enr_error_set(err, ENR_E_NOMEM, "out of memory");
                goto done;
            }
            buf = nb;
            alloc = na;
        }
        errno = 0;
        int r = drive(ssl, fd, op_read, buf + used, (int)(alloc - used > 65536 ? 65536 : alloc - used), deadline,
                      &timed_out, &eof);
        if (r < 0) {
            if (timed_out)
                rc = enr_error_set(err, ENR_E_IO, "no complete answer from %s within %d ms", c->url.host,
                                   allowed_ms);
            else
                rc = enr_error_openssl(err, ENR_E_IO, "reading from %s failed%s%s", c->url.host,
                                       errno ? ": " : "", errno ? strerror(errno) : "");
            goto done;
        }
        used += (size_t)r;
        bool complete = false;
        rc = enr_http_response_parse(buf, used, eof, c->max_body, resp, &complete, err);
        if (rc != ENR_OK) {
            enr_error_prefix(err, "answer from %s", c->url.host);
            goto done;
        }
        if (complete)
            break;
    }
    (void)SSL_shutdown(ssl);
done:
    SSL_free(ssl);
    if (fd >= 0)
        close(fd);
    free(buf);
    if (head != NULL)
        OPENSSL_cleanse(head, head_len); /* it holds the Authorization header (a SAS token) */
    free(head);
    return rc;
}
