/* libFuzzer: the body a pre-provisioning hook answers (outside input, from
 * whatever server the template's URL reaches). enr_aws_hook_answer_parse
 * must accept or refuse any bytes without crashing or leaking, explain every
 * refusal as ENR_E_PARSE (or NOMEM) and leave nothing behind, and what it
 * accepts must keep the header's promises: overrides an object of at most
 * ENR_AWS_PARAMETERS_MAX strings, names 1..ENR_AWS_NAME_MAX bytes, values at
 * most ENR_AWS_STRING_MAX bytes without NUL. The same bytes always give the
 * same outcome. */
#include <jansson.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "enroll/aws_hook.h"
#include "enroll/aws_template.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_answer(const enr_aws_hook_answer *a)
{
    const json_t *o = a->parameter_overrides;
    if (o == NULL)
        return;
    if (!json_is_object(o) || json_object_size(o) > ENR_AWS_PARAMETERS_MAX)
        abort();
    const char *k;
    json_t *v;
    json_object_foreach((json_t *)o, k, v)
    {
        size_t klen = strlen(k);
        if (klen == 0 || klen > ENR_AWS_NAME_MAX || !json_is_string(v))
            abort();
        size_t vlen = json_string_length(v);
        if (vlen > ENR_AWS_STRING_MAX || strlen(json_string_value(v)) != vlen)
            abort();
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    enr_aws_hook_answer a = {true, NULL}, b = {true, NULL};
    enr_error err = {0};
    enr_code rc = enr_aws_hook_answer_parse((const char *)data, size, &a, &err);
    if (rc == ENR_OK) {
        check_answer(&a);
    } else if ((rc != ENR_E_PARSE && rc != ENR_E_NOMEM) || err.message[0] == '\0' || a.allow ||
               a.parameter_overrides != NULL) {
        abort();
    }
    enr_code again = enr_aws_hook_answer_parse((const char *)data, size, &b, &err);
    if (again != rc || b.allow != a.allow || (a.parameter_overrides == NULL) != (b.parameter_overrides == NULL) ||
        (a.parameter_overrides != NULL && !json_equal(a.parameter_overrides, b.parameter_overrides)))
        abort();
    enr_aws_hook_answer_clear(&a);
    enr_aws_hook_answer_clear(&b);
    if (a.allow || a.parameter_overrides != NULL)
        abort();
    return 0;
}
