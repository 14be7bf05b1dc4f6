/* libFuzzer: identity.json as a device may find it after a power cut, a full
 * disk or a hand edit. The reader must accept a complete record or refuse
 * with a message, and never hand back a record without its required members. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include "device/device_internal.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    dev_identity id;
    enr_error err = {0};
    enr_code rc = dev_identity_parse((const char *)data, size, "identity.json", &id, &err);
    if (rc == ENR_OK) {
        if (id.registration_id == NULL || id.url == NULL || id.id_scope == NULL || id.key_ref == NULL ||
            id.auth == NULL)
            abort();
        dev_identity copy;
        if (dev_identity_copy(&copy, &id, &err) == ENR_OK)
            dev_identity_free(&copy);
        dev_identity_free(&id);
    } else if (rc != ENR_E_PARSE || err.message[0] == '\0' || id.registration_id != NULL) {
        abort();
    }
    return 0;
}
