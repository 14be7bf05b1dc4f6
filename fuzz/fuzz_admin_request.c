/* An admin request as enrolld's admin API hands it to the admin library:
 * "COMMAND\nJSON-ARGUMENTS", run against a scratch store (on /dev/shm when
 * there is one: every accepted change is an fsync'ed commit). */
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "enroll/admin.h"
#include "enroll/store.h"
#include "fuzz_scratch.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* One store per process (fuzz_scratch.h). */
static enr_store *scratch_store(void)
{
    static enr_store *store;
    if (store != NULL)
        return store;
    char dir[96];
    fuzz_scratch_dir("admin", dir, sizeof dir);
    enr_error err;
    if (enr_store_open_sqlite(dir, &store, &err) != ENR_OK) {
        fprintf(stderr, "fuzz_admin_request: no scratch store: %s\n", err.message);
        abort();
    }
    return store;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const uint8_t *nl = memchr(data, '\n', size);
    size_t cmd_len = nl ? (size_t)(nl - data) : size;
    char command[64];
    if (cmd_len >= sizeof command)
        return 0;
    memcpy(command, data, cmd_len);
    command[cmd_len] = '\0';
    const char *args = nl ? (const char *)nl + 1 : "";
    size_t args_len = nl ? size - cmd_len - 1 : 0;
    enr_admin_context ctx = {.actor = "fuzz", .remote = true};
    char *result = NULL;
    enr_error err;
    if (enr_admin_execute(scratch_store(), &ctx, command, args, args_len, &result, &err) == ENR_OK)
        enr_admin_result_free(result);
    return 0;
}
