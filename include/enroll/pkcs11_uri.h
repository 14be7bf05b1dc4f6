/* RFC 7512 PKCS#11 URIs: "pkcs11:token=t;object=devkey;type=private?pin-source=file:/p". */
#ifndef ENROLL_PKCS11_URI_H
#define ENROLL_PKCS11_URI_H

#include <stddef.h>

#include "enroll/error.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct enr_pkcs11_uri enr_pkcs11_uri;

/* Parses and percent-decodes. Unknown path attributes are an error (they
 * would otherwise be silently ignored while selecting a key); unknown query
 * attributes are ignored as RFC 7512 section 2.4 allows. `pin-value` is
 * refused: a PIN in a URI ends up in shell history and process lists. */
enr_code enr_pkcs11_uri_parse(const char *text, enr_pkcs11_uri **out, enr_error *err);
void enr_pkcs11_uri_free(enr_pkcs11_uri *uri);

/* Decoded attributes; NULL when absent. `id` is binary: see id_len. */
const char *enr_pkcs11_uri_token(const enr_pkcs11_uri *uri);        /* CKA_LABEL of the token */
const char *enr_pkcs11_uri_manufacturer(const enr_pkcs11_uri *uri);
const char *enr_pkcs11_uri_serial(const enr_pkcs11_uri *uri);
const char *enr_pkcs11_uri_model(const enr_pkcs11_uri *uri);
const char *enr_pkcs11_uri_object(const enr_pkcs11_uri *uri);       /* CKA_LABEL of the key */
const unsigned char *enr_pkcs11_uri_id(const enr_pkcs11_uri *uri, size_t *id_len);
const char *enr_pkcs11_uri_type(const enr_pkcs11_uri *uri);         /* "private", "public", ... */
const char *enr_pkcs11_uri_module_path(const enr_pkcs11_uri *uri);
const char *enr_pkcs11_uri_pin_source(const enr_pkcs11_uri *uri);   /* "file:/path" or a path */
long enr_pkcs11_uri_slot_id(const enr_pkcs11_uri *uri);              /* -1 when absent */

#ifdef __cplusplus
}
#endif
#endif
