/* enroll ca init | sign | revoke | crl | list */
#include <errno.h>
#include <getopt.h>
#include <jansson.h>
#include <openssl/pem.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/bn.h>
#include <pwd.h>
#include <sys/stat.h>

#include "cli/cli.h"
#include "enroll/admin.h"
#include "enroll/ca.h"
#include "enroll/store.h"
#include "enroll/duration.h"
#include "enroll/input.h"
#include "enroll/name.h"
#include "enroll/pubkey.h"

static const char CA_HELP[] =
    "Usage: enroll ca init --dir DIR --subject DN [--type TYPE] [--validity P10Y] [--pathlen N]\n"
    "                      [--parent DIR [--parent-pass-file F]] [--key pkcs11:URI]\n"
    "                      [--pass-file F] [--crl-url URL] [--aia-url URL]\n"
    "       enroll ca init --dir DIR --import CERT --key FILE|pkcs11:URI [--chain FILE]\n"
    "       enroll ca sign --dir DIR --profile device|server|intermediate CSR [--out FILE]\n"
    "                      [--chain-out FILE] [--format pem|der|b64-array] [--validity P30D]\n"
    "                      [--cn ID] [--san-allow TYPE:PATTERN]... [--key-types LIST] [--json]\n"
    "       enroll ca revoke --dir DIR SERIAL --reason REASON [--json]\n"
    "       enroll ca crl --dir DIR [--out FILE] [--json]\n"
    "       enroll ca list --dir DIR [--expiring P30D] [--revoked] [--json]\n"
    "\n"
    "init    Makes a CA in DIR: a self-signed root (pathlen 1, 10 years by default), or with\n"
    "        --parent an intermediate signed by that CA (pathlen one lower, 5 years). The key\n"
    "        is DIR/key.pem (0600) or, with --key pkcs11:URI, a key in a token (made there\n"
    "        if absent; it never leaves the token). --import adopts an existing CA. A DIR\n"
    "        that holds a CA is refused (exit 1) and --force is refused (exit 2): replacing a\n"
    "        CA would lose its record of what it issued and revoked.\n"
    "sign    Issues a certificate from a CSR. The CSR's signature must verify; the profile,\n"
    "        not the request, decides validity, key usage and which names are honoured.\n"
    "        Every certificate is recorded in DIR/issued.jsonl before it is written out.\n"
    "revoke  Records a revocation and writes a fresh CRL (DIR/crl.pem).\n"
    "crl     Writes a new CRL (v2, CRL number, AKI, reasons; valid for 7 days).\n"
    "list    What this CA issued; --expiring P30D: those expiring within 30 days.\n"
    "--json  A report on stdout: sign (serial, subject, issuer, profile, validity, files),\n"
    "        revoke (serial, reason, CRL), crl (issuer, CRL number, dates, entries); sign and\n"
    "        crl then need --out FILE.\n"
    "A CA directory added to enrolld's store (`enroll admin ca add`) has two records, its\n"
    "own and the store's (what enrolld issued; profile \"enrolld\" in list), and these\n"
    "commands see both: list shows both, revoke finds the serial in either (in the store\n"
    "it is audited there), and every CRL lists every revocation either holds. A key\n"
    "revoked for keyCompromise is then refused by enrolld too. DIR/store.json says which\n"
    "store; when it cannot be opened here the command says what to run instead.\n"
    "\n"
    "Profiles: device (clientAuth, digitalSignature, 1 year, no SANs unless --san-allow),\n"
    "  server (serverAuth, DNS/IP SANs), intermediate (CA, keyCertSign+cRLSign, 5 years).\n"
    "Options:\n"
    "  --validity D       ISO 8601 duration: P30D, P1Y, PT12H (never beyond the CA's own expiry)\n"
    "  --cn ID            the certificate's subject is CN=ID alone, and the CSR's CN must be ID\n"
    "  --san-allow P      allow requested SANs matching P, e.g. 'DNS:*.devices.example.com'\n"
    "  --key-types LIST   e.g. ec-p256,ec-p384 (default: every type enroll makes)\n"
    "  --format F         pem (default), der, or b64-array: a JSON array of base64 DER strings\n"
    "                     [leaf, intermediate..., root], the shape DPS returns\n"
    "  --reason R         unspecified keyCompromise cACompromise affiliationChanged superseded\n"
    "                     cessationOfOperation certificateHold privilegeWithdrawn aACompromise\n"
    "  --pass-file F      passphrase of DIR/key.pem; --module SO, --pin-file F for token keys\n"
    "\n"
    "Examples:\n"
    "  enroll ca init --dir root --subject '/O=Acme/CN=Acme Root CA'\n"
    "  enroll ca init --dir issuing --parent root --subject '/O=Acme/CN=Acme Devices CA'\n"
    "  enroll ca sign --dir issuing --profile device --cn dev-001 device.csr --out device.crt \\\n"
    "      --chain-out device-chain.pem\n"
    "  enroll ca revoke --dir issuing 5A0F... --reason keyCompromise\n";

enum { OPT_DIR = 1, OPT_SUBJECT, OPT_TYPE, OPT_VALIDITY, OPT_PATHLEN, OPT_PARENT, OPT_PARENT_PASS,
       OPT_KEY, OPT_MODULE, OPT_PIN_FILE, OPT_PASS_FILE, OPT_IMPORT, OPT_CHAIN, OPT_CRL_URL,
       OPT_AIA_URL, OPT_PROFILE, OPT_OUT, OPT_CHAIN_OUT, OPT_FORMAT, OPT_CN, OPT_SAN_ALLOW,
       OPT_KEY_TYPES, OPT_REASON, OPT_EXPIRING, OPT_REVOKED, OPT_FORCE, OPT_JSON, OPT_HELP };

static const struct option CA_OPTIONS[] = {
    {"dir", required_argument, NULL, OPT_DIR},
    {"subject", required_argument, NULL, OPT_SUBJECT},
    {"type", required_argument, NULL, OPT_TYPE},
    {"validity", required_argument, NULL, OPT_VALIDITY},
    {"pathlen", required_argument, NULL, OPT_PATHLEN},
    {"parent", required_argument, NULL, OPT_PARENT},
    {"parent-pass-file", required_argument, NULL, OPT_PARENT_PASS},
    {"key", required_argument, NULL, OPT_KEY},
    {"module", required_argument, NULL, OPT_MODULE},
    {"pin-file", required_argument, NULL, OPT_PIN_FILE},
    {"pass-file", required_argument, NULL, OPT_PASS_FILE},
    {"import", required_argument, NULL, OPT_IMPORT},
    {"chain", required_argument, NULL, OPT_CHAIN},
    {"crl-url", required_argument, NULL, OPT_CRL_URL},
    {"aia-url", required_argument, NULL, OPT_AIA_URL},
    {"profile", required_argument, NULL, OPT_PROFILE},
    {"out", required_argument, NULL, OPT_OUT},
    {"chain-out", required_argument, NULL, OPT_CHAIN_OUT},
    {"format", required_argument, NULL, OPT_FORMAT},
    {"cn", required_argument, NULL, OPT_CN},
    {"san-allow", required_argument, NULL, OPT_SAN_ALLOW},
    {"key-types", required_argument, NULL, OPT_KEY_TYPES},
    {"reason", required_argument, NULL, OPT_REASON},
    {"expiring", required_argument, NULL, OPT_EXPIRING},
    {"revoked", no_argument, NULL, OPT_REVOKED},
    {"force", no_argument, NULL, OPT_FORCE},
    {"json", no_argument, NULL, OPT_JSON},
    {"help", no_argument, NULL, OPT_HELP},
    {NULL, 0, NULL, 0},
};

#define MAX_SAN_ALLOW 32

typedef struct ca_args {
    const char *dir, *subject, *type, *validity, *pathlen, *parent, *parent_pass, *key, *module,
        *pin_file, *pass_file, *import, *chain, *crl_url, *aia_url, *profile, *out, *chain_out,
        *format, *cn, *key_types, *reason, *expiring;
    const char *san_allow[MAX_SAN_ALLOW];
    size_t san_allow_count;
    bool revoked, force, json, help;
} ca_args;

static int parse_ca_args(const char *cmd, int argc, char **argv, ca_args *a)
{
    memset(a, 0, sizeof *a);
    optind = 0;
    opterr = 0;
    int c;
    while ((c = getopt_long(argc, argv, ":h", CA_OPTIONS, NULL)) != -1) {
        switch (c) {
        case OPT_DIR: a->dir = optarg; break;
        case OPT_SUBJECT: a->subject = optarg; break;
        case OPT_TYPE: a->type = optarg; break;
        case OPT_VALIDITY: a->validity = optarg; break;
        case OPT_PATHLEN: a->pathlen = optarg; break;
        case OPT_PARENT: a->parent = optarg; break;
        case OPT_PARENT_PASS: a->parent_pass = optarg; break;
        case OPT_KEY: a->key = optarg; break;
        case OPT_MODULE: a->module = optarg; break;
        case OPT_PIN_FILE: a->pin_file = optarg; break;
        case OPT_PASS_FILE: a->pass_file = optarg; break;
        case OPT_IMPORT: a->import = optarg; break;
        case OPT_CHAIN: a->chain = optarg; break;
        case OPT_CRL_URL: a->crl_url = optarg; break;
        case OPT_AIA_URL: a->aia_url = optarg; break;
        case OPT_PROFILE: a->profile = optarg; break;
        case OPT_OUT: a->out = optarg; break;
        case OPT_CHAIN_OUT: a->chain_out = optarg; break;
        case OPT_FORMAT: a->format = optarg; break;
        case OPT_CN: a->cn = optarg; break;
        case OPT_SAN_ALLOW:
            if (a->san_allow_count == MAX_SAN_ALLOW)
                return cli_usage(cmd, "too many --san-allow options (at most %d)", MAX_SAN_ALLOW);
            a->san_allow[a->san_allow_count++] = optarg;
            break;
        case OPT_KEY_TYPES: a->key_types = optarg; break;
        case OPT_REASON: a->reason = optarg; break;
        case OPT_EXPIRING: a->expiring = optarg; break;
        case OPT_REVOKED: a->revoked = true; break;
        case OPT_FORCE: a->force = true; break;
        case OPT_JSON: a->json = true; break;
        case OPT_HELP:
        case 'h': a->help = true; break;
        case ':': return cli_usage(cmd, "option %s needs a value", argv[optind - 1]);
        default: return cli_usage(cmd, "unknown option %s", argv[optind - 1]);
        }
    }
    if (a->help) {
        fputs(CA_HELP, stdout);
        return -1;
    }
    if (a->dir == NULL)
        return cli_usage(cmd, "--dir DIR is required");
    return CLI_EXIT_OK;
}

/* Secrets for opening a CA: passphrase and PIN, freed by secrets_free. */
typedef struct ca_secrets {
    char *pass, *pin, *parent_pass;
    enr_token_options token;
} ca_secrets;

static enr_code secrets_read(const ca_args *a, ca_secrets *s, enr_error *err)
{
    memset(s, 0, sizeof *s);
    enr_code rc = cli_read_secret(a->pass_file, &s->pass, err);
    if (rc == ENR_OK)
        rc = cli_read_secret(a->pin_file, &s->pin, err);
    if (rc == ENR_OK)
        rc = cli_read_secret(a->parent_pass, &s->parent_pass, err);
    s->token.module_path = a->module;
    s->token.pin = s->pin;
    return rc;
}

static void secrets_free(ca_secrets *s)
{
    enr_secret_free(s->pass);
    enr_secret_free(s->pin);
    enr_secret_free(s->parent_pass);
}

static int ca_init(int argc, char **argv)
{
    ca_args a;
    int rc = parse_ca_args("ca init", argc, argv, &a);
    if (rc != CLI_EXIT_OK)
        return rc < 0 ? CLI_EXIT_OK : rc;
    if (optind < argc)
        return cli_usage("ca init", "unexpected argument '%s'", argv[optind]);
    if (a.import != NULL && (a.key == NULL || a.subject || a.parent))
        return cli_usage("ca init", "--import CERT needs --key (its key) and takes no --subject or --parent");
    /* --force is parsed for every ca verb; init must not take it silently.
     * Replacing a CA would drop the record of what it issued and revoked
     * (DIR/issued.jsonl, the CRL number), which nothing can rebuild. */
    if (a.force)
        return cli_usage("ca init", "--force is refused: a CA is never replaced in place (its record of "
                                    "issued and revoked certificates would be lost); move %s aside first",
                         a.dir ? a.dir : "DIR");
    if (a.import == NULL && a.subject == NULL)
        return cli_usage("ca init", "--subject is required (e.g. --subject '/O=Acme/CN=Acme Root CA')");
    enr_error err;
    enr_ca_init_options o = {0};
    o.dir = a.dir;
    o.subject = a.subject;
    o.key_type = ENR_KEY_EC_P256;
    if (a.type && enr_key_type_parse(a.type, &o.key_type, &err) != ENR_OK)
        return cli_usage("ca init", "%s", err.message);
    o.validity = a.validity;
    enr_duration d;
    if (a.validity && enr_duration_parse(a.validity, &d, &err) != ENR_OK)
        return cli_usage("ca init", "%s", err.message);
    o.pathlen = -1;
    if (a.pathlen) {
        char *end;
        long v = strtol(a.pathlen, &end, 10);
        if (*end || end == a.pathlen || v < 0 || v > 16)
            return cli_usage("ca init", "--pathlen '%s' is not a number from 0 to 16", a.pathlen);
        o.pathlen = (int)v;
    }
    o.parent_dir = a.parent;
    o.key_ref = a.import ? NULL : a.key;
    o.import_cert = a.import;
    o.import_key = a.import ? a.key : NULL;
    o.import_chain = a.chain;
    o.crl_url = a.crl_url;
    o.aia_url = a.aia_url;
    ca_secrets s;
    enr_code code = secrets_read(&a, &s, &err);
    o.passphrase = s.pass;
    o.parent_passphrase = s.parent_pass;
    o.token = &s.token;
    if (code == ENR_OK)
        code = enr_ca_init(&o, &err);
    enr_ca *ca = NULL;
    if (code == ENR_OK)
        code = enr_ca_open(a.dir, s.pass, &s.token, &ca, &err);
    secrets_free(&s);
    if (code != ENR_OK)
        return cli_fail(&err, a.json);
    /* A key file anyone who reads it can issue with: said every time. */
    bool key_in_clear = a.import == NULL && a.key == NULL && a.pass_file == NULL;
    if (key_in_clear)
        fprintf(stderr,
                "%s: warning: %s/key.pem is not encrypted (only its 0600 mode protects it): whoever reads it can "
                "issue as this CA. Give --pass-file F to encrypt it, or keep the key in a token (--key pkcs11:URI)\n",
                cli_program, a.dir);
    X509 *cert = enr_ca_cert(ca);
    char *subject = enr_name_format(X509_get_subject_name(cert));
    char *issuer = enr_name_format(X509_get_issuer_name(cert));
    long pathlen = X509_get_pathlen(cert);
    char until[32];
    enr_time_format(enr_asn1_time_to_time_t(X509_get0_notAfter(cert)), until, sizeof until);
    if (a.json) {
        json_t *o2 = json_pack("{s:s,s:s,s:s,s:I,s:s,s:s,s:b}", "dir", a.dir, "subject", subject ? subject : "",
                               "issuer", issuer ? issuer : "", "pathlen", (json_int_t)pathlen, "not_after", until,
                               "kind", a.import ? "imported" : a.parent ? "intermediate" : "root",
                               "key_in_clear", key_in_clear);
        cli_print_json(o2);
        json_decref(o2);
    } else {
        printf("%s CA in %s\n  Subject:  %s\n  Issuer:   %s\n  Pathlen:  %ld\n  Expires:  %s\n",
               a.import ? "imported" : a.parent ? "intermediate" : "root", a.dir, subject, issuer, pathlen,
               until);
    }
    free(subject);
    free(issuer);
    enr_ca_free(ca);
    return CLI_EXIT_OK;
}

static enr_code open_ca(const ca_args *a, enr_ca **ca, enr_error *err)
{
    ca_secrets s;
    enr_code code = secrets_read(a, &s, err);
    if (code == ENR_OK)
        code = enr_ca_open(a->dir, s.pass, &s.token, ca, err);
    secrets_free(&s);
    return code;
}

/* A CA directory attached to enrolld's store (`enroll admin ca add`): the
 * store is the second record of what the CA issued and revoked, and every
 * command here sees both. NULL *store: not attached. */
typedef struct attachment {
    enr_store *store;
    char location[ENR_CA_STORE_LOCATION_MAX + 1];
    char name[129];
} attachment;

static enr_code open_attachment(enr_ca *ca, attachment *at, enr_error *err)
{
    memset(at, 0, sizeof *at);
    enr_code rc = enr_ca_attachment(ca, at->location, at->name, err);
    if (rc == ENR_E_NOTFOUND)
        return ENR_OK;
    if (rc != ENR_OK)
        return rc;
    /* Never create a store here: the note points at one that exists (a
     * database names itself: a wrong one does not connect). */
    char db[ENR_CA_STORE_LOCATION_MAX + 32];
    struct stat st;
    bool database = enr_store_url_is_postgres(at->location);
    snprintf(db, sizeof db, "%s/enroll.db", at->location);
    if ((!database && stat(db, &st) != 0) || (rc = enr_store_open(at->location, &at->store, err)) != ENR_OK) {
        if (rc == ENR_OK)
            rc = enr_error_set(err, ENR_E_IO, "%s: %s", db, strerror(errno));
        enr_error_prefix(err,
                         "%s is attached to enrolld's store at %s (CA '%s'), which holds part of its record and "
                         "cannot be opened here; use `enroll admin cert list|cert revoke|crl --ca %s %s %s`",
                         enr_ca_dir(ca), at->location, at->name, at->name, database ? "--db" : "--data",
                         at->location);
        return rc;
    }
    enr_admin_attach_ca(at->store, ca);
    return ENR_OK;
}

static void close_attachment(attachment *at)
{
    enr_store_close(at->store);
    at->store = NULL;
}

static enr_code pem_of(X509 *cert, STACK_OF(X509) *rest, char **out, size_t *len, enr_error *err)
{
    BIO *bio = BIO_new(BIO_s_mem());
    int ok = bio && PEM_write_bio_X509(bio, cert);
    for (int i = 0; ok && i < sk_X509_num(rest); i++)
        ok = PEM_write_bio_X509(bio, sk_X509_value(rest, i));
    if (!ok) {
        BIO_free(bio);
        return enr_error_openssl(err, ENR_E_CRYPTO, "cannot encode certificates");
    }
    char *data;
    long n = BIO_get_mem_data(bio, &data);
    *out = malloc((size_t)n + 1);
    if (*out != NULL) {
        memcpy(*out, data, (size_t)n);
        *len = (size_t)n;
    }
    BIO_free(bio);
    return *out ? ENR_OK : enr_error_set(err, ENR_E_NOMEM, "out of memory");
}

/* ["<leaf b64 DER>", "<intermediate>", ..., "<root>"]: the DPS shape. */
static enr_code b64_array_of(X509 *cert, STACK_OF(X509) *rest, char **out, size_t *len,
                             enr_error *err)
{
    json_t *arr = json_array();
    for (int i = -1; i < sk_X509_num(rest); i++) {
        X509 *c = i < 0 ? cert : sk_X509_value(rest, i);
        unsigned char *der = NULL;
        int n = i2d_X509(c, &der);
        char *b64 = NULL;
        if (n <= 0 || enr_base64_encode(der, (size_t)n, &b64, err) != ENR_OK) {
            OPENSSL_free(der);
            json_decref(arr);
            return enr_error_openssl(err, ENR_E_CRYPTO, "cannot encode a certificate");
        }
        json_array_append_new(arr, json_string(b64));
        free(b64);
        OPENSSL_free(der);
    }
    char *text = json_dumps(arr, JSON_INDENT(2));
    json_decref(arr);
    if (text == NULL)
        return enr_error_set(err, ENR_E_NOMEM, "out of memory");
    size_t n = strlen(text);
    char *nl = realloc(text, n + 2);
    if (nl == NULL) {
        free(text);
        return enr_error_set(err, ENR_E_NOMEM, "out of memory");
    }
    nl[n] = '\n';
    nl[n + 1] = '\0';
    *out = nl;
    *len = n + 1;
    return ENR_OK;
}

static enr_code build_profile(const ca_args *a, enr_profile **out, enr_error *err)
{
    enr_code rc = enr_profile_new(a->profile, out, err);
    if (rc == ENR_OK && a->validity)
        rc = enr_profile_set_validity(*out, a->validity, err);
    if (rc == ENR_OK && a->cn)
        rc = enr_profile_force_cn(*out, a->cn, err);
    for (size_t i = 0; rc == ENR_OK && i < a->san_allow_count; i++)
        rc = enr_profile_allow_san(*out, a->san_allow[i], err);
    if (rc == ENR_OK && a->key_types)
        rc = enr_profile_set_key_types(*out, a->key_types, err);
    return rc;
}

/* One blocklist for an attached CA: a key revoked for keyCompromise in
 * either record is never certified again, here as in enrolld. */
static enr_code refuse_compromised_key(enr_store *store, const enr_csr *csr, enr_error *err)
{
    char spki[ENR_STORE_SPKI_HEX + 1];
    bool compromised = false;
    enr_code rc = enr_spki_sha256_hex(X509_REQ_get_X509_PUBKEY(enr_csr_x509_req(csr)), spki, err);
    if (rc == ENR_OK)
        rc = enr_store_key_compromised(store, spki, &compromised, err);
    if (rc == ENR_OK && compromised)
        rc = enr_error_refuse(err, ENR_R_KEY_COMPROMISED,
                              "refused: the request's key belongs to a certificate revoked for keyCompromise "
                              "(SPKI SHA-256 %s); the device needs a new key pair",
                              spki);
    return rc;
}

static int ca_sign(int argc, char **argv)
{
    ca_args a;
    int rc = parse_ca_args("ca sign", argc, argv, &a);
    if (rc != CLI_EXIT_OK)
        return rc < 0 ? CLI_EXIT_OK : rc;
    if (optind != argc - 1)
        return cli_usage("ca sign", "give exactly one CSR file");
    if (a.json && (a.out == NULL || strcmp(a.out, "-") == 0 || (a.chain_out && strcmp(a.chain_out, "-") == 0)))
        return cli_usage("ca sign", "--json reports on standard output: write the certificate to a file (--out FILE)");
    if (a.profile == NULL)
        return cli_usage("ca sign", "--profile device|server|intermediate is required");
    const char *format = a.format ? a.format : "pem";
    if (strcmp(format, "pem") && strcmp(format, "der") && strcmp(format, "b64-array"))
        return cli_usage("ca sign", "--format '%s': choose pem, der or b64-array", format);
    enr_error err;
    enr_profile *profile = NULL;
    if (build_profile(&a, &profile, &err) != ENR_OK) {
        enr_profile_free(profile);
        return cli_usage("ca sign", "%s", err.message);
    }
    /* Outputs are checked before anything is issued: an issued certificate
     * that cannot be written would be recorded but lost to its requester. */
    const char *outs[2] = {a.out, a.chain_out};
    for (int i = 0; i < 2; i++) {
        if (outs[i] == NULL || strcmp(outs[i], "-") == 0)
            continue;
        char dir_of[4096];
        snprintf(dir_of, sizeof dir_of, "%s", outs[i]);
        char *slash = strrchr(dir_of, '/');
        if (slash == dir_of)
            slash[1] = '\0';
        else if (slash != NULL)
            *slash = '\0';
        else
            snprintf(dir_of, sizeof dir_of, ".");
        if (access(dir_of, W_OK) != 0) {
            enr_profile_free(profile);
            enr_error_set(&err, ENR_E_IO, "%s: cannot write into %s: %s (nothing was issued)", outs[i], dir_of,
                          strerror(errno));
            return cli_fail(&err, a.json);
        }
    }
    /* Refuse to clobber outputs before anything is issued. */
    if (!a.force && ((a.out && strcmp(a.out, "-") && access(a.out, F_OK) == 0) ||
                     (a.chain_out && access(a.chain_out, F_OK) == 0))) {
        enr_profile_free(profile);
        enr_error_set(&err, ENR_E_EXISTS, "%s already exists; refusing to overwrite it (use --force)",
                      a.out && access(a.out, F_OK) == 0 ? a.out : a.chain_out);
        return cli_fail(&err, a.json);
    }
    unsigned char *data = NULL;
    size_t len = 0;
    enr_csr *csr = NULL;
    enr_ca *ca = NULL;
    X509 *cert = NULL;
    char *out = NULL, *chain_text = NULL;
    size_t out_len = 0, chain_len = 0;
    enr_code code = cli_read_input(argv[optind], &data, &len, &err);
    if (code == ENR_OK && (code = enr_csr_parse(data, len, &csr, &err)) != ENR_OK)
        enr_error_prefix(&err, "%s", argv[optind]);
    if (code == ENR_OK)
        code = open_ca(&a, &ca, &err);
    attachment at = {0};
    if (code == ENR_OK)
        code = open_attachment(ca, &at, &err);
    if (code == ENR_OK && at.store != NULL)
        code = refuse_compromised_key(at.store, csr, &err);
    close_attachment(&at);
    if (code == ENR_OK && (code = enr_ca_issue(ca, csr, profile, 0, &cert, &err)) != ENR_OK)
        enr_error_prefix(&err, "%s", argv[optind]);
    if (code == ENR_OK) {
        STACK_OF(X509) *chain = enr_ca_chain(ca);
        if (strcmp(format, "b64-array") == 0)
            code = b64_array_of(cert, chain, &out, &out_len, &err);
        else if (strcmp(format, "der") == 0) {
            unsigned char *der = NULL;
            int n = i2d_X509(cert, &der);
            out = n > 0 ? malloc((size_t)n) : NULL;
            if (out) {
                memcpy(out, der, (size_t)n);
                out_len = (size_t)n;
            } else
                code = enr_error_set(&err, ENR_E_NOMEM, "out of memory");
            OPENSSL_free(der);
        } else
            code = pem_of(cert, NULL, &out, &out_len, &err);
        if (code == ENR_OK && a.chain_out)
            code = pem_of(cert, chain, &chain_text, &chain_len, &err);
    }
    bool issued = code == ENR_OK;
    if (code == ENR_OK)
        code = cli_write(a.out, out, out_len, 0644, a.force, &err);
    if (code == ENR_OK && a.chain_out)
        code = cli_write(a.chain_out, chain_text, chain_len, 0644, a.force, &err);
    if (issued && code != ENR_OK) {
        char *hex = NULL;
        BIGNUM *bn = ASN1_INTEGER_to_BN(X509_get0_serialNumber(cert), NULL);
        hex = bn ? BN_bn2hex(bn) : NULL;
        BN_free(bn);
        enr_error_prefix(&err, "certificate %s was issued and recorded in %s/issued.jsonl, but not written",
                         hex ? hex : "?", a.dir);
        OPENSSL_free(hex);
    }
    if (code == ENR_OK) {
        char *serial = NULL;
        BIGNUM *bn = ASN1_INTEGER_to_BN(X509_get0_serialNumber(cert), NULL);
        serial = bn ? BN_bn2hex(bn) : NULL;
        BN_free(bn);
        char *subject = enr_name_format(X509_get_subject_name(cert));
        char *issuer = enr_name_format(X509_get_issuer_name(cert));
        char from[32], until[32];
        enr_time_format(enr_asn1_time_to_time_t(X509_get0_notBefore(cert)), from, sizeof from);
        enr_time_format(enr_asn1_time_to_time_t(X509_get0_notAfter(cert)), until, sizeof until);
        fprintf(stderr, "issued %s certificate, serial %s, to %s, valid until %s\n", enr_profile_name(profile),
                serial ? serial : "?", subject ? subject : "?", until);
        if (a.json) {
            json_t *o = json_pack("{s:s,s:s,s:s,s:s,s:s,s:s}", "serial", serial ? serial : "", "subject",
                                  subject ? subject : "", "issuer", issuer ? issuer : "", "profile",
                                  enr_profile_name(profile), "not_before", from, "not_after", until);
            if (o != NULL && a.out != NULL && strcmp(a.out, "-") != 0)
                json_object_set_new(o, "out", json_string(a.out));
            if (o != NULL && a.chain_out != NULL && strcmp(a.chain_out, "-") != 0)
                json_object_set_new(o, "chain_out", json_string(a.chain_out));
            cli_print_json(o);
            json_decref(o);
        }
        OPENSSL_free(serial);
        free(subject);
        free(issuer);
    }
    free(out);
    free(chain_text);
    free(data);
    X509_free(cert);
    enr_csr_free(csr);
    enr_ca_free(ca);
    enr_profile_free(profile);
    return code == ENR_OK ? CLI_EXIT_OK : cli_fail(&err, a.json);
}

/* Is `serial_hex` in the directory's own index? The entry is copied out. */
static enr_code find_in_index(enr_ca *ca, const char *serial_hex, enr_issued *out, bool *found, enr_error *err)
{
    *found = false;
    enr_issued *items = NULL;
    size_t count = 0;
    BIGNUM *want = NULL, *have = NULL;
    enr_code rc = enr_ca_list(ca, &items, &count, err);
    int digits = rc == ENR_OK ? BN_hex2bn(&want, serial_hex) : 0;
    if (rc == ENR_OK && (digits == 0 || (size_t)digits != strlen(serial_hex)))
        rc = enr_error_set(err, ENR_E_USAGE, "'%s' is not a hexadecimal serial number", serial_hex);
    for (size_t i = 0; rc == ENR_OK && i < count && !*found; i++)
        if (BN_hex2bn(&have, items[i].serial) && BN_cmp(have, want) == 0) {
            *out = items[i];
            *found = true;
        }
    BN_free(want);
    BN_free(have);
    free(items);
    return rc;
}

static void actor_of(char *actor, size_t cap)
{
    const struct passwd *pw = getpwuid(geteuid());
    snprintf(actor, cap, "enroll ca revoke, user %s", pw != NULL ? pw->pw_name : "?");
}

/* A serial of an attached CA that enrolld issued: revoked in the store (the
 * admin library's cert.revoke: audited, key blocked for keyCompromise),
 * then the directory's CRL rewritten with it. */
static enr_code revoke_in_store(enr_ca *ca, attachment *at, const char *serial, const char *reason_name,
                                enr_error *err)
{
    char *issuer = enr_name_format(X509_get_subject_name(enr_ca_cert(ca)));
    json_t *args = issuer ? json_pack("{s:s, s:s, s:s}", "serial", serial, "issuer", issuer, "reason", reason_name)
                          : NULL;
    char *text = args ? json_dumps(args, JSON_COMPACT) : NULL;
    char actor[160], *result = NULL;
    actor_of(actor, sizeof actor);
    enr_admin_context ctx = {.actor = actor};
    enr_code rc = text == NULL ? enr_error_set(err, ENR_E_NOMEM, "out of memory")
                               : enr_admin_execute(at->store, &ctx, "cert.revoke", text, strlen(text), &result, err);
    enr_admin_result_free(result);
    free(text);
    json_decref(args);
    free(issuer);
    if (rc == ENR_E_NOTFOUND)
        enr_error_set(err, ENR_E_NOTFOUND,
                      "serial %s was issued neither from %s nor through enrolld's store at %s (`enroll ca list "
                      "--dir %s` shows both)",
                      serial, enr_ca_dir(ca), at->location, enr_ca_dir(ca));
    /* With our passphrase or PIN: the admin library's own republication
     * may not have been able to open the key. */
    return rc == ENR_OK ? enr_ca_crl(ca, 0, NULL, err) : rc;
}

static int ca_revoke(int argc, char **argv)
{
    ca_args a;
    int rc = parse_ca_args("ca revoke", argc, argv, &a);
    if (rc != CLI_EXIT_OK)
        return rc < 0 ? CLI_EXIT_OK : rc;
    if (optind != argc - 1)
        return cli_usage("ca revoke", "give exactly one serial number (hex, as `enroll ca list` prints it)");
    enr_error err;
    int reason = 0;
    if (a.reason && enr_revocation_reason_parse(a.reason, &reason, &err) != ENR_OK)
        return cli_usage("ca revoke", "%s", err.message);
    const char *serial = argv[optind];
    enr_ca *ca = NULL;
    attachment at = {0};
    enr_issued own = {0};
    bool in_index = false;
    enr_code code = open_ca(&a, &ca, &err);
    if (code == ENR_OK)
        code = open_attachment(ca, &at, &err);
    bool opened = code == ENR_OK;
    if (code == ENR_OK && at.store != NULL)
        code = find_in_index(ca, serial, &own, &in_index, &err);
    if (code == ENR_OK && at.store != NULL && !in_index)
        code = revoke_in_store(ca, &at, serial, enr_revocation_reason_name(reason), &err);
    else if (code == ENR_OK) {
        code = enr_ca_revoke(ca, serial, reason, 0, &err);
        /* One blocklist: a key compromised here is refused by enrolld too. */
        if (code == ENR_OK && at.store != NULL && reason == 1) {
            char *issuer = enr_name_format(X509_get_subject_name(enr_ca_cert(ca)));
            char actor[160];
            actor_of(actor, sizeof actor);
            enr_audit_event ev = {0};
            snprintf(ev.kind, sizeof ev.kind, "ca.revoke");
            snprintf(ev.outcome, sizeof ev.outcome, "ok");
            snprintf(ev.detail, sizeof ev.detail, "certificate %s from the CA directory revoked: keyCompromise, its key "
                     "blocked (%s)", own.serial, actor);
            code = issuer == NULL ? enr_error_set(&err, ENR_E_NOMEM, "out of memory")
                                  : enr_store_block_key(at.store, own.spki_sha256, issuer, own.serial, 0, &ev, &err);
            if (code != ENR_OK)
                enr_error_prefix(&err, "revoked in %s, but its key could not be blocked in the store", a.dir);
            free(issuer);
        }
    }
    close_attachment(&at);
    enr_ca_free(ca);
    /* Once the CA is open, a NOTFOUND is the answer to "did this CA issue
     * SERIAL?" (exit 1); before, it is a CA directory that is not there (3). */
    if (code != ENR_OK)
        return opened ? cli_fail_lookup(&err, a.json) : cli_fail(&err, a.json);
    fprintf(stderr, "revoked %s (%s); new CRL in %s/crl.pem\n", serial, enr_revocation_reason_name(reason), a.dir);
    if (a.json) {
        char crl[4096];
        snprintf(crl, sizeof crl, "%s/crl.pem", a.dir);
        json_t *o = json_pack("{s:s,s:s,s:s}", "serial", serial, "reason", enr_revocation_reason_name(reason),
                              "crl", crl);
        cli_print_json(o);
        json_decref(o);
    }
    return CLI_EXIT_OK;
}

/* What `ca crl --json` reports: the CRL it wrote (`crl show --json`), and where. */
static enr_code print_crl_json(X509_CRL *crl, const char *out, enr_error *err)
{
    char *text = NULL;
    enr_code rc = enr_crl_describe_json(crl, &text, err);
    json_t *o = rc == ENR_OK ? json_loads(text, 0, NULL) : NULL;
    free(text);
    if (rc == ENR_OK && o == NULL)
        return enr_error_set(err, ENR_E_INTERNAL, "cannot re-read our JSON");
    if (o != NULL)
        json_object_set_new(o, "out", json_string(out));
    cli_print_json(o);
    json_decref(o);
    return rc;
}

static int ca_crl(int argc, char **argv)
{
    ca_args a;
    int rc = parse_ca_args("ca crl", argc, argv, &a);
    if (rc != CLI_EXIT_OK)
        return rc < 0 ? CLI_EXIT_OK : rc;
    if (optind < argc)
        return cli_usage("ca crl", "unexpected argument '%s'", argv[optind]);
    if (a.json && (a.out == NULL || strcmp(a.out, "-") == 0))
        return cli_usage("ca crl", "--json reports on standard output: write the CRL to a file (--out FILE)");
    enr_error err;
    enr_ca *ca = NULL;
    X509_CRL *crl = NULL;
    attachment at = {0};
    enr_code code = open_ca(&a, &ca, &err);
    if (code == ENR_OK)
        code = open_attachment(ca, &at, &err);
    if (code == ENR_OK)
        code = enr_ca_crl(ca, 0, &crl, &err);
    if (code == ENR_OK) {
        BIO *bio = BIO_new(BIO_s_mem());
        if (bio && PEM_write_bio_X509_CRL(bio, crl)) {
            char *pem;
            long n = BIO_get_mem_data(bio, &pem);
            code = cli_write(a.out, pem, (size_t)n, 0644, true, &err);
        } else
            code = enr_error_openssl(&err, ENR_E_CRYPTO, "cannot encode the CRL");
        BIO_free(bio);
    }
    if (code == ENR_OK && a.json)
        code = print_crl_json(crl, a.out, &err);
    X509_CRL_free(crl);
    close_attachment(&at);
    enr_ca_free(ca);
    return code == ENR_OK ? CLI_EXIT_OK : cli_fail(&err, a.json);
}

/* What enrolld issued from an attached CA, after the directory's own. */
static enr_code append_store_issued(enr_ca *ca, enr_store *store, enr_issued **items, size_t *count, enr_error *err)
{
    char *issuer = enr_name_format(X509_get_subject_name(enr_ca_cert(ca)));
    enr_certificate_list certs = {0};
    enr_certificate_filter f = {.issuer = issuer};
    enr_code rc = issuer ? enr_store_list_certificates(store, &f, &certs, err)
                         : enr_error_set(err, ENR_E_NOMEM, "out of memory");
    enr_issued *grown = rc == ENR_OK && certs.count > 0 ? realloc(*items, (*count + certs.count) * sizeof **items)
                                                        : NULL;
    if (rc == ENR_OK && certs.count > 0 && grown == NULL)
        rc = enr_error_set(err, ENR_E_NOMEM, "out of memory");
    for (size_t i = 0; grown != NULL && i < certs.count; i++) {
        const enr_certificate *c = &certs.items[i];
        enr_issued *it = &grown[(*count)++];
        memset(it, 0, sizeof *it);
        snprintf(it->serial, sizeof it->serial, "%s", c->serial);
        snprintf(it->subject, sizeof it->subject, "%s", c->subject);
        snprintf(it->profile, sizeof it->profile, "enrolld");
        snprintf(it->spki_sha256, sizeof it->spki_sha256, "%s", c->spki_sha256);
        it->not_before = c->not_before;
        it->not_after = c->not_after;
        it->issued_at = c->issued_at;
        it->revoked = c->revoked;
        it->reason = c->revocation_reason;
        it->revoked_at = c->revoked_at;
    }
    if (grown != NULL)
        *items = grown;
    enr_certificate_list_free(&certs);
    free(issuer);
    return rc;
}

static int ca_list(int argc, char **argv)
{
    ca_args a;
    int rc = parse_ca_args("ca list", argc, argv, &a);
    if (rc != CLI_EXIT_OK)
        return rc < 0 ? CLI_EXIT_OK : rc;
    if (optind < argc)
        return cli_usage("ca list", "unexpected argument '%s'", argv[optind]);
    enr_error err;
    time_t now = time(NULL), horizon = 0;
    if (a.expiring) {
        enr_duration d;
        if (enr_duration_parse(a.expiring, &d, &err) != ENR_OK)
            return cli_usage("ca list", "%s", err.message);
        horizon = enr_duration_apply(now, &d, 1);
    }
    enr_ca *ca = NULL;
    enr_issued *items = NULL;
    size_t count = 0;
    attachment at = {0};
    enr_code code = enr_ca_open_public(a.dir, &ca, &err);
    if (code == ENR_OK)
        code = enr_ca_list(ca, &items, &count, &err);
    if (code == ENR_OK)
        code = open_attachment(ca, &at, &err);
    if (code == ENR_OK && at.store != NULL)
        code = append_store_issued(ca, at.store, &items, &count, &err);
    close_attachment(&at);
    enr_ca_free(ca);
    if (code != ENR_OK) {
        free(items);
        return cli_fail(&err, a.json);
    }
    json_t *arr = json_array();
    size_t shown = 0;
    for (size_t i = 0; i < count; i++) {
        const enr_issued *it = &items[i];
        if (a.revoked && !it->revoked)
            continue;
        if (a.expiring && (it->revoked || it->not_after < now || it->not_after > horizon))
            continue;
        char na[32];
        enr_time_format(it->not_after, na, sizeof na);
        shown++;
        if (a.json) {
            json_t *o = json_pack("{s:s,s:s,s:s,s:s,s:s,s:b}", "serial", it->serial, "subject", it->subject,
                                  "profile", it->profile, "not_after", na, "spki_sha256", it->spki_sha256,
                                  "revoked", it->revoked);
            if (it->revoked)
                json_object_set_new(o, "reason", json_string(enr_revocation_reason_name(it->reason)));
            json_array_append_new(arr, o);
        } else {
            printf("%-40s  %-12s  %s  %s%s%s\n", it->serial, it->profile, na, it->subject,
                   it->revoked ? "  REVOKED " : "", it->revoked ? enr_revocation_reason_name(it->reason) : "");
        }
    }
    if (a.json) {
        json_dumpf(arr, stdout, JSON_INDENT(2));
        fputc('\n', stdout);
    } else if (shown == 0) {
        printf("(no certificates)\n");
    }
    json_decref(arr);
    free(items);
    return CLI_EXIT_OK;
}

int cli_ca(int argc, char **argv)
{
    if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
        fputs(CA_HELP, argc < 2 ? stderr : stdout);
        return argc < 2 ? CLI_EXIT_USAGE : CLI_EXIT_OK;
    }
    const char *verb = argv[1];
    if (strcmp(verb, "init") == 0)
        return ca_init(argc - 1, argv + 1);
    if (strcmp(verb, "sign") == 0)
        return ca_sign(argc - 1, argv + 1);
    if (strcmp(verb, "revoke") == 0)
        return ca_revoke(argc - 1, argv + 1);
    if (strcmp(verb, "crl") == 0)
        return ca_crl(argc - 1, argv + 1);
    if (strcmp(verb, "list") == 0)
        return ca_list(argc - 1, argv + 1);
    return cli_usage("ca", "unknown verb '%s' (init, sign, revoke, crl, list)", verb);
}
