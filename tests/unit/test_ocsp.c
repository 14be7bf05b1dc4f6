/* The OCSP responder's core: requests made with OpenSSL for a CA in a
 * scratch store, answers read back and verified with OpenSSL (signature up
 * to the CA, nonce, statuses); and a table of bad requests, each answered
 * with the OCSP error RFC 6960 names, never a crash or a signature. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <openssl/ocsp.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "enroll/ca.h"
#include "enroll/ocsp.h"
#include "enroll/store.h"

typedef struct fixture {
    char dir[64];
    char ca_dir[96];
    enr_store *store;
    enr_ocsp_responder *responder;
    X509 *ca;
    X509 *leaf;       /* issued by the CA, in the store */
    X509 *stranger;   /* issued by the CA, not in the store */
    X509 *other_ca;   /* a CA the store does not serve */
} fixture;

static X509 *read_cert(const char *path)
{
    FILE *f = fopen(path, "r");
    assert_non_null(f);
    X509 *x = PEM_read_X509(f, NULL, NULL, NULL);
    fclose(f);
    assert_non_null(x);
    return x;
}

/* A certificate from the CA (its own key, a P-256 key made here). */
static X509 *issue(const char *ca_dir, const char *cn)
{
    char cmd[512];
    snprintf(cmd, sizeof cmd,
             "cd %s/.. && openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout /dev/null "
             "-subj /CN=%s -out %s.csr 2>/dev/null && \"$ENROLL_BIN\" ca sign --dir %s --profile device %s.csr "
             "--out %s.pem 2>/dev/null",
             ca_dir, cn, cn, ca_dir, cn, cn);
    assert_int_equal(system(cmd), 0);
    char path[256];
    snprintf(path, sizeof path, "%s/../%s.pem", ca_dir, cn);
    return read_cert(path);
}

static int setup(void **state)
{
    fixture *f = calloc(1, sizeof *f);
    snprintf(f->dir, sizeof f->dir, "/tmp/enroll-test-ocsp-XXXXXX");
    if (f == NULL || mkdtemp(f->dir) == NULL || getenv("ENROLL_BIN") == NULL)
        return -1;
    snprintf(f->ca_dir, sizeof f->ca_dir, "%s/ca", f->dir);
    enr_error err;
    enr_ca_init_options root = {.dir = f->ca_dir, .subject = "/O=Test/CN=OCSP Test CA"};
    char other_dir[96];
    snprintf(other_dir, sizeof other_dir, "%s/other", f->dir);
    enr_ca_init_options other = {.dir = other_dir, .subject = "/CN=Someone Else's CA"};
    if (enr_ca_init(&root, &err) != ENR_OK || enr_ca_init(&other, &err) != ENR_OK) {
        fprintf(stderr, "setup: %s\n", err.message);
        return -1;
    }
    char path[160];
    snprintf(path, sizeof path, "%s/cert.pem", f->ca_dir);
    f->ca = read_cert(path);
    snprintf(path, sizeof path, "%s/cert.pem", other_dir);
    f->other_ca = read_cert(path);
    f->leaf = issue(f->ca_dir, "dev-1");
    f->stranger = issue(f->ca_dir, "dev-2");
    char data[96];
    snprintf(data, sizeof data, "%s/data", f->dir);
    if (enr_store_open_sqlite(data, &f->store, &err) != ENR_OK)
        return -1;
    /* The CA in the store, and the leaf as a registration's certificate. */
    enr_ca_record rec = {.role = ENR_CA_ISSUING};
    snprintf(rec.name, sizeof rec.name, "devices");
    snprintf(rec.key_ref, sizeof rec.key_ref, "%s", f->ca_dir);
    unsigned char *der = NULL;
    int n = i2d_X509(f->ca, &der);
    rec.certificate = (enr_buf){der, (size_t)n};
    enr_code rc = enr_store_create_ca(f->store, &rec, NULL, &err);
    OPENSSL_free(der);
    enr_registration r = {.enrollment_kind = ENR_ENROLLMENT_GROUP};
    snprintf(r.registration_id, sizeof r.registration_id, "dev-1");
    snprintf(r.enrollment_id, sizeof r.enrollment_id, "fleet");
    snprintf(r.status, sizeof r.status, "assigned");
    snprintf(r.etag, sizeof r.etag, "etag-1");
    enr_certificate c = {0};
    enr_operation op = {0};
    snprintf(op.operation_id, sizeof op.operation_id, "op-1");
    snprintf(op.status, sizeof op.status, "assigned");
    if (rc == ENR_OK)
        rc = enr_certificate_from_x509(f->leaf, &c, &err);
    snprintf(c.registration_id, sizeof c.registration_id, "dev-1");
    if (rc == ENR_OK)
        rc = enr_store_commit_registration(f->store, &r, &c, &op, NULL, &err);
    enr_certificate_free(&c);
    if (rc == ENR_OK)
        rc = enr_ocsp_responder_new(f->store, &f->responder, &err);
    if (rc != ENR_OK) {
        fprintf(stderr, "setup: %s\n", err.message);
        return -1;
    }
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture *f = *state;
    enr_ocsp_responder_free(f->responder);
    enr_store_close(f->store);
    X509_free(f->ca);
    X509_free(f->leaf);
    X509_free(f->stranger);
    X509_free(f->other_ca);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", f->dir);
    int rc = system(cmd) == 0 ? 0 : -1;
    free(f);
    return rc;
}

/* A DER request for CERT issued by ISSUER (one CertID), with a nonce. */
static unsigned char *request_for(X509 *cert, X509 *issuer, const EVP_MD *md, size_t *len, OCSP_REQUEST **keep)
{
    OCSP_REQUEST *req = OCSP_REQUEST_new();
    OCSP_CERTID *id = OCSP_cert_to_id(md, cert, issuer);
    assert_non_null(OCSP_request_add0_id(req, id));
    assert_int_equal(OCSP_request_add1_nonce(req, NULL, 16), 1);
    unsigned char *der = NULL;
    int n = i2d_OCSP_REQUEST(req, &der);
    assert_true(n > 0);
    *len = (size_t)n;
    *keep = req;
    return der;
}

/* The status OpenSSL reads from RESP for CERT, after checking the
 * signature up to the CA and the nonce against REQ. */
static int verified_status(const fixture *f, const unsigned char *resp, size_t len, OCSP_REQUEST *req, X509 *cert,
                           const EVP_MD *md, int *reason)
{
    const unsigned char *p = resp;
    OCSP_RESPONSE *o = d2i_OCSP_RESPONSE(NULL, &p, (long)len);
    assert_non_null(o);
    assert_int_equal(OCSP_response_status(o), OCSP_RESPONSE_STATUS_SUCCESSFUL);
    OCSP_BASICRESP *bs = OCSP_response_get1_basic(o);
    assert_non_null(bs);
    X509_STORE *trust = X509_STORE_new();
    X509_STORE_add_cert(trust, f->ca);
    if (OCSP_basic_verify(bs, NULL, trust, 0) != 1) {
        ERR_print_errors_fp(stderr);
        fail_msg("OpenSSL does not verify the response");
    }
    assert_int_equal(OCSP_check_nonce(req, bs), 1);
    OCSP_CERTID *id = OCSP_cert_to_id(md, cert, f->ca);
    int status = -1;
    ASN1_GENERALIZEDTIME *revtime = NULL, *thisupd = NULL, *nextupd = NULL;
    assert_int_equal(OCSP_resp_find_status(bs, id, &status, reason, &revtime, &thisupd, &nextupd), 1);
    assert_int_equal(OCSP_check_validity(thisupd, nextupd, 60, ENR_OCSP_NEXT_UPDATE + 1), 1);
    OCSP_CERTID_free(id);
    X509_STORE_free(trust);
    OCSP_BASICRESP_free(bs);
    OCSP_RESPONSE_free(o);
    return status;
}

static void test_statuses_verified_by_openssl(void **state)
{
    fixture *f = *state;
    enr_error err;
    size_t len = 0, resp_len = 0;
    OCSP_REQUEST *req = NULL;
    unsigned char *der = request_for(f->leaf, f->ca, EVP_sha1(), &len, &req), *resp = NULL;
    enr_ocsp_outcome outcome;
    int reason = -1;
    assert_int_equal(enr_ocsp_answer(f->responder, der, len, 0, &resp, &resp_len, &outcome, &err), ENR_OK);
    assert_int_equal(outcome, ENR_OCSP_ANSWERED);
    assert_int_equal(verified_status(f, resp, resp_len, req, f->leaf, EVP_sha1(), &reason), V_OCSP_CERTSTATUS_GOOD);
    free(resp);

    /* Revoked in the store: the very next answer says so, with the reason. */
    enr_certificate c;
    assert_int_equal(enr_certificate_from_x509(f->leaf, &c, &err), ENR_OK);
    assert_int_equal(enr_store_revoke_certificate(f->store, c.issuer, c.serial, 1, 0, NULL, &err), ENR_OK);
    enr_certificate_free(&c);
    assert_int_equal(enr_ocsp_answer(f->responder, der, len, 0, &resp, &resp_len, &outcome, &err), ENR_OK);
    assert_int_equal(verified_status(f, resp, resp_len, req, f->leaf, EVP_sha1(), &reason), V_OCSP_CERTSTATUS_REVOKED);
    assert_int_equal(reason, 1);
    free(resp);
    OPENSSL_free(der);
    OCSP_REQUEST_free(req);

    /* Issued by the CA but not in the store; and a SHA-256 CertID. */
    der = request_for(f->stranger, f->ca, EVP_sha256(), &len, &req);
    assert_int_equal(enr_ocsp_answer(f->responder, der, len, 0, &resp, &resp_len, &outcome, &err), ENR_OK);
    assert_int_equal(verified_status(f, resp, resp_len, req, f->stranger, EVP_sha256(), &reason), V_OCSP_CERTSTATUS_UNKNOWN);
    free(resp);
    OPENSSL_free(der);
    OCSP_REQUEST_free(req);
}

/* A request that parses but that this responder must not answer, or does
 * not parse at all: the OCSP error, and nothing signed. */
static void test_bad_requests(void **state)
{
    fixture *f = *state;
    enr_error err;
    size_t good_len = 0;
    OCSP_REQUEST *keep = NULL;
    unsigned char *good = request_for(f->leaf, f->ca, EVP_sha1(), &good_len, &keep);
    OCSP_REQUEST_free(keep);
    size_t foreign_len = 0;
    unsigned char *foreign = request_for(f->leaf, f->other_ca, EVP_sha1(), &foreign_len, &keep);
    OCSP_REQUEST_free(keep);
    /* Seventeen CertIDs: more than one request may ask. */
    OCSP_REQUEST *many = OCSP_REQUEST_new();
    for (int i = 0; i < ENR_OCSP_REQUESTS_MAX + 1; i++)
        assert_non_null(OCSP_request_add0_id(many, OCSP_cert_to_id(NULL, f->leaf, f->ca)));
    unsigned char *many_der = NULL;
    int many_len = i2d_OCSP_REQUEST(many, &many_der);
    OCSP_REQUEST_free(many);
    /* No CertID at all. */
    OCSP_REQUEST *none = OCSP_REQUEST_new();
    unsigned char *none_der = NULL;
    int none_len = i2d_OCSP_REQUEST(none, &none_der);
    OCSP_REQUEST_free(none);
    unsigned char *trailing = malloc(good_len + 1);
    memcpy(trailing, good, good_len);
    trailing[good_len] = 0;
    unsigned char *big = calloc(1, ENR_OCSP_REQUEST_MAX + 1);
    static const unsigned char junk[] = "not an OCSP request";
    struct {
        const char *what;
        const unsigned char *der;
        size_t len;
        enr_ocsp_outcome want;
        int status;
    } cases[] = {
        {"empty", junk, 0, ENR_OCSP_MALFORMED, OCSP_RESPONSE_STATUS_MALFORMEDREQUEST},
        {"text", junk, sizeof junk - 1, ENR_OCSP_MALFORMED, OCSP_RESPONSE_STATUS_MALFORMEDREQUEST},
        {"truncated", good, good_len - 3, ENR_OCSP_MALFORMED, OCSP_RESPONSE_STATUS_MALFORMEDREQUEST},
        {"one byte", good, 1, ENR_OCSP_MALFORMED, OCSP_RESPONSE_STATUS_MALFORMEDREQUEST},
        {"trailing byte", trailing, good_len + 1, ENR_OCSP_MALFORMED, OCSP_RESPONSE_STATUS_MALFORMEDREQUEST},
        {"over the size limit", big, ENR_OCSP_REQUEST_MAX + 1, ENR_OCSP_MALFORMED,
         OCSP_RESPONSE_STATUS_MALFORMEDREQUEST},
        {"no CertID", none_der, (size_t)none_len, ENR_OCSP_MALFORMED, OCSP_RESPONSE_STATUS_MALFORMEDREQUEST},
        {"too many CertIDs", many_der, (size_t)many_len, ENR_OCSP_MALFORMED, OCSP_RESPONSE_STATUS_MALFORMEDREQUEST},
        {"a CA the store does not serve", foreign, foreign_len, ENR_OCSP_UNAUTHORIZED,
         OCSP_RESPONSE_STATUS_UNAUTHORIZED},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        unsigned char *resp = NULL;
        size_t resp_len = 0;
        enr_ocsp_outcome outcome = ENR_OCSP_ANSWERED;
        if (enr_ocsp_answer(f->responder, cases[i].der, cases[i].len, 0, &resp, &resp_len, &outcome, &err) != ENR_OK)
            fail_msg("%s: no answer: %s", cases[i].what, err.message);
        if (outcome != cases[i].want)
            fail_msg("%s: outcome %s, wanted %s", cases[i].what, enr_ocsp_outcome_name(outcome),
                     enr_ocsp_outcome_name(cases[i].want));
        const unsigned char *p = resp;
        OCSP_RESPONSE *o = d2i_OCSP_RESPONSE(NULL, &p, (long)resp_len);
        if (o == NULL || OCSP_response_status(o) != cases[i].status)
            fail_msg("%s: response status %d, wanted %d", cases[i].what, o ? OCSP_response_status(o) : -1,
                     cases[i].status);
        OCSP_BASICRESP *bs = OCSP_response_get1_basic(o);
        if (bs != NULL)
            fail_msg("%s: a refusal carries a signed response", cases[i].what);
        OCSP_RESPONSE_free(o);
        free(resp);
    }
    OPENSSL_free(good);
    OPENSSL_free(foreign);
    OPENSSL_free(many_der);
    OPENSSL_free(none_der);
    free(trailing);
    free(big);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_statuses_verified_by_openssl, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_requests, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
