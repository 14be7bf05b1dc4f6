/* Shared plumbing (src/cli/common.c) for `enroll` and `enroll-device`: exit
 * codes, error reporting, output files, and option parsing conventions (see
 * docs/cli.md). */
#ifndef ENROLL_CLI_H
#define ENROLL_CLI_H

#include <stdbool.h>
#include <stddef.h>

#include "enroll/error.h"
#include "enroll/fileio.h"

/* Exit codes scripts can rely on; cli_exit_code (common.c) is the rule. */
enum {
    CLI_EXIT_OK = 0,       /* success; for lint/verify/match: nothing wrong */
    CLI_EXIT_FINDING = 1,  /* the inputs were read and understood, and the answer is no: bad
                            * signature, mismatch, lint findings, a refusal by policy, already
                            * exists (no --force), a serial or record that is not there */
    CLI_EXIT_USAGE = 2,    /* the command line itself is wrong: unknown, missing or conflicting
                            * options or arguments */
    CLI_EXIT_IO = 3,       /* a file, key, token or service could not be used: missing,
                            * unreadable or malformed, a passphrase or PIN missing or wrong,
                            * no such token, a server unreachable */
    CLI_EXIT_INTERNAL = 4  /* out of memory, crypto library failure, a bug */
};

/* The program's name in messages: "enroll" (src/cli/main.c) or
 * "enroll-device" (src/cli/device_main.c), set by main before anything else. */
extern const char *cli_program;

int cli_exit_code(enr_code code);

/* Prints "enroll: message" on stderr (and, with --json, an {"error":...}
 * object on stdout) and returns the exit code for err->code. */
int cli_fail(const enr_error *err, bool json);

/* cli_fail for a command whose question is a lookup (is this serial ours?
 * which enrollment is ID?): ENR_E_NOTFOUND is then the answer, exit 1. */
int cli_fail_lookup(const enr_error *err, bool json);

/* Prints a --json answer on stdout: indented, keys in insertion order, one
 * newline. The caller keeps its reference; NULL (out of memory) prints
 * nothing. */
struct json_t;
void cli_print_json(const struct json_t *o);

/* Prints "enroll CMD: message" and a pointer to --help; returns CLI_EXIT_USAGE. */
int cli_usage(const char *cmd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Writes output to FILE (or stdout for NULL or "-"): atomically, with `mode`. */
enr_code cli_write(const char *path, const void *data, size_t len, unsigned mode, bool force,
                   enr_error *err);

/* Reads a whole input file (or "-") up to the input limit. */
enr_code cli_read_input(const char *path, unsigned char **data, size_t *len, enr_error *err);

/* Reads a passphrase/PIN file; NULL path gives NULL. */
enr_code cli_read_secret(const char *path, char **out, enr_error *err);

int cli_key(int argc, char **argv);
int cli_csr(int argc, char **argv);
int cli_match(int argc, char **argv);
int cli_ca(int argc, char **argv);
int cli_admin(int argc, char **argv);
int cli_device(int argc, char **argv);
int cli_serve(int argc, char **argv);

#endif
