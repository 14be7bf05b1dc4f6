/* DPS over MQTT: enrolld's MQTT front end (one per worker event loop).
 * DPS is not a broker: a connection's CONNECT names and authenticates one
 * registration, its SUBSCRIBE to $dps/registrations/res/# is the only one
 * granted, and its PUBLISHes to the two request topics become provisioning
 * core requests whose answers go back to that connection only. */
#ifndef ENROLL_SERVICE_DPS_MQTT_H
#define ENROLL_SERVICE_DPS_MQTT_H

#include <stdatomic.h>
#include <stddef.h>

#include <openssl/ssl.h>

#include "enroll/error.h"
#include "enroll/provision.h"
#include "service/mqtt_conn.h"

struct event_base;

/* The limits and counters of the connections under it (service/mqtt_conn.h). */
typedef mqtt_limits dps_mqtt_limits;
typedef mqtt_counters dps_mqtt_counters;

typedef struct dps_mqtt dps_mqtt;

/* `listen_fd`: a listening socket the caller bound, this worker's own dup
 * (closed by dps_mqtt_free). `tls` NULL: plain MQTT (tests only); else a
 * reference is taken. `core` is borrowed and must outlive the front end. */
enr_code dps_mqtt_new(struct event_base *base, int listen_fd, SSL_CTX *tls, enr_provision *core,
                      const dps_mqtt_limits *lim, dps_mqtt **out, enr_error *err);
/* Requests one connection may have in the core's hands at once; the next
 * is answered 429 (errorCode 429001) at once. */
#define DPS_MQTT_CALLS_PER_CONNECTION 4

/* Stopping: no new connection is accepted (on this loop's thread). Those
 * open keep being answered until dps_mqtt_free. */
void dps_mqtt_stop_accepting(dps_mqtt *m);
/* Requests in the core's hands, over every connection (0 for NULL). */
int dps_mqtt_calls_open(const dps_mqtt *m);
/* Closes every connection (cancelling what the core still works on). */
void dps_mqtt_free(dps_mqtt *m);
const dps_mqtt_counters *dps_mqtt_get_counters(const dps_mqtt *m);

#endif
