/* The errorCodes enrolld answers with. docs/errors.md documents the same
 * table (a unit test keeps them in step). Numbers are part of the protocol:
 * devices and dashboards branch on them, so a number keeps its meaning
 * forever and a new error gets a new number. */
#include "enroll/dps.h"

typedef struct dps_error_entry {
    enr_dps_error error;
    int code;
    int http_status;
    const char *name;
    const char *summary;
} dps_error_entry;

static const dps_error_entry ERRORS[] = {
    {ENR_DPS_OK, 0, 200, "ok", "No error."},
    {ENR_DPS_MALFORMED_BODY, 400001, 400, "malformed_body",
     "The request body is not the JSON object the register call expects."},
    {ENR_DPS_REGISTRATION_ID_MISMATCH, 400002, 400, "registration_id_mismatch",
     "The registrationId in the body differs from the one in the path."},
    {ENR_DPS_REGISTRATION_ID_INVALID, 400003, 400, "registration_id_invalid",
     "The registration id is not 1-128 characters of [A-Za-z0-9._:-] ending in a letter, "
     "digit or '-'."},
    {ENR_DPS_API_VERSION_UNSUPPORTED, 400004, 400, "api_version_unsupported",
     "The api-version query parameter is missing or not one this service speaks."},
    {ENR_DPS_CSR_NOT_DECODABLE, 400005, 400, "csr_not_decodable",
     "The CSR is not a base64 DER PKCS#10 request."},
    {ENR_DPS_CSR_SIGNATURE_INVALID, 400006, 400, "csr_signature_invalid",
     "The CSR's self-signature does not verify."},
    {ENR_DPS_CSR_CN_MISMATCH, 400007, 400, "csr_cn_mismatch",
     "The CSR's subject CN is not the registration id."},
    {ENR_DPS_CSR_KEY_NOT_ALLOWED, 400008, 400, "csr_key_not_allowed",
     "The CSR's key type or size is not allowed by the credential policy."},
    {ENR_DPS_CSR_LINT_ERROR, 400009, 400, "csr_lint_error",
     "The CSR has an error-level lint finding."},
    {ENR_DPS_CSR_FIELDS_DIFFER, 400010, 400, "csr_fields_differ",
     "The body carries both csr and clientCertificateCsr, and they differ."},
    {ENR_DPS_AUTH_FAILED, 401001, 401, "auth_failed",
     "The SAS token is missing, malformed or does not verify."},
    {ENR_DPS_CERT_AUTH_FAILED, 401002, 401, "cert_auth_failed",
     "Invalid certificate: the TLS client certificate does not chain to the enrollment."},
    {ENR_DPS_TOKEN_EXPIRED, 401003, 401, "token_expired",
     "The SAS token has expired (or expires implausibly far in the future)."},
    {ENR_DPS_ENROLLMENT_DISABLED, 403001, 403, "enrollment_disabled",
     "The enrollment is disabled."},
    {ENR_DPS_REGISTRATION_DISABLED, 403002, 403, "registration_disabled",
     "This registration is disabled."},
    {ENR_DPS_UNKNOWN_ID_SCOPE, 404001, 404, "unknown_id_scope",
     "No service instance has this idScope."},
    {ENR_DPS_UNKNOWN_ENROLLMENT, 404002, 404, "unknown_enrollment",
     "No enrollment matches this registration."},
    {ENR_DPS_UNKNOWN_OPERATION, 404003, 404, "unknown_operation",
     "No operation has this id for this registration."},
    {ENR_DPS_UNKNOWN_PATH, 404004, 404, "unknown_path",
     "The path is not a DPS registration endpoint."},
    {ENR_DPS_METHOD_NOT_ALLOWED, 405001, 405, "method_not_allowed",
     "Register takes PUT and operation status takes GET."},
    {ENR_DPS_BODY_TOO_LARGE, 413001, 413, "body_too_large",
     "The request body exceeds the size limit."},
    {ENR_DPS_PAYLOAD_TOO_LARGE, 413002, 413, "payload_too_large",
     "The request's payload exceeds 4 KiB."},
    {ENR_DPS_THROTTLED, 429001, 429, "throttled",
     "Too many requests: retry after the Retry-After interval."},
    {ENR_DPS_INTERNAL, 500001, 500, "internal_error", "An internal error occurred."},
    {ENR_DPS_STORE_UNAVAILABLE, 503001, 503, "store_unavailable",
     "The registration store is unavailable: retry later."},
    {ENR_DPS_CSR_KEY_COMPROMISED, 400011, 400, "csr_key_compromised",
     "The CSR's public key belongs to a certificate revoked for keyCompromise."},
    {ENR_DPS_RENEWAL_SUBJECT_DIFFERS, 400012, 400, "renewal_subject_differs",
     "A renewal's CSR must keep the subject and subjectAltName of the certificate it renews."},
    {ENR_DPS_SERVER_KEYGEN_NOT_ALLOWED, 403003, 403, "server_keygen_not_allowed",
     "The credential policy does not let the service make the device's key."},
    {ENR_DPS_ENROLLMENT_MISMATCH, 403004, 403, "enrollment_mismatch",
     "The registration is not under the enrollment group the request names."},
    {ENR_DPS_NO_CREDENTIAL_POLICY, 403005, 403, "no_credential_policy",
     "The enrollment issues no certificates: it has no credential policy."},
};

_Static_assert(sizeof ERRORS / sizeof ERRORS[0] == ENR_DPS_ERROR_COUNT,
               "one ERRORS entry per enr_dps_error value");

static const dps_error_entry *entry(enr_dps_error e)
{
    if ((unsigned)e >= (unsigned)ENR_DPS_ERROR_COUNT || ERRORS[e].error != e)
        return NULL;
    return &ERRORS[e];
}

int enr_dps_error_code(enr_dps_error e)
{
    const dps_error_entry *x = entry(e);
    return x != NULL ? x->code : 0;
}

int enr_dps_error_http_status(enr_dps_error e)
{
    const dps_error_entry *x = entry(e);
    return x != NULL ? x->http_status : 500;
}

const char *enr_dps_error_name(enr_dps_error e)
{
    const dps_error_entry *x = entry(e);
    return x != NULL ? x->name : "unknown";
}

const char *enr_dps_error_summary(enr_dps_error e)
{
    const dps_error_entry *x = entry(e);
    return x != NULL ? x->summary : "An internal error occurred.";
}

bool enr_dps_error_from_code(int code, enr_dps_error *out)
{
    for (size_t i = 1; i < sizeof ERRORS / sizeof ERRORS[0]; i++) {
        if (ERRORS[i].code == code) {
            *out = ERRORS[i].error;
            return true;
        }
    }
    return false;
}
