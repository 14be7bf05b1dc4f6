/* libFuzzer: an AWS provisioning template is operator input, and the
 * parameters of a RegisterThing request come from any device holding the
 * claim certificate. The input is a template, optionally followed by
 * "\n--\n" and the device's parameters: a JSON object, or else '|'-separated
 * values given to the declared parameters in order (so evaluation is reached
 * even when the fuzzer breaks the JSON). Parse and evaluate must never
 * crash or leak; a refusal always explains itself with a documented code
 * and reason; a plan keeps what the header promises. */
#include <jansson.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "enroll/aws_template.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const enr_aws_pseudo PSEUDO = {
    .certificate_id = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
    .common_name = "sensor-7",
    .serial_number = "SN0007",
    .country = "DE",
    .organization = "Acme",
};

static bool name_ok(const char *s)
{
    size_t n = strlen(s);
    if (n < 1 || n > 128)
        return false;
    for (size_t i = 0; i < n; i++)
        if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= 'A' && s[i] <= 'Z') ||
              (s[i] >= '0' && s[i] <= '9') || strchr(":_-", s[i]) != NULL))
            return false;
    return true;
}

static void check_plan(const enr_aws_plan *plan)
{
    if (!name_ok(enr_aws_plan_thing_name(plan)))
        abort();
    if (enr_aws_plan_thing_type(plan) != NULL && !name_ok(enr_aws_plan_thing_type(plan)))
        abort();
    size_t groups = enr_aws_plan_group_count(plan);
    if (groups > ENR_AWS_GROUPS_MAX)
        abort();
    for (size_t i = 0; i < groups; i++)
        if (!name_ok(enr_aws_plan_group(plan, i)))
            abort();
    for (size_t i = 0; i < enr_aws_plan_attribute_count(plan); i++)
        if (strlen(enr_aws_plan_attribute_value(plan, i)) > 800)
            abort();
    for (size_t i = 0; i < enr_aws_plan_policy_count(plan); i++)
        if ((enr_aws_plan_policy_name(plan, i) == NULL) ==
            (enr_aws_plan_policy_document(plan, i) == NULL))
            abort();
    for (size_t i = 0; i < enr_aws_plan_config_count(plan); i++)
        if (strlen(enr_aws_plan_config_value(plan, i)) > ENR_AWS_STRING_MAX)
            abort();
    const char *status = enr_aws_plan_certificate_status(plan);
    if (status != NULL && strcmp(status, "ACTIVE") != 0 && strcmp(status, "INACTIVE") != 0)
        abort();
    char *json = NULL;
    enr_error err;
    if (enr_aws_plan_to_json(plan, &json, &err) != ENR_OK)
        abort();
    json_error_t jerr;
    json_t *back = json_loads(json, 0, &jerr);
    if (back == NULL)
        abort(); /* the plan's JSON must read back */
    json_decref(back);
    free(json);
}

static void evaluate(const enr_aws_template *t, const json_t *params, const enr_aws_pseudo *pseudo)
{
    enr_aws_plan *plan = NULL;
    enr_error err;
    enr_code rc = enr_aws_template_evaluate(t, params, pseudo, &plan, &err);
    if (rc == ENR_OK) {
        if (plan == NULL)
            abort();
        check_plan(plan);
    } else {
        if (plan != NULL || err.message[0] == '\0')
            abort();
        bool documented = rc == ENR_E_POLICY && (err.reason == ENR_R_PARAMETER_MISSING ||
                                                 err.reason == ENR_R_PARAMETER_INVALID ||
                                                 err.reason == ENR_R_TEMPLATE_EVALUATION);
        if (!documented && rc != ENR_E_NOMEM)
            abort();
    }
    enr_aws_plan_free(plan);
}

/* The parameters part: a JSON object, or '|'-separated values in order. */
static json_t *parameters_of(const enr_aws_template *t, const char *text, size_t len)
{
    json_error_t jerr;
    json_t *v = json_loadb(text, len, 0, &jerr);
    if (json_is_object(v))
        return v;
    json_decref(v);
    json_t *obj = json_object();
    const char *p = text, *end = text + len;
    for (size_t i = 0; obj != NULL && i < enr_aws_template_parameter_count(t) && p <= end; i++) {
        const char *bar = memchr(p, '|', (size_t)(end - p));
        size_t n = bar != NULL ? (size_t)(bar - p) : (size_t)(end - p);
        json_t *s = json_stringn(p, n); /* NULL for bytes that are not UTF-8: left out */
        if (s != NULL)
            json_object_set_new(obj, enr_aws_template_parameter_name(t, i), s);
        p += n + 1;
    }
    return obj;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *text = (const char *)data;
    size_t tmpl_len = size;
    const char *rest = "";
    size_t rest_len = 0;
    for (size_t i = 0; i + 4 <= size; i++)
        if (memcmp(text + i, "\n--\n", 4) == 0) {
            tmpl_len = i;
            rest = text + i + 4;
            rest_len = size - i - 4;
            break;
        }
    enr_aws_template *t = NULL;
    enr_error err;
    enr_code rc = enr_aws_template_parse(text, tmpl_len, &t, &err);
    if (rc != ENR_OK) {
        if (t != NULL || err.message[0] == '\0' ||
            (rc != ENR_E_PARSE && rc != ENR_E_UNSUPPORTED && rc != ENR_E_NOMEM))
            abort();
        return 0;
    }
    for (size_t i = 0; i < enr_aws_template_parameter_count(t); i++) {
        const char *def = enr_aws_template_parameter_default(t, i);
        if (enr_aws_template_parameter_name(t, i) == NULL || (def != NULL && strlen(def) > 64 * 1024))
            abort();
    }
    json_t *params = parameters_of(t, rest, rest_len);
    evaluate(t, params, &PSEUDO);
    evaluate(t, params, NULL);
    evaluate(t, NULL, &PSEUDO);
    json_decref(params);
    enr_aws_template_free(t);
    return 0;
}
