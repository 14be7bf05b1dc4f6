/* Issuing CAs, opened once per thread and kept: opening one reads its key
 * (a file, or a PKCS#11 session) and its chain, which is too slow to do
 * per device. Every answer carries the chain, so it is encoded once here,
 * as DER (DPS) and as PEM (AWS). An enr_ca is not shared between threads:
 * each provisioning loop and each AWS worker keeps its own cache. */
#ifndef ENROLL_PROVISION_CA_CACHE_H
#define ENROLL_PROVISION_CA_CACHE_H

#include "enroll/ca.h"
#include "enroll/dps.h"
#include "enroll/error.h"
#include "enroll/store.h"

#define ENR_ISSUERS_MAX 7 /* a chain longer than this CA + 6 issuers is cut (no real PKI has one) */

typedef struct enr_issuing_ca {
    char name[ENR_STORE_ID_MAX + 1];
    enr_ca *ca;
    enr_dps_der issuers[ENR_ISSUERS_MAX]; /* this CA up to its root, DER */
    size_t issuer_count;
    char *issuers_pem;                    /* the same certificates, PEM */
} enr_issuing_ca;

typedef struct enr_ca_cache enr_ca_cache;

enr_code enr_ca_cache_new(enr_store *store, enr_ca_cache **out, enr_error *err);
void enr_ca_cache_free(enr_ca_cache *cache);

/* The issuing CA named NAME in the store, opened on first use. When the
 * cache is full the oldest CA is closed. NULL with *err set when the CA is
 * missing, is not an issuing CA (ENR_E_POLICY), or cannot be opened. The
 * pointer is valid until the next call. */
const enr_issuing_ca *enr_ca_cache_get(enr_ca_cache *cache, const char *name, enr_error *err);

#endif
