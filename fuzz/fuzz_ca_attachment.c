/* DIR/store.json, the note by which a CA directory knows the store that
 * keeps the other half of its record: a file anyone with write access to
 * the directory may have edited. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "enroll/ca.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char location[ENR_CA_STORE_LOCATION_MAX + 1], name[129];
    enr_error err;
    if (enr_ca_attachment_parse((const char *)data, size, location, name, &err) == ENR_OK) {
        /* What was accepted is a NUL-free, bounded path and name. */
        size_t l = strlen(location), n = strlen(name);
        if (l == 0 || l > ENR_CA_STORE_LOCATION_MAX || n == 0 || n > 128)
            abort();
    }
    return 0;
}
