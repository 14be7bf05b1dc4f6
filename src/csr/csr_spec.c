#include <openssl/crypto.h>
#include <openssl/err.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "csr/csr_internal.h"
#include "enroll/name.h"

enr_csr_spec *enr_csr_spec_new(void)
{
    enr_csr_spec *spec = calloc(1, sizeof *spec);
    if (spec == NULL)
        return NULL;
    spec->pathlen = -1;
    spec->md = EVP_sha256();
    return spec;
}

void enr_csr_spec_free(enr_csr_spec *spec)
{
    if (spec == NULL)
        return;
    X509_NAME_free(spec->subject);
    GENERAL_NAMES_free(spec->san);
    ASN1_BIT_STRING_free(spec->key_usage);
    EXTENDED_KEY_USAGE_free(spec->ext_key_usage);
    if (spec->challenge_password != NULL) {
        OPENSSL_cleanse(spec->challenge_password, strlen(spec->challenge_password));
        free(spec->challenge_password);
    }
    free(spec);
}

enr_code enr_csr_spec_set_subject(enr_csr_spec *spec, const char *subject, enr_error *err)
{
    X509_NAME *name;
    enr_code rc = enr_name_parse(subject, &name, err);
    if (rc != ENR_OK)
        return rc;
    X509_NAME_free(spec->subject);
    spec->subject = name;
    return ENR_OK;
}

enr_code enr_csr_spec_add_dn(enr_csr_spec *spec, const char *field_eq_value, enr_error *err)
{
    if (spec->subject == NULL && (spec->subject = X509_NAME_new()) == NULL)
        return enr_error_set(err, ENR_E_NOMEM, "out of memory");
    enr_code rc = enr_name_add_field(spec->subject, field_eq_value, err);
    if (rc != ENR_OK)
        enr_error_prefix(err, "--dn");
    return rc;
}

/* Calls `fn` for each comma-separated, non-empty item of `list`. */
static enr_code each_item(const char *list, const char *what,
                          enr_code (*fn)(enr_csr_spec *, const char *, enr_error *),
                          enr_csr_spec *spec, enr_error *err)
{
    char *copy = strdup(list);
    if (copy == NULL)
        return enr_error_set(err, ENR_E_NOMEM, "out of memory");
    enr_code rc = ENR_OK;
    char *save = NULL;
    int count = 0;
    for (char *item = strtok_r(copy, ",", &save); item != NULL; item = strtok_r(NULL, ",", &save)) {
        while (*item == ' ')
            item++;
        if (*item == '\0')
            continue;
        count++;
        if ((rc = fn(spec, item, err)) != ENR_OK)
            break;
    }
    free(copy);
    if (rc == ENR_OK && count == 0)
        rc = enr_error_set(err, ENR_E_USAGE, "%s: the list is empty", what);
    return rc;
}

static enr_code add_one_san(enr_csr_spec *spec, const char *item, enr_error *err)
{
    const char *colon = strchr(item, ':');
    if (colon == NULL || colon[1] == '\0')
        return enr_error_set(err, ENR_E_USAGE,
                             "--san '%s': expected TYPE:value with TYPE one of DNS, IP, URI, email",
                             item);
    size_t tlen = (size_t)(colon - item);
    const char *value = colon + 1;
    GENERAL_NAME *gn = GENERAL_NAME_new();
    if (gn == NULL)
        return enr_error_set(err, ENR_E_NOMEM, "out of memory");
    enr_code rc = ENR_OK;
    if (tlen == 3 && strncasecmp(item, "DNS", 3) == 0) {
        if (!enr_dns_name_valid(value, true)) {
            rc = enr_error_set(err, ENR_E_USAGE,
                               "--san DNS:%s is not a valid DNS name (letters, digits and '-' in "
                               "dot-separated labels of 1-63 characters)",
                               value);
            goto fail;
        }
        ASN1_IA5STRING *s = ASN1_IA5STRING_new();
        if (s == NULL || !ASN1_STRING_set(s, value, -1)) {
            ASN1_IA5STRING_free(s);
            rc = enr_error_set(err, ENR_E_NOMEM, "out of memory");
            goto fail;
        }
        GENERAL_NAME_set0_value(gn, GEN_DNS, s);
    } else if (tlen == 2 && strncasecmp(item, "IP", 2) == 0) {
        ASN1_OCTET_STRING *ip = a2i_IPADDRESS(value);
        if (ip == NULL) {
            ERR_clear_error();
            rc = enr_error_set(err, ENR_E_USAGE, "--san IP:%s is not an IPv4 or IPv6 address", value);
            goto fail;
        }
        GENERAL_NAME_set0_value(gn, GEN_IPADD, ip);
    } else if ((tlen == 3 && strncasecmp(item, "URI", 3) == 0) ||
               (tlen == 5 && strncasecmp(item, "email", 5) == 0)) {
        bool uri = tlen == 3;
        for (const char *p = value; *p; p++)
            if ((unsigned char)*p >= 0x80 || (unsigned char)*p <= 0x20) {
                rc = enr_error_set(err, ENR_E_USAGE, "--san %s: must be ASCII without spaces", item);
                goto fail;
            }
        if (uri ? strchr(value, ':') == NULL : strchr(value, '@') == NULL) {
            rc = enr_error_set(err, ENR_E_USAGE, uri ? "--san %s: a URI needs a scheme (like urn: or https:)"
                                                     : "--san %s: an email address needs an '@'",
                               item);
            goto fail;
        }
        ASN1_IA5STRING *s = ASN1_IA5STRING_new();
        if (s == NULL || !ASN1_STRING_set(s, value, -1)) {
            ASN1_IA5STRING_free(s);
            rc = enr_error_set(err, ENR_E_NOMEM, "out of memory");
            goto fail;
        }
        GENERAL_NAME_set0_value(gn, uri ? GEN_URI : GEN_EMAIL, s);
    } else {
        rc = enr_error_set(err, ENR_E_USAGE, "--san '%.*s:': unknown type (use DNS, IP, URI or email)",
                           (int)tlen, item);
        goto fail;
    }
    if (spec->san == NULL && (spec->san = GENERAL_NAMES_new()) == NULL) {
        rc = enr_error_set(err, ENR_E_NOMEM, "out of memory");
        goto fail;
    }
    if (!sk_GENERAL_NAME_push(spec->san, gn)) {
        rc = enr_error_set(err, ENR_E_NOMEM, "out of memory");
        goto fail;
    }
    return ENR_OK;
fail:
    GENERAL_NAME_free(gn);
    return rc;
}

enr_code enr_csr_spec_add_san(enr_csr_spec *spec, const char *list, enr_error *err)
{
    return each_item(list, "--san", add_one_san, spec, err);
}

static const struct {
    const char *name;
    int bit;
} KEY_USAGE_BITS[] = {
    {"digitalSignature", 0}, {"nonRepudiation", 1}, {"contentCommitment", 1},
    {"keyEncipherment", 2},  {"dataEncipherment", 3}, {"keyAgreement", 4},
    {"keyCertSign", 5},      {"cRLSign", 6},        {"encipherOnly", 7},
    {"decipherOnly", 8},
};

static enr_code add_one_key_usage(enr_csr_spec *spec, const char *item, enr_error *err)
{
    for (size_t i = 0; i < sizeof KEY_USAGE_BITS / sizeof KEY_USAGE_BITS[0]; i++)
        if (strcasecmp(item, KEY_USAGE_BITS[i].name) == 0) {
            if (!ASN1_BIT_STRING_set_bit(spec->key_usage, KEY_USAGE_BITS[i].bit, 1))
                return enr_error_set(err, ENR_E_NOMEM, "out of memory");
            return ENR_OK;
        }
    return enr_error_set(err, ENR_E_USAGE,
                         "--ku '%s': unknown key usage (digitalSignature, nonRepudiation, "
                         "keyEncipherment, dataEncipherment, keyAgreement, keyCertSign, cRLSign, "
                         "encipherOnly, decipherOnly)",
                         item);
}

enr_code enr_csr_spec_set_key_usage(enr_csr_spec *spec, const char *list, enr_error *err)
{
    ASN1_BIT_STRING_free(spec->key_usage);
    if ((spec->key_usage = ASN1_BIT_STRING_new()) == NULL)
        return enr_error_set(err, ENR_E_NOMEM, "out of memory");
    return each_item(list, "--ku", add_one_key_usage, spec, err);
}

static const struct {
    const char *name;
    int nid;
} EKU_NAMES[] = {
    {"clientAuth", NID_client_auth},       {"serverAuth", NID_server_auth},
    {"codeSigning", NID_code_sign},        {"emailProtection", NID_email_protect},
    {"timeStamping", NID_time_stamp},      {"OCSPSigning", NID_OCSP_sign},
};

static enr_code add_one_eku(enr_csr_spec *spec, const char *item, enr_error *err)
{
    ASN1_OBJECT *obj = NULL;
    for (size_t i = 0; i < sizeof EKU_NAMES / sizeof EKU_NAMES[0]; i++)
        if (strcasecmp(item, EKU_NAMES[i].name) == 0)
            obj = OBJ_nid2obj(EKU_NAMES[i].nid);
    if (obj == NULL && item[0] >= '0' && item[0] <= '9')
        obj = OBJ_txt2obj(item, 1);
    if (obj == NULL) {
        ERR_clear_error();
        return enr_error_set(err, ENR_E_USAGE,
                             "--eku '%s': unknown purpose (clientAuth, serverAuth, codeSigning, "
                             "emailProtection, timeStamping, OCSPSigning, or a dotted OID)",
                             item);
    }
    if (!sk_ASN1_OBJECT_push(spec->ext_key_usage, obj)) {
        ASN1_OBJECT_free(obj);
        return enr_error_set(err, ENR_E_NOMEM, "out of memory");
    }
    return ENR_OK;
}

enr_code enr_csr_spec_set_ext_key_usage(enr_csr_spec *spec, const char *list, enr_error *err)
{
    EXTENDED_KEY_USAGE_free(spec->ext_key_usage);
    if ((spec->ext_key_usage = EXTENDED_KEY_USAGE_new()) == NULL)
        return enr_error_set(err, ENR_E_NOMEM, "out of memory");
    return each_item(list, "--eku", add_one_eku, spec, err);
}

enr_code enr_csr_spec_set_ca(enr_csr_spec *spec, int pathlen, enr_error *err)
{
    if (pathlen > 32)
        return enr_error_set(err, ENR_E_USAGE, "--pathlen %d is implausibly deep (at most 32)", pathlen);
    spec->is_ca = 1;
    spec->pathlen = pathlen < 0 ? -1 : pathlen;
    return ENR_OK;
}

enr_code enr_csr_spec_set_challenge_password(enr_csr_spec *spec, const char *password,
                                             enr_error *err)
{
    size_t len = strlen(password);
    if (len == 0 || len > 255 || enr_utf8_chars((const unsigned char *)password, len) < 0)
        return enr_error_set(err, ENR_E_USAGE,
                             "challenge password must be 1 to 255 characters of UTF-8");
    char *copy = strdup(password);
    if (copy == NULL)
        return enr_error_set(err, ENR_E_NOMEM, "out of memory");
    if (spec->challenge_password != NULL) {
        OPENSSL_cleanse(spec->challenge_password, strlen(spec->challenge_password));
        free(spec->challenge_password);
    }
    spec->challenge_password = copy;
    return ENR_OK;
}

enr_code enr_csr_spec_set_hash(enr_csr_spec *spec, const char *name, enr_error *err)
{
    if (strcasecmp(name, "sha256") == 0)
        spec->md = EVP_sha256();
    else if (strcasecmp(name, "sha384") == 0)
        spec->md = EVP_sha384();
    else if (strcasecmp(name, "sha512") == 0)
        spec->md = EVP_sha512();
    else
        return enr_error_set(err, ENR_E_USAGE, "--hash '%s': choose sha256, sha384 or sha512", name);
    return ENR_OK;
}
