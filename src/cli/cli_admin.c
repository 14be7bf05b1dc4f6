/* enroll admin ca | policy | group | individual | key | registration | cert | audit:
 * what enrolld serves, edited in its store directly (--data DIR). */
#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <jansson.h>
#include <limits.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509v3.h>
#include <pwd.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "cli/cli.h"
#include "enroll/ca.h"
#include "enroll/cert.h"
#include "enroll/duration.h"
#include "enroll/input.h"
#include "enroll/name.h"
#include "enroll/sas.h"
#include "enroll/signer.h"
#include "enroll/store.h"

/* Where devices are sent when an enrollment names no hub: a local broker. */
#define DEFAULT_HUB "localhost:8883"
#define DEFAULT_KEY_TYPES "ec-p256,ec-p384"
#define SYMMETRIC_KEY_BYTES 32

static const char ADMIN_HELP[] =
    "Usage: enroll admin NOUN VERB --data DIR [options] [--json]\n"
    "\n"
    "Manages what enrolld serves by editing its store directly: DIR is enrolld's data\n"
    "directory (data_dir in its config), holding enroll.db. Safe while enrolld runs.\n"
    "Every change is recorded as an audit event; keys never appear in errors or events.\n"
    "\n"
    "CAs and credential policies:\n"
    "  ca add NAME --ca-dir DIR        an issuing CA (a directory made by `enroll ca init`)\n"
    "  ca upload NAME --cert FILE      a device-attestation (bootstrap) CA: prints a code\n"
    "  ca verify NAME --cert FILE      proof of possession: a certificate with CN = the code\n"
    "  ca list\n"
    "  policy new NAME --validity P30D --renewal-window P7D --ca NAME [--key-types LIST]\n"
    "  policy list\n"
    "Enrollments (who may register, and what they get):\n"
    "  group new ID --policy NAME (--symmetric | --x509-ca NAME...) [--hub HOST[:PORT]]\n"
    "  group list | show ID | disable ID | enable ID\n"
    "  individual new RID --policy NAME (--symmetric | --x509-cert FILE) [--hub HOST[:PORT]]\n"
    "  individual list | show RID | disable RID | enable RID\n"
    "  key show (--group ID | --individual RID)\n"
    "  key derive --group ID --registration-id RID [--secondary]\n"
    "Devices:\n"
    "  registration list [--group ID | --individual RID] [--status S]\n"
    "  registration show RID\n"
    "  registration revoke RID --reason R\n"
    "  cert list [--expiring P7D] [--revoked] [--registration RID] [--issuer DN]\n"
    "  cert revoke --serial HEX [--issuer DN] --reason R\n"
    "  audit list [--registration RID]\n"
    "\n"
    "Every command takes --data DIR, --json (machine-readable output) and --help\n"
    "(`enroll admin group --help` describes the group verbs). Exit codes: 0 done,\n"
    "1 refused (exists, unverified, wrong proof, wrong kind), 2 bad usage, 3 store or file\n"
    "trouble, or no such CA, policy, enrollment, registration or certificate, 4 internal.\n"
    "\n"
    "Example: a symmetric-key group issuing 30-day certificates from an intermediate CA\n"
    "  enroll ca init --dir root --subject '/O=Acme/CN=Acme Root CA'\n"
    "  enroll ca init --dir issuing --parent root --subject '/O=Acme/CN=Acme Devices CA'\n"
    "  enroll admin ca add issuing --ca-dir issuing --data /var/lib/enroll\n"
    "  enroll admin policy new p30 --validity P30D --renewal-window P7D --ca issuing \\\n"
    "      --data /var/lib/enroll\n"
    "  enroll admin group new fleet-a --policy p30 --symmetric --hub mqtt.example.com:8883 \\\n"
    "      --data /var/lib/enroll\n"
    "  enroll admin key derive --group fleet-a --registration-id dev-001 --data /var/lib/enroll\n";

static const char CA_HELP[] =
    "Usage: enroll admin ca add NAME --ca-dir DIR --data DIR [--json]\n"
    "       enroll admin ca upload NAME --cert FILE --data DIR [--json]\n"
    "       enroll admin ca verify NAME --cert FILE --data DIR [--json]\n"
    "       enroll admin ca list --data DIR [--json]\n"
    "\n"
    "add     Registers an issuing CA: a CA directory made by `enroll ca init` (its cert.pem\n"
    "        and chain.pem are read; its key stays where it is, and enrolld opens it from\n"
    "        the directory, whose absolute path is stored). Credential policies name it.\n"
    "upload  Registers a device-attestation (bootstrap) CA: devices whose certificates\n"
    "        chain to it may register in groups that name it. Prints a verification code:\n"
    "        the CA is usable only after its key holder signed a certificate with that code\n"
    "        as its common name (the code is also shown by `ca list` until verified).\n"
    "verify  Checks that certificate (CN = the code, signed by the uploaded CA's key, valid\n"
    "        now) and marks the CA verified.\n"
    "list    Every CA: role, state (issuing, verified, unverified), expiry, subject.\n"
    "\n"
    "Options:\n"
    "  --ca-dir DIR    the CA directory (cert.pem, chain.pem, key or key reference)\n"
    "  --cert FILE     a certificate, PEM, DER or headerless base64\n"
    "\n"
    "Examples:\n"
    "  enroll admin ca add issuing --ca-dir /etc/enroll/issuing --data /var/lib/enroll\n"
    "  enroll admin ca upload factory --cert factory-ca.pem --data /var/lib/enroll\n"
    "  # the factory CA's owner proves possession of its key (with enroll, for example):\n"
    "  enroll key new --out v.key\n"
    "  enroll csr new --key v.key --dn CN=<code> --out v.csr\n"
    "  enroll ca sign --dir factory-ca --profile device --cn <code> v.csr --out v.pem\n"
    "  enroll admin ca verify factory --cert v.pem --data /var/lib/enroll\n";

static const char POLICY_HELP[] =
    "Usage: enroll admin policy new NAME --validity D --renewal-window D --ca NAME\n"
    "                               [--key-types LIST] --data DIR [--json]\n"
    "       enroll admin policy list --data DIR [--json]\n"
    "\n"
    "new   A credential policy: what certificate a device registering under it gets.\n"
    "      Devices renew when now >= notAfter - renewal window, so the window must be\n"
    "      shorter than the validity.\n"
    "list  Every policy.\n"
    "\n"
    "Options:\n"
    "  --validity D        ISO 8601 duration of the certificates: P30D, P1Y, PT12H\n"
    "  --renewal-window D  how long before expiry devices renew: P7D\n"
    "  --ca NAME           the issuing CA (`enroll admin ca add`)\n"
    "  --key-types LIST    device key types accepted (default " DEFAULT_KEY_TYPES "):\n"
    "                      ec-p256 ec-p384 rsa-2048 rsa-3072 rsa-4096 ed25519\n"
    "\n"
    "Examples:\n"
    "  enroll admin policy new p30 --validity P30D --renewal-window P7D --ca issuing \\\n"
    "      --data /var/lib/enroll\n"
    "  enroll admin policy list --data /var/lib/enroll --json\n";

static const char GROUP_HELP[] =
    "Usage: enroll admin group new ID --policy NAME (--symmetric | --x509-ca NAME...)\n"
    "                              [--hub HOST[:PORT]] --data DIR [--json]\n"
    "       enroll admin group list --data DIR [--json]\n"
    "       enroll admin group show|disable|enable ID --data DIR [--json]\n"
    "\n"
    "new      An enrollment group: every device that proves membership may register and\n"
    "         gets a certificate under the policy. --symmetric generates a primary and a\n"
    "         secondary group key (32 random bytes each, base64) and prints them: devices\n"
    "         get keys derived from them (`enroll admin key derive`). --x509-ca admits\n"
    "         devices whose certificates chain to these uploaded, verified bootstrap CAs\n"
    "         (repeat it for several).\n"
    "list     Every group.\n"
    "show     One group (never its keys: `enroll admin key show` prints them).\n"
    "disable  Stops new registrations of the group's devices (their certificates stay\n"
    "         valid until revoked); enable lets them register again.\n"
    "\n"
    "Options:\n"
    "  --policy NAME     the credential policy (`enroll admin policy new`)\n"
    "  --hub HOST[:PORT] the broker devices are sent to (default " DEFAULT_HUB ")\n"
    "\n"
    "Examples:\n"
    "  enroll admin group new fleet-a --policy p30 --symmetric --hub mqtt.example.com:8883 \\\n"
    "      --data /var/lib/enroll\n"
    "  enroll admin group new factory-line --policy p30 --x509-ca factory --data /var/lib/enroll\n"
    "  enroll admin group disable fleet-a --data /var/lib/enroll\n";

static const char INDIVIDUAL_HELP[] =
    "Usage: enroll admin individual new RID --policy NAME (--symmetric | --x509-cert FILE)\n"
    "                                   [--hub HOST[:PORT]] --data DIR [--json]\n"
    "       enroll admin individual list --data DIR [--json]\n"
    "       enroll admin individual show|disable|enable RID --data DIR [--json]\n"
    "\n"
    "new      An individual enrollment: one device, by registration id. --symmetric\n"
    "         generates its primary and secondary keys (printed once here; `enroll admin\n"
    "         key show --individual RID` prints them again); --x509-cert FILE admits the\n"
    "         device presenting exactly this certificate.\n"
    "list     Every individual enrollment.\n"
    "show     One (never its keys).\n"
    "disable  Stops this device from registering, also when it belongs to a group;\n"
    "         enable lets it register again.\n"
    "\n"
    "Options:\n"
    "  --policy NAME     the credential policy (`enroll admin policy new`)\n"
    "  --hub HOST[:PORT] the broker the device is sent to (default " DEFAULT_HUB ")\n"
    "\n"
    "Examples:\n"
    "  enroll admin individual new dev-007 --policy p30 --symmetric --data /var/lib/enroll\n"
    "  enroll admin individual new dev-008 --policy p30 --x509-cert dev-008.pem \\\n"
    "      --data /var/lib/enroll\n"
    "  enroll admin individual disable dev-007 --data /var/lib/enroll\n";

static const char KEY_HELP[] =
    "Usage: enroll admin key show (--group ID | --individual RID) --data DIR [--json]\n"
    "       enroll admin key derive --group ID --registration-id RID [--secondary]\n"
    "                               --data DIR [--json]\n"
    "\n"
    "show    Prints the primary and secondary keys of a symmetric-key enrollment.\n"
    "derive  Prints a device's key: base64(HMAC-SHA256(group key, registration id)),\n"
    "        from the primary group key (the secondary with --secondary). The id is used\n"
    "        exactly as the device sends it: case matters.\n"
    "Both print secrets: run them where no one else reads the terminal. Each use is\n"
    "recorded as an audit event (without the keys).\n"
    "\n"
    "Examples:\n"
    "  enroll admin key show --group fleet-a --data /var/lib/enroll\n"
    "  enroll admin key derive --group fleet-a --registration-id dev-001 --data /var/lib/enroll\n";

static const char REGISTRATION_HELP[] =
    "Usage: enroll admin registration list [--group ID | --individual RID] [--status S]\n"
    "                                      --data DIR [--json]\n"
    "       enroll admin registration show RID --data DIR [--json]\n"
    "       enroll admin registration revoke RID --reason R --data DIR [--json]\n"
    "\n"
    "list    Registered devices, by registration id; --group / --individual: those that\n"
    "        registered through that enrollment; --status: assigning, assigned, failed,\n"
    "        disabled or unassigned.\n"
    "show    One registration and every certificate issued to it.\n"
    "revoke  Revokes every certificate of the registration not revoked yet. The device\n"
    "        can still register again: disable its enrollment to stop that (for one\n"
    "        device of a group, a disabled individual enrollment of its own).\n"
    "\n"
    "Options:\n"
    "  --reason R   unspecified keyCompromise cACompromise affiliationChanged superseded\n"
    "               cessationOfOperation certificateHold privilegeWithdrawn aACompromise\n"
    "\n"
    "Examples:\n"
    "  enroll admin registration list --group fleet-a --data /var/lib/enroll\n"
    "  enroll admin registration revoke dev-001 --reason keyCompromise --data /var/lib/enroll\n";

static const char CERT_HELP[] =
    "Usage: enroll admin cert list [--expiring D] [--revoked] [--registration RID]\n"
    "                              [--issuer DN] --data DIR [--json]\n"
    "       enroll admin cert revoke --serial HEX [--issuer DN] --reason R --data DIR [--json]\n"
    "\n"
    "list    Certificates enrolld issued, oldest first; --expiring P7D: those not revoked\n"
    "        that expire within 7 days (not those expired already); --revoked: revoked ones.\n"
    "revoke  Revokes one certificate. The serial is hex as `openssl x509 -serial` prints\n"
    "        it; --issuer (as `cert list` prints it) is needed only when two issuers\n"
    "        used the same serial.\n"
    "\n"
    "Options:\n"
    "  --reason R   unspecified keyCompromise cACompromise affiliationChanged superseded\n"
    "               cessationOfOperation certificateHold privilegeWithdrawn aACompromise\n"
    "\n"
    "Examples:\n"
    "  enroll admin cert list --expiring P7D --data /var/lib/enroll\n"
    "  enroll admin cert revoke --serial 5A0F3C... --reason superseded --data /var/lib/enroll\n";

static const char AUDIT_HELP[] =
    "Usage: enroll admin audit list [--registration RID] --data DIR [--json]\n"
    "\n"
    "list  Audit events, oldest first: when, what (register, admin.group.create, ...),\n"
    "      which registration, how it ended (ok, rejected, error) and why.\n"
    "\n"
    "Examples:\n"
    "  enroll admin audit list --data /var/lib/enroll\n"
    "  enroll admin audit list --registration dev-001 --data /var/lib/enroll --json\n";

enum { OPT_DATA = 1, OPT_CA_DIR, OPT_CERT, OPT_VALIDITY, OPT_RENEWAL_WINDOW, OPT_CA, OPT_KEY_TYPES,
       OPT_POLICY, OPT_SYMMETRIC, OPT_X509_CA, OPT_X509_CERT, OPT_HUB, OPT_GROUP, OPT_INDIVIDUAL,
       OPT_REGISTRATION_ID, OPT_SECONDARY, OPT_REGISTRATION, OPT_STATUS, OPT_REASON, OPT_ISSUER,
       OPT_SERIAL, OPT_EXPIRING, OPT_REVOKED, OPT_JSON, OPT_HELP };

static const struct option ADMIN_OPTIONS[] = {
    {"data", required_argument, NULL, OPT_DATA},
    {"ca-dir", required_argument, NULL, OPT_CA_DIR},
    {"cert", required_argument, NULL, OPT_CERT},
    {"validity", required_argument, NULL, OPT_VALIDITY},
    {"renewal-window", required_argument, NULL, OPT_RENEWAL_WINDOW},
    {"ca", required_argument, NULL, OPT_CA},
    {"key-types", required_argument, NULL, OPT_KEY_TYPES},
    {"policy", required_argument, NULL, OPT_POLICY},
    {"symmetric", no_argument, NULL, OPT_SYMMETRIC},
    {"x509-ca", required_argument, NULL, OPT_X509_CA},
    {"x509-cert", required_argument, NULL, OPT_X509_CERT},
    {"hub", required_argument, NULL, OPT_HUB},
    {"group", required_argument, NULL, OPT_GROUP},
    {"individual", required_argument, NULL, OPT_INDIVIDUAL},
    {"registration-id", required_argument, NULL, OPT_REGISTRATION_ID},
    {"secondary", no_argument, NULL, OPT_SECONDARY},
    {"registration", required_argument, NULL, OPT_REGISTRATION},
    {"status", required_argument, NULL, OPT_STATUS},
    {"reason", required_argument, NULL, OPT_REASON},
    {"issuer", required_argument, NULL, OPT_ISSUER},
    {"serial", required_argument, NULL, OPT_SERIAL},
    {"expiring", required_argument, NULL, OPT_EXPIRING},
    {"revoked", no_argument, NULL, OPT_REVOKED},
    {"json", no_argument, NULL, OPT_JSON},
    {"help", no_argument, NULL, OPT_HELP},
    {NULL, 0, NULL, 0},
};

/* Which options a verb takes: a bit per OPT_* value. */
#define O(name) (UINT64_C(1) << OPT_##name)
#define ALWAYS (O(DATA) | O(JSON) | O(HELP))

#define MAX_X509_CA 16

typedef struct admin_args {
    const char *data, *ca_dir, *cert, *validity, *renewal_window, *ca, *key_types, *policy,
        *x509_cert, *hub, *group, *individual, *registration_id, *registration, *status, *reason,
        *issuer, *serial, *expiring;
    const char *x509_ca[MAX_X509_CA];
    size_t x509_ca_count;
    bool symmetric, secondary, revoked, json, help;
} admin_args;

static const char *option_name(int val)
{
    for (const struct option *o = ADMIN_OPTIONS; o->name != NULL; o++)
        if (o->val == val)
            return o->name;
    return "?";
}

/* Parses the options of one verb. Returns CLI_EXIT_OK, a usage exit code,
 * or -1 after printing `help` (the caller then exits 0). */
static int parse_admin_args(const char *cmd, const char *help, uint64_t allowed, int argc, char **argv,
                            admin_args *a)
{
    memset(a, 0, sizeof *a);
    optind = 0;
    opterr = 0;
    allowed |= ALWAYS;
    int c;
    while ((c = getopt_long(argc, argv, ":h", ADMIN_OPTIONS, NULL)) != -1) {
        if (c > 0 && c <= OPT_HELP && !(allowed & (UINT64_C(1) << c)))
            return cli_usage(cmd, "option --%s does not apply here", option_name(c));
        switch (c) {
        case OPT_DATA: a->data = optarg; break;
        case OPT_CA_DIR: a->ca_dir = optarg; break;
        case OPT_CERT: a->cert = optarg; break;
        case OPT_VALIDITY: a->validity = optarg; break;
        case OPT_RENEWAL_WINDOW: a->renewal_window = optarg; break;
        case OPT_CA: a->ca = optarg; break;
        case OPT_KEY_TYPES: a->key_types = optarg; break;
        case OPT_POLICY: a->policy = optarg; break;
        case OPT_SYMMETRIC: a->symmetric = true; break;
        case OPT_X509_CA:
            if (a->x509_ca_count == MAX_X509_CA)
                return cli_usage(cmd, "too many --x509-ca options (at most %d)", MAX_X509_CA);
            a->x509_ca[a->x509_ca_count++] = optarg;
            break;
        case OPT_X509_CERT: a->x509_cert = optarg; break;
        case OPT_HUB: a->hub = optarg; break;
        case OPT_GROUP: a->group = optarg; break;
        case OPT_INDIVIDUAL: a->individual = optarg; break;
        case OPT_REGISTRATION_ID: a->registration_id = optarg; break;
        case OPT_SECONDARY: a->secondary = true; break;
        case OPT_REGISTRATION: a->registration = optarg; break;
        case OPT_STATUS: a->status = optarg; break;
        case OPT_REASON: a->reason = optarg; break;
        case OPT_ISSUER: a->issuer = optarg; break;
        case OPT_SERIAL: a->serial = optarg; break;
        case OPT_EXPIRING: a->expiring = optarg; break;
        case OPT_REVOKED: a->revoked = true; break;
        case OPT_JSON: a->json = true; break;
        case OPT_HELP:
        case 'h': a->help = true; break;
        case ':': return cli_usage(cmd, "option %s needs a value", argv[optind - 1]);
        default: return cli_usage(cmd, "unknown option %s", argv[optind - 1]);
        }
    }
    if (a->help) {
        fputs(help, stdout);
        return -1;
    }
    if (a->data == NULL)
        return cli_usage(cmd, "--data DIR (enrolld's data directory) is required");
    return CLI_EXIT_OK;
}

/* The positional arguments: exactly `want` of them (0 or 1). */
static int want_args(const char *cmd, int argc, char **argv, int want, const char *what)
{
    if (want == 0 && optind < argc)
        return cli_usage(cmd, "unexpected argument '%s'", argv[optind]);
    if (want == 1 && optind != argc - 1)
        return cli_usage(cmd, "give exactly one %s", what);
    return CLI_EXIT_OK;
}

/* Copies a command-line value into a fixed store field, or says it is too long. */
static int copy_field(const char *cmd, const char *what, char *dst, size_t cap, const char *src)
{
    if (strlen(src) >= cap)
        return cli_usage(cmd, "%s is longer than %zu characters", what, cap - 1);
    memcpy(dst, src, strlen(src) + 1);
    return CLI_EXIT_OK;
}

/* ---- the store ------------------------------------------------------------ */

/* Only commands that add a CA may create a store: a mistyped --data for
 * anything else would otherwise make an empty one and report nothing. */
static enr_code open_store(const admin_args *a, bool may_create, enr_store **out, enr_error *err)
{
    *out = NULL;
    if (!may_create) {
        char path[PATH_MAX];
        struct stat st;
        snprintf(path, sizeof path, "%s/enroll.db", a->data);
        if (stat(path, &st) != 0)
            return enr_error_set(err, ENR_E_IO,
                                 "%s: %s; --data takes enrolld's data directory (data_dir in its "
                                 "config), where `enroll admin ca add` creates the store",
                                 path, strerror(errno));
    }
    return enr_store_open_sqlite(a->data, out, err);
}

static void audit_set(enr_audit_event *ev, const char *kind, const char *registration_id,
                      const char *outcome, const char *fmt, ...) __attribute__((format(printf, 5, 6)));

/* An audit event for this command: the detail says what changed and which
 * local user changed it, never a key. */
static void audit_set(enr_audit_event *ev, const char *kind, const char *registration_id,
                      const char *outcome, const char *fmt, ...)
{
    memset(ev, 0, sizeof *ev);
    snprintf(ev->kind, sizeof ev->kind, "%s", kind);
    if (registration_id != NULL)
        snprintf(ev->registration_id, sizeof ev->registration_id, "%s", registration_id);
    snprintf(ev->outcome, sizeof ev->outcome, "%s", outcome);
    char what[ENR_STORE_DETAIL_MAX + 1];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    const struct passwd *pw = getpwuid(geteuid());
    snprintf(ev->detail, sizeof ev->detail, "%s (enroll admin, user %s)", what,
             pw != NULL ? pw->pw_name : "?");
}

static enr_code no_such(enr_code rc, enr_error *err, const char *hint)
{
    if (rc == ENR_E_NOTFOUND) {
        size_t used = strlen(err->message);
        snprintf(err->message + used, sizeof err->message - used, "%s", hint);
    }
    return rc;
}

static enr_code get_ca(enr_store *s, const admin_args *a, const char *name, enr_ca_record *out,
                       enr_error *err)
{
    enr_code rc = enr_store_get_ca(s, name, out, err);
    if (rc == ENR_E_NOTFOUND)
        enr_error_set(err, rc, "no CA named '%s' in %s/enroll.db (see `enroll admin ca list`)", name,
                      a->data);
    return rc;
}

static enr_code get_policy(enr_store *s, const admin_args *a, const char *name,
                           enr_credential_policy *out, enr_error *err)
{
    enr_code rc = enr_store_get_policy(s, name, out, err);
    if (rc == ENR_E_NOTFOUND)
        enr_error_set(err, rc,
                      "no credential policy named '%s' in %s/enroll.db (see `enroll admin policy "
                      "list`; make one with `enroll admin policy new`)",
                      name, a->data);
    return rc;
}

static const char *kind_noun(enr_enrollment_kind kind)
{
    return kind == ENR_ENROLLMENT_GROUP ? "group" : "individual";
}

static const char *kind_words(enr_enrollment_kind kind)
{
    return kind == ENR_ENROLLMENT_GROUP ? "enrollment group" : "individual enrollment";
}

static enr_code get_enrollment(enr_store *s, const admin_args *a, enr_enrollment_kind kind,
                               const char *id, enr_enrollment *out, enr_error *err)
{
    enr_code rc = enr_store_get_enrollment(s, kind, id, out, err);
    if (rc == ENR_E_NOTFOUND)
        enr_error_set(err, rc, "no %s '%s' in %s/enroll.db (see `enroll admin %s list`)",
                      kind_words(kind), id, a->data, kind_noun(kind));
    return rc;
}

/* ---- output helpers ------------------------------------------------------- */

static void print_json(json_t *o)
{
    json_dumpf(o, stdout, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
    fputc('\n', stdout);
    json_decref(o);
}

static json_t *json_text(const char *s)
{
    return s != NULL && s[0] != '\0' ? json_string(s) : json_null();
}

static void time_text(time_t t, char *buf, size_t cap)
{
    if (t == 0)
        snprintf(buf, cap, "-");
    else
        enr_time_format(t, buf, cap);
}

static json_t *json_time(time_t t)
{
    char buf[32];
    time_text(t, buf, sizeof buf);
    return t != 0 ? json_string(buf) : json_null();
}


/* What a certificate is, in the words the lists use. */
typedef struct cert_facts {
    char *subject, *issuer;
    time_t not_after;
    char sha256[65];
} cert_facts;

static void cert_facts_of(X509 *x, cert_facts *f)
{
    memset(f, 0, sizeof *f);
    f->subject = enr_name_format(X509_get_subject_name(x));
    f->issuer = enr_name_format(X509_get_issuer_name(x));
    f->not_after = enr_asn1_time_to_time_t(X509_get0_notAfter(x));
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int n = 0;
    if (X509_digest(x, EVP_sha256(), md, &n) == 1)
        for (unsigned int i = 0; i < n && i < 32; i++)
            snprintf(f->sha256 + 2 * i, 3, "%02x", md[i]);
}

static void cert_facts_free(cert_facts *f)
{
    free(f->subject);
    free(f->issuer);
}

static X509 *x509_of(const enr_buf *der)
{
    const unsigned char *p = der->data;
    return der->data != NULL ? d2i_X509(NULL, &p, (long)der->len) : NULL;
}

static json_t *cert_facts_json(const enr_buf *der)
{
    X509 *x = x509_of(der);
    if (x == NULL)
        return json_pack("{s:s}", "error", "the stored certificate does not parse");
    cert_facts f;
    cert_facts_of(x, &f);
    json_t *o = json_object();
    json_object_set_new(o, "subject", json_text(f.subject));
    json_object_set_new(o, "issuer", json_text(f.issuer));
    json_object_set_new(o, "not_after", json_time(f.not_after));
    json_object_set_new(o, "fingerprint_sha256", json_string(f.sha256));
    cert_facts_free(&f);
    X509_free(x);
    return o;
}

static enr_code der_of(X509 *x, enr_buf *out, enr_error *err)
{
    memset(out, 0, sizeof *out);
    int n = i2d_X509(x, NULL);
    if (n <= 0)
        return enr_error_openssl(err, ENR_E_CRYPTO, "cannot encode a certificate");
    out->data = malloc((size_t)n + 1);
    if (out->data == NULL)
        return enr_error_set(err, ENR_E_NOMEM, "out of memory");
    unsigned char *p = out->data;
    i2d_X509(x, &p);
    out->len = (size_t)n;
    out->data[out->len] = '\0';
    return ENR_OK;
}

/* Exactly one certificate from a file, valid now. */
static enr_code read_certificate(const char *path, X509 **out, enr_error *err)
{
    unsigned char *data = NULL;
    size_t len = 0;
    *out = NULL;
    enr_code rc = cli_read_input(path, &data, &len, err);
    if (rc == ENR_OK && (rc = enr_cert_read_one(data, len, out, err)) != ENR_OK)
        enr_error_prefix(err, "%s", path);
    free(data);
    if (rc != ENR_OK)
        return rc;
    char when[32];
    if (X509_cmp_current_time(X509_get0_notAfter(*out)) < 0) {
        time_text(enr_asn1_time_to_time_t(X509_get0_notAfter(*out)), when, sizeof when);
        rc = enr_error_set(err, ENR_E_POLICY, "%s: the certificate expired on %s", path, when);
    } else if (X509_cmp_current_time(X509_get0_notBefore(*out)) > 0) {
        time_text(enr_asn1_time_to_time_t(X509_get0_notBefore(*out)), when, sizeof when);
        rc = enr_error_set(err, ENR_E_POLICY, "%s: the certificate is not valid before %s", path, when);
    }
    if (rc != ENR_OK) {
        X509_free(*out);
        *out = NULL;
    }
    return rc;
}

/* ---- ca ------------------------------------------------------------------- */

static enr_code chain_pem_of(STACK_OF(X509) *chain, char **out, enr_error *err)
{
    *out = NULL;
    if (sk_X509_num(chain) < 2)
        return ENR_OK; /* a root: no issuers above it */
    BIO *bio = BIO_new(BIO_s_mem());
    int ok = bio != NULL;
    for (int i = 1; ok && i < sk_X509_num(chain); i++)
        ok = PEM_write_bio_X509(bio, sk_X509_value(chain, i));
    if (!ok) {
        BIO_free(bio);
        return enr_error_openssl(err, ENR_E_CRYPTO, "cannot encode the CA chain");
    }
    char *data;
    long n = BIO_get_mem_data(bio, &data);
    *out = malloc((size_t)n + 1);
    if (*out != NULL) {
        memcpy(*out, data, (size_t)n);
        (*out)[n] = '\0';
    }
    BIO_free(bio);
    return *out != NULL ? ENR_OK : enr_error_set(err, ENR_E_NOMEM, "out of memory");
}

static const char *ca_state(const enr_ca_record *ca)
{
    if (ca->role == ENR_CA_ISSUING)
        return "issuing";
    return ca->verified ? "verified" : "unverified";
}

static json_t *ca_json(const enr_ca_record *ca)
{
    json_t *o = json_object();
    json_object_set_new(o, "name", json_string(ca->name));
    json_object_set_new(o, "role", json_string(ca->role == ENR_CA_ISSUING ? "issuing" : "bootstrap"));
    X509 *x = x509_of(&ca->certificate);
    if (x != NULL) {
        cert_facts f;
        cert_facts_of(x, &f);
        json_object_set_new(o, "subject", json_text(f.subject));
        json_object_set_new(o, "issuer", json_text(f.issuer));
        json_object_set_new(o, "not_after", json_time(f.not_after));
        json_object_set_new(o, "fingerprint_sha256", json_string(f.sha256));
        cert_facts_free(&f);
        X509_free(x);
    }
    if (ca->role == ENR_CA_ISSUING) {
        json_object_set_new(o, "ca_dir", json_text(ca->key_ref));
    } else {
        json_object_set_new(o, "verified", json_boolean(ca->verified));
        json_object_set_new(o, "verification_code", json_text(ca->verified ? "" : ca->verification_code));
    }
    json_object_set_new(o, "created_at", json_time(ca->created_at));
    json_object_set_new(o, "updated_at", json_time(ca->updated_at));
    return o;
}

static int ca_add(const char *cmd, const char *help, int argc, char **argv)
{
    admin_args a;
    int rc = parse_admin_args(cmd, help, O(CA_DIR), argc, argv, &a);
    if (rc != CLI_EXIT_OK)
        return rc < 0 ? CLI_EXIT_OK : rc;
    if ((rc = want_args(cmd, argc, argv, 1, "CA name")) != CLI_EXIT_OK)
        return rc;
    if (a.ca_dir == NULL)
        return cli_usage(cmd, "--ca-dir DIR (a CA directory made by `enroll ca init`) is required");
    enr_ca_record rec = {0};
    if ((rc = copy_field(cmd, "the CA name", rec.name, sizeof rec.name, argv[optind])) != CLI_EXIT_OK)
        return rc;
    rec.role = ENR_CA_ISSUING;
    enr_error err;
    enr_ca *ca = NULL;
    enr_store *store = NULL;
    char abs[PATH_MAX] = "";
    enr_code code = enr_ca_open_public(a.ca_dir, &ca, &err);
    if (code == ENR_OK && realpath(a.ca_dir, abs) == NULL)
        code = enr_error_set(&err, ENR_E_IO, "%s: %s", a.ca_dir, strerror(errno));
    if (code == ENR_OK && strlen(abs) > ENR_STORE_KEY_REF_MAX)
        code = enr_error_set(&err, ENR_E_USAGE, "%s: the path is longer than %d bytes", abs,
                             ENR_STORE_KEY_REF_MAX);
    cert_facts f = {0};
    if (code == ENR_OK) {
        X509 *cert = enr_ca_cert(ca);
        cert_facts_of(cert, &f);
        char until[32];
        time_text(f.not_after, until, sizeof until);
        if (X509_cmp_current_time(X509_get0_notAfter(cert)) < 0)
            code = enr_error_set(&err, ENR_E_POLICY, "%s: the CA certificate expired on %s", a.ca_dir, until);
        if (code == ENR_OK)
            code = der_of(cert, &rec.certificate, &err);
        if (code == ENR_OK)
            code = chain_pem_of(enr_ca_chain(ca), &rec.chain_pem, &err);
        snprintf(rec.key_ref, sizeof rec.key_ref, "%s", abs);
    }
    if (code == ENR_OK)
        code = open_store(&a, true, &store, &err);
    if (code == ENR_OK) {
        enr_audit_event ev;
        audit_set(&ev, "admin.ca.add", NULL, "ok", "issuing CA '%s' added: %s, directory %s", rec.name,
                  f.subject ? f.subject : "?", abs);
        code = enr_store_create_ca(store, &rec, &ev, &err);
    }
    enr_store_close(store);
    enr_ca_free(ca);
    if (code != ENR_OK) {
        cert_facts_free(&f);
        enr_ca_record_free(&rec);
        return cli_fail(&err, a.json);
    }
    if (a.json) {
        json_t *o = ca_json(&rec);
        json_object_set_new(o, "action", json_string("added"));
        print_json(o);
    } else {
        char until[32];
        time_text(f.not_after, until, sizeof until);
        printf("added issuing CA '%s'\n  Subject:   %s\n  Expires:   %s\n  Directory: %s\n", rec.name,
               f.subject ? f.subject : "?", until, rec.key_ref);
    }
    cert_facts_free(&f);
    enr_ca_record_free(&rec);
    return CLI_EXIT_OK;
}

static int ca_upload(const char *cmd, const char *help, int argc, char **argv)
{
    admin_args a;
    int rc = parse_admin_args(cmd, help, O(CERT), argc, argv, &a);
    if (rc != CLI_EXIT_OK)
        return rc < 0 ? CLI_EXIT_OK : rc;
    if ((rc = want_args(cmd, argc, argv, 1, "CA name")) != CLI_EXIT_OK)
        return rc;
    if (a.cert == NULL)
        return cli_usage(cmd, "--cert FILE (the CA certificate devices chain to) is required");
    enr_ca_record rec = {0};
    if ((rc = copy_field(cmd, "the CA name", rec.name, sizeof rec.name, argv[optind])) != CLI_EXIT_OK)
        return rc;
    rec.role = ENR_CA_BOOTSTRAP;
    enr_error err;
    X509 *x = NULL;
    enr_store *store = NULL;
    cert_facts f = {0};
    enr_code code = read_certificate(a.cert, &x, &err);
    if (code == ENR_OK && X509_check_ca(x) < 1)
        code = enr_error_set(&err, ENR_E_POLICY,
                             "%s: not a CA certificate (no basicConstraints CA:TRUE); upload the CA "
                             "that signs the devices' certificates",
                             a.cert);
    if (code == ENR_OK) {
        cert_facts_of(x, &f);
        code = der_of(x, &rec.certificate, &err);
    }
    unsigned char raw[16];
    if (code == ENR_OK && RAND_bytes(raw, sizeof raw) != 1)
        code = enr_error_openssl(&err, ENR_E_CRYPTO, "no randomness for a verification code");
    for (size_t i = 0; code == ENR_OK && i < sizeof raw; i++)
        snprintf(rec.verification_code + 2 * i, 3, "%02X", raw[i]);
    if (code == ENR_OK)
        code = open_store(&a, true, &store, &err);
    if (code == ENR_OK) {
        enr_audit_event ev;
        audit_set(&ev, "admin.ca.upload", NULL, "ok",
                  "bootstrap CA '%s' uploaded: %s; awaiting proof of possession", rec.name,
                  f.subject ? f.subject : "?");
        code = enr_store_create_ca(store, &rec, &ev, &err);
    }
    enr_store_close(store);
    X509_free(x);
    if (code != ENR_OK) {
        cert_facts_free(&f);
        enr_ca_record_free(&rec);
        return cli_fail(&err, a.json);
    }
    if (a.json) {
        json_t *o = ca_json(&rec);
        json_object_set_new(o, "action", json_string("uploaded"));
        print_json(o);
    } else {
        printf("uploaded bootstrap CA '%s' (%s), not verified yet\n"
               "Verification code: %s\n"
               "Sign a certificate with subject CN=%s by this CA's key, then run\n"
               "  enroll admin ca verify %s --cert FILE --data %s\n",
               rec.name, f.subject ? f.subject : "?", rec.verification_code, rec.verification_code,
               rec.name, a.data);
    }
    cert_facts_free(&f);
    enr_ca_record_free(&rec);
    return CLI_EXIT_OK;
}

/* The proof of possession: `cert` names the code and the CA's key signed it. */
static enr_code check_verification_cert(const enr_ca_record *ca, X509 *cert, const char *path,
                                        enr_error *err)
{
    char *cn = enr_name_common_name(X509_get_subject_name(cert));
    enr_code rc = ENR_OK;
    if (cn == NULL)
        rc = enr_error_set(err, ENR_E_VERIFY, "%s: the subject has no CN; it must be the verification code",
                           path);
    else if (strcmp(cn, ca->verification_code) != 0)
        rc = enr_error_set(err, ENR_E_VERIFY,
                           "%s: subject CN '%.80s' is not the verification code of CA '%s' (`enroll "
                           "admin ca list` shows the code)",
                           path, cn, ca->name);
    free(cn);
    if (rc != ENR_OK)
        return rc;
    X509 *ca_x = x509_of(&ca->certificate);
    EVP_PKEY *ca_key = ca_x != NULL ? X509_get0_pubkey(ca_x) : NULL;
    if (ca_key == NULL)
        rc = enr_error_openssl(err, ENR_E_PARSE, "CA '%s': the stored certificate's key does not parse",
                               ca->name);
    else if (X509_verify(cert, ca_key) != 1)
        rc = enr_error_openssl(err, ENR_E_VERIFY,
                               "%s: not signed by the key of CA '%s'; sign it with that CA's key",
                               path, ca->name);
    X509_free(ca_x);
    return rc;
}

static int ca_verify(const char *cmd, const char *help, int argc, char **argv)
{
    admin_args a;
    int rc = parse_admin_args(cmd, help, O(CERT), argc, argv, &a);
    if (rc != CLI_EXIT_OK)
        return rc < 0 ? CLI_EXIT_OK : rc;
    if ((rc = want_args(cmd, argc, argv, 1, "CA name")) != CLI_EXIT_OK)
        return rc;
    if (a.cert == NULL)
        return cli_usage(cmd, "--cert FILE (the certificate with CN = the verification code) is required");
    const char *name = argv[optind];
    enr_error err;
    enr_store *store = NULL;
    enr_ca_record ca = {0};
    X509 *x = NULL;
    bool refused = false;
    enr_code code = open_store(&a, false, &store, &err);
    if (code == ENR_OK)
        code = get_ca(store, &a, name, &ca, &err);
    if (code == ENR_OK && ca.role != ENR_CA_BOOTSTRAP)
        code = enr_error_set(&err, ENR_E_POLICY,
                             "CA '%s' is an issuing CA: only uploaded (bootstrap) CAs are verified", name);
    if (code == ENR_OK && ca.verified)
        code = enr_error_set(&err, ENR_E_EXISTS, "bootstrap CA '%s' is verified already; nothing to do",
                             name);
    if (code == ENR_OK) {
        code = read_certificate(a.cert, &x, &err);
        if (code == ENR_OK)
            code = check_verification_cert(&ca, x, a.cert, &err);
        refused = code == ENR_E_VERIFY || code == ENR_E_POLICY || code == ENR_E_PARSE;
    }
    enr_audit_event ev;
    if (code == ENR_OK) {
        audit_set(&ev, "admin.ca.verify", NULL, "ok", "bootstrap CA '%s': proof of possession accepted",
                  name);
        code = enr_store_set_ca_verification(store, name, "", true, &ev, &err);
    } else if (refused) {
        enr_error ignored;
        audit_set(&ev, "admin.ca.verify", NULL, "rejected", "bootstrap CA '%s': proof of possession refused",
                  name);
        (void)enr_store_record_audit(store, &ev, &ignored);
    }
    X509_free(x);
    enr_store_close(store);
    if (code != ENR_OK) {
        enr_ca_record_free(&ca);
        return cli_fail(&err, a.json);
    }
    if (a.json) {
        ca.verified = true;
        json_t *o = ca_json(&ca);
        json_object_set_new(o, "action", json_string("verified"));
        print_json(o);
    } else {
        printf("bootstrap CA '%s' verified: groups may now name it with --x509-ca\n", name);
    }
    enr_ca_record_free(&ca);
    return CLI_EXIT_OK;
}

static int ca_list(const char *cmd, const char *help, int argc, char **argv)
{
    admin_args a;
    int rc = parse_admin_args(cmd, help, 0, argc, argv, &a);
    if (rc != CLI_EXIT_OK)
        return rc < 0 ? CLI_EXIT_OK : rc;
    if ((rc = want_args(cmd, argc, argv, 0, NULL)) != CLI_EXIT_OK)
        return rc;
    enr_error err;
    enr_store *store = NULL;
    enr_ca_record_list list = {0};
    enr_code code = open_store(&a, false, &store, &err);
    if (code == ENR_OK)
        code = enr_store_list_cas(store, &list, &err);
    enr_store_close(store);
    if (code != ENR_OK)
        return cli_fail(&err, a.json);
    json_t *arr = json_array();
    for (size_t i = 0; i < list.count; i++) {
        const enr_ca_record *ca = &list.items[i];
        if (a.json) {
            json_array_append_new(arr, ca_json(ca));
            continue;
        }
        X509 *x = x509_of(&ca->certificate);
        cert_facts f = {0};
        if (x != NULL)
            cert_facts_of(x, &f);
        char until[32];
        time_text(f.not_after, until, sizeof until);
        printf("%-24s %-10s %s  %s", ca->name, ca_state(ca), until, f.subject ? f.subject : "?");
        if (ca->role == ENR_CA_ISSUING)
            printf("  (%s)", ca->key_ref);
        else if (!ca->verified)
            printf("  (code %s)", ca->verification_code);
        putchar('\n');
        cert_facts_free(&f);
        X509_free(x);
    }
    if (a.json)
        print_json(arr);
    else {
        if (list.count == 0)
            printf("(no CAs)\n");
        json_decref(arr);
    }
    enr_ca_record_list_free(&list);
    return CLI_EXIT_OK;
}

/* ---- policy --------------------------------------------------------------- */

static json_t *policy_json(const enr_credential_policy *p)
{
    json_t *o = json_object();
    json_object_set_new(o, "name", json_string(p->name));
    json_object_set_new(o, "validity", json_string(p->validity));
    json_object_set_new(o, "renewal_window", json_string(p->renewal_window));
    json_object_set_new(o, "ca", json_string(p->ca_name));
    json_object_set_new(o, "key_types", json_string(p->key_types));
    json_object_set_new(o, "created_at", json_time(p->created_at));
    return o;
}

static int policy_new(const char *cmd, const char *help, int argc, char **argv)
{
    admin_args a;
    int rc = parse_admin_args(cmd, help, O(VALIDITY) | O(RENEWAL_WINDOW) | O(CA) | O(KEY_TYPES), argc,
                              argv, &a);
    if (rc != CLI_EXIT_OK)
        return rc < 0 ? CLI_EXIT_OK : rc;
    if ((rc = want_args(cmd, argc, argv, 1, "policy name")) != CLI_EXIT_OK)
        return rc;
    if (a.validity == NULL || a.renewal_window == NULL || a.ca == NULL)
        return cli_usage(cmd, "--validity D, --renewal-window D and --ca NAME are required "
                              "(e.g. --validity P30D --renewal-window P7D --ca issuing)");
    enr_error err;
    enr_duration d;
    if (enr_duration_parse(a.validity, &d, &err) != ENR_OK)
        return cli_usage(cmd, "--validity: %s", err.message);
    if (enr_duration_parse(a.renewal_window, &d, &err) != ENR_OK)
        return cli_usage(cmd, "--renewal-window: %s", err.message);
    enr_credential_policy p = {0};
    const char *types = a.key_types ? a.key_types : DEFAULT_KEY_TYPES;
    if ((rc = copy_field(cmd, "the policy name", p.name, sizeof p.name, argv[optind])) != CLI_EXIT_OK ||
        (rc = copy_field(cmd, "--validity", p.validity, sizeof p.validity, a.validity)) != CLI_EXIT_OK ||
        (rc = copy_field(cmd, "--renewal-window", p.renewal_window, sizeof p.renewal_window,
                         a.renewal_window)) != CLI_EXIT_OK ||
        (rc = copy_field(cmd, "--ca", p.ca_name, sizeof p.ca_name, a.ca)) != CLI_EXIT_OK ||
        (rc = copy_field(cmd, "--key-types", p.key_types, sizeof p.key_types, types)) != CLI_EXIT_OK)
        return rc;
    char list[ENR_STORE_KEY_TYPES_MAX + 1], *save = NULL;
    snprintf(list, sizeof list, "%s", types);
    for (char *t = strtok_r(list, ",", &save); t != NULL; t = strtok_r(NULL, ",", &save)) {
        enr_key_type kt;
        if (enr_key_type_parse(t, &kt, &err) != ENR_OK)
            return cli_usage(cmd, "--key-types: %s", err.message);
    }
    enr_store *store = NULL;
    enr_ca_record ca = {0};
    enr_code code = open_store(&a, false, &store, &err);
    if (code == ENR_OK)
        code = no_such(get_ca(store, &a, a.ca, &ca, &err), &err,
                       "; add the issuing CA first: `enroll admin ca add NAME --ca-dir DIR`");
    if (code == ENR_OK && ca.role != ENR_CA_ISSUING)
        code = enr_error_set(&err, ENR_E_POLICY,
                             "CA '%s' is a device-attestation (bootstrap) CA: a policy needs an issuing "
                             "CA (`enroll admin ca add`)",
                             a.ca);
    if (code == ENR_OK) {
        enr_audit_event ev;
        audit_set(&ev, "admin.policy.create", NULL, "ok",
                  "credential policy '%s' created: validity %s, renewal window %s, CA '%s', key types %s",
                  p.name, p.validity, p.renewal_window, p.ca_name, p.key_types);
        code = enr_store_create_policy(store, &p, &ev, &err);
    }
    enr_ca_record_free(&ca);
    enr_store_close(store);
    if (code != ENR_OK)
        return cli_fail(&err, a.json);
    if (a.json) {
        json_t *o = policy_json(&p);
        json_object_set_new(o, "action", json_string("created"));
        print_json(o);
    } else {
        printf("created credential policy '%s'\n  Validity:       %s\n  Renewal window: %s\n"
               "  CA:             %s\n  Key types:      %s\n",
               p.name, p.validity, p.renewal_window, p.ca_name, p.key_types);
    }
    return CLI_EXIT_OK;
}

static int policy_list(const char *cmd, const char *help, int argc, char **argv)
{
    admin_args a;
    int rc = parse_admin_args(cmd, help, 0, argc, argv, &a);
    if (rc != CLI_EXIT_OK)
        return rc < 0 ? CLI_EXIT_OK : rc;
    if ((rc = want_args(cmd, argc, argv, 0, NULL)) != CLI_EXIT_OK)
        return rc;
    enr_error err;
    enr_store *store = NULL;
    enr_policy_list list = {0};
    enr_code code = open_store(&a, false, &store, &err);
    if (code == ENR_OK)
        code = enr_store_list_policies(store, &list, &err);
    enr_store_close(store);
    if (code != ENR_OK)
        return cli_fail(&err, a.json);
    json_t *arr = json_array();
    for (size_t i = 0; i < list.count; i++) {
        const enr_credential_policy *p = &list.items[i];
        if (a.json)
            json_array_append_new(arr, policy_json(p));
        else
            printf("%-24s validity %-8s renew %-8s CA %-20s keys %s\n", p->name, p->validity,
                   p->renewal_window, p->ca_name, p->key_types);
    }
    if (a.json)
        print_json(arr);
    else {
        if (list.count == 0)
            printf("(no credential policies)\n");
        json_decref(arr);
    }
    enr_policy_list_free(&list);
    return CLI_EXIT_OK;
}

/* ---- enrollments ---------------------------------------------------------- */

/* HOST, HOST:PORT or [IPv6]:PORT, as a device would connect to it. */
static bool hub_valid(const char *hub)
{
    size_t len = strlen(hub);
    if (len == 0 || len > ENR_STORE_HUB_MAX)
        return false;
    char host[ENR_STORE_HUB_MAX + 1];
    const char *port = NULL;
    unsigned char addr[16];
    bool host_ok;
    if (hub[0] == '[') {
        const char *close = strchr(hub, ']');
        if (close == NULL || (close[1] != '\0' && close[1] != ':'))
            return false;
        snprintf(host, sizeof host, "%.*s", (int)(close - hub - 1), hub + 1);
        host_ok = inet_pton(AF_INET6, host, addr) == 1;
        port = close[1] == ':' ? close + 2 : NULL;
    } else {
        const char *colon = strchr(hub, ':');
        if (colon != NULL && strchr(colon + 1, ':') != NULL)
            return false; /* an IPv6 address needs brackets */
        snprintf(host, sizeof host, "%.*s", colon ? (int)(colon - hub) : (int)len, hub);
        host_ok = enr_dns_name_valid(host, false) || inet_pton(AF_INET, host, addr) == 1;
        port = colon ? colon + 1 : NULL;
    }
    if (!host_ok)
        return false;
    if (port == NULL)
        return true;
    size_t digits = strspn(port, "0123456789");
    if (digits == 0 || digits > 5 || port[digits] != '\0')
        return false;
    long n = strtol(port, NULL, 10);
    return n >= 1 && n <= 65535;
}

/* 32 random bytes, base64: a fresh symmetric key. */
static enr_code new_key(char out[ENR_STORE_KEY_MAX + 1], enr_error *err)
{
    unsigned char raw[SYMMETRIC_KEY_BYTES];
    char *b64 = NULL;
    enr_code rc = RAND_bytes(raw, sizeof raw) == 1
                      ? enr_base64_encode(raw, sizeof raw, &b64, err)
                      : enr_error_openssl(err, ENR_E_CRYPTO, "no randomness for a key");
    OPENSSL_cleanse(raw, sizeof raw);
    if (rc == ENR_OK)
        snprintf(out, ENR_STORE_KEY_MAX + 1, "%s", b64);
    if (b64 != NULL) {
        OPENSSL_cleanse(b64, strlen(b64));
        free(b64);
    }
    return rc;
}

/* Everything but the keys; with_keys adds them (new and key show only). */
static json_t *enrollment_json(const enr_enrollment *e, bool with_keys)
{
    json_t *o = json_object();
    json_object_set_new(o, "kind", json_string(kind_noun(e->kind)));
    json_object_set_new(o, e->kind == ENR_ENROLLMENT_GROUP ? "group_id" : "registration_id",
                        json_string(e->id));
    json_object_set_new(o, "attestation",
                        json_string(e->attestation == ENR_ATTEST_SYMMETRIC ? "symmetric" : "x509"));
    json_object_set_new(o, "policy", json_text(e->policy));
    json_object_set_new(o, "assigned_hub", json_text(e->assigned_hub));
    json_object_set_new(o, "enabled", json_boolean(e->enabled));
    json_object_set_new(o, "etag", json_text(e->etag));
    json_object_set_new(o, "created_at", json_time(e->created_at));
    json_object_set_new(o, "updated_at", json_time(e->updated_at));
    if (e->attestation == ENR_ATTEST_X509) {
        json_t *certs = json_array();
        for (size_t i = 0; i < e->certificate_count; i++)
            json_array_append_new(certs, cert_facts_json(&e->certificates[i]));
        json_object_set_new(o, "certificates", certs);
    } else if (with_keys) {
        json_object_set_new(o, "primary_key", json_string(e->primary_key));
        json_object_set_new(o, "secondary_key", json_text(e->secondary_key));
    }
    return o;
}

static void enrollment_text(const enr_enrollment *e)
{
    char created[32], updated[32];
    time_text(e->created_at, created, sizeof created);
    time_text(e->updated_at, updated, sizeof updated);
    printf("%s '%s'\n", kind_words(e->kind), e->id);
    printf("  Attestation: %s\n", e->attestation == ENR_ATTEST_SYMMETRIC ? "symmetric key" : "X.509");
    printf("  Policy:      %s\n", e->policy[0] ? e->policy : "(none: no certificate)");
    printf("  Hub:         %s\n", e->assigned_hub);
    printf("  Enabled:     %s\n", e->enabled ? "yes" : "no");
    printf("  Created:     %s\n  Updated:     %s\n", created, updated);
    for (size_t i = 0; e->attestation == ENR_ATTEST_X509 && i < e->certificate_count; i++) {
        X509 *x = x509_of(&e->certificates[i]);
        cert_facts f = {0};
        if (x != NULL)
            cert_facts_of(x, &f);
        char until[32];
        time_text(f.not_after, until, sizeof until);
        printf("  Certificate: %s (until %s, SHA-256 %s)\n", f.subject ? f.subject : "?", until, f.sha256);
        cert_facts_free(&f);
        X509_free(x);
    }
}

/* The CA certificates an X.509 group trusts: verified bootstrap CAs only. */
static enr_code attach_bootstrap_cas(enr_store *store, const admin_args *a, enr_enrollment *e,
                                     enr_error *err)
{
    e->certificates = calloc(a->x509_ca_count, sizeof *e->certificates);
    if (e->certificates == NULL)
        return enr_error_set(err, ENR_E_NOMEM, "out of memory");
    for (size_t i = 0; i < a->x509_ca_count; i++) {
        enr_ca_record ca;
        enr_code rc = no_such(get_ca(store, a, a->x509_ca[i], &ca, err), err,
                              "; upload it first: `enroll admin ca upload NAME --cert FILE`");
        if (rc == ENR_OK && ca.role != ENR_CA_BOOTSTRAP)
            rc = enr_error_set(err, ENR_E_POLICY,
                               "CA '%s' is an issuing CA; --x509-ca takes device-attestation CAs "
                               "uploaded with `enroll admin ca upload`",
                               ca.name);
        if (rc == ENR_OK && !ca.verified)
            rc = enr_error_set(err, ENR_E_POLICY,
                               "bootstrap CA '%s' is not verified yet: prove possession of its key "
                               "with `enroll admin ca verify %s --cert FILE` (the code is in `enroll "
                               "admin ca list`)",
                               ca.name, ca.name);
        if (rc == ENR_OK) {
            e->certificates[i] = ca.certificate; /* taken over */
            ca.certificate.data = NULL;
            ca.certificate.len = 0;
            e->certificate_count = i + 1;
        }
        enr_ca_record_free(&ca);
        if (rc != ENR_OK)
            return rc;
    }
    return ENR_OK;
}

static enr_code attach_device_cert(const admin_args *a, enr_enrollment *e, enr_error *err)
{
    X509 *x = NULL;
    enr_code rc = read_certificate(a->x509_cert, &x, err);
    if (rc == ENR_OK && X509_check_ca(x) >= 1)
        rc = enr_error_set(err, ENR_E_POLICY,
                           "%s: a CA certificate; --x509-cert takes the device's own certificate "
                           "(for devices under a CA, make a group with --x509-ca)",
                           a->x509_cert);
    if (rc == ENR_OK) {
        e->certificates = calloc(1, sizeof *e->certificates);
        rc = e->certificates != NULL ? der_of(x, &e->certificates[0], err)
                                     : enr_error_set(err, ENR_E_NOMEM, "out of memory");
        if (rc == ENR_OK)
            e->certificate_count = 1;
    }
    X509_free(x);
    return rc;
}

static int enrollment_new(enr_enrollment_kind kind, const char *cmd, const char *help, int argc,
                          char **argv)
{
    bool group = kind == ENR_ENROLLMENT_GROUP;
    admin_args a;
    uint64_t allowed = O(POLICY) | O(SYMMETRIC) | O(HUB) | (group ? O(X509_CA) : O(X509_CERT));
    int rc = parse_admin_args(cmd, help, allowed, argc, argv, &a);
    if (rc != CLI_EXIT_OK)
        return rc < 0 ? CLI_EXIT_OK : rc;
    if ((rc = want_args(cmd, argc, argv, 1, group ? "group id" : "registration id")) != CLI_EXIT_OK)
        return rc;
    const char *id = argv[optind];
    bool x509 = group ? a.x509_ca_count > 0 : a.x509_cert != NULL;
    if (a.symmetric == x509)
        return cli_usage(cmd, "choose the attestation: --symmetric or %s",
                         group ? "--x509-ca NAME" : "--x509-cert FILE");
    if (a.policy == NULL)
        return cli_usage(cmd, "--policy NAME (a credential policy) is required");
    if (!enr_registration_id_valid(id))
        return cli_usage(cmd, "%s '%.130s' must be 1 to 128 characters of A-Z a-z 0-9 . _ : - ending in a "
                              "letter, digit or '-'",
                         group ? "group id" : "registration id", id);
    const char *hub = a.hub ? a.hub : DEFAULT_HUB;
    if (!hub_valid(hub))
        return cli_usage(cmd, "--hub '%.260s' is not HOST or HOST:PORT (e.g. mqtt.example.com:8883)", hub);
    for (size_t i = 0; i < a.x509_ca_count; i++)
        for (size_t j = 0; j < i; j++)
            if (strcmp(a.x509_ca[i], a.x509_ca[j]) == 0)
                return cli_usage(cmd, "--x509-ca %s is given twice", a.x509_ca[i]);
    enr_enrollment e = {0};
    e.kind = kind;
    e.attestation = x509 ? ENR_ATTEST_X509 : ENR_ATTEST_SYMMETRIC;
    e.enabled = true;
    if ((rc = copy_field(cmd, "the id", e.id, sizeof e.id, id)) != CLI_EXIT_OK ||
        (rc = copy_field(cmd, "--policy", e.policy, sizeof e.policy, a.policy)) != CLI_EXIT_OK ||
        (rc = copy_field(cmd, "--hub", e.assigned_hub, sizeof e.assigned_hub, hub)) != CLI_EXIT_OK)
        return rc;
    enr_error err;
    enr_store *store = NULL;
    enr_credential_policy policy;
    enr_code code = open_store(&a, false, &store, &err);
    if (code == ENR_OK)
        code = get_policy(store, &a, a.policy, &policy, &err);
    if (code == ENR_OK && x509 && group)
        code = attach_bootstrap_cas(store, &a, &e, &err);
    else if (code == ENR_OK && x509)
        code = attach_device_cert(&a, &e, &err);
    else if (code == ENR_OK) {
        code = new_key(e.primary_key, &err);
        if (code == ENR_OK)
            code = new_key(e.secondary_key, &err);
    }
    if (code == ENR_OK) {
        enr_audit_event ev;
        char how[300];
        if (!x509)
            snprintf(how, sizeof how, "symmetric keys generated");
        else if (!group)
            snprintf(how, sizeof how, "x509, the device certificate in %s", a.x509_cert);
        else {
            snprintf(how, sizeof how, "x509 under CA");
            for (size_t i = 0; i < a.x509_ca_count; i++) {
                size_t used = strlen(how);
                snprintf(how + used, sizeof how - used, "%s '%s'", i ? "," : "", a.x509_ca[i]);
            }
        }
        audit_set(&ev, group ? "admin.group.create" : "admin.individual.create", group ? NULL : id, "ok",
                  "%s '%s' created: %s, policy '%s', hub '%s'", kind_words(kind), id, how, e.policy,
                  e.assigned_hub);
        code = enr_store_create_enrollment(store, &e, &ev, &err);
    }
    enr_store_close(store);
    if (code != ENR_OK) {
        enr_enrollment_free(&e);
        return cli_fail(&err, a.json);
    }
    if (a.json) {
        json_t *o = enrollment_json(&e, true);
        json_object_set_new(o, "action", json_string("created"));
        print_json(o);
    } else {
        printf("created ");
        enrollment_text(&e);
        if (!x509) {
            printf("  Primary key:   %s\n  Secondary key: %s\n", e.primary_key, e.secondary_key);
            printf("Keep the keys secret. `enroll admin key show --%s %s --data %s` prints them again%s.\n",
                   kind_noun(kind), e.id, a.data,
                   group ? "; `enroll admin key derive` makes each device's key" : "");
        }
    }
    enr_enrollment_free(&e);
    return CLI_EXIT_OK;
}

static int enrollment_list(enr_enrollment_kind kind, const char *cmd, const char *help, int argc,
                           char **argv)
{
    admin_args a;
    int rc = parse_admin_args(cmd, help, 0, argc, argv, &a);
    if (rc != CLI_EXIT_OK)
        return rc < 0 ? CLI_EXIT_OK : rc;
    if ((rc = want_args(cmd, argc, argv, 0, NULL)) != CLI_EXIT_OK)
        return rc;
    enr_error err;
    enr_store *store = NULL;
    enr_enrollment_list list = {0};
    enr_code code = open_store(&a, false, &store, &err);
    if (code == ENR_OK)
        code = enr_store_list_enrollments(store, kind, &list, &err);
    enr_store_close(store);
    if (code != ENR_OK)
        return cli_fail(&err, a.json);
    json_t *arr = json_array();
    for (size_t i = 0; i < list.count; i++) {
        const enr_enrollment *e = &list.items[i];
        if (a.json)
            json_array_append_new(arr, enrollment_json(e, false));
        else
            printf("%-32s %-9s policy %-16s hub %-24s %s\n", e->id,
                   e->attestation == ENR_ATTEST_SYMMETRIC ? "symmetric" : "x509",
                   e->policy[0] ? e->policy : "-", e->assigned_hub, e->enabled ? "enabled" : "DISABLED");
    }
    if (a.json)
        print_json(arr);
    else {
        if (list.count == 0)
            printf("(no %ss)\n", kind_words(kind));
        json_decref(arr);
    }
    enr_enrollment_list_free(&list);
    return CLI_EXIT_OK;
}

static int enrollment_show(enr_enrollment_kind kind, const char *cmd, const char *help, int argc,
                           char **argv)
{
    admin_args a;
    int rc = parse_admin_args(cmd, help, 0, argc, argv, &a);
    if (rc != CLI_EXIT_OK)
        return rc < 0 ? CLI_EXIT_OK : rc;
    if ((rc = want_args(cmd, argc, argv, 1, kind == ENR_ENROLLMENT_GROUP ? "group id" : "registration id")) !=
        CLI_EXIT_OK)
        return rc;
    enr_error err;
    enr_store *store = NULL;
    enr_enrollment e = {0};
    enr_registration_list regs = {0};
    enr_code code = open_store(&a, false, &store, &err);
    if (code == ENR_OK)
        code = get_enrollment(store, &a, kind, argv[optind], &e, &err);
    if (code == ENR_OK) {
        enr_registration_filter f = {.enrollment_kind = kind, .enrollment_id = e.id};
        code = enr_store_list_registrations(store, &f, &regs, &err);
    }
    enr_store_close(store);
    if (code != ENR_OK) {
        enr_enrollment_free(&e);
        return cli_fail(&err, a.json);
    }
    if (a.json) {
        json_t *o = enrollment_json(&e, false);
        json_object_set_new(o, "registrations", json_integer((json_int_t)regs.count));
        print_json(o);
    } else {
        enrollment_text(&e);
        if (e.attestation == ENR_ATTEST_SYMMETRIC)
            printf("  Keys:        primary%s (`enroll admin key show --%s %s`)\n",
                   e.secondary_key[0] ? " and secondary" : "", kind_noun(kind), e.id);
        printf("  Registrations: %zu\n", regs.count);
    }
    enr_registration_list_free(&regs);
    enr_enrollment_free(&e);
    return CLI_EXIT_OK;
}

static int enrollment_set_enabled(enr_enrollment_kind kind, bool enabled, const char *cmd,
                                  const char *help, int argc, char **argv)
{
    admin_args a;
    int rc = parse_admin_args(cmd, help, 0, argc, argv, &a);
    if (rc != CLI_EXIT_OK)
        return rc < 0 ? CLI_EXIT_OK : rc;
    if ((rc = want_args(cmd, argc, argv, 1, kind == ENR_ENROLLMENT_GROUP ? "group id" : "registration id")) !=
        CLI_EXIT_OK)
        return rc;
    enr_error err;
    enr_store *store = NULL;
    enr_enrollment e = {0};
    bool changed = false;
    enr_code code = open_store(&a, false, &store, &err);
    if (code == ENR_OK)
        code = get_enrollment(store, &a, kind, argv[optind], &e, &err);
    if (code == ENR_OK && e.enabled != enabled) {
        enr_audit_event ev;
        char kind_text[48];
        snprintf(kind_text, sizeof kind_text, "admin.%s.%s", kind_noun(kind), enabled ? "enable" : "disable");
        audit_set(&ev, kind_text, kind == ENR_ENROLLMENT_INDIVIDUAL ? e.id : NULL, "ok", "%s '%s' %s",
                  kind_words(kind), e.id, enabled ? "enabled" : "disabled");
        code = enr_store_set_enrollment_enabled(store, kind, e.id, enabled, &ev, &err);
        changed = code == ENR_OK;
    }
    if (code == ENR_OK && changed) {
        enr_enrollment_free(&e);
        code = get_enrollment(store, &a, kind, argv[optind], &e, &err);
    }
    enr_store_close(store);
    if (code != ENR_OK) {
        enr_enrollment_free(&e);
        return cli_fail(&err, a.json);
    }
    if (a.json) {
        json_t *o = enrollment_json(&e, false);
        json_object_set_new(o, "changed", json_boolean(changed));
        print_json(o);
    } else if (changed) {
        printf("%s '%s' %s\n", kind_words(kind), e.id,
               enabled ? "enabled: its devices may register again"
                       : "disabled: no new registrations (issued certificates stay valid until revoked)");
    } else {
        printf("%s '%s' is %s already; nothing changed\n", kind_words(kind), e.id,
               enabled ? "enabled" : "disabled");
    }
    enr_enrollment_free(&e);
    return CLI_EXIT_OK;
}

static int group_new(const char *cmd, const char *help, int argc, char **argv)
{
    return enrollment_new(ENR_ENROLLMENT_GROUP, cmd, help, argc, argv);
}
static int group_list(const char *cmd, const char *help, int argc, char **argv)
{
    return enrollment_list(ENR_ENROLLMENT_GROUP, cmd, help, argc, argv);
}
static int group_show(const char *cmd, const char *help, int argc, char **argv)
{
    return enrollment_show(ENR_ENROLLMENT_GROUP, cmd, help, argc, argv);
}
static int group_disable(const char *cmd, const char *help, int argc, char **argv)
{
    return enrollment_set_enabled(ENR_ENROLLMENT_GROUP, false, cmd, help, argc, argv);
}
static int group_enable(const char *cmd, const char *help, int argc, char **argv)
{
    return enrollment_set_enabled(ENR_ENROLLMENT_GROUP, true, cmd, help, argc, argv);
}
static int individual_new(const char *cmd, const char *help, int argc, char **argv)
{
    return enrollment_new(ENR_ENROLLMENT_INDIVIDUAL, cmd, help, argc, argv);
}
static int individual_list(const char *cmd, const char *help, int argc, char **argv)
{
    return enrollment_list(ENR_ENROLLMENT_INDIVIDUAL, cmd, help, argc, argv);
}
static int individual_show(const char *cmd, const char *help, int argc, char **argv)
{
    return enrollment_show(ENR_ENROLLMENT_INDIVIDUAL, cmd, help, argc, argv);
}
static int individual_disable(const char *cmd, const char *help, int argc, char **argv)
{
    return enrollment_set_enabled(ENR_ENROLLMENT_INDIVIDUAL, false, cmd, help, argc, argv);
}
static int individual_enable(const char *cmd, const char *help, int argc, char **argv)
{
    return enrollment_set_enabled(ENR_ENROLLMENT_INDIVIDUAL, true, cmd, help, argc, argv);
}

/* ---- keys ----------------------------------------------------------------- */

/* A symmetric-key enrollment, or a refusal naming its attestation. */
static enr_code get_symmetric(enr_store *store, const admin_args *a, enr_enrollment_kind kind,
                              const char *id, enr_enrollment *e, enr_error *err)
{
    enr_code rc = get_enrollment(store, a, kind, id, e, err);
    if (rc == ENR_OK && e->attestation != ENR_ATTEST_SYMMETRIC)
        rc = enr_error_set(err, ENR_E_POLICY, "%s '%s' uses X.509 attestation: it has no keys",
                           kind_words(kind), e->id);
    return rc;
}

static int key_show(const char *cmd, const char *help, int argc, char **argv)
{
    admin_args a;
    int rc = parse_admin_args(cmd, help, O(GROUP) | O(INDIVIDUAL), argc, argv, &a);
    if (rc != CLI_EXIT_OK)
        return rc < 0 ? CLI_EXIT_OK : rc;
    if ((rc = want_args(cmd, argc, argv, 0, NULL)) != CLI_EXIT_OK)
        return rc;
    if ((a.group == NULL) == (a.individual == NULL))
        return cli_usage(cmd, "give exactly one of --group ID or --individual RID");
    enr_enrollment_kind kind = a.group ? ENR_ENROLLMENT_GROUP : ENR_ENROLLMENT_INDIVIDUAL;
    const char *id = a.group ? a.group : a.individual;
    enr_error err;
    enr_store *store = NULL;
    enr_enrollment e = {0};
    enr_code code = open_store(&a, false, &store, &err);
    if (code == ENR_OK)
        code = get_symmetric(store, &a, kind, id, &e, &err);
    if (code == ENR_OK) {
        enr_audit_event ev;
        audit_set(&ev, "admin.key.show", kind == ENR_ENROLLMENT_INDIVIDUAL ? e.id : NULL, "ok",
                  "keys of %s '%s' shown", kind_words(kind), e.id);
        code = enr_store_record_audit(store, &ev, &err);
    }
    enr_store_close(store);
    if (code != ENR_OK) {
        enr_enrollment_free(&e);
        return cli_fail(&err, a.json);
    }
    if (a.json) {
        json_t *o = json_object();
        json_object_set_new(o, kind == ENR_ENROLLMENT_GROUP ? "group_id" : "registration_id",
                            json_string(e.id));
        json_object_set_new(o, "primary_key", json_string(e.primary_key));
        json_object_set_new(o, "secondary_key", json_text(e.secondary_key));
        print_json(o);
    } else {
        printf("%s '%s'\n  Primary key:   %s\n  Secondary key: %s\n", kind_words(kind), e.id, e.primary_key,
               e.secondary_key[0] ? e.secondary_key : "(none)");
    }
    enr_enrollment_free(&e);
    return CLI_EXIT_OK;
}

static int key_derive(const char *cmd, const char *help, int argc, char **argv)
{
    admin_args a;
    int rc = parse_admin_args(cmd, help, O(GROUP) | O(REGISTRATION_ID) | O(SECONDARY), argc, argv, &a);
    if (rc != CLI_EXIT_OK)
        return rc < 0 ? CLI_EXIT_OK : rc;
    if ((rc = want_args(cmd, argc, argv, 0, NULL)) != CLI_EXIT_OK)
        return rc;
    if (a.group == NULL || a.registration_id == NULL)
        return cli_usage(cmd, "--group ID and --registration-id RID are required");
    if (!enr_registration_id_valid(a.registration_id))
        return cli_usage(cmd, "--registration-id '%.130s' must be 1 to 128 characters of A-Z a-z 0-9 . _ : - "
                              "ending in a letter, digit or '-'",
                         a.registration_id);
    enr_error err;
    enr_store *store = NULL;
    enr_enrollment e = {0};
    char *device_key = NULL;
    enr_code code = open_store(&a, false, &store, &err);
    if (code == ENR_OK)
        code = get_symmetric(store, &a, ENR_ENROLLMENT_GROUP, a.group, &e, &err);
    if (code == ENR_OK && a.secondary && e.secondary_key[0] == '\0')
        code = enr_error_set(&err, ENR_E_POLICY, "enrollment group '%s' has no secondary key", e.id);
    if (code == ENR_OK)
        code = enr_sas_derive_device_key(a.secondary ? e.secondary_key : e.primary_key, a.registration_id,
                                         &device_key, &err);
    if (code == ENR_OK) {
        enr_audit_event ev;
        audit_set(&ev, "admin.key.derive", a.registration_id, "ok",
                  "device key of '%s' derived from the %s key of enrollment group '%s'", a.registration_id,
                  a.secondary ? "secondary" : "primary", e.id);
        code = enr_store_record_audit(store, &ev, &err);
    }
    enr_store_close(store);
    if (code != ENR_OK) {
        enr_sas_secret_free(device_key);
        enr_enrollment_free(&e);
        return cli_fail(&err, a.json);
    }
    if (a.json) {
        json_t *o = json_object();
        json_object_set_new(o, "group_id", json_string(e.id));
        json_object_set_new(o, "registration_id", json_string(a.registration_id));
        json_object_set_new(o, "from", json_string(a.secondary ? "secondary" : "primary"));
        json_object_set_new(o, "device_key", json_string(device_key));
        print_json(o);
    } else {
        printf("%s\n", device_key);
    }
    enr_sas_secret_free(device_key);
    enr_enrollment_free(&e);
    return CLI_EXIT_OK;
}

/* ---- registrations -------------------------------------------------------- */

static json_t *certificate_json(const enr_certificate *c)
{
    json_t *o = json_object();
    json_object_set_new(o, "id", json_integer((json_int_t)c->id));
    json_object_set_new(o, "serial", json_string(c->serial));
    json_object_set_new(o, "issuer", json_text(c->issuer));
    json_object_set_new(o, "subject", json_text(c->subject));
    json_object_set_new(o, "registration_id", json_text(c->registration_id));
    json_object_set_new(o, "policy", json_text(c->policy));
    json_object_set_new(o, "not_before", json_time(c->not_before));
    json_object_set_new(o, "not_after", json_time(c->not_after));
    json_object_set_new(o, "issued_at", json_time(c->issued_at));
    json_object_set_new(o, "spki_sha256", json_text(c->spki_sha256));
    json_object_set_new(o, "revoked", json_boolean(c->revoked));
    if (c->revoked) {
        json_object_set_new(o, "reason", json_string(enr_revocation_reason_name(c->revocation_reason)));
        json_object_set_new(o, "revoked_at", json_time(c->revoked_at));
    }
    return o;
}

static void certificate_text(const enr_certificate *c)
{
    char until[32];
    time_text(c->not_after, until, sizeof until);
    printf("%-40s %s  %-24s %s  (issuer %s)%s%s\n", c->serial, until,
           c->registration_id[0] ? c->registration_id : "-", c->subject, c->issuer,
           c->revoked ? "  REVOKED " : "",
           c->revoked ? enr_revocation_reason_name(c->revocation_reason) : "");
}

static json_t *registration_json(const enr_registration *r)
{
    json_t *o = json_object();
    json_object_set_new(o, "registration_id", json_string(r->registration_id));
    json_object_set_new(o, "enrollment_kind", json_string(kind_noun(r->enrollment_kind)));
    json_object_set_new(o, "enrollment_id", json_string(r->enrollment_id));
    json_object_set_new(o, "status", json_string(r->status));
    json_object_set_new(o, "substatus", json_text(r->substatus));
    json_object_set_new(o, "device_id", json_text(r->device_id));
    json_object_set_new(o, "assigned_hub", json_text(r->assigned_hub));
    json_object_set_new(o, "etag", json_text(r->etag));
    json_object_set_new(o, "created_at", json_time(r->created_at));
    json_object_set_new(o, "updated_at", json_time(r->updated_at));
    json_object_set_new(o, "last_certificate",
                        r->last_certificate_serial[0]
                            ? json_pack("{s:s,s:s}", "issuer", r->last_certificate_issuer, "serial",
                                        r->last_certificate_serial)
                            : json_null());
    return o;
}

static int registration_list(const char *cmd, const char *help, int argc, char **argv)
{
    admin_args a;
    int rc = parse_admin_args(cmd, help, O(GROUP) | O(INDIVIDUAL) | O(STATUS), argc, argv, &a);
    if (rc != CLI_EXIT_OK)
        return rc < 0 ? CLI_EXIT_OK : rc;
    if ((rc = want_args(cmd, argc, argv, 0, NULL)) != CLI_EXIT_OK)
        return rc;
    if (a.group != NULL && a.individual != NULL)
        return cli_usage(cmd, "give --group ID or --individual RID, not both");
    static const char *const STATUSES[] = {"assigning", "assigned", "failed", "disabled", "unassigned", NULL};
    bool status_ok = a.status == NULL;
    for (size_t i = 0; !status_ok && STATUSES[i] != NULL; i++)
        status_ok = strcmp(a.status, STATUSES[i]) == 0;
    if (!status_ok)
        return cli_usage(cmd, "--status '%s': choose assigning, assigned, failed, disabled or unassigned",
                         a.status);
    enr_registration_filter f = {0};
    f.status = a.status;
    if (a.group != NULL || a.individual != NULL) {
        f.enrollment_kind = a.group ? ENR_ENROLLMENT_GROUP : ENR_ENROLLMENT_INDIVIDUAL;
        f.enrollment_id = a.group ? a.group : a.individual;
    }
    enr_error err;
    enr_store *store = NULL;
    enr_registration_list list = {0};
    enr_enrollment e = {0};
    enr_code code = open_store(&a, false, &store, &err);
    /* An unknown enrollment is a mistake, not an empty list. */
    if (code == ENR_OK && f.enrollment_id != NULL)
        code = get_enrollment(store, &a, f.enrollment_kind, f.enrollment_id, &e, &err);
    enr_enrollment_free(&e);
    if (code == ENR_OK)
        code = enr_store_list_registrations(store, &f, &list, &err);
    enr_store_close(store);
    if (code != ENR_OK)
        return cli_fail(&err, a.json);
    json_t *arr = json_array();
    for (size_t i = 0; i < list.count; i++) {
        const enr_registration *r = &list.items[i];
        if (a.json) {
            json_array_append_new(arr, registration_json(r));
            continue;
        }
        char updated[32];
        time_text(r->updated_at, updated, sizeof updated);
        printf("%-32s %-10s %s %-24s hub %-24s %s  last %s\n", r->registration_id, r->status,
               kind_noun(r->enrollment_kind), r->enrollment_id, r->assigned_hub[0] ? r->assigned_hub : "-",
               updated, r->last_certificate_serial[0] ? r->last_certificate_serial : "-");
    }
    if (a.json)
        print_json(arr);
    else {
        if (list.count == 0)
            printf("(no registrations)\n");
        json_decref(arr);
    }
    enr_registration_list_free(&list);
    return CLI_EXIT_OK;
}

static int registration_show(const char *cmd, const char *help, int argc, char **argv)
{
    admin_args a;
    int rc = parse_admin_args(cmd, help, 0, argc, argv, &a);
    if (rc != CLI_EXIT_OK)
        return rc < 0 ? CLI_EXIT_OK : rc;
    if ((rc = want_args(cmd, argc, argv, 1, "registration id")) != CLI_EXIT_OK)
        return rc;
    enr_error err;
    enr_store *store = NULL;
    enr_registration r;
    enr_certificate_list certs = {0};
    enr_code code = open_store(&a, false, &store, &err);
    if (code == ENR_OK)
        code = no_such(enr_store_get_registration(store, argv[optind], &r, &err), &err,
                       " (see `enroll admin registration list`)");
    if (code == ENR_OK) {
        enr_certificate_filter f = {.registration_id = r.registration_id};
        code = enr_store_list_certificates(store, &f, &certs, &err);
    }
    enr_store_close(store);
    if (code != ENR_OK)
        return cli_fail(&err, a.json);
    if (a.json) {
        json_t *o = registration_json(&r);
        json_t *arr = json_array();
        for (size_t i = 0; i < certs.count; i++)
            json_array_append_new(arr, certificate_json(&certs.items[i]));
        json_object_set_new(o, "certificates", arr);
        print_json(o);
    } else {
        char created[32], updated[32];
        time_text(r.created_at, created, sizeof created);
        time_text(r.updated_at, updated, sizeof updated);
        printf("registration '%s'\n  Status:      %s%s%s\n  Enrollment:  %s '%s'\n  Device id:   %s\n"
               "  Hub:         %s\n  Created:     %s\n  Updated:     %s\n  Certificates: %zu\n",
               r.registration_id, r.status, r.substatus[0] ? " / " : "", r.substatus,
               kind_words(r.enrollment_kind), r.enrollment_id, r.device_id[0] ? r.device_id : "-",
               r.assigned_hub[0] ? r.assigned_hub : "-", created, updated, certs.count);
        for (size_t i = 0; i < certs.count; i++) {
            printf("    ");
            certificate_text(&certs.items[i]);
        }
    }
    enr_certificate_list_free(&certs);
    return CLI_EXIT_OK;
}

static int registration_revoke(const char *cmd, const char *help, int argc, char **argv)
{
    admin_args a;
    int rc = parse_admin_args(cmd, help, O(REASON), argc, argv, &a);
    if (rc != CLI_EXIT_OK)
        return rc < 0 ? CLI_EXIT_OK : rc;
    if ((rc = want_args(cmd, argc, argv, 1, "registration id")) != CLI_EXIT_OK)
        return rc;
    if (a.reason == NULL)
        return cli_usage(cmd, "--reason R is required (e.g. keyCompromise, superseded, "
                              "cessationOfOperation)");
    enr_error err;
    int reason = 0;
    if (enr_revocation_reason_parse(a.reason, &reason, &err) != ENR_OK)
        return cli_usage(cmd, "%s", err.message);
    enr_store *store = NULL;
    enr_registration r;
    enr_certificate_list revoked = {0};
    enr_code code = open_store(&a, false, &store, &err);
    if (code == ENR_OK)
        code = no_such(enr_store_get_registration(store, argv[optind], &r, &err), &err,
                       " (see `enroll admin registration list`)");
    if (code == ENR_OK) {
        enr_audit_event ev;
        audit_set(&ev, "admin.registration.revoke", r.registration_id, "ok",
                  "every certificate of registration '%s' revoked: %s", r.registration_id,
                  enr_revocation_reason_name(reason));
        code = enr_store_revoke_registration(store, r.registration_id, reason, 0, &ev, &revoked, &err);
    }
    enr_store_close(store);
    if (code != ENR_OK)
        return cli_fail(&err, a.json);
    if (a.json) {
        json_t *o = json_object();
        json_object_set_new(o, "registration_id", json_string(r.registration_id));
        json_object_set_new(o, "reason", json_string(enr_revocation_reason_name(reason)));
        json_t *arr = json_array();
        for (size_t i = 0; i < revoked.count; i++)
            json_array_append_new(arr, certificate_json(&revoked.items[i]));
        json_object_set_new(o, "revoked", arr);
        print_json(o);
    } else {
        if (revoked.count == 0)
            printf("registration '%s' has no certificate left to revoke\n", r.registration_id);
        else
            printf("revoked %zu certificate%s of registration '%s' (%s):\n", revoked.count,
                   revoked.count == 1 ? "" : "s", r.registration_id, enr_revocation_reason_name(reason));
        for (size_t i = 0; i < revoked.count; i++) {
            printf("    ");
            certificate_text(&revoked.items[i]);
        }
        fprintf(stderr, "note: the device may register again while its %s '%s' is enabled\n",
                kind_words(r.enrollment_kind), r.enrollment_id);
    }
    enr_certificate_list_free(&revoked);
    return CLI_EXIT_OK;
}

/* ---- certificates --------------------------------------------------------- */

static int cert_list(const char *cmd, const char *help, int argc, char **argv)
{
    admin_args a;
    int rc = parse_admin_args(cmd, help, O(EXPIRING) | O(REVOKED) | O(REGISTRATION) | O(ISSUER), argc, argv,
                              &a);
    if (rc != CLI_EXIT_OK)
        return rc < 0 ? CLI_EXIT_OK : rc;
    if ((rc = want_args(cmd, argc, argv, 0, NULL)) != CLI_EXIT_OK)
        return rc;
    enr_error err;
    enr_certificate_filter f = {0};
    f.now = time(NULL);
    if (a.expiring != NULL) {
        enr_duration d;
        if (enr_duration_parse(a.expiring, &d, &err) != ENR_OK)
            return cli_usage(cmd, "--expiring: %s", err.message);
        time_t until = enr_duration_apply(f.now, &d, 1);
        f.expiring_within = until > f.now ? (int64_t)(until - f.now) : 0;
        if (f.expiring_within == 0)
            return cli_usage(cmd, "--expiring '%s' is not a period into the future", a.expiring);
    }
    f.revoked = a.revoked ? ENR_REVOKED_ONLY : a.expiring ? ENR_REVOKED_NONE : ENR_REVOKED_ANY;
    f.registration_id = a.registration;
    f.issuer = a.issuer;
    enr_store *store = NULL;
    enr_certificate_list list = {0};
    enr_code code = open_store(&a, false, &store, &err);
    if (code == ENR_OK)
        code = enr_store_list_certificates(store, &f, &list, &err);
    enr_store_close(store);
    if (code != ENR_OK)
        return cli_fail(&err, a.json);
    json_t *arr = json_array();
    for (size_t i = 0; i < list.count; i++) {
        if (a.json)
            json_array_append_new(arr, certificate_json(&list.items[i]));
        else
            certificate_text(&list.items[i]);
    }
    if (a.json)
        print_json(arr);
    else {
        if (list.count == 0)
            printf("(no certificates)\n");
        json_decref(arr);
    }
    enr_certificate_list_free(&list);
    return CLI_EXIT_OK;
}

/* A serial as `openssl x509 -serial` prints it: upper case, whole octets,
 * no leading zero octets. False when it is not 1 to 40 hex digits. */
static bool canonical_serial(const char *in, char out[ENR_STORE_SERIAL_MAX + 1])
{
    size_t len = strlen(in);
    if (len == 0 || len > ENR_STORE_SERIAL_MAX || strspn(in, "0123456789abcdefABCDEF") != len)
        return false;
    while (*in == '0')
        in++;
    size_t digits = strlen(in), width = digits == 0 ? 2 : digits + (digits & 1);
    memset(out, '0', width - digits);
    for (size_t i = 0; i < digits; i++)
        out[width - digits + i] = (in[i] >= 'a' && in[i] <= 'f') ? (char)(in[i] - 'a' + 'A') : in[i];
    out[width] = '\0';
    return true;
}

/* The one certificate with this serial (from `issuer`, when given). */
static enr_code find_certificate(enr_store *store, const char *issuer, const char *serial,
                                 enr_certificate *out, enr_error *err)
{
    if (issuer != NULL) {
        enr_code rc = enr_store_get_certificate(store, issuer, serial, out, err);
        return no_such(rc, err, " (see `enroll admin cert list`)");
    }
    enr_certificate_list all = {0};
    enr_code rc = enr_store_list_certificates(store, NULL, &all, err);
    size_t found = 0, at = 0;
    for (size_t i = 0; rc == ENR_OK && i < all.count; i++)
        if (strcmp(all.items[i].serial, serial) == 0) {
            found++;
            at = i;
        }
    if (rc == ENR_OK && found == 0)
        rc = enr_error_set(err, ENR_E_NOTFOUND, "no certificate with serial %s in the store (see `enroll "
                                                "admin cert list`)",
                           serial);
    else if (rc == ENR_OK && found > 1)
        rc = enr_error_set(err, ENR_E_USAGE,
                           "%zu certificates from different issuers have serial %s: give --issuer DN as "
                           "`enroll admin cert list` prints it",
                           found, serial);
    if (rc == ENR_OK) {
        *out = all.items[at];
        memset(&all.items[at], 0, sizeof all.items[at]); /* taken over */
    }
    enr_certificate_list_free(&all);
    return rc;
}

static int cert_revoke(const char *cmd, const char *help, int argc, char **argv)
{
    admin_args a;
    int rc = parse_admin_args(cmd, help, O(SERIAL) | O(ISSUER) | O(REASON), argc, argv, &a);
    if (rc != CLI_EXIT_OK)
        return rc < 0 ? CLI_EXIT_OK : rc;
    if ((rc = want_args(cmd, argc, argv, 0, NULL)) != CLI_EXIT_OK)
        return rc;
    if (a.serial == NULL || a.reason == NULL)
        return cli_usage(cmd, "--serial HEX and --reason R are required");
    char serial[ENR_STORE_SERIAL_MAX + 1];
    if (!canonical_serial(a.serial, serial))
        return cli_usage(cmd, "--serial '%.50s' is not 1 to %d hex digits (as `openssl x509 -serial` "
                              "prints it)",
                         a.serial, ENR_STORE_SERIAL_MAX);
    enr_error err;
    int reason = 0;
    if (enr_revocation_reason_parse(a.reason, &reason, &err) != ENR_OK)
        return cli_usage(cmd, "%s", err.message);
    enr_store *store = NULL;
    enr_certificate c = {0};
    enr_code code = open_store(&a, false, &store, &err);
    if (code == ENR_OK)
        code = find_certificate(store, a.issuer, serial, &c, &err);
    if (code == ENR_E_USAGE) {
        enr_store_close(store);
        return cli_usage(cmd, "%s", err.message);
    }
    if (code == ENR_OK && c.revoked)
        code = enr_error_set(&err, ENR_E_EXISTS, "certificate %s from issuer '%s' is revoked already (%s)",
                             c.serial, c.issuer, enr_revocation_reason_name(c.revocation_reason));
    if (code == ENR_OK) {
        enr_audit_event ev;
        audit_set(&ev, "admin.cert.revoke", c.registration_id, "ok",
                  "certificate %s from issuer '%s' revoked: %s", c.serial, c.issuer,
                  enr_revocation_reason_name(reason));
        code = enr_store_revoke_certificate(store, c.issuer, c.serial, reason, 0, &ev, &err);
    }
    enr_store_close(store);
    if (code != ENR_OK) {
        enr_certificate_free(&c);
        return cli_fail(&err, a.json);
    }
    if (a.json) {
        c.revoked = true;
        c.revocation_reason = reason;
        c.revoked_at = time(NULL);
        json_t *o = certificate_json(&c);
        json_object_set_new(o, "action", json_string("revoked"));
        print_json(o);
    } else {
        printf("revoked certificate %s from issuer '%s'%s%s%s (%s)\n", c.serial, c.issuer,
               c.registration_id[0] ? " of registration '" : "", c.registration_id,
               c.registration_id[0] ? "'" : "", enr_revocation_reason_name(reason));
    }
    enr_certificate_free(&c);
    return CLI_EXIT_OK;
}

/* ---- audit ---------------------------------------------------------------- */

static int audit_list(const char *cmd, const char *help, int argc, char **argv)
{
    admin_args a;
    int rc = parse_admin_args(cmd, help, O(REGISTRATION), argc, argv, &a);
    if (rc != CLI_EXIT_OK)
        return rc < 0 ? CLI_EXIT_OK : rc;
    if ((rc = want_args(cmd, argc, argv, 0, NULL)) != CLI_EXIT_OK)
        return rc;
    enr_error err;
    enr_audit_filter f = {.registration_id = a.registration};
    enr_store *store = NULL;
    enr_audit_list list = {0};
    enr_code code = open_store(&a, false, &store, &err);
    if (code == ENR_OK)
        code = enr_store_list_audit(store, &f, &list, &err);
    enr_store_close(store);
    if (code != ENR_OK)
        return cli_fail(&err, a.json);
    json_t *arr = json_array();
    for (size_t i = 0; i < list.count; i++) {
        const enr_audit_event *ev = &list.items[i];
        if (a.json) {
            json_t *o = json_object();
            json_object_set_new(o, "id", json_integer((json_int_t)ev->id));
            json_object_set_new(o, "at", json_time(ev->at));
            json_object_set_new(o, "kind", json_string(ev->kind));
            json_object_set_new(o, "registration_id", json_text(ev->registration_id));
            json_object_set_new(o, "outcome", json_string(ev->outcome));
            json_object_set_new(o, "reason_code", json_integer(ev->reason_code));
            json_object_set_new(o, "detail", json_text(ev->detail));
            json_array_append_new(arr, o);
            continue;
        }
        char at[32];
        time_text(ev->at, at, sizeof at);
        printf("%s  %-26s %-8s %-24s", at, ev->kind, ev->outcome,
               ev->registration_id[0] ? ev->registration_id : "-");
        if (ev->reason_code != 0)
            printf(" %d", ev->reason_code);
        printf("  %s\n", ev->detail);
    }
    if (a.json)
        print_json(arr);
    else {
        if (list.count == 0)
            printf("(no audit events)\n");
        json_decref(arr);
    }
    enr_audit_list_free(&list);
    return CLI_EXIT_OK;
}

/* ---- dispatch ------------------------------------------------------------- */

typedef int (*verb_fn)(const char *cmd, const char *help, int argc, char **argv);

typedef struct admin_verb {
    const char *name;
    verb_fn fn;
} admin_verb;

typedef struct admin_noun {
    const char *name;
    const char *help;
    const char *verbs_text; /* for "unknown verb" */
    admin_verb verbs[6];
} admin_noun;

static const admin_noun NOUNS[] = {
    {"ca", CA_HELP, "add, upload, verify, list",
     {{"add", ca_add}, {"upload", ca_upload}, {"verify", ca_verify}, {"list", ca_list}, {NULL, NULL}}},
    {"policy", POLICY_HELP, "new, list", {{"new", policy_new}, {"list", policy_list}, {NULL, NULL}}},
    {"group", GROUP_HELP, "new, list, show, disable, enable",
     {{"new", group_new}, {"list", group_list}, {"show", group_show}, {"disable", group_disable},
      {"enable", group_enable}, {NULL, NULL}}},
    {"individual", INDIVIDUAL_HELP, "new, list, show, disable, enable",
     {{"new", individual_new}, {"list", individual_list}, {"show", individual_show},
      {"disable", individual_disable}, {"enable", individual_enable}, {NULL, NULL}}},
    {"key", KEY_HELP, "show, derive", {{"show", key_show}, {"derive", key_derive}, {NULL, NULL}}},
    {"registration", REGISTRATION_HELP, "list, show, revoke",
     {{"list", registration_list}, {"show", registration_show}, {"revoke", registration_revoke},
      {NULL, NULL}}},
    {"cert", CERT_HELP, "list, revoke", {{"list", cert_list}, {"revoke", cert_revoke}, {NULL, NULL}}},
    {"audit", AUDIT_HELP, "list", {{"list", audit_list}, {NULL, NULL}}},
};

int cli_admin(int argc, char **argv)
{
    if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
        fputs(ADMIN_HELP, argc < 2 ? stderr : stdout);
        return argc < 2 ? CLI_EXIT_USAGE : CLI_EXIT_OK;
    }
    const admin_noun *noun = NULL;
    for (size_t i = 0; i < sizeof NOUNS / sizeof NOUNS[0]; i++)
        if (strcmp(argv[1], NOUNS[i].name) == 0)
            noun = &NOUNS[i];
    if (noun == NULL)
        return cli_usage("admin",
                         "unknown noun '%s' (ca, policy, group, individual, key, registration, cert, audit)",
                         argv[1]);
    char where[64];
    snprintf(where, sizeof where, "admin %s", noun->name);
    if (argc < 3 || strcmp(argv[2], "--help") == 0 || strcmp(argv[2], "-h") == 0) {
        fputs(noun->help, argc < 3 ? stderr : stdout);
        return argc < 3 ? CLI_EXIT_USAGE : CLI_EXIT_OK;
    }
    for (const admin_verb *v = noun->verbs; v->name != NULL; v++) {
        if (strcmp(argv[2], v->name) == 0) {
            char cmd[96];
            snprintf(cmd, sizeof cmd, "%s %s", where, v->name);
            return v->fn(cmd, noun->help, argc - 2, argv + 2);
        }
    }
    return cli_usage(where, "unknown verb '%s' (%s)", argv[2], noun->verbs_text);
}
