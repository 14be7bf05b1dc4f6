/* The PostgreSQL driver (libpq): the shared store of several enrolld
 * nodes. The store's operations are sql.c's; this file is the connection:
 * statements prepared once per connection (":name" rewritten to "$n"),
 * values sent as text (bytea as binary), rows read as text.
 *
 * Durability is the server's: synchronous_commit is forced on for the
 * session, so COMMIT returns only once the commit record is on disk (a CA
 * must not lose a certificate it handed out).
 *
 * A lost connection (the server restarted, a network cut) fails the
 * statement that saw it; the next statement outside a transaction
 * reconnects, and statements are prepared again on the new session. */
#include <libpq-fe.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "enroll/store.h"
#include "store/sql_driver.h"

#define CONNECT_TIMEOUT_S "5"
#define PARAMS_MAX 32
#define PG_FAILED (-100) /* step() failed: the connection keeps the reason */
#define PG_TOO_BIG (-101) /* a value over libpq's 2 GiB */

/* ---- connection --------------------------------------------------------- */

typedef struct pg_conn {
    PGconn *pg;
    char *url;              /* as given: may hold a password, never printed */
    char where[512];        /* postgresql://user@host:port/db, for people */
    unsigned generation;    /* bumped on every reconnect: prepared statements are per session */
    unsigned next_name;
    bool lost_transaction;  /* the connection died inside one: refuse until it is rolled back */
    bool configured;        /* this session has synchronous_commit on */
    time_t reset_failed_at; /* the last reconnection that failed: the next waits a second */
    int64_t changes;
    char sqlstate[6];       /* of the last failure */
    char message[256];      /* its primary message (never a value: see fail) */
} pg_conn;

typedef struct pg_stmt {
    sql_stmt base;
    pg_conn *c;
    char *sql;              /* with $n */
    char name[16];
    bool repeatable;        /* a read or a BEGIN: safe to send again on a new session */
    unsigned prepared_in;   /* the generation it was prepared in; 0: not yet */
    int nparams;
    char *param_names[PARAMS_MAX];
    Oid types[PARAMS_MAX];
    const char *values[PARAMS_MAX];
    int lengths[PARAMS_MAX];
    int formats[PARAMS_MAX];
    char ints[PARAMS_MAX][24];
    PGresult *result;
    int row, rows;
    unsigned char **blobs;  /* unescaped bytea of the current row, per column */
    int blob_count;
} pg_stmt;

enum { OID_BYTEA = 17, OID_INT8 = 20, OID_TEXT = 25 };

static const sql_driver POSTGRES_DRIVER;

static void remember_failure(pg_conn *c, const PGresult *res)
{
    const char *state = res != NULL ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;
    const char *primary = res != NULL ? PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY) : NULL;
    /* No result or no SQLSTATE: the connection itself failed. */
    snprintf(c->sqlstate, sizeof c->sqlstate, "%s", state != NULL ? state : "08006");
    if (primary == NULL)
        primary = PQerrorMessage(c->pg);
    snprintf(c->message, sizeof c->message, "%s", primary != NULL && primary[0] ? primary : "no answer");
    size_t n = strlen(c->message);
    while (n > 0 && (c->message[n - 1] == '\n' || c->message[n - 1] == ' '))
        c->message[--n] = '\0';
}

/* Unique and foreign-key violations decide answers (a name taken, a
 * reference missing); losing the server is the store being unavailable
 * (ENR_E_IO: the service answers 503). A data exception's message may
 * quote a bound value, so it is never passed on. */
static enr_code pg_fail(void *conn, int rc, const char *what, enr_error *err)
{
    pg_conn *c = conn;
    if (rc == SQL_NO_PARAM)
        return enr_error_set(err, ENR_E_INTERNAL, "%s: %s: a statement lacks a parameter", c->where, what);
    if (rc == PG_TOO_BIG)
        return enr_error_set(err, ENR_E_USAGE, "%s: %s: a value is larger than PostgreSQL takes", c->where, what);
    if (rc == 0)
        remember_failure(c, NULL);
    const char *state = c->sqlstate;
    if (strcmp(state, "23505") == 0)
        return enr_error_set(err, ENR_E_EXISTS, "%s: %s", what, c->message);
    if (strcmp(state, "23503") == 0)
        return enr_error_set(err, ENR_E_NOTFOUND, "%s: %s", what, c->message);
    if (strncmp(state, "22", 2) == 0)
        return enr_error_set(err, ENR_E_INTERNAL, "%s: %s: a value was refused (SQLSTATE %s)", c->where, what,
                             state);
    bool unavailable = strncmp(state, "08", 2) == 0 || strncmp(state, "53", 2) == 0 ||
                       strncmp(state, "57", 2) == 0 || strncmp(state, "58", 2) == 0 ||
                       strcmp(state, "40001") == 0 || strcmp(state, "40P01") == 0 || strcmp(state, "25P02") == 0 ||
                       PQstatus(c->pg) != CONNECTION_OK;
    return enr_error_set(err, unavailable ? ENR_E_IO : ENR_E_INTERNAL, "%s: %s: %s (SQLSTATE %s)", c->where, what,
                         c->message, state);
}

/* A session after a lost connection: prepared statements are gone with
 * the old one. Only outside a transaction (one that was open is lost
 * anyway, and its caller has been told). */
static bool ensure_connected(pg_conn *c)
{
    if (PQstatus(c->pg) != CONNECTION_OK) {
        /* A server that is away is asked again a second later, not on
         * every statement: each try blocks the caller's loop. */
        time_t now = time(NULL);
        if (c->reset_failed_at != 0 && now - c->reset_failed_at < 1)
            return false;
        PQreset(c->pg);
        if (PQstatus(c->pg) != CONNECTION_OK) {
            c->reset_failed_at = now;
            return false;
        }
        c->reset_failed_at = 0;
        c->generation++;
        c->configured = false;
    }
    if (!c->configured) {
        /* Durable before answered, whatever the server's default. */
        PGresult *res = PQexec(c->pg, "SET synchronous_commit TO on");
        c->configured = PQresultStatus(res) == PGRES_COMMAND_OK;
        PQclear(res);
    }
    return c->configured;
}

/* ---- statements --------------------------------------------------------- */

static bool name_char(char ch, bool first)
{
    return ch == '_' || (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (!first && ch >= '0' && ch <= '9');
}

/* ":name" to "$n" (one number per name), outside quotes and comments;
 * "::" is PostgreSQL's cast, not a parameter. */
static enr_code rewrite(pg_stmt *s, const char *sql, enr_error *err)
{
    size_t len = strlen(sql);
    char *out = malloc(len * 2 + 1);
    if (out == NULL)
        return enr_error_set(err, ENR_E_NOMEM, "out of memory");
    size_t o = 0;
    for (size_t i = 0; i < len;) {
        char ch = sql[i];
        if (ch == '\'' || ch == '"') {
            size_t end = i + 1;
            while (end < len && sql[end] != ch)
                end++;
            end = end < len ? end + 1 : len;
            memcpy(out + o, sql + i, end - i);
            o += end - i;
            i = end;
        } else if (ch == '/' && i + 1 < len && sql[i + 1] == '*') {
            const char *close = strstr(sql + i + 2, "*/");
            size_t end = close != NULL ? (size_t)(close - sql) + 2 : len;
            memcpy(out + o, sql + i, end - i);
            o += end - i;
            i = end;
        } else if (ch == ':' && i + 1 < len && sql[i + 1] == ':') {
            memcpy(out + o, "::", 2);
            o += 2;
            i += 2;
        } else if (ch == ':' && i + 1 < len && name_char(sql[i + 1], true)) {
            size_t end = i + 1;
            while (end < len && name_char(sql[end], false))
                end++;
            int index = 0;
            for (int p = 0; p < s->nparams && index == 0; p++)
                if (strlen(s->param_names[p]) == end - i && memcmp(s->param_names[p], sql + i, end - i) == 0)
                    index = p + 1;
            if (index == 0) {
                if (s->nparams == PARAMS_MAX) {
                    free(out);
                    return enr_error_set(err, ENR_E_INTERNAL, "a statement has more than %d parameters", PARAMS_MAX);
                }
                s->param_names[s->nparams] = strndup(sql + i, end - i);
                if (s->param_names[s->nparams] == NULL) {
                    free(out);
                    return enr_error_set(err, ENR_E_NOMEM, "out of memory");
                }
                index = ++s->nparams;
            }
            o += (size_t)snprintf(out + o, 8, "$%d", index);
            i = end;
        } else {
            out[o++] = sql[i++];
        }
    }
    out[o] = '\0';
    s->sql = out;
    return ENR_OK;
}

static pg_stmt *raw(sql_stmt *st)
{
    return (pg_stmt *)st;
}

static void drop_row(pg_stmt *s)
{
    for (int i = 0; i < s->blob_count; i++) {
        PQfreemem(s->blobs[i]);
        s->blobs[i] = NULL;
    }
}

static void pg_reset(sql_stmt *st)
{
    pg_stmt *s = raw(st);
    drop_row(s);
    PQclear(s->result);
    s->result = NULL;
    s->row = s->rows = 0;
    for (int i = 0; i < s->nparams; i++) {
        s->values[i] = NULL;
        s->lengths[i] = 0;
        s->formats[i] = 0;
    }
}

static void pg_finalize(sql_stmt *st)
{
    pg_stmt *s = raw(st);
    if (s == NULL)
        return;
    pg_reset(st);
    /* The server drops a session's statements with the session; one
     * closed earlier (only at store close) needs no DEALLOCATE. */
    for (int i = 0; i < s->nparams; i++)
        free(s->param_names[i]);
    free(s->blobs);
    free(s->sql);
    free(s);
}

static enr_code pg_prepare(void *conn, const char *sql, sql_stmt **out, enr_error *err)
{
    pg_conn *c = conn;
    pg_stmt *s = calloc(1, sizeof *s);
    if (s == NULL)
        return enr_error_set(err, ENR_E_NOMEM, "out of memory");
    s->base.d = &POSTGRES_DRIVER;
    s->c = c;
    snprintf(s->name, sizeof s->name, "e%u", ++c->next_name);
    /* sql.c's own text: a SELECT or a BEGIN changes nothing if it ran
     * before the connection dropped; a write might have committed. */
    s->repeatable = strncmp(sql, "SELECT", 6) == 0 || strncmp(sql, "BEGIN", 5) == 0;
    enr_code rc = rewrite(s, sql, err);
    if (rc != ENR_OK) {
        pg_finalize(&s->base);
        return rc;
    }
    *out = &s->base;
    return ENR_OK;
}

static int pg_param_index(sql_stmt *st, const char *name)
{
    pg_stmt *s = raw(st);
    for (int i = 0; i < s->nparams; i++)
        if (strcmp(s->param_names[i], name) == 0)
            return i + 1;
    return 0;
}

/* The first binding of a parameter gives its type to the server: a NULL
 * has one too, or ":x IS NULL OR c = :x" cannot be prepared. */
static void typed(pg_stmt *s, int i, Oid type)
{
    if (s->prepared_in == 0 && s->types[i] == 0)
        s->types[i] = type;
}

static int pg_bind_text(sql_stmt *st, int i, const char *value)
{
    pg_stmt *s = raw(st);
    if (i < 1 || i > s->nparams)
        return SQL_NO_PARAM;
    typed(s, i - 1, OID_TEXT);
    s->values[i - 1] = value;
    s->formats[i - 1] = 0;
    return 0;
}

static int pg_bind_int(sql_stmt *st, int i, int64_t value)
{
    pg_stmt *s = raw(st);
    if (i < 1 || i > s->nparams)
        return SQL_NO_PARAM;
    typed(s, i - 1, OID_INT8);
    snprintf(s->ints[i - 1], sizeof s->ints[i - 1], "%lld", (long long)value);
    s->values[i - 1] = s->ints[i - 1];
    s->formats[i - 1] = 0;
    return 0;
}

static int pg_bind_null(sql_stmt *st, int i)
{
    pg_stmt *s = raw(st);
    if (i < 1 || i > s->nparams)
        return SQL_NO_PARAM;
    typed(s, i - 1, OID_INT8);
    s->values[i - 1] = NULL;
    return 0;
}

static int pg_bind_blob(sql_stmt *st, int i, const void *data, size_t len)
{
    pg_stmt *s = raw(st);
    if (i < 1 || i > s->nparams)
        return SQL_NO_PARAM;
    if (len > INT32_MAX)
        return PG_TOO_BIG;
    typed(s, i - 1, OID_BYTEA);
    /* A non-NULL pointer even for no bytes: an empty value, not NULL. */
    s->values[i - 1] = data != NULL ? (const char *)data : "";
    s->lengths[i - 1] = (int)len;
    s->formats[i - 1] = 1;
    return 0;
}

/* A statement after the connection died inside a transaction must not
 * run on a new session: it would commit on its own, without what came
 * before it. */
static int execute_once(pg_stmt *s, bool *session_lost);

/* A session found dead while idle (the server restarted since the last
 * statement) is replaced and the statement sent once more when sending it
 * twice does no harm (a read, a BEGIN): no transaction was open to lose.
 * A write outside a transaction may have committed before the connection
 * dropped, so it fails instead. */
static int execute(pg_stmt *s)
{
    bool session_lost = false;
    int rc = execute_once(s, &session_lost);
    if (rc != 0 && session_lost && s->repeatable)
        rc = execute_once(s, &session_lost);
    return rc;
}

static int execute_once(pg_stmt *s, bool *session_lost)
{
    pg_conn *c = s->c;
    if (c->lost_transaction) {
        snprintf(c->sqlstate, sizeof c->sqlstate, "08006");
        snprintf(c->message, sizeof c->message, "the connection was lost inside a transaction");
        return PG_FAILED;
    }
    PGTransactionStatusType before = PQtransactionStatus(c->pg);
    bool in_transaction = before == PQTRANS_INTRANS || before == PQTRANS_INERROR;
    if (!in_transaction && !ensure_connected(c)) {
        remember_failure(c, NULL);
        return PG_FAILED;
    }
    if (s->prepared_in != c->generation || s->prepared_in == 0) {
        PGresult *res = PQprepare(c->pg, s->name, s->sql, s->nparams, s->types);
        bool ok = PQresultStatus(res) == PGRES_COMMAND_OK;
        if (!ok)
            remember_failure(c, res);
        PQclear(res);
        if (!ok) {
            if (in_transaction && PQstatus(c->pg) != CONNECTION_OK)
                c->lost_transaction = true;
            *session_lost = !in_transaction && !*session_lost && PQstatus(c->pg) != CONNECTION_OK;
            return PG_FAILED;
        }
        s->prepared_in = c->generation;
    }
    s->result = PQexecPrepared(c->pg, s->name, s->nparams, s->values, s->lengths, s->formats, 0);
    ExecStatusType status = PQresultStatus(s->result);
    if (status == PGRES_TUPLES_OK) {
        s->rows = PQntuples(s->result);
        s->row = -1;
        c->changes = 0;
        return 0;
    }
    if (status == PGRES_COMMAND_OK) {
        const char *n = PQcmdTuples(s->result);
        c->changes = n != NULL && n[0] != '\0' ? strtoll(n, NULL, 10) : 0;
        s->rows = 0;
        s->row = -1;
        return 0;
    }
    remember_failure(c, s->result);
    PQclear(s->result);
    s->result = NULL;
    if (in_transaction && PQstatus(c->pg) != CONNECTION_OK)
        c->lost_transaction = true;
    *session_lost = !in_transaction && !*session_lost && PQstatus(c->pg) != CONNECTION_OK;
    return PG_FAILED;
}

static int pg_step(sql_stmt *st)
{
    pg_stmt *s = raw(st);
    if (s->result == NULL) {
        int rc = execute(s);
        if (rc != 0)
            return rc;
    }
    drop_row(s);
    if (s->row + 1 >= s->rows) {
        s->row = s->rows;
        return SQL_DONE;
    }
    s->row++;
    return SQL_ROW;
}

static bool pg_column_null(sql_stmt *st, int col)
{
    pg_stmt *s = raw(st);
    return s->result == NULL || s->row < 0 || s->row >= s->rows || PQgetisnull(s->result, s->row, col);
}

static int64_t pg_column_int(sql_stmt *st, int col)
{
    if (pg_column_null(st, col))
        return 0;
    const char *v = PQgetvalue(raw(st)->result, raw(st)->row, col);
    if (strcmp(v, "t") == 0)
        return 1;
    if (strcmp(v, "f") == 0)
        return 0;
    return strtoll(v, NULL, 10);
}

static const char *pg_column_text(sql_stmt *st, int col, size_t *len)
{
    if (len != NULL)
        *len = 0;
    if (pg_column_null(st, col))
        return NULL;
    pg_stmt *s = raw(st);
    if (len != NULL)
        *len = (size_t)PQgetlength(s->result, s->row, col);
    return PQgetvalue(s->result, s->row, col);
}

static const void *pg_column_blob(sql_stmt *st, int col, size_t *len)
{
    *len = 0;
    if (pg_column_null(st, col))
        return NULL;
    pg_stmt *s = raw(st);
    int fields = PQnfields(s->result);
    if (col < 0 || col >= fields)
        return NULL;
    if (s->blob_count < fields) {
        unsigned char **grown = realloc(s->blobs, sizeof *grown * (size_t)fields);
        if (grown == NULL) {
            *len = SIZE_MAX;
            return NULL;
        }
        for (int i = s->blob_count; i < fields; i++)
            grown[i] = NULL;
        s->blobs = grown;
        s->blob_count = fields;
    }
    PQfreemem(s->blobs[col]);
    s->blobs[col] = PQunescapeBytea((const unsigned char *)PQgetvalue(s->result, s->row, col), len);
    if (s->blobs[col] == NULL)
        *len = SIZE_MAX;
    return s->blobs[col];
}

static const char *pg_column_name(sql_stmt *st, int col)
{
    pg_stmt *s = raw(st);
    const char *name = s->result != NULL ? PQfname(s->result, col) : NULL;
    return name != NULL ? name : "a column";
}

static int64_t pg_changes(void *conn)
{
    return ((pg_conn *)conn)->changes;
}

static bool pg_in_transaction(void *conn)
{
    pg_conn *c = conn;
    PGTransactionStatusType t = PQtransactionStatus(c->pg);
    return c->lost_transaction || t == PQTRANS_INTRANS || t == PQTRANS_INERROR || t == PQTRANS_ACTIVE;
}

/* The server discarded a transaction whose connection died; once the
 * store has given it up, the next statement may reconnect. */
static void pg_rolled_back(void *conn)
{
    ((pg_conn *)conn)->lost_transaction = false;
}

static enr_code pg_exec(void *conn, const char *sql, const char *what, enr_error *err)
{
    pg_conn *c = conn;
    if (!pg_in_transaction(c) && !ensure_connected(c))
        return pg_fail(c, 0, what, err);
    bool in_transaction = pg_in_transaction(c);
    PGresult *res = PQexec(c->pg, sql);
    ExecStatusType status = PQresultStatus(res);
    enr_code rc = ENR_OK;
    if (status != PGRES_COMMAND_OK && status != PGRES_TUPLES_OK) {
        remember_failure(c, res);
        if (in_transaction && PQstatus(c->pg) != CONNECTION_OK)
            c->lost_transaction = true;
        rc = pg_fail(c, PG_FAILED, what, err);
    }
    PQclear(res);
    return rc;
}

/* PostgreSQL checks its pages itself (checksums, WAL); this proves the
 * server answers and the schema is there. */
static enr_code pg_integrity_check(void *conn, enr_error *err)
{
    return pg_exec(conn, "SELECT version FROM schema_version LIMIT 1", "checking the store", err);
}

static const char *pg_where(const void *conn)
{
    return ((const pg_conn *)conn)->where;
}

static void pg_close(void *conn)
{
    pg_conn *c = conn;
    if (c == NULL)
        return;
    PQfinish(c->pg);
    if (c->url != NULL) {
        memset(c->url, 0, strlen(c->url)); /* it may hold a password */
        free(c->url);
    }
    free(c);
}

static const sql_driver POSTGRES_DRIVER = {
    .name = "postgresql",
    .dialect = SQL_DIALECT_POSTGRES,
    .prepare = pg_prepare,
    .finalize = pg_finalize,
    .param_index = pg_param_index,
    .bind_text = pg_bind_text,
    .bind_int = pg_bind_int,
    .bind_null = pg_bind_null,
    .bind_blob = pg_bind_blob,
    .step = pg_step,
    .reset = pg_reset,
    .column_null = pg_column_null,
    .column_int = pg_column_int,
    .column_text = pg_column_text,
    .column_blob = pg_column_blob,
    .column_name = pg_column_name,
    .changes = pg_changes,
    .in_transaction = pg_in_transaction,
    .rolled_back = pg_rolled_back,
    .fail = pg_fail,
    .exec = pg_exec,
    .integrity_check = pg_integrity_check,
    .location = pg_where,
    .where = pg_where,
    .close = pg_close,
};

/* ---- opening ------------------------------------------------------------ */

/* The server's notices ("relation already exists, skipping") are not for
 * the people reading enroll's output, and libpq would print them. */
static void quiet(void *arg, const char *message)
{
    (void)arg;
    (void)message;
}

bool enr_store_url_is_postgres(const char *location)
{
    return location != NULL &&
           (strncmp(location, "postgresql://", 13) == 0 || strncmp(location, "postgres://", 11) == 0);
}

void enr_store_location_shown(const char *location, char *out, size_t cap)
{
    if (cap == 0)
        return;
    if (!enr_store_url_is_postgres(location)) {
        snprintf(out, cap, "%s", location != NULL ? location : "");
        return;
    }
    snprintf(out, cap, "postgresql://(unreadable URL)");
    PQconninfoOption *options = PQconninfoParse(location, NULL);
    if (options == NULL)
        return;
    const char *user = "", *host = "", *port = "", *db = "";
    for (PQconninfoOption *o = options; o->keyword != NULL; o++) {
        const char *v = o->val != NULL ? o->val : "";
        if (strcmp(o->keyword, "user") == 0)
            user = v;
        else if (strcmp(o->keyword, "host") == 0)
            host = v;
        else if (strcmp(o->keyword, "port") == 0)
            port = v;
        else if (strcmp(o->keyword, "dbname") == 0)
            db = v;
    }
    snprintf(out, cap, "postgresql://%s%s%s%s%s/%s", user, user[0] ? "@" : "", host, port[0] ? ":" : "", port, db);
    PQconninfoFree(options);
}

/* "postgresql://user@host:port/db": what the URL names, without its
 * password or options, for messages and for a CA directory's note. */
static void describe(pg_conn *c)
{
    const char *user = PQuser(c->pg), *host = PQhost(c->pg), *port = PQport(c->pg), *db = PQdb(c->pg);
    snprintf(c->where, sizeof c->where, "postgresql://%s%s%s%s%s/%s", user != NULL ? user : "",
             user != NULL && user[0] ? "@" : "", host != NULL ? host : "", port != NULL && port[0] ? ":" : "",
             port != NULL ? port : "", db != NULL ? db : "");
}

static enr_code open_postgres(const char *url, bool as_is, enr_store **out, enr_error *err)
{
    if (out == NULL || !enr_store_url_is_postgres(url))
        return enr_error_set(err, ENR_E_USAGE, "a PostgreSQL store is named by a postgresql:// URL");
    *out = NULL;
    char *parse_error = NULL;
    PQconninfoOption *options = PQconninfoParse(url, &parse_error);
    if (options == NULL) {
        /* libpq's message quotes the part it could not read, which may be
         * the password: never passed on. */
        PQfreemem(parse_error);
        return enr_error_set(err, ENR_E_USAGE, "the store URL cannot be read: check its form "
                                               "(postgresql://USER@HOST[:PORT]/DATABASE) and its %%-encoding");
    }
    PQconninfoFree(options);
    pg_conn *c = calloc(1, sizeof *c);
    if (c == NULL || (c->url = strdup(url)) == NULL) {
        free(c);
        return enr_error_set(err, ENR_E_NOMEM, "out of memory");
    }
    /* Ours first, so the URL's own settings win. Keepalives and a TCP
     * user timeout: a connection cut without a word (a network partition)
     * fails its statement within seconds instead of holding a worker's
     * loop for the kernel's quarter of an hour. */
    const char *const keys[] = {"connect_timeout", "application_name", "keepalives", "keepalives_idle",
                                "keepalives_interval", "keepalives_count", "tcp_user_timeout", "dbname", NULL};
    const char *const values[] = {CONNECT_TIMEOUT_S, "enroll", "1", "10", "5", "3", "15000", c->url, NULL};
    c->pg = PQconnectdbParams(keys, values, 1);
    if (c->pg == NULL) {
        pg_close(c);
        return enr_error_set(err, ENR_E_NOMEM, "out of memory");
    }
    describe(c);
    PQsetNoticeProcessor(c->pg, quiet, NULL);
    if (PQstatus(c->pg) != CONNECTION_OK) {
        remember_failure(c, NULL);
        enr_code rc = enr_error_set(err, ENR_E_IO, "%s: cannot connect: %s", c->where, c->message);
        pg_close(c);
        return rc;
    }
    c->generation = 1;
    if (!ensure_connected(c)) {
        remember_failure(c, NULL);
        enr_code rc = enr_error_set(err, ENR_E_IO, "%s: cannot configure the session (synchronous_commit): %s",
                                    c->where, c->message);
        pg_close(c);
        return rc;
    }
    return as_is ? enr_sql_store_open_as_is(&POSTGRES_DRIVER, c, out, err)
                 : enr_sql_store_open(&POSTGRES_DRIVER, c, out, err);
}

enr_code enr_store_open_postgres(const char *url, enr_store **out, enr_error *err)
{
    return open_postgres(url, false, out, err);
}

enr_code enr_store_open_postgres_as_is(const char *url, enr_store **out, enr_error *err)
{
    return open_postgres(url, true, out, err);
}
