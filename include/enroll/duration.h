/* ISO 8601 durations ("P30D", "P1Y6M", "PT12H", "P2W") as policies and
 * profiles write validity periods, applied in calendar terms (P1Y from
 * 29 Feb is 28 Feb... of the next year, as timegm normalises). */
#ifndef ENROLL_DURATION_H
#define ENROLL_DURATION_H

#include <openssl/asn1.h>
#include <time.h>

#include "enroll/error.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct enr_duration {
    int years, months, days;
    long seconds; /* hours, minutes and seconds together */
} enr_duration;

/* Parses PnYnMnWnDTnHnMnS (each part optional, at least one, integers only). */
enr_code enr_duration_parse(const char *text, enr_duration *out, enr_error *err);

/* `base` plus (or, with sign -1, minus) the duration, in UTC calendar terms. */
time_t enr_duration_apply(time_t base, const enr_duration *d, int sign);

/* The canonical text form ("P1Y2M3DT4H5M6S"); `buf` of at least 64 bytes. */
void enr_duration_format(const enr_duration *d, char *buf, size_t cap);

/* An ASN.1 time (a certificate's or CRL's) as time_t, UTC; 0 when it does
 * not read. */
time_t enr_asn1_time_to_time_t(const ASN1_TIME *t);

/* RFC 3339 UTC text for `t` ("2026-11-24T20:00:00Z"); `buf` of at least 21 bytes. */
void enr_time_format(time_t t, char *buf, size_t cap);

#ifdef __cplusplus
}
#endif
#endif
