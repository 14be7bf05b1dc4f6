/* AWS IoT fleet provisioning's topics (include/enroll/aws_fleet_topic.h):
 * classifying a PUBLISH topic, naming request and answer topics, judging a
 * SUBSCRIBE filter. The one home of the topic strings, for enrolld's front
 * end (through aws_fleet.h) and the device agent alike: it is compiled into
 * libenroll_device (src/CMakeLists.txt), so it needs nothing but core. */
#include <stdio.h>
#include <string.h>

#include "enroll/aws_fleet_topic.h"

/* ---- topics -------------------------------------------------------------------- */

#define LEVELS_MAX 8

typedef struct span {
    const uint8_t *p;
    size_t n;
} span;

/* Splits at '/' into at most LEVELS_MAX levels; more makes *count
 * LEVELS_MAX + 1 (no topic or filter of ours has that many). */
static void split_levels(const uint8_t *s, size_t len, span *levels, size_t *count)
{
    size_t n = 0, from = 0;
    for (size_t i = 0; i <= len; i++) {
        if (i < len && s[i] != '/')
            continue;
        if (n == LEVELS_MAX) {
            *count = LEVELS_MAX + 1;
            return;
        }
        levels[n].p = s + from;
        levels[n].n = i - from;
        n++;
        from = i + 1;
    }
    *count = n;
}

static bool is(span l, const char *lit)
{
    size_t n = strlen(lit);
    return l.n == n && memcmp(l.p, lit, n) == 0;
}

static bool template_name_ok(const uint8_t *s, size_t n)
{
    if (n < 1 || n > ENR_AWS_FLEET_TEMPLATE_NAME_MAX)
        return false;
    for (size_t i = 0; i < n; i++) {
        uint8_t c = s[i];
        if (!((c >= '0' && c <= '9') || (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || c == '_' || c == '-'))
            return false;
    }
    return true;
}

static bool format_of(span l, enr_aws_fleet_format *f)
{
    if (is(l, "json"))
        *f = ENR_AWS_FLEET_JSON;
    else if (is(l, "cbor"))
        *f = ENR_AWS_FLEET_CBOR;
    else
        return false;
    return true;
}

static enr_aws_fleet_topic_kind invalid(enr_aws_fleet_topic *out, enr_error *err, const char *what)
{
    enr_error_set(err, ENR_E_PARSE, "AWS fleet provisioning topic: %s", what);
    memset(out, 0, sizeof *out);
    out->kind = ENR_AWS_FLEET_TOPIC_INVALID;
    return out->kind;
}

/* The levels after the call's own ({fmt}[/accepted|/rejected]) from `at`. */
static enr_aws_fleet_topic_kind finish_topic(const span *lv, size_t count, size_t at, enr_aws_fleet_topic *out,
                                             enr_error *err)
{
    if (count <= at || !format_of(lv[at], &out->format))
        return invalid(out, err, "the payload format level is not json or cbor");
    if (count == at + 1) {
        out->kind = ENR_AWS_FLEET_TOPIC_REQUEST;
        return out->kind;
    }
    if (count == at + 2 && (is(lv[at + 1], "accepted") || is(lv[at + 1], "rejected"))) {
        out->kind = ENR_AWS_FLEET_TOPIC_ANSWER;
        out->accepted = is(lv[at + 1], "accepted");
        return out->kind;
    }
    return invalid(out, err, "levels after the payload format other than accepted or rejected");
}

enr_aws_fleet_topic_kind enr_aws_fleet_topic_classify(const uint8_t *topic, size_t len, enr_aws_fleet_topic *out,
                                                      enr_error *err)
{
    memset(out, 0, sizeof *out);
    if (topic == NULL)
        return out->kind; /* OTHER: nothing of ours */
    /* A wildcard makes a filter, whatever the namespace: never a topic a
     * PUBLISH may name (the MQTT parser refuses them too; this does not
     * rely on it). */
    if (memchr(topic, '+', len) != NULL || memchr(topic, '#', len) != NULL) {
        out->kind = ENR_AWS_FLEET_TOPIC_WILDCARD;
        return out->kind;
    }
    span lv[LEVELS_MAX];
    size_t count = 0;
    split_levels(topic, len, lv, &count);
    if (count < 2 || !is(lv[0], "$aws") || !(is(lv[1], "certificates") || is(lv[1], "provisioning-templates")))
        return out->kind; /* OTHER */
    if (count > LEVELS_MAX)
        return invalid(out, err, "too many levels");
    if (is(lv[1], "certificates")) {
        if (count < 3 || !(is(lv[2], "create-from-csr") || is(lv[2], "create")))
            return invalid(out, err, "under $aws/certificates/ only create-from-csr and create are calls");
        out->call = is(lv[2], "create") ? ENR_AWS_FLEET_CREATE_KEYS : ENR_AWS_FLEET_CREATE_FROM_CSR;
        return finish_topic(lv, count, 3, out, err);
    }
    if (count < 3 || !template_name_ok(lv[2].p, lv[2].n))
        return invalid(out, err, "the template name is not [0-9A-Za-z_-]{1,36}");
    if (count < 4 || !is(lv[3], "provision"))
        return invalid(out, err, "a template's only call is $aws/provisioning-templates/{name}/provision/{format}");
    out->call = ENR_AWS_FLEET_REGISTER_THING;
    memcpy(out->template_name, lv[2].p, lv[2].n);
    out->template_name[lv[2].n] = '\0';
    return finish_topic(lv, count, 4, out, err);
}

static const char *format_name(enr_aws_fleet_format f)
{
    return f == ENR_AWS_FLEET_CBOR ? "cbor" : "json";
}

static size_t put_topic(char *out, size_t cap, enr_aws_fleet_call call, enr_aws_fleet_format format,
                        const char *template_name, const char *suffix)
{
    if (out == NULL || (format != ENR_AWS_FLEET_JSON && format != ENR_AWS_FLEET_CBOR))
        return 0;
    int n;
    switch (call) {
    case ENR_AWS_FLEET_CREATE_FROM_CSR:
        n = snprintf(out, cap, "$aws/certificates/create-from-csr/%s%s", format_name(format), suffix);
        break;
    case ENR_AWS_FLEET_CREATE_KEYS:
        n = snprintf(out, cap, "$aws/certificates/create/%s%s", format_name(format), suffix);
        break;
    case ENR_AWS_FLEET_REGISTER_THING:
        if (template_name == NULL || !template_name_ok((const uint8_t *)template_name, strlen(template_name)))
            return 0;
        n = snprintf(out, cap, "$aws/provisioning-templates/%s/provision/%s%s", template_name,
                     format_name(format), suffix);
        break;
    default:
        return 0;
    }
    if (n < 0 || (size_t)n >= cap) {
        if (cap > 0)
            out[0] = '\0';
        return 0;
    }
    return (size_t)n;
}

size_t enr_aws_fleet_answer_topic(char *out, size_t cap, const enr_aws_fleet_topic *t, bool accepted)
{
    if (t == NULL || (t->kind != ENR_AWS_FLEET_TOPIC_REQUEST && t->kind != ENR_AWS_FLEET_TOPIC_ANSWER))
        return 0;
    return put_topic(out, cap, t->call, t->format, t->template_name, accepted ? "/accepted" : "/rejected");
}

size_t enr_aws_fleet_request_topic(char *out, size_t cap, enr_aws_fleet_call call, enr_aws_fleet_format format,
                                   const char *template_name)
{
    return put_topic(out, cap, call, format, template_name, "");
}

/* One level of a filter against the literals the grammar allows there. */
static bool level_allowed(span l, const char *const *lits)
{
    if (is(l, "+"))
        return true;
    for (size_t i = 0; lits[i] != NULL; i++)
        if (is(l, lits[i]))
            return true;
    return false;
}

bool enr_aws_fleet_filter_allowed(const uint8_t *filter, size_t len, char *template_name)
{
    static const char *const CALLS[] = {"create-from-csr", "create", NULL};
    static const char *const PROVISION[] = {"provision", NULL};
    static const char *const FORMATS[] = {"json", "cbor", NULL};
    static const char *const ANSWERS[] = {"accepted", "rejected", NULL};
    static const char *const *const CERT_GRAMMAR[] = {CALLS, FORMATS, ANSWERS};
    static const char *const *const TEMPLATE_GRAMMAR[] = {PROVISION, FORMATS, ANSWERS};

    if (template_name != NULL)
        template_name[0] = '\0';
    if (filter == NULL)
        return false;
    span lv[LEVELS_MAX];
    size_t count = 0;
    split_levels(filter, len, lv, &count);
    if (count < 3 || count > LEVELS_MAX || !is(lv[0], "$aws"))
        return false;
    const char *const *const *grammar;
    size_t first; /* the first level that may be a wildcard */
    if (is(lv[1], "certificates")) {
        grammar = CERT_GRAMMAR;
        first = 2;
    } else if (is(lv[1], "provisioning-templates")) {
        if (!template_name_ok(lv[2].p, lv[2].n))
            return false; /* also refuses '+' and '#' there: a claim is bound to named templates */
        grammar = TEMPLATE_GRAMMAR;
        first = 3;
    } else {
        return false;
    }
    size_t full = first + 3;
    for (size_t i = first; i < count; i++) {
        if (is(lv[i], "#")) {
            if (i != count - 1)
                return false;
            break;
        }
        if (i >= full || !level_allowed(lv[i], grammar[i - first]))
            return false;
        if (i == count - 1 && count != full)
            return false; /* a prefix of the answer topics, e.g. the request topic */
    }
    if (count == first) /* "$aws/provisioning-templates/T": a topic, not a filter of ours */
        return false;
    if (grammar == TEMPLATE_GRAMMAR && template_name != NULL) {
        memcpy(template_name, lv[2].p, lv[2].n);
        template_name[lv[2].n] = '\0';
    }
    return true;
}
