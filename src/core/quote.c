#include "core/quote.h"

#include <string.h>

enr_quoted enr_quote_n(const char *s, size_t len)
{
    enr_quoted q;
    size_t n = len < ENR_QUOTE_MAX ? len : ENR_QUOTE_MAX;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        q.text[i] = c >= 0x20 && c < 0x7f ? (char)c : '?';
    }
    if (len > ENR_QUOTE_MAX) {
        memcpy(q.text + n, "...", 3);
        n += 3;
    }
    q.text[n] = '\0';
    return q;
}

enr_quoted enr_quote(const char *s)
{
    return enr_quote_n(s, strnlen(s, ENR_QUOTE_MAX + 1));
}
