/* DPS over MQTT (service/dps_mqtt.h): connections, their deadlines, and
 * the translation of MQTT packets into provisioning core requests.
 *
 * Answers are published at QoS 0 although the subscription is granted at
 * QoS 1 (a server may deliver below the granted QoS): a session is never
 * kept, so QoS 1 would only redeliver on the same TCP connection, where
 * nothing is lost; the SDKs (C, Node, Python) accept either. Incoming
 * PUBACKs are therefore read and ignored.
 *
 * A register's PUBACK is held until its answer is written (both then go
 * in one TLS record and one write, instead of a write, a wake-up and two
 * epoll changes each), at most PUBACK_HOLD_MS: MQTT sets no time for a
 * PUBACK, only its order (4.6: as the PUBLISHes came), which a FIFO keeps. */
#include <errno.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>
#include <event2/listener.h>
#include <openssl/crypto.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "enroll/dps.h"
#include "enroll/duration.h"
#include "enroll/mqtt.h"
#include "service/dps_mqtt.h"

enum log_kind { LOG_REFUSED = 0, LOG_MALFORMED, LOG_TIMEOUT, LOG_KINDS };
static const char *const LOG_NAMES[LOG_KINDS] = {"mqtt_connect_refused", "mqtt_malformed", "mqtt_timeout"};

typedef struct log_limit {
    double window_start_ms;
    int lines;
    unsigned long suppressed;
} log_limit;

typedef struct mconn mconn;

/* PUBACKs held at once on a connection; one more sends them all first. */
#define PUBACK_HELD_MAX 8
/* The tick sends PUBACKs held longer than this (the answer is slow: a 202
 * comes only after assigning_after_ms). */
#define PUBACK_HOLD_MS 200.0

/* A request in the core's hands, until answered or cancelled. */
typedef struct mcall {
    mconn *c;
    enr_provision_call *call;     /* NULL until submit returned it */
    char rid[ENR_DPS_MQTT_RID_MAX + 1];
    struct mcall *prev, *next;
} mcall;

struct mconn {
    dps_mqtt *m;
    struct bufferevent *bev;
    uint8_t level;                /* 0 until CONNECT */
    bool subscribed;              /* to ENR_DPS_MQTT_RESPONSE_FILTER */
    /* Exact answer topics subscribed to (clients that wait for one answer,
     * as mosquitto_rr does); an answer goes out when it matches. */
    char exact[2][128];
    bool closing;                 /* the last bytes are going out; then freed */
    double accepted_ms, last_rx_ms, closing_ms;
    double keepalive_ms;          /* 1.5 x the keepalive in force */
    char id_scope[ENR_DPS_ID_SCOPE_MAX + 1];
    char registration_id[ENR_DPS_REGISTRATION_ID_MAX + 1];
    char api_version[32];
    char *sas_token;              /* the CONNECT password, NUL-terminated; cleansed when freed */
    /* What CONNECT's attestation proved, for the register that follows
     * (the core decides whether it still holds; spent by that register). */
    enr_provision_grant *grant;
    mcall *calls;
    int calls_open;               /* in the core's hands (DPS_MQTT_CALLS_PER_CONNECTION) */
    uint16_t puback_held[PUBACK_HELD_MAX]; /* packet ids owed a PUBACK, oldest first */
    int puback_count;
    double puback_since_ms;       /* when the oldest of them came */
    mconn *prev, *next;
};

struct dps_mqtt {
    struct event_base *base;
    SSL_CTX *tls;
    enr_provision *core;
    dps_mqtt_limits lim;
    struct evconnlistener *listener;
    struct event *tick;
    mconn *conns;
    int count;
    int calls_open;               /* over every connection (the stop drains them) */
    bool stopping;                /* dps_mqtt_stop_accepting: the listener stays off */
    bool paused;
    log_limit logs[LOG_KINDS];
    dps_mqtt_counters counters;
};

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1000.0 + (double)ts.tv_nsec / 1e6;
}

/* ---- bounded logging ---------------------------------------------------- */

static void log_window(dps_mqtt *m, enum log_kind k)
{
    log_limit *l = &m->logs[k];
    double now = now_ms();
    if (now - l->window_start_ms >= 1000.0) {
        if (l->suppressed > 0) {
            char at[32];
            enr_time_format(time(NULL), at, sizeof at);
            fprintf(stderr, "{\"ts\":\"%s\",\"event\":\"suppressed\",\"what\":\"%s\",\"count\":%lu}\n", at,
                    LOG_NAMES[k], l->suppressed);
        }
        l->window_start_ms = now;
        l->lines = 0;
        l->suppressed = 0;
    }
}

static bool log_allowed(dps_mqtt *m, enum log_kind k)
{
    log_window(m, k);
    log_limit *l = &m->logs[k];
    if (l->lines < m->lim.log_lines_per_second) {
        l->lines++;
        return true;
    }
    l->suppressed++;
    return false;
}

/* One line: the reason is one of our own names, the registration id was
 * checked ([A-Za-z0-9._:-]) or is empty. Never a password or token. */
static void log_event(mconn *c, enum log_kind k, const char *reason)
{
    if (!log_allowed(c->m, k))
        return;
    char at[32];
    enr_time_format(time(NULL), at, sizeof at);
    fprintf(stderr, "{\"ts\":\"%s\",\"event\":\"%s\",\"reason\":\"%s\",\"registration_id\":\"%s\"}\n", at,
            LOG_NAMES[k], reason, c->registration_id);
}

/* ---- connections -------------------------------------------------------- */

static void listener_update(dps_mqtt *m)
{
    bool pause = m->stopping || m->count >= m->lim.max_connections;
    if (pause != m->paused) {
        m->paused = pause;
        if (pause)
            evconnlistener_disable(m->listener);
        else
            evconnlistener_enable(m->listener);
    }
}

static void conn_free(mconn *c)
{
    dps_mqtt *m = c->m;
    /* The core keeps working on the registration; only the answer is off. */
    for (mcall *q = c->calls, *next; q != NULL; q = next) {
        next = q->next;
        if (q->call != NULL)
            enr_provision_cancel(q->call);
        free(q);
        m->calls_open--;
    }
    if (c->sas_token != NULL)
        OPENSSL_clear_free(c->sas_token, strlen(c->sas_token));
    enr_provision_grant_free(c->grant);
    bufferevent_free(c->bev);
    if (c->prev != NULL)
        c->prev->next = c->next;
    else
        m->conns = c->next;
    if (c->next != NULL)
        c->next->prev = c->prev;
    m->count--;
    atomic_fetch_sub(&m->counters.open, 1);
    free(c);
    listener_update(m);
}

/* Writing is enabled only while there is something to write: an enabled
 * write event over an empty output still costs a wake-up and two epoll
 * changes (libevent's OpenSSL bufferevent arms it again when the
 * handshake ends), per connection and for nothing. The callback can come
 * after more was queued (an answer completed meanwhile on this loop):
 * then writing stays on, or that answer would never leave. */
static void write_drained(struct bufferevent *bev, void *arg)
{
    mconn *c = arg;
    if (c->closing)
        conn_free(c);
    else if (evbuffer_get_length(bufferevent_get_output(bev)) == 0)
        bufferevent_disable(bev, EV_WRITE);
}

/* Stops reading; the connection goes once what was written is out (the
 * tick frees it anyway after a second, should the peer not read). */
static void conn_close(mconn *c)
{
    if (c->closing)
        return;
    c->closing = true;
    c->closing_ms = now_ms();
    bufferevent_disable(c->bev, EV_READ);
}

static void send_bytes(mconn *c, const uint8_t *b, size_t n)
{
    if (n > 0 && bufferevent_write(c->bev, b, n) == 0)
        bufferevent_enable(c->bev, EV_WRITE);
}

/* Appends the held PUBACKs (in the order their PUBLISHes came) to `b`;
 * the bytes written, 0 when `cap` is too small (none are then taken). */
static size_t take_pubacks(mconn *c, uint8_t *b, size_t cap)
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

static void send_pubacks(mconn *c)
{
    uint8_t b[PUBACK_HELD_MAX * 8];
    if (c->puback_count > 0)
        send_bytes(c, b, take_pubacks(c, b, sizeof b));
}

static void hold_puback(mconn *c, uint16_t packet_id)
{
    if (c->puback_count == PUBACK_HELD_MAX)
        send_pubacks(c);
    if (c->puback_count == 0)
        c->puback_since_ms = now_ms();
    c->puback_held[c->puback_count++] = packet_id;
}

/* A protocol failure: MQTT 5 hears why (DISCONNECT), 3.1.1 is just closed. */
static void conn_fail(mconn *c, enr_mqtt_reason r)
{
    if (c->level == 5) {
        uint8_t b[4];
        send_bytes(c, b, enr_mqtt_encode_disconnect(b, sizeof b, 5, enr_mqtt_reason_v5_code(r)));
    }
    atomic_fetch_add(&c->m->counters.malformed, 1);
    log_event(c, LOG_MALFORMED, enr_mqtt_reason_name(r));
    conn_close(c);
}

/* ---- CONNECT -------------------------------------------------------------- */

static void connack(mconn *c, uint8_t level, uint8_t v4_code, uint8_t v5_code, const char *why)
{
    dps_mqtt *m = c->m;
    enr_mqtt_connack a = {.code = level == 5 ? v5_code : v4_code};
    if (a.code == 0 && level == 5) {
        a.receive_maximum = 16;
        a.maximum_packet_size = (uint32_t)m->lim.max_packet_bytes;
        a.has_server_keepalive = true;
        a.server_keepalive = (uint16_t)(c->keepalive_ms / 1500.0);
    }
    uint8_t b[64];
    send_bytes(c, b, enr_mqtt_encode_connack(b, sizeof b, level == 5 ? 5 : 4, &a));
    if (a.code != 0) {
        atomic_fetch_add(&m->counters.refused, 1);
        log_event(c, LOG_REFUSED, why);
        conn_close(c);
    }
}

static SSL *conn_ssl(mconn *c)
{
    return c->m->tls != NULL ? bufferevent_openssl_get_ssl(c->bev) : NULL;
}

static void on_connect(mconn *c, const enr_mqtt_connect *p)
{
    dps_mqtt *m = c->m;
    uint8_t level = p->level;
    int keepalive = p->keepalive == 0 || p->keepalive > m->lim.max_keepalive_seconds ? m->lim.max_keepalive_seconds
                                                                                      : p->keepalive;
    c->keepalive_ms = keepalive * 1500.0;
    enr_dps_mqtt_username u;
    enr_error err;
    if (!p->has_username || enr_dps_mqtt_username_parse(p->username.data, p->username.len, &u, &err) != ENR_MQTT_OK) {
        connack(c, level, ENR_MQTT_CONNACK_BAD_CREDENTIALS, ENR_MQTT5_BAD_CREDENTIALS, "username");
        return;
    }
    size_t idlen = strlen(u.registration_id);
    if (p->client_id.len != idlen || strncasecmp((const char *)p->client_id.data, u.registration_id, idlen) != 0) {
        connack(c, level, ENR_MQTT_CONNACK_ID_REJECTED, ENR_MQTT5_ID_NOT_VALID, "client_id_not_registration_id");
        return;
    }
    memcpy(c->id_scope, u.id_scope, sizeof c->id_scope);
    memcpy(c->registration_id, u.registration_id, sizeof c->registration_id);
    memcpy(c->api_version, u.api_version, sizeof c->api_version);
    if (p->has_password) {
        c->sas_token = OPENSSL_malloc(p->password.len + 1);
        if (c->sas_token == NULL) {
            connack(c, level, ENR_MQTT_CONNACK_UNAVAILABLE, ENR_MQTT5_SERVER_UNAVAILABLE, "out_of_memory");
            return;
        }
        memcpy(c->sas_token, p->password.data, p->password.len);
        c->sas_token[p->password.len] = '\0';
        if (strlen(c->sas_token) != p->password.len) { /* a NUL inside: no token of ours */
            connack(c, level, ENR_MQTT_CONNACK_BAD_CREDENTIALS, ENR_MQTT5_BAD_CREDENTIALS, "password");
            return;
        }
    }
    SSL *ssl = conn_ssl(c);
    enr_peer_credential peer = {.sas_token = c->sas_token,
                                .certificate = ssl ? SSL_get0_peer_certificate(ssl) : NULL,
                                .chain = ssl ? SSL_get_peer_cert_chain(ssl) : NULL};
    if (peer.sas_token == NULL && peer.certificate == NULL) {
        connack(c, level, ENR_MQTT_CONNACK_BAD_CREDENTIALS, ENR_MQTT5_BAD_CREDENTIALS, "no_credential");
        return;
    }
    c->level = level;
    /* The checks a request gets before its verb, once for the connection
     * (refusals audited by the core). The grant spares the register that
     * follows a second attestation of the same token; every other request
     * is attested again (a token expires; an operator disables). */
    char message[256] = "";
    enr_dps_error e = enr_provision_authenticate(m->core, c->id_scope, c->registration_id, c->api_version, &peer,
                                                 &c->grant, message, sizeof message);
    switch (e) {
    case ENR_DPS_OK: break;
    case ENR_DPS_STORE_UNAVAILABLE:
    case ENR_DPS_INTERNAL:
    case ENR_DPS_THROTTLED:
        connack(c, level, ENR_MQTT_CONNACK_UNAVAILABLE, ENR_MQTT5_SERVER_UNAVAILABLE, enr_dps_error_name(e));
        return;
    case ENR_DPS_UNKNOWN_ID_SCOPE:
    case ENR_DPS_ENROLLMENT_DISABLED:
    case ENR_DPS_REGISTRATION_DISABLED:
        connack(c, level, ENR_MQTT_CONNACK_NOT_AUTHORIZED, ENR_MQTT5_NOT_AUTHORIZED, enr_dps_error_name(e));
        return;
    default:
        connack(c, level, ENR_MQTT_CONNACK_BAD_CREDENTIALS, ENR_MQTT5_BAD_CREDENTIALS, enr_dps_error_name(e));
        return;
    }
    connack(c, level, ENR_MQTT_CONNACK_ACCEPTED, ENR_MQTT5_SUCCESS, "accepted");
}

/* ---- requests --------------------------------------------------------------- */

static void answered(void *ctx, const enr_provision_outcome *o)
{
    mcall *q = ctx;
    mconn *c = q->c;
    if (q->prev != NULL)
        q->prev->next = q->next;
    else
        c->calls = q->next;
    if (q->next != NULL)
        q->next->prev = q->prev;
    c->calls_open--;
    c->m->calls_open--;
    char topic[128];
    size_t tlen = enr_dps_mqtt_response_topic(topic, sizeof topic, o->status, q->rid, o->retry_after);
    const char *body = o->body ? o->body : "{}";
    /* Only to a subscriber, as a broker would: the DPS SDKs subscribe first. */
    bool wanted = c->subscribed || strcmp(c->exact[0], topic) == 0 || strcmp(c->exact[1], topic) == 0;
    if (tlen > 0 && wanted && !c->closing) {
        /* The held PUBACKs and the answer encoded straight into one
         * contiguous reservation of the output: one SSL_write. */
        size_t blen = strlen(body);
        size_t acks = (size_t)c->puback_count * 8;
        size_t n = enr_mqtt_encode_publish(NULL, 0, c->level, 0, 0, topic, tlen, (const uint8_t *)body, blen);
        struct evbuffer *out = bufferevent_get_output(c->bev);
        struct evbuffer_iovec v;
        if (n > 0 && evbuffer_reserve_space(out, (ev_ssize_t)(acks + n), &v, 1) == 1) {
            uint8_t *b = v.iov_base;
            size_t at = take_pubacks(c, b, acks);
            if (enr_mqtt_encode_publish(b + at, n, c->level, 0, 0, topic, tlen, (const uint8_t *)body, blen) == n) {
                v.iov_len = at + n;
                atomic_fetch_add(&c->m->counters.answers, 1);
            } else {
                v.iov_len = at;
            }
            if (evbuffer_commit_space(out, &v, 1) == 0 && v.iov_len > 0)
                bufferevent_enable(c->bev, EV_WRITE);
        }
    }
    if (!c->closing)
        send_pubacks(c); /* no answer went out (or no room for it): still owed */
    free(q);
}

static void on_publish(mconn *c, const enr_mqtt_publish *p)
{
    dps_mqtt *m = c->m;
    enr_dps_mqtt_topic t;
    enr_error err;
    if (enr_dps_mqtt_topic_parse(p->topic.data, p->topic.len, &t, &err) != ENR_MQTT_OK) {
        conn_fail(c, ENR_MQTT_TOPIC_INVALID);
        return;
    }
    if (p->qos == 1)
        hold_puback(c, p->packet_id); /* goes out with the answer */
    mcall *q = calloc(1, sizeof *q);
    if (q == NULL) {
        conn_fail(c, ENR_MQTT_BUFFER);
        return;
    }
    q->c = c;
    memcpy(q->rid, t.rid, sizeof q->rid);
    q->next = c->calls;
    if (c->calls != NULL)
        c->calls->prev = q;
    c->calls = q;
    c->calls_open++;
    m->calls_open++;
    /* A DPS client waits for each answer; one that does not may not queue
     * the core's work without bound (HTTP/1.1 gets one request at a time). */
    if (c->calls_open > DPS_MQTT_CALLS_PER_CONNECTION) {
        enr_provision_refuse(m->core, ENR_DPS_THROTTLED, "too many requests in flight on one MQTT connection",
                             c->registration_id, t.is_register ? "register" : "operation", answered, q);
        return;
    }
    SSL *ssl = conn_ssl(c);
    enr_provision_request r = {
        .verb = t.is_register ? ENR_PROVISION_REGISTER : ENR_PROVISION_OPERATION_STATUS,
        .id_scope = c->id_scope,
        .registration_id = c->registration_id,
        .operation_id = t.is_register ? NULL : t.operation_id,
        .api_version = c->api_version,
        .peer = {.sas_token = c->sas_token,
                 .certificate = ssl ? SSL_get0_peer_certificate(ssl) : NULL,
                 .chain = ssl ? SSL_get_peer_cert_chain(ssl) : NULL},
        .body = t.is_register ? (const char *)p->payload.data : "",
        .body_len = t.is_register ? p->payload.len : 0,
        .grant = c->grant,
    };
    if (r.body == NULL)
        r.body = "";
    /* `answered` may run before this returns (then q is gone). */
    enr_provision_call *call = enr_provision_submit(m->core, &r, answered, q);
    if (call != NULL)
        q->call = call;
}

void dps_mqtt_stop_accepting(dps_mqtt *m)
{
    m->stopping = true;
    listener_update(m);
}

int dps_mqtt_calls_open(const dps_mqtt *m)
{
    return m != NULL ? m->calls_open : 0;
}

static void on_subscribe(mconn *c, const enr_mqtt_subscribe *s, bool unsubscribe)
{
    uint8_t codes[ENR_MQTT_FILTERS_MAX];
    for (size_t i = 0; i < s->count; i++) {
        const enr_mqtt_span *f = &s->filters[i].filter;
        bool ours = f->len == strlen(ENR_DPS_MQTT_RESPONSE_FILTER) &&
                    memcmp(f->data, ENR_DPS_MQTT_RESPONSE_FILTER, f->len) == 0;
        /* One answer topic, no wildcard: $dps/registrations/res/... */
        bool exact = !ours && f->len > 23 && f->len < sizeof c->exact[0] &&
                     memcmp(f->data, ENR_DPS_MQTT_RESPONSE_FILTER, 23) == 0 && !memchr(f->data, '+', f->len) &&
                     !memchr(f->data, '#', f->len);
        if (exact && !unsubscribe) {
            int slot = c->exact[0][0] == '\0' ? 0 : 1;
            memcpy(c->exact[slot], f->data, f->len);
            c->exact[slot][f->len] = '\0';
            codes[i] = (s->filters[i].options & 0x03) ? 1 : 0;
            continue;
        }
        if (unsubscribe) {
            codes[i] = ours && c->subscribed ? ENR_MQTT5_SUCCESS : ENR_MQTT5_NO_SUBSCRIPTION;
            if (ours)
                c->subscribed = false;
        } else if (ours) {
            c->subscribed = true;
            codes[i] = (s->filters[i].options & 0x03) ? 1 : 0; /* QoS 1 at most */
        } else {
            codes[i] = 0x80; /* DPS is not a broker: no other topic exists */
        }
    }
    uint8_t b[64];
    size_t n = unsubscribe ? enr_mqtt_encode_unsuback(b, sizeof b, c->level, s->packet_id, codes, s->count)
                           : enr_mqtt_encode_suback(b, sizeof b, c->level, s->packet_id, codes, s->count);
    send_bytes(c, b, n);
}

static void on_packet(mconn *c, const uint8_t *b, size_t n)
{
    enr_mqtt_packet p;
    enr_error err;
    enr_mqtt_reason r = enr_mqtt_parse(b, n, c->level, &p, &err);
    atomic_fetch_add(&c->m->counters.packets, 1);
    if (r == ENR_MQTT_PROTOCOL_VERSION && c->level == 0) {
        /* A 3.1 or future client: tell it in 3.1.1 words, which it reads. */
        connack(c, 4, ENR_MQTT_CONNACK_BAD_VERSION, ENR_MQTT5_BAD_VERSION, "protocol_version");
        return;
    }
    if (r == ENR_MQTT_AUTH_METHOD && c->level == 0) {
        connack(c, 5, ENR_MQTT_CONNACK_BAD_CREDENTIALS, ENR_MQTT5_BAD_AUTH_METHOD, "auth_method");
        return;
    }
    if (r != ENR_MQTT_OK) {
        if (c->level == 0 && p.type == ENR_MQTT_CONNECT && b[0] == 0x10 && n > 8 && b[8] == 5)
            c->level = 5; /* a bad MQTT 5 CONNECT still hears why */
        conn_fail(c, r);
        return;
    }
    c->last_rx_ms = now_ms();
    switch (p.type) {
    case ENR_MQTT_CONNECT: on_connect(c, &p.u.connect); break;
    case ENR_MQTT_PUBLISH: on_publish(c, &p.u.publish); break;
    case ENR_MQTT_SUBSCRIBE: on_subscribe(c, &p.u.subscribe, false); break;
    case ENR_MQTT_UNSUBSCRIBE: on_subscribe(c, &p.u.subscribe, true); break;
    case ENR_MQTT_PINGREQ: {
        uint8_t pr[2];
        send_bytes(c, pr, enr_mqtt_encode_pingresp(pr, sizeof pr));
        break;
    }
    case ENR_MQTT_PUBACK: break; /* our answers are QoS 0: nothing waits for it */
    case ENR_MQTT_DISCONNECT: conn_close(c); break;
    default: conn_fail(c, ENR_MQTT_PACKET_TYPE); break;
    }
}

static void conn_read(struct bufferevent *bev, void *arg)
{
    mconn *c = arg;
    struct evbuffer *in = bufferevent_get_input(bev);
    while (!c->closing) {
        size_t len = evbuffer_get_length(in);
        if (len == 0)
            break;
        size_t head = len < ENR_MQTT_HEADER_MAX ? len : ENR_MQTT_HEADER_MAX;
        const uint8_t *p = evbuffer_pullup(in, (ev_ssize_t)head);
        size_t n = 0;
        enr_error err;
        enr_mqtt_reason r = enr_mqtt_frame(p, head, c->m->lim.max_packet_bytes, &n, &err);
        if (r == ENR_MQTT_NEED_MORE && (n == 0 || len < n))
            break;
        if (r != ENR_MQTT_OK && r != ENR_MQTT_NEED_MORE) {
            conn_fail(c, r);
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

static void on_accept(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *sa, int salen, void *arg)
{
    (void)l, (void)sa, (void)salen;
    dps_mqtt *m = arg;
    mconn *c = calloc(1, sizeof *c);
    SSL *ssl = c == NULL || m->tls == NULL ? NULL
               : m->lim.tls_new != NULL     ? m->lim.tls_new(m->lim.tls_new_arg)
                                            : SSL_new(m->tls);
    struct bufferevent *bev = NULL;
    if (c != NULL && m->tls != NULL && ssl != NULL)
        bev = bufferevent_openssl_socket_new(m->base, fd, ssl, BUFFEREVENT_SSL_ACCEPTING, BEV_OPT_CLOSE_ON_FREE);
    else if (c != NULL && m->tls == NULL)
        bev = bufferevent_socket_new(m->base, fd, BEV_OPT_CLOSE_ON_FREE);
    if (bev == NULL) {
        if (ssl != NULL)
            SSL_free(ssl);
        free(c);
        evutil_closesocket(fd);
        return;
    }
    if (m->tls != NULL)
        bufferevent_openssl_set_allow_dirty_shutdown(bev, 1);
    double now = now_ms();
    *c = (mconn){.m = m, .bev = bev, .accepted_ms = now, .last_rx_ms = now, .next = m->conns};
    if (m->conns != NULL)
        m->conns->prev = c;
    m->conns = c;
    m->count++;
    atomic_fetch_add(&m->counters.connections, 1);
    atomic_fetch_add(&m->counters.open, 1);
    /* Reading stops at the maximum packet: a larger one is refused from its
     * header, so nothing beyond the maximum is ever buffered. */
    bufferevent_setwatermark(bev, EV_READ, 0, m->lim.max_packet_bytes);
    bufferevent_setcb(bev, conn_read, write_drained, conn_event, c);
    bufferevent_enable(bev, EV_READ);
    bufferevent_disable(bev, EV_WRITE); /* until there is something to write (write_drained) */
    listener_update(m);
}

/* Deadlines: CONNECT within connect_timeout (the TLS handshake included),
 * then a packet within 1.5 x the keepalive; closing connections whose peer
 * does not read go after a second. */
static void tick(evutil_socket_t fd, short what, void *arg)
{
    (void)fd, (void)what;
    dps_mqtt *m = arg;
    double now = now_ms();
    for (mconn *c = m->conns, *next; c != NULL; c = next) {
        next = c->next;
        if (c->closing) {
            if (now - c->closing_ms > 1000.0)
                conn_free(c);
            continue;
        }
        if (c->puback_count > 0 && now - c->puback_since_ms >= PUBACK_HOLD_MS)
            send_pubacks(c);
        bool late = c->level == 0 ? now - c->accepted_ms > m->lim.connect_timeout_seconds * 1000.0
                                  : now - c->last_rx_ms > c->keepalive_ms;
        if (late) {
            atomic_fetch_add(&m->counters.timeouts, 1);
            log_event(c, LOG_TIMEOUT, c->level == 0 ? "connect_timeout" : "keepalive");
            if (c->level == 5) {
                uint8_t b[4];
                send_bytes(c, b, enr_mqtt_encode_disconnect(b, sizeof b, 5, ENR_MQTT5_KEEPALIVE_TIMEOUT));
            }
            conn_close(c);
            if (evbuffer_get_length(bufferevent_get_output(c->bev)) == 0)
                conn_free(c);
        }
    }
    for (int k = 0; k < LOG_KINDS; k++)
        log_window(m, (enum log_kind)k);
}

enr_code dps_mqtt_new(struct event_base *base, int listen_fd, SSL_CTX *tls, enr_provision *core,
                      const dps_mqtt_limits *lim, dps_mqtt **out, enr_error *err)
{
    *out = NULL;
    if (lim->max_connections < 1 || lim->connect_timeout_seconds < 1 || lim->max_keepalive_seconds < 1 ||
        lim->max_keepalive_seconds > 65535 || lim->max_packet_bytes < 128 ||
        lim->max_packet_bytes > ENR_MQTT_REMAINING_MAX || lim->log_lines_per_second < 0)
        return enr_error_set(err, ENR_E_USAGE, "mqtt: a limit is out of range");
    dps_mqtt *m = calloc(1, sizeof *m);
    if (m == NULL)
        return enr_error_set(err, ENR_E_NOMEM, "out of memory");
    m->base = base;
    m->core = core;
    m->lim = *lim;
    if (tls != NULL && SSL_CTX_up_ref(tls) == 1)
        m->tls = tls;
    m->listener = evconnlistener_new(base, on_accept, m, LEV_OPT_CLOSE_ON_FREE | LEV_OPT_CLOSE_ON_EXEC, -1, listen_fd);
    m->tick = event_new(base, -1, EV_PERSIST, tick, m);
    struct timeval quarter = {0, 250 * 1000};
    if (m->listener == NULL || m->tick == NULL || event_add(m->tick, &quarter) != 0 || (tls != NULL && m->tls == NULL)) {
        if (m->listener == NULL)
            close(listen_fd);
        dps_mqtt_free(m);
        return enr_error_set(err, ENR_E_NOMEM, "mqtt: cannot listen on the event loop");
    }
    *out = m;
    return ENR_OK;
}

void dps_mqtt_free(dps_mqtt *m)
{
    if (m == NULL)
        return;
    while (m->conns != NULL)
        conn_free(m->conns);
    if (m->listener != NULL)
        evconnlistener_free(m->listener);
    if (m->tick != NULL)
        event_free(m->tick);
    SSL_CTX_free(m->tls);
    free(m);
}

const dps_mqtt_counters *dps_mqtt_get_counters(const dps_mqtt *m)
{
    return &m->counters;
}
