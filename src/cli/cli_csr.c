/* enroll csr new | show | verify | lint */
#include <getopt.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "enroll/csr.h"
#ifndef ENROLL_CLI_DEVICE /* enroll-device has no lint (src/lint is the operator's library) */
#include "enroll/lint.h"
#define CSR_LINT_USAGE \
    "       enroll csr lint FILE [--json] [--expect-cn ID] [--fail-on error|warning|notice]\n"
#define CSR_LINT_HELP \
    "lint    Reports problems, each with a stable id and a severity (docs/lint.md lists them).\n" \
    "        Exit 1 when a finding is at or above --fail-on (default: warning), else 0.\n"
#define CSR_LINT_EXAMPLE "  enroll csr lint device.csr --expect-cn dev-001 --json\n"
#define CSR_VERBS "new, show, verify, lint"
#else
#define CSR_LINT_USAGE ""
#define CSR_LINT_HELP ""
#define CSR_LINT_EXAMPLE ""
#define CSR_VERBS "new, show, verify"
#endif

static const char CSR_HELP[] =
    "Usage: enroll csr new --key FILE|pkcs11:URI (--subject DN | --dn FIELD=VALUE ...)\n"
    "                      [--san LIST] [--ku LIST] [--eku LIST] [--ca [--pathlen N]]\n"
    "                      [--challenge-password-file F] [--hash sha256|sha384|sha512]\n"
    "                      [--format pem|der|b64] [--out FILE] [--force] [--json]\n"
    "                      [--pass-file F] [--module SO] [--pin-file F]\n"
    "       enroll csr show FILE [--json]\n"
    "       enroll csr verify FILE [--json]\n"
    CSR_LINT_USAGE
    "\n"
    "new     Builds a PKCS#10 request and signs it with the key (in a token, the token signs).\n"
    "show    Describes a request: subject, key, signature algorithm, attributes, requested\n"
    "        extensions. Reads PEM, DER or headerless base64 (detected).\n"
    "verify  Checks the self-signature, the proof that the requester holds the private key.\n"
    "        Exit 0 only when it verifies.\n"
    CSR_LINT_HELP
    "\n"
    "Subject: '/C=US/ST=California/O=Acme, Inc./CN=dev-001' ('/' separates fields, '+' joins\n"
    "  fields in one RDN, '\\' escapes), or repeated --dn CN=dev-001. Fields: C ST L O OU CN\n"
    "  emailAddress serialNumber UID. C and serialNumber are encoded as PrintableString,\n"
    "  emailAddress as IA5String, the rest as UTF8String.\n"
    "--san     DNS:name,IP:1.2.3.4,URI:urn:x,email:a@b (repeatable)\n"
    "--ku      digitalSignature,keyEncipherment,keyAgreement,... (requested critical)\n"
    "--eku     clientAuth,serverAuth,codeSigning,emailProtection,timeStamping,OCSPSigning,OID\n"
    "--ca      request basicConstraints CA:TRUE (critical); --pathlen N limits the path\n"
    "--format  pem (default), der, or b64: base64 DER on one line, the form DPS puts in JSON\n"
    "--expect-cn ID  the DPS rule: the CN must equal the registration id\n"
    "\n"
    "Examples:\n"
    "  enroll csr new --key device.key --dn CN=dev-001 --eku clientAuth --out device.csr\n"
    "  enroll csr new --key 'pkcs11:token=dev;object=devkey' --module /usr/lib/softhsm/libsofthsm2.so \\\n"
    "      --pin-file pin.txt --subject /CN=dev-001 --format b64\n"
    CSR_LINT_EXAMPLE;

enum { OPT_KEY = 1, OPT_SUBJECT, OPT_DN, OPT_SAN, OPT_KU, OPT_EKU, OPT_CA, OPT_PATHLEN,
       OPT_CHALLENGE, OPT_HASH, OPT_FORMAT, OPT_OUT, OPT_FORCE, OPT_PASS_FILE, OPT_MODULE,
       OPT_PIN_FILE, OPT_JSON, OPT_EXPECT_CN, OPT_FAIL_ON, OPT_HELP };

static const struct option CSR_OPTIONS[] = {
    {"key", required_argument, NULL, OPT_KEY},
    {"subject", required_argument, NULL, OPT_SUBJECT},
    {"dn", required_argument, NULL, OPT_DN},
    {"san", required_argument, NULL, OPT_SAN},
    {"ku", required_argument, NULL, OPT_KU},
    {"eku", required_argument, NULL, OPT_EKU},
    {"ca", no_argument, NULL, OPT_CA},
    {"pathlen", required_argument, NULL, OPT_PATHLEN},
    {"challenge-password-file", required_argument, NULL, OPT_CHALLENGE},
    {"hash", required_argument, NULL, OPT_HASH},
    {"format", required_argument, NULL, OPT_FORMAT},
    {"out", required_argument, NULL, OPT_OUT},
    {"force", no_argument, NULL, OPT_FORCE},
    {"pass-file", required_argument, NULL, OPT_PASS_FILE},
    {"module", required_argument, NULL, OPT_MODULE},
    {"pin-file", required_argument, NULL, OPT_PIN_FILE},
    {"json", no_argument, NULL, OPT_JSON},
    {"expect-cn", required_argument, NULL, OPT_EXPECT_CN},
    {"fail-on", required_argument, NULL, OPT_FAIL_ON},
    {"help", no_argument, NULL, OPT_HELP},
    {NULL, 0, NULL, 0},
};

#define MAX_REPEATED 64

typedef struct csr_args {
    const char *key, *subject, *challenge_file, *hash, *format, *out, *pass_file, *module,
        *pin_file, *expect_cn, *fail_on, *pathlen;
    const char *dn[MAX_REPEATED], *san[MAX_REPEATED];
    size_t dn_count, san_count;
    const char *ku, *eku;
    bool ca, force, json, help;
} csr_args;

static int parse_csr_args(const char *cmd, int argc, char **argv, csr_args *a)
{
    memset(a, 0, sizeof *a);
    optind = 0;
    opterr = 0;
    int c;
    while ((c = getopt_long(argc, argv, ":h", CSR_OPTIONS, NULL)) != -1) {
        switch (c) {
        case OPT_KEY: a->key = optarg; break;
        case OPT_SUBJECT: a->subject = optarg; break;
        case OPT_DN:
            if (a->dn_count == MAX_REPEATED)
                return cli_usage(cmd, "too many --dn options (at most %d)", MAX_REPEATED);
            a->dn[a->dn_count++] = optarg;
            break;
        case OPT_SAN:
            if (a->san_count == MAX_REPEATED)
                return cli_usage(cmd, "too many --san options (at most %d)", MAX_REPEATED);
            a->san[a->san_count++] = optarg;
            break;
        case OPT_KU: a->ku = optarg; break;
        case OPT_EKU: a->eku = optarg; break;
        case OPT_CA: a->ca = true; break;
        case OPT_PATHLEN: a->pathlen = optarg; break;
        case OPT_CHALLENGE: a->challenge_file = optarg; break;
        case OPT_HASH: a->hash = optarg; break;
        case OPT_FORMAT: a->format = optarg; break;
        case OPT_OUT: a->out = optarg; break;
        case OPT_FORCE: a->force = true; break;
        case OPT_PASS_FILE: a->pass_file = optarg; break;
        case OPT_MODULE: a->module = optarg; break;
        case OPT_PIN_FILE: a->pin_file = optarg; break;
        case OPT_JSON: a->json = true; break;
        case OPT_EXPECT_CN: a->expect_cn = optarg; break;
        case OPT_FAIL_ON: a->fail_on = optarg; break;
        case OPT_HELP:
        case 'h': a->help = true; break;
        case ':': return cli_usage(cmd, "option %s needs a value", argv[optind - 1]);
        default: return cli_usage(cmd, "unknown option %s", argv[optind - 1]);
        }
    }
    return CLI_EXIT_OK;
}

static int csr_new(int argc, char **argv)
{
    csr_args a;
    int rc = parse_csr_args("csr new", argc, argv, &a);
    if (rc != CLI_EXIT_OK)
        return rc;
    if (a.help) {
        fputs(CSR_HELP, stdout);
        return CLI_EXIT_OK;
    }
    if (optind < argc)
        return cli_usage("csr new", "unexpected argument '%s'", argv[optind]);
    if (a.json && (a.out == NULL || strcmp(a.out, "-") == 0))
        return cli_usage("csr new", "--json reports on standard output: write the request to a file (--out FILE)");
    if (a.key == NULL)
        return cli_usage("csr new", "--key FILE|pkcs11:URI is required");
    if (a.subject != NULL && a.dn_count > 0)
        return cli_usage("csr new", "give the subject either as --subject or as --dn fields, not both");
    if (a.pathlen != NULL && !a.ca)
        return cli_usage("csr new", "--pathlen only makes sense with --ca");

    enr_error err;
    enr_csr_format format = ENR_CSR_PEM;
    if (a.format != NULL && enr_csr_format_parse(a.format, &format, &err) != ENR_OK)
        return cli_usage("csr new", "%s", err.message);
    enr_csr_spec *spec = enr_csr_spec_new();
    enr_signer *signer = NULL;
    enr_csr *csr = NULL;
    char *secret = NULL, *challenge = NULL;
    unsigned char *out = NULL;
    size_t out_len = 0;
    enr_code code = ENR_OK;
    if (spec == NULL) {
        code = enr_error_set(&err, ENR_E_NOMEM, "out of memory");
        goto done;
    }
    if (a.subject != NULL && (code = enr_csr_spec_set_subject(spec, a.subject, &err)) != ENR_OK)
        goto done;
    for (size_t i = 0; i < a.dn_count; i++)
        if ((code = enr_csr_spec_add_dn(spec, a.dn[i], &err)) != ENR_OK)
            goto done;
    for (size_t i = 0; i < a.san_count; i++)
        if ((code = enr_csr_spec_add_san(spec, a.san[i], &err)) != ENR_OK)
            goto done;
    if (a.ku != NULL && (code = enr_csr_spec_set_key_usage(spec, a.ku, &err)) != ENR_OK)
        goto done;
    if (a.eku != NULL && (code = enr_csr_spec_set_ext_key_usage(spec, a.eku, &err)) != ENR_OK)
        goto done;
    if (a.ca) {
        long pathlen = -1;
        if (a.pathlen != NULL) {
            char *end;
            pathlen = strtol(a.pathlen, &end, 10);
            if (*end != '\0' || end == a.pathlen || pathlen < 0) {
                code = enr_error_set(&err, ENR_E_USAGE, "--pathlen '%s' is not a non-negative number", a.pathlen);
                goto done;
            }
        }
        if ((code = enr_csr_spec_set_ca(spec, pathlen > 1000 ? 1000 : (int)pathlen, &err)) != ENR_OK)
            goto done;
    }
    if (a.hash != NULL && (code = enr_csr_spec_set_hash(spec, a.hash, &err)) != ENR_OK)
        goto done;
    if (a.challenge_file != NULL) {
        if ((code = cli_read_secret(a.challenge_file, &challenge, &err)) != ENR_OK ||
            (code = enr_csr_spec_set_challenge_password(spec, challenge, &err)) != ENR_OK)
            goto done;
    }
    bool token = enr_key_ref_is_token(a.key);
    if ((code = cli_read_secret(token ? a.pin_file : a.pass_file, &secret, &err)) != ENR_OK)
        goto done;
    enr_token_options topts = {a.module, secret};
    if ((code = enr_signer_open(a.key, token ? NULL : secret, &topts, &signer, &err)) != ENR_OK)
        goto done;
    if ((code = enr_csr_build(spec, signer, &csr, &err)) != ENR_OK)
        goto done;
    if ((code = enr_csr_encode_alloc(csr, format, &out, &out_len, &err)) != ENR_OK)
        goto done;
    if (format == ENR_CSR_BASE64 && (a.out == NULL || strcmp(a.out, "-") == 0)) {
        /* One line of base64, newline-terminated for the terminal and for scripts. */
        unsigned char *nl = realloc(out, out_len + 1);
        if (nl == NULL) {
            code = enr_error_set(&err, ENR_E_NOMEM, "out of memory");
            goto done;
        }
        out = nl;
        out[out_len++] = '\n';
    }
    code = cli_write(a.out, out, out_len, 0644, a.force, &err);
    if (code == ENR_OK && a.out != NULL && strcmp(a.out, "-") != 0)
        fprintf(stderr, "wrote %s request to %s\n", a.format ? a.format : "pem", a.out);
    if (code == ENR_OK && a.json) {
        /* The request as `csr show --json` describes it, and where it went. */
        char *described = NULL;
        if ((code = enr_csr_describe_json(csr, &described, &err)) == ENR_OK) {
            json_t *o = json_loads(described, 0, NULL);
            if (o != NULL) {
                json_object_del(o, "input_encoding"); /* of the bytes described: DER in memory */
                json_object_set_new(o, "out", json_string(a.out));
                json_object_set_new(o, "format", json_string(a.format ? a.format : "pem"));
            }
            cli_print_json(o);
            json_decref(o);
        }
        free(described);
    }
done:
    free(out);
    enr_csr_free(csr);
    enr_signer_free(signer);
    enr_secret_free(secret);
    enr_secret_free(challenge);
    enr_csr_spec_free(spec);
    return code == ENR_OK ? CLI_EXIT_OK : cli_fail(&err, a.json);
}

static enr_code load_csr(const char *path, enr_csr **csr, enr_error *err)
{
    unsigned char *data;
    size_t len;
    enr_code code = cli_read_input(path, &data, &len, err);
    if (code != ENR_OK)
        return code;
    code = enr_csr_parse(data, len, csr, err);
    free(data);
    if (code != ENR_OK)
        enr_error_prefix(err, "%s", path);
    return code;
}

/* Options of a verb that reads one CSR file. Returns -1 to go on, with
 * *path set; otherwise the exit code to return at once. */
static int parse_one_file(const char *cmd, int argc, char **argv, csr_args *a, const char **path)
{
    int rc = parse_csr_args(cmd, argc, argv, a);
    if (rc != CLI_EXIT_OK)
        return rc;
    if (a->help) {
        fputs(CSR_HELP, stdout);
        return CLI_EXIT_OK;
    }
    if (optind != argc - 1)
        return cli_usage(cmd, "give exactly one CSR file ('-' for standard input)");
    *path = argv[optind];
    return -1;
}

static int csr_show(int argc, char **argv)
{
    csr_args a;
    const char *path = NULL;
    int rc = parse_one_file("csr show", argc, argv, &a, &path);
    if (rc >= 0)
        return rc;
    enr_error err;
    enr_csr *csr = NULL;
    char *text = NULL;
    enr_code code = load_csr(path, &csr, &err);
    if (code == ENR_OK)
        code = a.json ? enr_csr_describe_json(csr, &text, &err) : enr_csr_describe_text(csr, &text, &err);
    if (code == ENR_OK)
        fputs(text, stdout);
    free(text);
    enr_csr_free(csr);
    return code == ENR_OK ? CLI_EXIT_OK : cli_fail(&err, a.json);
}

static int csr_verify(int argc, char **argv)
{
    csr_args a;
    const char *path = NULL;
    int rc = parse_one_file("csr verify", argc, argv, &a, &path);
    if (rc >= 0)
        return rc;
    enr_error err;
    enr_csr *csr = NULL;
    enr_code code = load_csr(path, &csr, &err);
    if (code == ENR_OK && (code = enr_csr_verify(csr, &err)) != ENR_OK)
        enr_error_prefix(&err, "%s", path);
    enr_csr_free(csr);
    if (code != ENR_OK)
        return cli_fail(&err, a.json);
    if (a.json) {
        json_t *o = json_pack("{s:s,s:b}", "file", path, "signature_valid", 1);
        cli_print_json(o);
        json_decref(o);
    } else
        printf("%s: self-signature verifies (proof of possession OK)\n", path);
    return CLI_EXIT_OK;
}

#ifndef ENROLL_CLI_DEVICE
static int csr_lint(int argc, char **argv)
{
    csr_args a;
    const char *path = NULL;
    int rc = parse_one_file("csr lint", argc, argv, &a, &path);
    if (rc >= 0)
        return rc;
    enr_error err;
    enr_severity fail_on = ENR_SEVERITY_WARNING;
    if (a.fail_on != NULL && enr_severity_parse(a.fail_on, &fail_on, &err) != ENR_OK)
        return cli_usage("csr lint", "%s", err.message);
    unsigned char *data;
    size_t len;
    enr_code code = cli_read_input(path, &data, &len, &err);
    if (code != ENR_OK)
        return cli_fail(&err, a.json);
    enr_lint_options opts = {a.expect_cn};
    enr_lint_report *report = NULL;
    code = enr_lint_csr(data, len, &opts, &report, &err);
    free(data);
    if (code != ENR_OK)
        return cli_fail(&err, a.json);
    if (a.json) {
        char *json = NULL;
        code = enr_lint_report_json(report, &json, &err);
        if (code != ENR_OK) {
            enr_lint_report_free(report);
            return cli_fail(&err, true);
        }
        fputs(json, stdout);
        free(json);
    } else {
        size_t n = enr_lint_report_count(report);
        for (size_t i = 0; i < n; i++) {
            const enr_finding *f = enr_lint_report_get(report, i);
            printf("%s: %s: %s [%s]\n", path, enr_severity_name(f->severity), f->message, f->id);
        }
        if (n == 0)
            printf("%s: no findings\n", path);
    }
    int worst = enr_lint_report_worst(report);
    enr_lint_report_free(report);
    return worst >= (int)fail_on ? CLI_EXIT_FINDING : CLI_EXIT_OK;
}
#endif

int cli_csr(int argc, char **argv)
{
    if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
        fputs(CSR_HELP, argc < 2 ? stderr : stdout);
        return argc < 2 ? CLI_EXIT_USAGE : CLI_EXIT_OK;
    }
    const char *verb = argv[1];
    if (strcmp(verb, "new") == 0)
        return csr_new(argc - 1, argv + 1);
    if (strcmp(verb, "show") == 0)
        return csr_show(argc - 1, argv + 1);
    if (strcmp(verb, "verify") == 0)
        return csr_verify(argc - 1, argv + 1);
#ifndef ENROLL_CLI_DEVICE
    if (strcmp(verb, "lint") == 0)
        return csr_lint(argc - 1, argv + 1);
#endif
    return cli_usage("csr", "unknown verb '%s' (" CSR_VERBS ")", verb);
}
