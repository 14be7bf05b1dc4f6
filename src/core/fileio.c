#include "enroll/fileio.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <limits.h>
#include <openssl/crypto.h>
#include <openssl/rand.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

void enr_buf_free(enr_buf *buf)
{
    if (buf == NULL)
        return;
    free(buf->data);
    buf->data = NULL;
    buf->len = 0;
}

static enr_code read_fd(int fd, const char *name, size_t limit, enr_buf *out, enr_error *err)
{
    size_t cap = 4096, len = 0;
    unsigned char *data = malloc(cap + 1);
    if (data == NULL)
        return enr_error_set(err, ENR_E_NOMEM, "out of memory reading %s", name);
    for (;;) {
        if (len == cap) {
            if (cap > limit) {
                free(data);
                return enr_error_set(err, ENR_E_PARSE,
                                     "%s: larger than the %zu-byte limit for this kind of file",
                                     name, limit);
            }
            /* Not realloc: the old block may hold a private key, so it is
             * wiped before it goes back to the allocator. */
            size_t ncap = cap * 2;
            unsigned char *grown = malloc(ncap + 1);
            if (grown == NULL) {
                OPENSSL_cleanse(data, len);
                free(data);
                return enr_error_set(err, ENR_E_NOMEM, "out of memory reading %s", name);
            }
            memcpy(grown, data, len);
            OPENSSL_cleanse(data, len);
            free(data);
            data = grown;
            cap = ncap;
        }
        ssize_t n = read(fd, data + len, cap - len);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            int e = errno;
            free(data);
            return enr_error_set(err, ENR_E_IO, "%s: read failed: %s", name, strerror(e));
        }
        if (n == 0)
            break;
        len += (size_t)n;
    }
    if (len > limit) {
        free(data);
        return enr_error_set(err, ENR_E_PARSE,
                             "%s: larger than the %zu-byte limit for this kind of file", name,
                             limit);
    }
    data[len] = '\0';
    out->data = data;
    out->len = len;
    return ENR_OK;
}

enr_code enr_file_read(const char *path, size_t limit, enr_buf *out, enr_error *err)
{
    out->data = NULL;
    out->len = 0;
    if (strcmp(path, "-") == 0)
        return read_fd(STDIN_FILENO, "standard input", limit, out, err);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return enr_error_set(err, errno == ENOENT ? ENR_E_NOTFOUND : ENR_E_IO, "%s: cannot open: %s",
                             path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) == 0 && S_ISDIR(st.st_mode)) {
        close(fd);
        return enr_error_set(err, ENR_E_IO, "%s: is a directory, expected a file", path);
    }
    enr_code rc = read_fd(fd, path, limit, out, err);
    close(fd);
    return rc;
}

static enr_code write_all(int fd, const void *data, size_t len, const char *path, enr_error *err)
{
    const unsigned char *p = data;
    while (len > 0) {
        ssize_t n = write(fd, p, len);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return enr_error_set(err, ENR_E_IO, "%s: write failed: %s", path, strerror(errno));
        }
        p += n;
        len -= (size_t)n;
    }
    return ENR_OK;
}

static enr_code write_through(const char *path, const void *data, size_t len, enr_error *err)
{
    int fd = open(path, O_WRONLY | O_CLOEXEC | O_NOCTTY);
    if (fd < 0)
        return enr_error_set(err, ENR_E_IO, "%s: cannot open: %s", path, strerror(errno));
    enr_code rc = write_all(fd, data, len, path, err);
    close(fd);
    return rc;
}

static void fsync_parent_dir(const char *path)
{
    char copy[PATH_MAX];
    if (strlen(path) >= sizeof copy)
        return;
    strcpy(copy, path);
    int dfd = open(dirname(copy), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd >= 0) {
        (void)fsync(dfd);
        close(dfd);
    }
}

enr_code enr_file_write_atomic(const char *path, const void *data, size_t len, mode_t mode,
                               bool overwrite, enr_error *err)
{
    if (strcmp(path, "-") == 0) {
        enr_code rc = write_all(STDOUT_FILENO, data, len, "standard output", err);
        return rc;
    }
    struct stat existing;
    if (lstat(path, &existing) == 0) {
        if (!overwrite)
            return enr_error_set(err, ENR_E_EXISTS,
                                 "%s: already exists; refusing to overwrite it (use --force to replace it)",
                                 path);
        if (!S_ISREG(existing.st_mode)) {
            /* A device, pipe or link (/dev/null, /dev/stdout) is written
             * through, never replaced; a secret is never sent through one. */
            if ((mode & 077) == 0)
                return enr_error_set(err, ENR_E_USAGE,
                                     "%s: not a regular file; a private file is only written as one", path);
            return write_through(path, data, len, err);
        }
    }

    char tmp[PATH_MAX];
    unsigned char rnd[6];
    if (RAND_bytes(rnd, sizeof rnd) != 1)
        return enr_error_openssl(err, ENR_E_CRYPTO, "no randomness for a temporary file name");
    int n = snprintf(tmp, sizeof tmp, "%s.tmp-%02x%02x%02x%02x%02x%02x", path, rnd[0], rnd[1],
                     rnd[2], rnd[3], rnd[4], rnd[5]);
    if (n < 0 || (size_t)n >= sizeof tmp)
        return enr_error_set(err, ENR_E_USAGE, "%s: path too long", path);

    /* O_EXCL + the final mode at creation (narrowed by the umask, never
     * widened): a secret is never readable by others, not even briefly. */
    int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode);
    if (fd < 0)
        return enr_error_set(err, ENR_E_IO, "%s: cannot create: %s", tmp, strerror(errno));
    if (write_all(fd, data, len, tmp, err) != ENR_OK)
        goto fail;
    if (fsync(fd) != 0) {
        enr_error_set(err, ENR_E_IO, "%s: fsync failed: %s", tmp, strerror(errno));
        goto fail;
    }
    if (close(fd) != 0) {
        fd = -1;
        enr_error_set(err, ENR_E_IO, "%s: close failed: %s", tmp, strerror(errno));
        goto fail;
    }
    fd = -1;
    if (!overwrite) {
        /* link() fails if path appeared meanwhile, closing the check-then-rename race. */
        if (link(tmp, path) != 0) {
            int e = errno;
            unlink(tmp);
            if (e == EEXIST)
                return enr_error_set(err, ENR_E_EXISTS,
                                     "%s: already exists; refusing to overwrite it (use --force to replace it)",
                                     path);
            return enr_error_set(err, ENR_E_IO, "%s: cannot create: %s", path, strerror(e));
        }
        unlink(tmp);
    } else if (rename(tmp, path) != 0) {
        enr_error_set(err, ENR_E_IO, "%s: cannot replace: %s", path, strerror(errno));
        goto fail;
    }
    fsync_parent_dir(path);
    return ENR_OK;

fail:
    if (fd >= 0)
        close(fd);
    unlink(tmp);
    return err ? err->code : ENR_E_IO;
}

enr_code enr_secret_read_file(const char *path, char **out, enr_error *err)
{
    *out = NULL;
    enr_buf buf;
    enr_code rc = enr_file_read(path, 4096, &buf, err);
    if (rc != ENR_OK) {
        enr_error_prefix(err, "reading secret file");
        return rc;
    }
    size_t n = 0;
    while (n < buf.len && buf.data[n] != '\n' && buf.data[n] != '\r')
        n++;
    if (n == 0) {
        OPENSSL_cleanse(buf.data, buf.len);
        enr_buf_free(&buf);
        return enr_error_set(err, ENR_E_USAGE, "%s: secret file is empty", path);
    }
    char *secret = malloc(n + 1);
    if (secret == NULL) {
        OPENSSL_cleanse(buf.data, buf.len);
        enr_buf_free(&buf);
        return enr_error_set(err, ENR_E_NOMEM, "out of memory");
    }
    memcpy(secret, buf.data, n);
    secret[n] = '\0';
    OPENSSL_cleanse(buf.data, buf.len);
    enr_buf_free(&buf);
    *out = secret;
    return ENR_OK;
}

void enr_secret_free(char *secret)
{
    if (secret == NULL)
        return;
    OPENSSL_cleanse(secret, strlen(secret));
    free(secret);
}
