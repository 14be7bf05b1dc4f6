/* enroll device provision | status | run | export */
#include <errno.h>
#include <getopt.h>
#include <jansson.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "cli/cli.h"
#include "enroll/device.h"
#include "enroll/duration.h"

static const char DEVICE_HELP[] =
    "Usage: enroll device provision --url URL [--transport https|mqtt] --scope ID --registration-id ID\n"
    "                     (--device-key-file F | --group-key-file F | --bootstrap-cert F --bootstrap-key F)\n"
    "                     --key FILE|pkcs11:URI [--type ec-p256] [--module SO --pin-file F]\n"
    "                     --store DIR --trust ROOT.pem [--ca-trust CA.pem] [--renew-before D]\n"
    "                     [--api-version V] [--retries N] [--timeout S] [--force] [--json]\n"
    "       enroll device provision --protocol aws-fleet --url mqtts://HOST[:PORT] --template NAME\n"
    "                     [--param K=V]... [--thing-name NAME] --bootstrap-cert CLAIM.pem\n"
    "                     --bootstrap-key CLAIM.key --key FILE|pkcs11:URI --store DIR --trust ROOT.pem\n"
    "                     [--ca-trust CA.pem] [--renew-before D] [--retries N] [--timeout S] [--json]\n"
    "       enroll device status --store DIR [--json]\n"
    "       enroll device run    --store DIR [--hook CMD] [--once] [--interval S] [--renew-before D]\n"
    "                     [--rotate-key] [--retries N] [--json]\n"
    "       enroll device export --store DIR --pkcs12 OUT.pfx --pass-file F [--force]\n"
    "\n"
    "provision  Registers with the provisioning service (DPS protocol) using a bootstrap\n"
    "           credential, and stores the issued certificate in DIR. The key is made when\n"
    "           absent (a 0600 file, or inside the token). Before anything is stored the\n"
    "           chain must verify to --ca-trust (default: --trust) for TLS client use, the\n"
    "           leaf must hold the device's key and name CN = the registration id; otherwise\n"
    "           the previous identity stays. Connection errors, 5xx and 429 are retried with\n"
    "           exponential backoff and jitter (--retries attempts, default 6); a refused\n"
    "           credential (HTTP 401/403, an MQTT CONNACK refusal) is not retried.\n"
    "           With --protocol aws-fleet it speaks AWS IoT fleet provisioning by claim\n"
    "           instead (MQTT over mutual TLS with the claim certificate, one connection):\n"
    "           CreateCertificateFromCsr with a CSR whose CN is the thing name asked for,\n"
    "           then RegisterThing under --template with the --param values; it stores the\n"
    "           thing name the service answered. The certificate comes alone: its chain is\n"
    "           built from --ca-trust (give the issuing intermediate with the root) and must\n"
    "           verify for TLS client use. A rejection with statusCode 429 or 5xx is retried;\n"
    "           others (401/403: the certificate is refused) are not.\n"
    "status     The current identity: subject, issuer, serial, expiry, when renewal is due,\n"
    "           and the last result. Exit 3 for a DIR never provisioned (no identity to\n"
    "           read: like a missing file), so a health check can test the exit code.\n"
    "run        The agent: renews when due, over the URL, transport and protocol saved by\n"
    "           provision (over mTLS with the current certificate, falling back to the\n"
    "           bootstrap credential if the service refuses it; aws-fleet: the same\n"
    "           template and parameters, a new CSR), runs --hook\n"
    "           after a new certificate lands (ENROLL_CERT, ENROLL_CHAIN, ENROLL_KEY,\n"
    "           ENROLL_STORE in its environment), waits --interval seconds (default 3600)\n"
    "           between checks, backs off while the service is down, stops on SIGTERM.\n"
    "           --once checks once and exits (0: renewed or not due).\n"
    "export     The identity as an encrypted PKCS#12 file (AES-256, SHA-256 MAC), 0600.\n"
    "\n"
    "Symmetric keys are read from files (the first line, base64 as Azure prints them), never\n"
    "taken on the command line: argv and the environment of a process can be read by other\n"
    "users through ps and /proc. The file's path (not the key) is kept in the store so the\n"
    "agent can fall back to it for renewal.\n"
    "--url URL    the service: https://host[:port][/path] for DPS over HTTPS (port 443 by\n"
    "             default), mqtts://host[:port] for DPS over MQTT 3.1.1 on TLS (port 8883 by\n"
    "             default). Plain http:// and mqtt:// are refused: credentials travel.\n"
    "--transport T  https or mqtt: the URL's scheme already says which; given, it must\n"
    "             agree with it (a port speaks one protocol). Same requests, answers,\n"
    "             credentials and checks either way: over MQTT the SAS token is the CONNECT\n"
    "             password and a certificate (bootstrap or operational) is presented in\n"
    "             the TLS handshake. Saved with the URL: `device run` renews the same way\n"
    "             (re-provision to change either)\n"
    "--protocol P dps (default: Azure DPS's registration) or aws-fleet (AWS IoT fleet\n"
    "             provisioning by claim: mqtts:// URLs, --bootstrap-cert/--bootstrap-key are\n"
    "             the claim certificate and key; --scope, --registration-id, --api-version\n"
    "             and symmetric keys are DPS's). Saved: `device run` renews the same way\n"
    "--template NAME  aws-fleet: the provisioning template ([0-9A-Za-z_-]{1,36})\n"
    "--param K=V  aws-fleet: a RegisterThing parameter (repeat, at most 64); saved and sent\n"
    "             again at each renewal\n"
    "--thing-name NAME  aws-fleet: the thing name asked for, the CSR's CN ([a-zA-Z0-9:_-],\n"
    "             at most 64); default: --param ThingName, else --param SerialNumber\n"
    "--trust      trust anchor(s) for the service's TLS certificate (the system store is\n"
    "             never used); copied into DIR\n"
    "--ca-trust   trust anchor(s) the issued chain must verify to; copied into DIR\n"
    "--renew-before D  renew when now >= notAfter - D (ISO 8601, e.g. P7D); default: the\n"
    "             service's hint, else 2/3 of the certificate's lifetime. Saved by provision;\n"
    "             for run, this run only (a D longer than the lifetime forces one renewal)\n"
    "--store DIR  one process at a time: a second waits for DIR/.lock (and says so).\n"
    "             provision refuses a DIR holding other files and no identity, or another\n"
    "             registration's identity; --force uses or replaces it\n"
    "\n"
    "Examples:\n"
    "  enroll device provision --url https://dps.example:8443 --scope 0ne0001 \\\n"
    "      --registration-id dev-001 --group-key-file group.key --key /var/lib/enroll/device.key \\\n"
    "      --store /var/lib/enroll --trust root.pem\n"
    "  enroll device provision --url mqtts://dps.example:8883 --transport mqtt --scope 0ne0001 \\\n"
    "      --registration-id dev-002 --bootstrap-cert boot.pem --bootstrap-key boot.key \\\n"
    "      --key /var/lib/enroll/device.key --store /var/lib/enroll --trust root.pem\n"
    "  enroll device provision --protocol aws-fleet --url mqtts://iot.example:8883 \\\n"
    "      --template FleetTemplate --param SerialNumber=SN-0042 --bootstrap-cert claim.pem \\\n"
    "      --bootstrap-key claim.key --key /var/lib/enroll/device.key --store /var/lib/enroll \\\n"
    "      --trust root.pem --ca-trust devices-ca-and-root.pem\n"
    "  enroll device provision ... --key 'pkcs11:token=dev;object=devkey' \\\n"
    "      --module /usr/lib/softhsm/libsofthsm2.so --pin-file pin.txt ...\n"
    "  enroll device status --store /var/lib/enroll --json\n"
    "  enroll device run --store /var/lib/enroll --hook 'systemctl restart mqtt-client'\n"
    "  enroll device export --store /var/lib/enroll --pkcs12 device.pfx --pass-file pass.txt\n";

enum { OPT_URL = 1, OPT_TRANSPORT, OPT_SCOPE, OPT_RID, OPT_DEVICE_KEY_FILE, OPT_GROUP_KEY_FILE, OPT_BOOT_CERT, OPT_BOOT_KEY,
       OPT_KEY, OPT_TYPE, OPT_MODULE, OPT_PIN_FILE, OPT_STORE, OPT_TRUST, OPT_CA_TRUST, OPT_RENEW_BEFORE,
       OPT_API, OPT_RETRIES, OPT_TIMEOUT, OPT_JSON, OPT_HOOK, OPT_ONCE, OPT_INTERVAL, OPT_ROTATE, OPT_PKCS12,
       OPT_PASS_FILE, OPT_FORCE, OPT_PROTOCOL, OPT_TEMPLATE, OPT_PARAM, OPT_THING_NAME, OPT_HELP };

static const struct option DEVICE_OPTIONS[] = {
    {"url", required_argument, NULL, OPT_URL},
    {"transport", required_argument, NULL, OPT_TRANSPORT},
    {"scope", required_argument, NULL, OPT_SCOPE},
    {"registration-id", required_argument, NULL, OPT_RID},
    {"device-key-file", required_argument, NULL, OPT_DEVICE_KEY_FILE},
    {"group-key-file", required_argument, NULL, OPT_GROUP_KEY_FILE},
    {"bootstrap-cert", required_argument, NULL, OPT_BOOT_CERT},
    {"bootstrap-key", required_argument, NULL, OPT_BOOT_KEY},
    {"key", required_argument, NULL, OPT_KEY},
    {"type", required_argument, NULL, OPT_TYPE},
    {"module", required_argument, NULL, OPT_MODULE},
    {"pin-file", required_argument, NULL, OPT_PIN_FILE},
    {"store", required_argument, NULL, OPT_STORE},
    {"trust", required_argument, NULL, OPT_TRUST},
    {"ca-trust", required_argument, NULL, OPT_CA_TRUST},
    {"renew-before", required_argument, NULL, OPT_RENEW_BEFORE},
    {"api-version", required_argument, NULL, OPT_API},
    {"retries", required_argument, NULL, OPT_RETRIES},
    {"timeout", required_argument, NULL, OPT_TIMEOUT},
    {"json", no_argument, NULL, OPT_JSON},
    {"hook", required_argument, NULL, OPT_HOOK},
    {"once", no_argument, NULL, OPT_ONCE},
    {"interval", required_argument, NULL, OPT_INTERVAL},
    {"rotate-key", no_argument, NULL, OPT_ROTATE},
    {"pkcs12", required_argument, NULL, OPT_PKCS12},
    {"pass-file", required_argument, NULL, OPT_PASS_FILE},
    {"force", no_argument, NULL, OPT_FORCE},
    {"protocol", required_argument, NULL, OPT_PROTOCOL},
    {"template", required_argument, NULL, OPT_TEMPLATE},
    {"param", required_argument, NULL, OPT_PARAM},
    {"thing-name", required_argument, NULL, OPT_THING_NAME},
    {"help", no_argument, NULL, OPT_HELP},
    {NULL, 0, NULL, 0},
};

#define DEVICE_PARAMS_MAX 64

typedef struct device_args {
    const char *url, *transport, *scope, *rid, *device_key_file, *group_key_file, *boot_cert, *boot_key, *key, *type, *module,
        *pin_file, *store, *trust, *ca_trust, *renew_before, *api, *retries, *timeout, *hook, *interval, *pkcs12,
        *pass_file, *protocol, *template_name, *thing_name;
    /* --param K=V, split at the first '=' (a copy per value) */
    char *param_names[DEVICE_PARAMS_MAX], *param_values[DEVICE_PARAMS_MAX];
    size_t nparams;
    bool json, once, rotate, force, help;
} device_args;

static void device_args_free(device_args *a)
{
    for (size_t i = 0; i < a->nparams; i++)
        free(a->param_names[i]);
    a->nparams = 0;
}

/* NAME=VALUE into the next slot (VALUE may be empty, and may hold '='). */
static int add_param(const char *cmd, device_args *a, const char *text)
{
    const char *eq = strchr(text, '=');
    if (eq == NULL)
        return cli_usage(cmd, "--param '%.64s': give NAME=VALUE", text);
    if (eq == text)
        return cli_usage(cmd, "--param '%.64s': the name before '=' is empty", text);
    if (a->nparams == DEVICE_PARAMS_MAX)
        return cli_usage(cmd, "at most %d --param", DEVICE_PARAMS_MAX);
    char *copy = strdup(text);
    if (copy == NULL)
        return cli_usage(cmd, "out of memory");
    copy[eq - text] = '\0';
    a->param_names[a->nparams] = copy;
    a->param_values[a->nparams++] = copy + (eq - text) + 1;
    return CLI_EXIT_OK;
}

static int parse_device_args(const char *cmd, int argc, char **argv, device_args *a)
{
    memset(a, 0, sizeof *a);
    optind = 0;
    opterr = 0;
    int c;
    while ((c = getopt_long(argc, argv, ":h", DEVICE_OPTIONS, NULL)) != -1) {
        switch (c) {
        case OPT_URL: a->url = optarg; break;
        case OPT_TRANSPORT: a->transport = optarg; break;
        case OPT_SCOPE: a->scope = optarg; break;
        case OPT_RID: a->rid = optarg; break;
        case OPT_DEVICE_KEY_FILE: a->device_key_file = optarg; break;
        case OPT_GROUP_KEY_FILE: a->group_key_file = optarg; break;
        case OPT_BOOT_CERT: a->boot_cert = optarg; break;
        case OPT_BOOT_KEY: a->boot_key = optarg; break;
        case OPT_KEY: a->key = optarg; break;
        case OPT_TYPE: a->type = optarg; break;
        case OPT_MODULE: a->module = optarg; break;
        case OPT_PIN_FILE: a->pin_file = optarg; break;
        case OPT_STORE: a->store = optarg; break;
        case OPT_TRUST: a->trust = optarg; break;
        case OPT_CA_TRUST: a->ca_trust = optarg; break;
        case OPT_RENEW_BEFORE: a->renew_before = optarg; break;
        case OPT_API: a->api = optarg; break;
        case OPT_RETRIES: a->retries = optarg; break;
        case OPT_TIMEOUT: a->timeout = optarg; break;
        case OPT_JSON: a->json = true; break;
        case OPT_HOOK: a->hook = optarg; break;
        case OPT_ONCE: a->once = true; break;
        case OPT_INTERVAL: a->interval = optarg; break;
        case OPT_ROTATE: a->rotate = true; break;
        case OPT_PKCS12: a->pkcs12 = optarg; break;
        case OPT_PASS_FILE: a->pass_file = optarg; break;
        case OPT_FORCE: a->force = true; break;
        case OPT_PROTOCOL: a->protocol = optarg; break;
        case OPT_TEMPLATE: a->template_name = optarg; break;
        case OPT_THING_NAME: a->thing_name = optarg; break;
        case OPT_PARAM: {
            int prc = add_param(cmd, a, optarg);
            if (prc != CLI_EXIT_OK) {
                device_args_free(a);
                return prc;
            }
            break;
        }
        case OPT_HELP:
        case 'h': a->help = true; break;
        case ':': device_args_free(a); return cli_usage(cmd, "option %s needs a value", argv[optind - 1]);
        default: device_args_free(a); return cli_usage(cmd, "unknown option %s", argv[optind - 1]);
        }
    }
    if (optind < argc) {
        device_args_free(a);
        return cli_usage(cmd, "unexpected argument '%s'", argv[optind]);
    }
    /* The protocol and its settings are provision's; the others read them
     * from the store. */
    if (strcmp(cmd, "device provision") != 0 && !a->help &&
        (a->protocol || a->template_name || a->nparams > 0 || a->thing_name)) {
        const char *opt = a->protocol ? "--protocol" : a->template_name ? "--template"
                        : a->nparams > 0 ? "--param" : "--thing-name";
        device_args_free(a);
        return cli_usage(cmd, "%s is provision's (the store keeps what provision was given; provision again to "
                              "change it)", opt);
    }
    return CLI_EXIT_OK;
}

static int parse_count(const char *cmd, const char *opt, const char *text, long min, long max, long *out)
{
    char *end;
    errno = 0;
    long v = strtol(text, &end, 10);
    if (errno != 0 || end == text || *end != '\0' || v < min || v > max)
        return cli_usage(cmd, "%s must be a whole number from %ld to %ld", opt, min, max);
    *out = v;
    return CLI_EXIT_OK;
}

static int parse_renew_before(const char *cmd, const char *text, long *out)
{
    enr_duration d;
    enr_error err;
    if (enr_duration_parse(text, &d, &err) != ENR_OK)
        return cli_usage(cmd, "--renew-before: %s", err.message);
    time_t base = 1700000000;
    *out = (long)(enr_duration_apply(base, &d, 1) - base);
    if (*out <= 0)
        return cli_usage(cmd, "--renew-before must be longer than zero");
    return CLI_EXIT_OK;
}

static void log_stderr(void *ctx, const char *message)
{
    (void)ctx;
    char ts[32];
    enr_time_format(time(NULL), ts, sizeof ts);
    fprintf(stderr, "%s enroll device: %s\n", ts, message);
}

/* The agent says when it will act next: at start and after each round. */
static void log_renewal_due(const enr_device *d)
{
    time_t due = enr_device_renew_at(d), now = time(NULL);
    char at[32], msg[128];
    if (due == 0) {
        log_stderr(NULL, "no certificate yet: provision first");
        return;
    }
    enr_time_format(due, at, sizeof at);
    if (due > now)
        snprintf(msg, sizeof msg, "renewal due at %s (in %.1f days)", at, (double)(due - now) / 86400.0);
    else
        snprintf(msg, sizeof msg, "renewal due since %s", at);
    log_stderr(NULL, msg);
}

static volatile sig_atomic_t g_stop = 0;

static void on_signal(int sig)
{
    (void)sig;
    g_stop = 1;
}

/* Sleeps in short steps so SIGTERM ends the wait promptly. */
static bool sleep_interruptible(void *ctx, long ms)
{
    (void)ctx;
    while (ms > 0 && !g_stop) {
        long step = ms > 200 ? 200 : ms;
        struct timespec ts = {0, step * 1000000L};
        nanosleep(&ts, NULL);
        ms -= step;
    }
    return !g_stop;
}

static json_t *status_json(const enr_device_status *s, time_t now)
{
    char nb[32] = "", na[32] = "", ra[32] = "", la[32] = "", ls[32] = "";
    if (s->not_before)
        enr_time_format(s->not_before, nb, sizeof nb);
    if (s->not_after)
        enr_time_format(s->not_after, na, sizeof na);
    if (s->renew_at)
        enr_time_format(s->renew_at, ra, sizeof ra);
    if (s->last_attempt)
        enr_time_format(s->last_attempt, la, sizeof la);
    if (s->last_success)
        enr_time_format(s->last_success, ls, sizeof ls);
    json_t *o = json_object();
    json_object_set_new(o, "registration_id", json_string(s->registration_id));
    json_object_set_new(o, "url", json_string(s->url));
    json_object_set_new(o, "transport", json_string(s->transport));
    json_object_set_new(o, "protocol", json_string(s->protocol));
    json_object_set_new(o, "id_scope", s->id_scope[0] ? json_string(s->id_scope) : json_null());
    if (strcmp(s->protocol, "aws-fleet") == 0) {
        json_object_set_new(o, "template", json_string(s->template_name));
        json_object_set_new(o, "thing_name", s->thing_name[0] ? json_string(s->thing_name) : json_null());
    }
    json_object_set_new(o, "auth", json_string(s->auth));
    json_object_set_new(o, "key", json_string(s->key_ref));
    json_object_set_new(o, "provisioned", json_boolean(s->generation > 0));
    json_object_set_new(o, "generation", json_integer(s->generation));
    json_object_set_new(o, "subject", json_string(s->subject));
    json_object_set_new(o, "issuer", json_string(s->issuer));
    json_object_set_new(o, "serial", json_string(s->serial));
    json_object_set_new(o, "assigned_hub", s->assigned_hub[0] ? json_string(s->assigned_hub) : json_null());
    json_object_set_new(o, "not_before", nb[0] ? json_string(nb) : json_null());
    json_object_set_new(o, "not_after", na[0] ? json_string(na) : json_null());
    json_object_set_new(o, "renew_at", ra[0] ? json_string(ra) : json_null());
    json_object_set_new(o, "seconds_to_renewal", s->renew_at ? json_integer((json_int_t)(s->renew_at - now)) : json_null());
    json_object_set_new(o, "days_to_renewal",
                        s->renew_at ? json_real((double)(s->renew_at - now) / 86400.0) : json_null());
    json_object_set_new(o, "expired", json_boolean(s->not_after != 0 && now >= s->not_after));
    json_object_set_new(o, "certificate", json_string(s->cert_path));
    json_object_set_new(o, "chain", json_string(s->chain_path));
    json_object_set_new(o, "last_result", json_string(s->last_result));
    json_object_set_new(o, "last_message", json_string(s->last_message));
    json_object_set_new(o, "last_attempt", la[0] ? json_string(la) : json_null());
    json_object_set_new(o, "last_success", ls[0] ? json_string(ls) : json_null());
    return o;
}

static void print_status_text(const enr_device_status *s, time_t now)
{
    char na[32] = "-", ra[32] = "-", la[32] = "-";
    if (s->not_after)
        enr_time_format(s->not_after, na, sizeof na);
    if (s->renew_at)
        enr_time_format(s->renew_at, ra, sizeof ra);
    if (s->last_attempt)
        enr_time_format(s->last_attempt, la, sizeof la);
    if (strcmp(s->protocol, "aws-fleet") == 0) {
        printf("Thing name:      %s (asked for CN=%s)\n", s->thing_name[0] ? s->thing_name : "none yet",
               s->registration_id);
        printf("Service:         %s (%s, template %s, %s)\n", s->url, s->transport, s->template_name, s->auth);
    } else {
        printf("Registration id: %s\n", s->registration_id);
        printf("Service:         %s (%s, idScope %s, %s)\n", s->url, s->transport, s->id_scope, s->auth);
    }
    printf("Protocol:        %s\n", s->protocol);
    if (s->generation == 0) {
        printf("Identity:        none yet\n");
    } else {
        printf("Subject:         %s\n", s->subject);
        printf("Issuer:          %s\n", s->issuer);
        printf("Serial:          %s\n", s->serial);
        printf("Expires:         %s%s\n", na, now >= s->not_after ? " (EXPIRED)" : "");
        printf("Renewal due:     %s (in %.1f days)\n", ra, (double)(s->renew_at - now) / 86400.0);
        printf("Certificate:     %s\n", s->chain_path);
        if (s->assigned_hub[0])
            printf("Assigned hub:    %s\n", s->assigned_hub);
    }
    printf("Last result:     %s at %s: %s\n", s->last_result[0] ? s->last_result : "-", la, s->last_message);
}

/* The command line of aws-fleet: what DPS alone takes is refused by name. */
static int aws_usage_check(const char *cmd, const device_args *a)
{
    const char *dps_only = a->scope ? "--scope" : a->rid ? "--registration-id" : a->api ? "--api-version"
                         : a->device_key_file ? "--device-key-file" : a->group_key_file ? "--group-key-file" : NULL;
    if (dps_only != NULL)
        return cli_usage(cmd, "%s is DPS's: not used with --protocol aws-fleet (the claim certificate is "
                              "--bootstrap-cert with --bootstrap-key)",
                         dps_only);
    if (a->transport && strcmp(a->transport, "mqtt") != 0)
        return cli_usage(cmd, "--protocol aws-fleet speaks MQTT only: give an mqtts:// URL (and --transport mqtt "
                              "or none)");
    if (!a->template_name)
        return cli_usage(cmd, "--protocol aws-fleet needs --template NAME (the provisioning template)");
    if (!a->url || !a->key || !a->store || !a->trust)
        return cli_usage(cmd, "--url, --template, --bootstrap-cert, --bootstrap-key, --key, --store and --trust "
                              "are required");
    if (!a->boot_cert || !a->boot_key)
        return cli_usage(cmd, "--protocol aws-fleet provisions by claim: give --bootstrap-cert CLAIM.pem and "
                              "--bootstrap-key CLAIM.key");
    if (!a->thing_name) {
        bool named = false;
        for (size_t i = 0; i < a->nparams && !named; i++)
            named = strcmp(a->param_names[i], "ThingName") == 0 || strcmp(a->param_names[i], "SerialNumber") == 0;
        if (!named)
            return cli_usage(cmd, "give the thing name to ask for: --thing-name NAME, or --param ThingName=NAME or "
                                  "--param SerialNumber=SN (it is the CSR's CN)");
    }
    return CLI_EXIT_OK;
}

static int provision_checked(const char *cmd, device_args *pa)
{
    device_args a = *pa;
    int rc;
    enr_device_protocol protocol = ENR_DEVICE_PROTOCOL_DPS;
    enr_error err = {0};
    if (a.protocol && enr_device_protocol_parse(a.protocol, &protocol, &err) != ENR_OK)
        return cli_usage(cmd, "--protocol: %s", err.message);
    bool aws = protocol == ENR_DEVICE_PROTOCOL_AWS_FLEET;
    if (aws && (rc = aws_usage_check(cmd, &a)) != CLI_EXIT_OK)
        return rc;
    if (!aws && (a.template_name || a.nparams > 0 || a.thing_name))
        return cli_usage(cmd, "%s is for --protocol aws-fleet only",
                         a.template_name ? "--template" : a.nparams > 0 ? "--param" : "--thing-name");
    if (!aws && (!a.url || !a.scope || !a.rid || !a.key || !a.store || !a.trust))
        return cli_usage(cmd, "--url, --scope, --registration-id, --key, --store and --trust are required");
    int creds = (a.device_key_file != NULL) + (a.group_key_file != NULL) + (a.boot_cert != NULL || a.boot_key != NULL);
    if (creds != 1)
        return cli_usage(cmd, "give exactly one bootstrap credential: --device-key-file, --group-key-file, or "
                              "--bootstrap-cert with --bootstrap-key");
    if ((a.boot_cert == NULL) != (a.boot_key == NULL))
        return cli_usage(cmd, "--bootstrap-cert and --bootstrap-key go together");
    enr_device_config cfg = {.url = a.url, .id_scope = a.scope, .registration_id = a.rid, .api_version = a.api,
                             .protocol = protocol, .aws_template = a.template_name,
                             .aws_param_names = (const char *const *)a.param_names,
                             .aws_param_values = (const char *const *)a.param_values, .aws_param_count = a.nparams,
                             .aws_thing_name = a.thing_name, .key_ref = a.key, .pkcs11_module = a.module, .pkcs11_pin_file = a.pin_file,
                             .trust_file = a.trust, .ca_trust_file = a.ca_trust, .store_dir = a.store,
                             .replace_store = a.force, .log = log_stderr, .sleep = sleep_interruptible};
    if (a.device_key_file) {
        cfg.auth = ENR_DEVICE_AUTH_DEVICE_KEY;
        cfg.symmetric_key_file = a.device_key_file;
    } else if (a.group_key_file) {
        cfg.auth = ENR_DEVICE_AUTH_GROUP_KEY;
        cfg.symmetric_key_file = a.group_key_file;
    } else {
        cfg.auth = ENR_DEVICE_AUTH_X509;
        cfg.bootstrap_cert_file = a.boot_cert;
        cfg.bootstrap_key_file = a.boot_key;
    }
    if (a.transport && enr_device_transport_parse(a.transport, &cfg.transport, &err) != ENR_OK)
        return cli_usage(cmd, "--transport: %s", err.message);
    if (a.type && enr_key_type_parse(a.type, &cfg.key_type, &err) != ENR_OK)
        return cli_usage(cmd, "--type: %s", err.message);
    long v = 0;
    if (a.retries && (rc = parse_count(cmd, "--retries", a.retries, 1, 100, &v)) != CLI_EXIT_OK)
        return rc;
    cfg.max_attempts = a.retries ? (int)v : 0;
    if (a.timeout && (rc = parse_count(cmd, "--timeout", a.timeout, 1, 3600, &v)) != CLI_EXIT_OK)
        return rc;
    cfg.timeout_ms = a.timeout ? (int)v * 1000 : 0;
    if (a.renew_before && (rc = parse_renew_before(cmd, a.renew_before, &cfg.renew_before_seconds)) != CLI_EXIT_OK)
        return rc;
    signal(SIGPIPE, SIG_IGN);
    signal(SIGTERM, on_signal);
    signal(SIGINT, on_signal);
    enr_device *d = NULL;
    enr_code code = enr_device_new(&cfg, &d, &err);
    if (code == ENR_OK)
        code = enr_device_provision(d, &err);
    enr_device_free(d);
    if (code != ENR_OK)
        return cli_fail(&err, a.json);
    enr_device_status s;
    if (enr_device_status_read(a.store, &s, &err) != ENR_OK)
        return cli_fail(&err, a.json);
    if (a.json) {
        json_t *o = status_json(&s, time(NULL));
        cli_print_json(o);
        json_decref(o);
    } else {
        if (aws)
            printf("provisioned thing %s (template %s): certificate %s from %s, stored in %s\n", s.thing_name,
                   s.template_name, s.serial, s.issuer, a.store);
        else
            printf("provisioned %s: certificate %s from %s, stored in %s\n", s.registration_id, s.serial, s.issuer,
                   a.store);
    }
    return CLI_EXIT_OK;
}

static int device_provision(int argc, char **argv)
{
    const char *cmd = "device provision";
    device_args a;
    int rc = parse_device_args(cmd, argc, argv, &a);
    if (rc == CLI_EXIT_OK && a.help)
        fputs(DEVICE_HELP, stdout);
    else if (rc == CLI_EXIT_OK)
        rc = provision_checked(cmd, &a);
    device_args_free(&a);
    return rc;
}

static int device_status(int argc, char **argv)
{
    const char *cmd = "device status";
    device_args a;
    int rc = parse_device_args(cmd, argc, argv, &a);
    if (rc != CLI_EXIT_OK)
        return rc;
    if (a.help) {
        fputs(DEVICE_HELP, stdout);
        return CLI_EXIT_OK;
    }
    if (!a.store)
        return cli_usage(cmd, "--store DIR is required");
    enr_device_status s;
    enr_error err = {0};
    if (enr_device_status_read(a.store, &s, &err) != ENR_OK)
        return cli_fail(&err, a.json);
    time_t now = time(NULL);
    if (a.json) {
        json_t *o = status_json(&s, now);
        cli_print_json(o);
        json_decref(o);
    } else {
        print_status_text(&s, now);
    }
    return CLI_EXIT_OK;
}

static int device_export(int argc, char **argv)
{
    const char *cmd = "device export";
    device_args a;
    int rc = parse_device_args(cmd, argc, argv, &a);
    if (rc != CLI_EXIT_OK)
        return rc;
    if (a.help) {
        fputs(DEVICE_HELP, stdout);
        return CLI_EXIT_OK;
    }
    if (!a.store || !a.pkcs12 || !a.pass_file)
        return cli_usage(cmd, "--store, --pkcs12 and --pass-file are required (an export is always encrypted)");
    enr_error err = {0};
    char *pass = NULL;
    enr_code code = cli_read_secret(a.pass_file, &pass, &err);
    if (code == ENR_OK)
        code = enr_device_export_pkcs12(a.store, a.pkcs12, pass, a.force, &err);
    enr_secret_free(pass);
    if (code != ENR_OK) {
        if (code == ENR_E_EXISTS)
            enr_error_prefix(&err, "use --force to replace it");
        return cli_fail(&err, a.json);
    }
    if (a.json) {
        json_t *o = json_pack("{s:s}", "pkcs12", a.pkcs12);
        cli_print_json(o);
        json_decref(o);
    } else {
        fprintf(stderr, "wrote %s\n", a.pkcs12);
    }
    return CLI_EXIT_OK;
}

static void run_hook(const char *hook, const char *store)
{
    enr_device_status s;
    enr_error err;
    if (enr_device_status_read(store, &s, &err) != ENR_OK)
        return;
    pid_t pid = fork();
    if (pid == 0) {
        /* The agent ignores SIGPIPE and catches SIGTERM/SIGINT; exec keeps an
         * ignored signal ignored, and a hook's pipelines expect the default. */
        signal(SIGPIPE, SIG_DFL);
        signal(SIGTERM, SIG_DFL);
        signal(SIGINT, SIG_DFL);
        setenv("ENROLL_CERT", s.cert_path, 1);
        setenv("ENROLL_CHAIN", s.chain_path, 1);
        setenv("ENROLL_KEY", s.key_ref, 1);
        setenv("ENROLL_STORE", store, 1);
        execl("/bin/sh", "sh", "-c", hook, (char *)NULL);
        _exit(127);
    }
    int status = 0;
    pid_t w = -1;
    /* SIGTERM interrupts the wait (the handler has no SA_RESTART): the agent
     * stops after the hook, not by leaving it behind. */
    while (pid > 0 && (w = waitpid(pid, &status, 0)) < 0 && errno == EINTR)
        ;
    if (pid < 0 || w < 0) {
        log_stderr(NULL, "the hook could not be run");
        return;
    }
    char msg[64];
    snprintf(msg, sizeof msg, "hook finished with status %d",
             WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status));
    log_stderr(NULL, msg);
}

static int device_run(int argc, char **argv)
{
    const char *cmd = "device run";
    device_args a;
    int rc = parse_device_args(cmd, argc, argv, &a);
    if (rc != CLI_EXIT_OK)
        return rc;
    if (a.help) {
        fputs(DEVICE_HELP, stdout);
        return CLI_EXIT_OK;
    }
    if (!a.store)
        return cli_usage(cmd, "--store DIR is required");
    if (a.url || a.transport)
        return cli_usage(cmd, "the service's URL and transport are those `device provision` saved in %s; "
                              "provision again to change them",
                         a.store);
    enr_device_config o = {.log = log_stderr, .sleep = sleep_interruptible, .rotate_key = a.rotate};
    long v = 0, interval = 3600;
    if (a.interval && (rc = parse_count(cmd, "--interval", a.interval, 1, 86400 * 30, &interval)) != CLI_EXIT_OK)
        return rc;
    if (a.retries && (rc = parse_count(cmd, "--retries", a.retries, 1, 100, &v)) != CLI_EXIT_OK)
        return rc;
    o.max_attempts = a.retries ? (int)v : 0;
    if (a.renew_before && (rc = parse_renew_before(cmd, a.renew_before, &o.renew_before_seconds)) != CLI_EXIT_OK)
        return rc;
    signal(SIGPIPE, SIG_IGN);
    struct sigaction sa = {0};
    sa.sa_handler = on_signal;
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    enr_device *d = NULL;
    enr_error err = {0};
    if (enr_device_open(a.store, &o, &d, &err) != ENR_OK)
        return cli_fail(&err, a.json);
    long failures = 0;
    int exit_code = CLI_EXIT_OK;
    log_renewal_due(d);
    while (!g_stop) {
        bool renewed = false;
        enr_code code = enr_device_renew_if_due(d, time(NULL), &renewed, &err);
        if (renewed && a.hook)
            run_hook(a.hook, a.store);
        if (code == ENR_OK && renewed)
            log_renewal_due(d);
        if (a.once) {
            exit_code = code == ENR_OK ? CLI_EXIT_OK : cli_fail(&err, a.json);
            if (code == ENR_OK && a.json) {
                enr_device_status s;
                if (enr_device_status_read(a.store, &s, &err) == ENR_OK) {
                    json_t *j = status_json(&s, time(NULL));
                    json_object_set_new(j, "renewed", json_boolean(renewed));
                    cli_print_json(j);
                    json_decref(j);
                }
            }
            break;
        }
        long wait = interval;
        if (code != ENR_OK) {
            /* The library already retried; between rounds, back off from a
             * minute up to the interval so a long outage costs little. */
            failures++;
            wait = 60;
            for (long i = 1; i < failures && wait < interval; i++)
                wait *= 2;
            if (wait > interval)
                wait = interval;
            char msg[640];
            snprintf(msg, sizeof msg, "renewal failed (%s); next try in %ld s", err.message, wait);
            log_stderr(NULL, msg);
        } else {
            failures = 0;
            time_t due = enr_device_renew_at(d), now = time(NULL);
            if (due > now && due - now < wait)
                wait = (long)(due - now);
            if (wait < 1)
                wait = 1;
        }
        (void)sleep_interruptible(NULL, wait * 1000);
    }
    if (g_stop)
        log_stderr(NULL, "stopping on signal");
    enr_device_free(d);
    return exit_code;
}

int cli_device(int argc, char **argv)
{
    if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
        fputs(DEVICE_HELP, argc < 2 ? stderr : stdout);
        return argc < 2 ? CLI_EXIT_USAGE : CLI_EXIT_OK;
    }
    const char *verb = argv[1];
    if (strcmp(verb, "provision") == 0)
        return device_provision(argc - 1, argv + 1);
    if (strcmp(verb, "status") == 0)
        return device_status(argc - 1, argv + 1);
    if (strcmp(verb, "run") == 0)
        return device_run(argc - 1, argv + 1);
    if (strcmp(verb, "export") == 0)
        return device_export(argc - 1, argv + 1);
    fprintf(stderr, "enroll device: unknown verb '%s'\n\n%s", verb, DEVICE_HELP);
    return CLI_EXIT_USAGE;
}
