#include "service/crl_publisher.h"

#include <errno.h>
#include <openssl/pem.h>
#include <pthread.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "enroll/admin.h"
#include "enroll/ca.h"
#include "enroll/fileio.h"
#include "enroll/name.h"
#include "enroll/store.h"

#define CAS_MAX 64
#define RELOAD_TIMEOUT_SECONDS 30

extern char **environ;

/* What was last published for one CA. */
typedef struct published {
    char name[ENR_STORE_ID_MAX + 1];
    int64_t revoked;      /* the store's count of its revocations then */
    time_t latest;        /* and the latest revocation's time */
    time_t refresh_at;    /* half its validity: publish again from then on */
    bool failing;         /* the last attempt failed (logged once until it works) */
} published;

struct crl_publisher {
    const enr_service_config *cfg;
    enr_store *store;
    pthread_t thread;
    pthread_mutex_t lock;
    pthread_cond_t wake;
    bool stopping;
    published cas[CAS_MAX];
    size_t count;
};

static published *state_of(crl_publisher *p, const char *name)
{
    for (size_t i = 0; i < p->count; i++)
        if (strcmp(p->cas[i].name, name) == 0)
            return &p->cas[i];
    if (p->count == CAS_MAX)
        return NULL;
    published *s = &p->cas[p->count++];
    memset(s, 0, sizeof *s);
    snprintf(s->name, sizeof s->name, "%s", name);
    return s;
}

/* A CRL of the CA from its directory (its key) and the store (its
 * revocations and CRL number), written where brokers read it. */
static enr_code publish(crl_publisher *p, const enr_ca_record *rec, time_t now, int64_t *number, enr_error *err)
{
    enr_ca *ca = NULL;
    X509_CRL *crl = NULL;
    BIO *bio = NULL;
    enr_code rc = enr_admin_open_ca(p->store, rec->key_ref, NULL, NULL, &ca, err);
    if (rc == ENR_OK) {
        enr_crl_options opts = {.now = now, .next_update = p->cfg->crl_next_update_seconds};
        rc = enr_ca_crl_ex(ca, &opts, &crl, err);
    }
    if (rc == ENR_OK && ((bio = BIO_new(BIO_s_mem())) == NULL || !PEM_write_bio_X509_CRL(bio, crl)))
        rc = enr_error_set(err, ENR_E_CRYPTO, "cannot encode the CRL");
    if (rc == ENR_OK) {
        char path[4096], *pem = NULL;
        long len = BIO_get_mem_data(bio, &pem);
        snprintf(path, sizeof path, "%s/%s.crl.pem", p->cfg->crl_publish_dir, rec->name);
        /* 0644: a broker running as its own user reads it. */
        rc = enr_file_write_atomic(path, pem, (size_t)len, 0644, true, err);
        ASN1_INTEGER *n = X509_CRL_get_ext_d2i(crl, NID_crl_number, NULL, NULL);
        *number = n != NULL ? ASN1_INTEGER_get(n) : 0;
        ASN1_INTEGER_free(n);
    }
    BIO_free(bio);
    X509_CRL_free(crl);
    enr_ca_free(ca);
    return rc;
}

/* enrolld's environment without what is the store's (PGPASSWORD and the
 * rest of libpq's): the command has no business with it. */
static char **command_environment(void)
{
    size_t n = 0;
    while (environ[n] != NULL)
        n++;
    char **env = calloc(n + 1, sizeof *env);
    size_t k = 0;
    for (size_t i = 0; env != NULL && i < n; i++)
        if (strncmp(environ[i], "PG", 2) != 0)
            env[k++] = environ[i];
    return env;
}

/* The reload command, waited for (bounded): no shell, its output goes to
 * enrolld's stderr; it starts with the signals a program expects (enrolld's
 * threads block SIGTERM, SIGINT and SIGHUP and ignore SIGPIPE, and a
 * restarted broker would inherit that). */
static void reload(crl_publisher *p)
{
    char *const *argv = p->cfg->crl_reload_command;
    if (argv == NULL)
        return;
    posix_spawnattr_t attr;
    sigset_t none, defaults;
    sigemptyset(&none);
    sigemptyset(&defaults);
    sigaddset(&defaults, SIGPIPE);
    sigaddset(&defaults, SIGHUP);
    sigaddset(&defaults, SIGTERM);
    sigaddset(&defaults, SIGINT);
    sigaddset(&defaults, SIGXFSZ);
    char **env = command_environment();
    pid_t pid;
    int rc = env == NULL ? ENOMEM : posix_spawnattr_init(&attr);
    if (rc == 0) {
        posix_spawnattr_setsigmask(&attr, &none);
        posix_spawnattr_setsigdefault(&attr, &defaults);
        posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
        rc = posix_spawnp(&pid, argv[0], NULL, &attr, argv, env);
        posix_spawnattr_destroy(&attr);
    }
    free(env);
    if (rc != 0) {
        fprintf(stderr, "{\"event\":\"crl_reload_failed\",\"command\":\"%s\",\"message\":\"%s\"}\n", argv[0],
                strerror(rc));
        return;
    }
    int status = 0;
    for (int waited = 0; waited < RELOAD_TIMEOUT_SECONDS * 10; waited++) {
        pid_t done = waitpid(pid, &status, WNOHANG);
        if (done < 0 && errno != EINTR) {
            fprintf(stderr, "{\"event\":\"crl_reload_failed\",\"command\":\"%s\",\"message\":\"%s\"}\n", argv[0],
                    strerror(errno));
            return;
        }
        if (done == pid) {
            int code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + (WIFSIGNALED(status) ? WTERMSIG(status) : 0);
            fprintf(stderr, "{\"event\":\"crl_reloaded\",\"command\":\"%s\",\"exit\":%d}\n", argv[0], code);
            return;
        }
        struct timespec tenth = {0, 100 * 1000 * 1000};
        nanosleep(&tenth, NULL);
    }
    kill(pid, SIGKILL);
    waitpid(pid, &status, 0);
    fprintf(stderr, "{\"event\":\"crl_reload_failed\",\"command\":\"%s\",\"message\":\"still running after %d s: killed\"}\n",
            argv[0], RELOAD_TIMEOUT_SECONDS);
}

/* One pass over the issuing CAs: what changed is published, then the
 * broker told once. */
static void check(crl_publisher *p, bool force)
{
    enr_error err;
    enr_ca_record_list list = {0};
    if (enr_store_list_cas(p->store, &list, &err) != ENR_OK) {
        fprintf(stderr, "{\"event\":\"crl_check_failed\",\"message\":\"%s\"}\n", err.message);
        return;
    }
    time_t now = time(NULL);
    bool any = false;
    for (size_t i = 0; i < list.count; i++) {
        const enr_ca_record *rec = &list.items[i];
        published *s = rec->role == ENR_CA_ISSUING ? state_of(p, rec->name) : NULL;
        if (s == NULL)
            continue;
        const unsigned char *q = rec->certificate.data;
        X509 *cert = d2i_X509(NULL, &q, (long)rec->certificate.len);
        char *issuer = cert != NULL ? enr_name_format(X509_get_subject_name(cert)) : NULL;
        X509_free(cert);
        int64_t revoked = 0;
        time_t latest = 0;
        enr_code rc = issuer != NULL ? enr_store_revocation_state(p->store, issuer, &revoked, &latest, &err)
                                     : enr_error_set(&err, ENR_E_PARSE, "the CA's certificate in the store is damaged");
        free(issuer);
        bool due = force || s->refresh_at == 0 || now >= s->refresh_at || revoked != s->revoked || latest != s->latest;
        int64_t number = 0;
        if (rc == ENR_OK && due)
            rc = publish(p, rec, now, &number, &err);
        if (rc != ENR_OK) {
            if (!s->failing) /* once until it works again: bounded logging */
                fprintf(stderr, "{\"event\":\"crl_publish_failed\",\"ca\":\"%s\",\"message\":\"%s\"}\n", rec->name,
                        err.message);
            s->failing = true;
            continue;
        }
        if (!due)
            continue;
        s->failing = false;
        s->revoked = revoked;
        s->latest = latest;
        s->refresh_at = now + p->cfg->crl_next_update_seconds / 2;
        any = true;
        fprintf(stderr, "{\"event\":\"crl_published\",\"ca\":\"%s\",\"crl_number\":%lld,\"revoked\":%lld}\n",
                rec->name, (long long)number, (long long)revoked);
    }
    enr_ca_record_list_free(&list);
    if (any)
        reload(p);
}

static void *publisher_main(void *arg)
{
    crl_publisher *p = arg;
    pthread_mutex_lock(&p->lock);
    while (!p->stopping) {
        struct timespec until;
        clock_gettime(CLOCK_REALTIME, &until);
        until.tv_sec += p->cfg->crl_check_seconds;
        while (!p->stopping && pthread_cond_timedwait(&p->wake, &p->lock, &until) != ETIMEDOUT)
            ;
        if (p->stopping)
            break;
        pthread_mutex_unlock(&p->lock);
        check(p, false);
        pthread_mutex_lock(&p->lock);
    }
    pthread_mutex_unlock(&p->lock);
    return NULL;
}

enr_code crl_publisher_start(const enr_service_config *cfg, crl_publisher **out, enr_error *err)
{
    *out = NULL;
    if (mkdir(cfg->crl_publish_dir, 0755) != 0 && errno != EEXIST)
        return enr_error_set(err, ENR_E_IO, "crl.publish_dir %s: %s", cfg->crl_publish_dir, strerror(errno));
    crl_publisher *p = calloc(1, sizeof *p);
    if (p == NULL)
        return enr_error_set(err, ENR_E_NOMEM, "out of memory");
    p->cfg = cfg;
    enr_code rc = enr_store_open(cfg->store_location, &p->store, err);
    if (rc != ENR_OK) {
        free(p);
        return rc;
    }
    pthread_mutex_init(&p->lock, NULL);
    pthread_cond_init(&p->wake, NULL);
    check(p, true);
    if (pthread_create(&p->thread, NULL, publisher_main, p) != 0) {
        enr_store_close(p->store);
        pthread_mutex_destroy(&p->lock);
        pthread_cond_destroy(&p->wake);
        free(p);
        return enr_error_set(err, ENR_E_INTERNAL, "cannot start the CRL publisher's thread");
    }
    *out = p;
    return ENR_OK;
}

void crl_publisher_stop(crl_publisher *p)
{
    if (p == NULL)
        return;
    pthread_mutex_lock(&p->lock);
    p->stopping = true;
    pthread_cond_signal(&p->wake);
    pthread_mutex_unlock(&p->lock);
    pthread_join(p->thread, NULL);
    enr_store_close(p->store);
    pthread_mutex_destroy(&p->lock);
    pthread_cond_destroy(&p->wake);
    free(p);
}
