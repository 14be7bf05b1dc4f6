/* enrolld's JSON configuration reader. */
#include <stdint.h>

#include "enroll/service.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    enr_service_config *cfg = NULL;
    enr_error err;
    if (enr_service_config_parse((const char *)data, size, "/etc/enroll", &cfg, &err) == ENR_OK)
        enr_service_config_free(cfg);
    return 0;
}
