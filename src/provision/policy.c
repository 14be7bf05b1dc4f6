/* Policy: what may be issued for a registration. The CSR's own gates
 * (self-signature, lint, a key blocked for keyCompromise), the enrollment's
 * credential policy as an issuance profile, and the DPS errorCode of a
 * refusal by its typed reason. */
#include <stdio.h>
#include <string.h>

#include <openssl/x509.h>

#include "enroll/ca.h"
#include "enroll/csr.h"
#include "enroll/dps.h"
#include "enroll/lint.h"
#include "enroll/provision.h"
#include "enroll/pubkey.h"
#include "enroll/signer.h"
#include "enroll/store.h"

enr_dps_error enr_provision_error_of_refusal(const enr_error *refusal)
{
    switch (refusal->reason) {
    case ENR_R_KEY_NOT_ALLOWED: return ENR_DPS_CSR_KEY_NOT_ALLOWED;
    case ENR_R_KEY_COMPROMISED: return ENR_DPS_CSR_KEY_COMPROMISED;
    case ENR_R_ENROLLMENT_DISABLED: return ENR_DPS_ENROLLMENT_DISABLED;
    case ENR_R_REGISTRATION_DISABLED: return ENR_DPS_REGISTRATION_DISABLED;
    case ENR_R_CREDENTIAL_REVOKED: return ENR_DPS_CERT_AUTH_FAILED;
    case ENR_R_ENROLLMENT_MISMATCH:
    case ENR_R_AUTH_REFUSED: return ENR_DPS_AUTH_FAILED;
    case ENR_R_NAME_NOT_ALLOWED:
    case ENR_R_EXTENSION_NOT_ALLOWED:
    case ENR_R_SIGNATURE_ALGORITHM:
    case ENR_R_NONE: return ENR_DPS_CSR_LINT_ERROR;
    case ENR_R_TOKEN_TIME: return ENR_DPS_TOKEN_EXPIRED;
    case ENR_R_CA_EXPIRES: return ENR_DPS_INTERNAL;
    /* AWS template reasons: never a refusal of DPS's provisioning core. */
    case ENR_R_PARAMETER_MISSING:
    case ENR_R_PARAMETER_INVALID:
    case ENR_R_TEMPLATE_EVALUATION:
    /* AWS fleet provisioning reasons of the store: the AWS front end's. */
    case ENR_R_TOKEN_UNKNOWN:
    case ENR_R_TOKEN_USED:
    case ENR_R_TOKEN_EXPIRED:
    case ENR_R_TOKEN_WRONG_CONNECTION:
    case ENR_R_TOKEN_TEMPLATE_MISMATCH:
    case ENR_R_THING_OWNED:
    case ENR_R_THING_MISMATCH:
    case ENR_R_THING_DISABLED:
    case ENR_R_TEMPLATE_DISABLED:
    case ENR_R_CA_UNVERIFIED:
    case ENR_R_SERVER_KEYGEN_NOT_ALLOWED:
    /* The AWS pre-provisioning hook's: the AWS front end's too. */
    case ENR_R_HOOK_DENIED:
    case ENR_R_HOOK_TIMEOUT:
    case ENR_R_HOOK_FAILED: return ENR_DPS_INTERNAL;
    }
    return ENR_DPS_INTERNAL;
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
static enr_dps_error key_gate(enr_store *store, const enr_csr *csr, char *message, size_t cap)
{
    enr_error err;
    char spki[ENR_STORE_SPKI_HEX + 1];
    bool compromised = false;
    if (enr_spki_sha256_hex(X509_REQ_get_X509_PUBKEY(enr_csr_x509_req(csr)), spki, &err) != ENR_OK) {
        snprintf(message, cap, "the CSR's public key cannot be encoded: %s", err.message);
        return ENR_DPS_CSR_NOT_DECODABLE;
    }
    if (enr_store_key_compromised(store, spki, &compromised, &err) != ENR_OK)
        {
        snprintf(message, cap, "the store is unavailable");
        return ENR_DPS_STORE_UNAVAILABLE;
    }
    if (compromised) {
        snprintf(message, cap, "the CSR's key belongs to a certificate revoked for keyCompromise: generate a "
                               "new key pair");
        return ENR_DPS_CSR_KEY_COMPROMISED;
    }
    return ENR_DPS_OK;
}

enr_dps_error enr_provision_check_csr(enr_store *store, const enr_csr *csr, const char *registration_id,
                                      char *message, size_t cap)
{
    /* The linter verifies the self-signature; enr_ca_sign's own check of it
     * finds the verdict kept in the request. */
    enr_dps_error e = lint_gate(csr, registration_id, message, cap);
    /* Before signing anything; the commit checks again in its transaction. */
    return e != ENR_DPS_OK ? e : key_gate(store, csr, message, cap);
}

enr_code enr_provision_policy_load(enr_store *store, const char *name, const char *registration_id,
                                   enr_provision_policy *out, enr_error *err)
{
    memset(out, 0, sizeof *out);
    enr_credential_policy policy = {0};
    enr_code rc = enr_store_get_policy(store, name, &policy, err);
    if (rc != ENR_OK)
        return rc;
    snprintf(out->name, sizeof out->name, "%s", policy.name);
    snprintf(out->ca_name, sizeof out->ca_name, "%s", policy.ca_name);
    snprintf(out->renewal_window, sizeof out->renewal_window, "%s", policy.renewal_window);
    snprintf(out->key_types, sizeof out->key_types, "%s", policy.key_types);
    out->allow_server_keygen = policy.allow_server_keygen;
    if ((rc = enr_profile_new("device", &out->profile, err)) != ENR_OK ||
        (rc = enr_profile_set_validity(out->profile, policy.validity, err)) != ENR_OK ||
        (rc = enr_profile_force_cn(out->profile, registration_id, err)) != ENR_OK ||
        (policy.key_types[0] && (rc = enr_profile_set_key_types(out->profile, policy.key_types, err)) != ENR_OK) ||
        (rc = enr_profile_set_urls(out->profile, policy.ocsp_url, policy.crl_url, err)) != ENR_OK) {
        enr_provision_policy_free(out);
        enr_error_prefix(err, "credential policy %s", name);
        return rc == ENR_E_NOMEM ? rc : ENR_E_USAGE;
    }
    return ENR_OK;
}

enr_code enr_provision_server_key(enr_key_type type, const X509_NAME *subject, EVP_PKEY **key_out,
                                  enr_csr **csr_out, enr_error *err)
{
    *key_out = NULL;
    *csr_out = NULL;
    EVP_PKEY *key = NULL;
    enr_code rc = enr_key_generate(type, &key, err);
    X509_REQ *req = rc == ENR_OK ? X509_REQ_new() : NULL;
    if (rc == ENR_OK && (req == NULL || X509_REQ_set_subject_name(req, subject) != 1 ||
                         X509_REQ_set_pubkey(req, key) != 1 ||
                         X509_REQ_sign(req, key, type == ENR_KEY_ED25519 ? NULL : EVP_sha256()) <= 0))
        rc = enr_error_openssl(err, ENR_E_CRYPTO, "cannot make a CSR for the new key");
    unsigned char *der = NULL;
    int len = rc == ENR_OK ? i2d_X509_REQ(req, &der) : 0;
    if (rc == ENR_OK && len <= 0)
        rc = enr_error_openssl(err, ENR_E_CRYPTO, "cannot encode the CSR");
    if (rc == ENR_OK)
        rc = enr_csr_parse(der, (size_t)len, csr_out, err);
    OPENSSL_free(der);
    X509_REQ_free(req);
    if (rc == ENR_OK)
        *key_out = key;
    else
        EVP_PKEY_free(key);
    return rc;
}

void enr_provision_policy_free(enr_provision_policy *p)
{
    if (p == NULL)
        return;
    enr_profile_free(p->profile);
    p->profile = NULL;
}
