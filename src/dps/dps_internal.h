/* Shared by the DPS readers and writers; not part of the public API. */
#ifndef ENROLL_DPS_INTERNAL_H
#define ENROLL_DPS_INTERNAL_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

#include "enroll/dps.h"

typedef struct enr_dps_json_limits {
    size_t max_bytes;
    int max_depth; /* arrays and objects; the top level is 1 */
    const char *what; /* names the text in messages: "request body" */
} enr_dps_json_limits;

/* Loads one JSON object within the limits: no duplicate keys, nothing after
 * it, no \u0000. On failure `*dps_err` is ENR_DPS_MALFORMED_BODY,
 * ENR_DPS_BODY_TOO_LARGE or ENR_DPS_INTERNAL. */
enr_code enr_dps_json_load_object(const char *text, size_t len, const enr_dps_json_limits *limits,
                                  json_t **out, enr_dps_error *dps_err, enr_error *err);

/* True when brackets nest deeper than `max_depth` (outside strings); `*where`
 * gets the offset of the first bracket too many. */
bool enr_dps_json_too_deep(const char *text, size_t len, int max_depth, size_t *where);

/* Copies `in` into `out` (capacity `cap` > 0) as printable ASCII: every
 * other byte becomes '?'. Messages quote outside bytes; logs and error
 * bodies must not carry control characters or broken UTF-8. */
void enr_dps_printable(const char *in, size_t in_len, char *out, size_t cap);

bool enr_dps_is_base64_char(unsigned char c);

/* 1..ENR_DPS_OPERATION_ID_MAX characters of [A-Za-z0-9._:-]. */
bool enr_dps_operation_id_ok(const char *id);

/* enr_dps_write_assigned through jansson: what it falls back to for
 * strings that need escaping or a payload (and test_dps's reference). */
enr_code enr_dps_write_assigned_json(const enr_dps_assignment *a, char **out, enr_error *err);
/* Whether enr_dps_write_assigned writes `a` directly (no payload, no
 * string that needs escaping). */
bool enr_dps_assignment_plain(const enr_dps_assignment *a);

/* json_dumps as one malloc'ed compact string for the writers. */
enr_code enr_dps_json_dump(json_t *doc, char **out, enr_error *err);

#endif
