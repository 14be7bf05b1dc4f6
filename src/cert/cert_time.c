/* Times as people write them (RFC 3339) and as certificates carry them. */
#include <ctype.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "cert/cert_internal.h"
#include "enroll/cert.h"

static void format_tm(const struct tm *tm, char out[ENR_RFC3339_MAX])
{
    snprintf(out, ENR_RFC3339_MAX, "%04d-%02d-%02dT%02d:%02d:%02dZ", tm->tm_year + 1900,
             tm->tm_mon + 1, tm->tm_mday, tm->tm_hour, tm->tm_min, tm->tm_sec);
}

bool enr_asn1_time_rfc3339(const ASN1_TIME *t, char out[ENR_RFC3339_MAX])
{
    struct tm tm;
    if (t == NULL || ASN1_TIME_to_tm(t, &tm) != 1) {
        snprintf(out, ENR_RFC3339_MAX, "(invalid time)");
        return false;
    }
    format_tm(&tm, out);
    return true;
}

void enr_time_rfc3339(time_t t, char out[ENR_RFC3339_MAX])
{
    struct tm tm;
    if (gmtime_r(&t, &tm) == NULL) {
        snprintf(out, ENR_RFC3339_MAX, "(invalid time)");
        return;
    }
    format_tm(&tm, out);
}

/* A cursor over the text being parsed, so that the complaint can say where. */
typedef struct time_cursor {
    const char *text;
    size_t pos;
} time_cursor;

static bool digits(time_cursor *c, int count, int *out)
{
    int v = 0;
    for (int i = 0; i < count; i++) {
        unsigned char ch = (unsigned char)c->text[c->pos];
        if (!isdigit(ch))
            return false;
        v = v * 10 + (ch - '0');
        c->pos++;
    }
    *out = v;
    return true;
}

static bool literal(time_cursor *c, const char *choices)
{
    char ch = c->text[c->pos];
    if (ch == '\0' || strchr(choices, ch) == NULL)
        return false;
    c->pos++;
    return true;
}

static bool is_leap(int year)
{
    return (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
}

static int days_in_month(int year, int month)
{
    static const int DAYS[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    return month == 2 && is_leap(year) ? 29 : DAYS[month - 1];
}

static enr_code bad_time(const char *text, size_t pos, const char *what, enr_error *err)
{
    return enr_error_set(err, ENR_E_USAGE,
                         "'%s' is not a time (%s at character %zu): write it as RFC 3339, like "
                         "2027-01-01T00:00:00Z or 2027-01-01T02:00:00+02:00, or as a date, "
                         "2027-01-01 (midnight UTC)",
                         text, what, pos + 1);
}

static enr_code parse_date(time_cursor *c, struct tm *tm, enr_error *err)
{
    int year, month, day;
    if (!digits(c, 4, &year) || !literal(c, "-") || !digits(c, 2, &month) || !literal(c, "-") ||
        !digits(c, 2, &day))
        return bad_time(c->text, c->pos, "expected YYYY-MM-DD", err);
    if (month < 1 || month > 12)
        return bad_time(c->text, 5, "month out of range", err);
    if (day < 1 || day > days_in_month(year, month))
        return bad_time(c->text, 8, "day out of range for the month", err);
    tm->tm_year = year - 1900;
    tm->tm_mon = month - 1;
    tm->tm_mday = day;
    return ENR_OK;
}

static enr_code parse_clock(time_cursor *c, struct tm *tm, enr_error *err)
{
    size_t start = c->pos;
    int hour, minute, second;
    if (!digits(c, 2, &hour) || !literal(c, ":") || !digits(c, 2, &minute) || !literal(c, ":") ||
        !digits(c, 2, &second))
        return bad_time(c->text, c->pos, "expected hh:mm:ss", err);
    /* 60 is a leap second; timegm folds it into the next minute. */
    if (hour > 23 || minute > 59 || second > 60)
        return bad_time(c->text, start, "hour, minute or second out of range", err);
    if (literal(c, ".")) {
        int ignored;
        if (!digits(c, 1, &ignored))
            return bad_time(c->text, c->pos, "expected digits after '.'", err);
        while (isdigit((unsigned char)c->text[c->pos]))
            c->pos++; /* fractions of a second do not matter to certificate times */
    }
    tm->tm_hour = hour;
    tm->tm_min = minute;
    tm->tm_sec = second;
    return ENR_OK;
}

/* Seconds east of UTC, from "Z" or "+hh:mm" / "-hh:mm". */
static enr_code parse_offset(time_cursor *c, long *east, enr_error *err)
{
    if (literal(c, "Zz")) {
        *east = 0;
        return ENR_OK;
    }
    char sign = c->text[c->pos];
    if (!literal(c, "+-"))
        return bad_time(c->text, c->pos, "expected Z or a +hh:mm / -hh:mm offset", err);
    size_t start = c->pos;
    int hours, minutes;
    if (!digits(c, 2, &hours) || !literal(c, ":") || !digits(c, 2, &minutes))
        return bad_time(c->text, c->pos, "expected an hh:mm offset", err);
    if (hours > 23 || minutes > 59)
        return bad_time(c->text, start, "offset out of range", err);
    *east = (sign == '-' ? -1L : 1L) * (hours * 3600L + minutes * 60L);
    return ENR_OK;
}

enr_code enr_time_parse(const char *text, time_t *out, enr_error *err)
{
    if (text == NULL)
        return enr_error_set(err, ENR_E_USAGE, "no time given");
    time_cursor c = {text, 0};
    struct tm tm;
    memset(&tm, 0, sizeof tm);
    long east = 0;
    enr_code rc = parse_date(&c, &tm, err);
    if (rc != ENR_OK)
        return rc;
    if (text[c.pos] != '\0') {
        if (!literal(&c, "Tt "))
            return bad_time(text, c.pos, "expected T between the date and the time", err);
        if ((rc = parse_clock(&c, &tm, err)) != ENR_OK ||
            (rc = parse_offset(&c, &east, err)) != ENR_OK)
            return rc;
        if (text[c.pos] != '\0')
            return bad_time(text, c.pos, "unexpected text after the time", err);
    }
    time_t utc = timegm(&tm);
    if (utc == (time_t)-1 && !(tm.tm_year == 69 && tm.tm_mon == 11 && tm.tm_mday == 31))
        return enr_error_set(err, ENR_E_USAGE, "'%s' is outside the range this system can represent", text);
    *out = utc - (time_t)east;
    return ENR_OK;
}
