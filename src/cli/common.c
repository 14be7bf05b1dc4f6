/* Plumbing shared by the command-line programs (`enroll` and
 * `enroll-device`): exit codes, error reporting, output files, inputs. */
#include <errno.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "enroll/fileio.h"

const char *cli_program = "enroll";

/* The one rule (docs/cli.md, README.md, every --help that mentions exit
 * codes): 1 when the inputs were read and understood and the answer is no;
 * 2 when the command line itself is wrong; 3 when a file, key, token or
 * service could not be used, however it failed (missing, unreadable,
 * malformed, locked by a missing or wrong passphrase or PIN, unreachable);
 * 4 for our own failures. A malformed input is 3, not 1: "this file is not
 * a CSR" must never read as "this CSR's signature is bad".
 *
 * ENR_E_NOTFOUND is 3 here (a file, CA directory, token or key object that
 * is not there); a command whose question is itself a lookup (`ca revoke`
 * of a serial, `admin ... show ID`) maps its lookup's NOTFOUND to 1 with
 * cli_fail_lookup. */
int cli_exit_code(enr_code code)
{
    switch (code) {
    case ENR_OK: return CLI_EXIT_OK;
    case ENR_E_USAGE: return CLI_EXIT_USAGE;
    case ENR_E_VERIFY:
    case ENR_E_EXISTS:
    case ENR_E_POLICY: return CLI_EXIT_FINDING;
    case ENR_E_PARSE:
    case ENR_E_UNSUPPORTED:
    case ENR_E_IO:
    case ENR_E_NOTFOUND:
    case ENR_E_TOKEN:
    case ENR_E_LOCKED: return CLI_EXIT_IO;
    case ENR_E_NOMEM:
    case ENR_E_CRYPTO:
    case ENR_E_INTERNAL: return CLI_EXIT_INTERNAL;
    }
    return CLI_EXIT_INTERNAL;
}

int cli_fail(const enr_error *err, bool json)
{
    fprintf(stderr, "%s: %s\n", cli_program, err->message[0] ? err->message : enr_code_name(err->code));
    if (json) {
        json_t *o = json_pack("{s:{s:s,s:s}}", "error", "code", enr_code_name(err->code), "message",
                              err->message);
        cli_print_json(o);
        json_decref(o);
    }
    return cli_exit_code(err->code);
}

int cli_fail_lookup(const enr_error *err, bool json)
{
    int code = cli_fail(err, json);
    return err->code == ENR_E_NOTFOUND ? CLI_EXIT_FINDING : code;
}

void cli_print_json(const json_t *o)
{
    if (o == NULL)
        return;
    json_dumpf(o, stdout, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
    fputc('\n', stdout);
}

int cli_usage(const char *cmd, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "%s %s: ", cli_program, cmd);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, "\nTry '%s %s --help'.\n", cli_program, cmd);
    return CLI_EXIT_USAGE;
}

enr_code cli_write(const char *path, const void *data, size_t len, unsigned mode, bool force,
                   enr_error *err)
{
    if (path == NULL || strcmp(path, "-") == 0) {
        if (fwrite(data, 1, len, stdout) != len || fflush(stdout) != 0)
            return enr_error_set(err, ENR_E_IO, "writing to standard output failed: %s",
                                 strerror(errno));
        return ENR_OK;
    }
    return enr_file_write_atomic(path, data, len, (mode_t)mode, force, err);
}

enr_code cli_read_input(const char *path, unsigned char **data, size_t *len, enr_error *err)
{
    enr_buf buf;
    enr_code rc = enr_file_read(path, ENR_INPUT_LIMIT, &buf, err);
    if (rc != ENR_OK)
        return rc;
    *data = buf.data;
    *len = buf.len;
    return ENR_OK;
}

enr_code cli_read_secret(const char *path, char **out, enr_error *err)
{
    *out = NULL;
    if (path == NULL)
        return ENR_OK;
    return enr_secret_read_file(path, out, err);
}
