/* Turning outside bytes into one DER object: PEM, DER or headerless base64
 * (the form DPS carries in JSON), detected, with byte offsets in every
 * complaint so a person can find the bad spot. */
#ifndef ENROLL_INPUT_H
#define ENROLL_INPUT_H

#include <stddef.h>

#include "enroll/error.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum enr_encoding {
    ENR_ENCODING_DER = 0,
    ENR_ENCODING_PEM,
    ENR_ENCODING_BASE64 /* base64 DER with no header lines */
} enr_encoding;

const char *enr_encoding_name(enr_encoding enc);

typedef struct enr_decoded {
    enr_encoding encoding;
    unsigned char *der; /* the first DER object found (owned; free with enr_decoded_free) */
    size_t der_len;
    char pem_label[64];     /* PEM only: the word(s) after BEGIN */
    size_t input_offset;    /* where in the input the object's encoding starts */
    size_t trailing_offset; /* where non-whitespace after the object starts, if any */
    size_t trailing_len;    /* 0 when nothing follows the object */
    int trailing_in_der;    /* 1 when the extra bytes are inside the decoded DER */
} enr_decoded;

/* Detects the encoding and decodes the first object. On ENR_E_PARSE the
 * message names the byte offset and `*bad_offset` (if not NULL) receives it:
 * an offset into the input for PEM/base64/DER framing faults, and into the
 * decoded DER when its structure breaks (the message then says "after pem
 * decoding" or "after base64 decoding"). */
enr_code enr_decode(const unsigned char *in, size_t len, enr_decoded *out, size_t *bad_offset,
                    enr_error *err);
void enr_decoded_free(enr_decoded *d);

/* Walks the DER tag-length-value structure of one object (with OpenSSL's
 * ASN1_get_object) and reports the first offset where it breaks. Sets
 * `*object_len` to the length of the first complete top-level object. */
enr_code enr_der_check(const unsigned char *der, size_t len, size_t *object_len,
                       size_t *bad_offset, enr_error *err);

/* Encoders for output. The caller frees the result with free(). */
enr_code enr_base64_encode(const unsigned char *der, size_t len, char **out, enr_error *err);
enr_code enr_pem_encode(const char *label, const unsigned char *der, size_t len, char **out,
                        enr_error *err);

#ifdef __cplusplus
}
#endif
#endif
