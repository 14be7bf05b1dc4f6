/* AWS IoT fleet provisioning over MQTT (service/aws_mqtt.h), a protocol on
 * enrolld's MQTT connections (service/mqtt_conn.h). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/quote.h"
#include "enroll/aws_fleet.h"
#include "service/aws_mqtt.h"

/* A request in the core's hands, until answered or cancelled. */
typedef struct acall {
    mqtt_conn *c;
    enr_aws_call *call;
    enr_aws_fleet_topic topic;
    struct acall *prev, *next;
} acall;

/* A connection's AWS state (mqtt_conn_state). */
typedef struct aconn {
    enr_aws_call *connecting;     /* CONNECT's authentication in the core's hands */
    uint8_t connect_level;
    enr_aws_peer peer;            /* what CONNECT proved */
    char client_id[ENR_STORE_ID_MAX + 1];
    char filters[AWS_MQTT_SUBSCRIPTIONS_MAX][ENR_AWS_FLEET_TOPIC_MAX + 1];
    size_t filter_count;
    acall *calls;
    int calls_open;
} aconn;

struct aws_mqtt {
    mqtt_listener *l;
    enr_aws_loop *loop;
};

static aconn *A(mqtt_conn *c)
{
    return mqtt_conn_state(c);
}

static enr_aws_loop *loop_of(mqtt_conn *c)
{
    return ((aws_mqtt *)mqtt_listener_arg(mqtt_conn_listener(c)))->loop;
}

static void on_close(mqtt_conn *c)
{
    aconn *a = A(c);
    enr_aws_cancel(a->connecting);
    a->connecting = NULL;
    for (acall *q = a->calls, *next; q != NULL; q = next) {
        next = q->next;
        enr_aws_cancel(q->call);
        free(q);
        mqtt_listener_calls_add(mqtt_conn_listener(c), -1);
    }
}

/* ---- CONNECT -------------------------------------------------------------- */

static void connected(void *ctx, const enr_aws_outcome *o)
{
    mqtt_conn *c = ctx;
    aconn *a = A(c);
    a->connecting = NULL;
    uint8_t level = a->connect_level;
    if (o->accepted) {
        a->peer = *o->peer;
        mqtt_conn_connack(c, level, ENR_MQTT_CONNACK_ACCEPTED, ENR_MQTT5_SUCCESS, "accepted");
    } else if (o->status >= 500) {
        mqtt_conn_connack(c, level, ENR_MQTT_CONNACK_UNAVAILABLE, ENR_MQTT5_SERVER_UNAVAILABLE, "unavailable");
    } else if (o->status == 401) {
        mqtt_conn_connack(c, level, ENR_MQTT_CONNACK_BAD_CREDENTIALS, ENR_MQTT5_BAD_CREDENTIALS, "bad_certificate");
    } else {
        mqtt_conn_connack(c, level, ENR_MQTT_CONNACK_NOT_AUTHORIZED, ENR_MQTT5_NOT_AUTHORIZED,
                          o->reason == ENR_R_THING_DISABLED ? "thing_disabled" : "not_claim_or_thing");
    }
}

static void on_connect(mqtt_conn *c, const enr_mqtt_connect *p)
{
    aconn *a = A(c);
    /* The AWS SDKs put metrics in the username ("?SDK=...&Platform=..."):
     * it means nothing here, nor does a password. The client id is any
     * text up to 128 bytes (AWS's rule), only passed to the hook. */
    if (p->client_id.len > ENR_STORE_ID_MAX) {
        mqtt_conn_connack(c, p->level, ENR_MQTT_CONNACK_ID_REJECTED, ENR_MQTT5_ID_NOT_VALID, "client_id");
        return;
    }
    memcpy(a->client_id, p->client_id.data, p->client_id.len);
    a->client_id[p->client_id.len] = '\0';
    mqtt_conn_set_who(c, enr_quote_n((const char *)p->client_id.data, p->client_id.len).text);
    SSL *ssl = mqtt_conn_ssl(c);
    X509 *cert = ssl != NULL ? SSL_get0_peer_certificate(ssl) : NULL;
    if (cert == NULL) {
        mqtt_conn_connack(c, p->level, ENR_MQTT_CONNACK_BAD_CREDENTIALS, ENR_MQTT5_BAD_CREDENTIALS,
                          "no_client_certificate");
        return;
    }
    a->connect_level = p->level;
    a->connecting = enr_aws_authenticate(loop_of(c), cert, SSL_get_peer_cert_chain(ssl), a->client_id, connected, c);
    if (a->connecting == NULL)
        mqtt_conn_connack(c, p->level, ENR_MQTT_CONNACK_UNAVAILABLE, ENR_MQTT5_SERVER_UNAVAILABLE, "out_of_memory");
}

/* ---- SUBSCRIBE -------------------------------------------------------------- */

/* MQTT's matching of a topic by a filter ('+' one level, '#' the rest). */
static bool filter_matches(const char *filter, const char *topic)
{
    for (;;) {
        if (filter[0] == '#')
            return true;
        if (filter[0] == '+') {
            while (*topic != '\0' && *topic != '/')
                topic++;
            filter++;
        } else {
            while (*filter != '\0' && *filter != '/' && *filter == *topic)
                filter++, topic++;
            if ((*filter != '\0' && *filter != '/') || (*topic != '\0' && *topic != '/'))
                return false;
        }
        if (*filter == '\0' || *topic == '\0')
            return *filter == '\0' && *topic == '\0';
        /* both at '/' */
        filter++, topic++;
        if (*topic == '\0' && *filter == '#')
            return true;
    }
}

static bool subscribed_to(const aconn *a, const char *topic)
{
    for (size_t i = 0; i < a->filter_count; i++)
        if (filter_matches(a->filters[i], topic))
            return true;
    return false;
}

/* The template a Create call should issue under when the claim has
 * several: the one RegisterThing answers were subscribed for, if one. */
static void template_hint(const aconn *a, char out[ENR_AWS_FLEET_TEMPLATE_NAME_MAX + 1])
{
    out[0] = '\0';
    for (size_t i = 0; i < a->filter_count; i++) {
        char name[ENR_AWS_FLEET_TEMPLATE_NAME_MAX + 1] = "";
        if (!enr_aws_fleet_filter_allowed((const uint8_t *)a->filters[i], strlen(a->filters[i]), name) || !name[0])
            continue;
        if (out[0] && strcmp(out, name) != 0) {
            out[0] = '\0';
            return; /* two: no hint */
        }
        snprintf(out, ENR_AWS_FLEET_TEMPLATE_NAME_MAX + 1, "%s", name);
    }
}

static void on_subscribe(mqtt_conn *c, const enr_mqtt_subscribe *s, bool unsubscribe, uint8_t *codes)
{
    aconn *a = A(c);
    for (size_t i = 0; i < s->count; i++) {
        const enr_mqtt_span *f = &s->filters[i].filter;
        char text[ENR_AWS_FLEET_TOPIC_MAX + 1] = "";
        bool fits = f->len <= ENR_AWS_FLEET_TOPIC_MAX;
        if (fits) {
            memcpy(text, f->data, f->len);
            text[f->len] = '\0';
        }
        size_t at = a->filter_count;
        for (size_t k = 0; fits && k < a->filter_count; k++)
            if (strcmp(a->filters[k], text) == 0)
                at = k;
        if (unsubscribe) {
            codes[i] = at < a->filter_count ? ENR_MQTT5_SUCCESS : ENR_MQTT5_NO_SUBSCRIPTION;
            if (at < a->filter_count) {
                memmove(&a->filters[at], &a->filters[at + 1], (a->filter_count - at - 1) * sizeof a->filters[0]);
                a->filter_count--;
            }
            continue;
        }
        /* Any template's answer topics: what a connection may hear is only
         * ever its own answers, so a filter grants nothing more; and a
         * device asking a template it may not use hears why (rejected). */
        bool allowed = fits && enr_aws_fleet_filter_allowed(f->data, f->len, NULL);
        if (allowed && at == a->filter_count && a->filter_count == AWS_MQTT_SUBSCRIPTIONS_MAX)
            allowed = false;
        if (!allowed) {
            codes[i] = mqtt_conn_level(c) == 5 ? ENR_MQTT5_NOT_AUTHORIZED : 0x80;
            mqtt_conn_log_refusal(c, "subscribe_not_allowed");
            continue;
        }
        if (at == a->filter_count)
            snprintf(a->filters[a->filter_count++], sizeof a->filters[0], "%s", text);
        codes[i] = (s->filters[i].options & 0x03) ? 1 : 0; /* QoS 1 at most */
    }
}

/* ---- PUBLISH ---------------------------------------------------------------- */

static void answer(mqtt_conn *c, const enr_aws_fleet_topic *t, bool accepted, const uint8_t *doc, size_t len)
{
    char topic[ENR_AWS_FLEET_TOPIC_MAX + 1];
    size_t tlen = enr_aws_fleet_answer_topic(topic, sizeof topic, t, accepted);
    /* Only to a subscriber, as AWS's broker would: the SDKs subscribe first. */
    if (tlen > 0 && doc != NULL && subscribed_to(A(c), topic))
        mqtt_conn_publish(c, topic, tlen, doc, len);
    else
        mqtt_conn_publish(c, "", 0, NULL, 0); /* the PUBACKs are still owed */
}

static const char *reason_word(const enr_aws_outcome *o)
{
    switch (o->status) {
    case 400: return "invalid";
    case 403: return "access_denied";
    case 404: return "not_found";
    case 429: return "throttled";
    default: return o->status >= 500 ? "unavailable" : "rejected";
    }
}

static void answered(void *ctx, const enr_aws_outcome *o)
{
    acall *q = ctx;
    mqtt_conn *c = q->c;
    aconn *a = A(c);
    if (q->prev != NULL)
        q->prev->next = q->next;
    else
        a->calls = q->next;
    if (q->next != NULL)
        q->next->prev = q->prev;
    a->calls_open--;
    mqtt_listener_calls_add(mqtt_conn_listener(c), -1);
    if (!o->accepted)
        mqtt_conn_log_refusal(c, reason_word(o));
    answer(c, &q->topic, o->accepted, o->answer, o->answer_len);
    free(q);
}

static void on_publish(mqtt_conn *c, const enr_mqtt_publish *p)
{
    aconn *a = A(c);
    enr_aws_fleet_topic t;
    enr_error err;
    if (enr_aws_fleet_topic_classify(p->topic.data, p->topic.len, &t, &err) != ENR_AWS_FLEET_TOPIC_REQUEST) {
        /* Not the provisioning API: nothing else exists here. */
        mqtt_conn_log_refusal(c, "publish_not_allowed");
        mqtt_conn_fail(c, ENR_MQTT_TOPIC_INVALID);
        return;
    }
    if (p->qos == 1)
        mqtt_conn_hold_puback(c, p->packet_id);
    if (a->calls_open >= AWS_MQTT_CALLS_PER_CONNECTION) {
        uint8_t *doc = NULL;
        size_t len = 0;
        enr_aws_fleet_encode_rejected(t.format, 429, "ThrottlingException",
                                      "too many requests in flight on one connection", &doc, &len, &err);
        mqtt_conn_log_refusal(c, "throttled");
        answer(c, &t, false, doc, len);
        free(doc);
        return;
    }
    acall *q = calloc(1, sizeof *q);
    if (q == NULL) {
        mqtt_conn_fail(c, ENR_MQTT_BUFFER);
        return;
    }
    q->c = c;
    q->topic = t;
    char hint[ENR_AWS_FLEET_TEMPLATE_NAME_MAX + 1];
    template_hint(a, hint);
    enr_aws_request r = {.peer = &a->peer, .topic = &t, .template_hint = hint,
                         .payload = p->payload.data, .payload_len = p->payload.len};
    q->call = enr_aws_submit(loop_of(c), &r, answered, q);
    if (q->call == NULL) {
        free(q);
        mqtt_conn_fail(c, ENR_MQTT_BUFFER);
        return;
    }
    q->next = a->calls;
    if (a->calls != NULL)
        a->calls->prev = q;
    a->calls = q;
    a->calls_open++;
    mqtt_listener_calls_add(mqtt_conn_listener(c), 1);
}

/* ---- the front end ---------------------------------------------------------- */

static const mqtt_protocol AWS_PROTOCOL = {
    .name = "aws_mqtt",
    .id_field = "client_id",
    .state_size = sizeof(aconn),
    .on_connect = on_connect,
    .on_publish = on_publish,
    .on_subscribe = on_subscribe,
    .on_close = on_close,
};

enr_code aws_mqtt_new(struct event_base *base, int listen_fd, SSL_CTX *tls, enr_aws_loop *loop,
                      const mqtt_limits *lim, aws_mqtt **out, enr_error *err)
{
    *out = NULL;
    aws_mqtt *m = calloc(1, sizeof *m);
    if (m == NULL) {
        close(listen_fd);
        return enr_error_set(err, ENR_E_NOMEM, "out of memory");
    }
    m->loop = loop;
    enr_code rc = mqtt_listener_new(base, listen_fd, tls, &AWS_PROTOCOL, m, lim, &m->l, err);
    if (rc != ENR_OK) {
        free(m);
        return rc;
    }
    *out = m;
    return ENR_OK;
}

void aws_mqtt_stop_accepting(aws_mqtt *m)
{
    if (m != NULL)
        mqtt_listener_stop_accepting(m->l);
}

int aws_mqtt_calls_open(const aws_mqtt *m)
{
    return m != NULL ? mqtt_listener_calls_open(m->l) : 0;
}

void aws_mqtt_free(aws_mqtt *m)
{
    if (m == NULL)
        return;
    mqtt_listener_free(m->l);
    free(m);
}

const mqtt_counters *aws_mqtt_get_counters(const aws_mqtt *m)
{
    return mqtt_listener_counters(m->l);
}
