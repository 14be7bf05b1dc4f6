#include "enroll/error.h"

#include <openssl/err.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

/* Every setter: the code, the reason (ENR_R_NONE but for refusals) and the message. */
__attribute__((format(printf, 4, 0))) static enr_code fill(enr_error *err, enr_code code, enr_reason reason,
                                                           const char *fmt, va_list ap)
{
    err->code = code;
    err->reason = reason;
    vsnprintf(err->message, sizeof err->message, fmt, ap);
    return code;
}

enr_code enr_error_set(enr_error *err, enr_code code, const char *fmt, ...)
{
    if (err == NULL)
        return code;
    va_list ap;
    va_start(ap, fmt);
    fill(err, code, ENR_R_NONE, fmt, ap);
    va_end(ap);
    return code;
}

enr_code enr_error_refuse(enr_error *err, enr_reason reason, const char *fmt, ...)
{
    if (err == NULL)
        return ENR_E_POLICY;
    va_list ap;
    va_start(ap, fmt);
    fill(err, ENR_E_POLICY, reason, fmt, ap);
    va_end(ap);
    return ENR_E_POLICY;
}

enr_code enr_error_openssl(enr_error *err, enr_code code, const char *fmt, ...)
{
    unsigned long e = ERR_peek_last_error();
    char reason[160] = "";
    if (e != 0)
        ERR_error_string_n(e, reason, sizeof reason);
    ERR_clear_error();
    if (err == NULL)
        return code;
    va_list ap;
    va_start(ap, fmt);
    fill(err, code, ENR_R_NONE, fmt, ap);
    va_end(ap);
    if (reason[0] != '\0') {
        size_t used = strlen(err->message);
        snprintf(err->message + used, sizeof err->message - used, " (openssl: %s)", reason);
    }
    return code;
}

void enr_error_prefix(enr_error *err, const char *fmt, ...)
{
    if (err == NULL)
        return;
    char head[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(head, sizeof head, fmt, ap);
    va_end(ap);
    char joined[ENR_ERROR_MESSAGE_MAX];
    snprintf(joined, sizeof joined, "%s: %s", head, err->message);
    memcpy(err->message, joined, sizeof joined);
}

void enr_error_clear(enr_error *err)
{
    if (err == NULL)
        return;
    err->code = ENR_OK;
    err->reason = ENR_R_NONE;
    err->message[0] = '\0';
}

const char *enr_code_name(enr_code code)
{
    switch (code) {
    case ENR_OK: return "ok";
    case ENR_E_USAGE: return "usage";
    case ENR_E_PARSE: return "parse";
    case ENR_E_IO: return "io";
    case ENR_E_NOMEM: return "nomem";
    case ENR_E_CRYPTO: return "crypto";
    case ENR_E_VERIFY: return "verify";
    case ENR_E_EXISTS: return "exists";
    case ENR_E_NOTFOUND: return "notfound";
    case ENR_E_UNSUPPORTED: return "unsupported";
    case ENR_E_TOKEN: return "token";
    case ENR_E_POLICY: return "policy";
    case ENR_E_INTERNAL: return "internal";
    case ENR_E_LOCKED: return "locked";
    }
    return "unknown";
}
