#include "enroll/input.h"

#include <openssl/asn1.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#define DER_MAX_DEPTH 32

const char *enr_encoding_name(enr_encoding enc)
{
    switch (enc) {
    case ENR_ENCODING_DER: return "der";
    case ENR_ENCODING_PEM: return "pem";
    case ENR_ENCODING_BASE64: return "base64";
    }
    return "unknown";
}

void enr_decoded_free(enr_decoded *d)
{
    if (d == NULL)
        return;
    free(d->der);
    d->der = NULL;
    d->der_len = 0;
}

static bool is_space(unsigned char c)
{
    return c == ' ' || c == '\t' || c == '\r' || c == '\n' || c == '\f' || c == '\v';
}

static bool is_b64(unsigned char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '+' ||
           c == '/';
}

static enr_code fail_at(enr_error *err, size_t *bad_offset, size_t offset, const char *what,
                        const char *detail)
{
    if (bad_offset != NULL)
        *bad_offset = offset;
    return enr_error_set(err, ENR_E_PARSE, "%s at byte %zu: %s", what, offset, detail);
}

/* Strict base64: alphabet, whitespace anywhere, '=' only as final padding.
 * `base` is added to offsets so messages point into the caller's input. */
static enr_code base64_decode(const unsigned char *in, size_t len, size_t base, unsigned char **out,
                              size_t *out_len, size_t *bad_offset, enr_error *err)
{
    unsigned char *clean = malloc(len + 1);
    if (clean == NULL)
        return enr_error_set(err, ENR_E_NOMEM, "out of memory");
    size_t n = 0, pad = 0, last_offset = base;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = in[i];
        if (is_space(c))
            continue;
        if (c == '=') {
            if (pad == 2) {
                free(clean);
                return fail_at(err, bad_offset, base + i, "base64 error",
                               "more than two '=' padding characters");
            }
            pad++;
        } else if (is_b64(c)) {
            if (pad > 0) {
                free(clean);
                return fail_at(err, bad_offset, base + i, "base64 error",
                               "data after '=' padding");
            }
        } else {
            free(clean);
            return fail_at(err, bad_offset, base + i, "base64 error",
                           "character outside the base64 alphabet");
        }
        clean[n++] = c;
        last_offset = base + i;
    }
    if (n == 0) {
        free(clean);
        return fail_at(err, bad_offset, base, "base64 error",
                       "no base64 data (empty body)");
    }
    if (n % 4 != 0) {
        free(clean);
        return fail_at(err, bad_offset, last_offset + 1, "base64 error",
                       "length is not a multiple of 4 (truncated?)");
    }
    unsigned char *der = malloc(n / 4 * 3 + 1);
    if (der == NULL) {
        free(clean);
        return enr_error_set(err, ENR_E_NOMEM, "out of memory");
    }
    if (n > (size_t)INT32_MAX) {
        free(clean);
        free(der);
        return enr_error_set(err, ENR_E_PARSE, "base64 input too large");
    }
    int got = EVP_DecodeBlock(der, clean, (int)n);
    free(clean);
    if (got < 0 || (size_t)got < pad) {
        free(der);
        return fail_at(err, bad_offset, base, "base64 error",
                       "the data does not decode");
    }
    *out = der;
    *out_len = (size_t)got - pad;
    return ENR_OK;
}

static const char *der_reason(int ret, long content_len, size_t remaining, size_t header_len)
{
    if (ret == 0x21)
        return "indefinite length is not allowed in DER";
    if (ret & 0x80) {
        if (content_len >= 0 && (size_t)content_len + header_len > remaining)
            return "length runs past the end of the data (truncated, or a bad length field)";
        return "bad tag or length encoding";
    }
    return "malformed";
}

static enr_code der_walk(const unsigned char *base, const unsigned char *p, size_t len, int depth,
                         size_t *consumed, size_t *bad_offset, enr_error *err)
{
    if (depth > DER_MAX_DEPTH)
        return fail_at(err, bad_offset, (size_t)(p - base), "DER error",
                       "nesting too deep");
    if (len < 2)
        return fail_at(err, bad_offset, (size_t)(p - base), "DER error",
                       "truncated: no room for a tag and length");
    const unsigned char *q = p;
    long content_len = 0;
    int tag = 0, xclass = 0;
    long max = len > (size_t)LONG_MAX ? LONG_MAX : (long)len;
    int ret = ASN1_get_object(&q, &content_len, &tag, &xclass, max);
    if (ret & 0x80)
        ERR_clear_error(); /* it queues an error only then; clearing costs more than the walk */
    size_t header_len = (size_t)(q - p);
    if (ret == 0 && tag == 0 && xclass == V_ASN1_UNIVERSAL)
        return fail_at(err, bad_offset, (size_t)(p - base), "DER error",
                       "end-of-contents octets (tag 0) are not allowed in DER");
    if ((ret & 0x80) || ret == 0x21)
        return fail_at(err, bad_offset, (size_t)(p - base), "DER error",
                       der_reason(ret, content_len, len, header_len));
    size_t clen = (size_t)content_len;
    if (clen > len - header_len)
        return fail_at(err, bad_offset, (size_t)(p - base), "DER error",
                       "length runs past the end of the data");
    if (ret & V_ASN1_CONSTRUCTED) {
        size_t off = 0;
        while (off < clen) {
            size_t used = 0;
            enr_code rc = der_walk(base, q + off, clen - off, depth + 1, &used, bad_offset, err);
            if (rc != ENR_OK)
                return rc;
            off += used;
        }
    }
    *consumed = header_len + clen;
    return ENR_OK;
}

enr_code enr_der_check(const unsigned char *der, size_t len, size_t *object_len, size_t *bad_offset,
                       enr_error *err)
{
    if (len == 0)
        return fail_at(err, bad_offset, 0, "DER error", "no data");
    size_t used = 0;
    enr_code rc = der_walk(der, der, len, 0, &used, bad_offset, err);
    if (rc == ENR_OK && object_len != NULL)
        *object_len = used;
    return rc;
}

static const unsigned char *find(const unsigned char *hay, size_t len, const char *needle)
{
    size_t n = strlen(needle);
    if (n > len)
        return NULL;
    for (size_t i = 0; i + n <= len; i++)
        if (memcmp(hay + i, needle, n) == 0)
            return hay + i;
    return NULL;
}

static size_t skip_space(const unsigned char *in, size_t len, size_t i)
{
    while (i < len && is_space(in[i]))
        i++;
    return i;
}

static enr_code decode_pem(const unsigned char *in, size_t len, const unsigned char *begin,
                           enr_decoded *out, size_t *bad_offset, enr_error *err)
{
    static const char BEGIN[] = "-----BEGIN ";
    size_t i = (size_t)(begin - in) + sizeof BEGIN - 1;
    size_t label_start = i;
    while (i < len && in[i] != '-' && in[i] != '\n' && in[i] != '\r')
        i++;
    size_t label_len = i - label_start;
    if (i + 5 > len || memcmp(in + i, "-----", 5) != 0 || label_len == 0 ||
        label_len >= sizeof out->pem_label)
        return fail_at(err, bad_offset, (size_t)(begin - in), "PEM error",
                       "malformed BEGIN line (expected -----BEGIN LABEL-----)");
    memcpy(out->pem_label, in + label_start, label_len);
    out->pem_label[label_len] = '\0';
    out->input_offset = (size_t)(begin - in);
    i += 5;

    char end_line[96];
    snprintf(end_line, sizeof end_line, "-----END %s-----", out->pem_label);
    const unsigned char *end = find(in + i, len - i, "-----END ");
    if (end == NULL)
        return fail_at(err, bad_offset, len, "PEM error",
                       "no -----END line (the file is truncated?)");
    size_t end_off = (size_t)(end - in);
    size_t end_line_len = strlen(end_line);
    if (len - end_off < end_line_len || memcmp(end, end_line, end_line_len) != 0)
        return fail_at(err, bad_offset, end_off, "PEM error",
                       "END line does not match the BEGIN label");

    /* RFC 7468 has no headers, but RFC 1421-style encrypted PEM does; say so plainly. */
    const unsigned char *colon = memchr(in + i, ':', end_off - i);
    if (colon != NULL)
        return fail_at(err, bad_offset, (size_t)(colon - in), "PEM error",
                       "PEM headers (such as Proc-Type) are not supported here");

    enr_code rc = base64_decode(in + i, end_off - i, i, &out->der, &out->der_len, bad_offset, err);
    if (rc != ENR_OK)
        return rc;
    out->encoding = ENR_ENCODING_PEM;
    size_t after = skip_space(in, len, end_off + end_line_len);
    if (after < len) {
        out->trailing_offset = after;
        out->trailing_len = len - after;
    }
    return ENR_OK;
}

/* Text (printable ASCII and whitespace only) is taken as base64, so that a
 * stray character gets a precise complaint instead of "not DER". */
static bool is_text(const unsigned char *in, size_t len)
{
    for (size_t i = 0; i < len; i++)
        if (!is_space(in[i]) && (in[i] < 0x20 || in[i] > 0x7e))
            return false;
    return true;
}

enr_code enr_decode(const unsigned char *in, size_t len, enr_decoded *out, size_t *bad_offset,
                    enr_error *err)
{
    memset(out, 0, sizeof *out);
    if (bad_offset != NULL)
        *bad_offset = 0;
    if (len == 0 || skip_space(in, len, 0) == len)
        return enr_error_set(err, ENR_E_PARSE,
                             "the input is empty: expected PEM, DER or base64 data");

    enr_code rc;
    const unsigned char *begin = find(in, len, "-----BEGIN ");
    if (begin != NULL) {
        rc = decode_pem(in, len, begin, out, bad_offset, err);
    } else if (is_text(in, len)) {
        size_t start = skip_space(in, len, 0);
        out->encoding = ENR_ENCODING_BASE64;
        out->input_offset = start;
        rc = base64_decode(in, len, 0, &out->der, &out->der_len, bad_offset, err);
    } else if (in[0] == 0x30) {
        out->encoding = ENR_ENCODING_DER;
        out->der = malloc(len);
        if (out->der == NULL)
            return enr_error_set(err, ENR_E_NOMEM, "out of memory");
        memcpy(out->der, in, len);
        out->der_len = len;
        rc = ENR_OK;
    } else {
        return fail_at(err, bad_offset, 0, "unrecognised input",
                       "not PEM (no -----BEGIN line), not base64 text, and not DER (no SEQUENCE tag)");
    }
    if (rc != ENR_OK) {
        enr_decoded_free(out);
        return rc;
    }

    size_t object_len = 0, der_bad = 0;
    rc = enr_der_check(out->der, out->der_len, &object_len, &der_bad, err);
    if (rc != ENR_OK) {
        if (bad_offset != NULL)
            *bad_offset = der_bad;
        if (out->encoding != ENR_ENCODING_DER)
            enr_error_prefix(err, "after %s decoding", enr_encoding_name(out->encoding));
        enr_decoded_free(out);
        return rc;
    }
    if (object_len < out->der_len) {
        /* Extra bytes inside the decoded DER are reported even when text also
         * follows a PEM block: they are the more surprising of the two. */
        out->trailing_offset = object_len;
        out->trailing_len = out->der_len - object_len;
        out->trailing_in_der = 1;
        out->der_len = object_len;
    }
    return ENR_OK;
}

enr_code enr_base64_encode(const unsigned char *der, size_t len, char **out, enr_error *err)
{
    *out = NULL;
    if (len > (size_t)INT32_MAX / 2)
        return enr_error_set(err, ENR_E_USAGE, "object too large to encode");
    char *b64 = malloc((len + 2) / 3 * 4 + 1);
    if (b64 == NULL)
        return enr_error_set(err, ENR_E_NOMEM, "out of memory");
    EVP_EncodeBlock((unsigned char *)b64, der, (int)len);
    *out = b64;
    return ENR_OK;
}

enr_code enr_pem_encode(const char *label, const unsigned char *der, size_t len, char **out,
                        enr_error *err)
{
    *out = NULL;
    char *b64;
    enr_code rc = enr_base64_encode(der, len, &b64, err);
    if (rc != ENR_OK)
        return rc;
    size_t b64_len = strlen(b64);
    size_t cap = b64_len + b64_len / 64 + 2 * strlen(label) + 64;
    char *pem = malloc(cap);
    if (pem == NULL) {
        free(b64);
        return enr_error_set(err, ENR_E_NOMEM, "out of memory");
    }
    size_t w = (size_t)snprintf(pem, cap, "-----BEGIN %s-----\n", label);
    for (size_t i = 0; i < b64_len; i += 64) {
        size_t n = b64_len - i < 64 ? b64_len - i : 64;
        memcpy(pem + w, b64 + i, n);
        w += n;
        pem[w++] = '\n';
    }
    snprintf(pem + w, cap - w, "-----END %s-----\n", label);
    free(b64);
    *out = pem;
    return ENR_OK;
}
