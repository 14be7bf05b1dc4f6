/* enroll: the command line for operators, every command (the device's
 * included). A device needs only enroll-device (src/cli/device_main.c). */
#include <stdio.h>
#include <string.h>

#include "cli/cli.h"
#include "cli/cli_cert.h"

#ifndef ENROLL_VERSION
#define ENROLL_VERSION "0.1.0"
#endif

static const char USAGE[] =
    "Usage: enroll NOUN VERB [options]\n"
    "\n"
    "Zero-touch X.509 identity for IoT fleets.\n"
    "\n"
    "Keys:\n"
    "  key new      generate a key pair in a 0600 PEM file or inside a PKCS#11 token\n"
    "  key show     describe a key (type, size, public key fingerprint)\n"
    "Certificate signing requests (PKCS#10):\n"
    "  csr new      build and sign a CSR\n"
    "  csr show     describe a CSR (PEM, DER or headerless base64)\n"
    "  csr verify   check a CSR's self-signature (proof of possession)\n"
    "  csr lint     report problems in a CSR, each with a stable id\n"
    "  match        tell whether keys, CSRs and certificates hold the same public key\n"
    "Certificate authority:\n"
    "  ca init      make a root or intermediate CA (key in a file or a PKCS#11 token)\n"
    "  ca sign      issue a certificate from a CSR under a profile\n"
    "  ca revoke    revoke a certificate and refresh the CRL\n"
    "  ca crl       write a new CRL\n"
    "  ca list      list what a CA issued (expiring, revoked)\n"
    "Certificates:\n"
    "  cert show    describe certificates (text or JSON)\n"
    "  crl show     describe CRLs: number, dates, revoked serials and reasons\n"
    "  verify       verify a chain to a root, with purpose, time and CRLs\n"
    "Provisioning service (enrolld's store):\n"
    "  admin        CAs, policies, enrollments, device keys, registrations, certificates, audit\n"
    "  serve        run the provisioning service (enrolld) with a config file\n"
    "Device (the client of the provisioning service):\n"
    "  device provision  register with a bootstrap credential and store the issued identity\n"
    "  device status     the stored identity, its expiry and renewal time, the last result\n"
    "  device run        the agent: renew when due, run a hook on a new certificate\n"
    "  device export     the identity as an encrypted PKCS#12 file\n"
    "\n"
    "Every command takes --help. Exit codes: 0 success; 1 the inputs were read and the\n"
    "answer is no (a finding, a refusal, already exists, no such serial or record); 2 the\n"
    "command line is wrong; 3 a file, key, token or service could not be used (missing,\n"
    "unreadable, malformed, passphrase or PIN missing or wrong, unreachable); 4 internal.\n"
    "\n"
    "Example:\n"
    "  enroll key new --type ec-p256 --out device.key\n"
    "  enroll csr new --key device.key --subject '/O=Acme, Inc./CN=dev-001' --out device.csr\n"
    "  enroll csr lint device.csr --expect-cn dev-001\n";

int main(int argc, char **argv)
{
    if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 ||
        strcmp(argv[1], "help") == 0) {
        fputs(USAGE, argc < 2 ? stderr : stdout);
        return argc < 2 ? CLI_EXIT_USAGE : CLI_EXIT_OK;
    }
    if (strcmp(argv[1], "--version") == 0 || strcmp(argv[1], "version") == 0) {
        printf("enroll %s\n", ENROLL_VERSION);
        return CLI_EXIT_OK;
    }
    const char *noun = argv[1];
    if (strcmp(noun, "key") == 0)
        return cli_key(argc - 1, argv + 1);
    if (strcmp(noun, "csr") == 0)
        return cli_csr(argc - 1, argv + 1);
    if (strcmp(noun, "match") == 0)
        return cli_match(argc - 1, argv + 1);
    if (strcmp(noun, "ca") == 0)
        return cli_ca(argc - 1, argv + 1);
    if (strcmp(noun, "cert") == 0)
        return cli_cert(argc - 1, argv + 1);
    if (strcmp(noun, "crl") == 0)
        return cli_crl(argc - 1, argv + 1);
    if (strcmp(noun, "verify") == 0)
        return cli_verify(argc - 1, argv + 1);
    if (strcmp(noun, "admin") == 0)
        return cli_admin(argc - 1, argv + 1);
    if (strcmp(noun, "serve") == 0)
        return cli_serve(argc - 1, argv + 1);
    if (strcmp(noun, "device") == 0)
        return cli_device(argc - 1, argv + 1);
    fprintf(stderr, "enroll: unknown command '%s'\n\n%s", noun, USAGE);
    return CLI_EXIT_USAGE;
}
