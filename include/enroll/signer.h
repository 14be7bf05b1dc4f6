/* "Something that signs": a private key in a PEM file, or a key object in a
 * PKCS#11 token named by an RFC 7512 URI. Nothing outside this module knows
 * which one it holds; CSR (and later certificate) signing goes through
 * enr_signer_sign for both, so the token's private key never leaves it. */
#ifndef ENROLL_SIGNER_H
#define ENROLL_SIGNER_H

#include <openssl/evp.h>
#include <openssl/x509.h>
#include <stdbool.h>

#include "enroll/error.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum enr_key_type {
    ENR_KEY_EC_P256 = 0,
    ENR_KEY_EC_P384,
    ENR_KEY_RSA_2048,
    ENR_KEY_RSA_3072,
    ENR_KEY_RSA_4096,
    ENR_KEY_ED25519
} enr_key_type;

/* "ec-p256", "ec-p384", "rsa-2048", "rsa-3072", "rsa-4096", "ed25519". */
enr_code enr_key_type_parse(const char *name, enr_key_type *out, enr_error *err);
const char *enr_key_type_name(enr_key_type type);

/* How to reach a token. Each field may be NULL: the module then comes from
 * the URI's module-path, else $ENROLL_PKCS11_MODULE; the PIN from the URI's
 * pin-source (a file), else $ENROLL_PKCS11_PIN. A PIN is never logged. */
typedef struct enr_token_options {
    const char *module_path;
    const char *pin;
} enr_token_options;

/* True when `ref` is a "pkcs11:" URI rather than a file path. */
bool enr_key_ref_is_token(const char *ref);

/* A new key in memory (a service making a device's key: EST's
 * serverkeygen, AWS's CreateKeysAndCertificate). */
enr_code enr_key_generate(enr_key_type type, EVP_PKEY **out, enr_error *err);

/* A new key in a PEM file (PKCS#8), created 0600 via a temporary file,
 * fsync and rename. With a passphrase it is encrypted with AES-256-CBC
 * (PKCS#8 PBES2, PBKDF2-HMAC-SHA256). */
enr_code enr_key_generate_file(enr_key_type type, const char *path, const char *passphrase,
                               bool overwrite, enr_error *err);

/* Called while a key is being generated: `phase` is OpenSSL's keygen info
 * (for RSA: 0 a prime candidate, 1 a primality test round, 2 a prime found,
 * 3 a prime done). Lets a command line show that RSA-4096 is working. */
typedef void (*enr_keygen_progress_fn)(int phase, void *arg);

/* enr_key_generate_file with a progress callback (NULL: none). */
enr_code enr_key_generate_file_progress(enr_key_type type, const char *path, const char *passphrase,
                                        bool overwrite, enr_keygen_progress_fn progress, void *arg,
                                        enr_error *err);

/* A new key pair inside the token: private key CKA_SENSITIVE, not
 * CKA_EXTRACTABLE, CKA_SIGN; the URI names the token and the object label
 * and/or id to give it. EC P-256/P-384 and RSA only. Refuses when an object
 * with that label/id already exists unless `overwrite`. */
enr_code enr_key_generate_token(enr_key_type type, const char *uri, const enr_token_options *opts,
                                bool overwrite, enr_error *err);

typedef struct enr_signer enr_signer;

/* Opens a key file (passphrase may be NULL) or a pkcs11: URI. */
enr_code enr_signer_open(const char *ref, const char *passphrase, const enr_token_options *opts,
                         enr_signer **out, enr_error *err);
void enr_signer_free(enr_signer *signer);

/* The public key (borrowed; valid until enr_signer_free). */
EVP_PKEY *enr_signer_public_key(const enr_signer *signer);
bool enr_signer_is_token(const enr_signer *signer);
/* The public key as an encoded SubjectPublicKeyInfo (borrowed), for copying
 * into requests and certificates with enr_spki_copy. */
const X509_PUBKEY *enr_signer_spki(const enr_signer *signer);

/* The X.509 AlgorithmIdentifier this signer produces with `md` (ignored for
 * Ed25519): ecdsa-with-SHA256, sha256WithRSAEncryption, Ed25519, ... */
enr_code enr_signer_algorithm(const enr_signer *signer, const EVP_MD *md, X509_ALGOR **out,
                              enr_error *err);

/* Signs `tbs` as X.509 wants it: DER ECDSA-Sig-Value for EC, PKCS#1 v1.5
 * for RSA, raw for Ed25519. The caller frees `*sig` with OPENSSL_free. */
enr_code enr_signer_sign(enr_signer *signer, const EVP_MD *md, const unsigned char *tbs,
                         size_t tbs_len, unsigned char **sig, size_t *sig_len, enr_error *err);

/* Signs a digest the caller made with `md` (EC and RSA keys only): DER
 * ECDSA-Sig-Value for EC; for RSA PKCS#1 v1.5, or with `rsa_pss` RSA-PSS
 * with MGF1(md) and a salt as long as the digest, the only PSS form TLS
 * uses. This is what a TLS handshake needs from a key it cannot hold
 * (tls_key.h). The caller frees `*sig` with OPENSSL_free. */
enr_code enr_signer_sign_digest(enr_signer *signer, const EVP_MD *md, bool rsa_pss,
                                const unsigned char *digest, size_t digest_len,
                                unsigned char **sig, size_t *sig_len, enr_error *err);

/* Signs a certificate or a CRL in place: both AlgorithmIdentifiers (inner
 * and outer) and the signature. A token key signs inside the token. A signer
 * caches a prepared signing context, so use one signer from one thread at a
 * time. */
enr_code enr_signer_sign_cert(enr_signer *signer, X509 *cert, const EVP_MD *md, enr_error *err);
enr_code enr_signer_sign_crl(enr_signer *signer, X509_CRL *crl, const EVP_MD *md, enr_error *err);

/* Token facts for `enroll key show`: false/false for file keys. */
typedef struct enr_signer_token_facts {
    bool sensitive;
    bool extractable;
    char label[64];
    char id_hex[65];
} enr_signer_token_facts;
enr_code enr_signer_token_facts_get(const enr_signer *signer, enr_signer_token_facts *out,
                                    enr_error *err);

#ifdef __cplusplus
}
#endif
#endif
