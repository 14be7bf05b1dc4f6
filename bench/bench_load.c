/* Load generator for enrolld's DPS registration API over HTTPS.
 *
 * Every device is made before the clock starts: an EC P-256 key, a CSR with
 * CN = registration id (base64 DER, built by libenroll), a SAS token derived
 * from the group key, and the whole HTTP/1.1 request. Then N client threads
 * (one blocking OpenSSL connection each) send
 *     PUT /{scope}/registrations/{id}/register?api-version=2025-07-01-preview
 * either over one keep-alive connection per thread (--mode keepalive) or over
 * a new TLS connection per registration (--mode handshake, optionally with a
 * client certificate: a fresh mTLS handshake per device; or with --resume,
 * no client certificate, each thread's connections resuming its TLS 1.2
 * session and the device authenticating with its SAS token, exactly as
 * --mode mqtt's connection per device does: the like-for-like HTTPS figure
 * beside DPS over MQTT). An answer counts as
 * a registration only when it is HTTP 200 with status "assigned"; anything
 * else is counted as an error, by kind.
 *
 * --mode cfssl drives the reference issuer instead: the same devices' CSRs
 * (PEM), each POSTed to `cfssl serve`'s /api/v1/cfssl/sign over one plain
 * HTTP/1.1 keep-alive connection per thread (cfssl serve has no TLS here),
 * the rest as --mode keepalive. An answer counts when it is HTTP 200 with
 * "success":true and a PEM certificate in result.certificate.
 *
 * Printed beside the machine's limits, measured here:
 *  - crypto: `openssl speed ecdsap256` on one core, 1 / (1/sign + 1/verify)
 *    (one CSR verify and one certificate signature per registration), times
 *    the number of cores;
 *  - TLS: full handshakes/s of a bare OpenSSL server on this machine, twice:
 *    `openssl s_server` timed by `openssl s_time -new` (one core each), and
 *    an in-process bare OpenSSL server with the same worker count answering
 *    a canned response, driven by this same client with the same
 *    connections (the like-for-like figure for --mode handshake).
 *
 * --received FILE writes the leaf serial of every certificate received (as
 * `openssl x509 -serial` prints it: upper-case hex, whole octets), one per
 * line, flushed as it arrives: the crash test compares it with the store. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "bench/ceiling.h"
#include "enroll/csr.h"
#include "enroll/dps.h"
#include "enroll/mqtt.h"
#include "enroll/sas.h"
#include "enroll/signer.h"

#define API_VERSION "2025-07-01-preview"
#define RESPONSE_MAX (ENR_DPS_RESPONSE_BODY_MAX + 16384)
#define IO_TIMEOUT_SECONDS 15
#define ERROR_REPORTS_MAX 5

/* ---- options ------------------------------------------------------------ */

typedef enum { MODE_KEEPALIVE, MODE_HANDSHAKE, MODE_MQTT, MODE_CFSSL } load_mode;

static struct {
    const char *host;
    int port;
    const char *scope;
    const char *group_key;
    const char *ca;
    int connections;
    double seconds;
    long requests;
    long devices;
    long keys;
    load_mode mode;
    const char *client_cert;
    const char *client_key;
    const char *received;
    const char *keep_cert; /* --mode cfssl: the first certificate received, PEM */
    const char *id_prefix;
    const char *server_cert; /* for the bare-server ceilings */
    const char *server_key;
    int bare_workers;
    double bare_seconds;
    bool ceiling;
    bool check_answers;
    bool mqtt_full_tls;   /* --mqtt-tls full: a full handshake per device (else TLS 1.2 resumption) */
    bool mqtt_pipeline;   /* CONNECT, SUBSCRIBE and PUBLISH in one write, not waiting for CONNACK/SUBACK */
    bool https_resume;    /* --mode handshake --resume: each thread's new connections resume its TLS 1.2 session */
} opt = {
    .host = "127.0.0.1",
    .connections = 64,
    .mode = MODE_KEEPALIVE,
    .bare_workers = 2,
    .bare_seconds = 5,
    .ceiling = true,
};

static void usage(FILE *out)
{
    fprintf(out,
            "usage: bench_load --port P --scope S --group-key B64 --ca ROOT.pem\n"
            "                  [--host 127.0.0.1] [--connections N] (--seconds T | --requests M)\n"
            "                  [--mode keepalive|handshake|mqtt] [--client-cert F --client-key F] [--resume]\n"
            "                  [--mqtt-tls resume|full] [--mqtt-pipeline]\n"
            "                  [--devices D] [--keys K] [--id-prefix P] [--received FILE] [--check]\n"
            "                  [--server-cert F --server-key F [--bare-workers W] [--bare-seconds T]]\n"
            "                  [--no-ceiling]\n"
            "       bench_load --port P --mode cfssl [--keep-cert FILE] [the options above but TLS's and DPS's]\n"
            "  --devices D      distinct devices made before the clock starts (default: --requests,\n"
            "                   else 20000); the load cycles through them (a repeat is a renewal)\n"
            "  --keys K         distinct EC P-256 device keys (default: D, at most 2000); device i\n"
            "                   signs its own CSR (CN = its id) with key i %% K. Opening a key file\n"
            "                   costs about 1 ms in OpenSSL 3.0's decoders, a CSR about 0.1 ms\n"
            "  --received FILE  write every leaf serial received (upper-case hex), one per line\n"
            "  --check          read every answer with enr_dps_register_response_parse (also\n"
            "                   with --received); otherwise a 200 holding \"status\":\"assigned\"\n"
            "  --server-cert/--server-key  enrolld's TLS certificate and key: measure the bare\n"
            "                   OpenSSL handshake rate (s_server + s_time, and an in-process server\n"
            "                   with --bare-workers threads driven by this client)\n"
            "  --no-ceiling     skip openssl speed and the bare-server measurements\n"
            "  --mode mqtt      DPS over MQTT 3.1.1 on --port (enrolld's \"mqtt\" listener): one TLS\n"
            "                   connection per device (a CONNECT authenticates one registration id):\n"
            "                   CONNECT (SAS token), SUBSCRIBE $dps/registrations/res/#, PUBLISH QoS 1 the\n"
            "                   register body, read the answer (a 202 is polled after its retry-after),\n"
            "                   DISCONNECT\n"
            "  --mqtt-tls resume  (default) each thread's connections resume its first TLS 1.2 session\n"
            "                   (no public-key work after the first: TLS cost amortised, as with\n"
            "                   keep-alive); full: a full TLS handshake per device (as --mode handshake)\n"
            "  --resume         with --mode handshake: each thread's new connections resume its first\n"
            "                   TLS 1.2 session, as --mqtt-tls resume (the HTTPS counterpart of --mode\n"
            "                   mqtt: a connection per device, SAS token, no client certificate)\n"
            "  --mqtt-pipeline  send CONNECT, SUBSCRIBE and PUBLISH at once (MQTT allows it); by default\n"
            "                   wait for CONNACK and SUBACK as the DPS SDKs do\n"
            "  --mode cfssl     the same devices' CSRs (PEM) to `cfssl serve` on --port: POST\n"
            "                   /api/v1/cfssl/sign {\"certificate_request\": PEM}, plain HTTP/1.1 keep-alive\n"
            "                   (no TLS); counted when \"success\":true with a PEM certificate (--check: decoded)\n"
            "  --keep-cert FILE with --mode cfssl: write the first certificate received (PEM) to FILE\n");
}

static bool parse_options(int argc, char **argv)
{
    enum { O_HOST = 1, O_PORT, O_SCOPE, O_GROUP_KEY, O_CA, O_CONN, O_SECONDS, O_REQUESTS, O_DEVICES, O_MODE,
           O_CCERT, O_CKEY, O_RECEIVED, O_PREFIX, O_SCERT, O_SKEY, O_BWORKERS, O_BSECONDS, O_NOCEIL,
           O_CHECK, O_KEYS, O_MQTT_TLS, O_MQTT_PIPELINE, O_RESUME, O_KEEP_CERT, O_HELP };
    static const struct option longs[] = {
        {"host", required_argument, NULL, O_HOST},
        {"port", required_argument, NULL, O_PORT},
        {"scope", required_argument, NULL, O_SCOPE},
        {"group-key", required_argument, NULL, O_GROUP_KEY},
        {"ca", required_argument, NULL, O_CA},
        {"connections", required_argument, NULL, O_CONN},
        {"seconds", required_argument, NULL, O_SECONDS},
        {"requests", required_argument, NULL, O_REQUESTS},
        {"devices", required_argument, NULL, O_DEVICES},
        {"mode", required_argument, NULL, O_MODE},
        {"client-cert", required_argument, NULL, O_CCERT},
        {"client-key", required_argument, NULL, O_CKEY},
        {"received", required_argument, NULL, O_RECEIVED},
        {"id-prefix", required_argument, NULL, O_PREFIX},
        {"server-cert", required_argument, NULL, O_SCERT},
        {"server-key", required_argument, NULL, O_SKEY},
        {"bare-workers", required_argument, NULL, O_BWORKERS},
        {"bare-seconds", required_argument, NULL, O_BSECONDS},
        {"no-ceiling", no_argument, NULL, O_NOCEIL},
        {"check", no_argument, NULL, O_CHECK},
        {"keys", required_argument, NULL, O_KEYS},
        {"mqtt-tls", required_argument, NULL, O_MQTT_TLS},
        {"mqtt-pipeline", no_argument, NULL, O_MQTT_PIPELINE},
        {"resume", no_argument, NULL, O_RESUME},
        {"keep-cert", required_argument, NULL, O_KEEP_CERT},
        {"help", no_argument, NULL, O_HELP},
        {NULL, 0, NULL, 0},
    };
    int c;
    while ((c = getopt_long(argc, argv, "", longs, NULL)) != -1) {
        switch (c) {
        case O_HOST: opt.host = optarg; break;
        case O_PORT: opt.port = atoi(optarg); break;
        case O_SCOPE: opt.scope = optarg; break;
        case O_GROUP_KEY: opt.group_key = optarg; break;
        case O_CA: opt.ca = optarg; break;
        case O_CONN: opt.connections = atoi(optarg); break;
        case O_SECONDS: opt.seconds = atof(optarg); break;
        case O_REQUESTS: opt.requests = atol(optarg); break;
        case O_DEVICES: opt.devices = atol(optarg); break;
        case O_MODE:
            if (strcmp(optarg, "keepalive") == 0)
                opt.mode = MODE_KEEPALIVE;
            else if (strcmp(optarg, "handshake") == 0)
                opt.mode = MODE_HANDSHAKE;
            else if (strcmp(optarg, "mqtt") == 0)
                opt.mode = MODE_MQTT;
            else if (strcmp(optarg, "cfssl") == 0)
                opt.mode = MODE_CFSSL;
            else {
                fprintf(stderr, "bench_load: --mode is keepalive, handshake, mqtt or cfssl\n");
                return false;
            }
            break;
        case O_CCERT: opt.client_cert = optarg; break;
        case O_CKEY: opt.client_key = optarg; break;
        case O_RECEIVED: opt.received = optarg; break;
        case O_PREFIX: opt.id_prefix = optarg; break;
        case O_SCERT: opt.server_cert = optarg; break;
        case O_SKEY: opt.server_key = optarg; break;
        case O_BWORKERS: opt.bare_workers = atoi(optarg); break;
        case O_BSECONDS: opt.bare_seconds = atof(optarg); break;
        case O_NOCEIL: opt.ceiling = false; break;
        case O_CHECK: opt.check_answers = true; break;
        case O_KEYS: opt.keys = atol(optarg); break;
        case O_MQTT_TLS:
            if (strcmp(optarg, "resume") == 0)
                opt.mqtt_full_tls = false;
            else if (strcmp(optarg, "full") == 0)
                opt.mqtt_full_tls = true;
            else {
                fprintf(stderr, "bench_load: --mqtt-tls is resume or full\n");
                return false;
            }
            break;
        case O_MQTT_PIPELINE: opt.mqtt_pipeline = true; break;
        case O_RESUME: opt.https_resume = true; break;
        case O_KEEP_CERT: opt.keep_cert = optarg; break;
        case O_HELP: usage(stdout); exit(0);
        default: usage(stderr); return false;
        }
    }
    bool dps = opt.mode != MODE_CFSSL; /* cfssl: no TLS, no SAS token */
    if (optind != argc || opt.port <= 0 || opt.port > 65535 || (dps && (!opt.scope || !opt.group_key || !opt.ca))) {
        usage(stderr);
        return false;
    }
    if ((opt.seconds > 0) == (opt.requests > 0)) {
        fprintf(stderr, "bench_load: give exactly one of --seconds T or --requests M\n");
        return false;
    }
    if (opt.seconds > 600 || opt.connections < 1 || opt.connections > 4096 || opt.bare_workers < 1 ||
        opt.bare_workers > 256 || opt.bare_seconds <= 0 || opt.bare_seconds > 120) {
        fprintf(stderr, "bench_load: bounds: --seconds <= 600, --connections 1..4096, --bare-workers 1..256, "
                        "--bare-seconds 0..120\n");
        return false;
    }
    if ((opt.client_cert == NULL) != (opt.client_key == NULL) || (opt.server_cert == NULL) != (opt.server_key == NULL)) {
        fprintf(stderr, "bench_load: a certificate needs its key (and the other way round)\n");
        return false;
    }
    if (!dps && (opt.client_cert != NULL || opt.https_resume)) {
        fprintf(stderr, "bench_load: --mode cfssl is plain HTTP: no client certificate, no --resume\n");
        return false;
    }
    if (opt.keep_cert != NULL && dps) {
        fprintf(stderr, "bench_load: --keep-cert goes with --mode cfssl\n");
        return false;
    }
    if (opt.https_resume && (opt.mode != MODE_HANDSHAKE || opt.client_cert != NULL)) {
        fprintf(stderr, "bench_load: --resume goes with --mode handshake and no client certificate (the session "
                        "resumed carries no client identity: the SAS token authenticates)\n");
        return false;
    }
    if (opt.devices <= 0)
        opt.devices = opt.requests > 0 ? opt.requests : 20000;
    if (opt.devices > 2000000) {
        fprintf(stderr, "bench_load: --devices at most 2000000\n");
        return false;
    }
    if (opt.keys <= 0 || opt.keys > opt.devices)
        opt.keys = opt.devices < 2000 ? opt.devices : 2000;
    if (opt.received != NULL)
        opt.check_answers = true;
    return true;
}

/* ---- devices, made before the clock starts ------------------------------ */

typedef struct device {
    char *request; /* the whole HTTP/1.1 request; --mode mqtt: CONNECT, SUBSCRIBE, PUBLISH back to back */
    size_t request_len;
    size_t connect_len, subscribe_len; /* --mode mqtt: the PUBLISH is the rest */
} device;

static device *devices;
static char key_dir[256];
static char id_prefix[64];
static _Atomic long next_key;
static _Atomic int prep_failed;

/* ---- MQTT 3.1.1 client packets (the project's codec encodes what a server sends) ---- */

#define MQTT_REGISTER_TOPIC "$dps/registrations/PUT/iotdps-register/?$rid=1"
#define MQTT_KEEPALIVE 240 /* seconds, as the SDKs */

/* The fixed header: type/flags and the remaining length. Its size. */
static size_t mqtt_header(uint8_t *p, uint8_t first, size_t remaining)
{
    size_t n = 0;
    p[n++] = first;
    do {
        uint8_t d = (uint8_t)(remaining & 0x7f);
        remaining >>= 7;
        p[n++] = remaining ? (uint8_t)(d | 0x80) : d;
    } while (remaining);
    return n;
}

static size_t mqtt_string(uint8_t *p, const char *s, size_t len)
{
    p[0] = (uint8_t)(len >> 8);
    p[1] = (uint8_t)len;
    memcpy(p + 2, s, len);
    return 2 + len;
}

/* CONNECT (clean session, username, password), SUBSCRIBE (packet id 1,
 * ENR_DPS_MQTT_RESPONSE_FILTER at QoS 1) and PUBLISH QoS 1 (packet id 2) of
 * the register body, back to back in one allocation. */
static bool mqtt_device_packets(device *d, const char *rid, const char *token, const char *body, size_t body_len)
{
    char user[512];
    int ulen = snprintf(user, sizeof user, "%s/registrations/%s/api-version=" API_VERSION "&ClientVersion=bench_load",
                        opt.scope, rid);
    if (ulen <= 0 || (size_t)ulen >= sizeof user)
        return false;
    size_t rlen = strlen(rid), tlen = strlen(token), flen = strlen(ENR_DPS_MQTT_RESPONSE_FILTER);
    size_t connect_rem = 10 + 2 + rlen + 2 + (size_t)ulen + 2 + tlen;
    size_t subscribe_rem = 2 + 2 + flen + 1;
    size_t publish_len = enr_mqtt_encode_publish(NULL, 0, 4, 1, 2, MQTT_REGISTER_TOPIC, strlen(MQTT_REGISTER_TOPIC),
                                                 (const uint8_t *)body, body_len);
    size_t cap = ENR_MQTT_HEADER_MAX + connect_rem + ENR_MQTT_HEADER_MAX + subscribe_rem + publish_len;
    uint8_t *b = publish_len ? malloc(cap) : NULL;
    if (b == NULL)
        return false;
    size_t n = mqtt_header(b, ENR_MQTT_CONNECT << 4, connect_rem);
    n += mqtt_string(b + n, "MQTT", 4);
    b[n++] = 4;    /* 3.1.1 */
    b[n++] = 0xC2; /* username, password, clean session */
    b[n++] = MQTT_KEEPALIVE >> 8;
    b[n++] = MQTT_KEEPALIVE & 0xff;
    n += mqtt_string(b + n, rid, rlen); /* the client id is the registration id */
    n += mqtt_string(b + n, user, (size_t)ulen);
    n += mqtt_string(b + n, token, tlen);
    d->connect_len = n;
    n += mqtt_header(b + n, ENR_MQTT_SUBSCRIBE << 4 | 0x2, subscribe_rem);
    b[n++] = 0;
    b[n++] = 1;
    n += mqtt_string(b + n, ENR_DPS_MQTT_RESPONSE_FILTER, flen);
    b[n++] = 1; /* QoS 1 */
    d->subscribe_len = n - d->connect_len;
    if (enr_mqtt_encode_publish(b + n, cap - n, 4, 1, 2, MQTT_REGISTER_TOPIC, strlen(MQTT_REGISTER_TOPIC),
                                (const uint8_t *)body, body_len) != publish_len) {
        free(b);
        return false;
    }
    n += publish_len;
    d->request = (char *)b;
    d->request_len = n;
    return true;
}

/* cfssl's sign request body: the PEM CSR as a JSON string (newlines are
 * its only characters that need escaping). Its length, or -1. */
static int cfssl_body(char *out, size_t cap, const char *pem)
{
    static const char HEAD[] = "{\"certificate_request\":\"";
    size_t n = sizeof HEAD - 1;
    memcpy(out, HEAD, n);
    for (; *pem != '\0' && n + 4 < cap; pem++) {
        if (*pem == '\n') {
            out[n++] = '\\';
            out[n++] = 'n';
        } else
            out[n++] = *pem;
    }
    if (*pem != '\0') {
        out[0] = '\0'; /* the caller still prints it */
        return -1;
    }
    memcpy(out + n, "\"}", 3);
    return (int)n + 2;
}

/* Device i: its own id, CSR (CN = id, signed with `signer`), SAS token and
 * request (--mode cfssl: the same CSR, in PEM, in a cfssl sign request). */
static bool make_device(long i, enr_signer *signer, enr_error *err)
{
    char rid[128], subject[160];
    snprintf(rid, sizeof rid, "%s%ld", id_prefix, i);
    snprintf(subject, sizeof subject, "/CN=%s", rid);
    bool cfssl = opt.mode == MODE_CFSSL;
    enr_csr_spec *spec = enr_csr_spec_new();
    enr_csr *csr = NULL;
    unsigned char *b64 = NULL; /* --mode cfssl: PEM */
    size_t b64_len = 0;
    char *device_key = NULL, *token = NULL;
    bool ok = spec != NULL && enr_csr_spec_set_subject(spec, subject, err) == ENR_OK &&
              enr_csr_build(spec, signer, &csr, err) == ENR_OK &&
              enr_csr_encode_alloc(csr, cfssl ? ENR_CSR_PEM : ENR_CSR_BASE64, &b64, &b64_len, err) == ENR_OK &&
              (cfssl || (enr_sas_derive_device_key(opt.group_key, rid, &device_key, err) == ENR_OK &&
                         enr_sas_token_make(opt.scope, rid, device_key, time(NULL) + 6 * 3600, &token, err) == ENR_OK));
    if (ok) {
        char body[4096];
        int blen = cfssl ? cfssl_body(body, sizeof body, (char *)b64)
                         : snprintf(body, sizeof body, "{\"registrationId\":\"%s\",\"csr\":\"%s\"}", rid, (char *)b64);
        if (opt.mode == MODE_MQTT) {
            ok = blen > 0 && (size_t)blen < sizeof body && mqtt_device_packets(&devices[i], rid, token, body, (size_t)blen);
            if (!ok)
                enr_error_set(err, ENR_E_INTERNAL, "MQTT packets too long");
            goto done;
        }
        size_t cap = (size_t)(blen > 0 ? blen : 0) + (token ? strlen(token) : 0) + 512;
        char *req = malloc(cap);
        int n = !req    ? -1
                : cfssl ? snprintf(req, cap,
                                   "POST /api/v1/cfssl/sign HTTP/1.1\r\n"
                                   "Host: %s:%d\r\n"
                                   "Content-Type: application/json\r\n"
                                   "Content-Length: %d\r\n"
                                   "\r\n%s",
                                   opt.host, opt.port, blen, body)
                      : snprintf(req, cap,
                                 "PUT /%s/registrations/%s/register?api-version=" API_VERSION " HTTP/1.1\r\n"
                                 "Host: %s:%d\r\n"
                                 "Content-Type: application/json; charset=utf-8\r\n"
                                 "Authorization: %s\r\n"
                                 "Content-Length: %d\r\n"
                                 "%s"
                                 "\r\n%s",
                                 opt.scope, rid, opt.host, opt.port, token, blen,
                                 opt.mode == MODE_HANDSHAKE ? "Connection: close\r\n" : "", body);
        if (blen <= 0 || (size_t)blen >= sizeof body || n <= 0 || (size_t)n >= cap) {
            ok = false;
            enr_error_set(err, ENR_E_INTERNAL, "request too long");
            free(req);
        } else {
            devices[i].request = req;
            devices[i].request_len = (size_t)n;
        }
    }
done:
    enr_sas_secret_free(token);
    enr_sas_secret_free(device_key);
    free(b64);
    enr_csr_free(csr);
    enr_csr_spec_free(spec);
    return ok;
}

/* Key k, then every device i with i % keys == k (a signer stays in one thread). */
static void *prep_thread(void *arg)
{
    (void)arg;
    enr_error err;
    for (;;) {
        long k = atomic_fetch_add(&next_key, 1);
        if (k >= opt.keys || atomic_load(&prep_failed))
            break;
        char key_path[512];
        snprintf(key_path, sizeof key_path, "%s/%ld.key", key_dir, k);
        enr_signer *signer = NULL;
        bool ok = enr_key_generate_file(ENR_KEY_EC_P256, key_path, NULL, true, &err) == ENR_OK &&
                  enr_signer_open(key_path, NULL, NULL, &signer, &err) == ENR_OK;
        unlink(key_path);
        long i = k;
        for (; ok && i < opt.devices; i += opt.keys)
            ok = make_device(i, signer, &err);
        enr_signer_free(signer);
        if (!ok) {
            if (atomic_exchange(&prep_failed, 1) == 0)
                fprintf(stderr, "bench_load: device %ld: %s\n", i, err.message);
            break;
        }
    }
    return NULL;
}

static bool make_devices(int cores)
{
    const char *base = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp"; /* keys are fsync'ed: use tmpfs */
    snprintf(key_dir, sizeof key_dir, "%s/bench-load-keys-XXXXXX", base);
    if (mkdtemp(key_dir) == NULL) {
        perror("bench_load: mkdtemp");
        return false;
    }
    devices = calloc((size_t)opt.devices, sizeof *devices);
    if (devices == NULL)
        return false;
    int n = cores < 1 ? 1 : cores > 16 ? 16 : cores;
    pthread_t threads[16];
    for (int t = 0; t < n; t++)
        pthread_create(&threads[t], NULL, prep_thread, NULL);
    for (int t = 0; t < n; t++)
        pthread_join(threads[t], NULL);
    rmdir(key_dir);
    return !atomic_load(&prep_failed);
}

/* ---- client connections ------------------------------------------------- */

typedef struct conn {
    int fd;
    SSL *ssl;
} conn;

static void conn_close(conn *c)
{
    if (c->ssl != NULL) {
        (void)SSL_shutdown(c->ssl); /* sends close_notify, does not wait for the peer's */
        SSL_free(c->ssl);
        c->ssl = NULL;
    }
    if (c->fd >= 0) {
        close(c->fd);
        c->fd = -1;
    }
}

static void set_timeouts(int fd)
{
    struct timeval tv = {IO_TIMEOUT_SECONDS, 0};
    (void)setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    (void)setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
}

/* `session` (may be NULL): offered for resumption. No `ctx`: plain TCP (cfssl). */
static bool conn_open_session(conn *c, SSL_CTX *ctx, const char *host, int port, SSL_SESSION *session, char *why,
                              size_t cap)
{
    c->fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (c->fd < 0) {
        snprintf(why, cap, "socket: %s", strerror(errno));
        return false;
    }
    int on = 1;
    (void)setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &on, sizeof on);
    set_timeouts(c->fd);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    if (inet_pton(AF_INET, host, &sa.sin_addr) != 1) {
        snprintf(why, cap, "%s is not an IPv4 address", host);
        conn_close(c);
        return false;
    }
    if (connect(c->fd, (struct sockaddr *)&sa, sizeof sa) != 0) {
        snprintf(why, cap, "connect %s:%d: %s", host, port, strerror(errno));
        conn_close(c);
        return false;
    }
    if (ctx == NULL)
        return true;
    c->ssl = SSL_new(ctx);
    if (c->ssl == NULL || SSL_set_fd(c->ssl, c->fd) != 1 || SSL_set1_host(c->ssl, host) != 1 ||
        (session != NULL && SSL_set_session(c->ssl, session) != 1) || SSL_connect(c->ssl) != 1) {
        unsigned long e = ERR_get_error();
        snprintf(why, cap, "TLS handshake: %s", e ? ERR_reason_error_string(e) : strerror(errno));
        ERR_clear_error();
        conn_close(c);
        return false;
    }
    return true;
}

static bool write_all(conn *c, const char *data, size_t len)
{
    size_t done = 0;
    while (done < len) {
        size_t n = 0;
        if (c->ssl == NULL) {
            ssize_t w = send(c->fd, data + done, len - done, 0);
            if (w <= 0)
                return false;
            n = (size_t)w;
        } else if (SSL_write_ex(c->ssl, data + done, len - done, &n) != 1)
            return false;
        done += n;
    }
    return true;
}

/* As SSL_read_ex, over TLS or plain TCP: 1 with *n > 0 bytes read, else 0. */
static int conn_read(conn *c, char *buf, size_t cap, size_t *n)
{
    if (c->ssl != NULL)
        return SSL_read_ex(c->ssl, buf, cap, n);
    ssize_t r = recv(c->fd, buf, cap, 0);
    *n = r > 0 ? (size_t)r : 0;
    return r > 0;
}

/* Case-insensitive header lookup in [headers, end): the value, trimmed. */
static const char *header_value(const char *headers, const char *end, const char *name, size_t *vlen)
{
    size_t nlen = strlen(name);
    for (const char *line = headers; line < end;) {
        const char *eol = memchr(line, '\n', (size_t)(end - line));
        if (eol == NULL)
            eol = end;
        if ((size_t)(eol - line) > nlen && strncasecmp(line, name, nlen) == 0 && line[nlen] == ':') {
            const char *v = line + nlen + 1;
            while (v < eol && (*v == ' ' || *v == '\t'))
                v++;
            const char *ve = eol;
            while (ve > v && (ve[-1] == '\r' || ve[-1] == ' '))
                ve--;
            *vlen = (size_t)(ve - v);
            return v;
        }
        line = eol + 1;
    }
    return NULL;
}

typedef struct response {
    int status;
    const char *body;
    size_t body_len;
    bool close; /* the server said Connection: close */
} response;

/* Reads one response into buf (cap bytes). */
static bool read_response(conn *c, char *buf, size_t cap, response *r, char *why, size_t wcap)
{
    size_t have = 0;
    const char *head_end = NULL;
    while (head_end == NULL) {
        size_t n = 0;
        if (have + 1 >= cap) {
            snprintf(why, wcap, "response headers too long");
            return false;
        }
        if (conn_read(c, buf + have, cap - 1 - have, &n) != 1) {
            snprintf(why, wcap, "%s", have ? "connection lost mid-response" : "connection lost before a response");
            ERR_clear_error();
            return false;
        }
        have += n;
        buf[have] = '\0';
        head_end = strstr(buf, "\r\n\r\n");
    }
    if (strncmp(buf, "HTTP/1.", 7) != 0 || have < 12) {
        snprintf(why, wcap, "not an HTTP response");
        return false;
    }
    r->status = atoi(buf + 9);
    size_t vlen = 0;
    const char *v = header_value(buf, head_end, "Content-Length", &vlen);
    if (v == NULL) {
        snprintf(why, wcap, "no Content-Length");
        return false;
    }
    size_t body_len = (size_t)strtoul(v, NULL, 10);
    v = header_value(buf, head_end, "Connection", &vlen);
    r->close = v != NULL && vlen == 5 && strncasecmp(v, "close", 5) == 0;
    size_t head_len = (size_t)(head_end - buf) + 4;
    if (head_len + body_len + 1 > cap) {
        snprintf(why, wcap, "response too long (%zu bytes)", body_len);
        return false;
    }
    while (have < head_len + body_len) {
        size_t n = 0;
        if (conn_read(c, buf + have, head_len + body_len - have, &n) != 1) {
            snprintf(why, wcap, "connection lost mid-body");
            ERR_clear_error();
            return false;
        }
        have += n;
    }
    buf[head_len + body_len] = '\0';
    r->body = buf + head_len;
    r->body_len = body_len;
    return true;
}

/* ---- the load ----------------------------------------------------------- */

typedef struct stats {
    long ok;
    long err_connect, err_io, err_http, err_answer;
    long handshakes, resumed, polls; /* TLS connections made, of which resumed; 202s polled (MQTT) */
    double *lat_ms;
    size_t lat_n, lat_cap;
} stats;

typedef struct target {
    const char *host;
    int port;
    SSL_CTX *ctx;
    load_mode mode;
    double seconds;
    long requests;
    bool check; /* false: the canned answer of the bare server */
    bool resume; /* a new connection resumes the thread's first TLS session */
    const char *canned; /* sent instead of the device's request (the bare server under --mode mqtt) */
    size_t canned_len;
    _Atomic long next;
    double start, deadline;
    pthread_barrier_t ready, go;
} target;

static FILE *received_file;
static pthread_mutex_t received_lock = PTHREAD_MUTEX_INITIALIZER;
static _Atomic int error_reports;

static void report_error(const char *what, const char *detail)
{
    if (atomic_fetch_add(&error_reports, 1) < ERROR_REPORTS_MAX)
        fprintf(stderr, "bench_load: %s: %.300s\n", what, detail);
}

static void add_latency(stats *s, double ms)
{
    if (s->lat_n == s->lat_cap) {
        size_t cap = s->lat_cap ? s->lat_cap * 2 : 4096;
        double *p = realloc(s->lat_ms, cap * sizeof *p);
        if (p == NULL)
            return;
        s->lat_ms = p;
        s->lat_cap = cap;
    }
    s->lat_ms[s->lat_n++] = ms;
}

/* The leaf's serial, as `openssl x509 -serial` prints it, to --received. */
static void record_serial(const X509 *leaf)
{
    const ASN1_INTEGER *serial = X509_get0_serialNumber(leaf);
    char hex[2 * 21 + 2] = "";
    const unsigned char *b = ASN1_STRING_get0_data(serial);
    int n = ASN1_STRING_length(serial);
    if (n <= 0)
        snprintf(hex, sizeof hex, "00");
    for (int i = 0; i < n && i < 21; i++)
        snprintf(hex + 2 * i, 3, "%02X", b[i]);
    pthread_mutex_lock(&received_lock);
    fprintf(received_file, "%s\n", hex);
    fflush(received_file);
    pthread_mutex_unlock(&received_lock);
}

static _Atomic int cert_kept; /* --keep-cert: written once */

/* cfssl's sign answer: {"success":true,"result":{"certificate":"<PEM, its
 * newlines as \n>"},...}. By default as cheap as the DPS answer's check
 * (text search: success, and a PEM certificate header where the certificate
 * goes); with --check or --received, and for the one certificate kept, the
 * PEM is decoded into an X.509 certificate. */
static bool cfssl_answer_ok(const response *r, char *why, size_t wcap)
{
    static const char CERT[] = "\"certificate\":\"", PEM_HEAD[] = "-----BEGIN CERTIFICATE-----\\n";
    const char *p = strstr(r->body, CERT);
    if (strstr(r->body, "\"success\":true") == NULL || p == NULL ||
        strncmp(p + sizeof CERT - 1, PEM_HEAD, sizeof PEM_HEAD - 1) != 0) {
        snprintf(why, wcap, "not a success with a PEM certificate: %.200s", r->body);
        return false;
    }
    bool keep = opt.keep_cert != NULL && !atomic_load(&cert_kept);
    if (!opt.check_answers && !keep)
        return true;
    char pem[8192];
    size_t n = 0;
    for (p += sizeof CERT - 1; *p != '"' && *p != '\0' && n + 1 < sizeof pem; p++) {
        if (*p == '\\' && p[1] == 'n') { /* PEM has no other character that JSON escapes */
            pem[n++] = '\n';
            p++;
        } else
            pem[n++] = *p;
    }
    BIO *bio = *p == '"' ? BIO_new_mem_buf(pem, (int)n) : NULL;
    X509 *leaf = bio ? PEM_read_bio_X509(bio, NULL, NULL, NULL) : NULL;
    BIO_free(bio);
    if (leaf == NULL) {
        ERR_clear_error();
        snprintf(why, wcap, "result.certificate is not a PEM X.509 certificate");
        return false;
    }
    if (received_file != NULL)
        record_serial(leaf);
    X509_free(leaf);
    if (keep && atomic_exchange(&cert_kept, 1) == 0) {
        FILE *f = fopen(opt.keep_cert, "w");
        if (f == NULL || fwrite(pem, 1, n, f) != n || fclose(f) != 0)
            perror(opt.keep_cert); /* the caller finds no certificate to check */
    }
    return true;
}

/* An answer of ours: "assigned", and the leaf serial recorded when asked. */
static bool answer_ok(const response *r, char *why, size_t wcap)
{
    if (opt.mode == MODE_CFSSL)
        return cfssl_answer_ok(r, why, wcap);
    if (!opt.check_answers) {
        if (strstr(r->body, "\"status\":\"assigned\"") || strstr(r->body, "\"status\": \"assigned\""))
            return true;
        snprintf(why, wcap, "200 without status assigned: %.200s", r->body);
        return false;
    }
    enr_dps_register_response *resp = NULL;
    enr_error err;
    if (enr_dps_register_response_parse(r->body, r->body_len, &resp, &err) != ENR_OK) {
        snprintf(why, wcap, "unreadable answer: %s", err.message);
        return false;
    }
    bool ok = enr_dps_response_status(resp) == ENR_DPS_STATUS_ASSIGNED &&
              enr_dps_response_registration_status(resp) == ENR_DPS_STATUS_ASSIGNED &&
              enr_dps_response_chain_len(resp) > 0;
    if (!ok)
        snprintf(why, wcap, "answer not assigned with a certificate");
    if (ok && received_file != NULL) {
        size_t len = 0;
        const unsigned char *der = enr_dps_response_chain_der(resp, 0, &len);
        X509 *leaf = der ? d2i_X509(NULL, &der, (long)len) : NULL;
        if (leaf == NULL) {
            ok = false;
            snprintf(why, wcap, "issuedCertificateChain[0] is not a certificate");
        } else
            record_serial(leaf);
        X509_free(leaf);
    }
    enr_dps_register_response_free(resp);
    return ok;
}

typedef struct client {
    target *t;
    stats s;
    pthread_t thread;
    SSL_SESSION *session; /* target.resume: the session offered on each new connection */
} client;

/* A new connection, resuming the thread's TLS session when asked (and
 * keeping the new one whenever the server did not resume). */
static bool client_connect(client *cl, conn *c, char *why, size_t wcap)
{
    target *t = cl->t;
    if (!conn_open_session(c, t->ctx, t->host, t->port, t->resume ? cl->session : NULL, why, wcap))
        return false;
    if (c->ssl == NULL)
        return true;
    cl->s.handshakes++;
    if (SSL_session_reused(c->ssl))
        cl->s.resumed++;
    else if (t->resume) {
        SSL_SESSION_free(cl->session);
        cl->session = SSL_get1_session(c->ssl);
    }
    return true;
}

/* ---- DPS over MQTT: one connection per device ----------------------------- */

typedef struct rbuf {
    char *b;
    size_t cap, have, used; /* bytes read; the front `used` of them are the packet taken last */
} rbuf;

/* The next whole packet at rb->b, *len bytes. */
static bool mqtt_read(conn *c, rbuf *rb, size_t *len, char *why, size_t wcap)
{
    if (rb->used > 0) {
        memmove(rb->b, rb->b + rb->used, rb->have - rb->used);
        rb->have -= rb->used;
        rb->used = 0;
    }
    for (;;) {
        if (rb->have > 0) {
            size_t n = 0;
            enr_error err;
            enr_mqtt_reason k = enr_mqtt_frame((const uint8_t *)rb->b, rb->have, rb->cap - 1, &n, &err);
            if (k == ENR_MQTT_OK) {
                rb->used = n;
                *len = n;
                return true;
            }
            if (k != ENR_MQTT_NEED_MORE) {
                snprintf(why, wcap, "MQTT framing: %s", err.message);
                return false;
            }
        }
        size_t got = 0;
        if (SSL_read_ex(c->ssl, rb->b + rb->have, rb->cap - 1 - rb->have, &got) != 1) {
            snprintf(why, wcap, "%s", rb->have ? "connection lost mid-packet" : "connection lost before a packet");
            ERR_clear_error();
            return false;
        }
        rb->have += got;
    }
}

enum { MQ_OK, MQ_CONNECT, MQ_IO, MQ_STATUS, MQ_ANSWER };

/* One device: connect, CONNECT, SUBSCRIBE, PUBLISH register, the answer
 * (polling a 202 after its retry-after), DISCONNECT. */
static int mqtt_register(client *cl, const device *d, rbuf *rb, char *why, size_t wcap)
{
    conn c = {.fd = -1};
    rb->have = rb->used = 0;
    if (!client_connect(cl, &c, why, wcap))
        return MQ_CONNECT;
    int rc = MQ_IO;
    size_t n = 0;
    size_t first = opt.mqtt_pipeline ? d->request_len : d->connect_len;
    if (!write_all(&c, d->request, first)) {
        snprintf(why, wcap, "connection lost while sending CONNECT");
        goto out;
    }
    if (!mqtt_read(&c, rb, &n, why, wcap))
        goto out;
    if ((uint8_t)rb->b[0] != ENR_MQTT_CONNACK << 4 || n != 4) {
        snprintf(why, wcap, "not a CONNACK: packet 0x%02x of %zu bytes", (uint8_t)rb->b[0], n);
        goto out;
    }
    if (rb->b[3] != ENR_MQTT_CONNACK_ACCEPTED) {
        snprintf(why, wcap, "CONNACK refused, code %d", rb->b[3]);
        rc = MQ_STATUS;
        goto out;
    }
    if (!opt.mqtt_pipeline && !write_all(&c, d->request + d->connect_len, d->subscribe_len)) {
        snprintf(why, wcap, "connection lost while sending SUBSCRIBE");
        goto out;
    }
    if (!mqtt_read(&c, rb, &n, why, wcap))
        goto out;
    if ((uint8_t)rb->b[0] != ENR_MQTT_SUBACK << 4 || n != 5 || rb->b[4] > 1) {
        snprintf(why, wcap, "not a SUBACK granting QoS 0 or 1: packet 0x%02x of %zu bytes", (uint8_t)rb->b[0], n);
        goto out;
    }
    size_t at = d->connect_len + d->subscribe_len;
    if (!opt.mqtt_pipeline && !write_all(&c, d->request + at, d->request_len - at)) {
        snprintf(why, wcap, "connection lost while sending PUBLISH");
        goto out;
    }
    for (int rid = 1;;) {
        if (!mqtt_read(&c, rb, &n, why, wcap))
            goto out;
        uint8_t type = (uint8_t)rb->b[0] >> 4;
        if (type == ENR_MQTT_PUBACK)
            continue;
        enr_mqtt_packet pk;
        enr_error err;
        if (type != ENR_MQTT_PUBLISH || enr_mqtt_parse((const uint8_t *)rb->b, n, 4, &pk, &err) != ENR_MQTT_OK) {
            snprintf(why, wcap, "expected the answer PUBLISH, got packet 0x%02x of %zu bytes", (uint8_t)rb->b[0], n);
            goto out;
        }
        char topic[256];
        static const char RES[] = "$dps/registrations/res/";
        size_t tl = pk.u.publish.topic.len < sizeof topic ? pk.u.publish.topic.len : sizeof topic - 1;
        memcpy(topic, pk.u.publish.topic.data, tl);
        topic[tl] = '\0';
        char want_rid[32];
        int wl = snprintf(want_rid, sizeof want_rid, "?$rid=%d", rid);
        const char *q = strchr(topic, '?');
        if (strncmp(topic, RES, sizeof RES - 1) != 0 || q == NULL || strncmp(q, want_rid, (size_t)wl) != 0 ||
            (q[wl] != '\0' && q[wl] != '&')) {
            snprintf(why, wcap, "answer on an unexpected topic: %s", topic);
            rc = MQ_ANSWER;
            goto out;
        }
        int status = atoi(topic + sizeof RES - 1);
        /* The payload ends the packet: NUL-terminate it in place for the checks. */
        char *body = (char *)pk.u.publish.payload.data;
        size_t body_len = pk.u.publish.payload.len;
        char saved = body[body_len];
        body[body_len] = '\0';
        if (status == 202) {
            enr_dps_register_response *resp = NULL;
            const char *op = NULL;
            char opid[ENR_DPS_OPERATION_ID_MAX + 1] = "";
            if (enr_dps_register_response_parse(body, body_len, &resp, &err) == ENR_OK &&
                (op = enr_dps_response_operation_id(resp)) != NULL)
                snprintf(opid, sizeof opid, "%s", op);
            enr_dps_register_response_free(resp);
            body[body_len] = saved;
            if (opid[0] == '\0' || rid >= 30) {
                snprintf(why, wcap, "202 %s", opid[0] ? "30 times" : "without an operationId");
                rc = MQ_ANSWER;
                goto out;
            }
            const char *ra = strstr(q, "retry-after=");
            int after = ra ? atoi(ra + 12) : 1;
            cl->s.polls++;
            usleep((useconds_t)(after < 1 ? 1 : after > 10 ? 10 : after) * 1000000u);
            char ptopic[256];
            uint8_t poll[320];
            int pl = snprintf(ptopic, sizeof ptopic,
                              "$dps/registrations/GET/iotdps-get-operationstatus/?$rid=%d&operationId=%s", ++rid, opid);
            size_t plen = enr_mqtt_encode_publish(poll, sizeof poll, 4, 0, 0, ptopic, (size_t)pl, NULL, 0);
            if (plen == 0 || !write_all(&c, (const char *)poll, plen)) {
                snprintf(why, wcap, "connection lost while polling");
                goto out;
            }
            continue;
        }
        if (status != 200) {
            snprintf(why, wcap, "MQTT answer %d: %.300s", status, body);
            rc = MQ_STATUS;
        } else {
            response r = {.status = 200, .body = body, .body_len = body_len};
            rc = answer_ok(&r, why, wcap) ? MQ_OK : MQ_ANSWER;
        }
        body[body_len] = saved;
        break;
    }
    static const char DISCONNECT[2] = {(char)(ENR_MQTT_DISCONNECT << 4), 0};
    (void)write_all(&c, DISCONNECT, sizeof DISCONNECT);
out:
    ERR_clear_error();
    conn_close(&c);
    return rc;
}

static void *client_thread(void *arg)
{
    client *cl = arg;
    target *t = cl->t;
    stats *s = &cl->s;
    conn c = {.fd = -1};
    char why[512];
    char *buf = malloc(RESPONSE_MAX);
    bool keepalive = t->mode == MODE_KEEPALIVE || t->mode == MODE_CFSSL; /* connected before the clock starts */
    if (keepalive && buf != NULL && !client_connect(cl, &c, why, sizeof why)) {
        s->err_connect++;
        report_error("connect", why);
    }
    rbuf rb = {.b = buf, .cap = RESPONSE_MAX};
    pthread_barrier_wait(&t->ready);
    pthread_barrier_wait(&t->go);
    while (buf != NULL) {
        double t0 = bench_now();
        if (t->seconds > 0 && t0 >= t->deadline)
            break;
        long i = atomic_fetch_add(&t->next, 1);
        if (t->requests > 0 && i >= t->requests)
            break;
        const device *d = &devices[i % opt.devices];
        if (t->mode == MODE_MQTT) {
            switch (mqtt_register(cl, d, &rb, why, sizeof why)) {
            case MQ_OK:
                s->ok++;
                add_latency(s, (bench_now() - t0) * 1000.0);
                break;
            case MQ_CONNECT:
                s->err_connect++;
                report_error("connect", why);
                usleep(20 * 1000);
                break;
            case MQ_IO:
                s->err_io++;
                report_error("mqtt", why);
                break;
            case MQ_STATUS:
                s->err_http++;
                report_error("answer", why);
                break;
            default:
                s->err_answer++;
                report_error("answer", why);
                break;
            }
            continue;
        }
        if (c.fd < 0 && !client_connect(cl, &c, why, sizeof why)) {
            s->err_connect++;
            report_error("connect", why);
            usleep(20 * 1000); /* the server is down: do not spin */
            continue;
        }
        response r;
        if (!write_all(&c, t->canned ? t->canned : d->request, t->canned ? t->canned_len : d->request_len)) {
            s->err_io++;
            report_error("send", "connection lost while sending");
            ERR_clear_error();
            conn_close(&c);
            continue;
        }
        if (!read_response(&c, buf, RESPONSE_MAX, &r, why, sizeof why)) {
            s->err_io++;
            report_error("receive", why);
            conn_close(&c);
            continue;
        }
        if (r.status != 200) {
            s->err_http++;
            char detail[400];
            snprintf(detail, sizeof detail, "HTTP %d: %.300s", r.status, r.body);
            report_error("answer", detail);
        } else if (t->check && !answer_ok(&r, why, sizeof why)) {
            s->err_answer++;
            report_error("answer", why);
        } else {
            s->ok++;
            add_latency(s, (bench_now() - t0) * 1000.0);
        }
        if (t->mode == MODE_HANDSHAKE || r.close)
            conn_close(&c);
    }
    conn_close(&c);
    SSL_SESSION_free(cl->session);
    free(buf);
    return NULL;
}

typedef struct result {
    long ok, err_connect, err_io, err_http, err_answer;
    long handshakes, resumed, polls;
    double elapsed, rate, p50, p99, max;
} result;

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double percentile(const double *sorted, size_t n, double p)
{
    if (n == 0)
        return 0;
    size_t k = (size_t)(p * (double)(n - 1) + 0.5);
    return sorted[k < n ? k : n - 1];
}

static bool run_load(target *t, int connections, result *res)
{
    client *clients = calloc((size_t)connections, sizeof *clients);
    if (clients == NULL)
        return false;
    pthread_barrier_init(&t->ready, NULL, (unsigned)connections + 1);
    pthread_barrier_init(&t->go, NULL, (unsigned)connections + 1);
    atomic_store(&t->next, 0);
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setstacksize(&attr, 256 * 1024);
    for (int i = 0; i < connections; i++) {
        clients[i].t = t;
        if (pthread_create(&clients[i].thread, &attr, client_thread, &clients[i]) != 0) {
            fprintf(stderr, "bench_load: cannot start client thread %d\n", i);
            exit(1);
        }
    }
    pthread_attr_destroy(&attr);
    pthread_barrier_wait(&t->ready); /* keep-alive connections are up: start the clock */
    t->start = bench_now();
    t->deadline = t->start + t->seconds;
    pthread_barrier_wait(&t->go);
    memset(res, 0, sizeof *res);
    size_t total = 0;
    for (int i = 0; i < connections; i++) {
        pthread_join(clients[i].thread, NULL);
        total += clients[i].s.lat_n;
    }
    res->elapsed = bench_now() - t->start;
    double *all = malloc((total ? total : 1) * sizeof *all);
    size_t n = 0;
    for (int i = 0; i < connections; i++) {
        stats *s = &clients[i].s;
        res->ok += s->ok;
        res->err_connect += s->err_connect;
        res->err_io += s->err_io;
        res->err_http += s->err_http;
        res->err_answer += s->err_answer;
        res->handshakes += s->handshakes;
        res->resumed += s->resumed;
        res->polls += s->polls;
        if (all != NULL && s->lat_n) {
            memcpy(all + n, s->lat_ms, s->lat_n * sizeof *all);
            n += s->lat_n;
        }
        free(s->lat_ms);
    }
    if (all != NULL) {
        qsort(all, n, sizeof *all, cmp_double);
        res->p50 = percentile(all, n, 0.50);
        res->p99 = percentile(all, n, 0.99);
        res->max = n ? all[n - 1] : 0;
    }
    res->rate = res->elapsed > 0 ? (double)res->ok / res->elapsed : 0;
    free(all);
    free(clients);
    pthread_barrier_destroy(&t->ready);
    pthread_barrier_destroy(&t->go);
    return true;
}

/* resume: TLS 1.2, whose session ids enrolld resumes (it sends no TLS 1.3
 * tickets); the client keeps its sessions itself (client.session). */
static SSL_CTX *client_context(bool resume)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    if (ctx == NULL)
        return NULL;
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    if (resume)
        SSL_CTX_set_max_proto_version(ctx, TLS1_2_VERSION);
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF); /* every device is new: full handshakes */
    if (SSL_CTX_load_verify_locations(ctx, opt.ca, NULL) != 1) {
        fprintf(stderr, "bench_load: %s: cannot load the CA certificate\n", opt.ca);
        SSL_CTX_free(ctx);
        return NULL;
    }
    if (opt.client_cert != NULL && (SSL_CTX_use_certificate_chain_file(ctx, opt.client_cert) != 1 ||
                                    SSL_CTX_use_PrivateKey_file(ctx, opt.client_key, SSL_FILETYPE_PEM) != 1 ||
                                    SSL_CTX_check_private_key(ctx) != 1)) {
        fprintf(stderr, "bench_load: %s / %s: cannot load the client certificate and key\n", opt.client_cert,
                opt.client_key);
        SSL_CTX_free(ctx);
        return NULL;
    }
    return ctx;
}

/* ---- the bare OpenSSL server, for the handshake ceiling ------------------ */

static const char BARE_ANSWER_HEAD[] = "HTTP/1.1 200 OK\r\nContent-Type: application/json; charset=utf-8\r\n";
#define BARE_BODY_LEN 3000 /* about the size of an assigned answer with a three-certificate chain */

typedef struct bare_server {
    SSL_CTX *ctx;
    int fd;
    int port;
    int workers;
    _Atomic int stop;
    pthread_t threads[256];
    char *answer;
    size_t answer_len;
} bare_server;

static int accept_any(int preverify, X509_STORE_CTX *store)
{
    (void)preverify, (void)store;
    return 1;
}

static void bare_serve(bare_server *b, int fd, char *buf, size_t cap)
{
    SSL *ssl = SSL_new(b->ctx);
    if (ssl == NULL || SSL_set_fd(ssl, fd) != 1 || SSL_accept(ssl) != 1)
        goto out;
    for (;;) { /* requests on this connection */
        size_t have = 0;
        const char *head_end = NULL;
        while (head_end == NULL && have + 1 < cap) {
            size_t n = 0;
            if (SSL_read_ex(ssl, buf + have, cap - 1 - have, &n) != 1)
                goto out;
            have += n;
            buf[have] = '\0';
            head_end = strstr(buf, "\r\n\r\n");
        }
        if (head_end == NULL)
            goto out;
        size_t vlen = 0;
        const char *v = header_value(buf, head_end, "Content-Length", &vlen);
        size_t need = (size_t)(head_end - buf) + 4 + (v ? (size_t)strtoul(v, NULL, 10) : 0);
        if (need > cap)
            goto out;
        while (have < need) {
            size_t n = 0;
            if (SSL_read_ex(ssl, buf + have, need - have, &n) != 1)
                goto out;
            have += n;
        }
        v = header_value(buf, head_end, "Connection", &vlen);
        bool close_after = v != NULL && vlen == 5 && strncasecmp(v, "close", 5) == 0;
        size_t done = 0;
        while (done < b->answer_len) {
            size_t n = 0;
            if (SSL_write_ex(ssl, b->answer + done, b->answer_len - done, &n) != 1)
                goto out;
            done += n;
        }
        if (close_after)
            break;
    }
out:
    ERR_clear_error();
    if (ssl != NULL) {
        (void)SSL_shutdown(ssl);
        SSL_free(ssl);
    }
    close(fd);
}

static void *bare_thread(void *arg)
{
    bare_server *b = arg;
    char *buf = malloc(128 * 1024);
    while (buf != NULL && !atomic_load(&b->stop)) {
        int fd = accept(b->fd, NULL, NULL);
        if (fd < 0) {
            if (errno == EINTR || errno == ECONNABORTED)
                continue;
            break; /* shut down */
        }
        int on = 1;
        (void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &on, sizeof on);
        set_timeouts(fd);
        bare_serve(b, fd, buf, 128 * 1024);
    }
    free(buf);
    return NULL;
}

static bool bare_start(bare_server *b, int workers)
{
    memset(b, 0, sizeof *b);
    b->fd = -1;
    b->workers = workers;
    b->ctx = SSL_CTX_new(TLS_server_method());
    if (b->ctx == NULL)
        return false;
    /* As enrolld configures its context: TLS >= 1.2, ask for a client certificate, require none. */
    SSL_CTX_set_min_proto_version(b->ctx, TLS1_2_VERSION);
    SSL_CTX_set_options(b->ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_CIPHER_SERVER_PREFERENCE);
    SSL_CTX_set_verify(b->ctx, SSL_VERIFY_PEER, accept_any);
    SSL_CTX_set_session_id_context(b->ctx, (const unsigned char *)"bare", 4);
    SSL_CTX_set_num_tickets(b->ctx, 0); /* enrolld sends no TLS 1.3 tickets either */
    if (SSL_CTX_use_certificate_chain_file(b->ctx, opt.server_cert) != 1 ||
        SSL_CTX_use_PrivateKey_file(b->ctx, opt.server_key, SSL_FILETYPE_PEM) != 1) {
        fprintf(stderr, "bench_load: %s / %s: cannot load the server certificate and key\n", opt.server_cert,
                opt.server_key);
        return false;
    }
    char body[BARE_BODY_LEN + 1];
    memset(body, 'x', BARE_BODY_LEN);
    body[BARE_BODY_LEN] = '\0';
    static const char head[] = "{\"status\":\"assigned\",\"pad\":\"";
    memcpy(body, head, sizeof head - 1);
    memcpy(body + BARE_BODY_LEN - 2, "\"}", 2);
    size_t cap = sizeof BARE_ANSWER_HEAD + BARE_BODY_LEN + 64;
    b->answer = malloc(cap);
    if (b->answer == NULL)
        return false;
    int n = snprintf(b->answer, cap, "%sContent-Length: %d\r\n\r\n%s", BARE_ANSWER_HEAD, BARE_BODY_LEN, body);
    b->answer_len = (size_t)n;
    b->fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int on = 1;
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t sl = sizeof sa;
    if (b->fd < 0 || setsockopt(b->fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof on) != 0 ||
        setsockopt(b->fd, IPPROTO_TCP, TCP_NODELAY, &on, sizeof on) != 0 ||
        bind(b->fd, (struct sockaddr *)&sa, sizeof sa) != 0 || listen(b->fd, 1024) != 0 ||
        getsockname(b->fd, (struct sockaddr *)&sa, &sl) != 0) {
        perror("bench_load: bare server");
        return false;
    }
    b->port = ntohs(sa.sin_port);
    for (int i = 0; i < workers; i++)
        if (pthread_create(&b->threads[i], NULL, bare_thread, b) != 0)
            return false;
    return true;
}

static void bare_stop(bare_server *b)
{
    atomic_store(&b->stop, 1);
    if (b->fd >= 0)
        shutdown(b->fd, SHUT_RDWR); /* wakes every accept() */
    for (int i = 0; i < b->workers; i++)
        pthread_join(b->threads[i], NULL);
    if (b->fd >= 0)
        close(b->fd);
    SSL_CTX_free(b->ctx);
    free(b->answer);
}

/* ---- openssl s_server + s_time ------------------------------------------ */

static int free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t sl = sizeof sa;
    int port = -1;
    if (fd >= 0 && bind(fd, (struct sockaddr *)&sa, sizeof sa) == 0 &&
        getsockname(fd, (struct sockaddr *)&sa, &sl) == 0)
        port = ntohs(sa.sin_port);
    if (fd >= 0)
        close(fd);
    return port;
}

static bool port_open(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port),
                             .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    bool ok = fd >= 0 && connect(fd, (struct sockaddr *)&sa, sizeof sa) == 0;
    if (fd >= 0)
        close(fd);
    return ok;
}

/* Full handshakes per second: `openssl s_time -new` against `openssl
 * s_server` (asking for a client certificate, as enrolld does). 0 on failure. */
static double s_time_rate(int seconds, bool reuse, double *out_count, double *out_secs)
{
    int port = free_port();
    if (port <= 0)
        return 0;
    char accept_arg[32], connect_arg[32], time_arg[16];
    snprintf(accept_arg, sizeof accept_arg, "127.0.0.1:%d", port);
    snprintf(connect_arg, sizeof connect_arg, "127.0.0.1:%d", port);
    snprintf(time_arg, sizeof time_arg, "%d", seconds);
    pid_t pid = fork();
    if (pid < 0)
        return 0;
    if (pid == 0) {
        int devnull = open("/dev/null", O_RDWR);
        if (devnull >= 0) {
            dup2(devnull, 0);
            dup2(devnull, 1);
            dup2(devnull, 2);
        }
        execlp("openssl", "openssl", "s_server", "-accept", accept_arg, "-cert", opt.server_cert, "-key",
               opt.server_key, "-verify", "1", "-www", "-quiet", (char *)NULL);
        _exit(127);
    }
    double rate = 0;
    bool up = false;
    for (int i = 0; i < 100 && !up; i++) {
        up = port_open(port);
        if (!up)
            usleep(30 * 1000);
    }
    if (up) {
        /* Build the command by hand: the paths come from our own command line. */
        char cmd[2048];
        int n = snprintf(cmd, sizeof cmd, "openssl s_time -connect %s %s -time %s", connect_arg,
                         reuse ? "-reuse" : "-new", time_arg);
        if (opt.client_cert != NULL)
            n += snprintf(cmd + n, sizeof cmd - (size_t)n, " -cert '%s' -key '%s'", opt.client_cert, opt.client_key);
        snprintf(cmd + n, sizeof cmd - (size_t)n, " 2>/dev/null");
        FILE *p = popen(cmd, "r");
        char line[512];
        while (p != NULL && fgets(line, sizeof line, p) != NULL) {
            long count = 0, secs = 0;
            /* "12345 connections in 6 real seconds, 0 bytes read per connection" */
            if (sscanf(line, "%ld connections in %ld real seconds", &count, &secs) == 2 && secs > 0) {
                rate = (double)count / (double)secs;
                *out_count = (double)count;
                *out_secs = (double)secs;
            }
        }
        if (p != NULL)
            pclose(p);
    }
    kill(pid, SIGTERM);
    waitpid(pid, NULL, 0);
    return rate;
}

/* ---- main --------------------------------------------------------------- */

static void print_result(const char *what, const result *r)
{
    long errors = r->err_connect + r->err_io + r->err_http + r->err_answer;
    printf("  %-28s %8.0f %s   p50 %7.2f ms  p99 %7.2f ms  max %7.2f ms   (%ld ok in %.2f s)\n",
           what, r->rate, opt.mode == MODE_CFSSL ? "certificates/s " : "registrations/s", r->p50, r->p99, r->max, r->ok,
           r->elapsed);
    printf("  %-28s %8ld errors (connect/TLS %ld, I/O %ld, HTTP status %ld, answer %ld)\n", "", errors,
           r->err_connect, r->err_io, r->err_http, r->err_answer);
}

int main(int argc, char **argv)
{
    if (argc == 1) { /* `make bench` runs every bench_* binary: this one is driven by bench/run_load.sh */
        printf("bench_load: needs a running enrolld; bench/run_load.sh sets one up and runs it\n");
        return 0;
    }
    if (!parse_options(argc, argv))
        return 2;
    signal(SIGPIPE, SIG_IGN);
    long cores_l = sysconf(_SC_NPROCESSORS_ONLN);
    int cores = cores_l > 0 ? (int)cores_l : 1;
    if (opt.id_prefix != NULL)
        snprintf(id_prefix, sizeof id_prefix, "%s", opt.id_prefix);
    else
        snprintf(id_prefix, sizeof id_prefix, "load-%lx-%d-", (unsigned long)time(NULL), (int)getpid());
    if (opt.received != NULL && (received_file = fopen(opt.received, "w")) == NULL) {
        perror(opt.received);
        return 1;
    }
    bool cfssl = opt.mode == MODE_CFSSL;
    bool resume = (opt.mode == MODE_MQTT && !opt.mqtt_full_tls) || (opt.mode == MODE_HANDSHAKE && opt.https_resume);
    SSL_CTX *ctx = cfssl ? NULL : client_context(resume); /* cfssl: plain HTTP */
    if (ctx == NULL && !cfssl)
        return 1;

    double t0 = bench_now();
    if (!make_devices(cores))
        return 1;
    double prep = bench_now() - t0;
    const char *mode_name = opt.mode == MODE_KEEPALIVE ? "keep-alive"
                            : cfssl ? "cfssl serve's sign API (the same CSRs, PEM), plain HTTP/1.1 keep-alive: no TLS "
                                      "(cfssl serve has none set up here), no database (nothing stored)"
                            : opt.mode == MODE_HANDSHAKE
                                ? (resume ? "HTTPS, new connection per device resuming the thread's TLS 1.2 session "
                                            "(SAS token, no client certificate)"
                                          : "new TLS connection per registration")
                            : !opt.mqtt_pipeline
                                ? (resume ? "DPS over MQTT 3.1.1, new connection per device resuming the thread's TLS "
                                            "1.2 session, waiting for CONNACK and SUBACK as the SDKs do"
                                          : "DPS over MQTT 3.1.1, new connection per device with a full TLS handshake, "
                                            "waiting for CONNACK and SUBACK as the SDKs do")
                                : (resume ? "DPS over MQTT 3.1.1, new connection per device resuming the thread's TLS "
                                            "1.2 session, CONNECT+SUBSCRIBE+PUBLISH in one write"
                                          : "DPS over MQTT 3.1.1, new connection per device with a full TLS handshake, "
                                            "CONNECT+SUBSCRIBE+PUBLISH in one write");
    printf("bench_load: %s, %d connections, %s%s, %ld devices with %ld keys (made in %.1f s, before the clock), "
           "%d cores\n",
           mode_name, opt.connections, opt.client_cert ? "client certificate (mTLS), " : "",
           opt.requests > 0 ? "fixed request count" : "fixed time", opt.devices, opt.keys, prep, cores);
    fflush(stdout);

    target t = {.host = opt.host, .port = opt.port, .ctx = ctx, .mode = opt.mode, .seconds = opt.seconds,
                .requests = opt.requests, .check = true, .resume = resume};
    result r;
    if (!run_load(&t, opt.connections, &r))
        return 1;
    char what[64];
    snprintf(what, sizeof what, "%s %s:", cfssl ? "cfssl" : "enrolld",
             opt.mode == MODE_KEEPALIVE    ? "keep-alive"
             : cfssl                       ? "keep-alive (HTTP)"
             : opt.mode == MODE_HANDSHAKE ? (resume ? "HTTPS (TLS resumed)" : "handshake")
             : resume                     ? "MQTT (TLS resumed)"
                                          : "MQTT (full TLS)");
    print_result(what, &r);
    if (opt.mode == MODE_MQTT || resume)
        printf("  %-28s %8ld TLS connections, %ld of them resumed (%.1f%%); %ld answers 202 polled\n", "",
               r.handshakes, r.resumed, r.handshakes ? 100.0 * (double)r.resumed / (double)r.handshakes : 0.0,
               r.polls);
    if (received_file != NULL)
        fclose(received_file);
    fflush(stdout);

    double crypto_ceiling = 0, tls_bare = 0, tls_s_time = 0;
    if (opt.ceiling) {
        double sign_s = 0, verify_s = 0;
        if (bench_openssl_ecdsa_p256(&sign_s, &verify_s) == 0) {
            double per_core = 1.0 / (1.0 / sign_s + 1.0 / verify_s);
            crypto_ceiling = per_core * cores;
            printf("  ceiling, crypto:             %8.0f /s = %d cores x %.0f (openssl speed ecdsap256: sign %.0f/s, "
                   "verify %.0f/s; 1/(1/sign+1/verify))   %s at %.1f%%\n",
                   crypto_ceiling, cores, per_core, sign_s, verify_s, cfssl ? "cfssl" : "enrolld",
                   100.0 * r.rate / crypto_ceiling);
        }
        if (opt.server_cert != NULL && !cfssl) { /* the bare TLS servers: no reference for plain HTTP */
            bare_server b;
            if (bare_start(&b, opt.bare_workers)) {
                target bt = {.host = "127.0.0.1", .port = b.port, .ctx = ctx, .mode = MODE_HANDSHAKE,
                             .seconds = opt.bare_seconds, .check = false, .resume = resume};
                /* The canned server does not care about the request: reuse the devices' ones (HTTP), or
                 * under --mode mqtt one HTTP request of a register body's size. */
                static char canned[1200];
                if (opt.mode == MODE_MQTT) {
                    int h = snprintf(canned, sizeof canned,
                                     "PUT /bare HTTP/1.1\r\nHost: bare\r\nConnection: close\r\nContent-Length: %d\r\n\r\n",
                                     900);
                    memset(canned + h, 'x', 900);
                    bt.canned = canned;
                    bt.canned_len = (size_t)h + 900;
                }
                result br;
                if (run_load(&bt, opt.connections, &br)) {
                    tls_bare = br.rate;
                    printf("  ceiling, TLS (in-process):   %8.0f %s/s: bare OpenSSL server, %d threads, new "
                           "connection per request, same client, %d connections (p50 %.2f ms, %ld errors%s)\n",
                           br.rate, resume ? "resumed TLS 1.2 connections" : "handshakes", opt.bare_workers,
                           opt.connections, br.p50, br.err_connect + br.err_io + br.err_http + br.err_answer,
                           resume && br.handshakes > 0 ? (br.resumed * 10 >= br.handshakes * 9 ? ", >= 90% resumed"
                                                                                              : ", < 90% resumed")
                                                       : "");
                }
            }
            bare_stop(&b);
            double count = 0, secs = 0;
            tls_s_time = s_time_rate(5, resume, &count, &secs);
            if (tls_s_time > 0)
                printf("  ceiling, TLS (s_time):       %8.0f %s/s: openssl s_server (one process) + "
                       "s_time %s%s (%.0f in %.0f s)\n",
                       tls_s_time, resume ? "resumed connections" : "handshakes", resume ? "-reuse" : "-new",
                       opt.client_cert ? " -cert" : "", count, secs);
            else
                printf("  ceiling, TLS (s_time):       not measured (openssl s_server/s_time failed)\n");
            if (opt.mode == MODE_HANDSHAKE && tls_bare > 0)
                printf("  enrolld %s rate:%s %.1f%% of the in-process bare server, %.1f%% of s_time\n",
                       resume ? "resumed-connection" : "handshake", resume ? "" : "         ",
                       100.0 * r.rate / tls_bare, tls_s_time > 0 ? 100.0 * r.rate / tls_s_time : 0.0);
        }
    }
    /* One line for scripts. */
    printf("RESULT mode=%s connections=%d ok=%ld errors=%ld rate=%.0f p50_ms=%.2f p99_ms=%.2f max_ms=%.2f "
           "crypto_ceiling=%.0f tls_bare=%.0f tls_s_time=%.0f tls_connections=%ld tls_resumed=%ld polls=%ld\n",
           opt.mode == MODE_KEEPALIVE ? "keepalive"
           : cfssl                    ? "cfssl"
           : opt.mode == MODE_HANDSHAKE ? (resume ? "handshake-resume" : "handshake")
                                        : "mqtt",
           opt.connections, r.ok, r.err_connect + r.err_io + r.err_http + r.err_answer, r.rate, r.p50, r.p99, r.max,
           crypto_ceiling, tls_bare, tls_s_time, r.handshakes, r.resumed, r.polls);
    for (long i = 0; i < opt.devices; i++)
        free(devices[i].request);
    free(devices);
    SSL_CTX_free(ctx);
    return 0;
}
