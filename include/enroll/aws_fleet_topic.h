/* AWS IoT fleet provisioning's MQTT topics (docs/aws-fleet.md, "Topics"):
 * the part of its wire that both sides name. enrolld's front end reads it
 * through aws_fleet.h; the device agent (libenroll_device, which carries no
 * CBOR and nothing of libenroll) includes this header alone. Pure
 * functions over bytes: no I/O, no allocation, no global state.
 *
 *   $aws/certificates/create-from-csr/{json|cbor}       CreateCertificateFromCsr
 *   $aws/certificates/create/{json|cbor}                CreateKeysAndCertificate
 *   $aws/provisioning-templates/{name}/provision/{json|cbor}   RegisterThing
 *
 * each answered on the request topic + "/accepted" or "/rejected". */
#ifndef ENROLL_AWS_FLEET_TOPIC_H
#define ENROLL_AWS_FLEET_TOPIC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "enroll/error.h"

#ifdef __cplusplus
extern "C" {
#endif

/* A template name as AWS allows it: [0-9A-Za-z_-]{1,36}. */
#define ENR_AWS_FLEET_TEMPLATE_NAME_MAX 36
/* The longest topic this module names: a RegisterThing answer topic. */
#define ENR_AWS_FLEET_TOPIC_MAX 96

typedef enum enr_aws_fleet_format {
    ENR_AWS_FLEET_JSON = 0,
    ENR_AWS_FLEET_CBOR
} enr_aws_fleet_format;

typedef enum enr_aws_fleet_call {
    ENR_AWS_FLEET_NONE = 0,
    ENR_AWS_FLEET_CREATE_FROM_CSR,   /* CreateCertificateFromCsr */
    ENR_AWS_FLEET_CREATE_KEYS,       /* CreateKeysAndCertificate */
    ENR_AWS_FLEET_REGISTER_THING     /* RegisterThing */
} enr_aws_fleet_call;

/* ---- topics ---------------------------------------------------------------- */

typedef enum enr_aws_fleet_topic_kind {
    ENR_AWS_FLEET_TOPIC_OTHER = 0,   /* not under $aws/certificates/ or $aws/provisioning-templates/ */
    ENR_AWS_FLEET_TOPIC_REQUEST,     /* a call's request topic: what a device publishes */
    ENR_AWS_FLEET_TOPIC_ANSWER,      /* a call's .../accepted or .../rejected: only we publish there */
    ENR_AWS_FLEET_TOPIC_WILDCARD,    /* holds '+' or '#': a filter, never a PUBLISH topic */
    ENR_AWS_FLEET_TOPIC_INVALID      /* under those prefixes but none of the above (a bad template
                                      * name, a format other than json|cbor, other levels) */
} enr_aws_fleet_topic_kind;

typedef struct enr_aws_fleet_topic {
    enr_aws_fleet_topic_kind kind;
    enr_aws_fleet_call call;         /* REQUEST and ANSWER; NONE otherwise */
    enr_aws_fleet_format format;     /* REQUEST and ANSWER */
    bool accepted;                   /* ANSWER: .../accepted (else .../rejected) */
    char template_name[ENR_AWS_FLEET_TEMPLATE_NAME_MAX + 1]; /* REGISTER_THING; "" otherwise */
} enr_aws_fleet_topic;

/* Classifies `len` bytes of a topic (not NUL-terminated; an MQTT PUBLISH's
 * topic name as enr_mqtt_parse borrowed it). Fills *out (zeroed first) and
 * returns out->kind; for INVALID, err says what was wrong. Never fails
 * otherwise: every input has a kind. */
enr_aws_fleet_topic_kind enr_aws_fleet_topic_classify(const uint8_t *topic, size_t len, enr_aws_fleet_topic *out,
                                                      enr_error *err);

/* The answer topic of a REQUEST or ANSWER topic (its call, format and
 * template name): {request}/accepted or {request}/rejected. Writes it with
 * its NUL into out and returns its length; 0 when it does not fit or `t`
 * names no call (then out is untouched). */
size_t enr_aws_fleet_answer_topic(char *out, size_t cap, const enr_aws_fleet_topic *t, bool accepted);

/* The request topic of a call (the device side's name; tests and the agent
 * use it); as enr_aws_fleet_answer_topic. template_name is only read for
 * REGISTER_THING and must be a valid name. */
size_t enr_aws_fleet_request_topic(char *out, size_t cap, enr_aws_fleet_call call, enr_aws_fleet_format format,
                                   const char *template_name);

/* Whether a SUBSCRIBE topic filter is one a fleet-provisioning device may
 * be granted: it can only ever match our answer topics' namespace. That is
 * a filter of five (certificates) or six (templates) levels whose levels
 * are each the literal of the answer topic's grammar or '+', or shorter and
 * ending in '#'; the first two levels are literal, and so is the template
 * name (a claim is bound to named templates: the front end checks the name
 * given back in template_name, "" for $aws/certificates/ filters).
 * Granted:  $aws/certificates/create-from-csr/json/accepted
 *           $aws/certificates/create/cbor/+    $aws/certificates/#
 *           $aws/provisioning-templates/T1/provision/json/#
 * Refused:  $aws/#   $aws/+/create/json/accepted   $aws/certificates/create/xml/+
 *           $aws/provisioning-templates/+/provision/json/accepted
 *           $aws/certificates/create/json (the request topic: only we read it)
 * template_name may be NULL; else it has ENR_AWS_FLEET_TEMPLATE_NAME_MAX + 1 bytes. */
bool enr_aws_fleet_filter_allowed(const uint8_t *filter, size_t len, char *template_name);

#ifdef __cplusplus
}
#endif
#endif
