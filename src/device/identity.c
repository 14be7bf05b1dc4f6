/* The identity store on disk (device_internal.h). One small file,
 * identity.json, names the current generation's files; it is replaced by
 * one atomic rename after the new files are written and synced, so a power
 * cut leaves either the old identity or the new one. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "device/device_internal.h"
#include "enroll/cert.h"
#include "enroll/duration.h"
#include "enroll/fileio.h"

#define F(m) offsetof(dev_identity, m)
/* Every string member, for free and copy alike. */
static const size_t STRING_FIELDS[] = {
    F(registration_id), F(url), F(transport), F(id_scope), F(api_version), F(auth), F(symmetric_key_file),
    F(bootstrap_cert_file), F(bootstrap_key_file), F(key_ref), F(key_type), F(pkcs11_module),
    F(pkcs11_pin_file), F(cert), F(chain), F(bundle), F(service_trust), F(ca_trust), F(serial),
    F(subject), F(issuer), F(assigned_hub), F(service_window), F(last_result), F(last_message), F(protocol),
    F(aws_template), F(aws_params), F(thing_name), F(device_config)};
#undef F
#define NFIELDS (sizeof STRING_FIELDS / sizeof STRING_FIELDS[0])

static char **field_at(dev_identity *id, size_t offset)
{
    return (char **)(void *)((char *)id + offset);
}

void dev_identity_free(dev_identity *id)
{
    if (id == NULL)
        return;
    for (size_t i = 0; i < NFIELDS; i++)
        free(*field_at(id, STRING_FIELDS[i]));
    memset(id, 0, sizeof *id);
}

enr_code dev_identity_copy(dev_identity *out, const dev_identity *src, enr_error *err)
{
    *out = *src;
    bool ok = true;
    for (size_t i = 0; i < NFIELDS; i++) {
        char **slot = field_at(out, STRING_FIELDS[i]);
        if (*slot != NULL && (*slot = strdup(*slot)) == NULL)
            ok = false;
    }
    if (!ok) {
        dev_identity_free(out);
        return enr_error_set(err, ENR_E_NOMEM, "out of memory");
    }
    return ENR_OK;
}

int dev_path(char *out, size_t cap, const char *dir, const char *name)
{
    int n = snprintf(out, cap, "%s/%s", dir, name);
    return n > 0 && (size_t)n < cap ? 0 : -1;
}

static char *dup_or_null(const char *s)
{
    return s != NULL ? strdup(s) : NULL;
}

static char *get_str(json_t *o, const char *k)
{
    const char *s = json_string_value(json_object_get(o, k));
    return dup_or_null(s);
}

/* A member holding a JSON object, as compact text (NULL when absent or
 * not an object). */
static char *get_object_text(json_t *o, const char *k)
{
    json_t *v = json_object_get(o, k);
    return json_is_object(v) ? json_dumps(v, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;
}

static time_t get_time(json_t *o, const char *k)
{
    const char *s = json_string_value(json_object_get(o, k));
    time_t t = 0;
    enr_error e;
    if (s != NULL && enr_time_parse(s, &t, &e) != ENR_OK)
        t = 0;
    return t;
}

enr_code dev_identity_load(const char *dir, dev_identity *out, enr_error *err)
{
    memset(out, 0, sizeof *out);
    char path[DEV_PATH_MAX];
    if (dev_path(path, sizeof path, dir, DEV_IDENTITY_FILE) != 0)
        return enr_error_set(err, ENR_E_USAGE, "store path too long");
    enr_buf buf;
    enr_code rc = enr_file_read(path, 64 * 1024, &buf, err);
    if (rc != ENR_OK) {
        if (access(path, F_OK) != 0)
            return enr_error_set(err, ENR_E_NOTFOUND, "%s holds no identity (run 'enroll device provision' first)",
                                 dir);
        return rc;
    }
    rc = dev_identity_parse((const char *)buf.data, buf.len, path, out, err);
    enr_buf_free(&buf);
    return rc;
}

enr_code dev_identity_parse(const char *text, size_t len, const char *where, dev_identity *out, enr_error *err)
{
    memset(out, 0, sizeof *out);
    json_error_t jerr;
    json_t *o = json_loadb(text, len, JSON_REJECT_DUPLICATES, &jerr);
    if (!json_is_object(o) || json_integer_value(json_object_get(o, "version")) != 1) {
        json_decref(o);
        return enr_error_set(err, ENR_E_PARSE, "%s: not an identity file this version reads", where);
    }
    out->registration_id = get_str(o, "registration_id");
    out->url = get_str(o, "url");
    out->transport = get_str(o, "transport");
    out->id_scope = get_str(o, "id_scope");
    out->api_version = get_str(o, "api_version");
    out->auth = get_str(o, "auth");
    out->symmetric_key_file = get_str(o, "symmetric_key_file");
    out->bootstrap_cert_file = get_str(o, "bootstrap_cert_file");
    out->bootstrap_key_file = get_str(o, "bootstrap_key_file");
    out->key_ref = get_str(o, "key");
    out->key_type = get_str(o, "key_type");
    out->pkcs11_module = get_str(o, "pkcs11_module");
    out->pkcs11_pin_file = get_str(o, "pkcs11_pin_file");
    out->cert = get_str(o, "cert");
    out->chain = get_str(o, "chain");
    out->bundle = get_str(o, "trust_bundle");
    out->service_trust = get_str(o, "service_trust");
    out->ca_trust = get_str(o, "ca_trust");
    out->serial = get_str(o, "serial");
    out->subject = get_str(o, "subject");
    out->issuer = get_str(o, "issuer");
    out->assigned_hub = get_str(o, "assigned_hub");
    out->last_result = get_str(o, "last_result");
    out->last_message = get_str(o, "last_message");
    out->generation = (long)json_integer_value(json_object_get(o, "generation"));
    out->renew_before = (long)json_integer_value(json_object_get(o, "renew_before_seconds"));
    out->not_before = get_time(o, "not_before");
    out->not_after = get_time(o, "not_after");
    out->renew_at = get_time(o, "renew_at");
    out->last_attempt = get_time(o, "last_attempt");
    out->service_renew_after = get_time(o, "service_renew_after");
    out->service_window = get_str(o, "service_renewal_window");
    out->last_success = get_time(o, "last_success");
    out->protocol = get_str(o, "protocol");
    out->aws_template = get_str(o, "template");
    out->aws_params = get_object_text(o, "parameters");
    out->thing_name = get_str(o, "thing_name");
    out->device_config = get_object_text(o, "device_configuration");
    json_decref(o);
    bool aws = out->protocol != NULL && strcmp(out->protocol, "aws-fleet") == 0;
    if (out->registration_id == NULL || out->url == NULL || (!aws && out->id_scope == NULL) ||
        (aws && out->aws_template == NULL) || out->key_ref == NULL || out->auth == NULL) {
        dev_identity_free(out);
        return enr_error_set(err, ENR_E_PARSE, "%s: required members missing", where);
    }
    return ENR_OK;
}

static void set_str(json_t *o, const char *k, const char *v)
{
    if (v != NULL)
        json_object_set_new(o, k, json_string(v));
}

static void set_object_text(json_t *o, const char *k, const char *text)
{
    json_t *v = text != NULL ? json_loads(text, JSON_REJECT_DUPLICATES, NULL) : NULL;
    if (json_is_object(v))
        json_object_set_new(o, k, v);
    else
        json_decref(v);
}

static void set_time(json_t *o, const char *k, time_t t)
{
    if (t == 0)
        return;
    char buf[32];
    enr_time_format(t, buf, sizeof buf);
    json_object_set_new(o, k, json_string(buf));
}

enr_code dev_identity_save(const char *dir, const dev_identity *id, enr_error *err)
{
    json_t *o = json_object();
    if (o == NULL)
        return enr_error_set(err, ENR_E_NOMEM, "out of memory");
    json_object_set_new(o, "version", json_integer(1));
    set_str(o, "registration_id", id->registration_id);
    set_str(o, "url", id->url);
    set_str(o, "transport", id->transport);
    set_str(o, "protocol", id->protocol);
    set_str(o, "template", id->aws_template);
    set_object_text(o, "parameters", id->aws_params);
    set_str(o, "thing_name", id->thing_name);
    set_object_text(o, "device_configuration", id->device_config);
    set_str(o, "id_scope", id->id_scope);
    set_str(o, "api_version", id->api_version);
    set_str(o, "auth", id->auth);
    set_str(o, "symmetric_key_file", id->symmetric_key_file);
    set_str(o, "bootstrap_cert_file", id->bootstrap_cert_file);
    set_str(o, "bootstrap_key_file", id->bootstrap_key_file);
    set_str(o, "key", id->key_ref);
    set_str(o, "key_type", id->key_type);
    set_str(o, "pkcs11_module", id->pkcs11_module);
    set_str(o, "pkcs11_pin_file", id->pkcs11_pin_file);
    json_object_set_new(o, "renew_before_seconds", json_integer(id->renew_before));
    json_object_set_new(o, "generation", json_integer(id->generation));
    set_str(o, "cert", id->cert);
    set_str(o, "chain", id->chain);
    set_str(o, "trust_bundle", id->bundle);
    set_str(o, "service_trust", id->service_trust);
    set_str(o, "ca_trust", id->ca_trust);
    set_str(o, "serial", id->serial);
    set_str(o, "subject", id->subject);
    set_str(o, "issuer", id->issuer);
    set_str(o, "assigned_hub", id->assigned_hub);
    set_time(o, "not_before", id->not_before);
    set_time(o, "not_after", id->not_after);
    set_time(o, "renew_at", id->renew_at);
    set_time(o, "service_renew_after", id->service_renew_after);
    set_str(o, "service_renewal_window", id->service_window);
    set_str(o, "last_result", id->last_result);
    set_str(o, "last_message", id->last_message);
    set_time(o, "last_attempt", id->last_attempt);
    set_time(o, "last_success", id->last_success);
    char *text = json_dumps(o, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
    json_decref(o);
    if (text == NULL)
        return enr_error_set(err, ENR_E_NOMEM, "out of memory");
    char path[DEV_PATH_MAX];
    enr_code rc = dev_path(path, sizeof path, dir, DEV_IDENTITY_FILE) != 0
                      ? enr_error_set(err, ENR_E_USAGE, "store path too long")
                      : enr_file_write_atomic(path, text, strlen(text), 0600, true, err);
    free(text);
    return rc;
}

/* The directory holding `path`, synced so a new entry in it survives a
 * power cut. */
static void sync_parent(const char *path)
{
    char parent[DEV_PATH_MAX];
    snprintf(parent, sizeof parent, "%s", path);
    char *slash = strrchr(parent, '/');
    if (slash == NULL)
        snprintf(parent, sizeof parent, ".");
    else if (slash == parent)
        parent[1] = '\0';
    else
        *slash = '\0';
    int fd = open(parent, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd >= 0) {
        (void)fsync(fd);
        close(fd);
    }
}

enr_code dev_store_prepare(const char *dir, enr_error *err)
{
    if (mkdir(dir, 0700) == 0)
        sync_parent(dir);
    else if (errno != EEXIST)
        return enr_error_set(err, ENR_E_IO, "cannot create the store %s: %s", dir, strerror(errno));
    struct stat st;
    if (stat(dir, &st) != 0 || !S_ISDIR(st.st_mode))
        return enr_error_set(err, ENR_E_IO, "the store %s is not a directory", dir);
    /* Whoever can write the directory can swap identity.json or a key file
     * under the agent. */
    if ((st.st_mode & (S_IWGRP | S_IWOTH)) != 0)
        return enr_error_set(err, ENR_E_POLICY,
                             "the store %s is writable by %s (mode %03o): make it 0700 (chmod go-w %s)", dir,
                             (st.st_mode & S_IWOTH) ? "every user" : "its group", (unsigned)(st.st_mode & 0777),
                             dir);
    return ENR_OK;
}

char *dev_store_canonical(const char *dir)
{
    char *real = realpath(dir, NULL);
    if (real != NULL)
        return real;
    /* Not made yet: resolve the parent, which must exist for mkdir anyway. */
    size_t n = strlen(dir);
    while (n > 1 && dir[n - 1] == '/')
        n--;
    char *trimmed = strndup(dir, n);
    if (trimmed == NULL)
        return NULL;
    char *slash = strrchr(trimmed, '/');
    char *parent = NULL;
    if (slash != NULL && slash != trimmed) {
        *slash = '\0';
        parent = realpath(trimmed, NULL);
        *slash = '/';
    }
    if (parent == NULL)
        return trimmed;
    size_t len = strlen(parent) + strlen(slash) + 1;
    char *out = malloc(len);
    if (out != NULL)
        snprintf(out, len, "%s%s", parent, slash);
    free(parent);
    free(trimmed);
    return out;
}

static bool same_file(const struct stat *a, const char *path)
{
    struct stat b;
    return path != NULL && stat(path, &b) == 0 && a->st_dev == b.st_dev && a->st_ino == b.st_ino;
}

/* Files of generations other than the current and the one before are no
 * longer named by anything: a crashed attempt's leftovers, or superseded
 * identities. */
void dev_store_prune(const char *dir, long current, const char *const *keep, size_t nkeep)
{
    DIR *d = opendir(dir);
    if (d == NULL)
        return;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        static const char *const prefixes[] = {"cert-", "chain-", "bundle-", "key-", "service-trust-", "ca-trust-"};
        for (size_t i = 0; i < sizeof prefixes / sizeof prefixes[0]; i++) {
            size_t pl = strlen(prefixes[i]);
            if (strncmp(e->d_name, prefixes[i], pl) != 0)
                continue;
            char *end;
            long g = strtol(e->d_name + pl, &end, 10);
            if (end == e->d_name + pl || strcmp(end, ".pem") != 0)
                continue;
            if (g >= current - 1 && g <= current)
                continue;
            char path[DEV_PATH_MAX];
            struct stat st;
            if (dev_path(path, sizeof path, dir, e->d_name) != 0 || lstat(path, &st) != 0)
                continue;
            bool kept = false;
            for (size_t k = 0; k < nkeep && !kept; k++)
                kept = same_file(&st, keep[k]);
            if (!kept)
                (void)unlink(path);
        }
    }
    closedir(d);
}
