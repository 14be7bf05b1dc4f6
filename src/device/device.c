/* The device client (device.h): registration over HTTPS with a bootstrap
 * credential or the current operational certificate, checks on what comes
 * back, and the hand-over to the identity store (identity.c). */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <jansson.h>
#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/pem.h>
#include <openssl/pkcs12.h>
#include <openssl/rand.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/file.h>
#include <time.h>
#include <unistd.h>

#include "device/device_internal.h"
#include "device/link.h"
#include "device/link_aws.h"
#include "enroll/aws_fleet_topic.h"
#include "enroll/cert.h"
#include "enroll/csr.h"
#include "enroll/device.h"
#include "enroll/dps.h"
#include "enroll/duration.h"
#include "enroll/fileio.h"
#include "enroll/http_client.h"
#include "enroll/name.h"
#include "enroll/pubkey.h"
#include "enroll/sas.h"

#define DEFAULT_API_VERSION "2025-07-01-preview"
#define SAS_LIFETIME_SECONDS 3600
#define POLLS_MAX 120

struct enr_device {
    dev_identity id; /* the saved configuration and the current identity */
    char *store_dir;
    char *trust_file, *ca_trust_file; /* where to read trust from for this run */
    enr_device_auth auth;
    enr_device_transport transport; /* never AUTO here */
    enr_device_protocol protocol;
    enr_key_type key_type;
    bool rotate_key;
    bool replace_store; /* enr_device_config.replace_store, this object only */
    /* `run --renew-before`: for this process only, never saved (a one-off
     * window must not make every later run renew). */
    long renew_before_override;
    bool from_store; /* opened from the store: its configuration is the saved one */
    int max_attempts, backoff_initial_ms, backoff_max_ms, timeout_ms;
    time_t (*clock)(void *ctx);
    bool (*sleep)(void *ctx, long ms);
    void (*log)(void *ctx, const char *message);
    void *ctx;
};

const char *enr_device_auth_name(enr_device_auth a)
{
    switch (a) {
    case ENR_DEVICE_AUTH_DEVICE_KEY: return "device-key";
    case ENR_DEVICE_AUTH_GROUP_KEY: return "group-key";
    case ENR_DEVICE_AUTH_X509: return "x509";
    case ENR_DEVICE_AUTH_NONE: break;
    }
    return "none";
}

static enr_device_auth auth_parse(const char *s)
{
    if (s == NULL)
        return ENR_DEVICE_AUTH_NONE;
    if (strcmp(s, "device-key") == 0)
        return ENR_DEVICE_AUTH_DEVICE_KEY;
    if (strcmp(s, "group-key") == 0)
        return ENR_DEVICE_AUTH_GROUP_KEY;
    if (strcmp(s, "x509") == 0)
        return ENR_DEVICE_AUTH_X509;
    return ENR_DEVICE_AUTH_NONE;
}

const char *enr_device_transport_name(enr_device_transport t)
{
    switch (t) {
    case ENR_DEVICE_TRANSPORT_HTTPS: return "https";
    case ENR_DEVICE_TRANSPORT_MQTT: return "mqtt";
    case ENR_DEVICE_TRANSPORT_AUTO: break;
    }
    return "auto";
}

enr_code enr_device_transport_parse(const char *s, enr_device_transport *out, enr_error *err)
{
    if (s != NULL && strcmp(s, "https") == 0)
        *out = ENR_DEVICE_TRANSPORT_HTTPS;
    else if (s != NULL && strcmp(s, "mqtt") == 0)
        *out = ENR_DEVICE_TRANSPORT_MQTT;
    else
        return enr_error_set(err, ENR_E_USAGE, "transport '%.64s': give https or mqtt", s ? s : "");
    return ENR_OK;
}

const char *enr_device_protocol_name(enr_device_protocol p)
{
    return p == ENR_DEVICE_PROTOCOL_AWS_FLEET ? "aws-fleet" : "dps";
}

enr_code enr_device_protocol_parse(const char *s, enr_device_protocol *out, enr_error *err)
{
    if (s != NULL && strcmp(s, "dps") == 0)
        *out = ENR_DEVICE_PROTOCOL_DPS;
    else if (s != NULL && strcmp(s, "aws-fleet") == 0)
        *out = ENR_DEVICE_PROTOCOL_AWS_FLEET;
    else
        return enr_error_set(err, ENR_E_USAGE, "protocol '%.64s': give dps or aws-fleet", s ? s : "");
    return ENR_OK;
}

static bool is_aws(const enr_device *d)
{
    return d->protocol == ENR_DEVICE_PROTOCOL_AWS_FLEET;
}

/* The transport a URL names, checked against the one asked for (AUTO: the
 * URL's). The scheme and the transport must agree: a port speaks one
 * protocol, so "mqtt" with an https:// URL would only fail later, and less
 * clearly. Plain mqtt:// is refused like http://: credentials travel. */
static enr_code transport_of(const char *url, enr_device_transport asked, enr_device_transport *out, enr_error *err)
{
    if (url == NULL)
        return enr_error_set(err, ENR_E_USAGE, "no URL given");
    enr_device_transport by_url;
    enr_url parsed;
    enr_code rc;
    if (dev_url_is_mqtt(url)) {
        by_url = ENR_DEVICE_TRANSPORT_MQTT;
        rc = enr_url_parse_scheme(url, "mqtts", DEV_MQTT_DEFAULT_PORT, &parsed, err);
        if (rc == ENR_OK && parsed.base_path[0] != '\0')
            rc = enr_error_set(err, ENR_E_USAGE, "URL '%.200s': an MQTT URL has no path (give mqtts://host[:port])",
                               url);
    } else if (strncasecmp(url, "mqtt://", 7) == 0 || strncasecmp(url, "tcp://", 6) == 0) {
        return enr_error_set(err, ENR_E_USAGE,
                             "URL '%.200s': plain MQTT is refused (the service hands out credentials): give "
                             "mqtts://host[:port]",
                             url);
    } else {
        by_url = ENR_DEVICE_TRANSPORT_HTTPS;
        rc = enr_url_parse(url, &parsed, err);
        if (rc != ENR_OK && asked != ENR_DEVICE_TRANSPORT_HTTPS)
            enr_error_set(err, ENR_E_USAGE, "URL '%.200s': give https://host[:port][/path] (HTTPS) or "
                                            "mqtts://host[:port] (MQTT)", url);
    }
    if (rc != ENR_OK)
        return rc;
    if (asked != ENR_DEVICE_TRANSPORT_AUTO && asked != by_url)
        return enr_error_set(err, ENR_E_USAGE, "transport %s needs an %s URL, not '%.200s'",
                             enr_device_transport_name(asked),
                             asked == ENR_DEVICE_TRANSPORT_MQTT ? "mqtts://host[:port]" : "https://host[:port]",
                             url);
    *out = by_url;
    return ENR_OK;
}

static void say(const enr_device *d, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void say(const enr_device *d, const char *fmt, ...)
{
    if (d->log == NULL)
        return;
    char msg[768];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    d->log(d->ctx, msg);
}

static time_t now_of(const enr_device *d)
{
    return d->clock != NULL ? d->clock(d->ctx) : time(NULL);
}

static bool pause_ms(const enr_device *d, long ms)
{
    if (d->sleep != NULL)
        return d->sleep(d->ctx, ms);
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
    return true;
}

/* Absolute, so the agent finds files whatever its working directory. */
static char *absolute(const char *path)
{
    if (path == NULL)
        return NULL;
    if (path[0] == '/' || enr_key_ref_is_token(path))
        return strdup(path);
    char cwd[DEV_PATH_MAX];
    if (getcwd(cwd, sizeof cwd) == NULL)
        return NULL;
    size_t n = strlen(cwd) + strlen(path) + 2;
    char *out = malloc(n);
    if (out != NULL)
        snprintf(out, n, "%s/%s", cwd, path);
    return out;
}

static void replace(char **slot, char *value)
{
    free(*slot);
    *slot = value;
}

void enr_device_free(enr_device *d)
{
    if (d == NULL)
        return;
    dev_identity_free(&d->id);
    free(d->store_dir);
    free(d->trust_file);
    free(d->ca_trust_file);
    free(d);
}

static void apply_tuning(enr_device *d, const enr_device_config *c)
{
    if (c == NULL)
        return;
    if (c->rotate_key)
        d->rotate_key = true;
    if (c->replace_store)
        d->replace_store = true;
    if (c->max_attempts > 0)
        d->max_attempts = c->max_attempts;
    if (c->backoff_initial_ms > 0)
        d->backoff_initial_ms = c->backoff_initial_ms;
    if (c->backoff_max_ms > 0)
        d->backoff_max_ms = c->backoff_max_ms;
    if (c->timeout_ms > 0)
        d->timeout_ms = c->timeout_ms;
    if (c->clock != NULL)
        d->clock = c->clock;
    if (c->sleep != NULL)
        d->sleep = c->sleep;
    if (c->log != NULL)
        d->log = c->log;
    if (c->ctx != NULL)
        d->ctx = c->ctx;
}

static enr_device *device_alloc(void)
{
    enr_device *d = calloc(1, sizeof *d);
    if (d == NULL)
        return NULL;
    d->max_attempts = 6;
    d->backoff_initial_ms = 1000;
    d->backoff_max_ms = 60000;
    d->timeout_ms = 30000;
    d->key_type = ENR_KEY_EC_P256;
    return d;
}

/* The DPS half of enr_device_new's checks. */
static enr_code dps_config_check(const enr_device_config *cfg, enr_error *err)
{
    if (cfg->aws_template != NULL || cfg->aws_param_count > 0 || cfg->aws_thing_name != NULL)
        return enr_error_set(err, ENR_E_USAGE, "a template, parameters and a thing name are for the aws-fleet "
                                               "protocol only");
    if (cfg->id_scope == NULL || cfg->id_scope[0] == '\0' || strlen(cfg->id_scope) > ENR_DPS_ID_SCOPE_MAX)
        return enr_error_set(err, ENR_E_USAGE, "an idScope (1..%d characters) is required", ENR_DPS_ID_SCOPE_MAX);
    for (const char *p = cfg->id_scope; *p; p++)
        if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') || *p == '.' ||
              *p == '_' || *p == '-'))
            return enr_error_set(err, ENR_E_USAGE, "idScope '%s': character '%c' not allowed", cfg->id_scope, *p);
    if (cfg->registration_id == NULL || !enr_registration_id_valid(cfg->registration_id))
        return enr_error_set(err, ENR_E_USAGE,
                             "registration id '%s' is not 1..128 of [A-Za-z0-9._:-] ending alphanumeric or '-'",
                             cfg->registration_id ? cfg->registration_id : "");
    if ((cfg->auth == ENR_DEVICE_AUTH_DEVICE_KEY || cfg->auth == ENR_DEVICE_AUTH_GROUP_KEY) &&
        cfg->symmetric_key_file == NULL)
        return enr_error_set(err, ENR_E_USAGE, "symmetric-key attestation needs the key file");
    if (cfg->api_version != NULL) {
        enr_dps_api_generation gen;
        if (enr_dps_api_version_check(cfg->api_version, &gen, err) != ENR_OK)
            return ENR_E_USAGE;
    }
    return ENR_OK;
}

/* The CN of an X.509 name: at most 64 characters (RFC 5280's ub-common-name). */
#define AWS_CN_MAX 64

/* The AWS half: MQTT, a claim certificate, a template, parameters and a
 * thing name that can be sent. *cn: the thing name asked for (borrowed
 * from cfg); *params: the parameters as a JSON object's compact text. */
static enr_code aws_config_check(const enr_device_config *cfg, enr_device_transport transport, const char **cn,
                                 char **params, enr_error *err)
{
    *cn = NULL;
    *params = NULL;
    if (cfg->id_scope != NULL || cfg->registration_id != NULL || cfg->api_version != NULL)
        return enr_error_set(err, ENR_E_USAGE, "an idScope, a registration id and an API version are DPS's: not "
                                               "used with the aws-fleet protocol");
    if (transport != ENR_DEVICE_TRANSPORT_MQTT)
        return enr_error_set(err, ENR_E_USAGE, "AWS fleet provisioning speaks MQTT: give mqtts://host[:port], not "
                                               "'%.200s'", cfg->url);
    if (cfg->auth != ENR_DEVICE_AUTH_X509)
        return enr_error_set(err, ENR_E_USAGE, "AWS fleet provisioning is by claim: give the claim certificate and "
                                               "key (--bootstrap-cert, --bootstrap-key), no symmetric key");
    char probe[ENR_AWS_FLEET_TOPIC_MAX + 1];
    if (cfg->aws_template == NULL)
        return enr_error_set(err, ENR_E_USAGE, "AWS fleet provisioning needs a provisioning template (--template "
                                               "NAME)");
    if (enr_aws_fleet_request_topic(probe, sizeof probe, ENR_AWS_FLEET_REGISTER_THING, ENR_AWS_FLEET_JSON,
                                    cfg->aws_template) == 0)
        return enr_error_set(err, ENR_E_USAGE, "template name '%.64s' is not 1..%d of [0-9A-Za-z_-]",
                             cfg->aws_template, ENR_AWS_FLEET_TEMPLATE_NAME_MAX);
    if (cfg->aws_param_count > DEV_AWS_PARAMS_MAX)
        return enr_error_set(err, ENR_E_USAGE, "at most %d parameters", DEV_AWS_PARAMS_MAX);
    json_t *o = json_object();
    if (o == NULL)
        return enr_error_set(err, ENR_E_NOMEM, "out of memory");
    const char *thing = NULL, *serial = NULL;
    enr_code rc = ENR_OK;
    for (size_t i = 0; rc == ENR_OK && i < cfg->aws_param_count; i++) {
        const char *k = cfg->aws_param_names[i], *v = cfg->aws_param_values[i];
        if (k == NULL || v == NULL || k[0] == '\0' || strlen(k) > DEV_AWS_PARAM_NAME_MAX)
            rc = enr_error_set(err, ENR_E_USAGE, "parameter %zu: a name of 1..%d bytes is required", i + 1,
                               DEV_AWS_PARAM_NAME_MAX);
        else if (strlen(v) > DEV_AWS_PARAM_VALUE_MAX)
            rc = enr_error_set(err, ENR_E_USAGE, "parameter %.128s: the value is longer than %d bytes", k,
                               DEV_AWS_PARAM_VALUE_MAX);
        else if (json_object_get(o, k) != NULL)
            rc = enr_error_set(err, ENR_E_USAGE, "parameter %.128s is given twice", k);
        else {
            json_t *jv = json_string(v);
            if (jv == NULL || json_object_set_new(o, k, jv) != 0)
                rc = enr_error_set(err, ENR_E_USAGE, "parameter %.128s: the name and value must be UTF-8 text", k);
        }
        if (rc == ENR_OK && strcmp(k, "ThingName") == 0)
            thing = v;
        if (rc == ENR_OK && strcmp(k, "SerialNumber") == 0)
            serial = v;
    }
    *cn = cfg->aws_thing_name != NULL ? cfg->aws_thing_name : thing != NULL ? thing : serial;
    if (rc == ENR_OK && *cn == NULL)
        rc = enr_error_set(err, ENR_E_USAGE, "give the thing name to ask for (--thing-name NAME, or the parameter "
                                             "ThingName or SerialNumber): it is the CSR's CN");
    else if (rc == ENR_OK && (!dev_aws_thing_name_valid(*cn) || strlen(*cn) > AWS_CN_MAX))
        rc = enr_error_set(err, ENR_E_USAGE, "thing name '%.128s' is not 1..%d of [a-zA-Z0-9:_-] (it is the CSR's CN)",
                           *cn, AWS_CN_MAX);
    if (rc == ENR_OK && (*params = json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER)) == NULL)
        rc = enr_error_set(err, ENR_E_NOMEM, "out of memory");
    json_decref(o);
    return rc;
}

enr_code enr_device_new(const enr_device_config *cfg, enr_device **out, enr_error *err)
{
    if (cfg == NULL || out == NULL)
        return enr_error_set(err, ENR_E_USAGE, "enr_device_new: NULL argument");
    *out = NULL;
    enr_device_transport transport;
    enr_code rc = transport_of(cfg->url, cfg->transport, &transport, err);
    if (rc != ENR_OK)
        return rc;
    bool aws = cfg->protocol == ENR_DEVICE_PROTOCOL_AWS_FLEET;
    if (cfg->protocol != ENR_DEVICE_PROTOCOL_DPS && !aws)
        return enr_error_set(err, ENR_E_USAGE, "unknown protocol %d", (int)cfg->protocol);
    const char *cn = cfg->registration_id;
    char *params = NULL;
    if ((rc = aws ? aws_config_check(cfg, transport, &cn, &params, err) : dps_config_check(cfg, err)) != ENR_OK)
        return rc;
    if (cfg->auth == ENR_DEVICE_AUTH_X509 && (cfg->bootstrap_cert_file == NULL || cfg->bootstrap_key_file == NULL))
        rc = enr_error_set(err, ENR_E_USAGE, "X.509 attestation needs the bootstrap certificate and key");
    else if (cfg->auth == ENR_DEVICE_AUTH_NONE)
        rc = enr_error_set(err, ENR_E_USAGE, "a bootstrap credential is required (device key, group key or "
                                             "bootstrap certificate)");
    else if (cfg->key_ref == NULL || cfg->trust_file == NULL || cfg->store_dir == NULL)
        rc = enr_error_set(err, ENR_E_USAGE, "the key, the trust anchor and the store directory are required");
    enr_device *d = rc == ENR_OK ? device_alloc() : NULL;
    if (rc == ENR_OK && d == NULL)
        rc = enr_error_set(err, ENR_E_NOMEM, "out of memory");
    if (rc != ENR_OK) {
        free(params);
        return rc;
    }
    char *abs_store = absolute(cfg->store_dir);
    d->store_dir = abs_store != NULL ? dev_store_canonical(abs_store) : NULL;
    free(abs_store);
    /* Keep what the store knows about the current identity (generation,
     * files): a new provisioning replaces it only once the new one checks out. */
    if (d->store_dir != NULL && dev_identity_load(d->store_dir, &d->id, NULL) != ENR_OK)
        memset(&d->id, 0, sizeof d->id);
    dev_identity *id = &d->id;
    replace(&id->registration_id, strdup(cn));
    replace(&id->url, strdup(cfg->url));
    replace(&id->protocol, strdup(enr_device_protocol_name(cfg->protocol)));
    replace(&id->id_scope, aws ? NULL : strdup(cfg->id_scope));
    replace(&id->api_version, aws ? NULL : strdup(cfg->api_version ? cfg->api_version : DEFAULT_API_VERSION));
    replace(&id->aws_template, aws ? strdup(cfg->aws_template) : NULL);
    replace(&id->aws_params, params);
    replace(&id->auth, strdup(enr_device_auth_name(cfg->auth)));
    replace(&id->transport, strdup(enr_device_transport_name(transport)));
    replace(&id->symmetric_key_file, absolute(cfg->symmetric_key_file));
    replace(&id->bootstrap_cert_file, absolute(cfg->bootstrap_cert_file));
    replace(&id->bootstrap_key_file, absolute(cfg->bootstrap_key_file));
    replace(&id->key_ref, absolute(cfg->key_ref));
    replace(&id->key_type, strdup(enr_key_type_name(cfg->key_type)));
    replace(&id->pkcs11_module, absolute(cfg->pkcs11_module));
    replace(&id->pkcs11_pin_file, absolute(cfg->pkcs11_pin_file));
    id->renew_before = cfg->renew_before_seconds;
    d->auth = cfg->auth;
    d->transport = transport;
    d->protocol = cfg->protocol;
    d->key_type = cfg->key_type;
    d->trust_file = absolute(cfg->trust_file);
    d->ca_trust_file = absolute(cfg->ca_trust_file ? cfg->ca_trust_file : cfg->trust_file);
    apply_tuning(d, cfg);
    if (d->store_dir == NULL || id->registration_id == NULL || id->url == NULL || id->protocol == NULL ||
        (aws ? id->aws_template == NULL : id->id_scope == NULL) || id->key_ref == NULL || id->transport == NULL ||
        d->trust_file == NULL || d->ca_trust_file == NULL) {
        enr_device_free(d);
        return enr_error_set(err, ENR_E_NOMEM, "out of memory");
    }
    *out = d;
    return ENR_OK;
}

/* What an opened device takes from identity.json besides the record itself:
 * the attestation kind, the key type, and the store's copies of the trust
 * anchors that the current generation names. */
static void adopt_saved_configuration(enr_device *d)
{
    d->auth = auth_parse(d->id.auth);
    enr_error ignored;
    /* A store from before AWS: DPS. */
    d->protocol = ENR_DEVICE_PROTOCOL_DPS;
    if (d->id.protocol != NULL)
        (void)enr_device_protocol_parse(d->id.protocol, &d->protocol, &ignored);
    /* A store from before the transport was saved: its URL says (https). */
    enr_device_transport saved = ENR_DEVICE_TRANSPORT_AUTO;
    if (d->id.transport != NULL)
        (void)enr_device_transport_parse(d->id.transport, &saved, &ignored);
    d->transport = saved != ENR_DEVICE_TRANSPORT_AUTO
                       ? saved
                       : (dev_url_is_mqtt(d->id.url) ? ENR_DEVICE_TRANSPORT_MQTT : ENR_DEVICE_TRANSPORT_HTTPS);
    if (d->id.key_type == NULL || enr_key_type_parse(d->id.key_type, &d->key_type, &ignored) != ENR_OK)
        d->key_type = ENR_KEY_EC_P256;
    char path[DEV_PATH_MAX];
    const char *service = d->id.service_trust ? d->id.service_trust : DEV_SERVICE_TRUST;
    const char *ca = d->id.ca_trust ? d->id.ca_trust : DEV_CA_TRUST;
    replace(&d->trust_file, dev_path(path, sizeof path, d->store_dir, service) == 0 ? strdup(path) : NULL);
    replace(&d->ca_trust_file, dev_path(path, sizeof path, d->store_dir, ca) == 0 ? strdup(path) : NULL);
}

enr_code enr_device_open(const char *store_dir, const enr_device_config *overrides, enr_device **out,
                         enr_error *err)
{
    if (store_dir == NULL || out == NULL)
        return enr_error_set(err, ENR_E_USAGE, "enr_device_open: NULL argument");
    *out = NULL;
    enr_device *d = device_alloc();
    if (d == NULL)
        return enr_error_set(err, ENR_E_NOMEM, "out of memory");
    char *abs_store = absolute(store_dir);
    d->store_dir = abs_store != NULL ? dev_store_canonical(abs_store) : NULL;
    free(abs_store);
    enr_code rc = d->store_dir == NULL ? enr_error_set(err, ENR_E_NOMEM, "out of memory")
                                       : dev_identity_load(d->store_dir, &d->id, err);
    if (rc != ENR_OK) {
        enr_device_free(d);
        return rc;
    }
    d->from_store = true;
    adopt_saved_configuration(d);
    /* The saved URL and transport must still agree (an edited identity.json):
     * say so now rather than at the first renewal. */
    if ((rc = transport_of(d->id.url, d->transport, &d->transport, err)) != ENR_OK) {
        enr_error_prefix(err, "%s/%s", d->store_dir, DEV_IDENTITY_FILE);
        enr_device_free(d);
        return rc;
    }
    apply_tuning(d, overrides);
    if (overrides != NULL && overrides->renew_before_seconds > 0)
        d->renew_before_override = overrides->renew_before_seconds;
    *out = d;
    return ENR_OK;
}

/* ---- keys ---- */

typedef struct key_handle {
    enr_signer *signer;
    char *pin;
} key_handle;

static void key_close(key_handle *k)
{
    enr_signer_free(k->signer);
    enr_secret_free(k->pin);
    memset(k, 0, sizeof *k);
}

/* Opens the key, making it first when it does not exist yet. */
static enr_code key_open(enr_device *d, const char *ref, bool create, bool overwrite, key_handle *k, enr_error *err)
{
    memset(k, 0, sizeof *k);
    bool token = enr_key_ref_is_token(ref);
    enr_code rc;
    if (token && d->id.pkcs11_pin_file != NULL &&
        (rc = enr_secret_read_file(d->id.pkcs11_pin_file, &k->pin, err)) != ENR_OK)
        return rc;
    enr_token_options opts = {d->id.pkcs11_module, k->pin};
    if (overwrite || (create && !token && access(ref, F_OK) != 0)) {
        if (!token) {
            rc = enr_key_generate_file(d->key_type, ref, NULL, overwrite, err);
        } else {
            rc = enr_key_generate_token(d->key_type, ref, &opts, overwrite, err);
        }
        if (rc != ENR_OK) {
            key_close(k);
            return rc;
        }
        say(d, "made a new %s key (%s)", enr_key_type_name(d->key_type), token ? "in the token" : ref);
    }
    rc = enr_signer_open(ref, NULL, &opts, &k->signer, err);
    if (rc == ENR_E_NOTFOUND && token && create) {
        enr_error_clear(err);
        if ((rc = enr_key_generate_token(d->key_type, ref, &opts, false, err)) == ENR_OK) {
            say(d, "made a new %s key in the token", enr_key_type_name(d->key_type));
            rc = enr_signer_open(ref, NULL, &opts, &k->signer, err);
        }
    }
    if (rc != ENR_OK)
        key_close(k);
    return rc;
}

/* ---- one registration ---- */

typedef enum { CRED_BOOTSTRAP, CRED_OPERATIONAL } credential;

typedef struct exchange {
    enr_dps_register_response *answer; /* the final "assigned" answer */
    bool auth_refused;                 /* 401/403: the credential itself was refused */
    bool client_failed;                /* the TLS client (with its credential) could not be set up */
    bool unknown_operation;            /* a poll answered 404: the service lost the operation */
} exchange;

/* The CSR: CN = the registration id (DPS) or the thing name asked for
 * (AWS), clientAuth, signed by the device's key. */
static enr_code make_csr(enr_device *d, const char *cn, enr_signer *signer, enr_csr_format format,
                         unsigned char **out, size_t *out_len, enr_error *err)
{
    enr_csr_spec *spec = enr_csr_spec_new();
    enr_csr *csr = NULL;
    char dn[160];
    snprintf(dn, sizeof dn, "CN=%s", cn);
    enr_code rc = spec == NULL ? enr_error_set(err, ENR_E_NOMEM, "out of memory") : ENR_OK;
    if (rc == ENR_OK && (rc = enr_csr_spec_add_dn(spec, dn, err)) == ENR_OK &&
        (rc = enr_csr_spec_set_ext_key_usage(spec, "clientAuth", err)) == ENR_OK &&
        (rc = enr_csr_build(spec, signer, &csr, err)) == ENR_OK)
        rc = enr_csr_encode_alloc(csr, format, out, out_len, err);
    enr_csr_free(csr);
    enr_csr_spec_free(spec);
    return rc;
}

static enr_code make_body(enr_device *d, enr_signer *signer, char **out, enr_error *err)
{
    unsigned char *b64 = NULL;
    size_t b64_len = 0;
    enr_code rc = make_csr(d, d->id.registration_id, signer, ENR_CSR_BASE64, &b64, &b64_len, err);
    if (rc == ENR_OK) {
        json_t *o = json_pack("{s:s,s:s%}", "registrationId", d->id.registration_id, "csr", (const char *)b64,
                              b64_len);
        *out = o ? json_dumps(o, JSON_COMPACT) : NULL;
        json_decref(o);
        if (*out == NULL)
            rc = enr_error_set(err, ENR_E_NOMEM, "out of memory");
    }
    free(b64);
    return rc;
}

static enr_code sas_header(enr_device *d, char **out, enr_error *err)
{
    char *key = NULL, *device_key = NULL;
    enr_code rc = enr_secret_read_file(d->id.symmetric_key_file, &key, err);
    if (rc == ENR_OK && d->auth == ENR_DEVICE_AUTH_GROUP_KEY)
        rc = enr_sas_derive_device_key(key, d->id.registration_id, &device_key, err);
    if (rc == ENR_OK)
        rc = enr_sas_token_make(d->id.id_scope, d->id.registration_id, device_key ? device_key : key,
                                time(NULL) + SAS_LIFETIME_SECONDS, out, err);
    enr_sas_secret_free(device_key);
    enr_secret_free(key);
    return rc;
}

/* The transport for one registration. A key in a token signs the TLS
 * handshake inside the token (tls_key.h): the operational key through
 * `signer`, already open for the CSR (a token key is never rotated, so it is
 * the operational certificate's key), a bootstrap key through `boot`, which
 * is opened here and which the caller closes after the link. */
static enr_code tls_for(enr_device *d, credential cred, enr_signer *signer, key_handle *boot,
                        enr_http_client_options *tls, char *chain, size_t chain_cap, enr_error *err)
{
    memset(tls, 0, sizeof *tls);
    tls->trust_file = d->trust_file;
    if (cred == CRED_OPERATIONAL) {
        if (d->id.chain == NULL || dev_path(chain, chain_cap, d->store_dir, d->id.chain) != 0)
            return enr_error_set(err, ENR_E_NOTFOUND, "no operational certificate to authenticate with");
        tls->client_cert_file = chain;
        if (enr_key_ref_is_token(d->id.key_ref))
            tls->client_signer = signer;
        else
            tls->client_key_file = d->id.key_ref;
    } else if (d->auth == ENR_DEVICE_AUTH_X509) {
        tls->client_cert_file = d->id.bootstrap_cert_file;
        if (enr_key_ref_is_token(d->id.bootstrap_key_file)) {
            enr_code rc = key_open(d, d->id.bootstrap_key_file, false, false, boot, err);
            if (rc != ENR_OK) {
                enr_error_prefix(err, "bootstrap key");
                return rc;
            }
            tls->client_signer = boot->signer;
        } else {
            tls->client_key_file = d->id.bootstrap_key_file;
        }
    }
    return ENR_OK;
}

static enr_code link_for(enr_device *d, credential cred, enr_signer *signer, key_handle *boot, dev_link **out,
                         enr_error *err)
{
    dev_link_options o = {.url = d->id.url, .id_scope = d->id.id_scope, .registration_id = d->id.registration_id,
                          .api_version = d->id.api_version, .timeout_ms = d->timeout_ms};
    char chain[DEV_PATH_MAX];
    enr_code rc = tls_for(d, cred, signer, boot, &o.tls, chain, sizeof chain, err);
    if (rc != ENR_OK)
        return rc;
    return d->transport == ENR_DEVICE_TRANSPORT_MQTT ? dev_link_mqtt_new(&o, out, err)
                                                     : dev_link_https_new(&o, out, err);
}

/* How messages name a status: HTTP's, or the one of the MQTT answer topic. */
static const char *status_kind(const enr_device *d)
{
    return d->transport == ENR_DEVICE_TRANSPORT_MQTT ? "MQTT status" : "HTTP";
}

/* Judges one answer (an HTTP status, or the status of an MQTT answer topic,
 * with the same JSON). ENR_OK with *done (assigned) or !*done (poll
 * *op_id); ENR_E_IO with *retry for what waiting may cure. */
static enr_code judge(enr_device *d, const dev_reply *resp, exchange *x, bool *done, bool *retry,
                      char *op_id, size_t op_cap, enr_error *err)
{
    *done = false;
    *retry = false;
    enr_dps_register_response *r = NULL;
    enr_error perr;
    bool parsed = enr_dps_register_response_parse(resp->body, resp->body_len, &r, &perr) == ENR_OK;
    if (resp->status == 429 || resp->status >= 500) {
        *retry = true;
        enr_error_set(err, ENR_E_IO, "the service is busy or failing (%s %d%s%s)", status_kind(d), resp->status,
                      parsed && enr_dps_response_error_message(r) ? ": " : "",
                      parsed && enr_dps_response_error_message(r) ? enr_dps_response_error_message(r) : "");
        enr_dps_register_response_free(r);
        return ENR_E_IO;
    }
    if (resp->status != 200 && resp->status != 202) {
        x->auth_refused = resp->status == 401 || resp->status == 403;
        /* A poll (op_id set) of an operation the service does not know (it
         * restarted, expired it, or another instance answered): not a
         * verdict on the device, so the caller registers again. */
        x->unknown_operation = op_id[0] != '\0' &&
                               (resp->status == 404 || (parsed && enr_dps_response_error_code(r) == 404003));
        /* A refused credential carries its reason, so that no caller has to
         * read the status out of a message to stop retrying it. */
        enr_reason why = x->auth_refused ? ENR_R_AUTH_REFUSED : ENR_R_NONE;
        if (parsed)
            enr_error_refuse(err, why, "the service refused the registration: %s %d, errorCode %d: %.300s",
                             status_kind(d), resp->status, enr_dps_response_error_code(r),
                             enr_dps_response_error_message(r) ? enr_dps_response_error_message(r) : "(no message)");
        else
            enr_error_refuse(err, why, "the service refused the registration: %s %d", status_kind(d), resp->status);
        enr_dps_register_response_free(r);
        return ENR_E_POLICY;
    }
    if (!parsed)
        return enr_error_set(err, ENR_E_PARSE, "the service's answer (%s %d) is not a DPS registration answer: %s",
                             status_kind(d), resp->status, perr.message);
    enr_dps_status st = enr_dps_response_status(r);
    if (st == ENR_DPS_STATUS_ASSIGNED) {
        const char *rid = enr_dps_response_registration_id(r);
        if (rid != NULL && !enr_dps_registration_id_equal(rid, d->id.registration_id)) {
            enr_dps_register_response_free(r);
            return enr_error_set(err, ENR_E_VERIFY, "the answer is for registration '%.128s', not '%s'", rid,
                                 d->id.registration_id);
        }
        x->answer = r;
        *done = true;
        return ENR_OK;
    }
    if (st == ENR_DPS_STATUS_ASSIGNING) {
        const char *op = enr_dps_response_operation_id(r);
        enr_code rc = ENR_OK;
        if (op == NULL || strlen(op) >= op_cap || enr_dps_registration_id_check(op, strlen(op), NULL) != ENR_OK)
            rc = enr_error_set(err, ENR_E_PARSE, "the service answered 'assigning' without a usable operationId");
        else
            snprintf(op_id, op_cap, "%s", op);
        enr_dps_register_response_free(r);
        return rc;
    }
    enr_error_set(err, ENR_E_POLICY, "registration %s: errorCode %d: %.300s", enr_dps_status_name(st),
                  enr_dps_response_error_code(r),
                  enr_dps_response_error_message(r) ? enr_dps_response_error_message(r) : "(no message)");
    enr_dps_register_response_free(r);
    return ENR_E_POLICY;
}

static long backoff_ms(const enr_device *d, int attempt, long retry_after_s)
{
    long base = d->backoff_initial_ms;
    for (int i = 1; i < attempt && base < d->backoff_max_ms; i++)
        base *= 2;
    if (base > d->backoff_max_ms)
        base = d->backoff_max_ms;
    unsigned int r = 0;
    (void)RAND_bytes((unsigned char *)&r, sizeof r);
    /* "Equal jitter": half fixed, half random, so a fleet that lost the
     * service together does not come back in lockstep. */
    long wait = base / 2 + (long)(r % (unsigned long)(base / 2 + 1));
    if (retry_after_s > 0 && retry_after_s * 1000 > wait)
        wait = retry_after_s * 1000 > d->backoff_max_ms ? d->backoff_max_ms : retry_after_s * 1000;
    return wait;
}

/* Register, then poll the operation until it is final; each step retried
 * on connection errors, 5xx and 429. The same over both transports: the
 * link (link.h) only carries the requests. */
static enr_code do_register(enr_device *d, enr_signer *signer, credential cred, exchange *x, enr_error *err)
{
    memset(x, 0, sizeof *x);
    char *body = NULL, *token = NULL;
    dev_link *link = NULL;
    key_handle boot = {0};
    enr_code rc = make_body(d, signer, &body, err);
    bool sas = cred == CRED_BOOTSTRAP &&
               (d->auth == ENR_DEVICE_AUTH_DEVICE_KEY || d->auth == ENR_DEVICE_AUTH_GROUP_KEY);
    if (rc == ENR_OK && (rc = link_for(d, cred, signer, &boot, &link, err)) != ENR_OK)
        x->client_failed = true;
    char op_id[ENR_DPS_OPERATION_ID_MAX + 1] = "";
    int attempt = 0, polls = 0, restarts = 0;
    long retry_after = 0;
    while (rc == ENR_OK) {
        if (sas && (rc = sas_header(d, &token, err)) != ENR_OK)
            break;
        dev_reply resp = {0};
        attempt++;
        rc = dev_link_send(link, op_id, body, token, &resp, err);
        enr_sas_secret_free(token);
        token = NULL;
        bool done = false, retry = rc == ENR_E_IO;
        retry_after = 0;
        if (rc == ENR_E_POLICY && err->reason == ENR_R_AUTH_REFUSED)
            x->auth_refused = true; /* at MQTT CONNECT: never retried */
        if (rc == ENR_OK) {
            retry_after = resp.retry_after;
            rc = judge(d, &resp, x, &done, &retry, op_id, sizeof op_id, err);
        }
        dev_reply_free(&resp);
        if (rc == ENR_OK && done)
            break;
        if (rc == ENR_E_POLICY && x->unknown_operation && ++restarts < d->max_attempts) {
            say(d, "the service does not know operation %s (%s): registering again", op_id, err->message);
            x->unknown_operation = false;
            op_id[0] = '\0';
            enr_error_clear(err);
            rc = ENR_OK;
            continue;
        }
        if (rc == ENR_OK) {
            /* 202 assigning: poll after Retry-After (1..60 s). */
            if (++polls > POLLS_MAX) {
                rc = enr_error_set(err, ENR_E_IO, "the registration was still 'assigning' after %d polls", POLLS_MAX);
                break;
            }
            long wait = retry_after >= 1 ? (retry_after > 60 ? 60 : retry_after) * 1000 : 2000;
            say(d, "registration assigning (operation %s): polling in %ld ms", op_id, wait);
            attempt = 0;
            if (!pause_ms(d, wait))
                rc = enr_error_set(err, ENR_E_IO, "interrupted");
            continue;
        }
        if (!retry || attempt >= d->max_attempts)
            break;
        long wait = backoff_ms(d, attempt, retry_after);
        say(d, "attempt %d of %d failed: %s; retrying in %ld ms", attempt, d->max_attempts, err->message, wait);
        if (!pause_ms(d, wait))
            break;
        rc = ENR_OK;
    }
    enr_sas_secret_free(token);
    dev_link_free(link);
    key_close(&boot); /* after the link, which borrowed its signer */
    free(body);
    return rc;
}

/* ---- AWS IoT fleet provisioning (link_aws.h) ---- */

typedef struct aws_result {
    char cn[DEV_AWS_THING_NAME_MAX + 1]; /* what the CSR asked for */
    dev_aws_created created;       /* CreateCertificateFromCsr's answer */
    dev_aws_registered registered; /* RegisterThing's */
} aws_result;

static void aws_result_clear(aws_result *r)
{
    dev_aws_created_clear(&r->created);
    dev_aws_registered_clear(&r->registered);
}

/* RegisterThing's request from the saved parameters (a JSON object's text). */
static char *aws_register_payload(const enr_device *d, const char *token)
{
    json_t *params = d->id.aws_params != NULL ? json_loads(d->id.aws_params, JSON_REJECT_DUPLICATES, NULL) : NULL;
    const char *names[DEV_AWS_PARAMS_MAX], *values[DEV_AWS_PARAMS_MAX];
    size_t n = 0;
    const char *k;
    json_t *v;
    json_object_foreach(params, k, v) {
        if (n < DEV_AWS_PARAMS_MAX && json_is_string(v)) {
            names[n] = k;
            values[n++] = json_string_value(v);
        }
    }
    char *out = dev_aws_register_request(token, names, values, n);
    json_decref(params);
    return out;
}

static void wipe_free(char *s)
{
    if (s != NULL)
        OPENSSL_cleanse(s, strlen(s));
    free(s);
}

/* One call's answer judged: accepted (ENR_OK, the body in *a), or the
 * rejection as a typed error (*retry when waiting may cure it). */
static enr_code aws_judge(enr_aws_fleet_call call, const dev_aws_answer *a, bool *retry, enr_error *err)
{
    if (a->accepted)
        return ENR_OK;
    dev_aws_rejected rej;
    enr_code rc = dev_aws_rejected_parse(a->body, a->len, &rej, err);
    if (rc != ENR_OK) {
        enr_error_prefix(err, "the service rejected %s with an answer that is not a rejection document",
                         dev_aws_call_name(call));
        return rc;
    }
    return dev_aws_rejection_error(call, &rej, retry, err);
}

/* CreateCertificateFromCsr then RegisterThing, on one connection. */
static enr_code aws_once(enr_device *d, dev_aws_link *link, const char *csr_payload, aws_result *res, bool *retry,
                         enr_error *err)
{
    *retry = false;
    aws_result_clear(res);
    dev_aws_answer a = {0};
    enr_code rc = dev_aws_link_call(link, ENR_AWS_FLEET_CREATE_FROM_CSR, csr_payload, false, &a, err);
    if (rc == ENR_OK && (rc = aws_judge(ENR_AWS_FLEET_CREATE_FROM_CSR, &a, retry, err)) == ENR_OK)
        rc = dev_aws_created_parse(a.body, a.len, &res->created, err);
    dev_aws_answer_clear(&a);
    if (rc == ENR_E_IO)
        *retry = true;
    if (rc != ENR_OK)
        return rc;
    say(d, "certificate %s created; registering the thing with template %s", res->created.certificate_id,
        d->id.aws_template);
    char *payload = aws_register_payload(d, res->created.ownership_token);
    if (payload == NULL)
        return enr_error_set(err, ENR_E_NOMEM, "out of memory");
    rc = dev_aws_link_call(link, ENR_AWS_FLEET_REGISTER_THING, payload, true, &a, err);
    wipe_free(payload); /* it holds the ownership token */
    if (rc == ENR_OK && (rc = aws_judge(ENR_AWS_FLEET_REGISTER_THING, &a, retry, err)) == ENR_OK)
        rc = dev_aws_registered_parse(a.body, a.len, &res->registered, err);
    dev_aws_answer_clear(&a);
    if (rc == ENR_E_IO)
        *retry = true;
    return rc;
}

/* The AWS exchange with one credential, retried as do_register retries:
 * connection errors, timeouts, 429 and 5xx with bounded backoff; a refusal
 * never. A retry starts again from CreateCertificateFromCsr (a token is
 * bound to its connection, and a lost one is gone with it); a certificate
 * created but never registered stays pending at the service until its
 * token expires. */
static enr_code do_aws(enr_device *d, enr_signer *signer, credential cred, exchange *x, aws_result *res,
                       enr_error *err)
{
    memset(x, 0, sizeof *x);
    unsigned char *pem = NULL;
    size_t pem_len = 0;
    char *csr_payload = NULL;
    dev_aws_link *link = NULL;
    key_handle boot = {0};
    /* The CN asked for: with the claim, the name provisioning was given;
     * with the device's own certificate, its thing's name (a renewal keeps
     * it, and a service may refuse a renewal that names another). */
    snprintf(res->cn, sizeof res->cn, "%s",
             cred == CRED_OPERATIONAL && d->id.thing_name != NULL && dev_aws_thing_name_valid(d->id.thing_name) &&
                     strlen(d->id.thing_name) <= AWS_CN_MAX
                 ? d->id.thing_name
                 : d->id.registration_id);
    enr_code rc = make_csr(d, res->cn, signer, ENR_CSR_PEM, &pem, &pem_len, err);
    if (rc == ENR_OK && (csr_payload = dev_aws_csr_request((const char *)pem)) == NULL)
        rc = enr_error_set(err, ENR_E_NOMEM, "out of memory");
    free(pem);
    if (rc == ENR_OK) {
        enr_http_client_options tls;
        char chain[DEV_PATH_MAX];
        if ((rc = tls_for(d, cred, signer, &boot, &tls, chain, sizeof chain, err)) == ENR_OK)
            rc = dev_aws_link_new(d->id.url, res->cn, &tls, d->timeout_ms, d->id.aws_template, &link,
                                  err);
        if (rc != ENR_OK)
            x->client_failed = true;
    }
    int attempt = 0;
    while (rc == ENR_OK) {
        bool retry = false;
        attempt++;
        rc = aws_once(d, link, csr_payload, res, &retry, err);
        if (rc == ENR_OK)
            break;
        if (rc == ENR_E_POLICY && err->reason == ENR_R_AUTH_REFUSED)
            x->auth_refused = true; /* at CONNECT or by a rejection: never retried */
        if (!retry || attempt >= d->max_attempts)
            break;
        long wait = backoff_ms(d, attempt, 0);
        say(d, "attempt %d of %d failed: %s; retrying in %ld ms", attempt, d->max_attempts, err->message, wait);
        if (!pause_ms(d, wait))
            break;
        rc = ENR_OK;
    }
    if (rc != ENR_OK)
        aws_result_clear(res);
    dev_aws_link_free(link);
    key_close(&boot); /* after the link, which borrowed its signer */
    free(csr_payload);
    return rc;
}

/* ---- checking what came back ---- */

static enr_code load_roots(const char *path, STACK_OF(X509) **out, enr_error *err)
{
    enr_code rc = enr_cert_read_file(path, out, err);
    if (rc != ENR_OK)
        enr_error_prefix(err, "CA trust anchor");
    return rc;
}

/* AWS answers the leaf alone (certificatePem): the issuing intermediates
 * come from the CA trust bundle (--ca-trust: intermediate(s) + root), each
 * appended while it issued the last certificate of the chain, so the
 * stored chain is what a TLS client sends. Nothing is trusted by this:
 * the chain is verified to the bundle's self-signed roots afterwards. */
static enr_code complete_chain(STACK_OF(X509) *chain, STACK_OF(X509) *bundle, enr_error *err)
{
    for (int depth = 0; depth < 8; depth++) {
        X509 *last = sk_X509_value(chain, sk_X509_num(chain) - 1);
        if (X509_check_issued(last, last) == X509_V_OK)
            return ENR_OK; /* a root: the chain is whole */
        X509 *issuer = NULL;
        for (int i = 0; issuer == NULL && i < sk_X509_num(bundle); i++) {
            X509 *c = sk_X509_value(bundle, i);
            bool have = false;
            for (int j = 0; !have && j < sk_X509_num(chain); j++)
                have = X509_cmp(c, sk_X509_value(chain, j)) == 0;
            if (!have && X509_check_issued(c, c) != X509_V_OK && X509_check_issued(c, last) == X509_V_OK)
                issuer = c;
        }
        if (issuer == NULL)
            return ENR_OK; /* issued by a root of the bundle, or by nothing there: verification says */
        if (!X509_up_ref(issuer) || !sk_X509_push(chain, issuer)) {
            X509_free(issuer);
            return enr_error_set(err, ENR_E_NOMEM, "out of memory");
        }
    }
    return ENR_OK;
}

/* The answer checked before anything is stored (docs/device.md, step 6):
 * the chain of a DPS answer `r`, or AWS's certificatePem `aws_pem` with
 * the intermediates of the CA trust bundle. */
static enr_code check_issued(enr_device *d, const enr_dps_register_response *r, const char *aws_pem,
                             const char *aws_cn, enr_signer *signer, STACK_OF(X509) **chain_out, enr_error *err)
{
    *chain_out = NULL;
    STACK_OF(X509) *chain = NULL;
    STACK_OF(X509) *roots = NULL;
    if (aws_pem != NULL) {
        enr_code rc = enr_cert_read_all((const unsigned char *)aws_pem, strlen(aws_pem), &chain, err);
        if (rc == ENR_OK && (rc = load_roots(d->ca_trust_file, &roots, err)) == ENR_OK)
            rc = complete_chain(chain, roots, err);
        sk_X509_pop_free(roots, X509_free);
        roots = NULL;
        if (rc != ENR_OK) {
            if (rc == ENR_E_PARSE)
                enr_error_prefix(err, "the certificatePem the service issued");
            sk_X509_pop_free(chain, X509_free);
            return rc;
        }
    } else if ((chain = sk_X509_new_null()) == NULL) {
        return enr_error_set(err, ENR_E_NOMEM, "out of memory");
    }
    size_t n = aws_pem != NULL ? 0 : enr_dps_response_chain_len(r);
    enr_code rc = ENR_OK;
    for (size_t i = 0; i < n && rc == ENR_OK; i++) {
        size_t len = 0;
        const unsigned char *der = enr_dps_response_chain_der(r, i, &len);
        X509 *c = NULL;
        rc = enr_cert_read_one(der, len, &c, err);
        if (rc == ENR_OK && !sk_X509_push(chain, c)) {
            X509_free(c);
            rc = enr_error_set(err, ENR_E_NOMEM, "out of memory");
        }
    }
    if (rc == ENR_OK && n == 0 && aws_pem == NULL) {
        size_t len = 0;
        const unsigned char *der = enr_dps_response_client_certificate(r, &len);
        X509 *c = NULL;
        if (der == NULL)
            rc = enr_error_set(err, ENR_E_POLICY,
                               "the service assigned the device but issued no certificate (does the enrollment "
                               "have a credential policy?)");
        else if ((rc = enr_cert_read_one(der, len, &c, err)) == ENR_OK && !sk_X509_push(chain, c)) {
            X509_free(c);
            rc = enr_error_set(err, ENR_E_NOMEM, "out of memory");
        }
    }
    if (rc != ENR_OK) {
        if (rc == ENR_E_PARSE)
            enr_error_prefix(err, "issued certificate");
        goto done;
    }
    X509 *leaf = sk_X509_value(chain, 0);
    char *cn = enr_name_common_name(X509_get_subject_name(leaf));
    /* DPS registration ids compare without case; AWS issues the CSR's CN as it is. */
    const char *want = aws_pem != NULL ? aws_cn : d->id.registration_id;
    bool cn_ok = cn != NULL && (aws_pem != NULL ? strcmp(cn, want) == 0
                                                : enr_dps_registration_id_equal(cn, d->id.registration_id));
    if (!cn_ok) {
        rc = enr_error_set(err, ENR_E_VERIFY, "the issued certificate names CN '%.128s', not the %s '%s'",
                           cn ? cn : "(none)", aws_pem != NULL ? "thing name asked for" : "registration id", want);
        free(cn);
        goto done;
    }
    free(cn);
    if (!enr_pubkey_equal(X509_get0_pubkey(leaf), enr_signer_public_key(signer))) {
        rc = enr_error_set(err, ENR_E_VERIFY,
                           "the issued certificate is for another public key than the device's key");
        goto done;
    }
    if ((rc = load_roots(d->ca_trust_file, &roots, err)) != ENR_OK)
        goto done;
    STACK_OF(X509) *untrusted = sk_X509_new_null();
    for (int i = 1; untrusted != NULL && i < sk_X509_num(chain); i++)
        (void)sk_X509_push(untrusted, sk_X509_value(chain, i));
    enr_verify_options vo = {.roots = roots, .untrusted = untrusted, .purpose = ENR_PURPOSE_CLIENT,
                             .at = now_of(d)};
    enr_verify_result vr;
    rc = enr_cert_verify(leaf, &vo, &vr, err);
    sk_X509_free(untrusted);
    if (rc != ENR_OK) {
        enr_error_prefix(err, "the issued certificate does not verify to the CA trust anchor (%s)", vr.reason_name);
        goto done;
    }
    *chain_out = chain;
    chain = NULL;
done:
    sk_X509_pop_free(chain, X509_free);
    sk_X509_pop_free(roots, X509_free);
    return rc;
}

/* ---- storing ---- */

static enr_code pem_of(STACK_OF(X509) *certs, int from, int to, bool skip_self_signed, char **out, size_t *len,
                       enr_error *err)
{
    BIO *b = BIO_new(BIO_s_mem());
    if (b == NULL)
        return enr_error_set(err, ENR_E_NOMEM, "out of memory");
    for (int i = from; i < to; i++) {
        X509 *c = sk_X509_value(certs, i);
        if (skip_self_signed && i > 0 && X509_check_issued(c, c) == X509_V_OK)
            continue;
        if (!PEM_write_bio_X509(b, c)) {
            BIO_free(b);
            return enr_error_openssl(err, ENR_E_CRYPTO, "cannot encode a certificate");
        }
    }
    char *p = NULL;
    long n = BIO_get_mem_data(b, &p);
    *out = malloc((size_t)n + 1);
    if (*out != NULL) {
        memcpy(*out, p, (size_t)n);
        (*out)[n] = '\0';
        *len = (size_t)n;
    }
    BIO_free(b);
    return *out ? ENR_OK : enr_error_set(err, ENR_E_NOMEM, "out of memory");
}

static enr_code write_store_file(enr_device *d, const char *name, const char *data, size_t len, enr_error *err)
{
    char path[DEV_PATH_MAX];
    if (dev_path(path, sizeof path, d->store_dir, name) != 0)
        return enr_error_set(err, ENR_E_USAGE, "store path too long");
    return enr_file_write_atomic(path, data, len, 0644, true, err);
}

static enr_code copy_into_store(enr_device *d, const char *src, const char *name, enr_error *err)
{
    char path[DEV_PATH_MAX];
    if (dev_path(path, sizeof path, d->store_dir, name) != 0)
        return enr_error_set(err, ENR_E_USAGE, "store path too long");
    if (strcmp(src, path) == 0)
        return ENR_OK;
    enr_buf b;
    enr_code rc = enr_file_read(src, ENR_INPUT_LIMIT, &b, err);
    if (rc == ENR_OK) {
        rc = enr_file_write_atomic(path, b.data, b.len, 0644, true, err);
        enr_buf_free(&b);
    }
    return rc;
}

/* The spelling every output uses (enr_name_format: "O=Acme, CN=dev-1"), not
 * OpenSSL's "/O=Acme/CN=dev-1" oneline, which also truncates and cannot
 * show a '/' inside a value unambiguously. */
static char *name_text(const X509_NAME *n)
{
    return enr_name_format(n);
}

static char *serial_text(X509 *c)
{
    BIGNUM *bn = ASN1_INTEGER_to_BN(X509_get0_serialNumber(c), NULL);
    char *hex = bn ? BN_bn2hex(bn) : NULL;
    char *out = hex ? strdup(hex) : NULL;
    OPENSSL_free(hex);
    BN_free(bn);
    return out;
}

/* A window given to this run wins, then one configured at provisioning (an
 * operator's decision for this device), then the service's hint, then 2/3
 * of the lifetime. A run's window at least as long as the lifetime means
 * "now" (a forced renewal); a saved one that long would renew at every
 * check, forever, so it is ignored. */
static time_t renew_time(const dev_identity *id, long override)
{
    if (id->generation == 0)
        return 0;
    long lifetime = (long)(id->not_after - id->not_before);
    if (override > 0)
        return override >= lifetime ? id->not_before : id->not_after - override;
    if (id->renew_before > 0 && id->renew_before < lifetime)
        return id->not_after - id->renew_before;
    if (id->service_renew_after > 0 && id->service_renew_after < id->not_after)
        return id->service_renew_after;
    return id->not_before + (id->not_after - id->not_before) * 2 / 3;
}

time_t enr_device_renew_at(const enr_device *d)
{
    return d != NULL ? renew_time(&d->id, d->renew_before_override) : 0;
}

/* Records an outcome. On disk only the last-result fields change: a failed
 * provisioning with a new configuration (another key, another URL) must not
 * pair the old certificate with the new settings. */
static void record(enr_device *d, bool ok, const char *message)
{
    replace(&d->id.last_result, strdup(ok ? "ok" : "error"));
    replace(&d->id.last_message, strdup(message));
    d->id.last_attempt = now_of(d);
    if (ok)
        d->id.last_success = d->id.last_attempt;
    enr_error e;
    if (dev_store_prepare(d->store_dir, &e) != ENR_OK)
        return;
    dev_identity disk;
    enr_code lrc = dev_identity_load(d->store_dir, &disk, &e);
    if (lrc == ENR_OK && disk.generation > 0) {
        replace(&disk.last_result, strdup(d->id.last_result));
        replace(&disk.last_message, strdup(message));
        disk.last_attempt = d->id.last_attempt;
        if (ok)
            disk.last_success = d->id.last_success;
        (void)dev_identity_save(d->store_dir, &disk, &e);
    } else if (lrc == ENR_OK || lrc == ENR_E_NOTFOUND) {
        /* No identity yet: keep the configuration so the agent can retry. */
        (void)dev_identity_save(d->store_dir, &d->id, &e);
    } /* else a damaged identity.json: left alone for a person to look at */
    if (lrc == ENR_OK)
        dev_identity_free(&disk);
}

/* New generation files first (each synced), then one rename of
 * identity.json makes them current. Until that rename the old identity is
 * the one every reader sees, on disk and in memory: the new record is built
 * on a copy and swapped in only once it is saved. */
static enr_code commit(enr_device *d, STACK_OF(X509) *chain, const enr_dps_register_response *r,
                       const dev_aws_registered *reg, const char *key_ref, enr_error *err)
{
    long gen = d->id.generation + 1;
    char cert_name[64], chain_name[64], bundle_name[64], service_name[64], ca_name[64];
    snprintf(cert_name, sizeof cert_name, "cert-%ld.pem", gen);
    snprintf(chain_name, sizeof chain_name, "chain-%ld.pem", gen);
    snprintf(bundle_name, sizeof bundle_name, "bundle-%ld.pem", gen);
    /* The anchors are generation files too: rewriting the current ones in
     * place would change the running identity's trust before the switch. */
    snprintf(service_name, sizeof service_name, "service-trust-%ld.pem", gen);
    snprintf(ca_name, sizeof ca_name, "ca-trust-%ld.pem", gen);
    char *pem = NULL;
    size_t len = 0;
    enr_code rc = pem_of(chain, 0, 1, false, &pem, &len, err);
    if (rc == ENR_OK)
        rc = write_store_file(d, cert_name, pem, len, err);
    free(pem);
    pem = NULL;
    /* What a TLS client sends: the leaf and its intermediates, no root. */
    if (rc == ENR_OK && (rc = pem_of(chain, 0, sk_X509_num(chain), true, &pem, &len, err)) == ENR_OK)
        rc = write_store_file(d, chain_name, pem, len, err);
    free(pem);
    pem = NULL;
    /* The trust bundle, kept for connecting to the hub: informational, never
     * used to trust the service or the chain (only configured anchors are). */
    bool bundle = false;
    if (rc == ENR_OK && r != NULL && enr_dps_response_trust_bundle_len(r) > 0) {
        STACK_OF(X509) *b = sk_X509_new_null();
        for (size_t i = 0; b != NULL && rc == ENR_OK && i < enr_dps_response_trust_bundle_len(r); i++) {
            size_t l = 0;
            const unsigned char *der = enr_dps_response_trust_bundle_der(r, i, &l);
            X509 *c = NULL;
            if (enr_cert_read_one(der, l, &c, NULL) == ENR_OK && !sk_X509_push(b, c))
                X509_free(c);
        }
        if (b != NULL && sk_X509_num(b) > 0 && (rc = pem_of(b, 0, sk_X509_num(b), false, &pem, &len, err)) == ENR_OK) {
            rc = write_store_file(d, bundle_name, pem, len, err);
            bundle = rc == ENR_OK;
        }
        free(pem);
        sk_X509_pop_free(b, X509_free);
    }
    if (rc == ENR_OK && (rc = copy_into_store(d, d->trust_file, service_name, err)) == ENR_OK)
        rc = copy_into_store(d, d->ca_trust_file, ca_name, err);
    if (rc != ENR_OK)
        return rc;
    const char *crash = getenv("ENROLL_DEVICE_TEST_CRASH");
    if (crash != NULL && strcmp(crash, "before-commit") == 0)
        _exit(70); /* tests: a power cut after the files, before the switch */

    dev_identity next;
    if ((rc = dev_identity_copy(&next, &d->id, err)) != ENR_OK)
        return rc;
    X509 *leaf = sk_X509_value(chain, 0);
    next.generation = gen;
    replace(&next.cert, strdup(cert_name));
    replace(&next.chain, strdup(chain_name));
    replace(&next.bundle, bundle ? strdup(bundle_name) : NULL);
    replace(&next.service_trust, strdup(service_name));
    replace(&next.ca_trust, strdup(ca_name));
    replace(&next.serial, serial_text(leaf));
    replace(&next.subject, name_text(X509_get_subject_name(leaf)));
    replace(&next.issuer, name_text(X509_get_issuer_name(leaf)));
    const char *hub = r != NULL ? enr_dps_response_assigned_hub(r) : NULL;
    replace(&next.assigned_hub, hub ? strdup(hub) : NULL);
    replace(&next.thing_name, reg != NULL ? strdup(reg->thing_name) : NULL);
    replace(&next.device_config, reg != NULL ? strdup(reg->device_configuration) : NULL);
    replace(&next.key_ref, strdup(key_ref));
    next.not_before = enr_asn1_time_to_time_t(X509_get0_notBefore(leaf));
    next.not_after = enr_asn1_time_to_time_t(X509_get0_notAfter(leaf));
    const char *hint = r != NULL ? enr_dps_response_renew_after(r) : NULL;
    const char *window = r != NULL ? enr_dps_response_renewal_window(r) : NULL;
    time_t hint_at = 0;
    if (hint == NULL || enr_dps_time_parse(hint, &hint_at, NULL) != ENR_OK)
        hint_at = 0;
    next.service_renew_after = hint_at;
    replace(&next.service_window, window ? strdup(window) : NULL);
    next.renew_at = renew_time(&next, 0);
    char msg[512];
    if (reg != NULL)
        snprintf(msg, sizeof msg, "certificate %s issued by %s for thing %s", next.serial ? next.serial : "?",
                 next.issuer ? next.issuer : "?", reg->thing_name);
    else
        snprintf(msg, sizeof msg, "certificate %s issued by %s", next.serial ? next.serial : "?",
                 next.issuer ? next.issuer : "?");
    replace(&next.last_result, strdup("ok"));
    replace(&next.last_message, strdup(msg));
    next.last_attempt = next.last_success = now_of(d);
    if (next.cert == NULL || next.chain == NULL || next.service_trust == NULL || next.ca_trust == NULL ||
        next.key_ref == NULL || next.last_result == NULL || next.last_message == NULL ||
        (reg != NULL && (next.thing_name == NULL || next.device_config == NULL)))
        rc = enr_error_set(err, ENR_E_NOMEM, "out of memory");
    if (rc == ENR_OK)
        rc = dev_identity_save(d->store_dir, &next, err);
    if (rc != ENR_OK) {
        dev_identity_free(&next);
        return rc;
    }
    /* The key the new identity uses, and the previous one's (an application
     * may still be using the previous certificate until it reloads). */
    const char *keep[2] = {next.key_ref, d->id.key_ref};
    dev_store_prune(d->store_dir, gen, keep, 2);
    dev_identity_free(&d->id);
    d->id = next;
    if (d->id.renew_before > 0 && d->id.renew_before >= (long)(d->id.not_after - d->id.not_before))
        say(d, "the configured renewal window (%ld s) is not shorter than the certificate's lifetime: ignored",
            d->id.renew_before);
    char expires[32];
    enr_time_format(d->id.not_after, expires, sizeof expires);
    say(d, "new identity stored: generation %ld, serial %s, expires %s", gen, d->id.serial ? d->id.serial : "?",
        expires);
    return ENR_OK;
}

/* ---- provision and renew ---- */

#define LOCK_FILE ".lock"
#define LOCK_WAIT_MS (15L * 60 * 1000)
#define LOCK_STEP_MS 250L

/* One process at a time works on a store (load, register, commit): two
 * would pick the same next generation and overwrite each other's files, or
 * an agent would write back an identity a re-provisioning has replaced.
 * A second process waits (interruptibly, bounded) and says for whom. */
static enr_code store_lock(enr_device *d, int *fd_out, enr_error *err)
{
    *fd_out = -1;
    char path[DEV_PATH_MAX];
    if (dev_path(path, sizeof path, d->store_dir, LOCK_FILE) != 0)
        return enr_error_set(err, ENR_E_USAGE, "store path too long");
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd < 0)
        return enr_error_set(err, ENR_E_IO, "cannot open the store lock %s: %s", path, strerror(errno));
    long waited = 0;
    while (flock(fd, LOCK_EX | LOCK_NB) != 0) {
        if (errno == EINTR)
            continue;
        if (errno != EWOULDBLOCK) {
            enr_error_set(err, ENR_E_IO, "cannot lock the store %s: %s", path, strerror(errno));
            close(fd);
            return ENR_E_IO;
        }
        char holder[32] = "";
        ssize_t n = pread(fd, holder, sizeof holder - 1, 0);
        holder[n > 0 ? n : 0] = '\0';
        holder[strcspn(holder, "\n")] = '\0';
        if (waited == 0)
            say(d, "the store is in use by another enroll process (pid %s, %s): waiting for it",
                holder[0] ? holder : "?", path);
        if (waited >= LOCK_WAIT_MS || !pause_ms(d, LOCK_STEP_MS)) {
            close(fd);
            return enr_error_set(err, ENR_E_IO,
                                 "the store %s is in use by another enroll process (pid %s holds %s); gave up "
                                 "waiting for it",
                                 d->store_dir, holder[0] ? holder : "?", path);
        }
        waited += LOCK_STEP_MS;
    }
    /* Who holds it, for the message above (the lock is the flock, not this). */
    char pid[32];
    int len = snprintf(pid, sizeof pid, "%ld\n", (long)getpid());
    if (ftruncate(fd, 0) == 0)
        (void)!pwrite(fd, pid, (size_t)len, 0);
    *fd_out = fd;
    return ENR_OK;
}

static void store_unlock(int fd)
{
    if (fd >= 0)
        close(fd); /* releases the flock */
}

/* The certificate facts from a freshly read record, keeping this device's
 * configuration (a provisioning with new settings). */
static void adopt_state(dev_identity *dst, dev_identity *src)
{
    char **pairs[][2] = {{&dst->cert, &src->cert},       {&dst->chain, &src->chain},
                         {&dst->bundle, &src->bundle},   {&dst->service_trust, &src->service_trust},
                         {&dst->ca_trust, &src->ca_trust}, {&dst->serial, &src->serial},
                         {&dst->subject, &src->subject}, {&dst->issuer, &src->issuer},
                         {&dst->assigned_hub, &src->assigned_hub}, {&dst->service_window, &src->service_window},
                         {&dst->thing_name, &src->thing_name}, {&dst->device_config, &src->device_config}};
    for (size_t i = 0; i < sizeof pairs / sizeof pairs[0]; i++) {
        replace(pairs[i][0], *pairs[i][1]);
        *pairs[i][1] = NULL;
    }
    dst->generation = src->generation;
    dst->not_before = src->not_before;
    dst->not_after = src->not_after;
    dst->renew_at = src->renew_at;
    dst->service_renew_after = src->service_renew_after;
}

/* Under the lock: what the store holds now, not what it held when this
 * device was opened (another process may have renewed or re-provisioned). */
static enr_code reload(enr_device *d, enr_error *err)
{
    dev_identity disk;
    enr_code rc = dev_identity_load(d->store_dir, &disk, err);
    if (rc == ENR_E_NOTFOUND && !d->from_store) {
        enr_error_clear(err);
        return ENR_OK; /* nothing saved yet: a first provisioning */
    }
    if (rc != ENR_OK)
        return rc;
    if (d->from_store) {
        dev_identity_free(&d->id);
        d->id = disk;
        adopt_saved_configuration(d);
    } else {
        adopt_state(&d->id, &disk);
        dev_identity_free(&disk);
    }
    return ENR_OK;
}

/* Why the operational credential cannot be used, naming the file; false
 * when it looks usable (the TLS setup judges the contents). */
static bool operational_missing(const enr_device *d, char *why, size_t cap)
{
    char chain[DEV_PATH_MAX];
    if (d->id.chain == NULL || dev_path(chain, sizeof chain, d->store_dir, d->id.chain) != 0) {
        snprintf(why, cap, "the store names no operational certificate chain");
        return true;
    }
    if (access(chain, R_OK) != 0) {
        snprintf(why, cap, "the operational certificate chain %s is missing or unreadable (%s)", chain,
                 strerror(errno));
        return true;
    }
    if (!enr_key_ref_is_token(d->id.key_ref) && access(d->id.key_ref, R_OK) != 0) {
        snprintf(why, cap, "the device key %s is missing or unreadable (%s)", d->id.key_ref, strerror(errno));
        return true;
    }
    return false;
}

static enr_code register_and_store(enr_device *d, const char *key_ref, bool create_key, bool fresh_key,
                                   credential first, enr_error *err)
{
    key_handle k;
    enr_code rc = dev_store_prepare(d->store_dir, err);
    if (rc == ENR_OK)
        rc = key_open(d, key_ref, create_key, fresh_key, &k, err);
    if (rc != ENR_OK) {
        record(d, false, err->message);
        return rc;
    }
    char why[DEV_PATH_MAX + 128];
    if (first == CRED_OPERATIONAL && d->auth != ENR_DEVICE_AUTH_NONE && operational_missing(d, why, sizeof why)) {
        say(d, "cannot renew with the operational certificate: %s; using the bootstrap credential", why);
        first = CRED_BOOTSTRAP;
    }
    exchange x = {0};
    aws_result aws = {0};
    rc = is_aws(d) ? do_aws(d, k.signer, first, &x, &aws, err) : do_register(d, k.signer, first, &x, err);
    /* The service refused the certificate, or the local credential could
     * not even be set up (a corrupt chain, a key that does not match it):
     * the bootstrap credential is what it is kept for. */
    if (rc != ENR_OK && first == CRED_OPERATIONAL && d->auth != ENR_DEVICE_AUTH_NONE &&
        (x.auth_refused || x.client_failed)) {
        say(d, "renewal with the operational certificate failed (%s); using the bootstrap credential", err->message);
        enr_error_clear(err);
        rc = is_aws(d) ? do_aws(d, k.signer, CRED_BOOTSTRAP, &x, &aws, err)
                       : do_register(d, k.signer, CRED_BOOTSTRAP, &x, err);
    }
    STACK_OF(X509) *chain = NULL;
    if (rc == ENR_OK)
        rc = check_issued(d, x.answer, is_aws(d) ? aws.created.certificate_pem : NULL, aws.cn, k.signer, &chain,
                          err);
    if (rc == ENR_OK)
        rc = commit(d, chain, x.answer, is_aws(d) ? &aws.registered : NULL, key_ref, err);
    if (rc != ENR_OK) {
        say(d, "kept the previous identity: %s", err->message);
        record(d, false, err->message);
    }
    sk_X509_pop_free(chain, X509_free);
    enr_dps_register_response_free(x.answer);
    aws_result_clear(&aws);
    key_close(&k);
    return rc;
}

static enr_code provision_locked(enr_device *d, enr_error *err)
{
    char key_ref[DEV_PATH_MAX];
    snprintf(key_ref, sizeof key_ref, "%s", d->id.key_ref);
    return register_and_store(d, key_ref, true, false, CRED_BOOTSTRAP, err);
}

/* True when `name` in the store is `path` (the key named in the
 * configuration, made or read there before the first identity). */
static bool names_file(const char *store_dir, const char *name, const char *path)
{
    if (path == NULL || enr_key_ref_is_token(path))
        return false;
    char in_store[DEV_PATH_MAX];
    if (dev_path(in_store, sizeof in_store, store_dir, name) != 0)
        return false;
    char *a = realpath(in_store, NULL), *b = realpath(path, NULL);
    bool same = a != NULL && b != NULL && strcmp(a, b) == 0;
    free(a);
    free(b);
    return same;
}

/* A provisioning writes identity.json and its generation files into the
 * store: a directory holding other files and no identity, or another
 * registration's identity, is refused unless replace_store says so. */
static enr_code store_is_ours(const enr_device *d, enr_error *err)
{
    if (d->replace_store)
        return ENR_OK;
    dev_identity disk;
    enr_code rc = dev_identity_load(d->store_dir, &disk, err);
    if (rc == ENR_OK) {
        char other[ENR_DPS_REGISTRATION_ID_MAX + 1];
        snprintf(other, sizeof other, "%s", disk.registration_id ? disk.registration_id : "");
        dev_identity_free(&disk);
        /* Registration ids compare without case (docs/registration.md). */
        if (d->id.registration_id != NULL && enr_dps_registration_id_equal(other, d->id.registration_id))
            return ENR_OK;
        return enr_error_set(err, ENR_E_EXISTS,
                             "the store %s holds the identity of registration '%s', not '%s': give this device "
                             "its own store (--force replaces that identity)",
                             d->store_dir, other, d->id.registration_id ? d->id.registration_id : "");
    }
    if (rc != ENR_E_NOTFOUND)
        return rc;
    enr_error_clear(err);
    DIR *dir = opendir(d->store_dir);
    if (dir == NULL)
        return enr_error_set(err, ENR_E_IO, "cannot read the store %s: %s", d->store_dir, strerror(errno));
    char stranger[256] = "";
    for (struct dirent *e; stranger[0] == '\0' && (e = readdir(dir)) != NULL;) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0 || strcmp(e->d_name, LOCK_FILE) == 0 ||
            names_file(d->store_dir, e->d_name, d->id.key_ref))
            continue;
        snprintf(stranger, sizeof stranger, "%s", e->d_name);
    }
    closedir(dir);
    if (stranger[0] != '\0')
        return enr_error_set(err, ENR_E_EXISTS,
                             "%s is not a device store (it holds '%s' and no %s): give a new or empty directory "
                             "as the store (--force uses it anyway)",
                             d->store_dir, stranger, DEV_IDENTITY_FILE);
    return ENR_OK;
}

enr_code enr_device_provision(enr_device *d, enr_error *err)
{
    if (d == NULL)
        return enr_error_set(err, ENR_E_USAGE, "enr_device_provision: NULL argument");
    int lock = -1;
    enr_code rc = dev_store_prepare(d->store_dir, err);
    if (rc == ENR_OK)
        rc = store_lock(d, &lock, err);
    if (rc == ENR_OK)
        rc = store_is_ours(d, err);
    if (rc == ENR_OK && (rc = reload(d, err)) == ENR_OK)
        rc = provision_locked(d, err);
    store_unlock(lock);
    return rc;
}

static enr_code renew_locked(enr_device *d, time_t now, bool *renewed, enr_error *err)
{
    enr_code rc = reload(d, err);
    if (rc != ENR_OK)
        return rc;
    if (d->id.generation == 0) {
        say(d, "no certificate yet: provisioning with the bootstrap credential");
        rc = provision_locked(d, err);
        *renewed = rc == ENR_OK;
        return rc;
    }
    time_t at = renew_time(&d->id, d->renew_before_override);
    if (now < at)
        return ENR_OK;
    say(d, "certificate %s is due for renewal", d->id.serial ? d->id.serial : "?");
    char key_ref[DEV_PATH_MAX];
    bool fresh = false, create = false;
    credential first = CRED_OPERATIONAL;
    bool token = enr_key_ref_is_token(d->id.key_ref);
    if (d->rotate_key && !token) {
        char name[64];
        snprintf(name, sizeof name, "key-%ld.pem", d->id.generation + 1);
        if (dev_path(key_ref, sizeof key_ref, d->store_dir, name) != 0)
            return enr_error_set(err, ENR_E_USAGE, "store path too long");
        fresh = true;
    } else {
        if (d->rotate_key)
            say(d, "key rotation is for file keys only: renewing with the same token key");
        snprintf(key_ref, sizeof key_ref, "%s", d->id.key_ref);
        if (!token && access(key_ref, F_OK) != 0 && errno == ENOENT && d->auth != ENR_DEVICE_AUTH_NONE) {
            /* The certificate is useless without its key: a new key can only
             * be vouched for by the bootstrap credential. */
            say(d, "the device key %s is missing: making a new one and registering with the bootstrap credential",
                key_ref);
            create = true;
            first = CRED_BOOTSTRAP;
        }
    }
    rc = register_and_store(d, key_ref, create, fresh, first, err);
    *renewed = rc == ENR_OK;
    if (rc == ENR_OK && d->renew_before_override >= (long)(d->id.not_after - d->id.not_before)) {
        say(d, "the renewal window given to this run is not shorter than the certificate's lifetime: it forced "
               "this renewal only");
        d->renew_before_override = 0;
    }
    return rc;
}

enr_code enr_device_renew_if_due(enr_device *d, time_t now, bool *renewed, enr_error *err)
{
    if (d == NULL || renewed == NULL)
        return enr_error_set(err, ENR_E_USAGE, "enr_device_renew_if_due: NULL argument");
    *renewed = false;
    int lock = -1;
    enr_code rc = dev_store_prepare(d->store_dir, err);
    if (rc == ENR_OK && (rc = store_lock(d, &lock, err)) == ENR_OK)
        rc = renew_locked(d, now, renewed, err);
    store_unlock(lock);
    return rc;
}

/* ---- status and export ---- */

static void copy_field(char *dst, size_t cap, const char *src)
{
    snprintf(dst, cap, "%s", src ? src : "");
}

enr_code enr_device_status_read(const char *store_dir, enr_device_status *out, enr_error *err)
{
    if (store_dir == NULL || out == NULL)
        return enr_error_set(err, ENR_E_USAGE, "enr_device_status_read: NULL argument");
    memset(out, 0, sizeof *out);
    dev_identity id;
    enr_code rc = dev_identity_load(store_dir, &id, err);
    if (rc != ENR_OK)
        return rc;
    copy_field(out->registration_id, sizeof out->registration_id, id.registration_id);
    copy_field(out->url, sizeof out->url, id.url);
    copy_field(out->id_scope, sizeof out->id_scope, id.id_scope);
    copy_field(out->auth, sizeof out->auth, id.auth);
    copy_field(out->transport, sizeof out->transport,
               id.transport ? id.transport : (dev_url_is_mqtt(id.url) ? "mqtt" : "https"));
    copy_field(out->key_ref, sizeof out->key_ref, id.key_ref);
    copy_field(out->subject, sizeof out->subject, id.subject);
    copy_field(out->issuer, sizeof out->issuer, id.issuer);
    copy_field(out->serial, sizeof out->serial, id.serial);
    copy_field(out->assigned_hub, sizeof out->assigned_hub, id.assigned_hub);
    copy_field(out->protocol, sizeof out->protocol, id.protocol ? id.protocol : "dps");
    copy_field(out->template_name, sizeof out->template_name, id.aws_template);
    copy_field(out->thing_name, sizeof out->thing_name, id.thing_name);
    copy_field(out->last_result, sizeof out->last_result, id.last_result);
    copy_field(out->last_message, sizeof out->last_message, id.last_message);
    out->not_before = id.not_before;
    out->not_after = id.not_after;
    out->renew_at = renew_time(&id, 0);
    out->generation = id.generation;
    out->last_attempt = id.last_attempt;
    out->last_success = id.last_success;
    if (id.cert != NULL) {
        snprintf(out->cert_path, sizeof out->cert_path, "%s/%s", store_dir, id.cert);
        /* Names from the certificate itself when it reads: a store written
         * by an older version holds them in OpenSSL's oneline form, and
         * status must spell a DN as every other output does. */
        enr_buf b;
        X509 *leaf = NULL;
        if (enr_file_read(out->cert_path, ENR_INPUT_LIMIT, &b, NULL) == ENR_OK) {
            if (enr_cert_read_one(b.data, b.len, &leaf, NULL) == ENR_OK) {
                char *subject = enr_name_format(X509_get_subject_name(leaf));
                char *issuer = enr_name_format(X509_get_issuer_name(leaf));
                if (subject != NULL)
                    copy_field(out->subject, sizeof out->subject, subject);
                if (issuer != NULL)
                    copy_field(out->issuer, sizeof out->issuer, issuer);
                free(subject);
                free(issuer);
                X509_free(leaf);
            }
            enr_buf_free(&b);
        }
    }
    if (id.chain != NULL)
        snprintf(out->chain_path, sizeof out->chain_path, "%s/%s", store_dir, id.chain);
    dev_identity_free(&id);
    return ENR_OK;
}

static int no_passphrase(char *buf, int size, int rwflag, void *u)
{
    (void)buf;
    (void)size;
    (void)rwflag;
    (void)u;
    return -1; /* never prompt: the device's key file is not encrypted */
}

enr_code enr_device_export_pkcs12(const char *store_dir, const char *out_path, const char *passphrase,
                                  bool overwrite, enr_error *err)
{
    if (store_dir == NULL || out_path == NULL || passphrase == NULL || passphrase[0] == '\0')
        return enr_error_set(err, ENR_E_USAGE, "a store, an output file and a passphrase are required");
    dev_identity id;
    enr_code rc = dev_identity_load(store_dir, &id, err);
    if (rc != ENR_OK)
        return rc;
    EVP_PKEY *key = NULL;
    STACK_OF(X509) *chain = NULL;
    PKCS12 *p12 = NULL;
    unsigned char *der = NULL;
    char path[DEV_PATH_MAX];
    if (id.generation == 0 || id.chain == NULL) {
        rc = enr_error_set(err, ENR_E_NOTFOUND, "%s holds no certificate yet", store_dir);
        goto done;
    }
    if (enr_key_ref_is_token(id.key_ref)) {
        rc = enr_error_set(err, ENR_E_UNSUPPORTED,
                           "the key is in a PKCS#11 token and cannot leave it: nothing to export");
        goto done;
    }
    BIO *b = BIO_new_file(id.key_ref, "r");
    key = b ? PEM_read_bio_PrivateKey(b, NULL, no_passphrase, NULL) : NULL;
    BIO_free(b);
    if (key == NULL) {
        rc = enr_error_openssl(err, ENR_E_IO, "cannot read the device key %s", id.key_ref);
        goto done;
    }
    if (dev_path(path, sizeof path, store_dir, id.chain) != 0 || (rc = enr_cert_read_file(path, &chain, err)) != ENR_OK)
        goto done;
    X509 *leaf = sk_X509_shift(chain);
    p12 = PKCS12_create(passphrase, id.registration_id, key, leaf, chain, NID_aes_256_cbc, NID_aes_256_cbc,
                        PKCS12_DEFAULT_ITER, PKCS12_DEFAULT_ITER, 0);
    X509_free(leaf);
    int n = p12 ? i2d_PKCS12(p12, &der) : -1;
    if (n <= 0) {
        rc = enr_error_openssl(err, ENR_E_CRYPTO, "cannot build the PKCS#12 file");
        goto done;
    }
    rc = enr_file_write_atomic(out_path, der, (size_t)n, 0600, overwrite, err);
done:
    OPENSSL_free(der);
    PKCS12_free(p12);
    sk_X509_pop_free(chain, X509_free);
    EVP_PKEY_free(key);
    dev_identity_free(&id);
    return rc;
}
