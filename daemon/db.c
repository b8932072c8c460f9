/*
 * db.c - the SQLite state store: open, migrations, cached prepared
 * statements, transactions, and the small tables that are db.c's own
 * (meta, unit tokens, revisions).  The outbox and ledger tables are created
 * here too, but outbox.c and ledger.c keep their own statements (db_stmt).
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <libgen.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sqlite3.h>

#include "cutoffd.h"

/* The schema, one step per version: step i takes user_version i to i + 1. */
static const char *const migrations[] = {
	/* 0 -> 1 */
	"CREATE TABLE meta("
	    "  key TEXT NOT NULL PRIMARY KEY,"
	    "  value TEXT);"
	"CREATE TABLE unit_token("
	    "  unit TEXT NOT NULL PRIMARY KEY,"
	    "  token TEXT NOT NULL UNIQUE);"
	"CREATE TABLE rev("
	    "  kind TEXT NOT NULL,"
	    "  id TEXT NOT NULL,"
	    "  hash TEXT,"
	    "  seq INTEGER,"
	    "  modified INTEGER,"
	    "  PRIMARY KEY(kind, id));"
	"CREATE TABLE submission("
	    "  occurrence TEXT NOT NULL,"
	    "  unit TEXT NOT NULL,"
	    "  at INTEGER,"
	    "  recorded INTEGER,"
	    "  source TEXT,"
	    "  note TEXT,"
	    "  PRIMARY KEY(occurrence, unit));"
	"CREATE TABLE submission_event("
	    "  id INTEGER PRIMARY KEY,"
	    "  occurrence TEXT NOT NULL,"
	    "  unit TEXT NOT NULL,"
	    "  action TEXT NOT NULL CHECK(action IN ('received','undo')),"
	    "  at INTEGER,"
	    "  recorded INTEGER,"
	    "  source TEXT,"
	    "  note TEXT);"
	"CREATE INDEX submission_event_occ ON submission_event(occurrence, unit);"
	"CREATE TABLE outbox("
	    "  id INTEGER PRIMARY KEY,"
	    "  occurrence TEXT NOT NULL,"
	    "  unit TEXT NOT NULL,"
	    "  step TEXT NOT NULL,"
	    "  audience TEXT NOT NULL,"
	    "  channel TEXT NOT NULL,"
	    "  recipients TEXT NOT NULL,"
	    "  send_at INTEGER NOT NULL,"
	    "  created INTEGER NOT NULL,"
	    "  state TEXT NOT NULL DEFAULT 'pending',"
	    "  attempts INTEGER NOT NULL DEFAULT 0,"
	    "  next_try INTEGER NOT NULL,"
	    "  last_error TEXT,"
	    "  message_id TEXT NOT NULL,"
	    "  done_at INTEGER,"
	    "  UNIQUE(occurrence, unit, step, audience, channel));"
	"CREATE INDEX outbox_due ON outbox(state, next_try);",

	/* 2: the sender asks per channel; without the channel in the index
	 * every ask walked (and sorted) all due rows of both channels. */
	"CREATE INDEX IF NOT EXISTS outbox_due_channel ON outbox(state, channel, next_try);",

	/* 3: the ledger of 0.2 (ledger.c): nil returns, who did what, more
	 * kinds of history, extended deadlines.  SQLite cannot widen a CHECK
	 * in place, so the history moves into a new table. */
	"ALTER TABLE submission ADD COLUMN nil INTEGER NOT NULL DEFAULT 0;"
	"ALTER TABLE submission ADD COLUMN actor TEXT;"
	"CREATE TABLE submission_event_v3("
	    "  id INTEGER PRIMARY KEY,"
	    "  occurrence TEXT NOT NULL,"
	    "  unit TEXT NOT NULL,"
	    "  action TEXT NOT NULL CHECK(action IN ('received','nil','undo',"
	    "    'extend','proposed','confirmed')),"
	    "  at INTEGER,"
	    "  recorded INTEGER,"
	    "  source TEXT,"
	    "  actor TEXT,"
	    "  detail TEXT,"
	    "  note TEXT);"
	"INSERT INTO submission_event_v3"
	    "(id, occurrence, unit, action, at, recorded, source, note)"
	    " SELECT id, occurrence, unit, action, at, recorded, source, note"
	    " FROM submission_event;"
	"DROP TABLE submission_event;"
	"ALTER TABLE submission_event_v3 RENAME TO submission_event;"
	"CREATE INDEX submission_event_occ ON submission_event(occurrence, unit);"
	"CREATE TABLE extension("
	    "  occurrence TEXT NOT NULL,"
	    "  unit TEXT NOT NULL,"
	    "  due_date TEXT NOT NULL,"
	    "  due_minute INTEGER,"
	    "  recorded INTEGER NOT NULL,"
	    "  source TEXT,"
	    "  actor TEXT,"
	    "  note TEXT,"
	    "  PRIMARY KEY(occurrence, unit));",

	/* 4: the secretariat's mailbox (imap.c): every message read, by
	 * Message-ID, so none counts twice across restarts and UIDVALIDITY
	 * changes; bounces reported for a notice's address; replies and
	 * reports name a notice by its Message-ID. */
	"CREATE TABLE IF NOT EXISTS imap_seen("
	    "  message_id TEXT NOT NULL PRIMARY KEY,"
	    "  uidvalidity INTEGER,"
	    "  uid INTEGER,"
	    "  seen INTEGER NOT NULL,"
	    "  outcome TEXT NOT NULL,"
	    "  occurrence TEXT,"
	    "  unit TEXT,"
	    "  detail TEXT);"
	"CREATE TABLE IF NOT EXISTS notice_bounce("
	    "  outbox_id INTEGER NOT NULL,"
	    "  address TEXT NOT NULL,"
	    "  status TEXT,"
	    "  diagnostic TEXT,"
	    "  at INTEGER NOT NULL,"
	    "  report_id TEXT,"
	    "  PRIMARY KEY(outbox_id, address));"
	"CREATE INDEX IF NOT EXISTS outbox_message_id ON outbox(message_id);",
};
#define NMIGRATIONS (sizeof(migrations) / sizeof(migrations[0]))
_Static_assert(NMIGRATIONS == DB_SCHEMA_VERSION,
	       "one migration step per schema version");

enum stmt_id {
	ST_OK,
	ST_DATA_VERSION,
	ST_BEGIN,
	ST_COMMIT,
	ST_ROLLBACK,
	ST_SAVEPOINT,
	ST_RELEASE,
	ST_ROLLBACK_TO,
	ST_META_GET,
	ST_META_SET,
	ST_TOKEN_INSERT,
	ST_TOKEN_GET,
	ST_REV_UPSERT,
	ST_REV_GET,
	ST_COUNT
};

static const char *const stmt_sql[ST_COUNT] = {
	[ST_OK] = "SELECT 1",
	[ST_DATA_VERSION] = "PRAGMA data_version",
	[ST_BEGIN] = "BEGIN IMMEDIATE",
	[ST_COMMIT] = "COMMIT",
	[ST_ROLLBACK] = "ROLLBACK",
	[ST_SAVEPOINT] = "SAVEPOINT db_inner",
	[ST_RELEASE] = "RELEASE db_inner",
	[ST_ROLLBACK_TO] = "ROLLBACK TO db_inner",
	[ST_META_GET] = "SELECT value FROM meta WHERE key = ?1",
	[ST_META_SET] = "INSERT INTO meta(key, value) VALUES(?1, ?2)"
	    " ON CONFLICT(key) DO UPDATE SET value = excluded.value",
	[ST_TOKEN_INSERT] = "INSERT OR IGNORE INTO unit_token(unit, token)"
	    " VALUES(?1, ?2)",
	[ST_TOKEN_GET] = "SELECT token FROM unit_token WHERE unit = ?1",
	[ST_REV_UPSERT] = "INSERT INTO rev(kind, id, hash, seq, modified)"
	    " VALUES(?1, ?2, ?3, 0, ?4)"
	    " ON CONFLICT(kind, id) DO UPDATE SET"
	    " hash = excluded.hash, seq = seq + 1,"
	    " modified = excluded.modified"
	    " WHERE hash IS NOT excluded.hash",
	[ST_REV_GET] = "SELECT seq, modified FROM rev WHERE kind = ?1 AND id = ?2",
};

#define DB_KEPT_MAX 64

struct db {
	sqlite3 *h;
	char *path;
	int depth;                 /* db_begin transactions open: 0 or 1 */
	sqlite3_stmt *st[ST_COUNT];
	struct {                   /* other modules' statements (db_stmt) */
		const char *sql;
		sqlite3_stmt *st;
	} kept[DB_KEPT_MAX];
	size_t nkept;
};

/* How an internal write is wrapped: its own transaction, or a savepoint
 * inside the caller's (so a failure undoes only our part). */
enum wrap { WRAP_OWN, WRAP_SAVEPOINT };

static void
db_fail(struct db *db, const char *what)
{
	log_err("state database %s: %s: %s", db->path, what,
		sqlite3_errmsg(db->h));
}

static sqlite3_stmt *
stmt(struct db *db, enum stmt_id id)
{
	if (!db->st[id]) {
		int rc = sqlite3_prepare_v3(db->h, stmt_sql[id], -1,
					    SQLITE_PREPARE_PERSISTENT,
					    &db->st[id], NULL);
		if (rc != SQLITE_OK) {
			db_fail(db, "prepare");
			db->st[id] = NULL;
			return NULL;
		}
	}
	return db->st[id];
}

/* Makes a cached statement ready for the next use. */
static void
done(sqlite3_stmt *s)
{
	sqlite3_reset(s);
	sqlite3_clear_bindings(s);
}

/* Runs a statement without result rows (parameters already bound). */
static int
run(struct db *db, sqlite3_stmt *s, const char *what)
{
	int rc = sqlite3_step(s);

	done(s);
	if (rc != SQLITE_DONE && rc != SQLITE_ROW) {
		db_fail(db, what);
		return -1;
	}
	return 0;
}

static int
run_id(struct db *db, enum stmt_id id)
{
	sqlite3_stmt *s = stmt(db, id);

	if (!s)
		return -1;
	return run(db, s, stmt_sql[id]);
}

static int
bind_text(struct db *db, sqlite3_stmt *s, int i, const char *v)
{
	int rc;

	if (v)
		rc = sqlite3_bind_text(s, i, v, -1, SQLITE_STATIC);
	else
		rc = sqlite3_bind_null(s, i);
	if (rc != SQLITE_OK) {
		db_fail(db, "bind");
		return -1;
	}
	return 0;
}

static int
bind_int(struct db *db, sqlite3_stmt *s, int i, int64_t v)
{
	if (sqlite3_bind_int64(s, i, v) != SQLITE_OK) {
		db_fail(db, "bind");
		return -1;
	}
	return 0;
}

static char *
col_dup(sqlite3_stmt *s, int i)
{
	const unsigned char *t = sqlite3_column_text(s, i);

	if (!t)
		return NULL;
	return xstrndup((const char *)t, (size_t)sqlite3_column_bytes(s, i));
}

/* ------------------------------------------------------- transactions */

int
db_begin(struct db *db)
{
	if (db->depth > 0 || !sqlite3_get_autocommit(db->h)) {
		log_err("state database %s: nested transaction (a bug)",
			db->path);
		return -1;
	}
	if (run_id(db, ST_BEGIN) < 0)
		return -1;
	db->depth = 1;
	return 0;
}

int
db_commit(struct db *db)
{
	if (db->depth == 0) {
		log_err("state database %s: commit without a transaction (a bug)",
			db->path);
		return -1;
	}
	if (run_id(db, ST_COMMIT) < 0) {
		db_rollback(db);
		return -1;
	}
	db->depth = 0;
	return 0;
}

void
db_rollback(struct db *db)
{
	if (!db)
		return;
	db->depth = 0;
	/* SQLite may already have rolled back by itself (e.g. SQLITE_FULL). */
	if (sqlite3_get_autocommit(db->h))
		return;
	run_id(db, ST_ROLLBACK);
}

/* Opens our own transaction, or a savepoint when the caller holds one. */
static int
wrap_begin(struct db *db, enum wrap *w)
{
	if (sqlite3_get_autocommit(db->h)) {
		if (db_begin(db) < 0)
			return -1;
		*w = WRAP_OWN;
		return 0;
	}
	if (run_id(db, ST_SAVEPOINT) < 0)
		return -1;
	*w = WRAP_SAVEPOINT;
	return 0;
}

static int
wrap_end(struct db *db, enum wrap w, bool ok)
{
	if (w == WRAP_OWN) {
		if (!ok) {
			db_rollback(db);
			return -1;
		}
		return db_commit(db);
	}
	if (!ok) {
		/* ROLLBACK TO keeps the savepoint open; RELEASE closes it. */
		run_id(db, ST_ROLLBACK_TO);
		run_id(db, ST_RELEASE);
		return -1;
	}
	return run_id(db, ST_RELEASE);
}

int
db_part_begin(struct db *db, int *token)
{
	enum wrap w;

	if (wrap_begin(db, &w) < 0)
		return -1;
	*token = (int)w;
	return 0;
}

int
db_part_end(struct db *db, int token, bool ok)
{
	return wrap_end(db, (enum wrap)token, ok);
}

/* ---------------------------------------------------------- open/close */

static int
pragma_int(sqlite3 *h, const char *sql, int64_t *out)
{
	sqlite3_stmt *s = NULL;
	int rc = sqlite3_prepare_v2(h, sql, -1, &s, NULL);

	if (rc == SQLITE_OK) {
		rc = sqlite3_step(s);
		if (rc == SQLITE_ROW) {
			*out = sqlite3_column_int64(s, 0);
			rc = SQLITE_OK;
		}
	}
	sqlite3_finalize(s);
	return rc == SQLITE_OK ? 0 : -1;
}

static int
set_wal(sqlite3 *h)
{
	sqlite3_stmt *s = NULL;
	int ret = -1;

	if (sqlite3_prepare_v2(h, "PRAGMA journal_mode=WAL", -1, &s, NULL)
	    != SQLITE_OK)
		return -1;
	if (sqlite3_step(s) == SQLITE_ROW) {
		const unsigned char *m = sqlite3_column_text(s, 0);

		/* SQLite answers with the mode it ended up in, which need not
		 * be the one asked for (e.g. on a file system without shm). */
		if (m && strcmp((const char *)m, "wal") == 0)
			ret = 0;
	}
	sqlite3_finalize(s);
	return ret;
}

static char *
too_new(const char *path, int64_t v)
{
	return xasprintf("state database %s has schema version %" PRId64
			 ", newer than this cutoffd supports (%d)",
			 path, v, DB_SCHEMA_VERSION);
}

/* Applies migration step i (version i -> i + 1) in one transaction that
 * also bumps user_version; *ver is the version found inside it. */
static int
migrate_step(sqlite3 *h, size_t i, int64_t *ver)
{
	char *setver;
	int rc;

	if (sqlite3_exec(h, "BEGIN IMMEDIATE", NULL, NULL, NULL) != SQLITE_OK)
		return -1;
	/* another process may have migrated while we waited for the lock */
	if (pragma_int(h, "PRAGMA user_version", ver) < 0)
		goto fail;
	if (*ver > (int64_t)i)
		return sqlite3_exec(h, "ROLLBACK", NULL, NULL, NULL) == SQLITE_OK
			? 0 : -1;
	if (sqlite3_exec(h, migrations[i], NULL, NULL, NULL) != SQLITE_OK)
		goto fail;
	setver = xasprintf("PRAGMA user_version = %zu", i + 1);
	rc = sqlite3_exec(h, setver, NULL, NULL, NULL);
	free(setver);
	if (rc != SQLITE_OK ||
	    sqlite3_exec(h, "COMMIT", NULL, NULL, NULL) != SQLITE_OK)
		goto fail;
	*ver = (int64_t)i + 1;
	return 0;
fail:
	if (!sqlite3_get_autocommit(h))
		sqlite3_exec(h, "ROLLBACK", NULL, NULL, NULL);
	return -1;
}

static int
migrate(sqlite3 *h, const char *path, char **err)
{
	int64_t v;

	if (pragma_int(h, "PRAGMA user_version", &v) < 0) {
		*err = xasprintf("cannot read state database %s: %s", path,
				 sqlite3_errmsg(h));
		return -1;
	}
	if (v < 0) {
		*err = xasprintf("state database %s has an invalid schema"
				 " version %" PRId64, path, v);
		return -1;
	}
	while (v < DB_SCHEMA_VERSION) {
		size_t i = (size_t)v;

		if (migrate_step(h, i, &v) < 0) {
			*err = xasprintf("cannot migrate state database %s to"
					 " version %zu: %s", path, i + 1,
					 sqlite3_errmsg(h));
			return -1;
		}
	}
	if (v > DB_SCHEMA_VERSION) {
		*err = too_new(path, v);
		return -1;
	}
	return 0;
}

/* Creates an empty file 0600 so that SQLite (which gives its WAL and shm
 * files the database's mode) never exposes the feed tokens to other users. */
static int
create_private(const char *path, char **err)
{
	int fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);

	if (fd < 0) {
		if (errno == EEXIST)
			return 0;
		*err = xasprintf("cannot create state database %s: %s", path,
				 strerror(errno));
		return -1;
	}
	close(fd);
	return 0;
}

static int
check_path(const char *path, bool create, char **err)
{
	struct stat st;
	char *copy, *dir;

	if (stat(path, &st) == 0) {
		if (S_ISDIR(st.st_mode)) {
			*err = xasprintf("state database %s is a directory", path);
			return -1;
		}
		return 0;
	}
	if (errno != ENOENT) {
		*err = xasprintf("cannot open state database %s: %s", path,
				 strerror(errno));
		return -1;
	}
	if (!create) {
		*err = xasprintf("no state database at %s", path);
		return -1;
	}
	copy = xstrdup(path);
	dir = dirname(copy);
	if (stat(dir, &st) < 0 || !S_ISDIR(st.st_mode)) {
		*err = xasprintf("directory %s of the state database %s does"
				 " not exist", dir, path);
		free(copy);
		return -1;
	}
	free(copy);
	return create_private(path, err);
}

struct db *
db_open(const char *path, bool create, char **err)
{
	struct db *db = NULL;
	sqlite3 *h = NULL;
	char *msg = NULL;
	int flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX;

	if (create)
		flags |= SQLITE_OPEN_CREATE;
	if (!path || !*path) {
		msg = xstrdup("no state database path");
		goto fail;
	}
	if (check_path(path, create, &msg) < 0)
		goto fail;
	if (sqlite3_open_v2(path, &h, flags, NULL) != SQLITE_OK) {
		msg = xasprintf("cannot open state database %s: %s", path,
				h ? sqlite3_errmsg(h) : "out of memory");
		goto fail;
	}
	sqlite3_extended_result_codes(h, 1);
	/* busy_timeout first so that switching to WAL waits for other
	 * connections instead of failing at once. */
	if (sqlite3_busy_timeout(h, 5000) != SQLITE_OK ||
	    sqlite3_exec(h, "PRAGMA foreign_keys=ON", NULL, NULL, NULL)
	    != SQLITE_OK) {
		msg = xasprintf("cannot set up state database %s: %s", path,
				sqlite3_errmsg(h));
		goto fail;
	}
	if (set_wal(h) < 0) {
		msg = xasprintf("state database %s: cannot switch to WAL"
				" journal mode: %s", path, sqlite3_errmsg(h));
		goto fail;
	}
	/* FULL: a commit survives power loss, not only a crash (WAL+NORMAL) */
	if (sqlite3_exec(h, "PRAGMA synchronous=FULL", NULL, NULL, NULL)
	    != SQLITE_OK) {
		msg = xasprintf("cannot set up state database %s: %s", path,
				sqlite3_errmsg(h));
		goto fail;
	}
	if (migrate(h, path, &msg) < 0)
		goto fail;

	db = xcalloc(1, sizeof(*db));
	db->h = h;
	db->path = xstrdup(path);
	return db;
fail:
	sqlite3_close(h);
	if (err)
		*err = msg;
	else
		free(msg);
	return NULL;
}

void
db_close(struct db *db)
{
	if (!db)
		return;
	if (db->depth > 0 || !sqlite3_get_autocommit(db->h)) {
		log_warn("state database %s: closed inside a transaction,"
			 " rolling back", db->path);
		db_rollback(db);
	}
	for (size_t i = 0; i < ST_COUNT; i++)
		sqlite3_finalize(db->st[i]);
	for (size_t i = 0; i < db->nkept; i++)
		sqlite3_finalize(db->kept[i].st);
	if (sqlite3_close(db->h) != SQLITE_OK)
		db_fail(db, "close (statements still open)");
	free(db->path);
	free(db);
}

struct sqlite3 *
db_handle(struct db *db)
{
	return db->h;
}

int
db_sync_full(struct db *db, bool full)
{
	/* per connection, between transactions; a FULL commit also makes
	 * the NORMAL ones before it durable (one fsync of the WAL) */
	if (db->depth > 0)
		return -1;
	if (sqlite3_exec(db->h, full ? "PRAGMA synchronous=FULL" :
			 "PRAGMA synchronous=NORMAL", NULL, NULL, NULL) !=
	    SQLITE_OK) {
		db_fail(db, "synchronous");
		return -1;
	}
	return 0;
}

int64_t
db_total_changes(struct db *db)
{
	return (int64_t)sqlite3_total_changes(db->h);
}

int
db_sync(struct db *db)
{
	int rc;

	if (db->depth > 0)
		return -1;
	/* a checkpoint syncs the WAL before copying it into the database */
	rc = sqlite3_wal_checkpoint_v2(db->h, NULL, SQLITE_CHECKPOINT_PASSIVE,
				       NULL, NULL);
	if (rc != SQLITE_OK && rc != SQLITE_BUSY) {
		db_fail(db, "checkpoint");
		return -1;
	}
	return 0;
}

struct sqlite3_stmt *
db_stmt(struct db *db, const char *sql)
{
	sqlite3_stmt *st = NULL;
	size_t i;

	/* keyed by the literal's address: a handful of call sites */
	for (i = 0; i < db->nkept; i++)
		if (db->kept[i].sql == sql)
			return db->kept[i].st;
	if (sqlite3_prepare_v3(db->h, sql, -1, SQLITE_PREPARE_PERSISTENT, &st,
			       NULL) != SQLITE_OK) {
		db_fail(db, "prepare");
		sqlite3_finalize(st);
		return NULL;
	}
	if (db->nkept == DB_KEPT_MAX)
		return st;      /* not kept: db_stmt_done finalizes it */
	db->kept[db->nkept].sql = sql;
	db->kept[db->nkept++].st = st;
	return st;
}

void
db_stmt_done(struct db *db, struct sqlite3_stmt *st)
{
	size_t i;

	if (st == NULL)
		return;
	for (i = 0; i < db->nkept; i++) {
		if (db->kept[i].st == st) {
			sqlite3_reset(st);
			sqlite3_clear_bindings(st);
			return;
		}
	}
	sqlite3_finalize(st);
}

bool
db_ok(struct db *db)
{
	sqlite3_stmt *s;
	int rc;

	if (!db)
		return false;
	s = stmt(db, ST_OK);
	if (!s)
		return false;
	rc = sqlite3_step(s);
	done(s);
	if (rc != SQLITE_ROW) {
		db_fail(db, "health check");
		return false;
	}
	return true;
}

int64_t
db_data_version(struct db *db)
{
	sqlite3_stmt *s = stmt(db, ST_DATA_VERSION);
	int64_t v = -1;

	if (!s)
		return -1;
	if (sqlite3_step(s) == SQLITE_ROW)
		v = sqlite3_column_int64(s, 0);
	else
		db_fail(db, "data_version");
	done(s);
	return v;
}

/* ------------------------------------------------------------------ meta */

int
db_meta_get(struct db *db, const char *key, char **val)
{
	sqlite3_stmt *s = stmt(db, ST_META_GET);
	int rc, ret = -1;

	if (!s || bind_text(db, s, 1, key) < 0)
		goto out;
	rc = sqlite3_step(s);
	if (rc == SQLITE_ROW) {
		char *v = col_dup(s, 0);

		*val = v ? v : xstrdup("");
		ret = 0;
	} else if (rc == SQLITE_DONE) {
		ret = 1;
	} else {
		db_fail(db, "meta get");
	}
out:
	if (s)
		done(s);
	return ret;
}

int
db_meta_set(struct db *db, const char *key, const char *val)
{
	sqlite3_stmt *s = stmt(db, ST_META_SET);

	if (!s)
		return -1;
	if (bind_text(db, s, 1, key) < 0 || bind_text(db, s, 2, val) < 0) {
		done(s);
		return -1;
	}
	return run(db, s, "meta set");
}

/* ----------------------------------------------------------- unit tokens */

#define TOKEN_BYTES 32

/* 0 found, 1 absent, -1 error */
static int
token_get(struct db *db, const char *unit, char **token)
{
	sqlite3_stmt *s = stmt(db, ST_TOKEN_GET);
	int rc, ret = -1;

	if (!s)
		return -1;
	if (bind_text(db, s, 1, unit) < 0)
		goto out;
	rc = sqlite3_step(s);
	if (rc == SQLITE_ROW) {
		char *t = col_dup(s, 0);

		if (t) {
			*token = t;
			ret = 0;
		}
	} else if (rc == SQLITE_DONE) {
		ret = 1;
	} else {
		db_fail(db, "token get");
	}
out:
	done(s);
	return ret;
}

int
db_unit_token(struct db *db, const char *unit, char **token)
{
	int rc;

	if (!unit)
		return -1;
	rc = token_get(db, unit, token);
	if (rc <= 0)
		return rc;
	/* A clash of 256-bit tokens is as good as impossible, but when the
	 * UNIQUE constraint ignores our insert, try another one. */
	for (int tries = 0; tries < 3; tries++) {
		char hex[2 * TOKEN_BYTES + 1];
		sqlite3_stmt *s = stmt(db, ST_TOKEN_INSERT);

		if (!s)
			return -1;
		if (random_hex(hex, TOKEN_BYTES) < 0) {
			log_err("cannot get random bytes for a feed token");
			return -1;
		}
		if (bind_text(db, s, 1, unit) < 0 ||
		    bind_text(db, s, 2, hex) < 0) {
			done(s);
			return -1;
		}
		if (run(db, s, "token insert") < 0)
			return -1;
		/* whoever inserted first (us or another connection) wins */
		rc = token_get(db, unit, token);
		if (rc <= 0)
			return rc;
	}
	log_err("state database %s: cannot store a feed token", db->path);
	return -1;
}

/* -------------------------------------------------------------- revisions */

int
db_rev(struct db *db, const char *kind, const char *id, const char *hash,
       tstamp now, int64_t *seq, tstamp *modified)
{
	sqlite3_stmt *s = stmt(db, ST_REV_UPSERT);
	int rc, ret = -1;

	if (!s)
		return -1;
	if (bind_text(db, s, 1, kind) < 0 || bind_text(db, s, 2, id) < 0 ||
	    bind_text(db, s, 3, hash) < 0 || bind_int(db, s, 4, now) < 0) {
		done(s);
		return -1;
	}
	/* One statement: insert, bump only when the hash changed. */
	if (run(db, s, "rev update") < 0)
		return -1;

	s = stmt(db, ST_REV_GET);
	if (!s)
		return -1;
	if (bind_text(db, s, 1, kind) < 0 || bind_text(db, s, 2, id) < 0)
		goto out;
	rc = sqlite3_step(s);
	if (rc == SQLITE_ROW) {
		if (seq)
			*seq = sqlite3_column_int64(s, 0);
		if (modified)
			*modified = sqlite3_column_int64(s, 1);
		ret = 0;
	} else {
		db_fail(db, "rev get");
	}
out:
	done(s);
	return ret;
}

/* ------------------------------------------------- the mailbox (imap.c) */

#define SQL_IMAP_SEEN \
	"SELECT 1 FROM imap_seen WHERE message_id = ?1"
#define SQL_IMAP_MARK \
	"INSERT OR IGNORE INTO imap_seen(message_id, uidvalidity, uid, seen," \
	" outcome, occurrence, unit, detail)" \
	" VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)"
#define SQL_NOTICE_BY_MID \
	"SELECT id, occurrence, unit, step, audience, recipients, send_at" \
	" FROM outbox WHERE message_id = ?1 AND channel = 'email'" \
	" AND state = 'sent' ORDER BY id LIMIT 1"
#define SQL_BOUNCE_ADD \
	"INSERT OR IGNORE INTO notice_bounce(outbox_id, address, status," \
	" diagnostic, at, report_id) VALUES(?1, ?2, ?3, ?4, ?5, ?6)"
#define SQL_BOUNCES \
	"SELECT o.occurrence, o.unit, o.step, o.audience, b.address," \
	" b.status, b.diagnostic, b.at FROM notice_bounce b" \
	" JOIN outbox o ON o.id = b.outbox_id" \
	" WHERE ?1 IS NULL OR o.occurrence = ?1" \
	" ORDER BY o.occurrence, o.unit, o.step, b.address"

int
db_imap_seen(struct db *db, const char *message_id)
{
	sqlite3_stmt *s = db_stmt(db, SQL_IMAP_SEEN);
	int rc;

	if (!s)
		return -1;
	if (bind_text(db, s, 1, message_id) < 0) {
		db_stmt_done(db, s);
		return -1;
	}
	rc = sqlite3_step(s);
	db_stmt_done(db, s);
	if (rc == SQLITE_ROW)
		return 1;
	if (rc == SQLITE_DONE)
		return 0;
	db_fail(db, "imap seen");
	return -1;
}

int
db_imap_mark(struct db *db, const char *message_id, int64_t uidvalidity,
	     int64_t uid, const char *outcome, const char *occ,
	     const char *unit, const char *detail, tstamp now)
{
	sqlite3_stmt *s = db_stmt(db, SQL_IMAP_MARK);

	if (!s)
		return -1;
	if (bind_text(db, s, 1, message_id) < 0 ||
	    bind_int(db, s, 2, uidvalidity) < 0 || bind_int(db, s, 3, uid) < 0 ||
	    bind_int(db, s, 4, now) < 0 || bind_text(db, s, 5, outcome) < 0 ||
	    bind_text(db, s, 6, occ) < 0 || bind_text(db, s, 7, unit) < 0 ||
	    bind_text(db, s, 8, detail) < 0) {
		db_stmt_done(db, s);
		return -1;
	}
	if (run(db, s, "imap mark") < 0)
		return -1;
	return sqlite3_changes(db->h) > 0 ? 0 : 1;
}

int
db_notice_by_message_id(struct db *db, const char *message_id,
			struct notice *out)
{
	sqlite3_stmt *s = db_stmt(db, SQL_NOTICE_BY_MID);
	int rc, ret = -1;

	if (!s)
		return -1;
	if (bind_text(db, s, 1, message_id) < 0) {
		db_stmt_done(db, s);
		return -1;
	}
	rc = sqlite3_step(s);
	if (rc == SQLITE_ROW) {
		const char *t;

		memset(out, 0, sizeof(*out));
		out->id = sqlite3_column_int64(s, 0);
		t = (const char *)sqlite3_column_text(s, 1);
		snprintf(out->occurrence, sizeof(out->occurrence), "%s",
			 t ? t : "");
		t = (const char *)sqlite3_column_text(s, 2);
		snprintf(out->unit, sizeof(out->unit), "%s", t ? t : "");
		t = (const char *)sqlite3_column_text(s, 3);
		snprintf(out->step, sizeof(out->step), "%s", t ? t : "");
		t = (const char *)sqlite3_column_text(s, 4);
		if (t == NULL || outbox_audience(t, &out->aud) < 0)
			out->aud = AUD_UNIT;
		out->ch = CH_EMAIL;
		out->recipients = col_dup(s, 5);
		out->send_at = sqlite3_column_int64(s, 6);
		snprintf(out->message_id, sizeof(out->message_id), "%s",
			 message_id);
		ret = 0;
	} else if (rc == SQLITE_DONE) {
		ret = 1;
	} else {
		db_fail(db, "notice by message id");
	}
	db_stmt_done(db, s);
	return ret;
}

int
db_bounce_add(struct db *db, int64_t outbox_id, const char *address,
	      const char *status, const char *diagnostic,
	      const char *report_id, tstamp now)
{
	sqlite3_stmt *s = db_stmt(db, SQL_BOUNCE_ADD);

	if (!s)
		return -1;
	if (bind_int(db, s, 1, outbox_id) < 0 ||
	    bind_text(db, s, 2, address) < 0 ||
	    bind_text(db, s, 3, status) < 0 ||
	    bind_text(db, s, 4, diagnostic) < 0 ||
	    bind_int(db, s, 5, now) < 0 ||
	    bind_text(db, s, 6, report_id) < 0) {
		db_stmt_done(db, s);
		return -1;
	}
	if (run(db, s, "bounce add") < 0)
		return -1;
	return sqlite3_changes(db->h) > 0 ? 0 : 1;
}

int
db_bounce_foreach(struct db *db, const char *occ, db_bounce_fn fn, void *ctx)
{
	sqlite3_stmt *s = db_stmt(db, SQL_BOUNCES);
	struct db_bounce *v = NULL;
	size_t n = 0, cap = 0;
	int rc, ret = -1;

	if (!s)
		return -1;
	if (bind_text(db, s, 1, occ) < 0) {
		db_stmt_done(db, s);
		return -1;
	}
	/* read all first: fn may use the database */
	while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
		struct db_bounce *b;

		if (n == cap) {
			cap = cap ? 2 * cap : 16;
			v = xrealloc(v, cap * sizeof(*v));
		}
		b = &v[n++];
		b->occurrence = col_dup(s, 0);
		b->unit = col_dup(s, 1);
		b->step = col_dup(s, 2);
		b->audience = col_dup(s, 3);
		b->address = col_dup(s, 4);
		b->status = col_dup(s, 5);
		b->diagnostic = col_dup(s, 6);
		b->at = sqlite3_column_int64(s, 7);
	}
	db_stmt_done(db, s);
	if (rc != SQLITE_DONE) {
		db_fail(db, "bounces");
	} else {
		ret = 0;
		for (size_t i = 0; i < n; i++)
			if (fn(ctx, &v[i]) != 0)
				break;
	}
	for (size_t i = 0; i < n; i++) {
		free((char *)v[i].occurrence);
		free((char *)v[i].unit);
		free((char *)v[i].step);
		free((char *)v[i].audience);
		free((char *)v[i].address);
		free((char *)v[i].status);
		free((char *)v[i].diagnostic);
	}
	free(v);
	return ret;
}
