#include "service/registration.h"

#include <openssl/x509.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "enroll/ca.h"
#include "enroll/cert.h"
#include "enroll/name.h"
#include "enroll/csr.h"
#include "enroll/dps.h"
#include "enroll/duration.h"
#include "enroll/lint.h"
#include "enroll/pubkey.h"
#include "enroll/sas.h"
#include "enroll/service.h"
#include "enroll/store.h"

#define CA_CACHE_MAX 16
#define ISSUERS_MAX 7
#define SAS_SKEW_SECONDS 300

struct registrar {
    enr_store *store;
    char id_scope[65];
    struct cached_ca {
        char name[ENR_STORE_ID_MAX + 1];
        enr_ca *ca;
        /* Its chain up to the root, encoded once: every answer carries it. */
        enr_dps_der issuers[ISSUERS_MAX];
        size_t issuer_count;
    } cas[CA_CACHE_MAX];
    size_t ca_count;
    registrar_in_flight_fn in_flight;
    void *in_flight_arg;
    long sas_max_lifetime; /* seconds a SAS token may live beyond now */
    registrar_refusal_fn refusal_sink;
    void *refusal_arg;
};

static void cached_ca_clear(struct cached_ca *entry)
{
    enr_ca_free(entry->ca);
    for (size_t i = 0; i < entry->issuer_count; i++)
        OPENSSL_free((void *)entry->issuers[i].der);
    memset(entry, 0, sizeof *entry);
}

enr_code registrar_new(const char *data_dir, const char *id_scope, registrar **out, enr_error *err)
{
    *out = NULL;
    if (id_scope == NULL || id_scope[0] == '\0' || strlen(id_scope) > 64)
        return enr_error_set(err, ENR_E_USAGE, "config: \"id_scope\" (1-64 characters) is required for the registration API");
    registrar *r = calloc(1, sizeof *r);
    if (r == NULL)
        return enr_error_set(err, ENR_E_NOMEM, "out of memory");
    snprintf(r->id_scope, sizeof r->id_scope, "%s", id_scope);
    r->sas_max_lifetime = ENR_SERVICE_SAS_MAX_LIFETIME_DEFAULT;
    enr_code rc = enr_store_open_sqlite(data_dir, &r->store, err);
    if (rc != ENR_OK) {
        free(r);
        return rc;
    }
    *out = r;
    return ENR_OK;
}

void registrar_free(registrar *r)
{
    if (r == NULL)
        return;
    for (size_t i = 0; i < r->ca_count; i++)
        cached_ca_clear(&r->cas[i]);
    enr_store_close(r->store);
    free(r);
}

void registrar_set_sas_max_lifetime(registrar *r, long seconds)
{
    r->sas_max_lifetime = seconds;
}

void registrar_set_in_flight(registrar *r, registrar_in_flight_fn fn, void *arg)
{
    r->in_flight = fn;
    r->in_flight_arg = arg;
}

void registrar_set_refusal_sink(registrar *r, registrar_refusal_fn fn, void *arg)
{
    r->refusal_sink = fn;
    r->refusal_arg = arg;
}

void registration_job_free(registration_job *job)
{
    if (job == NULL)
        return;
    enr_certificate_free(&job->certificate);
    free(job->answer);
    free(job);
}

bool registrar_owns_path(const char *path)
{
    const char *slash = path[0] == '/' ? strchr(path + 1, '/') : NULL;
    return slash != NULL && strncmp(slash, "/registrations/", 15) == 0;
}

/* ---- answers ---- */

/* The DPS code of a refusal by a rule, from its typed reason. */
static enr_dps_error dps_error_of_refusal(const enr_error *refusal)
{
    switch (refusal->reason) {
    case ENR_R_KEY_NOT_ALLOWED: return ENR_DPS_CSR_KEY_NOT_ALLOWED;
    case ENR_R_KEY_COMPROMISED: return ENR_DPS_CSR_KEY_COMPROMISED;
    case ENR_R_ENROLLMENT_DISABLED: return ENR_DPS_ENROLLMENT_DISABLED;
    case ENR_R_REGISTRATION_DISABLED: return ENR_DPS_REGISTRATION_DISABLED;
    case ENR_R_CREDENTIAL_REVOKED: return ENR_DPS_CERT_AUTH_FAILED;
    case ENR_R_ENROLLMENT_MISMATCH: return ENR_DPS_AUTH_FAILED;
    case ENR_R_NAME_NOT_ALLOWED:
    case ENR_R_EXTENSION_NOT_ALLOWED:
    case ENR_R_SIGNATURE_ALGORITHM:
    case ENR_R_NONE: return ENR_DPS_CSR_LINT_ERROR;
    case ENR_R_TOKEN_TIME: return ENR_DPS_TOKEN_EXPIRED;
    case ENR_R_CA_EXPIRES: return ENR_DPS_INTERNAL;
    }
    return ENR_DPS_INTERNAL;
}

static void answer_error(registrar *r, registration_answer *out, enr_dps_error e, const char *message,
                         const char *registration_id)
{
    char tracking[ENR_DPS_TRACKING_ID_SIZE] = "";
    enr_error err;
    (void)enr_dps_tracking_id_new(tracking, &err);
    out->status = enr_dps_error_http_status(e);
    out->error_code = enr_dps_error_code(e);
    out->error = e;
    if (enr_dps_write_error(e, message, tracking, time(NULL), &out->body, &err) != ENR_OK)
        out->body = strdup("{\"errorCode\":500001,\"message\":\"internal error\"}");
    /* A rejection writes an audit event and nothing else. */
    enr_audit_event audit = {0};
    snprintf(audit.kind, sizeof audit.kind, "register");
    snprintf(audit.registration_id, sizeof audit.registration_id, "%s", registration_id ? registration_id : "");
    snprintf(audit.outcome, sizeof audit.outcome, "%s", out->status >= 500 ? "error" : "rejected");
    audit.reason_code = enr_dps_error_code(e);
    snprintf(audit.detail, sizeof audit.detail, "%s", message);
    /* Refusals cost a client nothing to repeat: never a transaction and an
     * fsync each on the event loop when a sink gathers them. */
    if (r->refusal_sink != NULL)
        r->refusal_sink(r->refusal_arg, &audit);
    else if (r->store != NULL)
        (void)enr_store_record_audit(r->store, &audit, &err);
}

/* ---- attestation ---- */

typedef struct attested {
    enr_enrollment enrollment;
    bool found;
    /* The registration as attestation read it (registered: it exists). */
    enr_registration registration;
    bool registered;
    /* Renewal with an operational certificate: which one (the commit checks
     * again that it is still unrevoked). */
    char credential_issuer[ENR_STORE_DN_MAX + 1];
    char credential_serial[ENR_STORE_SERIAL_MAX + 1];
} attested;

/* One enrollment's keys against the token: ENR_DPS_OK, ENR_DPS_AUTH_FAILED,
 * or ENR_DPS_TOKEN_EXPIRED for a genuine token outside its time window
 * (expired, or living longer than the configured maximum). */
static enr_dps_error sas_check(const registrar *r, const enr_sas_token *token, const char *registration_id,
                               const char *const *keys, char *message, size_t cap)
{
    enr_error err;
    enr_code rc = enr_sas_token_verify(token, r->id_scope, registration_id, (const char *const *)keys, 2,
                                       time(NULL), SAS_SKEW_SECONDS, r->sas_max_lifetime, NULL, &err);
    if (rc == ENR_OK)
        return ENR_DPS_OK;
    if (rc == ENR_E_POLICY && err.reason == ENR_R_TOKEN_TIME) {
        snprintf(message, cap, "%s", err.message);
        return ENR_DPS_TOKEN_EXPIRED;
    }
    snprintf(message, cap, "the SAS token does not verify for registration %s", registration_id);
    return ENR_DPS_AUTH_FAILED;
}

/* A group's keys are HMAC(group key, registration id). */
static enr_dps_error sas_check_group(const registrar *r, const enr_sas_token *token, const char *registration_id,
                                     const enr_enrollment *group, char *message, size_t cap)
{
    enr_error err;
    char *device_keys[2] = {NULL, NULL};
    enr_dps_error e = ENR_DPS_AUTH_FAILED;
    snprintf(message, cap, "the SAS token does not verify for registration %s", registration_id);
    if (enr_sas_derive_device_key(group->primary_key, registration_id, &device_keys[0], &err) == ENR_OK &&
        (group->secondary_key[0] == '\0' ||
         enr_sas_derive_device_key(group->secondary_key, registration_id, &device_keys[1], &err) == ENR_OK)) {
        const char *keys[2] = {device_keys[0], device_keys[1]};
        e = sas_check(r, token, registration_id, keys, message, cap);
    }
    enr_sas_secret_free(device_keys[0]);
    enr_sas_secret_free(device_keys[1]);
    return e;
}

/* Who decides for a registration id, as in DPS: its individual enrollment
 * when there is one (alone: a disabled one refuses whatever credential
 * comes, so an id can be blocked before it ever registered); else the
 * enrollment group it registered through before (a registration stays
 * with its enrollment until an operator moves it); else, for a new
 * registration, any group whose credential matches. */
typedef enum decider { DECIDER_INDIVIDUAL, DECIDER_BOUND_GROUP, DECIDER_ANY_GROUP, DECIDER_STORE_DOWN } decider;

static decider who_decides(registrar *r, const char *registration_id, attested *who, enr_enrollment *out)
{
    enr_error err;
    enr_code rc = enr_store_get_registration(r->store, registration_id, &who->registration, &err);
    if (rc != ENR_OK && rc != ENR_E_NOTFOUND)
        return DECIDER_STORE_DOWN;
    who->registered = rc == ENR_OK;
    rc = enr_store_get_enrollment(r->store, ENR_ENROLLMENT_INDIVIDUAL, registration_id, out, &err);
    if (rc == ENR_OK)
        return DECIDER_INDIVIDUAL;
    if (rc != ENR_E_NOTFOUND)
        return DECIDER_STORE_DOWN;
    if (!who->registered)
        return DECIDER_ANY_GROUP;
    if (who->registration.enrollment_kind != ENR_ENROLLMENT_GROUP) /* its individual enrollment is gone: no one may */
        return DECIDER_BOUND_GROUP;
    rc = enr_store_get_enrollment(r->store, ENR_ENROLLMENT_GROUP, who->registration.enrollment_id, out, &err);
    return rc == ENR_OK || rc == ENR_E_NOTFOUND ? DECIDER_BOUND_GROUP : DECIDER_STORE_DOWN;
}

static enr_dps_error store_down(char *message, size_t cap)
{
    snprintf(message, cap, "the store is unavailable");
    return ENR_DPS_STORE_UNAVAILABLE;
}

static enr_dps_error individual_disabled(const enr_enrollment *e, char *message, size_t cap)
{
    snprintf(message, cap, "the individual enrollment of %s is disabled", e->id);
    return ENR_DPS_ENROLLMENT_DISABLED;
}

static enr_dps_error attest_sas(registrar *r, const char *authorization, const char *registration_id,
                                attested *out, char *message, size_t cap)
{
    enr_error err;
    enr_sas_token *token = NULL;
    if (authorization == NULL) {
        snprintf(message, cap, "no credential: send a SAS token in the Authorization header, or a "
                                "client certificate for X.509 attestation");
        return ENR_DPS_AUTH_FAILED;
    }
    if (enr_sas_token_parse(authorization, &token, &err) != ENR_OK) {
        snprintf(message, cap, "the SAS token is malformed: %s", err.message);
        return ENR_DPS_AUTH_FAILED;
    }
    enr_enrollment decider_enrollment = {0};
    enr_dps_error result = ENR_DPS_AUTH_FAILED;
    snprintf(message, cap, "the SAS token does not verify for registration %s", registration_id);
    switch (who_decides(r, registration_id, out, &decider_enrollment)) {
    case DECIDER_STORE_DOWN:
        result = store_down(message, cap);
        break;
    case DECIDER_INDIVIDUAL:
        if (!decider_enrollment.enabled)
            result = individual_disabled(&decider_enrollment, message, cap);
        else if (decider_enrollment.attestation == ENR_ATTEST_SYMMETRIC) {
            const char *keys[2] = {decider_enrollment.primary_key,
                                   decider_enrollment.secondary_key[0] ? decider_enrollment.secondary_key : NULL};
            result = sas_check(r, token, registration_id, keys, message, cap);
        }
        break;
    case DECIDER_BOUND_GROUP:
        if (decider_enrollment.attestation == ENR_ATTEST_SYMMETRIC)
            result = sas_check_group(r, token, registration_id, &decider_enrollment, message, cap);
        break;
    case DECIDER_ANY_GROUP: {
        enr_enrollment_list groups = {0};
        if (enr_store_list_enrollments(r->store, ENR_ENROLLMENT_GROUP, &groups, &err) != ENR_OK) {
            result = store_down(message, cap);
            break;
        }
        for (size_t i = 0; i < groups.count && result != ENR_DPS_OK; i++) {
            enr_enrollment *g = &groups.items[i];
            if (g->attestation != ENR_ATTEST_SYMMETRIC)
                continue;
            enr_dps_error e = sas_check_group(r, token, registration_id, g, message, cap);
            if (e == ENR_DPS_OK) {
                decider_enrollment = *g;
                memset(g, 0, sizeof *g); /* moved out of the list */
            }
            if (e != ENR_DPS_AUTH_FAILED)
                result = e;
            if (e == ENR_DPS_TOKEN_EXPIRED)
                break;
        }
        enr_enrollment_list_free(&groups);
        break;
    }
    }
    if (result == ENR_DPS_OK) {
        out->enrollment = decider_enrollment;
        out->found = true;
    } else
        enr_enrollment_free(&decider_enrollment);
    enr_sas_token_free(token);
    return result;
}

/* X.509 attestation: the TLS client certificate names the device (CN =
 * registration id) and must be an individual enrollment's certificate, or
 * chain to a CA attached to an X.509 enrollment group. */
static bool chains_to(X509 *leaf, STACK_OF(X509) *sent_chain, const enr_buf *cas, size_t ca_count)
{
    STACK_OF(X509) *roots = sk_X509_new_null();
    for (size_t i = 0; roots && i < ca_count; i++) {
        const unsigned char *p = cas[i].data;
        X509 *ca = d2i_X509(NULL, &p, (long)cas[i].len);
        if (ca != NULL && !sk_X509_push(roots, ca))
            X509_free(ca);
    }
    enr_verify_options opts = {.roots = roots, .untrusted = sent_chain, .purpose = ENR_PURPOSE_CLIENT,
                               .roots_may_be_intermediates = true};
    enr_verify_result result;
    enr_error err;
    bool ok = roots != NULL && sk_X509_num(roots) > 0 && enr_cert_verify(leaf, &opts, &result, &err) == ENR_OK;
    sk_X509_pop_free(roots, X509_free);
    return ok;
}

static bool same_certificate(X509 *cert, const enr_buf *der)
{
    unsigned char *mine = NULL;
    int n = i2d_X509(cert, &mine);
    bool same = n > 0 && (size_t)n == der->len && memcmp(mine, der->data, der->len) == 0;
    OPENSSL_free(mine);
    return same;
}

/* Renewal over mTLS: the device shows the operational certificate enrolld
 * issued to it. The store holds that exact certificate (so no chain walk is
 * needed: the bytes are ours, and the TLS handshake proved the key); it must
 * belong to this registration, be unrevoked and inside its validity, and
 * the enrollment it came through is the one that decides again.
 * ENR_DPS_UNKNOWN_ENROLLMENT: not a certificate of ours, try the others. */
static enr_dps_error attest_operational(registrar *r, X509 *cert, const char *registration_id,
                                        attested *out, char *message, size_t cap)
{
    enr_error err;
    /* Issuer and serial in the store's own forms, and the DER to compare. */
    enr_certificate presented = {0}, known = {0};
    enr_code found = enr_certificate_from_x509(cert, &presented, &err);
    if (found == ENR_OK)
        found = enr_store_get_certificate(r->store, presented.issuer, presented.serial, &known, &err);
    else
        found = ENR_E_NOTFOUND; /* not in a form the store could hold: not ours */
    if (found != ENR_OK) {
        enr_certificate_free(&presented);
        return found == ENR_E_NOTFOUND ? ENR_DPS_UNKNOWN_ENROLLMENT : ENR_DPS_STORE_UNAVAILABLE;
    }
    enr_dps_error result = ENR_DPS_CERT_AUTH_FAILED;
    time_t now = time(NULL);
    enr_registration reg = {0};
    if (presented.der.len != known.der.len || memcmp(presented.der.data, known.der.data, known.der.len) != 0)
        snprintf(message, cap, "the client certificate is not the one enrolld issued with its serial");
    else if (!enr_dps_registration_id_equal(known.registration_id, registration_id))
        snprintf(message, cap, "the client certificate was issued to another registration");
    else if (known.revoked)
        snprintf(message, cap, "the client certificate is revoked");
    else if (now < known.not_before || now > known.not_after)
        snprintf(message, cap, "the client certificate is outside its validity; register with the "
                                "bootstrap credential instead");
    else if (enr_store_get_registration(r->store, registration_id, &reg, &err) != ENR_OK)
        snprintf(message, cap, "the registration of this certificate is gone");
    else if (enr_store_get_enrollment(r->store, reg.enrollment_kind, reg.enrollment_id, &out->enrollment,
                                      &err) != ENR_OK)
        snprintf(message, cap, "the enrollment this device registered through is gone");
    else {
        out->found = true;
        snprintf(out->credential_issuer, sizeof out->credential_issuer, "%s", known.issuer);
        snprintf(out->credential_serial, sizeof out->credential_serial, "%s", known.serial);
        result = ENR_DPS_OK;
    }
    enr_certificate_free(&presented);
    enr_certificate_free(&known);
    return result;
}

static bool currently_valid(X509 *cert)
{
    return X509_cmp_current_time(X509_get0_notAfter(cert)) > 0 && X509_cmp_current_time(X509_get0_notBefore(cert)) < 0;
}

/* Renewal through an operational certificate is the registration's own
 * enrollment deciding again; any other certificate must chain to (or, for
 * an individual enrollment, be) the deciding enrollment's. */
static enr_dps_error attest_x509(registrar *r, X509 *cert, STACK_OF(X509) *chain, const char *registration_id,
                                 attested *out, char *message, size_t cap)
{
    char *cn = enr_name_common_name(X509_get_subject_name(cert));
    bool named = cn != NULL && enr_dps_registration_id_equal(cn, registration_id);
    free(cn);
    if (!named) {
        snprintf(message, cap, "the client certificate's CN is not the registration id %s", registration_id);
        return ENR_DPS_CERT_AUTH_FAILED;
    }
    enr_enrollment decider_enrollment = {0};
    decider d = who_decides(r, registration_id, out, &decider_enrollment);
    enr_dps_error result = ENR_DPS_CERT_AUTH_FAILED;
    if (d == DECIDER_STORE_DOWN) {
        result = store_down(message, cap);
        goto done;
    }
    if (d == DECIDER_INDIVIDUAL && !decider_enrollment.enabled) {
        result = individual_disabled(&decider_enrollment, message, cap);
        goto done;
    }
    if (d == DECIDER_INDIVIDUAL && decider_enrollment.attestation == ENR_ATTEST_X509) {
        bool match = false;
        for (size_t i = 0; i < decider_enrollment.certificate_count; i++)
            match = match || same_certificate(cert, &decider_enrollment.certificates[i]);
        if (match && currently_valid(cert)) {
            out->enrollment = decider_enrollment;
            out->found = true;
            return ENR_DPS_OK;
        }
    }
    /* attest_operational finds the registration's enrollment itself, which
     * is the deciding one (an individual enrollment takes its id over at
     * its first registration; until then the group's certificate renews). */
    result = attest_operational(r, cert, registration_id, out, message, cap);
    if (result == ENR_DPS_OK && d == DECIDER_INDIVIDUAL &&
        (out->enrollment.kind != ENR_ENROLLMENT_INDIVIDUAL)) {
        enr_enrollment_free(&out->enrollment);
        out->found = false;
        snprintf(message, cap, "registration %s has an individual enrollment now: register with its credential",
                 registration_id);
        result = ENR_DPS_CERT_AUTH_FAILED;
    }
    if (result != ENR_DPS_UNKNOWN_ENROLLMENT)
        goto done;
    result = ENR_DPS_CERT_AUTH_FAILED;
    if (d == DECIDER_INDIVIDUAL) {
        snprintf(message, cap, "the client certificate is not the one of registration %s's individual enrollment",
                 registration_id);
        goto done;
    }
    if (d == DECIDER_BOUND_GROUP) {
        if (decider_enrollment.attestation == ENR_ATTEST_X509 &&
            chains_to(cert, chain, decider_enrollment.certificates, decider_enrollment.certificate_count)) {
            out->enrollment = decider_enrollment;
            out->found = true;
            return ENR_DPS_OK;
        }
        snprintf(message, cap, "the client certificate does not chain to a CA of registration %s's enrollment",
                 registration_id);
        goto done;
    }
    enr_error err;
    enr_enrollment_list groups = {0};
    if (enr_store_list_enrollments(r->store, ENR_ENROLLMENT_GROUP, &groups, &err) != ENR_OK) {
        result = store_down(message, cap);
        goto done;
    }
    for (size_t i = 0; i < groups.count && !out->found; i++) {
        enr_enrollment *g = &groups.items[i];
        if (g->attestation == ENR_ATTEST_X509 && chains_to(cert, chain, g->certificates, g->certificate_count)) {
            out->enrollment = *g;
            memset(g, 0, sizeof *g);
            out->found = true;
            result = ENR_DPS_OK;
        }
    }
    enr_enrollment_list_free(&groups);
    if (!out->found)
        snprintf(message, cap, "the client certificate does not chain to a CA of any X.509 enrollment");
done:
    enr_enrollment_free(&decider_enrollment);
    return result;
}

static enr_dps_error attest(registrar *r, const registration_request *req, const char *registration_id,
                            attested *out, char *message, size_t cap)
{
    if (req->authorization == NULL && req->client_cert != NULL)
        return attest_x509(r, req->client_cert, req->client_chain, registration_id, out, message, cap);
    return attest_sas(r, req->authorization, registration_id, out, message, cap);
}

/* ---- issuing ---- */

static const struct cached_ca *issuing_ca(registrar *r, const char *name, enr_error *err)
{
    for (size_t i = 0; i < r->ca_count; i++)
        if (strcmp(r->cas[i].name, name) == 0)
            return &r->cas[i];
    enr_ca_record rec = {0};
    if (enr_store_get_ca(r->store, name, &rec, err) != ENR_OK)
        return NULL;
    enr_ca *ca = NULL;
    enr_code rc = rec.role == ENR_CA_ISSUING ? enr_ca_open(rec.key_ref, NULL, NULL, &ca, err)
                                              : enr_error_set(err, ENR_E_POLICY, "CA %s is not an issuing CA", name);
    /* A directory added before it kept a note of its store learns it now
     * (best effort: enrolld may not write there), so `enroll ca` commands
     * given the directory see what enrolld issues. */
    enr_error note_err;
    const char *location = enr_store_location(r->store);
    if (rc == ENR_OK && location != NULL && enr_ca_attach(rec.key_ref, location, name, &note_err) == ENR_E_EXISTS)
        fprintf(stderr, "{\"event\":\"ca_attached_elsewhere\",\"ca\":\"%s\",\"message\":\"%s\"}\n", name,
                note_err.message);
    enr_ca_record_free(&rec);
    if (rc != ENR_OK)
        return NULL;
    if (r->ca_count == CA_CACHE_MAX) {
        cached_ca_clear(&r->cas[0]);
        memmove(&r->cas[0], &r->cas[1], sizeof r->cas[0] * (CA_CACHE_MAX - 1));
        memset(&r->cas[CA_CACHE_MAX - 1], 0, sizeof r->cas[0]);
        r->ca_count--;
    }
    struct cached_ca *entry = &r->cas[r->ca_count];
    snprintf(entry->name, sizeof entry->name, "%s", name);
    entry->ca = ca;
    STACK_OF(X509) *issuers = enr_ca_chain(ca);
    for (int i = 0; i < sk_X509_num(issuers) && entry->issuer_count < ISSUERS_MAX; i++) {
        unsigned char *der = NULL;
        int n = i2d_X509(sk_X509_value(issuers, i), &der);
        if (n <= 0) {
            cached_ca_clear(entry);
            enr_error_set(err, ENR_E_CRYPTO, "cannot encode the chain of CA %s", name);
            return NULL;
        }
        entry->issuers[entry->issuer_count++] = (enr_dps_der){der, (size_t)n};
    }
    r->ca_count++;
    return entry;
}

typedef struct commit_context {
    registrar *r;
    enr_ca *ca;                     /* NULL: a classic registration */
    const struct cached_ca *issuer; /* ca with its encoded chain */
    const enr_enrollment *enrollment;
    const attested *who;            /* the credential, re-checked at commit */
    const char *registration_id;    /* as the device sent it */
    const char *policy;
    const char *renewal_window;     /* the policy's, or NULL */
    char operation_id[ENR_DPS_TRACKING_ID_SIZE];
    char *answer;                   /* the final body, also the operation's result */
    registration_job *job;          /* the commit, handed to the server */
} commit_context;

/* What enr_ca_issue's recorder does before it returns a certificate (and a
 * classic registration does without one): writes the answer (it is also
 * the operation's stored result) and packs it with the registration,
 * certificate, operation and audit event into the job the group committer
 * commits in one transaction. Nothing reaches the device before that. */
static enr_code prepare_commit(commit_context *c, X509 *cert, enr_error *err)
{
    time_t now = time(NULL);
    enr_dps_der chain[1 + ISSUERS_MAX];
    size_t chain_len = 0;
    enr_code rc = ENR_OK;
    enr_certificate rec = {0};
    if (cert != NULL && (rc = enr_certificate_from_x509(cert, &rec, err)) == ENR_OK) {
        /* The store's copy of the leaf is the chain's first element: one encoding. */
        chain[chain_len++] = (enr_dps_der){rec.der.data, rec.der.len};
        for (size_t i = 0; i < c->issuer->issuer_count; i++)
            chain[chain_len++] = c->issuer->issuers[i];
    }
    time_t renew_after = 0;
    enr_duration window;
    if (cert != NULL && c->renewal_window != NULL && enr_duration_parse(c->renewal_window, &window, err) == ENR_OK) {
        time_t not_after = enr_asn1_time_to_time_t(X509_get0_notAfter(cert));
        if (not_after > 0)
            renew_after = enr_duration_apply(not_after, &window, -1);
    }
    char etag[ENR_STORE_ETAG_MAX + 1] = "";
    (void)enr_store_make_etag(etag, err);
    const char *hub = c->enrollment->assigned_hub[0] ? c->enrollment->assigned_hub : NULL;
    /* No payload: in DPS registrationState.payload is what a custom
     * allocation policy returns, never the device's own payload echoed (that
     * would also store it in every operation). */
    enr_dps_assignment a = {
        .operation_id = c->operation_id, .registration_id = c->registration_id, .created_at = now,
        .updated_at = now, .assigned_hub = hub, .device_id = hub ? c->registration_id : NULL,
        .substatus = ENR_DPS_SUBSTATUS_INITIAL_ASSIGNMENT, .etag = etag,
        .chain = chain_len ? chain : NULL, .chain_len = chain_len,
        .renewal_window = renew_after != 0 ? c->renewal_window : NULL, .renew_after = renew_after,
    };
    free(c->answer);
    c->answer = NULL;
    if (rc == ENR_OK)
        rc = enr_dps_write_assigned(&a, &c->answer, err);

    enr_registration reg = {0};
    snprintf(reg.registration_id, sizeof reg.registration_id, "%s", c->registration_id);
    reg.enrollment_kind = c->enrollment->kind;
    snprintf(reg.enrollment_id, sizeof reg.enrollment_id, "%s", c->enrollment->id);
    snprintf(reg.status, sizeof reg.status, "assigned");
    snprintf(reg.substatus, sizeof reg.substatus, "initialAssignment");
    snprintf(reg.device_id, sizeof reg.device_id, "%s", c->registration_id);
    snprintf(reg.assigned_hub, sizeof reg.assigned_hub, "%s", c->enrollment->assigned_hub);
    snprintf(reg.etag, sizeof reg.etag, "%s", etag);
    if (rc == ENR_OK && cert != NULL) {
        snprintf(rec.registration_id, sizeof rec.registration_id, "%s", c->registration_id);
        snprintf(rec.policy, sizeof rec.policy, "%s", c->policy ? c->policy : "");
    }
    enr_operation op = {0};
    snprintf(op.operation_id, sizeof op.operation_id, "%s", c->operation_id);
    snprintf(op.status, sizeof op.status, "assigned");
    op.result_json = c->answer;
    enr_audit_event audit = {0};
    snprintf(audit.kind, sizeof audit.kind, "register");
    snprintf(audit.registration_id, sizeof audit.registration_id, "%s", c->registration_id);
    snprintf(audit.outcome, sizeof audit.outcome, "ok");
    snprintf(audit.detail, sizeof audit.detail, "%s", cert ? "certificate issued" : "assigned without a certificate");
    if (rc != ENR_OK) {
        enr_certificate_free(&rec);
        return rc;
    }
    /* Group commit: the job carries everything; the server answers only
     * after the committer has it in the store. */
    registration_job *job = calloc(1, sizeof *job);
    if (job == NULL) {
        enr_certificate_free(&rec);
        return enr_error_set(err, ENR_E_NOMEM, "out of memory");
    }
    job->registration = reg;
    job->certificate = rec; /* takes the DER */
    job->operation = op;
    job->operation.result_json = job->answer = c->answer;
    c->answer = NULL;
    job->audit = audit;
    job->issued = cert != NULL;
    snprintf(job->registration_id, sizeof job->registration_id, "%s", c->registration_id);
    snprintf(job->credential_issuer, sizeof job->credential_issuer, "%s", c->who->credential_issuer);
    snprintf(job->credential_serial, sizeof job->credential_serial, "%s", c->who->credential_serial);
    job->item = (enr_registration_commit){
        .registration = &job->registration, .certificate = cert ? &job->certificate : NULL,
        .operation = &job->operation, .audit = &job->audit,
        .credential_issuer = job->credential_serial[0] ? job->credential_issuer : NULL,
        .credential_serial = job->credential_serial[0] ? job->credential_serial : NULL,
        .require_enrollment_enabled = true, .result = ENR_E_INTERNAL};
    registration_job_free(c->job);
    c->job = job;
    return ENR_OK;
}

static enr_code record_issued(void *ctx, X509 *cert, const char *profile, enr_error *err)
{
    (void)profile;
    return prepare_commit(ctx, cert, err);
}

/* Lint errors reject the request; the DPS rule (CN = registration id) has its own code. */
static enr_dps_error lint_gate(const enr_csr *csr, const char *registration_id, char *message, size_t cap)
{
    enr_lint_options opts = {registration_id};
    enr_lint_report *report = NULL;
    enr_error err;
    if (enr_lint_csr_parsed(csr, &opts, &report, &err) != ENR_OK) {
        snprintf(message, cap, "the CSR could not be linted: %s", err.message);
        return ENR_DPS_CSR_NOT_DECODABLE;
    }
    enr_dps_error result = ENR_DPS_OK;
    /* A failed proof of possession outranks every other finding. */
    if (enr_lint_report_has(report, "csr.signature.invalid")) {
        snprintf(message, cap, "the CSR's signature does not verify (proof of possession)");
        result = ENR_DPS_CSR_SIGNATURE_INVALID;
    }
    for (size_t i = 0; i < enr_lint_report_count(report) && result == ENR_DPS_OK; i++) {
        const enr_finding *f = enr_lint_report_get(report, i);
        if (f->severity != ENR_SEVERITY_ERROR)
            continue;
        snprintf(message, cap, "%s [%s]", f->message, f->id);
        result = strcmp(f->id, "csr.subject.cn_mismatch") == 0 ? ENR_DPS_CSR_CN_MISMATCH
                 : strcmp(f->id, "csr.signature.invalid") == 0  ? ENR_DPS_CSR_SIGNATURE_INVALID
                 : strncmp(f->id, "csr.key.", 8) == 0          ? ENR_DPS_CSR_KEY_NOT_ALLOWED
                                                                : ENR_DPS_CSR_LINT_ERROR;
    }
    enr_lint_report_free(report);
    return result;
}

/* A key revoked for keyCompromise is never certified again, whoever asks. */
static enr_dps_error key_gate(registrar *r, const enr_csr *csr, char *message, size_t cap)
{
    enr_error err;
    char spki[ENR_STORE_SPKI_HEX + 1];
    bool compromised = false;
    if (enr_spki_sha256_hex(X509_REQ_get_X509_PUBKEY(enr_csr_x509_req(csr)), spki, &err) != ENR_OK) {
        snprintf(message, cap, "the CSR's public key cannot be encoded: %s", err.message);
        return ENR_DPS_CSR_NOT_DECODABLE;
    }
    if (enr_store_key_compromised(r->store, spki, &compromised, &err) != ENR_OK)
        return store_down(message, cap);
    if (compromised) {
        snprintf(message, cap, "the CSR's key belongs to a certificate revoked for keyCompromise: generate a "
                               "new key pair");
        return ENR_DPS_CSR_KEY_COMPROMISED;
    }
    return ENR_DPS_OK;
}

static void handle_register(registrar *r, const registration_request *req, const enr_dps_path *path,
                            registration_answer *out)
{
    char message[600];
    enr_error err;
    const char *rid = path->registration_id;
    attested who = {0};
    enr_dps_register_request *body = NULL;
    enr_csr *csr = NULL;
    enr_profile *profile = NULL;
    commit_context c = {0};
    enr_dps_error e = attest(r, req, rid, &who, message, sizeof message);
    if (e != ENR_DPS_OK)
        goto reject;
    if (!who.enrollment.enabled) {
        e = ENR_DPS_ENROLLMENT_DISABLED;
        snprintf(message, sizeof message, "enrollment %s is disabled", who.enrollment.id);
        goto reject;
    }
    if (who.registered && strcmp(who.registration.status, "disabled") == 0) {
        e = ENR_DPS_REGISTRATION_DISABLED;
        snprintf(message, sizeof message, "registration %s is disabled", rid);
        goto reject;
    }
    if (enr_dps_register_request_parse(req->body ? req->body : "", req->body_len, rid, &body, &e, &err) != ENR_OK) {
        snprintf(message, sizeof message, "%s", err.message);
        goto reject;
    }
    c.r = r;
    c.enrollment = &who.enrollment;
    c.who = &who;
    c.registration_id = rid;
    c.policy = who.enrollment.policy[0] ? who.enrollment.policy : NULL;
    if (enr_dps_tracking_id_new(c.operation_id, &err) != ENR_OK) {
        e = ENR_DPS_INTERNAL;
        snprintf(message, sizeof message, "no randomness for an operation id");
        goto reject;
    }
    const char *csr_b64 = enr_dps_register_request_csr(body);
    if (csr_b64 == NULL || c.policy == NULL) {
        /* Classic DPS registration: assign, issue nothing. */
        if (prepare_commit(&c, NULL, &err) != ENR_OK) {
            e = ENR_DPS_STORE_UNAVAILABLE;
            snprintf(message, sizeof message, "the registration could not be recorded");
            goto reject;
        }
        goto answered;
    }
    if (enr_dps_register_request_decode_csr(body, &csr, &e, &err) != ENR_OK) {
        snprintf(message, sizeof message, "%s", err.message);
        goto reject;
    }
    /* The linter verifies the self-signature; enr_ca_issue's own check of
     * it finds the verdict kept in the request. */
    if ((e = lint_gate(csr, rid, message, sizeof message)) != ENR_DPS_OK)
        goto reject;
    /* Before signing anything; the commit checks again in its transaction. */
    if ((e = key_gate(r, csr, message, sizeof message)) != ENR_DPS_OK)
        goto reject;
    enr_credential_policy policy = {0};
    if (enr_store_get_policy(r->store, c.policy, &policy, &err) != ENR_OK ||
        (c.issuer = issuing_ca(r, policy.ca_name, &err)) == NULL) {
        e = ENR_DPS_INTERNAL;
        snprintf(message, sizeof message, "the credential policy of this enrollment cannot be used");
        fprintf(stderr, "{\"event\":\"policy_error\",\"policy\":\"%s\",\"message\":\"%s\"}\n", c.policy, err.message);
        goto reject;
    }
    if (enr_profile_new("device", &profile, &err) != ENR_OK ||
        enr_profile_set_validity(profile, policy.validity, &err) != ENR_OK ||
        enr_profile_force_cn(profile, rid, &err) != ENR_OK ||
        (policy.key_types[0] && enr_profile_set_key_types(profile, policy.key_types, &err) != ENR_OK)) {
        e = ENR_DPS_INTERNAL;
        snprintf(message, sizeof message, "the credential policy is invalid");
        goto reject;
    }
    c.ca = c.issuer->ca;
    c.renewal_window = policy.renewal_window[0] ? policy.renewal_window : NULL;
    enr_ca_set_recorder(c.ca, record_issued, &c);
    X509 *cert = NULL;
    enr_code rc = enr_ca_issue(c.ca, csr, profile, 0, &cert, &err);
    enr_ca_set_recorder(c.ca, NULL, NULL);
    X509_free(cert);
    if (rc != ENR_OK) {
        e = rc == ENR_E_POLICY   ? dps_error_of_refusal(&err)
            : rc == ENR_E_VERIFY ? ENR_DPS_CSR_SIGNATURE_INVALID
            : rc == ENR_E_IO     ? ENR_DPS_STORE_UNAVAILABLE
                                 : ENR_DPS_INTERNAL;
        snprintf(message, sizeof message, "%s", err.message);
        goto reject;
    }
answered:
    out->pending = c.job;
    c.job = NULL;
    goto done;
reject:
    answer_error(r, out, e, message, rid);
done:
    registration_job_free(c.job); /* a commit prepared for a request that failed after all */
    free(c.answer);
    enr_profile_free(profile);
    enr_csr_free(csr);
    enr_dps_register_request_free(body);
    if (who.found)
        enr_enrollment_free(&who.enrollment);
}

static void handle_operation(registrar *r, const registration_request *req, const enr_dps_path *path,
                             registration_answer *out)
{
    char message[600];
    enr_error err;
    attested who = {0};
    enr_dps_error e = attest(r, req, path->registration_id, &who, message, sizeof message);
    if (who.found)
        enr_enrollment_free(&who.enrollment);
    if (e != ENR_DPS_OK) {
        answer_error(r, out, e, message, path->registration_id);
        return;
    }
    /* The in-flight list first: an entry leaves it only after its COMMIT
     * returned, so when it is not there the store read below sees it. */
    enr_dps_error why = ENR_DPS_OK;
    registrar_operation_state state =
        r->in_flight != NULL ? r->in_flight(r->in_flight_arg, path->operation_id, path->registration_id, &why)
                             : REGISTRAR_OPERATION_UNKNOWN;
    if (state == REGISTRAR_OPERATION_ASSIGNING &&
        enr_dps_write_operation_status_assigning(path->operation_id, path->registration_id, &out->body, &err) ==
            ENR_OK) {
        out->status = 202; /* answered 202 and still being committed: poll again */
        out->retry_after = 1;
        return;
    }
    if (state == REGISTRAR_OPERATION_FAILED) {
        time_t now = time(NULL);
        bool store = why == ENR_DPS_STORE_UNAVAILABLE || why == ENR_DPS_OK;
        enr_dps_failure f = {.operation_id = path->operation_id, .registration_id = path->registration_id,
                             .created_at = now, .updated_at = now, .error = store ? ENR_DPS_STORE_UNAVAILABLE : why,
                             .message = store ? "the registration could not be recorded; register again" : NULL};
        if (enr_dps_write_failed(&f, &out->body, &err) == ENR_OK) {
            out->status = 200;
            return;
        }
    }
    enr_operation op = {0};
    enr_code found = enr_store_get_operation(r->store, path->operation_id, &op, &err);
    if (found != ENR_OK ||
        !enr_dps_registration_id_equal(op.registration_id, path->registration_id) || op.result_json == NULL) {
        enr_operation_free(&op);
        answer_error(r, out, ENR_DPS_UNKNOWN_OPERATION, "no such operation for this registration",
                     path->registration_id);
        return;
    }
    out->status = 200;
    out->body = op.result_json;
    op.result_json = NULL;
    enr_operation_free(&op);
}

void registrar_handle(registrar *r, const registration_request *req, registration_answer *out)
{
    memset(out, 0, sizeof *out);
    out->route = req->is_put ? "register" : "operation";
    enr_dps_path path;
    enr_dps_error e = ENR_DPS_OK;
    enr_error err;
    if (enr_dps_path_parse(req->path, &path, &e, &err) != ENR_OK) {
        answer_error(r, out, e, err.message, NULL);
        return;
    }
    snprintf(out->registration_id, sizeof out->registration_id, "%s", path.registration_id);
    bool put_register = path.kind == ENR_DPS_PATH_REGISTER && req->is_put;
    bool get_operation = path.kind == ENR_DPS_PATH_OPERATION_STATUS && !req->is_put;
    enr_dps_api_generation gen;
    if (!put_register && !get_operation)
        answer_error(r, out, ENR_DPS_METHOD_NOT_ALLOWED, "use PUT for .../register and GET for .../operations/{id}",
                     path.registration_id);
    else if (enr_dps_api_version_check(req->api_version, &gen, &err) != ENR_OK)
        answer_error(r, out, ENR_DPS_API_VERSION_UNSUPPORTED, err.message, path.registration_id);
    else if (strcmp(path.id_scope, r->id_scope) != 0)
        answer_error(r, out, ENR_DPS_UNKNOWN_ID_SCOPE, "unknown idScope", path.registration_id);
    else if (put_register)
        handle_register(r, req, &path, out);
    else
        handle_operation(r, req, &path, out);
}

void registrar_finish(registrar *r, registration_job *job, registration_answer *out)
{
    memset(out, 0, sizeof *out);
    out->route = "register";
    snprintf(out->registration_id, sizeof out->registration_id, "%s", job->registration_id);
    out->commit_ms = job->commit_ms;
    if (job->item.result == ENR_OK) {
        out->status = 200;
        out->issued = job->issued;
        out->body = job->answer;
        job->answer = NULL;
        return;
    }
    if (job->item.result == ENR_E_POLICY) { /* refused meanwhile: the store's re-check says why */
        answer_error(r, out, dps_error_of_refusal(&job->item.error), job->item.error.message, job->registration_id);
        return;
    }
    /* Nothing was stored, so nothing is sent: the device tries again. */
    fprintf(stderr, "{\"event\":\"commit_failed\",\"registration_id\":\"%s\",\"message\":\"%s\"}\n",
            job->registration_id, enr_code_name(job->item.result));
    answer_error(r, out, ENR_DPS_STORE_UNAVAILABLE, "the registration could not be recorded; try again",
                 job->registration_id);
}
