/* A TLS private key that signs through an enr_signer, so that a client
 * certificate whose key lives in a PKCS#11 token can authenticate a TLS
 * handshake without the key ever leaving the token.
 *
 * OpenSSL 3 reaches a key it does not hold through a provider. Each
 * enr_tls_key owns a private OSSL_LIB_CTX with the default provider (for
 * everything else TLS needs) and a small built-in provider whose key
 * management wraps the signer and whose signature operation hashes in
 * software and asks the signer (the token) for the raw signature over the
 * digest. Nothing is loaded into the process's default library context, and
 * the module is not opened a second time (the deprecated libp11 engine
 * would do both).
 *
 *     enr_tls_key *k = NULL;
 *     SSL_CTX *ctx = NULL;
 *     if (enr_tls_key_new(signer, &k, &err) == ENR_OK &&
 *         (ctx = SSL_CTX_new_ex(enr_tls_key_libctx(k), NULL, TLS_client_method())) != NULL &&
 *         SSL_CTX_use_certificate(ctx, cert) == 1 &&
 *         enr_tls_key_use(k, ctx, &err) == ENR_OK)
 *         ... handshake ...
 *     SSL_CTX_free(ctx);        // before the key and its library context
 *     enr_tls_key_free(k);
 *     enr_signer_free(signer);  // the key borrows the signer
 *
 * EC (ECDSA with any hash) and RSA (PKCS#1 v1.5, and RSA-PSS with MGF1 of
 * the same hash and a digest-long salt: what TLS 1.3 and 1.2 use) keys. A
 * signer signs from one thread at a time, so one SSL_CTX per thread. */
#ifndef ENROLL_TLS_KEY_H
#define ENROLL_TLS_KEY_H

#include <openssl/ssl.h>

#include "enroll/error.h"
#include "enroll/signer.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct enr_tls_key enr_tls_key;

/* Borrows `signer`, which must outlive the key and every SSL_CTX using it.
 * ENR_E_UNSUPPORTED for a key that is neither EC nor RSA. */
enr_code enr_tls_key_new(enr_signer *signer, enr_tls_key **out, enr_error *err);
void enr_tls_key_free(enr_tls_key *key);

/* The library context an SSL_CTX using the key must be made in
 * (SSL_CTX_new_ex). Borrowed. */
OSSL_LIB_CTX *enr_tls_key_libctx(const enr_tls_key *key);

/* The EVP_PKEY (in that library context). Borrowed. */
EVP_PKEY *enr_tls_key_pkey(const enr_tls_key *key);

/* Makes the key the private key of `ctx`, whose certificate must already be
 * set: ENR_E_VERIFY when the certificate is for another key (compared as
 * SubjectPublicKeyInfo: SSL_CTX_check_private_key cannot tell without
 * signing). */
enr_code enr_tls_key_use(enr_tls_key *key, SSL_CTX *ctx, enr_error *err);

#ifdef __cplusplus
}
#endif
#endif
