/* The device side of enrollment: configure, provision (first registration
 * with a bootstrap credential), then renew_if_due from an agent loop. The
 * identity lives in a store directory that a power cut at any moment leaves
 * usable (the old identity or the new one, never neither); docs/device.md
 * describes the layout and the trust decisions.
 *
 *     enr_device_config cfg = {
 *         .url = "https://dps.example:8443", .id_scope = "0ne0001", .registration_id = "dev-001",
 *         .auth = ENR_DEVICE_AUTH_GROUP_KEY, .symmetric_key_file = "/etc/enroll/group.key",
 *         .key_ref = "/var/lib/enroll/device.key", .trust_file = "/etc/enroll/root.pem",
 *         .store_dir = "/var/lib/enroll"};
 *     enr_device *d = NULL;
 *     if (enr_device_new(&cfg, &d, &err) == ENR_OK && enr_device_provision(d, &err) == ENR_OK)
 *         ...;                                    // store_dir now holds the identity
 *     bool renewed;
 *     enr_device_renew_if_due(d, time(NULL), &renewed, &err);  // later, periodically
 *     enr_device_free(d);
 *
 * Nothing here logs or returns a key, a SAS token or a PIN. */
#ifndef ENROLL_DEVICE_H
#define ENROLL_DEVICE_H

#include <stdbool.h>
#include <time.h>

#include "enroll/error.h"
#include "enroll/signer.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum enr_device_auth {
    ENR_DEVICE_AUTH_NONE = 0,
    ENR_DEVICE_AUTH_DEVICE_KEY, /* an individual enrollment's symmetric key: SAS */
    ENR_DEVICE_AUTH_GROUP_KEY,  /* a group key: the device key is derived, then SAS */
    ENR_DEVICE_AUTH_X509        /* a bootstrap certificate + key, presented over mTLS */
} enr_device_auth;

const char *enr_device_auth_name(enr_device_auth a); /* "device-key", "group-key", "x509" */

/* How the device talks to the service: DPS over HTTPS (https://host[:port],
 * port 443 by default) or DPS over MQTT 3.1.1 on TLS (mqtts://host[:port],
 * port 8883 by default), with the same requests, answers, credentials and
 * checks. The URL's scheme names it; a transport given too must agree with
 * it (ENR_E_USAGE otherwise). */
typedef enum enr_device_transport {
    ENR_DEVICE_TRANSPORT_AUTO = 0, /* the URL's scheme decides */
    ENR_DEVICE_TRANSPORT_HTTPS,
    ENR_DEVICE_TRANSPORT_MQTT
} enr_device_transport;

const char *enr_device_transport_name(enr_device_transport t); /* "https", "mqtt" ("auto") */
/* "https" or "mqtt"; anything else ENR_E_USAGE. */
enr_code enr_device_transport_parse(const char *s, enr_device_transport *out, enr_error *err);

/* What the device speaks to the service: Azure DPS's registration (the
 * default), or AWS IoT fleet provisioning by claim (CreateCertificateFromCsr
 * then RegisterThing, over MQTT only: docs/device.md). Saved with the URL:
 * renewals speak it too. */
typedef enum enr_device_protocol {
    ENR_DEVICE_PROTOCOL_DPS = 0,
    ENR_DEVICE_PROTOCOL_AWS_FLEET
} enr_device_protocol;

const char *enr_device_protocol_name(enr_device_protocol p); /* "dps", "aws-fleet" */
/* "dps" or "aws-fleet"; anything else ENR_E_USAGE. */
enr_code enr_device_protocol_parse(const char *s, enr_device_protocol *out, enr_error *err);

typedef struct enr_device_config {
    const char *url;             /* https://host:port or mqtts://host:port */
    enr_device_protocol protocol; /* DPS unless set */
    enr_device_transport transport; /* saved with the URL: renewals use it too */
    const char *id_scope;        /* DPS only */
    const char *registration_id; /* DPS only; also the CN requested and required in the issued leaf */
    const char *api_version;     /* DPS only; NULL: 2025-07-01-preview */

    /* AWS fleet provisioning only (the claim certificate and key are
     * bootstrap_cert_file / bootstrap_key_file, auth X509): the template
     * ([0-9A-Za-z_-]{1,36}) and RegisterThing's parameters (at most 64, names
     * 1..128 bytes and distinct, values at most 4096 bytes), both saved and
     * sent again at each renewal. The thing name asked for is the CSR's CN,
     * required in the issued leaf ([a-zA-Z0-9:_-]{1,64}): aws_thing_name, or
     * when NULL the parameter ThingName, else SerialNumber (ENR_E_USAGE when
     * none is given). The template decides the thing name the service
     * answers, which is stored. */
    const char *aws_template;
    const char *const *aws_param_names;
    const char *const *aws_param_values;
    size_t aws_param_count;
    const char *aws_thing_name;

    enr_device_auth auth;
    /* A file holding the base64 device or group key (its first line). A file
     * rather than a value: argv and the environment are visible to other
     * users of the machine (ps, /proc). */
    const char *symmetric_key_file;
    const char *bootstrap_cert_file; /* PEM, leaf first (+ chain) */
    const char *bootstrap_key_file;  /* PEM private key */

    /* The operational key: a PEM file (made 0600 when absent) or a pkcs11:
     * URI (made in the token when absent; the key never leaves it). */
    const char *key_ref;
    enr_key_type key_type;           /* for a new key; default ec-p256 */
    const char *pkcs11_module;
    const char *pkcs11_pin_file;

    /* Trust: the service's TLS certificate must verify to trust_file; the
     * issued chain must verify to ca_trust_file (NULL: trust_file too, for a
     * service whose TLS and device certificates share one root). Both are
     * copied into the store so the agent needs nothing else later. */
    const char *trust_file;
    const char *ca_trust_file;
    const char *store_dir;

    /* Renewal: renew when now >= notAfter - renew_before_seconds; 0 means
     * at 2/3 of the certificate's lifetime (enrolld announces no window). */
    long renew_before_seconds;
    bool rotate_key; /* a new key at each renewal (file keys only) */
    /* Provision into store_dir even when it holds files but no identity, or
     * another registration's identity (replaced). Without it both are
     * refused (ENR_E_EXISTS): a typo in a path must not clobber them. */
    bool replace_store;

    int max_attempts;       /* per provision/renewal; 0: 6 */
    int backoff_initial_ms; /* 0: 1000 */
    int backoff_max_ms;     /* 0: 60000 */
    int timeout_ms;         /* per request (connecting, TLS, the answer); 0: 30000 */

    /* Injection points (tests, agents). NULL: time(), nanosleep, silence.
     * sleep returns false to abandon the attempt (e.g. on SIGTERM). */
    time_t (*clock)(void *ctx);
    bool (*sleep)(void *ctx, long ms);
    void (*log)(void *ctx, const char *message);
    void *ctx;
} enr_device_config;

typedef struct enr_device enr_device;

/* Checks and copies the configuration (strings are copied). */
enr_code enr_device_new(const enr_device_config *cfg, enr_device **out, enr_error *err);

/* A device from a store made by enr_device_provision, with the saved
 * configuration. `overrides` (may be NULL) replaces non-zero fields among
 * renew_before_seconds, rotate_key, max_attempts, backoff_*, timeout_ms and
 * the injection points, for this object only: nothing of it is saved (a
 * renew_before_seconds not shorter than the certificate's lifetime forces
 * one renewal). */
enr_code enr_device_open(const char *store_dir, const enr_device_config *overrides, enr_device **out,
                         enr_error *err);
void enr_device_free(enr_device *d);

/* Registers with the bootstrap credential: makes the key if absent, sends a
 * CSR (CN = registration id, clientAuth), follows 202 + Retry-After by
 * polling the operation, retries connection errors, 5xx and 429 with
 * bounded exponential backoff and jitter. The answer is checked before
 * anything is stored: the chain verifies to the CA trust anchor for TLS
 * client use now, the leaf holds our public key, CN == registration id.
 * Any failure: ENR_E_VERIFY/ENR_E_POLICY/ENR_E_IO/..., and the previous
 * identity (if any) stays current. The outcome is recorded in the store.
 * A credential the service refused (HTTP 401/403, an MQTT CONNACK refusal)
 * is ENR_E_POLICY with reason ENR_R_AUTH_REFUSED, and is not retried. */
enr_code enr_device_provision(enr_device *d, enr_error *err);

/* When `now` is at or after the renewal time, registers again, first over
 * mTLS with the current operational certificate, and when the service
 * refuses that or it cannot be used here (a missing or corrupt chain or
 * key, a key that does not match, a token key: docs/device.md), with the
 * bootstrap credential. Provisioning and renewal hold an exclusive lock on
 * the store (STORE/.lock) and re-read identity.json under it, so the
 * decision is made on the current identity whoever wrote it; a second
 * caller waits through the injected sleep. `*renewed` says whether a new
 * certificate landed. */
enr_code enr_device_renew_if_due(enr_device *d, time_t now, bool *renewed, enr_error *err);

/* When the current certificate is due for renewal (0 when there is none). */
time_t enr_device_renew_at(const enr_device *d);

typedef struct enr_device_status {
    char registration_id[129];
    char url[300];
    char transport[8]; /* "https", "mqtt" */
    char id_scope[65];
    char auth[16];
    char key_ref[512];
    char subject[256];
    char issuer[256];
    char serial[80];
    char assigned_hub[256];
    time_t not_before, not_after, renew_at;
    long generation;
    char cert_path[600];
    char chain_path[600];
    char last_result[16]; /* "ok", "error" */
    char last_message[512];
    time_t last_attempt, last_success;
    char protocol[16];      /* "dps", "aws-fleet" */
    char template_name[40]; /* aws-fleet: the provisioning template */
    char thing_name[129];   /* aws-fleet: the thing the service registered ("" before) */
} enr_device_status;

enr_code enr_device_status_read(const char *store_dir, enr_device_status *out, enr_error *err);

/* The current identity as PKCS#12 (key, leaf, chain), encrypted with
 * AES-256-CBC / PBKDF2 and MAC'd with SHA-256 under `passphrase` (required),
 * written 0600. A token key cannot be exported: ENR_E_UNSUPPORTED. */
enr_code enr_device_export_pkcs12(const char *store_dir, const char *out_path, const char *passphrase,
                                  bool overwrite, enr_error *err);

#ifdef __cplusplus
}
#endif
#endif
