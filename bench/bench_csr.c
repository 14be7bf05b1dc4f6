/* CSR throughput: build+sign and parse+verify with an in-memory EC P-256
 * key, printed beside this machine's own ceiling from `openssl speed`. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "bench/ceiling.h"
#include "enroll/csr.h"
#include "enroll/signer.h"


int main(void)
{
    char path[] = "/tmp/enroll-bench-XXXXXX";
    if (mkdtemp(path) == NULL)
        return 1;
    char key[sizeof path + 16];
    snprintf(key, sizeof key, "%s/k.pem", path);
    enr_error err;
    enr_signer *signer = NULL;
    enr_csr_spec *spec = enr_csr_spec_new();
    if (enr_key_generate_file(ENR_KEY_EC_P256, key, NULL, true, &err) != ENR_OK ||
        enr_signer_open(key, NULL, NULL, &signer, &err) != ENR_OK ||
        enr_csr_spec_set_subject(spec, "/O=Acme/CN=dev-001", &err) != ENR_OK ||
        enr_csr_spec_set_ext_key_usage(spec, "clientAuth", &err) != ENR_OK) {
        fprintf(stderr, "bench setup: %s\n", err.message);
        return 1;
    }
    unlink(key);
    rmdir(path);

    const int N = 3000;
    unsigned char *der = NULL;
    size_t der_len = 0;
    double t0 = bench_now();
    for (int i = 0; i < N; i++) {
        enr_csr *csr = NULL;
        if (enr_csr_build(spec, signer, &csr, &err) != ENR_OK) {
            fprintf(stderr, "build: %s\n", err.message);
            return 1;
        }
        if (i == 0)
            enr_csr_encode_alloc(csr, ENR_CSR_DER, &der, &der_len, &err);
        enr_csr_free(csr);
    }
    double build_rate = N / (bench_now() - t0);

    t0 = bench_now();
    for (int i = 0; i < N; i++) {
        enr_csr *csr = NULL;
        if (enr_csr_parse(der, der_len, &csr, &err) != ENR_OK || enr_csr_verify(csr, &err) != ENR_OK) {
            fprintf(stderr, "parse/verify: %s\n", err.message);
            return 1;
        }
        enr_csr_free(csr);
    }
    double verify_rate = N / (bench_now() - t0);

    double sign_s = 0, verify_s = 0;
    int have = bench_openssl_ecdsa_p256(&sign_s, &verify_s);
    /* A file key's CSR is signed once and not re-verified: its ceiling is the sign rate. */
    printf("bench_csr (EC P-256 file key, one core, %d iterations each)\n", N);
    if (have == 0) {
        printf("  csr build+sign:   %8.0f /s   ceiling %8.0f /s (openssl speed ecdsap256 sign)    %5.1f%%\n",
               build_rate, sign_s, 100.0 * build_rate / sign_s);
        printf("  csr parse+verify: %8.0f /s   ceiling %8.0f /s (openssl speed ecdsap256 verify)  %5.1f%%\n",
               verify_rate, verify_s, 100.0 * verify_rate / verify_s);
    } else {
        printf("  csr build+sign:   %8.0f /s\n  csr parse+verify: %8.0f /s\n", build_rate, verify_rate);
        printf("  (openssl speed unavailable: no ceiling to compare)\n");
    }
    free(der);
    enr_csr_spec_free(spec);
    enr_signer_free(signer);
    return 0;
}
