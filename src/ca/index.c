/* The CA directory's append-only record: issued.jsonl (one JSON object per
 * certificate, with its DER) and revoked.jsonl. A line is appended and
 * fsync'ed before the certificate is handed out, so a crash can lose only a
 * certificate nobody received: an incomplete last line is skipped. */
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <openssl/x509.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <unistd.h>

#include "ca/ca_internal.h"
#include "enroll/duration.h"
#include "enroll/input.h"
#include "enroll/name.h"
#include "enroll/pubkey.h"

static uint64_t serial_hash(const unsigned char *bytes, size_t len)
{
    uint64_t h = 1469598103934665603ull; /* FNV-1a */
    for (size_t i = 0; i < len; i++)
        h = (h ^ bytes[i]) * 1099511628211ull;
    return h;
}

static size_t serial_slot(const serial_set *set, const unsigned char *bytes, size_t len)
{
    size_t i = (size_t)(serial_hash(bytes, len) & (set->capacity - 1));
    while (set->slots[i][0] != 0 &&
           !(set->slots[i][0] == len && memcmp(set->slots[i] + 1, bytes, len) == 0))
        i = (i + 1) & (set->capacity - 1);
    return i;
}

bool serial_set_contains(const serial_set *set, const unsigned char *bytes, size_t len)
{
    if (set->capacity == 0 || len == 0 || len > 20)
        return false;
    return set->slots[serial_slot(set, bytes, len)][0] != 0;
}

enr_code serial_set_add(serial_set *set, const unsigned char *bytes, size_t len, enr_error *err)
{
    if (len == 0 || len > 20)
        return enr_error_set(err, ENR_E_PARSE, "serial number of %zu bytes is out of range", len);
    if ((set->count + 1) * 2 > set->capacity) {
        serial_set bigger = {NULL, set->capacity ? set->capacity * 2 : 1024, 0};
        bigger.slots = calloc(bigger.capacity, sizeof *bigger.slots);
        if (bigger.slots == NULL)
            return enr_error_set(err, ENR_E_NOMEM, "out of memory");
        for (size_t i = 0; i < set->capacity; i++)
            if (set->slots[i][0] != 0) {
                size_t j = serial_slot(&bigger, set->slots[i] + 1, set->slots[i][0]);
                memcpy(bigger.slots[j], set->slots[i], sizeof bigger.slots[j]);
                bigger.count++;
            }
        free(set->slots);
        *set = bigger;
    }
    size_t i = serial_slot(set, bytes, len);
    if (set->slots[i][0] == 0) {
        set->slots[i][0] = (unsigned char)len;
        memcpy(set->slots[i] + 1, bytes, len);
        set->count++;
    }
    return ENR_OK;
}

void serial_set_free(serial_set *set)
{
    free(set->slots);
    memset(set, 0, sizeof *set);
}

enr_code ca_index_lock(enr_ca *ca, enr_error *err)
{
    if (ca->lock_fd < 0) {
        char path[4096];
        snprintf(path, sizeof path, "%s/.lock", ca->dir);
        ca->lock_fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
        if (ca->lock_fd < 0)
            return enr_error_set(err, ENR_E_IO, "%s: cannot open: %s", path, strerror(errno));
    }
    while (flock(ca->lock_fd, LOCK_EX) != 0)
        if (errno != EINTR)
            return enr_error_set(err, ENR_E_IO, "%s: cannot lock the CA directory: %s", ca->dir,
                                 strerror(errno));
    return ENR_OK;
}

void ca_index_unlock(enr_ca *ca)
{
    if (ca->lock_fd >= 0)
        (void)flock(ca->lock_fd, LOCK_UN);
}

static enr_code add_serial_hex(enr_ca *ca, const char *hex, enr_error *err)
{
    BIGNUM *bn = NULL;
    if (hex == NULL || BN_hex2bn(&bn, hex) == 0) {
        BN_free(bn);
        return enr_error_set(err, ENR_E_PARSE, "%s/issued.jsonl: a record has no valid serial", ca->dir);
    }
    unsigned char bytes[21];
    int n = BN_num_bytes(bn);
    enr_code rc;
    if (n < 1 || n > 20)
        rc = enr_error_set(err, ENR_E_PARSE, "%s/issued.jsonl: serial %s is out of range", ca->dir, hex);
    else {
        BN_bn2bin(bn, bytes);
        rc = serial_set_add(&ca->serials, bytes, (size_t)n, err);
    }
    BN_free(bn);
    return rc;
}

/* Reads issued.jsonl from where we left off, learning serials issued by
 * other processes since. An incomplete final line (a crash mid-append) is
 * ignored; a malformed complete line is corruption and an error. */
enr_code ca_index_catch_up(enr_ca *ca, enr_error *err)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/issued.jsonl", ca->dir);
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return errno == ENOENT ? ENR_OK
                               : enr_error_set(err, ENR_E_IO, "%s: cannot open: %s", path, strerror(errno));
    if (fseek(f, ca->index_offset, SEEK_SET) != 0) {
        fclose(f);
        return enr_error_set(err, ENR_E_IO, "%s: cannot seek", path);
    }
    char *line = NULL;
    size_t cap = 0;
    ssize_t n;
    enr_code rc = ENR_OK;
    long line_no = 0;
    while ((n = getline(&line, &cap, f)) > 0) {
        line_no++;
        if (line[n - 1] != '\n')
            break; /* incomplete: never acknowledged */
        json_error_t jerr;
        json_t *rec = json_loadb(line, (size_t)n, JSON_REJECT_DUPLICATES, &jerr);
        if (rec == NULL) {
            rc = enr_error_set(err, ENR_E_PARSE, "%s: record %ld after offset %ld is not JSON: %s", path,
                               line_no, ca->index_offset, jerr.text);
            break;
        }
        rc = add_serial_hex(ca, json_string_value(json_object_get(rec, "serial")), err);
        json_decref(rec);
        if (rc != ENR_OK)
            break;
        ca->index_offset += n;
    }
    free(line);
    fclose(f);
    return rc;
}

/* Drops a torn last line (a crash mid-append, never acknowledged to anyone)
 * so the next record starts on a line of its own. Caller holds the lock. */
static enr_code drop_torn_tail(int fd, const char *path, enr_error *err)
{
    off_t size = lseek(fd, 0, SEEK_END);
    if (size <= 0)
        return ENR_OK;
    off_t keep = size;
    unsigned char c;
    while (keep > 0 && pread(fd, &c, 1, keep - 1) == 1 && c != '\n')
        keep--;
    if (keep == size)
        return ENR_OK;
    if (ftruncate(fd, keep) != 0)
        return enr_error_set(err, ENR_E_IO, "%s: cannot drop an incomplete last record: %s", path,
                             strerror(errno));
    return ENR_OK;
}

enr_code ca_index_append_line(const char *dir, const char *file, const char *line, enr_error *err)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, file);
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0)
        return enr_error_set(err, ENR_E_IO, "%s: cannot open: %s", path, strerror(errno));
    enr_code rc = drop_torn_tail(fd, path, err);
    off_t end = rc == ENR_OK ? lseek(fd, 0, SEEK_END) : -1;
    size_t len = strlen(line), done = 0;
    while (rc == ENR_OK && done < len) {
        ssize_t w = pwrite(fd, line + done, len - done, end + (off_t)done);
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0)
            rc = enr_error_set(err, ENR_E_IO, "%s: write failed: %s", path, strerror(errno));
        else
            done += (size_t)w;
    }
    if (rc == ENR_OK && fsync(fd) != 0)
        rc = enr_error_set(err, ENR_E_IO, "%s: fsync failed: %s", path, strerror(errno));
    close(fd);
    return rc;
}


/* enr_ca_issue records here: one line in issued.jsonl, fsync'ed. */
enr_code ca_index_record(void *ctx, X509 *cert, const char *profile, enr_error *err)
{
    enr_ca *ca = ctx;
    unsigned char *der = NULL;
    int der_len = i2d_X509(cert, &der);
    if (der_len <= 0)
        return enr_error_openssl(err, ENR_E_CRYPTO, "cannot encode the certificate for the index");
    char *b64 = NULL, *serial = ca_serial_hex(X509_get0_serialNumber(cert));
    char *subject = enr_name_format(X509_get_subject_name(cert));
    char spki_sha256[65];
    enr_code rc = enr_base64_encode(der, (size_t)der_len, &b64, err);
    if (rc == ENR_OK)
        rc = enr_spki_sha256_hex(X509_get_X509_PUBKEY(cert), spki_sha256, err);
    if (rc == ENR_OK && (serial == NULL || subject == NULL))
        rc = enr_error_set(err, ENR_E_NOMEM, "out of memory");
    if (rc == ENR_OK) {
        char nb[32], na[32], now[32];
        enr_time_format(enr_asn1_time_to_time_t(X509_get0_notBefore(cert)), nb, sizeof nb);
        enr_time_format(enr_asn1_time_to_time_t(X509_get0_notAfter(cert)), na, sizeof na);
        enr_time_format(time(NULL), now, sizeof now);
        json_t *rec = json_pack("{s:s,s:s,s:s,s:s,s:s,s:s,s:s,s:s}", "serial", serial, "subject", subject,
                                "profile", profile, "not_before", nb, "not_after", na, "issued_at", now,
                                "spki_sha256", spki_sha256, "der", b64);
        char *text = rec ? json_dumps(rec, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;
        json_decref(rec);
        if (text == NULL)
            rc = enr_error_set(err, ENR_E_NOMEM, "out of memory");
        else {
            size_t tl = strlen(text);
            char *line = realloc(text, tl + 2);
            if (line == NULL) {
                free(text);
                rc = enr_error_set(err, ENR_E_NOMEM, "out of memory");
            } else {
                line[tl] = '\n';
                line[tl + 1] = '\0';
                rc = ca_index_append_line(ca->dir, "issued.jsonl", line, err);
                free(line);
            }
        }
    }
    OPENSSL_free(der);
    free(b64);
    OPENSSL_free(serial);
    free(subject);
    return rc;
}
