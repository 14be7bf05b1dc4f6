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
    ENR_E_INTERNAL,
    ENR_E_LOCKED       /* a key or token needs a passphrase or PIN that is missing or wrong
                        * (appended: the numbers above keep their meaning) */
} enr_code;

/* Why a rule refused (ENR_E_POLICY): what a caller decides on, so no
 * decision ever depends on the wording of a message. A new reason is
 * appended; a number keeps its meaning. */
typedef enum enr_reason {
    ENR_R_NONE = 0,
    ENR_R_KEY_NOT_ALLOWED,        /* the request's key type, size or exponent */
    ENR_R_NAME_NOT_ALLOWED,       /* subject or subjectAltName refused by the profile */
    ENR_R_EXTENSION_NOT_ALLOWED,  /* a requested extension the profile refuses */
    ENR_R_SIGNATURE_ALGORITHM,    /* the request is signed with a refused hash */
    ENR_R_CA_EXPIRES,             /* the CA expires before the certificate would start */
    ENR_R_ENROLLMENT_DISABLED,
    ENR_R_REGISTRATION_DISABLED,
    ENR_R_CREDENTIAL_REVOKED,     /* the certificate presented as credential was revoked */
    ENR_R_KEY_COMPROMISED,        /* the key of a certificate revoked for keyCompromise */
    ENR_R_ENROLLMENT_MISMATCH,    /* the registration is bound to another enrollment */
    ENR_R_TOKEN_TIME,             /* a genuine SAS token expired, or lives longer than allowed */
    ENR_R_AUTH_REFUSED,           /* a service refused our credential (HTTP 401/403, an MQTT CONNACK):
                                   * retrying with the same one cannot help */
    /* Evaluating an AWS provisioning template (include/enroll/aws_template.h):
     * AWS answers a device's missing or bad parameter differently from a
     * template that fails with the values given. */
    ENR_R_PARAMETER_MISSING,      /* a parameter the template reads was neither given nor defaulted */
    ENR_R_PARAMETER_INVALID,      /* a given parameter is not a string, too long, or not a number */
    ENR_R_TEMPLATE_EVALUATION,    /* the template fails with these values (index out of range, ...) */
    /* AWS fleet provisioning in the store (store.h, "AWS IoT fleet
     * provisioning"): the front end maps each to AWS's error document. */
    ENR_R_TOKEN_UNKNOWN,          /* no ownership token with this value was ever issued */
    ENR_R_TOKEN_USED,             /* the ownership token activated its certificate already (single use) */
    ENR_R_TOKEN_EXPIRED,          /* the ownership token is older than ENR_AWS_TOKEN_LIFETIME */
    ENR_R_TOKEN_WRONG_CONNECTION, /* the token was issued to a connection with another client certificate */
    ENR_R_TOKEN_TEMPLATE_MISMATCH,/* the token was issued under another provisioning template */
    ENR_R_THING_OWNED,            /* the thing has an active certificate of another device */
    ENR_R_THING_MISMATCH,         /* a provisioned device may register only its own thing */
    ENR_R_THING_DISABLED,         /* an operator disabled the thing */
    ENR_R_TEMPLATE_DISABLED,      /* an operator disabled the provisioning template */
    ENR_R_CA_UNVERIFIED,          /* a claim CA that is not a proven bootstrap CA */
    ENR_R_SERVER_KEYGEN_NOT_ALLOWED,/* CreateKeysAndCertificate under a template that does not allow it */
    /* A template's pre-provisioning hook (include/enroll/aws_hook.h): any of
     * them refuses RegisterThing; the front end tells them apart for its
     * logs and metrics, never by the message. */
    ENR_R_HOOK_DENIED,            /* the hook answered allowProvisioning false */
    ENR_R_HOOK_TIMEOUT,           /* no complete answer before the hook's deadline */
    ENR_R_HOOK_FAILED             /* no usable answer: connection or TLS failure, non-2xx, malformed */
} enr_reason;

#define ENR_ERROR_MESSAGE_MAX 512

typedef struct enr_error {
    enr_code code;
    enr_reason reason; /* set with ENR_E_POLICY by enr_error_refuse; else ENR_R_NONE */
    char message[ENR_ERROR_MESSAGE_MAX];
} enr_error;

/* Every setter accepts err == NULL and returns `code`, so a failing call can
 * be written as `return enr_error_set(err, ENR_E_PARSE, "...")`. Setters
 * other than enr_error_refuse clear the reason. */
enr_code enr_error_set(enr_error *err, enr_code code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* A refusal by a rule: ENR_E_POLICY with its reason. */
enr_code enr_error_refuse(enr_error *err, enr_reason reason, const char *fmt, ...)
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
