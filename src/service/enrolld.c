/* enrolld: the provisioning service. */
#include <event2/thread.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>

#include "enroll/service.h"

static const char USAGE[] =
    "Usage: enrolld --config FILE\n"
    "\n"
    "The enroll provisioning service (HTTPS, optional client certificates).\n"
    "Signals: SIGTERM/SIGINT stop accepting and finish requests in flight;\n"
    "SIGHUP reloads the TLS certificate and key.\n"
    "\n"
    "Example config (JSON):\n"
    "  {\"listen\": \"127.0.0.1:8443\", \"data_dir\": \"data\", \"id_scope\": \"0ne00000042\",\n"
    "   \"tls\": {\"cert\": \"server.pem\", \"key\": \"server.key\"}}\n"
    "data_dir must hold a store (made by `enroll admin ... --data DIR`) unless\n"
    "\"create_store\": true. Several nodes share one PostgreSQL store instead:\n"
    "  \"store\": \"postgresql://enroll@db.internal/enroll\" (docs/postgresql.md).\n"
    "Every key: docs/operations.md, \"Configuration\"\n"
    "(installed in share/doc/enroll/).\n";

int main(int argc, char **argv)
{
    const char *config = NULL;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            fputs(USAGE, stdout);
            return 0;
        }
        if (strcmp(argv[i], "--config") == 0 && i + 1 < argc)
            config = argv[++i];
        else {
            fprintf(stderr, "enrolld: unexpected argument '%s'\n\n%s", argv[i], USAGE);
            return 2;
        }
    }
    if (config == NULL) {
        fprintf(stderr, "enrolld: --config FILE is required\n\n%s", USAGE);
        return 2;
    }
    /* Signals are taken by this thread alone, with sigwait: workers never see them. */
    sigset_t signals;
    sigemptyset(&signals);
    sigaddset(&signals, SIGTERM);
    sigaddset(&signals, SIGINT);
    sigaddset(&signals, SIGHUP);
    pthread_sigmask(SIG_BLOCK, &signals, NULL);
    signal(SIGPIPE, SIG_IGN);
    /* A file grown past RLIMIT_FSIZE is a failed write (the store answers
     * 503 and /healthz says so), not the death of the service. */
    signal(SIGXFSZ, SIG_IGN);
    /* Every connection is a descriptor: take all the hard limit allows
     * (the connection cap is drawn from it, limits.max_connections). */
    struct rlimit nofile;
    if (getrlimit(RLIMIT_NOFILE, &nofile) == 0 && nofile.rlim_cur < nofile.rlim_max) {
        nofile.rlim_cur = nofile.rlim_max;
        if (setrlimit(RLIMIT_NOFILE, &nofile) != 0)
            fprintf(stderr, "{\"event\":\"fd_limit_kept\",\"message\":\"cannot raise the soft descriptor limit\"}\n");
    }
    evthread_use_pthreads();

    enr_error err;
    enr_service_config *cfg = NULL;
    enr_service *svc = NULL;
    if (enr_service_config_load(config, &cfg, &err) != ENR_OK ||
        enr_service_new(cfg, &svc, &err) != ENR_OK || enr_service_start(svc, &err) != ENR_OK) {
        fprintf(stderr, "enrolld: %s\n", err.message);
        enr_service_free(svc);
        enr_service_config_free(cfg);
        /* `enroll --help`'s rule: 2 is for the command line alone; a config
         * file that is wrong, or a key, store or port it names that cannot be
         * used, is 3; our own failure is 4. */
        return err.code == ENR_E_NOMEM || err.code == ENR_E_CRYPTO || err.code == ENR_E_INTERNAL ? 4 : 3;
    }
    for (;;) {
        int sig = 0;
        if (sigwait(&signals, &sig) != 0)
            continue;
        if (sig == SIGHUP) {
            if (enr_service_reload(svc, &err) != ENR_OK)
                fprintf(stderr, "{\"event\":\"reload_failed\",\"message\":\"%s\"}\n", err.message);
            else
                fprintf(stderr, "{\"event\":\"reloaded\"}\n");
            continue;
        }
        break;
    }
    fprintf(stderr, "{\"event\":\"stopping\"}\n");
    enr_service_stop(svc);
    enr_service_free(svc);
    enr_service_config_free(cfg);
    fprintf(stderr, "{\"event\":\"stopped\"}\n");
    return 0;
}
