/* The CSR reader as `enroll csr show/verify` uses it: decode, parse, verify,
 * describe as JSON and text, and re-encode in every format. */
#include <stdint.h>
#include <stdlib.h>

#include "enroll/csr.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    enr_csr *csr = NULL;
    enr_error err;
    if (enr_csr_parse(data, size, &csr, &err) != ENR_OK)
        return 0;
    (void)enr_csr_verify(csr, &err);
    char *text = NULL;
    if (enr_csr_describe_json(csr, &text, &err) == ENR_OK)
        free(text);
    if (enr_csr_describe_text(csr, &text, &err) == ENR_OK)
        free(text);
    for (int f = ENR_CSR_PEM; f <= ENR_CSR_BASE64; f++) {
        unsigned char *out = NULL;
        size_t len = 0;
        if (enr_csr_encode_alloc(csr, (enr_csr_format)f, &out, &len, &err) == ENR_OK) {
            /* What we write must read back to the same request. */
            enr_csr *again = NULL;
            if (enr_csr_parse(out, len, &again, &err) != ENR_OK)
                abort();
            enr_csr_free(again);
            free(out);
        }
    }
    enr_csr_free(csr);
    return 0;
}
