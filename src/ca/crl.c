/* Revocation and CRLs: revoked.jsonl is the record, crl.pem is derived. */
#include <jansson.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <stdio.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "ca/ca_internal.h"
#include "enroll/cert.h"
#include "enroll/fileio.h"

static enr_code each_record(const enr_ca *ca, const char *file,
                            enr_code (*fn)(void *ctx, json_t *rec, enr_error *err), void *ctx,
                            enr_error *err)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", ca->dir, file);
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return ENR_OK; /* nothing recorded yet */
    char *line = NULL;
    size_t cap = 0;
    ssize_t n;
    enr_code rc = ENR_OK;
    int line_no = 0;
    while (rc == ENR_OK && (n = getline(&line, &cap, f)) > 0) {
        line_no++;
        if (line[n - 1] != '\n')
            break; /* a crash mid-append: never acknowledged */
        json_error_t jerr;
        json_t *rec = json_loadb(line, (size_t)n, JSON_REJECT_DUPLICATES, &jerr);
        if (rec == NULL || !json_is_object(rec))
            rc = enr_error_set(err, ENR_E_PARSE, "%s: line %d is not a JSON object", path, line_no);
        else
            rc = fn(ctx, rec, err);
        json_decref(rec);
    }
    free(line);
    fclose(f);
    return rc;
}

static const char *text_of(json_t *rec, const char *key)
{
    const char *v = json_string_value(json_object_get(rec, key));
    return v ? v : "";
}

typedef struct issued_list {
    enr_issued *items;
    size_t count, cap;
} issued_list;

static enr_code collect_issued(void *ctx, json_t *rec, enr_error *err)
{
    issued_list *l = ctx;
    if (l->count == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 64;
        enr_issued *grown = realloc(l->items, cap * sizeof *grown);
        if (grown == NULL)
            return enr_error_set(err, ENR_E_NOMEM, "out of memory");
        l->items = grown;
        l->cap = cap;
    }
    enr_issued *it = &l->items[l->count++];
    memset(it, 0, sizeof *it);
    snprintf(it->serial, sizeof it->serial, "%s", text_of(rec, "serial"));
    snprintf(it->subject, sizeof it->subject, "%s", text_of(rec, "subject"));
    snprintf(it->profile, sizeof it->profile, "%s", text_of(rec, "profile"));
    snprintf(it->spki_sha256, sizeof it->spki_sha256, "%s",
             text_of(rec, "spki_sha256"));
    const char *nb = json_string_value(json_object_get(rec, "not_before"));
    const char *na = json_string_value(json_object_get(rec, "not_after"));
    const char *at = json_string_value(json_object_get(rec, "issued_at"));
    if (nb == NULL || na == NULL || it->serial[0] == '\0' ||
        enr_time_parse(nb, &it->not_before, err) != ENR_OK || enr_time_parse(na, &it->not_after, err) != ENR_OK)
        return enr_error_set(err, ENR_E_PARSE, "issued.jsonl: record %zu is incomplete", l->count);
    if (at != NULL)
        (void)enr_time_parse(at, &it->issued_at, NULL);
    return ENR_OK;
}

static enr_code apply_revocation(void *ctx, json_t *rec, enr_error *err)
{
    issued_list *l = ctx;
    const char *serial = json_string_value(json_object_get(rec, "serial"));
    const char *at = json_string_value(json_object_get(rec, "revoked_at"));
    if (serial == NULL || at == NULL)
        return enr_error_set(err, ENR_E_PARSE, "revoked.jsonl: a record lacks serial or revoked_at");
    for (size_t i = 0; i < l->count; i++)
        if (strcasecmp(l->items[i].serial, serial) == 0) {
            l->items[i].revoked = true;
            l->items[i].reason = (int)json_integer_value(json_object_get(rec, "reason"));
            return enr_time_parse(at, &l->items[i].revoked_at, err);
        }
    return ENR_OK;
}

enr_code enr_ca_list(enr_ca *ca, enr_issued **out, size_t *count, enr_error *err)
{
    issued_list l = {NULL, 0, 0};
    enr_code rc = each_record(ca, "issued.jsonl", collect_issued, &l, err);
    if (rc == ENR_OK)
        rc = each_record(ca, "revoked.jsonl", apply_revocation, &l, err);
    if (rc != ENR_OK) {
        free(l.items);
        return rc;
    }
    *out = l.items;
    *count = l.count;
    return ENR_OK;
}

static enr_code write_crl(enr_ca *ca, time_t now, int64_t next_update_after, const enr_issued *items,
                          size_t count, X509_CRL **out, enr_error *err)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/crlnumber", ca->dir);
    long number = 0;
    enr_buf nbuf;
    enr_code read_rc = enr_file_read(path, 64, &nbuf, err);
    if (read_rc == ENR_OK) {
        /* RFC 5280 5.2.3: CRL numbers only ever grow, so a number we cannot
         * read is an error to fix by hand, never a restart from 1. */
        char *end = NULL;
        number = strtol((const char *)nbuf.data, &end, 10);
        bool ok = end != (char *)nbuf.data && (*end == '\n' || *end == '\0') && number >= 0;
        enr_buf_free(&nbuf);
        if (!ok)
            return enr_error_set(err, ENR_E_PARSE,
                                 "%s does not hold a CRL number; put the last published number there",
                                 path);
    } else if (read_rc != ENR_E_NOTFOUND) {
        return read_rc;
    }
    number++;
    if (ca->crl_number_source != NULL) {
        int64_t from_source = 0;
        enr_code src_rc = ca->crl_number_source(ca->crl_number_source_ctx, ca, number, &from_source, err);
        if (src_rc != ENR_OK)
            return src_rc;
        if (from_source < number || from_source > LONG_MAX)
            return enr_error_set(err, ENR_E_INTERNAL, "the CRL number source went back (%lld < %ld)",
                                 (long long)from_source, number);
        number = (long)from_source;
    }

    if (ca->signer == NULL)
        return enr_error_set(err, ENR_E_USAGE, "the CA was opened without its key; it cannot sign a CRL");
    X509_CRL *crl = X509_CRL_new();
    ASN1_TIME *this_update = ASN1_TIME_set(NULL, now);
    ASN1_TIME *next_update = ASN1_TIME_set(NULL, now + (time_t)next_update_after);
    ASN1_INTEGER *crl_number = ASN1_INTEGER_new();
    AUTHORITY_KEYID akid = {ca->key_id, NULL, NULL};
    enr_code rc = ENR_OK;
    if (crl == NULL || this_update == NULL || next_update == NULL || crl_number == NULL ||
        !ASN1_INTEGER_set(crl_number, number) || !X509_CRL_set_version(crl, X509_CRL_VERSION_2) ||
        !X509_CRL_set_issuer_name(crl, X509_get_subject_name(ca->cert)) ||
        !X509_CRL_set1_lastUpdate(crl, this_update) || !X509_CRL_set1_nextUpdate(crl, next_update) ||
        X509_CRL_add1_ext_i2d(crl, NID_crl_number, crl_number, 0, 0) != 1 ||
        X509_CRL_add1_ext_i2d(crl, NID_authority_key_identifier, &akid, 0, 0) != 1) {
        rc = enr_error_openssl(err, ENR_E_CRYPTO, "cannot build the CRL");
        goto done;
    }
    for (size_t i = 0; i < count && rc == ENR_OK; i++) {
        if (!items[i].revoked)
            continue;
        X509_REVOKED *r = X509_REVOKED_new();
        BIGNUM *bn = NULL;
        ASN1_INTEGER *serial = NULL;
        ASN1_TIME *when = ASN1_TIME_set(NULL, items[i].revoked_at);
        ASN1_ENUMERATED *reason = ASN1_ENUMERATED_new();
        int ok = r && when && reason && BN_hex2bn(&bn, items[i].serial) &&
                 (serial = BN_to_ASN1_INTEGER(bn, NULL)) != NULL && X509_REVOKED_set_serialNumber(r, serial) &&
                 X509_REVOKED_set_revocationDate(r, when) && ASN1_ENUMERATED_set(reason, items[i].reason);
        /* RFC 5280 5.3.1: omit the reason code rather than say "unspecified". */
        if (ok && items[i].reason != 0)
            ok = X509_REVOKED_add1_ext_i2d(r, NID_crl_reason, reason, 0, 0) == 1;
        if (ok && X509_CRL_add0_revoked(crl, r))
            r = NULL;
        else
            rc = enr_error_openssl(err, ENR_E_CRYPTO, "cannot add serial %s to the CRL", items[i].serial);
        X509_REVOKED_free(r);
        BN_free(bn);
        ASN1_INTEGER_free(serial);
        ASN1_TIME_free(when);
        ASN1_ENUMERATED_free(reason);
    }
    if (rc != ENR_OK)
        goto done;
    X509_CRL_sort(crl);
    if ((rc = enr_signer_sign_crl(ca->signer, crl, ca->md, err)) != ENR_OK)
        goto done;

    BIO *bio = BIO_new(BIO_s_mem());
    if (bio == NULL || !PEM_write_bio_X509_CRL(bio, crl)) {
        BIO_free(bio);
        rc = enr_error_openssl(err, ENR_E_CRYPTO, "cannot encode the CRL");
        goto done;
    }
    char *pem;
    long pem_len = BIO_get_mem_data(bio, &pem);
    char crl_path[4096], num[32];
    snprintf(crl_path, sizeof crl_path, "%s/crl.pem", ca->dir);
    int nlen = snprintf(num, sizeof num, "%ld\n", number);
    /* The number first: a crash in between skips a number, never reuses one. */
    rc = enr_file_write_atomic(path, num, (size_t)nlen, 0644, true, err);
    if (rc == ENR_OK)
        rc = enr_file_write_atomic(crl_path, pem, (size_t)pem_len, 0644, true, err);
    BIO_free(bio);
done:
    ASN1_TIME_free(this_update);
    ASN1_TIME_free(next_update);
    ASN1_INTEGER_free(crl_number);
    if (rc == ENR_OK && out != NULL)
        *out = crl;
    else
        X509_CRL_free(crl);
    return rc;
}

#define DEFAULT_NEXT_UPDATE (7 * 86400)

enr_code enr_ca_crl(enr_ca *ca, time_t now, X509_CRL **out, enr_error *err)
{
    enr_crl_options opts = {.now = now};
    return enr_ca_crl_ex(ca, &opts, out, err);
}

struct enr_crl_sink {
    enr_issued *items;
    size_t count, cap;
    size_t own_count; /* the directory's records come first */
};

void enr_ca_set_crl_number_source(enr_ca *ca, enr_crl_number_source source, void *ctx)
{
    ca->crl_number_source = source;
    ca->crl_number_source_ctx = ctx;
}

void enr_ca_set_revocation_source(enr_ca *ca, enr_revocation_source source, void *ctx)
{
    ca->revocation_source = source;
    ca->revocation_source_ctx = ctx;
}

/* A serial revoked in both records keeps the directory's record: the
 * records hold different certificates, so this is for the odd collision,
 * and it compares against the directory's revocations only. */
enr_code enr_crl_sink_add(enr_crl_sink *sink, const enr_crl_entry *entry, enr_error *err)
{
    const char *hex = entry->serial_hex;
    BIGNUM *a = NULL, *b = NULL;
    if (hex == NULL || strlen(hex) >= sizeof sink->items[0].serial || !BN_hex2bn(&a, hex) ||
        strlen(hex) != strspn(hex, "0123456789abcdefABCDEF")) {
        BN_free(a);
        return enr_error_set(err, ENR_E_USAGE, "'%.60s' is not a hexadecimal serial number", hex ? hex : "");
    }
    bool seen = false;
    for (size_t j = 0; j < sink->own_count && !seen; j++)
        seen = sink->items[j].revoked && BN_hex2bn(&b, sink->items[j].serial) && BN_cmp(a, b) == 0;
    BN_free(a);
    BN_free(b);
    if (seen)
        return ENR_OK;
    if (sink->count == sink->cap) {
        size_t cap = sink->cap ? sink->cap * 2 : 16;
        enr_issued *grown = realloc(sink->items, cap * sizeof *grown);
        if (grown == NULL)
            return enr_error_set(err, ENR_E_NOMEM, "out of memory");
        sink->items = grown;
        sink->cap = cap;
    }
    enr_issued *it = &sink->items[sink->count++];
    memset(it, 0, sizeof *it);
    snprintf(it->serial, sizeof it->serial, "%s", hex);
    it->revoked = true;
    it->reason = entry->reason;
    it->revoked_at = entry->revoked_at;
    return ENR_OK;
}

/* What a CRL lists, under the lock: the directory's index with its
 * revocations, then the revocation source's. */
static enr_code collect_revocations(enr_ca *ca, enr_crl_sink *sink, enr_error *err)
{
    memset(sink, 0, sizeof *sink);
    enr_code rc = enr_ca_list(ca, &sink->items, &sink->count, err);
    sink->cap = sink->own_count = sink->count;
    if (rc == ENR_OK && ca->revocation_source != NULL)
        rc = ca->revocation_source(ca->revocation_source_ctx, ca, sink, err);
    return rc;
}

enr_code enr_ca_crl_ex(enr_ca *ca, const enr_crl_options *opts, X509_CRL **out, enr_error *err)
{
    time_t now = opts->now != 0 ? opts->now : time(NULL);
    int64_t next = opts->next_update != 0 ? opts->next_update : DEFAULT_NEXT_UPDATE;
    if (next < 0)
        return enr_error_set(err, ENR_E_USAGE, "the next update must come after this one");
    enr_code rc = ca_index_lock(ca, err);
    if (rc != ENR_OK)
        return rc;
    enr_crl_sink sink;
    rc = collect_revocations(ca, &sink, err);
    if (rc == ENR_OK)
        rc = write_crl(ca, now, next, sink.items, sink.count, out, err);
    free(sink.items);
    ca_index_unlock(ca);
    return rc;
}

enr_code enr_ca_revoke(enr_ca *ca, const char *serial_hex, int reason, time_t when, enr_error *err)
{
    if (when == 0)
        when = time(NULL);
    enr_code rc = ca_index_lock(ca, err);
    if (rc != ENR_OK)
        return rc;
    enr_crl_sink sink;
    rc = collect_revocations(ca, &sink, err);
    enr_issued *items = sink.items;
    size_t count = sink.own_count; /* only the directory's own can be revoked here */
    enr_issued *hit = NULL;
    /* Accept any case and leading zeros, as serials are printed both ways. */
    BIGNUM *want = NULL, *have = NULL;
    int digits = rc == ENR_OK ? BN_hex2bn(&want, serial_hex) : 0;
    if (rc == ENR_OK && (digits == 0 || (size_t)digits != strlen(serial_hex)))
        rc = enr_error_set(err, ENR_E_USAGE, "'%s' is not a hexadecimal serial number", serial_hex);
    for (size_t i = 0; rc == ENR_OK && i < count && hit == NULL; i++) {
        if (BN_hex2bn(&have, items[i].serial) && BN_cmp(have, want) == 0)
            hit = &items[i];
    }
    if (rc == ENR_OK && hit == NULL)
        rc = enr_error_set(err, ENR_E_NOTFOUND,
                           "serial %s was not issued by this CA (`enroll ca list --dir %s` shows them)",
                           serial_hex, ca->dir);
    if (rc == ENR_OK && hit->revoked)
        rc = enr_error_set(err, ENR_E_EXISTS, "serial %s is already revoked (%s)", hit->serial,
                           enr_revocation_reason_name(hit->reason));
    if (rc == ENR_OK) {
        char at[32], line[256];
        enr_time_format(when, at, sizeof at);
        snprintf(line, sizeof line, "{\"serial\":\"%s\",\"reason\":%d,\"reason_name\":\"%s\",\"revoked_at\":\"%s\"}\n",
                 hit->serial, reason, enr_revocation_reason_name(reason), at);
        rc = ca_index_append_line(ca->dir, "revoked.jsonl", line, err);
        if (rc == ENR_OK) {
            hit->revoked = true;
            hit->reason = reason;
            hit->revoked_at = when;
            rc = write_crl(ca, time(NULL), DEFAULT_NEXT_UPDATE, items, sink.count, NULL, err);
        }
    }
    BN_free(want);
    BN_free(have);
    free(items);
    ca_index_unlock(ca);
    return rc;
}
