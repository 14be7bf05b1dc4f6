/* Internal to src/ca. */
#ifndef ENROLL_CA_INTERNAL_H
#define ENROLL_CA_INTERNAL_H

#include <openssl/x509v3.h>
#include <stdint.h>

#include "enroll/ca.h"
#include "enroll/duration.h"

/* A set of serial numbers (as their DER INTEGER contents), open addressing. */
typedef struct serial_set {
    unsigned char (*slots)[21]; /* [0] = length (0: empty), then up to 20 bytes */
    size_t capacity, count;
} serial_set;

bool serial_set_contains(const serial_set *set, const unsigned char *bytes, size_t len);
enr_code serial_set_add(serial_set *set, const unsigned char *bytes, size_t len, enr_error *err);
void serial_set_free(serial_set *set);

struct enr_ca {
    char *dir;
    X509 *cert;
    STACK_OF(X509) *chain;
    enr_signer *signer;
    const EVP_MD *md;             /* SHA-384 for P-384 keys, else SHA-256 */
    long pathlen;                 /* -1: no limit */
    ASN1_OCTET_STRING *key_id;    /* this CA's subjectKeyIdentifier */
    char *crl_url, *aia_url;
    enr_revocation_source revocation_source; /* NULL: the directory's revocations only */
    void *revocation_source_ctx;
    enr_crl_number_source crl_number_source; /* NULL: the directory's crlnumber alone */
    void *crl_number_source_ctx;
    serial_set serials;           /* every serial in the index */
    long index_offset;            /* how far issued.jsonl has been read */
    int lock_fd;
};

struct enr_profile {
    char name[32];
    enr_duration validity, backdate;
    int is_ca;
    unsigned key_usage;           /* KU_* bits */
    int eku_nids[4];
    size_t eku_count;
    char *force_cn;
    char **san_allow;
    size_t san_allow_count;
    bool san_allow_is_default;    /* the first explicit pattern replaces the defaults */
    bool cn_is_host_name;         /* serverAuth: a CN must pass the DNS allow-list too */
    bool ocsp_nocheck;            /* id-pkix-ocsp-nocheck (an OCSP responder's certificate) */
    char *ocsp_url;               /* AIA OCSP; NULL: none */
    char *crl_url;                /* CRL distribution point in place of the CA's; NULL: the CA's */
    unsigned key_types;           /* bit per enr_key_type */
};

/* index.c: the append-only files in the CA directory. */
enr_code ca_index_lock(enr_ca *ca, enr_error *err);
void ca_index_unlock(enr_ca *ca);
enr_code ca_index_catch_up(enr_ca *ca, enr_error *err);
enr_code ca_index_record(void *ctx, X509 *cert, const char *profile, enr_error *err);
enr_code ca_index_append_line(const char *dir, const char *file, const char *line, enr_error *err);

/* issue.c */
enr_code ca_serial_new(enr_ca *ca, ASN1_INTEGER **out, enr_error *err);
enr_code ca_key_identifier(const X509_PUBKEY *spki, ASN1_OCTET_STRING **out, enr_error *err);
char *ca_serial_hex(const ASN1_INTEGER *serial);

#endif
