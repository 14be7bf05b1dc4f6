/* Internal to src/device: AWS IoT fleet provisioning by claim, the device's
 * side (docs/device.md, "AWS IoT fleet provisioning"). Two parts:
 *
 *  - the JSON documents (jansson): the two requests the device builds and
 *    the three answers it reads, each answer checked strictly before any
 *    of it is used (unit-tested: tests/unit/test_device_aws.c);
 *  - the link: one MQTT connection over our TLS (mqtt_client.h) carrying
 *    CreateCertificateFromCsr and then RegisterThing, with the topic names
 *    of aws_fleet_topic.h (their one home).
 *
 * Nothing here logs an ownership token or a key. */
#ifndef ENROLL_DEVICE_LINK_AWS_H
#define ENROLL_DEVICE_LINK_AWS_H

#include <stdbool.h>
#include <stddef.h>

#include "enroll/aws_fleet_topic.h"
#include "enroll/error.h"
#include "enroll/http_client.h"

/* Bounds on what the service answers (outside input). The service's own
 * bounds are smaller (aws_fleet.h: an answer fits one 64 KiB packet; a
 * token of at most 2048 bytes, since it must come back in a request). */
#define DEV_AWS_ANSWER_MAX 65536         /* bytes of one answer payload */
#define DEV_AWS_CERT_ID_MAX 128          /* certificateId (AWS: 64 hex digits) */
#define DEV_AWS_PEM_MAX 32768            /* certificatePem */
#define DEV_AWS_TOKEN_MAX 2048           /* certificateOwnershipToken */
#define DEV_AWS_THING_NAME_MAX 128       /* thingName: [a-zA-Z0-9:_-]{1,128}, as AWS names things */
#define DEV_AWS_CONFIG_MAX 64            /* deviceConfiguration entries */
#define DEV_AWS_CONFIG_NAME_MAX 128
#define DEV_AWS_CONFIG_VALUE_MAX 4096
#define DEV_AWS_ERROR_CODE_MAX 128       /* a rejection's errorCode */
#define DEV_AWS_ERROR_MESSAGE_MAX 1024   /* its errorMessage (quoted shorter into messages) */
/* What the device sends: RegisterThing's parameters, as the service's
 * template evaluator bounds them (aws_template.h). */
#define DEV_AWS_PARAMS_MAX 64
#define DEV_AWS_PARAM_NAME_MAX 128
#define DEV_AWS_PARAM_VALUE_MAX 4096

/* True for a thing name AWS accepts: [a-zA-Z0-9:_-]{1,128}. */
bool dev_aws_thing_name_valid(const char *name);

/* ---- requests: compact JSON, a new string (free()), NULL when out of memory ---- */

/* {"certificateSigningRequest": PEM} */
char *dev_aws_csr_request(const char *csr_pem);
/* {"certificateOwnershipToken": T, "parameters": {names[i]: values[i], ...}} */
char *dev_aws_register_request(const char *token, const char *const *names, const char *const *values, size_t n);

/* ---- answers: ENR_E_PARSE naming the field for anything else ---- */

/* CreateCertificateFromCsr accepted: {certificateId, certificatePem,
 * certificateOwnershipToken}, each a non-empty string within its bound;
 * unknown keys ignored, a key twice refused. */
typedef struct dev_aws_created {
    char *certificate_id, *certificate_pem, *ownership_token;
} dev_aws_created;
enr_code dev_aws_created_parse(const char *body, size_t len, dev_aws_created *out, enr_error *err);
void dev_aws_created_clear(dev_aws_created *c);

/* RegisterThing accepted: {deviceConfiguration: {name: string}, thingName}.
 * deviceConfiguration may be absent or null (then "{}"); kept as compact
 * JSON text. */
typedef struct dev_aws_registered {
    char *thing_name;
    char *device_configuration;
} dev_aws_registered;
enr_code dev_aws_registered_parse(const char *body, size_t len, dev_aws_registered *out, enr_error *err);
void dev_aws_registered_clear(dev_aws_registered *r);

/* Any call's rejection: {statusCode: 100..599, errorCode, errorMessage}
 * (errorCode and errorMessage may be absent: ""). */
typedef struct dev_aws_rejected {
    int status_code;
    char error_code[DEV_AWS_ERROR_CODE_MAX + 1];
    char error_message[DEV_AWS_ERROR_MESSAGE_MAX + 1];
} dev_aws_rejected;
enr_code dev_aws_rejected_parse(const char *body, size_t len, dev_aws_rejected *out, enr_error *err);

/* A rejection of `call` as the error the device reports, with *retry for
 * what waiting may cure:
 *   statusCode 429 and 5xx, and errorCodes that say throttling or an
 *   unavailable or failing service         -> ENR_E_IO, *retry
 *   401, 403, and errorCodes that say the credential is refused
 *   (AccessDenied, Unauthorized, Forbidden...) -> ENR_E_POLICY, ENR_R_AUTH_REFUSED
 *   other statuses                          -> ENR_E_POLICY, ENR_R_NONE
 * The message names the call, the statusCode, and the errorCode and
 * errorMessage quoted (core/quote.h). Returns the code. */
enr_code dev_aws_rejection_error(enr_aws_fleet_call call, const dev_aws_rejected *r, bool *retry, enr_error *err);

/* "CreateCertificateFromCsr", "RegisterThing", ... */
const char *dev_aws_call_name(enr_aws_fleet_call call);

/* ---- the link ---- */

typedef struct dev_aws_link dev_aws_link;

typedef struct dev_aws_answer {
    bool accepted;
    char *body; /* NUL-terminated one past len */
    size_t len;
} dev_aws_answer;
void dev_aws_answer_clear(dev_aws_answer *a);

/* An MQTT client (client id: `client_id`, no user name) to `url`
 * (mqtts://host[:port]) presenting tls's client certificate, for the
 * template `template_name`. Connects at the first call. */
enr_code dev_aws_link_new(const char *url, const char *client_id, const enr_http_client_options *tls, int timeout_ms,
                          const char *template_name, dev_aws_link **out, enr_error *err);
void dev_aws_link_free(dev_aws_link *l);

/* One call in JSON: (re)connects when needed, subscribing to the accepted
 * and rejected topics of both calls before anything is published; then
 * PUBLISH `payload` at QoS 1 on the call's request topic and wait for its
 * answer (the message on its accepted or rejected topic). With
 * same_connection, the call must go over the connection the previous call
 * used (an ownership token is bound to it): a lost connection is then
 * ENR_E_IO without reconnecting. Errors as mqtt_client.h's; an answer over
 * DEV_AWS_ANSWER_MAX is ENR_E_PARSE. */
enr_code dev_aws_link_call(dev_aws_link *l, enr_aws_fleet_call call, const char *payload, bool same_connection,
                           dev_aws_answer *out, enr_error *err);

#endif
