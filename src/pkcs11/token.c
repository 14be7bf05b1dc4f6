#include "pkcs11/token.h"

#include <dlfcn.h>
#include <limits.h>
#include <openssl/asn1.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/objects.h>
#include <openssl/param_build.h>
#include <openssl/rand.h>
#include <openssl/x509.h>
#include <p11-kit/pkcs11.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "enroll/fileio.h"
#include "enroll/pkcs11_uri.h"

#define ENV_MODULE "ENROLL_PKCS11_MODULE"
#define ENV_PIN "ENROLL_PKCS11_PIN"
/* Size of a generated CKA_ID when the URI names none: enough that two keys
 * made independently do not collide, short enough to type. */
#define GENERATED_ID_LEN 8
/* A text from a token or a URI, quoted in a message. */
#define QUOTE_MAX 65
/* Bounds on attribute values we read: far above any real key (RSA-16384
 * modulus is 2 KiB), low enough that a broken module cannot make us
 * allocate without limit. */
#define ATTRIBUTE_MAX 16384

/* ---- CK_RV names ------------------------------------------------------ */

typedef struct rv_name_entry {
    CK_RV rv;
    const char *name;
} rv_name_entry;

#define RV(x) {x, #x}
static const rv_name_entry RV_NAMES[] = {
    RV(CKR_OK), RV(CKR_CANCEL), RV(CKR_HOST_MEMORY), RV(CKR_SLOT_ID_INVALID),
    RV(CKR_GENERAL_ERROR), RV(CKR_FUNCTION_FAILED), RV(CKR_ARGUMENTS_BAD),
    RV(CKR_CANT_LOCK), RV(CKR_ATTRIBUTE_READ_ONLY), RV(CKR_ATTRIBUTE_SENSITIVE),
    RV(CKR_ATTRIBUTE_TYPE_INVALID), RV(CKR_ATTRIBUTE_VALUE_INVALID), RV(CKR_DATA_INVALID),
    RV(CKR_DATA_LEN_RANGE), RV(CKR_DEVICE_ERROR), RV(CKR_DEVICE_MEMORY), RV(CKR_DEVICE_REMOVED),
    RV(CKR_FUNCTION_CANCELED), RV(CKR_FUNCTION_NOT_SUPPORTED), RV(CKR_KEY_HANDLE_INVALID),
    RV(CKR_KEY_SIZE_RANGE), RV(CKR_KEY_TYPE_INCONSISTENT), RV(CKR_KEY_FUNCTION_NOT_PERMITTED),
    RV(CKR_MECHANISM_INVALID), RV(CKR_MECHANISM_PARAM_INVALID), RV(CKR_OBJECT_HANDLE_INVALID),
    RV(CKR_OPERATION_ACTIVE), RV(CKR_OPERATION_NOT_INITIALIZED), RV(CKR_PIN_INCORRECT),
    RV(CKR_PIN_INVALID), RV(CKR_PIN_LEN_RANGE), RV(CKR_PIN_EXPIRED), RV(CKR_PIN_LOCKED),
    RV(CKR_SESSION_CLOSED), RV(CKR_SESSION_COUNT), RV(CKR_SESSION_HANDLE_INVALID),
    RV(CKR_SESSION_PARALLEL_NOT_SUPPORTED), RV(CKR_SESSION_READ_ONLY), RV(CKR_SESSION_EXISTS),
    RV(CKR_SESSION_READ_ONLY_EXISTS), RV(CKR_SESSION_READ_WRITE_SO_EXISTS),
    RV(CKR_SIGNATURE_INVALID), RV(CKR_SIGNATURE_LEN_RANGE), RV(CKR_TEMPLATE_INCOMPLETE),
    RV(CKR_TEMPLATE_INCONSISTENT), RV(CKR_TOKEN_NOT_PRESENT), RV(CKR_TOKEN_NOT_RECOGNIZED),
    RV(CKR_TOKEN_WRITE_PROTECTED), RV(CKR_USER_ALREADY_LOGGED_IN), RV(CKR_USER_NOT_LOGGED_IN),
    RV(CKR_USER_PIN_NOT_INITIALIZED), RV(CKR_USER_TYPE_INVALID),
    RV(CKR_USER_ANOTHER_ALREADY_LOGGED_IN), RV(CKR_USER_TOO_MANY_TYPES),
    RV(CKR_RANDOM_NO_RNG), RV(CKR_DOMAIN_PARAMS_INVALID), RV(CKR_CURVE_NOT_SUPPORTED),
    RV(CKR_BUFFER_TOO_SMALL), RV(CKR_CRYPTOKI_NOT_INITIALIZED),
    RV(CKR_CRYPTOKI_ALREADY_INITIALIZED), RV(CKR_FUNCTION_REJECTED),
};
#undef RV
#define RV_NAME_COUNT (sizeof RV_NAMES / sizeof RV_NAMES[0])

static const char *rv_name(CK_RV rv)
{
    for (size_t i = 0; i < RV_NAME_COUNT; i++)
        if (RV_NAMES[i].rv == rv)
            return RV_NAMES[i].name;
    return NULL;
}

/* Sets the message and appends the module's return value by name. */
static enr_code token_fail(enr_error *err, enr_code code, CK_RV rv, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static enr_code token_fail(enr_error *err, enr_code code, CK_RV rv, const char *fmt, ...)
{
    char what[ENR_ERROR_MESSAGE_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    const char *name = rv_name(rv);
    if (name != NULL)
        return enr_error_set(err, code, "%s (%s)", what, name);
    return enr_error_set(err, code, "%s (CK_RV 0x%lx)", what, (unsigned long)rv);
}

/* ---- texts from tokens and URIs --------------------------------------- */

/* Token info fields are blank-padded, not NUL-terminated. */
static size_t trimmed_length(const unsigned char *field, size_t size)
{
    while (size > 0 && (field[size - 1] == ' ' || field[size - 1] == '\0'))
        size--;
    return size;
}

/* A copy safe to put in a message: outside bytes may hold terminal escapes. */
static void quote_text(char *dst, size_t dst_size, const void *src, size_t len)
{
    const unsigned char *s = src;
    size_t n = 0;
    for (size_t i = 0; i < len && n + 1 < dst_size; i++)
        dst[n++] = (s[i] >= 0x20 && s[i] < 0x7f) ? (char)s[i] : '?';
    dst[n] = '\0';
}

static void hex_encode(char *dst, size_t dst_size, const unsigned char *src, size_t len)
{
    static const char digits[] = "0123456789abcdef";
    size_t n = 0;
    for (size_t i = 0; i < len && n + 2 < dst_size; i++) {
        dst[n++] = digits[src[i] >> 4];
        dst[n++] = digits[src[i] & 0x0f];
    }
    dst[n] = '\0';
}

/* ---- the module ------------------------------------------------------- */

typedef struct token_module {
    void *library;
    CK_FUNCTION_LIST *fn;
    /* Only the one who initialized the module may finalize it: another user
     * in this process (a second key, an OpenSSL engine) may still need it. */
    bool finalize;
} token_module;

static enr_code module_path_choose(const enr_pkcs11_uri *uri, const enr_token_options *opts,
                                   const char **out, enr_error *err)
{
    const char *env = getenv(ENV_MODULE);
    if (opts->module_path != NULL && opts->module_path[0] != '\0')
        *out = opts->module_path;
    else if (enr_pkcs11_uri_module_path(uri) != NULL && enr_pkcs11_uri_module_path(uri)[0] != '\0')
        *out = enr_pkcs11_uri_module_path(uri);
    else if (env != NULL && env[0] != '\0')
        *out = env;
    else
        return enr_error_set(err, ENR_E_USAGE,
                             "no PKCS#11 module given: pass --module /path/to/module.so, add "
                             "?module-path=/path/to/module.so to the pkcs11: URI, or set $%s",
                             ENV_MODULE);
    return ENR_OK;
}

static enr_code module_load(const char *path, token_module *m, enr_error *err)
{
    dlerror();
    m->library = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (m->library == NULL) {
        const char *why = dlerror();
        return enr_error_set(err, ENR_E_TOKEN, "cannot load PKCS#11 module %s: %s", path,
                             why ? why : "unknown reason");
    }
    /* POSIX guarantees a dlsym result converts to a function pointer. */
    CK_C_GetFunctionList get_list = (CK_C_GetFunctionList)dlsym(m->library, "C_GetFunctionList");
    if (get_list == NULL)
        return enr_error_set(err, ENR_E_TOKEN,
                             "%s is not a PKCS#11 module: it has no C_GetFunctionList", path);
    CK_RV rv = get_list(&m->fn);
    if (rv != CKR_OK || m->fn == NULL) {
        m->fn = NULL;
        return token_fail(err, ENR_E_TOKEN, rv, "%s: C_GetFunctionList failed", path);
    }
    /* OS locking: the library may be used from several threads. */
    CK_C_INITIALIZE_ARGS args;
    memset(&args, 0, sizeof args);
    args.flags = CKF_OS_LOCKING_OK;
    rv = m->fn->C_Initialize(&args);
    if (rv == CKR_CRYPTOKI_ALREADY_INITIALIZED)
        return ENR_OK;
    if (rv != CKR_OK) {
        m->fn = NULL;
        return token_fail(err, ENR_E_TOKEN, rv, "%s: C_Initialize failed", path);
    }
    m->finalize = true;
    return ENR_OK;
}

/* Finalizing ends every session this process has with the module, so a
 * key opened later from the same module must be freed first (see token.h). */
static void module_release(token_module *m)
{
    if (m->fn != NULL && m->finalize)
        m->fn->C_Finalize(NULL);
    if (m->library != NULL)
        dlclose(m->library);
    memset(m, 0, sizeof *m);
}

/* ---- finding the token ------------------------------------------------ */

static bool field_matches(const unsigned char *field, size_t size, const char *wanted)
{
    if (wanted == NULL)
        return true;
    size_t n = trimmed_length(field, size);
    return strlen(wanted) == n && memcmp(field, wanted, n) == 0;
}

static bool token_matches(const CK_TOKEN_INFO *info, const enr_pkcs11_uri *uri)
{
    return field_matches(info->label, sizeof info->label, enr_pkcs11_uri_token(uri)) &&
           field_matches(info->manufacturerID, sizeof info->manufacturerID,
                         enr_pkcs11_uri_manufacturer(uri)) &&
           field_matches(info->serialNumber, sizeof info->serialNumber,
                         enr_pkcs11_uri_serial(uri)) &&
           field_matches(info->model, sizeof info->model, enr_pkcs11_uri_model(uri));
}

static void append_token_label(char *list, size_t size, const CK_TOKEN_INFO *info)
{
    char label[QUOTE_MAX];
    quote_text(label, sizeof label, info->label, trimmed_length(info->label, sizeof info->label));
    size_t used = strlen(list);
    snprintf(list + used, size - used, "%s'%s'", used ? ", " : "", label);
}

static enr_code slot_list_get(const token_module *m, CK_SLOT_ID **out, CK_ULONG *count,
                              enr_error *err)
{
    *out = NULL;
    CK_RV rv = m->fn->C_GetSlotList(CK_TRUE, NULL, count);
    if (rv != CKR_OK)
        return token_fail(err, ENR_E_TOKEN, rv, "C_GetSlotList failed");
    if (*count == 0)
        return enr_error_set(err, ENR_E_NOTFOUND,
                             "the PKCS#11 module reports no token present (CKR_TOKEN_NOT_PRESENT)");
    CK_SLOT_ID *slots = calloc(*count, sizeof *slots);
    if (slots == NULL)
        return enr_error_set(err, ENR_E_NOMEM, "out of memory");
    rv = m->fn->C_GetSlotList(CK_TRUE, slots, count);
    if (rv != CKR_OK) {
        free(slots);
        return token_fail(err, ENR_E_TOKEN, rv, "C_GetSlotList failed");
    }
    *out = slots;
    return ENR_OK;
}

typedef struct slot_choice {
    CK_SLOT_ID slot;
    CK_TOKEN_INFO info;
    size_t matches;
    char seen[256]; /* labels of the initialized tokens, for messages */
} slot_choice;

static void slot_consider(const token_module *m, CK_SLOT_ID slot, const enr_pkcs11_uri *uri,
                          slot_choice *choice)
{
    long wanted_slot = enr_pkcs11_uri_slot_id(uri);
    CK_TOKEN_INFO info;
    if (wanted_slot >= 0 && slot != (CK_SLOT_ID)wanted_slot)
        return;
    if (m->fn->C_GetTokenInfo(slot, &info) != CKR_OK)
        return;
    /* An uninitialized token (SoftHSM2 always offers one) holds no keys. */
    if ((info.flags & CKF_TOKEN_INITIALIZED) == 0)
        return;
    append_token_label(choice->seen, sizeof choice->seen, &info);
    if (!token_matches(&info, uri))
        return;
    if (choice->matches++ == 0) {
        choice->slot = slot;
        choice->info = info;
    }
}

static enr_code slot_find(const token_module *m, const enr_pkcs11_uri *uri, slot_choice *choice,
                          enr_error *err)
{
    memset(choice, 0, sizeof *choice);
    CK_SLOT_ID *slots;
    CK_ULONG count;
    enr_code rc = slot_list_get(m, &slots, &count, err);
    if (rc != ENR_OK)
        return rc;
    for (CK_ULONG i = 0; i < count; i++)
        slot_consider(m, slots[i], uri, choice);
    free(slots);
    if (choice->matches == 1)
        return ENR_OK;
    if (choice->matches > 1)
        return enr_error_set(err, ENR_E_USAGE,
                             "%zu tokens match the URI (tokens present: %s); name one with "
                             "token=, serial= or slot-id=",
                             choice->matches, choice->seen);
    const char *present = choice->seen[0] ? choice->seen : "none initialized";
    const char *label = enr_pkcs11_uri_token(uri);
    if (label == NULL)
        return enr_error_set(err, ENR_E_NOTFOUND,
                             "no token matches the URI's slot, manufacturer, serial or model "
                             "(tokens present: %s)",
                             present);
    char wanted[QUOTE_MAX];
    quote_text(wanted, sizeof wanted, label, strlen(label));
    return enr_error_set(err, ENR_E_NOTFOUND, "no token '%s' matches the URI (tokens present: %s)",
                         wanted, present);
}

/* ---- the session and the PIN ------------------------------------------ */

typedef struct token_session {
    token_module module;
    CK_SESSION_HANDLE handle;
    bool open;
    /* Login state belongs to the whole application: only the one who logged
     * in logs out, so a key that found the token already logged in does
     * not end the login of the key that did. */
    bool logged_in;
    char label[QUOTE_MAX]; /* the token's, for messages */
} token_session;

/* A PIN either borrowed (option, environment) or read from a file (owned). */
typedef struct pin_value {
    const char *pin;
    char *owned;
} pin_value;

/* RFC 3986: ALPHA *( ALPHA / DIGIT / "+" / "-" / "." ) ":". */
static bool has_uri_scheme(const char *s)
{
    size_t i = 0;
    if (!((s[0] >= 'a' && s[0] <= 'z') || (s[0] >= 'A' && s[0] <= 'Z')))
        return false;
    while (s[i] != '\0' && s[i] != ':' && (strchr("+-.", s[i]) != NULL ||
                                           (s[i] >= 'a' && s[i] <= 'z') ||
                                           (s[i] >= 'A' && s[i] <= 'Z') ||
                                           (s[i] >= '0' && s[i] <= '9')))
        i++;
    return s[i] == ':';
}

/* "file:/p", "file:///p" or a plain path. Other forms (RFC 7512 mentions
 * "|command") are refused: running a program named by a URI is not safe. */
static enr_code pin_source_path(const char *source, const char **path, enr_error *err)
{
    if (strncmp(source, "file://", 7) == 0 && source[7] == '/')
        *path = source + 7;
    else if (strncmp(source, "file:", 5) == 0)
        *path = source + 5;
    else if (source[0] == '|' || has_uri_scheme(source))
        return enr_error_set(err, ENR_E_UNSUPPORTED,
                             "PKCS#11 URI: pin-source must be a file (file:/path/to/pin or a path)");
    else
        *path = source;
    if ((*path)[0] == '\0')
        return enr_error_set(err, ENR_E_USAGE, "PKCS#11 URI: pin-source names no file");
    return ENR_OK;
}

static enr_code pin_get(const enr_pkcs11_uri *uri, const enr_token_options *opts, pin_value *out,
                        enr_error *err)
{
    memset(out, 0, sizeof *out);
    const char *source = enr_pkcs11_uri_pin_source(uri);
    const char *env = getenv(ENV_PIN);
    if (opts->pin != NULL) {
        out->pin = opts->pin;
    } else if (source != NULL) {
        const char *path = NULL;
        enr_code rc = pin_source_path(source, &path, err);
        if (rc == ENR_OK)
            rc = enr_secret_read_file(path, &out->owned, err);
        if (rc != ENR_OK)
            return rc;
        out->pin = out->owned;
    } else if (env != NULL && env[0] != '\0') {
        out->pin = env;
    }
    return ENR_OK;
}

static void pin_release(pin_value *p)
{
    enr_secret_free(p->owned);
    memset(p, 0, sizeof *p);
}

static enr_code login_failed(token_session *s, CK_RV rv, enr_error *err)
{
    switch (rv) {
    case CKR_PIN_INCORRECT:
    case CKR_PIN_INVALID:
    case CKR_PIN_LEN_RANGE:
        /* The same code as a file key's wrong passphrase: the key is locked. */
        return token_fail(err, ENR_E_LOCKED, rv, "wrong PIN for token '%s'", s->label);
    case CKR_PIN_LOCKED:
        return token_fail(err, ENR_E_TOKEN, rv,
                          "the user PIN of token '%s' is locked; the security officer must "
                          "unlock it",
                          s->label);
    case CKR_PIN_EXPIRED:
        return token_fail(err, ENR_E_TOKEN, rv, "the user PIN of token '%s' has expired",
                          s->label);
    case CKR_USER_PIN_NOT_INITIALIZED:
        return token_fail(err, ENR_E_TOKEN, rv, "token '%s' has no user PIN set yet", s->label);
    default:
        return token_fail(err, ENR_E_TOKEN, rv, "cannot log in to token '%s'", s->label);
    }
}

static enr_code session_login(token_session *s, const char *pin, CK_FLAGS token_flags,
                              enr_error *err)
{
    bool pinpad = (token_flags & CKF_PROTECTED_AUTHENTICATION_PATH) != 0;
    if (pin == NULL && !pinpad) {
        if ((token_flags & CKF_LOGIN_REQUIRED) == 0)
            return ENR_OK;
        return enr_error_set(err, ENR_E_USAGE,
                             "token '%s' needs a PIN: pass --pin-file FILE, add "
                             "?pin-source=file:/path/to/pin to the URI, or set $%s",
                             s->label, ENV_PIN);
    }
    /* The module only reads the PIN; the cast is C_Login's missing const. */
    CK_UTF8CHAR *pin_bytes = (CK_UTF8CHAR *)pin;
    CK_ULONG pin_len = pin ? (CK_ULONG)strlen(pin) : 0;
    CK_RV rv = s->module.fn->C_Login(s->handle, CKU_USER, pin_bytes, pin_len);
    if (rv == CKR_USER_ALREADY_LOGGED_IN)
        return ENR_OK;
    if (rv != CKR_OK)
        return login_failed(s, rv, err);
    s->logged_in = true;
    return ENR_OK;
}

static enr_code session_open(token_session *s, CK_SLOT_ID slot, bool need_rw, enr_error *err)
{
    CK_FUNCTION_LIST *fn = s->module.fn;
    CK_RV rv = fn->C_OpenSession(slot, CKF_SERIAL_SESSION | CKF_RW_SESSION, NULL, NULL, &s->handle);
    /* Signing needs no writes, so a write-protected token is still usable. */
    if (rv == CKR_TOKEN_WRITE_PROTECTED && !need_rw)
        rv = fn->C_OpenSession(slot, CKF_SERIAL_SESSION, NULL, NULL, &s->handle);
    if (rv != CKR_OK)
        return token_fail(err, ENR_E_TOKEN, rv, "cannot open a session with token '%s'", s->label);
    s->open = true;
    return ENR_OK;
}

static void session_end(token_session *s)
{
    if (s->logged_in)
        s->module.fn->C_Logout(s->handle);
    if (s->open)
        s->module.fn->C_CloseSession(s->handle);
    module_release(&s->module);
    memset(s, 0, sizeof *s);
}

/* Module, token, session and login, as far as the URI and options say. On
 * failure the caller still calls session_end. */
static enr_code session_begin(const enr_pkcs11_uri *uri, const enr_token_options *opts,
                              bool need_rw, token_session *s, enr_error *err)
{
    const char *module_path = NULL;
    enr_code rc = module_path_choose(uri, opts, &module_path, err);
    if (rc == ENR_OK)
        rc = module_load(module_path, &s->module, err);
    slot_choice choice;
    if (rc == ENR_OK)
        rc = slot_find(&s->module, uri, &choice, err);
    if (rc != ENR_OK)
        return rc;
    quote_text(s->label, sizeof s->label, choice.info.label,
               trimmed_length(choice.info.label, sizeof choice.info.label));
    rc = session_open(s, choice.slot, need_rw, err);
    if (rc != ENR_OK)
        return rc;
    pin_value pin;
    rc = pin_get(uri, opts, &pin, err);
    if (rc == ENR_OK)
        rc = session_login(s, pin.pin, choice.info.flags, err);
    pin_release(&pin);
    return rc;
}

/* ---- objects ---------------------------------------------------------- */

/* What the URI says about a key object. */
typedef struct key_selector {
    const char *label;
    const unsigned char *id;
    size_t id_len;
} key_selector;

static enr_code selector_from_uri(const enr_pkcs11_uri *uri, key_selector *sel, enr_error *err)
{
    const char *type = enr_pkcs11_uri_type(uri);
    /* type=public names the same key pair; anything else is not a key we can use. */
    if (type != NULL && strcmp(type, "private") != 0 && strcmp(type, "public") != 0)
        return enr_error_set(err, ENR_E_USAGE,
                             "PKCS#11 URI: type=%s does not name a key; use type=private or "
                             "leave type out",
                             type);
    sel->label = enr_pkcs11_uri_object(uri);
    sel->id = enr_pkcs11_uri_id(uri, &sel->id_len);
    return ENR_OK;
}

/* "label 'x' and id 0102" for messages. */
static void selector_describe(const key_selector *sel, char *out, size_t size)
{
    char label[QUOTE_MAX] = "", id[QUOTE_MAX] = "";
    if (sel->label != NULL)
        quote_text(label, sizeof label, sel->label, strlen(sel->label));
    if (sel->id != NULL)
        hex_encode(id, sizeof id, sel->id, sel->id_len);
    snprintf(out, size, "%s%s%s%s%s%s", sel->label ? "label '" : "", label,
             sel->label ? "'" : "", sel->label && sel->id ? " and " : "",
             sel->id ? "id " : "", id);
    if (sel->label == NULL && sel->id == NULL)
        snprintf(out, size, "any label or id");
}

static CK_ULONG selector_template(const key_selector *sel, CK_OBJECT_CLASS *object_class,
                                  CK_ATTRIBUTE tmpl[3])
{
    CK_ULONG n = 0;
    tmpl[n++] = (CK_ATTRIBUTE){CKA_CLASS, object_class, sizeof *object_class};
    if (sel->label != NULL)
        tmpl[n++] = (CK_ATTRIBUTE){CKA_LABEL, (void *)sel->label, (CK_ULONG)strlen(sel->label)};
    if (sel->id != NULL)
        tmpl[n++] = (CK_ATTRIBUTE){CKA_ID, (void *)sel->id, (CK_ULONG)sel->id_len};
    return n;
}

/* Up to `max` objects matching `tmpl`; *count tells how many (capped). */
static enr_code objects_find(const token_session *s, CK_ATTRIBUTE *tmpl, CK_ULONG tmpl_len,
                             CK_OBJECT_HANDLE *found, CK_ULONG max, CK_ULONG *count,
                             enr_error *err)
{
    CK_FUNCTION_LIST *fn = s->module.fn;
    *count = 0;
    CK_RV rv = fn->C_FindObjectsInit(s->handle, tmpl, tmpl_len);
    if (rv != CKR_OK)
        return token_fail(err, ENR_E_TOKEN, rv, "cannot search token '%s'", s->label);
    rv = fn->C_FindObjects(s->handle, found, max, count);
    fn->C_FindObjectsFinal(s->handle);
    if (rv != CKR_OK)
        return token_fail(err, ENR_E_TOKEN, rv, "cannot search token '%s'", s->label);
    return ENR_OK;
}

static enr_code private_key_find(const token_session *s, const key_selector *sel,
                                 CK_OBJECT_HANDLE *out, enr_error *err)
{
    CK_OBJECT_CLASS object_class = CKO_PRIVATE_KEY;
    CK_ATTRIBUTE tmpl[3];
    CK_ULONG n = selector_template(sel, &object_class, tmpl);
    CK_OBJECT_HANDLE found[2];
    CK_ULONG count;
    enr_code rc = objects_find(s, tmpl, n, found, 2, &count, err);
    if (rc != ENR_OK)
        return rc;
    char which[2 * QUOTE_MAX + 16];
    selector_describe(sel, which, sizeof which);
    if (count == 0)
        return enr_error_set(err, ENR_E_NOTFOUND, "token '%s' has no private key with %s",
                             s->label, which);
    if (count > 1)
        return enr_error_set(err, ENR_E_USAGE,
                             "token '%s' has more than one private key with %s; name one with "
                             "object= and id=",
                             s->label, which);
    *out = found[0];
    return ENR_OK;
}

/* Reads one attribute into a new buffer (NUL-terminated one past *len, so a
 * label can be used as text). */
static enr_code attribute_get(const token_session *s, CK_OBJECT_HANDLE obj, CK_ATTRIBUTE_TYPE type,
                              const char *name, unsigned char **out, size_t *len, enr_error *err)
{
    *out = NULL;
    *len = 0;
    CK_FUNCTION_LIST *fn = s->module.fn;
    CK_ATTRIBUTE attr = {type, NULL, 0};
    CK_RV rv = fn->C_GetAttributeValue(s->handle, obj, &attr, 1);
    if (rv != CKR_OK || attr.ulValueLen == CK_UNAVAILABLE_INFORMATION)
        return token_fail(err, ENR_E_TOKEN, rv, "token '%s': cannot read %s", s->label, name);
    if (attr.ulValueLen > ATTRIBUTE_MAX)
        return enr_error_set(err, ENR_E_TOKEN, "token '%s': %s is implausibly large (%lu bytes)",
                             s->label, name, (unsigned long)attr.ulValueLen);
    unsigned char *buf = malloc(attr.ulValueLen + 1);
    if (buf == NULL)
        return enr_error_set(err, ENR_E_NOMEM, "out of memory");
    attr.pValue = buf;
    rv = fn->C_GetAttributeValue(s->handle, obj, &attr, 1);
    if (rv != CKR_OK) {
        free(buf);
        return token_fail(err, ENR_E_TOKEN, rv, "token '%s': cannot read %s", s->label, name);
    }
    buf[attr.ulValueLen] = '\0';
    *out = buf;
    *len = attr.ulValueLen;
    return ENR_OK;
}

static enr_code attribute_get_bool(const token_session *s, CK_OBJECT_HANDLE obj,
                                   CK_ATTRIBUTE_TYPE type, const char *name, bool *out,
                                   enr_error *err)
{
    CK_BBOOL value = CK_FALSE;
    CK_ATTRIBUTE attr = {type, &value, sizeof value};
    CK_RV rv = s->module.fn->C_GetAttributeValue(s->handle, obj, &attr, 1);
    if (rv != CKR_OK)
        return token_fail(err, ENR_E_TOKEN, rv, "token '%s': cannot read %s", s->label, name);
    *out = value != CK_FALSE;
    return ENR_OK;
}

/* A boolean that tokens may leave out, then taken as `absent`. */
static bool attribute_bool_or(const token_session *s, CK_OBJECT_HANDLE obj, CK_ATTRIBUTE_TYPE type,
                              bool absent)
{
    CK_BBOOL value = CK_FALSE;
    CK_ATTRIBUTE attr = {type, &value, sizeof value};
    if (s->module.fn->C_GetAttributeValue(s->handle, obj, &attr, 1) != CKR_OK)
        return absent;
    return value != CK_FALSE;
}

static enr_code attribute_get_ulong(const token_session *s, CK_OBJECT_HANDLE obj,
                                    CK_ATTRIBUTE_TYPE type, const char *name, CK_ULONG *out,
                                    enr_error *err)
{
    CK_ATTRIBUTE attr = {type, out, sizeof *out};
    CK_RV rv = s->module.fn->C_GetAttributeValue(s->handle, obj, &attr, 1);
    if (rv != CKR_OK)
        return token_fail(err, ENR_E_TOKEN, rv, "token '%s': cannot read %s", s->label, name);
    return ENR_OK;
}

/* ---- the public key --------------------------------------------------- */

static enr_code ec_group_name(const unsigned char *params, size_t len, const char **out,
                              enr_error *err)
{
    const unsigned char *p = params;
    ASN1_OBJECT *oid = d2i_ASN1_OBJECT(NULL, &p, (long)len);
    bool whole = oid != NULL && p == params + len;
    int nid = whole ? OBJ_obj2nid(oid) : NID_undef;
    ASN1_OBJECT_free(oid);
    const char *name = nid != NID_undef ? OBJ_nid2sn(nid) : NULL;
    if (name == NULL)
        return enr_error_openssl(err, ENR_E_UNSUPPORTED,
                                 "the key's CKA_EC_PARAMS is not a named curve we know");
    *out = name;
    return ENR_OK;
}

static EVP_PKEY *pkey_from_params(const char *algorithm, OSSL_PARAM_BLD *bld)
{
    OSSL_PARAM *params = OSSL_PARAM_BLD_to_param(bld);
    EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new_from_name(NULL, algorithm, NULL);
    EVP_PKEY *key = NULL;
    if (params == NULL || ctx == NULL || EVP_PKEY_fromdata_init(ctx) != 1 ||
        EVP_PKEY_fromdata(ctx, &key, EVP_PKEY_PUBLIC_KEY, params) != 1)
        key = NULL;
    EVP_PKEY_CTX_free(ctx);
    OSSL_PARAM_free(params);
    return key;
}

static enr_code ec_public_key_build(const char *group, const unsigned char *point_der,
                                    size_t point_der_len, EVP_PKEY **out, enr_error *err)
{
    /* CKA_EC_POINT is the point wrapped in a DER OCTET STRING (PKCS#11 2.40 §2.3.3). */
    const unsigned char *p = point_der;
    ASN1_OCTET_STRING *point = d2i_ASN1_OCTET_STRING(NULL, &p, (long)point_der_len);
    if (point == NULL || p != point_der + point_der_len) {
        ASN1_OCTET_STRING_free(point);
        return enr_error_openssl(err, ENR_E_PARSE,
                                 "the key's CKA_EC_POINT is not a DER OCTET STRING");
    }
    OSSL_PARAM_BLD *bld = OSSL_PARAM_BLD_new();
    EVP_PKEY *key = NULL;
    if (bld != NULL &&
        OSSL_PARAM_BLD_push_utf8_string(bld, OSSL_PKEY_PARAM_GROUP_NAME, group, 0) == 1 &&
        OSSL_PARAM_BLD_push_octet_string(bld, OSSL_PKEY_PARAM_PUB_KEY,
                                         ASN1_STRING_get0_data(point),
                                         (size_t)ASN1_STRING_length(point)) == 1)
        key = pkey_from_params("EC", bld);
    OSSL_PARAM_BLD_free(bld);
    ASN1_OCTET_STRING_free(point);
    if (key == NULL)
        return enr_error_openssl(err, ENR_E_PARSE,
                                 "the key's CKA_EC_POINT is not a valid %s point", group);
    *out = key;
    return ENR_OK;
}

static enr_code rsa_public_key_build(const unsigned char *modulus, size_t modulus_len,
                                     const unsigned char *exponent, size_t exponent_len,
                                     EVP_PKEY **out, enr_error *err)
{
    BIGNUM *n = BN_bin2bn(modulus, (int)modulus_len, NULL);
    BIGNUM *e = BN_bin2bn(exponent, (int)exponent_len, NULL);
    OSSL_PARAM_BLD *bld = OSSL_PARAM_BLD_new();
    EVP_PKEY *key = NULL;
    if (n != NULL && e != NULL && bld != NULL &&
        OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_N, n) == 1 &&
        OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_E, e) == 1)
        key = pkey_from_params("RSA", bld);
    OSSL_PARAM_BLD_free(bld);
    BN_free(n);
    BN_free(e);
    if (key == NULL)
        return enr_error_openssl(err, ENR_E_PARSE,
                                 "the key's CKA_MODULUS/CKA_PUBLIC_EXPONENT do not form an RSA key");
    *out = key;
    return ENR_OK;
}

static enr_code ec_public_key_read(const token_session *s, CK_OBJECT_HANDLE obj, EVP_PKEY **out,
                                   enr_error *err)
{
    unsigned char *params = NULL, *point = NULL;
    size_t params_len, point_len;
    const char *group = NULL;
    enr_code rc = attribute_get(s, obj, CKA_EC_PARAMS, "CKA_EC_PARAMS", &params, &params_len, err);
    if (rc == ENR_OK)
        rc = ec_group_name(params, params_len, &group, err);
    if (rc == ENR_OK)
        rc = attribute_get(s, obj, CKA_EC_POINT, "CKA_EC_POINT", &point, &point_len, err);
    if (rc == ENR_OK)
        rc = ec_public_key_build(group, point, point_len, out, err);
    free(params);
    free(point);
    return rc;
}

static enr_code rsa_public_key_read(const token_session *s, CK_OBJECT_HANDLE obj, EVP_PKEY **out,
                                    enr_error *err)
{
    unsigned char *modulus = NULL, *exponent = NULL;
    size_t modulus_len, exponent_len;
    enr_code rc = attribute_get(s, obj, CKA_MODULUS, "CKA_MODULUS", &modulus, &modulus_len, err);
    if (rc == ENR_OK)
        rc = attribute_get(s, obj, CKA_PUBLIC_EXPONENT, "CKA_PUBLIC_EXPONENT", &exponent,
                           &exponent_len, err);
    if (rc == ENR_OK)
        rc = rsa_public_key_build(modulus, modulus_len, exponent, exponent_len, out, err);
    free(modulus);
    free(exponent);
    return rc;
}

/* The public key object of the pair: by the private key's own CKA_ID first
 * (the PKCS#11 convention that ties a pair together), else by the URI. */
static bool public_key_object_find(const token_session *s, CK_OBJECT_HANDLE private_key,
                                   CK_KEY_TYPE key_type, const key_selector *sel,
                                   CK_OBJECT_HANDLE *out)
{
    CK_OBJECT_CLASS object_class = CKO_PUBLIC_KEY;
    CK_ATTRIBUTE tmpl[4];
    CK_OBJECT_HANDLE found[2];
    CK_ULONG count = 0;
    unsigned char *id = NULL;
    size_t id_len = 0;
    if (attribute_get(s, private_key, CKA_ID, "CKA_ID", &id, &id_len, NULL) == ENR_OK &&
        id_len > 0) {
        key_selector by_id = {NULL, id, id_len};
        CK_ULONG n = selector_template(&by_id, &object_class, tmpl);
        tmpl[n++] = (CK_ATTRIBUTE){CKA_KEY_TYPE, &key_type, sizeof key_type};
        objects_find(s, tmpl, n, found, 2, &count, NULL);
    }
    free(id);
    if (count != 1) {
        CK_ULONG n = selector_template(sel, &object_class, tmpl);
        tmpl[n++] = (CK_ATTRIBUTE){CKA_KEY_TYPE, &key_type, sizeof key_type};
        if (objects_find(s, tmpl, n, found, 2, &count, NULL) != ENR_OK)
            count = 0;
    }
    if (count != 1)
        return false;
    *out = found[0];
    return true;
}

/* From the public key object when there is one; otherwise from the private
 * key, which for RSA (and on some tokens EC) carries the public parts too. */
static enr_code public_key_read(const token_session *s, CK_OBJECT_HANDLE private_key,
                                CK_KEY_TYPE key_type, const key_selector *sel, EVP_PKEY **out,
                                enr_error *err)
{
    CK_OBJECT_HANDLE source = private_key;
    bool have_object = public_key_object_find(s, private_key, key_type, sel, &source);
    enr_code rc = key_type == CKK_EC ? ec_public_key_read(s, source, out, err)
                                     : rsa_public_key_read(s, source, out, err);
    if (rc != ENR_OK && !have_object)
        enr_error_prefix(err, "no public key object matches the private key, and its public "
                              "half is not on the private key either");
    return rc;
}

/* ---- opening a key ---------------------------------------------------- */

struct enr_token_key {
    token_session session;
    CK_OBJECT_HANDLE private_key;
    CK_KEY_TYPE key_type;
    size_t signature_max; /* bytes C_Sign can return for this key */
};

static enr_code private_key_check(const token_session *s, CK_OBJECT_HANDLE key,
                                  CK_KEY_TYPE *key_type, enr_error *err)
{
    enr_code rc = attribute_get_ulong(s, key, CKA_KEY_TYPE, "CKA_KEY_TYPE", key_type, err);
    if (rc != ENR_OK)
        return rc;
    if (*key_type != CKK_EC && *key_type != CKK_RSA)
        return enr_error_set(err, ENR_E_UNSUPPORTED,
                             "token '%s': the key is of type 0x%lx; only EC and RSA keys are "
                             "supported",
                             s->label, (unsigned long)*key_type);
    if (!attribute_bool_or(s, key, CKA_SIGN, true))
        return enr_error_set(err, ENR_E_UNSUPPORTED,
                             "token '%s': the key is not allowed to sign (CKA_SIGN is false)",
                             s->label);
    /* These keys want the PIN again before every signature; we do not keep it. */
    if (attribute_bool_or(s, key, CKA_ALWAYS_AUTHENTICATE, false))
        return enr_error_set(err, ENR_E_UNSUPPORTED,
                             "token '%s': the key needs the PIN for every signature "
                             "(CKA_ALWAYS_AUTHENTICATE), which enroll does not support",
                             s->label);
    return ENR_OK;
}

static enr_code key_open(enr_token_key *key, const enr_pkcs11_uri *uri,
                         const enr_token_options *opts, EVP_PKEY **pub, enr_error *err)
{
    key_selector sel;
    enr_code rc = selector_from_uri(uri, &sel, err);
    if (rc == ENR_OK)
        rc = session_begin(uri, opts, false, &key->session, err);
    if (rc == ENR_OK)
        rc = private_key_find(&key->session, &sel, &key->private_key, err);
    if (rc == ENR_OK)
        rc = private_key_check(&key->session, key->private_key, &key->key_type, err);
    if (rc == ENR_OK)
        rc = public_key_read(&key->session, key->private_key, key->key_type, &sel, pub, err);
    if (rc == ENR_OK) {
        int size = EVP_PKEY_get_size(*pub);
        key->signature_max = size > 0 ? (size_t)size : 0;
    }
    return rc;
}

enr_code enr_token_key_open(const char *uri_text, const enr_token_options *opts,
                            enr_token_key **out, EVP_PKEY **pub, enr_error *err)
{
    *out = NULL;
    *pub = NULL;
    static const enr_token_options no_options = {NULL, NULL};
    enr_pkcs11_uri *uri;
    enr_code rc = enr_pkcs11_uri_parse(uri_text, &uri, err);
    if (rc != ENR_OK)
        return rc;
    enr_token_key *key = calloc(1, sizeof *key);
    if (key == NULL) {
        enr_pkcs11_uri_free(uri);
        return enr_error_set(err, ENR_E_NOMEM, "out of memory");
    }
    rc = key_open(key, uri, opts ? opts : &no_options, pub, err);
    enr_pkcs11_uri_free(uri);
    if (rc != ENR_OK) {
        EVP_PKEY_free(*pub);
        *pub = NULL;
        enr_token_key_free(key);
        return rc;
    }
    *out = key;
    return ENR_OK;
}

void enr_token_key_free(enr_token_key *key)
{
    if (key == NULL)
        return;
    session_end(&key->session);
    free(key);
}

/* ---- signing ---------------------------------------------------------- */

/* One C_Sign into a buffer sized from the public key, so there is no
 * length query that could leave an operation active on a failed malloc. */
static enr_code token_sign_mech(enr_token_key *key, CK_MECHANISM *mech,
                                const unsigned char *data, size_t len, unsigned char **out,
                                size_t *out_len, enr_error *err)
{
    token_session *s = &key->session;
    unsigned char *buf = OPENSSL_malloc(key->signature_max > 0 ? key->signature_max : 1);
    if (buf == NULL)
        return enr_error_set(err, ENR_E_NOMEM, "out of memory");
    CK_ULONG sig_len = (CK_ULONG)key->signature_max;
    CK_RV rv = s->module.fn->C_SignInit(s->handle, mech, key->private_key);
    if (rv == CKR_OK)
        rv = s->module.fn->C_Sign(s->handle, (CK_BYTE *)data, (CK_ULONG)len, buf, &sig_len);
    if (rv != CKR_OK) {
        OPENSSL_free(buf);
        return token_fail(err, ENR_E_TOKEN, rv, "token '%s': signing failed", s->label);
    }
    *out = buf;
    *out_len = sig_len;
    return ENR_OK;
}

static enr_code token_sign(enr_token_key *key, CK_MECHANISM_TYPE mechanism,
                           const unsigned char *data, size_t len, unsigned char **out,
                           size_t *out_len, enr_error *err)
{
    CK_MECHANISM mech = {mechanism, NULL, 0};
    return token_sign_mech(key, &mech, data, len, out, out_len, err);
}

/* PKCS#11 gives r||s; X.509 wants the DER ECDSA-Sig-Value. */
static enr_code ecdsa_raw_to_der(const unsigned char *raw, size_t len, unsigned char **out,
                                 size_t *out_len, enr_error *err)
{
    if (len == 0 || len % 2 != 0 || len > INT_MAX)
        return enr_error_set(err, ENR_E_TOKEN, "the token returned an ECDSA signature of %zu bytes",
                             len);
    int half = (int)(len / 2);
    BIGNUM *r = BN_bin2bn(raw, half, NULL);
    BIGNUM *s = BN_bin2bn(raw + half, half, NULL);
    ECDSA_SIG *sig = ECDSA_SIG_new();
    if (r == NULL || s == NULL || sig == NULL || ECDSA_SIG_set0(sig, r, s) != 1) {
        BN_free(r);
        BN_free(s);
        ECDSA_SIG_free(sig);
        return enr_error_openssl(err, ENR_E_CRYPTO, "cannot encode the ECDSA signature");
    }
    unsigned char *der = NULL;
    int der_len = i2d_ECDSA_SIG(sig, &der);
    ECDSA_SIG_free(sig);
    if (der_len <= 0)
        return enr_error_openssl(err, ENR_E_CRYPTO, "cannot encode the ECDSA signature");
    *out = der;
    *out_len = (size_t)der_len;
    return ENR_OK;
}

/* PKCS#1 v1.5 signs DigestInfo ::= SEQUENCE { AlgorithmIdentifier, OCTET STRING }. */
static enr_code digest_info_encode(const EVP_MD *md, const unsigned char *digest,
                                   unsigned int digest_len, unsigned char **out, size_t *out_len,
                                   enr_error *err)
{
    X509_SIG *info = X509_SIG_new();
    X509_ALGOR *alg = NULL;
    ASN1_OCTET_STRING *value = NULL;
    ASN1_OBJECT *oid = OBJ_nid2obj(EVP_MD_get_type(md));
    unsigned char *der = NULL;
    int der_len = 0;
    if (info != NULL && oid != NULL) {
        X509_SIG_getm(info, &alg, &value);
        if (X509_ALGOR_set0(alg, oid, V_ASN1_NULL, NULL) == 1 &&
            ASN1_OCTET_STRING_set(value, digest, (int)digest_len) == 1)
            der_len = i2d_X509_SIG(info, &der);
    }
    X509_SIG_free(info);
    if (der_len <= 0)
        return enr_error_openssl(err, ENR_E_CRYPTO, "cannot encode the DigestInfo for %s",
                                 EVP_MD_get0_name(md));
    *out = der;
    *out_len = (size_t)der_len;
    return ENR_OK;
}

static enr_code ec_sign(enr_token_key *key, const unsigned char *digest, unsigned int digest_len,
                        unsigned char **sig, size_t *sig_len, enr_error *err)
{
    unsigned char *raw = NULL;
    size_t raw_len = 0;
    /* SoftHSM2 (and many tokens) lack CKM_ECDSA_SHA256: hash here, sign the hash. */
    enr_code rc = token_sign(key, CKM_ECDSA, digest, digest_len, &raw, &raw_len, err);
    if (rc == ENR_OK)
        rc = ecdsa_raw_to_der(raw, raw_len, sig, sig_len, err);
    OPENSSL_free(raw);
    return rc;
}

static enr_code rsa_sign(enr_token_key *key, const EVP_MD *md, const unsigned char *digest,
                         unsigned int digest_len, unsigned char **sig, size_t *sig_len,
                         enr_error *err)
{
    unsigned char *info = NULL;
    size_t info_len = 0;
    /* Plain CKM_RSA_PKCS over our DigestInfo works with every hash on every
     * token, where CKM_SHAxxx_RSA_PKCS support varies. */
    enr_code rc = digest_info_encode(md, digest, digest_len, &info, &info_len, err);
    if (rc == ENR_OK)
        rc = token_sign(key, CKM_RSA_PKCS, info, info_len, sig, sig_len, err);
    OPENSSL_free(info);
    return rc;
}

/* CKM_RSA_PKCS_PSS names the hash twice (the one the caller used and the
 * one inside MGF1); TLS uses the same hash for both. */
static enr_code pss_params_for(const EVP_MD *md, CK_RSA_PKCS_PSS_PARAMS *out, enr_error *err)
{
    static const struct {
        int nid;
        CK_MECHANISM_TYPE hash;
        CK_RSA_PKCS_MGF_TYPE mgf;
    } PSS_HASHES[] = {
        {NID_sha256, CKM_SHA256, CKG_MGF1_SHA256},
        {NID_sha384, CKM_SHA384, CKG_MGF1_SHA384},
        {NID_sha512, CKM_SHA512, CKG_MGF1_SHA512},
    };
    for (size_t i = 0; i < sizeof PSS_HASHES / sizeof PSS_HASHES[0]; i++)
        if (PSS_HASHES[i].nid == EVP_MD_get_type(md)) {
            out->hashAlg = PSS_HASHES[i].hash;
            out->mgf = PSS_HASHES[i].mgf;
            out->sLen = (CK_ULONG)EVP_MD_get_size(md);
            return ENR_OK;
        }
    return enr_error_set(err, ENR_E_UNSUPPORTED, "RSA-PSS with %s is not supported",
                         EVP_MD_get0_name(md));
}

enr_code enr_token_key_sign_digest(enr_token_key *key, const EVP_MD *md, bool pss,
                                   const unsigned char *digest, size_t digest_len,
                                   unsigned char **sig, size_t *sig_len, enr_error *err)
{
    *sig = NULL;
    *sig_len = 0;
    int md_size = EVP_MD_get_size(md);
    if (md_size <= 0 || digest_len != (size_t)md_size)
        return enr_error_set(err, ENR_E_USAGE, "a %s digest has %d bytes, not %zu",
                             EVP_MD_get0_name(md), md_size, digest_len);
    if (key->key_type == CKK_EC) {
        if (pss)
            return enr_error_set(err, ENR_E_USAGE, "RSA-PSS asked of an EC key");
        return ec_sign(key, digest, (unsigned int)digest_len, sig, sig_len, err);
    }
    if (!pss)
        return rsa_sign(key, md, digest, (unsigned int)digest_len, sig, sig_len, err);
    CK_RSA_PKCS_PSS_PARAMS params;
    enr_code rc = pss_params_for(md, &params, err);
    if (rc != ENR_OK)
        return rc;
    CK_MECHANISM mech = {CKM_RSA_PKCS_PSS, &params, sizeof params};
    return token_sign_mech(key, &mech, digest, digest_len, sig, sig_len, err);
}

enr_code enr_token_key_sign(enr_token_key *key, const EVP_MD *md, const unsigned char *tbs,
                            size_t tbs_len, unsigned char **sig, size_t *sig_len, enr_error *err)
{
    *sig = NULL;
    *sig_len = 0;
    if (md == NULL)
        md = EVP_sha256();
    unsigned char digest[EVP_MAX_MD_SIZE];
    unsigned int digest_len = 0;
    if (EVP_Digest(tbs, tbs_len, digest, &digest_len, md, NULL) != 1)
        return enr_error_openssl(err, ENR_E_CRYPTO, "cannot hash the data to sign with %s",
                                 EVP_MD_get0_name(md));
    if (key->key_type == CKK_EC)
        return ec_sign(key, digest, digest_len, sig, sig_len, err);
    return rsa_sign(key, md, digest, digest_len, sig, sig_len, err);
}

/* ---- facts ------------------------------------------------------------ */

/* Copies a label for display: control bytes become '?', and a cut never
 * splits a UTF-8 sequence. */
static void label_copy(char *dst, size_t dst_size, const unsigned char *src, size_t len)
{
    size_t n = len < dst_size - 1 ? len : dst_size - 1;
    if (n < len)
        while (n > 0 && (src[n] & 0xc0) == 0x80)
            n--;
    for (size_t i = 0; i < n; i++)
        dst[i] = (src[i] < 0x20 || src[i] == 0x7f) ? '?' : (char)src[i];
    dst[n] = '\0';
}

/* An id longer than the field shows its start and "..". */
static void id_hex_copy(char *dst, size_t dst_size, const unsigned char *id, size_t len)
{
    size_t fits = (dst_size - 1) / 2;
    if (len <= fits) {
        hex_encode(dst, dst_size, id, len);
        return;
    }
    hex_encode(dst, dst_size - 2, id, fits - 1);
    strcat(dst, "..");
}

enr_code enr_token_key_facts(const enr_token_key *key, enr_signer_token_facts *out,
                             enr_error *err)
{
    memset(out, 0, sizeof *out);
    const token_session *s = &key->session;
    unsigned char *label = NULL, *id = NULL;
    size_t label_len = 0, id_len = 0;
    enr_code rc = attribute_get_bool(s, key->private_key, CKA_SENSITIVE, "CKA_SENSITIVE",
                                     &out->sensitive, err);
    if (rc == ENR_OK)
        rc = attribute_get_bool(s, key->private_key, CKA_EXTRACTABLE, "CKA_EXTRACTABLE",
                                &out->extractable, err);
    if (rc == ENR_OK)
        rc = attribute_get(s, key->private_key, CKA_LABEL, "CKA_LABEL", &label, &label_len, err);
    if (rc == ENR_OK)
        rc = attribute_get(s, key->private_key, CKA_ID, "CKA_ID", &id, &id_len, err);
    if (rc == ENR_OK) {
        label_copy(out->label, sizeof out->label, label, label_len);
        id_hex_copy(out->id_hex, sizeof out->id_hex, id, id_len);
    }
    free(label);
    free(id);
    return rc;
}

/* ---- generating a key pair -------------------------------------------- */

typedef struct keygen_spec {
    enr_key_type type;
    CK_KEY_TYPE key_type;
    int curve_nid;      /* EC */
    CK_ULONG rsa_bits;  /* RSA */
} keygen_spec;

static const keygen_spec KEYGEN_SPECS[] = {
    {ENR_KEY_EC_P256, CKK_EC, NID_X9_62_prime256v1, 0},
    {ENR_KEY_EC_P384, CKK_EC, NID_secp384r1, 0},
    {ENR_KEY_RSA_2048, CKK_RSA, NID_undef, 2048},
    {ENR_KEY_RSA_3072, CKK_RSA, NID_undef, 3072},
    {ENR_KEY_RSA_4096, CKK_RSA, NID_undef, 4096},
};
#define KEYGEN_SPEC_COUNT (sizeof KEYGEN_SPECS / sizeof KEYGEN_SPECS[0])

static enr_code keygen_spec_find(enr_key_type type, const keygen_spec **out, enr_error *err)
{
    for (size_t i = 0; i < KEYGEN_SPEC_COUNT; i++)
        if (KEYGEN_SPECS[i].type == type) {
            *out = &KEYGEN_SPECS[i];
            return ENR_OK;
        }
    if (type == ENR_KEY_ED25519)
        return enr_error_set(err, ENR_E_UNSUPPORTED,
                             "Ed25519 keys cannot be generated in a PKCS#11 token (few tokens "
                             "support them); use --type ec-p256, ec-p384 or rsa-2048");
    return enr_error_set(err, ENR_E_USAGE, "unknown key type %d", (int)type);
}

/* The values the key generation templates point at. */
typedef struct keygen_values {
    CK_OBJECT_CLASS public_class;
    CK_OBJECT_CLASS private_class;
    CK_KEY_TYPE key_type;
    CK_BBOOL yes;
    CK_BBOOL no;
    CK_ULONG modulus_bits;
    unsigned char exponent[3]; /* 65537 */
    unsigned char *ec_params;  /* DER OID, OPENSSL_malloc'ed */
    size_t ec_params_len;
    const char *label;
    unsigned char id[GENERATED_ID_LEN];
    const unsigned char *id_ptr;
    size_t id_len;
} keygen_values;

static enr_code keygen_values_init(keygen_values *v, const keygen_spec *spec,
                                   const key_selector *sel, enr_error *err)
{
    memset(v, 0, sizeof *v);
    v->public_class = CKO_PUBLIC_KEY;
    v->private_class = CKO_PRIVATE_KEY;
    v->key_type = spec->key_type;
    v->yes = CK_TRUE;
    v->no = CK_FALSE;
    v->modulus_bits = spec->rsa_bits;
    v->exponent[0] = 0x01;
    v->exponent[1] = 0x00;
    v->exponent[2] = 0x01;
    v->label = sel->label;
    v->id_ptr = sel->id;
    v->id_len = sel->id_len;
    if (v->id_ptr == NULL) {
        if (RAND_bytes(v->id, sizeof v->id) != 1)
            return enr_error_openssl(err, ENR_E_CRYPTO, "cannot make a random key id");
        v->id_ptr = v->id;
        v->id_len = sizeof v->id;
    }
    if (spec->key_type == CKK_EC) {
        int n = i2d_ASN1_OBJECT(OBJ_nid2obj(spec->curve_nid), &v->ec_params);
        if (n <= 0)
            return enr_error_openssl(err, ENR_E_CRYPTO, "cannot encode the curve OID");
        v->ec_params_len = (size_t)n;
    }
    return ENR_OK;
}

static void keygen_values_free(keygen_values *v)
{
    OPENSSL_free(v->ec_params);
    v->ec_params = NULL;
}

static CK_ULONG common_template(keygen_values *v, CK_ATTRIBUTE *t)
{
    CK_ULONG n = 0;
    t[n++] = (CK_ATTRIBUTE){CKA_KEY_TYPE, &v->key_type, sizeof v->key_type};
    t[n++] = (CK_ATTRIBUTE){CKA_TOKEN, &v->yes, sizeof v->yes};
    t[n++] = (CK_ATTRIBUTE){CKA_ID, (void *)v->id_ptr, (CK_ULONG)v->id_len};
    if (v->label != NULL)
        t[n++] = (CK_ATTRIBUTE){CKA_LABEL, (void *)v->label, (CK_ULONG)strlen(v->label)};
    return n;
}

static CK_ULONG public_template(keygen_values *v, CK_ATTRIBUTE *t)
{
    CK_ULONG n = common_template(v, t);
    t[n++] = (CK_ATTRIBUTE){CKA_CLASS, &v->public_class, sizeof v->public_class};
    t[n++] = (CK_ATTRIBUTE){CKA_PRIVATE, &v->no, sizeof v->no};
    t[n++] = (CK_ATTRIBUTE){CKA_VERIFY, &v->yes, sizeof v->yes};
    if (v->key_type == CKK_EC) {
        t[n++] = (CK_ATTRIBUTE){CKA_EC_PARAMS, v->ec_params, (CK_ULONG)v->ec_params_len};
    } else {
        t[n++] = (CK_ATTRIBUTE){CKA_MODULUS_BITS, &v->modulus_bits, sizeof v->modulus_bits};
        t[n++] = (CK_ATTRIBUTE){CKA_PUBLIC_EXPONENT, v->exponent, sizeof v->exponent};
    }
    return n;
}

static CK_ULONG private_template(keygen_values *v, CK_ATTRIBUTE *t)
{
    CK_ULONG n = common_template(v, t);
    t[n++] = (CK_ATTRIBUTE){CKA_CLASS, &v->private_class, sizeof v->private_class};
    t[n++] = (CK_ATTRIBUTE){CKA_PRIVATE, &v->yes, sizeof v->yes};
    t[n++] = (CK_ATTRIBUTE){CKA_SENSITIVE, &v->yes, sizeof v->yes};
    t[n++] = (CK_ATTRIBUTE){CKA_EXTRACTABLE, &v->no, sizeof v->no};
    t[n++] = (CK_ATTRIBUTE){CKA_SIGN, &v->yes, sizeof v->yes};
    return n;
}

/* Every key object (either class) the selector names, so that --force
 * leaves no half of an old pair behind. */
static enr_code existing_keys_find(const token_session *s, const key_selector *sel,
                                   CK_OBJECT_HANDLE *found, CK_ULONG max, CK_ULONG *count,
                                   enr_error *err)
{
    static const CK_OBJECT_CLASS classes[] = {CKO_PRIVATE_KEY, CKO_PUBLIC_KEY};
    *count = 0;
    for (size_t i = 0; i < 2; i++) {
        CK_OBJECT_CLASS object_class = classes[i];
        CK_ATTRIBUTE tmpl[3];
        CK_ULONG n = selector_template(sel, &object_class, tmpl);
        CK_ULONG got = 0;
        enr_code rc = objects_find(s, tmpl, n, found + *count, max - *count, &got, err);
        if (rc != ENR_OK)
            return rc;
        *count += got;
    }
    return ENR_OK;
}

static enr_code existing_keys_clear(const token_session *s, const key_selector *sel,
                                    bool overwrite, enr_error *err)
{
    CK_OBJECT_HANDLE found[32];
    CK_ULONG count;
    enr_code rc = existing_keys_find(s, sel, found, 32, &count, err);
    if (rc != ENR_OK || count == 0)
        return rc;
    char which[2 * QUOTE_MAX + 16];
    selector_describe(sel, which, sizeof which);
    if (!overwrite)
        return enr_error_set(err, ENR_E_EXISTS,
                             "token '%s' already has a key with %s; refusing to replace it (use "
                             "--force to replace it)",
                             s->label, which);
    for (CK_ULONG i = 0; i < count; i++) {
        CK_RV rv = s->module.fn->C_DestroyObject(s->handle, found[i]);
        if (rv != CKR_OK)
            return token_fail(err, ENR_E_TOKEN, rv, "token '%s': cannot delete the old key with %s",
                              s->label, which);
    }
    return ENR_OK;
}

/* Some tokens silently ignore template attributes; a key that came out
 * exportable must not be used as if it were not. */
static enr_code generated_key_check(const token_session *s, CK_OBJECT_HANDLE private_key,
                                    enr_error *err)
{
    bool sensitive = false, extractable = true;
    enr_code rc = attribute_get_bool(s, private_key, CKA_SENSITIVE, "CKA_SENSITIVE", &sensitive,
                                     err);
    if (rc == ENR_OK)
        rc = attribute_get_bool(s, private_key, CKA_EXTRACTABLE, "CKA_EXTRACTABLE", &extractable,
                                err);
    if (rc == ENR_OK && (!sensitive || extractable))
        rc = enr_error_set(err, ENR_E_TOKEN,
                           "token '%s' made the new private key %s; it has been deleted",
                           s->label, sensitive ? "extractable" : "not sensitive");
    return rc;
}

static enr_code key_pair_generate(const token_session *s, const keygen_spec *spec,
                                  keygen_values *v, enr_error *err)
{
    CK_ATTRIBUTE public_attrs[12], private_attrs[12];
    CK_ULONG public_len = public_template(v, public_attrs);
    CK_ULONG private_len = private_template(v, private_attrs);
    CK_MECHANISM mech = {spec->key_type == CKK_EC ? CKM_EC_KEY_PAIR_GEN
                                                  : CKM_RSA_PKCS_KEY_PAIR_GEN,
                         NULL, 0};
    CK_OBJECT_HANDLE public_key, private_key;
    CK_RV rv = s->module.fn->C_GenerateKeyPair(s->handle, &mech, public_attrs, public_len,
                                               private_attrs, private_len, &public_key,
                                               &private_key);
    if (rv != CKR_OK)
        return token_fail(err, ENR_E_TOKEN, rv, "token '%s': key pair generation failed",
                          s->label);
    enr_code rc = generated_key_check(s, private_key, err);
    if (rc != ENR_OK) {
        s->module.fn->C_DestroyObject(s->handle, private_key);
        s->module.fn->C_DestroyObject(s->handle, public_key);
    }
    return rc;
}

static enr_code key_generate(const keygen_spec *spec, const enr_pkcs11_uri *uri,
                             const enr_token_options *opts, bool overwrite, enr_error *err)
{
    key_selector sel;
    enr_code rc = selector_from_uri(uri, &sel, err);
    if (rc != ENR_OK)
        return rc;
    if (sel.label == NULL && sel.id == NULL)
        return enr_error_set(err, ENR_E_USAGE,
                             "PKCS#11 URI: name the new key with object=LABEL (and optionally "
                             "id=...)");
    token_session session;
    memset(&session, 0, sizeof session);
    keygen_values values;
    rc = session_begin(uri, opts, true, &session, err);
    if (rc == ENR_OK)
        rc = existing_keys_clear(&session, &sel, overwrite, err);
    if (rc == ENR_OK)
        rc = keygen_values_init(&values, spec, &sel, err);
    if (rc == ENR_OK) {
        rc = key_pair_generate(&session, spec, &values, err);
        keygen_values_free(&values);
    }
    session_end(&session);
    return rc;
}

enr_code enr_token_key_generate(enr_key_type type, const char *uri_text,
                                const enr_token_options *opts, bool overwrite, enr_error *err)
{
    static const enr_token_options no_options = {NULL, NULL};
    const keygen_spec *spec = NULL;
    enr_code rc = keygen_spec_find(type, &spec, err);
    if (rc != ENR_OK)
        return rc;
    enr_pkcs11_uri *uri;
    rc = enr_pkcs11_uri_parse(uri_text, &uri, err);
    if (rc != ENR_OK)
        return rc;
    rc = key_generate(spec, uri, opts ? opts : &no_options, overwrite, err);
    enr_pkcs11_uri_free(uri);
    return rc;
}
