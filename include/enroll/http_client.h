/* A small blocking HTTPS client on OpenSSL, for the device agent and for
 * `enroll admin --url`: one request per connection, the server always
 * verified against a configured trust anchor (never the system store: a
 * device trusts its provisioning service, not the web PKI), TLS 1.2 or
 * newer, optional client certificate for mTLS, timeouts on every step (and
 * optionally one deadline for a whole request), and a strict response
 * parser with a body limit.
 *
 *     enr_http_client_options o = {.trust_file = "root.pem"};
 *     enr_http_client *c = NULL;
 *     enr_http_response resp = {0};
 *     enr_http_header h[] = {{"Accept", "application/json"}};
 *     enr_http_request req = {"GET", "/x?api-version=1", h, 1, NULL, 0};
 *     if (enr_http_client_new("https://127.0.0.1:8443", &o, &c, &err) == ENR_OK &&
 *         enr_http_client_send(c, &req, &resp, &err) == ENR_OK)
 *         printf("%d %.*s\n", resp.status, (int)resp.body_len, resp.body);
 *     enr_http_response_free(&resp);
 *     enr_http_client_free(c);
 *
 * Writing to a peer that has gone away raises SIGPIPE: programs using this
 * client ignore SIGPIPE (the enroll command does). */
#ifndef ENROLL_HTTP_CLIENT_H
#define ENROLL_HTTP_CLIENT_H

#include <openssl/evp.h>
#include <openssl/x509.h>
#include <stdbool.h>
#include <stddef.h>

#include "enroll/error.h"
#include "enroll/signer.h"
#include "enroll/tls_key.h"

#ifdef __cplusplus
extern "C" {
#endif

#define ENR_HTTP_HOST_MAX 253
#define ENR_HTTP_HEAD_MAX (16u * 1024u)  /* status line + header fields */
#define ENR_HTTP_HEADERS_MAX 64          /* header fields in one response */
#define ENR_HTTP_BODY_DEFAULT_MAX (1024u * 1024u)

/* ---- URLs ---------------------------------------------------------------- */

typedef struct enr_url {
    char host[ENR_HTTP_HOST_MAX + 1]; /* without IPv6 brackets */
    unsigned short port;              /* 443 when not given */
    bool host_is_ip;                  /* checked as an IP SAN, not a DNS name */
    char base_path[256];              /* "" or "/prefix" without a trailing '/' */
} enr_url;

/* "https://host[:port][/prefix]" with host a DNS name, an IPv4 address or a
 * bracketed IPv6 address. Anything else (http:, user info, query, fragment,
 * port 0 or > 65535, characters outside the URL grammar) is ENR_E_USAGE:
 * plain HTTP is refused because the service hands out credentials. */
enr_code enr_url_parse(const char *url, enr_url *out, enr_error *err);
/* The same grammar under another scheme ("mqtts", default port 8883). */
enr_code enr_url_parse_scheme(const char *url, const char *scheme, unsigned short default_port, enr_url *out,
                              enr_error *err);

/* ---- responses ----------------------------------------------------------- */

typedef struct enr_http_response {
    int status;              /* 200..599 */
    long retry_after;        /* Retry-After in whole seconds; -1 when absent or a date */
    char content_type[128];  /* "" when absent */
    unsigned char *body;     /* NUL-terminated one past body_len; never NULL after success */
    size_t body_len;
} enr_http_response;

void enr_http_response_free(enr_http_response *resp);

/* Strict HTTP/1.x response parser over the bytes received so far.
 *  - `*complete` false and ENR_OK: well-formed so far, more bytes needed.
 *  - ENR_OK with `*complete`: `out` is filled (free with enr_http_response_free).
 *  - ENR_E_PARSE: malformed, with the reason and byte offset; `out` untouched.
 * `at_eof` says the peer closed the connection: anything unfinished is then an
 * error. Refused: a body without Content-Length or chunked framing (a body
 * ending at the close could be cut short by a forged TCP FIN); other than
 * HTTP/1.0 or 1.1; status outside 200..599 (1xx included: the client never
 * sends Expect); bare LF line ends; obs-fold; whitespace before ':'; bytes
 * outside VCHAR/SP/HTAB/obs-text in values; a head over ENR_HTTP_HEAD_MAX or
 * more than ENR_HTTP_HEADERS_MAX fields; Content-Length not all digits,
 * repeated with a different value, or together with Transfer-Encoding
 * (the request-smuggling ambiguity); any transfer coding but "chunked";
 * chunk sizes not hex or over the limit; a body over `max_body`; bytes after
 * the end of the message. */
enr_code enr_http_response_parse(const unsigned char *data, size_t len, bool at_eof,
                                 size_t max_body, enr_http_response *out, bool *complete,
                                 enr_error *err);

/* ---- the client ---------------------------------------------------------- */

typedef struct enr_http_client_options {
    const char *trust_file;   /* PEM trust anchor(s) for the server's certificate: this or trust_pem */
    /* Client certificate for mTLS (all NULL: none): a file or objects... */
    const char *client_cert_file;  /* PEM: leaf first, then its chain */
    X509 *client_cert;             /* borrowed; instead of client_cert_file */
    STACK_OF(X509) *client_chain;  /* borrowed; with client_cert */
    /* ...and its key: a file, or a signer (borrowed; it must outlive the
     * client). A signer's key may be in a PKCS#11 token: the handshake is
     * then signed inside the token (tls_key.h), and the key never leaves it. */
    const char *client_key_file;   /* PEM private key, unencrypted */
    enr_signer *client_signer;
    int connect_timeout_ms;   /* 0: 10 s */
    int io_timeout_ms;        /* whole request after connecting; 0: 30 s */
    size_t max_body;          /* 0: ENR_HTTP_BODY_DEFAULT_MAX */
    /* Appended (the fields above keep their meaning): */
    const char *trust_pem;    /* the trust anchor(s) as PEM text in memory (NUL-terminated), for a
                               * caller whose trust comes from a database rather than a file;
                               * exactly one of trust_file and trust_pem. Copied: it may be freed
                               * once the client (or TLS context) is made. */
    int total_timeout_ms;     /* > 0: one deadline for each enr_http_client_send as a whole, name
                               * resolution, connecting, handshake, sending and reading included,
                               * on top of the two above (whichever ends first). For a caller with
                               * a budget of its own (a hook called while a device waits). 0: none */
} enr_http_client_options;

typedef struct enr_http_client enr_http_client;

/* Parses the URL and prepares the TLS context (trust, client credential);
 * no connection is made yet. */
enr_code enr_http_client_new(const char *url, const enr_http_client_options *opts,
                             enr_http_client **out, enr_error *err);
void enr_http_client_free(enr_http_client *client);

typedef struct enr_http_header {
    const char *name;
    const char *value;
} enr_http_header;

typedef struct enr_http_request {
    const char *method;             /* "GET", "PUT", ... */
    const char *path;               /* "/x/y?q=1": appended to the URL's base path */
    const enr_http_header *headers; /* Host, Content-Length, Connection are added */
    size_t header_count;
    const void *body;               /* may be NULL with body_len 0 */
    size_t body_len;
} enr_http_request;

/* The client's TLS context alone, for another protocol over TLS (the
 * device's MQTT transport hands it to libmosquitto): TLS 1.2 or newer, the
 * peer verified against opts->trust_file (or trust_pem), opts's client credential (the
 * timeouts and max_body are not used). With a client_signer, *key_out owns
 * the library context the SSL_CTX lives in: free every user of the SSL_CTX
 * and the SSL_CTX first, then the key (NULL otherwise). */
enr_code enr_tls_client_context_new(const enr_http_client_options *opts, SSL_CTX **ctx_out,
                                    enr_tls_key **key_out, enr_error *err);

/* The client's name check on a verification parameter (an SSL's, or an
 * SSL_CTX's, which each SSL made from it inherits): an IP address against
 * the IP SANs, a name against the DNS SANs only (never the subject CN), a
 * wildcard only as a whole left-most label. */
enr_code enr_tls_expect_host(X509_VERIFY_PARAM *param, const char *host, bool host_is_ip, enr_error *err);

/* Connects (each address in turn), handshakes, sends, reads the whole
 * answer, closes. With total_timeout_ms, the name is resolved on a helper
 * thread so that a stuck resolver cannot hold the caller past the deadline
 * (the thread finishes on its own and frees what it used). Errors:
 * ENR_E_IO for anything a retry might cure (resolution, refused, reset,
 * timeout: a caller tells a timeout by its own clock, past its deadline); ENR_E_VERIFY when the server's
 * certificate does not verify or does not name the host; ENR_E_PARSE for a
 * malformed answer; ENR_E_USAGE for a request with CR/LF in a field. Header
 * values are never echoed into messages (an Authorization header is a
 * credential). Any HTTP status is ENR_OK: the caller judges it. */
enr_code enr_http_client_send(enr_http_client *client, const enr_http_request *req,
                              enr_http_response *resp, enr_error *err);

#ifdef __cplusplus
}
#endif
#endif
