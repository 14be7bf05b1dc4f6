#include "cli/admin_remote.h"

enr_code cli_admin_remote(const char *url, const char *cert, const char *key, const char *trust,
                          const char *command, const char *args, char **result, enr_error *err)
{
    (void)url, (void)cert, (void)key, (void)trust, (void)command, (void)args;
    *result = NULL;
    return enr_error_set(err, ENR_E_UNSUPPORTED, "--url is not available in this build yet; use --data DIR");
}
