/* The registration transport over DPS's MQTT (link.h), on libmosquitto.
 *
 * MQTT 3.1.1 over TLS, as the Azure SDKs speak it: client id = the
 * registration id, user name {idScope}/registrations/{id}/api-version={v}
 * &ClientVersion=..., password = the SAS token (none with a client
 * certificate); SUBSCRIBE $dps/registrations/res/#; the register and poll
 * requests are PUBLISHes, answered on $dps/registrations/res/{status}/
 * ?$rid={rid}[&retry-after={s}] with the HTTPS bodies.
 *
 * The TLS context is ours (enr_tls_client_context_new: the configured trust
 * anchor only, the client credential, a PKCS#11 key signing in its token),
 * handed to libmosquitto without its defaults, with the host name check set
 * on it so that every SSL made from it checks the name as HTTPS does.
 * libmosquitto is driven synchronously by mosquitto_loop against one
 * deadline per request: no background thread, no step without a bound
 * (except name resolution, which getaddrinfo does blocking).
 *
 * One connection serves a registration's register and its polls; it is made
 * again when the service closed it in between (an idle connection outlives
 * the keepalive the service allows only so long). */
#include <errno.h>
#include <mosquitto.h>
#include <netdb.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#include "device/link.h"
#include "enroll/dps.h"

#ifndef ENROLL_VERSION
#define ENROLL_VERSION "0.1.0"
#endif

#define RESPONSE_FILTER "$dps/registrations/res/#"
#define KEEPALIVE_SECONDS 60
#define LOOP_SLICE_MS 200

typedef struct mqtt_link {
    dev_link base;
    struct mosquitto *m;
    SSL_CTX *ctx;
    enr_tls_key *tls_key; /* owns ctx's library context with a token key */
    enr_url url;
    char *username;
    int timeout_ms;
    bool connected;    /* CONNACK accepted and the answer topic subscribed */
    int connack;       /* -1: none yet this connection */
    int sub_mid;       /* the SUBSCRIBE awaiting its SUBACK */
    bool subscribed, sub_refused;
    long verify_error; /* the first certificate error of the handshake */
    unsigned long next_rid;
    /* The request in flight and its answer. */
    char want_rid[DEV_MQTT_RID_MAX];
    bool have_reply, reply_too_large;
    dev_reply reply;
} mqtt_link;

/* ---- names (unit-tested through link.h) ---- */

static bool digits(const char *s, size_t n)
{
    if (n == 0)
        return false;
    for (size_t i = 0; i < n; i++)
        if (s[i] < '0' || s[i] > '9')
            return false;
    return true;
}

bool dev_mqtt_answer_topic_parse(const char *topic, int *status, char *rid, size_t rid_cap, long *retry_after)
{
    static const char prefix[] = "$dps/registrations/res/";
    if (topic == NULL || rid == NULL || rid_cap == 0 || strncmp(topic, prefix, sizeof prefix - 1) != 0)
        return false;
    const char *p = topic + sizeof prefix - 1;
    size_t n = strcspn(p, "/");
    if (n != 3 || !digits(p, 3) || strncmp(p + 3, "/?", 2) != 0)
        return false;
    int st = (p[0] - '0') * 100 + (p[1] - '0') * 10 + (p[2] - '0');
    if (st < 200 || st > 599)
        return false;
    p += 5;
    bool have_rid = false;
    long ra = -1;
    rid[0] = '\0';
    /* Parameters in any order; unknown ones are the service's business. */
    while (*p != '\0') {
        size_t len = strcspn(p, "&");
        const char *eq = memchr(p, '=', len);
        if (eq == NULL)
            return false;
        size_t klen = (size_t)(eq - p), vlen = len - klen - 1;
        const char *v = eq + 1;
        if (klen == 4 && strncmp(p, "$rid", 4) == 0) {
            if (have_rid || vlen == 0 || vlen >= rid_cap)
                return false;
            for (size_t i = 0; i < vlen; i++)
                if (v[i] == '/' || v[i] == '#' || v[i] == '+' || (unsigned char)v[i] < 0x21)
                    return false;
            memcpy(rid, v, vlen);
            rid[vlen] = '\0';
            have_rid = true;
        } else if (klen == 11 && strncmp(p, "retry-after", 11) == 0) {
            if (!digits(v, vlen) || vlen > 6)
                return false;
            ra = strtol(v, NULL, 10);
        }
        p += len;
        if (*p == '&' && *++p == '\0')
            return false;
    }
    if (!have_rid)
        return false;
    *status = st;
    *retry_after = ra;
    return true;
}

bool dev_mqtt_connack_refuses_credential(int code)
{
    switch (code) {
    case 2:    /* 3.1.1: identifier rejected */
    case 4:    /* 3.1.1: bad user name or password */
    case 5:    /* 3.1.1: not authorized */
    case 0x85: /* 5: client identifier not valid */
    case 0x86: /* 5: bad user name or password */
    case 0x87: /* 5: not authorized */
    case 0x8A: /* 5: banned */
    case 0x8C: /* 5: bad authentication method */
        return true;
    default:
        return false;
    }
}

const char *dev_mqtt_connack_text(int code)
{
    switch (code) {
    case 1: return "unacceptable protocol version";
    case 2: return "client identifier rejected";
    case 3: return "server unavailable";
    case 4: return "bad user name or password";
    case 5: return "not authorized";
    case 0x80: return "unspecified error";
    case 0x84: return "unsupported protocol version";
    case 0x85: return "client identifier not valid";
    case 0x86: return "bad user name or password";
    case 0x87: return "not authorized";
    case 0x88: return "server unavailable";
    case 0x89: return "server busy";
    case 0x8A: return "banned";
    case 0x8C: return "bad authentication method";
    case 0x97: return "quota exceeded";
    default: return "refused";
    }
}

/* ---- libmosquitto callbacks (run inside mosquitto_loop, on this thread) ---- */

static void on_connect(struct mosquitto *m, void *obj, int rc)
{
    (void)m;
    ((mqtt_link *)obj)->connack = rc;
}

static void on_subscribe(struct mosquitto *m, void *obj, int mid, int qos_count, const int *granted)
{
    (void)m;
    mqtt_link *l = obj;
    if (mid != l->sub_mid)
        return;
    l->subscribed = true;
    /* 0x80 in a SUBACK: the filter was refused. */
    l->sub_refused = qos_count < 1 || granted == NULL || granted[0] < 0 || granted[0] > 2;
}

static void on_message(struct mosquitto *m, void *obj, const struct mosquitto_message *msg)
{
    (void)m;
    mqtt_link *l = obj;
    int status;
    long retry_after;
    char rid[DEV_MQTT_RID_MAX];
    /* Only the answer to the request in flight: a late answer to an earlier
     * one (a timed-out request, say) carries another $rid. */
    if (l->have_reply || l->want_rid[0] == '\0' || msg == NULL || msg->topic == NULL ||
        !dev_mqtt_answer_topic_parse(msg->topic, &status, rid, sizeof rid, &retry_after) ||
        strcmp(rid, l->want_rid) != 0)
        return;
    size_t len = msg->payloadlen > 0 ? (size_t)msg->payloadlen : 0;
    if (len > ENR_DPS_RESPONSE_BODY_MAX) {
        l->reply_too_large = true;
        l->have_reply = true;
        return;
    }
    char *body = malloc(len + 1);
    if (body == NULL)
        return; /* the request then times out: a retry may find memory */
    if (len > 0)
        memcpy(body, msg->payload, len);
    body[len] = '\0';
    l->reply.status = status;
    l->reply.retry_after = retry_after;
    l->reply.body = body;
    l->reply.body_len = len;
    l->have_reply = true;
}

/* The certificate check stays OpenSSL's (SSL_VERIFY_PEER with the trust
 * anchor and the host name of the context); this only remembers why it
 * failed, for the message, since libmosquitto frees the SSL on failure. */
static int on_verify(int ok, X509_STORE_CTX *x)
{
    if (!ok) {
        SSL *ssl = X509_STORE_CTX_get_ex_data(x, SSL_get_ex_data_X509_STORE_CTX_idx());
        mqtt_link *l = ssl != NULL ? SSL_CTX_get_app_data(SSL_get_SSL_CTX(ssl)) : NULL;
        if (l != NULL && l->verify_error == X509_V_OK)
            l->verify_error = X509_STORE_CTX_get_error(x);
    }
    return ok;
}

/* ---- the link ---- */

static long long now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void drop_connection(mqtt_link *l)
{
    if (l->connected || l->connack >= 0)
        (void)mosquitto_disconnect(l->m);
    l->connected = false;
    l->connack = -1;
}

/* What a mosquitto error means for the caller (always something a retry may
 * cure, but a certificate that does not verify). */
static enr_code loop_failure(mqtt_link *l, int rc, const char *step, enr_error *err)
{
    int saved = errno;
    drop_connection(l);
    if (l->verify_error != X509_V_OK)
        return enr_error_set(err, ENR_E_VERIFY,
                             "the service at %s is not trusted: %s (check --trust: it must hold the root that "
                             "issued the service's certificate, and the certificate must name %s)",
                             l->url.host, X509_verify_cert_error_string(l->verify_error), l->url.host);
    if (rc == MOSQ_ERR_ERRNO || (rc == MOSQ_ERR_TLS && saved != 0))
        return enr_error_set(err, ENR_E_IO, "%s %s port %u: %s%s", step, l->url.host, l->url.port,
                             rc == MOSQ_ERR_TLS ? "TLS: " : "", strerror(saved));
    return enr_error_set(err, ENR_E_IO, "%s %s port %u: %s", step, l->url.host, l->url.port, mosquitto_strerror(rc));
}

/* A TCP connect that failed (refused, reset, unreachable). libmosquitto
 * (2.0) does not see it while the TLS handshake is pending: its loop keeps
 * returning success on the dead socket, until the deadline. poll() says it
 * at once: a socket in TCP's closed state reports POLLHUP. */
static bool connect_failed(mqtt_link *l, int *why)
{
    int fd = mosquitto_socket(l->m);
    if (fd < 0) {
        *why = ECONNRESET;
        return true;
    }
    struct pollfd p = {fd, POLLOUT, 0};
    if (poll(&p, 1, 0) != 1 || (p.revents & (POLLHUP | POLLERR)) == 0)
        return false;
    int e = 0;
    socklen_t len = sizeof e;
    *why = getsockopt(fd, SOL_SOCKET, SO_ERROR, &e, &len) == 0 && e != 0 ? e : ECONNREFUSED;
    return true;
}

/* Drives the connection until *flag (or the deadline, or an error). */
static enr_code loop_until(mqtt_link *l, const bool *flag, long long deadline, const char *step, enr_error *err)
{
    while (!*flag) {
        long long left = deadline - now_ms();
        if (left <= 0) {
            drop_connection(l);
            return enr_error_set(err, ENR_E_IO, "%s %s port %u: no answer within %d ms", step, l->url.host,
                                 l->url.port, l->timeout_ms);
        }
        errno = 0;
        int rc = mosquitto_loop(l->m, left > LOOP_SLICE_MS ? LOOP_SLICE_MS : (int)left, 1);
        if (*flag)
            break; /* the packet that set it may also have closed the connection */
        if (rc != MOSQ_ERR_SUCCESS)
            return loop_failure(l, rc, step, err);
    }
    return ENR_OK;
}

/* The TCP connect to `host` (a name, or an address by number), the TLS
 * handshake and the CONNACK. *unreachable: the TCP connect itself failed,
 * so another address of the name may do. */
static enr_code connect_to(mqtt_link *l, const char *host, long long deadline, bool *unreachable, enr_error *err)
{
    *unreachable = false;
    l->connack = -1;
    l->verify_error = X509_V_OK;
    errno = 0;
    int rc = mosquitto_connect_async(l->m, host, l->url.port, KEEPALIVE_SECONDS);
    if (rc != MOSQ_ERR_SUCCESS) {
        *unreachable = rc == MOSQ_ERR_ERRNO;
        return loop_failure(l, rc, "cannot connect to", err);
    }
    while (l->connack < 0) {
        long long left = deadline - now_ms();
        if (left <= 0) {
            drop_connection(l);
            return enr_error_set(err, ENR_E_IO, "cannot connect to %s port %u: timed out after %d ms", l->url.host,
                                 l->url.port, l->timeout_ms);
        }
        errno = 0;
        rc = mosquitto_loop(l->m, left > LOOP_SLICE_MS ? LOOP_SLICE_MS : (int)left, 1);
        if (l->connack >= 0)
            break;
        if (rc != MOSQ_ERR_SUCCESS)
            return loop_failure(l, rc, "cannot connect to", err);
        int why = 0;
        if (connect_failed(l, &why)) {
            drop_connection(l);
            *unreachable = true;
            return enr_error_set(err, ENR_E_IO, "cannot connect to %s port %u: %s", l->url.host, l->url.port,
                                 strerror(why));
        }
    }
    return ENR_OK;
}

/* libmosquitto connects to the first address a name resolves to and no
 * other; a name with several (localhost: ::1, then 127.0.0.1) must work as
 * it does over HTTPS. So the name is tried first (libmosquitto's own path,
 * its SNI), and when that address cannot be reached, the name's other
 * addresses by number. The TLS context checks the URL's host name either
 * way (enr_tls_expect_host). */
static enr_code connect_any(mqtt_link *l, long long deadline, enr_error *err)
{
    bool unreachable;
    enr_code rc = connect_to(l, l->url.host, deadline, &unreachable, err);
    if (rc == ENR_OK || !unreachable || l->url.host_is_ip)
        return rc;
    char port[8];
    snprintf(port, sizeof port, "%u", l->url.port);
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM}, *res = NULL;
    if (getaddrinfo(l->url.host, port, &hints, &res) != 0)
        return rc; /* the first attempt's error says more */
    /* The first address is the one libmosquitto just tried. */
    for (struct addrinfo *a = res ? res->ai_next : NULL; a != NULL && unreachable; a = a->ai_next) {
        char number[NI_MAXHOST];
        if (getnameinfo(a->ai_addr, a->ai_addrlen, number, sizeof number, NULL, 0, NI_NUMERICHOST) == 0)
            rc = connect_to(l, number, deadline, &unreachable, err);
    }
    freeaddrinfo(res);
    return rc;
}

static enr_code connect_link(mqtt_link *l, const char *sas_token, long long deadline, enr_error *err)
{
    l->subscribed = l->sub_refused = false;
    /* libmosquitto keeps its own copy of the password until the next call
     * or mosquitto_destroy. */
    if (mosquitto_username_pw_set(l->m, l->username, sas_token) != MOSQ_ERR_SUCCESS)
        return enr_error_set(err, ENR_E_NOMEM, "out of memory");
    enr_code erc = connect_any(l, deadline, err);
    if (erc != ENR_OK)
        return erc;
    if (l->connack != 0) {
        int code = l->connack;
        drop_connection(l);
        /* A refused credential stays refused: the caller must not retry it
         * (as with an HTTP 401), nor fall into endless reconnects. */
        if (dev_mqtt_connack_refuses_credential(code))
            return enr_error_refuse(err, ENR_R_AUTH_REFUSED,
                                    "the service at %s refused the device's credential at MQTT CONNECT: %s "
                                    "(CONNACK %d)",
                                    l->url.host, dev_mqtt_connack_text(code), code);
        return enr_error_set(err, ENR_E_IO, "the service at %s refused the MQTT connection: %s (CONNACK %d)",
                             l->url.host, dev_mqtt_connack_text(code), code);
    }
    int rc = mosquitto_subscribe(l->m, &l->sub_mid, RESPONSE_FILTER, 1);
    if (rc != MOSQ_ERR_SUCCESS)
        return loop_failure(l, rc, "subscribing at", err);
    erc = loop_until(l, &l->subscribed, deadline, "subscribing at", err);
    if (erc != ENR_OK)
        return erc;
    if (l->sub_refused) {
        drop_connection(l);
        return enr_error_set(err, ENR_E_IO, "the service at %s refused the subscription to %s", l->url.host,
                             RESPONSE_FILTER);
    }
    l->connected = true;
    return ENR_OK;
}

static enr_code mqtt_send(dev_link *base, const char *operation_id, const char *body, const char *sas_token,
                          dev_reply *out, enr_error *err)
{
    mqtt_link *l = (mqtt_link *)base;
    long long deadline = now_ms() + l->timeout_ms;
    /* A connection kept from the previous request may have been closed by
     * the service while we waited (its keepalive): find out without waiting. */
    if (l->connected && mosquitto_loop(l->m, 0, 1) != MOSQ_ERR_SUCCESS)
        drop_connection(l);
    enr_code rc = ENR_OK;
    if (!l->connected && (rc = connect_link(l, sas_token, deadline, err)) != ENR_OK)
        return rc;
    bool poll = operation_id != NULL && operation_id[0] != '\0';
    char topic[256];
    snprintf(l->want_rid, sizeof l->want_rid, "%lu", ++l->next_rid);
    int n = poll ? snprintf(topic, sizeof topic, "$dps/registrations/GET/iotdps-get-operationstatus/?$rid=%s&operationId=%s",
                            l->want_rid, operation_id)
                 : snprintf(topic, sizeof topic, "$dps/registrations/PUT/iotdps-register/?$rid=%s", l->want_rid);
    if (n < 0 || (size_t)n >= sizeof topic)
        return enr_error_set(err, ENR_E_USAGE, "operation id too long");
    dev_reply_free(&l->reply);
    l->have_reply = l->reply_too_large = false;
    /* Register at QoS 1 with the JSON body; poll at QoS 0 with an empty
     * payload, as the C SDK does. */
    size_t len = !poll && body != NULL ? strlen(body) : 0;
    errno = 0;
    int mrc = mosquitto_publish(l->m, NULL, topic, (int)len, len > 0 ? body : NULL, poll ? 0 : 1, false);
    if (mrc != MOSQ_ERR_SUCCESS) {
        l->want_rid[0] = '\0';
        return loop_failure(l, mrc, "sending to", err);
    }
    rc = loop_until(l, &l->have_reply, deadline, "waiting for the answer from", err);
    l->want_rid[0] = '\0';
    if (rc == ENR_OK && l->reply_too_large)
        rc = enr_error_set(err, ENR_E_PARSE, "the answer from %s is larger than %u bytes", l->url.host,
                           (unsigned)ENR_DPS_RESPONSE_BODY_MAX);
    if (rc != ENR_OK) {
        dev_reply_free(&l->reply);
        return rc;
    }
    *out = l->reply;
    memset(&l->reply, 0, sizeof l->reply);
    return ENR_OK;
}

static void mqtt_destroy(dev_link *base)
{
    mqtt_link *l = (mqtt_link *)base;
    if (l->m != NULL) {
        drop_connection(l);
        mosquitto_destroy(l->m); /* drops its reference to ctx */
    }
    SSL_CTX_free(l->ctx);        /* before the key that owns its library context */
    enr_tls_key_free(l->tls_key);
    dev_reply_free(&l->reply);
    free(l->username);
    free(l);
}

static pthread_once_t lib_once = PTHREAD_ONCE_INIT;
static int lib_rc = MOSQ_ERR_UNKNOWN;

static void lib_init(void)
{
    lib_rc = mosquitto_lib_init();
}

enr_code dev_link_mqtt_new(const dev_link_options *o, dev_link **out, enr_error *err)
{
    *out = NULL;
    (void)pthread_once(&lib_once, lib_init);
    if (lib_rc != MOSQ_ERR_SUCCESS)
        return enr_error_set(err, ENR_E_INTERNAL, "libmosquitto: %s", mosquitto_strerror(lib_rc));
    mqtt_link *l = calloc(1, sizeof *l);
    if (l == NULL)
        return enr_error_set(err, ENR_E_NOMEM, "out of memory");
    l->base.send = mqtt_send;
    l->base.destroy = mqtt_destroy;
    l->connack = -1;
    l->timeout_ms = o->timeout_ms > 0 ? o->timeout_ms : 30000;
    enr_code rc = enr_url_parse_scheme(o->url, "mqtts", DEV_MQTT_DEFAULT_PORT, &l->url, err);
    if (rc == ENR_OK && l->url.base_path[0] != '\0')
        rc = enr_error_set(err, ENR_E_USAGE, "URL '%.200s': an MQTT URL has no path (give mqtts://host[:port])",
                           o->url);
    if (rc != ENR_OK)
        goto fail;
    /* The user name DPS expects; ClientVersion is a URL-encoded user agent. */
    size_t ulen = strlen(o->id_scope) + strlen(o->registration_id) + strlen(o->api_version) + 96;
    if ((l->username = malloc(ulen)) == NULL) {
        rc = enr_error_set(err, ENR_E_NOMEM, "out of memory");
        goto fail;
    }
    snprintf(l->username, ulen, "%s/registrations/%s/api-version=%s&ClientVersion=enroll%%2F%s", o->id_scope,
             o->registration_id, o->api_version, ENROLL_VERSION);
    if ((rc = enr_tls_client_context_new(&o->tls, &l->ctx, &l->tls_key, err)) != ENR_OK)
        goto fail;
    if ((rc = enr_tls_expect_host(SSL_CTX_get0_param(l->ctx), l->url.host, l->url.host_is_ip, err)) != ENR_OK)
        goto fail;
    SSL_CTX_set_verify(l->ctx, SSL_VERIFY_PEER, on_verify);
    SSL_CTX_set_app_data(l->ctx, l);
    /* A clean session: DPS keeps none, and nothing of an earlier one is wanted. */
    l->m = mosquitto_new(o->registration_id, true, l);
    if (l->m == NULL) {
        rc = enr_error_set(err, ENR_E_NOMEM, "cannot make an MQTT client: %s", strerror(errno));
        goto fail;
    }
    if (mosquitto_int_option(l->m, MOSQ_OPT_PROTOCOL_VERSION, MQTT_PROTOCOL_V311) != MOSQ_ERR_SUCCESS ||
        mosquitto_int_option(l->m, MOSQ_OPT_SSL_CTX_WITH_DEFAULTS, 0) != MOSQ_ERR_SUCCESS ||
        mosquitto_void_option(l->m, MOSQ_OPT_SSL_CTX, l->ctx) != MOSQ_ERR_SUCCESS) {
        rc = enr_error_set(err, ENR_E_INTERNAL, "libmosquitto refused the TLS context (built without TLS?)");
        goto fail;
    }
    mosquitto_connect_callback_set(l->m, on_connect);
    mosquitto_subscribe_callback_set(l->m, on_subscribe);
    mosquitto_message_callback_set(l->m, on_message);
    *out = &l->base;
    return ENR_OK;
fail:
    mqtt_destroy(&l->base);
    return rc;
}
