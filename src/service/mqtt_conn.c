/* MQTT connections under enrolld's protocols (service/mqtt_conn.h).
 *
 * Answers are published at QoS 0 although subscriptions are granted at
 * QoS 1 (a server may deliver below the granted QoS): a session is never
 * kept, so QoS 1 would only redeliver on the same TCP connection, where
 * nothing is lost; the SDKs accept either. Incoming PUBACKs are therefore
 * read and ignored.
 *
 * A request's PUBACK is held until its answer is written (both then go
 * in one TLS record and one write, instead of a write, a wake-up and two
 * epoll changes each), at most PUBACK_HOLD_MS: MQTT sets no time for a
 * PUBACK, only its order (4.6: as the PUBLISHes came), which a FIFO keeps. */
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>
#include <event2/listener.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "enroll/duration.h"
#include "service/mqtt_conn.h"

enum log_kind { LOG_REFUSED = 0, LOG_MALFORMED, LOG_TIMEOUT, LOG_REQUEST, LOG_KINDS };
static const char *const LOG_NAMES[LOG_KINDS] = {"connect_refused", "malformed", "timeout", "refused"};

typedef struct log_limit {
    double window_start_ms;
    int lines;
    unsigned long suppressed;
} log_limit;

/* PUBACKs held at once on a connection; one more sends them all first. */
#define PUBACK_HELD_MAX 8
/* The tick sends PUBACKs held longer than this (a slow answer). */
#define PUBACK_HOLD_MS 200.0

struct mqtt_conn {
    mqtt_listener *l;
    struct bufferevent *bev;
    uint8_t level;                /* 0 until CONNECT was accepted */
    bool connecting;              /* CONNECT read, CONNACK not yet sent: reading waits */
    bool connack_sent;
    bool closing;                 /* the last bytes are going out; then freed */
    double accepted_ms, last_rx_ms, closing_ms;
    double keepalive_ms;          /* 1.5 x the keepalive in force */
    char who[129];
    uint16_t puback_held[PUBACK_HELD_MAX]; /* packet ids owed a PUBACK, oldest first */
    int puback_count;
    double puback_since_ms;       /* when the oldest of them came */
    mqtt_conn *prev, *next;
    void *state;                  /* the protocol's, state_size bytes */
};

struct mqtt_listener {
    struct event_base *base;
    SSL_CTX *tls;
    const mqtt_protocol *proto;
    void *arg;
    mqtt_limits lim;
    struct evconnlistener *listener;
    struct event *tick;
    mqtt_conn *conns;
    int count;
    int calls_open;
    bool stopping;
    bool paused;
    log_limit logs[LOG_KINDS];
    mqtt_counters counters;
};

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1000.0 + (double)ts.tv_nsec / 1e6;
}

/* ---- bounded logging ---------------------------------------------------- */

static void log_window(mqtt_listener *l, enum log_kind k)
{
    log_limit *g = &l->logs[k];
    double now = now_ms();
    if (now - g->window_start_ms >= 1000.0) {
        if (g->suppressed > 0) {
            char at[32];
            enr_time_format(time(NULL), at, sizeof at);
            fprintf(stderr, "{\"ts\":\"%s\",\"event\":\"suppressed\",\"what\":\"%s_%s\",\"count\":%lu}\n", at,
                    l->proto->name, LOG_NAMES[k], g->suppressed);
        }
        g->window_start_ms = now;
        g->lines = 0;
        g->suppressed = 0;
    }
}

static bool log_allowed(mqtt_listener *l, enum log_kind k)
{
    log_window(l, k);
    log_limit *g = &l->logs[k];
    if (g->lines < l->lim.log_lines_per_second) {
        g->lines++;
        return true;
    }
    g->suppressed++;
    return false;
}

/* One line: the reason is one of our own names, `who` was checked by the
 * protocol or is empty. Never a password or token. */
static void log_event(mqtt_conn *c, enum log_kind k, const char *reason)
{
    if (!log_allowed(c->l, k))
        return;
    char at[32];
    enr_time_format(time(NULL), at, sizeof at);
    fprintf(stderr, "{\"ts\":\"%s\",\"event\":\"%s_%s\",\"reason\":\"%s\",\"%s\":\"%s\"}\n", at, c->l->proto->name,
            LOG_NAMES[k], reason, c->l->proto->id_field, c->who);
}

void mqtt_conn_log_refusal(mqtt_conn *c, const char *reason)
{
    log_event(c, LOG_REQUEST, reason);
}

/* ---- connections -------------------------------------------------------- */

static void listener_update(mqtt_listener *l)
{
    bool pause = l->stopping || l->count >= l->lim.max_connections;
    if (pause != l->paused) {
        l->paused = pause;
        if (pause)
            evconnlistener_disable(l->listener);
        else
            evconnlistener_enable(l->listener);
    }
}

static void conn_free(mqtt_conn *c)
{
    mqtt_listener *l = c->l;
    l->proto->on_close(c);
    bufferevent_free(c->bev);
    if (c->prev != NULL)
        c->prev->next = c->next;
    else
        l->conns = c->next;
    if (c->next != NULL)
        c->next->prev = c->prev;
    l->count--;
    atomic_fetch_sub(&l->counters.open, 1);
    free(c);
    listener_update(l);
}

/* Writing is enabled only while there is something to write: an enabled
 * write event over an empty output still costs a wake-up and two epoll
 * changes (libevent's OpenSSL bufferevent arms it again when the
 * handshake ends), per connection and for nothing. The callback can come
 * after more was queued (an answer completed meanwhile on this loop):
 * then writing stays on, or that answer would never leave. */
static void write_drained(struct bufferevent *bev, void *arg)
{
    mqtt_conn *c = arg;
    if (c->closing)
        conn_free(c);
    else if (evbuffer_get_length(bufferevent_get_output(bev)) == 0)
        bufferevent_disable(bev, EV_WRITE);
}

void mqtt_conn_close(mqtt_conn *c)
{
    if (c->closing)
        return;
    c->closing = true;
    c->closing_ms = now_ms();
    bufferevent_disable(c->bev, EV_READ);
}

void mqtt_conn_send(mqtt_conn *c, const uint8_t *b, size_t n)
{
    if (n > 0 && bufferevent_write(c->bev, b, n) == 0)
        bufferevent_enable(c->bev, EV_WRITE);
}

/* Appends the held PUBACKs (in the order their PUBLISHes came) to `b`;
 * the bytes written, 0 when `cap` is too small (none are then taken). */
static size_t take_pubacks(mqtt_conn *c, uint8_t *b, size_t cap)
{
    size_t n = 0;
    for (int i = 0; i < c->puback_count; i++) {
        size_t one = enr_mqtt_encode_puback(b + n, cap - n, c->level, c->puback_held[i], 0);
        if (one == 0)
            return 0;
        n += one;
    }
    c->puback_count = 0;
    return n;
}

static void send_pubacks(mqtt_conn *c)
{
    uint8_t b[PUBACK_HELD_MAX * 8];
    if (c->puback_count > 0)
        mqtt_conn_send(c, b, take_pubacks(c, b, sizeof b));
}

void mqtt_conn_hold_puback(mqtt_conn *c, uint16_t packet_id)
{
    if (c->puback_count == PUBACK_HELD_MAX)
        send_pubacks(c);
    if (c->puback_count == 0)
        c->puback_since_ms = now_ms();
    c->puback_held[c->puback_count++] = packet_id;
}

bool mqtt_conn_publish(mqtt_conn *c, const char *topic, size_t tlen, const uint8_t *payload, size_t plen)
{
    bool sent = false;
    if (!c->closing && tlen > 0) {
        /* The held PUBACKs and the answer encoded straight into one
         * contiguous reservation of the output: one SSL_write. */
        size_t acks = (size_t)c->puback_count * 8;
        size_t n = enr_mqtt_encode_publish(NULL, 0, c->level, 0, 0, topic, tlen, payload, plen);
        struct evbuffer *out = bufferevent_get_output(c->bev);
        struct evbuffer_iovec v;
        if (n > 0 && evbuffer_reserve_space(out, (ev_ssize_t)(acks + n), &v, 1) == 1) {
            uint8_t *b = v.iov_base;
            size_t at = take_pubacks(c, b, acks);
            if (enr_mqtt_encode_publish(b + at, n, c->level, 0, 0, topic, tlen, payload, plen) == n) {
                v.iov_len = at + n;
                sent = true;
                atomic_fetch_add(&c->l->counters.answers, 1);
            } else {
                v.iov_len = at;
            }
            if (evbuffer_commit_space(out, &v, 1) == 0 && v.iov_len > 0)
                bufferevent_enable(c->bev, EV_WRITE);
        }
    }
    if (!c->closing)
        send_pubacks(c); /* no answer went out (or no room for it): still owed */
    return sent;
}

void mqtt_conn_fail(mqtt_conn *c, enr_mqtt_reason r)
{
    if (c->level == 5) {
        uint8_t b[4];
        mqtt_conn_send(c, b, enr_mqtt_encode_disconnect(b, sizeof b, 5, enr_mqtt_reason_v5_code(r)));
    }
    atomic_fetch_add(&c->l->counters.malformed, 1);
    log_event(c, LOG_MALFORMED, enr_mqtt_reason_name(r));
    mqtt_conn_close(c);
}

static void conn_read(struct bufferevent *bev, void *arg);

void mqtt_conn_connack(mqtt_conn *c, uint8_t level, uint8_t v4_code, uint8_t v5_code, const char *why)
{
    mqtt_listener *l = c->l;
    bool waited = c->connecting;
    c->connecting = false;
    c->connack_sent = true;
    enr_mqtt_connack a = {.code = level == 5 ? v5_code : v4_code};
    if (a.code == 0 && level == 5) {
        a.receive_maximum = 16;
        a.maximum_packet_size = (uint32_t)l->lim.max_packet_bytes;
        a.has_server_keepalive = true;
        a.server_keepalive = (uint16_t)(c->keepalive_ms / 1500.0);
    }
    uint8_t b[64];
    mqtt_conn_send(c, b, enr_mqtt_encode_connack(b, sizeof b, level == 5 ? 5 : 4, &a));
    if (a.code != 0) {
        atomic_fetch_add(&l->counters.refused, 1);
        log_event(c, LOG_REFUSED, why);
        mqtt_conn_close(c);
        return;
    }
    c->level = level;
    c->last_rx_ms = now_ms();
    if (waited && !c->closing) {
        /* What the client sent meanwhile is read now (this is a
         * completion, never inside conn_read). */
        bufferevent_enable(c->bev, EV_READ);
        if (evbuffer_get_length(bufferevent_get_input(c->bev)) > 0)
            conn_read(c->bev, c);
    }
}

SSL *mqtt_conn_ssl(mqtt_conn *c)
{
    return c->l->tls != NULL ? bufferevent_openssl_get_ssl(c->bev) : NULL;
}

mqtt_listener *mqtt_conn_listener(const mqtt_conn *c)
{
    return c->l;
}

void *mqtt_conn_state(mqtt_conn *c)
{
    return c->state;
}

uint8_t mqtt_conn_level(const mqtt_conn *c)
{
    return c->level;
}

bool mqtt_conn_closing(const mqtt_conn *c)
{
    return c->closing;
}

void mqtt_conn_set_who(mqtt_conn *c, const char *who)
{
    snprintf(c->who, sizeof c->who, "%s", who != NULL ? who : "");
}

static void on_connect(mqtt_conn *c, const enr_mqtt_connect *p)
{
    mqtt_listener *l = c->l;
    int keepalive = p->keepalive == 0 || p->keepalive > l->lim.max_keepalive_seconds ? l->lim.max_keepalive_seconds
                                                                                      : p->keepalive;
    c->keepalive_ms = keepalive * 1500.0;
    l->proto->on_connect(c, p);
    if (!c->connack_sent && !c->closing) {
        c->connecting = true; /* conn_read stops after this packet */
        bufferevent_disable(c->bev, EV_READ); /* until the CONNACK */
    }
}

static void on_subscribe(mqtt_conn *c, const enr_mqtt_subscribe *s, bool unsubscribe)
{
    uint8_t codes[ENR_MQTT_FILTERS_MAX];
    c->l->proto->on_subscribe(c, s, unsubscribe, codes);
    uint8_t b[64];
    size_t n = unsubscribe ? enr_mqtt_encode_unsuback(b, sizeof b, c->level, s->packet_id, codes, s->count)
                           : enr_mqtt_encode_suback(b, sizeof b, c->level, s->packet_id, codes, s->count);
    mqtt_conn_send(c, b, n);
}

static void on_packet(mqtt_conn *c, const uint8_t *b, size_t n)
{
    enr_mqtt_packet p;
    enr_error err;
    /* Before CONNACK the packets of the CONNECT's level are what we parse. */
    enr_mqtt_reason r = enr_mqtt_parse(b, n, c->level, &p, &err);
    atomic_fetch_add(&c->l->counters.packets, 1);
    if (r == ENR_MQTT_PROTOCOL_VERSION && c->level == 0) {
        /* A 3.1 or future client: tell it in 3.1.1 words, which it reads. */
        mqtt_conn_connack(c, 4, ENR_MQTT_CONNACK_BAD_VERSION, ENR_MQTT5_BAD_VERSION, "protocol_version");
        return;
    }
    if (r == ENR_MQTT_AUTH_METHOD && c->level == 0) {
        mqtt_conn_connack(c, 5, ENR_MQTT_CONNACK_BAD_CREDENTIALS, ENR_MQTT5_BAD_AUTH_METHOD, "auth_method");
        return;
    }
    if (r != ENR_MQTT_OK) {
        if (c->level == 0 && p.type == ENR_MQTT_CONNECT && b[0] == 0x10 && n > 8 && b[8] == 5)
            c->level = 5; /* a bad MQTT 5 CONNECT still hears why */
        mqtt_conn_fail(c, r);
        return;
    }
    c->last_rx_ms = now_ms();
    switch (p.type) {
    case ENR_MQTT_CONNECT: on_connect(c, &p.u.connect); break;
    case ENR_MQTT_PUBLISH: c->l->proto->on_publish(c, &p.u.publish); break;
    case ENR_MQTT_SUBSCRIBE: on_subscribe(c, &p.u.subscribe, false); break;
    case ENR_MQTT_UNSUBSCRIBE: on_subscribe(c, &p.u.subscribe, true); break;
    case ENR_MQTT_PINGREQ: {
        uint8_t pr[2];
        mqtt_conn_send(c, pr, enr_mqtt_encode_pingresp(pr, sizeof pr));
        break;
    }
    case ENR_MQTT_PUBACK: break; /* our answers are QoS 0: nothing waits for it */
    case ENR_MQTT_DISCONNECT: mqtt_conn_close(c); break;
    default: mqtt_conn_fail(c, ENR_MQTT_PACKET_TYPE); break;
    }
}

static void conn_read(struct bufferevent *bev, void *arg)
{
    mqtt_conn *c = arg;
    struct evbuffer *in = bufferevent_get_input(bev);
    while (!c->closing && !c->connecting) {
        size_t len = evbuffer_get_length(in);
        if (len == 0)
            break;
        size_t head = len < ENR_MQTT_HEADER_MAX ? len : ENR_MQTT_HEADER_MAX;
        const uint8_t *p = evbuffer_pullup(in, (ev_ssize_t)head);
        size_t n = 0;
        enr_error err;
        enr_mqtt_reason r = enr_mqtt_frame(p, head, c->l->lim.max_packet_bytes, &n, &err);
        if (r == ENR_MQTT_NEED_MORE && (n == 0 || len < n))
            break;
        if (r != ENR_MQTT_OK && r != ENR_MQTT_NEED_MORE) {
            mqtt_conn_fail(c, r);
            break;
        }
        p = evbuffer_pullup(in, (ev_ssize_t)n);
        on_packet(c, p, n);
        evbuffer_drain(in, n);
    }
    if (c->closing && evbuffer_get_length(bufferevent_get_output(bev)) == 0)
        conn_free(c);
}

static void conn_event(struct bufferevent *bev, short what, void *arg)
{
    (void)bev;
    if (what & (BEV_EVENT_EOF | BEV_EVENT_ERROR))
        conn_free(arg);
}

static void on_accept(struct evconnlistener *el, evutil_socket_t fd, struct sockaddr *sa, int salen, void *arg)
{
    (void)el, (void)sa, (void)salen;
    mqtt_listener *l = arg;
    mqtt_conn *c = calloc(1, sizeof *c + l->proto->state_size);
    SSL *ssl = c == NULL || l->tls == NULL ? NULL
               : l->lim.tls_new != NULL     ? l->lim.tls_new(l->lim.tls_new_arg)
                                            : SSL_new(l->tls);
    struct bufferevent *bev = NULL;
    if (c != NULL && l->tls != NULL && ssl != NULL)
        bev = bufferevent_openssl_socket_new(l->base, fd, ssl, BUFFEREVENT_SSL_ACCEPTING, BEV_OPT_CLOSE_ON_FREE);
    else if (c != NULL && l->tls == NULL)
        bev = bufferevent_socket_new(l->base, fd, BEV_OPT_CLOSE_ON_FREE);
    if (bev == NULL) {
        if (ssl != NULL)
            SSL_free(ssl);
        free(c);
        evutil_closesocket(fd);
        return;
    }
    if (l->tls != NULL)
        bufferevent_openssl_set_allow_dirty_shutdown(bev, 1);
    double now = now_ms();
    *c = (mqtt_conn){.l = l, .bev = bev, .accepted_ms = now, .last_rx_ms = now, .next = l->conns,
                     .state = l->proto->state_size > 0 ? (void *)(c + 1) : NULL};
    if (l->conns != NULL)
        l->conns->prev = c;
    l->conns = c;
    l->count++;
    atomic_fetch_add(&l->counters.connections, 1);
    atomic_fetch_add(&l->counters.open, 1);
    /* Reading stops at the maximum packet: a larger one is refused from its
     * header, so nothing beyond the maximum is ever buffered. */
    bufferevent_setwatermark(bev, EV_READ, 0, l->lim.max_packet_bytes);
    bufferevent_setcb(bev, conn_read, write_drained, conn_event, c);
    bufferevent_enable(bev, EV_READ);
    bufferevent_disable(bev, EV_WRITE); /* until there is something to write (write_drained) */
    listener_update(l);
}

/* Deadlines: CONNECT within connect_timeout (the TLS handshake and the
 * CONNECT's own decision included), then a packet within 1.5 x the
 * keepalive; closing connections whose peer does not read go after a
 * second. */
static void tick(evutil_socket_t fd, short what, void *arg)
{
    (void)fd, (void)what;
    mqtt_listener *l = arg;
    double now = now_ms();
    for (mqtt_conn *c = l->conns, *next; c != NULL; c = next) {
        next = c->next;
        if (c->closing) {
            if (now - c->closing_ms > 1000.0)
                conn_free(c);
            continue;
        }
        if (c->puback_count > 0 && now - c->puback_since_ms >= PUBACK_HOLD_MS)
            send_pubacks(c);
        bool late = c->level == 0 ? now - c->accepted_ms > l->lim.connect_timeout_seconds * 1000.0
                                  : now - c->last_rx_ms > c->keepalive_ms;
        if (late) {
            atomic_fetch_add(&l->counters.timeouts, 1);
            log_event(c, LOG_TIMEOUT, c->level == 0 ? "connect_timeout" : "keepalive");
            if (c->level == 5) {
                uint8_t b[4];
                mqtt_conn_send(c, b, enr_mqtt_encode_disconnect(b, sizeof b, 5, ENR_MQTT5_KEEPALIVE_TIMEOUT));
            }
            mqtt_conn_close(c);
            if (evbuffer_get_length(bufferevent_get_output(c->bev)) == 0)
                conn_free(c);
        }
    }
    for (int k = 0; k < LOG_KINDS; k++)
        log_window(l, (enum log_kind)k);
}

enr_code mqtt_listener_new(struct event_base *base, int listen_fd, SSL_CTX *tls, const mqtt_protocol *proto,
                           void *arg, const mqtt_limits *lim, mqtt_listener **out, enr_error *err)
{
    *out = NULL;
    if (lim->max_connections < 1 || lim->connect_timeout_seconds < 1 || lim->max_keepalive_seconds < 1 ||
        lim->max_keepalive_seconds > 65535 || lim->max_packet_bytes < 128 ||
        lim->max_packet_bytes > ENR_MQTT_REMAINING_MAX || lim->log_lines_per_second < 0) {
        close(listen_fd);
        return enr_error_set(err, ENR_E_USAGE, "%s: a limit is out of range", proto->name);
    }
    mqtt_listener *l = calloc(1, sizeof *l);
    if (l == NULL) {
        close(listen_fd);
        return enr_error_set(err, ENR_E_NOMEM, "out of memory");
    }
    l->base = base;
    l->proto = proto;
    l->arg = arg;
    l->lim = *lim;
    if (tls != NULL && SSL_CTX_up_ref(tls) == 1)
        l->tls = tls;
    l->listener = evconnlistener_new(base, on_accept, l, LEV_OPT_CLOSE_ON_FREE | LEV_OPT_CLOSE_ON_EXEC, -1, listen_fd);
    l->tick = event_new(base, -1, EV_PERSIST, tick, l);
    struct timeval quarter = {0, 250 * 1000};
    if (l->listener == NULL || l->tick == NULL || event_add(l->tick, &quarter) != 0 || (tls != NULL && l->tls == NULL)) {
        if (l->listener == NULL)
            close(listen_fd);
        mqtt_listener_free(l);
        return enr_error_set(err, ENR_E_NOMEM, "%s: cannot listen on the event loop", proto->name);
    }
    *out = l;
    return ENR_OK;
}

void mqtt_listener_stop_accepting(mqtt_listener *l)
{
    if (l == NULL)
        return;
    l->stopping = true;
    listener_update(l);
}

void mqtt_listener_free(mqtt_listener *l)
{
    if (l == NULL)
        return;
    while (l->conns != NULL)
        conn_free(l->conns);
    if (l->listener != NULL)
        evconnlistener_free(l->listener);
    if (l->tick != NULL)
        event_free(l->tick);
    SSL_CTX_free(l->tls);
    free(l);
}

const mqtt_counters *mqtt_listener_counters(const mqtt_listener *l)
{
    return &l->counters;
}

void *mqtt_listener_arg(const mqtt_listener *l)
{
    return l->arg;
}

int mqtt_listener_calls_open(const mqtt_listener *l)
{
    return l != NULL ? l->calls_open : 0;
}

void mqtt_listener_calls_add(mqtt_listener *l, int delta)
{
    l->calls_open += delta;
}
