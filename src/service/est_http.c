/* EST's HTTP face: methods, media types, Basic credentials, status codes
 * and text/plain refusals (RFC 7030 §4, RFC 8951). Everything a request
 * means is decided by the provisioning core. */
#include "service/est_http.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/keyvalq_struct.h>
#include <openssl/crypto.h>
#include <openssl/ssl.h>

#include "enroll/est.h"

#define BASIC_MAX 512 /* decoded user:password */
#define MULTIPART_BOUNDARY "enroll-est-part" /* '-' is not base64: never inside a part */

typedef struct est_request {
    struct evhttp_request *req;
    est_answering_fn answering;
    void *arg;
    const char *route;
} est_request;

bool est_http_owns_path(const char *path)
{
    size_t n = strlen(ENR_EST_PREFIX);
    return path != NULL && strncmp(path, ENR_EST_PREFIX, n) == 0 && (path[n] == '/' || path[n] == '\0');
}

static const char *reason_phrase(int status)
{
    switch (status) {
    case 200: return "OK";
    case 202: return "Accepted";
    case 204: return "No Content";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 413: return "Payload Too Large";
    case 415: return "Unsupported Media Type";
    case 429: return "Too Many Requests";
    case 503: return "Service Unavailable";
    default: return "Internal Server Error";
    }
}

static void reply(est_request *r, int status, const char *content_type, const char *body, size_t len,
                  const char *registration_id)
{
    struct evkeyvalq *headers = evhttp_request_get_output_headers(r->req);
    if (content_type != NULL)
        evhttp_add_header(headers, "Content-Type", content_type);
    if ((status == 503 || status == 429) && evhttp_find_header(headers, "Retry-After") == NULL)
        evhttp_add_header(headers, "Retry-After", "5");
    if (status == 401) /* RFC 7030 §3.2.3: the challenge that asks for Basic */
        evhttp_add_header(headers, "WWW-Authenticate", "Basic realm=\"enroll EST\"");
    r->answering(r->arg, r->req, status, r->route, registration_id != NULL ? registration_id : "");
    struct evbuffer *out = evbuffer_new();
    if (out != NULL && len > 0)
        evbuffer_add(out, body, len);
    evhttp_send_reply(r->req, status, reason_phrase(status), out);
    if (out != NULL)
        evbuffer_free(out);
    free(r);
}

/* RFC 7030 §4: errors are text/plain for a person to read. */
static void reply_text(est_request *r, int status, const char *message, const char *registration_id)
{
    char text[700];
    int n = snprintf(text, sizeof text, "%s\n", message);
    reply(r, status, "text/plain; charset=utf-8", text, n > 0 && (size_t)n < sizeof text ? (size_t)n : 0,
          registration_id);
}

/* 200 with base64 of `der` in lines. */
static void reply_der(est_request *r, const char *content_type, const unsigned char *der, size_t len,
                      const char *registration_id)
{
    char *b64 = NULL;
    size_t b64_len = 0;
    enr_error err;
    if (enr_est_base64_lines(der, len, &b64, &b64_len, &err) != ENR_OK) {
        reply_text(r, 500, "out of memory", registration_id);
        return;
    }
    reply(r, 200, content_type, b64, b64_len, registration_id);
    free(b64);
}

static void reply_certs_only(est_request *r, STACK_OF(X509) *certs)
{
    unsigned char *der = NULL;
    size_t len = 0;
    enr_error err;
    if (enr_est_certs_only(certs, &der, &len, &err) != ENR_OK) {
        reply_text(r, 500, "cannot encode the certificates", NULL);
        return;
    }
    reply_der(r, "application/pkcs7-mime", der, len, NULL);
    OPENSSL_free(der);
}

/* RFC 7030 §4.4.2: the key (PKCS#8) and the certificate (certs-only), each
 * a base64 part of one multipart/mixed body. */
static void reply_key_and_certificate(est_request *r, const enr_provision_outcome *o, const unsigned char *p7,
                                      size_t p7_len)
{
    char *key_b64 = NULL, *p7_b64 = NULL;
    size_t key_len = 0, cert_len = 0;
    enr_error err;
    struct evbuffer *body = evbuffer_new();
    if (body == NULL || enr_est_base64_lines(o->private_key, o->private_key_len, &key_b64, &key_len, &err) != ENR_OK ||
        enr_est_base64_lines(p7, p7_len, &p7_b64, &cert_len, &err) != ENR_OK) {
        if (body != NULL)
            evbuffer_free(body);
        OPENSSL_clear_free(key_b64, key_len);
        free(p7_b64);
        reply_text(r, 500, "out of memory", o->registration_id);
        return;
    }
    evbuffer_add_printf(body, "--" MULTIPART_BOUNDARY "\r\nContent-Type: application/pkcs8\r\n\r\n");
    evbuffer_add(body, key_b64, key_len);
    evbuffer_add_printf(body, "--" MULTIPART_BOUNDARY "\r\nContent-Type: application/pkcs7-mime; "
                              "smime-type=certs-only\r\n\r\n");
    evbuffer_add(body, p7_b64, cert_len);
    evbuffer_add_printf(body, "--" MULTIPART_BOUNDARY "--\r\n");
    OPENSSL_clear_free(key_b64, key_len);
    free(p7_b64);
    size_t len = evbuffer_get_length(body);
    unsigned char *flat = evbuffer_pullup(body, -1);
    reply(r, 200, "multipart/mixed; boundary=" MULTIPART_BOUNDARY, (const char *)flat, len, o->registration_id);
    /* The key went out once; the copy in this buffer goes now. */
    if (flat != NULL)
        OPENSSL_cleanse(flat, len);
    evbuffer_free(body);
}

/* A read for an unauthenticated client failed: say what, never the
 * store's or a CA's own words. */
static void reply_read_failed(est_request *r, enr_code rc, const char *label)
{
    bool missing = rc == ENR_E_NOTFOUND || rc == ENR_E_USAGE;
    reply_text(r, missing ? 404 : rc == ENR_E_IO ? 503 : 500,
               missing ? (label != NULL ? "no such enrollment group, or it issues no certificates"
                                        : "no CA issues certificates here yet")
               : rc == ENR_E_IO ? "the store is unavailable; try again"
                                : "internal error",
               NULL);
}

static void enrolled(void *ctx, const enr_provision_outcome *o)
{
    est_request *r = ctx;
    if (o->status == 202) {
        char seconds[16];
        snprintf(seconds, sizeof seconds, "%d", o->retry_after > 0 ? o->retry_after : 1);
        evhttp_add_header(evhttp_request_get_output_headers(r->req), "Retry-After", seconds);
        reply_text(r, 202, o->message ? o->message : "pending: send the same request again", o->registration_id);
        return;
    }
    if (o->status != 200 || o->chain_len == 0) {
        reply_text(r, o->status != 200 ? o->status : 500, o->message ? o->message : "refused", o->registration_id);
        return;
    }
    /* RFC 7030 §4.2.3: only the certificate issued (the chain is cacerts'). */
    const unsigned char *leaf = o->chain[0].der;
    size_t leaf_len = o->chain[0].len;
    unsigned char *p7 = NULL;
    size_t p7_len = 0;
    enr_error err;
    if (enr_est_certs_only_der(&leaf, &leaf_len, 1, &p7, &p7_len, &err) != ENR_OK) {
        reply_text(r, 500, "cannot encode the certificate", o->registration_id);
        return;
    }
    if (o->private_key != NULL)
        reply_key_and_certificate(r, o, p7, p7_len);
    else
        reply_der(r, "application/pkcs7-mime; smime-type=certs-only", p7, p7_len, o->registration_id);
    OPENSSL_free(p7);
}

static bool media_type_is(const char *header, const char *type)
{
    if (header == NULL)
        return false;
    size_t n = strlen(type);
    return strncasecmp(header, type, n) == 0 && (header[n] == '\0' || header[n] == ';' || header[n] == ' ');
}

static void serve_enroll(enr_provision *core, est_request *r, const enr_est_path *path)
{
    struct evkeyvalq *in_headers = evhttp_request_get_input_headers(r->req);
    struct evbuffer *in = evhttp_request_get_input_buffer(r->req);
    size_t len = evbuffer_get_length(in);
    if (!media_type_is(evhttp_find_header(in_headers, "Content-Type"), "application/pkcs10")) {
        reply_text(r, 415, "send the CSR as Content-Type: application/pkcs10 (base64 of its DER)", NULL);
        return;
    }
    if (len > ENR_EST_BODY_MAX) {
        reply_text(r, 413, "the CSR is too large", NULL);
        return;
    }
    unsigned char *der = NULL;
    size_t der_len = 0;
    enr_error err;
    if (enr_est_body_decode(len ? (const char *)evbuffer_pullup(in, -1) : "", len, &der, &der_len, &err) !=
        ENR_EST_OK) {
        char message[600];
        snprintf(message, sizeof message, "the body is not base64 of one DER CSR: %s", err.message);
        reply_text(r, 400, message, NULL);
        return;
    }
    struct evhttp_connection *conn = evhttp_request_get_connection(r->req);
    struct bufferevent *bev = conn ? evhttp_connection_get_bufferevent(conn) : NULL;
    SSL *ssl = bev ? bufferevent_openssl_get_ssl(bev) : NULL;
    X509 *cert = ssl ? SSL_get0_peer_certificate(ssl) : NULL;
    const char *authorization = evhttp_find_header(in_headers, "Authorization");
    char basic[BASIC_MAX];
    const char *user = NULL, *password = NULL;
    bool has_basic = authorization != NULL && enr_est_basic_parse(authorization, basic, sizeof basic, &user, &password);
    if (has_basic && ssl == NULL) { /* RFC 7030 §3.2.3: a secret never crosses in the clear */
        OPENSSL_cleanse(basic, sizeof basic);
        free(der);
        reply_text(r, 403, "HTTP Basic is taken only over TLS", NULL);
        return;
    }
    if (authorization != NULL && !has_basic && cert == NULL) {
        free(der);
        reply_text(r, 401, "the Authorization header is not HTTP Basic user:password", NULL);
        return;
    }
    if (!has_basic && cert == NULL) {
        free(der);
        reply_text(r, 401, "authenticate with HTTP Basic (user = registration id) or a TLS client certificate", NULL);
        return;
    }
    enr_provision_request req = {
        .verb = ENR_PROVISION_ENROLL,
        .peer = {.certificate = cert, .chain = ssl ? SSL_get_peer_cert_chain(ssl) : NULL,
                 .basic_password = has_basic ? password : NULL},
        .body = (const char *)der,
        .body_len = der_len,
        .basic_user = has_basic ? user : NULL,
        .enrollment_group = path->label[0] ? path->label : NULL,
        .renewal = path->operation == ENR_EST_SIMPLEREENROLL,
        .server_keygen = path->operation == ENR_EST_SERVERKEYGEN,
    };
    /* Answered through `enrolled`, at once or once committed. */
    (void)enr_provision_submit(core, &req, enrolled, r);
    OPENSSL_cleanse(basic, sizeof basic);
    free(der);
}

void est_http_serve(enr_provision *core, struct evhttp_request *req, const char *path, est_answering_fn answering,
                    void *arg)
{
    est_request *r = malloc(sizeof *r);
    if (r == NULL) {
        answering(arg, req, 503, "est", "");
        evhttp_send_reply(req, 503, "Service Unavailable", NULL);
        return;
    }
    *r = (est_request){.req = req, .answering = answering, .arg = arg, .route = "est"};
    enr_est_path parsed;
    enr_est_reason why = enr_est_path_parse(path, &parsed);
    if (why != ENR_EST_OK) {
        reply_text(r, 404,
                   why == ENR_EST_BAD_LABEL ? "an EST label is an enrollment group id ([A-Za-z0-9._:-], 1-128)"
                                            : "no such EST operation: cacerts, simpleenroll, simplereenroll, csrattrs "
                                              "or serverkeygen",
                   NULL);
        return;
    }
    r->route = enr_est_operation_name(parsed.operation);
    bool post = enr_est_operation_is_post(parsed.operation);
    enum evhttp_cmd_type cmd = evhttp_request_get_command(req);
    if (cmd != (post ? EVHTTP_REQ_POST : EVHTTP_REQ_GET)) {
        evhttp_add_header(evhttp_request_get_output_headers(req), "Allow", post ? "POST" : "GET");
        reply_text(r, 405, post ? "this EST operation takes POST" : "this EST operation takes GET", NULL);
        return;
    }
    const char *label = parsed.label[0] ? parsed.label : NULL;
    enr_error err;
    if (parsed.operation == ENR_EST_CACERTS) {
        STACK_OF(X509) *certs = NULL;
        enr_code rc = enr_provision_ca_certificates(core, label, &certs, &err);
        if (rc == ENR_OK)
            reply_certs_only(r, certs);
        else
            reply_read_failed(r, rc, label);
        sk_X509_pop_free(certs, X509_free);
    } else if (parsed.operation == ENR_EST_CSRATTRS) {
        char types[ENR_STORE_KEY_TYPES_MAX + 1];
        unsigned char *der = NULL;
        size_t len = 0;
        enr_code rc = ENR_OK;
        if (label == NULL) /* RFC 7030 §4.5.2: no attributes to ask for */
            reply(r, 204, NULL, NULL, 0, NULL);
        else if ((rc = enr_provision_group_key_types(core, label, types, sizeof types, &err)) != ENR_OK ||
                 (rc = enr_est_csrattrs(types, &der, &len, &err)) != ENR_OK)
            reply_read_failed(r, rc, label);
        else
            reply_der(r, "application/csrattrs", der, len, NULL);
        OPENSSL_free(der);
    } else {
        serve_enroll(core, r, &parsed);
    }
}
