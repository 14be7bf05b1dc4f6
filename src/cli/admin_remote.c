/* `enroll admin --url` over the shared HTTPS client (enroll/http_client.h):
 * one POST per command, the service's JSON error turned back into an
 * enr_error with the code it names. */
#include <jansson.h>
#include <openssl/crypto.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/admin_remote.h"
#include "enroll/admin.h"
#include "enroll/http_client.h"

static enr_code code_named(const char *name)
{
    for (int c = ENR_E_USAGE; c <= ENR_E_LOCKED; c++)
        if (name != NULL && strcmp(enr_code_name((enr_code)c), name) == 0)
            return (enr_code)c;
    return ENR_E_INTERNAL;
}

/* An error answer: the service's message and code; refusals of the credential say so. */
static enr_code answer_error(int status, const char *body, enr_error *err)
{
    json_t *o = json_loads(body, 0, NULL);
    const char *message = json_string_value(json_object_get(json_object_get(o, "error"), "message"));
    const char *code = json_string_value(json_object_get(json_object_get(o, "error"), "code"));
    enr_code rc;
    if (status == 401 || status == 403)
        rc = enr_error_set(err, ENR_E_POLICY, "enrolld refused the admin credential (HTTP %d): %s", status,
                           message ? message : "no reason given");
    else if (message != NULL)
        rc = enr_error_set(err, code_named(code), "%s", message);
    else
        /* No answer of the admin API (its path unknown, or it is off): the
         * service could not be used, not a lookup that found nothing. */
        rc = enr_error_set(err, ENR_E_IO,
                           "enrolld answered HTTP %d (is the admin API on? `admin` in its config)", status);
    json_decref(o);
    return rc;
}

enr_code cli_admin_remote(const char *url, const char *cert, const char *key, const char *trust,
                          const char *command, const char *args, char **result, enr_error *err)
{
    *result = NULL;
    char path[96];
    if (strcmp(command, "crl.export") == 0)
        snprintf(path, sizeof path, "/admin/v1/crl");
    else {
        snprintf(path, sizeof path, "/admin/v1/%s", command);
        char *dot = strchr(path + 10, '.');
        if (dot != NULL)
            *dot = '/';
    }
    enr_http_client_options o = {.trust_file = trust, .client_cert_file = cert, .client_key_file = key};
    enr_http_client *client = NULL;
    enr_http_response resp = {0};
    enr_http_header headers[] = {{"Content-Type", "application/json"}, {"Accept", "application/json"}};
    enr_http_request req = {"POST", path, headers, 2, args, strlen(args)};
    enr_code rc = enr_http_client_new(url, &o, &client, err);
    if (rc == ENR_E_USAGE)
        enr_error_prefix(err, "--url");
    if (rc == ENR_E_NOTFOUND) /* --admin-cert, --admin-key or --trust: not a lookup's answer */
        rc = err->code = ENR_E_IO;
    if (rc == ENR_OK)
        rc = enr_http_client_send(client, &req, &resp, err);
    if (rc == ENR_OK && resp.status != 200)
        rc = answer_error(resp.status, (const char *)resp.body, err);
    if (rc == ENR_OK && (*result = strndup((const char *)resp.body, resp.body_len)) == NULL)
        rc = enr_error_set(err, ENR_E_NOMEM, "out of memory");
    if (resp.body != NULL)
        OPENSSL_cleanse(resp.body, resp.body_len); /* key.show answers keys */
    enr_http_response_free(&resp);
    enr_http_client_free(client);
    return rc;
}
