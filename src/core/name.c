#include "enroll/name.h"

#include <ctype.h>
#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/objects.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* RFC 5280 Appendix A upper bounds; UID has none there, RFC 4519 suggests 256. */
static const enr_dn_rule RULES[] = {
    {NID_countryName, "C", V_ASN1_PRINTABLESTRING, 2},
    {NID_stateOrProvinceName, "ST", V_ASN1_UTF8STRING, 128},
    {NID_localityName, "L", V_ASN1_UTF8STRING, 128},
    {NID_organizationName, "O", V_ASN1_UTF8STRING, 64},
    {NID_organizationalUnitName, "OU", V_ASN1_UTF8STRING, 64},
    {NID_commonName, "CN", V_ASN1_UTF8STRING, 64},
    {NID_pkcs9_emailAddress, "emailAddress", V_ASN1_IA5STRING, 255},
    {NID_serialNumber, "serialNumber", V_ASN1_PRINTABLESTRING, 64},
    {NID_userId, "UID", V_ASN1_UTF8STRING, 256},
};

static const char *LONG_NAMES[] = {
    "countryName", "stateOrProvinceName", "localityName", "organizationName",
    "organizationalUnitName", "commonName", "E", "serialNumber", "userId",
};

/* ISO 3166-1 alpha-2, officially assigned codes (249). */
static const char COUNTRIES[] =
    "AD AE AF AG AI AL AM AO AQ AR AS AT AU AW AX AZ BA BB BD BE BF BG BH BI BJ BL BM BN BO BQ "
    "BR BS BT BV BW BY BZ CA CC CD CF CG CH CI CK CL CM CN CO CR CU CV CW CX CY CZ DE DJ DK DM "
    "DO DZ EC EE EG EH ER ES ET FI FJ FK FM FO FR GA GB GD GE GF GG GH GI GL GM GN GP GQ GR GS "
    "GT GU GW GY HK HM HN HR HT HU ID IE IL IM IN IO IQ IR IS IT JE JM JO JP KE KG KH KI KM KN "
    "KP KR KW KY KZ LA LB LC LI LK LR LS LT LU LV LY MA MC MD ME MF MG MH MK ML MM MN MO MP MQ "
    "MR MS MT MU MV MW MX MY MZ NA NC NE NF NG NI NL NO NP NR NU NZ OM PA PE PF PG PH PK PL PM "
    "PN PR PS PT PW PY QA RE RO RS RU RW SA SB SC SD SE SG SH SI SJ SK SL SM SN SO SR SS ST SV "
    "SX SY SZ TC TD TF TG TH TJ TK TL TM TN TO TR TT TV TW TZ UA UG UM US UY UZ VA VC VE VG VI "
    "VN VU WF WS YE YT ZA ZM ZW";

const enr_dn_rule *enr_dn_rule_for_nid(int nid)
{
    for (size_t i = 0; i < sizeof RULES / sizeof RULES[0]; i++)
        if (RULES[i].nid == nid)
            return &RULES[i];
    return NULL;
}

static const enr_dn_rule *rule_for_field(const char *field, size_t len)
{
    for (size_t i = 0; i < sizeof RULES / sizeof RULES[0]; i++) {
        const char *names[2] = {RULES[i].short_name, LONG_NAMES[i]};
        for (int k = 0; k < 2; k++)
            if (strlen(names[k]) == len && strncasecmp(names[k], field, len) == 0)
                return &RULES[i];
    }
    return NULL;
}

bool enr_country_code_valid(const char *code)
{
    if (strlen(code) != 2 || !isupper((unsigned char)code[0]) || !isupper((unsigned char)code[1]))
        return false;
    /* Codes sit at every third character: "AD AE ... ZW". */
    for (size_t i = 0; i + 1 < sizeof COUNTRIES - 1; i += 3)
        if (COUNTRIES[i] == code[0] && COUNTRIES[i + 1] == code[1])
            return true;
    return false;
}

bool enr_printable_string_valid(const unsigned char *s, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        unsigned char c = s[i];
        if (isalnum(c) && c < 0x80)
            continue;
        if (strchr(" '()+,-./:=?", c) == NULL || c == '\0')
            return false;
    }
    return true;
}

long enr_utf8_chars(const unsigned char *s, size_t len)
{
    long chars = 0;
    size_t i = 0;
    while (i < len) {
        unsigned char c = s[i];
        size_t extra;
        unsigned long cp;
        if (c < 0x80) {
            extra = 0;
            cp = c;
        } else if ((c & 0xE0) == 0xC0) {
            extra = 1;
            cp = c & 0x1F;
        } else if ((c & 0xF0) == 0xE0) {
            extra = 2;
            cp = c & 0x0F;
        } else if ((c & 0xF8) == 0xF0) {
            extra = 3;
            cp = c & 0x07;
        } else {
            return -1;
        }
        if (extra > 0 && i + extra >= len)
            return -1;
        for (size_t k = 1; k <= extra; k++) {
            if ((s[i + k] & 0xC0) != 0x80)
                return -1;
            cp = (cp << 6) | (s[i + k] & 0x3F);
        }
        /* Overlong forms, surrogates and values past U+10FFFF are not UTF-8. */
        if ((extra == 1 && cp < 0x80) || (extra == 2 && cp < 0x800) || (extra == 3 && cp < 0x10000) ||
            (cp >= 0xD800 && cp <= 0xDFFF) || cp > 0x10FFFF || c == 0)
            return -1;
        i += extra + 1;
        chars++;
    }
    return chars;
}

bool enr_dns_name_valid(const char *name, bool allow_wildcard)
{
    size_t len = strlen(name), label = 0;
    if (allow_wildcard && name[0] == '*' && name[1] == '.')
        name += 2, len -= 2;
    if (len == 0 || len > 253)
        return false;
    for (size_t i = 0; i < len; i++) {
        char c = name[i];
        if (c == '.') {
            if (label == 0 || name[i - 1] == '-')
                return false;
            label = 0;
            continue;
        }
        bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-';
        if (!ok || (c == '-' && label == 0) || ++label > 63)
            return false;
    }
    return name[len - 1] != '-' && name[len - 1] != '.';
}

const char *enr_string_type_name(int asn1_type)
{
    switch (asn1_type) {
    case V_ASN1_UTF8STRING: return "UTF8String";
    case V_ASN1_PRINTABLESTRING: return "PrintableString";
    case V_ASN1_IA5STRING: return "IA5String";
    case V_ASN1_T61STRING: return "TeletexString";
    case V_ASN1_BMPSTRING: return "BMPString";
    case V_ASN1_UNIVERSALSTRING: return "UniversalString";
    case V_ASN1_VISIBLESTRING: return "VisibleString";
    case V_ASN1_NUMERICSTRING: return "NumericString";
    default: return "other";
    }
}

static enr_code check_value(const enr_dn_rule *rule, const char *value, enr_error *err)
{
    size_t len = strlen(value);
    const unsigned char *u = (const unsigned char *)value;
    if (len == 0)
        return enr_error_set(err, ENR_E_USAGE, "%s has an empty value; give it a value or leave it out",
                             rule->short_name);
    long chars = enr_utf8_chars(u, len);
    if (chars < 0)
        return enr_error_set(err, ENR_E_USAGE, "%s is not valid UTF-8", rule->short_name);
    if (rule->nid == NID_countryName) {
        if (!enr_country_code_valid(value))
            return enr_error_set(err, ENR_E_USAGE,
                                 "C=%s is not an ISO 3166-1 alpha-2 country code (use two capital "
                                 "letters such as US, DE or GB)",
                                 value);
        return ENR_OK;
    }
    if ((size_t)chars > rule->max_chars)
        return enr_error_set(err, ENR_E_USAGE, "%s is %ld characters long; RFC 5280 allows at most %zu",
                             rule->short_name, chars, rule->max_chars);
    if (rule->string_type == V_ASN1_PRINTABLESTRING && !enr_printable_string_valid(u, len))
        return enr_error_set(err, ENR_E_USAGE,
                             "%s may only hold PrintableString characters (A-Z a-z 0-9 space and '()+,-./:=?)",
                             rule->short_name);
    if (rule->string_type == V_ASN1_IA5STRING && (size_t)chars != len)
        return enr_error_set(err, ENR_E_USAGE, "%s must be ASCII", rule->short_name);
    return ENR_OK;
}

static enr_code add_entry(X509_NAME *name, const char *field, size_t field_len, const char *value,
                          int set, enr_error *err)
{
    const enr_dn_rule *rule = rule_for_field(field, field_len);
    if (rule == NULL)
        return enr_error_set(err, ENR_E_USAGE,
                             "unknown subject field '%.*s' (known: C ST L O OU CN emailAddress "
                             "serialNumber UID)",
                             (int)field_len, field);
    enr_code rc = check_value(rule, value, err);
    if (rc != ENR_OK)
        return rc;
    /* Appended (loc -1); set -1 joins the previous RDN for '+' fields. */
    if (!X509_NAME_add_entry_by_NID(name, rule->nid, rule->string_type, (const unsigned char *)value,
                                    -1, -1, set ? -1 : 0))
        return enr_error_openssl(err, ENR_E_CRYPTO, "cannot add %s to the name", rule->short_name);
    return ENR_OK;
}

enr_code enr_name_add_field(X509_NAME *name, const char *field_eq_value, enr_error *err)
{
    const char *eq = strchr(field_eq_value, '=');
    if (eq == NULL || eq == field_eq_value)
        return enr_error_set(err, ENR_E_USAGE, "'%s' is not FIELD=value (for example CN=dev-001)",
                             field_eq_value);
    return add_entry(name, field_eq_value, (size_t)(eq - field_eq_value), eq + 1, 0, err);
}

enr_code enr_name_parse(const char *text, X509_NAME **out, enr_error *err)
{
    *out = NULL;
    if (text[0] != '/')
        return enr_error_set(err, ENR_E_USAGE,
                             "subject must start with '/', as in /C=US/O=Acme/CN=dev-001");
    size_t len = strlen(text);
    char *field = malloc(len + 1), *value = malloc(len + 1);
    X509_NAME *name = X509_NAME_new();
    enr_code rc = ENR_OK;
    if (field == NULL || value == NULL || name == NULL) {
        rc = enr_error_set(err, ENR_E_NOMEM, "out of memory");
        goto done;
    }
    size_t i = 1;
    int set = 0;
    while (i < len) {
        size_t f = 0;
        while (i < len && text[i] != '=') {
            if (text[i] == '/' || text[i] == '+') {
                rc = enr_error_set(err, ENR_E_USAGE, "subject: field at character %zu has no '=value'",
                                   i + 1);
                goto done;
            }
            field[f++] = text[i++];
        }
        field[f] = '\0';
        if (i >= len) {
            rc = enr_error_set(err, ENR_E_USAGE, "subject: '%s' at the end has no '=value'", field);
            goto done;
        }
        i++; /* '=' */
        size_t v = 0;
        int next_set = 0;
        while (i < len) {
            if (text[i] == '\\') {
                if (i + 1 >= len) {
                    rc = enr_error_set(err, ENR_E_USAGE, "subject: a '\\' at the end escapes nothing");
                    goto done;
                }
                value[v++] = text[i + 1];
                i += 2;
                continue;
            }
            if (text[i] == '/' || text[i] == '+') {
                next_set = text[i] == '+';
                i++;
                break;
            }
            value[v++] = text[i++];
        }
        value[v] = '\0';
        rc = add_entry(name, field, f, value, set, err);
        if (rc != ENR_OK) {
            enr_error_prefix(err, "subject");
            goto done;
        }
        set = next_set;
        if (next_set && i >= len) {
            rc = enr_error_set(err, ENR_E_USAGE, "subject: '+' at the end joins nothing");
            goto done;
        }
    }
    if (X509_NAME_entry_count(name) == 0) {
        rc = enr_error_set(err, ENR_E_USAGE, "subject is empty; give at least /CN=...");
        goto done;
    }
    *out = name;
    name = NULL;
done:
    free(field);
    free(value);
    X509_NAME_free(name);
    return rc;
}

char *enr_name_format(const X509_NAME *name)
{
    BIO *bio = BIO_new(BIO_s_mem());
    if (bio == NULL)
        return NULL;
    /* RFC 2253 escaping, but in encoding order and with UTF-8 shown as is. */
    unsigned long flags = (ASN1_STRFLGS_RFC2253 & ~(unsigned long)ASN1_STRFLGS_ESC_MSB) |
                          XN_FLAG_SEP_CPLUS_SPC | XN_FLAG_FN_SN | XN_FLAG_DUMP_UNKNOWN_FIELDS;
    if (X509_NAME_print_ex(bio, name, 0, flags) < 0) {
        BIO_free(bio);
        return NULL;
    }
    char *data;
    long n = BIO_get_mem_data(bio, &data);
    char *s = malloc((size_t)n + 1);
    if (s != NULL) {
        memcpy(s, data, (size_t)n);
        s[n] = '\0';
    }
    BIO_free(bio);
    return s;
}

char *enr_name_common_name(const X509_NAME *name)
{
    int idx = -1, last = -1;
    while ((idx = X509_NAME_get_index_by_NID(name, NID_commonName, idx)) >= 0)
        last = idx;
    if (last < 0)
        return NULL;
    const ASN1_STRING *s = X509_NAME_ENTRY_get_data(X509_NAME_get_entry(name, last));
    unsigned char *utf8 = NULL;
    int n = ASN1_STRING_to_UTF8(&utf8, s);
    if (n < 0) {
        ERR_clear_error();
        return NULL;
    }
    char *cn = malloc((size_t)n + 1);
    if (cn != NULL) {
        memcpy(cn, utf8, (size_t)n);
        cn[n] = '\0';
    }
    OPENSSL_free(utf8);
    return cn;
}
