/*
 * test_ledger.c - ledger.c on a real state store, the schedule's use of
 * extensions (sched_extend, sched_plan_ext) and the CSV view's quoting.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <sqlite3.h>

#include "cutoffd.h"
#include "fixture.h"

static const char conf_text[] =
	"[daemon]\ntimezone = Asia/Ho_Chi_Minh\npublic_url = http://x\n"
	"[mail]\ntransport = maildir\nmaildir = /tmp/m\nfrom = T <t@x.vn>\n"
	"[secretariat]\nname = TT\nemail = tt@x.vn\n"
	"[policy p]\nat = 08:00\nremind = -3d -1d 0d\nescalate = +1d head\n"
	"[cycle q1]\ntitle = Báo cáo quý I\ndue = 03-13\npolicy = p\n"
	"units = *\n"
	"[unit a]\nname = Đơn vị \"A\", số 1\nemail = a@x.vn\nhead = ha@x.vn\n"
	"[unit b]\nname = =B\nemail = b@x.vn\n";

#define OCC "q1/2024-03-13"

static int
count_rows(void *ctx, const struct plan_row *r)
{
	size_t *n = ctx;

	(void)r;
	(*n)++;
	return 0;
}

struct rows {
	char line[64][256];
	size_t n;
};

static int
keep_row(void *ctx, const struct plan_row *r)
{
	struct rows *v = ctx;
	struct ymd d;
	int m;

	if (v->n < 64) {
		tz_local(NULL, r->at, &d, &m, NULL);
		snprintf(v->line[v->n++], sizeof v->line[0], "%s %s %s %s", r->unit->id,
			 r->step->name, channel_name(r->ch),
			 audience_name(r->aud));
	}
	return 0;
}

static void
test_extend_and_history(void **state)
{
	struct fix *f = fix_new(conf_text);
	struct extension *ext;
	size_t n;
	struct occ o;
	struct ymd d20 = { 2024, 3, 20 }, d25 = { 2024, 3, 25 };

	(void)state;
	assert_int_equal(ledger_extend(f->db, OCC, NULL, d20, -1, "cli",
				       "lan", "lũ", 100), 0);
	assert_int_equal(ledger_extend(f->db, OCC, "a", d25, 17 * 60, "api",
				       "minh", NULL, 200), 0);
	/* replacing keeps one row per (occurrence, unit) */
	assert_int_equal(ledger_extend(f->db, OCC, "", d20, -1, "cli", "lan",
				       NULL, 300), 0);
	assert_int_equal(ledger_extensions(f->db, OCC, &ext, &n), 0);
	assert_int_equal(n, 2);
	assert_string_equal(ext[0].unit, "");     /* occurrence-wide first */
	assert_string_equal(ext[1].unit, "a");
	assert_int_equal(ext[1].minute, 17 * 60);
	assert_string_equal(ext[1].actor, "minh");

	assert_int_equal(sched_occurrence(f->c, OCC, &o), 0);
	assert_true(sched_extend(f->c, &o, ext, n, "b"));
	assert_int_equal(o.due.d, 20);
	assert_int_equal(o.was_due.d, 13);
	assert_int_equal(sched_occurrence(f->c, OCC, &o), 0);
	assert_true(sched_extend(f->c, &o, ext, n, "a"));
	assert_int_equal(o.due.d, 25);
	assert_int_equal(o.due_at, tz_mktime(f->c->tz, d25, 17 * 60));
	extensions_free(ext, n);

	/* the history counts for the feeds: a unit sees the wide ones too */
	assert_int_equal(db_sub_events(f->db, OCC, "b"), 2);
	assert_int_equal(db_sub_events(f->db, OCC, "a"), 3);
	assert_int_equal(db_sub_events(f->db, OCC, NULL), 3);
	assert_int_equal(ledger_last_event(f->db, OCC, "b"), 300);

	assert_int_equal(ledger_unextend(f->db, OCC, "a", "cli", NULL, 400), 0);
	assert_int_equal(ledger_unextend(f->db, OCC, "a", "cli", NULL, 401), 1);
	assert_int_equal(ledger_extensions(f->db, NULL, &ext, &n), 0);
	assert_int_equal(n, 1);
	extensions_free(ext, n);

	/* actors that would break a line are refused */
	assert_int_equal(ledger_receive(f->db, OCC, "a", 1, false, "cli",
					"x\ny", NULL, 1), -1);
	assert_int_equal(ledger_receive(f->db, OCC, "a", 1, true, "cli", "lan",
					NULL, 500), 0);
	fix_free(f);
}

static int
hist_collect(void *ctx, const struct ledger_event *e)
{
	struct rows *v = ctx;

	snprintf(v->line[v->n++], sizeof v->line[0], "%s|%s|%s|%s|%s", e->unit, e->action,
		 e->source, e->actor, e->detail ? e->detail : "");
	return 0;
}

static void
test_nil_undo_history(void **state)
{
	struct fix *f = fix_new(conf_text);
	struct submission s;
	struct rows h = { .n = 0 };

	(void)state;
	assert_int_equal(ledger_receive(f->db, OCC, "a", 10, true, "page",
					"lan", "không", 11), 0);
	assert_int_equal(db_sub_get(f->db, OCC, "a", &s), 0);
	assert_true(s.nil);
	assert_string_equal(s.actor, "lan");
	assert_string_equal(s.source, "page");
	submission_clear(&s);
	assert_int_equal(ledger_receive(f->db, OCC, "a", 12, false, "api",
					NULL, NULL, 12), 1);
	assert_int_equal(ledger_undo(f->db, OCC, "a", "api", "minh", 13), 0);
	assert_int_equal(ledger_extend(f->db, OCC, NULL, (struct ymd){ 2024, 3,
				       15 }, 600, "cli", "root", NULL, 14), 0);
	assert_int_equal(ledger_history(f->db, NULL, "a", hist_collect, &h),
			 0);
	assert_int_equal(h.n, 3);
	assert_string_equal(h.line[0], "a|nil|page|lan|");
	assert_string_equal(h.line[1], "a|undo|api|minh|nil");
	assert_string_equal(h.line[2], "|extend|cli|root|2024-03-15T10:00");
	fix_free(f);
}

static int
prop_count(void *ctx, const char *occ, const char *unit, const char *source,
	   tstamp at)
{
	(void)occ;
	(void)unit;
	(void)source;
	(void)at;
	(*(int *)ctx)++;
	return 0;
}

/* A proposal is a state of the history: open until confirmed (a
 * submission with its source and time), rejected, or recorded otherwise;
 * never a submission by itself. */
static void
test_propose_confirm_reject(void **state)
{
	struct fix *f = fix_new(conf_text);
	struct ledger_proposal p;
	struct submission s;
	struct rows h = { .n = 0 };
	int n = 0;

	(void)state;
	assert_int_equal(ledger_proposal_get(f->db, OCC, "a", &p), 1);
	assert_int_equal(ledger_propose(f->db, OCC, "a", 100, "imap",
					"a@x.vn", "Re: báo cáo", "<m1@x>",
					101), 0);
	/* the same evidence again: nothing new */
	assert_int_equal(ledger_propose(f->db, OCC, "a", 100, "imap",
					"a@x.vn", "Re: báo cáo", "<m1@x>",
					102), 1);
	assert_int_equal(db_sub_get(f->db, OCC, "a", &s), 1);
	assert_int_equal(ledger_proposal_get(f->db, OCC, "a", &p), 0);
	assert_string_equal(p.source, "imap");
	assert_string_equal(p.detail, "<m1@x>");
	assert_string_equal(p.note, "Re: báo cáo");
	assert_int_equal(p.at, 100);
	ledger_proposal_clear(&p);
	assert_int_equal(ledger_proposals(f->db, NULL, prop_count, &n), 0);
	assert_int_equal(n, 1);

	assert_int_equal(ledger_confirm(f->db, OCC, "a", "page", "lan", 110),
			 0);
	assert_int_equal(db_sub_get(f->db, OCC, "a", &s), 0);
	assert_string_equal(s.source, "imap");
	assert_int_equal(s.at, 100);
	assert_string_equal(s.actor, "lan");
	submission_clear(&s);
	assert_int_equal(ledger_confirm(f->db, OCC, "a", "page", "lan", 111),
			 1);
	/* a submission stands: nothing to propose */
	assert_int_equal(ledger_propose(f->db, OCC, "a", 120, "link", NULL,
					NULL, NULL, 121), 1);

	assert_int_equal(ledger_propose(f->db, OCC, "b", 130, "link", NULL,
					NULL, NULL, 131), 0);
	assert_int_equal(ledger_reject(f->db, OCC, "b", "cli", "root", "sai",
				       132), 0);
	assert_int_equal(ledger_reject(f->db, OCC, "b", "cli", "root", NULL,
				       133), 1);
	assert_int_equal(ledger_proposal_get(f->db, OCC, "b", &p), 1);
	assert_int_equal(db_sub_get(f->db, OCC, "b", &s), 1);
	n = 0;
	assert_int_equal(ledger_proposals(f->db, NULL, prop_count, &n), 0);
	assert_int_equal(n, 0);
	assert_int_equal(ledger_history(f->db, OCC, NULL, hist_collect, &h),
			 0);
	assert_int_equal(h.n, 4);
	assert_string_equal(h.line[0], "a|proposed|imap|a@x.vn|<m1@x>");
	assert_string_equal(h.line[1], "a|confirmed|imap|lan|page");
	assert_string_equal(h.line[2], "b|proposed|link||");
	assert_string_equal(h.line[3], "b|rejected|cli|root|link");
	fix_free(f);
}

/* What the daemon logs of another process's records: events after an id,
 * in pages. */
static void
test_events_after(void **state)
{
	struct fix *f = fix_new(conf_text);
	struct rows h = { .n = 0 };
	int64_t last = -1;

	(void)state;
	assert_int_equal(ledger_last_event_id(f->db, &last), 0);
	assert_int_equal(last, 0);
	assert_int_equal(ledger_receive(f->db, OCC, "a", 10, false, "cli",
					"lan", NULL, 11), 0);
	assert_int_equal(ledger_last_event_id(f->db, &last), 0);
	assert_true(last > 0);
	assert_int_equal(ledger_receive(f->db, OCC, "b", 10, true, "cli",
					"lan", NULL, 12), 0);
	assert_int_equal(ledger_undo(f->db, OCC, "a", "api", "minh", 13), 0);
	assert_int_equal(ledger_events_after(f->db, last, 64, hist_collect,
					     &h), 0);
	assert_int_equal(h.n, 2);
	assert_string_equal(h.line[0], "b|nil|cli|lan|");
	assert_string_equal(h.line[1], "a|undo|api|minh|");
	h.n = 0;
	assert_int_equal(ledger_events_after(f->db, 0, 1, hist_collect, &h), 0);
	assert_int_equal(h.n, 1);             /* at most max */
	assert_string_equal(h.line[0], "a|received|cli|lan|");
	fix_free(f);
}

/* A schema-2 store (0.1) migrates with its history intact. */
static void
test_migration_keeps_history(void **state)
{
	char dir[] = "/tmp/cutoffd-test-ledger-XXXXXX";
	char *path, *err = NULL, *cmd;
	sqlite3 *h;
	struct db *db;
	struct submission s;

	(void)state;
	assert_non_null(mkdtemp(dir));
	path = xasprintf("%s/state.db", dir);
	db = db_open(path, true, &err);
	assert_non_null(db);
	db_close(db);
	/* back to what 0.1 left: version 2, its tables and rows */
	assert_int_equal(sqlite3_open(path, &h), SQLITE_OK);
	assert_int_equal(sqlite3_exec(h,
		"DROP TABLE extension; DROP TABLE submission_event;"
		"DROP TABLE submission;"
		"CREATE TABLE submission(occurrence TEXT NOT NULL, unit TEXT"
		" NOT NULL, at INTEGER, recorded INTEGER, source TEXT, note"
		" TEXT, PRIMARY KEY(occurrence, unit));"
		"CREATE TABLE submission_event(id INTEGER PRIMARY KEY,"
		" occurrence TEXT NOT NULL, unit TEXT NOT NULL, action TEXT NOT"
		" NULL CHECK(action IN ('received','undo')), at INTEGER,"
		" recorded INTEGER, source TEXT, note TEXT);"
		"CREATE INDEX submission_event_occ ON submission_event"
		"(occurrence, unit);"
		"INSERT INTO submission VALUES('q1/2024-03-13','a',5,6,'cli','n');"
		"INSERT INTO submission_event(occurrence, unit, action, at,"
		" recorded, source, note) VALUES('q1/2024-03-13','a','received',"
		"5,6,'cli','n');"
		"PRAGMA user_version = 2;", NULL, NULL, NULL), SQLITE_OK);
	sqlite3_close(h);
	db = db_open(path, false, &err);
	assert_non_null(db);
	assert_int_equal(db_sub_get(db, OCC, "a", &s), 0);
	assert_false(s.nil);
	assert_string_equal(s.note, "n");
	submission_clear(&s);
	assert_int_equal(db_sub_events(db, OCC, "a"), 1);
	assert_int_equal(ledger_receive(db, OCC, "b", 7, true, "cli", NULL,
					NULL, 8), 0);
	assert_int_equal(db_sub_events(db, OCC, NULL), 2);
	db_close(db);
	cmd = xasprintf("rm -rf '%s'", dir);
	assert_int_equal(system(cmd), 0);
	free(cmd);
	free(path);
}

static void
test_plan_with_extensions(void **state)
{
	struct fix *f = fix_new(conf_text);
	struct extension ext[2];
	struct rows v = { .n = 0 };
	size_t n0 = 0, n1 = 0;
	tstamp from = tz_mktime(f->c->tz, (struct ymd){ 2024, 3, 1 }, 0);
	tstamp to = tz_mktime(f->c->tz, (struct ymd){ 2024, 4, 30 }, 0);

	(void)state;
	memset(ext, 0, sizeof ext);
	snprintf(ext[0].occurrence, sizeof ext[0].occurrence, OCC);
	ext[0].due = (struct ymd){ 2024, 3, 20 };
	ext[0].minute = -1;
	snprintf(ext[1].occurrence, sizeof ext[1].occurrence, OCC);
	snprintf(ext[1].unit, sizeof ext[1].unit, "a");
	ext[1].due = (struct ymd){ 2024, 3, 27 };
	ext[1].minute = -1;
	assert_int_equal(sched_plan(f->c, from, to, NULL, NULL, NULL,
				    count_rows, &n0), 0);
	assert_int_equal(sched_plan_ext(f->c, from, to, NULL, ext, 2, NULL,
					NULL, count_rows, &n1), 0);
	/* same steps, moved: a's own and everyone else's, none twice */
	assert_int_equal(n0, n1);
	assert_int_equal(sched_plan_ext(f->c, from, to, "a", ext, 2, NULL,
					NULL, keep_row, &v), 0);
	for (size_t i = 0; i < v.n; i++)
		assert_non_null(strstr(v.line[i], "~20240327"));
	v.n = 0;
	assert_int_equal(sched_plan_ext(f->c, from, to, "b", ext, 2, NULL,
					NULL, keep_row, &v), 0);
	assert_true(v.n > 0);
	for (size_t i = 0; i < v.n; i++)
		assert_non_null(strstr(v.line[i], "~20240320"));
	/* an occurrence far outside the window by its plan, brought in by
	 * its extension */
	ext[0].due = (struct ymd){ 2024, 5, 23 };      /* a Thursday */
	v.n = 0;
	from = tz_mktime(f->c->tz, (struct ymd){ 2024, 5, 20 }, 0);
	to = tz_mktime(f->c->tz, (struct ymd){ 2024, 5, 21 }, 0);
	assert_int_equal(sched_plan_ext(f->c, from, to, NULL, ext, 2, NULL,
					NULL, keep_row, &v), 0);
	assert_int_equal(v.n, 1);
	assert_string_equal(v.line[0], "b remind-3d~20240523 email unit");
	fix_free(f);
}

static void
test_csv_quoting(void **state)
{
	struct fix *f = fix_new(conf_text);
	struct status_filter flt = { .occ = OCC };
	struct status *s = NULL;
	struct buf b;
	const char *want_a, *want_b;

	(void)state;
	assert_int_equal(ledger_receive(f->db, OCC, "a",
		tz_mktime(f->c->tz, (struct ymd){ 2024, 3, 12 }, 9 * 60 + 5),
		false, "cli", NULL, "dòng 1\n\"2\"", 1), 0);
	assert_int_equal(status_build(f->c, f->db,
		tz_mktime(f->c->tz, (struct ymd){ 2024, 3, 14 }, 0), &flt, &s),
		0);
	buf_init(&b);
	status_csv_write(f->c, s, &b);
	assert_memory_equal(b.p, "\xef\xbb\xbfoccurrence,title,due,unit,", 26);
	want_a = "\r\nq1/2024-03-13,Báo cáo quý I,13/03/2024,a,\"Đơn vị "
		 "\"\"A\"\", số 1\",submitted,12/03/2024 09:05,cli,\"dòng 1\n"
		 "\"\"2\"\"\"\r\n";
	want_b = "q1/2024-03-13,Báo cáo quý I,13/03/2024,b,\"'=B\",missing,,,"
		 "\r\n";
	assert_non_null(strstr(b.p, want_a));
	assert_non_null(strstr(b.p, want_b));
	buf_free(&b);
	status_free(s);
	fix_free(f);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_extend_and_history),
		cmocka_unit_test(test_nil_undo_history),
		cmocka_unit_test(test_propose_confirm_reject),
		cmocka_unit_test(test_events_after),
		cmocka_unit_test(test_migration_keeps_history),
		cmocka_unit_test(test_plan_with_extensions),
		cmocka_unit_test(test_csv_quoting),
	};

	log_init("test_ledger", -1);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
