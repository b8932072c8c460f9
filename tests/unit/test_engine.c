/*
 * test_engine.c - the engine's scan: on-time steps, first start, the
 * catch-up rule after downtime, `until`, submitted pairs, the next wake,
 * and replan's cancellations.  Includes engine.c to reach its statics;
 * times are passed in (no sleeps).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "../../daemon/engine.c"

#include <sqlite3.h>
#include <unistd.h>

/*
 * One report due Wed 2024-03-13 17:00 (+07).  Steps at 08:00:
 * remind -7d (03-06) -3d (03-10) -1d (03-12) 0d (03-13) to the unit,
 * escalate +1d (03-14) head, +3d (03-16) head and secretariat.
 */
static const char conf_text[] =
	"[daemon]\n"
	"timezone = Asia/Ho_Chi_Minh\n"
	"state = /nonexistent/state.db\n"
	"listen = 127.0.0.1:8470\n"
	"public_url = https://han.example.vn\n"
	"\n"
	"[mail]\n"
	"transport = maildir\n"
	"maildir = /nonexistent/mail\n"
	"from = Thường trực <thuongtruc@example.vn>\n"
	"\n"
	"[secretariat]\n"
	"name = Thường trực\n"
	"email = thuongtruc@example.vn\n"
	"chief = truongban@example.vn\n"
	"\n"
	"[policy p]\n"
	"at = 08:00\n"
	"remind = -7d -3d -1d 0d\n"
	"escalate = +1d head, +3d head secretariat\n"
	"until = 30d\n"
	"shift = none\n"
	"send_days = all\n"   /* weekend steps; test_sched covers workdays */
	"\n"
	"[cycle q1]\n"
	"title = Báo cáo quý I\n"
	"due = 2024-03-13\n"
	"time = 17:00\n"
	"policy = p\n"
	"units = *\n"
	"\n"
	"[unit a]\n"
	"name = A\n"
	"email = a@example.vn\n"
	"head = head.a@example.vn\n"
	"webhook = http://127.0.0.1:8471/hooks/a\n"
	"\n"
	"[unit b]\n"
	"name = B\n"
	"email = b@example.vn\n"
	"head = head.b@example.vn\n"
	"\n"
	"[unit c]\n"
	"name = C\n"
	"email = c@example.vn\n";

#define OCC "q1/2024-03-13"

struct fx {
	struct app a;
	char dir[64];
	char path[96];
};

static tstamp at(struct fx *f, const char *s)
{
	tstamp t = 0;

	assert_int_equal(tz_parse_local(f->a.conf->tz, s, &t), 0);
	return t;
}

static int setup(void **state)
{
	struct fx *f = xcalloc(1, sizeof(*f));
	struct diag d;
	char *err = NULL;

	diag_init(&d);
	f->a.conf = conf_parse("test.conf", conf_text, strlen(conf_text),
			       CONF_NO_FILES, &d);
	if (!f->a.conf) {
		diag_print(&d, stderr);
		diag_free(&d);
		free(f);
		return -1;
	}
	diag_free(&d);
	snprintf(f->dir, sizeof(f->dir), "/tmp/test_engine.XXXXXX");
	if (!mkdtemp(f->dir))
		return -1;
	snprintf(f->path, sizeof(f->path), "%s/state.db", f->dir);
	f->a.db = db_open(f->path, true, &err);
	if (!f->a.db) {
		fprintf(stderr, "db_open: %s\n", err);
		free(err);
		return -1;
	}
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fx *f = *state;
	char p[128];

	db_close(f->a.db);
	conf_free(f->a.conf);
	unlink(f->path);
	snprintf(p, sizeof(p), "%s-wal", f->path);
	unlink(p);
	snprintf(p, sizeof(p), "%s-shm", f->path);
	unlink(p);
	rmdir(f->dir);
	free(f);
	return 0;
}

static int64_t count(struct fx *f, const char *where)
{
	char *sql = xasprintf("SELECT count(*) FROM outbox WHERE %s", where);
	sqlite3_stmt *st = NULL;
	int64_t v = -1;

	assert_int_equal(sqlite3_prepare_v2((sqlite3 *)db_handle(f->a.db), sql,
					    -1, &st, NULL), SQLITE_OK);
	if (sqlite3_step(st) == SQLITE_ROW)
		v = sqlite3_column_int64(st, 0);
	sqlite3_finalize(st);
	free(sql);
	return v;
}

static void set_last(struct fx *f, tstamp t)
{
	char v[24];

	snprintf(v, sizeof(v), "%lld", (long long)t);
	assert_int_equal(db_meta_set(f->a.db, META_LAST_SCAN, v), 0);
}

static tstamp get_last(struct fx *f)
{
	tstamp t = 0;

	assert_int_equal(read_last_scan(f->a.db, &t), 0);
	return t;
}

static bool has(struct fx *f, const char *unit, const char *step,
		enum audience aud, enum channel ch)
{
	int rc = outbox_get(f->a.db, OCC, unit, step, aud, ch, NULL, NULL);

	assert_true(rc >= 0);
	return rc == 0;
}

static void test_first_start(void **state)
{
	struct fx *f = *state;
	tstamp now = at(f, "2024-03-13T09:00"), s = 0;

	/* no last_scan: the past is not sent, the mark starts now */
	assert_int_equal(scan(f->a.conf, f->a.db, now, now, GRACE_MIN, &s), 0);
	assert_int_equal(s, now);
	assert_int_equal(get_last(f), now);
	assert_int_equal(count(f, "1"), 0);
}

static void test_first_start_fake_clock(void **state)
{
	struct fx *f = *state;
	tstamp start = at(f, "2024-03-13T07:59"), s = 0;

	/* --now 07:59: start-up took long in virtual time; the 08:00 step
	 * after the chosen start still goes, nothing before it */
	assert_int_equal(scan(f->a.conf, f->a.db, start, start + 3600,
			      GRACE_MIN, &s), 4);
	assert_true(has(f, "a", "remind+0d", AUD_UNIT, CH_EMAIL));
	assert_int_equal(count(f, "1"), 4);
	assert_int_equal(get_last(f), start + 3600);
}

static void test_on_time(void **state)
{
	struct fx *f = *state;
	tstamp step = at(f, "2024-03-06T08:00"), s = 0;
	struct notice n;
	char mid[160];

	set_last(f, step - 60);
	assert_int_equal(scan(f->a.conf, f->a.db, 0, step + 5, GRACE_MIN, &s), 4);
	assert_int_equal(get_last(f), step + 5);
	assert_true(has(f, "a", "remind-7d", AUD_UNIT, CH_EMAIL));
	assert_true(has(f, "b", "remind-7d", AUD_UNIT, CH_EMAIL));
	assert_true(has(f, "c", "remind-7d", AUD_UNIT, CH_EMAIL));
	assert_true(has(f, "a", "remind-7d", AUD_UNIT, CH_WEBHOOK));
	assert_int_equal(count(f, "send_at = next_try AND state = 'pending'"), 4);

	assert_int_equal(outbox_get(f->a.db, OCC, "a", "remind-7d", AUD_UNIT,
				    CH_EMAIL, &n, NULL), 0);
	assert_int_equal(n.send_at, step);
	assert_string_equal(n.recipients, "a@example.vn");
	outbox_message_id("https://han.example.vn", OCC, "a", "remind-7d",
			  AUD_UNIT, CH_EMAIL, mid, sizeof(mid));
	assert_string_equal(n.message_id, mid);
	notice_clear(&n);

	/* nothing new in the window; a re-scan of the same window (crash
	 * before the mark moved) adds nothing either */
	assert_int_equal(scan(f->a.conf, f->a.db, 0, step + 30, GRACE_MIN, &s), 0);
	/* ... and commits nothing: the mark moves in memory only */
	assert_int_equal(s, step + 30);
	assert_int_equal(get_last(f), step + 5);
	set_last(f, step - 60);
	s = 0;                  /* a restart: only the stored mark is known */
	assert_int_equal(scan(f->a.conf, f->a.db, 0, step + 30, GRACE_MIN, &s), 0);
	assert_int_equal(count(f, "1"), 4);

	/* the clock went back: the mark stays where it was */
	assert_int_equal(scan(f->a.conf, f->a.db, 0, step - 3600, GRACE_MIN, &s), 0);
	assert_int_equal(s, step + 30);
	assert_int_equal(get_last(f), step + 30);
}

static void test_catch_up(void **state)
{
	struct fx *f = *state;
	tstamp s = 0;

	/* down from before the first reminder until after escalate+1d */
	set_last(f, at(f, "2024-03-05T00:00"));
	assert_int_equal(scan(f->a.conf, f->a.db, 0, at(f, "2024-03-14T09:00"),
			      GRACE_MIN, &s), 4);
	/* each unit gets only its latest step: escalate+1d to the head and
	 * the chat; no stale reminders to the unit's mailbox */
	assert_true(has(f, "a", "escalate+1d", AUD_HEAD, CH_EMAIL));
	assert_true(has(f, "a", "escalate+1d", AUD_UNIT, CH_WEBHOOK));
	assert_true(has(f, "b", "escalate+1d", AUD_HEAD, CH_EMAIL));
	assert_false(has(f, "a", "remind+0d", AUD_UNIT, CH_EMAIL));
	assert_false(has(f, "b", "remind+0d", AUD_UNIT, CH_EMAIL));
	assert_false(has(f, "a", "remind-7d", AUD_UNIT, CH_EMAIL));
	/* c has no head: escalate+1d does not apply, its latest step that
	 * does is the due-day reminder */
	assert_true(has(f, "c", "remind+0d", AUD_UNIT, CH_EMAIL));
	assert_false(has(f, "c", "remind-1d", AUD_UNIT, CH_EMAIL));
	assert_int_equal(count(f, "channel = 'webhook'"), 1);
	assert_int_equal(get_last(f), at(f, "2024-03-14T09:00"));

	/* back to normal: the next step goes out on time */
	assert_int_equal(scan(f->a.conf, f->a.db, 0, at(f, "2024-03-16T08:00"),
			      GRACE_MIN, &s), 6);
	assert_true(has(f, "a", "escalate+3d", AUD_SECRETARIAT, CH_EMAIL));
	assert_true(has(f, "c", "escalate+3d", AUD_SECRETARIAT, CH_EMAIL));
	assert_true(has(f, "b", "escalate+3d", AUD_HEAD, CH_EMAIL));
	assert_true(has(f, "a", "escalate+3d", AUD_UNIT, CH_WEBHOOK));
	assert_int_equal(count(f, "1"), 10);
}

static void test_catch_up_past_until(void **state)
{
	struct fx *f = *state;
	tstamp s = 0;

	/* down from 03-15 to after due + 30d: +3d was missed, but the
	 * occurrence is past `until` by now: nothing is sent */
	set_last(f, at(f, "2024-03-15T00:00"));
	assert_int_equal(scan(f->a.conf, f->a.db, 0, at(f, "2024-04-13T08:00"),
			      GRACE_MIN, &s), 0);
	assert_int_equal(count(f, "1"), 0);
	/* nothing queued, nothing committed */
	assert_int_equal(s, at(f, "2024-04-13T08:00"));
	assert_int_equal(get_last(f), at(f, "2024-03-15T00:00"));

	/* one day earlier it is not past `until`: the latest missed goes */
	s = 0;
	set_last(f, at(f, "2024-03-15T00:00"));
	assert_int_equal(scan(f->a.conf, f->a.db, 0, at(f, "2024-04-12T08:00"),
			      GRACE_MIN, &s), 6);
	assert_true(has(f, "c", "escalate+3d", AUD_SECRETARIAT, CH_EMAIL));
}

static void test_submitted_pair(void **state)
{
	struct fx *f = *state;
	tstamp step = at(f, "2024-03-12T08:00"), s = 0;

	assert_int_equal(db_sub_record(f->a.db, OCC, "a", step - 86400, "cli",
				       NULL, step - 86400), 0);
	set_last(f, step - 1);
	assert_int_equal(scan(f->a.conf, f->a.db, 0, step, GRACE_MIN, &s), 2);
	assert_false(has(f, "a", "remind-1d", AUD_UNIT, CH_EMAIL));
	assert_false(has(f, "a", "remind-1d", AUD_UNIT, CH_WEBHOOK));
	assert_true(has(f, "b", "remind-1d", AUD_UNIT, CH_EMAIL));
	assert_true(has(f, "c", "remind-1d", AUD_UNIT, CH_EMAIL));
}

static void test_next_step(void **state)
{
	struct fx *f = *state;
	tstamp t = 0;

	assert_int_equal(next_step(f->a.conf, f->a.db, at(f, "2024-03-01T00:00"), &t), 0);
	assert_int_equal(t, at(f, "2024-03-06T08:00"));
	assert_int_equal(next_step(f->a.conf, f->a.db, at(f, "2024-03-06T08:00"), &t), 0);
	assert_int_equal(t, at(f, "2024-03-10T08:00"));
	assert_int_equal(next_step(f->a.conf, f->a.db, at(f, "2024-03-14T08:00"), &t), 0);
	assert_int_equal(t, at(f, "2024-03-16T08:00"));
	/* a one-off cycle: nothing after its last step */
	assert_int_equal(next_step(f->a.conf, f->a.db, at(f, "2024-03-16T08:00"), &t), 1);
}

static void test_replan_cancels(void **state)
{
	struct fx *f = *state;
	tstamp step = at(f, "2024-03-06T08:00"), s = 0;
	struct notice z;
	struct engine *e;
	enum outbox_state st;

	set_last(f, step - 60);
	assert_int_equal(scan(f->a.conf, f->a.db, 0, step, GRACE_MIN, &s), 4);
	/* rows the configuration no longer explains */
	memset(&z, 0, sizeof(z));
	snprintf(z.occurrence, sizeof(z.occurrence), "%s", OCC);
	snprintf(z.unit, sizeof(z.unit), "zz");
	snprintf(z.step, sizeof(z.step), "remind-7d");
	z.aud = AUD_UNIT;
	z.ch = CH_EMAIL;
	z.recipients = "zz@example.vn";
	z.send_at = step;
	snprintf(z.message_id, sizeof(z.message_id), "<z@x>");
	assert_int_equal(outbox_add(f->a.db, &z, step), 1);
	snprintf(z.unit, sizeof(z.unit), "c");
	snprintf(z.step, sizeof(z.step), "remind-5d");
	assert_int_equal(outbox_add(f->a.db, &z, step), 1);
	snprintf(z.step, sizeof(z.step), "remind-7d");
	snprintf(z.occurrence, sizeof(z.occurrence), "q1/2024-03-14");
	assert_int_equal(outbox_add(f->a.db, &z, step), 1);
	/* and b's report arrives */
	assert_int_equal(db_sub_record(f->a.db, OCC, "b", step + 60, "cli",
				       NULL, step + 60), 0);

	f->a.loop = ev_loop_new(EVFLAG_AUTO);
	clock_init(&f->a.clk, true, step + 120, 1.0);
	e = engine_start(&f->a);
	assert_non_null(e);
	engine_replan(e);
	assert_true(ev_is_active(&e->wake));
	engine_stop(e);
	ev_loop_destroy(f->a.loop);

	assert_int_equal(outbox_get(f->a.db, OCC, "b", "remind-7d", AUD_UNIT,
				    CH_EMAIL, NULL, &st), 0);
	assert_int_equal(st, OUTBOX_CANCELLED);
	assert_int_equal(count(f, "state = 'cancelled' AND unit = 'zz' AND "
			       "last_error = 'unit removed'"), 1);
	assert_int_equal(count(f, "state = 'cancelled' AND step = 'remind-5d'"),
			 1);
	assert_int_equal(count(f, "state = 'cancelled' AND "
			       "occurrence = 'q1/2024-03-14'"), 1);
	assert_int_equal(count(f, "state = 'pending'"), 3);
	assert_true(has(f, "a", "remind-7d", AUD_UNIT, CH_WEBHOOK));
	assert_int_equal(outbox_get(f->a.db, OCC, "a", "remind-7d", AUD_UNIT,
				    CH_WEBHOOK, NULL, &st), 0);
	assert_int_equal(st, OUTBOX_PENDING);
}

static void test_clock_real_at(void **state)
{
	struct clock c;
	double speeds[] = { 1.0, 60.0, 3600.0, 1e6 };

	(void)state;
	/* the wake-up instant of virtual t, read back by the clock's own
	 * formula, is t (never t - 1: the scan would miss the step) */
	for (size_t i = 0; i < sizeof(speeds) / sizeof(speeds[0]); i++) {
		tstamp v0 = 1709690340, t = v0 + 86400 * 4 + 7;   /* days on */
		double real;

		clock_init(&c, true, v0, speeds[i]);
		real = clock_real_at(&c, t);
		assert_true(real > c.real0);
		tstamp back = c.virt0 + (tstamp)((real - c.real0) * c.speed);

		if (speeds[i] <= 3600.0)
			assert_int_equal(back, t);
		else
			assert_true(back >= t - 1 && back <= t + 1);
	}
	clock_init(&c, false, 0, 1.0);
	assert_true(clock_real_at(&c, 1709690340) == 1709690340.5);
}

static void test_grace(void **state)
{
	struct clock c;

	(void)state;
	clock_init(&c, false, 0, 1.0);
	assert_int_equal(grace_for(&c), GRACE_MIN);
	clock_init(&c, true, 0, 3600.0);
	assert_int_equal(grace_for(&c), 36000);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_first_start, setup, teardown),
		cmocka_unit_test_setup_teardown(test_first_start_fake_clock, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_on_time, setup, teardown),
		cmocka_unit_test_setup_teardown(test_catch_up, setup, teardown),
		cmocka_unit_test_setup_teardown(test_catch_up_past_until, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_submitted_pair, setup, teardown),
		cmocka_unit_test_setup_teardown(test_next_step, setup, teardown),
		cmocka_unit_test_setup_teardown(test_replan_cancels, setup, teardown),
		cmocka_unit_test(test_grace),
		cmocka_unit_test(test_clock_real_at),
	};

	log_init("test_engine", 0);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
