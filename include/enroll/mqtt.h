/* MQTT 3.1.1 (protocol level 4) and MQTT 5 (level 5) packets, as a server
 * reads and writes them: framing, parsing what a client may send, encoding
 * what a server answers. Pure functions: no I/O, no allocation. What a
 * parse returns borrows from the input buffer (not NUL-terminated), so the
 * buffer must outlive the parsed packet.
 *
 * Only what a provisioning endpoint needs is understood: QoS 0 and 1 (a
 * QoS 2 PUBLISH is a typed refusal), no topic aliases, no enhanced
 * authentication. A will is parsed, validated and ignored (we are not a
 * broker: there is no one to publish it to).
 *
 * Below the codec: the names of DPS over MQTT (the CONNECT username, the
 * request topics and the answer topic), parsers of outside input as well.
 *
 * Every failure is a typed enr_mqtt_reason (what the front end decides on:
 * a CONNACK code, a DISCONNECT reason, closing) plus an enr_error whose
 * message says what was wrong and where. */
#ifndef ENROLL_MQTT_H
#define ENROLL_MQTT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "enroll/dps.h"
#include "enroll/error.h"

#ifdef __cplusplus
extern "C" {
#endif

/* The largest remaining length the 4-byte variable integer can say. */
#define ENR_MQTT_REMAINING_MAX 268435455u
/* The fixed header: one byte of type and flags, at most four of length. */
#define ENR_MQTT_HEADER_MAX 5u
/* Topic filters kept from one SUBSCRIBE/UNSUBSCRIBE; more is refused
 * (ENR_MQTT_TOO_MANY): a DPS device subscribes to one. */
#define ENR_MQTT_FILTERS_MAX 16

typedef enum enr_mqtt_reason {
    ENR_MQTT_OK = 0,
    ENR_MQTT_NEED_MORE,           /* framing: the packet is not complete yet (not an error) */
    ENR_MQTT_MALFORMED,           /* bytes that break the spec's grammar (v5 0x81) */
    ENR_MQTT_PROTOCOL_ERROR,      /* well-formed but not allowed here (v5 0x82) */
    ENR_MQTT_PROTOCOL_NAME,       /* CONNECT: not "MQTT" */
    ENR_MQTT_PROTOCOL_VERSION,    /* CONNECT: a level other than 4 or 5 (3.1.1 code 1, v5 0x84) */
    ENR_MQTT_TOO_LARGE,           /* over the maximum packet size (v5 0x95) */
    ENR_MQTT_QOS_NOT_SUPPORTED,   /* PUBLISH with QoS 2 (v5 0x9B) */
    ENR_MQTT_BAD_UTF8,            /* a string that is not MQTT's UTF-8 (malformed, v5 0x81) */
    ENR_MQTT_TOPIC_INVALID,       /* a topic name or filter that breaks its rules (v5 0x90 / 0x8F) */
    ENR_MQTT_TOPIC_ALIAS,         /* a topic alias: not supported (v5 0x94) */
    ENR_MQTT_AUTH_METHOD,         /* CONNECT asks for enhanced authentication (v5 0x8C) */
    ENR_MQTT_PACKET_TYPE,         /* a packet a client may not send us (v5 0x82) */
    ENR_MQTT_TOO_MANY,            /* more topic filters than ENR_MQTT_FILTERS_MAX (v5 0x97) */
    ENR_MQTT_BUFFER,              /* encoder: invalid arguments (the caller's mistake) */
    /* DPS names (username, topics) */
    ENR_MQTT_DPS_USERNAME,        /* not {idScope}/registrations/{id}/api-version={v}[&...] */
    ENR_MQTT_DPS_TOPIC,           /* not a DPS request topic */
} enr_mqtt_reason;

/* A short stable name ("malformed", "too-large", ...), for logs and metrics. */
const char *enr_mqtt_reason_name(enr_mqtt_reason r);
/* The MQTT 5 reason code a server sends for it (DISCONNECT, CONNACK). */
uint8_t enr_mqtt_reason_v5_code(enr_mqtt_reason r);

/* ---- framing ------------------------------------------------------------ */

/* Looks at the `len` bytes received so far, never past them.
 * ENR_MQTT_OK: a complete packet of *packet_len bytes starts at buf.
 * ENR_MQTT_NEED_MORE: read more; *packet_len is the whole packet's size
 *   once the fixed header is complete, else 0.
 * ENR_MQTT_MALFORMED: a remaining length longer than 4 bytes, or
 *   non-minimal in a way that cannot end (a 4th byte with its high bit).
 * ENR_MQTT_TOO_LARGE: the packet would be more than `max_packet` bytes
 *   (known as soon as the fixed header is, so nothing more is buffered). */
enr_mqtt_reason enr_mqtt_frame(const uint8_t *buf, size_t len, size_t max_packet, size_t *packet_len,
                               enr_error *err);

/* ---- parsed packets ------------------------------------------------------ */

typedef enum enr_mqtt_type {
    ENR_MQTT_CONNECT = 1,
    ENR_MQTT_CONNACK = 2,
    ENR_MQTT_PUBLISH = 3,
    ENR_MQTT_PUBACK = 4,
    ENR_MQTT_PUBREC = 5,
    ENR_MQTT_PUBREL = 6,
    ENR_MQTT_PUBCOMP = 7,
    ENR_MQTT_SUBSCRIBE = 8,
    ENR_MQTT_SUBACK = 9,
    ENR_MQTT_UNSUBSCRIBE = 10,
    ENR_MQTT_UNSUBACK = 11,
    ENR_MQTT_PINGREQ = 12,
    ENR_MQTT_PINGRESP = 13,
    ENR_MQTT_DISCONNECT = 14,
    ENR_MQTT_AUTH = 15
} enr_mqtt_type;

/* Borrowed bytes of the input; a string has been checked as MQTT UTF-8. */
typedef struct enr_mqtt_span {
    const uint8_t *data;
    size_t len;
} enr_mqtt_span;

typedef struct enr_mqtt_connect {
    uint8_t level;                /* 4 (3.1.1) or 5 */
    bool clean_start;
    uint16_t keepalive;           /* seconds; 0: none asked */
    enr_mqtt_span client_id;      /* may be empty */
    bool has_username;
    enr_mqtt_span username;
    bool has_password;
    enr_mqtt_span password;       /* binary; a secret: never log it */
    bool has_will;                /* validated and ignored */
    /* MQTT 5 properties (their defaults when absent) */
    uint32_t session_expiry;      /* 0 */
    uint16_t receive_maximum;     /* 65535 */
    uint32_t maximum_packet_size; /* 0: no limit said */
} enr_mqtt_connect;

typedef struct enr_mqtt_publish {
    uint8_t qos;                  /* 0 or 1 */
    bool dup;
    bool retain;
    uint16_t packet_id;           /* 0 with QoS 0 */
    enr_mqtt_span topic;          /* valid UTF-8, no NUL, no wildcard, not empty */
    enr_mqtt_span payload;
} enr_mqtt_publish;

typedef struct enr_mqtt_filter {
    enr_mqtt_span filter;         /* valid UTF-8 topic filter */
    uint8_t options;              /* SUBSCRIBE: the options byte (QoS in bits 0-1); 0 for UNSUBSCRIBE */
} enr_mqtt_filter;

typedef struct enr_mqtt_subscribe {
    uint16_t packet_id;           /* never 0 */
    size_t count;                 /* 1..ENR_MQTT_FILTERS_MAX */
    enr_mqtt_filter filters[ENR_MQTT_FILTERS_MAX];
} enr_mqtt_subscribe;             /* SUBSCRIBE and UNSUBSCRIBE */

typedef struct enr_mqtt_packet {
    enr_mqtt_type type;
    union {
        enr_mqtt_connect connect;
        enr_mqtt_publish publish;
        enr_mqtt_subscribe subscribe;   /* SUBSCRIBE, UNSUBSCRIBE */
        struct {
            uint16_t packet_id;
            uint8_t reason;             /* v5; 0 otherwise */
        } puback;
        struct {
            uint8_t reason;             /* v5; 0 otherwise */
        } disconnect;
    } u;
} enr_mqtt_packet;

/* Parses one complete packet (`len` as enr_mqtt_frame said) that a client
 * sent to a server. `level` is the connection's protocol level once its
 * CONNECT was read (4 or 5), or 0 before: then only CONNECT parses (any
 * other type is ENR_MQTT_PROTOCOL_ERROR) and its own level decides. A
 * second CONNECT after the first is ENR_MQTT_PROTOCOL_ERROR too.
 * CONNACK, SUBACK, UNSUBACK, PINGRESP, PUBREC/REL/COMP and AUTH are
 * ENR_MQTT_PACKET_TYPE. On failure *out is unspecified. */
enr_mqtt_reason enr_mqtt_parse(const uint8_t *buf, size_t len, uint8_t level, enr_mqtt_packet *out,
                               enr_error *err);

/* MQTT's UTF-8 (RFC 3629, no U+0000, no surrogates, shortest form). */
bool enr_mqtt_utf8_valid(const uint8_t *s, size_t len);

/* ---- encoders ------------------------------------------------------------ */
/* Each returns the packet's length and writes it to buf when it fits in
 * `cap` (else writes nothing: call again with a larger buffer); 0 when the
 * arguments are invalid. buf may be NULL with cap 0 to ask for the size. */

/* 3.1.1 return codes */
#define ENR_MQTT_CONNACK_ACCEPTED 0x00
#define ENR_MQTT_CONNACK_BAD_VERSION 0x01
#define ENR_MQTT_CONNACK_ID_REJECTED 0x02
#define ENR_MQTT_CONNACK_UNAVAILABLE 0x03
#define ENR_MQTT_CONNACK_BAD_CREDENTIALS 0x04
#define ENR_MQTT_CONNACK_NOT_AUTHORIZED 0x05

/* MQTT 5 reason codes used here */
#define ENR_MQTT5_SUCCESS 0x00
#define ENR_MQTT5_UNSPECIFIED 0x80
#define ENR_MQTT5_MALFORMED 0x81
#define ENR_MQTT5_PROTOCOL_ERROR 0x82
#define ENR_MQTT5_IMPLEMENTATION_SPECIFIC 0x83
#define ENR_MQTT5_BAD_VERSION 0x84
#define ENR_MQTT5_ID_NOT_VALID 0x85
#define ENR_MQTT5_BAD_CREDENTIALS 0x86
#define ENR_MQTT5_NOT_AUTHORIZED 0x87
#define ENR_MQTT5_SERVER_UNAVAILABLE 0x88
#define ENR_MQTT5_SERVER_BUSY 0x89
#define ENR_MQTT5_BAD_AUTH_METHOD 0x8C
#define ENR_MQTT5_KEEPALIVE_TIMEOUT 0x8D
#define ENR_MQTT5_FILTER_INVALID 0x8F
#define ENR_MQTT5_TOPIC_INVALID 0x90
#define ENR_MQTT5_NO_SUBSCRIPTION 0x11
#define ENR_MQTT5_PACKET_TOO_LARGE 0x95
#define ENR_MQTT5_QUOTA_EXCEEDED 0x97
#define ENR_MQTT5_TOPIC_ALIAS_INVALID 0x94
#define ENR_MQTT5_QOS_NOT_SUPPORTED 0x9B

typedef struct enr_mqtt_connack {
    uint8_t code;                 /* a 3.1.1 return code or an MQTT 5 reason code */
    /* MQTT 5, accepted only: what the server allows (0: not sent). The
     * capabilities we lack are always sent: retain available 0, maximum
     * QoS 1, no subscription identifiers, no shared subscriptions. */
    uint16_t receive_maximum;
    uint32_t maximum_packet_size;
    bool has_server_keepalive;
    uint16_t server_keepalive;
} enr_mqtt_connack;

/* Session present is always 0: we never keep a session. */
size_t enr_mqtt_encode_connack(uint8_t *buf, size_t cap, uint8_t level, const enr_mqtt_connack *a);
/* One code per filter: 3.1.1 granted QoS 0/1/2 or 0x80; MQTT 5 reason codes. */
size_t enr_mqtt_encode_suback(uint8_t *buf, size_t cap, uint8_t level, uint16_t packet_id, const uint8_t *codes,
                              size_t count);
/* 3.1.1 carries no codes (count ignored); MQTT 5 one per filter. */
size_t enr_mqtt_encode_unsuback(uint8_t *buf, size_t cap, uint8_t level, uint16_t packet_id,
                                const uint8_t *codes, size_t count);
/* QoS 0 (packet_id ignored) or 1 (packet_id not 0); MQTT 5 with no properties. */
size_t enr_mqtt_encode_publish(uint8_t *buf, size_t cap, uint8_t level, uint8_t qos, uint16_t packet_id,
                               const char *topic, size_t topic_len, const uint8_t *payload, size_t payload_len);
size_t enr_mqtt_encode_puback(uint8_t *buf, size_t cap, uint8_t level, uint16_t packet_id, uint8_t reason);
size_t enr_mqtt_encode_pingresp(uint8_t *buf, size_t cap);
/* MQTT 5 only (a 3.1.1 server just closes): 0 for level 4. */
size_t enr_mqtt_encode_disconnect(uint8_t *buf, size_t cap, uint8_t level, uint8_t reason);

/* ---- DPS over MQTT names -------------------------------------------------- */

/* CONNECT username: {idScope}/registrations/{registrationId}/api-version={v}
 * optionally followed by &ClientVersion={url-encoded} (and other &k=v,
 * ignored). The api-version is kept as sent (the core checks it). */
typedef struct enr_dps_mqtt_username {
    char id_scope[ENR_DPS_ID_SCOPE_MAX + 1];
    char registration_id[ENR_DPS_REGISTRATION_ID_MAX + 1];
    char api_version[32];
} enr_dps_mqtt_username;

enr_mqtt_reason enr_dps_mqtt_username_parse(const uint8_t *s, size_t len, enr_dps_mqtt_username *out,
                                            enr_error *err);

#define ENR_DPS_MQTT_RID_MAX 64

typedef struct enr_dps_mqtt_topic {
    bool is_register;             /* else operation status */
    char rid[ENR_DPS_MQTT_RID_MAX + 1];
    char operation_id[ENR_DPS_OPERATION_ID_MAX + 1]; /* "" for register */
} enr_dps_mqtt_topic;

/* $dps/registrations/PUT/iotdps-register/?$rid={rid}
 * $dps/registrations/GET/iotdps-get-operationstatus/?$rid={rid}&operationId={id}
 * Query parameters in any order, each at most once; others are ignored.
 * ENR_MQTT_DPS_TOPIC otherwise. */
enr_mqtt_reason enr_dps_mqtt_topic_parse(const uint8_t *s, size_t len, enr_dps_mqtt_topic *out, enr_error *err);

/* The subscription a DPS device makes; the only one granted. */
#define ENR_DPS_MQTT_RESPONSE_FILTER "$dps/registrations/res/#"
/* $dps/registrations/res/{status}/?$rid={rid}[&retry-after={s}] into out;
 * its length, or 0 when it does not fit or the arguments are invalid. */
size_t enr_dps_mqtt_response_topic(char *out, size_t cap, int status, const char *rid, int retry_after);

#ifdef __cplusplus
}
#endif
#endif
