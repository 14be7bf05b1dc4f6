/* The pre-provisioning hook client (aws_hook.h): the request document, one
 * POST over the blocking HTTPS client with one total deadline, and a strict
 * reader for the answer. Every way the hook can fail to say yes ends in a
 * typed reason; the deadline decides "timeout" by the clock, not by what a
 * lower layer's message says. */
#include "enroll/aws_hook.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/quote.h"
#include "enroll/aws_template.h"
#include "enroll/http_client.h"
#include "enroll/store.h"

void enr_aws_hook_answer_clear(enr_aws_hook_answer *a)
{
    if (a == NULL)
        return;
    json_decref(a->parameter_overrides);
    a->parameter_overrides = NULL;
    a->allow = false;
}

/* ---- the answer ---------------------------------------------------------- */

static enr_code check_overrides(const json_t *o, enr_error *err)
{
    if (!json_is_object(o))
        return enr_error_set(err, ENR_E_PARSE, "parameterOverrides is %s, not an object", enr_json_kind(o));
    if (json_object_size(o) > ENR_AWS_PARAMETERS_MAX)
        return enr_error_set(err, ENR_E_PARSE, "parameterOverrides has %zu entries, over the %d allowed",
                             json_object_size(o), ENR_AWS_PARAMETERS_MAX);
    const char *k;
    json_t *v;
    json_object_foreach((json_t *)o, k, v)
    {
        size_t klen = strlen(k); /* jansson refuses NUL in keys */
        if (klen == 0 || klen > ENR_AWS_NAME_MAX)
            return enr_error_set(err, ENR_E_PARSE, "parameterOverrides: a name of %zu bytes (1 to %d allowed)",
                                 klen, ENR_AWS_NAME_MAX);
        if (!json_is_string(v))
            return enr_error_set(err, ENR_E_PARSE, "parameterOverrides.%s is %s, not a string",
                                 enr_quote(k).text, enr_json_kind(v));
        size_t vlen = json_string_length(v);
        if (vlen > ENR_AWS_STRING_MAX)
            return enr_error_set(err, ENR_E_PARSE, "parameterOverrides.%s is %zu bytes, over the %d allowed",
                                 enr_quote(k).text, vlen, ENR_AWS_STRING_MAX);
        /* jansson refuses \u0000 unless asked (JSON_ALLOW_NUL); kept as a
         * check because a NUL would cut the value short for C readers. */
        if (memchr(json_string_value(v), '\0', vlen) != NULL)
            return enr_error_set(err, ENR_E_PARSE, "parameterOverrides.%s holds NUL", enr_quote(k).text);
    }
    return ENR_OK;
}

enr_code enr_aws_hook_answer_parse(const char *body, size_t len, enr_aws_hook_answer *out, enr_error *err)
{
    if (out == NULL || (body == NULL && len > 0))
        return enr_error_set(err, ENR_E_USAGE, "enr_aws_hook_answer_parse: NULL argument");
    out->allow = false;
    out->parameter_overrides = NULL;
    if (len > ENR_AWS_HOOK_ANSWER_MAX)
        return enr_error_set(err, ENR_E_PARSE, "the answer is %zu bytes, over the %zu allowed", len,
                             ENR_AWS_HOOK_ANSWER_MAX);
    if (len == 0)
        return enr_error_set(err, ENR_E_PARSE, "the answer is empty, not a JSON object");
    json_error_t jerr;
    /* JSON_DECODE_ANY: "true" is "not an object" rather than a syntax error. */
    json_t *doc = json_loadb(body, len, JSON_REJECT_DUPLICATES | JSON_DECODE_ANY, &jerr);
    if (doc == NULL) {
        if (json_error_code(&jerr) == json_error_out_of_memory)
            return enr_error_set(err, ENR_E_NOMEM, "out of memory");
        /* jansson's text may hold a piece of the answer ("near '...'"). */
        return enr_error_set(err, ENR_E_PARSE, "the answer is not JSON: %s (line %d, column %d)",
                             enr_quote(jerr.text).text, jerr.line, jerr.column);
    }
    enr_code rc = ENR_OK;
    if (!json_is_object(doc)) {
        rc = enr_error_set(err, ENR_E_PARSE, "the answer is %s, not a JSON object", enr_json_kind(doc));
        goto done;
    }
    json_t *allow = json_object_get(doc, "allowProvisioning");
    if (allow == NULL) {
        rc = enr_error_set(err, ENR_E_PARSE, "the answer has no allowProvisioning");
        goto done;
    }
    if (!json_is_boolean(allow)) {
        rc = enr_error_set(err, ENR_E_PARSE, "allowProvisioning is %s, not a boolean", enr_json_kind(allow));
        goto done;
    }
    json_t *overrides = json_object_get(doc, "parameterOverrides");
    if (json_is_null(overrides))
        overrides = NULL; /* as absent (what a function returning None for it means) */
    if (overrides != NULL && (rc = check_overrides(overrides, err)) != ENR_OK)
        goto done;
    out->allow = json_is_true(allow);
    out->parameter_overrides = json_incref(overrides); /* outlives doc */
done:
    json_decref(doc);
    return rc;
}

/* ---- the call ------------------------------------------------------------ */

static long long now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* The request document, in AWS's order. ENR_E_USAGE for input that is not
 * text (jansson takes UTF-8 only) or parameters that are not strings. */
static enr_code request_body(const enr_aws_hook_input *in, char **out, enr_error *err)
{
    const char *names[] = {"claimCertificateId", "certificateId", "certificatePem", "templateArn", "clientId"};
    const char *values[] = {in->claim_certificate_id, in->certificate_id, in->certificate_pem, in->template_arn,
                            in->client_id};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        if (values[i] == NULL)
            return enr_error_set(err, ENR_E_USAGE, "pre-provisioning hook: no %s given", names[i]);
    if (in->parameters != NULL) {
        if (!json_is_object(in->parameters))
            return enr_error_set(err, ENR_E_USAGE, "pre-provisioning hook: parameters is %s, not an object",
                                 enr_json_kind(in->parameters));
        const char *k;
        json_t *v;
        json_object_foreach((json_t *)in->parameters, k, v)
        {
            if (!json_is_string(v))
                return enr_error_set(err, ENR_E_USAGE, "pre-provisioning hook: parameter %s is %s, not a string",
                                     enr_quote(k).text, enr_json_kind(v));
        }
    }
    json_t *doc = json_object();
    if (doc == NULL)
        return enr_error_set(err, ENR_E_NOMEM, "out of memory");
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        json_t *s = json_string(values[i]);
        if (s == NULL) {
            json_decref(doc);
            return enr_error_set(err, ENR_E_USAGE, "pre-provisioning hook: %s is not UTF-8 text", names[i]);
        }
        if (json_object_set_new(doc, names[i], s) != 0) {
            json_decref(doc);
            return enr_error_set(err, ENR_E_NOMEM, "out of memory");
        }
    }
    json_t *params = in->parameters != NULL ? json_deep_copy(in->parameters) : json_object();
    if (params == NULL || json_object_set_new(doc, "parameters", params) != 0) {
        json_decref(doc);
        return enr_error_set(err, ENR_E_NOMEM, "out of memory");
    }
    *out = json_dumps(doc, JSON_COMPACT);
    json_decref(doc);
    if (*out == NULL)
        return enr_error_set(err, ENR_E_NOMEM, "out of memory");
    return ENR_OK;
}

/* "https://host[:port]" and the path of a URL enr_url_parse accepted: the
 * request goes to exactly the URL's path (the client would add a '/' after
 * its base path, and drops a trailing one). */
static enr_code split_url(const char *url, char *origin, size_t cap, const char **path, enr_error *err)
{
    const char *slash = strchr(url + 8, '/'); /* after "https://"; a host holds no '/' */
    size_t n = slash != NULL ? (size_t)(slash - url) : strlen(url);
    if (n >= cap)
        return enr_error_set(err, ENR_E_USAGE, "the URL's host part is too long");
    memcpy(origin, url, n);
    origin[n] = '\0';
    *path = slash != NULL ? slash : "/";
    return ENR_OK;
}

enr_code enr_aws_hook_call(const enr_aws_hook_target *t, const enr_aws_hook_input *in, enr_aws_hook_answer *out,
                           enr_error *err)
{
    /* The deadline runs from here: everything below counts against it. */
    long long start = now_ms();
    if (t == NULL || in == NULL || out == NULL || t->url == NULL || t->ca_pem == NULL)
        return enr_error_set(err, ENR_E_USAGE, "enr_aws_hook_call: NULL argument");
    out->allow = false;
    out->parameter_overrides = NULL;
    int timeout = t->timeout_ms == 0 ? ENR_AWS_HOOK_TIMEOUT_DEFAULT_MS : t->timeout_ms;
    if (timeout < ENR_AWS_HOOK_TIMEOUT_MIN_MS || timeout > ENR_AWS_HOOK_TIMEOUT_MAX_MS)
        return enr_error_set(err, ENR_E_USAGE, "pre-provisioning hook: timeout %d ms is outside %d..%d", timeout,
                             ENR_AWS_HOOK_TIMEOUT_MIN_MS, ENR_AWS_HOOK_TIMEOUT_MAX_MS);
    long long deadline = start + timeout;
    char *body = NULL;
    enr_code rc = request_body(in, &body, err);
    if (rc != ENR_OK)
        return rc;

    /* The URL is operator configuration, checked by enr_url_parse to hold
     * only URL characters before it is echoed (and cut to a message's size). */
    enr_url parsed;
    char origin[ENR_HTTP_HOST_MAX + 32];
    const char *path = "/";
    enr_http_client *client = NULL;
    enr_http_response resp = {0};
    enr_error e = {0};
    if ((rc = enr_url_parse(t->url, &parsed, &e)) != ENR_OK ||
        (rc = split_url(t->url, origin, sizeof origin, &path, &e)) != ENR_OK) {
        /* Not echoed raw: it failed the check that makes it safe to print.
         * Nor a query or fragment, which may hold a key (the store takes
         * them; this client does not). */
        size_t shown = strcspn(t->url, "?#");
        rc = enr_error_refuse(err, ENR_R_HOOK_FAILED,
                              "pre-provisioning hook URL %s%s is not https://host[:port][/path] (no query, "
                              "fragment or user info)",
                              enr_quote_n(t->url, shown).text, t->url[shown] != '\0' ? "..." : "");
        goto done;
    }
    long long left = deadline - now_ms();
    enr_http_client_options o = {
        .trust_pem = t->ca_pem,
        .connect_timeout_ms = timeout,
        .io_timeout_ms = timeout,
        .total_timeout_ms = left > 0 ? (int)left : 1, /* what is left of ours */
        .max_body = ENR_AWS_HOOK_ANSWER_MAX,
    };
    if ((rc = enr_http_client_new(origin, &o, &client, &e)) != ENR_OK) {
        rc = rc == ENR_E_NOMEM ? enr_error_set(err, rc, "out of memory")
                               : enr_error_refuse(err, ENR_R_HOOK_FAILED,
                                                  "pre-provisioning hook %.200s cannot be called: %s", t->url,
                                                  e.message);
        goto done;
    }
    const enr_http_header headers[] = {{"Content-Type", "application/json"}, {"Accept", "application/json"}};
    enr_http_request req = {"POST", path, headers, sizeof headers / sizeof headers[0], body, strlen(body)};
    rc = enr_http_client_send(client, &req, &resp, &e);
    if (rc != ENR_OK) {
        /* The deadline passed: that is what a timeout is, whichever step
         * (resolve, connect, handshake, send, read) it cut short. */
        if (now_ms() >= deadline)
            rc = enr_error_refuse(err, ENR_R_HOOK_TIMEOUT,
                                  "pre-provisioning hook %.200s gave no complete answer within %d ms", t->url,
                                  timeout);
        else if (rc == ENR_E_NOMEM)
            rc = enr_error_set(err, rc, "out of memory");
        else
            rc = enr_error_refuse(err, ENR_R_HOOK_FAILED, "pre-provisioning hook %.200s failed: %s", t->url,
                                  e.message);
        goto done;
    }
    if (resp.status < 200 || resp.status > 299) {
        rc = enr_error_refuse(err, ENR_R_HOOK_FAILED, "pre-provisioning hook %.200s answered HTTP %d", t->url,
                              resp.status);
        goto done;
    }
    if ((rc = enr_aws_hook_answer_parse((const char *)resp.body, resp.body_len, out, &e)) != ENR_OK) {
        rc = rc == ENR_E_NOMEM ? enr_error_set(err, rc, "out of memory")
                               : enr_error_refuse(err, ENR_R_HOOK_FAILED,
                                                  "pre-provisioning hook %.200s answered HTTP %d with a malformed "
                                                  "answer: %s",
                                                  t->url, resp.status, e.message);
        goto done;
    }
    if (!out->allow) {
        enr_aws_hook_answer_clear(out);
        rc = enr_error_refuse(err, ENR_R_HOOK_DENIED,
                              "pre-provisioning hook %.200s answered allowProvisioning false", t->url);
        goto done;
    }
    rc = ENR_OK;
done:
    enr_http_response_free(&resp);
    enr_http_client_free(client);
    free(body);
    return rc;
}
