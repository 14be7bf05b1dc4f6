/* The device's side of AWS IoT fleet provisioning without a network
 * (src/device/link_aws.h): the two requests it builds, read back by
 * jansson; the three answers it reads, with a bad-input table for each
 * (missing fields, wrong types, empty and oversized values, non-JSON,
 * duplicates, rejections that are not documents); how a rejection becomes a
 * typed error (retried or not, ENR_R_AUTH_REFUSED, outside text quoted);
 * and the configuration enr_device_new refuses for the aws-fleet protocol. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "device/link_aws.h"
#include "enroll/device.h"

static char *repeat(char c, size_t n)
{
    char *s = malloc(n + 1);
    assert_non_null(s);
    memset(s, c, n);
    s[n] = '\0';
    return s;
}

static void test_requests(void **state)
{
    (void)state;
    const char *pem = "-----BEGIN CERTIFICATE REQUEST-----\nMIIB\n-----END CERTIFICATE REQUEST-----\n";
    char *s = dev_aws_csr_request(pem);
    assert_non_null(s);
    json_t *o = json_loads(s, JSON_REJECT_DUPLICATES, NULL);
    assert_true(json_is_object(o));
    assert_int_equal(json_object_size(o), 1);
    assert_string_equal(json_string_value(json_object_get(o, "certificateSigningRequest")), pem);
    json_decref(o);
    free(s);

    const char *names[] = {"SerialNumber", "Quote\"d", "Empty"};
    const char *values[] = {"SN-1", "a\\b\nc", ""};
    s = dev_aws_register_request("tok en", names, values, 3);
    assert_non_null(s);
    assert_null(strchr(s, '\n')); /* compact: one line */
    o = json_loads(s, JSON_REJECT_DUPLICATES, NULL);
    assert_string_equal(json_string_value(json_object_get(o, "certificateOwnershipToken")), "tok en");
    json_t *p = json_object_get(o, "parameters");
    assert_int_equal(json_object_size(p), 3);
    assert_string_equal(json_string_value(json_object_get(p, "Quote\"d")), "a\\b\nc");
    assert_string_equal(json_string_value(json_object_get(p, "Empty")), "");
    json_decref(o);
    free(s);
    /* No parameters: an empty object, as the SDKs send. */
    s = dev_aws_register_request("t", NULL, NULL, 0);
    assert_string_equal(s, "{\"certificateOwnershipToken\":\"t\",\"parameters\":{}}");
    free(s);
    assert_null(dev_aws_csr_request(NULL));
    assert_null(dev_aws_register_request(NULL, NULL, NULL, 0));
    /* A value that is not UTF-8 cannot be sent. */
    const char *bad[] = {"\xff"};
    assert_null(dev_aws_register_request("t", names, bad, 1));
}

static void test_created(void **state)
{
    (void)state;
    dev_aws_created c;
    enr_error err;
    const char *good = "{\"certificateId\":\"abc\",\"certificatePem\":\"PEM\",\"certificateOwnershipToken\":\"T\","
                       "\"unknown\":[1,{\"x\":null}]}";
    assert_int_equal(dev_aws_created_parse(good, strlen(good), &c, &err), ENR_OK);
    assert_string_equal(c.certificate_id, "abc");
    assert_string_equal(c.certificate_pem, "PEM");
    assert_string_equal(c.ownership_token, "T");
    dev_aws_created_clear(&c);
    assert_null(c.ownership_token);

    char *long_pem = repeat('A', DEV_AWS_PEM_MAX + 1);
    char *long_token = repeat('t', DEV_AWS_TOKEN_MAX + 1);
    char *huge = repeat(' ', DEV_AWS_ANSWER_MAX + 1);
    huge[0] = '{';
    huge[DEV_AWS_ANSWER_MAX] = '}';
    char over_pem[DEV_AWS_PEM_MAX + 200], over_token[DEV_AWS_TOKEN_MAX + 200];
    snprintf(over_pem, sizeof over_pem,
             "{\"certificateId\":\"a\",\"certificatePem\":\"%s\",\"certificateOwnershipToken\":\"T\"}", long_pem);
    snprintf(over_token, sizeof over_token,
             "{\"certificateId\":\"a\",\"certificatePem\":\"P\",\"certificateOwnershipToken\":\"%s\"}", long_token);
    struct {
        const char *body;
        const char *says;
    } rows[] = {
        {"", "not JSON"},
        {"not json", "not JSON"},
        {"{\"certificateId\":\"a\"", "not JSON"},
        {"[]", "an array, not an object"},
        {"\"text\"", "not JSON"},   /* jansson: only an object or array is a document */
        {"null", "not JSON"},
        {"{\"certificatePem\":\"P\",\"certificateOwnershipToken\":\"T\"}", "has no certificateId"},
        {"{\"certificateId\":\"a\",\"certificateOwnershipToken\":\"T\"}", "has no certificatePem"},
        {"{\"certificateId\":\"a\",\"certificatePem\":\"P\"}", "has no certificateOwnershipToken"},
        {"{\"certificateId\":1,\"certificatePem\":\"P\",\"certificateOwnershipToken\":\"T\"}",
         "certificateId is a number, not a string"},
        {"{\"certificateId\":\"a\",\"certificatePem\":{},\"certificateOwnershipToken\":\"T\"}",
         "certificatePem is an object, not a string"},
        {"{\"certificateId\":\"a\",\"certificatePem\":\"P\",\"certificateOwnershipToken\":null}",
         "certificateOwnershipToken is null, not a string"},
        {"{\"certificateId\":\"a\",\"certificatePem\":\"P\",\"certificateOwnershipToken\":true}",
         "certificateOwnershipToken is a boolean"},
        {"{\"certificateId\":\"\",\"certificatePem\":\"P\",\"certificateOwnershipToken\":\"T\"}",
         "certificateId is empty"},
        {"{\"certificateId\":\"a\",\"certificatePem\":\"P\",\"certificateOwnershipToken\":\"T\",\"certificateId\":\"b\"}",
         "not JSON"}, /* a key twice */
        {"{\"certificateId\":\"a\\u0000b\",\"certificatePem\":\"P\",\"certificateOwnershipToken\":\"T\"}", "not JSON"},
        {"{\"certificateId\":\"\xc3\x28\",\"certificatePem\":\"P\",\"certificateOwnershipToken\":\"T\"}", "not JSON"},
        {over_pem, "certificatePem is longer than"},
        {over_token, "certificateOwnershipToken is longer than"},
        {huge, "larger than"},
    };
    for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
        memset(&err, 0, sizeof err);
        if (dev_aws_created_parse(rows[i].body, strlen(rows[i].body), &c, &err) != ENR_E_PARSE)
            fail_msg("row %zu: parsed, wanted a parse error", i);
        if (strstr(err.message, rows[i].says) == NULL)
            fail_msg("row %zu: '%s' does not say '%s'", i, err.message, rows[i].says);
        assert_null(c.certificate_id);
        assert_null(c.ownership_token);
    }
    assert_int_equal(dev_aws_created_parse(NULL, 0, &c, &err), ENR_E_PARSE);
    free(long_pem);
    free(long_token);
    free(huge);
}

static void test_registered(void **state)
{
    (void)state;
    dev_aws_registered r;
    enr_error err;
    const char *good = "{\"deviceConfiguration\":{\"Fleet\":\"a\",\"Url\":\"https://x\"},\"thingName\":\"thing:SN-1_x\"}";
    assert_int_equal(dev_aws_registered_parse(good, strlen(good), &r, &err), ENR_OK);
    assert_string_equal(r.thing_name, "thing:SN-1_x");
    assert_string_equal(r.device_configuration, "{\"Fleet\":\"a\",\"Url\":\"https://x\"}");
    dev_aws_registered_clear(&r);
    const char *bare = "{\"thingName\":\"t\"}";
    assert_int_equal(dev_aws_registered_parse(bare, strlen(bare), &r, &err), ENR_OK);
    assert_string_equal(r.device_configuration, "{}");
    dev_aws_registered_clear(&r);
    const char *null_config = "{\"thingName\":\"t\",\"deviceConfiguration\":null}";
    assert_int_equal(dev_aws_registered_parse(null_config, strlen(null_config), &r, &err), ENR_OK);
    assert_string_equal(r.device_configuration, "{}");
    dev_aws_registered_clear(&r);

    char *long_name = repeat('n', DEV_AWS_THING_NAME_MAX + 1);
    char *long_value = repeat('v', DEV_AWS_CONFIG_VALUE_MAX + 1);
    char over_name[DEV_AWS_THING_NAME_MAX + 64], over_value[DEV_AWS_CONFIG_VALUE_MAX + 64];
    snprintf(over_name, sizeof over_name, "{\"thingName\":\"%s\"}", long_name);
    snprintf(over_value, sizeof over_value, "{\"thingName\":\"t\",\"deviceConfiguration\":{\"k\":\"%s\"}}", long_value);
    char many[DEV_AWS_CONFIG_MAX * 16 + 64];
    size_t n = (size_t)snprintf(many, sizeof many, "{\"thingName\":\"t\",\"deviceConfiguration\":{");
    for (int i = 0; i <= DEV_AWS_CONFIG_MAX; i++)
        n += (size_t)snprintf(many + n, sizeof many - n, "%s\"k%d\":\"v\"", i ? "," : "", i);
    snprintf(many + n, sizeof many - n, "}}");
    struct {
        const char *body;
        const char *says;
    } rows[] = {
        {"{}", "has no thingName"},
        {"{\"deviceConfiguration\":{}}", "has no thingName"},
        {"{\"thingName\":7}", "thingName is a number"},
        {"{\"thingName\":\"\"}", "thingName is empty"},
        {"{\"thingName\":\"has space\"}", "thingName 'has space' is not"},
        {"{\"thingName\":\"a/b\"}", "is not 1..128"},
        {"{\"thingName\":\"\\u001b[31mred\"}", "thingName '?[31mred' is not"}, /* quoted safely */
        {over_name, "thingName is longer than"},
        {"{\"thingName\":\"t\",\"deviceConfiguration\":[]}", "deviceConfiguration is an array, not an object"},
        {"{\"thingName\":\"t\",\"deviceConfiguration\":\"x\"}", "deviceConfiguration is a string"},
        {"{\"thingName\":\"t\",\"deviceConfiguration\":{\"k\":1}}", "deviceConfiguration 'k' is a number"},
        {"{\"thingName\":\"t\",\"deviceConfiguration\":{\"k\":{\"nested\":\"x\"}}}", "'k' is an object"},
        {"{\"thingName\":\"t\",\"deviceConfiguration\":{\"\":\"x\"}}", "name is empty"},
        {over_value, "'k' is longer than"},
        {many, "more than 64 entries"},
        {"{\"thingName\":\"t\",\"thingName\":\"u\"}", "not JSON"},
        {"<html>", "not JSON"},
    };
    for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
        memset(&err, 0, sizeof err);
        if (dev_aws_registered_parse(rows[i].body, strlen(rows[i].body), &r, &err) != ENR_E_PARSE)
            fail_msg("row %zu: parsed, wanted a parse error", i);
        if (strstr(err.message, rows[i].says) == NULL)
            fail_msg("row %zu: '%s' does not say '%s'", i, err.message, rows[i].says);
        assert_null(r.thing_name);
    }
    free(long_name);
    free(long_value);
}

static void test_rejected(void **state)
{
    (void)state;
    dev_aws_rejected r;
    enr_error err;
    const char *good = "{\"statusCode\":400,\"errorCode\":\"InvalidCsr\",\"errorMessage\":\"bad\",\"extra\":1}";
    assert_int_equal(dev_aws_rejected_parse(good, strlen(good), &r, &err), ENR_OK);
    assert_int_equal(r.status_code, 400);
    assert_string_equal(r.error_code, "InvalidCsr");
    assert_string_equal(r.error_message, "bad");
    const char *bare = "{\"statusCode\":500}";
    assert_int_equal(dev_aws_rejected_parse(bare, strlen(bare), &r, &err), ENR_OK);
    assert_string_equal(r.error_code, "");
    /* A long message is cut, not refused. */
    char *long_msg = repeat('m', 5000);
    char doc[5200];
    snprintf(doc, sizeof doc, "{\"statusCode\":400,\"errorMessage\":\"%s\"}", long_msg);
    assert_int_equal(dev_aws_rejected_parse(doc, strlen(doc), &r, &err), ENR_OK);
    assert_int_equal(strlen(r.error_message), DEV_AWS_ERROR_MESSAGE_MAX);
    free(long_msg);
    char *long_code = repeat('c', DEV_AWS_ERROR_CODE_MAX + 1);
    char over_code[DEV_AWS_ERROR_CODE_MAX + 64];
    snprintf(over_code, sizeof over_code, "{\"statusCode\":400,\"errorCode\":\"%s\"}", long_code);
    struct {
        const char *body;
        const char *says;
    } rows[] = {
        {"{}", "has no statusCode"},
        {"{\"errorCode\":\"X\",\"errorMessage\":\"m\"}", "has no statusCode"},
        {"{\"statusCode\":\"400\"}", "statusCode is a string, not an integer"},
        {"{\"statusCode\":400.5}", "statusCode is a number, not an integer"},
        {"{\"statusCode\":99}", "statusCode 99 is not 100..599"},
        {"{\"statusCode\":600}", "statusCode 600"},
        {"{\"statusCode\":-1}", "statusCode -1"},
        {"{\"statusCode\":400,\"errorCode\":5}", "errorCode is a number"},
        {"{\"statusCode\":400,\"errorMessage\":[]}", "errorMessage is an array"},
        {over_code, "errorCode is longer than"},
        {"rejected", "not JSON"},
        {"[400]", "an array, not an object"},
    };
    for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
        memset(&err, 0, sizeof err);
        if (dev_aws_rejected_parse(rows[i].body, strlen(rows[i].body), &r, &err) != ENR_E_PARSE)
            fail_msg("row %zu: parsed, wanted a parse error", i);
        if (strstr(err.message, rows[i].says) == NULL)
            fail_msg("row %zu: '%s' does not say '%s'", i, err.message, rows[i].says);
    }
    free(long_code);
}

static void test_rejection_errors(void **state)
{
    (void)state;
    struct {
        int status;
        const char *code;
        enr_code want;
        bool retry;
        enr_reason reason;
    } rows[] = {
        {400, "InvalidCsr", ENR_E_POLICY, false, ENR_R_NONE},
        {404, "ResourceNotFound", ENR_E_POLICY, false, ENR_R_NONE},
        {409, "", ENR_E_POLICY, false, ENR_R_NONE},
        {401, "", ENR_E_POLICY, false, ENR_R_AUTH_REFUSED},
        {403, "AccessDenied", ENR_E_POLICY, false, ENR_R_AUTH_REFUSED},
        {400, "UnauthorizedException", ENR_E_POLICY, false, ENR_R_AUTH_REFUSED},
        {429, "", ENR_E_IO, true, ENR_R_NONE},
        {400, "ThrottlingException", ENR_E_IO, true, ENR_R_NONE},
        {500, "InternalFailure", ENR_E_IO, true, ENR_R_NONE},
        {503, "", ENR_E_IO, true, ENR_R_NONE},
        {599, "AccessDenied", ENR_E_IO, true, ENR_R_NONE}, /* a failing service: its code says little */
    };
    for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
        dev_aws_rejected r = {.status_code = rows[i].status};
        snprintf(r.error_code, sizeof r.error_code, "%s", rows[i].code);
        snprintf(r.error_message, sizeof r.error_message, "why");
        enr_error err = {0};
        bool retry = !rows[i].retry;
        enr_code rc = dev_aws_rejection_error(ENR_AWS_FLEET_REGISTER_THING, &r, &retry, &err);
        if (rc != rows[i].want || err.code != rows[i].want || retry != rows[i].retry)
            fail_msg("row %zu (%d %s): code %d retry %d", i, rows[i].status, rows[i].code, rc, retry);
        if (rc == ENR_E_POLICY && err.reason != rows[i].reason)
            fail_msg("row %zu: reason %d, wanted %d", i, err.reason, rows[i].reason);
        if (strstr(err.message, "RegisterThing") == NULL || strstr(err.message, "'why'") == NULL)
            fail_msg("row %zu: '%s' names neither the call nor the message", i, err.message);
    }
    /* What the service says is quoted: no control character, bounded. */
    dev_aws_rejected r = {.status_code = 400};
    snprintf(r.error_code, sizeof r.error_code, "Bad\nCode");
    memset(r.error_message, 'x', 900);
    r.error_message[0] = '\033';
    enr_error err;
    bool retry;
    assert_int_equal(dev_aws_rejection_error(ENR_AWS_FLEET_CREATE_FROM_CSR, &r, &retry, &err), ENR_E_POLICY);
    assert_null(strchr(err.message, '\n'));
    assert_null(strchr(err.message, '\033'));
    assert_non_null(strstr(err.message, "CreateCertificateFromCsr: statusCode 400, errorCode 'Bad?Code': '?xxx"));
    assert_non_null(strstr(err.message, "x...'"));
    assert_true(strlen(err.message) < 300);
}

static void test_thing_names(void **state)
{
    (void)state;
    assert_true(dev_aws_thing_name_valid("a"));
    assert_true(dev_aws_thing_name_valid("SN:001_a-b"));
    char *max = repeat('x', DEV_AWS_THING_NAME_MAX);
    assert_true(dev_aws_thing_name_valid(max));
    max[0] = '.';
    assert_false(dev_aws_thing_name_valid(max));
    free(max);
    char *over = repeat('x', DEV_AWS_THING_NAME_MAX + 1);
    assert_false(dev_aws_thing_name_valid(over));
    free(over);
    assert_false(dev_aws_thing_name_valid(""));
    assert_false(dev_aws_thing_name_valid(NULL));
    assert_false(dev_aws_thing_name_valid("a b"));
    assert_false(dev_aws_thing_name_valid("a/b"));
    assert_false(dev_aws_thing_name_valid("\xc3\xa9"));
    assert_string_equal(dev_aws_call_name(ENR_AWS_FLEET_CREATE_FROM_CSR), "CreateCertificateFromCsr");
    assert_string_equal(dev_aws_call_name(ENR_AWS_FLEET_REGISTER_THING), "RegisterThing");
}

/* enr_device_new's refusals for aws-fleet: usage errors, nothing made. */
static void test_config(void **state)
{
    (void)state;
    char dir[] = "/tmp/enroll-aws-cfg-XXXXXX";
    assert_non_null(mkdtemp(dir));
    char store[128];
    snprintf(store, sizeof store, "%s/store", dir);
    const char *sn[] = {"SerialNumber"}, *sv[] = {"SN-1"};
    const char *dn[] = {"A", "A"}, *dv[] = {"1", "2"};
    const char *tn[] = {"ThingName", "SerialNumber"}, *tv[] = {"from-thing", "from-serial"};
    enr_device_config base = {.protocol = ENR_DEVICE_PROTOCOL_AWS_FLEET, .url = "mqtts://127.0.0.1:1",
                              .aws_template = "T1", .aws_param_names = sn, .aws_param_values = sv,
                              .aws_param_count = 1, .auth = ENR_DEVICE_AUTH_X509, .bootstrap_cert_file = "c.pem",
                              .bootstrap_key_file = "c.key", .key_ref = "d.key", .trust_file = "r.pem",
                              .store_dir = store};
    struct {
        const char *what;
        enr_device_config cfg;
        const char *says;
    } rows[] = {
        {"https", base, "speaks MQTT"},
        {"no template", base, "needs a provisioning template"},
        {"bad template", base, "template name"},
        {"id scope", base, "DPS's"},
        {"registration id", base, "DPS's"},
        {"symmetric key", base, "by claim"},
        {"no thing name", base, "give the thing name"},
        {"bad thing name", base, "is not 1..64"},
        {"long thing name", base, "is not 1..64"},
        {"duplicate parameter", base, "given twice"},
    };
    rows[0].cfg.url = "https://127.0.0.1:1";
    rows[1].cfg.aws_template = NULL;
    rows[2].cfg.aws_template = "a/b";
    rows[3].cfg.id_scope = "0ne1";
    rows[4].cfg.registration_id = "r";
    rows[5].cfg.auth = ENR_DEVICE_AUTH_GROUP_KEY;
    rows[5].cfg.symmetric_key_file = "g.key";
    rows[6].cfg.aws_param_count = 0;
    rows[7].cfg.aws_thing_name = "a b";
    rows[8].cfg.aws_thing_name = "x123456789x123456789x123456789x123456789x123456789x123456789x1234";
    rows[9].cfg.aws_param_names = dn;
    rows[9].cfg.aws_param_values = dv;
    rows[9].cfg.aws_param_count = 2;
    for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
        enr_device *d = NULL;
        enr_error err = {0};
        if (enr_device_new(&rows[i].cfg, &d, &err) != ENR_E_USAGE)
            fail_msg("%s: not a usage error", rows[i].what);
        if (strstr(err.message, rows[i].says) == NULL)
            fail_msg("%s: '%s' does not say '%s'", rows[i].what, err.message, rows[i].says);
        assert_null(d);
    }
    /* DPS refuses AWS's settings. */
    enr_device_config dps = {.url = "https://127.0.0.1:1", .id_scope = "0ne1", .registration_id = "r",
                             .auth = ENR_DEVICE_AUTH_X509, .bootstrap_cert_file = "c", .bootstrap_key_file = "k",
                             .key_ref = "d.key", .trust_file = "r.pem", .store_dir = store, .aws_template = "T"};
    enr_device *d = NULL;
    enr_error err;
    assert_int_equal(enr_device_new(&dps, &d, &err), ENR_E_USAGE);
    assert_non_null(strstr(err.message, "aws-fleet protocol only"));
    /* The thing name: --thing-name, else ThingName, else SerialNumber. */
    enr_device_config ok = base;
    ok.aws_param_names = tn;
    ok.aws_param_values = tv;
    ok.aws_param_count = 2;
    assert_int_equal(enr_device_new(&ok, &d, &err), ENR_OK);
    enr_device_free(d);
    enr_device_protocol p;
    assert_int_equal(enr_device_protocol_parse("aws-fleet", &p, &err), ENR_OK);
    assert_int_equal(p, ENR_DEVICE_PROTOCOL_AWS_FLEET);
    assert_int_equal(enr_device_protocol_parse("aws", &p, &err), ENR_E_USAGE);
    assert_string_equal(enr_device_protocol_name(ENR_DEVICE_PROTOCOL_DPS), "dps");
    assert_int_equal(access(store, F_OK), -1); /* nothing was made */
    assert_int_equal(rmdir(dir), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_requests),         cmocka_unit_test(test_created),
        cmocka_unit_test(test_registered),       cmocka_unit_test(test_rejected),
        cmocka_unit_test(test_rejection_errors), cmocka_unit_test(test_thing_names),
        cmocka_unit_test(test_config),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
