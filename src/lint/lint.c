/* The PKCS#10 linter. Every check reads the request through OpenSSL; this
 * file only decides what is wrong with what OpenSSL decoded and says where.
 * Findings are kept in the order the checks run, so reports are stable. */
#include "enroll/lint.h"

#include <ctype.h>
#include <jansson.h>
#include <openssl/asn1.h>
#include <openssl/err.h>
#include <openssl/objects.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "csr/csr_internal.h"
#include "enroll/csr.h"
#include "enroll/input.h"
#include "enroll/name.h"
#include "enroll/pubkey.h"

/* A hostile request can hold thousands of faults; past this many the report
 * only counts them, so its size stays bounded. */
#define MAX_FINDINGS 1000
#define MESSAGE_MAX 1024
/* Room for one quoted value from the request in a message. */
#define QUOTE_MAX 100
#define OID_TEXT_MAX 96

/* ---- the rule table --------------------------------------------------- */

typedef enum rule_index {
    R_ENCODING_MALFORMED,
    R_ENCODING_PEM_LABEL,
    R_ENCODING_TRAILING_DATA,
    R_ENCODING_NOT_DER,
    R_VERSION_INVALID,
    R_SIGNATURE_UNKNOWN_ALGORITHM,
    R_SIGNATURE_WEAK_HASH,
    R_SIGNATURE_INVALID,
    R_KEY_MALFORMED,
    R_KEY_UNSUPPORTED_ALGORITHM,
    R_KEY_RSA_TOO_SMALL,
    R_KEY_RSA_EXPONENT,
    R_KEY_EC_CURVE,
    R_SUBJECT_EMPTY,
    R_SUBJECT_CN_MISSING,
    R_SUBJECT_CN_MULTIPLE,
    R_SUBJECT_CN_MISMATCH,
    R_SUBJECT_STRING_INVALID,
    R_SUBJECT_STRING_TYPE,
    R_SUBJECT_VALUE_EMPTY,
    R_SUBJECT_VALUE_TOO_LONG,
    R_SUBJECT_COUNTRY_INVALID,
    R_SUBJECT_EMAIL_IN_DN,
    R_NAME_WILDCARD,
    R_NAME_DNS_SYNTAX,
    R_ATTRIBUTES_DUPLICATE,
    R_ATTRIBUTES_UNKNOWN,
    R_ATTRIBUTES_VALUE_COUNT,
    R_EXTENSIONS_MALFORMED,
    R_EXTENSIONS_UNKNOWN_CRITICAL,
    R_EXTENSIONS_SAN_EMPTY,
    R_EXTENSIONS_SAN_IP_LENGTH,
    R_COUNT
} rule_index;

/* The severity here is the one a rule normally carries; csr.name.dns_syntax
 * is lowered to a warning for a CN (a CN need not be a host name). */
static const enr_lint_rule RULES[R_COUNT] = {
    [R_ENCODING_MALFORMED] = {"csr.encoding.malformed", ENR_SEVERITY_ERROR,
                              "The input is not a decodable PKCS#10 request (broken PEM, base64 "
                              "or DER, or DER that is not a CertificationRequest)"},
    [R_ENCODING_PEM_LABEL] = {"csr.encoding.pem_label", ENR_SEVERITY_ERROR,
                              "The PEM label is not CERTIFICATE REQUEST or "
                              "NEW CERTIFICATE REQUEST"},
    [R_ENCODING_TRAILING_DATA] = {"csr.encoding.trailing_data", ENR_SEVERITY_WARNING,
                                  "Bytes follow the request (in the text or inside the "
                                  "decoded DER)"},
    [R_ENCODING_NOT_DER] = {"csr.encoding.not_der", ENR_SEVERITY_ERROR,
                            "The request is BER or non-canonical: re-encoding it gives "
                            "other bytes"},
    [R_VERSION_INVALID] = {"csr.version.invalid", ENR_SEVERITY_ERROR,
                           "The version is not 0 (v1), the only PKCS#10 version"},
    [R_SIGNATURE_UNKNOWN_ALGORITHM] = {"csr.signature.unknown_algorithm", ENR_SEVERITY_ERROR,
                                       "The signature algorithm is not one OpenSSL knows"},
    [R_SIGNATURE_WEAK_HASH] = {"csr.signature.weak_hash", ENR_SEVERITY_ERROR,
                               "The signature uses MD2, MD4, MD5 or SHA-1"},
    [R_SIGNATURE_INVALID] = {"csr.signature.invalid", ENR_SEVERITY_ERROR,
                             "The self-signature does not verify (no proof of possession)"},
    [R_KEY_MALFORMED] = {"csr.key.malformed", ENR_SEVERITY_ERROR,
                         "The public key has a known algorithm but cannot be decoded"},
    [R_KEY_UNSUPPORTED_ALGORITHM] = {"csr.key.unsupported_algorithm", ENR_SEVERITY_ERROR,
                                     "The public key is not RSA, EC or Ed25519"},
    [R_KEY_RSA_TOO_SMALL] = {"csr.key.rsa_too_small", ENR_SEVERITY_ERROR,
                             "The RSA key is shorter than 2048 bits"},
    [R_KEY_RSA_EXPONENT] = {"csr.key.rsa_exponent", ENR_SEVERITY_WARNING,
                            "The RSA public exponent is not 65537"},
    [R_KEY_EC_CURVE] = {"csr.key.ec_curve", ENR_SEVERITY_ERROR,
                        "The EC key is not on P-256 or P-384"},
    [R_SUBJECT_EMPTY] = {"csr.subject.empty", ENR_SEVERITY_ERROR, "The subject has no fields"},
    [R_SUBJECT_CN_MISSING] = {"csr.subject.cn_missing", ENR_SEVERITY_WARNING,
                              "The subject has no CN"},
    [R_SUBJECT_CN_MULTIPLE] = {"csr.subject.cn_multiple", ENR_SEVERITY_WARNING,
                               "The subject has more than one CN"},
    [R_SUBJECT_CN_MISMATCH] = {"csr.subject.cn_mismatch", ENR_SEVERITY_ERROR,
                               "The CN is not the expected registration id (--expect-cn)"},
    [R_SUBJECT_STRING_INVALID] = {"csr.subject.string_invalid", ENR_SEVERITY_ERROR,
                                  "A subject value holds bytes its string type does not allow"},
    [R_SUBJECT_STRING_TYPE] = {"csr.subject.string_type", ENR_SEVERITY_WARNING,
                               "A subject value uses the wrong or a legacy string type"},
    [R_SUBJECT_VALUE_EMPTY] = {"csr.subject.value_empty", ENR_SEVERITY_ERROR,
                               "A subject value is empty (RFC 5280 requires at least 1 character)"},
    [R_SUBJECT_VALUE_TOO_LONG] = {"csr.subject.value_too_long", ENR_SEVERITY_ERROR,
                                  "A subject value is longer than its RFC 5280 upper bound"},
    [R_SUBJECT_COUNTRY_INVALID] = {"csr.subject.country_invalid", ENR_SEVERITY_ERROR,
                                   "C is not an ISO 3166-1 alpha-2 country code"},
    [R_SUBJECT_EMAIL_IN_DN] = {"csr.subject.email_in_dn", ENR_SEVERITY_NOTICE,
                               "emailAddress in the subject is deprecated (RFC 5280 4.1.2.6)"},
    [R_NAME_WILDCARD] = {"csr.name.wildcard", ENR_SEVERITY_WARNING,
                         "A '*' wildcard in the CN or a DNS subjectAltName"},
    [R_NAME_DNS_SYNTAX] = {"csr.name.dns_syntax", ENR_SEVERITY_ERROR,
                           "A DNS subjectAltName (error) or a host-name-like CN (warning) is not "
                           "a valid host name"},
    [R_ATTRIBUTES_DUPLICATE] = {"csr.attributes.duplicate", ENR_SEVERITY_ERROR,
                                "An attribute type appears twice, or an extension OID twice in the "
                                "extensionRequest"},
    [R_ATTRIBUTES_UNKNOWN] = {"csr.attributes.unknown", ENR_SEVERITY_NOTICE,
                              "An attribute other than extensionRequest, challengePassword or "
                              "unstructuredName"},
    [R_ATTRIBUTES_VALUE_COUNT] = {"csr.attributes.value_count", ENR_SEVERITY_ERROR,
                                  "A single-valued PKCS#9 attribute has no value or several"},
    [R_EXTENSIONS_MALFORMED] = {"csr.extensions.malformed", ENR_SEVERITY_ERROR,
                                "The extensionRequest, or an extension in it, cannot be decoded"},
    [R_EXTENSIONS_UNKNOWN_CRITICAL] = {"csr.extensions.unknown_critical", ENR_SEVERITY_ERROR,
                                       "A critical extension OpenSSL does not know"},
    [R_EXTENSIONS_SAN_EMPTY] = {"csr.extensions.san_empty", ENR_SEVERITY_ERROR,
                                "The subjectAltName extension has no names"},
    [R_EXTENSIONS_SAN_IP_LENGTH] = {"csr.extensions.san_ip_length", ENR_SEVERITY_ERROR,
                                    "An iPAddress subjectAltName is not 4 or 16 bytes"},
};

const enr_lint_rule *enr_lint_rules(size_t *count)
{
    if (count != NULL)
        *count = R_COUNT;
    return RULES;
}

/* ---- severities ------------------------------------------------------- */

const char *enr_severity_name(enr_severity sev)
{
    switch (sev) {
    case ENR_SEVERITY_NOTICE: return "notice";
    case ENR_SEVERITY_WARNING: return "warning";
    case ENR_SEVERITY_ERROR: return "error";
    }
    return "unknown";
}

enr_code enr_severity_parse(const char *name, enr_severity *out, enr_error *err)
{
    static const enr_severity ALL[] = {ENR_SEVERITY_ERROR, ENR_SEVERITY_WARNING,
                                       ENR_SEVERITY_NOTICE};
    for (size_t i = 0; name != NULL && i < sizeof ALL / sizeof ALL[0]; i++) {
        if (strcasecmp(name, enr_severity_name(ALL[i])) == 0) {
            *out = ALL[i];
            return ENR_OK;
        }
    }
    return enr_error_set(err, ENR_E_USAGE, "unknown severity '%s' (use error, warning or notice)",
                         name != NULL ? name : "(null)");
}

/* ---- the report ------------------------------------------------------- */

struct enr_lint_report {
    enr_finding *findings;
    size_t count;
    size_t capacity;
    size_t per_severity[ENR_SEVERITY_ERROR + 1]; /* suppressed findings included */
    size_t suppressed;                           /* counted but not kept (MAX_FINDINGS) */
    int worst;
    bool out_of_memory;
};

void enr_lint_report_free(enr_lint_report *report)
{
    if (report == NULL)
        return;
    for (size_t i = 0; i < report->count; i++)
        free((char *)report->findings[i].message);
    free(report->findings);
    free(report);
}

size_t enr_lint_report_count(const enr_lint_report *report)
{
    return report != NULL ? report->count : 0;
}

const enr_finding *enr_lint_report_get(const enr_lint_report *report, size_t i)
{
    if (report == NULL || i >= report->count)
        return NULL;
    return &report->findings[i];
}

int enr_lint_report_worst(const enr_lint_report *report)
{
    return report != NULL ? report->worst : 0;
}

int enr_lint_report_has(const enr_lint_report *report, const char *id)
{
    for (size_t i = 0; report != NULL && id != NULL && i < report->count; i++)
        if (strcmp(report->findings[i].id, id) == 0)
            return 1;
    return 0;
}

/* Messages end up in JSON, which must be UTF-8; a message cut short by the
 * buffer can end inside a character, so anything doubtful becomes '?'. */
static void make_utf8_safe(char *msg)
{
    if (enr_utf8_chars((const unsigned char *)msg, strlen(msg)) >= 0)
        return;
    for (char *p = msg; *p != '\0'; p++)
        if ((unsigned char)*p >= 0x80)
            *p = '?';
}

static bool append_finding(enr_lint_report *r, rule_index rule, enr_severity sev, char *message)
{
    if (r->count == r->capacity) {
        size_t cap = r->capacity == 0 ? 8 : r->capacity * 2;
        enr_finding *grown = realloc(r->findings, cap * sizeof *grown);
        if (grown == NULL)
            return false;
        r->findings = grown;
        r->capacity = cap;
    }
    r->findings[r->count++] = (enr_finding){RULES[rule].id, sev, message};
    return true;
}

static void emit_va(enr_lint_report *r, rule_index rule, enr_severity sev, const char *fmt,
                    va_list ap) __attribute__((format(printf, 4, 0)));
static void emit_va(enr_lint_report *r, rule_index rule, enr_severity sev, const char *fmt,
                    va_list ap)
{
    r->per_severity[sev]++;
    if ((int)sev > r->worst)
        r->worst = (int)sev;
    if (r->count >= MAX_FINDINGS) {
        r->suppressed++;
        return;
    }
    char buf[MESSAGE_MAX];
    vsnprintf(buf, sizeof buf, fmt, ap);
    make_utf8_safe(buf);
    char *message = strdup(buf);
    if (message == NULL || !append_finding(r, rule, sev, message)) {
        free(message);
        r->out_of_memory = true;
    }
}

static void emit(enr_lint_report *r, rule_index rule, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void emit(enr_lint_report *r, rule_index rule, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    emit_va(r, rule, RULES[rule].severity, fmt, ap);
    va_end(ap);
}

static void emit_with(enr_lint_report *r, rule_index rule, enr_severity sev, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static void emit_with(enr_lint_report *r, rule_index rule, enr_severity sev, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    emit_va(r, rule, sev, fmt, ap);
    va_end(ap);
}

enr_code enr_lint_report_json(const enr_lint_report *report, char **out, enr_error *err)
{
    if (report == NULL || out == NULL)
        return enr_error_set(err, ENR_E_USAGE, "enr_lint_report_json: no report or no output");
    *out = NULL;
    json_t *root = json_object();
    json_t *list = json_array();
    json_t *counts = json_pack("{s:I,s:I,s:I}", "error",
                               (json_int_t)report->per_severity[ENR_SEVERITY_ERROR], "warning",
                               (json_int_t)report->per_severity[ENR_SEVERITY_WARNING], "notice",
                               (json_int_t)report->per_severity[ENR_SEVERITY_NOTICE]);
    bool ok = root != NULL && list != NULL && counts != NULL;
    for (size_t i = 0; ok && i < report->count; i++) {
        const enr_finding *f = &report->findings[i];
        json_t *item = json_pack("{s:s,s:s,s:s}", "id", f->id, "severity",
                                 enr_severity_name(f->severity), "message", f->message);
        ok = item != NULL && json_array_append_new(list, item) == 0;
    }
    json_t *worst = report->worst == 0
                        ? json_null()
                        : json_string(enr_severity_name((enr_severity)report->worst));
    if (ok) {
        /* json_object_set_new takes the reference even when it fails. */
        ok = json_object_set_new(root, "findings", list) == 0;
        ok = json_object_set_new(root, "worst", worst) == 0 && ok;
        ok = json_object_set_new(root, "counts", counts) == 0 && ok;
        list = worst = counts = NULL;
    }
    if (ok && report->suppressed > 0)
        ok = json_object_set_new(root, "suppressed",
                                 json_integer((json_int_t)report->suppressed)) == 0;

    /* Our own buffer, so the caller can free() it whatever allocator jansson uses;
     * it ends in a newline because the CLI prints it as is. */
    const size_t flags = JSON_INDENT(2) | JSON_PRESERVE_ORDER;
    size_t n = ok ? json_dumpb(root, NULL, 0, flags) : 0;
    char *text = n > 0 ? malloc(n + 2) : NULL;
    if (text != NULL && json_dumpb(root, text, n, flags) == n) {
        text[n] = '\n';
        text[n + 1] = '\0';
        *out = text;
        text = NULL;
    }
    free(text);
    json_decref(list);
    json_decref(worst);
    json_decref(counts);
    json_decref(root);
    if (*out == NULL)
        return enr_error_set(err, ENR_E_NOMEM, "cannot build the lint report JSON");
    return ENR_OK;
}

/* ---- small helpers ---------------------------------------------------- */

static size_t utf8_sequence_length(unsigned char lead)
{
    if ((lead & 0xE0) == 0xC0)
        return 2;
    if ((lead & 0xF0) == 0xE0)
        return 3;
    return 4;
}

/* Puts bytes from the request into a message: quoted, cut short, with
 * control characters (and anything that is not UTF-8) as \xNN, so that a
 * hostile value cannot garble a terminal or the JSON. */
static const char *quote(char *out, size_t cap, const unsigned char *s, size_t len)
{
    bool utf8 = enr_utf8_chars(s, len) >= 0;
    size_t limit = cap - 5; /* room for "...", the closing quote and NUL */
    size_t w = 0;
    out[w++] = '\'';
    for (size_t i = 0; i < len;) {
        char piece[8];
        size_t n = 1, step = 1;
        unsigned char c = s[i];
        if (c >= 0x20 && c < 0x7f && c != '\\') {
            piece[0] = (char)c;
        } else if (c >= 0x80 && utf8) {
            step = n = utf8_sequence_length(c);
            memcpy(piece, s + i, n);
        } else {
            n = (size_t)snprintf(piece, sizeof piece, "\\x%02x", c);
        }
        if (w + n > limit) {
            memcpy(out + w, "...", 3);
            w += 3;
            break;
        }
        memcpy(out + w, piece, n);
        w += n;
        i += step;
    }
    out[w++] = '\'';
    out[w] = '\0';
    return out;
}

static const char *quote_str(char *out, size_t cap, const char *s)
{
    return quote(out, cap, (const unsigned char *)s, strlen(s));
}

static const char *oid_text(char *out, size_t cap, const ASN1_OBJECT *obj)
{
    if (obj == NULL || OBJ_obj2txt(out, (int)cap, obj, 0) <= 0)
        snprintf(out, cap, "(unreadable OID)");
    return out;
}

/* The short name people write in configs ("subjectAltName"), else the OID. */
static const char *object_name(char *out, size_t cap, const ASN1_OBJECT *obj)
{
    int nid = OBJ_obj2nid(obj);
    if (nid == NID_ext_req)
        snprintf(out, cap, "extensionRequest");
    else if (nid != NID_undef && OBJ_nid2sn(nid) != NULL)
        snprintf(out, cap, "%s", OBJ_nid2sn(nid));
    else
        OBJ_obj2txt(out, (int)cap, obj, 1);
    return out;
}

/* OpenSSL's own words for the last failure, root cause first, then the
 * field it was decoding. Empties the queue so nothing stale leaks later. */
static const char *openssl_reasons(char *out, size_t cap)
{
    size_t used = 0;
    int shown = 0;
    unsigned long e;
    const char *data = NULL;
    int flags = 0;
    out[0] = '\0';
    while ((e = ERR_get_error_all(NULL, NULL, NULL, &data, &flags)) != 0) {
        if (shown == 3 || used >= cap)
            continue;
        const char *reason = ERR_reason_error_string(e);
        bool has_data = (flags & ERR_TXT_STRING) && data != NULL && data[0] != '\0';
        int n = snprintf(out + used, cap - used, "%s%s%s%s%s", shown > 0 ? "; " : "",
                         reason != NULL ? reason : "unknown reason", has_data ? " (" : "",
                         has_data ? data : "", has_data ? ")" : "");
        used = n < 0 ? cap : used + (size_t)n;
        shown++;
    }
    if (shown == 0)
        snprintf(out, cap, "no reason given");
    return out;
}

static size_t first_difference(const unsigned char *a, size_t a_len, const unsigned char *b,
                               size_t b_len)
{
    size_t n = a_len < b_len ? a_len : b_len;
    size_t i = 0;
    while (i < n && a[i] == b[i])
        i++;
    return i;
}

typedef struct oid_at {
    const ASN1_OBJECT *obj;
    int index;
} oid_at;

static int compare_oid_at(const void *a, const void *b)
{
    const oid_at *x = a, *y = b;
    int c = OBJ_cmp(x->obj, y->obj);
    if (c != 0)
        return c;
    return (x->index > y->index) - (x->index < y->index);
}

/* For each of n OIDs, the index of the first earlier one that is equal, or
 * -1. Sorting keeps this O(n log n): a request can carry very many. */
static int *earlier_duplicates(const ASN1_OBJECT *const *objs, int n)
{
    size_t count = (size_t)n;
    int *earlier = malloc(count * sizeof *earlier);
    oid_at *sorted = malloc(count * sizeof *sorted);
    if (earlier == NULL || sorted == NULL) {
        free(earlier);
        free(sorted);
        return NULL;
    }
    for (int i = 0; i < n; i++) {
        earlier[i] = -1;
        sorted[i] = (oid_at){objs[i], i};
    }
    qsort(sorted, count, sizeof *sorted, compare_oid_at);
    for (size_t i = 1, first = 0; i < count; i++) {
        if (OBJ_cmp(sorted[i].obj, sorted[first].obj) == 0)
            earlier[sorted[i].index] = sorted[first].index;
        else
            first = i;
    }
    free(sorted);
    return earlier;
}

static bool is_ldh(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-';
}

static bool label_problem(const unsigned char *s, size_t start, size_t end, size_t label,
                          char *why, size_t cap)
{
    size_t len = end - start;
    if (len == 0)
        snprintf(why, cap, "label %zu is empty (a dot at the start or end, or two in a row)",
                 label);
    else if (len > 63)
        snprintf(why, cap, "label %zu is %zu characters long (at most 63)", label, len);
    else if (s[start] == '-' || s[end - 1] == '-')
        snprintf(why, cap, "label %zu starts or ends with a hyphen", label);
    else
        return false;
    return true;
}

/* RFC 1034/1123 preferred syntax. A leading "*." is skipped: wildcards are
 * the wildcard rule's business. Describes the first problem in `why`. */
static bool dns_name_problem(const unsigned char *s, size_t len, char *why, size_t cap)
{
    if (len == 0) {
        snprintf(why, cap, "it is empty");
        return true;
    }
    if (len > 253) {
        snprintf(why, cap, "it is %zu characters long (at most 253)", len);
        return true;
    }
    size_t start = len > 2 && s[0] == '*' && s[1] == '.' ? 2 : 0;
    size_t label = start > 0 ? 2 : 1;
    for (size_t i = start; i <= len; i++) {
        if (i == len || s[i] == '.') {
            if (label_problem(s, start, i, label, why, cap))
                return true;
            start = i + 1;
            label++;
        } else if (!is_ldh(s[i])) {
            char q[16];
            snprintf(why, cap, "character %s at position %zu is not a letter, digit or hyphen",
                     quote(q, sizeof q, s + i, 1), i + 1);
            return true;
        }
    }
    return false;
}

/* ---- encoding --------------------------------------------------------- */

static const char *encoding_label(enr_encoding encoding)
{
    switch (encoding) {
    case ENR_ENCODING_PEM: return "PEM";
    case ENR_ENCODING_BASE64: return "base64";
    case ENR_ENCODING_DER: return "DER";
    }
    return "input";
}

static void report_undecodable(enr_lint_report *r, const enr_error *why, size_t bad_offset)
{
    /* enr_decode's message names the offset, except for input with no data at all. */
    if (strstr(why->message, "byte ") != NULL)
        emit(r, R_ENCODING_MALFORMED, "cannot decode the request: %s", why->message);
    else
        emit(r, R_ENCODING_MALFORMED, "cannot decode the request at byte %zu: %s", bad_offset,
             why->message);
}

static void check_pem_label(enr_lint_report *r, const enr_decoded *dec)
{
    if (dec->encoding != ENR_ENCODING_PEM || strcmp(dec->pem_label, "CERTIFICATE REQUEST") == 0 ||
        strcmp(dec->pem_label, "NEW CERTIFICATE REQUEST") == 0)
        return;
    char q[QUOTE_MAX];
    emit(r, R_ENCODING_PEM_LABEL,
         "the PEM block at byte %zu is labelled %s; a request is labelled CERTIFICATE REQUEST "
         "(RFC 7468) or NEW CERTIFICATE REQUEST",
         dec->input_offset, quote_str(q, sizeof q, dec->pem_label));
}

static void check_trailing_data(enr_lint_report *r, const enr_decoded *dec)
{
    if (dec->trailing_len == 0)
        return;
    if (dec->encoding == ENR_ENCODING_DER)
        emit(r, R_ENCODING_TRAILING_DATA,
             "%zu byte(s) follow the request, from byte %zu of the input", dec->trailing_len,
             dec->trailing_offset);
    else if (dec->trailing_in_der)
        emit(r, R_ENCODING_TRAILING_DATA,
             "%zu byte(s) follow the request inside the %s-decoded DER, from byte %zu of the "
             "DER",
             dec->trailing_len, encoding_label(dec->encoding), dec->trailing_offset);
    else
        emit(r, R_ENCODING_TRAILING_DATA,
             "%zu byte(s) of text follow the END line, from byte %zu of the input",
             dec->trailing_len, dec->trailing_offset);
}

static void report_not_a_request(enr_lint_report *r, const enr_decoded *dec)
{
    char why[400];
    emit(r, R_ENCODING_MALFORMED,
         "the %s data at byte %zu is well-formed DER but not a PKCS#10 CertificationRequest "
         "(openssl: %s)",
         encoding_label(dec->encoding), dec->input_offset, openssl_reasons(why, sizeof why));
}

/* Makes OpenSSL encode the request's subject afresh instead of copying out
 * the bytes it was decoded from: taking the last entry out and putting it
 * back marks the name modified. (A new name given to X509_REQ_set_subject_name
 * would do as well, but that copies it by encoding and decoding it: a third
 * of this check's cost.) An empty name is replaced by a new one. */
static bool encode_subject_afresh(X509_REQ *req)
{
    X509_NAME *name = X509_REQ_get_subject_name(req);
    int n = X509_NAME_entry_count(name);
    if (n == 0) {
        X509_NAME *empty = X509_NAME_new();
        bool ok = empty != NULL && X509_REQ_set_subject_name(req, empty);
        X509_NAME_free(empty);
        return ok;
    }
    int set = X509_NAME_ENTRY_set(X509_NAME_get_entry(name, n - 1));
    bool shares_set = n > 1 && X509_NAME_ENTRY_set(X509_NAME_get_entry(name, n - 2)) == set;
    X509_NAME_ENTRY *last = X509_NAME_delete_entry(name, n - 1);
    bool ok = last != NULL && X509_NAME_add_entry(name, last, -1, shares_set ? -1 : 0); /* adds a copy */
    X509_NAME_ENTRY_free(last);
    return ok;
}

/* DER re-encoding of the whole request from its decoded fields, made in `req`
 * itself: the cached bytes of its signed part are replaced by the new
 * encoding (the same bytes when the request is DER). Returns the length, or
 * -1. OpenSSL's error queue is left as it was. */
static int reencode(X509_REQ *req, unsigned char **out)
{
    ERR_set_mark();
    int n = -1;
    if (encode_subject_afresh(req) && i2d_re_X509_REQ_tbs(req, NULL) > 0)
        n = i2d_X509_REQ(req, out);
    ERR_pop_to_mark();
    return n;
}

/* A parsed request keeps its signature's verdict, so the verdict is reached
 * first and the request itself is re-encoded: no second decode (a third of
 * lint's cost besides the signature). Raw input is re-encoded from a copy,
 * since its signature is checked afterwards over the bytes as sent. */
static int canonical_encoding(X509_REQ *req, const enr_csr *csr, const unsigned char *der,
                              size_t der_len, unsigned char **out)
{
    if (csr != NULL) {
        enr_error ignored;
        (void)enr_csr_verify(csr, &ignored);
        return reencode(req, out);
    }
    X509_REQ *copy = enr_csr_d2i_fast(der, der_len);
    int n = copy != NULL ? reencode(copy, out) : -1;
    X509_REQ_free(copy);
    ERR_clear_error();
    return n;
}

static void check_canonical_der(enr_lint_report *r, X509_REQ *req, const enr_csr *csr,
                                const unsigned char *der, size_t der_len, enr_encoding encoding)
{
    unsigned char *again = NULL;
    int n = canonical_encoding(req, csr, der, der_len, &again);
    if (n < 0)
        return; /* nothing to compare with; the other checks still run */
    if ((size_t)n != der_len || memcmp(again, der, der_len) != 0)
        emit(r, R_ENCODING_NOT_DER,
             "the request is not DER: re-encoding it differs from byte %zu of the %s "
             "(BER, a non-minimal length, an unsorted SET or similar)",
             first_difference(der, der_len, again, (size_t)n),
             encoding == ENR_ENCODING_DER ? "input" : "decoded DER");
    OPENSSL_free(again);
}

/* ---- version and signature -------------------------------------------- */

static void check_version(enr_lint_report *r, const X509_REQ *req)
{
    long version = X509_REQ_get_version(req);
    if (version != X509_REQ_VERSION_1)
        emit(r, R_VERSION_INVALID,
             "the version field is %ld; PKCS#10 defines only 0 (v1)", version);
}

static bool is_weak_digest(int md_nid)
{
    return md_nid == NID_md2 || md_nid == NID_md4 || md_nid == NID_md5 || md_nid == NID_sha1 ||
           md_nid == NID_md5_sha1;
}

/* RSASSA-PSS names its hash in the parameters; absent means SHA-1 (RFC 4055). */
static int pss_digest(int param_type, const void *param)
{
    if (param_type != V_ASN1_SEQUENCE)
        return NID_sha1;
    RSA_PSS_PARAMS *pss = ASN1_item_unpack(param, ASN1_ITEM_rptr(RSA_PSS_PARAMS));
    if (pss == NULL) {
        ERR_clear_error();
        return NID_undef;
    }
    int md = pss->hashAlgorithm == NULL ? NID_sha1 : OBJ_obj2nid(pss->hashAlgorithm->algorithm);
    RSA_PSS_PARAMS_free(pss);
    return md;
}

/* True when OpenSSL knows the algorithm, so verifying is meaningful. */
static bool check_signature_algorithm(enr_lint_report *r, const X509_REQ *req)
{
    const ASN1_BIT_STRING *sig = NULL;
    const X509_ALGOR *alg = NULL;
    X509_REQ_get0_signature(req, &sig, &alg);
    const ASN1_OBJECT *oid = NULL;
    int param_type = V_ASN1_UNDEF;
    const void *param = NULL;
    X509_ALGOR_get0(&oid, &param_type, &param, alg);
    char name[OID_TEXT_MAX];
    oid_text(name, sizeof name, oid);
    int nid = OBJ_obj2nid(oid), md_nid = NID_undef, pk_nid = NID_undef;
    if (nid == NID_undef || !OBJ_find_sigid_algs(nid, &md_nid, &pk_nid)) {
        emit(r, R_SIGNATURE_UNKNOWN_ALGORITHM,
             "the signature algorithm %s is not one OpenSSL knows; sign with ecdsa-with-SHA256, "
             "sha256WithRSAEncryption or Ed25519",
             name);
        return false;
    }
    if (nid == NID_rsassaPss)
        md_nid = pss_digest(param_type, param);
    if (is_weak_digest(md_nid))
        emit(r, R_SIGNATURE_WEAK_HASH,
             "the request is signed with %s, which uses %s: collisions are practical, so sign "
             "with SHA-256 or better",
             name, OBJ_nid2sn(md_nid));
    return true;
}

static void check_signature(enr_lint_report *r, X509_REQ *req, EVP_PKEY *key, const enr_csr *csr)
{
    enr_error ignored;
    if (csr != NULL ? enr_csr_verify(csr, &ignored) == ENR_OK : X509_REQ_verify(req, key) == 1)
        return;
    char why[400];
    emit(r, R_SIGNATURE_INVALID,
         "the self-signature does not verify with the request's own public key, so it proves "
         "no possession of the private key (openssl: %s)",
         openssl_reasons(why, sizeof why));
}

/* ---- the public key --------------------------------------------------- */

static void report_undecodable_key(enr_lint_report *r, X509_REQ *req)
{
    ASN1_OBJECT *alg = NULL;
    X509_PUBKEY_get0_param(&alg, NULL, NULL, NULL, X509_REQ_get_X509_PUBKEY(req));
    char name[OID_TEXT_MAX], why[400];
    oid_text(name, sizeof name, alg);
    openssl_reasons(why, sizeof why);
    int nid = OBJ_obj2nid(alg);
    if (nid == NID_rsaEncryption || nid == NID_X9_62_id_ecPublicKey || nid == NID_ED25519)
        emit(r, R_KEY_MALFORMED, "the %s public key cannot be decoded (openssl: %s)", name, why);
    else
        emit(r, R_KEY_UNSUPPORTED_ALGORITHM,
             "the public key algorithm %s is not supported; use EC P-256/P-384, RSA or Ed25519",
             name);
}

static void check_rsa_key(enr_lint_report *r, const enr_pubkey_info *info)
{
    if (info->bits < 2048)
        emit(r, R_KEY_RSA_TOO_SMALL, "the RSA key is %d bits; at least 2048 are needed",
             info->bits);
    if (info->rsa_exponent == 0)
        emit(r, R_KEY_RSA_EXPONENT,
             "the RSA public exponent is larger than 64 bits; use 65537");
    else if (info->rsa_exponent != 65537)
        emit(r, R_KEY_RSA_EXPONENT, "the RSA public exponent is %lu; use 65537",
             info->rsa_exponent);
}

/* Returns the key, or NULL when the request carries none OpenSSL can use. */
static EVP_PKEY *check_key(enr_lint_report *r, X509_REQ *req, EVP_PKEY *parsed_key)
{
    EVP_PKEY *key = parsed_key != NULL ? parsed_key : X509_REQ_get0_pubkey(req);
    if (key == NULL) {
        report_undecodable_key(r, req);
        return NULL;
    }
    enr_pubkey_info info;
    enr_error err;
    /* The type is all the rules need; a fingerprint would cost an encoding pass. */
    if (enr_pubkey_classify(key, &info, &err) != ENR_OK) {
        emit(r, R_KEY_MALFORMED, "the public key cannot be examined: %s", err.message);
        return key;
    }
    if (strcmp(info.algorithm, "RSA") == 0)
        check_rsa_key(r, &info);
    else if (strcmp(info.algorithm, "EC") == 0) {
        if (strcmp(info.curve, "P-256") != 0 && strcmp(info.curve, "P-384") != 0)
            emit(r, R_KEY_EC_CURVE, "the EC key is on curve %s; use P-256 or P-384",
                 info.curve[0] != '\0' ? info.curve : "(unnamed)");
    } else if (strcmp(info.algorithm, "Ed25519") != 0)
        emit(r, R_KEY_UNSUPPORTED_ALGORITHM,
             "the public key algorithm %s is not supported; use EC P-256/P-384, RSA or Ed25519",
             info.algorithm);
    return key;
}

/* ---- the subject ------------------------------------------------------ */

/* Where a subject value sits, for messages: "subject field 3 (CN)". */
typedef struct field_ref {
    int position; /* 1-based, in encoding order */
    char name[OID_TEXT_MAX];
} field_ref;

static field_ref field_ref_for(const X509_NAME_ENTRY *entry, int index)
{
    field_ref ref = {index + 1, ""};
    const ASN1_OBJECT *obj = X509_NAME_ENTRY_get_object(entry);
    int nid = OBJ_obj2nid(obj);
    const enr_dn_rule *rule = enr_dn_rule_for_nid(nid);
    if (rule != NULL)
        snprintf(ref.name, sizeof ref.name, "%s", rule->short_name);
    else
        OBJ_obj2txt(ref.name, sizeof ref.name, obj, nid == NID_undef);
    return ref;
}

static const char *string_type_name(int type)
{
    const char *name = enr_string_type_name(type);
    return strcmp(name, "other") != 0 ? name : ASN1_tag2str(type);
}

/* Which character of a PrintableString breaks the rules, or len. */
static size_t first_non_printable(const unsigned char *s, size_t len)
{
    size_t i = 0;
    while (i < len && enr_printable_string_valid(s + i, 1))
        i++;
    return i;
}

static size_t first_non_ascii(const unsigned char *s, size_t len)
{
    size_t i = 0;
    while (i < len && s[i] < 0x80)
        i++;
    return i;
}

/* True when the bytes are valid for the declared type. */
static bool check_string_bytes(enr_lint_report *r, const field_ref *f, const ASN1_STRING *value)
{
    const unsigned char *s = ASN1_STRING_get0_data(value);
    size_t len = (size_t)ASN1_STRING_length(value);
    size_t bad;
    char q[16];
    switch (ASN1_STRING_type(value)) {
    case V_ASN1_PRINTABLESTRING:
        if ((bad = first_non_printable(s, len)) == len)
            return true;
        emit(r, R_SUBJECT_STRING_INVALID,
             "subject field %d (%s) is a PrintableString holding %s at byte %zu; PrintableString "
             "allows only A-Z a-z 0-9 space and '()+,-./:=? (use UTF8String)",
             f->position, f->name, quote(q, sizeof q, s + bad, 1), bad);
        return false;
    case V_ASN1_IA5STRING:
        if ((bad = first_non_ascii(s, len)) == len)
            return true;
        emit(r, R_SUBJECT_STRING_INVALID,
             "subject field %d (%s) is an IA5String holding byte 0x%02x at byte %zu; IA5String "
             "is 7-bit ASCII",
             f->position, f->name, s[bad], bad);
        return false;
    case V_ASN1_UTF8STRING:
        if (enr_utf8_chars(s, len) >= 0)
            return true;
        emit(r, R_SUBJECT_STRING_INVALID,
             "subject field %d (%s) is a UTF8String that is not valid UTF-8 or holds a NUL",
             f->position, f->name);
        return false;
    default:
        return true;
    }
}

static bool is_legacy_string_type(int type)
{
    return type == V_ASN1_T61STRING || type == V_ASN1_BMPSTRING || type == V_ASN1_UNIVERSALSTRING;
}

static void check_string_type(enr_lint_report *r, const field_ref *f, const enr_dn_rule *rule,
                              int type)
{
    int wanted = rule != NULL ? rule->string_type : V_ASN1_UTF8STRING;
    bool fine;
    if (is_legacy_string_type(type))
        fine = false;
    else if (rule == NULL)
        fine = true;
    else if (wanted == V_ASN1_UTF8STRING) /* DirectoryString: PrintableString is also fine */
        fine = type == V_ASN1_UTF8STRING || type == V_ASN1_PRINTABLESTRING;
    else
        fine = type == wanted;
    if (!fine)
        emit(r, R_SUBJECT_STRING_TYPE,
             "subject field %d (%s) has type %s; RFC 5280 wants %s here", f->position, f->name,
             string_type_name(type), enr_string_type_name(wanted));
}

static const char *country_hint(const unsigned char *s, size_t len)
{
    if (len == 2 && strncasecmp((const char *)s, "UK", 2) == 0)
        return "the code for the United Kingdom is GB";
    if (len == 2 && strncasecmp((const char *)s, "EN", 2) == 0)
        return "EN is a language (English), not a country; use e.g. GB or US";
    if (len == 3 && strncasecmp((const char *)s, "USA", 3) == 0)
        return "that is the alpha-3 code; the alpha-2 code is US";
    if (len == 2) {
        char upper[3] = {(char)toupper(s[0]), (char)toupper(s[1]), '\0'};
        if (enr_country_code_valid(upper))
            return "country codes are upper case";
    }
    if (len == 3 && isalpha(s[0]) && isalpha(s[1]) && isalpha(s[2]))
        return "that looks like an alpha-3 code; use the two-letter alpha-2 code";
    return "use two capital letters such as US, DE or GB";
}

static void check_country(enr_lint_report *r, const field_ref *f, const unsigned char *s,
                          size_t len)
{
    char code[3] = "";
    if (len == 2 && memchr(s, '\0', len) == NULL) {
        memcpy(code, s, 2);
        if (enr_country_code_valid(code))
            return;
    }
    char q[QUOTE_MAX];
    emit(r, R_SUBJECT_COUNTRY_INVALID,
         "subject field %d (C) is %s, not an ISO 3166-1 alpha-2 country code; %s", f->position,
         quote(q, sizeof q, s, len), country_hint(s, len));
}

static void check_common_name(enr_lint_report *r, const field_ref *f, const unsigned char *s,
                              size_t len)
{
    char q[QUOTE_MAX], why[160];
    if (memchr(s, '*', len) != NULL)
        emit(r, R_NAME_WILDCARD,
             "subject field %d (CN) %s is a wildcard; a device certificate names one device",
             f->position, quote(q, sizeof q, s, len));
    /* A CN with a dot reads as a host name, and some clients still match it as one. */
    if (memchr(s, '.', len) != NULL && dns_name_problem(s, len, why, sizeof why))
        emit_with(r, R_NAME_DNS_SYNTAX, ENR_SEVERITY_WARNING,
                  "subject field %d (CN) %s looks like a host name but is not a valid one: %s",
                  f->position, quote(q, sizeof q, s, len), why);
}

static void check_value_text(enr_lint_report *r, const field_ref *f, int nid,
                             const enr_dn_rule *rule, const unsigned char *s, size_t len)
{
    if (len == 0) {
        emit(r, R_SUBJECT_VALUE_EMPTY,
             "subject field %d (%s) is empty; give it a value or leave it out", f->position,
             f->name);
        return;
    }
    long chars = enr_utf8_chars(s, len);
    size_t count = chars >= 0 ? (size_t)chars : len;
    if (rule != NULL && nid != NID_countryName && count > rule->max_chars)
        emit(r, R_SUBJECT_VALUE_TOO_LONG,
             "subject field %d (%s) is %zu characters long; RFC 5280 allows at most %zu",
             f->position, f->name, count, rule->max_chars);
    if (nid == NID_countryName)
        check_country(r, f, s, len);
    else if (nid == NID_commonName)
        check_common_name(r, f, s, len);
    else if (nid == NID_pkcs9_emailAddress)
        emit(r, R_SUBJECT_EMAIL_IN_DN,
             "subject field %d (emailAddress) is deprecated in a subject (RFC 5280 4.1.2.6); "
             "request an rfc822Name subjectAltName instead",
             f->position);
}

static void check_subject_entry(enr_lint_report *r, const X509_NAME_ENTRY *entry, int index)
{
    field_ref f = field_ref_for(entry, index);
    int nid = OBJ_obj2nid(X509_NAME_ENTRY_get_object(entry));
    const enr_dn_rule *rule = enr_dn_rule_for_nid(nid);
    const ASN1_STRING *value = X509_NAME_ENTRY_get_data(entry);
    bool bytes_valid = check_string_bytes(r, &f, value);
    check_string_type(r, &f, rule, ASN1_STRING_type(value));
    unsigned char *text = NULL;
    int n = ASN1_STRING_to_UTF8(&text, value);
    if (n < 0) {
        ERR_clear_error();
        if (bytes_valid)
            emit(r, R_SUBJECT_STRING_INVALID,
                 "subject field %d (%s) cannot be read as text (type %s)", f.position, f.name,
                 string_type_name(ASN1_STRING_type(value)));
        return;
    }
    check_value_text(r, &f, nid, rule, text, (size_t)n);
    OPENSSL_free(text);
}

static bool common_name_is(const X509_NAME_ENTRY *entry, const char *expected)
{
    unsigned char *text = NULL;
    int n = ASN1_STRING_to_UTF8(&text, X509_NAME_ENTRY_get_data(entry));
    bool same = n >= 0 && (size_t)n == strlen(expected) && memcmp(text, expected, (size_t)n) == 0;
    OPENSSL_free(text);
    ERR_clear_error();
    return same;
}

/* The DPS rule: the CN is the registration id, exactly. */
static void check_expected_cn(enr_lint_report *r, const X509_NAME *name, const char *expected)
{
    char q_expected[QUOTE_MAX], q_got[QUOTE_MAX];
    quote_str(q_expected, sizeof q_expected, expected);
    int seen = 0;
    for (int i = 0; i < X509_NAME_entry_count(name); i++) {
        const X509_NAME_ENTRY *entry = X509_NAME_get_entry(name, i);
        if (OBJ_obj2nid(X509_NAME_ENTRY_get_object(entry)) != NID_commonName)
            continue;
        seen++;
        if (common_name_is(entry, expected))
            continue;
        const ASN1_STRING *value = X509_NAME_ENTRY_get_data(entry);
        emit(r, R_SUBJECT_CN_MISMATCH,
             "subject field %d (CN) is %s but the registration id is %s; they must be equal",
             i + 1,
             quote(q_got, sizeof q_got, ASN1_STRING_get0_data(value),
                   (size_t)ASN1_STRING_length(value)),
             q_expected);
    }
    if (seen == 0)
        emit(r, R_SUBJECT_CN_MISMATCH,
             "the subject has no CN; it must be CN=%s (the registration id)", q_expected);
}

static void check_subject(enr_lint_report *r, const X509_NAME *name, const enr_lint_options *opts)
{
    int n = X509_NAME_entry_count(name);
    if (n == 0)
        emit(r, R_SUBJECT_EMPTY,
             "the subject is empty; a device request needs at least CN=<device id>");
    int common_names = 0;
    for (int i = 0; i < n; i++) {
        const X509_NAME_ENTRY *entry = X509_NAME_get_entry(name, i);
        if (OBJ_obj2nid(X509_NAME_ENTRY_get_object(entry)) == NID_commonName)
            common_names++;
        check_subject_entry(r, entry, i);
    }
    if (n > 0 && common_names == 0)
        emit(r, R_SUBJECT_CN_MISSING,
             "the subject has no CN; devices are identified by CN (e.g. CN=<registration id>)");
    if (common_names > 1)
        emit(r, R_SUBJECT_CN_MULTIPLE,
             "the subject has %d CNs; software that reads one CN may pick either, so use one",
             common_names);
    if (opts->expect_cn != NULL)
        check_expected_cn(r, name, opts->expect_cn);
}

/* ---- attributes ------------------------------------------------------- */

static bool is_known_attribute(int nid)
{
    return nid == NID_ext_req || nid == NID_pkcs9_challengePassword ||
           nid == NID_pkcs9_unstructuredName;
}

static void check_attribute(enr_lint_report *r, const X509_ATTRIBUTE *attr, int index,
                            int earlier)
{
    const ASN1_OBJECT *obj = X509_ATTRIBUTE_get0_object((X509_ATTRIBUTE *)attr);
    int nid = OBJ_obj2nid(obj);
    char name[OID_TEXT_MAX];
    object_name(name, sizeof name, obj);
    if (earlier >= 0) {
        emit(r, R_ATTRIBUTES_DUPLICATE,
             "attribute %d (%s) repeats attribute %d; each attribute type may appear once, and "
             "a CA may read either",
             index + 1, name, earlier + 1);
        return;
    }
    if (!is_known_attribute(nid)) {
        emit(r, R_ATTRIBUTES_UNKNOWN,
             "attribute %d (%s) is not extensionRequest, challengePassword or unstructuredName; "
             "CAs will likely ignore it",
             index + 1, name);
        return;
    }
    int values = X509_ATTRIBUTE_count(attr);
    if (values != 1)
        emit(r, R_ATTRIBUTES_VALUE_COUNT,
             "attribute %d (%s) has %d values; PKCS#9 allows exactly one", index + 1, name,
             values);
}

static void check_attributes(enr_lint_report *r, const X509_REQ *req)
{
    int n = X509_REQ_get_attr_count(req);
    if (n <= 0)
        return;
    const ASN1_OBJECT **types = malloc((size_t)n * sizeof *types);
    if (types == NULL) {
        r->out_of_memory = true;
        return;
    }
    for (int i = 0; i < n; i++)
        types[i] = X509_ATTRIBUTE_get0_object(X509_REQ_get_attr(req, i));
    int *earlier = earlier_duplicates(types, n);
    free(types);
    if (earlier == NULL) {
        r->out_of_memory = true;
        return;
    }
    for (int i = 0; i < n; i++)
        check_attribute(r, X509_REQ_get_attr(req, i), i, earlier[i]);
    free(earlier);
}

/* ---- extensions ------------------------------------------------------- */

/* DER of the extension list as it should be. Each extension is rebuilt,
 * because a decoded one keeps an explicit critical FALSE (or a TRUE that is
 * not 0xFF) and would be written back unchanged. Returns the length, or -1. */
static int canonical_extensions(const STACK_OF(X509_EXTENSION) *exts, unsigned char **out)
{
    STACK_OF(X509_EXTENSION) *fresh = sk_X509_EXTENSION_new_null();
    bool ok = fresh != NULL;
    for (int i = 0; ok && i < sk_X509_EXTENSION_num(exts); i++) {
        const X509_EXTENSION *ext = sk_X509_EXTENSION_value(exts, i);
        X509_EXTENSION *copy = X509_EXTENSION_create_by_OBJ(
            NULL, X509_EXTENSION_get_object((X509_EXTENSION *)ext),
            X509_EXTENSION_get_critical(ext), X509_EXTENSION_get_data((X509_EXTENSION *)ext));
        ok = copy != NULL && sk_X509_EXTENSION_push(fresh, copy) > 0;
        if (!ok)
            X509_EXTENSION_free(copy);
    }
    int n = ok ? i2d_X509_EXTENSIONS(fresh, out) : -1;
    sk_X509_EXTENSION_pop_free(fresh, X509_EXTENSION_free);
    ERR_clear_error();
    return n;
}

/* The extension list is kept as raw bytes inside the attribute, so the
 * whole-request re-encoding never looks inside it; compare it on its own. */
static void check_extensions_der(enr_lint_report *r, const X509_ATTRIBUTE *attr,
                                 const STACK_OF(X509_EXTENSION) *exts)
{
    const ASN1_TYPE *value = X509_ATTRIBUTE_get0_type((X509_ATTRIBUTE *)attr, 0);
    if (value == NULL || value->type != V_ASN1_SEQUENCE)
        return;
    const ASN1_STRING *raw = value->value.sequence;
    unsigned char *again = NULL;
    int n = canonical_extensions(exts, &again);
    if (n < 0)
        return;
    size_t raw_len = (size_t)ASN1_STRING_length(raw);
    const unsigned char *raw_bytes = ASN1_STRING_get0_data(raw);
    if ((size_t)n != raw_len || memcmp(again, raw_bytes, raw_len) != 0)
        emit(r, R_ENCODING_NOT_DER,
             "the extensionRequest value is not DER: re-encoding it differs from its byte %zu "
             "(an explicit critical FALSE, a non-minimal length or similar)",
             first_difference(raw_bytes, raw_len, again, (size_t)n));
    OPENSSL_free(again);
}

static void check_dns_san(enr_lint_report *r, int ext_pos, int entry_pos, const ASN1_STRING *dns)
{
    const unsigned char *s = ASN1_STRING_get0_data(dns);
    size_t len = (size_t)ASN1_STRING_length(dns);
    char q[QUOTE_MAX], why[160];
    if (memchr(s, '*', len) != NULL)
        emit(r, R_NAME_WILDCARD,
             "extension %d (subjectAltName) entry %d: DNS name %s is a wildcard; a device "
             "certificate names one device",
             ext_pos, entry_pos, quote(q, sizeof q, s, len));
    if (dns_name_problem(s, len, why, sizeof why))
        emit(r, R_NAME_DNS_SYNTAX,
             "extension %d (subjectAltName) entry %d: DNS name %s is not a valid host name: %s",
             ext_pos, entry_pos, quote(q, sizeof q, s, len), why);
}

static void check_subject_alt_name(enr_lint_report *r, X509_EXTENSION *ext, int ext_pos)
{
    GENERAL_NAMES *names = X509V3_EXT_d2i(ext);
    if (names == NULL) {
        char why[400];
        emit(r, R_EXTENSIONS_MALFORMED,
             "extension %d (subjectAltName) cannot be decoded (openssl: %s)", ext_pos,
             openssl_reasons(why, sizeof why));
        return;
    }
    int n = sk_GENERAL_NAME_num(names);
    if (n == 0)
        emit(r, R_EXTENSIONS_SAN_EMPTY,
             "extension %d (subjectAltName) holds no names; RFC 5280 requires at least one",
             ext_pos);
    for (int i = 0; i < n; i++) {
        int type = 0;
        const void *value = GENERAL_NAME_get0_value(sk_GENERAL_NAME_value(names, i), &type);
        if (type == GEN_DNS)
            check_dns_san(r, ext_pos, i + 1, value);
        else if (type == GEN_IPADD && ASN1_STRING_length(value) != 4 &&
                 ASN1_STRING_length(value) != 16)
            emit(r, R_EXTENSIONS_SAN_IP_LENGTH,
                 "extension %d (subjectAltName) entry %d: the IP address is %d bytes; it must "
                 "be 4 (IPv4) or 16 (IPv6)",
                 ext_pos, i + 1, ASN1_STRING_length(value));
    }
    GENERAL_NAMES_free(names);
}

/* Extensions OpenSSL has a decoder for must decode. */
static void check_extension_decodes(enr_lint_report *r, X509_EXTENSION *ext, int ext_pos,
                                    const char *name)
{
    const X509V3_EXT_METHOD *method = X509V3_EXT_get(ext);
    if (method == NULL)
        return;
    void *decoded = X509V3_EXT_d2i(ext);
    if (decoded == NULL) {
        char why[400];
        emit(r, R_EXTENSIONS_MALFORMED, "extension %d (%s) cannot be decoded (openssl: %s)",
             ext_pos, name, openssl_reasons(why, sizeof why));
        return;
    }
    if (method->it != NULL)
        ASN1_item_free(decoded, ASN1_ITEM_ptr(method->it));
    else if (method->ext_free != NULL)
        method->ext_free(decoded);
}

static void check_extension(enr_lint_report *r, X509_EXTENSION *ext, int index, int earlier)
{
    const ASN1_OBJECT *obj = X509_EXTENSION_get_object(ext);
    int nid = OBJ_obj2nid(obj);
    char name[OID_TEXT_MAX];
    object_name(name, sizeof name, obj);
    if (earlier >= 0)
        emit(r, R_ATTRIBUTES_DUPLICATE,
             "extension %d (%s) in the extensionRequest repeats extension %d; each extension "
             "may appear once (RFC 5280 4.2)",
             index + 1, name, earlier + 1);
    if (X509_EXTENSION_get_critical(ext) && (nid == NID_undef || !X509_supported_extension(ext)))
        emit(r, R_EXTENSIONS_UNKNOWN_CRITICAL,
             "extension %d (%s) is marked critical but OpenSSL does not know it; a relying party "
             "must reject such a certificate, so drop it or make it non-critical",
             index + 1, name);
    if (nid == NID_subject_alt_name)
        check_subject_alt_name(r, ext, index + 1);
    else
        check_extension_decodes(r, ext, index + 1, name);
}

static void check_extension_list(enr_lint_report *r, STACK_OF(X509_EXTENSION) *exts)
{
    int n = sk_X509_EXTENSION_num(exts);
    if (n <= 0)
        return;
    const ASN1_OBJECT **types = malloc((size_t)n * sizeof *types);
    if (types == NULL) {
        r->out_of_memory = true;
        return;
    }
    for (int i = 0; i < n; i++)
        types[i] = X509_EXTENSION_get_object(sk_X509_EXTENSION_value(exts, i));
    int *earlier = earlier_duplicates(types, n);
    free(types);
    if (earlier == NULL) {
        r->out_of_memory = true;
        return;
    }
    for (int i = 0; i < n; i++)
        check_extension(r, sk_X509_EXTENSION_value(exts, i), i, earlier[i]);
    free(earlier);
}

static void report_undecodable_extensions(enr_lint_report *r, const X509_ATTRIBUTE *attr, int idx)
{
    char why[400];
    openssl_reasons(why, sizeof why);
    const ASN1_TYPE *value = X509_ATTRIBUTE_get0_type((X509_ATTRIBUTE *)attr, 0);
    if (value != NULL && value->type != V_ASN1_SEQUENCE)
        emit(r, R_EXTENSIONS_MALFORMED,
             "attribute %d (extensionRequest) holds a value of type %s where a SEQUENCE of "
             "extensions belongs",
             idx + 1, ASN1_tag2str(value->type));
    else
        emit(r, R_EXTENSIONS_MALFORMED,
             "attribute %d (extensionRequest) cannot be decoded as a list of extensions "
             "(openssl: %s)",
             idx + 1, why);
}

/* The attribute X509_REQ_get_extensions reads: extensionRequest first, then
 * Microsoft's older one. */
static int extension_attribute_index(const X509_REQ *req)
{
    int idx = X509_REQ_get_attr_by_NID(req, NID_ext_req, -1);
    return idx >= 0 ? idx : X509_REQ_get_attr_by_NID(req, NID_ms_ext_req, -1);
}

static void check_extensions(enr_lint_report *r, X509_REQ *req)
{
    int idx = extension_attribute_index(req);
    if (idx < 0)
        return;
    STACK_OF(X509_EXTENSION) *exts = X509_REQ_get_extensions(req);
    if (exts == NULL) {
        report_undecodable_extensions(r, X509_REQ_get_attr(req, idx), idx);
        return;
    }
    check_extensions_der(r, X509_REQ_get_attr(req, idx), exts);
    check_extension_list(r, exts);
    sk_X509_EXTENSION_pop_free(exts, X509_EXTENSION_free);
}

/* ---- putting it together ---------------------------------------------- */

/* `csr`: the request as enr_csr_parse made it (its key and verdict are
 * used), or NULL when linting raw input. */
static void lint_request(enr_lint_report *r, X509_REQ *req, const enr_csr *csr, const unsigned char *der,
                         size_t der_len, enr_encoding encoding, const enr_lint_options *opts)
{
    check_canonical_der(r, req, csr, der, der_len, encoding);
    check_version(r, req);
    bool algorithm_known = check_signature_algorithm(r, req);
    EVP_PKEY *key = check_key(r, req, csr != NULL ? enr_csr_public_key(csr) : NULL);
    /* Without a known algorithm or a usable key the verdict would only repeat those findings. */
    if (algorithm_known && key != NULL)
        check_signature(r, req, key, csr);
    check_subject(r, X509_REQ_get_subject_name(req), opts);
    check_attributes(r, req);
    check_extensions(r, req);
}

static void lint_input(enr_lint_report *r, const unsigned char *in, size_t len,
                       const enr_lint_options *opts)
{
    enr_decoded dec;
    size_t bad_offset = 0;
    enr_error why = {0};
    enr_code rc = enr_decode(in, len, &dec, &bad_offset, &why);
    if (rc == ENR_E_NOMEM) {
        r->out_of_memory = true;
        return;
    }
    if (rc != ENR_OK) {
        /* Nothing past this point can be read: one finding, no cascade. */
        report_undecodable(r, &why, bad_offset);
        return;
    }
    check_pem_label(r, &dec);
    const unsigned char *p = dec.der;
    X509_REQ *req = dec.der_len <= (size_t)LONG_MAX ? d2i_X509_REQ(NULL, &p, (long)dec.der_len)
                                                     : NULL;
    if (req == NULL) {
        /* "Bytes after the request" means nothing when there is no request. */
        report_not_a_request(r, &dec);
    } else {
        check_trailing_data(r, &dec);
        lint_request(r, req, NULL, dec.der, dec.der_len, dec.encoding, opts);
        X509_REQ_free(req);
    }
    enr_decoded_free(&dec);
}

/* One report, from raw bytes (`csr` NULL) or from a request already parsed. */
static enr_code make_report(const unsigned char *in, size_t len, const enr_csr *csr,
                            const enr_lint_options *opts, enr_lint_report **out, enr_error *err)
{
    *out = NULL;
    static const enr_lint_options NO_OPTIONS = {NULL};
    enr_lint_report *report = calloc(1, sizeof *report);
    if (report == NULL)
        return enr_error_set(err, ENR_E_NOMEM, "out of memory");
    if (opts == NULL)
        opts = &NO_OPTIONS;
    if (csr == NULL)
        lint_input(report, in, len, opts);
    else
        lint_request(report, csr->req, csr, csr->der, csr->der_len, ENR_ENCODING_DER, opts);
    ERR_clear_error();
    if (report->out_of_memory) {
        enr_lint_report_free(report);
        return enr_error_set(err, ENR_E_NOMEM, "out of memory while linting the request");
    }
    *out = report;
    return ENR_OK;
}

enr_code enr_lint_csr(const unsigned char *in, size_t len, const enr_lint_options *opts,
                      enr_lint_report **out, enr_error *err)
{
    if (out == NULL || (in == NULL && len > 0))
        return enr_error_set(err, ENR_E_USAGE, "enr_lint_csr: no input or no place for the report");
    return make_report(in, len, NULL, opts, out, err);
}

enr_code enr_lint_csr_parsed(const enr_csr *csr, const enr_lint_options *opts, enr_lint_report **out,
                             enr_error *err)
{
    if (out == NULL || csr == NULL)
        return enr_error_set(err, ENR_E_USAGE, "enr_lint_csr_parsed: no request or no place for the report");
    return make_report(NULL, 0, csr, opts, out, err);
}
