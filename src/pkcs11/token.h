/* Internal: a private key object in a PKCS#11 token, reached by dlopen of
 * the module. Only src/key/signer.c uses this. */
#ifndef ENROLL_PKCS11_TOKEN_H
#define ENROLL_PKCS11_TOKEN_H

#include <openssl/evp.h>
#include <stdbool.h>

#include "enroll/error.h"
#include "enroll/signer.h"

typedef struct enr_token_key enr_token_key;

/* Loads the module, finds the token and the private key the URI names,
 * logs in with the PIN, and builds the public key (from the public key
 * object, or CKA_EC_POINT/CKA_MODULUS of the private key) as `*pub`. */
enr_code enr_token_key_open(const char *uri, const enr_token_options *opts, enr_token_key **out,
                            EVP_PKEY **pub, enr_error *err);

/* C_GenerateKeyPair inside the token: the private key is CKA_PRIVATE,
 * CKA_SENSITIVE, CKA_SIGN, not CKA_EXTRACTABLE; both objects are CKA_TOKEN
 * with the URI's object label and id (a random 8-byte id when none given). */
enr_code enr_token_key_generate(enr_key_type type, const char *uri, const enr_token_options *opts,
                                bool overwrite, enr_error *err);

/* Signs `tbs` in the token as X.509 wants it: for EC, hash with `md`,
 * C_Sign with CKM_ECDSA and convert r||s into a DER ECDSA-Sig-Value; for RSA,
 * PKCS#1 v1.5 over DigestInfo(md, hash(tbs)). `*sig` is freed with OPENSSL_free. */
enr_code enr_token_key_sign(enr_token_key *key, const EVP_MD *md, const unsigned char *tbs,
                            size_t tbs_len, unsigned char **sig, size_t *sig_len, enr_error *err);

enr_code enr_token_key_facts(const enr_token_key *key, enr_signer_token_facts *out,
                             enr_error *err);

void enr_token_key_free(enr_token_key *key);

#endif
