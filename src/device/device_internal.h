/* Internal to src/device: the identity store's record and files. */
#ifndef ENROLL_DEVICE_INTERNAL_H
#define ENROLL_DEVICE_INTERNAL_H

#include <stddef.h>
#include <time.h>

#include "enroll/error.h"

#define DEV_PATH_MAX 4096
#define DEV_IDENTITY_FILE "identity.json"
#define DEV_SERVICE_TRUST "service-trust.pem"
#define DEV_CA_TRUST "ca-trust.pem"

/* identity.json: the saved configuration (paths, never secrets), the
 * current generation's files (names relative to the store), facts about the
 * certificate, and the last outcome. All strings are heap copies or NULL. */
typedef struct dev_identity {
    char *registration_id, *url, *id_scope, *api_version, *auth;
    char *transport; /* "https", "mqtt"; NULL in stores made before MQTT: the URL says */
    char *symmetric_key_file, *bootstrap_cert_file, *bootstrap_key_file;
    char *key_ref, *key_type, *pkcs11_module, *pkcs11_pin_file;
    long renew_before;
    long generation; /* 0: no certificate yet */
    char *cert, *chain, *bundle;
    /* This generation's copies of the trust anchors (NULL in stores made
     * before they were generation files: DEV_SERVICE_TRUST, DEV_CA_TRUST). */
    char *service_trust, *ca_trust;
    char *serial, *subject, *issuer, *assigned_hub;
    time_t not_before, not_after, renew_at;
    time_t service_renew_after; /* the service's hint (renewAfterUtc), 0: none */
    char *service_window;       /* its renewalWindow text, for people */
    char *last_result, *last_message;
    time_t last_attempt, last_success;
    /* "dps" (NULL in stores made before AWS: DPS) or "aws-fleet". For
     * aws-fleet, registration_id is the thing name the CSR asks for (its
     * CN), id_scope and api_version are NULL, and these hold the template,
     * RegisterThing's parameters (a JSON object's compact text), the thing
     * name the service answered and its deviceConfiguration (JSON text). */
    char *protocol;
    char *aws_template, *aws_params, *thing_name, *device_config;
} dev_identity;

void dev_identity_free(dev_identity *id);
/* A deep copy (ENR_E_NOMEM leaves *out empty). */
enr_code dev_identity_copy(dev_identity *out, const dev_identity *src, enr_error *err);
enr_code dev_identity_load(const char *dir, dev_identity *out, enr_error *err);
/* The text of identity.json (`where` names it in messages): ENR_E_PARSE for
 * anything but a version-1 object with the required members. */
enr_code dev_identity_parse(const char *text, size_t len, const char *where, dev_identity *out, enr_error *err);
/* Atomic replace (temporary file, fsync, rename, fsync of the directory). */
enr_code dev_identity_save(const char *dir, const dev_identity *id, enr_error *err);
/* Creates the store (0700, the parent directory synced) when absent;
 * refuses one that is not a directory or that others may write to. */
enr_code dev_store_prepare(const char *dir, enr_error *err);
/* The store's one spelling (symlinks and trailing slashes resolved), so
 * paths made from it compare equal; heap string, NULL when out of memory. */
char *dev_store_canonical(const char *absolute_dir);
/* Removes the store's generation files outside current-1..current. Key
 * files (key-N.pem, which only the store makes) are kept whatever their
 * number while they are one of the `keep` files (compared by device and
 * inode, so a path spelled differently still matches). */
void dev_store_prune(const char *dir, long current, const char *const *keep, size_t nkeep);
int dev_path(char *out, size_t cap, const char *dir, const char *name);

#endif
