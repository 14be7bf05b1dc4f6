/* Describing and comparing public keys, whoever holds the private half. */
#ifndef ENROLL_PUBKEY_H
#define ENROLL_PUBKEY_H

#include <openssl/evp.h>
#include <openssl/x509.h>
#include <stdbool.h>

#include "enroll/error.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct enr_pubkey_info {
    char algorithm[16];   /* "RSA", "EC", "Ed25519", or OpenSSL's name for others */
    int bits;             /* modulus or field size */
    char curve[32];       /* "P-256", "P-384", other NIST/OpenSSL name; "" if not EC */
    unsigned long rsa_exponent; /* 0 when not RSA, or when it does not fit */
    unsigned char spki_sha256[32]; /* SHA-256 of the DER SubjectPublicKeyInfo */
    char spki_sha256_hex[65];
} enr_pubkey_info;

enr_code enr_pubkey_describe(const EVP_PKEY *key, enr_pubkey_info *out, enr_error *err);

/* One word for the pair: "ec-p256", "rsa-2048", "ed25519", or NULL when the
 * key is not one of the types enroll generates. */
const char *enr_pubkey_type_name(const enr_pubkey_info *info);

/* True when both hold the same public key (compared as DER SPKI). */
bool enr_pubkey_equal(const EVP_PKEY *a, const EVP_PKEY *b);

/* Copies a SubjectPublicKeyInfo field by field. OpenSSL 3.0's
 * X509_set_pubkey/X509_REQ_set_pubkey re-decode the key through the
 * OSSL_DECODER framework, which costs more than an ECDSA signature; copying
 * the already-encoded fields costs nothing. `dst` is typically
 * X509_get_X509_PUBKEY(cert) or X509_REQ_get_X509_PUBKEY(req). */
enr_code enr_spki_copy(X509_PUBKEY *dst, const X509_PUBKEY *src, enr_error *err);


/* The key in a SubjectPublicKeyInfo as an EVP_PKEY (free with
 * EVP_PKEY_free). EC and Ed25519 keys are imported from their fields
 * directly; OpenSSL 3.0's generic decoder path costs more than verifying a
 * signature with the key, and is kept for the other types. */
enr_code enr_pubkey_from_spki(const X509_PUBKEY *spki, EVP_PKEY **out, enr_error *err);

/* Key types only (algorithm, bits, curve, RSA exponent), without the SPKI
 * fingerprint, which needs an encoding pass. */
enr_code enr_pubkey_classify(const EVP_PKEY *key, enr_pubkey_info *out, enr_error *err);

/* SHA-256 of the DER SubjectPublicKeyInfo, as lower-case hex (65 bytes with
 * the NUL): the same value as enr_pubkey_info.spki_sha256_hex, computed from
 * the encoded fields (which works on a freshly copied SPKI too). */
enr_code enr_spki_sha256_hex(const X509_PUBKEY *spki, char out[65], enr_error *err);

#ifdef __cplusplus
}
#endif
#endif
