/*
 * ledger.c - what the secretariat recorded: submissions and nil returns,
 * extended deadlines, and the history of every change to them with its
 * source and actor.  The tables are created by db.c's migrations (schema
 * 3, see cutoffd.h); every statement on them is here.
 *
 * The history is append-only: an undo or a cancelled extension is a new
 * event, never a deleted row, so `cutoffctl history` can answer "who
 * changed this, when, from where" long after the fact.  Its rows also
 * drive the feeds' SEQUENCE (db_sub_events counts them).
 */
#include <stdlib.h>
#include <string.h>

#include <sqlite3.h>

#include "cutoffd.h"

/* Statements, prepared once per connection (db_stmt keys them by the
 * address of these arrays). */
static const char SQL_SUB_INSERT[] =
	"INSERT OR IGNORE INTO submission"
	"(occurrence, unit, at, recorded, source, note, nil, actor)"
	" VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)";
static const char SQL_EVENT[] =
	"INSERT INTO submission_event"
	"(occurrence, unit, action, at, recorded, source, actor, detail, note)"
	" VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)";
static const char SQL_SUB_GET[] =
	"SELECT occurrence, unit, at, recorded, source, note, nil, actor"
	" FROM submission WHERE occurrence = ?1 AND unit = ?2";
static const char SQL_SUB_DELETE[] =
	"DELETE FROM submission WHERE occurrence = ?1 AND unit = ?2";
static const char SQL_SUB_ALL[] =
	"SELECT occurrence, unit, at, recorded, source, note, nil, actor"
	" FROM submission ORDER BY occurrence, unit";
static const char SQL_SUB_OCC[] =
	"SELECT occurrence, unit, at, recorded, source, note, nil, actor"
	" FROM submission WHERE occurrence = ?1 ORDER BY unit";
static const char SQL_EVENTS[] =
	"SELECT count(*), COALESCE(max(recorded), 0) FROM submission_event"
	" WHERE occurrence = ?1 AND (?2 IS NULL OR unit = ?2 OR unit = '')";
static const char SQL_EXT_SET[] =
	"INSERT INTO extension"
	"(occurrence, unit, due_date, due_minute, recorded, source, actor,"
	" note) VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)"
	" ON CONFLICT(occurrence, unit) DO UPDATE SET"
	" due_date = excluded.due_date, due_minute = excluded.due_minute,"
	" recorded = excluded.recorded, source = excluded.source,"
	" actor = excluded.actor, note = excluded.note";
static const char SQL_EXT_DELETE[] =
	"DELETE FROM extension WHERE occurrence = ?1 AND unit = ?2";
static const char SQL_EXT_ALL[] =
	"SELECT occurrence, unit, due_date, due_minute, recorded, source,"
	" actor, note FROM extension ORDER BY occurrence, unit";
static const char SQL_EXT_OCC[] =
	"SELECT occurrence, unit, due_date, due_minute, recorded, source,"
	" actor, note FROM extension WHERE occurrence = ?1 ORDER BY unit";
static const char SQL_HISTORY[] =
	"SELECT id, occurrence, unit, action, at, recorded, source, actor,"
	" detail, note FROM submission_event"
	" WHERE (?1 IS NULL OR occurrence = ?1)"
	" AND (?2 IS NULL OR unit = ?2 OR unit = '')"
	" ORDER BY id";

static const char SQL_EVENTS_AFTER[] =
	"SELECT id, occurrence, unit, action, at, recorded, source, actor,"
	" detail, note FROM submission_event WHERE id > ?1 ORDER BY id"
	" LIMIT ?2";

static const char SQL_LAST_EVENT_ID[] =
	"SELECT coalesce(max(id), 0) FROM submission_event";

/* Proposals not yet settled: no later record, undo, confirmation or
 * rejection of the pair, and no submission standing.  The state lives in
 * the append-only history itself, so it can never disagree with it. */
#define PROPOSAL_OPEN \
	" e.action = 'proposed' AND e.unit <> ''" \
	" AND NOT EXISTS (SELECT 1 FROM submission_event l" \
	"  WHERE l.occurrence = e.occurrence AND l.unit = e.unit" \
	"  AND l.id > e.id" \
	"  AND l.action IN ('received', 'nil', 'undo', 'confirmed'," \
	"  'rejected'))" \
	" AND NOT EXISTS (SELECT 1 FROM submission s" \
	"  WHERE s.occurrence = e.occurrence AND s.unit = e.unit)"
static const char SQL_PROPOSALS[] =
	"SELECT e.occurrence, e.unit, e.source, e.at FROM submission_event e"
	" WHERE" PROPOSAL_OPEN
	" AND (?1 IS NULL OR e.occurrence = ?1)"
	" ORDER BY e.occurrence, e.unit, e.id";
/* the pair's newest open proposal (submission_event_occ finds the pair) */
static const char SQL_PROPOSAL_GET[] =
	"SELECT e.id, e.occurrence, e.unit, e.source, e.at, e.recorded,"
	" e.actor, e.detail, e.note FROM submission_event e"
	" WHERE e.occurrence = ?1 AND e.unit = ?2 AND" PROPOSAL_OPEN
	" ORDER BY e.id DESC LIMIT 1";

static void
fail(struct db *db, const char *what)
{
	log_err("state database: %s: %s", what,
		sqlite3_errmsg((sqlite3 *)db_handle(db)));
}

/* Steps a statement without result rows and gives it back. */
static int
run(struct db *db, sqlite3_stmt *s, const char *what)
{
	int rc = sqlite3_step(s);

	db_stmt_done(db, s);
	if (rc != SQLITE_DONE && rc != SQLITE_ROW) {
		fail(db, what);
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

static void
col_copy(sqlite3_stmt *s, int i, char *out, size_t size)
{
	const unsigned char *t = sqlite3_column_text(s, i);

	snprintf(out, size, "%s", t ? (const char *)t : "");
}

/* ------------------------------------------------------------- checks */

const char *
note_problem(const char *s, size_t n)
{
	if (n > DB_NOTE_MAX)
		return "too long (at most 1000 bytes)";
	if (!utf8_valid(s, n))
		return "is not valid UTF-8";
	for (size_t i = 0; i < n; i++) {
		unsigned char ch = (unsigned char)s[i];

		if ((ch < 0x20 && ch != '\n') || ch == 0x7f)
			return "contains control characters";
		/* C1 controls, U+0080..U+009F */
		if (ch == 0xc2 && i + 1 < n &&
		    (unsigned char)s[i + 1] >= 0x80 &&
		    (unsigned char)s[i + 1] <= 0x9f)
			return "contains control characters";
	}
	return NULL;
}

void
submission_clear(struct submission *s)
{
	if (!s)
		return;
	free(s->note);
	s->note = NULL;
}

/* The lengths must fit the structs, or what is read back would be cut. */
static bool
args_ok(const char *occ, const char *unit, const char *source,
	const char *actor, const char *note)
{
	struct submission *z = NULL;

	if (!occ || !unit || strlen(occ) >= sizeof(z->occurrence) ||
	    strlen(unit) >= sizeof(z->unit)) {
		log_warn("ledger: occurrence or unit id missing or too long");
		return false;
	}
	if (source && strlen(source) >= sizeof(z->source)) {
		log_warn("ledger: source name too long");
		return false;
	}
	if (actor && (strlen(actor) > LEDGER_ACTOR_MAX ||
		      note_problem(actor, strlen(actor)) != NULL ||
		      strchr(actor, '\n') != NULL)) {
		log_warn("ledger: actor name refused (too long or not text)");
		return false;
	}
	if (note) {
		size_t n = strlen(note);

		if (n > DB_NOTE_MAX) {
			log_warn("ledger: note of %zu bytes refused (at most %d)",
				 n, DB_NOTE_MAX);
			return false;
		}
		if (!utf8_valid(note, n)) {
			log_warn("ledger: note refused: not valid UTF-8");
			return false;
		}
	}
	return true;
}

/* "" is no actor: stored as NULL */
static const char *
nz(const char *s)
{
	return s && *s ? s : NULL;
}

static int
add_event(struct db *db, const char *occ, const char *unit,
	  const char *action, const tstamp *at, tstamp now,
	  const char *source, const char *actor, const char *detail,
	  const char *note)
{
	sqlite3_stmt *s = db_stmt(db, SQL_EVENT);

	if (!s)
		return -1;
	if (db_bind_text(db, s, 1, occ) < 0 || db_bind_text(db, s, 2, unit) < 0 ||
	    db_bind_text(db, s, 3, action) < 0 ||
	    (at ? db_bind_int(db, s, 4, *at) : sqlite3_bind_null(s, 4)) < 0 ||
	    db_bind_int(db, s, 5, now) < 0 || db_bind_text(db, s, 6, source) < 0 ||
	    db_bind_text(db, s, 7, nz(actor)) < 0 ||
	    db_bind_text(db, s, 8, detail) < 0 || db_bind_text(db, s, 9, note) < 0) {
		db_stmt_done(db, s);
		return -1;
	}
	return run(db, s, "history event");
}

int
ledger_event_add(struct db *db, const char *occ, const char *unit,
		 const char *action, const tstamp *at, const char *source,
		 const char *actor, const char *detail, const char *note,
		 tstamp now)
{
	static const char *const actions[] = {
		"received", "nil", "undo", "extend", "proposed", "confirmed",
		"rejected", NULL,
	};
	size_t i;

	for (i = 0; actions[i] != NULL; i++)
		if (action != NULL && strcmp(action, actions[i]) == 0)
			break;
	if (actions[i] == NULL || !args_ok(occ, unit, source, actor, note) ||
	    (detail != NULL && note_problem(detail, strlen(detail)) != NULL))
		return -1;
	return add_event(db, occ, unit, action, at, now, source, actor, detail,
			 note);
}

/* -------------------------------------------------------- submissions */

static void
sub_from_row(sqlite3_stmt *s, struct submission *out)
{
	memset(out, 0, sizeof(*out));
	col_copy(s, 0, out->occurrence, sizeof(out->occurrence));
	col_copy(s, 1, out->unit, sizeof(out->unit));
	out->at = sqlite3_column_int64(s, 2);
	out->recorded = sqlite3_column_int64(s, 3);
	col_copy(s, 4, out->source, sizeof(out->source));
	out->note = col_dup(s, 5);
	out->nil = sqlite3_column_int(s, 6) != 0;
	col_copy(s, 7, out->actor, sizeof(out->actor));
}

int
ledger_receive(struct db *db, const char *occ, const char *unit, tstamp at,
	       bool nil, const char *source, const char *actor,
	       const char *note, tstamp now)
{
	sqlite3_stmt *s;
	int tok, ret = -1;

	if (!args_ok(occ, unit, source, actor, note))
		return -1;
	if (db_part_begin(db, &tok) < 0)
		return -1;
	s = db_stmt(db, SQL_SUB_INSERT);
	if (!s)
		goto out;
	if (db_bind_text(db, s, 1, occ) < 0 || db_bind_text(db, s, 2, unit) < 0 ||
	    db_bind_int(db, s, 3, at) < 0 || db_bind_int(db, s, 4, now) < 0 ||
	    db_bind_text(db, s, 5, source) < 0 || db_bind_text(db, s, 6, note) < 0 ||
	    db_bind_int(db, s, 7, nil) < 0 || db_bind_text(db, s, 8, nz(actor)) < 0) {
		db_stmt_done(db, s);
		goto out;
	}
	if (run(db, s, "submission insert") < 0)
		goto out;
	if (sqlite3_changes((sqlite3 *)db_handle(db)) == 0) {
		ret = 1;             /* the first record stands */
		goto out;
	}
	if (add_event(db, occ, unit, nil ? "nil" : "received", &at, now,
		      source, actor, NULL, note) < 0)
		goto out;
	ret = 0;
out:
	if (db_part_end(db, tok, ret >= 0) < 0)
		return -1;
	return ret;
}

int
ledger_undo(struct db *db, const char *occ, const char *unit,
	    const char *source, const char *actor, tstamp now)
{
	struct submission old;
	sqlite3_stmt *s;
	int tok, rc, ret = -1;

	if (!args_ok(occ, unit, source, actor, NULL))
		return -1;
	if (db_part_begin(db, &tok) < 0)
		return -1;
	rc = db_sub_get(db, occ, unit, &old);
	if (rc != 0) {
		ret = rc;
		goto out;
	}
	s = db_stmt(db, SQL_SUB_DELETE);
	if (!s || db_bind_text(db, s, 1, occ) < 0 ||
	    db_bind_text(db, s, 2, unit) < 0) {
		if (s)
			db_stmt_done(db, s);
		submission_clear(&old);
		goto out;
	}
	/* the event keeps what was undone: the report's time, kind, note */
	if (run(db, s, "submission delete") == 0 &&
	    add_event(db, occ, unit, "undo", &old.at, now, source, actor,
		      old.nil ? "nil" : NULL, old.note) == 0)
		ret = 0;
	submission_clear(&old);
out:
	if (db_part_end(db, tok, ret >= 0) < 0)
		return -1;
	return ret;
}

int
db_sub_record(struct db *db, const char *occ, const char *unit, tstamp at,
	      const char *source, const char *note, tstamp now)
{
	return ledger_receive(db, occ, unit, at, false, source, NULL, note,
			      now);
}

int
db_sub_undo(struct db *db, const char *occ, const char *unit,
	    const char *source, tstamp now)
{
	return ledger_undo(db, occ, unit, source, NULL, now);
}

int
db_sub_get(struct db *db, const char *occ, const char *unit,
	   struct submission *out)
{
	sqlite3_stmt *s;
	int rc, ret = -1;

	if (!occ || !unit)
		return -1;
	s = db_stmt(db, SQL_SUB_GET);
	if (!s)
		return -1;
	if (db_bind_text(db, s, 1, occ) < 0 || db_bind_text(db, s, 2, unit) < 0)
		goto out;
	rc = sqlite3_step(s);
	if (rc == SQLITE_ROW) {
		sub_from_row(s, out);
		ret = 0;
	} else if (rc == SQLITE_DONE) {
		ret = 1;
	} else {
		fail(db, "submission get");
	}
out:
	db_stmt_done(db, s);
	return ret;
}

int
db_sub_foreach(struct db *db, const char *occ,
	       int (*fn)(void *ctx, const struct submission *s), void *ctx)
{
	sqlite3_stmt *s = db_stmt(db, occ ? SQL_SUB_OCC : SQL_SUB_ALL);
	struct submission *v = NULL;
	size_t n = 0, cap = 0;
	int rc, ret = -1;

	if (!s)
		return -1;
	if (occ && db_bind_text(db, s, 1, occ) < 0) {
		db_stmt_done(db, s);
		return -1;
	}
	/* Rows are read first and the statement reset before any callback,
	 * so that fn may use the database (even these statements). */
	for (;;) {
		rc = sqlite3_step(s);
		if (rc != SQLITE_ROW)
			break;
		if (n == cap) {
			cap = cap ? 2 * cap : 16;
			v = xrealloc(v, cap * sizeof(*v));
		}
		sub_from_row(s, &v[n++]);
	}
	db_stmt_done(db, s);
	if (rc != SQLITE_DONE) {
		fail(db, "submission list");
		goto out;
	}
	ret = 0;
	for (size_t i = 0; i < n; i++)
		if (fn(ctx, &v[i]) != 0)
			break;
out:
	for (size_t i = 0; i < n; i++)
		submission_clear(&v[i]);
	free(v);
	return ret;
}

/* count and latest recorded time of (occ, unit)'s events */
static int
events_of(struct db *db, const char *occ, const char *unit, int64_t *count,
	  tstamp *last)
{
	sqlite3_stmt *s = db_stmt(db, SQL_EVENTS);
	int ret = -1;

	if (!s)
		return -1;
	if (!occ || db_bind_text(db, s, 1, occ) < 0 ||
	    db_bind_text(db, s, 2, unit) < 0)
		goto out;
	if (sqlite3_step(s) == SQLITE_ROW) {
		*count = sqlite3_column_int64(s, 0);
		*last = sqlite3_column_int64(s, 1);
		ret = 0;
	} else {
		fail(db, "history count");
	}
out:
	db_stmt_done(db, s);
	return ret;
}

int64_t
db_sub_events(struct db *db, const char *occ, const char *unit)
{
	int64_t n;
	tstamp last;

	return events_of(db, occ, unit, &n, &last) < 0 ? -1 : n;
}

tstamp
ledger_last_event(struct db *db, const char *occ, const char *unit)
{
	int64_t n;
	tstamp last;

	return events_of(db, occ, unit, &n, &last) < 0 ? 0 : last;
}

/* --------------------------------------------------------- extensions */

/* "2024-03-20" or "2024-03-20T17:00": the due as the admin gave it */
static void
due_text(struct ymd d, int minute, char *out, size_t size)
{
	if (minute < 0)
		snprintf(out, size, "%04d-%02d-%02d", d.y % 10000, d.m % 100,
			 d.d % 100);
	else
		snprintf(out, size, "%04d-%02d-%02dT%02d:%02d", d.y % 10000,
			 d.m % 100, d.d % 100, minute / 60 % 100, minute % 60);
}

int
ledger_parse_due(const char *s, struct ymd *d, int *minute)
{
	char date[11];
	size_t n = strlen(s);

	if (n == 10) {
		if (parse_ymd(s, d) < 0)
			return -1;
		*minute = -1;
		return 0;
	}
	if (n != 16 || s[10] != 'T')
		return -1;
	memcpy(date, s, 10);
	date[10] = '\0';
	if (parse_ymd(date, d) < 0 || parse_hhmm(s + 11, true, minute) < 0)
		return -1;
	return 0;
}

const char *
ledger_extension_problem(const struct occ *plan, struct ymd due)
{
	int64_t days = days_from_civil(due.y, due.m, due.d) -
		days_from_civil(plan->due.y, plan->due.m, plan->due.d);

	if (days < 0)
		return "is before the planned due date: an extension moves a "
		       "deadline later";
	if (days > LEDGER_EXTEND_MAX_DAYS)
		return "is more than a year after the planned due date";
	return NULL;
}

int
ledger_extend(struct db *db, const char *occ, const char *unit,
	      struct ymd due, int minute, const char *source,
	      const char *actor, const char *note, tstamp now)
{
	sqlite3_stmt *s;
	char date[24], detail[24];
	int tok, ret = -1;

	if (!unit)
		unit = "";
	if (!args_ok(occ, unit, source, actor, note) || !ymd_valid(due) ||
	    minute < -1 || minute > 1440)
		return -1;
	if (db_part_begin(db, &tok) < 0)
		return -1;
	due_text(due, -1, date, sizeof(date));
	due_text(due, minute, detail, sizeof(detail));
	s = db_stmt(db, SQL_EXT_SET);
	if (!s)
		goto out;
	if (db_bind_text(db, s, 1, occ) < 0 || db_bind_text(db, s, 2, unit) < 0 ||
	    db_bind_text(db, s, 3, date) < 0 ||
	    (minute < 0 ? sqlite3_bind_null(s, 4)
			: db_bind_int(db, s, 4, minute)) < 0 ||
	    db_bind_int(db, s, 5, now) < 0 || db_bind_text(db, s, 6, source) < 0 ||
	    db_bind_text(db, s, 7, nz(actor)) < 0 ||
	    db_bind_text(db, s, 8, note) < 0) {
		db_stmt_done(db, s);
		goto out;
	}
	if (run(db, s, "extension set") < 0)
		goto out;
	if (add_event(db, occ, unit, "extend", NULL, now, source, actor,
		      detail, note) < 0)
		goto out;
	ret = 0;
out:
	if (db_part_end(db, tok, ret >= 0) < 0)
		return -1;
	return ret;
}

int
ledger_unextend(struct db *db, const char *occ, const char *unit,
		const char *source, const char *actor, tstamp now)
{
	sqlite3_stmt *s;
	int tok, ret = -1;

	if (!unit)
		unit = "";
	if (!args_ok(occ, unit, source, actor, NULL))
		return -1;
	if (db_part_begin(db, &tok) < 0)
		return -1;
	s = db_stmt(db, SQL_EXT_DELETE);
	if (!s)
		goto out;
	if (db_bind_text(db, s, 1, occ) < 0 || db_bind_text(db, s, 2, unit) < 0) {
		db_stmt_done(db, s);
		goto out;
	}
	if (run(db, s, "extension delete") < 0)
		goto out;
	if (sqlite3_changes((sqlite3 *)db_handle(db)) == 0) {
		ret = 1;
		goto out;
	}
	if (add_event(db, occ, unit, "extend", NULL, now, source, actor,
		      "cancelled", NULL) < 0)
		goto out;
	ret = 0;
out:
	if (db_part_end(db, tok, ret >= 0) < 0)
		return -1;
	return ret;
}

void
extensions_free(struct extension *v, size_t n)
{
	for (size_t i = 0; v && i < n; i++)
		free(v[i].note);
	free(v);
}

int
ledger_extensions(struct db *db, const char *occ, struct extension **out,
		  size_t *n)
{
	sqlite3_stmt *s = db_stmt(db, occ ? SQL_EXT_OCC : SQL_EXT_ALL);
	struct extension *v = NULL;
	size_t k = 0, cap = 0;
	int rc;

	if (!s)
		return -1;
	if (occ && db_bind_text(db, s, 1, occ) < 0) {
		db_stmt_done(db, s);
		return -1;
	}
	while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
		struct extension *e;
		char date[16];

		if (k == cap) {
			cap = cap ? 2 * cap : 8;
			v = xrealloc(v, cap * sizeof(*v));
		}
		e = &v[k];
		memset(e, 0, sizeof(*e));
		col_copy(s, 0, e->occurrence, sizeof(e->occurrence));
		col_copy(s, 1, e->unit, sizeof(e->unit));
		col_copy(s, 2, date, sizeof(date));
		if (parse_ymd(date, &e->due) < 0)
			continue;     /* not ours: written by hand, ignored */
		e->minute = sqlite3_column_type(s, 3) == SQLITE_NULL ? -1 :
			sqlite3_column_int(s, 3);
		if (e->minute < -1 || e->minute > 1440)
			continue;
		e->recorded = sqlite3_column_int64(s, 4);
		col_copy(s, 5, e->source, sizeof(e->source));
		col_copy(s, 6, e->actor, sizeof(e->actor));
		e->note = col_dup(s, 7);
		k++;
	}
	db_stmt_done(db, s);
	if (rc != SQLITE_DONE) {
		fail(db, "extension list");
		extensions_free(v, k);
		return -1;
	}
	if (v == NULL)
		v = xcalloc(1, sizeof(*v));
	*out = v;
	*n = k;
	return 0;
}

int
ledger_effective(const struct conf *c, struct db *db, struct occ *o,
		 const char *unit)
{
	struct extension *v;
	size_t n;

	if (db == NULL)
		return 0;
	if (ledger_extensions(db, o->id, &v, &n) < 0)
		return -1;
	sched_extend(c, o, v, n, unit);
	extensions_free(v, n);
	return 0;
}

/* -------------------------------------------------------------- history */

/* The events of the bound statement s (then done) to fn. */
static int
read_events(struct db *db, sqlite3_stmt *s,
	    int (*fn)(void *ctx, const struct ledger_event *e), void *ctx)
{
	struct ledger_event *v = NULL;
	size_t n = 0, cap = 0;
	int rc, ret = -1;

	/* read all first: fn may use the database */
	while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
		struct ledger_event *e;

		if (n == cap) {
			cap = cap ? 2 * cap : 32;
			v = xrealloc(v, cap * sizeof(*v));
		}
		e = &v[n++];
		memset(e, 0, sizeof(*e));
		e->id = sqlite3_column_int64(s, 0);
		col_copy(s, 1, e->occurrence, sizeof(e->occurrence));
		col_copy(s, 2, e->unit, sizeof(e->unit));
		col_copy(s, 3, e->action, sizeof(e->action));
		e->at = sqlite3_column_int64(s, 4);
		e->recorded = sqlite3_column_int64(s, 5);
		col_copy(s, 6, e->source, sizeof(e->source));
		col_copy(s, 7, e->actor, sizeof(e->actor));
		e->detail = col_dup(s, 8);
		e->note = col_dup(s, 9);
	}
	db_stmt_done(db, s);
	if (rc != SQLITE_DONE) {
		fail(db, "history");
		goto out;
	}
	ret = 0;
	for (size_t i = 0; i < n; i++)
		if (fn(ctx, &v[i]) != 0)
			break;
out:
	for (size_t i = 0; i < n; i++) {
		free(v[i].detail);
		free(v[i].note);
	}
	free(v);
	return ret;
}

int
ledger_history(struct db *db, const char *occ, const char *unit,
	       int (*fn)(void *ctx, const struct ledger_event *e), void *ctx)
{
	sqlite3_stmt *s = db_stmt(db, SQL_HISTORY);

	if (!s)
		return -1;
	if (db_bind_text(db, s, 1, occ) < 0 || db_bind_text(db, s, 2, unit) < 0) {
		db_stmt_done(db, s);
		return -1;
	}
	return read_events(db, s, fn, ctx);
}

int
ledger_events_after(struct db *db, int64_t after, int max,
		    int (*fn)(void *ctx, const struct ledger_event *e),
		    void *ctx)
{
	sqlite3_stmt *s = db_stmt(db, SQL_EVENTS_AFTER);

	if (!s)
		return -1;
	if (sqlite3_bind_int64(s, 1, after) != SQLITE_OK ||
	    sqlite3_bind_int(s, 2, max) != SQLITE_OK) {
		fail(db, "history");
		db_stmt_done(db, s);
		return -1;
	}
	return read_events(db, s, fn, ctx);
}

int
ledger_last_event_id(struct db *db, int64_t *id)
{
	sqlite3_stmt *s = db_stmt(db, SQL_LAST_EVENT_ID);
	int rc;

	if (!s)
		return -1;
	rc = sqlite3_step(s);
	if (rc == SQLITE_ROW)
		*id = sqlite3_column_int64(s, 0);
	else
		fail(db, "history");
	db_stmt_done(db, s);
	return rc == SQLITE_ROW ? 0 : -1;
}

/* ------------------------------------------------------------ proposals */

int
ledger_proposals(struct db *db, const char *occ,
		 int (*fn)(void *ctx, const char *occ, const char *unit,
			   const char *source, tstamp at), void *ctx)
{
	sqlite3_stmt *s = db_stmt(db, SQL_PROPOSALS);
	struct prop {
		char occ[OCC_ID_MAX], unit[72], source[16];
		tstamp at;
	} *v = NULL;
	size_t n = 0, cap = 0;
	int rc;

	if (!s)
		return -1;
	if (db_bind_text(db, s, 1, occ) < 0) {
		db_stmt_done(db, s);
		return -1;
	}
	/* read all first: fn may use the database */
	while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
		if (n == cap) {
			cap = cap ? 2 * cap : 16;
			v = xrealloc(v, cap * sizeof(*v));
		}
		col_copy(s, 0, v[n].occ, sizeof(v[n].occ));
		col_copy(s, 1, v[n].unit, sizeof(v[n].unit));
		col_copy(s, 2, v[n].source, sizeof(v[n].source));
		v[n].at = sqlite3_column_int64(s, 3);
		n++;
	}
	db_stmt_done(db, s);
	if (rc != SQLITE_DONE) {
		fail(db, "proposals");
		free(v);
		return -1;
	}
	for (size_t i = 0; i < n; i++)
		if (fn(ctx, v[i].occ, v[i].unit, v[i].source, v[i].at) != 0)
			break;
	free(v);
	return 0;
}

void
ledger_proposal_clear(struct ledger_proposal *p)
{
	if (!p)
		return;
	free(p->detail);
	free(p->note);
	p->detail = p->note = NULL;
}

int
ledger_proposal_get(struct db *db, const char *occ, const char *unit,
		    struct ledger_proposal *out)
{
	sqlite3_stmt *s;
	int rc, ret = -1;

	memset(out, 0, sizeof(*out));
	if (!occ || !unit)
		return -1;
	s = db_stmt(db, SQL_PROPOSAL_GET);
	if (!s)
		return -1;
	if (db_bind_text(db, s, 1, occ) < 0 || db_bind_text(db, s, 2, unit) < 0) {
		db_stmt_done(db, s);
		return -1;
	}
	rc = sqlite3_step(s);
	if (rc == SQLITE_ROW) {
		out->id = sqlite3_column_int64(s, 0);
		col_copy(s, 1, out->occurrence, sizeof(out->occurrence));
		col_copy(s, 2, out->unit, sizeof(out->unit));
		col_copy(s, 3, out->source, sizeof(out->source));
		out->at = sqlite3_column_int64(s, 4);
		out->recorded = sqlite3_column_int64(s, 5);
		col_copy(s, 6, out->actor, sizeof(out->actor));
		out->detail = col_dup(s, 7);
		out->note = col_dup(s, 8);
		ret = 0;
	} else if (rc == SQLITE_DONE) {
		ret = 1;
	} else {
		fail(db, "proposal");
	}
	db_stmt_done(db, s);
	return ret;
}

int
ledger_propose(struct db *db, const char *occ, const char *unit, tstamp at,
	       const char *source, const char *actor, const char *note,
	       const char *detail, tstamp now)
{
	struct submission sub;
	struct ledger_proposal old;
	int tok, rc, ret = -1;

	if (!args_ok(occ, unit, source, actor, note) ||
	    (detail != NULL && note_problem(detail, strlen(detail)) != NULL))
		return -1;
	if (db_part_begin(db, &tok) < 0)
		return -1;
	rc = db_sub_get(db, occ, unit, &sub);
	if (rc == 0) {
		submission_clear(&sub);
		ret = 1;             /* recorded already: nothing to confirm */
		goto out;
	}
	if (rc < 0)
		goto out;
	rc = ledger_proposal_get(db, occ, unit, &old);
	if (rc < 0)
		goto out;
	if (rc == 0) {
		/* the same evidence again (a link pressed twice) adds nothing */
		bool same = strcmp(old.source, source ? source : "") == 0 &&
			    ((old.detail == NULL && detail == NULL) ||
			     (old.detail != NULL && detail != NULL &&
			      strcmp(old.detail, detail) == 0));

		ledger_proposal_clear(&old);
		if (same) {
			ret = 1;
			goto out;
		}
	}
	if (add_event(db, occ, unit, "proposed", &at, now, source, actor,
		      detail, note) == 0)
		ret = 0;
out:
	if (db_part_end(db, tok, ret >= 0) < 0)
		return -1;
	return ret;
}

int
ledger_confirm(struct db *db, const char *occ, const char *unit,
	       const char *via, const char *actor, tstamp now)
{
	struct ledger_proposal p;
	sqlite3_stmt *s;
	int tok, rc, ret = -1;

	if (!args_ok(occ, unit, via, actor, NULL))
		return -1;
	if (db_part_begin(db, &tok) < 0)
		return -1;
	rc = ledger_proposal_get(db, occ, unit, &p);
	if (rc != 0) {
		ret = rc;
		goto out;
	}
	/* the submission keeps the proposal's source and time (the unit
	 * sent it then, by mail or link); who confirmed it, from where, is
	 * the actor and the event's detail */
	s = db_stmt(db, SQL_SUB_INSERT);
	if (!s)
		goto done;
	if (db_bind_text(db, s, 1, occ) < 0 || db_bind_text(db, s, 2, unit) < 0 ||
	    db_bind_int(db, s, 3, p.at) < 0 || db_bind_int(db, s, 4, now) < 0 ||
	    db_bind_text(db, s, 5, p.source) < 0 ||
	    db_bind_text(db, s, 6, p.note) < 0 || db_bind_int(db, s, 7, 0) < 0 ||
	    db_bind_text(db, s, 8, nz(actor)) < 0) {
		db_stmt_done(db, s);
		goto done;
	}
	if (run(db, s, "submission insert") < 0)
		goto done;
	if (add_event(db, occ, unit, "confirmed", &p.at, now, p.source, actor,
		      via, p.note) == 0)
		ret = 0;
done:
	ledger_proposal_clear(&p);
out:
	if (db_part_end(db, tok, ret >= 0) < 0)
		return -1;
	return ret;
}

int
ledger_reject(struct db *db, const char *occ, const char *unit,
	      const char *via, const char *actor, const char *note,
	      tstamp now)
{
	struct ledger_proposal p;
	int tok, rc, ret = -1;

	if (!args_ok(occ, unit, via, actor, note))
		return -1;
	if (db_part_begin(db, &tok) < 0)
		return -1;
	rc = ledger_proposal_get(db, occ, unit, &p);
	if (rc != 0) {
		ret = rc;
		goto out;
	}
	/* the event names the rejected proposal's source in detail */
	if (add_event(db, occ, unit, "rejected", &p.at, now, via, actor,
		      p.source, note) == 0)
		ret = 0;
	ledger_proposal_clear(&p);
out:
	if (db_part_end(db, tok, ret >= 0) < 0)
		return -1;
	return ret;
}
