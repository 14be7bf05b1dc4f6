/* Identifiers and small values of the DPS protocol: api-version, registration
 * ids, request paths, tracking ids and DPS timestamps. */
#include <openssl/rand.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "core/hex.h"
#include "dps/dps_internal.h"

/* ---- api-version ---------------------------------------------------------- */

typedef struct api_version {
    const char *date;    /* compared exactly */
    bool preview;        /* "-preview" follows, compared case-insensitively */
    enr_dps_api_generation generation;
} api_version;

static const api_version API_VERSIONS[] = {
    {"2019-03-31", false, ENR_DPS_API_2019_03_31},
    {"2021-11-01", true, ENR_DPS_API_2021_11_01_PREVIEW},
    {"2025-07-01", true, ENR_DPS_API_2025_07_01_PREVIEW},
};

#define ACCEPTED_API_VERSIONS "2019-03-31, 2021-11-01-preview or 2025-07-01-preview"

static bool api_version_matches(const api_version *v, const char *value)
{
    size_t date_len = strlen(v->date);
    if (strncmp(value, v->date, date_len) != 0)
        return false;
    const char *rest = value + date_len;
    return v->preview ? strcasecmp(rest, "-preview") == 0 : *rest == '\0';
}

enr_code enr_dps_api_version_check(const char *query_value, enr_dps_api_generation *out,
                                   enr_error *err)
{
    if (query_value == NULL || query_value[0] == '\0')
        return enr_error_set(err, ENR_E_UNSUPPORTED,
                             "the api-version query parameter is missing; use "
                             ACCEPTED_API_VERSIONS);
    for (size_t i = 0; i < sizeof API_VERSIONS / sizeof API_VERSIONS[0]; i++) {
        if (api_version_matches(&API_VERSIONS[i], query_value)) {
            *out = API_VERSIONS[i].generation;
            return ENR_OK;
        }
    }
    char shown[64];
    enr_dps_printable(query_value, strlen(query_value), shown, sizeof shown);
    return enr_error_set(err, ENR_E_UNSUPPORTED,
                         "api-version '%s' is not supported; use " ACCEPTED_API_VERSIONS, shown);
}

const char *enr_dps_api_version_name(enr_dps_api_generation gen)
{
    switch (gen) {
    case ENR_DPS_API_2019_03_31: return "2019-03-31";
    case ENR_DPS_API_2021_11_01_PREVIEW: return "2021-11-01-preview";
    case ENR_DPS_API_2025_07_01_PREVIEW: return "2025-07-01-preview";
    }
    return "unknown";
}

/* ---- registration ids --------------------------------------------------- */

static bool all_chars(const char *s, size_t len, bool (*ok)(unsigned char))
{
    for (size_t i = 0; i < len; i++)
        if (!ok((unsigned char)s[i]))
            return false;
    return true;
}

static bool is_alnum(unsigned char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
}

static bool is_id_char(unsigned char c)
{
    return is_alnum(c) || c == '.' || c == '_' || c == ':' || c == '-';
}

enr_code enr_dps_registration_id_check(const char *id, size_t len, enr_error *err)
{
    if (len == 0)
        return enr_error_set(err, ENR_E_PARSE, "the registration id is empty");
    if (len > ENR_DPS_REGISTRATION_ID_MAX)
        return enr_error_set(err, ENR_E_PARSE,
                             "the registration id is %zu characters; the limit is %d", len,
                             ENR_DPS_REGISTRATION_ID_MAX);
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)id[i];
        if (!is_id_char(c))
            return enr_error_set(err, ENR_E_PARSE,
                                 "the registration id has byte 0x%02x at position %zu; allowed are "
                                 "letters, digits and . _ : -",
                                 c, i);
    }
    unsigned char last = (unsigned char)id[len - 1];
    if (!is_alnum(last) && last != '-')
        return enr_error_set(err, ENR_E_PARSE,
                             "the registration id ends in '%c'; it must end in a letter, digit "
                             "or '-'",
                             last);
    return ENR_OK;
}

bool enr_dps_registration_id_equal(const char *a, const char *b)
{
    return a != NULL && b != NULL && strcasecmp(a, b) == 0;
}

bool enr_dps_operation_id_ok(const char *id)
{
    size_t len = strnlen(id, ENR_DPS_OPERATION_ID_MAX + 1);
    return len >= 1 && len <= ENR_DPS_OPERATION_ID_MAX && all_chars(id, len, is_id_char);
}

/* ---- tracking ids ----------------------------------------------------------- */

enr_code enr_dps_tracking_id_new(char out[ENR_DPS_TRACKING_ID_SIZE], enr_error *err)
{
    unsigned char b[16];
    if (RAND_bytes(b, sizeof b) != 1)
        return enr_error_openssl(err, ENR_E_CRYPTO, "cannot draw random bytes for a tracking id");
    b[6] = (unsigned char)((b[6] & 0x0f) | 0x40); /* version 4 */
    b[8] = (unsigned char)((b[8] & 0x3f) | 0x80); /* RFC 4122 variant */
    /* 8-4-4-4-12 hex digits: the groups are 4, 2, 2, 2 and 6 bytes. */
    static const unsigned char GROUP_BYTES[] = {4, 2, 2, 2, 6};
    char *at = out;
    const unsigned char *from = b;
    for (size_t g = 0; g < sizeof GROUP_BYTES; g++) {
        if (g > 0)
            *at++ = '-';
        enr_hex_lower(from, GROUP_BYTES[g], at);
        at += 2 * GROUP_BYTES[g];
        from += GROUP_BYTES[g];
    }
    *at = '\0';
    return ENR_OK;
}

enr_code enr_dps_operation_id_new(time_t now, char out[ENR_DPS_OPERATION_ID_SIZE], enr_error *err)
{
    char uuid[ENR_DPS_TRACKING_ID_SIZE];
    enr_code rc = enr_dps_tracking_id_new(uuid, err);
    if (rc == ENR_OK)
        snprintf(out, ENR_DPS_OPERATION_ID_SIZE, "%llx.%s", (unsigned long long)now, uuid);
    return rc;
}

bool enr_dps_operation_id_started(const char *id, time_t *started)
{
    const char *dot = id != NULL ? strchr(id, '.') : NULL;
    size_t digits = dot != NULL ? (size_t)(dot - id) : 0;
    if (digits == 0 || digits > 15 || strlen(dot + 1) != ENR_DPS_TRACKING_ID_SIZE - 1)
        return false;
    unsigned long long t = 0;
    for (size_t i = 0; i < digits; i++) {
        char c = id[i];
        int v = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
        if (v < 0)
            return false;
        t = t * 16 + (unsigned long long)v;
    }
    *started = (time_t)t;
    return true;
}

/* ---- timestamps ------------------------------------------------------------ */

/* Writes `v` as exactly `n` decimal digits, zero-padded. */
static char *put_digits(char *at, unsigned v, int n)
{
    for (int i = n - 1; i >= 0; i--, v /= 10)
        at[i] = (char)('0' + v % 10);
    return at + n;
}

enr_code enr_dps_time_format(time_t t, char out[ENR_DPS_TIME_SIZE], enr_error *err)
{
    struct tm tm;
    if (gmtime_r(&t, &tm) == NULL || tm.tm_year < -1900 || tm.tm_year > 9999 - 1900)
        return enr_error_set(err, ENR_E_USAGE, "time %lld cannot be written as a DPS timestamp",
                             (long long)t);
    /* By hand, not snprintf: a registration writes several of these. */
    char *at = put_digits(out, (unsigned)(tm.tm_year + 1900), 4);
    *at++ = '-';
    at = put_digits(at, (unsigned)tm.tm_mon + 1, 2);
    *at++ = '-';
    at = put_digits(at, (unsigned)tm.tm_mday, 2);
    *at++ = 'T';
    at = put_digits(at, (unsigned)tm.tm_hour, 2);
    *at++ = ':';
    at = put_digits(at, (unsigned)tm.tm_min, 2);
    *at++ = ':';
    at = put_digits(at, (unsigned)tm.tm_sec, 2);
    memcpy(at, ".0000000Z", sizeof ".0000000Z");
    return ENR_OK;
}

/* Reads exactly `n` digits; -1 when any is missing. */
static int digits(const char *s, int n)
{
    int v = 0;
    for (int i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -1;
        v = v * 10 + (s[i] - '0');
    }
    return v;
}

static int days_in_month(int year, int month)
{
    static const int DAYS[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    bool leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
    return month == 2 && leap ? 29 : DAYS[month - 1];
}

/* Howard Hinnant's days_from_civil: no timegm, no TZ, no normalisation. */
static long long days_from_civil(int y, int m, int d)
{
    y -= m <= 2;
    long long era = (y >= 0 ? y : y - 399) / 400;
    long long yoe = y - era * 400;
    long long doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    long long doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

static bool time_fraction_ok(const char *p)
{
    if (*p == '.') {
        size_t n = 0;
        for (p++; *p >= '0' && *p <= '9'; p++)
            n++;
        if (n < 1 || n > 9)
            return false;
    }
    return p[0] == 'Z' && p[1] == '\0';
}

enr_code enr_dps_time_parse(const char *text, time_t *out, enr_error *err)
{
    const char *s = text;
    if (strnlen(s, 20) < 20 || s[4] != '-' || s[7] != '-' || s[10] != 'T' || s[13] != ':' ||
        s[16] != ':' || !time_fraction_ok(s + 19))
        return enr_error_set(err, ENR_E_PARSE,
                             "timestamp is not of the form 2026-11-23T08:00:00.0000000Z");
    int year = digits(s, 4), month = digits(s + 5, 2), day = digits(s + 8, 2);
    int hour = digits(s + 11, 2), minute = digits(s + 14, 2), second = digits(s + 17, 2);
    if (year < 0 || month < 1 || month > 12 || day < 1 || day > days_in_month(year, month) ||
        hour < 0 || hour > 23 || minute < 0 || minute > 59 || second < 0 || second > 59)
        return enr_error_set(err, ENR_E_PARSE, "timestamp has a field out of range");
    long long secs = days_from_civil(year, month, day) * 86400LL + hour * 3600LL + minute * 60LL +
                     second;
    *out = (time_t)secs;
    return ENR_OK;
}

/* ---- request paths ---------------------------------------------------------- */

#define PATH_MAX_LEN 1024
#define PATH_SEGMENTS_MAX 5

typedef struct segment {
    const char *start;
    size_t len;
} segment;

static int hex_value(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* Percent-decodes one segment into `out` (capacity `cap`, NUL-terminated).
 * Returns false on a broken escape or when the result does not fit; the
 * syntax check that follows rejects any decoded byte that is not allowed. */
static bool percent_decode(segment s, char *out, size_t cap, size_t *out_len)
{
    size_t n = 0;
    for (size_t i = 0; i < s.len; i++) {
        if (n + 1 >= cap)
            return false;
        char c = s.start[i];
        if (c == '%') {
            if (s.len - i < 3)
                return false;
            int hi = hex_value(s.start[i + 1]), lo = hex_value(s.start[i + 2]);
            if (hi < 0 || lo < 0)
                return false;
            c = (char)(hi * 16 + lo);
            i += 2;
        }
        out[n++] = c;
    }
    out[n] = '\0';
    *out_len = n;
    return true;
}

static bool is_scope_char(unsigned char c)
{
    return is_alnum(c) || c == '.' || c == '_' || c == '-';
}

static size_t split_path(const char *path, segment *segs, size_t max, bool *too_many)
{
    size_t n = 0;
    *too_many = false;
    const char *p = path + 1; /* after the leading '/' */
    for (;;) {
        const char *slash = strchr(p, '/');
        size_t len = slash != NULL ? (size_t)(slash - p) : strlen(p);
        if (n == max) {
            *too_many = true;
            return n;
        }
        segs[n++] = (segment){p, len};
        if (slash == NULL)
            return n;
        p = slash + 1;
    }
}

static enr_code unknown_path(enr_dps_error *dps_err, enr_error *err, const char *why)
{
    *dps_err = ENR_DPS_UNKNOWN_PATH;
    return enr_error_set(err, ENR_E_NOTFOUND,
                         "%s; expected /{idScope}/registrations/{registrationId}/register or "
                         "/{idScope}/registrations/{registrationId}/operations/{operationId}",
                         why);
}

static bool segment_is(segment s, const char *word)
{
    return s.len == strlen(word) && memcmp(s.start, word, s.len) == 0;
}

static enr_code decode_scope(segment s, enr_dps_path *out, enr_dps_error *dps_err, enr_error *err)
{
    size_t len = 0;
    if (!percent_decode(s, out->id_scope, sizeof out->id_scope, &len) || len == 0 ||
        !all_chars(out->id_scope, len, is_scope_char)) {
        *dps_err = ENR_DPS_UNKNOWN_ID_SCOPE;
        return enr_error_set(err, ENR_E_NOTFOUND,
                             "the idScope in the path is not 1-%d characters of [A-Za-z0-9._-]",
                             ENR_DPS_ID_SCOPE_MAX);
    }
    return ENR_OK;
}

static enr_code decode_registration_id(segment s, enr_dps_path *out, enr_dps_error *dps_err,
                                       enr_error *err)
{
    size_t len = 0;
    *dps_err = ENR_DPS_REGISTRATION_ID_INVALID;
    if (!percent_decode(s, out->registration_id, sizeof out->registration_id, &len))
        return enr_error_set(err, ENR_E_PARSE,
                             "the registration id in the path has a broken %% escape or is longer "
                             "than %d characters",
                             ENR_DPS_REGISTRATION_ID_MAX);
    enr_code rc = enr_dps_registration_id_check(out->registration_id, len, err);
    if (rc != ENR_OK)
        enr_error_prefix(err, "path");
    return rc;
}

static enr_code decode_operation_id(segment s, enr_dps_path *out, enr_dps_error *dps_err,
                                    enr_error *err)
{
    size_t len = 0;
    if (!percent_decode(s, out->operation_id, sizeof out->operation_id, &len) || len == 0 ||
        !all_chars(out->operation_id, len, is_id_char)) {
        *dps_err = ENR_DPS_UNKNOWN_OPERATION;
        return enr_error_set(err, ENR_E_NOTFOUND,
                             "the operation id in the path is not one this service issues (1-%d "
                             "characters of [A-Za-z0-9._:-])",
                             ENR_DPS_OPERATION_ID_MAX);
    }
    return ENR_OK;
}

enr_code enr_dps_path_parse(const char *path, enr_dps_path *out, enr_dps_error *dps_err,
                            enr_error *err)
{
    memset(out, 0, sizeof *out);
    if (path == NULL || path[0] != '/')
        return unknown_path(dps_err, err, "the path does not start with '/'");
    if (strnlen(path, PATH_MAX_LEN + 1) > PATH_MAX_LEN)
        return unknown_path(dps_err, err, "the path is longer than 1024 bytes");
    segment segs[PATH_SEGMENTS_MAX];
    bool too_many = false;
    size_t n = split_path(path, segs, PATH_SEGMENTS_MAX, &too_many);
    if (too_many)
        return unknown_path(dps_err, err, "the path has too many segments");
    bool is_register = n == 4 && segment_is(segs[3], "register");
    bool is_status = n == 5 && segment_is(segs[3], "operations");
    if ((!is_register && !is_status) || !segment_is(segs[1], "registrations"))
        return unknown_path(dps_err, err, "the path is not a registration endpoint");
    enr_code rc = decode_scope(segs[0], out, dps_err, err);
    if (rc == ENR_OK)
        rc = decode_registration_id(segs[2], out, dps_err, err);
    if (rc == ENR_OK && is_status)
        rc = decode_operation_id(segs[4], out, dps_err, err);
    if (rc != ENR_OK) {
        memset(out, 0, sizeof *out);
        return rc;
    }
    out->kind = is_register ? ENR_DPS_PATH_REGISTER : ENR_DPS_PATH_OPERATION_STATUS;
    *dps_err = ENR_DPS_OK;
    return ENR_OK;
}
