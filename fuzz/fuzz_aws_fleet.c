/* libFuzzer: AWS fleet provisioning's wire, what any holder of a claim
 * certificate sends. The first byte picks what the rest is:
 *   high bit set      a topic: classified, and tried as a SUBSCRIBE filter;
 *   else bit 0        the payload format (0 JSON, 1 CBOR), and
 *        bits 1..     the call ((b >> 1) % 3: from-CSR, keys, register).
 * Decoding must never crash, leak or read past the input; a refusal always
 * explains itself with a typed reason; what is accepted keeps the header's
 * promises, and the answers we would build from it encode and read back
 * through our own (strict) decoder in the same format. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "enroll/aws_fleet.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* 1: under $aws/certificates/, 2: under $aws/provisioning-templates/, else 0. */
static int namespace_of(const uint8_t *s, size_t n)
{
    static const char CERTS[] = "$aws/certificates/", TEMPLATES[] = "$aws/provisioning-templates/";
    if (n >= sizeof CERTS - 1 && memcmp(s, CERTS, sizeof CERTS - 1) == 0)
        return 1;
    if (n >= sizeof TEMPLATES - 1 && memcmp(s, TEMPLATES, sizeof TEMPLATES - 1) == 0)
        return 2;
    return 0;
}

static void fuzz_topic(const uint8_t *s, size_t n)
{
    enr_aws_fleet_topic t;
    enr_error err = {0};
    enr_aws_fleet_topic_kind k = enr_aws_fleet_topic_classify(s, n, &t, &err);
    if (k != t.kind || k > ENR_AWS_FLEET_TOPIC_INVALID)
        abort();
    if (k == ENR_AWS_FLEET_TOPIC_INVALID && err.message[0] == '\0')
        abort();
    if (k == ENR_AWS_FLEET_TOPIC_REQUEST || k == ENR_AWS_FLEET_TOPIC_ANSWER) {
        if (namespace_of(s, n) == 0)
            abort();
        if (t.call < ENR_AWS_FLEET_CREATE_FROM_CSR || t.call > ENR_AWS_FLEET_REGISTER_THING)
            abort();
        if ((t.call == ENR_AWS_FLEET_REGISTER_THING) != (t.template_name[0] != '\0'))
            abort();
        char answer[ENR_AWS_FLEET_TOPIC_MAX + 1];
        size_t m = enr_aws_fleet_answer_topic(answer, sizeof answer, &t, t.accepted);
        if (m == 0)
            abort();
        enr_aws_fleet_topic a;
        if (enr_aws_fleet_topic_classify((const uint8_t *)answer, m, &a, NULL) != ENR_AWS_FLEET_TOPIC_ANSWER ||
            a.call != t.call || a.format != t.format || a.accepted != t.accepted ||
            strcmp(a.template_name, t.template_name) != 0)
            abort();
        if (!enr_aws_fleet_filter_allowed((const uint8_t *)answer, m, NULL))
            abort();
        /* An answer topic read back is itself: the grammar has one spelling. */
        if (k == ENR_AWS_FLEET_TOPIC_ANSWER && (m != n || memcmp(answer, s, n) != 0))
            abort();
    }
    char name[ENR_AWS_FLEET_TEMPLATE_NAME_MAX + 1];
    if (enr_aws_fleet_filter_allowed(s, n, name)) {
        /* Only ever our answer topics' namespace, and only named templates. */
        int ns = namespace_of(s, n);
        if (ns == 0 || (ns == 2) != (name[0] != '\0') || strlen(name) > ENR_AWS_FLEET_TEMPLATE_NAME_MAX)
            abort();
    }
}

static void must_read_back(enr_aws_fleet_format f, enr_aws_fleet_call as, const uint8_t *bytes, size_t n,
                           const char *token)
{
    enr_aws_fleet_request back;
    enr_error err = {0};
    if (enr_aws_fleet_request_decode(as, f, bytes, n, &back, &err) != ENR_AWS_FLEET_OK)
        abort();
    if (token != NULL && (back.ownership_token == NULL || strcmp(back.ownership_token, token) != 0))
        abort();
    enr_aws_fleet_request_clear(&back);
}

static void check_accepted(enr_aws_fleet_format f, const enr_aws_fleet_request *req)
{
    switch (req->call) {
    case ENR_AWS_FLEET_CREATE_FROM_CSR: {
        size_t n = req->csr_pem != NULL ? strlen(req->csr_pem) : 0;
        if (n == 0 || n > ENR_AWS_FLEET_CSR_MAX || req->ownership_token != NULL || req->parameter_count != 0)
            abort();
        break;
    }
    case ENR_AWS_FLEET_CREATE_KEYS:
        if (req->csr_pem != NULL || req->ownership_token != NULL || req->parameter_count != 0)
            abort();
        break;
    case ENR_AWS_FLEET_REGISTER_THING: {
        size_t n = req->ownership_token != NULL ? strlen(req->ownership_token) : 0;
        if (n == 0 || n > ENR_AWS_FLEET_TOKEN_MAX || req->csr_pem != NULL ||
            req->parameter_count > ENR_AWS_FLEET_PARAMETERS_MAX)
            abort();
        for (size_t i = 0; i < req->parameter_count; i++) {
            size_t nl = strlen(req->parameters[i].name);
            if (nl == 0 || nl > ENR_AWS_FLEET_PARAM_NAME_MAX ||
                strlen(req->parameters[i].value) > ENR_AWS_FLEET_PARAM_VALUE_MAX)
                abort();
        }
        json_t *o = enr_aws_fleet_parameters_json(req);
        if (o == NULL || json_object_size(o) != req->parameter_count) /* names distinct */
            abort();
        json_decref(o);
        break;
    }
    default:
        abort();
    }
    if (req->bad_field != NULL)
        abort();

    /* The answers we would send, read back by our own decoder. */
    uint8_t *out = NULL;
    size_t n = 0;
    enr_aws_fleet_created c = {.certificate_id = "0123456789abcdef",
                               .certificate_pem = req->csr_pem != NULL ? req->csr_pem : "pem",
                               .private_key = req->call == ENR_AWS_FLEET_CREATE_KEYS ? "key" : NULL,
                               .ownership_token = req->ownership_token != NULL ? req->ownership_token : "tok"};
    if (enr_aws_fleet_encode_created(f, &c, &out, &n, NULL) != ENR_OK)
        abort();
    /* The created answer carries certificateOwnershipToken: RegisterThing's
     * own field, so it must come back the same. */
    must_read_back(f, ENR_AWS_FLEET_REGISTER_THING, out, n, c.ownership_token);
    free(out);

    if (req->call == ENR_AWS_FLEET_REGISTER_THING) {
        const char *names[ENR_AWS_FLEET_PARAMETERS_MAX], *values[ENR_AWS_FLEET_PARAMETERS_MAX];
        for (size_t i = 0; i < req->parameter_count; i++) {
            names[i] = req->parameters[i].name;
            values[i] = req->parameters[i].value;
        }
        enr_aws_fleet_registered r = {.thing_name = req->ownership_token, .config_count = req->parameter_count,
                                      .config_names = names, .config_values = values};
        enr_code rc = enr_aws_fleet_encode_registered(f, &r, &out, &n, NULL);
        if (rc == ENR_OK) {
            must_read_back(f, ENR_AWS_FLEET_CREATE_KEYS, out, n, NULL);
            free(out);
        } else if (rc != ENR_E_UNSUPPORTED) { /* only too large may fail */
            abort();
        }
    }
    const char *msg = req->csr_pem != NULL ? req->csr_pem : "message";
    if (enr_aws_fleet_encode_rejected(f, 400, "InvalidPayload", msg, &out, &n, NULL) != ENR_OK)
        abort();
    must_read_back(f, ENR_AWS_FLEET_CREATE_KEYS, out, n, NULL);
    free(out);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    uint8_t sel = data[0];
    const uint8_t *p = data + 1;
    size_t n = size - 1;
    if (sel & 0x80) {
        fuzz_topic(p, n);
        return 0;
    }
    enr_aws_fleet_format f = (sel & 1) ? ENR_AWS_FLEET_CBOR : ENR_AWS_FLEET_JSON;
    enr_aws_fleet_call call = (enr_aws_fleet_call)(ENR_AWS_FLEET_CREATE_FROM_CSR + (sel >> 1) % 3);
    /* A copy of exactly n bytes, so that ASan sees any read past them. */
    uint8_t *copy = malloc(n > 0 ? n : 1);
    if (copy == NULL)
        return 0;
    if (n > 0)
        memcpy(copy, p, n);
    enr_aws_fleet_request req;
    enr_error err = {0};
    enr_aws_fleet_reason r = enr_aws_fleet_request_decode(call, f, copy, n, &req, &err);
    if (r == ENR_AWS_FLEET_OK) {
        check_accepted(f, &req);
    } else {
        if (r > ENR_AWS_FLEET_PARAMETER_TYPE || r == ENR_AWS_FLEET_USAGE || err.code == ENR_OK ||
            err.message[0] == '\0' || req.csr_pem != NULL || req.ownership_token != NULL ||
            req.parameter_count != 0 || req.call != call)
            abort();
    }
    enr_aws_fleet_request_clear(&req);
    free(copy);
    return 0;
}
