/* EST's wire (RFC 7030, RFC 8951): paths, base64 bodies, certs-only CMS,
 * CsrAttrs, Basic credentials. All ASN.1 is OpenSSL's. */
#include "enroll/est.h"

#include <ctype.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <openssl/asn1.h>
#include <openssl/pkcs7.h>
#include <openssl/conf.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <openssl/x509v3.h>

#include "enroll/input.h"
#include "enroll/signer.h"

static const struct {
    const char *name;
    enr_est_operation op;
    bool post;
} OPERATIONS[] = {
    {"cacerts", ENR_EST_CACERTS, false},
    {"simpleenroll", ENR_EST_SIMPLEENROLL, true},
    {"simplereenroll", ENR_EST_SIMPLEREENROLL, true},
    {"csrattrs", ENR_EST_CSRATTRS, false},
    {"serverkeygen", ENR_EST_SERVERKEYGEN, true},
};
#define OPERATION_COUNT (sizeof OPERATIONS / sizeof OPERATIONS[0])

const char *enr_est_operation_name(enr_est_operation op)
{
    for (size_t i = 0; i < OPERATION_COUNT; i++)
        if (OPERATIONS[i].op == op)
            return OPERATIONS[i].name;
    return "unknown";
}

bool enr_est_operation_is_post(enr_est_operation op)
{
    for (size_t i = 0; i < OPERATION_COUNT; i++)
        if (OPERATIONS[i].op == op)
            return OPERATIONS[i].post;
    return false;
}

/* An enrollment group id as the store keeps them, checked here too so a
 * label never reaches a query or a log unchecked. */
static bool label_valid(const char *s, size_t len)
{
    if (len == 0 || len > ENR_EST_LABEL_MAX)
        return false;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (!isalnum(c) && c != '-' && c != '.' && c != '_' && c != ':')
            return false;
    }
    return true;
}

enr_est_reason enr_est_path_parse(const char *path, enr_est_path *out)
{
    memset(out, 0, sizeof *out);
    size_t prefix = strlen(ENR_EST_PREFIX);
    if (path == NULL || strncmp(path, ENR_EST_PREFIX, prefix) != 0 || (path[prefix] != '/' && path[prefix] != '\0'))
        return ENR_EST_NOT_EST;
    const char *rest = path[prefix] == '/' ? path + prefix + 1 : path + prefix;
    const char *slash = strchr(rest, '/');
    const char *op = rest;
    if (slash != NULL) {
        if (strchr(slash + 1, '/') != NULL)
            return ENR_EST_UNKNOWN_OPERATION;
        if (!label_valid(rest, (size_t)(slash - rest)))
            return ENR_EST_BAD_LABEL;
        memcpy(out->label, rest, (size_t)(slash - rest));
        out->label[slash - rest] = '\0';
        op = slash + 1;
    }
    for (size_t i = 0; i < OPERATION_COUNT; i++) {
        if (strcmp(op, OPERATIONS[i].name) == 0) {
            out->operation = OPERATIONS[i].op;
            return ENR_EST_OK;
        }
    }
    return ENR_EST_UNKNOWN_OPERATION;
}

static int base64_value(unsigned char c)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    return c == '+' ? 62 : c == '/' ? 63 : -1;
}

enr_est_reason enr_est_body_decode(const char *body, size_t len, unsigned char **der, size_t *der_len,
                                   enr_error *err)
{
    *der = NULL;
    *der_len = 0;
    if (len > ENR_EST_BODY_MAX) {
        enr_error_set(err, ENR_E_PARSE, "the body is %zu bytes; at most %zu are read", len, ENR_EST_BODY_MAX);
        return ENR_EST_BODY_TOO_LARGE;
    }
    /* White space between characters is allowed (RFC 8951 §3); padding
     * only at the end. */
    char *compact = malloc(len + 1);
    if (compact == NULL) {
        enr_error_set(err, ENR_E_NOMEM, "out of memory");
        return ENR_EST_BAD_BODY;
    }
    size_t n = 0, pad = 0;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)body[i];
        if (c == ' ' || c == '\t' || c == '\r' || c == '\n')
            continue;
        if (c == '=' ? pad >= 2 : (base64_value(c) < 0 || pad > 0)) {
            free(compact);
            enr_error_set(err, ENR_E_PARSE, "byte %zu of the body (0x%02x) is not base64", i, c);
            return ENR_EST_BAD_BODY;
        }
        pad += c == '=';
        compact[n++] = (char)c;
    }
    if (n == 0 || n % 4 != 0) {
        free(compact);
        enr_error_set(err, ENR_E_PARSE, n == 0 ? "the body is empty: it must be base64 of DER"
                                               : "the body's base64 is cut short (%zu characters, not a multiple of 4)",
                      n);
        return ENR_EST_BAD_BODY;
    }
    unsigned char *out = malloc(n / 4 * 3 + 1);
    int got = out != NULL ? EVP_DecodeBlock(out, (const unsigned char *)compact, (int)n) : -1;
    free(compact);
    if (got < 0 || (size_t)got < pad) {
        free(out);
        enr_error_set(err, ENR_E_PARSE, "the body is not base64");
        return ENR_EST_BAD_BODY;
    }
    size_t dlen = (size_t)got - pad, object = 0, bad = 0;
    bool bad_der = enr_der_check(out, dlen, &object, &bad, err) != ENR_OK;
    if (bad_der)
        enr_error_prefix(err, "the body's DER");
    else if (object != dlen)
        enr_error_set(err, ENR_E_PARSE, "%zu bytes follow the DER value in the body", dlen - object);
    if (bad_der || object != dlen) {
        free(out);
        return ENR_EST_BAD_BODY;
    }
    *der = out;
    *der_len = dlen;
    return ENR_EST_OK;
}

enr_code enr_est_base64_lines(const unsigned char *der, size_t len, char **out, size_t *out_len, enr_error *err)
{
    *out = NULL;
    *out_len = 0;
    size_t lines = (len + 47) / 48;
    char *text = malloc(lines * 66 + 1);
    if (text == NULL || len > INT32_MAX)
        return free(text), enr_error_set(err, ENR_E_NOMEM, "out of memory");
    size_t n = 0;
    for (size_t at = 0; at < len; at += 48) {
        size_t chunk = len - at < 48 ? len - at : 48;
        n += (size_t)EVP_EncodeBlock((unsigned char *)text + n, der + at, (int)chunk);
        text[n++] = '\r';
        text[n++] = '\n';
    }
    text[n] = '\0';
    *out = text;
    *out_len = n;
    return ENR_OK;
}

enr_code enr_est_certs_only(STACK_OF(X509) *certs, unsigned char **der, size_t *len, enr_error *err)
{
    *der = NULL;
    *len = 0;
    /* A SignedData with no signers and no content: what `openssl
     * crl2pkcs7 -nocrl` makes, and what every EST client reads. */
    PKCS7 *p7 = PKCS7_new();
    bool ok = p7 != NULL && PKCS7_set_type(p7, NID_pkcs7_signed) == 1;
    if (ok) /* the degenerate form: the content type, no content (RFC 5751 §3.8) */
        p7->d.sign->contents->type = OBJ_nid2obj(NID_pkcs7_data);
    for (int i = 0; ok && i < sk_X509_num(certs); i++)
        ok = PKCS7_add_certificate(p7, sk_X509_value(certs, i)) == 1;
    unsigned char *out = NULL;
    int n = ok ? i2d_PKCS7(p7, &out) : -1;
    PKCS7_free(p7);
    if (n <= 0)
        return enr_error_openssl(err, ENR_E_CRYPTO, "cannot make a certs-only SignedData");
    *der = out; /* OPENSSL_malloc'd: OPENSSL_free */
    *len = (size_t)n;
    return ENR_OK;
}

enr_code enr_est_certs_only_der(const unsigned char *const *certs, const size_t *lens, size_t count,
                                unsigned char **der, size_t *len, enr_error *err)
{
    STACK_OF(X509) *stack = sk_X509_new_null();
    enr_code rc = stack != NULL ? ENR_OK : enr_error_set(err, ENR_E_NOMEM, "out of memory");
    for (size_t i = 0; rc == ENR_OK && i < count; i++) {
        const unsigned char *p = certs[i];
        X509 *x = lens[i] <= LONG_MAX ? d2i_X509(NULL, &p, (long)lens[i]) : NULL;
        if (x == NULL || sk_X509_push(stack, x) <= 0) {
            X509_free(x);
            rc = enr_error_openssl(err, ENR_E_PARSE, "certificate %zu of the chain does not parse", i + 1);
        }
    }
    if (rc == ENR_OK)
        rc = enr_est_certs_only(stack, der, len, err);
    sk_X509_pop_free(stack, X509_free);
    return rc;
}

/* The signature algorithm that goes with a key type (what a device
 * should sign its CSR with). */
static const char *signature_oid(enr_key_type t)
{
    switch (t) {
    case ENR_KEY_EC_P256: return "1.2.840.10045.4.3.2";  /* ecdsa-with-SHA256 */
    case ENR_KEY_EC_P384: return "1.2.840.10045.4.3.3";  /* ecdsa-with-SHA384 */
    case ENR_KEY_ED25519: return "1.3.101.112";          /* Ed25519 */
    default: return "1.2.840.113549.1.1.11";             /* sha256WithRSAEncryption */
    }
}

enr_code enr_est_csrattrs(const char *key_types, unsigned char **der, size_t *len, enr_error *err)
{
    *der = NULL;
    *len = 0;
    /* OpenSSL's ASN1_generate_nconf writes the DER from this description:
     * CsrAttrs ::= SEQUENCE OF AttrOrOID (RFC 7030 §4.5.2). */
    char conf[2048], curves[512] = "";
    int at = snprintf(conf, sizeof conf, "[attrs]\n");
    int items = 0, curve_count = 0;
    bool rsa = false, ed25519 = false, have_first = false;
    enr_key_type first = ENR_KEY_EC_P256;
    char list[ENR_STORE_KEY_TYPES_MAX + 1], *save = NULL;
    snprintf(list, sizeof list, "%s", key_types != NULL ? key_types : "");
    for (char *t = strtok_r(list, ",", &save); t != NULL; t = strtok_r(NULL, ",", &save)) {
        enr_key_type kt;
        if (enr_key_type_parse(t, &kt, err) != ENR_OK)
            return err->code;
        if (!have_first)
            first = kt, have_first = true;
        const char *curve = kt == ENR_KEY_EC_P256 ? "1.2.840.10045.3.1.7" : kt == ENR_KEY_EC_P384 ? "1.3.132.0.34" : NULL;
        if (curve != NULL && strstr(curves, curve) == NULL)
            snprintf(curves + strlen(curves), sizeof curves - strlen(curves), "c%d = OID:%s\n", curve_count++, curve);
        rsa = rsa || (curve == NULL && kt != ENR_KEY_ED25519);
        ed25519 = ed25519 || kt == ENR_KEY_ED25519;
    }
    if (curve_count > 0)
        at += snprintf(conf + at, sizeof conf - (size_t)at, "a%d = SEQUENCE:ec\n", items++);
    if (rsa)
        at += snprintf(conf + at, sizeof conf - (size_t)at, "a%d = OID:1.2.840.113549.1.1.1\n", items++);
    if (ed25519)
        at += snprintf(conf + at, sizeof conf - (size_t)at, "a%d = OID:1.3.101.112\n", items++);
    if (have_first && first != ENR_KEY_ED25519)
        at += snprintf(conf + at, sizeof conf - (size_t)at, "a%d = OID:%s\n", items++, signature_oid(first));
    /* The subject's CN carries the registration id. */
    at += snprintf(conf + at, sizeof conf - (size_t)at, "a%d = OID:2.5.4.3\n", items++);
    if (curve_count > 0)
        at += snprintf(conf + at, sizeof conf - (size_t)at,
                       "[ec]\ntype = OID:1.2.840.10045.2.1\nvalues = SET:curves\n[curves]\n%s", curves);
    if ((size_t)at >= sizeof conf)
        return enr_error_set(err, ENR_E_INTERNAL, "the CSR attributes do not fit");
    CONF *cnf = NCONF_new(NULL);
    BIO *bio = BIO_new_mem_buf(conf, at);
    long line = 0;
    ASN1_TYPE *t = NULL;
    if (cnf != NULL && bio != NULL && NCONF_load_bio(cnf, bio, &line) > 0)
        t = ASN1_generate_nconf("SEQUENCE:attrs", cnf);
    unsigned char *out = NULL;
    int n = t != NULL ? i2d_ASN1_TYPE(t, &out) : -1;
    ASN1_TYPE_free(t);
    BIO_free(bio);
    NCONF_free(cnf);
    if (n <= 0)
        return enr_error_openssl(err, ENR_E_CRYPTO, "cannot encode the CSR attributes");
    *der = out; /* OPENSSL_free */
    *len = (size_t)n;
    return ENR_OK;
}

void enr_est_secret_hash(const char *secret, size_t len, char out[ENR_STORE_SHA256_HEX + 1])
{
    unsigned char md[32];
    unsigned int mdlen = 0;
    if (EVP_Digest(secret, len, md, &mdlen, EVP_sha256(), NULL) != 1 || mdlen != sizeof md) {
        out[0] = '\0';
        return;
    }
    for (size_t i = 0; i < sizeof md; i++)
        snprintf(out + 2 * i, 3, "%02x", md[i]);
    OPENSSL_cleanse(md, sizeof md);
}

enr_code enr_est_secret_new(char out[64], enr_error *err)
{
    unsigned char raw[32];
    if (RAND_bytes(raw, sizeof raw) != 1)
        return enr_error_openssl(err, ENR_E_CRYPTO, "no randomness for a secret");
    EVP_EncodeBlock((unsigned char *)out, raw, sizeof raw); /* 44 characters and a NUL */
    OPENSSL_cleanse(raw, sizeof raw);
    return ENR_OK;
}

bool enr_est_basic_parse(const char *header, char *buf, size_t cap, const char **user, const char **password)
{
    *user = *password = NULL;
    if (header == NULL || strncasecmp(header, "Basic ", 6) != 0)
        return false;
    const char *b64 = header + 6;
    while (*b64 == ' ')
        b64++;
    size_t n = strlen(b64);
    while (n > 0 && b64[n - 1] == ' ')
        n--;
    if (n == 0 || n % 4 != 0 || n / 4 * 3 + 1 > cap)
        return false;
    for (size_t i = 0; i < n; i++)
        if (base64_value((unsigned char)b64[i]) < 0 && !(b64[i] == '=' && i + 2 >= n))
            return false;
    size_t pad = (size_t)(b64[n - 1] == '=') + (size_t)(b64[n - 2] == '=');
    int got = EVP_DecodeBlock((unsigned char *)buf, (const unsigned char *)b64, (int)n);
    if (got < 0 || (size_t)got < pad)
        return false;
    size_t len = (size_t)got - pad;
    buf[len] = '\0';
    if (memchr(buf, '\0', len) != NULL) {
        OPENSSL_cleanse(buf, cap);
        return false;
    }
    char *colon = strchr(buf, ':');
    if (colon == NULL) {
        OPENSSL_cleanse(buf, cap);
        return false;
    }
    *colon = '\0';
    *user = buf;
    *password = colon + 1;
    return true;
}
