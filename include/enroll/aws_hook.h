/* AWS IoT fleet provisioning's pre-provisioning hook, as a client: before
 * RegisterThing provisions a device, a template with a hook asks the
 * operator's service whether to go ahead (docs/aws-fleet.md,
 * "Pre-provisioning hook"). AWS calls a Lambda function; we POST the same
 * JSON document over HTTPS to the template's hook URL:
 *
 *   {"claimCertificateId": "...", "certificateId": "...", "certificatePem": "...",
 *    "templateArn": "...", "clientId": "...", "parameters": {"k": "v", ...}}
 *
 * and read the same answer, which must come with a 2xx status:
 *
 *   {"allowProvisioning": true|false, "parameterOverrides": {"k": "v", ...}}
 *
 * enrolld calls enr_aws_hook_call from a worker thread: it blocks, but never
 * past the target's deadline, which bounds the whole call (name resolution,
 * connect, TLS handshake, sending, reading), so a hook that accepts and
 * never answers, or trickles bytes, cannot hold a device's RegisterThing
 * longer than the operator allowed.
 *
 *     enr_aws_hook_target t = {tmpl.hook_url, tmpl.hook_ca_pem, tmpl.hook_timeout_ms};
 *     enr_aws_hook_input in = {claim_id, cert_id, cert_pem, arn, client_id, params};
 *     enr_aws_hook_answer a = {0};
 *     enr_code rc = enr_aws_hook_call(&t, &in, &a, &err);
 *     if (rc == ENR_OK)
 *         ...                     // provision, with a.parameter_overrides over params
 *     else if (rc == ENR_E_POLICY)
 *         ...                     // refuse (AWS: 403); err.reason says why, for logs and metrics
 *     enr_aws_hook_answer_clear(&a);
 *
 * Every hook outcome other than "allowed" is a refusal with a typed reason
 * (error.h): the caller decides by err.reason, never by the message:
 *
 *   ENR_R_HOOK_DENIED    the hook answered allowProvisioning false
 *   ENR_R_HOOK_TIMEOUT   no complete answer before the deadline
 *   ENR_R_HOOK_FAILED    no usable answer: the URL or CA cannot be used,
 *                        resolution, connection or TLS failure (a server
 *                        certificate that does not chain to ca_pem or does
 *                        not name the URL's host), a status other than 2xx,
 *                        a malformed answer
 *
 * Messages name the hook's URL and what happened; they never hold the
 * certificate PEM, the parameters or anything else of the request, and
 * quote what they echo of the answer (core/quote.h).
 *
 * Writing to a hook that has gone away raises SIGPIPE (as for every user of
 * http_client.h): enrolld ignores SIGPIPE. */
#ifndef ENROLL_AWS_HOOK_H
#define ENROLL_AWS_HOOK_H

#include <stdbool.h>
#include <stddef.h>

#include "enroll/error.h"

#ifdef __cplusplus
extern "C" {
#endif

struct json_t;

/* Bounds on the answer (outside input): its body, and parameterOverrides
 * as the template evaluator bounds parameters (aws_template.h:
 * ENR_AWS_PARAMETERS_MAX entries, names of 1..ENR_AWS_NAME_MAX bytes, values
 * of at most ENR_AWS_STRING_MAX bytes). */
#define ENR_AWS_HOOK_ANSWER_MAX ((size_t)64 * 1024)

/* Where the hook is: what a template record holds (store.h). */
typedef struct enr_aws_hook_target {
    const char *url;      /* https://host[:port][/path]: the request goes to exactly this path ("/" when
                           * none); the server's certificate must name host (an IP address: an IP SAN) */
    const char *ca_pem;   /* the CA certificate(s) the hook's server must chain to, as PEM in memory (the
                           * store holds it); never the system's trust store */
    int timeout_ms;       /* 0: ENR_AWS_HOOK_TIMEOUT_DEFAULT_MS; else ENR_AWS_HOOK_TIMEOUT_MIN_MS ..
                           * ENR_AWS_HOOK_TIMEOUT_MAX_MS (store.h). Bounds the WHOLE call */
} enr_aws_hook_target;

/* What AWS sends the hook, for the device that is being provisioned. All
 * strings required (UTF-8; "" is sent as ""). */
typedef struct enr_aws_hook_input {
    const char *claim_certificate_id;  /* certificate id (hex SHA-256) of the claim the device connected with */
    const char *certificate_id;        /* certificate id of the certificate being registered */
    const char *certificate_pem;       /* that certificate, PEM */
    const char *template_arn;          /* the provisioning template's ARN */
    const char *client_id;             /* the device's MQTT client id */
    const struct json_t *parameters;   /* RegisterThing's parameters: an object of strings; NULL: {} */
} enr_aws_hook_input;

/* The hook's answer. */
typedef struct enr_aws_hook_answer {
    bool allow;                            /* allowProvisioning */
    struct json_t *parameter_overrides;    /* an object name -> string (bounded as above), owned: values
                                            * that replace or add to the device's parameters before the
                                            * template is evaluated; NULL when the answer has none */
} enr_aws_hook_answer;

/* Calls the hook: one HTTPS POST of `in` as JSON (Content-Type:
 * application/json) to t->url, verified against t->ca_pem, within
 * t->timeout_ms from the call's start to its return. (The HTTPS client is
 * given what is left of it just before its TLS context is made, and starts
 * counting when it sends: the slack is making that context and reading an
 * answer already received, a few milliseconds in all.)
 *  - ENR_OK: the hook answered 2xx with allowProvisioning true; *out holds
 *    allow = true and its overrides (free with enr_aws_hook_answer_clear).
 *  - ENR_E_POLICY with err->reason ENR_R_HOOK_DENIED, ENR_R_HOOK_TIMEOUT or
 *    ENR_R_HOOK_FAILED (above); *out is {false, NULL}.
 *  - ENR_E_USAGE: a NULL argument or field, a timeout out of range, input
 *    strings or parameters that are not UTF-8 text (an object of strings):
 *    the caller's mistake, nothing was sent. ENR_E_NOMEM.
 * *out is overwritten without being cleared first: clear a used answer
 * before passing it again. */
enr_code enr_aws_hook_call(const enr_aws_hook_target *t, const enr_aws_hook_input *in, enr_aws_hook_answer *out,
                           enr_error *err);

/* Reads an answer body, strictly (pure: no I/O; fuzzed): a JSON object
 * (ENR_AWS_HOOK_ANSWER_MAX bytes at most) whose allowProvisioning is a
 * boolean (required) and whose parameterOverrides, if present and not null,
 * is an object of at most ENR_AWS_PARAMETERS_MAX entries, names of 1 to
 * ENR_AWS_NAME_MAX bytes, string values of at most ENR_AWS_STRING_MAX
 * bytes. Other keys are ignored. A key twice in one object, invalid UTF-8
 * and NUL (escaped as \u0000 or raw) are refused anywhere in the document.
 * ENR_OK fills *out (allow false is a successful parse: the caller judges
 * it); ENR_E_PARSE says what was wrong (*out is {false, NULL}); ENR_E_NOMEM;
 * ENR_E_USAGE for NULL arguments. */
enr_code enr_aws_hook_answer_parse(const char *body, size_t len, enr_aws_hook_answer *out, enr_error *err);

/* Frees the overrides and sets *a to {false, NULL}. NULL is fine. */
void enr_aws_hook_answer_clear(enr_aws_hook_answer *a);

#ifdef __cplusplus
}
#endif
#endif
