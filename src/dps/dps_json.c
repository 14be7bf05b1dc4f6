/* Loading untrusted JSON for the DPS readers: size and depth are checked on
 * the raw bytes before jansson sees them, so a hostile body costs at most one
 * linear scan. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "dps/dps_internal.h"

void enr_dps_printable(const char *in, size_t in_len, char *out, size_t cap)
{
    size_t n = in_len < cap - 1 ? in_len : cap - 1;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)in[i];
        out[i] = (c >= 0x20 && c < 0x7f) ? (char)c : '?';
    }
    out[n] = '\0';
}

bool enr_dps_is_base64_char(unsigned char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '+' ||
           c == '/' || c == '=';
}

/* jansson allows 2048 levels; a register body has no use for more than a few.
 * Brackets inside strings do not count, so the scan tracks strings and their
 * escapes. Malformed JSON is left for jansson to describe. */
bool enr_dps_json_too_deep(const char *text, size_t len, int max_depth, size_t *where)
{
    int depth = 0;
    bool in_string = false;
    for (size_t i = 0; i < len; i++) {
        char c = text[i];
        if (in_string) {
            if (c == '\\')
                i++;
            else if (c == '"')
                in_string = false;
            continue;
        }
        if (c == '"') {
            in_string = true;
        } else if (c == '{' || c == '[') {
            if (++depth > max_depth) {
                *where = i;
                return true;
            }
        } else if ((c == '}' || c == ']') && depth > 0) {
            depth--;
        }
    }
    return false;
}

static const char *json_fault(const json_error_t *jerr)
{
    switch (json_error_code(jerr)) {
    case json_error_end_of_input_expected: return "unexpected data after the JSON value";
    case json_error_premature_end_of_input: return "the JSON text ends too early";
    case json_error_duplicate_key: return "a key appears twice in one object";
    case json_error_null_character:
    case json_error_null_byte_in_key: return "a string contains \\u0000, which is not allowed";
    case json_error_invalid_utf8: return "the text is not valid UTF-8";
    case json_error_numeric_overflow: return "a number is out of range";
    default: return NULL;
    }
}

static enr_code load_failed(const json_error_t *jerr, const char *what, enr_dps_error *dps_err,
                            enr_error *err)
{
    if (json_error_code(jerr) == json_error_out_of_memory) {
        *dps_err = ENR_DPS_INTERNAL;
        return enr_error_set(err, ENR_E_NOMEM, "out of memory reading the %s", what);
    }
    *dps_err = ENR_DPS_MALFORMED_BODY;
    const char *fault = json_fault(jerr);
    char detail[sizeof jerr->text];
    enr_dps_printable(jerr->text, strnlen(jerr->text, sizeof jerr->text - 1), detail,
                      sizeof detail);
    return enr_error_set(err, ENR_E_PARSE,
                         "%s is not valid JSON at byte %d (line %d, column %d): %s", what,
                         jerr->position, jerr->line, jerr->column, fault != NULL ? fault : detail);
}

enr_code enr_dps_json_load_object(const char *text, size_t len, const enr_dps_json_limits *limits,
                                  json_t **out, enr_dps_error *dps_err, enr_error *err)
{
    *out = NULL;
    const char *what = limits->what;
    if (len > limits->max_bytes) {
        *dps_err = ENR_DPS_BODY_TOO_LARGE;
        return enr_error_set(err, ENR_E_PARSE, "%s is %zu bytes; the limit is %zu", what, len,
                             limits->max_bytes);
    }
    *dps_err = ENR_DPS_MALFORMED_BODY;
    if (text == NULL || len == 0)
        return enr_error_set(err, ENR_E_PARSE, "%s is empty; expected a JSON object", what);
    size_t where = 0;
    if (enr_dps_json_too_deep(text, len, limits->max_depth, &where))
        return enr_error_set(err, ENR_E_PARSE, "%s nests deeper than %d levels at byte %zu", what,
                             limits->max_depth, where);
    json_error_t jerr;
    json_t *doc = json_loadb(text, len, JSON_REJECT_DUPLICATES, &jerr);
    if (doc == NULL)
        return load_failed(&jerr, what, dps_err, err);
    if (!json_is_object(doc)) {
        const char *kind = json_is_array(doc) ? "array" : "scalar";
        json_decref(doc);
        return enr_error_set(err, ENR_E_PARSE, "%s is a JSON %s; expected an object", what,
                             kind);
    }
    *dps_err = ENR_DPS_OK;
    *out = doc;
    return ENR_OK;
}

enr_code enr_dps_json_dump(json_t *doc, char **out, enr_error *err)
{
    *out = json_dumps(doc, JSON_COMPACT);
    if (*out == NULL)
        return enr_error_set(err, ENR_E_NOMEM, "out of memory writing a DPS answer");
    return ENR_OK;
}
