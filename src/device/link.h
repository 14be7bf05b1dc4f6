/* Internal to src/device: the transport of one registration, behind one
 * small interface so that device.c's logic (backoff, polling, judging the
 * answer, verification, storing) is the same over HTTPS and over MQTT.
 *
 * A link carries DPS requests and hands back what the service answered:
 * an HTTP status (over MQTT, the {status} of the answer topic), the
 * Retry-After seconds and the JSON body, which DPS makes identical on both
 * transports. A link may keep a connection between requests (MQTT does, for
 * the register and its polls); it never logs a token or a key. */
#ifndef ENROLL_DEVICE_LINK_H
#define ENROLL_DEVICE_LINK_H

#include <stdbool.h>
#include <stddef.h>

#include "enroll/error.h"
#include "enroll/http_client.h"

typedef struct dev_reply {
    int status;       /* 200..599 */
    long retry_after; /* seconds; -1 when absent */
    char *body;       /* NUL-terminated one past body_len; never NULL after success */
    size_t body_len;
} dev_reply;

void dev_reply_free(dev_reply *r);

typedef struct dev_link_options {
    const char *url; /* https://... or mqtts://... */
    const char *id_scope, *registration_id, *api_version;
    /* The TLS side: trust_file and the client credential (see
     * enr_http_client_options); borrowed for the link's lifetime. */
    enr_http_client_options tls;
    int timeout_ms; /* one request: connecting, the handshake and the answer */
} dev_link_options;

typedef struct dev_link dev_link;

/* What each transport implements (the first member of its own struct). */
struct dev_link {
    enr_code (*send)(dev_link *l, const char *operation_id, const char *body, const char *sas_token,
                     dev_reply *out, enr_error *err);
    void (*destroy)(dev_link *l);
};

/* One request. operation_id NULL or "": register with `body`; otherwise
 * poll that operation. sas_token: the Authorization of this request (NULL
 * with a client certificate); over MQTT it is the CONNECT password, so it is
 * only used when the link (re)connects. Errors:
 *  - ENR_E_IO: anything waiting may cure (refused, reset, timed out, a
 *    connection lost before the answer): the caller retries with backoff;
 *  - ENR_E_POLICY with reason ENR_R_AUTH_REFUSED: the service refused the
 *    credential before any request (an MQTT CONNACK refusal): never retried;
 *  - ENR_E_VERIFY: the service's certificate does not verify or name it;
 *  - ENR_E_PARSE: an answer that is not one.
 * Any status is ENR_OK: the caller judges it. */
enr_code dev_link_send(dev_link *l, const char *operation_id, const char *body, const char *sas_token,
                       dev_reply *out, enr_error *err);
void dev_link_free(dev_link *l);

/* True for an mqtts:// URL (the scheme in any case): the MQTT transport. */
bool dev_url_is_mqtt(const char *url);

enr_code dev_link_https_new(const dev_link_options *o, dev_link **out, enr_error *err);
enr_code dev_link_mqtt_new(const dev_link_options *o, dev_link **out, enr_error *err);

/* ---- DPS over MQTT names, device side (unit-tested) ---- */

#define DEV_MQTT_DEFAULT_PORT 8883
#define DEV_MQTT_RID_MAX 32

/* $dps/registrations/res/{status}/?$rid={rid}[&retry-after={s}][&...]:
 * true with *status (200..599), rid (NUL-terminated, at most rid_cap - 1
 * characters) and *retry_after (-1 when absent); false for any other topic. */
bool dev_mqtt_answer_topic_parse(const char *topic, int *status, char *rid, size_t rid_cap, long *retry_after);

/* A CONNACK return code (MQTT 3.1.1: 1..5; MQTT 5: reason codes >= 0x80):
 * true when it refuses the credential or the identity itself (bad user
 * name or password, not authorized, client identifier rejected, banned,
 * bad authentication method), which retrying with the same credential
 * cannot cure; false for the rest (server unavailable or busy, quota...). */
bool dev_mqtt_connack_refuses_credential(int code);
/* Its meaning, for messages. */
const char *dev_mqtt_connack_text(int code);

#endif
