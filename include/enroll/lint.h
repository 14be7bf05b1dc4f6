/* A linter for PKCS#10 requests. It reads raw bytes (so that encoding faults
 * become findings with byte offsets) and reports every problem it sees, each
 * with a stable id, a severity and a message saying what and where. */
#ifndef ENROLL_LINT_H
#define ENROLL_LINT_H

#include <stddef.h>

#include "enroll/csr.h"
#include "enroll/error.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum enr_severity {
    ENR_SEVERITY_NOTICE = 1,
    ENR_SEVERITY_WARNING = 2,
    ENR_SEVERITY_ERROR = 3
} enr_severity;

const char *enr_severity_name(enr_severity sev);
enr_code enr_severity_parse(const char *name, enr_severity *out, enr_error *err);

typedef struct enr_finding {
    const char *id;       /* stable, e.g. "csr.signature.weak_hash" */
    enr_severity severity;
    const char *message;  /* what and where */
} enr_finding;

typedef struct enr_lint_options {
    const char *expect_cn; /* the DPS rule: CN must equal the registration id; NULL to skip */
} enr_lint_options;

typedef struct enr_lint_report enr_lint_report;

/* Lints `in` (PEM, DER or headerless base64). Returns ENR_OK whenever it
 * could produce a report, even one full of errors; a malformed input is a
 * finding, not a failure. */
enr_code enr_lint_csr(const unsigned char *in, size_t len, const enr_lint_options *opts,
                      enr_lint_report **out, enr_error *err);
/* Lints a request enr_csr_parse already read (the service's path): the
 * same rules without decoding it again, and the signature verdict is
 * enr_csr_verify's (kept in the request, so the CA does not verify twice).
 * The encoding rules see the request's DER as parsed; what only raw input
 * shows (PEM labels, bytes after the request) enr_csr_parse refuses anyway. */
enr_code enr_lint_csr_parsed(const enr_csr *csr, const enr_lint_options *opts, enr_lint_report **out,
                             enr_error *err);
void enr_lint_report_free(enr_lint_report *report);

size_t enr_lint_report_count(const enr_lint_report *report);
const enr_finding *enr_lint_report_get(const enr_lint_report *report, size_t i);
/* 0 when there are no findings. */
int enr_lint_report_worst(const enr_lint_report *report);
/* True when a finding with this id is present. */
int enr_lint_report_has(const enr_lint_report *report, const char *id);
/* {"findings":[{"id":..,"severity":..,"message":..}], "worst": "error"|...|null,
 *  "counts": {...}} (free with free()). */
enr_code enr_lint_report_json(const enr_lint_report *report, char **out, enr_error *err);

/* Every id the linter can emit, with its severity and a one-line summary:
 * docs/lint.md documents the same ids (a unit test keeps them in step). */
typedef struct enr_lint_rule {
    const char *id;
    enr_severity severity;
    const char *summary;
} enr_lint_rule;
const enr_lint_rule *enr_lint_rules(size_t *count);

#ifdef __cplusplus
}
#endif
#endif
