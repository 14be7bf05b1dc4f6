/* Hex renderings of identifiers, in the forms people compare them in. */
#include <stdio.h>
#include <stdlib.h>

#include "cert/cert_internal.h"

char *enr_hex(const unsigned char *data, size_t len, bool colons)
{
    char *out = malloc(len * 3 + 1);
    if (out == NULL)
        return NULL;
    const char *digits = colons ? "0123456789ABCDEF" : "0123456789abcdef";
    size_t w = 0;
    for (size_t i = 0; i < len; i++) {
        if (colons && i > 0)
            out[w++] = ':';
        out[w++] = digits[data[i] >> 4];
        out[w++] = digits[data[i] & 0x0f];
    }
    out[w] = '\0';
    return out;
}

char *enr_serial_hex(const ASN1_INTEGER *serial)
{
    int n = serial ? ASN1_STRING_length(serial) : 0;
    bool negative = serial != NULL && ASN1_STRING_type(serial) == V_ASN1_NEG_INTEGER;
    if (n <= 0) {
        char *zero = malloc(3);
        if (zero != NULL)
            snprintf(zero, 3, "00");
        return zero;
    }
    char *hex = enr_hex(ASN1_STRING_get0_data(serial), (size_t)n, false);
    if (hex == NULL)
        return NULL;
    char *out = malloc((size_t)n * 2 + 2);
    if (out != NULL) {
        size_t w = 0;
        if (negative)
            out[w++] = '-';
        for (const char *p = hex; *p != '\0'; p++)
            out[w++] = (char)(*p >= 'a' ? *p - 'a' + 'A' : *p);
        out[w] = '\0';
    }
    free(hex);
    return out;
}
