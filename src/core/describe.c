#include "core/describe.h"

#include <arpa/inet.h>
#include <sys/socket.h>

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/x509v3.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "core/hex.h"
#include "enroll/name.h"
#include "enroll/pubkey.h"

static json_t *oid_string(const ASN1_OBJECT *obj)
{
    char buf[128];
    OBJ_obj2txt(buf, sizeof buf, obj, 1);
    return json_string(buf);
}

static json_t *utf8_of(const ASN1_STRING *s)
{
    unsigned char *utf8 = NULL;
    int n = ASN1_STRING_to_UTF8(&utf8, s);
    if (n < 0) {
        ERR_clear_error();
        return json_null();
    }
    json_t *j = json_stringn((const char *)utf8, (size_t)n);
    OPENSSL_free(utf8);
    return j ? j : json_null(); /* json_stringn refuses invalid UTF-8 */
}

json_t *enr_describe_name_fields(const X509_NAME *name)
{
    json_t *arr = json_array();
    for (int i = 0; i < X509_NAME_entry_count(name); i++) {
        const X509_NAME_ENTRY *e = X509_NAME_get_entry(name, i);
        const ASN1_OBJECT *obj = X509_NAME_ENTRY_get_object(e);
        const ASN1_STRING *val = X509_NAME_ENTRY_get_data(e);
        int nid = OBJ_obj2nid(obj);
        const enr_dn_rule *rule = enr_dn_rule_for_nid(nid);
        const char *field = rule ? rule->short_name : (nid != NID_undef ? OBJ_nid2sn(nid) : NULL);
        json_t *f = json_object();
        json_object_set_new(f, "field", field ? json_string(field) : oid_string(obj));
        json_object_set_new(f, "oid", oid_string(obj));
        json_object_set_new(f, "value", utf8_of(val));
        json_object_set_new(f, "string_type", json_string(enr_string_type_name(ASN1_STRING_type(val))));
        json_object_set_new(f, "rdn", json_integer(X509_NAME_ENTRY_set(e)));
        json_array_append_new(arr, f);
    }
    return arr;
}

json_t *enr_describe_public_key(const EVP_PKEY *key, enr_error *err)
{
    enr_pubkey_info info;
    if (enr_pubkey_describe(key, &info, err) != ENR_OK)
        return NULL;
    json_t *o = json_object();
    json_object_set_new(o, "algorithm", json_string(info.algorithm));
    json_object_set_new(o, "bits", json_integer(info.bits));
    if (info.curve[0] != '\0')
        json_object_set_new(o, "curve", json_string(info.curve));
    if (strcmp(info.algorithm, "RSA") == 0)
        json_object_set_new(o, "exponent", json_integer((json_int_t)info.rsa_exponent));
    const char *type = enr_pubkey_type_name(&info);
    json_object_set_new(o, "type", type ? json_string(type) : json_null());
    json_object_set_new(o, "spki_sha256", json_string(info.spki_sha256_hex));
    return o;
}

json_t *enr_describe_algorithm(const X509_ALGOR *alg)
{
    const ASN1_OBJECT *obj = NULL;
    X509_ALGOR_get0(&obj, NULL, NULL, alg);
    int nid = OBJ_obj2nid(obj);
    if (nid != NID_undef)
        return json_string(OBJ_nid2ln(nid));
    return oid_string(obj);
}

static json_t *general_name_json(const GENERAL_NAME *gn)
{
    json_t *o = json_object();
    int type = 0;
    const void *v = GENERAL_NAME_get0_value(gn, &type);
    switch (type) {
    case GEN_DNS:
        json_object_set_new(o, "type", json_string("DNS"));
        json_object_set_new(o, "value", utf8_of(v));
        break;
    case GEN_EMAIL:
        json_object_set_new(o, "type", json_string("email"));
        json_object_set_new(o, "value", utf8_of(v));
        break;
    case GEN_URI:
        json_object_set_new(o, "type", json_string("URI"));
        json_object_set_new(o, "value", utf8_of(v));
        break;
    case GEN_IPADD: {
        json_object_set_new(o, "type", json_string("IP"));
        const ASN1_OCTET_STRING *ip = v;
        char text[INET6_ADDRSTRLEN] = "";
        int len = ASN1_STRING_length(ip);
        int family = len == 4 ? AF_INET : len == 16 ? AF_INET6 : 0;
        if (family != 0 && inet_ntop(family, ASN1_STRING_get0_data(ip), text, sizeof text) != NULL)
            json_object_set_new(o, "value", json_string(text));
        else
            json_object_set_new(o, "value", json_null());
        break;
    }
    case GEN_DIRNAME: {
        json_object_set_new(o, "type", json_string("dirName"));
        char *s = enr_name_format(v);
        json_object_set_new(o, "value", s ? json_string(s) : json_null());
        free(s);
        break;
    }
    case GEN_RID:
        json_object_set_new(o, "type", json_string("RID"));
        json_object_set_new(o, "value", oid_string(v));
        break;
    default:
        json_object_set_new(o, "type", json_string("other"));
        break;
    }
    return o;
}

static json_t *key_usage_json(const ASN1_BIT_STRING *bits)
{
    static const char *NAMES[] = {"digitalSignature", "nonRepudiation", "keyEncipherment",
                                  "dataEncipherment", "keyAgreement",   "keyCertSign",
                                  "cRLSign",          "encipherOnly",   "decipherOnly"};
    json_t *arr = json_array();
    for (int i = 0; i < 9; i++)
        if (ASN1_BIT_STRING_get_bit(bits, i))
            json_array_append_new(arr, json_string(NAMES[i]));
    return arr;
}

static json_t *decoded_value(int nid, void *value)
{
    switch (nid) {
    case NID_subject_alt_name:
    case NID_issuer_alt_name: {
        json_t *arr = json_array();
        GENERAL_NAMES *names = value;
        for (int i = 0; i < sk_GENERAL_NAME_num(names); i++)
            json_array_append_new(arr, general_name_json(sk_GENERAL_NAME_value(names, i)));
        return arr;
    }
    case NID_key_usage:
        return key_usage_json(value);
    case NID_ext_key_usage: {
        json_t *arr = json_array();
        EXTENDED_KEY_USAGE *eku = value;
        for (int i = 0; i < sk_ASN1_OBJECT_num(eku); i++) {
            const ASN1_OBJECT *o = sk_ASN1_OBJECT_value(eku, i);
            int onid = OBJ_obj2nid(o);
            json_array_append_new(arr, onid != NID_undef ? json_string(OBJ_nid2sn(onid)) : oid_string(o));
        }
        return arr;
    }
    case NID_basic_constraints: {
        BASIC_CONSTRAINTS *bc = value;
        json_t *o = json_object();
        json_object_set_new(o, "ca", json_boolean(bc->ca));
        long pathlen = bc->pathlen ? ASN1_INTEGER_get(bc->pathlen) : -1;
        json_object_set_new(o, "pathlen", pathlen >= 0 ? json_integer(pathlen) : json_null());
        return o;
    }
    default:
        return NULL;
    }
}

static void free_decoded(int nid, void *value, X509_EXTENSION *ext)
{
    const X509V3_EXT_METHOD *method = X509V3_EXT_get(ext);
    if (method == NULL || value == NULL)
        return;
    if (method->it != NULL)
        ASN1_item_free(value, ASN1_ITEM_ptr(method->it));
    else if (method->ext_free != NULL)
        method->ext_free(value);
    (void)nid;
}

json_t *enr_describe_extensions(const STACK_OF(X509_EXTENSION) *exts)
{
    json_t *arr = json_array();
    for (int i = 0; i < sk_X509_EXTENSION_num(exts); i++) {
        X509_EXTENSION *ext = sk_X509_EXTENSION_value(exts, i);
        const ASN1_OBJECT *obj = X509_EXTENSION_get_object(ext);
        int nid = OBJ_obj2nid(obj);
        json_t *o = json_object();
        json_object_set_new(o, "name", nid != NID_undef ? json_string(OBJ_nid2sn(nid)) : oid_string(obj));
        json_object_set_new(o, "oid", oid_string(obj));
        json_object_set_new(o, "critical", json_boolean(X509_EXTENSION_get_critical(ext)));
        void *value = X509V3_EXT_d2i(ext);
        json_t *decoded = value ? decoded_value(nid, value) : NULL;
        if (decoded != NULL)
            json_object_set_new(o, "value", decoded);
        free_decoded(nid, value, ext);
        BIO *bio = BIO_new(BIO_s_mem());
        if (bio != NULL && X509V3_EXT_print(bio, ext, 0, 0) == 1) {
            char *text;
            long n = BIO_get_mem_data(bio, &text);
            json_t *t = json_stringn(text, (size_t)n);
            json_object_set_new(o, "text", t ? t : json_null());
        } else {
            json_object_set_new(o, "decodable", json_false());
        }
        BIO_free(bio);
        ERR_clear_error();
        json_array_append_new(arr, o);
    }
    return arr;
}

void enr_describe_extensions_text(json_t *exts, BIO *out, int indent)
{
    size_t i;
    json_t *e;
    json_array_foreach(exts, i, e) {
        BIO_printf(out, "%*s%s:%s\n", indent, "", json_string_value(json_object_get(e, "name")),
                   json_is_true(json_object_get(e, "critical")) ? " critical" : "");
        const char *text = json_string_value(json_object_get(e, "text"));
        BIO_printf(out, "%*s%s\n", indent + 4, "", text ? text : "<cannot be decoded>");
    }
}

const char *enr_describe_text_of(json_t *obj, const char *key, const char *fallback)
{
    const char *s = json_string_value(json_object_get(obj, key));
    return s && s[0] ? s : fallback;
}

json_t *enr_describe_owned_string(char *s)
{
    json_t *j = s ? json_string(s) : json_null();
    free(s);
    return j ? j : json_null();
}

enr_code enr_describe_dump(json_t *obj, char **out, enr_error *err)
{
    char *s = json_dumps(obj, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
    if (s == NULL)
        return enr_error_set(err, ENR_E_NOMEM, "out of memory");
    size_t n = strlen(s);
    char *with_nl = realloc(s, n + 2);
    if (with_nl == NULL) {
        free(s);
        return enr_error_set(err, ENR_E_NOMEM, "out of memory");
    }
    with_nl[n] = '\n';
    with_nl[n + 1] = '\0';
    *out = with_nl;
    return ENR_OK;
}

/* Certificate-only extensions. Kept out of enr_describe_extensions so that
 * CSR descriptions stay as they are. */

static json_t *hex_of(const ASN1_STRING *s)
{
    int n = ASN1_STRING_length(s);
    size_t len = n > 0 ? (size_t)n : 0;
    char *hex = malloc(len * 2 + 1);
    if (hex == NULL)
        return json_null();
    enr_hex_lower(ASN1_STRING_get0_data(s), len, hex);
    json_t *j = json_string(hex);
    free(hex);
    return j;
}

static json_t *general_names_json(const GENERAL_NAMES *names)
{
    json_t *arr = json_array();
    for (int i = 0; i < sk_GENERAL_NAME_num(names); i++)
        json_array_append_new(arr, general_name_json(sk_GENERAL_NAME_value(names, i)));
    return arr;
}

static json_t *authority_key_id_json(const AUTHORITY_KEYID *akid)
{
    json_t *o = json_object();
    json_object_set_new(o, "key_id", akid->keyid ? hex_of(akid->keyid) : json_null());
    if (akid->issuer != NULL)
        json_object_set_new(o, "issuer", general_names_json(akid->issuer));
    if (akid->serial != NULL)
        json_object_set_new(o, "serial", hex_of(akid->serial));
    return o;
}

static json_t *distribution_point_json(const DIST_POINT *dp)
{
    json_t *o = json_object();
    if (dp->distpoint != NULL && dp->distpoint->type == 0)
        json_object_set_new(o, "full_name", general_names_json(dp->distpoint->name.fullname));
    else if (dp->distpoint != NULL) {
        /* A name relative to the CRL issuer: shown as the RDN it is. */
        X509_NAME *rdn = X509_NAME_new();
        STACK_OF(X509_NAME_ENTRY) *entries = dp->distpoint->name.relativename;
        for (int i = 0; rdn != NULL && i < sk_X509_NAME_ENTRY_num(entries); i++)
            X509_NAME_add_entry(rdn, sk_X509_NAME_ENTRY_value(entries, i), -1, i == 0 ? 0 : -1);
        char *s = rdn ? enr_name_format(rdn) : NULL;
        json_object_set_new(o, "relative_name", s ? json_string(s) : json_null());
        free(s);
        X509_NAME_free(rdn);
    }
    if (dp->reasons != NULL)
        json_object_set_new(o, "reasons", hex_of(dp->reasons));
    if (dp->CRLissuer != NULL)
        json_object_set_new(o, "crl_issuer", general_names_json(dp->CRLissuer));
    return o;
}

static json_t *access_description_json(const ACCESS_DESCRIPTION *ad)
{
    json_t *o = json_object();
    int nid = OBJ_obj2nid(ad->method);
    json_object_set_new(o, "method", nid != NID_undef ? json_string(OBJ_nid2sn(nid)) : oid_string(ad->method));
    json_object_set_new(o, "location", general_name_json(ad->location));
    return o;
}

static json_t *cert_only_value(int nid, void *value)
{
    switch (nid) {
    case NID_subject_key_identifier:
        return hex_of(value);
    case NID_authority_key_identifier:
        return authority_key_id_json(value);
    case NID_crl_distribution_points: {
        json_t *arr = json_array();
        CRL_DIST_POINTS *dps = value;
        for (int i = 0; i < sk_DIST_POINT_num(dps); i++)
            json_array_append_new(arr, distribution_point_json(sk_DIST_POINT_value(dps, i)));
        return arr;
    }
    case NID_info_access: {
        json_t *arr = json_array();
        AUTHORITY_INFO_ACCESS *aia = value;
        for (int i = 0; i < sk_ACCESS_DESCRIPTION_num(aia); i++)
            json_array_append_new(arr, access_description_json(sk_ACCESS_DESCRIPTION_value(aia, i)));
        return arr;
    }
    default:
        return NULL;
    }
}

/* Rebuilds `o` with "value" before "text", where enr_describe_extensions puts it. */
static json_t *with_value(json_t *o, json_t *value)
{
    json_t *out = json_object();
    const char *key;
    json_t *v;
    json_object_foreach(o, key, v) {
        bool after_value = strcmp(key, "text") == 0 || strcmp(key, "decodable") == 0;
        if (after_value && value != NULL) {
            json_object_set_new(out, "value", value);
            value = NULL;
        }
        json_object_set(out, key, v);
    }
    if (value != NULL)
        json_object_set_new(out, "value", value);
    return out;
}

json_t *enr_describe_cert_extensions(const STACK_OF(X509_EXTENSION) *exts)
{
    json_t *arr = enr_describe_extensions(exts);
    for (int i = 0; i < sk_X509_EXTENSION_num(exts); i++) {
        json_t *o = json_array_get(arr, (size_t)i);
        if (o == NULL || json_object_get(o, "value") != NULL)
            continue;
        X509_EXTENSION *ext = sk_X509_EXTENSION_value(exts, i);
        int nid = OBJ_obj2nid(X509_EXTENSION_get_object(ext));
        void *value = X509V3_EXT_d2i(ext);
        json_t *decoded = value ? cert_only_value(nid, value) : NULL;
        free_decoded(nid, value, ext);
        ERR_clear_error();
        if (decoded != NULL)
            json_array_set_new(arr, (size_t)i, with_value(o, decoded));
    }
    return arr;
}
