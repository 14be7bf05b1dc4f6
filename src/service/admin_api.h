/* Internal to enrolld: the admin API, /admin/v1/NOUN/VERB on the same
 * listener as the DPS routes, one instance per worker thread (it owns a
 * store connection).
 *
 * Who may call it: only a TLS client whose certificate chains to the admin
 * CA of the config (admin.client_ca), for TLS client use. Everything else
 * is refused before any route is looked at and before the store is read:
 * no certificate 401, a certificate from any other CA (device, bootstrap,
 * issuing, unknown) 403, and any Authorization header (a SAS token is a
 * device credential) 401. Refusals carry a message and never data. */
#ifndef ENROLL_SERVICE_ADMIN_API_H
#define ENROLL_SERVICE_ADMIN_API_H

#include <stdbool.h>

#include <event2/http.h>

#include "enroll/error.h"

/* Bodies larger than this are refused with 400 (devices' limit is the
 * server's max_body_bytes; admin requests are small). */
#define ADMIN_API_BODY_MAX (32 * 1024)

typedef struct admin_api admin_api;

/* Opens a store connection in store_location and loads the admin CA(s) (PEM, one
 * or more) from client_ca_file. */
enr_code admin_api_new(const char *store_location, const char *client_ca_file, admin_api **out, enr_error *err);
void admin_api_free(admin_api *api);

/* True for /admin and everything below it. */
bool admin_api_owns_path(const char *path);

/* Answers the request (evhttp_send_reply) and returns its HTTP status;
 * *route names it for the request log ("admin.group.list", or "admin" when
 * refused before a route was found), valid until the next call. */
int admin_api_serve(admin_api *api, struct evhttp_request *req, const char *path, const char **route);

#endif
