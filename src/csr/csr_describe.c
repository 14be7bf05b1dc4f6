#include <openssl/err.h>
#include <openssl/x509v3.h>
#include <stdlib.h>
#include <string.h>

#include "core/describe.h"
#include "csr/csr_internal.h"
#include "enroll/name.h"

static json_t *attributes_json(X509_REQ *req)
{
    json_t *arr = json_array();
    for (int i = 0; i < X509_REQ_get_attr_count(req); i++) {
        X509_ATTRIBUTE *attr = X509_REQ_get_attr(req, i);
        const ASN1_OBJECT *obj = X509_ATTRIBUTE_get0_object(attr);
        int nid = OBJ_obj2nid(obj);
        char oid[128];
        OBJ_obj2txt(oid, sizeof oid, obj, 1);
        json_t *o = json_object();
        json_object_set_new(o, "name", json_string(nid != NID_undef ? OBJ_nid2sn(nid) : oid));
        json_object_set_new(o, "oid", json_string(oid));
        json_object_set_new(o, "values", json_integer(X509_ATTRIBUTE_count(attr)));
        /* A challenge password is a shared secret: say it is there, never what it is. */
        if (nid == NID_pkcs9_challengePassword)
            json_object_set_new(o, "redacted", json_true());
        json_array_append_new(arr, o);
    }
    return arr;
}

static json_t *describe(const enr_csr *csr, enr_error *err)
{
    X509_REQ *req = csr->req;
    json_t *root = json_object();
    long version = X509_REQ_get_version(req);
    json_object_set_new(root, "version", json_integer(version + 1));
    json_object_set_new(root, "input_encoding", json_string(enr_encoding_name(csr->input_encoding)));
    char *subject = enr_name_format(X509_REQ_get_subject_name(req));
    json_object_set_new(root, "subject", subject ? json_string(subject) : json_null());
    free(subject);
    json_object_set_new(root, "subject_fields", enr_describe_name_fields(X509_REQ_get_subject_name(req)));
    json_t *key = enr_describe_public_key(csr->public_key, err);
    if (key == NULL) {
        json_decref(root);
        return NULL;
    }
    json_object_set_new(root, "public_key", key);
    const X509_ALGOR *alg = NULL;
    X509_REQ_get0_signature(req, NULL, &alg);
    json_object_set_new(root, "signature_algorithm", enr_describe_algorithm(alg));
    int ok = X509_REQ_verify_ex(req, csr->public_key, NULL, NULL);
    ERR_clear_error();
    json_object_set_new(root, "signature_valid", json_boolean(ok == 1));
    json_object_set_new(root, "attributes", attributes_json(req));
    STACK_OF(X509_EXTENSION) *exts = X509_REQ_get_extensions(req);
    ERR_clear_error();
    json_object_set_new(root, "extensions", enr_describe_extensions(exts));
    sk_X509_EXTENSION_pop_free(exts, X509_EXTENSION_free);
    return root;
}

enr_code enr_csr_describe_json(const enr_csr *csr, char **out, enr_error *err)
{
    *out = NULL;
    json_t *root = describe(csr, err);
    if (root == NULL)
        return err ? err->code : ENR_E_INTERNAL;
    enr_code rc = enr_describe_dump(root, out, err);
    json_decref(root);
    return rc;
}

enr_code enr_csr_describe_text(const enr_csr *csr, char **out, enr_error *err)
{
    *out = NULL;
    json_t *root = describe(csr, err);
    if (root == NULL)
        return err ? err->code : ENR_E_INTERNAL;
    BIO *bio = BIO_new(BIO_s_mem());
    if (bio == NULL) {
        json_decref(root);
        return enr_error_set(err, ENR_E_NOMEM, "out of memory");
    }
    json_int_t version = json_integer_value(json_object_get(root, "version"));
    BIO_printf(bio, "Certificate Request:\n");
    BIO_printf(bio, "    Version: %lld (0x%llx)\n", (long long)version, (long long)(version - 1));
    const char *subject = json_string_value(json_object_get(root, "subject"));
    BIO_printf(bio, "    Subject: %s\n", subject && subject[0] ? subject : "(empty)");
    json_t *key = json_object_get(root, "public_key");
    const char *curve = json_string_value(json_object_get(key, "curve"));
    BIO_printf(bio, "    Public Key: %s%s%s (%lld bit)\n", json_string_value(json_object_get(key, "algorithm")),
               curve ? " " : "", curve ? curve : "", (long long)json_integer_value(json_object_get(key, "bits")));
    if (json_object_get(key, "exponent"))
        BIO_printf(bio, "        Exponent: %lld\n", (long long)json_integer_value(json_object_get(key, "exponent")));
    /* Lowercase hex without separators, as every output spells a fingerprint. */
    const char *spki = json_string_value(json_object_get(key, "spki_sha256"));
    BIO_printf(bio, "        SPKI SHA-256: %s\n", spki ? spki : "");
    BIO_printf(bio, "    Signature Algorithm: %s (self-signature %s)\n",
               json_string_value(json_object_get(root, "signature_algorithm")),
               json_is_true(json_object_get(root, "signature_valid")) ? "verifies" : "DOES NOT VERIFY");
    BIO_printf(bio, "    Attributes:\n");
    size_t i;
    json_t *attr;
    json_t *attrs = json_object_get(root, "attributes");
    size_t shown = 0;
    json_array_foreach(attrs, i, attr) {
        const char *name = json_string_value(json_object_get(attr, "name"));
        if (strcmp(name, "extReq") == 0)
            continue; /* shown below as Requested Extensions */
        BIO_printf(bio, "        %s%s\n", name, json_is_true(json_object_get(attr, "redacted")) ? ": <redacted>" : "");
        shown++;
    }
    if (shown == 0)
        BIO_printf(bio, "        (none)\n");
    json_t *exts = json_object_get(root, "extensions");
    if (json_array_size(exts) > 0) {
        BIO_printf(bio, "    Requested Extensions:\n");
        enr_describe_extensions_text(exts, bio, 8);
    }
    json_decref(root);
    char *data;
    long n = BIO_get_mem_data(bio, &data);
    char *text = malloc((size_t)n + 1);
    if (text != NULL) {
        memcpy(text, data, (size_t)n);
        text[n] = '\0';
    }
    BIO_free(bio);
    if (text == NULL)
        return enr_error_set(err, ENR_E_NOMEM, "out of memory");
    *out = text;
    return ENR_OK;
}
