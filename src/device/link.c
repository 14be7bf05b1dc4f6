/* The registration transport interface (link.h) and its HTTPS side: one
 * DPS request per HTTPS connection, as enr_http_client does it. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "device/link.h"
#include "enroll/dps.h"

void dev_reply_free(dev_reply *r)
{
    if (r == NULL)
        return;
    free(r->body);
    memset(r, 0, sizeof *r);
}

enr_code dev_link_send(dev_link *l, const char *operation_id, const char *body, const char *sas_token,
                       dev_reply *out, enr_error *err)
{
    if (l == NULL || out == NULL)
        return enr_error_set(err, ENR_E_USAGE, "dev_link_send: NULL argument");
    memset(out, 0, sizeof *out);
    return l->send(l, operation_id, body, sas_token, out, err);
}

void dev_link_free(dev_link *l)
{
    if (l != NULL)
        l->destroy(l);
}

bool dev_url_is_mqtt(const char *url)
{
    return url != NULL && strncasecmp(url, "mqtts://", 8) == 0;
}

/* ---- HTTPS ---- */

typedef struct https_link {
    dev_link base;
    enr_http_client *client;
    char *id_scope, *registration_id, *api_version;
} https_link;

static enr_code https_send(dev_link *base, const char *operation_id, const char *body, const char *sas_token,
                           dev_reply *out, enr_error *err)
{
    https_link *l = (https_link *)base;
    enr_http_header h[3] = {{"Accept", "application/json"},
                            {"Content-Type", "application/json; charset=utf-8"},
                            {"Authorization", sas_token}};
    bool put = operation_id == NULL || operation_id[0] == '\0';
    char path[512];
    if (put)
        snprintf(path, sizeof path, "/%s/registrations/%s/register?api-version=%s", l->id_scope, l->registration_id,
                 l->api_version);
    else
        snprintf(path, sizeof path, "/%s/registrations/%s/operations/%s?api-version=%s", l->id_scope,
                 l->registration_id, operation_id, l->api_version);
    enr_http_request req = {put ? "PUT" : "GET", path, h, sas_token != NULL ? 3u : 2u, put ? body : NULL,
                            put && body != NULL ? strlen(body) : 0};
    enr_http_response resp = {0};
    enr_code rc = enr_http_client_send(l->client, &req, &resp, err);
    if (rc != ENR_OK)
        return rc;
    out->status = resp.status;
    out->retry_after = resp.retry_after;
    out->body = (char *)resp.body; /* NUL-terminated one past body_len */
    out->body_len = resp.body_len;
    resp.body = NULL;
    enr_http_response_free(&resp);
    return ENR_OK;
}

static void https_destroy(dev_link *base)
{
    https_link *l = (https_link *)base;
    enr_http_client_free(l->client);
    free(l->id_scope);
    free(l->registration_id);
    free(l->api_version);
    free(l);
}

enr_code dev_link_https_new(const dev_link_options *o, dev_link **out, enr_error *err)
{
    *out = NULL;
    https_link *l = calloc(1, sizeof *l);
    if (l == NULL)
        return enr_error_set(err, ENR_E_NOMEM, "out of memory");
    l->base.send = https_send;
    l->base.destroy = https_destroy;
    l->id_scope = strdup(o->id_scope);
    l->registration_id = strdup(o->registration_id);
    l->api_version = strdup(o->api_version);
    if (l->id_scope == NULL || l->registration_id == NULL || l->api_version == NULL) {
        https_destroy(&l->base);
        return enr_error_set(err, ENR_E_NOMEM, "out of memory");
    }
    enr_http_client_options t = o->tls;
    t.io_timeout_ms = o->timeout_ms;
    t.connect_timeout_ms = o->timeout_ms < 10000 ? o->timeout_ms : 10000;
    t.max_body = ENR_DPS_RESPONSE_BODY_MAX;
    enr_code rc = enr_http_client_new(o->url, &t, &l->client, err);
    if (rc != ENR_OK) {
        https_destroy(&l->base);
        return rc;
    }
    *out = &l->base;
    return ENR_OK;
}
