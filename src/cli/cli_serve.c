/* enroll serve: enrolld under the enroll command line. The service stays a
 * program of its own (a device's `enroll` need not carry libevent and the
 * server), so this runs the enrolld installed next to this binary. */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "cli/cli.h"

static const char SERVE_HELP[] =
    "Usage: enroll serve --config FILE\n"
    "\n"
    "Runs the provisioning service, enrolld, with this configuration: the DPS-compatible\n"
    "registration API over HTTPS (optional client certificates), /healthz, /metrics, and\n"
    "the admin API when the config names an admin CA. It is the same as `enrolld --config\n"
    "FILE`, using the enrolld next to this enroll binary (else the one on PATH).\n"
    "SIGTERM or SIGINT: stop accepting, finish what is in flight, exit 0. SIGHUP: reload\n"
    "the TLS certificate and key.\n"
    "\n"
    "Example:\n"
    "  enroll serve --config /etc/enroll/enrolld.json\n"
    "  with enrolld.json:\n"
    "  {\"listen\": \"0.0.0.0:8443\", \"data_dir\": \"/var/lib/enroll\", \"id_scope\": \"0ne00000042\",\n"
    "   \"tls\": {\"cert\": \"server.pem\", \"key\": \"server.key\"}, \"workers\": 2}\n";

int cli_serve(int argc, char **argv)
{
    const char *config = NULL;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            fputs(SERVE_HELP, stdout);
            return CLI_EXIT_OK;
        }
        if (strcmp(argv[i], "--config") == 0 && i + 1 < argc)
            config = argv[++i];
        else if (strncmp(argv[i], "--config=", 9) == 0)
            config = argv[i] + 9;
        else
            return cli_usage("serve", "unexpected argument '%s'", argv[i]);
    }
    if (config == NULL)
        return cli_usage("serve", "--config FILE is required");
    char *const args[] = {"enrolld", "--config", (char *)config, NULL};
    char self[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
    if (n > 0) {
        self[n] = '\0';
        char *slash = strrchr(self, '/');
        if (slash != NULL && (size_t)(slash - self) + sizeof "/enrolld" <= sizeof self) {
            strcpy(slash, "/enrolld");
            if (access(self, X_OK) == 0)
                execv(self, args);
        }
    }
    execvp("enrolld", args);
    fprintf(stderr, "enroll serve: cannot run enrolld (%s): install it next to enroll or on PATH\n", strerror(errno));
    return CLI_EXIT_IO;
}
