/* Internal: outside text (a resource, a key, a template value) quoted into
 * an error message: printable ASCII only and bounded, so a hostile value can
 * neither forge log lines nor fill the message. One home for the rule. */
#ifndef ENROLL_CORE_QUOTE_H
#define ENROLL_CORE_QUOTE_H

#include <jansson.h>
#include <stddef.h>

#define ENR_QUOTE_MAX 64

typedef struct enr_quoted {
    char text[ENR_QUOTE_MAX + 4]; /* the text, "..." when cut, NUL */
} enr_quoted;

/* The first ENR_QUOTE_MAX bytes of s[0..len), others than printable ASCII
 * as '?', then "..." when cut. */
enr_quoted enr_quote_n(const char *s, size_t len);
/* The same for a NUL-terminated string (read no further than needed). */
enr_quoted enr_quote(const char *s);

/* What a JSON value from outside is, for a message: "an object", "an
 * array", "a string", "a number", "a boolean", "null". */
const char *enr_json_kind(const json_t *v);

#endif
