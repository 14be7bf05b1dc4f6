#include "enroll/pubkey.h"

#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/obj_mac.h>
#include <openssl/x509.h>
#include <stdio.h>
#include <string.h>

static void curve_display_name(const char *group, char *out, size_t cap)
{
    if (strcmp(group, "prime256v1") == 0 || strcmp(group, "P-256") == 0)
        snprintf(out, cap, "P-256");
    else if (strcmp(group, "secp384r1") == 0 || strcmp(group, "P-384") == 0)
        snprintf(out, cap, "P-384");
    else if (strcmp(group, "secp521r1") == 0 || strcmp(group, "P-521") == 0)
        snprintf(out, cap, "P-521");
    else
        snprintf(out, cap, "%s", group);
}

enr_code enr_pubkey_describe(const EVP_PKEY *key, enr_pubkey_info *out, enr_error *err)
{
    memset(out, 0, sizeof *out);
    int id = EVP_PKEY_get_base_id(key);
    out->bits = EVP_PKEY_get_bits(key);
    switch (id) {
    case EVP_PKEY_RSA: {
        snprintf(out->algorithm, sizeof out->algorithm, "RSA");
        BIGNUM *e = NULL;
        if (EVP_PKEY_get_bn_param(key, OSSL_PKEY_PARAM_RSA_E, &e) && BN_num_bits(e) <= 63)
            out->rsa_exponent = (unsigned long)BN_get_word(e);
        BN_free(e);
        break;
    }
    case EVP_PKEY_EC: {
        snprintf(out->algorithm, sizeof out->algorithm, "EC");
        char group[64] = "";
        if (EVP_PKEY_get_utf8_string_param(key, OSSL_PKEY_PARAM_GROUP_NAME, group, sizeof group,
                                           NULL))
            curve_display_name(group, out->curve, sizeof out->curve);
        else
            snprintf(out->curve, sizeof out->curve, "explicit-parameters");
        break;
    }
    case EVP_PKEY_ED25519:
        snprintf(out->algorithm, sizeof out->algorithm, "Ed25519");
        break;
    case EVP_PKEY_ED448:
        snprintf(out->algorithm, sizeof out->algorithm, "Ed448");
        break;
    default: {
        const char *name = EVP_PKEY_get0_type_name(key);
        snprintf(out->algorithm, sizeof out->algorithm, "%s", name ? name : "unknown");
        break;
    }
    }
    ERR_clear_error();

    unsigned char *spki = NULL;
    int n = i2d_PUBKEY((EVP_PKEY *)key, &spki);
    if (n <= 0)
        return enr_error_openssl(err, ENR_E_CRYPTO, "cannot encode the public key");
    unsigned int md_len = 0;
    int ok = EVP_Digest(spki, (size_t)n, out->spki_sha256, &md_len, EVP_sha256(), NULL);
    OPENSSL_free(spki);
    if (!ok)
        return enr_error_openssl(err, ENR_E_CRYPTO, "cannot hash the public key");
    for (size_t i = 0; i < 32; i++)
        snprintf(out->spki_sha256_hex + 2 * i, 3, "%02x", out->spki_sha256[i]);
    return ENR_OK;
}

const char *enr_pubkey_type_name(const enr_pubkey_info *info)
{
    if (strcmp(info->algorithm, "EC") == 0) {
        if (strcmp(info->curve, "P-256") == 0)
            return "ec-p256";
        if (strcmp(info->curve, "P-384") == 0)
            return "ec-p384";
        return NULL;
    }
    if (strcmp(info->algorithm, "RSA") == 0) {
        switch (info->bits) {
        case 2048: return "rsa-2048";
        case 3072: return "rsa-3072";
        case 4096: return "rsa-4096";
        default: return NULL;
        }
    }
    if (strcmp(info->algorithm, "Ed25519") == 0)
        return "ed25519";
    return NULL;
}

bool enr_pubkey_equal(const EVP_PKEY *a, const EVP_PKEY *b)
{
    unsigned char *da = NULL, *db = NULL;
    int na = i2d_PUBKEY((EVP_PKEY *)a, &da);
    int nb = i2d_PUBKEY((EVP_PKEY *)b, &db);
    bool same = na > 0 && na == nb && memcmp(da, db, (size_t)na) == 0;
    OPENSSL_free(da);
    OPENSSL_free(db);
    ERR_clear_error();
    return same;
}

enr_code enr_spki_copy(X509_PUBKEY *dst, const X509_PUBKEY *src, enr_error *err)
{
    ASN1_OBJECT *key_oid = NULL;
    const unsigned char *key_bytes = NULL;
    int key_len = 0;
    X509_ALGOR *alg = NULL;
    if (!X509_PUBKEY_get0_param(&key_oid, &key_bytes, &key_len, &alg, src))
        return enr_error_openssl(err, ENR_E_CRYPTO, "cannot read the public key fields");
    const ASN1_OBJECT *alg_oid = NULL;
    int param_type = V_ASN1_UNDEF;
    const void *param = NULL;
    X509_ALGOR_get0(&alg_oid, &param_type, &param, alg);
    void *param_copy = NULL;
    if (param_type == V_ASN1_OBJECT)
        param_copy = OBJ_dup(param);
    else if (param_type == V_ASN1_SEQUENCE)
        param_copy = ASN1_STRING_dup(param);
    else if (param_type != V_ASN1_NULL && param_type != V_ASN1_UNDEF)
        return enr_error_set(err, ENR_E_UNSUPPORTED, "unexpected public key parameters (type %d)",
                             param_type);
    unsigned char *bytes = OPENSSL_memdup(key_bytes, (size_t)key_len);
    ASN1_OBJECT *oid = OBJ_dup(alg_oid);
    bool need_param = param_type == V_ASN1_OBJECT || param_type == V_ASN1_SEQUENCE;
    if (bytes == NULL || oid == NULL || (need_param && param_copy == NULL) ||
        !X509_PUBKEY_set0_param(dst, oid, param_type, param_copy, bytes, key_len)) {
        OPENSSL_free(bytes);
        ASN1_OBJECT_free(oid);
        if (param_type == V_ASN1_OBJECT)
            ASN1_OBJECT_free(param_copy);
        else
            ASN1_STRING_free(param_copy);
        return enr_error_openssl(err, ENR_E_CRYPTO, "cannot copy the public key");
    }
    return ENR_OK;
}

enr_code enr_spki_sha256_hex(const X509_PUBKEY *spki, char out[65], enr_error *err)
{
    unsigned char *der = NULL;
    int n = i2d_X509_PUBKEY(spki, &der);
    unsigned char md[32];
    unsigned int md_len = 0;
    int ok = n > 0 && EVP_Digest(der, (size_t)n, md, &md_len, EVP_sha256(), NULL);
    OPENSSL_free(der);
    if (!ok)
        return enr_error_openssl(err, ENR_E_CRYPTO, "cannot hash the public key");
    for (size_t i = 0; i < 32; i++)
        snprintf(out + 2 * i, 3, "%02x", md[i]);
    return ENR_OK;
}
