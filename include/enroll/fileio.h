/* Files: bounded reads of outside input, and atomic, durable writes. */
#ifndef ENROLL_FILEIO_H
#define ENROLL_FILEIO_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#include "enroll/error.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Largest file any enroll command reads as a certificate, CSR or key. */
#define ENR_INPUT_LIMIT ((size_t)1 << 20)

typedef struct enr_buf {
    unsigned char *data; /* always NUL-terminated one past len, for text parsers */
    size_t len;
} enr_buf;

void enr_buf_free(enr_buf *buf);

/* Reads all of `path` ("-" is standard input). Refuses more than `limit`
 * bytes with a message naming the limit, rather than reading an unbounded
 * amount of outside input into memory. */
enr_code enr_file_read(const char *path, size_t limit, enr_buf *out, enr_error *err);

/* Writes `data` to `path` so that a reader never sees a half-written file:
 * a temporary file in the same directory, created with `mode` (never wider),
 * written, fsync'ed, renamed over `path`, and the directory fsync'ed.
 * With overwrite == false an existing `path` is an ENR_E_EXISTS error.
 * "-" writes to standard output. */
enr_code enr_file_write_atomic(const char *path, const void *data, size_t len, mode_t mode,
                               bool overwrite, enr_error *err);

/* Reads a secret (PIN, passphrase) from a file: the first line, without its
 * line ending. The result is wiped and freed by enr_secret_free. */
enr_code enr_secret_read_file(const char *path, char **out, enr_error *err);
void enr_secret_free(char *secret);

#ifdef __cplusplus
}
#endif
#endif
