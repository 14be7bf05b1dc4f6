/* `enroll admin --url`: one admin command sent to enrolld's admin API. */
#ifndef ENROLL_CLI_ADMIN_REMOTE_H
#define ENROLL_CLI_ADMIN_REMOTE_H

#include "enroll/error.h"

/* POSTs `args` (a JSON object) to URL/admin/v1/NOUN/VERB for `command`
 * ("group.new"), authenticating with the admin certificate and key, and
 * checking the server against `trust` (required). On 200,
 * *result is the answer (free with enr_admin_result_free); otherwise the
 * service's error message with the code its status maps to. */
enr_code cli_admin_remote(const char *url, const char *cert, const char *key, const char *trust,
                          const char *command, const char *args, char **result, enr_error *err);

#endif
