/* What a SQL database must give the relational store (sql.c): prepared
 * statements with named parameters, rows read column by column, and
 * errors classified into enr_code. SQLite (sqlite.c) and PostgreSQL
 * (postgres.c) are drivers; every store operation, its SQL and its checks
 * live once, in sql.c, so both backends behave the same by construction.
 *
 * Conventions a driver keeps:
 *  - Parameters are written ":name" in SQL; a driver that numbers them
 *    ($1) rewrites the text once, at prepare.
 *  - step() answers SQL_ROW or SQL_DONE, or a driver error code (any
 *    other int) that fail() turns into an enr_code and a message. A
 *    message never holds a bound value (values may be keys).
 *  - Column values stay valid until the next step() or reset().
 *  - Booleans read through column_int() are 0 or 1 whatever the database
 *    calls them. */
#ifndef ENROLL_STORE_SQL_DRIVER_H
#define ENROLL_STORE_SQL_DRIVER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "enroll/error.h"
#include "enroll/store.h"

#define SQL_ROW 100
#define SQL_DONE 101
/* A statement named a parameter it does not have (a bug in sql.c). */
#define SQL_NO_PARAM (-1)

typedef enum sql_dialect { SQL_DIALECT_SQLITE = 1, SQL_DIALECT_POSTGRES } sql_dialect;

typedef struct sql_driver sql_driver;

/* Every driver's statement starts with this. */
typedef struct sql_stmt {
    const sql_driver *d;
} sql_stmt;

struct sql_driver {
    const char *name; /* "sqlite", "postgresql": enr_store_backend() */
    sql_dialect dialect; /* which words the schema and a few statements use (sql.c) */

    enr_code (*prepare)(void *conn, const char *sql, sql_stmt **out, enr_error *err);
    void (*finalize)(sql_stmt *st);
    /* 1-based index of ":name", 0 when the statement has none. */
    int (*param_index)(sql_stmt *st, const char *name);
    /* 0 or a driver error code. Text and blobs are not copied: they must
     * stay valid until reset(). bind_text(NULL) binds a text NULL, bind_null
     * an integer NULL (a typed database must know which). */
    int (*bind_text)(sql_stmt *st, int i, const char *value);
    int (*bind_int)(sql_stmt *st, int i, int64_t value);
    int (*bind_null)(sql_stmt *st, int i);
    int (*bind_blob)(sql_stmt *st, int i, const void *data, size_t len);
    int (*step)(sql_stmt *st);
    /* Back to unexecuted with no bindings (ends an open read). */
    void (*reset)(sql_stmt *st);
    bool (*column_null)(sql_stmt *st, int col);
    int64_t (*column_int)(sql_stmt *st, int col);
    /* NUL-terminated; NULL for SQL NULL (or out of memory). */
    const char *(*column_text)(sql_stmt *st, int col, size_t *len);
    /* NULL with *len 0 for an empty or NULL value; NULL with *len
     * SIZE_MAX when out of memory. */
    const void *(*column_blob)(sql_stmt *st, int col, size_t *len);
    const char *(*column_name)(sql_stmt *st, int col);

    /* Rows the last INSERT/UPDATE/DELETE changed. */
    int64_t (*changes)(void *conn);
    /* Whether a transaction is open (false after an error ended it). */
    bool (*in_transaction)(void *conn);
    /* Optional: told after every rollback (the transaction is over). */
    void (*rolled_back)(void *conn);
    /* The failure of step/bind code RC (or of the connection when RC is
     * 0) as an enr_code and message "WHAT: reason". */
    enr_code (*fail)(void *conn, int rc, const char *what, enr_error *err);
    /* Runs SQL text without parameters or rows (several statements). */
    enr_code (*exec)(void *conn, const char *sql, const char *what, enr_error *err);

    enr_code (*integrity_check)(void *conn, enr_error *err);
    const char *(*location)(const void *conn);
    /* The database, for messages: a file, or a URL without its password. */
    const char *(*where)(const void *conn);
    void (*close)(void *conn);
};

/* Wraps an open connection as a store: migrates the schema to the newest
 * version (refusing a newer one) and hands it to enr_store_new. On
 * failure the connection is closed. */
enr_code enr_sql_store_open(const sql_driver *d, void *conn, enr_store **out, enr_error *err);
/* The same for a store that is only read (a copy's source): its schema is
 * left as it is, refused only when newer than this code knows or absent. */
enr_code enr_sql_store_open_as_is(const sql_driver *d, void *conn, enr_store **out, enr_error *err);

#endif
