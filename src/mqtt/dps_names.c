/* The names of DPS over MQTT (include/enroll/mqtt.h): the CONNECT username
 * a device sends, the request topics it publishes to, and the answer topic
 * we publish to. The first two are outside input; both are checked to the
 * byte before anything reaches the provisioning core. */
#include <stdio.h>
#include <string.h>

#include "enroll/mqtt.h"

static enr_mqtt_reason bad(enr_error *err, enr_mqtt_reason r, const char *what)
{
    enr_error_set(err, ENR_E_PARSE, "DPS over MQTT: %s", what);
    return r;
}

static bool has_prefix(const uint8_t *s, size_t len, const char *prefix, size_t *at)
{
    size_t n = strlen(prefix);
    if (len - *at < n || memcmp(s + *at, prefix, n) != 0)
        return false;
    *at += n;
    return true;
}

/* Copies s[from, to) into out (cap includes the NUL) when every byte is
 * in `allowed` (NULL: any visible ASCII but '&'). */
static bool copy_field(const uint8_t *s, size_t from, size_t to, char *out, size_t cap, const char *allowed)
{
    if (to <= from || to - from >= cap)
        return false;
    for (size_t i = from; i < to; i++) {
        uint8_t ch = s[i];
        bool ok = allowed ? (ch != 0 && strchr(allowed, ch) != NULL) : (ch > 0x20 && ch < 0x7f && ch != '&');
        if (!ok)
            return false;
    }
    memcpy(out, s + from, to - from);
    out[to - from] = '\0';
    return true;
}

#define ALNUM "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"

static size_t find(const uint8_t *s, size_t len, size_t from, uint8_t ch)
{
    while (from < len && s[from] != ch)
        from++;
    return from;
}

enr_mqtt_reason enr_dps_mqtt_username_parse(const uint8_t *s, size_t len, enr_dps_mqtt_username *out,
                                            enr_error *err)
{
    memset(out, 0, sizeof *out);
    size_t slash = find(s, len, 0, '/');
    if (!copy_field(s, 0, slash, out->id_scope, sizeof out->id_scope, ALNUM))
        return bad(err, ENR_MQTT_DPS_USERNAME, "the username's idScope is empty, too long or not alphanumeric");
    size_t at = slash;
    if (!has_prefix(s, len, "/registrations/", &at))
        return bad(err, ENR_MQTT_DPS_USERNAME, "the username is not {idScope}/registrations/{registrationId}/...");
    size_t end = find(s, len, at, '/');
    if (end == len || end == at || end - at > ENR_DPS_REGISTRATION_ID_MAX ||
        enr_dps_registration_id_check((const char *)s + at, end - at, NULL) != ENR_OK)
        return bad(err, ENR_MQTT_DPS_USERNAME, "the username's registrationId is missing or invalid");
    memcpy(out->registration_id, s + at, end - at);
    out->registration_id[end - at] = '\0';
    at = end;
    if (!has_prefix(s, len, "/api-version=", &at))
        return bad(err, ENR_MQTT_DPS_USERNAME, "the username has no /api-version= after the registrationId");
    end = find(s, len, at, '&');
    if (!copy_field(s, at, end, out->api_version, sizeof out->api_version, ALNUM "-"))
        return bad(err, ENR_MQTT_DPS_USERNAME, "the username's api-version is empty, too long or has odd characters");
    /* &ClientVersion={url-encoded user agent} and anything else after the
     * api-version only describe the client: checked as text, then ignored. */
    for (size_t i = end; i < len; i++)
        if (s[i] < 0x20 || s[i] == 0x7f)
            return bad(err, ENR_MQTT_DPS_USERNAME, "the username holds a control character");
    return ENR_MQTT_OK;
}

#define RID_CHARS ALNUM "-._~"
#define OPERATION_CHARS ALNUM "-._:"

enr_mqtt_reason enr_dps_mqtt_topic_parse(const uint8_t *s, size_t len, enr_dps_mqtt_topic *out, enr_error *err)
{
    memset(out, 0, sizeof *out);
    size_t at = 0;
    if (has_prefix(s, len, "$dps/registrations/PUT/iotdps-register/?", &at))
        out->is_register = true;
    else if (!has_prefix(s, len, "$dps/registrations/GET/iotdps-get-operationstatus/?", &at))
        return bad(err, ENR_MQTT_DPS_TOPIC, "not a DPS request topic");
    bool have_rid = false, have_op = false;
    while (at < len) {
        size_t end = find(s, len, at, '&');
        size_t eq = find(s, end, at, '=');
        if (eq == end)
            return bad(err, ENR_MQTT_DPS_TOPIC, "a topic parameter without '='");
        size_t name_len = eq - at;
        if (name_len == 4 && memcmp(s + at, "$rid", 4) == 0) {
            if (have_rid || !copy_field(s, eq + 1, end, out->rid, sizeof out->rid, RID_CHARS))
                return bad(err, ENR_MQTT_DPS_TOPIC, "$rid is repeated, empty, too long or has odd characters");
            have_rid = true;
        } else if (!out->is_register && name_len == 11 && memcmp(s + at, "operationId", 11) == 0) {
            if (have_op || !copy_field(s, eq + 1, end, out->operation_id, sizeof out->operation_id,
                                       OPERATION_CHARS))
                return bad(err, ENR_MQTT_DPS_TOPIC,
                           "operationId is repeated, empty, too long or has odd characters");
            have_op = true;
        }
        at = end < len ? end + 1 : end;
        if (end + 1 == len)
            return bad(err, ENR_MQTT_DPS_TOPIC, "the topic ends with '&'");
    }
    if (!have_rid)
        return bad(err, ENR_MQTT_DPS_TOPIC, "the topic has no $rid");
    if (!out->is_register && !have_op)
        return bad(err, ENR_MQTT_DPS_TOPIC, "an operation status topic without operationId");
    return ENR_MQTT_OK;
}

size_t enr_dps_mqtt_response_topic(char *out, size_t cap, int status, const char *rid, int retry_after)
{
    if (out == NULL || rid == NULL || status < 100 || status > 599 || retry_after < 0 || rid[0] == '\0' ||
        strlen(rid) > ENR_DPS_MQTT_RID_MAX || strspn(rid, RID_CHARS) != strlen(rid))
        return 0;
    int n = retry_after > 0
                ? snprintf(out, cap, "$dps/registrations/res/%d/?$rid=%s&retry-after=%d", status, rid, retry_after)
                : snprintf(out, cap, "$dps/registrations/res/%d/?$rid=%s", status, rid);
    return n < 0 || (size_t)n >= cap ? 0 : (size_t)n;
}
