/* RFC 7512 parsing. Every refusal is ENR_E_USAGE: a URI is how the caller
 * names a key, so a malformed one is an invalid request (the CLI exits 2). */
#include "enroll/pkcs11_uri.h"

#include <limits.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* Real URIs are well under 1 KiB; the bound keeps a hostile argument or
 * config value from costing more than a page of work. */
#define URI_MAX_LEN 4096
#define URI_SCHEME "pkcs11:"
#define URI_SCHEME_LEN (sizeof URI_SCHEME - 1)
/* How much of an attribute name from the input to quote in a message. */
#define NAME_QUOTE_MAX 40

typedef enum uri_attr {
    ATTR_TOKEN,
    ATTR_MANUFACTURER,
    ATTR_SERIAL,
    ATTR_MODEL,
    ATTR_LIBRARY_MANUFACTURER,
    ATTR_LIBRARY_DESCRIPTION,
    ATTR_LIBRARY_VERSION,
    ATTR_OBJECT,
    ATTR_ID,
    ATTR_TYPE,
    ATTR_SLOT_ID,
    ATTR_SLOT_DESCRIPTION,
    ATTR_SLOT_MANUFACTURER,
    ATTR_MODULE_PATH,
    ATTR_MODULE_NAME,
    ATTR_PIN_SOURCE,
    ATTR_COUNT
} uri_attr;

typedef enum uri_part { PART_PATH, PART_QUERY } uri_part;

/* What a decoded value must look like beyond being percent-decodable. */
typedef enum value_kind {
    VALUE_TEXT,    /* no NUL: it is handed on as a C string */
    VALUE_BINARY,  /* any bytes (id) */
    VALUE_SLOT_ID, /* decimal CK_SLOT_ID */
    VALUE_TYPE,    /* one of OBJECT_TYPES */
    VALUE_VERSION  /* "M" or "M.N" */
} value_kind;

typedef struct attr_spec {
    const char *name;
    uri_attr attr;
    uri_part part;
    value_kind kind;
} attr_spec;

static const attr_spec ATTR_SPECS[] = {
    {"token", ATTR_TOKEN, PART_PATH, VALUE_TEXT},
    {"manufacturer", ATTR_MANUFACTURER, PART_PATH, VALUE_TEXT},
    {"serial", ATTR_SERIAL, PART_PATH, VALUE_TEXT},
    {"model", ATTR_MODEL, PART_PATH, VALUE_TEXT},
    {"library-manufacturer", ATTR_LIBRARY_MANUFACTURER, PART_PATH, VALUE_TEXT},
    {"library-description", ATTR_LIBRARY_DESCRIPTION, PART_PATH, VALUE_TEXT},
    {"library-version", ATTR_LIBRARY_VERSION, PART_PATH, VALUE_VERSION},
    {"object", ATTR_OBJECT, PART_PATH, VALUE_TEXT},
    {"id", ATTR_ID, PART_PATH, VALUE_BINARY},
    {"type", ATTR_TYPE, PART_PATH, VALUE_TYPE},
    {"slot-id", ATTR_SLOT_ID, PART_PATH, VALUE_SLOT_ID},
    {"slot-description", ATTR_SLOT_DESCRIPTION, PART_PATH, VALUE_TEXT},
    {"slot-manufacturer", ATTR_SLOT_MANUFACTURER, PART_PATH, VALUE_TEXT},
    {"module-path", ATTR_MODULE_PATH, PART_QUERY, VALUE_TEXT},
    {"module-name", ATTR_MODULE_NAME, PART_QUERY, VALUE_TEXT},
    {"pin-source", ATTR_PIN_SOURCE, PART_QUERY, VALUE_TEXT},
};
#define ATTR_SPEC_COUNT (sizeof ATTR_SPECS / sizeof ATTR_SPECS[0])

static const char *const OBJECT_TYPES[] = {"public", "private", "cert", "secret-key", "data"};
#define OBJECT_TYPE_COUNT (sizeof OBJECT_TYPES / sizeof OBJECT_TYPES[0])

struct enr_pkcs11_uri {
    /* Decoded values, each NUL-terminated one past len; NULL when absent. */
    unsigned char *value[ATTR_COUNT];
    size_t len[ATTR_COUNT];
    long slot_id;
};

/* One attribute of the input: positions are offsets into the whole URI so
 * that messages point at the right character. */
typedef struct segment {
    const char *uri;
    size_t start;
    size_t equals; /* offset of the first '=' */
    size_t end;
} segment;

static int name_length(const segment *seg)
{
    size_t n = seg->equals - seg->start;
    return (int)(n > NAME_QUOTE_MAX ? NAME_QUOTE_MAX : n);
}

static bool is_unreserved(unsigned char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' ||
           c == '.' || c == '_' || c == '~';
}

/* RFC 7512 section 2.3: pk11-pchar and pk11-qchar, less '%' (handled by the
 * decoder). */
static bool is_value_char(unsigned char c, uri_part part)
{
    if (is_unreserved(c) || (c != '\0' && strchr(":[]@!$'()*+,=", c) != NULL))
        return true;
    if (part == PART_PATH)
        return c == '&';
    return c == '/' || c == '?' || c == '|';
}

static int hex_value(unsigned char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

static enr_code bad_character(const char *uri, size_t offset, uri_part part, enr_error *err)
{
    unsigned char c = (unsigned char)uri[offset];
    const char *where = part == PART_PATH ? "path" : "query";
    if (c == ' ')
        return enr_error_set(err, ENR_E_USAGE,
                             "PKCS#11 URI: a space at offset %zu is not allowed; write it as %%20",
                             offset);
    if (c > 0x20 && c < 0x7f)
        return enr_error_set(err, ENR_E_USAGE,
                             "PKCS#11 URI: character '%c' at offset %zu is not allowed in the %s; "
                             "percent-encode it as %%%02X",
                             c, offset, where, c);
    return enr_error_set(err, ENR_E_USAGE,
                         "PKCS#11 URI: byte 0x%02x at offset %zu is not allowed in the %s; "
                         "percent-encode it as %%%02X",
                         c, offset, where, c);
}

/* Decodes the value of `seg` into a new buffer, NUL-terminated one past *out_len. */
static enr_code decode_value(const segment *seg, uri_part part, unsigned char **out,
                             size_t *out_len, enr_error *err)
{
    *out = NULL;
    size_t first = seg->equals + 1;
    unsigned char *buf = malloc(seg->end - first + 1);
    if (buf == NULL)
        return enr_error_set(err, ENR_E_NOMEM, "out of memory");
    size_t n = 0;
    for (size_t i = first; i < seg->end; i++) {
        unsigned char c = (unsigned char)seg->uri[i];
        if (c != '%') {
            if (!is_value_char(c, part)) {
                free(buf);
                return bad_character(seg->uri, i, part, err);
            }
            buf[n++] = c;
            continue;
        }
        int hi = i + 1 < seg->end ? hex_value((unsigned char)seg->uri[i + 1]) : -1;
        int lo = i + 2 < seg->end ? hex_value((unsigned char)seg->uri[i + 2]) : -1;
        if (hi < 0 || lo < 0) {
            free(buf);
            return enr_error_set(err, ENR_E_USAGE,
                                 "PKCS#11 URI: bad percent-escape at offset %zu in the value "
                                 "of '%.*s': '%%' must be followed by two hex digits",
                                 i, name_length(seg), seg->uri + seg->start);
        }
        buf[n++] = (unsigned char)(hi * 16 + lo);
        i += 2;
    }
    buf[n] = '\0';
    *out = buf;
    *out_len = n;
    return ENR_OK;
}

static bool is_decimal(const unsigned char *s, size_t len)
{
    if (len == 0)
        return false;
    for (size_t i = 0; i < len; i++)
        if (s[i] < '0' || s[i] > '9')
            return false;
    return true;
}

static enr_code parse_slot_id(const unsigned char *s, size_t len, size_t offset, long *out,
                              enr_error *err)
{
    if (!is_decimal(s, len))
        return enr_error_set(err, ENR_E_USAGE,
                             "PKCS#11 URI: slot-id (at offset %zu) must be a decimal number",
                             offset);
    long v = 0;
    for (size_t i = 0; i < len; i++) {
        long digit = s[i] - '0';
        if (v > (LONG_MAX - digit) / 10)
            return enr_error_set(err, ENR_E_USAGE,
                                 "PKCS#11 URI: slot-id (at offset %zu) is too large", offset);
        v = v * 10 + digit;
    }
    *out = v;
    return ENR_OK;
}

static bool is_version(const unsigned char *s, size_t len)
{
    const unsigned char *dot = memchr(s, '.', len);
    if (dot == NULL)
        return is_decimal(s, len);
    size_t major = (size_t)(dot - s);
    return is_decimal(s, major) && is_decimal(dot + 1, len - major - 1);
}

static bool is_object_type(const unsigned char *s)
{
    for (size_t i = 0; i < OBJECT_TYPE_COUNT; i++)
        if (strcmp((const char *)s, OBJECT_TYPES[i]) == 0)
            return true;
    return false;
}

static enr_code check_value(const attr_spec *spec, const segment *seg, const unsigned char *v,
                            size_t len, long *slot_id, enr_error *err)
{
    if (spec->kind != VALUE_BINARY && memchr(v, '\0', len) != NULL)
        return enr_error_set(err, ENR_E_USAGE,
                             "PKCS#11 URI: %s (at offset %zu) contains a NUL byte (%%00), which "
                             "a text attribute cannot hold",
                             spec->name, seg->start);
    switch (spec->kind) {
    case VALUE_TEXT:
    case VALUE_BINARY:
        return ENR_OK;
    case VALUE_SLOT_ID:
        return parse_slot_id(v, len, seg->start, slot_id, err);
    case VALUE_TYPE:
        if (is_object_type(v))
            return ENR_OK;
        return enr_error_set(err, ENR_E_USAGE,
                             "PKCS#11 URI: type (at offset %zu) must be public, private, cert, "
                             "secret-key or data",
                             seg->start);
    case VALUE_VERSION:
        if (is_version(v, len))
            return ENR_OK;
        return enr_error_set(err, ENR_E_USAGE,
                             "PKCS#11 URI: library-version (at offset %zu) must look like 2 or 2.40",
                             seg->start);
    }
    return enr_error_set(err, ENR_E_INTERNAL, "PKCS#11 URI: unhandled value kind");
}

static const attr_spec *find_spec(const segment *seg, uri_part part)
{
    size_t n = seg->equals - seg->start;
    for (size_t i = 0; i < ATTR_SPEC_COUNT; i++) {
        const attr_spec *spec = &ATTR_SPECS[i];
        if (spec->part == part && strlen(spec->name) == n &&
            memcmp(spec->name, seg->uri + seg->start, n) == 0)
            return spec;
    }
    return NULL;
}

static bool name_is(const segment *seg, const char *name)
{
    size_t n = seg->equals - seg->start;
    return strlen(name) == n && memcmp(name, seg->uri + seg->start, n) == 0;
}

static enr_code refuse_unknown(const segment *seg, uri_part part, enr_error *err)
{
    if (part == PART_QUERY && name_is(seg, "pin-value"))
        return enr_error_set(err, ENR_E_USAGE,
                             "PKCS#11 URI: pin-value is refused because a PIN in a URI ends up in "
                             "shell history and process lists; use pin-source=file:/path/to/pin "
                             "in the URI, set $ENROLL_PKCS11_PIN, or pass --pin-file");
    if (part == PART_PATH && name_is(seg, "pin-value"))
        return enr_error_set(err, ENR_E_USAGE,
                             "PKCS#11 URI: pin-value is refused (and belongs in the query); use "
                             "pin-source=file:/path/to/pin, $ENROLL_PKCS11_PIN or --pin-file");
    if (part == PART_PATH)
        return enr_error_set(err, ENR_E_USAGE,
                             "PKCS#11 URI: unknown path attribute '%.*s' at offset %zu (known: "
                             "token, manufacturer, serial, model, library-manufacturer, "
                             "library-description, library-version, object, id, type, slot-id, "
                             "slot-description, slot-manufacturer)",
                             name_length(seg), seg->uri + seg->start, seg->start);
    return ENR_OK; /* RFC 7512 section 2.4: unknown query attributes are ignored */
}

static enr_code check_name(const segment *seg, uri_part part, enr_error *err)
{
    if (seg->equals == seg->start)
        return enr_error_set(err, ENR_E_USAGE,
                             "PKCS#11 URI: attribute at offset %zu has an empty name", seg->start);
    for (size_t i = seg->start; i < seg->equals; i++) {
        unsigned char c = (unsigned char)seg->uri[i];
        if (is_unreserved(c))
            continue;
        if (c > 0x20 && c < 0x7f)
            return enr_error_set(err, ENR_E_USAGE,
                                 "PKCS#11 URI: character '%c' at offset %zu is not allowed in an "
                                 "attribute name",
                                 c, i);
        return bad_character(seg->uri, i, part, err);
    }
    return ENR_OK;
}

static enr_code store_attribute(enr_pkcs11_uri *uri, const segment *seg, uri_part part,
                                enr_error *err)
{
    enr_code rc = check_name(seg, part, err);
    if (rc != ENR_OK)
        return rc;
    const attr_spec *spec = find_spec(seg, part);
    if (spec == NULL) {
        rc = refuse_unknown(seg, part, err);
        if (rc != ENR_OK)
            return rc;
    } else if (uri->value[spec->attr] != NULL) {
        return enr_error_set(err, ENR_E_USAGE,
                             "PKCS#11 URI: %s appears twice (again at offset %zu)", spec->name,
                             seg->start);
    }
    unsigned char *v = NULL;
    size_t len = 0;
    /* Ignored attributes are still decoded, so a malformed URI is reported
     * the same way whichever attribute holds the mistake. */
    rc = decode_value(seg, part, &v, &len, err);
    if (rc != ENR_OK)
        return rc;
    if (spec == NULL) {
        free(v);
        return ENR_OK;
    }
    rc = check_value(spec, seg, v, len, &uri->slot_id, err);
    if (rc != ENR_OK) {
        free(v);
        return rc;
    }
    uri->value[spec->attr] = v;
    uri->len[spec->attr] = len;
    return ENR_OK;
}

static enr_code parse_segment(enr_pkcs11_uri *uri, const char *text, size_t start, size_t end,
                              uri_part part, enr_error *err)
{
    char separator = part == PART_PATH ? ';' : '&';
    if (start == end)
        return enr_error_set(err, ENR_E_USAGE,
                             "PKCS#11 URI: empty attribute at offset %zu (a stray or doubled '%c')",
                             start, separator);
    const char *eq = memchr(text + start, '=', end - start);
    if (eq == NULL)
        return enr_error_set(err, ENR_E_USAGE,
                             "PKCS#11 URI: attribute '%.*s' at offset %zu has no '=' (expected name=value)",
                             (int)(end - start > NAME_QUOTE_MAX ? NAME_QUOTE_MAX : end - start),
                             text + start, start);
    segment seg = {text, start, (size_t)(eq - text), end};
    return store_attribute(uri, &seg, part, err);
}

/* Parses text[start, end) as attributes separated by ';' (path) or '&' (query). */
static enr_code parse_part(enr_pkcs11_uri *uri, const char *text, size_t start, size_t end,
                           uri_part part, enr_error *err)
{
    char separator = part == PART_PATH ? ';' : '&';
    if (start == end)
        return ENR_OK; /* "pkcs11:" alone is a valid URI that matches everything */
    size_t seg_start = start;
    for (size_t i = start; i <= end; i++) {
        if (i < end && text[i] != separator)
            continue;
        enr_code rc = parse_segment(uri, text, seg_start, i, part, err);
        if (rc != ENR_OK)
            return rc;
        seg_start = i + 1;
    }
    return ENR_OK;
}

enr_code enr_pkcs11_uri_parse(const char *text, enr_pkcs11_uri **out, enr_error *err)
{
    *out = NULL;
    if (text == NULL)
        return enr_error_set(err, ENR_E_USAGE, "PKCS#11 URI: none given");
    size_t len = strnlen(text, URI_MAX_LEN + 1);
    if (len == 0)
        return enr_error_set(err, ENR_E_USAGE, "PKCS#11 URI: empty");
    if (len > URI_MAX_LEN)
        return enr_error_set(err, ENR_E_USAGE, "PKCS#11 URI: longer than %d bytes", URI_MAX_LEN);
    if (len < URI_SCHEME_LEN || strncasecmp(text, URI_SCHEME, URI_SCHEME_LEN) != 0)
        return enr_error_set(err, ENR_E_USAGE,
                             "PKCS#11 URI: must start with \"pkcs11:\" (e.g. "
                             "pkcs11:token=mytoken;object=devkey)");
    enr_pkcs11_uri *uri = calloc(1, sizeof *uri);
    if (uri == NULL)
        return enr_error_set(err, ENR_E_NOMEM, "out of memory");
    uri->slot_id = -1;
    const char *question = memchr(text, '?', len);
    size_t path_end = question != NULL ? (size_t)(question - text) : len;
    enr_code rc = parse_part(uri, text, URI_SCHEME_LEN, path_end, PART_PATH, err);
    if (rc == ENR_OK && question != NULL)
        rc = parse_part(uri, text, path_end + 1, len, PART_QUERY, err);
    if (rc != ENR_OK) {
        enr_pkcs11_uri_free(uri);
        return rc;
    }
    *out = uri;
    return ENR_OK;
}

void enr_pkcs11_uri_free(enr_pkcs11_uri *uri)
{
    if (uri == NULL)
        return;
    for (size_t i = 0; i < ATTR_COUNT; i++)
        free(uri->value[i]);
    free(uri);
}

static const char *text_of(const enr_pkcs11_uri *uri, uri_attr attr)
{
    return (const char *)uri->value[attr];
}

const char *enr_pkcs11_uri_token(const enr_pkcs11_uri *uri)
{
    return text_of(uri, ATTR_TOKEN);
}

const char *enr_pkcs11_uri_manufacturer(const enr_pkcs11_uri *uri)
{
    return text_of(uri, ATTR_MANUFACTURER);
}

const char *enr_pkcs11_uri_serial(const enr_pkcs11_uri *uri)
{
    return text_of(uri, ATTR_SERIAL);
}

const char *enr_pkcs11_uri_model(const enr_pkcs11_uri *uri)
{
    return text_of(uri, ATTR_MODEL);
}

const char *enr_pkcs11_uri_object(const enr_pkcs11_uri *uri)
{
    return text_of(uri, ATTR_OBJECT);
}

const unsigned char *enr_pkcs11_uri_id(const enr_pkcs11_uri *uri, size_t *id_len)
{
    if (id_len != NULL)
        *id_len = uri->len[ATTR_ID];
    return uri->value[ATTR_ID];
}

const char *enr_pkcs11_uri_type(const enr_pkcs11_uri *uri)
{
    return text_of(uri, ATTR_TYPE);
}

const char *enr_pkcs11_uri_module_path(const enr_pkcs11_uri *uri)
{
    return text_of(uri, ATTR_MODULE_PATH);
}

const char *enr_pkcs11_uri_pin_source(const enr_pkcs11_uri *uri)
{
    return text_of(uri, ATTR_PIN_SOURCE);
}

long enr_pkcs11_uri_slot_id(const enr_pkcs11_uri *uri)
{
    return uri->slot_id;
}
