/* The SQLite driver: one file, DATA_DIR/enroll.db, in WAL mode with
 * synchronous=FULL (a commit is on disk when COMMIT returns: a CA must not
 * lose a certificate it handed out), writes under BEGIN IMMEDIATE (several
 * writers wait on the busy timeout instead of failing on a lock upgrade).
 * The store's operations are sql.c's; this file is SQLite's mechanics. */
#include <errno.h>
#include <fcntl.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "enroll/store.h"
#include "store/sql_driver.h"

#define DB_FILE "enroll.db"
#define BUSY_TIMEOUT_MS 5000

/* ---- connection --------------------------------------------------------- */

typedef struct sqlite_conn {
    sqlite3 *db;
    char path[4096];
    char location[4096]; /* the data directory, absolute */
} sqlite_conn;

typedef struct sqlite_stmt {
    sql_stmt base;
    sqlite3_stmt *st;
} sqlite_stmt;

static enr_code code_for(int rc)
{
    switch (rc) {
    case SQLITE_CONSTRAINT_UNIQUE:
    case SQLITE_CONSTRAINT_PRIMARYKEY:
        return ENR_E_EXISTS;
    case SQLITE_CONSTRAINT_FOREIGNKEY:
        return ENR_E_NOTFOUND;
    default:
        break;
    }
    switch (rc & 0xff) {
    case SQLITE_CONSTRAINT:
    case SQLITE_RANGE:
    case SQLITE_MISMATCH:
        return ENR_E_INTERNAL; /* the checks in store.c should have caught it */
    case SQLITE_NOMEM:
        return ENR_E_NOMEM;
    case SQLITE_BUSY:
    case SQLITE_LOCKED:
    case SQLITE_IOERR:
    case SQLITE_FULL:
    case SQLITE_CANTOPEN:
    case SQLITE_READONLY:
    case SQLITE_PERM:
    case SQLITE_CORRUPT:
    case SQLITE_NOTADB:
    case SQLITE_PROTOCOL:
        return ENR_E_IO;
    default:
        return ENR_E_INTERNAL;
    }
}

/* SQLite's messages name tables and constraints, never bound values, so
 * they are safe to pass on (no key reaches an error message this way). */
static enr_code sqlite_fail(void *conn, int rc, const char *what, enr_error *err)
{
    sqlite_conn *c = conn;
    if (rc == SQL_NO_PARAM)
        return enr_error_set(err, ENR_E_INTERNAL, "%s: %s: a statement lacks a parameter", c->path, what);
    if (rc == 0)
        rc = sqlite3_extended_errcode(c->db);
    const char *reason = sqlite3_extended_errcode(c->db) == rc ? sqlite3_errmsg(c->db) : sqlite3_errstr(rc);
    int primary = rc & 0xff;
    if (primary == SQLITE_BUSY || primary == SQLITE_LOCKED)
        return enr_error_set(err, ENR_E_IO, "%s: %s: %s (another writer held it for more than %d ms)",
                             c->path, what, reason, BUSY_TIMEOUT_MS);
    enr_code code = code_for(rc);
    if (code == ENR_E_IO || code == ENR_E_INTERNAL)
        return enr_error_set(err, code, "%s: %s: %s", c->path, what, reason);
    return enr_error_set(err, code, "%s: %s", what, reason);
}

static const sql_driver SQLITE_DRIVER;

static enr_code sqlite_prepare(void *conn, const char *sql, sql_stmt **out, enr_error *err)
{
    sqlite_conn *c = conn;
    sqlite_stmt *s = calloc(1, sizeof *s);
    if (s == NULL)
        return enr_error_set(err, ENR_E_NOMEM, "out of memory");
    int rc = sqlite3_prepare_v3(c->db, sql, -1, SQLITE_PREPARE_PERSISTENT, &s->st, NULL);
    if (rc != SQLITE_OK) {
        free(s);
        return sqlite_fail(c, rc, "preparing a statement", err);
    }
    s->base.d = &SQLITE_DRIVER;
    *out = &s->base;
    return ENR_OK;
}

static sqlite3_stmt *raw(sql_stmt *st)
{
    return ((sqlite_stmt *)st)->st;
}

static void sqlite_finalize(sql_stmt *st)
{
    sqlite3_finalize(raw(st));
    free(st);
}

static int sqlite_param_index(sql_stmt *st, const char *name)
{
    return sqlite3_bind_parameter_index(raw(st), name);
}

static int sqlite_bind_text(sql_stmt *st, int i, const char *value)
{
    return value != NULL ? sqlite3_bind_text(raw(st), i, value, -1, SQLITE_STATIC) : sqlite3_bind_null(raw(st), i);
}

static int sqlite_bind_int(sql_stmt *st, int i, int64_t value)
{
    return sqlite3_bind_int64(raw(st), i, (sqlite3_int64)value);
}

static int sqlite_bind_null(sql_stmt *st, int i)
{
    return sqlite3_bind_null(raw(st), i);
}

static int sqlite_bind_blob(sql_stmt *st, int i, const void *data, size_t len)
{
    return sqlite3_bind_blob64(raw(st), i, data, (sqlite3_uint64)len, SQLITE_STATIC);
}

static int sqlite_step(sql_stmt *st)
{
    int rc = sqlite3_step(raw(st));
    return rc == SQLITE_ROW ? SQL_ROW : rc == SQLITE_DONE ? SQL_DONE : rc;
}

static void sqlite_reset(sql_stmt *st)
{
    sqlite3_reset(raw(st));
    sqlite3_clear_bindings(raw(st));
}

static bool sqlite_column_null(sql_stmt *st, int col)
{
    return sqlite3_column_type(raw(st), col) == SQLITE_NULL;
}

static int64_t sqlite_column_int(sql_stmt *st, int col)
{
    return (int64_t)sqlite3_column_int64(raw(st), col);
}

static const char *sqlite_column_text(sql_stmt *st, int col, size_t *len)
{
    const unsigned char *text = sqlite3_column_text(raw(st), col);
    int n = sqlite3_column_bytes(raw(st), col);
    if (len != NULL)
        *len = n > 0 ? (size_t)n : 0;
    return (const char *)text;
}

static const void *sqlite_column_blob(sql_stmt *st, int col, size_t *len)
{
    const void *data = sqlite3_column_blob(raw(st), col);
    int n = sqlite3_column_bytes(raw(st), col);
    *len = n < 0 || (data == NULL && n > 0) ? SIZE_MAX : (size_t)n;
    return data;
}

static const char *sqlite_column_name(sql_stmt *st, int col)
{
    const char *name = sqlite3_column_name(raw(st), col);
    return name != NULL ? name : "a column";
}

static int64_t sqlite_changes(void *conn)
{
    return (int64_t)sqlite3_changes(((sqlite_conn *)conn)->db);
}

static bool sqlite_in_transaction(void *conn)
{
    return !sqlite3_get_autocommit(((sqlite_conn *)conn)->db);
}

static enr_code sqlite_exec(void *conn, const char *sql, const char *what, enr_error *err)
{
    sqlite_conn *c = conn;
    int rc = sqlite3_exec(c->db, sql, NULL, NULL, NULL);
    return rc == SQLITE_OK ? ENR_OK : sqlite_fail(c, rc, what, err);
}

/* Runs a statement returning one row of one value; *text gets a copy. */
static enr_code query_text(sqlite_conn *c, const char *sql, char *text, size_t cap, enr_error *err)
{
    sqlite3_stmt *st = NULL;
    int rc = sqlite3_prepare_v2(c->db, sql, -1, &st, NULL);
    if (rc == SQLITE_OK)
        rc = sqlite3_step(st);
    enr_code code = ENR_OK;
    text[0] = '\0';
    if (rc == SQLITE_ROW) {
        const unsigned char *value = sqlite3_column_text(st, 0);
        snprintf(text, cap, "%s", value != NULL ? (const char *)value : "");
    } else {
        code = sqlite_fail(c, rc, sql, err);
    }
    sqlite3_finalize(st);
    return code;
}

static enr_code sqlite_integrity_check(void *conn, enr_error *err)
{
    sqlite_conn *c = conn;
    char first[512];
    enr_code rc = query_text(c, "PRAGMA integrity_check", first, sizeof first, err);
    if (rc == ENR_OK && strcmp(first, "ok") != 0)
        rc = enr_error_set(err, ENR_E_IO, "%s: integrity check failed: %s", c->path, first);
    return rc;
}

static const char *sqlite_location(const void *conn)
{
    return ((const sqlite_conn *)conn)->location;
}

static const char *sqlite_where(const void *conn)
{
    return ((const sqlite_conn *)conn)->path;
}

static void sqlite_close(void *conn)
{
    sqlite_conn *c = conn;
    if (c == NULL)
        return;
    sqlite3_close(c->db);
    free(c);
}

static const sql_driver SQLITE_DRIVER = {
    .name = "sqlite",
    .dialect = SQL_DIALECT_SQLITE,
    .prepare = sqlite_prepare,
    .finalize = sqlite_finalize,
    .param_index = sqlite_param_index,
    .bind_text = sqlite_bind_text,
    .bind_int = sqlite_bind_int,
    .bind_null = sqlite_bind_null,
    .bind_blob = sqlite_bind_blob,
    .step = sqlite_step,
    .reset = sqlite_reset,
    .column_null = sqlite_column_null,
    .column_int = sqlite_column_int,
    .column_text = sqlite_column_text,
    .column_blob = sqlite_column_blob,
    .column_name = sqlite_column_name,
    .changes = sqlite_changes,
    .in_transaction = sqlite_in_transaction,
    .fail = sqlite_fail,
    .exec = sqlite_exec,
    .integrity_check = sqlite_integrity_check,
    .location = sqlite_location,
    .where = sqlite_where,
    .close = sqlite_close,
};

/* ---- opening ------------------------------------------------------------ */

static enr_code ensure_directory(const char *dir, enr_error *err)
{
    if (mkdir(dir, 0700) != 0 && errno != EEXIST)
        return enr_error_set(err, ENR_E_IO, "%s: cannot create the data directory: %s", dir, strerror(errno));
    struct stat st;
    if (stat(dir, &st) != 0)
        return enr_error_set(err, ENR_E_IO, "%s: %s", dir, strerror(errno));
    if (!S_ISDIR(st.st_mode))
        return enr_error_set(err, ENR_E_IO, "%s: not a directory", dir);
    return ENR_OK;
}

/* SQLite would create the file 0644 less the umask, and gives its -wal and
 * -shm files the database's mode: so the file is made here, 0600, first.
 * An existing file is never opened here, only checked and chmod'ed: SQLite
 * holds POSIX fcntl locks, and closing *any* descriptor of the file in this
 * process would silently drop the locks of every connection this process
 * already has (another worker's), letting other processes checkpoint and
 * truncate the WAL under it. */
static enr_code ensure_private_file(const char *path, enr_error *err)
{
    struct stat st;
    if (lstat(path, &st) == 0) {
        if (!S_ISREG(st.st_mode))
            return enr_error_set(err, ENR_E_IO, "%s: not a regular file", path);
        if ((st.st_mode & 07777) != 0600 && chmod(path, 0600) != 0)
            return enr_error_set(err, ENR_E_IO, "%s: cannot make it private (0600): %s", path, strerror(errno));
        return ENR_OK;
    }
    if (errno != ENOENT)
        return enr_error_set(err, ENR_E_IO, "%s: %s", path, strerror(errno));
    int fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (fd < 0 && errno != EEXIST)
        return enr_error_set(err, ENR_E_IO, "%s: cannot create: %s", path, strerror(errno));
    if (fd >= 0) {
        /* Created just now, so no connection of ours can hold locks on it yet. */
        (void)fchmod(fd, 0600);
        close(fd);
    }
    return ENR_OK;
}

static enr_code configure(sqlite_conn *c, enr_error *err)
{
    char mode[16];
    enr_code rc;
    sqlite3_extended_result_codes(c->db, 1);
    sqlite3_busy_timeout(c->db, BUSY_TIMEOUT_MS);
    /* Defensive: no writable_schema tricks, no journal_mode=OFF from SQL. */
    sqlite3_db_config(c->db, SQLITE_DBCONFIG_DEFENSIVE, 1, (int *)NULL);
    /* Switching a new database to WAL needs it alone for a moment, and SQLite
     * answers SQLITE_BUSY at once (no busy handler) when several processes
     * open a fresh store together: retry for up to the busy timeout. */
    for (int waited_ms = 0;; waited_ms += 20) {
        rc = query_text(c, "PRAGMA journal_mode=WAL", mode, sizeof mode, err);
        int code = sqlite3_errcode(c->db) & 0xff;
        if (rc == ENR_OK || (code != SQLITE_BUSY && code != SQLITE_LOCKED) || waited_ms >= BUSY_TIMEOUT_MS)
            break;
        struct timespec pause = {0, 20 * 1000 * 1000};
        nanosleep(&pause, NULL);
    }
    if (rc != ENR_OK)
        return rc;
    if (strcmp(mode, "wal") != 0)
        return enr_error_set(err, ENR_E_IO, "%s: cannot use write-ahead logging (journal mode stays %s)",
                             c->path, mode);
    char on[8];
    /* temp_store=MEMORY keeps statement journals in memory. With the default,
     * a journal that outgrows 64 KiB in a transaction goes to a temporary file,
     * and then every page each later statement of the transaction changes is
     * written there too, two pwrite calls a page: four times the WAL's writes
     * in a commit batch. Durability is the WAL's; a statement journal only
     * undoes a failed statement or savepoint inside a transaction. (Sorts
     * would stay in memory too: the store's ORDER BYs follow an index, except
     * over enrollments, which are few.) */
    if ((rc = sqlite_exec(c, "PRAGMA synchronous=FULL; PRAGMA foreign_keys=ON; PRAGMA trusted_schema=OFF; "
                             "PRAGMA temp_store=MEMORY;",
                          "configuring the connection", err)) != ENR_OK ||
        (rc = query_text(c, "PRAGMA foreign_keys", on, sizeof on, err)) != ENR_OK)
        return rc;
    /* A SQLite built without foreign keys ignores the pragma silently. */
    if (strcmp(on, "1") != 0)
        return enr_error_set(err, ENR_E_UNSUPPORTED, "%s: this SQLite does not enforce foreign keys",
                             c->path);
    return ENR_OK;
}

static enr_code open_database(sqlite_conn *c, enr_error *err)
{
    int rc = sqlite3_open_v2(c->path, &c->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX, NULL);
    if (rc != SQLITE_OK)
        return c->db != NULL ? sqlite_fail(c, rc, "opening", err)
                             : enr_error_set(err, ENR_E_NOMEM, "out of memory opening %s", c->path);
    return configure(c, err);
}

bool enr_store_sqlite_exists(const char *data_dir)
{
    char path[4096];
    int n = snprintf(path, sizeof path, "%s/%s", data_dir, DB_FILE);
    struct stat st;
    return n > 0 && (size_t)n < sizeof path && stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

static enr_code open_sqlite(const char *data_dir, bool as_is, enr_store **out, enr_error *err)
{
    if (out == NULL || data_dir == NULL || data_dir[0] == '\0')
        return enr_error_set(err, ENR_E_USAGE, "opening a store needs a data directory");
    *out = NULL;
    if (as_is && !enr_store_sqlite_exists(data_dir))
        return enr_error_set(err, ENR_E_IO, "%s holds no store (no %s)", data_dir, DB_FILE);
    sqlite_conn *c = calloc(1, sizeof *c);
    if (c == NULL)
        return enr_error_set(err, ENR_E_NOMEM, "out of memory");
    int n = snprintf(c->path, sizeof c->path, "%s/%s", data_dir, DB_FILE);
    enr_code rc = n > 0 && (size_t)n < sizeof c->path
                      ? ENR_OK
                      : enr_error_set(err, ENR_E_USAGE, "data directory path is too long");
    if (rc == ENR_OK && (rc = ensure_directory(data_dir, err)) == ENR_OK &&
        (rc = ensure_private_file(c->path, err)) == ENR_OK)
        rc = open_database(c, err);
    if (rc == ENR_OK && realpath(data_dir, c->location) == NULL)
        rc = enr_error_set(err, ENR_E_IO, "%s: %s", data_dir, strerror(errno));
    if (rc != ENR_OK) {
        sqlite_close(c);
        return rc;
    }
    return as_is ? enr_sql_store_open_as_is(&SQLITE_DRIVER, c, out, err) : enr_sql_store_open(&SQLITE_DRIVER, c, out, err);
}

enr_code enr_store_open_sqlite(const char *data_dir, enr_store **out, enr_error *err)
{
    return open_sqlite(data_dir, false, out, err);
}

enr_code enr_store_open_sqlite_as_is(const char *data_dir, enr_store **out, enr_error *err)
{
    return open_sqlite(data_dir, true, out, err);
}
