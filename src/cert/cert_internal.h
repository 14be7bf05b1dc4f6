/* Internal: what the certificate and CRL readers, the describer and the
 * verifier share. */
#ifndef ENROLL_CERT_INTERNAL_H
#define ENROLL_CERT_INTERNAL_H

#include <openssl/asn1.h>
#include <stdbool.h>
#include <stddef.h>
#include <time.h>

#include "enroll/error.h"
#include "enroll/input.h"

/* One DER object out of an input: a PEM block, or the whole DER/base64. */
typedef struct enr_bundle_item {
    unsigned char *der;
    size_t der_len;
    size_t input_offset; /* where its encoding starts in the input */
} enr_bundle_item;

typedef struct enr_bundle {
    enr_bundle_item *items;
    size_t count;
    enr_encoding encoding;
} enr_bundle;

/* What a bundle may hold, for the checks and the messages. */
typedef struct enr_bundle_kind {
    const char *noun;          /* "certificate" */
    const char *const *labels; /* accepted PEM labels, NULL-terminated; labels[0] is named in messages */
} enr_bundle_kind;

/* Splits `in` into DER objects: every PEM block (explanatory text between
 * blocks is allowed, as RFC 7468 asks; binary data and stray boundary lines
 * are not), or exactly one DER or headerless-base64 object. Every complaint
 * names a byte offset into `in`. At least one object on success. */
enr_code enr_bundle_decode(const unsigned char *in, size_t len, const enr_bundle_kind *kind,
                           enr_bundle *out, enr_error *err);
void enr_bundle_free(enr_bundle *bundle);

/* Says where object `index` (0-based) of a bundle is, for message prefixes:
 * "certificate 2 (PEM block at byte 1234)", or "the DER input" for a lone
 * DER or base64 object. */
void enr_bundle_where(const enr_bundle *bundle, size_t index, const char *noun, char *out,
                      size_t out_len);

#define ENR_RFC3339_MAX 32

/* "2026-01-01T00:00:00Z". Returns false, writing "(invalid time)", when the
 * ASN.1 time cannot be read. */
bool enr_asn1_time_rfc3339(const ASN1_TIME *t, char out[ENR_RFC3339_MAX]);
void enr_time_rfc3339(time_t t, char out[ENR_RFC3339_MAX]);

/* Hex of `len` bytes: lowercase and contiguous, or uppercase with ':' between
 * bytes (the OpenSSL text style). Caller frees. */
char *enr_hex(const unsigned char *data, size_t len, bool colons);

/* A serial number as `openssl x509 -serial` prints it: uppercase hex, a '-'
 * for negative numbers, "00" for zero. Caller frees. */
char *enr_serial_hex(const ASN1_INTEGER *serial);

#endif
