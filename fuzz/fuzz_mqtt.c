/* libFuzzer: MQTT packets and the DPS names inside them are the first bytes
 * an unauthenticated device controls on the MQTT port. The first input
 * byte picks the connection's protocol level (0: before CONNECT, 4, 5);
 * the rest is what the client sent. Framing and parsing must refuse or
 * accept anything without crashing or reading past the end, always with a
 * reason and a message; what parses must go round: a PUBLISH or PUBACK
 * re-encoded parses to the same packet, a DPS username or topic rebuilt
 * from its fields parses to the same fields. */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "enroll/mqtt.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define MAX_PACKET 65536

static void check_publish(const enr_mqtt_publish *pub, uint8_t level)
{
    static uint8_t again[MAX_PACKET + 64];
    size_t n = enr_mqtt_encode_publish(again, sizeof again, level, pub->qos, pub->packet_id,
                                       (const char *)pub->topic.data, pub->topic.len, pub->payload.data,
                                       pub->payload.len);
    if (n == 0 || n > sizeof again)
        abort();
    enr_mqtt_packet p;
    enr_error err;
    if (enr_mqtt_parse(again, n, level, &p, &err) != ENR_MQTT_OK || p.type != ENR_MQTT_PUBLISH ||
        p.u.publish.qos != pub->qos || p.u.publish.packet_id != pub->packet_id ||
        p.u.publish.topic.len != pub->topic.len || p.u.publish.payload.len != pub->payload.len ||
        memcmp(p.u.publish.topic.data, pub->topic.data, pub->topic.len) != 0 ||
        (pub->payload.len && memcmp(p.u.publish.payload.data, pub->payload.data, pub->payload.len) != 0))
        abort();
    /* A DPS request topic: the answer topic for its $rid must be made. */
    enr_dps_mqtt_topic t;
    if (enr_dps_mqtt_topic_parse(pub->topic.data, pub->topic.len, &t, &err) == ENR_MQTT_OK) {
        char answer[256];
        if (enr_dps_mqtt_response_topic(answer, sizeof answer, 202, t.rid, 3) == 0)
            abort();
        char rebuilt[512];
        int m = t.is_register
                    ? snprintf(rebuilt, sizeof rebuilt, "$dps/registrations/PUT/iotdps-register/?$rid=%s", t.rid)
                    : snprintf(rebuilt, sizeof rebuilt,
                               "$dps/registrations/GET/iotdps-get-operationstatus/?$rid=%s&operationId=%s", t.rid,
                               t.operation_id);
        enr_dps_mqtt_topic t2;
        if (m <= 0 || enr_dps_mqtt_topic_parse((const uint8_t *)rebuilt, (size_t)m, &t2, &err) != ENR_MQTT_OK ||
            memcmp(&t, &t2, sizeof t) != 0)
            abort();
    }
}

static void check_connect(const enr_mqtt_connect *c)
{
    if (!enr_mqtt_utf8_valid(c->client_id.data, c->client_id.len))
        abort();
    if (!c->has_username)
        return;
    enr_dps_mqtt_username u;
    enr_error err;
    if (enr_dps_mqtt_username_parse(c->username.data, c->username.len, &u, &err) != ENR_MQTT_OK)
        return;
    char rebuilt[512];
    int m = snprintf(rebuilt, sizeof rebuilt, "%s/registrations/%s/api-version=%s", u.id_scope,
                     u.registration_id, u.api_version);
    enr_dps_mqtt_username u2;
    if (m <= 0 || enr_dps_mqtt_username_parse((const uint8_t *)rebuilt, (size_t)m, &u2, &err) != ENR_MQTT_OK ||
        memcmp(&u, &u2, sizeof u) != 0)
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    static const uint8_t LEVELS[] = {0, 4, 5};
    uint8_t level = LEVELS[data[0] % 3];
    data++, size--;
    /* An exact-size copy, so reading one byte past the end is caught. */
    uint8_t *buf = malloc(size ? size : 1);
    if (buf == NULL)
        return 0;
    memcpy(buf, data, size);
    size_t at = 0;
    while (at < size) {
        size_t n = 0;
        enr_error err;
        err.message[0] = '\0';
        enr_mqtt_reason r = enr_mqtt_frame(buf + at, size - at, MAX_PACKET, &n, &err);
        if (r == ENR_MQTT_NEED_MORE)
            break;
        if (r != ENR_MQTT_OK) {
            if (err.message[0] == '\0' || (r != ENR_MQTT_MALFORMED && r != ENR_MQTT_TOO_LARGE))
                abort();
            break;
        }
        if (n < 2 || n > size - at || n > MAX_PACKET)
            abort();
        /* Parse from its own exact-size copy: the parser sees one packet. */
        uint8_t *one = malloc(n);
        if (one == NULL)
            break;
        memcpy(one, buf + at, n);
        enr_mqtt_packet p;
        err.message[0] = '\0';
        r = enr_mqtt_parse(one, n, level, &p, &err);
        if (r == ENR_MQTT_OK) {
            if (p.type == ENR_MQTT_CONNECT) {
                check_connect(&p.u.connect);
                level = p.u.connect.level;
            } else if (p.type == ENR_MQTT_PUBLISH) {
                check_publish(&p.u.publish, level);
            } else if (p.type == ENR_MQTT_PUBACK) {
                uint8_t again[8];
                uint8_t reason = level == 5 ? p.u.puback.reason : 0;
                size_t m = enr_mqtt_encode_puback(again, sizeof again, level, p.u.puback.packet_id, reason);
                enr_mqtt_packet q;
                if (m == 0 || enr_mqtt_parse(again, m, level, &q, &err) != ENR_MQTT_OK ||
                    q.u.puback.packet_id != p.u.puback.packet_id || q.u.puback.reason != reason)
                    abort();
            } else if (p.type == ENR_MQTT_SUBSCRIBE || p.type == ENR_MQTT_UNSUBSCRIBE) {
                if (p.u.subscribe.count == 0 || p.u.subscribe.count > ENR_MQTT_FILTERS_MAX ||
                    p.u.subscribe.packet_id == 0)
                    abort();
            }
        } else if (r == ENR_MQTT_NEED_MORE || err.message[0] == '\0') {
            abort();
        }
        free(one);
        if (r != ENR_MQTT_OK)
            break;
        at += n;
    }
    /* The DPS parsers straight on the bytes too. */
    enr_dps_mqtt_username u;
    enr_dps_mqtt_topic t;
    enr_error err;
    (void)enr_dps_mqtt_username_parse(buf, size, &u, &err);
    (void)enr_dps_mqtt_topic_parse(buf, size, &t, &err);
    free(buf);
    return 0;
}
