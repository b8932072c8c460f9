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
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
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
	/* 4: the addresses of a notice a server refused (RCPT 5xx/4xx while
	 * others took the mail), each with the server's reply.  The due
	 * indexes become partial: only pending rows are in them, so a row
	 * sent leaves them (one b-tree delete each) instead of moving inside
	 * them (a delete and an insert each); callgrind: marking a row sent
	 * cost about 40k instructions, the largest SQL cost of a send.
	 * Failed rows, which the status lists, get a partial index too. */
	"DROP INDEX IF EXISTS outbox_due;"
	"DROP INDEX IF EXISTS outbox_due_channel;"
	"CREATE INDEX IF NOT EXISTS outbox_pending ON outbox(channel, next_try) "
	    "WHERE state = 'pending';"
	"CREATE INDEX IF NOT EXISTS outbox_failed ON outbox(occurrence) "
	    "WHERE state = 'failed';"
	"CREATE TABLE IF NOT EXISTS outbox_refused("
	    "  outbox_id INTEGER NOT NULL,"
	    "  address TEXT NOT NULL,"
	    "  reply TEXT NOT NULL,"
	    "  at INTEGER NOT NULL,"
	    "  PRIMARY KEY(outbox_id, address));",

	/* 5: the secretariat's mailbox (imap.c): every message read, by
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

	/* 6: proposals can be rejected (ledger.c): one more history action;
	 * the CHECK is widened the only way SQLite allows, a new table. */
	"CREATE TABLE submission_event_v6("
	    "  id INTEGER PRIMARY KEY,"
	    "  occurrence TEXT NOT NULL,"
	    "  unit TEXT NOT NULL,"
	    "  action TEXT NOT NULL CHECK(action IN ('received','nil','undo',"
	    "    'extend','proposed','confirmed','rejected')),"
	    "  at INTEGER,"
	    "  recorded INTEGER,"
	    "  source TEXT,"
	    "  actor TEXT,"
	    "  detail TEXT,"
	    "  note TEXT);"
	"INSERT INTO submission_event_v6 SELECT id, occurrence, unit, action,"
	    " at, recorded, source, actor, detail, note FROM submission_event;"
	"DROP TABLE submission_event;"
	"ALTER TABLE submission_event_v6 RENAME TO submission_event;"
	"CREATE INDEX submission_event_occ ON submission_event(occurrence, unit);",
};
#define NMIGRATIONS (sizeof(migrations) / sizeof(migrations[0]))
_Static_assert(NMIGRATIONS == DB_SCHEMA_VERSION,
	       "one migration step per schema version");

enum stmt_id {
	ST_HEALTH_META,
	ST_HEALTH_OUTBOX,
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
	ST_REV_SEED,
	ST_SUB_LAST_EVENT,
	ST_COUNT
};

static const char *const stmt_sql[ST_COUNT] = {
	/* /healthz: one page of two real tables (SELECT 1 reads nothing) */
	[ST_HEALTH_META] = "SELECT count(*) FROM"
	    " (SELECT key, value FROM meta LIMIT 64)",
	[ST_HEALTH_OUTBOX] = "SELECT count(*) FROM (SELECT id, state FROM outbox"
	    " ORDER BY id DESC LIMIT 64)",
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
	[ST_REV_GET] = "SELECT seq, modified, hash FROM rev"
	    " WHERE kind = ?1 AND id = ?2",
	[ST_REV_SEED] = "INSERT OR IGNORE INTO rev(kind, id, hash, seq, modified)"
	    " VALUES(?1, ?2, ?3, 0, ?4)",
	[ST_SUB_LAST_EVENT] = "SELECT max(recorded) FROM submission_event"
	    " WHERE occurrence = ?1 AND (?2 IS NULL OR unit = ?2)",
};

#define DB_KEPT_MAX 64

/* The background integrity check (see db_health). */
struct integ {
	pthread_mutex_t mu;
	pthread_t thread;
	bool running;              /* a thread was started and not joined */
	bool done;                 /* it finished: join it */
	bool have;                 /* a result is there */
	double started;            /* CLOCK_MONOTONIC of the last start */
	char result[160];          /* "" ok, else the first problem */
	double took;               /* seconds the last check ran */
	char *path;                /* the thread's copy */
	struct timespec mtime;     /* the file's, when the last check began */
	off_t size;
};

struct db {
	sqlite3 *h;
	char *path;
	int fd;                    /* read-only, for db_health: never closed
				      before sqlite3_close (closing any fd of
				      the file drops SQLite's POSIX locks) */
	dev_t dev;
	ino_t ino;
	int busy_ms;
	bool busy;                 /* the last failure was SQLITE_BUSY */
	double busy_since;         /* CLOCK_MONOTONIC, 0 = not locked out */
	struct integ integ;
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

static double
mono_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void
db_fail(struct db *db, const char *what)
{
	int rc = sqlite3_errcode(db->h) & 0xff;

	if (rc == SQLITE_BUSY || rc == SQLITE_LOCKED) {
		/* another process holds the write lock: the caller retries
		 * later (db_busy); one warning per episode, not per try */
		if (!db->busy_since) {
			db->busy_since = mono_now();
			log_warn("state database %s is locked by another"
				 " process; writes wait for it", db->path);
		} else {
			log_debug("state database %s: %s: still locked",
				  db->path, what);
		}
		db->busy = true;
		return;
	}
	db->busy = false;
	log_err("state database %s: %s: %s", db->path, what,
		sqlite3_errmsg(db->h));
}

/* A write went through: the lock episode, if any, is over. */
static void
db_unbusy(struct db *db)
{
	if (db->busy_since)
		log_info("state database %s: writable again after %.1f s",
			 db->path, mono_now() - db->busy_since);
	db->busy = false;
	db->busy_since = 0;
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

int
db_bind_text(struct db *db, sqlite3_stmt *s, int i, const char *v)
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

int
db_bind_int(struct db *db, sqlite3_stmt *s, int i, int64_t v)
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
	db->busy = false;
	if (run_id(db, ST_BEGIN) < 0)
		return -1;
	db->depth = 1;
	db_unbusy(db);             /* we hold the write lock: not locked out */
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

/* The header field that says "this SQLite file is a cutoffd state store"
 * ("cutd"); a file without it is refused rather than written over. */
#define DB_APPLICATION_ID 0x63757464
/* The tables of schema version 1: an 0.1.0 store (no application_id yet)
 * is recognised by them and gets the id on its first open. */
static const char our_tables[] =
	"SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name IN"
	" ('meta', 'unit_token', 'rev', 'submission', 'submission_event',"
	" 'outbox')";

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

/* Whether the SQLite file open in h is ours; an 0.1.0 store (our tables,
 * application_id 0) is stamped with the id here.  A fresh store never gets
 * here empty: db_create builds it completely under another name first. */
static int
check_ours(sqlite3 *h, const char *path, char **err)
{
	int64_t id, ver, tables;
	int rc;

	if (pragma_int(h, "PRAGMA application_id", &id) < 0) {
		rc = sqlite3_errcode(h) & 0xff;
		if (rc == SQLITE_NOTADB)
			*err = xasprintf("%s is not a cutoffd state store (not an"
					 " SQLite database); refusing to use"
					 " it", path);
		else
			*err = xasprintf("cannot read state database %s: %s",
					 path, sqlite3_errmsg(h));
		return -1;
	}
	if (id == DB_APPLICATION_ID)
		return 0;
	if (id != 0 || pragma_int(h, "PRAGMA user_version", &ver) < 0 ||
	    pragma_int(h, our_tables, &tables) < 0 || ver < 1 || tables != 6) {
		*err = xasprintf("%s is an SQLite database but not a cutoffd"
				 " state store (application_id %" PRId64
				 ", no cutoffd schema); refusing to use it",
				 path, id);
		return -1;
	}
	if (sqlite3_exec(h, "PRAGMA application_id = 1668641892", NULL, NULL,
			 NULL) != SQLITE_OK) {
		*err = xasprintf("cannot mark state database %s: %s", path,
				 sqlite3_errmsg(h));
		return -1;
	}
	return 0;
}
_Static_assert(DB_APPLICATION_ID == 1668641892, "the id in check_ours");

static void
sync_dir(const char *path)
{
	char *copy = xstrdup(path);
	int fd = open(dirname(copy), O_RDONLY | O_DIRECTORY | O_CLOEXEC);

	if (fd >= 0) {
		fsync(fd);
		close(fd);
	}
	free(copy);
}

/*
 * Creates a complete state store at path, which must not exist: built
 * under a temporary name (mode 0600, so that SQLite, which gives its WAL
 * and shm files the database's mode, never exposes the feed tokens), then
 * moved into place without replacing anything.  So a store is either all
 * there or not at all, and an empty file at path is never ours.
 */
static int
db_create(const char *path, char **err)
{
	char *tmp = xasprintf("%s.new-XXXXXX", path);
	sqlite3 *h = NULL;
	int fd, rc;

	fd = mkostemp(tmp, O_CLOEXEC);
	if (fd < 0) {
		*err = xasprintf("cannot create state database %s: %s", path,
				 strerror(errno));
		free(tmp);
		return -1;
	}
	close(fd);
	if (sqlite3_open_v2(tmp, &h, SQLITE_OPEN_READWRITE |
			    SQLITE_OPEN_NOMUTEX, NULL) != SQLITE_OK ||
	    sqlite3_exec(h, "PRAGMA application_id = 1668641892", NULL, NULL,
			 NULL) != SQLITE_OK ||
	    sqlite3_exec(h, "PRAGMA synchronous=FULL", NULL, NULL, NULL)
	    != SQLITE_OK) {
		*err = xasprintf("cannot create state database %s: %s", path,
				 h ? sqlite3_errmsg(h) : "out of memory");
		goto fail;
	}
	if (migrate(h, path, err) < 0)
		goto fail;
	if (sqlite3_close(h) != SQLITE_OK) {
		*err = xasprintf("cannot create state database %s: close",
				 path);
		h = NULL;
		goto fail;
	}
	h = NULL;
	rc = renameat2(AT_FDCWD, tmp, AT_FDCWD, path, RENAME_NOREPLACE);
	if (rc < 0 && (errno == EINVAL || errno == ENOSYS)) {
		/* a file system without RENAME_NOREPLACE: link() never
		 * replaces either */
		rc = link(tmp, path);
		if (rc == 0 || errno == EEXIST)
			unlink(tmp);
	}
	if (rc < 0 && errno != EEXIST) {
		*err = xasprintf("cannot create state database %s: %s", path,
				 strerror(errno));
		goto fail;
	}
	/* EEXIST: another cutoffd made one meanwhile; db_open checks it */
	unlink(tmp);
	sync_dir(path);
	free(tmp);
	return 0;
fail:
	sqlite3_close(h);
	unlink(tmp);
	free(tmp);
	return -1;
}

/* 0 a regular file is there, 1 none (and we may create one), -1 error */
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
		if (!S_ISREG(st.st_mode)) {
			*err = xasprintf("state database %s is not a regular"
					 " file", path);
			return -1;
		}
		if (st.st_size == 0) {
			*err = xasprintf("state database %s is an empty file,"
					 " not a cutoffd state store; refusing"
					 " to use it (remove it and cutoffd"
					 " creates a new store)", path);
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
		*err = xasprintf("no state database at %s (cutoffd creates it"
				 " when it first starts)", path);
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
	return 1;
}

struct db *
db_open(const char *path, bool create, char **err)
{
	struct db *db = NULL;
	struct stat st;
	sqlite3 *h = NULL;
	char *msg = NULL;
	int rc, fd = -1;

	if (!path || !*path) {
		msg = xstrdup("no state database path");
		goto fail;
	}
	rc = check_path(path, create, &msg);
	if (rc < 0 || (rc == 1 && db_create(path, &msg) < 0))
		goto fail;
	/* never SQLITE_OPEN_CREATE: a store deleted since the check must not
	 * come back empty */
	if (sqlite3_open_v2(path, &h, SQLITE_OPEN_READWRITE |
			    SQLITE_OPEN_NOMUTEX, NULL) != SQLITE_OK) {
		msg = xasprintf("cannot open state database %s: %s", path,
				h ? sqlite3_errmsg(h) : "out of memory");
		goto fail;
	}
	sqlite3_extended_result_codes(h, 1);
	/* busy_timeout first so that switching to WAL waits for other
	 * connections instead of failing at once. */
	if (sqlite3_busy_timeout(h, DB_BUSY_MS) != SQLITE_OK ||
	    sqlite3_exec(h, "PRAGMA foreign_keys=ON", NULL, NULL, NULL)
	    != SQLITE_OK) {
		msg = xasprintf("cannot set up state database %s: %s", path,
				sqlite3_errmsg(h));
		goto fail;
	}
	if (check_ours(h, path, &msg) < 0)
		goto fail;
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
	/* our own descriptor of the file, to tell later whether the path
	 * still names the file SQLite has open (db_health) */
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0 || fstat(fd, &st) < 0) {
		msg = xasprintf("cannot open state database %s: %s", path,
				strerror(errno));
		goto fail;
	}

	db = xcalloc(1, sizeof(*db));
	db->h = h;
	db->path = xstrdup(path);
	db->fd = fd;
	db->dev = st.st_dev;
	db->ino = st.st_ino;
	db->busy_ms = DB_BUSY_MS;
	pthread_mutex_init(&db->integ.mu, NULL);
	return db;
fail:
	sqlite3_close(h);
	if (fd >= 0)
		close(fd);         /* after sqlite3_close: see struct db */
	if (err)
		*err = msg;
	else
		free(msg);
	return NULL;
}

static void integ_reap(struct db *db, bool wait);

void
db_close(struct db *db)
{
	if (!db)
		return;
	integ_reap(db, true);
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
	close(db->fd);
	pthread_mutex_destroy(&db->integ.mu);
	free(db->path);
	free(db);
}

int
db_set_busy_timeout(struct db *db, int ms)
{
	if (sqlite3_busy_timeout(db->h, ms) != SQLITE_OK)
		return -1;
	db->busy_ms = ms;
	return 0;
}

bool
db_busy(const struct db *db)
{
	return db && db->busy;
}

double
db_locked_for(const struct db *db)
{
	return db && db->busy_since ? mono_now() - db->busy_since : 0;
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

/* ---------------------------------------------------------------- health */

/* A full integrity check (quick_check reads every page) is too slow for
 * each /healthz, so it runs in a thread on a connection of its own (which
 * reads the file, not the loop connection's page cache): when a health
 * request finds the file changed since the last check, or INTEG_EVERY s
 * passed; never more often than INTEG_MIN s, nor than INTEG_SHARE times
 * the last check's duration (a large store under constant writes costs at
 * most 1/INTEG_SHARE of a core).  No request, no check: idle costs
 * nothing. */
#define INTEG_MIN 5.0
#define INTEG_EVERY 600.0
#define INTEG_SHARE 20.0
/* a request that started a check waits this long for its result (a small
 * store's check takes a millisecond or two) */
#define INTEG_WAIT_MS 10

static void *
integ_thread(void *arg)
{
	struct integ *in = arg;
	sqlite3 *h = NULL;
	sqlite3_stmt *s = NULL;
	char res[sizeof(in->result)] = "";
	bool have = true;
	double t0 = mono_now();
	int rc;

	rc = sqlite3_open_v2(in->path, &h, SQLITE_OPEN_READONLY |
			     SQLITE_OPEN_NOMUTEX, NULL);
	if (rc == SQLITE_OK) {
		sqlite3_busy_timeout(h, 2000);
		rc = sqlite3_prepare_v2(h, "PRAGMA quick_check(1)", -1, &s,
					NULL);
	}
	if (rc == SQLITE_OK)
		rc = sqlite3_step(s);
	if (rc == SQLITE_ROW) {
		const unsigned char *t = sqlite3_column_text(s, 0);

		if (!t || strcmp((const char *)t, "ok") != 0)
			snprintf(res, sizeof(res), "%s",
				 t ? (const char *)t : "no answer");
	} else if ((rc & 0xff) == SQLITE_CORRUPT ||
		   (rc & 0xff) == SQLITE_NOTADB) {
		snprintf(res, sizeof(res), "%s", sqlite3_errstr(rc));
	} else {
		have = false;      /* busy, out of memory: no verdict */
	}
	sqlite3_finalize(s);
	sqlite3_close(h);
	for (char *p = res; *p; p++)
		if ((unsigned char)*p < 0x20)
			*p = ' ';          /* one line */
	pthread_mutex_lock(&in->mu);
	if (have) {
		memcpy(in->result, res, sizeof(res));
		in->have = true;
	}
	in->took = mono_now() - t0;
	in->done = true;
	pthread_mutex_unlock(&in->mu);
	return NULL;
}

/* Joins a finished (or, when wait, any) check thread. */
static void
integ_reap(struct db *db, bool wait)
{
	struct integ *in = &db->integ;
	bool done;

	if (!in->running)
		return;
	pthread_mutex_lock(&in->mu);
	done = in->done;
	pthread_mutex_unlock(&in->mu);
	if (!done && !wait)
		return;
	pthread_join(in->thread, NULL);
	in->running = false;
	free(in->path);
	in->path = NULL;
}

static void
integ_kick(struct db *db, const struct stat *st)
{
	struct integ *in = &db->integ;
	double now = mono_now(), since = now - in->started, gap;
	bool changed = st->st_mtim.tv_sec != in->mtime.tv_sec ||
		       st->st_mtim.tv_nsec != in->mtime.tv_nsec ||
		       st->st_size != in->size;

	integ_reap(db, false);
	if (in->running)
		return;            /* (took is the thread's until joined) */
	gap = in->took * INTEG_SHARE > INTEG_MIN ? in->took * INTEG_SHARE :
	      INTEG_MIN;
	if ((in->started > 0 && since < gap) ||
	    (in->started > 0 && !changed && since < INTEG_EVERY))
		return;
	in->started = now;
	in->mtime = st->st_mtim;
	in->size = st->st_size;
	in->done = false;
	in->path = xstrdup(db->path);
	if (pthread_create(&in->thread, NULL, integ_thread, in) != 0) {
		free(in->path);
		in->path = NULL;
		return;
	}
	in->running = true;
	for (int i = 0; i < INTEG_WAIT_MS; i++) {
		struct timespec ms = { 0, 1000000 };

		integ_reap(db, false);
		if (!in->running)
			break;
		nanosleep(&ms, NULL);
	}
}

static uint32_t
be32(const unsigned char *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 |
	       (uint32_t)p[2] << 8 | p[3];
}

static const char *
read_problem(int rc)
{
	switch (rc & 0xff) {
	case SQLITE_CORRUPT:
	case SQLITE_NOTADB:
		return "corrupt";
	case SQLITE_BUSY:
	case SQLITE_LOCKED:
		return "locked";
	default:
		return "unreadable";
	}
}

/* During a lock episode, whether it is over: nobody may write again for a
 * while, and db_locked_for must not grow past the lock.  BEGIN IMMEDIATE
 * without waiting, then ROLLBACK: no write, no sync. */
static void
lock_probe(struct db *db)
{
	if (!db->busy_since || db->depth > 0 || !sqlite3_get_autocommit(db->h))
		return;
	sqlite3_busy_timeout(db->h, 0);
	if (db_begin(db) == 0)
		db_rollback(db);
	sqlite3_busy_timeout(db->h, db->busy_ms);
}

int
db_health(struct db *db, char *why, size_t n)
{
	static const enum stmt_id reads[] = { ST_HEALTH_META,
					      ST_HEALTH_OUTBOX };
	unsigned char hdr[100];
	struct stat st, pst;
	uint32_t pgsz;
	ssize_t got;
	double locked;

#define BAD(...) do { if (why && n) snprintf(why, n, __VA_ARGS__); \
		      return -1; } while (0)
	if (!db)
		BAD("no state store open");
	if (stat(db->path, &pst) < 0) {
		if (errno == ENOENT)
			BAD("state store was deleted");
		BAD("state store: %s", strerror(errno));
	}
	if (pst.st_dev != db->dev || pst.st_ino != db->ino)
		BAD("state store was replaced by another file (restart"
		    " cutoffd)");
	if (fstat(db->fd, &st) < 0 || st.st_nlink == 0)
		BAD("state store was deleted");
	/* the header, read from the file (SQLite's cache would hide it) */
	got = pread(db->fd, hdr, sizeof(hdr), 0);
	if (got != (ssize_t)sizeof(hdr))
		BAD("state store is truncated (%lld bytes)",
		    (long long)st.st_size);
	if (memcmp(hdr, "SQLite format 3", 16) != 0 ||
	    be32(hdr + 68) != DB_APPLICATION_ID)
		BAD("state store is corrupt (bad header)");
	pgsz = (uint32_t)hdr[16] << 8 | hdr[17];
	if (pgsz == 1)
		pgsz = 65536;
	if (be32(hdr + 24) == be32(hdr + 92) &&
	    (int64_t)be32(hdr + 28) * pgsz > (int64_t)st.st_size)
		BAD("state store is truncated (%lld of %lld bytes)",
		    (long long)st.st_size,
		    (long long)be32(hdr + 28) * pgsz);
	for (size_t i = 0; i < sizeof(reads) / sizeof(reads[0]); i++) {
		sqlite3_stmt *s = stmt(db, reads[i]);
		int rc;

		if (!s)
			BAD("state store is %s: %s",
			    read_problem(sqlite3_errcode(db->h)),
			    sqlite3_errmsg(db->h));
		rc = sqlite3_step(s);
		done(s);
		if (rc != SQLITE_ROW)
			BAD("state store is %s: %s", read_problem(rc),
			    sqlite3_errstr(rc));
	}
	lock_probe(db);
	locked = db_locked_for(db);
	if (locked > DB_LOCKED_TOO_LONG)
		BAD("state store is locked by another process: no write"
		    " for %.0f s", locked);
	integ_kick(db, &st);
	pthread_mutex_lock(&db->integ.mu);
	if (db->integ.have && db->integ.result[0]) {
		char r[sizeof(db->integ.result)];

		memcpy(r, db->integ.result, sizeof(r));
		pthread_mutex_unlock(&db->integ.mu);
		BAD("state store is corrupt: %s", r);
	}
	pthread_mutex_unlock(&db->integ.mu);
#undef BAD
	return 0;
}

bool
db_ok(struct db *db)
{
	return db_health(db, NULL, 0) == 0;
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

	if (!s || db_bind_text(db, s, 1, key) < 0)
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
	if (db_bind_text(db, s, 1, key) < 0 || db_bind_text(db, s, 2, val) < 0) {
		done(s);
		return -1;
	}
	return run(db, s, "meta set");
}

/* ------------------------------------------------------------- link key */

#define META_LINK_KEY "link_key"

static int
unhex(const char *h, unsigned char *out, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		unsigned v = 0;

		for (int k = 0; k < 2; k++) {
			char ch = h[2 * i + k];

			v <<= 4;
			if (ch >= '0' && ch <= '9')
				v |= (unsigned)(ch - '0');
			else if (ch >= 'a' && ch <= 'f')
				v |= (unsigned)(ch - 'a' + 10);
			else
				return -1;
		}
		out[i] = (unsigned char)v;
	}
	return h[2 * n] == '\0' ? 0 : -1;
}

/* Made once and never rotated by itself: every link sent stays valid
 * until its own expiry.  Deleting the meta row revokes them all. */
int
db_link_key(struct db *db, bool create, unsigned char key[32])
{
	char *v = NULL, hex[65];
	int rc = db_meta_get(db, META_LINK_KEY, &v);

	if (rc == 0) {
		rc = unhex(v, key, 32);
		free(v);
		if (rc < 0)
			log_err("state store: link key is damaged");
		return rc;
	}
	if (rc < 0 || !create)
		return rc;
	if (random_hex(hex, 32) < 0) {
		log_err("cannot get random bytes for the link key");
		return -1;
	}
	/* INSERT OR REPLACE would race another process making its own:
	 * write, then read back whichever won */
	if (db_meta_get(db, META_LINK_KEY, &v) == 1 &&
	    db_meta_set(db, META_LINK_KEY, hex) < 0)
		return -1;
	free(v);
	return db_link_key(db, false, key);
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
	if (db_bind_text(db, s, 1, unit) < 0)
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

/* Every stored token in one read (the sender keeps them in memory). */
int
db_unit_token_foreach(struct db *db,
		      int (*fn)(void *ctx, const char *unit, const char *token),
		      void *ctx)
{
	sqlite3_stmt *s = db_stmt(db, "SELECT unit, token FROM unit_token");
	int rc;

	if (!s)
		return -1;
	while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
		const char *u = (const char *)sqlite3_column_text(s, 0);
		const char *t = (const char *)sqlite3_column_text(s, 1);

		if (u && t && fn(ctx, u, t) != 0)
			break;
	}
	if (rc != SQLITE_ROW && rc != SQLITE_DONE) {
		db_fail(db, "token list");
		db_stmt_done(db, s);
		return -1;
	}
	db_stmt_done(db, s);
	return 0;
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
		if (db_bind_text(db, s, 1, unit) < 0 ||
		    db_bind_text(db, s, 2, hex) < 0) {
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

/* 0 found (and the stored hash equals hash, when same is given), 1 absent,
 * -1 error */
static int
rev_get(struct db *db, const char *kind, const char *id, const char *hash,
	bool *same, int64_t *seq, tstamp *modified)
{
	sqlite3_stmt *s = stmt(db, ST_REV_GET);
	int rc, ret = -1;

	if (!s)
		return -1;
	if (db_bind_text(db, s, 1, kind) < 0 || db_bind_text(db, s, 2, id) < 0)
		goto out;
	rc = sqlite3_step(s);
	if (rc == SQLITE_ROW) {
		const unsigned char *h = sqlite3_column_text(s, 2);

		if (same)
			*same = hash && h && strcmp((const char *)h, hash) == 0;
		if (seq)
			*seq = sqlite3_column_int64(s, 0);
		if (modified)
			*modified = sqlite3_column_int64(s, 1);
		ret = 0;
	} else if (rc == SQLITE_DONE) {
		ret = 1;
	} else {
		db_fail(db, "rev get");
	}
out:
	done(s);
	return ret;
}

int
db_rev(struct db *db, const char *kind, const char *id, const char *hash,
       tstamp now, int64_t *seq, tstamp *modified)
{
	sqlite3_stmt *s;
	bool same = false;
	int64_t sq;
	tstamp mod;
	int rc;

	/* read first: an unchanged hash (every rebuild of a feed that did
	 * not change) writes nothing, so needs no lock */
	rc = rev_get(db, kind, id, hash, &same, &sq, &mod);
	if (rc < 0)
		return -1;
	if (rc == 0 && same)
		goto found;
	s = stmt(db, ST_REV_UPSERT);
	if (!s)
		return -1;
	if (db_bind_text(db, s, 1, kind) < 0 || db_bind_text(db, s, 2, id) < 0 ||
	    db_bind_text(db, s, 3, hash) < 0 || db_bind_int(db, s, 4, now) < 0) {
		done(s);
		return -1;
	}
	/* One statement: insert, bump only when the hash changed. */
	if (run(db, s, "rev update") < 0)
		return -1;
	if (rev_get(db, kind, id, NULL, NULL, &sq, &mod) != 0) {
		db_fail(db, "rev get");
		return -1;
	}
found:
	if (seq)
		*seq = sq;
	if (modified)
		*modified = mod;
	return 0;
}

int
db_rev_get(struct db *db, const char *kind, const char *id, int64_t *seq,
	   tstamp *modified)
{
	sqlite3_stmt *s = stmt(db, ST_REV_GET);
	int rc, ret = -1;

	if (!s)
		return -1;
	if (db_bind_text(db, s, 1, kind) < 0 || db_bind_text(db, s, 2, id) < 0)
		goto out;
	rc = sqlite3_step(s);
	if (rc == SQLITE_ROW) {
		*seq = sqlite3_column_int64(s, 0);
		*modified = sqlite3_column_int64(s, 1);
		ret = 0;
	} else if (rc == SQLITE_DONE) {
		ret = 1;
	} else {
		db_fail(db, "rev get");
	}
out:
	done(s);
	return ret;
}

int
db_rev_seed(struct db *db, const char *kind, const char *id, const char *hash,
	    tstamp now)
{
	sqlite3_stmt *s = stmt(db, ST_REV_SEED);

	if (!s)
		return -1;
	if (db_bind_text(db, s, 1, kind) < 0 || db_bind_text(db, s, 2, id) < 0 ||
	    db_bind_text(db, s, 3, hash) < 0 || db_bind_int(db, s, 4, now) < 0) {
		done(s);
		return -1;
	}
	return run(db, s, "rev seed");
}
int
db_sub_count_sources(struct db *db,
		     void (*fn)(void *ctx, const char *source, int64_t n),
		     void *ctx)
{
	sqlite3_stmt *s = db_stmt(db, "SELECT source, count(*) FROM "
				  "submission_event WHERE action IN "
				  "('received', 'nil', 'confirmed') "
				  "GROUP BY source");
	int rc;

	if (!s)
		return -1;
	while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
		const char *src = (const char *)sqlite3_column_text(s, 0);

		fn(ctx, src ? src : "", sqlite3_column_int64(s, 1));
	}
	if (rc != SQLITE_DONE)
		db_fail(db, "submission counts");
	db_stmt_done(db, s);
	return rc == SQLITE_DONE ? 0 : -1;
}

/* ----------------------------------------- the regime's life cycle (0.2) */

/*
 * The first day chased by default (`since`), and the ids a reload moved.
 * Rare operations (start-up, reload), so their statements are prepared
 * per call.  The alias table is created on first use rather than by a
 * migration step: several 0.2 branches add tables; fold it into the next
 * schema version when they meet.
 */
#define META_FIRST_DAY "first_day"

static int
exec_sql(struct db *db, const char *sql, const char *what)
{
	char *msg = NULL;

	if (sqlite3_exec(db->h, sql, NULL, NULL, &msg) != SQLITE_OK) {
		log_err("state database %s: %s: %s", db->path, what,
			msg != NULL ? msg : "error");
		sqlite3_free(msg);
		return -1;
	}
	return 0;
}

int
db_first_day(struct db *db, int64_t today, bool record, int64_t *day)
{
	char *v = NULL, buf[16];
	struct ymd d;
	int rc = db_meta_get(db, META_FIRST_DAY, &v);

	if (rc < 0)
		return -1;
	if (rc == 0) {
		rc = parse_ymd(v, &d);
		free(v);
		if (rc == 0) {
			*day = days_from_civil(d.y, d.m, d.d);
			return 0;
		}
		log_warn("state: bad %s, recording today", META_FIRST_DAY);
	}
	if (!record)
		return 1;
	/* A store from before 0.2 has no first day: its oldest record says
	 * when it began (the UTC day, never later than the local one east
	 * of Greenwich), so an upgrade does not hide what it has chased. */
	{
		sqlite3_stmt *s = NULL;

		if (sqlite3_prepare_v2(db->h, "SELECT min(t) FROM ("
				       "SELECT min(created) AS t FROM outbox"
				       " UNION ALL SELECT min(recorded)"
				       " FROM submission_event)", -1, &s,
				       NULL) == SQLITE_OK &&
		    sqlite3_step(s) == SQLITE_ROW &&
		    sqlite3_column_type(s, 0) != SQLITE_NULL) {
			int64_t t = sqlite3_column_int64(s, 0);
			int64_t old = t >= 0 ? t / 86400 : (t - 86399) / 86400;

			if (old < today)
				today = old;
		}
		sqlite3_finalize(s);
	}
	d = civil_from_days(today);
	snprintf(buf, sizeof buf, "%04d-%02d-%02d", d.y % 10000, d.m, d.d);
	if (db_meta_set(db, META_FIRST_DAY, buf) < 0)
		return -1;
	*day = today;
	return 0;
}

static int
alias_table(struct db *db, bool create)
{
	sqlite3_stmt *s = NULL;
	int rc;

	if (create)
		return exec_sql(db, "CREATE TABLE IF NOT EXISTS occurrence_alias("
				"  old TEXT NOT NULL PRIMARY KEY,"
				"  new TEXT NOT NULL,"
				"  moved INTEGER NOT NULL)", "alias table");
	if (sqlite3_prepare_v2(db->h, "SELECT 1 FROM sqlite_master WHERE"
			       " type = 'table' AND name = 'occurrence_alias'",
			       -1, &s, NULL) != SQLITE_OK) {
		db_fail(db, "prepare");
		return -1;
	}
	rc = sqlite3_step(s);
	sqlite3_finalize(s);
	return rc == SQLITE_ROW ? 0 : rc == SQLITE_DONE ? 1 : -1;
}

int
db_aliases(struct db *db, struct occ_alias **out, size_t *n)
{
	struct occ_alias *v = NULL;
	size_t cnt = 0, cap = 0;
	sqlite3_stmt *s = NULL;
	int rc = alias_table(db, false);

	*out = NULL;
	*n = 0;
	if (rc != 0)
		return rc < 0 ? -1 : 0;
	if (sqlite3_prepare_v2(db->h, "SELECT old, new FROM occurrence_alias"
			       " ORDER BY old", -1, &s, NULL) != SQLITE_OK) {
		db_fail(db, "prepare");
		return -1;
	}
	while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
		if (cnt == cap) {
			cap = cap ? 2 * cap : 16;
			v = xrealloc(v, cap * sizeof(*v));
		}
		v[cnt].from = col_dup(s, 0);
		v[cnt].to = col_dup(s, 1);
		if (v[cnt].from == NULL || v[cnt].to == NULL) {
			free(v[cnt].from);
			free(v[cnt].to);
			continue;
		}
		cnt++;
	}
	sqlite3_finalize(s);
	if (rc != SQLITE_DONE) {
		db_fail(db, "aliases");
		db_aliases_free(v, cnt);
		return -1;
	}
	*out = v;
	*n = cnt;
	return 0;
}

void
db_aliases_free(struct occ_alias *v, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		free(v[i].from);
		free(v[i].to);
	}
	free(v);
}

int
db_state_ids(struct db *db, char ***out, size_t *n)
{
	sqlite3_stmt *s = NULL;
	char **v = NULL;
	size_t cnt = 0, cap = 0;
	int rc;

	if (sqlite3_prepare_v2(db->h, "SELECT occurrence FROM submission"
			       " UNION SELECT occurrence FROM outbox"
			       " WHERE state = 'sent' ORDER BY 1", -1, &s,
			       NULL) != SQLITE_OK) {
		db_fail(db, "prepare");
		return -1;
	}
	while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
		char *id = col_dup(s, 0);

		if (id == NULL)
			continue;
		if (cnt == cap) {
			cap = cap ? 2 * cap : 32;
			v = xrealloc(v, cap * sizeof(*v));
		}
		v[cnt++] = id;
	}
	sqlite3_finalize(s);
	if (rc != SQLITE_DONE) {
		db_fail(db, "state ids");
		free_list(v, cnt);
		return -1;
	}
	*out = v;
	*n = cnt;
	return 0;
}

int
db_state_count(struct db *db, const char *occ, int64_t *subs, int64_t *sent)
{
	sqlite3_stmt *s = NULL;
	int rc;

	if (sqlite3_prepare_v2(db->h, "SELECT"
			       " (SELECT count(*) FROM submission"
			       "  WHERE occurrence = ?1),"
			       " (SELECT count(*) FROM outbox"
			       "  WHERE occurrence = ?1 AND state = 'sent')",
			       -1, &s, NULL) != SQLITE_OK) {
		db_fail(db, "prepare");
		return -1;
	}
	sqlite3_bind_text(s, 1, occ, -1, SQLITE_STATIC);
	rc = sqlite3_step(s);
	if (rc == SQLITE_ROW) {
		*subs = sqlite3_column_int64(s, 0);
		*sent = sqlite3_column_int64(s, 1);
	}
	sqlite3_finalize(s);
	return rc == SQLITE_ROW ? 0 : -1;
}

int
db_occ_move(struct db *db, const char *from, const char *to, tstamp now)
{
	static const char *const sql[] = {
		/* the new occurrence has no state (the matching rule) */
		"UPDATE OR IGNORE submission SET occurrence = ?2"
		" WHERE occurrence = ?1",
		"UPDATE submission_event SET occurrence = ?2"
		" WHERE occurrence = ?1",
		/* an extended deadline follows its occurrence (ledger.c) */
		"UPDATE OR IGNORE extension SET occurrence = ?2"
		" WHERE occurrence = ?1",
		/* a sent step stays sent: the new plan finds its key taken */
		"UPDATE OR IGNORE outbox SET occurrence = ?2"
		" WHERE occurrence = ?1 AND state = 'sent'",
		/* pending ones were planned from the old date; the new plan
		 * makes them again from the new one */
		"UPDATE outbox SET state = 'cancelled', done_at = ?3,"
		" last_error = 'occurrence moved to ' || ?2"
		" WHERE occurrence = ?1 AND state = 'pending'",
		"UPDATE occurrence_alias SET new = ?2 WHERE new = ?1",
		"INSERT INTO occurrence_alias(old, new, moved) VALUES(?1, ?2, ?3)"
		" ON CONFLICT(old) DO UPDATE SET new = excluded.new,"
		" moved = excluded.moved",
		/* moved back: the old id is real again */
		"DELETE FROM occurrence_alias WHERE old = ?2",
	};
	enum wrap w;
	bool ok = true;

	if (alias_table(db, true) < 0 || wrap_begin(db, &w) < 0)
		return -1;
	for (size_t i = 0; ok && i < sizeof sql / sizeof sql[0]; i++) {
		sqlite3_stmt *s = NULL;
		int np;

		if (sqlite3_prepare_v2(db->h, sql[i], -1, &s, NULL) !=
		    SQLITE_OK) {
			db_fail(db, "prepare");
			ok = false;
			break;
		}
		np = sqlite3_bind_parameter_count(s);
		sqlite3_bind_text(s, 1, from, -1, SQLITE_STATIC);
		sqlite3_bind_text(s, 2, to, -1, SQLITE_STATIC);
		if (np >= 3)
			sqlite3_bind_int64(s, 3, now);
		if (sqlite3_step(s) != SQLITE_DONE) {
			db_fail(db, "move occurrence");
			ok = false;
		}
		sqlite3_finalize(s);
	}
	return wrap_end(db, w, ok);
}

/* Moves a pending row's next try to t, by the comparison in sql (?1 the
 * row, ?2 the time): later only for a hold, earlier only for a release. */
static int
outbox_next_try_set(struct db *db, const char *sql, const char *what,
		    int64_t id, tstamp t)
{
	sqlite3_stmt *s = NULL;
	int rc;

	if (sqlite3_prepare_v2(db->h, sql, -1, &s, NULL) != SQLITE_OK) {
		db_fail(db, "prepare");
		return -1;
	}
	sqlite3_bind_int64(s, 1, id);
	sqlite3_bind_int64(s, 2, t);
	rc = sqlite3_step(s);
	sqlite3_finalize(s);
	if (rc != SQLITE_DONE) {
		db_fail(db, what);
		return -1;
	}
	return 0;
}

int
db_outbox_hold(struct db *db, int64_t id, tstamp t)
{
	return outbox_next_try_set(db, "UPDATE outbox SET next_try = ?2"
				   " WHERE id = ?1 AND state = 'pending'"
				   " AND next_try < ?2", "outbox hold", id, t);
}

int
db_outbox_release(struct db *db, int64_t id, tstamp t)
{
	return outbox_next_try_set(db, "UPDATE outbox SET next_try = ?2"
				   " WHERE id = ?1 AND state = 'pending'"
				   " AND next_try > ?2", "outbox release", id, t);
}

tstamp
db_sub_last_event(struct db *db, const char *occ, const char *unit)
{
	sqlite3_stmt *s = stmt(db, ST_SUB_LAST_EVENT);
	tstamp t = -1;

	if (!s)
		return -1;
	if (!occ || db_bind_text(db, s, 1, occ) < 0 ||
	    db_bind_text(db, s, 2, unit) < 0)
		goto out;
	if (sqlite3_step(s) == SQLITE_ROW)
		t = sqlite3_column_int64(s, 0);   /* NULL (none) reads 0 */
	else
		db_fail(db, "submission last event");
out:
	done(s);
	return t;
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
	if (db_bind_text(db, s, 1, message_id) < 0) {
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
	if (db_bind_text(db, s, 1, message_id) < 0 ||
	    db_bind_int(db, s, 2, uidvalidity) < 0 || db_bind_int(db, s, 3, uid) < 0 ||
	    db_bind_int(db, s, 4, now) < 0 || db_bind_text(db, s, 5, outcome) < 0 ||
	    db_bind_text(db, s, 6, occ) < 0 || db_bind_text(db, s, 7, unit) < 0 ||
	    db_bind_text(db, s, 8, detail) < 0) {
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
	if (db_bind_text(db, s, 1, message_id) < 0) {
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
	if (db_bind_int(db, s, 1, outbox_id) < 0 ||
	    db_bind_text(db, s, 2, address) < 0 ||
	    db_bind_text(db, s, 3, status) < 0 ||
	    db_bind_text(db, s, 4, diagnostic) < 0 ||
	    db_bind_int(db, s, 5, now) < 0 ||
	    db_bind_text(db, s, 6, report_id) < 0) {
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
	if (db_bind_text(db, s, 1, occ) < 0) {
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
