/* libFuzzer: the answer topic a DPS-over-MQTT service publishes to the
 * device ($dps/registrations/res/{status}/?$rid=..&retry-after=..), as the
 * device client parses it before it trusts anything in the answer. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "device/link.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *topic = malloc(size + 1); /* a topic arrives as a NUL-terminated string */
    if (topic == NULL)
        return 0;
    memcpy(topic, data, size);
    topic[size] = '\0';
    int status = 0;
    long retry_after = 0;
    char rid[DEV_MQTT_RID_MAX];
    if (dev_mqtt_answer_topic_parse(topic, &status, rid, sizeof rid, &retry_after)) {
        /* What a success promises the caller. */
        if (status < 200 || status > 599 || memchr(rid, '\0', sizeof rid) == NULL || retry_after < -1)
            abort();
    }
    free(topic);
    return 0;
}
