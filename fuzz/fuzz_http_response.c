/* libFuzzer: the bytes a server (or anything between it and the device)
 * sends back. The parser must accept or refuse any input without crashing or
 * reading past it, explain every refusal, agree with itself when the same
 * bytes arrive at EOF, and never hand back a body over the limit. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "enroll/http_client.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define MAX_BODY 4096

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    for (int eof = 0; eof < 2; eof++) {
        enr_http_response r = {0};
        bool complete = false;
        enr_error err = {0};
        enr_code rc = enr_http_response_parse(data, size, eof != 0, MAX_BODY, &r, &complete, &err);
        if (rc == ENR_OK && complete) {
            if (r.body == NULL || r.body_len > MAX_BODY || r.body[r.body_len] != '\0' || r.status < 200 ||
                r.status > 599 || r.retry_after < -1)
                abort();
        } else if (rc == ENR_OK) {
            if (eof || r.body != NULL) /* at EOF there is no "need more" */
                abort();
        } else if (rc != ENR_E_PARSE || err.message[0] == '\0' || complete || r.body != NULL) {
            abort();
        }
        enr_http_response_free(&r);
    }
    return 0;
}
