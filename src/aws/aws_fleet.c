/* AWS IoT fleet provisioning's wire (include/enroll/aws_fleet.h): topic
 * names, request payloads in JSON (jansson) or CBOR (libcbor), answers.
 *
 * Everything a device sends is outside input from any holder of a claim
 * certificate. CBOR in particular is checked in two passes: a streaming
 * pass over the heads (libcbor's cbor_stream_decode, which allocates
 * nothing) bounds nesting, item count and declared sizes and proves the
 * bytes are exactly one well-formed item; only then does cbor_load build
 * the tree. Without it, a 5-byte map head declaring 2^32 entries makes
 * cbor_load allocate for them, and a deep nest makes cbor_decref (which
 * recurses) overflow the stack. */
#include <cbor.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/quote.h"
#include "enroll/aws_fleet.h"
#include "enroll/mqtt.h"

/* ---- reasons ------------------------------------------------------------------ */

const char *enr_aws_fleet_reason_name(enr_aws_fleet_reason r)
{
    switch (r) {
    case ENR_AWS_FLEET_OK: return "ok";
    case ENR_AWS_FLEET_USAGE: return "usage";
    case ENR_AWS_FLEET_NOMEM: return "nomem";
    case ENR_AWS_FLEET_TOO_LARGE: return "too-large";
    case ENR_AWS_FLEET_MALFORMED: return "malformed";
    case ENR_AWS_FLEET_TOO_DEEP: return "too-deep";
    case ENR_AWS_FLEET_TOO_MANY_ITEMS: return "too-many-items";
    case ENR_AWS_FLEET_NOT_OBJECT: return "not-object";
    case ENR_AWS_FLEET_KEY_TYPE: return "key-type";
    case ENR_AWS_FLEET_DUPLICATE_KEY: return "duplicate-key";
    case ENR_AWS_FLEET_BAD_STRING: return "bad-string";
    case ENR_AWS_FLEET_MISSING_FIELD: return "missing-field";
    case ENR_AWS_FLEET_WRONG_TYPE: return "wrong-type";
    case ENR_AWS_FLEET_EMPTY_FIELD: return "empty-field";
    case ENR_AWS_FLEET_FIELD_TOO_LONG: return "field-too-long";
    case ENR_AWS_FLEET_TOO_MANY_PARAMETERS: return "too-many-parameters";
    case ENR_AWS_FLEET_PARAMETER_NAME: return "parameter-name";
    case ENR_AWS_FLEET_PARAMETER_TYPE: return "parameter-type";
    }
    return "unknown";
}

/* ---- requests: shared checks ------------------------------------------------------ */

static const char FIELD_CSR[] = "certificateSigningRequest";
static const char FIELD_TOKEN[] = "certificateOwnershipToken";
static const char FIELD_PARAMETERS[] = "parameters";

static enr_aws_fleet_reason refuse(enr_aws_fleet_request *out, enr_error *err, enr_aws_fleet_reason r,
                                   const char *field, const char *fmt, ...) __attribute__((format(printf, 5, 6)));

static enr_aws_fleet_reason refuse(enr_aws_fleet_request *out, enr_error *err, enr_aws_fleet_reason r,
                                   const char *field, const char *fmt, ...)
{
    char msg[ENR_ERROR_MESSAGE_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    enr_code code = r == ENR_AWS_FLEET_NOMEM ? ENR_E_NOMEM : r == ENR_AWS_FLEET_USAGE ? ENR_E_USAGE : ENR_E_PARSE;
    enr_error_set(err, code, "%s", msg);
    if (out != NULL) {
        enr_aws_fleet_call call = out->call;
        enr_aws_fleet_request_clear(out);
        out->call = call;
        out->bad_field = field;
    }
    return r;
}

static bool is_field(const char *key, size_t n, const char *field)
{
    return n == strlen(field) && memcmp(key, field, n) == 0;
}

/* A string the request keeps: UTF-8 without NUL, within its bounds. */
static enr_aws_fleet_reason take_string(enr_aws_fleet_request *out, enr_error *err, const char *field,
                                        const char *s, size_t n, size_t max, char **dst)
{
    if (n == 0)
        return refuse(out, err, ENR_AWS_FLEET_EMPTY_FIELD, field, "%s is empty", field);
    if (n > max)
        return refuse(out, err, ENR_AWS_FLEET_FIELD_TOO_LONG, field, "%s is %zu bytes, over the %zu allowed",
                      field, n, max);
    if (!enr_mqtt_utf8_valid((const uint8_t *)s, n))
        return refuse(out, err, ENR_AWS_FLEET_BAD_STRING, field, "%s is not UTF-8 text (or holds NUL)", field);
    char *copy = malloc(n + 1);
    if (copy == NULL)
        return refuse(out, err, ENR_AWS_FLEET_NOMEM, NULL, "out of memory");
    memcpy(copy, s, n);
    copy[n] = '\0';
    *dst = copy;
    return ENR_AWS_FLEET_OK;
}

/* One parameter; the caller has refused duplicates already. */
static enr_aws_fleet_reason add_parameter(enr_aws_fleet_request *out, enr_error *err, const char *name,
                                          size_t name_len, const char *value, size_t value_len)
{
    if (out->parameter_count >= ENR_AWS_FLEET_PARAMETERS_MAX)
        return refuse(out, err, ENR_AWS_FLEET_TOO_MANY_PARAMETERS, FIELD_PARAMETERS,
                      "parameters has more than %d entries", ENR_AWS_FLEET_PARAMETERS_MAX);
    if (name_len == 0 || name_len > ENR_AWS_FLEET_PARAM_NAME_MAX)
        return refuse(out, err, ENR_AWS_FLEET_PARAMETER_NAME, FIELD_PARAMETERS,
                      "a parameter name is empty or over %d bytes", ENR_AWS_FLEET_PARAM_NAME_MAX);
    if (!enr_mqtt_utf8_valid((const uint8_t *)name, name_len))
        return refuse(out, err, ENR_AWS_FLEET_BAD_STRING, FIELD_PARAMETERS,
                      "a parameter name is not UTF-8 text (or holds NUL)");
    /* Messages quote the name only when it is printable and short. */
    /* name is not NUL-terminated (a CBOR key borrowed from libcbor). */
    char shown[40] = "?";
    bool printable = name_len < sizeof shown;
    for (size_t i = 0; printable && i < name_len; i++)
        printable = memchr("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-.:", name[i], 66) != NULL;
    if (printable) {
        memcpy(shown, name, name_len);
        shown[name_len] = '\0';
    }
    if (value_len > ENR_AWS_FLEET_PARAM_VALUE_MAX)
        return refuse(out, err, ENR_AWS_FLEET_FIELD_TOO_LONG, FIELD_PARAMETERS,
                      "parameters.%s is %zu bytes, over the %d allowed", shown, value_len,
                      ENR_AWS_FLEET_PARAM_VALUE_MAX);
    if (value_len > 0 && !enr_mqtt_utf8_valid((const uint8_t *)value, value_len))
        return refuse(out, err, ENR_AWS_FLEET_BAD_STRING, FIELD_PARAMETERS,
                      "parameters.%s is not UTF-8 text (or holds NUL)", shown);
    if (out->parameters == NULL) {
        out->parameters = calloc(ENR_AWS_FLEET_PARAMETERS_MAX, sizeof *out->parameters);
        if (out->parameters == NULL)
            return refuse(out, err, ENR_AWS_FLEET_NOMEM, NULL, "out of memory");
    }
    enr_aws_fleet_param *p = &out->parameters[out->parameter_count];
    p->name = malloc(name_len + 1);
    p->value = malloc(value_len + 1);
    if (p->name == NULL || p->value == NULL) {
        out->parameter_count++; /* so that clear frees whichever was allocated */
        return refuse(out, err, ENR_AWS_FLEET_NOMEM, NULL, "out of memory");
    }
    memcpy(p->name, name, name_len);
    p->name[name_len] = '\0';
    if (value_len > 0)
        memcpy(p->value, value, value_len);
    p->value[value_len] = '\0';
    out->parameter_count++;
    return ENR_AWS_FLEET_OK;
}

void enr_aws_fleet_request_clear(enr_aws_fleet_request *r)
{
    if (r == NULL)
        return;
    free(r->csr_pem);
    free(r->ownership_token);
    for (size_t i = 0; r->parameters != NULL && i < r->parameter_count; i++) {
        free(r->parameters[i].name);
        free(r->parameters[i].value);
    }
    free(r->parameters);
    memset(r, 0, sizeof *r);
}

json_t *enr_aws_fleet_parameters_json(const enr_aws_fleet_request *r)
{
    json_t *o = json_object();
    if (o == NULL || r == NULL)
        return o;
    for (size_t i = 0; i < r->parameter_count; i++)
        if (json_object_set_new(o, r->parameters[i].name, json_string(r->parameters[i].value)) != 0) {
            json_decref(o);
            return NULL;
        }
    return o;
}

/* What the two formats check after decoding, per call: which fields were
 * found. Each format's walker fills it; check_required says what is missing. */
typedef struct seen_fields {
    bool csr;
    bool token;
} seen_fields;

static enr_aws_fleet_reason check_required(enr_aws_fleet_request *out, enr_error *err, const seen_fields *seen)
{
    if (out->call == ENR_AWS_FLEET_CREATE_FROM_CSR && !seen->csr)
        return refuse(out, err, ENR_AWS_FLEET_MISSING_FIELD, FIELD_CSR, "%s is missing", FIELD_CSR);
    if (out->call == ENR_AWS_FLEET_REGISTER_THING && !seen->token)
        return refuse(out, err, ENR_AWS_FLEET_MISSING_FIELD, FIELD_TOKEN, "%s is missing", FIELD_TOKEN);
    return ENR_AWS_FLEET_OK;
}

/* ---- requests: JSON ---------------------------------------------------------------- */

/* Depth and count of the parsed document: jansson's own depth limit (2048)
 * is far above ours. Recursion is bounded by ENR_AWS_FLEET_DEPTH_MAX. */
static enr_aws_fleet_reason json_bounds(const json_t *v, size_t depth, size_t *items, enr_error *err)
{
    if (++*items > ENR_AWS_FLEET_ITEMS_MAX)
        return refuse(NULL, err, ENR_AWS_FLEET_TOO_MANY_ITEMS, NULL, "the document has more than %d values",
                      ENR_AWS_FLEET_ITEMS_MAX);
    if (!json_is_object(v) && !json_is_array(v))
        return ENR_AWS_FLEET_OK;
    if (depth >= ENR_AWS_FLEET_DEPTH_MAX)
        return refuse(NULL, err, ENR_AWS_FLEET_TOO_DEEP, NULL, "the document nests deeper than %d",
                      ENR_AWS_FLEET_DEPTH_MAX);
    if (json_is_object(v)) {
        const char *k;
        json_t *item;
        json_object_foreach((json_t *)v, k, item)
        {
            enr_aws_fleet_reason r = json_bounds(item, depth + 1, items, err);
            if (r != ENR_AWS_FLEET_OK)
                return r;
        }
    } else {
        size_t i;
        json_t *item;
        json_array_foreach(v, i, item)
        {
            enr_aws_fleet_reason r = json_bounds(item, depth + 1, items, err);
            if (r != ENR_AWS_FLEET_OK)
                return r;
        }
    }
    return ENR_AWS_FLEET_OK;
}

static enr_aws_fleet_reason json_string_field(enr_aws_fleet_request *out, enr_error *err, const char *field,
                                             const json_t *v, size_t max, char **dst)
{
    if (!json_is_string(v))
        return refuse(out, err, ENR_AWS_FLEET_WRONG_TYPE, field, "%s is %s, not a string", field,
                      enr_json_kind(v));
    return take_string(out, err, field, json_string_value(v), json_string_length(v), max, dst);
}

static enr_aws_fleet_reason json_parameters(enr_aws_fleet_request *out, enr_error *err, const json_t *v)
{
    if (json_is_null(v))
        return ENR_AWS_FLEET_OK; /* as absent */
    if (!json_is_object(v))
        return refuse(out, err, ENR_AWS_FLEET_WRONG_TYPE, FIELD_PARAMETERS, "parameters is %s, not an object",
                      enr_json_kind(v));
    if (json_object_size(v) > ENR_AWS_FLEET_PARAMETERS_MAX)
        return refuse(out, err, ENR_AWS_FLEET_TOO_MANY_PARAMETERS, FIELD_PARAMETERS,
                      "parameters has %zu entries, over the %d allowed", json_object_size(v),
                      ENR_AWS_FLEET_PARAMETERS_MAX);
    const char *k;
    json_t *item;
    /* Keys hold no NUL (jansson refuses them without JSON_ALLOW_NUL). */
    json_object_foreach((json_t *)v, k, item)
    {
        size_t klen = strlen(k);
        if (!json_is_string(item))
            return refuse(out, err, ENR_AWS_FLEET_PARAMETER_TYPE, FIELD_PARAMETERS,
                          "a parameter's value is %s, not a string", enr_json_kind(item));
        enr_aws_fleet_reason r =
            add_parameter(out, err, k, klen, json_string_value(item), json_string_length(item));
        if (r != ENR_AWS_FLEET_OK)
            return r;
    }
    return ENR_AWS_FLEET_OK;
}

static enr_aws_fleet_reason decode_json(const uint8_t *payload, size_t len, enr_aws_fleet_request *out,
                                        enr_error *err)
{
    json_error_t jerr;
    /* JSON_DECODE_ANY so that "42" is NOT_OBJECT rather than a syntax error. */
    json_t *doc = json_loadb((const char *)payload, len, JSON_REJECT_DUPLICATES | JSON_DECODE_ANY, &jerr);
    if (doc == NULL) {
        switch (json_error_code(&jerr)) {
        case json_error_duplicate_key:
            return refuse(out, err, ENR_AWS_FLEET_DUPLICATE_KEY, NULL, "JSON: %s (line %d)", jerr.text, jerr.line);
        case json_error_stack_overflow:
            return refuse(out, err, ENR_AWS_FLEET_TOO_DEEP, NULL, "JSON: nested too deep");
        case json_error_invalid_utf8:
        case json_error_null_character:
        case json_error_null_byte_in_key:
            return refuse(out, err, ENR_AWS_FLEET_BAD_STRING, NULL, "JSON: %s (line %d)", jerr.text, jerr.line);
        case json_error_out_of_memory:
            return refuse(out, err, ENR_AWS_FLEET_NOMEM, NULL, "out of memory");
        default:
            return refuse(out, err, ENR_AWS_FLEET_MALFORMED, NULL, "JSON: %s (line %d, column %d)", jerr.text,
                          jerr.line, jerr.column);
        }
    }
    size_t items = 0;
    enr_aws_fleet_reason r = json_bounds(doc, 0, &items, err);
    if (r != ENR_AWS_FLEET_OK) {
        json_decref(doc);
        return refuse(out, NULL, r, NULL, "%s", "");
    }
    if (!json_is_object(doc)) {
        r = refuse(out, err, ENR_AWS_FLEET_NOT_OBJECT, NULL, "the payload is %s, not a JSON object",
                   enr_json_kind(doc));
        json_decref(doc);
        return r;
    }
    seen_fields seen = {0};
    const char *k;
    json_t *v;
    json_object_foreach(doc, k, v)
    {
        size_t klen = strlen(k);
        if (out->call == ENR_AWS_FLEET_CREATE_FROM_CSR && is_field(k, klen, FIELD_CSR)) {
            seen.csr = true;
            r = json_string_field(out, err, FIELD_CSR, v, ENR_AWS_FLEET_CSR_MAX, &out->csr_pem);
        } else if (out->call == ENR_AWS_FLEET_REGISTER_THING && is_field(k, klen, FIELD_TOKEN)) {
            seen.token = true;
            r = json_string_field(out, err, FIELD_TOKEN, v, ENR_AWS_FLEET_TOKEN_MAX, &out->ownership_token);
        } else if (out->call == ENR_AWS_FLEET_REGISTER_THING && is_field(k, klen, FIELD_PARAMETERS)) {
            r = json_parameters(out, err, v);
        }
        if (r != ENR_AWS_FLEET_OK)
            break;
    }
    json_decref(doc);
    return r != ENR_AWS_FLEET_OK ? r : check_required(out, err, &seen);
}

/* ---- requests: CBOR, the streaming pass ------------------------------------------- */

#define STR(x) #x
#define XSTR(x) STR(x)

enum frame_kind { F_ARRAY, F_MAP, F_TAG, F_INDEF_ARRAY, F_INDEF_MAP, F_INDEF_BYTES, F_INDEF_TEXT };

typedef struct frame {
    enum frame_kind kind;
    size_t remaining; /* definite: items still to come (a map's are keys and values) */
    size_t seen;      /* indefinite: items so far (a map's must be even at its break) */
} frame;

typedef struct scan {
    frame stack[ENR_AWS_FLEET_DEPTH_MAX];
    size_t depth;
    size_t heads;
    bool done;                /* the top-level item is complete */
    enr_aws_fleet_reason why; /* OK until something is wrong */
    const char *what;
} scan;

static void scan_fail(scan *s, enr_aws_fleet_reason why, const char *what)
{
    if (s->why == ENR_AWS_FLEET_OK) {
        s->why = why;
        s->what = what;
    }
}

/* Every head: counted, and nothing may follow the top-level item. */
static bool scan_head(scan *s)
{
    if (s->why != ENR_AWS_FLEET_OK)
        return false;
    if (s->done) {
        scan_fail(s, ENR_AWS_FLEET_MALFORMED, "bytes after the top-level item");
        return false;
    }
    if (++s->heads > ENR_AWS_FLEET_ITEMS_MAX) {
        scan_fail(s, ENR_AWS_FLEET_TOO_MANY_ITEMS, "the document has more than " XSTR(ENR_AWS_FLEET_ITEMS_MAX) " data items");
        return false;
    }
    return true;
}

/* Inside an indefinite string only definite chunks of its own type may
 * come (RFC 8949 3.2.3). */
static bool in_indef_string(const scan *s)
{
    return s->depth > 0 &&
           (s->stack[s->depth - 1].kind == F_INDEF_BYTES || s->stack[s->depth - 1].kind == F_INDEF_TEXT);
}

/* A complete item: its parent counts it, and parents that it completes are
 * complete items in turn. */
static void scan_item(scan *s)
{
    while (s->depth > 0) {
        frame *f = &s->stack[s->depth - 1];
        if (f->kind == F_ARRAY || f->kind == F_MAP || f->kind == F_TAG) {
            if (--f->remaining > 0)
                return;
            s->depth--;
            continue;
        }
        f->seen++;
        return;
    }
    s->done = true;
}

static void scan_push(scan *s, enum frame_kind kind, size_t remaining)
{
    if (s->depth >= ENR_AWS_FLEET_DEPTH_MAX) {
        scan_fail(s, ENR_AWS_FLEET_TOO_DEEP, "the document nests deeper than " XSTR(ENR_AWS_FLEET_DEPTH_MAX));
        return;
    }
    s->stack[s->depth++] = (frame){.kind = kind, .remaining = remaining, .seen = 0};
}

static void scan_scalar(scan *s)
{
    if (!scan_head(s))
        return;
    if (in_indef_string(s)) {
        scan_fail(s, ENR_AWS_FLEET_MALFORMED, "a chunk of an indefinite string is not a string of its type");
        return;
    }
    scan_item(s);
}

static void cb_u8(void *c, uint8_t v) { (void)v; scan_scalar(c); }
static void cb_u16(void *c, uint16_t v) { (void)v; scan_scalar(c); }
static void cb_u32(void *c, uint32_t v) { (void)v; scan_scalar(c); }
static void cb_u64(void *c, uint64_t v) { (void)v; scan_scalar(c); }
static void cb_float(void *c, float v) { (void)v; scan_scalar(c); }
static void cb_double(void *c, double v) { (void)v; scan_scalar(c); }
static void cb_bool(void *c, bool v) { (void)v; scan_scalar(c); }
static void cb_simple(void *c) { scan_scalar(c); }

static void scan_chunk(scan *s, enum frame_kind indef_kind)
{
    if (!scan_head(s))
        return;
    if (in_indef_string(s) && s->stack[s->depth - 1].kind != indef_kind) {
        scan_fail(s, ENR_AWS_FLEET_MALFORMED, "a chunk of an indefinite string is not a string of its type");
        return;
    }
    scan_item(s);
}

static void cb_bytes(void *c, cbor_data d, size_t n) { (void)d; (void)n; scan_chunk(c, F_INDEF_BYTES); }

/* Text anywhere (keys, ignored values, chunks: each chunk on its own, RFC
 * 8949 3.2.3) is UTF-8 without NUL, as jansson holds JSON to: so this is a
 * typed refusal, not cbor_load's untyped syntax error. */
static void cb_text(void *c, cbor_data d, size_t n)
{
    scan *s = c;
    if (n > 0 && !enr_mqtt_utf8_valid(d, n) && s->why == ENR_AWS_FLEET_OK) {
        scan_fail(s, ENR_AWS_FLEET_BAD_STRING, "a text string is not UTF-8 (or holds NUL)");
        return;
    }
    scan_chunk(c, F_INDEF_TEXT);
}

static void scan_open(scan *s, enum frame_kind kind, size_t count)
{
    if (!scan_head(s))
        return;
    if (in_indef_string(s)) {
        scan_fail(s, ENR_AWS_FLEET_MALFORMED, "a chunk of an indefinite string is not a string of its type");
        return;
    }
    if (kind == F_ARRAY || kind == F_MAP) {
        /* Checked before libcbor ever sees the declared size: cbor_load
         * allocates for it up front. */
        if (count > ENR_AWS_FLEET_ITEMS_MAX / (kind == F_MAP ? 2 : 1)) {
            scan_fail(s, ENR_AWS_FLEET_TOO_MANY_ITEMS,
                      "a collection declares more than " XSTR(ENR_AWS_FLEET_ITEMS_MAX) " data items");
            return;
        }
        if (count == 0) {
            /* An empty collection still counts as a level, as in JSON. */
            if (s->depth >= ENR_AWS_FLEET_DEPTH_MAX)
                scan_push(s, kind, 0);
            else
                scan_item(s);
            return;
        }
        count *= kind == F_MAP ? 2 : 1;
    }
    scan_push(s, kind, count);
}

static void cb_array(void *c, size_t n) { scan_open(c, F_ARRAY, n); }
static void cb_map(void *c, size_t n) { scan_open(c, F_MAP, n); }
static void cb_indef_array(void *c) { scan_open(c, F_INDEF_ARRAY, 0); }
static void cb_indef_map(void *c) { scan_open(c, F_INDEF_MAP, 0); }
static void cb_tag(void *c, uint64_t v) { (void)v; scan_open(c, F_TAG, 1); }

static void cb_indef_string(scan *s, enum frame_kind kind)
{
    if (!scan_head(s))
        return;
    if (in_indef_string(s)) {
        scan_fail(s, ENR_AWS_FLEET_MALFORMED, "an indefinite string inside an indefinite string");
        return;
    }
    scan_push(s, kind, 0);
}

static void cb_indef_bytes(void *c) { cb_indef_string(c, F_INDEF_BYTES); }
static void cb_indef_text(void *c) { cb_indef_string(c, F_INDEF_TEXT); }

static void cb_break(void *c)
{
    scan *s = c;
    if (!scan_head(s))
        return;
    if (s->depth == 0 || s->stack[s->depth - 1].kind < F_INDEF_ARRAY) {
        scan_fail(s, ENR_AWS_FLEET_MALFORMED, "a break outside an indefinite-length item");
        return;
    }
    const frame *f = &s->stack[s->depth - 1];
    if (f->kind == F_INDEF_MAP && f->seen % 2 != 0) {
        scan_fail(s, ENR_AWS_FLEET_MALFORMED, "an indefinite map ends after a key, without its value");
        return;
    }
    s->depth--;
    scan_item(s);
}

static const struct cbor_callbacks SCAN_CALLBACKS = {
    .uint8 = cb_u8, .uint16 = cb_u16, .uint32 = cb_u32, .uint64 = cb_u64,
    .negint8 = cb_u8, .negint16 = cb_u16, .negint32 = cb_u32, .negint64 = cb_u64,
    .byte_string_start = cb_indef_bytes, .byte_string = cb_bytes,
    .string_start = cb_indef_text, .string = cb_text,
    .indef_array_start = cb_indef_array, .array_start = cb_array,
    .indef_map_start = cb_indef_map, .map_start = cb_map,
    .tag = cb_tag,
    .float2 = cb_float, .float4 = cb_float, .float8 = cb_double,
    .undefined = cb_simple, .null = cb_simple, .boolean = cb_bool,
    .indef_break = cb_break,
};

static enr_aws_fleet_reason cbor_scan(const uint8_t *payload, size_t len, enr_error *err)
{
    scan s = {.why = ENR_AWS_FLEET_OK};
    size_t at = 0;
    while (at < len) {
        struct cbor_decoder_result res = cbor_stream_decode(payload + at, len - at, &SCAN_CALLBACKS, &s);
        if (s.why != ENR_AWS_FLEET_OK)
            return refuse(NULL, err, s.why, NULL, "CBOR: %s (at byte %zu)", s.what, at);
        if (res.status == CBOR_DECODER_NEDATA)
            return refuse(NULL, err, ENR_AWS_FLEET_MALFORMED, NULL, "CBOR: truncated (at byte %zu)", at);
        if (res.status != CBOR_DECODER_FINISHED || res.read == 0)
            return refuse(NULL, err, ENR_AWS_FLEET_MALFORMED, NULL, "CBOR: not a valid data item (at byte %zu)",
                          at);
        at += res.read;
    }
    if (!s.done)
        return refuse(NULL, err, ENR_AWS_FLEET_MALFORMED, NULL, "CBOR: truncated (%zu bytes)", len);
    return ENR_AWS_FLEET_OK;
}

/* ---- requests: CBOR, the tree ------------------------------------------------------- */

/* libcbor 0.8's cbor_is_null and cbor_is_bool assert (abort, in Debian's
 * build) when given a float: a device could stop the service with one
 * 0xf9 byte. This asks in the order its assertions need. */
static bool cbor_ctrl_is(const cbor_item_t *v, uint8_t ctrl)
{
    return cbor_isa_float_ctrl(v) && cbor_float_ctrl_is_ctrl(v) && cbor_ctrl_value(v) == ctrl;
}

static const char *cbor_type_name(const cbor_item_t *v)
{
    switch (cbor_typeof(v)) {
    case CBOR_TYPE_UINT:
    case CBOR_TYPE_NEGINT: return "an integer";
    case CBOR_TYPE_BYTESTRING: return "a byte string";
    case CBOR_TYPE_STRING: return "a text string";
    case CBOR_TYPE_ARRAY: return "an array";
    case CBOR_TYPE_MAP: return "a map";
    case CBOR_TYPE_TAG: return "a tagged item";
    case CBOR_TYPE_FLOAT_CTRL:
        if (!cbor_float_ctrl_is_ctrl(v))
            return "a float";
        if (cbor_ctrl_is(v, CBOR_CTRL_NULL))
            return "null";
        if (cbor_ctrl_is(v, CBOR_CTRL_TRUE) || cbor_ctrl_is(v, CBOR_CTRL_FALSE))
            return "a boolean";
        return "a simple value";
    }
    return "an item";
}

/* A text string's bytes, its chunks joined when it is indefinite: in *buf
 * (malloc'd) or borrowed in *data. The scan proved every chunk is a
 * definite text string and bounded their total by the payload. */
static bool cbor_text(const cbor_item_t *v, const char **data, size_t *n, char **buf)
{
    *buf = NULL;
    if (cbor_string_is_definite(v)) {
        *data = (const char *)cbor_string_handle(v);
        *n = cbor_string_length(v);
        if (*data == NULL)
            *data = "";
        return true;
    }
    cbor_item_t **chunks = cbor_string_chunks_handle(v);
    size_t count = cbor_string_chunk_count(v), total = 0;
    for (size_t i = 0; i < count; i++)
        total += cbor_string_length(chunks[i]);
    char *joined = malloc(total + 1);
    if (joined == NULL)
        return false;
    size_t at = 0;
    for (size_t i = 0; i < count; i++) {
        size_t len = cbor_string_length(chunks[i]);
        if (len > 0)
            memcpy(joined + at, cbor_string_handle(chunks[i]), len);
        at += len;
    }
    joined[total] = '\0';
    *buf = joined;
    *data = joined;
    *n = total;
    return true;
}

typedef struct text {
    const char *p;
    size_t n;
    char *owned;
} text;

/* The keys of one map as text, every one a text string and none twice. */
static enr_aws_fleet_reason cbor_keys(enr_aws_fleet_request *out, enr_error *err, const cbor_item_t *map,
                                      const char *where, const char *field, text *keys)
{
    struct cbor_pair *pairs = cbor_map_handle(map);
    size_t n = cbor_map_size(map);
    for (size_t i = 0; i < n; i++) {
        if (!cbor_isa_string(pairs[i].key))
            return refuse(out, err, ENR_AWS_FLEET_KEY_TYPE, field, "CBOR: a key of %s is %s, not a text string",
                          where, cbor_type_name(pairs[i].key));
        if (!cbor_text(pairs[i].key, &keys[i].p, &keys[i].n, &keys[i].owned))
            return refuse(out, err, ENR_AWS_FLEET_NOMEM, NULL, "out of memory");
        /* Quadratic, over at most ENR_AWS_FLEET_ITEMS_MAX / 2 keys whose
         * total length the payload bounds. */
        for (size_t j = 0; j < i; j++)
            if (keys[j].n == keys[i].n && memcmp(keys[j].p, keys[i].p, keys[i].n) == 0)
                return refuse(out, err, ENR_AWS_FLEET_DUPLICATE_KEY, field, "CBOR: a key is twice in %s", where);
    }
    return ENR_AWS_FLEET_OK;
}

static void free_keys(text *keys, size_t n)
{
    for (size_t i = 0; keys != NULL && i < n; i++)
        free(keys[i].owned);
    free(keys);
}

static enr_aws_fleet_reason cbor_string_field(enr_aws_fleet_request *out, enr_error *err, const char *field,
                                              const cbor_item_t *v, size_t max, char **dst)
{
    if (!cbor_isa_string(v))
        return refuse(out, err, ENR_AWS_FLEET_WRONG_TYPE, field, "%s is %s, not a text string", field,
                      cbor_type_name(v));
    text t;
    if (!cbor_text(v, &t.p, &t.n, &t.owned))
        return refuse(out, err, ENR_AWS_FLEET_NOMEM, NULL, "out of memory");
    enr_aws_fleet_reason r = take_string(out, err, field, t.p, t.n, max, dst);
    free(t.owned);
    return r;
}

static enr_aws_fleet_reason cbor_parameters(enr_aws_fleet_request *out, enr_error *err, const cbor_item_t *v)
{
    if (cbor_ctrl_is(v, CBOR_CTRL_NULL))
        return ENR_AWS_FLEET_OK; /* as absent, as JSON's null */
    if (!cbor_isa_map(v))
        return refuse(out, err, ENR_AWS_FLEET_WRONG_TYPE, FIELD_PARAMETERS, "parameters is %s, not a map",
                      cbor_type_name(v));
    size_t n = cbor_map_size(v);
    if (n > ENR_AWS_FLEET_PARAMETERS_MAX)
        return refuse(out, err, ENR_AWS_FLEET_TOO_MANY_PARAMETERS, FIELD_PARAMETERS,
                      "parameters has %zu entries, over the %d allowed", n, ENR_AWS_FLEET_PARAMETERS_MAX);
    if (n == 0)
        return ENR_AWS_FLEET_OK;
    text *keys = calloc(n, sizeof *keys);
    if (keys == NULL)
        return refuse(out, err, ENR_AWS_FLEET_NOMEM, NULL, "out of memory");
    enr_aws_fleet_reason r = cbor_keys(out, err, v, "parameters", FIELD_PARAMETERS, keys);
    struct cbor_pair *pairs = cbor_map_handle(v);
    for (size_t i = 0; r == ENR_AWS_FLEET_OK && i < n; i++) {
        if (!cbor_isa_string(pairs[i].value)) {
            r = refuse(out, err, ENR_AWS_FLEET_PARAMETER_TYPE, FIELD_PARAMETERS,
                       "a parameter's value is %s, not a text string", cbor_type_name(pairs[i].value));
            break;
        }
        text val;
        if (!cbor_text(pairs[i].value, &val.p, &val.n, &val.owned)) {
            r = refuse(out, err, ENR_AWS_FLEET_NOMEM, NULL, "out of memory");
            break;
        }
        r = add_parameter(out, err, keys[i].p, keys[i].n, val.p, val.n);
        free(val.owned);
    }
    free_keys(keys, n);
    return r;
}

static enr_aws_fleet_reason decode_cbor(const uint8_t *payload, size_t len, enr_aws_fleet_request *out,
                                        enr_error *err)
{
    enr_aws_fleet_reason r = cbor_scan(payload, len, err);
    if (r != ENR_AWS_FLEET_OK)
        return refuse(out, NULL, r, NULL, "%s", "");
    struct cbor_load_result res;
    cbor_item_t *doc = cbor_load(payload, len, &res);
    if (doc == NULL || res.read != len) {
        if (doc != NULL)
            cbor_decref(&doc);
        if (res.error.code == CBOR_ERR_MEMERROR)
            return refuse(out, err, ENR_AWS_FLEET_NOMEM, NULL, "out of memory");
        return refuse(out, err, ENR_AWS_FLEET_MALFORMED, NULL, "CBOR: not one valid data item (libcbor error %d at byte %zu)",
                      (int)res.error.code, res.error.position);
    }
    /* RFC 8949 3.4.6: an encoder may mark the whole payload as CBOR with
     * tag 55799 (self-described CBOR); it means nothing else. */
    if (cbor_isa_tag(doc) && cbor_tag_value(doc) == 55799) {
        cbor_item_t *inner = cbor_tag_item(doc); /* a new reference */
        cbor_decref(&doc);
        doc = inner;
    }
    if (!cbor_isa_map(doc)) {
        r = refuse(out, err, ENR_AWS_FLEET_NOT_OBJECT, NULL, "the payload is %s, not a CBOR map",
                   cbor_type_name(doc));
        cbor_decref(&doc);
        return r;
    }
    size_t n = cbor_map_size(doc);
    text *keys = n > 0 ? calloc(n, sizeof *keys) : NULL;
    if (n > 0 && keys == NULL) {
        cbor_decref(&doc);
        return refuse(out, err, ENR_AWS_FLEET_NOMEM, NULL, "out of memory");
    }
    r = n > 0 ? cbor_keys(out, err, doc, "the top-level map", NULL, keys) : ENR_AWS_FLEET_OK;
    seen_fields seen = {0};
    struct cbor_pair *pairs = cbor_map_handle(doc);
    for (size_t i = 0; r == ENR_AWS_FLEET_OK && i < n; i++) {
        const cbor_item_t *v = pairs[i].value;
        if (out->call == ENR_AWS_FLEET_CREATE_FROM_CSR && is_field(keys[i].p, keys[i].n, FIELD_CSR)) {
            seen.csr = true;
            r = cbor_string_field(out, err, FIELD_CSR, v, ENR_AWS_FLEET_CSR_MAX, &out->csr_pem);
        } else if (out->call == ENR_AWS_FLEET_REGISTER_THING && is_field(keys[i].p, keys[i].n, FIELD_TOKEN)) {
            seen.token = true;
            r = cbor_string_field(out, err, FIELD_TOKEN, v, ENR_AWS_FLEET_TOKEN_MAX, &out->ownership_token);
        } else if (out->call == ENR_AWS_FLEET_REGISTER_THING &&
                   is_field(keys[i].p, keys[i].n, FIELD_PARAMETERS)) {
            r = cbor_parameters(out, err, v);
        }
    }
    free_keys(keys, n);
    cbor_decref(&doc);
    return r != ENR_AWS_FLEET_OK ? r : check_required(out, err, &seen);
}

enr_aws_fleet_reason enr_aws_fleet_request_decode(enr_aws_fleet_call call, enr_aws_fleet_format format,
                                                  const uint8_t *payload, size_t len, enr_aws_fleet_request *out,
                                                  enr_error *err)
{
    if (out == NULL)
        return refuse(NULL, err, ENR_AWS_FLEET_USAGE, NULL, "decode: no request to fill");
    memset(out, 0, sizeof *out);
    if (call != ENR_AWS_FLEET_CREATE_FROM_CSR && call != ENR_AWS_FLEET_CREATE_KEYS &&
        call != ENR_AWS_FLEET_REGISTER_THING)
        return refuse(out, err, ENR_AWS_FLEET_USAGE, NULL, "decode: %d is not a fleet provisioning call", (int)call);
    if ((format != ENR_AWS_FLEET_JSON && format != ENR_AWS_FLEET_CBOR) || (payload == NULL && len > 0))
        return refuse(out, err, ENR_AWS_FLEET_USAGE, NULL, "decode: invalid format or payload");
    out->call = call;
    if (len > ENR_AWS_FLEET_PAYLOAD_MAX)
        return refuse(out, err, ENR_AWS_FLEET_TOO_LARGE, NULL, "the payload is %zu bytes, over the %d allowed", len,
                      ENR_AWS_FLEET_PAYLOAD_MAX);
    /* CreateKeysAndCertificate carries nothing; a client may send no body
     * at all rather than an empty object. */
    if (len == 0 && call == ENR_AWS_FLEET_CREATE_KEYS)
        return ENR_AWS_FLEET_OK;
    if (len == 0)
        return refuse(out, err, ENR_AWS_FLEET_NOT_OBJECT, NULL, "the payload is empty");
    return format == ENR_AWS_FLEET_JSON ? decode_json(payload, len, out, err) : decode_cbor(payload, len, out, err);
}

/* ---- answers --------------------------------------------------------------------------- */

typedef struct field {
    const char *key;
    const char *value;              /* a string, or NULL: */
    bool is_int;
    int int_value;
    const enr_aws_fleet_registered *config; /* deviceConfiguration's entries */
} field;

static bool text_ok(const char *s)
{
    return s != NULL && enr_mqtt_utf8_valid((const uint8_t *)s, strlen(s));
}

static json_t *json_of(const field *f)
{
    if (f->is_int)
        return json_integer(f->int_value);
    if (f->value != NULL)
        return json_string(f->value);
    json_t *o = json_object();
    for (size_t i = 0; o != NULL && i < f->config->config_count; i++)
        if (json_object_set_new(o, f->config->config_names[i], json_string(f->config->config_values[i])) != 0) {
            json_decref(o);
            o = NULL;
        }
    return o;
}

static cbor_item_t *cbor_of(const field *f)
{
    /* The shortest head (RFC 8949 4.2.1's preferred serialization):
     * libcbor writes the width the item was built with. */
    if (f->is_int)
        return f->int_value < 256 ? cbor_build_uint8((uint8_t)f->int_value)
                                  : cbor_build_uint16((uint16_t)f->int_value);
    if (f->value != NULL)
        return cbor_build_stringn(f->value, strlen(f->value));
    cbor_item_t *m = cbor_new_definite_map(f->config->config_count);
    for (size_t i = 0; m != NULL && i < f->config->config_count; i++) {
        const char *k = f->config->config_names[i], *v = f->config->config_values[i];
        cbor_item_t *key = cbor_build_stringn(k, strlen(k)), *val = cbor_build_stringn(v, strlen(v));
        bool ok = key != NULL && val != NULL && cbor_map_add(m, (struct cbor_pair){.key = key, .value = val});
        if (key != NULL)
            cbor_decref(&key);
        if (val != NULL)
            cbor_decref(&val);
        if (!ok)
            cbor_decref(&m);
    }
    return m;
}

/* One answer document: a map of `n` fields in this order. */
static enr_code encode(enr_aws_fleet_format format, const field *fields, size_t n, uint8_t **out, size_t *out_len,
                       enr_error *err)
{
    uint8_t *bytes = NULL;
    size_t len = 0;
    if (format == ENR_AWS_FLEET_JSON) {
        json_t *o = json_object();
        for (size_t i = 0; o != NULL && i < n; i++)
            if (json_object_set_new(o, fields[i].key, json_of(&fields[i])) != 0) {
                json_decref(o);
                o = NULL;
            }
        char *s = o != NULL ? json_dumps(o, JSON_COMPACT) : NULL;
        json_decref(o);
        if (s == NULL)
            return enr_error_set(err, ENR_E_NOMEM, "out of memory");
        bytes = (uint8_t *)s;
        len = strlen(s);
    } else {
        cbor_item_t *m = cbor_new_definite_map(n);
        for (size_t i = 0; m != NULL && i < n; i++) {
            cbor_item_t *key = cbor_build_stringn(fields[i].key, strlen(fields[i].key));
            cbor_item_t *val = cbor_of(&fields[i]);
            bool ok = key != NULL && val != NULL && cbor_map_add(m, (struct cbor_pair){.key = key, .value = val});
            if (key != NULL)
                cbor_decref(&key);
            if (val != NULL)
                cbor_decref(&val);
            if (!ok)
                cbor_decref(&m);
        }
        size_t cap = 0;
        len = m != NULL ? cbor_serialize_alloc(m, &bytes, &cap) : 0;
        if (m != NULL)
            cbor_decref(&m);
        if (len == 0) {
            free(bytes);
            return enr_error_set(err, ENR_E_NOMEM, "out of memory");
        }
    }
    if (len > ENR_AWS_FLEET_ANSWER_MAX) {
        free(bytes);
        return enr_error_set(err, ENR_E_UNSUPPORTED, "the answer would be %zu bytes, over the %d one packet holds",
                             len, ENR_AWS_FLEET_ANSWER_MAX);
    }
    *out = bytes;
    *out_len = len;
    return ENR_OK;
}

static enr_code check_out(enr_aws_fleet_format format, uint8_t **out, size_t *out_len, enr_error *err)
{
    if (out == NULL || out_len == NULL || (format != ENR_AWS_FLEET_JSON && format != ENR_AWS_FLEET_CBOR))
        return enr_error_set(err, ENR_E_USAGE, "encode: invalid format or output");
    *out = NULL;
    *out_len = 0;
    return ENR_OK;
}

enr_code enr_aws_fleet_encode_created(enr_aws_fleet_format format, const enr_aws_fleet_created *c, uint8_t **out,
                                      size_t *out_len, enr_error *err)
{
    if (check_out(format, out, out_len, err) != ENR_OK)
        return ENR_E_USAGE;
    if (c == NULL || !text_ok(c->certificate_id) || !text_ok(c->certificate_pem) || !text_ok(c->ownership_token) ||
        (c->private_key != NULL && !text_ok(c->private_key)))
        return enr_error_set(err, ENR_E_USAGE, "encode: a created certificate's fields must be UTF-8 strings");
    field f[4] = {{.key = "certificateId", .value = c->certificate_id},
                  {.key = "certificatePem", .value = c->certificate_pem}};
    size_t n = 2;
    if (c->private_key != NULL)
        f[n++] = (field){.key = "privateKey", .value = c->private_key};
    f[n++] = (field){.key = "certificateOwnershipToken", .value = c->ownership_token};
    return encode(format, f, n, out, out_len, err);
}

enr_code enr_aws_fleet_encode_registered(enr_aws_fleet_format format, const enr_aws_fleet_registered *r,
                                         uint8_t **out, size_t *out_len, enr_error *err)
{
    if (check_out(format, out, out_len, err) != ENR_OK)
        return ENR_E_USAGE;
    if (r == NULL || !text_ok(r->thing_name) || r->config_count > ENR_AWS_FLEET_CONFIG_MAX ||
        (r->config_count > 0 && (r->config_names == NULL || r->config_values == NULL)))
        return enr_error_set(err, ENR_E_USAGE, "encode: a thing name and at most %d configuration entries",
                             ENR_AWS_FLEET_CONFIG_MAX);
    for (size_t i = 0; i < r->config_count; i++) {
        if (!text_ok(r->config_names[i]) || !text_ok(r->config_values[i]))
            return enr_error_set(err, ENR_E_USAGE, "encode: deviceConfiguration entry %zu is not UTF-8 text", i);
        /* Distinct names: JSON would silently keep the last, CBOR would
         * send a map no strict decoder (ours) accepts. */
        for (size_t j = 0; j < i; j++)
            if (strcmp(r->config_names[i], r->config_names[j]) == 0)
                return enr_error_set(err, ENR_E_USAGE, "encode: deviceConfiguration names %s twice",
                                     r->config_names[i]);
    }
    field f[2] = {{.key = "deviceConfiguration", .config = r}, {.key = "thingName", .value = r->thing_name}};
    return encode(format, f, 2, out, out_len, err);
}

enr_code enr_aws_fleet_encode_rejected(enr_aws_fleet_format format, int status_code, const char *error_code,
                                       const char *error_message, uint8_t **out, size_t *out_len, enr_error *err)
{
    if (check_out(format, out, out_len, err) != ENR_OK)
        return ENR_E_USAGE;
    if (status_code < 100 || status_code > 599 || !text_ok(error_code) || !text_ok(error_message))
        return enr_error_set(err, ENR_E_USAGE, "encode: a status code 100..599 and UTF-8 errorCode and errorMessage");
    field f[3] = {{.key = "statusCode", .is_int = true, .int_value = status_code},
                  {.key = "errorCode", .value = error_code},
                  {.key = "errorMessage", .value = error_message}};
    return encode(format, f, 3, out, out_len, err);
}
