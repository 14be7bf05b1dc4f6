/* A CA directory: ca.json (where the key is, URLs), cert.pem, chain.pem
 * (this CA first, up to its root), key.pem (0600) unless the key is in a
 * token, and the index files (index.c). */
#include <errno.h>
#include <jansson.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ca/ca_internal.h"
#include "enroll/cert.h"
#include "enroll/fileio.h"
#include "enroll/name.h"
#include "enroll/pubkey.h"

static void path_in(char *buf, size_t cap, const char *dir, const char *file)
{
    snprintf(buf, cap, "%s/%s", dir, file);
}

static enr_code write_pem_certs(const char *path, X509 *first, const STACK_OF(X509) *rest,
                                enr_error *err)
{
    BIO *bio = BIO_new(BIO_s_mem());
    if (bio == NULL)
        return enr_error_set(err, ENR_E_NOMEM, "out of memory");
    int ok = first == NULL || PEM_write_bio_X509(bio, first);
    for (int i = 0; ok && i < sk_X509_num(rest); i++)
        ok = PEM_write_bio_X509(bio, sk_X509_value(rest, i));
    char *data;
    long len = BIO_get_mem_data(bio, &data);
    enr_code rc = ok ? enr_file_write_atomic(path, data, (size_t)len, 0644, true, err)
                     : enr_error_openssl(err, ENR_E_CRYPTO, "cannot encode certificates");
    BIO_free(bio);
    return rc;
}

static enr_code write_config(const char *dir, const char *key_ref, const enr_token_options *token,
                             const char *crl_url, const char *aia_url, enr_error *err)
{
    json_t *cfg = json_pack("{s:i,s:s}", "format", 1, "key", key_ref);
    if (cfg == NULL)
        return enr_error_set(err, ENR_E_NOMEM, "out of memory");
    if (token != NULL && token->module_path != NULL)
        json_object_set_new(cfg, "module", json_string(token->module_path));
    if (crl_url)
        json_object_set_new(cfg, "crl_url", json_string(crl_url));
    if (aia_url)
        json_object_set_new(cfg, "aia_url", json_string(aia_url));
    char *text = json_dumps(cfg, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
    json_decref(cfg);
    if (text == NULL)
        return enr_error_set(err, ENR_E_NOMEM, "out of memory");
    char path[4096];
    path_in(path, sizeof path, dir, "ca.json");
    enr_code rc = enr_file_write_atomic(path, text, strlen(text), 0644, false, err);
    free(text);
    return rc;
}

static long cert_pathlen(X509 *cert)
{
    return X509_get_pathlen(cert);
}

/* basicConstraints CA:TRUE, and keyCertSign when keyUsage is present
 * (X509_check_ca's other "yes" answers are for legacy v1 roots). */
static bool is_ca_cert(X509 *cert)
{
    return X509_check_ca(cert) == 1 && (X509_get_key_usage(cert) & KU_KEY_CERT_SIGN);
}

/* ---- init ---- */

/* *created: the directory is new (a failed init removes it again). */
static enr_code prepare_dir(const char *dir, bool *created, enr_error *err)
{
    *created = mkdir(dir, 0755) == 0;
    if (!*created && errno != EEXIST)
        return enr_error_set(err, ENR_E_IO, "%s: cannot create: %s", dir, strerror(errno));
    char path[4096];
    path_in(path, sizeof path, dir, "ca.json");
    if (access(path, F_OK) == 0)
        return enr_error_set(err, ENR_E_EXISTS,
                             "%s already holds a CA (ca.json exists); choose another --dir", dir);
    return ENR_OK;
}

/* Makes (or, for a token, finds or makes) the CA's key; returns its reference. */
static enr_code make_key(const enr_ca_init_options *o, const char *dir, char *ref, size_t ref_cap,
                         enr_signer **signer, enr_error *err)
{
    enr_code rc;
    if (o->key_ref != NULL) {
        if (!enr_key_ref_is_token(o->key_ref))
            return enr_error_set(err, ENR_E_USAGE, "--key for a new CA takes a pkcs11: URI");
        rc = enr_signer_open(o->key_ref, NULL, o->token, signer, err);
        if (rc == ENR_E_NOTFOUND) {
            rc = enr_key_generate_token(o->key_type, o->key_ref, o->token, false, err);
            if (rc == ENR_OK)
                rc = enr_signer_open(o->key_ref, NULL, o->token, signer, err);
        }
        snprintf(ref, ref_cap, "%s", o->key_ref);
        return rc;
    }
    char path[4096];
    path_in(path, sizeof path, dir, "key.pem");
    rc = enr_key_generate_file(o->key_type, path, o->passphrase, false, err);
    if (rc == ENR_OK)
        rc = enr_signer_open(path, o->passphrase, NULL, signer, err);
    snprintf(ref, ref_cap, "key.pem");
    return rc;
}

static const EVP_MD *digest_for(const enr_signer *signer)
{
    enr_pubkey_info info;
    if (enr_pubkey_describe(enr_signer_public_key(signer), &info, NULL) == ENR_OK &&
        strcmp(info.curve, "P-384") == 0)
        return EVP_sha384();
    return EVP_sha256();
}

static enr_code self_signed_root(const enr_ca_init_options *o, enr_signer *signer, X509 **out,
                                 enr_error *err)
{
    X509_NAME *name = NULL;
    enr_code rc = enr_name_parse(o->subject, &name, err);
    if (rc != ENR_OK)
        return rc;
    enr_duration validity = {10, 0, 0, 0};
    if (o->validity && (rc = enr_duration_parse(o->validity, &validity, err)) != ENR_OK) {
        X509_NAME_free(name);
        return rc;
    }
    time_t now = time(NULL), nb = now - 300, na = enr_duration_apply(now, &validity, 1);
    if (na < now + 86400) {
        X509_NAME_free(name);
        return enr_error_set(err, ENR_E_USAGE, "a root valid for %s would expire within a day; give "
                                               "--validity of at least P1D", o->validity);
    }
    X509 *cert = X509_new();
    ASN1_OCTET_STRING *ski = NULL;
    BIGNUM *bn = BN_new();
    ASN1_INTEGER *serial = NULL;
    if (cert == NULL || bn == NULL || !BN_rand(bn, 159, BN_RAND_TOP_ONE, BN_RAND_BOTTOM_ANY) ||
        (serial = BN_to_ASN1_INTEGER(bn, NULL)) == NULL || !X509_set_version(cert, X509_VERSION_3) ||
        !X509_set_serialNumber(cert, serial) || !X509_set_subject_name(cert, name) ||
        !X509_set_issuer_name(cert, name) || !X509_time_adj_ex(X509_getm_notBefore(cert), 0, 0, &nb) ||
        !X509_time_adj_ex(X509_getm_notAfter(cert), 0, 0, &na)) {
        rc = enr_error_openssl(err, ENR_E_CRYPTO, "cannot build the root certificate");
        goto done;
    }
    if ((rc = enr_spki_copy(X509_get_X509_PUBKEY(cert), enr_signer_spki(signer), err)) != ENR_OK ||
        (rc = ca_key_identifier(enr_signer_spki(signer), &ski, err)) != ENR_OK)
        goto done;
    BASIC_CONSTRAINTS bc = {0xFF, NULL};
    ASN1_INTEGER *pathlen = ASN1_INTEGER_new();
    ASN1_INTEGER_set(pathlen, o->pathlen >= 0 ? o->pathlen : 1);
    bc.pathlen = pathlen;
    ASN1_BIT_STRING *ku = ASN1_BIT_STRING_new();
    ASN1_BIT_STRING_set_bit(ku, 5, 1); /* keyCertSign */
    ASN1_BIT_STRING_set_bit(ku, 6, 1); /* cRLSign */
    AUTHORITY_KEYID akid = {ski, NULL, NULL};
    int ok = X509_add1_ext_i2d(cert, NID_basic_constraints, &bc, 1, 0) == 1 &&
             X509_add1_ext_i2d(cert, NID_key_usage, ku, 1, 0) == 1 &&
             X509_add1_ext_i2d(cert, NID_subject_key_identifier, ski, 0, 0) == 1 &&
             X509_add1_ext_i2d(cert, NID_authority_key_identifier, &akid, 0, 0) == 1;
    ASN1_INTEGER_free(pathlen);
    ASN1_BIT_STRING_free(ku);
    if (!ok) {
        rc = enr_error_openssl(err, ENR_E_CRYPTO, "cannot add the root's extensions");
        goto done;
    }
    rc = enr_signer_sign_cert(signer, cert, digest_for(signer), err);
done:
    BN_free(bn);
    ASN1_INTEGER_free(serial);
    ASN1_OCTET_STRING_free(ski);
    X509_NAME_free(name);
    if (rc != ENR_OK)
        X509_free(cert);
    else
        *out = cert;
    return rc;
}

static enr_code intermediate_from_parent(const enr_ca_init_options *o, enr_signer *signer,
                                         X509 **out, STACK_OF(X509) **parent_chain, enr_error *err)
{
    enr_ca *parent = NULL;
    enr_csr_spec *spec = enr_csr_spec_new();
    enr_csr *csr = NULL;
    enr_profile *profile = NULL;
    enr_code rc = spec ? ENR_OK : enr_error_set(err, ENR_E_NOMEM, "out of memory");
    if (rc == ENR_OK && (rc = enr_ca_open(o->parent_dir, o->parent_passphrase, o->token, &parent, err)) != ENR_OK)
        enr_error_prefix(err, "opening the parent CA");
    if (rc == ENR_OK)
        rc = enr_csr_spec_set_subject(spec, o->subject, err);
    if (rc == ENR_OK)
        rc = enr_csr_spec_set_ca(spec, o->pathlen, err);
    if (rc == ENR_OK)
        rc = enr_csr_build(spec, signer, &csr, err);
    if (rc == ENR_OK)
        rc = enr_profile_new("intermediate", &profile, err);
    if (rc == ENR_OK && o->validity)
        rc = enr_profile_set_validity(profile, o->validity, err);
    if (rc == ENR_OK)
        rc = enr_ca_issue(parent, csr, profile, 0, out, err);
    if (rc == ENR_OK && (*parent_chain = X509_chain_up_ref(enr_ca_chain(parent))) == NULL)
        rc = enr_error_set(err, ENR_E_NOMEM, "out of memory");
    enr_profile_free(profile);
    enr_csr_free(csr);
    enr_csr_spec_free(spec);
    enr_ca_free(parent);
    return rc;
}

static enr_code import_existing(const enr_ca_init_options *o, const char *dir, X509 **cert,
                                STACK_OF(X509) **chain, char *ref, size_t ref_cap, enr_error *err)
{
    STACK_OF(X509) *certs = NULL;
    enr_signer *signer = NULL;
    enr_code rc = enr_cert_read_file(o->import_cert, &certs, err);
    if (rc != ENR_OK)
        return rc;
    *cert = sk_X509_shift(certs);
    *chain = certs; /* anything after the first certificate counts as its chain */
    if (!is_ca_cert(*cert))
        return enr_error_set(err, ENR_E_POLICY,
                             "%s is not a CA certificate (needs basicConstraints CA:TRUE and keyCertSign)",
                             o->import_cert);
    if (o->import_chain != NULL) {
        STACK_OF(X509) *more = NULL;
        if ((rc = enr_cert_read_file(o->import_chain, &more, err)) != ENR_OK)
            return rc;
        while (sk_X509_num(more) > 0)
            sk_X509_push(*chain, sk_X509_shift(more));
        sk_X509_free(more);
    }
    if ((rc = enr_signer_open(o->import_key, o->passphrase, o->token, &signer, err)) != ENR_OK)
        return rc;
    bool match = enr_pubkey_equal(enr_signer_public_key(signer), X509_get0_pubkey(*cert));
    enr_signer_free(signer);
    if (!match)
        return enr_error_set(err, ENR_E_POLICY, "%s does not hold the key of %s", o->import_key,
                             o->import_cert);
    if (enr_key_ref_is_token(o->import_key)) {
        snprintf(ref, ref_cap, "%s", o->import_key);
        return ENR_OK;
    }
    /* Keep our own 0600 copy, so the CA directory is self-contained. */
    enr_buf key;
    if ((rc = enr_file_read(o->import_key, 64 * 1024, &key, err)) != ENR_OK)
        return rc;
    char path[4096];
    path_in(path, sizeof path, dir, "key.pem");
    rc = enr_file_write_atomic(path, key.data, key.len, 0600, false, err);
    OPENSSL_cleanse(key.data, key.len);
    enr_buf_free(&key);
    snprintf(ref, ref_cap, "key.pem");
    return rc;
}

/* http(s) or ldap, printable, and none of the characters OpenSSL's
 * extension syntax would split on. */
static enr_code check_url(const char *what, const char *url, enr_error *err)
{
    if (url == NULL)
        return ENR_OK;
    bool scheme = strncmp(url, "http://", 7) == 0 || strncmp(url, "https://", 8) == 0 ||
                  strncmp(url, "ldap://", 7) == 0;
    size_t len = strlen(url);
    bool clean = len < 512;
    for (const char *p = url; clean && *p; p++)
        clean = (unsigned char)*p > 0x20 && (unsigned char)*p < 0x7f && *p != ',' && *p != ';';
    if (!scheme || !clean)
        return enr_error_set(err, ENR_E_USAGE,
                             "%s '%s' must be an http://, https:// or ldap:// URL without spaces, ',' "
                             "or ';' (percent-encode them)",
                             what, url);
    return ENR_OK;
}

enr_code enr_ca_init(const enr_ca_init_options *o, enr_error *err)
{
    if (o->dir == NULL)
        return enr_error_set(err, ENR_E_USAGE, "a CA needs a directory (--dir)");
    enr_code url_rc = check_url("--crl-url", o->crl_url, err);
    if (url_rc == ENR_OK)
        url_rc = check_url("--aia-url", o->aia_url, err);
    if (url_rc != ENR_OK)
        return url_rc;
    if (o->import_cert == NULL && o->subject == NULL)
        return enr_error_set(err, ENR_E_USAGE, "a new CA needs a subject (--subject /CN=...)");
    bool created = false;
    enr_code rc = prepare_dir(o->dir, &created, err);
    if (rc != ENR_OK)
        return rc;
    char ref[2048] = "";
    enr_signer *signer = NULL;
    X509 *cert = NULL;
    STACK_OF(X509) *parents = NULL;
    if (o->import_cert != NULL)
        rc = import_existing(o, o->dir, &cert, &parents, ref, sizeof ref, err);
    else if ((rc = make_key(o, o->dir, ref, sizeof ref, &signer, err)) == ENR_OK)
        rc = o->parent_dir ? intermediate_from_parent(o, signer, &cert, &parents, err)
                           : self_signed_root(o, signer, &cert, err);
    char path[4096];
    if (rc == ENR_OK) {
        path_in(path, sizeof path, o->dir, "cert.pem");
        rc = write_pem_certs(path, cert, NULL, err);
    }
    if (rc == ENR_OK) {
        path_in(path, sizeof path, o->dir, "chain.pem");
        rc = write_pem_certs(path, cert, parents, err);
    }
    /* ca.json last: a directory without it is not a CA, so a failure above
     * leaves nothing that could be mistaken for one. */
    if (rc == ENR_OK)
        rc = write_config(o->dir, ref, o->token, o->crl_url, o->aia_url, err);
    if (rc != ENR_OK && rc != ENR_E_EXISTS) {
        /* Leave nothing half-made that would block a corrected retry. (A key
         * made in a token stays: it cannot be told apart from one that was
         * there before.) */
        static const char *MADE[] = {"cert.pem", "chain.pem", "key.pem"};
        for (size_t i = 0; i < 3; i++) {
            if (i == 2 && (o->import_cert != NULL || o->key_ref != NULL) && strcmp(ref, "key.pem") != 0)
                continue;
            path_in(path, sizeof path, o->dir, MADE[i]);
            unlink(path);
        }
        if (created)
            (void)rmdir(o->dir); /* only when empty: a token key's files are not ours to delete */
    }
    enr_signer_free(signer);
    X509_free(cert);
    sk_X509_pop_free(parents, X509_free);
    return rc;
}

/* ---- open ---- */

/* with_key false: everything but the signer, for commands that only read. */
static enr_code ca_open(const char *dir, bool with_key, const char *passphrase,
                       const enr_token_options *token, enr_ca **out, enr_error *err)
{
    *out = NULL;
    char path[4096];
    path_in(path, sizeof path, dir, "ca.json");
    enr_buf cfg_text;
    enr_code rc = enr_file_read(path, 64 * 1024, &cfg_text, err);
    if (rc != ENR_OK) {
        if (rc == ENR_E_NOTFOUND)
            enr_error_set(err, ENR_E_NOTFOUND, "%s is not a CA directory (no ca.json); make one with "
                                               "`enroll ca init --dir %s`", dir, dir);
        return rc;
    }
    json_error_t jerr;
    json_t *cfg = json_loadb((const char *)cfg_text.data, cfg_text.len, JSON_REJECT_DUPLICATES, &jerr);
    enr_buf_free(&cfg_text);
    if (cfg == NULL)
        return enr_error_set(err, ENR_E_PARSE, "%s: line %d: %s", path, jerr.line, jerr.text);
    enr_ca *ca = calloc(1, sizeof *ca);
    if (ca == NULL) {
        json_decref(cfg);
        return enr_error_set(err, ENR_E_NOMEM, "out of memory");
    }
    ca->lock_fd = -1;
    ca->dir = strdup(dir);
    if (ca->dir == NULL)
        rc = enr_error_set(err, ENR_E_NOMEM, "out of memory");
    const char *key = json_string_value(json_object_get(cfg, "key"));
    const char *module = json_string_value(json_object_get(cfg, "module"));
    const char *crl_url = json_string_value(json_object_get(cfg, "crl_url"));
    const char *aia_url = json_string_value(json_object_get(cfg, "aia_url"));
    ca->crl_url = crl_url ? strdup(crl_url) : NULL;
    ca->aia_url = aia_url ? strdup(aia_url) : NULL;
    if (key == NULL)
        rc = enr_error_set(err, ENR_E_PARSE, "%s: no \"key\"", path);
    STACK_OF(X509) *chain = NULL;
    if (rc == ENR_OK) {
        path_in(path, sizeof path, dir, "chain.pem");
        rc = enr_cert_read_file(path, &chain, err);
    }
    if (rc == ENR_OK) {
        ca->chain = chain;
        ca->cert = sk_X509_value(chain, 0);
        if (!is_ca_cert(ca->cert))
            rc = enr_error_set(err, ENR_E_PARSE, "%s: the first certificate is not a CA", path);
    }
    if (rc == ENR_OK && with_key) {
        enr_token_options topts = {token ? token->module_path : NULL, token ? token->pin : NULL};
        if (topts.module_path == NULL)
            topts.module_path = module;
        if (enr_key_ref_is_token(key))
            rc = enr_signer_open(key, NULL, &topts, &ca->signer, err);
        else {
            char key_path[4096];
            path_in(key_path, sizeof key_path, dir, key);
            rc = enr_signer_open(key_path, passphrase, NULL, &ca->signer, err);
        }
    }
    if (rc == ENR_OK && with_key &&
        !enr_pubkey_equal(enr_signer_public_key(ca->signer), X509_get0_pubkey(ca->cert)))
        rc = enr_error_set(err, ENR_E_POLICY, "%s: the key does not belong to cert.pem", dir);
    if (rc == ENR_OK) {
        /* Chains are built by matching AKI to the issuer's own SKI, whatever
         * method made it (an imported CA may use another). */
        const ASN1_OCTET_STRING *ski = X509_get0_subject_key_id(ca->cert);
        if (ski != NULL)
            ca->key_id = ASN1_OCTET_STRING_dup(ski);
        else
            rc = ca_key_identifier(X509_get_X509_PUBKEY(ca->cert), &ca->key_id, err);
        if (rc == ENR_OK && ca->key_id == NULL)
            rc = enr_error_set(err, ENR_E_NOMEM, "out of memory");
    }
    if (rc == ENR_OK) {
        ca->pathlen = cert_pathlen(ca->cert);
        ca->md = with_key ? digest_for(ca->signer) : EVP_sha256();
        rc = ca_index_catch_up(ca, err);
    }
    json_decref(cfg);
    if (rc != ENR_OK) {
        enr_ca_free(ca);
        return rc;
    }
    *out = ca;
    return ENR_OK;
}

enr_code enr_ca_open(const char *dir, const char *passphrase, const enr_token_options *token,
                     enr_ca **out, enr_error *err)
{
    return ca_open(dir, true, passphrase, token, out, err);
}

enr_code enr_ca_open_public(const char *dir, enr_ca **out, enr_error *err)
{
    return ca_open(dir, false, NULL, NULL, out, err);
}

void enr_ca_free(enr_ca *ca)
{
    if (ca == NULL)
        return;
    if (ca->lock_fd >= 0)
        close(ca->lock_fd);
    sk_X509_pop_free(ca->chain, X509_free);
    enr_signer_free(ca->signer);
    ASN1_OCTET_STRING_free(ca->key_id);
    serial_set_free(&ca->serials);
    free(ca->crl_url);
    free(ca->aia_url);
    free(ca->dir);
    free(ca);
}

X509 *enr_ca_cert(const enr_ca *ca)
{
    return ca->cert;
}

STACK_OF(X509) *enr_ca_chain(const enr_ca *ca)
{
    return ca->chain;
}

/* ---- attachment to a store ---------------------------------------------- */

const char *enr_ca_dir(const enr_ca *ca)
{
    return ca->dir;
}

#define ATTACHMENT_FILE "store.json"

enr_code enr_ca_attachment_parse(const char *text, size_t len, char location[ENR_CA_STORE_LOCATION_MAX + 1],
                                 char name[129], enr_error *err)
{
    json_error_t jerr;
    json_t *root = json_loadb(text, len, JSON_REJECT_DUPLICATES, &jerr);
    const char *loc = NULL, *n = NULL;
    enr_code rc = ENR_OK;
    if (root == NULL)
        rc = enr_error_set(err, ENR_E_PARSE, "line %d, column %d: %s", jerr.line, jerr.column, jerr.text);
    else if (json_unpack_ex(root, &jerr, JSON_STRICT, "{s:s, s:s}", "store", &loc, "name", &n) != 0)
        rc = enr_error_set(err, ENR_E_PARSE, "%s: it must be {\"store\": LOCATION, \"name\": CA NAME}", jerr.text);
    else if (loc[0] == '\0' || strlen(loc) > ENR_CA_STORE_LOCATION_MAX || strlen(loc) != json_string_length(
                 json_object_get(root, "store")))
        rc = enr_error_set(err, ENR_E_PARSE, "\"store\" must be a path of 1 to %d bytes without NUL",
                           ENR_CA_STORE_LOCATION_MAX);
    else if (n[0] == '\0' || strlen(n) > 128 || strlen(n) != json_string_length(json_object_get(root, "name")))
        rc = enr_error_set(err, ENR_E_PARSE, "\"name\" must be a CA name of 1 to 128 bytes without NUL");
    else {
        snprintf(location, ENR_CA_STORE_LOCATION_MAX + 1, "%s", loc);
        snprintf(name, 129, "%s", n);
    }
    json_decref(root);
    return rc;
}

static enr_code read_attachment(const char *dir, char location[ENR_CA_STORE_LOCATION_MAX + 1], char name[129],
                                enr_error *err)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/" ATTACHMENT_FILE, dir);
    enr_buf buf;
    enr_code rc = enr_file_read(path, 16 * 1024, &buf, err);
    if (rc != ENR_OK)
        return rc;
    rc = enr_ca_attachment_parse((const char *)buf.data, buf.len, location, name, err);
    enr_buf_free(&buf);
    if (rc != ENR_OK)
        enr_error_prefix(err, "%s is damaged (`enroll admin ca add` writes it again)", path);
    return rc;
}

enr_code enr_ca_attachment(const enr_ca *ca, char location[ENR_CA_STORE_LOCATION_MAX + 1], char name[129],
                           enr_error *err)
{
    return read_attachment(ca->dir, location, name, err);
}

enr_code enr_ca_attach(const char *dir, const char *store_location, const char *name, enr_error *err)
{
    if (store_location == NULL || store_location[0] == '\0' || strlen(store_location) > ENR_CA_STORE_LOCATION_MAX ||
        name == NULL || name[0] == '\0' || strlen(name) > 128)
        return enr_error_set(err, ENR_E_USAGE, "a store location and a CA name are needed to attach %s", dir);
    char location[ENR_CA_STORE_LOCATION_MAX + 1], known_name[129];
    enr_error ignored;
    enr_code rc = read_attachment(dir, location, known_name, &ignored);
    if (rc == ENR_OK && strcmp(location, store_location) != 0)
        return enr_error_set(err, ENR_E_EXISTS,
                             "%s is attached to the store at %s already: one CA directory has one record of "
                             "what it issued and revoked",
                             dir, location);
    if (rc == ENR_OK && strcmp(known_name, name) == 0)
        return ENR_OK;
    json_t *note = json_pack("{s:s, s:s}", "store", store_location, "name", name);
    char *text = note != NULL ? json_dumps(note, JSON_INDENT(2) | JSON_PRESERVE_ORDER) : NULL;
    json_decref(note);
    if (text == NULL)
        return enr_error_set(err, ENR_E_NOMEM, "out of memory");
    char path[4096];
    snprintf(path, sizeof path, "%s/" ATTACHMENT_FILE, dir);
    size_t len = strlen(text);
    text[len] = '\n'; /* json_dumps ends without one; the NUL is not written */
    rc = enr_file_write_atomic(path, text, len + 1, 0644, true, err);
    free(text);
    return rc;
}
