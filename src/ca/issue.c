#define _GNU_SOURCE /* FNM_CASEFOLD */
/* Issuance: the request proves possession, the profile decides what the
 * certificate says, and the certificate is recorded before it is returned. */
#include <fnmatch.h>
#include <openssl/err.h>
#include <openssl/rand.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "ca/ca_internal.h"
#include "enroll/name.h"
#include "enroll/pubkey.h"

char *ca_serial_hex(const ASN1_INTEGER *serial)
{
    BIGNUM *bn = ASN1_INTEGER_to_BN(serial, NULL);
    char *hex = bn ? BN_bn2hex(bn) : NULL;
    BN_free(bn);
    return hex;
}

/* 20 random bytes, top bit clear (positive), first byte non-zero (so the
 * DER INTEGER is exactly 20 octets): 159 bits of entropy, RFC 5280's limit. */
enr_code ca_serial_new(enr_ca *ca, ASN1_INTEGER **out, enr_error *err)
{
    unsigned char bytes[20];
    for (int attempt = 0; attempt < 8; attempt++) {
        if (RAND_bytes(bytes, sizeof bytes) != 1)
            return enr_error_openssl(err, ENR_E_CRYPTO, "no randomness for a serial number");
        bytes[0] &= 0x7f;
        if (bytes[0] == 0)
            bytes[0] = 0x01;
        if (serial_set_contains(&ca->serials, bytes, sizeof bytes))
            continue;
        BIGNUM *bn = BN_bin2bn(bytes, sizeof bytes, NULL);
        ASN1_INTEGER *serial = bn ? BN_to_ASN1_INTEGER(bn, NULL) : NULL;
        BN_free(bn);
        if (serial == NULL)
            return enr_error_openssl(err, ENR_E_NOMEM, "out of memory");
        *out = serial;
        return ENR_OK;
    }
    return enr_error_set(err, ENR_E_INTERNAL, "could not draw an unused serial number");
}

/* RFC 5280 4.2.1.2 method 1: SHA-1 of the subjectPublicKey BIT STRING. */
enr_code ca_key_identifier(const X509_PUBKEY *spki, ASN1_OCTET_STRING **out, enr_error *err)
{
    const unsigned char *key = NULL;
    int key_len = 0;
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int md_len = 0;
    ASN1_OCTET_STRING *id = ASN1_OCTET_STRING_new();
    if (id == NULL || !X509_PUBKEY_get0_param(NULL, &key, &key_len, NULL, spki) ||
        !EVP_Digest(key, (size_t)key_len, md, &md_len, EVP_sha1(), NULL) ||
        !ASN1_OCTET_STRING_set(id, md, (int)md_len)) {
        ASN1_OCTET_STRING_free(id);
        return enr_error_openssl(err, ENR_E_CRYPTO, "cannot compute the key identifier");
    }
    *out = id;
    return ENR_OK;
}

static bool weak_signature_hash(int sig_nid, const char **name)
{
    int md_nid = NID_undef, pkey_nid = NID_undef;
    if (!OBJ_find_sigid_algs(sig_nid, &md_nid, &pkey_nid))
        return false;
    *name = OBJ_nid2sn(md_nid);
    return md_nid == NID_md5 || md_nid == NID_sha1 || md_nid == NID_md4 || md_nid == NID_md2;
}

static enr_code check_key(const enr_csr *csr, const enr_profile *profile, enr_error *err)
{
    enr_pubkey_info info;
    enr_code rc = enr_pubkey_classify(enr_csr_public_key(csr), &info, err);
    if (rc != ENR_OK)
        return rc;
    const char *type = enr_pubkey_type_name(&info);
    enr_key_type t;
    if (type == NULL || enr_key_type_parse(type, &t, NULL) != ENR_OK)
        return enr_error_refuse(err, ENR_R_KEY_NOT_ALLOWED,
                             "key %s%s%s (%d bit) is not a type enroll issues for (ec-p256, ec-p384, "
                             "rsa-2048/3072/4096, ed25519)",
                             info.algorithm, info.curve[0] ? " " : "", info.curve, info.bits);
    if (!(profile->key_types & (1u << t)))
        return enr_error_refuse(err, ENR_R_KEY_NOT_ALLOWED, "key type %s is not allowed by profile %s", type,
                             profile->name);
    if (strcmp(info.algorithm, "RSA") == 0 && info.rsa_exponent != 65537)
        return enr_error_refuse(err, ENR_R_KEY_NOT_ALLOWED, "RSA public exponent %lu is refused (use 65537)",
                             info.rsa_exponent);
    return ENR_OK;
}

static bool printable_without_spaces(const char *s)
{
    for (; *s; s++)
        if ((unsigned char)*s <= 0x20 || (unsigned char)*s >= 0x7f)
            return false;
    return true;
}

static bool san_allowed(const enr_profile *profile, const char *type, const char *value)
{
    size_t tlen = strlen(type);
    for (size_t i = 0; i < profile->san_allow_count; i++) {
        const char *pattern = profile->san_allow[i];
        if (strncasecmp(pattern, type, tlen) != 0 || pattern[tlen] != ':')
            continue;
        /* In a URI, '*' stays within one path segment. */
        int flags = strcmp(type, "URI") == 0 ? FNM_PATHNAME : FNM_CASEFOLD;
        if (fnmatch(pattern + tlen + 1, value, flags) == 0)
            return true;
    }
    return false;
}

static enr_code check_san(const GENERAL_NAMES *names, const enr_profile *profile, enr_error *err)
{
    for (int i = 0; i < sk_GENERAL_NAME_num(names); i++) {
        const GENERAL_NAME *gn = sk_GENERAL_NAME_value(names, i);
        int type = 0;
        const void *v = GENERAL_NAME_get0_value(gn, &type);
        const char *tname;
        char value[300] = "";
        switch (type) {
        case GEN_DNS: tname = "DNS"; break;
        case GEN_URI: tname = "URI"; break;
        case GEN_EMAIL: tname = "email"; break;
        case GEN_IPADD: {
            tname = "IP";
            const ASN1_OCTET_STRING *ip = v;
            int len = ASN1_STRING_length(ip);
            const unsigned char *b = ASN1_STRING_get0_data(ip);
            if (len == 4)
                snprintf(value, sizeof value, "%u.%u.%u.%u", b[0], b[1], b[2], b[3]);
            else if (len == 16) {
                size_t w = 0;
                for (int k = 0; k < 16; k += 2)
                    w += (size_t)snprintf(value + w, sizeof value - w, "%s%x", k ? ":" : "",
                                          (unsigned)(b[k] << 8 | b[k + 1]));
            } else
                return enr_error_refuse(err, ENR_R_NAME_NOT_ALLOWED, "subjectAltName %d: malformed IP address", i + 1);
            break;
        }
        default:
            return enr_error_refuse(err, ENR_R_NAME_NOT_ALLOWED,
                                 "subjectAltName %d: this name type is never honoured (DNS, IP, URI "
                                 "and email only)",
                                 i + 1);
        }
        if (type != GEN_IPADD) {
            const ASN1_STRING *s = v;
            int len = ASN1_STRING_length(s);
            if (len <= 0 || (size_t)len >= sizeof value || memchr(ASN1_STRING_get0_data(s), 0, (size_t)len))
                return enr_error_refuse(err, ENR_R_NAME_NOT_ALLOWED, "subjectAltName %d (%s) is empty or malformed",
                                     i + 1, tname);
            memcpy(value, ASN1_STRING_get0_data(s), (size_t)len);
            bool well_formed = type == GEN_DNS     ? enr_dns_name_valid(value, false)
                               : type == GEN_EMAIL ? printable_without_spaces(value) && strchr(value, '@')
                                                   : printable_without_spaces(value) && strchr(value, ':');
            if (!well_formed)
                return enr_error_refuse(err, ENR_R_NAME_NOT_ALLOWED,
                                     "subjectAltName %s:%s is not a well-formed %s%s", tname, value,
                                     type == GEN_DNS ? "host name" : type == GEN_EMAIL ? "email address" : "URI",
                                     type == GEN_DNS && strchr(value, '*') ? " (wildcards are never issued)" : "");
        }
        if (!san_allowed(profile, tname, value))
            return enr_error_refuse(err, ENR_R_NAME_NOT_ALLOWED,
                                 profile->san_allow_count == 0
                                     ? "subjectAltName %s:%s is not allowed: profile %s allows no "
                                       "subjectAltName (add patterns with --san-allow)"
                                     : "subjectAltName %s:%s is outside profile %s's allow-list",
                                 tname, value, profile->name);
    }
    return ENR_OK;
}

/* Looks at what the requester asked for: only SANs can be honoured; a CA
 * request outside the intermediate profile and unknown critical extensions
 * are refused. `*san` receives the SANs to copy, if any. */
static enr_code check_requested_extensions(const enr_csr *csr, const enr_profile *profile,
                                           long *requested_pathlen, GENERAL_NAMES **san,
                                           enr_error *err)
{
    *san = NULL;
    *requested_pathlen = -1;
    STACK_OF(X509_EXTENSION) *exts = X509_REQ_get_extensions(enr_csr_x509_req(csr));
    ERR_clear_error();
    enr_code rc = ENR_OK;
    for (int i = 0; rc == ENR_OK && i < sk_X509_EXTENSION_num(exts); i++) {
        X509_EXTENSION *ext = sk_X509_EXTENSION_value(exts, i);
        int nid = OBJ_obj2nid(X509_EXTENSION_get_object(ext));
        if (nid == NID_basic_constraints) {
            BASIC_CONSTRAINTS *bc = X509V3_EXT_d2i(ext);
            if (bc == NULL)
                rc = enr_error_refuse(err, ENR_R_EXTENSION_NOT_ALLOWED, "the requested basicConstraints cannot be decoded");
            else if (bc->ca && !profile->is_ca)
                rc = enr_error_refuse(err, ENR_R_EXTENSION_NOT_ALLOWED,
                                   "the request asks for a CA certificate (basicConstraints CA:TRUE); "
                                   "profile %s issues end-entity certificates only",
                                   profile->name);
            else if (bc->ca && bc->pathlen)
                *requested_pathlen = ASN1_INTEGER_get(bc->pathlen);
            BASIC_CONSTRAINTS_free(bc);
        } else if (nid == NID_subject_alt_name) {
            GENERAL_NAMES *names = X509V3_EXT_d2i(ext);
            if (names == NULL)
                rc = enr_error_refuse(err, ENR_R_NAME_NOT_ALLOWED, "the requested subjectAltName cannot be decoded");
            else if ((rc = check_san(names, profile, err)) == ENR_OK && *san == NULL)
                *san = names;
            else
                GENERAL_NAMES_free(names);
        } else if (X509_EXTENSION_get_critical(ext) && !X509_supported_extension(ext)) {
            char oid[80];
            OBJ_obj2txt(oid, sizeof oid, X509_EXTENSION_get_object(ext), 1);
            rc = enr_error_refuse(err, ENR_R_EXTENSION_NOT_ALLOWED, "the request asks for an unknown critical extension %s",
                               oid);
        }
    }
    sk_X509_EXTENSION_pop_free(exts, X509_EXTENSION_free);
    if (rc != ENR_OK) {
        GENERAL_NAMES_free(*san);
        *san = NULL;
    }
    return rc;
}

static enr_code subject_for(const enr_csr *csr, const enr_profile *profile, bool has_san,
                            X509_NAME **out, enr_error *err)
{
    const X509_NAME *requested = X509_REQ_get_subject_name(enr_csr_x509_req(csr));
    if (profile->force_cn != NULL) {
        char *cn = enr_name_common_name(requested);
        bool same = cn != NULL && strcmp(cn, profile->force_cn) == 0;
        enr_code rc = same ? ENR_OK
                           : enr_error_refuse(err, ENR_R_NAME_NOT_ALLOWED,
                                           "the request's CN '%s' does not match the required id '%s'",
                                           cn ? cn : "(none)", profile->force_cn);
        free(cn);
        if (rc != ENR_OK)
            return rc;
        X509_NAME *name = X509_NAME_new();
        if (name == NULL || !X509_NAME_add_entry_by_NID(name, NID_commonName, MBSTRING_UTF8,
                                                        (const unsigned char *)profile->force_cn, -1, -1, 0)) {
            X509_NAME_free(name);
            return enr_error_openssl(err, ENR_E_NOMEM, "cannot build the subject");
        }
        *out = name;
        return ENR_OK;
    }
    if (X509_NAME_entry_count(requested) == 0 && !has_san)
        return enr_error_refuse(err, ENR_R_NAME_NOT_ALLOWED, "the request has neither a subject nor a subjectAltName");
    if (profile->cn_is_host_name) {
        /* TLS clients still match a server's CN when there is no SAN: it
         * is a name like any other and passes the same allow-list. */
        char *cn = enr_name_common_name(requested);
        bool allowed = cn == NULL || (enr_dns_name_valid(cn, false) && san_allowed(profile, "DNS", cn));
        enr_code rc = allowed ? ENR_OK
                              : enr_error_refuse(err, ENR_R_NAME_NOT_ALLOWED,
                                              "the request's CN '%s' is not a host name profile %s allows",
                                              cn, profile->name);
        free(cn);
        if (rc != ENR_OK)
            return rc;
    }
    if ((*out = X509_NAME_dup(requested)) == NULL)
        return enr_error_openssl(err, ENR_E_NOMEM, "out of memory");
    return ENR_OK;
}

static enr_code add_ext(X509 *cert, int nid, void *value, int critical, enr_error *err)
{
    if (X509_add1_ext_i2d(cert, nid, value, critical, X509V3_ADD_DEFAULT) != 1)
        return enr_error_openssl(err, ENR_E_CRYPTO, "cannot add the %s extension", OBJ_nid2sn(nid));
    return ENR_OK;
}

/* CRL distribution point or AIA, through OpenSSL's config syntax (the URL
 * was checked for characters that syntax would read as separators). */
static enr_code add_url_extension(const enr_ca *ca, X509 *cert, int nid, const char *prefix,
                                  const char *url, enr_error *err)
{
    X509V3_CTX ctx;
    X509V3_set_ctx(&ctx, ca->cert, cert, NULL, NULL, 0);
    char value[1200];
    snprintf(value, sizeof value, "%s%s", prefix, url);
    X509_EXTENSION *ext = X509V3_EXT_nconf_nid(NULL, &ctx, nid, value);
    if (ext == NULL || !X509_add_ext(cert, ext, -1)) {
        X509_EXTENSION_free(ext);
        return enr_error_openssl(err, ENR_E_CRYPTO, "cannot add the %s extension", OBJ_nid2sn(nid));
    }
    X509_EXTENSION_free(ext);
    return ENR_OK;
}

static enr_code add_profile_extensions(enr_ca *ca, X509 *cert, const enr_profile *profile,
                                       long pathlen, GENERAL_NAMES *san, enr_error *err)
{
    enr_code rc;
    BASIC_CONSTRAINTS bc = {profile->is_ca ? 0xFF : 0, NULL};
    ASN1_INTEGER *pl = NULL;
    if (profile->is_ca && pathlen >= 0) {
        pl = ASN1_INTEGER_new();
        ASN1_INTEGER_set(pl, pathlen);
        bc.pathlen = pl;
    }
    rc = add_ext(cert, NID_basic_constraints, &bc, 1, err);
    ASN1_INTEGER_free(pl);
    if (rc != ENR_OK)
        return rc;

    ASN1_BIT_STRING *ku = ASN1_BIT_STRING_new();
    for (int bit = 0; ku && bit < 9; bit++)
        if (profile->key_usage & (bit < 8 ? (0x80u >> bit) : 0x8000u))
            ASN1_BIT_STRING_set_bit(ku, bit, 1);
    rc = ku ? add_ext(cert, NID_key_usage, ku, 1, err) : enr_error_set(err, ENR_E_NOMEM, "out of memory");
    ASN1_BIT_STRING_free(ku);
    if (rc != ENR_OK)
        return rc;

    if (profile->eku_count > 0) {
        EXTENDED_KEY_USAGE *eku = sk_ASN1_OBJECT_new_null();
        for (size_t i = 0; eku && i < profile->eku_count; i++)
            sk_ASN1_OBJECT_push(eku, OBJ_nid2obj(profile->eku_nids[i]));
        rc = eku ? add_ext(cert, NID_ext_key_usage, eku, 0, err) : enr_error_set(err, ENR_E_NOMEM, "out of memory");
        sk_ASN1_OBJECT_free(eku); /* static objects: nothing to free inside */
        if (rc != ENR_OK)
            return rc;
    }

    if (profile->ocsp_nocheck) {
        ASN1_NULL *nocheck = ASN1_NULL_new();
        rc = nocheck != NULL ? add_ext(cert, NID_id_pkix_OCSP_noCheck, nocheck, 0, err)
                             : enr_error_set(err, ENR_E_NOMEM, "out of memory");
        ASN1_NULL_free(nocheck);
        if (rc != ENR_OK)
            return rc;
    }

    ASN1_OCTET_STRING *ski = NULL;
    if ((rc = ca_key_identifier(X509_get_X509_PUBKEY(cert), &ski, err)) != ENR_OK)
        return rc;
    rc = add_ext(cert, NID_subject_key_identifier, ski, 0, err);
    ASN1_OCTET_STRING_free(ski);
    if (rc != ENR_OK)
        return rc;

    AUTHORITY_KEYID akid = {ca->key_id, NULL, NULL};
    if ((rc = add_ext(cert, NID_authority_key_identifier, &akid, 0, err)) != ENR_OK)
        return rc;

    if (san != NULL && (rc = add_ext(cert, NID_subject_alt_name, san,
                                     X509_NAME_entry_count(X509_get_subject_name(cert)) == 0, err)) != ENR_OK)
        return rc;

    const char *crl_url = profile->crl_url != NULL ? profile->crl_url : ca->crl_url;
    if (crl_url != NULL &&
        (rc = add_url_extension(ca, cert, NID_crl_distribution_points, "URI:", crl_url, err)) != ENR_OK)
        return rc;
    /* One AIA extension: the CA's caIssuers and the profile's OCSP responder. */
    if (ca->aia_url != NULL || profile->ocsp_url != NULL) {
        char aia[1100];
        snprintf(aia, sizeof aia, "%s%s%s%s%s", ca->aia_url != NULL ? "caIssuers;URI:" : "",
                 ca->aia_url != NULL ? ca->aia_url : "", ca->aia_url != NULL && profile->ocsp_url != NULL ? "," : "",
                 profile->ocsp_url != NULL ? "OCSP;URI:" : "", profile->ocsp_url != NULL ? profile->ocsp_url : "");
        if ((rc = add_url_extension(ca, cert, NID_info_access, "", aia, err)) != ENR_OK)
            return rc;
    }
    return ENR_OK;
}


static enr_code build_and_sign(enr_ca *ca, const enr_csr *csr, const enr_profile *profile,
                               time_t now, X509_NAME *subject, long pathlen, GENERAL_NAMES *san,
                               X509 **out, enr_error *err)
{
    X509 *cert = X509_new();
    ASN1_INTEGER *serial = NULL;
    enr_code rc = ENR_OK;
    if (cert == NULL)
        return enr_error_set(err, ENR_E_NOMEM, "out of memory");
    time_t not_before = enr_duration_apply(now, &profile->backdate, -1);
    time_t not_after = enr_duration_apply(now, &profile->validity, 1);
    time_t ca_not_after = enr_asn1_time_to_time_t(X509_get0_notAfter(ca->cert));
    if (ca_not_after != 0 && not_after > ca_not_after)
        not_after = ca_not_after; /* never outlive the issuer */
    if (not_after <= now)
        rc = enr_error_refuse(err, ENR_R_CA_EXPIRES, "this CA expires before the certificate could be valid");
    else if ((rc = ca_serial_new(ca, &serial, err)) != ENR_OK)
        ;
    else if (!X509_set_version(cert, X509_VERSION_3) || !X509_set_serialNumber(cert, serial) ||
             !X509_set_issuer_name(cert, X509_get_subject_name(ca->cert)) ||
             !X509_set_subject_name(cert, subject) ||
             !X509_time_adj_ex(X509_getm_notBefore(cert), 0, 0, &not_before) ||
             !X509_time_adj_ex(X509_getm_notAfter(cert), 0, 0, &not_after))
        rc = enr_error_openssl(err, ENR_E_CRYPTO, "cannot fill in the certificate");
    else if ((rc = enr_spki_copy(X509_get_X509_PUBKEY(cert),
                                 X509_REQ_get_X509_PUBKEY(enr_csr_x509_req(csr)), err)) != ENR_OK)
        ;
    else if ((rc = add_profile_extensions(ca, cert, profile, pathlen, san, err)) != ENR_OK)
        ;
    else
        rc = enr_signer_sign_cert(ca->signer, cert, ca->md, err);
    ASN1_INTEGER_free(serial);
    if (rc != ENR_OK) {
        X509_free(cert);
        return rc;
    }
    *out = cert;
    return ENR_OK;
}

/* Everything before the signature: proof of possession and the profile's
 * rules, giving the subject, SAN and path length to sign. */
typedef struct issue_plan {
    X509_NAME *subject;
    GENERAL_NAMES *san;
    long pathlen;
} issue_plan;

static void issue_plan_free(issue_plan *plan)
{
    X509_NAME_free(plan->subject);
    GENERAL_NAMES_free(plan->san);
}

static enr_code plan_issue(enr_ca *ca, const enr_csr *csr, const enr_profile *profile, issue_plan *plan,
                           enr_error *err)
{
    *plan = (issue_plan){NULL, NULL, -1};
    if (ca->signer == NULL)
        return enr_error_set(err, ENR_E_USAGE, "the CA was opened without its key; it cannot issue");
    const char *hash = NULL;
    long requested_pathlen = -1;
    enr_code rc = enr_csr_verify(csr, err);
    if (rc != ENR_OK) {
        enr_error_prefix(err, "refused: proof of possession failed");
        return ENR_E_VERIFY;
    }
    if (weak_signature_hash(X509_REQ_get_signature_nid(enr_csr_x509_req(csr)), &hash))
        return enr_error_refuse(err, ENR_R_SIGNATURE_ALGORITHM, "the request is signed with %s; requests must use "
                                                "SHA-256 or better", hash);
    if ((rc = check_key(csr, profile, err)) != ENR_OK)
        return rc;
    if ((rc = check_requested_extensions(csr, profile, &requested_pathlen, &plan->san, err)) != ENR_OK)
        goto fail;
    if (profile->is_ca) {
        if (ca->pathlen == 0) {
            rc = enr_error_refuse(err, ENR_R_EXTENSION_NOT_ALLOWED,
                                  "this CA has pathlen 0: it may not issue CA certificates");
            goto fail;
        }
        plan->pathlen = ca->pathlen > 0 ? ca->pathlen - 1 : -1;
        if (requested_pathlen >= 0 && (plan->pathlen < 0 || requested_pathlen < plan->pathlen))
            plan->pathlen = requested_pathlen;
    }
    if ((rc = subject_for(csr, profile, plan->san != NULL, &plan->subject, err)) != ENR_OK)
        goto fail;
    return ENR_OK;
fail:
    issue_plan_free(plan);
    *plan = (issue_plan){NULL, NULL, -1};
    return rc;
}

/* A serial this process drew is never drawn again by it. */
static enr_code remember_serial(enr_ca *ca, X509 *cert, enr_error *err)
{
    const ASN1_INTEGER *serial = X509_get0_serialNumber(cert);
    return serial_set_add(&ca->serials, ASN1_STRING_get0_data(serial), (size_t)ASN1_STRING_length(serial), err);
}

enr_code enr_ca_sign(enr_ca *ca, const enr_csr *csr, const enr_profile *profile, time_t now, X509 **out,
                     enr_error *err)
{
    *out = NULL;
    issue_plan plan;
    enr_code rc = plan_issue(ca, csr, profile, &plan, err);
    X509 *cert = NULL;
    if (rc == ENR_OK)
        rc = build_and_sign(ca, csr, profile, now != 0 ? now : time(NULL), plan.subject, plan.pathlen, plan.san,
                            &cert, err);
    if (rc == ENR_OK && (rc = remember_serial(ca, cert, err)) == ENR_OK) {
        *out = cert;
        cert = NULL;
    }
    X509_free(cert);
    issue_plan_free(&plan);
    return rc;
}

enr_code enr_ca_issue(enr_ca *ca, const enr_csr *csr, const enr_profile *profile, time_t now,
                      X509 **out, enr_error *err)
{
    *out = NULL;
    if (now == 0)
        now = time(NULL);
    issue_plan plan;
    enr_code rc = plan_issue(ca, csr, profile, &plan, err);
    if (rc != ENR_OK)
        return rc;
    X509 *cert = NULL;
    if ((rc = ca_index_lock(ca, err)) == ENR_OK && (rc = ca_index_catch_up(ca, err)) == ENR_OK) {
        /* The index refuses a serial it holds (another process drew it):
         * draw again, a few times. */
        for (int attempt = 0; attempt < 3; attempt++) {
            if ((rc = build_and_sign(ca, csr, profile, now, plan.subject, plan.pathlen, plan.san, &cert, err)) != ENR_OK)
                break;
            rc = ca_index_record(ca, cert, profile->name, err);
            if (rc == ENR_OK) {
                rc = remember_serial(ca, cert, err);
                break;
            }
            X509_free(cert);
            cert = NULL;
            if (rc != ENR_E_EXISTS)
                break;
        }
    }
    ca_index_unlock(ca);
    if (rc == ENR_OK) {
        *out = cert;
        cert = NULL;
    }
    X509_free(cert);
    issue_plan_free(&plan);
    return rc;
}
