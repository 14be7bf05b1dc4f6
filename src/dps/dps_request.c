/* The register request body. Every message here may be sent back to the
 * device verbatim, so each says what was wrong in the device's terms. */
#include <stdlib.h>
#include <string.h>

#include "core/quote.h"
#include "dps/dps_internal.h"

struct enr_dps_register_request {
    char *registration_id;
    char *csr; /* base64, whitespace removed; NULL: classic registration */
    enr_dps_csr_field csr_field;
    char *payload; /* compact JSON text or NULL */
};

void enr_dps_register_request_free(enr_dps_register_request *req)
{
    if (req == NULL)
        return;
    free(req->registration_id);
    free(req->csr);
    free(req->payload);
    free(req);
}

static enr_code fail(enr_dps_error *dps_err, enr_dps_error e, enr_code rc)
{
    *dps_err = e;
    return rc;
}

static enr_code out_of_memory(enr_dps_error *dps_err, enr_error *err)
{
    *dps_err = ENR_DPS_INTERNAL;
    return enr_error_set(err, ENR_E_NOMEM, "out of memory reading the request body");
}

static enr_code read_registration_id(json_t *doc, const char *path_id,
                                     enr_dps_register_request *req, enr_dps_error *dps_err,
                                     enr_error *err)
{
    json_t *v = json_object_get(doc, "registrationId");
    if (v == NULL)
        return fail(dps_err, ENR_DPS_MALFORMED_BODY,
                    enr_error_set(err, ENR_E_PARSE, "request body: registrationId is missing"));
    if (!json_is_string(v))
        return fail(dps_err, ENR_DPS_MALFORMED_BODY,
                    enr_error_set(err, ENR_E_PARSE,
                                  "request body: registrationId must be a string, not %s",
                                  enr_json_kind(v)));
    const char *id = json_string_value(v);
    enr_code rc = enr_dps_registration_id_check(id, json_string_length(v), err);
    if (rc != ENR_OK) {
        enr_error_prefix(err, "request body");
        return fail(dps_err, ENR_DPS_REGISTRATION_ID_INVALID, rc);
    }
    if (!enr_dps_registration_id_equal(id, path_id)) {
        char shown[ENR_DPS_REGISTRATION_ID_MAX + 1];
        enr_dps_printable(path_id, strnlen(path_id, sizeof shown - 1), shown, sizeof shown);
        return fail(dps_err, ENR_DPS_REGISTRATION_ID_MISMATCH,
                    enr_error_set(err, ENR_E_PARSE,
                                  "request body: registrationId '%s' differs from '%s' in the path",
                                  id, shown));
    }
    req->registration_id = strdup(id);
    return req->registration_id != NULL ? ENR_OK : out_of_memory(dps_err, err);
}

static bool is_json_space(char c)
{
    return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

/* Base64 with the whitespace that some encoders wrap lines with removed.
 * Only the alphabet is checked here; the DER inside is the CSR parser's job. */
static enr_code normalise_csr(const char *name, const char *text, size_t len, char **out,
                              enr_dps_error *dps_err, enr_error *err)
{
    *out = NULL;
    if (len > ENR_DPS_CSR_CHARS_MAX)
        return fail(dps_err, ENR_DPS_CSR_NOT_DECODABLE,
                    enr_error_set(err, ENR_E_PARSE,
                                  "request body: %s is %zu characters; the limit is %u", name, len,
                                  ENR_DPS_CSR_CHARS_MAX));
    if (strncmp(text, "-----BEGIN", 10) == 0)
        return fail(dps_err, ENR_DPS_CSR_NOT_DECODABLE,
                    enr_error_set(err, ENR_E_PARSE,
                                  "request body: %s is PEM; send the base64 DER without the "
                                  "-----BEGIN/-----END lines",
                                  name));
    char *clean = malloc(len + 1);
    if (clean == NULL)
        return out_of_memory(dps_err, err);
    size_t n = 0;
    for (size_t i = 0; i < len; i++) {
        if (is_json_space(text[i]))
            continue;
        if (!enr_dps_is_base64_char((unsigned char)text[i])) {
            free(clean);
            return fail(dps_err, ENR_DPS_CSR_NOT_DECODABLE,
                        enr_error_set(err, ENR_E_PARSE,
                                      "request body: %s has a character outside base64 at "
                                      "position %zu",
                                      name, i));
        }
        clean[n++] = text[i];
    }
    clean[n] = '\0';
    if (n == 0) {
        free(clean);
        return fail(dps_err, ENR_DPS_CSR_NOT_DECODABLE,
                    enr_error_set(err, ENR_E_PARSE, "request body: %s is empty", name));
    }
    *out = clean;
    return ENR_OK;
}

/* A member that is absent or null gives *out == NULL. */
static enr_code read_csr_member(json_t *doc, const char *name, char **out,
                                enr_dps_error *dps_err, enr_error *err)
{
    *out = NULL;
    json_t *v = json_object_get(doc, name);
    if (v == NULL || json_is_null(v))
        return ENR_OK;
    if (!json_is_string(v))
        return fail(dps_err, ENR_DPS_MALFORMED_BODY,
                    enr_error_set(err, ENR_E_PARSE,
                                  "request body: %s must be a string of base64 DER, not %s", name,
                                  enr_json_kind(v)));
    return normalise_csr(name, json_string_value(v), json_string_length(v), out, dps_err, err);
}

static enr_code read_csr(json_t *doc, enr_dps_register_request *req, enr_dps_error *dps_err,
                         enr_error *err)
{
    char *csr = NULL, *client = NULL;
    enr_code rc = read_csr_member(doc, "csr", &csr, dps_err, err);
    if (rc == ENR_OK)
        rc = read_csr_member(doc, "clientCertificateCsr", &client, dps_err, err);
    if (rc == ENR_OK && csr != NULL && client != NULL && strcmp(csr, client) != 0)
        rc = fail(dps_err, ENR_DPS_CSR_FIELDS_DIFFER,
                  enr_error_set(err, ENR_E_PARSE,
                                "request body: csr and clientCertificateCsr carry different "
                                "requests; send one, or the same in both"));
    if (rc != ENR_OK) {
        free(csr);
        free(client);
        return rc;
    }
    if (csr != NULL && client != NULL) {
        req->csr_field = ENR_DPS_CSR_FIELD_BOTH;
        free(client);
        req->csr = csr;
    } else if (csr != NULL) {
        req->csr_field = ENR_DPS_CSR_FIELD_CSR;
        req->csr = csr;
    } else if (client != NULL) {
        req->csr_field = ENR_DPS_CSR_FIELD_CLIENT;
        req->csr = client;
    }
    return ENR_OK;
}

static enr_code read_payload(json_t *doc, enr_dps_register_request *req, enr_dps_error *dps_err,
                             enr_error *err)
{
    json_t *v = json_object_get(doc, "payload");
    if (v == NULL || json_is_null(v))
        return ENR_OK;
    req->payload = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
    if (req->payload == NULL)
        return out_of_memory(dps_err, err);
    size_t n = strlen(req->payload);
    if (n > ENR_DPS_PAYLOAD_MAX)
        return fail(dps_err, ENR_DPS_PAYLOAD_TOO_LARGE,
                    enr_error_set(err, ENR_E_PARSE,
                                  "payload is %zu bytes as compact JSON; the limit is %u: send the "
                                  "device's data for the enrollment, not bulk data",
                                  n, ENR_DPS_PAYLOAD_MAX));
    return ENR_OK;
}

enr_code enr_dps_register_request_parse(const char *body, size_t len,
                                        const char *path_registration_id,
                                        enr_dps_register_request **out, enr_dps_error *dps_err,
                                        enr_error *err)
{
    *out = NULL;
    if (path_registration_id == NULL)
        return fail(dps_err, ENR_DPS_INTERNAL,
                    enr_error_set(err, ENR_E_USAGE, "no registration id from the path"));
    json_t *doc = NULL;
    static const enr_dps_json_limits LIMITS = {ENR_DPS_REQUEST_BODY_MAX, ENR_DPS_JSON_DEPTH_MAX,
                                               "request body"};
    enr_code rc = enr_dps_json_load_object(body, len, &LIMITS, &doc, dps_err, err);
    if (rc != ENR_OK)
        return rc;
    enr_dps_register_request *req = calloc(1, sizeof *req);
    if (req == NULL) {
        json_decref(doc);
        return out_of_memory(dps_err, err);
    }
    rc = read_registration_id(doc, path_registration_id, req, dps_err, err);
    if (rc == ENR_OK)
        rc = read_csr(doc, req, dps_err, err);
    if (rc == ENR_OK)
        rc = read_payload(doc, req, dps_err, err);
    json_decref(doc);
    if (rc != ENR_OK) {
        enr_dps_register_request_free(req);
        return rc;
    }
    *dps_err = ENR_DPS_OK;
    *out = req;
    return ENR_OK;
}

const char *enr_dps_register_request_registration_id(const enr_dps_register_request *req)
{
    return req->registration_id;
}

const char *enr_dps_register_request_csr(const enr_dps_register_request *req)
{
    return req->csr;
}

enr_dps_csr_field enr_dps_register_request_csr_field(const enr_dps_register_request *req)
{
    return req->csr_field;
}

const char *enr_dps_register_request_payload(const enr_dps_register_request *req)
{
    return req->payload;
}

enr_code enr_dps_register_request_decode_csr(const enr_dps_register_request *req, enr_csr **out,
                                             enr_dps_error *dps_err, enr_error *err)
{
    *out = NULL;
    if (req->csr == NULL)
        return fail(dps_err, ENR_DPS_CSR_NOT_DECODABLE,
                    enr_error_set(err, ENR_E_USAGE,
                                  "the request has no CSR (a classic registration)"));
    enr_code rc = enr_csr_parse((const unsigned char *)req->csr, strlen(req->csr), out, err);
    if (rc == ENR_E_NOMEM)
        return fail(dps_err, ENR_DPS_INTERNAL, rc);
    if (rc != ENR_OK) {
        enr_error_prefix(err, "csr");
        return fail(dps_err, ENR_DPS_CSR_NOT_DECODABLE, rc);
    }
    *dps_err = ENR_DPS_OK;
    return ENR_OK;
}
