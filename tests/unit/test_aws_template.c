/* AWS provisioning templates: AWS's documented example shapes, every
 * intrinsic function evaluated, conditions, mappings, defaults, Number and
 * pseudo parameters, each run-time failure with its typed reason and path,
 * the bounds, and a table of templates parse must refuse (with the path
 * each message must name). Templates are written with ' for " to stay
 * readable; q() turns them into JSON. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <jansson.h>

#include "enroll/aws_template.h"

/* ---- helpers ---------------------------------------------------------- */

/* ' -> " (a template in a C string without escapes). */
static char *q(const char *s)
{
    char *out = strdup(s);
    assert_non_null(out);
    for (char *p = out; *p != '\0'; p++)
        if (*p == '\'')
            *p = '"';
    return out;
}

static enr_aws_template *parse_ok(const char *tmpl)
{
    char *json = q(tmpl);
    enr_aws_template *t = NULL;
    enr_error err = {0};
    enr_code rc = enr_aws_template_parse(json, strlen(json), &t, &err);
    if (rc != ENR_OK)
        print_error("unexpected refusal: %s\n", err.message);
    assert_int_equal(rc, ENR_OK);
    assert_non_null(t);
    free(json);
    return t;
}

static void parse_fails_raw(const char *json, size_t len, enr_code code, const char *needle)
{
    enr_aws_template *t = (enr_aws_template *)1;
    enr_error err = {0};
    enr_code rc = enr_aws_template_parse(json, len, &t, &err);
    if (rc != code || strstr(err.message, needle) == NULL)
        print_error("want %s with \"%s\", got %s: %s\n", enr_code_name(code), needle,
                    enr_code_name(rc), err.message);
    assert_int_equal(rc, code);
    assert_null(t);
    assert_non_null(strstr(err.message, needle));
}

static void parse_fails(const char *tmpl, enr_code code, const char *needle)
{
    char *json = q(tmpl);
    parse_fails_raw(json, strlen(json), code, needle);
    free(json);
}

static json_t *params_of(const char *text)
{
    if (text == NULL)
        return NULL;
    char *json = q(text);
    json_error_t jerr;
    json_t *v = json_loads(json, 0, &jerr);
    free(json);
    assert_non_null(v);
    return v;
}

static const enr_aws_pseudo PSEUDO = {
    .certificate_id = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
    .common_name = "sensor-7",
    .serial_number = "SN0007",
    .country = "DE",
    .organization = "Acme",
    .organizational_unit = "Sensors",
    .dn_qualifier = "dnq",
    .state_name = "Bayern",
    .locality = "Munich",
};

static enr_aws_plan *eval_ok(const enr_aws_template *t, const char *params)
{
    json_t *p = params_of(params);
    enr_aws_plan *plan = NULL;
    enr_error err = {0};
    enr_code rc = enr_aws_template_evaluate(t, p, &PSEUDO, &plan, &err);
    if (rc != ENR_OK)
        print_error("unexpected refusal: %s\n", err.message);
    assert_int_equal(rc, ENR_OK);
    assert_non_null(plan);
    json_decref(p);
    return plan;
}

static void eval_fails_with(const enr_aws_template *t, const char *params,
                            const enr_aws_pseudo *pseudo, enr_reason reason, const char *needle)
{
    json_t *p = params_of(params);
    enr_aws_plan *plan = (enr_aws_plan *)1;
    enr_error err = {0};
    enr_code rc = enr_aws_template_evaluate(t, p, pseudo, &plan, &err);
    if (rc != ENR_E_POLICY || err.reason != reason || strstr(err.message, needle) == NULL)
        print_error("want reason %d with \"%s\", got %s/%d: %s\n", (int)reason, needle,
                    enr_code_name(rc), (int)err.reason, err.message);
    assert_int_equal(rc, ENR_E_POLICY);
    assert_int_equal(err.reason, reason);
    assert_non_null(strstr(err.message, needle));
    assert_null(plan);
    json_decref(p);
}

static void eval_fails(const enr_aws_template *t, const char *params, enr_reason reason,
                       const char *needle)
{
    eval_fails_with(t, params, &PSEUDO, reason, needle);
}

/* The thing name a one-parameter-free template computes: the value under
 * test goes into ThingName, so every function can be judged by it. */
#define THING_WITH(name_expr)                                                                  \
    "{'Parameters': {'Serial': {'Type': 'String'}, 'Count': {'Type': 'Number', 'Default': 2},"  \
    " 'Csv': {'Type': 'String', 'Default': 'a,b,c'}, 'Region': {'Type': 'String'}},"            \
    " 'Mappings': {'Regions': {'eu': {'Group': 'eu-group', 'Code': 49},"                        \
    "  'us': {'Group': 'us-group', 'Code': 1}}},"                                               \
    " 'Conditions': {'IsEu': {'Fn::Equals': [{'Ref': 'Region'}, 'eu']}},"                       \
    " 'Resources': {'thing': {'Type': 'AWS::IoT::Thing', 'Properties': {'ThingName': " name_expr \
    "}}}}"

static void assert_thing_name(const char *name_expr, const char *params, const char *want)
{
    char tmpl[4096];
    snprintf(tmpl, sizeof tmpl, THING_WITH("%s"), name_expr);
    enr_aws_template *t = parse_ok(tmpl);
    enr_aws_plan *plan = eval_ok(t, params);
    assert_string_equal(enr_aws_plan_thing_name(plan), want);
    enr_aws_plan_free(plan);
    enr_aws_template_free(t);
}

static enr_aws_template *thing_template(const char *name_expr)
{
    char tmpl[4096];
    snprintf(tmpl, sizeof tmpl, THING_WITH("%s"), name_expr);
    return parse_ok(tmpl);
}

/* ---- AWS's documented shapes ------------------------------------------ */

/* The fleet provisioning template of AWS's developer guide ("Provisioning
 * devices that don't have device certificates using fleet provisioning"),
 * including the pseudo parameter it declares as a String parameter. */
static const char AWS_FLEET_EXAMPLE[] =
    "{'Parameters': {'SerialNumber': {'Type': 'String'},"
    "  'AWS::IoT::Certificate::Id': {'Type': 'String'}},"
    " 'Resources': {"
    "  'certificate': {'Properties': {'CertificateId': {'Ref': 'AWS::IoT::Certificate::Id'},"
    "    'Status': 'Active'}, 'Type': 'AWS::IoT::Certificate'},"
    "  'policy': {'Properties': {'PolicyName': 'MyIotPolicy'}, 'Type': 'AWS::IoT::Policy'},"
    "  'thing': {'OverrideSettings': {'AttributePayload': 'MERGE', 'ThingGroups': 'DO_NOTHING',"
    "    'ThingTypeName': 'REPLACE'},"
    "   'Properties': {'AttributePayload': {}, 'ThingGroups': [],"
    "    'ThingName': {'Ref': 'SerialNumber'}, 'ThingTypeName': 'VirtualThings'},"
    "   'Type': 'AWS::IoT::Thing'}}}";

static void test_aws_fleet_example(void **state)
{
    (void)state;
    enr_aws_template *t = parse_ok(AWS_FLEET_EXAMPLE);
    assert_int_equal(enr_aws_template_parameter_count(t), 2);
    assert_string_equal(enr_aws_template_parameter_name(t, 0), "SerialNumber");
    assert_int_equal(enr_aws_template_parameter_type(t, 0), ENR_AWS_PARAM_STRING);
    assert_null(enr_aws_template_parameter_default(t, 0));
    /* The device cannot choose its certificate id: the pseudo value wins. */
    enr_aws_plan *plan = eval_ok(t, "{'SerialNumber': 'dev-42', 'AWS::IoT::Certificate::Id': 'x'}");
    assert_string_equal(enr_aws_plan_thing_name(plan), "dev-42");
    assert_string_equal(enr_aws_plan_thing_type(plan), "VirtualThings");
    assert_null(enr_aws_plan_billing_group(plan));
    assert_int_equal(enr_aws_plan_attribute_count(plan), 0);
    assert_int_equal(enr_aws_plan_group_count(plan), 0);
    assert_true(enr_aws_plan_has_certificate(plan));
    assert_string_equal(enr_aws_plan_certificate_id(plan), PSEUDO.certificate_id);
    assert_string_equal(enr_aws_plan_certificate_status(plan), "ACTIVE");
    assert_int_equal(enr_aws_plan_policy_count(plan), 1);
    assert_string_equal(enr_aws_plan_policy_name(plan, 0), "MyIotPolicy");
    assert_null(enr_aws_plan_policy_document(plan, 0));
    assert_string_equal(enr_aws_plan_override(plan, "AttributePayload"), "MERGE");
    assert_string_equal(enr_aws_plan_override(plan, "ThingGroups"), "DO_NOTHING");
    assert_string_equal(enr_aws_plan_override(plan, "ThingTypeName"), "REPLACE");
    assert_null(enr_aws_plan_override(plan, "BillingGroup"));
    char *json = NULL;
    assert_int_equal(enr_aws_plan_to_json(plan, &json, NULL), ENR_OK);
    assert_non_null(strstr(json, "\"thingName\":\"dev-42\""));
    assert_non_null(strstr(json, "\"status\":\"ACTIVE\""));
    assert_non_null(strstr(json, "\"policies\":[{\"name\":\"MyIotPolicy\"}]"));
    free(json);
    enr_aws_plan_free(plan);
    /* The device left out its serial number. */
    eval_fails(t, "{}", ENR_R_PARAMETER_MISSING,
               "Resources.thing.Properties.ThingName: the parameter \"SerialNumber\" was not "
               "given and has no default");
    enr_aws_template_free(t);
}

/* The template-body example of AWS's "Provisioning templates" page:
 * Fn::Join in names, attributes, groups, a billing group, a policy
 * document, and a device configuration through Fn::FindInMap. */
static const char AWS_TEMPLATE_EXAMPLE[] =
    "{'Parameters': {'ThingName': {'Type': 'String'}, 'SerialNumber': {'Type': 'String'},"
    "  'DeviceLocation': {'Type': 'String'}},"
    " 'Mappings': {'LocationTable': {'Seattle': {'LocationUrl': 'https://example.aws'}}},"
    " 'Resources': {"
    "  'thing': {'Type': 'AWS::IoT::Thing', 'Properties': {"
    "    'AttributePayload': {'version': 'v1', 'serialNumber': 'serialNumber'},"
    "    'ThingName': {'Fn::Join': ['', ['ThingPrefix_', {'Ref': 'SerialNumber'}]]},"
    "    'ThingTypeName': {'Fn::Join': ['', ['ThingTypePrefix_', {'Ref': 'ThingName'}]]},"
    "    'ThingGroups': ['v1-lightbulbs', 'WA'], 'BillingGroup': 'LightBulbBillingGroup'},"
    "   'OverrideSettings': {'AttributePayload': 'MERGE', 'ThingTypeName': 'REPLACE',"
    "    'ThingGroups': 'DO_NOTHING'}},"
    "  'certificate': {'Type': 'AWS::IoT::Certificate', 'Properties': {"
    "    'CertificateId': {'Ref': 'AWS::IoT::Certificate::Id'}, 'Status': 'Active'}},"
    "  'policy': {'Type': 'AWS::IoT::Policy', 'Properties': {'PolicyDocument': "
    "    '{ \\'Version\\': \\'2012-10-17\\', \\'Statement\\': [] }'}}},"
    " 'DeviceConfiguration': {'FallbackUrl': 'https://www.example.com/test-site',"
    "  'LocationUrl': {'Fn::FindInMap': ['LocationTable', {'Ref': 'DeviceLocation'},"
    "   'LocationUrl']}}}";

static void test_aws_template_example(void **state)
{
    (void)state;
    /* q() would turn the policy document's \' into \", which is what JSON wants. */
    enr_aws_template *t = parse_ok(AWS_TEMPLATE_EXAMPLE);
    enr_aws_plan *plan =
        eval_ok(t, "{'ThingName': 'bulb', 'SerialNumber': '123', 'DeviceLocation': 'Seattle',"
                   " 'Unrelated': 'ignored'}");
    assert_string_equal(enr_aws_plan_thing_name(plan), "ThingPrefix_123");
    assert_string_equal(enr_aws_plan_thing_type(plan), "ThingTypePrefix_bulb");
    assert_string_equal(enr_aws_plan_billing_group(plan), "LightBulbBillingGroup");
    assert_int_equal(enr_aws_plan_attribute_count(plan), 2);
    assert_string_equal(enr_aws_plan_attribute_name(plan, 0), "version");
    assert_string_equal(enr_aws_plan_attribute_value(plan, 0), "v1");
    assert_string_equal(enr_aws_plan_attribute_name(plan, 1), "serialNumber");
    assert_int_equal(enr_aws_plan_group_count(plan), 2);
    assert_string_equal(enr_aws_plan_group(plan, 0), "v1-lightbulbs");
    assert_string_equal(enr_aws_plan_group(plan, 1), "WA");
    assert_null(enr_aws_plan_group(plan, 2));
    assert_int_equal(enr_aws_plan_policy_count(plan), 1);
    assert_null(enr_aws_plan_policy_name(plan, 0));
    assert_string_equal(enr_aws_plan_policy_document(plan, 0),
                        "{ \"Version\": \"2012-10-17\", \"Statement\": [] }");
    assert_int_equal(enr_aws_plan_config_count(plan), 2);
    assert_string_equal(enr_aws_plan_config_name(plan, 1), "LocationUrl");
    assert_string_equal(enr_aws_plan_config_value(plan, 1), "https://example.aws");
    enr_aws_plan_free(plan);
    /* A location the table does not have: the template fails, not the device. */
    eval_fails(t, "{'ThingName': 'bulb', 'SerialNumber': '123', 'DeviceLocation': 'Paris'}",
               ENR_R_TEMPLATE_EVALUATION,
               "DeviceConfiguration.LocationUrl.Fn::FindInMap[1]: there is no top-level key "
               "\"Paris\" in Mappings");
    enr_aws_template_free(t);
}

/* ---- intrinsic functions ---------------------------------------------- */

static void test_ref(void **state)
{
    (void)state;
    assert_thing_name("{'Ref': 'Serial'}", "{'Serial': 's-1'}", "s-1");
    /* A Number parameter is its text; defaults apply. */
    assert_thing_name("{'Ref': 'Count'}", "{'Count': '17'}", "17");
    assert_thing_name("{'Ref': 'Count'}", "{}", "2");
    assert_thing_name("{'Ref': 'AWS::IoT::Certificate::CommonName'}", "{}", "sensor-7");
    assert_thing_name("12", "{}", "12");
}

static void test_pseudo_parameters(void **state)
{
    (void)state;
    assert_thing_name("{'Fn::Join': [':', [{'Ref': 'AWS::IoT::Certificate::Country'},"
                      " {'Ref': 'AWS::IoT::Certificate::Organization'},"
                      " {'Ref': 'AWS::IoT::Certificate::OrganizationalUnit'},"
                      " {'Ref': 'AWS::IoT::Certificate::DistinguishedNameQualifier'},"
                      " {'Ref': 'AWS::IoT::Certificate::StateName'},"
                      " {'Ref': 'AWS::IoT::Certificate::Locality'},"
                      " {'Ref': 'AWS::IoT::Certificate::SerialNumber'}]]}",
                      "{}", "DE:Acme:Sensors:dnq:Bayern:Munich:SN0007");
    /* A certificate without a country: missing, like a parameter. */
    enr_aws_template *t = thing_template("{'Ref': 'AWS::IoT::Certificate::Country'}");
    enr_aws_pseudo none = {.certificate_id = "x"};
    eval_fails_with(t, "{}", &none, ENR_R_PARAMETER_MISSING,
                    "Resources.thing.Properties.ThingName: AWS::IoT::Certificate::Country has "
                    "no value");
    eval_fails_with(t, "{}", NULL, ENR_R_PARAMETER_MISSING, "Country has no value");
    enr_aws_template_free(t);
}

static void test_join(void **state)
{
    (void)state;
    assert_thing_name("{'Fn::Join': ['-', ['a', {'Ref': 'Serial'}, 3]]}", "{'Serial': 'x'}",
                      "a-x-3");
    assert_thing_name("{'Fn::Join': ['', ['only']]}", "{}", "only");
    /* Join over a Split: a list from a function. */
    assert_thing_name("{'Fn::Join': ['_', {'Fn::Split': [',', {'Ref': 'Csv'}]}]}", "{}",
                      "a_b_c");
    /* Join of nothing is empty, and an empty thing name is refused. */
    enr_aws_template *t = thing_template("{'Fn::Join': ['-', []]}");
    eval_fails(t, "{}", ENR_R_TEMPLATE_EVALUATION,
               "Resources.thing.Properties.ThingName: \"\" is not a valid name");
    enr_aws_template_free(t);
}

static void test_select(void **state)
{
    (void)state;
    assert_thing_name("{'Fn::Select': [1, ['a', 'b', 'c']]}", "{}", "b");
    assert_thing_name("{'Fn::Select': ['2', {'Fn::Split': [',', {'Ref': 'Csv'}]}]}", "{}", "c");
    /* The index from a Number parameter. */
    assert_thing_name("{'Fn::Select': [{'Ref': 'Count'}, ['a', 'b', 'c']]}", "{}", "c");
    enr_aws_template *t = thing_template("{'Fn::Select': [{'Ref': 'Count'}, ['a', 'b', 'c']]}");
    eval_fails(t, "{'Count': '3'}", ENR_R_TEMPLATE_EVALUATION,
               "Resources.thing.Properties.ThingName.Fn::Select: the index 3 is out of range: "
               "the list has 3 items");
    eval_fails(t, "{'Count': '1.5'}", ENR_R_TEMPLATE_EVALUATION,
               "Resources.thing.Properties.ThingName.Fn::Select[0]: the index \"1.5\" is not a "
               "non-negative integer");
    eval_fails(t, "{'Count': '-1'}", ENR_R_TEMPLATE_EVALUATION, "is not a non-negative integer");
    enr_aws_template_free(t);
    t = thing_template("{'Fn::Select': [5, {'Fn::Split': [',', {'Ref': 'Csv'}]}]}");
    eval_fails(t, "{'Csv': 'one'}", ENR_R_TEMPLATE_EVALUATION,
               "the index 5 is out of range: the list has 1 item");
    enr_aws_template_free(t);
}

static void test_split(void **state)
{
    (void)state;
    assert_thing_name("{'Fn::Select': [2, {'Fn::Split': ['::', 'a::b::c::d']}]}", "{}", "c");
    /* Empty pieces are kept. */
    assert_thing_name("{'Fn::Join': ['-', {'Fn::Split': [',', {'Ref': 'Csv'}]}]}",
                      "{'Csv': 'a,,b,'}", "a--b-");
    /* A split into more than ENR_AWS_LIST_MAX pieces. */
    enr_aws_template *t = thing_template("{'Fn::Select': [0, {'Fn::Split': [',', {'Ref': 'Csv'}]}]}");
    char params[1024] = "{'Csv': '";
    for (int i = 0; i < ENR_AWS_LIST_MAX + 1; i++)
        strcat(params, ",");
    strcat(params, "'}");
    eval_fails(t, params, ENR_R_TEMPLATE_EVALUATION,
               "Resources.thing.Properties.ThingName.Fn::Select[1].Fn::Split: the list has more "
               "than 100 items");
    enr_aws_template_free(t);
}

static void test_find_in_map(void **state)
{
    (void)state;
    assert_thing_name("{'Fn::FindInMap': ['Regions', {'Ref': 'Region'}, 'Group']}",
                      "{'Region': 'us'}", "us-group");
    /* A number in a mapping is its text. */
    assert_thing_name("{'Fn::FindInMap': ['Regions', 'eu', 'Code']}", "{}", "49");
    enr_aws_template *t =
        thing_template("{'Fn::FindInMap': ['Regions', {'Ref': 'Region'}, {'Ref': 'Serial'}]}");
    eval_fails(t, "{'Region': 'ap', 'Serial': 'Group'}", ENR_R_TEMPLATE_EVALUATION,
               "Resources.thing.Properties.ThingName.Fn::FindInMap[1]: there is no top-level key "
               "\"ap\" in Mappings");
    eval_fails(t, "{'Region': 'eu', 'Serial': 'Nope'}", ENR_R_TEMPLATE_EVALUATION,
               "Fn::FindInMap[2]: there is no second-level key \"Nope\"");
    enr_aws_template_free(t);
}

static void test_if(void **state)
{
    (void)state;
    const char *expr = "{'Fn::If': ['IsEu', {'Fn::FindInMap': ['Regions', 'eu', 'Group']},"
                       " {'Ref': 'Serial'}]}";
    assert_thing_name(expr, "{'Region': 'eu'}", "eu-group");
    /* The branch not taken is never read: Serial may be missing. */
    assert_thing_name(expr, "{'Region': 'eu'}", "eu-group");
    assert_thing_name(expr, "{'Region': 'us', 'Serial': 'us-1'}", "us-1");
    enr_aws_template *t = thing_template(expr);
    eval_fails(t, "{'Region': 'us'}", ENR_R_PARAMETER_MISSING,
               "Resources.thing.Properties.ThingName.Fn::If[2]: the parameter \"Serial\"");
    /* The condition's own failure is reported at the condition. */
    eval_fails(t, "{}", ENR_R_PARAMETER_MISSING,
               "Conditions.IsEu.Fn::Equals[0]: the parameter \"Region\" was not given");
    enr_aws_template_free(t);
}

static void test_sub(void **state)
{
    (void)state;
    assert_thing_name("{'Fn::Sub': 'dev-${Serial}-${AWS::IoT::Certificate::CommonName}'}",
                      "{'Serial': '9'}", "dev-9-sensor-7");
    assert_thing_name("{'Fn::Sub': 'plain'}", "{}", "plain");
    /* ${!x} is a literal "${x}"; here it lands in device configuration,
     * where any text is fine. */
    enr_aws_template *t = parse_ok(
        "{'Parameters': {'Serial': {'Type': 'String'}},"
        " 'Resources': {'thing': {'Type': 'AWS::IoT::Thing', 'Properties': {'ThingName': 't'}}},"
        " 'DeviceConfiguration': {'Topic': {'Fn::Sub': 'a/${Serial}/${!Literal}/$x'}}}");
    enr_aws_plan *plan = eval_ok(t, "{'Serial': 'S'}");
    assert_string_equal(enr_aws_plan_config_value(plan, 0), "a/S/${Literal}/$x");
    enr_aws_plan_free(plan);
    eval_fails(t, "{}", ENR_R_PARAMETER_MISSING,
               "DeviceConfiguration.Topic.Fn::Sub: the parameter \"Serial\" was not given");
    enr_aws_template_free(t);
}

/* ---- conditions ------------------------------------------------------- */

static const char CONDITIONS_TEMPLATE[] =
    "{'Parameters': {'Env': {'Type': 'String', 'Default': 'prod'},"
    "  'Tier': {'Type': 'String', 'Default': 'gold'}, 'Beta': {'Type': 'String'}},"
    " 'Conditions': {"
    "  'IsProd': {'Fn::Equals': [{'Ref': 'Env'}, 'prod']},"
    "  'IsGold': {'Fn::Equals': ['gold', {'Ref': 'Tier'}]},"
    "  'ProdGold': {'Fn::And': [{'Condition': 'IsProd'}, {'Condition': 'IsGold'}]},"
    "  'ProdOrGold': {'Fn::Or': [{'Condition': 'IsProd'}, {'Condition': 'IsGold'},"
    "    {'Fn::Equals': ['x', 'y']}]},"
    "  'NotProd': {'Fn::Not': [{'Condition': 'IsProd'}]},"
    "  'IsBeta': {'Fn::Equals': [{'Ref': 'Beta'}, 'yes']}},"
    " 'Resources': {"
    "  'thing': {'Type': 'AWS::IoT::Thing', 'Properties': {'ThingName': 't',"
    "    'AttributePayload': {"
    "      'and': {'Fn::If': ['ProdGold', 'y', 'n']}, 'or': {'Fn::If': ['ProdOrGold', 'y', 'n']},"
    "      'not': {'Fn::If': ['NotProd', 'y', 'n']}},"
    "    'ThingGroups': {'Fn::If': ['IsProd', ['prod', 'all'], ['all']]}}},"
    "  'cert': {'Type': 'AWS::IoT::Certificate', 'Condition': 'IsGold',"
    "    'Properties': {'CertificateId': {'Ref': 'AWS::IoT::Certificate::Id'}}},"
    "  'prodPolicy': {'Type': 'AWS::IoT::Policy', 'Condition': 'IsProd',"
    "    'Properties': {'PolicyName': 'prod-policy'}},"
    "  'betaPolicy': {'Type': 'AWS::IoT::Policy', 'Condition': 'IsBeta',"
    "    'Properties': {'PolicyName': 'beta-policy'}},"
    "  'devPolicy': {'Type': 'AWS::IoT::Policy', 'Condition': 'NotProd',"
    "    'Properties': {'PolicyName': 'dev-policy'}}}}";

static void assert_attrs(const enr_aws_plan *plan, const char *and_, const char *or_,
                         const char *not_)
{
    assert_string_equal(enr_aws_plan_attribute_value(plan, 0), and_);
    assert_string_equal(enr_aws_plan_attribute_value(plan, 1), or_);
    assert_string_equal(enr_aws_plan_attribute_value(plan, 2), not_);
}

static void test_conditions(void **state)
{
    (void)state;
    enr_aws_template *t = parse_ok(CONDITIONS_TEMPLATE);
    /* Beta is only read by the beta policy's condition. */
    enr_aws_plan *plan = eval_ok(t, "{'Beta': 'yes'}");
    assert_attrs(plan, "y", "y", "n");
    assert_int_equal(enr_aws_plan_group_count(plan), 2);
    assert_true(enr_aws_plan_has_certificate(plan));
    assert_null(enr_aws_plan_certificate_status(plan));
    assert_int_equal(enr_aws_plan_policy_count(plan), 2);
    assert_string_equal(enr_aws_plan_policy_name(plan, 0), "prod-policy");
    assert_string_equal(enr_aws_plan_policy_name(plan, 1), "beta-policy");
    enr_aws_plan_free(plan);

    plan = eval_ok(t, "{'Env': 'dev', 'Tier': 'gold', 'Beta': 'no'}");
    assert_attrs(plan, "n", "y", "y");
    assert_int_equal(enr_aws_plan_group_count(plan), 1);
    assert_int_equal(enr_aws_plan_policy_count(plan), 1);
    assert_string_equal(enr_aws_plan_policy_name(plan, 0), "dev-policy");
    enr_aws_plan_free(plan);

    plan = eval_ok(t, "{'Env': 'dev', 'Tier': 'silver', 'Beta': 'no'}");
    assert_attrs(plan, "n", "n", "y");
    assert_false(enr_aws_plan_has_certificate(plan));
    assert_null(enr_aws_plan_certificate_id(plan));
    char *json = NULL;
    assert_int_equal(enr_aws_plan_to_json(plan, &json, NULL), ENR_OK);
    assert_non_null(strstr(json, "\"certificate\":null"));
    free(json);
    enr_aws_plan_free(plan);

    /* A missing parameter read by a resource's condition. */
    eval_fails(t, "{}", ENR_R_PARAMETER_MISSING,
               "Conditions.IsBeta.Fn::Equals[0]: the parameter \"Beta\" was not given");
    enr_aws_template_free(t);
}

/* ---- parameters ------------------------------------------------------- */

static void test_parameters(void **state)
{
    (void)state;
    enr_aws_template *t = parse_ok(
        "{'Parameters': {'Name': {'Type': 'String', 'Default': 'dflt'},"
        "  'N': {'Type': 'Number', 'Default': 1.5}, 'M': {'Type': 'Number', 'Default': '-2e3'},"
        "  'I': {'Type': 'Number'}},"
        " 'Resources': {'thing': {'Type': 'AWS::IoT::Thing', 'Properties': {'ThingName': "
        "  {'Fn::Join': ['_', [{'Ref': 'Name'}, {'Ref': 'I'}]]}}}},"
        " 'DeviceConfiguration': {'n': {'Ref': 'N'}}}");
    assert_int_equal(enr_aws_template_parameter_count(t), 4);
    assert_string_equal(enr_aws_template_parameter_default(t, 0), "dflt");
    assert_int_equal(enr_aws_template_parameter_type(t, 1), ENR_AWS_PARAM_NUMBER);
    assert_string_equal(enr_aws_template_parameter_default(t, 1), "1.5");
    assert_string_equal(enr_aws_template_parameter_default(t, 2), "-2e3");
    assert_null(enr_aws_template_parameter_default(t, 3));
    assert_null(enr_aws_template_parameter_name(t, 4));
    enr_aws_plan *plan = eval_ok(t, "{'I': '0'}");
    assert_string_equal(enr_aws_plan_thing_name(plan), "dflt_0");
    assert_string_equal(enr_aws_plan_config_value(plan, 0), "1.5");
    enr_aws_plan_free(plan);
    plan = eval_ok(t, "{'I': '-12', 'Name': 'given', 'N': '6.02e23'}");
    assert_string_equal(enr_aws_plan_thing_name(plan), "given_-12");
    assert_string_equal(enr_aws_plan_config_value(plan, 0), "6.02e23");
    enr_aws_plan_free(plan);
    /* Wrong types, judged before anything is evaluated, even when unused. */
    eval_fails(t, "{'I': 'twelve'}", ENR_R_PARAMETER_INVALID,
               "parameters.I: \"twelve\" is not a number (the parameter is a Number)");
    eval_fails(t, "{'I': '1', 'M': '01'}", ENR_R_PARAMETER_INVALID, "parameters.M: \"01\"");
    eval_fails(t, "{'I': 12}", ENR_R_PARAMETER_INVALID,
               "parameters.I: a parameter's value is a string, not a number");
    eval_fails(t, "{'I': '1', 'Name': null}", ENR_R_PARAMETER_INVALID, "not null");
    eval_fails(t, "{'Name': 'x'}", ENR_R_PARAMETER_MISSING, "the parameter \"I\" was not given");
    /* NUL inside a value. */
    json_t *p = json_pack("{s:s%}", "I", "1\0002", (size_t)3);
    enr_aws_plan *none = NULL;
    enr_error err = {0};
    assert_int_equal(enr_aws_template_evaluate(t, p, NULL, &none, &err), ENR_E_POLICY);
    assert_int_equal(err.reason, ENR_R_PARAMETER_INVALID);
    assert_non_null(strstr(err.message, "NUL"));
    json_decref(p);
    /* Not an object at all: the caller's mistake. */
    p = json_array();
    assert_int_equal(enr_aws_template_evaluate(t, p, NULL, &none, &err), ENR_E_USAGE);
    json_decref(p);
    assert_int_equal(enr_aws_template_evaluate(NULL, NULL, NULL, &none, &err), ENR_E_USAGE);
    assert_int_equal(enr_aws_template_evaluate(t, NULL, NULL, NULL, &err), ENR_E_USAGE);
    /* NULL parameters: defaults only. */
    assert_int_equal(enr_aws_template_evaluate(t, NULL, NULL, &none, &err), ENR_E_POLICY);
    assert_int_equal(err.reason, ENR_R_PARAMETER_MISSING);
    enr_aws_template_free(t);
}

/* ---- run-time checks of results -------------------------------------- */

static void test_result_rules(void **state)
{
    (void)state;
    enr_aws_template *t = parse_ok(
        "{'Parameters': {'A': {'Type': 'String'}, 'B': {'Type': 'String', 'Default': 'ok'},"
        "  'G': {'Type': 'String', 'Default': 'g1'}, 'S': {'Type': 'String', 'Default': 'ACTIVE'},"
        "  'P': {'Type': 'String', 'Default': 'pol'}},"
        " 'Resources': {'thing': {'Type': 'AWS::IoT::Thing', 'Properties': {"
        "   'ThingName': {'Ref': 'A'}, 'ThingTypeName': {'Ref': 'B'}, 'BillingGroup': {'Ref': 'B'},"
        "   'AttributePayload': {'attr': {'Ref': 'B'}},"
        "   'ThingGroups': {'Fn::Split': ['|', {'Ref': 'G'}]}}},"
        "  'c': {'Type': 'AWS::IoT::Certificate', 'Properties': {'CertificateId': 'id',"
        "   'Status': {'Ref': 'S'}}},"
        "  'p': {'Type': 'AWS::IoT::Policy', 'Properties': {'PolicyName': {'Ref': 'P'}}}}}");
    eval_fails(t, "{'A': 'has space'}", ENR_R_TEMPLATE_EVALUATION,
               "Resources.thing.Properties.ThingName: \"has space\" is not a valid name: 1..128 "
               "of [a-zA-Z0-9:_-]");
    char long_name[256];
    snprintf(long_name, sizeof long_name, "{'A': '%0129d'}", 0);
    eval_fails(t, long_name, ENR_R_TEMPLATE_EVALUATION, "ThingName: \"0000");
    snprintf(long_name, sizeof long_name, "{'A': '%0128d'}", 0);
    enr_aws_plan *plan = eval_ok(t, long_name);
    assert_string_equal(enr_aws_plan_certificate_status(plan), "ACTIVE");
    enr_aws_plan_free(plan);
    eval_fails(t, "{'A': 'a', 'B': 'b/c'}", ENR_R_TEMPLATE_EVALUATION,
               "Resources.thing.Properties.ThingTypeName: \"b/c\" is not a valid name");
    eval_fails(t, "{'A': 'a', 'B': 'b c'}", ENR_R_TEMPLATE_EVALUATION,
               "Resources.thing.Properties.ThingTypeName");
    eval_fails(t, "{'A': 'a', 'G': 'g1|g 2'}", ENR_R_TEMPLATE_EVALUATION,
               "Resources.thing.Properties.ThingGroups[1]: \"g 2\" is not a valid name");
    eval_fails(t, "{'A': 'a', 'G': 'a|b|c|d|e|f|g|h|i|j|k'}", ENR_R_TEMPLATE_EVALUATION,
               "Resources.thing.Properties.ThingGroups: 11 groups (a thing is in at most 10)");
    eval_fails(t, "{'A': 'a', 'S': 'REVOKED'}", ENR_R_TEMPLATE_EVALUATION,
               "Resources.c.Properties.Status: Status is \"ACTIVE\" or \"INACTIVE\", not "
               "\"REVOKED\"");
    plan = eval_ok(t, "{'A': 'a', 'S': 'inactive'}");
    assert_string_equal(enr_aws_plan_certificate_status(plan), "INACTIVE");
    assert_string_equal(enr_aws_plan_certificate_id(plan), "id");
    enr_aws_plan_free(plan);
    eval_fails(t, "{'A': 'a', 'P': 'bad policy'}", ENR_R_TEMPLATE_EVALUATION,
               "Resources.p.Properties.PolicyName: \"bad policy\" is not a valid policy name");
    enr_aws_template_free(t);

    /* Attribute values follow AWS's pattern; a result is bounded. */
    t = parse_ok("{'Parameters': {'V': {'Type': 'String'}},"
                 " 'Resources': {'thing': {'Type': 'AWS::IoT::Thing', 'Properties': {"
                 "  'ThingName': 't', 'AttributePayload': {'a': {'Ref': 'V'}}}}},"
                 " 'DeviceConfiguration': {'big': {'Fn::Join': ['', [{'Ref': 'V'}, {'Ref': 'V'}]]}}}");
    eval_fails(t, "{'V': 'x y'}", ENR_R_TEMPLATE_EVALUATION,
               "Resources.thing.Properties.AttributePayload.a: \"x y\" is not a valid attribute "
               "value");
    plan = eval_ok(t, "{'V': ''}");
    assert_string_equal(enr_aws_plan_attribute_value(plan, 0), "");
    enr_aws_plan_free(plan);
    /* 801 bytes: too long for an attribute. */
    char *params = malloc(ENR_AWS_STRING_MAX + 64);
    assert_non_null(params);
    snprintf(params, ENR_AWS_STRING_MAX + 64, "{'V': '%0801d'}", 0);
    eval_fails(t, params, ENR_R_TEMPLATE_EVALUATION, "AttributePayload.a");
    enr_aws_template_free(t);
    /* A Join of two values of 2100 bytes each is over ENR_AWS_STRING_MAX. */
    t = parse_ok("{'Parameters': {'V': {'Type': 'String'}},"
                 " 'Resources': {'thing': {'Type': 'AWS::IoT::Thing', 'Properties': {"
                 "  'ThingName': 't'}}},"
                 " 'DeviceConfiguration': {'big': {'Fn::Join': ['', [{'Ref': 'V'}, {'Ref': 'V'}]]}}}");
    snprintf(params, ENR_AWS_STRING_MAX + 64, "{'V': '%02100d'}", 0);
    eval_fails(t, params, ENR_R_TEMPLATE_EVALUATION,
               "DeviceConfiguration.big.Fn::Join: the result is longer than 4096 bytes");
    /* A parameter over the bound is the device's fault. */
    snprintf(params, ENR_AWS_STRING_MAX + 64, "{'V': '%04097d'}", 0);
    eval_fails(t, params, ENR_R_PARAMETER_INVALID, "parameters.V: the value is 4097 bytes");
    free(params);
    enr_aws_template_free(t);
}

/* ---- parse refusals --------------------------------------------------- */

#define MIN_THING "'thing': {'Type': 'AWS::IoT::Thing', 'Properties': {'ThingName': 't'}}"
#define WITH_THING(props) "{'Resources': {'thing': {'Type': 'AWS::IoT::Thing', 'Properties': " props "}}}"
#define P_SERIAL "'Parameters': {'Serial': {'Type': 'String'}}, "

typedef struct bad_case {
    const char *tmpl;
    enr_code code;
    const char *needle; /* the path (and words) the message must hold */
} bad_case;

static const bad_case BAD[] = {
    /* JSON and sections */
    {"{'Resources': ", ENR_E_PARSE, "not JSON: line 1"},
    {"[]", ENR_E_PARSE, "the template is a list, not an object"},
    {"{'Resources': {}, 'Resources': {}}", ENR_E_PARSE, "duplicate"},
    {"{'Outputs': {}, 'Resources': {" MIN_THING "}}", ENR_E_PARSE, "Outputs: unknown section"},
    {"{'Parameters': {}}", ENR_E_PARSE, "no Resources section"},
    {"{'Resources': {}}", ENR_E_PARSE, "Resources: no resource of Type AWS::IoT::Thing"},
    {"{'Resources': []}", ENR_E_PARSE, "Resources: Resources must be an object, not a list"},
    /* the example of the brief: a Ref deep inside a Join */
    {"{" P_SERIAL "'Resources': {'thing': {'Type': 'AWS::IoT::Thing', 'Properties': {'ThingName': "
              "{'Fn::Join': ['', ['a', ['x'], {'Ref': 'Serial'}]]}}}}}",
     ENR_E_PARSE, "Resources.thing.Properties.ThingName.Fn::Join[1][1]: a list inside a list"},
    {"{" P_SERIAL "'Resources': {'thing': {'Type': 'AWS::IoT::Thing', 'Properties': {'ThingName': "
              "{'Fn::Join': ['', ['a', 'b', {'Ref': 'Serail'}]]}}}}}",
     ENR_E_PARSE,
     "Resources.thing.Properties.ThingName.Fn::Join[1][2]: Ref to \"Serail\", which is not a "
     "parameter"},
    {WITH_THING("{'ThingName': {'Ref': 'AWS::Region'}}"), ENR_E_PARSE,
     "ThingName: Ref to \"AWS::Region\", which is not a parameter (nor a pseudo parameter"},
    {WITH_THING("{'ThingName': {'Ref': ['x']}}"), ENR_E_PARSE,
     "ThingName: Ref takes a parameter's name, not a list"},
    /* parameters */
    {"{'Parameters': {'a b': {'Type': 'String'}}, 'Resources': {" MIN_THING "}}", ENR_E_PARSE,
     "Parameters.a b: a parameter's name is"},
    {"{'Parameters': {'A': {'Type': 'List'}}, 'Resources': {" MIN_THING "}}", ENR_E_UNSUPPORTED,
     "Parameters.A: Type \"List\" is not supported"},
    {"{'Parameters': {'A': {}}, 'Resources': {" MIN_THING "}}", ENR_E_PARSE,
     "Parameters.A: Type must be \"String\" or \"Number\" (it is missing)"},
    {"{'Parameters': {'A': {'Type': 'String', 'AllowedValues': []}}, 'Resources': {" MIN_THING
     "}}", ENR_E_PARSE, "Parameters.A: unknown key \"AllowedValues\""},
    {"{'Parameters': {'A': {'Type': 'Number', 'Default': 'x1'}}, 'Resources': {" MIN_THING "}}",
     ENR_E_PARSE, "Parameters.A.Default: \"x1\" is not a number"},
    {"{'Parameters': {'A': {'Type': 'String', 'Default': true}}, 'Resources': {" MIN_THING "}}",
     ENR_E_PARSE, "Parameters.A.Default: a default is a string or a number, not a boolean"},
    /* functions and their shapes */
    {WITH_THING("{'ThingName': {'Fn::Join': ['']}}"), ENR_E_PARSE,
     "ThingName.Fn::Join: Fn::Join takes [delimiter, [values...]], not a list that is too short"},
    {WITH_THING("{'ThingName': {'Fn::Join': [{'Ref': 'x'}, []]}}"), ENR_E_PARSE,
     "ThingName.Fn::Join[0]: the delimiter must be a literal string, not an object"},
    {WITH_THING("{'ThingName': {'Fn::Join': ['', 'abc']}}"), ENR_E_PARSE,
     "ThingName.Fn::Join[1]: expected a list of strings here, but this is a string"},
    {WITH_THING("{'ThingName': {'Fn::Select': [-1, ['a']]}}"), ENR_E_PARSE,
     "ThingName.Fn::Select[0]: the index -1 is negative"},
    {WITH_THING("{'ThingName': {'Fn::Select': [1, ['a']]}}"), ENR_E_PARSE,
     "ThingName.Fn::Select[0]: the index 1 is out of range: the list has 1 items"},
    {WITH_THING("{'ThingName': {'Fn::Select': [0, 'a']}}"), ENR_E_PARSE,
     "ThingName.Fn::Select[1]: expected a list of strings"},
    {WITH_THING("{'ThingName': {'Fn::Split': [',', 'a,b']}}"), ENR_E_PARSE,
     "ThingName: expected a string here, but this is a list of strings"},
    {WITH_THING("{'ThingName': {'Fn::Select': [0, {'Fn::Split': ['', 'a']}]}}"), ENR_E_PARSE,
     "ThingName.Fn::Select[1].Fn::Split[0]: the delimiter is empty"},
    {WITH_THING("{'ThingName': {'Fn::Select': [0, {'Fn::Split': [',', ['a']]}]}}"), ENR_E_PARSE,
     "Fn::Split[1]: expected a string here, but this is a list of strings"},
    {WITH_THING("{'ThingName': {'Fn::FindInMap': ['M', 'a', 'b']}}"), ENR_E_PARSE,
     "ThingName.Fn::FindInMap[0]: there is no mapping \"M\" in Mappings"},
    {"{'Mappings': {'M': {'a': {'b': 'x'}}}, 'Resources': {'thing': {'Type': 'AWS::IoT::Thing',"
     " 'Properties': {'ThingName': {'Fn::FindInMap': ['M', 'a', 'c']}}}}}",
     ENR_E_PARSE, "ThingName.Fn::FindInMap[2]: there is no second-level key \"c\""},
    {WITH_THING("{'ThingName': {'Fn::FindInMap': ['M', 'a']}}"), ENR_E_PARSE,
     "Fn::FindInMap: Fn::FindInMap takes [map, top-level key, second-level key]"},
    {WITH_THING("{'ThingName': {'Fn::If': ['Nope', 'a', 'b']}}"), ENR_E_PARSE,
     "ThingName.Fn::If[0]: there is no condition \"Nope\""},
    {"{'Conditions': {'C': {'Fn::Equals': ['a', 'a']}}, 'Resources': {'thing': {'Type': "
     "'AWS::IoT::Thing', 'Properties': {'ThingName': 't', 'ThingGroups': "
     "{'Fn::If': ['C', ['a'], 'b']}}}}}",
     ENR_E_PARSE, "ThingGroups.Fn::If[2]: the two values differ in type: a list of strings, then a "
                  "string"},
    {WITH_THING("{'ThingName': {'Fn::If': ['C', 'a']}}"), ENR_E_PARSE,
     "ThingName.Fn::If: Fn::If takes [condition, value if true, value if false]"},
    {WITH_THING("{'ThingName': {'Fn::Sub': 'a-${Nope}'}}"), ENR_E_PARSE,
     "ThingName.Fn::Sub: ${...} names \"Nope\", which is not a parameter"},
    {WITH_THING("{'ThingName': {'Fn::Sub': 'a-${x'}}"), ENR_E_PARSE,
     "ThingName.Fn::Sub: \"${\" at offset 2 is never closed"},
    {WITH_THING("{'ThingName': {'Fn::Sub': 'a-${}'}}"), ENR_E_PARSE,
     "\"${...}\" at offset 2 names no parameter"},
    {WITH_THING("{'ThingName': {'Fn::Sub': ['${x}', {'x': 'y'}]}}"), ENR_E_UNSUPPORTED,
     "ThingName.Fn::Sub: Fn::Sub with a variable map is not supported"},
    {WITH_THING("{'ThingName': {'Fn::GetAtt': ['thing', 'Arn']}}"), ENR_E_UNSUPPORTED,
     "ThingName.Fn::GetAtt: Fn::GetAtt is not supported"},
    {WITH_THING("{'ThingName': {'Fn::Equals': ['a', 'b']}}"), ENR_E_PARSE,
     "ThingName.Fn::Equals: Fn::Equals is a condition function"},
    {WITH_THING("{'ThingName': {'Ref': 'x', 'Fn::Join': []}}"), ENR_E_PARSE,
     "ThingName: an object here must be one intrinsic function (one key: Ref, Fn::Join, ...), "
     "not an object of 2 keys"},
    {WITH_THING("{'ThingName': {'Name': 'x'}}"), ENR_E_PARSE,
     "ThingName: an object here must be an intrinsic function such as {\"Ref\": ...}; \"Name\""},
    {WITH_THING("{'ThingName': true}"), ENR_E_PARSE,
     "ThingName: expected a string, a list or an intrinsic function, not a boolean"},
    {WITH_THING("{'ThingName': null}"), ENR_E_PARSE, "not null"},
    /* conditions */
    {"{'Conditions': {'A': {'Condition': 'B'}, 'B': {'Fn::Not': [{'Condition': 'A'}]}},"
     " 'Resources': {" MIN_THING "}}",
     ENR_E_PARSE, "Conditions.B: the conditions form a cycle: \"B\" depends on \"A\""},
    {"{'Conditions': {'A': {'Fn::Or': [{'Condition': 'A'}, {'Fn::Equals': ['a', 'b']}]}},"
     " 'Resources': {" MIN_THING "}}",
     ENR_E_PARSE, "Conditions.A: the conditions form a cycle: \"A\" depends on \"A\""},
    {"{'Conditions': {'A': {'Condition': 'Z'}}, 'Resources': {" MIN_THING "}}", ENR_E_PARSE,
     "Conditions.A.Condition: there is no condition \"Z\""},
    {"{'Conditions': {'A': {'Fn::And': [{'Fn::Equals': ['a', 'b']}]}}, 'Resources': {" MIN_THING
     "}}", ENR_E_PARSE, "Conditions.A.Fn::And: Fn::And takes a list of 2 to 10 conditions, not a "
                        "list that is too short"},
    {"{'Conditions': {'A': {'Fn::Or': [{'Condition': 'B'}, {'Condition': 'B'}, {'Condition': 'B'},"
     " {'Condition': 'B'}, {'Condition': 'B'}, {'Condition': 'B'}, {'Condition': 'B'},"
     " {'Condition': 'B'}, {'Condition': 'B'}, {'Condition': 'B'}, {'Condition': 'B'}]},"
     " 'B': {'Fn::Equals': ['a', 'b']}}, 'Resources': {" MIN_THING "}}",
     ENR_E_PARSE, "Conditions.A.Fn::Or: Fn::Or takes a list of 2 to 10 conditions, not a list "
                  "that is too long"},
    {"{'Conditions': {'A': {'Fn::Not': [{'Fn::Equals': ['a']}]}}, 'Resources': {" MIN_THING "}}",
     ENR_E_PARSE, "Conditions.A.Fn::Not[0].Fn::Equals: Fn::Equals takes [value, value]"},
    {"{'Conditions': {'A': {'Fn::Equals': ['a', {'Fn::If': ['A', 'x', 'y']}]}}, "
     "'Resources': {" MIN_THING "}}",
     ENR_E_PARSE, "Conditions.A.Fn::Equals[1].Fn::If: Fn::If cannot be used inside a condition"},
    {"{'Conditions': {'A': {'Fn::Equals': [['a'], 'a']}}, 'Resources': {" MIN_THING "}}",
     ENR_E_PARSE, "Conditions.A.Fn::Equals[0]: expected a string here"},
    {"{'Conditions': {'A': 'yes'}, 'Resources': {" MIN_THING "}}", ENR_E_PARSE,
     "Conditions.A: a condition must be one of Fn::Equals, Fn::Not, Fn::And, Fn::Or or "
     "Condition, not a string"},
    {"{'Conditions': {'A': {'Fn::Xor': []}}, 'Resources': {" MIN_THING "}}", ENR_E_PARSE,
     "Conditions.A: a condition must be one of Fn::Equals, Fn::Not, Fn::And, Fn::Or or "
     "Condition, not \"Fn::Xor\""},
    /* mappings */
    {"{'Mappings': {'M': {'a': {'b': ['x']}}}, 'Resources': {" MIN_THING "}}", ENR_E_PARSE,
     "Mappings.M.a.b: a mapping's value is a string or a number here, not a list"},
    {"{'Mappings': {'M': {'a': 'b'}}, 'Resources': {" MIN_THING "}}", ENR_E_PARSE,
     "Mappings.M.a: a mapping's top-level key must be an object, not a string"},
    /* resources */
    {"{'Resources': {" MIN_THING ", 'other': {'Type': 'AWS::IoT::Thing', 'Properties': "
     "{'ThingName': 'u'}}}}", ENR_E_PARSE,
     "Resources.other.Properties: a second AWS::IoT::Thing (\"thing\" is one already)"},
    {"{'Resources': {" MIN_THING ", 'c1': {'Type': 'AWS::IoT::Certificate', 'Properties': "
     "{'CertificateId': 'a'}}, 'c2': {'Type': 'AWS::IoT::Certificate', 'Properties': "
     "{'CertificateId': 'b'}}}}", ENR_E_PARSE,
     "Resources.c2.Properties: a second AWS::IoT::Certificate (\"c1\" is one already)"},
    {"{'Resources': {" MIN_THING ", 'r': {'Type': 'AWS::S3::Bucket', 'Properties': {}}}}",
     ENR_E_UNSUPPORTED, "Resources.r.Type: \"AWS::S3::Bucket\" is not supported"},
    {"{'Resources': {'r': {'Properties': {}}}}", ENR_E_PARSE,
     "Resources.r.Type: a resource needs a Type"},
    {"{'Resources': {'thing': {'Type': 'AWS::IoT::Thing'}}}", ENR_E_PARSE,
     "Resources.thing.Properties: a AWS::IoT::Thing needs Properties"},
    {"{'Resources': {'thing': {'Type': 'AWS::IoT::Thing', 'Properties': {}, 'DependsOn': 'x'}}}",
     ENR_E_PARSE, "Resources.thing: unknown key \"DependsOn\""},
    {WITH_THING("{}"), ENR_E_PARSE, "Resources.thing.Properties: the thing has no ThingName"},
    {WITH_THING("{'ThingName': 'a b'}"), ENR_E_PARSE,
     "Resources.thing.Properties.ThingName: \"a b\" is not a valid name"},
    {WITH_THING("{'ThingName': 't', 'Color': 'red'}"), ENR_E_PARSE,
     "Resources.thing.Properties: unknown property \"Color\""},
    {WITH_THING("{'ThingName': 't', 'AttributePayload': {'bad name': 'x'}}"), ENR_E_PARSE,
     "Resources.thing.Properties.AttributePayload.bad name: an attribute's name is"},
    {WITH_THING("{'ThingName': 't', 'AttributePayload': {'a': 'x y'}}"), ENR_E_PARSE,
     "AttributePayload.a: \"x y\" is not a valid attribute value"},
    {WITH_THING("{'ThingName': 't', 'AttributePayload': [{'a': 'b'}]}"), ENR_E_PARSE,
     "Properties.AttributePayload: AttributePayload must be an object, not a list"},
    {WITH_THING("{'ThingName': 't', 'ThingGroups': 'g'}"), ENR_E_PARSE,
     "Properties.ThingGroups: expected a list of strings here, but this is a string"},
    {WITH_THING("{'ThingName': 't', 'ThingGroups': ['a', 'b c']}"), ENR_E_PARSE,
     "Properties.ThingGroups[1]: \"b c\" is not a valid name"},
    {WITH_THING("{'ThingName': 't', 'ThingGroups': ['a','b','c','d','e','f','g','h','i','j','k']}"),
     ENR_E_PARSE, "Properties.ThingGroups: 11 groups (a thing is in at most 10)"},
    {"{'Conditions': {'C': {'Fn::Equals': ['a', 'a']}}, 'Resources': {'thing': {'Type': "
     "'AWS::IoT::Thing', 'Condition': 'C', 'Properties': {'ThingName': 't'}}}}",
     ENR_E_UNSUPPORTED, "Resources.thing.Condition: the thing cannot have a Condition"},
    {"{'Resources': {" MIN_THING ", 'p': {'Type': 'AWS::IoT::Policy', 'Condition': 'C',"
     " 'Properties': {'PolicyName': 'x'}}}}", ENR_E_PARSE,
     "Resources.p.Condition: there is no condition \"C\""},
    {"{'Resources': {'thing': {'Type': 'AWS::IoT::Thing', 'Properties': {'ThingName': 't'},"
     " 'OverrideSettings': {'ThingName': 'REPLACE'}}}}", ENR_E_PARSE,
     "Resources.thing.OverrideSettings.ThingName: settings exist for"},
    {"{'Resources': {'thing': {'Type': 'AWS::IoT::Thing', 'Properties': {'ThingName': 't'},"
     " 'OverrideSettings': {'ThingTypeName': 'MERGE'}}}}", ENR_E_PARSE,
     "Resources.thing.OverrideSettings.ThingTypeName: MERGE is for AttributePayload and "
     "ThingGroups only"},
    {"{'Resources': {'thing': {'Type': 'AWS::IoT::Thing', 'Properties': {'ThingName': 't'},"
     " 'OverrideSettings': {'ThingGroups': 'KEEP'}}}}", ENR_E_PARSE,
     "Resources.thing.OverrideSettings.ThingGroups: a setting is"},
    {"{'Resources': {" MIN_THING ", 'p': {'Type': 'AWS::IoT::Policy', 'Properties': "
     "{'PolicyName': 'x'}, 'OverrideSettings': {}}}}", ENR_E_PARSE,
     "Resources.p.OverrideSettings: only a thing has OverrideSettings"},
    {"{'Resources': {" MIN_THING ", 'c': {'Type': 'AWS::IoT::Certificate', 'Properties': "
     "{'CertificatePem': 'x'}}}}", ENR_E_UNSUPPORTED,
     "Resources.c.Properties.CertificatePem: not supported"},
    {"{'Resources': {" MIN_THING ", 'c': {'Type': 'AWS::IoT::Certificate', 'Properties': "
     "{'Status': 'ACTIVE'}}}}", ENR_E_PARSE, "Resources.c.Properties: the certificate has no "
                                             "CertificateId"},
    {"{'Resources': {" MIN_THING ", 'c': {'Type': 'AWS::IoT::Certificate', 'Properties': "
     "{'CertificateId': 'a', 'Status': 'REVOKED'}}}}", ENR_E_PARSE,
     "Resources.c.Properties.Status: Status is \"ACTIVE\" or \"INACTIVE\", not \"REVOKED\""},
    {"{'Resources': {" MIN_THING ", 'p': {'Type': 'AWS::IoT::Policy', 'Properties': "
     "{'PolicyName': 'x', 'PolicyDocument': '{}'}}}}", ENR_E_PARSE,
     "Resources.p.Properties: a policy has exactly one property"},
    {"{'Resources': {" MIN_THING ", 'p': {'Type': 'AWS::IoT::Policy', 'Properties': "
     "{'PolicyName': 'a policy'}}}}", ENR_E_PARSE,
     "Resources.p.Properties.PolicyName: \"a policy\" is not a valid policy name"},
    /* device configuration */
    {"{'Resources': {" MIN_THING "}, 'DeviceConfiguration': {'k': ['a']}}", ENR_E_PARSE,
     "DeviceConfiguration.k: expected a string here, but this is a list of strings"},
    {"{'Resources': {" MIN_THING "}, 'DeviceConfiguration': {'k': {'x': 'y'}}}", ENR_E_PARSE,
     "DeviceConfiguration.k: an object here must be an intrinsic function"},
};

static void test_bad_templates(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof BAD / sizeof BAD[0]; i++) {
        print_message("case %zu\n", i);
        parse_fails(BAD[i].tmpl, BAD[i].code, BAD[i].needle);
    }
}

static void test_usage(void **state)
{
    (void)state;
    enr_aws_template *t = NULL;
    enr_error err = {0};
    assert_int_equal(enr_aws_template_parse(NULL, 0, &t, &err), ENR_E_USAGE);
    assert_int_equal(enr_aws_template_parse("{}", 2, NULL, &err), ENR_E_USAGE);
    /* Only `len` bytes are read: the rest is not part of the template. */
    const char *two = "{\"Resources\": {\"t\": {\"Type\": \"AWS::IoT::Thing\", \"Properties\": "
                      "{\"ThingName\": \"x\"}}}}garbage";
    assert_int_equal(enr_aws_template_parse(two, strlen(two) - 7, &t, &err), ENR_OK);
    enr_aws_template_free(t);
    enr_aws_template_free(NULL);
    enr_aws_plan_free(NULL);
    assert_null(enr_aws_plan_thing_name(NULL));
    assert_int_equal(enr_aws_template_parameter_count(NULL), 0);
    char *json = NULL;
    assert_int_equal(enr_aws_plan_to_json(NULL, &json, &err), ENR_E_USAGE);
}

/* ---- bounds ----------------------------------------------------------- */

static void test_bounds(void **state)
{
    (void)state;
    /* Size: one byte over is refused before JSON is read. */
    char *big = malloc(ENR_AWS_TEMPLATE_MAX + 2);
    assert_non_null(big);
    memset(big, ' ', ENR_AWS_TEMPLATE_MAX + 1);
    big[ENR_AWS_TEMPLATE_MAX + 1] = '\0';
    parse_fails_raw(big, ENR_AWS_TEMPLATE_MAX + 1, ENR_E_PARSE, "the template is 65537 bytes");
    free(big);

    /* Depth: Fn::Join nested in Fn::Select ... deeper than ENR_AWS_DEPTH_MAX. */
    char deep[4096] = "{'Resources': {'thing': {'Type': 'AWS::IoT::Thing', 'Properties': "
                      "{'ThingName': ";
    for (int i = 0; i < 10; i++)
        strcat(deep, "{'Fn::Join': ['', [");
    strcat(deep, "'x'");
    for (int i = 0; i < 10; i++)
        strcat(deep, "]]}");
    strcat(deep, "}}}}");
    parse_fails(deep, ENR_E_PARSE, "nested deeper than 24 levels");
    /* Six levels of Join fit: each is three levels (the object, its
     * arguments, the list), so the innermost list is at 4 + 3 * 6 = 22. */
    strcpy(deep, "{'Resources': {'thing': {'Type': 'AWS::IoT::Thing', 'Properties': "
                 "{'ThingName': ");
    for (int i = 0; i < 6; i++)
        strcat(deep, "{'Fn::Join': ['', [");
    strcat(deep, "'x'");
    for (int i = 0; i < 6; i++)
        strcat(deep, "]]}");
    strcat(deep, "}}}}");
    enr_aws_template *t = parse_ok(deep);
    enr_aws_plan *plan = eval_ok(t, NULL);
    assert_string_equal(enr_aws_plan_thing_name(plan), "x");
    enr_aws_plan_free(plan);
    enr_aws_template_free(t);
    /* Far deeper than anything, and still a clean refusal (jansson's own
     * limit, or ours). */
    char *abyss = malloc(20000);
    assert_non_null(abyss);
    size_t n = 0;
    for (int i = 0; i < 5000; i++)
        abyss[n++] = '[';
    for (int i = 0; i < 5000; i++)
        abyss[n++] = ']';
    enr_error err = {0};
    assert_int_equal(enr_aws_template_parse(abyss, n, &t, &err), ENR_E_PARSE);
    free(abyss);

    /* A string over ENR_AWS_STRING_MAX. */
    size_t cap = ENR_AWS_STRING_MAX + 256;
    char *longstr = malloc(cap);
    assert_non_null(longstr);
    int len = snprintf(longstr, cap,
                       "{'Resources': {" MIN_THING "}, 'DeviceConfiguration': {'k': '%0*d'}}",
                       ENR_AWS_STRING_MAX + 1, 0);
    assert_true(len > 0 && (size_t)len < cap);
    parse_fails(longstr, ENR_E_PARSE, "DeviceConfiguration.k: a string of 4097 bytes");
    free(longstr);

    /* Lists, parameters, conditions, resources, attributes, config entries. */
    char *buf = malloc(ENR_AWS_TEMPLATE_MAX);
    assert_non_null(buf);
#define APPEND(...) (n += (size_t)snprintf(buf + n, ENR_AWS_TEMPLATE_MAX - n, __VA_ARGS__))
    n = 0;
    APPEND("{'Resources': {'thing': {'Type': 'AWS::IoT::Thing', 'Properties': {'ThingName': "
           "{'Fn::Join': ['', [");
    for (int i = 0; i <= ENR_AWS_LIST_MAX; i++)
        APPEND("%s'a'", i ? "," : "");
    APPEND("]]}}}}}");
    parse_fails(buf, ENR_E_PARSE, "ThingName.Fn::Join[1]: a list of 101 items (at most 100)");

    n = 0;
    APPEND("{'Parameters': {");
    for (int i = 0; i <= ENR_AWS_PARAMETERS_MAX; i++)
        APPEND("%s'p%d': {'Type': 'String'}", i ? "," : "", i);
    APPEND("}, 'Resources': {" MIN_THING "}}");
    parse_fails(buf, ENR_E_PARSE, "Parameters: 65 parameters (at most 64)");

    n = 0;
    APPEND("{'Conditions': {");
    for (int i = 0; i <= ENR_AWS_CONDITIONS_MAX; i++)
        APPEND("%s'c%d': {'Fn::Equals': ['a', 'b']}", i ? "," : "", i);
    APPEND("}, 'Resources': {" MIN_THING "}}");
    parse_fails(buf, ENR_E_PARSE, "Conditions: 65 conditions (at most 64)");

    n = 0;
    APPEND("{'Resources': {" MIN_THING);
    for (int i = 0; i < ENR_AWS_RESOURCES_MAX; i++)
        APPEND(", 'p%d': {'Type': 'AWS::IoT::Policy', 'Properties': {'PolicyName': 'p'}}", i);
    APPEND("}}");
    parse_fails(buf, ENR_E_PARSE, "Resources: 17 resources (at most 16)");

    n = 0;
    APPEND("{'Resources': {'thing': {'Type': 'AWS::IoT::Thing', 'Properties': {'ThingName': 't',"
           " 'AttributePayload': {");
    for (int i = 0; i <= ENR_AWS_ATTRIBUTES_MAX; i++)
        APPEND("%s'a%d': 'v'", i ? "," : "", i);
    APPEND("}}}}}");
    parse_fails(buf, ENR_E_PARSE, "Properties.AttributePayload: 51 attributes (at most 50)");

    n = 0;
    APPEND("{'Resources': {" MIN_THING "}, 'DeviceConfiguration': {");
    for (int i = 0; i <= ENR_AWS_DEVICE_CONFIG_MAX; i++)
        APPEND("%s'k%d': 'v'", i ? "," : "", i);
    APPEND("}}");
    parse_fails(buf, ENR_E_PARSE, "DeviceConfiguration: 65 entries (at most 64)");

    /* The most of everything still parses and evaluates. */
    n = 0;
    APPEND("{'Parameters': {");
    for (int i = 0; i < ENR_AWS_PARAMETERS_MAX; i++)
        APPEND("%s'p%d': {'Type': 'String', 'Default': 'v%d'}", i ? "," : "", i, i);
    APPEND("}, 'Conditions': {");
    for (int i = 0; i < ENR_AWS_CONDITIONS_MAX; i++)
        APPEND("%s'c%d': {'Fn::Equals': [{'Ref': 'p%d'}, 'v%d']}", i ? "," : "", i, i, i);
    APPEND("}, 'Resources': {'thing': {'Type': 'AWS::IoT::Thing', 'Properties': {'ThingName': "
           "{'Ref': 'p0'}, 'AttributePayload': {");
    for (int i = 0; i < ENR_AWS_ATTRIBUTES_MAX; i++)
        APPEND("%s'a%d': {'Fn::If': ['c%d', {'Ref': 'p%d'}, 'no']}", i ? "," : "", i, i, i);
    APPEND("}}}");
    for (int i = 0; i < ENR_AWS_RESOURCES_MAX - 1; i++)
        APPEND(", 'p%d': {'Type': 'AWS::IoT::Policy', 'Condition': 'c%d', 'Properties': "
               "{'PolicyName': 'pol%d'}}", i, i, i);
    APPEND("}, 'DeviceConfiguration': {");
    for (int i = 0; i < ENR_AWS_DEVICE_CONFIG_MAX; i++)
        APPEND("%s'k%d': {'Ref': 'p%d'}", i ? "," : "", i, i);
    APPEND("}}");
    assert_true(n < ENR_AWS_TEMPLATE_MAX - 1);
    t = parse_ok(buf);
    plan = eval_ok(t, "{'p3': 'changed'}");
    assert_int_equal(enr_aws_plan_attribute_count(plan), ENR_AWS_ATTRIBUTES_MAX);
    assert_string_equal(enr_aws_plan_attribute_value(plan, 2), "v2");
    assert_string_equal(enr_aws_plan_attribute_value(plan, 3), "no");
    assert_int_equal(enr_aws_plan_policy_count(plan), ENR_AWS_RESOURCES_MAX - 2);
    assert_int_equal(enr_aws_plan_config_count(plan), ENR_AWS_DEVICE_CONFIG_MAX);
    assert_string_equal(enr_aws_plan_config_value(plan, 3), "changed");
    char *json = NULL;
    assert_int_equal(enr_aws_plan_to_json(plan, &json, NULL), ENR_OK);
    json_error_t jerr;
    json_t *back = json_loads(json, 0, &jerr);
    assert_non_null(back);
    assert_int_equal(json_object_size(json_object_get(back, "deviceConfiguration")),
                     ENR_AWS_DEVICE_CONFIG_MAX);
    json_decref(back);
    free(json);
    enr_aws_plan_free(plan);
    enr_aws_template_free(t);
#undef APPEND
    free(buf);
}

/* A message quotes outside text safely: control bytes become '?' and long
 * names are cut, so the message always fits and reads as one line. */
static void test_messages_are_safe(void **state)
{
    (void)state;
    const char tmpl[] = "{\"Resources\": {\"thing\": {\"Type\": \"AWS::IoT::Thing\", "
                        "\"Properties\": {\"ThingName\": {\"Ref\": \"a\\nb\\u001b[31m"
                        "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
                        "\"}}}}}";
    enr_aws_template *t = NULL;
    enr_error err = {0};
    assert_int_equal(enr_aws_template_parse(tmpl, strlen(tmpl), &t, &err), ENR_E_PARSE);
    assert_null(strchr(err.message, '\n'));
    assert_null(strchr(err.message, '\x1b'));
    assert_non_null(strstr(err.message, "Ref to \"a?b?[31mxxx"));
    assert_non_null(strstr(err.message, "...\""));
}

/* Conditions are evaluated once per evaluation, whatever reads them; and
 * one template serves many evaluations independently. */
static void test_reuse(void **state)
{
    (void)state;
    enr_aws_template *t = parse_ok(CONDITIONS_TEMPLATE);
    for (int i = 0; i < 50; i++) {
        enr_aws_plan *plan = eval_ok(t, i % 2 ? "{'Env': 'dev', 'Beta': 'x'}" : "{'Beta': 'x'}");
        assert_string_equal(enr_aws_plan_attribute_value(plan, 2), i % 2 ? "y" : "n");
        enr_aws_plan_free(plan);
    }
    enr_aws_template_free(t);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_aws_fleet_example),
        cmocka_unit_test(test_aws_template_example),
        cmocka_unit_test(test_ref),
        cmocka_unit_test(test_pseudo_parameters),
        cmocka_unit_test(test_join),
        cmocka_unit_test(test_select),
        cmocka_unit_test(test_split),
        cmocka_unit_test(test_find_in_map),
        cmocka_unit_test(test_if),
        cmocka_unit_test(test_sub),
        cmocka_unit_test(test_conditions),
        cmocka_unit_test(test_parameters),
        cmocka_unit_test(test_result_rules),
        cmocka_unit_test(test_bad_templates),
        cmocka_unit_test(test_usage),
        cmocka_unit_test(test_bounds),
        cmocka_unit_test(test_messages_are_safe),
        cmocka_unit_test(test_reuse),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
