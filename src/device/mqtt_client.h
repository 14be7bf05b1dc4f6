/* Internal to src/device: one MQTT 3.1.1 client connection over our TLS, on
 * libmosquitto, driven synchronously against deadlines. What DPS over MQTT
 * (link_mqtt.c) and AWS fleet provisioning (link_aws.c) share: the TLS
 * context (enr_tls_client_context_new: the configured trust anchor only, the
 * client credential, a PKCS#11 key signing in its token, the host name
 * checked on the context), connecting to each address of a name, CONNACK
 * refusals, subscriptions that must be granted, publishing, and waiting for
 * a flag that the message callback sets. No thread: mosquitto_loop in
 * slices against one deadline, so no step is without a bound (except name
 * resolution, which getaddrinfo does blocking). */
#ifndef ENROLL_DEVICE_MQTT_CLIENT_H
#define ENROLL_DEVICE_MQTT_CLIENT_H

#include <stdbool.h>
#include <stddef.h>

#include "enroll/error.h"
#include "enroll/http_client.h"

typedef struct dev_mqtt_conn dev_mqtt_conn;

/* A message on a subscribed topic (topic NUL-terminated; the payload is
 * libmosquitto's, valid during the call only). */
typedef void (*dev_mqtt_message_fn)(void *ctx, const char *topic, const void *payload, size_t len);

typedef struct dev_mqtt_conn_options {
    const char *url;             /* mqtts://host[:port] (no path) */
    const char *client_id;
    enr_http_client_options tls; /* trust_file and the client credential; borrowed for the lifetime */
    int timeout_ms;              /* for messages: the bound a caller's deadline was made from */
    dev_mqtt_message_fn on_message;
    void *ctx;
} dev_mqtt_conn_options;

enr_code dev_mqtt_conn_new(const dev_mqtt_conn_options *o, dev_mqtt_conn **out, enr_error *err);
void dev_mqtt_conn_free(dev_mqtt_conn *c);

/* A monotonic clock in milliseconds: deadlines are made from it. */
long long dev_mqtt_now_ms(void);

/* True while the connection is open (CONNACK accepted, subscriptions
 * granted); a connection the service closed meanwhile is noticed here
 * without waiting, and dropped. */
bool dev_mqtt_conn_alive(dev_mqtt_conn *c);

/* Which connection this is: 1 for the first made, one more at each
 * connection made since (0: none yet). A caller whose state is bound to
 * one connection (an AWS ownership token) compares it. */
unsigned long dev_mqtt_conn_serial(const dev_mqtt_conn *c);

/* Connects (TCP to each address of the name until one answers, TLS,
 * CONNACK with username/password, either may be NULL) and subscribes to
 * `filters` at QoS 1 in one SUBSCRIBE, every one of which must be granted.
 * Errors as link.h's dev_link_send: ENR_E_IO for what waiting may cure,
 * ENR_E_POLICY/ENR_R_AUTH_REFUSED for a CONNACK that refuses the
 * credential, ENR_E_VERIFY for a service certificate that does not verify. */
enr_code dev_mqtt_conn_open(dev_mqtt_conn *c, const char *username, const char *password,
                            const char *const *filters, size_t nfilters, long long deadline, enr_error *err);

/* Queues a PUBLISH (sent by the next dev_mqtt_conn_wait). */
enr_code dev_mqtt_conn_publish(dev_mqtt_conn *c, const char *topic, const void *payload, size_t len, int qos,
                               enr_error *err);

/* Drives the connection until *flag is true (set by the message callback),
 * the deadline (ENR_E_IO "no answer within", naming `step`) or an error. */
enr_code dev_mqtt_conn_wait(dev_mqtt_conn *c, const bool *flag, long long deadline, const char *step,
                            enr_error *err);

/* Closes the connection (DISCONNECT when one is open). */
void dev_mqtt_conn_drop(dev_mqtt_conn *c);

/* The service's host, for messages. */
const char *dev_mqtt_conn_host(const dev_mqtt_conn *c);

#endif
