/* The OCSP responder (include/enroll/ocsp.h): OpenSSL reads the request
 * and builds and signs the response; the store says what became of each
 * certificate. */
#include "enroll/ocsp.h"

#include <openssl/bn.h>
#include <openssl/evp.h>
#include <openssl/ocsp.h>
#include <openssl/x509.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "enroll/ca.h"
#include "enroll/csr.h"
#include "enroll/name.h"
#include "provision/ca_cache.h"

#define RESPONDERS_MAX 16
#define RESPONDER_RENEW_BEFORE (24 * 3600) /* a new responder certificate when less than a day is left */
#define CA_LIST_SECONDS 60                 /* issuing CAs added to the store are served within a minute */

/* One CA's delegated responder. */
typedef struct responder_identity {
    char ca_name[ENR_STORE_ID_MAX + 1];
    char issuer[ENR_STORE_DN_MAX + 1]; /* the CA's subject, as the store names certificates' issuer */
    X509 *ca_cert;                     /* owned copy */
    EVP_PKEY *key;                     /* made here; never written anywhere */
    X509 *cert;
    STACK_OF(X509) *chain;             /* the CA up to its root: sent with every response */
    time_t not_after;
    time_t tried_at;                   /* the last renewal, done or not: at most one a minute */
    enr_code failure;                  /* why the last renewal failed; ENR_OK when it worked */
} responder_identity;

struct enr_ocsp_responder {
    enr_store *store;
    enr_ca_cache *cas;
    responder_identity ids[RESPONDERS_MAX];
    size_t count;
    time_t listed_at;
};

const char *enr_ocsp_outcome_name(enr_ocsp_outcome outcome)
{
    switch (outcome) {
    case ENR_OCSP_ANSWERED: return "successful";
    case ENR_OCSP_MALFORMED: return "malformedRequest";
    case ENR_OCSP_UNAUTHORIZED: return "unauthorized";
    case ENR_OCSP_TRY_LATER: return "tryLater";
    case ENR_OCSP_INTERNAL: return "internalError";
    }
    return "internalError";
}

static void identity_clear(responder_identity *id)
{
    X509_free(id->ca_cert);
    EVP_PKEY_free(id->key);
    X509_free(id->cert);
    sk_X509_pop_free(id->chain, X509_free);
    memset(id, 0, sizeof *id);
}

enr_code enr_ocsp_responder_new(enr_store *store, enr_ocsp_responder **out, enr_error *err)
{
    *out = calloc(1, sizeof **out);
    if (*out == NULL)
        return enr_error_set(err, ENR_E_NOMEM, "out of memory");
    (*out)->store = store;
    enr_code rc = enr_ca_cache_new(store, &(*out)->cas, err);
    if (rc != ENR_OK) {
        free(*out);
        *out = NULL;
    }
    return rc;
}

void enr_ocsp_responder_free(enr_ocsp_responder *r)
{
    if (r == NULL)
        return;
    for (size_t i = 0; i < r->count; i++)
        identity_clear(&r->ids[i]);
    enr_ca_cache_free(r->cas);
    free(r);
}

/* The store's issuing CAs, known by their certificates (no key opened
 * until one is asked about). */
static enr_code list_cas(enr_ocsp_responder *r, time_t now, enr_error *err)
{
    if (r->listed_at != 0 && now - r->listed_at < CA_LIST_SECONDS)
        return ENR_OK;
    enr_ca_record_list list = {0};
    enr_code rc = enr_store_list_cas(r->store, &list, err);
    for (size_t i = 0; rc == ENR_OK && i < list.count && r->count < RESPONDERS_MAX; i++) {
        const enr_ca_record *ca = &list.items[i];
        bool known = false;
        for (size_t j = 0; j < r->count && !known; j++)
            known = strcmp(r->ids[j].ca_name, ca->name) == 0;
        if (known || ca->role != ENR_CA_ISSUING)
            continue;
        const unsigned char *p = ca->certificate.data;
        X509 *cert = d2i_X509(NULL, &p, (long)ca->certificate.len);
        char *issuer = cert != NULL ? enr_name_format(X509_get_subject_name(cert)) : NULL;
        if (cert == NULL || issuer == NULL) {
            X509_free(cert);
            free(issuer);
            continue; /* a damaged record serves nothing; the store's own checks report it */
        }
        responder_identity *id = &r->ids[r->count++];
        snprintf(id->ca_name, sizeof id->ca_name, "%s", ca->name);
        snprintf(id->issuer, sizeof id->issuer, "%s", issuer);
        id->ca_cert = cert;
        free(issuer);
    }
    enr_ca_record_list_free(&list);
    if (rc == ENR_OK)
        r->listed_at = now;
    return rc;
}

/* A key made here and a certificate for it from the CA: the delegated
 * responder (RFC 6960 4.2.2.2). */
static enr_code renew_identity(enr_ocsp_responder *r, responder_identity *id, time_t now, enr_error *err)
{
    const enr_issuing_ca *issuing = enr_ca_cache_get(r->cas, id->ca_name, err);
    if (issuing == NULL)
        return err->code;
    EVP_PKEY *key = EVP_EC_gen("P-256");
    X509_REQ *req = X509_REQ_new();
    X509_NAME *name = X509_NAME_new();
    char cn[ENR_STORE_ID_MAX + 32];
    snprintf(cn, sizeof cn, "OCSP responder for %s", id->ca_name);
    unsigned char *der = NULL;
    int der_len = 0;
    enr_csr *csr = NULL;
    X509 *cert = NULL;
    enr_profile *profile = NULL;
    enr_code rc = ENR_OK;
    if (key == NULL || req == NULL || name == NULL ||
        X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_UTF8, (const unsigned char *)cn, -1, -1, 0) != 1 ||
        X509_REQ_set_subject_name(req, name) != 1 || X509_REQ_set_pubkey(req, key) != 1 ||
        X509_REQ_sign(req, key, EVP_sha256()) <= 0 || (der_len = i2d_X509_REQ(req, &der)) <= 0)
        rc = enr_error_set(err, ENR_E_CRYPTO, "cannot make the OCSP responder's key for CA %s", id->ca_name);
    if (rc == ENR_OK)
        rc = enr_csr_parse(der, (size_t)der_len, &csr, err);
    if (rc == ENR_OK)
        rc = enr_profile_new("ocsp-responder", &profile, err);
    if (rc == ENR_OK)
        rc = enr_ca_sign(issuing->ca, csr, profile, now, &cert, err);
    /* enr_ca_sign's certificate carries its key as encoded bytes only
     * (ca.h): read back from its DER, OpenSSL can match it to the key. */
    if (rc == ENR_OK) {
        unsigned char *cert_der = NULL;
        int n = i2d_X509(cert, &cert_der);
        const unsigned char *q = cert_der;
        X509 *reread = n > 0 ? d2i_X509(NULL, &q, n) : NULL;
        OPENSSL_free(cert_der);
        X509_free(cert);
        cert = reread;
        if (cert == NULL)
            rc = enr_error_set(err, ENR_E_CRYPTO, "cannot read back the OCSP responder's certificate");
    }
    STACK_OF(X509) *chain = rc == ENR_OK ? X509_chain_up_ref(enr_ca_chain(issuing->ca)) : NULL;
    if (rc == ENR_OK && chain == NULL)
        rc = enr_error_set(err, ENR_E_NOMEM, "out of memory");
    if (rc == ENR_OK) {
        EVP_PKEY_free(id->key);
        X509_free(id->cert);
        sk_X509_pop_free(id->chain, X509_free);
        id->key = key;
        id->cert = cert;
        id->chain = chain;
        id->not_after = 0;
        struct tm tm;
        if (ASN1_TIME_to_tm(X509_get0_notAfter(cert), &tm) == 1)
            id->not_after = timegm(&tm);
        key = NULL;
        cert = NULL;
    }
    EVP_PKEY_free(key);
    X509_free(cert);
    X509_REQ_free(req);
    X509_NAME_free(name);
    OPENSSL_free(der);
    enr_csr_free(csr);
    enr_profile_free(profile);
    return rc;
}

/* The CA a CertID names (its issuerNameHash and issuerKeyHash, with the
 * CertID's own hash), or NULL. */
static responder_identity *issuer_of(enr_ocsp_responder *r, OCSP_CERTID *cid)
{
    ASN1_OBJECT *md_obj = NULL;
    if (OCSP_id_get0_info(NULL, &md_obj, NULL, NULL, cid) != 1 || md_obj == NULL)
        return NULL;
    const EVP_MD *md = EVP_get_digestbyobj(md_obj);
    if (md == NULL)
        return NULL;
    for (size_t i = 0; i < r->count; i++) {
        OCSP_CERTID *mine = OCSP_cert_id_new(md, X509_get_subject_name(r->ids[i].ca_cert),
                                             X509_get0_pubkey_bitstr(r->ids[i].ca_cert), NULL);
        bool same = mine != NULL && OCSP_id_issuer_cmp(mine, cid) == 0;
        OCSP_CERTID_free(mine);
        if (same)
            return &r->ids[i];
    }
    return NULL;
}

static enr_code refusal(int status, enr_ocsp_outcome why, unsigned char **resp, size_t *resp_len,
                        enr_ocsp_outcome *outcome, enr_error *err)
{
    OCSP_RESPONSE *o = OCSP_response_create(status, NULL);
    unsigned char *der = NULL;
    int n = o != NULL ? i2d_OCSP_RESPONSE(o, &der) : -1;
    OCSP_RESPONSE_free(o);
    if (n <= 0)
        return enr_error_set(err, ENR_E_NOMEM, "cannot encode an OCSP response");
    *resp = malloc((size_t)n);
    if (*resp == NULL) {
        OPENSSL_free(der);
        return enr_error_set(err, ENR_E_NOMEM, "out of memory");
    }
    memcpy(*resp, der, (size_t)n);
    OPENSSL_free(der);
    *resp_len = (size_t)n;
    *outcome = why;
    return ENR_OK;
}

/* The status of one certificate: 0 good, 1 revoked, 2 unknown; -1 the
 * store could not say. */
static int status_of(enr_ocsp_responder *r, const responder_identity *id, const ASN1_INTEGER *serial,
                     enr_certificate *cert)
{
    BIGNUM *bn = ASN1_INTEGER_to_BN(serial, NULL);
    char *hex = bn != NULL && !BN_is_negative(bn) ? BN_bn2hex(bn) : NULL;
    BN_free(bn);
    if (hex == NULL)
        return 2; /* no serial of ours is negative */
    enr_error err;
    enr_code rc = enr_store_get_certificate(r->store, id->issuer, hex, cert, &err);
    OPENSSL_free(hex);
    if (rc == ENR_E_NOTFOUND || rc == ENR_E_USAGE)
        return 2;
    if (rc != ENR_OK)
        return -1;
    return cert->revoked ? 1 : 0;
}

enr_code enr_ocsp_answer(enr_ocsp_responder *r, const unsigned char *req_der, size_t len, time_t now,
                         unsigned char **resp, size_t *resp_len, enr_ocsp_outcome *outcome, enr_error *err)
{
    *resp = NULL;
    *resp_len = 0;
    if (now == 0)
        now = time(NULL);
    const unsigned char *p = req_der;
    OCSP_REQUEST *req = len > 0 && len <= ENR_OCSP_REQUEST_MAX ? d2i_OCSP_REQUEST(NULL, &p, (long)len) : NULL;
    int n = req != NULL ? OCSP_request_onereq_count(req) : 0;
    if (req == NULL || p != req_der + len || n <= 0 || n > ENR_OCSP_REQUESTS_MAX) {
        OCSP_REQUEST_free(req);
        return refusal(OCSP_RESPONSE_STATUS_MALFORMEDREQUEST, ENR_OCSP_MALFORMED, resp, resp_len, outcome, err);
    }
    enr_error e = {0};
    if (list_cas(r, now, &e) != ENR_OK) {
        OCSP_REQUEST_free(req);
        return refusal(OCSP_RESPONSE_STATUS_TRYLATER, ENR_OCSP_TRY_LATER, resp, resp_len, outcome, err);
    }
    /* One responder signs the answer: every CertID must name its CA. */
    responder_identity *id = NULL;
    for (int i = 0; i < n; i++) {
        responder_identity *which = issuer_of(r, OCSP_onereq_get0_id(OCSP_request_onereq_get0(req, i)));
        if (which == NULL || (id != NULL && which != id)) {
            OCSP_REQUEST_free(req);
            return refusal(OCSP_RESPONSE_STATUS_UNAUTHORIZED, ENR_OCSP_UNAUTHORIZED, resp, resp_len, outcome, err);
        }
        id = which;
    }
    /* At most one renewal a minute whatever the requests (each is a key
     * and a CA signature, asked for by anyone): near the CA's own end, the
     * responder's certificate cannot outlive it, and would be due on every
     * request. */
    bool due = (id->cert == NULL || id->not_after - now < RESPONDER_RENEW_BEFORE) && now - id->tried_at >= 60;
    if (due) {
        id->tried_at = now;
        id->failure = renew_identity(r, id, now, &e);
        if (id->failure != ENR_OK) /* once a minute at most: bounded logging */
            fprintf(stderr, "{\"event\":\"ocsp_responder_failed\",\"ca\":\"%s\",\"message\":\"%s\"}\n",
                    id->ca_name, e.message);
    }
    if (id->cert == NULL || id->not_after <= now) {
        OCSP_REQUEST_free(req);
        enr_ocsp_outcome why = id->failure == ENR_E_IO ? ENR_OCSP_TRY_LATER : ENR_OCSP_INTERNAL;
        return refusal(why == ENR_OCSP_TRY_LATER ? OCSP_RESPONSE_STATUS_TRYLATER : OCSP_RESPONSE_STATUS_INTERNALERROR,
                       why, resp, resp_len, outcome, err);
    }
    OCSP_BASICRESP *bs = OCSP_BASICRESP_new();
    ASN1_TIME *this_update = ASN1_TIME_set(NULL, now);
    ASN1_TIME *next_update = ASN1_TIME_set(NULL, now + ENR_OCSP_NEXT_UPDATE);
    bool ok = bs != NULL && this_update != NULL && next_update != NULL;
    bool store_down = false;
    for (int i = 0; ok && i < n; i++) {
        OCSP_CERTID *cid = OCSP_onereq_get0_id(OCSP_request_onereq_get0(req, i));
        ASN1_INTEGER *serial = NULL;
        OCSP_id_get0_info(NULL, NULL, NULL, &serial, cid);
        enr_certificate cert = {0};
        int status = serial != NULL ? status_of(r, id, serial, &cert) : 2;
        if (status < 0) {
            store_down = true;
            ok = false;
        } else if (status == 1) {
            ASN1_TIME *revoked_at = ASN1_TIME_set(NULL, cert.revoked_at);
            ok = revoked_at != NULL && OCSP_basic_add1_status(bs, cid, V_OCSP_CERTSTATUS_REVOKED,
                                                               cert.revocation_reason, revoked_at, this_update,
                                                               next_update) != NULL;
            ASN1_TIME_free(revoked_at);
        } else {
            ok = OCSP_basic_add1_status(bs, cid, status == 0 ? V_OCSP_CERTSTATUS_GOOD : V_OCSP_CERTSTATUS_UNKNOWN, 0,
                                        NULL, this_update, next_update) != NULL;
        }
        enr_certificate_free(&cert);
    }
    /* The nonce echoed (RFC 8954): a client that sent one checks it. */
    ok = ok && OCSP_copy_nonce(bs, req) > 0;
    ok = ok && OCSP_basic_sign(bs, id->cert, id->key, EVP_sha256(), id->chain, 0) == 1;
    OCSP_RESPONSE *o = ok ? OCSP_response_create(OCSP_RESPONSE_STATUS_SUCCESSFUL, bs) : NULL;
    OCSP_BASICRESP_free(bs);
    ASN1_TIME_free(this_update);
    ASN1_TIME_free(next_update);
    OCSP_REQUEST_free(req);
    if (o == NULL)
        return store_down ? refusal(OCSP_RESPONSE_STATUS_TRYLATER, ENR_OCSP_TRY_LATER, resp, resp_len, outcome, err)
                          : refusal(OCSP_RESPONSE_STATUS_INTERNALERROR, ENR_OCSP_INTERNAL, resp, resp_len, outcome,
                                    err);
    unsigned char *der = NULL;
    int der_len = i2d_OCSP_RESPONSE(o, &der);
    OCSP_RESPONSE_free(o);
    if (der_len <= 0)
        return refusal(OCSP_RESPONSE_STATUS_INTERNALERROR, ENR_OCSP_INTERNAL, resp, resp_len, outcome, err);
    *resp = malloc((size_t)der_len);
    if (*resp == NULL) {
        OPENSSL_free(der);
        return enr_error_set(err, ENR_E_NOMEM, "out of memory");
    }
    memcpy(*resp, der, (size_t)der_len);
    OPENSSL_free(der);
    *resp_len = (size_t)der_len;
    *outcome = ENR_OCSP_ANSWERED;
    return ENR_OK;
}
