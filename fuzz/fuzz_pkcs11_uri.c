/* libFuzzer: enr_pkcs11_uri_parse must refuse or accept any bytes without
 * crashing, leaking, or reading past the end. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "enroll/pkcs11_uri.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Every getter, so a parse that "succeeds" with broken state is caught too. */
static void touch_all(const enr_pkcs11_uri *uri)
{
    const char *texts[] = {
        enr_pkcs11_uri_token(uri),       enr_pkcs11_uri_manufacturer(uri),
        enr_pkcs11_uri_serial(uri),      enr_pkcs11_uri_model(uri),
        enr_pkcs11_uri_object(uri),      enr_pkcs11_uri_type(uri),
        enr_pkcs11_uri_module_path(uri), enr_pkcs11_uri_pin_source(uri),
    };
    size_t total = 0;
    for (size_t i = 0; i < sizeof texts / sizeof texts[0]; i++)
        if (texts[i] != NULL)
            total += strlen(texts[i]);
    size_t id_len = 0;
    const unsigned char *id = enr_pkcs11_uri_id(uri, &id_len);
    for (size_t i = 0; id != NULL && i < id_len; i++)
        total += id[i];
    if (enr_pkcs11_uri_slot_id(uri) < -1 || total == SIZE_MAX)
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *text = malloc(size + 1);
    if (text == NULL)
        return 0;
    memcpy(text, data, size);
    text[size] = '\0';
    enr_pkcs11_uri *uri = NULL;
    enr_error err;
    if (enr_pkcs11_uri_parse(text, &uri, &err) == ENR_OK)
        touch_all(uri);
    else if (uri != NULL || err.message[0] == '\0')
        abort(); /* a failure must leave no result and always explain itself */
    enr_pkcs11_uri_free(uri);
    free(text);
    return 0;
}
