/* Shared access signature (SAS) tokens for DPS symmetric-key attestation:
 * deriving a device key from a group key, making a token (device side),
 * and parsing and verifying one (service side). docs/sas.md has the format.
 *
 *     SharedAccessSignature sr={U}&sig={S}&se={expiry}&skn=registration
 *     U = url-encode("{idScope}/registrations/{registrationId}")
 *     S = url-encode(base64(HMAC-SHA256(base64-decode(deviceKey), U + "\n" + expiry)))
 *
 * Example, a service checking the Authorization header of a registration
 * against an enrollment's primary and secondary keys:
 *
 *     enr_sas_token *tok = NULL;
 *     enr_error err = {0};
 *     const char *keys[] = {enrollment->primary_key, enrollment->secondary_key};
 *     int which = -1;
 *     enr_code rc = enr_sas_token_parse(authorization, &tok, &err);
 *     if (rc == ENR_OK)
 *         rc = enr_sas_token_verify(tok, id_scope, registration_id, keys, 2, time(NULL),
 *                                   ENR_SAS_DEFAULT_SKEW_SECONDS, 0, &which, &err);
 *     enr_sas_token_free(tok);
 *     if (rc != ENR_OK)
 *         return reply_401(rc, err.message); // ENR_E_PARSE, ENR_E_VERIFY or ENR_E_POLICY
 *
 * For a group enrollment, derive each device's key first:
 *
 *     char *device_key = NULL;
 *     rc = enr_sas_derive_device_key(group_key, registration_id, &device_key, &err);
 *     ...
 *     enr_sas_secret_free(device_key);
 *
 * Keys are base64 text as Azure prints them. Decoded keys and HMAC outputs
 * are wiped after use, and no message ever contains a key or a signature.
 */
#ifndef ENROLL_SAS_H
#define ENROLL_SAS_H

#include <stdbool.h>
#include <stddef.h>
#include <time.h>

#include "enroll/error.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Longest Authorization header value accepted. A real token is under 200
 * bytes (a 128-character id encodes to at most 3x); the bound caps the work
 * an unauthenticated request can cause. */
#define ENR_SAS_TOKEN_MAX 2048
/* Decoded key lengths accepted. Azure keys are 64 bytes (older ones 32);
 * under 16 is too weak to be a real key, over 64 is likely the wrong thing
 * pasted (HMAC-SHA256 hashes longer keys anyway). */
#define ENR_SAS_KEY_MIN 16
#define ENR_SAS_KEY_MAX 64
#define ENR_SAS_SIGNATURE_LEN 32 /* HMAC-SHA256 */
#define ENR_SAS_DEFAULT_SKEW_SECONDS 300L
#define ENR_REGISTRATION_ID_MAX 128
/* The only key name a device registration token carries. */
#define ENR_SAS_KEY_NAME "registration"

/* 1..128 characters of [A-Za-z0-9._:-], the last alphanumeric or '-'. */
bool enr_registration_id_valid(const char *id);

/* Group enrollments: device key = base64(HMAC-SHA256(base64-decode(group
 * key), lower-case registration id)). Registration ids compare without
 * case (as in DPS; the store keeps them lower case), so the key is derived
 * over the one canonical form: "Sensor-1" and "sensor-1" are one device
 * with one key (docs/registration.md). ENR_E_USAGE for an
 * invalid id or a group key that is not strict base64 of 16..64 bytes.
 * Free `*device_key_b64` with enr_sas_secret_free. */
enr_code enr_sas_derive_device_key(const char *group_key_b64, const char *registration_id,
                                   char **device_key_b64, enr_error *err);

/* Makes "SharedAccessSignature sr=...&sig=...&se=...&skn=registration" with
 * sr and sig percent-encoded the way Microsoft's Node, Python and C# SDKs do
 * it (everything but A-Za-z0-9-._~, uppercase hex: "%2F"). `expiry` is
 * seconds since the Unix epoch, >= 0. Free `*token` with enr_sas_secret_free
 * (it is a bearer credential until it expires). */
enr_code enr_sas_token_make(const char *id_scope, const char *registration_id,
                            const char *device_key_b64, time_t expiry, char **token,
                            enr_error *err);

/* Wipes and frees a string from this module (a key or a token). NULL is fine. */
void enr_sas_secret_free(char *secret);

typedef struct enr_sas_token enr_sas_token;

/* Parses an Authorization header value. The scheme "SharedAccessSignature"
 * is matched case-insensitively (RFC 9110) and followed by one or more
 * spaces; then '&'-separated name=value fields in any order. All four of
 * sr, sig, se and skn are required, each exactly once and non-empty; any
 * other field is refused (a device token has exactly these, so anything
 * else is a token for another service or a mistake). Values are
 * percent-decoded once with '+' kept as '+'; sr and skn must decode to
 * printable ASCII (so %00 is refused); se must be decimal digits that fit a
 * time_t; sig must be strict base64 of 32 bytes. Bytes outside 0x21..0x7e
 * (spaces, controls, non-ASCII) are refused anywhere after the scheme:
 * trim the header before calling. Over ENR_SAS_TOKEN_MAX bytes is refused
 * unread. Every refusal is ENR_E_PARSE with the byte offset in the message
 * (ENR_E_USAGE for NULL arguments); `*out` is NULL on failure. */
enr_code enr_sas_token_parse(const char *authorization_header, enr_sas_token **out,
                             enr_error *err);
void enr_sas_token_free(enr_sas_token *token);

const char *enr_sas_token_sr(const enr_sas_token *token);       /* exactly as received */
const char *enr_sas_token_resource(const enr_sas_token *token); /* sr percent-decoded */
const char *enr_sas_token_se(const enr_sas_token *token);       /* exactly as received */
time_t enr_sas_token_expiry(const enr_sas_token *token);        /* se as a number */
const char *enr_sas_token_key_name(const enr_sas_token *token); /* skn percent-decoded */
/* The decoded signature (ENR_SAS_SIGNATURE_LEN bytes). */
const unsigned char *enr_sas_token_signature(const enr_sas_token *token, size_t *len);

/* Checks a parsed token for a registration of `registration_id` under
 * `id_scope`, in this order:
 *  1. skn is "registration" and the decoded resource is
 *     "{id_scope}/registrations/{registration_id}" (the scope exactly, the
 *     id case-insensitively): else ENR_E_POLICY naming what differs;
 *  2. HMAC-SHA256 over sr and se exactly as received ("sr\nse") under every
 *     key, each compared with CRYPTO_memcmp and no early exit, so timing
 *     shows neither whether nor which key matched: else ENR_E_VERIFY
 *     "signature does not match";
 *  3. not expired (se >= now - skew) and, when max_lifetime_seconds > 0,
 *     not too far ahead (se <= now + skew + max_lifetime): else ENR_E_POLICY
 *     with reason ENR_R_TOKEN_TIME (the other ENR_E_POLICY refusals are
 *     about the token's resource or key name).
 * The time window is judged only for a genuine token, so "expired" never
 * answers a forgery. `keys_b64` holds `key_count` base64 keys (primary,
 * secondary); a NULL entry is skipped (an enrollment without a secondary),
 * but one key at least is needed. A key that is not strict base64 of
 * 16..64 bytes, a NULL argument, a negative skew or lifetime, or an invalid
 * registration id is ENR_E_USAGE. On success `*matched_key_index` (may be
 * NULL) receives the index of the first matching key; -1 on failure. */
enr_code enr_sas_token_verify(const enr_sas_token *token, const char *id_scope,
                              const char *registration_id, const char *const *keys_b64,
                              size_t key_count, time_t now, long skew_seconds,
                              long max_lifetime_seconds, int *matched_key_index,
                              enr_error *err);

/* HMAC-SHA256 fetched once, for a caller that verifies many tokens
 * (enrolld's attestation): the *_with functions below are the ones above
 * with it instead of a one-shot HMAC each time, same results. It keeps
 * the last key's HMAC state until its next use or its free (which
 * cleanses). Not thread-safe: one per thread. */
typedef struct enr_sas_mac enr_sas_mac;
enr_code enr_sas_mac_new(enr_sas_mac **out, enr_error *err);
void enr_sas_mac_free(enr_sas_mac *mac);
/* `mac` NULL: as enr_sas_derive_device_key / enr_sas_token_verify. */
enr_code enr_sas_derive_device_key_with(enr_sas_mac *mac, const char *group_key_b64, const char *registration_id,
                                        char **device_key_b64, enr_error *err);
enr_code enr_sas_token_verify_with(enr_sas_mac *mac, const enr_sas_token *token, const char *id_scope,
                                   const char *registration_id, const char *const *keys_b64, size_t key_count,
                                   time_t now, long skew_seconds, long max_lifetime_seconds,
                                   int *matched_key_index, enr_error *err);

#ifdef __cplusplus
}
#endif
#endif
