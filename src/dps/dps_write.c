/* The service's answers. Member names and their order follow the bodies the
 * Azure DPS service sends, since device SDKs were written against those. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "dps/dps_internal.h"
#include "enroll/input.h"

#include <openssl/evp.h>

#define ERROR_MESSAGE_MAX 1024

const char *enr_dps_status_name(enr_dps_status s)
{
    switch (s) {
    case ENR_DPS_STATUS_UNKNOWN: break;
    case ENR_DPS_STATUS_ASSIGNING: return "assigning";
    case ENR_DPS_STATUS_ASSIGNED: return "assigned";
    case ENR_DPS_STATUS_FAILED: return "failed";
    case ENR_DPS_STATUS_DISABLED: return "disabled";
    case ENR_DPS_STATUS_UNASSIGNED: return "unassigned";
    }
    return "unknown";
}

const char *enr_dps_substatus_name(enr_dps_substatus s)
{
    switch (s) {
    case ENR_DPS_SUBSTATUS_INITIAL_ASSIGNMENT: return "initialAssignment";
    case ENR_DPS_SUBSTATUS_DEVICE_DATA_MIGRATED: return "deviceDataMigrated";
    case ENR_DPS_SUBSTATUS_DEVICE_DATA_RESET: return "deviceDataReset";
    case ENR_DPS_SUBSTATUS_REPROVISIONED_TO_INITIAL_ASSIGNMENT:
        return "reprovisionedToInitialAssignment";
    }
    return NULL;
}

/* ---- building blocks ------------------------------------------------------ */

static enr_code put(json_t *obj, const char *key, json_t *value, enr_error *err)
{
    if (json_object_set_new(obj, key, value) != 0)
        return enr_error_set(err, ENR_E_NOMEM, "out of memory writing a DPS answer");
    return ENR_OK;
}

/* json_string() refuses text that is not UTF-8; the caller hears which member. */
static enr_code put_string(json_t *obj, const char *key, const char *value, enr_error *err)
{
    json_t *s = json_string(value);
    if (s == NULL)
        return enr_error_set(err, ENR_E_USAGE, "%s is not valid UTF-8", key);
    return put(obj, key, s, err);
}

static enr_code put_time(json_t *obj, const char *key, time_t t, enr_error *err)
{
    char text[ENR_DPS_TIME_SIZE];
    enr_code rc = enr_dps_time_format(t, text, err);
    return rc != ENR_OK ? rc : put_string(obj, key, text, err);
}

/* The writers' inputs come from the service itself, so a bad one is the
 * caller's mistake whatever the check that caught it called it. */
static enr_code as_usage(enr_error *err)
{
    if (err != NULL)
        err->code = ENR_E_USAGE;
    return ENR_E_USAGE;
}

static enr_code check_ids(const char *operation_id, const char *registration_id, enr_error *err)
{
    if (operation_id == NULL || !enr_dps_operation_id_ok(operation_id))
        return enr_error_set(err, ENR_E_USAGE,
                             "operation id must be 1-%d characters of [A-Za-z0-9._:-]",
                             ENR_DPS_OPERATION_ID_MAX);
    if (registration_id == NULL)
        return enr_error_set(err, ENR_E_USAGE, "registration id is missing");
    if (enr_dps_registration_id_check(registration_id, strlen(registration_id), err) != ENR_OK)
        return as_usage(err);
    return ENR_OK;
}

static json_t *new_object(enr_error *err)
{
    json_t *obj = json_object();
    if (obj == NULL)
        enr_error_set(err, ENR_E_NOMEM, "out of memory writing a DPS answer");
    return obj;
}

/* {"operationId": ..., "status": ...} with the registrationState to come. */
static enr_code operation_head(const char *operation_id, enr_dps_status status, json_t **out,
                               enr_error *err)
{
    *out = new_object(err);
    if (*out == NULL)
        return ENR_E_NOMEM;
    enr_code rc = put_string(*out, "operationId", operation_id, err);
    if (rc == ENR_OK)
        rc = put_string(*out, "status", enr_dps_status_name(status), err);
    if (rc != ENR_OK) {
        json_decref(*out);
        *out = NULL;
    }
    return rc;
}

static enr_code dump_bounded(json_t *doc, char **out, enr_error *err)
{
    enr_code rc = enr_dps_json_dump(doc, out, err);
    if (rc != ENR_OK)
        return rc;
    size_t len = strlen(*out);
    if (len > ENR_DPS_RESPONSE_BODY_MAX) {
        free(*out);
        *out = NULL;
        return enr_error_set(err, ENR_E_USAGE,
                             "the answer would be %zu bytes; devices read at most %u", len,
                             ENR_DPS_RESPONSE_BODY_MAX);
    }
    return ENR_OK;
}

/* Takes ownership of `state` in every case. */
static enr_code finish(json_t *head, json_t *state, char **out, enr_error *err)
{
    enr_code rc = state != NULL ? put(head, "registrationState", state, err) : ENR_OK;
    if (rc == ENR_OK)
        rc = dump_bounded(head, out, err);
    json_decref(head);
    return rc;
}

/* ---- 202 ---------------------------------------------------------------- */

enr_code enr_dps_write_assigning(const char *operation_id, char **out, enr_error *err)
{
    *out = NULL;
    if (operation_id == NULL || !enr_dps_operation_id_ok(operation_id))
        return enr_error_set(err, ENR_E_USAGE,
                             "operation id must be 1-%d characters of [A-Za-z0-9._:-]",
                             ENR_DPS_OPERATION_ID_MAX);
    json_t *head = NULL;
    enr_code rc = operation_head(operation_id, ENR_DPS_STATUS_ASSIGNING, &head, err);
    return rc != ENR_OK ? rc : finish(head, NULL, out, err);
}

enr_code enr_dps_write_operation_status_assigning(const char *operation_id,
                                                  const char *registration_id, char **out,
                                                  enr_error *err)
{
    *out = NULL;
    enr_code rc = check_ids(operation_id, registration_id, err);
    json_t *head = NULL;
    if (rc == ENR_OK)
        rc = operation_head(operation_id, ENR_DPS_STATUS_ASSIGNING, &head, err);
    if (rc != ENR_OK)
        return rc;
    json_t *state = new_object(err);
    if (state == NULL) {
        json_decref(head);
        return ENR_E_NOMEM;
    }
    rc = put_string(state, "registrationId", registration_id, err);
    if (rc == ENR_OK)
        rc = put_string(state, "status", "assigning", err);
    if (rc != ENR_OK) {
        json_decref(state);
        json_decref(head);
        return rc;
    }
    return finish(head, state, out, err);
}

/* ---- 200 assigned ----------------------------------------------------------- */

static enr_code check_assignment(const enr_dps_assignment *a, enr_error *err)
{
    enr_code rc = check_ids(a->operation_id, a->registration_id, err);
    if (rc != ENR_OK)
        return rc;
    bool hub = a->assigned_hub != NULL && a->assigned_hub[0] != '\0';
    bool device = a->device_id != NULL && a->device_id[0] != '\0';
    if (hub != device)
        return enr_error_set(err, ENR_E_USAGE,
                             "assignedHub and deviceId go together: give both or neither");
    if (enr_dps_substatus_name(a->substatus) == NULL)
        return enr_error_set(err, ENR_E_USAGE, "unknown substatus %d", (int)a->substatus);
    if (a->chain_len > ENR_DPS_CHAIN_MAX || (a->chain_len > 0 && a->chain == NULL))
        return enr_error_set(err, ENR_E_USAGE, "the chain must hold 0-%d certificates",
                             ENR_DPS_CHAIN_MAX);
    return ENR_OK;
}

static enr_code parse_payload(const char *text, json_t **out, enr_error *err)
{
    *out = NULL;
    size_t where = 0;
    if (enr_dps_json_too_deep(text, strlen(text), ENR_DPS_PAYLOAD_DEPTH_MAX, &where))
        return enr_error_set(err, ENR_E_USAGE, "the payload nests deeper than %d levels",
                             ENR_DPS_PAYLOAD_DEPTH_MAX);
    json_error_t jerr;
    *out = json_loads(text, JSON_REJECT_DUPLICATES | JSON_DECODE_ANY, &jerr);
    if (*out == NULL)
        return enr_error_set(err, ENR_E_USAGE, "the payload is not JSON: %s", jerr.text);
    return ENR_OK;
}

/* Each blob must be exactly one DER object: a device stores what it gets.
 * What OpenSSL's encoder made in this process is one already. */
static enr_code check_chain_element(const enr_dps_der *d, enr_error *err)
{
    if (d->encoded)
        return ENR_OK;
    size_t object_len = 0, bad = 0;
    enr_code rc = enr_der_check(d->der, d->len, &object_len, &bad, err);
    if (rc == ENR_OK && object_len != d->len)
        rc = enr_error_set(err, ENR_E_USAGE, "bytes follow the DER object");
    return rc;
}

static enr_code chain_array(const enr_dps_der *chain, size_t n, json_t **out, enr_error *err)
{
    *out = json_array();
    if (*out == NULL)
        return enr_error_set(err, ENR_E_NOMEM, "out of memory writing a DPS answer");
    for (size_t i = 0; i < n; i++) {
        enr_code rc = check_chain_element(&chain[i], err);
        char *b64 = NULL;
        if (rc == ENR_OK)
            rc = enr_base64_encode(chain[i].der, chain[i].len, &b64, err);
        if (rc == ENR_OK && json_array_append_new(*out, json_string(b64)) != 0)
            rc = enr_error_set(err, ENR_E_NOMEM, "out of memory writing a DPS answer");
        free(b64);
        if (rc != ENR_OK) {
            enr_error_prefix(err, "chain element %zu", i);
            json_decref(*out);
            *out = NULL;
            return rc == ENR_E_PARSE ? as_usage(err) : rc;
        }
    }
    return ENR_OK;
}

/* {"certificates": [{"certificate": "<PEM of the root>"}]} */
static enr_code trust_bundle(const enr_dps_der *root, json_t **out, enr_error *err)
{
    *out = NULL;
    char *pem = NULL;
    enr_code rc = enr_pem_encode("CERTIFICATE", root->der, root->len, &pem, err);
    if (rc != ENR_OK)
        return rc;
    *out = json_pack("{s:[{s:s}]}", "certificates", "certificate", pem);
    free(pem);
    if (*out == NULL)
        return enr_error_set(err, ENR_E_NOMEM, "out of memory writing a DPS answer");
    return ENR_OK;
}

static enr_code put_certificates(json_t *state, const enr_dps_assignment *a, enr_error *err)
{
    json_t *chain = NULL, *bundle = NULL;
    enr_code rc = chain_array(a->chain, a->chain_len, &chain, err);
    if (rc != ENR_OK)
        return rc;
    json_t *leaf = json_incref(json_array_get(chain, 0));
    rc = put(state, "issuedCertificateChain", chain, err);
    if (rc == ENR_OK)
        rc = put(state, "issuedClientCertificate", leaf, err);
    else
        json_decref(leaf);
    if (rc == ENR_OK)
        rc = trust_bundle(&a->chain[a->chain_len - 1], &bundle, err);
    if (rc == ENR_OK)
        rc = put(state, "trustBundle", bundle, err);
    return rc;
}

static enr_code put_optional_string(json_t *obj, const char *key, const char *value,
                                    enr_error *err)
{
    return value != NULL ? put_string(obj, key, value, err) : ENR_OK;
}

/* Whether the answer is about a certificate (written in it, or apart). */
static bool with_certificate(const enr_dps_assignment *a)
{
    return a->certificate_apart || a->chain_len > 0;
}

static enr_code assigned_state(const enr_dps_assignment *a, json_t *state, enr_error *err)
{
    enr_code rc = put_string(state, "registrationId", a->registration_id, err);
    if (rc == ENR_OK)
        rc = put_time(state, "createdDateTimeUtc", a->created_at, err);
    if (rc == ENR_OK && a->assigned_hub != NULL && a->assigned_hub[0] != '\0') {
        rc = put_string(state, "assignedHub", a->assigned_hub, err);
        if (rc == ENR_OK)
            rc = put_string(state, "deviceId", a->device_id, err);
    }
    if (rc == ENR_OK)
        rc = put_string(state, "status", "assigned", err);
    if (rc == ENR_OK)
        rc = put_string(state, "substatus", enr_dps_substatus_name(a->substatus), err);
    if (rc == ENR_OK)
        rc = put_time(state, "lastUpdatedDateTimeUtc", a->updated_at, err);
    if (rc == ENR_OK)
        rc = put_optional_string(state, "etag", a->etag, err);
    if (rc == ENR_OK && a->payload_json != NULL) {
        json_t *payload = NULL;
        rc = parse_payload(a->payload_json, &payload, err);
        if (rc == ENR_OK)
            rc = put(state, "payload", payload, err);
    }
    if (rc == ENR_OK && a->chain_len > 0 && !a->certificate_apart)
        rc = put_certificates(state, a, err);
    if (rc == ENR_OK && with_certificate(a) && a->renewal_window != NULL)
        rc = put_string(state, "renewalWindow", a->renewal_window, err);
    if (rc == ENR_OK && with_certificate(a) && a->renew_after != 0)
        rc = put_time(state, "renewAfterUtc", a->renew_after, err);
    return rc;
}

/* The same document written directly. json_dumps spends ~270k
 * instructions escaping a few kilobytes of base64 and PEM character by
 * character, a tenth of a registration's cost; these strings need no
 * escaping but PEM's newlines. Used when every string is printable ASCII
 * without '"' or '\\' (base64, ids, times: always, for enrolld's answers);
 * anything else, and a payload, goes through jansson. Byte for byte the
 * same text (test_dps keeps them equal). */
typedef struct answer_text {
    char *p;
    size_t len, cap;
    bool failed;
} answer_text;

static char *text_room(answer_text *t, size_t n)
{
    if (t->failed)
        return NULL;
    if (t->len + n + 1 > t->cap) {
        size_t cap = (t->len + n + 1) * 2;
        char *p = realloc(t->p, cap);
        if (p == NULL) {
            t->failed = true;
            return NULL;
        }
        t->p = p;
        t->cap = cap;
    }
    return t->p + t->len;
}

static void text_add(answer_text *t, const char *s, size_t n)
{
    char *at = text_room(t, n);
    if (at != NULL) {
        memcpy(at, s, n);
        t->len += n;
    }
}

#define TEXT_LIT(t, s) text_add((t), (s), sizeof(s) - 1)

/* Whether `s` is written as it is (newlines as \n) inside JSON quotes. */
static bool plain(const char *s)
{
    for (; *s != '\0'; s++) {
        unsigned char c = (unsigned char)*s;
        if ((c < 0x20 && c != '\n') || c > 0x7e || c == '"' || c == '\\')
            return false;
    }
    return true;
}

static void text_string(answer_text *t, const char *s)
{
    TEXT_LIT(t, "\"");
    for (const char *nl; (nl = strchr(s, '\n')) != NULL; s = nl + 1) {
        text_add(t, s, (size_t)(nl - s));
        TEXT_LIT(t, "\\n");
    }
    text_add(t, s, strlen(s));
    TEXT_LIT(t, "\"");
}

/* ,"key":"value" (the first member of an object has no comma: `first`). */
static void text_member(answer_text *t, const char *key, const char *value, bool first)
{
    if (!first)
        TEXT_LIT(t, ",");
    TEXT_LIT(t, "\"");
    text_add(t, key, strlen(key));
    TEXT_LIT(t, "\":");
    text_string(t, value);
}

static void text_base64(answer_text *t, const enr_dps_der *der)
{
    size_t n = (der->len + 2) / 3 * 4;
    char *at = text_room(t, n + 2);
    if (at == NULL || der->len > (size_t)INT32_MAX / 2) {
        t->failed = true;
        return;
    }
    at[0] = '"';
    EVP_EncodeBlock((unsigned char *)at + 1, der->der, (int)der->len);
    at[n + 1] = '"';
    t->len += n + 2;
}

bool enr_dps_assignment_plain(const enr_dps_assignment *a)
{
    const char *strings[] = {a->operation_id, a->registration_id, a->assigned_hub, a->device_id, a->etag,
                             a->renewal_window};
    for (size_t i = 0; i < sizeof strings / sizeof strings[0]; i++)
        if (strings[i] != NULL && !plain(strings[i]))
            return false;
    return a->payload_json == NULL;
}

static enr_code write_assigned_text(const enr_dps_assignment *a, char **out, enr_error *err)
{
    char created[ENR_DPS_TIME_SIZE], updated[ENR_DPS_TIME_SIZE], renew[ENR_DPS_TIME_SIZE] = "";
    enr_code rc = enr_dps_time_format(a->created_at, created, err);
    if (rc == ENR_OK)
        rc = enr_dps_time_format(a->updated_at, updated, err);
    if (rc == ENR_OK && with_certificate(a) && a->renew_after != 0)
        rc = enr_dps_time_format(a->renew_after, renew, err);
    size_t chain_len = a->certificate_apart ? 0 : a->chain_len;
    for (size_t i = 0; rc == ENR_OK && i < chain_len; i++) {
        rc = check_chain_element(&a->chain[i], err);
        if (rc != ENR_OK) {
            enr_error_prefix(err, "chain element %zu", i);
            return rc == ENR_E_PARSE ? as_usage(err) : rc;
        }
    }
    char *pem = NULL;
    if (rc == ENR_OK && chain_len > 0)
        rc = enr_pem_encode("CERTIFICATE", a->chain[chain_len - 1].der, a->chain[chain_len - 1].len, &pem, err);
    if (rc != ENR_OK)
        return rc;
    answer_text t = {0};
    TEXT_LIT(&t, "{");
    text_member(&t, "operationId", a->operation_id, true);
    text_member(&t, "status", "assigned", false);
    TEXT_LIT(&t, ",\"registrationState\":{");
    text_member(&t, "registrationId", a->registration_id, true);
    text_member(&t, "createdDateTimeUtc", created, false);
    if (a->assigned_hub != NULL && a->assigned_hub[0] != '\0') {
        text_member(&t, "assignedHub", a->assigned_hub, false);
        text_member(&t, "deviceId", a->device_id, false);
    }
    text_member(&t, "status", "assigned", false);
    text_member(&t, "substatus", enr_dps_substatus_name(a->substatus), false);
    text_member(&t, "lastUpdatedDateTimeUtc", updated, false);
    if (a->etag != NULL)
        text_member(&t, "etag", a->etag, false);
    if (chain_len > 0) {
        TEXT_LIT(&t, ",\"issuedCertificateChain\":[");
        size_t leaf_at = t.len;
        for (size_t i = 0; i < chain_len; i++) {
            if (i > 0)
                TEXT_LIT(&t, ",");
            text_base64(&t, &a->chain[i]);
        }
        size_t leaf_len = (a->chain[0].len + 2) / 3 * 4 + 2;
        TEXT_LIT(&t, "],\"issuedClientCertificate\":");
        if (text_room(&t, leaf_len) != NULL) { /* the room first: the copy's source may move */
            memcpy(t.p + t.len, t.p + leaf_at, leaf_len);
            t.len += leaf_len;
        }
        TEXT_LIT(&t, ",\"trustBundle\":{\"certificates\":[{\"certificate\":");
        text_string(&t, pem);
        TEXT_LIT(&t, "}]}");
    }
    if (with_certificate(a)) {
        if (a->renewal_window != NULL)
            text_member(&t, "renewalWindow", a->renewal_window, false);
        if (a->renew_after != 0)
            text_member(&t, "renewAfterUtc", renew, false);
    }
    TEXT_LIT(&t, "}}");
    free(pem);
    if (t.failed) {
        free(t.p);
        return enr_error_set(err, ENR_E_NOMEM, "out of memory writing a DPS answer");
    }
    t.p[t.len] = '\0';
    if (t.len > ENR_DPS_RESPONSE_BODY_MAX) {
        free(t.p);
        return enr_error_set(err, ENR_E_USAGE, "the answer would be %zu bytes; devices read at most %u", t.len,
                             ENR_DPS_RESPONSE_BODY_MAX);
    }
    *out = t.p;
    return ENR_OK;
}

enr_code enr_dps_write_assigned(const enr_dps_assignment *a, char **out, enr_error *err)
{
    *out = NULL;
    enr_code rc = check_assignment(a, err);
    if (rc != ENR_OK)
        return rc;
    return enr_dps_assignment_plain(a) ? write_assigned_text(a, out, err) : enr_dps_write_assigned_json(a, out, err);
}

enr_code enr_dps_write_assigned_json(const enr_dps_assignment *a, char **out, enr_error *err)
{
    *out = NULL;
    enr_code rc = check_assignment(a, err);
    json_t *head = NULL;
    if (rc == ENR_OK)
        rc = operation_head(a->operation_id, ENR_DPS_STATUS_ASSIGNED, &head, err);
    if (rc != ENR_OK)
        return rc;
    json_t *state = new_object(err);
    rc = state != NULL ? assigned_state(a, state, err) : ENR_E_NOMEM;
    if (rc != ENR_OK) {
        json_decref(state);
        json_decref(head);
        return rc;
    }
    return finish(head, state, out, err);
}

/* ---- failures ------------------------------------------------------------ */

static json_t *message_string(enr_dps_error e, const char *message)
{
    const char *text = message != NULL ? message : enr_dps_error_summary(e);
    char clean[ERROR_MESSAGE_MAX + 1];
    enr_dps_printable(text, strnlen(text, ERROR_MESSAGE_MAX), clean, sizeof clean);
    return json_string(clean);
}

static enr_code failed_state(const enr_dps_failure *f, json_t *state, enr_error *err)
{
    enr_code rc = put_string(state, "registrationId", f->registration_id, err);
    if (rc == ENR_OK)
        rc = put_time(state, "createdDateTimeUtc", f->created_at, err);
    if (rc == ENR_OK)
        rc = put_string(state, "status", f->disabled ? "disabled" : "failed", err);
    if (rc == ENR_OK)
        rc = put(state, "errorCode", json_integer(enr_dps_error_code(f->error)), err);
    if (rc == ENR_OK)
        rc = put(state, "errorMessage", message_string(f->error, f->message), err);
    if (rc == ENR_OK)
        rc = put_time(state, "lastUpdatedDateTimeUtc", f->updated_at, err);
    if (rc == ENR_OK)
        rc = put_optional_string(state, "etag", f->etag, err);
    return rc;
}

static bool is_error(enr_dps_error e)
{
    return e > ENR_DPS_OK && e < ENR_DPS_ERROR_COUNT;
}

enr_code enr_dps_write_failed(const enr_dps_failure *f, char **out, enr_error *err)
{
    *out = NULL;
    if (!is_error(f->error))
        return enr_error_set(err, ENR_E_USAGE, "a failed registration needs an error");
    enr_code rc = check_ids(f->operation_id, f->registration_id, err);
    json_t *head = NULL;
    if (rc == ENR_OK)
        rc = operation_head(f->operation_id,
                            f->disabled ? ENR_DPS_STATUS_DISABLED : ENR_DPS_STATUS_FAILED, &head,
                            err);
    if (rc != ENR_OK)
        return rc;
    json_t *state = new_object(err);
    rc = state != NULL ? failed_state(f, state, err) : ENR_E_NOMEM;
    if (rc != ENR_OK) {
        json_decref(state);
        json_decref(head);
        return rc;
    }
    return finish(head, state, out, err);
}

enr_code enr_dps_write_error(enr_dps_error e, const char *message, const char *tracking_id,
                             time_t now, char **out, enr_error *err)
{
    *out = NULL;
    if (!is_error(e))
        return enr_error_set(err, ENR_E_USAGE, "an error body needs an error");
    json_t *body = new_object(err);
    if (body == NULL)
        return ENR_E_NOMEM;
    enr_code rc = put(body, "errorCode", json_integer(enr_dps_error_code(e)), err);
    if (rc == ENR_OK)
        rc = put_optional_string(body, "trackingId", tracking_id, err);
    if (rc == ENR_OK)
        rc = put(body, "message", message_string(e, message), err);
    if (rc == ENR_OK)
        rc = put_time(body, "timestampUtc", now, err);
    if (rc == ENR_OK)
        rc = dump_bounded(body, out, err);
    json_decref(body);
    return rc;
}

/* ---- an answer kept without its certificates ------------------------------ */

static bool substatus_from_name(const char *name, enr_dps_substatus *out)
{
    static const enr_dps_substatus ALL[] = {
        ENR_DPS_SUBSTATUS_INITIAL_ASSIGNMENT, ENR_DPS_SUBSTATUS_DEVICE_DATA_MIGRATED,
        ENR_DPS_SUBSTATUS_DEVICE_DATA_RESET, ENR_DPS_SUBSTATUS_REPROVISIONED_TO_INITIAL_ASSIGNMENT};
    for (size_t i = 0; name != NULL && i < sizeof ALL / sizeof ALL[0]; i++)
        if (strcmp(name, enr_dps_substatus_name(ALL[i])) == 0) {
            *out = ALL[i];
            return true;
        }
    return false;
}

/* Reads the kept answer back with the device's own reader, so the facts
 * written once are read the way every client reads them, then writes it
 * again with the chain: one writer for both. */
enr_code enr_dps_complete_assigned(const char *kept, size_t len, const enr_dps_der *chain, size_t chain_len,
                                   char **out, enr_error *err)
{
    *out = NULL;
    enr_dps_register_response *r = NULL;
    enr_code rc = enr_dps_register_response_parse(kept, len, &r, err);
    if (rc != ENR_OK)
        return rc == ENR_E_NOMEM ? rc : ENR_E_PARSE;
    enr_dps_assignment a = {
        .operation_id = enr_dps_response_operation_id(r),
        .registration_id = enr_dps_response_registration_id(r),
        .assigned_hub = enr_dps_response_assigned_hub(r),
        .device_id = enr_dps_response_device_id(r),
        .etag = enr_dps_response_etag(r),
        .payload_json = enr_dps_response_payload(r),
        .renewal_window = enr_dps_response_renewal_window(r),
        .chain = chain,
        .chain_len = chain_len,
    };
    const char *created = enr_dps_response_created(r), *updated = enr_dps_response_last_updated(r),
               *renew = enr_dps_response_renew_after(r);
    if (enr_dps_response_status(r) != ENR_DPS_STATUS_ASSIGNED || a.operation_id == NULL ||
        a.registration_id == NULL || created == NULL || updated == NULL ||
        enr_dps_response_chain_len(r) != 0 || enr_dps_response_trust_bundle_len(r) != 0 ||
        !substatus_from_name(enr_dps_response_substatus(r), &a.substatus))
        rc = enr_error_set(err, ENR_E_PARSE, "not an assigned answer kept without its certificates");
    if (rc == ENR_OK)
        rc = enr_dps_time_parse(created, &a.created_at, err);
    if (rc == ENR_OK)
        rc = enr_dps_time_parse(updated, &a.updated_at, err);
    if (rc == ENR_OK && renew != NULL)
        rc = enr_dps_time_parse(renew, &a.renew_after, err);
    if (rc == ENR_OK)
        rc = enr_dps_write_assigned(&a, out, err);
    enr_dps_register_response_free(r);
    return rc;
}
