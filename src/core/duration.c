#include "enroll/duration.h"

#include <ctype.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>

enr_code enr_duration_parse(const char *text, enr_duration *out, enr_error *err)
{
    memset(out, 0, sizeof *out);
    const char *p = text;
    if (*p != 'P')
        return enr_error_set(err, ENR_E_USAGE,
                             "duration '%s' must be ISO 8601, starting with P (e.g. P30D, P1Y, PT12H)",
                             text);
    p++;
    int in_time = 0, parts = 0;
    /* The designators allowed, in order, for each half: a part out of order is an error. */
    const char *date_order = "YMWD", *time_order = "HMS";
    const char *next = date_order;
    while (*p != '\0') {
        if (*p == 'T') {
            if (in_time)
                return enr_error_set(err, ENR_E_USAGE, "duration '%s': 'T' appears twice", text);
            in_time = 1;
            next = time_order;
            p++;
            if (*p == '\0')
                return enr_error_set(err, ENR_E_USAGE, "duration '%s': nothing after 'T'", text);
            continue;
        }
        if (!isdigit((unsigned char)*p))
            return enr_error_set(err, ENR_E_USAGE,
                                 "duration '%s': expected a whole number at '%s' (fractions are not "
                                 "supported)",
                                 text, p);
        long value = 0;
        while (isdigit((unsigned char)*p)) {
            /* Every part is bounded below (at most about 1100 years), so any
             * number past ten digits is refused before it could overflow. */
            if (value >= 1000000000L)
                return enr_error_set(err, ENR_E_USAGE, "duration '%s': number too large", text);
            value = value * 10 + (*p - '0');
            p++;
        }
        const char *pos = *p ? strchr(next, *p) : NULL;
        if (pos == NULL)
            return enr_error_set(err, ENR_E_USAGE,
                                 "duration '%s': '%c' is not a designator here (date part: Y M W D; "
                                 "after T: H M S)",
                                 text, *p ? *p : '?');
        /* In days and seconds the limit is 400000 days, a little over 1095 years. */
        long limit = 0, scale = 1;
        switch (in_time ? *p + 128 : *p) {
        case 'Y': limit = 1100; break;
        case 'M': limit = 13200; break;
        case 'W': limit = 400000 / 7, scale = 7; break;
        case 'D': limit = 400000; break;
        case 'H' + 128: limit = 400000L * 24, scale = 3600; break;
        case 'M' + 128: limit = 400000L * 1440, scale = 60; break;
        case 'S' + 128: limit = 400000L * 86400; break;
        default: break;
        }
        if (value > limit)
            return enr_error_set(err, ENR_E_USAGE, "duration '%s' is implausibly long", text);
        switch (in_time ? *p + 128 : *p) {
        case 'Y': out->years = (int)value; break;
        case 'M': out->months = (int)value; break;
        case 'W':
        case 'D': out->days += (int)(value * scale); break;
        default: out->seconds += value * scale; break;
        }
        next = pos + 1;
        parts++;
        p++;
    }
    if (parts == 0)
        return enr_error_set(err, ENR_E_USAGE, "duration '%s' has no parts (e.g. P30D)", text);
    if (out->years > 1100 || out->months > 13200 || out->days > 400000 || out->seconds > 400000L * 86400)
        return enr_error_set(err, ENR_E_USAGE, "duration '%s' is implausibly long", text);
    return ENR_OK;
}

time_t enr_duration_apply(time_t base, const enr_duration *d, int sign)
{
    struct tm tm;
    gmtime_r(&base, &tm);
    tm.tm_year += sign * d->years;
    tm.tm_mon += sign * d->months;
    tm.tm_mday += sign * d->days;
    time_t t = timegm(&tm);
    return t + (time_t)sign * (time_t)d->seconds;
}

void enr_duration_format(const enr_duration *d, char *buf, size_t cap)
{
    size_t n = (size_t)snprintf(buf, cap, "P");
    if (d->years)
        n += (size_t)snprintf(buf + n, cap - n, "%dY", d->years);
    if (d->months)
        n += (size_t)snprintf(buf + n, cap - n, "%dM", d->months);
    if (d->days)
        n += (size_t)snprintf(buf + n, cap - n, "%dD", d->days);
    if (d->seconds) {
        long h = d->seconds / 3600, m = d->seconds / 60 % 60, s = d->seconds % 60;
        n += (size_t)snprintf(buf + n, cap - n, "T");
        if (h)
            n += (size_t)snprintf(buf + n, cap - n, "%ldH", h);
        if (m)
            n += (size_t)snprintf(buf + n, cap - n, "%ldM", m);
        if (s)
            n += (size_t)snprintf(buf + n, cap - n, "%ldS", s);
    }
    if (n == 1)
        snprintf(buf + n, cap - n, "T0S");
}

void enr_time_format(time_t t, char *buf, size_t cap)
{
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(buf, cap, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

time_t enr_asn1_time_to_time_t(const ASN1_TIME *t)
{
    struct tm tm;
    return t != NULL && ASN1_TIME_to_tm(t, &tm) == 1 ? timegm(&tm) : 0;
}
