/* The HTTP(S) front of enrolld: a worker thread per core, each with its own
 * event loop accepting on one shared listening socket (bound once, without
 * SO_REUSEPORT, so a second enrolld on the address fails to start instead of
 * taking a share of the devices), sharing one SSL_CTX. Hostile clients are
 * bounded per worker: a connection cap, handshake and whole-request
 * deadlines, a pause (and a reserve descriptor) when accept runs out of
 * descriptors, and rate-limited log lines. */
#include <arpa/inet.h>
#include <errno.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/listener.h>
#include <event2/keyvalq_struct.h>
#include <event2/thread.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/ssl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <poll.h>
#include <time.h>
#include <unistd.h>

#include "service/crl_publisher.h"
#include "enroll/dps.h"
#include "enroll/duration.h"
#include "enroll/service.h"
#include "service/admin_api.h"
#include "service/aws_mqtt.h"
#include "service/dps_mqtt.h"
#include "service/est_http.h"
#include "enroll/provision.h"

#define LATENCY_BUCKETS 8
static const double LATENCY_BOUNDS_MS[LATENCY_BUCKETS] = {1, 2, 5, 10, 25, 50, 100, 1000};

#define COMMIT_BUCKETS 6
static const double COMMIT_BOUNDS_MS[COMMIT_BUCKETS] = {0.5, 1, 2, 5, 10, 50};
#define REJECTION_KINDS 24

typedef struct worker_metrics {
    _Atomic unsigned long registrations;          /* answered 200 */
    _Atomic unsigned long issuances;
    _Atomic unsigned long rejections[REJECTION_KINDS];
    _Atomic int rejection_codes[REJECTION_KINDS]; /* each slot set once, by the owning worker */
    _Atomic unsigned long commit_bucket[COMMIT_BUCKETS + 1];
    _Atomic unsigned long commit_us_sum;
    _Atomic unsigned long commits;
    _Atomic unsigned long requests;
    _Atomic unsigned long by_class[6]; /* 1xx..5xx by status / 100 */
    _Atomic unsigned long latency_bucket[LATENCY_BUCKETS + 1];
    _Atomic unsigned long latency_ms_sum;
    _Atomic unsigned long dropped[3];  /* by drop_reason */
    _Atomic long open_connections;
    _Atomic unsigned long accept_pauses;
} worker_metrics;

/* Why a connection was closed by enrolld rather than by its client. */
enum drop_reason { DROP_HANDSHAKE = 0, DROP_REQUEST = 1, DROP_SHED = 2 };
static const char *const DROP_NAMES[3] = {"handshake_timeout", "request_timeout", "shed_at_cap"};

/* Log lines that a client can make repeat are limited per worker and kind
 * to log_lines_per_second; the rest are counted in one "suppressed" line. */
enum log_kind { LOG_ACCEPT_FAILED = 0, LOG_REFUSED, LOG_ERROR_ANSWER, LOG_DROPPED, LOG_KINDS };
static const char *const LOG_NAMES[LOG_KINDS] = {"accept_failed", "request_4xx", "request_5xx", "dropped"};

typedef struct log_limit {
    double window_start_ms;
    int lines;
    unsigned long suppressed;
} log_limit;

/* A TLS connection, from accept to the SSL's end (an ex_data free callback
 * tells us: evhttp frees connections on its own). Only its worker's thread
 * touches it. */
typedef struct tls_conn {
    struct worker *w;
    struct bufferevent *bev;
    double accepted_ms;
    double ready_ms;          /* handshake finished; 0: still in it */
    double request_start_ms;  /* ready, or the last answer: a whole request must arrive by the deadline */
    bool busy;                /* a request is being answered: no deadline */
    bool dropping;            /* shut down, its free is on the way */
    struct tls_conn *prev, *next; /* oldest first */
} tls_conn;

typedef struct worker {
    struct enr_service *svc;
    int index;
    int fd;
    struct event_base *base;
    struct evhttp *http;
    struct evhttp_bound_socket *bound;
    struct event *stop_event;
    struct event *drain_timer;
    pthread_t thread;
    bool started;
    _Atomic int in_flight;
    time_t stop_deadline;
    unsigned long next_request;
    enr_provision *core;        /* the provisioning core on this loop; NULL without id_scope */
    admin_api *admin;           /* NULL when the config has no admin section */
    dps_mqtt *mqtt;             /* DPS over MQTT on this loop; NULL when not configured */
    enr_aws_loop *aws_loop;     /* AWS fleet provisioning's completions on this loop */
    aws_mqtt *aws;              /* its MQTT front end; NULL when not configured */
    worker_metrics metrics;
    /* Hostile clients. */
    struct evconnlistener *listener; /* evhttp's, over this worker's dup of the socket */
    tls_conn *conns, *conns_tail;
    int conn_count;
    int conn_cap;                    /* this worker's share of max_connections */
    bool paused_cap, paused_fds, stopping;
    int reserve_fd;                  /* closed to accept-and-close one waiting client when out of fds */
    struct event *tick;              /* deadlines, shedding, suppressed-line counts */
    struct event *resume;            /* accepting again after running out of fds */
    log_limit logs[LOG_KINDS];
} worker;

/* A DPS or EST request in the core's hands, until its outcome is sent. */
typedef struct dps_call {
    worker *w;
    struct evhttp_request *req;
    double start_ms;
    unsigned long id;
    enum evhttp_cmd_type cmd;
    bool client_cert;
} dps_call;

struct enr_service {
    enr_service_config cfg;     /* borrowed strings from the caller's config */
    pthread_mutex_t tls_lock;
    SSL_CTX *tls;               /* NULL for plain HTTP */
    int port;
    int worker_count;
    worker *workers;
    enr_provision_shared *core; /* committer and operations in flight; NULL without id_scope */
    int listen_fd;              /* bound once; each worker accepts on a dup */
    long max_connections;       /* effective: the config's, or from the fd limit */
    int conn_index;             /* SSL ex_data index of a connection's tls_conn */
    int mqtt_listen_fd;         /* -1: no MQTT; else bound once, each worker accepts on a dup */
    int mqtt_port;
    enr_aws_core *aws_core;     /* AWS fleet provisioning's threads; NULL when not configured */
    int aws_listen_fd;          /* -1: no AWS port */
    int aws_port;
    crl_publisher *crl;         /* CRLs kept current for brokers; NULL when not configured */
};

/* ---- TLS ---- */

static int accept_any_client_certificate(int preverify, X509_STORE_CTX *ctx)
{
    (void)preverify, (void)ctx;
    return 1; /* which bootstrap CA a device may use is decided per enrollment, not here */
}

static enr_code tls_context_new(const enr_service_config *cfg, SSL_CTX **out, enr_error *err)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
    if (ctx == NULL)
        return enr_error_openssl(err, ENR_E_CRYPTO, "cannot create a TLS context");
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_CIPHER_SERVER_PREFERENCE);
    enr_code rc = ENR_OK;
    if (SSL_CTX_use_certificate_chain_file(ctx, cfg->tls_cert) != 1)
        rc = enr_error_openssl(err, ENR_E_IO, "%s: cannot load the server certificate chain", cfg->tls_cert);
    else if (SSL_CTX_use_PrivateKey_file(ctx, cfg->tls_key, SSL_FILETYPE_PEM) != 1)
        rc = enr_error_openssl(err, ENR_E_IO, "%s: cannot load the server key, or it does not belong to %s",
                               cfg->tls_key, cfg->tls_cert);
    else if (SSL_CTX_check_private_key(ctx) != 1)
        rc = enr_error_openssl(err, ENR_E_POLICY, "%s does not belong to %s", cfg->tls_key, cfg->tls_cert);
    if (rc == ENR_OK && cfg->tls_client_ca != NULL) {
        STACK_OF(X509_NAME) *names = SSL_load_client_CA_file(cfg->tls_client_ca);
        if (names == NULL)
            rc = enr_error_openssl(err, ENR_E_IO, "%s: cannot load client CA names", cfg->tls_client_ca);
        else
            SSL_CTX_set_client_CA_list(ctx, names);
    }
    /* Ask every client for a certificate, require none: each route decides. */
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, accept_any_client_certificate);
    SSL_CTX_set_session_id_context(ctx, (const unsigned char *)"enrolld", 7);
    /* Devices register once and renew weeks later, long after any ticket
     * would have expired: TLS 1.3's two tickets per handshake (an encoding
     * of the session with the client's certificate, encrypted) are work no
     * client ever uses. */
    SSL_CTX_set_num_tickets(ctx, 0);
    if (rc != ENR_OK) {
        SSL_CTX_free(ctx);
        return rc;
    }
    *out = ctx;
    return ENR_OK;
}

/* ---- hostile clients ---- */

static double now_ms(void);

static bool log_allowed(worker *w, enum log_kind kind);
static void log_window(worker *w, enum log_kind k);

static void listener_update(worker *w)
{
    if (w->listener == NULL)
        return;
    if (w->paused_cap || w->paused_fds || w->stopping)
        evconnlistener_disable(w->listener);
    else
        evconnlistener_enable(w->listener);
}

/* The SSL of a connection is being freed: so is the connection. */
static void conn_freed(void *parent, void *ptr, CRYPTO_EX_DATA *ad, int idx, long argl, void *argp)
{
    (void)parent, (void)ad, (void)idx, (void)argl, (void)argp;
    tls_conn *c = ptr;
    if (c == NULL)
        return;
    worker *w = c->w;
    if (c->prev != NULL)
        c->prev->next = c->next;
    else
        w->conns = c->next;
    if (c->next != NULL)
        c->next->prev = c->prev;
    else
        w->conns_tail = c->prev;
    w->conn_count--;
    atomic_fetch_sub(&w->metrics.open_connections, 1);
    free(c);
    if (w->paused_cap && w->conn_count < w->conn_cap) {
        w->paused_cap = false;
        listener_update(w);
    }
}

static void conn_drop(worker *w, tls_conn *c, enum drop_reason why)
{
    evutil_socket_t fd = bufferevent_getfd(c->bev);
    c->dropping = true;
    /* The socket stays open (no descriptor reuse under libevent's feet):
     * the loop reads EOF and evhttp frees the connection as usual. */
    if (fd >= 0)
        shutdown(fd, SHUT_RDWR);
    atomic_fetch_add(&w->metrics.dropped[why], 1);
    if (log_allowed(w, LOG_DROPPED)) {
        char at[32];
        enr_time_format(time(NULL), at, sizeof at);
        fprintf(stderr, "{\"ts\":\"%s\",\"event\":\"dropped\",\"worker\":%d,\"reason\":\"%s\",\"age_ms\":%.0f}\n", at,
                w->index, DROP_NAMES[why], now_ms() - c->accepted_ms);
    }
}

/* The connection a request came on (TLS only), or NULL. */
static tls_conn *conn_of(worker *w, struct evhttp_request *req)
{
    struct evhttp_connection *evcon = req ? evhttp_request_get_connection(req) : NULL;
    struct bufferevent *bev = evcon ? evhttp_connection_get_bufferevent(evcon) : NULL;
    SSL *ssl = bev ? bufferevent_openssl_get_ssl(bev) : NULL;
    return ssl ? SSL_get_ex_data(ssl, w->svc->conn_index) : NULL;
}

/* A request was read whole: no deadline while it is answered. */
static void conn_busy(worker *w, struct evhttp_request *req)
{
    tls_conn *c = conn_of(w, req);
    if (c != NULL) {
        c->busy = true;
        if (c->ready_ms == 0)
            c->ready_ms = now_ms();
    }
}

/* Answered: the next request on the connection has the whole deadline. */
static void conn_idle(worker *w, struct evhttp_request *req)
{
    tls_conn *c = conn_of(w, req);
    if (c != NULL) {
        c->busy = false;
        c->request_start_ms = now_ms();
    }
}

/* A connection's TLS object from the context in force (a reload swaps it
 * under the lock; the SSL keeps its own reference). HTTPS and MQTT. */
static SSL *worker_ssl_new(void *arg)
{
    worker *w = arg;
    pthread_mutex_lock(&w->svc->tls_lock);
    SSL *ssl = SSL_new(w->svc->tls);
    pthread_mutex_unlock(&w->svc->tls_lock);
    return ssl;
}

static struct bufferevent *tls_bufferevent(struct event_base *base, void *arg)
{
    worker *w = arg;
    SSL *ssl = worker_ssl_new(w);
    if (ssl == NULL)
        return NULL;
    tls_conn *c = calloc(1, sizeof *c);
    struct bufferevent *bev =
        c ? bufferevent_openssl_socket_new(base, -1, ssl, BUFFEREVENT_SSL_ACCEPTING, BEV_OPT_CLOSE_ON_FREE) : NULL;
    if (bev == NULL) {
        free(c);
        SSL_free(ssl);
        return NULL;
    }
    bufferevent_openssl_set_allow_dirty_shutdown(bev, 1);
    *c = (tls_conn){.w = w, .bev = bev, .accepted_ms = now_ms(), .prev = w->conns_tail};
    if (w->conns_tail != NULL)
        w->conns_tail->next = c;
    else
        w->conns = c;
    w->conns_tail = c;
    w->conn_count++;
    atomic_fetch_add(&w->metrics.open_connections, 1);
    SSL_set_ex_data(ssl, w->svc->conn_index, c);
    if (w->conn_count >= w->conn_cap) { /* take no more until one goes */
        w->paused_cap = true;
        listener_update(w);
    }
    return bev;
}

/* A client is waiting in the listen queue. */
static bool listen_pending(worker *w)
{
    struct pollfd p = {.fd = w->svc->listen_fd, .events = POLLIN};
    return poll(&p, 1, 0) == 1 && (p.revents & POLLIN);
}

/* Every tick: deadlines; at the cap with clients waiting, the oldest
 * connection that is not being answered and is older than a second makes
 * room (a device's handshake takes milliseconds; slow clients hold slots). */
static void worker_tick(evutil_socket_t fd, short what, void *arg)
{
    (void)fd, (void)what;
    worker *w = arg;
    const enr_service_config *cfg = &w->svc->cfg;
    double now = now_ms();
    double handshake_ms = cfg->handshake_timeout_seconds * 1000.0, request_ms = cfg->request_timeout_seconds * 1000.0;
    tls_conn *oldest_idle = NULL;
    for (tls_conn *c = w->conns, *next; c != NULL; c = next) {
        next = c->next;
        if (c->busy || c->dropping)
            continue;
        if (c->ready_ms == 0) {
            SSL *ssl = bufferevent_openssl_get_ssl(c->bev);
            if (ssl != NULL && SSL_is_init_finished(ssl)) {
                c->ready_ms = c->request_start_ms = now;
            } else if (now - c->accepted_ms > handshake_ms) {
                conn_drop(w, c, DROP_HANDSHAKE);
                continue;
            }
        } else if (now - c->request_start_ms > request_ms) {
            conn_drop(w, c, DROP_REQUEST);
            continue;
        }
        if (oldest_idle == NULL && now - c->accepted_ms > 1000.0)
            oldest_idle = c;
    }
    if (w->paused_cap && oldest_idle != NULL && listen_pending(w))
        conn_drop(w, oldest_idle, DROP_SHED);
    for (int k = 0; k < LOG_KINDS; k++)
        log_window(w, (enum log_kind)k); /* the count of a finished second, if any */
}

/* accept() failed. Out of descriptors (EMFILE/ENFILE) the listening socket
 * stays readable, so libevent would call accept again at once, forever:
 * instead stop accepting for a moment, and spend the reserve descriptor to
 * accept and close the oldest waiting client (it learns at once, instead of
 * timing out). */
static int tick_of(const struct event_base *base, const struct event *ev, void *arg)
{
    (void)base;
    if (event_get_callback(ev) != worker_tick)
        return 0;
    *(worker **)arg = event_get_callback_arg(ev);
    return 1;
}

static void accept_failed(struct evconnlistener *listener, void *arg)
{
    (void)arg; /* evhttp's: the listener's callbacks share evhttp's argument */
    int e = EVUTIL_SOCKET_ERROR();
    /* Which worker: the one whose tick runs on this loop (rare: at most a
     * few times a second, since accepting pauses). */
    worker *w = NULL;
    (void)event_base_foreach_event(evconnlistener_get_base(listener), tick_of, &w);
    if (w == NULL)
        return;
    bool out_of_fds = e == EMFILE || e == ENFILE || e == ENOBUFS || e == ENOMEM;
    if (out_of_fds) {
        if (w->reserve_fd >= 0) {
            close(w->reserve_fd);
            int fd = accept(evconnlistener_get_fd(listener), NULL, NULL);
            if (fd >= 0)
                close(fd);
            w->reserve_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
        }
        w->paused_fds = true;
        listener_update(w);
        struct timeval pause = {0, 100 * 1000};
        evtimer_add(w->resume, &pause);
        atomic_fetch_add(&w->metrics.accept_pauses, 1);
    }
    if (log_allowed(w, LOG_ACCEPT_FAILED)) {
        char at[32];
        enr_time_format(time(NULL), at, sizeof at);
        fprintf(stderr, "{\"ts\":\"%s\",\"event\":\"accept_failed\",\"worker\":%d,\"error\":\"%s\",\"paused_ms\":%d}\n",
                at, w->index, strerror(e), out_of_fds ? 100 : 0);
    }
}

static void accept_resume(evutil_socket_t fd, short what, void *arg)
{
    (void)fd, (void)what;
    worker *w = arg;
    w->paused_fds = false;
    listener_update(w);
}

/* Starts a new second for this kind when the last one is over, writing how
 * many lines it suppressed. */
static void log_window(worker *w, enum log_kind k)
{
    log_limit *l = &w->logs[k];
    double now = now_ms();
    if (now - l->window_start_ms >= 1000.0) {
        if (l->suppressed > 0) {
            char at[32];
            enr_time_format(time(NULL), at, sizeof at);
            fprintf(stderr, "{\"ts\":\"%s\",\"event\":\"suppressed\",\"worker\":%d,\"what\":\"%s\",\"count\":%lu}\n",
                    at, w->index, LOG_NAMES[k], l->suppressed);
        }
        l->window_start_ms = now;
        l->lines = 0;
        l->suppressed = 0;
    }
}

/* True when a line of this kind may be written now. */
static bool log_allowed(worker *w, enum log_kind kind)
{
    log_window(w, kind);
    log_limit *l = &w->logs[kind];
    if (l->lines < w->svc->cfg.log_lines_per_second) {
        l->lines++;
        return true;
    }
    l->suppressed++;
    return false;
}

/* ---- requests ---- */

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1000.0 + (double)ts.tv_nsec / 1e6;
}

/* evhttp puts an answer's head and body in separate buffer chains, and
 * bufferevent_openssl writes each chain as a TLS record of its own, with a
 * write(2) each: made one chain, an answer is one record and one system
 * call (measured: a third of enrolld's socket writes per registration). */
static void send_reply(struct evhttp_request *req, int status, const char *reason, struct evbuffer *body)
{
    struct evhttp_connection *conn = evhttp_request_get_connection(req);
    struct bufferevent *bev = conn != NULL ? evhttp_connection_get_bufferevent(conn) : NULL;
    evhttp_send_reply(req, status, reason, body);
    if (bev != NULL)
        evbuffer_pullup(bufferevent_get_output(bev), -1);
}

static void reply_json(struct evhttp_request *req, int status, const char *reason, const char *json)
{
    struct evbuffer *body = evbuffer_new();
    if (body != NULL)
        evbuffer_add(body, json, strlen(json));
    struct evkeyvalq *headers = evhttp_request_get_output_headers(req);
    evhttp_add_header(headers, "Content-Type", "application/json; charset=utf-8");
    /* Every "retry later" says when: device SDKs wait that long. */
    if ((status == 503 || status == 429) && evhttp_find_header(headers, "Retry-After") == NULL)
        evhttp_add_header(headers, "Retry-After", "5");
    send_reply(req, status, reason, body);
    if (body != NULL)
        evbuffer_free(body);
}

/* AWS fleet provisioning: its connections and what the core answered. */
static void aws_metrics(enr_service *svc, struct evbuffer *out)
{
    unsigned long c = 0, r = 0, m = 0, t = 0, a = 0;
    long o = 0;
    for (int i = 0; i < svc->worker_count; i++) {
        if (svc->workers[i].aws == NULL)
            continue;
        const mqtt_counters *k = aws_mqtt_get_counters(svc->workers[i].aws);
        c += atomic_load(&k->connections), o += atomic_load(&k->open), r += atomic_load(&k->refused);
        m += atomic_load(&k->malformed), t += atomic_load(&k->timeouts), a += atomic_load(&k->answers);
    }
    const enr_aws_counters *k = enr_aws_core_counters(svc->aws_core);
    evbuffer_add_printf(out, "# HELP enroll_aws_connections_total AWS fleet provisioning MQTT connections accepted.\n"
                             "# TYPE enroll_aws_connections_total counter\nenroll_aws_connections_total %lu\n"
                             "# HELP enroll_aws_connections_open AWS fleet provisioning MQTT connections open now.\n"
                             "# TYPE enroll_aws_connections_open gauge\nenroll_aws_connections_open %ld\n"
                             "# HELP enroll_aws_closed_total AWS MQTT connections enrolld closed, by reason.\n"
                             "# TYPE enroll_aws_closed_total counter\n"
                             "enroll_aws_closed_total{reason=\"connect_refused\"} %lu\n"
                             "enroll_aws_closed_total{reason=\"malformed\"} %lu\n"
                             "enroll_aws_closed_total{reason=\"timeout\"} %lu\n"
                             "# HELP enroll_aws_answers_total AWS fleet provisioning answers published.\n"
                             "# TYPE enroll_aws_answers_total counter\nenroll_aws_answers_total %lu\n"
                             "# HELP enroll_aws_requests_total AWS fleet provisioning outcomes.\n"
                             "# TYPE enroll_aws_requests_total counter\n"
                             "enroll_aws_requests_total{outcome=\"created\"} %lu\n"
                             "enroll_aws_requests_total{outcome=\"registered\"} %lu\n"
                             "enroll_aws_requests_total{outcome=\"rejected\"} %lu\n"
                             "# HELP enroll_aws_rejected_total Of the rejections: throttled, refused by the hook.\n"
                             "# TYPE enroll_aws_rejected_total counter\n"
                             "enroll_aws_rejected_total{reason=\"throttled\"} %lu\n"
                             "enroll_aws_rejected_total{reason=\"hook\"} %lu\n"
                             "# HELP enroll_aws_swept_total Pending certificates revoked unactivated.\n"
                             "# TYPE enroll_aws_swept_total counter\nenroll_aws_swept_total %lu\n",
                        c, o, r, m, t, a, atomic_load(&k->created), atomic_load(&k->registered),
                        atomic_load(&k->rejected), atomic_load(&k->throttled), atomic_load(&k->hook_refused),
                        atomic_load(&k->swept));
}

static void metrics_text(enr_service *svc, struct evbuffer *out)
{
    unsigned long total = 0, classes[6] = {0}, buckets[LATENCY_BUCKETS + 1] = {0}, sum_ms = 0;
    for (int i = 0; i < svc->worker_count; i++) {
        worker_metrics *m = &svc->workers[i].metrics;
        total += atomic_load(&m->requests);
        for (int c = 0; c < 6; c++)
            classes[c] += atomic_load(&m->by_class[c]);
        for (int b = 0; b <= LATENCY_BUCKETS; b++)
            buckets[b] += atomic_load(&m->latency_bucket[b]);
        sum_ms += atomic_load(&m->latency_ms_sum);
    }
    evbuffer_add_printf(out, "# HELP enroll_http_requests_total HTTP requests answered, by status class.\n"
                             "# TYPE enroll_http_requests_total counter\n");
    for (int c = 1; c < 6; c++)
        evbuffer_add_printf(out, "enroll_http_requests_total{class=\"%dxx\"} %lu\n", c, classes[c]);
    unsigned long registrations = 0, issuances = 0, commits = 0, commit_us = 0, cb[COMMIT_BUCKETS + 1] = {0};
    for (int i = 0; i < svc->worker_count; i++) {
        worker_metrics *m = &svc->workers[i].metrics;
        registrations += atomic_load(&m->registrations);
        issuances += atomic_load(&m->issuances);
        commits += atomic_load(&m->commits);
        commit_us += atomic_load(&m->commit_us_sum);
        for (int b = 0; b <= COMMIT_BUCKETS; b++)
            cb[b] += atomic_load(&m->commit_bucket[b]);
    }
    evbuffer_add_printf(out, "# HELP enroll_registrations_total Registrations answered as assigned.\n"
                             "# TYPE enroll_registrations_total counter\nenroll_registrations_total %lu\n"
                             "# HELP enroll_issuances_total Certificates issued and committed.\n"
                             "# TYPE enroll_issuances_total counter\nenroll_issuances_total %lu\n",
                        registrations, issuances);
    evbuffer_add_printf(out, "# HELP enroll_rejections_total Registration requests refused, by DPS errorCode.\n"
                             "# TYPE enroll_rejections_total counter\n");
    for (int i = 0; i < svc->worker_count; i++) {
        worker_metrics *m = &svc->workers[i].metrics;
        for (int k = 0; k < REJECTION_KINDS && atomic_load(&m->rejection_codes[k]) != 0; k++)
            evbuffer_add_printf(out, "enroll_rejections_total{worker=\"%d\",error_code=\"%d\"} %lu\n", i,
                                atomic_load(&m->rejection_codes[k]), atomic_load(&m->rejections[k]));
    }
    evbuffer_add_printf(out, "# HELP enroll_store_commit_duration_seconds Time in the store's registration commit.\n"
                             "# TYPE enroll_store_commit_duration_seconds histogram\n");
    unsigned long cum = 0;
    for (int b = 0; b < COMMIT_BUCKETS; b++) {
        cum += cb[b];
        evbuffer_add_printf(out, "enroll_store_commit_duration_seconds_bucket{le=\"%g\"} %lu\n",
                            COMMIT_BOUNDS_MS[b] / 1000.0, cum);
    }
    evbuffer_add_printf(out, "enroll_store_commit_duration_seconds_bucket{le=\"+Inf\"} %lu\n"
                             "enroll_store_commit_duration_seconds_sum %g\n"
                             "enroll_store_commit_duration_seconds_count %lu\n",
                        commits, (double)commit_us / 1e6, commits);
    evbuffer_add_printf(out, "# HELP enroll_http_request_duration_seconds Time to answer a request.\n"
                             "# TYPE enroll_http_request_duration_seconds histogram\n");
    unsigned long cumulative = 0;
    for (int b = 0; b < LATENCY_BUCKETS; b++) {
        cumulative += buckets[b];
        evbuffer_add_printf(out, "enroll_http_request_duration_seconds_bucket{le=\"%g\"} %lu\n",
                            LATENCY_BOUNDS_MS[b] / 1000.0, cumulative);
    }
    evbuffer_add_printf(out, "enroll_http_request_duration_seconds_bucket{le=\"+Inf\"} %lu\n", total);
    evbuffer_add_printf(out, "enroll_http_request_duration_seconds_sum %g\n", (double)sum_ms / 1000.0);
    evbuffer_add_printf(out, "enroll_http_request_duration_seconds_count %lu\n", total);
    long open = 0;
    unsigned long dropped[3] = {0}, pauses = 0;
    for (int i = 0; i < svc->worker_count; i++) {
        worker_metrics *m = &svc->workers[i].metrics;
        open += atomic_load(&m->open_connections);
        pauses += atomic_load(&m->accept_pauses);
        for (int r = 0; r < 3; r++)
            dropped[r] += atomic_load(&m->dropped[r]);
    }
    evbuffer_add_printf(out, "# HELP enroll_connections_open TLS connections open now.\n"
                             "# TYPE enroll_connections_open gauge\nenroll_connections_open %ld\n"
                             "# HELP enroll_connections_max The connection cap (limits.max_connections).\n"
                             "# TYPE enroll_connections_max gauge\nenroll_connections_max %ld\n"
                             "# HELP enroll_connections_dropped_total Connections enrolld closed, by reason.\n"
                             "# TYPE enroll_connections_dropped_total counter\n",
                        open, svc->max_connections);
    for (int r = 0; r < 3; r++)
        evbuffer_add_printf(out, "enroll_connections_dropped_total{reason=\"%s\"} %lu\n", DROP_NAMES[r], dropped[r]);
    evbuffer_add_printf(out, "# HELP enroll_accept_pauses_total Times accepting paused: out of file descriptors.\n"
                             "# TYPE enroll_accept_pauses_total counter\nenroll_accept_pauses_total %lu\n"
                             "# HELP enroll_store_ok 1 while the store takes commits.\n"
                             "# TYPE enroll_store_ok gauge\nenroll_store_ok %d\n",
                        pauses, svc->core == NULL || enr_provision_store_ok(svc->core) ? 1 : 0);
    if (svc->aws_core != NULL)
        aws_metrics(svc, out);
    if (svc->mqtt_listen_fd < 0)
        return;
    unsigned long mc = 0, mp = 0, mr = 0, mm = 0, mt = 0, ma = 0;
    long mo = 0;
    for (int i = 0; i < svc->worker_count; i++) {
        if (svc->workers[i].mqtt == NULL)
            continue;
        const dps_mqtt_counters *k = dps_mqtt_get_counters(svc->workers[i].mqtt);
        mc += atomic_load(&k->connections), mo += atomic_load(&k->open), mp += atomic_load(&k->packets);
        mr += atomic_load(&k->refused), mm += atomic_load(&k->malformed), mt += atomic_load(&k->timeouts);
        ma += atomic_load(&k->answers);
    }
    evbuffer_add_printf(out, "# HELP enroll_mqtt_connections_total MQTT connections accepted.\n"
                             "# TYPE enroll_mqtt_connections_total counter\nenroll_mqtt_connections_total %lu\n"
                             "# HELP enroll_mqtt_connections_open MQTT connections open now.\n"
                             "# TYPE enroll_mqtt_connections_open gauge\nenroll_mqtt_connections_open %ld\n"
                             "# HELP enroll_mqtt_packets_total MQTT packets read.\n"
                             "# TYPE enroll_mqtt_packets_total counter\nenroll_mqtt_packets_total %lu\n"
                             "# HELP enroll_mqtt_closed_total MQTT connections enrolld closed, by reason.\n"
                             "# TYPE enroll_mqtt_closed_total counter\n"
                             "enroll_mqtt_closed_total{reason=\"connect_refused\"} %lu\n"
                             "enroll_mqtt_closed_total{reason=\"malformed\"} %lu\n"
                             "enroll_mqtt_closed_total{reason=\"timeout\"} %lu\n"
                             "# HELP enroll_mqtt_answers_total DPS answers published over MQTT.\n"
                             "# TYPE enroll_mqtt_answers_total counter\nenroll_mqtt_answers_total %lu\n",
                        mc, mo, mp, mr, mm, mt, ma);
}

static void count_registration(worker *w, const enr_provision_outcome *a)
{
    worker_metrics *m = &w->metrics;
    if (a->status == 200) {
        atomic_fetch_add(&m->registrations, 1);
        if (a->issued)
            atomic_fetch_add(&m->issuances, 1);
        int b = 0;
        while (b < COMMIT_BUCKETS && a->commit_ms > COMMIT_BOUNDS_MS[b])
            b++;
        atomic_fetch_add(&m->commit_bucket[b], 1);
        atomic_fetch_add(&m->commit_us_sum, (unsigned long)(a->commit_ms * 1000.0));
        atomic_fetch_add(&m->commits, 1);
        return;
    }
    for (int i = 0; i < REJECTION_KINDS; i++) {
        if (atomic_load(&m->rejection_codes[i]) == 0)
            atomic_store(&m->rejection_codes[i], a->error_code);
        if (atomic_load(&m->rejection_codes[i]) == a->error_code) {
            atomic_fetch_add(&m->rejections[i], 1);
            return;
        }
    }
}

static void count(worker *w, int status, double latency_ms)
{
    atomic_fetch_add(&w->metrics.requests, 1);
    int cls = status / 100;
    if (cls >= 1 && cls <= 5)
        atomic_fetch_add(&w->metrics.by_class[cls], 1);
    int b = 0;
    while (b < LATENCY_BUCKETS && latency_ms > LATENCY_BOUNDS_MS[b])
        b++;
    atomic_fetch_add(&w->metrics.latency_bucket[b], 1);
    atomic_fetch_add(&w->metrics.latency_ms_sum, (unsigned long)latency_ms);
}

/* One JSON line per request: never a body, header value, key or token. */
static void log_request(worker *w, unsigned long id, const char *method, const char *route,
                        const char *registration_id, int status, double latency_ms, bool client_cert)
{
    if (status >= 400 && !log_allowed(w, status >= 500 ? LOG_ERROR_ANSWER : LOG_REFUSED))
        return; /* a client can repeat these at will: counted, not each written */
    char at[32];
    enr_time_format(time(NULL), at, sizeof at);
    /* The registration id went through enr_dps_path_parse ([A-Za-z0-9._:-]):
     * safe to print inside JSON quotes. */
    fprintf(stderr,
            "{\"ts\":\"%s\",\"event\":\"request\",\"id\":\"w%d-%lu\",\"method\":\"%s\",\"route\":\"%s\","
            "\"registration_id\":\"%s\",\"status\":%d,\"latency_ms\":%.3f,\"client_cert\":%s}\n",
            at, w->index, id, method, route, registration_id, status, latency_ms, client_cert ? "true" : "false");
}

static const char *method_name(enum evhttp_cmd_type cmd)
{
    switch (cmd) {
    case EVHTTP_REQ_GET: return "GET";
    case EVHTTP_REQ_PUT: return "PUT";
    case EVHTTP_REQ_POST: return "POST";
    case EVHTTP_REQ_DELETE: return "DELETE";
    case EVHTTP_REQ_HEAD: return "HEAD";
    default: return "OTHER";
    }
}

static bool has_client_certificate(struct evhttp_request *req)
{
    struct evhttp_connection *conn = evhttp_request_get_connection(req);
    struct bufferevent *bev = conn ? evhttp_connection_get_bufferevent(conn) : NULL;
    SSL *ssl = bev ? bufferevent_openssl_get_ssl(bev) : NULL;
    return ssl != NULL && SSL_get0_peer_certificate(ssl) != NULL;
}

/* The final outcome of a registration, whoever still waits for it. */
static void registration_observed(void *arg, const enr_provision_outcome *o)
{
    count_registration(arg, o);
}

/* The accounting of a request the core answered (DPS or EST), once. The
 * registration id was checked by the core ([A-Za-z0-9._:-], or empty):
 * safe to print inside JSON quotes. */
static void call_answered(dps_call *c, int status, const char *route, const char *registration_id)
{
    worker *w = c->w;
    double latency = now_ms() - c->start_ms;
    count(w, status, latency);
    log_request(w, c->id, method_name(c->cmd), route, registration_id, status, latency, c->client_cert);
    atomic_fetch_sub(&w->in_flight, 1);
    free(c);
}

static void dps_answered(void *ctx, const enr_provision_outcome *o)
{
    dps_call *c = ctx;
    worker *w = c->w;
    conn_idle(w, c->req);
    if (o->retry_after > 0) {
        char seconds[16];
        snprintf(seconds, sizeof seconds, "%d", o->retry_after);
        evhttp_add_header(evhttp_request_get_output_headers(c->req), "Retry-After", seconds);
    }
    reply_json(c->req, o->status, o->status == 200 ? "OK" : o->status == 202 ? "Accepted" : "Error",
               o->body ? o->body : "{}");
    call_answered(c, o->status, o->route, o->registration_id);
}

/* DPS over HTTPS: the path names the idScope, the registration and the
 * verb; the Authorization header or the TLS client certificate the peer. */
static bool dps_owns_path(const char *path)
{
    const char *slash = path[0] == '/' ? strchr(path + 1, '/') : NULL;
    return slash != NULL && strncmp(slash, "/registrations/", 15) == 0;
}

static void serve_dps(worker *w, struct evhttp_request *req, const char *path, enum evhttp_cmd_type cmd,
                      double start, unsigned long id, bool client_cert)
{
    dps_call *c = malloc(sizeof *c);
    if (c == NULL) {
        conn_idle(w, req);
        reply_json(req, 503, "Service Unavailable", "{\"errorCode\":503000,\"message\":\"out of memory\"}");
        atomic_fetch_sub(&w->in_flight, 1);
        return;
    }
    *c = (dps_call){.w = w, .req = req, .start_ms = start, .id = id, .cmd = cmd, .client_cert = client_cert};
    enr_dps_path parsed;
    enr_dps_error e = ENR_DPS_OK;
    enr_error err;
    bool put = cmd == EVHTTP_REQ_PUT;
    if (enr_dps_path_parse(path, &parsed, &e, &err) != ENR_OK) {
        enr_provision_refuse(w->core, e, err.message, NULL, put ? "register" : "operation", dps_answered, c);
        return;
    }
    bool put_register = parsed.kind == ENR_DPS_PATH_REGISTER && put;
    bool get_operation = parsed.kind == ENR_DPS_PATH_OPERATION_STATUS && cmd == EVHTTP_REQ_GET;
    if (!put_register && !get_operation) {
        enr_provision_refuse(w->core, ENR_DPS_METHOD_NOT_ALLOWED,
                             "use PUT for .../register and GET for .../operations/{id}", parsed.registration_id,
                             put ? "register" : "operation", dps_answered, c);
        return;
    }
    struct evbuffer *in = evhttp_request_get_input_buffer(req);
    size_t len = evbuffer_get_length(in);
    struct evkeyvalq query;
    query.tqh_first = NULL; /* TAILQ_INIT, spelled out: sys/queue.h is not always there */
    query.tqh_last = &query.tqh_first;
    const char *q = evhttp_uri_get_query(evhttp_request_get_evhttp_uri(req));
    if (q != NULL)
        (void)evhttp_parse_query_str(q, &query);
    struct evhttp_connection *conn = evhttp_request_get_connection(req);
    struct bufferevent *bev = conn ? evhttp_connection_get_bufferevent(conn) : NULL;
    SSL *ssl = bev ? bufferevent_openssl_get_ssl(bev) : NULL;
    enr_provision_request r = {
        .verb = put_register ? ENR_PROVISION_REGISTER : ENR_PROVISION_OPERATION_STATUS,
        .id_scope = parsed.id_scope,
        .registration_id = parsed.registration_id,
        .operation_id = get_operation ? parsed.operation_id : NULL,
        .api_version = evhttp_find_header(&query, "api-version"),
        .peer = {.sas_token = evhttp_find_header(evhttp_request_get_input_headers(req), "Authorization"),
                 .certificate = ssl ? SSL_get0_peer_certificate(ssl) : NULL,
                 .chain = ssl ? SSL_get_peer_cert_chain(ssl) : NULL},
        .body = len ? (const char *)evbuffer_pullup(in, -1) : "",
        .body_len = len,
    };
    /* Answered through dps_answered: at once, or once committed (the
     * request stays with evhttp until then; a client that leaves makes
     * evhttp drop the connection, not the request). */
    (void)enr_provision_submit(w->core, &r, dps_answered, c);
    evhttp_clear_headers(&query);
}

/* EST's requests, answered at once or once committed: the listener's
 * accounting, just before the reply goes out. */
static void est_answering(void *arg, struct evhttp_request *req, int status, const char *route,
                          const char *registration_id)
{
    dps_call *c = arg;
    conn_idle(c->w, req);
    call_answered(c, status, route, registration_id);
}

/* OCSP over HTTP (RFC 6960 appendix A): POST /ocsp with the DER request,
 * or GET /ocsp/{base64 of it, URL-encoded}. Every answer the responder
 * makes, a refusal included, is an OCSPResponse with 200; HTTP errors are
 * for what is not an OCSP request at all. */
static int serve_ocsp(worker *w, struct evhttp_request *req, const char *path, enum evhttp_cmd_type cmd)
{
    unsigned char *der = NULL, *resp = NULL;
    size_t der_len = 0, resp_len = 0;
    int status = 0;
    if (cmd == EVHTTP_REQ_POST && strcmp(path, "/ocsp") == 0) {
        const char *type = evhttp_find_header(evhttp_request_get_input_headers(req), "Content-Type");
        struct evbuffer *in = evhttp_request_get_input_buffer(req);
        der_len = evbuffer_get_length(in);
        if (type == NULL || strcasecmp(type, "application/ocsp-request") != 0)
            status = 415;
        else if (der_len == 0 || der_len > ENR_OCSP_REQUEST_MAX)
            status = der_len == 0 ? 400 : 413;
        else if ((der = malloc(der_len)) == NULL || evbuffer_copyout(in, der, der_len) != (ev_ssize_t)der_len)
            status = 500;
    } else if (cmd == EVHTTP_REQ_GET && strncmp(path, "/ocsp/", 6) == 0 && strlen(path + 6) <= 2 * ENR_OCSP_REQUEST_MAX) {
        size_t b64_len = 0;
        char *b64 = evhttp_uridecode(path + 6, 0, &b64_len);
        while (b64 != NULL && b64_len > 0 && b64[b64_len - 1] == '\n')
            b64[--b64_len] = '\0';
        size_t pad = b64 != NULL && b64_len >= 2 ? (size_t)(b64[b64_len - 1] == '=') + (size_t)(b64[b64_len - 2] == '=') : 0;
        der = b64 != NULL && b64_len % 4 == 0 && b64_len > 0 ? malloc(b64_len / 4 * 3 + 1) : NULL;
        int n = der != NULL ? EVP_DecodeBlock(der, (const unsigned char *)b64, (int)b64_len) : -1;
        if (n < 0 || (size_t)n < pad)
            status = 400;
        else
            der_len = (size_t)n - pad;
        free(b64);
    } else {
        status = strcmp(path, "/ocsp") == 0 || strncmp(path, "/ocsp/", 6) == 0 ? 405 : 404;
    }
    enr_ocsp_outcome outcome = ENR_OCSP_INTERNAL;
    enr_error err;
    if (status == 0 && enr_provision_ocsp(w->core, der, der_len, &resp, &resp_len, &outcome, &err) != ENR_OK)
        status = 500;
    free(der);
    if (status != 0) {
        reply_json(req, status, status == 405 ? "Method Not Allowed" : status == 415 ? "Unsupported Media Type"
                                : status == 413 ? "Payload Too Large" : status == 404 ? "Not Found"
                                : status == 500 ? "Internal Server Error" : "Bad Request",
                   "{\"message\":\"an OCSP request is POST /ocsp (application/ocsp-request) or GET /ocsp/{base64}\"}");
        return status;
    }
    struct evbuffer *body = evbuffer_new();
    if (body != NULL)
        evbuffer_add(body, resp, resp_len);
    evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type", "application/ocsp-response");
    send_reply(req, 200, "OK", body);
    if (body != NULL)
        evbuffer_free(body);
    free(resp);
    return 200;
}

static void handle_request(struct evhttp_request *req, void *arg)
{
    worker *w = arg;
    atomic_fetch_add(&w->in_flight, 1);
    double start = now_ms();
    unsigned long id = ++w->next_request;
    const char *uri = evhttp_request_get_uri(req);
    const struct evhttp_uri *parsed = evhttp_request_get_evhttp_uri(req);
    const char *path = parsed ? evhttp_uri_get_path(parsed) : NULL;
    enum evhttp_cmd_type cmd = evhttp_request_get_command(req);
    const char *route = "unknown";
    char registration_id[129] = "";
    int status;
    bool client_cert = has_client_certificate(req); /* for the log: the reply may free req */
    conn_busy(w, req);
    bool in_core = path != NULL && w->core != NULL && (dps_owns_path(path) || est_http_owns_path(path));
    if (!in_core)
        conn_idle(w, req); /* answered right here */
    if (path == NULL || uri == NULL) {
        route = "malformed";
        status = 400;
        reply_json(req, status, "Bad Request", "{\"message\":\"malformed request target\"}");
    } else if (strcmp(path, "/healthz") == 0 && cmd == EVHTTP_REQ_GET) {
        route = "healthz";
        /* Ok only while the store takes commits: a balancer sends devices
         * elsewhere instead of to a service that answers them all 503. */
        if (w->svc->core != NULL && !enr_provision_store_ok(w->svc->core)) {
            status = 503;
            reply_json(req, status, "Service Unavailable",
                       "{\"status\":\"unavailable\",\"store\":\"cannot commit\"}");
        } else {
            status = 200;
            reply_json(req, status, "OK", "{\"status\":\"ok\"}");
        }
    } else if (strcmp(path, "/metrics") == 0 && cmd == EVHTTP_REQ_GET) {
        route = "metrics";
        status = 200;
        struct evbuffer *body = evbuffer_new();
        metrics_text(w->svc, body);
        evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type",
                          "text/plain; version=0.0.4");
        evhttp_send_reply(req, status, "OK", body);
        evbuffer_free(body);
    } else if (w->core != NULL && (strcmp(path, "/ocsp") == 0 || strncmp(path, "/ocsp/", 6) == 0)) {
        route = "ocsp";
        status = serve_ocsp(w, req, path, cmd);
    } else if (w->core != NULL && dps_owns_path(path)) {
        serve_dps(w, req, path, cmd, start, id, client_cert);
        return;
    } else if (w->core != NULL && est_http_owns_path(path)) {
        dps_call *c = malloc(sizeof *c);
        if (c != NULL) {
            *c = (dps_call){.w = w, .req = req, .start_ms = start, .id = id, .cmd = cmd, .client_cert = client_cert};
            est_http_serve(w->core, req, path, est_answering, c);
            return;
        }
        route = "est";
        status = 503;
        conn_idle(w, req);
        reply_json(req, status, "Service Unavailable", "{\"message\":\"out of memory\"}");
    } else if (w->admin != NULL && admin_api_owns_path(path)) {
        status = admin_api_serve(w->admin, req, path, &route);
    } else {
        status = 404;
        reply_json(req, status, "Not Found", "{\"message\":\"no such route\"}");
    }
    double latency = now_ms() - start;
    count(w, status, latency);
    log_request(w, id, method_name(cmd), route, registration_id, status, latency, client_cert);
    atomic_fetch_sub(&w->in_flight, 1);
}

/* ---- lifecycle ---- */

static enr_code listen_socket(const char *host, int port, int *fd_out, int *port_out, enr_error *err)
{
    struct addrinfo hints = {0}, *res = NULL;
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
    char port_text[16];
    snprintf(port_text, sizeof port_text, "%d", port);
    int gai = getaddrinfo(host, port_text, &hints, &res);
    if (gai != 0)
        return enr_error_set(err, ENR_E_IO, "listen %s:%d: %s", host, port, gai_strerror(gai));
    int fd = socket(res->ai_family, res->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int on = 1;
    enr_code rc = ENR_OK;
    /* TCP_NODELAY is inherited by accepted sockets: small TLS records would
     * otherwise wait for delayed ACKs (about 40 ms a request). */
    /* No SO_REUSEPORT: with it a second process binds the same address and
     * the kernel hands it a share of the devices, which it answers from its
     * own store. One socket, accepted on by every worker, instead. */
    if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof on) != 0 ||
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &on, sizeof on) != 0)
        rc = enr_error_set(err, ENR_E_IO, "listen %s:%d: %s", host, port, strerror(errno));
    else if (bind(fd, res->ai_addr, res->ai_addrlen) != 0 || listen(fd, 1024) != 0)
        rc = errno == EADDRINUSE
                 ? enr_error_set(err, ENR_E_IO,
                                 "listen %s:%d: the address is in use (another enrolld, or another program, "
                                 "serves it): stop that one, or give this one another \"listen\"",
                                 host, port)
                 : enr_error_set(err, ENR_E_IO, "listen %s:%d: %s", host, port, strerror(errno));
    struct sockaddr_storage ss;
    socklen_t sl = sizeof ss;
    if (rc == ENR_OK && getsockname(fd, (struct sockaddr *)&ss, &sl) == 0)
        *port_out = ntohs(ss.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&ss)->sin6_port
                                                   : ((struct sockaddr_in *)&ss)->sin_port);
    freeaddrinfo(res);
    if (rc != ENR_OK) {
        if (fd >= 0)
            close(fd);
        return rc;
    }
    *fd_out = fd;
    return ENR_OK;
}

static void drain_check(evutil_socket_t fd, short what, void *arg)
{
    (void)fd, (void)what;
    worker *w = arg;
    if ((atomic_load(&w->in_flight) == 0 && dps_mqtt_calls_open(w->mqtt) == 0 && aws_mqtt_calls_open(w->aws) == 0) ||
        time(NULL) >= w->stop_deadline)
        event_base_loopexit(w->base, NULL);
}

static void stop_requested(evutil_socket_t fd, short what, void *arg)
{
    (void)fd, (void)what;
    worker *w = arg;
    w->stopping = true;
    if (w->bound != NULL) {
        evhttp_del_accept_socket(w->http, w->bound); /* closes the listener */
        w->bound = NULL;
        w->listener = NULL;
    }
    if (w->mqtt != NULL)
        dps_mqtt_stop_accepting(w->mqtt);
    aws_mqtt_stop_accepting(w->aws);
    w->stop_deadline = time(NULL) + w->svc->cfg.shutdown_grace_seconds;
    struct timeval tick = {0, 20 * 1000};
    w->drain_timer = event_new(w->base, -1, EV_PERSIST, drain_check, w);
    if (w->drain_timer == NULL || event_add(w->drain_timer, &tick) != 0)
        event_base_loopexit(w->base, NULL);
}

static void *worker_main(void *arg)
{
    worker *w = arg;
    event_base_dispatch(w->base);
    return NULL;
}

/* One worker's share of an MQTT port: its dup of the socket and limits. */
static enr_code worker_mqtt_limits(enr_service *svc, worker *w, const enr_mqtt_listen_config *c, int listen_fd,
                                   int port, int *fd, mqtt_limits *lim, enr_error *err)
{
    *fd = fcntl(listen_fd, F_DUPFD_CLOEXEC, 0);
    if (*fd < 0)
        return enr_error_set(err, ENR_E_IO, "listen %s:%d: %s", c->host, port, strerror(errno));
    long total = c->max_connections > 0 ? c->max_connections : svc->max_connections;
    long share = (total + svc->worker_count - 1) / svc->worker_count;
    /* The TLS context of HTTPS, client certificates included, and its
     * reloads (SIGHUP). */
    *lim = (mqtt_limits){.max_connections = share > 0 ? (int)share : 1,
                         .connect_timeout_seconds = c->connect_timeout_seconds,
                         .max_packet_bytes = (size_t)c->max_packet_bytes,
                         .max_keepalive_seconds = c->max_keepalive_seconds,
                         .log_lines_per_second = svc->cfg.log_lines_per_second,
                         .tls_new = worker_ssl_new,
                         .tls_new_arg = w};
    return ENR_OK;
}

static enr_code worker_mqtt_init(enr_service *svc, worker *w, enr_error *err)
{
    int fd;
    mqtt_limits lim;
    enr_code rc = worker_mqtt_limits(svc, w, &svc->cfg.mqtt, svc->mqtt_listen_fd, svc->mqtt_port, &fd, &lim, err);
    return rc != ENR_OK ? rc : dps_mqtt_new(w->base, fd, svc->tls, w->core, &lim, &w->mqtt, err);
}

static enr_code worker_aws_init(enr_service *svc, worker *w, enr_error *err)
{
    int fd;
    mqtt_limits lim;
    enr_code rc = enr_aws_loop_new(svc->aws_core, w->base, &w->aws_loop, err);
    if (rc == ENR_OK)
        rc = worker_mqtt_limits(svc, w, &svc->cfg.aws, svc->aws_listen_fd, svc->aws_port, &fd, &lim, err);
    return rc != ENR_OK ? rc : aws_mqtt_new(w->base, fd, svc->tls, w->aws_loop, &lim, &w->aws, err);
}

static enr_code worker_init(enr_service *svc, worker *w, int index, enr_error *err)
{
    w->svc = svc;
    w->index = index;
    w->reserve_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
    w->fd = fcntl(svc->listen_fd, F_DUPFD_CLOEXEC, 0); /* evhttp closes its own */
    long share = (svc->max_connections + svc->worker_count - 1) / svc->worker_count;
    w->conn_cap = share > 0 ? (int)share : 1;
    enr_code rc = ENR_OK;
    if (w->fd < 0 || w->reserve_fd < 0)
        return enr_error_set(err, ENR_E_IO, "listen %s:%d: %s", svc->cfg.listen_host, svc->port, strerror(errno));
    if (svc->cfg.admin_client_ca != NULL &&
        (rc = admin_api_new(svc->cfg.store_location, svc->cfg.admin_client_ca, &w->admin, err)) != ENR_OK)
        return rc;
    /* epoll's change list: the enable/disable pairs evhttp and
     * bufferevent_openssl make on a connection within one loop turn (write
     * an answer, then stop watching for writability) become one epoll_ctl
     * or none. Safe here: no descriptor is ever dup()ed. */
    struct event_config *ev_cfg = event_config_new();
    if (ev_cfg != NULL)
        event_config_set_flag(ev_cfg, EVENT_BASE_FLAG_EPOLL_USE_CHANGELIST);
    w->base = ev_cfg != NULL ? event_base_new_with_config(ev_cfg) : NULL;
    if (ev_cfg != NULL)
        event_config_free(ev_cfg);
    w->http = w->base ? evhttp_new(w->base) : NULL;
    w->stop_event = w->base ? event_new(w->base, -1, 0, stop_requested, w) : NULL;
    w->tick = w->base ? event_new(w->base, -1, EV_PERSIST, worker_tick, w) : NULL;
    w->resume = w->base ? evtimer_new(w->base, accept_resume, w) : NULL;
    struct timeval quarter = {0, 250 * 1000};
    if (w->tick == NULL || w->resume == NULL || event_add(w->tick, &quarter) != 0)
        return enr_error_set(err, ENR_E_NOMEM, "cannot create an event loop");
    if (w->http == NULL || w->stop_event == NULL)
        return enr_error_set(err, ENR_E_NOMEM, "cannot create an event loop");
    if (svc->core != NULL) {
        if ((rc = enr_provision_new(svc->core, w->base, &w->core, err)) != ENR_OK)
            return rc;
        enr_provision_set_observer(w->core, registration_observed, w);
    }
    if (svc->mqtt_listen_fd >= 0 && w->core != NULL && (rc = worker_mqtt_init(svc, w, err)) != ENR_OK)
        return rc;
    if (svc->aws_core != NULL && (rc = worker_aws_init(svc, w, err)) != ENR_OK)
        return rc;
    evhttp_set_max_body_size(w->http, svc->cfg.max_body_bytes);
    /* Read an oversized body to its end before answering 413: closing at once
     * while the client still sends makes its kernel see a reset, and the
     * client never reads the 413. The connection deadline bounds the read. */
    evhttp_set_flags(w->http, EVHTTP_SERVER_LINGERING_CLOSE);
    evhttp_set_max_headers_size(w->http, svc->cfg.max_header_bytes);
    evhttp_set_timeout(w->http, svc->cfg.timeout_seconds);
    evhttp_set_allowed_methods(w->http, EVHTTP_REQ_GET | EVHTTP_REQ_PUT | EVHTTP_REQ_POST | EVHTTP_REQ_DELETE);
    evhttp_set_gencb(w->http, handle_request, w);
    if (svc->tls != NULL)
        evhttp_set_bevcb(w->http, tls_bufferevent, w);
    w->bound = evhttp_accept_socket_with_handle(w->http, w->fd);
    if (w->bound == NULL)
        return enr_error_set(err, ENR_E_IO, "cannot accept on %s:%d", svc->cfg.listen_host, svc->port);
    w->fd = -1; /* owned by evhttp now */
    w->listener = evhttp_bound_socket_get_listener(w->bound);
    evconnlistener_set_error_cb(w->listener, accept_failed);
    return ENR_OK;
}

enr_code enr_service_new(const enr_service_config *cfg, enr_service **out, enr_error *err)
{
    *out = NULL;
    enr_service *svc = calloc(1, sizeof *svc);
    if (svc == NULL)
        return enr_error_set(err, ENR_E_NOMEM, "out of memory");
    svc->cfg = *cfg;
    svc->listen_fd = -1;
    svc->mqtt_listen_fd = -1;
    svc->aws_listen_fd = -1;
    pthread_mutex_init(&svc->tls_lock, NULL);
    enr_code rc = ENR_OK;
    /* A typo'd store_location would otherwise be a fresh, empty store, and every
     * device would be told its credential does not verify. */
    if (cfg->store_location != NULL && !cfg->create_store && !enr_store_url_is_postgres(cfg->store_location) &&
        !enr_store_sqlite_exists(cfg->store_location))
        rc = enr_error_set(err, ENR_E_USAGE,
                           "data_dir %s holds no store (no enroll.db): check \"data_dir\" in the config; "
                           "a store is made by `enroll admin ... --data %s`, or set \"create_store\": true "
                           "to start with an empty one",
                           cfg->store_location, cfg->store_location);
    if (rc == ENR_OK && !cfg->plain_http)
        rc = tls_context_new(cfg, &svc->tls, err);
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    svc->worker_count = cfg->workers > 0 ? cfg->workers : (int)(cores > 0 ? cores : 1);
    /* The cap: the config's, or what the descriptor limit leaves after the
     * service's own (stores, loops, reserves: about a dozen per worker). */
    struct rlimit nofile;
    long budget = getrlimit(RLIMIT_NOFILE, &nofile) == 0 && nofile.rlim_cur != RLIM_INFINITY
                      ? (long)nofile.rlim_cur - 32 - 16L * svc->worker_count
                      : 1000000;
    svc->max_connections = cfg->max_connections > 0 ? cfg->max_connections : (budget < 4096 ? budget : 4096);
    if (svc->max_connections < svc->worker_count)
        svc->max_connections = svc->worker_count;
    if (rc == ENR_OK && svc->tls != NULL &&
        (svc->conn_index = SSL_get_ex_new_index(0, NULL, NULL, NULL, conn_freed)) < 0)
        rc = enr_error_openssl(err, ENR_E_CRYPTO, "cannot register the connection slot");
    int port = 0;
    if (rc == ENR_OK)
        rc = listen_socket(cfg->listen_host, cfg->listen_port, &svc->listen_fd, &port, err);
    svc->port = port;
    if (rc == ENR_OK && cfg->mqtt.host != NULL)
        rc = listen_socket(cfg->mqtt.host, cfg->mqtt.port, &svc->mqtt_listen_fd, &svc->mqtt_port, err);
    if (rc == ENR_OK && cfg->aws.host != NULL && svc->tls == NULL)
        rc = enr_error_set(err, ENR_E_USAGE, "config: \"aws\" needs TLS (its devices authenticate by certificate)");
    if (rc == ENR_OK && cfg->aws.host != NULL)
        rc = listen_socket(cfg->aws.host, cfg->aws.port, &svc->aws_listen_fd, &svc->aws_port, err);
    enr_aws_core_options aopts = {.store_location = cfg->store_location, .threads = cfg->aws_threads,
                                  .queue_max = cfg->aws_queue_max};
    if (rc == ENR_OK && cfg->aws.host != NULL)
        rc = enr_aws_core_new(&aopts, &svc->aws_core, err);
    if (rc == ENR_OK && cfg->crl_publish_dir != NULL)
        rc = crl_publisher_start(&svc->cfg, &svc->crl, err);
    if (rc == ENR_OK && (svc->workers = calloc((size_t)svc->worker_count, sizeof *svc->workers)) == NULL)
        rc = enr_error_set(err, ENR_E_NOMEM, "out of memory");
    for (int i = 0; svc->workers != NULL && i < svc->worker_count; i++)
        svc->workers[i].fd = svc->workers[i].reserve_fd = -1;
    enr_provision_options popts = {
        .store_location = cfg->store_location, .id_scope = cfg->id_scope,
        .sas_max_lifetime = cfg->sas_token_max_lifetime_seconds, .assigning_after_ms = cfg->assigning_after_ms,
        .audit_max_age_days = cfg->audit_max_age_days, .audit_max_rows = cfg->audit_max_rows,
        .audit_refusal_samples = cfg->audit_refusal_samples};
    if (rc == ENR_OK && cfg->id_scope != NULL)
        rc = enr_provision_shared_new(&popts, &svc->core, err);
    for (int i = 0; rc == ENR_OK && i < svc->worker_count; i++)
        rc = worker_init(svc, &svc->workers[i], i, err);
    if (rc != ENR_OK) {
        enr_service_free(svc);
        return rc;
    }
    *out = svc;
    return ENR_OK;
}

enr_code enr_service_start(enr_service *svc, enr_error *err)
{
    for (int i = 0; i < svc->worker_count; i++) {
        worker *w = &svc->workers[i];
        if (pthread_create(&w->thread, NULL, worker_main, w) != 0)
            return enr_error_set(err, ENR_E_INTERNAL, "cannot start worker %d", i);
        w->started = true;
    }
    char at[32];
    enr_time_format(time(NULL), at, sizeof at);
    struct rlimit nofile = {0, 0};
    (void)getrlimit(RLIMIT_NOFILE, &nofile);
    char mqtt[80] = "";
    if (svc->mqtt_listen_fd >= 0)
        snprintf(mqtt, sizeof mqtt, ",\"mqtt_port\":%d", svc->mqtt_port);
    if (svc->aws_listen_fd >= 0)
        snprintf(mqtt + strlen(mqtt), sizeof mqtt - strlen(mqtt), ",\"aws_port\":%d", svc->aws_port);
    fprintf(stderr, "{\"ts\":\"%s\",\"event\":\"listening\",\"address\":\"%s\",\"port\":%d%s,\"tls\":%s,\"workers\":%d,"
                    "\"max_connections\":%ld,\"fd_limit\":%ld}\n",
            at, svc->cfg.listen_host, svc->port, mqtt, svc->tls ? "true" : "false", svc->worker_count,
            svc->max_connections, nofile.rlim_cur == RLIM_INFINITY ? -1L : (long)nofile.rlim_cur);
    return ENR_OK;
}

void enr_service_stop(enr_service *svc)
{
    for (int i = 0; i < svc->worker_count; i++)
        if (svc->workers[i].started)
            event_active(svc->workers[i].stop_event, EV_READ, 0);
    for (int i = 0; i < svc->worker_count; i++)
        if (svc->workers[i].started) {
            pthread_join(svc->workers[i].thread, NULL);
            svc->workers[i].started = false;
        }
}

enr_code enr_service_reload(enr_service *svc, enr_error *err)
{
    if (svc->tls == NULL)
        return ENR_OK;
    SSL_CTX *fresh = NULL;
    enr_code rc = tls_context_new(&svc->cfg, &fresh, err);
    if (rc != ENR_OK)
        return rc;
    /* Connections hold their own reference (SSL_new): freeing ours is safe. */
    pthread_mutex_lock(&svc->tls_lock);
    SSL_CTX *old = svc->tls;
    svc->tls = fresh;
    pthread_mutex_unlock(&svc->tls_lock);
    SSL_CTX_free(old);
    return ENR_OK;
}

int enr_service_port(const enr_service *svc)
{
    return svc->port;
}

void enr_service_free(enr_service *svc)
{
    if (svc == NULL)
        return;
    /* The workers' last refusals, then the committer (before the workers'
     * loops go: it may still hand them jobs), then one turn of each loop so
     * registrations committed meanwhile are answered where they can be. */
    for (int i = 0; svc->workers && i < svc->worker_count; i++)
        if (svc->workers[i].core != NULL)
            enr_provision_flush_audit(svc->workers[i].core);
    enr_provision_shared_stop(svc->core);
    /* AWS's threads finish what they hold (the rest is answered 503). */
    enr_aws_core_stop(svc->aws_core);
    crl_publisher_stop(svc->crl);
    svc->crl = NULL;
    for (int i = 0; svc->workers && i < svc->worker_count; i++)
        if (svc->workers[i].base != NULL && (svc->workers[i].core != NULL || svc->workers[i].aws_loop != NULL))
            (void)event_base_loop(svc->workers[i].base, EVLOOP_NONBLOCK);
    for (int i = 0; svc->workers && i < svc->worker_count; i++) {
        worker *w = &svc->workers[i];
        if (w->drain_timer)
            event_free(w->drain_timer);
        if (w->stop_event)
            event_free(w->stop_event);
        if (w->tick)
            event_free(w->tick);
        if (w->resume)
            event_free(w->resume);
        w->stopping = true;
        w->listener = NULL; /* evhttp_free frees it, then the connections */
        if (w->http)
            evhttp_free(w->http);
        dps_mqtt_free(w->mqtt); /* cancels what the core still works on for it */
        aws_mqtt_free(w->aws);
        enr_aws_loop_free(w->aws_loop);
        enr_provision_free(w->core); /* its events are on the base */
        if (w->base)
            event_base_free(w->base);
        if (w->fd >= 0)
            close(w->fd);
        if (w->reserve_fd >= 0)
            close(w->reserve_fd);
        admin_api_free(w->admin);
    }
    free(svc->workers);
    if (svc->listen_fd >= 0)
        close(svc->listen_fd);
    if (svc->mqtt_listen_fd >= 0)
        close(svc->mqtt_listen_fd);
    if (svc->aws_listen_fd >= 0)
        close(svc->aws_listen_fd);
    enr_aws_core_free(svc->aws_core);
    crl_publisher_stop(svc->crl);
    enr_provision_shared_free(svc->core);
    SSL_CTX_free(svc->tls);
    pthread_mutex_destroy(&svc->tls_lock);
    free(svc);
}
