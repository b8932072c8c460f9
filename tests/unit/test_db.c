/*
 * test_db.c - the SQLite state store, on real files in a temp directory.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <dirent.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sqlite3.h>

#include "cutoffd.h"

struct fix {
	char dir[64];
	char *path;
	struct db *db;
};

static void
rm_tree(const char *dir)
{
	DIR *d = opendir(dir);
	struct dirent *e;

	if (!d)
		return;
	while ((e = readdir(d)) != NULL) {
		char *p;

		if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
			continue;
		p = xasprintf("%s/%s", dir, e->d_name);
		unlink(p);
		free(p);
	}
	closedir(d);
	rmdir(dir);
}

static int
setup(void **state)
{
	struct fix *f = xcalloc(1, sizeof(*f));
	char *err = NULL;

	snprintf(f->dir, sizeof(f->dir), "/tmp/cutoffd-test-db.XXXXXX");
	if (!mkdtemp(f->dir)) {
		free(f);
		return -1;
	}
	f->path = xasprintf("%s/state.db", f->dir);
	f->db = db_open(f->path, true, &err);
	if (!f->db) {
		fprintf(stderr, "db_open: %s\n", err);
		free(err);
		rm_tree(f->dir);
		free(f->path);
		free(f);
		return -1;
	}
	*state = f;
	return 0;
}

static int
teardown(void **state)
{
	struct fix *f = *state;

	db_close(f->db);
	rm_tree(f->dir);
	free(f->path);
	free(f);
	return 0;
}

/* one integer from an SQL query on the raw handle */
static int64_t
query_int(sqlite3 *h, const char *sql)
{
	sqlite3_stmt *s = NULL;
	int64_t v = -12345;

	assert_int_equal(sqlite3_prepare_v2(h, sql, -1, &s, NULL), SQLITE_OK);
	if (sqlite3_step(s) == SQLITE_ROW)
		v = sqlite3_column_int64(s, 0);
	sqlite3_finalize(s);
	return v;
}

static void
test_open_create(void **state)
{
	struct fix *f = *state;
	struct stat st;
	sqlite3 *h = db_handle(f->db);

	assert_true(db_ok(f->db));
	assert_int_equal(stat(f->path, &st), 0);
	/* feed tokens live here: not readable by others */
	assert_int_equal(st.st_mode & 077, 0);
	assert_int_equal(query_int(h, "PRAGMA user_version"), DB_SCHEMA_VERSION);
	assert_int_equal(query_int(h, "SELECT count(*) FROM sqlite_master WHERE"
				      " type = 'table' AND name IN ('meta',"
				      " 'unit_token', 'rev', 'submission',"
				      " 'submission_event', 'outbox')"), 6);
	assert_int_equal(query_int(h, "SELECT count(*) FROM sqlite_master WHERE"
				      " type = 'index' AND name = 'outbox_pending'"),
			 1);
	assert_int_equal(query_int(h, "PRAGMA synchronous"), 2);   /* FULL */
	assert_int_equal(query_int(h, "PRAGMA foreign_keys"), 1);
	assert_int_equal(query_int(h, "PRAGMA busy_timeout"), 5000);
}

/* The sender's rounds commit without fsync, then give FULL back; never
 * switched inside a transaction (SQLite would ignore it there). */
static void
test_sync_switch(void **state)
{
	struct fix *f = *state;
	sqlite3 *h = db_handle(f->db);

	assert_int_equal(db_sync_full(f->db, false), 0);
	assert_int_equal(query_int(h, "PRAGMA synchronous"), 1);   /* NORMAL */
	assert_int_equal(db_begin(f->db), 0);
	assert_int_equal(db_sync_full(f->db, true), -1);
	assert_int_equal(db_sync(f->db), -1);
	assert_int_equal(db_meta_set(f->db, "k", "v"), 0);
	assert_int_equal(db_commit(f->db), 0);
	/* the checkpoint that makes NORMAL commits durable */
	assert_true(db_total_changes(f->db) >= 1);
	assert_int_equal(db_sync(f->db), 0);
	assert_int_equal(db_sync_full(f->db, true), 0);
	assert_int_equal(query_int(h, "PRAGMA synchronous"), 2);   /* FULL */
}

static void
test_wal(void **state)
{
	struct fix *f = *state;
	sqlite3_stmt *s = NULL;

	assert_int_equal(sqlite3_prepare_v2(db_handle(f->db),
					    "PRAGMA journal_mode", -1, &s, NULL),
			 SQLITE_OK);
	assert_int_equal(sqlite3_step(s), SQLITE_ROW);
	assert_string_equal((const char *)sqlite3_column_text(s, 0), "wal");
	sqlite3_finalize(s);
}

static void
test_reopen_keeps_data(void **state)
{
	struct fix *f = *state;
	char *v = NULL, *err = NULL;

	assert_int_equal(db_meta_get(f->db, "k", &v), 1);
	assert_int_equal(db_meta_set(f->db, "k", "one"), 0);
	assert_int_equal(db_meta_set(f->db, "k", "two"), 0);
	assert_int_equal(db_sub_record(f->db, "q1/2024-03-13", "u1", 100, "cli",
				       "hello", 200), 0);
	db_close(f->db);

	f->db = db_open(f->path, false, &err);
	assert_non_null(f->db);
	assert_int_equal(db_meta_get(f->db, "k", &v), 0);
	assert_string_equal(v, "two");
	free(v);
	assert_int_equal(db_sub_events(f->db, "q1/2024-03-13", "u1"), 1);
}

static void
test_missing_file(void **state)
{
	struct fix *f = *state;
	char *err = NULL, *p = xasprintf("%s/absent.db", f->dir);
	char *p2 = xasprintf("%s/nodir/state.db", f->dir);
	struct stat st;

	assert_null(db_open(p, false, &err));
	assert_non_null(err);
	assert_non_null(strstr(err, "no state database at"));
	assert_non_null(strstr(err, p));
	free(err);
	err = NULL;
	assert_int_not_equal(stat(p, &st), 0);     /* nothing created */

	assert_null(db_open(p2, true, &err));
	assert_non_null(err);
	assert_non_null(strstr(err, "nodir"));
	free(err);
	free(p);
	free(p2);
}

static void
test_newer_version_refused(void **state)
{
	struct fix *f = *state;
	char *err = NULL;

	assert_int_equal(sqlite3_exec(db_handle(f->db),
				      "PRAGMA user_version = 99", NULL, NULL,
				      NULL), SQLITE_OK);
	db_close(f->db);
	f->db = db_open(f->path, false, &err);
	assert_null(f->db);
	assert_non_null(err);
	assert_non_null(strstr(err, "newer"));
	assert_non_null(strstr(err, f->path));
	free(err);
	/* teardown closes whatever is there: give it a working one back */
	{
		sqlite3 *h = NULL;

		assert_int_equal(sqlite3_open(f->path, &h), SQLITE_OK);
		char *set = xasprintf("PRAGMA user_version = %d",
				      DB_SCHEMA_VERSION);

		assert_int_equal(sqlite3_exec(h, set, NULL, NULL, NULL),
				 SQLITE_OK);
		free(set);
		sqlite3_close(h);
	}
	f->db = db_open(f->path, false, &err);
	assert_non_null(f->db);
}

static void
test_not_a_database(void **state)
{
	struct fix *f = *state;
	char *err = NULL, *p = xasprintf("%s/junk.db", f->dir);
	FILE *fp = fopen(p, "w");

	assert_non_null(fp);
	for (int i = 0; i < 200; i++)
		fputs("this is not an SQLite file\n", fp);
	fclose(fp);
	assert_null(db_open(p, true, &err));
	assert_non_null(err);
	assert_non_null(strstr(err, p));
	free(err);
	free(p);
}

static void
test_tokens(void **state)
{
	struct fix *f = *state;
	char *a = NULL, *a2 = NULL, *b = NULL;

	assert_int_equal(db_unit_token(f->db, "u1", &a), 0);
	assert_int_equal(db_unit_token(f->db, "u1", &a2), 0);
	assert_int_equal(db_unit_token(f->db, "u2", &b), 0);
	assert_int_equal(strlen(a), 64);
	assert_int_equal(strspn(a, "0123456789abcdef"), 64);
	assert_string_equal(a, a2);
	assert_string_not_equal(a, b);
	free(a);
	free(a2);
	free(b);
}

static void
test_rev(void **state)
{
	struct fix *f = *state;
	int64_t seq = -1;
	tstamp mod = -1;

	assert_int_equal(db_rev(f->db, "feed", "u1", "h1", 1000, &seq, &mod), 0);
	assert_int_equal(seq, 0);
	assert_int_equal(mod, 1000);
	assert_int_equal(db_rev(f->db, "feed", "u1", "h1", 2000, &seq, &mod), 0);
	assert_int_equal(seq, 0);
	assert_int_equal(mod, 1000);
	assert_int_equal(db_rev(f->db, "feed", "u1", "h2", 3000, &seq, &mod), 0);
	assert_int_equal(seq, 1);
	assert_int_equal(mod, 3000);
	assert_int_equal(db_rev(f->db, "feed", "u1", "h2", 4000, &seq, &mod), 0);
	assert_int_equal(seq, 1);
	assert_int_equal(mod, 3000);
	assert_int_equal(db_rev(f->db, "feed", "u1", "h1", 5000, &seq, &mod), 0);
	assert_int_equal(seq, 2);
	assert_int_equal(mod, 5000);
	/* a different key has its own counter */
	assert_int_equal(db_rev(f->db, "feed", "u2", "h2", 6000, &seq, &mod), 0);
	assert_int_equal(seq, 0);
	assert_int_equal(mod, 6000);
	/* an unchanged hash needs no write, so no lock: it works while
	 * another connection holds the write lock */
	{
		char *err = NULL;
		struct db *other = db_open(f->path, false, &err);

		assert_non_null(other);
		assert_int_equal(db_begin(other), 0);
		assert_int_equal(db_set_busy_timeout(f->db, 10), 0);
		assert_int_equal(db_rev(f->db, "feed", "u2", "h2", 7000, &seq,
					&mod), 0);
		assert_int_equal(mod, 6000);
		assert_int_equal(db_rev(f->db, "feed", "u2", "h3", 7000, &seq,
					&mod), -1);
		assert_true(db_busy(f->db));
		db_rollback(other);
		db_close(other);
	}
}

static void
test_record_undo(void **state)
{
	struct fix *f = *state;
	const char *occ = "q1/2024-03-13";
	struct submission s;

	assert_int_equal(db_sub_get(f->db, occ, "u1", &s), 1);
	assert_int_equal(db_sub_record(f->db, occ, "u1", 100, "cli", "first",
				       150), 0);
	/* a second record changes nothing */
	assert_int_equal(db_sub_record(f->db, occ, "u1", 300, "api", "second",
				       350), 1);
	assert_int_equal(db_sub_get(f->db, occ, "u1", &s), 0);
	assert_string_equal(s.occurrence, occ);
	assert_string_equal(s.unit, "u1");
	assert_int_equal(s.at, 100);
	assert_int_equal(s.recorded, 150);
	assert_string_equal(s.source, "cli");
	assert_string_equal(s.note, "first");
	submission_clear(&s);
	assert_null(s.note);
	assert_int_equal(db_sub_events(f->db, occ, "u1"), 1);

	assert_int_equal(db_sub_undo(f->db, occ, "u1", "page", 400), 0);
	assert_int_equal(db_sub_get(f->db, occ, "u1", &s), 1);
	assert_int_equal(db_sub_undo(f->db, occ, "u1", "page", 450), 1);
	assert_int_equal(db_sub_events(f->db, occ, "u1"), 2);
	/* the undo event keeps the undone report's time and note */
	assert_int_equal(query_int(db_handle(f->db),
				   "SELECT at FROM submission_event WHERE"
				   " action = 'undo'"), 100);
	assert_int_equal(query_int(db_handle(f->db),
				   "SELECT count(*) FROM submission_event WHERE"
				   " action = 'undo' AND note = 'first'"
				   " AND recorded = 400 AND source = 'page'"), 1);

	assert_int_equal(db_sub_record(f->db, occ, "u1", 500, "api", NULL, 550),
			 0);
	assert_int_equal(db_sub_get(f->db, occ, "u1", &s), 0);
	assert_int_equal(s.at, 500);
	assert_null(s.note);
	submission_clear(&s);
	assert_int_equal(db_sub_events(f->db, occ, "u1"), 3);
	assert_int_equal(db_sub_record(f->db, occ, "u2", 500, "api", NULL, 550),
			 0);
	assert_int_equal(db_sub_events(f->db, occ, NULL), 4);
	assert_int_equal(db_sub_events(f->db, occ, "u2"), 1);
	assert_int_equal(db_sub_events(f->db, "other/2024-01-01", NULL), 0);
}

static void
test_undo_nothing(void **state)
{
	struct fix *f = *state;

	assert_int_equal(db_sub_undo(f->db, "q1/2024-03-13", "u1", "cli", 1), 1);
	assert_int_equal(db_sub_events(f->db, "q1/2024-03-13", NULL), 0);
}

struct collect {
	char seen[8][200];
	size_t n;
	size_t stop_after;
};

static int
collect_fn(void *ctx, const struct submission *s)
{
	struct collect *c = ctx;

	snprintf(c->seen[c->n], sizeof(c->seen[0]), "%s %s", s->occurrence,
		 s->unit);
	c->n++;
	return c->n == c->stop_after;
}

/* the callback may write to the database while the walk goes on */
static int
undo_fn(void *ctx, const struct submission *s)
{
	struct db *db = ctx;

	return db_sub_undo(db, s->occurrence, s->unit, "cli", 9) != 0;
}

static void
test_foreach(void **state)
{
	struct fix *f = *state;
	struct collect c;

	assert_int_equal(db_sub_record(f->db, "b/2024-01-02", "u2", 1, "cli",
				       NULL, 1), 0);
	assert_int_equal(db_sub_record(f->db, "a/2024-01-01", "u9", 1, "cli",
				       NULL, 1), 0);
	assert_int_equal(db_sub_record(f->db, "b/2024-01-02", "u1", 1, "cli",
				       NULL, 1), 0);
	assert_int_equal(db_sub_record(f->db, "a/2024-01-01", "u1", 1, "cli",
				       NULL, 1), 0);

	memset(&c, 0, sizeof(c));
	assert_int_equal(db_sub_foreach(f->db, NULL, collect_fn, &c), 0);
	assert_int_equal(c.n, 4);
	assert_string_equal(c.seen[0], "a/2024-01-01 u1");
	assert_string_equal(c.seen[1], "a/2024-01-01 u9");
	assert_string_equal(c.seen[2], "b/2024-01-02 u1");
	assert_string_equal(c.seen[3], "b/2024-01-02 u2");

	memset(&c, 0, sizeof(c));
	assert_int_equal(db_sub_foreach(f->db, "b/2024-01-02", collect_fn, &c),
			 0);
	assert_int_equal(c.n, 2);
	assert_string_equal(c.seen[0], "b/2024-01-02 u1");
	assert_string_equal(c.seen[1], "b/2024-01-02 u2");

	memset(&c, 0, sizeof(c));
	c.stop_after = 1;
	assert_int_equal(db_sub_foreach(f->db, NULL, collect_fn, &c), 0);
	assert_int_equal(c.n, 1);

	assert_int_equal(db_sub_foreach(f->db, NULL, undo_fn, f->db), 0);
	memset(&c, 0, sizeof(c));
	assert_int_equal(db_sub_foreach(f->db, NULL, collect_fn, &c), 0);
	assert_int_equal(c.n, 0);
}

static void
test_data_version(void **state)
{
	struct fix *f = *state;
	char *err = NULL;
	struct db *other = db_open(f->path, false, &err);
	int64_t v0, v1, v2;

	assert_non_null(other);
	v0 = db_data_version(f->db);
	assert_true(v0 >= 0);
	/* our own commits don't change our data_version ... */
	assert_int_equal(db_meta_set(f->db, "a", "1"), 0);
	v1 = db_data_version(f->db);
	assert_int_equal(v1, v0);
	/* ... another connection's do */
	assert_int_equal(db_sub_record(other, "q/2024-01-01", "u1", 1, "cli",
				       NULL, 1), 0);
	v2 = db_data_version(f->db);
	assert_int_not_equal(v2, v1);
	assert_int_equal(db_data_version(f->db), v2);
	db_close(other);
}

static void
test_note_limit(void **state)
{
	struct fix *f = *state;
	char *note = xmalloc(DB_NOTE_MAX + 2);
	struct submission s;

	memset(note, 'x', DB_NOTE_MAX + 1);
	note[DB_NOTE_MAX + 1] = '\0';
	assert_int_equal(db_sub_record(f->db, "q/2024-01-01", "u1", 1, "cli",
				       note, 1), -1);
	assert_int_equal(db_sub_get(f->db, "q/2024-01-01", "u1", &s), 1);
	assert_int_equal(db_sub_events(f->db, "q/2024-01-01", NULL), 0);

	note[DB_NOTE_MAX] = '\0';
	assert_int_equal(db_sub_record(f->db, "q/2024-01-01", "u1", 1, "cli",
				       note, 1), 0);
	assert_int_equal(db_sub_get(f->db, "q/2024-01-01", "u1", &s), 0);
	assert_int_equal(strlen(s.note), DB_NOTE_MAX);
	submission_clear(&s);
	free(note);

	/* invalid UTF-8 is refused; valid text (and quotes) is stored as is */
	assert_int_equal(db_sub_record(f->db, "q/2024-01-01", "u2", 1, "cli",
				       "bad \xff byte", 1), -1);
	assert_int_equal(db_sub_record(f->db, "q/2024-01-01", "u2", 1, "cli",
				       "đã nộp'; DROP TABLE submission;--", 1),
			 0);
	assert_int_equal(db_sub_get(f->db, "q/2024-01-01", "u2", &s), 0);
	assert_string_equal(s.note, "đã nộp'; DROP TABLE submission;--");
	submission_clear(&s);
	/* ids too long for struct submission are refused */
	{
		char longid[100];

		memset(longid, 'a', sizeof(longid) - 1);
		longid[sizeof(longid) - 1] = '\0';
		assert_int_equal(db_sub_record(f->db, longid, "u1", 1, "cli",
					       NULL, 1), -1);
	}
}

static void
test_transactions(void **state)
{
	struct fix *f = *state;
	const char *occ = "q/2024-01-01";
	struct submission s;

	/* inside a caller's transaction, rolled back with it */
	assert_int_equal(db_begin(f->db), 0);
	assert_int_equal(db_begin(f->db), -1);       /* nesting is a bug */
	assert_int_equal(db_sub_record(f->db, occ, "u1", 1, "cli", NULL, 1), 0);
	assert_int_equal(db_meta_set(f->db, "k", "v"), 0);
	assert_int_equal(db_sub_get(f->db, occ, "u1", &s), 0);
	db_rollback(f->db);
	assert_int_equal(db_sub_get(f->db, occ, "u1", &s), 1);
	assert_int_equal(db_sub_events(f->db, occ, NULL), 0);

	/* and committed with it */
	assert_int_equal(db_begin(f->db), 0);
	assert_int_equal(db_sub_record(f->db, occ, "u1", 1, "cli", NULL, 1), 0);
	assert_int_equal(db_sub_record(f->db, occ, "u1", 2, "cli", NULL, 2), 1);
	assert_int_equal(db_sub_undo(f->db, occ, "u2", "cli", 2), 1);
	assert_int_equal(db_sub_undo(f->db, occ, "u1", "cli", 3), 0);
	assert_int_equal(db_sub_record(f->db, occ, "u1", 4, "cli", NULL, 4), 0);
	/* a refused record inside leaves the caller's transaction usable */
	assert_int_equal(db_sub_record(f->db, "x", "u1", 1, "cli",
				       "bad \xff", 1), -1);
	assert_int_equal(db_commit(f->db), 0);
	assert_int_equal(db_commit(f->db), -1);      /* nothing open */
	assert_int_equal(db_sub_get(f->db, occ, "u1", &s), 0);
	assert_int_equal(s.at, 4);
	submission_clear(&s);
	assert_int_equal(db_sub_events(f->db, occ, "u1"), 3);

	/* on their own they commit by themselves */
	assert_int_equal(db_sub_undo(f->db, occ, "u1", "cli", 5), 0);
	assert_int_equal(db_begin(f->db), 0);        /* nothing left open */
	db_rollback(f->db);
	assert_int_equal(db_sub_events(f->db, occ, "u1"), 4);
	db_rollback(f->db);                          /* harmless */
	db_rollback(NULL);
}

/* A failure half-way through a record undoes only the record: inside a
 * caller's transaction (savepoint) and on its own (own transaction). */
static void
test_partial_failure(void **state)
{
	struct fix *f = *state;
	sqlite3 *h = db_handle(f->db);
	const char *occ = "q/2024-01-01";
	char *v = NULL;
	struct submission s;

	assert_int_equal(sqlite3_exec(h, "CREATE TEMP TRIGGER no_events BEFORE"
				      " INSERT ON main.submission_event BEGIN"
				      " SELECT RAISE(ABORT, 'test'); END",
				      NULL, NULL, NULL), SQLITE_OK);
	assert_int_equal(db_sub_record(f->db, occ, "u1", 1, "cli", NULL, 1), -1);
	assert_int_equal(db_sub_get(f->db, occ, "u1", &s), 1);
	assert_true(sqlite3_get_autocommit(h));

	assert_int_equal(db_begin(f->db), 0);
	assert_int_equal(db_meta_set(f->db, "k", "kept"), 0);
	assert_int_equal(db_sub_record(f->db, occ, "u1", 1, "cli", NULL, 1), -1);
	assert_int_equal(db_sub_get(f->db, occ, "u1", &s), 1);
	assert_int_equal(db_commit(f->db), 0);
	assert_int_equal(db_meta_get(f->db, "k", &v), 0);
	assert_string_equal(v, "kept");
	free(v);

	assert_int_equal(sqlite3_exec(h, "DROP TRIGGER no_events", NULL, NULL,
				      NULL), SQLITE_OK);
	assert_int_equal(db_sub_record(f->db, occ, "u1", 1, "cli", NULL, 1), 0);
	assert_int_equal(db_sub_events(f->db, occ, NULL), 1);
}

static void
test_outbox_unique(void **state)
{
	struct fix *f = *state;
	sqlite3 *h = db_handle(f->db);
	const char *ins = "INSERT OR IGNORE INTO outbox(occurrence, unit, step,"
			  " audience, channel, recipients, send_at, created,"
			  " next_try, message_id) VALUES('q/2024-01-01', 'u1',"
			  " 'remind-7d', 'unit', 'email', 'a@example.org',"
			  " 10, 5, 10, '<m1@x>')";

	assert_int_equal(sqlite3_exec(h, ins, NULL, NULL, NULL), SQLITE_OK);
	assert_int_equal(sqlite3_changes(h), 1);
	assert_int_equal(sqlite3_exec(h, ins, NULL, NULL, NULL), SQLITE_OK);
	assert_int_equal(sqlite3_changes(h), 0);
	assert_int_equal(query_int(h, "SELECT count(*) FROM outbox"), 1);
	assert_int_equal(query_int(h, "SELECT attempts FROM outbox"), 0);
	assert_int_equal(query_int(h, "SELECT state = 'pending' FROM outbox"),
			 1);
}

static void
test_concurrent_token(void **state)
{
	struct fix *f = *state;
	char *err = NULL, *a = NULL, *b = NULL;
	struct db *other = db_open(f->path, false, &err);

	assert_non_null(other);
	assert_int_equal(db_unit_token(other, "u7", &b), 0);
	assert_int_equal(db_unit_token(f->db, "u7", &a), 0);
	assert_string_equal(a, b);
	free(a);
	free(b);
	db_close(other);
	db_close(NULL);
}

static void
test_application_id(void **state)
{
	struct fix *f = *state;

	assert_int_equal(query_int(db_handle(f->db), "PRAGMA application_id"),
			 0x63757464);
}

static void
test_empty_file_refused(void **state)
{
	struct fix *f = *state;
	char *err = NULL, *p = xasprintf("%s/empty.db", f->dir);
	FILE *fp = fopen(p, "w");
	struct stat st;

	assert_non_null(fp);
	fclose(fp);
	assert_null(db_open(p, true, &err));
	assert_non_null(strstr(err, "empty file"));
	assert_non_null(strstr(err, p));
	free(err);
	assert_int_equal(stat(p, &st), 0);
	assert_int_equal(st.st_size, 0);        /* left alone */
	free(p);
}

static void
test_foreign_sqlite_refused(void **state)
{
	struct fix *f = *state;
	char *err = NULL, *p = xasprintf("%s/other.db", f->dir);
	sqlite3 *h = NULL;

	assert_int_equal(sqlite3_open(p, &h), SQLITE_OK);
	assert_int_equal(sqlite3_exec(h, "CREATE TABLE t(x)", NULL, NULL, NULL),
			 SQLITE_OK);
	sqlite3_close(h);
	assert_null(db_open(p, true, &err));
	assert_non_null(strstr(err, "not a cutoffd state store"));
	free(err);
	err = NULL;
	/* another program's id, even over our tables */
	assert_int_equal(sqlite3_exec(db_handle(f->db),
				      "PRAGMA application_id = 42", NULL, NULL,
				      NULL), SQLITE_OK);
	db_close(f->db);
	f->db = db_open(f->path, false, &err);
	assert_null(f->db);
	assert_non_null(strstr(err, "application_id 42"));
	free(err);
	assert_int_equal(sqlite3_open(f->path, &h), SQLITE_OK);
	assert_int_equal(sqlite3_exec(h, "PRAGMA application_id = 0", NULL,
				      NULL, NULL), SQLITE_OK);
	sqlite3_close(h);
	/* 0.1.0's store: our tables, no id: accepted and stamped */
	f->db = db_open(f->path, false, &err);
	assert_non_null(f->db);
	assert_int_equal(query_int(db_handle(f->db), "PRAGMA application_id"),
			 0x63757464);
	free(p);
}

static void
test_health(void **state)
{
	struct fix *f = *state;
	char why[256], *moved = xasprintf("%s/moved.db", f->dir);
	char *err = NULL;

	assert_int_equal(db_health(f->db, why, sizeof(why)), 0);
	/* moved away: the path names no file */
	assert_int_equal(rename(f->path, moved), 0);
	assert_int_equal(db_health(f->db, why, sizeof(why)), -1);
	assert_non_null(strstr(why, "deleted"));
	assert_false(db_ok(f->db));
	assert_int_equal(rename(moved, f->path), 0);
	assert_int_equal(db_health(f->db, why, sizeof(why)), 0);
	/* a header that is not ours any more */
	{
		FILE *fp = fopen(f->path, "r+b");

		assert_non_null(fp);
		fputs("garbage garbage garbage", fp);
		fclose(fp);
	}
	assert_int_equal(db_health(f->db, why, sizeof(why)), -1);
	assert_non_null(strstr(why, "corrupt"));
	assert_null(strchr(why, '\n'));
	db_close(f->db);
	f->db = db_open(f->path, false, &err);   /* refused too */
	assert_null(f->db);
	free(err);
	/* teardown wants a store */
	unlink(f->path);
	f->db = db_open(f->path, true, &err);
	assert_non_null(f->db);
	free(moved);
}

static void
test_busy(void **state)
{
	struct fix *f = *state;
	char *err = NULL, why[256];
	struct db *other = db_open(f->path, false, &err);

	assert_non_null(other);
	assert_int_equal(db_set_busy_timeout(f->db, 20), 0);
	assert_int_equal(query_int(db_handle(f->db), "PRAGMA busy_timeout"), 20);
	assert_int_equal(db_begin(other), 0);
	assert_false(db_busy(f->db));
	assert_int_equal(db_meta_set(f->db, "k", "v"), -1);
	assert_true(db_busy(f->db));
	assert_true(db_locked_for(f->db) >= 0);
	assert_int_equal(db_sub_record(f->db, "q1/2024-03-13", "u1", 1, "api",
				       NULL, 2), -1);
	assert_true(db_busy(f->db));
	/* reads go on under another's write lock, and health is fine */
	assert_int_equal(db_health(f->db, why, sizeof(why)), 0);
	assert_int_equal(db_sub_events(f->db, "q1/2024-03-13", NULL), 0);
	assert_true(db_locked_for(f->db) > 0);     /* health probed: held */
	db_rollback(other);
	/* the lock went and nobody wrote: health's probe ends the episode */
	assert_int_equal(db_health(f->db, why, sizeof(why)), 0);
	assert_true(db_locked_for(f->db) == 0);
	assert_int_equal(db_begin(other), 0);
	assert_int_equal(db_meta_set(f->db, "k", "v"), -1);
	assert_true(db_locked_for(f->db) > 0);
	db_rollback(other);
	assert_int_equal(db_sub_record(f->db, "q1/2024-03-13", "u1", 1, "api",
				       NULL, 2), 0);
	assert_false(db_busy(f->db));
	assert_true(db_locked_for(f->db) == 0);
	db_close(other);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_open_create, setup, teardown),
		cmocka_unit_test_setup_teardown(test_application_id, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_empty_file_refused, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_foreign_sqlite_refused, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_health, setup, teardown),
		cmocka_unit_test_setup_teardown(test_busy, setup, teardown),
		cmocka_unit_test_setup_teardown(test_wal, setup, teardown),
		cmocka_unit_test_setup_teardown(test_sync_switch, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_reopen_keeps_data, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_missing_file, setup, teardown),
		cmocka_unit_test_setup_teardown(test_newer_version_refused, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_not_a_database, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_tokens, setup, teardown),
		cmocka_unit_test_setup_teardown(test_rev, setup, teardown),
		cmocka_unit_test_setup_teardown(test_record_undo, setup, teardown),
		cmocka_unit_test_setup_teardown(test_undo_nothing, setup, teardown),
		cmocka_unit_test_setup_teardown(test_foreach, setup, teardown),
		cmocka_unit_test_setup_teardown(test_data_version, setup, teardown),
		cmocka_unit_test_setup_teardown(test_note_limit, setup, teardown),
		cmocka_unit_test_setup_teardown(test_transactions, setup, teardown),
		cmocka_unit_test_setup_teardown(test_partial_failure, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_outbox_unique, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_concurrent_token, setup,
						teardown),
	};

	log_init("test_db", 0);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
