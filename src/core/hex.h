/* Internal: lower-case hex of bytes, the one encoder behind key ids (SPKI
 * SHA-256), fingerprints, etags and PKCS#11 ids. A table, not snprintf: the
 * SPKI hash is formatted on every registration, and "%02x" per byte cost
 * more than the hash itself. */
#ifndef ENROLL_CORE_HEX_H
#define ENROLL_CORE_HEX_H

#include <stddef.h>

/* Writes 2 * n hex digits and a NUL to `out` (2 * n + 1 bytes). */
void enr_hex_lower(const unsigned char *in, size_t n, char *out);

#endif
