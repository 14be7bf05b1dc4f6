#include "enroll/pubkey.h"

#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/param_build.h>
#include <openssl/err.h>
#include <openssl/obj_mac.h>
#include <openssl/x509.h>
#include <stdio.h>
#include <string.h>

#include "core/hex.h"

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

enr_code enr_pubkey_classify(const EVP_PKEY *key, enr_pubkey_info *out, enr_error *err)
{
    (void)err;
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

    return ENR_OK;
}

enr_code enr_pubkey_describe(const EVP_PKEY *key, enr_pubkey_info *out, enr_error *err)
{
    enr_code rc = enr_pubkey_classify(key, out, err);
    if (rc != ENR_OK)
        return rc;
    unsigned char *spki = NULL;
    int n = i2d_PUBKEY((EVP_PKEY *)key, &spki);
    if (n <= 0)
        return enr_error_openssl(err, ENR_E_CRYPTO, "cannot encode the public key");
    unsigned int md_len = 0;
    int ok = EVP_Digest(spki, (size_t)n, out->spki_sha256, &md_len, EVP_sha256(), NULL);
    OPENSSL_free(spki);
    if (!ok)
        return enr_error_openssl(err, ENR_E_CRYPTO, "cannot hash the public key");
    enr_hex_lower(out->spki_sha256, sizeof out->spki_sha256, out->spki_sha256_hex);
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
    enr_hex_lower(md, sizeof md, out);
    return ENR_OK;
}

/* Importing an EC key builds its curve group from the name, which costs
 * about as much as a third of a signature verification. For P-256 and P-384
 * we instead copy a template key (its public point is the curve's generator)
 * and replace the point. The templates are made once and never changed. */
static EVP_PKEY *ec_templates[2];
static CRYPTO_ONCE ec_templates_once = CRYPTO_ONCE_STATIC_INIT;

static EVP_PKEY *ec_key_from_point(const char *group, const unsigned char *point, size_t len)
{
    OSSL_PARAM params[] = {
        OSSL_PARAM_construct_utf8_string(OSSL_PKEY_PARAM_GROUP_NAME, (char *)group, 0),
        OSSL_PARAM_construct_octet_string(OSSL_PKEY_PARAM_PUB_KEY, (void *)point, len),
        OSSL_PARAM_construct_end(),
    };
    EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new_from_name(NULL, "EC", NULL);
    EVP_PKEY *key = NULL;
    if (ctx == NULL || EVP_PKEY_fromdata_init(ctx) != 1 ||
        EVP_PKEY_fromdata(ctx, &key, EVP_PKEY_PUBLIC_KEY, params) != 1)
        key = NULL;
    EVP_PKEY_CTX_free(ctx);
    return key;
}

static void ec_templates_init(void)
{
    static const int NIDS[2] = {NID_X9_62_prime256v1, NID_secp384r1};
    for (int i = 0; i < 2; i++) {
        EC_GROUP *g = EC_GROUP_new_by_curve_name(NIDS[i]);
        unsigned char gen[160];
        size_t n = g ? EC_POINT_point2oct(g, EC_GROUP_get0_generator(g), POINT_CONVERSION_UNCOMPRESSED,
                                          gen, sizeof gen, NULL)
                     : 0;
        ec_templates[i] = n > 0 ? ec_key_from_point(OBJ_nid2sn(NIDS[i]), gen, n) : NULL;
        EC_GROUP_free(g);
    }
    ERR_clear_error();
}

static EVP_PKEY *ec_key_from_template(int curve_nid, const unsigned char *point, size_t len)
{
    int i = curve_nid == NID_X9_62_prime256v1 ? 0 : curve_nid == NID_secp384r1 ? 1 : -1;
    if (i < 0 || !CRYPTO_THREAD_run_once(&ec_templates_once, ec_templates_init) || ec_templates[i] == NULL)
        return NULL;
    EVP_PKEY *key = EVP_PKEY_dup(ec_templates[i]);
    if (key != NULL && EVP_PKEY_set1_encoded_public_key(key, point, len) != 1) {
        EVP_PKEY_free(key);
        key = NULL;
    }
    return key;
}

static enr_code pubkey_from_ec_fields(const unsigned char *point, int point_len, const ASN1_OBJECT *curve,
                                      EVP_PKEY **out, enr_error *err)
{
    int nid = OBJ_obj2nid(curve);
    const char *group = nid != NID_undef ? OBJ_nid2sn(nid) : NULL;
    if (group == NULL)
        return enr_error_set(err, ENR_E_UNSUPPORTED, "unknown EC curve");
    /* The point at infinity (SEC1 encodes it as the single byte 00) imports
     * fine, and every ECDSA "signature" verifies with it: a proof of
     * possession forged without any private key. Every other encoding starts
     * with 02, 03 or 04, and importing it checks the point is on the curve. */
    if (point_len < 2 || (point[0] != 0x02 && point[0] != 0x03 && point[0] != 0x04))
        return enr_error_set(err, ENR_E_PARSE, "the EC public key is not a point on %s (%s)", group,
                             point_len >= 1 && point[0] == 0x00 ? "it is the point at infinity"
                                                                 : "unknown point encoding");
    EVP_PKEY *key = ec_key_from_template(nid, point, (size_t)point_len);
    if (key == NULL)
        key = ec_key_from_point(group, point, (size_t)point_len);
    if (key == NULL)
        return enr_error_openssl(err, ENR_E_PARSE, "the EC public key is not a point on %s", group);
    ERR_clear_error();
    *out = key;
    return ENR_OK;
}

enr_code enr_pubkey_from_spki(const X509_PUBKEY *spki, EVP_PKEY **out, enr_error *err)
{
    *out = NULL;
    ASN1_OBJECT *alg_oid = NULL;
    const unsigned char *key = NULL;
    int key_len = 0;
    X509_ALGOR *alg = NULL;
    if (!X509_PUBKEY_get0_param(&alg_oid, &key, &key_len, &alg, spki))
        return enr_error_openssl(err, ENR_E_PARSE, "cannot read the public key");
    int nid = OBJ_obj2nid(alg_oid);
    if (nid == NID_X9_62_id_ecPublicKey) {
        int param_type = V_ASN1_UNDEF;
        const void *param = NULL;
        X509_ALGOR_get0(NULL, &param_type, &param, alg);
        if (param_type == V_ASN1_OBJECT)
            return pubkey_from_ec_fields(key, key_len, param, out, err);
        /* explicit curve parameters: let the generic decoder judge them */
    } else if (nid == NID_ED25519) {
        EVP_PKEY *k = EVP_PKEY_new_raw_public_key_ex(NULL, "ED25519", NULL, key, (size_t)key_len);
        if (k == NULL)
            return enr_error_openssl(err, ENR_E_PARSE, "the Ed25519 public key is malformed");
        *out = k;
        return ENR_OK;
    }
    unsigned char *der = NULL;
    int n = i2d_X509_PUBKEY(spki, &der);
    const unsigned char *p = der;
    EVP_PKEY *k = n > 0 ? d2i_PUBKEY(NULL, &p, n) : NULL;
    OPENSSL_free(der);
    if (k == NULL)
        return enr_error_openssl(err, ENR_E_PARSE, "the public key cannot be decoded");
    *out = k;
    return ENR_OK;
}
