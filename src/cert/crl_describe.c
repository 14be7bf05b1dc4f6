/* CRLs described (JSON, and text rendered from it so the two never
 * disagree), and the RFC 5280 CRLReason names: every CRL reader and writer
 * (the CA, `crl show`, `ca list`) spells a reason from here. */
#include <openssl/bn.h>
#include <openssl/x509v3.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "cert/cert_internal.h"
#include "core/describe.h"
#include "enroll/cert.h"
#include "enroll/name.h"

static const char *REASONS[] = {
    "unspecified", "keyCompromise", "cACompromise", "affiliationChanged", "superseded",
    "cessationOfOperation", "certificateHold", NULL /* 7 is unused */, "removeFromCRL",
    "privilegeWithdrawn", "aACompromise",
};

enr_code enr_revocation_reason_parse(const char *name, int *out, enr_error *err)
{
    for (int i = 0; i < (int)(sizeof REASONS / sizeof REASONS[0]); i++)
        if (REASONS[i] != NULL && i != 8 && strcasecmp(name, REASONS[i]) == 0) {
            *out = i;
            return ENR_OK;
        }
    return enr_error_set(err, ENR_E_USAGE,
                         "unknown revocation reason '%s' (unspecified, keyCompromise, cACompromise, "
                         "affiliationChanged, superseded, cessationOfOperation, certificateHold, "
                         "privilegeWithdrawn, aACompromise)",
                         name);
}

const char *enr_revocation_reason_name(int reason)
{
    if (reason < 0 || reason >= (int)(sizeof REASONS / sizeof REASONS[0]) || REASONS[reason] == NULL)
        return "unspecified";
    return REASONS[reason];
}

static json_t *time_or_null(const ASN1_TIME *t)
{
    char text[ENR_RFC3339_MAX];
    return t != NULL && enr_asn1_time_rfc3339(t, text) ? json_string(text) : json_null();
}

/* The CRL number in decimal (it may exceed 64 bits), or null. */
static json_t *crl_number_json(const X509_CRL *crl)
{
    ASN1_INTEGER *number = X509_CRL_get_ext_d2i(crl, NID_crl_number, NULL, NULL);
    BIGNUM *bn = number ? ASN1_INTEGER_to_BN(number, NULL) : NULL;
    char *dec = bn ? BN_bn2dec(bn) : NULL;
    json_t *j = dec ? json_string(dec) : json_null();
    OPENSSL_free(dec);
    BN_free(bn);
    ASN1_INTEGER_free(number);
    return j ? j : json_null();
}

static json_t *entry_json(const X509_REVOKED *r)
{
    json_t *o = json_object();
    json_object_set_new(o, "serial", enr_describe_owned_string(enr_serial_hex(X509_REVOKED_get0_serialNumber(r))));
    json_object_set_new(o, "revoked_at", time_or_null(X509_REVOKED_get0_revocationDate(r)));
    int crit = 0;
    ASN1_ENUMERATED *reason = X509_REVOKED_get_ext_d2i(r, NID_crl_reason, &crit, NULL);
    /* No reasonCode extension means unspecified (RFC 5280 5.3.1). */
    json_object_set_new(o, "reason",
                        json_string(enr_revocation_reason_name(reason ? (int)ASN1_ENUMERATED_get(reason) : 0)));
    ASN1_ENUMERATED_free(reason);
    return o;
}

static json_t *describe(X509_CRL *crl)
{
    json_t *root = json_object();
    if (root == NULL)
        return NULL;
    json_object_set_new(root, "version", json_integer(X509_CRL_get_version(crl) + 1));
    json_object_set_new(root, "issuer", enr_describe_owned_string(enr_name_format(X509_CRL_get_issuer(crl))));
    json_object_set_new(root, "crl_number", crl_number_json(crl));
    json_object_set_new(root, "this_update", time_or_null(X509_CRL_get0_lastUpdate(crl)));
    json_object_set_new(root, "next_update", time_or_null(X509_CRL_get0_nextUpdate(crl)));
    const X509_ALGOR *alg = NULL;
    X509_CRL_get0_signature(crl, NULL, &alg);
    json_object_set_new(root, "signature_algorithm", enr_describe_algorithm(alg));
    STACK_OF(X509_REVOKED) *revoked = X509_CRL_get_REVOKED(crl);
    json_t *entries = json_array();
    for (int i = 0; i < sk_X509_REVOKED_num(revoked); i++)
        json_array_append_new(entries, entry_json(sk_X509_REVOKED_value(revoked, i)));
    json_object_set_new(root, "entry_count", json_integer(sk_X509_REVOKED_num(revoked)));
    json_object_set_new(root, "entries", entries);
    json_object_set_new(root, "extensions", enr_describe_cert_extensions(X509_CRL_get0_extensions(crl)));
    return root;
}

enr_code enr_crl_describe_json(X509_CRL *crl, char **out, enr_error *err)
{
    *out = NULL;
    json_t *root = describe(crl);
    if (root == NULL)
        return enr_error_set(err, ENR_E_NOMEM, "out of memory");
    enr_code rc = enr_describe_dump(root, out, err);
    json_decref(root);
    return rc;
}

enr_code enr_crl_describe_text(X509_CRL *crl, char **out, enr_error *err)
{
    *out = NULL;
    json_t *root = describe(crl);
    BIO *bio = BIO_new(BIO_s_mem());
    if (root == NULL || bio == NULL) {
        json_decref(root);
        BIO_free(bio);
        return enr_error_set(err, ENR_E_NOMEM, "out of memory");
    }
    BIO_printf(bio, "Certificate Revocation List (v%lld):\n",
               (long long)json_integer_value(json_object_get(root, "version")));
    BIO_printf(bio, "    Issuer: %s\n", enr_describe_text_of(root, "issuer", "(none)"));
    BIO_printf(bio, "    CRL Number: %s\n", enr_describe_text_of(root, "crl_number", "(none)"));
    BIO_printf(bio, "    This Update: %s\n", enr_describe_text_of(root, "this_update", "(unreadable)"));
    BIO_printf(bio, "    Next Update: %s\n", enr_describe_text_of(root, "next_update", "(none)"));
    BIO_printf(bio, "    Signature Algorithm: %s\n", enr_describe_text_of(root, "signature_algorithm", "unknown"));
    json_t *entries = json_object_get(root, "entries");
    BIO_printf(bio, "    Revoked Certificates: %zu\n", json_array_size(entries));
    size_t i;
    json_t *e;
    json_array_foreach(entries, i, e)
        BIO_printf(bio, "        %s  %s  %s\n", enr_describe_text_of(e, "serial", "?"), enr_describe_text_of(e, "revoked_at", "?"),
                   enr_describe_text_of(e, "reason", "unspecified"));
    json_t *exts = json_object_get(root, "extensions");
    if (json_array_size(exts) > 0) {
        BIO_printf(bio, "    Extensions:\n");
        enr_describe_extensions_text(exts, bio, 8);
    }
    char *data = NULL;
    long n = BIO_get_mem_data(bio, &data);
    *out = n >= 0 ? malloc((size_t)n + 1) : NULL;
    if (*out != NULL) {
        memcpy(*out, data, (size_t)n);
        (*out)[n] = '\0';
    }
    BIO_free(bio);
    json_decref(root);
    return *out != NULL ? ENR_OK : enr_error_set(err, ENR_E_NOMEM, "out of memory");
}
