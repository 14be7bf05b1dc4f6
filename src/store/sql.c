/* The relational store: every store operation as SQL over a driver
 * (sql_driver.h), so SQLite and PostgreSQL share one implementation, one set
 * of checks and one test suite. Writes run under the driver's write lock
 * (SQLite: BEGIN IMMEDIATE; PostgreSQL: a transaction-scoped advisory
 * lock), so read-check-write sequences are serialised across processes and
 * nodes alike; every value is bound as a parameter: no SQL text is ever
 * built from data. Statements are prepared once per connection and kept. */
#include <errno.h>
#include <fcntl.h>
#include <openssl/x509v3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/stat.h>
#include <unistd.h>

#include "enroll/store.h"
#include "store/sql_driver.h"

/* ---- schema ------------------------------------------------------------- */

/* Migration N (1-based) brings the schema from version N-1 to N. Never edit
 * one that has shipped: append a new one. All pending migrations run in one
 * transaction, so a database is at one version or the next, never between.
 * One schema for both dialects: {BLOB}, {INT64} and {ROWID} are each
 * dialect's words (expand_schema); MIGRATIONS_POSTGRES replaces the few
 * migrations whose statements differ. */
static const char *const MIGRATIONS[] = {
    /* 1: the first schema */
    "CREATE TABLE ca (\n"
    "  name TEXT PRIMARY KEY NOT NULL,\n"
    "  role TEXT NOT NULL CHECK (role IN ('issuing', 'bootstrap')),\n"
    "  certificate {BLOB} NOT NULL,\n"
    "  chain_pem TEXT,\n"
    "  key_ref TEXT,\n"
    "  verification_code TEXT,\n"
    "  verified INTEGER NOT NULL DEFAULT 0 CHECK (verified IN (0, 1)),\n"
    "  created_at {INT64} NOT NULL,\n"
    "  updated_at {INT64} NOT NULL\n"
    ");\n"
    "CREATE TABLE credential_policy (\n"
    "  name TEXT PRIMARY KEY NOT NULL,\n"
    "  validity TEXT NOT NULL,\n"
    "  renewal_window TEXT NOT NULL,\n"
    "  ca_name TEXT NOT NULL REFERENCES ca (name),\n"
    "  key_types TEXT NOT NULL,\n"
    "  created_at {INT64} NOT NULL,\n"
    "  updated_at {INT64} NOT NULL\n"
    ");\n"
    "CREATE TABLE enrollment_group (\n"
    "  group_id TEXT PRIMARY KEY NOT NULL,\n"
    "  attestation TEXT NOT NULL CHECK (attestation IN ('symmetric', 'x509')),\n"
    "  primary_key TEXT,\n"
    "  secondary_key TEXT,\n"
    "  policy TEXT REFERENCES credential_policy (name),\n"
    "  assigned_hub TEXT NOT NULL,\n"
    "  enabled INTEGER NOT NULL CHECK (enabled IN (0, 1)),\n"
    "  etag TEXT NOT NULL,\n"
    "  created_at {INT64} NOT NULL,\n"
    "  updated_at {INT64} NOT NULL,\n"
    "  CHECK ((attestation = 'symmetric') = (primary_key IS NOT NULL))\n"
    ");\n"
    "CREATE TABLE enrollment_group_certificate (\n"
    "  group_id TEXT NOT NULL REFERENCES enrollment_group (group_id),\n"
    "  position INTEGER NOT NULL,\n"
    "  der {BLOB} NOT NULL,\n"
    "  PRIMARY KEY (group_id, position)\n"
    ");\n"
    "CREATE TABLE individual_enrollment (\n"
    "  registration_id TEXT PRIMARY KEY NOT NULL,\n"
    "  attestation TEXT NOT NULL CHECK (attestation IN ('symmetric', 'x509')),\n"
    "  primary_key TEXT,\n"
    "  secondary_key TEXT,\n"
    "  policy TEXT REFERENCES credential_policy (name),\n"
    "  assigned_hub TEXT NOT NULL,\n"
    "  enabled INTEGER NOT NULL CHECK (enabled IN (0, 1)),\n"
    "  etag TEXT NOT NULL,\n"
    "  created_at {INT64} NOT NULL,\n"
    "  updated_at {INT64} NOT NULL,\n"
    "  CHECK ((attestation = 'symmetric') = (primary_key IS NOT NULL))\n"
    ");\n"
    "CREATE TABLE individual_enrollment_certificate (\n"
    "  registration_id TEXT NOT NULL REFERENCES individual_enrollment (registration_id),\n"
    "  position INTEGER NOT NULL,\n"
    "  der {BLOB} NOT NULL,\n"
    "  PRIMARY KEY (registration_id, position)\n"
    ");\n"
    "CREATE TABLE registration (\n"
    "  registration_id TEXT PRIMARY KEY NOT NULL,\n"
    "  enrollment_kind TEXT NOT NULL CHECK (enrollment_kind IN ('group', 'individual')),\n"
    "  enrollment_id TEXT NOT NULL,\n"
    "  status TEXT NOT NULL,\n"
    "  substatus TEXT,\n"
    "  device_id TEXT,\n"
    "  assigned_hub TEXT,\n"
    "  etag TEXT NOT NULL,\n"
    "  created_at {INT64} NOT NULL,\n"
    "  updated_at {INT64} NOT NULL,\n"
    "  last_certificate_issuer TEXT,\n"
    "  last_certificate_serial TEXT\n"
    ");\n"
    "CREATE INDEX registration_by_enrollment ON registration (enrollment_kind, enrollment_id);\n"
    "CREATE TABLE certificate (\n"
    "  id {ROWID},\n"
    "  issuer TEXT NOT NULL,\n"
    "  serial TEXT NOT NULL,\n"
    "  registration_id TEXT REFERENCES registration (registration_id),\n"
    "  policy TEXT,\n"
    "  subject TEXT NOT NULL,\n"
    "  not_before {INT64} NOT NULL,\n"
    "  not_after {INT64} NOT NULL,\n"
    "  issued_at {INT64} NOT NULL,\n"
    "  spki_sha256 TEXT NOT NULL,\n"
    "  der {BLOB} NOT NULL,\n"
    "  revoked INTEGER NOT NULL DEFAULT 0 CHECK (revoked IN (0, 1)),\n"
    "  revocation_reason INTEGER,\n"
    "  revoked_at {INT64},\n"
    "  UNIQUE (issuer, serial)\n"
    ");\n"
    "CREATE INDEX certificate_by_registration ON certificate (registration_id);\n"
    "CREATE INDEX certificate_by_expiry ON certificate (not_after);\n"
    "CREATE TABLE operation (\n"
    "  operation_id TEXT PRIMARY KEY NOT NULL,\n"
    "  registration_id TEXT NOT NULL REFERENCES registration (registration_id),\n"
    "  status TEXT NOT NULL,\n"
    "  result_json TEXT,\n"
    "  created_at {INT64} NOT NULL,\n"
    "  updated_at {INT64} NOT NULL\n"
    ");\n"
    "CREATE INDEX operation_by_registration ON operation (registration_id);\n"
    "CREATE TABLE audit_event (\n"
    "  id {ROWID},\n"
    "  at {INT64} NOT NULL,\n"
    "  kind TEXT NOT NULL,\n"
    "  registration_id TEXT,\n"
    "  outcome TEXT NOT NULL CHECK (outcome IN ('ok', 'rejected', 'error')),\n"
    "  reason_code INTEGER NOT NULL DEFAULT 0,\n"
    "  detail TEXT\n"
    ");\n"
    "CREATE INDEX audit_by_registration ON audit_event (registration_id, id);\n",
    /* 2: a disabled registration remembers the status it had, for enable */
    "ALTER TABLE registration ADD COLUMN status_before_disable TEXT;\n",
    /* 3: keys revoked for keyCompromise are never certified again; the
     * revocations recorded before this version count too */
    "CREATE TABLE compromised_key (\n"
    "  spki_sha256 TEXT PRIMARY KEY NOT NULL,\n"
    "  issuer TEXT NOT NULL,\n"
    "  serial TEXT NOT NULL,\n"
    "  at {INT64} NOT NULL\n"
    ");\n"
    "INSERT OR IGNORE INTO compromised_key (spki_sha256, issuer, serial, at) "
    "SELECT spki_sha256, issuer, serial, revoked_at FROM certificate "
    "WHERE revoked = 1 AND revocation_reason = 1 ORDER BY id;\n",
    /* 4: AWS IoT fleet provisioning: templates, the claim CAs each admits,
     * things, the certificates issued through the MQTT API (pending until
     * RegisterThing) and their ownership tokens (only hashes). A deleted
     * template leaves its name on things and certificates: history, not a
     * reference. */
    "CREATE TABLE aws_template (\n"
    "  name TEXT PRIMARY KEY NOT NULL,\n"
    "  body TEXT NOT NULL,\n"
    "  allow_server_keygen INTEGER NOT NULL DEFAULT 0 CHECK (allow_server_keygen IN (0, 1)),\n"
    "  policy TEXT NOT NULL REFERENCES credential_policy (name),\n"
    "  hook_url TEXT,\n"
    "  hook_ca_pem TEXT,\n"
    "  hook_timeout_ms INTEGER,\n"
    "  enabled INTEGER NOT NULL DEFAULT 1 CHECK (enabled IN (0, 1)),\n"
    "  created_at {INT64} NOT NULL,\n"
    "  updated_at {INT64} NOT NULL,\n"
    "  CHECK ((hook_url IS NULL) = (hook_ca_pem IS NULL))\n"
    ");\n"
    "CREATE TABLE aws_template_claim_ca (\n"
    "  template TEXT NOT NULL REFERENCES aws_template (name) ON DELETE CASCADE,\n"
    "  position INTEGER NOT NULL,\n"
    "  ca_name TEXT NOT NULL REFERENCES ca (name),\n"
    "  PRIMARY KEY (template, position)\n"
    ");\n"
    "CREATE TABLE aws_thing (\n"
    "  name TEXT PRIMARY KEY NOT NULL,\n"
    "  template TEXT NOT NULL,\n"
    "  attributes_json TEXT NOT NULL,\n"
    "  groups_json TEXT NOT NULL,\n"
    "  thing_type TEXT,\n"
    "  enabled INTEGER NOT NULL DEFAULT 1 CHECK (enabled IN (0, 1)),\n"
    "  created_at {INT64} NOT NULL,\n"
    "  updated_at {INT64} NOT NULL\n"
    ");\n"
    "CREATE TABLE aws_certificate (\n"
    "  issuer TEXT NOT NULL,\n"
    "  serial TEXT NOT NULL,\n"
    "  fingerprint_sha256 TEXT NOT NULL,\n"
    "  thing TEXT REFERENCES aws_thing (name),\n"
    "  template TEXT NOT NULL,\n"
    "  status TEXT NOT NULL CHECK (status IN ('pending', 'active', 'superseded', 'revoked')),\n"
    "  created_at {INT64} NOT NULL,\n"
    "  updated_at {INT64} NOT NULL,\n"
    "  PRIMARY KEY (issuer, serial),\n"
    "  FOREIGN KEY (issuer, serial) REFERENCES certificate (issuer, serial),\n"
    "  CHECK ((thing IS NULL) = (status IN ('pending', 'revoked')))\n"
    ");\n"
    "CREATE INDEX aws_certificate_by_thing ON aws_certificate (thing, status);\n"
    "CREATE INDEX aws_certificate_by_fingerprint ON aws_certificate (fingerprint_sha256, status);\n"
    "CREATE TABLE aws_ownership_token (\n"
    "  token_sha256 TEXT PRIMARY KEY NOT NULL,\n"
    "  issuer TEXT NOT NULL,\n"
    "  serial TEXT NOT NULL,\n"
    "  connection_fingerprint TEXT NOT NULL,\n"
    "  template TEXT NOT NULL,\n"
    "  created_at {INT64} NOT NULL,\n"
    "  expires_at {INT64} NOT NULL,\n"
    "  consumed_at {INT64},\n"
    "  FOREIGN KEY (issuer, serial) REFERENCES aws_certificate (issuer, serial)\n"
    ");\n"
    "CREATE INDEX aws_token_by_expiry ON aws_ownership_token (expires_at) WHERE consumed_at IS NULL;\n",
    /* 5: CRL numbers from the store, so every node's CRLs of one CA count
     * up together (each may hold its own copy of the CA directory) */
    "CREATE TABLE crl_number (\n"
    "  issuer TEXT PRIMARY KEY NOT NULL,\n"
    "  number {INT64} NOT NULL CHECK (number >= 1)\n"
    ");\n",
    /* 6: the revoked certificates of an issuer without a scan: CRLs and the
     * CRL publisher's check every few seconds */
    "CREATE INDEX certificate_revoked ON certificate (issuer, revoked_at) WHERE revoked = 1;\n",
    /* 7: a policy may name the OCSP responder and the CRL distribution
     * point its certificates carry */
    ("ALTER TABLE credential_policy ADD COLUMN ocsp_url TEXT;\n"
     "ALTER TABLE credential_policy ADD COLUMN crl_url TEXT;\n"),
    /* 8: EST: an enrollment may hold the SHA-256 of an HTTP Basic secret
     * (never the secret), and a policy may let the server make the key */
    ("ALTER TABLE enrollment_group ADD COLUMN basic_secret_sha256 TEXT;\n"
     "ALTER TABLE individual_enrollment ADD COLUMN basic_secret_sha256 TEXT;\n"
     "ALTER TABLE credential_policy ADD COLUMN allow_server_keygen INTEGER NOT NULL DEFAULT 0;\n"),
    /* 9: an operation names the certificate it issued instead of keeping
     * it (and its chain) in its answer: the answer was three quarters of
     * every registration's bytes written */
    ("ALTER TABLE operation ADD COLUMN certificate_issuer TEXT;\n"
     "ALTER TABLE operation ADD COLUMN certificate_serial TEXT;\n"),
};
#define SCHEMA_VERSION ((int)(sizeof MIGRATIONS / sizeof MIGRATIONS[0]))

/* PostgreSQL's text of the migrations whose statements differ. */
static const char *const MIGRATIONS_POSTGRES[SCHEMA_VERSION] = {
    [2] = "CREATE TABLE compromised_key (\n"
          "  spki_sha256 TEXT PRIMARY KEY NOT NULL,\n"
          "  issuer TEXT NOT NULL,\n"
          "  serial TEXT NOT NULL,\n"
          "  at {INT64} NOT NULL\n"
          ");\n"
          "INSERT INTO compromised_key (spki_sha256, issuer, serial, at) "
          "SELECT DISTINCT ON (spki_sha256) spki_sha256, issuer, serial, revoked_at FROM certificate "
          "WHERE revoked = 1 AND revocation_reason = 1 ORDER BY spki_sha256, id ON CONFLICT DO NOTHING;\n",
};

/* TEXT with the dialect's words; NULL when out of memory. */
static char *expand_schema(sql_dialect dialect, const char *text)
{
    static const char *const WORDS[][3] = {
        {"{BLOB}", "BLOB", "BYTEA"},
        {"{INT64}", "INTEGER", "BIGINT"},
        {"{ROWID}", "INTEGER PRIMARY KEY", "BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY"},
    };
    int which = dialect == SQL_DIALECT_POSTGRES ? 2 : 1;
    size_t cap = strlen(text) * 2 + 64, len = 0;
    char *out = malloc(cap);
    for (const char *p = text; out != NULL && *p != '\0';) {
        const char *word = NULL;
        size_t skip = 1;
        for (size_t w = 0; w < sizeof WORDS / sizeof WORDS[0] && word == NULL; w++)
            if (strncmp(p, WORDS[w][0], strlen(WORDS[w][0])) == 0)
                word = WORDS[w][which], skip = strlen(WORDS[w][0]);
        size_t n = word != NULL ? strlen(word) : 1;
        if (len + n + 1 > cap) {
            char *grown = realloc(out, cap * 2 + n);
            if (grown == NULL) {
                free(out);
                return NULL;
            }
            out = grown;
            cap = cap * 2 + n;
        }
        memcpy(out + len, word != NULL ? word : p, n);
        len += n;
        p += skip;
    }
    if (out != NULL)
        out[len] = '\0';
    return out;
}


/* ---- statements --------------------------------------------------------- */

typedef enum stmt_id {
    ST_BEGIN_WRITE,
    ST_BEGIN_READ,
    ST_COMMIT,
    ST_ROLLBACK,
    ST_SAVEPOINT,
    ST_COMMIT_PRECONDITIONS,
    ST_ROLLBACK_TO_SAVEPOINT,
    ST_RELEASE_SAVEPOINT,
    ST_WRITE_LOCK,
    ST_SCHEMA_VERSION_INSERT,
    ST_CRL_NUMBER_NEXT,
    ST_REVOCATION_STATE,
    ST_AUDIT_INSERT,
    ST_AUDIT_LIST,
    ST_AUDIT_PRUNE,
    ST_CA_INSERT,
    ST_CA_GET,
    ST_CA_LIST,
    ST_CA_VERIFY,
    ST_POLICY_INSERT,
    ST_POLICY_GET,
    ST_POLICY_LIST,
    ST_GROUP_INSERT,
    ST_GROUP_CERT_INSERT,
    ST_GROUP_GET,
    ST_GROUP_LIST,
    ST_GROUP_CERTS,
    ST_GROUP_ENABLE,
    ST_INDIVIDUAL_INSERT,
    ST_INDIVIDUAL_CERT_INSERT,
    ST_INDIVIDUAL_GET,
    ST_INDIVIDUAL_LIST,
    ST_INDIVIDUAL_CERTS,
    ST_INDIVIDUAL_ENABLE,
    ST_REGISTRATION_UPSERT,
    ST_REGISTRATION_GET,
    ST_REGISTRATION_LIST,
    ST_REGISTRATION_DISABLE,
    ST_REGISTRATION_ENABLE,
    ST_CERT_INSERT,
    ST_CERT_GET,
    ST_CERT_LIST,
    ST_CERT_VALID_OF_REGISTRATION,
    ST_CERT_REVOKE,
    ST_CERT_REVOKE_REGISTRATION,
    ST_OPERATION_INSERT,
    ST_OPERATION_GET,
    ST_KEY_COMPROMISED_OF_CERT,
    ST_KEY_COMPROMISED_OF_REGISTRATION,
    ST_KEY_BLOCK,
    ST_KEY_IS_COMPROMISED,
    ST_GROUP_ROTATE_KEY,
    ST_INDIVIDUAL_ROTATE_KEY,
    ST_GROUP_BASIC_SECRET,
    ST_INDIVIDUAL_BASIC_SECRET,
    ST_REGISTRATION_MOVE,
    ST_AWS_TEMPLATE_INSERT,
    ST_AWS_TEMPLATE_CA_INSERT,
    ST_AWS_TEMPLATE_GET,
    ST_AWS_TEMPLATE_LIST,
    ST_AWS_TEMPLATE_CAS,
    ST_AWS_TEMPLATE_DELETE,
    ST_AWS_TEMPLATE_ENABLE,
    ST_AWS_THING_GET,
    ST_AWS_THING_LIST,
    ST_AWS_THING_ENABLE,
    ST_AWS_THING_UPSERT,
    ST_AWS_THING_STATE,
    ST_AWS_THING_CERTS,
    ST_AWS_CERT_INSERT,
    ST_AWS_CERT_SET_STATUS,
    ST_AWS_CERT_ACTIVATE,
    ST_AWS_CERT_REVOKE_IF_VALID,
    ST_AWS_CERTS_TO_SUPERSEDE,
    ST_AWS_PENDING_EXPIRED,
    ST_AWS_TOKEN_INSERT,
    ST_AWS_TOKEN_GET,
    ST_AWS_TOKEN_CONSUME,
    ST_AWS_OWNER_OF_FINGERPRINT,
    ST_BATCH_PRECONDITIONS,
    ST_BATCH_REGISTRATIONS,
    ST_BATCH_CERTIFICATES,
    ST_BATCH_OPERATIONS,
    ST_BATCH_AUDITS,
    ST_COUNT
} stmt_id;

#define AUDIT_COLUMNS "id, at, kind, registration_id, outcome, reason_code, detail"
#define CA_COLUMNS \
    "name, role, certificate, chain_pem, key_ref, verification_code, verified, created_at, updated_at"
#define POLICY_COLUMNS \
    "name, validity, renewal_window, ca_name, key_types, created_at, updated_at, ocsp_url, crl_url, allow_server_keygen"
#define ENROLLMENT_COLUMNS(key) \
    key ", attestation, primary_key, secondary_key, policy, assigned_hub, enabled, etag, created_at, updated_at, " \
        "basic_secret_sha256"
#define REGISTRATION_COLUMNS                                                                  \
    "registration_id, enrollment_kind, enrollment_id, status, substatus, device_id, assigned_hub, " \
    "etag, created_at, updated_at, last_certificate_issuer, last_certificate_serial"
#define CERT_COLUMNS                                                                             \
    "id, issuer, serial, registration_id, policy, subject, not_before, not_after, issued_at, " \
    "spki_sha256, der, revoked, revocation_reason, revoked_at"
#define OPERATION_COLUMNS \
    "operation_id, registration_id, status, result_json, created_at, updated_at, certificate_issuer, certificate_serial"
#define AWS_TEMPLATE_COLUMNS                                                                         \
    "name, body, allow_server_keygen, policy, hook_url, hook_ca_pem, hook_timeout_ms, enabled, created_at, " \
    "updated_at"
#define AWS_THING_COLUMNS "name, template, attributes_json, groups_json, thing_type, enabled, created_at, updated_at"
#define AWS_CERT_COLUMNS "issuer, serial, fingerprint_sha256, thing, template, status, created_at, updated_at"
/* The thing's certificates that make it owned: active and not revoked (an
 * operator may have revoked one with `cert revoke`). */
#define AWS_LIVE_ACTIVE                                                                                   \
    "SELECT 1 FROM aws_certificate a JOIN certificate c ON c.issuer = a.issuer AND c.serial = a.serial " \
    "WHERE a.status = 'active' AND c.revoked = 0"

/* The two enrollment tables have the same shape; only their names differ,
 * and those are constants here. */
#define ENROLLMENT_SQL_INSERT(table, key)                                                 \
    "INSERT INTO " table " (" ENROLLMENT_COLUMNS(key) ") VALUES (:id, :attestation, "     \
    ":primary_key, :secondary_key, :policy, :assigned_hub, :enabled, :etag, :created_at, " \
    ":updated_at, :basic_secret)"
#define ENROLLMENT_SQL_CERT_INSERT(table, key) \
    "INSERT INTO " table "_certificate (" key ", position, der) VALUES (:id, :position, :der)"
#define ENROLLMENT_SQL_GET(table, key) "SELECT " ENROLLMENT_COLUMNS(key) " FROM " table " WHERE " key " = :id"
#define ENROLLMENT_SQL_LIST(table, key) \
    "SELECT " ENROLLMENT_COLUMNS(key) " FROM " table " ORDER BY created_at, " key
#define ENROLLMENT_SQL_CERTS(table, key) \
    "SELECT der FROM " table "_certificate WHERE " key " = :id ORDER BY position"
#define ENROLLMENT_SQL_ENABLE(table, key) \
    "UPDATE " table " SET enabled = :enabled, etag = :etag, updated_at = :now WHERE " key " = :id"
#define ENROLLMENT_SQL_ROTATE(table, key)                                                        \
    "UPDATE " table " SET secondary_key = primary_key, primary_key = :key, etag = :etag, "       \
    "updated_at = :now WHERE " key " = :id AND attestation = 'symmetric'"
#define ENROLLMENT_SQL_BASIC_SECRET(table, key) \
    "UPDATE " table " SET basic_secret_sha256 = :secret, etag = :etag, updated_at = :now WHERE " key " = :id"

static const char *const SQL[ST_COUNT] = {
    [ST_BEGIN_WRITE] = "BEGIN IMMEDIATE",
    [ST_BEGIN_READ] = "BEGIN",
    [ST_COMMIT] = "COMMIT",
    [ST_ROLLBACK] = "ROLLBACK",
    [ST_SAVEPOINT] = "SAVEPOINT item",
    [ST_COMMIT_PRECONDITIONS] =
        "SELECT COALESCE((SELECT enabled FROM enrollment_group WHERE :kind = 'group' AND group_id = :id), "
        "(SELECT enabled FROM individual_enrollment WHERE :kind = 'individual' AND registration_id = :id), 0), "
        "(SELECT revoked FROM certificate WHERE issuer = :issuer AND serial = :serial), "
        "(SELECT enrollment_kind = :kind AND enrollment_id = :id FROM registration "
        "WHERE registration_id = :registration_id), "
        "EXISTS (SELECT 1 FROM compromised_key WHERE spki_sha256 = :spki), "
        "COALESCE((SELECT etag FROM enrollment_group WHERE :kind = 'group' AND group_id = :id), "
        "(SELECT etag FROM individual_enrollment WHERE :kind = 'individual' AND registration_id = :id), ''), "
        "(:kind = 'group' AND EXISTS (SELECT 1 FROM individual_enrollment WHERE registration_id = :registration_id))",
    [ST_ROLLBACK_TO_SAVEPOINT] = "ROLLBACK TO item",
    [ST_RELEASE_SAVEPOINT] = "RELEASE item",
    [ST_WRITE_LOCK] = NULL, /* BEGIN IMMEDIATE took it */
    [ST_SCHEMA_VERSION_INSERT] = "INSERT INTO schema_version (version, applied_at) VALUES (:version, :at)",
    [ST_REVOCATION_STATE] = "SELECT COUNT(*), COALESCE(MAX(revoked_at), 0) FROM certificate "
                            "WHERE issuer = :issuer AND revoked = 1",
    [ST_CRL_NUMBER_NEXT] = "INSERT INTO crl_number (issuer, number) VALUES (:issuer, :at_least) "
                           "ON CONFLICT (issuer) DO UPDATE SET number = max(crl_number.number + 1, excluded.number) "
                           "RETURNING number",
    [ST_AUDIT_INSERT] = "INSERT INTO audit_event (at, kind, registration_id, outcome, reason_code, detail) "
                        "VALUES (:at, :kind, :registration_id, :outcome, :reason_code, :detail)",
    [ST_AUDIT_LIST] = "SELECT " AUDIT_COLUMNS " FROM audit_event "
                      "WHERE (:registration_id IS NULL OR registration_id = :registration_id) "
                      "AND at >= :since AND id > :after_id ORDER BY id LIMIT :limit",
    /* The oldest first: every id up to a cut, which is the larger of the
     * two rules' cuts. Rows: the newest :keep ids stay (ids are handed out
     * in order, so max(id) - :keep; gaps only make fewer stay). Age: the
     * ids before the first event young enough to stay (events are written
     * in time order). Each cut is a few steps of the primary key, and the
     * DELETE is a range of it: the cost is the rows that go, not the
     * table (an OFFSET of a million rows, or an OR of the rules, made
     * every tick a walk over the whole table). */
    [ST_AUDIT_PRUNE] = "DELETE FROM audit_event WHERE id IN (SELECT id FROM audit_event WHERE id <= "
                       "(SELECT CASE WHEN by_rows > by_age THEN by_rows ELSE by_age END FROM (SELECT "
                       "CASE WHEN :keep > 0 THEN (SELECT max(id) FROM audit_event) - :keep ELSE 0 END "
                       "AS by_rows, "
                       "CASE WHEN :before > 0 THEN coalesce((SELECT id FROM audit_event WHERE at >= :before "
                       "ORDER BY id LIMIT 1) - 1, (SELECT max(id) FROM audit_event)) ELSE 0 END "
                       "AS by_age) AS cuts) "
                       "ORDER BY id LIMIT :limit)",
    [ST_CA_INSERT] = "INSERT INTO ca (" CA_COLUMNS ") VALUES (:name, :role, :certificate, :chain_pem, "
                     ":key_ref, :verification_code, :verified, :created_at, :updated_at)",
    [ST_CA_GET] = "SELECT " CA_COLUMNS " FROM ca WHERE name = :name",
    [ST_CA_LIST] = "SELECT " CA_COLUMNS " FROM ca ORDER BY name",
    [ST_CA_VERIFY] = "UPDATE ca SET verification_code = :code, verified = :verified, updated_at = :now "
                     "WHERE name = :name AND role = 'bootstrap'",
    [ST_POLICY_INSERT] = "INSERT INTO credential_policy (" POLICY_COLUMNS ") VALUES (:name, :validity, "
                         ":renewal_window, :ca_name, :key_types, :created_at, :updated_at, :ocsp_url, :crl_url, "
                         ":allow_server_keygen)",
    [ST_POLICY_GET] = "SELECT " POLICY_COLUMNS " FROM credential_policy WHERE name = :name",
    [ST_POLICY_LIST] = "SELECT " POLICY_COLUMNS " FROM credential_policy ORDER BY name",
    [ST_GROUP_INSERT] = ENROLLMENT_SQL_INSERT("enrollment_group", "group_id"),
    [ST_GROUP_CERT_INSERT] = ENROLLMENT_SQL_CERT_INSERT("enrollment_group", "group_id"),
    [ST_GROUP_GET] = ENROLLMENT_SQL_GET("enrollment_group", "group_id"),
    [ST_GROUP_LIST] = ENROLLMENT_SQL_LIST("enrollment_group", "group_id"),
    [ST_GROUP_CERTS] = ENROLLMENT_SQL_CERTS("enrollment_group", "group_id"),
    [ST_GROUP_ENABLE] = ENROLLMENT_SQL_ENABLE("enrollment_group", "group_id"),
    [ST_INDIVIDUAL_INSERT] = ENROLLMENT_SQL_INSERT("individual_enrollment", "registration_id"),
    [ST_INDIVIDUAL_CERT_INSERT] = ENROLLMENT_SQL_CERT_INSERT("individual_enrollment", "registration_id"),
    [ST_INDIVIDUAL_GET] = ENROLLMENT_SQL_GET("individual_enrollment", "registration_id"),
    [ST_INDIVIDUAL_LIST] = ENROLLMENT_SQL_LIST("individual_enrollment", "registration_id"),
    [ST_INDIVIDUAL_CERTS] = ENROLLMENT_SQL_CERTS("individual_enrollment", "registration_id"),
    [ST_INDIVIDUAL_ENABLE] = ENROLLMENT_SQL_ENABLE("individual_enrollment", "registration_id"),
    [ST_REGISTRATION_UPSERT] =
        "INSERT INTO registration (" REGISTRATION_COLUMNS ") VALUES (:registration_id, "
        ":enrollment_kind, :enrollment_id, :status, :substatus, :device_id, :assigned_hub, :etag, "
        ":created_at, :updated_at, :last_certificate_issuer, :last_certificate_serial) "
        "ON CONFLICT (registration_id) DO UPDATE SET enrollment_kind = excluded.enrollment_kind, "
        "enrollment_id = excluded.enrollment_id, status = excluded.status, "
        "substatus = excluded.substatus, device_id = excluded.device_id, "
        "assigned_hub = excluded.assigned_hub, etag = excluded.etag, updated_at = excluded.updated_at, "
        "last_certificate_issuer = COALESCE(excluded.last_certificate_issuer, registration.last_certificate_issuer), "
        "last_certificate_serial = COALESCE(excluded.last_certificate_serial, registration.last_certificate_serial) "
        "WHERE registration.status <> 'disabled'",
    [ST_REGISTRATION_GET] = "SELECT " REGISTRATION_COLUMNS " FROM registration WHERE registration_id = :id",
    [ST_REGISTRATION_LIST] = "SELECT " REGISTRATION_COLUMNS " FROM registration "
                             "WHERE (:kind IS NULL OR enrollment_kind = :kind) "
                             "AND (:enrollment_id IS NULL OR enrollment_id = :enrollment_id) "
                             "AND (:status IS NULL OR status = :status) "
                             "AND (:after IS NULL OR registration_id > :after) "
                             "ORDER BY registration_id LIMIT :limit",
    /* Idempotent both ways: disabling twice keeps the status from before the
     * first time; enabling one that is not disabled changes nothing but the
     * etag. No row changed means no such registration. */
    [ST_REGISTRATION_DISABLE] =
        "UPDATE registration SET status_before_disable = CASE WHEN status = 'disabled' "
        "THEN status_before_disable ELSE status END, status = 'disabled', etag = :etag, "
        "updated_at = :now WHERE registration_id = :id",
    [ST_REGISTRATION_ENABLE] =
        "UPDATE registration SET status = CASE WHEN status = 'disabled' "
        "THEN COALESCE(status_before_disable, 'assigned') ELSE status END, "
        "status_before_disable = NULL, etag = :etag, updated_at = :now WHERE registration_id = :id",
    [ST_CERT_INSERT] = "INSERT INTO certificate (issuer, serial, registration_id, policy, subject, "
                       "not_before, not_after, issued_at, spki_sha256, der) VALUES (:issuer, :serial, "
                       ":registration_id, :policy, :subject, :not_before, :not_after, :issued_at, "
                       ":spki_sha256, :der)",
    [ST_CERT_GET] = "SELECT " CERT_COLUMNS " FROM certificate WHERE issuer = :issuer AND serial = :serial",
    [ST_CERT_LIST] = "SELECT " CERT_COLUMNS " FROM certificate "
                     "WHERE (:registration_id IS NULL OR registration_id = :registration_id) "
                     "AND (:issuer IS NULL OR issuer = :issuer) "
                     "AND (:until IS NULL OR (not_after >= :now AND not_after <= :until)) "
                     "AND (:revoked IS NULL OR revoked = :revoked) "
                     "AND id > :after_id ORDER BY id LIMIT :limit",
    [ST_CERT_VALID_OF_REGISTRATION] = "SELECT " CERT_COLUMNS " FROM certificate "
                                      "WHERE registration_id = :registration_id AND revoked = 0 ORDER BY id",
    [ST_CERT_REVOKE] = "UPDATE certificate SET revoked = 1, revocation_reason = :reason, revoked_at = :at "
                       "WHERE issuer = :issuer AND serial = :serial AND revoked = 0",
    [ST_CERT_REVOKE_REGISTRATION] = "UPDATE certificate SET revoked = 1, revocation_reason = :reason, "
                                    "revoked_at = :at WHERE registration_id = :registration_id AND revoked = 0",
    [ST_OPERATION_INSERT] = "INSERT INTO operation (" OPERATION_COLUMNS ") VALUES (:operation_id, "
                            ":registration_id, :status, :result_json, :created_at, :updated_at, :certificate_issuer, :certificate_serial)",
    [ST_OPERATION_GET] = "SELECT " OPERATION_COLUMNS " FROM operation WHERE operation_id = :id",
    /* The first certificate revoked for keyCompromise names the key's entry. */
    [ST_KEY_COMPROMISED_OF_CERT] = "INSERT OR IGNORE INTO compromised_key (spki_sha256, issuer, serial, at) "
                                   "SELECT spki_sha256, issuer, serial, revoked_at FROM certificate "
                                   "WHERE issuer = :issuer AND serial = :serial AND revocation_reason = 1",
    [ST_KEY_COMPROMISED_OF_REGISTRATION] =
        "INSERT OR IGNORE INTO compromised_key (spki_sha256, issuer, serial, at) "
        "SELECT spki_sha256, issuer, serial, revoked_at FROM certificate "
        "WHERE registration_id = :registration_id AND revocation_reason = 1 ORDER BY id",
    [ST_KEY_BLOCK] = "INSERT OR IGNORE INTO compromised_key (spki_sha256, issuer, serial, at) "
                     "VALUES (:spki, :issuer, :serial, :at)",
    [ST_KEY_IS_COMPROMISED] = "SELECT EXISTS (SELECT 1 FROM compromised_key WHERE spki_sha256 = :spki)",
    /* Rotation: the old primary stays valid as the secondary, so devices
     * still holding it register until they have the new one. */
    [ST_GROUP_ROTATE_KEY] = ENROLLMENT_SQL_ROTATE("enrollment_group", "group_id"),
    [ST_INDIVIDUAL_ROTATE_KEY] = ENROLLMENT_SQL_ROTATE("individual_enrollment", "registration_id"),
    [ST_GROUP_BASIC_SECRET] = ENROLLMENT_SQL_BASIC_SECRET("enrollment_group", "group_id"),
    [ST_INDIVIDUAL_BASIC_SECRET] = ENROLLMENT_SQL_BASIC_SECRET("individual_enrollment", "registration_id"),
    [ST_REGISTRATION_MOVE] = "UPDATE registration SET enrollment_kind = :kind, enrollment_id = :enrollment_id, "
                             "etag = :etag, updated_at = :now WHERE registration_id = :id",
    [ST_AWS_TEMPLATE_INSERT] = "INSERT INTO aws_template (" AWS_TEMPLATE_COLUMNS ") VALUES (:name, :body, "
                               ":keygen, :policy, :hook_url, :hook_ca_pem, :hook_timeout_ms, :enabled, "
                               ":created_at, :updated_at)",
    [ST_AWS_TEMPLATE_CA_INSERT] = "INSERT INTO aws_template_claim_ca (template, position, ca_name) "
                                  "VALUES (:name, :position, :ca_name)",
    [ST_AWS_TEMPLATE_GET] = "SELECT " AWS_TEMPLATE_COLUMNS " FROM aws_template WHERE name = :name",
    [ST_AWS_TEMPLATE_LIST] = "SELECT " AWS_TEMPLATE_COLUMNS " FROM aws_template ORDER BY name",
    [ST_AWS_TEMPLATE_CAS] = "SELECT ca_name FROM aws_template_claim_ca WHERE template = :name ORDER BY position",
    /* The claim CA rows go with it (ON DELETE CASCADE). */
    [ST_AWS_TEMPLATE_DELETE] = "DELETE FROM aws_template WHERE name = :name",
    [ST_AWS_TEMPLATE_ENABLE] = "UPDATE aws_template SET enabled = :enabled, updated_at = :now WHERE name = :name",
    [ST_AWS_THING_GET] = "SELECT " AWS_THING_COLUMNS " FROM aws_thing WHERE name = :name",
    [ST_AWS_THING_LIST] = "SELECT " AWS_THING_COLUMNS " FROM aws_thing "
                          "WHERE (:template IS NULL OR template = :template) ORDER BY name",
    [ST_AWS_THING_ENABLE] = "UPDATE aws_thing SET enabled = :enabled, updated_at = :now WHERE name = :name",
    /* An existing thing keeps its created_at and enabled flag. */
    [ST_AWS_THING_UPSERT] =
        "INSERT INTO aws_thing (" AWS_THING_COLUMNS ") VALUES (:name, :template, :attributes, :groups, "
        ":thing_type, 1, :now, :now) ON CONFLICT (name) DO UPDATE SET template = excluded.template, "
        "attributes_json = excluded.attributes_json, groups_json = excluded.groups_json, "
        "thing_type = excluded.thing_type, updated_at = excluded.updated_at",
    [ST_AWS_THING_STATE] = "SELECT enabled, EXISTS (" AWS_LIVE_ACTIVE " AND a.thing = :name) FROM aws_thing "
                           "WHERE name = :name",
    /* In the order they were issued: the certificate row's id. */
    [ST_AWS_THING_CERTS] = "SELECT a.issuer, a.serial, a.fingerprint_sha256, a.thing, a.template, a.status, "
                           "a.created_at, a.updated_at FROM aws_certificate a JOIN certificate c "
                           "ON c.issuer = a.issuer AND c.serial = a.serial WHERE a.thing = :name "
                           "ORDER BY a.created_at, c.id",
    [ST_AWS_CERT_INSERT] = "INSERT INTO aws_certificate (" AWS_CERT_COLUMNS ") VALUES (:issuer, :serial, "
                           ":fingerprint, NULL, :template, 'pending', :now, :now)",
    [ST_AWS_CERT_SET_STATUS] = "UPDATE aws_certificate SET status = :status, updated_at = :now "
                               "WHERE issuer = :issuer AND serial = :serial",
    [ST_AWS_CERT_ACTIVATE] = "UPDATE aws_certificate SET status = 'active', thing = :thing, updated_at = :now "
                             "WHERE issuer = :issuer AND serial = :serial AND status = 'pending'",
    [ST_AWS_CERT_REVOKE_IF_VALID] = "UPDATE certificate SET revoked = 1, revocation_reason = :reason, "
                                    "revoked_at = :at WHERE issuer = :issuer AND serial = :serial AND revoked = 0",
    [ST_AWS_CERTS_TO_SUPERSEDE] =
        "SELECT " CERT_COLUMNS " FROM certificate WHERE (issuer, serial) IN (SELECT issuer, serial FROM "
        "aws_certificate WHERE thing = :thing AND status = 'active' AND NOT (issuer = :issuer AND "
        "serial = :serial)) ORDER BY id",
    [ST_AWS_PENDING_EXPIRED] =
        "SELECT " CERT_COLUMNS " FROM certificate WHERE (issuer, serial) IN (SELECT a.issuer, a.serial FROM "
        "aws_certificate a JOIN aws_ownership_token t ON t.issuer = a.issuer AND t.serial = a.serial "
        "WHERE a.status = 'pending' AND t.expires_at <= :now) ORDER BY id LIMIT :limit",
    [ST_AWS_TOKEN_INSERT] = "INSERT INTO aws_ownership_token (token_sha256, issuer, serial, connection_fingerprint, "
                            "template, created_at, expires_at) VALUES (:hash, :issuer, :serial, :connection, "
                            ":template, :now, :expires)",
    [ST_AWS_TOKEN_GET] =
        "SELECT t.issuer, t.serial, t.connection_fingerprint, t.template, t.expires_at, t.consumed_at, "
        "a.status, c.revoked FROM aws_ownership_token t "
        "JOIN aws_certificate a ON a.issuer = t.issuer AND a.serial = t.serial "
        "JOIN certificate c ON c.issuer = t.issuer AND c.serial = t.serial WHERE t.token_sha256 = :hash",
    [ST_AWS_TOKEN_CONSUME] = "UPDATE aws_ownership_token SET consumed_at = :now "
                             "WHERE token_sha256 = :hash AND consumed_at IS NULL",
    [ST_AWS_OWNER_OF_FINGERPRINT] = "SELECT a.thing FROM aws_certificate a JOIN certificate c "
                                    "ON c.issuer = a.issuer AND c.serial = a.serial "
                                    "WHERE a.fingerprint_sha256 = :fp AND a.status = 'active' AND c.revoked = 0 "
                                    "ORDER BY a.created_at DESC LIMIT 1",
};

/* PostgreSQL's text where the dialects differ (NULL: the common text).
 * Writers take one advisory lock for the transaction, as SQLite's BEGIN
 * IMMEDIATE takes the database's write lock: the checks a write makes
 * before it writes (an enrollment still enabled, a token unused, a serial
 * free) then hold across every node sharing the database. */
static const char *const SQL_POSTGRES[ST_COUNT] = {
    /* Group commit, one statement per table for the whole batch, each
     * column an array (text; the I/O cast reads PostgreSQL's array
     * syntax). What ST_COMMIT_PRECONDITIONS asks, per item, plus whether
     * the registration is disabled and the certificate's serial taken:
     * all is decided before anything is written, under the write lock. */
    [ST_BATCH_PRECONDITIONS] =
        "SELECT COALESCE((SELECT enabled FROM enrollment_group WHERE i.kind = 'group' AND group_id = i.id), "
        "(SELECT enabled FROM individual_enrollment WHERE i.kind = 'individual' AND registration_id = i.id), 0), "
        "(SELECT revoked FROM certificate WHERE issuer = i.issuer AND serial = i.serial), "
        "(SELECT enrollment_kind = i.kind AND enrollment_id = i.id FROM registration WHERE registration_id = i.rid), "
        "EXISTS (SELECT 1 FROM compromised_key WHERE spki_sha256 = i.spki), "
        "COALESCE((SELECT etag FROM enrollment_group WHERE i.kind = 'group' AND group_id = i.id), "
        "(SELECT etag FROM individual_enrollment WHERE i.kind = 'individual' AND registration_id = i.id), ''), "
        "(i.kind = 'group' AND EXISTS (SELECT 1 FROM individual_enrollment WHERE registration_id = i.rid)), "
        "COALESCE((SELECT status = 'disabled' FROM registration WHERE registration_id = i.rid), false), "
        "EXISTS (SELECT 1 FROM certificate WHERE issuer = i.cert_issuer AND serial = i.cert_serial), "
        "EXISTS (SELECT 1 FROM operation WHERE operation_id = i.op_id) "
        "FROM unnest(:kind::text[], :id::text[], :issuer::text[], :serial::text[], :rid::text[], :spki::text[], "
        ":cert_issuer::text[], :cert_serial::text[], :op_id::text[]) WITH ORDINALITY "
        "AS i(kind, id, issuer, serial, rid, spki, cert_issuer, cert_serial, op_id, n) ORDER BY i.n",
    [ST_BATCH_REGISTRATIONS] =
        "INSERT INTO registration (" REGISTRATION_COLUMNS ") SELECT * FROM unnest(:registration_id::text[], "
        ":enrollment_kind::text[], :enrollment_id::text[], :status::text[], :substatus::text[], :device_id::text[], "
        ":assigned_hub::text[], :etag::text[], :created_at::bigint[], :updated_at::bigint[], "
        ":last_certificate_issuer::text[], :last_certificate_serial::text[]) "
        "ON CONFLICT (registration_id) DO UPDATE SET enrollment_kind = excluded.enrollment_kind, "
        "enrollment_id = excluded.enrollment_id, status = excluded.status, "
        "substatus = excluded.substatus, device_id = excluded.device_id, "
        "assigned_hub = excluded.assigned_hub, etag = excluded.etag, updated_at = excluded.updated_at, "
        "last_certificate_issuer = COALESCE(excluded.last_certificate_issuer, registration.last_certificate_issuer), "
        "last_certificate_serial = COALESCE(excluded.last_certificate_serial, registration.last_certificate_serial) "
        "WHERE registration.status <> 'disabled'",
    [ST_BATCH_CERTIFICATES] =
        "INSERT INTO certificate (issuer, serial, registration_id, policy, subject, not_before, not_after, issued_at, "
        "spki_sha256, der) SELECT issuer, serial, registration_id, policy, subject, not_before, not_after, issued_at, "
        "spki_sha256, decode(der, 'hex') FROM unnest(:issuer::text[], :serial::text[], :registration_id::text[], "
        ":policy::text[], :subject::text[], :not_before::bigint[], :not_after::bigint[], :issued_at::bigint[], "
        ":spki_sha256::text[], :der::text[]) WITH ORDINALITY AS c(issuer, serial, registration_id, policy, subject, "
        "not_before, not_after, issued_at, spki_sha256, der, n) ORDER BY c.n",
    [ST_BATCH_OPERATIONS] =
        "INSERT INTO operation (" OPERATION_COLUMNS ") SELECT * FROM unnest(:operation_id::text[], "
        ":registration_id::text[], :status::text[], :result_json::text[], :created_at::bigint[], :updated_at::bigint[], "
        ":certificate_issuer::text[], :certificate_serial::text[])",
    [ST_BATCH_AUDITS] =
        "INSERT INTO audit_event (at, kind, registration_id, outcome, reason_code, detail) "
        "SELECT at, kind, registration_id, outcome, reason_code, detail FROM unnest(:at::bigint[], :kind::text[], "
        ":registration_id::text[], :outcome::text[], :reason_code::bigint[], :detail::text[]) WITH ORDINALITY "
        "AS a(at, kind, registration_id, outcome, reason_code, detail, n) ORDER BY a.n",
    [ST_BEGIN_WRITE] = "BEGIN ISOLATION LEVEL READ COMMITTED",
    [ST_WRITE_LOCK] = "SELECT pg_advisory_xact_lock(7262465) /* 'enroll' */",
    /* Reads see one snapshot, as SQLite's deferred BEGIN does. */
    [ST_BEGIN_READ] = "BEGIN ISOLATION LEVEL REPEATABLE READ",
    [ST_CRL_NUMBER_NEXT] = "INSERT INTO crl_number (issuer, number) VALUES (:issuer, :at_least) "
                           "ON CONFLICT (issuer) DO UPDATE SET number = GREATEST(crl_number.number + 1, excluded.number) "
                           "RETURNING number",
    [ST_KEY_COMPROMISED_OF_CERT] = "INSERT INTO compromised_key (spki_sha256, issuer, serial, at) "
                                   "SELECT spki_sha256, issuer, serial, revoked_at FROM certificate "
                                   "WHERE issuer = :issuer AND serial = :serial AND revocation_reason = 1 "
                                   "ON CONFLICT DO NOTHING",
    [ST_KEY_COMPROMISED_OF_REGISTRATION] =
        "INSERT INTO compromised_key (spki_sha256, issuer, serial, at) "
        "SELECT DISTINCT ON (spki_sha256) spki_sha256, issuer, serial, revoked_at FROM certificate "
        "WHERE registration_id = :registration_id AND revocation_reason = 1 ORDER BY spki_sha256, id "
        "ON CONFLICT DO NOTHING",
    [ST_KEY_BLOCK] = "INSERT INTO compromised_key (spki_sha256, issuer, serial, at) "
                     "VALUES (:spki, :issuer, :serial, :at) ON CONFLICT DO NOTHING",
};

typedef struct enrollment_statements {
    stmt_id insert, cert_insert, get, list, certs, enable, rotate, basic_secret;
} enrollment_statements;

static const enrollment_statements *enrollment_sql(enr_enrollment_kind kind)
{
    static const enrollment_statements GROUP = {ST_GROUP_INSERT, ST_GROUP_CERT_INSERT, ST_GROUP_GET,
                                                ST_GROUP_LIST, ST_GROUP_CERTS, ST_GROUP_ENABLE,
                                                ST_GROUP_ROTATE_KEY, ST_GROUP_BASIC_SECRET};
    static const enrollment_statements INDIVIDUAL = {
        ST_INDIVIDUAL_INSERT, ST_INDIVIDUAL_CERT_INSERT, ST_INDIVIDUAL_GET,
        ST_INDIVIDUAL_LIST, ST_INDIVIDUAL_CERTS, ST_INDIVIDUAL_ENABLE, ST_INDIVIDUAL_ROTATE_KEY,
        ST_INDIVIDUAL_BASIC_SECRET};
    return kind == ENR_ENROLLMENT_GROUP ? &GROUP : &INDIVIDUAL;
}

static const char *enrollment_word(enr_enrollment_kind kind)
{
    return kind == ENR_ENROLLMENT_GROUP ? "enrollment group" : "individual enrollment";
}

static const char *kind_text(enr_enrollment_kind kind)
{
    return kind == ENR_ENROLLMENT_GROUP ? "group" : "individual";
}

/* ---- connection --------------------------------------------------------- */

typedef struct sql_store {
    const sql_driver *d;
    void *conn;
    sql_stmt *stmts[ST_COUNT];
} sql_store;

static enr_code fail(sql_store *s, int rc, const char *what, enr_error *err)
{
    return s->d->fail(s->conn, rc, what, err);
}

/* A prepared statement, reset and without bindings. PostgreSQL's text
 * replaces the common one where the dialects differ. */
static enr_code statement(sql_store *s, stmt_id id, sql_stmt **out, enr_error *err)
{
    if (s->stmts[id] == NULL) {
        const char *sql = s->d->dialect == SQL_DIALECT_POSTGRES && SQL_POSTGRES[id] != NULL ? SQL_POSTGRES[id] : SQL[id];
        enr_code rc = s->d->prepare(s->conn, sql, &s->stmts[id], err);
        if (rc != ENR_OK)
            return rc;
    }
    *out = s->stmts[id];
    return ENR_OK;
}

/* Every statement is reset after use: a SELECT left open would hold its
 * read snapshot (SQLite: and keep the WAL from being checkpointed). */
static void release(sql_stmt *st)
{
    st->d->reset(st);
}

/* Bindings by name; the first failure sticks and is reported once. */
typedef struct binder {
    sql_stmt *st;
    int rc;
} binder;

static int param(binder *b, const char *name)
{
    int i = b->st->d->param_index(b->st, name);
    if (i == 0 && b->rc == 0)
        b->rc = SQL_NO_PARAM;
    return i;
}

/* Empty text is stored as NULL: "none". */
static void bind_text(binder *b, const char *name, const char *value)
{
    int i = param(b, name);
    if (b->rc == 0)
        b->rc = b->st->d->bind_text(b->st, i, value != NULL && value[0] != '\0' ? value : NULL);
}

/* Text as it is, "" included (a column that is NOT NULL but may be empty). */
static void bind_text_exact(binder *b, const char *name, const char *value)
{
    int i = param(b, name);
    if (b->rc == 0)
        b->rc = b->st->d->bind_text(b->st, i, value);
}

static void bind_int(binder *b, const char *name, int64_t value)
{
    int i = param(b, name);
    if (b->rc == 0)
        b->rc = b->st->d->bind_int(b->st, i, value);
}

static void bind_null(binder *b, const char *name)
{
    int i = param(b, name);
    if (b->rc == 0)
        b->rc = b->st->d->bind_null(b->st, i);
}

static void bind_blob(binder *b, const char *name, const void *data, size_t len)
{
    int i = param(b, name);
    if (b->rc == 0)
        b->rc = b->st->d->bind_blob(b->st, i, data, len);
}

/* No limit is the largest one: both dialects take it (SQLite's -1 is an
 * error to PostgreSQL). */
static void bind_limit(binder *b, size_t limit)
{
    bind_int(b, ":limit", limit == 0 || limit > INT64_MAX ? INT64_MAX : (int64_t)limit);
}

/* Runs a statement that returns no rows. */
static enr_code run(sql_store *s, sql_stmt *st, binder *b, const char *what, enr_error *err)
{
    int rc = b != NULL ? b->rc : 0;
    if (rc == 0)
        rc = st->d->step(st);
    enr_code code = rc == SQL_DONE || rc == SQL_ROW ? ENR_OK : fail(s, rc, what, err);
    release(st);
    return code;
}

static enr_code run_simple(sql_store *s, stmt_id id, const char *what, enr_error *err)
{
    sql_stmt *st = NULL;
    enr_code rc = statement(s, id, &st, err);
    return rc == ENR_OK ? run(s, st, NULL, what, err) : rc;
}

/* ---- transactions ------------------------------------------------------- */

static void rollback(sql_store *s)
{
    /* Some errors (I/O, full disk) end the transaction by themselves. */
    if (s->d->in_transaction(s->conn))
        (void)run_simple(s, ST_ROLLBACK, "rolling back", NULL);
    if (s->d->rolled_back != NULL)
        s->d->rolled_back(s->conn);
}

static enr_code begin_write(sql_store *s, enr_error *err)
{
    enr_code rc = run_simple(s, ST_BEGIN_WRITE, "starting a write transaction", err);
    if (rc == ENR_OK && s->d->dialect == SQL_DIALECT_POSTGRES &&
        (rc = run_simple(s, ST_WRITE_LOCK, "taking the store's write lock", err)) != ENR_OK)
        rollback(s);
    return rc;
}

static enr_code begin_read(sql_store *s, enr_error *err)
{
    return run_simple(s, ST_BEGIN_READ, "starting a read transaction", err);
}


/* Commits when everything went well, rolls back otherwise; returns the
 * first failure. */
static enr_code finish(sql_store *s, enr_code rc, enr_error *err)
{
    if (rc == ENR_OK)
        rc = run_simple(s, ST_COMMIT, "committing", err);
    if (rc != ENR_OK)
        rollback(s);
    return rc;
}

/* ---- reading rows ------------------------------------------------------- */

static enr_code column_text(sql_stmt *st, int col, char *out, size_t cap, enr_error *err)
{
    out[0] = '\0';
    if (st->d->column_null(st, col))
        return ENR_OK;
    size_t len = 0;
    const char *text = st->d->column_text(st, col, &len);
    if (text == NULL)
        return enr_error_set(err, ENR_E_NOMEM, "out of memory reading %s", st->d->column_name(st, col));
    if (len >= cap)
        return enr_error_set(err, ENR_E_PARSE, "stored %s is longer than %zu bytes", st->d->column_name(st, col),
                             cap - 1);
    memcpy(out, text, len);
    out[len] = '\0';
    return ENR_OK;
}
#define COLUMN_TEXT(st, col, array, err) column_text((st), (col), (array), sizeof(array), (err))

static enr_code column_blob(sql_stmt *st, int col, enr_buf *out, enr_error *err)
{
    size_t len = 0;
    const void *data = st->d->column_blob(st, col, &len);
    if (len == SIZE_MAX)
        return enr_error_set(err, ENR_E_NOMEM, "out of memory reading %s", st->d->column_name(st, col));
    out->data = malloc(len + 1);
    if (out->data == NULL)
        return enr_error_set(err, ENR_E_NOMEM, "out of memory");
    if (len > 0)
        memcpy(out->data, data, len);
    out->data[len] = '\0';
    out->len = len;
    return ENR_OK;
}

static enr_code column_strdup(sql_stmt *st, int col, char **out, enr_error *err)
{
    *out = NULL;
    if (st->d->column_null(st, col))
        return ENR_OK;
    size_t len = 0;
    const char *text = st->d->column_text(st, col, &len);
    if (text == NULL)
        return enr_error_set(err, ENR_E_NOMEM, "out of memory reading %s", st->d->column_name(st, col));
    *out = malloc(len + 1);
    if (*out == NULL)
        return enr_error_set(err, ENR_E_NOMEM, "out of memory");
    memcpy(*out, text, len);
    (*out)[len] = '\0';
    return ENR_OK;
}

static time_t column_time(sql_stmt *st, int col)
{
    return (time_t)st->d->column_int(st, col);
}

static bool column_bool(sql_stmt *st, int col)
{
    return st->d->column_int(st, col) != 0;
}

static enr_code read_audit(sql_stmt *st, void *item, enr_error *err)
{
    enr_audit_event *a = item;
    enr_code rc;
    a->id = (int64_t)st->d->column_int(st, 0);
    a->at = column_time(st, 1);
    a->reason_code = (int)st->d->column_int(st, 5);
    if ((rc = COLUMN_TEXT(st, 2, a->kind, err)) != ENR_OK ||
        (rc = COLUMN_TEXT(st, 3, a->registration_id, err)) != ENR_OK ||
        (rc = COLUMN_TEXT(st, 4, a->outcome, err)) != ENR_OK)
        return rc;
    return COLUMN_TEXT(st, 6, a->detail, err);
}

static enr_code read_ca(sql_stmt *st, void *item, enr_error *err)
{
    enr_ca_record *ca = item;
    enr_code rc;
    char role[16];
    if ((rc = COLUMN_TEXT(st, 0, ca->name, err)) != ENR_OK || (rc = COLUMN_TEXT(st, 1, role, err)) != ENR_OK ||
        (rc = column_blob(st, 2, &ca->certificate, err)) != ENR_OK ||
        (rc = column_strdup(st, 3, &ca->chain_pem, err)) != ENR_OK ||
        (rc = COLUMN_TEXT(st, 4, ca->key_ref, err)) != ENR_OK ||
        (rc = COLUMN_TEXT(st, 5, ca->verification_code, err)) != ENR_OK)
        return rc;
    ca->role = strcmp(role, "bootstrap") == 0 ? ENR_CA_BOOTSTRAP : ENR_CA_ISSUING;
    ca->verified = column_bool(st, 6);
    ca->created_at = column_time(st, 7);
    ca->updated_at = column_time(st, 8);
    return ENR_OK;
}

static enr_code read_policy(sql_stmt *st, void *item, enr_error *err)
{
    enr_credential_policy *p = item;
    enr_code rc;
    if ((rc = COLUMN_TEXT(st, 0, p->name, err)) != ENR_OK ||
        (rc = COLUMN_TEXT(st, 1, p->validity, err)) != ENR_OK ||
        (rc = COLUMN_TEXT(st, 2, p->renewal_window, err)) != ENR_OK ||
        (rc = COLUMN_TEXT(st, 3, p->ca_name, err)) != ENR_OK ||
        (rc = COLUMN_TEXT(st, 4, p->key_types, err)) != ENR_OK)
        return rc;
    p->created_at = column_time(st, 5);
    p->updated_at = column_time(st, 6);
    if ((rc = COLUMN_TEXT(st, 7, p->ocsp_url, err)) != ENR_OK || (rc = COLUMN_TEXT(st, 8, p->crl_url, err)) != ENR_OK)
        return rc;
    p->allow_server_keygen = column_bool(st, 9);
    return ENR_OK;
}

/* The enrollment row; its certificates come from a second query. The kind
 * is set by the caller before the read. */
static enr_code read_enrollment(sql_stmt *st, void *item, enr_error *err)
{
    enr_enrollment *e = item;
    enr_code rc;
    char attestation[16];
    if ((rc = COLUMN_TEXT(st, 0, e->id, err)) != ENR_OK ||
        (rc = COLUMN_TEXT(st, 1, attestation, err)) != ENR_OK ||
        (rc = COLUMN_TEXT(st, 2, e->primary_key, err)) != ENR_OK ||
        (rc = COLUMN_TEXT(st, 3, e->secondary_key, err)) != ENR_OK ||
        (rc = COLUMN_TEXT(st, 4, e->policy, err)) != ENR_OK ||
        (rc = COLUMN_TEXT(st, 5, e->assigned_hub, err)) != ENR_OK ||
        (rc = COLUMN_TEXT(st, 7, e->etag, err)) != ENR_OK ||
        (rc = COLUMN_TEXT(st, 10, e->basic_secret_sha256, err)) != ENR_OK)
        return rc;
    e->attestation = strcmp(attestation, "x509") == 0 ? ENR_ATTEST_X509 : ENR_ATTEST_SYMMETRIC;
    e->enabled = column_bool(st, 6);
    e->created_at = column_time(st, 8);
    e->updated_at = column_time(st, 9);
    return ENR_OK;
}

static enr_code read_registration(sql_stmt *st, void *item, enr_error *err)
{
    enr_registration *r = item;
    enr_code rc;
    char kind[16];
    if ((rc = COLUMN_TEXT(st, 0, r->registration_id, err)) != ENR_OK ||
        (rc = COLUMN_TEXT(st, 1, kind, err)) != ENR_OK ||
        (rc = COLUMN_TEXT(st, 2, r->enrollment_id, err)) != ENR_OK ||
        (rc = COLUMN_TEXT(st, 3, r->status, err)) != ENR_OK ||
        (rc = COLUMN_TEXT(st, 4, r->substatus, err)) != ENR_OK ||
        (rc = COLUMN_TEXT(st, 5, r->device_id, err)) != ENR_OK ||
        (rc = COLUMN_TEXT(st, 6, r->assigned_hub, err)) != ENR_OK ||
        (rc = COLUMN_TEXT(st, 7, r->etag, err)) != ENR_OK ||
        (rc = COLUMN_TEXT(st, 10, r->last_certificate_issuer, err)) != ENR_OK ||
        (rc = COLUMN_TEXT(st, 11, r->last_certificate_serial, err)) != ENR_OK)
        return rc;
    r->enrollment_kind = strcmp(kind, "group") == 0 ? ENR_ENROLLMENT_GROUP : ENR_ENROLLMENT_INDIVIDUAL;
    r->created_at = column_time(st, 8);
    r->updated_at = column_time(st, 9);
    return ENR_OK;
}

static enr_code read_certificate(sql_stmt *st, void *item, enr_error *err)
{
    enr_certificate *c = item;
    enr_code rc;
    c->id = (int64_t)st->d->column_int(st, 0);
    if ((rc = COLUMN_TEXT(st, 1, c->issuer, err)) != ENR_OK ||
        (rc = COLUMN_TEXT(st, 2, c->serial, err)) != ENR_OK ||
        (rc = COLUMN_TEXT(st, 3, c->registration_id, err)) != ENR_OK ||
        (rc = COLUMN_TEXT(st, 4, c->policy, err)) != ENR_OK ||
        (rc = COLUMN_TEXT(st, 5, c->subject, err)) != ENR_OK ||
        (rc = COLUMN_TEXT(st, 9, c->spki_sha256, err)) != ENR_OK ||
        (rc = column_blob(st, 10, &c->der, err)) != ENR_OK)
        return rc;
    c->not_before = column_time(st, 6);
    c->not_after = column_time(st, 7);
    c->issued_at = column_time(st, 8);
    c->revoked = column_bool(st, 11);
    c->revocation_reason = (int)st->d->column_int(st, 12);
    c->revoked_at = column_time(st, 13);
    return ENR_OK;
}

static enr_code read_operation(sql_stmt *st, void *item, enr_error *err)
{
    enr_operation *op = item;
    enr_code rc;
    if ((rc = COLUMN_TEXT(st, 0, op->operation_id, err)) != ENR_OK ||
        (rc = COLUMN_TEXT(st, 1, op->registration_id, err)) != ENR_OK ||
        (rc = COLUMN_TEXT(st, 2, op->status, err)) != ENR_OK ||
        (rc = column_strdup(st, 3, &op->result_json, err)) != ENR_OK)
        return rc;
    op->created_at = column_time(st, 4);
    op->updated_at = column_time(st, 5);
    if ((rc = COLUMN_TEXT(st, 6, op->certificate_issuer, err)) != ENR_OK ||
        (rc = COLUMN_TEXT(st, 7, op->certificate_serial, err)) != ENR_OK)
        return rc;
    return ENR_OK;
}

typedef enr_code (*row_reader)(sql_stmt *st, void *item, enr_error *err);

/* Reads the one row a bound statement selects into `out`; none is
 * ENR_E_NOTFOUND with `missing` as the message. Releases the statement. */
static enr_code fetch_one(sql_store *s, sql_stmt *st, binder *b, row_reader reader, void *out,
                          const char *missing, enr_error *err)
{
    int rc = b->rc;
    if (rc == 0)
        rc = st->d->step(st);
    enr_code code;
    if (rc == SQL_ROW)
        code = reader(st, out, err);
    else if (rc == SQL_DONE)
        code = enr_error_set(err, ENR_E_NOTFOUND, "%s", missing);
    else
        code = fail(s, rc, "reading", err);
    release(st);
    return code;
}

/* Appends every row a bound statement selects to a growing array of
 * `size`-byte items. An item counts as soon as it is zeroed, so the list's
 * free function cleans up a row that failed half-way. Releases the
 * statement. */
static enr_code fetch_all(sql_store *s, sql_stmt *st, binder *b, row_reader reader, size_t size,
                          void **items, size_t *count, enr_error *err)
{
    size_t cap = 0;
    enr_code code = ENR_OK;
    int rc = b->rc;
    while (code == ENR_OK && rc == 0 && (rc = st->d->step(st)) == SQL_ROW) {
        if (*count == cap) {
            size_t bigger = cap ? cap * 2 : 16;
            void *grown = realloc(*items, bigger * size);
            if (grown == NULL) {
                code = enr_error_set(err, ENR_E_NOMEM, "out of memory");
                break;
            }
            *items = grown;
            cap = bigger;
        }
        void *item = (unsigned char *)*items + *count * size;
        memset(item, 0, size);
        (*count)++;
        code = reader(st, item, err);
        rc = 0;
    }
    if (code == ENR_OK && rc != SQL_DONE)
        code = fail(s, rc, "reading", err);
    release(st);
    return code;
}

/* ---- audit -------------------------------------------------------------- */

static enr_code insert_audit(sql_store *s, const enr_audit_event *a, enr_error *err)
{
    sql_stmt *st = NULL;
    enr_code rc = statement(s, ST_AUDIT_INSERT, &st, err);
    if (rc != ENR_OK)
        return rc;
    binder b = {st, 0};
    bind_int(&b, ":at", (int64_t)a->at);
    bind_text(&b, ":kind", a->kind);
    bind_text(&b, ":registration_id", a->registration_id);
    bind_text(&b, ":outcome", a->outcome);
    bind_int(&b, ":reason_code", a->reason_code);
    bind_text(&b, ":detail", a->detail);
    return run(s, st, &b, "recording an audit event", err);
}

static enr_code insert_optional_audit(sql_store *s, const enr_audit_event *a, enr_error *err)
{
    return a != NULL ? insert_audit(s, a, err) : ENR_OK;
}

static enr_code sql_record_audit(void *impl, const enr_audit_event *audit, enr_error *err)
{
    /* One statement is its own transaction: no BEGIN needed. */
    return insert_audit(impl, audit, err);
}

static enr_code sql_record_audits(void *impl, const enr_audit_event *events, size_t count, enr_error *err)
{
    sql_store *s = impl;
    enr_code rc = begin_write(s, err);
    if (rc != ENR_OK)
        return rc;
    for (size_t i = 0; rc == ENR_OK && i < count; i++)
        rc = insert_audit(s, &events[i], err);
    return finish(s, rc, err);
}

static enr_code sql_prune_audit(void *impl, time_t before, long keep_rows, size_t limit, size_t *deleted,
                                   enr_error *err)
{
    sql_store *s = impl;
    sql_stmt *st = NULL;
    enr_code rc = statement(s, ST_AUDIT_PRUNE, &st, err);
    if (rc != ENR_OK)
        return rc;
    binder b = {st, 0};
    bind_int(&b, ":before", (int64_t)before);
    bind_int(&b, ":keep", keep_rows);
    bind_limit(&b, limit);
    rc = run(s, st, &b, "pruning audit events", err); /* one statement: its own transaction */
    if (rc == ENR_OK)
        *deleted = (size_t)s->d->changes(s->conn);
    return rc;
}

static enr_code sql_check_writable(void *impl, enr_error *err)
{
    sql_store *s = impl;
    enr_code rc = begin_write(s, err);
    if (rc == ENR_OK)
        rollback(s);
    return rc;
}

static enr_code sql_list_audit(void *impl, const enr_audit_filter *f, enr_audit_list *out, enr_error *err)
{
    sql_store *s = impl;
    sql_stmt *st = NULL;
    enr_code rc = statement(s, ST_AUDIT_LIST, &st, err);
    if (rc != ENR_OK)
        return rc;
    binder b = {st, 0};
    bind_text(&b, ":registration_id", f->registration_id);
    bind_int(&b, ":since", (int64_t)f->since);
    bind_int(&b, ":after_id", f->after_id);
    bind_limit(&b, f->limit);
    return fetch_all(s, st, &b, read_audit, sizeof *out->items, (void **)&out->items, &out->count, err);
}

/* ---- CAs ---------------------------------------------------------------- */

static enr_code insert_ca(sql_store *s, const enr_ca_record *ca, enr_error *err)
{
    sql_stmt *st = NULL;
    enr_code rc = statement(s, ST_CA_INSERT, &st, err);
    if (rc != ENR_OK)
        return rc;
    binder b = {st, 0};
    bind_text(&b, ":name", ca->name);
    bind_text(&b, ":role", ca->role == ENR_CA_BOOTSTRAP ? "bootstrap" : "issuing");
    bind_blob(&b, ":certificate", ca->certificate.data, ca->certificate.len);
    bind_text(&b, ":chain_pem", ca->chain_pem);
    bind_text(&b, ":key_ref", ca->key_ref);
    bind_text(&b, ":verification_code", ca->verification_code);
    bind_int(&b, ":verified", ca->verified);
    bind_int(&b, ":created_at", (int64_t)ca->created_at);
    bind_int(&b, ":updated_at", (int64_t)ca->updated_at);
    rc = run(s, st, &b, "creating a CA", err);
    if (rc == ENR_E_EXISTS)
        return enr_error_set(err, rc, "a CA named '%s' exists already", ca->name);
    return rc;
}

static enr_code sql_create_ca(void *impl, const enr_ca_record *ca, const enr_audit_event *audit,
                                 enr_error *err)
{
    sql_store *s = impl;
    enr_code rc = begin_write(s, err);
    if (rc != ENR_OK)
        return rc;
    if ((rc = insert_ca(s, ca, err)) == ENR_OK)
        rc = insert_optional_audit(s, audit, err);
    return finish(s, rc, err);
}

static enr_code sql_get_ca(void *impl, const char *name, enr_ca_record *out, enr_error *err)
{
    sql_store *s = impl;
    sql_stmt *st = NULL;
    enr_code rc = statement(s, ST_CA_GET, &st, err);
    if (rc != ENR_OK)
        return rc;
    binder b = {st, 0};
    bind_text(&b, ":name", name);
    char missing[200];
    snprintf(missing, sizeof missing, "no CA named '%s'", name);
    return fetch_one(s, st, &b, read_ca, out, missing, err);
}

static enr_code sql_list_cas(void *impl, enr_ca_record_list *out, enr_error *err)
{
    sql_store *s = impl;
    sql_stmt *st = NULL;
    enr_code rc = statement(s, ST_CA_LIST, &st, err);
    if (rc != ENR_OK)
        return rc;
    binder b = {st, 0};
    return fetch_all(s, st, &b, read_ca, sizeof *out->items, (void **)&out->items, &out->count, err);
}

static enr_code update_ca_verification(sql_store *s, const char *name, const char *code, bool verified,
                                       time_t now, enr_error *err)
{
    sql_stmt *st = NULL;
    enr_code rc = statement(s, ST_CA_VERIFY, &st, err);
    if (rc != ENR_OK)
        return rc;
    binder b = {st, 0};
    bind_text(&b, ":name", name);
    bind_text(&b, ":code", code);
    bind_int(&b, ":verified", verified);
    bind_int(&b, ":now", (int64_t)now);
    if ((rc = run(s, st, &b, "updating a CA", err)) != ENR_OK)
        return rc;
    if (s->d->changes(s->conn) == 0)
        return enr_error_set(err, ENR_E_NOTFOUND, "no bootstrap CA named '%s'", name);
    return ENR_OK;
}

static enr_code sql_set_ca_verification(void *impl, const char *name, const char *code, bool verified,
                                           time_t now, const enr_audit_event *audit, enr_error *err)
{
    sql_store *s = impl;
    enr_code rc = begin_write(s, err);
    if (rc != ENR_OK)
        return rc;
    if ((rc = update_ca_verification(s, name, code, verified, now, err)) == ENR_OK)
        rc = insert_optional_audit(s, audit, err);
    return finish(s, rc, err);
}

/* ---- credential policies ------------------------------------------------ */

static enr_code insert_policy(sql_store *s, const enr_credential_policy *p, enr_error *err)
{
    sql_stmt *st = NULL;
    enr_code rc = statement(s, ST_POLICY_INSERT, &st, err);
    if (rc != ENR_OK)
        return rc;
    binder b = {st, 0};
    bind_text(&b, ":name", p->name);
    bind_text(&b, ":validity", p->validity);
    bind_text(&b, ":renewal_window", p->renewal_window);
    bind_text(&b, ":ca_name", p->ca_name);
    bind_text(&b, ":key_types", p->key_types);
    bind_int(&b, ":created_at", (int64_t)p->created_at);
    bind_int(&b, ":updated_at", (int64_t)p->updated_at);
    bind_text(&b, ":ocsp_url", p->ocsp_url);
    bind_text(&b, ":crl_url", p->crl_url);
    bind_int(&b, ":allow_server_keygen", p->allow_server_keygen);
    rc = run(s, st, &b, "creating a credential policy", err);
    if (rc == ENR_E_EXISTS)
        return enr_error_set(err, rc, "a credential policy named '%s' exists already", p->name);
    if (rc == ENR_E_NOTFOUND)
        return enr_error_set(err, rc, "policy '%s': no CA named '%s' in the store", p->name, p->ca_name);
    return rc;
}

static enr_code sql_create_policy(void *impl, const enr_credential_policy *policy,
                                     const enr_audit_event *audit, enr_error *err)
{
    sql_store *s = impl;
    enr_code rc = begin_write(s, err);
    if (rc != ENR_OK)
        return rc;
    if ((rc = insert_policy(s, policy, err)) == ENR_OK)
        rc = insert_optional_audit(s, audit, err);
    return finish(s, rc, err);
}

static enr_code sql_get_policy(void *impl, const char *name, enr_credential_policy *out, enr_error *err)
{
    sql_store *s = impl;
    sql_stmt *st = NULL;
    enr_code rc = statement(s, ST_POLICY_GET, &st, err);
    if (rc != ENR_OK)
        return rc;
    binder b = {st, 0};
    bind_text(&b, ":name", name);
    char missing[200];
    snprintf(missing, sizeof missing, "no credential policy named '%s'", name);
    return fetch_one(s, st, &b, read_policy, out, missing, err);
}

static enr_code sql_list_policies(void *impl, enr_policy_list *out, enr_error *err)
{
    sql_store *s = impl;
    sql_stmt *st = NULL;
    enr_code rc = statement(s, ST_POLICY_LIST, &st, err);
    if (rc != ENR_OK)
        return rc;
    binder b = {st, 0};
    return fetch_all(s, st, &b, read_policy, sizeof *out->items, (void **)&out->items, &out->count, err);
}

/* ---- enrollments -------------------------------------------------------- */

static enr_code insert_enrollment_row(sql_store *s, const enr_enrollment *e, enr_error *err)
{
    sql_stmt *st = NULL;
    enr_code rc = statement(s, enrollment_sql(e->kind)->insert, &st, err);
    if (rc != ENR_OK)
        return rc;
    binder b = {st, 0};
    bind_text(&b, ":id", e->id);
    bind_text(&b, ":attestation", e->attestation == ENR_ATTEST_X509 ? "x509" : "symmetric");
    bind_text(&b, ":primary_key", e->primary_key);
    bind_text(&b, ":secondary_key", e->secondary_key);
    bind_text(&b, ":policy", e->policy);
    bind_text(&b, ":assigned_hub", e->assigned_hub);
    bind_int(&b, ":enabled", e->enabled);
    bind_text(&b, ":etag", e->etag);
    bind_int(&b, ":created_at", (int64_t)e->created_at);
    bind_int(&b, ":updated_at", (int64_t)e->updated_at);
    bind_text(&b, ":basic_secret", e->basic_secret_sha256);
    rc = run(s, st, &b, "creating an enrollment", err);
    /* Never SQLite's text here: say which row, never what the keys were. */
    if (rc == ENR_E_EXISTS)
        return enr_error_set(err, rc, "%s '%s' exists already", enrollment_word(e->kind), e->id);
    if (rc == ENR_E_NOTFOUND)
        return enr_error_set(err, rc, "%s '%s': no credential policy named '%s'", enrollment_word(e->kind),
                             e->id, e->policy);
    return rc;
}

static enr_code insert_enrollment_certificates(sql_store *s, const enr_enrollment *e, enr_error *err)
{
    sql_stmt *st = NULL;
    enr_code rc = statement(s, enrollment_sql(e->kind)->cert_insert, &st, err);
    for (size_t i = 0; rc == ENR_OK && i < e->certificate_count; i++) {
        binder b = {st, 0};
        bind_text(&b, ":id", e->id);
        bind_int(&b, ":position", (int64_t)i);
        bind_blob(&b, ":der", e->certificates[i].data, e->certificates[i].len);
        rc = run(s, st, &b, "storing an enrollment certificate", err);
    }
    return rc;
}

static enr_code sql_create_enrollment(void *impl, const enr_enrollment *e, const enr_audit_event *audit,
                                         enr_error *err)
{
    sql_store *s = impl;
    enr_code rc = begin_write(s, err);
    if (rc != ENR_OK)
        return rc;
    if ((rc = insert_enrollment_row(s, e, err)) == ENR_OK &&
        (rc = insert_enrollment_certificates(s, e, err)) == ENR_OK)
        rc = insert_optional_audit(s, audit, err);
    return finish(s, rc, err);
}

static enr_code read_der(sql_stmt *st, void *item, enr_error *err)
{
    return column_blob(st, 0, item, err);
}

static enr_code load_enrollment_certificates(sql_store *s, enr_enrollment *e, enr_error *err)
{
    sql_stmt *st = NULL;
    enr_code rc = statement(s, enrollment_sql(e->kind)->certs, &st, err);
    if (rc != ENR_OK)
        return rc;
    binder b = {st, 0};
    bind_text(&b, ":id", e->id);
    return fetch_all(s, st, &b, read_der, sizeof *e->certificates, (void **)&e->certificates,
                     &e->certificate_count, err);
}

static enr_code get_enrollment(sql_store *s, enr_enrollment_kind kind, const char *id,
                               enr_enrollment *out, enr_error *err)
{
    sql_stmt *st = NULL;
    enr_code rc = statement(s, enrollment_sql(kind)->get, &st, err);
    if (rc != ENR_OK)
        return rc;
    binder b = {st, 0};
    bind_text(&b, ":id", id);
    char missing[200];
    snprintf(missing, sizeof missing, "no %s '%s'", enrollment_word(kind), id);
    out->kind = kind;
    if ((rc = fetch_one(s, st, &b, read_enrollment, out, missing, err)) != ENR_OK)
        return rc;
    return out->attestation == ENR_ATTEST_X509 ? load_enrollment_certificates(s, out, err) : ENR_OK;
}

/* Row and certificates in one read transaction: one consistent view. */
static enr_code sql_get_enrollment(void *impl, enr_enrollment_kind kind, const char *id,
                                      enr_enrollment *out, enr_error *err)
{
    sql_store *s = impl;
    enr_code rc = begin_read(s, err);
    if (rc != ENR_OK)
        return rc;
    return finish(s, get_enrollment(s, kind, id, out, err), err);
}

static enr_code list_enrollments(sql_store *s, enr_enrollment_kind kind, enr_enrollment_list *out,
                                 enr_error *err)
{
    sql_stmt *st = NULL;
    enr_code rc = statement(s, enrollment_sql(kind)->list, &st, err);
    if (rc != ENR_OK)
        return rc;
    binder b = {st, 0};
    rc = fetch_all(s, st, &b, read_enrollment, sizeof *out->items, (void **)&out->items, &out->count, err);
    for (size_t i = 0; i < out->count; i++)
        out->items[i].kind = kind;
    /* Only X.509 enrollments have certificates: a symmetric one would cost
     * a query for nothing (attestation lists every group per new device). */
    for (size_t i = 0; rc == ENR_OK && i < out->count; i++)
        if (out->items[i].attestation == ENR_ATTEST_X509)
            rc = load_enrollment_certificates(s, &out->items[i], err);
    return rc;
}

static enr_code sql_list_enrollments(void *impl, enr_enrollment_kind kind, enr_enrollment_list *out,
                                        enr_error *err)
{
    sql_store *s = impl;
    enr_code rc = begin_read(s, err);
    if (rc != ENR_OK)
        return rc;
    return finish(s, list_enrollments(s, kind, out, err), err);
}

static enr_code update_enrollment_enabled(sql_store *s, enr_enrollment_kind kind, const char *id,
                                          bool enabled, const char *etag, time_t now, enr_error *err)
{
    sql_stmt *st = NULL;
    enr_code rc = statement(s, enrollment_sql(kind)->enable, &st, err);
    if (rc != ENR_OK)
        return rc;
    binder b = {st, 0};
    bind_text(&b, ":id", id);
    bind_int(&b, ":enabled", enabled);
    bind_text(&b, ":etag", etag);
    bind_int(&b, ":now", (int64_t)now);
    if ((rc = run(s, st, &b, "changing an enrollment", err)) != ENR_OK)
        return rc;
    if (s->d->changes(s->conn) == 0)
        return enr_error_set(err, ENR_E_NOTFOUND, "no %s '%s'", enrollment_word(kind), id);
    return ENR_OK;
}

static enr_code sql_set_enrollment_enabled(void *impl, enr_enrollment_kind kind, const char *id,
                                              bool enabled, const char *etag, time_t now,
                                              const enr_audit_event *audit, enr_error *err)
{
    sql_store *s = impl;
    enr_code rc = begin_write(s, err);
    if (rc != ENR_OK)
        return rc;
    if ((rc = update_enrollment_enabled(s, kind, id, enabled, etag, now, err)) == ENR_OK)
        rc = insert_optional_audit(s, audit, err);
    return finish(s, rc, err);
}

static enr_code sql_set_enrollment_basic_secret(void *impl, enr_enrollment_kind kind, const char *id,
                                                const char *secret_sha256, const char *etag, time_t now,
                                                const enr_audit_event *audit, enr_error *err)
{
    sql_store *s = impl;
    enr_code rc = begin_write(s, err);
    if (rc != ENR_OK)
        return rc;
    sql_stmt *st = NULL;
    if ((rc = statement(s, enrollment_sql(kind)->basic_secret, &st, err)) == ENR_OK) {
        binder b = {st, 0};
        bind_text(&b, ":id", id);
        bind_text(&b, ":secret", secret_sha256);
        bind_text(&b, ":etag", etag);
        bind_int(&b, ":now", (int64_t)now);
        rc = run(s, st, &b, "setting an enrollment's EST secret", err);
    }
    if (rc == ENR_OK && s->d->changes(s->conn) == 0)
        rc = enr_error_set(err, ENR_E_NOTFOUND, "no %s '%s'", enrollment_word(kind), id);
    if (rc == ENR_OK)
        rc = insert_optional_audit(s, audit, err);
    return finish(s, rc, err);
}

static enr_code sql_rotate_enrollment_key(void *impl, enr_enrollment_kind kind, const char *id,
                                             const char *new_primary, const char *etag, time_t now,
                                             const enr_audit_event *audit, enr_error *err)
{
    sql_store *s = impl;
    enr_code rc = begin_write(s, err);
    if (rc != ENR_OK)
        return rc;
    sql_stmt *st = NULL;
    if ((rc = statement(s, enrollment_sql(kind)->rotate, &st, err)) == ENR_OK) {
        binder b = {st, 0};
        bind_text(&b, ":id", id);
        bind_text(&b, ":key", new_primary);
        bind_text(&b, ":etag", etag);
        bind_int(&b, ":now", (int64_t)now);
        rc = run(s, st, &b, "rotating an enrollment's key", err);
    }
    /* No row: unknown, or an X.509 enrollment (no keys to rotate). */
    if (rc == ENR_OK && s->d->changes(s->conn) == 0)
        rc = enr_error_set(err, ENR_E_NOTFOUND, "no %s '%s' with symmetric keys", enrollment_word(kind), id);
    if (rc == ENR_OK)
        rc = insert_optional_audit(s, audit, err);
    return finish(s, rc, err);
}

/* ---- registrations, certificates, operations ---------------------------- */

static enr_code upsert_registration(sql_store *s, const enr_registration *r, enr_error *err)
{
    sql_stmt *st = NULL;
    enr_code rc = statement(s, ST_REGISTRATION_UPSERT, &st, err);
    if (rc != ENR_OK)
        return rc;
    binder b = {st, 0};
    bind_text(&b, ":registration_id", r->registration_id);
    bind_text(&b, ":enrollment_kind", kind_text(r->enrollment_kind));
    bind_text(&b, ":enrollment_id", r->enrollment_id);
    bind_text(&b, ":status", r->status);
    bind_text(&b, ":substatus", r->substatus);
    bind_text(&b, ":device_id", r->device_id);
    bind_text(&b, ":assigned_hub", r->assigned_hub);
    bind_text(&b, ":etag", r->etag);
    bind_int(&b, ":created_at", (int64_t)r->created_at);
    bind_int(&b, ":updated_at", (int64_t)r->updated_at);
    bind_text(&b, ":last_certificate_issuer", r->last_certificate_issuer);
    bind_text(&b, ":last_certificate_serial", r->last_certificate_serial);
    rc = run(s, st, &b, "storing the registration", err);
    /* Disabled between the service's check and this commit: the row stays
     * as the operator left it, and nothing of this registration commits. */
    if (rc == ENR_OK && s->d->changes(s->conn) == 0)
        rc = enr_error_refuse(err, ENR_R_REGISTRATION_DISABLED, "registration '%s' is disabled", r->registration_id);
    return rc;
}

static enr_code insert_certificate(sql_store *s, const enr_certificate *c, enr_error *err)
{
    sql_stmt *st = NULL;
    enr_code rc = statement(s, ST_CERT_INSERT, &st, err);
    if (rc != ENR_OK)
        return rc;
    binder b = {st, 0};
    bind_text(&b, ":issuer", c->issuer);
    bind_text(&b, ":serial", c->serial);
    bind_text(&b, ":registration_id", c->registration_id);
    bind_text(&b, ":policy", c->policy);
    /* NOT NULL: an empty subject (SAN-only certificate) is stored as ''. */
    bind_text_exact(&b, ":subject", c->subject);
    bind_int(&b, ":not_before", (int64_t)c->not_before);
    bind_int(&b, ":not_after", (int64_t)c->not_after);
    bind_int(&b, ":issued_at", (int64_t)c->issued_at);
    bind_text(&b, ":spki_sha256", c->spki_sha256);
    bind_blob(&b, ":der", c->der.data, c->der.len);
    rc = run(s, st, &b, "storing the certificate", err);
    if (rc == ENR_E_EXISTS)
        return enr_error_set(err, rc, "serial %s of issuer '%s' is in the store already", c->serial,
                             c->issuer);
    return rc;
}

static enr_code insert_operation(sql_store *s, const enr_operation *op, enr_error *err)
{
    sql_stmt *st = NULL;
    enr_code rc = statement(s, ST_OPERATION_INSERT, &st, err);
    if (rc != ENR_OK)
        return rc;
    binder b = {st, 0};
    bind_text(&b, ":operation_id", op->operation_id);
    bind_text(&b, ":registration_id", op->registration_id);
    bind_text(&b, ":status", op->status);
    bind_text(&b, ":result_json", op->result_json);
    bind_int(&b, ":created_at", (int64_t)op->created_at);
    bind_int(&b, ":updated_at", (int64_t)op->updated_at);
    bind_text(&b, ":certificate_issuer", op->certificate_issuer);
    bind_text(&b, ":certificate_serial", op->certificate_serial);
    rc = run(s, st, &b, "storing the operation", err);
    if (rc == ENR_E_EXISTS)
        return enr_error_set(err, rc, "operation '%s' is in the store already", op->operation_id);
    return rc;
}

static enr_code sql_commit_registration(void *impl, const enr_registration *registration,
                                           const enr_certificate *cert, const enr_operation *op,
                                           const enr_audit_event *audit, enr_error *err)
{
    sql_store *s = impl;
    enr_code rc = begin_write(s, err);
    if (rc != ENR_OK)
        return rc;
    if ((rc = upsert_registration(s, registration, err)) == ENR_OK &&
        (cert == NULL || (rc = insert_certificate(s, cert, err)) == ENR_OK) &&
        (rc = insert_operation(s, op, err)) == ENR_OK)
        rc = insert_optional_audit(s, audit, err);
    return finish(s, rc, err);
}

typedef struct preconditions {
    int enrollment_enabled;
    int credential_state; /* 0 unrevoked, 1 revoked, -1 not in the store */
    int same_enrollment;  /* 1 the registration's own, 0 another one's, -1 a new registration */
    int key_compromised;
    char enrollment_etag[ENR_STORE_ETAG_MAX + 1]; /* "" when the enrollment is gone */
    int individual_exists; /* a group item whose id has an individual enrollment now */
} preconditions;

static enr_code read_preconditions(sql_stmt *st, void *item, enr_error *err)
{
    (void)err;
    preconditions *p = item;
    p->enrollment_enabled = (int)st->d->column_int(st, 0);
    p->credential_state = st->d->column_null(st, 1) ? -1 : (int)st->d->column_int(st, 1);
    p->same_enrollment = st->d->column_null(st, 2) ? -1 : (int)st->d->column_int(st, 2);
    p->key_compromised = (int)st->d->column_int(st, 3);
    const char *etag = st->d->column_text(st, 4, NULL);
    snprintf(p->enrollment_etag, sizeof p->enrollment_etag, "%s", etag != NULL ? (const char *)etag : "");
    p->individual_exists = (int)st->d->column_int(st, 5);
    return ENR_OK;
}

/* What attestation saw, checked again inside the transaction: the
 * enrollment still enabled, the credential still unrevoked, the
 * registration still bound to this enrollment (an individual enrollment
 * takes a registration over: it alone decides for its id), and the key
 * not revoked for keyCompromise meanwhile. */
static enr_code judge_preconditions(const enr_registration_commit *it, const preconditions *pre, enr_error *err);

static enr_code check_preconditions(sql_store *s, const enr_registration_commit *it, enr_error *err)
{
    sql_stmt *st = NULL;
    enr_code rc = statement(s, ST_COMMIT_PRECONDITIONS, &st, err);
    if (rc != ENR_OK)
        return rc;
    const enr_registration *r = it->registration;
    binder b = {st, 0};
    bind_text(&b, ":kind", kind_text(r->enrollment_kind));
    bind_text(&b, ":id", r->enrollment_id);
    bind_text(&b, ":issuer", it->credential_issuer);
    bind_text(&b, ":serial", it->credential_serial);
    bind_text(&b, ":registration_id", r->registration_id);
    bind_text(&b, ":spki", it->certificate != NULL ? it->certificate->spki_sha256 : NULL);
    preconditions p = {0, -1, -1, 0, "", 0};
    if ((rc = fetch_one(s, st, &b, read_preconditions, &p, "no answer", err)) != ENR_OK)
        return rc;
    return judge_preconditions(it, &p, err);
}

/* The rules, on what the store holds now (one home for both ways of
 * committing). */
static enr_code judge_preconditions(const enr_registration_commit *it, const preconditions *pre, enr_error *err)
{
    const enr_registration *r = it->registration;
    preconditions p = *pre;
    if (it->require_enrollment_enabled && !p.enrollment_enabled)
        return enr_error_refuse(err, ENR_R_ENROLLMENT_DISABLED, "the %s enrollment '%s' was disabled meanwhile",
                                kind_text(r->enrollment_kind), r->enrollment_id);
    if (it->credential_serial != NULL && p.credential_state != 0)
        return enr_error_refuse(err, ENR_R_CREDENTIAL_REVOKED,
                                "the certificate presented as credential (serial %s) was %s meanwhile",
                                it->credential_serial, p.credential_state > 0 ? "revoked" : "removed");
    if (p.same_enrollment == 0 && r->enrollment_kind == ENR_ENROLLMENT_GROUP)
        return enr_error_refuse(err, ENR_R_ENROLLMENT_MISMATCH,
                                "registration '%s' belongs to another enrollment (an operator moves it with "
                                "`enroll admin registration move`)",
                                r->registration_id);
    /* Attested before this request (once for a connection): what decided
     * then must be what decides now, or the device attests again. */
    if (it->enrollment_etag != NULL && strcmp(p.enrollment_etag, it->enrollment_etag) != 0)
        return enr_error_refuse(err, ENR_R_ENROLLMENT_MISMATCH,
                                "the %s enrollment '%s' changed since the credential was attested",
                                kind_text(r->enrollment_kind), r->enrollment_id);
    if (it->enrollment_etag != NULL && p.individual_exists)
        return enr_error_refuse(err, ENR_R_ENROLLMENT_MISMATCH,
                                "registration '%s' has an individual enrollment now: register with its credential",
                                r->registration_id);
    if (p.key_compromised)
        return enr_error_refuse(err, ENR_R_KEY_COMPROMISED,
                                "the request's key is the key of a certificate revoked for keyCompromise");
    return ENR_OK;
}


/* ---- group commit in a few statements (PostgreSQL) ------------------------ */

/* A column of a batch as PostgreSQL's array syntax: {"a",NULL,"b"}. */
typedef struct array_text {
    char *data;
    size_t len, cap;
    size_t n;
    bool failed;
} array_text;

static void array_put(array_text *a, const char *bytes, size_t len)
{
    if (a->failed)
        return;
    if (a->len + len + 2 > a->cap) {
        size_t cap = a->cap ? a->cap : 256;
        while (a->len + len + 2 > cap)
            cap *= 2;
        char *grown = realloc(a->data, cap);
        if (grown == NULL) {
            a->failed = true;
            return;
        }
        a->data = grown;
        a->cap = cap;
    }
    memcpy(a->data + a->len, bytes, len);
    a->len += len;
    a->data[a->len] = '\0';
}

static void array_next(array_text *a)
{
    array_put(a, a->n++ == 0 ? "{" : ",", 1);
}

/* NULL for a NULL pointer; with `empty_is_null`, for "" too (what
 * bind_text does for one row). */
static void array_add_text(array_text *a, const char *v, bool empty_is_null)
{
    array_next(a);
    if (v == NULL || (empty_is_null && v[0] == '\0')) {
        array_put(a, "NULL", 4);
        return;
    }
    array_put(a, "\"", 1);
    for (const char *c = v; *c != '\0'; c++) {
        if (*c == '"' || *c == '\\')
            array_put(a, "\\", 1);
        array_put(a, c, 1);
    }
    array_put(a, "\"", 1);
}

static void array_add_int(array_text *a, int64_t v)
{
    char num[24];
    int n = snprintf(num, sizeof num, "%lld", (long long)v);
    array_next(a);
    array_put(a, num, (size_t)n);
}

static void array_add_hex(array_text *a, const unsigned char *data, size_t len)
{
    static const char digits[] = "0123456789abcdef";
    array_next(a);
    array_put(a, "\"", 1);
    for (size_t i = 0; i < len; i++) {
        char two[2] = {digits[data[i] >> 4], digits[data[i] & 15]};
        array_put(a, two, 2);
    }
    array_put(a, "\"", 1);
}

static const char *array_end(array_text *a)
{
    if (a->n == 0)
        array_put(a, "{", 1);
    array_put(a, "}", 1);
    return a->failed ? NULL : a->data;
}

typedef struct batch_check {
    preconditions p;
    int disabled;
    int serial_taken;
    int operation_taken;
} batch_check;

static enr_code read_batch_check(sql_stmt *st, void *item, enr_error *err)
{
    batch_check *b = item;
    enr_code rc = read_preconditions(st, &b->p, err);
    b->disabled = (int)st->d->column_int(st, 6);
    b->serial_taken = (int)st->d->column_int(st, 7);
    b->operation_taken = (int)st->d->column_int(st, 8);
    return rc;
}

/* Binds each array of COLS (NAMES[i] <- COLS[i]) and runs the statement;
 * CHANGED gets the rows it wrote. */
static enr_code run_arrays(sql_store *s, stmt_id id, const char *const *names, array_text *cols, size_t n,
                           const char *what, int64_t *changed, enr_error *err)
{
    sql_stmt *st = NULL;
    enr_code rc = statement(s, id, &st, err);
    if (rc != ENR_OK)
        return rc;
    binder b = {st, 0};
    for (size_t i = 0; i < n; i++) {
        const char *text = array_end(&cols[i]);
        if (text == NULL) {
            release(st);
            return enr_error_set(err, ENR_E_NOMEM, "out of memory");
        }
        bind_text_exact(&b, names[i], text);
    }
    rc = run(s, st, &b, what, err);
    if (changed != NULL)
        *changed = s->d->changes(s->conn);
    return rc;
}

static void arrays_free(array_text *cols, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(cols[i].data);
}

/* The batch in eight round trips whatever its size: every item's checks
 * in one query, then one multi-row statement per table. Items are judged
 * in order, as if committed one after another: a later item of the same
 * registration sees the earlier one's enrollment, a serial twice in the
 * batch is taken by the first. The write lock is held throughout, so
 * nothing changes between the checks and the writes, and every item that
 * passed is written (or, on an error of the database, none is). */
static enr_code commit_batch_multirow(sql_store *s, enr_registration_commit *items, size_t count, enr_error *err)
{
    enum { PRE = 9, REG = 12, CERT = 10, OP = 8, AUD = 6 };
    array_text pre[PRE] = {0}, reg[REG] = {0}, cert[CERT] = {0}, op[OP] = {0}, aud[AUD] = {0};
    batch_check *checks = calloc(count, sizeof *checks);
    size_t *merged_into = calloc(count, sizeof *merged_into); /* the registration row an item's fields go to */
    for (size_t i = 0; i < count; i++)
        items[i].result = ENR_OK;
    enr_code rc = checks != NULL && merged_into != NULL ? begin_write(s, err)
                                                          : enr_error_set(err, ENR_E_NOMEM, "out of memory");
    for (size_t i = 0; rc == ENR_OK && i < count; i++) {
        const enr_registration_commit *it = &items[i];
        const enr_registration *r = it->registration;
        array_add_text(&pre[0], kind_text(r->enrollment_kind), true);
        array_add_text(&pre[1], r->enrollment_id, true);
        array_add_text(&pre[2], it->credential_issuer, true);
        array_add_text(&pre[3], it->credential_serial, true);
        array_add_text(&pre[4], r->registration_id, true);
        array_add_text(&pre[5], it->certificate != NULL ? it->certificate->spki_sha256 : NULL, true);
        array_add_text(&pre[6], it->certificate != NULL ? it->certificate->issuer : NULL, true);
        array_add_text(&pre[7], it->certificate != NULL ? it->certificate->serial : NULL, true);
        array_add_text(&pre[8], it->operation->operation_id, true);
    }
    if (rc == ENR_OK) {
        static const char *const NAMES[PRE] = {":kind", ":id", ":issuer", ":serial", ":rid", ":spki",
                                               ":cert_issuer", ":cert_serial", ":op_id"};
        sql_stmt *st = NULL;
        binder b = {NULL, 0};
        if ((rc = statement(s, ST_BATCH_PRECONDITIONS, &st, err)) == ENR_OK) {
            b.st = st;
            for (size_t c = 0; c < PRE; c++) {
                const char *text = array_end(&pre[c]);
                if (text == NULL)
                    b.rc = b.rc ? b.rc : SQL_NO_PARAM;
                else
                    bind_text_exact(&b, NAMES[c], text);
            }
            void *rows = NULL;
            size_t got = 0;
            rc = fetch_all(s, st, &b, read_batch_check, sizeof(batch_check), &rows, &got, err);
            if (rc == ENR_OK && got != count)
                rc = enr_error_set(err, ENR_E_INTERNAL, "%zu answers to the checks of %zu items", got, count);
            if (rc == ENR_OK)
                memcpy(checks, rows, count * sizeof *checks);
            free(rows);
        }
    }
    /* Judge in order. */
    size_t passed = 0;
    for (size_t i = 0; rc == ENR_OK && i < count; i++) {
        enr_registration_commit *it = &items[i];
        const enr_registration *r = it->registration;
        preconditions p = checks[i].p;
        enr_code item = ENR_OK;
        size_t earlier = count;
        for (size_t j = 0; j < i; j++)
            if (items[j].result == ENR_OK && strcmp(items[j].registration->registration_id, r->registration_id) == 0)
                earlier = j;
        if (earlier < count) /* the registration as the earlier item left it */
            p.same_enrollment = items[earlier].registration->enrollment_kind == r->enrollment_kind &&
                                strcmp(items[earlier].registration->enrollment_id, r->enrollment_id) == 0;
        item = judge_preconditions(it, &p, &it->error);
        if (item == ENR_OK && checks[i].disabled)
            item = enr_error_refuse(&it->error, ENR_R_REGISTRATION_DISABLED, "registration '%s' is disabled",
                                    r->registration_id);
        bool taken = checks[i].serial_taken;
        for (size_t j = 0; item == ENR_OK && !taken && it->certificate != NULL && j < i; j++)
            taken = items[j].result == ENR_OK && items[j].certificate != NULL &&
                    strcmp(items[j].certificate->serial, it->certificate->serial) == 0 &&
                    strcmp(items[j].certificate->issuer, it->certificate->issuer) == 0;
        if (item == ENR_OK && taken)
            item = enr_error_set(&it->error, ENR_E_EXISTS, "serial %s of issuer '%s' is in the store already",
                                 it->certificate->serial, it->certificate->issuer);
        bool op_taken = checks[i].operation_taken;
        for (size_t j = 0; item == ENR_OK && !op_taken && j < i; j++)
            op_taken = items[j].result == ENR_OK &&
                       strcmp(items[j].operation->operation_id, it->operation->operation_id) == 0;
        if (item == ENR_OK && op_taken)
            item = enr_error_set(&it->error, ENR_E_EXISTS, "operation '%s' is in the store already",
                                 it->operation->operation_id);
        it->result = item;
        if (item != ENR_OK)
            continue;
        passed++;
        /* One registration row per id: the last item's fields, the last
         * certificate any of them had (as the one-by-one upserts leave it). */
        merged_into[i] = i;
        if (earlier < count)
            for (size_t j = 0; j < i; j++)
                if (items[j].result == ENR_OK && merged_into[j] == merged_into[earlier])
                    merged_into[j] = i;
    }
    for (size_t i = 0; rc == ENR_OK && i < count; i++) {
        const enr_registration_commit *it = &items[i];
        if (it->result != ENR_OK)
            continue;
        if (merged_into[i] == i) {
            const enr_registration *r = it->registration;
            const char *last_issuer = r->last_certificate_issuer, *last_serial = r->last_certificate_serial;
            for (size_t j = i; j-- > 0 && (last_serial == NULL || last_serial[0] == '\0');)
                if (items[j].result == ENR_OK && merged_into[j] == i)
                    last_issuer = items[j].registration->last_certificate_issuer,
                    last_serial = items[j].registration->last_certificate_serial;
            array_add_text(&reg[0], r->registration_id, true);
            array_add_text(&reg[1], kind_text(r->enrollment_kind), true);
            array_add_text(&reg[2], r->enrollment_id, true);
            array_add_text(&reg[3], r->status, true);
            array_add_text(&reg[4], r->substatus, true);
            array_add_text(&reg[5], r->device_id, true);
            array_add_text(&reg[6], r->assigned_hub, true);
            array_add_text(&reg[7], r->etag, true);
            array_add_int(&reg[8], (int64_t)r->created_at);
            array_add_int(&reg[9], (int64_t)r->updated_at);
            array_add_text(&reg[10], last_issuer, true);
            array_add_text(&reg[11], last_serial, true);
        }
        const enr_certificate *c = it->certificate;
        if (c != NULL) {
            array_add_text(&cert[0], c->issuer, true);
            array_add_text(&cert[1], c->serial, true);
            array_add_text(&cert[2], c->registration_id, true);
            array_add_text(&cert[3], c->policy, true);
            array_add_text(&cert[4], c->subject, false);
            array_add_int(&cert[5], (int64_t)c->not_before);
            array_add_int(&cert[6], (int64_t)c->not_after);
            array_add_int(&cert[7], (int64_t)c->issued_at);
            array_add_text(&cert[8], c->spki_sha256, true);
            array_add_hex(&cert[9], c->der.data, c->der.len);
        }
        const enr_operation *o = it->operation;
        array_add_text(&op[0], o->operation_id, true);
        array_add_text(&op[1], o->registration_id, true);
        array_add_text(&op[2], o->status, true);
        array_add_text(&op[3], o->result_json, true);
        array_add_int(&op[4], (int64_t)o->created_at);
        array_add_int(&op[5], (int64_t)o->updated_at);
        array_add_text(&op[6], o->certificate_issuer, true);
        array_add_text(&op[7], o->certificate_serial, true);
        const enr_audit_event *a = it->audit;
        if (a != NULL) {
            array_add_int(&aud[0], (int64_t)a->at);
            array_add_text(&aud[1], a->kind, true);
            array_add_text(&aud[2], a->registration_id, true);
            array_add_text(&aud[3], a->outcome, true);
            array_add_int(&aud[4], a->reason_code);
            array_add_text(&aud[5], a->detail, true);
        }
    }
    static const char *const REG_NAMES[REG] = {
        ":registration_id", ":enrollment_kind", ":enrollment_id", ":status", ":substatus", ":device_id",
        ":assigned_hub", ":etag", ":created_at", ":updated_at", ":last_certificate_issuer", ":last_certificate_serial"};
    static const char *const CERT_NAMES[CERT] = {":issuer", ":serial", ":registration_id", ":policy",
                                                 ":subject", ":not_before", ":not_after", ":issued_at",
                                                 ":spki_sha256", ":der"};
    static const char *const OP_NAMES[OP] = {":operation_id", ":registration_id", ":status",
                                             ":result_json", ":created_at", ":updated_at",
                                             ":certificate_issuer", ":certificate_serial"};
    static const char *const AUD_NAMES[AUD] = {":at", ":kind", ":registration_id", ":outcome", ":reason_code",
                                               ":detail"};
    int64_t rows = 0;
    if (rc == ENR_OK && passed > 0 &&
        (rc = run_arrays(s, ST_BATCH_REGISTRATIONS, REG_NAMES, reg, REG, "storing the registrations", &rows, err)) ==
            ENR_OK &&
        rows != (int64_t)reg[0].n)
        rc = enr_error_set(err, ENR_E_INTERNAL, "%lld of %zu registrations stored", (long long)rows, reg[0].n);
    if (rc == ENR_OK && cert[0].n > 0)
        rc = run_arrays(s, ST_BATCH_CERTIFICATES, CERT_NAMES, cert, CERT, "storing the certificates", NULL, err);
    if (rc == ENR_OK && passed > 0)
        rc = run_arrays(s, ST_BATCH_OPERATIONS, OP_NAMES, op, OP, "storing the operations", NULL, err);
    if (rc == ENR_OK && aud[0].n > 0)
        rc = run_arrays(s, ST_BATCH_AUDITS, AUD_NAMES, aud, AUD, "recording the audit events", NULL, err);
    rc = checks != NULL && merged_into != NULL ? finish(s, rc, err) : rc;
    arrays_free(pre, PRE);
    arrays_free(reg, REG);
    arrays_free(cert, CERT);
    arrays_free(op, OP);
    arrays_free(aud, AUD);
    free(checks);
    free(merged_into);
    if (rc != ENR_OK)
        for (size_t i = 0; i < count; i++)
            if (items[i].result == ENR_OK)
                items[i].result = rc, items[i].error = *err;
    return rc;
}
/* One pass over a batch, in the open write transaction. With `savepoints`
 * each item runs inside its own, so a failing one (a serial taken) leaves the
 * others. Without, an item that fails before its first write (a precondition)
 * leaves nothing either, but one failing after it cannot be undone alone:
 * the pass stops and sets *redo. Returns the transaction's own failure (I/O,
 * full disk), after which nothing holds. */
static enr_code commit_pass(sql_store *s, enr_registration_commit *items, size_t count, bool savepoints,
                            bool *redo, enr_error *err)
{
    *redo = false;
    for (size_t i = 0; i < count; i++)
        items[i].result = ENR_OK;
    for (size_t i = 0; i < count; i++) {
        enr_registration_commit *it = &items[i];
        enr_error *e = &it->error;
        enr_code item = savepoints ? run_simple(s, ST_SAVEPOINT, "starting a savepoint", e) : ENR_OK;
        bool wrote = false;
        if (item == ENR_OK && (item = check_preconditions(s, it, e)) == ENR_OK) {
            wrote = true;
            if ((item = upsert_registration(s, it->registration, e)) == ENR_OK &&
                (it->certificate == NULL || (item = insert_certificate(s, it->certificate, e)) == ENR_OK) &&
                (item = insert_operation(s, it->operation, e)) == ENR_OK)
                item = insert_optional_audit(s, it->audit, e);
        }
        it->result = item;
        if (item != ENR_OK && !s->d->in_transaction(s->conn))
            return enr_error_set(err, item, "%s", e->message);
        if (!savepoints) {
            if (item != ENR_OK && wrote) {
                *redo = true;
                return ENR_OK;
            }
        } else if (item != ENR_OK &&
                   (run_simple(s, ST_ROLLBACK_TO_SAVEPOINT, "rolling back an item", NULL) != ENR_OK ||
                    run_simple(s, ST_RELEASE_SAVEPOINT, "releasing a savepoint", NULL) != ENR_OK)) {
            return enr_error_set(err, ENR_E_IO, "cannot roll back one item of a group commit");
        } else if (item == ENR_OK && run_simple(s, ST_RELEASE_SAVEPOINT, "releasing a savepoint", e) != ENR_OK) {
            return enr_error_set(err, ENR_E_IO, "%s", e->message);
        }
    }
    return ENR_OK;
}

/* One COMMIT, one fsync, for the whole batch. Savepoints only when needed: in
 * WAL mode a savepoint makes SQLite copy every page its item changes into the
 * statement journal first (about 60k instructions a registration). The first
 * pass goes without; an item failing after its first write (a serial or an
 * operation id taken, which random ones never are in practice) sends the
 * batch round again with a savepoint each, or, alone, is the whole answer. */
static enr_code sql_commit_registrations(void *impl, enr_registration_commit *items, size_t count,
                                            enr_error *err)
{
    sql_store *s = impl;
    if (s->d->dialect == SQL_DIALECT_POSTGRES)
        return commit_batch_multirow(s, items, count, err);
    for (size_t i = 0; i < count; i++)
        items[i].result = ENR_OK; /* until the transaction or the item says otherwise */
    bool redo = false;
    enr_code rc = begin_write(s, err);
    if (rc == ENR_OK)
        rc = commit_pass(s, items, count, false, &redo, err);
    if (rc == ENR_OK && redo) {
        rollback(s);
        if (count == 1)
            return ENR_OK; /* the lone item's failure is its result; nothing was kept */
        if ((rc = begin_write(s, err)) == ENR_OK)
            rc = commit_pass(s, items, count, true, &redo, err);
    }
    rc = finish(s, rc, err);
    if (rc != ENR_OK)
        for (size_t i = 0; i < count; i++)
            if (items[i].result == ENR_OK)
                items[i].result = rc, items[i].error = *err;
    return rc;
}

static enr_code get_registration(sql_store *s, const char *registration_id, enr_registration *out,
                                 enr_error *err)
{
    sql_stmt *st = NULL;
    enr_code rc = statement(s, ST_REGISTRATION_GET, &st, err);
    if (rc != ENR_OK)
        return rc;
    binder b = {st, 0};
    bind_text(&b, ":id", registration_id);
    char missing[200];
    snprintf(missing, sizeof missing, "no registration '%s'", registration_id);
    return fetch_one(s, st, &b, read_registration, out, missing, err);
}

static enr_code sql_get_registration(void *impl, const char *registration_id, enr_registration *out,
                                        enr_error *err)
{
    return get_registration(impl, registration_id, out, err);
}

static enr_code sql_list_registrations(void *impl, const enr_registration_filter *f,
                                          enr_registration_list *out, enr_error *err)
{
    sql_store *s = impl;
    sql_stmt *st = NULL;
    enr_code rc = statement(s, ST_REGISTRATION_LIST, &st, err);
    if (rc != ENR_OK)
        return rc;
    binder b = {st, 0};
    bind_text(&b, ":kind", f->enrollment_kind != 0 ? kind_text(f->enrollment_kind) : NULL);
    bind_text(&b, ":enrollment_id", f->enrollment_id);
    bind_text(&b, ":status", f->status);
    bind_text(&b, ":after", f->after);
    bind_limit(&b, f->limit);
    return fetch_all(s, st, &b, read_registration, sizeof *out->items, (void **)&out->items, &out->count,
                     err);
}

static enr_code sql_set_registration_enabled(void *impl, const char *registration_id, bool enabled,
                                                const char *etag, time_t now,
                                                const enr_audit_event *audit, enr_error *err)
{
    sql_store *s = impl;
    enr_code rc = begin_write(s, err);
    if (rc != ENR_OK)
        return rc;
    sql_stmt *st = NULL;
    if ((rc = statement(s, enabled ? ST_REGISTRATION_ENABLE : ST_REGISTRATION_DISABLE, &st, err)) == ENR_OK) {
        binder b = {st, 0};
        bind_text(&b, ":id", registration_id);
        bind_text(&b, ":etag", etag);
        bind_int(&b, ":now", (int64_t)now);
        rc = run(s, st, &b, "changing a registration", err);
    }
    if (rc == ENR_OK && s->d->changes(s->conn) == 0)
        rc = enr_error_set(err, ENR_E_NOTFOUND, "no registration '%s'", registration_id);
    if (rc == ENR_OK)
        rc = insert_optional_audit(s, audit, err);
    return finish(s, rc, err);
}

static enr_code get_certificate(sql_store *s, const char *issuer, const char *serial,
                                enr_certificate *out, enr_error *err)
{
    sql_stmt *st = NULL;
    enr_code rc = statement(s, ST_CERT_GET, &st, err);
    if (rc != ENR_OK)
        return rc;
    binder b = {st, 0};
    bind_text(&b, ":issuer", issuer);
    bind_text(&b, ":serial", serial);
    char missing[ENR_STORE_DN_MAX + 100];
    snprintf(missing, sizeof missing, "no certificate with serial %s from issuer '%s'", serial, issuer);
    return fetch_one(s, st, &b, read_certificate, out, missing, err);
}

static enr_code sql_get_certificate(void *impl, const char *issuer, const char *serial,
                                       enr_certificate *out, enr_error *err)
{
    return get_certificate(impl, issuer, serial, out, err);
}

static enr_code sql_list_certificates(void *impl, const enr_certificate_filter *f,
                                         enr_certificate_list *out, enr_error *err)
{
    sql_store *s = impl;
    sql_stmt *st = NULL;
    enr_code rc = statement(s, ST_CERT_LIST, &st, err);
    if (rc != ENR_OK)
        return rc;
    binder b = {st, 0};
    bind_text(&b, ":registration_id", f->registration_id);
    bind_text(&b, ":issuer", f->issuer);
    bind_int(&b, ":now", (int64_t)f->now);
    if (f->expiring_within > 0)
        bind_int(&b, ":until", (int64_t)f->now > INT64_MAX - f->expiring_within
                                   ? INT64_MAX
                                   : (int64_t)f->now + f->expiring_within);
    else
        bind_null(&b, ":until");
    if (f->revoked == ENR_REVOKED_ANY)
        bind_null(&b, ":revoked");
    else
        bind_int(&b, ":revoked", f->revoked == ENR_REVOKED_ONLY);
    bind_int(&b, ":after_id", f->after_id);
    bind_limit(&b, f->limit);
    return fetch_all(s, st, &b, read_certificate, sizeof *out->items, (void **)&out->items, &out->count,
                     err);
}

static enr_code revoke_one(sql_store *s, const char *issuer, const char *serial, int reason,
                           time_t when, enr_error *err)
{
    sql_stmt *st = NULL;
    enr_code rc = statement(s, ST_CERT_REVOKE, &st, err);
    if (rc != ENR_OK)
        return rc;
    binder b = {st, 0};
    bind_text(&b, ":issuer", issuer);
    bind_text(&b, ":serial", serial);
    bind_int(&b, ":reason", reason);
    bind_int(&b, ":at", (int64_t)when);
    if ((rc = run(s, st, &b, "revoking a certificate", err)) != ENR_OK || s->d->changes(s->conn) > 0)
        return rc;
    /* Nothing changed: unknown, or revoked before. */
    enr_certificate known = {0};
    rc = get_certificate(s, issuer, serial, &known, err);
    enr_certificate_free(&known);
    if (rc != ENR_OK)
        return rc;
    return enr_error_set(err, ENR_E_EXISTS, "certificate %s from issuer '%s' is revoked already", serial,
                         issuer);
}

static enr_code sql_revoke_certificate(void *impl, const char *issuer, const char *serial, int reason,
                                          time_t when, const enr_audit_event *audit, enr_error *err)
{
    sql_store *s = impl;
    enr_code rc = begin_write(s, err);
    if (rc != ENR_OK)
        return rc;
    if ((rc = revoke_one(s, issuer, serial, reason, when, err)) == ENR_OK && reason == CRL_REASON_KEY_COMPROMISE) {
        sql_stmt *st = NULL;
        if ((rc = statement(s, ST_KEY_COMPROMISED_OF_CERT, &st, err)) == ENR_OK) {
            binder b = {st, 0};
            bind_text(&b, ":issuer", issuer);
            bind_text(&b, ":serial", serial);
            rc = run(s, st, &b, "blocking a compromised key", err);
        }
    }
    if (rc == ENR_OK)
        rc = insert_optional_audit(s, audit, err);
    return finish(s, rc, err);
}

static enr_code revoke_all_of(sql_store *s, const char *registration_id, int reason, time_t when,
                              enr_certificate_list *revoked, enr_error *err)
{
    enr_registration known;
    sql_stmt *st = NULL;
    enr_code rc;
    if ((rc = get_registration(s, registration_id, &known, err)) != ENR_OK ||
        (rc = statement(s, ST_CERT_VALID_OF_REGISTRATION, &st, err)) != ENR_OK)
        return rc;
    binder b = {st, 0};
    bind_text(&b, ":registration_id", registration_id);
    if ((rc = fetch_all(s, st, &b, read_certificate, sizeof *revoked->items, (void **)&revoked->items,
                        &revoked->count, err)) != ENR_OK ||
        (rc = statement(s, ST_CERT_REVOKE_REGISTRATION, &st, err)) != ENR_OK)
        return rc;
    binder u = {st, 0};
    bind_text(&u, ":registration_id", registration_id);
    bind_int(&u, ":reason", reason);
    bind_int(&u, ":at", (int64_t)when);
    if ((rc = run(s, st, &u, "revoking the registration's certificates", err)) != ENR_OK)
        return rc;
    for (size_t i = 0; i < revoked->count; i++) {
        revoked->items[i].revoked = true;
        revoked->items[i].revocation_reason = reason;
        revoked->items[i].revoked_at = when;
    }
    return ENR_OK;
}

static enr_code sql_revoke_registration(void *impl, const char *registration_id, int reason, time_t when,
                                           const enr_audit_event *audit, enr_certificate_list *revoked,
                                           enr_error *err)
{
    sql_store *s = impl;
    enr_code rc = begin_write(s, err);
    if (rc != ENR_OK)
        return rc;
    if ((rc = revoke_all_of(s, registration_id, reason, when, revoked, err)) == ENR_OK &&
        reason == CRL_REASON_KEY_COMPROMISE) {
        sql_stmt *st = NULL;
        if ((rc = statement(s, ST_KEY_COMPROMISED_OF_REGISTRATION, &st, err)) == ENR_OK) {
            binder b = {st, 0};
            bind_text(&b, ":registration_id", registration_id);
            rc = run(s, st, &b, "blocking compromised keys", err);
        }
    }
    if (rc == ENR_OK)
        rc = insert_optional_audit(s, audit, err);
    return finish(s, rc, err);
}

static enr_code sql_block_key(void *impl, const char *spki_sha256, const char *issuer, const char *serial,
                                 time_t when, const enr_audit_event *audit, enr_error *err)
{
    sql_store *s = impl;
    enr_code rc = begin_write(s, err);
    if (rc != ENR_OK)
        return rc;
    sql_stmt *st = NULL;
    if ((rc = statement(s, ST_KEY_BLOCK, &st, err)) == ENR_OK) {
        binder b = {st, 0};
        bind_text(&b, ":spki", spki_sha256);
        bind_text(&b, ":issuer", issuer);
        bind_text(&b, ":serial", serial);
        bind_int(&b, ":at", (int64_t)when);
        rc = run(s, st, &b, "blocking a compromised key", err);
    }
    if (rc == ENR_OK)
        rc = insert_optional_audit(s, audit, err);
    return finish(s, rc, err);
}

static enr_code read_flag(sql_stmt *st, void *item, enr_error *err)
{
    (void)err;
    *(bool *)item = st->d->column_int(st, 0) != 0;
    return ENR_OK;
}

static enr_code sql_key_compromised(void *impl, const char *spki_sha256, bool *out, enr_error *err)
{
    sql_store *s = impl;
    sql_stmt *st = NULL;
    enr_code rc = statement(s, ST_KEY_IS_COMPROMISED, &st, err);
    if (rc != ENR_OK)
        return rc;
    binder b = {st, 0};
    bind_text(&b, ":spki", spki_sha256);
    return fetch_one(s, st, &b, read_flag, out, "no answer", err);
}

static enr_code read_int64(sql_stmt *st, void *item, enr_error *err)
{
    (void)err;
    *(int64_t *)item = st->d->column_int(st, 0);
    return ENR_OK;
}

static enr_code sql_next_crl_number(void *impl, const char *issuer, int64_t at_least, int64_t *number,
                                    enr_error *err)
{
    sql_store *s = impl;
    sql_stmt *st = NULL;
    enr_code rc = begin_write(s, err);
    if (rc == ENR_OK && (rc = statement(s, ST_CRL_NUMBER_NEXT, &st, err)) == ENR_OK) {
        binder b = {st, 0};
        bind_text(&b, ":issuer", issuer);
        bind_int(&b, ":at_least", at_least);
        rc = fetch_one(s, st, &b, read_int64, number, "no CRL number", err);
    }
    return finish(s, rc, err);
}

typedef struct revocation_state {
    int64_t count;
    time_t latest;
} revocation_state;

static enr_code read_revocation_state(sql_stmt *st, void *item, enr_error *err)
{
    (void)err;
    revocation_state *r = item;
    r->count = st->d->column_int(st, 0);
    r->latest = (time_t)st->d->column_int(st, 1);
    return ENR_OK;
}

static enr_code sql_revocation_state(void *impl, const char *issuer, int64_t *count, time_t *latest, enr_error *err)
{
    sql_store *s = impl;
    sql_stmt *st = NULL;
    enr_code rc = statement(s, ST_REVOCATION_STATE, &st, err);
    if (rc != ENR_OK)
        return rc;
    binder b = {st, 0};
    bind_text(&b, ":issuer", issuer);
    revocation_state r = {0, 0};
    rc = fetch_one(s, st, &b, read_revocation_state, &r, "no answer", err);
    *count = r.count;
    *latest = r.latest;
    return rc;
}

static enr_code sql_move_registration(void *impl, const char *registration_id, enr_enrollment_kind kind,
                                         const char *enrollment_id, const char *etag, time_t now,
                                         const enr_audit_event *audit, enr_error *err)
{
    sql_store *s = impl;
    enr_code rc = begin_write(s, err);
    if (rc != ENR_OK)
        return rc;
    enr_enrollment target = {0};
    /* The target must exist; reading it inside the write transaction
     * keeps it from vanishing before the commit. */
    rc = get_enrollment(s, kind, enrollment_id, &target, err);
    enr_enrollment_free(&target);
    sql_stmt *st = NULL;
    if (rc == ENR_OK && (rc = statement(s, ST_REGISTRATION_MOVE, &st, err)) == ENR_OK) {
        binder b = {st, 0};
        bind_text(&b, ":id", registration_id);
        bind_text(&b, ":kind", kind_text(kind));
        bind_text(&b, ":enrollment_id", enrollment_id);
        bind_text(&b, ":etag", etag);
        bind_int(&b, ":now", (int64_t)now);
        rc = run(s, st, &b, "moving a registration", err);
    }
    if (rc == ENR_OK && s->d->changes(s->conn) == 0)
        rc = enr_error_set(err, ENR_E_NOTFOUND, "no registration '%s'", registration_id);
    if (rc == ENR_OK)
        rc = insert_optional_audit(s, audit, err);
    return finish(s, rc, err);
}

static enr_code sql_get_operation(void *impl, const char *operation_id, enr_operation *out,
                                     enr_error *err)
{
    sql_store *s = impl;
    sql_stmt *st = NULL;
    enr_code rc = statement(s, ST_OPERATION_GET, &st, err);
    if (rc != ENR_OK)
        return rc;
    binder b = {st, 0};
    bind_text(&b, ":id", operation_id);
    char missing[200];
    snprintf(missing, sizeof missing, "no operation '%s'", operation_id);
    return fetch_one(s, st, &b, read_operation, out, missing, err);
}

/* ---- AWS fleet provisioning --------------------------------------------- */

static enr_code read_aws_template(sql_stmt *st, void *item, enr_error *err)
{
    enr_aws_template_record *t = item;
    enr_code rc;
    if ((rc = COLUMN_TEXT(st, 0, t->name, err)) != ENR_OK || (rc = column_strdup(st, 1, &t->body, err)) != ENR_OK ||
        (rc = COLUMN_TEXT(st, 3, t->policy, err)) != ENR_OK || (rc = COLUMN_TEXT(st, 4, t->hook_url, err)) != ENR_OK ||
        (rc = column_strdup(st, 5, &t->hook_ca_pem, err)) != ENR_OK)
        return rc;
    t->allow_server_keygen = column_bool(st, 2);
    t->hook_timeout_ms = (int)st->d->column_int(st, 6);
    t->enabled = column_bool(st, 7);
    t->created_at = column_time(st, 8);
    t->updated_at = column_time(st, 9);
    return ENR_OK;
}

static enr_code read_aws_thing(sql_stmt *st, void *item, enr_error *err)
{
    enr_aws_thing *t = item;
    enr_code rc;
    if ((rc = COLUMN_TEXT(st, 0, t->name, err)) != ENR_OK || (rc = COLUMN_TEXT(st, 1, t->template_name, err)) != ENR_OK ||
        (rc = column_strdup(st, 2, &t->attributes_json, err)) != ENR_OK ||
        (rc = column_strdup(st, 3, &t->groups_json, err)) != ENR_OK ||
        (rc = COLUMN_TEXT(st, 4, t->thing_type, err)) != ENR_OK)
        return rc;
    t->enabled = column_bool(st, 5);
    t->created_at = column_time(st, 6);
    t->updated_at = column_time(st, 7);
    return ENR_OK;
}

static enr_aws_cert_status aws_status_of(const char *text)
{
    if (strcmp(text, "pending") == 0)
        return ENR_AWS_CERT_PENDING;
    if (strcmp(text, "active") == 0)
        return ENR_AWS_CERT_ACTIVE;
    if (strcmp(text, "superseded") == 0)
        return ENR_AWS_CERT_SUPERSEDED;
    return ENR_AWS_CERT_REVOKED;
}

static enr_code read_aws_certificate(sql_stmt *st, void *item, enr_error *err)
{
    enr_aws_thing_certificate *c = item;
    char status[ENR_STORE_WORD_MAX + 1];
    enr_code rc;
    if ((rc = COLUMN_TEXT(st, 0, c->issuer, err)) != ENR_OK || (rc = COLUMN_TEXT(st, 1, c->serial, err)) != ENR_OK ||
        (rc = COLUMN_TEXT(st, 2, c->fingerprint_sha256, err)) != ENR_OK ||
        (rc = COLUMN_TEXT(st, 3, c->thing_name, err)) != ENR_OK ||
        (rc = COLUMN_TEXT(st, 4, c->template_name, err)) != ENR_OK || (rc = COLUMN_TEXT(st, 5, status, err)) != ENR_OK)
        return rc;
    c->status = aws_status_of(status);
    c->created_at = column_time(st, 6);
    c->updated_at = column_time(st, 7);
    return ENR_OK;
}

static enr_code read_name(sql_stmt *st, void *item, enr_error *err)
{
    return column_text(st, 0, item, ENR_STORE_ID_MAX + 1, err);
}

/* A claim CA must be a bootstrap CA whose possession was proven: checked in
 * the transaction that creates the template, so a CA cannot change under
 * it. */
static enr_code check_claim_ca(sql_store *s, const char *name, enr_error *err)
{
    enr_ca_record ca = {0};
    enr_code rc = sql_get_ca(s, name, &ca, err);
    if (rc == ENR_OK && ca.role != ENR_CA_BOOTSTRAP)
        rc = enr_error_refuse(err, ENR_R_CA_UNVERIFIED,
                              "CA '%s' is an issuing CA; claim CAs are device-attestation CAs (`enroll admin ca "
                              "upload`)",
                              name);
    else if (rc == ENR_OK && !ca.verified)
        rc = enr_error_refuse(err, ENR_R_CA_UNVERIFIED,
                              "bootstrap CA '%s' is not verified: prove possession of its key first (`enroll "
                              "admin ca verify`)",
                              name);
    enr_ca_record_free(&ca);
    return rc;
}

static enr_code insert_aws_template(sql_store *s, const enr_aws_template_record *t, enr_error *err)
{
    sql_stmt *st = NULL;
    enr_code rc = statement(s, ST_AWS_TEMPLATE_INSERT, &st, err);
    if (rc != ENR_OK)
        return rc;
    binder b = {st, 0};
    bind_text(&b, ":name", t->name);
    bind_text(&b, ":body", t->body);
    bind_int(&b, ":keygen", t->allow_server_keygen);
    bind_text(&b, ":policy", t->policy);
    bind_text(&b, ":hook_url", t->hook_url);
    bind_text(&b, ":hook_ca_pem", t->hook_url[0] != '\0' ? t->hook_ca_pem : NULL);
    if (t->hook_url[0] != '\0')
        bind_int(&b, ":hook_timeout_ms", t->hook_timeout_ms);
    else
        bind_null(&b, ":hook_timeout_ms");
    bind_int(&b, ":enabled", t->enabled);
    bind_int(&b, ":created_at", (int64_t)t->created_at);
    bind_int(&b, ":updated_at", (int64_t)t->updated_at);
    rc = run(s, st, &b, "creating a provisioning template", err);
    if (rc == ENR_E_EXISTS)
        return enr_error_set(err, rc, "a provisioning template named '%s' exists already", t->name);
    for (size_t i = 0; rc == ENR_OK && i < t->claim_ca_count; i++) {
        if ((rc = statement(s, ST_AWS_TEMPLATE_CA_INSERT, &st, err)) != ENR_OK)
            break;
        binder c = {st, 0};
        bind_text(&c, ":name", t->name);
        bind_int(&c, ":position", (int64_t)i);
        bind_text(&c, ":ca_name", t->claim_cas[i]);
        rc = run(s, st, &c, "naming a claim CA", err);
    }
    return rc;
}

static enr_code sql_create_aws_template(void *impl, const enr_aws_template_record *t,
                                           const enr_audit_event *audit, enr_error *err)
{
    sql_store *s = impl;
    enr_code rc = begin_write(s, err);
    if (rc != ENR_OK)
        return rc;
    enr_credential_policy policy;
    rc = sql_get_policy(s, t->policy, &policy, err);
    for (size_t i = 0; rc == ENR_OK && i < t->claim_ca_count; i++)
        rc = check_claim_ca(s, t->claim_cas[i], err);
    if (rc == ENR_OK && (rc = insert_aws_template(s, t, err)) == ENR_OK)
        rc = insert_optional_audit(s, audit, err);
    return finish(s, rc, err);
}

static enr_code load_claim_cas(sql_store *s, enr_aws_template_record *t, enr_error *err)
{
    sql_stmt *st = NULL;
    enr_code rc = statement(s, ST_AWS_TEMPLATE_CAS, &st, err);
    if (rc != ENR_OK)
        return rc;
    binder b = {st, 0};
    bind_text(&b, ":name", t->name);
    char(*names)[ENR_STORE_ID_MAX + 1] = NULL;
    size_t count = 0;
    rc = fetch_all(s, st, &b, read_name, sizeof *names, (void **)&names, &count, err);
    if (rc == ENR_OK && count > ENR_STORE_CLAIM_CAS_MAX)
        rc = enr_error_set(err, ENR_E_PARSE, "template '%s' names more than %d claim CAs", t->name,
                           ENR_STORE_CLAIM_CAS_MAX);
    for (size_t i = 0; rc == ENR_OK && i < count; i++)
        memcpy(t->claim_cas[i], names[i], sizeof t->claim_cas[i]);
    if (rc == ENR_OK)
        t->claim_ca_count = count;
    free(names);
    return rc;
}

static enr_code get_aws_template(sql_store *s, const char *name, enr_aws_template_record *out, enr_error *err)
{
    sql_stmt *st = NULL;
    enr_code rc = statement(s, ST_AWS_TEMPLATE_GET, &st, err);
    if (rc != ENR_OK)
        return rc;
    binder b = {st, 0};
    bind_text(&b, ":name", name);
    char missing[200];
    snprintf(missing, sizeof missing, "no provisioning template named '%s'", name);
    if ((rc = fetch_one(s, st, &b, read_aws_template, out, missing, err)) != ENR_OK)
        return rc;
    return load_claim_cas(s, out, err);
}

static enr_code sql_get_aws_template(void *impl, const char *name, enr_aws_template_record *out, enr_error *err)
{
    sql_store *s = impl;
    enr_code rc = begin_read(s, err);
    if (rc != ENR_OK)
        return rc;
    return finish(s, get_aws_template(s, name, out, err), err);
}

static enr_code sql_list_aws_templates(void *impl, enr_aws_template_list *out, enr_error *err)
{
    sql_store *s = impl;
    sql_stmt *st = NULL;
    enr_code rc = begin_read(s, err);
    if (rc != ENR_OK)
        return rc;
    if ((rc = statement(s, ST_AWS_TEMPLATE_LIST, &st, err)) == ENR_OK) {
        binder b = {st, 0};
        rc = fetch_all(s, st, &b, read_aws_template, sizeof *out->items, (void **)&out->items, &out->count, err);
    }
    for (size_t i = 0; rc == ENR_OK && i < out->count; i++)
        rc = load_claim_cas(s, &out->items[i], err);
    return finish(s, rc, err);
}

/* One UPDATE or DELETE by name; no row is ENR_E_NOTFOUND. */
static enr_code change_by_name(sql_store *s, stmt_id id, const char *name, int enabled, time_t now,
                               const char *what, const char *missing, const enr_audit_event *audit,
                               enr_error *err)
{
    enr_code rc = begin_write(s, err);
    if (rc != ENR_OK)
        return rc;
    sql_stmt *st = NULL;
    if ((rc = statement(s, id, &st, err)) == ENR_OK) {
        binder b = {st, 0};
        bind_text(&b, ":name", name);
        if (enabled >= 0) {
            bind_int(&b, ":enabled", enabled);
            bind_int(&b, ":now", (int64_t)now);
        }
        rc = run(s, st, &b, what, err);
    }
    if (rc == ENR_OK && s->d->changes(s->conn) == 0)
        rc = enr_error_set(err, ENR_E_NOTFOUND, "%s '%s'", missing, name);
    if (rc == ENR_OK)
        rc = insert_optional_audit(s, audit, err);
    return finish(s, rc, err);
}

static enr_code sql_delete_aws_template(void *impl, const char *name, const enr_audit_event *audit,
                                           enr_error *err)
{
    return change_by_name(impl, ST_AWS_TEMPLATE_DELETE, name, -1, 0, "deleting a provisioning template",
                          "no provisioning template named", audit, err);
}

static enr_code sql_set_aws_template_enabled(void *impl, const char *name, bool enabled, time_t now,
                                                const enr_audit_event *audit, enr_error *err)
{
    return change_by_name(impl, ST_AWS_TEMPLATE_ENABLE, name, enabled, now, "changing a provisioning template",
                          "no provisioning template named", audit, err);
}

static enr_code sql_set_aws_thing_enabled(void *impl, const char *name, bool enabled, time_t now,
                                             const enr_audit_event *audit, enr_error *err)
{
    return change_by_name(impl, ST_AWS_THING_ENABLE, name, enabled, now, "changing a thing", "no thing named",
                          audit, err);
}

static enr_code sql_get_aws_thing(void *impl, const char *name, enr_aws_thing *out, enr_error *err)
{
    sql_store *s = impl;
    sql_stmt *st = NULL;
    enr_code rc = begin_read(s, err);
    if (rc != ENR_OK)
        return rc;
    if ((rc = statement(s, ST_AWS_THING_GET, &st, err)) == ENR_OK) {
        binder b = {st, 0};
        bind_text(&b, ":name", name);
        char missing[200];
        snprintf(missing, sizeof missing, "no thing named '%s'", name);
        rc = fetch_one(s, st, &b, read_aws_thing, out, missing, err);
    }
    if (rc == ENR_OK && (rc = statement(s, ST_AWS_THING_CERTS, &st, err)) == ENR_OK) {
        binder b = {st, 0};
        bind_text(&b, ":name", name);
        rc = fetch_all(s, st, &b, read_aws_certificate, sizeof *out->certificates, (void **)&out->certificates,
                       &out->certificate_count, err);
    }
    return finish(s, rc, err);
}

static enr_code sql_list_aws_things(void *impl, const char *template_name, enr_aws_thing_list *out,
                                       enr_error *err)
{
    sql_store *s = impl;
    sql_stmt *st = NULL;
    enr_code rc = statement(s, ST_AWS_THING_LIST, &st, err);
    if (rc != ENR_OK)
        return rc;
    binder b = {st, 0};
    bind_text(&b, ":template", template_name);
    return fetch_all(s, st, &b, read_aws_thing, sizeof *out->items, (void **)&out->items, &out->count, err);
}

static enr_code sql_aws_create_pending(void *impl, const enr_certificate *cert, const char *fingerprint,
                                          const char *template_name, const char *connection_fingerprint,
                                          const char *token_sha256, time_t now, const enr_audit_event *audit,
                                          enr_error *err)
{
    sql_store *s = impl;
    enr_code rc = begin_write(s, err);
    if (rc != ENR_OK)
        return rc;
    enr_aws_template_record t = {0};
    if ((rc = get_aws_template(s, template_name, &t, err)) == ENR_OK && !t.enabled)
        rc = enr_error_refuse(err, ENR_R_TEMPLATE_DISABLED, "provisioning template '%s' is disabled", t.name);
    enr_aws_template_record_free(&t);
    if (rc == ENR_OK)
        rc = insert_certificate(s, cert, err);
    sql_stmt *st = NULL;
    if (rc == ENR_OK && (rc = statement(s, ST_AWS_CERT_INSERT, &st, err)) == ENR_OK) {
        binder b = {st, 0};
        bind_text(&b, ":issuer", cert->issuer);
        bind_text(&b, ":serial", cert->serial);
        bind_text(&b, ":fingerprint", fingerprint);
        bind_text(&b, ":template", template_name);
        bind_int(&b, ":now", (int64_t)now);
        rc = run(s, st, &b, "keeping the pending certificate", err);
    }
    if (rc == ENR_OK && (rc = statement(s, ST_AWS_TOKEN_INSERT, &st, err)) == ENR_OK) {
        binder b = {st, 0};
        bind_text(&b, ":hash", token_sha256);
        bind_text(&b, ":issuer", cert->issuer);
        bind_text(&b, ":serial", cert->serial);
        bind_text(&b, ":connection", connection_fingerprint);
        bind_text(&b, ":template", template_name);
        bind_int(&b, ":now", (int64_t)now);
        bind_int(&b, ":expires", (int64_t)now + ENR_AWS_TOKEN_LIFETIME);
        rc = run(s, st, &b, "storing the ownership token", err);
    }
    if (rc == ENR_OK)
        rc = insert_optional_audit(s, audit, err);
    return finish(s, rc, err);
}

typedef struct token_row {
    char issuer[ENR_STORE_DN_MAX + 1];
    char serial[ENR_STORE_SERIAL_MAX + 1];
    char connection[ENR_STORE_SPKI_HEX + 1];
    char template_name[ENR_STORE_TEMPLATE_NAME_MAX + 1];
    time_t expires_at;
    bool consumed;
    char status[ENR_STORE_WORD_MAX + 1];
    bool revoked;
} token_row;

static enr_code read_token(sql_stmt *st, void *item, enr_error *err)
{
    token_row *t = item;
    enr_code rc;
    if ((rc = COLUMN_TEXT(st, 0, t->issuer, err)) != ENR_OK || (rc = COLUMN_TEXT(st, 1, t->serial, err)) != ENR_OK ||
        (rc = COLUMN_TEXT(st, 2, t->connection, err)) != ENR_OK ||
        (rc = COLUMN_TEXT(st, 3, t->template_name, err)) != ENR_OK || (rc = COLUMN_TEXT(st, 6, t->status, err)) != ENR_OK)
        return rc;
    t->expires_at = column_time(st, 4);
    t->consumed = !st->d->column_null(st, 5);
    t->revoked = column_bool(st, 7);
    return ENR_OK;
}

typedef struct thing_state {
    bool exists, enabled, owned;
} thing_state;

static enr_code read_thing_state(sql_stmt *st, void *item, enr_error *err)
{
    (void)err;
    thing_state *t = item;
    t->exists = true;
    t->enabled = column_bool(st, 0);
    t->owned = column_bool(st, 1);
    return ENR_OK;
}

/* Revokes one certificate unless it is revoked already, and sets its AWS
 * status. */
static enr_code retire_certificate(sql_store *s, const char *issuer, const char *serial, int reason,
                                   const char *status, time_t now, enr_error *err)
{
    sql_stmt *st = NULL;
    enr_code rc = statement(s, ST_AWS_CERT_REVOKE_IF_VALID, &st, err);
    if (rc != ENR_OK)
        return rc;
    binder b = {st, 0};
    bind_text(&b, ":issuer", issuer);
    bind_text(&b, ":serial", serial);
    bind_int(&b, ":reason", reason);
    bind_int(&b, ":at", (int64_t)now);
    if ((rc = run(s, st, &b, "revoking a certificate", err)) != ENR_OK ||
        (rc = statement(s, ST_AWS_CERT_SET_STATUS, &st, err)) != ENR_OK)
        return rc;
    binder u = {st, 0};
    bind_text(&u, ":issuer", issuer);
    bind_text(&u, ":serial", serial);
    bind_text(&u, ":status", status);
    bind_int(&u, ":now", (int64_t)now);
    return run(s, st, &u, "marking a certificate", err);
}

/* The token's own checks (the first of RegisterThing's, in the order
 * store.h documents): `hash` is the token's SHA-256. */
static enr_code check_token(sql_store *s, const enr_aws_register *r, token_row *token, enr_error *err)
{
    sql_stmt *st = NULL;
    enr_code rc = statement(s, ST_AWS_TOKEN_GET, &st, err);
    if (rc != ENR_OK)
        return rc;
    binder b = {st, 0};
    bind_text(&b, ":hash", r->token);
    rc = fetch_one(s, st, &b, read_token, token, "", err);
    if (rc == ENR_E_NOTFOUND)
        return enr_error_refuse(err, ENR_R_TOKEN_UNKNOWN, "no such certificate ownership token");
    if (rc != ENR_OK)
        return rc;
    if (token->consumed)
        return enr_error_refuse(err, ENR_R_TOKEN_USED, "the certificate ownership token was used already");
    if (r->now >= token->expires_at)
        return enr_error_refuse(err, ENR_R_TOKEN_EXPIRED, "the certificate ownership token expired");
    if (strcmp(token->connection, r->connection_fingerprint) != 0)
        return enr_error_refuse(err, ENR_R_TOKEN_WRONG_CONNECTION,
                                "the certificate ownership token was issued to another client certificate");
    if (strcmp(token->template_name, r->template_name) != 0)
        return enr_error_refuse(err, ENR_R_TOKEN_TEMPLATE_MISMATCH,
                                "the certificate ownership token was issued under template '%s', not '%s'",
                                token->template_name, r->template_name);
    if (token->revoked || strcmp(token->status, "pending") != 0)
        return enr_error_refuse(err, ENR_R_CREDENTIAL_REVOKED, "certificate %s was revoked before activation",
                                token->serial);
    return ENR_OK;
}

static enr_code sql_aws_token_certificate(void *impl, const enr_aws_register *r, char issuer[ENR_STORE_DN_MAX + 1],
                                             char serial[ENR_STORE_SERIAL_MAX + 1], enr_error *err)
{
    sql_store *s = impl;
    token_row token = {0};
    enr_code rc = begin_read(s, err);
    if (rc != ENR_OK)
        return rc;
    if ((rc = check_token(s, r, &token, err)) == ENR_OK) {
        memcpy(issuer, token.issuer, sizeof token.issuer);
        memcpy(serial, token.serial, sizeof token.serial);
    }
    return finish(s, rc, err);
}

/* Everything RegisterThing checks, in the order store.h documents, before
 * anything is written. */
static enr_code check_registration(sql_store *s, const enr_aws_register *r, token_row *token, thing_state *thing,
                                   enr_error *err)
{
    sql_stmt *st = NULL;
    enr_code rc = check_token(s, r, token, err);
    if (rc != ENR_OK)
        return rc;
    /* Whose connection is this: a claim (no thing), or a device by its
     * active certificate. */
    char owner[ENR_STORE_THING_NAME_MAX + 1] = "";
    if ((rc = statement(s, ST_AWS_OWNER_OF_FINGERPRINT, &st, err)) != ENR_OK)
        return rc;
    binder o = {st, 0};
    bind_text(&o, ":fp", r->connection_fingerprint);
    rc = fetch_one(s, st, &o, read_name, owner, "", err);
    if (rc == ENR_E_NOTFOUND)
        rc = ENR_OK, owner[0] = '\0';
    if (rc != ENR_OK)
        return rc;
    if (owner[0] != '\0' && strcmp(owner, r->thing_name) != 0)
        return enr_error_refuse(err, ENR_R_THING_MISMATCH,
                                "this connection's certificate belongs to thing '%s', not '%s': a device renews its "
                                "own thing",
                                owner, r->thing_name);
    if ((rc = statement(s, ST_AWS_THING_STATE, &st, err)) != ENR_OK)
        return rc;
    binder t = {st, 0};
    bind_text(&t, ":name", r->thing_name);
    rc = fetch_one(s, st, &t, read_thing_state, thing, "", err);
    if (rc == ENR_E_NOTFOUND)
        return ENR_OK; /* a new thing */
    if (rc != ENR_OK)
        return rc;
    if (!thing->enabled)
        return enr_error_refuse(err, ENR_R_THING_DISABLED, "thing '%s' is disabled", r->thing_name);
    if (thing->owned && owner[0] == '\0')
        return enr_error_refuse(err, ENR_R_THING_OWNED,
                                "thing '%s' belongs to another device (it has an active certificate, and this "
                                "connection's certificate is not one)",
                                r->thing_name);
    return ENR_OK;
}

static enr_code activate(sql_store *s, const enr_aws_register *r, const token_row *token,
                         enr_aws_register_result *result, enr_error *err)
{
    sql_stmt *st = NULL;
    enr_code rc;
    /* Single use: the UPDATE that consumes is the one that counts, so two
     * connections racing with one token cannot both win. */
    if ((rc = statement(s, ST_AWS_TOKEN_CONSUME, &st, err)) != ENR_OK)
        return rc;
    binder c = {st, 0};
    bind_text(&c, ":hash", r->token);
    bind_int(&c, ":now", (int64_t)r->now);
    if ((rc = run(s, st, &c, "consuming the ownership token", err)) != ENR_OK)
        return rc;
    if (s->d->changes(s->conn) != 1)
        return enr_error_refuse(err, ENR_R_TOKEN_USED, "the certificate ownership token was used already");
    if ((rc = statement(s, ST_AWS_THING_UPSERT, &st, err)) != ENR_OK)
        return rc;
    binder t = {st, 0};
    bind_text(&t, ":name", r->thing_name);
    bind_text(&t, ":template", r->template_name);
    bind_text(&t, ":attributes", r->attributes_json);
    bind_text(&t, ":groups", r->groups_json);
    bind_text(&t, ":thing_type", r->thing_type);
    bind_int(&t, ":now", (int64_t)r->now);
    if ((rc = run(s, st, &t, "creating or updating the thing", err)) != ENR_OK)
        return rc;
    /* The certificates this one replaces, read before they change. */
    if ((rc = statement(s, ST_AWS_CERTS_TO_SUPERSEDE, &st, err)) != ENR_OK)
        return rc;
    binder q = {st, 0};
    bind_text(&q, ":thing", r->thing_name);
    bind_text(&q, ":issuer", token->issuer);
    bind_text(&q, ":serial", token->serial);
    if ((rc = fetch_all(s, st, &q, read_certificate, sizeof *result->superseded.items,
                        (void **)&result->superseded.items, &result->superseded.count, err)) != ENR_OK)
        return rc;
    if ((rc = statement(s, ST_AWS_CERT_ACTIVATE, &st, err)) != ENR_OK)
        return rc;
    binder a = {st, 0};
    bind_text(&a, ":thing", r->thing_name);
    bind_text(&a, ":issuer", token->issuer);
    bind_text(&a, ":serial", token->serial);
    bind_int(&a, ":now", (int64_t)r->now);
    if ((rc = run(s, st, &a, "activating the certificate", err)) != ENR_OK)
        return rc;
    if (s->d->changes(s->conn) != 1)
        return enr_error_set(err, ENR_E_INTERNAL, "certificate %s was not pending", token->serial);
    for (size_t i = 0; i < result->superseded.count; i++) {
        enr_certificate *old = &result->superseded.items[i];
        if ((rc = retire_certificate(s, old->issuer, old->serial, CRL_REASON_SUPERSEDED, "superseded", r->now,
                                     err)) != ENR_OK)
            return rc;
        if (!old->revoked) {
            old->revoked = true;
            old->revocation_reason = CRL_REASON_SUPERSEDED;
            old->revoked_at = r->now;
        }
    }
    snprintf(result->issuer, sizeof result->issuer, "%s", token->issuer);
    snprintf(result->serial, sizeof result->serial, "%s", token->serial);
    return ENR_OK;
}

static enr_code sql_aws_register_thing(void *impl, const enr_aws_register *r, enr_aws_register_result *result,
                                          const enr_audit_event *audit, enr_error *err)
{
    sql_store *s = impl;
    enr_code rc = begin_write(s, err);
    if (rc != ENR_OK)
        return rc;
    token_row token = {0};
    thing_state thing = {0};
    if ((rc = check_registration(s, r, &token, &thing, err)) == ENR_OK &&
        (rc = activate(s, r, &token, result, err)) == ENR_OK)
        rc = insert_optional_audit(s, audit, err);
    if (rc == ENR_OK)
        result->thing_created = !thing.exists;
    return finish(s, rc, err);
}

static enr_code read_thing_name(sql_stmt *st, void *item, enr_error *err)
{
    return column_text(st, 0, item, ENR_STORE_THING_NAME_MAX + 1, err);
}

static enr_code sql_aws_thing_of_certificate(void *impl, const char *fingerprint,
                                                char thing_name[ENR_STORE_THING_NAME_MAX + 1], enr_error *err)
{
    sql_store *s = impl;
    sql_stmt *st = NULL;
    enr_code rc = statement(s, ST_AWS_OWNER_OF_FINGERPRINT, &st, err);
    if (rc != ENR_OK)
        return rc;
    binder b = {st, 0};
    bind_text(&b, ":fp", fingerprint);
    return fetch_one(s, st, &b, read_thing_name, thing_name, "no active thing certificate with this fingerprint", err);
}

static enr_code sql_aws_sweep_pending(void *impl, time_t now, size_t limit, const enr_audit_event *audit,
                                         enr_certificate_list *revoked, enr_error *err)
{
    sql_store *s = impl;
    enr_code rc = begin_write(s, err);
    if (rc != ENR_OK)
        return rc;
    sql_stmt *st = NULL;
    if ((rc = statement(s, ST_AWS_PENDING_EXPIRED, &st, err)) == ENR_OK) {
        binder b = {st, 0};
        bind_int(&b, ":now", (int64_t)now);
        bind_limit(&b, limit);
        rc = fetch_all(s, st, &b, read_certificate, sizeof *revoked->items, (void **)&revoked->items,
                       &revoked->count, err);
    }
    for (size_t i = 0; rc == ENR_OK && i < revoked->count; i++) {
        enr_certificate *c = &revoked->items[i];
        rc = retire_certificate(s, c->issuer, c->serial, CRL_REASON_CESSATION_OF_OPERATION, "revoked", now, err);
        if (rc == ENR_OK && !c->revoked) {
            c->revoked = true;
            c->revocation_reason = CRL_REASON_CESSATION_OF_OPERATION;
            c->revoked_at = now;
        }
    }
    if (rc == ENR_OK && revoked->count > 0)
        rc = insert_optional_audit(s, audit, err);
    return finish(s, rc, err);
}

/* ---- integrity ---------------------------------------------------------- */

/* ---- opening ------------------------------------------------------------ */

static const char *sql_location(const void *impl)
{
    const sql_store *s = impl;
    return s->d->location != NULL ? s->d->location(s->conn) : NULL;
}

/* Runs a statement returning one row of one value; *text gets a copy. */
static enr_code query_text(sql_store *s, const char *sql, char *text, size_t cap, enr_error *err)
{
    sql_stmt *st = NULL;
    enr_code code = s->d->prepare(s->conn, sql, &st, err);
    if (code != ENR_OK)
        return code;
    int rc = st->d->step(st);
    if (rc == SQL_ROW)
        code = column_text(st, 0, text, cap, err);
    else
        code = fail(s, rc == SQL_DONE ? 0 : rc, sql, err);
    s->d->finalize(st);
    return code;
}

static enr_code schema_version(sql_store *s, int *out, enr_error *err)
{
    char text[32];
    enr_code rc = query_text(s, "SELECT COALESCE(MAX(version), 0) FROM schema_version", text, sizeof text, err);
    if (rc == ENR_OK)
        *out = atoi(text);
    return rc;
}

static enr_code record_version(sql_store *s, int version, enr_error *err)
{
    sql_stmt *st = NULL;
    enr_code code = statement(s, ST_SCHEMA_VERSION_INSERT, &st, err);
    if (code != ENR_OK)
        return code;
    binder b = {st, 0};
    bind_int(&b, ":version", version);
    bind_int(&b, ":at", (int64_t)time(NULL));
    return run(s, st, &b, "recording the schema version", err);
}

static enr_code apply_migrations(sql_store *s, enr_error *err)
{
    int version = 0, newest = SCHEMA_VERSION;
    enr_code rc;
    if ((rc = s->d->exec(s->conn,
                         "CREATE TABLE IF NOT EXISTS schema_version (version INTEGER PRIMARY KEY, "
                         "applied_at BIGINT NOT NULL)",
                         "creating the schema version table", err)) != ENR_OK ||
        (rc = schema_version(s, &version, err)) != ENR_OK)
        return rc;
    if (version > newest)
        return enr_error_set(err, ENR_E_UNSUPPORTED,
                             "%s: the database has schema version %d, newer than the %d this enroll "
                             "knows: run a newer enroll (or restore a backup made by this one)",
                             s->d->where(s->conn), version, newest);
    for (int v = version + 1; rc == ENR_OK && v <= newest; v++) {
        char what[64];
        snprintf(what, sizeof what, "migrating to schema version %d", v);
        const char *text = s->d->dialect == SQL_DIALECT_POSTGRES && MIGRATIONS_POSTGRES[v - 1] != NULL
                               ? MIGRATIONS_POSTGRES[v - 1]
                               : MIGRATIONS[v - 1];
        char *expanded = expand_schema(s->d->dialect, text);
        rc = expanded != NULL ? s->d->exec(s->conn, expanded, what, err)
                              : enr_error_set(err, ENR_E_NOMEM, "out of memory");
        free(expanded);
        if (rc == ENR_OK)
            rc = record_version(s, v, err);
    }
    return rc;
}

/* Concurrent openers (processes, nodes) queue on the write lock; the
 * second finds the work done. */
static enr_code migrate(sql_store *s, enr_error *err)
{
    enr_code rc = begin_write(s, err);
    if (rc != ENR_OK)
        return rc;
    return finish(s, apply_migrations(s, err), err);
}

/* ---- copying a whole store ------------------------------------------------ */

/* Every table, parents before children (foreign keys), and its columns:
 * T text, I integer, B blob. schema_version is each store's own. */
typedef struct copied_table {
    const char *name;
    const char *columns;
    const char *types;
} copied_table;

static const copied_table COPIED[] = {
    {"ca", "name, role, certificate, chain_pem, key_ref, verification_code, verified, created_at, updated_at",
     "TTBTTTIII"},
    {"credential_policy", POLICY_COLUMNS, "TTTTTIITTI"},
    {"enrollment_group", ENROLLMENT_COLUMNS("group_id"), "TTTTTTITIIT"},
    {"enrollment_group_certificate", "group_id, position, der", "TIB"},
    {"individual_enrollment", ENROLLMENT_COLUMNS("registration_id"), "TTTTTTITIIT"},
    {"individual_enrollment_certificate", "registration_id, position, der", "TIB"},
    {"registration", REGISTRATION_COLUMNS ", status_before_disable", "TTTTTTTTIITTT"},
    {"certificate", CERT_COLUMNS, "ITTTTTIIITBIII"},
    {"operation", OPERATION_COLUMNS, "TTTTIITT"},
    {"audit_event", AUDIT_COLUMNS, "IITTTIT"},
    {"compromised_key", "spki_sha256, issuer, serial, at", "TTTI"},
    {"aws_template", AWS_TEMPLATE_COLUMNS, "TTITTTIIII"},
    {"aws_template_claim_ca", "template, position, ca_name", "TIT"},
    {"aws_thing", AWS_THING_COLUMNS, "TTTTTIII"},
    {"aws_certificate", AWS_CERT_COLUMNS, "TTTTTTII"},
    {"aws_ownership_token",
     "token_sha256, issuer, serial, connection_fingerprint, template, created_at, expires_at, consumed_at",
     "TTTTTIII"},
    {"crl_number", "issuer, number", "TI"},
};
#define COPIED_COUNT (sizeof COPIED / sizeof COPIED[0])

static enr_code count_rows(sql_store *s, const char *sql, int64_t *out, enr_error *err)
{
    char text[32];
    enr_code rc = query_text(s, sql, text, sizeof text, err);
    if (rc == ENR_OK)
        *out = strtoll(text, NULL, 10);
    return rc;
}

/* The database's own list of tables and columns, against COPIED: a table
 * a later migration adds and this list forgets is an error, not a store
 * moved without it. */
static enr_code check_copied_schema(sql_store *s, enr_error *err)
{
    const char *tables_sql = s->d->dialect == SQL_DIALECT_POSTGRES
                                 ? "SELECT COUNT(*) FROM information_schema.tables WHERE table_schema = "
                                   "current_schema() AND table_name <> 'schema_version'"
                                 : "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name <> "
                                   "'schema_version' AND name NOT LIKE 'sqlite_%'";
    int64_t n = 0;
    enr_code rc = count_rows(s, tables_sql, &n, err);
    if (rc == ENR_OK && n != (int64_t)COPIED_COUNT)
        return enr_error_set(err, ENR_E_INTERNAL, "%s has %lld tables; a copy knows %zu (a bug: a new table "
                             "must be added to the copy)", s->d->where(s->conn), (long long)n, COPIED_COUNT);
    for (size_t t = 0; rc == ENR_OK && t < COPIED_COUNT; t++) {
        char sql[256];
        if (s->d->dialect == SQL_DIALECT_POSTGRES)
            snprintf(sql, sizeof sql, "SELECT COUNT(*) FROM information_schema.columns WHERE table_schema = "
                     "current_schema() AND table_name = '%s'", COPIED[t].name);
        else
            snprintf(sql, sizeof sql, "SELECT COUNT(*) FROM pragma_table_info('%s')", COPIED[t].name);
        if ((rc = count_rows(s, sql, &n, err)) == ENR_OK && n != (int64_t)strlen(COPIED[t].types))
            rc = enr_error_set(err, ENR_E_INTERNAL, "table %s has %lld columns; a copy knows %zu (a bug)",
                               COPIED[t].name, (long long)n, strlen(COPIED[t].types));
    }
    return rc;
}

/* One table: every row read from FROM, inserted into TO as it is. */
static enr_code copy_table(sql_store *to, sql_store *from, const copied_table *t, enr_store_copy_progress progress,
                           void *ctx, int64_t *copied, enr_error *err)
{
    size_t ncols = strlen(t->types);
    char select[1024], insert[1536], count_sql[128];
    int n = snprintf(select, sizeof select, "SELECT %s FROM %s", t->columns, t->name);
    int m = snprintf(insert, sizeof insert, "INSERT INTO %s (%s) VALUES (", t->name, t->columns);
    for (size_t i = 0; i < ncols && m > 0 && (size_t)m < sizeof insert; i++)
        m += snprintf(insert + m, sizeof insert - (size_t)m, "%s:c%zu", i ? ", " : "", i);
    if (m > 0 && (size_t)m < sizeof insert)
        m += snprintf(insert + m, sizeof insert - (size_t)m, ")");
    snprintf(count_sql, sizeof count_sql, "SELECT COUNT(*) FROM %s", t->name);
    if (n <= 0 || (size_t)n >= sizeof select || m <= 0 || (size_t)m >= sizeof insert)
        return enr_error_set(err, ENR_E_INTERNAL, "the copy of %s does not fit its buffers", t->name);
    int64_t total = 0;
    enr_code rc = count_rows(from, count_sql, &total, err);
    sql_stmt *rd = NULL, *wr = NULL;
    if (rc == ENR_OK)
        rc = from->d->prepare(from->conn, select, &rd, err);
    if (rc == ENR_OK)
        rc = to->d->prepare(to->conn, insert, &wr, err);
    *copied = 0;
    int step = SQL_DONE;
    while (rc == ENR_OK && (step = rd->d->step(rd)) == SQL_ROW) {
        binder b = {wr, 0};
        for (size_t i = 0; i < ncols; i++) {
            char name[16];
            snprintf(name, sizeof name, ":c%zu", i);
            bool null = rd->d->column_null(rd, (int)i);
            if (t->types[i] == 'I') {
                if (null)
                    bind_null(&b, name);
                else
                    bind_int(&b, name, rd->d->column_int(rd, (int)i));
            } else if (t->types[i] == 'B') {
                size_t len = 0;
                const void *data = rd->d->column_blob(rd, (int)i, &len);
                if (len == SIZE_MAX)
                    b.rc = b.rc ? b.rc : SQL_NO_PARAM;
                else
                    bind_blob(&b, name, data, len);
            } else {
                /* "" stays "" and NULL stays NULL: a copy is not a re-entry. */
                bind_text_exact(&b, name, null ? NULL : rd->d->column_text(rd, (int)i, NULL));
            }
        }
        if ((rc = run(to, wr, &b, t->name, err)) == ENR_OK && ++*copied % 5000 == 0 && progress != NULL)
            progress(ctx, t->name, *copied, total);
    }
    if (rc == ENR_OK && step != SQL_DONE)
        rc = fail(from, step, "reading the store to copy", err);
    if (rd != NULL)
        from->d->finalize(rd);
    if (wr != NULL)
        to->d->finalize(wr);
    if (rc == ENR_OK && progress != NULL)
        progress(ctx, t->name, *copied, total);
    /* Counted again where it landed: what the copy says it did, it did. */
    int64_t landed = 0;
    if (rc == ENR_OK && (rc = count_rows(to, count_sql, &landed, err)) == ENR_OK &&
        (landed != *copied || landed != total))
        rc = enr_error_set(err, ENR_E_IO, "table %s: %lld rows in the source, %lld copied, %lld in the destination",
                           t->name, (long long)total, (long long)*copied, (long long)landed);
    return rc;
}

static enr_code sql_copy_into(void *to_impl, void *from_impl, enr_store_copy_progress progress, void *ctx,
                              enr_store_copy_report *report, enr_error *err)
{
    sql_store *to = to_impl, *from = from_impl;
    if (COPIED_COUNT > ENR_STORE_TABLES_MAX)
        return enr_error_set(err, ENR_E_INTERNAL, "more tables than a report holds");
    int vf = 0, vt = 0;
    enr_code rc = schema_version(from, &vf, err);
    if (rc == ENR_OK)
        rc = schema_version(to, &vt, err);
    if (rc == ENR_OK && vf != vt)
        return enr_error_set(err, ENR_E_UNSUPPORTED,
                             "the source is at schema version %d, the destination at %d: upgrade the source first "
                             "(any `enroll admin` command on it does), or copy with the enroll that made it",
                             vf, vt);
    if (rc == ENR_OK && (rc = check_copied_schema(from, err)) == ENR_OK)
        rc = check_copied_schema(to, err);
    if (rc != ENR_OK)
        return rc;
    if ((rc = begin_read(from, err)) != ENR_OK)
        return rc;
    if ((rc = begin_write(to, err)) != ENR_OK) {
        rollback(from);
        return rc;
    }
    for (size_t t = 0; rc == ENR_OK && t < COPIED_COUNT; t++) {
        char sql[128];
        int64_t present = 0;
        snprintf(sql, sizeof sql, "SELECT COUNT(*) FROM %s", COPIED[t].name);
        if ((rc = count_rows(to, sql, &present, err)) == ENR_OK && present > 0)
            rc = enr_error_set(err, ENR_E_EXISTS, "%s is not empty (table %s holds %lld rows): a store is copied "
                               "only into a new one", to->d->where(to->conn), COPIED[t].name, (long long)present);
    }
    for (size_t t = 0; rc == ENR_OK && t < COPIED_COUNT; t++) {
        int64_t copied = 0;
        rc = copy_table(to, from, &COPIED[t], progress, ctx, &copied, err);
        snprintf(report->table[t].name, sizeof report->table[t].name, "%s", COPIED[t].name);
        report->table[t].rows = copied;
        report->rows += copied;
        report->tables = t + 1;
    }
    /* Rows came with their ids: PostgreSQL's identity sequences must go on
     * from the largest, or the next insert collides with a copied row. */
    if (rc == ENR_OK && to->d->dialect == SQL_DIALECT_POSTGRES)
        rc = to->d->exec(to->conn,
                         "SELECT setval(pg_get_serial_sequence('certificate', 'id'), GREATEST(MAX(id), 1), "
                         "MAX(id) IS NOT NULL) FROM certificate; "
                         "SELECT setval(pg_get_serial_sequence('audit_event', 'id'), GREATEST(MAX(id), 1), "
                         "MAX(id) IS NOT NULL) FROM audit_event",
                         "moving the id sequences past the copied rows", err);
    rc = finish(to, rc, err);
    rollback(from);
    return rc;
}

static void sql_close(void *impl)
{
    sql_store *s = impl;
    if (s == NULL)
        return;
    for (size_t i = 0; i < ST_COUNT; i++)
        if (s->stmts[i] != NULL)
            s->d->finalize(s->stmts[i]);
    s->d->close(s->conn);
    free(s);
}

static enr_code sql_integrity_check(void *impl, enr_error *err)
{
    sql_store *s = impl;
    return s->d->integrity_check(s->conn, err);
}

/* One table of operations per backend name (enr_store_backend). */
#define SQL_STORE_OPS(backend)                                                                      \
    {                                                                                               \
        .name = backend, .location = sql_location,                                                   \
        .close = sql_close, \
        .integrity_check = sql_integrity_check, \
        .create_ca = sql_create_ca, \
        .get_ca = sql_get_ca, \
        .list_cas = sql_list_cas, \
        .set_ca_verification = sql_set_ca_verification, \
        .create_policy = sql_create_policy, \
        .get_policy = sql_get_policy, \
        .list_policies = sql_list_policies, \
        .create_enrollment = sql_create_enrollment, \
        .get_enrollment = sql_get_enrollment, \
        .list_enrollments = sql_list_enrollments, \
        .set_enrollment_enabled = sql_set_enrollment_enabled, \
        .commit_registration = sql_commit_registration, \
        .commit_registrations = sql_commit_registrations, \
        .get_registration = sql_get_registration, \
        .list_registrations = sql_list_registrations, \
        .set_registration_enabled = sql_set_registration_enabled, \
        .get_certificate = sql_get_certificate, \
        .list_certificates = sql_list_certificates, \
        .revoke_certificate = sql_revoke_certificate, \
        .revoke_registration = sql_revoke_registration, \
        .block_key = sql_block_key, \
        .key_compromised = sql_key_compromised, \
        .next_crl_number = sql_next_crl_number, \
        .revocation_state = sql_revocation_state, \
        .copy_into = sql_copy_into, \
        .move_registration = sql_move_registration, \
        .rotate_enrollment_key = sql_rotate_enrollment_key, \
        .set_enrollment_basic_secret = sql_set_enrollment_basic_secret, \
        .get_operation = sql_get_operation, \
        .record_audit = sql_record_audit, \
        .record_audits = sql_record_audits, \
        .prune_audit = sql_prune_audit, \
        .check_writable = sql_check_writable, \
        .list_audit = sql_list_audit, \
        .create_aws_template = sql_create_aws_template, \
        .get_aws_template = sql_get_aws_template, \
        .list_aws_templates = sql_list_aws_templates, \
        .delete_aws_template = sql_delete_aws_template, \
        .set_aws_template_enabled = sql_set_aws_template_enabled, \
        .get_aws_thing = sql_get_aws_thing, \
        .list_aws_things = sql_list_aws_things, \
        .set_aws_thing_enabled = sql_set_aws_thing_enabled, \
        .aws_create_pending = sql_aws_create_pending, \
        .aws_register_thing = sql_aws_register_thing, \
        .aws_sweep_pending = sql_aws_sweep_pending, \
        .aws_thing_of_certificate = sql_aws_thing_of_certificate, \
        .aws_token_certificate = sql_aws_token_certificate, \
    }

static const enr_store_ops SQLITE_OPS = SQL_STORE_OPS("sqlite");
static const enr_store_ops POSTGRES_OPS = SQL_STORE_OPS("postgresql");

/* The schema as it is: present, and not newer than this code. */
static enr_code check_schema(sql_store *s, enr_error *err)
{
    int version = 0;
    enr_code rc = schema_version(s, &version, err);
    if (rc != ENR_OK || version == 0)
        return enr_error_set(err, ENR_E_IO, "%s holds no store (no schema)", s->d->where(s->conn));
    if (version > SCHEMA_VERSION)
        return enr_error_set(err, ENR_E_UNSUPPORTED,
                             "%s: the database has schema version %d, newer than the %d this enroll knows",
                             s->d->where(s->conn), version, SCHEMA_VERSION);
    return ENR_OK;
}

static enr_code sql_store_open(const sql_driver *d, void *conn, bool migrating, enr_store **out, enr_error *err)
{
    sql_store *s = calloc(1, sizeof *s);
    if (s == NULL) {
        d->close(conn);
        return enr_error_set(err, ENR_E_NOMEM, "out of memory");
    }
    s->d = d;
    s->conn = conn;
    enr_code rc = migrating ? migrate(s, err) : check_schema(s, err);
    if (rc != ENR_OK) {
        sql_close(s);
        return rc;
    }
    return enr_store_new(d->dialect == SQL_DIALECT_POSTGRES ? &POSTGRES_OPS : &SQLITE_OPS, s, out, err);
}

enr_code enr_sql_store_open(const sql_driver *d, void *conn, enr_store **out, enr_error *err)
{
    return sql_store_open(d, conn, true, out, err);
}

enr_code enr_sql_store_open_as_is(const sql_driver *d, void *conn, enr_store **out, enr_error *err)
{
    return sql_store_open(d, conn, false, out, err);
}
