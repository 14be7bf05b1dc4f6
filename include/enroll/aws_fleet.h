/* AWS IoT fleet provisioning by claim: the wire of its MQTT API, as enrolld
 * reads and writes it (docs/aws-fleet.md). Three calls, each published by
 * the device on a request topic and answered on that topic + "/accepted"
 * or "/rejected", in JSON or CBOR as the topic's last level says:
 *
 *   $aws/certificates/create-from-csr/{json|cbor}       CreateCertificateFromCsr
 *   $aws/certificates/create/{json|cbor}                CreateKeysAndCertificate
 *   $aws/provisioning-templates/{name}/provision/{json|cbor}   RegisterThing
 *
 * Pure functions: no I/O, no store, no global state. The front end
 * classifies a PUBLISH topic, decodes its payload into a request, does the
 * work, and encodes the answer:
 *
 *     enr_aws_fleet_topic t;
 *     if (enr_aws_fleet_topic_classify(topic, topic_len, &t, &err) != ENR_AWS_FLEET_TOPIC_REQUEST)
 *         ...                                   // not a call: refuse the PUBLISH
 *     enr_aws_fleet_request req;
 *     enr_aws_fleet_reason why = enr_aws_fleet_request_decode(t.call, t.format, payload, len, &req, &err);
 *     if (why != ENR_AWS_FLEET_OK)
 *         ...                                   // rejected: 400 with err.message
 *     char answer_topic[ENR_AWS_FLEET_TOPIC_MAX + 1];
 *     enr_aws_fleet_answer_topic(answer_topic, sizeof answer_topic, &t, true);
 *     enr_aws_fleet_encode_registered(t.format, &registered, &bytes, &n, &err);
 *     enr_aws_fleet_request_clear(&req);
 *
 * Every refusal of outside input is a typed enr_aws_fleet_reason (what the
 * front end decides on) plus an enr_error whose message names the field. */
#ifndef ENROLL_AWS_FLEET_H
#define ENROLL_AWS_FLEET_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "enroll/aws_fleet_topic.h" /* the topics: formats, calls, names, filters */
#include "enroll/aws_template.h"
#include "enroll/error.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Bounds on what a device sends (all outside input is bounded). */
#define ENR_AWS_FLEET_PAYLOAD_MAX 65536     /* bytes of a request payload: our MQTT packet maximum */
#define ENR_AWS_FLEET_CSR_MAX 16384         /* bytes of certificateSigningRequest (PEM) */
#define ENR_AWS_FLEET_TOKEN_MAX 2048        /* bytes of certificateOwnershipToken */
/* RegisterThing's parameters, bounded as the template evaluator bounds
 * what it reads (one home for each fact: aws_template.h). */
#define ENR_AWS_FLEET_PARAMETERS_MAX ENR_AWS_PARAMETERS_MAX   /* entries (64) */
#define ENR_AWS_FLEET_PARAM_NAME_MAX ENR_AWS_NAME_MAX         /* bytes of a name (128) */
#define ENR_AWS_FLEET_PARAM_VALUE_MAX ENR_AWS_STRING_MAX      /* bytes of a value (4096) */
#define ENR_AWS_FLEET_DEPTH_MAX 8           /* nesting of the document (the top object is 1) */
#define ENR_AWS_FLEET_ITEMS_MAX 4096        /* CBOR data items (heads) or JSON values in one payload */
/* Bounds on what we answer: one answer must fit one MQTT packet with its
 * topic and headers, whatever the device's maximum (64 KiB here). */
#define ENR_AWS_FLEET_ANSWER_MAX 65000
#define ENR_AWS_FLEET_CONFIG_MAX ENR_AWS_DEVICE_CONFIG_MAX /* entries of deviceConfiguration (64) */

/* ---- requests ---------------------------------------------------------------- */

/* Why a request payload was refused. A new reason is appended; a number
 * keeps its meaning. */
typedef enum enr_aws_fleet_reason {
    ENR_AWS_FLEET_OK = 0,
    ENR_AWS_FLEET_USAGE,            /* invalid arguments: the caller's mistake */
    ENR_AWS_FLEET_NOMEM,
    ENR_AWS_FLEET_TOO_LARGE,        /* the payload is over ENR_AWS_FLEET_PAYLOAD_MAX */
    ENR_AWS_FLEET_MALFORMED,        /* not JSON, or not well-formed CBOR (truncated, trailing bytes,
                                     * a break outside an indefinite item, bad chunk types) */
    ENR_AWS_FLEET_TOO_DEEP,         /* nested deeper than ENR_AWS_FLEET_DEPTH_MAX */
    ENR_AWS_FLEET_TOO_MANY_ITEMS,   /* more than ENR_AWS_FLEET_ITEMS_MAX values */
    ENR_AWS_FLEET_NOT_OBJECT,       /* the document is not an object (a CBOR map) */
    ENR_AWS_FLEET_KEY_TYPE,         /* a CBOR map key that is not a text string */
    ENR_AWS_FLEET_DUPLICATE_KEY,    /* a key twice in one object */
    ENR_AWS_FLEET_BAD_STRING,       /* a string that is not UTF-8, or holds NUL */
    ENR_AWS_FLEET_MISSING_FIELD,    /* a required field is absent */
    ENR_AWS_FLEET_WRONG_TYPE,       /* a field of the wrong type (CBOR: a byte string is not text) */
    ENR_AWS_FLEET_EMPTY_FIELD,      /* a required string is "" */
    ENR_AWS_FLEET_FIELD_TOO_LONG,   /* a string over its bound */
    ENR_AWS_FLEET_TOO_MANY_PARAMETERS, /* parameters has more than ENR_AWS_FLEET_PARAMETERS_MAX entries */
    ENR_AWS_FLEET_PARAMETER_NAME,   /* a parameter name "" or over ENR_AWS_FLEET_PARAM_NAME_MAX */
    ENR_AWS_FLEET_PARAMETER_TYPE    /* a parameter value that is not a string */
} enr_aws_fleet_reason;

/* A short stable name ("malformed", "duplicate-key", ...), for logs and metrics. */
const char *enr_aws_fleet_reason_name(enr_aws_fleet_reason r);

typedef struct enr_aws_fleet_param {
    char *name;                     /* 1..ENR_AWS_FLEET_PARAM_NAME_MAX bytes of UTF-8, no NUL */
    char *value;                    /* 0..ENR_AWS_FLEET_PARAM_VALUE_MAX bytes of UTF-8, no NUL */
} enr_aws_fleet_param;

typedef struct enr_aws_fleet_request {
    enr_aws_fleet_call call;
    char *csr_pem;                  /* CREATE_FROM_CSR: the PEM as sent (not yet parsed); else NULL */
    char *ownership_token;          /* REGISTER_THING; else NULL */
    size_t parameter_count;         /* REGISTER_THING: 0 when "parameters" is absent */
    enr_aws_fleet_param *parameters; /* in the order sent; names distinct */
    /* On a refusal about one field, its key as sent ("certificateSigningRequest",
     * "certificateOwnershipToken", "parameters"); else NULL. A static string:
     * the front end may pick AWS's errorCode by it. */
    const char *bad_field;
} enr_aws_fleet_request;

/* Decodes a request payload of `call` in `format` into *out (always
 * initialised: clear it in every case). JSON and CBOR say the same: an
 * object (a CBOR map with text-string keys, definite or indefinite length,
 * as libcbor decodes them; strings may be indefinite, i.e. chunked) whose
 * unknown keys are ignored (the v1 client sends templateName too); a key
 * twice in one object is refused (JSON: at any depth; CBOR: in the top map
 * and parameters); nesting, item count and size are bounded (the
 * ENR_AWS_FLEET_*_MAX above) before anything is allocated for them.
 *   CREATE_FROM_CSR  certificateSigningRequest: a text string, 1..CSR_MAX bytes
 *   CREATE_KEYS      an object, keys ignored; also an empty payload (no body)
 *   REGISTER_THING   certificateOwnershipToken: text, 1..TOKEN_MAX bytes;
 *                    parameters (optional; JSON null counts as absent): an
 *                    object of at most PARAMETERS_MAX text -> text entries
 * Returns ENR_AWS_FLEET_OK or the reason, with err (ENR_E_PARSE,
 * ENR_E_NOMEM or ENR_E_USAGE) naming the field. */
enr_aws_fleet_reason enr_aws_fleet_request_decode(enr_aws_fleet_call call, enr_aws_fleet_format format,
                                                  const uint8_t *payload, size_t len, enr_aws_fleet_request *out,
                                                  enr_error *err);

/* Frees what a decode allocated and zeroes *r; NULL is fine. */
void enr_aws_fleet_request_clear(enr_aws_fleet_request *r);

/* The parameters as a new jansson object (name -> string), what
 * enr_aws_template_evaluate takes. NULL on allocation failure. */
struct json_t *enr_aws_fleet_parameters_json(const enr_aws_fleet_request *r);

/* ---- answers ----------------------------------------------------------------- */
/* Each encoder writes a new buffer of *out_len bytes into *out (free() it):
 * JSON as one compact line, keys in the order documented; CBOR as one
 * definite-length map with text keys. Strings must be UTF-8 (C strings,
 * so no NUL). ENR_E_USAGE for NULL or invalid arguments, ENR_E_UNSUPPORTED
 * when the answer would be over ENR_AWS_FLEET_ANSWER_MAX, ENR_E_NOMEM. */

/* CreateCertificateFromCsr (private_key NULL) and CreateKeysAndCertificate
 * (private_key the PEM: sent once, never kept):
 * {certificateId, certificatePem, [privateKey,] certificateOwnershipToken}. */
typedef struct enr_aws_fleet_created {
    const char *certificate_id;
    const char *certificate_pem;
    const char *private_key;        /* NULL for CreateCertificateFromCsr */
    const char *ownership_token;
} enr_aws_fleet_created;

enr_code enr_aws_fleet_encode_created(enr_aws_fleet_format format, const enr_aws_fleet_created *c, uint8_t **out,
                                      size_t *out_len, enr_error *err);

/* RegisterThing: {deviceConfiguration: {name: value, ...}, thingName}.
 * names/values: config_count (0..ENR_AWS_FLEET_CONFIG_MAX) pairs, names
 * distinct (as a plan's are). */
typedef struct enr_aws_fleet_registered {
    const char *thing_name;
    size_t config_count;
    const char *const *config_names;
    const char *const *config_values;
} enr_aws_fleet_registered;

enr_code enr_aws_fleet_encode_registered(enr_aws_fleet_format format, const enr_aws_fleet_registered *r,
                                         uint8_t **out, size_t *out_len, enr_error *err);

/* Any call's rejection: {statusCode, errorCode, errorMessage}, statusCode an
 * integer 100..599 (AWS: 400, 403, 404, 429, 500...). */
enr_code enr_aws_fleet_encode_rejected(enr_aws_fleet_format format, int status_code, const char *error_code,
                                       const char *error_message, uint8_t **out, size_t *out_len, enr_error *err);

#ifdef __cplusplus
}
#endif
#endif
