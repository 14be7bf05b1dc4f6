/* AWS fleet provisioning's wire (include/enroll/aws_fleet.h): the topic
 * table (requests, answers, wildcards, others, invalid), the SUBSCRIBE
 * filters a claim may get, request decoding in JSON and in CBOR (every
 * JSON case again as CBOR built with libcbor's builders, plus hand-written
 * bytes: indefinite lengths, chunked strings, bad heads), the bad-input
 * table, and answers encoded then judged by independent decoders: jansson
 * for JSON, libcbor's cbor_load for CBOR. Payloads are written with ' for "
 * to stay readable; q() turns them into JSON. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cbor.h>
#include <cmocka.h>
#include <jansson.h>

#include "enroll/aws_fleet.h"

#define CSR_C ENR_AWS_FLEET_CREATE_FROM_CSR
#define KEYS_C ENR_AWS_FLEET_CREATE_KEYS
#define REG_C ENR_AWS_FLEET_REGISTER_THING
#define JSON_F ENR_AWS_FLEET_JSON
#define CBOR_F ENR_AWS_FLEET_CBOR

/* ---- helpers ------------------------------------------------------------------ */

static char *q(const char *s)
{
    char *out = strdup(s);
    assert_non_null(out);
    for (char *p = out; *p != '\0'; p++)
        if (*p == '\'')
            *p = '"';
    return out;
}

/* A JSON value as CBOR, with libcbor's builders (definite lengths). */
static cbor_item_t *cbor_from_json(const json_t *v)
{
    switch (json_typeof(v)) {
    case JSON_OBJECT: {
        cbor_item_t *m = cbor_new_definite_map(json_object_size(v));
        const char *k;
        json_t *item;
        json_object_foreach((json_t *)v, k, item)
        {
            bool ok = cbor_map_add(m, (struct cbor_pair){.key = cbor_move(cbor_build_string(k)),
                                                         .value = cbor_move(cbor_from_json(item))});
            assert_true(ok);
        }
        return m;
    }
    case JSON_ARRAY: {
        cbor_item_t *a = cbor_new_definite_array(json_array_size(v));
        size_t i;
        json_t *item;
        json_array_foreach(v, i, item) assert_true(cbor_array_push(a, cbor_move(cbor_from_json(item))));
        return a;
    }
    case JSON_STRING:
        return cbor_build_stringn(json_string_value(v), json_string_length(v));
    case JSON_INTEGER: {
        json_int_t n = json_integer_value(v);
        return n >= 0 ? cbor_build_uint64((uint64_t)n) : cbor_build_negint64((uint64_t)(-1 - n));
    }
    case JSON_REAL:
        return cbor_build_float8(json_real_value(v));
    case JSON_TRUE:
        return cbor_build_bool(true);
    case JSON_FALSE:
        return cbor_build_bool(false);
    case JSON_NULL:
        return cbor_new_null();
    }
    return NULL;
}

static uint8_t *cbor_bytes(cbor_item_t *item, size_t *len)
{
    uint8_t *buf = NULL;
    size_t cap = 0;
    *len = cbor_serialize_alloc(item, &buf, &cap);
    assert_true(*len > 0);
    cbor_decref(&item);
    return buf;
}

/* The JSON text (with ' for ") as CBOR. */
static uint8_t *cbor_of_json_text(const char *text, size_t *len)
{
    char *json = q(text);
    json_error_t jerr;
    json_t *v = json_loads(json, JSON_DECODE_ANY, &jerr);
    if (v == NULL)
        fail_msg("test bug: %s: %s", json, jerr.text);
    free(json);
    uint8_t *out = cbor_bytes(cbor_from_json(v), len);
    json_decref(v);
    return out;
}

static enr_aws_fleet_reason decode(enr_aws_fleet_call call, enr_aws_fleet_format f, const uint8_t *p, size_t n,
                                   enr_aws_fleet_request *req, enr_error *err)
{
    memset(err, 0, sizeof *err);
    return enr_aws_fleet_request_decode(call, f, p, n, req, err);
}

static const char *param(const enr_aws_fleet_request *r, const char *name)
{
    for (size_t i = 0; i < r->parameter_count; i++)
        if (strcmp(r->parameters[i].name, name) == 0)
            return r->parameters[i].value;
    return NULL;
}

/* ---- topics -------------------------------------------------------------------- */

typedef struct topic_case {
    const char *topic;
    enr_aws_fleet_topic_kind kind;
    enr_aws_fleet_call call;
    enr_aws_fleet_format format;
    bool accepted;
    const char *template_name;
} topic_case;

static void test_topics(void **state)
{
    (void)state;
    const topic_case cases[] = {
        /* requests */
        {"$aws/certificates/create-from-csr/json", ENR_AWS_FLEET_TOPIC_REQUEST, CSR_C, JSON_F, false, ""},
        {"$aws/certificates/create-from-csr/cbor", ENR_AWS_FLEET_TOPIC_REQUEST, CSR_C, CBOR_F, false, ""},
        {"$aws/certificates/create/json", ENR_AWS_FLEET_TOPIC_REQUEST, KEYS_C, JSON_F, false, ""},
        {"$aws/certificates/create/cbor", ENR_AWS_FLEET_TOPIC_REQUEST, KEYS_C, CBOR_F, false, ""},
        {"$aws/provisioning-templates/T1/provision/json", ENR_AWS_FLEET_TOPIC_REQUEST, REG_C, JSON_F, false, "T1"},
        {"$aws/provisioning-templates/a_b-C9/provision/cbor", ENR_AWS_FLEET_TOPIC_REQUEST, REG_C, CBOR_F, false,
         "a_b-C9"},
        {"$aws/provisioning-templates/abcdefghijklmnopqrstuvwxyz0123456789/provision/json",
         ENR_AWS_FLEET_TOPIC_REQUEST, REG_C, JSON_F, false, "abcdefghijklmnopqrstuvwxyz0123456789"},
        /* answers: what a device subscribes to */
        {"$aws/certificates/create-from-csr/json/accepted", ENR_AWS_FLEET_TOPIC_ANSWER, CSR_C, JSON_F, true, ""},
        {"$aws/certificates/create/cbor/rejected", ENR_AWS_FLEET_TOPIC_ANSWER, KEYS_C, CBOR_F, false, ""},
        {"$aws/provisioning-templates/T1/provision/cbor/accepted", ENR_AWS_FLEET_TOPIC_ANSWER, REG_C, CBOR_F, true,
         "T1"},
        /* wildcards: filters, never PUBLISH topics */
        {"$aws/certificates/create-from-csr/json/+", ENR_AWS_FLEET_TOPIC_WILDCARD, 0, 0, false, ""},
        {"$aws/certificates/#", ENR_AWS_FLEET_TOPIC_WILDCARD, 0, 0, false, ""},
        {"$aws/provisioning-templates/+/provision/json", ENR_AWS_FLEET_TOPIC_WILDCARD, 0, 0, false, ""},
        {"a/#", ENR_AWS_FLEET_TOPIC_WILDCARD, 0, 0, false, ""},
        /* others: not ours */
        {"", ENR_AWS_FLEET_TOPIC_OTHER, 0, 0, false, ""},
        {"$aws", ENR_AWS_FLEET_TOPIC_OTHER, 0, 0, false, ""},
        {"$aws/things/t1/shadow/update", ENR_AWS_FLEET_TOPIC_OTHER, 0, 0, false, ""},
        {"$dps/registrations/PUT/iotdps-register/?$rid=1", ENR_AWS_FLEET_TOPIC_OTHER, 0, 0, false, ""},
        {"aws/certificates/create/json", ENR_AWS_FLEET_TOPIC_OTHER, 0, 0, false, ""},
        {"$AWS/certificates/create/json", ENR_AWS_FLEET_TOPIC_OTHER, 0, 0, false, ""},
        {"telemetry", ENR_AWS_FLEET_TOPIC_OTHER, 0, 0, false, ""},
        /* invalid: our namespace, not our grammar */
        {"$aws/certificates", ENR_AWS_FLEET_TOPIC_INVALID, 0, 0, false, ""},
        {"$aws/certificates/", ENR_AWS_FLEET_TOPIC_INVALID, 0, 0, false, ""},
        {"$aws/certificates/create", ENR_AWS_FLEET_TOPIC_INVALID, 0, 0, false, ""},
        {"$aws/certificates/create/", ENR_AWS_FLEET_TOPIC_INVALID, 0, 0, false, ""},
        {"$aws/certificates/create/xml", ENR_AWS_FLEET_TOPIC_INVALID, 0, 0, false, ""},
        {"$aws/certificates/create/JSON", ENR_AWS_FLEET_TOPIC_INVALID, 0, 0, false, ""},
        {"$aws/certificates/create/json/", ENR_AWS_FLEET_TOPIC_INVALID, 0, 0, false, ""},
        {"$aws/certificates/create/json/accepted/x", ENR_AWS_FLEET_TOPIC_INVALID, 0, 0, false, ""},
        {"$aws/certificates/create/json/ACCEPTED", ENR_AWS_FLEET_TOPIC_INVALID, 0, 0, false, ""},
        {"$aws/certificates/delete/json", ENR_AWS_FLEET_TOPIC_INVALID, 0, 0, false, ""},
        {"$aws/certificates/create-from-csr-x/json", ENR_AWS_FLEET_TOPIC_INVALID, 0, 0, false, ""},
        {"$aws/provisioning-templates", ENR_AWS_FLEET_TOPIC_INVALID, 0, 0, false, ""},
        {"$aws/provisioning-templates//provision/json", ENR_AWS_FLEET_TOPIC_INVALID, 0, 0, false, ""},
        {"$aws/provisioning-templates/a.b/provision/json", ENR_AWS_FLEET_TOPIC_INVALID, 0, 0, false, ""},
        {"$aws/provisioning-templates/t 1/provision/json", ENR_AWS_FLEET_TOPIC_INVALID, 0, 0, false, ""},
        {"$aws/provisioning-templates/abcdefghijklmnopqrstuvwxyz0123456789X/provision/json",
         ENR_AWS_FLEET_TOPIC_INVALID, 0, 0, false, ""},
        {"$aws/provisioning-templates/T1", ENR_AWS_FLEET_TOPIC_INVALID, 0, 0, false, ""},
        {"$aws/provisioning-templates/T1/provision", ENR_AWS_FLEET_TOPIC_INVALID, 0, 0, false, ""},
        {"$aws/provisioning-templates/T1/register/json", ENR_AWS_FLEET_TOPIC_INVALID, 0, 0, false, ""},
        {"$aws/provisioning-templates/T1/provision/cbor/accepted/x", ENR_AWS_FLEET_TOPIC_INVALID, 0, 0, false, ""},
        {"$aws/provisioning-templates/T1/provision/json/a/b/c/d", ENR_AWS_FLEET_TOPIC_INVALID, 0, 0, false, ""},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const topic_case *c = &cases[i];
        enr_aws_fleet_topic t;
        enr_error err = {0};
        enr_aws_fleet_topic_kind k =
            enr_aws_fleet_topic_classify((const uint8_t *)c->topic, strlen(c->topic), &t, &err);
        if (k != c->kind || t.kind != k)
            fail_msg("%s: kind %d, expected %d", c->topic, (int)k, (int)c->kind);
        assert_int_equal(t.call, c->call);
        if (k == ENR_AWS_FLEET_TOPIC_REQUEST || k == ENR_AWS_FLEET_TOPIC_ANSWER)
            assert_int_equal(t.format, c->format);
        assert_int_equal(t.accepted, c->accepted);
        assert_string_equal(t.template_name, c->template_name);
        if (k == ENR_AWS_FLEET_TOPIC_INVALID && strstr(err.message, "AWS fleet provisioning topic") == NULL)
            fail_msg("%s: message '%s'", c->topic, err.message);
    }
    /* Not NUL-terminated: only len bytes are read. */
    const char *buf = "$aws/certificates/create/jsonXYZ";
    enr_aws_fleet_topic t;
    assert_int_equal(enr_aws_fleet_topic_classify((const uint8_t *)buf, strlen(buf) - 3, &t, NULL),
                     ENR_AWS_FLEET_TOPIC_REQUEST);
    assert_int_equal(enr_aws_fleet_topic_classify(NULL, 0, &t, NULL), ENR_AWS_FLEET_TOPIC_OTHER);
}

static void test_answer_topics(void **state)
{
    (void)state;
    const enr_aws_fleet_call calls[] = {CSR_C, KEYS_C, REG_C};
    for (size_t c = 0; c < 3; c++)
        for (int f = 0; f < 2; f++) {
            char req[ENR_AWS_FLEET_TOPIC_MAX + 1], ans[ENR_AWS_FLEET_TOPIC_MAX + 1];
            size_t n = enr_aws_fleet_request_topic(req, sizeof req, calls[c], (enr_aws_fleet_format)f,
                                                   "abcdefghijklmnopqrstuvwxyz0123456789");
            assert_true(n > 0 && n == strlen(req));
            enr_aws_fleet_topic t;
            assert_int_equal(enr_aws_fleet_topic_classify((const uint8_t *)req, n, &t, NULL),
                             ENR_AWS_FLEET_TOPIC_REQUEST);
            assert_int_equal(t.call, calls[c]);
            assert_int_equal(t.format, f);
            for (int acc = 0; acc < 2; acc++) {
                size_t m = enr_aws_fleet_answer_topic(ans, sizeof ans, &t, acc != 0);
                assert_true(m > n && m <= ENR_AWS_FLEET_TOPIC_MAX);
                assert_memory_equal(ans, req, n);
                assert_string_equal(ans + n, acc ? "/accepted" : "/rejected");
                enr_aws_fleet_topic a;
                assert_int_equal(enr_aws_fleet_topic_classify((const uint8_t *)ans, m, &a, NULL),
                                 ENR_AWS_FLEET_TOPIC_ANSWER);
                assert_int_equal(a.call, calls[c]);
                assert_int_equal(a.accepted, acc != 0);
                /* the answer's own answer topic is the same */
                char again[ENR_AWS_FLEET_TOPIC_MAX + 1];
                assert_int_equal(enr_aws_fleet_answer_topic(again, sizeof again, &a, acc != 0), m);
                assert_string_equal(again, ans);
                /* and a device may subscribe to it */
                assert_true(enr_aws_fleet_filter_allowed((const uint8_t *)ans, m, NULL));
                /* one byte short: nothing */
                assert_int_equal(enr_aws_fleet_answer_topic(again, m, &a, acc != 0), 0);
            }
        }
    char out[ENR_AWS_FLEET_TOPIC_MAX + 1];
    assert_int_equal(enr_aws_fleet_request_topic(out, sizeof out, REG_C, JSON_F, "bad name"), 0);
    assert_int_equal(enr_aws_fleet_request_topic(out, sizeof out, REG_C, JSON_F, NULL), 0);
    assert_int_equal(enr_aws_fleet_request_topic(out, sizeof out, ENR_AWS_FLEET_NONE, JSON_F, NULL), 0);
    assert_int_equal(enr_aws_fleet_request_topic(out, sizeof out, CSR_C, (enr_aws_fleet_format)7, NULL), 0);
    assert_int_equal(enr_aws_fleet_request_topic(NULL, 0, CSR_C, JSON_F, NULL), 0);
    enr_aws_fleet_topic other = {.kind = ENR_AWS_FLEET_TOPIC_WILDCARD};
    assert_int_equal(enr_aws_fleet_answer_topic(out, sizeof out, &other, true), 0);
    assert_int_equal(enr_aws_fleet_answer_topic(out, sizeof out, NULL, true), 0);
}

static void test_filters(void **state)
{
    (void)state;
    const struct {
        const char *filter;
        bool allowed;
        const char *template_name;
    } cases[] = {
        {"$aws/certificates/create-from-csr/json/accepted", true, ""},
        {"$aws/certificates/create-from-csr/json/rejected", true, ""},
        {"$aws/certificates/create/cbor/accepted", true, ""},
        {"$aws/certificates/create-from-csr/json/+", true, ""},
        {"$aws/certificates/create/+/+", true, ""},
        {"$aws/certificates/+/json/accepted", true, ""},
        {"$aws/certificates/+/+/+", true, ""},
        {"$aws/certificates/#", true, ""},
        {"$aws/certificates/create/#", true, ""},
        {"$aws/certificates/create/json/#", true, ""},
        {"$aws/certificates/create/json/accepted/#", true, ""},
        {"$aws/provisioning-templates/T1/provision/json/accepted", true, "T1"},
        {"$aws/provisioning-templates/T1/provision/cbor/rejected", true, "T1"},
        {"$aws/provisioning-templates/T1/provision/json/+", true, "T1"},
        {"$aws/provisioning-templates/T1/provision/+/accepted", true, "T1"},
        {"$aws/provisioning-templates/T1/provision/json/#", true, "T1"},
        {"$aws/provisioning-templates/T1/provision/#", true, "T1"},
        {"$aws/provisioning-templates/T1/#", true, "T1"},
        {"$aws/provisioning-templates/T1/+/json/accepted", true, "T1"},
        /* refused */
        {"", false, ""},
        {"#", false, ""},
        {"+/#", false, ""},
        {"$aws/#", false, ""},
        {"$aws/+/create/json/accepted", false, ""},
        {"$aws/+/#", false, ""},
        {"$aws/things/t1/shadow/#", false, ""},
        {"$aws/certificates/create/json", false, ""},       /* the request topic */
        {"$aws/certificates/create/+", false, ""},           /* matches the request topic only */
        {"$aws/certificates/create", false, ""},
        {"$aws/certificates/create/xml/+", false, ""},
        {"$aws/certificates/delete/json/accepted", false, ""},
        {"$aws/certificates/create/json/accepted/x", false, ""},
        {"$aws/certificates/create/json/accepted/+", false, ""},
        {"$aws/certificates/create/json/acc+", false, ""},
        {"$aws/certificates/#/json", false, ""},
        {"$aws/certificates/create/json/#/x", false, ""},
        {"$aws/provisioning-templates/#", false, ""},
        {"$aws/provisioning-templates/+/provision/json/accepted", false, ""},
        {"$aws/provisioning-templates/bad.name/provision/json/accepted", false, ""},
        {"$aws/provisioning-templates/T1/provision/json", false, ""},
        {"$aws/provisioning-templates/T1", false, ""},
        {"$aws/provisioning-templates/T1/provision/json/accepted/x", false, ""},
        {"$aws/provisioning-templates/T1/register/json/accepted", false, ""},
        {"$aws/certificates/create/json/accepted/a/b/c/d/e", false, ""},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char name[ENR_AWS_FLEET_TEMPLATE_NAME_MAX + 1] = "junk";
        bool ok = enr_aws_fleet_filter_allowed((const uint8_t *)cases[i].filter, strlen(cases[i].filter), name);
        if (ok != cases[i].allowed)
            fail_msg("%s: %s, expected %s", cases[i].filter, ok ? "granted" : "refused",
                     cases[i].allowed ? "granted" : "refused");
        assert_string_equal(name, cases[i].template_name);
        assert_int_equal(enr_aws_fleet_filter_allowed((const uint8_t *)cases[i].filter, strlen(cases[i].filter),
                                                      NULL),
                         ok);
    }
    assert_false(enr_aws_fleet_filter_allowed(NULL, 0, NULL));
}

/* ---- requests ------------------------------------------------------------------ */

typedef struct req_case {
    enr_aws_fleet_call call;
    const char *json;              /* ' for " */
    enr_aws_fleet_reason reason;
    const char *csr;               /* expected, for OK */
    const char *token;
    size_t params;
    const char *bad_field;
    const char *message;           /* a substring the refusal names */
} req_case;

/* Cases meaningful in both formats: each is run as JSON and as CBOR. */
static const req_case BOTH[] = {
    {CSR_C, "{'certificateSigningRequest':'-----BEGIN CERTIFICATE REQUEST-----\\nMIIB\\n-----END CERTIFICATE "
            "REQUEST-----\\n'}",
     ENR_AWS_FLEET_OK, "-----BEGIN CERTIFICATE REQUEST-----\nMIIB\n-----END CERTIFICATE REQUEST-----\n", NULL, 0,
     NULL, NULL},
    /* the v1 client's templateName, and any other key, is ignored */
    {CSR_C, "{'templateName':'T1','certificateSigningRequest':'PEM','x':{'y':[1,2,{'z':null}]}}", ENR_AWS_FLEET_OK,
     "PEM", NULL, 0, NULL, NULL},
    {CSR_C, "{'certificateSigningRequest':'caf\\u00e9'}", ENR_AWS_FLEET_OK, "caf\xc3\xa9", NULL, 0, NULL, NULL},
    {KEYS_C, "{}", ENR_AWS_FLEET_OK, NULL, NULL, 0, NULL, NULL},
    {KEYS_C, "{'templateName':'T1','certificateSigningRequest':42}", ENR_AWS_FLEET_OK, NULL, NULL, 0, NULL, NULL},
    {REG_C, "{'certificateOwnershipToken':'tok','parameters':{'SerialNumber':'S1','DeviceLocation':'Seattle'}}",
     ENR_AWS_FLEET_OK, NULL, "tok", 2, NULL, NULL},
    {REG_C, "{'certificateOwnershipToken':'tok'}", ENR_AWS_FLEET_OK, NULL, "tok", 0, NULL, NULL},
    {REG_C, "{'certificateOwnershipToken':'tok','parameters':{}}", ENR_AWS_FLEET_OK, NULL, "tok", 0, NULL, NULL},
    {REG_C, "{'certificateOwnershipToken':'tok','parameters':null}", ENR_AWS_FLEET_OK, NULL, "tok", 0, NULL, NULL},
    {REG_C, "{'parameters':{'a':''},'templateName':'x','certificateOwnershipToken':'tok'}", ENR_AWS_FLEET_OK, NULL,
     "tok", 1, NULL, NULL},
    /* the CSR call's key means nothing to RegisterThing, and vice versa */
    {REG_C, "{'certificateSigningRequest':'PEM','certificateOwnershipToken':'t'}", ENR_AWS_FLEET_OK, NULL, "t", 0,
     NULL, NULL},
    {CSR_C, "{'certificateSigningRequest':'PEM','certificateOwnershipToken':7,'parameters':5}", ENR_AWS_FLEET_OK,
     "PEM", NULL, 0, NULL, NULL},
    /* refusals */
    {CSR_C, "{}", ENR_AWS_FLEET_MISSING_FIELD, NULL, NULL, 0, "certificateSigningRequest",
     "certificateSigningRequest is missing"},
    {CSR_C, "{'certificatesigningrequest':'PEM'}", ENR_AWS_FLEET_MISSING_FIELD, NULL, NULL, 0,
     "certificateSigningRequest", NULL},
    {CSR_C, "{'certificateSigningRequest':''}", ENR_AWS_FLEET_EMPTY_FIELD, NULL, NULL, 0,
     "certificateSigningRequest", "is empty"},
    {CSR_C, "{'certificateSigningRequest':42}", ENR_AWS_FLEET_WRONG_TYPE, NULL, NULL, 0,
     "certificateSigningRequest", "not a"},
    {CSR_C, "{'certificateSigningRequest':null}", ENR_AWS_FLEET_WRONG_TYPE, NULL, NULL, 0,
     "certificateSigningRequest", "null"},
    {CSR_C, "{'certificateSigningRequest':['PEM']}", ENR_AWS_FLEET_WRONG_TYPE, NULL, NULL, 0,
     "certificateSigningRequest", "an array"},
    {CSR_C, "{'certificateSigningRequest':{'pem':'x'}}", ENR_AWS_FLEET_WRONG_TYPE, NULL, NULL, 0,
     "certificateSigningRequest", NULL},
    /* floats: libcbor's cbor_is_null asserts on them (the fuzzer found it) */
    {CSR_C, "{'certificateSigningRequest':1.5}", ENR_AWS_FLEET_WRONG_TYPE, NULL, NULL, 0,
     "certificateSigningRequest", "not a"},
    {REG_C, "{'certificateOwnershipToken':'t','parameters':2.5}", ENR_AWS_FLEET_WRONG_TYPE, NULL, NULL, 0,
     "parameters", NULL},
    {REG_C, "{'certificateOwnershipToken':'t','parameters':{'a':-0.5}}", ENR_AWS_FLEET_PARAMETER_TYPE, NULL, NULL, 0,
     "parameters", NULL},
    {REG_C, "{'certificateOwnershipToken':2.0}", ENR_AWS_FLEET_WRONG_TYPE, NULL, NULL, 0, NULL, NULL},
    {CSR_C, "['certificateSigningRequest','PEM']", ENR_AWS_FLEET_NOT_OBJECT, NULL, NULL, 0, NULL, "an array"},
    {CSR_C, "'PEM'", ENR_AWS_FLEET_NOT_OBJECT, NULL, NULL, 0, NULL, NULL},
    {KEYS_C, "42", ENR_AWS_FLEET_NOT_OBJECT, NULL, NULL, 0, NULL, NULL},
    {KEYS_C, "null", ENR_AWS_FLEET_NOT_OBJECT, NULL, NULL, 0, NULL, NULL},
    {REG_C, "{'parameters':{'a':'b'}}", ENR_AWS_FLEET_MISSING_FIELD, NULL, NULL, 0, "certificateOwnershipToken",
     "certificateOwnershipToken is missing"},
    {REG_C, "{'certificateOwnershipToken':''}", ENR_AWS_FLEET_EMPTY_FIELD, NULL, NULL, 0,
     "certificateOwnershipToken", NULL},
    {REG_C, "{'certificateOwnershipToken':true}", ENR_AWS_FLEET_WRONG_TYPE, NULL, NULL, 0,
     "certificateOwnershipToken", "a boolean"},
    {REG_C, "{'certificateOwnershipToken':'t','parameters':['a','b']}", ENR_AWS_FLEET_WRONG_TYPE, NULL, NULL, 0,
     "parameters", "parameters is an array"},
    {REG_C, "{'certificateOwnershipToken':'t','parameters':'a=b'}", ENR_AWS_FLEET_WRONG_TYPE, NULL, NULL, 0,
     "parameters", NULL},
    {REG_C, "{'certificateOwnershipToken':'t','parameters':{'SerialNumber':12}}", ENR_AWS_FLEET_PARAMETER_TYPE,
     NULL, NULL, 0, "parameters", "not a"},
    {REG_C, "{'certificateOwnershipToken':'t','parameters':{'a':'b','On':true}}", ENR_AWS_FLEET_PARAMETER_TYPE,
     NULL, NULL, 0, "parameters", "a boolean"},
    {REG_C, "{'certificateOwnershipToken':'t','parameters':{'a':null}}", ENR_AWS_FLEET_PARAMETER_TYPE, NULL, NULL,
     0, "parameters", "null"},
    {REG_C, "{'certificateOwnershipToken':'t','parameters':{'a':{'b':'c'}}}", ENR_AWS_FLEET_PARAMETER_TYPE, NULL,
     NULL, 0, "parameters", NULL},
    {REG_C, "{'certificateOwnershipToken':'t','parameters':{'':'x'}}", ENR_AWS_FLEET_PARAMETER_NAME, NULL, NULL, 0,
     "parameters", NULL},
    /* nesting: 8 levels are allowed (the top object is 1), 9 are not */
    {KEYS_C, "{'a':[[[[[[['x']]]]]]]}", ENR_AWS_FLEET_OK, NULL, NULL, 0, NULL, NULL},
    {KEYS_C, "{'a':[[[[[[[['x']]]]]]]]}", ENR_AWS_FLEET_TOO_DEEP, NULL, NULL, 0, NULL, "deeper than 8"},
    {CSR_C, "{'x':{'x':{'x':{'x':{'x':{'x':{'x':{'x':{}}}}}}}},'certificateSigningRequest':'P'}",
     ENR_AWS_FLEET_TOO_DEEP, NULL, NULL, 0, NULL, NULL},
};

static void check_case(const req_case *c, enr_aws_fleet_format f, const uint8_t *p, size_t n)
{
    enr_aws_fleet_request req;
    enr_error err;
    enr_aws_fleet_reason r = decode(c->call, f, p, n, &req, &err);
    if (r != c->reason)
        fail_msg("%s (%s): %s, expected %s: %s", c->json, f == JSON_F ? "json" : "cbor", enr_aws_fleet_reason_name(r),
                 enr_aws_fleet_reason_name(c->reason), err.message);
    assert_int_equal(req.call, c->call);
    if (r == ENR_AWS_FLEET_OK) {
        assert_null(req.bad_field);
        if (c->csr != NULL)
            assert_string_equal(req.csr_pem, c->csr);
        else
            assert_null(req.csr_pem);
        if (c->token != NULL)
            assert_string_equal(req.ownership_token, c->token);
        else
            assert_null(req.ownership_token);
        assert_int_equal(req.parameter_count, c->params);
    } else {
        assert_int_not_equal(err.code, ENR_OK);
        assert_true(strlen(err.message) > 0);
        assert_null(req.csr_pem);
        assert_null(req.ownership_token);
        assert_int_equal(req.parameter_count, 0);
        if (c->bad_field != NULL)
            assert_string_equal(req.bad_field, c->bad_field);
        if (c->message != NULL && strstr(err.message, c->message) == NULL)
            fail_msg("%s (%s): message '%s' lacks '%s'", c->json, f == JSON_F ? "json" : "cbor", err.message,
                     c->message);
    }
    enr_aws_fleet_request_clear(&req);
    assert_null(req.parameters);
}

static void test_decode_both_formats(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof BOTH / sizeof BOTH[0]; i++) {
        char *json = q(BOTH[i].json);
        check_case(&BOTH[i], JSON_F, (const uint8_t *)json, strlen(json));
        free(json);
        size_t n = 0;
        uint8_t *cbor = cbor_of_json_text(BOTH[i].json, &n);
        check_case(&BOTH[i], CBOR_F, cbor, n);
        free(cbor);
    }
}

static void test_decode_values(void **state)
{
    (void)state;
    char *json = q("{'certificateOwnershipToken':'tok-1','parameters':{'SerialNumber':'S\\u00fc1','Loc':'','Z':'z'},"
                   "'templateName':'T1'}");
    const char *formats[] = {"json", "cbor"};
    for (int f = 0; f < 2; f++) {
        size_t n = strlen(json);
        uint8_t *p = f == 0 ? (uint8_t *)strdup(json) : cbor_of_json_text(json, &n);
        enr_aws_fleet_request req;
        enr_error err;
        assert_int_equal(decode(REG_C, (enr_aws_fleet_format)f, p, n, &req, &err), ENR_AWS_FLEET_OK);
        assert_string_equal(req.ownership_token, "tok-1");
        assert_int_equal(req.parameter_count, 3);
        /* in the order sent */
        assert_string_equal(req.parameters[0].name, "SerialNumber");
        assert_string_equal(req.parameters[1].name, "Loc");
        assert_string_equal(req.parameters[2].name, "Z");
        assert_string_equal(param(&req, "SerialNumber"), "S\xc3\xbc" "1");
        assert_string_equal(param(&req, "Loc"), "");
        /* what the template evaluator takes */
        json_t *o = enr_aws_fleet_parameters_json(&req);
        assert_non_null(o);
        assert_int_equal(json_object_size(o), 3);
        assert_string_equal(json_string_value(json_object_get(o, "Z")), "z");
        json_decref(o);
        enr_aws_fleet_request_clear(&req);
        free(p);
        (void)formats;
    }
    free(json);
    json_t *empty = enr_aws_fleet_parameters_json(NULL);
    assert_int_equal(json_object_size(empty), 0);
    json_decref(empty);
}

/* JSON-only refusals: what only text can get wrong. */
static void test_decode_json_only(void **state)
{
    (void)state;
    const struct {
        enr_aws_fleet_call call;
        const char *text; /* raw: no ' substitution */
        enr_aws_fleet_reason reason;
    } cases[] = {
        {CSR_C, "{\"certificateSigningRequest\":\"a\",\"certificateSigningRequest\":\"b\"}",
         ENR_AWS_FLEET_DUPLICATE_KEY},
        {REG_C, "{\"certificateOwnershipToken\":\"t\",\"parameters\":{\"a\":\"1\",\"a\":\"2\"}}",
         ENR_AWS_FLEET_DUPLICATE_KEY},
        {KEYS_C, "{\"x\":{\"y\":1,\"y\":2}}", ENR_AWS_FLEET_DUPLICATE_KEY},
        {CSR_C, "{\"certificateSigningRequest\":\"a\\u0000b\"}", ENR_AWS_FLEET_BAD_STRING},
        {CSR_C, "{\"certificateSigningRequest\":\"\xff\"}", ENR_AWS_FLEET_BAD_STRING},
        {CSR_C, "{\"certificateSigningRequest\":\"PEM\"", ENR_AWS_FLEET_MALFORMED},
        {CSR_C, "{\"certificateSigningRequest\":\"PEM\"} x", ENR_AWS_FLEET_MALFORMED},
        {CSR_C, "{certificateSigningRequest:\"PEM\"}", ENR_AWS_FLEET_MALFORMED},
        {KEYS_C, "{}{}", ENR_AWS_FLEET_MALFORMED},
        {KEYS_C, " ", ENR_AWS_FLEET_MALFORMED},
        {REG_C, "{\"certificateOwnershipToken\":\"t\",\"parameters\":{\"a\":1e999}}", ENR_AWS_FLEET_MALFORMED},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        enr_aws_fleet_request req;
        enr_error err;
        enr_aws_fleet_reason r =
            decode(cases[i].call, JSON_F, (const uint8_t *)cases[i].text, strlen(cases[i].text), &req, &err);
        if (r != cases[i].reason)
            fail_msg("%s: %s, expected %s: %s", cases[i].text, enr_aws_fleet_reason_name(r),
                     enr_aws_fleet_reason_name(cases[i].reason), err.message);
        assert_int_equal(err.code, ENR_E_PARSE);
        enr_aws_fleet_request_clear(&req);
    }
    /* Deep JSON: jansson's own limit or ours, never a crash. */
    size_t depth = 5000;
    char *deep = malloc(2 * depth + 8);
    assert_non_null(deep);
    size_t at = 0;
    deep[at++] = '{';
    memcpy(deep + at, "\"a\":", 4);
    at += 4;
    for (size_t i = 0; i < depth; i++)
        deep[at++] = '[';
    for (size_t i = 0; i < depth; i++)
        deep[at++] = ']';
    deep[at++] = '}';
    enr_aws_fleet_request req;
    enr_error err;
    assert_int_equal(decode(KEYS_C, JSON_F, (const uint8_t *)deep, at, &req, &err), ENR_AWS_FLEET_TOO_DEEP);
    free(deep);
}

/* Hand-written CBOR: what builders do not make. */
typedef struct cbor_case {
    const char *name;
    enr_aws_fleet_call call;
    const uint8_t *bytes;
    size_t len;
    enr_aws_fleet_reason reason;
    const char *value;   /* OK: the CSR or token decoded */
    size_t params;
} cbor_case;

#define B(...) (const uint8_t[]){__VA_ARGS__}, sizeof((const uint8_t[]){__VA_ARGS__})

/* "certificateSigningRequest" as a text string head + bytes */
#define K_CSR 0x78, 0x19, 'c', 'e', 'r', 't', 'i', 'f', 'i', 'c', 'a', 't', 'e', 'S', 'i', 'g', 'n', 'i', 'n', 'g', \
              'R', 'e', 'q', 'u', 'e', 's', 't'
/* "certificateOwnershipToken" */
#define K_TOK 0x78, 0x19, 'c', 'e', 'r', 't', 'i', 'f', 'i', 'c', 'a', 't', 'e', 'O', 'w', 'n', 'e', 'r', 's', 'h', \
              'i', 'p', 'T', 'o', 'k', 'e', 'n'
/* "parameters" */
#define K_PAR 0x6a, 'p', 'a', 'r', 'a', 'm', 'e', 't', 'e', 'r', 's'

static void test_decode_cbor_bytes(void **state)
{
    (void)state;
    const cbor_case cases[] = {
        {"definite map, definite text", CSR_C, B(0xa1, K_CSR, 0x63, 'P', 'E', 'M'), ENR_AWS_FLEET_OK, "PEM", 0},
        {"indefinite map", CSR_C, B(0xbf, K_CSR, 0x63, 'P', 'E', 'M', 0xff), ENR_AWS_FLEET_OK, "PEM", 0},
        {"chunked value", CSR_C, B(0xa1, K_CSR, 0x7f, 0x62, 'P', 'E', 0x61, 'M', 0x60, 0xff), ENR_AWS_FLEET_OK, "PEM",
         0},
        {"chunked key", CSR_C,
         B(0xa1, 0x7f, 0x6b, 'c', 'e', 'r', 't', 'i', 'f', 'i', 'c', 'a', 't', 'e', 0x6e, 'S', 'i', 'g', 'n', 'i', 'n',
           'g', 'R', 'e', 'q', 'u', 'e', 's', 't', 0xff, 0x61, 'P'),
         ENR_AWS_FLEET_OK, "P", 0},
        {"empty chunked string", CSR_C, B(0xa1, K_CSR, 0x7f, 0xff), ENR_AWS_FLEET_EMPTY_FIELD, NULL, 0},
        {"indefinite parameters", REG_C,
         B(0xbf, K_TOK, 0x61, 't', K_PAR, 0xbf, 0x61, 'a', 0x61, 'b', 0x7f, 0x61, 'c', 0xff, 0x60, 0xff, 0xff),
         ENR_AWS_FLEET_OK, "t", 2},
        {"ignored key with tags, floats, bytes", KEYS_C,
         B(0xa1, 0x61, 'x', 0x83, 0xc1, 0x1a, 0, 0, 0, 1, 0xf9, 0x3c, 0x00, 0x5f, 0x41, 1, 0xff), ENR_AWS_FLEET_OK,
         NULL, 0},
        {"empty map", KEYS_C, B(0xa0), ENR_AWS_FLEET_OK, NULL, 0},
        {"self-described CBOR", CSR_C, B(0xd9, 0xd9, 0xf7, 0xa1, K_CSR, 0x61, 'P'), ENR_AWS_FLEET_OK, "P", 0},
        {"other tag on the document", CSR_C, B(0xd8, 0x20, 0xa1, K_CSR, 0x61, 'P'), ENR_AWS_FLEET_NOT_OBJECT, NULL,
         0},
        {"empty payload, create keys", KEYS_C, (const uint8_t *)"", 0, ENR_AWS_FLEET_OK, NULL, 0},
        /* types */
        {"byte string CSR", CSR_C, B(0xa1, K_CSR, 0x43, 'P', 'E', 'M'), ENR_AWS_FLEET_WRONG_TYPE, NULL, 0},
        {"tagged CSR", CSR_C, B(0xa1, K_CSR, 0xd8, 0x20, 0x63, 'P', 'E', 'M'), ENR_AWS_FLEET_WRONG_TYPE, NULL, 0},
        {"half-float parameters", REG_C, B(0xa2, K_TOK, 0x61, 't', K_PAR, 0xf9, 0x3c, 0x00),
         ENR_AWS_FLEET_WRONG_TYPE, NULL, 0},
        {"undefined parameters", REG_C, B(0xa2, K_TOK, 0x61, 't', K_PAR, 0xf7), ENR_AWS_FLEET_WRONG_TYPE, NULL, 0},
        {"null parameters", REG_C, B(0xa2, K_TOK, 0x61, 't', K_PAR, 0xf6), ENR_AWS_FLEET_OK, "t", 0},
        {"float key", KEYS_C, B(0xa1, 0xfb, 0, 0, 0, 0, 0, 0, 0, 0, 0x01), ENR_AWS_FLEET_KEY_TYPE, NULL, 0},
        {"integer key", KEYS_C, B(0xa1, 0x01, 0x02), ENR_AWS_FLEET_KEY_TYPE, NULL, 0},
        {"byte string key", CSR_C, B(0xa1, 0x41, 'k', 0x61, 'v'), ENR_AWS_FLEET_KEY_TYPE, NULL, 0},
        {"byte string parameter", REG_C, B(0xa2, K_TOK, 0x61, 't', K_PAR, 0xa1, 0x61, 'a', 0x41, 'b'),
         ENR_AWS_FLEET_PARAMETER_TYPE, NULL, 0},
        {"integer parameter name", REG_C, B(0xa2, K_TOK, 0x61, 't', K_PAR, 0xa1, 0x01, 0x61, 'b'),
         ENR_AWS_FLEET_KEY_TYPE, NULL, 0},
        {"not UTF-8", CSR_C, B(0xa1, K_CSR, 0x62, 0xc3, 0x28), ENR_AWS_FLEET_BAD_STRING, NULL, 0},
        {"NUL in text", CSR_C, B(0xa1, K_CSR, 0x63, 'a', 0, 'b'), ENR_AWS_FLEET_BAD_STRING, NULL, 0},
        {"NUL in parameter", REG_C, B(0xa2, K_TOK, 0x61, 't', K_PAR, 0xa1, 0x61, 'a', 0x61, 0),
         ENR_AWS_FLEET_BAD_STRING, NULL, 0},
        {"array document", CSR_C, B(0x80), ENR_AWS_FLEET_NOT_OBJECT, NULL, 0},
        {"text document", CSR_C, B(0x61, 'x'), ENR_AWS_FLEET_NOT_OBJECT, NULL, 0},
        {"empty payload, CSR", CSR_C, (const uint8_t *)"", 0, ENR_AWS_FLEET_NOT_OBJECT, NULL, 0},
        /* duplicates: definite, indefinite, a chunked twin, in parameters */
        {"duplicate key", CSR_C, B(0xa2, K_CSR, 0x61, 'a', K_CSR, 0x61, 'b'), ENR_AWS_FLEET_DUPLICATE_KEY, NULL, 0},
        {"duplicate ignored key", KEYS_C, B(0xbf, 0x61, 'x', 0x01, 0x61, 'x', 0x02, 0xff),
         ENR_AWS_FLEET_DUPLICATE_KEY, NULL, 0},
        {"duplicate, one chunked", KEYS_C, B(0xa2, 0x62, 'a', 'b', 0x01, 0x7f, 0x61, 'a', 0x61, 'b', 0xff, 0x02),
         ENR_AWS_FLEET_DUPLICATE_KEY, NULL, 0},
        {"duplicate parameter", REG_C,
         B(0xa2, K_TOK, 0x61, 't', K_PAR, 0xa2, 0x61, 'a', 0x61, '1', 0x61, 'a', 0x61, '2'),
         ENR_AWS_FLEET_DUPLICATE_KEY, NULL, 0},
        /* well-formedness */
        {"truncated head", CSR_C, B(0xa1, 0x78), ENR_AWS_FLEET_MALFORMED, NULL, 0},
        {"truncated string", CSR_C, B(0xa1, K_CSR, 0x63, 'P', 'E'), ENR_AWS_FLEET_MALFORMED, NULL, 0},
        {"truncated map", CSR_C, B(0xa2, K_CSR, 0x61, 'P'), ENR_AWS_FLEET_MALFORMED, NULL, 0},
        {"unterminated indefinite map", CSR_C, B(0xbf, K_CSR, 0x61, 'P'), ENR_AWS_FLEET_MALFORMED, NULL, 0},
        {"key without value", KEYS_C, B(0xbf, 0x61, 'x', 0xff), ENR_AWS_FLEET_MALFORMED, NULL, 0},
        {"trailing bytes", KEYS_C, B(0xa0, 0x00), ENR_AWS_FLEET_MALFORMED, NULL, 0},
        {"two maps", KEYS_C, B(0xa0, 0xa0), ENR_AWS_FLEET_MALFORMED, NULL, 0},
        {"lone break", KEYS_C, B(0xff), ENR_AWS_FLEET_MALFORMED, NULL, 0},
        {"break in definite map", KEYS_C, B(0xa1, 0x61, 'x', 0xff), ENR_AWS_FLEET_MALFORMED, NULL, 0},
        {"integer chunk", CSR_C, B(0xa1, K_CSR, 0x7f, 0x01, 0xff), ENR_AWS_FLEET_MALFORMED, NULL, 0},
        {"byte chunk in text", CSR_C, B(0xa1, K_CSR, 0x7f, 0x41, 'P', 0xff), ENR_AWS_FLEET_MALFORMED, NULL, 0},
        {"nested indefinite chunk", CSR_C, B(0xa1, K_CSR, 0x7f, 0x7f, 0xff, 0xff), ENR_AWS_FLEET_MALFORMED, NULL, 0},
        {"reserved additional info", KEYS_C, B(0xa1, 0x61, 'x', 0x1c), ENR_AWS_FLEET_MALFORMED, NULL, 0},
        /* unassigned simple values: well-formed, but libcbor 0.8 refuses them */
        {"simple value 16", KEYS_C, B(0xa1, 0x61, 'x', 0xf0), ENR_AWS_FLEET_MALFORMED, NULL, 0},
        {"simple value 32", KEYS_C, B(0xa1, 0x61, 'x', 0xf8, 0x20), ENR_AWS_FLEET_MALFORMED, NULL, 0},
        {"undefined and float32 ignored", KEYS_C, B(0xa2, 0x61, 'x', 0xf7, 0x61, 'y', 0xfa, 0, 0, 0, 0),
         ENR_AWS_FLEET_OK, NULL, 0},
        /* sizes declared before they are sent */
        {"map of 2^32 entries", KEYS_C, B(0xba, 0xff, 0xff, 0xff, 0xff), ENR_AWS_FLEET_TOO_MANY_ITEMS, NULL, 0},
        {"map of 2^64-1 entries", KEYS_C, B(0xbb, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff),
         ENR_AWS_FLEET_TOO_MANY_ITEMS, NULL, 0},
        {"array of 2^32 items", KEYS_C, B(0xa1, 0x61, 'x', 0x9a, 0xff, 0xff, 0xff, 0xff),
         ENR_AWS_FLEET_TOO_MANY_ITEMS, NULL, 0},
        {"string of 2^32 bytes", KEYS_C, B(0xa1, 0x61, 'x', 0x7a, 0xff, 0xff, 0xff, 0xff, 'a'),
         ENR_AWS_FLEET_MALFORMED, NULL, 0},
        /* nesting: tags count */
        {"deep arrays", KEYS_C, B(0xa1, 0x61, 'x', 0x81, 0x81, 0x81, 0x81, 0x81, 0x81, 0x81, 0x81, 0x00),
         ENR_AWS_FLEET_TOO_DEEP, NULL, 0},
        {"deep tags", KEYS_C, B(0xa1, 0x61, 'x', 0xc1, 0xc1, 0xc1, 0xc1, 0xc1, 0xc1, 0xc1, 0xc1, 0x00),
         ENR_AWS_FLEET_TOO_DEEP, NULL, 0},
        {"deep indefinite arrays", KEYS_C, B(0xa1, 0x61, 'x', 0x9f, 0x9f, 0x9f, 0x9f, 0x9f, 0x9f, 0x9f, 0x9f),
         ENR_AWS_FLEET_TOO_DEEP, NULL, 0},
        {"7 arrays deep is fine", KEYS_C, B(0xa1, 0x61, 'x', 0x81, 0x81, 0x81, 0x81, 0x81, 0x81, 0x81, 0x00),
         ENR_AWS_FLEET_OK, NULL, 0},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const cbor_case *c = &cases[i];
        enr_aws_fleet_request req;
        enr_error err;
        enr_aws_fleet_reason r = decode(c->call, CBOR_F, c->bytes, c->len, &req, &err);
        if (r != c->reason)
            fail_msg("%s: %s, expected %s: %s", c->name, enr_aws_fleet_reason_name(r),
                     enr_aws_fleet_reason_name(c->reason), err.message);
        if (r == ENR_AWS_FLEET_OK) {
            if (c->call == CSR_C)
                assert_string_equal(req.csr_pem, c->value);
            if (c->call == REG_C)
                assert_string_equal(req.ownership_token, c->value);
            assert_int_equal(req.parameter_count, c->params);
        } else {
            assert_true(strlen(err.message) > 0);
        }
        enr_aws_fleet_request_clear(&req);
    }
}

/* The bounds, at and over each limit, in both formats. */
static char *repeat(char ch, size_t n)
{
    char *s = malloc(n + 1);
    assert_non_null(s);
    memset(s, ch, n);
    s[n] = '\0';
    return s;
}

static void expect_both(enr_aws_fleet_call call, json_t *doc, enr_aws_fleet_reason reason, const char *what)
{
    if (doc == NULL)
        fail_msg("test bug: json_pack failed for %s", what);
    char *text = json_dumps(doc, JSON_COMPACT);
    assert_non_null(text);
    size_t n = 0;
    uint8_t *cbor = cbor_bytes(cbor_from_json(doc), &n);
    for (int f = 0; f < 2; f++) {
        enr_aws_fleet_request req;
        enr_error err;
        enr_aws_fleet_reason r = f == 0 ? decode(call, JSON_F, (const uint8_t *)text, strlen(text), &req, &err)
                                        : decode(call, CBOR_F, cbor, n, &req, &err);
        if (r != reason)
            fail_msg("%s (%s): %s, expected %s: %s", what, f ? "cbor" : "json", enr_aws_fleet_reason_name(r),
                     enr_aws_fleet_reason_name(reason), err.message);
        enr_aws_fleet_request_clear(&req);
    }
    free(text);
    free(cbor);
    json_decref(doc);
}

static void test_bounds(void **state)
{
    (void)state;
    char *s = repeat('A', ENR_AWS_FLEET_CSR_MAX);
    expect_both(CSR_C, json_pack("{ss}", "certificateSigningRequest", s), ENR_AWS_FLEET_OK, "CSR at its bound");
    free(s);
    s = repeat('A', ENR_AWS_FLEET_CSR_MAX + 1);
    expect_both(CSR_C, json_pack("{ss}", "certificateSigningRequest", s), ENR_AWS_FLEET_FIELD_TOO_LONG, "CSR over");
    free(s);
    s = repeat('t', ENR_AWS_FLEET_TOKEN_MAX);
    expect_both(REG_C, json_pack("{ss}", "certificateOwnershipToken", s), ENR_AWS_FLEET_OK, "token at its bound");
    free(s);
    s = repeat('t', ENR_AWS_FLEET_TOKEN_MAX + 1);
    expect_both(REG_C, json_pack("{ss}", "certificateOwnershipToken", s), ENR_AWS_FLEET_FIELD_TOO_LONG,
                "token over");
    free(s);

    for (int over = 0; over < 2; over++) {
        json_t *params = json_object();
        for (int i = 0; i < ENR_AWS_FLEET_PARAMETERS_MAX + over; i++) {
            char name[16];
            snprintf(name, sizeof name, "p%d", i);
            json_object_set_new(params, name, json_string("v"));
        }
        expect_both(REG_C, json_pack("{ss so}", "certificateOwnershipToken", "t", "parameters", params),
                    over ? ENR_AWS_FLEET_TOO_MANY_PARAMETERS : ENR_AWS_FLEET_OK, "parameter count");
    }
    s = repeat('n', ENR_AWS_FLEET_PARAM_NAME_MAX);
    expect_both(REG_C, json_pack("{ss s{ss}}", "certificateOwnershipToken", "t", "parameters", s, "v"),
                ENR_AWS_FLEET_OK, "parameter name at its bound");
    free(s);
    s = repeat('n', ENR_AWS_FLEET_PARAM_NAME_MAX + 1);
    expect_both(REG_C, json_pack("{ss s{ss}}", "certificateOwnershipToken", "t", "parameters", s, "v"),
                ENR_AWS_FLEET_PARAMETER_NAME, "parameter name over");
    free(s);
    s = repeat('v', ENR_AWS_FLEET_PARAM_VALUE_MAX);
    expect_both(REG_C, json_pack("{ss s{ss}}", "certificateOwnershipToken", "t", "parameters", "n", s),
                ENR_AWS_FLEET_OK, "parameter value at its bound");
    free(s);
    s = repeat('v', ENR_AWS_FLEET_PARAM_VALUE_MAX + 1);
    expect_both(REG_C, json_pack("{ss s{ss}}", "certificateOwnershipToken", "t", "parameters", "n", s),
                ENR_AWS_FLEET_FIELD_TOO_LONG, "parameter value over");
    free(s);

    /* items: an ignored array of ENR_AWS_FLEET_ITEMS_MAX zeros is one too many
     * with the map, its key and the array itself */
    json_t *arr = json_array();
    for (int i = 0; i < ENR_AWS_FLEET_ITEMS_MAX; i++)
        json_array_append_new(arr, json_integer(0));
    expect_both(KEYS_C, json_pack("{so}", "x", arr), ENR_AWS_FLEET_TOO_MANY_ITEMS, "items");
    arr = json_array();
    for (int i = 0; i < ENR_AWS_FLEET_ITEMS_MAX - 3; i++)
        json_array_append_new(arr, json_integer(0));
    expect_both(KEYS_C, json_pack("{so}", "x", arr), ENR_AWS_FLEET_OK, "items at the bound");

    /* the payload itself */
    size_t big = ENR_AWS_FLEET_PAYLOAD_MAX + 1;
    uint8_t *p = calloc(1, big);
    assert_non_null(p);
    for (int f = 0; f < 2; f++) {
        enr_aws_fleet_request req;
        enr_error err;
        assert_int_equal(decode(KEYS_C, (enr_aws_fleet_format)f, p, big, &req, &err), ENR_AWS_FLEET_TOO_LARGE);
        assert_non_null(strstr(err.message, "65536"));
    }
    free(p);
}

static void test_decode_usage(void **state)
{
    (void)state;
    enr_aws_fleet_request req;
    enr_error err;
    assert_int_equal(decode(ENR_AWS_FLEET_NONE, JSON_F, (const uint8_t *)"{}", 2, &req, &err), ENR_AWS_FLEET_USAGE);
    assert_int_equal(err.code, ENR_E_USAGE);
    assert_int_equal(decode(CSR_C, (enr_aws_fleet_format)9, (const uint8_t *)"{}", 2, &req, &err),
                     ENR_AWS_FLEET_USAGE);
    assert_int_equal(decode(CSR_C, JSON_F, NULL, 2, &req, &err), ENR_AWS_FLEET_USAGE);
    assert_int_equal(decode(CSR_C, JSON_F, (const uint8_t *)"{}", 2, NULL, &err), ENR_AWS_FLEET_USAGE);
    assert_int_equal(decode(KEYS_C, JSON_F, NULL, 0, &req, &err), ENR_AWS_FLEET_OK);
    enr_aws_fleet_request_clear(&req);
    enr_aws_fleet_request_clear(NULL);
    /* reason names: distinct and known */
    for (int a = ENR_AWS_FLEET_OK; a <= ENR_AWS_FLEET_PARAMETER_TYPE; a++) {
        assert_string_not_equal(enr_aws_fleet_reason_name((enr_aws_fleet_reason)a), "unknown");
        for (int b = ENR_AWS_FLEET_OK; b < a; b++)
            assert_string_not_equal(enr_aws_fleet_reason_name((enr_aws_fleet_reason)a),
                                    enr_aws_fleet_reason_name((enr_aws_fleet_reason)b));
    }
    assert_string_equal(enr_aws_fleet_reason_name((enr_aws_fleet_reason)99), "unknown");
}

/* ---- answers, judged by jansson and libcbor -------------------------------------- */

/* The answer as a jansson object, whichever format: CBOR through
 * cbor_load, checked to be one definite map of text keys and text or
 * unsigned values (deviceConfiguration: a definite map of text). */
static json_t *from_cbor(const cbor_item_t *v)
{
    if (cbor_isa_string(v)) {
        assert_true(cbor_string_is_definite(v));
        return json_stringn((const char *)cbor_string_handle(v), cbor_string_length(v));
    }
    if (cbor_isa_uint(v))
        return json_integer((json_int_t)cbor_get_int(v));
    assert_true(cbor_isa_map(v));
    assert_true(cbor_map_is_definite(v));
    json_t *o = json_object();
    struct cbor_pair *pairs = cbor_map_handle(v);
    for (size_t i = 0; i < cbor_map_size(v); i++) {
        assert_true(cbor_isa_string(pairs[i].key));
        char key[64];
        size_t n = cbor_string_length(pairs[i].key);
        assert_true(n < sizeof key);
        memcpy(key, cbor_string_handle(pairs[i].key), n);
        key[n] = '\0';
        assert_null(json_object_get(o, key));
        json_object_set_new(o, key, from_cbor(pairs[i].value));
    }
    return o;
}

static json_t *judge(enr_aws_fleet_format f, const uint8_t *bytes, size_t n)
{
    if (f == JSON_F) {
        assert_null(memchr(bytes, '\n', n)); /* one line */
        json_error_t jerr;
        json_t *o = json_loadb((const char *)bytes, n, JSON_REJECT_DUPLICATES, &jerr);
        if (o == NULL)
            fail_msg("our JSON does not parse: %s", jerr.text);
        return o;
    }
    struct cbor_load_result res;
    cbor_item_t *item = cbor_load(bytes, n, &res);
    assert_non_null(item);
    assert_int_equal(res.read, n);
    json_t *o = from_cbor(item);
    cbor_decref(&item);
    return o;
}

static void expect_keys(json_t *o, const char *const *keys)
{
    size_t n = 0;
    const char *k;
    json_t *v;
    json_object_foreach(o, k, v)
    {
        assert_non_null(keys[n]);
        assert_string_equal(k, keys[n]);
        n++;
    }
    assert_null(keys[n]);
}

static void test_answers_round_trip(void **state)
{
    (void)state;
    for (int fi = 0; fi < 2; fi++) {
        enr_aws_fleet_format f = (enr_aws_fleet_format)fi;
        uint8_t *out = NULL;
        size_t n = 0;
        enr_error err = {0};

        enr_aws_fleet_created c = {.certificate_id = "0123abcd",
                                   .certificate_pem = "-----BEGIN CERTIFICATE-----\nMIIB\"\\/\n-----END CERTIFICATE-----\n",
                                   .ownership_token = "tok\xc3\xa9"};
        assert_int_equal(enr_aws_fleet_encode_created(f, &c, &out, &n, &err), ENR_OK);
        json_t *o = judge(f, out, n);
        expect_keys(o, (const char *const[]){"certificateId", "certificatePem", "certificateOwnershipToken", NULL});
        assert_string_equal(json_string_value(json_object_get(o, "certificatePem")), c.certificate_pem);
        assert_string_equal(json_string_value(json_object_get(o, "certificateOwnershipToken")), c.ownership_token);
        json_decref(o);
        free(out);

        c.private_key = "-----BEGIN PRIVATE KEY-----\nMC4\n-----END PRIVATE KEY-----\n";
        assert_int_equal(enr_aws_fleet_encode_created(f, &c, &out, &n, &err), ENR_OK);
        o = judge(f, out, n);
        expect_keys(o, (const char *const[]){"certificateId", "certificatePem", "privateKey",
                                             "certificateOwnershipToken", NULL});
        assert_string_equal(json_string_value(json_object_get(o, "privateKey")), c.private_key);
        json_decref(o);
        free(out);

        const char *names[] = {"Foo", "Bar"}, *values[] = {"Bar", "x y \xe2\x82\xac"};
        enr_aws_fleet_registered r = {.thing_name = "sensor-7", .config_count = 2, .config_names = names,
                                      .config_values = values};
        assert_int_equal(enr_aws_fleet_encode_registered(f, &r, &out, &n, &err), ENR_OK);
        o = judge(f, out, n);
        expect_keys(o, (const char *const[]){"deviceConfiguration", "thingName", NULL});
        assert_string_equal(json_string_value(json_object_get(o, "thingName")), "sensor-7");
        json_t *dc = json_object_get(o, "deviceConfiguration");
        expect_keys(dc, (const char *const[]){"Foo", "Bar", NULL});
        assert_string_equal(json_string_value(json_object_get(dc, "Bar")), values[1]);
        json_decref(o);
        free(out);

        r.config_count = 0;
        assert_int_equal(enr_aws_fleet_encode_registered(f, &r, &out, &n, &err), ENR_OK);
        o = judge(f, out, n);
        assert_int_equal(json_object_size(json_object_get(o, "deviceConfiguration")), 0);
        assert_true(json_is_object(json_object_get(o, "deviceConfiguration")));
        json_decref(o);
        free(out);

        const int codes[] = {400, 403, 404, 429, 500, 100, 599};
        for (size_t i = 0; i < sizeof codes / sizeof codes[0]; i++) {
            assert_int_equal(enr_aws_fleet_encode_rejected(f, codes[i], "InvalidCertificateOwnershipToken",
                                                           "Certificate ownership token cannot be empty.", &out, &n,
                                                           &err),
                             ENR_OK);
            o = judge(f, out, n);
            expect_keys(o, (const char *const[]){"statusCode", "errorCode", "errorMessage", NULL});
            assert_true(json_is_integer(json_object_get(o, "statusCode")));
            assert_int_equal(json_integer_value(json_object_get(o, "statusCode")), codes[i]);
            assert_string_equal(json_string_value(json_object_get(o, "errorCode")),
                                "InvalidCertificateOwnershipToken");
            json_decref(o);
            free(out);
        }
    }
    /* The exact JSON an SDK's parser sees. */
    uint8_t *out = NULL;
    size_t n = 0;
    assert_int_equal(enr_aws_fleet_encode_rejected(JSON_F, 400, "InvalidPayload", "bad", &out, &n, NULL), ENR_OK);
    const char *want = "{\"statusCode\":400,\"errorCode\":\"InvalidPayload\",\"errorMessage\":\"bad\"}";
    assert_int_equal(n, strlen(want));
    assert_memory_equal(out, want, n);
    free(out);
    /* And the exact CBOR: a3, "statusCode" 19 0190, ... */
    assert_int_equal(enr_aws_fleet_encode_rejected(CBOR_F, 400, "E", "m", &out, &n, NULL), ENR_OK);
    const uint8_t cwant[] = {0xa3, 0x6a, 's', 't', 'a', 't', 'u', 's', 'C', 'o', 'd', 'e', 0x19, 0x01, 0x90,
                             0x69, 'e', 'r', 'r', 'o', 'r', 'C', 'o', 'd', 'e', 0x61, 'E',
                             0x6c, 'e', 'r', 'r', 'o', 'r', 'M', 'e', 's', 's', 'a', 'g', 'e', 0x61, 'm'};
    assert_int_equal(n, sizeof cwant);
    assert_memory_equal(out, cwant, n);
    free(out);
    /* the shortest integer head: 100 is 18 64, not 19 00 64 */
    assert_int_equal(enr_aws_fleet_encode_rejected(CBOR_F, 100, "E", "m", &out, &n, NULL), ENR_OK);
    assert_int_equal(n, sizeof cwant - 1);
    assert_memory_equal(out + 12, ((const uint8_t[]){0x18, 0x64}), 2);
    free(out);
}

static void test_encode_refusals(void **state)
{
    (void)state;
    uint8_t *out = (uint8_t *)"sentinel";
    size_t n = 7;
    enr_error err = {0};
    for (int fi = 0; fi < 2; fi++) {
        enr_aws_fleet_format f = (enr_aws_fleet_format)fi;
        assert_int_equal(enr_aws_fleet_encode_rejected(f, 99, "E", "m", &out, &n, &err), ENR_E_USAGE);
        assert_null(out);
        assert_int_equal(enr_aws_fleet_encode_rejected(f, 600, "E", "m", &out, &n, &err), ENR_E_USAGE);
        assert_int_equal(enr_aws_fleet_encode_rejected(f, 400, NULL, "m", &out, &n, &err), ENR_E_USAGE);
        assert_int_equal(enr_aws_fleet_encode_rejected(f, 400, "E", "\xff", &out, &n, &err), ENR_E_USAGE);
        enr_aws_fleet_created c = {.certificate_id = "id", .certificate_pem = "pem"};
        assert_int_equal(enr_aws_fleet_encode_created(f, &c, &out, &n, &err), ENR_E_USAGE); /* no token */
        assert_int_equal(enr_aws_fleet_encode_created(f, NULL, &out, &n, &err), ENR_E_USAGE);
        c.ownership_token = "t";
        c.private_key = "\xc3";
        assert_int_equal(enr_aws_fleet_encode_created(f, &c, &out, &n, &err), ENR_E_USAGE);
        const char *names[] = {"a", "a"}, *values[] = {"1", "2"};
        enr_aws_fleet_registered r = {.thing_name = "t", .config_count = 2, .config_names = names,
                                      .config_values = values};
        assert_int_equal(enr_aws_fleet_encode_registered(f, &r, &out, &n, &err), ENR_E_USAGE);
        assert_non_null(strstr(err.message, "twice"));
        r.config_count = ENR_AWS_FLEET_CONFIG_MAX + 1;
        assert_int_equal(enr_aws_fleet_encode_registered(f, &r, &out, &n, &err), ENR_E_USAGE);
        r.config_count = 1;
        r.config_names = NULL;
        assert_int_equal(enr_aws_fleet_encode_registered(f, &r, &out, &n, &err), ENR_E_USAGE);
        r.thing_name = NULL;
        assert_int_equal(enr_aws_fleet_encode_registered(f, &r, &out, &n, &err), ENR_E_USAGE);
        /* over one packet */
        char *big = repeat('x', ENR_AWS_FLEET_ANSWER_MAX);
        c.private_key = NULL;
        c.certificate_pem = big;
        assert_int_equal(enr_aws_fleet_encode_created(f, &c, &out, &n, &err), ENR_E_UNSUPPORTED);
        assert_null(out);
        assert_int_equal(n, 0);
        free(big);
    }
    assert_int_equal(enr_aws_fleet_encode_rejected((enr_aws_fleet_format)5, 400, "E", "m", &out, &n, &err),
                     ENR_E_USAGE);
    assert_int_equal(enr_aws_fleet_encode_rejected(JSON_F, 400, "E", "m", NULL, &n, &err), ENR_E_USAGE);
}

/* What we send decodes as what a device would send back is not the
 * protocol, but the two directions share one CBOR dialect: an accepted
 * CreateCertificateFromCsr answer read by our own decoder as a
 * CreateKeys request (an object; keys ignored) proves it is one
 * well-formed, duplicate-free map by our strict rules too. */
static void test_answers_pass_our_decoder(void **state)
{
    (void)state;
    for (int fi = 0; fi < 2; fi++) {
        enr_aws_fleet_created c = {.certificate_id = "id", .certificate_pem = "pem", .ownership_token = "t"};
        uint8_t *out = NULL;
        size_t n = 0;
        assert_int_equal(enr_aws_fleet_encode_created((enr_aws_fleet_format)fi, &c, &out, &n, NULL), ENR_OK);
        enr_aws_fleet_request req;
        enr_error err;
        assert_int_equal(decode(KEYS_C, (enr_aws_fleet_format)fi, out, n, &req, &err), ENR_AWS_FLEET_OK);
        enr_aws_fleet_request_clear(&req);
        free(out);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_topics),
        cmocka_unit_test(test_answer_topics),
        cmocka_unit_test(test_filters),
        cmocka_unit_test(test_decode_both_formats),
        cmocka_unit_test(test_decode_values),
        cmocka_unit_test(test_decode_json_only),
        cmocka_unit_test(test_decode_cbor_bytes),
        cmocka_unit_test(test_bounds),
        cmocka_unit_test(test_decode_usage),
        cmocka_unit_test(test_answers_round_trip),
        cmocka_unit_test(test_encode_refusals),
        cmocka_unit_test(test_answers_pass_our_decoder),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
