/* The strict HTTP/1.x response parser (http_client.h). It re-reads the
 * whole buffer on each call: answers are small and bounded, and a parser
 * without saved state cannot get out of step with the bytes. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "enroll/http_client.h"

void enr_http_response_free(enr_http_response *resp)
{
    if (resp == NULL)
        return;
    free(resp->body);
    memset(resp, 0, sizeof *resp);
}

/* Parsing outcome of one step: done, need more bytes, or malformed. */
typedef enum { P_OK, P_MORE, P_BAD } pstate;

typedef struct parser {
    const unsigned char *d;
    size_t len, pos;
    bool eof;
    enr_error *err;
} parser;

static pstate bad(parser *p, size_t at, const char *what)
{
    enr_error_set(p->err, ENR_E_PARSE, "malformed HTTP response at byte %zu: %s", at, what);
    return P_BAD;
}

static bool is_tchar(unsigned char c)
{
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
           (c != 0 && strchr("!#$%&'*+-.^_`|~", c) != NULL);
}

static bool is_field_char(unsigned char c)
{
    return c == ' ' || c == '\t' || (c >= 0x21 && c != 0x7f);
}

/* Finds the CRLF ending the line at p->pos; a bare LF or CR is malformed. */
static pstate line_end(parser *p, size_t limit, size_t *eol)
{
    for (size_t i = p->pos; i < p->len; i++) {
        if (i - p->pos > limit)
            return bad(p, i, "line too long");
        if (p->d[i] == '\n')
            return bad(p, i, "bare LF (lines must end with CRLF)");
        if (p->d[i] == '\r') {
            if (i + 1 == p->len)
                return P_MORE;
            if (p->d[i + 1] != '\n')
                return bad(p, i, "bare CR");
            *eol = i;
            return P_OK;
        }
    }
    return p->len - p->pos > limit ? bad(p, p->len, "line too long") : P_MORE;
}

static bool parse_decimal(const unsigned char *s, size_t n, uint64_t max, uint64_t *out)
{
    if (n == 0 || n > 19)
        return false;
    uint64_t v = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return false;
        v = v * 10 + (uint64_t)(s[i] - '0');
    }
    if (v > max)
        return false;
    *out = v;
    return true;
}

typedef struct head {
    int status;
    bool has_length, chunked;
    uint64_t length;
    long retry_after;
    char content_type[128];
} head;

static bool name_is(const unsigned char *name, size_t n, const char *want)
{
    return strlen(want) == n && strncasecmp((const char *)name, want, n) == 0;
}

static pstate header_field(parser *p, size_t eol, head *h, bool trailer)
{
    const unsigned char *line = p->d + p->pos;
    size_t n = eol - p->pos;
    if (line[0] == ' ' || line[0] == '\t')
        return bad(p, p->pos, "obsolete line folding");
    size_t colon = 0;
    while (colon < n && is_tchar(line[colon]))
        colon++;
    if (colon == 0 || colon == n || line[colon] != ':')
        return bad(p, p->pos + colon, "header field name is not a token followed by ':'");
    size_t vs = colon + 1, ve = n;
    while (vs < ve && (line[vs] == ' ' || line[vs] == '\t'))
        vs++;
    while (ve > vs && (line[ve - 1] == ' ' || line[ve - 1] == '\t'))
        ve--;
    for (size_t i = vs; i < ve; i++)
        if (!is_field_char(line[i]))
            return bad(p, p->pos + i, "control byte in a header value");
    const unsigned char *v = line + vs;
    size_t vn = ve - vs;
    if (trailer)
        return P_OK; /* trailers carry nothing this client uses */
    if (name_is(line, colon, "Content-Length")) {
        uint64_t len;
        if (!parse_decimal(v, vn, UINT64_MAX / 2, &len))
            return bad(p, p->pos + vs, "Content-Length is not a decimal number");
        if (h->has_length && h->length != len)
            return bad(p, p->pos, "two different Content-Length values");
        h->has_length = true;
        h->length = len;
    } else if (name_is(line, colon, "Transfer-Encoding")) {
        if (h->chunked || !name_is(v, vn, "chunked"))
            return bad(p, p->pos + vs, "unsupported Transfer-Encoding (only one 'chunked')");
        h->chunked = true;
    } else if (name_is(line, colon, "Retry-After")) {
        uint64_t s;
        h->retry_after = parse_decimal(v, vn, 86400u * 365u, &s) ? (long)s : -1;
    } else if (name_is(line, colon, "Content-Type")) {
        size_t c = vn < sizeof h->content_type - 1 ? vn : sizeof h->content_type - 1;
        memcpy(h->content_type, v, c);
        h->content_type[c] = '\0';
    }
    return P_OK;
}

static pstate status_line(parser *p, head *h)
{
    size_t eol;
    pstate s = line_end(p, 1024, &eol);
    if (s != P_OK) {
        /* Judge a prefix early so garbage is refused without waiting. */
        size_t n = p->len - p->pos;
        const char *v = "HTTP/1.";
        if (s == P_MORE && memcmp(p->d + p->pos, v, n < 7 ? n : 7) != 0)
            return bad(p, p->pos, "not an HTTP/1.x status line");
        return s;
    }
    const unsigned char *l = p->d + p->pos;
    size_t n = eol - p->pos;
    if (n < 12 || memcmp(l, "HTTP/1.", 7) != 0 || (l[7] != '0' && l[7] != '1') || l[8] != ' ')
        return bad(p, p->pos, "not an HTTP/1.0 or HTTP/1.1 status line");
    uint64_t code;
    if (!parse_decimal(l + 9, 3, 999, &code) || (n > 12 && l[12] != ' '))
        return bad(p, p->pos + 9, "status code is not three digits");
    if (code < 200 || code > 599)
        return bad(p, p->pos + 9, "status code outside 200..599");
    for (size_t i = 13; i < n; i++)
        if (!is_field_char(l[i]))
            return bad(p, p->pos + i, "control byte in the reason phrase");
    h->status = (int)code;
    p->pos = eol + 2;
    return P_OK;
}

static pstate fields(parser *p, head *h, bool trailer, size_t head_start)
{
    for (unsigned count = 0;; count++) {
        size_t eol;
        pstate s = line_end(p, ENR_HTTP_HEAD_MAX, &eol);
        if (s == P_OK && eol - head_start > ENR_HTTP_HEAD_MAX)
            return bad(p, eol, "header section too large");
        if (s == P_MORE && p->len - head_start > ENR_HTTP_HEAD_MAX)
            return bad(p, p->len, "header section too large");
        if (s != P_OK)
            return s;
        if (eol == p->pos) {
            p->pos += 2;
            return P_OK;
        }
        if (count == ENR_HTTP_HEADERS_MAX)
            return bad(p, p->pos, "too many header fields");
        if ((s = header_field(p, eol, h, trailer)) != P_OK)
            return s;
        p->pos = eol + 2;
    }
}

static bool hex_value(unsigned char c, unsigned *v)
{
    if (c >= '0' && c <= '9')
        *v = (unsigned)(c - '0');
    else if (c >= 'a' && c <= 'f')
        *v = (unsigned)(c - 'a' + 10);
    else if (c >= 'A' && c <= 'F')
        *v = (unsigned)(c - 'A' + 10);
    else
        return false;
    return true;
}

/* Chunked body: copies the data into `body` (capacity max_body) unless it
 * is NULL, which only measures and checks it. */
static pstate chunked(parser *p, size_t max_body, unsigned char *body, size_t *body_len)
{
    head trailer_head = {0};
    *body_len = 0;
    for (;;) {
        size_t eol;
        pstate s = line_end(p, 1024, &eol);
        if (s != P_OK)
            return s;
        size_t i = p->pos;
        uint64_t size = 0;
        unsigned v;
        if (i == eol || !hex_value(p->d[i], &v))
            return bad(p, i, "chunk size is not hexadecimal");
        for (; i < eol && hex_value(p->d[i], &v); i++) {
            if (size > (uint64_t)max_body)
                return bad(p, i, "chunk larger than the body limit");
            size = size * 16 + v;
        }
        if (i < eol) {
            /* chunk extensions: ';' then field characters, ignored */
            while (i < eol && (p->d[i] == ' ' || p->d[i] == '\t'))
                i++;
            if (i == eol || p->d[i] != ';')
                return bad(p, i, "junk after the chunk size");
            for (; i < eol; i++)
                if (!is_field_char(p->d[i]))
                    return bad(p, i, "control byte in a chunk extension");
        }
        p->pos = eol + 2;
        if (size == 0)
            return fields(p, &trailer_head, true, p->pos);
        if (size > (uint64_t)(max_body - *body_len))
            return bad(p, p->pos, "body larger than the limit");
        if (p->len - p->pos < size + 2)
            return P_MORE;
        if (body != NULL)
            memcpy(body + *body_len, p->d + p->pos, (size_t)size);
        *body_len += (size_t)size;
        p->pos += (size_t)size;
        if (p->d[p->pos] != '\r' || p->d[p->pos + 1] != '\n')
            return bad(p, p->pos, "chunk data not followed by CRLF");
        p->pos += 2;
    }
}

enr_code enr_http_response_parse(const unsigned char *data, size_t len, bool at_eof,
                                 size_t max_body, enr_http_response *out, bool *complete,
                                 enr_error *err)
{
    if (complete == NULL || out == NULL || (data == NULL && len > 0))
        return enr_error_set(err, ENR_E_USAGE, "enr_http_response_parse: NULL argument");
    *complete = false;
    parser p = {data, len, 0, at_eof, err};
    head h = {.retry_after = -1};
    pstate s = len == 0 ? P_MORE : status_line(&p, &h);
    if (s == P_OK)
        s = fields(&p, &h, false, 0);
    if (s == P_OK && h.chunked && h.has_length)
        s = bad(&p, 0, "both Content-Length and Transfer-Encoding (ambiguous framing)");
    unsigned char *body = NULL;
    size_t body_len = 0;
    if (s == P_OK) {
        bool no_body = h.status == 204 || h.status == 304;
        if (no_body) {
            body_len = 0;
        } else if (h.chunked) {
            /* Measured first: the caller re-parses after every read, and a
             * body-sized allocation each time would be the expensive part. */
            size_t start = p.pos;
            s = chunked(&p, max_body, NULL, &body_len);
            if (s == P_OK) {
                body = malloc(body_len + 1);
                if (body == NULL)
                    return enr_error_set(err, ENR_E_NOMEM, "out of memory for an HTTP body");
                p.pos = start;
                s = chunked(&p, max_body, body, &body_len);
            }
        } else if (h.has_length) {
            if (h.length > max_body)
                s = bad(&p, p.pos, "Content-Length larger than the body limit");
            else if (p.len - p.pos < h.length)
                s = P_MORE;
            else
                body_len = (size_t)h.length;
        } else {
            /* HTTP/1.x lets a body run to the end of the connection, but the
             * end of a TCP connection can be forged (a FIN or RST injected
             * without TLS's close_notify), which would cut the body short
             * unnoticed; the services this client talks to always frame. */
            s = bad(&p, p.pos, "no Content-Length or chunked framing (a body ending at the close is refused)");
        }
        if (s == P_OK && body == NULL) {
            body = malloc(body_len + 1);
            if (body == NULL)
                return enr_error_set(err, ENR_E_NOMEM, "out of memory for an HTTP body");
            if (body_len > 0)
                memcpy(body, p.d + p.pos, body_len);
            p.pos += body_len;
        }
        if (s == P_OK && p.pos != p.len)
            s = bad(&p, p.pos, "bytes after the end of the response");
    }
    if (s == P_MORE && at_eof)
        s = bad(&p, len, "connection closed before the response was complete");
    if (s != P_OK) {
        free(body);
        return s == P_BAD ? ENR_E_PARSE : ENR_OK;
    }
    body[body_len] = '\0';
    memset(out, 0, sizeof *out);
    out->status = h.status;
    out->retry_after = h.retry_after;
    memcpy(out->content_type, h.content_type, sizeof out->content_type);
    out->body = body;
    out->body_len = body_len;
    *complete = true;
    return ENR_OK;
}
