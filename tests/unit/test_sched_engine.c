/*
 * test_sched_engine.c - the schedule rules of 0.2 where the engine and the
 * state store apply them: quiet hours and send days held for steps caught
 * up late and for rows kept across a replan (a reload), rows of occurrences
 * before `since` cancelled, and a moved occurrence's state (db_occ_move).
 * Includes engine.c to reach its statics; times are passed in.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "../../daemon/engine.c"

#include <sqlite3.h>
#include <unistd.h>

/* h1 due Monday 2024-06-03 (nominal Saturday 06-01); 0d at 08:00 */
static const char conf_text[] =
	"[daemon]\n"
	"timezone = Asia/Ho_Chi_Minh\n"
	"state = /nonexistent/state.db\n"
	"public_url = https://han.example.vn\n"
	"[secretariat]\n"
	"name = Thường trực\n"
	"email = tt@example.vn\n"
	"[policy p]\n"
	"at = 08:00\n"
	"remind = -1d 0d\n"
	"quiet = 18:00-07:30\n"
	"[cycle h1]\n"
	"title = Báo cáo 6 tháng\n"
	"due = 06-01\n"
	"[unit a]\n"
	"name = Phòng A\n"
	"email = a@example.vn\n";

struct fx {
	struct app a;
	char dir[64];
	char path[96];
};

static tstamp
at(struct fx *f, const char *s)
{
	tstamp t = 0;

	assert_int_equal(tz_parse_local(f->a.conf->tz, s, &t), 0);
	return t;
}

static int
setup(void **state)
{
	struct fx *f = xcalloc(1, sizeof(*f));
	struct diag d;
	char *err = NULL;

	diag_init(&d);
	f->a.conf = conf_parse("t.conf", conf_text, strlen(conf_text),
			       CONF_NO_FILES, &d);
	diag_print(&d, stderr);
	diag_free(&d);
	if (f->a.conf == NULL)
		return -1;
	conf_apply_state(f->a.conf, INT64_MIN, 0, NULL, 0);
	snprintf(f->dir, sizeof(f->dir), "/tmp/test_sched_engine.XXXXXX");
	if (!mkdtemp(f->dir))
		return -1;
	snprintf(f->path, sizeof(f->path), "%s/state.db", f->dir);
	f->a.db = db_open(f->path, true, &err);
	if (f->a.db == NULL) {
		fprintf(stderr, "db_open: %s\n", err);
		free(err);
		return -1;
	}
	*state = f;
	return 0;
}

static int
teardown(void **state)
{
	struct fx *f = *state;
	char *p;

	db_close(f->a.db);
	conf_free(f->a.conf);
	p = xasprintf("rm -rf '%s'", f->dir);
	if (system(p) != 0)
		fprintf(stderr, "could not remove %s\n", f->dir);
	free(p);
	free(f);
	return 0;
}

static int64_t
q(struct fx *f, const char *sql)
{
	sqlite3_stmt *st = NULL;
	int64_t v = -1;

	assert_int_equal(sqlite3_prepare_v2((sqlite3 *)db_handle(f->a.db), sql,
					    -1, &st, NULL), SQLITE_OK);
	if (sqlite3_step(st) == SQLITE_ROW)
		v = sqlite3_column_int64(st, 0);
	sqlite3_finalize(st);
	return v;
}

static void
set_last(struct fx *f, tstamp t)
{
	char v[24];

	snprintf(v, sizeof(v), "%lld", (long long)t);
	assert_int_equal(db_meta_set(f->a.db, META_LAST_SCAN, v), 0);
}

static void
add_row(struct fx *f, const char *occ, const char *step, tstamp send_at)
{
	struct notice n;

	memset(&n, 0, sizeof(n));
	snprintf(n.occurrence, sizeof(n.occurrence), "%s", occ);
	snprintf(n.unit, sizeof(n.unit), "a");
	snprintf(n.step, sizeof(n.step), "%s", step);
	n.aud = AUD_UNIT;
	n.ch = CH_EMAIL;
	n.recipients = "a@example.vn";
	n.send_at = send_at;
	snprintf(n.message_id, sizeof(n.message_id), "<%s.%s@x>", step, occ);
	assert_int_equal(outbox_add(f->a.db, &n, send_at), 1);
}

/* The daemon was down over the due day and is back at 19:02: the missed
 * 0d reminder waits for 07:30 (0.1 sent it at once, inside quiet). */
static void
test_catch_up_waits_for_quiet_end(void **state)
{
	struct fx *f = *state;
	tstamp s = 0;

	set_last(f, at(f, "2024-06-01T10:00"));
	assert_int_equal(scan(f->a.conf, f->a.db, 0, at(f, "2024-06-04T19:02"),
			      GRACE_MIN, &s), 1);
	assert_int_equal(q(f, "SELECT count(*) FROM outbox"
			   " WHERE step = 'remind+0d'"), 1);
	assert_int_equal(q(f, "SELECT next_try FROM outbox"), at(f,
			 "2024-06-05T07:30"));
	assert_int_equal(q(f, "SELECT send_at FROM outbox"), at(f,
			 "2024-06-05T07:30"));
}

/* Back on Friday evening: not Saturday 07:30 but Monday 08:00. */
static void
test_catch_up_waits_for_a_send_day(void **state)
{
	struct fx *f = *state;
	tstamp s = 0;

	set_last(f, at(f, "2024-06-01T10:00"));
	assert_int_equal(scan(f->a.conf, f->a.db, 0, at(f, "2024-06-07T18:30"),
			      GRACE_MIN, &s), 1);
	assert_int_equal(q(f, "SELECT next_try FROM outbox"), at(f,
			 "2024-06-10T08:00"));
}

/* A reload at 19:00 with a notice still waiting (a retry due at 19:02):
 * it waits for 07:30, and one due in the morning is left alone. */
static void
test_replan_holds_kept_rows(void **state)
{
	struct fx *f = *state;
	struct engine *e;
	tstamp now = at(f, "2024-06-03T19:00");

	set_last(f, now);
	add_row(f, "h1/2024-06-01", "remind+0d", at(f, "2024-06-03T08:00"));
	assert_int_equal(db_outbox_hold(f->a.db, 1, at(f, "2024-06-03T19:02")),
			 0);
	add_row(f, "h1/2025-06-01", "remind-1d", at(f, "2025-05-30T08:00"));
	f->a.loop = ev_loop_new(EVFLAG_AUTO);
	clock_init(&f->a.clk, true, now, 1.0);
	e = engine_start(&f->a);
	engine_replan(e);
	engine_stop(e);
	ev_loop_destroy(f->a.loop);
	assert_int_equal(q(f, "SELECT next_try FROM outbox WHERE id = 1"),
			 at(f, "2024-06-04T07:30"));
	assert_int_equal(q(f, "SELECT next_try FROM outbox WHERE id = 2"),
			 at(f, "2025-05-30T08:00"));
	assert_int_equal(q(f, "SELECT count(*) FROM outbox"
			   " WHERE state = 'pending'"), 2);
}

/* since moved past an occurrence: its waiting rows are cancelled. */
static void
test_replan_cancels_before_since(void **state)
{
	struct fx *f = *state;
	struct engine *e;
	tstamp now = at(f, "2024-06-03T09:00");

	set_last(f, now);
	add_row(f, "h1/2024-06-01", "remind+0d", at(f, "2024-06-03T08:00"));
	f->a.conf->daemon.since_day = days_from_civil(2024, 6, 4);
	f->a.loop = ev_loop_new(EVFLAG_AUTO);
	clock_init(&f->a.clk, true, now, 1.0);
	e = engine_start(&f->a);
	engine_replan(e);
	engine_stop(e);
	ev_loop_destroy(f->a.loop);
	assert_int_equal(q(f, "SELECT count(*) FROM outbox"
			   " WHERE state = 'cancelled'"), 1);
}

/* The state of a moved occurrence goes to the new id in one transaction. */
static void
test_occ_move(void **state)
{
	struct fx *f = *state;
	struct occ_alias *al = NULL;
	size_t n = 0;
	char **ids = NULL;
	tstamp t = at(f, "2024-03-08T09:00");

	assert_int_equal(db_sub_record(f->a.db, "q1/2024-03-13", "a", t, "cli",
				       "bản giấy", t), 0);
	add_row(f, "q1/2024-03-13", "remind-3d", t);
	assert_int_equal(outbox_mark_sent(f->a.db, 1, t), 0);
	add_row(f, "q1/2024-03-13", "remind-1d", t + 86400);
	assert_int_equal(db_state_ids(f->a.db, &ids, &n), 0);
	assert_int_equal(n, 1);
	assert_string_equal(ids[0], "q1/2024-03-13");
	free_list(ids, n);

	assert_int_equal(db_occ_move(f->a.db, "q1/2024-03-13", "q1/2024-03-15",
				     t + 3600), 0);
	assert_int_equal(q(f, "SELECT count(*) FROM submission"
			   " WHERE occurrence = 'q1/2024-03-15'"), 1);
	assert_int_equal(q(f, "SELECT count(*) FROM submission_event"
			   " WHERE occurrence = 'q1/2024-03-15'"), 1);
	assert_int_equal(q(f, "SELECT count(*) FROM outbox WHERE"
			   " occurrence = 'q1/2024-03-15' AND state = 'sent'"), 1);
	/* the waiting one was planned from the old date */
	assert_int_equal(q(f, "SELECT count(*) FROM outbox WHERE"
			   " occurrence = 'q1/2024-03-13' AND state = 'cancelled'"),
			 1);
	assert_int_equal(db_aliases(f->a.db, &al, &n), 0);
	assert_int_equal(n, 1);
	assert_string_equal(al[0].from, "q1/2024-03-13");
	assert_string_equal(al[0].to, "q1/2024-03-15");
	db_aliases_free(al, n);

	/* moved again: the first id follows; moved back: no alias to itself */
	assert_int_equal(db_occ_move(f->a.db, "q1/2024-03-15", "q1/2024-03-18",
				     t + 7200), 0);
	assert_int_equal(db_aliases(f->a.db, &al, &n), 0);
	assert_int_equal(n, 2);
	assert_string_equal(al[0].to, "q1/2024-03-18");
	assert_string_equal(al[1].to, "q1/2024-03-18");
	db_aliases_free(al, n);
	assert_int_equal(db_occ_move(f->a.db, "q1/2024-03-18", "q1/2024-03-13",
				     t + 9000), 0);
	assert_int_equal(db_aliases(f->a.db, &al, &n), 0);
	assert_int_equal(n, 2);
	assert_string_equal(al[0].from, "q1/2024-03-15");
	assert_string_equal(al[0].to, "q1/2024-03-13");
	assert_string_equal(al[1].from, "q1/2024-03-18");
	db_aliases_free(al, n);
	assert_int_equal(q(f, "SELECT count(*) FROM submission"
			   " WHERE occurrence = 'q1/2024-03-13'"), 1);
}

static void
test_first_day(void **state)
{
	struct fx *f = *state;
	int64_t day = 0;

	assert_int_equal(db_first_day(f->a.db, 19724, false, &day), 1);
	assert_int_equal(db_first_day(f->a.db, 19724, true, &day), 0);
	assert_int_equal(day, 19724);
	/* recorded once: later starts keep the first day */
	assert_int_equal(db_first_day(f->a.db, 19999, true, &day), 0);
	assert_int_equal(day, 19724);
}

/* A store of 0.1 (records, no first day): since is its oldest record's
 * day, not the day of the upgrade. */
static void
test_first_day_of_an_old_store(void **state)
{
	struct fx *f = *state;
	int64_t day = 0;
	tstamp t = at(f, "2024-03-08T09:00");

	assert_int_equal(db_sub_record(f->a.db, "q1/2024-03-13", "a", t, "cli",
				       NULL, t), 0);
	assert_int_equal(db_first_day(f->a.db, days_from_civil(2025, 6, 1),
				      true, &day), 0);
	assert_int_equal(day, days_from_civil(2024, 3, 8));
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_catch_up_waits_for_quiet_end,
						setup, teardown),
		cmocka_unit_test_setup_teardown(test_catch_up_waits_for_a_send_day,
						setup, teardown),
		cmocka_unit_test_setup_teardown(test_replan_holds_kept_rows,
						setup, teardown),
		cmocka_unit_test_setup_teardown(test_replan_cancels_before_since,
						setup, teardown),
		cmocka_unit_test_setup_teardown(test_occ_move, setup, teardown),
		cmocka_unit_test_setup_teardown(test_first_day, setup, teardown),
		cmocka_unit_test_setup_teardown(test_first_day_of_an_old_store,
						setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
