/* enrolld's configuration reader: defaults, relative paths, and a table of
 * bad configurations that must each be refused with a message. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "enroll/service.h"

static enr_service_config *parse(const char *text, enr_error *err)
{
    enr_service_config *cfg = NULL;
    if (enr_service_config_parse(text, strlen(text), "/etc/enroll", &cfg, err) != ENR_OK)
        return NULL;
    return cfg;
}

static void test_good_config(void **state)
{
    (void)state;
    enr_error err;
    enr_service_config *cfg = parse("{\"listen\":\"[::1]:8443\",\"data_dir\":\"data\",\"id_scope\":\"0ne1\","
                                    "\"tls\":{\"cert\":\"s.pem\",\"key\":\"/abs/s.key\"},"
                                    "\"limits\":{\"max_body_bytes\":2048}}",
                                    &err);
    assert_non_null(cfg);
    assert_string_equal(cfg->listen_host, "::1");
    assert_int_equal(cfg->listen_port, 8443);
    assert_string_equal(cfg->store_location, "/etc/enroll/data");
    assert_string_equal(cfg->tls_cert, "/etc/enroll/s.pem");
    assert_string_equal(cfg->tls_key, "/abs/s.key");
    assert_null(cfg->tls_client_ca);
    assert_int_equal(cfg->max_body_bytes, 2048);
    assert_int_equal(cfg->max_header_bytes, 8192);  /* default */
    assert_int_equal(cfg->timeout_seconds, 30);      /* default */
    assert_int_equal(cfg->assigning_after_ms, 2000); /* default */
    assert_false(cfg->plain_http);
    assert_null(cfg->admin_client_ca);
    /* Hostile clients and the audit trail: the defaults. */
    assert_int_equal(cfg->max_connections, 0); /* from the descriptor limit */
    assert_int_equal(cfg->handshake_timeout_seconds, 10);
    assert_int_equal(cfg->request_timeout_seconds, 30);
    assert_int_equal(cfg->log_lines_per_second, 20);
    assert_false(cfg->create_store);
    assert_int_equal(cfg->audit_max_age_days, 365);
    assert_int_equal(cfg->audit_max_rows, 1000000);
    assert_int_equal(cfg->audit_refusal_samples, 10);
    enr_service_config_free(cfg);
}

static void test_mqtt_config(void **state)
{
    (void)state;
    enr_error err;
    enr_service_config *cfg = parse("{\"listen\":\"h:1\",\"plain_http\":true,\"data_dir\":\"d\",\"id_scope\":\"s1\"}", &err);
    assert_non_null(cfg);
    assert_null(cfg->mqtt.host); /* no "mqtt": not served */
    enr_service_config_free(cfg);
    cfg = parse("{\"listen\":\"h:1\",\"plain_http\":true,\"data_dir\":\"d\",\"id_scope\":\"s1\","
                "\"mqtt\":{\"listen\":\"[::1]:8883\",\"max_packet_bytes\":4096}}",
                &err);
    assert_non_null(cfg);
    assert_string_equal(cfg->mqtt.host, "::1");
    assert_int_equal(cfg->mqtt.port, 8883);
    assert_int_equal(cfg->mqtt.max_packet_bytes, 4096);
    assert_int_equal(cfg->mqtt.connect_timeout_seconds, 10); /* defaults */
    assert_int_equal(cfg->mqtt.max_keepalive_seconds, 300);
    assert_int_equal(cfg->mqtt.max_connections, 0);
    enr_service_config_free(cfg);
}

static void test_hostile_client_config(void **state)
{
    (void)state;
    enr_error err;
    enr_service_config *cfg = parse("{\"listen\":\"127.0.0.1:0\",\"data_dir\":\"d\",\"id_scope\":\"0ne1\","
                                    "\"plain_http\":true,\"create_store\":true,"
                                    "\"limits\":{\"max_connections\":200,\"handshake_timeout_seconds\":3,"
                                    "\"request_timeout_seconds\":4,\"log_lines_per_second\":5},"
                                    "\"audit\":{\"max_age_days\":0,\"max_rows\":5000,"
                                    "\"refusal_samples_per_second\":2}}",
                                    &err);
    assert_non_null(cfg);
    assert_int_equal(cfg->max_connections, 200);
    assert_int_equal(cfg->handshake_timeout_seconds, 3);
    assert_int_equal(cfg->request_timeout_seconds, 4);
    assert_int_equal(cfg->log_lines_per_second, 5);
    assert_true(cfg->create_store);
    assert_int_equal(cfg->audit_max_age_days, 0);
    assert_int_equal(cfg->audit_max_rows, 5000);
    assert_int_equal(cfg->audit_refusal_samples, 2);
    enr_service_config_free(cfg);
}

static void test_admin_config(void **state)
{
    (void)state;
    enr_error err;
    enr_service_config *cfg = parse("{\"listen\":\"127.0.0.1:0\",\"data_dir\":\"/d\","
                                    "\"tls\":{\"cert\":\"s.pem\",\"key\":\"s.key\"},"
                                    "\"admin\":{\"client_ca\":\"admin-ca.pem\"}}",
                                    &err);
    assert_non_null(cfg);
    assert_string_equal(cfg->admin_client_ca, "/etc/enroll/admin-ca.pem");
    enr_service_config_free(cfg);
}

static void test_bad_configs(void **state)
{
    (void)state;
    static const struct {
        const char *text;
        const char *needle;
    } CASES[] = {
        {"", "line"},
        {"[]", "JSON object"},
        {"{\"listen\":\"127.0.0.1:1\"}", "plain_http"},
        {"{\"plain_http\":true}", "\"listen\""},
        {"{\"listen\":\"127.0.0.1\",\"plain_http\":true}", "host:port"},
        {"{\"listen\":\":80\",\"plain_http\":true}", "no host"},
        {"{\"listen\":\"h:-1\",\"plain_http\":true}", "port"},
        {"{\"listen\":\"h:80x\",\"plain_http\":true}", "port"},
        {"{\"listen\":\"h:1\",\"plain_http\":\"yes\"}", "true or false"},
        {"{\"listen\":\"h:1\",\"plain_http\":true,\"tls\":{\"cert\":\"a\",\"key\":\"b\"}}", "exclude"},
        {"{\"listen\":\"h:1\",\"tls\":{\"cert\":\"a\"}}", "both"},
        {"{\"listen\":\"h:1\",\"tls\":{\"cert\":\"a\",\"key\":\"\"}}", "non-empty"},
        {"{\"listen\":\"h:1\",\"tls\":{\"cert\":\"a\",\"key\":\"b\",\"pin\":\"c\"}}", "unknown key \"pin\""},
        {"{\"listen\":\"h:1\",\"tls\":[]}", "object"},
        {"{\"listen\":\"h:1\",\"plain_http\":true,\"limits\":{\"max_body_bytes\":1}}", "max_body_bytes"},
        {"{\"listen\":\"h:1\",\"plain_http\":true,\"limits\":{\"timeout_seconds\":1.5}}", "timeout_seconds"},
        {"{\"listen\":\"h:1\",\"plain_http\":true,\"limits\":{\"assigning_after_ms\":-1}}", "assigning_after_ms"},
        {"{\"listen\":\"h:1\",\"plain_http\":true,\"limits\":{\"assigning_after_ms\":60001}}", "assigning_after_ms"},
        {"{\"listen\":\"h:1\",\"plain_http\":true,\"workers\":-1}", "workers"},
        {"{\"listen\":\"h:1\",\"plain_http\":true,\"extra\":1}", "unknown key \"extra\""},
        {"{\"listen\":\"h:1\",\"listen\":\"h:2\",\"plain_http\":true}", "duplicate"},
        {"{\"listen\":\"h:1\",\"plain_http\":true} trailing", "line"},
        {"{\"listen\":\"h:1\",\"plain_http\":true,\"id_scope\":\"0ne1\"}", "needs \"data_dir\""},
        /* "store" and "crl" */
        {"{\"listen\":\"h:1\",\"plain_http\":true,\"data_dir\":\"d\",\"store\":\"e\",\"id_scope\":\"x\"}", "not both"},
        {"{\"listen\":\"h:1\",\"plain_http\":true,\"store\":\"\",\"id_scope\":\"x\"}", "postgresql://"},
        {"{\"listen\":\"h:1\",\"plain_http\":true,\"store\":7,\"id_scope\":\"x\"}", "postgresql://"},
        {"{\"listen\":\"h:1\",\"plain_http\":true,\"crl\":{\"publish_dir\":\"c\"}}", "needs \"data_dir\" or \"store\""},
        {"{\"listen\":\"h:1\",\"plain_http\":true,\"data_dir\":\"d\",\"id_scope\":\"x\",\"crl\":[]}", "object"},
        {"{\"listen\":\"h:1\",\"plain_http\":true,\"data_dir\":\"d\",\"id_scope\":\"x\",\"crl\":{}}", "publish_dir"},
        {"{\"listen\":\"h:1\",\"plain_http\":true,\"data_dir\":\"d\",\"id_scope\":\"x\",\"crl\":{\"publish_dir\":\"c\",\"reload_command\":\"kill -HUP 1\"}}", "array"},
        {"{\"listen\":\"h:1\",\"plain_http\":true,\"data_dir\":\"d\",\"id_scope\":\"x\",\"crl\":{\"publish_dir\":\"c\",\"reload_command\":[]}}", "array"},
        {"{\"listen\":\"h:1\",\"plain_http\":true,\"data_dir\":\"d\",\"id_scope\":\"x\",\"crl\":{\"publish_dir\":\"c\",\"reload_command\":[\"\"]}}", "reload_command[0]"},
        {"{\"listen\":\"h:1\",\"plain_http\":true,\"data_dir\":\"d\",\"id_scope\":\"x\",\"crl\":{\"publish_dir\":\"c\",\"reload_command\":[\"kill\",1]}}", "reload_command[1]"},
        {"{\"listen\":\"h:1\",\"plain_http\":true,\"data_dir\":\"d\",\"id_scope\":\"x\",\"crl\":{\"publish_dir\":\"c\",\"check_seconds\":0}}", "check_seconds"},
        {"{\"listen\":\"h:1\",\"plain_http\":true,\"data_dir\":\"d\",\"id_scope\":\"x\",\"crl\":{\"publish_dir\":\"c\",\"next_update_seconds\":60}}", "next_update_seconds"},
        {"{\"listen\":\"h:1\",\"plain_http\":true,\"data_dir\":\"d\",\"id_scope\":\"x\",\"crl\":{\"publish_dir\":\"c\",\"pid\":1}}", "unknown key \"pid\""},
        {"{\"listen\":\"h:1\",\"plain_http\":true,\"data_dir\":\"d\",\"id_scope\":\"a/b\"}", "id_scope"},
        {"{\"listen\":\"h:1\",\"plain_http\":true,\"data_dir\":\"d\",\"id_scope\":\"\"}", "id_scope"},
        {"{\"listen\":\"h:1\",\"tls\":{\"cert\":\"a\",\"key\":\"b\"},\"data_dir\":\"d\",\"admin\":[]}", "object"},
        {"{\"listen\":\"h:1\",\"tls\":{\"cert\":\"a\",\"key\":\"b\"},\"data_dir\":\"d\",\"admin\":{}}", "client_ca"},
        {"{\"listen\":\"h:1\",\"tls\":{\"cert\":\"a\",\"key\":\"b\"},\"data_dir\":\"d\","
         "\"admin\":{\"client_ca\":\"\"}}", "non-empty"},
        {"{\"listen\":\"h:1\",\"tls\":{\"cert\":\"a\",\"key\":\"b\"},\"data_dir\":\"d\","
         "\"admin\":{\"client_ca\":\"x\",\"token\":\"t\"}}", "unknown key \"token\""},
        {"{\"listen\":\"h:1\",\"tls\":{\"cert\":\"a\",\"key\":\"b\"},\"admin\":{\"client_ca\":\"x\"}}",
         "needs \"data_dir\""},
        {"{\"listen\":\"h:1\",\"plain_http\":true,\"data_dir\":\"d\",\"admin\":{\"client_ca\":\"x\"}}",
         "needs \"tls\""},
        /* A store, and nothing served from it: a forgotten id_scope. */
        {"{\"listen\":\"h:1\",\"plain_http\":true,\"data_dir\":\"d\"}", "not \"id_scope\""},
        {"{\"listen\":\"h:1\",\"plain_http\":true,\"create_store\":\"yes\"}", "create_store"},
        {"{\"listen\":\"h:1\",\"plain_http\":true,\"create_store\":true}", "needs \"data_dir\""},
        {"{\"listen\":\"h:1\",\"plain_http\":true,\"data_dir\":\"d\",\"id_scope\":\"s1\",\"mqtt\":[]}", "object"},
        {"{\"listen\":\"h:1\",\"plain_http\":true,\"data_dir\":\"d\",\"id_scope\":\"s1\",\"mqtt\":{}}", "mqtt.listen"},
        {"{\"listen\":\"h:1\",\"plain_http\":true,\"data_dir\":\"d\",\"id_scope\":\"s1\",\"mqtt\":{\"listen\":\"h\"}}", "host:port"},
        {"{\"listen\":\"h:1\",\"plain_http\":true,\"data_dir\":\"d\",\"id_scope\":\"s1\",\"mqtt\":{\"listen\":\"h:70000\"}}", "port"},
        {"{\"listen\":\"h:1\",\"plain_http\":true,\"data_dir\":\"d\",\"id_scope\":\"s1\",\"mqtt\":{\"listen\":\"h:1\",\"qos\":1}}", "unknown key \"qos\""},
        {"{\"listen\":\"h:1\",\"plain_http\":true,\"data_dir\":\"d\",\"id_scope\":\"s1\",\"mqtt\":{\"listen\":\"h:1\",\"max_packet_bytes\":100}}", "max_packet_bytes"},
        {"{\"listen\":\"h:1\",\"plain_http\":true,\"data_dir\":\"d\",\"id_scope\":\"s1\",\"mqtt\":{\"listen\":\"h:1\",\"connect_timeout_seconds\":0}}", "connect_timeout_seconds"},
        {"{\"listen\":\"h:1\",\"plain_http\":true,\"data_dir\":\"d\",\"id_scope\":\"s1\",\"mqtt\":{\"listen\":\"h:1\",\"max_keepalive_seconds\":65536}}", "max_keepalive_seconds"},
        {"{\"listen\":\"h:1\",\"plain_http\":true,\"data_dir\":\"d\",\"id_scope\":\"s1\",\"mqtt\":{\"listen\":\"h:1\",\"max_connections\":-1}}", "max_connections"},
        {"{\"listen\":\"h:1\",\"plain_http\":true,\"mqtt\":{\"listen\":\"h:1\"}}", "needs \"id_scope\""},
        {"{\"listen\":\"h:1\",\"plain_http\":true,\"limits\":{\"max_connections\":-1}}", "max_connections"},
        {"{\"listen\":\"h:1\",\"plain_http\":true,\"limits\":{\"handshake_timeout_seconds\":0}}",
         "handshake_timeout_seconds"},
        {"{\"listen\":\"h:1\",\"plain_http\":true,\"limits\":{\"request_timeout_seconds\":3601}}",
         "request_timeout_seconds"},
        {"{\"listen\":\"h:1\",\"plain_http\":true,\"limits\":{\"log_lines_per_second\":0}}",
         "log_lines_per_second"},
        {"{\"listen\":\"h:1\",\"plain_http\":true,\"audit\":[]}", "\"audit\" must be an object"},
        {"{\"listen\":\"h:1\",\"plain_http\":true,\"audit\":{\"max_rows\":-5}}", "audit.max_rows"},
        {"{\"listen\":\"h:1\",\"plain_http\":true,\"audit\":{\"max_age_days\":\"1y\"}}", "audit.max_age_days"},
        {"{\"listen\":\"h:1\",\"plain_http\":true,\"audit\":{\"keep\":1}}", "unknown key \"keep\" in audit"},
    };
    for (size_t i = 0; i < sizeof CASES / sizeof CASES[0]; i++) {
        enr_error err;
        enr_service_config *cfg = parse(CASES[i].text, &err);
        if (cfg != NULL || strstr(err.message, CASES[i].needle) == NULL)
            fail_msg("config %zu (%s) -> %s", i, CASES[i].text, cfg ? "accepted" : err.message);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_good_config),
        cmocka_unit_test(test_mqtt_config),
        cmocka_unit_test(test_admin_config),
        cmocka_unit_test(test_hostile_client_config),
        cmocka_unit_test(test_bad_configs),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
