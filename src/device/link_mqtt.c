/* The registration transport over DPS's MQTT (link.h), on libmosquitto.
 *
 * MQTT 3.1.1 over TLS, as the Azure SDKs speak it: client id = the
 * registration id, user name {idScope}/registrations/{id}/api-version={v}
 * &ClientVersion=..., password = the SAS token (none with a client
 * certificate); SUBSCRIBE $dps/registrations/res/#; the register and poll
 * requests are PUBLISHes, answered on $dps/registrations/res/{status}/
 * ?$rid={rid}[&retry-after={s}] with the HTTPS bodies.
 *
 * The connection (our TLS, libmosquitto driven synchronously against one
 * deadline per request, CONNACK refusals, subscriptions) is mqtt_client.c's,
 * shared with AWS fleet provisioning (link_aws.c).
 *
 * One connection serves a registration's register and its polls; it is made
 * again when the service closed it in between (an idle connection outlives
 * the keepalive the service allows only so long). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "device/link.h"
#include "device/mqtt_client.h"
#include "enroll/dps.h"

#ifndef ENROLL_VERSION
#define ENROLL_VERSION "0.1.0"
#endif

#define RESPONSE_FILTER "$dps/registrations/res/#"

typedef struct mqtt_link {
    dev_link base;
    dev_mqtt_conn *conn;
    char *username;
    int timeout_ms;
    unsigned long next_rid;
    /* The request in flight and its answer. */
    char want_rid[DEV_MQTT_RID_MAX];
    bool have_reply, reply_too_large;
    dev_reply reply;
} mqtt_link;

/* ---- names (unit-tested through link.h) ---- */

static bool digits(const char *s, size_t n)
{
    if (n == 0)
        return false;
    for (size_t i = 0; i < n; i++)
        if (s[i] < '0' || s[i] > '9')
            return false;
    return true;
}

bool dev_mqtt_answer_topic_parse(const char *topic, int *status, char *rid, size_t rid_cap, long *retry_after)
{
    static const char prefix[] = "$dps/registrations/res/";
    if (topic == NULL || rid == NULL || rid_cap == 0 || strncmp(topic, prefix, sizeof prefix - 1) != 0)
        return false;
    const char *p = topic + sizeof prefix - 1;
    size_t n = strcspn(p, "/");
    if (n != 3 || !digits(p, 3) || strncmp(p + 3, "/?", 2) != 0)
        return false;
    int st = (p[0] - '0') * 100 + (p[1] - '0') * 10 + (p[2] - '0');
    if (st < 200 || st > 599)
        return false;
    p += 5;
    bool have_rid = false;
    long ra = -1;
    rid[0] = '\0';
    /* Parameters in any order; unknown ones are the service's business. */
    while (*p != '\0') {
        size_t len = strcspn(p, "&");
        const char *eq = memchr(p, '=', len);
        if (eq == NULL)
            return false;
        size_t klen = (size_t)(eq - p), vlen = len - klen - 1;
        const char *v = eq + 1;
        if (klen == 4 && strncmp(p, "$rid", 4) == 0) {
            if (have_rid || vlen == 0 || vlen >= rid_cap)
                return false;
            for (size_t i = 0; i < vlen; i++)
                if (v[i] == '/' || v[i] == '#' || v[i] == '+' || (unsigned char)v[i] < 0x21)
                    return false;
            memcpy(rid, v, vlen);
            rid[vlen] = '\0';
            have_rid = true;
        } else if (klen == 11 && strncmp(p, "retry-after", 11) == 0) {
            if (!digits(v, vlen) || vlen > 6)
                return false;
            ra = strtol(v, NULL, 10);
        }
        p += len;
        if (*p == '&' && *++p == '\0')
            return false;
    }
    if (!have_rid)
        return false;
    *status = st;
    *retry_after = ra;
    return true;
}

bool dev_mqtt_connack_refuses_credential(int code)
{
    switch (code) {
    case 2:    /* 3.1.1: identifier rejected */
    case 4:    /* 3.1.1: bad user name or password */
    case 5:    /* 3.1.1: not authorized */
    case 0x85: /* 5: client identifier not valid */
    case 0x86: /* 5: bad user name or password */
    case 0x87: /* 5: not authorized */
    case 0x8A: /* 5: banned */
    case 0x8C: /* 5: bad authentication method */
        return true;
    default:
        return false;
    }
}

const char *dev_mqtt_connack_text(int code)
{
    switch (code) {
    case 1: return "unacceptable protocol version";
    case 2: return "client identifier rejected";
    case 3: return "server unavailable";
    case 4: return "bad user name or password";
    case 5: return "not authorized";
    case 0x80: return "unspecified error";
    case 0x84: return "unsupported protocol version";
    case 0x85: return "client identifier not valid";
    case 0x86: return "bad user name or password";
    case 0x87: return "not authorized";
    case 0x88: return "server unavailable";
    case 0x89: return "server busy";
    case 0x8A: return "banned";
    case 0x8C: return "bad authentication method";
    case 0x97: return "quota exceeded";
    default: return "refused";
    }
}

/* ---- the link ---- */

static void on_message(void *obj, const char *topic, const void *payload, size_t len)
{
    mqtt_link *l = obj;
    int status;
    long retry_after;
    char rid[DEV_MQTT_RID_MAX];
    /* Only the answer to the request in flight: a late answer to an earlier
     * one (a timed-out request, say) carries another $rid. */
    if (l->have_reply || l->want_rid[0] == '\0' ||
        !dev_mqtt_answer_topic_parse(topic, &status, rid, sizeof rid, &retry_after) || strcmp(rid, l->want_rid) != 0)
        return;
    if (len > ENR_DPS_RESPONSE_BODY_MAX) {
        l->reply_too_large = true;
        l->have_reply = true;
        return;
    }
    char *body = malloc(len + 1);
    if (body == NULL)
        return; /* the request then times out: a retry may find memory */
    if (len > 0)
        memcpy(body, payload, len);
    body[len] = '\0';
    l->reply.status = status;
    l->reply.retry_after = retry_after;
    l->reply.body = body;
    l->reply.body_len = len;
    l->have_reply = true;
}

static enr_code mqtt_send(dev_link *base, const char *operation_id, const char *body, const char *sas_token,
                          dev_reply *out, enr_error *err)
{
    mqtt_link *l = (mqtt_link *)base;
    long long deadline = dev_mqtt_now_ms() + l->timeout_ms;
    static const char *const filters[] = {RESPONSE_FILTER};
    enr_code rc = ENR_OK;
    if (!dev_mqtt_conn_alive(l->conn) &&
        (rc = dev_mqtt_conn_open(l->conn, l->username, sas_token, filters, 1, deadline, err)) != ENR_OK)
        return rc;
    bool poll = operation_id != NULL && operation_id[0] != '\0';
    char topic[256];
    snprintf(l->want_rid, sizeof l->want_rid, "%lu", ++l->next_rid);
    int n = poll ? snprintf(topic, sizeof topic, "$dps/registrations/GET/iotdps-get-operationstatus/?$rid=%s&operationId=%s",
                            l->want_rid, operation_id)
                 : snprintf(topic, sizeof topic, "$dps/registrations/PUT/iotdps-register/?$rid=%s", l->want_rid);
    if (n < 0 || (size_t)n >= sizeof topic)
        return enr_error_set(err, ENR_E_USAGE, "operation id too long");
    dev_reply_free(&l->reply);
    l->have_reply = l->reply_too_large = false;
    /* Register at QoS 1 with the JSON body; poll at QoS 0 with an empty
     * payload, as the C SDK does. */
    size_t len = !poll && body != NULL ? strlen(body) : 0;
    rc = dev_mqtt_conn_publish(l->conn, topic, body, len, poll ? 0 : 1, err);
    if (rc != ENR_OK) {
        l->want_rid[0] = '\0';
        return rc;
    }
    rc = dev_mqtt_conn_wait(l->conn, &l->have_reply, deadline, "waiting for the answer from", err);
    l->want_rid[0] = '\0';
    if (rc == ENR_OK && l->reply_too_large)
        rc = enr_error_set(err, ENR_E_PARSE, "the answer from %s is larger than %u bytes", dev_mqtt_conn_host(l->conn),
                           (unsigned)ENR_DPS_RESPONSE_BODY_MAX);
    if (rc != ENR_OK) {
        dev_reply_free(&l->reply);
        return rc;
    }
    *out = l->reply;
    memset(&l->reply, 0, sizeof l->reply);
    return ENR_OK;
}

static void mqtt_destroy(dev_link *base)
{
    mqtt_link *l = (mqtt_link *)base;
    dev_mqtt_conn_free(l->conn);
    dev_reply_free(&l->reply);
    free(l->username);
    free(l);
}

enr_code dev_link_mqtt_new(const dev_link_options *o, dev_link **out, enr_error *err)
{
    *out = NULL;
    mqtt_link *l = calloc(1, sizeof *l);
    if (l == NULL)
        return enr_error_set(err, ENR_E_NOMEM, "out of memory");
    l->base.send = mqtt_send;
    l->base.destroy = mqtt_destroy;
    l->timeout_ms = o->timeout_ms > 0 ? o->timeout_ms : 30000;
    /* The user name DPS expects; ClientVersion is a URL-encoded user agent. */
    size_t ulen = strlen(o->id_scope) + strlen(o->registration_id) + strlen(o->api_version) + 96;
    enr_code rc;
    if ((l->username = malloc(ulen)) == NULL) {
        mqtt_destroy(&l->base);
        return enr_error_set(err, ENR_E_NOMEM, "out of memory");
    }
    snprintf(l->username, ulen, "%s/registrations/%s/api-version=%s&ClientVersion=enroll%%2F%s", o->id_scope,
             o->registration_id, o->api_version, ENROLL_VERSION);
    dev_mqtt_conn_options co = {.url = o->url, .client_id = o->registration_id, .tls = o->tls,
                                .timeout_ms = l->timeout_ms, .on_message = on_message, .ctx = l};
    if ((rc = dev_mqtt_conn_new(&co, &l->conn, err)) != ENR_OK) {
        mqtt_destroy(&l->base);
        return rc;
    }
    *out = &l->base;
    return ENR_OK;
}
