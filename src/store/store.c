/* The store interface: every argument is checked and normalised here, once,
 * and then handed to the backend through its table of functions. Backends
 * therefore store the same canonical values (lower-case ids, serials as
 * `openssl x509 -serial` prints them) and never see a record that breaks
 * the rules documented in store.h. */
#include "enroll/http_client.h"
#include "enroll/store.h"

#include <jansson.h>
#include <openssl/bn.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "core/hex.h"
#include "enroll/aws_template.h"
#include "enroll/duration.h"
#include "enroll/name.h"
#include "enroll/pubkey.h"
#include "enroll/signer.h"

struct enr_store {
    const enr_store_ops *ops;
    void *impl;
};

/* Bounds on blobs: far above anything real, low enough that one bad
 * request cannot make the database grow without limit. */
#define MAX_CERTIFICATE_DER ((size_t)64 * 1024)
#define MAX_ENROLLMENT_CERTIFICATES 16
#define MAX_RESULT_JSON ((size_t)1 << 20)
#define MAX_CHAIN_PEM ((size_t)256 * 1024)

/* ---- lifecycle ---------------------------------------------------------- */

enr_code enr_store_new(const enr_store_ops *ops, void *impl, enr_store **out, enr_error *err)
{
    if (out == NULL || ops == NULL || ops->name == NULL) {
        if (ops != NULL && ops->close != NULL)
            ops->close(impl);
        return enr_error_set(err, ENR_E_USAGE, "enr_store_new needs a backend table and an output");
    }
    *out = NULL;
    enr_store *store = calloc(1, sizeof *store);
    if (store == NULL) {
        if (ops->close != NULL)
            ops->close(impl);
        return enr_error_set(err, ENR_E_NOMEM, "out of memory");
    }
    store->ops = ops;
    store->impl = impl;
    *out = store;
    return ENR_OK;
}

enr_code enr_store_open(const char *location, enr_store **out, enr_error *err)
{
    return enr_store_url_is_postgres(location) ? enr_store_open_postgres(location, out, err)
                                               : enr_store_open_sqlite(location, out, err);
}

enr_code enr_store_open_as_is(const char *location, enr_store **out, enr_error *err)
{
    return enr_store_url_is_postgres(location) ? enr_store_open_postgres_as_is(location, out, err)
                                               : enr_store_open_sqlite_as_is(location, out, err);
}

void enr_store_close(enr_store *store)
{
    if (store == NULL)
        return;
    if (store->ops->close != NULL)
        store->ops->close(store->impl);
    free(store);
}

const char *enr_store_backend(const enr_store *store)
{
    return store != NULL ? store->ops->name : "none";
}

const char *enr_store_location(const enr_store *store)
{
    return store != NULL && store->ops->location != NULL ? store->ops->location(store->impl) : NULL;
}

static enr_code unsupported(const enr_store *store, const char *what, enr_error *err)
{
    return enr_error_set(err, ENR_E_UNSUPPORTED, "the %s store cannot %s", store->ops->name, what);
}

/* Every public call starts here: a usable store whose backend has the
 * operation. */
#define REQUIRE_OP(store, op, what, err)                                                  \
    do {                                                                                  \
        if ((store) == NULL)                                                              \
            return enr_error_set((err), ENR_E_USAGE, "no store to %s", (what));           \
        if ((store)->ops->op == NULL)                                                     \
            return unsupported((store), (what), (err));                                   \
    } while (0)

static time_t now_or(time_t t)
{
    return t != 0 ? t : time(NULL);
}

enr_code enr_store_make_etag(char out[ENR_STORE_ETAG_MAX + 1], enr_error *err)
{
    unsigned char bytes[8];
    if (RAND_bytes(bytes, sizeof bytes) != 1)
        return enr_error_set(err, ENR_E_CRYPTO, "no randomness for an etag");
    enr_hex_lower(bytes, sizeof bytes, out);
    return ENR_OK;
}

enr_code enr_store_integrity_check(enr_store *store, enr_error *err)
{
    REQUIRE_OP(store, integrity_check, "check its integrity", err);
    return store->ops->integrity_check(store->impl, err);
}

/* ---- field rules -------------------------------------------------------- */

/* A fixed-size field must hold its NUL: a record filled carelessly (strncpy
 * to the brim) would otherwise be read past its end. */
static enr_code check_terminated(const char *what, const char *field, size_t cap, enr_error *err)
{
    if (memchr(field, '\0', cap) == NULL)
        return enr_error_set(err, ENR_E_USAGE, "%s is longer than %zu bytes", what, cap - 1);
    return ENR_OK;
}
#define CHECK_FIELD(what, rec, member, err) \
    check_terminated((what), (rec)->member, sizeof (rec)->member, (err))

static bool is_alnum(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
}

static bool is_id_char(unsigned char c)
{
    return is_alnum(c) || c == '.' || c == '_' || c == ':' || c == '-';
}

/* Registration, group and operation ids, CA and policy names: the DPS rule
 * for registration ids. The value is not echoed: it may be anything. */
static enr_code check_id(const char *what, const char *id, enr_error *err)
{
    size_t len = id != NULL ? strnlen(id, ENR_STORE_ID_MAX + 1) : 0;
    bool ok = len >= 1 && len <= ENR_STORE_ID_MAX &&
              (is_alnum((unsigned char)id[len - 1]) || id[len - 1] == '-');
    for (size_t i = 0; ok && i < len; i++)
        ok = is_id_char((unsigned char)id[i]);
    if (!ok)
        return enr_error_set(err, ENR_E_USAGE,
                             "%s must be 1 to %d characters of A-Z a-z 0-9 . _ : - ending in a "
                             "letter, digit or '-'",
                             what, ENR_STORE_ID_MAX);
    return ENR_OK;
}

/* Ids compare case-insensitively (DPS), so they are stored lower case. */
static enr_code normalize_id(const char *what, const char *id, char out[ENR_STORE_ID_MAX + 1],
                             enr_error *err)
{
    enr_code rc = check_id(what, id, err);
    if (rc != ENR_OK)
        return rc;
    size_t i = 0;
    for (; id[i] != '\0'; i++)
        out[i] = (id[i] >= 'A' && id[i] <= 'Z') ? (char)(id[i] - 'A' + 'a') : id[i];
    out[i] = '\0';
    return ENR_OK;
}

static bool has_control_char(const char *s)
{
    for (; *s != '\0'; s++)
        if ((unsigned char)*s < 0x20 || (unsigned char)*s == 0x7f)
            return true;
    return false;
}

/* Free text (hubs, DNs, key references): bounded, no control characters. */
static enr_code check_text(const char *what, const char *s, size_t max, bool required, enr_error *err)
{
    size_t len = s != NULL ? strnlen(s, max + 1) : 0;
    if (len > max)
        return enr_error_set(err, ENR_E_USAGE, "%s is longer than %zu bytes", what, max);
    if (required && len == 0)
        return enr_error_set(err, ENR_E_USAGE, "%s is missing", what);
    if (len > 0 && has_control_char(s))
        return enr_error_set(err, ENR_E_USAGE, "%s contains control characters", what);
    return ENR_OK;
}

static enr_code check_word(const char *what, const char *s, const char *const *allowed, enr_error *err)
{
    for (size_t i = 0; allowed[i] != NULL; i++)
        if (strcmp(s, allowed[i]) == 0)
            return ENR_OK;
    char list[256] = "";
    for (size_t i = 0; allowed[i] != NULL; i++) {
        size_t used = strlen(list);
        snprintf(list + used, sizeof list - used, "%s%s", i ? ", " : "", allowed[i]);
    }
    return enr_error_set(err, ENR_E_USAGE, "%s must be one of: %s", what, list);
}

static const char *const STATUSES[] = {"assigning", "assigned", "failed", "disabled", "unassigned", NULL};
static const char *const OUTCOMES[] = {"ok", "rejected", "error", NULL};

static int hex_value(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* The form `openssl x509 -serial` prints: upper-case hex, whole octets, no
 * leading zero octets ("00" for zero). One integer has one spelling, so the
 * unique (issuer, serial) index sees every duplicate. */
static enr_code canonical_serial(const char *in, char out[ENR_STORE_SERIAL_MAX + 1], enr_error *err)
{
    size_t len = in != NULL ? strnlen(in, 2 * ENR_STORE_SERIAL_MAX + 1) : 0;
    bool hex = len > 0 && len <= 2 * ENR_STORE_SERIAL_MAX;
    for (size_t i = 0; hex && i < len; i++)
        hex = hex_value(in[i]) >= 0;
    if (!hex)
        return enr_error_set(err, ENR_E_USAGE, "a serial number must be 1 to %d hex digits",
                             ENR_STORE_SERIAL_MAX);
    while (*in == '0')
        in++;
    size_t digits = strlen(in);
    size_t width = digits == 0 ? 2 : digits + (digits & 1);
    if (width > ENR_STORE_SERIAL_MAX)
        return enr_error_set(err, ENR_E_USAGE, "a serial number has at most 20 octets");
    memset(out, '0', width - digits);
    for (size_t i = 0; i < digits; i++)
        out[width - digits + i] = "0123456789ABCDEF"[hex_value(in[i])];
    out[width] = '\0';
    return ENR_OK;
}

static enr_code check_spki_hash(const char *hash, char out[ENR_STORE_SPKI_HEX + 1], enr_error *err)
{
    size_t len = strnlen(hash, ENR_STORE_SPKI_HEX + 1);
    bool ok = len == ENR_STORE_SPKI_HEX;
    for (size_t i = 0; ok && i < len; i++)
        ok = hex_value(hash[i]) >= 0;
    if (!ok)
        return enr_error_set(err, ENR_E_USAGE, "spki_sha256 must be 64 hex digits");
    for (size_t i = 0; i < len; i++)
        out[i] = "0123456789abcdef"[hex_value(hash[i])];
    out[len] = '\0';
    return ENR_OK;
}

/* Strict base64 (RFC 4648 section 4, padded). Never names the key. */
static bool is_base64(const char *s)
{
    size_t len = strnlen(s, ENR_STORE_KEY_MAX + 1);
    if (len == 0 || len > ENR_STORE_KEY_MAX || len % 4 != 0)
        return false;
    size_t pad = 0;
    while (pad < 2 && s[len - 1 - pad] == '=')
        pad++;
    for (size_t i = 0; i < len - pad; i++) {
        unsigned char c = (unsigned char)s[i];
        if (!is_alnum(c) && c != '+' && c != '/')
            return false;
    }
    return true;
}

static enr_code check_reason(int reason, enr_error *err)
{
    /* RFC 5280 5.3.1: 0..10, 7 unused. */
    if (reason < 0 || reason > 10 || reason == 7)
        return enr_error_set(err, ENR_E_USAGE, "revocation reason %d is not an RFC 5280 CRLReason code",
                             reason);
    return ENR_OK;
}

static enr_code check_der_certificate(const char *what, const enr_buf *der, enr_error *err)
{
    if (der->data == NULL || der->len == 0 || der->len > MAX_CERTIFICATE_DER)
        return enr_error_set(err, ENR_E_USAGE, "%s must be a DER certificate of 1 to %zu bytes", what,
                             MAX_CERTIFICATE_DER);
    const unsigned char *p = der->data;
    X509 *x = d2i_X509(NULL, &p, (long)der->len);
    bool whole = x != NULL && p == der->data + der->len;
    X509_free(x);
    if (!whole)
        return enr_error_set(err, ENR_E_USAGE, "%s is not one DER X.509 certificate", what);
    return ENR_OK;
}

/* Audit events are written on refusal paths, where failing to write would
 * lose the record of the refusal: so characters are repaired rather than
 * refused, and text that looks like a credential is withheld. */
static void sanitize_text(char *s)
{
    for (; *s != '\0'; s++)
        if ((unsigned char)*s < 0x20 || (unsigned char)*s == 0x7f)
            *s = '?';
}

static bool looks_like_credential(const char *s)
{
    static const char *const MARKERS[] = {"SharedAccessSignature", "-----BEGIN", "sig=", NULL};
    for (size_t i = 0; MARKERS[i] != NULL; i++)
        for (const char *p = s; *p != '\0'; p++)
            if (strncasecmp(p, MARKERS[i], strlen(MARKERS[i])) == 0)
                return true;
    return false;
}

/* A pasted key, token signature or CSR body: a long run of base64 with
 * upper case, lower case and digits mixed. Hex (serials, SPKI hashes) is
 * never mixed case, so it stays. */
static bool has_base64_blob(const char *s)
{
    enum { MIN_RUN = 32 };
    size_t run = 0;
    bool upper = false, lower = false, digit = false;
    for (;; s++) {
        unsigned char c = (unsigned char)*s;
        if (is_alnum(c) || c == '+' || c == '/' || c == '=') {
            run++;
            upper |= c >= 'A' && c <= 'Z';
            lower |= c >= 'a' && c <= 'z';
            digit |= c >= '0' && c <= '9';
            continue;
        }
        if (run >= MIN_RUN && upper && lower && digit)
            return true;
        if (c == '\0')
            return false;
        run = 0;
        upper = lower = digit = false;
    }
}

static enr_code prepare_audit(const enr_audit_event *in, enr_audit_event *out, enr_error *err)
{
    enr_code rc;
    if ((rc = CHECK_FIELD("audit kind", in, kind, err)) != ENR_OK ||
        (rc = CHECK_FIELD("audit registration id", in, registration_id, err)) != ENR_OK ||
        (rc = CHECK_FIELD("audit outcome", in, outcome, err)) != ENR_OK ||
        (rc = CHECK_FIELD("audit detail", in, detail, err)) != ENR_OK)
        return rc;
    *out = *in;
    out->id = 0;
    out->at = now_or(in->at);
    if ((rc = check_text("audit kind", out->kind, ENR_STORE_WORD_MAX, true, err)) != ENR_OK ||
        (rc = check_word("audit outcome", out->outcome, OUTCOMES, err)) != ENR_OK)
        return rc;
    if (out->reason_code < 0)
        return enr_error_set(err, ENR_E_USAGE, "audit reason code %d is negative", out->reason_code);
    /* A valid id is stored as registrations are (lower case), so the
     * audit trail of a registration can be found by its id; anything else
     * is kept as sent, since it may be the very reason for a refusal. */
    if (check_id("", out->registration_id, NULL) == ENR_OK)
        (void)normalize_id("", out->registration_id, out->registration_id, NULL);
    sanitize_text(out->registration_id);
    sanitize_text(out->detail);
    if (looks_like_credential(out->detail) || has_base64_blob(out->detail) ||
        looks_like_credential(out->registration_id)) {
        snprintf(out->detail, sizeof out->detail, "(detail withheld: it looked like a credential)");
        if (looks_like_credential(out->registration_id))
            out->registration_id[0] = '\0';
    }
    return ENR_OK;
}

/* For the optional audit argument of every change. */
static enr_code prepare_optional_audit(const enr_audit_event *in, enr_audit_event *buf,
                                       const enr_audit_event **out, enr_error *err)
{
    *out = NULL;
    if (in == NULL)
        return ENR_OK;
    enr_code rc = prepare_audit(in, buf, err);
    if (rc == ENR_OK)
        *out = buf;
    return rc;
}

/* ---- frees -------------------------------------------------------------- */

void enr_ca_record_free(enr_ca_record *ca)
{
    if (ca == NULL)
        return;
    enr_buf_free(&ca->certificate);
    free(ca->chain_pem);
    memset(ca, 0, sizeof *ca);
}

void enr_enrollment_free(enr_enrollment *enrollment)
{
    if (enrollment == NULL)
        return;
    for (size_t i = 0; enrollment->certificates != NULL && i < enrollment->certificate_count; i++)
        enr_buf_free(&enrollment->certificates[i]);
    free(enrollment->certificates);
    OPENSSL_cleanse(enrollment, sizeof *enrollment); /* the keys */
}

void enr_certificate_free(enr_certificate *cert)
{
    if (cert == NULL)
        return;
    enr_buf_free(&cert->der);
    memset(cert, 0, sizeof *cert);
}

void enr_operation_free(enr_operation *op)
{
    if (op == NULL)
        return;
    free(op->result_json);
    memset(op, 0, sizeof *op);
}

void enr_ca_record_list_free(enr_ca_record_list *list)
{
    if (list == NULL)
        return;
    for (size_t i = 0; i < list->count; i++)
        enr_ca_record_free(&list->items[i]);
    free(list->items);
    list->items = NULL;
    list->count = 0;
}

void enr_policy_list_free(enr_policy_list *list)
{
    if (list == NULL)
        return;
    free(list->items);
    list->items = NULL;
    list->count = 0;
}

void enr_enrollment_list_free(enr_enrollment_list *list)
{
    if (list == NULL)
        return;
    for (size_t i = 0; i < list->count; i++)
        enr_enrollment_free(&list->items[i]);
    free(list->items);
    list->items = NULL;
    list->count = 0;
}

void enr_registration_list_free(enr_registration_list *list)
{
    if (list == NULL)
        return;
    free(list->items);
    list->items = NULL;
    list->count = 0;
}

void enr_certificate_list_free(enr_certificate_list *list)
{
    if (list == NULL)
        return;
    for (size_t i = 0; i < list->count; i++)
        enr_certificate_free(&list->items[i]);
    free(list->items);
    list->items = NULL;
    list->count = 0;
}

void enr_audit_list_free(enr_audit_list *list)
{
    if (list == NULL)
        return;
    free(list->items);
    list->items = NULL;
    list->count = 0;
}

/* ---- CAs ---------------------------------------------------------------- */

static enr_code check_key_ref(const char *key_ref, enr_error *err)
{
    enr_code rc = check_text("CA key reference", key_ref, ENR_STORE_KEY_REF_MAX, false, err);
    if (rc != ENR_OK)
        return rc;
    /* The PIN is given separately at run time; one in the store would sit
     * in every backup. */
    for (const char *p = key_ref; *p != '\0'; p++)
        if (strncasecmp(p, "pin-value", 9) == 0)
            return enr_error_set(err, ENR_E_USAGE,
                                 "a CA key reference must not carry a PIN (pin-value); use pin-source");
    return ENR_OK;
}

static enr_code check_ca(const enr_ca_record *ca, enr_error *err)
{
    enr_code rc;
    if ((rc = CHECK_FIELD("CA name", ca, name, err)) != ENR_OK ||
        (rc = CHECK_FIELD("CA key reference", ca, key_ref, err)) != ENR_OK ||
        (rc = CHECK_FIELD("CA verification code", ca, verification_code, err)) != ENR_OK ||
        (rc = check_id("a CA name", ca->name, err)) != ENR_OK ||
        (rc = check_key_ref(ca->key_ref, err)) != ENR_OK ||
        (rc = check_text("CA verification code", ca->verification_code, ENR_STORE_CODE_MAX, false,
                         err)) != ENR_OK)
        return rc;
    if (ca->role != ENR_CA_ISSUING && ca->role != ENR_CA_BOOTSTRAP)
        return enr_error_set(err, ENR_E_USAGE, "CA '%s': role must be issuing or bootstrap", ca->name);
    if (ca->role == ENR_CA_ISSUING && ca->key_ref[0] == '\0')
        return enr_error_set(err, ENR_E_USAGE, "issuing CA '%s' needs a key reference", ca->name);
    if (ca->role == ENR_CA_BOOTSTRAP && ca->key_ref[0] != '\0')
        return enr_error_set(err, ENR_E_USAGE,
                             "bootstrap CA '%s' must not have a key reference: its key is not ours",
                             ca->name);
    if (ca->chain_pem != NULL && strnlen(ca->chain_pem, MAX_CHAIN_PEM + 1) > MAX_CHAIN_PEM)
        return enr_error_set(err, ENR_E_USAGE, "CA '%s': chain is longer than %zu bytes", ca->name,
                             MAX_CHAIN_PEM);
    if ((rc = check_der_certificate("the CA certificate", &ca->certificate, err)) != ENR_OK)
        enr_error_prefix(err, "CA '%s'", ca->name);
    return rc;
}

enr_code enr_store_create_ca(enr_store *store, enr_ca_record *ca, const enr_audit_event *audit,
                             enr_error *err)
{
    REQUIRE_OP(store, create_ca, "create CAs", err);
    enr_audit_event audit_buf;
    const enr_audit_event *a = NULL;
    enr_code rc;
    if (ca == NULL)
        return enr_error_set(err, ENR_E_USAGE, "no CA to create");
    if ((rc = check_ca(ca, err)) != ENR_OK ||
        (rc = prepare_optional_audit(audit, &audit_buf, &a, err)) != ENR_OK)
        return rc;
    ca->created_at = ca->updated_at = time(NULL);
    return store->ops->create_ca(store->impl, ca, a, err);
}

enr_code enr_store_get_ca(enr_store *store, const char *name, enr_ca_record *out, enr_error *err)
{
    REQUIRE_OP(store, get_ca, "look up CAs", err);
    enr_code rc;
    if (out == NULL)
        return enr_error_set(err, ENR_E_USAGE, "no place for the CA");
    memset(out, 0, sizeof *out);
    if ((rc = check_id("a CA name", name, err)) != ENR_OK)
        return rc;
    if ((rc = store->ops->get_ca(store->impl, name, out, err)) != ENR_OK)
        enr_ca_record_free(out);
    return rc;
}

enr_code enr_store_list_cas(enr_store *store, enr_ca_record_list *out, enr_error *err)
{
    REQUIRE_OP(store, list_cas, "list CAs", err);
    if (out == NULL)
        return enr_error_set(err, ENR_E_USAGE, "no place for the list");
    memset(out, 0, sizeof *out);
    enr_code rc = store->ops->list_cas(store->impl, out, err);
    if (rc != ENR_OK)
        enr_ca_record_list_free(out);
    return rc;
}

enr_code enr_store_set_ca_verification(enr_store *store, const char *name, const char *code,
                                       bool verified, const enr_audit_event *audit, enr_error *err)
{
    REQUIRE_OP(store, set_ca_verification, "change CA verification", err);
    enr_audit_event audit_buf;
    const enr_audit_event *a = NULL;
    enr_code rc;
    if (code == NULL)
        code = "";
    if ((rc = check_id("a CA name", name, err)) != ENR_OK ||
        (rc = check_text("CA verification code", code, ENR_STORE_CODE_MAX, !verified, err)) != ENR_OK ||
        (rc = prepare_optional_audit(audit, &audit_buf, &a, err)) != ENR_OK)
        return rc;
    return store->ops->set_ca_verification(store->impl, name, code, verified, time(NULL), a, err);
}

/* ---- credential policies ------------------------------------------------ */

static enr_code check_duration(const char *what, const char *text, enr_duration *out, enr_error *err)
{
    enr_code rc = check_text(what, text, ENR_STORE_DURATION_MAX, true, err);
    if (rc == ENR_OK && (rc = enr_duration_parse(text, out, err)) != ENR_OK)
        enr_error_prefix(err, "%s", what);
    return rc;
}

static enr_code check_key_types(const char *list, enr_error *err)
{
    enr_code rc = check_text("allowed key types", list, ENR_STORE_KEY_TYPES_MAX, true, err);
    char copy[ENR_STORE_KEY_TYPES_MAX + 1];
    if (rc != ENR_OK)
        return rc;
    snprintf(copy, sizeof copy, "%s", list);
    char *save = NULL;
    size_t n = 0;
    for (char *name = strtok_r(copy, ",", &save); name != NULL; name = strtok_r(NULL, ",", &save), n++) {
        enr_key_type type;
        if ((rc = enr_key_type_parse(name, &type, err)) != ENR_OK)
            return rc;
    }
    if (n == 0)
        return enr_error_set(err, ENR_E_USAGE, "allowed key types: name at least one");
    return ENR_OK;
}

/* A URL that goes into a certificate through OpenSSL's extension syntax:
 * nothing that syntax would read as another entry (',', spaces). */
static enr_code check_cert_url(const char *what, const char *url, enr_error *err)
{
    if (url[0] == '\0')
        return ENR_OK;
    if (strncmp(url, "http://", 7) != 0 && strncmp(url, "https://", 8) != 0)
        return enr_error_set(err, ENR_E_USAGE, "the %s must be an http:// or https:// URL", what);
    for (const char *c = url; *c != '\0'; c++)
        if ((unsigned char)*c <= ' ' || (unsigned char)*c >= 0x7f || *c == ',')
            return enr_error_set(err, ENR_E_USAGE, "the %s holds a character a certificate's URL cannot have "
                                                   "(a space, a comma or a control character)", what);
    return ENR_OK;
}

static enr_code check_policy(const enr_credential_policy *p, enr_error *err)
{
    enr_code rc;
    if ((rc = CHECK_FIELD("policy name", p, name, err)) != ENR_OK ||
        (rc = check_id("a policy name", p->name, err)) != ENR_OK)
        return rc;
    enr_duration validity, window;
    if ((rc = CHECK_FIELD("validity", p, validity, err)) != ENR_OK ||
        (rc = CHECK_FIELD("renewal window", p, renewal_window, err)) != ENR_OK ||
        (rc = CHECK_FIELD("CA name", p, ca_name, err)) != ENR_OK ||
        (rc = CHECK_FIELD("allowed key types", p, key_types, err)) != ENR_OK ||
        (rc = check_id("the CA name", p->ca_name, err)) != ENR_OK ||
        (rc = check_duration("validity", p->validity, &validity, err)) != ENR_OK ||
        (rc = check_duration("renewal window", p->renewal_window, &window, err)) != ENR_OK ||
        (rc = check_key_types(p->key_types, err)) != ENR_OK ||
        (rc = CHECK_FIELD("OCSP URL", p, ocsp_url, err)) != ENR_OK ||
        (rc = CHECK_FIELD("CRL URL", p, crl_url, err)) != ENR_OK ||
        (rc = check_cert_url("OCSP URL", p->ocsp_url, err)) != ENR_OK ||
        (rc = check_cert_url("CRL URL", p->crl_url, err)) != ENR_OK) {
        enr_error_prefix(err, "policy '%s'", p->name);
        return rc;
    }
    /* A window as long as the validity would have devices renew on every
     * start: measure both from one instant (calendar durations). */
    time_t base = 1767225600; /* 2026-01-01T00:00:00Z */
    if (enr_duration_apply(base, &window, 1) >= enr_duration_apply(base, &validity, 1))
        return enr_error_set(err, ENR_E_USAGE,
                             "policy '%s': renewal window %s must be shorter than validity %s", p->name,
                             p->renewal_window, p->validity);
    return ENR_OK;
}

enr_code enr_store_create_policy(enr_store *store, enr_credential_policy *policy,
                                 const enr_audit_event *audit, enr_error *err)
{
    REQUIRE_OP(store, create_policy, "create credential policies", err);
    enr_audit_event audit_buf;
    const enr_audit_event *a = NULL;
    enr_code rc;
    if (policy == NULL)
        return enr_error_set(err, ENR_E_USAGE, "no policy to create");
    if ((rc = check_policy(policy, err)) != ENR_OK ||
        (rc = prepare_optional_audit(audit, &audit_buf, &a, err)) != ENR_OK)
        return rc;
    policy->created_at = policy->updated_at = time(NULL);
    return store->ops->create_policy(store->impl, policy, a, err);
}

enr_code enr_store_get_policy(enr_store *store, const char *name, enr_credential_policy *out,
                              enr_error *err)
{
    REQUIRE_OP(store, get_policy, "look up credential policies", err);
    enr_code rc;
    if (out == NULL)
        return enr_error_set(err, ENR_E_USAGE, "no place for the policy");
    memset(out, 0, sizeof *out);
    if ((rc = check_id("a policy name", name, err)) != ENR_OK)
        return rc;
    if ((rc = store->ops->get_policy(store->impl, name, out, err)) != ENR_OK)
        memset(out, 0, sizeof *out);
    return rc;
}

enr_code enr_store_list_policies(enr_store *store, enr_policy_list *out, enr_error *err)
{
    REQUIRE_OP(store, list_policies, "list credential policies", err);
    if (out == NULL)
        return enr_error_set(err, ENR_E_USAGE, "no place for the list");
    memset(out, 0, sizeof *out);
    enr_code rc = store->ops->list_policies(store->impl, out, err);
    if (rc != ENR_OK)
        enr_policy_list_free(out);
    return rc;
}

/* ---- enrollments -------------------------------------------------------- */

static const char *kind_word(enr_enrollment_kind kind)
{
    return kind == ENR_ENROLLMENT_GROUP ? "enrollment group" : "individual enrollment";
}

static enr_code check_kind(enr_enrollment_kind kind, enr_error *err)
{
    if (kind != ENR_ENROLLMENT_GROUP && kind != ENR_ENROLLMENT_INDIVIDUAL)
        return enr_error_set(err, ENR_E_USAGE, "enrollment kind must be group or individual");
    return ENR_OK;
}

static const char *id_word(enr_enrollment_kind kind)
{
    return kind == ENR_ENROLLMENT_GROUP ? "a group id" : "a registration id";
}

static enr_code check_attestation(const enr_enrollment *e, enr_error *err)
{
    if (e->attestation == ENR_ATTEST_SYMMETRIC) {
        if (e->certificate_count != 0)
            return enr_error_set(err, ENR_E_USAGE, "symmetric-key attestation takes no certificates");
        /* The keys are secrets: the messages say which key, never what it is. */
        if (!is_base64(e->primary_key))
            return enr_error_set(err, ENR_E_USAGE,
                                 "the primary key must be base64 of at most %d characters",
                                 ENR_STORE_KEY_MAX);
        if (e->secondary_key[0] != '\0' && !is_base64(e->secondary_key))
            return enr_error_set(err, ENR_E_USAGE,
                                 "the secondary key must be base64 of at most %d characters",
                                 ENR_STORE_KEY_MAX);
        return ENR_OK;
    }
    if (e->attestation != ENR_ATTEST_X509)
        return enr_error_set(err, ENR_E_USAGE, "attestation must be symmetric or x509");
    if (e->primary_key[0] != '\0' || e->secondary_key[0] != '\0')
        return enr_error_set(err, ENR_E_USAGE, "x509 attestation takes no symmetric keys");
    if (e->certificate_count == 0 || e->certificates == NULL ||
        e->certificate_count > MAX_ENROLLMENT_CERTIFICATES)
        return enr_error_set(err, ENR_E_USAGE, "x509 attestation needs 1 to %d certificates",
                             MAX_ENROLLMENT_CERTIFICATES);
    for (size_t i = 0; i < e->certificate_count; i++) {
        char what[48];
        snprintf(what, sizeof what, "certificate %zu", i + 1);
        enr_code rc = check_der_certificate(what, &e->certificates[i], err);
        if (rc != ENR_OK)
            return rc;
    }
    return ENR_OK;
}

static enr_code prepare_enrollment(enr_enrollment *e, enr_error *err)
{
    enr_code rc;
    if ((rc = check_kind(e->kind, err)) != ENR_OK ||
        (rc = CHECK_FIELD("enrollment id", e, id, err)) != ENR_OK ||
        (rc = CHECK_FIELD("primary key", e, primary_key, err)) != ENR_OK ||
        (rc = CHECK_FIELD("secondary key", e, secondary_key, err)) != ENR_OK ||
        (rc = CHECK_FIELD("enrollment policy", e, policy, err)) != ENR_OK ||
        (rc = CHECK_FIELD("assigned hub", e, assigned_hub, err)) != ENR_OK ||
        (rc = normalize_id(id_word(e->kind), e->id, e->id, err)) != ENR_OK)
        return rc;
    if ((rc = check_attestation(e, err)) != ENR_OK ||
        (e->policy[0] != '\0' && (rc = check_id("a policy name", e->policy, err)) != ENR_OK) ||
        (rc = check_text("assigned hub", e->assigned_hub, ENR_STORE_HUB_MAX, true, err)) != ENR_OK) {
        enr_error_prefix(err, "%s '%s'", kind_word(e->kind), e->id);
        return rc;
    }
    if ((rc = enr_store_make_etag(e->etag, err)) != ENR_OK)
        return rc;
    e->created_at = e->updated_at = time(NULL);
    return ENR_OK;
}

enr_code enr_store_create_enrollment(enr_store *store, enr_enrollment *enrollment,
                                     const enr_audit_event *audit, enr_error *err)
{
    REQUIRE_OP(store, create_enrollment, "create enrollments", err);
    enr_audit_event audit_buf;
    const enr_audit_event *a = NULL;
    enr_code rc;
    if (enrollment == NULL)
        return enr_error_set(err, ENR_E_USAGE, "no enrollment to create");
    if ((rc = prepare_enrollment(enrollment, err)) != ENR_OK ||
        (rc = prepare_optional_audit(audit, &audit_buf, &a, err)) != ENR_OK)
        return rc;
    return store->ops->create_enrollment(store->impl, enrollment, a, err);
}

enr_code enr_store_get_enrollment(enr_store *store, enr_enrollment_kind kind, const char *id,
                                  enr_enrollment *out, enr_error *err)
{
    REQUIRE_OP(store, get_enrollment, "look up enrollments", err);
    char key[ENR_STORE_ID_MAX + 1];
    enr_code rc;
    if (out == NULL)
        return enr_error_set(err, ENR_E_USAGE, "no place for the enrollment");
    memset(out, 0, sizeof *out);
    if ((rc = check_kind(kind, err)) != ENR_OK || (rc = normalize_id(id_word(kind), id, key, err)) != ENR_OK)
        return rc;
    if ((rc = store->ops->get_enrollment(store->impl, kind, key, out, err)) != ENR_OK)
        enr_enrollment_free(out);
    return rc;
}

enr_code enr_store_list_enrollments(enr_store *store, enr_enrollment_kind kind,
                                    enr_enrollment_list *out, enr_error *err)
{
    REQUIRE_OP(store, list_enrollments, "list enrollments", err);
    enr_code rc;
    if (out == NULL)
        return enr_error_set(err, ENR_E_USAGE, "no place for the list");
    memset(out, 0, sizeof *out);
    if ((rc = check_kind(kind, err)) != ENR_OK)
        return rc;
    if ((rc = store->ops->list_enrollments(store->impl, kind, out, err)) != ENR_OK)
        enr_enrollment_list_free(out);
    return rc;
}

enr_code enr_store_set_enrollment_enabled(enr_store *store, enr_enrollment_kind kind, const char *id,
                                          bool enabled, const enr_audit_event *audit, enr_error *err)
{
    REQUIRE_OP(store, set_enrollment_enabled, "enable or disable enrollments", err);
    char key[ENR_STORE_ID_MAX + 1], etag[ENR_STORE_ETAG_MAX + 1];
    enr_audit_event audit_buf;
    const enr_audit_event *a = NULL;
    enr_code rc;
    if ((rc = check_kind(kind, err)) != ENR_OK || (rc = normalize_id(id_word(kind), id, key, err)) != ENR_OK ||
        (rc = prepare_optional_audit(audit, &audit_buf, &a, err)) != ENR_OK ||
        (rc = enr_store_make_etag(etag, err)) != ENR_OK)
        return rc;
    return store->ops->set_enrollment_enabled(store->impl, kind, key, enabled, etag, time(NULL), a, err);
}

enr_code enr_store_rotate_enrollment_key(enr_store *store, enr_enrollment_kind kind, const char *id,
                                         const char *new_primary, const enr_audit_event *audit,
                                         enr_error *err)
{
    REQUIRE_OP(store, rotate_enrollment_key, "rotate enrollment keys", err);
    char key[ENR_STORE_ID_MAX + 1], etag[ENR_STORE_ETAG_MAX + 1];
    enr_audit_event audit_buf;
    const enr_audit_event *a = NULL;
    enr_code rc;
    if ((rc = check_kind(kind, err)) != ENR_OK || (rc = normalize_id(id_word(kind), id, key, err)) != ENR_OK)
        return rc;
    if (new_primary == NULL || strnlen(new_primary, ENR_STORE_KEY_MAX + 1) > ENR_STORE_KEY_MAX ||
        !is_base64(new_primary))
        return enr_error_set(err, ENR_E_USAGE, "the new primary key is not strict base64 of at most %d characters",
                             ENR_STORE_KEY_MAX);
    if ((rc = prepare_optional_audit(audit, &audit_buf, &a, err)) != ENR_OK ||
        (rc = enr_store_make_etag(etag, err)) != ENR_OK)
        return rc;
    return store->ops->rotate_enrollment_key(store->impl, kind, key, new_primary, etag, time(NULL), a, err);
}

enr_code enr_store_set_enrollment_basic_secret(enr_store *store, enr_enrollment_kind kind, const char *id,
                                               const char *secret_sha256, const enr_audit_event *audit,
                                               enr_error *err)
{
    REQUIRE_OP(store, set_enrollment_basic_secret, "hold EST secrets", err);
    char key[ENR_STORE_ID_MAX + 1], etag[ENR_STORE_ETAG_MAX + 1];
    enr_audit_event audit_buf;
    const enr_audit_event *a = NULL;
    enr_code rc;
    if ((rc = check_kind(kind, err)) != ENR_OK || (rc = normalize_id(id_word(kind), id, key, err)) != ENR_OK)
        return rc;
    if (secret_sha256 != NULL && secret_sha256[0] != '\0' &&
        (strlen(secret_sha256) != ENR_STORE_SHA256_HEX || strspn(secret_sha256, "0123456789abcdef") != ENR_STORE_SHA256_HEX))
        return enr_error_set(err, ENR_E_USAGE, "an EST secret is stored as 64 lower-case hex digits of its SHA-256");
    if ((rc = prepare_optional_audit(audit, &audit_buf, &a, err)) != ENR_OK ||
        (rc = enr_store_make_etag(etag, err)) != ENR_OK)
        return rc;
    return store->ops->set_enrollment_basic_secret(store->impl, kind, key, secret_sha256, etag, time(NULL), a, err);
}

/* ---- registrations ------------------------------------------------------ */

static enr_code prepare_registration(const enr_registration *in, enr_registration *out, enr_error *err)
{
    enr_code rc;
    if ((rc = CHECK_FIELD("registration id", in, registration_id, err)) != ENR_OK ||
        (rc = CHECK_FIELD("enrollment id", in, enrollment_id, err)) != ENR_OK ||
        (rc = CHECK_FIELD("registration status", in, status, err)) != ENR_OK ||
        (rc = CHECK_FIELD("registration substatus", in, substatus, err)) != ENR_OK ||
        (rc = CHECK_FIELD("device id", in, device_id, err)) != ENR_OK ||
        (rc = CHECK_FIELD("assigned hub", in, assigned_hub, err)) != ENR_OK ||
        (rc = CHECK_FIELD("registration etag", in, etag, err)) != ENR_OK ||
        (rc = CHECK_FIELD("last certificate issuer", in, last_certificate_issuer, err)) != ENR_OK ||
        (rc = CHECK_FIELD("last certificate serial", in, last_certificate_serial, err)) != ENR_OK)
        return rc;
    *out = *in;
    if ((rc = normalize_id("a registration id", in->registration_id, out->registration_id, err)) != ENR_OK ||
        (rc = check_kind(in->enrollment_kind, err)) != ENR_OK ||
        (rc = normalize_id(id_word(in->enrollment_kind), in->enrollment_id, out->enrollment_id, err)) != ENR_OK)
        return rc;
    if ((rc = check_word("registration status", in->status, STATUSES, err)) != ENR_OK ||
        (in->substatus[0] != '\0' && (rc = check_id("a substatus", in->substatus, err)) != ENR_OK) ||
        (in->device_id[0] != '\0' && (rc = check_id("a device id", in->device_id, err)) != ENR_OK) ||
        (rc = check_text("assigned hub", in->assigned_hub, ENR_STORE_HUB_MAX, false, err)) != ENR_OK ||
        (rc = check_text("registration etag", in->etag, ENR_STORE_ETAG_MAX, true, err)) != ENR_OK ||
        (rc = check_text("last certificate issuer", in->last_certificate_issuer, ENR_STORE_DN_MAX, false,
                         err)) != ENR_OK) {
        enr_error_prefix(err, "registration '%s'", out->registration_id);
        return rc;
    }
    /* DPS answers carry both or neither (azure-sdk-for-c refuses one alone). */
    if ((in->device_id[0] == '\0') != (in->assigned_hub[0] == '\0'))
        return enr_error_set(err, ENR_E_USAGE,
                             "registration '%s': device id and assigned hub go together",
                             out->registration_id);
    if ((in->last_certificate_serial[0] == '\0') != (in->last_certificate_issuer[0] == '\0'))
        return enr_error_set(err, ENR_E_USAGE,
                             "registration '%s': last certificate issuer and serial go together",
                             out->registration_id);
    if (in->last_certificate_serial[0] != '\0' &&
        (rc = canonical_serial(in->last_certificate_serial, out->last_certificate_serial, err)) != ENR_OK)
        return rc;
    out->created_at = now_or(in->created_at);
    out->updated_at = now_or(in->updated_at);
    return ENR_OK;
}

/* The registration id a certificate or operation belongs to: the
 * registration's when left empty, and nothing else. */
static enr_code same_registration(const char *what, const char *given, const char *registration_id,
                                  char out[ENR_STORE_ID_MAX + 1], enr_error *err)
{
    if (given[0] == '\0') {
        snprintf(out, ENR_STORE_ID_MAX + 1, "%s", registration_id);
        return ENR_OK;
    }
    enr_code rc = normalize_id(what, given, out, err);
    if (rc == ENR_OK && strcmp(out, registration_id) != 0)
        return enr_error_set(err, ENR_E_USAGE, "%s belongs to registration '%s', not '%s'", what, out,
                             registration_id);
    return rc;
}

static enr_code prepare_certificate(const enr_certificate *in, const char *registration_id,
                                    enr_certificate *out, enr_error *err)
{
    enr_code rc;
    if ((rc = CHECK_FIELD("certificate issuer", in, issuer, err)) != ENR_OK ||
        (rc = CHECK_FIELD("certificate serial", in, serial, err)) != ENR_OK ||
        (rc = CHECK_FIELD("certificate registration id", in, registration_id, err)) != ENR_OK ||
        (rc = CHECK_FIELD("certificate policy", in, policy, err)) != ENR_OK ||
        (rc = CHECK_FIELD("certificate subject", in, subject, err)) != ENR_OK ||
        (rc = CHECK_FIELD("certificate spki_sha256", in, spki_sha256, err)) != ENR_OK)
        return rc;
    *out = *in;
    out->id = 0;
    out->revoked = false; /* only the revoke functions revoke */
    out->revocation_reason = 0;
    out->revoked_at = 0;
    out->issued_at = now_or(in->issued_at);
    if ((rc = check_text("certificate issuer", in->issuer, ENR_STORE_DN_MAX, true, err)) != ENR_OK ||
        (rc = check_text("certificate subject", in->subject, ENR_STORE_DN_MAX, false, err)) != ENR_OK ||
        (rc = canonical_serial(in->serial, out->serial, err)) != ENR_OK ||
        (rc = check_spki_hash(in->spki_sha256, out->spki_sha256, err)) != ENR_OK ||
        (rc = same_registration("the certificate", in->registration_id, registration_id,
                                out->registration_id, err)) != ENR_OK ||
        (in->policy[0] != '\0' && (rc = check_id("a policy name", in->policy, err)) != ENR_OK))
        return rc;
    if (in->der.data == NULL || in->der.len == 0 || in->der.len > MAX_CERTIFICATE_DER)
        return enr_error_set(err, ENR_E_USAGE, "certificate %s: DER of 1 to %zu bytes is required",
                             out->serial, MAX_CERTIFICATE_DER);
    if (in->not_after < in->not_before)
        return enr_error_set(err, ENR_E_USAGE, "certificate %s: notAfter is before notBefore", out->serial);
    return ENR_OK;
}

static enr_code prepare_operation(const enr_operation *in, const char *registration_id,
                                  enr_operation *out, enr_error *err)
{
    enr_code rc;
    if ((rc = CHECK_FIELD("operation id", in, operation_id, err)) != ENR_OK ||
        (rc = CHECK_FIELD("operation registration id", in, registration_id, err)) != ENR_OK ||
        (rc = CHECK_FIELD("operation status", in, status, err)) != ENR_OK)
        return rc;
    *out = *in;
    if ((rc = check_id("an operation id", in->operation_id, err)) != ENR_OK ||
        (rc = same_registration("the operation", in->registration_id, registration_id,
                                out->registration_id, err)) != ENR_OK ||
        (rc = check_word("operation status", in->status, STATUSES, err)) != ENR_OK)
        return rc;
    if (in->result_json != NULL && strnlen(in->result_json, MAX_RESULT_JSON + 1) > MAX_RESULT_JSON)
        return enr_error_set(err, ENR_E_USAGE, "operation result is longer than %zu bytes", MAX_RESULT_JSON);
    out->created_at = now_or(in->created_at);
    out->updated_at = now_or(in->updated_at);
    return ENR_OK;
}

/* An operation names only the certificate committed with it: its answer
 * is completed from that record when read. */
static enr_code check_operation_certificate(const enr_operation *op, const enr_certificate *cert,
                                           enr_error *err)
{
    if (op->certificate_issuer[0] == '\0' && op->certificate_serial[0] == '\0')
        return ENR_OK;
    if (cert == NULL || strcmp(op->certificate_issuer, cert->issuer) != 0 ||
        strcmp(op->certificate_serial, cert->serial) != 0)
        return enr_error_set(err, ENR_E_USAGE,
                             "operation '%s' names a certificate other than the one committed with it",
                             op->operation_id);
    return ENR_OK;
}

enr_code enr_store_commit_registration(enr_store *store, const enr_registration *registration,
                                       const enr_certificate *cert, const enr_operation *op,
                                       const enr_audit_event *audit, enr_error *err)
{
    REQUIRE_OP(store, commit_registration, "commit registrations", err);
    enr_registration reg;
    enr_certificate c;
    enr_operation o;
    enr_audit_event audit_buf;
    const enr_audit_event *a = NULL;
    enr_code rc;
    if (registration == NULL || op == NULL)
        return enr_error_set(err, ENR_E_USAGE, "a registration commit needs a registration and an operation");
    if ((rc = prepare_registration(registration, &reg, err)) != ENR_OK ||
        (cert != NULL && (rc = prepare_certificate(cert, reg.registration_id, &c, err)) != ENR_OK) ||
        (rc = prepare_operation(op, reg.registration_id, &o, err)) != ENR_OK ||
        (rc = prepare_optional_audit(audit, &audit_buf, &a, err)) != ENR_OK)
        return rc;
    if ((rc = check_operation_certificate(&o, cert != NULL ? &c : NULL, err)) != ENR_OK)
        return rc;
    if (cert != NULL) {
        snprintf(reg.last_certificate_issuer, sizeof reg.last_certificate_issuer, "%s", c.issuer);
        snprintf(reg.last_certificate_serial, sizeof reg.last_certificate_serial, "%s", c.serial);
    }
    return store->ops->commit_registration(store->impl, &reg, cert != NULL ? &c : NULL, &o, a, err);
}

typedef struct prepared_commit {
    enr_registration reg;
    enr_certificate cert;
    enr_operation op;
    enr_audit_event audit;
} prepared_commit;

static enr_code prepare_commit(const enr_registration_commit *in, prepared_commit *p, enr_registration_commit *out,
                               enr_error *err)
{
    const enr_audit_event *a = NULL;
    enr_code rc;
    if (in->registration == NULL || in->operation == NULL)
        return enr_error_set(err, ENR_E_USAGE, "a registration commit needs a registration and an operation");
    if ((rc = prepare_registration(in->registration, &p->reg, err)) != ENR_OK ||
        (in->certificate != NULL &&
         (rc = prepare_certificate(in->certificate, p->reg.registration_id, &p->cert, err)) != ENR_OK) ||
        (rc = prepare_operation(in->operation, p->reg.registration_id, &p->op, err)) != ENR_OK ||
        (rc = prepare_optional_audit(in->audit, &p->audit, &a, err)) != ENR_OK ||
        (rc = check_operation_certificate(&p->op, in->certificate != NULL ? &p->cert : NULL, err)) != ENR_OK)
        return rc;
    if (in->certificate != NULL) {
        snprintf(p->reg.last_certificate_issuer, sizeof p->reg.last_certificate_issuer, "%s", p->cert.issuer);
        snprintf(p->reg.last_certificate_serial, sizeof p->reg.last_certificate_serial, "%s", p->cert.serial);
    }
    *out = (enr_registration_commit){&p->reg, in->certificate != NULL ? &p->cert : NULL, &p->op, a,
                                     in->credential_issuer, in->credential_serial, in->require_enrollment_enabled,
                                     in->enrollment_etag, ENR_OK, {0}};
    return ENR_OK;
}

enr_code enr_store_commit_registrations(enr_store *store, enr_registration_commit *items, size_t count,
                                        enr_error *err)
{
    if (store == NULL || (items == NULL && count > 0))
        return enr_error_set(err, ENR_E_USAGE, "enr_store_commit_registrations: no store or no items");
    if (store->ops->commit_registrations == NULL) {
        for (size_t i = 0; i < count; i++)
            items[i].result = enr_store_commit_registration(store, items[i].registration, items[i].certificate,
                                                            items[i].operation, items[i].audit, &items[i].error);
        return ENR_OK;
    }
    prepared_commit *prepared = calloc(count ? count : 1, sizeof *prepared);
    enr_registration_commit *ready = calloc(count ? count : 1, sizeof *ready);
    size_t *from = calloc(count ? count : 1, sizeof *from);
    if (prepared == NULL || ready == NULL || from == NULL) {
        free(prepared), free(ready), free(from);
        return enr_error_set(err, ENR_E_NOMEM, "out of memory");
    }
    size_t n = 0;
    for (size_t i = 0; i < count; i++) {
        items[i].result = prepare_commit(&items[i], &prepared[n], &ready[n], &items[i].error);
        if (items[i].result == ENR_OK)
            from[n++] = i;
    }
    enr_code rc = n > 0 ? store->ops->commit_registrations(store->impl, ready, n, err) : ENR_OK;
    for (size_t k = 0; k < n; k++) {
        items[from[k]].result = rc == ENR_OK ? ready[k].result : rc;
        items[from[k]].error = rc == ENR_OK ? ready[k].error : *err;
    }
    free(prepared), free(ready), free(from);
    return rc;
}

enr_code enr_store_get_registration(enr_store *store, const char *registration_id,
                                    enr_registration *out, enr_error *err)
{
    REQUIRE_OP(store, get_registration, "look up registrations", err);
    char key[ENR_STORE_ID_MAX + 1];
    enr_code rc;
    if (out == NULL)
        return enr_error_set(err, ENR_E_USAGE, "no place for the registration");
    memset(out, 0, sizeof *out);
    if ((rc = normalize_id("a registration id", registration_id, key, err)) != ENR_OK)
        return rc;
    if ((rc = store->ops->get_registration(store->impl, key, out, err)) != ENR_OK)
        memset(out, 0, sizeof *out);
    return rc;
}

enr_code enr_store_set_registration_enabled(enr_store *store, const char *registration_id, bool enabled,
                                            const enr_audit_event *audit, enr_error *err)
{
    REQUIRE_OP(store, set_registration_enabled, "enable or disable registrations", err);
    char key[ENR_STORE_ID_MAX + 1], etag[ENR_STORE_ETAG_MAX + 1];
    enr_audit_event audit_buf;
    const enr_audit_event *a = NULL;
    enr_code rc;
    if ((rc = normalize_id("a registration id", registration_id, key, err)) != ENR_OK ||
        (rc = prepare_optional_audit(audit, &audit_buf, &a, err)) != ENR_OK ||
        (rc = enr_store_make_etag(etag, err)) != ENR_OK)
        return rc;
    return store->ops->set_registration_enabled(store->impl, key, enabled, etag, time(NULL), a, err);
}

enr_code enr_store_list_registrations(enr_store *store, const enr_registration_filter *filter,
                                      enr_registration_list *out, enr_error *err)
{
    REQUIRE_OP(store, list_registrations, "list registrations", err);
    enr_registration_filter f = {0};
    char enrollment_id[ENR_STORE_ID_MAX + 1], after[ENR_STORE_ID_MAX + 1];
    enr_code rc;
    if (out == NULL)
        return enr_error_set(err, ENR_E_USAGE, "no place for the list");
    memset(out, 0, sizeof *out);
    if (filter != NULL)
        f = *filter;
    if (f.enrollment_id != NULL) {
        if ((rc = check_kind(f.enrollment_kind, err)) != ENR_OK ||
            (rc = normalize_id(id_word(f.enrollment_kind), f.enrollment_id, enrollment_id, err)) != ENR_OK)
            return rc;
        f.enrollment_id = enrollment_id;
    } else if (f.enrollment_kind != 0 && (rc = check_kind(f.enrollment_kind, err)) != ENR_OK) {
        return rc;
    }
    if (f.status != NULL && (rc = check_word("registration status", f.status, STATUSES, err)) != ENR_OK)
        return rc;
    if (f.after != NULL) {
        if ((rc = normalize_id("a registration id to list after", f.after, after, err)) != ENR_OK)
            return rc;
        f.after = after;
    }
    if ((rc = store->ops->list_registrations(store->impl, &f, out, err)) != ENR_OK)
        enr_registration_list_free(out);
    return rc;
}

/* ---- certificates ------------------------------------------------------- */

enr_code enr_store_get_certificate(enr_store *store, const char *issuer, const char *serial,
                                   enr_certificate *out, enr_error *err)
{
    REQUIRE_OP(store, get_certificate, "look up certificates", err);
    char canonical[ENR_STORE_SERIAL_MAX + 1];
    enr_code rc;
    if (out == NULL)
        return enr_error_set(err, ENR_E_USAGE, "no place for the certificate");
    memset(out, 0, sizeof *out);
    if ((rc = check_text("certificate issuer", issuer, ENR_STORE_DN_MAX, true, err)) != ENR_OK ||
        (rc = canonical_serial(serial, canonical, err)) != ENR_OK)
        return rc;
    if ((rc = store->ops->get_certificate(store->impl, issuer, canonical, out, err)) != ENR_OK)
        enr_certificate_free(out);
    return rc;
}

enr_code enr_store_list_certificates(enr_store *store, const enr_certificate_filter *filter,
                                     enr_certificate_list *out, enr_error *err)
{
    REQUIRE_OP(store, list_certificates, "list certificates", err);
    enr_certificate_filter f = {0};
    char registration_id[ENR_STORE_ID_MAX + 1];
    enr_code rc;
    if (out == NULL)
        return enr_error_set(err, ENR_E_USAGE, "no place for the list");
    memset(out, 0, sizeof *out);
    if (filter != NULL)
        f = *filter;
    f.now = now_or(f.now);
    if (f.registration_id != NULL) {
        if ((rc = normalize_id("a registration id", f.registration_id, registration_id, err)) != ENR_OK)
            return rc;
        f.registration_id = registration_id;
    }
    if (f.issuer != NULL &&
        (rc = check_text("certificate issuer", f.issuer, ENR_STORE_DN_MAX, true, err)) != ENR_OK)
        return rc;
    if (f.expiring_within < 0)
        return enr_error_set(err, ENR_E_USAGE, "expiring within %lld seconds: must not be negative",
                             (long long)f.expiring_within);
    if (f.revoked != ENR_REVOKED_ANY && f.revoked != ENR_REVOKED_ONLY && f.revoked != ENR_REVOKED_NONE)
        return enr_error_set(err, ENR_E_USAGE, "revoked filter must be any, only or none");
    if ((rc = store->ops->list_certificates(store->impl, &f, out, err)) != ENR_OK)
        enr_certificate_list_free(out);
    return rc;
}

enr_code enr_store_revoke_certificate(enr_store *store, const char *issuer, const char *serial,
                                      int reason, time_t when, const enr_audit_event *audit,
                                      enr_error *err)
{
    REQUIRE_OP(store, revoke_certificate, "revoke certificates", err);
    char canonical[ENR_STORE_SERIAL_MAX + 1];
    enr_audit_event audit_buf;
    const enr_audit_event *a = NULL;
    enr_code rc;
    if ((rc = check_text("certificate issuer", issuer, ENR_STORE_DN_MAX, true, err)) != ENR_OK ||
        (rc = canonical_serial(serial, canonical, err)) != ENR_OK ||
        (rc = check_reason(reason, err)) != ENR_OK ||
        (rc = prepare_optional_audit(audit, &audit_buf, &a, err)) != ENR_OK)
        return rc;
    return store->ops->revoke_certificate(store->impl, issuer, canonical, reason, now_or(when), a, err);
}

enr_code enr_store_revoke_registration(enr_store *store, const char *registration_id, int reason,
                                       time_t when, const enr_audit_event *audit,
                                       enr_certificate_list *revoked, enr_error *err)
{
    REQUIRE_OP(store, revoke_registration, "revoke registrations", err);
    char key[ENR_STORE_ID_MAX + 1];
    enr_audit_event audit_buf;
    const enr_audit_event *a = NULL;
    enr_certificate_list ignored = {0};
    enr_certificate_list *list = revoked != NULL ? revoked : &ignored;
    enr_code rc;
    memset(list, 0, sizeof *list);
    if ((rc = normalize_id("a registration id", registration_id, key, err)) != ENR_OK ||
        (rc = check_reason(reason, err)) != ENR_OK ||
        (rc = prepare_optional_audit(audit, &audit_buf, &a, err)) != ENR_OK)
        return rc;
    rc = store->ops->revoke_registration(store->impl, key, reason, now_or(when), a, list, err);
    if (rc != ENR_OK || list == &ignored)
        enr_certificate_list_free(list);
    return rc;
}

enr_code enr_store_move_registration(enr_store *store, const char *registration_id, enr_enrollment_kind kind,
                                     const char *enrollment_id, const enr_audit_event *audit, enr_error *err)
{
    REQUIRE_OP(store, move_registration, "move registrations", err);
    char key[ENR_STORE_ID_MAX + 1], target[ENR_STORE_ID_MAX + 1], etag[ENR_STORE_ETAG_MAX + 1];
    enr_audit_event audit_buf;
    const enr_audit_event *a = NULL;
    enr_code rc;
    if ((rc = normalize_id("a registration id", registration_id, key, err)) != ENR_OK ||
        (rc = check_kind(kind, err)) != ENR_OK ||
        (rc = normalize_id(id_word(kind), enrollment_id, target, err)) != ENR_OK ||
        (rc = prepare_optional_audit(audit, &audit_buf, &a, err)) != ENR_OK ||
        (rc = enr_store_make_etag(etag, err)) != ENR_OK)
        return rc;
    if (kind == ENR_ENROLLMENT_INDIVIDUAL && strcmp(key, target) != 0)
        return enr_error_set(err, ENR_E_USAGE, "an individual enrollment is for its own registration id only");
    return store->ops->move_registration(store->impl, key, kind, target, etag, time(NULL), a, err);
}

enr_code enr_store_block_key(enr_store *store, const char *spki_sha256, const char *issuer, const char *serial,
                             time_t when, const enr_audit_event *audit, enr_error *err)
{
    REQUIRE_OP(store, block_key, "block keys", err);
    char spki[ENR_STORE_SPKI_HEX + 1], canonical[ENR_STORE_SERIAL_MAX + 1];
    enr_audit_event audit_buf;
    const enr_audit_event *a = NULL;
    enr_code rc;
    if ((rc = check_spki_hash(spki_sha256 ? spki_sha256 : "", spki, err)) != ENR_OK ||
        (rc = check_text("certificate issuer", issuer, ENR_STORE_DN_MAX, true, err)) != ENR_OK ||
        (rc = canonical_serial(serial, canonical, err)) != ENR_OK ||
        (rc = prepare_optional_audit(audit, &audit_buf, &a, err)) != ENR_OK)
        return rc;
    return store->ops->block_key(store->impl, spki, issuer, canonical, now_or(when), a, err);
}

enr_code enr_store_key_compromised(enr_store *store, const char *spki_sha256, bool *out, enr_error *err)
{
    REQUIRE_OP(store, key_compromised, "look up compromised keys", err);
    char spki[ENR_STORE_SPKI_HEX + 1];
    if (out == NULL)
        return enr_error_set(err, ENR_E_USAGE, "no place for the answer");
    *out = false;
    enr_code rc = check_spki_hash(spki_sha256 ? spki_sha256 : "", spki, err);
    return rc != ENR_OK ? rc : store->ops->key_compromised(store->impl, spki, out, err);
}

enr_code enr_store_next_crl_number(enr_store *store, const char *issuer, int64_t at_least, int64_t *number,
                                   enr_error *err)
{
    REQUIRE_OP(store, next_crl_number, "number CRLs", err);
    if (number == NULL || at_least < 1)
        return enr_error_set(err, ENR_E_USAGE, "a CRL number is at least 1");
    enr_code rc = check_text("the issuer", issuer, ENR_STORE_DN_MAX, true, err);
    return rc != ENR_OK ? rc : store->ops->next_crl_number(store->impl, issuer, at_least, number, err);
}

enr_code enr_store_revocation_state(enr_store *store, const char *issuer, int64_t *count, time_t *latest,
                                    enr_error *err)
{
    REQUIRE_OP(store, revocation_state, "read revocations", err);
    if (count == NULL || latest == NULL)
        return enr_error_set(err, ENR_E_USAGE, "no place for the answer");
    enr_code rc = check_text("the issuer", issuer, ENR_STORE_DN_MAX, true, err);
    return rc != ENR_OK ? rc : store->ops->revocation_state(store->impl, issuer, count, latest, err);
}

enr_code enr_store_copy(enr_store *from, enr_store *to, enr_store_copy_progress progress, void *ctx,
                        enr_store_copy_report *report, enr_error *err)
{
    REQUIRE_OP(from, copy_into, "copy from", err);
    REQUIRE_OP(to, copy_into, "copy into", err);
    if (report == NULL || from == to)
        return enr_error_set(err, ENR_E_USAGE, "a copy needs two stores and a report");
    if (from->ops->copy_into != to->ops->copy_into)
        return enr_error_set(err, ENR_E_UNSUPPORTED, "cannot copy a %s store into a %s store", from->ops->name,
                             to->ops->name);
    memset(report, 0, sizeof *report);
    return to->ops->copy_into(to->impl, from->impl, progress, ctx, report, err);
}

/* ---- operations and audit ----------------------------------------------- */

enr_code enr_store_get_operation(enr_store *store, const char *operation_id, enr_operation *out,
                                 enr_error *err)
{
    REQUIRE_OP(store, get_operation, "look up operations", err);
    enr_code rc;
    if (out == NULL)
        return enr_error_set(err, ENR_E_USAGE, "no place for the operation");
    memset(out, 0, sizeof *out);
    if ((rc = check_id("an operation id", operation_id, err)) != ENR_OK)
        return rc;
    if ((rc = store->ops->get_operation(store->impl, operation_id, out, err)) != ENR_OK)
        enr_operation_free(out);
    return rc;
}

enr_code enr_store_record_audit(enr_store *store, const enr_audit_event *audit, enr_error *err)
{
    REQUIRE_OP(store, record_audit, "record audit events", err);
    enr_audit_event a;
    enr_code rc;
    if (audit == NULL)
        return enr_error_set(err, ENR_E_USAGE, "no audit event to record");
    if ((rc = prepare_audit(audit, &a, err)) != ENR_OK)
        return rc;
    return store->ops->record_audit(store->impl, &a, err);
}

enr_code enr_store_record_audits(enr_store *store, const enr_audit_event *events, size_t count, enr_error *err)
{
    REQUIRE_OP(store, record_audits, "record audit events", err);
    if (count == 0)
        return ENR_OK;
    if (events == NULL || count > 100000)
        return enr_error_set(err, ENR_E_USAGE, "1-100000 audit events to record, got %zu", count);
    enr_audit_event *copy = malloc(count * sizeof *copy);
    if (copy == NULL)
        return enr_error_set(err, ENR_E_NOMEM, "out of memory");
    enr_code rc = ENR_OK;
    for (size_t i = 0; rc == ENR_OK && i < count; i++)
        rc = prepare_audit(&events[i], &copy[i], err);
    if (rc == ENR_OK)
        rc = store->ops->record_audits(store->impl, copy, count, err);
    free(copy);
    return rc;
}

enr_code enr_store_prune_audit(enr_store *store, time_t before, long keep_rows, size_t limit, size_t *deleted,
                               enr_error *err)
{
    REQUIRE_OP(store, prune_audit, "prune audit events", err);
    if (deleted == NULL || limit == 0 || limit > 100000 || keep_rows < 0 || before < 0)
        return enr_error_set(err, ENR_E_USAGE, "pruning audit events needs a limit of 1-100000 and no negative bound");
    *deleted = 0;
    if (before == 0 && keep_rows == 0)
        return ENR_OK;
    return store->ops->prune_audit(store->impl, before, keep_rows, limit, deleted, err);
}

enr_code enr_store_check_writable(enr_store *store, enr_error *err)
{
    REQUIRE_OP(store, check_writable, "check it takes writes", err);
    return store->ops->check_writable(store->impl, err);
}

enr_code enr_store_list_audit(enr_store *store, const enr_audit_filter *filter, enr_audit_list *out,
                              enr_error *err)
{
    REQUIRE_OP(store, list_audit, "list audit events", err);
    enr_audit_filter f = {0};
    enr_code rc;
    if (out == NULL)
        return enr_error_set(err, ENR_E_USAGE, "no place for the list");
    memset(out, 0, sizeof *out);
    if (filter != NULL)
        f = *filter;
    char registration_id[ENR_STORE_ID_MAX + 1];
    if (f.registration_id != NULL) {
        rc = check_text("audit registration id", f.registration_id, ENR_STORE_ID_MAX, true, err);
        if (rc != ENR_OK)
            return rc;
        if (check_id("", f.registration_id, NULL) == ENR_OK) {
            (void)normalize_id("", f.registration_id, registration_id, NULL);
            f.registration_id = registration_id;
        }
    }
    if ((rc = store->ops->list_audit(store->impl, &f, out, err)) != ENR_OK)
        enr_audit_list_free(out);
    return rc;
}

/* ---- certificates from X509 --------------------------------------------- */

static enr_code asn1_time(const ASN1_TIME *t, time_t *out, enr_error *err)
{
    struct tm tm;
    if (t == NULL || ASN1_TIME_to_tm(t, &tm) != 1)
        return enr_error_set(err, ENR_E_PARSE, "certificate validity time is malformed");
    *out = timegm(&tm);
    return ENR_OK;
}

static enr_code copy_name(const X509_NAME *name, const char *what, char *out, size_t cap, enr_error *err)
{
    char *text = enr_name_format(name);
    if (text == NULL)
        return enr_error_set(err, ENR_E_NOMEM, "cannot format the certificate %s", what);
    size_t len = strlen(text);
    enr_code rc = len < cap ? ENR_OK
                            : enr_error_set(err, ENR_E_UNSUPPORTED, "certificate %s is longer than %zu bytes",
                                            what, cap - 1);
    if (rc == ENR_OK)
        memcpy(out, text, len + 1);
    free(text);
    return rc;
}

static enr_code serial_of(const X509 *x509, char out[ENR_STORE_SERIAL_MAX + 1], enr_error *err)
{
    BIGNUM *bn = ASN1_INTEGER_to_BN(X509_get0_serialNumber(x509), NULL);
    char *hex = bn != NULL && !BN_is_negative(bn) ? BN_bn2hex(bn) : NULL;
    enr_code rc = hex != NULL ? canonical_serial(hex, out, err)
                              : enr_error_set(err, ENR_E_PARSE,
                                              "certificate serial number is not a positive integer");
    OPENSSL_free(hex);
    BN_free(bn);
    return rc;
}

/* One encoding pass (a sizing call would be a second full one). */
static enr_code der_of(const X509 *x509, enr_buf *out, enr_error *err)
{
    unsigned char *der = NULL;
    int len = i2d_X509(x509, &der);
    if (len <= 0)
        return enr_error_openssl(err, ENR_E_CRYPTO, "cannot encode the certificate");
    out->data = malloc((size_t)len + 1);
    if (out->data == NULL) {
        OPENSSL_free(der);
        return enr_error_set(err, ENR_E_NOMEM, "out of memory");
    }
    memcpy(out->data, der, (size_t)len);
    OPENSSL_free(der);
    out->len = (size_t)len;
    out->data[out->len] = '\0';
    return ENR_OK;
}

enr_code enr_certificate_from_x509(const X509 *x509, enr_certificate *out, enr_error *err)
{
    if (out == NULL)
        return enr_error_set(err, ENR_E_USAGE, "no place for the certificate");
    memset(out, 0, sizeof *out);
    if (x509 == NULL)
        return enr_error_set(err, ENR_E_USAGE, "no certificate");
    enr_code rc;
    if ((rc = copy_name(X509_get_issuer_name(x509), "issuer", out->issuer, sizeof out->issuer, err)) !=
            ENR_OK ||
        (rc = copy_name(X509_get_subject_name(x509), "subject", out->subject, sizeof out->subject, err)) !=
            ENR_OK ||
        (rc = serial_of(x509, out->serial, err)) != ENR_OK ||
        (rc = asn1_time(X509_get0_notBefore(x509), &out->not_before, err)) != ENR_OK ||
        (rc = asn1_time(X509_get0_notAfter(x509), &out->not_after, err)) != ENR_OK ||
        (rc = enr_spki_sha256_hex(X509_get_X509_PUBKEY(x509), out->spki_sha256, err)) != ENR_OK ||
        (rc = der_of(x509, &out->der, err)) != ENR_OK) {
        enr_certificate_free(out);
        return rc;
    }
    out->issued_at = time(NULL);
    return ENR_OK;
}

/* ---- AWS fleet provisioning --------------------------------------------- */

/* AWS's template-name rule: [0-9A-Za-z_-]{1,36}. */
bool enr_aws_template_name_valid(const char *name)
{
    size_t len = name != NULL ? strnlen(name, ENR_STORE_TEMPLATE_NAME_MAX + 1) : 0;
    bool ok = len >= 1 && len <= ENR_STORE_TEMPLATE_NAME_MAX;
    for (size_t i = 0; ok && i < len; i++)
        ok = is_alnum((unsigned char)name[i]) || name[i] == '_' || name[i] == '-';
    return ok;
}

/* AWS's thing-name rule: [a-zA-Z0-9:_-]{1,128} (thing types and thing group
 * names follow it too). */
bool enr_aws_thing_name_valid(const char *name)
{
    size_t len = name != NULL ? strnlen(name, ENR_STORE_THING_NAME_MAX + 1) : 0;
    bool ok = len >= 1 && len <= ENR_STORE_THING_NAME_MAX;
    for (size_t i = 0; ok && i < len; i++)
        ok = is_alnum((unsigned char)name[i]) || name[i] == ':' || name[i] == '_' || name[i] == '-';
    return ok;
}

const char *enr_aws_cert_status_name(enr_aws_cert_status status)
{
    switch (status) {
    case ENR_AWS_CERT_PENDING: return "pending";
    case ENR_AWS_CERT_ACTIVE: return "active";
    case ENR_AWS_CERT_SUPERSEDED: return "superseded";
    case ENR_AWS_CERT_REVOKED: return "revoked";
    }
    return "unknown";
}

static enr_code check_template_name(const char *name, enr_error *err)
{
    if (!enr_aws_template_name_valid(name))
        return enr_error_set(err, ENR_E_USAGE, "a template name must be 1 to %d characters of 0-9 A-Z a-z _ -",
                             ENR_STORE_TEMPLATE_NAME_MAX);
    return ENR_OK;
}

static enr_code check_thing_name(const char *what, const char *name, enr_error *err)
{
    if (!enr_aws_thing_name_valid(name))
        return enr_error_set(err, ENR_E_USAGE, "%s must be 1 to %d characters of a-z A-Z 0-9 : _ -", what,
                             ENR_STORE_THING_NAME_MAX);
    return ENR_OK;
}

void enr_aws_template_record_free(enr_aws_template_record *t)
{
    if (t == NULL)
        return;
    free(t->body);
    free(t->hook_ca_pem);
    memset(t, 0, sizeof *t);
}

void enr_aws_thing_free(enr_aws_thing *thing)
{
    if (thing == NULL)
        return;
    free(thing->attributes_json);
    free(thing->groups_json);
    free(thing->certificates);
    memset(thing, 0, sizeof *thing);
}

void enr_aws_template_list_free(enr_aws_template_list *list)
{
    if (list == NULL)
        return;
    for (size_t i = 0; list->items != NULL && i < list->count; i++)
        enr_aws_template_record_free(&list->items[i]);
    free(list->items);
    memset(list, 0, sizeof *list);
}

void enr_aws_thing_list_free(enr_aws_thing_list *list)
{
    if (list == NULL)
        return;
    for (size_t i = 0; list->items != NULL && i < list->count; i++)
        enr_aws_thing_free(&list->items[i]);
    free(list->items);
    memset(list, 0, sizeof *list);
}

void enr_aws_register_result_free(enr_aws_register_result *result)
{
    if (result == NULL)
        return;
    enr_certificate_list_free(&result->superseded);
    memset(result, 0, sizeof *result);
}

/* https://HOST[:PORT][/PATH]: the hook gets a device's parameters, so
 * never in clear text; no credentials in the URL (they would be stored
 * and listed). */
/* The hook client's own grammar (enr_url_parse: https, a host, no user
 * info, query or fragment), so a template can never hold a URL every call
 * would then fail on. */
static enr_code check_hook_url(const char *url, enr_error *err)
{
    enr_code rc = check_text("hook URL", url, ENR_STORE_URL_MAX, true, err);
    if (rc != ENR_OK)
        return rc;
    enr_url parsed;
    if ((rc = enr_url_parse(url, &parsed, err)) != ENR_OK)
        enr_error_prefix(err, "hook URL");
    return rc;
}

static enr_code check_hook_ca(const char *pem, enr_error *err)
{
    size_t len = pem != NULL ? strnlen(pem, ENR_STORE_HOOK_CA_MAX + 1) : 0;
    if (len == 0 || len > ENR_STORE_HOOK_CA_MAX)
        return enr_error_set(err, ENR_E_USAGE, "hook CA must be PEM certificates of 1 to %zu bytes",
                             ENR_STORE_HOOK_CA_MAX);
    BIO *bio = BIO_new_mem_buf(pem, (int)len);
    size_t n = 0;
    X509 *x;
    while (bio != NULL && (x = PEM_read_bio_X509(bio, NULL, NULL, NULL)) != NULL) {
        X509_free(x);
        n++;
    }
    BIO_free(bio);
    ERR_clear_error(); /* the read past the last certificate */
    if (n == 0)
        return enr_error_set(err, ENR_E_USAGE, "hook CA holds no PEM certificate");
    return ENR_OK;
}

static enr_code prepare_aws_template(const enr_aws_template_record *t, enr_error *err)
{
    enr_code rc;
    if ((rc = CHECK_FIELD("template name", t, name, err)) != ENR_OK ||
        (rc = CHECK_FIELD("template policy", t, policy, err)) != ENR_OK ||
        (rc = CHECK_FIELD("hook URL", t, hook_url, err)) != ENR_OK ||
        (rc = check_template_name(t->name, err)) != ENR_OK)
        return rc;
    if ((rc = check_id("a policy name", t->policy, err)) != ENR_OK) {
        enr_error_prefix(err, "template '%s'", t->name);
        return rc;
    }
    if (t->claim_ca_count < 1 || t->claim_ca_count > ENR_STORE_CLAIM_CAS_MAX)
        return enr_error_set(err, ENR_E_USAGE, "template '%s': name 1 to %d claim CAs", t->name,
                             ENR_STORE_CLAIM_CAS_MAX);
    for (size_t i = 0; i < t->claim_ca_count; i++) {
        if ((rc = CHECK_FIELD("claim CA name", t, claim_cas[i], err)) != ENR_OK ||
            (rc = check_id("a claim CA name", t->claim_cas[i], err)) != ENR_OK)
            return rc;
        for (size_t j = 0; j < i; j++)
            if (strcmp(t->claim_cas[i], t->claim_cas[j]) == 0)
                return enr_error_set(err, ENR_E_USAGE, "template '%s': claim CA '%s' is named twice", t->name,
                                     t->claim_cas[i]);
    }
    bool hook = t->hook_url[0] != '\0';
    if (hook && (rc = check_hook_url(t->hook_url, err)) != ENR_OK)
        return rc;
    if (hook && (rc = check_hook_ca(t->hook_ca_pem, err)) != ENR_OK)
        return rc;
    if (!hook && t->hook_ca_pem != NULL && t->hook_ca_pem[0] != '\0')
        return enr_error_set(err, ENR_E_USAGE, "template '%s': a hook CA without a hook URL", t->name);
    if (t->hook_timeout_ms != 0 && (t->hook_timeout_ms < ENR_AWS_HOOK_TIMEOUT_MIN_MS ||
                                    t->hook_timeout_ms > ENR_AWS_HOOK_TIMEOUT_MAX_MS))
        return enr_error_set(err, ENR_E_USAGE, "hook timeout must be %d to %d ms", ENR_AWS_HOOK_TIMEOUT_MIN_MS,
                             ENR_AWS_HOOK_TIMEOUT_MAX_MS);
    if (t->hook_timeout_ms != 0 && !hook)
        return enr_error_set(err, ENR_E_USAGE, "template '%s': a hook timeout without a hook URL", t->name);
    /* A template that cannot be evaluated is refused now, with the path
     * inside it, rather than at the first device. */
    size_t len = t->body != NULL ? strnlen(t->body, ENR_AWS_TEMPLATE_MAX + 1) : 0;
    if (len == 0)
        return enr_error_set(err, ENR_E_USAGE, "template '%s': the template body is missing", t->name);
    enr_aws_template *parsed = NULL;
    if ((rc = enr_aws_template_parse(t->body, len, &parsed, err)) != ENR_OK) {
        enr_error_prefix(err, "template '%s'", t->name);
        return rc;
    }
    enr_aws_template_free(parsed);
    return ENR_OK;
}

enr_code enr_store_create_aws_template(enr_store *store, enr_aws_template_record *t,
                                       const enr_audit_event *audit, enr_error *err)
{
    REQUIRE_OP(store, create_aws_template, "create provisioning templates", err);
    enr_audit_event audit_buf;
    const enr_audit_event *a = NULL;
    enr_code rc;
    if (t == NULL)
        return enr_error_set(err, ENR_E_USAGE, "no template to create");
    if ((rc = prepare_aws_template(t, err)) != ENR_OK ||
        (rc = prepare_optional_audit(audit, &audit_buf, &a, err)) != ENR_OK)
        return rc;
    if (t->hook_url[0] != '\0' && t->hook_timeout_ms == 0)
        t->hook_timeout_ms = ENR_AWS_HOOK_TIMEOUT_DEFAULT_MS;
    t->enabled = true;
    t->created_at = t->updated_at = time(NULL);
    return store->ops->create_aws_template(store->impl, t, a, err);
}

enr_code enr_store_get_aws_template(enr_store *store, const char *name, enr_aws_template_record *out,
                                    enr_error *err)
{
    REQUIRE_OP(store, get_aws_template, "look up provisioning templates", err);
    enr_code rc;
    if (out == NULL)
        return enr_error_set(err, ENR_E_USAGE, "no place for the template");
    memset(out, 0, sizeof *out);
    if ((rc = check_template_name(name, err)) != ENR_OK)
        return rc;
    if ((rc = store->ops->get_aws_template(store->impl, name, out, err)) != ENR_OK)
        enr_aws_template_record_free(out);
    return rc;
}

enr_code enr_store_list_aws_templates(enr_store *store, enr_aws_template_list *out, enr_error *err)
{
    REQUIRE_OP(store, list_aws_templates, "list provisioning templates", err);
    if (out == NULL)
        return enr_error_set(err, ENR_E_USAGE, "no place for the list");
    memset(out, 0, sizeof *out);
    enr_code rc = store->ops->list_aws_templates(store->impl, out, err);
    if (rc != ENR_OK)
        enr_aws_template_list_free(out);
    return rc;
}

enr_code enr_store_delete_aws_template(enr_store *store, const char *name, const enr_audit_event *audit,
                                       enr_error *err)
{
    REQUIRE_OP(store, delete_aws_template, "delete provisioning templates", err);
    enr_audit_event audit_buf;
    const enr_audit_event *a = NULL;
    enr_code rc;
    if ((rc = check_template_name(name, err)) != ENR_OK ||
        (rc = prepare_optional_audit(audit, &audit_buf, &a, err)) != ENR_OK)
        return rc;
    return store->ops->delete_aws_template(store->impl, name, a, err);
}

enr_code enr_store_set_aws_template_enabled(enr_store *store, const char *name, bool enabled,
                                            const enr_audit_event *audit, enr_error *err)
{
    REQUIRE_OP(store, set_aws_template_enabled, "enable or disable provisioning templates", err);
    enr_audit_event audit_buf;
    const enr_audit_event *a = NULL;
    enr_code rc;
    if ((rc = check_template_name(name, err)) != ENR_OK ||
        (rc = prepare_optional_audit(audit, &audit_buf, &a, err)) != ENR_OK)
        return rc;
    return store->ops->set_aws_template_enabled(store->impl, name, enabled, time(NULL), a, err);
}

enr_code enr_store_get_aws_thing(enr_store *store, const char *name, enr_aws_thing *out, enr_error *err)
{
    REQUIRE_OP(store, get_aws_thing, "look up things", err);
    enr_code rc;
    if (out == NULL)
        return enr_error_set(err, ENR_E_USAGE, "no place for the thing");
    memset(out, 0, sizeof *out);
    if ((rc = check_thing_name("a thing name", name, err)) != ENR_OK)
        return rc;
    if ((rc = store->ops->get_aws_thing(store->impl, name, out, err)) != ENR_OK)
        enr_aws_thing_free(out);
    return rc;
}

enr_code enr_store_list_aws_things(enr_store *store, const char *template_name, enr_aws_thing_list *out,
                                   enr_error *err)
{
    REQUIRE_OP(store, list_aws_things, "list things", err);
    enr_code rc;
    if (out == NULL)
        return enr_error_set(err, ENR_E_USAGE, "no place for the list");
    memset(out, 0, sizeof *out);
    if (template_name != NULL && (rc = check_template_name(template_name, err)) != ENR_OK)
        return rc;
    if ((rc = store->ops->list_aws_things(store->impl, template_name, out, err)) != ENR_OK)
        enr_aws_thing_list_free(out);
    return rc;
}

enr_code enr_store_set_aws_thing_enabled(enr_store *store, const char *name, bool enabled,
                                         const enr_audit_event *audit, enr_error *err)
{
    REQUIRE_OP(store, set_aws_thing_enabled, "enable or disable things", err);
    enr_audit_event audit_buf;
    const enr_audit_event *a = NULL;
    enr_code rc;
    if ((rc = check_thing_name("a thing name", name, err)) != ENR_OK ||
        (rc = prepare_optional_audit(audit, &audit_buf, &a, err)) != ENR_OK)
        return rc;
    return store->ops->set_aws_thing_enabled(store->impl, name, enabled, time(NULL), a, err);
}

static enr_code sha256_hex(const void *data, size_t len, char out[ENR_STORE_SPKI_HEX + 1], enr_error *err)
{
    unsigned char md[32];
    unsigned int md_len = 0;
    if (EVP_Digest(data, len, md, &md_len, EVP_sha256(), NULL) != 1 || md_len != sizeof md)
        return enr_error_openssl(err, ENR_E_CRYPTO, "cannot compute SHA-256");
    enr_hex_lower(md, sizeof md, out);
    return ENR_OK;
}

/* base64url without padding (RFC 4648 section 5): tokens travel in JSON
 * and CBOR as text, and this alphabet needs no escaping anywhere. */
static void base64url(const unsigned char *in, size_t n, char *out)
{
    static const char ALPHABET[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    size_t o = 0;
    uint32_t acc = 0;
    int bits = 0;
    for (size_t i = 0; i < n; i++) {
        acc = (acc << 8) | in[i];
        bits += 8;
        while (bits >= 6) {
            bits -= 6;
            out[o++] = ALPHABET[(acc >> bits) & 0x3f];
        }
    }
    if (bits > 0)
        out[o++] = ALPHABET[(acc << (6 - bits)) & 0x3f];
    out[o] = '\0';
}

static enr_code check_fingerprint(const char *what, const char *fp, char out[ENR_STORE_SPKI_HEX + 1],
                                  enr_error *err)
{
    enr_code rc = check_spki_hash(fp != NULL ? fp : "", out, err);
    if (rc != ENR_OK)
        return enr_error_set(err, ENR_E_USAGE, "%s must be SHA-256 in 64 hex digits", what);
    return ENR_OK;
}

enr_code enr_store_aws_create_pending(enr_store *store, const enr_aws_pending *pending,
                                      char token[ENR_AWS_TOKEN_MAX + 1], const enr_audit_event *audit,
                                      enr_error *err)
{
    REQUIRE_OP(store, aws_create_pending, "keep pending certificates", err);
    enr_audit_event audit_buf;
    const enr_audit_event *a = NULL;
    enr_certificate cert;
    char connection[ENR_STORE_SPKI_HEX + 1], fingerprint[ENR_STORE_SPKI_HEX + 1], hash[ENR_STORE_SPKI_HEX + 1];
    enr_code rc;
    if (pending == NULL || pending->certificate == NULL || token == NULL)
        return enr_error_set(err, ENR_E_USAGE, "a pending certificate needs a certificate and a place for the token");
    token[0] = '\0';
    if ((rc = prepare_certificate(pending->certificate, "", &cert, err)) != ENR_OK ||
        (rc = check_template_name(pending->template_name, err)) != ENR_OK ||
        (rc = check_fingerprint("the connection's fingerprint", pending->connection_fingerprint, connection,
                                err)) != ENR_OK ||
        (rc = prepare_optional_audit(audit, &audit_buf, &a, err)) != ENR_OK ||
        (rc = sha256_hex(cert.der.data, cert.der.len, fingerprint, err)) != ENR_OK)
        return rc;
    unsigned char random[ENR_AWS_TOKEN_BYTES];
    if (RAND_bytes(random, sizeof random) != 1)
        return enr_error_openssl(err, ENR_E_CRYPTO, "no randomness for an ownership token");
    char text[ENR_AWS_TOKEN_MAX + 1];
    base64url(random, sizeof random, text);
    OPENSSL_cleanse(random, sizeof random);
    /* Only the hash is stored: a copy of the database cannot activate
     * anything. */
    if ((rc = sha256_hex(text, strlen(text), hash, err)) == ENR_OK)
        rc = store->ops->aws_create_pending(store->impl, &cert, fingerprint, pending->template_name, connection,
                                            hash, now_or(pending->now), a, err);
    if (rc == ENR_OK)
        memcpy(token, text, strlen(text) + 1);
    OPENSSL_cleanse(text, sizeof text);
    return rc;
}

/* Canonical JSON (compact, sorted keys), so every backend stores one
 * spelling. Attributes: an object of strings; groups: an array of thing
 * group names. */
static enr_code canonical_json(const char *what, const char *in, bool object, char **out, enr_error *err)
{
    *out = NULL;
    json_t *v;
    if (in == NULL)
        v = object ? json_object() : json_array();
    else {
        size_t len = strnlen(in, ENR_STORE_JSON_MAX + 1);
        if (len > ENR_STORE_JSON_MAX)
            return enr_error_set(err, ENR_E_USAGE, "%s are longer than %zu bytes", what, ENR_STORE_JSON_MAX);
        json_error_t jerr;
        v = json_loadb(in, len, JSON_REJECT_DUPLICATES, &jerr);
        if (v == NULL)
            return enr_error_set(err, ENR_E_USAGE, "%s are not JSON: %.120s", what, jerr.text);
    }
    enr_code rc = ENR_OK;
    if (v == NULL)
        return enr_error_set(err, ENR_E_NOMEM, "out of memory");
    if (object && !json_is_object(v))
        rc = enr_error_set(err, ENR_E_USAGE, "%s must be a JSON object", what);
    else if (!object && !json_is_array(v))
        rc = enr_error_set(err, ENR_E_USAGE, "%s must be a JSON array", what);
    if (rc == ENR_OK && object) {
        const char *key;
        json_t *value;
        json_object_foreach(v, key, value) {
            if (!json_is_string(value) || strlen(key) == 0 || strlen(key) > ENR_STORE_THING_NAME_MAX ||
                has_control_char(key) || has_control_char(json_string_value(value))) {
                rc = enr_error_set(err, ENR_E_USAGE, "%s must map names to strings", what);
                break;
            }
        }
        if (rc == ENR_OK && json_object_size(v) > ENR_AWS_ATTRIBUTES_MAX)
            rc = enr_error_set(err, ENR_E_USAGE, "%s: at most %d", what, ENR_AWS_ATTRIBUTES_MAX);
    } else if (rc == ENR_OK) {
        size_t i;
        json_t *value;
        json_array_foreach(v, i, value) {
            if (!json_is_string(value) || !enr_aws_thing_name_valid(json_string_value(value))) {
                rc = enr_error_set(err, ENR_E_USAGE, "%s: item %zu is not a thing group name", what, i + 1);
                break;
            }
        }
        if (rc == ENR_OK && json_array_size(v) > ENR_AWS_GROUPS_MAX)
            rc = enr_error_set(err, ENR_E_USAGE, "%s: at most %d", what, ENR_AWS_GROUPS_MAX);
    }
    if (rc == ENR_OK && (*out = json_dumps(v, JSON_COMPACT | JSON_SORT_KEYS)) == NULL)
        rc = enr_error_set(err, ENR_E_NOMEM, "out of memory");
    json_decref(v);
    return rc;
}

/* What RegisterThing and its token look-up check of the request first:
 * the token's SHA-256 into `hash`, the connection's fingerprint (checked)
 * into `connection`, and the template's name. */
static enr_code check_token_request(const enr_aws_register *request, char connection[ENR_STORE_SPKI_HEX + 1],
                                   char hash[ENR_STORE_SPKI_HEX + 1], enr_error *err)
{
    enr_code rc;
    size_t token_len = request->token != NULL ? strnlen(request->token, ENR_AWS_TOKEN_MAX + 1) : 0;
    /* Any text up to the bound is hashed and looked up: a token that was
     * never issued is "unknown", whatever its shape (the device's mistake,
     * answered as AWS answers it, not a usage error of the front end). */
    if (token_len == 0 || token_len > ENR_AWS_TOKEN_MAX)
        return enr_error_refuse(err, ENR_R_TOKEN_UNKNOWN, "no such certificate ownership token");
    if ((rc = check_fingerprint("the connection's fingerprint", request->connection_fingerprint, connection,
                                err)) != ENR_OK ||
        (rc = check_template_name(request->template_name, err)) != ENR_OK)
        return rc;
    return sha256_hex(request->token, token_len, hash, err);
}

enr_code enr_store_aws_register_thing(enr_store *store, const enr_aws_register *request,
                                      enr_aws_register_result *result, const enr_audit_event *audit,
                                      enr_error *err)
{
    REQUIRE_OP(store, aws_register_thing, "register things", err);
    enr_audit_event audit_buf;
    const enr_audit_event *a = NULL;
    char connection[ENR_STORE_SPKI_HEX + 1], hash[ENR_STORE_SPKI_HEX + 1];
    enr_code rc;
    if (request == NULL || result == NULL)
        return enr_error_set(err, ENR_E_USAGE, "registering a thing needs a request and a place for the result");
    memset(result, 0, sizeof *result);
    if ((rc = check_token_request(request, connection, hash, err)) != ENR_OK ||
        (rc = check_thing_name("a thing name", request->thing_name, err)) != ENR_OK ||
        (request->thing_type != NULL && request->thing_type[0] != '\0' &&
         (rc = check_thing_name("a thing type", request->thing_type, err)) != ENR_OK) ||
        (rc = prepare_optional_audit(audit, &audit_buf, &a, err)) != ENR_OK)
        return rc;
    char *attributes = NULL, *groups = NULL;
    if ((rc = canonical_json("thing attributes", request->attributes_json, true, &attributes, err)) == ENR_OK &&
        (rc = canonical_json("thing groups", request->groups_json, false, &groups, err)) == ENR_OK) {
        enr_aws_register r = *request;
        r.token = hash;
        r.connection_fingerprint = connection;
        r.attributes_json = attributes;
        r.groups_json = groups;
        r.thing_type = request->thing_type != NULL ? request->thing_type : "";
        r.now = now_or(request->now);
        rc = store->ops->aws_register_thing(store->impl, &r, result, a, err);
    }
    free(attributes);
    free(groups);
    if (rc != ENR_OK)
        enr_aws_register_result_free(result);
    return rc;
}

enr_code enr_store_aws_sweep_pending(enr_store *store, time_t now, size_t limit, const enr_audit_event *audit,
                                     enr_certificate_list *revoked, enr_error *err)
{
    REQUIRE_OP(store, aws_sweep_pending, "sweep pending certificates", err);
    enr_audit_event audit_buf;
    const enr_audit_event *a = NULL;
    enr_certificate_list ignored = {0};
    enr_certificate_list *list = revoked != NULL ? revoked : &ignored;
    enr_code rc;
    memset(list, 0, sizeof *list);
    if (limit < 1 || limit > 100000)
        return enr_error_set(err, ENR_E_USAGE, "sweep limit must be 1 to 100000");
    if ((rc = prepare_optional_audit(audit, &audit_buf, &a, err)) != ENR_OK)
        return rc;
    rc = store->ops->aws_sweep_pending(store->impl, now_or(now), limit, a, list, err);
    if (rc != ENR_OK || list == &ignored)
        enr_certificate_list_free(list);
    return rc;
}

enr_code enr_store_aws_thing_of_certificate(enr_store *store, const char *fingerprint,
                                            char thing_name[ENR_STORE_THING_NAME_MAX + 1], enr_error *err)
{
    REQUIRE_OP(store, aws_thing_of_certificate, "look up thing certificates", err);
    char fp[ENR_STORE_SPKI_HEX + 1];
    enr_code rc = check_fingerprint("a certificate fingerprint", fingerprint, fp, err);
    if (rc == ENR_OK && thing_name == NULL)
        rc = enr_error_set(err, ENR_E_USAGE, "no place for the thing name");
    if (rc == ENR_OK)
        rc = store->ops->aws_thing_of_certificate(store->impl, fp, thing_name, err);
    return rc;
}

enr_code enr_store_aws_token_certificate(enr_store *store, const enr_aws_register *request,
                                         char issuer[ENR_STORE_DN_MAX + 1], char serial[ENR_STORE_SERIAL_MAX + 1],
                                         enr_error *err)
{
    REQUIRE_OP(store, aws_token_certificate, "look up ownership tokens", err);
    char connection[ENR_STORE_SPKI_HEX + 1], hash[ENR_STORE_SPKI_HEX + 1];
    enr_code rc;
    if (request == NULL || issuer == NULL || serial == NULL)
        return enr_error_set(err, ENR_E_USAGE, "looking up a token needs a request and a place for the result");
    if ((rc = check_token_request(request, connection, hash, err)) != ENR_OK)
        return rc;
    enr_aws_register r = *request;
    r.token = hash;
    r.connection_fingerprint = connection;
    r.now = now_or(request->now);
    return store->ops->aws_token_certificate(store->impl, &r, issuer, serial, err);
}
