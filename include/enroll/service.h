/* enrolld's HTTP(S) front: configuration, listeners (one event loop per
 * worker thread, all accepting on one listening socket), TLS with optional client
 * certificates, limits, per-request JSON logs, /healthz and /metrics,
 * graceful stop and certificate reload. The registration routes plug in
 * through enr_service_route (issue 4 continues there). */
#ifndef ENROLL_SERVICE_H
#define ENROLL_SERVICE_H

#include <stdbool.h>
#include <stddef.h>

#include "enroll/error.h"

#ifdef __cplusplus
extern "C" {
#endif

/* An MQTT port of enrolld ("mqtt", "aws"): where and its connection limits. */
typedef struct enr_mqtt_listen_config {
    char *host;                     /* NULL: not served */
    int port;                       /* 0: any free port (printed as "mqtt_port", "aws_port") */
    long max_connections;           /* in all; 0: as limits.max_connections */
    int connect_timeout_seconds;    /* accept to CONNACK (TLS included); default 10 */
    long max_packet_bytes;          /* default 65536 + 1024 (a request body and its topic) */
    int max_keepalive_seconds;      /* default 300 (DPS), 1200 (AWS) */
} enr_mqtt_listen_config;

typedef struct enr_service_config {
    char *listen_host;      /* "127.0.0.1" */
    int listen_port;        /* 0: any free port (printed when listening) */
    char *store_location;
    char *id_scope;         /* with store_location: serve the DPS registration API for this scope */
    char *tls_cert;         /* server certificate chain, PEM */
    char *tls_key;          /* its key, PEM */
    char *tls_client_ca;    /* optional: CA names offered to clients (mTLS) */
    char *admin_client_ca;  /* optional: the admin API's CA(s); absent: no admin API (404) */
    bool plain_http;        /* only with no tls_*: behind a TLS terminator */
    int workers;            /* 0: one per core */
    long max_body_bytes;
    long max_header_bytes;
    int timeout_seconds;
    int shutdown_grace_seconds;
    /* A registration whose store commit has not finished after this long is
     * answered 202 "assigning" with its operationId and Retry-After; the
     * device polls the operation (DPS's asynchronous flow). 0: always. */
    long assigning_after_ms;
    /* The longest a device's SAS token may live (se - now): a token made
     * to last longer is refused even when genuine (default one day). */
    long sas_token_max_lifetime_seconds;
    /* Hostile clients (docs/registration.md, "Configuration"). */
    long max_connections;           /* open connections on the listener; 0: from the fd limit */
    int handshake_timeout_seconds;  /* a TLS handshake longer than this is dropped */
    int request_timeout_seconds;    /* from ready (or the last answer) to a whole request read */
    int log_lines_per_second;       /* per worker and event; the rest are counted in one line */
    bool create_store;              /* a missing store is created (else: an error at start) */
    int audit_max_age_days;         /* audit events older than this are pruned; 0: never */
    long audit_max_rows;            /* only the newest this many are kept; 0: no bound */
    int audit_refusal_samples;      /* refusals itemized per worker, errorCode and second */
    /* DPS over MQTT ("mqtt": {...}); mqtt.host NULL: not served. It
     * shares TLS (and client certificates) with HTTPS and needs id_scope. */
    enr_mqtt_listen_config mqtt;
    /* AWS IoT fleet provisioning over MQTT ("aws": {...}); aws.host NULL:
     * not served. The same connection limits as "mqtt" (keepalive default
     * 1200: AWS's SDKs ask for up to 1200 s), and the core's threads
     * (blocking steps: store, signing, the hook). */
    enr_mqtt_listen_config aws;
    int aws_threads;                     /* default 4 */
    int aws_queue_max;                   /* requests waiting for a thread; default 256 */
    /* CRLs kept current for brokers ("crl": {...}); crl_publish_dir NULL:
     * not published. Each issuing CA's CRL is written to
     * DIR/<CA name>.crl.pem when a revocation reaches the store (checked
     * every crl_check_seconds) and when half its validity has passed, then
     * crl_reload_command runs (argv, no shell; NULL: none). */
    char *crl_publish_dir;
    char **crl_reload_command;           /* NULL-terminated */
    int crl_check_seconds;               /* default 5 */
    int crl_next_update_seconds;         /* default 7 days */
} enr_service_config;

/* Reads a JSON config (unknown keys are errors, so a typo is never ignored):
 * {"listen": "127.0.0.1:8443", "data_dir": "/var/lib/enroll", "id_scope": "0ne0001",
 *  "tls": {"cert": "server.pem", "key": "server.key", "client_ca": "ca.pem"},
 *  "admin": {"client_ca": "admin-ca.pem"},
 *  "workers": 2, "limits": {"max_body_bytes": 65536, "max_header_bytes": 8192,
 *  "timeout_seconds": 30, "assigning_after_ms": 2000, "max_connections": 0,
 *  "handshake_timeout_seconds": 10, "request_timeout_seconds": 30,
 *  "log_lines_per_second": 20, "sas_token_max_lifetime_seconds": 86400},
 *  "shutdown_grace_seconds": 10, "create_store": false,
 *  "audit": {"max_age_days": 365, "max_rows": 1000000, "refusal_samples_per_second": 10},
 *  "mqtt": {"listen": "127.0.0.1:8883", "max_connections": 0, "connect_timeout_seconds": 10,
 *           "max_packet_bytes": 66560, "max_keepalive_seconds": 300}}
 * Relative paths are taken relative to the config file's directory.
 * "admin" turns on the admin API (/admin/v1/..., docs/admin-api.md) for
 * TLS client certificates chaining to admin.client_ca: keep that CA apart
 * from every CA that signs device certificates. It needs TLS and store_location.
 * store_location without id_scope or admin serves nothing from the store: an error
 * (a forgotten id_scope would answer every device 404). */
enr_code enr_service_config_parse(const char *text, size_t len, const char *base_dir,
                                  enr_service_config **out, enr_error *err);
enr_code enr_service_config_load(const char *path, enr_service_config **out, enr_error *err);
void enr_service_config_free(enr_service_config *cfg);

typedef struct enr_service enr_service;

/* Loads TLS material and binds the listeners; nothing runs yet. */
enr_code enr_service_new(const enr_service_config *cfg, enr_service **out, enr_error *err);
/* Starts the worker threads. */
enr_code enr_service_start(enr_service *svc, enr_error *err);
/* Stops accepting, lets requests in flight finish (up to the grace period),
 * and joins the workers. Safe to call from any thread but a worker. */
void enr_service_stop(enr_service *svc);
/* Re-reads the TLS certificate and key (SIGHUP): new connections use them;
 * on error the old ones stay in use. */
enr_code enr_service_reload(enr_service *svc, enr_error *err);
int enr_service_port(const enr_service *svc);
void enr_service_free(enr_service *svc);

#ifdef __cplusplus
}
#endif
#endif
