/* Keys in a real (software) token: SoftHSM2 in a temporary directory, with
 * pkcs11-tool and OpenSSL as the independent judges of what we did. */
#define _XOPEN_SOURCE 700 /* nftw, to remove the temporary token directory */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <dlfcn.h>
#include <ftw.h>
#include <limits.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <p11-kit/pkcs11.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "enroll/error.h"
#include "enroll/signer.h"
#include "pkcs11/token.h"

#define MODULE "/usr/lib/softhsm/libsofthsm2.so"
#define TOKEN "enroll-test"
#define SO_PIN "12345678"
#define PIN "87654321"
#define WRONG_PIN "11223344"

typedef struct fixture {
    bool ready; /* false: SoftHSM2 is not installed, every test fails */
    char dir[PATH_MAX];
    char pin_file[PATH_MAX + 16];
} fixture;

static const enr_token_options OPTIONS = {MODULE, PIN};

/* ---- SoftHSM2 in a temporary directory --------------------------------- */

static void write_text(const char *path, const char *text, mode_t mode)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    assert_int_equal(fputs(text, f) >= 0, 1);
    assert_int_equal(fclose(f), 0);
    assert_int_equal(chmod(path, mode), 0);
}

static int softhsm_setup(fixture *f)
{
    const char *tmp = getenv("TMPDIR");
    snprintf(f->dir, sizeof f->dir, "%s/enroll-p11-XXXXXX", tmp && tmp[0] ? tmp : "/tmp");
    if (mkdtemp(f->dir) == NULL)
        return -1;
    char path[PATH_MAX + 32], text[PATH_MAX + 128], cmd[512];
    snprintf(path, sizeof path, "%s/tokens", f->dir);
    if (mkdir(path, 0700) != 0)
        return -1;
    snprintf(text, sizeof text,
             "directories.tokendir = %s/tokens\nobjectstore.backend = file\nlog.level = ERROR\n",
             f->dir);
    snprintf(path, sizeof path, "%s/softhsm2.conf", f->dir);
    write_text(path, text, 0600);
    setenv("SOFTHSM2_CONF", path, 1);
    /* The tests decide where module and PIN come from. */
    unsetenv("ENROLL_PKCS11_MODULE");
    unsetenv("ENROLL_PKCS11_PIN");
    snprintf(cmd, sizeof cmd,
             "softhsm2-util --init-token --free --label " TOKEN " --so-pin " SO_PIN
             " --pin " PIN " >/dev/null");
    if (system(cmd) != 0)
        return -1;
    snprintf(f->pin_file, sizeof f->pin_file, "%s/pin", f->dir);
    write_text(f->pin_file, PIN "\n", 0600);
    return 0;
}

static int group_setup(void **state)
{
    fixture *f = calloc(1, sizeof *f);
    if (f == NULL)
        return -1;
    *state = f;
    if (access(MODULE, R_OK) != 0)
        return 0;
    if (softhsm_setup(f) != 0)
        return -1;
    f->ready = true;
    return 0;
}

static int remove_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path);
}

static int group_teardown(void **state)
{
    fixture *f = *state;
    if (f->dir[0] != '\0')
        nftw(f->dir, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
    free(f);
    return 0;
}

static fixture *require_softhsm(void **state)
{
    fixture *f = *state;
    /* Not a skip: a machine without SoftHSM2 would pass without running these. */
    if (!f->ready)
        fail_msg("SoftHSM2 (%s) is not installed: scripts/install-deps.sh installs softhsm2", MODULE);
    return f;
}

/* ---- helpers ----------------------------------------------------------- */

static void key_uri(char *out, size_t size, const char *label)
{
    snprintf(out, size, "pkcs11:token=" TOKEN ";object=%s", label);
}

static void generate_ok(enr_key_type type, const char *uri, bool overwrite)
{
    enr_error err = {0};
    enr_code rc = enr_token_key_generate(type, uri, &OPTIONS, overwrite, &err);
    if (rc != ENR_OK)
        print_error("generate %s: %s\n", uri, err.message);
    assert_int_equal(rc, ENR_OK);
}

static enr_token_key *open_ok(const char *uri, const enr_token_options *opts, EVP_PKEY **pub)
{
    enr_error err = {0};
    enr_token_key *key = NULL;
    enr_code rc = enr_token_key_open(uri, opts, &key, pub, &err);
    if (rc != ENR_OK)
        print_error("open %s: %s\n", uri, err.message);
    assert_int_equal(rc, ENR_OK);
    assert_non_null(key);
    assert_non_null(*pub);
    return key;
}

static void expect_open_fails(const char *uri, const enr_token_options *opts, enr_code code,
                              const char *mentions, enr_error *err)
{
    enr_token_key *key = (enr_token_key *)1;
    EVP_PKEY *pub = (EVP_PKEY *)1;
    enr_code rc = enr_token_key_open(uri, opts, &key, &pub, err);
    if (rc != code || strstr(err->message, mentions) == NULL)
        print_error("open %s: got %s: %s\n", uri, enr_code_name(rc), err->message);
    assert_int_equal(rc, code);
    assert_null(key);
    assert_null(pub);
    assert_non_null(strstr(err->message, mentions));
}

static bool verifies(EVP_PKEY *pub, const EVP_MD *md, const unsigned char *sig, size_t sig_len,
                     const unsigned char *data, size_t len)
{
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    assert_non_null(ctx);
    assert_int_equal(EVP_DigestVerifyInit(ctx, NULL, md, NULL, pub), 1);
    int ok = EVP_DigestVerify(ctx, sig, sig_len, data, len);
    EVP_MD_CTX_free(ctx);
    return ok == 1;
}

static void sign_and_verify(enr_token_key *key, EVP_PKEY *pub, const EVP_MD *md)
{
    static const unsigned char data[] = "tbsCertificationRequest bytes, more or less";
    unsigned char *sig = NULL;
    size_t sig_len = 0;
    enr_error err = {0};
    enr_code rc = enr_token_key_sign(key, md, data, sizeof data, &sig, &sig_len, &err);
    if (rc != ENR_OK)
        print_error("sign: %s\n", err.message);
    assert_int_equal(rc, ENR_OK);
    assert_true(sig_len > 0);
    assert_true(verifies(pub, md, sig, sig_len, data, sizeof data));
    /* The signature is over these bytes and this hash, not just any. */
    assert_false(verifies(pub, md, sig, sig_len, data, sizeof data - 1));
    const EVP_MD *other = EVP_MD_get_type(md) == NID_sha256 ? EVP_sha384() : EVP_sha256();
    assert_false(verifies(pub, other, sig, sig_len, data, sizeof data));
    OPENSSL_free(sig);
}

static char *command_output(const char *cmd)
{
    FILE *p = popen(cmd, "r");
    assert_non_null(p);
    size_t cap = 1 << 16, len = 0;
    char *out = malloc(cap);
    assert_non_null(out);
    size_t n;
    while ((n = fread(out + len, 1, cap - 1 - len, p)) > 0)
        len += n;
    out[len] = '\0';
    pclose(p);
    return out;
}

/* pkcs11-tool's own reading of the private key's access flags. */
static void pkcs11_tool_says_unextractable(const fixture *f, const char *label)
{
    char cmd[PATH_MAX + 512];
    snprintf(cmd, sizeof cmd,
             "pkcs11-tool --module " MODULE " --token-label " TOKEN " --login --pin " PIN
             " --list-objects --type privkey 2>&1");
    char *out = command_output(cmd);
    char wanted[128];
    snprintf(wanted, sizeof wanted, "label:      %s\n", label);
    const char *block = strstr(out, wanted);
    if (block == NULL)
        print_error("pkcs11-tool output:\n%s\n", out);
    assert_non_null(block);
    const char *access = strstr(block, "Access:");
    assert_non_null(access);
    const char *eol = strchr(access, '\n');
    size_t line_len = eol ? (size_t)(eol - access) : strlen(access);
    char line[256];
    snprintf(line, sizeof line, "%.*s", (int)line_len, access);
    assert_non_null(strstr(line, " sensitive"));
    assert_non_null(strstr(line, "never extractable"));
    free(out);

    /* And reading the private key out must not produce its bytes (the tool
     * exits 0 even when it refuses, so judge by the output file). */
    char dump[PATH_MAX + 16];
    snprintf(dump, sizeof dump, "%s/dump", f->dir);
    snprintf(cmd, sizeof cmd,
             "pkcs11-tool --module " MODULE " --token-label " TOKEN " --login --pin " PIN
             " --read-object --type privkey --label %s -o %s >/dev/null 2>&1",
             label, dump);
    (void)system(cmd);
    struct stat st;
    assert_true(stat(dump, &st) != 0 || st.st_size == 0);
    remove(dump);
}

static void check_facts(enr_token_key *key, const char *label)
{
    enr_signer_token_facts facts;
    enr_error err = {0};
    assert_int_equal(enr_token_key_facts(key, &facts, &err), ENR_OK);
    assert_true(facts.sensitive);
    assert_false(facts.extractable);
    assert_string_equal(facts.label, label);
    assert_int_equal(strlen(facts.id_hex), 16); /* the random 8-byte id */
}

static void generate_sign_verify(void **state, enr_key_type type, const char *label,
                                 int base_id, int bits)
{
    fixture *f = require_softhsm(state);
    char uri[256];
    key_uri(uri, sizeof uri, label);
    generate_ok(type, uri, false);

    EVP_PKEY *pub = NULL;
    enr_token_key *key = open_ok(uri, &OPTIONS, &pub);
    assert_int_equal(EVP_PKEY_get_base_id(pub), base_id);
    assert_int_equal(EVP_PKEY_get_bits(pub), bits);
    check_facts(key, label);
    sign_and_verify(key, pub, EVP_sha256());
    sign_and_verify(key, pub, EVP_sha384());
    enr_token_key_free(key);
    EVP_PKEY_free(pub);
    pkcs11_tool_says_unextractable(f, label);
}

/* ---- tests ------------------------------------------------------------- */

static void test_ec_p256(void **state)
{
    generate_sign_verify(state, ENR_KEY_EC_P256, "ec-p256-key", EVP_PKEY_EC, 256);
}

static void test_ec_p384(void **state)
{
    generate_sign_verify(state, ENR_KEY_EC_P384, "ec-p384-key", EVP_PKEY_EC, 384);
}

static void test_rsa_2048(void **state)
{
    generate_sign_verify(state, ENR_KEY_RSA_2048, "rsa-2048-key", EVP_PKEY_RSA, 2048);

    EVP_PKEY *pub = NULL;
    char uri[256];
    key_uri(uri, sizeof uri, "rsa-2048-key");
    enr_token_key *key = open_ok(uri, &OPTIONS, &pub);
    BIGNUM *e = NULL;
    assert_int_equal(EVP_PKEY_get_bn_param(pub, OSSL_PKEY_PARAM_RSA_E, &e), 1);
    assert_true(BN_is_word(e, 65537));
    BN_free(e);
    enr_token_key_free(key);
    EVP_PKEY_free(pub);
}

static void test_ed25519_unsupported(void **state)
{
    require_softhsm(state);
    enr_error err = {0};
    assert_int_equal(enr_token_key_generate(ENR_KEY_ED25519, "pkcs11:token=" TOKEN ";object=ed",
                                            &OPTIONS, false, &err),
                     ENR_E_UNSUPPORTED);
    assert_non_null(strstr(err.message, "Ed25519"));
}

static void test_wrong_pin(void **state)
{
    require_softhsm(state);
    const enr_token_options wrong = {MODULE, WRONG_PIN};
    enr_error err = {0};
    expect_open_fails("pkcs11:token=" TOKEN ";object=ec-p256-key", &wrong, ENR_E_LOCKED,
                      "wrong PIN", &err);
    assert_non_null(strstr(err.message, "CKR_PIN_INCORRECT"));
    assert_null(strstr(err.message, WRONG_PIN));
    assert_null(strstr(err.message, PIN));

    enr_error_clear(&err);
    assert_int_equal(enr_token_key_generate(ENR_KEY_EC_P256, "pkcs11:token=" TOKEN ";object=x",
                                            &wrong, false, &err),
                     ENR_E_LOCKED);
    assert_null(strstr(err.message, WRONG_PIN));
}

static void test_missing_object(void **state)
{
    require_softhsm(state);
    enr_error err = {0};
    expect_open_fails("pkcs11:token=" TOKEN ";object=no-such-key", &OPTIONS, ENR_E_NOTFOUND,
                      "no-such-key", &err);
    enr_error_clear(&err);
    expect_open_fails("pkcs11:token=" TOKEN ";id=%de%ad", &OPTIONS, ENR_E_NOTFOUND, "dead", &err);
}

static void test_missing_token(void **state)
{
    require_softhsm(state);
    enr_error err = {0};
    expect_open_fails("pkcs11:token=not-there;object=k", &OPTIONS, ENR_E_NOTFOUND,
                      "'" TOKEN "'", &err);
    assert_non_null(strstr(err.message, "not-there"));
}

static void test_generate_twice(void **state)
{
    require_softhsm(state);
    const char *uri = "pkcs11:token=" TOKEN ";object=twice";
    generate_ok(ENR_KEY_EC_P256, uri, false);
    EVP_PKEY *first = NULL;
    enr_token_key *key = open_ok(uri, &OPTIONS, &first);
    enr_token_key_free(key);

    enr_error err = {0};
    assert_int_equal(enr_token_key_generate(ENR_KEY_EC_P256, uri, &OPTIONS, false, &err),
                     ENR_E_EXISTS);
    assert_non_null(strstr(err.message, "--force"));

    /* With overwrite the old pair is gone: exactly one key (open would
     * refuse two), and a different one. */
    generate_ok(ENR_KEY_EC_P384, uri, true);
    EVP_PKEY *second = NULL;
    key = open_ok(uri, &OPTIONS, &second);
    assert_int_equal(EVP_PKEY_get_bits(second), 384);
    assert_int_not_equal(EVP_PKEY_eq(first, second), 1);
    enr_token_key_free(key);
    EVP_PKEY_free(first);
    EVP_PKEY_free(second);
}

static void test_select_by_id(void **state)
{
    require_softhsm(state);
    generate_ok(ENR_KEY_EC_P256, "pkcs11:token=" TOKEN ";object=by-id;id=%c0%ff%ee", false);
    EVP_PKEY *pub = NULL;
    enr_token_key *key = open_ok("pkcs11:token=" TOKEN ";id=%C0%FF%EE;type=private", &OPTIONS, &pub);
    enr_signer_token_facts facts;
    enr_error err = {0};
    assert_int_equal(enr_token_key_facts(key, &facts, &err), ENR_OK);
    assert_string_equal(facts.id_hex, "c0ffee");
    assert_string_equal(facts.label, "by-id");
    sign_and_verify(key, pub, EVP_sha256());
    enr_token_key_free(key);
    EVP_PKEY_free(pub);
}

static void test_missing_module(void **state)
{
    require_softhsm(state);
    const enr_token_options no_module = {NULL, PIN};
    enr_error err = {0};
    expect_open_fails("pkcs11:token=" TOKEN ";object=ec-p256-key", &no_module, ENR_E_USAGE,
                      "--module", &err);
    assert_non_null(strstr(err.message, "module-path"));
    assert_non_null(strstr(err.message, "ENROLL_PKCS11_MODULE"));

    enr_error_clear(&err);
    const enr_token_options bad_path = {"/nonexistent/libnothing.so", PIN};
    expect_open_fails("pkcs11:token=" TOKEN ";object=ec-p256-key", &bad_path, ENR_E_TOKEN,
                      "/nonexistent/libnothing.so", &err);

    enr_error_clear(&err);
    const enr_token_options not_pkcs11 = {"libcrypto.so.3", PIN};
    expect_open_fails("pkcs11:token=" TOKEN ";object=ec-p256-key", &not_pkcs11, ENR_E_TOKEN,
                      "C_GetFunctionList", &err);
}

static void test_module_and_pin_sources(void **state)
{
    fixture *f = require_softhsm(state);
    const enr_token_options nothing = {NULL, NULL};
    char uri[PATH_MAX + 256];
    EVP_PKEY *pub = NULL;

    /* module-path and pin-source from the URI */
    snprintf(uri, sizeof uri,
             "pkcs11:token=" TOKEN ";object=ec-p256-key?module-path=" MODULE "&pin-source=file:%s",
             f->pin_file);
    enr_token_key *key = open_ok(uri, &nothing, &pub);
    enr_token_key_free(key);
    EVP_PKEY_free(pub);

    /* both from the environment */
    setenv("ENROLL_PKCS11_MODULE", MODULE, 1);
    setenv("ENROLL_PKCS11_PIN", PIN, 1);
    key = open_ok("pkcs11:token=" TOKEN ";object=ec-p256-key", &nothing, &pub);
    enr_token_key_free(key);
    EVP_PKEY_free(pub);
    unsetenv("ENROLL_PKCS11_PIN");

    /* no PIN anywhere */
    enr_error err = {0};
    expect_open_fails("pkcs11:token=" TOKEN ";object=ec-p256-key", &nothing, ENR_E_USAGE,
                      "needs a PIN", &err);

    /* a pin-source that is a command, not a file */
    enr_error_clear(&err);
    expect_open_fails("pkcs11:token=" TOKEN ";object=ec-p256-key?pin-source=|cat%20/etc/passwd",
                      &nothing, ENR_E_UNSUPPORTED, "file", &err);
    unsetenv("ENROLL_PKCS11_MODULE");
}

static void test_uri_refusals(void **state)
{
    require_softhsm(state);
    enr_error err = {0};
    expect_open_fails("pkcs11:token=" TOKEN ";object=ec-p256-key;type=cert", &OPTIONS, ENR_E_USAGE,
                      "type=cert", &err);
    enr_error_clear(&err);
    expect_open_fails("pkcs11:token=" TOKEN ";object=k?pin-value=" PIN, &OPTIONS, ENR_E_USAGE,
                      "pin-source", &err);
    assert_null(strstr(err.message, PIN));
    enr_error_clear(&err);
    assert_int_equal(enr_token_key_generate(ENR_KEY_EC_P256, "pkcs11:token=" TOKEN, &OPTIONS,
                                            false, &err),
                     ENR_E_USAGE);
    assert_non_null(strstr(err.message, "object="));
}

/* True when nothing in this process has the module initialized. */
static bool module_finalized(void)
{
    void *lib = dlopen(MODULE, RTLD_NOW | RTLD_LOCAL);
    assert_non_null(lib);
    CK_C_GetFunctionList get_list = (CK_C_GetFunctionList)dlsym(lib, "C_GetFunctionList");
    assert_non_null(get_list);
    CK_FUNCTION_LIST *fn = NULL;
    assert_int_equal(get_list(&fn), CKR_OK);
    CK_RV rv = fn->C_Initialize(NULL);
    if (rv == CKR_OK)
        fn->C_Finalize(NULL);
    dlclose(lib);
    return rv == CKR_OK;
}

/* Two keys of one token open at once (this uses keys made by the tests
 * above), freed in reverse order of opening as token.h asks: freeing the
 * later one must not log out or finalize under the earlier one, and
 * freeing the earlier one (which initialized the module) finalizes it. */
static void test_two_keys_open(void **state)
{
    require_softhsm(state);
    EVP_PKEY *pub_a = NULL, *pub_b = NULL;
    enr_token_key *a = open_ok("pkcs11:token=" TOKEN ";object=ec-p256-key", &OPTIONS, &pub_a);
    enr_token_key *b = open_ok("pkcs11:token=" TOKEN ";object=rsa-2048-key", &OPTIONS, &pub_b);
    sign_and_verify(a, pub_a, EVP_sha256());
    sign_and_verify(b, pub_b, EVP_sha256());
    enr_token_key_free(b);
    sign_and_verify(a, pub_a, EVP_sha384());
    enr_token_key_free(a);
    assert_true(module_finalized());
    EVP_PKEY_free(pub_a);
    EVP_PKEY_free(pub_b);
}

static void test_single_key_finalizes(void **state)
{
    require_softhsm(state);
    EVP_PKEY *pub = NULL;
    enr_token_key *key = open_ok("pkcs11:token=" TOKEN ";object=ec-p256-key", &OPTIONS, &pub);
    assert_false(module_finalized());
    enr_token_key_free(key);
    EVP_PKEY_free(pub);
    assert_true(module_finalized());
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ec_p256),
        cmocka_unit_test(test_ec_p384),
        cmocka_unit_test(test_rsa_2048),
        cmocka_unit_test(test_ed25519_unsupported),
        cmocka_unit_test(test_wrong_pin),
        cmocka_unit_test(test_missing_object),
        cmocka_unit_test(test_missing_token),
        cmocka_unit_test(test_generate_twice),
        cmocka_unit_test(test_select_by_id),
        cmocka_unit_test(test_missing_module),
        cmocka_unit_test(test_module_and_pin_sources),
        cmocka_unit_test(test_uri_refusals),
        cmocka_unit_test(test_single_key_finalizes),
        cmocka_unit_test(test_two_keys_open),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
