/* DPS over MQTT (service/dps_mqtt.h): the protocol on enrolld's MQTT
 * connections (service/mqtt_conn.h): CONNECT names and authenticates one
 * registration, the SUBSCRIBE to $dps/registrations/res/# (or one exact
 * answer topic) is the only one granted, and PUBLISHes to the two request
 * topics become provisioning core requests whose answers go back to that
 * connection only. */
#include <openssl/crypto.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "enroll/dps.h"
#include "enroll/mqtt.h"
#include "service/dps_mqtt.h"

/* A request in the core's hands, until answered or cancelled. */
typedef struct mcall {
    mqtt_conn *c;
    enr_provision_call *call;     /* NULL until submit returned it */
    char rid[ENR_DPS_MQTT_RID_MAX + 1];
    struct mcall *prev, *next;
} mcall;

/* A connection's DPS state (mqtt_conn_state). */
typedef struct dconn {
    bool subscribed;              /* to ENR_DPS_MQTT_RESPONSE_FILTER */
    /* Exact answer topics subscribed to (clients that wait for one answer,
     * as mosquitto_rr does); an answer goes out when it matches. */
    char exact[2][128];
    char id_scope[ENR_DPS_ID_SCOPE_MAX + 1];
    char registration_id[ENR_DPS_REGISTRATION_ID_MAX + 1];
    char api_version[32];
    char *sas_token;              /* the CONNECT password, NUL-terminated; cleansed when freed */
    /* What CONNECT's attestation proved, for the register that follows
     * (the core decides whether it still holds; spent by that register). */
    enr_provision_grant *grant;
    mcall *calls;
    int calls_open;               /* in the core's hands (DPS_MQTT_CALLS_PER_CONNECTION) */
} dconn;

struct dps_mqtt {
    mqtt_listener *l;
    enr_provision *core;
};

static dconn *D(mqtt_conn *c)
{
    return mqtt_conn_state(c);
}

static enr_provision *core_of(mqtt_conn *c)
{
    return ((dps_mqtt *)mqtt_listener_arg(mqtt_conn_listener(c)))->core;
}

static void on_close(mqtt_conn *c)
{
    dconn *d = D(c);
    /* The core keeps working on the registration; only the answer is off. */
    for (mcall *q = d->calls, *next; q != NULL; q = next) {
        next = q->next;
        if (q->call != NULL)
            enr_provision_cancel(q->call);
        free(q);
        mqtt_listener_calls_add(mqtt_conn_listener(c), -1);
    }
    if (d->sas_token != NULL)
        OPENSSL_clear_free(d->sas_token, strlen(d->sas_token));
    enr_provision_grant_free(d->grant);
}

/* ---- CONNECT -------------------------------------------------------------- */

static void on_connect(mqtt_conn *c, const enr_mqtt_connect *p)
{
    dconn *d = D(c);
    uint8_t level = p->level;
    enr_dps_mqtt_username u;
    enr_error err;
    if (!p->has_username || enr_dps_mqtt_username_parse(p->username.data, p->username.len, &u, &err) != ENR_MQTT_OK) {
        mqtt_conn_connack(c, level, ENR_MQTT_CONNACK_BAD_CREDENTIALS, ENR_MQTT5_BAD_CREDENTIALS, "username");
        return;
    }
    size_t idlen = strlen(u.registration_id);
    if (p->client_id.len != idlen || strncasecmp((const char *)p->client_id.data, u.registration_id, idlen) != 0) {
        mqtt_conn_connack(c, level, ENR_MQTT_CONNACK_ID_REJECTED, ENR_MQTT5_ID_NOT_VALID, "client_id_not_registration_id");
        return;
    }
    memcpy(d->id_scope, u.id_scope, sizeof d->id_scope);
    memcpy(d->registration_id, u.registration_id, sizeof d->registration_id);
    memcpy(d->api_version, u.api_version, sizeof d->api_version);
    mqtt_conn_set_who(c, d->registration_id);
    if (p->has_password) {
        d->sas_token = OPENSSL_malloc(p->password.len + 1);
        if (d->sas_token == NULL) {
            mqtt_conn_connack(c, level, ENR_MQTT_CONNACK_UNAVAILABLE, ENR_MQTT5_SERVER_UNAVAILABLE, "out_of_memory");
            return;
        }
        memcpy(d->sas_token, p->password.data, p->password.len);
        d->sas_token[p->password.len] = '\0';
        if (strlen(d->sas_token) != p->password.len) { /* a NUL inside: no token of ours */
            mqtt_conn_connack(c, level, ENR_MQTT_CONNACK_BAD_CREDENTIALS, ENR_MQTT5_BAD_CREDENTIALS, "password");
            return;
        }
    }
    SSL *ssl = mqtt_conn_ssl(c);
    enr_peer_credential peer = {.sas_token = d->sas_token,
                                .certificate = ssl ? SSL_get0_peer_certificate(ssl) : NULL,
                                .chain = ssl ? SSL_get_peer_cert_chain(ssl) : NULL};
    if (peer.sas_token == NULL && peer.certificate == NULL) {
        mqtt_conn_connack(c, level, ENR_MQTT_CONNACK_BAD_CREDENTIALS, ENR_MQTT5_BAD_CREDENTIALS, "no_credential");
        return;
    }
    /* The checks a request gets before its verb, once for the connection
     * (refusals audited by the core). The grant spares the register that
     * follows a second attestation of the same token; every other request
     * is attested again (a token expires; an operator disables). */
    char message[256] = "";
    enr_dps_error e = enr_provision_authenticate(core_of(c), d->id_scope, d->registration_id, d->api_version, &peer,
                                                 &d->grant, message, sizeof message);
    switch (e) {
    case ENR_DPS_OK: break;
    case ENR_DPS_STORE_UNAVAILABLE:
    case ENR_DPS_INTERNAL:
    case ENR_DPS_THROTTLED:
        mqtt_conn_connack(c, level, ENR_MQTT_CONNACK_UNAVAILABLE, ENR_MQTT5_SERVER_UNAVAILABLE, enr_dps_error_name(e));
        return;
    case ENR_DPS_UNKNOWN_ID_SCOPE:
    case ENR_DPS_ENROLLMENT_DISABLED:
    case ENR_DPS_REGISTRATION_DISABLED:
        mqtt_conn_connack(c, level, ENR_MQTT_CONNACK_NOT_AUTHORIZED, ENR_MQTT5_NOT_AUTHORIZED, enr_dps_error_name(e));
        return;
    default:
        mqtt_conn_connack(c, level, ENR_MQTT_CONNACK_BAD_CREDENTIALS, ENR_MQTT5_BAD_CREDENTIALS, enr_dps_error_name(e));
        return;
    }
    mqtt_conn_connack(c, level, ENR_MQTT_CONNACK_ACCEPTED, ENR_MQTT5_SUCCESS, "accepted");
}

/* ---- requests --------------------------------------------------------------- */

static void answered(void *ctx, const enr_provision_outcome *o)
{
    mcall *q = ctx;
    mqtt_conn *c = q->c;
    dconn *d = D(c);
    if (q->prev != NULL)
        q->prev->next = q->next;
    else
        d->calls = q->next;
    if (q->next != NULL)
        q->next->prev = q->prev;
    d->calls_open--;
    mqtt_listener_calls_add(mqtt_conn_listener(c), -1);
    char topic[128];
    size_t tlen = enr_dps_mqtt_response_topic(topic, sizeof topic, o->status, q->rid, o->retry_after);
    const char *body = o->body ? o->body : "{}";
    /* Only to a subscriber, as a broker would: the DPS SDKs subscribe first. */
    bool wanted = d->subscribed || strcmp(d->exact[0], topic) == 0 || strcmp(d->exact[1], topic) == 0;
    if (tlen > 0 && wanted)
        mqtt_conn_publish(c, topic, tlen, (const uint8_t *)body, strlen(body));
    else
        mqtt_conn_publish(c, "", 0, NULL, 0); /* the PUBACKs are still owed */
    free(q);
}

static void on_publish(mqtt_conn *c, const enr_mqtt_publish *p)
{
    dconn *d = D(c);
    mqtt_listener *l = mqtt_conn_listener(c);
    enr_dps_mqtt_topic t;
    enr_error err;
    if (enr_dps_mqtt_topic_parse(p->topic.data, p->topic.len, &t, &err) != ENR_MQTT_OK) {
        mqtt_conn_fail(c, ENR_MQTT_TOPIC_INVALID);
        return;
    }
    if (p->qos == 1)
        mqtt_conn_hold_puback(c, p->packet_id); /* goes out with the answer */
    mcall *q = calloc(1, sizeof *q);
    if (q == NULL) {
        mqtt_conn_fail(c, ENR_MQTT_BUFFER);
        return;
    }
    q->c = c;
    memcpy(q->rid, t.rid, sizeof q->rid);
    q->next = d->calls;
    if (d->calls != NULL)
        d->calls->prev = q;
    d->calls = q;
    d->calls_open++;
    mqtt_listener_calls_add(l, 1);
    /* A DPS client waits for each answer; one that does not may not queue
     * the core's work without bound (HTTP/1.1 gets one request at a time). */
    if (d->calls_open > DPS_MQTT_CALLS_PER_CONNECTION) {
        enr_provision_refuse(core_of(c), ENR_DPS_THROTTLED, "too many requests in flight on one MQTT connection",
                             d->registration_id, t.is_register ? "register" : "operation", answered, q);
        return;
    }
    SSL *ssl = mqtt_conn_ssl(c);
    enr_provision_request r = {
        .verb = t.is_register ? ENR_PROVISION_REGISTER : ENR_PROVISION_OPERATION_STATUS,
        .id_scope = d->id_scope,
        .registration_id = d->registration_id,
        .operation_id = t.is_register ? NULL : t.operation_id,
        .api_version = d->api_version,
        .peer = {.sas_token = d->sas_token,
                 .certificate = ssl ? SSL_get0_peer_certificate(ssl) : NULL,
                 .chain = ssl ? SSL_get_peer_cert_chain(ssl) : NULL},
        .body = t.is_register ? (const char *)p->payload.data : "",
        .body_len = t.is_register ? p->payload.len : 0,
        .grant = d->grant,
    };
    if (r.body == NULL)
        r.body = "";
    /* `answered` may run before this returns (then q is gone). */
    enr_provision_call *call = enr_provision_submit(core_of(c), &r, answered, q);
    if (call != NULL)
        q->call = call;
}

static void on_subscribe(mqtt_conn *c, const enr_mqtt_subscribe *s, bool unsubscribe, uint8_t *codes)
{
    dconn *d = D(c);
    for (size_t i = 0; i < s->count; i++) {
        const enr_mqtt_span *f = &s->filters[i].filter;
        bool ours = f->len == strlen(ENR_DPS_MQTT_RESPONSE_FILTER) &&
                    memcmp(f->data, ENR_DPS_MQTT_RESPONSE_FILTER, f->len) == 0;
        /* One answer topic, no wildcard: $dps/registrations/res/... */
        bool exact = !ours && f->len > 23 && f->len < sizeof d->exact[0] &&
                     memcmp(f->data, ENR_DPS_MQTT_RESPONSE_FILTER, 23) == 0 && !memchr(f->data, '+', f->len) &&
                     !memchr(f->data, '#', f->len);
        if (exact && !unsubscribe) {
            int slot = d->exact[0][0] == '\0' ? 0 : 1;
            memcpy(d->exact[slot], f->data, f->len);
            d->exact[slot][f->len] = '\0';
            codes[i] = (s->filters[i].options & 0x03) ? 1 : 0;
            continue;
        }
        if (unsubscribe) {
            codes[i] = ours && d->subscribed ? ENR_MQTT5_SUCCESS : ENR_MQTT5_NO_SUBSCRIPTION;
            if (ours)
                d->subscribed = false;
        } else if (ours) {
            d->subscribed = true;
            codes[i] = (s->filters[i].options & 0x03) ? 1 : 0; /* QoS 1 at most */
        } else {
            codes[i] = 0x80; /* DPS is not a broker: no other topic exists */
        }
    }
}

static const mqtt_protocol DPS_PROTOCOL = {
    .name = "mqtt",
    .id_field = "registration_id",
    .state_size = sizeof(dconn),
    .on_connect = on_connect,
    .on_publish = on_publish,
    .on_subscribe = on_subscribe,
    .on_close = on_close,
};

enr_code dps_mqtt_new(struct event_base *base, int listen_fd, SSL_CTX *tls, enr_provision *core,
                      const dps_mqtt_limits *lim, dps_mqtt **out, enr_error *err)
{
    *out = NULL;
    dps_mqtt *m = calloc(1, sizeof *m);
    if (m == NULL) {
        close(listen_fd);
        return enr_error_set(err, ENR_E_NOMEM, "out of memory");
    }
    m->core = core;
    enr_code rc = mqtt_listener_new(base, listen_fd, tls, &DPS_PROTOCOL, m, lim, &m->l, err);
    if (rc != ENR_OK) {
        free(m);
        return rc;
    }
    *out = m;
    return ENR_OK;
}

void dps_mqtt_stop_accepting(dps_mqtt *m)
{
    if (m != NULL)
        mqtt_listener_stop_accepting(m->l);
}

int dps_mqtt_calls_open(const dps_mqtt *m)
{
    return m != NULL ? mqtt_listener_calls_open(m->l) : 0;
}

void dps_mqtt_free(dps_mqtt *m)
{
    if (m == NULL)
        return;
    mqtt_listener_free(m->l);
    free(m);
}

const dps_mqtt_counters *dps_mqtt_get_counters(const dps_mqtt *m)
{
    return mqtt_listener_counters(m->l);
}
