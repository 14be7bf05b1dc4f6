/* enroll-device: the command line a device carries. Built on libenroll_device
 * only (no SQLite, no store, no CA, no admin, no lint): the device client,
 * keys, CSRs, certificates. The same commands as in `enroll`, spelled the
 * same, so a script moves from one binary to the other by its name only;
 * the device verbs also stand alone (`enroll-device provision ...`). */
#include <stdio.h>
#include <string.h>

#include "cli/cli.h"
#include "cli/cli_cert.h"

#ifndef ENROLL_VERSION
#define ENROLL_VERSION "0.1.0"
#endif

static const char USAGE[] =
    "Usage: enroll-device [device] VERB [options]\n"
    "       enroll-device NOUN VERB [options]\n"
    "\n"
    "The device side of enroll: register with the provisioning service, keep the\n"
    "identity renewed. Operators use `enroll` (CA, admin, serve), which has these too.\n"
    "\n"
    "Device (the client of the provisioning service):\n"
    "  device provision  register with a bootstrap credential and store the issued identity\n"
    "  device status     the stored identity, its expiry and renewal time, the last result\n"
    "  device run        the agent: renew when due, run a hook on a new certificate\n"
    "  device export     the identity as an encrypted PKCS#12 file\n"
    "  (`device` may be left out: enroll-device provision ...)\n"
    "Keys:\n"
    "  key new      generate a key pair in a 0600 PEM file or inside a PKCS#11 token\n"
    "  key show     describe a key (type, size, public key fingerprint)\n"
    "Certificate signing requests (PKCS#10):\n"
    "  csr new      build and sign a CSR\n"
    "  csr show     describe a CSR (PEM, DER or headerless base64)\n"
    "  csr verify   check a CSR's self-signature (proof of possession)\n"
    "  match        tell whether keys, CSRs and certificates hold the same public key\n"
    "Certificates:\n"
    "  cert show    describe certificates (text or JSON)\n"
    "  verify       verify a chain to a root, with purpose, time and CRLs\n"
    "\n"
    "Every command takes --help. Exit codes: 0 success; 1 the inputs were read and the\n"
    "answer is no (a finding, a refusal, already exists, no such serial or record); 2 the\n"
    "command line is wrong; 3 a file, key, token or service could not be used (missing,\n"
    "unreadable, malformed, passphrase or PIN missing or wrong, unreachable); 4 internal.\n"
    "\n"
    "Example:\n"
    "  enroll-device provision --url https://dps.example:8443 --scope 0ne0001 \\\n"
    "      --registration-id dev-001 --group-key-file group.key --key /var/lib/enroll/device.key \\\n"
    "      --store /var/lib/enroll --trust root.pem\n"
    "  enroll-device run --store /var/lib/enroll --hook 'systemctl restart mqtt-client'\n";

static bool is_device_verb(const char *s)
{
    return strcmp(s, "provision") == 0 || strcmp(s, "status") == 0 || strcmp(s, "run") == 0 ||
           strcmp(s, "export") == 0;
}

int main(int argc, char **argv)
{
    cli_program = "enroll-device";
    if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 ||
        strcmp(argv[1], "help") == 0) {
        fputs(USAGE, argc < 2 ? stderr : stdout);
        return argc < 2 ? CLI_EXIT_USAGE : CLI_EXIT_OK;
    }
    if (strcmp(argv[1], "--version") == 0 || strcmp(argv[1], "version") == 0) {
        printf("enroll-device %s\n", ENROLL_VERSION);
        return CLI_EXIT_OK;
    }
    const char *noun = argv[1];
    if (strcmp(noun, "device") == 0)
        return cli_device(argc - 1, argv + 1);
    if (is_device_verb(noun)) /* argv[0] stands for the noun: cli_device reads argv[1] on */
        return cli_device(argc, argv);
    if (strcmp(noun, "key") == 0)
        return cli_key(argc - 1, argv + 1);
    if (strcmp(noun, "csr") == 0)
        return cli_csr(argc - 1, argv + 1);
    if (strcmp(noun, "match") == 0)
        return cli_match(argc - 1, argv + 1);
    if (strcmp(noun, "cert") == 0)
        return cli_cert(argc - 1, argv + 1);
    if (strcmp(noun, "verify") == 0)
        return cli_verify(argc - 1, argv + 1);
    if (strcmp(noun, "ca") == 0 || strcmp(noun, "admin") == 0 || strcmp(noun, "serve") == 0) {
        fprintf(stderr, "enroll-device: '%s' is an operator's command: it is in `enroll`, not here\n", noun);
        return CLI_EXIT_USAGE;
    }
    fprintf(stderr, "enroll-device: unknown command '%s'\n\n%s", noun, USAGE);
    return CLI_EXIT_USAGE;
}
