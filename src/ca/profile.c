#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "ca/ca_internal.h"

#define ALL_KEY_TYPES                                                                        \
    ((1u << ENR_KEY_EC_P256) | (1u << ENR_KEY_EC_P384) | (1u << ENR_KEY_RSA_2048) |         \
     (1u << ENR_KEY_RSA_3072) | (1u << ENR_KEY_RSA_4096) | (1u << ENR_KEY_ED25519))

enr_code enr_profile_new(const char *name, enr_profile **out, enr_error *err)
{
    *out = NULL;
    enr_profile *p = calloc(1, sizeof *p);
    if (p == NULL)
        return enr_error_set(err, ENR_E_NOMEM, "out of memory");
    snprintf(p->name, sizeof p->name, "%s", name);
    p->key_types = ALL_KEY_TYPES;
    p->backdate.seconds = 300; /* five minutes of clock skew */
    if (strcmp(name, "device") == 0) {
        p->validity.years = 1;
        p->key_usage = KU_DIGITAL_SIGNATURE;
        p->eku_nids[p->eku_count++] = NID_client_auth;
    } else if (strcmp(name, "server") == 0) {
        p->validity.years = 1;
        p->key_usage = KU_DIGITAL_SIGNATURE;
        p->eku_nids[p->eku_count++] = NID_server_auth;
        enr_code rc = enr_profile_allow_san(p, "DNS:*", err);
        if (rc == ENR_OK)
            rc = enr_profile_allow_san(p, "IP:*", err);
        if (rc != ENR_OK) {
            enr_profile_free(p);
            return rc;
        }
        p->san_allow_is_default = true;
        p->cn_is_host_name = true;
    } else if (strcmp(name, "ocsp-responder") == 0) {
        /* A delegated OCSP responder (RFC 6960 4.2.2.2): short-lived and
         * marked ocsp-nocheck, since nobody asks OCSP about the responder. */
        p->validity.days = 3;
        p->key_usage = KU_DIGITAL_SIGNATURE;
        p->eku_nids[p->eku_count++] = NID_OCSP_sign;
        p->ocsp_nocheck = true;
    } else if (strcmp(name, "intermediate") == 0) {
        p->validity.years = 5;
        p->is_ca = 1;
        p->key_usage = KU_KEY_CERT_SIGN | KU_CRL_SIGN;
    } else {
        free(p);
        return enr_error_set(err, ENR_E_USAGE,
                             "unknown profile '%s' (device, server, intermediate or ocsp-responder)", name);
    }
    *out = p;
    return ENR_OK;
}

void enr_profile_free(enr_profile *profile)
{
    if (profile == NULL)
        return;
    for (size_t i = 0; i < profile->san_allow_count; i++)
        free(profile->san_allow[i]);
    free(profile->san_allow);
    free(profile->force_cn);
    free(profile->ocsp_url);
    free(profile->crl_url);
    free(profile);
}

const char *enr_profile_name(const enr_profile *profile)
{
    return profile->name;
}

enr_code enr_profile_set_validity(enr_profile *profile, const char *iso8601, enr_error *err)
{
    enr_duration d;
    enr_code rc = enr_duration_parse(iso8601, &d, err);
    if (rc != ENR_OK)
        return rc;
    if (d.years == 0 && d.months == 0 && d.days == 0 && d.seconds < 60)
        return enr_error_set(err, ENR_E_USAGE, "validity %s is shorter than a minute", iso8601);
    profile->validity = d;
    return ENR_OK;
}

enr_code enr_profile_set_backdate(enr_profile *profile, const char *iso8601, enr_error *err)
{
    enr_duration d;
    enr_code rc = enr_duration_parse(iso8601, &d, err);
    if (rc != ENR_OK)
        return rc;
    if (d.years || d.months || d.days > 1)
        return enr_error_set(err, ENR_E_USAGE, "backdate %s is more than a day", iso8601);
    profile->backdate = d;
    return ENR_OK;
}

enr_code enr_profile_force_cn(enr_profile *profile, const char *id, enr_error *err)
{
    if (id[0] == '\0' || strlen(id) > 64)
        return enr_error_set(err, ENR_E_USAGE, "--cn must be 1 to 64 characters");
    char *copy = strdup(id);
    if (copy == NULL)
        return enr_error_set(err, ENR_E_NOMEM, "out of memory");
    free(profile->force_cn);
    profile->force_cn = copy;
    return ENR_OK;
}

enr_code enr_profile_allow_san(enr_profile *profile, const char *pattern, enr_error *err)
{
    const char *colon = strchr(pattern, ':');
    size_t tlen = colon ? (size_t)(colon - pattern) : 0;
    bool known = colon && ((tlen == 3 && strncasecmp(pattern, "DNS", 3) == 0) ||
                           (tlen == 2 && strncasecmp(pattern, "IP", 2) == 0) ||
                           (tlen == 3 && strncasecmp(pattern, "URI", 3) == 0) ||
                           (tlen == 5 && strncasecmp(pattern, "email", 5) == 0));
    if (!known || colon[1] == '\0')
        return enr_error_set(err, ENR_E_USAGE,
                             "SAN pattern '%s': expected TYPE:pattern with TYPE one of DNS, IP, URI, "
                             "email (e.g. DNS:*.devices.example.com)",
                             pattern);
    if (profile->san_allow_is_default) {
        /* Narrowing a profile must not leave its catch-all defaults in force. */
        for (size_t i = 0; i < profile->san_allow_count; i++)
            free(profile->san_allow[i]);
        profile->san_allow_count = 0;
        profile->san_allow_is_default = false;
    }
    char **grown = realloc(profile->san_allow, (profile->san_allow_count + 1) * sizeof *grown);
    if (grown == NULL)
        return enr_error_set(err, ENR_E_NOMEM, "out of memory");
    profile->san_allow = grown;
    if ((grown[profile->san_allow_count] = strdup(pattern)) == NULL)
        return enr_error_set(err, ENR_E_NOMEM, "out of memory");
    profile->san_allow_count++;
    return ENR_OK;
}

enr_code enr_profile_set_key_types(enr_profile *profile, const char *list, enr_error *err)
{
    char *copy = strdup(list);
    if (copy == NULL)
        return enr_error_set(err, ENR_E_NOMEM, "out of memory");
    unsigned types = 0;
    char *save = NULL;
    enr_code rc = ENR_OK;
    for (char *item = strtok_r(copy, ",", &save); item; item = strtok_r(NULL, ",", &save)) {
        enr_key_type t;
        if ((rc = enr_key_type_parse(item, &t, err)) != ENR_OK)
            break;
        types |= 1u << t;
    }
    free(copy);
    if (rc == ENR_OK && types == 0)
        rc = enr_error_set(err, ENR_E_USAGE, "the list of allowed key types is empty");
    if (rc == ENR_OK)
        profile->key_types = types;
    return rc;
}

enr_code enr_profile_set_urls(enr_profile *profile, const char *ocsp_url, const char *crl_url, enr_error *err)
{
    char *ocsp = ocsp_url != NULL && ocsp_url[0] ? strdup(ocsp_url) : NULL;
    char *crl = crl_url != NULL && crl_url[0] ? strdup(crl_url) : NULL;
    if ((ocsp_url != NULL && ocsp_url[0] && ocsp == NULL) || (crl_url != NULL && crl_url[0] && crl == NULL)) {
        free(ocsp);
        free(crl);
        return enr_error_set(err, ENR_E_NOMEM, "out of memory");
    }
    free(profile->ocsp_url);
    free(profile->crl_url);
    profile->ocsp_url = ocsp;
    profile->crl_url = crl;
    return ENR_OK;
}
