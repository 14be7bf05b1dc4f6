/* Internal: a private key object in a PKCS#11 token, reached by dlopen of
 * the module. Only src/key/signer.c uses this.
 *
 * PKCS#11 initialization and login are per process, not per key: the key
 * that initialized the module finalizes it when freed, and the key that
 * logged in logs out. So several keys from one module may be open at once,
 * but must be freed in reverse order of opening. One key is not for use
 * from two threads at once (it has one session).
 *
 * `opts` may be NULL. Errors: ENR_E_USAGE (no module or PIN given, bad
 * URI use), ENR_E_PARSE (bad URI), ENR_E_NOTFOUND (no such token or key),
 * ENR_E_EXISTS, ENR_E_UNSUPPORTED, ENR_E_TOKEN (module failure or wrong
 * PIN; messages name the CKR_ value and never contain the PIN). */
#ifndef ENROLL_PKCS11_TOKEN_H
#define ENROLL_PKCS11_TOKEN_H

#include <openssl/evp.h>
#include <stdbool.h>

#include "enroll/error.h"
#include "enroll/signer.h"

typedef struct enr_token_key enr_token_key;

/* Loads the module, finds the token and the private key the URI names,
 * logs in with the PIN, and builds the public key (from the public key
 * object, or CKA_EC_POINT/CKA_MODULUS of the private key) as `*pub`, which
 * the caller frees. Exactly one private key must match the label/id. */
enr_code enr_token_key_open(const char *uri, const enr_token_options *opts, enr_token_key **out,
                            EVP_PKEY **pub, enr_error *err);

/* C_GenerateKeyPair inside the token: the private key is CKA_PRIVATE,
 * CKA_SENSITIVE, CKA_SIGN, not CKA_EXTRACTABLE; both objects are CKA_TOKEN
 * with the URI's object label and id (a random 8-byte id when none given;
 * the URI must give at least one of them). Existing key objects matching the
 * label/id are ENR_E_EXISTS, or with `overwrite` are destroyed first. A key
 * the token made extractable anyway is destroyed and reported. */
enr_code enr_token_key_generate(enr_key_type type, const char *uri, const enr_token_options *opts,
                                bool overwrite, enr_error *err);

/* Signs `tbs` in the token as X.509 wants it: for EC, hash with `md`,
 * C_Sign with CKM_ECDSA and convert r||s into a DER ECDSA-Sig-Value; for RSA,
 * CKM_RSA_PKCS over DigestInfo(md, hash(tbs)). `md` NULL means SHA-256.
 * `*sig` is freed with OPENSSL_free. */
enr_code enr_token_key_sign(enr_token_key *key, const EVP_MD *md, const unsigned char *tbs,
                            size_t tbs_len, unsigned char **sig, size_t *sig_len, enr_error *err);

/* Signs a digest made with `md` (the TLS handshake hashes its transcript
 * itself): EC as above; RSA PKCS#1 v1.5 as above, or with `pss` CKM_RSA_PKCS_PSS
 * with MGF1 of the same hash and a salt as long as the digest (what TLS 1.3
 * uses), for SHA-256/384/512. */
enr_code enr_token_key_sign_digest(enr_token_key *key, const EVP_MD *md, bool pss,
                                   const unsigned char *digest, size_t digest_len,
                                   unsigned char **sig, size_t *sig_len, enr_error *err);

/* Read fresh from the private key object: CKA_SENSITIVE, CKA_EXTRACTABLE,
 * CKA_LABEL (control bytes shown as '?') and CKA_ID in hex. */
enr_code enr_token_key_facts(const enr_token_key *key, enr_signer_token_facts *out,
                             enr_error *err);

void enr_token_key_free(enr_token_key *key);

#endif
