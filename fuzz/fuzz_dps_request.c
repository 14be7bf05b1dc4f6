/* The DPS wire readers as enrolld and the device client use them. The first
 * byte picks the reader (low two bits): 0 the register request body, 1 an
 * answer body, 2 a request path, 3 an api-version value and a timestamp; the
 * rest is the input. Whatever a reader accepts must survive the writers and
 * read back the same: that is what the service will send. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "enroll/dps.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static bool same(const char *a, const char *b)
{
    return (a == NULL && b == NULL) || (a != NULL && b != NULL && strcmp(a, b) == 0);
}

static bool is_base64_text(const char *s)
{
    for (; *s != '\0'; s++)
        if (strchr("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/=", *s) == NULL)
            return false;
    return true;
}

static void fuzz_request(const char *body, size_t len)
{
    enr_dps_register_request *req = NULL;
    enr_dps_error dps_err;
    enr_error err;
    if (enr_dps_register_request_parse(body, len, "dev-001", &req, &dps_err, &err) != ENR_OK) {
        if (dps_err == ENR_DPS_OK)
            abort();
        return;
    }
    const char *id = enr_dps_register_request_registration_id(req);
    if (!enr_dps_registration_id_equal(id, "dev-001"))
        abort();
    const char *csr_text = enr_dps_register_request_csr(req);
    if (csr_text != NULL && (csr_text[0] == '\0' || !is_base64_text(csr_text)))
        abort();
    enr_csr *csr = NULL;
    if (enr_dps_register_request_decode_csr(req, &csr, &dps_err, &err) == ENR_OK)
        enr_csr_free(csr);
    /* An accepted payload is within its bound; the writers still carry a
     * payload (a custom allocation's), so one must survive them. */
    const char *payload = enr_dps_register_request_payload(req);
    if (payload != NULL && strlen(payload) > ENR_DPS_PAYLOAD_MAX)
        abort();
    enr_dps_assignment a = {.operation_id = "op-1", .registration_id = id,
                            .payload_json = enr_dps_register_request_payload(req)};
    char *text = NULL;
    if (enr_dps_write_assigned(&a, &text, &err) != ENR_OK)
        abort();
    enr_dps_register_response *r = NULL;
    if (enr_dps_register_response_parse(text, strlen(text), &r, &err) != ENR_OK)
        abort();
    if (!same(enr_dps_response_payload(r), a.payload_json))
        abort();
    enr_dps_register_response_free(r);
    free(text);
    enr_dps_register_request_free(req);
}

static bool substatus_of(const char *name, enr_dps_substatus *out)
{
    for (int s = ENR_DPS_SUBSTATUS_INITIAL_ASSIGNMENT;
         s <= ENR_DPS_SUBSTATUS_REPROVISIONED_TO_INITIAL_ASSIGNMENT; s++) {
        if (strcmp(name, enr_dps_substatus_name((enr_dps_substatus)s)) == 0) {
            *out = (enr_dps_substatus)s;
            return true;
        }
    }
    return false;
}

/* An accepted final answer, written again by enrolld's writer, must read back
 * with the same members. */
static void rewrite_assigned(const enr_dps_register_response *r)
{
    const char *id = enr_dps_response_registration_id(r);
    const char *sub = enr_dps_response_substatus(r);
    const char *created = enr_dps_response_created(r);
    const char *updated = enr_dps_response_last_updated(r);
    enr_dps_assignment a = {0};
    enr_error err;
    if (id == NULL || sub == NULL || created == NULL || updated == NULL ||
        !substatus_of(sub, &a.substatus) ||
        enr_dps_time_parse(created, &a.created_at, &err) != ENR_OK ||
        enr_dps_time_parse(updated, &a.updated_at, &err) != ENR_OK)
        return;
    enr_dps_der chain[ENR_DPS_CHAIN_MAX];
    a.chain_len = enr_dps_response_chain_len(r);
    for (size_t i = 0; i < a.chain_len; i++)
        chain[i].der = enr_dps_response_chain_der(r, i, &chain[i].len);
    a.chain = chain;
    a.operation_id = enr_dps_response_operation_id(r);
    a.registration_id = id;
    a.assigned_hub = enr_dps_response_assigned_hub(r);
    a.device_id = enr_dps_response_device_id(r);
    a.etag = enr_dps_response_etag(r);
    a.payload_json = enr_dps_response_payload(r);
    char *text = NULL;
    if (enr_dps_write_assigned(&a, &text, &err) != ENR_OK) {
        /* The rewrite adds issuedClientCertificate and a PEM trustBundle, so
         * a reply near the size limit may no longer fit; nothing else fails. */
        if (strstr(err.message, "devices read at most") == NULL)
            abort();
        return;
    }
    enr_dps_register_response *again = NULL;
    if (enr_dps_register_response_parse(text, strlen(text), &again, &err) != ENR_OK)
        abort();
    if (!same(enr_dps_response_assigned_hub(again), a.assigned_hub) ||
        !same(enr_dps_response_etag(again), a.etag) ||
        !same(enr_dps_response_payload(again), a.payload_json) ||
        enr_dps_response_chain_len(again) != a.chain_len)
        abort();
    for (size_t i = 0; i < a.chain_len; i++) {
        size_t len = 0;
        const unsigned char *der = enr_dps_response_chain_der(again, i, &len);
        if (len != chain[i].len || memcmp(der, chain[i].der, len) != 0)
            abort();
    }
    enr_dps_register_response_free(again);
    free(text);
}

static void fuzz_response(const char *body, size_t len)
{
    enr_dps_register_response *r = NULL;
    enr_error err;
    if (enr_dps_register_response_parse(body, len, &r, &err) != ENR_OK)
        return;
    if ((enr_dps_response_assigned_hub(r) == NULL) != (enr_dps_response_device_id(r) == NULL))
        abort();
    if (enr_dps_response_status(r) == ENR_DPS_STATUS_ASSIGNED)
        rewrite_assigned(r);
    enr_dps_register_response_free(r);
}

static void fuzz_path(const char *path)
{
    enr_dps_path p;
    enr_dps_error dps_err;
    enr_error err;
    if (enr_dps_path_parse(path, &p, &dps_err, &err) != ENR_OK)
        return;
    char *text = NULL;
    const char *op = p.kind == ENR_DPS_PATH_OPERATION_STATUS ? p.operation_id : "op-1";
    if (enr_dps_write_operation_status_assigning(op, p.registration_id, &text, &err) != ENR_OK)
        abort();
    free(text);
}

static void fuzz_values(const char *value)
{
    enr_dps_api_generation gen;
    enr_error err;
    (void)enr_dps_api_version_check(value, &gen, &err);
    time_t t;
    char again[ENR_DPS_TIME_SIZE];
    if (enr_dps_time_parse(value, &t, &err) == ENR_OK &&
        enr_dps_time_format(t, again, &err) == ENR_OK) {
        time_t t2;
        if (enr_dps_time_parse(again, &t2, &err) != ENR_OK || t2 != t)
            abort();
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    const char *rest = (const char *)data + 1;
    size_t len = size - 1;
    switch (data[0] & 3) {
    case 0: fuzz_request(rest, len); break;
    case 1: fuzz_response(rest, len); break;
    default: {
        char *text = malloc(len + 1); /* the path and value readers take C strings */
        if (text == NULL)
            return 0;
        memcpy(text, rest, len);
        text[len] = '\0';
        if ((data[0] & 3) == 2)
            fuzz_path(text);
        else
            fuzz_values(text);
        free(text);
        break;
    }
    }
    return 0;
}
