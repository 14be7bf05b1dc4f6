/* An admin request as enrolld's admin API hands it to the admin library:
 * "COMMAND\nJSON-ARGUMENTS", run against a scratch store (on /dev/shm when
 * there is one: every accepted change is an fsync'ed commit). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "enroll/admin.h"
#include "enroll/store.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* One store per process in a fixed directory per user and build: libFuzzer
 * leaves without running exit handlers, so a fresh directory per run would
 * pile up; processes of one run may share it (SQLite allows that). The
 * build's own (a hash of the fuzzer's path): two checkouts whose schemas
 * differ must not share a scratch store. */
static enr_store *scratch_store(void)
{
    static enr_store *store;
    if (store != NULL)
        return store;
    char exe[4096];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe);
    uint32_t h = 2166136261u; /* FNV-1a */
    for (ssize_t i = 0; i < n; i++)
        h = (h ^ (uint8_t)exe[i]) * 16777619u;
    char dir[96];
    snprintf(dir, sizeof dir, "%s/enroll-fuzz-admin-%u-%08x", access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp",
             (unsigned)getuid(), h);
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
