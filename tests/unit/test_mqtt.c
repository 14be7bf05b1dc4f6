/* The MQTT codec and the names of DPS over MQTT: framing at every cut,
 * a table of malformed packets that must each be refused with their typed
 * reason, CONNECTs as the Azure C SDK (3.1.1) and mosquitto (5) send them,
 * every encoder against bytes written out from the spec and, where the
 * parser reads that packet type too, through the parser again. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "enroll/mqtt.h"

#define MAX 4096

/* "10 LL 00 04 ..." into bytes; "LL" is the remaining length (one byte:
 * every table packet is short), computed from what follows. */
static size_t hex(const char *text, uint8_t *out, size_t cap)
{
    size_t n = 0, ll = SIZE_MAX;
    for (const char *p = text; *p;) {
        if (*p == ' ') {
            p++;
            continue;
        }
        assert_true(n < cap);
        if (p[0] == 'L' && p[1] == 'L') {
            ll = n;
            out[n++] = 0;
        } else {
            unsigned v;
            assert_int_equal(sscanf(p, "%2x", &v), 1);
            out[n++] = (uint8_t)v;
        }
        p += 2;
    }
    if (ll != SIZE_MAX) {
        assert_true(n - ll - 1 < 128);
        out[ll] = (uint8_t)(n - ll - 1);
    }
    return n;
}

/* Appends an MQTT string (two-byte length, then the bytes). */
static size_t put_str(uint8_t *out, size_t at, const char *s)
{
    size_t n = strlen(s);
    out[at] = (uint8_t)(n >> 8);
    out[at + 1] = (uint8_t)n;
    memcpy(out + at + 2, s, n);
    return at + 2 + n;
}

/* Writes a fixed header with a (possibly multi-byte) remaining length in
 * front of body[0, len) and returns the whole packet's size. */
static size_t wrap(uint8_t first, const uint8_t *body, size_t len, uint8_t *out)
{
    size_t at = 0, v = len;
    out[at++] = first;
    do {
        uint8_t b = v & 0x7f;
        v >>= 7;
        out[at++] = (uint8_t)(v ? b | 0x80 : b);
    } while (v);
    memcpy(out + at, body, len);
    return at + len;
}

/* ---- framing ------------------------------------------------------------ */

static void test_frame(void **state)
{
    (void)state;
    uint8_t b[16] = {0};
    size_t n = 9;
    enr_error err;
    assert_int_equal(enr_mqtt_frame(b, 0, MAX, &n, &err), ENR_MQTT_NEED_MORE);
    assert_int_equal(n, 0);
    b[0] = 0x30;
    assert_int_equal(enr_mqtt_frame(b, 1, MAX, &n, &err), ENR_MQTT_NEED_MORE);
    /* A length cut inside its continuation bytes: not yet known. */
    size_t len = hex("30 80", b, sizeof b);
    assert_int_equal(enr_mqtt_frame(b, len, MAX, &n, &err), ENR_MQTT_NEED_MORE);
    assert_int_equal(n, 0);
    len = hex("30 80 80 80", b, sizeof b);
    assert_int_equal(enr_mqtt_frame(b, len, MAX, &n, &err), ENR_MQTT_NEED_MORE);
    /* A fifth length byte is malformed before it is even read. */
    len = hex("30 80 80 80 80", b, sizeof b);
    assert_int_equal(enr_mqtt_frame(b, len, MAX, &n, &err), ENR_MQTT_MALFORMED);
    assert_int_equal(err.code, ENR_E_PARSE);
    /* The largest length is not malformed, only too large. */
    len = hex("30 ff ff ff 7f", b, sizeof b);
    assert_int_equal(enr_mqtt_frame(b, len, MAX, &n, &err), ENR_MQTT_TOO_LARGE);
    /* Too large as soon as the header says so, before the body arrives. */
    len = hex("30 0a", b, sizeof b);
    assert_int_equal(enr_mqtt_frame(b, len, 11, &n, &err), ENR_MQTT_TOO_LARGE);
    assert_int_equal(enr_mqtt_frame(b, len, 12, &n, &err), ENR_MQTT_NEED_MORE);
    assert_int_equal(n, 12);
    /* Complete, with the next packet's bytes behind it. */
    len = hex("30 03 00 01 61 c0 00", b, sizeof b);
    assert_int_equal(enr_mqtt_frame(b, len, 5, &n, &err), ENR_MQTT_OK);
    assert_int_equal(n, 5);
    assert_int_equal(enr_mqtt_frame(b + 5, len - 5, 5, &n, &err), ENR_MQTT_OK);
    assert_int_equal(n, 2);
    /* Two-byte length: 200 bytes of body. */
    len = hex("30 c8 01", b, sizeof b);
    assert_int_equal(enr_mqtt_frame(b, len, MAX, &n, &err), ENR_MQTT_NEED_MORE);
    assert_int_equal(n, 203);
}

/* Every prefix of a good packet needs more; never an error, never OK. */
static void test_frame_every_cut(void **state)
{
    (void)state;
    uint8_t b[256];
    size_t len = hex("10 LL 00 04 4d 51 54 54 04 02 00 3c 00 03 61 62 63", b, sizeof b);
    enr_error err;
    size_t n;
    for (size_t cut = 0; cut < len; cut++) {
        assert_int_equal(enr_mqtt_frame(b, cut, MAX, &n, &err), ENR_MQTT_NEED_MORE);
        enr_mqtt_packet p;
        if (cut > 0)
            assert_int_not_equal(enr_mqtt_parse(b, cut, 0, &p, &err), ENR_MQTT_OK);
    }
    assert_int_equal(enr_mqtt_frame(b, len, MAX, &n, &err), ENR_MQTT_OK);
    assert_int_equal(n, len);
}

/* ---- the bad-input table ------------------------------------------------ */

#define V5_CONNECT_HEAD "10 LL 00 04 4d 51 54 54 05 02 00 3c "
#define V4_CONNECT_HEAD "10 LL 00 04 4d 51 54 54 04 "

static const struct bad_row {
    const char *what;
    uint8_t level;
    const char *bytes;
    enr_mqtt_reason reason;
} BAD[] = {
    /* lengths */
    {"remaining length cut short", 0, "10 80", ENR_MQTT_MALFORMED},
    {"5-byte remaining length", 4, "30 ff ff ff ff 01", ENR_MQTT_MALFORMED},
    {"body shorter than its length", 4, "30 05 00 01 61", ENR_MQTT_MALFORMED},
    {"bytes after the packet", 4, "c0 00 00", ENR_MQTT_MALFORMED},
    /* CONNECT */
    {"protocol name MQIs", 0, "10 LL 00 04 4d 51 49 73 04 02 00 3c 00 01 61", ENR_MQTT_PROTOCOL_NAME},
    {"protocol name MQIsdp (3.1)", 0, "10 LL 00 06 4d 51 49 73 64 70 03 02 00 3c 00 01 61",
     ENR_MQTT_PROTOCOL_NAME},
    {"protocol level 3", 0, V4_CONNECT_HEAD, ENR_MQTT_MALFORMED}, /* cut short: no level byte */
    {"protocol level 6", 0, "10 LL 00 04 4d 51 54 54 06 02 00 3c 00 01 61", ENR_MQTT_PROTOCOL_VERSION},
    {"protocol level 3 (MQTT name)", 0, "10 LL 00 04 4d 51 54 54 03 02 00 3c 00 01 61",
     ENR_MQTT_PROTOCOL_VERSION},
    {"CONNECT fixed flags", 0, "11 LL 00 04 4d 51 54 54 04 02 00 3c 00 01 61", ENR_MQTT_MALFORMED},
    {"reserved connect flag", 0, V4_CONNECT_HEAD "03 00 3c 00 01 61", ENR_MQTT_MALFORMED},
    {"will QoS without will", 0, V4_CONNECT_HEAD "0a 00 3c 00 01 61", ENR_MQTT_MALFORMED},
    {"will retain without will", 0, V4_CONNECT_HEAD "22 00 3c 00 01 61", ENR_MQTT_MALFORMED},
    {"will QoS 3", 0, V4_CONNECT_HEAD "1e 00 3c 00 01 61 00 01 74 00 00", ENR_MQTT_MALFORMED},
    {"will flag but no will topic", 0, V4_CONNECT_HEAD "06 00 3c 00 01 61", ENR_MQTT_MALFORMED},
    {"password without user name (3.1.1)", 0, V4_CONNECT_HEAD "42 00 3c 00 01 61 00 01 70",
     ENR_MQTT_MALFORMED},
    {"user name flag, no user name", 0, V4_CONNECT_HEAD "82 00 3c 00 01 61", ENR_MQTT_MALFORMED},
    {"keepalive cut short", 0, V4_CONNECT_HEAD "02 00", ENR_MQTT_MALFORMED},
    {"client id not UTF-8", 0, V4_CONNECT_HEAD "02 00 3c 00 02 c3 28", ENR_MQTT_BAD_UTF8},
    {"client id a surrogate", 0, V4_CONNECT_HEAD "02 00 3c 00 03 ed a0 80", ENR_MQTT_BAD_UTF8},
    {"client id overlong NUL", 0, V4_CONNECT_HEAD "02 00 3c 00 02 c0 80", ENR_MQTT_BAD_UTF8},
    {"client id NUL", 0, V4_CONNECT_HEAD "02 00 3c 00 01 00", ENR_MQTT_BAD_UTF8},
    {"client id above U+10FFFF", 0, V4_CONNECT_HEAD "02 00 3c 00 04 f4 90 80 80", ENR_MQTT_BAD_UTF8},
    {"user name not UTF-8", 0, V4_CONNECT_HEAD "82 00 3c 00 01 61 00 01 ff", ENR_MQTT_BAD_UTF8},
    {"bytes after CONNECT", 0, V4_CONNECT_HEAD "02 00 3c 00 01 61 ff", ENR_MQTT_MALFORMED},
    {"v5 duplicate property", 0, V5_CONNECT_HEAD "06 21 00 0a 21 00 0a 00 01 61", ENR_MQTT_MALFORMED},
    {"v5 unknown property", 0, V5_CONNECT_HEAD "02 7f 00 00 01 61", ENR_MQTT_MALFORMED},
    {"v5 topic alias in CONNECT", 0, V5_CONNECT_HEAD "03 23 00 01 00 01 61", ENR_MQTT_MALFORMED},
    {"v5 enhanced auth", 0, V5_CONNECT_HEAD "05 15 00 02 61 62 00 01 61", ENR_MQTT_AUTH_METHOD},
    {"v5 auth data alone", 0, V5_CONNECT_HEAD "03 16 00 00 00 01 61", ENR_MQTT_PROTOCOL_ERROR},
    {"v5 receive maximum 0", 0, V5_CONNECT_HEAD "03 21 00 00 00 01 61", ENR_MQTT_PROTOCOL_ERROR},
    {"v5 maximum packet size 0", 0, V5_CONNECT_HEAD "05 27 00 00 00 00 00 01 61", ENR_MQTT_PROTOCOL_ERROR},
    {"v5 request problem info 2", 0, V5_CONNECT_HEAD "02 17 02 00 01 61", ENR_MQTT_PROTOCOL_ERROR},
    {"v5 property past its length", 0, V5_CONNECT_HEAD "02 21 00 00 00 01 61", ENR_MQTT_MALFORMED},
    {"v5 property length past the end", 0, V5_CONNECT_HEAD "09 21 00", ENR_MQTT_MALFORMED},
    {"v5 user property value not UTF-8", 0, V5_CONNECT_HEAD "07 26 00 01 61 00 01 ff 00 01 61",
     ENR_MQTT_BAD_UTF8},
    {"v5 will property not allowed", 0, V5_CONNECT_HEAD "00 00 01 61 03 21 00 01 00 01 74 00 00",
     ENR_MQTT_MALFORMED},
    {"second CONNECT", 4, "10 LL 00 04 4d 51 54 54 04 02 00 3c 00 01 61", ENR_MQTT_PROTOCOL_ERROR},
    {"first packet not CONNECT", 0, "c0 00", ENR_MQTT_PROTOCOL_ERROR},
    /* PUBLISH */
    {"NUL in topic", 4, "30 LL 00 03 61 00 62", ENR_MQTT_BAD_UTF8},
    {"surrogate in topic", 4, "30 LL 00 03 ed bf bf", ENR_MQTT_BAD_UTF8},
    {"wildcard + in publish topic", 4, "30 LL 00 03 61 2f 2b", ENR_MQTT_TOPIC_INVALID},
    {"wildcard # in publish topic", 4, "30 LL 00 03 61 2f 23", ENR_MQTT_TOPIC_INVALID},
    {"empty publish topic", 4, "30 LL 00 00", ENR_MQTT_TOPIC_INVALID},
    {"topic past the end", 4, "30 LL 00 05 61", ENR_MQTT_MALFORMED},
    {"QoS 3", 4, "36 LL 00 01 61 00 01", ENR_MQTT_MALFORMED},
    {"QoS 2", 4, "34 LL 00 01 61 00 01 78", ENR_MQTT_QOS_NOT_SUPPORTED},
    {"QoS 2, v5", 5, "34 LL 00 01 61 00 01 00 78", ENR_MQTT_QOS_NOT_SUPPORTED},
    {"QoS 1, zero packet id", 4, "32 LL 00 01 61 00 00", ENR_MQTT_MALFORMED},
    {"QoS 1, packet id cut short", 4, "32 LL 00 01 61 00", ENR_MQTT_MALFORMED},
    {"DUP at QoS 0", 4, "38 LL 00 01 61", ENR_MQTT_MALFORMED},
    {"v5 topic alias", 5, "32 LL 00 01 61 00 01 03 23 00 01", ENR_MQTT_TOPIC_ALIAS},
    {"v5 subscription id from a client", 5, "30 LL 00 01 61 02 0b 01", ENR_MQTT_MALFORMED},
    {"v5 duplicate content type", 5, "30 LL 00 01 61 08 03 00 01 61 03 00 01 61", ENR_MQTT_MALFORMED},
    {"v5 publish properties missing", 5, "30 LL 00 01 61", ENR_MQTT_MALFORMED},
    /* SUBSCRIBE / UNSUBSCRIBE */
    {"subscribe with no filters", 4, "82 LL 00 01", ENR_MQTT_PROTOCOL_ERROR},
    {"subscribe zero packet id", 4, "82 LL 00 00 00 01 61 00", ENR_MQTT_MALFORMED},
    {"subscribe fixed flags 0", 4, "80 LL 00 01 00 01 61 00", ENR_MQTT_MALFORMED},
    {"subscribe QoS 3", 4, "82 LL 00 01 00 01 61 03", ENR_MQTT_MALFORMED},
    {"subscribe reserved option (3.1.1)", 4, "82 LL 00 01 00 01 61 04", ENR_MQTT_MALFORMED},
    {"subscribe reserved option (5)", 5, "82 LL 00 01 00 00 01 61 40", ENR_MQTT_MALFORMED},
    {"subscribe retain handling 3", 5, "82 LL 00 01 00 00 01 61 30", ENR_MQTT_PROTOCOL_ERROR},
    {"subscribe options missing", 4, "82 LL 00 01 00 01 61", ENR_MQTT_MALFORMED},
    {"subscribe filter a#", 4, "82 LL 00 01 00 02 61 23 00", ENR_MQTT_TOPIC_INVALID},
    {"subscribe filter #/a", 4, "82 LL 00 01 00 03 23 2f 61 00", ENR_MQTT_TOPIC_INVALID},
    {"subscribe filter a+", 4, "82 LL 00 01 00 02 61 2b 00", ENR_MQTT_TOPIC_INVALID},
    {"subscribe empty filter", 4, "82 LL 00 01 00 00 00", ENR_MQTT_TOPIC_INVALID},
    {"subscribe filter not UTF-8", 4, "82 LL 00 01 00 01 80 00", ENR_MQTT_BAD_UTF8},
    {"v5 subscription id 0", 5, "82 LL 00 01 02 0b 00 00 01 61 00", ENR_MQTT_PROTOCOL_ERROR},
    {"v5 subscribe unknown property", 5, "82 LL 00 01 02 01 00 00 01 61 00", ENR_MQTT_MALFORMED},
    {"unsubscribe with no filters", 4, "a2 LL 00 01", ENR_MQTT_PROTOCOL_ERROR},
    {"unsubscribe zero packet id", 4, "a2 LL 00 00 00 01 61", ENR_MQTT_MALFORMED},
    {"unsubscribe fixed flags 0", 4, "a0 LL 00 01 00 01 61", ENR_MQTT_MALFORMED},
    /* the rest */
    {"PUBACK zero packet id", 4, "40 02 00 00", ENR_MQTT_MALFORMED},
    {"PUBACK cut short", 4, "40 01 00", ENR_MQTT_MALFORMED},
    {"PUBACK with a body (3.1.1)", 4, "40 03 00 01 00", ENR_MQTT_MALFORMED},
    {"PUBACK bad property (5)", 5, "40 LL 00 01 10 02 21 00", ENR_MQTT_MALFORMED},
    {"PUBACK flags", 4, "41 02 00 01", ENR_MQTT_MALFORMED},
    {"PINGREQ with a body", 4, "c0 01 00", ENR_MQTT_MALFORMED},
    {"PINGREQ flags", 4, "c1 00", ENR_MQTT_MALFORMED},
    {"DISCONNECT with a body (3.1.1)", 4, "e0 01 00", ENR_MQTT_MALFORMED},
    {"DISCONNECT unknown property (5)", 5, "e0 LL 00 02 7f 00", ENR_MQTT_MALFORMED},
    {"DISCONNECT flags", 5, "e2 00", ENR_MQTT_MALFORMED},
    {"type 0", 4, "00 00", ENR_MQTT_MALFORMED},
    {"CONNACK from a client", 4, "20 02 00 00", ENR_MQTT_PACKET_TYPE},
    {"PUBREL (no QoS 2 here)", 4, "62 02 00 01", ENR_MQTT_PACKET_TYPE},
    {"AUTH (no enhanced auth)", 5, "f0 00", ENR_MQTT_PACKET_TYPE},
    {"PINGRESP from a client", 4, "d0 00", ENR_MQTT_PACKET_TYPE},
};

static void test_bad_table(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof BAD / sizeof BAD[0]; i++) {
        uint8_t b[256];
        size_t len = hex(BAD[i].bytes, b, sizeof b);
        enr_mqtt_packet p;
        enr_error err;
        memset(&err, 0, sizeof err);
        enr_mqtt_reason r = enr_mqtt_parse(b, len, BAD[i].level, &p, &err);
        if (r != BAD[i].reason)
            print_error("row %zu (%s): %s, expected %s (%s)\n", i, BAD[i].what, enr_mqtt_reason_name(r),
                        enr_mqtt_reason_name(BAD[i].reason), err.message);
        assert_int_equal(r, BAD[i].reason);
        assert_true(err.code == ENR_E_PARSE || err.code == ENR_E_UNSUPPORTED);
        assert_true(strlen(err.message) > 10);
        /* Parsed from an exact-size copy, so ASan sees any read past len. */
        uint8_t *exact = malloc(len ? len : 1);
        memcpy(exact, b, len);
        assert_int_equal(enr_mqtt_parse(exact, len, BAD[i].level, &p, &err), BAD[i].reason);
        free(exact);
    }
}

static void test_too_many_filters(void **state)
{
    (void)state;
    uint8_t body[512], pkt[600];
    size_t at = 2;
    body[0] = 0, body[1] = 9;
    for (int i = 0; i < ENR_MQTT_FILTERS_MAX + 1; i++) {
        at = put_str(body, at, "a/b");
        body[at++] = 1;
    }
    size_t len = wrap(0x82, body, at, pkt);
    enr_mqtt_packet p;
    enr_error err;
    assert_int_equal(enr_mqtt_parse(pkt, len, 4, &p, &err), ENR_MQTT_TOO_MANY);
    /* One fewer is fine, in order. */
    len = wrap(0x82, body, at - 6, pkt);
    assert_int_equal(enr_mqtt_parse(pkt, len, 4, &p, &err), ENR_MQTT_OK);
    assert_int_equal(p.u.subscribe.count, ENR_MQTT_FILTERS_MAX);
    assert_int_equal(p.u.subscribe.packet_id, 9);
}

static void test_utf8(void **state)
{
    (void)state;
    assert_true(enr_mqtt_utf8_valid((const uint8_t *)"", 0));
    assert_true(enr_mqtt_utf8_valid((const uint8_t *)"h\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80", 10));
    assert_true(enr_mqtt_utf8_valid((const uint8_t *)"\xf4\x8f\xbf\xbf", 4));  /* U+10FFFF */
    assert_true(enr_mqtt_utf8_valid((const uint8_t *)"\xee\x80\x80", 3));      /* U+E000 */
    assert_false(enr_mqtt_utf8_valid((const uint8_t *)"\xed\xa0\x80", 3));     /* U+D800 */
    assert_false(enr_mqtt_utf8_valid((const uint8_t *)"\xed\xbf\xbf", 3));     /* U+DFFF */
    assert_false(enr_mqtt_utf8_valid((const uint8_t *)"\xe0\x80\xaf", 3));     /* overlong '/' */
    assert_false(enr_mqtt_utf8_valid((const uint8_t *)"\xf0\x82\x82\xac", 4)); /* overlong */
    assert_false(enr_mqtt_utf8_valid((const uint8_t *)"\xc3", 1));             /* cut short */
    assert_false(enr_mqtt_utf8_valid((const uint8_t *)"\xf8\x88\x80\x80\x80", 5));
    assert_false(enr_mqtt_utf8_valid((const uint8_t *)"a\0b", 3));
    assert_false(enr_mqtt_utf8_valid((const uint8_t *)"\xbf", 1));
}

/* ---- good packets, as clients send them --------------------------------- */

#define USERNAME "0ne00000A0A/registrations/dev-001/api-version=2019-03-31&ClientVersion=azure-iot-provisioning-devicesdk%2F1.13.0"
#define PASSWORD "SharedAccessSignature sr=0ne00000A0A%2Fregistrations%2Fdev-001&sig=abc%3D&se=1767225600&skn=registration"

/* The Azure C SDK: 3.1.1, clean session 0, keepalive 240, user name and
 * password, no will. */
static void test_connect_c_sdk(void **state)
{
    (void)state;
    uint8_t body[512], pkt[600];
    size_t at = put_str(body, 0, "MQTT");
    body[at++] = 4;
    body[at++] = 0xc0;
    body[at++] = 0, body[at++] = 240;
    at = put_str(body, at, "dev-001");
    at = put_str(body, at, USERNAME);
    at = put_str(body, at, PASSWORD);
    size_t len = wrap(0x10, body, at, pkt);
    assert_true(len > 128 + 2); /* a two-byte remaining length */
    enr_mqtt_packet p;
    enr_error err;
    assert_int_equal(enr_mqtt_parse(pkt, len, 0, &p, &err), ENR_MQTT_OK);
    const enr_mqtt_connect *c = &p.u.connect;
    assert_int_equal(p.type, ENR_MQTT_CONNECT);
    assert_int_equal(c->level, 4);
    assert_false(c->clean_start);
    assert_false(c->has_will);
    assert_int_equal(c->keepalive, 240);
    assert_int_equal(c->client_id.len, 7);
    assert_memory_equal(c->client_id.data, "dev-001", 7);
    assert_true(c->has_username && c->has_password);
    assert_int_equal(c->username.len, strlen(USERNAME));
    assert_memory_equal(c->password.data, PASSWORD, strlen(PASSWORD));
    assert_int_equal(c->receive_maximum, 65535);

    enr_dps_mqtt_username u;
    assert_int_equal(enr_dps_mqtt_username_parse(c->username.data, c->username.len, &u, &err), ENR_MQTT_OK);
    assert_string_equal(u.id_scope, "0ne00000A0A");
    assert_string_equal(u.registration_id, "dev-001");
    assert_string_equal(u.api_version, "2019-03-31");
}

/* mosquitto_rr -V 5: clean start, keepalive 60, receive maximum 20, user
 * name and password; plus a will with properties, which is read past. */
static void test_connect_mosquitto_v5(void **state)
{
    (void)state;
    uint8_t body[512], pkt[600];
    size_t at = put_str(body, 0, "MQTT");
    body[at++] = 5;
    body[at++] = 0xc2 | 0x04 | 0x08; /* user, password, clean, will at QoS 1 */
    body[at++] = 0, body[at++] = 60;
    const uint8_t props[] = {0x0a, 0x21, 0x00, 0x14, 0x11, 0x00, 0x00, 0x00, 0x00, 0x17, 0x01};
    memcpy(body + at, props, sizeof props);
    at += sizeof props;
    at = put_str(body, at, "dev-001");
    const uint8_t will_props[] = {0x05, 0x18, 0x00, 0x00, 0x00, 0x05};
    memcpy(body + at, will_props, sizeof will_props);
    at += sizeof will_props;
    at = put_str(body, at, "will/topic");
    at = put_str(body, at, "gone");
    at = put_str(body, at, USERNAME);
    at = put_str(body, at, PASSWORD);
    size_t len = wrap(0x10, body, at, pkt);
    enr_mqtt_packet p;
    enr_error err;
    assert_int_equal(enr_mqtt_parse(pkt, len, 0, &p, &err), ENR_MQTT_OK);
    const enr_mqtt_connect *c = &p.u.connect;
    assert_int_equal(c->level, 5);
    assert_true(c->clean_start);
    assert_true(c->has_will);
    assert_int_equal(c->keepalive, 60);
    assert_int_equal(c->receive_maximum, 20);
    assert_int_equal(c->session_expiry, 0);
    assert_int_equal(c->username.len, strlen(USERNAME));
    assert_int_equal(c->password.len, strlen(PASSWORD));

    /* An MQTT 5 password without a user name is allowed; an empty client id too. */
    len = hex(V5_CONNECT_HEAD "05 27 00 00 10 00 00 00 00 02 70 77", pkt, sizeof pkt);
    pkt[9] = 0x42;
    assert_int_equal(enr_mqtt_parse(pkt, len, 0, &p, &err), ENR_MQTT_OK);
    assert_true(p.u.connect.has_password);
    assert_false(p.u.connect.has_username);
    assert_int_equal(p.u.connect.maximum_packet_size, 4096);
    assert_int_equal(p.u.connect.client_id.len, 0);
}

static void test_subscribe_and_publish(void **state)
{
    (void)state;
    uint8_t b[256];
    enr_mqtt_packet p;
    enr_error err;
    /* The DPS subscription, 3.1.1 at QoS 1 and 5 with options. */
    size_t len = hex("82 LL 00 01 00 18 24 64 70 73 2f 72 65 67 69 73 74 72 61 74 69 6f 6e 73 2f 72 65 73 2f "
                     "23 01",
                     b, sizeof b);
    assert_int_equal(enr_mqtt_parse(b, len, 4, &p, &err), ENR_MQTT_OK);
    assert_int_equal(p.type, ENR_MQTT_SUBSCRIBE);
    assert_int_equal(p.u.subscribe.count, 1);
    assert_int_equal(p.u.subscribe.filters[0].filter.len, strlen(ENR_DPS_MQTT_RESPONSE_FILTER));
    assert_memory_equal(p.u.subscribe.filters[0].filter.data, ENR_DPS_MQTT_RESPONSE_FILTER, 24);
    assert_int_equal(p.u.subscribe.filters[0].options, 1);
    len = hex("82 LL 00 02 02 0b 05 00 03 2b 2f 23 2d 00 01 61 00", b, sizeof b);
    assert_int_equal(enr_mqtt_parse(b, len, 5, &p, &err), ENR_MQTT_OK);
    assert_int_equal(p.u.subscribe.count, 2);
    assert_int_equal(p.u.subscribe.filters[0].options, 0x2d);
    len = hex("a2 LL 00 03 00 01 61 00 01 62", b, sizeof b);
    assert_int_equal(enr_mqtt_parse(b, len, 4, &p, &err), ENR_MQTT_OK);
    assert_int_equal(p.type, ENR_MQTT_UNSUBSCRIBE);
    assert_int_equal(p.u.subscribe.count, 2);
    /* The C SDK's poll: QoS 0, empty payload. */
    const char *poll = "$dps/registrations/GET/iotdps-get-operationstatus/?$rid=1&operationId=4.d0a6.x";
    uint8_t body[200];
    size_t at = put_str(body, 0, poll);
    len = wrap(0x30, body, at, b);
    assert_int_equal(enr_mqtt_parse(b, len, 4, &p, &err), ENR_MQTT_OK);
    assert_int_equal(p.u.publish.qos, 0);
    assert_int_equal(p.u.publish.payload.len, 0);
    enr_dps_mqtt_topic t;
    assert_int_equal(enr_dps_mqtt_topic_parse(p.u.publish.topic.data, p.u.publish.topic.len, &t, &err),
                     ENR_MQTT_OK);
    assert_false(t.is_register);
    assert_string_equal(t.rid, "1");
    assert_string_equal(t.operation_id, "4.d0a6.x");
    /* v5 PUBLISH with properties read past, retain and DUP kept. */
    len = hex("3b LL 00 01 61 00 07 07 01 00 26 00 01 6b 00", b, sizeof b);
    assert_int_equal(enr_mqtt_parse(b, len, 5, &p, &err), ENR_MQTT_MALFORMED); /* user property cut */
    len = hex("3b LL 00 01 61 00 07 0b 01 00 03 00 01 6a 26 00 00 00 00 7b 7d", b, sizeof b);
    assert_int_equal(enr_mqtt_parse(b, len, 5, &p, &err), ENR_MQTT_OK);
    assert_true(p.u.publish.dup && p.u.publish.retain);
    assert_int_equal(p.u.publish.packet_id, 7);
    assert_int_equal(p.u.publish.payload.len, 2);
    assert_memory_equal(p.u.publish.payload.data, "{}", 2);
    /* PINGREQ, DISCONNECT of both levels. */
    len = hex("c0 00", b, sizeof b);
    assert_int_equal(enr_mqtt_parse(b, len, 4, &p, &err), ENR_MQTT_OK);
    assert_int_equal(p.type, ENR_MQTT_PINGREQ);
    len = hex("e0 00", b, sizeof b);
    assert_int_equal(enr_mqtt_parse(b, len, 4, &p, &err), ENR_MQTT_OK);
    assert_int_equal(p.type, ENR_MQTT_DISCONNECT);
    len = hex("e0 LL 04 05 11 00 00 00 00", b, sizeof b);
    assert_int_equal(enr_mqtt_parse(b, len, 5, &p, &err), ENR_MQTT_OK);
    assert_int_equal(p.u.disconnect.reason, 4);
}

/* ---- encoders ------------------------------------------------------------- */

static void expect_bytes(const uint8_t *got, size_t got_len, const char *want_hex)
{
    uint8_t want[256];
    size_t n = hex(want_hex, want, sizeof want);
    assert_int_equal(got_len, n);
    assert_memory_equal(got, want, n);
    /* Every encoder's output frames as exactly itself. */
    size_t framed;
    enr_error err;
    assert_int_equal(enr_mqtt_frame(got, got_len, got_len, &framed, &err), ENR_MQTT_OK);
    assert_int_equal(framed, got_len);
}

static void test_encode_known_answers(void **state)
{
    (void)state;
    uint8_t b[256];
    enr_mqtt_connack a = {0};
    size_t n = enr_mqtt_encode_connack(b, sizeof b, 4, &a);
    expect_bytes(b, n, "20 02 00 00");
    a.code = ENR_MQTT_CONNACK_BAD_CREDENTIALS;
    n = enr_mqtt_encode_connack(b, sizeof b, 4, &a);
    expect_bytes(b, n, "20 02 00 04");
    a.code = 0x86; /* not a 3.1.1 code */
    assert_int_equal(enr_mqtt_encode_connack(b, sizeof b, 4, &a), 0);
    n = enr_mqtt_encode_connack(b, sizeof b, 5, &a); /* refused: no properties */
    expect_bytes(b, n, "20 03 00 86 00");
    a = (enr_mqtt_connack){.code = 0, .receive_maximum = 10, .maximum_packet_size = 65536,
                           .has_server_keepalive = true, .server_keepalive = 300};
    n = enr_mqtt_encode_connack(b, sizeof b, 5, &a);
    expect_bytes(b, n, "20 LL 00 00 13 25 00 24 01 29 00 2a 00 21 00 0a 27 00 01 00 00 13 01 2c");
    assert_int_equal(enr_mqtt_encode_connack(b, sizeof b, 3, &a), 0);

    const uint8_t granted[] = {1, 0x80};
    n = enr_mqtt_encode_suback(b, sizeof b, 4, 7, granted, 2);
    expect_bytes(b, n, "90 04 00 07 01 80");
    const uint8_t bad_v4[] = {0x87};
    assert_int_equal(enr_mqtt_encode_suback(b, sizeof b, 4, 7, bad_v4, 1), 0);
    n = enr_mqtt_encode_suback(b, sizeof b, 5, 7, bad_v4, 1);
    expect_bytes(b, n, "90 04 00 07 00 87");
    assert_int_equal(enr_mqtt_encode_suback(b, sizeof b, 4, 0, granted, 2), 0); /* packet id 0 */
    assert_int_equal(enr_mqtt_encode_suback(b, sizeof b, 4, 7, granted, 0), 0); /* no codes */

    n = enr_mqtt_encode_unsuback(b, sizeof b, 4, 0x0102, NULL, 0);
    expect_bytes(b, n, "b0 02 01 02");
    const uint8_t unsub[] = {0x00, 0x11};
    n = enr_mqtt_encode_unsuback(b, sizeof b, 5, 0x0102, unsub, 2);
    expect_bytes(b, n, "b0 05 01 02 00 00 11");

    n = enr_mqtt_encode_pingresp(b, sizeof b);
    expect_bytes(b, n, "d0 00");
    n = enr_mqtt_encode_disconnect(b, sizeof b, 5, ENR_MQTT5_MALFORMED);
    expect_bytes(b, n, "e0 01 81");
    assert_int_equal(enr_mqtt_encode_disconnect(b, sizeof b, 4, 0), 0);
    n = enr_mqtt_encode_puback(b, sizeof b, 5, 9, 0x10);
    expect_bytes(b, n, "40 03 00 09 10");
    assert_int_equal(enr_mqtt_encode_puback(b, sizeof b, 4, 9, 0x10), 0);
    n = enr_mqtt_encode_publish(b, sizeof b, 4, 0, 0, "a/b", 3, (const uint8_t *)"hi", 2);
    expect_bytes(b, n, "30 07 00 03 61 2f 62 68 69");
    n = enr_mqtt_encode_publish(b, sizeof b, 5, 1, 5, "a/b", 3, NULL, 0);
    expect_bytes(b, n, "32 08 00 03 61 2f 62 00 05 00");
    assert_int_equal(enr_mqtt_encode_publish(b, sizeof b, 4, 1, 0, "a", 1, NULL, 0), 0);
    assert_int_equal(enr_mqtt_encode_publish(b, sizeof b, 4, 2, 1, "a", 1, NULL, 0), 0);
    assert_int_equal(enr_mqtt_encode_publish(b, sizeof b, 4, 0, 0, "", 0, NULL, 0), 0);
}

/* Too small a buffer: the size comes back and nothing is written. */
static void test_encode_sizes(void **state)
{
    (void)state;
    uint8_t b[8];
    memset(b, 0xee, sizeof b);
    size_t n = enr_mqtt_encode_publish(b, 4, 4, 0, 0, "a/b", 3, (const uint8_t *)"hi", 2);
    assert_int_equal(n, 9);
    for (size_t i = 0; i < sizeof b; i++)
        assert_int_equal(b[i], 0xee);
    assert_int_equal(enr_mqtt_encode_publish(NULL, 0, 4, 0, 0, "a/b", 3, (const uint8_t *)"hi", 2), 9);
    enr_mqtt_connack a = {0};
    assert_int_equal(enr_mqtt_encode_connack(NULL, 0, 5, &a), 13);
}

/* What both sides read: PUBLISH, PUBACK and DISCONNECT go round. */
static void test_round_trips(void **state)
{
    (void)state;
    static uint8_t payload[70000], b[70100];
    for (size_t i = 0; i < sizeof payload; i++)
        payload[i] = (uint8_t)(i * 7);
    const size_t sizes[] = {0, 1, 127, 200, 16383, 16384, sizeof payload};
    const char *topic = "$dps/registrations/res/202/?$rid=1&retry-after=3";
    for (uint8_t level = 4; level <= 5; level++) {
        for (uint8_t qos = 0; qos <= 1; qos++) {
            for (size_t s = 0; s < sizeof sizes / sizeof sizes[0]; s++) {
                size_t n = enr_mqtt_encode_publish(b, sizeof b, level, qos, qos ? 0xbeef : 0, topic,
                                                   strlen(topic), payload, sizes[s]);
                assert_true(n > sizes[s]);
                size_t framed;
                enr_error err;
                assert_int_equal(enr_mqtt_frame(b, n, n, &framed, &err), ENR_MQTT_OK);
                assert_int_equal(framed, n);
                enr_mqtt_packet p;
                assert_int_equal(enr_mqtt_parse(b, n, level, &p, &err), ENR_MQTT_OK);
                assert_int_equal(p.type, ENR_MQTT_PUBLISH);
                assert_int_equal(p.u.publish.qos, qos);
                assert_int_equal(p.u.publish.packet_id, qos ? 0xbeef : 0);
                assert_int_equal(p.u.publish.topic.len, strlen(topic));
                assert_memory_equal(p.u.publish.topic.data, topic, strlen(topic));
                assert_int_equal(p.u.publish.payload.len, sizes[s]);
                if (sizes[s])
                    assert_memory_equal(p.u.publish.payload.data, payload, sizes[s]);
            }
        }
        for (uint8_t reason = 0; reason <= (level == 5 ? 0x10 : 0); reason += 0x10) {
            size_t n = enr_mqtt_encode_puback(b, sizeof b, level, 42, reason);
            enr_mqtt_packet p;
            enr_error err;
            assert_int_equal(enr_mqtt_parse(b, n, level, &p, &err), ENR_MQTT_OK);
            assert_int_equal(p.type, ENR_MQTT_PUBACK);
            assert_int_equal(p.u.puback.packet_id, 42);
            assert_int_equal(p.u.puback.reason, reason);
        }
    }
    size_t n = enr_mqtt_encode_disconnect(b, sizeof b, 5, ENR_MQTT5_KEEPALIVE_TIMEOUT);
    enr_mqtt_packet p;
    enr_error err;
    assert_int_equal(enr_mqtt_parse(b, n, 5, &p, &err), ENR_MQTT_OK);
    assert_int_equal(p.u.disconnect.reason, ENR_MQTT5_KEEPALIVE_TIMEOUT);
}

static void test_reason_codes(void **state)
{
    (void)state;
    assert_int_equal(enr_mqtt_reason_v5_code(ENR_MQTT_MALFORMED), 0x81);
    assert_int_equal(enr_mqtt_reason_v5_code(ENR_MQTT_TOO_LARGE), 0x95);
    assert_int_equal(enr_mqtt_reason_v5_code(ENR_MQTT_QOS_NOT_SUPPORTED), 0x9B);
    assert_int_equal(enr_mqtt_reason_v5_code(ENR_MQTT_PROTOCOL_VERSION), 0x84);
    assert_int_equal(enr_mqtt_reason_v5_code(ENR_MQTT_AUTH_METHOD), 0x8C);
    assert_string_equal(enr_mqtt_reason_name(ENR_MQTT_TOPIC_ALIAS), "topic-alias");
}

/* ---- DPS names ------------------------------------------------------------ */

static const struct name_row {
    const char *text;
    bool ok;
} USERNAMES[] = {
    {"0ne00000A0A/registrations/dev-001/api-version=2019-03-31", true},
    {"0ne00000A0A/registrations/dev-001/api-version=2021-11-01-preview&ClientVersion=x%2F1", true},
    {"0ne00000A0A/registrations/Dev.001:x_y/api-version=2025-07-01-preview&", true},
    {"", false},
    {"0ne00000A0A", false},
    {"/registrations/dev-001/api-version=2019-03-31", false},
    {"0ne0000-0A0A/registrations/dev-001/api-version=2019-03-31", false},
    {"0ne00000A0A/registration/dev-001/api-version=2019-03-31", false},
    {"0ne00000A0A/registrations//api-version=2019-03-31", false},
    {"0ne00000A0A/registrations/dev-001", false},
    {"0ne00000A0A/registrations/dev-001/", false},
    {"0ne00000A0A/registrations/dev-001/api-version=", false},
    {"0ne00000A0A/registrations/dev-001/api-version=&ClientVersion=1", false},
    {"0ne00000A0A/registrations/dev-001/api-version=2019/03", false},
    {"0ne00000A0A/registrations/dev 001/api-version=2019-03-31", false},
    {"0ne00000A0A/registrations/dev!001/api-version=2019-03-31", false},
    {"0ne00000A0A/registrations/dev-001/apiversion=2019-03-31", false},
    {"0ne00000A0A/registrations/dev-001/api-version=2019-03-31&Client\001Version=1", false},
    {"0ne00000A0A/registrations/dev-001/api-version=2019-03-31-aaaaaaaaaaaaaaaaaaaaaaa", false},
};

static const struct name_row TOPICS[] = {
    {"$dps/registrations/PUT/iotdps-register/?$rid=1", true},
    {"$dps/registrations/PUT/iotdps-register/?$rid=6f6b1a08-21a4-4a8f-9d2e-9cf1a6f0c3b7", true},
    {"$dps/registrations/PUT/iotdps-register/?x=y&$rid=1", true},
    {"$dps/registrations/GET/iotdps-get-operationstatus/?$rid=2&operationId=4.36bf.d3a1-9", true},
    {"$dps/registrations/GET/iotdps-get-operationstatus/?operationId=abc&$rid=2", true},
    {"$dps/registrations/PUT/iotdps-register/", false},
    {"$dps/registrations/PUT/iotdps-register/?", false},
    {"$dps/registrations/PUT/iotdps-register/?$rid=", false},
    {"$dps/registrations/PUT/iotdps-register/?$rid", false},
    {"$dps/registrations/PUT/iotdps-register/?$rid=1&", false},
    {"$dps/registrations/PUT/iotdps-register/?$rid=1&$rid=2", false},
    {"$dps/registrations/PUT/iotdps-register/?$rid=a/b", false},
    {"$dps/registrations/PUT/iotdps-register/?$rid=a b", false},
    {"$dps/registrations/PUT/iotdps-register/?$rid=0123456789012345678901234567890123456789012345678901234567890123"
     "4",
     false},
    {"$dps/registrations/PUT/iotdps-register?$rid=1", false},
    {"$dps/registrations/res/200/?$rid=1", false},
    {"$dps/registrations/GET/iotdps-get-operationstatus/?$rid=2", false},
    {"$dps/registrations/GET/iotdps-get-operationstatus/?$rid=2&operationId=", false},
    {"$dps/registrations/GET/iotdps-get-operationstatus/?$rid=2&operationId=a&operationId=b", false},
    {"$dps/registrations/GET/iotdps-get-operationstatus/?$rid=2&operationId=a b", false},
};

static void test_dps_names(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof USERNAMES / sizeof USERNAMES[0]; i++) {
        enr_dps_mqtt_username u;
        enr_error err;
        memset(&err, 0, sizeof err);
        const char *s = USERNAMES[i].text;
        enr_mqtt_reason r = enr_dps_mqtt_username_parse((const uint8_t *)s, strlen(s), &u, &err);
        if ((r == ENR_MQTT_OK) != USERNAMES[i].ok)
            print_error("username row %zu: %s (%s)\n", i, enr_mqtt_reason_name(r), err.message);
        assert_int_equal(r, USERNAMES[i].ok ? ENR_MQTT_OK : ENR_MQTT_DPS_USERNAME);
        if (!USERNAMES[i].ok)
            assert_true(strlen(err.message) > 10);
    }
    char scope65[100];
    memset(scope65, 'a', 65);
    strcpy(scope65 + 65, "/registrations/d/api-version=1");
    enr_dps_mqtt_username u;
    assert_int_equal(enr_dps_mqtt_username_parse((const uint8_t *)scope65, strlen(scope65), &u, NULL),
                     ENR_MQTT_DPS_USERNAME);
    char id129[220] = "s/registrations/";
    memset(id129 + 16, 'd', 129);
    strcpy(id129 + 16 + 129, "/api-version=1");
    assert_int_equal(enr_dps_mqtt_username_parse((const uint8_t *)id129, strlen(id129), &u, NULL),
                     ENR_MQTT_DPS_USERNAME);
    id129[16 + 128] = '/';
    strcpy(id129 + 16 + 129, "api-version=1");
    assert_int_equal(enr_dps_mqtt_username_parse((const uint8_t *)id129, strlen(id129), &u, NULL), ENR_MQTT_OK);
    assert_int_equal(strlen(u.registration_id), 128);

    for (size_t i = 0; i < sizeof TOPICS / sizeof TOPICS[0]; i++) {
        enr_dps_mqtt_topic t;
        enr_error err;
        memset(&err, 0, sizeof err);
        const char *s = TOPICS[i].text;
        enr_mqtt_reason r = enr_dps_mqtt_topic_parse((const uint8_t *)s, strlen(s), &t, &err);
        if ((r == ENR_MQTT_OK) != TOPICS[i].ok)
            print_error("topic row %zu: %s (%s)\n", i, enr_mqtt_reason_name(r), err.message);
        assert_int_equal(r, TOPICS[i].ok ? ENR_MQTT_OK : ENR_MQTT_DPS_TOPIC);
    }
    enr_dps_mqtt_topic t;
    const char *reg = "$dps/registrations/PUT/iotdps-register/?$rid=42";
    assert_int_equal(enr_dps_mqtt_topic_parse((const uint8_t *)reg, strlen(reg), &t, NULL), ENR_MQTT_OK);
    assert_true(t.is_register);
    assert_string_equal(t.rid, "42");
    assert_string_equal(t.operation_id, "");
}

static void test_response_topic(void **state)
{
    (void)state;
    char out[128];
    assert_int_equal(enr_dps_mqtt_response_topic(out, sizeof out, 202, "1", 3), 48);
    assert_string_equal(out, "$dps/registrations/res/202/?$rid=1&retry-after=3");
    assert_true(enr_dps_mqtt_response_topic(out, sizeof out, 200, "ab-c", 0) > 0);
    assert_string_equal(out, "$dps/registrations/res/200/?$rid=ab-c");
    assert_int_equal(enr_dps_mqtt_response_topic(out, 20, 200, "1", 0), 0);
    assert_int_equal(enr_dps_mqtt_response_topic(out, sizeof out, 200, "a#", 0), 0);
    assert_int_equal(enr_dps_mqtt_response_topic(out, sizeof out, 200, "", 0), 0);
    assert_int_equal(enr_dps_mqtt_response_topic(out, sizeof out, 42, "1", 0), 0);
    enr_dps_mqtt_response_topic(out, sizeof out, 401, "7", 1);
    uint8_t b[200];
    size_t n = enr_mqtt_encode_publish(b, sizeof b, 4, 0, 0, out, strlen(out), NULL, 0);
    enr_mqtt_packet p;
    enr_error err;
    assert_int_equal(enr_mqtt_parse(b, n, 4, &p, &err), ENR_MQTT_OK);
    assert_int_equal(strncmp(out, ENR_DPS_MQTT_RESPONSE_FILTER, 23), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_frame),
        cmocka_unit_test(test_frame_every_cut),
        cmocka_unit_test(test_bad_table),
        cmocka_unit_test(test_too_many_filters),
        cmocka_unit_test(test_utf8),
        cmocka_unit_test(test_connect_c_sdk),
        cmocka_unit_test(test_connect_mosquitto_v5),
        cmocka_unit_test(test_subscribe_and_publish),
        cmocka_unit_test(test_encode_known_answers),
        cmocka_unit_test(test_encode_sizes),
        cmocka_unit_test(test_round_trips),
        cmocka_unit_test(test_reason_codes),
        cmocka_unit_test(test_dps_names),
        cmocka_unit_test(test_response_topic),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
