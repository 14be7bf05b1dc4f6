/* One error type for all of libenroll: a code a program can branch on and a
 * message a person can act on (what was wrong, where, and what to do). */
#ifndef ENROLL_ERROR_H
#define ENROLL_ERROR_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum enr_code {
    ENR_OK = 0,
    ENR_E_USAGE,       /* the caller asked for something invalid */
    ENR_E_PARSE,       /* outside bytes are malformed */
    ENR_E_IO,          /* file system or device trouble */
    ENR_E_NOMEM,
    ENR_E_CRYPTO,      /* the crypto library failed */
    ENR_E_VERIFY,      /* a signature or check did not hold */
    ENR_E_EXISTS,      /* refusing to overwrite */
    ENR_E_NOTFOUND,
    ENR_E_UNSUPPORTED, /* well-formed but not something we handle */
    ENR_E_TOKEN,       /* PKCS#11 module or token failure */
    ENR_E_POLICY,      /* refused by a rule */
    ENR_E_INTERNAL
} enr_code;

#define ENR_ERROR_MESSAGE_MAX 512

typedef struct enr_error {
    enr_code code;
    char message[ENR_ERROR_MESSAGE_MAX];
} enr_error;

/* Every setter accepts err == NULL and returns `code`, so a failing call can
 * be written as `return enr_error_set(err, ENR_E_PARSE, "...")`. */
enr_code enr_error_set(enr_error *err, enr_code code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Like enr_error_set, then appends the reason at the top of OpenSSL's error
 * queue (if any) and clears the queue so stale reasons never leak into a
 * later message. */
enr_code enr_error_openssl(enr_error *err, enr_code code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Puts "context: " in front of the current message (e.g. the file name). */
void enr_error_prefix(enr_error *err, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

void enr_error_clear(enr_error *err);

/* A short stable name for a code ("parse", "io", ...), for JSON output. */
const char *enr_code_name(enr_code code);

#ifdef __cplusplus
}
#endif
#endif
