/* A fuzz target's scratch directory: one per user and per executable,
 * kept between runs. libFuzzer leaves without running exit handlers, so a
 * fresh directory per run would pile up; processes of one run may share it
 * (SQLite allows that). Another checkout's build must not: its store may
 * have another schema version, which this one refuses to open (seen with
 * two worktrees on one machine), so the name carries a hash of the
 * executable's path. On /dev/shm when there is one: stores fsync. */
#ifndef ENROLL_FUZZ_SCRATCH_H
#define ENROLL_FUZZ_SCRATCH_H

#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <unistd.h>

static void fuzz_scratch_dir(const char *what, char *out, size_t cap)
{
    char exe[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    exe[n > 0 ? n : 0] = '\0';
    uint32_t hash = 2166136261u; /* FNV-1a */
    for (const char *c = exe; *c != '\0'; c++)
        hash = (hash ^ (uint8_t)*c) * 16777619u;
    snprintf(out, cap, "%s/enroll-fuzz-%s-%u-%08x", access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp", what,
             (unsigned)getuid(), (unsigned)hash);
}

#endif
