/* libFuzzer: an Authorization header is the first thing an unauthenticated
 * device controls. Parse and verify must refuse or accept any bytes without
 * crashing, leaking or reading past the end, and always say why they
 * refused. When the input names a plausible registration, a token made for
 * it must also survive make -> parse -> verify. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "enroll/sas.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define SCOPE "0ne00000A0A"
#define REG_ID "dev-001"
#define NOW ((time_t)1767225540)
/* The device key of tests/unit/test_sas.c, so seeds made with it verify. */
#define KEY_B64                                                                                \
    "jzpcfhstT2CBo8XnCStNb3GDlae5y93g8QITJDVGV2h6i5ytvs/Q4fIDFCU2R1hpeai5ytDh8gMUJTZHWGl6iw=="

static const char *const KEYS[] = {NULL, KEY_B64};

static void touch_all(const enr_sas_token *t)
{
    size_t total = strlen(enr_sas_token_sr(t)) + strlen(enr_sas_token_resource(t)) +
                   strlen(enr_sas_token_se(t)) + strlen(enr_sas_token_key_name(t));
    size_t sig_len = 0;
    const unsigned char *sig = enr_sas_token_signature(t, &sig_len);
    for (size_t i = 0; i < sig_len; i++)
        total += sig[i];
    if (sig_len != ENR_SAS_SIGNATURE_LEN || enr_sas_token_expiry(t) < 0 || total == SIZE_MAX)
        abort();
}

static void check_verify(const enr_sas_token *t)
{
    enr_error err;
    int index = 7;
    enr_code rc = enr_sas_token_verify(t, SCOPE, REG_ID, KEYS, 2, NOW, 300, 86400, &index, &err);
    if (rc == ENR_OK && index != 1)
        abort();
    if (rc != ENR_OK && (index != -1 || err.message[0] == '\0'))
        abort();
    /* The arguments are valid, so only the token can be at fault. */
    if (rc != ENR_OK && rc != ENR_E_VERIFY && rc != ENR_E_POLICY)
        abort();
}

/* A token we make for the scope and id the input names must verify. */
static void check_round_trip(const enr_sas_token *t)
{
    const char *resource = enr_sas_token_resource(t);
    const char *slash = strchr(resource, '/');
    if (slash == NULL || strncmp(slash, "/registrations/", 15) != 0)
        return;
    char scope[ENR_SAS_TOKEN_MAX + 1];
    size_t scope_len = (size_t)(slash - resource);
    memcpy(scope, resource, scope_len);
    scope[scope_len] = '\0';
    const char *id = slash + 15;
    if (!enr_registration_id_valid(id) || scope_len == 0 || strchr(scope, ' ') != NULL)
        return;
    char *token = NULL;
    enr_error err;
    time_t expiry = enr_sas_token_expiry(t);
    if (enr_sas_token_make(scope, id, KEY_B64, expiry, &token, &err) != ENR_OK)
        return; /* a scope too long for a token is refused, and that is fine */
    enr_sas_token *again = NULL;
    if (enr_sas_token_parse(token, &again, &err) != ENR_OK)
        abort();
    int index = -1;
    if (enr_sas_token_verify(again, scope, id, KEYS, 2, expiry, 0, 0, &index, &err) != ENR_OK ||
        index != 1)
        abort();
    enr_sas_token_free(again);
    enr_sas_secret_free(token);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *text = malloc(size + 1);
    if (text == NULL)
        return 0;
    memcpy(text, data, size);
    text[size] = '\0';
    enr_sas_token *t = NULL;
    enr_error err;
    if (enr_sas_token_parse(text, &t, &err) == ENR_OK) {
        touch_all(t);
        check_verify(t);
        check_round_trip(t);
    } else if (t != NULL || err.message[0] == '\0') {
        abort(); /* a failure must leave no result and always explain itself */
    }
    enr_sas_token_free(t);
    free(text);
    return 0;
}
