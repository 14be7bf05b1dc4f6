/* The device's MQTT side without a network: the answer topics it accepts
 * (and the ones it must ignore), which CONNACK codes end a registration for
 * good, mqtts:// URLs, and the URL/transport agreement enr_device_new
 * enforces (a bad combination is a usage error, before anything is made). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "device/link.h"
#include "enroll/device.h"
#include "enroll/http_client.h"

static void test_answer_topics(void **state)
{
    (void)state;
    int status = 0;
    long ra = 0;
    char rid[DEV_MQTT_RID_MAX];
    assert_true(dev_mqtt_answer_topic_parse("$dps/registrations/res/200/?$rid=1", &status, rid, sizeof rid, &ra));
    assert_int_equal(status, 200);
    assert_string_equal(rid, "1");
    assert_int_equal(ra, -1);
    assert_true(dev_mqtt_answer_topic_parse("$dps/registrations/res/202/?$rid=17&retry-after=3", &status, rid,
                                            sizeof rid, &ra));
    assert_int_equal(status, 202);
    assert_string_equal(rid, "17");
    assert_int_equal(ra, 3);
    /* Parameters in any order, unknown ones skipped. */
    assert_true(dev_mqtt_answer_topic_parse("$dps/registrations/res/429/?retry-after=60&x=y&$rid=abc", &status, rid,
                                            sizeof rid, &ra));
    assert_int_equal(status, 429);
    assert_string_equal(rid, "abc");
    assert_int_equal(ra, 60);
    assert_true(dev_mqtt_answer_topic_parse("$dps/registrations/res/401/?$rid=2", &status, rid, sizeof rid, &ra));
    assert_int_equal(status, 401);

    static const char *const bad[] = {
        "",
        "$dps/registrations/res/200",
        "$dps/registrations/res/200/",
        "$dps/registrations/res/200/?",
        "$dps/registrations/res/200/?$rid=",
        "$dps/registrations/res/200/?rid=1",
        "$dps/registrations/res/20/?$rid=1",
        "$dps/registrations/res/2000/?$rid=1",
        "$dps/registrations/res/abc/?$rid=1",
        "$dps/registrations/res/100/?$rid=1",
        "$dps/registrations/res/600/?$rid=1",
        "$dps/registrations/res/200/?$rid=1&",
        "$dps/registrations/res/200/?$rid=1&$rid=2",
        "$dps/registrations/res/200/?$rid=1&retry-after=x",
        "$dps/registrations/res/200/?$rid=1&retry-after=",
        "$dps/registrations/res/200/?$rid=1&retry-after=-1",
        "$dps/registrations/res/200/?$rid=1&retry-after=99999999",
        "$dps/registrations/res/200/?$rid=1&noequals",
        "$dps/registrations/res/200/?$rid=a/b",
        "$dps/registrations/res/200/?$rid=a b",
        "$dps/registrations/PUT/iotdps-register/?$rid=1",
        "$dps/registrations/res/200/?$rid=123456789012345678901234567890123", /* longer than the buffer */
        "devices/x/messages/devicebound/?$rid=1",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        if (dev_mqtt_answer_topic_parse(bad[i], &status, rid, sizeof rid, &ra))
            fail_msg("answer topic '%s' accepted", bad[i]);
    assert_false(dev_mqtt_answer_topic_parse(NULL, &status, rid, sizeof rid, &ra));
    /* A rid that fits only without its terminator. */
    char small[4];
    assert_false(dev_mqtt_answer_topic_parse("$dps/registrations/res/200/?$rid=1234", &status, small, sizeof small,
                                             &ra));
    assert_true(dev_mqtt_answer_topic_parse("$dps/registrations/res/200/?$rid=123", &status, small, sizeof small, &ra));
}

static void test_connack(void **state)
{
    (void)state;
    /* The credential (or the identity) itself: never retried. */
    static const int refuse[] = {2, 4, 5, 0x85, 0x86, 0x87, 0x8A, 0x8C};
    for (size_t i = 0; i < sizeof refuse / sizeof refuse[0]; i++)
        if (!dev_mqtt_connack_refuses_credential(refuse[i]))
            fail_msg("CONNACK %d should refuse the credential", refuse[i]);
    /* What waiting may cure, or not a verdict on the credential. */
    static const int other[] = {0, 1, 3, 0x80, 0x84, 0x88, 0x89, 0x97};
    for (size_t i = 0; i < sizeof other / sizeof other[0]; i++)
        if (dev_mqtt_connack_refuses_credential(other[i]))
            fail_msg("CONNACK %d should not refuse the credential", other[i]);
    assert_string_equal(dev_mqtt_connack_text(4), "bad user name or password");
    assert_string_equal(dev_mqtt_connack_text(0x87), "not authorized");
}

static void test_mqtts_urls(void **state)
{
    (void)state;
    enr_url u;
    enr_error err;
    assert_int_equal(enr_url_parse_scheme("mqtts://dps.example", "mqtts", 8883, &u, &err), ENR_OK);
    assert_string_equal(u.host, "dps.example");
    assert_int_equal(u.port, 8883);
    assert_int_equal(enr_url_parse_scheme("MQTTS://127.0.0.1:1883", "mqtts", 8883, &u, &err), ENR_OK);
    assert_int_equal(u.port, 1883);
    assert_true(u.host_is_ip);
    assert_int_equal(enr_url_parse_scheme("https://h", "mqtts", 8883, &u, &err), ENR_E_USAGE);
    assert_non_null(strstr(err.message, "mqtts://"));
    assert_int_equal(enr_url_parse_scheme("mqtt://h", "mqtts", 8883, &u, &err), ENR_E_USAGE);
    assert_int_equal(enr_url_parse_scheme("mqttsx://h", "mqtts", 8883, &u, &err), ENR_E_USAGE);
    assert_true(dev_url_is_mqtt("mqtts://h"));
    assert_true(dev_url_is_mqtt("MQTTS://h"));
    assert_false(dev_url_is_mqtt("https://h"));
    assert_false(dev_url_is_mqtt("mqtt://h"));
    assert_false(dev_url_is_mqtt(NULL));
}

static void test_transport_names(void **state)
{
    (void)state;
    enr_device_transport t = ENR_DEVICE_TRANSPORT_AUTO;
    enr_error err;
    assert_int_equal(enr_device_transport_parse("mqtt", &t, &err), ENR_OK);
    assert_int_equal(t, ENR_DEVICE_TRANSPORT_MQTT);
    assert_int_equal(enr_device_transport_parse("https", &t, &err), ENR_OK);
    assert_int_equal(t, ENR_DEVICE_TRANSPORT_HTTPS);
    assert_int_equal(enr_device_transport_parse("MQTT", &t, &err), ENR_E_USAGE);
    assert_int_equal(enr_device_transport_parse("", &t, &err), ENR_E_USAGE);
    assert_int_equal(enr_device_transport_parse(NULL, &t, &err), ENR_E_USAGE);
    assert_string_equal(enr_device_transport_name(ENR_DEVICE_TRANSPORT_MQTT), "mqtt");
    assert_string_equal(enr_device_transport_name(ENR_DEVICE_TRANSPORT_HTTPS), "https");
}

/* enr_device_new with a URL and a transport: which combinations are taken,
 * and that a refused one says what to give. Nothing is contacted: a device
 * object is only made (the store directory is not even created). */
static void test_url_and_transport(void **state)
{
    (void)state;
    static const struct {
        const char *url;
        enr_device_transport transport;
        bool ok;
        const char *says;
    } rows[] = {
        {"https://127.0.0.1:8443", ENR_DEVICE_TRANSPORT_AUTO, true, NULL},
        {"https://127.0.0.1:8443", ENR_DEVICE_TRANSPORT_HTTPS, true, NULL},
        {"mqtts://127.0.0.1:8883", ENR_DEVICE_TRANSPORT_AUTO, true, NULL},
        {"mqtts://127.0.0.1", ENR_DEVICE_TRANSPORT_MQTT, true, NULL},
        {"https://127.0.0.1:8443", ENR_DEVICE_TRANSPORT_MQTT, false, "needs an mqtts://"},
        {"mqtts://127.0.0.1:8883", ENR_DEVICE_TRANSPORT_HTTPS, false, "needs an https://"},
        {"mqtt://127.0.0.1:1883", ENR_DEVICE_TRANSPORT_MQTT, false, "plain MQTT is refused"},
        {"mqtts://127.0.0.1:8883/prefix", ENR_DEVICE_TRANSPORT_MQTT, false, "has no path"},
        {"mqtts://127.0.0.1:0", ENR_DEVICE_TRANSPORT_AUTO, false, "port"},
        {"ftp://127.0.0.1", ENR_DEVICE_TRANSPORT_AUTO, false, "mqtts://host"},
        {"http://127.0.0.1", ENR_DEVICE_TRANSPORT_HTTPS, false, "https://"},
    };
    char store[] = "/tmp/enroll-unit-mqtt-XXXXXX";
    assert_non_null(mkdtemp(store));
    char dir[sizeof store + 8];
    snprintf(dir, sizeof dir, "%s/s", store);
    for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
        enr_device_config cfg = {.url = rows[i].url, .transport = rows[i].transport, .id_scope = "0ne0001",
                                 .registration_id = "dev-1", .auth = ENR_DEVICE_AUTH_GROUP_KEY,
                                 .symmetric_key_file = "/nonexistent/group.key", .key_ref = "/nonexistent/dev.key",
                                 .trust_file = "/nonexistent/root.pem", .store_dir = dir};
        enr_device *d = NULL;
        enr_error err = {0};
        enr_code rc = enr_device_new(&cfg, &d, &err);
        if (rows[i].ok && rc != ENR_OK)
            fail_msg("row %zu (%s): refused: %s", i, rows[i].url, err.message);
        if (!rows[i].ok) {
            if (rc != ENR_E_USAGE)
                fail_msg("row %zu (%s): %d, wanted a usage error", i, rows[i].url, rc);
            if (strstr(err.message, rows[i].says) == NULL)
                fail_msg("row %zu (%s): '%s' does not say '%s'", i, rows[i].url, err.message, rows[i].says);
            assert_null(d);
        }
        enr_device_free(d);
    }
    assert_int_equal(access(dir, F_OK), -1); /* nothing was made */
    assert_int_equal(rmdir(store), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_answer_topics),     cmocka_unit_test(test_connack),
        cmocka_unit_test(test_mqtts_urls),        cmocka_unit_test(test_transport_names),
        cmocka_unit_test(test_url_and_transport),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
