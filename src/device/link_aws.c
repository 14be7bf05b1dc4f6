/* AWS IoT fleet provisioning by claim, the device's side (link_aws.h): the
 * JSON documents and the MQTT exchange.
 *
 * Wire (docs/device.md; /work/shared/reference/provisioning-protocols.md
 * section 3): on one MQTT connection over mutual TLS (the claim
 * certificate, or at renewal the device's own), the device subscribes to
 * the accepted and rejected topics of both calls, then publishes at QoS 1
 *   $aws/certificates/create-from-csr/json {"certificateSigningRequest"}
 *     -> {certificateId, certificatePem, certificateOwnershipToken}
 *   $aws/provisioning-templates/{name}/provision/json
 *     {"certificateOwnershipToken", "parameters"} -> {deviceConfiguration, thingName}
 * each answered on its topic + /accepted or /rejected with
 * {statusCode, errorCode, errorMessage}. The topic names come from
 * aws_fleet_topic.h, their one home. */
#include <jansson.h>
#include <openssl/crypto.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "core/quote.h"
#include "device/link_aws.h"
#include "device/mqtt_client.h"

/* ---- names ---- */

bool dev_aws_thing_name_valid(const char *name)
{
    if (name == NULL)
        return false;
    size_t n = strlen(name);
    if (n < 1 || n > DEV_AWS_THING_NAME_MAX)
        return false;
    for (size_t i = 0; i < n; i++) {
        char c = name[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == ':' || c == '_' ||
              c == '-'))
            return false;
    }
    return true;
}

const char *dev_aws_call_name(enr_aws_fleet_call call)
{
    switch (call) {
    case ENR_AWS_FLEET_CREATE_FROM_CSR: return "CreateCertificateFromCsr";
    case ENR_AWS_FLEET_CREATE_KEYS: return "CreateKeysAndCertificate";
    case ENR_AWS_FLEET_REGISTER_THING: return "RegisterThing";
    case ENR_AWS_FLEET_NONE: break;
    }
    return "?";
}

/* ---- requests ---- */

static char *dump(json_t *o)
{
    char *s = o != NULL ? json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;
    json_decref(o);
    return s;
}

char *dev_aws_csr_request(const char *csr_pem)
{
    if (csr_pem == NULL)
        return NULL;
    return dump(json_pack("{s:s}", "certificateSigningRequest", csr_pem));
}

char *dev_aws_register_request(const char *token, const char *const *names, const char *const *values, size_t n)
{
    if (token == NULL)
        return NULL;
    json_t *params = json_object();
    for (size_t i = 0; params != NULL && i < n; i++) {
        json_t *v = values[i] != NULL ? json_string(values[i]) : NULL;
        if (v == NULL || json_object_set_new(params, names[i], v) != 0) {
            json_decref(params);
            params = NULL;
        }
    }
    if (params == NULL)
        return NULL;
    return dump(json_pack("{s:s,s:o}", "certificateOwnershipToken", token, "parameters", params));
}

/* ---- answers ---- */

static enr_code load_object(const char *what, const char *body, size_t len, json_t **out, enr_error *err)
{
    *out = NULL;
    if (body == NULL)
        return enr_error_set(err, ENR_E_PARSE, "%s: no answer", what);
    if (len > DEV_AWS_ANSWER_MAX)
        return enr_error_set(err, ENR_E_PARSE, "%s: the answer is larger than %d bytes", what, DEV_AWS_ANSWER_MAX);
    json_error_t jerr;
    /* Duplicate keys refused (which one would count?); jansson refuses
     * invalid UTF-8 and \u0000 itself. */
    json_t *o = json_loadb(body, len, JSON_REJECT_DUPLICATES, &jerr);
    if (o == NULL)
        return enr_error_set(err, ENR_E_PARSE, "%s: the answer is not JSON: %s (at byte %d)", what, jerr.text,
                             jerr.position);
    if (!json_is_object(o)) {
        enr_error_set(err, ENR_E_PARSE, "%s: the answer is %s, not an object", what, enr_json_kind(o));
        json_decref(o);
        return ENR_E_PARSE;
    }
    *out = o;
    return ENR_OK;
}

/* A required string member, 1..max bytes, copied. */
static enr_code take_string(const char *what, json_t *o, const char *key, size_t max, char **out, enr_error *err)
{
    *out = NULL;
    json_t *v = json_object_get(o, key);
    if (v == NULL)
        return enr_error_set(err, ENR_E_PARSE, "%s: the answer has no %s", what, key);
    if (!json_is_string(v))
        return enr_error_set(err, ENR_E_PARSE, "%s: %s is %s, not a string", what, key, enr_json_kind(v));
    size_t n = json_string_length(v);
    if (n == 0)
        return enr_error_set(err, ENR_E_PARSE, "%s: %s is empty", what, key);
    if (n > max)
        return enr_error_set(err, ENR_E_PARSE, "%s: %s is longer than %zu bytes", what, key, max);
    if ((*out = strdup(json_string_value(v))) == NULL)
        return enr_error_set(err, ENR_E_NOMEM, "out of memory");
    return ENR_OK;
}

void dev_aws_created_clear(dev_aws_created *c)
{
    if (c == NULL)
        return;
    free(c->certificate_id);
    free(c->certificate_pem);
    if (c->ownership_token != NULL) /* a credential for an hour: not left in freed memory */
        OPENSSL_cleanse(c->ownership_token, strlen(c->ownership_token));
    free(c->ownership_token);
    memset(c, 0, sizeof *c);
}

enr_code dev_aws_created_parse(const char *body, size_t len, dev_aws_created *out, enr_error *err)
{
    memset(out, 0, sizeof *out);
    static const char what[] = "CreateCertificateFromCsr accepted";
    json_t *o;
    enr_code rc = load_object(what, body, len, &o, err);
    if (rc == ENR_OK &&
        (rc = take_string(what, o, "certificateId", DEV_AWS_CERT_ID_MAX, &out->certificate_id, err)) == ENR_OK &&
        (rc = take_string(what, o, "certificatePem", DEV_AWS_PEM_MAX, &out->certificate_pem, err)) == ENR_OK)
        rc = take_string(what, o, "certificateOwnershipToken", DEV_AWS_TOKEN_MAX, &out->ownership_token, err);
    json_decref(o);
    if (rc != ENR_OK)
        dev_aws_created_clear(out);
    return rc;
}

void dev_aws_registered_clear(dev_aws_registered *r)
{
    if (r == NULL)
        return;
    free(r->thing_name);
    free(r->device_configuration);
    memset(r, 0, sizeof *r);
}

static enr_code check_configuration(const char *what, json_t *config, enr_error *err)
{
    if (json_object_size(config) > DEV_AWS_CONFIG_MAX)
        return enr_error_set(err, ENR_E_PARSE, "%s: deviceConfiguration has more than %d entries", what,
                             DEV_AWS_CONFIG_MAX);
    const char *name;
    json_t *v;
    json_object_foreach(config, name, v) {
        size_t n = strlen(name);
        if (n == 0 || n > DEV_AWS_CONFIG_NAME_MAX)
            return enr_error_set(err, ENR_E_PARSE, "%s: a deviceConfiguration name is empty or longer than %d bytes",
                                 what, DEV_AWS_CONFIG_NAME_MAX);
        if (!json_is_string(v))
            return enr_error_set(err, ENR_E_PARSE, "%s: deviceConfiguration '%s' is %s, not a string", what,
                                 enr_quote(name).text, enr_json_kind(v));
        if (json_string_length(v) > DEV_AWS_CONFIG_VALUE_MAX)
            return enr_error_set(err, ENR_E_PARSE, "%s: deviceConfiguration '%s' is longer than %d bytes", what,
                                 enr_quote(name).text, DEV_AWS_CONFIG_VALUE_MAX);
    }
    return ENR_OK;
}

enr_code dev_aws_registered_parse(const char *body, size_t len, dev_aws_registered *out, enr_error *err)
{
    memset(out, 0, sizeof *out);
    static const char what[] = "RegisterThing accepted";
    json_t *o;
    enr_code rc = load_object(what, body, len, &o, err);
    if (rc == ENR_OK && (rc = take_string(what, o, "thingName", DEV_AWS_THING_NAME_MAX, &out->thing_name, err)) ==
                            ENR_OK && !dev_aws_thing_name_valid(out->thing_name))
        rc = enr_error_set(err, ENR_E_PARSE, "%s: thingName '%s' is not 1..128 of [a-zA-Z0-9:_-]", what,
                           enr_quote(out->thing_name).text);
    if (rc == ENR_OK) {
        json_t *config = json_object_get(o, "deviceConfiguration");
        if (config != NULL && !json_is_null(config) && !json_is_object(config))
            rc = enr_error_set(err, ENR_E_PARSE, "%s: deviceConfiguration is %s, not an object", what,
                               enr_json_kind(config));
        else if (config != NULL && !json_is_null(config))
            rc = check_configuration(what, config, err);
        if (rc == ENR_OK) {
            out->device_configuration = config != NULL && json_is_object(config)
                                            ? json_dumps(config, JSON_COMPACT | JSON_PRESERVE_ORDER)
                                            : strdup("{}");
            if (out->device_configuration == NULL)
                rc = enr_error_set(err, ENR_E_NOMEM, "out of memory");
        }
    }
    json_decref(o);
    if (rc != ENR_OK)
        dev_aws_registered_clear(out);
    return rc;
}

enr_code dev_aws_rejected_parse(const char *body, size_t len, dev_aws_rejected *out, enr_error *err)
{
    memset(out, 0, sizeof *out);
    static const char what[] = "the rejection";
    json_t *o;
    enr_code rc = load_object(what, body, len, &o, err);
    if (rc != ENR_OK)
        return rc;
    json_t *st = json_object_get(o, "statusCode");
    json_t *code = json_object_get(o, "errorCode");
    json_t *msg = json_object_get(o, "errorMessage");
    if (st == NULL)
        rc = enr_error_set(err, ENR_E_PARSE, "%s has no statusCode", what);
    else if (!json_is_integer(st))
        rc = enr_error_set(err, ENR_E_PARSE, "%s: statusCode is %s, not an integer", what, enr_json_kind(st));
    else if (json_integer_value(st) < 100 || json_integer_value(st) > 599)
        rc = enr_error_set(err, ENR_E_PARSE, "%s: statusCode %lld is not 100..599", what,
                           (long long)json_integer_value(st));
    else if (code != NULL && !json_is_null(code) && !json_is_string(code))
        rc = enr_error_set(err, ENR_E_PARSE, "%s: errorCode is %s, not a string", what, enr_json_kind(code));
    else if (json_is_string(code) && json_string_length(code) > DEV_AWS_ERROR_CODE_MAX)
        rc = enr_error_set(err, ENR_E_PARSE, "%s: errorCode is longer than %d bytes", what, DEV_AWS_ERROR_CODE_MAX);
    else if (msg != NULL && !json_is_null(msg) && !json_is_string(msg))
        rc = enr_error_set(err, ENR_E_PARSE, "%s: errorMessage is %s, not a string", what, enr_json_kind(msg));
    if (rc == ENR_OK) {
        out->status_code = (int)json_integer_value(st);
        snprintf(out->error_code, sizeof out->error_code, "%s", json_is_string(code) ? json_string_value(code) : "");
        /* A long message is cut, not refused: it is only ever quoted. */
        snprintf(out->error_message, sizeof out->error_message, "%s",
                 json_is_string(msg) ? json_string_value(msg) : "");
    }
    json_decref(o);
    return rc;
}

static bool code_is(const char *code, const char *const *names)
{
    for (size_t i = 0; names[i] != NULL; i++)
        if (strcasecmp(code, names[i]) == 0)
            return true;
    return false;
}

enr_code dev_aws_rejection_error(enr_aws_fleet_call call, const dev_aws_rejected *r, bool *retry, enr_error *err)
{
    /* AWS's SDKs read the statusCode; the errorCodes below are AWS IoT's
     * own names for the same conditions (and their ...Exception forms). */
    static const char *const BUSY[] = {"Throttling", "ThrottlingException", "TooManyRequests",
                                       "TooManyRequestsException", "ServiceUnavailable",
                                       "ServiceUnavailableException", "InternalFailure", "InternalFailureException",
                                       "InternalError", "InternalServerError", NULL};
    static const char *const REFUSED[] = {"AccessDenied", "AccessDeniedException", "Unauthorized",
                                          "UnauthorizedException", "Forbidden", "ForbiddenException", NULL};
    *retry = r->status_code == 429 || r->status_code >= 500 || code_is(r->error_code, BUSY);
    bool refused = !*retry && (r->status_code == 401 || r->status_code == 403 || code_is(r->error_code, REFUSED));
    char said[ENR_QUOTE_MAX * 2 + 64];
    snprintf(said, sizeof said, "statusCode %d, errorCode '%s': '%s'", r->status_code,
             r->error_code[0] ? enr_quote(r->error_code).text : "(none)",
             r->error_message[0] ? enr_quote(r->error_message).text : "(no message)");
    if (*retry)
        return enr_error_set(err, ENR_E_IO, "the service is busy or failing: it rejected %s (%s)",
                             dev_aws_call_name(call), said);
    return enr_error_refuse(err, refused ? ENR_R_AUTH_REFUSED : ENR_R_NONE, "the service rejected %s: %s%s",
                            dev_aws_call_name(call), said,
                            refused ? " (the certificate presented is not allowed to make this call)" : "");
}

/* ---- the link ---- */

struct dev_aws_link {
    dev_mqtt_conn *conn;
    char template_name[ENR_AWS_FLEET_TEMPLATE_NAME_MAX + 1];
    int timeout_ms;
    unsigned long used_serial; /* the connection of the previous call; 0: none */
    /* The call in flight and its answer. */
    enr_aws_fleet_call want;
    bool have_answer, too_large;
    dev_aws_answer answer;
};

void dev_aws_answer_clear(dev_aws_answer *a)
{
    if (a == NULL)
        return;
    free(a->body);
    memset(a, 0, sizeof *a);
}

static void on_message(void *obj, const char *topic, const void *payload, size_t len)
{
    dev_aws_link *l = obj;
    enr_aws_fleet_topic t;
    enr_error ignored;
    /* Only the answer to the call in flight, in JSON, for our template. */
    if (l->have_answer || l->want == ENR_AWS_FLEET_NONE ||
        enr_aws_fleet_topic_classify((const uint8_t *)topic, strlen(topic), &t, &ignored) !=
            ENR_AWS_FLEET_TOPIC_ANSWER ||
        t.call != l->want || t.format != ENR_AWS_FLEET_JSON ||
        (t.call == ENR_AWS_FLEET_REGISTER_THING && strcmp(t.template_name, l->template_name) != 0))
        return;
    if (len > DEV_AWS_ANSWER_MAX) {
        l->too_large = l->have_answer = true;
        return;
    }
    char *body = malloc(len + 1);
    if (body == NULL)
        return; /* the call then times out: a retry may find memory */
    if (len > 0)
        memcpy(body, payload, len);
    body[len] = '\0';
    l->answer.accepted = t.accepted;
    l->answer.body = body;
    l->answer.len = len;
    l->have_answer = true;
}

static bool answer_topic(char *out, size_t cap, enr_aws_fleet_call call, const char *template_name, bool accepted)
{
    enr_aws_fleet_topic t = {.kind = ENR_AWS_FLEET_TOPIC_REQUEST, .call = call, .format = ENR_AWS_FLEET_JSON};
    snprintf(t.template_name, sizeof t.template_name, "%s", template_name);
    return enr_aws_fleet_answer_topic(out, cap, &t, accepted) > 0;
}

enr_code dev_aws_link_call(dev_aws_link *l, enr_aws_fleet_call call, const char *payload, bool same_connection,
                           dev_aws_answer *out, enr_error *err)
{
    memset(out, 0, sizeof *out);
    long long deadline = dev_mqtt_now_ms() + l->timeout_ms;
    char request[ENR_AWS_FLEET_TOPIC_MAX + 1];
    if (enr_aws_fleet_request_topic(request, sizeof request, call, ENR_AWS_FLEET_JSON, l->template_name) == 0)
        return enr_error_set(err, ENR_E_USAGE, "no request topic for %s under template '%s'", dev_aws_call_name(call),
                             l->template_name);
    enr_code rc = ENR_OK;
    if (!dev_mqtt_conn_alive(l->conn)) {
        if (same_connection)
            return enr_error_set(err, ENR_E_IO,
                                 "the connection to %s was lost before %s (its ownership token is bound to that "
                                 "connection)",
                                 dev_mqtt_conn_host(l->conn), dev_aws_call_name(call));
        /* accepted and rejected of both calls, before anything is published */
        char topics[4][ENR_AWS_FLEET_TOPIC_MAX + 1];
        const char *filters[4] = {topics[0], topics[1], topics[2], topics[3]};
        if (!answer_topic(topics[0], sizeof topics[0], ENR_AWS_FLEET_CREATE_FROM_CSR, l->template_name, true) ||
            !answer_topic(topics[1], sizeof topics[1], ENR_AWS_FLEET_CREATE_FROM_CSR, l->template_name, false) ||
            !answer_topic(topics[2], sizeof topics[2], ENR_AWS_FLEET_REGISTER_THING, l->template_name, true) ||
            !answer_topic(topics[3], sizeof topics[3], ENR_AWS_FLEET_REGISTER_THING, l->template_name, false))
            return enr_error_set(err, ENR_E_USAGE, "template name '%s' makes no topic", l->template_name);
        if ((rc = dev_mqtt_conn_open(l->conn, NULL, NULL, filters, 4, deadline, err)) != ENR_OK)
            return rc;
    } else if (same_connection && dev_mqtt_conn_serial(l->conn) != l->used_serial) {
        return enr_error_set(err, ENR_E_IO, "the connection to %s changed before %s", dev_mqtt_conn_host(l->conn),
                             dev_aws_call_name(call));
    }
    l->used_serial = dev_mqtt_conn_serial(l->conn);
    dev_aws_answer_clear(&l->answer);
    l->have_answer = l->too_large = false;
    l->want = call;
    rc = dev_mqtt_conn_publish(l->conn, request, payload, payload != NULL ? strlen(payload) : 0, 1, err);
    if (rc == ENR_OK)
        rc = dev_mqtt_conn_wait(l->conn, &l->have_answer, deadline, "waiting for the answer from", err);
    l->want = ENR_AWS_FLEET_NONE;
    if (rc == ENR_OK && l->too_large)
        rc = enr_error_set(err, ENR_E_PARSE, "the answer to %s from %s is larger than %d bytes",
                           dev_aws_call_name(call), dev_mqtt_conn_host(l->conn), DEV_AWS_ANSWER_MAX);
    if (rc != ENR_OK) {
        dev_aws_answer_clear(&l->answer);
        return rc;
    }
    *out = l->answer;
    memset(&l->answer, 0, sizeof l->answer);
    return ENR_OK;
}

void dev_aws_link_free(dev_aws_link *l)
{
    if (l == NULL)
        return;
    dev_mqtt_conn_free(l->conn);
    dev_aws_answer_clear(&l->answer);
    free(l);
}

enr_code dev_aws_link_new(const char *url, const char *client_id, const enr_http_client_options *tls, int timeout_ms,
                          const char *template_name, dev_aws_link **out, enr_error *err)
{
    *out = NULL;
    char probe[ENR_AWS_FLEET_TOPIC_MAX + 1];
    if (template_name == NULL || enr_aws_fleet_request_topic(probe, sizeof probe, ENR_AWS_FLEET_REGISTER_THING,
                                                             ENR_AWS_FLEET_JSON, template_name) == 0)
        return enr_error_set(err, ENR_E_USAGE, "template name '%s' is not [0-9A-Za-z_-]{1,%d}",
                             template_name ? enr_quote(template_name).text : "", ENR_AWS_FLEET_TEMPLATE_NAME_MAX);
    dev_aws_link *l = calloc(1, sizeof *l);
    if (l == NULL)
        return enr_error_set(err, ENR_E_NOMEM, "out of memory");
    snprintf(l->template_name, sizeof l->template_name, "%s", template_name);
    l->timeout_ms = timeout_ms > 0 ? timeout_ms : 30000;
    dev_mqtt_conn_options co = {.url = url, .client_id = client_id, .tls = *tls, .timeout_ms = l->timeout_ms,
                                .on_message = on_message, .ctx = l};
    enr_code rc = dev_mqtt_conn_new(&co, &l->conn, err);
    if (rc != ENR_OK) {
        dev_aws_link_free(l);
        return rc;
    }
    *out = l;
    return ENR_OK;
}
