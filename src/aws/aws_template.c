/* AWS IoT fleet provisioning templates. The template is kept as the JSON
 * tree jansson parsed (immutable afterwards), checked once at parse time so
 * that evaluation can rely on every shape, and walked again per device.
 * Every check and every evaluation step keeps the JSON path it is at, so a
 * message always says where in the template the trouble is.
 *
 * Evaluation cost is linear in the template: there are no user functions,
 * conditions are memoized, Fn::If takes one branch, and every intermediate
 * string and list is bounded (ENR_AWS_STRING_MAX, ENR_AWS_LIST_MAX). */
#include "enroll/aws_template.h"

#include <jansson.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/quote.h"

/* ---- messages and paths ----------------------------------------------- */

/* The path part of a message; a deeper path is cut with "...". */
#define PATH_CAP 300

typedef struct path {
    char text[PATH_CAP];
    size_t len;
} path;

static void path_append(path *p, const char *piece)
{
    size_t room = sizeof p->text - p->len;
    size_t n = strlen(piece);
    if (n < room) {
        memcpy(p->text + p->len, piece, n + 1);
        p->len += n;
    } else { /* full: mark the cut once; pops restore what fitted */
        p->len = sizeof p->text - 1;
        memcpy(p->text + p->len - 3, "...", 4);
    }
}

/* Appends ".key" (or "key" at the top); returns the length to pop back to. */
static size_t path_key(path *p, const char *key)
{
    size_t saved = p->len;
    if (p->len > 0)
        path_append(p, ".");
    path_append(p, enr_quote(key).text);
    return saved;
}

static size_t path_index(path *p, size_t i)
{
    size_t saved = p->len;
    char piece[32];
    snprintf(piece, sizeof piece, "[%zu]", i);
    path_append(p, piece);
    return saved;
}

static void path_pop(path *p, size_t saved)
{
    p->len = saved;
    p->text[saved] = '\0';
}

static const char *path_text(const path *p)
{
    return p->len > 0 ? p->text : "(the template)";
}

__attribute__((format(printf, 4, 5))) static enr_code fail_at(enr_error *err, enr_code code,
                                                              const path *p, const char *fmt, ...)
{
    char what[ENR_ERROR_MESSAGE_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    return enr_error_set(err, code, "%s: %s", path_text(p), what);
}

__attribute__((format(printf, 4, 5))) static enr_code refuse_at(enr_error *err, enr_reason reason,
                                                                const path *p, const char *fmt, ...)
{
    char what[ENR_ERROR_MESSAGE_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    return enr_error_refuse(err, reason, "%s: %s", path_text(p), what);
}

/* AWS's templates call arrays lists; messages use the template's words. */
static const char *json_kind(const json_t *v)
{
    return json_is_array(v) ? "a list" : enr_json_kind(v);
}

/* ---- names and values ------------------------------------------------- */

static bool in_set(char c, const char *set)
{
    return c != '\0' && strchr(set, c) != NULL;
}

static bool is_alnum(char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
}

/* min..max bytes, each alphanumeric or in `extra`. */
static bool chars_ok(const char *s, size_t min, size_t max, const char *extra)
{
    size_t len = strnlen(s, max + 1);
    if (len < min || len > max)
        return false;
    for (size_t i = 0; i < len; i++)
        if (!is_alnum(s[i]) && !in_set(s[i], extra))
            return false;
    return true;
}

/* AWS's rule for thing names, and for thing type, group and billing group
 * names: [a-zA-Z0-9:_-]{1,128}. */
static bool thing_name_ok(const char *s)
{
    return chars_ok(s, 1, 128, ":_-");
}

/* AWS's AttributePayload rules: names [a-zA-Z0-9_.,@/:#-]{1,128}, values
 * [a-zA-Z0-9_.,@/:#=\[\]-]{0,800}. */
static bool attribute_name_ok(const char *s)
{
    return chars_ok(s, 1, 128, "_.,@/:#-");
}

static bool attribute_value_ok(const char *s)
{
    return chars_ok(s, 0, 800, "_.,@/:#=[]-");
}

/* AWS's policy names: [\w+=,.@-]{1,128}. */
static bool policy_name_ok(const char *s)
{
    return chars_ok(s, 1, 128, "_+=,.@-");
}

/* Parameter names: letters, digits, '_' and '-' (CloudFormation allows only
 * the first two), or a pseudo parameter's name: AWS's own examples declare
 * "AWS::IoT::Certificate::Id" as a String parameter. */
static int pseudo_index(const char *name);

static bool parameter_name_ok(const char *s)
{
    return chars_ok(s, 1, ENR_AWS_NAME_MAX, "_-") || pseudo_index(s) >= 0;
}

static bool ascii_case_equal(const char *a, const char *b)
{
    for (; *a != '\0' && *b != '\0'; a++, b++) {
        char x = *a >= 'a' && *a <= 'z' ? (char)(*a - 'a' + 'A') : *a;
        char y = *b >= 'a' && *b <= 'z' ? (char)(*b - 'a' + 'A') : *b;
        if (x != y)
            return false;
    }
    return *a == *b;
}

/* A certificate's Status: AWS's own example writes "Active". */
static const char *status_canonical(const char *s)
{
    if (ascii_case_equal(s, "ACTIVE"))
        return "ACTIVE";
    if (ascii_case_equal(s, "INACTIVE"))
        return "INACTIVE";
    return NULL;
}

/* Other names (conditions, resources, mappings, keys): 1..ENR_AWS_NAME_MAX bytes. */
static bool name_ok(const char *s)
{
    size_t len = strnlen(s, ENR_AWS_NAME_MAX + 1);
    return len >= 1 && len <= ENR_AWS_NAME_MAX;
}

/* A JSON number's grammar: -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?,
 * which is what a Number parameter's string must be. */
static bool number_text_ok(const char *s)
{
    const char *p = s;
    if (*p == '-')
        p++;
    if (*p == '0')
        p++;
    else if (*p >= '1' && *p <= '9')
        while (*p >= '0' && *p <= '9')
            p++;
    else
        return false;
    if (*p == '.') {
        p++;
        if (!(*p >= '0' && *p <= '9'))
            return false;
        while (*p >= '0' && *p <= '9')
            p++;
    }
    if (*p == 'e' || *p == 'E') {
        p++;
        if (*p == '+' || *p == '-')
            p++;
        if (!(*p >= '0' && *p <= '9'))
            return false;
        while (*p >= '0' && *p <= '9')
            p++;
    }
    return *p == '\0';
}

/* A template number as the text a string context sees: integers in
 * decimal, reals in the shortest form that reads back the same. */
static void number_text(const json_t *v, char *buf, size_t cap)
{
    if (json_is_integer(v)) {
        snprintf(buf, cap, "%" JSON_INTEGER_FORMAT, json_integer_value(v));
        return;
    }
    double d = json_real_value(v);
    for (int prec = 1; prec <= 17; prec++) {
        snprintf(buf, cap, "%.*g", prec, d);
        if (strtod(buf, NULL) == d)
            return;
    }
}

/* ---- pseudo parameters ------------------------------------------------ */

static const struct {
    const char *name;
    size_t offset;
} PSEUDO[] = {
    {"AWS::IoT::Certificate::Id", offsetof(enr_aws_pseudo, certificate_id)},
    {"AWS::IoT::Certificate::CommonName", offsetof(enr_aws_pseudo, common_name)},
    {"AWS::IoT::Certificate::SerialNumber", offsetof(enr_aws_pseudo, serial_number)},
    {"AWS::IoT::Certificate::Country", offsetof(enr_aws_pseudo, country)},
    {"AWS::IoT::Certificate::Organization", offsetof(enr_aws_pseudo, organization)},
    {"AWS::IoT::Certificate::OrganizationalUnit", offsetof(enr_aws_pseudo, organizational_unit)},
    {"AWS::IoT::Certificate::DistinguishedNameQualifier", offsetof(enr_aws_pseudo, dn_qualifier)},
    {"AWS::IoT::Certificate::StateName", offsetof(enr_aws_pseudo, state_name)},
    {"AWS::IoT::Certificate::Locality", offsetof(enr_aws_pseudo, locality)},
};
#define PSEUDO_COUNT (sizeof PSEUDO / sizeof PSEUDO[0])

static int pseudo_index(const char *name)
{
    for (size_t i = 0; i < PSEUDO_COUNT; i++)
        if (strcmp(PSEUDO[i].name, name) == 0)
            return (int)i;
    return -1;
}

/* ---- the template ----------------------------------------------------- */

typedef struct param {
    const char *name; /* a key of the tree */
    enr_aws_param_type type;
    char *def;        /* the default's text, or NULL */
} param;

typedef struct condition {
    const char *name;
    const json_t *expr;
} condition;

typedef struct resource {
    const char *name;
    const json_t *body;
} resource;

struct enr_aws_template {
    json_t *root; /* owns every json_t and key the fields below point into */
    param params[ENR_AWS_PARAMETERS_MAX];
    size_t n_params;
    condition conds[ENR_AWS_CONDITIONS_MAX];
    size_t n_conds;
    const json_t *mappings; /* NULL when the section is absent */
    resource thing;
    resource cert;          /* body NULL when there is none */
    resource policies[ENR_AWS_RESOURCES_MAX];
    size_t n_policies;
    const json_t *device_config; /* NULL when absent */
};

static int param_index(const enr_aws_template *t, const char *name)
{
    for (size_t i = 0; i < t->n_params; i++)
        if (strcmp(t->params[i].name, name) == 0)
            return (int)i;
    return -1;
}

static int cond_index(const enr_aws_template *t, const char *name)
{
    for (size_t i = 0; i < t->n_conds; i++)
        if (strcmp(t->conds[i].name, name) == 0)
            return (int)i;
    return -1;
}

/* The single key of a one-key object (an intrinsic function), or NULL. */
static const char *only_key(const json_t *v, const json_t **arg)
{
    if (!json_is_object(v) || json_object_size(v) != 1)
        return NULL;
    void *it = json_object_iter((json_t *)v);
    *arg = json_object_iter_value(it);
    return json_object_iter_key(it);
}

/* ---- static checks ---------------------------------------------------- */

typedef enum kind { K_STRING, K_LIST } kind;

static const char *kind_name(kind k)
{
    return k == K_STRING ? "a string" : "a list of strings";
}

typedef struct checker {
    enr_aws_template *t;
    path p;
    bool in_condition; /* Fn::If may not appear inside Conditions */
    enr_error *err;
} checker;

static enr_code check_value(checker *c, const json_t *v, kind *out);

/* Every object and list, at most ENR_AWS_DEPTH_MAX deep, and every string
 * and key bounded, before anything else reads the tree: later walks may
 * then recurse without a bound of their own. */
static enr_code check_tree(checker *c, const json_t *v, int depth)
{
    if (json_is_string(v) && json_string_length(v) > ENR_AWS_STRING_MAX)
        return fail_at(c->err, ENR_E_PARSE, &c->p, "a string of %zu bytes (at most %d)",
                       json_string_length(v), ENR_AWS_STRING_MAX);
    if (!json_is_object(v) && !json_is_array(v))
        return ENR_OK;
    if (depth > ENR_AWS_DEPTH_MAX)
        return fail_at(c->err, ENR_E_PARSE, &c->p, "nested deeper than %d levels",
                       ENR_AWS_DEPTH_MAX);
    if (json_is_array(v)) {
        size_t i;
        const json_t *item;
        if (json_array_size(v) > ENR_AWS_LIST_MAX)
            return fail_at(c->err, ENR_E_PARSE, &c->p, "a list of %zu items (at most %d)",
                           json_array_size(v), ENR_AWS_LIST_MAX);
        json_array_foreach ((json_t *)v, i, item) {
            size_t saved = path_index(&c->p, i);
            enr_code rc = check_tree(c, item, depth + 1);
            if (rc != ENR_OK)
                return rc;
            path_pop(&c->p, saved);
        }
        return ENR_OK;
    }
    const char *key;
    const json_t *item;
    if (json_object_size(v) > ENR_AWS_LIST_MAX)
        return fail_at(c->err, ENR_E_PARSE, &c->p, "an object of %zu keys (at most %d)",
                       json_object_size(v), ENR_AWS_LIST_MAX);
    json_object_foreach ((json_t *)v, key, item) {
        if (strlen(key) > ENR_AWS_STRING_MAX)
            return fail_at(c->err, ENR_E_PARSE, &c->p, "a key of %zu bytes (at most %d)",
                           strlen(key), ENR_AWS_STRING_MAX);
        size_t saved = path_key(&c->p, key);
        enr_code rc = check_tree(c, item, depth + 1);
        if (rc != ENR_OK)
            return rc;
        path_pop(&c->p, saved);
    }
    return ENR_OK;
}

/* The argument list of an intrinsic function: a list of min..max items. */
static enr_code check_args(checker *c, const json_t *arg, const char *fn, size_t min, size_t max,
                           const char *shape)
{
    if (!json_is_array(arg) || json_array_size(arg) < min || json_array_size(arg) > max)
        return fail_at(c->err, ENR_E_PARSE, &c->p, "%s takes %s, not %s%s", fn, shape,
                       json_kind(arg),
                       json_is_array(arg) ? (json_array_size(arg) < min ? " that is too short"
                                                                         : " that is too long")
                                          : "");
    return ENR_OK;
}

/* An argument that must be a literal string (a delimiter, a condition name). */
static enr_code check_literal(checker *c, const json_t *arg, size_t index, const char *what)
{
    if (json_is_string(arg))
        return ENR_OK;
    size_t saved = path_index(&c->p, index);
    enr_code rc = fail_at(c->err, ENR_E_PARSE, &c->p, "%s must be a literal string, not %s", what,
                          json_kind(arg));
    path_pop(&c->p, saved);
    return rc;
}

/* Argument `index` of the current function has kind `want`. */
static enr_code check_arg_kind(checker *c, const json_t *args, size_t index, kind want)
{
    size_t saved = path_index(&c->p, index);
    kind got;
    enr_code rc = check_value(c, json_array_get(args, index), &got);
    if (rc == ENR_OK && got != want)
        rc = fail_at(c->err, ENR_E_PARSE, &c->p, "expected %s here, but this is %s",
                     kind_name(want), kind_name(got));
    if (rc == ENR_OK)
        path_pop(&c->p, saved);
    return rc;
}

static enr_code check_ref_name(checker *c, const char *name, const char *how)
{
    if (pseudo_index(name) >= 0 || param_index(c->t, name) >= 0)
        return ENR_OK;
    return fail_at(c->err, ENR_E_PARSE, &c->p, "%s \"%s\", which is not a parameter%s", how,
                   enr_quote(name).text,
                   strncmp(name, "AWS::", 5) == 0 ? " (nor a pseudo parameter this service supplies)"
                                                  : "");
}

/* Fn::Sub's string: ${Name} for a parameter or pseudo parameter, ${!text}
 * for a literal "${text}". Calls `each` on every name when it is not NULL
 * (evaluation), else checks the names (parse). */
typedef enr_code (*sub_fn)(void *ctx, const char *text, size_t len, bool is_name);

static enr_code scan_sub(const char *s, sub_fn each, void *ctx, checker *c)
{
    const char *p = s;
    while (*p != '\0') {
        const char *open = strstr(p, "${");
        if (open == NULL) {
            if (each != NULL)
                return each(ctx, p, strlen(p), false);
            return ENR_OK;
        }
        const char *close = strchr(open + 2, '}');
        if (close == NULL)
            return c != NULL ? fail_at(c->err, ENR_E_PARSE, &c->p,
                                       "\"${\" at offset %zu is never closed with '}'",
                                       (size_t)(open - s))
                             : ENR_E_INTERNAL;
        if (each != NULL) {
            enr_code rc = each(ctx, p, (size_t)(open - p), false);
            if (rc != ENR_OK)
                return rc;
        }
        const char *name = open + 2;
        size_t len = (size_t)(close - name);
        if (len > 0 && name[0] == '!') { /* ${!Literal} stands for "${Literal}" */
            if (each != NULL) {
                enr_code rc = each(ctx, "${", 2, false);
                if (rc == ENR_OK)
                    rc = each(ctx, name + 1, len, false); /* with the '}' */
                if (rc != ENR_OK)
                    return rc;
            }
        } else if (each != NULL) {
            enr_code rc = each(ctx, name, len, true);
            if (rc != ENR_OK)
                return rc;
        } else {
            char buf[ENR_AWS_NAME_MAX + 1];
            if (len == 0 || len > ENR_AWS_NAME_MAX)
                return fail_at(c->err, ENR_E_PARSE, &c->p,
                               "\"${...}\" at offset %zu names no parameter", (size_t)(open - s));
            memcpy(buf, name, len);
            buf[len] = '\0';
            enr_code rc = check_ref_name(c, buf, "${...} names");
            if (rc != ENR_OK)
                return rc;
        }
        p = close + 1;
    }
    return ENR_OK;
}

static const json_t *mapping_get(const json_t *obj, const char *key)
{
    return obj != NULL ? json_object_get(obj, key) : NULL;
}

static enr_code check_intrinsic(checker *c, const char *fn, const json_t *arg, kind *out)
{
    enr_code rc;
    if (strcmp(fn, "Ref") == 0) {
        if (!json_is_string(arg))
            return fail_at(c->err, ENR_E_PARSE, &c->p, "Ref takes a parameter's name, not %s",
                           json_kind(arg));
        *out = K_STRING;
        return check_ref_name(c, json_string_value(arg), "Ref to");
    }
    size_t saved = path_key(&c->p, fn);
    if (strcmp(fn, "Fn::Join") == 0) {
        rc = check_args(c, arg, fn, 2, 2, "[delimiter, [values...]]");
        if (rc == ENR_OK)
            rc = check_literal(c, json_array_get(arg, 0), 0, "the delimiter");
        if (rc == ENR_OK)
            rc = check_arg_kind(c, arg, 1, K_LIST);
        *out = K_STRING;
    } else if (strcmp(fn, "Fn::Select") == 0) {
        rc = check_args(c, arg, fn, 2, 2, "[index, [values...]]");
        const json_t *index = json_array_get(arg, 0);
        const json_t *list = json_array_get(arg, 1);
        if (rc == ENR_OK && json_is_integer(index)) {
            json_int_t i = json_integer_value(index);
            size_t at = path_index(&c->p, 0);
            if (i < 0)
                rc = fail_at(c->err, ENR_E_PARSE, &c->p, "the index %" JSON_INTEGER_FORMAT
                             " is negative", i);
            else if (json_is_array(list) && (size_t)i >= json_array_size(list))
                rc = fail_at(c->err, ENR_E_PARSE, &c->p,
                             "the index %" JSON_INTEGER_FORMAT " is out of range: the list has %zu "
                             "items", i, json_array_size(list));
            if (rc == ENR_OK)
                path_pop(&c->p, at);
        } else if (rc == ENR_OK) {
            rc = check_arg_kind(c, arg, 0, K_STRING);
        }
        if (rc == ENR_OK)
            rc = check_arg_kind(c, arg, 1, K_LIST);
        *out = K_STRING;
    } else if (strcmp(fn, "Fn::Split") == 0) {
        rc = check_args(c, arg, fn, 2, 2, "[delimiter, string]");
        if (rc == ENR_OK)
            rc = check_literal(c, json_array_get(arg, 0), 0, "the delimiter");
        if (rc == ENR_OK && json_string_length(json_array_get(arg, 0)) == 0) {
            size_t at = path_index(&c->p, 0);
            rc = fail_at(c->err, ENR_E_PARSE, &c->p, "the delimiter is empty");
            (void)at;
        }
        if (rc == ENR_OK)
            rc = check_arg_kind(c, arg, 1, K_STRING);
        *out = K_LIST;
    } else if (strcmp(fn, "Fn::FindInMap") == 0) {
        rc = check_args(c, arg, fn, 3, 3, "[map, top-level key, second-level key]");
        for (size_t i = 0; i < 3 && rc == ENR_OK; i++)
            rc = check_arg_kind(c, arg, i, K_STRING);
        /* What is named literally must exist: a typo is the operator's. */
        const json_t *level = c->t->mappings;
        static const char *const WHAT[] = {"mapping", "top-level key", "second-level key"};
        for (size_t i = 0; i < 3 && rc == ENR_OK; i++) {
            const json_t *name = json_array_get(arg, i);
            if (!json_is_string(name))
                break;
            const json_t *next = mapping_get(level, json_string_value(name));
            if (next == NULL) {
                size_t at = path_index(&c->p, i);
                rc = fail_at(c->err, ENR_E_PARSE, &c->p, "there is no %s \"%s\" in Mappings%s",
                             WHAT[i], enr_quote(json_string_value(name)).text,
                             i == 0 ? "" : " under the keys before it");
                (void)at;
            }
            level = next;
        }
        *out = K_STRING;
    } else if (strcmp(fn, "Fn::If") == 0) {
        if (c->in_condition) {
            rc = fail_at(c->err, ENR_E_PARSE, &c->p, "Fn::If cannot be used inside a condition");
        } else {
            rc = check_args(c, arg, fn, 3, 3, "[condition, value if true, value if false]");
            if (rc == ENR_OK)
                rc = check_literal(c, json_array_get(arg, 0), 0, "the condition's name");
            if (rc == ENR_OK && cond_index(c->t, json_string_value(json_array_get(arg, 0))) < 0) {
                size_t at = path_index(&c->p, 0);
                rc = fail_at(c->err, ENR_E_PARSE, &c->p, "there is no condition \"%s\"",
                             enr_quote(json_string_value(json_array_get(arg, 0))).text);
                (void)at;
            }
            kind a = K_STRING, b = K_STRING;
            if (rc == ENR_OK) {
                size_t at = path_index(&c->p, 1);
                rc = check_value(c, json_array_get(arg, 1), &a);
                if (rc == ENR_OK)
                    path_pop(&c->p, at);
            }
            if (rc == ENR_OK) {
                size_t at = path_index(&c->p, 2);
                rc = check_value(c, json_array_get(arg, 2), &b);
                if (rc == ENR_OK && a != b)
                    rc = fail_at(c->err, ENR_E_PARSE, &c->p,
                                 "the two values differ in type: %s, then %s", kind_name(a),
                                 kind_name(b));
                if (rc == ENR_OK)
                    path_pop(&c->p, at);
            }
            *out = a;
        }
    } else if (strcmp(fn, "Fn::Sub") == 0) {
        if (json_is_array(arg))
            rc = fail_at(c->err, ENR_E_UNSUPPORTED, &c->p,
                         "Fn::Sub with a variable map is not supported: use its string form");
        else if (!json_is_string(arg))
            rc = fail_at(c->err, ENR_E_PARSE, &c->p, "Fn::Sub takes a string, not %s",
                         json_kind(arg));
        else
            rc = scan_sub(json_string_value(arg), NULL, NULL, c);
        *out = K_STRING;
    } else if (strcmp(fn, "Fn::Equals") == 0 || strcmp(fn, "Fn::Not") == 0 ||
               strcmp(fn, "Fn::And") == 0 || strcmp(fn, "Fn::Or") == 0 ||
               strcmp(fn, "Condition") == 0) {
        rc = fail_at(c->err, ENR_E_PARSE, &c->p,
                     "%s is a condition function: it belongs in Conditions (use Fn::If here)", fn);
    } else if (strncmp(fn, "Fn::", 4) == 0) {
        rc = fail_at(c->err, ENR_E_UNSUPPORTED, &c->p,
                     "%s is not supported (Ref, Fn::Join, Fn::Select, Fn::Split, Fn::FindInMap, "
                     "Fn::If and Fn::Sub are)", enr_quote(fn).text);
    } else {
        path_pop(&c->p, saved);
        return fail_at(c->err, ENR_E_PARSE, &c->p,
                       "an object here must be an intrinsic function such as {\"Ref\": ...}; "
                       "\"%s\" is not one", enr_quote(fn).text);
    }
    if (rc == ENR_OK)
        path_pop(&c->p, saved);
    return rc;
}

/* A value: a string or integer literal, a literal list of values, or an
 * intrinsic function; `*out` says whether it makes a string or a list. */
static enr_code check_value(checker *c, const json_t *v, kind *out)
{
    *out = K_STRING;
    switch (json_typeof(v)) {
    case JSON_STRING:
    case JSON_INTEGER:
    case JSON_REAL: return ENR_OK;
    case JSON_ARRAY: {
        size_t i;
        const json_t *item;
        json_array_foreach ((json_t *)v, i, item) {
            size_t saved = path_index(&c->p, i);
            kind k;
            enr_code rc = check_value(c, item, &k);
            if (rc == ENR_OK && k != K_STRING)
                rc = fail_at(c->err, ENR_E_PARSE, &c->p, "a list inside a list");
            if (rc != ENR_OK)
                return rc;
            path_pop(&c->p, saved);
        }
        *out = K_LIST;
        return ENR_OK;
    }
    case JSON_OBJECT: {
        const json_t *arg = NULL;
        const char *fn = only_key(v, &arg);
        if (fn == NULL)
            return fail_at(c->err, ENR_E_PARSE, &c->p,
                           "an object here must be one intrinsic function (one key: Ref, "
                           "Fn::Join, ...), not an object of %zu keys", json_object_size(v));
        return check_intrinsic(c, fn, arg, out);
    }
    default:
        return fail_at(c->err, ENR_E_PARSE, &c->p,
                       "expected a string, a list or an intrinsic function, not %s",
                       json_kind(v));
    }
}

static enr_code check_want(checker *c, const json_t *v, kind want)
{
    kind got;
    enr_code rc = check_value(c, v, &got);
    if (rc == ENR_OK && got != want)
        rc = fail_at(c->err, ENR_E_PARSE, &c->p, "expected %s here, but this is %s",
                     kind_name(want), kind_name(got));
    return rc;
}

static enr_code check_condition_name(checker *c, const json_t *v)
{
    if (!json_is_string(v))
        return fail_at(c->err, ENR_E_PARSE, &c->p, "a condition's name must be a string, not %s",
                       json_kind(v));
    if (cond_index(c->t, json_string_value(v)) < 0)
        return fail_at(c->err, ENR_E_PARSE, &c->p, "there is no condition \"%s\"",
                       enr_quote(json_string_value(v)).text);
    return ENR_OK;
}

/* A condition: Fn::Equals, Fn::Not, Fn::And, Fn::Or or {"Condition": name}. */
static enr_code check_cond(checker *c, const json_t *v)
{
    const json_t *arg = NULL;
    const char *fn = only_key(v, &arg);
    if (fn == NULL || (strcmp(fn, "Fn::Equals") != 0 && strcmp(fn, "Fn::Not") != 0 &&
                       strcmp(fn, "Fn::And") != 0 && strcmp(fn, "Fn::Or") != 0 &&
                       strcmp(fn, "Condition") != 0))
        return fail_at(c->err, ENR_E_PARSE, &c->p,
                       "a condition must be one of Fn::Equals, Fn::Not, Fn::And, Fn::Or or "
                       "Condition, not %s%s%s",
                       fn != NULL ? "\"" : json_kind(v), fn != NULL ? enr_quote(fn).text : "",
                       fn != NULL ? "\"" : "");
    size_t saved = path_key(&c->p, fn);
    enr_code rc = ENR_OK;
    if (strcmp(fn, "Condition") == 0) {
        rc = check_condition_name(c, arg);
    } else if (strcmp(fn, "Fn::Equals") == 0) {
        rc = check_args(c, arg, fn, 2, 2, "[value, value]");
        for (size_t i = 0; i < 2 && rc == ENR_OK; i++)
            rc = check_arg_kind(c, arg, i, K_STRING);
    } else {
        bool is_not = strcmp(fn, "Fn::Not") == 0;
        rc = is_not ? check_args(c, arg, fn, 1, 1, "[condition]")
                    : check_args(c, arg, fn, 2, ENR_AWS_LOGICAL_OPERANDS_MAX,
                                 "a list of 2 to 10 conditions");
        size_t i;
        const json_t *item;
        json_array_foreach ((json_t *)arg, i, item) {
            if (rc != ENR_OK)
                break;
            size_t at = path_index(&c->p, i);
            rc = check_cond(c, item);
            if (rc == ENR_OK)
                path_pop(&c->p, at);
        }
    }
    if (rc == ENR_OK)
        path_pop(&c->p, saved);
    return rc;
}

/* Conditions form no cycle: a depth-first walk, grey while on the stack. */
enum { WHITE = 0, GREY, BLACK };

static enr_code visit_cond(checker *c, size_t index, unsigned char *color);

static enr_code visit_deps(checker *c, const json_t *v, unsigned char *color, size_t from)
{
    const json_t *arg = NULL;
    const char *fn = only_key(v, &arg);
    if (fn == NULL || strcmp(fn, "Fn::Equals") == 0)
        return ENR_OK;
    if (strcmp(fn, "Condition") == 0) {
        size_t to = (size_t)cond_index(c->t, json_string_value(arg));
        if (color[to] == GREY) { /* the path is "Conditions" */
            size_t saved = path_key(&c->p, c->t->conds[from].name);
            enr_code rc = fail_at(c->err, ENR_E_PARSE, &c->p,
                                  "the conditions form a cycle: \"%s\" depends on \"%s\", which "
                                  "depends on it",
                                  enr_quote(c->t->conds[from].name).text,
                                  enr_quote(c->t->conds[to].name).text);
            path_pop(&c->p, saved);
            return rc;
        }
        return color[to] == WHITE ? visit_cond(c, to, color) : ENR_OK;
    }
    size_t i;
    const json_t *item;
    json_array_foreach ((json_t *)arg, i, item) {
        enr_code rc = visit_deps(c, item, color, from);
        if (rc != ENR_OK)
            return rc;
    }
    return ENR_OK;
}

static enr_code visit_cond(checker *c, size_t index, unsigned char *color)
{
    color[index] = GREY;
    enr_code rc = visit_deps(c, c->t->conds[index].expr, color, index);
    color[index] = BLACK;
    return rc;
}

/* ---- sections --------------------------------------------------------- */

static enr_code want_object(checker *c, const json_t *v, const char *what)
{
    if (json_is_object(v))
        return ENR_OK;
    return fail_at(c->err, ENR_E_PARSE, &c->p, "%s must be an object, not %s", what,
                   json_kind(v));
}

static enr_code check_parameters(checker *c, const json_t *section)
{
    enr_code rc = want_object(c, section, "Parameters");
    if (rc != ENR_OK)
        return rc;
    if (json_object_size(section) > ENR_AWS_PARAMETERS_MAX)
        return fail_at(c->err, ENR_E_PARSE, &c->p, "%zu parameters (at most %d)",
                       json_object_size(section), ENR_AWS_PARAMETERS_MAX);
    const char *name;
    const json_t *decl;
    json_object_foreach ((json_t *)section, name, decl) {
        size_t saved = path_key(&c->p, name);
        if (!parameter_name_ok(name))
            return fail_at(c->err, ENR_E_PARSE, &c->p,
                           "a parameter's name is 1..%d letters, digits, '_' or '-' (or a "
                           "pseudo parameter's)", ENR_AWS_NAME_MAX);
        if ((rc = want_object(c, decl, "a parameter")) != ENR_OK)
            return rc;
        const char *key;
        const json_t *item;
        json_object_foreach ((json_t *)decl, key, item) {
            if (strcmp(key, "Type") != 0 && strcmp(key, "Default") != 0)
                return fail_at(c->err, ENR_E_PARSE, &c->p,
                               "unknown key \"%s\" (a parameter has Type and Default)",
                               enr_quote(key).text);
        }
        param *p = &c->t->params[c->t->n_params];
        p->name = name;
        const json_t *type = json_object_get(decl, "Type");
        const char *type_text = json_string_value(type);
        if (type_text != NULL && strcmp(type_text, "String") == 0)
            p->type = ENR_AWS_PARAM_STRING;
        else if (type_text != NULL && strcmp(type_text, "Number") == 0)
            p->type = ENR_AWS_PARAM_NUMBER;
        else if (type_text != NULL)
            return fail_at(c->err, ENR_E_UNSUPPORTED, &c->p,
                           "Type \"%s\" is not supported (String and Number are)",
                           enr_quote(type_text).text);
        else
            return fail_at(c->err, ENR_E_PARSE, &c->p, "Type must be \"String\" or \"Number\"%s",
                           type == NULL ? " (it is missing)" : "");
        const json_t *def = json_object_get(decl, "Default");
        if (def != NULL) {
            char text[64];
            const char *value = NULL;
            if (json_is_string(def)) {
                value = json_string_value(def);
            } else if (json_is_number(def)) {
                number_text(def, text, sizeof text);
                value = text;
            } else {
                path_key(&c->p, "Default");
                return fail_at(c->err, ENR_E_PARSE, &c->p, "a default is a string or a number, "
                               "not %s", json_kind(def));
            }
            if (p->type == ENR_AWS_PARAM_NUMBER && !number_text_ok(value)) {
                path_key(&c->p, "Default");
                return fail_at(c->err, ENR_E_PARSE, &c->p,
                               "\"%s\" is not a number (the parameter is a Number)",
                               enr_quote(value).text);
            }
            if ((p->def = strdup(value)) == NULL)
                return enr_error_set(c->err, ENR_E_NOMEM, "out of memory");
        }
        c->t->n_params++;
        path_pop(&c->p, saved);
    }
    return ENR_OK;
}

static enr_code check_mappings(checker *c, const json_t *section)
{
    enr_code rc = want_object(c, section, "Mappings");
    if (rc != ENR_OK)
        return rc;
    const char *map;
    const json_t *tops;
    json_object_foreach ((json_t *)section, map, tops) {
        size_t s1 = path_key(&c->p, map);
        if (!name_ok(map))
            return fail_at(c->err, ENR_E_PARSE, &c->p, "a name is 1..%d bytes", ENR_AWS_NAME_MAX);
        if ((rc = want_object(c, tops, "a mapping")) != ENR_OK)
            return rc;
        const char *top;
        const json_t *seconds;
        json_object_foreach ((json_t *)tops, top, seconds) {
            size_t s2 = path_key(&c->p, top);
            if (!name_ok(top))
                return fail_at(c->err, ENR_E_PARSE, &c->p, "a key is 1..%d bytes",
                               ENR_AWS_NAME_MAX);
            if ((rc = want_object(c, seconds, "a mapping's top-level key")) != ENR_OK)
                return rc;
            const char *second;
            const json_t *value;
            json_object_foreach ((json_t *)seconds, second, value) {
                size_t s3 = path_key(&c->p, second);
                if (!name_ok(second))
                    return fail_at(c->err, ENR_E_PARSE, &c->p, "a key is 1..%d bytes",
                                   ENR_AWS_NAME_MAX);
                if (!json_is_string(value) && !json_is_number(value))
                    return fail_at(c->err, ENR_E_PARSE, &c->p,
                                   "a mapping's value is a string or a number here, not %s",
                                   json_kind(value));
                path_pop(&c->p, s3);
            }
            path_pop(&c->p, s2);
        }
        path_pop(&c->p, s1);
    }
    c->t->mappings = section;
    return ENR_OK;
}

static enr_code check_conditions(checker *c, const json_t *section)
{
    enr_code rc = want_object(c, section, "Conditions");
    if (rc != ENR_OK)
        return rc;
    if (json_object_size(section) > ENR_AWS_CONDITIONS_MAX)
        return fail_at(c->err, ENR_E_PARSE, &c->p, "%zu conditions (at most %d)",
                       json_object_size(section), ENR_AWS_CONDITIONS_MAX);
    /* Names first: conditions may name each other in any order. */
    const char *name;
    const json_t *expr;
    json_object_foreach ((json_t *)section, name, expr) {
        if (!name_ok(name)) {
            path_key(&c->p, name);
            return fail_at(c->err, ENR_E_PARSE, &c->p, "a name is 1..%d bytes", ENR_AWS_NAME_MAX);
        }
        c->t->conds[c->t->n_conds].name = name;
        c->t->conds[c->t->n_conds].expr = expr;
        c->t->n_conds++;
    }
    c->in_condition = true;
    json_object_foreach ((json_t *)section, name, expr) {
        size_t saved = path_key(&c->p, name);
        if ((rc = check_cond(c, expr)) != ENR_OK)
            return rc;
        path_pop(&c->p, saved);
    }
    c->in_condition = false;
    unsigned char color[ENR_AWS_CONDITIONS_MAX] = {0};
    for (size_t i = 0; i < c->t->n_conds; i++)
        if (color[i] == WHITE && (rc = visit_cond(c, i, color)) != ENR_OK)
            return rc;
    return ENR_OK;
}

/* A literal string where an AWS name rule applies is judged now, so the
 * operator hears about it before any device does. */
static enr_code check_literal_name(checker *c, const json_t *v, bool (*ok)(const char *),
                                   const char *rule)
{
    if (json_is_string(v) && !ok(json_string_value(v)))
        return fail_at(c->err, ENR_E_PARSE, &c->p, "\"%s\" is not %s",
                       enr_quote(json_string_value(v)).text, rule);
    return ENR_OK;
}

#define THING_NAME_RULE "a valid name: 1..128 of [a-zA-Z0-9:_-]"

static enr_code check_thing_properties(checker *c, const json_t *props)
{
    const char *key;
    const json_t *v;
    enr_code rc = ENR_OK;
    if (json_object_get(props, "ThingName") == NULL)
        return fail_at(c->err, ENR_E_PARSE, &c->p, "the thing has no ThingName");
    json_object_foreach ((json_t *)props, key, v) {
        size_t saved = path_key(&c->p, key);
        if (strcmp(key, "ThingName") == 0 || strcmp(key, "ThingTypeName") == 0 ||
            strcmp(key, "BillingGroup") == 0) {
            rc = check_want(c, v, K_STRING);
            if (rc == ENR_OK)
                rc = check_literal_name(c, v, thing_name_ok, THING_NAME_RULE);
        } else if (strcmp(key, "ThingGroups") == 0) {
            rc = check_want(c, v, K_LIST);
            if (rc == ENR_OK && json_is_array(v) && json_array_size(v) > ENR_AWS_GROUPS_MAX)
                rc = fail_at(c->err, ENR_E_PARSE, &c->p, "%zu groups (a thing is in at most %d)",
                             json_array_size(v), ENR_AWS_GROUPS_MAX);
            size_t i;
            const json_t *g;
            json_array_foreach ((json_t *)v, i, g) {
                if (rc != ENR_OK)
                    break;
                size_t at = path_index(&c->p, i);
                rc = check_literal_name(c, g, thing_name_ok, THING_NAME_RULE);
                if (rc == ENR_OK)
                    path_pop(&c->p, at);
            }
        } else if (strcmp(key, "AttributePayload") == 0) {
            rc = want_object(c, v, "AttributePayload");
            if (rc == ENR_OK && json_object_size(v) > ENR_AWS_ATTRIBUTES_MAX)
                rc = fail_at(c->err, ENR_E_PARSE, &c->p, "%zu attributes (at most %d)",
                             json_object_size(v), ENR_AWS_ATTRIBUTES_MAX);
            const char *name;
            const json_t *value;
            json_object_foreach ((json_t *)v, name, value) {
                if (rc != ENR_OK)
                    break;
                size_t at = path_key(&c->p, name);
                if (!attribute_name_ok(name))
                    rc = fail_at(c->err, ENR_E_PARSE, &c->p,
                                 "an attribute's name is 1..128 of [a-zA-Z0-9_.,@/:#-]");
                if (rc == ENR_OK)
                    rc = check_want(c, value, K_STRING);
                if (rc == ENR_OK)
                    rc = check_literal_name(c, value, attribute_value_ok,
                                            "a valid attribute value: 0..800 of "
                                            "[a-zA-Z0-9_.,@/:#=[]-]");
                if (rc == ENR_OK)
                    path_pop(&c->p, at);
            }
        } else {
            path_pop(&c->p, saved);
            return fail_at(c->err, ENR_E_PARSE, &c->p,
                           "unknown property \"%s\" (a thing has ThingName, AttributePayload, "
                           "ThingTypeName, ThingGroups and BillingGroup)", enr_quote(key).text);
        }
        if (rc != ENR_OK)
            return rc;
        path_pop(&c->p, saved);
    }
    return ENR_OK;
}

static enr_code check_overrides(checker *c, const json_t *v)
{
    enr_code rc = want_object(c, v, "OverrideSettings");
    const char *key;
    const json_t *item;
    json_object_foreach ((json_t *)v, key, item) {
        if (rc != ENR_OK)
            break;
        size_t saved = path_key(&c->p, key);
        bool mergeable = strcmp(key, "AttributePayload") == 0 || strcmp(key, "ThingGroups") == 0;
        if (!mergeable && strcmp(key, "ThingTypeName") != 0 && strcmp(key, "BillingGroup") != 0)
            return fail_at(c->err, ENR_E_PARSE, &c->p,
                           "settings exist for AttributePayload, ThingTypeName, ThingGroups and "
                           "BillingGroup only");
        const char *s = json_string_value(item);
        if (s == NULL || (strcmp(s, "DO_NOTHING") != 0 && strcmp(s, "REPLACE") != 0 &&
                          strcmp(s, "FAIL") != 0 && strcmp(s, "MERGE") != 0))
            return fail_at(c->err, ENR_E_PARSE, &c->p,
                           "a setting is \"DO_NOTHING\", \"REPLACE\", \"FAIL\" or \"MERGE\"");
        if (strcmp(s, "MERGE") == 0 && !mergeable)
            return fail_at(c->err, ENR_E_PARSE, &c->p,
                           "MERGE is for AttributePayload and ThingGroups only");
        path_pop(&c->p, saved);
    }
    return rc;
}

static enr_code check_certificate_properties(checker *c, const json_t *props)
{
    const char *key;
    const json_t *v;
    if (json_object_get(props, "CertificatePem") != NULL) {
        path_key(&c->p, "CertificatePem");
        return fail_at(c->err, ENR_E_UNSUPPORTED, &c->p,
                       "not supported: this service issues the certificate; use CertificateId "
                       "{\"Ref\": \"AWS::IoT::Certificate::Id\"}");
    }
    if (json_object_get(props, "CertificateId") == NULL)
        return fail_at(c->err, ENR_E_PARSE, &c->p, "the certificate has no CertificateId");
    json_object_foreach ((json_t *)props, key, v) {
        size_t saved = path_key(&c->p, key);
        enr_code rc;
        if (strcmp(key, "CertificateId") == 0) {
            rc = check_want(c, v, K_STRING);
        } else if (strcmp(key, "Status") == 0) {
            rc = check_want(c, v, K_STRING);
            const char *s = json_string_value(v);
            if (rc == ENR_OK && s != NULL && status_canonical(s) == NULL)
                rc = fail_at(c->err, ENR_E_PARSE, &c->p,
                             "Status is \"ACTIVE\" or \"INACTIVE\", not \"%s\"", enr_quote(s).text);
        } else {
            path_pop(&c->p, saved);
            return fail_at(c->err, ENR_E_PARSE, &c->p,
                           "unknown property \"%s\" (a certificate has CertificateId and Status)",
                           enr_quote(key).text);
        }
        if (rc != ENR_OK)
            return rc;
        path_pop(&c->p, saved);
    }
    return ENR_OK;
}

static enr_code check_policy_properties(checker *c, const json_t *props)
{
    const json_t *name = json_object_get(props, "PolicyName");
    const json_t *doc = json_object_get(props, "PolicyDocument");
    if ((name == NULL) == (doc == NULL) || json_object_size(props) != 1)
        return fail_at(c->err, ENR_E_PARSE, &c->p,
                       "a policy has exactly one property: PolicyName or PolicyDocument");
    size_t saved = path_key(&c->p, name != NULL ? "PolicyName" : "PolicyDocument");
    enr_code rc = check_want(c, name != NULL ? name : doc, K_STRING);
    if (rc == ENR_OK && name != NULL)
        rc = check_literal_name(c, name, policy_name_ok,
                                "a valid policy name: 1..128 of [a-zA-Z0-9_+=,.@-]");
    if (rc == ENR_OK)
        path_pop(&c->p, saved);
    return rc;
}

static enr_code check_resource(checker *c, const char *name, const json_t *res)
{
    enr_code rc = want_object(c, res, "a resource");
    if (rc != ENR_OK)
        return rc;
    const char *key;
    const json_t *v;
    json_object_foreach ((json_t *)res, key, v) {
        if (strcmp(key, "Type") != 0 && strcmp(key, "Properties") != 0 &&
            strcmp(key, "Condition") != 0 && strcmp(key, "OverrideSettings") != 0)
            return fail_at(c->err, ENR_E_PARSE, &c->p,
                           "unknown key \"%s\" (a resource has Type, Properties, Condition and "
                           "OverrideSettings)", enr_quote(key).text);
    }
    const char *type = json_string_value(json_object_get(res, "Type"));
    if (type == NULL) {
        path_key(&c->p, "Type");
        return fail_at(c->err, ENR_E_PARSE, &c->p, "a resource needs a Type (a string)");
    }
    bool is_thing = strcmp(type, "AWS::IoT::Thing") == 0;
    bool is_cert = strcmp(type, "AWS::IoT::Certificate") == 0;
    bool is_policy = strcmp(type, "AWS::IoT::Policy") == 0;
    if (!is_thing && !is_cert && !is_policy) {
        path_key(&c->p, "Type");
        return fail_at(c->err, ENR_E_UNSUPPORTED, &c->p,
                       "\"%s\" is not supported (AWS::IoT::Thing, AWS::IoT::Certificate and "
                       "AWS::IoT::Policy are)", enr_quote(type).text);
    }
    const json_t *cond = json_object_get(res, "Condition");
    if (cond != NULL) {
        size_t saved = path_key(&c->p, "Condition");
        if (is_thing)
            return fail_at(c->err, ENR_E_UNSUPPORTED, &c->p,
                           "the thing cannot have a Condition here: it is always created");
        if ((rc = check_condition_name(c, cond)) != ENR_OK)
            return rc;
        path_pop(&c->p, saved);
    }
    const json_t *overrides = json_object_get(res, "OverrideSettings");
    if (overrides != NULL) {
        size_t saved = path_key(&c->p, "OverrideSettings");
        if (!is_thing)
            return fail_at(c->err, ENR_E_PARSE, &c->p, "only a thing has OverrideSettings");
        if ((rc = check_overrides(c, overrides)) != ENR_OK)
            return rc;
        path_pop(&c->p, saved);
    }
    const json_t *props = json_object_get(res, "Properties");
    size_t saved = path_key(&c->p, "Properties");
    if (props == NULL)
        return fail_at(c->err, ENR_E_PARSE, &c->p, "a %s needs Properties", type);
    if ((rc = want_object(c, props, "Properties")) != ENR_OK)
        return rc;
    enr_aws_template *t = c->t;
    if (is_thing) {
        if (t->thing.body != NULL)
            return fail_at(c->err, ENR_E_PARSE, &c->p,
                           "a second AWS::IoT::Thing (\"%s\" is one already)",
                           enr_quote(t->thing.name).text);
        rc = check_thing_properties(c, props);
        t->thing = (resource){name, res};
    } else if (is_cert) {
        if (t->cert.body != NULL)
            return fail_at(c->err, ENR_E_PARSE, &c->p,
                           "a second AWS::IoT::Certificate (\"%s\" is one already)",
                           enr_quote(t->cert.name).text);
        rc = check_certificate_properties(c, props);
        t->cert = (resource){name, res};
    } else {
        rc = check_policy_properties(c, props);
        t->policies[t->n_policies++] = (resource){name, res};
    }
    if (rc == ENR_OK)
        path_pop(&c->p, saved);
    return rc;
}

static enr_code check_resources(checker *c, const json_t *section)
{
    enr_code rc = want_object(c, section, "Resources");
    if (rc != ENR_OK)
        return rc;
    if (json_object_size(section) > ENR_AWS_RESOURCES_MAX)
        return fail_at(c->err, ENR_E_PARSE, &c->p, "%zu resources (at most %d)",
                       json_object_size(section), ENR_AWS_RESOURCES_MAX);
    const char *name;
    const json_t *res;
    json_object_foreach ((json_t *)section, name, res) {
        size_t saved = path_key(&c->p, name);
        if (!name_ok(name))
            return fail_at(c->err, ENR_E_PARSE, &c->p, "a name is 1..%d bytes", ENR_AWS_NAME_MAX);
        if ((rc = check_resource(c, name, res)) != ENR_OK)
            return rc;
        path_pop(&c->p, saved);
    }
    if (c->t->thing.body == NULL)
        return fail_at(c->err, ENR_E_PARSE, &c->p, "no resource of Type AWS::IoT::Thing");
    return ENR_OK;
}

static enr_code check_device_config(checker *c, const json_t *section)
{
    enr_code rc = want_object(c, section, "DeviceConfiguration");
    if (rc != ENR_OK)
        return rc;
    if (json_object_size(section) > ENR_AWS_DEVICE_CONFIG_MAX)
        return fail_at(c->err, ENR_E_PARSE, &c->p, "%zu entries (at most %d)",
                       json_object_size(section), ENR_AWS_DEVICE_CONFIG_MAX);
    const char *name;
    const json_t *v;
    json_object_foreach ((json_t *)section, name, v) {
        size_t saved = path_key(&c->p, name);
        if (!name_ok(name))
            return fail_at(c->err, ENR_E_PARSE, &c->p, "a name is 1..%d bytes", ENR_AWS_NAME_MAX);
        if ((rc = check_want(c, v, K_STRING)) != ENR_OK)
            return rc;
        path_pop(&c->p, saved);
    }
    c->t->device_config = section;
    return ENR_OK;
}

static enr_code check_template(checker *c, const json_t *root)
{
    static const char *const SECTIONS[] = {"Parameters", "Mappings", "Conditions", "Resources",
                                           "DeviceConfiguration"};
    const char *key;
    const json_t *v;
    json_object_foreach ((json_t *)root, key, v) {
        bool known = false;
        for (size_t i = 0; i < sizeof SECTIONS / sizeof SECTIONS[0]; i++)
            known = known || strcmp(key, SECTIONS[i]) == 0;
        if (!known) {
            path_key(&c->p, key);
            return fail_at(c->err, ENR_E_PARSE, &c->p,
                           "unknown section (a template has Parameters, Mappings, Conditions, "
                           "Resources and DeviceConfiguration)");
        }
    }
    enr_code rc = check_tree(c, root, 1);
    /* In dependency order: Refs need the parameters, conditions the
     * mappings, resources all three. */
    typedef enr_code (*section_fn)(checker *, const json_t *);
    static const struct {
        const char *name;
        section_fn fn;
    } ORDER[] = {{"Parameters", check_parameters},
                 {"Mappings", check_mappings},
                 {"Conditions", check_conditions},
                 {"Resources", check_resources},
                 {"DeviceConfiguration", check_device_config}};
    for (size_t i = 0; i < sizeof ORDER / sizeof ORDER[0] && rc == ENR_OK; i++) {
        const json_t *section = json_object_get(root, ORDER[i].name);
        if (section == NULL) {
            if (strcmp(ORDER[i].name, "Resources") == 0)
                rc = fail_at(c->err, ENR_E_PARSE, &c->p, "no Resources section");
            continue;
        }
        size_t saved = path_key(&c->p, ORDER[i].name);
        rc = ORDER[i].fn(c, section);
        if (rc == ENR_OK)
            path_pop(&c->p, saved);
    }
    return rc;
}

void enr_aws_template_free(enr_aws_template *t)
{
    if (t == NULL)
        return;
    for (size_t i = 0; i < t->n_params; i++)
        free(t->params[i].def);
    json_decref(t->root);
    free(t);
}

enr_code enr_aws_template_parse(const char *text, size_t len, enr_aws_template **out,
                                enr_error *err)
{
    if (out == NULL)
        return enr_error_set(err, ENR_E_USAGE, "enr_aws_template_parse: out is NULL");
    *out = NULL;
    if (text == NULL)
        return enr_error_set(err, ENR_E_USAGE, "enr_aws_template_parse: no template");
    if (len > ENR_AWS_TEMPLATE_MAX)
        return enr_error_set(err, ENR_E_PARSE, "the template is %zu bytes (at most %d)", len,
                             ENR_AWS_TEMPLATE_MAX);
    json_error_t jerr;
    json_t *root = json_loadb(text, len, JSON_REJECT_DUPLICATES, &jerr);
    if (root == NULL)
        return enr_error_set(err, ENR_E_PARSE, "the template is not JSON: line %d, column %d: %s",
                             jerr.line, jerr.column, jerr.text);
    if (!json_is_object(root)) {
        enr_code rc = enr_error_set(err, ENR_E_PARSE, "the template is %s, not an object",
                                    json_kind(root));
        json_decref(root);
        return rc;
    }
    enr_aws_template *t = calloc(1, sizeof *t);
    if (t == NULL) {
        json_decref(root);
        return enr_error_set(err, ENR_E_NOMEM, "out of memory");
    }
    t->root = root;
    checker c = {.t = t, .err = err};
    enr_code rc = check_template(&c, root);
    if (rc != ENR_OK) {
        enr_aws_template_free(t);
        return rc;
    }
    *out = t;
    return ENR_OK;
}

size_t enr_aws_template_parameter_count(const enr_aws_template *t)
{
    return t != NULL ? t->n_params : 0;
}

const char *enr_aws_template_parameter_name(const enr_aws_template *t, size_t i)
{
    return t != NULL && i < t->n_params ? t->params[i].name : NULL;
}

enr_aws_param_type enr_aws_template_parameter_type(const enr_aws_template *t, size_t i)
{
    return t != NULL && i < t->n_params ? t->params[i].type : ENR_AWS_PARAM_STRING;
}

const char *enr_aws_template_parameter_default(const enr_aws_template *t, size_t i)
{
    return t != NULL && i < t->n_params ? t->params[i].def : NULL;
}

/* ---- evaluation ------------------------------------------------------- */

/* A value while evaluating: a string, or a list of strings. */
typedef struct value {
    bool is_list;
    char *s;
    char **items;
    size_t n;
} value;

static void value_clear(value *v)
{
    free(v->s);
    for (size_t i = 0; i < v->n; i++)
        free(v->items[i]);
    free(v->items);
    *v = (value){0};
}

typedef struct evaluator {
    const enr_aws_template *t;
    const char *values[ENR_AWS_PARAMETERS_MAX]; /* given or default; NULL: missing */
    bool given[ENR_AWS_PARAMETERS_MAX];
    const enr_aws_pseudo *pseudo;
    signed char cond[ENR_AWS_CONDITIONS_MAX]; /* -1 not yet evaluated, else 0 or 1 */
    path p;
    enr_error *err;
} evaluator;

static enr_code nomem(evaluator *e)
{
    return enr_error_set(e->err, ENR_E_NOMEM, "out of memory");
}

/* A string under construction, never over ENR_AWS_STRING_MAX bytes. */
typedef struct strbuf {
    char *s;
    size_t len;
    evaluator *e;
} strbuf;

static enr_code sb_add(strbuf *b, const char *text, size_t n)
{
    if (n > ENR_AWS_STRING_MAX - b->len)
        return refuse_at(b->e->err, ENR_R_TEMPLATE_EVALUATION, &b->e->p,
                         "the result is longer than %d bytes", ENR_AWS_STRING_MAX);
    char *grown = realloc(b->s, b->len + n + 1);
    if (grown == NULL)
        return nomem(b->e);
    memcpy(grown + b->len, text, n);
    b->len += n;
    grown[b->len] = '\0';
    b->s = grown;
    return ENR_OK;
}

static enr_code set_string(evaluator *e, value *out, const char *s)
{
    *out = (value){0};
    if ((out->s = strdup(s)) == NULL)
        return nomem(e);
    return ENR_OK;
}

/* The value of a parameter or pseudo parameter, or a refusal. A pseudo
 * parameter comes from the certificate even when the template declares it:
 * a device must not choose its own certificate id. */
static enr_code resolve(evaluator *e, const char *name, const char **out)
{
    int p = pseudo_index(name) >= 0 ? -1 : param_index(e->t, name);
    if (p >= 0) {
        if (e->values[p] == NULL)
            return refuse_at(e->err, ENR_R_PARAMETER_MISSING, &e->p,
                             "the parameter \"%s\" was not given and has no default",
                             enr_quote(name).text);
        *out = e->values[p];
        return ENR_OK;
    }
    int q = pseudo_index(name);
    if (q < 0) /* parse refused it */
        return enr_error_set(e->err, ENR_E_INTERNAL, "%s: \"%s\" is unknown", path_text(&e->p),
                             enr_quote(name).text);
    const char *v = NULL;
    if (e->pseudo != NULL)
        memcpy(&v, (const char *)e->pseudo + PSEUDO[q].offset, sizeof v);
    if (v == NULL)
        return refuse_at(e->err, ENR_R_PARAMETER_MISSING, &e->p,
                         "%s has no value: the certificate does not carry it", PSEUDO[q].name);
    if (strnlen(v, ENR_AWS_STRING_MAX + 1) > ENR_AWS_STRING_MAX)
        return refuse_at(e->err, ENR_R_PARAMETER_INVALID, &e->p, "%s is longer than %d bytes",
                         PSEUDO[q].name, ENR_AWS_STRING_MAX);
    *out = v;
    return ENR_OK;
}

static enr_code eval_value(evaluator *e, const json_t *v, value *out);
static enr_code eval_named_cond(evaluator *e, size_t index, bool *out);

/* Argument `index` of the current function, evaluated with its path. */
static enr_code eval_arg(evaluator *e, const json_t *args, size_t index, value *out)
{
    size_t saved = path_index(&e->p, index);
    enr_code rc = eval_value(e, json_array_get(args, index), out);
    if (rc == ENR_OK)
        path_pop(&e->p, saved);
    return rc;
}

static enr_code list_push(evaluator *e, value *list, const char *s, size_t n)
{
    if (list->n >= ENR_AWS_LIST_MAX)
        return refuse_at(e->err, ENR_R_TEMPLATE_EVALUATION, &e->p,
                         "the list has more than %d items", ENR_AWS_LIST_MAX);
    char **grown = realloc(list->items, (list->n + 1) * sizeof *grown);
    if (grown == NULL)
        return nomem(e);
    list->items = grown;
    if ((grown[list->n] = strndup(s, n)) == NULL)
        return nomem(e);
    list->n++;
    return ENR_OK;
}

typedef struct sub_ctx {
    evaluator *e;
    strbuf *b;
} sub_ctx;

static enr_code sub_piece(void *ctx, const char *text, size_t len, bool is_name)
{
    sub_ctx *s = ctx;
    if (!is_name)
        return sb_add(s->b, text, len);
    char name[ENR_AWS_NAME_MAX + 1];
    if (len > ENR_AWS_NAME_MAX)
        return enr_error_set(s->e->err, ENR_E_INTERNAL, "%s: a name too long", path_text(&s->e->p));
    memcpy(name, text, len);
    name[len] = '\0';
    const char *v = NULL;
    enr_code rc = resolve(s->e, name, &v);
    return rc == ENR_OK ? sb_add(s->b, v, strlen(v)) : rc;
}

/* Fn::Select's index: a literal integer, or a string of decimal digits. */
static enr_code eval_index(evaluator *e, const json_t *args, size_t *out)
{
    const json_t *index = json_array_get(args, 0);
    if (json_is_integer(index)) {
        *out = (size_t)json_integer_value(index); /* parse refused negatives */
        return ENR_OK;
    }
    value v = {0};
    enr_code rc = eval_arg(e, args, 0, &v);
    if (rc != ENR_OK)
        return rc;
    size_t n = 0;
    bool ok = v.s[0] != '\0' && strlen(v.s) <= 9;
    for (const char *p = v.s; ok && *p != '\0'; p++) {
        ok = *p >= '0' && *p <= '9';
        n = n * 10 + (size_t)(*p - '0');
    }
    if (!ok) {
        size_t saved = path_index(&e->p, 0);
        rc = refuse_at(e->err, ENR_R_TEMPLATE_EVALUATION, &e->p,
                       "the index \"%s\" is not a non-negative integer", enr_quote(v.s).text);
        (void)saved;
    }
    value_clear(&v);
    *out = n;
    return rc;
}

static enr_code eval_intrinsic(evaluator *e, const char *fn, const json_t *arg, value *out)
{
    enr_code rc = ENR_OK;
    *out = (value){0};
    if (strcmp(fn, "Ref") == 0) {
        const char *v = NULL;
        rc = resolve(e, json_string_value(arg), &v);
        return rc == ENR_OK ? set_string(e, out, v) : rc;
    }
    size_t saved = path_key(&e->p, fn);
    if (strcmp(fn, "Fn::Join") == 0) {
        value list = {0};
        strbuf b = {.e = e};
        const char *delim = json_string_value(json_array_get(arg, 0));
        rc = eval_arg(e, arg, 1, &list);
        rc = rc == ENR_OK ? sb_add(&b, "", 0) : rc;
        for (size_t i = 0; i < list.n && rc == ENR_OK; i++) {
            if (i > 0)
                rc = sb_add(&b, delim, strlen(delim));
            if (rc == ENR_OK)
                rc = sb_add(&b, list.items[i], strlen(list.items[i]));
        }
        value_clear(&list);
        if (rc == ENR_OK)
            out->s = b.s;
        else
            free(b.s);
    } else if (strcmp(fn, "Fn::Select") == 0) {
        size_t index = 0;
        value list = {0};
        rc = eval_index(e, arg, &index);
        if (rc == ENR_OK)
            rc = eval_arg(e, arg, 1, &list);
        if (rc == ENR_OK && index >= list.n)
            rc = refuse_at(e->err, ENR_R_TEMPLATE_EVALUATION, &e->p,
                           "the index %zu is out of range: the list has %zu item%s", index, list.n,
                           list.n == 1 ? "" : "s");
        if (rc == ENR_OK) {
            out->s = list.items[index];
            list.items[index] = NULL;
        }
        value_clear(&list);
    } else if (strcmp(fn, "Fn::Split") == 0) {
        const char *delim = json_string_value(json_array_get(arg, 0));
        size_t dlen = strlen(delim);
        value source = {0};
        rc = eval_arg(e, arg, 1, &source);
        out->is_list = true;
        const char *p = source.s;
        while (rc == ENR_OK) {
            const char *hit = strstr(p, delim);
            size_t n = hit != NULL ? (size_t)(hit - p) : strlen(p);
            rc = list_push(e, out, p, n);
            if (hit == NULL)
                break;
            p = hit + dlen;
        }
        value_clear(&source);
    } else if (strcmp(fn, "Fn::FindInMap") == 0) {
        value keys[3] = {{0}};
        const json_t *level = e->t->mappings;
        static const char *const WHAT[] = {"mapping", "top-level key", "second-level key"};
        for (size_t i = 0; i < 3 && rc == ENR_OK; i++) {
            rc = eval_arg(e, arg, i, &keys[i]);
            if (rc != ENR_OK)
                break;
            level = mapping_get(level, keys[i].s);
            if (level == NULL) {
                size_t at = path_index(&e->p, i);
                rc = refuse_at(e->err, ENR_R_TEMPLATE_EVALUATION, &e->p,
                               "there is no %s \"%s\" in Mappings%s", WHAT[i], enr_quote(keys[i].s).text,
                               i == 0 ? "" : " under the keys before it");
                (void)at;
            }
        }
        if (rc == ENR_OK) {
            char text[64];
            const char *s = json_string_value(level);
            if (s == NULL) {
                number_text(level, text, sizeof text);
                s = text;
            }
            rc = set_string(e, out, s);
        }
        for (size_t i = 0; i < 3; i++)
            value_clear(&keys[i]);
    } else if (strcmp(fn, "Fn::If") == 0) {
        bool yes = false;
        rc = eval_named_cond(e, (size_t)cond_index(e->t, json_string_value(json_array_get(arg, 0))),
                             &yes);
        if (rc == ENR_OK)
            rc = eval_arg(e, arg, yes ? 1 : 2, out);
    } else if (strcmp(fn, "Fn::Sub") == 0) {
        strbuf b = {.e = e};
        sub_ctx ctx = {e, &b};
        rc = sb_add(&b, "", 0);
        if (rc == ENR_OK)
            rc = scan_sub(json_string_value(arg), sub_piece, &ctx, NULL);
        if (rc == ENR_OK)
            out->s = b.s;
        else
            free(b.s);
    } else {
        rc = enr_error_set(e->err, ENR_E_INTERNAL, "%s: not checked at parse", path_text(&e->p));
    }
    if (rc == ENR_OK)
        path_pop(&e->p, saved);
    else
        value_clear(out);
    return rc;
}

static enr_code eval_value(evaluator *e, const json_t *v, value *out)
{
    *out = (value){0};
    if (json_is_string(v))
        return set_string(e, out, json_string_value(v));
    if (json_is_number(v)) {
        char text[64];
        number_text(v, text, sizeof text);
        return set_string(e, out, text);
    }
    if (json_is_array(v)) {
        out->is_list = true;
        size_t i;
        const json_t *item;
        json_array_foreach ((json_t *)v, i, item) {
            value one = {0};
            size_t saved = path_index(&e->p, i);
            enr_code rc = eval_value(e, item, &one);
            if (rc == ENR_OK)
                rc = list_push(e, out, one.s, strlen(one.s));
            value_clear(&one);
            if (rc != ENR_OK) {
                value_clear(out);
                return rc;
            }
            path_pop(&e->p, saved);
        }
        return ENR_OK;
    }
    const json_t *arg = NULL;
    const char *fn = only_key(v, &arg);
    if (fn == NULL)
        return enr_error_set(e->err, ENR_E_INTERNAL, "%s: not checked at parse", path_text(&e->p));
    return eval_intrinsic(e, fn, arg, out);
}

static enr_code eval_cond(evaluator *e, const json_t *v, bool *out)
{
    const json_t *arg = NULL;
    const char *fn = only_key(v, &arg);
    size_t saved = path_key(&e->p, fn);
    enr_code rc = ENR_OK;
    if (strcmp(fn, "Condition") == 0) {
        rc = eval_named_cond(e, (size_t)cond_index(e->t, json_string_value(arg)), out);
    } else if (strcmp(fn, "Fn::Equals") == 0) {
        value a = {0}, b = {0};
        rc = eval_arg(e, arg, 0, &a);
        if (rc == ENR_OK)
            rc = eval_arg(e, arg, 1, &b);
        if (rc == ENR_OK)
            *out = strcmp(a.s, b.s) == 0;
        value_clear(&a);
        value_clear(&b);
    } else {
        /* All operands are evaluated (no short cut), so a missing
         * parameter is reported whatever the order of the operands. */
        bool is_and = strcmp(fn, "Fn::And") == 0, is_or = strcmp(fn, "Fn::Or") == 0;
        bool acc = is_and;
        size_t i;
        const json_t *item;
        json_array_foreach ((json_t *)arg, i, item) {
            bool one = false;
            size_t at = path_index(&e->p, i);
            if ((rc = eval_cond(e, item, &one)) != ENR_OK)
                break;
            path_pop(&e->p, at);
            acc = is_and ? acc && one : is_or ? acc || one : !one;
        }
        *out = acc;
    }
    if (rc == ENR_OK)
        path_pop(&e->p, saved);
    return rc;
}

/* A named condition, once per evaluation, at its own path. */
static enr_code eval_named_cond(evaluator *e, size_t index, bool *out)
{
    if (e->cond[index] >= 0) {
        *out = e->cond[index] == 1;
        return ENR_OK;
    }
    path here = e->p;
    path_pop(&e->p, 0);
    path_key(&e->p, "Conditions");
    path_key(&e->p, e->t->conds[index].name);
    enr_code rc = eval_cond(e, e->t->conds[index].expr, out);
    if (rc == ENR_OK) {
        e->cond[index] = *out ? 1 : 0;
        e->p = here;
    }
    return rc;
}

/* ---- the plan --------------------------------------------------------- */

typedef struct pair {
    char *name;
    char *value;
} pair;

struct enr_aws_plan {
    char *thing_name;
    char *thing_type;
    char *billing_group;
    pair attributes[ENR_AWS_ATTRIBUTES_MAX];
    size_t n_attributes;
    char *groups[ENR_AWS_GROUPS_MAX];
    size_t n_groups;
    pair overrides[4];
    size_t n_overrides;
    bool has_cert;
    char *cert_id;
    char *cert_status;
    pair policies[ENR_AWS_RESOURCES_MAX]; /* name, or NULL and value = the document */
    size_t n_policies;
    pair config[ENR_AWS_DEVICE_CONFIG_MAX];
    size_t n_config;
};

void enr_aws_plan_free(enr_aws_plan *plan)
{
    if (plan == NULL)
        return;
    free(plan->thing_name);
    free(plan->thing_type);
    free(plan->billing_group);
    for (size_t i = 0; i < plan->n_attributes; i++) {
        free(plan->attributes[i].name);
        free(plan->attributes[i].value);
    }
    for (size_t i = 0; i < plan->n_groups; i++)
        free(plan->groups[i]);
    for (size_t i = 0; i < plan->n_overrides; i++) {
        free(plan->overrides[i].name);
        free(plan->overrides[i].value);
    }
    free(plan->cert_id);
    free(plan->cert_status);
    for (size_t i = 0; i < plan->n_policies; i++) {
        free(plan->policies[i].name);
        free(plan->policies[i].value);
    }
    for (size_t i = 0; i < plan->n_config; i++) {
        free(plan->config[i].name);
        free(plan->config[i].value);
    }
    free(plan);
}

/* A property's string value, at its path; `*out` owned by the caller. */
static enr_code eval_string_at(evaluator *e, const json_t *obj, const char *key, char **out)
{
    *out = NULL;
    const json_t *v = json_object_get(obj, key);
    if (v == NULL)
        return ENR_OK;
    size_t saved = path_key(&e->p, key);
    value val = {0};
    enr_code rc = eval_value(e, v, &val);
    if (rc == ENR_OK) {
        *out = val.s;
        path_pop(&e->p, saved);
    }
    return rc;
}

static enr_code judge_name(evaluator *e, const char *key, const char *s, bool (*ok)(const char *),
                           const char *rule)
{
    if (s == NULL || ok(s))
        return ENR_OK;
    size_t saved = path_key(&e->p, key);
    enr_code rc = refuse_at(e->err, ENR_R_TEMPLATE_EVALUATION, &e->p, "\"%s\" is not %s",
                            enr_quote(s).text, rule);
    path_pop(&e->p, saved);
    return rc;
}

/* Whether a resource is created: no Condition, or a true one. */
static enr_code resource_wanted(evaluator *e, const json_t *res, bool *out)
{
    const json_t *cond = json_object_get(res, "Condition");
    *out = true;
    if (cond == NULL)
        return ENR_OK;
    return eval_named_cond(e, (size_t)cond_index(e->t, json_string_value(cond)), out);
}

static enr_code plan_thing(evaluator *e, enr_aws_plan *plan)
{
    const json_t *res = e->t->thing.body;
    const json_t *props = json_object_get(res, "Properties");
    size_t s1 = path_key(&e->p, "Resources");
    path_key(&e->p, e->t->thing.name);
    size_t s2 = path_key(&e->p, "Properties");
    enr_code rc = eval_string_at(e, props, "ThingName", &plan->thing_name);
    if (rc == ENR_OK)
        rc = judge_name(e, "ThingName", plan->thing_name, thing_name_ok, THING_NAME_RULE);
    if (rc == ENR_OK)
        rc = eval_string_at(e, props, "ThingTypeName", &plan->thing_type);
    if (rc == ENR_OK)
        rc = judge_name(e, "ThingTypeName", plan->thing_type, thing_name_ok, THING_NAME_RULE);
    if (rc == ENR_OK)
        rc = eval_string_at(e, props, "BillingGroup", &plan->billing_group);
    if (rc == ENR_OK)
        rc = judge_name(e, "BillingGroup", plan->billing_group, thing_name_ok, THING_NAME_RULE);
    const json_t *attrs = json_object_get(props, "AttributePayload");
    const char *name;
    const json_t *v;
    if (rc == ENR_OK && attrs != NULL) {
        size_t s3 = path_key(&e->p, "AttributePayload");
        json_object_foreach ((json_t *)attrs, name, v) {
            pair *a = &plan->attributes[plan->n_attributes];
            if ((a->name = strdup(name)) == NULL)
                rc = nomem(e);
            else
                plan->n_attributes++;
            if (rc == ENR_OK)
                rc = eval_string_at(e, attrs, name, &a->value);
            if (rc == ENR_OK)
                rc = judge_name(e, name, a->value, attribute_value_ok,
                                "a valid attribute value: 0..800 of [a-zA-Z0-9_.,@/:#=[]-]");
            if (rc != ENR_OK)
                break;
        }
        if (rc == ENR_OK)
            path_pop(&e->p, s3);
    }
    const json_t *groups = json_object_get(props, "ThingGroups");
    if (rc == ENR_OK && groups != NULL) {
        size_t s3 = path_key(&e->p, "ThingGroups");
        value list = {0};
        rc = eval_value(e, groups, &list);
        if (rc == ENR_OK && list.n > ENR_AWS_GROUPS_MAX)
            rc = refuse_at(e->err, ENR_R_TEMPLATE_EVALUATION, &e->p,
                           "%zu groups (a thing is in at most %d)", list.n, ENR_AWS_GROUPS_MAX);
        for (size_t i = 0; i < list.n && rc == ENR_OK; i++) {
            if (!thing_name_ok(list.items[i])) {
                size_t at = path_index(&e->p, i);
                rc = refuse_at(e->err, ENR_R_TEMPLATE_EVALUATION, &e->p, "\"%s\" is not %s",
                               enr_quote(list.items[i]).text, THING_NAME_RULE);
                (void)at;
                break;
            }
            plan->groups[plan->n_groups++] = list.items[i];
            list.items[i] = NULL;
        }
        value_clear(&list);
        if (rc == ENR_OK)
            path_pop(&e->p, s3);
    }
    path_pop(&e->p, s2);
    const json_t *overrides = json_object_get(res, "OverrideSettings");
    json_object_foreach ((json_t *)overrides, name, v) {
        if (rc != ENR_OK)
            break;
        pair *o = &plan->overrides[plan->n_overrides];
        o->name = strdup(name);
        o->value = strdup(json_string_value(v));
        plan->n_overrides++;
        if (o->name == NULL || o->value == NULL)
            rc = nomem(e);
    }
    if (rc == ENR_OK)
        path_pop(&e->p, s1);
    return rc;
}

static enr_code plan_certificate(evaluator *e, enr_aws_plan *plan)
{
    const json_t *res = e->t->cert.body;
    if (res == NULL)
        return ENR_OK;
    size_t s1 = path_key(&e->p, "Resources");
    path_key(&e->p, e->t->cert.name);
    bool wanted = false;
    enr_code rc = resource_wanted(e, res, &wanted);
    if (rc == ENR_OK && wanted) {
        const json_t *props = json_object_get(res, "Properties");
        size_t s2 = path_key(&e->p, "Properties");
        plan->has_cert = true;
        rc = eval_string_at(e, props, "CertificateId", &plan->cert_id);
        if (rc == ENR_OK)
            rc = eval_string_at(e, props, "Status", &plan->cert_status);
        if (rc == ENR_OK && plan->cert_status != NULL) {
            const char *canonical = status_canonical(plan->cert_status);
            if (canonical == NULL) {
                path_key(&e->p, "Status");
                rc = refuse_at(e->err, ENR_R_TEMPLATE_EVALUATION, &e->p,
                               "Status is \"ACTIVE\" or \"INACTIVE\", not \"%s\"",
                               enr_quote(plan->cert_status).text);
            } else {
                memcpy(plan->cert_status, canonical, strlen(canonical)); /* same length */
            }
        }
        if (rc == ENR_OK)
            path_pop(&e->p, s2);
    }
    if (rc == ENR_OK)
        path_pop(&e->p, s1);
    return rc;
}

static enr_code plan_policies(evaluator *e, enr_aws_plan *plan)
{
    enr_code rc = ENR_OK;
    for (size_t i = 0; i < e->t->n_policies && rc == ENR_OK; i++) {
        const json_t *res = e->t->policies[i].body;
        size_t s1 = path_key(&e->p, "Resources");
        path_key(&e->p, e->t->policies[i].name);
        bool wanted = false;
        rc = resource_wanted(e, res, &wanted);
        if (rc == ENR_OK && wanted) {
            const json_t *props = json_object_get(res, "Properties");
            size_t s2 = path_key(&e->p, "Properties");
            pair *p = &plan->policies[plan->n_policies++];
            rc = eval_string_at(e, props, "PolicyName", &p->name);
            if (rc == ENR_OK)
                rc = judge_name(e, "PolicyName", p->name, policy_name_ok,
                                "a valid policy name: 1..128 of [a-zA-Z0-9_+=,.@-]");
            if (rc == ENR_OK)
                rc = eval_string_at(e, props, "PolicyDocument", &p->value);
            if (rc == ENR_OK)
                path_pop(&e->p, s2);
        }
        if (rc == ENR_OK)
            path_pop(&e->p, s1);
    }
    return rc;
}

static enr_code plan_device_config(evaluator *e, enr_aws_plan *plan)
{
    const json_t *section = e->t->device_config;
    if (section == NULL)
        return ENR_OK;
    size_t s1 = path_key(&e->p, "DeviceConfiguration");
    const char *name;
    const json_t *v;
    enr_code rc = ENR_OK;
    json_object_foreach ((json_t *)section, name, v) {
        pair *c = &plan->config[plan->n_config];
        if ((c->name = strdup(name)) == NULL)
            return nomem(e);
        plan->n_config++;
        if ((rc = eval_string_at(e, section, name, &c->value)) != ENR_OK)
            return rc;
    }
    path_pop(&e->p, s1);
    return rc;
}

/* The device's parameters, all judged before any is used. */
static enr_code take_parameters(evaluator *e, const json_t *parameters)
{
    for (size_t i = 0; i < e->t->n_params; i++) {
        const param *p = &e->t->params[i];
        const json_t *v = parameters != NULL ? json_object_get(parameters, p->name) : NULL;
        e->values[i] = p->def;
        if (v == NULL || pseudo_index(p->name) >= 0) /* pseudo: see resolve() */
            continue;
        path_pop(&e->p, 0);
        path_key(&e->p, "parameters");
        path_key(&e->p, p->name);
        if (!json_is_string(v))
            return refuse_at(e->err, ENR_R_PARAMETER_INVALID, &e->p,
                             "a parameter's value is a string, not %s", json_kind(v));
        const char *s = json_string_value(v);
        if (json_string_length(v) > ENR_AWS_STRING_MAX)
            return refuse_at(e->err, ENR_R_PARAMETER_INVALID, &e->p,
                             "the value is %zu bytes (at most %d)", json_string_length(v),
                             ENR_AWS_STRING_MAX);
        if (strlen(s) != json_string_length(v))
            return refuse_at(e->err, ENR_R_PARAMETER_INVALID, &e->p, "the value holds a NUL byte");
        if (p->type == ENR_AWS_PARAM_NUMBER && !number_text_ok(s))
            return refuse_at(e->err, ENR_R_PARAMETER_INVALID, &e->p,
                             "\"%s\" is not a number (the parameter is a Number)", enr_quote(s).text);
        e->values[i] = s;
        e->given[i] = true;
    }
    path_pop(&e->p, 0);
    return ENR_OK;
}

enr_code enr_aws_template_evaluate(const enr_aws_template *t, const json_t *parameters,
                                   const enr_aws_pseudo *pseudo, enr_aws_plan **out,
                                   enr_error *err)
{
    if (out == NULL)
        return enr_error_set(err, ENR_E_USAGE, "enr_aws_template_evaluate: out is NULL");
    *out = NULL;
    if (t == NULL)
        return enr_error_set(err, ENR_E_USAGE, "enr_aws_template_evaluate: no template");
    if (parameters != NULL && !json_is_object(parameters))
        return enr_error_set(err, ENR_E_USAGE, "parameters must be a JSON object, not %s",
                             json_kind(parameters));
    /* About 5 KiB: on the heap, so evaluations on small thread stacks are fine. */
    evaluator *e = calloc(1, sizeof *e);
    enr_aws_plan *plan = calloc(1, sizeof *plan);
    if (e == NULL || plan == NULL) {
        free(e);
        free(plan);
        return enr_error_set(err, ENR_E_NOMEM, "out of memory");
    }
    e->t = t;
    e->pseudo = pseudo;
    e->err = err;
    memset(e->cond, -1, sizeof e->cond);
    enr_code rc = take_parameters(e, parameters);
    if (rc == ENR_OK)
        rc = plan_thing(e, plan);
    if (rc == ENR_OK)
        rc = plan_certificate(e, plan);
    if (rc == ENR_OK)
        rc = plan_policies(e, plan);
    if (rc == ENR_OK)
        rc = plan_device_config(e, plan);
    free(e);
    if (rc != ENR_OK) {
        enr_aws_plan_free(plan);
        return rc;
    }
    *out = plan;
    return ENR_OK;
}

/* ---- plan accessors --------------------------------------------------- */

const char *enr_aws_plan_thing_name(const enr_aws_plan *plan)
{
    return plan != NULL ? plan->thing_name : NULL;
}

const char *enr_aws_plan_thing_type(const enr_aws_plan *plan)
{
    return plan != NULL ? plan->thing_type : NULL;
}

const char *enr_aws_plan_billing_group(const enr_aws_plan *plan)
{
    return plan != NULL ? plan->billing_group : NULL;
}

size_t enr_aws_plan_attribute_count(const enr_aws_plan *plan)
{
    return plan != NULL ? plan->n_attributes : 0;
}

const char *enr_aws_plan_attribute_name(const enr_aws_plan *plan, size_t i)
{
    return plan != NULL && i < plan->n_attributes ? plan->attributes[i].name : NULL;
}

const char *enr_aws_plan_attribute_value(const enr_aws_plan *plan, size_t i)
{
    return plan != NULL && i < plan->n_attributes ? plan->attributes[i].value : NULL;
}

size_t enr_aws_plan_group_count(const enr_aws_plan *plan)
{
    return plan != NULL ? plan->n_groups : 0;
}

const char *enr_aws_plan_group(const enr_aws_plan *plan, size_t i)
{
    return plan != NULL && i < plan->n_groups ? plan->groups[i] : NULL;
}

const char *enr_aws_plan_override(const enr_aws_plan *plan, const char *property)
{
    for (size_t i = 0; plan != NULL && property != NULL && i < plan->n_overrides; i++)
        if (strcmp(plan->overrides[i].name, property) == 0)
            return plan->overrides[i].value;
    return NULL;
}

bool enr_aws_plan_has_certificate(const enr_aws_plan *plan)
{
    return plan != NULL && plan->has_cert;
}

const char *enr_aws_plan_certificate_id(const enr_aws_plan *plan)
{
    return plan != NULL ? plan->cert_id : NULL;
}

const char *enr_aws_plan_certificate_status(const enr_aws_plan *plan)
{
    return plan != NULL ? plan->cert_status : NULL;
}

size_t enr_aws_plan_policy_count(const enr_aws_plan *plan)
{
    return plan != NULL ? plan->n_policies : 0;
}

const char *enr_aws_plan_policy_name(const enr_aws_plan *plan, size_t i)
{
    return plan != NULL && i < plan->n_policies ? plan->policies[i].name : NULL;
}

const char *enr_aws_plan_policy_document(const enr_aws_plan *plan, size_t i)
{
    return plan != NULL && i < plan->n_policies ? plan->policies[i].value : NULL;
}

size_t enr_aws_plan_config_count(const enr_aws_plan *plan)
{
    return plan != NULL ? plan->n_config : 0;
}

const char *enr_aws_plan_config_name(const enr_aws_plan *plan, size_t i)
{
    return plan != NULL && i < plan->n_config ? plan->config[i].name : NULL;
}

const char *enr_aws_plan_config_value(const enr_aws_plan *plan, size_t i)
{
    return plan != NULL && i < plan->n_config ? plan->config[i].value : NULL;
}

static json_t *string_or_null(const char *s)
{
    return s != NULL ? json_string(s) : json_null();
}

static json_t *pairs_object(const pair *pairs, size_t n)
{
    json_t *o = json_object();
    for (size_t i = 0; o != NULL && i < n; i++)
        if (json_object_set_new(o, pairs[i].name, json_string(pairs[i].value)) != 0) {
            json_decref(o);
            return NULL;
        }
    return o;
}

enr_code enr_aws_plan_to_json(const enr_aws_plan *plan, char **out, enr_error *err)
{
    if (plan == NULL || out == NULL)
        return enr_error_set(err, ENR_E_USAGE, "enr_aws_plan_to_json: NULL argument");
    *out = NULL;
    json_t *groups = json_array();
    for (size_t i = 0; groups != NULL && i < plan->n_groups; i++)
        json_array_append_new(groups, json_string(plan->groups[i]));
    json_t *policies = json_array();
    for (size_t i = 0; policies != NULL && i < plan->n_policies; i++) {
        const pair *p = &plan->policies[i];
        json_array_append_new(policies, p->name != NULL ? json_pack("{s:s}", "name", p->name)
                                                        : json_pack("{s:s}", "document", p->value));
    }
    json_t *cert = plan->has_cert ? json_pack("{s:o,s:o}", "id", string_or_null(plan->cert_id),
                                              "status", string_or_null(plan->cert_status))
                                  : json_null();
    json_t *doc = json_pack("{s:o,s:o,s:o,s:o,s:o,s:o,s:o,s:o,s:o}", "thingName",
                            string_or_null(plan->thing_name), "thingTypeName",
                            string_or_null(plan->thing_type), "billingGroup",
                            string_or_null(plan->billing_group), "attributes",
                            pairs_object(plan->attributes, plan->n_attributes), "thingGroups",
                            groups, "overrideSettings",
                            pairs_object(plan->overrides, plan->n_overrides), "certificate", cert,
                            "policies", policies, "deviceConfiguration",
                            pairs_object(plan->config, plan->n_config));
    char *text = doc != NULL ? json_dumps(doc, JSON_COMPACT) : NULL;
    json_decref(doc);
    if (text == NULL)
        return enr_error_set(err, ENR_E_NOMEM, "out of memory");
    *out = text;
    return ENR_OK;
}
