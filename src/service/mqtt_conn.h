/* enrolld's MQTT server side, below the protocols: a listener per worker
 * loop, its connections (TLS, framing, the packet bound read from the
 * fixed header, CONNECT and keepalive deadlines, connection caps, bounded
 * logging, PUBACKs held to go out with the answer) and what a protocol
 * front end calls to answer. DPS over MQTT (dps_mqtt.c) and AWS fleet
 * provisioning (aws_mqtt.c) are protocols on it: they decide CONNECT,
 * PUBLISH and SUBSCRIBE; nothing here knows a topic.
 *
 * Neither is a broker: a connection talks to the service only, and every
 * answer goes to the connection that asked. */
#ifndef ENROLL_SERVICE_MQTT_CONN_H
#define ENROLL_SERVICE_MQTT_CONN_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <openssl/ssl.h>

#include "enroll/error.h"
#include "enroll/mqtt.h"

struct event_base;

typedef struct mqtt_limits {
    int max_connections;          /* on this worker; at the cap accepting pauses */
    int connect_timeout_seconds;  /* CONNECT (and the TLS handshake) must be done by then */
    size_t max_packet_bytes;      /* a larger packet closes the connection; never buffered */
    int max_keepalive_seconds;    /* a keepalive of 0 or above this gets this */
    int log_lines_per_second;     /* per kind; the rest are counted in one line */
    /* Each accepted connection's TLS object (enrolld's takes the context in
     * force, so a certificate reload on SIGHUP reaches MQTT as it reaches
     * HTTPS). NULL: SSL_new on the context given to mqtt_listener_new. */
    SSL *(*tls_new)(void *arg);
    void *tls_new_arg;
} mqtt_limits;

/* Read from any thread (for /metrics). */
typedef struct mqtt_counters {
    _Atomic unsigned long connections;   /* accepted */
    _Atomic long open;
    _Atomic unsigned long packets;       /* read and parsed */
    _Atomic unsigned long refused;       /* CONNACKs that refused */
    _Atomic unsigned long malformed;     /* connections closed for a bad packet */
    _Atomic unsigned long timeouts;      /* connect or keepalive deadlines */
    _Atomic unsigned long answers;       /* answers published */
} mqtt_counters;

typedef struct mqtt_listener mqtt_listener;
typedef struct mqtt_conn mqtt_conn;

typedef struct mqtt_protocol {
    const char *name;             /* in log event names: "mqtt" (DPS), "aws_mqtt" */
    const char *id_field;         /* the log's name for whom a line is about */
    size_t state_size;            /* bytes of per-connection state (mqtt_conn_state), zeroed */
    /* CONNECT, parsed. Answer it with mqtt_conn_connack, now or later (the
     * connection reads nothing more until then; the connect deadline runs). */
    void (*on_connect)(mqtt_conn *c, const enr_mqtt_connect *p);
    void (*on_publish)(mqtt_conn *c, const enr_mqtt_publish *p);
    /* Fills codes[i] (granted QoS, or a failure code) for each filter; the
     * layer sends SUBACK or UNSUBACK. */
    void (*on_subscribe)(mqtt_conn *c, const enr_mqtt_subscribe *s, bool unsubscribe, uint8_t *codes);
    /* The connection goes: cancel what is in flight for it. */
    void (*on_close)(mqtt_conn *c);
} mqtt_protocol;

/* `listen_fd`: a listening socket the caller bound, this worker's own dup
 * (closed by mqtt_listener_free). `tls` NULL: plain MQTT (tests only);
 * else a reference is taken. `arg` is the protocol's (mqtt_listener_arg). */
enr_code mqtt_listener_new(struct event_base *base, int listen_fd, SSL_CTX *tls, const mqtt_protocol *proto,
                           void *arg, const mqtt_limits *lim, mqtt_listener **out, enr_error *err);
void mqtt_listener_stop_accepting(mqtt_listener *l);
/* Closes every connection (on_close first). */
void mqtt_listener_free(mqtt_listener *l);
const mqtt_counters *mqtt_listener_counters(const mqtt_listener *l);
void *mqtt_listener_arg(const mqtt_listener *l);
/* Requests in flight over every connection, kept by the protocol (the
 * stop waits for them to drain). */
int mqtt_listener_calls_open(const mqtt_listener *l);
void mqtt_listener_calls_add(mqtt_listener *l, int delta);

mqtt_listener *mqtt_conn_listener(const mqtt_conn *c);
void *mqtt_conn_state(mqtt_conn *c);
uint8_t mqtt_conn_level(const mqtt_conn *c);  /* 0 until CONNECT was accepted */
SSL *mqtt_conn_ssl(mqtt_conn *c);             /* NULL without TLS */
bool mqtt_conn_closing(const mqtt_conn *c);
/* Who the log lines are about (checked or quoted by the protocol). */
void mqtt_conn_set_who(mqtt_conn *c, const char *who);

/* One bounded log line "{name}_refused" for a request the protocol
 * refused; `reason` is one of our own words. */
void mqtt_conn_log_refusal(mqtt_conn *c, const char *reason);
/* The CONNACK: code 0 accepts (the connection is then at `level`), any
 * other refuses, is logged with `why` (one of our own words) and closes. */
void mqtt_conn_connack(mqtt_conn *c, uint8_t level, uint8_t v4_code, uint8_t v5_code, const char *why);
/* A protocol failure: MQTT 5 hears why (DISCONNECT), 3.1.1 is just closed. */
void mqtt_conn_fail(mqtt_conn *c, enr_mqtt_reason r);
/* Stops reading; the connection goes once what was written is out. */
void mqtt_conn_close(mqtt_conn *c);
void mqtt_conn_send(mqtt_conn *c, const uint8_t *b, size_t n);
/* A QoS 1 PUBLISH's PUBACK, held to leave with the answer (at most 200 ms). */
void mqtt_conn_hold_puback(mqtt_conn *c, uint16_t packet_id);
/* Publishes at QoS 0 with the held PUBACKs in one write; false when it
 * could not (closing, no room): the PUBACKs still go. */
bool mqtt_conn_publish(mqtt_conn *c, const char *topic, size_t topic_len, const uint8_t *payload, size_t len);

#endif
