#include "core/quote.h"

#include <string.h>

enr_quoted enr_quote_n(const char *s, size_t len)
{
    enr_quoted q;
    size_t n = len < ENR_QUOTE_MAX ? len : ENR_QUOTE_MAX;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        q.text[i] = c >= 0x20 && c < 0x7f ? (char)c : '?';
    }
    if (len > ENR_QUOTE_MAX) {
        memcpy(q.text + n, "...", 3);
        n += 3;
    }
    q.text[n] = '\0';
    return q;
}

enr_quoted enr_quote(const char *s)
{
    return enr_quote_n(s, strnlen(s, ENR_QUOTE_MAX + 1));
}

const char *enr_json_kind(const json_t *v)
{
    switch (json_typeof(v)) {
    case JSON_OBJECT: return "an object";
    case JSON_ARRAY: return "an array";
    case JSON_STRING: return "a string";
    case JSON_INTEGER:
    case JSON_REAL: return "a number";
    case JSON_TRUE:
    case JSON_FALSE: return "a boolean";
    case JSON_NULL: return "null";
    }
    return "a value";
}
