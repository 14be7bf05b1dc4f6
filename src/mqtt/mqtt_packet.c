/* MQTT 3.1.1 and 5 packets as a server sees them (include/enroll/mqtt.h):
 * framing, parsing what a client sends, encoding what a server answers.
 * Every outside byte is read through one bounds-checked cursor. */
#include <stdio.h>
#include <string.h>

#include "enroll/mqtt.h"

const char *enr_mqtt_reason_name(enr_mqtt_reason r)
{
    switch (r) {
    case ENR_MQTT_OK: return "ok";
    case ENR_MQTT_NEED_MORE: return "need-more";
    case ENR_MQTT_MALFORMED: return "malformed";
    case ENR_MQTT_PROTOCOL_ERROR: return "protocol-error";
    case ENR_MQTT_PROTOCOL_NAME: return "protocol-name";
    case ENR_MQTT_PROTOCOL_VERSION: return "protocol-version";
    case ENR_MQTT_TOO_LARGE: return "too-large";
    case ENR_MQTT_QOS_NOT_SUPPORTED: return "qos-not-supported";
    case ENR_MQTT_BAD_UTF8: return "bad-utf8";
    case ENR_MQTT_TOPIC_INVALID: return "topic-invalid";
    case ENR_MQTT_TOPIC_ALIAS: return "topic-alias";
    case ENR_MQTT_AUTH_METHOD: return "auth-method";
    case ENR_MQTT_PACKET_TYPE: return "packet-type";
    case ENR_MQTT_TOO_MANY: return "too-many";
    case ENR_MQTT_BUFFER: return "buffer";
    case ENR_MQTT_DPS_USERNAME: return "dps-username";
    case ENR_MQTT_DPS_TOPIC: return "dps-topic";
    }
    return "unknown";
}

uint8_t enr_mqtt_reason_v5_code(enr_mqtt_reason r)
{
    switch (r) {
    case ENR_MQTT_OK:
    case ENR_MQTT_NEED_MORE: return ENR_MQTT5_SUCCESS;
    case ENR_MQTT_MALFORMED:
    case ENR_MQTT_BAD_UTF8: return ENR_MQTT5_MALFORMED;
    case ENR_MQTT_PROTOCOL_ERROR:
    case ENR_MQTT_PROTOCOL_NAME:
    case ENR_MQTT_PACKET_TYPE: return ENR_MQTT5_PROTOCOL_ERROR;
    case ENR_MQTT_PROTOCOL_VERSION: return ENR_MQTT5_BAD_VERSION;
    case ENR_MQTT_TOO_LARGE: return ENR_MQTT5_PACKET_TOO_LARGE;
    case ENR_MQTT_QOS_NOT_SUPPORTED: return ENR_MQTT5_QOS_NOT_SUPPORTED;
    case ENR_MQTT_TOPIC_INVALID: return ENR_MQTT5_TOPIC_INVALID;
    case ENR_MQTT_TOPIC_ALIAS: return ENR_MQTT5_TOPIC_ALIAS_INVALID;
    case ENR_MQTT_AUTH_METHOD: return ENR_MQTT5_BAD_AUTH_METHOD;
    case ENR_MQTT_TOO_MANY: return ENR_MQTT5_QUOTA_EXCEEDED;
    case ENR_MQTT_DPS_USERNAME: return ENR_MQTT5_BAD_CREDENTIALS;
    case ENR_MQTT_DPS_TOPIC: return ENR_MQTT5_TOPIC_INVALID;
    case ENR_MQTT_BUFFER: return ENR_MQTT5_IMPLEMENTATION_SPECIFIC;
    }
    return ENR_MQTT5_UNSPECIFIED;
}

/* Sets err and returns the reason, so a failure is one line. */
static enr_mqtt_reason fail(enr_error *err, enr_mqtt_reason r, const char *what)
{
    enr_code code = (r == ENR_MQTT_QOS_NOT_SUPPORTED || r == ENR_MQTT_TOPIC_ALIAS ||
                     r == ENR_MQTT_AUTH_METHOD || r == ENR_MQTT_PROTOCOL_VERSION)
                        ? ENR_E_UNSUPPORTED
                        : ENR_E_PARSE;
    enr_error_set(err, code, "MQTT: %s (%s)", what, enr_mqtt_reason_name(r));
    return r;
}

/* ---- framing ------------------------------------------------------------ */

enr_mqtt_reason enr_mqtt_frame(const uint8_t *buf, size_t len, size_t max_packet, size_t *packet_len,
                               enr_error *err)
{
    *packet_len = 0;
    uint32_t remaining = 0;
    size_t i = 1;
    for (unsigned shift = 0;; shift += 7, i++) {
        if (i > 4)
            return fail(err, ENR_MQTT_MALFORMED, "the remaining length is longer than 4 bytes");
        if (i >= len)
            return ENR_MQTT_NEED_MORE;
        remaining |= (uint32_t)(buf[i] & 0x7f) << shift;
        if ((buf[i] & 0x80) == 0)
            break;
    }
    size_t total = i + 1 + (size_t)remaining;
    if (total > max_packet)
        return fail(err, ENR_MQTT_TOO_LARGE, "the packet is larger than the maximum packet size");
    *packet_len = total;
    return len >= total ? ENR_MQTT_OK : ENR_MQTT_NEED_MORE;
}

/* ---- the cursor ----------------------------------------------------------- */

typedef struct cursor {
    const uint8_t *p;
    size_t left;
} cursor;

static bool take(cursor *c, size_t n, const uint8_t **out)
{
    if (c->left < n)
        return false;
    *out = c->p;
    c->p += n;
    c->left -= n;
    return true;
}

static bool u8(cursor *c, uint8_t *v)
{
    const uint8_t *p;
    if (!take(c, 1, &p))
        return false;
    *v = p[0];
    return true;
}

static bool u16(cursor *c, uint16_t *v)
{
    const uint8_t *p;
    if (!take(c, 2, &p))
        return false;
    *v = (uint16_t)(p[0] << 8 | p[1]);
    return true;
}

static bool u32(cursor *c, uint32_t *v)
{
    const uint8_t *p;
    if (!take(c, 4, &p))
        return false;
    *v = (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
    return true;
}

/* A variable byte integer: at most 4 bytes. */
static bool varint(cursor *c, uint32_t *v)
{
    uint32_t value = 0;
    for (unsigned i = 0; i < 4; i++) {
        uint8_t b;
        if (!u8(c, &b))
            return false;
        value |= (uint32_t)(b & 0x7f) << (7 * i);
        if ((b & 0x80) == 0) {
            *v = value;
            return true;
        }
    }
    return false;
}

static bool binary(cursor *c, enr_mqtt_span *out)
{
    uint16_t n;
    if (!u16(c, &n) || !take(c, n, &out->data))
        return false;
    out->len = n;
    return true;
}

bool enr_mqtt_utf8_valid(const uint8_t *s, size_t len)
{
    size_t i = 0;
    while (i < len) {
        uint8_t b = s[i];
        if (b == 0)
            return false;
        if (b < 0x80) {
            i++;
            continue;
        }
        size_t n;
        uint32_t cp, min;
        if ((b & 0xe0) == 0xc0) {
            n = 2, cp = b & 0x1f, min = 0x80;
        } else if ((b & 0xf0) == 0xe0) {
            n = 3, cp = b & 0x0f, min = 0x800;
        } else if ((b & 0xf8) == 0xf0) {
            n = 4, cp = b & 0x07, min = 0x10000;
        } else {
            return false;
        }
        if (len - i < n)
            return false;
        for (size_t k = 1; k < n; k++) {
            if ((s[i + k] & 0xc0) != 0x80)
                return false;
            cp = cp << 6 | (s[i + k] & 0x3f);
        }
        if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
            return false;
        i += n;
    }
    return true;
}

typedef enum string_result { STRING_OK, STRING_SHORT, STRING_UTF8 } string_result;

static string_result utf8_string(cursor *c, enr_mqtt_span *out)
{
    if (!binary(c, out))
        return STRING_SHORT;
    return enr_mqtt_utf8_valid(out->data, out->len) ? STRING_OK : STRING_UTF8;
}

/* ---- MQTT 5 properties -------------------------------------------------- */

enum prop_type { P_BYTE, P_U16, P_U32, P_VARINT, P_UTF8, P_BINARY, P_PAIR };

/* Where a property may appear (what a client sends). */
enum {
    IN_CONNECT = 1 << 0,
    IN_WILL = 1 << 1,
    IN_PUBLISH = 1 << 2,
    IN_PUBACK = 1 << 3,
    IN_SUBSCRIBE = 1 << 4,
    IN_UNSUBSCRIBE = 1 << 5,
    IN_DISCONNECT = 1 << 6,
};

typedef struct prop_def {
    uint8_t id;
    uint8_t type;
    uint8_t where;
} prop_def;

static const prop_def PROPS[] = {
    {0x01, P_BYTE, IN_WILL | IN_PUBLISH},       /* payload format indicator */
    {0x02, P_U32, IN_WILL | IN_PUBLISH},        /* message expiry interval */
    {0x03, P_UTF8, IN_WILL | IN_PUBLISH},       /* content type */
    {0x08, P_UTF8, IN_WILL | IN_PUBLISH},       /* response topic */
    {0x09, P_BINARY, IN_WILL | IN_PUBLISH},     /* correlation data */
    {0x0B, P_VARINT, IN_SUBSCRIBE},             /* subscription identifier */
    {0x11, P_U32, IN_CONNECT | IN_DISCONNECT},  /* session expiry interval */
    {0x15, P_UTF8, IN_CONNECT},                 /* authentication method */
    {0x16, P_BINARY, IN_CONNECT},               /* authentication data */
    {0x17, P_BYTE, IN_CONNECT},                 /* request problem information */
    {0x18, P_U32, IN_WILL},                     /* will delay interval */
    {0x19, P_BYTE, IN_CONNECT},                 /* request response information */
    {0x1C, P_UTF8, IN_DISCONNECT},              /* server reference */
    {0x1F, P_UTF8, IN_PUBACK | IN_DISCONNECT},  /* reason string */
    {0x21, P_U16, IN_CONNECT},                  /* receive maximum */
    {0x22, P_U16, IN_CONNECT},                  /* topic alias maximum */
    {0x23, P_U16, IN_PUBLISH},                  /* topic alias */
    {0x26, P_PAIR, 0xff},                       /* user property: anywhere, repeatable */
    {0x27, P_U32, IN_CONNECT},                  /* maximum packet size */
};

typedef struct prop_value {
    uint32_t number;
    enr_mqtt_span text;
} prop_value;

/* What a packet keeps of its properties: called once per property. */
typedef enr_mqtt_reason (*prop_fn)(void *ctx, uint8_t id, const prop_value *v, enr_error *err);

/* Reads a property length and the properties, each known, allowed in
 * `where`, at most once (but user properties), well-formed. */
static enr_mqtt_reason properties(cursor *c, unsigned where, prop_fn keep, void *ctx, enr_error *err)
{
    uint32_t total;
    const uint8_t *bytes;
    if (!varint(c, &total) || !take(c, total, &bytes))
        return fail(err, ENR_MQTT_MALFORMED, "the property length is past the packet's end");
    cursor pc = {bytes, total};
    uint32_t seen[2] = {0, 0}; /* by index in PROPS: bit i */
    while (pc.left > 0) {
        uint32_t id;
        if (!varint(&pc, &id))
            return fail(err, ENR_MQTT_MALFORMED, "a property identifier is cut short");
        size_t k = 0;
        while (k < sizeof PROPS / sizeof PROPS[0] && PROPS[k].id != id)
            k++;
        if (k == sizeof PROPS / sizeof PROPS[0] || (PROPS[k].where & where) == 0)
            return fail(err, ENR_MQTT_MALFORMED, "a property unknown or not allowed in this packet");
        if (id != 0x26) {
            if (seen[k / 32] & (1u << (k % 32)))
                return fail(err, ENR_MQTT_MALFORMED, "a property appears twice");
            seen[k / 32] |= 1u << (k % 32);
        }
        prop_value v = {0, {NULL, 0}};
        bool ok = true;
        uint8_t b = 0;
        uint16_t h = 0;
        switch (PROPS[k].type) {
        case P_BYTE: ok = u8(&pc, &b), v.number = b; break;
        case P_U16: ok = u16(&pc, &h), v.number = h; break;
        case P_U32: ok = u32(&pc, &v.number); break;
        case P_VARINT: ok = varint(&pc, &v.number); break;
        case P_BINARY: ok = binary(&pc, &v.text); break;
        case P_UTF8:
        case P_PAIR: {
            string_result s = utf8_string(&pc, &v.text);
            if (s == STRING_OK && PROPS[k].type == P_PAIR) {
                enr_mqtt_span value;
                s = utf8_string(&pc, &value);
            }
            if (s == STRING_UTF8)
                return fail(err, ENR_MQTT_BAD_UTF8, "a property's string is not valid UTF-8");
            ok = s == STRING_OK;
            break;
        }
        }
        if (!ok)
            return fail(err, ENR_MQTT_MALFORMED, "a property's value is cut short");
        if (keep != NULL) {
            enr_mqtt_reason r = keep(ctx, (uint8_t)id, &v, err);
            if (r != ENR_MQTT_OK)
                return r;
        }
    }
    return ENR_MQTT_OK;
}

/* ---- CONNECT -------------------------------------------------------------- */

typedef struct connect_props {
    enr_mqtt_connect *c;
    bool auth_data;
} connect_props;

static enr_mqtt_reason keep_connect(void *ctx, uint8_t id, const prop_value *v, enr_error *err)
{
    connect_props *cp = ctx;
    switch (id) {
    case 0x11: cp->c->session_expiry = v->number; break;
    case 0x15: return fail(err, ENR_MQTT_AUTH_METHOD, "enhanced authentication is not supported");
    case 0x16: cp->auth_data = true; break;
    case 0x17:
    case 0x19:
        if (v->number > 1)
            return fail(err, ENR_MQTT_PROTOCOL_ERROR, "a request flag property is neither 0 nor 1");
        break;
    case 0x21:
        if (v->number == 0)
            return fail(err, ENR_MQTT_PROTOCOL_ERROR, "receive maximum 0");
        cp->c->receive_maximum = (uint16_t)v->number;
        break;
    case 0x27:
        if (v->number == 0)
            return fail(err, ENR_MQTT_PROTOCOL_ERROR, "maximum packet size 0");
        cp->c->maximum_packet_size = v->number;
        break;
    default: break;
    }
    return ENR_MQTT_OK;
}

static enr_mqtt_reason keep_will(void *ctx, uint8_t id, const prop_value *v, enr_error *err)
{
    (void)ctx;
    if (id == 0x01 && v->number > 1)
        return fail(err, ENR_MQTT_PROTOCOL_ERROR, "payload format indicator neither 0 nor 1");
    return ENR_MQTT_OK;
}

static enr_mqtt_reason parse_connect(cursor *c, uint8_t flags, enr_mqtt_connect *out, enr_error *err)
{
    if (flags != 0)
        return fail(err, ENR_MQTT_MALFORMED, "CONNECT's fixed header flags are not 0");
    memset(out, 0, sizeof *out);
    out->receive_maximum = 65535;
    enr_mqtt_span name;
    uint8_t level, cflags;
    if (!binary(c, &name))
        return fail(err, ENR_MQTT_MALFORMED, "CONNECT is cut short in the protocol name");
    if (name.len != 4 || memcmp(name.data, "MQTT", 4) != 0)
        return fail(err, ENR_MQTT_PROTOCOL_NAME, "the protocol name is not \"MQTT\"");
    if (!u8(c, &level))
        return fail(err, ENR_MQTT_MALFORMED, "CONNECT is cut short in the protocol level");
    if (level != 4 && level != 5)
        return fail(err, ENR_MQTT_PROTOCOL_VERSION, "the protocol level is neither 4 (3.1.1) nor 5");
    out->level = level;
    if (!u8(c, &cflags) || !u16(c, &out->keepalive))
        return fail(err, ENR_MQTT_MALFORMED, "CONNECT is cut short in its flags or keepalive");
    if (cflags & 0x01)
        return fail(err, ENR_MQTT_MALFORMED, "CONNECT's reserved flag is set");
    out->clean_start = (cflags & 0x02) != 0;
    out->has_will = (cflags & 0x04) != 0;
    uint8_t will_qos = (cflags >> 3) & 0x03;
    bool will_retain = (cflags & 0x20) != 0;
    out->has_password = (cflags & 0x40) != 0;
    out->has_username = (cflags & 0x80) != 0;
    if (!out->has_will && (will_qos != 0 || will_retain))
        return fail(err, ENR_MQTT_MALFORMED, "will QoS or retain set without a will");
    if (will_qos == 3)
        return fail(err, ENR_MQTT_MALFORMED, "will QoS 3");
    /* 3.1.1 forbids a password without a user name; MQTT 5 allows it. */
    if (level == 4 && out->has_password && !out->has_username)
        return fail(err, ENR_MQTT_MALFORMED, "a password flag without a user name flag");
    if (level == 5) {
        connect_props cp = {out, false};
        enr_mqtt_reason r = properties(c, IN_CONNECT, keep_connect, &cp, err);
        if (r != ENR_MQTT_OK)
            return r;
        if (cp.auth_data)
            return fail(err, ENR_MQTT_PROTOCOL_ERROR, "authentication data without a method");
    }
    string_result s = utf8_string(c, &out->client_id);
    if (s != STRING_OK)
        return fail(err, s == STRING_UTF8 ? ENR_MQTT_BAD_UTF8 : ENR_MQTT_MALFORMED,
                    "CONNECT's client identifier");
    if (out->has_will) {
        if (level == 5) {
            enr_mqtt_reason r = properties(c, IN_WILL, keep_will, NULL, err);
            if (r != ENR_MQTT_OK)
                return r;
        }
        enr_mqtt_span topic, payload;
        s = utf8_string(c, &topic);
        if (s != STRING_OK)
            return fail(err, s == STRING_UTF8 ? ENR_MQTT_BAD_UTF8 : ENR_MQTT_MALFORMED, "the will topic");
        if (!binary(c, &payload))
            return fail(err, ENR_MQTT_MALFORMED, "the will payload is cut short");
    }
    if (out->has_username) {
        s = utf8_string(c, &out->username);
        if (s != STRING_OK)
            return fail(err, s == STRING_UTF8 ? ENR_MQTT_BAD_UTF8 : ENR_MQTT_MALFORMED, "the user name");
    }
    if (out->has_password && !binary(c, &out->password))
        return fail(err, ENR_MQTT_MALFORMED, "the password is cut short");
    if (c->left != 0)
        return fail(err, ENR_MQTT_MALFORMED, "bytes after CONNECT's payload");
    return ENR_MQTT_OK;
}

/* ---- PUBLISH ---------------------------------------------------------------- */

static enr_mqtt_reason keep_publish(void *ctx, uint8_t id, const prop_value *v, enr_error *err)
{
    (void)ctx;
    if (id == 0x23)
        return fail(err, ENR_MQTT_TOPIC_ALIAS, "topic aliases are not supported");
    if (id == 0x01 && v->number > 1)
        return fail(err, ENR_MQTT_PROTOCOL_ERROR, "payload format indicator neither 0 nor 1");
    return ENR_MQTT_OK;
}

static enr_mqtt_reason parse_publish(cursor *c, uint8_t flags, uint8_t level, enr_mqtt_publish *out,
                                     enr_error *err)
{
    memset(out, 0, sizeof *out);
    out->retain = (flags & 0x01) != 0;
    out->qos = (flags >> 1) & 0x03;
    out->dup = (flags & 0x08) != 0;
    if (out->qos == 3)
        return fail(err, ENR_MQTT_MALFORMED, "PUBLISH with QoS 3");
    if (out->qos == 0 && out->dup)
        return fail(err, ENR_MQTT_MALFORMED, "PUBLISH with DUP set at QoS 0");
    string_result s = utf8_string(c, &out->topic);
    if (s != STRING_OK)
        return fail(err, s == STRING_UTF8 ? ENR_MQTT_BAD_UTF8 : ENR_MQTT_MALFORMED, "PUBLISH's topic");
    if (out->topic.len == 0)
        return fail(err, ENR_MQTT_TOPIC_INVALID, "PUBLISH's topic is empty");
    if (memchr(out->topic.data, '+', out->topic.len) || memchr(out->topic.data, '#', out->topic.len))
        return fail(err, ENR_MQTT_TOPIC_INVALID, "PUBLISH's topic holds a wildcard");
    if (out->qos > 0) {
        if (!u16(c, &out->packet_id))
            return fail(err, ENR_MQTT_MALFORMED, "PUBLISH is cut short in its packet identifier");
        if (out->packet_id == 0)
            return fail(err, ENR_MQTT_MALFORMED, "PUBLISH with packet identifier 0");
    }
    if (level == 5) {
        enr_mqtt_reason r = properties(c, IN_PUBLISH, keep_publish, NULL, err);
        if (r != ENR_MQTT_OK)
            return r;
    }
    /* QoS 2 is refused after the header is known good, so the reason is
     * this and not a grammar fault further on. */
    if (out->qos == 2)
        return fail(err, ENR_MQTT_QOS_NOT_SUPPORTED, "PUBLISH with QoS 2");
    out->payload.data = c->p;
    out->payload.len = c->left;
    c->left = 0;
    return ENR_MQTT_OK;
}

/* ---- SUBSCRIBE / UNSUBSCRIBE ------------------------------------------- */

static enr_mqtt_reason keep_subscribe(void *ctx, uint8_t id, const prop_value *v, enr_error *err)
{
    (void)ctx;
    if (id == 0x0B && (v->number == 0 || v->number > ENR_MQTT_REMAINING_MAX))
        return fail(err, ENR_MQTT_PROTOCOL_ERROR, "subscription identifier 0");
    return ENR_MQTT_OK;
}

/* A filter's wildcards: '+' alone in its level, '#' alone and last. */
static bool filter_valid(const enr_mqtt_span *f)
{
    if (f->len == 0)
        return false;
    for (size_t i = 0; i < f->len; i++) {
        uint8_t ch = f->data[i];
        if (ch != '+' && ch != '#')
            continue;
        bool starts = i == 0 || f->data[i - 1] == '/';
        bool ends = i + 1 == f->len || f->data[i + 1] == '/';
        if (!starts || !ends || (ch == '#' && i + 1 != f->len))
            return false;
    }
    return true;
}

static enr_mqtt_reason parse_subscribe(cursor *c, uint8_t flags, uint8_t level, bool unsubscribe,
                                       enr_mqtt_subscribe *out, enr_error *err)
{
    if (flags != 0x02)
        return fail(err, ENR_MQTT_MALFORMED, "(UN)SUBSCRIBE's fixed header flags are not 0010");
    out->count = 0;
    if (!u16(c, &out->packet_id))
        return fail(err, ENR_MQTT_MALFORMED, "(UN)SUBSCRIBE is cut short in its packet identifier");
    if (out->packet_id == 0)
        return fail(err, ENR_MQTT_MALFORMED, "(UN)SUBSCRIBE with packet identifier 0");
    if (level == 5) {
        enr_mqtt_reason r =
            properties(c, unsubscribe ? IN_UNSUBSCRIBE : IN_SUBSCRIBE, keep_subscribe, NULL, err);
        if (r != ENR_MQTT_OK)
            return r;
    }
    if (c->left == 0)
        return fail(err, ENR_MQTT_PROTOCOL_ERROR, "(UN)SUBSCRIBE with no topic filter");
    while (c->left > 0) {
        enr_mqtt_filter f = {{NULL, 0}, 0};
        string_result s = utf8_string(c, &f.filter);
        if (s != STRING_OK)
            return fail(err, s == STRING_UTF8 ? ENR_MQTT_BAD_UTF8 : ENR_MQTT_MALFORMED, "a topic filter");
        if (!filter_valid(&f.filter))
            return fail(err, ENR_MQTT_TOPIC_INVALID, "a topic filter is empty or misplaces a wildcard");
        if (!unsubscribe) {
            if (!u8(c, &f.options))
                return fail(err, ENR_MQTT_MALFORMED, "a subscription's options are cut short");
            /* 3.1.1: bits 2-7 reserved; 5: bits 6-7 reserved, retain
             * handling (bits 4-5) 3 is a protocol error. */
            uint8_t reserved = level == 5 ? 0xc0 : 0xfc;
            if ((f.options & reserved) != 0 || (f.options & 0x03) == 3)
                return fail(err, ENR_MQTT_MALFORMED, "a subscription's options set reserved bits or QoS 3");
            if (level == 5 && ((f.options >> 4) & 0x03) == 3)
                return fail(err, ENR_MQTT_PROTOCOL_ERROR, "retain handling 3");
        }
        if (out->count == ENR_MQTT_FILTERS_MAX)
            return fail(err, ENR_MQTT_TOO_MANY, "more topic filters than we keep");
        out->filters[out->count++] = f;
    }
    return ENR_MQTT_OK;
}

/* ---- the rest --------------------------------------------------------------- */

static enr_mqtt_reason parse_ack_or_disconnect(cursor *c, uint8_t type, uint8_t flags, uint8_t level,
                                               enr_mqtt_packet *out, enr_error *err)
{
    if (flags != 0)
        return fail(err, ENR_MQTT_MALFORMED, "fixed header flags are not 0");
    if (type == ENR_MQTT_PUBACK) {
        out->u.puback.reason = 0;
        if (!u16(c, &out->u.puback.packet_id))
            return fail(err, ENR_MQTT_MALFORMED, "PUBACK is cut short");
        if (out->u.puback.packet_id == 0)
            return fail(err, ENR_MQTT_MALFORMED, "PUBACK with packet identifier 0");
        if (level == 5 && c->left > 0) {
            if (!u8(c, &out->u.puback.reason))
                return fail(err, ENR_MQTT_MALFORMED, "PUBACK is cut short");
            if (c->left > 0) {
                enr_mqtt_reason r = properties(c, IN_PUBACK, NULL, NULL, err);
                if (r != ENR_MQTT_OK)
                    return r;
            }
        }
    } else { /* DISCONNECT */
        out->u.disconnect.reason = 0;
        if (level == 5 && c->left > 0) {
            if (!u8(c, &out->u.disconnect.reason))
                return fail(err, ENR_MQTT_MALFORMED, "DISCONNECT is cut short");
            if (c->left > 0) {
                enr_mqtt_reason r = properties(c, IN_DISCONNECT, NULL, NULL, err);
                if (r != ENR_MQTT_OK)
                    return r;
            }
        }
    }
    if (c->left != 0)
        return fail(err, ENR_MQTT_MALFORMED, "bytes after the packet's end");
    return ENR_MQTT_OK;
}

enr_mqtt_reason enr_mqtt_parse(const uint8_t *buf, size_t len, uint8_t level, enr_mqtt_packet *out,
                               enr_error *err)
{
    size_t total;
    enr_mqtt_reason r = enr_mqtt_frame(buf, len, SIZE_MAX, &total, err);
    if (r == ENR_MQTT_NEED_MORE)
        return fail(err, ENR_MQTT_MALFORMED, "the packet is cut short");
    if (r != ENR_MQTT_OK)
        return r;
    if (total != len)
        return fail(err, ENR_MQTT_MALFORMED, "bytes after the packet's end");
    size_t header = 1;
    while (buf[header] & 0x80)
        header++;
    header++;
    cursor c = {buf + header, len - header};
    uint8_t type = buf[0] >> 4, flags = buf[0] & 0x0f;
    memset(out, 0, sizeof *out);
    out->type = (enr_mqtt_type)type;
    if (level != 0 && level != 4 && level != 5)
        return fail(err, ENR_MQTT_PROTOCOL_VERSION, "the connection's protocol level is neither 4 nor 5");
    if (type == 0)
        return fail(err, ENR_MQTT_MALFORMED, "packet type 0 is reserved");
    if (level == 0 && type != ENR_MQTT_CONNECT)
        return fail(err, ENR_MQTT_PROTOCOL_ERROR, "the first packet is not CONNECT");
    switch (type) {
    case ENR_MQTT_CONNECT:
        if (level != 0)
            return fail(err, ENR_MQTT_PROTOCOL_ERROR, "a second CONNECT");
        return parse_connect(&c, flags, &out->u.connect, err);
    case ENR_MQTT_PUBLISH: return parse_publish(&c, flags, level, &out->u.publish, err);
    case ENR_MQTT_PUBACK:
    case ENR_MQTT_DISCONNECT: return parse_ack_or_disconnect(&c, type, flags, level, out, err);
    case ENR_MQTT_SUBSCRIBE: return parse_subscribe(&c, flags, level, false, &out->u.subscribe, err);
    case ENR_MQTT_UNSUBSCRIBE: return parse_subscribe(&c, flags, level, true, &out->u.subscribe, err);
    case ENR_MQTT_PINGREQ:
        if (flags != 0 || c.left != 0)
            return fail(err, ENR_MQTT_MALFORMED, "PINGREQ with flags or a body");
        return ENR_MQTT_OK;
    default:
        return fail(err, ENR_MQTT_PACKET_TYPE, "a packet type a client does not send to this server");
    }
}

/* ---- encoders ----------------------------------------------------------------- */

/* A packet under construction: counts every byte, writes only when the
 * whole packet fits (known before the first byte, from `size`). */
typedef struct writer {
    uint8_t *buf;
    size_t at;
    bool write;
} writer;

static void put(writer *w, uint8_t b)
{
    if (w->write)
        w->buf[w->at] = b;
    w->at++;
}

static void put16(writer *w, uint16_t v)
{
    put(w, (uint8_t)(v >> 8));
    put(w, (uint8_t)v);
}

static void put32(writer *w, uint32_t v)
{
    put16(w, (uint16_t)(v >> 16));
    put16(w, (uint16_t)v);
}

static void put_bytes(writer *w, const void *p, size_t n)
{
    if (w->write && n > 0)
        memcpy(w->buf + w->at, p, n);
    w->at += n;
}

static size_t varint_size(size_t v)
{
    return v < 128 ? 1 : v < 16384 ? 2 : v < 2097152 ? 3 : 4;
}

static void put_varint(writer *w, size_t v)
{
    do {
        uint8_t b = v & 0x7f;
        v >>= 7;
        put(w, (uint8_t)(v ? b | 0x80 : b));
    } while (v);
}

/* Starts a packet of `remaining` bytes after its fixed header; false when
 * that cannot be said. Decides once whether the packet is written. */
static bool begin(writer *w, uint8_t *buf, size_t cap, uint8_t first, size_t remaining, size_t *total)
{
    if (remaining > ENR_MQTT_REMAINING_MAX)
        return false;
    *total = 1 + varint_size(remaining) + remaining;
    w->buf = buf;
    w->at = 0;
    w->write = buf != NULL && cap >= *total;
    put(w, first);
    put_varint(w, remaining);
    return true;
}

size_t enr_mqtt_encode_connack(uint8_t *buf, size_t cap, uint8_t level, const enr_mqtt_connack *a)
{
    if ((level != 4 && level != 5) || a == NULL || (level == 4 && a->code > 5))
        return 0;
    size_t props = 0;
    bool caps = level == 5 && a->code == 0;
    if (caps) {
        props = 2 + 2 + 2 + 2; /* retain, maximum QoS, subscription ids, shared: id + byte each */
        props += a->receive_maximum ? 3u : 0u;
        props += a->maximum_packet_size ? 5u : 0u;
        props += a->has_server_keepalive ? 3u : 0u;
    }
    size_t remaining = 2 + (level == 5 ? varint_size(props) + props : 0), total;
    writer w;
    if (!begin(&w, buf, cap, ENR_MQTT_CONNACK << 4, remaining, &total))
        return 0;
    put(&w, 0); /* session present: never */
    put(&w, a->code);
    if (level == 5) {
        put_varint(&w, props);
        if (caps) {
            put(&w, 0x25), put(&w, 0); /* retain available: no */
            put(&w, 0x24), put(&w, 1); /* maximum QoS: 1 */
            put(&w, 0x29), put(&w, 0); /* subscription identifiers: no */
            put(&w, 0x2A), put(&w, 0); /* shared subscriptions: no */
            if (a->receive_maximum)
                put(&w, 0x21), put16(&w, a->receive_maximum);
            if (a->maximum_packet_size)
                put(&w, 0x27), put32(&w, a->maximum_packet_size);
            if (a->has_server_keepalive)
                put(&w, 0x13), put16(&w, a->server_keepalive);
        }
    }
    return total;
}

static size_t encode_acks(uint8_t *buf, size_t cap, uint8_t first, uint8_t level, uint16_t packet_id,
                          const uint8_t *codes, size_t count, bool codes_in_v4)
{
    if ((level != 4 && level != 5) || packet_id == 0)
        return 0;
    bool with_codes = level == 5 || codes_in_v4;
    if (with_codes && (count == 0 || codes == NULL))
        return 0;
    size_t remaining = 2 + (level == 5 ? 1u : 0u) + (with_codes ? count : 0), total;
    writer w;
    if (!begin(&w, buf, cap, first, remaining, &total))
        return 0;
    put16(&w, packet_id);
    if (level == 5)
        put(&w, 0); /* no properties */
    if (with_codes)
        put_bytes(&w, codes, count);
    return total;
}

size_t enr_mqtt_encode_suback(uint8_t *buf, size_t cap, uint8_t level, uint16_t packet_id, const uint8_t *codes,
                              size_t count)
{
    if (level == 4)
        for (size_t i = 0; codes != NULL && i < count; i++)
            if (codes[i] > 2 && codes[i] != 0x80)
                return 0;
    return encode_acks(buf, cap, ENR_MQTT_SUBACK << 4, level, packet_id, codes, count, true);
}

size_t enr_mqtt_encode_unsuback(uint8_t *buf, size_t cap, uint8_t level, uint16_t packet_id,
                                const uint8_t *codes, size_t count)
{
    return encode_acks(buf, cap, ENR_MQTT_UNSUBACK << 4, level, packet_id, codes, count, false);
}

size_t enr_mqtt_encode_publish(uint8_t *buf, size_t cap, uint8_t level, uint8_t qos, uint16_t packet_id,
                               const char *topic, size_t topic_len, const uint8_t *payload, size_t payload_len)
{
    if ((level != 4 && level != 5) || qos > 1 || (qos == 1 && packet_id == 0) || topic == NULL ||
        topic_len == 0 || topic_len > 65535 || (payload == NULL && payload_len > 0))
        return 0;
    if (payload_len > ENR_MQTT_REMAINING_MAX)
        return 0;
    size_t remaining = 2 + topic_len + (qos ? 2u : 0u) + (level == 5 ? 1u : 0u) + payload_len, total;
    writer w;
    if (!begin(&w, buf, cap, (uint8_t)(ENR_MQTT_PUBLISH << 4 | qos << 1), remaining, &total))
        return 0;
    put16(&w, (uint16_t)topic_len);
    put_bytes(&w, topic, topic_len);
    if (qos)
        put16(&w, packet_id);
    if (level == 5)
        put(&w, 0);
    put_bytes(&w, payload, payload_len);
    return total;
}

size_t enr_mqtt_encode_puback(uint8_t *buf, size_t cap, uint8_t level, uint16_t packet_id, uint8_t reason)
{
    if ((level != 4 && level != 5) || packet_id == 0 || (level == 4 && reason != 0))
        return 0;
    /* MQTT 5 lets success go without its reason byte, as 3.1.1 does. */
    size_t remaining = reason ? 3u : 2u, total;
    writer w;
    if (!begin(&w, buf, cap, ENR_MQTT_PUBACK << 4, remaining, &total))
        return 0;
    put16(&w, packet_id);
    if (reason)
        put(&w, reason);
    return total;
}

size_t enr_mqtt_encode_pingresp(uint8_t *buf, size_t cap)
{
    size_t total;
    writer w;
    begin(&w, buf, cap, ENR_MQTT_PINGRESP << 4, 0, &total);
    return total;
}

size_t enr_mqtt_encode_disconnect(uint8_t *buf, size_t cap, uint8_t level, uint8_t reason)
{
    if (level != 5)
        return 0;
    size_t total;
    writer w;
    begin(&w, buf, cap, ENR_MQTT_DISCONNECT << 4, 1, &total);
    put(&w, reason);
    return total;
}
