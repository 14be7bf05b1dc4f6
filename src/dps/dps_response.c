/* Reading the service's answer on the device. The device acts on what it
 * reads (stores certificates, connects to assignedHub, puts the operation id
 * into its next URL), so every member is type-checked, bounded and, where it
 * has a syntax, checked against it. Unknown members are ignored: services
 * add fields over time. */
#include <stdlib.h>
#include <string.h>

#include "dps/dps_internal.h"
#include "enroll/input.h"

#define SHORT_STRING_MAX 4096

typedef struct der_blob {
    unsigned char *der;
    size_t len;
} der_blob;

struct enr_dps_register_response {
    enr_dps_status status;
    char *operation_id;
    bool has_state;
    enr_dps_status state_status;
    char *registration_id;
    char *assigned_hub;
    char *device_id;
    char *substatus;
    char *etag;
    char *created;
    char *last_updated;
    char *renewal_window;
    char *renew_after;
    char *payload;
    der_blob chain[ENR_DPS_CHAIN_MAX];
    size_t chain_len;
    der_blob client_certificate;
    der_blob bundle[ENR_DPS_CHAIN_MAX];
    size_t bundle_len;
    int error_code;
    char *error_message;
    char *tracking_id;
};

void enr_dps_register_response_free(enr_dps_register_response *r)
{
    if (r == NULL)
        return;
    char *strings[] = {r->operation_id, r->registration_id, r->assigned_hub, r->device_id,
                       r->substatus,    r->etag,            r->created,      r->last_updated,
                       r->payload,      r->error_message,   r->tracking_id,  r->renewal_window,
                       r->renew_after};
    for (size_t i = 0; i < sizeof strings / sizeof strings[0]; i++)
        free(strings[i]);
    for (size_t i = 0; i < r->chain_len; i++)
        free(r->chain[i].der);
    for (size_t i = 0; i < r->bundle_len; i++)
        free(r->bundle[i].der);
    free(r->client_certificate.der);
    free(r);
}

/* ---- members -------------------------------------------------------------- */

static enr_code nomem(enr_error *err)
{
    return enr_error_set(err, ENR_E_NOMEM, "out of memory reading a DPS answer");
}

static enr_code wrong_type(const char *name, const char *expected, enr_error *err)
{
    return enr_error_set(err, ENR_E_PARSE, "DPS answer: %s must be %s", name, expected);
}

/* An optional string member, copied; absent leaves *out NULL. */
static enr_code get_string(json_t *obj, const char *name, size_t max, char **out, enr_error *err)
{
    json_t *v = json_object_get(obj, name);
    if (v == NULL)
        return ENR_OK;
    if (!json_is_string(v))
        return wrong_type(name, "a string", err);
    if (json_string_length(v) > max)
        return enr_error_set(err, ENR_E_PARSE, "DPS answer: %s is longer than %zu bytes", name,
                             max);
    *out = strdup(json_string_value(v));
    return *out != NULL ? ENR_OK : nomem(err);
}

static enr_code parse_status(const char *name, const char *text, enr_dps_status *out,
                             enr_error *err)
{
    for (enr_dps_status s = ENR_DPS_STATUS_ASSIGNING; s <= ENR_DPS_STATUS_UNASSIGNED; s++) {
        if (strcmp(text, enr_dps_status_name(s)) == 0) {
            *out = s;
            return ENR_OK;
        }
    }
    char shown[64];
    enr_dps_printable(text, strlen(text), shown, sizeof shown);
    return enr_error_set(err, ENR_E_PARSE, "DPS answer: %s '%s' is not a registration status",
                         name, shown);
}

static enr_code get_status(json_t *obj, const char *name, bool required, enr_dps_status *out,
                           enr_error *err)
{
    char *text = NULL;
    enr_code rc = get_string(obj, name, 32, &text, err);
    if (rc != ENR_OK)
        return rc;
    if (text == NULL)
        return required ? enr_error_set(err, ENR_E_PARSE, "DPS answer: %s is missing", name)
                        : ENR_OK;
    rc = parse_status(name, text, out, err);
    free(text);
    return rc;
}

static enr_code get_time(json_t *obj, const char *name, char **out, enr_error *err)
{
    enr_code rc = get_string(obj, name, ENR_DPS_TIME_SIZE + 8, out, err);
    time_t ignored;
    if (rc == ENR_OK && *out != NULL && enr_dps_time_parse(*out, &ignored, err) != ENR_OK)
        rc = enr_error_set(err, ENR_E_PARSE,
                           "DPS answer: %s is not a timestamp like 2026-11-23T08:00:00.0000000Z",
                           name);
    return rc;
}

static enr_code get_error_code(json_t *obj, int *out, enr_error *err)
{
    json_t *v = json_object_get(obj, "errorCode");
    if (v == NULL)
        return ENR_OK;
    if (!json_is_integer(v) || json_integer_value(v) <= 0 || json_integer_value(v) > 999999)
        return wrong_type("errorCode", "an integer between 1 and 999999", err);
    *out = (int)json_integer_value(v);
    return ENR_OK;
}

static enr_code get_payload(json_t *obj, char **out, enr_error *err)
{
    json_t *v = json_object_get(obj, "payload");
    if (v == NULL || json_is_null(v))
        return ENR_OK;
    *out = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
    return *out != NULL ? ENR_OK : nomem(err);
}

/* ---- certificates --------------------------------------------------------- */

static bool plain_base64(const char *s, size_t len)
{
    for (size_t i = 0; i < len; i++)
        if (!enr_dps_is_base64_char((unsigned char)s[i]))
            return false;
    return len > 0;
}

/* One DER object and nothing else, in the encoding the member is meant to
 * carry: a device must not store half a certificate or an appended extra. */
static enr_code decode_one(const char *name, const char *text, size_t len, enr_encoding want,
                           der_blob *out, enr_error *err)
{
    if (want == ENR_ENCODING_BASE64 && !plain_base64(text, len))
        return enr_error_set(err, ENR_E_PARSE,
                             "DPS answer: %s is not plain base64 (no whitespace or PEM lines)",
                             name);
    enr_decoded d;
    enr_code rc = enr_decode((const unsigned char *)text, len, &d, NULL, err);
    if (rc != ENR_OK) {
        enr_error_prefix(err, "DPS answer: %s", name);
        return rc == ENR_E_NOMEM ? rc : ENR_E_PARSE;
    }
    if (d.encoding != want || d.trailing_len != 0 ||
        (want == ENR_ENCODING_PEM && strcmp(d.pem_label, "CERTIFICATE") != 0)) {
        enr_decoded_free(&d);
        return enr_error_set(err, ENR_E_PARSE, "DPS answer: %s is not exactly one %s certificate",
                             name, want == ENR_ENCODING_PEM ? "PEM" : "base64 DER");
    }
    out->der = d.der;
    out->len = d.der_len;
    return ENR_OK;
}

static enr_code get_chain(json_t *state, enr_dps_register_response *r, enr_error *err)
{
    json_t *v = json_object_get(state, "issuedCertificateChain");
    if (v == NULL)
        return ENR_OK;
    if (!json_is_array(v) || json_array_size(v) == 0 || json_array_size(v) > ENR_DPS_CHAIN_MAX)
        return wrong_type("issuedCertificateChain", "an array of 1-8 base64 strings", err);
    for (size_t i = 0; i < json_array_size(v); i++) {
        json_t *item = json_array_get(v, i);
        if (!json_is_string(item))
            return wrong_type("issuedCertificateChain", "an array of 1-8 base64 strings", err);
        enr_code rc = decode_one("issuedCertificateChain element", json_string_value(item),
                                 json_string_length(item), ENR_ENCODING_BASE64,
                                 &r->chain[r->chain_len], err);
        if (rc != ENR_OK)
            return rc;
        r->chain_len++;
    }
    return ENR_OK;
}

static enr_code get_client_certificate(json_t *state, enr_dps_register_response *r,
                                       enr_error *err)
{
    json_t *v = json_object_get(state, "issuedClientCertificate");
    if (v == NULL)
        return ENR_OK;
    if (!json_is_string(v))
        return wrong_type("issuedClientCertificate", "a base64 string", err);
    return decode_one("issuedClientCertificate", json_string_value(v), json_string_length(v),
                      ENR_ENCODING_BASE64, &r->client_certificate, err);
}

static enr_code get_trust_bundle(json_t *state, enr_dps_register_response *r, enr_error *err)
{
    json_t *v = json_object_get(state, "trustBundle");
    if (v == NULL)
        return ENR_OK;
    json_t *certs = json_is_object(v) ? json_object_get(v, "certificates") : NULL;
    if (!json_is_array(certs) || json_array_size(certs) > ENR_DPS_CHAIN_MAX)
        return wrong_type("trustBundle", "an object with a \"certificates\" array of 0-8 entries",
                          err);
    for (size_t i = 0; i < json_array_size(certs); i++) {
        json_t *item = json_array_get(certs, i);
        json_t *pem = json_is_object(item) ? json_object_get(item, "certificate") : NULL;
        if (!json_is_string(pem))
            return wrong_type("trustBundle.certificates[]", "an object with a PEM \"certificate\"",
                              err);
        enr_code rc = decode_one("trustBundle certificate", json_string_value(pem),
                                 json_string_length(pem), ENR_ENCODING_PEM,
                                 &r->bundle[r->bundle_len], err);
        if (rc != ENR_OK)
            return rc;
        r->bundle_len++;
    }
    return ENR_OK;
}

/* ---- registrationState ------------------------------------------------------ */

static enr_code check_ids(enr_dps_register_response *r, enr_error *err)
{
    if (r->registration_id != NULL &&
        enr_dps_registration_id_check(r->registration_id, strlen(r->registration_id), err) !=
            ENR_OK) {
        enr_error_prefix(err, "DPS answer: registrationId");
        return ENR_E_PARSE;
    }
    if ((r->assigned_hub == NULL) != (r->device_id == NULL))
        return enr_error_set(err, ENR_E_PARSE,
                             "DPS answer: assignedHub and deviceId must come together");
    if (r->assigned_hub != NULL && (r->assigned_hub[0] == '\0' || r->device_id[0] == '\0'))
        return enr_error_set(err, ENR_E_PARSE, "DPS answer: assignedHub or deviceId is empty");
    return ENR_OK;
}

static enr_code get_state_strings(json_t *state, enr_dps_register_response *r, enr_error *err)
{
    enr_code rc = get_string(state, "registrationId", ENR_DPS_REGISTRATION_ID_MAX,
                             &r->registration_id, err);
    if (rc == ENR_OK)
        rc = get_string(state, "assignedHub", SHORT_STRING_MAX, &r->assigned_hub, err);
    if (rc == ENR_OK)
        rc = get_string(state, "deviceId", SHORT_STRING_MAX, &r->device_id, err);
    if (rc == ENR_OK)
        rc = get_string(state, "substatus", 64, &r->substatus, err);
    if (rc == ENR_OK)
        rc = get_string(state, "etag", SHORT_STRING_MAX, &r->etag, err);
    if (rc == ENR_OK)
        rc = get_time(state, "createdDateTimeUtc", &r->created, err);
    if (rc == ENR_OK)
        rc = get_time(state, "lastUpdatedDateTimeUtc", &r->last_updated, err);
    if (rc == ENR_OK)
        rc = get_string(state, "errorMessage", SHORT_STRING_MAX, &r->error_message, err);
    if (rc == ENR_OK)
        rc = get_string(state, "renewalWindow", 64, &r->renewal_window, err);
    if (rc == ENR_OK)
        rc = get_time(state, "renewAfterUtc", &r->renew_after, err);
    return rc;
}

static enr_code get_state(json_t *doc, enr_dps_register_response *r, enr_error *err)
{
    json_t *state = json_object_get(doc, "registrationState");
    if (state == NULL)
        return ENR_OK;
    if (!json_is_object(state))
        return wrong_type("registrationState", "an object", err);
    r->has_state = true;
    enr_code rc = get_status(state, "status", false, &r->state_status, err);
    if (rc == ENR_OK)
        rc = get_state_strings(state, r, err);
    if (rc == ENR_OK)
        rc = check_ids(r, err);
    if (rc == ENR_OK)
        rc = get_payload(state, &r->payload, err);
    if (rc == ENR_OK)
        rc = get_error_code(state, &r->error_code, err);
    if (rc == ENR_OK)
        rc = get_chain(state, r, err);
    if (rc == ENR_OK)
        rc = get_client_certificate(state, r, err);
    if (rc == ENR_OK)
        rc = get_trust_bundle(state, r, err);
    return rc;
}

/* ---- the two body shapes ------------------------------------------------------ */

static enr_code read_operation(json_t *doc, enr_dps_register_response *r, enr_error *err)
{
    enr_code rc = get_string(doc, "operationId", ENR_DPS_OPERATION_ID_MAX, &r->operation_id, err);
    if (rc == ENR_OK && !enr_dps_operation_id_ok(r->operation_id))
        rc = enr_error_set(err, ENR_E_PARSE,
                           "DPS answer: operationId is not 1-%d characters of [A-Za-z0-9._:-]",
                           ENR_DPS_OPERATION_ID_MAX);
    if (rc == ENR_OK)
        rc = get_status(doc, "status", true, &r->status, err);
    if (rc == ENR_OK)
        rc = get_state(doc, r, err);
    return rc;
}

/* {"errorCode", "trackingId", "message" (or "errorMessage"), "timestampUtc"} */
static enr_code read_error(json_t *doc, enr_dps_register_response *r, enr_error *err)
{
    r->status = ENR_DPS_STATUS_FAILED;
    enr_code rc = get_error_code(doc, &r->error_code, err);
    if (rc == ENR_OK)
        rc = get_string(doc, "trackingId", SHORT_STRING_MAX, &r->tracking_id, err);
    if (rc == ENR_OK)
        rc = get_string(doc, "message", SHORT_STRING_MAX, &r->error_message, err);
    if (rc == ENR_OK && r->error_message == NULL)
        rc = get_string(doc, "errorMessage", SHORT_STRING_MAX, &r->error_message, err);
    char *timestamp = NULL;
    if (rc == ENR_OK)
        rc = get_time(doc, "timestampUtc", &timestamp, err);
    free(timestamp);
    return rc;
}

enr_code enr_dps_register_response_parse(const char *body, size_t len,
                                         enr_dps_register_response **out, enr_error *err)
{
    *out = NULL;
    json_t *doc = NULL;
    enr_dps_error ignored;
    static const enr_dps_json_limits LIMITS = {ENR_DPS_RESPONSE_BODY_MAX,
                                               ENR_DPS_RESPONSE_DEPTH_MAX, "DPS answer"};
    enr_code rc = enr_dps_json_load_object(body, len, &LIMITS, &doc, &ignored, err);
    if (rc != ENR_OK)
        return rc;
    enr_dps_register_response *r = calloc(1, sizeof *r);
    if (r == NULL) {
        json_decref(doc);
        return nomem(err);
    }
    if (json_object_get(doc, "operationId") != NULL)
        rc = read_operation(doc, r, err);
    else if (json_object_get(doc, "errorCode") != NULL)
        rc = read_error(doc, r, err);
    else
        rc = enr_error_set(err, ENR_E_PARSE,
                           "DPS answer: has neither operationId nor errorCode");
    json_decref(doc);
    if (rc != ENR_OK) {
        enr_dps_register_response_free(r);
        return rc;
    }
    *out = r;
    return ENR_OK;
}

/* ---- getters ---------------------------------------------------------------- */

enr_dps_status enr_dps_response_status(const enr_dps_register_response *r)
{
    return r->status;
}

const char *enr_dps_response_operation_id(const enr_dps_register_response *r)
{
    return r->operation_id;
}

bool enr_dps_response_has_registration_state(const enr_dps_register_response *r)
{
    return r->has_state;
}

enr_dps_status enr_dps_response_registration_status(const enr_dps_register_response *r)
{
    return r->state_status;
}

const char *enr_dps_response_registration_id(const enr_dps_register_response *r)
{
    return r->registration_id;
}

const char *enr_dps_response_assigned_hub(const enr_dps_register_response *r)
{
    return r->assigned_hub;
}

const char *enr_dps_response_device_id(const enr_dps_register_response *r)
{
    return r->device_id;
}

const char *enr_dps_response_substatus(const enr_dps_register_response *r)
{
    return r->substatus;
}

const char *enr_dps_response_etag(const enr_dps_register_response *r)
{
    return r->etag;
}

const char *enr_dps_response_created(const enr_dps_register_response *r)
{
    return r->created;
}

const char *enr_dps_response_renewal_window(const enr_dps_register_response *r)
{
    return r->renewal_window;
}

const char *enr_dps_response_renew_after(const enr_dps_register_response *r)
{
    return r->renew_after;
}

const char *enr_dps_response_last_updated(const enr_dps_register_response *r)
{
    return r->last_updated;
}

const char *enr_dps_response_payload(const enr_dps_register_response *r)
{
    return r->payload;
}

size_t enr_dps_response_chain_len(const enr_dps_register_response *r)
{
    return r->chain_len;
}

const unsigned char *enr_dps_response_chain_der(const enr_dps_register_response *r, size_t i,
                                                size_t *len)
{
    if (i >= r->chain_len) {
        *len = 0;
        return NULL;
    }
    *len = r->chain[i].len;
    return r->chain[i].der;
}

const unsigned char *enr_dps_response_client_certificate(const enr_dps_register_response *r,
                                                         size_t *len)
{
    *len = r->client_certificate.len;
    return r->client_certificate.der;
}

size_t enr_dps_response_trust_bundle_len(const enr_dps_register_response *r)
{
    return r->bundle_len;
}

const unsigned char *enr_dps_response_trust_bundle_der(const enr_dps_register_response *r,
                                                       size_t i, size_t *len)
{
    if (i >= r->bundle_len) {
        *len = 0;
        return NULL;
    }
    *len = r->bundle[i].len;
    return r->bundle[i].der;
}

int enr_dps_response_error_code(const enr_dps_register_response *r)
{
    return r->error_code;
}

const char *enr_dps_response_error_message(const enr_dps_register_response *r)
{
    return r->error_message;
}

const char *enr_dps_response_tracking_id(const enr_dps_register_response *r)
{
    return r->tracking_id;
}
