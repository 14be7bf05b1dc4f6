/* AWS IoT fleet provisioning in the provisioning core (provision_aws.h):
 * a pool of threads, each with its own store connection and CA cache, that
 * authenticates connections and answers the three calls. A loop hands a
 * job over (a queue under one mutex), a thread does every blocking step of
 * it, and the finished job goes back to its loop's list, which an event
 * wakes. */
#include <jansson.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509v3.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <event2/event.h>

#include "enroll/aws_hook.h"
#include "enroll/aws_template.h"
#include "enroll/ca.h"
#include "enroll/cert.h"
#include "enroll/csr.h"
#include "enroll/name.h"
#include "enroll/provision.h"
#include "enroll/provision_aws.h"
#include "enroll/pubkey.h"
#include "provision/ca_cache.h"

#include "core/quote.h"

#define SIGN_ATTEMPTS 3       /* a taken serial is drawn again (ENR_E_EXISTS) */
#define SWEEP_BATCH 1000

enum job_kind { JOB_AUTHENTICATE = 1, JOB_REQUEST };

struct enr_aws_call {
    enr_aws_loop *loop;
    enum job_kind kind;
    /* JOB_AUTHENTICATE */
    X509 *cert;
    STACK_OF(X509) *chain;
    /* JOB_REQUEST */
    enr_aws_fleet_topic topic;
    char template_hint[ENR_STORE_TEMPLATE_NAME_MAX + 1];
    uint8_t *payload;
    size_t payload_len;
    enr_aws_peer peer;            /* in: the request's peer; out: what authenticate proved */
    /* the outcome */
    bool accepted;
    int status;
    const char *error_code;
    enr_reason reason;
    char message[512];
    uint8_t *answer;
    size_t answer_len;
    /* delivery */
    enr_aws_done_fn done;
    void *ctx;
    _Atomic bool cancelled;
    enr_aws_call *next;
};

struct enr_aws_core {
    char *store_location;
    int thread_count;
    pthread_t *threads;
    int started;
    int queue_max;
    int sweep_interval;
    pthread_mutex_t lock;
    pthread_cond_t wake;
    enr_aws_call *head, *tail;
    int queued;
    int queued_connects;          /* of them: CONNECTs (at most half the queue) */
    bool stopping;
    enr_aws_counters counters;
};

struct enr_aws_loop {
    enr_aws_core *core;
    struct event *done_event;
    pthread_mutex_t lock;
    enr_aws_call *finished;       /* back from the threads, to deliver */
};

typedef struct worker {
    enr_aws_core *core;
    int index;
    enr_store *store;
    enr_ca_cache *cas;            /* its own: an enr_ca is not shared */
} worker;

/* ---- outcomes ------------------------------------------------------------- */

static void reject(enr_aws_call *j, int status, const char *code, enr_reason reason, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));

static void reject(enr_aws_call *j, int status, const char *code, enr_reason reason, const char *fmt, ...)
{
    j->accepted = false;
    j->status = status;
    j->error_code = code;
    j->reason = reason;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(j->message, sizeof j->message, fmt, ap);
    va_end(ap);
}

/* AWS's answer to a refusal by a typed rule. The message is the rule's own
 * (it names what was wrong, never a token or key). */
static void reject_by_reason(enr_aws_call *j, const enr_error *e)
{
    switch (e->reason) {
    case ENR_R_TOKEN_UNKNOWN:
    case ENR_R_TOKEN_USED:
    case ENR_R_TOKEN_EXPIRED:
    case ENR_R_TOKEN_TEMPLATE_MISMATCH:
        reject(j, 400, "InvalidCertificateOwnershipToken", e->reason, "%s", e->message);
        return;
    case ENR_R_PARAMETER_MISSING:
    case ENR_R_PARAMETER_INVALID:
    case ENR_R_TEMPLATE_EVALUATION:
        reject(j, 400, "InvalidParameters", e->reason, "%s", e->message);
        return;
    case ENR_R_KEY_NOT_ALLOWED:
    case ENR_R_KEY_COMPROMISED:
    case ENR_R_NAME_NOT_ALLOWED:
    case ENR_R_EXTENSION_NOT_ALLOWED:
    case ENR_R_SIGNATURE_ALGORITHM:
        reject(j, 400, "InvalidCsr", e->reason, "%s", e->message);
        return;
    case ENR_R_TOKEN_WRONG_CONNECTION:
    case ENR_R_CREDENTIAL_REVOKED:
    case ENR_R_THING_OWNED:
    case ENR_R_THING_MISMATCH:
    case ENR_R_THING_DISABLED:
    case ENR_R_TEMPLATE_DISABLED:
    case ENR_R_SERVER_KEYGEN_NOT_ALLOWED:
    case ENR_R_HOOK_DENIED:
    case ENR_R_HOOK_TIMEOUT:
    case ENR_R_HOOK_FAILED:
        reject(j, 403, "AccessDenied", e->reason, "%s", e->message);
        return;
    default:
        reject(j, 500, "InternalFailure", e->reason, "%s", e->message);
        return;
    }
}

/* A store or signing failure that is not the device's doing. */
static void reject_internal(enr_aws_call *j, const enr_error *e)
{
    if (e->code == ENR_E_POLICY) {
        reject_by_reason(j, e);
        return;
    }
    if (e->code == ENR_E_IO || e->code == ENR_E_LOCKED)
        reject(j, 503, "ServiceUnavailable", ENR_R_NONE, "the store is unavailable; try again later");
    else
        reject(j, 500, "InternalFailure", ENR_R_NONE, "internal error");
    fprintf(stderr, "{\"event\":\"aws_internal\",\"code\":\"%s\",\"message\":\"%s\"}\n", enr_code_name(e->code),
            e->message);
}

/* The answer document in the request's format: the rejection when refused. */
static void encode_rejection(enr_aws_call *j)
{
    enr_error e;
    free(j->answer);
    j->answer = NULL;
    if (enr_aws_fleet_encode_rejected(j->topic.format, j->status, j->error_code, j->message, &j->answer,
                                      &j->answer_len, &e) != ENR_OK) {
        j->answer = NULL;
        j->answer_len = 0;
    }
}

/* ---- helpers -------------------------------------------------------------- */

/* One subject attribute as UTF-8 (the first), into out; "" when absent. */
static void subject_field(X509 *cert, int nid, char *out, size_t cap)
{
    out[0] = '\0';
    const X509_NAME *name = X509_get_subject_name(cert);
    int at = X509_NAME_get_index_by_NID(name, nid, -1);
    if (at < 0)
        return;
    unsigned char *utf8 = NULL;
    int n = ASN1_STRING_to_UTF8(&utf8, X509_NAME_ENTRY_get_data(X509_NAME_get_entry(name, at)));
    if (n > 0 && (size_t)n < cap && memchr(utf8, '\0', (size_t)n) == NULL) {
        memcpy(out, utf8, (size_t)n);
        out[n] = '\0';
    }
    OPENSSL_free(utf8);
}

bool enr_aws_peer_may_use(const enr_aws_peer *peer, const char *name)
{
    for (size_t i = 0; peer != NULL && name != NULL && i < peer->template_count; i++)
        if (strcmp(peer->templates[i], name) == 0)
            return true;
    return false;
}

/* ---- CONNECT -------------------------------------------------------------- */

static void do_authenticate(worker *w, enr_aws_call *j)
{
    enr_error e = {0};
    enr_aws_peer *peer = &j->peer;
    if (j->cert == NULL) {
        reject(j, 401, "Unauthorized", ENR_R_AUTH_REFUSED, "no client certificate");
        return;
    }
    if (enr_cert_fingerprint(j->cert, peer->fingerprint, &e) != ENR_OK) {
        reject_internal(j, &e);
        return;
    }
    time_t now = time(NULL);
    if (X509_cmp_time(X509_get0_notAfter(j->cert), &now) <= 0 || X509_cmp_time(X509_get0_notBefore(j->cert), &now) > 0) {
        reject(j, 401, "Unauthorized", ENR_R_AUTH_REFUSED, "the client certificate is not valid now");
        return;
    }
    /* A thing's own live certificate: a device renewing. */
    enr_code rc = enr_store_aws_thing_of_certificate(w->store, peer->fingerprint, peer->thing_name, &e);
    if (rc == ENR_OK) {
        enr_aws_thing thing = {0};
        rc = enr_store_get_aws_thing(w->store, peer->thing_name, &thing, &e);
        if (rc == ENR_OK && !thing.enabled)
            reject(j, 403, "AccessDenied", ENR_R_THING_DISABLED, "thing '%s' is disabled", thing.name);
        else if (rc == ENR_OK) {
            peer->kind = ENR_AWS_PEER_THING;
            snprintf(peer->templates[0], sizeof peer->templates[0], "%s", thing.template_name);
            peer->template_count = 1;
            j->accepted = true;
            j->status = 200;
        } else {
            reject_internal(j, &e);
        }
        enr_aws_thing_free(&thing);
        return;
    }
    if (rc != ENR_E_NOTFOUND) {
        reject_internal(j, &e);
        return;
    }
    /* Else a claim: the enabled templates with a claim CA it chains to. */
    enr_aws_template_list list = {0};
    if (enr_store_list_aws_templates(w->store, &list, &e) != ENR_OK) {
        reject_internal(j, &e);
        return;
    }
    for (size_t i = 0; i < list.count && peer->template_count < ENR_AWS_PEER_TEMPLATES_MAX; i++) {
        const enr_aws_template_record *t = &list.items[i];
        if (!t->enabled)
            continue;
        bool chains = false;
        for (size_t k = 0; k < t->claim_ca_count && !chains; k++) {
            enr_ca_record ca = {0};
            if (enr_store_get_ca(w->store, t->claim_cas[k], &ca, &e) == ENR_OK && ca.role == ENR_CA_BOOTSTRAP &&
                ca.verified)
                chains = enr_cert_chains_to_any(j->cert, j->chain, &ca.certificate, 1);
            enr_ca_record_free(&ca);
        }
        if (chains)
            snprintf(peer->templates[peer->template_count++], sizeof peer->templates[0], "%s", t->name);
    }
    enr_aws_template_list_free(&list);
    if (peer->template_count == 0) {
        reject(j, 403, "AccessDenied", ENR_R_AUTH_REFUSED,
               "the client certificate is neither a thing's active certificate nor a claim certificate of an "
               "enabled provisioning template");
        return;
    }
    peer->kind = ENR_AWS_PEER_CLAIM;
    j->accepted = true;
    j->status = 200;
}

/* ---- CreateCertificateFromCsr, CreateKeysAndCertificate ---------------------- */

/* Which template a Create call issues under (the pending certificate and
 * its token are bound to it). */
static bool pick_template(enr_aws_call *j, char out[ENR_STORE_TEMPLATE_NAME_MAX + 1])
{
    const enr_aws_peer *peer = &j->peer;
    if (peer->template_count == 1) {
        snprintf(out, ENR_STORE_TEMPLATE_NAME_MAX + 1, "%s", peer->templates[0]);
        return true;
    }
    if (j->template_hint[0] && enr_aws_peer_may_use(peer, j->template_hint)) {
        snprintf(out, ENR_STORE_TEMPLATE_NAME_MAX + 1, "%s", j->template_hint);
        return true;
    }
    reject(j, 400, "InvalidRequest", ENR_R_NONE,
           "this claim certificate is bound to %zu provisioning templates: subscribe to the RegisterThing answer "
           "topic of the one to use ($aws/provisioning-templates/NAME/provision/json/accepted) before creating a "
           "certificate",
           peer->template_count);
    return false;
}

/* A new key pair and a CSR for it: CreateKeysAndCertificate. The thing's
 * name is not known before RegisterThing, so the CN is `name` (the
 * connection's client id when it is a thing name: devices connect with
 * their name, as AWS advises) or else "aws-" and 24 random hex digits
 * (AWS itself issues "AWS IoT Certificate"). */
static enr_code make_server_key(const char *name, EVP_PKEY **key_out, enr_csr **csr_out, enr_error *err)
{
    unsigned char id[12];
    char cn[2 * sizeof id + 8];
    if (RAND_bytes(id, sizeof id) != 1)
        return enr_error_set(err, ENR_E_CRYPTO, "cannot make a key pair");
    int n = snprintf(cn, sizeof cn, "aws-");
    for (size_t i = 0; i < sizeof id; i++)
        n += snprintf(cn + n, sizeof cn - (size_t)n, "%02x", id[i]);
    const char *subject_cn = name != NULL && enr_aws_thing_name_valid(name) ? name : cn;
    X509_NAME *subject = X509_NAME_new();
    enr_code rc = subject != NULL && X509_NAME_add_entry_by_NID(subject, NID_commonName, MBSTRING_UTF8,
                                                                (const unsigned char *)subject_cn, -1, -1, 0) == 1
                      ? enr_provision_server_key(ENR_KEY_EC_P256, subject, key_out, csr_out, err)
                      : enr_error_set(err, ENR_E_CRYPTO, "cannot make a CSR for the new key");
    X509_NAME_free(subject);
    return rc;
}

static char *private_key_pem(EVP_PKEY *key)
{
    BIO *b = BIO_new(BIO_s_mem());
    char *data = NULL, *out = NULL;
    if (b != NULL && PEM_write_bio_PrivateKey(b, key, NULL, NULL, 0, NULL, NULL) == 1) {
        long n = BIO_get_mem_data(b, &data);
        out = n > 0 ? OPENSSL_malloc((size_t)n + 1) : NULL;
        if (out != NULL) {
            memcpy(out, data, (size_t)n);
            out[n] = '\0';
        }
    }
    BIO_free(b);
    return out;
}

static char *certificate_pem(X509 *cert, const char *issuers)
{
    BIO *b = BIO_new(BIO_s_mem());
    char *data = NULL, *out = NULL;
    if (b != NULL && PEM_write_bio_X509(b, cert) == 1) {
        long n = BIO_get_mem_data(b, &data);
        size_t more = issuers != NULL ? strlen(issuers) : 0;
        out = n > 0 ? malloc((size_t)n + more + 1) : NULL;
        if (out != NULL) {
            memcpy(out, data, (size_t)n);
            memcpy(out + n, issuers != NULL ? issuers : "", more);
            out[(size_t)n + more] = '\0';
        }
    }
    BIO_free(b);
    return out;
}

static void do_create(worker *w, enr_aws_call *j, const enr_aws_fleet_request *req)
{
    enr_error e = {0};
    char template_name[ENR_STORE_TEMPLATE_NAME_MAX + 1];
    if (!pick_template(j, template_name))
        return;
    enr_aws_template_record t = {0};
    enr_code rc = enr_store_get_aws_template(w->store, template_name, &t, &e);
    if (rc == ENR_E_NOTFOUND) {
        reject(j, 404, "ResourceNotFound", ENR_R_NONE, "no provisioning template '%s'", template_name);
        return;
    }
    if (rc != ENR_OK) {
        reject_internal(j, &e);
        return;
    }
    EVP_PKEY *server_key = NULL;
    enr_csr *csr = NULL;
    X509 *cert = NULL;
    enr_provision_policy policy = {0};
    bool policy_loaded = false;
    char *key_pem = NULL, *cert_pem = NULL;
    enr_certificate rec = {0};
    char cn[ENR_STORE_THING_NAME_MAX + 2] = "";
    if (!t.enabled) {
        reject(j, 403, "AccessDenied", ENR_R_TEMPLATE_DISABLED, "provisioning template '%s' is disabled", t.name);
        goto out;
    }
    if (req->call == ENR_AWS_FLEET_CREATE_KEYS) {
        if (!t.allow_server_keygen) {
            reject(j, 403, "AccessDenied", ENR_R_SERVER_KEYGEN_NOT_ALLOWED,
                   "provisioning template '%s' does not allow CreateKeysAndCertificate (keys made by the service)",
                   t.name);
            goto out;
        }
        const char *name = j->peer.kind == ENR_AWS_PEER_THING ? j->peer.thing_name : j->peer.client_id;
        if (make_server_key(name, &server_key, &csr, &e) != ENR_OK) {
            reject_internal(j, &e);
            goto out;
        }
    } else if (enr_csr_parse((const unsigned char *)req->csr_pem, strlen(req->csr_pem), &csr, &e) != ENR_OK) {
        reject(j, 400, "InvalidCsr", ENR_R_NONE, "certificateSigningRequest: %s", e.message);
        goto out;
    }
    /* The certificate names what the device asked to be (its CSR's CN,
     * seed 000's "ESP32-LivingRoom-001"); templates usually name the thing
     * after it (AWS::IoT::Certificate::CommonName). A device renewing keeps
     * its thing's name. */
    X509_NAME *subject = X509_REQ_get_subject_name(enr_csr_x509_req(csr));
    int at = X509_NAME_get_index_by_NID(subject, NID_commonName, -1);
    unsigned char *utf8 = NULL;
    int n = at >= 0 ? ASN1_STRING_to_UTF8(&utf8, X509_NAME_ENTRY_get_data(X509_NAME_get_entry(subject, at))) : -1;
    if (n > 0 && (size_t)n < sizeof cn) {
        memcpy(cn, utf8, (size_t)n);
        cn[n] = '\0';
    }
    OPENSSL_free(utf8);
    if (!enr_aws_thing_name_valid(cn)) {
        reject(j, 400, "InvalidCsr", ENR_R_NAME_NOT_ALLOWED,
               "the CSR's subject CN must be a thing name ([a-zA-Z0-9:_-]{1,128}); it is '%s'", enr_quote(cn).text);
        goto out;
    }
    if (j->peer.kind == ENR_AWS_PEER_THING && strcmp(cn, j->peer.thing_name) != 0) {
        reject(j, 400, "InvalidCsr", ENR_R_THING_MISMATCH,
               "a renewal's CSR must name its own thing '%s' in its CN, not '%s'", j->peer.thing_name,
               enr_quote(cn).text);
        goto out;
    }
    /* A certificate naming a thing another device owns is never issued:
     * a broker that knows nothing of "pending" would take it for that
     * device (RegisterThing would refuse it too, but too late). */
    if (j->peer.kind != ENR_AWS_PEER_THING || strcmp(cn, j->peer.thing_name) != 0) {
        enr_aws_thing owner = {0};
        rc = enr_store_get_aws_thing(w->store, cn, &owner, &e);
        bool owned = false;
        for (size_t i = 0; rc == ENR_OK && i < owner.certificate_count; i++)
            owned = owned || owner.certificates[i].status == ENR_AWS_CERT_ACTIVE;
        enr_aws_thing_free(&owner);
        if (rc != ENR_OK && rc != ENR_E_NOTFOUND) {
            reject_internal(j, &e);
            goto out;
        }
        if (owned) {
            reject(j, 403, "AccessDenied", ENR_R_THING_OWNED,
                   "thing '%s' belongs to another device: a certificate naming it is not issued to this connection",
                   cn);
            goto out;
        }
    }
    char message[256] = "";
    enr_dps_error gate = enr_provision_check_csr(w->store, csr, cn, message, sizeof message);
    if (gate == ENR_DPS_STORE_UNAVAILABLE) {
        reject(j, 503, "ServiceUnavailable", ENR_R_NONE, "the store is unavailable; try again later");
        goto out;
    }
    if (gate != ENR_DPS_OK) {
        reject(j, 400, "InvalidCsr",
               gate == ENR_DPS_CSR_KEY_COMPROMISED   ? ENR_R_KEY_COMPROMISED
               : gate == ENR_DPS_CSR_KEY_NOT_ALLOWED ? ENR_R_KEY_NOT_ALLOWED
                                                     : ENR_R_NONE,
               "%s", message);
        goto out;
    }
    if ((rc = enr_provision_policy_load(w->store, t.policy, cn, &policy, &e)) != ENR_OK) {
        reject_internal(j, &e);
        goto out;
    }
    policy_loaded = true;
    const enr_issuing_ca *issuer = enr_ca_cache_get(w->cas, policy.ca_name, &e);
    if (issuer == NULL) {
        reject_internal(j, &e);
        goto out;
    }
    char token[ENR_AWS_TOKEN_MAX + 1] = "";
    for (int attempt = 0; attempt < SIGN_ATTEMPTS; attempt++) {
        X509_free(cert);
        cert = NULL;
        enr_certificate_free(&rec);
        if ((rc = enr_ca_sign(issuer->ca, csr, policy.profile, 0, &cert, &e)) != ENR_OK) {
            if (e.code == ENR_E_POLICY)
                reject(j, 400, "InvalidCsr", e.reason, "%s", e.message);
            else
                reject_internal(j, &e);
            goto out;
        }
        if ((rc = enr_certificate_from_x509(cert, &rec, &e)) != ENR_OK) {
            reject_internal(j, &e);
            goto out;
        }
        snprintf(rec.policy, sizeof rec.policy, "%s", policy.name);
        enr_audit_event audit = {0};
        snprintf(audit.kind, sizeof audit.kind, "aws.create");
        snprintf(audit.outcome, sizeof audit.outcome, "ok");
        snprintf(audit.detail, sizeof audit.detail, "%s: certificate %s for CN %s pending under template %s (%s)",
                 req->call == ENR_AWS_FLEET_CREATE_KEYS ? "CreateKeysAndCertificate" : "CreateCertificateFromCsr",
                 rec.serial, cn, t.name, j->peer.kind == ENR_AWS_PEER_THING ? "renewal" : "claim");
        enr_aws_pending pending = {.certificate = &rec, .template_name = t.name,
                                   .connection_fingerprint = j->peer.fingerprint};
        rc = enr_store_aws_create_pending(w->store, &pending, token, &audit, &e);
        if (rc != ENR_E_EXISTS)
            break;
    }
    if (rc != ENR_OK) {
        reject_internal(j, &e);
        goto out;
    }
    char cert_id[ENR_STORE_SPKI_HEX + 1];
    if ((rc = enr_cert_fingerprint(cert, cert_id, &e)) != ENR_OK || (cert_pem = certificate_pem(cert, issuer->issuers_pem)) == NULL ||
        (server_key != NULL && (key_pem = private_key_pem(server_key)) == NULL)) {
        reject(j, 500, "InternalFailure", ENR_R_NONE, "cannot encode the certificate");
        goto out;
    }
    enr_aws_fleet_created created = {.certificate_id = cert_id, .certificate_pem = cert_pem,
                                     .private_key = key_pem, .ownership_token = token};
    if (enr_aws_fleet_encode_created(j->topic.format, &created, &j->answer, &j->answer_len, &e) != ENR_OK) {
        reject_internal(j, &e);
        goto out;
    }
    j->accepted = true;
    j->status = 200;
    atomic_fetch_add(&w->core->counters.created, 1);
out:
    OPENSSL_cleanse(token, sizeof token);
    if (key_pem != NULL)
        OPENSSL_clear_free(key_pem, strlen(key_pem));
    free(cert_pem);
    enr_certificate_free(&rec);
    X509_free(cert);
    if (policy_loaded)
        enr_provision_policy_free(&policy);
    enr_csr_free(csr);
    EVP_PKEY_free(server_key);
    enr_aws_template_record_free(&t);
}

/* ---- RegisterThing ---------------------------------------------------------- */

/* The hook's parameterOverrides replace the device's values. */
static void apply_overrides(json_t *params, const json_t *overrides)
{
    const char *k;
    json_t *v;
    json_object_foreach((json_t *)overrides, k, v) json_object_set(params, k, v);
}

static char *plan_attributes(const enr_aws_plan *plan)
{
    json_t *o = json_object();
    for (size_t i = 0; o != NULL && i < enr_aws_plan_attribute_count(plan); i++)
        json_object_set_new(o, enr_aws_plan_attribute_name(plan, i),
                            json_string(enr_aws_plan_attribute_value(plan, i)));
    char *s = o != NULL ? json_dumps(o, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
    json_decref(o);
    return s;
}

static char *plan_groups(const enr_aws_plan *plan)
{
    json_t *a = json_array();
    for (size_t i = 0; a != NULL && i < enr_aws_plan_group_count(plan); i++)
        json_array_append_new(a, json_string(enr_aws_plan_group(plan, i)));
    char *s = a != NULL ? json_dumps(a, JSON_COMPACT) : NULL;
    json_decref(a);
    return s;
}

static void do_register(worker *w, enr_aws_call *j, const enr_aws_fleet_request *req)
{
    enr_error e = {0};
    const char *name = j->topic.template_name;
    enr_aws_template_record t = {0};
    enr_code rc = enr_store_get_aws_template(w->store, name, &t, &e);
    if (rc == ENR_E_NOTFOUND) {
        reject(j, 404, "ResourceNotFound", ENR_R_NONE, "no provisioning template '%s'", name);
        return;
    }
    if (rc != ENR_OK) {
        reject_internal(j, &e);
        return;
    }
    if (!enr_aws_peer_may_use(&j->peer, name)) {
        if (j->peer.kind == ENR_AWS_PEER_THING)
            reject(j, 403, "AccessDenied", ENR_R_AUTH_REFUSED,
                   "thing '%s' was provisioned by another template than '%s'", j->peer.thing_name, name);
        else
            reject(j, 403, "AccessDenied", ENR_R_AUTH_REFUSED,
                   "this claim certificate does not chain to a claim CA of provisioning template '%s'", name);
        enr_aws_template_record_free(&t);
        return;
    }
    enr_aws_template *parsed = NULL;
    enr_aws_plan *plan = NULL;
    enr_certificate pending = {0};
    X509 *cert = NULL;
    json_t *params = NULL;
    char *cert_pem = NULL, *attributes = NULL, *groups = NULL;
    enr_aws_register_result result = {0};
    enr_aws_hook_answer hook = {0};
    if (!t.enabled) {
        reject(j, 403, "AccessDenied", ENR_R_TEMPLATE_DISABLED, "provisioning template '%s' is disabled", name);
        goto out;
    }
    /* The token first: the certificate it is for feeds the template's
     * pseudo parameters and the hook (nothing is written yet). */
    char issuer[ENR_STORE_DN_MAX + 1], serial[ENR_STORE_SERIAL_MAX + 1];
    enr_aws_register check = {.token = req->ownership_token, .connection_fingerprint = j->peer.fingerprint,
                              .template_name = name};
    if ((rc = enr_store_aws_token_certificate(w->store, &check, issuer, serial, &e)) != ENR_OK ||
        (rc = enr_store_get_certificate(w->store, issuer, serial, &pending, &e)) != ENR_OK) {
        reject_internal(j, &e);
        goto out;
    }
    const unsigned char *p = pending.der.data;
    if ((cert = d2i_X509(NULL, &p, (long)pending.der.len)) == NULL) {
        reject(j, 500, "InternalFailure", ENR_R_NONE, "the pending certificate cannot be read");
        goto out;
    }
    char cert_id[ENR_STORE_SPKI_HEX + 1];
    if ((rc = enr_cert_fingerprint(cert, cert_id, &e)) != ENR_OK) {
        reject_internal(j, &e);
        goto out;
    }
    params = enr_aws_fleet_parameters_json(req);
    if (params == NULL) {
        reject(j, 500, "InternalFailure", ENR_R_NONE, "out of memory");
        goto out;
    }
    if (t.hook_url[0]) {
        char arn[96];
        snprintf(arn, sizeof arn, "arn:enroll:iot:::provisioningtemplate/%s", name);
        cert_pem = certificate_pem(cert, NULL);
        enr_aws_hook_target target = {.url = t.hook_url, .ca_pem = t.hook_ca_pem, .timeout_ms = t.hook_timeout_ms};
        enr_aws_hook_input in = {.claim_certificate_id = j->peer.fingerprint, .certificate_id = cert_id,
                                 .certificate_pem = cert_pem != NULL ? cert_pem : "", .template_arn = arn,
                                 .client_id = j->peer.client_id, .parameters = params};
        if ((rc = enr_aws_hook_call(&target, &in, &hook, &e)) != ENR_OK || !hook.allow) {
            atomic_fetch_add(&w->core->counters.hook_refused, 1);
            if (rc == ENR_OK)
                enr_error_refuse(&e, ENR_R_HOOK_DENIED, "the pre-provisioning hook did not allow provisioning");
            if (e.code == ENR_E_POLICY)
                reject_by_reason(j, &e);
            else
                reject(j, 403, "AccessDenied", ENR_R_HOOK_FAILED, "the pre-provisioning hook failed: %s", e.message);
            goto out;
        }
        if (hook.parameter_overrides != NULL)
            apply_overrides(params, hook.parameter_overrides);
    }
    char f_cn[ENR_STORE_THING_NAME_MAX + 2], f_sn[65], f_c[8], f_o[129], f_ou[129], f_dnq[129], f_st[129], f_l[129];
    subject_field(cert, NID_commonName, f_cn, sizeof f_cn);
    subject_field(cert, NID_serialNumber, f_sn, sizeof f_sn);
    subject_field(cert, NID_countryName, f_c, sizeof f_c);
    subject_field(cert, NID_organizationName, f_o, sizeof f_o);
    subject_field(cert, NID_organizationalUnitName, f_ou, sizeof f_ou);
    subject_field(cert, NID_dnQualifier, f_dnq, sizeof f_dnq);
    subject_field(cert, NID_stateOrProvinceName, f_st, sizeof f_st);
    subject_field(cert, NID_localityName, f_l, sizeof f_l);
#define OR_NULL(s) ((s)[0] ? (s) : NULL)
    enr_aws_pseudo pseudo = {.certificate_id = cert_id, .common_name = OR_NULL(f_cn),
                             .serial_number = OR_NULL(f_sn), .country = OR_NULL(f_c),
                             .organization = OR_NULL(f_o), .organizational_unit = OR_NULL(f_ou),
                             .dn_qualifier = OR_NULL(f_dnq), .state_name = OR_NULL(f_st), .locality = OR_NULL(f_l)};
#undef OR_NULL
    if ((rc = enr_aws_template_parse(t.body, strlen(t.body), &parsed, &e)) != ENR_OK) {
        reject(j, 500, "InternalFailure", ENR_R_NONE, "provisioning template '%s' cannot be read", name);
        goto out;
    }
    if ((rc = enr_aws_template_evaluate(parsed, params, &pseudo, &plan, &e)) != ENR_OK) {
        reject_by_reason(j, &e);
        goto out;
    }
    /* No ThingName in the template: the certificate's CN names the thing. */
    const char *thing_name = enr_aws_plan_thing_name(plan) != NULL ? enr_aws_plan_thing_name(plan) : f_cn;
    if (j->peer.kind == ENR_AWS_PEER_THING && strcmp(thing_name, j->peer.thing_name) != 0) {
        reject(j, 403, "AccessDenied", ENR_R_THING_MISMATCH,
               "a provisioned device renews its own thing '%s' only, not '%s'", j->peer.thing_name, thing_name);
        goto out;
    }
    if ((attributes = plan_attributes(plan)) == NULL || (groups = plan_groups(plan)) == NULL) {
        reject(j, 500, "InternalFailure", ENR_R_NONE, "out of memory");
        goto out;
    }
    enr_audit_event audit = {0};
    snprintf(audit.kind, sizeof audit.kind, "aws.register");
    snprintf(audit.outcome, sizeof audit.outcome, "ok");
    snprintf(audit.detail, sizeof audit.detail, "RegisterThing: thing %s, certificate %s active (template %s, %s)",
             thing_name, serial, name, j->peer.kind == ENR_AWS_PEER_THING ? "renewal" : "claim");
    enr_aws_register r = {.token = req->ownership_token, .connection_fingerprint = j->peer.fingerprint,
                          .template_name = name, .thing_name = thing_name, .attributes_json = attributes,
                          .groups_json = groups, .thing_type = enr_aws_plan_thing_type(plan)};
    if ((rc = enr_store_aws_register_thing(w->store, &r, &result, &audit, &e)) != ENR_OK) {
        reject_internal(j, &e);
        goto out;
    }
    size_t count = enr_aws_plan_config_count(plan);
    const char *names[ENR_AWS_FLEET_CONFIG_MAX], *values[ENR_AWS_FLEET_CONFIG_MAX];
    for (size_t i = 0; i < count && i < ENR_AWS_FLEET_CONFIG_MAX; i++) {
        names[i] = enr_aws_plan_config_name(plan, i);
        values[i] = enr_aws_plan_config_value(plan, i);
    }
    enr_aws_fleet_registered registered = {.thing_name = thing_name,
                                           .config_count = count < ENR_AWS_FLEET_CONFIG_MAX ? count
                                                                                          : ENR_AWS_FLEET_CONFIG_MAX,
                                           .config_names = names, .config_values = values};
    if (enr_aws_fleet_encode_registered(j->topic.format, &registered, &j->answer, &j->answer_len, &e) != ENR_OK) {
        reject_internal(j, &e);
        goto out;
    }
    j->accepted = true;
    j->status = 200;
    atomic_fetch_add(&w->core->counters.registered, 1);
out:
    enr_aws_register_result_free(&result);
    enr_aws_hook_answer_clear(&hook);
    free(attributes);
    free(groups);
    free(cert_pem);
    json_decref(params);
    enr_aws_plan_free(plan);
    enr_aws_template_free(parsed);
    X509_free(cert);
    enr_certificate_free(&pending);
    enr_aws_template_record_free(&t);
}

static void do_request(worker *w, enr_aws_call *j)
{
    enr_aws_fleet_request req;
    enr_error e = {0};
    enr_aws_fleet_reason why =
        enr_aws_fleet_request_decode(j->topic.call, j->topic.format, j->payload, j->payload_len, &req, &e);
    if (why == ENR_AWS_FLEET_NOMEM)
        reject(j, 500, "InternalFailure", ENR_R_NONE, "out of memory");
    else if (why != ENR_AWS_FLEET_OK)
        reject(j, 400, req.bad_field != NULL ? "InvalidParameters" : "InvalidPayload", ENR_R_NONE, "%s", e.message);
    else if (j->topic.call == ENR_AWS_FLEET_REGISTER_THING)
        do_register(w, j, &req);
    else
        do_create(w, j, &req);
    enr_aws_fleet_request_clear(&req);
}

/* ---- threads and loops ---------------------------------------------------- */

static void deliver(enr_aws_call *j)
{
    enr_aws_loop *loop = j->loop;
    pthread_mutex_lock(&loop->lock);
    j->next = loop->finished;
    loop->finished = j;
    pthread_mutex_unlock(&loop->lock);
    event_active(loop->done_event, EV_READ, 0);
}

static void job_free(enr_aws_call *j)
{
    X509_free(j->cert);
    sk_X509_pop_free(j->chain, X509_free);
    if (j->payload != NULL)
        OPENSSL_clear_free(j->payload, j->payload_len);
    /* CreateKeysAndCertificate's answer holds the private key. */
    if (j->answer != NULL)
        OPENSSL_clear_free(j->answer, j->answer_len);
    free(j);
}

static void run_job(worker *w, enr_aws_call *j)
{
    if (atomic_load(&j->cancelled)) {
        reject(j, 499, "Cancelled", ENR_R_NONE, "the connection went away");
    } else if (w->store == NULL) {
        reject(j, 503, "ServiceUnavailable", ENR_R_NONE, "the store is unavailable; try again later");
    } else if (j->kind == JOB_AUTHENTICATE) {
        do_authenticate(w, j);
    } else {
        do_request(w, j);
    }
    if (!j->accepted) {
        if (j->kind == JOB_REQUEST)
            atomic_fetch_add(&w->core->counters.rejected, 1);
        encode_rejection(j);
    }
    if (j->kind == JOB_AUTHENTICATE)
        atomic_fetch_add(j->accepted ? &w->core->counters.connects_accepted : &w->core->counters.connects_refused, 1);
    deliver(j);
}

static void sweep(worker *w)
{
    enr_certificate_list revoked = {0};
    enr_error e = {0};
    enr_audit_event audit = {0};
    snprintf(audit.kind, sizeof audit.kind, "aws.sweep");
    snprintf(audit.outcome, sizeof audit.outcome, "ok");
    snprintf(audit.detail, sizeof audit.detail,
             "pending certificates whose ownership token expired unused revoked (cessationOfOperation)");
    if (enr_store_aws_sweep_pending(w->store, 0, SWEEP_BATCH, &audit, &revoked, &e) == ENR_OK)
        atomic_fetch_add(&w->core->counters.swept, revoked.count);
    else
        fprintf(stderr, "{\"event\":\"aws_sweep_failed\",\"message\":\"%s\"}\n", e.message);
    enr_certificate_list_free(&revoked);
}

static void *worker_main(void *arg)
{
    worker *w = arg;
    enr_aws_core *core = w->core;
    enr_error e = {0};
    if (enr_store_open(core->store_location, &w->store, &e) != ENR_OK ||
        enr_ca_cache_new(w->store, &w->cas, &e) != ENR_OK) {
        fprintf(stderr, "{\"event\":\"aws_store_unavailable\",\"message\":\"%s\"}\n", e.message);
        enr_store_close(w->store);
        w->store = NULL;
    }
    time_t next_sweep = time(NULL) + (w->index == 0 ? 1 : 0);
    pthread_mutex_lock(&core->lock);
    for (;;) {
        while (core->head == NULL && !core->stopping) {
            if (w->index == 0 && w->store != NULL) {
                struct timespec until = {.tv_sec = next_sweep, .tv_nsec = 0};
                if (pthread_cond_timedwait(&core->wake, &core->lock, &until) != 0 && time(NULL) >= next_sweep) {
                    pthread_mutex_unlock(&core->lock);
                    sweep(w);
                    next_sweep = time(NULL) + core->sweep_interval;
                    pthread_mutex_lock(&core->lock);
                }
            } else {
                pthread_cond_wait(&core->wake, &core->lock);
            }
        }
        enr_aws_call *j = core->head;
        if (j == NULL)
            break; /* stopping and nothing left */
        core->head = j->next;
        if (core->head == NULL)
            core->tail = NULL;
        core->queued--;
        if (j->kind == JOB_AUTHENTICATE)
            core->queued_connects--;
        pthread_mutex_unlock(&core->lock);
        j->next = NULL;
        run_job(w, j);
        pthread_mutex_lock(&core->lock);
    }
    pthread_mutex_unlock(&core->lock);
    enr_ca_cache_free(w->cas);
    enr_store_close(w->store);
    free(w);
    return NULL;
}

enr_code enr_aws_core_new(const enr_aws_core_options *opts, enr_aws_core **out, enr_error *err)
{
    *out = NULL;
    int threads = opts->threads > 0 ? opts->threads : ENR_AWS_THREADS_DEFAULT;
    if (opts->store_location == NULL || threads > 64 || opts->queue_max < 0 || opts->sweep_interval_seconds < 0)
        return enr_error_set(err, ENR_E_USAGE, "aws: a data directory, 1..64 threads and a queue bound are needed");
    enr_aws_core *c = calloc(1, sizeof *c);
    if (c == NULL || (c->store_location = strdup(opts->store_location)) == NULL ||
        (c->threads = calloc((size_t)threads, sizeof *c->threads)) == NULL) {
        enr_aws_core_free(c);
        return enr_error_set(err, ENR_E_NOMEM, "out of memory");
    }
    c->thread_count = threads;
    c->queue_max = opts->queue_max > 0 ? opts->queue_max : ENR_AWS_QUEUE_DEFAULT;
    c->sweep_interval = opts->sweep_interval_seconds > 0 ? opts->sweep_interval_seconds : 60;
    pthread_mutex_init(&c->lock, NULL);
    pthread_cond_init(&c->wake, NULL);
    for (int i = 0; i < threads; i++) {
        worker *w = calloc(1, sizeof *w);
        if (w != NULL) {
            w->core = c;
            w->index = i;
        }
        if (w == NULL || pthread_create(&c->threads[i], NULL, worker_main, w) != 0) {
            free(w);
            enr_aws_core_free(c);
            return enr_error_set(err, ENR_E_NOMEM, "aws: cannot start its threads");
        }
        c->started++;
    }
    *out = c;
    return ENR_OK;
}

void enr_aws_core_stop(enr_aws_core *c)
{
    if (c == NULL)
        return;
    pthread_mutex_lock(&c->lock);
    bool was = c->stopping;
    c->stopping = true;
    /* What no thread holds yet is answered 503 (its loop delivers it). */
    enr_aws_call *rest = c->head;
    c->head = c->tail = NULL;
    c->queued = 0;
    c->queued_connects = 0;
    pthread_cond_broadcast(&c->wake);
    pthread_mutex_unlock(&c->lock);
    for (enr_aws_call *j = rest, *next; j != NULL; j = next) {
        next = j->next;
        reject(j, 503, "ServiceUnavailable", ENR_R_NONE, "the service is stopping");
        encode_rejection(j);
        deliver(j);
    }
    if (!was)
        for (int i = 0; i < c->started; i++)
            pthread_join(c->threads[i], NULL);
}

void enr_aws_core_free(enr_aws_core *c)
{
    if (c == NULL)
        return;
    enr_aws_core_stop(c);
    pthread_mutex_destroy(&c->lock);
    pthread_cond_destroy(&c->wake);
    free(c->threads);
    free(c->store_location);
    free(c);
}

const enr_aws_counters *enr_aws_core_counters(const enr_aws_core *core)
{
    return &core->counters;
}

static void on_finished(evutil_socket_t fd, short what, void *arg)
{
    (void)fd, (void)what;
    enr_aws_loop *loop = arg;
    pthread_mutex_lock(&loop->lock);
    enr_aws_call *list = loop->finished;
    loop->finished = NULL;
    pthread_mutex_unlock(&loop->lock);
    /* Oldest first: the list was built newest first. */
    enr_aws_call *ordered = NULL;
    while (list != NULL) {
        enr_aws_call *next = list->next;
        list->next = ordered;
        ordered = list;
        list = next;
    }
    for (enr_aws_call *j = ordered, *next; j != NULL; j = next) {
        next = j->next;
        if (!atomic_load(&j->cancelled)) {
            enr_aws_outcome o = {.accepted = j->accepted, .status = j->status, .error_code = j->error_code,
                                 .message = j->message, .reason = j->reason, .answer = j->answer,
                                 .answer_len = j->answer_len, .peer = &j->peer, .call = j->topic.call};
            j->done(j->ctx, &o);
        }
        job_free(j);
    }
}

enr_code enr_aws_loop_new(enr_aws_core *core, struct event_base *base, enr_aws_loop **out, enr_error *err)
{
    *out = NULL;
    enr_aws_loop *l = calloc(1, sizeof *l);
    if (l == NULL)
        return enr_error_set(err, ENR_E_NOMEM, "out of memory");
    l->core = core;
    pthread_mutex_init(&l->lock, NULL);
    l->done_event = event_new(base, -1, 0, on_finished, l);
    if (l->done_event == NULL) {
        enr_aws_loop_free(l);
        return enr_error_set(err, ENR_E_NOMEM, "aws: cannot watch for completions");
    }
    *out = l;
    return ENR_OK;
}

void enr_aws_loop_free(enr_aws_loop *l)
{
    if (l == NULL)
        return;
    for (enr_aws_call *j = l->finished, *next; j != NULL; j = next) {
        next = j->next;
        job_free(j);
    }
    if (l->done_event != NULL)
        event_free(l->done_event);
    pthread_mutex_destroy(&l->lock);
    free(l);
}

static enr_aws_call *enqueue(enr_aws_loop *loop, enr_aws_call *j, enr_aws_done_fn done, void *ctx)
{
    enr_aws_core *c = loop->core;
    j->loop = loop;
    j->done = done;
    j->ctx = ctx;
    pthread_mutex_lock(&c->lock);
    /* Whoever connects has proven nothing yet: CONNECTs may take half the
     * queue at most, so a flood of them cannot keep devices that did
     * authenticate from being served. */
    bool full = c->stopping || c->queued >= c->queue_max ||
                (j->kind == JOB_AUTHENTICATE && c->queued_connects >= (c->queue_max + 1) / 2);
    if (!full) {
        if (j->kind == JOB_AUTHENTICATE)
            c->queued_connects++;
        if (c->tail != NULL)
            c->tail->next = j;
        else
            c->head = j;
        c->tail = j;
        c->queued++;
        pthread_cond_signal(&c->wake);
    }
    pthread_mutex_unlock(&c->lock);
    if (full) {
        /* Answered from the loop, after this returns, like any other. */
        if (c->stopping)
            reject(j, 503, "ServiceUnavailable", ENR_R_NONE, "the service is stopping");
        else
            reject(j, 429, "ThrottlingException", ENR_R_NONE, "too many requests; try again later");
        atomic_fetch_add(&c->counters.throttled, 1);
        if (j->kind == JOB_REQUEST)
            atomic_fetch_add(&c->counters.rejected, 1);
        encode_rejection(j);
        deliver(j);
    }
    return j;
}

enr_aws_call *enr_aws_authenticate(enr_aws_loop *loop, X509 *cert, STACK_OF(X509) *chain, const char *client_id,
                                   enr_aws_done_fn done, void *ctx)
{
    enr_aws_call *j = calloc(1, sizeof *j);
    if (j == NULL)
        return NULL;
    j->kind = JOB_AUTHENTICATE;
    if (cert != NULL && X509_up_ref(cert) == 1)
        j->cert = cert;
    if (chain != NULL && (j->chain = X509_chain_up_ref(chain)) == NULL) {
        job_free(j);
        return NULL;
    }
    snprintf(j->peer.client_id, sizeof j->peer.client_id, "%s", client_id != NULL ? client_id : "");
    return enqueue(loop, j, done, ctx);
}

enr_aws_call *enr_aws_submit(enr_aws_loop *loop, const enr_aws_request *req, enr_aws_done_fn done, void *ctx)
{
    enr_aws_call *j = calloc(1, sizeof *j);
    if (j == NULL)
        return NULL;
    j->kind = JOB_REQUEST;
    j->peer = *req->peer;
    j->topic = *req->topic;
    snprintf(j->template_hint, sizeof j->template_hint, "%s", req->template_hint != NULL ? req->template_hint : "");
    if (req->payload_len > 0) {
        j->payload = OPENSSL_malloc(req->payload_len);
        if (j->payload == NULL) {
            free(j);
            return NULL;
        }
        memcpy(j->payload, req->payload, req->payload_len);
        j->payload_len = req->payload_len;
    }
    return enqueue(loop, j, done, ctx);
}

void enr_aws_cancel(enr_aws_call *call)
{
    if (call != NULL)
        atomic_store(&call->cancelled, true);
}
