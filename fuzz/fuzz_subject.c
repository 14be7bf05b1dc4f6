/* The OpenSSL-style subject parser ("/C=US/O=Acme, Inc./CN=x") and the
 * FIELD=value form, both fed from the command line. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "enroll/name.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *text = malloc(size + 1);
    if (text == NULL)
        return 0;
    memcpy(text, data, size);
    text[size] = '\0';
    enr_error err;
    X509_NAME *name = NULL;
    if (enr_name_parse(text, &name, &err) == ENR_OK) {
        char *s = enr_name_format(name);
        free(s);
        char *cn = enr_name_common_name(name);
        free(cn);
        X509_NAME_free(name);
    }
    X509_NAME *one = X509_NAME_new();
    if (one != NULL) {
        (void)enr_name_add_field(one, text, &err);
        X509_NAME_free(one);
    }
    free(text);
    return 0;
}
