/* AWS IoT fleet provisioning over MQTT: enrolld's front end for devices
 * built for AWS (one per worker event loop, on its own port). A thin
 * adapter: CONNECT's TLS client certificate is authenticated by the core
 * (provision_aws.h: a claim, or a thing's own certificate), SUBSCRIBE is
 * granted only for the answer topics of the provisioning API (and of the
 * templates the peer may use), a PUBLISH to a request topic becomes a core
 * request whose answer goes to that connection only, and a PUBLISH
 * anywhere else closes the connection: a claim certificate can do nothing
 * but the provisioning API. */
#ifndef ENROLL_SERVICE_AWS_MQTT_H
#define ENROLL_SERVICE_AWS_MQTT_H

#include <openssl/ssl.h>

#include "enroll/error.h"
#include "enroll/provision_aws.h"
#include "service/mqtt_conn.h"

struct event_base;

typedef struct aws_mqtt aws_mqtt;

/* Requests one connection may have in the core's hands at once; the next
 * is rejected 429 at once. */
#define AWS_MQTT_CALLS_PER_CONNECTION 4
/* Topic filters one connection may hold. */
#define AWS_MQTT_SUBSCRIPTIONS_MAX 16

/* As dps_mqtt_new; `loop` is borrowed and must outlive the front end. */
enr_code aws_mqtt_new(struct event_base *base, int listen_fd, SSL_CTX *tls, enr_aws_loop *loop,
                      const mqtt_limits *lim, aws_mqtt **out, enr_error *err);
void aws_mqtt_stop_accepting(aws_mqtt *m);
int aws_mqtt_calls_open(const aws_mqtt *m);
void aws_mqtt_free(aws_mqtt *m);
const mqtt_counters *aws_mqtt_get_counters(const aws_mqtt *m);

#endif
