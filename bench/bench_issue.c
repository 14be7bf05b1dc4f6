/* Issuance throughput: a CA in a scratch directory issues device
 * certificates in-process from pre-made EC P-256 CSRs (parse + proof of
 * possession + policy + build + sign), printed beside this machine's ceiling
 * for "verify one signature and make one": 1 / (1/sign + 1/verify), from
 * `openssl speed ecdsap256`. Recording is measured separately: in-memory
 * (the crypto path alone) and the CA directory's fsync'ed index. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "enroll/ca.h"
#include "bench/ceiling.h"
#include "enroll/csr.h"
#include <stdbool.h>


#define CSR_COUNT 200

typedef struct request {
    unsigned char *der;
    size_t len;
} request;

/* recorded: enr_ca_issue (the CA directory's fsync'ed index); else
 * enr_ca_sign (what enrolld does before its group commit). */
static double issue_rate(enr_ca *ca, const enr_profile *profile, request *reqs, int n, bool recorded)
{
    enr_error err;
    double t0 = bench_now();
    for (int i = 0; i < n; i++) {
        request *r = &reqs[i % CSR_COUNT];
        enr_csr *csr = NULL;
        X509 *cert = NULL;
        if (enr_csr_parse(r->der, r->len, &csr, &err) != ENR_OK ||
            (recorded ? enr_ca_issue(ca, csr, profile, 0, &cert, &err)
                      : enr_ca_sign(ca, csr, profile, 0, &cert, &err)) != ENR_OK) {
            fprintf(stderr, "issue: %s\n", err.message);
            exit(1);
        }
        unsigned char *der = NULL; /* what a server would send */
        if (i2d_X509(cert, &der) <= 0)
            exit(1);
        OPENSSL_free(der);
        X509_free(cert);
        enr_csr_free(csr);
    }
    return n / (bench_now() - t0);
}

int main(int argc, char **argv)
{
    int n = argc > 1 ? atoi(argv[1]) : 4000;
    char dir[] = "/tmp/enroll-bench-ca-XXXXXX";
    if (mkdtemp(dir) == NULL)
        return 1;
    char root[600], issuing[600], key[600];
    snprintf(root, sizeof root, "%s/root", dir);
    snprintf(issuing, sizeof issuing, "%s/issuing", dir);
    snprintf(key, sizeof key, "%s/device.key", dir);
    enr_error err;
    enr_ca_init_options ro = {.dir = root, .subject = "/CN=Bench Root", .key_type = ENR_KEY_EC_P256, .pathlen = -1};
    enr_ca_init_options io = {.dir = issuing, .subject = "/CN=Bench Issuing", .key_type = ENR_KEY_EC_P256,
                              .pathlen = -1, .parent_dir = root};
    enr_ca *ca = NULL;
    enr_profile *profile = NULL;
    if (enr_ca_init(&ro, &err) != ENR_OK || enr_ca_init(&io, &err) != ENR_OK ||
        enr_ca_open(issuing, NULL, NULL, &ca, &err) != ENR_OK || enr_profile_new("device", &profile, &err) != ENR_OK) {
        fprintf(stderr, "bench setup: %s\n", err.message);
        return 1;
    }
    /* Pre-made CSRs from distinct device keys, as DER. */
    static request reqs[CSR_COUNT];
    for (int i = 0; i < CSR_COUNT; i++) {
        enr_signer *signer = NULL;
        enr_csr_spec *spec = enr_csr_spec_new();
        enr_csr *csr = NULL;
        char cn[64];
        snprintf(cn, sizeof cn, "/CN=dev-%04d", i);
        if (enr_key_generate_file(ENR_KEY_EC_P256, key, NULL, true, &err) != ENR_OK ||
            enr_signer_open(key, NULL, NULL, &signer, &err) != ENR_OK ||
            enr_csr_spec_set_subject(spec, cn, &err) != ENR_OK || enr_csr_build(spec, signer, &csr, &err) != ENR_OK ||
            enr_csr_encode_alloc(csr, ENR_CSR_DER, &reqs[i].der, &reqs[i].len, &err) != ENR_OK) {
            fprintf(stderr, "bench CSRs: %s\n", err.message);
            return 1;
        }
        enr_csr_free(csr);
        enr_csr_spec_free(spec);
        enr_signer_free(signer);
    }

    (void)issue_rate(ca, profile, reqs, 200, false); /* warm-up */
    double crypto_rate = issue_rate(ca, profile, reqs, n, false);
    int durable_n = n / 4;
    double durable_rate = issue_rate(ca, profile, reqs, durable_n, true);

    double sign_s = 0, verify_s = 0;
    printf("bench_issue (EC P-256 issuing CA, EC P-256 device CSRs, one core)\n");
    if (bench_openssl_ecdsa_p256(&sign_s, &verify_s) == 0) {
        double ceiling = 1.0 / (1.0 / sign_s + 1.0 / verify_s);
        printf("  parse+verify+issue+sign, in memory:   %7.0f certs/s  (%d)  ceiling %7.0f /s (openssl speed: sign %.0f, verify %.0f)  %5.1f%%\n",
               crypto_rate, n, ceiling, sign_s, verify_s, 100.0 * crypto_rate / ceiling);
        printf("  the same, recorded in the fsync'ed CA index: %7.0f certs/s  (%d)  %5.1f%% of the ceiling\n",
               durable_rate, durable_n, 100.0 * durable_rate / ceiling);
    } else {
        printf("  in memory: %.0f certs/s; recorded: %.0f certs/s (no openssl speed ceiling)\n", crypto_rate,
               durable_rate);
    }
    for (int i = 0; i < CSR_COUNT; i++)
        free(reqs[i].der);
    enr_profile_free(profile);
    enr_ca_free(ca);
    char cmd[700];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    return system(cmd) == 0 ? 0 : 1;
}
