/* enroll match FILE FILE... : do these hold the same public key? */
#include <getopt.h>
#include <jansson.h>
#include <openssl/err.h>
#include <openssl/x509.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "enroll/csr.h"
#include "enroll/input.h"
#include "enroll/pubkey.h"
#include "enroll/signer.h"

static const char MATCH_HELP[] =
    "Usage: enroll match FILE|pkcs11:URI FILE... [--pass-file F] [--module SO] [--pin-file F]\n"
    "                    [--json]\n"
    "\n"
    "Tells whether private keys, public keys, CSRs and certificates hold the same public key\n"
    "(the 'mismatched private key and CSR' problem). Compares the DER SubjectPublicKeyInfo.\n"
    "Files may be PEM, DER or headerless base64. Exit 0 when all match, 1 when any differs.\n"
    "\n"
    "Example:\n"
    "  enroll match device.key device.csr device.crt\n";

typedef struct match_item {
    const char *ref;
    const char *kind;
    EVP_PKEY *key;
    enr_pubkey_info info;
} match_item;

static EVP_PKEY *try_cert(const unsigned char *der, size_t len)
{
    const unsigned char *p = der;
    X509 *cert = d2i_X509(NULL, &p, (long)len);
    if (cert == NULL)
        return NULL;
    EVP_PKEY *key = X509_get_pubkey(cert);
    X509_free(cert);
    return key;
}

static EVP_PKEY *try_pubkey(const unsigned char *der, size_t len)
{
    const unsigned char *p = der;
    return d2i_PUBKEY(NULL, &p, (long)len);
}

static EVP_PKEY *try_csr(const unsigned char *der, size_t len)
{
    const unsigned char *p = der;
    X509_REQ *req = d2i_X509_REQ(NULL, &p, (long)len);
    if (req == NULL)
        return NULL;
    EVP_PKEY *key = X509_REQ_get_pubkey(req);
    X509_REQ_free(req);
    return key;
}

static EVP_PKEY *from_signer(const char *ref, const char *pass, const enr_token_options *topts,
                             enr_error *err)
{
    enr_signer *signer = NULL;
    if (enr_signer_open(ref, pass, topts, &signer, err) != ENR_OK)
        return NULL;
    EVP_PKEY *key = enr_signer_public_key(signer);
    EVP_PKEY_up_ref(key);
    enr_signer_free(signer);
    return key;
}

static enr_code load_item(match_item *item, const char *pass, const enr_token_options *topts,
                          enr_error *err)
{
    if (enr_key_ref_is_token(item->ref)) {
        item->kind = "token key";
        item->key = from_signer(item->ref, NULL, topts, err);
        if (item->key == NULL)
            return err->code;
        return enr_pubkey_describe(item->key, &item->info, err);
    }
    unsigned char *data;
    size_t len;
    enr_code code = cli_read_input(item->ref, &data, &len, err);
    if (code != ENR_OK)
        return code;
    enr_decoded dec;
    code = enr_decode(data, len, &dec, NULL, err);
    bool private_pem = code == ENR_OK && dec.encoding == ENR_ENCODING_PEM && strstr(dec.pem_label, "PRIVATE KEY");
    if (code == ENR_OK && !private_pem) {
        const char *label = dec.encoding == ENR_ENCODING_PEM ? dec.pem_label : "";
        bool any = label[0] == '\0';
        if ((any || strcmp(label, "CERTIFICATE") == 0) && (item->key = try_cert(dec.der, dec.der_len)))
            item->kind = "certificate";
        else if ((any || strstr(label, "CERTIFICATE REQUEST")) && (item->key = try_csr(dec.der, dec.der_len)))
            item->kind = "CSR";
        else if ((any || strcmp(label, "PUBLIC KEY") == 0) && (item->key = try_pubkey(dec.der, dec.der_len)))
            item->kind = "public key";
        ERR_clear_error();
    }
    enr_decoded_free(&dec);
    free(data);
    if (item->key == NULL) {
        item->kind = "private key";
        item->key = from_signer(item->ref, pass, topts, err);
        if (item->key == NULL) {
            char why[ENR_ERROR_MESSAGE_MAX];
            snprintf(why, sizeof why, "%s", err->message);
            /* Keep the signer's code: a locked key (passphrase or PIN) or a
             * missing token is not a malformed file, though both exit 3. */
            return enr_error_set(err, err->code == ENR_E_CRYPTO ? ENR_E_PARSE : err->code,
                                 "%s: not a key, CSR or certificate we can read (%s)", item->ref, why);
        }
    }
    return enr_pubkey_describe(item->key, &item->info, err);
}

enum { OPT_PASS_FILE = 1, OPT_MODULE, OPT_PIN_FILE, OPT_JSON, OPT_HELP };

int cli_match(int argc, char **argv)
{
    static const struct option OPTIONS[] = {
        {"pass-file", required_argument, NULL, OPT_PASS_FILE},
        {"module", required_argument, NULL, OPT_MODULE},
        {"pin-file", required_argument, NULL, OPT_PIN_FILE},
        {"json", no_argument, NULL, OPT_JSON},
        {"help", no_argument, NULL, OPT_HELP},
        {NULL, 0, NULL, 0},
    };
    const char *pass_file = NULL, *module = NULL, *pin_file = NULL;
    bool json = false;
    optind = 0;
    opterr = 0;
    int c;
    while ((c = getopt_long(argc, argv, ":h", OPTIONS, NULL)) != -1) {
        switch (c) {
        case OPT_PASS_FILE: pass_file = optarg; break;
        case OPT_MODULE: module = optarg; break;
        case OPT_PIN_FILE: pin_file = optarg; break;
        case OPT_JSON: json = true; break;
        case OPT_HELP:
        case 'h': fputs(MATCH_HELP, stdout); return CLI_EXIT_OK;
        case ':': return cli_usage("match", "option %s needs a value", argv[optind - 1]);
        default: return cli_usage("match", "unknown option %s", argv[optind - 1]);
        }
    }
    int count = argc - optind;
    if (count < 2)
        return cli_usage("match", "give at least two files to compare");

    enr_error err;
    char *pass = NULL, *pin = NULL;
    match_item *items = calloc((size_t)count, sizeof *items);
    int rc = CLI_EXIT_OK;
    if (items == NULL) {
        enr_error_set(&err, ENR_E_NOMEM, "out of memory");
        rc = cli_fail(&err, json);
        goto done;
    }
    if (cli_read_secret(pass_file, &pass, &err) != ENR_OK || cli_read_secret(pin_file, &pin, &err) != ENR_OK) {
        rc = cli_fail(&err, json);
        goto done;
    }
    enr_token_options topts = {module, pin};
    for (int i = 0; i < count; i++) {
        items[i].ref = argv[optind + i];
        if (load_item(&items[i], pass, &topts, &err) != ENR_OK) {
            rc = cli_fail(&err, json);
            goto done;
        }
    }
    bool all_same = true;
    for (int i = 1; i < count; i++)
        if (!enr_pubkey_equal(items[0].key, items[i].key))
            all_same = false;
    if (json) {
        json_t *arr = json_array();
        for (int i = 0; i < count; i++)
            json_array_append_new(arr, json_pack("{s:s,s:s,s:s,s:b}", "file", items[i].ref, "kind",
                                                 items[i].kind, "spki_sha256", items[i].info.spki_sha256_hex,
                                                 "matches_first", enr_pubkey_equal(items[0].key, items[i].key)));
        json_t *o = json_pack("{s:b,s:o}", "match", all_same, "items", arr);
        cli_print_json(o);
        json_decref(o);
    } else {
        for (int i = 0; i < count; i++)
            printf("%s  %-12s %s%s\n", items[i].info.spki_sha256_hex, items[i].kind, items[i].ref,
                   enr_pubkey_equal(items[0].key, items[i].key) ? "" : "  <- DIFFERENT");
        printf(all_same ? "match: all %d hold the same public key\n"
                        : "MISMATCH: not all %d hold the same public key\n",
               count);
    }
    rc = all_same ? CLI_EXIT_OK : CLI_EXIT_FINDING;
done:
    if (items != NULL)
        for (int i = 0; i < count; i++)
            EVP_PKEY_free(items[i].key);
    free(items);
    enr_secret_free(pass);
    enr_secret_free(pin);
    return rc;
}
