/* Path validation with OpenSSL's verifier, and a reason a person can act on
 * when it fails: what failed, for which certificate, and what to do. */
#include <openssl/err.h>
#include <openssl/x509_vfy.h>
#include <openssl/x509v3.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cert/cert_internal.h"
#include "enroll/cert.h"
#include "enroll/name.h"

static const char *const REASON_NAMES[] = {
    [ENR_VERIFY_OK] = "ok",
    [ENR_VERIFY_EXPIRED] = "expired",
    [ENR_VERIFY_NOT_YET_VALID] = "not-yet-valid",
    [ENR_VERIFY_UNKNOWN_ISSUER] = "unknown-issuer",
    [ENR_VERIFY_BAD_SIGNATURE] = "bad-signature",
    [ENR_VERIFY_PATHLEN_EXCEEDED] = "pathlen-exceeded",
    [ENR_VERIFY_NOT_A_CA] = "not-a-ca",
    [ENR_VERIFY_REVOKED] = "revoked",
    [ENR_VERIFY_WRONG_USAGE] = "wrong-usage",
    [ENR_VERIFY_CRL_PROBLEM] = "crl-problem",
    [ENR_VERIFY_OTHER] = "other",
};

const char *enr_verify_reason_name(enr_verify_reason reason)
{
    if ((size_t)reason < sizeof REASON_NAMES / sizeof REASON_NAMES[0])
        return REASON_NAMES[reason];
    return "other";
}

static enr_verify_reason reason_for(int openssl_error)
{
    switch (openssl_error) {
    case X509_V_OK:
        return ENR_VERIFY_OK;
    case X509_V_ERR_CERT_HAS_EXPIRED:
        return ENR_VERIFY_EXPIRED;
    case X509_V_ERR_CERT_NOT_YET_VALID:
        return ENR_VERIFY_NOT_YET_VALID;
    case X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT:
    case X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY:
    case X509_V_ERR_UNABLE_TO_VERIFY_LEAF_SIGNATURE:
    case X509_V_ERR_SELF_SIGNED_CERT_IN_CHAIN:
    case X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT:
    case X509_V_ERR_CERT_UNTRUSTED:
        return ENR_VERIFY_UNKNOWN_ISSUER;
    case X509_V_ERR_CERT_SIGNATURE_FAILURE:
    case X509_V_ERR_UNABLE_TO_DECRYPT_CERT_SIGNATURE:
    case X509_V_ERR_UNABLE_TO_DECODE_ISSUER_PUBLIC_KEY:
        return ENR_VERIFY_BAD_SIGNATURE;
    case X509_V_ERR_PATH_LENGTH_EXCEEDED:
    case X509_V_ERR_PROXY_PATH_LENGTH_EXCEEDED:
        return ENR_VERIFY_PATHLEN_EXCEEDED;
    case X509_V_ERR_INVALID_CA:
    case X509_V_ERR_KEYUSAGE_NO_CERTSIGN:
        return ENR_VERIFY_NOT_A_CA;
    case X509_V_ERR_CERT_REVOKED:
        return ENR_VERIFY_REVOKED;
    case X509_V_ERR_INVALID_PURPOSE:
    case X509_V_ERR_KEYUSAGE_NO_DIGITAL_SIGNATURE:
        return ENR_VERIFY_WRONG_USAGE;
    case X509_V_ERR_UNABLE_TO_GET_CRL:
    case X509_V_ERR_UNABLE_TO_GET_CRL_ISSUER:
    case X509_V_ERR_UNABLE_TO_DECRYPT_CRL_SIGNATURE:
    case X509_V_ERR_CRL_SIGNATURE_FAILURE:
    case X509_V_ERR_CRL_NOT_YET_VALID:
    case X509_V_ERR_CRL_HAS_EXPIRED:
    case X509_V_ERR_ERROR_IN_CRL_LAST_UPDATE_FIELD:
    case X509_V_ERR_ERROR_IN_CRL_NEXT_UPDATE_FIELD:
    case X509_V_ERR_KEYUSAGE_NO_CRL_SIGN:
    case X509_V_ERR_UNHANDLED_CRITICAL_CRL_EXTENSION:
    case X509_V_ERR_DIFFERENT_CRL_SCOPE:
    case X509_V_ERR_CRL_PATH_VALIDATION_ERROR:
        return ENR_VERIFY_CRL_PROBLEM;
    default:
        return ENR_VERIFY_OTHER;
    }
}

/* What the message builders need to know about the failure. */
typedef struct failure {
    int error;
    int depth;
    X509 *cert;             /* the certificate at `depth` (may be NULL) */
    const X509_CRL *crl;    /* the CRL being checked, for CRL errors (may be NULL) */
    const char *subject;    /* of `cert`, never NULL */
    char issuer[256];       /* issuer name of `cert` */
    char at[ENR_RFC3339_MAX];
    const enr_verify_options *opts;
} failure;

static void name_into(const X509_NAME *name, char *out, size_t out_len)
{
    char *s = name ? enr_name_format(name) : NULL;
    snprintf(out, out_len, "%s", s && s[0] ? s : "(empty name)");
    free(s);
}

/* Sets result->message as "certificate at depth D (SUBJECT) <what>". */
__attribute__((format(printf, 3, 4))) static void say(enr_verify_result *result,
                                                      const failure *f, const char *fmt, ...)
{
    int n = snprintf(result->message, sizeof result->message, "certificate at depth %d (%s) ",
                     f->depth, f->subject);
    if (n < 0 || (size_t)n >= sizeof result->message)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(result->message + n, sizeof result->message - (size_t)n, fmt, ap);
    va_end(ap);
}

static void explain_validity(enr_verify_result *result, const failure *f)
{
    char when[ENR_RFC3339_MAX];
    if (f->error == X509_V_ERR_CERT_HAS_EXPIRED) {
        enr_asn1_time_rfc3339(f->cert ? X509_get0_notAfter(f->cert) : NULL, when);
        say(result, f, "expired on %s (verification time %s): issue a new certificate, or check "
                       "the clock and --at", when, f->at);
    } else {
        enr_asn1_time_rfc3339(f->cert ? X509_get0_notBefore(f->cert) : NULL, when);
        say(result, f, "is not valid before %s (verification time %s): check the clock and --at",
            when, f->at);
    }
}

static void explain_unknown_issuer(enr_verify_result *result, const failure *f)
{
    switch (f->error) {
    case X509_V_ERR_SELF_SIGNED_CERT_IN_CHAIN:
    case X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT:
        say(result, f, "is self-signed but not one of the trusted roots: give the root this "
                       "path should end at with --root");
        break;
    case X509_V_ERR_CERT_UNTRUSTED:
        say(result, f, "is not trusted for this purpose: check the trust anchors (--root)");
        break;
    default:
        say(result, f, "was issued by %s, which is neither a trusted root nor one of the "
                       "intermediates: give that CA with --untrusted (an intermediate) or "
                       "--root (a trust anchor)", f->issuer);
    }
}

static void explain_pathlen(enr_verify_result *result, const failure *f)
{
    long pathlen = f->cert ? X509_get_pathlen(f->cert) : -1;
    if (pathlen >= 0)
        say(result, f, "allows at most %ld intermediate CA%s below it (pathLenConstraint), but "
                       "this path has more: issue from a CA higher up, or with a larger pathlen",
            pathlen, pathlen == 1 ? "" : "s");
    else
        say(result, f, "is followed by more CAs than a pathLenConstraint in the path allows");
}

static void explain_not_a_ca(enr_verify_result *result, const failure *f)
{
    if (f->error == X509_V_ERR_KEYUSAGE_NO_CERTSIGN)
        say(result, f, "issued a certificate but its keyUsage does not include keyCertSign: only "
                       "a CA certificate may issue certificates");
    else
        say(result, f, "issued a certificate but is not a CA (no basicConstraints CA:TRUE): only "
                       "a CA certificate may issue certificates");
}

static const char *crl_reason_name(long code)
{
    static const char *const NAMES[] = {"unspecified", "keyCompromise", "cACompromise",
                                        "affiliationChanged", "superseded", "cessationOfOperation",
                                        "certificateHold", "(7)", "removeFromCRL",
                                        "privilegeWithdrawn", "aACompromise"};
    return code >= 0 && code <= 10 ? NAMES[code] : "(unknown)";
}

/* The CRL entry that revoked `cert`, if one of the given CRLs has it. */
static X509_REVOKED *find_revocation(const failure *f)
{
    STACK_OF(X509_CRL) *crls = f->opts->crls;
    for (int i = 0; f->cert != NULL && i < sk_X509_CRL_num(crls); i++) {
        X509_REVOKED *entry = NULL;
        X509_CRL *crl = sk_X509_CRL_value(crls, i);
        if (X509_NAME_cmp(X509_CRL_get_issuer(crl), X509_get_issuer_name(f->cert)) == 0 &&
            X509_CRL_get0_by_cert(crl, &entry, f->cert) == 1 && entry != NULL)
            return entry;
    }
    return NULL;
}

static void explain_revoked(enr_verify_result *result, const failure *f)
{
    char *serial = f->cert ? enr_serial_hex(X509_get0_serialNumber(f->cert)) : NULL;
    X509_REVOKED *entry = find_revocation(f);
    char when[ENR_RFC3339_MAX] = "an unknown date";
    const char *why = "not given";
    if (entry != NULL) {
        enr_asn1_time_rfc3339(X509_REVOKED_get0_revocationDate(entry), when);
        ASN1_ENUMERATED *code = X509_REVOKED_get_ext_d2i(entry, NID_crl_reason, NULL, NULL);
        if (code != NULL)
            why = crl_reason_name(ASN1_ENUMERATED_get(code));
        ASN1_ENUMERATED_free(code);
        ERR_clear_error();
    }
    say(result, f, "serial %s was revoked on %s (reason: %s) by its issuer %s: it must not be "
                   "used; issue a new certificate", serial ? serial : "?", when, why, f->issuer);
    free(serial);
}

static void explain_crl(enr_verify_result *result, const failure *f)
{
    char crl_issuer[256], when[ENR_RFC3339_MAX];
    if (f->crl != NULL)
        name_into(X509_CRL_get_issuer(f->crl), crl_issuer, sizeof crl_issuer);
    else
        snprintf(crl_issuer, sizeof crl_issuer, "%s", f->issuer);
    switch (f->error) {
    case X509_V_ERR_UNABLE_TO_GET_CRL:
        say(result, f, "has no CRL from its issuer %s: with --crl, every certificate below the "
                       "root needs a current CRL from its issuer; add that CRL", f->issuer);
        break;
    case X509_V_ERR_CRL_HAS_EXPIRED:
        enr_asn1_time_rfc3339(f->crl ? X509_CRL_get0_nextUpdate(f->crl) : NULL, when);
        say(result, f, "cannot be checked: the CRL from %s was due for renewal at %s "
                       "(verification time %s); fetch a current CRL", crl_issuer, when, f->at);
        break;
    case X509_V_ERR_CRL_NOT_YET_VALID:
        enr_asn1_time_rfc3339(f->crl ? X509_CRL_get0_lastUpdate(f->crl) : NULL, when);
        say(result, f, "cannot be checked: the CRL from %s is not valid before %s (verification "
                       "time %s); check the clock and --at", crl_issuer, when, f->at);
        break;
    case X509_V_ERR_CRL_SIGNATURE_FAILURE:
    case X509_V_ERR_UNABLE_TO_DECRYPT_CRL_SIGNATURE:
        say(result, f, "cannot be checked: the signature on the CRL from %s does not verify; the "
                       "CRL was altered or signed by another key", crl_issuer);
        break;
    default:
        say(result, f, "cannot be checked against the CRL from %s: %s", crl_issuer,
            X509_verify_cert_error_string(f->error));
    }
}

static const char *purpose_words(enr_purpose purpose)
{
    switch (purpose) {
    case ENR_PURPOSE_CLIENT: return "TLS client authentication (--purpose client)";
    case ENR_PURPOSE_SERVER: return "TLS server authentication (--purpose server)";
    case ENR_PURPOSE_ANY: break;
    }
    return "this purpose";
}

/* "serverAuth, codeSigning", or "none" without an extendedKeyUsage. */
static void eku_list(X509 *cert, char *out, size_t out_len)
{
    EXTENDED_KEY_USAGE *eku = cert ? X509_get_ext_d2i(cert, NID_ext_key_usage, NULL, NULL) : NULL;
    ERR_clear_error();
    snprintf(out, out_len, "%s", eku ? "" : "none");
    for (int i = 0; i < sk_ASN1_OBJECT_num(eku); i++) {
        /* Short names, as the JSON description lists them ("clientAuth"). */
        const ASN1_OBJECT *obj = sk_ASN1_OBJECT_value(eku, i);
        char name[80];
        int nid = OBJ_obj2nid(obj);
        if (nid != NID_undef)
            snprintf(name, sizeof name, "%s", OBJ_nid2sn(nid));
        else
            OBJ_obj2txt(name, sizeof name, obj, 1);
        size_t used = strlen(out);
        snprintf(out + used, out_len - used, "%s%s", i ? ", " : "", name);
    }
    sk_ASN1_OBJECT_pop_free(eku, ASN1_OBJECT_free);
}

static void explain_usage(enr_verify_result *result, const failure *f)
{
    char ekus[200];
    eku_list(f->cert, ekus, sizeof ekus);
    say(result, f, "may not be used for %s: its keyUsage/extendedKeyUsage does not allow it "
                   "(extendedKeyUsage: %s); issue one with the right usage",
        purpose_words(f->opts->purpose), ekus);
}

static void explain(enr_verify_result *result, const failure *f)
{
    switch (result->reason) {
    case ENR_VERIFY_EXPIRED:
    case ENR_VERIFY_NOT_YET_VALID: explain_validity(result, f); break;
    case ENR_VERIFY_UNKNOWN_ISSUER: explain_unknown_issuer(result, f); break;
    case ENR_VERIFY_BAD_SIGNATURE:
        say(result, f, "has a signature that does not verify with the key of its issuer %s: "
                       "the certificate was altered, or signed by another key", f->issuer);
        break;
    case ENR_VERIFY_PATHLEN_EXCEEDED: explain_pathlen(result, f); break;
    case ENR_VERIFY_NOT_A_CA: explain_not_a_ca(result, f); break;
    case ENR_VERIFY_REVOKED: explain_revoked(result, f); break;
    case ENR_VERIFY_WRONG_USAGE: explain_usage(result, f); break;
    case ENR_VERIFY_CRL_PROBLEM: explain_crl(result, f); break;
    case ENR_VERIFY_OK:
    case ENR_VERIFY_OTHER:
        say(result, f, "failed verification: %s (OpenSSL X509_V_ERR %d)",
            X509_verify_cert_error_string(f->error), f->error);
        break;
    }
}

/* The certificate OpenSSL was looking at when it failed; for some errors it
 * reports none, so fall back to the chain built so far, then the leaf. */
static X509 *failed_cert(X509_STORE_CTX *ctx, X509 *leaf, int depth)
{
    X509 *cert = X509_STORE_CTX_get_current_cert(ctx);
    STACK_OF(X509) *chain = X509_STORE_CTX_get0_chain(ctx);
    if (cert == NULL && depth >= 0 && depth < sk_X509_num(chain))
        cert = sk_X509_value(chain, depth);
    return cert ? cert : leaf;
}

static void record_failure(X509_STORE_CTX *ctx, X509 *leaf, const enr_verify_options *opts,
                           time_t at, enr_verify_result *result)
{
    failure f = {.opts = opts};
    f.error = X509_STORE_CTX_get_error(ctx);
    f.depth = X509_STORE_CTX_get_error_depth(ctx);
    f.cert = failed_cert(ctx, leaf, f.depth);
    f.crl = X509_STORE_CTX_get0_current_crl(ctx);
    name_into(X509_get_subject_name(f.cert), result->subject, sizeof result->subject);
    f.subject = result->subject;
    name_into(X509_get_issuer_name(f.cert), f.issuer, sizeof f.issuer);
    enr_time_rfc3339(at, f.at);
    result->reason = reason_for(f.error);
    if (result->reason == ENR_VERIFY_OK)
        result->reason = ENR_VERIFY_OTHER; /* a failure with no error code set */
    result->reason_name = enr_verify_reason_name(result->reason);
    result->openssl_error = f.error;
    result->depth = f.depth;
    explain(result, &f);
}

static int openssl_purpose(enr_purpose purpose)
{
    switch (purpose) {
    case ENR_PURPOSE_CLIENT: return X509_PURPOSE_SSL_CLIENT;
    case ENR_PURPOSE_SERVER: return X509_PURPOSE_SSL_SERVER;
    case ENR_PURPOSE_ANY: break;
    }
    return 0;
}

static enr_code new_trust_store(const STACK_OF(X509) *roots, X509_STORE **out, enr_error *err)
{
    X509_STORE *store = X509_STORE_new();
    if (store == NULL)
        return enr_error_set(err, ENR_E_NOMEM, "out of memory");
    for (int i = 0; i < sk_X509_num(roots); i++) {
        if (X509_STORE_add_cert(store, sk_X509_value(roots, i)) != 1) {
            X509_STORE_free(store);
            return enr_error_openssl(err, ENR_E_CRYPTO, "cannot add root %d to the trust store",
                                     i + 1);
        }
    }
    *out = store;
    return ENR_OK;
}

static enr_code configure(X509_STORE_CTX *ctx, const enr_verify_options *opts, enr_error *err)
{
    X509_VERIFY_PARAM *param = X509_STORE_CTX_get0_param(ctx);
    if (opts->at != 0)
        X509_VERIFY_PARAM_set_time(param, opts->at);
    if (sk_X509_CRL_num(opts->crls) > 0) {
        X509_STORE_CTX_set0_crls(ctx, opts->crls);
        X509_VERIFY_PARAM_set_flags(param, opts->crl_leaf_only ? X509_V_FLAG_CRL_CHECK
                                                               : X509_V_FLAG_CRL_CHECK | X509_V_FLAG_CRL_CHECK_ALL);
    }
    if (opts->roots_may_be_intermediates)
        X509_VERIFY_PARAM_set_flags(param, X509_V_FLAG_PARTIAL_CHAIN);
    int purpose = openssl_purpose(opts->purpose);
    if (purpose != 0 && X509_STORE_CTX_set_purpose(ctx, purpose) != 1)
        return enr_error_openssl(err, ENR_E_CRYPTO, "cannot set the verification purpose");
    return ENR_OK;
}

static enr_code check_arguments(const X509 *leaf, const enr_verify_options *opts, enr_error *err)
{
    if (leaf == NULL)
        return enr_error_set(err, ENR_E_USAGE, "no certificate to verify");
    if (opts == NULL || sk_X509_num(opts->roots) <= 0)
        return enr_error_set(err, ENR_E_USAGE,
                             "no trust anchors: give at least one root certificate (--root)");
    if (opts->purpose != ENR_PURPOSE_ANY && opts->purpose != ENR_PURPOSE_CLIENT &&
        opts->purpose != ENR_PURPOSE_SERVER)
        return enr_error_set(err, ENR_E_USAGE, "unknown purpose %d", (int)opts->purpose);
    return ENR_OK;
}

static enr_code run_verifier(X509_STORE_CTX *ctx, X509 *leaf, const enr_verify_options *opts,
                             enr_verify_result *result, enr_error *err)
{
    int ok = X509_verify_cert(ctx);
    if (ok == 1) {
        ERR_clear_error();
        result->chain_length = sk_X509_num(X509_STORE_CTX_get0_chain(ctx));
        return ENR_OK;
    }
    int error = X509_STORE_CTX_get_error(ctx);
    if (error == X509_V_ERR_OUT_OF_MEM)
        return enr_error_openssl(err, ENR_E_NOMEM, "out of memory while verifying");
    if (ok < 0 && error == X509_V_OK)
        return enr_error_openssl(err, ENR_E_CRYPTO, "the verifier could not run");
    ERR_clear_error();
    record_failure(ctx, leaf, opts, opts->at != 0 ? opts->at : time(NULL), result);
    return enr_error_set(err, ENR_E_VERIFY, "%s [%s]", result->message, result->reason_name);
}

enr_code enr_cert_verify(X509 *leaf, const enr_verify_options *opts, enr_verify_result *result,
                         enr_error *err)
{
    memset(result, 0, sizeof *result);
    result->reason = ENR_VERIFY_OK;
    result->reason_name = enr_verify_reason_name(ENR_VERIFY_OK);
    enr_code rc = check_arguments(leaf, opts, err);
    if (rc != ENR_OK)
        return rc;
    X509_STORE *store = NULL;
    if ((rc = new_trust_store(opts->roots, &store, err)) != ENR_OK)
        return rc;
    X509_STORE_CTX *ctx = X509_STORE_CTX_new();
    if (ctx == NULL)
        rc = enr_error_set(err, ENR_E_NOMEM, "out of memory");
    else if (X509_STORE_CTX_init(ctx, store, leaf, opts->untrusted) != 1)
        rc = enr_error_openssl(err, ENR_E_CRYPTO, "cannot set up the verifier");
    else if ((rc = configure(ctx, opts, err)) == ENR_OK)
        rc = run_verifier(ctx, leaf, opts, result, err);
    X509_STORE_CTX_free(ctx);
    X509_STORE_free(store);
    return rc;
}

bool enr_cert_chains_to_any(X509 *leaf, STACK_OF(X509) *sent_chain, const enr_buf *cas, size_t ca_count)
{
    STACK_OF(X509) *roots = sk_X509_new_null();
    for (size_t i = 0; roots != NULL && i < ca_count; i++) {
        const unsigned char *p = cas[i].data;
        X509 *ca = cas[i].data != NULL ? d2i_X509(NULL, &p, (long)cas[i].len) : NULL;
        if (ca != NULL && !sk_X509_push(roots, ca))
            X509_free(ca);
    }
    ERR_clear_error();
    enr_verify_options opts = {.roots = roots, .untrusted = sent_chain, .purpose = ENR_PURPOSE_CLIENT,
                               .roots_may_be_intermediates = true};
    enr_verify_result result;
    enr_error err;
    bool ok = leaf != NULL && roots != NULL && sk_X509_num(roots) > 0 &&
              enr_cert_verify(leaf, &opts, &result, &err) == ENR_OK;
    sk_X509_pop_free(roots, X509_free);
    return ok;
}
