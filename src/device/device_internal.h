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
    char *symmetric_key_file, *bootstrap_cert_file, *bootstrap_key_file;
    char *key_ref, *key_type, *pkcs11_module, *pkcs11_pin_file;
    long renew_before;
    long generation; /* 0: no certificate yet */
    char *cert, *chain, *bundle;
    char *serial, *subject, *issuer, *assigned_hub;
    time_t not_before, not_after, renew_at;
    time_t service_renew_after; /* the service's hint (renewAfterUtc), 0: none */
    char *service_window;       /* its renewalWindow text, for people */
    char *last_result, *last_message;
    time_t last_attempt, last_success;
} dev_identity;

void dev_identity_free(dev_identity *id);
enr_code dev_identity_load(const char *dir, dev_identity *out, enr_error *err);
/* Atomic replace (temporary file, fsync, rename, fsync of the directory). */
enr_code dev_identity_save(const char *dir, const dev_identity *id, enr_error *err);
enr_code dev_store_prepare(const char *dir, enr_error *err);
void dev_store_prune(const char *dir, long current, const char *keep);
int dev_path(char *out, size_t cap, const char *dir, const char *name);

#endif
