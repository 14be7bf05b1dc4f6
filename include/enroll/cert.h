/* X.509 certificates: read (PEM/DER/headerless base64, one or many), describe
 * (text and JSON, mirroring csr.h), and verify chains with a reason a person
 * can act on. */
#ifndef ENROLL_CERT_H
#define ENROLL_CERT_H

#include <openssl/x509.h>
#include <stdbool.h>
#include <stddef.h>
#include <time.h>

#include "enroll/error.h"
#include "enroll/fileio.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Reads every certificate in `in`: a PEM bundle (any number of CERTIFICATE
 * blocks; other blocks are an error naming their label; text between blocks
 * is skipped, binary data is an error), or one DER or headerless-base64
 * certificate. Inputs over ENR_INPUT_LIMIT are refused. Errors are
 * ENR_E_PARSE with the byte offset and, in a bundle, which block. `*out` is a
 * new stack (free with sk_X509_pop_free(*out, X509_free)); at least one
 * certificate on success. */
enr_code enr_cert_read_all(const unsigned char *in, size_t len, STACK_OF(X509) **out,
                           enr_error *err);
/* The same from a file ("-" is standard input). */
enr_code enr_cert_read_file(const char *path, STACK_OF(X509) **out, enr_error *err);
/* Exactly one certificate (more is an error). */
enr_code enr_cert_read_one(const unsigned char *in, size_t len, X509 **out, enr_error *err);

/* CRLs, read the same way: a PEM bundle of X509 CRL blocks, or one DER or
 * base64 CRL. Free with sk_X509_CRL_pop_free(*out, X509_CRL_free). */
enr_code enr_crl_read_all(const unsigned char *in, size_t len, STACK_OF(X509_CRL) **out,
                          enr_error *err);
enr_code enr_crl_read_file(const char *path, STACK_OF(X509_CRL) **out, enr_error *err);

/* A CRL described (free with free()): version, issuer, crl_number (decimal
 * string, null without one), this_update / next_update (RFC 3339 UTC),
 * signature algorithm, entry_count, entries [{serial (as for certificates),
 * revoked_at, reason}], extensions. The text is rendered from the JSON. */
enr_code enr_crl_describe_json(X509_CRL *crl, char **out, enr_error *err);
enr_code enr_crl_describe_text(X509_CRL *crl, char **out, enr_error *err);

/* RFC 5280 CRLReason names: unspecified keyCompromise cACompromise
 * affiliationChanged superseded cessationOfOperation certificateHold
 * privilegeWithdrawn aACompromise (removeFromCRL is read, never parsed). */
enr_code enr_revocation_reason_parse(const char *name, int *out, enr_error *err);
const char *enr_revocation_reason_name(int reason);

/* JSON / text descriptions (free with free()): version, serial (uppercase
 * hex, as `openssl x509 -serial` prints it), issuer, subject (+ fields),
 * validity (RFC 3339 UTC), whether it is self-signed, public key (as csr.h:
 * type, bits, curve, spki_sha256), signature algorithm, extensions decoded
 * (basicConstraints, keyUsage, extendedKeyUsage, subjectAltName, SKI/AKI as
 * lowercase hex, CRL distribution points, AIA), SHA-256 fingerprint
 * (lowercase hex, "fingerprint_sha256"). */
enr_code enr_cert_describe_json(X509 *cert, char **out, enr_error *err);
enr_code enr_cert_describe_text(X509 *cert, char **out, enr_error *err);

typedef enum enr_purpose {
    ENR_PURPOSE_ANY = 0,
    ENR_PURPOSE_CLIENT, /* TLS client: what devices present */
    ENR_PURPOSE_SERVER
} enr_purpose;

typedef struct enr_verify_options {
    STACK_OF(X509) *roots;      /* trust anchors (required) */
    STACK_OF(X509) *untrusted;  /* intermediates that may be used to build the path */
    STACK_OF(X509_CRL) *crls;   /* when non-empty: every certificate in the path must be
                                   covered by a CRL from its issuer (CRL_CHECK_ALL) */
    bool crl_leaf_only;         /* with crls: only the leaf needs one (CRL_CHECK, as openssl
                                   verify -crl_check): a root that publishes no CRL */
    enr_purpose purpose;
    time_t at;                  /* 0: now */
    bool roots_may_be_intermediates; /* a root given may be any CA, not only a self-signed one
                                        (X509_V_FLAG_PARTIAL_CHAIN): DPS trusts an uploaded
                                        intermediate as such */
} enr_verify_options;

typedef enum enr_verify_reason {
    ENR_VERIFY_OK = 0,
    ENR_VERIFY_EXPIRED,
    ENR_VERIFY_NOT_YET_VALID,
    ENR_VERIFY_UNKNOWN_ISSUER,
    ENR_VERIFY_BAD_SIGNATURE,
    ENR_VERIFY_PATHLEN_EXCEEDED,
    ENR_VERIFY_NOT_A_CA,
    ENR_VERIFY_REVOKED,
    ENR_VERIFY_WRONG_USAGE,     /* keyUsage / extendedKeyUsage / purpose */
    ENR_VERIFY_CRL_PROBLEM,     /* CRL missing, expired, or its signature is bad */
    ENR_VERIFY_OTHER
} enr_verify_reason;

typedef struct enr_verify_result {
    enr_verify_reason reason;
    const char *reason_name;    /* "expired", "unknown-issuer", "revoked", ... (stable) */
    int openssl_error;          /* X509_V_ERR_* */
    int depth;                  /* where in the path it failed (0 = the leaf) */
    char subject[256];          /* subject of the certificate at `depth` */
    char message[512];          /* a sentence: what failed and what to do */
    int chain_length;           /* on success: leaf..root */
} enr_verify_result;

/* Returns ENR_OK when the path verifies, ENR_E_VERIFY with `result` filled
 * when it does not (err then holds result->message too), another code when
 * it could not be attempted (no roots: ENR_E_USAGE). Non-self-signed roots
 * are not accepted as trust anchors on their own, as with `openssl verify`.
 * `result` is always filled; reason_name is "ok" on success. */
enr_code enr_cert_verify(X509 *leaf, const enr_verify_options *opts, enr_verify_result *result,
                         enr_error *err);

/* True when LEAF, with the chain its sender gave (may be NULL), verifies
 * as a TLS client up to one of CAS (DER certificates; any may be an
 * intermediate, trusted as such). The one test of "this device's
 * certificate was issued under that uploaded CA": DPS X.509 attestation and
 * AWS claim certificates both ask it. False when CAS holds none. */
bool enr_cert_chains_to_any(X509 *leaf, STACK_OF(X509) *sent_chain, const enr_buf *cas, size_t ca_count);

/* The stable name of a reason ("expired", ...), as in enr_verify_result. */
const char *enr_verify_reason_name(enr_verify_reason reason);

#define ENR_CERT_FINGERPRINT_HEX 64
/* The certificate's fingerprint: SHA-256 of its DER in lower-case hex (as
 * `openssl x509 -fingerprint -sha256` without the colons). One spelling for
 * every place that names a certificate by it: AWS's certificateId, the
 * store, `--json` output. ENR_E_CRYPTO when it cannot be computed. */
enr_code enr_cert_fingerprint(const X509 *cert, char out[ENR_CERT_FINGERPRINT_HEX + 1], enr_error *err);

/* RFC 3339 "2026-11-24T20:00:00Z" or "...+02:00" (fractions of a second are
 * ignored) to time_t (UTC); also accepts a date alone, "2026-11-24", as
 * midnight UTC. Anything else is ENR_E_USAGE naming the character. */
enr_code enr_time_parse(const char *text, time_t *out, enr_error *err);

#ifdef __cplusplus
}
#endif
#endif
