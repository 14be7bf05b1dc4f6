/* libFuzzer: the answers an AWS fleet provisioning service sends the device
 * agent (CreateCertificateFromCsr accepted, RegisterThing accepted, any
 * rejection), as the agent reads them before it trusts anything in them.
 * The first byte picks the document. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "device/link_aws.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0)
        return 0;
    const char *body = (const char *)data + 1;
    size_t len = size - 1;
    enr_error err;
    switch (data[0] % 3) {
    case 0: {
        dev_aws_created c = {0};
        if (dev_aws_created_parse(body, len, &c, &err) == ENR_OK &&
            (c.certificate_id == NULL || c.certificate_pem == NULL || c.ownership_token == NULL ||
             !c.certificate_id[0] || !c.certificate_pem[0] || !c.ownership_token[0]))
            abort(); /* a success promises the three fields, non-empty */
        dev_aws_created_clear(&c);
        break;
    }
    case 1: {
        dev_aws_registered r = {0};
        if (dev_aws_registered_parse(body, len, &r, &err) == ENR_OK &&
            (r.thing_name == NULL || !dev_aws_thing_name_valid(r.thing_name) || r.device_configuration == NULL))
            abort();
        dev_aws_registered_clear(&r);
        break;
    }
    default: {
        dev_aws_rejected r;
        if (dev_aws_rejected_parse(body, len, &r, &err) == ENR_OK) {
            if (r.status_code < 100 || r.status_code > 599 || memchr(r.error_code, '\0', sizeof r.error_code) == NULL)
                abort();
            bool retry = false;
            (void)dev_aws_rejection_error(ENR_AWS_FLEET_REGISTER_THING, &r, &retry, &err);
        }
        break;
    }
    }
    return 0;
}
