/* Administration of what enrolld serves: CAs, credential policies,
 * enrollments, keys, registrations, certificates, revocation, CRLs and the
 * audit trail.
 *
 * One entry point: a command name ("group.new") and its arguments as a JSON
 * object, run against a store, answered with a JSON document. `enroll admin
 * --data DIR` and enrolld's /admin/v1 routes both call it, so both check,
 * refuse and audit alike; docs/admin-api.md lists the commands and their
 * arguments. Arguments are outside input: unknown names, wrong types and
 * bad values are ENR_E_USAGE with a message that starts with the argument's
 * name ("validity: ..."), so a front end can point at its own spelling of
 * it (the CLI says "--validity: ..."). */
#ifndef ENROLL_ADMIN_H
#define ENROLL_ADMIN_H

#include <stdbool.h>
#include <stddef.h>

#include "enroll/ca.h"
#include "enroll/error.h"
#include "enroll/store.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Arguments larger than this are refused before parsing. */
#define ENR_ADMIN_ARGS_MAX (256 * 1024)

typedef struct enr_admin_context {
    /* Who asks, appended to every audit event's detail: "enroll admin, user
     * alice" or "admin API, O=Acme, CN=ops". Never a key. */
    const char *actor;
    /* Over the network: paths in arguments must be absolute (they name the
     * server's files, not the caller's). */
    bool remote;
} enr_admin_context;

/* Runs one command. `args` is a JSON object (NULL or empty: no arguments).
 * On success *result is a NUL-terminated JSON document (free it with
 * enr_admin_result_free: key.show and key.derive answer secrets). */
enr_code enr_admin_execute(enr_store *store, const enr_admin_context *ctx, const char *command,
                           const char *args, size_t args_len, char **result, enr_error *err);
void enr_admin_result_free(char *result);

/* "group.new", ... */
bool enr_admin_command_known(const char *command);
/* Commands that change nothing but the audit trail (list, show). */
bool enr_admin_command_read_only(const char *command);
/* Commands whose answer holds a secret (key.show, key.derive): never log it. */
bool enr_admin_command_secret(const char *command);

/* One record of a CA's revocations: the store's revocations of `ca`'s
 * certificates, as a revocation source (enr_ca_set_revocation_source with
 * the enr_store as ctx), so every CRL the CA directory writes lists them. */
enr_code enr_admin_store_revocations(void *store, const enr_ca *ca, enr_crl_sink *sink, enr_error *err);
/* The store as the CA's CRL number source (enr_ca_set_crl_number_source
 * with the enr_store as ctx): numbers count up across every node. */
enr_code enr_admin_store_crl_number(void *store, const enr_ca *ca, int64_t at_least, int64_t *number,
                                    enr_error *err);
/* Both of the above: the store as the CA's second record. */
void enr_admin_attach_ca(enr_store *store, enr_ca *ca);
/* enr_ca_open with the store as the CA's second record (above). The store
 * must outlive the CA. */
enr_code enr_admin_open_ca(enr_store *store, const char *dir, const char *passphrase, const enr_token_options *token,
                           enr_ca **out, enr_error *err);

#ifdef __cplusplus
}
#endif
#endif
