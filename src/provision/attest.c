/* Attestation: who the peer is (a SAS token or a TLS client certificate),
 * and which enrollment decides about it. No transport here: the front end
 * says what the peer presented (enr_peer_credential). */
#include <openssl/crypto.h>
#include <openssl/x509.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "enroll/cert.h"
#include "enroll/dps.h"
#include "enroll/est.h"
#include "enroll/name.h"
#include "enroll/provision.h"
#include "enroll/sas.h"
#include "enroll/store.h"

typedef struct attest_env {
    enr_store *store;
    const enr_attest_options *o;
    time_t now;
} attest_env;

/* ---- attestation ---- */


/* One enrollment's keys against the token: ENR_DPS_OK, ENR_DPS_AUTH_FAILED,
 * or ENR_DPS_TOKEN_EXPIRED for a genuine token outside its time window
 * (expired, or living longer than the configured maximum). */
static enr_dps_error sas_check(const attest_env *r, const enr_sas_token *token, const char *registration_id,
                               const char *const *keys, char *message, size_t cap)
{
    enr_error err;
    enr_code rc = enr_sas_token_verify_with(r->o->mac, token, r->o->id_scope, registration_id, (const char *const *)keys, 2,
                                       r->now, r->o->sas_skew > 0 ? r->o->sas_skew : ENR_PROVISION_SAS_SKEW_DEFAULT, r->o->sas_max_lifetime, NULL, &err);
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
static enr_dps_error sas_check_group(const attest_env *r, const enr_sas_token *token, const char *registration_id,
                                     const enr_enrollment *group, char *message, size_t cap)
{
    enr_error err;
    char *device_keys[2] = {NULL, NULL};
    enr_dps_error e = ENR_DPS_AUTH_FAILED;
    snprintf(message, cap, "the SAS token does not verify for registration %s", registration_id);
    if (enr_sas_derive_device_key_with(r->o->mac, group->primary_key, registration_id, &device_keys[0], &err) == ENR_OK &&
        (group->secondary_key[0] == '\0' ||
         enr_sas_derive_device_key_with(r->o->mac, group->secondary_key, registration_id, &device_keys[1], &err) ==
             ENR_OK)) {
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

static decider who_decides(const attest_env *r, const char *registration_id, enr_attested *who, enr_enrollment *out)
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

static enr_dps_error attest_sas(const attest_env *r, const char *sas_token, const char *registration_id,
                                enr_attested *out, char *message, size_t cap)
{
    enr_error err;
    enr_sas_token *token = NULL;
    if (sas_token == NULL) {
        /* The front end names where a token goes on its transport. */
        snprintf(message, cap, "no credential: send a SAS token, or a TLS client certificate for X.509 "
                                "attestation");
        return ENR_DPS_AUTH_FAILED;
    }
    if (enr_sas_token_parse(sas_token, &token, &err) != ENR_OK) {
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
        out->token_expiry = enr_sas_token_expiry(token);
    } else
        enr_enrollment_free(&decider_enrollment);
    enr_sas_token_free(token);
    return result;
}

/* EST's HTTP Basic: the password's SHA-256 against the secret hash of
 * who decides (as for SAS: the id's individual enrollment, else the group
 * it registered through, else any group). The user is the registration
 * id, checked by the caller. A group's secret is one for all its devices
 * (unlike its SAS keys, derived per device): it registers a new id, and
 * for an existing one only repeats (enr_attested.repeat_only). */
static bool basic_matches(const enr_enrollment *e, const char *hash)
{
    return e->basic_secret_sha256[0] != '\0' &&
           CRYPTO_memcmp(e->basic_secret_sha256, hash, ENR_STORE_SHA256_HEX) == 0;
}

static enr_dps_error attest_basic(const attest_env *r, const char *password, const char *registration_id,
                                  enr_attested *out, char *message, size_t cap)
{
    enr_error err;
    char hash[ENR_STORE_SHA256_HEX + 1];
    enr_est_secret_hash(password, strlen(password), hash);
    enr_enrollment decider_enrollment = {0};
    enr_dps_error result = ENR_DPS_AUTH_FAILED;
    snprintf(message, cap, "the Basic credentials do not verify for registration %s", registration_id);
    switch (who_decides(r, registration_id, out, &decider_enrollment)) {
    case DECIDER_STORE_DOWN:
        result = store_down(message, cap);
        break;
    case DECIDER_INDIVIDUAL:
        if (!decider_enrollment.enabled)
            result = individual_disabled(&decider_enrollment, message, cap);
        else if (basic_matches(&decider_enrollment, hash))
            result = ENR_DPS_OK;
        break;
    case DECIDER_BOUND_GROUP:
        if (basic_matches(&decider_enrollment, hash)) {
            result = ENR_DPS_OK;
            out->repeat_only = true;
        }
        break;
    case DECIDER_ANY_GROUP: {
        enr_enrollment_list groups = {0};
        if (enr_store_list_enrollments(r->store, ENR_ENROLLMENT_GROUP, &groups, &err) != ENR_OK) {
            result = store_down(message, cap);
            break;
        }
        for (size_t i = 0; i < groups.count && result != ENR_DPS_OK; i++) {
            if (basic_matches(&groups.items[i], hash)) {
                decider_enrollment = groups.items[i];
                memset(&groups.items[i], 0, sizeof groups.items[i]); /* moved out of the list */
                result = ENR_DPS_OK;
            }
        }
        enr_enrollment_list_free(&groups);
        break;
    }
    }
    OPENSSL_cleanse(hash, sizeof hash);
    if (result == ENR_DPS_OK) {
        out->enrollment = decider_enrollment;
        out->found = true;
    } else
        enr_enrollment_free(&decider_enrollment);
    return result;
}

/* X.509 attestation: the TLS client certificate names the device (CN =
 * registration id) and must be an individual enrollment's certificate, or
 * chain to a CA attached to an X.509 enrollment group. */
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
static enr_dps_error attest_operational(const attest_env *r, X509 *cert, const char *registration_id,
                                        enr_attested *out, char *message, size_t cap)
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
    time_t now = r->now;
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
static enr_dps_error attest_x509(const attest_env *r, X509 *cert, STACK_OF(X509) *chain, const char *registration_id,
                                 enr_attested *out, char *message, size_t cap)
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
            enr_cert_chains_to_any(cert, chain, decider_enrollment.certificates, decider_enrollment.certificate_count)) {
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
        if (g->attestation == ENR_ATTEST_X509 && enr_cert_chains_to_any(cert, chain, g->certificates, g->certificate_count)) {
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

enr_dps_error enr_attest(enr_store *store, const enr_attest_options *opts, const enr_peer_credential *peer,
                         const char *registration_id, enr_attested *out, char *message, size_t cap)
{
    memset(out, 0, sizeof *out);
    attest_env env = {store, opts, opts->now != 0 ? opts->now : time(NULL)};
    /* A token wins when both came: a SAS device may sit behind a TLS
     * client certificate it does not own (a gateway's). */
    if (peer->sas_token == NULL && peer->basic_password != NULL)
        return attest_basic(&env, peer->basic_password, registration_id, out, message, cap);
    if (peer->sas_token == NULL && peer->certificate != NULL)
        return attest_x509(&env, peer->certificate, peer->chain, registration_id, out, message, cap);
    return attest_sas(&env, peer->sas_token, registration_id, out, message, cap);
}

enr_dps_error enr_attested_allows(const enr_attested *a, const char *registration_id, char *message,
                                     size_t cap)
{
    if (!a->enrollment.enabled) {
        snprintf(message, cap, "enrollment %s is disabled", a->enrollment.id);
        return ENR_DPS_ENROLLMENT_DISABLED;
    }
    if (a->registered && strcmp(a->registration.status, "disabled") == 0) {
        snprintf(message, cap, "registration %s is disabled", registration_id);
        return ENR_DPS_REGISTRATION_DISABLED;
    }
    return ENR_DPS_OK;
}

void enr_attested_free(enr_attested *a)
{
    if (a == NULL)
        return;
    if (a->found)
        enr_enrollment_free(&a->enrollment);
    a->found = false;
}
