/* EST over HTTPS (RFC 7030) on enrolld's HTTPS listener: a thin adapter.
 * Paths and bodies are read with enroll/est.h; enrollment goes through the
 * provisioning core (ENR_PROVISION_ENROLL) like every registration. */
#ifndef ENROLL_SERVICE_EST_HTTP_H
#define ENROLL_SERVICE_EST_HTTP_H

#include <stdbool.h>

#include <event2/http.h>

#include "enroll/provision.h"

/* Called once per request, just before its reply is sent (req is still
 * valid): for the listener's accounting. `registration_id` is checked
 * ([A-Za-z0-9._:-]) or "". */
typedef void (*est_answering_fn)(void *arg, struct evhttp_request *req, int status, const char *route,
                                 const char *registration_id);

bool est_http_owns_path(const char *path);
/* Answers at once (cacerts, csrattrs, refusals) or when the core has
 * committed the certificate. */
void est_http_serve(enr_provision *core, struct evhttp_request *req, const char *path, est_answering_fn answering,
                    void *arg);

#endif
