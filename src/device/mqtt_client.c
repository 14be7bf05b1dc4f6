/* One MQTT client connection over our TLS on libmosquitto (mqtt_client.h),
 * shared by DPS over MQTT (link_mqtt.c) and AWS fleet provisioning
 * (link_aws.c).
 *
 * The TLS context is ours (enr_tls_client_context_new), handed to
 * libmosquitto without its defaults, with the host name check set on it so
 * that every SSL made from it checks the name as HTTPS does. libmosquitto
 * is driven synchronously by mosquitto_loop against one deadline per step:
 * no background thread. */
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
#include "device/mqtt_client.h"

#define KEEPALIVE_SECONDS 60
#define LOOP_SLICE_MS 200

struct dev_mqtt_conn {
    struct mosquitto *m;
    SSL_CTX *ctx;
    enr_tls_key *tls_key; /* owns ctx's library context with a token key */
    enr_url url;
    int timeout_ms;
    bool connected;    /* CONNACK accepted and the filters subscribed */
    int connack;       /* -1: none yet this connection */
    int sub_mid;       /* the SUBSCRIBE awaiting its SUBACK */
    size_t sub_count;  /* filters in it */
    bool subscribed, sub_refused;
    long verify_error; /* the first certificate error of the handshake */
    unsigned long serial;
    dev_mqtt_message_fn on_message;
    void *ctx_user;
};

long long dev_mqtt_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

const char *dev_mqtt_conn_host(const dev_mqtt_conn *c)
{
    return c->url.host;
}

unsigned long dev_mqtt_conn_serial(const dev_mqtt_conn *c)
{
    return c->serial;
}

/* ---- libmosquitto callbacks (run inside mosquitto_loop, on this thread) ---- */

static void on_connect(struct mosquitto *m, void *obj, int rc)
{
    (void)m;
    ((dev_mqtt_conn *)obj)->connack = rc;
}

static void on_subscribe(struct mosquitto *m, void *obj, int mid, int qos_count, const int *granted)
{
    (void)m;
    dev_mqtt_conn *c = obj;
    if (mid != c->sub_mid)
        return;
    c->subscribed = true;
    /* 0x80 in a SUBACK: that filter was refused. */
    c->sub_refused = qos_count < 1 || (size_t)qos_count != c->sub_count || granted == NULL;
    for (int i = 0; !c->sub_refused && i < qos_count; i++)
        c->sub_refused = granted[i] < 0 || granted[i] > 2;
}

static void on_message(struct mosquitto *m, void *obj, const struct mosquitto_message *msg)
{
    (void)m;
    dev_mqtt_conn *c = obj;
    if (c->on_message == NULL || msg == NULL || msg->topic == NULL)
        return;
    c->on_message(c->ctx_user, msg->topic, msg->payload, msg->payloadlen > 0 ? (size_t)msg->payloadlen : 0);
}

/* The certificate check stays OpenSSL's (SSL_VERIFY_PEER with the trust
 * anchor and the host name of the context); this only remembers why it
 * failed, for the message, since libmosquitto frees the SSL on failure. */
static int on_verify(int ok, X509_STORE_CTX *x)
{
    if (!ok) {
        SSL *ssl = X509_STORE_CTX_get_ex_data(x, SSL_get_ex_data_X509_STORE_CTX_idx());
        dev_mqtt_conn *c = ssl != NULL ? SSL_CTX_get_app_data(SSL_get_SSL_CTX(ssl)) : NULL;
        if (c != NULL && c->verify_error == X509_V_OK)
            c->verify_error = X509_STORE_CTX_get_error(x);
    }
    return ok;
}

/* ---- the connection ---- */

void dev_mqtt_conn_drop(dev_mqtt_conn *c)
{
    if (c->connected || c->connack >= 0)
        (void)mosquitto_disconnect(c->m);
    c->connected = false;
    c->connack = -1;
}

/* What a mosquitto error means for the caller (always something a retry may
 * cure, but a certificate that does not verify). */
static enr_code loop_failure(dev_mqtt_conn *c, int rc, const char *step, enr_error *err)
{
    int saved = errno;
    dev_mqtt_conn_drop(c);
    if (c->verify_error != X509_V_OK)
        return enr_error_set(err, ENR_E_VERIFY,
                             "the service at %s is not trusted: %s (check --trust: it must hold the root that "
                             "issued the service's certificate, and the certificate must name %s)",
                             c->url.host, X509_verify_cert_error_string(c->verify_error), c->url.host);
    if (rc == MOSQ_ERR_ERRNO || (rc == MOSQ_ERR_TLS && saved != 0))
        return enr_error_set(err, ENR_E_IO, "%s %s port %u: %s%s", step, c->url.host, c->url.port,
                             rc == MOSQ_ERR_TLS ? "TLS: " : "", strerror(saved));
    return enr_error_set(err, ENR_E_IO, "%s %s port %u: %s", step, c->url.host, c->url.port, mosquitto_strerror(rc));
}

/* A TCP connect that failed (refused, reset, unreachable). libmosquitto
 * (2.0) does not see it while the TLS handshake is pending: its loop keeps
 * returning success on the dead socket, until the deadline. poll() says it
 * at once: a socket in TCP's closed state reports POLLHUP. */
static bool connect_failed(dev_mqtt_conn *c, int *why)
{
    int fd = mosquitto_socket(c->m);
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

enr_code dev_mqtt_conn_wait(dev_mqtt_conn *c, const bool *flag, long long deadline, const char *step,
                            enr_error *err)
{
    while (!*flag) {
        long long left = deadline - dev_mqtt_now_ms();
        if (left <= 0) {
            dev_mqtt_conn_drop(c);
            return enr_error_set(err, ENR_E_IO, "%s %s port %u: no answer within %d ms", step, c->url.host,
                                 c->url.port, c->timeout_ms);
        }
        errno = 0;
        int rc = mosquitto_loop(c->m, left > LOOP_SLICE_MS ? LOOP_SLICE_MS : (int)left, 1);
        if (*flag)
            break; /* the packet that set it may also have closed the connection */
        if (rc != MOSQ_ERR_SUCCESS)
            return loop_failure(c, rc, step, err);
    }
    return ENR_OK;
}

/* The TCP connect to `host` (a name, or an address by number), the TLS
 * handshake and the CONNACK. *unreachable: the TCP connect itself failed,
 * so another address of the name may do. */
static enr_code connect_to(dev_mqtt_conn *c, const char *host, long long deadline, bool *unreachable,
                           enr_error *err)
{
    *unreachable = false;
    c->connack = -1;
    c->verify_error = X509_V_OK;
    errno = 0;
    int rc = mosquitto_connect_async(c->m, host, c->url.port, KEEPALIVE_SECONDS);
    if (rc != MOSQ_ERR_SUCCESS) {
        *unreachable = rc == MOSQ_ERR_ERRNO;
        return loop_failure(c, rc, "cannot connect to", err);
    }
    while (c->connack < 0) {
        long long left = deadline - dev_mqtt_now_ms();
        if (left <= 0) {
            dev_mqtt_conn_drop(c);
            return enr_error_set(err, ENR_E_IO, "cannot connect to %s port %u: timed out after %d ms", c->url.host,
                                 c->url.port, c->timeout_ms);
        }
        errno = 0;
        rc = mosquitto_loop(c->m, left > LOOP_SLICE_MS ? LOOP_SLICE_MS : (int)left, 1);
        if (c->connack >= 0)
            break;
        if (rc != MOSQ_ERR_SUCCESS)
            return loop_failure(c, rc, "cannot connect to", err);
        int why = 0;
        if (connect_failed(c, &why)) {
            dev_mqtt_conn_drop(c);
            *unreachable = true;
            return enr_error_set(err, ENR_E_IO, "cannot connect to %s port %u: %s", c->url.host, c->url.port,
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
static enr_code connect_any(dev_mqtt_conn *c, long long deadline, enr_error *err)
{
    bool unreachable;
    enr_code rc = connect_to(c, c->url.host, deadline, &unreachable, err);
    if (rc == ENR_OK || !unreachable || c->url.host_is_ip)
        return rc;
    char port[8];
    snprintf(port, sizeof port, "%u", c->url.port);
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM}, *res = NULL;
    if (getaddrinfo(c->url.host, port, &hints, &res) != 0)
        return rc; /* the first attempt's error says more */
    /* The first address is the one libmosquitto just tried. */
    for (struct addrinfo *a = res ? res->ai_next : NULL; a != NULL && unreachable; a = a->ai_next) {
        char number[NI_MAXHOST];
        if (getnameinfo(a->ai_addr, a->ai_addrlen, number, sizeof number, NULL, 0, NI_NUMERICHOST) == 0)
            rc = connect_to(c, number, deadline, &unreachable, err);
    }
    freeaddrinfo(res);
    return rc;
}

bool dev_mqtt_conn_alive(dev_mqtt_conn *c)
{
    /* A connection kept from an earlier request may have been closed by the
     * service while we waited (its keepalive): find out without waiting. */
    if (c->connected && mosquitto_loop(c->m, 0, 1) != MOSQ_ERR_SUCCESS)
        dev_mqtt_conn_drop(c);
    return c->connected;
}

enr_code dev_mqtt_conn_open(dev_mqtt_conn *c, const char *username, const char *password,
                            const char *const *filters, size_t nfilters, long long deadline, enr_error *err)
{
    if (c->connected)
        dev_mqtt_conn_drop(c);
    c->subscribed = c->sub_refused = false;
    /* libmosquitto keeps its own copy of the password until the next call
     * or mosquitto_destroy. */
    if (mosquitto_username_pw_set(c->m, username, password) != MOSQ_ERR_SUCCESS)
        return enr_error_set(err, ENR_E_NOMEM, "out of memory");
    enr_code erc = connect_any(c, deadline, err);
    if (erc != ENR_OK)
        return erc;
    if (c->connack != 0) {
        int code = c->connack;
        dev_mqtt_conn_drop(c);
        /* A refused credential stays refused: the caller must not retry it
         * (as with an HTTP 401), nor fall into endless reconnects. */
        if (dev_mqtt_connack_refuses_credential(code))
            return enr_error_refuse(err, ENR_R_AUTH_REFUSED,
                                    "the service at %s refused the device's credential at MQTT CONNECT: %s "
                                    "(CONNACK %d)",
                                    c->url.host, dev_mqtt_connack_text(code), code);
        return enr_error_set(err, ENR_E_IO, "the service at %s refused the MQTT connection: %s (CONNACK %d)",
                             c->url.host, dev_mqtt_connack_text(code), code);
    }
    c->serial++;
    if (nfilters > 0) {
        c->sub_count = nfilters;
        int rc = mosquitto_subscribe_multiple(c->m, &c->sub_mid, (int)nfilters, (char *const *)filters, 1, 0, NULL);
        if (rc != MOSQ_ERR_SUCCESS)
            return loop_failure(c, rc, "subscribing at", err);
        erc = dev_mqtt_conn_wait(c, &c->subscribed, deadline, "subscribing at", err);
        if (erc != ENR_OK)
            return erc;
        if (c->sub_refused) {
            dev_mqtt_conn_drop(c);
            return enr_error_set(err, ENR_E_IO, "the service at %s refused the subscription to %s%s", c->url.host,
                                 filters[0], nfilters > 1 ? " and others" : "");
        }
    }
    c->connected = true;
    return ENR_OK;
}

enr_code dev_mqtt_conn_publish(dev_mqtt_conn *c, const char *topic, const void *payload, size_t len, int qos,
                               enr_error *err)
{
    errno = 0;
    int rc = mosquitto_publish(c->m, NULL, topic, (int)len, len > 0 ? payload : NULL, qos, false);
    if (rc != MOSQ_ERR_SUCCESS)
        return loop_failure(c, rc, "sending to", err);
    return ENR_OK;
}

void dev_mqtt_conn_free(dev_mqtt_conn *c)
{
    if (c == NULL)
        return;
    if (c->m != NULL) {
        dev_mqtt_conn_drop(c);
        mosquitto_destroy(c->m); /* drops its reference to ctx */
    }
    SSL_CTX_free(c->ctx);        /* before the key that owns its library context */
    enr_tls_key_free(c->tls_key);
    free(c);
}

static pthread_once_t lib_once = PTHREAD_ONCE_INIT;
static int lib_rc = MOSQ_ERR_UNKNOWN;

static void lib_init(void)
{
    lib_rc = mosquitto_lib_init();
}

enr_code dev_mqtt_conn_new(const dev_mqtt_conn_options *o, dev_mqtt_conn **out, enr_error *err)
{
    *out = NULL;
    (void)pthread_once(&lib_once, lib_init);
    if (lib_rc != MOSQ_ERR_SUCCESS)
        return enr_error_set(err, ENR_E_INTERNAL, "libmosquitto: %s", mosquitto_strerror(lib_rc));
    dev_mqtt_conn *c = calloc(1, sizeof *c);
    if (c == NULL)
        return enr_error_set(err, ENR_E_NOMEM, "out of memory");
    c->connack = -1;
    c->timeout_ms = o->timeout_ms > 0 ? o->timeout_ms : 30000;
    c->on_message = o->on_message;
    c->ctx_user = o->ctx;
    enr_code rc = enr_url_parse_scheme(o->url, "mqtts", DEV_MQTT_DEFAULT_PORT, &c->url, err);
    if (rc == ENR_OK && c->url.base_path[0] != '\0')
        rc = enr_error_set(err, ENR_E_USAGE, "URL '%.200s': an MQTT URL has no path (give mqtts://host[:port])",
                           o->url);
    if (rc != ENR_OK)
        goto fail;
    if ((rc = enr_tls_client_context_new(&o->tls, &c->ctx, &c->tls_key, err)) != ENR_OK)
        goto fail;
    if ((rc = enr_tls_expect_host(SSL_CTX_get0_param(c->ctx), c->url.host, c->url.host_is_ip, err)) != ENR_OK)
        goto fail;
    SSL_CTX_set_verify(c->ctx, SSL_VERIFY_PEER, on_verify);
    SSL_CTX_set_app_data(c->ctx, c);
    /* A clean session: neither service keeps one, and nothing of an earlier
     * one is wanted. */
    c->m = mosquitto_new(o->client_id, true, c);
    if (c->m == NULL) {
        rc = enr_error_set(err, ENR_E_NOMEM, "cannot make an MQTT client: %s", strerror(errno));
        goto fail;
    }
    if (mosquitto_int_option(c->m, MOSQ_OPT_PROTOCOL_VERSION, MQTT_PROTOCOL_V311) != MOSQ_ERR_SUCCESS ||
        mosquitto_int_option(c->m, MOSQ_OPT_SSL_CTX_WITH_DEFAULTS, 0) != MOSQ_ERR_SUCCESS ||
        mosquitto_void_option(c->m, MOSQ_OPT_SSL_CTX, c->ctx) != MOSQ_ERR_SUCCESS) {
        rc = enr_error_set(err, ENR_E_INTERNAL, "libmosquitto refused the TLS context (built without TLS?)");
        goto fail;
    }
    mosquitto_connect_callback_set(c->m, on_connect);
    mosquitto_subscribe_callback_set(c->m, on_subscribe);
    mosquitto_message_callback_set(c->m, on_message);
    *out = c;
    return ENR_OK;
fail:
    dev_mqtt_conn_free(c);
    return rc;
}
