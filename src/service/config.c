#include <jansson.h>
#include <libgen.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "enroll/fileio.h"
#include "enroll/provision.h"
#include "enroll/service.h"
#include "enroll/store.h"

void enr_service_config_free(enr_service_config *cfg)
{
    if (cfg == NULL)
        return;
    free(cfg->listen_host);
    free(cfg->store_location);
    free(cfg->id_scope);
    free(cfg->tls_cert);
    free(cfg->tls_key);
    free(cfg->tls_client_ca);
    free(cfg->admin_client_ca);
    free(cfg->mqtt.host);
    free(cfg->aws.host);
    free(cfg->crl_publish_dir);
    for (size_t i = 0; cfg->crl_reload_command != NULL && cfg->crl_reload_command[i] != NULL; i++)
        free(cfg->crl_reload_command[i]);
    free(cfg->crl_reload_command);
    free(cfg);
}

static bool key_known(const char *key, const char *const *known)
{
    for (; *known; known++)
        if (strcmp(key, *known) == 0)
            return true;
    return false;
}

static enr_code only_known_keys(json_t *obj, const char *where, const char *const *known, enr_error *err)
{
    const char *key;
    json_t *value;
    json_object_foreach(obj, key, value) {
        if (!key_known(key, known))
            return enr_error_set(err, ENR_E_PARSE, "config: unknown key \"%s\" in %s", key, where);
    }
    return ENR_OK;
}

static enr_code path_value(json_t *obj, const char *key, const char *where, const char *base_dir,
                           char **out, enr_error *err)
{
    json_t *v = json_object_get(obj, key);
    if (v == NULL)
        return ENR_OK;
    const char *s = json_string_value(v);
    if (s == NULL || s[0] == '\0')
        return enr_error_set(err, ENR_E_PARSE, "config: %s.%s must be a non-empty string", where, key);
    size_t n = strlen(s) + (base_dir ? strlen(base_dir) : 0) + 2;
    char *p = malloc(n);
    if (p == NULL)
        return enr_error_set(err, ENR_E_NOMEM, "out of memory");
    if (s[0] == '/' || base_dir == NULL)
        snprintf(p, n, "%s", s);
    else
        snprintf(p, n, "%s/%s", base_dir, s);
    *out = p;
    return ENR_OK;
}

static enr_code int_value(json_t *obj, const char *key, const char *where, long min, long max,
                          long *out, enr_error *err)
{
    json_t *v = json_object_get(obj, key);
    if (v == NULL)
        return ENR_OK;
    if (!json_is_integer(v) || json_integer_value(v) < min || json_integer_value(v) > max)
        return enr_error_set(err, ENR_E_PARSE, "config: %s.%s must be a whole number from %ld to %ld",
                             where, key, min, max);
    *out = (long)json_integer_value(v);
    return ENR_OK;
}

/* "host:port", "[v6]:port" */
static enr_code parse_listen_to(const char *text, char **host_out, int *port_out, enr_error *err)
{
    const char *colon = text[0] == '[' ? strstr(text, "]:") : strrchr(text, ':');
    if (colon == NULL)
        return enr_error_set(err, ENR_E_PARSE, "config: listen \"%s\" must be host:port", text);
    const char *port_text = colon + (text[0] == '[' ? 2 : 1);
    char *end;
    long port = strtol(port_text, &end, 10);
    if (*end != '\0' || end == port_text || port < 0 || port > 65535)
        return enr_error_set(err, ENR_E_PARSE, "config: listen \"%s\": port must be 0-65535", text);
    size_t hlen = (size_t)(colon - text) - (text[0] == '[' ? 1 : 0);
    const char *host = text + (text[0] == '[' ? 1 : 0);
    if (hlen == 0)
        return enr_error_set(err, ENR_E_PARSE, "config: listen \"%s\" has no host", text);
    *host_out = strndup(host, hlen);
    *port_out = (int)port;
    return *host_out ? ENR_OK : enr_error_set(err, ENR_E_NOMEM, "out of memory");
}

static enr_code parse_listen(const char *text, enr_service_config *cfg, enr_error *err)
{
    return parse_listen_to(text, &cfg->listen_host, &cfg->listen_port, err);
}

/* An MQTT port: "listen" and the connection limits both MQTT sections
 * share. `extra` names the section's other keys. */
static enr_code parse_mqtt_listen(json_t *o, const char *section, const char *const *extra, long keepalive_default,
                                  enr_mqtt_listen_config *out, enr_error *err)
{
    /* The keys of both sections (tests/cli/test_docs.sh reads this list). */
    static const char *const MQTT[] = {"listen", "max_connections", "connect_timeout_seconds", "max_packet_bytes",
                                       "max_keepalive_seconds", NULL};
    const char *known[16];
    size_t n = 0;
    for (size_t i = 0; MQTT[i] != NULL; i++)
        known[n++] = MQTT[i];
    for (size_t i = 0; extra != NULL && extra[i] != NULL && n < 15; i++)
        known[n++] = extra[i];
    known[n] = NULL;
    if (!json_is_object(o))
        return enr_error_set(err, ENR_E_PARSE, "config: \"%s\" must be an object", section);
    enr_code rc = only_known_keys(o, section, known, err);
    const char *listen = json_string_value(json_object_get(o, "listen"));
    if (rc == ENR_OK && listen == NULL)
        rc = enr_error_set(err, ENR_E_PARSE, "config: %s.listen must be \"host:port\" (8883 for devices)", section);
    if (rc == ENR_OK)
        rc = parse_listen_to(listen, &out->host, &out->port, err);
    long timeout = 10, keepalive = keepalive_default;
    out->max_packet_bytes = 65536 + 1024;
    if (rc == ENR_OK)
        rc = int_value(o, "max_connections", section, 0, 1000000, &out->max_connections, err);
    if (rc == ENR_OK)
        rc = int_value(o, "connect_timeout_seconds", section, 1, 300, &timeout, err);
    /* Below 1 KiB not even a CONNECT with a SAS token fits. */
    if (rc == ENR_OK)
        rc = int_value(o, "max_packet_bytes", section, 1024, 16L << 20, &out->max_packet_bytes, err);
    if (rc == ENR_OK)
        rc = int_value(o, "max_keepalive_seconds", section, 1, 65535, &keepalive, err);
    out->connect_timeout_seconds = (int)timeout;
    out->max_keepalive_seconds = (int)keepalive;
    return rc;
}

/* "mqtt": DPS over MQTT, beside HTTPS. */
static enr_code parse_mqtt(json_t *mqtt, enr_service_config *cfg, enr_error *err)
{
    enr_code rc = parse_mqtt_listen(mqtt, "mqtt", NULL, 300, &cfg->mqtt, err);
    if (rc == ENR_OK && cfg->id_scope == NULL)
        rc = enr_error_set(err, ENR_E_PARSE, "config: \"mqtt\" needs \"id_scope\" and \"data_dir\" or \"store\" (it serves DPS)");
    return rc;
}

/* "crl": CRLs published for brokers, and the command that makes them
 * reread. */
static enr_code parse_crl(json_t *crl, const char *base_dir, enr_service_config *cfg, enr_error *err)
{
    static const char *const CRL[] = {"publish_dir", "reload_command", "check_seconds", "next_update_seconds", NULL};
    if (!json_is_object(crl))
        return enr_error_set(err, ENR_E_PARSE, "config: \"crl\" must be an object");
    enr_code rc = only_known_keys(crl, "crl", CRL, err);
    long check = 5, next = 7 * 86400;
    if (rc == ENR_OK)
        rc = path_value(crl, "publish_dir", "crl", base_dir, &cfg->crl_publish_dir, err);
    if (rc == ENR_OK && cfg->crl_publish_dir == NULL)
        rc = enr_error_set(err, ENR_E_PARSE, "config: \"crl\" needs \"publish_dir\" (where brokers read CRLs)");
    if (rc == ENR_OK)
        rc = int_value(crl, "check_seconds", "crl", 1, 3600, &check, err);
    if (rc == ENR_OK)
        rc = int_value(crl, "next_update_seconds", "crl", 3600, 366L * 86400, &next, err);
    json_t *command = json_object_get(crl, "reload_command");
    if (rc == ENR_OK && command != NULL) {
        size_t n = json_array_size(command);
        if (!json_is_array(command) || n == 0 || n > 64)
            rc = enr_error_set(err, ENR_E_PARSE, "config: crl.reload_command must be an array of 1 to 64 strings "
                                                 "(the program and its arguments; no shell)");
        else if ((cfg->crl_reload_command = calloc(n + 1, sizeof *cfg->crl_reload_command)) == NULL)
            rc = enr_error_set(err, ENR_E_NOMEM, "out of memory");
        for (size_t i = 0; rc == ENR_OK && i < n; i++) {
            const char *arg = json_string_value(json_array_get(command, i));
            if (arg == NULL || (i == 0 && arg[0] == '\0'))
                rc = enr_error_set(err, ENR_E_PARSE, "config: crl.reload_command[%zu] must be a string", i);
            else if ((cfg->crl_reload_command[i] = strdup(arg)) == NULL)
                rc = enr_error_set(err, ENR_E_NOMEM, "out of memory");
        }
    }
    cfg->crl_check_seconds = (int)check;
    cfg->crl_next_update_seconds = (int)next;
    if (rc == ENR_OK && cfg->store_location == NULL)
        rc = enr_error_set(err, ENR_E_PARSE, "config: \"crl\" needs \"data_dir\" or \"store\" (the revocations)");
    return rc;
}

/* "aws": AWS IoT fleet provisioning over MQTT, on its own port. */
static enr_code parse_aws(json_t *aws, enr_service_config *cfg, enr_error *err)
{
    static const char *const AWS[] = {"threads", "queue_max", NULL};
    enr_code rc = parse_mqtt_listen(aws, "aws", AWS, 1200, &cfg->aws, err);
    long threads = 4, queue = 256;
    if (rc == ENR_OK)
        rc = int_value(aws, "threads", "aws", 1, 64, &threads, err);
    if (rc == ENR_OK)
        rc = int_value(aws, "queue_max", "aws", 1, 100000, &queue, err);
    cfg->aws_threads = (int)threads;
    cfg->aws_queue_max = (int)queue;
    if (rc == ENR_OK && cfg->store_location == NULL)
        rc = enr_error_set(err, ENR_E_PARSE, "config: \"aws\" needs \"data_dir\" or \"store\" (its templates and things)");
    return rc;
}

enr_code enr_service_config_parse(const char *text, size_t len, const char *base_dir,
                                  enr_service_config **out, enr_error *err)
{
    *out = NULL;
    json_error_t jerr;
    json_t *root = json_loadb(text, len, JSON_REJECT_DUPLICATES, &jerr);
    if (root == NULL)
        return enr_error_set(err, ENR_E_PARSE, "config: line %d, column %d: %s", jerr.line, jerr.column,
                             jerr.text);
    enr_service_config *cfg = calloc(1, sizeof *cfg);
    enr_code rc = cfg ? ENR_OK : enr_error_set(err, ENR_E_NOMEM, "out of memory");
    static const char *const TOP[] = {"listen", "data_dir", "store", "crl", "id_scope", "tls", "plain_http", "workers",
                                      "limits", "shutdown_grace_seconds", "admin", "create_store", "audit",
                                      "mqtt", "aws", NULL};
    static const char *const AUDIT[] = {"max_age_days", "max_rows", "refusal_samples_per_second", NULL};
    static const char *const TLS[] = {"cert", "key", "client_ca", NULL};
    static const char *const ADMIN[] = {"client_ca", NULL};
    static const char *const LIMITS[] = {"max_body_bytes", "max_header_bytes", "timeout_seconds",
                                         "assigning_after_ms", "max_connections", "handshake_timeout_seconds",
                                         "request_timeout_seconds", "log_lines_per_second",
                                         "sas_token_max_lifetime_seconds", NULL};
    if (rc == ENR_OK && !json_is_object(root))
        rc = enr_error_set(err, ENR_E_PARSE, "config: the top level must be a JSON object");
    if (rc == ENR_OK)
        rc = only_known_keys(root, "the top level", TOP, err);
    if (rc == ENR_OK) {
        cfg->max_body_bytes = 64 * 1024;
        cfg->max_header_bytes = 8 * 1024;
        cfg->timeout_seconds = 30;
        cfg->shutdown_grace_seconds = 10;
        cfg->assigning_after_ms = 2000;
        cfg->sas_token_max_lifetime_seconds = ENR_PROVISION_SAS_MAX_LIFETIME_DEFAULT;
        cfg->handshake_timeout_seconds = 10;
        cfg->request_timeout_seconds = 30;
        cfg->log_lines_per_second = 20;
        cfg->audit_max_age_days = 365;
        cfg->audit_max_rows = 1000000;
        cfg->audit_refusal_samples = 10;
        const char *listen = json_string_value(json_object_get(root, "listen"));
        rc = listen ? parse_listen(listen, cfg, err)
                    : enr_error_set(err, ENR_E_PARSE, "config: \"listen\" (host:port) is required");
    }
    if (rc == ENR_OK)
        rc = path_value(root, "data_dir", "config", base_dir, &cfg->store_location, err);
    /* "store": the same setting, also taking a postgresql:// URL (several
     * nodes sharing one database). */
    json_t *store = root ? json_object_get(root, "store") : NULL;
    if (rc == ENR_OK && store != NULL) {
        const char *v = json_string_value(store);
        if (cfg->store_location != NULL)
            rc = enr_error_set(err, ENR_E_PARSE, "config: give \"data_dir\" or \"store\", not both");
        else if (v == NULL || v[0] == '\0')
            rc = enr_error_set(err, ENR_E_PARSE,
                               "config: \"store\" must be a data directory or a postgresql:// URL");
        else if (enr_store_url_is_postgres(v))
            rc = (cfg->store_location = strdup(v)) != NULL ? ENR_OK : enr_error_set(err, ENR_E_NOMEM, "out of memory");
        else
            rc = path_value(root, "store", "config", base_dir, &cfg->store_location, err);
    }
    json_t *scope = root ? json_object_get(root, "id_scope") : NULL;
    if (rc == ENR_OK && scope != NULL) {
        const char *v = json_string_value(scope);
        if (v == NULL || v[0] == '\0' || strlen(v) > 64 || strspn(v, "abcdefghijklmnopqrstuvwxyz"
                                                                    "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-") != strlen(v))
            rc = enr_error_set(err, ENR_E_PARSE, "config: \"id_scope\" must be 1-64 letters, digits or '-'");
        else if ((cfg->id_scope = strdup(v)) == NULL)
            rc = enr_error_set(err, ENR_E_NOMEM, "out of memory");
        else if (cfg->store_location == NULL)
            rc = enr_error_set(err, ENR_E_PARSE, "config: \"id_scope\" needs \"data_dir\" or \"store\" (where the store is)");
    }
    json_t *tls = root ? json_object_get(root, "tls") : NULL;
    if (rc == ENR_OK && tls != NULL) {
        if (!json_is_object(tls))
            rc = enr_error_set(err, ENR_E_PARSE, "config: \"tls\" must be an object");
        if (rc == ENR_OK)
            rc = only_known_keys(tls, "tls", TLS, err);
        if (rc == ENR_OK)
            rc = path_value(tls, "cert", "tls", base_dir, &cfg->tls_cert, err);
        if (rc == ENR_OK)
            rc = path_value(tls, "key", "tls", base_dir, &cfg->tls_key, err);
        if (rc == ENR_OK)
            rc = path_value(tls, "client_ca", "tls", base_dir, &cfg->tls_client_ca, err);
        if (rc == ENR_OK && (cfg->tls_cert == NULL || cfg->tls_key == NULL))
            rc = enr_error_set(err, ENR_E_PARSE, "config: tls needs both \"cert\" and \"key\"");
    }
    json_t *plain = root ? json_object_get(root, "plain_http") : NULL;
    if (rc == ENR_OK && plain != NULL && !json_is_boolean(plain))
        rc = enr_error_set(err, ENR_E_PARSE, "config: \"plain_http\" must be true or false");
    if (rc == ENR_OK)
        cfg->plain_http = json_is_true(plain);
    if (rc == ENR_OK && tls == NULL && !cfg->plain_http)
        rc = enr_error_set(err, ENR_E_PARSE,
                           "config: give \"tls\" {cert, key}; plain HTTP needs \"plain_http\": true "
                           "(only behind a TLS terminator)");
    if (rc == ENR_OK && tls != NULL && cfg->plain_http)
        rc = enr_error_set(err, ENR_E_PARSE, "config: \"tls\" and \"plain_http\": true exclude each other");
    json_t *admin = root ? json_object_get(root, "admin") : NULL;
    if (rc == ENR_OK && admin != NULL) {
        if (!json_is_object(admin))
            rc = enr_error_set(err, ENR_E_PARSE, "config: \"admin\" must be an object");
        if (rc == ENR_OK)
            rc = only_known_keys(admin, "admin", ADMIN, err);
        if (rc == ENR_OK)
            rc = path_value(admin, "client_ca", "admin", base_dir, &cfg->admin_client_ca, err);
        if (rc == ENR_OK && cfg->admin_client_ca == NULL)
            rc = enr_error_set(err, ENR_E_PARSE,
                               "config: admin needs \"client_ca\" (the CA that issues admin certificates)");
        /* Admin certificates are only ever seen in a TLS handshake. */
        if (rc == ENR_OK && cfg->plain_http)
            rc = enr_error_set(err, ENR_E_PARSE, "config: \"admin\" needs \"tls\" (admins authenticate with "
                                                 "TLS client certificates), not plain_http");
        if (rc == ENR_OK && cfg->store_location == NULL)
            rc = enr_error_set(err, ENR_E_PARSE, "config: \"admin\" needs \"data_dir\" or \"store\" (where the store is)");
    }
    long workers = 0, grace = cfg ? cfg->shutdown_grace_seconds : 0;
    if (rc == ENR_OK)
        rc = int_value(root, "workers", "config", 0, 256, &workers, err);
    if (rc == ENR_OK)
        rc = int_value(root, "shutdown_grace_seconds", "config", 0, 3600, &grace, err);
    json_t *limits = root ? json_object_get(root, "limits") : NULL;
    if (rc == ENR_OK && limits != NULL) {
        if (!json_is_object(limits))
            rc = enr_error_set(err, ENR_E_PARSE, "config: \"limits\" must be an object");
        long timeout = cfg->timeout_seconds;
        if (rc == ENR_OK)
            rc = only_known_keys(limits, "limits", LIMITS, err);
        if (rc == ENR_OK)
            rc = int_value(limits, "max_body_bytes", "limits", 1024, 16L << 20, &cfg->max_body_bytes, err);
        if (rc == ENR_OK)
            rc = int_value(limits, "max_header_bytes", "limits", 1024, 1L << 20, &cfg->max_header_bytes, err);
        if (rc == ENR_OK)
            rc = int_value(limits, "timeout_seconds", "limits", 1, 3600, &timeout, err);
        if (rc == ENR_OK)
            rc = int_value(limits, "assigning_after_ms", "limits", 0, 60000, &cfg->assigning_after_ms, err);
        /* At most a year: a token that outlives that is a key by another name. */
        if (rc == ENR_OK)
            rc = int_value(limits, "sas_token_max_lifetime_seconds", "limits", 60, 366L * 86400,
                           &cfg->sas_token_max_lifetime_seconds, err);
        long handshake = cfg->handshake_timeout_seconds, request = cfg->request_timeout_seconds,
             lines = cfg->log_lines_per_second;
        if (rc == ENR_OK)
            rc = int_value(limits, "max_connections", "limits", 0, 1000000, &cfg->max_connections, err);
        if (rc == ENR_OK)
            rc = int_value(limits, "handshake_timeout_seconds", "limits", 1, 300, &handshake, err);
        if (rc == ENR_OK)
            rc = int_value(limits, "request_timeout_seconds", "limits", 1, 3600, &request, err);
        if (rc == ENR_OK)
            rc = int_value(limits, "log_lines_per_second", "limits", 1, 100000, &lines, err);
        if (rc == ENR_OK) {
            cfg->timeout_seconds = (int)timeout;
            cfg->handshake_timeout_seconds = (int)handshake;
            cfg->request_timeout_seconds = (int)request;
            cfg->log_lines_per_second = (int)lines;
        }
    }
    json_t *create = root ? json_object_get(root, "create_store") : NULL;
    if (rc == ENR_OK && create != NULL && !json_is_boolean(create))
        rc = enr_error_set(err, ENR_E_PARSE, "config: \"create_store\" must be true or false");
    if (rc == ENR_OK)
        cfg->create_store = json_is_true(create);
    if (rc == ENR_OK && cfg->create_store && cfg->store_location == NULL)
        rc = enr_error_set(err, ENR_E_PARSE, "config: \"create_store\" needs \"data_dir\" or \"store\" (where to create it)");
    json_t *audit = root ? json_object_get(root, "audit") : NULL;
    if (rc == ENR_OK && audit != NULL) {
        long age = cfg->audit_max_age_days, samples = cfg->audit_refusal_samples;
        if (!json_is_object(audit))
            rc = enr_error_set(err, ENR_E_PARSE, "config: \"audit\" must be an object");
        if (rc == ENR_OK)
            rc = only_known_keys(audit, "audit", AUDIT, err);
        if (rc == ENR_OK)
            rc = int_value(audit, "max_age_days", "audit", 0, 36500, &age, err);
        if (rc == ENR_OK)
            rc = int_value(audit, "max_rows", "audit", 0, 1000000000L, &cfg->audit_max_rows, err);
        if (rc == ENR_OK)
            rc = int_value(audit, "refusal_samples_per_second", "audit", 0, 1000, &samples, err);
        if (rc == ENR_OK) {
            cfg->audit_max_age_days = (int)age;
            cfg->audit_refusal_samples = (int)samples;
        }
    }
    json_t *mqtt = root ? json_object_get(root, "mqtt") : NULL;
    if (rc == ENR_OK && mqtt != NULL)
        rc = parse_mqtt(mqtt, cfg, err);
    json_t *aws = root ? json_object_get(root, "aws") : NULL;
    if (rc == ENR_OK && aws != NULL)
        rc = parse_aws(aws, cfg, err);
    json_t *crl = root ? json_object_get(root, "crl") : NULL;
    if (rc == ENR_OK && crl != NULL)
        rc = parse_crl(crl, base_dir, cfg, err);
    if (rc == ENR_OK && cfg->store_location != NULL && cfg->id_scope == NULL && cfg->admin_client_ca == NULL)
        rc = enr_error_set(err, ENR_E_PARSE,
                           "config: \"data_dir\" (or \"store\") is given but not \"id_scope\": enrolld would answer every "
                           "registration 404. Add \"id_scope\" (the ID scope devices are given), or drop "
                           "\"data_dir\" to serve only /healthz and /metrics");
    if (rc == ENR_OK) {
        cfg->workers = (int)workers;
        cfg->shutdown_grace_seconds = (int)grace;
    }
    json_decref(root);
    if (rc != ENR_OK) {
        enr_service_config_free(cfg);
        return rc;
    }
    *out = cfg;
    return ENR_OK;
}

enr_code enr_service_config_load(const char *path, enr_service_config **out, enr_error *err)
{
    enr_buf buf;
    enr_code rc = enr_file_read(path, 256 * 1024, &buf, err);
    if (rc != ENR_OK)
        return rc;
    char copy[PATH_MAX];
    snprintf(copy, sizeof copy, "%s", path);
    rc = enr_service_config_parse((const char *)buf.data, buf.len, dirname(copy), out, err);
    enr_buf_free(&buf);
    if (rc != ENR_OK)
        enr_error_prefix(err, "%s", path);
    return rc;
}
