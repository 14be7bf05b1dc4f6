/* AWS IoT fleet provisioning templates: parse (and check everything that
 * can be checked without a device), then evaluate with one device's
 * parameters and its certificate's pseudo parameters into a plan: the thing
 * to create or update, its attributes, groups and policies, the certificate
 * status and the device configuration. Nothing here talks to a store or a
 * broker; enrolld's AWS front end does that with the plan. docs/aws-templates.md
 * lists what is supported, the limits and where we differ from AWS.
 *
 *     enr_aws_template *t = NULL;
 *     enr_aws_plan *plan = NULL;
 *     enr_error err = {0};
 *     enr_aws_pseudo pseudo = {.certificate_id = cert_id_hex, .common_name = cn};
 *     if (enr_aws_template_parse(text, len, &t, &err) != ENR_OK)
 *         return refuse_template(err.message); // the operator's mistake, with its JSON path
 *     enr_code rc = enr_aws_template_evaluate(t, device_parameters, &pseudo, &plan, &err);
 *     if (rc == ENR_E_POLICY && err.reason == ENR_R_PARAMETER_MISSING)
 *         ...                                  // the device left out a parameter
 *     ...
 *     enr_aws_plan_free(plan);
 *     enr_aws_template_free(t);
 *
 * A template is immutable once parsed: evaluations may run on it from many
 * threads at once. Every message names the place in the template as a path
 * ("Resources.thing.Properties.ThingName.Fn::Join[1][2]"); no decision
 * depends on a message (the codes and reasons below are the contract). */
#ifndef ENROLL_AWS_TEMPLATE_H
#define ENROLL_AWS_TEMPLATE_H

#include <stdbool.h>
#include <stddef.h>

#include "enroll/error.h"

#ifdef __cplusplus
extern "C" {
#endif

/* jansson's type, declared rather than included so that users of this header
 * need not have jansson's headers. */
struct json_t;

/* Bounds on the template (all outside input is bounded). AWS itself takes
 * templates of up to 10,240 characters; 64 KiB holds any of them in UTF-8. */
#define ENR_AWS_TEMPLATE_MAX 65536 /* bytes of template JSON */
#define ENR_AWS_DEPTH_MAX 24       /* JSON nesting of the whole document (the top object is 1) */
#define ENR_AWS_STRING_MAX 4096    /* bytes of any string: literal, parameter value, result */
#define ENR_AWS_NAME_MAX 128       /* bytes of a name: parameter, condition, resource, key */
#define ENR_AWS_LIST_MAX 100       /* items of a list: literal, Fn::Split's result, mapping keys */
#define ENR_AWS_PARAMETERS_MAX 64
#define ENR_AWS_CONDITIONS_MAX 64
#define ENR_AWS_RESOURCES_MAX 16   /* one thing, at most one certificate, policies */
#define ENR_AWS_ATTRIBUTES_MAX 50  /* AWS's limit for a thing with a type */
#define ENR_AWS_GROUPS_MAX 10      /* AWS: a thing is in at most 10 static groups */
#define ENR_AWS_DEVICE_CONFIG_MAX 64
#define ENR_AWS_LOGICAL_OPERANDS_MAX 10 /* Fn::And and Fn::Or take 2..10 */

typedef enum enr_aws_param_type {
    ENR_AWS_PARAM_STRING = 0,
    ENR_AWS_PARAM_NUMBER /* the value must read as a JSON number ("12", "-1.5e3") */
} enr_aws_param_type;

typedef struct enr_aws_template enr_aws_template;
typedef struct enr_aws_plan enr_aws_plan;

/* Parses `len` bytes of template JSON and checks it statically: only the
 * sections Parameters, Mappings, Conditions, Resources and
 * DeviceConfiguration; every Ref names a declared or pseudo parameter; every
 * intrinsic function has its shape and arity; conditions, mappings and
 * (literal) mapping keys that are named exist; conditions form no cycle;
 * exactly one AWS::IoT::Thing (with a ThingName, without a Condition), at
 * most one AWS::IoT::Certificate; each value has the type its place needs
 * (a string or a list of strings); the bounds above. Refusals:
 * ENR_E_PARSE for malformed JSON (with line and column) or a template that
 * could never be evaluated (with the path inside it), ENR_E_UNSUPPORTED for
 * parts of AWS's format this module does not implement (Fn::GetAtt,
 * CertificatePem, ...), ENR_E_USAGE for NULL arguments. `*out` is NULL on
 * failure. */
enr_code enr_aws_template_parse(const char *json, size_t len, enr_aws_template **out,
                                enr_error *err);
void enr_aws_template_free(enr_aws_template *t);

/* The declared parameters, in the template's order (for listing them). The
 * default is its text ("12" for "Default": 12); NULL when there is none. */
size_t enr_aws_template_parameter_count(const enr_aws_template *t);
const char *enr_aws_template_parameter_name(const enr_aws_template *t, size_t i);
enr_aws_param_type enr_aws_template_parameter_type(const enr_aws_template *t, size_t i);
const char *enr_aws_template_parameter_default(const enr_aws_template *t, size_t i);

/* The certificate's pseudo parameters (AWS::IoT::Certificate::Id,
 * ::CommonName, ...). NULL for what the certificate does not have; a Ref to
 * it then fails with ENR_R_PARAMETER_MISSING. */
typedef struct enr_aws_pseudo {
    const char *certificate_id;      /* AWS::IoT::Certificate::Id */
    const char *common_name;         /* ...::CommonName */
    const char *serial_number;       /* ...::SerialNumber (the subject's serialNumber) */
    const char *country;             /* ...::Country */
    const char *organization;        /* ...::Organization */
    const char *organizational_unit; /* ...::OrganizationalUnit */
    const char *dn_qualifier;        /* ...::DistinguishedNameQualifier */
    const char *state_name;          /* ...::StateName */
    const char *locality;            /* ...::Locality */
} enr_aws_pseudo;

/* Evaluates the template for one device. `parameters` is the device's
 * "parameters" object (name -> string; NULL means none); keys the template
 * does not declare are ignored, as AWS does. `pseudo` may be NULL (no pseudo
 * values). Every declared parameter the device gives is checked first
 * (a string, no NUL, at most ENR_AWS_STRING_MAX bytes, a number for a
 * Number parameter); a missing one only fails when evaluation reaches it
 * (a Ref in a branch not taken, or in a resource whose condition is false,
 * is never read). Failures, all ENR_E_POLICY with a reason and the path:
 *   ENR_R_PARAMETER_MISSING   a Ref reached a parameter neither given nor
 *                             defaulted, or a pseudo parameter that is NULL;
 *   ENR_R_PARAMETER_INVALID   a given parameter is not a string, too long,
 *                             holds NUL, or is not a number for Number;
 *   ENR_R_TEMPLATE_EVALUATION the values make the template fail: Fn::Select
 *                             out of range, Fn::FindInMap key absent, a
 *                             result over a bound, a thing name or group
 *                             name outside [a-zA-Z0-9:_-]{1,128}, ...
 * ENR_E_USAGE for NULL t or out, or parameters that is not an object;
 * ENR_E_NOMEM. `*out` is NULL on failure. */
enr_code enr_aws_template_evaluate(const enr_aws_template *t, const struct json_t *parameters,
                                   const enr_aws_pseudo *pseudo, enr_aws_plan **out,
                                   enr_error *err);

void enr_aws_plan_free(enr_aws_plan *plan);

/* The plan's parts. Strings are owned by the plan; NULL for an absent
 * optional part. Lists keep the template's order. */
const char *enr_aws_plan_thing_name(const enr_aws_plan *plan);
const char *enr_aws_plan_thing_type(const enr_aws_plan *plan);
const char *enr_aws_plan_billing_group(const enr_aws_plan *plan);
size_t enr_aws_plan_attribute_count(const enr_aws_plan *plan);
const char *enr_aws_plan_attribute_name(const enr_aws_plan *plan, size_t i);
const char *enr_aws_plan_attribute_value(const enr_aws_plan *plan, size_t i);
size_t enr_aws_plan_group_count(const enr_aws_plan *plan);
const char *enr_aws_plan_group(const enr_aws_plan *plan, size_t i);
/* The Thing's OverrideSettings for a property ("ThingGroups", ...):
 * "DO_NOTHING", "REPLACE", "FAIL" or "MERGE"; NULL when not set. */
const char *enr_aws_plan_override(const enr_aws_plan *plan, const char *property);

/* Whether a certificate resource is created (present, condition true), its
 * CertificateId as evaluated and its Status ("ACTIVE" or "INACTIVE"). */
bool enr_aws_plan_has_certificate(const enr_aws_plan *plan);
const char *enr_aws_plan_certificate_id(const enr_aws_plan *plan);
const char *enr_aws_plan_certificate_status(const enr_aws_plan *plan);

/* The policies whose condition holds: each has a name (PolicyName) or a
 * document (PolicyDocument, an opaque label here), the other NULL. */
size_t enr_aws_plan_policy_count(const enr_aws_plan *plan);
const char *enr_aws_plan_policy_name(const enr_aws_plan *plan, size_t i);
const char *enr_aws_plan_policy_document(const enr_aws_plan *plan, size_t i);

size_t enr_aws_plan_config_count(const enr_aws_plan *plan);
const char *enr_aws_plan_config_name(const enr_aws_plan *plan, size_t i);
const char *enr_aws_plan_config_value(const enr_aws_plan *plan, size_t i);

/* The plan as JSON text (one line, keys in a fixed order), e.g.
 * {"thingName":"s-1","thingTypeName":null,"billingGroup":null,
 *  "attributes":{"a":"b"},"thingGroups":[],"overrideSettings":{},
 *  "certificate":{"id":"..","status":"ACTIVE"},"policies":[{"name":"p"}],
 *  "deviceConfiguration":{}}. Free with free(). */
enr_code enr_aws_plan_to_json(const enr_aws_plan *plan, char **out, enr_error *err);

#ifdef __cplusplus
}
#endif
#endif
