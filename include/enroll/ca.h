/* A certificate authority: a directory (cert.pem, chain.pem, the key or a
 * pkcs11: reference, an append-only index of everything it issued, its
 * revocations and CRL), profiles that decide what a certificate says, and
 * issuance from CSRs. */
#ifndef ENROLL_CA_H
#define ENROLL_CA_H

#include <openssl/x509.h>
#include <stdbool.h>
#include <stdint.h>
#include <time.h>

#include "enroll/cert.h"
#include "enroll/csr.h"
#include "enroll/error.h"
#include "enroll/signer.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- making a CA -------------------------------------------------------- */

typedef struct enr_ca_init_options {
    const char *dir;            /* created; must not hold a CA already */
    const char *subject;        /* "/O=Acme/CN=Acme Root CA" */
    enr_key_type key_type;      /* for a new key (default ec-p256) */
    const char *validity;       /* ISO 8601; default P10Y for a root, P5Y below one */
    int pathlen;                /* < 0: default (root 1, intermediate: parent's minus one) */
    const char *parent_dir;     /* set: an intermediate signed by this CA */
    const char *parent_passphrase;
    const char *key_ref;        /* a pkcs11: URI: the key lives in a token (made there if absent) */
    const enr_token_options *token;
    const char *passphrase;     /* encrypt key.pem with it */
    const char *import_cert;    /* import an existing CA: its certificate... */
    const char *import_key;     /* ...its key file or pkcs11: URI... */
    const char *import_chain;   /* ...and optionally its chain up to the root */
    const char *crl_url;        /* put into what this CA issues, if set */
    const char *aia_url;
} enr_ca_init_options;

enr_code enr_ca_init(const enr_ca_init_options *opts, enr_error *err);

/* ---- using a CA --------------------------------------------------------- */

typedef struct enr_ca enr_ca;

enr_code enr_ca_open(const char *dir, const char *passphrase, const enr_token_options *token,
                     enr_ca **out, enr_error *err);
/* The same without the private key (no passphrase or PIN needed): for
 * listing. Issuing, revoking and CRLs then fail with ENR_E_USAGE. */
enr_code enr_ca_open_public(const char *dir, enr_ca **out, enr_error *err);
void enr_ca_free(enr_ca *ca);
X509 *enr_ca_cert(const enr_ca *ca);              /* borrowed */
STACK_OF(X509) *enr_ca_chain(const enr_ca *ca);   /* borrowed: this CA first, up to the root */

/* ---- profiles: the CA decides, not the requester ------------------------ */

typedef struct enr_profile enr_profile;

/* "device" (clientAuth, digitalSignature), "server" (serverAuth, DNS/IP
 * SANs allowed), "intermediate" (CA:TRUE, keyCertSign+cRLSign),
 * "ocsp-responder" (OCSPSigning, ocsp-nocheck, three days). */
enr_code enr_profile_new(const char *name, enr_profile **out, enr_error *err);
void enr_profile_free(enr_profile *profile);
const char *enr_profile_name(const enr_profile *profile);
enr_code enr_profile_set_validity(enr_profile *profile, const char *iso8601, enr_error *err);
enr_code enr_profile_set_backdate(enr_profile *profile, const char *iso8601, enr_error *err);
/* The subject becomes CN=id alone, and the request's CN must equal id. */
enr_code enr_profile_force_cn(enr_profile *profile, const char *id, enr_error *err);
/* Adds "TYPE:pattern" (DNS, IP, URI, email; '*' matches any run of
 * characters): every requested SAN must match one, or the request is refused. */
enr_code enr_profile_allow_san(enr_profile *profile, const char *pattern, enr_error *err);
/* What certificates of the profile point at (NULL or "": none): the OCSP
 * responder (an AIA entry, beside the CA's caIssuers) and the CRL
 * distribution point (in place of the CA's). The caller has checked them
 * (the store does: http or https, no ',' or space). */
enr_code enr_profile_set_urls(enr_profile *profile, const char *ocsp_url, const char *crl_url, enr_error *err);
/* Comma-separated enroll key types the profile accepts. */
enr_code enr_profile_set_key_types(enr_profile *profile, const char *list, enr_error *err);

/* ---- issuance ----------------------------------------------------------- */

/* Checks proof of possession and the profile's rules, then builds, signs
 * and records a certificate in the CA directory's index (fsync'ed). `now` 0 means the current time. Refusals are
 * ENR_E_POLICY (or ENR_E_VERIFY for a bad signature) with the reason.
 * The certificate's public key is copied from the request as encoded bytes
 * (OpenSSL 3.0 would otherwise re-decode it, costing more than the
 * signature), so X509_get0_pubkey() on the result gives NULL: use
 * enr_csr_public_key(csr), or re-read the certificate from its DER. */
enr_code enr_ca_issue(enr_ca *ca, const enr_csr *csr, const enr_profile *profile, time_t now,
                      X509 **out, enr_error *err);
/* The same checks and signature, recorded nowhere: for a caller that keeps
 * its own record (enrolld's store, whose unique (issuer, serial) index
 * refuses a serial another node drew; the caller signs again then). */
enr_code enr_ca_sign(enr_ca *ca, const enr_csr *csr, const enr_profile *profile, time_t now, X509 **out,
                     enr_error *err);

/* ---- revocation --------------------------------------------------------- */

/* Reason names: enr_revocation_reason_parse/_name (enroll/cert.h). */

/* Records the revocation of an issued certificate (serial in hex) and writes
 * a fresh CRL. Unknown or already revoked serials are refused. */
enr_code enr_ca_revoke(enr_ca *ca, const char *serial_hex, int reason, time_t when,
                       enr_error *err);

/* A new v2 CRL (CRL number + 1, AKI, reasons; nextUpdate = now + P7D),
 * written to DIR/crl.pem and returned (free with X509_CRL_free). */
enr_code enr_ca_crl(enr_ca *ca, time_t now, X509_CRL **out, enr_error *err);

/* A revocation recorded outside the CA directory (enrolld's store). */
typedef struct enr_crl_entry {
    const char *serial_hex;
    int reason;                 /* RFC 5280 CRLReason */
    time_t revoked_at;
} enr_crl_entry;

/* Where a revocation source puts what it knows. */
typedef struct enr_crl_sink enr_crl_sink;
/* Adds one revocation (copied); a serial the directory records as revoked
 * already keeps the directory's record. */
enr_code enr_crl_sink_add(enr_crl_sink *sink, const enr_crl_entry *entry, enr_error *err);

/* A second record of this CA's revocations (enrolld's store, for a CA
 * attached to it): every CRL the CA writes, whichever call makes it
 * (enr_ca_revoke, enr_ca_crl, enr_ca_crl_ex), lists its revocations too, so
 * no CRL ever omits a revocation either record holds. Called under the
 * directory's lock, once per CRL. `ctx` must outlive the CA or the next
 * call; NULL removes the source. */
typedef enr_code (*enr_revocation_source)(void *ctx, const enr_ca *ca, enr_crl_sink *sink, enr_error *err);
void enr_ca_set_revocation_source(enr_ca *ca, enr_revocation_source source, void *ctx);

/* Where CRL numbers come from when the CA directory is not the only
 * record: given the number the directory would use, the number to use
 * (never smaller). Called under the directory's lock, once per CRL. NULL
 * removes the source. */
typedef enr_code (*enr_crl_number_source)(void *ctx, const enr_ca *ca, int64_t at_least, int64_t *number,
                                          enr_error *err);
void enr_ca_set_crl_number_source(enr_ca *ca, enr_crl_number_source source, void *ctx);

typedef struct enr_crl_options {
    time_t now;                 /* 0: the current time */
    int64_t next_update;        /* seconds after now; 0: 7 days */
} enr_crl_options;

/* enr_ca_crl with options: the same CRL number sequence and DIR/crl.pem, so
 * CRLs made either way never reuse a number. */
enr_code enr_ca_crl_ex(enr_ca *ca, const enr_crl_options *opts, X509_CRL **out, enr_error *err);

/* ---- a CA directory attached to a store --------------------------------- */

/* `enroll admin ca add` attaches a CA directory to enrolld's store: from
 * then on the store records what enrolld issues from it and revokes. The
 * directory keeps a note of that (DIR/store.json: the store's location and
 * the CA's name there), so commands given only the directory find the
 * store and see one state. Written atomically; attaching to the same store
 * again is fine, to another one is ENR_E_EXISTS. */
#define ENR_CA_STORE_LOCATION_MAX 4095
enr_code enr_ca_attach(const char *dir, const char *store_location, const char *name, enr_error *err);
/* ENR_OK with the location and name when attached; ENR_E_NOTFOUND when
 * not; ENR_E_PARSE for a damaged note. */
enr_code enr_ca_attachment(const enr_ca *ca, char location[ENR_CA_STORE_LOCATION_MAX + 1], char name[129],
                           enr_error *err);
const char *enr_ca_dir(const enr_ca *ca);
/* The note's own format, {"store": LOCATION, "name": NAME}: strict (no
 * other members, no duplicates, no NUL), ENR_E_PARSE otherwise. */
enr_code enr_ca_attachment_parse(const char *text, size_t len, char location[ENR_CA_STORE_LOCATION_MAX + 1],
                                 char name[129], enr_error *err);

/* ---- what was issued ---------------------------------------------------- */

typedef struct enr_issued {
    char serial[48];          /* hex, upper case */
    char subject[256];
    char profile[32];
    char spki_sha256[65];
    time_t not_before, not_after, issued_at;
    bool revoked;
    int reason;
    time_t revoked_at;
} enr_issued;

/* Every certificate in the index, oldest first (free *out with free()). */
enr_code enr_ca_list(enr_ca *ca, enr_issued **out, size_t *count, enr_error *err);

#ifdef __cplusplus
}
#endif
#endif
