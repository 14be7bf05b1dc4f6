/* The admin commands: argument checks, store changes with their audit
 * events, and the JSON models of CAs, policies, enrollments, registrations,
 * certificates and audit events. The CLI and enrolld's admin API are thin
 * over this file. */
#include <arpa/inet.h>
#include <errno.h>
#include <jansson.h>
#include <limits.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509v3.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "enroll/admin.h"
#include "enroll/est.h"
#include "enroll/aws_template.h"
#include "enroll/ca.h"
#include "enroll/cert.h"
#include "enroll/duration.h"
#include "enroll/input.h"
#include "enroll/name.h"
#include "enroll/sas.h"
#include "enroll/signer.h"

/* Where devices are sent when an enrollment names no hub: a local broker. */
#define DEFAULT_HUB "localhost:8883"
#define DEFAULT_KEY_TYPES "ec-p256,ec-p384"
#define SYMMETRIC_KEY_BYTES 32
#define MAX_X509_CA 16
/* A certificate argument: PEM or base64, one certificate. */
#define CERT_ARG_MAX (64 * 1024)

typedef struct call {
    enr_store *store;
    const enr_admin_context *ctx;
    const char *command;
    json_t *args;
    enr_error *err;
} call;

/* ---- arguments ------------------------------------------------------------ */

static enr_code only_args(const call *c, const char *const *known)
{
    const char *key;
    json_t *value;
    json_object_foreach(c->args, key, value) {
        bool ok = false;
        for (size_t i = 0; known[i] != NULL && !ok; i++)
            ok = strcmp(key, known[i]) == 0;
        if (!ok) {
            char list[256] = "";
            for (size_t i = 0; known[i] != NULL; i++) {
                size_t used = strlen(list);
                snprintf(list + used, sizeof list - used, "%s%s", i ? ", " : "", known[i]);
            }
            return enr_error_set(c->err, ENR_E_USAGE, "unknown argument '%.64s' for %s (it takes: %s)", key,
                                 c->command, list[0] ? list : "nothing");
        }
    }
    return ENR_OK;
}

/* A string argument (NULL when absent and not required). */
static enr_code arg_text(const call *c, const char *key, bool required, size_t max, const char **out)
{
    *out = NULL;
    json_t *v = json_object_get(c->args, key);
    if (v == NULL || json_is_null(v))
        return required ? enr_error_set(c->err, ENR_E_USAGE, "%s: required for %s", key, c->command) : ENR_OK;
    if (!json_is_string(v))
        return enr_error_set(c->err, ENR_E_USAGE, "%s: must be a string", key);
    const char *s = json_string_value(v);
    size_t len = json_string_length(v);
    if (strlen(s) != len)
        return enr_error_set(c->err, ENR_E_USAGE, "%s: must not contain NUL characters", key);
    if (len == 0)
        return enr_error_set(c->err, ENR_E_USAGE, "%s: must not be empty", key);
    if (len > max)
        return enr_error_set(c->err, ENR_E_USAGE, "%s: longer than %zu characters", key, max);
    *out = s;
    return ENR_OK;
}

static enr_code arg_bool(const call *c, const char *key, bool *out)
{
    *out = false;
    json_t *v = json_object_get(c->args, key);
    if (v == NULL || json_is_null(v))
        return ENR_OK;
    if (!json_is_boolean(v))
        return enr_error_set(c->err, ENR_E_USAGE, "%s: must be true or false", key);
    *out = json_is_true(v);
    return ENR_OK;
}

/* ---- audit ---------------------------------------------------------------- */

static void audit_set(const call *c, enr_audit_event *ev, const char *kind, const char *registration_id,
                      const char *outcome, const char *fmt, ...) __attribute__((format(printf, 6, 7)));

/* The detail says what changed and who changed it, never a key. */
static void audit_set(const call *c, enr_audit_event *ev, const char *kind, const char *registration_id,
                      const char *outcome, const char *fmt, ...)
{
    memset(ev, 0, sizeof *ev);
    snprintf(ev->kind, sizeof ev->kind, "%s", kind);
    if (registration_id != NULL)
        snprintf(ev->registration_id, sizeof ev->registration_id, "%s", registration_id);
    snprintf(ev->outcome, sizeof ev->outcome, "%s", outcome);
    char what[ENR_STORE_DETAIL_MAX + 1];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    snprintf(ev->detail, sizeof ev->detail, "%s (%s)", what,
             c->ctx != NULL && c->ctx->actor != NULL ? c->ctx->actor : "enroll admin");
}

/* ---- lookups with messages that say what to do ------------------------------ */

static enr_code no_such(enr_code rc, enr_error *err, const char *hint)
{
    if (rc == ENR_E_NOTFOUND) {
        size_t used = strlen(err->message);
        snprintf(err->message + used, sizeof err->message - used, "%s", hint);
    }
    return rc;
}

static enr_code get_ca(const call *c, const char *name, enr_ca_record *out)
{
    enr_code rc = enr_store_get_ca(c->store, name, out, c->err);
    if (rc == ENR_E_NOTFOUND)
        enr_error_set(c->err, rc, "no CA named '%s' in the store (see `enroll admin ca list`)", name);
    return rc;
}

static enr_code get_policy(const call *c, const char *name, enr_credential_policy *out)
{
    enr_code rc = enr_store_get_policy(c->store, name, out, c->err);
    if (rc == ENR_E_NOTFOUND)
        enr_error_set(c->err, rc,
                      "no credential policy named '%s' in the store (see `enroll admin policy list`; make "
                      "one with `enroll admin policy new`)",
                      name);
    return rc;
}

static const char *kind_noun(enr_enrollment_kind kind)
{
    return kind == ENR_ENROLLMENT_GROUP ? "group" : "individual";
}

static const char *kind_words(enr_enrollment_kind kind)
{
    return kind == ENR_ENROLLMENT_GROUP ? "enrollment group" : "individual enrollment";
}

static enr_code get_enrollment(const call *c, enr_enrollment_kind kind, const char *id, enr_enrollment *out)
{
    enr_code rc = enr_store_get_enrollment(c->store, kind, id, out, c->err);
    if (rc == ENR_E_NOTFOUND)
        enr_error_set(c->err, rc, "no %s '%s' in the store (see `enroll admin %s list`)", kind_words(kind), id,
                      kind_noun(kind));
    return rc;
}

/* ---- JSON models ------------------------------------------------------------ */

static json_t *json_text(const char *s)
{
    return s != NULL && s[0] != '\0' ? json_string(s) : json_null();
}

static json_t *json_time(time_t t)
{
    char buf[32];
    if (t == 0)
        return json_null();
    enr_time_format(t, buf, sizeof buf);
    return json_string(buf);
}

typedef struct cert_facts {
    char *subject, *issuer;
    time_t not_after;
    char sha256[65];
} cert_facts;

static void cert_facts_of(X509 *x, cert_facts *f)
{
    memset(f, 0, sizeof *f);
    f->subject = enr_name_format(X509_get_subject_name(x));
    f->issuer = enr_name_format(X509_get_issuer_name(x));
    f->not_after = enr_asn1_time_to_time_t(X509_get0_notAfter(x));
    enr_error err;
    (void)enr_cert_fingerprint(x, f->sha256, &err); /* "" when it cannot be computed */
}

static void cert_facts_free(cert_facts *f)
{
    free(f->subject);
    free(f->issuer);
}

static X509 *x509_of(const enr_buf *der)
{
    const unsigned char *p = der->data;
    return der->data != NULL ? d2i_X509(NULL, &p, (long)der->len) : NULL;
}

static void set_facts(json_t *o, X509 *x)
{
    cert_facts f;
    cert_facts_of(x, &f);
    json_object_set_new(o, "subject", json_text(f.subject));
    json_object_set_new(o, "issuer", json_text(f.issuer));
    json_object_set_new(o, "not_after", json_time(f.not_after));
    json_object_set_new(o, "fingerprint_sha256", json_string(f.sha256));
    cert_facts_free(&f);
}

static json_t *cert_facts_json(const enr_buf *der)
{
    X509 *x = x509_of(der);
    if (x == NULL)
        return json_pack("{s:s}", "error", "the stored certificate does not parse");
    json_t *o = json_object();
    set_facts(o, x);
    X509_free(x);
    return o;
}

static json_t *ca_json(const enr_ca_record *ca)
{
    json_t *o = json_object();
    json_object_set_new(o, "name", json_string(ca->name));
    json_object_set_new(o, "role", json_string(ca->role == ENR_CA_ISSUING ? "issuing" : "bootstrap"));
    X509 *x = x509_of(&ca->certificate);
    if (x != NULL) {
        set_facts(o, x);
        X509_free(x);
    }
    if (ca->role == ENR_CA_ISSUING) {
        json_object_set_new(o, "ca_dir", json_text(ca->key_ref));
    } else {
        json_object_set_new(o, "verified", json_boolean(ca->verified));
        json_object_set_new(o, "verification_code", json_text(ca->verified ? "" : ca->verification_code));
    }
    json_object_set_new(o, "created_at", json_time(ca->created_at));
    json_object_set_new(o, "updated_at", json_time(ca->updated_at));
    return o;
}

static json_t *policy_json(const enr_credential_policy *p)
{
    json_t *o = json_object();
    json_object_set_new(o, "name", json_string(p->name));
    json_object_set_new(o, "validity", json_string(p->validity));
    json_object_set_new(o, "renewal_window", json_string(p->renewal_window));
    json_object_set_new(o, "ca", json_string(p->ca_name));
    json_object_set_new(o, "key_types", json_string(p->key_types));
    json_object_set_new(o, "ocsp_url", p->ocsp_url[0] ? json_string(p->ocsp_url) : json_null());
    json_object_set_new(o, "crl_url", p->crl_url[0] ? json_string(p->crl_url) : json_null());
    json_object_set_new(o, "allow_server_keygen", json_boolean(p->allow_server_keygen));
    json_object_set_new(o, "created_at", json_time(p->created_at));
    return o;
}

/* Everything but the keys; with_keys adds them (new only: key.show has its own). */
static json_t *enrollment_json(const enr_enrollment *e, bool with_keys)
{
    json_t *o = json_object();
    json_object_set_new(o, "kind", json_string(kind_noun(e->kind)));
    json_object_set_new(o, e->kind == ENR_ENROLLMENT_GROUP ? "group_id" : "registration_id", json_string(e->id));
    json_object_set_new(o, "attestation",
                        json_string(e->attestation == ENR_ATTEST_SYMMETRIC ? "symmetric" : "x509"));
    json_object_set_new(o, "policy", json_text(e->policy));
    json_object_set_new(o, "assigned_hub", json_text(e->assigned_hub));
    json_object_set_new(o, "enabled", json_boolean(e->enabled));
    json_object_set_new(o, "etag", json_text(e->etag));
    json_object_set_new(o, "created_at", json_time(e->created_at));
    json_object_set_new(o, "updated_at", json_time(e->updated_at));
    json_object_set_new(o, "est_basic_secret", json_boolean(e->basic_secret_sha256[0] != '\0'));
    if (e->attestation == ENR_ATTEST_X509) {
        json_t *certs = json_array();
        for (size_t i = 0; i < e->certificate_count; i++)
            json_array_append_new(certs, cert_facts_json(&e->certificates[i]));
        json_object_set_new(o, "certificates", certs);
    } else {
        /* Which keys there are, never what they are. */
        json_t *keys = json_array();
        json_array_append_new(keys, json_string("primary"));
        if (e->secondary_key[0] != '\0')
            json_array_append_new(keys, json_string("secondary"));
        json_object_set_new(o, "keys", keys);
        if (with_keys) {
            json_object_set_new(o, "primary_key", json_string(e->primary_key));
            json_object_set_new(o, "secondary_key", json_text(e->secondary_key));
        }
    }
    return o;
}

static json_t *certificate_json(const enr_certificate *c)
{
    json_t *o = json_object();
    json_object_set_new(o, "id", json_integer((json_int_t)c->id));
    json_object_set_new(o, "serial", json_string(c->serial));
    json_object_set_new(o, "issuer", json_text(c->issuer));
    json_object_set_new(o, "subject", json_text(c->subject));
    json_object_set_new(o, "registration_id", json_text(c->registration_id));
    json_object_set_new(o, "policy", json_text(c->policy));
    json_object_set_new(o, "not_before", json_time(c->not_before));
    json_object_set_new(o, "not_after", json_time(c->not_after));
    json_object_set_new(o, "issued_at", json_time(c->issued_at));
    json_object_set_new(o, "spki_sha256", json_text(c->spki_sha256));
    json_object_set_new(o, "revoked", json_boolean(c->revoked));
    if (c->revoked) {
        json_object_set_new(o, "reason", json_string(enr_revocation_reason_name(c->revocation_reason)));
        json_object_set_new(o, "revoked_at", json_time(c->revoked_at));
    }
    return o;
}

static json_t *registration_json(const enr_registration *r)
{
    json_t *o = json_object();
    json_object_set_new(o, "registration_id", json_string(r->registration_id));
    json_object_set_new(o, "enrollment_kind", json_string(kind_noun(r->enrollment_kind)));
    json_object_set_new(o, "enrollment_id", json_string(r->enrollment_id));
    json_object_set_new(o, "status", json_string(r->status));
    json_object_set_new(o, "substatus", json_text(r->substatus));
    json_object_set_new(o, "device_id", json_text(r->device_id));
    json_object_set_new(o, "assigned_hub", json_text(r->assigned_hub));
    json_object_set_new(o, "etag", json_text(r->etag));
    json_object_set_new(o, "created_at", json_time(r->created_at));
    json_object_set_new(o, "updated_at", json_time(r->updated_at));
    json_object_set_new(o, "last_certificate",
                        r->last_certificate_serial[0]
                            ? json_pack("{s:s,s:s}", "issuer", r->last_certificate_issuer, "serial",
                                        r->last_certificate_serial)
                            : json_null());
    return o;
}

static json_t *audit_json(const enr_audit_event *ev)
{
    json_t *o = json_object();
    json_object_set_new(o, "id", json_integer((json_int_t)ev->id));
    json_object_set_new(o, "at", json_time(ev->at));
    json_object_set_new(o, "kind", json_string(ev->kind));
    json_object_set_new(o, "registration_id", json_text(ev->registration_id));
    json_object_set_new(o, "outcome", json_string(ev->outcome));
    json_object_set_new(o, "reason_code", json_integer(ev->reason_code));
    json_object_set_new(o, "detail", json_text(ev->detail));
    return o;
}

/* ---- certificates in arguments ---------------------------------------------- */

static enr_code der_of(X509 *x, enr_buf *out, enr_error *err)
{
    memset(out, 0, sizeof *out);
    int n = i2d_X509(x, NULL);
    if (n <= 0)
        return enr_error_openssl(err, ENR_E_CRYPTO, "cannot encode a certificate");
    out->data = malloc((size_t)n + 1);
    if (out->data == NULL)
        return enr_error_set(err, ENR_E_NOMEM, "out of memory");
    unsigned char *p = out->data;
    i2d_X509(x, &p);
    out->len = (size_t)n;
    out->data[out->len] = '\0';
    return ENR_OK;
}

/* Exactly one certificate (PEM or base64 DER) from argument `key`, valid now. */
static enr_code arg_certificate(const call *c, const char *key, X509 **out)
{
    *out = NULL;
    const char *text;
    enr_code rc = arg_text(c, key, true, CERT_ARG_MAX, &text);
    if (rc != ENR_OK)
        return rc;
    if ((rc = enr_cert_read_one((const unsigned char *)text, strlen(text), out, c->err)) != ENR_OK) {
        enr_error_prefix(c->err, "%s", key);
        return rc == ENR_E_USAGE ? enr_error_set(c->err, ENR_E_PARSE, "%s", c->err->message) : rc;
    }
    char when[32];
    if (X509_cmp_current_time(X509_get0_notAfter(*out)) < 0) {
        enr_time_format(enr_asn1_time_to_time_t(X509_get0_notAfter(*out)), when, sizeof when);
        rc = enr_error_set(c->err, ENR_E_POLICY, "%s: the certificate expired on %s", key, when);
    } else if (X509_cmp_current_time(X509_get0_notBefore(*out)) > 0) {
        enr_time_format(enr_asn1_time_to_time_t(X509_get0_notBefore(*out)), when, sizeof when);
        rc = enr_error_set(c->err, ENR_E_POLICY, "%s: the certificate is not valid before %s", key, when);
    }
    if (rc != ENR_OK) {
        X509_free(*out);
        *out = NULL;
    }
    return rc;
}

/* ---- ca --------------------------------------------------------------------- */

static enr_code chain_pem_of(STACK_OF(X509) *chain, char **out, enr_error *err)
{
    *out = NULL;
    if (sk_X509_num(chain) < 2)
        return ENR_OK; /* a root: no issuers above it */
    BIO *bio = BIO_new(BIO_s_mem());
    int ok = bio != NULL;
    for (int i = 1; ok && i < sk_X509_num(chain); i++)
        ok = PEM_write_bio_X509(bio, sk_X509_value(chain, i));
    if (!ok) {
        BIO_free(bio);
        return enr_error_openssl(err, ENR_E_CRYPTO, "cannot encode the CA chain");
    }
    char *data;
    long n = BIO_get_mem_data(bio, &data);
    *out = malloc((size_t)n + 1);
    if (*out != NULL) {
        memcpy(*out, data, (size_t)n);
        (*out)[n] = '\0';
    }
    BIO_free(bio);
    return *out != NULL ? ENR_OK : enr_error_set(err, ENR_E_NOMEM, "out of memory");
}

static enr_code copy_name(const call *c, const char *key, char *dst, size_t cap, const char *src)
{
    if (strlen(src) >= cap)
        return enr_error_set(c->err, ENR_E_USAGE, "%s: longer than %zu characters", key, cap - 1);
    memcpy(dst, src, strlen(src) + 1);
    return ENR_OK;
}

static enr_code ca_add(const call *c, json_t **out)
{
    static const char *const ARGS[] = {"name", "ca_dir", NULL};
    const char *name, *dir;
    enr_code rc;
    if ((rc = only_args(c, ARGS)) != ENR_OK || (rc = arg_text(c, "name", true, ENR_STORE_ID_MAX, &name)) != ENR_OK ||
        (rc = arg_text(c, "ca_dir", true, PATH_MAX - 1, &dir)) != ENR_OK)
        return rc;
    if (c->ctx->remote && dir[0] != '/')
        return enr_error_set(c->err, ENR_E_USAGE, "ca_dir: give the absolute path of the CA directory on the server");
    enr_ca_record rec = {0};
    rec.role = ENR_CA_ISSUING;
    snprintf(rec.name, sizeof rec.name, "%s", name);
    enr_ca *ca = NULL;
    char abs[PATH_MAX] = "";
    rc = enr_ca_open_public(dir, &ca, c->err);
    /* NOTFOUND from admin means "no such record"; a directory that is not a
     * CA is an argument the caller must change, and no retry helps: not the
     * store's trouble (IO, 503 over the API) either. CLI exit 3, API 422. */
    if (rc == ENR_E_NOTFOUND)
        rc = c->err->code = ENR_E_UNSUPPORTED;
    if (rc == ENR_OK && realpath(dir, abs) == NULL)
        rc = enr_error_set(c->err, ENR_E_IO, "%s: %s", dir, strerror(errno));
    if (rc == ENR_OK && strlen(abs) > ENR_STORE_KEY_REF_MAX)
        rc = enr_error_set(c->err, ENR_E_USAGE, "%s: the path is longer than %d bytes", abs, ENR_STORE_KEY_REF_MAX);
    cert_facts f = {0};
    if (rc == ENR_OK) {
        X509 *cert = enr_ca_cert(ca);
        cert_facts_of(cert, &f);
        if (X509_cmp_current_time(X509_get0_notAfter(cert)) < 0) {
            char until[32];
            enr_time_format(f.not_after, until, sizeof until);
            rc = enr_error_set(c->err, ENR_E_POLICY, "%s: the CA certificate expired on %s", dir, until);
        }
        if (rc == ENR_OK)
            rc = der_of(cert, &rec.certificate, c->err);
        if (rc == ENR_OK)
            rc = chain_pem_of(enr_ca_chain(ca), &rec.chain_pem, c->err);
        snprintf(rec.key_ref, sizeof rec.key_ref, "%s", abs);
    }
    /* The directory learns which store keeps its record (enr_ca_attach), so
     * `enroll ca revoke|crl|list --dir` see what enrolld issued and revoked.
     * Refused first if another store has it; written after the store took
     * the CA, and again when the same CA is added again (which repairs a
     * directory attached before the note existed). */
    const char *location = enr_store_location(c->store);
    char known_location[ENR_CA_STORE_LOCATION_MAX + 1], known_name[129];
    enr_error none;
    if (rc == ENR_OK && location != NULL && enr_ca_attachment(ca, known_location, known_name, &none) == ENR_OK &&
        strcmp(known_location, location) != 0)
        rc = enr_error_set(c->err, ENR_E_EXISTS,
                           "%s is attached to the store at %s already: a CA directory serves one store", abs,
                           known_location);
    bool again = false;
    if (rc == ENR_OK) {
        enr_audit_event ev;
        audit_set(c, &ev, "admin.ca.add", NULL, "ok", "issuing CA '%s' added: %s, directory %s", rec.name,
                  f.subject ? f.subject : "?", abs);
        rc = enr_store_create_ca(c->store, &rec, &ev, c->err);
        enr_ca_record known = {0};
        if (rc == ENR_E_EXISTS && enr_store_get_ca(c->store, rec.name, &known, &none) == ENR_OK &&
            known.role == ENR_CA_ISSUING && strcmp(known.key_ref, abs) == 0) {
            again = true;
            rc = ENR_OK;
        }
        enr_ca_record_free(&known);
    }
    if (rc == ENR_OK && location != NULL && (rc = enr_ca_attach(abs, location, rec.name, c->err)) != ENR_OK)
        enr_error_prefix(c->err, "CA '%s' is in the store, but its directory could not be told (run this again)",
                         rec.name);
    enr_ca_free(ca);
    cert_facts_free(&f);
    if (rc == ENR_OK) {
        *out = ca_json(&rec);
        json_object_set_new(*out, "action", json_string(again ? "attached" : "added"));
    }
    enr_ca_record_free(&rec);
    return rc;
}

static enr_code ca_upload(const call *c, json_t **out)
{
    static const char *const ARGS[] = {"name", "cert", NULL};
    const char *name;
    enr_code rc;
    if ((rc = only_args(c, ARGS)) != ENR_OK || (rc = arg_text(c, "name", true, ENR_STORE_ID_MAX, &name)) != ENR_OK)
        return rc;
    enr_ca_record rec = {0};
    rec.role = ENR_CA_BOOTSTRAP;
    snprintf(rec.name, sizeof rec.name, "%s", name);
    X509 *x = NULL;
    cert_facts f = {0};
    rc = arg_certificate(c, "cert", &x);
    if (rc == ENR_OK && X509_check_ca(x) < 1)
        rc = enr_error_set(c->err, ENR_E_POLICY,
                           "cert: not a CA certificate (no basicConstraints CA:TRUE); upload the CA that signs "
                           "the devices' certificates");
    if (rc == ENR_OK) {
        cert_facts_of(x, &f);
        rc = der_of(x, &rec.certificate, c->err);
    }
    unsigned char raw[16];
    if (rc == ENR_OK && RAND_bytes(raw, sizeof raw) != 1)
        rc = enr_error_openssl(c->err, ENR_E_CRYPTO, "no randomness for a verification code");
    for (size_t i = 0; rc == ENR_OK && i < sizeof raw; i++)
        snprintf(rec.verification_code + 2 * i, 3, "%02X", raw[i]);
    if (rc == ENR_OK) {
        enr_audit_event ev;
        audit_set(c, &ev, "admin.ca.upload", NULL, "ok",
                  "bootstrap CA '%s' uploaded: %s; awaiting proof of possession", rec.name,
                  f.subject ? f.subject : "?");
        rc = enr_store_create_ca(c->store, &rec, &ev, c->err);
    }
    X509_free(x);
    cert_facts_free(&f);
    if (rc == ENR_OK) {
        *out = ca_json(&rec);
        json_object_set_new(*out, "action", json_string("uploaded"));
    }
    enr_ca_record_free(&rec);
    return rc;
}

/* The proof of possession: `cert` names the code and the CA's key signed it. */
static enr_code check_verification_cert(const call *c, const enr_ca_record *ca, X509 *cert)
{
    char *cn = enr_name_common_name(X509_get_subject_name(cert));
    enr_code rc = ENR_OK;
    if (cn == NULL)
        rc = enr_error_set(c->err, ENR_E_VERIFY, "cert: the subject has no CN; it must be the verification code");
    else if (strcmp(cn, ca->verification_code) != 0)
        rc = enr_error_set(c->err, ENR_E_VERIFY,
                           "cert: subject CN '%.80s' is not the verification code of CA '%s' (`enroll admin ca "
                           "list` shows the code)",
                           cn, ca->name);
    free(cn);
    if (rc != ENR_OK)
        return rc;
    X509 *ca_x = x509_of(&ca->certificate);
    EVP_PKEY *ca_key = ca_x != NULL ? X509_get0_pubkey(ca_x) : NULL;
    if (ca_key == NULL)
        rc = enr_error_openssl(c->err, ENR_E_PARSE, "CA '%s': the stored certificate's key does not parse", ca->name);
    else if (X509_verify(cert, ca_key) != 1)
        rc = enr_error_openssl(c->err, ENR_E_VERIFY,
                               "cert: not signed by the key of CA '%s'; sign it with that CA's key", ca->name);
    X509_free(ca_x);
    return rc;
}

static enr_code ca_verify(const call *c, json_t **out)
{
    static const char *const ARGS[] = {"name", "cert", NULL};
    const char *name;
    enr_code rc;
    if ((rc = only_args(c, ARGS)) != ENR_OK || (rc = arg_text(c, "name", true, ENR_STORE_ID_MAX, &name)) != ENR_OK)
        return rc;
    enr_ca_record ca = {0};
    X509 *x = NULL;
    bool refused = false;
    rc = get_ca(c, name, &ca);
    if (rc == ENR_OK && ca.role != ENR_CA_BOOTSTRAP)
        rc = enr_error_set(c->err, ENR_E_POLICY,
                           "CA '%s' is an issuing CA: only uploaded (bootstrap) CAs are verified", name);
    if (rc == ENR_OK && ca.verified)
        rc = enr_error_set(c->err, ENR_E_EXISTS, "bootstrap CA '%s' is verified already; nothing to do", name);
    if (rc == ENR_OK) {
        rc = arg_certificate(c, "cert", &x);
        if (rc == ENR_OK)
            rc = check_verification_cert(c, &ca, x);
        refused = rc == ENR_E_VERIFY || rc == ENR_E_POLICY || rc == ENR_E_PARSE;
    }
    enr_audit_event ev;
    if (rc == ENR_OK) {
        audit_set(c, &ev, "admin.ca.verify", NULL, "ok", "bootstrap CA '%s': proof of possession accepted", name);
        rc = enr_store_set_ca_verification(c->store, name, "", true, &ev, c->err);
    } else if (refused) {
        enr_error ignored;
        audit_set(c, &ev, "admin.ca.verify", NULL, "rejected", "bootstrap CA '%s': proof of possession refused",
                  name);
        (void)enr_store_record_audit(c->store, &ev, &ignored);
    }
    X509_free(x);
    if (rc == ENR_OK) {
        ca.verified = true;
        *out = ca_json(&ca);
        json_object_set_new(*out, "action", json_string("verified"));
    }
    enr_ca_record_free(&ca);
    return rc;
}

static enr_code ca_list(const call *c, json_t **out)
{
    static const char *const ARGS[] = {NULL};
    enr_ca_record_list list = {0};
    enr_code rc = only_args(c, ARGS);
    if (rc == ENR_OK)
        rc = enr_store_list_cas(c->store, &list, c->err);
    if (rc == ENR_OK) {
        *out = json_array();
        for (size_t i = 0; i < list.count; i++)
            json_array_append_new(*out, ca_json(&list.items[i]));
    }
    enr_ca_record_list_free(&list);
    return rc;
}

/* ---- policy ----------------------------------------------------------------- */

static enr_code policy_new(const call *c, json_t **out)
{
    static const char *const ARGS[] = {"name",    "validity", "renewal_window",      "ca", "key_types",
                                       "ocsp_url", "crl_url", "allow_server_keygen", NULL};
    const char *name, *validity, *window, *ca_name, *types, *ocsp_url, *crl_url;
    bool keygen = false;
    enr_code rc;
    if ((rc = only_args(c, ARGS)) != ENR_OK || (rc = arg_text(c, "name", true, ENR_STORE_ID_MAX, &name)) != ENR_OK ||
        (rc = arg_text(c, "validity", true, ENR_STORE_DURATION_MAX, &validity)) != ENR_OK ||
        (rc = arg_text(c, "renewal_window", true, ENR_STORE_DURATION_MAX, &window)) != ENR_OK ||
        (rc = arg_text(c, "ca", true, ENR_STORE_ID_MAX, &ca_name)) != ENR_OK ||
        (rc = arg_text(c, "key_types", false, ENR_STORE_KEY_TYPES_MAX, &types)) != ENR_OK ||
        (rc = arg_text(c, "ocsp_url", false, ENR_STORE_CERT_URL_MAX, &ocsp_url)) != ENR_OK ||
        (rc = arg_text(c, "crl_url", false, ENR_STORE_CERT_URL_MAX, &crl_url)) != ENR_OK ||
        (rc = arg_bool(c, "allow_server_keygen", &keygen)) != ENR_OK)
        return rc;
    enr_duration d;
    if (enr_duration_parse(validity, &d, c->err) != ENR_OK) {
        enr_error_prefix(c->err, "validity");
        return c->err->code = ENR_E_USAGE;
    }
    if (enr_duration_parse(window, &d, c->err) != ENR_OK) {
        enr_error_prefix(c->err, "renewal_window");
        return c->err->code = ENR_E_USAGE;
    }
    if (types == NULL)
        types = DEFAULT_KEY_TYPES;
    enr_credential_policy p = {0};
    snprintf(p.name, sizeof p.name, "%s", name);
    snprintf(p.validity, sizeof p.validity, "%s", validity);
    snprintf(p.renewal_window, sizeof p.renewal_window, "%s", window);
    snprintf(p.ca_name, sizeof p.ca_name, "%s", ca_name);
    snprintf(p.key_types, sizeof p.key_types, "%s", types);
    snprintf(p.ocsp_url, sizeof p.ocsp_url, "%s", ocsp_url != NULL ? ocsp_url : "");
    snprintf(p.crl_url, sizeof p.crl_url, "%s", crl_url != NULL ? crl_url : "");
    p.allow_server_keygen = keygen;
    char list[ENR_STORE_KEY_TYPES_MAX + 1], *save = NULL;
    snprintf(list, sizeof list, "%s", types);
    for (char *t = strtok_r(list, ",", &save); t != NULL; t = strtok_r(NULL, ",", &save)) {
        enr_key_type kt;
        if (enr_key_type_parse(t, &kt, c->err) != ENR_OK) {
            enr_error_prefix(c->err, "key_types");
            return c->err->code = ENR_E_USAGE;
        }
    }
    enr_ca_record ca = {0};
    rc = no_such(get_ca(c, ca_name, &ca), c->err,
                 "; add the issuing CA first: `enroll admin ca add NAME --ca-dir DIR`");
    if (rc == ENR_OK && ca.role != ENR_CA_ISSUING)
        rc = enr_error_set(c->err, ENR_E_POLICY,
                           "CA '%s' is a device-attestation (bootstrap) CA: a policy needs an issuing CA "
                           "(`enroll admin ca add`)",
                           ca_name);
    if (rc == ENR_OK) {
        enr_audit_event ev;
        audit_set(c, &ev, "admin.policy.create", NULL, "ok",
                  "credential policy '%s' created: validity %s, renewal window %s, CA '%s', key types %s", p.name,
                  p.validity, p.renewal_window, p.ca_name, p.key_types);
        rc = enr_store_create_policy(c->store, &p, &ev, c->err);
    }
    enr_ca_record_free(&ca);
    if (rc == ENR_OK) {
        *out = policy_json(&p);
        json_object_set_new(*out, "action", json_string("created"));
    }
    return rc;
}

static enr_code policy_list(const call *c, json_t **out)
{
    static const char *const ARGS[] = {NULL};
    enr_policy_list list = {0};
    enr_code rc = only_args(c, ARGS);
    if (rc == ENR_OK)
        rc = enr_store_list_policies(c->store, &list, c->err);
    if (rc == ENR_OK) {
        *out = json_array();
        for (size_t i = 0; i < list.count; i++)
            json_array_append_new(*out, policy_json(&list.items[i]));
    }
    enr_policy_list_free(&list);
    return rc;
}

/* ---- enrollments ------------------------------------------------------------ */

/* HOST, HOST:PORT or [IPv6]:PORT, as a device would connect to it. */
static bool hub_valid(const char *hub)
{
    size_t len = strlen(hub);
    if (len == 0 || len > ENR_STORE_HUB_MAX)
        return false;
    char host[ENR_STORE_HUB_MAX + 1];
    const char *port = NULL;
    unsigned char addr[16];
    bool host_ok;
    if (hub[0] == '[') {
        const char *close = strchr(hub, ']');
        if (close == NULL || (close[1] != '\0' && close[1] != ':'))
            return false;
        snprintf(host, sizeof host, "%.*s", (int)(close - hub - 1), hub + 1);
        host_ok = inet_pton(AF_INET6, host, addr) == 1;
        port = close[1] == ':' ? close + 2 : NULL;
    } else {
        const char *colon = strchr(hub, ':');
        if (colon != NULL && strchr(colon + 1, ':') != NULL)
            return false; /* an IPv6 address needs brackets */
        snprintf(host, sizeof host, "%.*s", colon ? (int)(colon - hub) : (int)len, hub);
        host_ok = enr_dns_name_valid(host, false) || inet_pton(AF_INET, host, addr) == 1;
        port = colon ? colon + 1 : NULL;
    }
    if (!host_ok)
        return false;
    if (port == NULL)
        return true;
    size_t digits = strspn(port, "0123456789");
    if (digits == 0 || digits > 5 || port[digits] != '\0')
        return false;
    long n = strtol(port, NULL, 10);
    return n >= 1 && n <= 65535;
}

/* 32 random bytes, base64: a fresh symmetric key. */
static enr_code new_key(char out[ENR_STORE_KEY_MAX + 1], enr_error *err)
{
    unsigned char raw[SYMMETRIC_KEY_BYTES];
    char *b64 = NULL;
    enr_code rc = RAND_bytes(raw, sizeof raw) == 1 ? enr_base64_encode(raw, sizeof raw, &b64, err)
                                                   : enr_error_openssl(err, ENR_E_CRYPTO, "no randomness for a key");
    OPENSSL_cleanse(raw, sizeof raw);
    if (rc == ENR_OK)
        snprintf(out, ENR_STORE_KEY_MAX + 1, "%s", b64);
    if (b64 != NULL) {
        OPENSSL_cleanse(b64, strlen(b64));
        free(b64);
    }
    return rc;
}

/* The CA certificates an X.509 group trusts: verified bootstrap CAs only. */
static enr_code attach_bootstrap_cas(const call *c, const char *const *names, size_t count, enr_enrollment *e)
{
    e->certificates = calloc(count, sizeof *e->certificates);
    if (e->certificates == NULL)
        return enr_error_set(c->err, ENR_E_NOMEM, "out of memory");
    for (size_t i = 0; i < count; i++) {
        enr_ca_record ca = {0};
        enr_code rc = no_such(get_ca(c, names[i], &ca), c->err,
                              "; upload it first: `enroll admin ca upload NAME --cert FILE`");
        if (rc == ENR_OK && ca.role != ENR_CA_BOOTSTRAP)
            rc = enr_error_set(c->err, ENR_E_POLICY,
                               "CA '%s' is an issuing CA; --x509-ca takes device-attestation CAs uploaded with "
                               "`enroll admin ca upload`",
                               ca.name);
        if (rc == ENR_OK && !ca.verified)
            rc = enr_error_set(c->err, ENR_E_POLICY,
                               "bootstrap CA '%s' is not verified yet: prove possession of its key with `enroll "
                               "admin ca verify %s --cert FILE` (the code is in `enroll admin ca list`)",
                               ca.name, ca.name);
        if (rc == ENR_OK) {
            e->certificates[i] = ca.certificate; /* taken over */
            ca.certificate.data = NULL;
            ca.certificate.len = 0;
            e->certificate_count = i + 1;
        }
        enr_ca_record_free(&ca);
        if (rc != ENR_OK)
            return rc;
    }
    return ENR_OK;
}

static enr_code attach_device_cert(const call *c, enr_enrollment *e)
{
    X509 *x = NULL;
    enr_code rc = arg_certificate(c, "x509_cert", &x);
    if (rc == ENR_OK && X509_check_ca(x) >= 1)
        rc = enr_error_set(c->err, ENR_E_POLICY,
                           "x509_cert: a CA certificate; --x509-cert takes the device's own certificate (for "
                           "devices under a CA, make a group with --x509-ca)");
    if (rc == ENR_OK) {
        e->certificates = calloc(1, sizeof *e->certificates);
        rc = e->certificates != NULL ? der_of(x, &e->certificates[0], c->err)
                                     : enr_error_set(c->err, ENR_E_NOMEM, "out of memory");
        if (rc == ENR_OK)
            e->certificate_count = 1;
    }
    X509_free(x);
    return rc;
}

static enr_code enrollment_new(const call *c, enr_enrollment_kind kind, json_t **out)
{
    bool group = kind == ENR_ENROLLMENT_GROUP;
    static const char *const GROUP_ARGS[] = {"id", "policy", "symmetric", "x509_ca", "hub", NULL};
    static const char *const INDIVIDUAL_ARGS[] = {"id", "policy", "symmetric", "x509_cert", "hub", NULL};
    const char *id, *policy_name, *hub;
    bool symmetric;
    const char *cas[MAX_X509_CA];
    size_t ca_count = 0;
    enr_code rc;
    if ((rc = only_args(c, group ? GROUP_ARGS : INDIVIDUAL_ARGS)) != ENR_OK ||
        (rc = arg_text(c, "id", true, ENR_STORE_ID_MAX, &id)) != ENR_OK ||
        (rc = arg_text(c, "policy", true, ENR_STORE_ID_MAX, &policy_name)) != ENR_OK ||
        (rc = arg_text(c, "hub", false, ENR_STORE_HUB_MAX, &hub)) != ENR_OK ||
        (rc = arg_bool(c, "symmetric", &symmetric)) != ENR_OK)
        return rc;
    json_t *ca_arg = group ? json_object_get(c->args, "x509_ca") : NULL;
    if (ca_arg != NULL && !json_is_null(ca_arg)) {
        if (!json_is_array(ca_arg) || json_array_size(ca_arg) > MAX_X509_CA)
            return enr_error_set(c->err, ENR_E_USAGE, "x509_ca: must be a list of at most %d CA names",
                                 MAX_X509_CA);
        for (size_t i = 0; i < json_array_size(ca_arg); i++) {
            const char *n = json_string_value(json_array_get(ca_arg, i));
            if (n == NULL || n[0] == '\0' || strlen(n) > ENR_STORE_ID_MAX)
                return enr_error_set(c->err, ENR_E_USAGE, "x509_ca: item %zu is not a CA name", i + 1);
            for (size_t j = 0; j < ca_count; j++)
                if (strcmp(cas[j], n) == 0)
                    return enr_error_set(c->err, ENR_E_USAGE, "x509_ca: %s is given twice", n);
            cas[ca_count++] = n;
        }
    }
    bool x509 = group ? ca_count > 0 : json_object_get(c->args, "x509_cert") != NULL;
    if (symmetric == x509)
        return enr_error_set(c->err, ENR_E_USAGE, "choose the attestation: symmetric or %s",
                             group ? "x509_ca" : "x509_cert");
    if (!enr_registration_id_valid(id))
        return enr_error_set(c->err, ENR_E_USAGE,
                             "id: %s '%.130s' must be 1 to 128 characters of A-Z a-z 0-9 . _ : - ending in a "
                             "letter, digit or '-'",
                             group ? "group id" : "registration id", id);
    if (hub == NULL)
        hub = DEFAULT_HUB;
    if (!hub_valid(hub))
        return enr_error_set(c->err, ENR_E_USAGE, "hub: '%.260s' is not HOST or HOST:PORT (e.g. mqtt.example.com:8883)",
                             hub);
    enr_enrollment e = {0};
    e.kind = kind;
    e.attestation = x509 ? ENR_ATTEST_X509 : ENR_ATTEST_SYMMETRIC;
    e.enabled = true;
    snprintf(e.id, sizeof e.id, "%s", id);
    if ((rc = copy_name(c, "policy", e.policy, sizeof e.policy, policy_name)) != ENR_OK)
        return rc;
    snprintf(e.assigned_hub, sizeof e.assigned_hub, "%s", hub);
    enr_credential_policy policy;
    rc = get_policy(c, policy_name, &policy);
    if (rc == ENR_OK && x509 && group)
        rc = attach_bootstrap_cas(c, cas, ca_count, &e);
    else if (rc == ENR_OK && x509)
        rc = attach_device_cert(c, &e);
    else if (rc == ENR_OK) {
        rc = new_key(e.primary_key, c->err);
        if (rc == ENR_OK)
            rc = new_key(e.secondary_key, c->err);
    }
    if (rc == ENR_OK) {
        enr_audit_event ev;
        char how[300];
        if (!x509)
            snprintf(how, sizeof how, "symmetric keys generated");
        else if (!group)
            snprintf(how, sizeof how, "x509, one device certificate");
        else {
            snprintf(how, sizeof how, "x509 under CA");
            for (size_t i = 0; i < ca_count; i++) {
                size_t used = strlen(how);
                snprintf(how + used, sizeof how - used, "%s '%s'", i ? "," : "", cas[i]);
            }
        }
        audit_set(c, &ev, group ? "admin.group.create" : "admin.individual.create", group ? NULL : id, "ok",
                  "%s '%s' created: %s, policy '%s', hub '%s'", kind_words(kind), id, how, e.policy, e.assigned_hub);
        rc = enr_store_create_enrollment(c->store, &e, &ev, c->err);
    }
    if (rc == ENR_OK) {
        *out = enrollment_json(&e, true);
        json_object_set_new(*out, "action", json_string("created"));
    }
    enr_enrollment_free(&e);
    return rc;
}

static enr_code enrollment_list(const call *c, enr_enrollment_kind kind, json_t **out)
{
    static const char *const ARGS[] = {NULL};
    enr_enrollment_list list = {0};
    enr_code rc = only_args(c, ARGS);
    if (rc == ENR_OK)
        rc = enr_store_list_enrollments(c->store, kind, &list, c->err);
    if (rc == ENR_OK) {
        *out = json_array();
        for (size_t i = 0; i < list.count; i++)
            json_array_append_new(*out, enrollment_json(&list.items[i], false));
    }
    enr_enrollment_list_free(&list);
    return rc;
}

static enr_code enrollment_show(const call *c, enr_enrollment_kind kind, json_t **out)
{
    static const char *const ARGS[] = {"id", NULL};
    const char *id;
    enr_code rc;
    if ((rc = only_args(c, ARGS)) != ENR_OK || (rc = arg_text(c, "id", true, ENR_STORE_ID_MAX, &id)) != ENR_OK)
        return rc;
    enr_enrollment e = {0};
    enr_registration_list regs = {0};
    rc = get_enrollment(c, kind, id, &e);
    if (rc == ENR_OK) {
        enr_registration_filter f = {.enrollment_kind = kind, .enrollment_id = e.id};
        rc = enr_store_list_registrations(c->store, &f, &regs, c->err);
    }
    if (rc == ENR_OK) {
        *out = enrollment_json(&e, false);
        json_object_set_new(*out, "registrations", json_integer((json_int_t)regs.count));
    }
    enr_registration_list_free(&regs);
    enr_enrollment_free(&e);
    return rc;
}

static enr_code enrollment_set_enabled(const call *c, enr_enrollment_kind kind, bool enabled, json_t **out)
{
    static const char *const ARGS[] = {"id", NULL};
    const char *id;
    enr_code rc;
    if ((rc = only_args(c, ARGS)) != ENR_OK || (rc = arg_text(c, "id", true, ENR_STORE_ID_MAX, &id)) != ENR_OK)
        return rc;
    enr_enrollment e = {0};
    bool changed = false;
    rc = get_enrollment(c, kind, id, &e);
    if (rc == ENR_OK && e.enabled != enabled) {
        enr_audit_event ev;
        char kind_text[48];
        snprintf(kind_text, sizeof kind_text, "admin.%s.%s", kind_noun(kind), enabled ? "enable" : "disable");
        audit_set(c, &ev, kind_text, kind == ENR_ENROLLMENT_INDIVIDUAL ? e.id : NULL, "ok", "%s '%s' %s",
                  kind_words(kind), e.id, enabled ? "enabled" : "disabled");
        rc = enr_store_set_enrollment_enabled(c->store, kind, e.id, enabled, &ev, c->err);
        changed = rc == ENR_OK;
    }
    if (rc == ENR_OK && changed) {
        enr_enrollment_free(&e);
        rc = get_enrollment(c, kind, id, &e);
    }
    if (rc == ENR_OK) {
        *out = enrollment_json(&e, false);
        json_object_set_new(*out, "changed", json_boolean(changed));
    }
    enr_enrollment_free(&e);
    return rc;
}

/* ---- keys ------------------------------------------------------------------- */

static enr_code get_symmetric(const call *c, enr_enrollment_kind kind, const char *id, enr_enrollment *e)
{
    enr_code rc = get_enrollment(c, kind, id, e);
    if (rc == ENR_OK && e->attestation != ENR_ATTEST_SYMMETRIC)
        rc = enr_error_set(c->err, ENR_E_POLICY, "%s '%s' uses X.509 attestation: it has no keys", kind_words(kind),
                           e->id);
    return rc;
}

/* The one symmetric enrollment named by "group" or "individual". */
static enr_code symmetric_target(const call *c, enr_enrollment_kind *kind, enr_enrollment *e)
{
    static const char *const ARGS[] = {"group", "individual", NULL};
    const char *group, *individual;
    enr_code rc;
    if ((rc = only_args(c, ARGS)) != ENR_OK || (rc = arg_text(c, "group", false, ENR_STORE_ID_MAX, &group)) != ENR_OK ||
        (rc = arg_text(c, "individual", false, ENR_STORE_ID_MAX, &individual)) != ENR_OK)
        return rc;
    if ((group == NULL) == (individual == NULL))
        return enr_error_set(c->err, ENR_E_USAGE, "give exactly one of group or individual");
    *kind = group ? ENR_ENROLLMENT_GROUP : ENR_ENROLLMENT_INDIVIDUAL;
    return get_symmetric(c, *kind, group ? group : individual, e);
}

static json_t *keys_json(enr_enrollment_kind kind, const enr_enrollment *e)
{
    json_t *o = json_object();
    json_object_set_new(o, kind == ENR_ENROLLMENT_GROUP ? "group_id" : "registration_id", json_string(e->id));
    json_object_set_new(o, "kind", json_string(kind_noun(kind)));
    json_object_set_new(o, "primary_key", json_string(e->primary_key));
    json_object_set_new(o, "secondary_key", json_text(e->secondary_key));
    return o;
}

static enr_code key_show(const call *c, json_t **out)
{
    enr_enrollment_kind kind = ENR_ENROLLMENT_GROUP; /* set by symmetric_target; gcc -O3 cannot see it */
    enr_enrollment e = {0};
    enr_code rc = symmetric_target(c, &kind, &e);
    if (rc == ENR_OK) {
        enr_audit_event ev;
        audit_set(c, &ev, "admin.key.show", kind == ENR_ENROLLMENT_INDIVIDUAL ? e.id : NULL, "ok",
                  "keys of %s '%s' shown", kind_words(kind), e.id);
        rc = enr_store_record_audit(c->store, &ev, c->err);
    }
    if (rc == ENR_OK)
        *out = keys_json(kind, &e);
    enr_enrollment_free(&e);
    return rc;
}

static enr_code key_derive(const call *c, json_t **out)
{
    static const char *const ARGS[] = {"group", "registration_id", "secondary", NULL};
    const char *group, *rid;
    bool secondary;
    enr_code rc;
    if ((rc = only_args(c, ARGS)) != ENR_OK || (rc = arg_text(c, "group", true, ENR_STORE_ID_MAX, &group)) != ENR_OK ||
        (rc = arg_text(c, "registration_id", true, ENR_STORE_ID_MAX + 8, &rid)) != ENR_OK ||
        (rc = arg_bool(c, "secondary", &secondary)) != ENR_OK)
        return rc;
    if (!enr_registration_id_valid(rid))
        return enr_error_set(c->err, ENR_E_USAGE,
                             "registration_id: '%.130s' must be 1 to 128 characters of A-Z a-z 0-9 . _ : - ending "
                             "in a letter, digit or '-'",
                             rid);
    enr_enrollment e = {0};
    char *device_key = NULL;
    rc = get_symmetric(c, ENR_ENROLLMENT_GROUP, group, &e);
    if (rc == ENR_OK && secondary && e.secondary_key[0] == '\0')
        rc = enr_error_set(c->err, ENR_E_POLICY, "enrollment group '%s' has no secondary key", e.id);
    if (rc == ENR_OK)
        rc = enr_sas_derive_device_key(secondary ? e.secondary_key : e.primary_key, rid, &device_key, c->err);
    if (rc == ENR_OK) {
        enr_audit_event ev;
        audit_set(c, &ev, "admin.key.derive", rid, "ok",
                  "device key of '%s' derived from the %s key of enrollment group '%s'", rid,
                  secondary ? "secondary" : "primary", e.id);
        rc = enr_store_record_audit(c->store, &ev, c->err);
    }
    if (rc == ENR_OK) {
        *out = json_object();
        json_object_set_new(*out, "group_id", json_string(e.id));
        json_object_set_new(*out, "registration_id", json_string(rid));
        json_object_set_new(*out, "from", json_string(secondary ? "secondary" : "primary"));
        json_object_set_new(*out, "device_key", json_string(device_key));
    }
    enr_sas_secret_free(device_key);
    enr_enrollment_free(&e);
    return rc;
}

/* A new primary key; the old primary stays valid as the secondary, so
 * devices move over without downtime (as DPS's regenerate-key). A group's
 * devices hold keys derived from the group's: hand them keys derived from
 * the new primary (`key derive`) before rotating again. */
static enr_code key_rotate(const call *c, json_t **out)
{
    enr_enrollment_kind kind = ENR_ENROLLMENT_GROUP; /* set by symmetric_target; gcc -O3 cannot see it */
    enr_enrollment e = {0};
    char fresh[ENR_STORE_KEY_MAX + 1] = "";
    enr_code rc = symmetric_target(c, &kind, &e);
    if (rc == ENR_OK)
        rc = new_key(fresh, c->err);
    if (rc == ENR_OK) {
        enr_audit_event ev;
        audit_set(c, &ev, "admin.key.rotate", kind == ENR_ENROLLMENT_INDIVIDUAL ? e.id : NULL, "ok",
                  "keys of %s '%s' rotated: a new primary, the old primary is the secondary now", kind_words(kind),
                  e.id);
        rc = enr_store_rotate_enrollment_key(c->store, kind, e.id, fresh, &ev, c->err);
    }
    if (rc == ENR_OK) {
        /* The statement moved the primary read above to the secondary (a second
         * rotation racing this one: `key show` has the final word). */
        snprintf(e.secondary_key, sizeof e.secondary_key, "%s", e.primary_key);
        snprintf(e.primary_key, sizeof e.primary_key, "%s", fresh);
        *out = keys_json(kind, &e);
    }
    OPENSSL_cleanse(fresh, sizeof fresh);
    enr_enrollment_free(&e);
    return rc;
}

/* EST's HTTP Basic secret for an enrollment (either attestation): a new
 * one replaces the old at once; the store keeps its SHA-256 only, so this
 * answer is the one time it is seen. */
static enr_code est_secret(const call *c, json_t **out)
{
    static const char *const ARGS[] = {"group", "individual", "remove", NULL};
    const char *group, *individual;
    bool remove = false;
    enr_code rc;
    if ((rc = only_args(c, ARGS)) != ENR_OK || (rc = arg_text(c, "group", false, ENR_STORE_ID_MAX, &group)) != ENR_OK ||
        (rc = arg_text(c, "individual", false, ENR_STORE_ID_MAX, &individual)) != ENR_OK ||
        (rc = arg_bool(c, "remove", &remove)) != ENR_OK)
        return rc;
    if ((group == NULL) == (individual == NULL))
        return enr_error_set(c->err, ENR_E_USAGE, "give exactly one of group or individual");
    enr_enrollment_kind kind = group ? ENR_ENROLLMENT_GROUP : ENR_ENROLLMENT_INDIVIDUAL;
    enr_enrollment e = {0};
    char secret[64] = "", hash[ENR_STORE_SHA256_HEX + 1] = "";
    if ((rc = get_enrollment(c, kind, group ? group : individual, &e)) == ENR_OK && !remove &&
        (rc = enr_est_secret_new(secret, c->err)) == ENR_OK)
        enr_est_secret_hash(secret, strlen(secret), hash);
    if (rc == ENR_OK) {
        enr_audit_event ev;
        audit_set(c, &ev, "admin.est.secret", kind == ENR_ENROLLMENT_INDIVIDUAL ? e.id : NULL, "ok",
                  "EST secret of %s '%s' %s", kind_words(kind), e.id, remove ? "removed" : "replaced by a new one");
        rc = enr_store_set_enrollment_basic_secret(c->store, kind, e.id, remove ? NULL : hash, &ev, c->err);
    }
    if (rc == ENR_OK) {
        *out = json_object();
        json_object_set_new(*out, kind == ENR_ENROLLMENT_GROUP ? "group_id" : "registration_id", json_string(e.id));
        json_object_set_new(*out, "kind", json_string(kind_noun(kind)));
        json_object_set_new(*out, "secret", remove ? json_null() : json_string(secret));
    }
    OPENSSL_cleanse(secret, sizeof secret);
    enr_enrollment_free(&e);
    return rc;
}

/* ---- registrations ---------------------------------------------------------- */

static void republish_crl(const call *c, const char *issuer, json_t *report);

static enr_code arg_reason(const call *c, int *reason)
{
    const char *text;
    enr_code rc = arg_text(c, "reason", true, 64, &text);
    if (rc == ENR_OK && enr_revocation_reason_parse(text, reason, c->err) != ENR_OK) {
        enr_error_prefix(c->err, "reason");
        rc = ENR_E_USAGE;
    }
    return rc;
}

static enr_code get_registration(const call *c, const char *id, enr_registration *r)
{
    return no_such(enr_store_get_registration(c->store, id, r, c->err), c->err,
                   " (see `enroll admin registration list`)");
}

static enr_code registration_list(const call *c, json_t **out)
{
    static const char *const ARGS[] = {"group", "individual", "status", NULL};
    static const char *const STATUSES[] = {"assigning", "assigned", "failed", "disabled", "unassigned", NULL};
    const char *group, *individual, *status;
    enr_code rc;
    if ((rc = only_args(c, ARGS)) != ENR_OK || (rc = arg_text(c, "group", false, ENR_STORE_ID_MAX, &group)) != ENR_OK ||
        (rc = arg_text(c, "individual", false, ENR_STORE_ID_MAX, &individual)) != ENR_OK ||
        (rc = arg_text(c, "status", false, ENR_STORE_WORD_MAX, &status)) != ENR_OK)
        return rc;
    if (group != NULL && individual != NULL)
        return enr_error_set(c->err, ENR_E_USAGE, "give group or individual, not both");
    bool status_ok = status == NULL;
    for (size_t i = 0; !status_ok && STATUSES[i] != NULL; i++)
        status_ok = strcmp(status, STATUSES[i]) == 0;
    if (!status_ok)
        return enr_error_set(c->err, ENR_E_USAGE,
                             "status: '%s': choose assigning, assigned, failed, disabled or unassigned", status);
    enr_registration_filter f = {0};
    f.status = status;
    if (group != NULL || individual != NULL) {
        f.enrollment_kind = group ? ENR_ENROLLMENT_GROUP : ENR_ENROLLMENT_INDIVIDUAL;
        f.enrollment_id = group ? group : individual;
        /* An unknown enrollment is a mistake, not an empty list. */
        enr_enrollment e = {0};
        rc = get_enrollment(c, f.enrollment_kind, f.enrollment_id, &e);
        enr_enrollment_free(&e);
        if (rc != ENR_OK)
            return rc;
    }
    enr_registration_list list = {0};
    rc = enr_store_list_registrations(c->store, &f, &list, c->err);
    if (rc == ENR_OK) {
        *out = json_array();
        for (size_t i = 0; i < list.count; i++)
            json_array_append_new(*out, registration_json(&list.items[i]));
    }
    enr_registration_list_free(&list);
    return rc;
}

static enr_code registration_show(const call *c, json_t **out)
{
    static const char *const ARGS[] = {"id", NULL};
    const char *id;
    enr_code rc;
    if ((rc = only_args(c, ARGS)) != ENR_OK || (rc = arg_text(c, "id", true, ENR_STORE_ID_MAX, &id)) != ENR_OK)
        return rc;
    enr_registration r;
    enr_certificate_list certs = {0};
    rc = get_registration(c, id, &r);
    if (rc == ENR_OK) {
        enr_certificate_filter f = {.registration_id = r.registration_id};
        rc = enr_store_list_certificates(c->store, &f, &certs, c->err);
    }
    if (rc == ENR_OK) {
        *out = registration_json(&r);
        json_t *arr = json_array();
        for (size_t i = 0; i < certs.count; i++)
            json_array_append_new(arr, certificate_json(&certs.items[i]));
        json_object_set_new(*out, "certificates", arr);
    }
    enr_certificate_list_free(&certs);
    return rc;
}

static enr_code registration_revoke(const call *c, json_t **out)
{
    static const char *const ARGS[] = {"id", "reason", NULL};
    const char *id;
    int reason = 0;
    enr_code rc;
    if ((rc = only_args(c, ARGS)) != ENR_OK || (rc = arg_text(c, "id", true, ENR_STORE_ID_MAX, &id)) != ENR_OK ||
        (rc = arg_reason(c, &reason)) != ENR_OK)
        return rc;
    enr_registration r;
    enr_certificate_list revoked = {0};
    rc = get_registration(c, id, &r);
    if (rc == ENR_OK) {
        enr_audit_event ev;
        audit_set(c, &ev, "admin.registration.revoke", r.registration_id, "ok",
                  "every certificate of registration '%s' revoked: %s", r.registration_id,
                  enr_revocation_reason_name(reason));
        rc = enr_store_revoke_registration(c->store, r.registration_id, reason, 0, &ev, &revoked, c->err);
    }
    if (rc == ENR_OK) {
        *out = json_object();
        json_object_set_new(*out, "registration_id", json_string(r.registration_id));
        json_object_set_new(*out, "enrollment_kind", json_string(kind_noun(r.enrollment_kind)));
        json_object_set_new(*out, "enrollment_id", json_string(r.enrollment_id));
        json_object_set_new(*out, "reason", json_string(enr_revocation_reason_name(reason)));
        json_t *arr = json_array(), *crls = json_array();
        for (size_t i = 0; i < revoked.count; i++) {
            json_array_append_new(arr, certificate_json(&revoked.items[i]));
            bool issuer_seen = false; /* one CRL per CA, however many of its certificates */
            for (size_t j = 0; j < i && !issuer_seen; j++)
                issuer_seen = strcmp(revoked.items[j].issuer, revoked.items[i].issuer) == 0;
            if (!issuer_seen)
                republish_crl(c, revoked.items[i].issuer, crls);
        }
        json_object_set_new(*out, "revoked", arr);
        json_object_set_new(*out, "crls", crls);
    }
    enr_certificate_list_free(&revoked);
    return rc;
}

/* A registration stays with the enrollment it registered through; moving
 * it to another is this explicit, audited act. */
static enr_code registration_move(const call *c, json_t **out)
{
    static const char *const ARGS[] = {"id", "group", "individual", NULL};
    const char *id, *group, *individual;
    enr_code rc;
    if ((rc = only_args(c, ARGS)) != ENR_OK || (rc = arg_text(c, "id", true, ENR_STORE_ID_MAX, &id)) != ENR_OK ||
        (rc = arg_text(c, "group", false, ENR_STORE_ID_MAX, &group)) != ENR_OK ||
        (rc = arg_text(c, "individual", false, ENR_STORE_ID_MAX, &individual)) != ENR_OK)
        return rc;
    if ((group == NULL) == (individual == NULL))
        return enr_error_set(c->err, ENR_E_USAGE,
                             "give exactly one of group (the group to move it to) or individual (its own "
                             "individual enrollment)");
    if (individual != NULL && strcasecmp(individual, id) != 0)
        return enr_error_set(c->err, ENR_E_USAGE,
                             "individual: an individual enrollment is for its own registration id only ('%.130s')",
                             id);
    enr_registration r;
    rc = get_registration(c, id, &r);
    enr_enrollment_kind kind = group ? ENR_ENROLLMENT_GROUP : ENR_ENROLLMENT_INDIVIDUAL;
    const char *target = group ? group : r.registration_id;
    enr_enrollment e = {0};
    if (rc == ENR_OK)
        rc = get_enrollment(c, kind, target, &e);
    if (rc == ENR_OK) {
        enr_audit_event ev;
        audit_set(c, &ev, "admin.registration.move", r.registration_id, "ok",
                  "registration '%s' moved from %s '%s' to %s '%s'", r.registration_id,
                  kind_words(r.enrollment_kind), r.enrollment_id, kind_words(kind), e.id);
        rc = enr_store_move_registration(c->store, r.registration_id, kind, e.id, &ev, c->err);
    }
    if (rc == ENR_OK) {
        *out = json_object();
        json_object_set_new(*out, "registration_id", json_string(r.registration_id));
        json_object_set_new(*out, "from_kind", json_string(kind_noun(r.enrollment_kind)));
        json_object_set_new(*out, "from", json_string(r.enrollment_id));
        json_object_set_new(*out, "enrollment_kind", json_string(kind_noun(kind)));
        json_object_set_new(*out, "enrollment_id", json_string(e.id));
    }
    enr_enrollment_free(&e);
    return rc;
}

static enr_code registration_set_enabled(const call *c, bool enabled, json_t **out)
{
    static const char *const ARGS[] = {"id", NULL};
    const char *id;
    enr_code rc;
    if ((rc = only_args(c, ARGS)) != ENR_OK || (rc = arg_text(c, "id", true, ENR_STORE_ID_MAX, &id)) != ENR_OK)
        return rc;
    enr_registration r;
    bool changed = false;
    rc = get_registration(c, id, &r);
    bool disabled = rc == ENR_OK && strcmp(r.status, "disabled") == 0;
    if (rc == ENR_OK && disabled == enabled) {
        enr_audit_event ev;
        audit_set(c, &ev, enabled ? "admin.registration.enable" : "admin.registration.disable", r.registration_id,
                  "ok", "registration '%s' %s", r.registration_id,
                  enabled ? "enabled" : "disabled: the device may not register or renew");
        rc = enr_store_set_registration_enabled(c->store, r.registration_id, enabled, &ev, c->err);
        changed = rc == ENR_OK;
        if (rc == ENR_OK)
            rc = get_registration(c, id, &r);
    }
    if (rc == ENR_OK) {
        *out = registration_json(&r);
        json_object_set_new(*out, "changed", json_boolean(changed));
    }
    return rc;
}

/* ---- certificates ----------------------------------------------------------- */

static enr_code cert_list(const call *c, json_t **out)
{
    static const char *const ARGS[] = {"expiring", "revoked", "registration", "issuer", NULL};
    const char *expiring, *registration, *issuer;
    bool revoked;
    enr_code rc;
    if ((rc = only_args(c, ARGS)) != ENR_OK ||
        (rc = arg_text(c, "expiring", false, ENR_STORE_DURATION_MAX, &expiring)) != ENR_OK ||
        (rc = arg_bool(c, "revoked", &revoked)) != ENR_OK ||
        (rc = arg_text(c, "registration", false, ENR_STORE_ID_MAX, &registration)) != ENR_OK ||
        (rc = arg_text(c, "issuer", false, ENR_STORE_DN_MAX, &issuer)) != ENR_OK)
        return rc;
    enr_certificate_filter f = {0};
    f.now = time(NULL);
    if (expiring != NULL) {
        enr_duration d;
        if (enr_duration_parse(expiring, &d, c->err) != ENR_OK) {
            enr_error_prefix(c->err, "expiring");
            return c->err->code = ENR_E_USAGE;
        }
        time_t until = enr_duration_apply(f.now, &d, 1);
        f.expiring_within = until > f.now ? (int64_t)(until - f.now) : 0;
        if (f.expiring_within == 0)
            return enr_error_set(c->err, ENR_E_USAGE, "expiring: '%s' is not a period into the future", expiring);
    }
    f.revoked = revoked ? ENR_REVOKED_ONLY : expiring ? ENR_REVOKED_NONE : ENR_REVOKED_ANY;
    f.registration_id = registration;
    f.issuer = issuer;
    enr_certificate_list list = {0};
    rc = enr_store_list_certificates(c->store, &f, &list, c->err);
    if (rc == ENR_OK) {
        *out = json_array();
        for (size_t i = 0; i < list.count; i++)
            json_array_append_new(*out, certificate_json(&list.items[i]));
    }
    enr_certificate_list_free(&list);
    return rc;
}

/* A serial as `openssl x509 -serial` prints it: upper case, whole octets,
 * no leading zero octets. False when it is not 1 to 40 hex digits. */
static bool canonical_serial(const char *in, char out[ENR_STORE_SERIAL_MAX + 1])
{
    size_t len = strlen(in);
    if (len == 0 || len > ENR_STORE_SERIAL_MAX || strspn(in, "0123456789abcdefABCDEF") != len)
        return false;
    while (*in == '0')
        in++;
    size_t digits = strlen(in), width = digits == 0 ? 2 : digits + (digits & 1);
    memset(out, '0', width - digits);
    for (size_t i = 0; i < digits; i++)
        out[width - digits + i] = (in[i] >= 'a' && in[i] <= 'f') ? (char)(in[i] - 'a' + 'A') : in[i];
    out[width] = '\0';
    return true;
}

/* The one certificate with this serial (from `issuer`, when given). */
static enr_code find_certificate(const call *c, const char *issuer, const char *serial, enr_certificate *out)
{
    if (issuer != NULL)
        return no_such(enr_store_get_certificate(c->store, issuer, serial, out, c->err), c->err,
                       " (see `enroll admin cert list`)");
    enr_certificate_list all = {0};
    enr_code rc = enr_store_list_certificates(c->store, NULL, &all, c->err);
    size_t found = 0, at = 0;
    for (size_t i = 0; rc == ENR_OK && i < all.count; i++)
        if (strcmp(all.items[i].serial, serial) == 0) {
            found++;
            at = i;
        }
    if (rc == ENR_OK && found == 0)
        rc = enr_error_set(c->err, ENR_E_NOTFOUND,
                           "no certificate with serial %s in the store (see `enroll admin cert list`)", serial);
    else if (rc == ENR_OK && found > 1)
        rc = enr_error_set(c->err, ENR_E_USAGE,
                           "issuer: %zu certificates from different issuers have serial %s: give --issuer DN as "
                           "`enroll admin cert list` prints it",
                           found, serial);
    if (rc == ENR_OK) {
        *out = all.items[at];
        memset(&all.items[at], 0, sizeof all.items[at]); /* taken over */
    }
    enr_certificate_list_free(&all);
    return rc;
}

static enr_code cert_revoke(const call *c, json_t **out)
{
    static const char *const ARGS[] = {"serial", "issuer", "reason", NULL};
    const char *serial_arg, *issuer;
    int reason = 0;
    enr_code rc;
    if ((rc = only_args(c, ARGS)) != ENR_OK || (rc = arg_text(c, "serial", true, 64, &serial_arg)) != ENR_OK ||
        (rc = arg_text(c, "issuer", false, ENR_STORE_DN_MAX, &issuer)) != ENR_OK)
        return rc;
    char serial[ENR_STORE_SERIAL_MAX + 1];
    if (!canonical_serial(serial_arg, serial))
        return enr_error_set(c->err, ENR_E_USAGE,
                             "serial: '%.50s' is not 1 to %d hex digits (as `openssl x509 -serial` prints it)",
                             serial_arg, ENR_STORE_SERIAL_MAX);
    if ((rc = arg_reason(c, &reason)) != ENR_OK)
        return rc;
    enr_certificate cert = {0};
    rc = find_certificate(c, issuer, serial, &cert);
    if (rc == ENR_OK && cert.revoked)
        rc = enr_error_set(c->err, ENR_E_EXISTS, "certificate %s from issuer '%s' is revoked already (%s)",
                           cert.serial, cert.issuer, enr_revocation_reason_name(cert.revocation_reason));
    if (rc == ENR_OK) {
        enr_audit_event ev;
        audit_set(c, &ev, "admin.cert.revoke", cert.registration_id, "ok",
                  "certificate %s from issuer '%s' revoked: %s", cert.serial, cert.issuer,
                  enr_revocation_reason_name(reason));
        rc = enr_store_revoke_certificate(c->store, cert.issuer, cert.serial, reason, 0, &ev, c->err);
    }
    if (rc == ENR_OK) {
        cert.revoked = true;
        cert.revocation_reason = reason;
        cert.revoked_at = time(NULL);
        *out = certificate_json(&cert);
        json_object_set_new(*out, "action", json_string("revoked"));
        json_t *crls = json_array();
        republish_crl(c, cert.issuer, crls);
        json_object_set_new(*out, "crls", crls);
    }
    enr_certificate_free(&cert);
    return rc;
}

/* ---- CRL -------------------------------------------------------------------- */

enr_code enr_admin_store_revocations(void *store, const enr_ca *ca, enr_crl_sink *sink, enr_error *err)
{
    char *issuer = enr_name_format(X509_get_subject_name(enr_ca_cert(ca)));
    if (issuer == NULL)
        return enr_error_set(err, ENR_E_NOMEM, "out of memory");
    enr_certificate_list revoked = {0};
    enr_certificate_filter f = {.issuer = issuer, .revoked = ENR_REVOKED_ONLY};
    enr_code rc = enr_store_list_certificates(store, &f, &revoked, err);
    for (size_t i = 0; rc == ENR_OK && i < revoked.count; i++) {
        enr_crl_entry e = {revoked.items[i].serial, revoked.items[i].revocation_reason, revoked.items[i].revoked_at};
        rc = enr_crl_sink_add(sink, &e, err);
    }
    if (rc != ENR_OK)
        enr_error_prefix(err, "the store's revocations of %s", issuer);
    enr_certificate_list_free(&revoked);
    free(issuer);
    return rc;
}

enr_code enr_admin_store_crl_number(void *store, const enr_ca *ca, int64_t at_least, int64_t *number,
                                    enr_error *err)
{
    char *issuer = enr_name_format(X509_get_subject_name(enr_ca_cert(ca)));
    if (issuer == NULL)
        return enr_error_set(err, ENR_E_NOMEM, "out of memory");
    enr_code rc = enr_store_next_crl_number(store, issuer, at_least, number, err);
    if (rc != ENR_OK)
        enr_error_prefix(err, "the store's CRL number of %s", issuer);
    free(issuer);
    return rc;
}

void enr_admin_attach_ca(enr_store *store, enr_ca *ca)
{
    enr_ca_set_revocation_source(ca, enr_admin_store_revocations, store);
    enr_ca_set_crl_number_source(ca, enr_admin_store_crl_number, store);
}

enr_code enr_admin_open_ca(enr_store *store, const char *dir, const char *passphrase, const enr_token_options *token,
                           enr_ca **out, enr_error *err)
{
    enr_code rc = enr_ca_open(dir, passphrase, token, out, err);
    if (rc == ENR_OK)
        enr_admin_attach_ca(store, *out);
    return rc;
}

/* An issuing CA of the store, opened with its key and the store's
 * revocations as its second record. */
static enr_code open_issuing_ca(const call *c, enr_ca_record *rec, enr_ca **ca)
{
    if (rec->role != ENR_CA_ISSUING)
        return enr_error_set(c->err, ENR_E_POLICY,
                             "CA '%s' is a device-attestation (bootstrap) CA: only issuing CAs publish CRLs here",
                             rec->name);
    enr_code rc = enr_admin_open_ca(c->store, rec->key_ref, NULL, NULL, ca, c->err);
    /* A directory the store records but that is gone: the CA cannot be
     * used (ENR_E_IO), which is not "no such CA" (the record is there). */
    if (rc == ENR_E_NOTFOUND)
        rc = c->err->code = ENR_E_IO;
    return rc;
}

static json_t *crl_json(const enr_ca_record *rec, X509_CRL *crl, time_t now, int64_t next)
{
    json_t *o = json_object();
    char *issuer = enr_name_format(X509_CRL_get_issuer(crl));
    ASN1_INTEGER *number = X509_CRL_get_ext_d2i(crl, NID_crl_number, NULL, NULL);
    STACK_OF(X509_REVOKED) *listed = X509_CRL_get_REVOKED(crl);
    json_object_set_new(o, "ca", json_string(rec->name));
    json_object_set_new(o, "issuer", json_text(issuer));
    json_object_set_new(o, "crl_number", json_integer(number ? (json_int_t)ASN1_INTEGER_get(number) : 0));
    json_object_set_new(o, "this_update", json_time(now));
    json_object_set_new(o, "next_update", json_time(now + (time_t)next));
    json_object_set_new(o, "revoked", json_integer(listed ? sk_X509_REVOKED_num(listed) : 0));
    ASN1_INTEGER_free(number);
    free(issuer);
    return o;
}

/* After a revocation in the store: the CA directory's crl.pem of the
 * issuer lists it at once, as `enroll ca revoke` does for its own. Best
 * effort (the revocation stands; a CA whose key needs a PIN or passphrase
 * gets its CRL from `enroll admin crl`): the answer says which. */
static void republish_crl(const call *c, const char *issuer, json_t *report)
{
    enr_ca_record_list cas = {0};
    enr_error e;
    if (enr_store_list_cas(c->store, &cas, &e) != ENR_OK)
        return;
    for (size_t i = 0; i < cas.count; i++) {
        enr_ca_record *rec = &cas.items[i];
        X509 *x = rec->role == ENR_CA_ISSUING ? x509_of(&rec->certificate) : NULL;
        char *subject = x != NULL ? enr_name_format(X509_get_subject_name(x)) : NULL;
        bool ours = subject != NULL && strcmp(subject, issuer) == 0;
        free(subject);
        X509_free(x);
        if (!ours)
            continue;
        enr_ca *ca = NULL;
        X509_CRL *crl = NULL;
        enr_crl_options opts = {0};
        call quiet = *c;
        quiet.err = &e;
        enr_code rc = open_issuing_ca(&quiet, rec, &ca);
        if (rc == ENR_OK)
            rc = enr_ca_crl_ex(ca, &opts, &crl, &e);
        json_t *o = rc == ENR_OK ? crl_json(rec, crl, time(NULL), 7 * 86400) : json_object();
        if (rc != ENR_OK) {
            json_object_set_new(o, "ca", json_string(rec->name));
            json_object_set_new(o, "error", json_string(e.message));
        }
        json_array_append_new(report, o);
        X509_CRL_free(crl);
        enr_ca_free(ca);
    }
    enr_ca_record_list_free(&cas);
}

/* A CRL of an issuing CA in the store: what its directory records as
 * revoked plus what the store does (enrolld records there), signed with the
 * CA's key, numbered on from the directory's crlnumber. */
static enr_code crl_export(const call *c, json_t **out)
{
    static const char *const ARGS[] = {"ca", "next_update", NULL};
    const char *name, *next_text;
    enr_code rc;
    if ((rc = only_args(c, ARGS)) != ENR_OK || (rc = arg_text(c, "ca", true, ENR_STORE_ID_MAX, &name)) != ENR_OK ||
        (rc = arg_text(c, "next_update", false, ENR_STORE_DURATION_MAX, &next_text)) != ENR_OK)
        return rc;
    time_t now = time(NULL);
    int64_t next = 7 * 86400;
    if (next_text != NULL) {
        enr_duration d;
        if (enr_duration_parse(next_text, &d, c->err) != ENR_OK) {
            enr_error_prefix(c->err, "next_update");
            return c->err->code = ENR_E_USAGE;
        }
        time_t until = enr_duration_apply(now, &d, 1);
        if (until <= now)
            return enr_error_set(c->err, ENR_E_USAGE, "next_update: '%s' is not a period into the future",
                                 next_text);
        next = (int64_t)(until - now);
    }
    enr_ca_record rec = {0};
    enr_ca *ca = NULL;
    X509_CRL *crl = NULL;
    rc = get_ca(c, name, &rec);
    if (rc == ENR_OK)
        rc = open_issuing_ca(c, &rec, &ca);
    if (rc == ENR_OK) {
        enr_crl_options opts = {.now = now, .next_update = next};
        rc = enr_ca_crl_ex(ca, &opts, &crl, c->err);
    }
    BIO *bio = NULL;
    if (rc == ENR_OK && ((bio = BIO_new(BIO_s_mem())) == NULL || !PEM_write_bio_X509_CRL(bio, crl)))
        rc = enr_error_openssl(c->err, ENR_E_CRYPTO, "cannot encode the CRL");
    if (rc == ENR_OK) {
        char *pem;
        long len = BIO_get_mem_data(bio, &pem);
        *out = crl_json(&rec, crl, now, next);
        json_object_set_new(*out, "crl_pem", json_stringn(pem, (size_t)len));
        enr_audit_event ev;
        enr_error ignored;
        audit_set(c, &ev, "admin.crl.export", NULL, "ok", "CRL of CA '%s' exported: %" JSON_INTEGER_FORMAT " revoked",
                  rec.name, json_integer_value(json_object_get(*out, "revoked")));
        (void)enr_store_record_audit(c->store, &ev, &ignored);
    }
    BIO_free(bio);
    X509_CRL_free(crl);
    enr_ca_free(ca);
    enr_ca_record_free(&rec);
    return rc;
}

/* ---- audit ------------------------------------------------------------------ */

static enr_code audit_list(const call *c, json_t **out)
{
    static const char *const ARGS[] = {"registration", NULL};
    const char *registration;
    enr_code rc;
    if ((rc = only_args(c, ARGS)) != ENR_OK ||
        (rc = arg_text(c, "registration", false, ENR_STORE_ID_MAX, &registration)) != ENR_OK)
        return rc;
    enr_audit_filter f = {.registration_id = registration};
    enr_audit_list list = {0};
    rc = enr_store_list_audit(c->store, &f, &list, c->err);
    if (rc == ENR_OK) {
        *out = json_array();
        for (size_t i = 0; i < list.count; i++)
            json_array_append_new(*out, audit_json(&list.items[i]));
    }
    enr_audit_list_free(&list);
    return rc;
}

/* ---- dispatch --------------------------------------------------------------- */

static enr_code group_new(const call *c, json_t **o) { return enrollment_new(c, ENR_ENROLLMENT_GROUP, o); }
static enr_code group_list(const call *c, json_t **o) { return enrollment_list(c, ENR_ENROLLMENT_GROUP, o); }
static enr_code group_show(const call *c, json_t **o) { return enrollment_show(c, ENR_ENROLLMENT_GROUP, o); }
static enr_code group_disable(const call *c, json_t **o)
{
    return enrollment_set_enabled(c, ENR_ENROLLMENT_GROUP, false, o);
}
static enr_code group_enable(const call *c, json_t **o)
{
    return enrollment_set_enabled(c, ENR_ENROLLMENT_GROUP, true, o);
}
static enr_code individual_new(const call *c, json_t **o) { return enrollment_new(c, ENR_ENROLLMENT_INDIVIDUAL, o); }
static enr_code individual_list(const call *c, json_t **o)
{
    return enrollment_list(c, ENR_ENROLLMENT_INDIVIDUAL, o);
}
static enr_code individual_show(const call *c, json_t **o)
{
    return enrollment_show(c, ENR_ENROLLMENT_INDIVIDUAL, o);
}
static enr_code individual_disable(const call *c, json_t **o)
{
    return enrollment_set_enabled(c, ENR_ENROLLMENT_INDIVIDUAL, false, o);
}
static enr_code individual_enable(const call *c, json_t **o)
{
    return enrollment_set_enabled(c, ENR_ENROLLMENT_INDIVIDUAL, true, o);
}
static enr_code registration_disable(const call *c, json_t **o) { return registration_set_enabled(c, false, o); }
static enr_code registration_enable(const call *c, json_t **o) { return registration_set_enabled(c, true, o); }

/* ---- AWS fleet provisioning: templates and things ---------------------------- */

static json_t *template_json(const enr_aws_template_record *t, bool with_body)
{
    json_t *o = json_object();
    json_object_set_new(o, "name", json_string(t->name));
    json_object_set_new(o, "policy", json_string(t->policy));
    json_t *cas = json_array();
    for (size_t i = 0; i < t->claim_ca_count; i++)
        json_array_append_new(cas, json_string(t->claim_cas[i]));
    json_object_set_new(o, "claim_cas", cas);
    json_object_set_new(o, "allow_server_keygen", json_boolean(t->allow_server_keygen));
    json_t *hook = json_null();
    if (t->hook_url[0] != '\0') {
        hook = json_object();
        json_object_set_new(hook, "url", json_string(t->hook_url));
        json_object_set_new(hook, "timeout_ms", json_integer(t->hook_timeout_ms));
        json_object_set_new(hook, "ca_pem", json_text(t->hook_ca_pem));
    }
    json_object_set_new(o, "hook", hook);
    json_object_set_new(o, "enabled", json_boolean(t->enabled));
    /* The parameters a device may send, from the template itself. */
    enr_aws_template *parsed = NULL;
    json_t *params = json_array();
    if (t->body != NULL && enr_aws_template_parse(t->body, strlen(t->body), &parsed, NULL) == ENR_OK) {
        for (size_t i = 0; i < enr_aws_template_parameter_count(parsed); i++) {
            json_t *p = json_object();
            json_object_set_new(p, "name", json_string(enr_aws_template_parameter_name(parsed, i)));
            json_object_set_new(p, "type", json_string(enr_aws_template_parameter_type(parsed, i) ==
                                                               ENR_AWS_PARAM_NUMBER
                                                           ? "Number"
                                                           : "String"));
            json_object_set_new(p, "default", json_text(enr_aws_template_parameter_default(parsed, i)));
            json_array_append_new(params, p);
        }
    }
    enr_aws_template_free(parsed);
    json_object_set_new(o, "parameters", params);
    json_object_set_new(o, "created_at", json_time(t->created_at));
    json_object_set_new(o, "updated_at", json_time(t->updated_at));
    if (with_body && t->body != NULL) {
        json_t *body = json_loads(t->body, 0, NULL);
        json_object_set_new(o, "template_body", body != NULL ? body : json_string(t->body));
    }
    return o;
}

static json_t *thing_json(const enr_aws_thing *t, bool with_certificates)
{
    json_t *o = json_object();
    json_object_set_new(o, "name", json_string(t->name));
    json_object_set_new(o, "template", json_string(t->template_name));
    json_t *attributes = t->attributes_json != NULL ? json_loads(t->attributes_json, 0, NULL) : NULL;
    json_object_set_new(o, "attributes", attributes != NULL ? attributes : json_object());
    json_t *groups = t->groups_json != NULL ? json_loads(t->groups_json, 0, NULL) : NULL;
    json_object_set_new(o, "thing_groups", groups != NULL ? groups : json_array());
    json_object_set_new(o, "thing_type", json_text(t->thing_type));
    json_object_set_new(o, "enabled", json_boolean(t->enabled));
    json_object_set_new(o, "created_at", json_time(t->created_at));
    json_object_set_new(o, "updated_at", json_time(t->updated_at));
    if (with_certificates) {
        json_t *certs = json_array();
        for (size_t i = 0; i < t->certificate_count; i++) {
            const enr_aws_thing_certificate *c = &t->certificates[i];
            json_t *j = json_object();
            json_object_set_new(j, "issuer", json_string(c->issuer));
            json_object_set_new(j, "serial", json_string(c->serial));
            json_object_set_new(j, "status", json_string(enr_aws_cert_status_name(c->status)));
            json_object_set_new(j, "fingerprint_sha256", json_string(c->fingerprint_sha256));
            json_object_set_new(j, "template", json_string(c->template_name));
            json_object_set_new(j, "created_at", json_time(c->created_at));
            json_object_set_new(j, "updated_at", json_time(c->updated_at));
            json_array_append_new(certs, j);
        }
        json_object_set_new(o, "certificates", certs);
    }
    return o;
}

static enr_code template_name_arg(const call *c, const char **name)
{
    enr_code rc = arg_text(c, "name", true, 64, name);
    if (rc == ENR_OK && !enr_aws_template_name_valid(*name))
        rc = enr_error_set(c->err, ENR_E_USAGE,
                           "name: template name '%.64s' must be 1 to %d characters of 0-9 A-Z a-z _ - (AWS's rule)",
                           *name, ENR_STORE_TEMPLATE_NAME_MAX);
    return rc;
}

static enr_code thing_name_arg(const call *c, const char **name)
{
    enr_code rc = arg_text(c, "name", true, 160, name);
    if (rc == ENR_OK && !enr_aws_thing_name_valid(*name))
        rc = enr_error_set(c->err, ENR_E_USAGE,
                           "name: thing name '%.160s' must be 1 to %d characters of a-z A-Z 0-9 : _ - (AWS's rule)",
                           *name, ENR_STORE_THING_NAME_MAX);
    return rc;
}

static enr_code get_template(const call *c, const char *name, enr_aws_template_record *out)
{
    enr_code rc = enr_store_get_aws_template(c->store, name, out, c->err);
    if (rc == ENR_E_NOTFOUND)
        enr_error_set(c->err, rc, "no provisioning template named '%s' in the store (see `enroll admin template list`)",
                      name);
    return rc;
}

static enr_code get_thing(const call *c, const char *name, enr_aws_thing *out)
{
    enr_code rc = enr_store_get_aws_thing(c->store, name, out, c->err);
    if (rc == ENR_E_NOTFOUND)
        enr_error_set(c->err, rc, "no thing named '%s' in the store (see `enroll admin thing list`)", name);
    return rc;
}

/* The claim CAs: uploaded, proven bootstrap CAs; looked up here for
 * messages that say what to do (the store checks again in its
 * transaction). */
static enr_code claim_cas_arg(const call *c, enr_aws_template_record *t)
{
    json_t *arr = json_object_get(c->args, "claim_ca");
    if (arr == NULL || json_is_null(arr))
        return enr_error_set(c->err, ENR_E_USAGE, "claim_ca: required for %s (the CAs claim certificates chain to)",
                             c->command);
    if (!json_is_array(arr) || json_array_size(arr) == 0 || json_array_size(arr) > ENR_STORE_CLAIM_CAS_MAX)
        return enr_error_set(c->err, ENR_E_USAGE, "claim_ca: must be a list of 1 to %d CA names",
                             ENR_STORE_CLAIM_CAS_MAX);
    for (size_t i = 0; i < json_array_size(arr); i++) {
        const char *n = json_string_value(json_array_get(arr, i));
        if (n == NULL || n[0] == '\0' || strlen(n) > ENR_STORE_ID_MAX)
            return enr_error_set(c->err, ENR_E_USAGE, "claim_ca: item %zu is not a CA name", i + 1);
        for (size_t j = 0; j < i; j++)
            if (strcmp(t->claim_cas[j], n) == 0)
                return enr_error_set(c->err, ENR_E_USAGE, "claim_ca: %s is given twice", n);
        snprintf(t->claim_cas[i], sizeof t->claim_cas[i], "%s", n);
        t->claim_ca_count = i + 1;
        enr_ca_record ca = {0};
        enr_code rc = no_such(get_ca(c, n, &ca), c->err, "; upload it first: `enroll admin ca upload NAME --cert FILE`");
        if (rc == ENR_OK && ca.role != ENR_CA_BOOTSTRAP)
            rc = enr_error_refuse(c->err, ENR_R_CA_UNVERIFIED,
                                  "CA '%s' is an issuing CA; --claim-ca takes device-attestation CAs uploaded with "
                                  "`enroll admin ca upload`",
                                  n);
        else if (rc == ENR_OK && !ca.verified)
            rc = enr_error_refuse(c->err, ENR_R_CA_UNVERIFIED,
                                  "bootstrap CA '%s' is not verified yet: prove possession of its key with `enroll "
                                  "admin ca verify %s --cert FILE` (the code is in `enroll admin ca list`)",
                                  n, n);
        enr_ca_record_free(&ca);
        if (rc != ENR_OK)
            return rc;
    }
    return ENR_OK;
}

static enr_code template_create(const call *c, json_t **out)
{
    static const char *const ARGS[] = {"name",     "body",    "policy",          "claim_ca", "allow_server_keygen",
                                       "hook_url", "hook_ca", "hook_timeout_ms", NULL};
    const char *name, *body, *policy_name, *hook_url, *hook_ca;
    bool keygen;
    enr_code rc;
    if ((rc = only_args(c, ARGS)) != ENR_OK || (rc = template_name_arg(c, &name)) != ENR_OK ||
        (rc = arg_text(c, "body", true, ENR_AWS_TEMPLATE_MAX, &body)) != ENR_OK ||
        (rc = arg_text(c, "policy", true, ENR_STORE_ID_MAX, &policy_name)) != ENR_OK ||
        (rc = arg_bool(c, "allow_server_keygen", &keygen)) != ENR_OK ||
        (rc = arg_text(c, "hook_url", false, ENR_STORE_URL_MAX, &hook_url)) != ENR_OK ||
        (rc = arg_text(c, "hook_ca", false, ENR_STORE_HOOK_CA_MAX, &hook_ca)) != ENR_OK)
        return rc;
    json_t *timeout = json_object_get(c->args, "hook_timeout_ms");
    int timeout_ms = 0;
    if (timeout != NULL && !json_is_null(timeout)) {
        if (!json_is_integer(timeout) || json_integer_value(timeout) < ENR_AWS_HOOK_TIMEOUT_MIN_MS ||
            json_integer_value(timeout) > ENR_AWS_HOOK_TIMEOUT_MAX_MS)
            return enr_error_set(c->err, ENR_E_USAGE, "hook_timeout_ms: must be an integer from %d to %d",
                                 ENR_AWS_HOOK_TIMEOUT_MIN_MS, ENR_AWS_HOOK_TIMEOUT_MAX_MS);
        timeout_ms = (int)json_integer_value(timeout);
    }
    if ((hook_url == NULL) != (hook_ca == NULL))
        return enr_error_set(c->err, ENR_E_USAGE,
                             "%s: a pre-provisioning hook needs hook_url (https://...) and hook_ca (the CA its "
                             "server certificate chains to)",
                             hook_url == NULL ? "hook_ca" : "hook_url");
    if (hook_url == NULL && timeout_ms != 0)
        return enr_error_set(c->err, ENR_E_USAGE, "hook_timeout_ms: given without hook_url");
    if (hook_url != NULL && strncasecmp(hook_url, "https://", 8) != 0)
        return enr_error_set(c->err, ENR_E_USAGE,
                             "hook_url: must start with https:// (the hook receives devices' parameters)");
    enr_aws_template_record t = {0};
    snprintf(t.name, sizeof t.name, "%s", name);
    t.body = (char *)body;
    t.allow_server_keygen = keygen;
    t.hook_ca_pem = (char *)hook_ca;
    t.hook_timeout_ms = timeout_ms;
    if ((rc = copy_name(c, "policy", t.policy, sizeof t.policy, policy_name)) != ENR_OK ||
        (hook_url != NULL && (rc = copy_name(c, "hook_url", t.hook_url, sizeof t.hook_url, hook_url)) != ENR_OK))
        return rc;
    enr_credential_policy policy;
    if ((rc = get_policy(c, policy_name, &policy)) != ENR_OK || (rc = claim_cas_arg(c, &t)) != ENR_OK)
        return rc;
    enr_audit_event ev;
    char cas[300] = "";
    for (size_t i = 0; i < t.claim_ca_count; i++) {
        size_t used = strlen(cas);
        snprintf(cas + used, sizeof cas - used, "%s'%s'", i ? ", " : "", t.claim_cas[i]);
    }
    audit_set(c, &ev, "admin.template.create", NULL, "ok",
              "provisioning template '%s' created: policy '%s', claim CAs %s, server key generation %s, %s%.200s",
              t.name, t.policy, cas, keygen ? "allowed" : "refused", hook_url ? "hook " : "no hook",
              hook_url ? hook_url : "");
    rc = enr_store_create_aws_template(c->store, &t, &ev, c->err);
    if (rc == ENR_E_PARSE || rc == ENR_E_UNSUPPORTED) {
        /* The template itself: "body: template 'x': Resources...: ..." (the
         * CLI names the file instead of "body"). */
        char msg[sizeof c->err->message];
        snprintf(msg, sizeof msg, "%s", c->err->message);
        snprintf(c->err->message, sizeof c->err->message, "body: %s", msg);
    }
    if (rc == ENR_OK) {
        *out = template_json(&t, false);
        json_object_set_new(*out, "action", json_string("created"));
    }
    return rc;
}

static enr_code template_list(const call *c, json_t **out)
{
    static const char *const ARGS[] = {NULL};
    enr_aws_template_list list = {0};
    enr_code rc = only_args(c, ARGS);
    if (rc == ENR_OK)
        rc = enr_store_list_aws_templates(c->store, &list, c->err);
    if (rc == ENR_OK) {
        *out = json_array();
        for (size_t i = 0; i < list.count; i++)
            json_array_append_new(*out, template_json(&list.items[i], false));
    }
    enr_aws_template_list_free(&list);
    return rc;
}

static enr_code template_show(const call *c, json_t **out)
{
    static const char *const ARGS[] = {"name", NULL};
    const char *name;
    enr_code rc;
    if ((rc = only_args(c, ARGS)) != ENR_OK || (rc = template_name_arg(c, &name)) != ENR_OK)
        return rc;
    enr_aws_template_record t = {0};
    enr_aws_thing_list things = {0};
    if ((rc = get_template(c, name, &t)) == ENR_OK &&
        (rc = enr_store_list_aws_things(c->store, name, &things, c->err)) == ENR_OK) {
        *out = template_json(&t, true);
        json_object_set_new(*out, "things", json_integer((json_int_t)things.count));
    }
    enr_aws_thing_list_free(&things);
    enr_aws_template_record_free(&t);
    return rc;
}

static enr_code template_delete(const call *c, json_t **out)
{
    static const char *const ARGS[] = {"name", NULL};
    const char *name;
    enr_code rc;
    if ((rc = only_args(c, ARGS)) != ENR_OK || (rc = template_name_arg(c, &name)) != ENR_OK)
        return rc;
    enr_aws_template_record t = {0};
    if ((rc = get_template(c, name, &t)) == ENR_OK) {
        enr_audit_event ev;
        audit_set(c, &ev, "admin.template.delete", NULL, "ok",
                  "provisioning template '%s' deleted (its things and certificates stay)", t.name);
        rc = no_such(enr_store_delete_aws_template(c->store, name, &ev, c->err), c->err, "");
    }
    if (rc == ENR_OK) {
        *out = template_json(&t, false);
        json_object_set_new(*out, "action", json_string("deleted"));
    }
    enr_aws_template_record_free(&t);
    return rc;
}

static enr_code template_set_enabled(const call *c, bool enabled, json_t **out)
{
    static const char *const ARGS[] = {"name", NULL};
    const char *name;
    enr_code rc;
    if ((rc = only_args(c, ARGS)) != ENR_OK || (rc = template_name_arg(c, &name)) != ENR_OK)
        return rc;
    enr_aws_template_record t = {0};
    bool changed = false;
    rc = get_template(c, name, &t);
    if (rc == ENR_OK && t.enabled != enabled) {
        enr_audit_event ev;
        audit_set(c, &ev, enabled ? "admin.template.enable" : "admin.template.disable", NULL, "ok",
                  "provisioning template '%s' %s", t.name,
                  enabled ? "enabled" : "disabled: it issues nothing (issued certificates stay valid)");
        rc = enr_store_set_aws_template_enabled(c->store, name, enabled, &ev, c->err);
        changed = rc == ENR_OK;
        enr_aws_template_record_free(&t);
        if (rc == ENR_OK)
            rc = get_template(c, name, &t);
    }
    if (rc == ENR_OK) {
        *out = template_json(&t, false);
        json_object_set_new(*out, "changed", json_boolean(changed));
    }
    enr_aws_template_record_free(&t);
    return rc;
}

static enr_code thing_list(const call *c, json_t **out)
{
    static const char *const ARGS[] = {"template", NULL};
    const char *template_name;
    enr_code rc;
    if ((rc = only_args(c, ARGS)) != ENR_OK ||
        (rc = arg_text(c, "template", false, 64, &template_name)) != ENR_OK)
        return rc;
    if (template_name != NULL && !enr_aws_template_name_valid(template_name))
        return enr_error_set(c->err, ENR_E_USAGE, "template: '%.64s' is not a template name", template_name);
    enr_aws_thing_list list = {0};
    if ((rc = enr_store_list_aws_things(c->store, template_name, &list, c->err)) == ENR_OK) {
        *out = json_array();
        for (size_t i = 0; i < list.count; i++)
            json_array_append_new(*out, thing_json(&list.items[i], false));
    }
    enr_aws_thing_list_free(&list);
    return rc;
}

static enr_code thing_show(const call *c, json_t **out)
{
    static const char *const ARGS[] = {"name", NULL};
    const char *name;
    enr_code rc;
    if ((rc = only_args(c, ARGS)) != ENR_OK || (rc = thing_name_arg(c, &name)) != ENR_OK)
        return rc;
    enr_aws_thing t = {0};
    if ((rc = get_thing(c, name, &t)) == ENR_OK)
        *out = thing_json(&t, true);
    enr_aws_thing_free(&t);
    return rc;
}

static enr_code thing_set_enabled(const call *c, bool enabled, json_t **out)
{
    static const char *const ARGS[] = {"name", NULL};
    const char *name;
    enr_code rc;
    if ((rc = only_args(c, ARGS)) != ENR_OK || (rc = thing_name_arg(c, &name)) != ENR_OK)
        return rc;
    enr_aws_thing t = {0};
    bool changed = false;
    rc = get_thing(c, name, &t);
    if (rc == ENR_OK && t.enabled != enabled) {
        enr_audit_event ev;
        audit_set(c, &ev, enabled ? "admin.thing.enable" : "admin.thing.disable", NULL, "ok", "thing '%s' %s",
                  t.name,
                  enabled ? "enabled" : "disabled: RegisterThing for it is refused (its certificates stay valid "
                                        "until revoked)");
        rc = enr_store_set_aws_thing_enabled(c->store, name, enabled, &ev, c->err);
        changed = rc == ENR_OK;
        enr_aws_thing_free(&t);
        if (rc == ENR_OK)
            rc = get_thing(c, name, &t);
    }
    if (rc == ENR_OK) {
        *out = thing_json(&t, true);
        json_object_set_new(*out, "changed", json_boolean(changed));
    }
    enr_aws_thing_free(&t);
    return rc;
}

static enr_code template_enable(const call *c, json_t **o) { return template_set_enabled(c, true, o); }
static enr_code template_disable(const call *c, json_t **o) { return template_set_enabled(c, false, o); }
static enr_code thing_enable(const call *c, json_t **o) { return thing_set_enabled(c, true, o); }
static enr_code thing_disable(const call *c, json_t **o) { return thing_set_enabled(c, false, o); }

typedef struct admin_command {
    const char *name;
    enr_code (*fn)(const call *c, json_t **out);
    bool read_only, secret;
} admin_command;

static const admin_command COMMANDS[] = {
    {"ca.add", ca_add, false, false},
    {"ca.upload", ca_upload, false, false},
    {"ca.verify", ca_verify, false, false},
    {"ca.list", ca_list, true, false},
    {"policy.new", policy_new, false, false},
    {"policy.list", policy_list, true, false},
    {"group.new", group_new, false, true}, /* answers the generated keys */
    {"group.list", group_list, true, false},
    {"group.show", group_show, true, false},
    {"group.disable", group_disable, false, false},
    {"group.enable", group_enable, false, false},
    {"individual.new", individual_new, false, true},
    {"individual.list", individual_list, true, false},
    {"individual.show", individual_show, true, false},
    {"individual.disable", individual_disable, false, false},
    {"individual.enable", individual_enable, false, false},
    {"key.show", key_show, false, true},
    {"key.derive", key_derive, false, true},
    {"key.rotate", key_rotate, false, true}, /* answers the new keys */
    {"est.secret", est_secret, false, true}, /* answers the new secret */
    {"registration.list", registration_list, true, false},
    {"registration.show", registration_show, true, false},
    {"registration.revoke", registration_revoke, false, false},
    {"registration.disable", registration_disable, false, false},
    {"registration.enable", registration_enable, false, false},
    {"registration.move", registration_move, false, false},
    {"cert.list", cert_list, true, false},
    {"cert.revoke", cert_revoke, false, false},
    {"crl.export", crl_export, false, false},
    {"audit.list", audit_list, true, false},
    {"template.create", template_create, false, false},
    {"template.list", template_list, true, false},
    {"template.show", template_show, true, false},
    {"template.delete", template_delete, false, false},
    {"template.enable", template_enable, false, false},
    {"template.disable", template_disable, false, false},
    {"thing.list", thing_list, true, false},
    {"thing.show", thing_show, true, false},
    {"thing.enable", thing_enable, false, false},
    {"thing.disable", thing_disable, false, false},
};

static const admin_command *find_command(const char *name)
{
    for (size_t i = 0; name != NULL && i < sizeof COMMANDS / sizeof COMMANDS[0]; i++)
        if (strcmp(COMMANDS[i].name, name) == 0)
            return &COMMANDS[i];
    return NULL;
}

bool enr_admin_command_known(const char *command)
{
    return find_command(command) != NULL;
}

bool enr_admin_command_read_only(const char *command)
{
    const admin_command *c = find_command(command);
    return c != NULL && c->read_only;
}

bool enr_admin_command_secret(const char *command)
{
    const admin_command *c = find_command(command);
    return c != NULL && c->secret;
}

enr_code enr_admin_execute(enr_store *store, const enr_admin_context *ctx, const char *command, const char *args,
                           size_t args_len, char **result, enr_error *err)
{
    enr_error local;
    if (err == NULL)
        err = &local;
    if (result == NULL || store == NULL || ctx == NULL)
        return enr_error_set(err, ENR_E_USAGE, "enr_admin_execute: no store, context or place for the result");
    *result = NULL;
    const admin_command *cmd = find_command(command);
    if (cmd == NULL)
        return enr_error_set(err, ENR_E_USAGE, "unknown admin command '%.64s'", command ? command : "");
    if (args_len > ENR_ADMIN_ARGS_MAX)
        return enr_error_set(err, ENR_E_USAGE, "the arguments are larger than %d bytes", ENR_ADMIN_ARGS_MAX);
    json_t *obj;
    if (args == NULL || args_len == 0) {
        obj = json_object();
    } else {
        json_error_t jerr;
        obj = json_loadb(args, args_len, JSON_REJECT_DUPLICATES, &jerr);
        if (obj == NULL)
            return enr_error_set(err, ENR_E_USAGE, "the arguments are not JSON: line %d, column %d: %.120s", jerr.line,
                                 jerr.column, jerr.text);
        if (!json_is_object(obj)) {
            json_decref(obj);
            return enr_error_set(err, ENR_E_USAGE, "the arguments must be a JSON object");
        }
    }
    if (obj == NULL)
        return enr_error_set(err, ENR_E_NOMEM, "out of memory");
    call c = {store, ctx, cmd->name, obj, err};
    json_t *out = NULL;
    enr_code rc = cmd->fn(&c, &out);
    json_decref(obj);
    if (rc == ENR_OK && out == NULL)
        rc = enr_error_set(err, ENR_E_NOMEM, "out of memory");
    if (rc == ENR_OK && (*result = json_dumps(out, JSON_INDENT(2) | JSON_PRESERVE_ORDER)) == NULL)
        rc = enr_error_set(err, ENR_E_NOMEM, "out of memory");
    if (out != NULL && cmd->secret) {
        /* jansson keeps its own copies of the strings: wipe the secret ones. */
        static const char *const SECRETS[] = {"primary_key", "secondary_key", "device_key", NULL};
        for (size_t i = 0; SECRETS[i] != NULL; i++) {
            json_t *v = json_object_get(out, SECRETS[i]);
            if (json_is_string(v))
                OPENSSL_cleanse((void *)json_string_value(v), json_string_length(v));
        }
    }
    json_decref(out);
    return rc;
}

void enr_admin_result_free(char *result)
{
    if (result == NULL)
        return;
    OPENSSL_cleanse(result, strlen(result));
    free(result);
}
