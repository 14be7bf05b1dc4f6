/* enroll key new | show */
#include <getopt.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/cli.h"
#include "enroll/pubkey.h"
#include "enroll/signer.h"

static const char KEY_HELP[] =
    "Usage: enroll key new --type TYPE --out FILE [--pass-file F] [--force] [--progress] [--json]\n"
    "       enroll key new --type TYPE --key 'pkcs11:token=T;object=LABEL' [--module SO]\n"
    "                      [--pin-file F] [--force] [--progress] [--json]\n"
    "       enroll key show FILE|pkcs11:URI [--pass-file F] [--module SO] [--pin-file F] [--json]\n"
    "\n"
    "new   Generates a key pair. In a file: PKCS#8 PEM, created with mode 0600 through a\n"
    "      temporary file, fsync and rename; encrypted with AES-256 when --pass-file is given.\n"
    "      In a PKCS#11 token: generated inside the token (sensitive, not extractable); the\n"
    "      private key never leaves it.\n"
    "show  Prints the key's type, size and the SHA-256 of its public key (SPKI), the\n"
    "      fingerprint `enroll csr show` and `enroll match` print too.\n"
    "\n"
    "Options:\n"
    "  --type TYPE      ec-p256 (default), ec-p384, rsa-2048, rsa-3072, rsa-4096, ed25519\n"
    "                   (tokens: EC and RSA only)\n"
    "  --out FILE       where to write a file key\n"
    "  --key URI        RFC 7512 pkcs11: URI naming the token and the new object (label/id)\n"
    "  --module SO      the PKCS#11 module (else the URI's module-path, else\n"
    "                   $ENROLL_PKCS11_MODULE)\n"
    "  --pin-file F     the token user PIN, first line of F (else the URI's pin-source, else\n"
    "                   $ENROLL_PKCS11_PIN). PINs are never accepted on the command line.\n"
    "  --pass-file F    passphrase for an encrypted key file, first line of F\n"
    "  --force          replace an existing file or token object\n"
    "  --progress       show progress on stderr (\"generating rsa-4096 key.... done\"): the\n"
    "                   default when stderr is a terminal; never on stdout, so --json stays clean\n"
    "  --json           machine-readable output\n"
    "\n"
    "Examples:\n"
    "  enroll key new --type ec-p256 --out device.key\n"
    "  enroll key new --type rsa-4096 --out server.key --progress   # takes seconds\n"
    "  enroll key new --type ec-p256 --key 'pkcs11:token=dev;object=devkey' \\\n"
    "      --module /usr/lib/softhsm/libsofthsm2.so --pin-file pin.txt\n"
    "  enroll key show device.key --json\n";

enum { OPT_TYPE = 1, OPT_OUT, OPT_KEY, OPT_MODULE, OPT_PIN_FILE, OPT_PASS_FILE, OPT_FORCE, OPT_PROGRESS,
       OPT_JSON, OPT_HELP };

static const struct option KEY_OPTIONS[] = {
    {"type", required_argument, NULL, OPT_TYPE},       {"out", required_argument, NULL, OPT_OUT},
    {"key", required_argument, NULL, OPT_KEY},         {"module", required_argument, NULL, OPT_MODULE},
    {"pin-file", required_argument, NULL, OPT_PIN_FILE}, {"pass-file", required_argument, NULL, OPT_PASS_FILE},
    {"force", no_argument, NULL, OPT_FORCE},           {"progress", no_argument, NULL, OPT_PROGRESS},
    {"json", no_argument, NULL, OPT_JSON},
    {"help", no_argument, NULL, OPT_HELP},             {NULL, 0, NULL, 0},
};

typedef struct key_args {
    const char *type, *out, *key, *module, *pin_file, *pass_file;
    bool force, progress, json, help;
} key_args;

static int parse_key_args(const char *cmd, int argc, char **argv, key_args *a)
{
    memset(a, 0, sizeof *a);
    optind = 0;
    opterr = 0;
    int c;
    while ((c = getopt_long(argc, argv, ":h", KEY_OPTIONS, NULL)) != -1) {
        switch (c) {
        case OPT_TYPE: a->type = optarg; break;
        case OPT_OUT: a->out = optarg; break;
        case OPT_KEY: a->key = optarg; break;
        case OPT_MODULE: a->module = optarg; break;
        case OPT_PIN_FILE: a->pin_file = optarg; break;
        case OPT_PASS_FILE: a->pass_file = optarg; break;
        case OPT_FORCE: a->force = true; break;
        case OPT_PROGRESS: a->progress = true; break;
        case OPT_JSON: a->json = true; break;
        case OPT_HELP:
        case 'h': a->help = true; break;
        case ':': return cli_usage(cmd, "option %s needs a value", argv[optind - 1]);
        default: return cli_usage(cmd, "unknown option %s", argv[optind - 1]);
        }
    }
    return CLI_EXIT_OK;
}

/* Prints a description of the signer's key (and token facts) as text or JSON. */
static int report_key(const char *where, enr_signer *signer, const char *action, bool json)
{
    enr_error err;
    enr_pubkey_info info;
    if (enr_pubkey_describe(enr_signer_public_key(signer), &info, &err) != ENR_OK)
        return cli_fail(&err, json);
    enr_signer_token_facts facts;
    if (enr_signer_token_facts_get(signer, &facts, &err) != ENR_OK)
        return cli_fail(&err, json);
    const char *type = enr_pubkey_type_name(&info);
    bool token = enr_signer_is_token(signer);
    if (json) {
        json_t *o = json_object();
        if (action)
            json_object_set_new(o, "action", json_string(action));
        json_object_set_new(o, "location", json_string(where));
        json_object_set_new(o, "storage", json_string(token ? "pkcs11" : "file"));
        json_object_set_new(o, "type", type ? json_string(type) : json_null());
        json_object_set_new(o, "algorithm", json_string(info.algorithm));
        json_object_set_new(o, "bits", json_integer(info.bits));
        if (info.curve[0])
            json_object_set_new(o, "curve", json_string(info.curve));
        json_object_set_new(o, "spki_sha256", json_string(info.spki_sha256_hex));
        if (token) {
            json_object_set_new(o, "sensitive", json_boolean(facts.sensitive));
            json_object_set_new(o, "extractable", json_boolean(facts.extractable));
            json_object_set_new(o, "label", json_string(facts.label));
            json_object_set_new(o, "id", json_string(facts.id_hex));
        }
        cli_print_json(o);
        json_decref(o);
        return CLI_EXIT_OK;
    }
    if (action)
        printf("%s %s key: %s\n", action, type ? type : info.algorithm, where);
    else
        printf("Key: %s\n", where);
    printf("  Type:         %s (%s%s%s, %d bit)\n", type ? type : "-", info.algorithm,
           info.curve[0] ? " " : "", info.curve, info.bits);
    printf("  Storage:      %s\n", token ? "PKCS#11 token" : "file");
    if (token)
        printf("  Token object: label '%s', id %s, sensitive %s, extractable %s\n", facts.label,
               facts.id_hex, facts.sensitive ? "yes" : "no", facts.extractable ? "yes" : "no");
    printf("  SPKI SHA-256: %s\n", info.spki_sha256_hex);
    return CLI_EXIT_OK;
}

/* Dots on stderr while OpenSSL searches for primes: one per 16 candidates
 * and one per prime found, so rsa-4096 visibly works and ec-p256 (no
 * callbacks) prints none. */
static void show_progress(int phase, void *arg)
{
    unsigned *calls = arg;
    if ((phase == 0 && ++*calls % 16 == 0) || phase == 3) {
        fputc('.', stderr);
        fflush(stderr);
    }
}

static int key_new(int argc, char **argv)
{
    key_args a;
    int rc = parse_key_args("key new", argc, argv, &a);
    if (rc != CLI_EXIT_OK)
        return rc;
    if (a.help) {
        fputs(KEY_HELP, stdout);
        return CLI_EXIT_OK;
    }
    if (optind < argc)
        return cli_usage("key new", "unexpected argument '%s'", argv[optind]);
    if ((a.out == NULL) == (a.key == NULL))
        return cli_usage("key new", "give exactly one of --out FILE or --key pkcs11:URI");
    if (a.key != NULL && !enr_key_ref_is_token(a.key))
        return cli_usage("key new", "--key takes a pkcs11: URI; for a file use --out FILE");
    if (a.out != NULL && strcmp(a.out, "-") == 0)
        return cli_usage("key new", "refusing to write a private key to standard output; give --out FILE");
    if (a.key != NULL && a.pass_file != NULL)
        return cli_usage("key new", "--pass-file is for key files; a token key is protected by its PIN");

    enr_error err;
    enr_key_type type = ENR_KEY_EC_P256;
    if (a.type != NULL && enr_key_type_parse(a.type, &type, &err) != ENR_OK)
        return cli_usage("key new", "%s", err.message);

    char *secret = NULL;
    enr_signer *signer = NULL;
    enr_code code;
    if ((code = cli_read_secret(a.key ? a.pin_file : a.pass_file, &secret, &err)) != ENR_OK)
        goto fail;
    /* Progress is for a person watching: on stderr, asked for or when stderr
     * is a terminal; a script capturing stderr sees nothing on success. */
    bool progress = a.progress || isatty(STDERR_FILENO);
    unsigned calls = 0;
    if (progress) {
        fprintf(stderr, "generating %s key%s...", enr_key_type_name(type), a.key ? " in the token" : "");
        fflush(stderr);
    }
    enr_token_options topts = {a.module, secret};
    if (a.key != NULL) {
        /* Inside the token there is no callback: the line, then "done". */
        code = enr_key_generate_token(type, a.key, &topts, a.force, &err);
        if (code == ENR_OK)
            code = enr_signer_open(a.key, NULL, &topts, &signer, &err);
    } else {
        code = enr_key_generate_file_progress(type, a.out, secret, a.force, progress ? show_progress : NULL,
                                              &calls, &err);
        if (code == ENR_OK)
            code = enr_signer_open(a.out, secret, NULL, &signer, &err);
    }
    if (progress)
        fputs(code == ENR_OK ? " done\n" : " failed\n", stderr);
    if (code != ENR_OK)
        goto fail;
    rc = report_key(a.key ? a.key : a.out, signer, "generated", a.json);
    enr_signer_free(signer);
    enr_secret_free(secret);
    return rc;
fail:
    enr_signer_free(signer);
    enr_secret_free(secret);
    return cli_fail(&err, a.json);
}

static int key_show(int argc, char **argv)
{
    key_args a;
    int rc = parse_key_args("key show", argc, argv, &a);
    if (rc != CLI_EXIT_OK)
        return rc;
    if (a.help) {
        fputs(KEY_HELP, stdout);
        return CLI_EXIT_OK;
    }
    if (optind != argc - 1)
        return cli_usage("key show", "give exactly one key file or pkcs11: URI");
    const char *ref = argv[optind];
    enr_error err;
    char *secret = NULL;
    enr_signer *signer = NULL;
    bool token = enr_key_ref_is_token(ref);
    enr_code code = cli_read_secret(token ? a.pin_file : a.pass_file, &secret, &err);
    if (code == ENR_OK) {
        enr_token_options topts = {a.module, secret};
        code = enr_signer_open(ref, token ? NULL : secret, &topts, &signer, &err);
    }
    enr_secret_free(secret);
    if (code != ENR_OK)
        return cli_fail(&err, a.json);
    rc = report_key(ref, signer, NULL, a.json);
    enr_signer_free(signer);
    return rc;
}

int cli_key(int argc, char **argv)
{
    if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
        fputs(KEY_HELP, argc < 2 ? stderr : stdout);
        return argc < 2 ? CLI_EXIT_USAGE : CLI_EXIT_OK;
    }
    if (strcmp(argv[1], "new") == 0)
        return key_new(argc - 1, argv + 1);
    if (strcmp(argv[1], "show") == 0)
        return key_show(argc - 1, argv + 1);
    return cli_usage("key", "unknown verb '%s' (new, show)", argv[1]);
}
