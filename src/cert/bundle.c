/* Splitting an input into DER objects: a PEM bundle block by block, or one
 * DER / base64 object, with byte offsets into the whole input in every
 * complaint. enr_decode does the decoding of each object. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cert/cert_internal.h"
#include "enroll/fileio.h"

static const char PEM_BEGIN[] = "-----BEGIN ";

void enr_bundle_free(enr_bundle *bundle)
{
    if (bundle == NULL)
        return;
    for (size_t i = 0; i < bundle->count; i++)
        free(bundle->items[i].der);
    free(bundle->items);
    bundle->items = NULL;
    bundle->count = 0;
}

void enr_bundle_where(const enr_bundle *bundle, size_t index, const char *noun, char *out,
                      size_t out_len)
{
    if (bundle->encoding != ENR_ENCODING_PEM)
        snprintf(out, out_len, "the %s input", bundle->encoding == ENR_ENCODING_DER ? "DER" : "base64");
    else
        snprintf(out, out_len, "%s %zu (PEM block at byte %zu)", noun, index + 1,
                 bundle->items[index].input_offset);
}

/* Linear in `len`: memchr skips to each candidate first byte. */
static const unsigned char *find_text(const unsigned char *hay, size_t len, const char *needle)
{
    size_t n = strlen(needle);
    const unsigned char *p = hay, *end = hay + len;
    while ((size_t)(end - p) >= n) {
        p = memchr(p, needle[0], (size_t)(end - p) - n + 1);
        if (p == NULL)
            return NULL;
        if (memcmp(p, needle, n) == 0)
            return p;
        p++;
    }
    return NULL;
}

static bool is_text_byte(unsigned char c)
{
    /* UTF-8 (>= 0x80) is allowed: bundles often carry names in comments. */
    return c >= 0x20 ? c != 0x7f : (c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v');
}

/* Text around PEM blocks is explanation for people (openssl's "subject=..."
 * lines, "# Issuer:" comments) and is skipped; a boundary line or binary data
 * there means a damaged or mixed-up file, which we say rather than skip. */
static enr_code check_outside_blocks(const unsigned char *in, size_t from, size_t to,
                                     const enr_bundle_kind *kind, enr_error *err)
{
    const unsigned char *stray = find_text(in + from, to - from, "-----END");
    if (stray == NULL)
        stray = find_text(in + from, to - from, "-----BEGIN");
    if (stray != NULL)
        return enr_error_set(err, ENR_E_PARSE,
                             "PEM error at byte %zu: a boundary line outside any block (an END "
                             "without its BEGIN, or a malformed BEGIN line); expected only "
                             "-----BEGIN %s----- blocks",
                             (size_t)(stray - in), kind->labels[0]);
    for (size_t i = from; i < to; i++)
        if (!is_text_byte(in[i]))
            return enr_error_set(err, ENR_E_PARSE,
                                 "PEM error at byte %zu: binary data between PEM blocks (byte "
                                 "0x%02x); a PEM file holds text only",
                                 i, in[i]);
    return ENR_OK;
}

/* enr_decode counts offsets from the start of what it is given. A later block
 * is given from its BEGIN line, so the "at byte N" in its message is moved to
 * count from the start of the whole input. Offsets into decoded DER (the
 * message then begins "after ... decoding") stay as they are. */
static void rebase_message(enr_error *err, size_t base)
{
    static const char AT[] = "at byte ";
    if (err == NULL || strncmp(err->message, "after ", 6) == 0)
        return;
    char *at = strstr(err->message, AT);
    if (at == NULL)
        return;
    char *digits = at + sizeof AT - 1, *rest;
    unsigned long long rel = strtoull(digits, &rest, 10);
    if (rest == digits)
        return;
    char moved[ENR_ERROR_MESSAGE_MAX];
    snprintf(moved, sizeof moved, "%.*s%s%llu%s", (int)(at - err->message), err->message, AT,
             rel + (unsigned long long)base, rest);
    memcpy(err->message, moved, sizeof moved);
}

static bool label_accepted(const enr_bundle_kind *kind, const char *label)
{
    for (size_t i = 0; kind->labels[i] != NULL; i++)
        if (strcmp(kind->labels[i], label) == 0)
            return true;
    return false;
}

static enr_code push_item(enr_bundle *out, size_t *cap, enr_decoded *dec, size_t offset,
                          enr_error *err)
{
    if (out->count == *cap) {
        size_t grown = *cap ? *cap * 2 : 4;
        enr_bundle_item *items = realloc(out->items, grown * sizeof *items);
        if (items == NULL)
            return enr_error_set(err, ENR_E_NOMEM, "out of memory");
        out->items = items;
        *cap = grown;
    }
    out->items[out->count++] = (enr_bundle_item){dec->der, dec->der_len, offset};
    dec->der = NULL; /* now owned by the bundle */
    return ENR_OK;
}

static enr_code single_object(enr_decoded *dec, const enr_bundle_kind *kind, enr_bundle *out,
                              size_t *cap, enr_error *err)
{
    if (dec->trailing_len > 0)
        return enr_error_set(err, ENR_E_PARSE,
                             "%zu bytes of unexpected data after the %s, at %s byte %zu: a %s "
                             "input holds exactly one %s (put several in a PEM bundle)",
                             dec->trailing_len, kind->noun, dec->trailing_in_der ? "DER" : "input",
                             dec->trailing_offset,
                             dec->encoding == ENR_ENCODING_DER ? "DER" : "base64", kind->noun);
    return push_item(out, cap, dec, dec->input_offset, err);
}

/* Checks one decoded PEM block that starts at `block_start` in the input. */
static enr_code check_block(const enr_decoded *dec, size_t block_start, size_t index,
                            const enr_bundle_kind *kind, enr_error *err)
{
    if (!label_accepted(kind, dec->pem_label))
        return enr_error_set(err, ENR_E_PARSE,
                             "PEM block %zu at byte %zu is a '%s', not a %s: this file should "
                             "hold only -----BEGIN %s----- blocks",
                             index + 1, block_start, dec->pem_label, kind->labels[0],
                             kind->labels[0]);
    if (dec->trailing_in_der)
        return enr_error_set(err, ENR_E_PARSE,
                             "PEM block %zu at byte %zu: %zu bytes of unexpected data after the "
                             "%s inside the block, at DER byte %zu",
                             index + 1, block_start, dec->trailing_len, kind->noun,
                             dec->trailing_offset);
    return ENR_OK;
}

/* Where the block after the text at `after` begins (`*next` = len when no
 * block follows), checking the text in between. */
static enr_code find_next_block(const unsigned char *in, size_t len, size_t after,
                                const enr_bundle_kind *kind, size_t *next, enr_error *err)
{
    const unsigned char *begin = find_text(in + after, len - after, PEM_BEGIN);
    *next = begin != NULL ? (size_t)(begin - in) : len;
    return check_outside_blocks(in, after, *next, kind, err);
}

/* Adds the PEM block enr_decode found in the input from `pos` on, and says
 * where the next one starts (`*next` = len when none does). */
static enr_code take_block(const unsigned char *in, size_t len, size_t pos, enr_decoded *dec,
                           const enr_bundle_kind *kind, enr_bundle *out, size_t *cap,
                           size_t *next, enr_error *err)
{
    size_t block_start = pos + dec->input_offset;
    enr_code rc = ENR_OK;
    if (out->count == 0)
        rc = check_outside_blocks(in, 0, block_start, kind, err);
    if (rc == ENR_OK)
        rc = check_block(dec, block_start, out->count, kind, err);
    if (rc == ENR_OK)
        rc = push_item(out, cap, dec, block_start, err);
    if (rc != ENR_OK)
        return rc;
    *next = len;
    if (dec->trailing_len == 0)
        return ENR_OK;
    return find_next_block(in, len, pos + dec->trailing_offset, kind, next, err);
}

static enr_code decode_blocks(const unsigned char *in, size_t len, const enr_bundle_kind *kind,
                              enr_bundle *out, enr_error *err)
{
    size_t cap = 0, pos = 0;
    do { /* at least once: enr_decode has the words for empty input */
        enr_decoded dec;
        enr_code rc = enr_decode(in + pos, len - pos, &dec, NULL, err);
        if (rc != ENR_OK) {
            if (out->count > 0) {
                rebase_message(err, pos);
                enr_error_prefix(err, "PEM block %zu at byte %zu", out->count + 1, pos);
            }
            return rc;
        }
        if (out->count == 0 && dec.encoding != ENR_ENCODING_PEM) {
            out->encoding = dec.encoding;
            rc = single_object(&dec, kind, out, &cap, err);
        } else {
            out->encoding = ENR_ENCODING_PEM;
            rc = take_block(in, len, pos, &dec, kind, out, &cap, &pos, err);
        }
        enr_decoded_free(&dec);
        if (rc != ENR_OK || out->encoding != ENR_ENCODING_PEM)
            return rc;
    } while (pos < len);
    return ENR_OK;
}

enr_code enr_bundle_decode(const unsigned char *in, size_t len, const enr_bundle_kind *kind,
                           enr_bundle *out, enr_error *err)
{
    memset(out, 0, sizeof *out);
    if (len > ENR_INPUT_LIMIT)
        return enr_error_set(err, ENR_E_PARSE,
                             "the input is %zu bytes, more than the %zu-byte limit for a %s file: "
                             "is this the right file?",
                             len, ENR_INPUT_LIMIT, kind->noun);
    enr_code rc = decode_blocks(in, len, kind, out, err);
    if (rc != ENR_OK)
        enr_bundle_free(out);
    return rc;
}
