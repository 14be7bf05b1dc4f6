/* enroll cert show | enroll crl show | enroll verify */
#include <getopt.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli/cli.h"
#include "cli/cli_cert.h"
#include "enroll/cert.h"
#include "enroll/name.h"

static const char CERT_HELP[] =
    "Usage: enroll cert show FILE [--json]\n"
    "\n"
    "show    Describes every certificate in FILE: version, serial, issuer, subject, validity\n"
    "        (RFC 3339, UTC), public key, signature algorithm, extensions (basicConstraints,\n"
    "        keyUsage, extendedKeyUsage, subjectAltName, key identifiers, CRL distribution\n"
    "        points, authority information access) and the SHA-256 fingerprint.\n"
    "        Reads a PEM bundle (every CERTIFICATE block), or one DER or headerless base64\n"
    "        certificate (detected). With --json: one object, or an array when FILE holds\n"
    "        more than one certificate.\n"
    "\n"
    "Examples:\n"
    "  enroll cert show device.pem\n"
    "  enroll cert show chain.pem --json | jq -r '.[].subject'\n";

static const char VERIFY_HELP[] =
    "Usage: enroll verify --root FILE [--untrusted FILE] [--crl FILE]... [--crl-leaf-only]\n"
    "                     [--purpose client|server|any] [--at TIME] [--json] CERT\n"
    "\n"
    "Checks that CERT chains to a trusted root: signatures, validity periods, CA flags,\n"
    "path lengths, key usage for the purpose and, with --crl, revocation. CERT may be a\n"
    "bundle (the device certificate followed by its chain, as DPS returns it): the first\n"
    "certificate is verified and the others may serve as intermediates.\n"
    "Exit 0 when the path verifies, 1 when it does not (the reason on stderr, and in the\n"
    "JSON), 2 for bad usage, 3 when a file cannot be read.\n"
    "\n"
    "--root FILE       trust anchors (self-signed; PEM bundle, DER or base64); repeatable\n"
    "--untrusted FILE  intermediates that may be used to build the path; repeatable\n"
    "--crl FILE        CRLs (PEM or DER); repeatable. With any --crl, every certificate\n"
    "                  below the root needs a current CRL from its issuer\n"
    "--crl-leaf-only   only CERT itself needs one (openssl verify -crl_check): for a\n"
    "                  root that publishes no CRL\n"
    "--purpose P       client (TLS client: what devices present), server, or any (default)\n"
    "--at TIME         verify as of TIME instead of now: 2027-01-01T00:00:00Z,\n"
    "                  2027-01-01T02:00:00+02:00, or 2027-01-01 (midnight UTC)\n"
    "\n"
    "Reasons, stable for scripts (\"reason\" in the JSON): expired, not-yet-valid,\n"
    "unknown-issuer, bad-signature, pathlen-exceeded, not-a-ca, revoked, wrong-usage,\n"
    "crl-problem, other.\n"
    "\n"
    "Examples:\n"
    "  enroll verify --root root.pem --untrusted intermediate.pem --purpose client device.pem\n"
    "  enroll verify --root root.pem --crl root.crl --crl intermediate.crl --json chain.pem\n"
    "  enroll verify --root root.pem --untrusted devices.pem --crl devices.crl --crl-leaf-only device.pem\n";

enum { OPT_JSON = 1, OPT_ROOT, OPT_UNTRUSTED, OPT_CRL, OPT_CRL_LEAF_ONLY, OPT_PURPOSE, OPT_AT, OPT_HELP };

static const struct option CERT_OPTIONS[] = {
    {"json", no_argument, NULL, OPT_JSON},
    {"help", no_argument, NULL, OPT_HELP},
    {NULL, 0, NULL, 0},
};

static const struct option VERIFY_OPTIONS[] = {
    {"root", required_argument, NULL, OPT_ROOT},
    {"untrusted", required_argument, NULL, OPT_UNTRUSTED},
    {"crl", required_argument, NULL, OPT_CRL},
    {"crl-leaf-only", no_argument, NULL, OPT_CRL_LEAF_ONLY},
    {"purpose", required_argument, NULL, OPT_PURPOSE},
    {"at", required_argument, NULL, OPT_AT},
    {"json", no_argument, NULL, OPT_JSON},
    {"help", no_argument, NULL, OPT_HELP},
    {NULL, 0, NULL, 0},
};

#define MAX_FILES 64

typedef struct file_list {
    const char *paths[MAX_FILES];
    size_t count;
} file_list;

typedef struct cert_args {
    file_list roots, untrusted, crls;
    const char *purpose, *at;
    bool json, help, crl_leaf_only;
} cert_args;

static int add_file(const char *cmd, const char *option, file_list *list, const char *path)
{
    if (list->count == MAX_FILES)
        return cli_usage(cmd, "too many %s options (at most %d)", option, MAX_FILES);
    list->paths[list->count++] = path;
    return CLI_EXIT_OK;
}

static int parse_args(const char *cmd, const struct option *options, int argc, char **argv,
                      cert_args *a)
{
    memset(a, 0, sizeof *a);
    optind = 0;
    opterr = 0;
    int c, rc = CLI_EXIT_OK;
    while (rc == CLI_EXIT_OK && (c = getopt_long(argc, argv, ":h", options, NULL)) != -1) {
        switch (c) {
        case OPT_ROOT: rc = add_file(cmd, "--root", &a->roots, optarg); break;
        case OPT_UNTRUSTED: rc = add_file(cmd, "--untrusted", &a->untrusted, optarg); break;
        case OPT_CRL: rc = add_file(cmd, "--crl", &a->crls, optarg); break;
        case OPT_CRL_LEAF_ONLY: a->crl_leaf_only = true; break;
        case OPT_PURPOSE: a->purpose = optarg; break;
        case OPT_AT: a->at = optarg; break;
        case OPT_JSON: a->json = true; break;
        case OPT_HELP:
        case 'h': a->help = true; break;
        case ':': return cli_usage(cmd, "option %s needs a value", argv[optind - 1]);
        default: return cli_usage(cmd, "unknown option %s", argv[optind - 1]);
        }
    }
    return rc;
}

/* Describes item i of a list, as JSON or as text (certificates, CRLs). */
typedef enr_code (*describe_item_fn)(void *list, int i, bool json, char **out, enr_error *err);

static enr_code describe_cert(void *list, int i, bool json, char **out, enr_error *err)
{
    X509 *cert = sk_X509_value((STACK_OF(X509) *)list, i);
    return json ? enr_cert_describe_json(cert, out, err) : enr_cert_describe_text(cert, out, err);
}

static enr_code describe_crl(void *list, int i, bool json, char **out, enr_error *err)
{
    X509_CRL *crl = sk_X509_CRL_value((STACK_OF(X509_CRL) *)list, i);
    return json ? enr_crl_describe_json(crl, out, err) : enr_crl_describe_text(crl, out, err);
}

/* Every item of a file: texts one after another, or one JSON value (the
 * object, or an array of them when the file holds more than one). */
static enr_code describe_all(void *list, int n, describe_item_fn describe, bool json, enr_error *err)
{
    json_t *all = json ? json_array() : NULL;
    if (json && all == NULL)
        return enr_error_set(err, ENR_E_NOMEM, "out of memory");
    for (int i = 0; i < n; i++) {
        char *text = NULL;
        enr_code rc = describe(list, i, json, &text, err);
        if (rc != ENR_OK) {
            json_decref(all);
            return rc;
        }
        if (json) {
            json_t *one = json_loads(text, 0, NULL);
            free(text);
            if (one == NULL) {
                json_decref(all);
                return enr_error_set(err, ENR_E_INTERNAL, "cannot re-read our JSON");
            }
            json_array_append_new(all, one);
        } else {
            printf("%s%s", i > 0 ? "\n" : "", text);
            free(text);
        }
    }
    if (json) {
        cli_print_json(n == 1 ? json_array_get(all, 0) : all);
        json_decref(all);
    }
    return ENR_OK;
}

static int cert_show(int argc, char **argv)
{
    cert_args a;
    int rc = parse_args("cert show", CERT_OPTIONS, argc, argv, &a);
    if (rc != CLI_EXIT_OK)
        return rc;
    if (a.help) {
        fputs(CERT_HELP, stdout);
        return CLI_EXIT_OK;
    }
    if (optind != argc - 1)
        return cli_usage("cert show", "give exactly one certificate file ('-' for standard input)");
    const char *path = argv[optind];
    enr_error err;
    STACK_OF(X509) *certs = NULL;
    enr_code code = enr_cert_read_file(path, &certs, &err);
    if (code == ENR_OK)
        code = describe_all(certs, sk_X509_num(certs), describe_cert, a.json, &err);
    sk_X509_pop_free(certs, X509_free);
    return code == ENR_OK ? CLI_EXIT_OK : cli_fail(&err, a.json);
}

static const char CRL_HELP[] =
    "Usage: enroll crl show FILE [--json]\n"
    "\n"
    "show    Describes every CRL in FILE: issuer, CRL number, this and next update (RFC 3339,\n"
    "        UTC), signature algorithm, extensions, and each revoked certificate's serial,\n"
    "        revocation time and reason. Reads a PEM bundle (every X509 CRL block), or one\n"
    "        DER or headerless base64 CRL. With --json: one object, or an array when FILE\n"
    "        holds more than one CRL.\n"
    "\n"
    "Examples:\n"
    "  enroll crl show devices-ca/crl.pem\n"
    "  enroll crl show devices.crl --json | jq -r '.entries[] | select(.reason == \"keyCompromise\") | .serial'\n";

int cli_crl(int argc, char **argv)
{
    if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
        fputs(CRL_HELP, argc < 2 ? stderr : stdout);
        return argc < 2 ? CLI_EXIT_USAGE : CLI_EXIT_OK;
    }
    if (strcmp(argv[1], "show") != 0)
        return cli_usage("crl", "unknown verb '%s' (show; to make a CRL use `enroll ca crl`)", argv[1]);
    argc--, argv++;
    cert_args a;
    int rc = parse_args("crl show", CERT_OPTIONS, argc, argv, &a);
    if (rc != CLI_EXIT_OK)
        return rc;
    if (a.help) {
        fputs(CRL_HELP, stdout);
        return CLI_EXIT_OK;
    }
    if (optind != argc - 1)
        return cli_usage("crl show", "give exactly one CRL file ('-' for standard input)");
    enr_error err;
    STACK_OF(X509_CRL) *crls = NULL;
    enr_code code = enr_crl_read_file(argv[optind], &crls, &err);
    if (code == ENR_OK)
        code = describe_all(crls, sk_X509_CRL_num(crls), describe_crl, a.json, &err);
    sk_X509_CRL_pop_free(crls, X509_CRL_free);
    return code == ENR_OK ? CLI_EXIT_OK : cli_fail(&err, a.json);
}

int cli_cert(int argc, char **argv)
{
    if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
        fputs(CERT_HELP, argc < 2 ? stderr : stdout);
        return argc < 2 ? CLI_EXIT_USAGE : CLI_EXIT_OK;
    }
    if (strcmp(argv[1], "show") == 0)
        return cert_show(argc - 1, argv + 1);
    return cli_usage("cert", "unknown verb '%s' (show; to check a chain use `enroll verify`)",
                     argv[1]);
}

/* What `enroll verify` has read, all owned here. */
typedef struct verify_inputs {
    X509 *leaf;
    STACK_OF(X509) *roots, *untrusted;
    STACK_OF(X509_CRL) *crls;
} verify_inputs;

static void verify_inputs_free(verify_inputs *in)
{
    X509_free(in->leaf);
    sk_X509_pop_free(in->roots, X509_free);
    sk_X509_pop_free(in->untrusted, X509_free);
    sk_X509_CRL_pop_free(in->crls, X509_CRL_free);
}

/* Moves every certificate of every file in `list` onto `*into`. */
static enr_code read_cert_files(const file_list *list, STACK_OF(X509) **into, enr_error *err)
{
    for (size_t i = 0; i < list->count; i++) {
        STACK_OF(X509) *certs = NULL;
        enr_code rc = enr_cert_read_file(list->paths[i], &certs, err);
        if (rc != ENR_OK)
            return rc;
        while (sk_X509_num(certs) > 0) {
            X509 *cert = sk_X509_shift(certs);
            if (!sk_X509_push(*into, cert)) {
                X509_free(cert);
                sk_X509_pop_free(certs, X509_free);
                return enr_error_set(err, ENR_E_NOMEM, "out of memory");
            }
        }
        sk_X509_free(certs);
    }
    return ENR_OK;
}

static enr_code read_crl_files(const file_list *list, STACK_OF(X509_CRL) **into, enr_error *err)
{
    for (size_t i = 0; i < list->count; i++) {
        STACK_OF(X509_CRL) *crls = NULL;
        enr_code rc = enr_crl_read_file(list->paths[i], &crls, err);
        if (rc != ENR_OK)
            return rc;
        while (sk_X509_CRL_num(crls) > 0) {
            X509_CRL *crl = sk_X509_CRL_shift(crls);
            if (!sk_X509_CRL_push(*into, crl)) {
                X509_CRL_free(crl);
                sk_X509_CRL_pop_free(crls, X509_CRL_free);
                return enr_error_set(err, ENR_E_NOMEM, "out of memory");
            }
        }
        sk_X509_CRL_free(crls);
    }
    return ENR_OK;
}

/* CERT's first certificate is the one to verify; the rest of a bundle joins
 * the intermediates. */
static enr_code read_subject_file(const char *path, verify_inputs *in, enr_error *err)
{
    file_list one = {{path}, 1};
    STACK_OF(X509) *certs = sk_X509_new_null();
    if (certs == NULL)
        return enr_error_set(err, ENR_E_NOMEM, "out of memory");
    enr_code rc = read_cert_files(&one, &certs, err);
    if (rc == ENR_OK) {
        in->leaf = sk_X509_shift(certs);
        while (rc == ENR_OK && sk_X509_num(certs) > 0) {
            X509 *cert = sk_X509_shift(certs);
            if (!sk_X509_push(in->untrusted, cert)) {
                X509_free(cert);
                rc = enr_error_set(err, ENR_E_NOMEM, "out of memory");
            }
        }
    }
    sk_X509_pop_free(certs, X509_free);
    return rc;
}

static enr_code read_verify_inputs(const cert_args *a, const char *path, verify_inputs *in,
                                   enr_error *err)
{
    memset(in, 0, sizeof *in);
    in->roots = sk_X509_new_null();
    in->untrusted = sk_X509_new_null();
    in->crls = sk_X509_CRL_new_null();
    if (in->roots == NULL || in->untrusted == NULL || in->crls == NULL)
        return enr_error_set(err, ENR_E_NOMEM, "out of memory");
    enr_code rc = read_subject_file(path, in, err);
    if (rc == ENR_OK)
        rc = read_cert_files(&a->roots, &in->roots, err);
    if (rc == ENR_OK)
        rc = read_cert_files(&a->untrusted, &in->untrusted, err);
    if (rc == ENR_OK)
        rc = read_crl_files(&a->crls, &in->crls, err);
    return rc;
}

static bool parse_purpose(const char *text, enr_purpose *out)
{
    static const struct { const char *name; enr_purpose purpose; } PURPOSES[] = {
        {"any", ENR_PURPOSE_ANY}, {"client", ENR_PURPOSE_CLIENT}, {"server", ENR_PURPOSE_SERVER}};
    for (size_t i = 0; i < sizeof PURPOSES / sizeof PURPOSES[0]; i++)
        if (strcmp(text, PURPOSES[i].name) == 0) {
            *out = PURPOSES[i].purpose;
            return true;
        }
    return false;
}

static const char *purpose_name(enr_purpose purpose)
{
    return purpose == ENR_PURPOSE_CLIENT ? "client" : purpose == ENR_PURPOSE_SERVER ? "server" : "any";
}

/* Checks the command line; fills `opts` purpose and time. Returns -1 to go on. */
static int check_verify_args(const cert_args *a, int argc, char **argv, enr_verify_options *opts)
{
    if (optind != argc - 1)
        return cli_usage("verify", "give exactly one certificate file to verify ('-' for standard input)");
    if (a->roots.count == 0)
        return cli_usage("verify", "--root FILE is required: the trust anchor(s) the path must end at");
    if (a->crl_leaf_only && a->crls.count == 0)
        return cli_usage("verify", "--crl-leaf-only needs --crl FILE: the CRL that covers the certificate");
    opts->crl_leaf_only = a->crl_leaf_only;
    if (a->purpose != NULL && !parse_purpose(a->purpose, &opts->purpose))
        return cli_usage("verify", "--purpose '%s' is not one of client, server, any", a->purpose);
    if (a->at != NULL) {
        enr_error err;
        if (enr_time_parse(a->at, &opts->at, &err) != ENR_OK)
            return cli_usage("verify", "--at: %s", err.message);
        if (opts->at <= 0)
            return cli_usage("verify", "--at must be after 1970-01-01T00:00:00Z");
    }
    return -1;
}

static void report_valid(const char *path, const verify_inputs *in, const enr_verify_options *opts,
                         const enr_verify_result *result, bool json)
{
    char *subject = enr_name_format(X509_get_subject_name(in->leaf));
    if (json) {
        json_t *o = json_pack("{s:s,s:b,s:s,s:s,s:i,s:s}", "file", path, "valid", 1, "reason",
                              result->reason_name, "subject", subject ? subject : "", "chain_length",
                              result->chain_length, "purpose", purpose_name(opts->purpose));
        cli_print_json(o);
        json_decref(o);
    } else {
        printf("%s: OK (%s, a path of %d certificates to a trusted root)\n", path,
               subject ? subject : "", result->chain_length);
    }
    free(subject);
}

static void report_invalid(const char *path, const enr_verify_result *result, bool json)
{
    fprintf(stderr, "enroll: %s: %s [%s]\n", path, result->message, result->reason_name);
    if (!json)
        return;
    json_t *o = json_pack("{s:s,s:b,s:s,s:i,s:i,s:s,s:s}", "file", path, "valid", 0, "reason",
                          result->reason_name, "depth", result->depth, "openssl_error",
                          result->openssl_error, "subject", result->subject, "message",
                          result->message);
    cli_print_json(o);
    json_decref(o);
}

/* For verify, exit 1 means "the certificate is not valid"; a file that
 * cannot be read or parsed is exit 3, so scripts never mistake one for the other. */
static int fail_reading(const enr_error *err, bool json)
{
    int code = cli_fail(err, json);
    return code == CLI_EXIT_FINDING ? CLI_EXIT_IO : code;
}

int cli_verify(int argc, char **argv)
{
    cert_args a;
    int rc = parse_args("verify", VERIFY_OPTIONS, argc, argv, &a);
    if (rc != CLI_EXIT_OK)
        return rc;
    if (a.help) {
        fputs(VERIFY_HELP, stdout);
        return CLI_EXIT_OK;
    }
    enr_verify_options opts = {0};
    if ((rc = check_verify_args(&a, argc, argv, &opts)) >= 0)
        return rc;
    const char *path = argv[optind];
    enr_error err;
    verify_inputs in;
    if (read_verify_inputs(&a, path, &in, &err) != ENR_OK) {
        verify_inputs_free(&in);
        return fail_reading(&err, a.json);
    }
    opts.roots = in.roots;
    opts.untrusted = in.untrusted;
    opts.crls = in.crls;
    enr_verify_result result;
    enr_code code = enr_cert_verify(in.leaf, &opts, &result, &err);
    if (code == ENR_OK)
        report_valid(path, &in, &opts, &result, a.json);
    else if (code == ENR_E_VERIFY)
        report_invalid(path, &result, a.json);
    verify_inputs_free(&in);
    if (code == ENR_OK || code == ENR_E_VERIFY)
        return code == ENR_OK ? CLI_EXIT_OK : CLI_EXIT_FINDING;
    return cli_fail(&err, a.json);
}
