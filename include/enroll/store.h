/* The provisioning service's record: CAs, credential policies, enrollments,
 * registrations, issued certificates, operations and audit events.
 *
 * One interface, many backends: the service calls only enr_store_*
 * functions; a backend fills an enr_store_ops table (SQLite today,
 * PostgreSQL later). Arguments are checked and normalised here, before any
 * backend sees them (ids lowercased, serials in `openssl x509 -serial` form,
 * etags and timestamps filled in), so every backend stores the same thing.
 *
 * Every change can carry an audit event that is written in the same
 * transaction. The registration commit is the transaction that matters: a
 * certificate is returned to a device only after it is committed together
 * with its registration, operation and audit event (the provisioning core
 * signs with enr_ca_sign and commits here; provision.h).
 *
 * Threads: an enr_store is a connection with its own prepared statements;
 * use one per thread (open as many as there are threads; processes and
 * threads may share one data directory). */
#ifndef ENROLL_STORE_H
#define ENROLL_STORE_H

#include <openssl/x509.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "enroll/error.h"
#include "enroll/fileio.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Text limits, in bytes without the NUL (arrays below are one longer). */
#define ENR_STORE_ID_MAX 128          /* registration, group, operation ids; CA and policy names */
#define ENR_STORE_KEY_MAX 128         /* a base64 symmetric key */
#define ENR_STORE_HUB_MAX 255         /* "host" or "host:port" */
#define ENR_STORE_DN_MAX 1023         /* issuer and subject, as enr_name_format prints them */
#define ENR_STORE_SERIAL_MAX 40       /* hex of at most 20 octets */
#define ENR_STORE_ETAG_MAX 64
#define ENR_STORE_WORD_MAX 40         /* statuses, substatuses, audit kinds and outcomes */
#define ENR_STORE_DURATION_MAX 40     /* ISO 8601 ("P30D") */
#define ENR_STORE_KEY_TYPES_MAX 127   /* "ec-p256,ec-p384" */
#define ENR_STORE_KEY_REF_MAX 1023    /* a key file, CA directory or pkcs11: URI */
#define ENR_STORE_CODE_MAX 64         /* a CA's proof-of-possession verification code */
#define ENR_STORE_DETAIL_MAX 511      /* an audit event's sentence */
#define ENR_STORE_SPKI_HEX 64         /* SHA-256 in lower-case hex */
#define ENR_STORE_SHA256_HEX 64       /* likewise, of an EST secret */
#define ENR_STORE_CERT_URL_MAX 255    /* an http(s) URL put into certificates */

/* ---- opening ------------------------------------------------------------ */

typedef struct enr_store enr_store;

/* Opens (creating if needed) DATA_DIR/enroll.db: file mode 0600 whatever the
 * umask, WAL, synchronous=FULL, foreign keys on, a 5 s busy timeout, and
 * the schema migrated to the newest version in one transaction. A database
 * whose schema is newer than this code knows is refused (ENR_E_UNSUPPORTED)
 * rather than written with old assumptions. DATA_DIR is created (0700) if
 * it does not exist; its parent must. */
enr_code enr_store_open_sqlite(const char *data_dir, enr_store **out, enr_error *err);
/* True when DATA_DIR holds a SQLite store (its enroll.db exists), without
 * opening or creating anything: a service refuses to start on a data
 * directory that does not (a typo would otherwise make an empty store). */
bool enr_store_sqlite_exists(const char *data_dir);
/* Connects to the PostgreSQL database a postgresql:// (or postgres://) URL
 * names, as libpq reads it (user, password, host, port, database and
 * options such as sslmode), with a 5 s connect timeout unless the URL sets
 * one, and migrates its schema as enr_store_open_sqlite does (several
 * nodes opening together queue on one lock). synchronous_commit is on for
 * the session. An unreachable server is ENR_E_IO. The URL's password never
 * appears in a message or in enr_store_location. */
enr_code enr_store_open_postgres(const char *url, enr_store **out, enr_error *err);
bool enr_store_url_is_postgres(const char *location);
/* LOCATION as it may be shown to people: a URL without its password or
 * options (postgresql://user@host:port/db); a directory as it is. */
void enr_store_location_shown(const char *location, char *out, size_t cap);
/* The one place that decides the backend: a postgresql:// URL is
 * PostgreSQL, anything else a SQLite data directory. Nothing above the
 * store needs to know which it has. */
enr_code enr_store_open(const char *location, enr_store **out, enr_error *err);
/* As enr_store_open, for a store that exists and is only read (a copy's
 * source): nothing is created, and its schema is not migrated (it may be
 * older than this code's; a newer one is refused). */
enr_code enr_store_open_as_is(const char *location, enr_store **out, enr_error *err);
enr_code enr_store_open_sqlite_as_is(const char *data_dir, enr_store **out, enr_error *err);
enr_code enr_store_open_postgres_as_is(const char *url, enr_store **out, enr_error *err);
void enr_store_close(enr_store *store);

/* "sqlite" or "postgresql" */
const char *enr_store_backend(const enr_store *store);
/* Where the store is, for people and for the notes that point at it (a CA
 * directory attached to it): SQLite's absolute data directory, or
 * PostgreSQL's postgresql://user@host:port/db. Never holds a secret. NULL
 * when the backend does not say. */
const char *enr_store_location(const enr_store *store);

/* The backend's own consistency check (SQLite: PRAGMA integrity_check).
 * ENR_E_IO with the first problem found when it does not pass. */
enr_code enr_store_integrity_check(enr_store *store, enr_error *err);

/* A fresh random etag (hex), for records whose etag the caller chooses. */
enr_code enr_store_make_etag(char out[ENR_STORE_ETAG_MAX + 1], enr_error *err);

/* ---- records ------------------------------------------------------------ */

/* Audit events: who asked for what and how it ended. `detail` is for
 * people and never holds a key, token, CSR or certificate body. */
typedef struct enr_audit_event {
    int64_t id;                                  /* set by the store */
    time_t at;                                   /* 0: now */
    char kind[ENR_STORE_WORD_MAX + 1];           /* "register", "revoke", "enrollment.create" */
    char registration_id[ENR_STORE_ID_MAX + 1];  /* may be empty; lower case if valid, else as sent */
    char outcome[ENR_STORE_WORD_MAX + 1];        /* "ok", "rejected" or "error" */
    int reason_code;                             /* the DPS errorCode (401002); 0 when ok */
    char detail[ENR_STORE_DETAIL_MAX + 1];
} enr_audit_event;

typedef enum enr_ca_role {
    ENR_CA_ISSUING = 1,  /* signs device certificates: has a key reference */
    ENR_CA_BOOTSTRAP     /* uploaded to attest devices by X.509: proves possession first */
} enr_ca_role;

typedef struct enr_ca_record {
    char name[ENR_STORE_ID_MAX + 1];
    enr_ca_role role;
    enr_buf certificate;                         /* DER, owned */
    char *chain_pem;                             /* owned, may be NULL: its issuers up to the root */
    char key_ref[ENR_STORE_KEY_REF_MAX + 1];     /* issuing CAs; never a PIN (pin-value is refused) */
    char verification_code[ENR_STORE_CODE_MAX + 1]; /* bootstrap CAs: the code to sign, or empty */
    bool verified;                               /* bootstrap CAs: possession proven */
    time_t created_at, updated_at;               /* set by the store */
} enr_ca_record;

/* Frees what the record owns (not the record itself). */
void enr_ca_record_free(enr_ca_record *ca);

typedef struct enr_credential_policy {
    char name[ENR_STORE_ID_MAX + 1];
    char validity[ENR_STORE_DURATION_MAX + 1];       /* "P30D" */
    char renewal_window[ENR_STORE_DURATION_MAX + 1]; /* "P7D": renew when now >= notAfter - this */
    char ca_name[ENR_STORE_ID_MAX + 1];              /* the issuing CA (must be in the store) */
    char key_types[ENR_STORE_KEY_TYPES_MAX + 1];     /* "ec-p256,ec-p384" (enr_key_type_parse names) */
    /* Put into every certificate issued under the policy, when set: the
     * OCSP responder (AIA) and the CRL distribution point (this one in
     * place of the CA's own). http:// or https://, no ',' or space. */
    char ocsp_url[ENR_STORE_CERT_URL_MAX + 1];
    char crl_url[ENR_STORE_CERT_URL_MAX + 1];
    /* EST's serverkeygen: the service may make a device's key (returned
     * once, never stored). Off unless an operator said so. */
    bool allow_server_keygen;
    time_t created_at, updated_at;                   /* set by the store */
} enr_credential_policy;

typedef enum enr_enrollment_kind {
    ENR_ENROLLMENT_GROUP = 1,
    ENR_ENROLLMENT_INDIVIDUAL
} enr_enrollment_kind;

typedef enum enr_attestation {
    ENR_ATTEST_SYMMETRIC = 1,  /* SAS tokens from a primary or secondary key */
    ENR_ATTEST_X509            /* a TLS client certificate chaining to `certificates` */
} enr_attestation;

/* An enrollment group or an individual enrollment: who may register and
 * what they get. Keys are secrets: no error message ever contains them,
 * and enr_enrollment_free wipes them. */
typedef struct enr_enrollment {
    enr_enrollment_kind kind;
    char id[ENR_STORE_ID_MAX + 1];             /* group id, or the registration id; stored lower case */
    enr_attestation attestation;
    char primary_key[ENR_STORE_KEY_MAX + 1];   /* symmetric: base64, required */
    char secondary_key[ENR_STORE_KEY_MAX + 1]; /* symmetric: base64, may be empty */
    enr_buf *certificates;                     /* x509: DER, at least one; owned when read */
    size_t certificate_count;
    char policy[ENR_STORE_ID_MAX + 1];         /* credential policy; empty: classic (no certificate) */
    char assigned_hub[ENR_STORE_HUB_MAX + 1];
    bool enabled;
    char etag[ENR_STORE_ETAG_MAX + 1];         /* set by the store on every change */
    time_t created_at, updated_at;             /* set by the store */
    /* EST's HTTP Basic: lower-case hex SHA-256 of the secret (enroll makes
     * it, 256 random bits, and shows it once); "" for none. */
    char basic_secret_sha256[ENR_STORE_SHA256_HEX + 1];
} enr_enrollment;

void enr_enrollment_free(enr_enrollment *enrollment);

/* DPS registration statuses: "assigning", "assigned", "failed", "disabled",
 * "unassigned". */
typedef struct enr_registration {
    char registration_id[ENR_STORE_ID_MAX + 1];  /* stored lower case */
    enr_enrollment_kind enrollment_kind;
    char enrollment_id[ENR_STORE_ID_MAX + 1];
    char status[ENR_STORE_WORD_MAX + 1];
    char substatus[ENR_STORE_WORD_MAX + 1];      /* "initialAssignment", ... or empty */
    char device_id[ENR_STORE_ID_MAX + 1];
    char assigned_hub[ENR_STORE_HUB_MAX + 1];
    char etag[ENR_STORE_ETAG_MAX + 1];           /* chosen by the caller (enr_store_make_etag) */
    time_t created_at;                           /* 0: now; an existing registration keeps its own */
    time_t updated_at;                           /* 0: now */
    /* The newest certificate: taken from the certificate committed with the
     * registration; kept from before when a commit has none. */
    char last_certificate_issuer[ENR_STORE_DN_MAX + 1];
    char last_certificate_serial[ENR_STORE_SERIAL_MAX + 1];
} enr_registration;

typedef struct enr_certificate {
    int64_t id;                                  /* set by the store; the list cursor */
    char issuer[ENR_STORE_DN_MAX + 1];           /* enr_name_format of the issuer */
    char serial[ENR_STORE_SERIAL_MAX + 1];       /* upper-case hex as `openssl x509 -serial` prints */
    char registration_id[ENR_STORE_ID_MAX + 1];  /* empty: not issued to a registration */
    char policy[ENR_STORE_ID_MAX + 1];           /* credential policy it was issued under, or empty */
    char subject[ENR_STORE_DN_MAX + 1];
    time_t not_before, not_after;
    time_t issued_at;                            /* 0: now */
    char spki_sha256[ENR_STORE_SPKI_HEX + 1];
    enr_buf der;                                 /* owned when read; stored as given, not re-parsed */
    bool revoked;                                /* set by the revoke functions only */
    int revocation_reason;                       /* RFC 5280 CRLReason code */
    time_t revoked_at;
} enr_certificate;

void enr_certificate_free(enr_certificate *cert);

/* Fills issuer, serial, subject, validity, SPKI hash and DER from an issued
 * certificate, in the forms the store keeps (the caller adds the
 * registration id and policy). Works on a certificate fresh from
 * enr_ca_issue. Free with enr_certificate_free. */
enr_code enr_certificate_from_x509(const X509 *x509, enr_certificate *out, enr_error *err);

typedef struct enr_operation {
    char operation_id[ENR_STORE_ID_MAX + 1];
    char registration_id[ENR_STORE_ID_MAX + 1];  /* empty in a commit: the registration's */
    char status[ENR_STORE_WORD_MAX + 1];         /* as for registrations */
    /* The answer, owned when read. With a certificate it is kept without
     * it: certificate_issuer and certificate_serial name the certificate
     * record, and a reader joins the certificate and its chain back in
     * (enr_dps_complete_assigned). Empty for answers without one, and for
     * operations stored before schema 9, whose answer is whole. */
    char *result_json;
    time_t created_at, updated_at;               /* 0: now */
    char certificate_issuer[ENR_STORE_DN_MAX + 1];
    char certificate_serial[ENR_STORE_SERIAL_MAX + 1];
} enr_operation;

void enr_operation_free(enr_operation *op);

/* ---- lists -------------------------------------------------------------- */

typedef struct enr_ca_record_list { enr_ca_record *items; size_t count; } enr_ca_record_list;
typedef struct enr_policy_list { enr_credential_policy *items; size_t count; } enr_policy_list;
typedef struct enr_enrollment_list { enr_enrollment *items; size_t count; } enr_enrollment_list;
typedef struct enr_registration_list { enr_registration *items; size_t count; } enr_registration_list;
typedef struct enr_certificate_list { enr_certificate *items; size_t count; } enr_certificate_list;
typedef struct enr_audit_list { enr_audit_event *items; size_t count; } enr_audit_list;

void enr_ca_record_list_free(enr_ca_record_list *list);
void enr_policy_list_free(enr_policy_list *list);
void enr_enrollment_list_free(enr_enrollment_list *list);
void enr_registration_list_free(enr_registration_list *list);
void enr_certificate_list_free(enr_certificate_list *list);
void enr_audit_list_free(enr_audit_list *list);

typedef enum enr_revoked_filter {
    ENR_REVOKED_ANY = 0,
    ENR_REVOKED_ONLY,
    ENR_REVOKED_NONE   /* only certificates not revoked */
} enr_revoked_filter;

/* Zero-initialise and set what matters; NULL or 0 means "any". */
typedef struct enr_certificate_filter {
    const char *registration_id;
    const char *issuer;
    /* > 0: only certificates with now <= not_after <= now + expiring_within
     * (seconds; already expired ones are left out). */
    int64_t expiring_within;
    time_t now;                  /* 0: the current time */
    enr_revoked_filter revoked;
    int64_t after_id;            /* only ids above this: pass the last id seen to page */
    size_t limit;                /* 0: all */
} enr_certificate_filter;

typedef struct enr_registration_filter {
    enr_enrollment_kind enrollment_kind;  /* 0: any; set with enrollment_id */
    const char *enrollment_id;
    const char *status;
    const char *after;           /* only registration ids sorting after this (paging) */
    size_t limit;
} enr_registration_filter;

typedef struct enr_audit_filter {
    const char *registration_id;
    time_t since;                /* only events at or after this */
    int64_t after_id;
    size_t limit;
} enr_audit_filter;

/* ---- CAs and policies --------------------------------------------------- */

/* Creation fills the record's timestamps (and etag where it has one, and
 * lower-cases an enrollment's id) in the caller's record. Taken names are
 * ENR_E_EXISTS; a missing referenced row ENR_E_NOTFOUND.
 * `audit` may be NULL everywhere; when given it is written in the same
 * transaction as the change. */
enr_code enr_store_create_ca(enr_store *store, enr_ca_record *ca, const enr_audit_event *audit,
                             enr_error *err);
enr_code enr_store_get_ca(enr_store *store, const char *name, enr_ca_record *out, enr_error *err);
enr_code enr_store_list_cas(enr_store *store, enr_ca_record_list *out, enr_error *err);
/* A bootstrap CA's proof of possession: a new code to sign (verified
 * false), or the code proven (verified true; code may be empty). */
enr_code enr_store_set_ca_verification(enr_store *store, const char *name, const char *code,
                                       bool verified, const enr_audit_event *audit, enr_error *err);

enr_code enr_store_create_policy(enr_store *store, enr_credential_policy *policy,
                                 const enr_audit_event *audit, enr_error *err);
enr_code enr_store_get_policy(enr_store *store, const char *name, enr_credential_policy *out,
                              enr_error *err);
enr_code enr_store_list_policies(enr_store *store, enr_policy_list *out, enr_error *err);

/* ---- enrollments -------------------------------------------------------- */

enr_code enr_store_create_enrollment(enr_store *store, enr_enrollment *enrollment,
                                     const enr_audit_event *audit, enr_error *err);
/* An individual enrollment by registration id (any case), or a group by id. */
enr_code enr_store_get_enrollment(enr_store *store, enr_enrollment_kind kind, const char *id,
                                  enr_enrollment *out, enr_error *err);
/* All enrollments of a kind, oldest first (attestation tries the groups). */
enr_code enr_store_list_enrollments(enr_store *store, enr_enrollment_kind kind,
                                    enr_enrollment_list *out, enr_error *err);
/* Disabling stops new registrations; certificates already issued stay valid
 * until revoked. A device in a group is disabled alone by a disabled
 * individual enrollment of its own. */
enr_code enr_store_set_enrollment_enabled(enr_store *store, enr_enrollment_kind kind, const char *id,
                                          bool enabled, const enr_audit_event *audit, enr_error *err);

/* Key rotation without downtime: the primary key becomes the secondary
 * (devices still holding it keep registering) and `new_primary` (strict
 * base64, as for creation) the primary; the old secondary is gone. A
 * group's devices hold keys derived from these, so rotating a group key
 * means handing devices keys derived from the new primary. Unknown, or an
 * X.509 enrollment: ENR_E_NOTFOUND. */
enr_code enr_store_rotate_enrollment_key(enr_store *store, enr_enrollment_kind kind, const char *id,
                                         const char *new_primary, const enr_audit_event *audit,
                                         enr_error *err);

/* EST's HTTP Basic secret of an enrollment: `secret_sha256` (64 lower-case
 * hex digits) replaces the one it had; NULL or "" removes it. Unknown:
 * ENR_E_NOTFOUND. */
enr_code enr_store_set_enrollment_basic_secret(enr_store *store, enr_enrollment_kind kind, const char *id,
                                               const char *secret_sha256, const enr_audit_event *audit,
                                               enr_error *err);

/* ---- registrations, certificates, operations ---------------------------- */

/* One transaction: upsert the registration, insert the certificate (may be
 * NULL: a classic registration), insert the operation and the audit event.
 * All or nothing. A certificate whose (issuer, serial) is taken is
 * ENR_E_EXISTS, so enr_ca_issue draws another serial; the certificate's and
 * operation's registration ids, if set, must be the registration's. */
/* A registration an operator disabled is never overwritten: committing to
 * it is ENR_E_POLICY (reason ENR_R_REGISTRATION_DISABLED) and writes
 * nothing. */
enr_code enr_store_commit_registration(enr_store *store, const enr_registration *registration,
                                       const enr_certificate *cert, const enr_operation *op,
                                       const enr_audit_event *audit, enr_error *err);
/* One registration commit of a group commit. */
typedef struct enr_registration_commit {
    const enr_registration *registration;
    const enr_certificate *certificate;  /* NULL: nothing issued */
    const enr_operation *operation;
    const enr_audit_event *audit;        /* may be NULL */
    /* Re-checked inside the transaction, since what attestation saw may
     * have changed while the certificate was being issued (an operator
     * revoked the credential or disabled the enrollment): */
    const char *credential_issuer;       /* a certificate of this store presented as */
    const char *credential_serial;       /* the credential must still be unrevoked; NULL: none */
    bool require_enrollment_enabled;     /* the registration's enrollment must still be enabled */
    /* An attestation made earlier than this request (a transport that
     * authenticates once per connection): the enrollment must still be
     * the one attestation saw (this etag: a rotated key or any other edit
     * refuses), and a group one must not have been overtaken by an
     * individual enrollment for the id since. NULL: not checked (the
     * request was attested just now). */
    const char *enrollment_etag;
    enr_code result;                     /* set by enr_store_commit_registrations */
    enr_error error;                     /* when result is not ENR_OK */
} enr_registration_commit;

/* Group commit: many registration commits in one transaction, so one
 * fsync covers them all. Each item is all or nothing on its own (a taken
 * serial or a bad field rolls back that item only, and its result says
 * why); the others commit. Every item is checked again inside the
 * transaction, each refusal ENR_E_POLICY with its reason in item.error:
 * the enrollment disabled meanwhile (ENR_R_ENROLLMENT_DISABLED, when
 * require_enrollment_enabled), the credential revoked
 * (ENR_R_CREDENTIAL_REVOKED), the registration disabled
 * (ENR_R_REGISTRATION_DISABLED) or bound to another enrollment while this
 * item comes through a group (ENR_R_ENROLLMENT_MISMATCH: a registration
 * stays with its enrollment until enr_store_move_registration; an
 * individual enrollment takes its id over), the enrollment changed since
 * an earlier attestation (enrollment_etag; ENR_R_ENROLLMENT_MISMATCH too),
 * or the certificate's key
 * blocked (ENR_R_KEY_COMPROMISED). The return value is ENR_OK when the transaction
 * committed; otherwise nothing did, and every item's result says so. */
enr_code enr_store_commit_registrations(enr_store *store, enr_registration_commit *items, size_t count,
                                        enr_error *err);
enr_code enr_store_get_registration(enr_store *store, const char *registration_id,
                                    enr_registration *out, enr_error *err);
/* Ordered by registration id. */
enr_code enr_store_list_registrations(enr_store *store, const enr_registration_filter *filter,
                                      enr_registration_list *out, enr_error *err);
/* Disabling sets the status to "disabled" (the service then refuses the
 * device, whatever its enrollment says) and remembers the status it had;
 * enabling gives that back. Both are idempotent and give a new etag;
 * certificates are untouched (revoke them separately). Unknown:
 * ENR_E_NOTFOUND. */
enr_code enr_store_set_registration_enabled(enr_store *store, const char *registration_id, bool enabled,
                                            const enr_audit_event *audit, enr_error *err);

enr_code enr_store_get_certificate(enr_store *store, const char *issuer, const char *serial,
                                   enr_certificate *out, enr_error *err);
/* Ordered by id (issue order). filter may be NULL. */
enr_code enr_store_list_certificates(enr_store *store, const enr_certificate_filter *filter,
                                     enr_certificate_list *out, enr_error *err);

/* `reason` is an RFC 5280 CRLReason code (see enr_revocation_reason_parse),
 * `when` 0 means now. Unknown: ENR_E_NOTFOUND; already revoked: ENR_E_EXISTS. */
enr_code enr_store_revoke_certificate(enr_store *store, const char *issuer, const char *serial,
                                      int reason, time_t when, const enr_audit_event *audit,
                                      enr_error *err);
/* Revokes every certificate of a registration not revoked yet, and returns
 * them (as now revoked) so their CAs can publish new CRLs. `revoked` may be
 * NULL. An unknown registration is ENR_E_NOTFOUND; one with nothing left to
 * revoke is ENR_OK with an empty list. */
enr_code enr_store_revoke_registration(enr_store *store, const char *registration_id, int reason,
                                       time_t when, const enr_audit_event *audit,
                                       enr_certificate_list *revoked, enr_error *err);

/* Moves a registration to another enrollment (an operator's decision,
 * audited): from then on only that enrollment's credentials register it.
 * Unknown registration or enrollment: ENR_E_NOTFOUND. */
enr_code enr_store_move_registration(enr_store *store, const char *registration_id, enr_enrollment_kind kind,
                                     const char *enrollment_id, const enr_audit_event *audit, enr_error *err);

/* Keys revoked for keyCompromise are blocked for good: revoking with that
 * reason (above) blocks the certificate's key, and enr_store_block_key
 * records one revoked elsewhere (a CA directory attached to this store).
 * Keyed by SPKI SHA-256 (64 hex digits); blocking twice keeps the first. */
enr_code enr_store_block_key(enr_store *store, const char *spki_sha256, const char *issuer, const char *serial,
                             time_t when, const enr_audit_event *audit, enr_error *err);
enr_code enr_store_key_compromised(enr_store *store, const char *spki_sha256, bool *out, enr_error *err);

/* The next CRL number of the CA named ISSUER (its subject, as certificates'
 * issuer): one more than the last this store handed out, and at least
 * AT_LEAST (what the CA directory would use). Strictly increasing for
 * every process and node sharing the store (RFC 5280 5.2.3), whatever
 * copy of the CA directory each one holds. */
enr_code enr_store_next_crl_number(enr_store *store, const char *issuer, int64_t at_least, int64_t *number,
                                   enr_error *err);

enr_code enr_store_get_operation(enr_store *store, const char *operation_id, enr_operation *out,
                                 enr_error *err);

/* ---- audit -------------------------------------------------------------- */

/* For requests refused before anything else is written. */
enr_code enr_store_record_audit(enr_store *store, const enr_audit_event *audit, enr_error *err);
/* Many events in one transaction (one fsync): enrolld's batches of refusals. */
enr_code enr_store_record_audits(enr_store *store, const enr_audit_event *events, size_t count, enr_error *err);
/* Retention, oldest first: deletes at most `limit` (1..100000) events,
 * those written before the first one at or after `before` (0: no age
 * bound) and those whose ids are not among the newest `keep_rows` ids
 * handed out (0: no row bound; gaps in the ids only keep fewer);
 * `*deleted` says how many. Call again while it deletes `limit`: each call
 * is one short transaction, and costs the rows it deletes, not the table. */
enr_code enr_store_prune_audit(enr_store *store, time_t before, long keep_rows, size_t limit, size_t *deleted,
                               enr_error *err);
/* Whether a write transaction can begin now (a read-only file, a lock held
 * too long): ENR_E_IO if not. It writes nothing. */
enr_code enr_store_check_writable(enr_store *store, enr_error *err);
/* Oldest first. filter may be NULL. */
enr_code enr_store_list_audit(enr_store *store, const enr_audit_filter *filter, enr_audit_list *out,
                              enr_error *err);

/* ---- AWS IoT fleet provisioning ----------------------------------------- */

/* Provisioning templates (managed by `enroll admin template`), things, and
 * the certificates the MQTT front end issues through CreateCertificateFromCsr
 * and CreateKeysAndCertificate: pending, each with a single-use ownership
 * token, until RegisterThing activates it. docs/store.md, "AWS fleet
 * provisioning", has the rules; refusals are ENR_E_POLICY with a typed
 * reason (error.h), never to be told apart by their messages. */
#define ENR_STORE_TEMPLATE_NAME_MAX 36   /* AWS: [0-9A-Za-z_-]{1,36} */
#define ENR_STORE_THING_NAME_MAX 128     /* AWS: [a-zA-Z0-9:_-]{1,128}; thing types and groups alike */
#define ENR_STORE_URL_MAX 2048
#define ENR_STORE_CLAIM_CAS_MAX 16
#define ENR_STORE_HOOK_CA_MAX ((size_t)64 * 1024)   /* PEM bytes */
#define ENR_STORE_JSON_MAX ((size_t)64 * 1024)      /* attributes or groups of a thing */
#define ENR_AWS_HOOK_TIMEOUT_DEFAULT_MS 5000
#define ENR_AWS_HOOK_TIMEOUT_MIN_MS 100
#define ENR_AWS_HOOK_TIMEOUT_MAX_MS 60000
#define ENR_AWS_TOKEN_LIFETIME 3600      /* seconds: AWS's ownership tokens live one hour */
#define ENR_AWS_TOKEN_BYTES 32           /* random bytes in a token (RAND_bytes) */
#define ENR_AWS_TOKEN_MAX 64             /* its base64url text (43 characters) */

/* True for names AWS accepts (the rules above). */
bool enr_aws_template_name_valid(const char *name);
bool enr_aws_thing_name_valid(const char *name);

typedef struct enr_aws_template_record {
    char name[ENR_STORE_TEMPLATE_NAME_MAX + 1];
    char *body;                                  /* the template JSON; owned when read */
    /* Uploaded, proven (bootstrap) CAs a claim certificate must chain to. */
    char claim_cas[ENR_STORE_CLAIM_CAS_MAX][ENR_STORE_ID_MAX + 1];
    size_t claim_ca_count;                       /* 1..ENR_STORE_CLAIM_CAS_MAX */
    bool allow_server_keygen;                    /* CreateKeysAndCertificate; default false */
    char policy[ENR_STORE_ID_MAX + 1];           /* the credential policy of issued certificates */
    char hook_url[ENR_STORE_URL_MAX + 1];        /* pre-provisioning hook, https://; empty: none */
    char *hook_ca_pem;                           /* the CA(s) the hook's server must chain to (PEM);
                                                  * required with a hook, owned when read */
    int hook_timeout_ms;                         /* 0 on creation: ENR_AWS_HOOK_TIMEOUT_DEFAULT_MS */
    bool enabled;                                /* set true by creation */
    time_t created_at, updated_at;               /* set by the store */
} enr_aws_template_record;

void enr_aws_template_record_free(enr_aws_template_record *t);

typedef enum enr_aws_cert_status {
    ENR_AWS_CERT_PENDING = 1, /* issued, waiting for RegisterThing with its token */
    ENR_AWS_CERT_ACTIVE,      /* the thing's certificate */
    ENR_AWS_CERT_SUPERSEDED,  /* replaced by a newer active one, and revoked (superseded) */
    ENR_AWS_CERT_REVOKED      /* revoked without a successor: never activated (the sweep) */
} enr_aws_cert_status;

/* "pending", "active", "superseded", "revoked". */
const char *enr_aws_cert_status_name(enr_aws_cert_status status);

typedef struct enr_aws_thing_certificate {
    char issuer[ENR_STORE_DN_MAX + 1];           /* the row in the certificate table */
    char serial[ENR_STORE_SERIAL_MAX + 1];
    char fingerprint_sha256[ENR_STORE_SPKI_HEX + 1]; /* SHA-256 of its DER: how a connection presents it */
    char thing_name[ENR_STORE_THING_NAME_MAX + 1];   /* empty while pending */
    char template_name[ENR_STORE_TEMPLATE_NAME_MAX + 1];
    enr_aws_cert_status status;
    time_t created_at, updated_at;
} enr_aws_thing_certificate;

typedef struct enr_aws_thing {
    char name[ENR_STORE_THING_NAME_MAX + 1];
    char template_name[ENR_STORE_TEMPLATE_NAME_MAX + 1]; /* the template it was last provisioned by */
    char *attributes_json;                       /* an object of strings; owned when read */
    char *groups_json;                           /* an array of thing group names; owned when read */
    char thing_type[ENR_STORE_THING_NAME_MAX + 1]; /* empty: none */
    bool enabled;
    time_t created_at, updated_at;
    enr_aws_thing_certificate *certificates;     /* enr_store_get_aws_thing only, oldest first */
    size_t certificate_count;
} enr_aws_thing;

void enr_aws_thing_free(enr_aws_thing *thing);

typedef struct enr_aws_template_list { enr_aws_template_record *items; size_t count; } enr_aws_template_list;
typedef struct enr_aws_thing_list { enr_aws_thing *items; size_t count; } enr_aws_thing_list;
void enr_aws_template_list_free(enr_aws_template_list *list);
void enr_aws_thing_list_free(enr_aws_thing_list *list);

/* Creation checks the name, parses the body with enr_aws_template_parse (a
 * template that cannot be evaluated is ENR_E_PARSE or ENR_E_UNSUPPORTED
 * with the path inside it), the hook (https URL with a host, a CA PEM, a
 * timeout in range), and inside the transaction that the policy exists
 * (ENR_E_NOTFOUND) and that every claim CA is a bootstrap CA whose
 * possession was proven (ENR_E_NOTFOUND, or ENR_E_POLICY with
 * ENR_R_CA_UNVERIFIED). A taken name is ENR_E_EXISTS. */
enr_code enr_store_create_aws_template(enr_store *store, enr_aws_template_record *t,
                                       const enr_audit_event *audit, enr_error *err);
enr_code enr_store_get_aws_template(enr_store *store, const char *name, enr_aws_template_record *out,
                                    enr_error *err);
/* By name. */
enr_code enr_store_list_aws_templates(enr_store *store, enr_aws_template_list *out, enr_error *err);
/* Things and certificates keep the name of a deleted template (history);
 * tokens issued under it then fail RegisterThing at the front end, which
 * finds no template. Unknown: ENR_E_NOTFOUND. */
enr_code enr_store_delete_aws_template(enr_store *store, const char *name, const enr_audit_event *audit,
                                       enr_error *err);
/* A disabled template issues nothing (the front end checks; creating a
 * pending certificate under it is ENR_R_TEMPLATE_DISABLED). Idempotent. */
enr_code enr_store_set_aws_template_enabled(enr_store *store, const char *name, bool enabled,
                                            const enr_audit_event *audit, enr_error *err);

/* A thing and its certificates. Unknown: ENR_E_NOTFOUND. */
enr_code enr_store_get_aws_thing(enr_store *store, const char *name, enr_aws_thing *out, enr_error *err);
/* By name, without certificates. template_name NULL: all. */
enr_code enr_store_list_aws_things(enr_store *store, const char *template_name, enr_aws_thing_list *out,
                                   enr_error *err);
/* A disabled thing keeps its certificates (revoke them separately) but
 * RegisterThing for it is refused (ENR_R_THING_DISABLED). Idempotent. */
enr_code enr_store_set_aws_thing_enabled(enr_store *store, const char *name, bool enabled,
                                         const enr_audit_event *audit, enr_error *err);

/* The connection that is answered: its TLS client certificate (the claim,
 * or the device's own when it renews), as SHA-256 of the DER in hex. */
typedef struct enr_aws_pending {
    const enr_certificate *certificate;  /* just issued; registration_id empty */
    const char *template_name;           /* must exist and be enabled */
    const char *connection_fingerprint;  /* 64 hex digits */
    time_t now;                          /* 0: now; the token expires ENR_AWS_TOKEN_LIFETIME later */
} enr_aws_pending;

/* One transaction: stores the certificate (ENR_E_EXISTS for a taken
 * serial: enr_ca_issue draws another), marks it pending under the template,
 * and makes its ownership token: ENR_AWS_TOKEN_BYTES from RAND_bytes,
 * base64url without padding, written to `token` and stored only as its
 * SHA-256. Answer the token to the device once; it is never readable again. */
enr_code enr_store_aws_create_pending(enr_store *store, const enr_aws_pending *pending,
                                      char token[ENR_AWS_TOKEN_MAX + 1], const enr_audit_event *audit,
                                      enr_error *err);

/* RegisterThing, once the template was evaluated (and the hook said yes). */
typedef struct enr_aws_register {
    const char *token;                   /* certificateOwnershipToken as the device sent it */
    const char *connection_fingerprint;  /* this connection's client certificate (as above) */
    const char *template_name;           /* the template of the RegisterThing topic */
    const char *thing_name;              /* from the evaluated template */
    const char *attributes_json;         /* object of strings; NULL: {} */
    const char *groups_json;             /* array of thing group names; NULL: [] */
    const char *thing_type;              /* NULL or empty: none */
    time_t now;                          /* 0: now (tests pass a clock) */
} enr_aws_register;

typedef struct enr_aws_register_result {
    char issuer[ENR_STORE_DN_MAX + 1];   /* the certificate activated */
    char serial[ENR_STORE_SERIAL_MAX + 1];
    bool thing_created;                  /* false: an existing thing was updated */
    enr_certificate_list superseded;     /* now revoked (superseded): republish their CAs' CRLs */
} enr_aws_register_result;

void enr_aws_register_result_free(enr_aws_register_result *result);

/* One transaction, all or nothing: consumes the token, creates or updates
 * the thing, activates the token's certificate, and marks the thing's
 * previously active certificates superseded and revokes them (reason
 * superseded). Refusals write nothing (not even the token's use), each
 * ENR_E_POLICY with its reason, checked in this order:
 *   ENR_R_TOKEN_UNKNOWN, ENR_R_TOKEN_USED, ENR_R_TOKEN_EXPIRED (now >=
 *   issued + ENR_AWS_TOKEN_LIFETIME), ENR_R_TOKEN_WRONG_CONNECTION (another
 *   client certificate than the one that got the token),
 *   ENR_R_TOKEN_TEMPLATE_MISMATCH, ENR_R_CREDENTIAL_REVOKED (the pending
 *   certificate was revoked), ENR_R_THING_MISMATCH (the connection's
 *   certificate is the active certificate of another thing: a device renews
 *   its own thing only), ENR_R_THING_DISABLED, ENR_R_THING_OWNED (the thing
 *   has an active certificate and the connection's certificate is none of
 *   them: another device owns it).
 * The audit event, if any, is written in the same transaction. */
enr_code enr_store_aws_register_thing(enr_store *store, const enr_aws_register *request,
                                      enr_aws_register_result *result, const enr_audit_event *audit,
                                      enr_error *err);

/* Revokes (cessationOfOperation) at most `limit` (1..100000) certificates
 * still pending whose token expired at or before `now` (0: now), marks them
 * revoked, and returns them (`revoked` may be NULL) so their CAs publish
 * new CRLs. Revoked rather than dropped: the device holds the signed
 * certificate (it was answered with its token), so only a CRL entry stops
 * it from being used; and the store deletes nothing but audit events. The
 * audit event, if given, is written when something was revoked. */
enr_code enr_store_aws_sweep_pending(enr_store *store, time_t now, size_t limit, const enr_audit_event *audit,
                                     enr_certificate_list *revoked, enr_error *err);

/* The thing whose live active certificate (active, not revoked) has this
 * fingerprint (SHA-256 of its DER, 64 hex digits): how the front end knows
 * a connection is a provisioned device renewing, not a claim.
 * ENR_E_NOTFOUND when no such certificate is active. */
enr_code enr_store_aws_thing_of_certificate(enr_store *store, const char *fingerprint,
                                            char thing_name[ENR_STORE_THING_NAME_MAX + 1], enr_error *err);

/* RegisterThing's token checks alone, writing nothing (the same refusals,
 * ENR_R_TOKEN_UNKNOWN .. ENR_R_CREDENTIAL_REVOKED, from request's token,
 * connection_fingerprint, template_name and now; the rest is not read),
 * and the pending certificate the token is for: so the front end can
 * evaluate the template and ask the hook about that certificate before
 * enr_store_aws_register_thing checks everything again and writes. */
enr_code enr_store_aws_token_certificate(enr_store *store, const enr_aws_register *request,
                                         char issuer[ENR_STORE_DN_MAX + 1], char serial[ENR_STORE_SERIAL_MAX + 1],
                                         enr_error *err);

/* What the store holds of ISSUER's revocations: how many, and the time of
 * the latest. Cheap (an index of revoked certificates): a CRL publisher
 * asks it every few seconds to learn whether its CRL is stale. */
enr_code enr_store_revocation_state(enr_store *store, const char *issuer, int64_t *count, time_t *latest,
                                    enr_error *err);

/* ---- moving a store -------------------------------------------------------- */

#define ENR_STORE_TABLES_MAX 32

typedef struct enr_store_copy_report {
    size_t tables;
    struct {
        char name[48];
        int64_t rows;            /* copied, and counted again in the destination */
    } table[ENR_STORE_TABLES_MAX];
    int64_t rows;
} enr_store_copy_report;

/* Told now and then how far a copy is: TABLE, rows copied of TOTAL. */
typedef void (*enr_store_copy_progress)(void *ctx, const char *table, int64_t done, int64_t total);

/* Copies every row of FROM into TO (a SQLite store into PostgreSQL, or
 * back): one read snapshot of FROM, one transaction in TO, committed only
 * when every table's row count in TO equals FROM's. TO must be empty (a
 * store just created: ENR_E_EXISTS otherwise); both at the same schema
 * version. A table or column this code does not know is refused
 * (ENR_E_INTERNAL) rather than left behind. PROGRESS may be NULL. */
enr_code enr_store_copy(enr_store *from, enr_store *to, enr_store_copy_progress progress, void *ctx,
                        enr_store_copy_report *report, enr_error *err);

/* ---- backends ----------------------------------------------------------- */

/* What a backend implements. Every argument has been checked and
 * normalised by the enr_store_* function before the call: names and ids
 * are valid, registration and group ids lower case, serials canonical,
 * timestamps, etags and audit times filled in. A NULL entry makes the
 * enr_store_* call fail with ENR_E_UNSUPPORTED. `out` records and lists
 * are zeroed before the call and freed by the caller on failure. */
typedef struct enr_store_ops {
    const char *name;
    const char *(*location)(const void *impl); /* optional */
    void (*close)(void *impl);
    enr_code (*integrity_check)(void *impl, enr_error *err);

    enr_code (*create_ca)(void *impl, const enr_ca_record *ca, const enr_audit_event *audit,
                          enr_error *err);
    enr_code (*get_ca)(void *impl, const char *name, enr_ca_record *out, enr_error *err);
    enr_code (*list_cas)(void *impl, enr_ca_record_list *out, enr_error *err);
    enr_code (*set_ca_verification)(void *impl, const char *name, const char *code, bool verified,
                                    time_t now, const enr_audit_event *audit, enr_error *err);

    enr_code (*create_policy)(void *impl, const enr_credential_policy *policy,
                              const enr_audit_event *audit, enr_error *err);
    enr_code (*get_policy)(void *impl, const char *name, enr_credential_policy *out, enr_error *err);
    enr_code (*list_policies)(void *impl, enr_policy_list *out, enr_error *err);

    enr_code (*create_enrollment)(void *impl, const enr_enrollment *enrollment,
                                  const enr_audit_event *audit, enr_error *err);
    enr_code (*get_enrollment)(void *impl, enr_enrollment_kind kind, const char *id,
                               enr_enrollment *out, enr_error *err);
    enr_code (*list_enrollments)(void *impl, enr_enrollment_kind kind, enr_enrollment_list *out,
                                 enr_error *err);
    enr_code (*set_enrollment_enabled)(void *impl, enr_enrollment_kind kind, const char *id,
                                       bool enabled, const char *etag, time_t now,
                                       const enr_audit_event *audit, enr_error *err);

    enr_code (*commit_registration)(void *impl, const enr_registration *registration,
                                    const enr_certificate *cert, const enr_operation *op,
                                    const enr_audit_event *audit, enr_error *err);
    /* Optional (NULL: enr_store_commit_registrations commits one by one).
     * Items arrive checked and normalised; the backend sets each result. */
    enr_code (*commit_registrations)(void *impl, enr_registration_commit *items, size_t count,
                                     enr_error *err);
    enr_code (*get_registration)(void *impl, const char *registration_id, enr_registration *out,
                                 enr_error *err);
    enr_code (*list_registrations)(void *impl, const enr_registration_filter *filter,
                                   enr_registration_list *out, enr_error *err);
    enr_code (*set_registration_enabled)(void *impl, const char *registration_id, bool enabled,
                                         const char *etag, time_t now, const enr_audit_event *audit,
                                         enr_error *err);

    enr_code (*get_certificate)(void *impl, const char *issuer, const char *serial,
                                enr_certificate *out, enr_error *err);
    /* filter->now is filled in. */
    enr_code (*list_certificates)(void *impl, const enr_certificate_filter *filter,
                                  enr_certificate_list *out, enr_error *err);
    enr_code (*revoke_certificate)(void *impl, const char *issuer, const char *serial, int reason,
                                   time_t when, const enr_audit_event *audit, enr_error *err);
    /* `revoked` is never NULL here. */
    enr_code (*revoke_registration)(void *impl, const char *registration_id, int reason, time_t when,
                                    const enr_audit_event *audit, enr_certificate_list *revoked,
                                    enr_error *err);

    enr_code (*get_operation)(void *impl, const char *operation_id, enr_operation *out,
                              enr_error *err);

    enr_code (*rotate_enrollment_key)(void *impl, enr_enrollment_kind kind, const char *id,
                                      const char *new_primary, const char *etag, time_t now,
                                      const enr_audit_event *audit, enr_error *err);
    enr_code (*set_enrollment_basic_secret)(void *impl, enr_enrollment_kind kind, const char *id,
                                            const char *secret_sha256, const char *etag, time_t now,
                                            const enr_audit_event *audit, enr_error *err);
    enr_code (*move_registration)(void *impl, const char *registration_id, enr_enrollment_kind kind,
                                  const char *enrollment_id, const char *etag, time_t now,
                                  const enr_audit_event *audit, enr_error *err);
    enr_code (*block_key)(void *impl, const char *spki_sha256, const char *issuer, const char *serial,
                          time_t when, const enr_audit_event *audit, enr_error *err);
    enr_code (*key_compromised)(void *impl, const char *spki_sha256, bool *out, enr_error *err);
    enr_code (*next_crl_number)(void *impl, const char *issuer, int64_t at_least, int64_t *number, enr_error *err);
    enr_code (*revocation_state)(void *impl, const char *issuer, int64_t *count, time_t *latest, enr_error *err);
    /* Only between two stores whose ops tables have this same function. */
    enr_code (*copy_into)(void *to, void *from, enr_store_copy_progress progress, void *ctx,
                          enr_store_copy_report *report, enr_error *err);

    enr_code (*record_audit)(void *impl, const enr_audit_event *audit, enr_error *err);
    enr_code (*record_audits)(void *impl, const enr_audit_event *events, size_t count, enr_error *err);
    enr_code (*prune_audit)(void *impl, time_t before, long keep_rows, size_t limit, size_t *deleted,
                            enr_error *err);
    enr_code (*check_writable)(void *impl, enr_error *err);
    enr_code (*list_audit)(void *impl, const enr_audit_filter *filter, enr_audit_list *out,
                           enr_error *err);
    /* AWS fleet provisioning (optional for a backend: NULL is ENR_E_UNSUPPORTED). */
    enr_code (*create_aws_template)(void *impl, const enr_aws_template_record *t, const enr_audit_event *audit,
                                    enr_error *err);
    enr_code (*get_aws_template)(void *impl, const char *name, enr_aws_template_record *out, enr_error *err);
    enr_code (*list_aws_templates)(void *impl, enr_aws_template_list *out, enr_error *err);
    enr_code (*delete_aws_template)(void *impl, const char *name, const enr_audit_event *audit, enr_error *err);
    enr_code (*set_aws_template_enabled)(void *impl, const char *name, bool enabled, time_t now,
                                         const enr_audit_event *audit, enr_error *err);
    enr_code (*get_aws_thing)(void *impl, const char *name, enr_aws_thing *out, enr_error *err);
    enr_code (*list_aws_things)(void *impl, const char *template_name, enr_aws_thing_list *out, enr_error *err);
    enr_code (*set_aws_thing_enabled)(void *impl, const char *name, bool enabled, time_t now,
                                      const enr_audit_event *audit, enr_error *err);
    /* The certificate is checked, the token already hashed (token_sha256,
     * lower-case hex), `fingerprint` the certificate's own. */
    enr_code (*aws_create_pending)(void *impl, const enr_certificate *cert, const char *fingerprint,
                                   const char *template_name, const char *connection_fingerprint,
                                   const char *token_sha256, time_t now, const enr_audit_event *audit,
                                   enr_error *err);
    /* request->token is the token's SHA-256 (hex) here; now is filled in;
     * JSON is canonical (compact, sorted keys). */
    enr_code (*aws_register_thing)(void *impl, const enr_aws_register *request, enr_aws_register_result *result,
                                   const enr_audit_event *audit, enr_error *err);
    enr_code (*aws_sweep_pending)(void *impl, time_t now, size_t limit, const enr_audit_event *audit,
                                  enr_certificate_list *revoked, enr_error *err);
    enr_code (*aws_thing_of_certificate)(void *impl, const char *fingerprint,
                                         char thing_name[ENR_STORE_THING_NAME_MAX + 1], enr_error *err);
    /* As aws_register_thing: request->token hashed, now filled in. */
    enr_code (*aws_token_certificate)(void *impl, const enr_aws_register *request, char issuer[ENR_STORE_DN_MAX + 1],
                                      char serial[ENR_STORE_SERIAL_MAX + 1], enr_error *err);
} enr_store_ops;

/* Wraps a backend: `ops` must outlive the store; ops->close(impl) runs in
 * enr_store_close (or right away, when enr_store_new fails). */
enr_code enr_store_new(const enr_store_ops *ops, void *impl, enr_store **out, enr_error *err);

#ifdef __cplusplus
}
#endif
#endif
