/* enroll admin ca | policy | group | individual | key | registration | cert | audit | crl |
 * template | thing:
 * what enrolld serves, edited in its store directly (--data DIR) or through
 * its admin API (--url). Argument parsing and text output only: the
 * commands themselves are the admin library's (enroll/admin.h). */
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

#include "cli/admin_remote.h"
#include "cli/cli.h"
#include "enroll/admin.h"
#include "enroll/ca.h"
#include "enroll/cert.h"
#include "enroll/duration.h"
#include "enroll/input.h"
#include "enroll/name.h"
#include "enroll/sas.h"
#include "enroll/signer.h"
#include "enroll/store.h"

/* Defaults the admin library applies, for the help texts. */
#define DEFAULT_HUB "localhost:8883"
#define DEFAULT_KEY_TYPES "ec-p256,ec-p384"

static const char ADMIN_HELP[] =
    "Usage: enroll admin NOUN VERB --data DIR [options] [--json]\n"
    "       enroll admin NOUN VERB --url URL --admin-cert F --admin-key F --trust ROOT.pem\n"
    "                              [options] [--json]\n"
    "\n"
    "Manages what enrolld serves, by editing its store directly (--data DIR: enrolld's\n"
    "data directory, data_dir in its config, holding enroll.db; --db URL: its PostgreSQL\n"
    "store, postgresql://USER@HOST[:PORT]/DATABASE, \"store\" in its config, with the password\n"
    "in ~/.pgpass or PGPASSWORD rather than the URL; both safe while enrolld runs)\n"
    "or through enrolld's admin API (--url https://HOST:PORT, with an admin certificate\n"
    "and key issued by the admin CA in enrolld's config; --trust: the CA of enrolld's\n"
    "server certificate). Every change is recorded as an audit event naming who made\n"
    "it; keys never appear in errors or events.\n"
    "\n"
    "CAs and credential policies:\n"
    "  ca add NAME --ca-dir DIR        an issuing CA (a directory made by `enroll ca init`)\n"
    "  ca upload NAME --cert FILE      a device-attestation (bootstrap) CA: prints a code\n"
    "  ca verify NAME --cert FILE      proof of possession: a certificate with CN = the code\n"
    "  ca list\n"
    "  policy new NAME --validity P30D --renewal-window P7D --ca NAME [--key-types LIST]\n"
    "      [--ocsp-url URL] [--crl-url URL] [--allow-server-keygen]\n"
    "  policy list\n"
    "Enrollments (who may register, and what they get):\n"
    "  group new ID --policy NAME (--symmetric | --x509-ca NAME...) [--hub HOST[:PORT]]\n"
    "  group list | show ID | disable ID | enable ID\n"
    "  individual new RID --policy NAME (--symmetric | --x509-cert FILE) [--hub HOST[:PORT]]\n"
    "  individual list | show RID | disable RID | enable RID\n"
    "  key show (--group ID | --individual RID)\n"
    "  key derive --group ID --registration-id RID [--secondary]\n"
    "  key rotate (--group ID | --individual RID)\n"
    "  est secret (--group ID | --individual RID) [--remove]   EST's HTTP Basic secret\n"
    "Devices:\n"
    "  registration list [--group ID | --individual RID] [--status S]\n"
    "  registration show RID\n"
    "  registration revoke RID --reason R\n"
    "  registration disable RID | enable RID\n"
    "  registration move RID (--group ID | --individual RID)\n"
    "  cert list [--expiring P7D] [--revoked] [--registration RID] [--issuer DN]\n"
    "  cert revoke --serial HEX [--issuer DN] --reason R\n"
    "  audit list [--registration RID]\n"
    "  crl --ca NAME --out FILE [--next-update P7D]\n"
    "AWS IoT fleet provisioning (devices with a claim certificate):\n"
    "  template create NAME --file T.json --policy NAME --claim-ca CA[,CA...]\n"
    "      [--allow-server-keygen] [--hook-url URL --hook-ca FILE [--hook-timeout-ms N]]\n"
    "  template list | show NAME | delete NAME | enable NAME | disable NAME\n"
    "  thing list [--template NAME] | show NAME | disable NAME | enable NAME\n"
    "The store itself:\n"
    "  store copy --from DIR|URL --to DIR|URL   a SQLite store into PostgreSQL, or back\n"
    "\n"
    "Every command takes --data DIR (or --db URL, or --url ...), --json (machine-readable output) and --help\n"
    "(`enroll admin group --help` describes the group verbs). Exit codes: 0 done,\n"
    "1 the answer is no (refused, exists, unverified, wrong proof, wrong kind, or no such\n"
    "CA, policy, enrollment, registration, certificate, template or thing), 2 bad usage, 3 the store, a file,\n"
    "a key or enrolld could not be used, 4 internal.\n"
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
    "  --ocsp-url URL      put this OCSP responder in the certificates (AIA): enrolld's\n"
    "                      https://HOST:PORT/ocsp\n"
    "  --crl-url URL       put this CRL distribution point in the certificates (in place of\n"
    "                      the CA's `enroll ca init --crl-url`)\n"
    "  --allow-server-keygen  let EST's serverkeygen make devices' keys (each key is sent\n"
    "                      once and never stored; off by default: a key made elsewhere has\n"
    "                      been somewhere else)\n"
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
    "       enroll admin key rotate (--group ID | --individual RID) --data DIR [--json]\n"
    "\n"
    "show    Prints the primary and secondary keys of a symmetric-key enrollment.\n"
    "derive  Prints a device's key: base64(HMAC-SHA256(group key, registration id)),\n"
    "        from the primary group key (the secondary with --secondary). The id is\n"
    "        taken in lower case: ids that differ only in case are one registration\n"
    "        with one key.\n"
    "rotate  Makes a new primary key; the old primary becomes the secondary, so devices\n"
    "        holding it (or keys derived from it) still register while you hand out the\n"
    "        new ones. Rotate again only when every device has moved over: the old\n"
    "        secondary is then gone for good. Prints the new keys.\n"
    "All three print secrets: run them where no one else reads the terminal. Each use is\n"
    "recorded as an audit event (without the keys).\n"
    "\n"
    "Examples:\n"
    "  enroll admin key show --group fleet-a --data /var/lib/enroll\n"
    "  enroll admin key derive --group fleet-a --registration-id dev-001 --data /var/lib/enroll\n"
    "  enroll admin key rotate --group fleet-a --data /var/lib/enroll\n"
    "  enroll admin key derive --group fleet-a --registration-id dev-001 --data /var/lib/enroll\n";

static const char EST_HELP[] =
    "Usage: enroll admin est secret (--group ID | --individual RID) [--remove] --data DIR [--json]\n"
    "\n"
    "secret  Makes a new HTTP Basic secret for EST (RFC 7030) on an enrollment, of either\n"
    "        attestation, and prints it: the only time it is shown, since the store keeps\n"
    "        its SHA-256 only. The old secret stops working at once. A device sends\n"
    "        user = its registration id (its CSR's CN), password = the secret. A group's\n"
    "        secret registers new ids under the group, never one that exists (its devices\n"
    "        renew with their certificates); an individual enrollment's is that device's\n"
    "        alone. --remove takes it away.\n"
    "        Recorded as an audit event (without the secret).\n"
    "\n"
    "Examples:\n"
    "  enroll admin est secret --group est-fleet --data /var/lib/enroll\n"
    "  curl --cacert root.pem --user dev-001:SECRET --data-binary @dev-001.b64 \\\n"
    "      -H 'Content-Type: application/pkcs10' \\\n"
    "      https://enroll.example:8443/.well-known/est/est-fleet/simpleenroll\n";

static const char REGISTRATION_HELP[] =
    "Usage: enroll admin registration list [--group ID | --individual RID] [--status S]\n"
    "                                      --data DIR [--json]\n"
    "       enroll admin registration show RID --data DIR [--json]\n"
    "       enroll admin registration revoke RID --reason R --data DIR [--json]\n"
    "       enroll admin registration disable|enable RID --data DIR [--json]\n"
    "       enroll admin registration move RID (--group ID | --individual RID) --data DIR [--json]\n"
    "\n"
    "list    Registered devices, by registration id; --group / --individual: those that\n"
    "        registered through that enrollment; --status: assigning, assigned, failed,\n"
    "        disabled or unassigned.\n"
    "show    One registration and every certificate issued to it.\n"
    "revoke  Revokes every certificate of the registration not revoked yet. The device\n"
    "        can still register again: disable its enrollment to stop that (for one\n"
    "        device of a group, a disabled individual enrollment of its own, or disable\n"
    "        the registration). With keyCompromise, the certificates' keys are blocked\n"
    "        for good: no CSR with one of them is ever signed again (errorCode 400011).\n"
    "disable Sets the registration's status to disabled: enrolld refuses the device\n"
    "        (registering again, renewing) whatever its enrollment says. Its certificates\n"
    "        stay valid until revoked. enable gives back the status it had.\n"
    "move    A registration stays with the enrollment it first registered through: another\n"
    "        group's credential is refused for it. move binds it to another group (or to\n"
    "        its own individual enrollment, which also takes it over by existing).\n"
    "\n"
    "Options:\n"
    "  --reason R   unspecified keyCompromise cACompromise affiliationChanged superseded\n"
    "               cessationOfOperation certificateHold privilegeWithdrawn aACompromise\n"
    "\n"
    "Examples:\n"
    "  enroll admin registration list --group fleet-a --data /var/lib/enroll\n"
    "  enroll admin registration revoke dev-001 --reason keyCompromise --data /var/lib/enroll\n"
    "  enroll admin registration disable dev-001 --data /var/lib/enroll\n"
    "  enroll admin registration move dev-001 --group fleet-b --data /var/lib/enroll\n";

static const char CRL_HELP[] =
    "Usage: enroll admin crl --ca NAME --out FILE [--next-update D] --data DIR [--json]\n"
    "\n"
    "Writes a CRL of an issuing CA in the store (`enroll admin ca add`), signed with\n"
    "that CA's key (from its CA directory), listing every certificate of that CA revoked\n"
    "in the store (`cert revoke`, `registration revoke`) or in the CA directory (`enroll\n"
    "ca revoke`). It continues the CA directory's CRL numbers, which only grow, and is\n"
    "also written to the directory's crl.pem. Publish FILE where relying parties fetch it.\n"
    "\n"
    "Options:\n"
    "  --ca NAME          the issuing CA\n"
    "  --out FILE         where the CRL goes (PEM)\n"
    "  --next-update D    ISO 8601 duration until nextUpdate (default P7D)\n"
    "\n"
    "Examples:\n"
    "  enroll admin crl --ca issuing --out /srv/www/issuing.crl --data /var/lib/enroll\n"
    "  openssl crl -in /srv/www/issuing.crl -noout -text\n";

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

static const char TEMPLATE_HELP[] =
    "Usage: enroll admin template create NAME --file T.json --policy NAME --claim-ca CA[,CA...]\n"
    "                                [--allow-server-keygen] [--hook-url URL --hook-ca FILE\n"
    "                                [--hook-timeout-ms N]] --data DIR [--json]\n"
    "       enroll admin template list --data DIR [--json]\n"
    "       enroll admin template show|delete|enable|disable NAME --data DIR [--json]\n"
    "\n"
    "create   An AWS IoT fleet provisioning template: devices connecting with a claim\n"
    "         certificate that chains to one of the --claim-ca CAs (uploaded and verified\n"
    "         with `enroll admin ca upload/verify`) get a certificate under --policy and a\n"
    "         thing, as the template (AWS's JSON format, docs/aws-templates.md) says. NAME:\n"
    "         1 to 36 of 0-9 A-Z a-z _ -. The template is checked now: one that could never\n"
    "         be evaluated is refused with the place inside it. --allow-server-keygen lets\n"
    "         devices use CreateKeysAndCertificate (the key is made by enrolld, sent once\n"
    "         and never stored); off by default. --hook-url: a pre-provisioning hook, an\n"
    "         HTTPS endpoint asked before each registration (AWS's input, answering\n"
    "         allowProvisioning); without one, any holder of a claim certificate may\n"
    "         register any thing name the template allows.\n"
    "list     Every template.\n"
    "show     One template, its parameters and body, and how many things it made.\n"
    "delete   Removes the template; its things and certificates stay.\n"
    "disable  Stops the template from issuing; enable lets it issue again.\n"
    "\n"
    "Options:\n"
    "  --file T.json          the template (JSON, at most 64 KiB)\n"
    "  --policy NAME          the credential policy of the certificates (`enroll admin policy new`)\n"
    "  --claim-ca CA[,CA...]  the verified bootstrap CAs claim certificates chain to (repeatable)\n"
    "  --allow-server-keygen  allow CreateKeysAndCertificate\n"
    "  --hook-url URL         https://HOST[:PORT]/PATH of the pre-provisioning hook\n"
    "  --hook-ca FILE         the CA certificate(s) (PEM) the hook's server certificate chains to\n"
    "  --hook-timeout-ms N    how long to wait for the hook (100 to 60000, default 5000)\n"
    "\n"
    "Examples:\n"
    "  enroll admin template create fleet --file fleet.json --policy p30 --claim-ca factory \\\n"
    "      --hook-url https://hooks.example.com/pre --hook-ca hooks-ca.pem --data /var/lib/enroll\n"
    "  enroll admin template show fleet --data /var/lib/enroll --json\n"
    "  enroll admin template disable fleet --data /var/lib/enroll\n";

static const char THING_HELP[] =
    "Usage: enroll admin thing list [--template NAME] --data DIR [--json]\n"
    "       enroll admin thing show|disable|enable NAME --data DIR [--json]\n"
    "\n"
    "list     Things made by AWS fleet provisioning (RegisterThing); --template: those\n"
    "         last provisioned by that template.\n"
    "show     One thing: attributes, thing groups, type, and every certificate it had with\n"
    "         its status (pending, active, superseded, revoked).\n"
    "disable  Refuses RegisterThing for the thing (first provisioning and renewal); its\n"
    "         certificates stay valid until revoked (`enroll admin cert revoke`). enable\n"
    "         lets it provision again.\n"
    "\n"
    "Examples:\n"
    "  enroll admin thing list --template fleet --data /var/lib/enroll\n"
    "  enroll admin thing show sensor-0042 --data /var/lib/enroll\n"
    "  enroll admin thing disable sensor-0042 --data /var/lib/enroll\n";

enum { OPT_DATA = 1, OPT_DB, OPT_CA_DIR, OPT_CERT, OPT_VALIDITY, OPT_RENEWAL_WINDOW, OPT_CA, OPT_KEY_TYPES,
       OPT_OCSP_URL, OPT_CRL_URL,
       OPT_POLICY, OPT_SYMMETRIC, OPT_X509_CA, OPT_X509_CERT, OPT_HUB, OPT_GROUP, OPT_INDIVIDUAL,
       OPT_REGISTRATION_ID, OPT_SECONDARY, OPT_REGISTRATION, OPT_STATUS, OPT_REASON, OPT_ISSUER,
       OPT_SERIAL, OPT_EXPIRING, OPT_REVOKED, OPT_OUT, OPT_NEXT_UPDATE, OPT_FILE, OPT_CLAIM_CA,
       OPT_ALLOW_SERVER_KEYGEN, OPT_HOOK_URL, OPT_HOOK_CA, OPT_HOOK_TIMEOUT_MS, OPT_TEMPLATE, OPT_URL, OPT_ADMIN_CERT,
       OPT_ADMIN_KEY, OPT_TRUST, OPT_REMOVE, OPT_JSON, OPT_HELP };

static const struct option ADMIN_OPTIONS[] = {
    {"data", required_argument, NULL, OPT_DATA},
    {"db", required_argument, NULL, OPT_DB},
    {"ca-dir", required_argument, NULL, OPT_CA_DIR},
    {"cert", required_argument, NULL, OPT_CERT},
    {"validity", required_argument, NULL, OPT_VALIDITY},
    {"renewal-window", required_argument, NULL, OPT_RENEWAL_WINDOW},
    {"ca", required_argument, NULL, OPT_CA},
    {"key-types", required_argument, NULL, OPT_KEY_TYPES},
    {"ocsp-url", required_argument, NULL, OPT_OCSP_URL},
    {"crl-url", required_argument, NULL, OPT_CRL_URL},
    {"policy", required_argument, NULL, OPT_POLICY},
    {"symmetric", no_argument, NULL, OPT_SYMMETRIC},
    {"x509-ca", required_argument, NULL, OPT_X509_CA},
    {"x509-cert", required_argument, NULL, OPT_X509_CERT},
    {"hub", required_argument, NULL, OPT_HUB},
    {"group", required_argument, NULL, OPT_GROUP},
    {"individual", required_argument, NULL, OPT_INDIVIDUAL},
    {"registration-id", required_argument, NULL, OPT_REGISTRATION_ID},
    {"secondary", no_argument, NULL, OPT_SECONDARY},
    {"remove", no_argument, NULL, OPT_REMOVE},
    {"registration", required_argument, NULL, OPT_REGISTRATION},
    {"status", required_argument, NULL, OPT_STATUS},
    {"reason", required_argument, NULL, OPT_REASON},
    {"issuer", required_argument, NULL, OPT_ISSUER},
    {"serial", required_argument, NULL, OPT_SERIAL},
    {"expiring", required_argument, NULL, OPT_EXPIRING},
    {"revoked", no_argument, NULL, OPT_REVOKED},
    {"out", required_argument, NULL, OPT_OUT},
    {"next-update", required_argument, NULL, OPT_NEXT_UPDATE},
    {"file", required_argument, NULL, OPT_FILE},
    {"claim-ca", required_argument, NULL, OPT_CLAIM_CA},
    {"allow-server-keygen", no_argument, NULL, OPT_ALLOW_SERVER_KEYGEN},
    {"hook-url", required_argument, NULL, OPT_HOOK_URL},
    {"hook-ca", required_argument, NULL, OPT_HOOK_CA},
    {"hook-timeout-ms", required_argument, NULL, OPT_HOOK_TIMEOUT_MS},
    {"template", required_argument, NULL, OPT_TEMPLATE},
    {"url", required_argument, NULL, OPT_URL},
    {"admin-cert", required_argument, NULL, OPT_ADMIN_CERT},
    {"admin-key", required_argument, NULL, OPT_ADMIN_KEY},
    {"trust", required_argument, NULL, OPT_TRUST},
    {"json", no_argument, NULL, OPT_JSON},
    {"help", no_argument, NULL, OPT_HELP},
    {NULL, 0, NULL, 0},
};

/* Which options a verb takes: a bit per OPT_* value. */
#define O(name) (UINT64_C(1) << OPT_##name)
#define ALWAYS (O(DATA) | O(DB) | O(URL) | O(ADMIN_CERT) | O(ADMIN_KEY) | O(TRUST) | O(JSON) | O(HELP))

#define MAX_X509_CA 16

typedef struct admin_args {
    const char *data;        /* the store: a data directory, or a postgresql:// URL (--db) */
    const char *data_option; /* which option named it: "--data" or "--db" */
    const char *ocsp_url, *crl_url;
    const char *ca_dir, *cert, *validity, *renewal_window, *ca, *key_types, *policy,
        *x509_cert, *hub, *group, *individual, *registration_id, *registration, *status, *reason,
        *issuer, *serial, *expiring, *out, *next_update, *url, *admin_cert, *admin_key, *trust,
        *file, *hook_url, *hook_ca, *hook_timeout_ms, *template_name;
    const char *x509_ca[MAX_X509_CA];
    size_t x509_ca_count;
    const char *claim_ca[MAX_X509_CA]; /* as given: each may be a comma-separated list */
    size_t claim_ca_count;
    const char *positional;
    bool symmetric, secondary, revoked, json, help, allow_server_keygen, remove;
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
        case OPT_DATA:
        case OPT_DB:
            if (a->data != NULL)
                return cli_usage(cmd, "give --data DIR or --db URL once");
            a->data = optarg;
            a->data_option = c == OPT_DB ? "--db" : "--data";
            if (c == OPT_DB && !enr_store_url_is_postgres(optarg))
                return cli_usage(cmd, "--db takes a postgresql://USER@HOST[:PORT]/DATABASE URL (a data "
                                      "directory goes with --data)");
            if (c == OPT_DATA && enr_store_url_is_postgres(optarg))
                return cli_usage(cmd, "--data takes a directory; a PostgreSQL store goes with --db URL");
            break;
        case OPT_CA_DIR: a->ca_dir = optarg; break;
        case OPT_CERT: a->cert = optarg; break;
        case OPT_VALIDITY: a->validity = optarg; break;
        case OPT_RENEWAL_WINDOW: a->renewal_window = optarg; break;
        case OPT_CA: a->ca = optarg; break;
        case OPT_KEY_TYPES: a->key_types = optarg; break;
        case OPT_OCSP_URL: a->ocsp_url = optarg; break;
        case OPT_CRL_URL: a->crl_url = optarg; break;
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
        case OPT_REMOVE: a->remove = true; break;
        case OPT_REGISTRATION: a->registration = optarg; break;
        case OPT_STATUS: a->status = optarg; break;
        case OPT_REASON: a->reason = optarg; break;
        case OPT_ISSUER: a->issuer = optarg; break;
        case OPT_SERIAL: a->serial = optarg; break;
        case OPT_EXPIRING: a->expiring = optarg; break;
        case OPT_REVOKED: a->revoked = true; break;
        case OPT_OUT: a->out = optarg; break;
        case OPT_NEXT_UPDATE: a->next_update = optarg; break;
        case OPT_FILE: a->file = optarg; break;
        case OPT_CLAIM_CA:
            if (a->claim_ca_count == MAX_X509_CA)
                return cli_usage(cmd, "too many --claim-ca options (at most %d)", MAX_X509_CA);
            a->claim_ca[a->claim_ca_count++] = optarg;
            break;
        case OPT_ALLOW_SERVER_KEYGEN: a->allow_server_keygen = true; break;
        case OPT_HOOK_URL: a->hook_url = optarg; break;
        case OPT_HOOK_CA: a->hook_ca = optarg; break;
        case OPT_HOOK_TIMEOUT_MS: a->hook_timeout_ms = optarg; break;
        case OPT_TEMPLATE: a->template_name = optarg; break;
        case OPT_URL: a->url = optarg; break;
        case OPT_ADMIN_CERT: a->admin_cert = optarg; break;
        case OPT_ADMIN_KEY: a->admin_key = optarg; break;
        case OPT_TRUST: a->trust = optarg; break;
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
    if (a->data == NULL && a->url == NULL)
        return cli_usage(cmd, "--data DIR (enrolld's data directory), --db URL (its PostgreSQL store) or --url URL "
                              "(its admin API) is required");
    if (a->data != NULL && a->url != NULL)
        return cli_usage(cmd, "give %s or --url URL, not both", a->data_option);
    if (a->url != NULL && (a->admin_cert == NULL || a->admin_key == NULL || a->trust == NULL))
        return cli_usage(cmd, "--url needs --admin-cert FILE and --admin-key FILE (an admin credential) and "
                              "--trust ROOT.pem (the CA of enrolld's server certificate)");
    if (a->url == NULL && (a->admin_cert || a->admin_key || a->trust))
        return cli_usage(cmd, "--admin-cert, --admin-key and --trust go with --url");
    return CLI_EXIT_OK;
}

/* ---- the command's arguments, as the admin library takes them ------------- */

/* How the CLI names an argument in messages: an option, a file, or nothing
 * (the positional argument). */
typedef struct arg_label {
    const char *key, *label;
} arg_label;

typedef struct request {
    json_t *args;
    arg_label labels[32];
    size_t label_count;
} request;

static void label(request *r, const char *key, const char *text)
{
    if (r->label_count < sizeof r->labels / sizeof r->labels[0])
        r->labels[r->label_count++] = (arg_label){key, text};
}

static void put_text(request *r, const char *key, const char *option, const char *value)
{
    if (value == NULL)
        return;
    json_object_set_new(r->args, key, json_string(value));
    label(r, key, option);
}

/* A certificate file, sent as PEM: a remote service cannot read our files. */
static enr_code put_certificate(request *r, const char *key, const char *path, enr_error *err)
{
    unsigned char *data = NULL;
    size_t len = 0;
    X509 *x = NULL;
    enr_code rc = cli_read_input(path, &data, &len, err);
    if (rc == ENR_OK && (rc = enr_cert_read_one(data, len, &x, err)) != ENR_OK)
        enr_error_prefix(err, "%s", path);
    free(data);
    BIO *bio = NULL;
    if (rc == ENR_OK && ((bio = BIO_new(BIO_s_mem())) == NULL || !PEM_write_bio_X509(bio, x)))
        rc = enr_error_openssl(err, ENR_E_CRYPTO, "cannot encode %s", path);
    if (rc == ENR_OK) {
        char *pem;
        long n = BIO_get_mem_data(bio, &pem);
        json_object_set_new(r->args, key, json_stringn(pem, (size_t)n));
        label(r, key, path);
    }
    BIO_free(bio);
    X509_free(x);
    return rc;
}

/* A text file sent as its contents (a template, a hook's CA): a remote
 * service cannot read our files, and the store keeps the text itself. */
static enr_code put_file_text(request *r, const char *key, const char *path, enr_error *err)
{
    unsigned char *data = NULL;
    size_t len = 0;
    enr_code rc = cli_read_input(path, &data, &len, err);
    json_t *text = NULL;
    if (rc == ENR_OK && (memchr(data, '\0', len) != NULL || (text = json_stringn((const char *)data, len)) == NULL))
        rc = enr_error_set(err, ENR_E_PARSE, "%s: not UTF-8 text", path);
    free(data);
    if (rc == ENR_OK) {
        json_object_set_new(r->args, key, text);
        label(r, key, path);
    }
    return rc;
}

/* --claim-ca A,B --claim-ca C: one list. */
static enr_code put_claim_cas(const admin_args *a, request *r, enr_error *err)
{
    json_t *arr = json_array();
    for (size_t i = 0; arr != NULL && i < a->claim_ca_count; i++) {
        const char *p = a->claim_ca[i];
        for (;;) {
            size_t n = strcspn(p, ",");
            if (n == 0 || n > ENR_STORE_ID_MAX) {
                json_decref(arr);
                return enr_error_set(err, ENR_E_USAGE, "claim_ca: '%s' is not a comma-separated list of CA names",
                                     a->claim_ca[i]);
            }
            json_array_append_new(arr, json_stringn(p, n));
            if (p[n] == '\0')
                break;
            p += n + 1;
        }
    }
    if (arr == NULL)
        return enr_error_set(err, ENR_E_NOMEM, "out of memory");
    json_object_set_new(r->args, "claim_ca", arr);
    label(r, "claim_ca", "--claim-ca");
    return ENR_OK;
}

static enr_code build_request(const admin_args *a, const char *positional_key, request *r, enr_error *err)
{
    memset(r, 0, sizeof *r);
    if ((r->args = json_object()) == NULL)
        return enr_error_set(err, ENR_E_NOMEM, "out of memory");
    if (positional_key != NULL) {
        json_object_set_new(r->args, positional_key, json_string(a->positional));
        label(r, positional_key, NULL);
    }
    put_text(r, "ca_dir", "--ca-dir", a->ca_dir);
    put_text(r, "validity", "--validity", a->validity);
    put_text(r, "renewal_window", "--renewal-window", a->renewal_window);
    put_text(r, "ca", "--ca", a->ca);
    put_text(r, "key_types", "--key-types", a->key_types);
    put_text(r, "ocsp_url", "--ocsp-url", a->ocsp_url);
    put_text(r, "crl_url", "--crl-url", a->crl_url);
    put_text(r, "policy", "--policy", a->policy);
    put_text(r, "hub", "--hub", a->hub);
    put_text(r, "group", "--group", a->group);
    put_text(r, "individual", "--individual", a->individual);
    put_text(r, "registration_id", "--registration-id", a->registration_id);
    put_text(r, "registration", "--registration", a->registration);
    put_text(r, "status", "--status", a->status);
    put_text(r, "reason", "--reason", a->reason);
    put_text(r, "issuer", "--issuer", a->issuer);
    put_text(r, "serial", "--serial", a->serial);
    put_text(r, "expiring", "--expiring", a->expiring);
    put_text(r, "next_update", "--next-update", a->next_update);
    put_text(r, "hook_url", "--hook-url", a->hook_url);
    put_text(r, "template", "--template", a->template_name);
    if (a->allow_server_keygen)
        json_object_set_new(r->args, "allow_server_keygen", json_true());
    if (a->hook_timeout_ms != NULL) {
        char *end = NULL;
        errno = 0;
        long long ms = strtoll(a->hook_timeout_ms, &end, 10);
        if (errno != 0 || end == a->hook_timeout_ms || *end != '\0')
            return enr_error_set(err, ENR_E_USAGE, "hook_timeout_ms: '%s' is not a whole number of milliseconds",
                                 a->hook_timeout_ms);
        json_object_set_new(r->args, "hook_timeout_ms", json_integer(ms));
        label(r, "hook_timeout_ms", "--hook-timeout-ms");
    }
    if (a->symmetric)
        json_object_set_new(r->args, "symmetric", json_true());
    if (a->secondary)
        json_object_set_new(r->args, "secondary", json_true());
    if (a->remove)
        json_object_set_new(r->args, "remove", json_true());
    if (a->revoked)
        json_object_set_new(r->args, "revoked", json_true());
    if (a->x509_ca_count > 0) {
        json_t *arr = json_array();
        for (size_t i = 0; i < a->x509_ca_count; i++)
            json_array_append_new(arr, json_string(a->x509_ca[i]));
        json_object_set_new(r->args, "x509_ca", arr);
        label(r, "x509_ca", "--x509-ca");
    }
    enr_code rc = ENR_OK;
    if (a->cert != NULL)
        rc = put_certificate(r, "cert", a->cert, err);
    if (rc == ENR_OK && a->x509_cert != NULL)
        rc = put_certificate(r, "x509_cert", a->x509_cert, err);
    if (rc == ENR_OK && a->file != NULL)
        rc = put_file_text(r, "body", a->file, err);
    if (rc == ENR_OK && a->hook_ca != NULL)
        rc = put_file_text(r, "hook_ca", a->hook_ca, err);
    if (rc == ENR_OK && a->claim_ca_count > 0)
        rc = put_claim_cas(a, r, err);
    return rc;
}

/* "validity: ..." from the library becomes "--validity: ...", "cert: ..."
 * becomes "FILE: ...", and the positional argument's name is dropped. */
static void relabel(const request *r, enr_error *err)
{
    for (size_t i = 0; i < r->label_count; i++) {
        size_t n = strlen(r->labels[i].key);
        if (strncmp(err->message, r->labels[i].key, n) != 0 || strncmp(err->message + n, ": ", 2) != 0)
            continue;
        char rest[sizeof err->message];
        snprintf(rest, sizeof rest, "%s", err->message + n + 2);
        if (r->labels[i].label == NULL)
            snprintf(err->message, sizeof err->message, "%s", rest);
        else
            snprintf(err->message, sizeof err->message, "%s: %s", r->labels[i].label, rest);
        return;
    }
}

/* ---- running it: the store here, or enrolld's admin API ------------------- */

/* Only commands that add a CA may create a store: a mistyped --data for
 * anything else would otherwise make an empty one and report nothing. */
static enr_code open_store(const admin_args *a, bool may_create, enr_store **out, enr_error *err)
{
    *out = NULL;
    /* A database names itself: a wrong one does not connect. */
    if (!may_create && !enr_store_url_is_postgres(a->data)) {
        char path[PATH_MAX];
        struct stat st;
        snprintf(path, sizeof path, "%s/enroll.db", a->data);
        if (stat(path, &st) != 0)
            return enr_error_set(err, ENR_E_IO,
                                 "%s: %s; --data takes enrolld's data directory (data_dir in its "
                                 "config), where `enroll admin ca add` creates the store",
                                 path, strerror(errno));
    }
    return enr_store_open(a->data, out, err);
}

static enr_code run_local(const admin_args *a, const char *command, bool may_create, const char *args,
                          char **result, enr_error *err)
{
    enr_store *store = NULL;
    enr_code rc = open_store(a, may_create, &store, err);
    if (rc == ENR_OK) {
        const struct passwd *pw = getpwuid(geteuid());
        char actor[160];
        snprintf(actor, sizeof actor, "enroll admin, user %s", pw != NULL ? pw->pw_name : "?");
        enr_admin_context ctx = {.actor = actor, .remote = false};
        rc = enr_admin_execute(store, &ctx, command, args, strlen(args), result, err);
    }
    enr_store_close(store);
    return rc;
}

/* Runs the command and gives back its parsed answer. Returns an exit code. */
static int execute(const char *cmd, const admin_args *a, const char *command, bool may_create,
                   const char *positional_key, json_t **answer)
{
    *answer = NULL;
    enr_error err;
    request r;
    enr_code rc = build_request(a, positional_key, &r, &err);
    bool asked = rc == ENR_OK; /* a NOTFOUND before this is a file of ours */
    char *args = rc == ENR_OK ? json_dumps(r.args, JSON_COMPACT) : NULL;
    if (rc == ENR_OK && args == NULL)
        rc = enr_error_set(&err, ENR_E_NOMEM, "out of memory");
    char *result = NULL;
    if (rc == ENR_OK && a->url != NULL)
        rc = cli_admin_remote(a->url, a->admin_cert, a->admin_key, a->trust, command, args, &result, &err);
    else if (rc == ENR_OK)
        rc = run_local(a, command, may_create, args, &result, &err);
    if (args != NULL) {
        OPENSSL_cleanse(args, strlen(args));
        free(args);
    }
    json_decref(r.args);
    if (rc == ENR_OK) {
        json_error_t jerr;
        *answer = json_loads(result, JSON_REJECT_DUPLICATES, &jerr);
        if (*answer == NULL)
            rc = enr_error_set(&err, ENR_E_PARSE, "the answer is not JSON: %s", jerr.text);
    }
    enr_admin_result_free(result);
    if (rc == ENR_OK)
        return CLI_EXIT_OK;
    relabel(&r, &err);
    if (rc == ENR_E_USAGE)
        return cli_usage(cmd, "%s", err.message);
    /* The admin library's NOTFOUND (local or enrolld's) is always a lookup
     * in the store (no such CA, policy, enrollment, registration or
     * certificate): an answer, exit 1. A CA directory it cannot find is
     * ENR_E_IO there, and so are admin_remote's own files. */
    return asked ? cli_fail_lookup(&err, a->json) : cli_fail(&err, a->json);
}

/* ---- text output ---------------------------------------------------------- */

/* A string member, or `none` when it is absent or null. */
static const char *str(json_t *o, const char *key, const char *none)
{
    const char *s = json_string_value(json_object_get(o, key));
    return s != NULL ? s : none;
}

static bool flag(json_t *o, const char *key)
{
    return json_is_true(json_object_get(o, key));
}

static const char *kind_words(const char *kind)
{
    return strcmp(kind, "group") == 0 ? "enrollment group" : "individual enrollment";
}

static void ca_added_text(const admin_args *a, json_t *o)
{
    (void)a;
    printf("added issuing CA '%s'\n  Subject:   %s\n  Expires:   %s\n  Directory: %s\n", str(o, "name", "?"),
           str(o, "subject", "?"), str(o, "not_after", "-"), str(o, "ca_dir", "?"));
}

/* Where the next command should point: never a password from a URL. */
#define SHOWN_STORE_MAX 512
static const char *shown_store(const admin_args *a, char shown[SHOWN_STORE_MAX])
{
    if (a->data == NULL)
        return a->url;
    enr_store_location_shown(a->data, shown, SHOWN_STORE_MAX);
    return shown;
}

static void ca_uploaded_text(const admin_args *a, json_t *o)
{
    char shown[SHOWN_STORE_MAX];
    const char *name = str(o, "name", "?"), *code = str(o, "verification_code", "?");
    printf("uploaded bootstrap CA '%s' (%s), not verified yet\n"
           "Verification code: %s\n"
           "Sign a certificate with subject CN=%s by this CA's key, then run\n"
           "  enroll admin ca verify %s --cert FILE %s %s\n",
           name, str(o, "subject", "?"), code, code, name, a->data ? a->data_option : "--url",
           shown_store(a, shown));
}

static void ca_verified_text(const admin_args *a, json_t *o)
{
    (void)a;
    printf("bootstrap CA '%s' verified: groups may now name it with --x509-ca\n", str(o, "name", "?"));
}

static void ca_list_text(const admin_args *a, json_t *arr)
{
    (void)a;
    size_t i;
    json_t *ca;
    json_array_foreach(arr, i, ca) {
        bool issuing = strcmp(str(ca, "role", ""), "issuing") == 0;
        const char *state = issuing ? "issuing" : flag(ca, "verified") ? "verified" : "unverified";
        printf("%-24s %-10s %s  %s", str(ca, "name", "?"), state, str(ca, "not_after", "-"), str(ca, "subject", "?"));
        if (issuing)
            printf("  (%s)", str(ca, "ca_dir", "?"));
        else if (!flag(ca, "verified"))
            printf("  (code %s)", str(ca, "verification_code", "?"));
        putchar('\n');
    }
    if (json_array_size(arr) == 0)
        printf("(no CAs)\n");
}

static void policy_new_text(const admin_args *a, json_t *o)
{
    (void)a;
    printf("created credential policy '%s'\n  Validity:       %s\n  Renewal window: %s\n"
           "  CA:             %s\n  Key types:      %s\n",
           str(o, "name", "?"), str(o, "validity", "?"), str(o, "renewal_window", "?"), str(o, "ca", "?"),
           str(o, "key_types", "?"));
    if (json_is_string(json_object_get(o, "ocsp_url")))
        printf("  OCSP URL:       %s\n", str(o, "ocsp_url", "?"));
    if (json_is_string(json_object_get(o, "crl_url")))
        printf("  CRL URL:        %s\n", str(o, "crl_url", "?"));
    if (flag(o, "allow_server_keygen"))
        printf("  Server keygen:  allowed (EST serverkeygen)\n");
}

static void policy_list_text(const admin_args *a, json_t *arr)
{
    (void)a;
    size_t i;
    json_t *p;
    json_array_foreach(arr, i, p)
        printf("%-24s validity %-8s renew %-8s CA %-20s keys %s\n", str(p, "name", "?"), str(p, "validity", "?"),
               str(p, "renewal_window", "?"), str(p, "ca", "?"), str(p, "key_types", "?"));
    if (json_array_size(arr) == 0)
        printf("(no credential policies)\n");
}

static const char *enrollment_id(json_t *e)
{
    return str(e, "group_id", str(e, "registration_id", "?"));
}

static void enrollment_text(json_t *e)
{
    bool symmetric = strcmp(str(e, "attestation", ""), "symmetric") == 0;
    printf("%s '%s'\n", kind_words(str(e, "kind", "")), enrollment_id(e));
    printf("  Attestation: %s\n", symmetric ? "symmetric key" : "X.509");
    printf("  Policy:      %s\n", str(e, "policy", "(none: no certificate)"));
    printf("  Hub:         %s\n", str(e, "assigned_hub", "-"));
    printf("  Enabled:     %s\n", flag(e, "enabled") ? "yes" : "no");
    printf("  Created:     %s\n  Updated:     %s\n", str(e, "created_at", "-"), str(e, "updated_at", "-"));
    size_t i;
    json_t *c;
    json_array_foreach(json_object_get(e, "certificates"), i, c)
        printf("  Certificate: %s (until %s, SHA-256 %s)\n", str(c, "subject", "?"), str(c, "not_after", "-"),
               str(c, "fingerprint_sha256", "?"));
}

static void enrollment_new_text(const admin_args *a, json_t *e)
{
    char shown[SHOWN_STORE_MAX];
    printf("created ");
    enrollment_text(e);
    if (strcmp(str(e, "attestation", ""), "symmetric") != 0)
        return;
    bool group = strcmp(str(e, "kind", ""), "group") == 0;
    printf("  Primary key:   %s\n  Secondary key: %s\n", str(e, "primary_key", "?"), str(e, "secondary_key", "?"));
    printf("Keep the keys secret. `enroll admin key show --%s %s %s %s` prints them again%s.\n", str(e, "kind", ""),
           enrollment_id(e), a->data ? a->data_option : "--url", shown_store(a, shown),
           group ? "; `enroll admin key derive` makes each device's key" : "");
}

static void enrollment_list_text(const admin_args *a, json_t *arr)
{
    (void)a;
    size_t i;
    json_t *e;
    json_array_foreach(arr, i, e)
        printf("%-32s %-9s policy %-16s hub %-24s %s\n", enrollment_id(e), str(e, "attestation", "?"),
               str(e, "policy", "-"), str(e, "assigned_hub", "-"), flag(e, "enabled") ? "enabled" : "DISABLED");
}

static void group_list_text(const admin_args *a, json_t *arr)
{
    enrollment_list_text(a, arr);
    if (json_array_size(arr) == 0)
        printf("(no enrollment groups)\n");
}

static void individual_list_text(const admin_args *a, json_t *arr)
{
    enrollment_list_text(a, arr);
    if (json_array_size(arr) == 0)
        printf("(no individual enrollments)\n");
}

static void enrollment_show_text(const admin_args *a, json_t *e)
{
    (void)a;
    enrollment_text(e);
    json_t *keys = json_object_get(e, "keys");
    if (keys != NULL)
        printf("  Keys:        primary%s (`enroll admin key show --%s %s`)\n",
               json_array_size(keys) > 1 ? " and secondary" : "", str(e, "kind", ""), enrollment_id(e));
    if (flag(e, "est_basic_secret"))
        printf("  EST secret:  set (HTTP Basic; `enroll admin est secret` makes a new one)\n");
    printf("  Registrations: %" JSON_INTEGER_FORMAT "\n", json_integer_value(json_object_get(e, "registrations")));
}

static void enrollment_enabled_text(const admin_args *a, json_t *e)
{
    (void)a;
    bool enabled = flag(e, "enabled");
    const char *words = kind_words(str(e, "kind", ""));
    if (flag(e, "changed"))
        printf("%s '%s' %s\n", words, enrollment_id(e),
               enabled ? "enabled: its devices may register again"
                       : "disabled: no new registrations (issued certificates stay valid until revoked)");
    else
        printf("%s '%s' is %s already; nothing changed\n", words, enrollment_id(e), enabled ? "enabled" : "disabled");
}

static void key_show_text(const admin_args *a, json_t *o)
{
    (void)a;
    const char *secondary = str(o, "secondary_key", NULL);
    printf("%s '%s'\n  Primary key:   %s\n  Secondary key: %s\n", kind_words(str(o, "kind", "")), enrollment_id(o),
           str(o, "primary_key", "?"), secondary ? secondary : "(none)");
}

static void key_rotated_text(const admin_args *a, json_t *o)
{
    char shown[SHOWN_STORE_MAX];
    printf("rotated the keys of %s '%s'\n  Primary key:   %s (new)\n  Secondary key: %s (the old primary)\n",
           kind_words(str(o, "kind", "")), enrollment_id(o), str(o, "primary_key", "?"), str(o, "secondary_key", "?"));
    if (strcmp(str(o, "kind", ""), "group") == 0)
        printf("Hand devices keys derived from the new primary (`enroll admin key derive --group %s "
               "--registration-id RID %s %s`); keys derived from the old one work until the next rotation.\n",
               enrollment_id(o), a->data ? a->data_option : "--url", shown_store(a, shown));
}

static void est_secret_text(const admin_args *a, json_t *o)
{
    (void)a;
    const char *secret = str(o, "secret", NULL);
    if (secret == NULL)
        printf("removed the EST secret of %s '%s'\n", kind_words(str(o, "kind", "")), enrollment_id(o));
    else
        printf("new EST secret of %s '%s' (shown this once; the old one no longer works)\n  Secret: %s\n",
               kind_words(str(o, "kind", "")), enrollment_id(o), secret);
}

static void key_derive_text(const admin_args *a, json_t *o)
{
    (void)a;
    printf("%s\n", str(o, "device_key", "?"));
}

static void registration_moved_text(const admin_args *a, json_t *o)
{
    (void)a;
    printf("registration '%s' moved from %s '%s' to %s '%s': only its credentials register it now\n",
           str(o, "registration_id", "?"), kind_words(str(o, "from_kind", "")), str(o, "from", "?"),
           kind_words(str(o, "enrollment_kind", "")), str(o, "enrollment_id", "?"));
}

static void certificate_text(json_t *c)
{
    bool revoked = flag(c, "revoked");
    printf("%-40s %s  %-24s %s  (issuer %s)%s%s\n", str(c, "serial", "?"), str(c, "not_after", "-"),
           str(c, "registration_id", "-"), str(c, "subject", ""), str(c, "issuer", ""), revoked ? "  REVOKED " : "",
           revoked ? str(c, "reason", "unspecified") : "");
}

static void registration_list_text(const admin_args *a, json_t *arr)
{
    (void)a;
    size_t i;
    json_t *r;
    json_array_foreach(arr, i, r) {
        json_t *last = json_object_get(r, "last_certificate");
        printf("%-32s %-10s %s %-24s hub %-24s %s  last %s\n", str(r, "registration_id", "?"), str(r, "status", "?"),
               str(r, "enrollment_kind", "?"), str(r, "enrollment_id", "?"), str(r, "assigned_hub", "-"),
               str(r, "updated_at", "-"), str(last, "serial", "-"));
    }
    if (json_array_size(arr) == 0)
        printf("(no registrations)\n");
}

static void registration_show_text(const admin_args *a, json_t *r)
{
    (void)a;
    const char *sub = str(r, "substatus", "");
    json_t *certs = json_object_get(r, "certificates");
    printf("registration '%s'\n  Status:      %s%s%s\n  Enrollment:  %s '%s'\n  Device id:   %s\n"
           "  Hub:         %s\n  Created:     %s\n  Updated:     %s\n  Certificates: %zu\n",
           str(r, "registration_id", "?"), str(r, "status", "?"), sub[0] ? " / " : "", sub,
           kind_words(str(r, "enrollment_kind", "")), str(r, "enrollment_id", "?"), str(r, "device_id", "-"),
           str(r, "assigned_hub", "-"), str(r, "created_at", "-"), str(r, "updated_at", "-"), json_array_size(certs));
    size_t i;
    json_t *c;
    json_array_foreach(certs, i, c) {
        printf("    ");
        certificate_text(c);
    }
}

static void registration_revoke_text(const admin_args *a, json_t *o)
{
    (void)a;
    json_t *revoked = json_object_get(o, "revoked");
    size_t n = json_array_size(revoked);
    const char *rid = str(o, "registration_id", "?");
    if (n == 0)
        printf("registration '%s' has no certificate left to revoke\n", rid);
    else
        printf("revoked %zu certificate%s of registration '%s' (%s):\n", n, n == 1 ? "" : "s", rid,
               str(o, "reason", "?"));
    size_t i;
    json_t *c;
    json_array_foreach(revoked, i, c) {
        printf("    ");
        certificate_text(c);
    }
    fprintf(stderr, "note: the device may register again while its %s '%s' is enabled (or disable the "
                    "registration: `enroll admin registration disable %s`)\n",
            kind_words(str(o, "enrollment_kind", "")), str(o, "enrollment_id", "?"), rid);
}

static void registration_enabled_text(const admin_args *a, json_t *r)
{
    (void)a;
    const char *rid = str(r, "registration_id", "?");
    bool disabled = strcmp(str(r, "status", ""), "disabled") == 0;
    if (!flag(r, "changed"))
        printf("registration '%s' is %s already; nothing changed\n", rid, disabled ? "disabled" : "enabled");
    else if (disabled)
        printf("registration '%s' disabled: the device may not register or renew (its certificates stay "
               "valid until revoked)\n",
               rid);
    else
        printf("registration '%s' enabled: status %s again\n", rid, str(r, "status", "?"));
}

static void cert_list_text(const admin_args *a, json_t *arr)
{
    (void)a;
    size_t i;
    json_t *c;
    json_array_foreach(arr, i, c)
        certificate_text(c);
    if (json_array_size(arr) == 0)
        printf("(no certificates)\n");
}

static void cert_revoke_text(const admin_args *a, json_t *c)
{
    (void)a;
    const char *rid = str(c, "registration_id", "");
    printf("revoked certificate %s from issuer '%s'%s%s%s (%s)\n", str(c, "serial", "?"), str(c, "issuer", "?"),
           rid[0] ? " of registration '" : "", rid, rid[0] ? "'" : "", str(c, "reason", "?"));
}

static void audit_list_text(const admin_args *a, json_t *arr)
{
    (void)a;
    size_t i;
    json_t *ev;
    json_array_foreach(arr, i, ev) {
        printf("%s  %-26s %-8s %-24s", str(ev, "at", "-"), str(ev, "kind", "?"), str(ev, "outcome", "?"),
               str(ev, "registration_id", "-"));
        json_int_t code = json_integer_value(json_object_get(ev, "reason_code"));
        if (code != 0)
            printf(" %" JSON_INTEGER_FORMAT, code);
        printf("  %s\n", str(ev, "detail", ""));
    }
    if (json_array_size(arr) == 0)
        printf("(no audit events)\n");
}

static void crl_text(const admin_args *a, json_t *o)
{
    printf("CRL of CA '%s' (%s): number %" JSON_INTEGER_FORMAT ", %" JSON_INTEGER_FORMAT
           " revoked, next update %s, written to %s\n",
           str(o, "ca", "?"), str(o, "issuer", "?"), json_integer_value(json_object_get(o, "crl_number")),
           json_integer_value(json_object_get(o, "revoked")), str(o, "next_update", "-"), a->out);
}

static void template_text(json_t *t)
{
    printf("provisioning template '%s'\n", str(t, "name", "?"));
    printf("  Policy:      %s\n", str(t, "policy", "?"));
    printf("  Claim CAs:  ");
    size_t i;
    json_t *v;
    json_array_foreach(json_object_get(t, "claim_cas"), i, v)
        printf(" %s", json_string_value(v));
    printf("\n  Server key generation: %s\n", flag(t, "allow_server_keygen") ? "allowed" : "refused");
    json_t *hook = json_object_get(t, "hook");
    if (json_is_object(hook))
        printf("  Hook:        %s (timeout %" JSON_INTEGER_FORMAT " ms)\n", str(hook, "url", "?"),
               json_integer_value(json_object_get(hook, "timeout_ms")));
    else
        printf("  Hook:        none (any holder of a claim certificate may register any thing name it allows)\n");
    printf("  Enabled:     %s\n", flag(t, "enabled") ? "yes" : "no");
    json_array_foreach(json_object_get(t, "parameters"), i, v) {
        const char *def = str(v, "default", NULL);
        printf("  Parameter:   %s (%s%s%s)\n", str(v, "name", "?"), str(v, "type", "?"), def ? ", default " : "",
               def ? def : "");
    }
    printf("  Created:     %s\n", str(t, "created_at", "-"));
}

static void template_created_text(const admin_args *a, json_t *t)
{
    (void)a;
    printf("created ");
    template_text(t);
}

static void template_list_text(const admin_args *a, json_t *arr)
{
    (void)a;
    size_t i;
    json_t *t;
    json_array_foreach(arr, i, t) {
        json_t *hook = json_object_get(t, "hook");
        printf("%-36s policy %-16s claim CAs %-3zu keygen %-3s hook %-3s %s\n", str(t, "name", "?"),
               str(t, "policy", "?"), json_array_size(json_object_get(t, "claim_cas")),
               flag(t, "allow_server_keygen") ? "yes" : "no", json_is_object(hook) ? "yes" : "no",
               flag(t, "enabled") ? "enabled" : "DISABLED");
    }
    if (json_array_size(arr) == 0)
        printf("(no provisioning templates)\n");
}

static void template_show_text(const admin_args *a, json_t *t)
{
    (void)a;
    template_text(t);
    printf("  Things:      %" JSON_INTEGER_FORMAT "\n", json_integer_value(json_object_get(t, "things")));
}

static void template_deleted_text(const admin_args *a, json_t *t)
{
    (void)a;
    printf("deleted provisioning template '%s' (its things and certificates stay)\n", str(t, "name", "?"));
}

static void template_enabled_text(const admin_args *a, json_t *t)
{
    (void)a;
    bool enabled = flag(t, "enabled");
    if (flag(t, "changed"))
        printf("provisioning template '%s' %s\n", str(t, "name", "?"),
               enabled ? "enabled" : "disabled: it issues nothing (issued certificates stay valid until revoked)");
    else
        printf("provisioning template '%s' is %s already; nothing changed\n", str(t, "name", "?"),
               enabled ? "enabled" : "disabled");
}

static void thing_list_text(const admin_args *a, json_t *arr)
{
    (void)a;
    size_t i;
    json_t *t;
    json_array_foreach(arr, i, t)
        printf("%-40s template %-24s type %-16s %s  updated %s\n", str(t, "name", "?"), str(t, "template", "?"),
               str(t, "thing_type", "-"), flag(t, "enabled") ? "enabled " : "DISABLED", str(t, "updated_at", "-"));
    if (json_array_size(arr) == 0)
        printf("(no things)\n");
}

static void thing_show_text(const admin_args *a, json_t *t)
{
    (void)a;
    printf("thing '%s'\n  Template:    %s\n  Type:        %s\n  Enabled:     %s\n", str(t, "name", "?"),
           str(t, "template", "?"), str(t, "thing_type", "-"), flag(t, "enabled") ? "yes" : "no");
    const char *key;
    json_t *v;
    json_object_foreach(json_object_get(t, "attributes"), key, v)
        printf("  Attribute:   %s = %s\n", key, json_string_value(v));
    size_t i;
    json_array_foreach(json_object_get(t, "thing_groups"), i, v)
        printf("  Group:       %s\n", json_string_value(v));
    printf("  Created:     %s\n  Updated:     %s\n", str(t, "created_at", "-"), str(t, "updated_at", "-"));
    json_array_foreach(json_object_get(t, "certificates"), i, v)
        printf("  Certificate: %-10s %s (issuer %s) since %s\n", str(v, "status", "?"), str(v, "serial", "?"),
               str(v, "issuer", "?"), str(v, "updated_at", "-"));
}

static void thing_enabled_text(const admin_args *a, json_t *t)
{
    (void)a;
    bool enabled = flag(t, "enabled");
    if (flag(t, "changed"))
        printf("thing '%s' %s\n", str(t, "name", "?"),
               enabled ? "enabled: it may provision again"
                       : "disabled: RegisterThing for it is refused (its certificates stay valid until revoked)");
    else
        printf("thing '%s' is %s already; nothing changed\n", str(t, "name", "?"), enabled ? "enabled" : "disabled");
}

/* ---- verbs ---------------------------------------------------------------- */

typedef struct admin_verb {
    const char *name;
    const char *command;           /* the admin library's command */
    uint64_t options;              /* allowed besides ALWAYS */
    const char *positional_key;    /* the one positional argument's name, or NULL for none */
    const char *positional_what;   /* for "give exactly one ..." */
    bool may_create;               /* may make a new store (--data) */
    void (*text)(const admin_args *a, json_t *answer);
} admin_verb;

typedef struct admin_noun {
    const char *name;
    const char *help;
    const char *verbs_text; /* for "unknown verb" */
    admin_verb verbs[7];
} admin_noun;

/* Required options, checked before anything runs so the message names the
 * option (the library checks again, for every caller). */
static int check_required(const char *cmd, const char *command, const admin_args *a)
{
    if (strcmp(command, "ca.add") == 0 && a->ca_dir == NULL)
        return cli_usage(cmd, "--ca-dir DIR (a CA directory made by `enroll ca init`) is required");
    if (strcmp(command, "ca.upload") == 0 && a->cert == NULL)
        return cli_usage(cmd, "--cert FILE (the CA certificate devices chain to) is required");
    if (strcmp(command, "ca.verify") == 0 && a->cert == NULL)
        return cli_usage(cmd, "--cert FILE (the certificate with CN = the verification code) is required");
    if (strcmp(command, "policy.new") == 0 && (a->validity == NULL || a->renewal_window == NULL || a->ca == NULL))
        return cli_usage(cmd, "--validity D, --renewal-window D and --ca NAME are required "
                              "(e.g. --validity P30D --renewal-window P7D --ca issuing)");
    if (strcmp(command, "group.new") == 0 || strcmp(command, "individual.new") == 0) {
        bool group = command[0] == 'g';
        bool x509 = group ? a->x509_ca_count > 0 : a->x509_cert != NULL;
        if (a->symmetric == x509)
            return cli_usage(cmd, "choose the attestation: --symmetric or %s",
                             group ? "--x509-ca NAME" : "--x509-cert FILE");
        if (a->policy == NULL)
            return cli_usage(cmd, "--policy NAME (a credential policy) is required");
    }
    if (strcmp(command, "key.show") == 0 && (a->group == NULL) == (a->individual == NULL))
        return cli_usage(cmd, "give exactly one of --group ID or --individual RID");
    if ((strcmp(command, "key.rotate") == 0 || strcmp(command, "registration.move") == 0) &&
        (a->group == NULL) == (a->individual == NULL))
        return cli_usage(cmd, "give exactly one of --group ID or --individual RID");
    if (strcmp(command, "key.derive") == 0 && (a->group == NULL || a->registration_id == NULL))
        return cli_usage(cmd, "--group ID and --registration-id RID are required");
    if (strcmp(command, "registration.list") == 0 && a->group != NULL && a->individual != NULL)
        return cli_usage(cmd, "give --group ID or --individual RID, not both");
    if (strcmp(command, "registration.revoke") == 0 && a->reason == NULL)
        return cli_usage(cmd, "--reason R is required (e.g. keyCompromise, superseded, cessationOfOperation)");
    if (strcmp(command, "cert.revoke") == 0 && (a->serial == NULL || a->reason == NULL))
        return cli_usage(cmd, "--serial HEX and --reason R are required");
    if (strcmp(command, "template.create") == 0 &&
        (a->file == NULL || a->policy == NULL || a->claim_ca_count == 0))
        return cli_usage(cmd, "--file T.json, --policy NAME and --claim-ca CA are required");
    if (strcmp(command, "template.create") == 0 && (a->hook_url == NULL) != (a->hook_ca == NULL))
        return cli_usage(cmd, "--hook-url URL and --hook-ca FILE go together");
    if (strcmp(command, "template.create") == 0 && a->hook_timeout_ms != NULL && a->hook_url == NULL)
        return cli_usage(cmd, "--hook-timeout-ms goes with --hook-url");
    if (strcmp(command, "crl.export") == 0 && (a->ca == NULL || a->out == NULL))
        return cli_usage(cmd, "--ca NAME (an issuing CA in the store) and --out FILE are required");
    return CLI_EXIT_OK;
}

static int run_verb(const admin_verb *v, const char *cmd, const char *help, int argc, char **argv)
{
    admin_args a;
    int rc = parse_admin_args(cmd, help, v->options, argc, argv, &a);
    if (rc != CLI_EXIT_OK)
        return rc < 0 ? CLI_EXIT_OK : rc;
    if (v->positional_key == NULL && optind < argc)
        return cli_usage(cmd, "unexpected argument '%s'", argv[optind]);
    if (v->positional_key != NULL && optind != argc - 1)
        return cli_usage(cmd, "give exactly one %s", v->positional_what);
    if (v->positional_key != NULL)
        a.positional = argv[optind];
    if ((rc = check_required(cmd, v->command, &a)) != CLI_EXIT_OK)
        return rc;
    json_t *answer = NULL;
    if ((rc = execute(cmd, &a, v->command, v->may_create, v->positional_key, &answer)) != CLI_EXIT_OK)
        return rc;
    if (strcmp(v->command, "crl.export") == 0) {
        enr_error err;
        const char *pem = str(answer, "crl_pem", "");
        if (cli_write(a.out, pem, strlen(pem), 0644, true, &err) != ENR_OK) {
            json_decref(answer);
            return cli_fail(&err, a.json);
        }
        json_object_del(answer, "crl_pem");
        json_object_set_new(answer, "out", json_string(a.out));
    }
    if (a.json)
        cli_print_json(answer);
    else
        v->text(&a, answer);
    if (enr_admin_command_secret(v->command)) {
        /* The answer's strings are jansson's copies: wipe the keys. */
        static const char *const SECRETS[] = {"primary_key", "secondary_key", "device_key", NULL};
        for (size_t i = 0; SECRETS[i] != NULL; i++) {
            json_t *s = json_object_get(answer, SECRETS[i]);
            if (json_is_string(s))
                OPENSSL_cleanse((void *)json_string_value(s), json_string_length(s));
        }
    }
    json_decref(answer);
    return CLI_EXIT_OK;
}

static const admin_noun NOUNS[] = {
    {"ca", CA_HELP, "add, upload, verify, list",
     {{"add", "ca.add", O(CA_DIR), "name", "CA name", true, ca_added_text},
      {"upload", "ca.upload", O(CERT), "name", "CA name", true, ca_uploaded_text},
      {"verify", "ca.verify", O(CERT), "name", "CA name", false, ca_verified_text},
      {"list", "ca.list", 0, NULL, NULL, false, ca_list_text},
      {NULL, NULL, 0, NULL, NULL, false, NULL}}},
    {"policy", POLICY_HELP, "new, list",
     {{"new", "policy.new", O(VALIDITY) | O(RENEWAL_WINDOW) | O(CA) | O(KEY_TYPES) | O(OCSP_URL) | O(CRL_URL) |
                           O(ALLOW_SERVER_KEYGEN),
       "name",
       "policy name", false,
       policy_new_text},
      {"list", "policy.list", 0, NULL, NULL, false, policy_list_text},
      {NULL, NULL, 0, NULL, NULL, false, NULL}}},
    {"group", GROUP_HELP, "new, list, show, disable, enable",
     {{"new", "group.new", O(POLICY) | O(SYMMETRIC) | O(HUB) | O(X509_CA), "id", "group id", false,
       enrollment_new_text},
      {"list", "group.list", 0, NULL, NULL, false, group_list_text},
      {"show", "group.show", 0, "id", "group id", false, enrollment_show_text},
      {"disable", "group.disable", 0, "id", "group id", false, enrollment_enabled_text},
      {"enable", "group.enable", 0, "id", "group id", false, enrollment_enabled_text},
      {NULL, NULL, 0, NULL, NULL, false, NULL}}},
    {"individual", INDIVIDUAL_HELP, "new, list, show, disable, enable",
     {{"new", "individual.new", O(POLICY) | O(SYMMETRIC) | O(HUB) | O(X509_CERT), "id", "registration id", false,
       enrollment_new_text},
      {"list", "individual.list", 0, NULL, NULL, false, individual_list_text},
      {"show", "individual.show", 0, "id", "registration id", false, enrollment_show_text},
      {"disable", "individual.disable", 0, "id", "registration id", false, enrollment_enabled_text},
      {"enable", "individual.enable", 0, "id", "registration id", false, enrollment_enabled_text},
      {NULL, NULL, 0, NULL, NULL, false, NULL}}},
    {"key", KEY_HELP, "show, derive, rotate",
     {{"show", "key.show", O(GROUP) | O(INDIVIDUAL), NULL, NULL, false, key_show_text},
      {"derive", "key.derive", O(GROUP) | O(REGISTRATION_ID) | O(SECONDARY), NULL, NULL, false, key_derive_text},
      {"rotate", "key.rotate", O(GROUP) | O(INDIVIDUAL), NULL, NULL, false, key_rotated_text},
      {NULL, NULL, 0, NULL, NULL, false, NULL}}},
    {"est", EST_HELP, "secret",
     {{"secret", "est.secret", O(GROUP) | O(INDIVIDUAL) | O(REMOVE), NULL, NULL, false, est_secret_text},
      {NULL, NULL, 0, NULL, NULL, false, NULL}}},
    {"registration", REGISTRATION_HELP, "list, show, revoke, disable, enable, move",
     {{"list", "registration.list", O(GROUP) | O(INDIVIDUAL) | O(STATUS), NULL, NULL, false, registration_list_text},
      {"show", "registration.show", 0, "id", "registration id", false, registration_show_text},
      {"revoke", "registration.revoke", O(REASON), "id", "registration id", false, registration_revoke_text},
      {"disable", "registration.disable", 0, "id", "registration id", false, registration_enabled_text},
      {"enable", "registration.enable", 0, "id", "registration id", false, registration_enabled_text},
      {"move", "registration.move", O(GROUP) | O(INDIVIDUAL), "id", "registration id", false, registration_moved_text},
      {NULL, NULL, 0, NULL, NULL, false, NULL}}},
    {"cert", CERT_HELP, "list, revoke",
     {{"list", "cert.list", O(EXPIRING) | O(REVOKED) | O(REGISTRATION) | O(ISSUER), NULL, NULL, false, cert_list_text},
      {"revoke", "cert.revoke", O(SERIAL) | O(ISSUER) | O(REASON), NULL, NULL, false, cert_revoke_text},
      {NULL, NULL, 0, NULL, NULL, false, NULL}}},
    {"audit", AUDIT_HELP, "list",
     {{"list", "audit.list", O(REGISTRATION), NULL, NULL, false, audit_list_text},
      {NULL, NULL, 0, NULL, NULL, false, NULL}}},
    {"template", TEMPLATE_HELP, "create, list, show, delete, enable, disable",
     {{"create", "template.create",
       O(FILE) | O(POLICY) | O(CLAIM_CA) | O(ALLOW_SERVER_KEYGEN) | O(HOOK_URL) | O(HOOK_CA) | O(HOOK_TIMEOUT_MS),
       "name", "template name", false, template_created_text},
      {"list", "template.list", 0, NULL, NULL, false, template_list_text},
      {"show", "template.show", 0, "name", "template name", false, template_show_text},
      {"delete", "template.delete", 0, "name", "template name", false, template_deleted_text},
      {"enable", "template.enable", 0, "name", "template name", false, template_enabled_text},
      {"disable", "template.disable", 0, "name", "template name", false, template_enabled_text},
      {NULL, NULL, 0, NULL, NULL, false, NULL}}},
    {"thing", THING_HELP, "list, show, disable, enable",
     {{"list", "thing.list", O(TEMPLATE), NULL, NULL, false, thing_list_text},
      {"show", "thing.show", 0, "name", "thing name", false, thing_show_text},
      {"disable", "thing.disable", 0, "name", "thing name", false, thing_enabled_text},
      {"enable", "thing.enable", 0, "name", "thing name", false, thing_enabled_text},
      {NULL, NULL, 0, NULL, NULL, false, NULL}}},
};

static const char STORE_HELP[] =
    "Usage: enroll admin store copy --from DIR|URL --to DIR|URL [--json]\n"
    "\n"
    "copy  Moves a whole store into a new one: a SQLite data directory into PostgreSQL\n"
    "      (postgresql://USER@HOST[:PORT]/DATABASE, an empty database), or back. Every\n"
    "      row is copied from one snapshot of the source inside one transaction of the\n"
    "      destination, which is committed only when each table's row count there equals\n"
    "      the source's; the counts are printed. A destination that holds anything is\n"
    "      refused. Stop enrolld first (or copy from a backup): writes made during the\n"
    "      copy are not in it. Progress goes to standard error.\n"
    "\n"
    "Options:\n"
    "  --from DIR|URL  the store to copy (it is only read)\n"
    "  --to DIR|URL    the new store (a directory is created; a database must exist, empty)\n"
    "  --json          the counts as JSON\n"
    "\n"
    "Example:\n"
    "  enroll admin store copy --from /var/lib/enroll --to postgresql://enroll@db.internal/enroll\n";

static void copy_progress(void *ctx, const char *table, int64_t done, int64_t total)
{
    (void)ctx;
    fprintf(stderr, "%s: copying %s: %lld of %lld rows\n", cli_program, table, (long long)done, (long long)total);
}

/* `enroll admin store copy`: offline, between two stores (never through
 * enrolld's API). */
static int store_copy(int argc, char **argv)
{
    static const struct option OPTIONS[] = {{"from", required_argument, NULL, 'f'},
                                            {"to", required_argument, NULL, 't'},
                                            {"json", no_argument, NULL, 'j'},
                                            {"help", no_argument, NULL, 'h'},
                                            {NULL, 0, NULL, 0}};
    const char *cmd = "admin store copy", *from = NULL, *to = NULL;
    bool json = false;
    optind = 0;
    opterr = 0;
    int c;
    while ((c = getopt_long(argc, argv, ":h", OPTIONS, NULL)) != -1) {
        switch (c) {
        case 'f': from = optarg; break;
        case 't': to = optarg; break;
        case 'j': json = true; break;
        case 'h': fputs(STORE_HELP, stdout); return CLI_EXIT_OK;
        case ':': return cli_usage(cmd, "option %s needs a value", argv[optind - 1]);
        default: return cli_usage(cmd, "unknown option %s", argv[optind - 1]);
        }
    }
    if (optind < argc)
        return cli_usage(cmd, "unexpected argument '%s'", argv[optind]);
    if (from == NULL || to == NULL)
        return cli_usage(cmd, "--from DIR|URL (the store to copy) and --to DIR|URL (the new store) are required");
    if (strcmp(from, to) == 0)
        return cli_usage(cmd, "--from and --to name the same store");
    enr_error err;
    /* The source must exist: a mistyped directory would be a new, empty store. */
    if (!enr_store_url_is_postgres(from) && !enr_store_sqlite_exists(from)) {
        enr_error_set(&err, ENR_E_IO, "%s holds no store (no enroll.db): --from takes enrolld's data directory or "
                      "a postgresql:// URL", from);
        return cli_fail(&err, json);
    }
    enr_store *src = NULL, *dst = NULL;
    enr_store_copy_report report;
    /* The source as it is: a copy never upgrades what it reads. */
    enr_code rc = enr_store_open_as_is(from, &src, &err);
    if (rc == ENR_OK)
        rc = enr_store_open(to, &dst, &err);
    if (rc == ENR_OK)
        rc = enr_store_copy(src, dst, copy_progress, NULL, &report, &err);
    char shown_from[SHOWN_STORE_MAX], shown_to[SHOWN_STORE_MAX];
    enr_store_location_shown(from, shown_from, sizeof shown_from);
    enr_store_location_shown(to, shown_to, sizeof shown_to);
    enr_store_close(src);
    enr_store_close(dst);
    if (rc != ENR_OK)
        return cli_fail(&err, json);
    if (json) {
        json_t *o = json_object(), *tables = json_object();
        for (size_t i = 0; i < report.tables; i++)
            json_object_set_new(tables, report.table[i].name, json_integer((json_int_t)report.table[i].rows));
        json_object_set_new(o, "from", json_string(shown_from));
        json_object_set_new(o, "to", json_string(shown_to));
        json_object_set_new(o, "rows", json_integer((json_int_t)report.rows));
        json_object_set_new(o, "tables", tables);
        json_object_set_new(o, "verified", json_true());
        cli_print_json(o);
        json_decref(o);
    } else {
        printf("copied %lld rows from %s to %s; each table's count checked in the destination:\n",
               (long long)report.rows, shown_from, shown_to);
        for (size_t i = 0; i < report.tables; i++)
            printf("  %-34s %lld\n", report.table[i].name, (long long)report.table[i].rows);
    }
    return CLI_EXIT_OK;
}

/* `enroll admin crl` has no verb. */
static const admin_verb CRL_VERB = {"crl", "crl.export", O(CA) | O(OUT) | O(NEXT_UPDATE), NULL, NULL, false,
                                    crl_text};

int cli_admin(int argc, char **argv)
{
    if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
        fputs(ADMIN_HELP, argc < 2 ? stderr : stdout);
        return argc < 2 ? CLI_EXIT_USAGE : CLI_EXIT_OK;
    }
    if (strcmp(argv[1], "crl") == 0)
        return run_verb(&CRL_VERB, "admin crl", CRL_HELP, argc - 1, argv + 1);
    if (strcmp(argv[1], "store") == 0) {
        if (argc < 3 || strcmp(argv[2], "--help") == 0 || strcmp(argv[2], "-h") == 0) {
            fputs(STORE_HELP, argc < 3 ? stderr : stdout);
            return argc < 3 ? CLI_EXIT_USAGE : CLI_EXIT_OK;
        }
        if (strcmp(argv[2], "copy") != 0)
            return cli_usage("admin store", "unknown verb '%s' (copy)", argv[2]);
        return store_copy(argc - 2, argv + 2);
    }
    const admin_noun *noun = NULL;
    for (size_t i = 0; i < sizeof NOUNS / sizeof NOUNS[0]; i++)
        if (strcmp(argv[1], NOUNS[i].name) == 0)
            noun = &NOUNS[i];
    if (noun == NULL)
        return cli_usage("admin",
                         "unknown noun '%s' (ca, policy, group, individual, key, registration, cert, audit, crl, "
                         "template, thing, store)",
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
            return run_verb(v, cmd, noun->help, argc - 2, argv + 2);
        }
    }
    return cli_usage(where, "unknown verb '%s' (%s)", argv[2], noun->verbs_text);
}
