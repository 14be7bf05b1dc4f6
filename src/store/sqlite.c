/* The SQLite backend: one file, DATA_DIR/enroll.db, in WAL mode with
 * synchronous=FULL (a commit is on disk when COMMIT returns: a CA must not
 * lose a certificate it handed out), writes under BEGIN IMMEDIATE (several
 * writers wait on the busy timeout instead of failing on a lock upgrade),
 * and every value bound as a parameter: no SQL text is ever built from
 * data. Statements are prepared once per connection and kept. */
#include <errno.h>
#include <fcntl.h>
#include <openssl/x509v3.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/stat.h>
#include <unistd.h>

#include "enroll/store.h"

#define DB_FILE "enroll.db"
#define BUSY_TIMEOUT_MS 5000

/* ---- schema ------------------------------------------------------------- */

/* Migration N (1-based) brings the schema from version N-1 to N. Never edit
 * one that has shipped: append a new one. All pending migrations run in one
 * transaction, so a database is at one version or the next, never between. */
static const char *const MIGRATIONS[] = {
    /* 1: the first schema */
    "CREATE TABLE ca (\n"
    "  name TEXT PRIMARY KEY NOT NULL,\n"
    "  role TEXT NOT NULL CHECK (role IN ('issuing', 'bootstrap')),\n"
    "  certificate BLOB NOT NULL,\n"
    "  chain_pem TEXT,\n"
    "  key_ref TEXT,\n"
    "  verification_code TEXT,\n"
    "  verified INTEGER NOT NULL DEFAULT 0 CHECK (verified IN (0, 1)),\n"
    "  created_at INTEGER NOT NULL,\n"
    "  updated_at INTEGER NOT NULL\n"
    ");\n"
    "CREATE TABLE credential_policy (\n"
    "  name TEXT PRIMARY KEY NOT NULL,\n"
    "  validity TEXT NOT NULL,\n"
    "  renewal_window TEXT NOT NULL,\n"
    "  ca_name TEXT NOT NULL REFERENCES ca (name),\n"
    "  key_types TEXT NOT NULL,\n"
    "  created_at INTEGER NOT NULL,\n"
    "  updated_at INTEGER NOT NULL\n"
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
    "  created_at INTEGER NOT NULL,\n"
    "  updated_at INTEGER NOT NULL,\n"
    "  CHECK ((attestation = 'symmetric') = (primary_key IS NOT NULL))\n"
    ");\n"
    "CREATE TABLE enrollment_group_certificate (\n"
    "  group_id TEXT NOT NULL REFERENCES enrollment_group (group_id),\n"
    "  position INTEGER NOT NULL,\n"
    "  der BLOB NOT NULL,\n"
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
    "  created_at INTEGER NOT NULL,\n"
    "  updated_at INTEGER NOT NULL,\n"
    "  CHECK ((attestation = 'symmetric') = (primary_key IS NOT NULL))\n"
    ");\n"
    "CREATE TABLE individual_enrollment_certificate (\n"
    "  registration_id TEXT NOT NULL REFERENCES individual_enrollment (registration_id),\n"
    "  position INTEGER NOT NULL,\n"
    "  der BLOB NOT NULL,\n"
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
    "  created_at INTEGER NOT NULL,\n"
    "  updated_at INTEGER NOT NULL,\n"
    "  last_certificate_issuer TEXT,\n"
    "  last_certificate_serial TEXT\n"
    ");\n"
    "CREATE INDEX registration_by_enrollment ON registration (enrollment_kind, enrollment_id);\n"
    "CREATE TABLE certificate (\n"
    "  id INTEGER PRIMARY KEY,\n"
    "  issuer TEXT NOT NULL,\n"
    "  serial TEXT NOT NULL,\n"
    "  registration_id TEXT REFERENCES registration (registration_id),\n"
    "  policy TEXT,\n"
    "  subject TEXT NOT NULL,\n"
    "  not_before INTEGER NOT NULL,\n"
    "  not_after INTEGER NOT NULL,\n"
    "  issued_at INTEGER NOT NULL,\n"
    "  spki_sha256 TEXT NOT NULL,\n"
    "  der BLOB NOT NULL,\n"
    "  revoked INTEGER NOT NULL DEFAULT 0 CHECK (revoked IN (0, 1)),\n"
    "  revocation_reason INTEGER,\n"
    "  revoked_at INTEGER,\n"
    "  UNIQUE (issuer, serial)\n"
    ");\n"
    "CREATE INDEX certificate_by_registration ON certificate (registration_id);\n"
    "CREATE INDEX certificate_by_expiry ON certificate (not_after);\n"
    "CREATE TABLE operation (\n"
    "  operation_id TEXT PRIMARY KEY NOT NULL,\n"
    "  registration_id TEXT NOT NULL REFERENCES registration (registration_id),\n"
    "  status TEXT NOT NULL,\n"
    "  result_json TEXT,\n"
    "  created_at INTEGER NOT NULL,\n"
    "  updated_at INTEGER NOT NULL\n"
    ");\n"
    "CREATE INDEX operation_by_registration ON operation (registration_id);\n"
    "CREATE TABLE audit_event (\n"
    "  id INTEGER PRIMARY KEY,\n"
    "  at INTEGER NOT NULL,\n"
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
    "  at INTEGER NOT NULL\n"
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
    "  created_at INTEGER NOT NULL,\n"
    "  updated_at INTEGER NOT NULL,\n"
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
    "  created_at INTEGER NOT NULL,\n"
    "  updated_at INTEGER NOT NULL\n"
    ");\n"
    "CREATE TABLE aws_certificate (\n"
    "  issuer TEXT NOT NULL,\n"
    "  serial TEXT NOT NULL,\n"
    "  fingerprint_sha256 TEXT NOT NULL,\n"
    "  thing TEXT REFERENCES aws_thing (name),\n"
    "  template TEXT NOT NULL,\n"
    "  status TEXT NOT NULL CHECK (status IN ('pending', 'active', 'superseded', 'revoked')),\n"
    "  created_at INTEGER NOT NULL,\n"
    "  updated_at INTEGER NOT NULL,\n"
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
    "  created_at INTEGER NOT NULL,\n"
    "  expires_at INTEGER NOT NULL,\n"
    "  consumed_at INTEGER,\n"
    "  FOREIGN KEY (issuer, serial) REFERENCES aws_certificate (issuer, serial)\n"
    ");\n"
    "CREATE INDEX aws_token_by_expiry ON aws_ownership_token (expires_at) WHERE consumed_at IS NULL;\n",
};
#define SCHEMA_VERSION ((int)(sizeof MIGRATIONS / sizeof MIGRATIONS[0]))

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
    ST_INTEGRITY,
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
    ST_COUNT
} stmt_id;

#define AUDIT_COLUMNS "id, at, kind, registration_id, outcome, reason_code, detail"
#define CA_COLUMNS \
    "name, role, certificate, chain_pem, key_ref, verification_code, verified, created_at, updated_at"
#define POLICY_COLUMNS "name, validity, renewal_window, ca_name, key_types, created_at, updated_at"
#define ENROLLMENT_COLUMNS(key) \
    key ", attestation, primary_key, secondary_key, policy, assigned_hub, enabled, etag, created_at, updated_at"
#define REGISTRATION_COLUMNS                                                                  \
    "registration_id, enrollment_kind, enrollment_id, status, substatus, device_id, assigned_hub, " \
    "etag, created_at, updated_at, last_certificate_issuer, last_certificate_serial"
#define CERT_COLUMNS                                                                             \
    "id, issuer, serial, registration_id, policy, subject, not_before, not_after, issued_at, " \
    "spki_sha256, der, revoked, revocation_reason, revoked_at"
#define OPERATION_COLUMNS "operation_id, registration_id, status, result_json, created_at, updated_at"
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
    ":updated_at)"
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
    [ST_INTEGRITY] = "PRAGMA integrity_check",
    [ST_AUDIT_INSERT] = "INSERT INTO audit_event (at, kind, registration_id, outcome, reason_code, detail) "
                        "VALUES (:at, :kind, :registration_id, :outcome, :reason_code, :detail)",
    [ST_AUDIT_LIST] = "SELECT " AUDIT_COLUMNS " FROM audit_event "
                      "WHERE (:registration_id IS NULL OR registration_id = :registration_id) "
                      "AND at >= :since AND id > :after_id ORDER BY id LIMIT :limit",
    /* The oldest first, by id (the primary key: no scan beyond what goes). */
    [ST_AUDIT_PRUNE] = "DELETE FROM audit_event WHERE id IN (SELECT id FROM audit_event "
                       "WHERE (:before > 0 AND at < :before) OR (:keep > 0 AND id <= "
                       "(SELECT id FROM audit_event ORDER BY id DESC LIMIT 1 OFFSET :keep)) "
                       "ORDER BY id LIMIT :limit)",
    [ST_CA_INSERT] = "INSERT INTO ca (" CA_COLUMNS ") VALUES (:name, :role, :certificate, :chain_pem, "
                     ":key_ref, :verification_code, :verified, :created_at, :updated_at)",
    [ST_CA_GET] = "SELECT " CA_COLUMNS " FROM ca WHERE name = :name",
    [ST_CA_LIST] = "SELECT " CA_COLUMNS " FROM ca ORDER BY name",
    [ST_CA_VERIFY] = "UPDATE ca SET verification_code = :code, verified = :verified, updated_at = :now "
                     "WHERE name = :name AND role = 'bootstrap'",
    [ST_POLICY_INSERT] = "INSERT INTO credential_policy (" POLICY_COLUMNS ") VALUES (:name, :validity, "
                         ":renewal_window, :ca_name, :key_types, :created_at, :updated_at)",
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
        "last_certificate_issuer = COALESCE(excluded.last_certificate_issuer, last_certificate_issuer), "
        "last_certificate_serial = COALESCE(excluded.last_certificate_serial, last_certificate_serial) "
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
                            ":registration_id, :status, :result_json, :created_at, :updated_at)",
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
    [ST_AWS_THING_CERTS] = "SELECT " AWS_CERT_COLUMNS " FROM aws_certificate WHERE thing = :name "
                           "ORDER BY created_at, rowid",
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

typedef struct enrollment_statements {
    stmt_id insert, cert_insert, get, list, certs, enable, rotate;
} enrollment_statements;

static const enrollment_statements *enrollment_sql(enr_enrollment_kind kind)
{
    static const enrollment_statements GROUP = {ST_GROUP_INSERT, ST_GROUP_CERT_INSERT, ST_GROUP_GET,
                                                ST_GROUP_LIST, ST_GROUP_CERTS, ST_GROUP_ENABLE,
                                                ST_GROUP_ROTATE_KEY};
    static const enrollment_statements INDIVIDUAL = {
        ST_INDIVIDUAL_INSERT, ST_INDIVIDUAL_CERT_INSERT, ST_INDIVIDUAL_GET,
        ST_INDIVIDUAL_LIST, ST_INDIVIDUAL_CERTS, ST_INDIVIDUAL_ENABLE, ST_INDIVIDUAL_ROTATE_KEY};
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

typedef struct sqlite_store {
    sqlite3 *db;
    char path[4096];
    char location[4096]; /* the data directory, absolute */
    sqlite3_stmt *stmts[ST_COUNT];
} sqlite_store;

static enr_code code_for(int rc)
{
    switch (rc) {
    case SQLITE_CONSTRAINT_UNIQUE:
    case SQLITE_CONSTRAINT_PRIMARYKEY:
        return ENR_E_EXISTS;
    case SQLITE_CONSTRAINT_FOREIGNKEY:
        return ENR_E_NOTFOUND;
    default:
        break;
    }
    switch (rc & 0xff) {
    case SQLITE_CONSTRAINT:
    case SQLITE_RANGE:
    case SQLITE_MISMATCH:
        return ENR_E_INTERNAL; /* the checks in store.c should have caught it */
    case SQLITE_NOMEM:
        return ENR_E_NOMEM;
    case SQLITE_BUSY:
    case SQLITE_LOCKED:
    case SQLITE_IOERR:
    case SQLITE_FULL:
    case SQLITE_CANTOPEN:
    case SQLITE_READONLY:
    case SQLITE_PERM:
    case SQLITE_CORRUPT:
    case SQLITE_NOTADB:
    case SQLITE_PROTOCOL:
        return ENR_E_IO;
    default:
        return ENR_E_INTERNAL;
    }
}

/* SQLite's messages name tables and constraints, never bound values, so
 * they are safe to pass on (no key reaches an error message this way). */
static enr_code fail(sqlite_store *s, int rc, const char *what, enr_error *err)
{
    const char *reason = sqlite3_extended_errcode(s->db) == rc ? sqlite3_errmsg(s->db) : sqlite3_errstr(rc);
    int primary = rc & 0xff;
    if (primary == SQLITE_BUSY || primary == SQLITE_LOCKED)
        return enr_error_set(err, ENR_E_IO, "%s: %s: %s (another writer held it for more than %d ms)",
                             s->path, what, reason, BUSY_TIMEOUT_MS);
    enr_code code = code_for(rc);
    if (code == ENR_E_IO || code == ENR_E_INTERNAL)
        return enr_error_set(err, code, "%s: %s: %s", s->path, what, reason);
    return enr_error_set(err, code, "%s: %s", what, reason);
}

/* A prepared statement, reset and without bindings. */
static enr_code statement(sqlite_store *s, stmt_id id, sqlite3_stmt **out, enr_error *err)
{
    if (s->stmts[id] == NULL) {
        int rc = sqlite3_prepare_v3(s->db, SQL[id], -1, SQLITE_PREPARE_PERSISTENT, &s->stmts[id], NULL);
        if (rc != SQLITE_OK)
            return fail(s, rc, "preparing a statement", err);
    }
    *out = s->stmts[id];
    return ENR_OK;
}

/* Every statement is reset after use: a SELECT left open would hold its
 * read snapshot and keep the WAL from being checkpointed. */
static void release(sqlite3_stmt *st)
{
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
}

/* Bindings by name; the first failure sticks and is reported once. */
typedef struct binder {
    sqlite3_stmt *st;
    int rc;
} binder;

static int param(binder *b, const char *name)
{
    int i = sqlite3_bind_parameter_index(b->st, name);
    if (i == 0 && b->rc == SQLITE_OK)
        b->rc = SQLITE_RANGE;
    return i;
}

/* Empty text is stored as NULL: "none". */
static void bind_text(binder *b, const char *name, const char *value)
{
    int i = param(b, name);
    if (b->rc != SQLITE_OK)
        return;
    b->rc = value != NULL && value[0] != '\0' ? sqlite3_bind_text(b->st, i, value, -1, SQLITE_STATIC)
                                              : sqlite3_bind_null(b->st, i);
}

static void bind_int(binder *b, const char *name, int64_t value)
{
    int i = param(b, name);
    if (b->rc == SQLITE_OK)
        b->rc = sqlite3_bind_int64(b->st, i, (sqlite3_int64)value);
}

static void bind_null(binder *b, const char *name)
{
    int i = param(b, name);
    if (b->rc == SQLITE_OK)
        b->rc = sqlite3_bind_null(b->st, i);
}

static void bind_blob(binder *b, const char *name, const void *data, size_t len)
{
    int i = param(b, name);
    if (b->rc == SQLITE_OK)
        b->rc = sqlite3_bind_blob64(b->st, i, data, (sqlite3_uint64)len, SQLITE_STATIC);
}

/* LIMIT -1 is SQLite's "no limit". */
static void bind_limit(binder *b, size_t limit)
{
    bind_int(b, ":limit", limit == 0 || limit > INT64_MAX ? -1 : (int64_t)limit);
}

/* Runs a statement that returns no rows. */
static enr_code run(sqlite_store *s, sqlite3_stmt *st, binder *b, const char *what, enr_error *err)
{
    int rc = b != NULL ? b->rc : SQLITE_OK;
    if (rc == SQLITE_OK)
        rc = sqlite3_step(st);
    enr_code code = rc == SQLITE_DONE || rc == SQLITE_ROW ? ENR_OK : fail(s, rc, what, err);
    release(st);
    return code;
}

static enr_code run_simple(sqlite_store *s, stmt_id id, const char *what, enr_error *err)
{
    sqlite3_stmt *st = NULL;
    enr_code rc = statement(s, id, &st, err);
    return rc == ENR_OK ? run(s, st, NULL, what, err) : rc;
}

/* ---- transactions ------------------------------------------------------- */

static enr_code begin_write(sqlite_store *s, enr_error *err)
{
    return run_simple(s, ST_BEGIN_WRITE, "starting a write transaction", err);
}

static enr_code begin_read(sqlite_store *s, enr_error *err)
{
    return run_simple(s, ST_BEGIN_READ, "starting a read transaction", err);
}

static void rollback(sqlite_store *s)
{
    /* Some errors (I/O, full disk) end the transaction by themselves. */
    if (!sqlite3_get_autocommit(s->db))
        (void)run_simple(s, ST_ROLLBACK, "rolling back", NULL);
}

/* Commits when everything went well, rolls back otherwise; returns the
 * first failure. */
static enr_code finish(sqlite_store *s, enr_code rc, enr_error *err)
{
    if (rc == ENR_OK)
        rc = run_simple(s, ST_COMMIT, "committing", err);
    if (rc != ENR_OK)
        rollback(s);
    return rc;
}

/* ---- reading rows ------------------------------------------------------- */

static enr_code column_text(sqlite3_stmt *st, int col, char *out, size_t cap, enr_error *err)
{
    out[0] = '\0';
    if (sqlite3_column_type(st, col) == SQLITE_NULL)
        return ENR_OK;
    const unsigned char *text = sqlite3_column_text(st, col);
    int len = sqlite3_column_bytes(st, col);
    if (text == NULL || len < 0)
        return enr_error_set(err, ENR_E_NOMEM, "out of memory reading %s", sqlite3_column_name(st, col));
    if ((size_t)len >= cap)
        return enr_error_set(err, ENR_E_PARSE, "stored %s is longer than %zu bytes",
                             sqlite3_column_name(st, col), cap - 1);
    memcpy(out, text, (size_t)len);
    out[len] = '\0';
    return ENR_OK;
}
#define COLUMN_TEXT(st, col, array, err) column_text((st), (col), (array), sizeof(array), (err))

static enr_code column_blob(sqlite3_stmt *st, int col, enr_buf *out, enr_error *err)
{
    const void *data = sqlite3_column_blob(st, col);
    int len = sqlite3_column_bytes(st, col);
    if (len < 0 || (data == NULL && len > 0))
        return enr_error_set(err, ENR_E_NOMEM, "out of memory reading %s", sqlite3_column_name(st, col));
    out->data = malloc((size_t)len + 1);
    if (out->data == NULL)
        return enr_error_set(err, ENR_E_NOMEM, "out of memory");
    if (len > 0)
        memcpy(out->data, data, (size_t)len);
    out->data[len] = '\0';
    out->len = (size_t)len;
    return ENR_OK;
}

static enr_code column_strdup(sqlite3_stmt *st, int col, char **out, enr_error *err)
{
    *out = NULL;
    if (sqlite3_column_type(st, col) == SQLITE_NULL)
        return ENR_OK;
    const unsigned char *text = sqlite3_column_text(st, col);
    int len = sqlite3_column_bytes(st, col);
    if (text == NULL || len < 0)
        return enr_error_set(err, ENR_E_NOMEM, "out of memory reading %s", sqlite3_column_name(st, col));
    *out = malloc((size_t)len + 1);
    if (*out == NULL)
        return enr_error_set(err, ENR_E_NOMEM, "out of memory");
    memcpy(*out, text, (size_t)len);
    (*out)[len] = '\0';
    return ENR_OK;
}

static time_t column_time(sqlite3_stmt *st, int col)
{
    return (time_t)sqlite3_column_int64(st, col);
}

static bool column_bool(sqlite3_stmt *st, int col)
{
    return sqlite3_column_int64(st, col) != 0;
}

static enr_code read_audit(sqlite3_stmt *st, void *item, enr_error *err)
{
    enr_audit_event *a = item;
    enr_code rc;
    a->id = (int64_t)sqlite3_column_int64(st, 0);
    a->at = column_time(st, 1);
    a->reason_code = sqlite3_column_int(st, 5);
    if ((rc = COLUMN_TEXT(st, 2, a->kind, err)) != ENR_OK ||
        (rc = COLUMN_TEXT(st, 3, a->registration_id, err)) != ENR_OK ||
        (rc = COLUMN_TEXT(st, 4, a->outcome, err)) != ENR_OK)
        return rc;
    return COLUMN_TEXT(st, 6, a->detail, err);
}

static enr_code read_ca(sqlite3_stmt *st, void *item, enr_error *err)
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

static enr_code read_policy(sqlite3_stmt *st, void *item, enr_error *err)
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
    return ENR_OK;
}

/* The enrollment row; its certificates come from a second query. The kind
 * is set by the caller before the read. */
static enr_code read_enrollment(sqlite3_stmt *st, void *item, enr_error *err)
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
        (rc = COLUMN_TEXT(st, 7, e->etag, err)) != ENR_OK)
        return rc;
    e->attestation = strcmp(attestation, "x509") == 0 ? ENR_ATTEST_X509 : ENR_ATTEST_SYMMETRIC;
    e->enabled = column_bool(st, 6);
    e->created_at = column_time(st, 8);
    e->updated_at = column_time(st, 9);
    return ENR_OK;
}

static enr_code read_registration(sqlite3_stmt *st, void *item, enr_error *err)
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

static enr_code read_certificate(sqlite3_stmt *st, void *item, enr_error *err)
{
    enr_certificate *c = item;
    enr_code rc;
    c->id = (int64_t)sqlite3_column_int64(st, 0);
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
    c->revocation_reason = sqlite3_column_int(st, 12);
    c->revoked_at = column_time(st, 13);
    return ENR_OK;
}

static enr_code read_operation(sqlite3_stmt *st, void *item, enr_error *err)
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
    return ENR_OK;
}

typedef enr_code (*row_reader)(sqlite3_stmt *st, void *item, enr_error *err);

/* Reads the one row a bound statement selects into `out`; none is
 * ENR_E_NOTFOUND with `missing` as the message. Releases the statement. */
static enr_code fetch_one(sqlite_store *s, sqlite3_stmt *st, binder *b, row_reader reader, void *out,
                          const char *missing, enr_error *err)
{
    int rc = b->rc;
    if (rc == SQLITE_OK)
        rc = sqlite3_step(st);
    enr_code code;
    if (rc == SQLITE_ROW)
        code = reader(st, out, err);
    else if (rc == SQLITE_DONE)
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
static enr_code fetch_all(sqlite_store *s, sqlite3_stmt *st, binder *b, row_reader reader, size_t size,
                          void **items, size_t *count, enr_error *err)
{
    size_t cap = 0;
    enr_code code = ENR_OK;
    int rc = b->rc;
    while (code == ENR_OK && rc == SQLITE_OK && (rc = sqlite3_step(st)) == SQLITE_ROW) {
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
        rc = SQLITE_OK;
    }
    if (code == ENR_OK && rc != SQLITE_DONE)
        code = fail(s, rc, "reading", err);
    release(st);
    return code;
}

/* ---- audit -------------------------------------------------------------- */

static enr_code insert_audit(sqlite_store *s, const enr_audit_event *a, enr_error *err)
{
    sqlite3_stmt *st = NULL;
    enr_code rc = statement(s, ST_AUDIT_INSERT, &st, err);
    if (rc != ENR_OK)
        return rc;
    binder b = {st, SQLITE_OK};
    bind_int(&b, ":at", (int64_t)a->at);
    bind_text(&b, ":kind", a->kind);
    bind_text(&b, ":registration_id", a->registration_id);
    bind_text(&b, ":outcome", a->outcome);
    bind_int(&b, ":reason_code", a->reason_code);
    bind_text(&b, ":detail", a->detail);
    return run(s, st, &b, "recording an audit event", err);
}

static enr_code insert_optional_audit(sqlite_store *s, const enr_audit_event *a, enr_error *err)
{
    return a != NULL ? insert_audit(s, a, err) : ENR_OK;
}

static enr_code sqlite_record_audit(void *impl, const enr_audit_event *audit, enr_error *err)
{
    /* One statement is its own transaction: no BEGIN needed. */
    return insert_audit(impl, audit, err);
}

static enr_code sqlite_record_audits(void *impl, const enr_audit_event *events, size_t count, enr_error *err)
{
    sqlite_store *s = impl;
    enr_code rc = begin_write(s, err);
    if (rc != ENR_OK)
        return rc;
    for (size_t i = 0; rc == ENR_OK && i < count; i++)
        rc = insert_audit(s, &events[i], err);
    return finish(s, rc, err);
}

static enr_code sqlite_prune_audit(void *impl, time_t before, long keep_rows, size_t limit, size_t *deleted,
                                   enr_error *err)
{
    sqlite_store *s = impl;
    sqlite3_stmt *st = NULL;
    enr_code rc = statement(s, ST_AUDIT_PRUNE, &st, err);
    if (rc != ENR_OK)
        return rc;
    binder b = {st, SQLITE_OK};
    bind_int(&b, ":before", (int64_t)before);
    bind_int(&b, ":keep", keep_rows);
    bind_limit(&b, limit);
    rc = run(s, st, &b, "pruning audit events", err); /* one statement: its own transaction */
    if (rc == ENR_OK)
        *deleted = (size_t)sqlite3_changes(s->db);
    return rc;
}

static enr_code sqlite_check_writable(void *impl, enr_error *err)
{
    sqlite_store *s = impl;
    enr_code rc = begin_write(s, err);
    if (rc == ENR_OK)
        rollback(s);
    return rc;
}

static enr_code sqlite_list_audit(void *impl, const enr_audit_filter *f, enr_audit_list *out, enr_error *err)
{
    sqlite_store *s = impl;
    sqlite3_stmt *st = NULL;
    enr_code rc = statement(s, ST_AUDIT_LIST, &st, err);
    if (rc != ENR_OK)
        return rc;
    binder b = {st, SQLITE_OK};
    bind_text(&b, ":registration_id", f->registration_id);
    bind_int(&b, ":since", (int64_t)f->since);
    bind_int(&b, ":after_id", f->after_id);
    bind_limit(&b, f->limit);
    return fetch_all(s, st, &b, read_audit, sizeof *out->items, (void **)&out->items, &out->count, err);
}

/* ---- CAs ---------------------------------------------------------------- */

static enr_code insert_ca(sqlite_store *s, const enr_ca_record *ca, enr_error *err)
{
    sqlite3_stmt *st = NULL;
    enr_code rc = statement(s, ST_CA_INSERT, &st, err);
    if (rc != ENR_OK)
        return rc;
    binder b = {st, SQLITE_OK};
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

static enr_code sqlite_create_ca(void *impl, const enr_ca_record *ca, const enr_audit_event *audit,
                                 enr_error *err)
{
    sqlite_store *s = impl;
    enr_code rc = begin_write(s, err);
    if (rc != ENR_OK)
        return rc;
    if ((rc = insert_ca(s, ca, err)) == ENR_OK)
        rc = insert_optional_audit(s, audit, err);
    return finish(s, rc, err);
}

static enr_code sqlite_get_ca(void *impl, const char *name, enr_ca_record *out, enr_error *err)
{
    sqlite_store *s = impl;
    sqlite3_stmt *st = NULL;
    enr_code rc = statement(s, ST_CA_GET, &st, err);
    if (rc != ENR_OK)
        return rc;
    binder b = {st, SQLITE_OK};
    bind_text(&b, ":name", name);
    char missing[200];
    snprintf(missing, sizeof missing, "no CA named '%s'", name);
    return fetch_one(s, st, &b, read_ca, out, missing, err);
}

static enr_code sqlite_list_cas(void *impl, enr_ca_record_list *out, enr_error *err)
{
    sqlite_store *s = impl;
    sqlite3_stmt *st = NULL;
    enr_code rc = statement(s, ST_CA_LIST, &st, err);
    if (rc != ENR_OK)
        return rc;
    binder b = {st, SQLITE_OK};
    return fetch_all(s, st, &b, read_ca, sizeof *out->items, (void **)&out->items, &out->count, err);
}

static enr_code update_ca_verification(sqlite_store *s, const char *name, const char *code, bool verified,
                                       time_t now, enr_error *err)
{
    sqlite3_stmt *st = NULL;
    enr_code rc = statement(s, ST_CA_VERIFY, &st, err);
    if (rc != ENR_OK)
        return rc;
    binder b = {st, SQLITE_OK};
    bind_text(&b, ":name", name);
    bind_text(&b, ":code", code);
    bind_int(&b, ":verified", verified);
    bind_int(&b, ":now", (int64_t)now);
    if ((rc = run(s, st, &b, "updating a CA", err)) != ENR_OK)
        return rc;
    if (sqlite3_changes(s->db) == 0)
        return enr_error_set(err, ENR_E_NOTFOUND, "no bootstrap CA named '%s'", name);
    return ENR_OK;
}

static enr_code sqlite_set_ca_verification(void *impl, const char *name, const char *code, bool verified,
                                           time_t now, const enr_audit_event *audit, enr_error *err)
{
    sqlite_store *s = impl;
    enr_code rc = begin_write(s, err);
    if (rc != ENR_OK)
        return rc;
    if ((rc = update_ca_verification(s, name, code, verified, now, err)) == ENR_OK)
        rc = insert_optional_audit(s, audit, err);
    return finish(s, rc, err);
}

/* ---- credential policies ------------------------------------------------ */

static enr_code insert_policy(sqlite_store *s, const enr_credential_policy *p, enr_error *err)
{
    sqlite3_stmt *st = NULL;
    enr_code rc = statement(s, ST_POLICY_INSERT, &st, err);
    if (rc != ENR_OK)
        return rc;
    binder b = {st, SQLITE_OK};
    bind_text(&b, ":name", p->name);
    bind_text(&b, ":validity", p->validity);
    bind_text(&b, ":renewal_window", p->renewal_window);
    bind_text(&b, ":ca_name", p->ca_name);
    bind_text(&b, ":key_types", p->key_types);
    bind_int(&b, ":created_at", (int64_t)p->created_at);
    bind_int(&b, ":updated_at", (int64_t)p->updated_at);
    rc = run(s, st, &b, "creating a credential policy", err);
    if (rc == ENR_E_EXISTS)
        return enr_error_set(err, rc, "a credential policy named '%s' exists already", p->name);
    if (rc == ENR_E_NOTFOUND)
        return enr_error_set(err, rc, "policy '%s': no CA named '%s' in the store", p->name, p->ca_name);
    return rc;
}

static enr_code sqlite_create_policy(void *impl, const enr_credential_policy *policy,
                                     const enr_audit_event *audit, enr_error *err)
{
    sqlite_store *s = impl;
    enr_code rc = begin_write(s, err);
    if (rc != ENR_OK)
        return rc;
    if ((rc = insert_policy(s, policy, err)) == ENR_OK)
        rc = insert_optional_audit(s, audit, err);
    return finish(s, rc, err);
}

static enr_code sqlite_get_policy(void *impl, const char *name, enr_credential_policy *out, enr_error *err)
{
    sqlite_store *s = impl;
    sqlite3_stmt *st = NULL;
    enr_code rc = statement(s, ST_POLICY_GET, &st, err);
    if (rc != ENR_OK)
        return rc;
    binder b = {st, SQLITE_OK};
    bind_text(&b, ":name", name);
    char missing[200];
    snprintf(missing, sizeof missing, "no credential policy named '%s'", name);
    return fetch_one(s, st, &b, read_policy, out, missing, err);
}

static enr_code sqlite_list_policies(void *impl, enr_policy_list *out, enr_error *err)
{
    sqlite_store *s = impl;
    sqlite3_stmt *st = NULL;
    enr_code rc = statement(s, ST_POLICY_LIST, &st, err);
    if (rc != ENR_OK)
        return rc;
    binder b = {st, SQLITE_OK};
    return fetch_all(s, st, &b, read_policy, sizeof *out->items, (void **)&out->items, &out->count, err);
}

/* ---- enrollments -------------------------------------------------------- */

static enr_code insert_enrollment_row(sqlite_store *s, const enr_enrollment *e, enr_error *err)
{
    sqlite3_stmt *st = NULL;
    enr_code rc = statement(s, enrollment_sql(e->kind)->insert, &st, err);
    if (rc != ENR_OK)
        return rc;
    binder b = {st, SQLITE_OK};
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
    rc = run(s, st, &b, "creating an enrollment", err);
    /* Never SQLite's text here: say which row, never what the keys were. */
    if (rc == ENR_E_EXISTS)
        return enr_error_set(err, rc, "%s '%s' exists already", enrollment_word(e->kind), e->id);
    if (rc == ENR_E_NOTFOUND)
        return enr_error_set(err, rc, "%s '%s': no credential policy named '%s'", enrollment_word(e->kind),
                             e->id, e->policy);
    return rc;
}

static enr_code insert_enrollment_certificates(sqlite_store *s, const enr_enrollment *e, enr_error *err)
{
    sqlite3_stmt *st = NULL;
    enr_code rc = statement(s, enrollment_sql(e->kind)->cert_insert, &st, err);
    for (size_t i = 0; rc == ENR_OK && i < e->certificate_count; i++) {
        binder b = {st, SQLITE_OK};
        bind_text(&b, ":id", e->id);
        bind_int(&b, ":position", (int64_t)i);
        bind_blob(&b, ":der", e->certificates[i].data, e->certificates[i].len);
        rc = run(s, st, &b, "storing an enrollment certificate", err);
    }
    return rc;
}

static enr_code sqlite_create_enrollment(void *impl, const enr_enrollment *e, const enr_audit_event *audit,
                                         enr_error *err)
{
    sqlite_store *s = impl;
    enr_code rc = begin_write(s, err);
    if (rc != ENR_OK)
        return rc;
    if ((rc = insert_enrollment_row(s, e, err)) == ENR_OK &&
        (rc = insert_enrollment_certificates(s, e, err)) == ENR_OK)
        rc = insert_optional_audit(s, audit, err);
    return finish(s, rc, err);
}

static enr_code read_der(sqlite3_stmt *st, void *item, enr_error *err)
{
    return column_blob(st, 0, item, err);
}

static enr_code load_enrollment_certificates(sqlite_store *s, enr_enrollment *e, enr_error *err)
{
    sqlite3_stmt *st = NULL;
    enr_code rc = statement(s, enrollment_sql(e->kind)->certs, &st, err);
    if (rc != ENR_OK)
        return rc;
    binder b = {st, SQLITE_OK};
    bind_text(&b, ":id", e->id);
    return fetch_all(s, st, &b, read_der, sizeof *e->certificates, (void **)&e->certificates,
                     &e->certificate_count, err);
}

static enr_code get_enrollment(sqlite_store *s, enr_enrollment_kind kind, const char *id,
                               enr_enrollment *out, enr_error *err)
{
    sqlite3_stmt *st = NULL;
    enr_code rc = statement(s, enrollment_sql(kind)->get, &st, err);
    if (rc != ENR_OK)
        return rc;
    binder b = {st, SQLITE_OK};
    bind_text(&b, ":id", id);
    char missing[200];
    snprintf(missing, sizeof missing, "no %s '%s'", enrollment_word(kind), id);
    out->kind = kind;
    if ((rc = fetch_one(s, st, &b, read_enrollment, out, missing, err)) != ENR_OK)
        return rc;
    return load_enrollment_certificates(s, out, err);
}

/* Row and certificates in one read transaction: one consistent view. */
static enr_code sqlite_get_enrollment(void *impl, enr_enrollment_kind kind, const char *id,
                                      enr_enrollment *out, enr_error *err)
{
    sqlite_store *s = impl;
    enr_code rc = begin_read(s, err);
    if (rc != ENR_OK)
        return rc;
    return finish(s, get_enrollment(s, kind, id, out, err), err);
}

static enr_code list_enrollments(sqlite_store *s, enr_enrollment_kind kind, enr_enrollment_list *out,
                                 enr_error *err)
{
    sqlite3_stmt *st = NULL;
    enr_code rc = statement(s, enrollment_sql(kind)->list, &st, err);
    if (rc != ENR_OK)
        return rc;
    binder b = {st, SQLITE_OK};
    rc = fetch_all(s, st, &b, read_enrollment, sizeof *out->items, (void **)&out->items, &out->count, err);
    for (size_t i = 0; i < out->count; i++)
        out->items[i].kind = kind;
    for (size_t i = 0; rc == ENR_OK && i < out->count; i++)
        rc = load_enrollment_certificates(s, &out->items[i], err);
    return rc;
}

static enr_code sqlite_list_enrollments(void *impl, enr_enrollment_kind kind, enr_enrollment_list *out,
                                        enr_error *err)
{
    sqlite_store *s = impl;
    enr_code rc = begin_read(s, err);
    if (rc != ENR_OK)
        return rc;
    return finish(s, list_enrollments(s, kind, out, err), err);
}

static enr_code update_enrollment_enabled(sqlite_store *s, enr_enrollment_kind kind, const char *id,
                                          bool enabled, const char *etag, time_t now, enr_error *err)
{
    sqlite3_stmt *st = NULL;
    enr_code rc = statement(s, enrollment_sql(kind)->enable, &st, err);
    if (rc != ENR_OK)
        return rc;
    binder b = {st, SQLITE_OK};
    bind_text(&b, ":id", id);
    bind_int(&b, ":enabled", enabled);
    bind_text(&b, ":etag", etag);
    bind_int(&b, ":now", (int64_t)now);
    if ((rc = run(s, st, &b, "changing an enrollment", err)) != ENR_OK)
        return rc;
    if (sqlite3_changes(s->db) == 0)
        return enr_error_set(err, ENR_E_NOTFOUND, "no %s '%s'", enrollment_word(kind), id);
    return ENR_OK;
}

static enr_code sqlite_set_enrollment_enabled(void *impl, enr_enrollment_kind kind, const char *id,
                                              bool enabled, const char *etag, time_t now,
                                              const enr_audit_event *audit, enr_error *err)
{
    sqlite_store *s = impl;
    enr_code rc = begin_write(s, err);
    if (rc != ENR_OK)
        return rc;
    if ((rc = update_enrollment_enabled(s, kind, id, enabled, etag, now, err)) == ENR_OK)
        rc = insert_optional_audit(s, audit, err);
    return finish(s, rc, err);
}

static enr_code sqlite_rotate_enrollment_key(void *impl, enr_enrollment_kind kind, const char *id,
                                             const char *new_primary, const char *etag, time_t now,
                                             const enr_audit_event *audit, enr_error *err)
{
    sqlite_store *s = impl;
    enr_code rc = begin_write(s, err);
    if (rc != ENR_OK)
        return rc;
    sqlite3_stmt *st = NULL;
    if ((rc = statement(s, enrollment_sql(kind)->rotate, &st, err)) == ENR_OK) {
        binder b = {st, SQLITE_OK};
        bind_text(&b, ":id", id);
        bind_text(&b, ":key", new_primary);
        bind_text(&b, ":etag", etag);
        bind_int(&b, ":now", (int64_t)now);
        rc = run(s, st, &b, "rotating an enrollment's key", err);
    }
    /* No row: unknown, or an X.509 enrollment (no keys to rotate). */
    if (rc == ENR_OK && sqlite3_changes(s->db) == 0)
        rc = enr_error_set(err, ENR_E_NOTFOUND, "no %s '%s' with symmetric keys", enrollment_word(kind), id);
    if (rc == ENR_OK)
        rc = insert_optional_audit(s, audit, err);
    return finish(s, rc, err);
}

/* ---- registrations, certificates, operations ---------------------------- */

static enr_code upsert_registration(sqlite_store *s, const enr_registration *r, enr_error *err)
{
    sqlite3_stmt *st = NULL;
    enr_code rc = statement(s, ST_REGISTRATION_UPSERT, &st, err);
    if (rc != ENR_OK)
        return rc;
    binder b = {st, SQLITE_OK};
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
    if (rc == ENR_OK && sqlite3_changes(s->db) == 0)
        rc = enr_error_refuse(err, ENR_R_REGISTRATION_DISABLED, "registration '%s' is disabled", r->registration_id);
    return rc;
}

static enr_code insert_certificate(sqlite_store *s, const enr_certificate *c, enr_error *err)
{
    sqlite3_stmt *st = NULL;
    enr_code rc = statement(s, ST_CERT_INSERT, &st, err);
    if (rc != ENR_OK)
        return rc;
    binder b = {st, SQLITE_OK};
    bind_text(&b, ":issuer", c->issuer);
    bind_text(&b, ":serial", c->serial);
    bind_text(&b, ":registration_id", c->registration_id);
    bind_text(&b, ":policy", c->policy);
    bind_text(&b, ":subject", c->subject);
    /* NOT NULL: an empty subject (SAN-only certificate) is stored as ''. */
    if (c->subject[0] == '\0' && b.rc == SQLITE_OK)
        b.rc = sqlite3_bind_text(st, sqlite3_bind_parameter_index(st, ":subject"), "", 0, SQLITE_STATIC);
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

static enr_code insert_operation(sqlite_store *s, const enr_operation *op, enr_error *err)
{
    sqlite3_stmt *st = NULL;
    enr_code rc = statement(s, ST_OPERATION_INSERT, &st, err);
    if (rc != ENR_OK)
        return rc;
    binder b = {st, SQLITE_OK};
    bind_text(&b, ":operation_id", op->operation_id);
    bind_text(&b, ":registration_id", op->registration_id);
    bind_text(&b, ":status", op->status);
    bind_text(&b, ":result_json", op->result_json);
    bind_int(&b, ":created_at", (int64_t)op->created_at);
    bind_int(&b, ":updated_at", (int64_t)op->updated_at);
    rc = run(s, st, &b, "storing the operation", err);
    if (rc == ENR_E_EXISTS)
        return enr_error_set(err, rc, "operation '%s' is in the store already", op->operation_id);
    return rc;
}

static enr_code sqlite_commit_registration(void *impl, const enr_registration *registration,
                                           const enr_certificate *cert, const enr_operation *op,
                                           const enr_audit_event *audit, enr_error *err)
{
    sqlite_store *s = impl;
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

static enr_code read_preconditions(sqlite3_stmt *st, void *item, enr_error *err)
{
    (void)err;
    preconditions *p = item;
    p->enrollment_enabled = sqlite3_column_int(st, 0);
    p->credential_state = sqlite3_column_type(st, 1) == SQLITE_NULL ? -1 : sqlite3_column_int(st, 1);
    p->same_enrollment = sqlite3_column_type(st, 2) == SQLITE_NULL ? -1 : sqlite3_column_int(st, 2);
    p->key_compromised = sqlite3_column_int(st, 3);
    const unsigned char *etag = sqlite3_column_text(st, 4);
    snprintf(p->enrollment_etag, sizeof p->enrollment_etag, "%s", etag != NULL ? (const char *)etag : "");
    p->individual_exists = sqlite3_column_int(st, 5);
    return ENR_OK;
}

/* What attestation saw, checked again inside the transaction: the
 * enrollment still enabled, the credential still unrevoked, the
 * registration still bound to this enrollment (an individual enrollment
 * takes a registration over: it alone decides for its id), and the key
 * not revoked for keyCompromise meanwhile. */
static enr_code check_preconditions(sqlite_store *s, const enr_registration_commit *it, enr_error *err)
{
    sqlite3_stmt *st = NULL;
    enr_code rc = statement(s, ST_COMMIT_PRECONDITIONS, &st, err);
    if (rc != ENR_OK)
        return rc;
    const enr_registration *r = it->registration;
    binder b = {st, SQLITE_OK};
    bind_text(&b, ":kind", kind_text(r->enrollment_kind));
    bind_text(&b, ":id", r->enrollment_id);
    bind_text(&b, ":issuer", it->credential_issuer);
    bind_text(&b, ":serial", it->credential_serial);
    bind_text(&b, ":registration_id", r->registration_id);
    bind_text(&b, ":spki", it->certificate != NULL ? it->certificate->spki_sha256 : NULL);
    preconditions p = {0, -1, -1, 0, "", 0};
    if ((rc = fetch_one(s, st, &b, read_preconditions, &p, "no answer", err)) != ENR_OK)
        return rc;
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

/* Each item inside a savepoint, so a failing one (a serial taken) leaves
 * the others in the transaction; one COMMIT, one fsync, for them all. */
static enr_code sqlite_commit_registrations(void *impl, enr_registration_commit *items, size_t count,
                                            enr_error *err)
{
    sqlite_store *s = impl;
    enr_code rc = begin_write(s, err);
    for (size_t i = 0; i < count; i++) {
        enr_registration_commit *it = &items[i];
        if (rc != ENR_OK) {
            it->result = rc;
            it->error = *err;
            continue;
        }
        enr_error *e = &it->error;
        enr_code item = run_simple(s, ST_SAVEPOINT, "starting a savepoint", e);
        if (item == ENR_OK && (item = check_preconditions(s, it, e)) == ENR_OK &&
            (item = upsert_registration(s, it->registration, e)) == ENR_OK &&
            (it->certificate == NULL || (item = insert_certificate(s, it->certificate, e)) == ENR_OK) &&
            (item = insert_operation(s, it->operation, e)) == ENR_OK)
            item = insert_optional_audit(s, it->audit, e);
        if (item != ENR_OK && sqlite3_get_autocommit(s->db)) {
            /* The error ended the whole transaction (I/O, full disk): nothing holds. */
            rc = enr_error_set(err, item, "%s", e->message);
        } else if (item != ENR_OK &&
                   (run_simple(s, ST_ROLLBACK_TO_SAVEPOINT, "rolling back an item", NULL) != ENR_OK ||
                    run_simple(s, ST_RELEASE_SAVEPOINT, "releasing a savepoint", NULL) != ENR_OK)) {
            rc = enr_error_set(err, ENR_E_IO, "cannot roll back one item of a group commit");
        } else if (item == ENR_OK && run_simple(s, ST_RELEASE_SAVEPOINT, "releasing a savepoint", e) != ENR_OK) {
            rc = enr_error_set(err, ENR_E_IO, "%s", e->message);
        }
        it->result = item;
    }
    rc = finish(s, rc, err);
    if (rc != ENR_OK)
        for (size_t i = 0; i < count; i++)
            if (items[i].result == ENR_OK)
                items[i].result = rc, items[i].error = *err;
    return rc;
}

static enr_code get_registration(sqlite_store *s, const char *registration_id, enr_registration *out,
                                 enr_error *err)
{
    sqlite3_stmt *st = NULL;
    enr_code rc = statement(s, ST_REGISTRATION_GET, &st, err);
    if (rc != ENR_OK)
        return rc;
    binder b = {st, SQLITE_OK};
    bind_text(&b, ":id", registration_id);
    char missing[200];
    snprintf(missing, sizeof missing, "no registration '%s'", registration_id);
    return fetch_one(s, st, &b, read_registration, out, missing, err);
}

static enr_code sqlite_get_registration(void *impl, const char *registration_id, enr_registration *out,
                                        enr_error *err)
{
    return get_registration(impl, registration_id, out, err);
}

static enr_code sqlite_list_registrations(void *impl, const enr_registration_filter *f,
                                          enr_registration_list *out, enr_error *err)
{
    sqlite_store *s = impl;
    sqlite3_stmt *st = NULL;
    enr_code rc = statement(s, ST_REGISTRATION_LIST, &st, err);
    if (rc != ENR_OK)
        return rc;
    binder b = {st, SQLITE_OK};
    bind_text(&b, ":kind", f->enrollment_kind != 0 ? kind_text(f->enrollment_kind) : NULL);
    bind_text(&b, ":enrollment_id", f->enrollment_id);
    bind_text(&b, ":status", f->status);
    bind_text(&b, ":after", f->after);
    bind_limit(&b, f->limit);
    return fetch_all(s, st, &b, read_registration, sizeof *out->items, (void **)&out->items, &out->count,
                     err);
}

static enr_code sqlite_set_registration_enabled(void *impl, const char *registration_id, bool enabled,
                                                const char *etag, time_t now,
                                                const enr_audit_event *audit, enr_error *err)
{
    sqlite_store *s = impl;
    enr_code rc = begin_write(s, err);
    if (rc != ENR_OK)
        return rc;
    sqlite3_stmt *st = NULL;
    if ((rc = statement(s, enabled ? ST_REGISTRATION_ENABLE : ST_REGISTRATION_DISABLE, &st, err)) == ENR_OK) {
        binder b = {st, SQLITE_OK};
        bind_text(&b, ":id", registration_id);
        bind_text(&b, ":etag", etag);
        bind_int(&b, ":now", (int64_t)now);
        rc = run(s, st, &b, "changing a registration", err);
    }
    if (rc == ENR_OK && sqlite3_changes(s->db) == 0)
        rc = enr_error_set(err, ENR_E_NOTFOUND, "no registration '%s'", registration_id);
    if (rc == ENR_OK)
        rc = insert_optional_audit(s, audit, err);
    return finish(s, rc, err);
}

static enr_code get_certificate(sqlite_store *s, const char *issuer, const char *serial,
                                enr_certificate *out, enr_error *err)
{
    sqlite3_stmt *st = NULL;
    enr_code rc = statement(s, ST_CERT_GET, &st, err);
    if (rc != ENR_OK)
        return rc;
    binder b = {st, SQLITE_OK};
    bind_text(&b, ":issuer", issuer);
    bind_text(&b, ":serial", serial);
    char missing[ENR_STORE_DN_MAX + 100];
    snprintf(missing, sizeof missing, "no certificate with serial %s from issuer '%s'", serial, issuer);
    return fetch_one(s, st, &b, read_certificate, out, missing, err);
}

static enr_code sqlite_get_certificate(void *impl, const char *issuer, const char *serial,
                                       enr_certificate *out, enr_error *err)
{
    return get_certificate(impl, issuer, serial, out, err);
}

static enr_code sqlite_list_certificates(void *impl, const enr_certificate_filter *f,
                                         enr_certificate_list *out, enr_error *err)
{
    sqlite_store *s = impl;
    sqlite3_stmt *st = NULL;
    enr_code rc = statement(s, ST_CERT_LIST, &st, err);
    if (rc != ENR_OK)
        return rc;
    binder b = {st, SQLITE_OK};
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

static enr_code revoke_one(sqlite_store *s, const char *issuer, const char *serial, int reason,
                           time_t when, enr_error *err)
{
    sqlite3_stmt *st = NULL;
    enr_code rc = statement(s, ST_CERT_REVOKE, &st, err);
    if (rc != ENR_OK)
        return rc;
    binder b = {st, SQLITE_OK};
    bind_text(&b, ":issuer", issuer);
    bind_text(&b, ":serial", serial);
    bind_int(&b, ":reason", reason);
    bind_int(&b, ":at", (int64_t)when);
    if ((rc = run(s, st, &b, "revoking a certificate", err)) != ENR_OK || sqlite3_changes(s->db) > 0)
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

static enr_code sqlite_revoke_certificate(void *impl, const char *issuer, const char *serial, int reason,
                                          time_t when, const enr_audit_event *audit, enr_error *err)
{
    sqlite_store *s = impl;
    enr_code rc = begin_write(s, err);
    if (rc != ENR_OK)
        return rc;
    if ((rc = revoke_one(s, issuer, serial, reason, when, err)) == ENR_OK && reason == CRL_REASON_KEY_COMPROMISE) {
        sqlite3_stmt *st = NULL;
        if ((rc = statement(s, ST_KEY_COMPROMISED_OF_CERT, &st, err)) == ENR_OK) {
            binder b = {st, SQLITE_OK};
            bind_text(&b, ":issuer", issuer);
            bind_text(&b, ":serial", serial);
            rc = run(s, st, &b, "blocking a compromised key", err);
        }
    }
    if (rc == ENR_OK)
        rc = insert_optional_audit(s, audit, err);
    return finish(s, rc, err);
}

static enr_code revoke_all_of(sqlite_store *s, const char *registration_id, int reason, time_t when,
                              enr_certificate_list *revoked, enr_error *err)
{
    enr_registration known;
    sqlite3_stmt *st = NULL;
    enr_code rc;
    if ((rc = get_registration(s, registration_id, &known, err)) != ENR_OK ||
        (rc = statement(s, ST_CERT_VALID_OF_REGISTRATION, &st, err)) != ENR_OK)
        return rc;
    binder b = {st, SQLITE_OK};
    bind_text(&b, ":registration_id", registration_id);
    if ((rc = fetch_all(s, st, &b, read_certificate, sizeof *revoked->items, (void **)&revoked->items,
                        &revoked->count, err)) != ENR_OK ||
        (rc = statement(s, ST_CERT_REVOKE_REGISTRATION, &st, err)) != ENR_OK)
        return rc;
    binder u = {st, SQLITE_OK};
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

static enr_code sqlite_revoke_registration(void *impl, const char *registration_id, int reason, time_t when,
                                           const enr_audit_event *audit, enr_certificate_list *revoked,
                                           enr_error *err)
{
    sqlite_store *s = impl;
    enr_code rc = begin_write(s, err);
    if (rc != ENR_OK)
        return rc;
    if ((rc = revoke_all_of(s, registration_id, reason, when, revoked, err)) == ENR_OK &&
        reason == CRL_REASON_KEY_COMPROMISE) {
        sqlite3_stmt *st = NULL;
        if ((rc = statement(s, ST_KEY_COMPROMISED_OF_REGISTRATION, &st, err)) == ENR_OK) {
            binder b = {st, SQLITE_OK};
            bind_text(&b, ":registration_id", registration_id);
            rc = run(s, st, &b, "blocking compromised keys", err);
        }
    }
    if (rc == ENR_OK)
        rc = insert_optional_audit(s, audit, err);
    return finish(s, rc, err);
}

static enr_code sqlite_block_key(void *impl, const char *spki_sha256, const char *issuer, const char *serial,
                                 time_t when, const enr_audit_event *audit, enr_error *err)
{
    sqlite_store *s = impl;
    enr_code rc = begin_write(s, err);
    if (rc != ENR_OK)
        return rc;
    sqlite3_stmt *st = NULL;
    if ((rc = statement(s, ST_KEY_BLOCK, &st, err)) == ENR_OK) {
        binder b = {st, SQLITE_OK};
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

static enr_code read_flag(sqlite3_stmt *st, void *item, enr_error *err)
{
    (void)err;
    *(bool *)item = sqlite3_column_int(st, 0) != 0;
    return ENR_OK;
}

static enr_code sqlite_key_compromised(void *impl, const char *spki_sha256, bool *out, enr_error *err)
{
    sqlite_store *s = impl;
    sqlite3_stmt *st = NULL;
    enr_code rc = statement(s, ST_KEY_IS_COMPROMISED, &st, err);
    if (rc != ENR_OK)
        return rc;
    binder b = {st, SQLITE_OK};
    bind_text(&b, ":spki", spki_sha256);
    return fetch_one(s, st, &b, read_flag, out, "no answer", err);
}

static enr_code sqlite_move_registration(void *impl, const char *registration_id, enr_enrollment_kind kind,
                                         const char *enrollment_id, const char *etag, time_t now,
                                         const enr_audit_event *audit, enr_error *err)
{
    sqlite_store *s = impl;
    enr_code rc = begin_write(s, err);
    if (rc != ENR_OK)
        return rc;
    enr_enrollment target = {0};
    /* The target must exist; reading it inside the write transaction
     * keeps it from vanishing before the commit. */
    rc = get_enrollment(s, kind, enrollment_id, &target, err);
    enr_enrollment_free(&target);
    sqlite3_stmt *st = NULL;
    if (rc == ENR_OK && (rc = statement(s, ST_REGISTRATION_MOVE, &st, err)) == ENR_OK) {
        binder b = {st, SQLITE_OK};
        bind_text(&b, ":id", registration_id);
        bind_text(&b, ":kind", kind_text(kind));
        bind_text(&b, ":enrollment_id", enrollment_id);
        bind_text(&b, ":etag", etag);
        bind_int(&b, ":now", (int64_t)now);
        rc = run(s, st, &b, "moving a registration", err);
    }
    if (rc == ENR_OK && sqlite3_changes(s->db) == 0)
        rc = enr_error_set(err, ENR_E_NOTFOUND, "no registration '%s'", registration_id);
    if (rc == ENR_OK)
        rc = insert_optional_audit(s, audit, err);
    return finish(s, rc, err);
}

static enr_code sqlite_get_operation(void *impl, const char *operation_id, enr_operation *out,
                                     enr_error *err)
{
    sqlite_store *s = impl;
    sqlite3_stmt *st = NULL;
    enr_code rc = statement(s, ST_OPERATION_GET, &st, err);
    if (rc != ENR_OK)
        return rc;
    binder b = {st, SQLITE_OK};
    bind_text(&b, ":id", operation_id);
    char missing[200];
    snprintf(missing, sizeof missing, "no operation '%s'", operation_id);
    return fetch_one(s, st, &b, read_operation, out, missing, err);
}

/* ---- AWS fleet provisioning --------------------------------------------- */

static enr_code read_aws_template(sqlite3_stmt *st, void *item, enr_error *err)
{
    enr_aws_template_record *t = item;
    enr_code rc;
    if ((rc = COLUMN_TEXT(st, 0, t->name, err)) != ENR_OK || (rc = column_strdup(st, 1, &t->body, err)) != ENR_OK ||
        (rc = COLUMN_TEXT(st, 3, t->policy, err)) != ENR_OK || (rc = COLUMN_TEXT(st, 4, t->hook_url, err)) != ENR_OK ||
        (rc = column_strdup(st, 5, &t->hook_ca_pem, err)) != ENR_OK)
        return rc;
    t->allow_server_keygen = column_bool(st, 2);
    t->hook_timeout_ms = sqlite3_column_int(st, 6);
    t->enabled = column_bool(st, 7);
    t->created_at = column_time(st, 8);
    t->updated_at = column_time(st, 9);
    return ENR_OK;
}

static enr_code read_aws_thing(sqlite3_stmt *st, void *item, enr_error *err)
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

static enr_code read_aws_certificate(sqlite3_stmt *st, void *item, enr_error *err)
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

static enr_code read_name(sqlite3_stmt *st, void *item, enr_error *err)
{
    return column_text(st, 0, item, ENR_STORE_ID_MAX + 1, err);
}

/* A claim CA must be a bootstrap CA whose possession was proven: checked in
 * the transaction that creates the template, so a CA cannot change under
 * it. */
static enr_code check_claim_ca(sqlite_store *s, const char *name, enr_error *err)
{
    enr_ca_record ca = {0};
    enr_code rc = sqlite_get_ca(s, name, &ca, err);
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

static enr_code insert_aws_template(sqlite_store *s, const enr_aws_template_record *t, enr_error *err)
{
    sqlite3_stmt *st = NULL;
    enr_code rc = statement(s, ST_AWS_TEMPLATE_INSERT, &st, err);
    if (rc != ENR_OK)
        return rc;
    binder b = {st, SQLITE_OK};
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
        binder c = {st, SQLITE_OK};
        bind_text(&c, ":name", t->name);
        bind_int(&c, ":position", (int64_t)i);
        bind_text(&c, ":ca_name", t->claim_cas[i]);
        rc = run(s, st, &c, "naming a claim CA", err);
    }
    return rc;
}

static enr_code sqlite_create_aws_template(void *impl, const enr_aws_template_record *t,
                                           const enr_audit_event *audit, enr_error *err)
{
    sqlite_store *s = impl;
    enr_code rc = begin_write(s, err);
    if (rc != ENR_OK)
        return rc;
    enr_credential_policy policy;
    rc = sqlite_get_policy(s, t->policy, &policy, err);
    for (size_t i = 0; rc == ENR_OK && i < t->claim_ca_count; i++)
        rc = check_claim_ca(s, t->claim_cas[i], err);
    if (rc == ENR_OK && (rc = insert_aws_template(s, t, err)) == ENR_OK)
        rc = insert_optional_audit(s, audit, err);
    return finish(s, rc, err);
}

static enr_code load_claim_cas(sqlite_store *s, enr_aws_template_record *t, enr_error *err)
{
    sqlite3_stmt *st = NULL;
    enr_code rc = statement(s, ST_AWS_TEMPLATE_CAS, &st, err);
    if (rc != ENR_OK)
        return rc;
    binder b = {st, SQLITE_OK};
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

static enr_code get_aws_template(sqlite_store *s, const char *name, enr_aws_template_record *out, enr_error *err)
{
    sqlite3_stmt *st = NULL;
    enr_code rc = statement(s, ST_AWS_TEMPLATE_GET, &st, err);
    if (rc != ENR_OK)
        return rc;
    binder b = {st, SQLITE_OK};
    bind_text(&b, ":name", name);
    char missing[200];
    snprintf(missing, sizeof missing, "no provisioning template named '%s'", name);
    if ((rc = fetch_one(s, st, &b, read_aws_template, out, missing, err)) != ENR_OK)
        return rc;
    return load_claim_cas(s, out, err);
}

static enr_code sqlite_get_aws_template(void *impl, const char *name, enr_aws_template_record *out, enr_error *err)
{
    sqlite_store *s = impl;
    enr_code rc = begin_read(s, err);
    if (rc != ENR_OK)
        return rc;
    return finish(s, get_aws_template(s, name, out, err), err);
}

static enr_code sqlite_list_aws_templates(void *impl, enr_aws_template_list *out, enr_error *err)
{
    sqlite_store *s = impl;
    sqlite3_stmt *st = NULL;
    enr_code rc = begin_read(s, err);
    if (rc != ENR_OK)
        return rc;
    if ((rc = statement(s, ST_AWS_TEMPLATE_LIST, &st, err)) == ENR_OK) {
        binder b = {st, SQLITE_OK};
        rc = fetch_all(s, st, &b, read_aws_template, sizeof *out->items, (void **)&out->items, &out->count, err);
    }
    for (size_t i = 0; rc == ENR_OK && i < out->count; i++)
        rc = load_claim_cas(s, &out->items[i], err);
    return finish(s, rc, err);
}

/* One UPDATE or DELETE by name; no row is ENR_E_NOTFOUND. */
static enr_code change_by_name(sqlite_store *s, stmt_id id, const char *name, int enabled, time_t now,
                               const char *what, const char *missing, const enr_audit_event *audit,
                               enr_error *err)
{
    enr_code rc = begin_write(s, err);
    if (rc != ENR_OK)
        return rc;
    sqlite3_stmt *st = NULL;
    if ((rc = statement(s, id, &st, err)) == ENR_OK) {
        binder b = {st, SQLITE_OK};
        bind_text(&b, ":name", name);
        if (enabled >= 0) {
            bind_int(&b, ":enabled", enabled);
            bind_int(&b, ":now", (int64_t)now);
        }
        rc = run(s, st, &b, what, err);
    }
    if (rc == ENR_OK && sqlite3_changes(s->db) == 0)
        rc = enr_error_set(err, ENR_E_NOTFOUND, "%s '%s'", missing, name);
    if (rc == ENR_OK)
        rc = insert_optional_audit(s, audit, err);
    return finish(s, rc, err);
}

static enr_code sqlite_delete_aws_template(void *impl, const char *name, const enr_audit_event *audit,
                                           enr_error *err)
{
    return change_by_name(impl, ST_AWS_TEMPLATE_DELETE, name, -1, 0, "deleting a provisioning template",
                          "no provisioning template named", audit, err);
}

static enr_code sqlite_set_aws_template_enabled(void *impl, const char *name, bool enabled, time_t now,
                                                const enr_audit_event *audit, enr_error *err)
{
    return change_by_name(impl, ST_AWS_TEMPLATE_ENABLE, name, enabled, now, "changing a provisioning template",
                          "no provisioning template named", audit, err);
}

static enr_code sqlite_set_aws_thing_enabled(void *impl, const char *name, bool enabled, time_t now,
                                             const enr_audit_event *audit, enr_error *err)
{
    return change_by_name(impl, ST_AWS_THING_ENABLE, name, enabled, now, "changing a thing", "no thing named",
                          audit, err);
}

static enr_code sqlite_get_aws_thing(void *impl, const char *name, enr_aws_thing *out, enr_error *err)
{
    sqlite_store *s = impl;
    sqlite3_stmt *st = NULL;
    enr_code rc = begin_read(s, err);
    if (rc != ENR_OK)
        return rc;
    if ((rc = statement(s, ST_AWS_THING_GET, &st, err)) == ENR_OK) {
        binder b = {st, SQLITE_OK};
        bind_text(&b, ":name", name);
        char missing[200];
        snprintf(missing, sizeof missing, "no thing named '%s'", name);
        rc = fetch_one(s, st, &b, read_aws_thing, out, missing, err);
    }
    if (rc == ENR_OK && (rc = statement(s, ST_AWS_THING_CERTS, &st, err)) == ENR_OK) {
        binder b = {st, SQLITE_OK};
        bind_text(&b, ":name", name);
        rc = fetch_all(s, st, &b, read_aws_certificate, sizeof *out->certificates, (void **)&out->certificates,
                       &out->certificate_count, err);
    }
    return finish(s, rc, err);
}

static enr_code sqlite_list_aws_things(void *impl, const char *template_name, enr_aws_thing_list *out,
                                       enr_error *err)
{
    sqlite_store *s = impl;
    sqlite3_stmt *st = NULL;
    enr_code rc = statement(s, ST_AWS_THING_LIST, &st, err);
    if (rc != ENR_OK)
        return rc;
    binder b = {st, SQLITE_OK};
    bind_text(&b, ":template", template_name);
    return fetch_all(s, st, &b, read_aws_thing, sizeof *out->items, (void **)&out->items, &out->count, err);
}

static enr_code sqlite_aws_create_pending(void *impl, const enr_certificate *cert, const char *fingerprint,
                                          const char *template_name, const char *connection_fingerprint,
                                          const char *token_sha256, time_t now, const enr_audit_event *audit,
                                          enr_error *err)
{
    sqlite_store *s = impl;
    enr_code rc = begin_write(s, err);
    if (rc != ENR_OK)
        return rc;
    enr_aws_template_record t = {0};
    if ((rc = get_aws_template(s, template_name, &t, err)) == ENR_OK && !t.enabled)
        rc = enr_error_refuse(err, ENR_R_TEMPLATE_DISABLED, "provisioning template '%s' is disabled", t.name);
    enr_aws_template_record_free(&t);
    if (rc == ENR_OK)
        rc = insert_certificate(s, cert, err);
    sqlite3_stmt *st = NULL;
    if (rc == ENR_OK && (rc = statement(s, ST_AWS_CERT_INSERT, &st, err)) == ENR_OK) {
        binder b = {st, SQLITE_OK};
        bind_text(&b, ":issuer", cert->issuer);
        bind_text(&b, ":serial", cert->serial);
        bind_text(&b, ":fingerprint", fingerprint);
        bind_text(&b, ":template", template_name);
        bind_int(&b, ":now", (int64_t)now);
        rc = run(s, st, &b, "keeping the pending certificate", err);
    }
    if (rc == ENR_OK && (rc = statement(s, ST_AWS_TOKEN_INSERT, &st, err)) == ENR_OK) {
        binder b = {st, SQLITE_OK};
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

static enr_code read_token(sqlite3_stmt *st, void *item, enr_error *err)
{
    token_row *t = item;
    enr_code rc;
    if ((rc = COLUMN_TEXT(st, 0, t->issuer, err)) != ENR_OK || (rc = COLUMN_TEXT(st, 1, t->serial, err)) != ENR_OK ||
        (rc = COLUMN_TEXT(st, 2, t->connection, err)) != ENR_OK ||
        (rc = COLUMN_TEXT(st, 3, t->template_name, err)) != ENR_OK || (rc = COLUMN_TEXT(st, 6, t->status, err)) != ENR_OK)
        return rc;
    t->expires_at = column_time(st, 4);
    t->consumed = sqlite3_column_type(st, 5) != SQLITE_NULL;
    t->revoked = column_bool(st, 7);
    return ENR_OK;
}

typedef struct thing_state {
    bool exists, enabled, owned;
} thing_state;

static enr_code read_thing_state(sqlite3_stmt *st, void *item, enr_error *err)
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
static enr_code retire_certificate(sqlite_store *s, const char *issuer, const char *serial, int reason,
                                   const char *status, time_t now, enr_error *err)
{
    sqlite3_stmt *st = NULL;
    enr_code rc = statement(s, ST_AWS_CERT_REVOKE_IF_VALID, &st, err);
    if (rc != ENR_OK)
        return rc;
    binder b = {st, SQLITE_OK};
    bind_text(&b, ":issuer", issuer);
    bind_text(&b, ":serial", serial);
    bind_int(&b, ":reason", reason);
    bind_int(&b, ":at", (int64_t)now);
    if ((rc = run(s, st, &b, "revoking a certificate", err)) != ENR_OK ||
        (rc = statement(s, ST_AWS_CERT_SET_STATUS, &st, err)) != ENR_OK)
        return rc;
    binder u = {st, SQLITE_OK};
    bind_text(&u, ":issuer", issuer);
    bind_text(&u, ":serial", serial);
    bind_text(&u, ":status", status);
    bind_int(&u, ":now", (int64_t)now);
    return run(s, st, &u, "marking a certificate", err);
}

/* The token's own checks (the first of RegisterThing's, in the order
 * store.h documents): `hash` is the token's SHA-256. */
static enr_code check_token(sqlite_store *s, const enr_aws_register *r, token_row *token, enr_error *err)
{
    sqlite3_stmt *st = NULL;
    enr_code rc = statement(s, ST_AWS_TOKEN_GET, &st, err);
    if (rc != ENR_OK)
        return rc;
    binder b = {st, SQLITE_OK};
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

static enr_code sqlite_aws_token_certificate(void *impl, const enr_aws_register *r, char issuer[ENR_STORE_DN_MAX + 1],
                                             char serial[ENR_STORE_SERIAL_MAX + 1], enr_error *err)
{
    sqlite_store *s = impl;
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
static enr_code check_registration(sqlite_store *s, const enr_aws_register *r, token_row *token, thing_state *thing,
                                   enr_error *err)
{
    sqlite3_stmt *st = NULL;
    enr_code rc = check_token(s, r, token, err);
    if (rc != ENR_OK)
        return rc;
    /* Whose connection is this: a claim (no thing), or a device by its
     * active certificate. */
    char owner[ENR_STORE_THING_NAME_MAX + 1] = "";
    if ((rc = statement(s, ST_AWS_OWNER_OF_FINGERPRINT, &st, err)) != ENR_OK)
        return rc;
    binder o = {st, SQLITE_OK};
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
    binder t = {st, SQLITE_OK};
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

static enr_code activate(sqlite_store *s, const enr_aws_register *r, const token_row *token,
                         enr_aws_register_result *result, enr_error *err)
{
    sqlite3_stmt *st = NULL;
    enr_code rc;
    /* Single use: the UPDATE that consumes is the one that counts, so two
     * connections racing with one token cannot both win. */
    if ((rc = statement(s, ST_AWS_TOKEN_CONSUME, &st, err)) != ENR_OK)
        return rc;
    binder c = {st, SQLITE_OK};
    bind_text(&c, ":hash", r->token);
    bind_int(&c, ":now", (int64_t)r->now);
    if ((rc = run(s, st, &c, "consuming the ownership token", err)) != ENR_OK)
        return rc;
    if (sqlite3_changes(s->db) != 1)
        return enr_error_refuse(err, ENR_R_TOKEN_USED, "the certificate ownership token was used already");
    if ((rc = statement(s, ST_AWS_THING_UPSERT, &st, err)) != ENR_OK)
        return rc;
    binder t = {st, SQLITE_OK};
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
    binder q = {st, SQLITE_OK};
    bind_text(&q, ":thing", r->thing_name);
    bind_text(&q, ":issuer", token->issuer);
    bind_text(&q, ":serial", token->serial);
    if ((rc = fetch_all(s, st, &q, read_certificate, sizeof *result->superseded.items,
                        (void **)&result->superseded.items, &result->superseded.count, err)) != ENR_OK)
        return rc;
    if ((rc = statement(s, ST_AWS_CERT_ACTIVATE, &st, err)) != ENR_OK)
        return rc;
    binder a = {st, SQLITE_OK};
    bind_text(&a, ":thing", r->thing_name);
    bind_text(&a, ":issuer", token->issuer);
    bind_text(&a, ":serial", token->serial);
    bind_int(&a, ":now", (int64_t)r->now);
    if ((rc = run(s, st, &a, "activating the certificate", err)) != ENR_OK)
        return rc;
    if (sqlite3_changes(s->db) != 1)
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

static enr_code sqlite_aws_register_thing(void *impl, const enr_aws_register *r, enr_aws_register_result *result,
                                          const enr_audit_event *audit, enr_error *err)
{
    sqlite_store *s = impl;
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

static enr_code read_thing_name(sqlite3_stmt *st, void *item, enr_error *err)
{
    return column_text(st, 0, item, ENR_STORE_THING_NAME_MAX + 1, err);
}

static enr_code sqlite_aws_thing_of_certificate(void *impl, const char *fingerprint,
                                                char thing_name[ENR_STORE_THING_NAME_MAX + 1], enr_error *err)
{
    sqlite_store *s = impl;
    sqlite3_stmt *st = NULL;
    enr_code rc = statement(s, ST_AWS_OWNER_OF_FINGERPRINT, &st, err);
    if (rc != ENR_OK)
        return rc;
    binder b = {st, SQLITE_OK};
    bind_text(&b, ":fp", fingerprint);
    return fetch_one(s, st, &b, read_thing_name, thing_name, "no active thing certificate with this fingerprint", err);
}

static enr_code sqlite_aws_sweep_pending(void *impl, time_t now, size_t limit, const enr_audit_event *audit,
                                         enr_certificate_list *revoked, enr_error *err)
{
    sqlite_store *s = impl;
    enr_code rc = begin_write(s, err);
    if (rc != ENR_OK)
        return rc;
    sqlite3_stmt *st = NULL;
    if ((rc = statement(s, ST_AWS_PENDING_EXPIRED, &st, err)) == ENR_OK) {
        binder b = {st, SQLITE_OK};
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

static enr_code sqlite_integrity_check(void *impl, enr_error *err)
{
    sqlite_store *s = impl;
    sqlite3_stmt *st = NULL;
    enr_code rc = statement(s, ST_INTEGRITY, &st, err);
    if (rc != ENR_OK)
        return rc;
    int step = sqlite3_step(st);
    if (step != SQLITE_ROW) {
        rc = fail(s, step, "checking integrity", err);
    } else {
        const unsigned char *first = sqlite3_column_text(st, 0);
        if (first == NULL || strcmp((const char *)first, "ok") != 0)
            rc = enr_error_set(err, ENR_E_IO, "%s: integrity check failed: %s", s->path,
                               first != NULL ? (const char *)first : "(no answer)");
    }
    release(st);
    return rc;
}

/* ---- opening ------------------------------------------------------------ */

static enr_code ensure_directory(const char *dir, enr_error *err)
{
    if (mkdir(dir, 0700) != 0 && errno != EEXIST)
        return enr_error_set(err, ENR_E_IO, "%s: cannot create the data directory: %s", dir, strerror(errno));
    struct stat st;
    if (stat(dir, &st) != 0)
        return enr_error_set(err, ENR_E_IO, "%s: %s", dir, strerror(errno));
    if (!S_ISDIR(st.st_mode))
        return enr_error_set(err, ENR_E_IO, "%s: not a directory", dir);
    return ENR_OK;
}

/* SQLite would create the file 0644 less the umask, and gives its -wal and
 * -shm files the database's mode: so the file is made here, 0600, first.
 * An existing file is never opened here, only checked and chmod'ed: SQLite
 * holds POSIX fcntl locks, and closing *any* descriptor of the file in this
 * process would silently drop the locks of every connection this process
 * already has (another worker's), letting other processes checkpoint and
 * truncate the WAL under it. */
static enr_code ensure_private_file(const char *path, enr_error *err)
{
    struct stat st;
    if (lstat(path, &st) == 0) {
        if (!S_ISREG(st.st_mode))
            return enr_error_set(err, ENR_E_IO, "%s: not a regular file", path);
        if ((st.st_mode & 07777) != 0600 && chmod(path, 0600) != 0)
            return enr_error_set(err, ENR_E_IO, "%s: cannot make it private (0600): %s", path, strerror(errno));
        return ENR_OK;
    }
    if (errno != ENOENT)
        return enr_error_set(err, ENR_E_IO, "%s: %s", path, strerror(errno));
    int fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (fd < 0 && errno != EEXIST)
        return enr_error_set(err, ENR_E_IO, "%s: cannot create: %s", path, strerror(errno));
    if (fd >= 0) {
        /* Created just now, so no connection of ours can hold locks on it yet. */
        (void)fchmod(fd, 0600);
        close(fd);
    }
    return ENR_OK;
}

static enr_code exec(sqlite_store *s, const char *sql, const char *what, enr_error *err)
{
    int rc = sqlite3_exec(s->db, sql, NULL, NULL, NULL);
    return rc == SQLITE_OK ? ENR_OK : fail(s, rc, what, err);
}

/* Runs a statement returning one row of one value; *text gets a copy. */
static enr_code query_text(sqlite_store *s, const char *sql, char *text, size_t cap, enr_error *err)
{
    sqlite3_stmt *st = NULL;
    int rc = sqlite3_prepare_v2(s->db, sql, -1, &st, NULL);
    if (rc == SQLITE_OK)
        rc = sqlite3_step(st);
    enr_code code = ENR_OK;
    if (rc == SQLITE_ROW)
        code = column_text(st, 0, text, cap, err);
    else
        code = fail(s, rc, sql, err);
    sqlite3_finalize(st);
    return code;
}

static enr_code configure(sqlite_store *s, enr_error *err)
{
    char mode[16];
    enr_code rc;
    sqlite3_extended_result_codes(s->db, 1);
    sqlite3_busy_timeout(s->db, BUSY_TIMEOUT_MS);
    /* Defensive: no writable_schema tricks, no journal_mode=OFF from SQL. */
    sqlite3_db_config(s->db, SQLITE_DBCONFIG_DEFENSIVE, 1, (int *)NULL);
    /* Switching a new database to WAL needs it alone for a moment, and SQLite
     * answers SQLITE_BUSY at once (no busy handler) when several processes
     * open a fresh store together: retry for up to the busy timeout. */
    for (int waited_ms = 0;; waited_ms += 20) {
        rc = query_text(s, "PRAGMA journal_mode=WAL", mode, sizeof mode, err);
        int code = sqlite3_errcode(s->db) & 0xff;
        if (rc == ENR_OK || (code != SQLITE_BUSY && code != SQLITE_LOCKED) || waited_ms >= BUSY_TIMEOUT_MS)
            break;
        struct timespec pause = {0, 20 * 1000 * 1000};
        nanosleep(&pause, NULL);
    }
    if (rc != ENR_OK)
        return rc;
    if (strcmp(mode, "wal") != 0)
        return enr_error_set(err, ENR_E_IO, "%s: cannot use write-ahead logging (journal mode stays %s)",
                             s->path, mode);
    char on[8];
    if ((rc = exec(s, "PRAGMA synchronous=FULL; PRAGMA foreign_keys=ON; PRAGMA trusted_schema=OFF;",
                   "configuring the connection", err)) != ENR_OK ||
        (rc = query_text(s, "PRAGMA foreign_keys", on, sizeof on, err)) != ENR_OK)
        return rc;
    /* A SQLite built without foreign keys ignores the pragma silently. */
    if (strcmp(on, "1") != 0)
        return enr_error_set(err, ENR_E_UNSUPPORTED, "%s: this SQLite does not enforce foreign keys",
                             s->path);
    return ENR_OK;
}

static enr_code schema_version(sqlite_store *s, int *out, enr_error *err)
{
    char text[32];
    enr_code rc = query_text(s, "SELECT COALESCE(MAX(version), 0) FROM schema_version", text, sizeof text, err);
    if (rc == ENR_OK)
        *out = atoi(text);
    return rc;
}

static enr_code record_version(sqlite_store *s, int version, enr_error *err)
{
    sqlite3_stmt *st = NULL;
    int rc = sqlite3_prepare_v2(s->db, "INSERT INTO schema_version (version, applied_at) VALUES (?1, ?2)",
                                -1, &st, NULL);
    if (rc == SQLITE_OK)
        rc = sqlite3_bind_int(st, 1, version);
    if (rc == SQLITE_OK)
        rc = sqlite3_bind_int64(st, 2, (sqlite3_int64)time(NULL));
    if (rc == SQLITE_OK)
        rc = sqlite3_step(st);
    enr_code code = rc == SQLITE_DONE ? ENR_OK : fail(s, rc, "recording the schema version", err);
    sqlite3_finalize(st);
    return code;
}

static enr_code apply_migrations(sqlite_store *s, enr_error *err)
{
    int version = 0;
    enr_code rc;
    if ((rc = exec(s,
                   "CREATE TABLE IF NOT EXISTS schema_version (version INTEGER PRIMARY KEY, "
                   "applied_at INTEGER NOT NULL)",
                   "creating the schema version table", err)) != ENR_OK ||
        (rc = schema_version(s, &version, err)) != ENR_OK)
        return rc;
    if (version > SCHEMA_VERSION)
        return enr_error_set(err, ENR_E_UNSUPPORTED,
                             "%s: the database has schema version %d, newer than the %d this enroll "
                             "knows: run a newer enroll (or restore a backup made by this one)",
                             s->path, version, SCHEMA_VERSION);
    for (int v = version + 1; rc == ENR_OK && v <= SCHEMA_VERSION; v++) {
        char what[64];
        snprintf(what, sizeof what, "migrating to schema version %d", v);
        if ((rc = exec(s, MIGRATIONS[v - 1], what, err)) == ENR_OK)
            rc = record_version(s, v, err);
    }
    return rc;
}

/* Concurrent openers queue on BEGIN IMMEDIATE; the second finds the work
 * done. */
static enr_code migrate(sqlite_store *s, enr_error *err)
{
    enr_code rc = begin_write(s, err);
    if (rc != ENR_OK)
        return rc;
    return finish(s, apply_migrations(s, err), err);
}

static void sqlite_close(void *impl)
{
    sqlite_store *s = impl;
    if (s == NULL)
        return;
    for (size_t i = 0; i < ST_COUNT; i++)
        sqlite3_finalize(s->stmts[i]);
    sqlite3_close(s->db);
    free(s);
}

static const char *sqlite_location(const void *impl)
{
    return ((const sqlite_store *)impl)->location;
}

static const enr_store_ops SQLITE_OPS = {
    .location = sqlite_location,
    .name = "sqlite",
    .close = sqlite_close,
    .integrity_check = sqlite_integrity_check,
    .create_ca = sqlite_create_ca,
    .get_ca = sqlite_get_ca,
    .list_cas = sqlite_list_cas,
    .set_ca_verification = sqlite_set_ca_verification,
    .create_policy = sqlite_create_policy,
    .get_policy = sqlite_get_policy,
    .list_policies = sqlite_list_policies,
    .create_enrollment = sqlite_create_enrollment,
    .get_enrollment = sqlite_get_enrollment,
    .list_enrollments = sqlite_list_enrollments,
    .set_enrollment_enabled = sqlite_set_enrollment_enabled,
    .commit_registration = sqlite_commit_registration,
    .commit_registrations = sqlite_commit_registrations,
    .get_registration = sqlite_get_registration,
    .list_registrations = sqlite_list_registrations,
    .set_registration_enabled = sqlite_set_registration_enabled,
    .get_certificate = sqlite_get_certificate,
    .list_certificates = sqlite_list_certificates,
    .revoke_certificate = sqlite_revoke_certificate,
    .revoke_registration = sqlite_revoke_registration,
    .block_key = sqlite_block_key,
    .key_compromised = sqlite_key_compromised,
    .move_registration = sqlite_move_registration,
    .rotate_enrollment_key = sqlite_rotate_enrollment_key,
    .get_operation = sqlite_get_operation,
    .record_audit = sqlite_record_audit,
    .record_audits = sqlite_record_audits,
    .prune_audit = sqlite_prune_audit,
    .check_writable = sqlite_check_writable,
    .list_audit = sqlite_list_audit,
    .create_aws_template = sqlite_create_aws_template,
    .get_aws_template = sqlite_get_aws_template,
    .list_aws_templates = sqlite_list_aws_templates,
    .delete_aws_template = sqlite_delete_aws_template,
    .set_aws_template_enabled = sqlite_set_aws_template_enabled,
    .get_aws_thing = sqlite_get_aws_thing,
    .list_aws_things = sqlite_list_aws_things,
    .set_aws_thing_enabled = sqlite_set_aws_thing_enabled,
    .aws_create_pending = sqlite_aws_create_pending,
    .aws_register_thing = sqlite_aws_register_thing,
    .aws_sweep_pending = sqlite_aws_sweep_pending,
    .aws_thing_of_certificate = sqlite_aws_thing_of_certificate,
    .aws_token_certificate = sqlite_aws_token_certificate,
};

static enr_code open_database(sqlite_store *s, enr_error *err)
{
    int rc = sqlite3_open_v2(s->path, &s->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX, NULL);
    if (rc != SQLITE_OK) {
        enr_code code = s->db != NULL ? fail(s, rc, "opening", err)
                                      : enr_error_set(err, ENR_E_NOMEM, "out of memory opening %s", s->path);
        return code;
    }
    enr_code code = configure(s, err);
    return code == ENR_OK ? migrate(s, err) : code;
}

bool enr_store_sqlite_exists(const char *data_dir)
{
    char path[4096];
    int n = snprintf(path, sizeof path, "%s/%s", data_dir, DB_FILE);
    struct stat st;
    return n > 0 && (size_t)n < sizeof path && stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

enr_code enr_store_open_sqlite(const char *data_dir, enr_store **out, enr_error *err)
{
    if (out == NULL || data_dir == NULL || data_dir[0] == '\0')
        return enr_error_set(err, ENR_E_USAGE, "opening a store needs a data directory");
    *out = NULL;
    sqlite_store *s = calloc(1, sizeof *s);
    if (s == NULL)
        return enr_error_set(err, ENR_E_NOMEM, "out of memory");
    int n = snprintf(s->path, sizeof s->path, "%s/%s", data_dir, DB_FILE);
    enr_code rc = n > 0 && (size_t)n < sizeof s->path
                      ? ENR_OK
                      : enr_error_set(err, ENR_E_USAGE, "data directory path is too long");
    if (rc == ENR_OK && (rc = ensure_directory(data_dir, err)) == ENR_OK &&
        (rc = ensure_private_file(s->path, err)) == ENR_OK)
        rc = open_database(s, err);
    if (rc == ENR_OK && realpath(data_dir, s->location) == NULL)
        rc = enr_error_set(err, ENR_E_IO, "%s: %s", data_dir, strerror(errno));
    if (rc != ENR_OK) {
        sqlite_close(s);
        return rc;
    }
    return enr_store_new(&SQLITE_OPS, s, out, err);
}
