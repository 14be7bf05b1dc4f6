#include "provision/ca_cache.h"

#include <openssl/pem.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CA_CACHE_MAX 16

struct enr_ca_cache {
    enr_store *store;
    enr_issuing_ca cas[CA_CACHE_MAX];
    size_t count;
};

enr_code enr_ca_cache_new(enr_store *store, enr_ca_cache **out, enr_error *err)
{
    *out = calloc(1, sizeof **out);
    if (*out == NULL)
        return enr_error_set(err, ENR_E_NOMEM, "out of memory");
    (*out)->store = store;
    return ENR_OK;
}

static void entry_clear(enr_issuing_ca *entry)
{
    enr_ca_free(entry->ca);
    for (size_t i = 0; i < entry->issuer_count; i++)
        OPENSSL_free((void *)entry->issuers[i].der);
    free(entry->issuers_pem);
    memset(entry, 0, sizeof *entry);
}

void enr_ca_cache_free(enr_ca_cache *cache)
{
    if (cache == NULL)
        return;
    for (size_t i = 0; i < cache->count; i++)
        entry_clear(&cache->cas[i]);
    free(cache);
}

/* The chain in both encodings, into ENTRY (whose ca is set). */
static enr_code encode_chain(enr_issuing_ca *entry, enr_error *err)
{
    STACK_OF(X509) *chain = enr_ca_chain(entry->ca);
    BIO *pem = BIO_new(BIO_s_mem());
    if (pem == NULL)
        return enr_error_set(err, ENR_E_NOMEM, "out of memory");
    for (int i = 0; i < sk_X509_num(chain) && entry->issuer_count < ENR_ISSUERS_MAX; i++) {
        X509 *x = sk_X509_value(chain, i);
        unsigned char *der = NULL;
        int n = i2d_X509(x, &der);
        if (n <= 0 || PEM_write_bio_X509(pem, x) != 1) {
            OPENSSL_free(der);
            BIO_free(pem);
            return enr_error_set(err, ENR_E_CRYPTO, "cannot encode the chain of CA %s", entry->name);
        }
        entry->issuers[entry->issuer_count++] = (enr_dps_der){der, (size_t)n, .encoded = true};
    }
    char *data = NULL;
    long n = BIO_get_mem_data(pem, &data);
    entry->issuers_pem = n >= 0 ? malloc((size_t)n + 1) : NULL;
    if (entry->issuers_pem != NULL) {
        memcpy(entry->issuers_pem, data, (size_t)n);
        entry->issuers_pem[n] = '\0';
    }
    BIO_free(pem);
    return entry->issuers_pem != NULL ? ENR_OK : enr_error_set(err, ENR_E_NOMEM, "out of memory");
}

const enr_issuing_ca *enr_ca_cache_get(enr_ca_cache *cache, const char *name, enr_error *err)
{
    for (size_t i = 0; i < cache->count; i++)
        if (strcmp(cache->cas[i].name, name) == 0)
            return &cache->cas[i];
    enr_ca_record rec = {0};
    if (enr_store_get_ca(cache->store, name, &rec, err) != ENR_OK)
        return NULL;
    enr_ca *ca = NULL;
    enr_code rc = rec.role == ENR_CA_ISSUING ? enr_ca_open(rec.key_ref, NULL, NULL, &ca, err)
                                              : enr_error_set(err, ENR_E_POLICY, "CA %s is not an issuing CA", name);
    /* A directory added before it kept a note of its store learns it now
     * (best effort: the service may not write there), so `enroll ca`
     * commands given the directory see what the service issues. */
    enr_error note_err;
    const char *location = enr_store_location(cache->store);
    if (rc == ENR_OK && location != NULL && enr_ca_attach(rec.key_ref, location, name, &note_err) == ENR_E_EXISTS)
        fprintf(stderr, "{\"event\":\"ca_attached_elsewhere\",\"ca\":\"%s\",\"message\":\"%s\"}\n", name,
                note_err.message);
    enr_ca_record_free(&rec);
    if (rc != ENR_OK)
        return NULL;
    if (cache->count == CA_CACHE_MAX) {
        entry_clear(&cache->cas[0]);
        memmove(&cache->cas[0], &cache->cas[1], sizeof cache->cas[0] * (CA_CACHE_MAX - 1));
        memset(&cache->cas[CA_CACHE_MAX - 1], 0, sizeof cache->cas[0]);
        cache->count--;
    }
    enr_issuing_ca *entry = &cache->cas[cache->count];
    snprintf(entry->name, sizeof entry->name, "%s", name);
    entry->ca = ca;
    if (encode_chain(entry, err) != ENR_OK) {
        entry_clear(entry);
        return NULL;
    }
    cache->count++;
    return entry;
}
