/* ISO 8601 durations, as validity periods arrive from the command line and
 * (later) from policies in the admin API. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "enroll/duration.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *text = malloc(size + 1);
    if (text == NULL)
        return 0;
    memcpy(text, data, size);
    text[size] = '\0';
    enr_duration d;
    enr_error err;
    if (enr_duration_parse(text, &d, &err) == ENR_OK) {
        char out[64];
        enr_duration_format(&d, out, sizeof out);
        /* What we print must read back as the same duration. */
        enr_duration again;
        if (enr_duration_parse(out, &again, &err) != ENR_OK || again.years != d.years ||
            again.months != d.months || again.days != d.days || again.seconds != d.seconds)
            abort();
        (void)enr_duration_apply(0, &d, 1);
    }
    free(text);
    return 0;
}
