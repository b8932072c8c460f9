/* test_sched_regime.c - the regime's life cycle in the schedule engine
 * (0.2): the Decree 09 period presets, send_days, since, rrule without
 * start, and the matching rule for moved due dates.  Configurations are
 * parsed from text as an admin writes them, with the shipped holidays. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cutoffd.h"

static tstamp
hcm(int y, int m, int d, int hh, int mm)
{
	return days_from_civil(y, m, d) * 86400 + hh * 3600 + mm * 60 - 7 * 3600;
}

static const char *
shipped(void)
{
	static const char *paths[] = {
		"conf/holidays-vn.ics", "../conf/holidays-vn.ics",
		"../../conf/holidays-vn.ics",
	};

	for (size_t i = 0; i < 3; i++)
		if (access(paths[i], R_OK) == 0)
			return paths[i];
	return paths[0];
}

#define HEAD \
	"[daemon]\n" \
	"timezone = Asia/Ho_Chi_Minh\n" \
	"%s" \
	"[secretariat]\n" \
	"name = Thường trực\n" \
	"email = tt@example.vn\n" \
	"chief = chief@example.vn\n" \
	"[policy p]\n" \
	"at = 08:00\n" \
	"remind = -7d -3d -1d 0d\n" \
	"escalate = +1d head, +3d head secretariat, +7d chief\n" \
	"quiet = 18:00-07:30\n" \
	"%s" \
	"[unit a]\n" \
	"name = Phòng A\n" \
	"email = a@example.vn\n" \
	"head = head.a@example.vn\n"

/* HEAD with daemon and policy extras, then the cycles */
static struct conf *
load(const char *daemon, const char *policy, const char *cycles,
     struct diag *d)
{
	struct buf b;
	struct conf *c;

	buf_init(&b);
	buf_printf(&b, HEAD, daemon, policy);
	buf_puts(&b, cycles);
	diag_init(d);
	c = conf_parse("t.conf", buf_str(&b), b.len, CONF_NO_FILES, d);
	buf_free(&b);
	return c;
}

static struct conf *
load_ok(const char *daemon, const char *policy, const char *cycles)
{
	struct diag d;
	struct conf *c = load(daemon, policy, cycles, &d);

	diag_print(&d, stderr);
	assert_non_null(c);
	assert_int_equal(holidays_load(shipped(), &c->hol, &d), 0);
	diag_free(&d);
	return c;
}

static void
assert_ymd(struct ymd d, const char *want)
{
	char got[16];

	snprintf(got, sizeof(got), "%04d-%02d-%02d", d.y, d.m, d.d);
	assert_string_equal(got, want);
}

static void
assert_period(const struct conf *c, const char *id, const char *from,
	      const char *to)
{
	struct occ o;

	assert_int_equal(sched_occurrence(c, id, &o), 0);
	if (from == NULL) {
		assert_false(o.has_period);
		return;
	}
	assert_true(o.has_period);
	assert_ymd(o.period_from, from);
	assert_ymd(o.period_to, to);
}

/* ---------------------------------------------------------- periods */

static void
test_presets(void **state)
{
	struct conf *c;

	(void)state;
	c = load_ok("", "",
		"[cycle q]\ntitle = Quý\ndue = 03-01, 06-01, 09-01, 12-01\n"
		"period = quarter\n"
		"[cycle q13]\ntitle = Quý I\ndue = 03-13\nperiod = quarter\n"
		"[cycle h]\ntitle = 6 tháng\ndue = 06-01\nperiod = half\n"
		"[cycle h2]\ntitle = 6 tháng cuối\ndue = 11-15\nperiod = half\n"
		"[cycle n]\ntitle = 9 tháng\ndue = 09-01\nperiod = nine-months\n"
		"[cycle y]\ntitle = Năm\ndue = 12-01\nperiod = year\n"
		"[cycle m]\ntitle = Tháng\nrrule = FREQ=MONTHLY;BYMONTHDAY=20\n"
		"start = 2024-01-01\nperiod = month\n"
		"[cycle m1]\ntitle = Tháng\ndue = 03-01\nperiod = month\n"
		"[cycle none]\ntitle = Không\ndue = 03-13\nperiod = none\n"
		"[cycle dflt]\ntitle = Mặc định\ndue = 03-13\n"
		"[cycle once]\ntitle = Kế hoạch\ndue = 2023-08-15\n");
	/* the contract's example: quarter I due 01/03 or 13/03 */
	assert_period(c, "q/2024-03-01", "2023-12-15", "2024-03-14");
	assert_period(c, "q13/2024-03-13", "2023-12-15", "2024-03-14");
	assert_period(c, "q/2024-06-01", "2024-03-15", "2024-06-14");
	assert_period(c, "q/2024-09-01", "2024-06-15", "2024-09-14");
	assert_period(c, "q/2025-12-01", "2025-09-15", "2025-12-14");
	/* cumulative from 15/12 of the year before */
	assert_period(c, "h/2024-06-01", "2023-12-15", "2024-06-14");
	assert_period(c, "h2/2024-11-15", "2024-06-15", "2024-12-14");
	assert_period(c, "n/2024-09-01", "2023-12-15", "2024-09-14");
	assert_period(c, "y/2024-12-01", "2023-12-15", "2024-12-14");
	assert_period(c, "y/2026-12-01", "2025-12-15", "2026-12-14");
	/* monthly: 15th of the previous month .. 14th; the first occurrence
	 * of the rule gets a whole period too */
	assert_period(c, "m/2024-01-20", "2023-12-15", "2024-01-14");
	assert_period(c, "m/2024-03-20", "2024-02-15", "2024-03-14");
	assert_period(c, "m1/2024-03-01", "2024-02-15", "2024-03-14");
	/* none, and no period key: no data period at all (0.1 defaulted to
	 * `previous`: q1 got 02/03/2023 .. 01/03/2024 in a regime of four
	 * cycles); a one-off plan has none either */
	assert_period(c, "none/2024-03-13", NULL, NULL);
	assert_period(c, "dflt/2024-03-13", NULL, NULL);
	assert_period(c, "once/2023-08-15", NULL, NULL);
	conf_free(c);
}

static void
test_period_errors(void **state)
{
	struct diag d;
	struct conf *c;

	(void)state;
	c = load("", "", "[cycle q]\ntitle = Q\ndue = 03-13\n"
		 "period = quaterly\n", &d);
	assert_null(c);
	assert_true(d.n >= 1);
	assert_non_null(strstr(d.msg[0], "t.conf:19:"));
	assert_non_null(strstr(d.msg[0], "quarter"));
	diag_free(&d);
}

/* ------------------------------------------------------- send_days */

struct rows {
	struct buf b;
	const struct conf *c;
};

static int
collect(void *ctx, const struct plan_row *r)
{
	struct rows *rs = ctx;
	char iso[17];

	if (r->aud != AUD_UNIT && r->aud != AUD_HEAD &&
	    r->aud != AUD_SECRETARIAT && r->aud != AUD_CHIEF)
		return 0;
	tz_format_iso(rs->c->tz, r->at, iso);
	buf_printf(&rs->b, "%s %s %s %s\n", iso, r->occ->id, r->step->name,
		   audience_name(r->aud));
	return 0;
}

static char *
plan_text(const struct conf *c, tstamp from, tstamp to)
{
	struct rows rs = { .c = c };

	buf_init(&rs.b);
	assert_int_equal(sched_plan(c, from, to, NULL, NULL, NULL, collect,
				    &rs), 0);
	buf_puts(&rs.b, "");
	return buf_steal(&rs.b);
}

static void
test_send_days(void **state)
{
	struct conf *c;
	char *t;

	(void)state;
	c = load_ok("", "",
		    "[cycle q1]\ntitle = Quý I\ndue = 03-13\nperiod = quarter\n"
		    "[cycle q3]\ntitle = Quý III\ndue = 09-01\nperiod = quarter\n");
	c->daemon.since_day = INT64_MIN;
	/* q1/2024: -3d is Sunday 10/03 -> Friday 08/03 (before the due
	 * date: the working day before); +3d is Saturday 16/03 -> Monday
	 * 18/03, where +7d is not (Wednesday 20/03) */
	t = plan_text(c, hcm(2024, 3, 1, 0, 0), hcm(2024, 3, 21, 0, 0));
	assert_string_equal(t,
		"2024-03-06T08:00 q1/2024-03-13 remind-7d unit\n"
		"2024-03-08T08:00 q1/2024-03-13 remind-3d unit\n"
		"2024-03-12T08:00 q1/2024-03-13 remind-1d unit\n"
		"2024-03-13T08:00 q1/2024-03-13 remind+0d unit\n"
		"2024-03-14T08:00 q1/2024-03-13 escalate+1d head\n"
		"2024-03-18T08:00 q1/2024-03-13 escalate+3d head\n"
		"2024-03-18T08:00 q1/2024-03-13 escalate+3d secretariat\n"
		"2024-03-20T08:00 q1/2024-03-13 escalate+7d chief\n");
	free(t);
	/* q3 due Sunday 01/09/2024, in National Day (31/8-3/9): due
	 * Wednesday 04/09; -3d (01/09) and -1d (03/09) both go out on
	 * Friday 30/08: one notice, -1d; -7d is Wednesday 28/08 */
	t = plan_text(c, hcm(2024, 8, 20, 0, 0), hcm(2024, 9, 6, 0, 0));
	assert_string_equal(t,
		"2024-08-28T08:00 q3/2024-09-01 remind-7d unit\n"
		"2024-08-30T08:00 q3/2024-09-01 remind-1d unit\n"
		"2024-09-04T08:00 q3/2024-09-01 remind+0d unit\n"
		"2024-09-05T08:00 q3/2024-09-01 escalate+1d head\n");
	free(t);
	conf_free(c);

	/* send_days = all: the 0.1 behaviour, Sunday 10/03 */
	c = load_ok("", "send_days = all\n",
		    "[cycle q1]\ntitle = Quý I\ndue = 03-13\n");
	t = plan_text(c, hcm(2024, 3, 10, 0, 0), hcm(2024, 3, 11, 0, 0));
	assert_string_equal(t, "2024-03-10T08:00 q1/2024-03-13 remind-3d unit\n");
	free(t);
	conf_free(c);
}

static void
test_hold(void **state)
{
	struct conf *c;
	const struct policy *p;

	(void)state;
	c = load_ok("", "", "[cycle q1]\ntitle = Quý I\ndue = 03-13\n");
	p = &c->policies[0];
	/* inside quiet (18:00-07:30): the window's end */
	assert_int_equal(sched_hold(c, p, hcm(2024, 6, 4, 19, 2)),
			 hcm(2024, 6, 5, 7, 30));
	assert_int_equal(sched_hold(c, p, hcm(2024, 6, 4, 6, 0)),
			 hcm(2024, 6, 4, 7, 30));
	/* outside: at once */
	assert_int_equal(sched_hold(c, p, hcm(2024, 6, 4, 10, 0)),
			 hcm(2024, 6, 4, 10, 0));
	/* Friday evening: not Saturday 07:30 but Monday at the send time */
	assert_int_equal(sched_hold(c, p, hcm(2024, 3, 8, 19, 0)),
			 hcm(2024, 3, 11, 8, 0));
	/* a holiday (Hùng Kings, Thursday 18/04/2024) */
	assert_int_equal(sched_hold(c, p, hcm(2024, 4, 18, 9, 0)),
			 hcm(2024, 4, 19, 8, 0));
	assert_int_equal(sched_hold(c, NULL, 5), 5);
	conf_free(c);
}

/* ------------------------------------------------------------ since */

static size_t
count_occ(const struct conf *c, tstamp from, tstamp to, const char *id)
{
	struct occ *o = NULL;
	size_t n = 0, hits = 0;

	assert_int_equal(sched_occurrences(c, from, to, &o, &n), 0);
	for (size_t i = 0; i < n; i++)
		if (id == NULL || strcmp(o[i].id, id) == 0)
			hits++;
	free(o);
	return hits;
}

static void
test_since(void **state)
{
	struct conf *c;
	char *t;
	const char *cycles =
		"[cycle q1]\ntitle = Quý I\ndue = 03-13\n"
		"[cycle y]\ntitle = Năm\ndue = 12-13\n";

	(void)state;
	/* a fresh install started on 02/01/2024 (the store's first day) */
	c = load_ok("", "", cycles);
	conf_apply_state(c, days_from_civil(2024, 1, 2),
			 days_from_civil(2024, 1, 2), NULL, 0);
	/* no chief escalations for y/2023-12-13 on 04/01 .. 10/01 */
	t = plan_text(c, hcm(2024, 1, 2, 0, 0), hcm(2024, 2, 1, 0, 0));
	assert_string_equal(t, "");
	free(t);
	/* 2022-2023 are not listed; 2024 is */
	assert_int_equal(count_occ(c, hcm(2022, 1, 1, 0, 0),
				   hcm(2024, 1, 2, 0, 0), NULL), 0);
	assert_int_equal(count_occ(c, hcm(2022, 1, 1, 0, 0),
				   hcm(2025, 1, 1, 0, 0), NULL), 2);
	assert_int_equal(count_occ(c, hcm(2022, 1, 1, 0, 0),
				   hcm(2025, 1, 1, 0, 0), "q1/2024-03-13"), 1);
	conf_free(c);

	/* since in the file wins over the store's first day; a due date
	 * shifted onto since counts (y/2023-12-13 is due then) */
	c = load_ok("since = 2023-12-13\n", "", cycles);
	conf_apply_state(c, days_from_civil(2024, 1, 2),
			 days_from_civil(2024, 1, 2), NULL, 0);
	assert_int_equal(c->daemon.since_day, days_from_civil(2023, 12, 13));
	assert_int_equal(count_occ(c, hcm(2023, 1, 1, 0, 0),
				   hcm(2024, 1, 1, 0, 0), "y/2023-12-13"), 1);
	assert_int_equal(count_occ(c, hcm(2023, 1, 1, 0, 0),
				   hcm(2024, 1, 1, 0, 0), NULL), 1);
	conf_free(c);
}

static void
test_since_errors(void **state)
{
	struct diag d;
	struct conf *c;

	(void)state;
	c = load("since = 02/01/2024\n", "", "[cycle q]\ntitle = Q\n"
		 "due = 03-13\n", &d);
	assert_null(c);
	assert_non_null(strstr(d.msg[0], "t.conf:3:"));
	assert_non_null(strstr(d.msg[0], "YYYY-MM-DD"));
	diag_free(&d);
}

/* ------------------------------------------------- rrule without start */

static void
test_rrule_without_start(void **state)
{
	struct diag d;
	struct conf *c;
	struct occ *o = NULL;
	size_t n = 0;

	(void)state;
	c = load_ok("", "", "[cycle m]\ntitle = Tháng\n"
		    "rrule = FREQ=MONTHLY;BYMONTHDAY=20\n");
	/* counts from since */
	conf_apply_state(c, days_from_civil(2024, 3, 5),
			 days_from_civil(2024, 3, 5), NULL, 0);
	assert_int_equal(sched_occurrences(c, hcm(2024, 1, 1, 0, 0),
					   hcm(2024, 7, 1, 0, 0), &o, &n), 0);
	assert_int_equal(n, 4);
	assert_string_equal(o[0].id, "m/2024-03-20");
	assert_string_equal(o[3].id, "m/2024-06-20");
	/* 20/04/2024 is a Saturday */
	assert_ymd(o[1].due, "2024-04-22");
	free(o);
	conf_free(c);

	/* weekly with BYDAY, yearly with BYMONTH and BYMONTHDAY: fine */
	c = load_ok("since = 2024-01-01\n", "",
		    "[cycle w]\ntitle = Tuần\nrrule = FREQ=WEEKLY;BYDAY=FR\n"
		    "[cycle y]\ntitle = Năm\n"
		    "rrule = FREQ=YEARLY;BYMONTH=6;BYMONTHDAY=15\n");
	assert_int_equal(count_occ(c, hcm(2024, 1, 1, 0, 0),
				   hcm(2024, 2, 1, 0, 0), NULL), 4);
	assert_int_equal(count_occ(c, hcm(2024, 1, 1, 0, 0),
				   hcm(2027, 1, 1, 0, 0), "y/2025-06-15"), 1);
	conf_free(c);

	/* INTERVAL, COUNT and a rule that takes its day from the start need
	 * start, with FILE:LINE */
	c = load("", "", "[cycle m]\ntitle = Hai tháng\n"
		 "rrule = FREQ=MONTHLY;INTERVAL=2;BYMONTHDAY=20\n", &d);
	assert_null(c);
	assert_non_null(strstr(d.msg[0], "t.conf:18: rrule: needs start"));
	assert_non_null(strstr(d.msg[0], "INTERVAL"));
	diag_free(&d);
	c = load("", "", "[cycle m]\ntitle = Ba lần\n"
		 "rrule = FREQ=MONTHLY;COUNT=3;BYMONTHDAY=20\n", &d);
	assert_null(c);
	assert_non_null(strstr(d.msg[0], "t.conf:18: rrule: needs start"));
	assert_non_null(strstr(d.msg[0], "COUNT"));
	diag_free(&d);
	c = load("", "", "[cycle m]\ntitle = Tháng\nrrule = FREQ=MONTHLY\n", &d);
	assert_null(c);
	assert_non_null(strstr(d.msg[0], "t.conf:18: rrule: needs start"));
	diag_free(&d);
}

/* ------------------------------------------------ moved due dates */

static void
test_moves(void **state)
{
	struct conf *c;
	struct occ_move *mv = NULL;
	struct occ o;
	size_t n = 0;
	char *ids[] = {
		"gone/2024-03-13",         /* its cycle was removed */
		"m/2024-02-05",            /* monthly 05 -> 28: same month */
		"m/2024-03-05",
		"q1/2023-03-13",           /* 13/03 -> 15/03, every year */
		"q1/2024-03-13",
		"q3/2024-09-13",           /* unchanged */
		"y/2024-12-13",            /* y now 06-30: too far, vanishes */
	};
	struct occ_alias al[] = {
		{ "q1/2024-03-13", "q1/2024-03-15" },
	};

	(void)state;
	c = load_ok("", "",
		    "[cycle q1]\ntitle = Quý I\ndue = 03-15\n"
		    "[cycle q3]\ntitle = Quý III\ndue = 09-13\n"
		    "[cycle y]\ntitle = Năm\ndue = 06-30\n"
		    "[cycle m]\ntitle = Tháng\ndue = 01-28, 02-28, 03-28, 04-28\n");
	assert_int_equal(sched_moves(c, ids, sizeof ids / sizeof ids[0], &mv,
				     &n), 0);
	assert_int_equal(n, 6);
	assert_string_equal(mv[0].from, "gone/2024-03-13");
	assert_string_equal(mv[0].to, "");
	assert_non_null(strstr(mv[0].why, "cycle"));
	assert_string_equal(mv[1].from, "m/2024-02-05");
	assert_string_equal(mv[1].to, "m/2024-02-28");
	assert_string_equal(mv[2].from, "m/2024-03-05");
	assert_string_equal(mv[2].to, "m/2024-03-28");
	assert_string_equal(mv[3].from, "q1/2023-03-13");
	assert_string_equal(mv[3].to, "q1/2023-03-15");
	assert_string_equal(mv[4].from, "q1/2024-03-13");
	assert_string_equal(mv[4].to, "q1/2024-03-15");
	assert_string_equal(mv[5].from, "y/2024-12-13");
	assert_string_equal(mv[5].to, "");
	free(mv);

	/* a date that has state of its own inherits nothing */
	{
		char *ids2[] = { "q1/2024-03-13", "q1/2024-03-15" };

		assert_int_equal(sched_moves(c, ids2, 2, &mv, &n), 0);
		assert_int_equal(n, 1);
		assert_string_equal(mv[0].to, "");
		free(mv);
	}

	/* the old id resolves to the new occurrence once the move is
	 * recorded, and is then no longer reported */
	assert_int_equal(sched_occurrence(c, "q1/2024-03-13", &o), -1);
	conf_apply_state(c, INT64_MIN, days_from_civil(2024, 3, 1), al, 1);
	assert_int_equal(sched_occurrence(c, "q1/2024-03-13", &o), 0);
	assert_string_equal(o.id, "q1/2024-03-15");
	assert_ymd(o.due, "2024-03-15");
	assert_int_equal(sched_occurrence(c, "q1/2025-03-13", &o), -1);
	{
		char *ids3[] = { "q1/2024-03-13" };

		assert_int_equal(sched_moves(c, ids3, 1, &mv, &n), 0);
		assert_int_equal(n, 0);
		free(mv);
	}
	conf_free(c);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_presets),
		cmocka_unit_test(test_period_errors),
		cmocka_unit_test(test_send_days),
		cmocka_unit_test(test_hold),
		cmocka_unit_test(test_since),
		cmocka_unit_test(test_since_errors),
		cmocka_unit_test(test_rrule_without_start),
		cmocka_unit_test(test_moves),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
