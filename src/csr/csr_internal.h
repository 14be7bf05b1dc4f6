/* Internal to src/csr: the request spec and the parsed request. */
#ifndef ENROLL_CSR_INTERNAL_H
#define ENROLL_CSR_INTERNAL_H

#include <openssl/x509v3.h>

#include "enroll/csr.h"

struct enr_csr_spec {
    X509_NAME *subject;
    GENERAL_NAMES *san;
    ASN1_BIT_STRING *key_usage;
    EXTENDED_KEY_USAGE *ext_key_usage;
    int is_ca;
    int pathlen; /* < 0: no limit */
    char *challenge_password;
    const EVP_MD *md;
};

struct enr_csr {
    X509_REQ *req;
    /* Our own reference: a built request's X509_PUBKEY holds encoded fields
     * only (see enr_spki_copy), so the key object comes from the signer. */
    EVP_PKEY *public_key;
    unsigned char *der;
    size_t der_len;
    enr_encoding input_encoding;
    /* enr_csr_verify's verdict, kept: a request's fields never change after
     * it is made, and the service's linter and the CA would each verify it.
     * The linter's DER check re-encodes `req` in place once the verdict is
     * kept (the same bytes, unless the request is not DER, which the linter
     * refuses). 0 not yet, 1 verified, -1 failed (the message is made again). */
    int verified;
};

/* d2i_X509_REQ in the decoder-free library context (see csr.c): for code
 * that needs another parsed copy of a request cheaply. */
X509_REQ *enr_csr_d2i_fast(const unsigned char *der, size_t len);

#endif
