/* SAS tokens for DPS symmetric-key attestation. The parser refuses rather
 * than repairs: a token is a credential, and guessing what a malformed one
 * meant is how two components end up disagreeing about who was let in. */
#include "enroll/sas.h"

#include <ctype.h>
#include <limits.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/core_names.h>
#include <openssl/hmac.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/quote.h"
#include "enroll/input.h"

#define SCHEME "SharedAccessSignature"
#define SCHEME_LEN (sizeof SCHEME - 1)
#define TOKEN_FORMAT SCHEME " sr=%s&sig=%s&se=%s&skn=" ENR_SAS_KEY_NAME
#define RESOURCE_MIDDLE "/registrations/"
#define RESOURCE_MIDDLE_LEN (sizeof RESOURCE_MIDDLE - 1)
/* 64 key bytes are 88 base64 characters; the decode buffer holds 66 so a
 * padding-free 88-character string fits before its length is judged. */
#define KEY_B64_MAX 88
#define KEY_BUF_LEN (KEY_B64_MAX / 4 * 3)

static char ascii_lower(char c)
{
    return c >= 'A' && c <= 'Z' ? (char)(c - 'A' + 'a') : c;
}

/* Not strcasecmp: that one follows the locale, registration ids are ASCII. */
static bool ascii_case_equal_n(const char *a, const char *b, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (ascii_lower(a[i]) != ascii_lower(b[i]))
            return false;
    return true;
}

static bool ascii_case_equal(const char *a, const char *b)
{
    size_t n = strlen(a);
    return n == strlen(b) && ascii_case_equal_n(a, b, n);
}

static bool is_alnum(char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
}

static bool is_visible(unsigned char c)
{
    return c > 0x20 && c < 0x7f;
}

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

static int64_t add_saturating(int64_t a, int64_t b)
{
    if (b > 0 && a > INT64_MAX - b)
        return INT64_MAX;
    if (b < 0 && a < INT64_MIN - b)
        return INT64_MIN;
    return a + b;
}

/* "2026-11-23T08:00:00Z", or the bare number when gmtime cannot say. */
static void format_utc(int64_t t, char *buf, size_t cap)
{
    struct tm tm;
    time_t tt = (time_t)t;
    if ((int64_t)tt != t || gmtime_r(&tt, &tm) == NULL ||
        strftime(buf, cap, "%Y-%m-%dT%H:%M:%SZ", &tm) == 0)
        snprintf(buf, cap, "%lld s after 1970", (long long)t);
}

bool enr_registration_id_valid(const char *id)
{
    if (id == NULL)
        return false;
    size_t len = strnlen(id, ENR_REGISTRATION_ID_MAX + 1);
    if (len == 0 || len > ENR_REGISTRATION_ID_MAX)
        return false;
    for (size_t i = 0; i < len; i++)
        if (!is_alnum(id[i]) && strchr("._:-", id[i]) == NULL)
            return false;
    return is_alnum(id[len - 1]) || id[len - 1] == '-';
}

/* ---- strict base64 ---------------------------------------------------- */

/* -1 when lo <= c <= hi, else 0 (c is a byte value). */
static int range_mask(int c, int lo, int hi)
{
    return ((lo - 1 - c) & (c - hi - 1)) >> 8;
}

/* Branch-free, unlike a table lookup or a chain of ifs: keys go through
 * here, and timing must not depend on which characters a key holds. */
static int b64_value(unsigned char ch)
{
    int c = ch;
    int v = -1;
    v += range_mask(c, 'A', 'Z') & (c - 'A' + 1);
    v += range_mask(c, 'a', 'z') & (c - 'a' + 27);
    v += range_mask(c, '0', '9') & (c - '0' + 53);
    v += range_mask(c, '+', '+') & 63;
    v += range_mask(c, '/', '/') & 64;
    return v;
}

typedef struct b64_fault {
    size_t offset;
    const char *reason;
} b64_fault;

static bool b64_fail(b64_fault *fault, size_t offset, const char *reason)
{
    fault->offset = offset;
    fault->reason = reason;
    return false;
}

/* RFC 4648 base64 with nothing tolerated: the standard alphabet, no
 * whitespace, length a multiple of 4, '=' only as final padding, and zero
 * unused bits, so that each byte string has exactly one spelling. `out`
 * must hold len / 4 * 3 bytes. */
static bool b64_decode(const char *in, size_t len, unsigned char *out, size_t *out_len,
                       b64_fault *fault)
{
    if (len == 0)
        return b64_fail(fault, 0, "it is empty");
    if (len % 4 != 0)
        return b64_fail(fault, len,
                        "its length is not a multiple of 4 (truncated, or '=' padding missing)");
    size_t pad = in[len - 1] == '=' ? (in[len - 2] == '=' ? 2 : 1) : 0;
    size_t data_len = len - pad;
    size_t n = 0;
    uint32_t acc = 0;
    for (size_t i = 0; i < data_len; i++) {
        int v = b64_value((unsigned char)in[i]);
        if (v < 0)
            return b64_fail(fault, i,
                            in[i] == '=' ? "'=' before the end"
                                         : "a character outside the base64 alphabet");
        acc = (acc << 6) | (uint32_t)v;
        if (i % 4 == 3) {
            out[n++] = (unsigned char)(acc >> 16);
            out[n++] = (unsigned char)(acc >> 8);
            out[n++] = (unsigned char)acc;
            acc = 0;
        }
    }
    uint32_t unused_bits = pad == 2 ? acc & 0xf : pad == 1 ? acc & 0x3 : 0;
    if (unused_bits != 0)
        return b64_fail(fault, data_len - 1,
                        "the last character before '=' has non-zero unused bits (not canonical)");
    if (pad == 2) {
        out[n++] = (unsigned char)(acc >> 4);
    } else if (pad == 1) {
        out[n++] = (unsigned char)(acc >> 10);
        out[n++] = (unsigned char)(acc >> 2);
    }
    *out_len = n;
    return true;
}

/* `what` names the key in messages ("group key", "keys_b64[1]"); the key
 * itself is never quoted. Bad keys are the caller's configuration, hence
 * ENR_E_USAGE. */
static enr_code decode_key(const char *b64, const char *what, unsigned char key[KEY_BUF_LEN],
                           size_t *key_len, enr_error *err)
{
    if (b64 == NULL)
        return enr_error_set(err, ENR_E_USAGE, "%s is missing", what);
    size_t len = strnlen(b64, KEY_B64_MAX + 1);
    if (len > KEY_B64_MAX)
        return enr_error_set(err, ENR_E_USAGE,
                             "%s is too long: a key is base64 of %d to %d bytes (at most %d "
                             "characters)",
                             what, ENR_SAS_KEY_MIN, ENR_SAS_KEY_MAX, KEY_B64_MAX);
    b64_fault fault;
    if (!b64_decode(b64, len, key, key_len, &fault)) {
        OPENSSL_cleanse(key, KEY_BUF_LEN);
        return enr_error_set(err, ENR_E_USAGE, "%s is not valid base64: %s (at character %zu)",
                             what, fault.reason, fault.offset);
    }
    if (*key_len < ENR_SAS_KEY_MIN || *key_len > ENR_SAS_KEY_MAX) {
        OPENSSL_cleanse(key, KEY_BUF_LEN);
        return enr_error_set(err, ENR_E_USAGE,
                             "%s decodes to %zu bytes; a key must be %d to %d bytes", what,
                             *key_len, ENR_SAS_KEY_MIN, ENR_SAS_KEY_MAX);
    }
    return ENR_OK;
}

/* ---- HMAC ------------------------------------------------------------- */

/* OpenSSL 3's one-shot HMAC() fetches the algorithm from the provider
 * and builds and frees a context on every call: most of its cost for a
 * message this short. An enr_sas_mac fetches once and is keyed again per
 * use (EVP_MAC_init with a key replaces the previous key's state; cheaper
 * than duplicating a keyless template, ~1 us against ~2 and ~3 here). */
struct enr_sas_mac {
    EVP_MAC *alg;
    EVP_MAC_CTX *ctx;
};

enr_code enr_sas_mac_new(enr_sas_mac **out, enr_error *err)
{
    *out = NULL;
    enr_sas_mac *m = calloc(1, sizeof *m);
    if (m == NULL)
        return enr_error_set(err, ENR_E_NOMEM, "out of memory");
    OSSL_PARAM params[] = {OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, "SHA256", 0),
                           OSSL_PARAM_construct_end()};
    if ((m->alg = EVP_MAC_fetch(NULL, "HMAC", NULL)) == NULL || (m->ctx = EVP_MAC_CTX_new(m->alg)) == NULL ||
        !EVP_MAC_CTX_set_params(m->ctx, params)) {
        enr_sas_mac_free(m);
        return enr_error_openssl(err, ENR_E_CRYPTO, "HMAC-SHA256 is not available");
    }
    *out = m;
    return ENR_OK;
}

void enr_sas_mac_free(enr_sas_mac *m)
{
    if (m == NULL)
        return;
    EVP_MAC_CTX_free(m->ctx); /* cleanses the last key's state */
    EVP_MAC_free(m->alg);
    free(m);
}

/* HMAC-SHA256 of the concatenated parts: with `m` keyed again, without
 * it one-shot (the message joined first). */
static enr_code hmac_parts(enr_sas_mac *m, const unsigned char *key, size_t key_len, const unsigned char *const *parts,
                           const size_t *lens, size_t count, unsigned char mac[ENR_SAS_SIGNATURE_LEN],
                           enr_error *err);

static enr_code hmac_sha256(const unsigned char *key, size_t key_len, const unsigned char *msg,
                            size_t msg_len, unsigned char mac[ENR_SAS_SIGNATURE_LEN],
                            enr_error *err)
{
    unsigned int mac_len = 0;
    if (HMAC(EVP_sha256(), key, (int)key_len, msg, msg_len, mac, &mac_len) == NULL ||
        mac_len != ENR_SAS_SIGNATURE_LEN)
        return enr_error_openssl(err, ENR_E_CRYPTO, "HMAC-SHA256 failed");
    return ENR_OK;
}

static enr_code hmac_parts(enr_sas_mac *m, const unsigned char *key, size_t key_len, const unsigned char *const *parts,
                           const size_t *lens, size_t count, unsigned char mac[ENR_SAS_SIGNATURE_LEN],
                           enr_error *err)
{
    if (m != NULL) {
        size_t mac_len = 0;
        bool ok = EVP_MAC_init(m->ctx, key, key_len, NULL) == 1;
        for (size_t i = 0; ok && i < count; i++)
            ok = EVP_MAC_update(m->ctx, parts[i], lens[i]) == 1;
        if (!ok || EVP_MAC_final(m->ctx, mac, &mac_len, ENR_SAS_SIGNATURE_LEN) != 1 ||
            mac_len != ENR_SAS_SIGNATURE_LEN)
            return enr_error_openssl(err, ENR_E_CRYPTO, "HMAC-SHA256 failed");
        return ENR_OK;
    }
    size_t total = 0;
    for (size_t i = 0; i < count; i++)
        total += lens[i];
    unsigned char *msg = malloc(total ? total : 1);
    if (msg == NULL)
        return enr_error_set(err, ENR_E_NOMEM, "out of memory");
    for (size_t i = 0, at = 0; i < count; at += lens[i], i++)
        memcpy(msg + at, parts[i], lens[i]);
    enr_code rc = hmac_sha256(key, key_len, msg, total, mac, err);
    free(msg);
    return rc;
}

/* The signed string is sr and se as they travel, joined by a newline. */
static enr_code sign_sr_se(enr_sas_mac *m, const unsigned char *key, size_t key_len, const char *sr,
                           const char *se, unsigned char mac[ENR_SAS_SIGNATURE_LEN],
                           enr_error *err)
{
    const unsigned char *parts[3] = {(const unsigned char *)sr, (const unsigned char *)"\n",
                                     (const unsigned char *)se};
    size_t lens[3] = {strlen(sr), 1, strlen(se)};
    return hmac_parts(m, key, key_len, parts, lens, 3, mac, err);
}

void enr_sas_secret_free(char *secret)
{
    if (secret != NULL)
        OPENSSL_clear_free(secret, strlen(secret));
}

/* ---- derivation and making -------------------------------------------- */

static enr_code check_registration_id(const char *id, enr_error *err)
{
    if (id == NULL)
        return enr_error_set(err, ENR_E_USAGE, "the registration id is missing");
    if (!enr_registration_id_valid(id))
        return enr_error_set(err, ENR_E_USAGE,
                             "registration id '%s' is not valid: use 1 to %d characters of "
                             "A-Z a-z 0-9 . _ : -, ending in a letter, digit or '-'",
                             enr_quote(id).text, ENR_REGISTRATION_ID_MAX);
    return ENR_OK;
}

enr_code enr_sas_derive_device_key(const char *group_key_b64, const char *registration_id,
                                   char **device_key_b64, enr_error *err)
{
    return enr_sas_derive_device_key_with(NULL, group_key_b64, registration_id, device_key_b64, err);
}

enr_code enr_sas_derive_device_key_with(enr_sas_mac *m, const char *group_key_b64, const char *registration_id,
                                        char **device_key_b64, enr_error *err)
{
    if (device_key_b64 == NULL)
        return enr_error_set(err, ENR_E_USAGE, "enr_sas_derive_device_key: no output pointer");
    *device_key_b64 = NULL;
    enr_code rc = check_registration_id(registration_id, err);
    if (rc != ENR_OK)
        return rc;
    unsigned char group_key[KEY_BUF_LEN];
    size_t group_key_len = 0;
    rc = decode_key(group_key_b64, "group key", group_key, &group_key_len, err);
    if (rc != ENR_OK)
        return rc;
    /* Over the canonical (lower-case) id: ids differing only in case are
     * one registration (the store keeps it lower case), so they get one key. */
    char canonical[ENR_REGISTRATION_ID_MAX + 1];
    size_t id_len = strlen(registration_id);
    for (size_t i = 0; i <= id_len; i++)
        canonical[i] = (char)tolower((unsigned char)registration_id[i]);
    unsigned char device_key[ENR_SAS_SIGNATURE_LEN];
    const unsigned char *parts[1] = {(const unsigned char *)canonical};
    rc = hmac_parts(m, group_key, group_key_len, parts, &id_len, 1, device_key, err);
    OPENSSL_cleanse(group_key, sizeof group_key);
    if (rc == ENR_OK)
        rc = enr_base64_encode(device_key, sizeof device_key, device_key_b64, err);
    OPENSSL_cleanse(device_key, sizeof device_key);
    return rc;
}

static bool is_unreserved(char c)
{
    return is_alnum(c) || c == '-' || c == '.' || c == '_' || c == '~';
}

/* Percent-encodes all but RFC 3986 unreserved characters, in uppercase hex
 * as Microsoft's Node, Python and C# SDKs do ("%2F"). */
static enr_code url_encode(const char *text, char **out, enr_error *err)
{
    static const char HEX[] = "0123456789ABCDEF";
    size_t len = strlen(text);
    char *enc = malloc(len * 3 + 1);
    if (enc == NULL)
        return enr_error_set(err, ENR_E_NOMEM, "out of memory");
    size_t n = 0;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)text[i];
        if (is_unreserved((char)c)) {
            enc[n++] = (char)c;
        } else {
            enc[n++] = '%';
            enc[n++] = HEX[c >> 4];
            enc[n++] = HEX[c & 0xf];
        }
    }
    enc[n] = '\0';
    *out = enc;
    return ENR_OK;
}

/* A scope is one path segment of visible ASCII; anything else would make
 * "{scope}/registrations/{id}" ambiguous. */
static enr_code check_id_scope(const char *id_scope, enr_error *err)
{
    if (id_scope == NULL || id_scope[0] == '\0')
        return enr_error_set(err, ENR_E_USAGE, "the ID scope is missing or empty");
    size_t len = strnlen(id_scope, ENR_SAS_TOKEN_MAX + 1);
    if (len > ENR_SAS_TOKEN_MAX)
        return enr_error_set(err, ENR_E_USAGE, "the ID scope is longer than %d bytes",
                             ENR_SAS_TOKEN_MAX);
    for (size_t i = 0; i < len; i++)
        if (!is_visible((unsigned char)id_scope[i]) || id_scope[i] == '/')
            return enr_error_set(err, ENR_E_USAGE,
                                 "ID scope '%s': character %zu is a '/', a space or not "
                                 "printable ASCII",
                                 enr_quote(id_scope).text, i);
    return ENR_OK;
}

/* sr = url-encode("{scope}/registrations/{id}") */
static enr_code make_sr(const char *id_scope, const char *registration_id, char **sr,
                        enr_error *err)
{
    size_t len = strlen(id_scope) + RESOURCE_MIDDLE_LEN + strlen(registration_id) + 1;
    char *resource = malloc(len);
    if (resource == NULL)
        return enr_error_set(err, ENR_E_NOMEM, "out of memory");
    snprintf(resource, len, "%s%s%s", id_scope, RESOURCE_MIDDLE, registration_id);
    enr_code rc = url_encode(resource, sr, err);
    free(resource);
    return rc;
}

static enr_code format_token(const char *sr, const unsigned char mac[ENR_SAS_SIGNATURE_LEN],
                             const char *se, char **token, enr_error *err)
{
    char *sig_b64 = NULL, *sig = NULL;
    enr_code rc = enr_base64_encode(mac, ENR_SAS_SIGNATURE_LEN, &sig_b64, err);
    if (rc == ENR_OK)
        rc = url_encode(sig_b64, &sig, err);
    enr_sas_secret_free(sig_b64);
    if (rc != ENR_OK)
        return rc;
    size_t cap = sizeof TOKEN_FORMAT + strlen(sr) + strlen(sig) + strlen(se);
    char *text = malloc(cap);
    if (text == NULL) {
        enr_sas_secret_free(sig);
        return enr_error_set(err, ENR_E_NOMEM, "out of memory");
    }
    snprintf(text, cap, TOKEN_FORMAT, sr, sig, se);
    enr_sas_secret_free(sig);
    size_t len = strlen(text);
    if (len > ENR_SAS_TOKEN_MAX) {
        enr_sas_secret_free(text);
        return enr_error_set(err, ENR_E_USAGE,
                             "the token would be %zu bytes, more than the %d a service accepts "
                             "(is the ID scope that long?)",
                             len, ENR_SAS_TOKEN_MAX);
    }
    *token = text;
    return ENR_OK;
}

enr_code enr_sas_token_make(const char *id_scope, const char *registration_id,
                            const char *device_key_b64, time_t expiry, char **token,
                            enr_error *err)
{
    if (token == NULL)
        return enr_error_set(err, ENR_E_USAGE, "enr_sas_token_make: no output pointer");
    *token = NULL;
    enr_code rc = check_id_scope(id_scope, err);
    if (rc == ENR_OK)
        rc = check_registration_id(registration_id, err);
    if (rc != ENR_OK)
        return rc;
    if (expiry < 0)
        return enr_error_set(err, ENR_E_USAGE, "the expiry %lld is before 1970",
                             (long long)expiry);
    unsigned char key[KEY_BUF_LEN];
    size_t key_len = 0;
    rc = decode_key(device_key_b64, "device key", key, &key_len, err);
    if (rc != ENR_OK)
        return rc;
    char se[24];
    snprintf(se, sizeof se, "%lld", (long long)expiry);
    char *sr = NULL;
    unsigned char mac[ENR_SAS_SIGNATURE_LEN];
    rc = make_sr(id_scope, registration_id, &sr, err);
    if (rc == ENR_OK)
        rc = sign_sr_se(NULL, key, key_len, sr, se, mac, err);
    OPENSSL_cleanse(key, sizeof key);
    if (rc == ENR_OK)
        rc = format_token(sr, mac, se, token, err);
    OPENSSL_cleanse(mac, sizeof mac);
    free(sr);
    return rc;
}

/* ---- parsing ---------------------------------------------------------- */

struct enr_sas_token {
    char *sr;       /* as received: the HMAC covers these bytes */
    char *resource; /* sr percent-decoded */
    char *se;       /* as received */
    time_t expiry;
    char *key_name; /* skn percent-decoded */
    unsigned char signature[ENR_SAS_SIGNATURE_LEN];
};

typedef enum field_id { FIELD_SR, FIELD_SIG, FIELD_SE, FIELD_SKN, FIELD_COUNT } field_id;

static const char *const FIELD_NAMES[FIELD_COUNT] = {"sr", "sig", "se", "skn"};

/* Where one field's value sits in the header. */
typedef struct field_span {
    bool seen;
    size_t name_offset;
    size_t start;
    size_t len;
} field_span;

static enr_code parse_fail(enr_error *err, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static enr_code parse_fail(enr_error *err, const char *fmt, ...)
{
    if (err == NULL)
        return ENR_E_PARSE;
    char detail[ENR_ERROR_MESSAGE_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(detail, sizeof detail, fmt, ap);
    va_end(ap);
    return enr_error_set(err, ENR_E_PARSE, "SAS token: %s", detail);
}

/* Returns the offset of the first field, after the scheme and its spaces. */
static enr_code skip_scheme(const char *h, size_t len, size_t *body, enr_error *err)
{
    if (len == 0)
        return parse_fail(err, "the Authorization header is empty");
    if (len < SCHEME_LEN || !ascii_case_equal_n(h, SCHEME, SCHEME_LEN) ||
        (h[SCHEME_LEN] != ' ' && h[SCHEME_LEN] != '\0'))
        return parse_fail(err, "the header does not start with '" SCHEME " '");
    size_t i = SCHEME_LEN;
    while (i < len && h[i] == ' ')
        i++;
    if (i == len)
        return parse_fail(err, "no fields after '" SCHEME "'");
    *body = i;
    return ENR_OK;
}

static enr_code check_visible(const char *h, size_t from, size_t len, enr_error *err)
{
    for (size_t i = from; i < len; i++)
        if (!is_visible((unsigned char)h[i]))
            return parse_fail(err,
                              "byte %zu is a space, a control character or not ASCII; none "
                              "may appear inside a token",
                              i);
    return ENR_OK;
}

static int field_lookup(const char *name, size_t len)
{
    for (int f = 0; f < FIELD_COUNT; f++)
        if (strlen(FIELD_NAMES[f]) == len && memcmp(FIELD_NAMES[f], name, len) == 0)
            return f;
    return -1;
}

/* One "name=value" between `start` and `end`. */
static enr_code take_field(const char *h, size_t start, size_t end, field_span spans[FIELD_COUNT],
                           enr_error *err)
{
    if (start == end)
        return parse_fail(err, "empty field at byte %zu (two '&' in a row, or a '&' at the end)",
                          start);
    const char *eq = memchr(h + start, '=', end - start);
    if (eq == NULL)
        return parse_fail(err, "the field at byte %zu has no '=' (expected name=value)", start);
    size_t name_len = (size_t)(eq - h) - start;
    if (name_len == 0)
        return parse_fail(err, "the field at byte %zu has no name before '='", start);
    int f = field_lookup(h + start, name_len);
    if (f < 0)
        return parse_fail(err,
                          "unknown field '%s' at byte %zu; a device token has only sr, sig, se "
                          "and skn (lowercase)",
                          enr_quote_n(h + start, name_len).text, start);
    field_span *span = &spans[f];
    if (span->seen)
        return parse_fail(err, "the '%s' field appears twice (bytes %zu and %zu)", FIELD_NAMES[f],
                          span->name_offset, start);
    span->seen = true;
    span->name_offset = start;
    span->start = start + name_len + 1;
    span->len = end - span->start;
    if (span->len == 0)
        return parse_fail(err, "the '%s' field at byte %zu is empty", FIELD_NAMES[f], start);
    return ENR_OK;
}

static enr_code split_fields(const char *h, size_t len, size_t body, field_span spans[FIELD_COUNT],
                             enr_error *err)
{
    enr_code rc = check_visible(h, body, len, err);
    size_t start = body;
    while (rc == ENR_OK) {
        const char *amp = memchr(h + start, '&', len - start);
        size_t end = amp == NULL ? len : (size_t)(amp - h);
        rc = take_field(h, start, end, spans, err);
        if (amp == NULL)
            break;
        start = end + 1;
    }
    for (int f = 0; rc == ENR_OK && f < FIELD_COUNT; f++)
        if (!spans[f].seen)
            rc = parse_fail(err,
                            "the '%s' field is missing (a device token has sr, sig, se and skn)",
                            FIELD_NAMES[f]);
    return rc;
}

/* Percent-decodes once ('+' stays '+') into a new NUL-terminated buffer.
 * With `text`, an escape must yield printable ASCII: the result is used as
 * a C string and compared with a path. */
static enr_code percent_decode(const char *h, const field_span *span, field_id f, bool text,
                               char **out, size_t *out_len, enr_error *err)
{
    char *buf = malloc(span->len + 1);
    if (buf == NULL)
        return enr_error_set(err, ENR_E_NOMEM, "out of memory");
    size_t n = 0, end = span->start + span->len;
    for (size_t i = span->start; i < end; i++) {
        if (h[i] != '%') {
            buf[n++] = h[i];
            continue;
        }
        int hi = i + 1 < end ? hex_value(h[i + 1]) : -1;
        int lo = i + 2 < end ? hex_value(h[i + 2]) : -1;
        int c = hi < 0 || lo < 0 ? -1 : hi * 16 + lo;
        if (c < 0 || (text && (c < 0x20 || c >= 0x7f))) {
            OPENSSL_clear_free(buf, span->len + 1);
            if (c < 0)
                return parse_fail(err,
                                  "'%%' at byte %zu in the '%s' field is not followed by two hex "
                                  "digits",
                                  i, FIELD_NAMES[f]);
            return parse_fail(err,
                              "the escape at byte %zu in the '%s' field decodes to %s; only "
                              "printable ASCII is allowed",
                              i, FIELD_NAMES[f], c == 0 ? "a NUL byte" : "a control or non-ASCII byte");
        }
        buf[n++] = (char)c;
        i += 2;
    }
    buf[n] = '\0';
    *out = buf;
    if (out_len != NULL)
        *out_len = n;
    return ENR_OK;
}

static enr_code parse_expiry(const char *h, const field_span *span, time_t *expiry,
                             enr_error *err)
{
    int64_t value = 0;
    for (size_t i = span->start; i < span->start + span->len; i++) {
        if (h[i] < '0' || h[i] > '9')
            return parse_fail(err,
                              "the 'se' field must be decimal digits (the expiry in seconds "
                              "since 1970), but byte %zu is not a digit",
                              i);
        int digit = h[i] - '0';
        if (value > (INT64_MAX - digit) / 10)
            return parse_fail(err, "the 'se' field (byte %zu) is too large to be a time",
                              span->start);
        value = value * 10 + digit;
    }
    time_t t = (time_t)value;
    if ((int64_t)t != value)
        return parse_fail(err, "the 'se' field (byte %zu) is too large for this system's time_t",
                          span->start);
    *expiry = t;
    return ENR_OK;
}

static enr_code decode_signature(const char *h, const field_span *span,
                                 unsigned char sig[ENR_SAS_SIGNATURE_LEN], enr_error *err)
{
    char *b64 = NULL;
    size_t b64_len = 0;
    enr_code rc = percent_decode(h, span, FIELD_SIG, false, &b64, &b64_len, err);
    if (rc != ENR_OK)
        return rc;
    unsigned char bytes[ENR_SAS_TOKEN_MAX / 4 * 3];
    size_t n = 0;
    b64_fault fault;
    if (!b64_decode(b64, b64_len, bytes, &n, &fault))
        rc = parse_fail(err,
                        "the 'sig' field (byte %zu) is not base64 after percent-decoding: %s (at "
                        "character %zu of the decoded value)",
                        span->start, fault.reason, fault.offset);
    else if (n != ENR_SAS_SIGNATURE_LEN)
        rc = parse_fail(err,
                        "the 'sig' field (byte %zu) decodes to %zu bytes; an HMAC-SHA256 "
                        "signature is %d",
                        span->start, n, ENR_SAS_SIGNATURE_LEN);
    else
        memcpy(sig, bytes, ENR_SAS_SIGNATURE_LEN);
    OPENSSL_cleanse(bytes, n);
    OPENSSL_clear_free(b64, b64_len);
    return rc;
}

static enr_code copy_raw(const char *h, const field_span *span, char **out, enr_error *err)
{
    *out = strndup(h + span->start, span->len);
    return *out == NULL ? enr_error_set(err, ENR_E_NOMEM, "out of memory") : ENR_OK;
}

static enr_code fill_token(const char *h, const field_span spans[FIELD_COUNT], enr_sas_token *t,
                           enr_error *err)
{
    enr_code rc = copy_raw(h, &spans[FIELD_SR], &t->sr, err);
    if (rc == ENR_OK)
        rc = percent_decode(h, &spans[FIELD_SR], FIELD_SR, true, &t->resource, NULL, err);
    if (rc == ENR_OK)
        rc = decode_signature(h, &spans[FIELD_SIG], t->signature, err);
    if (rc == ENR_OK)
        rc = parse_expiry(h, &spans[FIELD_SE], &t->expiry, err);
    if (rc == ENR_OK)
        rc = copy_raw(h, &spans[FIELD_SE], &t->se, err);
    if (rc == ENR_OK)
        rc = percent_decode(h, &spans[FIELD_SKN], FIELD_SKN, true, &t->key_name, NULL, err);
    return rc;
}

enr_code enr_sas_token_parse(const char *authorization_header, enr_sas_token **out,
                             enr_error *err)
{
    if (out == NULL)
        return enr_error_set(err, ENR_E_USAGE, "enr_sas_token_parse: no output pointer");
    *out = NULL;
    if (authorization_header == NULL)
        return enr_error_set(err, ENR_E_USAGE, "enr_sas_token_parse: no header given");
    const char *h = authorization_header;
    size_t len = strnlen(h, ENR_SAS_TOKEN_MAX + 1);
    if (len > ENR_SAS_TOKEN_MAX)
        return parse_fail(err, "the header is longer than %d bytes", ENR_SAS_TOKEN_MAX);
    size_t body = 0;
    field_span spans[FIELD_COUNT] = {{0}};
    enr_code rc = skip_scheme(h, len, &body, err);
    if (rc == ENR_OK)
        rc = split_fields(h, len, body, spans, err);
    if (rc != ENR_OK)
        return rc;
    enr_sas_token *t = calloc(1, sizeof *t);
    if (t == NULL)
        return enr_error_set(err, ENR_E_NOMEM, "out of memory");
    rc = fill_token(h, spans, t, err);
    if (rc != ENR_OK) {
        enr_sas_token_free(t);
        return rc;
    }
    *out = t;
    return ENR_OK;
}

void enr_sas_token_free(enr_sas_token *token)
{
    if (token == NULL)
        return;
    free(token->sr);
    free(token->resource);
    free(token->se);
    free(token->key_name);
    OPENSSL_cleanse(token->signature, sizeof token->signature);
    free(token);
}

const char *enr_sas_token_sr(const enr_sas_token *token)
{
    return token == NULL ? NULL : token->sr;
}

const char *enr_sas_token_resource(const enr_sas_token *token)
{
    return token == NULL ? NULL : token->resource;
}

const char *enr_sas_token_se(const enr_sas_token *token)
{
    return token == NULL ? NULL : token->se;
}

time_t enr_sas_token_expiry(const enr_sas_token *token)
{
    return token == NULL ? 0 : token->expiry;
}

const char *enr_sas_token_key_name(const enr_sas_token *token)
{
    return token == NULL ? NULL : token->key_name;
}

const unsigned char *enr_sas_token_signature(const enr_sas_token *token, size_t *len)
{
    if (len != NULL)
        *len = token == NULL ? 0 : ENR_SAS_SIGNATURE_LEN;
    return token == NULL ? NULL : token->signature;
}

/* ---- verification ----------------------------------------------------- */

static enr_code check_verify_args(const enr_sas_token *token, const char *id_scope,
                                  const char *registration_id, const char *const *keys_b64,
                                  size_t key_count, long skew_seconds, long max_lifetime_seconds,
                                  enr_error *err)
{
    if (token == NULL)
        return enr_error_set(err, ENR_E_USAGE, "enr_sas_token_verify: no token given");
    enr_code rc = check_id_scope(id_scope, err);
    if (rc == ENR_OK)
        rc = check_registration_id(registration_id, err);
    if (rc != ENR_OK)
        return rc;
    if (skew_seconds < 0 || max_lifetime_seconds < 0)
        return enr_error_set(err, ENR_E_USAGE,
                             "the clock skew (%ld s) and maximum lifetime (%ld s) must not be "
                             "negative",
                             skew_seconds, max_lifetime_seconds);
    size_t present = 0;
    for (size_t i = 0; keys_b64 != NULL && i < key_count; i++)
        if (keys_b64[i] != NULL)
            present++;
    if (present == 0)
        return enr_error_set(err, ENR_E_USAGE, "no key to verify the SAS token against");
    if (key_count > INT_MAX)
        return enr_error_set(err, ENR_E_USAGE, "too many keys (%zu)", key_count);
    return ENR_OK;
}

static enr_code check_resource(const enr_sas_token *t, const char *id_scope,
                               const char *registration_id, enr_error *err)
{
    if (strcmp(t->key_name, ENR_SAS_KEY_NAME) != 0)
        return enr_error_set(err, ENR_E_POLICY,
                             "SAS token has key name (skn) '%s'; a device registration token "
                             "has '" ENR_SAS_KEY_NAME "'",
                             enr_quote(t->key_name).text);
    const char *resource = t->resource;
    const char *slash = strchr(resource, '/');
    if (slash == NULL || strncmp(slash, RESOURCE_MIDDLE, RESOURCE_MIDDLE_LEN) != 0 ||
        slash[RESOURCE_MIDDLE_LEN] == '\0')
        return enr_error_set(err, ENR_E_POLICY,
                             "SAS token resource '%s' is not of the form "
                             "'{idScope}/registrations/{registrationId}'",
                             enr_quote(resource).text);
    size_t scope_len = (size_t)(slash - resource);
    if (scope_len != strlen(id_scope) || memcmp(resource, id_scope, scope_len) != 0)
        return enr_error_set(err, ENR_E_POLICY, "SAS token is for ID scope '%s', not '%s'",
                             enr_quote_n(resource, scope_len).text, enr_quote(id_scope).text);
    const char *id = slash + RESOURCE_MIDDLE_LEN;
    if (!ascii_case_equal(id, registration_id))
        return enr_error_set(err, ENR_E_POLICY,
                             "SAS token is for registration id '%s', not '%s'", enr_quote(id).text,
                             enr_quote(registration_id).text);
    return ENR_OK;
}

/* Sets *same to 1 when the signature matches under this key, else 0. */
static enr_code signature_matches(enr_sas_mac *m, const enr_sas_token *t, const char *key_b64, size_t index,
                                  int *same, enr_error *err)
{
    char what[40];
    snprintf(what, sizeof what, "keys_b64[%zu]", index);
    unsigned char key[KEY_BUF_LEN];
    size_t key_len = 0;
    enr_code rc = decode_key(key_b64, what, key, &key_len, err);
    if (rc != ENR_OK)
        return rc;
    unsigned char mac[ENR_SAS_SIGNATURE_LEN];
    rc = sign_sr_se(m, key, key_len, t->sr, t->se, mac, err);
    OPENSSL_cleanse(key, sizeof key);
    *same = rc == ENR_OK && CRYPTO_memcmp(mac, t->signature, sizeof mac) == 0;
    OPENSSL_cleanse(mac, sizeof mac);
    return rc;
}

/* Every key is tried and the first match picked with masks, not branches,
 * so the time taken says nothing about whether or which key matched. */
static enr_code match_keys(enr_sas_mac *m, const enr_sas_token *t, const char *const *keys_b64,
                           size_t key_count, int *matched, enr_error *err)
{
    int found = 0, index = -1;
    for (size_t i = 0; i < key_count; i++) {
        if (keys_b64[i] == NULL)
            continue;
        int same = 0;
        enr_code rc = signature_matches(m, t, keys_b64[i], i, &same, err);
        if (rc != ENR_OK)
            return rc;
        int take = -(same & ~found & 1);
        index = (index & ~take) | ((int)i & take);
        found |= same;
    }
    *matched = index;
    if (!found)
        return enr_error_set(err, ENR_E_VERIFY, "SAS token signature does not match");
    return ENR_OK;
}

typedef struct window_times {
    char se[48];
    char now[48];
} window_times;

static window_times format_window(int64_t se, int64_t now)
{
    window_times w;
    format_utc(se, w.se, sizeof w.se);
    format_utc(now, w.now, sizeof w.now);
    return w;
}

static enr_code check_time_window(time_t expiry, time_t now, long skew_seconds,
                                  long max_lifetime_seconds, enr_error *err)
{
    int64_t se = (int64_t)expiry, now64 = (int64_t)now;
    if (se < add_saturating(now64, -(int64_t)skew_seconds)) {
        window_times w = format_window(se, now64);
        return enr_error_refuse(err, ENR_R_TOKEN_TIME,
                             "SAS token expired at %s (se=%lld); it is now %s and %ld s of "
                             "clock skew are allowed",
                             w.se, (long long)se, w.now, skew_seconds);
    }
    if (max_lifetime_seconds > 0 &&
        se > add_saturating(add_saturating(now64, skew_seconds), max_lifetime_seconds)) {
        window_times w = format_window(se, now64);
        return enr_error_refuse(err, ENR_R_TOKEN_TIME,
                             "SAS token expires too far in the future, at %s (se=%lld); it is "
                             "now %s and at most %ld s of lifetime plus %ld s of clock skew are "
                             "allowed",
                             w.se, (long long)se, w.now, max_lifetime_seconds, skew_seconds);
    }
    return ENR_OK;
}

enr_code enr_sas_token_verify(const enr_sas_token *token, const char *id_scope,
                              const char *registration_id, const char *const *keys_b64,
                              size_t key_count, time_t now, long skew_seconds,
                              long max_lifetime_seconds, int *matched_key_index, enr_error *err)
{
    return enr_sas_token_verify_with(NULL, token, id_scope, registration_id, keys_b64, key_count, now, skew_seconds,
                                     max_lifetime_seconds, matched_key_index, err);
}

enr_code enr_sas_token_verify_with(enr_sas_mac *m, const enr_sas_token *token, const char *id_scope,
                                   const char *registration_id, const char *const *keys_b64, size_t key_count,
                                   time_t now, long skew_seconds, long max_lifetime_seconds,
                                   int *matched_key_index, enr_error *err)
{
    if (matched_key_index != NULL)
        *matched_key_index = -1;
    enr_code rc = check_verify_args(token, id_scope, registration_id, keys_b64, key_count,
                                    skew_seconds, max_lifetime_seconds, err);
    if (rc == ENR_OK)
        rc = check_resource(token, id_scope, registration_id, err);
    int index = -1;
    if (rc == ENR_OK)
        rc = match_keys(m, token, keys_b64, key_count, &index, err);
    if (rc == ENR_OK)
        rc = check_time_window(token->expiry, now, skew_seconds, max_lifetime_seconds, err);
    if (rc == ENR_OK && matched_key_index != NULL)
        *matched_key_index = index;
    return rc;
}
