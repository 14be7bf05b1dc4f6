/* libFuzzer target for the CSR linter: any bytes must give a report (or a
 * clean out-of-memory failure), its JSON must build, and nothing may leak. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include "enroll/lint.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* The expected CN makes the cn_mismatch path run on every request. */
    enr_lint_options opts = {"dev-001"};
    enr_lint_report *report = NULL;
    enr_error err;
    if (enr_lint_csr(data, size, &opts, &report, &err) != ENR_OK)
        return 0;
    if (enr_lint_report_count(report) > 0 && enr_lint_report_worst(report) == 0)
        abort(); /* findings but no worst severity: the bookkeeping is broken */
    for (size_t i = 0; i < enr_lint_report_count(report); i++)
        if (enr_lint_report_get(report, i)->message == NULL)
            abort();
    char *json = NULL;
    if (enr_lint_report_json(report, &json, &err) != ENR_OK)
        abort(); /* every message must be valid UTF-8, or jansson refuses it */
    free(json);
    enr_lint_report_free(report);
    return 0;
}
