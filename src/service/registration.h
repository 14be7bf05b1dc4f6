/* Internal to enrolld: the DPS registration pipeline, one per worker thread
 * (it owns a store connection and the issuing CAs it has opened).
 *   request -> path/api-version/idScope -> attestation (SAS) -> enrollment
 *   -> body -> CSR verify + lint + policy -> issue -> one store commit
 *   (registration, certificate, operation, audit) -> answer.
 * A rejection leaves at its step with one DPS error and writes only an
 * audit event. */
#ifndef ENROLL_SERVICE_REGISTRATION_H
#define ENROLL_SERVICE_REGISTRATION_H

#include <stdbool.h>
#include <stddef.h>

#include <openssl/x509.h>

#include "enroll/error.h"

typedef struct registrar registrar;

typedef struct registration_request {
    const char *path;          /* without the query */
    const char *api_version;   /* the api-version query value, or NULL */
    const char *authorization; /* the Authorization header, or NULL */
    const char *body;
    size_t body_len;
    bool is_put;               /* PUT .../register; otherwise GET .../operations/{id} */
    X509 *client_cert;         /* the TLS client certificate (X.509 attestation), or NULL */
    STACK_OF(X509) *client_chain; /* what the client sent with it, or NULL */
} registration_request;

typedef struct registration_answer {
    int status;                /* HTTP status */
    char *body;                /* JSON, malloc'ed */
    const char *route;         /* for the request log */
    char registration_id[129]; /* for the request log; may be empty */
    int error_code;            /* the DPS errorCode of a rejection; 0 when answered */
    bool issued;               /* a certificate was issued and committed */
    double commit_ms;          /* time in the store commit, when there was one */
} registration_answer;

enr_code registrar_new(const char *data_dir, const char *id_scope, registrar **out, enr_error *err);
void registrar_free(registrar *r);
/* True when `path` is one of the DPS routes (so the caller hands it here). */
bool registrar_owns_path(const char *path);
void registrar_handle(registrar *r, const registration_request *req, registration_answer *out);

#endif
