/* The admin API: authenticate the admin certificate, map the route to an
 * admin command, run it (enroll/admin.h), answer JSON. */
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/http.h>
#include <jansson.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509_vfy.h>
#include <openssl/x509v3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "enroll/admin.h"
#include "enroll/name.h"
#include "enroll/store.h"
#include "service/admin_api.h"

#define PREFIX "/admin/v1/"

struct admin_api {
    enr_store *store;
    X509_STORE *trust;   /* the admin CA(s) only */
    char route[64];
};

/* ---- setup ------------------------------------------------------------------ */

static bool same_as_any(X509 *x, STACK_OF(X509_OBJECT) *admins)
{
    for (int i = 0; i < sk_X509_OBJECT_num(admins); i++) {
        X509 *a = X509_OBJECT_get0_X509(sk_X509_OBJECT_value(admins, i));
        if (a != NULL && X509_cmp(a, x) == 0)
            return true;
    }
    return false;
}

/* An admin CA that is also a CA of the store, or an issuer above one, would
 * make device certificates admin credentials: refuse to start. (CAs added
 * later are the operator's to keep apart; docs/admin-api.md says so.) */
static enr_code check_separate(admin_api *api, enr_error *err)
{
    STACK_OF(X509_OBJECT) *admins = X509_STORE_get0_objects(api->trust);
    enr_ca_record_list cas = {0};
    enr_code rc = enr_store_list_cas(api->store, &cas, err);
    for (size_t i = 0; rc == ENR_OK && i < cas.count; i++) {
        const enr_ca_record *ca = &cas.items[i];
        const unsigned char *p = ca->certificate.data;
        X509 *x = p ? d2i_X509(NULL, &p, (long)ca->certificate.len) : NULL;
        bool clash = x != NULL && same_as_any(x, admins);
        X509_free(x);
        BIO *bio = ca->chain_pem ? BIO_new_mem_buf(ca->chain_pem, -1) : NULL;
        while (!clash && bio != NULL && (x = PEM_read_bio_X509(bio, NULL, NULL, NULL)) != NULL) {
            clash = same_as_any(x, admins);
            X509_free(x);
        }
        BIO_free(bio);
        if (clash)
            rc = enr_error_set(err, ENR_E_POLICY,
                               "admin.client_ca holds CA '%s' of the store (or an issuer above it): its device "
                               "certificates would be admin credentials; make a separate admin CA",
                               ca->name);
    }
    enr_ca_record_list_free(&cas);
    return rc;
}

enr_code admin_api_new(const char *store_location, const char *client_ca_file, admin_api **out, enr_error *err)
{
    *out = NULL;
    admin_api *api = calloc(1, sizeof *api);
    if (api == NULL)
        return enr_error_set(err, ENR_E_NOMEM, "out of memory");
    enr_code rc = ENR_OK;
    if ((api->trust = X509_STORE_new()) == NULL)
        rc = enr_error_set(err, ENR_E_NOMEM, "out of memory");
    else if (X509_STORE_load_file(api->trust, client_ca_file) != 1 ||
             sk_X509_OBJECT_num(X509_STORE_get0_objects(api->trust)) == 0)
        rc = enr_error_openssl(err, ENR_E_IO, "%s: cannot load the admin CA certificate(s)", client_ca_file);
    /* Trust exactly the configured CA, also when it is not a root. */
    if (rc == ENR_OK)
        X509_STORE_set_flags(api->trust, X509_V_FLAG_PARTIAL_CHAIN);
    if (rc == ENR_OK)
        rc = enr_store_open(store_location, &api->store, err);
    if (rc == ENR_OK)
        rc = check_separate(api, err);
    if (rc != ENR_OK) {
        admin_api_free(api);
        return rc;
    }
    *out = api;
    return ENR_OK;
}

void admin_api_free(admin_api *api)
{
    if (api == NULL)
        return;
    enr_store_close(api->store);
    X509_STORE_free(api->trust);
    free(api);
}

bool admin_api_owns_path(const char *path)
{
    return strncmp(path, "/admin", 6) == 0 && (path[6] == '\0' || path[6] == '/');
}

/* ---- answering -------------------------------------------------------------- */

static int reply(struct evhttp_request *req, int status, const char *reason, const char *body)
{
    struct evkeyvalq *headers = evhttp_request_get_output_headers(req);
    evhttp_add_header(headers, "Content-Type", "application/json; charset=utf-8");
    /* Answers may hold keys (key.show): never cache them anywhere. */
    evhttp_add_header(headers, "Cache-Control", "no-store");
    if (status == 503 || status == 429)
        evhttp_add_header(headers, "Retry-After", "5");
    struct evbuffer *out = evbuffer_new();
    if (out != NULL) {
        evbuffer_add(out, body, strlen(body));
        evbuffer_add(out, "\n", 1);
    }
    evhttp_send_reply(req, status, reason, out);
    if (out != NULL)
        evbuffer_free(out);
    return status;
}

/* {"error": {"code": "usage", "message": "..."}}: the shape of `enroll admin --json` errors. */
static int reply_error(struct evhttp_request *req, int status, const char *reason, enr_code code,
                       const char *message)
{
    json_t *o = json_pack("{s:{s:s,s:s}}", "error", "code", enr_code_name(code), "message", message);
    char *text = o ? json_dumps(o, JSON_COMPACT) : NULL;
    json_decref(o);
    status = reply(req, status, reason, text ? text : "{\"error\":{\"code\":\"nomem\",\"message\":\"out of memory\"}}");
    free(text);
    return status;
}

static int status_of(enr_code code, const char **reason)
{
    switch (code) {
    case ENR_E_USAGE:
    case ENR_E_PARSE: *reason = "Bad Request"; return 400;
    case ENR_E_NOTFOUND: *reason = "Not Found"; return 404;
    case ENR_E_EXISTS: *reason = "Conflict"; return 409;
    case ENR_E_POLICY:
    case ENR_E_VERIFY:
    case ENR_E_UNSUPPORTED: *reason = "Unprocessable Entity"; return 422;
    case ENR_E_IO: /* the store: busy, full, read-only */
    case ENR_E_LOCKED: *reason = "Service Unavailable"; return 503; /* a CA key it cannot unlock */
    default: *reason = "Internal Server Error"; return 500;
    }
}

/* The client's certificate, when it chains to an admin CA for TLS client
 * use; `why` says what is wrong otherwise. */
static X509 *admin_certificate(admin_api *api, struct evhttp_request *req, bool *presented, char *why, size_t cap)
{
    struct evhttp_connection *conn = evhttp_request_get_connection(req);
    struct bufferevent *bev = conn ? evhttp_connection_get_bufferevent(conn) : NULL;
    SSL *ssl = bev ? bufferevent_openssl_get_ssl(bev) : NULL;
    X509 *cert = ssl ? SSL_get0_peer_certificate(ssl) : NULL;
    *presented = cert != NULL;
    if (cert == NULL)
        return NULL;
    X509_STORE_CTX *ctx = X509_STORE_CTX_new();
    bool ok = ctx != NULL && X509_STORE_CTX_init(ctx, api->trust, cert, SSL_get_peer_cert_chain(ssl)) == 1 &&
              X509_STORE_CTX_set_purpose(ctx, X509_PURPOSE_SSL_CLIENT) == 1 && X509_verify_cert(ctx) == 1;
    if (!ok)
        snprintf(why, cap, "%s", ctx ? X509_verify_cert_error_string(X509_STORE_CTX_get_error(ctx)) : "out of memory");
    X509_STORE_CTX_free(ctx);
    ERR_clear_error();
    return ok ? cert : NULL;
}

/* "/admin/v1/group/list" -> "group.list", "/admin/v1/crl" -> "crl.export". */
static bool command_of(const char *path, char *out, size_t cap)
{
    if (strncmp(path, PREFIX, strlen(PREFIX)) != 0)
        return false;
    const char *rest = path + strlen(PREFIX);
    size_t len = strlen(rest);
    if (len == 0 || len >= cap - 8 || strspn(rest, "abcdefghijklmnopqrstuvwxyz/") != len)
        return false;
    if (strcmp(rest, "crl") == 0) {
        snprintf(out, cap, "crl.export");
        return true;
    }
    const char *slash = strchr(rest, '/');
    if (slash == NULL || slash == rest || slash[1] == '\0' || strchr(slash + 1, '/') != NULL)
        return false;
    snprintf(out, cap, "%.*s.%s", (int)(slash - rest), rest, slash + 1);
    return strcmp(out, "crl.export") != 0 && enr_admin_command_known(out);
}

int admin_api_serve(admin_api *api, struct evhttp_request *req, const char *path, const char **route)
{
    snprintf(api->route, sizeof api->route, "admin");
    *route = api->route;
    /* Who asks comes first: nothing about routes or data before that. */
    if (evhttp_find_header(evhttp_request_get_input_headers(req), "Authorization") != NULL)
        return reply_error(req, 401, "Unauthorized", ENR_E_POLICY,
                           "the admin API takes no Authorization header (device credentials are refused): "
                           "authenticate with an admin client certificate");
    bool presented = false;
    char why[160] = "";
    X509 *cert = admin_certificate(api, req, &presented, why, sizeof why);
    if (!presented)
        return reply_error(req, 401, "Unauthorized", ENR_E_POLICY,
                           "the admin API needs a TLS client certificate issued by the admin CA");
    if (cert == NULL)
        return reply_error(req, 403, "Forbidden", ENR_E_POLICY,
                           "the client certificate is not an admin credential (it does not chain to the admin CA)");

    char command[48];
    if (!command_of(path, command, sizeof command))
        return reply_error(req, 404, "Not Found", ENR_E_NOTFOUND,
                           "no such admin route: POST /admin/v1/NOUN/VERB (see docs/admin-api.md)");
    snprintf(api->route, sizeof api->route, "admin.%s", command);
    enum evhttp_cmd_type method = evhttp_request_get_command(req);
    bool read_only = enr_admin_command_read_only(command);
    struct evbuffer *in = evhttp_request_get_input_buffer(req);
    size_t len = evbuffer_get_length(in);
    if (method != EVHTTP_REQ_POST && !(method == EVHTTP_REQ_GET && read_only)) {
        evhttp_add_header(evhttp_request_get_output_headers(req), "Allow", read_only ? "GET, POST" : "POST");
        return reply_error(req, 405, "Method Not Allowed", ENR_E_USAGE,
                           read_only ? "use GET or POST" : "use POST, with the arguments as a JSON object");
    }
    if (method == EVHTTP_REQ_GET && len > 0)
        return reply_error(req, 400, "Bad Request", ENR_E_USAGE, "a GET takes no body: POST the arguments");
    if (len > ADMIN_API_BODY_MAX) {
        char msg[96];
        snprintf(msg, sizeof msg, "the request body is larger than %d bytes", ADMIN_API_BODY_MAX);
        return reply_error(req, 400, "Bad Request", ENR_E_USAGE, msg);
    }
    const char *body = len ? (const char *)evbuffer_pullup(in, -1) : "";

    char *subject = enr_name_format(X509_get_subject_name(cert));
    char actor[ENR_STORE_DETAIL_MAX / 2];
    snprintf(actor, sizeof actor, "admin API, %s", subject ? subject : "?");
    free(subject);
    enr_admin_context ctx = {.actor = actor, .remote = true};
    char *result = NULL;
    enr_error err;
    enr_code rc = enr_admin_execute(api->store, &ctx, command, body, len, &result, &err);
    int status;
    if (rc == ENR_OK) {
        status = reply(req, 200, "OK", result);
    } else {
        const char *reason;
        int code = status_of(rc, &reason);
        status = reply_error(req, code, reason, rc, err.message);
    }
    enr_admin_result_free(result);
    return status;
}
