/* Distinguished names: the OpenSSL-style "/C=US/O=Acme, Inc./CN=dev-001"
 * syntax, "CN=dev-001" fields, printing, and the RFC 5280 rules (string
 * types, upper bounds, country codes) shared by the builder and the linter. */
#ifndef ENROLL_NAME_H
#define ENROLL_NAME_H

#include <openssl/x509.h>
#include <stdbool.h>
#include <stddef.h>

#include "enroll/error.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct enr_dn_rule {
    int nid;
    const char *short_name;  /* "CN" */
    int string_type;         /* V_ASN1_UTF8STRING, V_ASN1_PRINTABLESTRING or V_ASN1_IA5STRING */
    size_t max_chars;        /* RFC 5280 upper bound, in characters */
} enr_dn_rule;

/* The rule for a subject field we know, or NULL. */
const enr_dn_rule *enr_dn_rule_for_nid(int nid);

/* Parses "/C=US/ST=California/O=Acme, Inc./CN=dev-001": '/' separates
 * fields, '+' joins fields into one multi-valued RDN, '\' escapes the next
 * character. Field names: C ST L O OU CN emailAddress serialNumber UID (any
 * case, or their long names). Values are checked against enr_dn_rule. */
enr_code enr_name_parse(const char *text, X509_NAME **out, enr_error *err);

/* Appends one "FIELD=value" (the --dn form) to `name`, with the same checks. */
enr_code enr_name_add_field(X509_NAME *name, const char *field_eq_value, enr_error *err);

/* "C=US, O=Acme\, Inc., CN=dev-001" (RFC 2253 escaping, in the order of the
 * encoding). Caller frees with free(). */
char *enr_name_format(const X509_NAME *name);

/* The value of the last CN, as UTF-8 (caller frees), or NULL if none. */
char *enr_name_common_name(const X509_NAME *name);

/* A host name: dot-separated labels of 1-63 letters, digits and '-' (not
 * at either end of a label), at most 253 characters. With allow_wildcard,
 * a first label of exactly "*" is accepted too. */
bool enr_dns_name_valid(const char *name, bool allow_wildcard);

/* Rule helpers, also used by the linter. */
bool enr_country_code_valid(const char *code);
bool enr_printable_string_valid(const unsigned char *s, size_t len);
/* Number of characters in UTF-8 `s`, or -1 when it is not valid UTF-8. */
long enr_utf8_chars(const unsigned char *s, size_t len);
const char *enr_string_type_name(int asn1_type);

#ifdef __cplusplus
}
#endif
#endif
