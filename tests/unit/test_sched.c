/* test_sched.c - the schedule engine on hand-built configurations, with the
 * shipped Vietnamese holidays, in Asia/Ho_Chi_Minh (UTC+7, no DST) unless a
 * test says otherwise. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cutoffd.h"

#define DAYS(n) ((int64_t)(n) * 86400)

/* local wall time in Ho Chi Minh City, computed without tz.c */
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

/* ------------------------------------------------------ the city fixture */

static struct step city_remind[] = {
	{ -7, AUD_UNIT }, { -3, AUD_UNIT }, { -1, AUD_UNIT }, { 0, AUD_UNIT },
};
static struct step city_escalate[] = {
	{ 1, AUD_HEAD }, { 3, AUD_HEAD | AUD_SECRETARIAT }, { 7, AUD_CHIEF },
};
static char *em_ld[] = { "ldtbxh@example.vn" };
static char *em_tp[] = { "tuphap@example.vn" };
static char *em_tl[] = { "bcd.tanloi@example.vn" };
static char *em_mt[] = { "mttq@example.vn", "vanphong.mttq@example.vn" };
static size_t all4[] = { 0, 1, 2, 3 };

struct fx {
	struct conf c;
	struct policy pol[2];
	struct cycle cyc[8];
	struct unit units[4];
	struct md md[8];
};

static void
fx_init(struct fx *f, const char *zone, bool holidays)
{
	struct diag d;
	static const struct md dues[4] = { { 3, 13 }, { 6, 13 }, { 9, 13 }, { 12, 13 } };
	static const struct md froms[4] = { { 12, 15 }, { 12, 15 }, { 6, 13 }, { 12, 15 } };
	static char *ids[4] = { "q1", "h1", "q3", "y" };

	memset(f, 0, sizeof(*f));
	f->c.tz = tz_load(zone);
	assert_non_null(f->c.tz);
	f->c.daemon.workdays = 0x3e;     /* mon-fri */
	if (holidays) {
		diag_init(&d);
		assert_int_equal(holidays_load(shipped(), &f->c.hol, &d), 0);
		diag_free(&d);
	}
	f->c.secretariat.email = "thuongtruc@example.vn";
	f->c.secretariat.chief = "truongban@example.vn";

	f->pol[0] = (struct policy){
		.id = "standard", .at = 8 * 60,
		.remind = city_remind, .nremind = 4,
		.escalate = city_escalate, .nescalate = 3,
		.repeat = DAYS(3), .until = DAYS(30),
		.quiet_from = 18 * 60, .quiet_to = 7 * 60 + 30,
		.shift = SHIFT_NEXT,
		/* the 0.1 behaviour; send_days = workdays has its own tests */
		.send_all_days = true,
	};
	f->c.daemon.since_day = INT64_MIN;
	/* conf order is not id order: the plan must sort */
	f->units[0] = (struct unit){ .id = "ld-tbxh", .email = em_ld, .nemail = 1,
				     .head = "truongphong.ldtbxh@example.vn" };
	f->units[1] = (struct unit){ .id = "tu-phap", .email = em_tp, .nemail = 1,
				     .head = "truongphong.tuphap@example.vn" };
	f->units[2] = (struct unit){ .id = "p-tan-loi", .email = em_tl, .nemail = 1,
				     .head = "chutich.tanloi@example.vn",
				     .webhook = "http://127.0.0.1:8471/hooks/tan-loi" };
	f->units[3] = (struct unit){ .id = "mttq", .email = em_mt, .nemail = 2,
				     .head = NULL };
	f->c.units = f->units;
	f->c.nunits = 4;
	for (int i = 0; i < 4; i++) {
		f->md[i] = dues[i];
		f->cyc[i] = (struct cycle){
			.id = ids[i], .yearly = &f->md[i], .nyearly = 1,
			.period_fixed = true, .period_from = froms[i],
			.period_to = dues[i], .due_minute = 1440,
			.policy = &f->pol[0], .units = all4, .nunits = 4,
		};
	}
	f->c.cycles = f->cyc;
	f->c.ncycles = 4;
	f->c.policies = f->pol;
	f->c.npolicies = 1;
}

static void
fx_free(struct fx *f)
{
	tz_free(f->c.tz);
	holidays_free(&f->c.hol);
}

static int
setup(void **state)
{
	struct fx *f = calloc(1, sizeof(*f));

	if (f == NULL)
		return -1;
	fx_init(f, "Asia/Ho_Chi_Minh", true);
	*state = f;
	return 0;
}

static int
teardown(void **state)
{
	fx_free(*state);
	free(*state);
	return 0;
}

static void
assert_ymd(struct ymd d, int y, int m, int dd)
{
	char got[16], want[16];

	snprintf(got, sizeof(got), "%04d-%02d-%02d", d.y, d.m, d.d);
	snprintf(want, sizeof(want), "%04d-%02d-%02d", y, m, dd);
	assert_string_equal(got, want);
}

/* ------------------------------------------------------------ occurrences */

static void
test_city_due_dates(void **state)
{
	struct fx *f = *state;
	static const struct {
		const char *id;
		int y, m, d;
	} want[] = {
		{ "q1/2024-03-13", 2024, 3, 13 },  /* Wed */
		{ "h1/2024-06-13", 2024, 6, 13 },  /* Thu */
		{ "q3/2024-09-13", 2024, 9, 13 },  /* Fri */
		{ "y/2024-12-13", 2024, 12, 13 },  /* Fri */
		{ "q1/2025-03-13", 2025, 3, 13 },  /* Thu */
		{ "h1/2025-06-13", 2025, 6, 13 },  /* Fri */
		{ "q3/2025-09-13", 2025, 9, 15 },  /* Sat -> Mon */
		{ "y/2025-12-13", 2025, 12, 15 },  /* Sat -> Mon */
		{ "q1/2026-03-13", 2026, 3, 13 },  /* Fri */
		{ "h1/2026-06-13", 2026, 6, 15 },  /* Sat -> Mon */
		{ "q3/2026-09-13", 2026, 9, 14 },  /* Sun -> Mon */
		{ "y/2026-12-13", 2026, 12, 14 },  /* Sun -> Mon */
	};
	struct occ *o = NULL;
	size_t n = 0;

	assert_int_equal(sched_occurrences(&f->c, hcm(2024, 1, 1, 0, 0),
					   hcm(2027, 1, 1, 0, 0), &o, &n), 0);
	assert_int_equal(n, 12);
	for (size_t i = 0; i < n; i++) {
		assert_string_equal(o[i].id, want[i].id);
		assert_ymd(o[i].due, want[i].y, want[i].m, want[i].d);
		/* end of the due day = the next local midnight */
		assert_int_equal(o[i].due_at, hcm(want[i].y, want[i].m, want[i].d, 24, 0));
		assert_true(o[i].has_period);
	}
	assert_ymd(o[6].nominal, 2025, 9, 13);
	free(o);

	/* the window is on due_at: [from, to) */
	assert_int_equal(sched_occurrences(&f->c, hcm(2024, 3, 14, 0, 0),
					   hcm(2024, 6, 14, 0, 0), &o, &n), 0);
	assert_int_equal(n, 1);
	assert_string_equal(o[0].id, "q1/2024-03-13");
	free(o);
	assert_int_equal(sched_occurrences(&f->c, hcm(2024, 3, 14, 0, 0) + 1,
					   hcm(2024, 6, 14, 0, 0) + 1, &o, &n), 0);
	assert_int_equal(n, 1);
	assert_string_equal(o[0].id, "h1/2024-06-13");
	free(o);
	assert_int_equal(sched_occurrences(&f->c, 10, 5, &o, &n), 0);
	assert_int_equal(n, 0);
	free(o);
}

static void
test_periods_and_lookup(void **state)
{
	struct fx *f = *state;
	struct occ o;

	assert_int_equal(sched_occurrence(&f->c, "q1/2024-03-13", &o), 0);
	assert_string_equal(o.id, "q1/2024-03-13");
	assert_ptr_equal(o.cycle, &f->cyc[0]);
	assert_true(o.has_period);
	assert_ymd(o.period_from, 2023, 12, 15);
	assert_ymd(o.period_to, 2024, 3, 13);
	assert_int_equal(sched_occurrence(&f->c, "h1/2024-06-13", &o), 0);
	assert_ymd(o.period_from, 2023, 12, 15);
	assert_ymd(o.period_to, 2024, 6, 13);
	assert_int_equal(sched_occurrence(&f->c, "q3/2024-09-13", &o), 0);
	assert_ymd(o.period_from, 2024, 6, 13);
	assert_ymd(o.period_to, 2024, 9, 13);
	assert_int_equal(sched_occurrence(&f->c, "y/2024-12-13", &o), 0);
	assert_ymd(o.period_from, 2023, 12, 15);
	assert_ymd(o.period_to, 2024, 12, 13);
	/* the id is the nominal date; the due date moved */
	assert_int_equal(sched_occurrence(&f->c, "y/2026-12-13", &o), 0);
	assert_ymd(o.nominal, 2026, 12, 13);
	assert_ymd(o.due, 2026, 12, 14);
	assert_ymd(o.period_from, 2025, 12, 15);

	memset(&o, 0x5a, sizeof(o));
	assert_int_equal(sched_occurrence(&f->c, "q1/2024-03-14", &o), -1);
	assert_int_equal(sched_occurrence(&f->c, "y/2026-12-14", &o), -1);
	assert_int_equal(sched_occurrence(&f->c, "zz/2024-03-13", &o), -1);
	assert_int_equal(sched_occurrence(&f->c, "q1/2024-3-13", &o), -1);
	assert_int_equal(sched_occurrence(&f->c, "q1/2024-03-13x", &o), -1);
	assert_int_equal(sched_occurrence(&f->c, "q1", &o), -1);
	assert_int_equal(sched_occurrence(&f->c, "/2024-03-13", &o), -1);
	assert_int_equal(sched_occurrence(&f->c, "", &o), -1);
	assert_int_equal(o.due.y, 0x5a5a5a5a);
}

static void
test_once_leap_previous(void **state)
{
	struct fx *f = *state;
	struct ymd once[] = { { 2024, 8, 15 }, { 2024, 1, 10 } };
	struct md leap = { 2, 29 };
	struct md quarters[] = { { 3, 31 }, { 6, 30 }, { 9, 30 }, { 12, 31 } };
	struct cycle *cy = f->cyc;
	struct occ *o = NULL, one;
	size_t n = 0;

	f->c.ncycles = 1;
	cy[0] = (struct cycle){ .id = "plan", .once = once, .nonce = 2,
				.period = PERIOD_PREVIOUS, .due_minute = 17 * 60, .policy = &f->pol[0],
				.units = all4, .nunits = 4 };
	assert_int_equal(sched_occurrences(&f->c, hcm(2020, 1, 1, 0, 0),
					   hcm(2030, 1, 1, 0, 0), &o, &n), 0);
	assert_int_equal(n, 2);
	assert_string_equal(o[0].id, "plan/2024-01-10");
	assert_int_equal(o[0].due_at, hcm(2024, 1, 10, 17, 0));
	assert_false(o[0].has_period);          /* nothing before it */
	assert_string_equal(o[1].id, "plan/2024-08-15");
	assert_true(o[1].has_period);
	assert_ymd(o[1].period_from, 2024, 1, 11);
	assert_ymd(o[1].period_to, 2024, 8, 15);
	free(o);
	assert_int_equal(sched_occurrence(&f->c, "plan/2024-08-15", &one), 0);
	assert_ymd(one.period_from, 2024, 1, 11);
	assert_int_equal(sched_occurrence(&f->c, "plan/2024-01-10", &one), 0);
	assert_false(one.has_period);

	/* 29 February: the last day of February in common years (as for
	 * period ends), never a year without the report */
	cy[0] = (struct cycle){ .id = "leap", .yearly = &leap, .nyearly = 1,
				.period = PERIOD_PREVIOUS, .due_minute = 1440, .policy = &f->pol[0],
				.units = all4, .nunits = 4 };
	assert_int_equal(sched_occurrences(&f->c, hcm(2024, 1, 1, 0, 0),
					   hcm(2027, 1, 1, 0, 0), &o, &n), 0);
	assert_int_equal(n, 3);
	assert_string_equal(o[0].id, "leap/2024-02-29");
	assert_ymd(o[0].due, 2024, 2, 29);
	assert_true(o[0].has_period);
	assert_ymd(o[0].period_from, 2023, 3, 1);
	assert_string_equal(o[1].id, "leap/2025-02-28");
	assert_ymd(o[1].due, 2025, 2, 28);
	assert_ymd(o[1].period_from, 2024, 3, 1);
	assert_ymd(o[1].period_to, 2025, 2, 28);
	assert_string_equal(o[2].id, "leap/2026-02-28");
	free(o);
	assert_int_equal(sched_occurrence(&f->c, "leap/2025-02-28", &one), 0);
	assert_ymd(one.period_from, 2024, 3, 1);
	assert_int_equal(sched_occurrence(&f->c, "leap/2025-02-29", &one), -1);
	assert_int_equal(sched_occurrence(&f->c, "leap/2024-02-28", &one), -1);
	assert_int_equal(sched_occurrence(&f->c, "leap/2028-02-29", &one), 0);
	assert_ymd(one.period_from, 2027, 3, 1);

	/* `previous` over a list of yearly dates */
	cy[0] = (struct cycle){ .id = "qp", .yearly = quarters, .nyearly = 4,
				.period = PERIOD_PREVIOUS, .due_minute = 1440, .policy = &f->pol[0],
				.units = all4, .nunits = 4 };
	assert_int_equal(sched_occurrence(&f->c, "qp/2024-03-31", &one), 0);
	assert_ymd(one.period_from, 2024, 1, 1);
	assert_ymd(one.period_to, 2024, 3, 31);
	assert_ymd(one.due, 2024, 4, 1);        /* Sunday -> Monday */
	assert_int_equal(sched_occurrence(&f->c, "qp/2024-06-30", &one), 0);
	assert_ymd(one.period_from, 2024, 4, 1);
	assert_ymd(one.period_to, 2024, 6, 30);
}

static void
test_rrule(void **state)
{
	struct fx *f = *state;
	struct cycle *cy = f->cyc;
	struct occ *o = NULL, one;
	size_t n = 0;

	f->c.ncycles = 1;
	cy[0] = (struct cycle){ .id = "m", .rrule = "FREQ=MONTHLY;BYMONTHDAY=5",
				.start = { 2024, 1, 5 }, .period = PERIOD_PREVIOUS,
				.due_minute = 1440,
				.policy = &f->pol[0], .units = all4, .nunits = 4 };
	assert_int_equal(sched_occurrences(&f->c, hcm(2023, 1, 1, 0, 0),
					   hcm(2024, 7, 1, 0, 0), &o, &n), 0);
	assert_int_equal(n, 6);
	assert_string_equal(o[0].id, "m/2024-01-05");
	assert_false(o[0].has_period);
	assert_string_equal(o[1].id, "m/2024-02-05");
	assert_ymd(o[1].period_from, 2024, 1, 6);
	assert_ymd(o[1].period_to, 2024, 2, 5);
	/* 2024-05-05 is a Sunday */
	assert_string_equal(o[4].id, "m/2024-05-05");
	assert_ymd(o[4].due, 2024, 5, 6);
	free(o);
	assert_int_equal(sched_occurrence(&f->c, "m/2024-02-05", &one), 0);
	assert_ymd(one.period_from, 2024, 1, 6);
	assert_int_equal(sched_occurrence(&f->c, "m/2024-02-06", &one), -1);
	assert_int_equal(sched_occurrence(&f->c, "m/2023-12-05", &one), -1);

	/* weekly: every 7 days from the start (libical once stepped 6 here) */
	cy[0].rrule = "FREQ=WEEKLY";
	cy[0].start = (struct ymd){ 2023, 2, 17 };      /* a Friday */
	assert_int_equal(sched_occurrences(&f->c, hcm(2023, 2, 1, 0, 0),
					   hcm(2023, 3, 10, 0, 0), &o, &n), 0);
	assert_int_equal(n, 3);
	assert_string_equal(o[0].id, "m/2023-02-17");
	assert_string_equal(o[1].id, "m/2023-02-24");
	assert_string_equal(o[2].id, "m/2023-03-03");
	free(o);
	assert_int_equal(sched_occurrence(&f->c, "m/2023-02-23", &one), -1);

	/* daily with a count: a date each day, then none */
	cy[0].rrule = "FREQ=DAILY;COUNT=3";
	cy[0].start = (struct ymd){ 2024, 6, 3 };       /* Monday */
	assert_int_equal(sched_occurrences(&f->c, hcm(2024, 6, 1, 0, 0),
					   hcm(2024, 7, 1, 0, 0), &o, &n), 0);
	assert_int_equal(n, 3);
	assert_string_equal(o[0].id, "m/2024-06-03");
	assert_string_equal(o[2].id, "m/2024-06-05");
	free(o);
}

static void
test_shift(void **state)
{
	struct fx *f = *state;
	struct md feb10 = { 2, 10 }, feb20 = { 2, 20 };
	struct cycle *cy = f->cyc;
	struct occ o;

	f->c.ncycles = 1;
	cy[0] = (struct cycle){ .id = "t", .yearly = &feb10, .nyearly = 1,
				.due_minute = 1440, .policy = &f->pol[0],
				.units = all4, .nunits = 4 };
	/* Saturday 10/2/2024 inside Tết (8-14/2): Thursday 15/2 */
	assert_int_equal(sched_occurrence(&f->c, "t/2024-02-10", &o), 0);
	assert_ymd(o.due, 2024, 2, 15);
	assert_int_equal(o.due_at, hcm(2024, 2, 16, 0, 0));
	assert_int_equal(sched_occurrence(&f->c, "t/2025-02-10", &o), 0);
	assert_ymd(o.due, 2025, 2, 10);
	f->pol[0].shift = SHIFT_PREV;
	assert_int_equal(sched_occurrence(&f->c, "t/2024-02-10", &o), 0);
	assert_ymd(o.due, 2024, 2, 7);
	f->pol[0].shift = SHIFT_NONE;
	assert_int_equal(sched_occurrence(&f->c, "t/2024-02-10", &o), 0);
	assert_ymd(o.due, 2024, 2, 10);

	/* Tết Bính Ngọ 14-22/2/2026 */
	cy[0].yearly = &feb20;
	f->pol[0].shift = SHIFT_NEXT;
	assert_int_equal(sched_occurrence(&f->c, "t/2026-02-20", &o), 0);
	assert_ymd(o.due, 2026, 2, 23);
	f->pol[0].shift = SHIFT_PREV;
	assert_int_equal(sched_occurrence(&f->c, "t/2026-02-20", &o), 0);
	assert_ymd(o.due, 2026, 2, 13);
	/* no working day at all: the nominal date stands */
	f->c.daemon.workdays = 0;
	f->c.hol.nwork = 0;   /* nor a Saturday worked (10/01/2026 is one) */
	assert_int_equal(sched_occurrence(&f->c, "t/2026-02-20", &o), 0);
	assert_ymd(o.due, 2026, 2, 20);
}

/* ------------------------------------------------------------------ steps */

struct want_step {
	const char *name;
	tstamp at;
	int days;
	unsigned aud;
	bool esc;
};

static void
check_steps(const struct conf *c, const struct occ *o,
	    const struct want_step *w, size_t nw)
{
	struct notice_step st[SCHED_MAX_STEPS];
	int n = sched_steps(c, o, st, SCHED_MAX_STEPS);

	for (int i = 0; i < n && (size_t)i < nw; i++) {
		char got[64], want[64];

		snprintf(got, sizeof(got), "%s %lld %d %u %d", st[i].name,
			 (long long)st[i].at, st[i].days, st[i].aud,
			 st[i].escalation);
		snprintf(want, sizeof(want), "%s %lld %d %u %d", w[i].name,
			 (long long)w[i].at, w[i].days, w[i].aud, w[i].esc);
		assert_string_equal(got, want);
	}
	assert_int_equal(n, nw);
}

static void
test_city_steps(void **state)
{
	struct fx *f = *state;
	struct occ o;
	struct notice_step st[4];
	const struct want_step w[] = {
		{ "remind-7d", hcm(2024, 3, 6, 8, 0), -7, AUD_UNIT, false },
		{ "remind-3d", hcm(2024, 3, 10, 8, 0), -3, AUD_UNIT, false },
		{ "remind-1d", hcm(2024, 3, 12, 8, 0), -1, AUD_UNIT, false },
		{ "remind+0d", hcm(2024, 3, 13, 8, 0), 0, AUD_UNIT, false },
		{ "escalate+1d", hcm(2024, 3, 14, 8, 0), 1, AUD_HEAD, true },
		{ "escalate+3d", hcm(2024, 3, 16, 8, 0), 3,
		  AUD_HEAD | AUD_SECRETARIAT, true },
		{ "escalate+7d", hcm(2024, 3, 20, 8, 0), 7, AUD_CHIEF, true },
		/* repeat 3d of the last step while <= 30d after due */
		{ "repeat+10d", hcm(2024, 3, 23, 8, 0), 10, AUD_CHIEF, true },
		{ "repeat+13d", hcm(2024, 3, 26, 8, 0), 13, AUD_CHIEF, true },
		{ "repeat+16d", hcm(2024, 3, 29, 8, 0), 16, AUD_CHIEF, true },
		{ "repeat+19d", hcm(2024, 4, 1, 8, 0), 19, AUD_CHIEF, true },
		{ "repeat+22d", hcm(2024, 4, 4, 8, 0), 22, AUD_CHIEF, true },
		{ "repeat+25d", hcm(2024, 4, 7, 8, 0), 25, AUD_CHIEF, true },
		{ "repeat+28d", hcm(2024, 4, 10, 8, 0), 28, AUD_CHIEF, true },
	};
	const struct want_step w2[] = {
		{ "remind-7d", hcm(2026, 6, 8, 8, 0), -7, AUD_UNIT, false },
		{ "remind-3d", hcm(2026, 6, 12, 8, 0), -3, AUD_UNIT, false },
		{ "remind-1d", hcm(2026, 6, 14, 8, 0), -1, AUD_UNIT, false },
		{ "remind+0d", hcm(2026, 6, 15, 8, 0), 0, AUD_UNIT, false },
	};

	assert_int_equal(sched_occurrence(&f->c, "q1/2024-03-13", &o), 0);
	check_steps(&f->c, &o, w, sizeof(w) / sizeof(w[0]));
	/* steps count from the shifted due date (Monday 15/6/2026) */
	assert_int_equal(sched_occurrence(&f->c, "h1/2026-06-13", &o), 0);
	assert_int_equal(sched_steps(&f->c, &o, st, 4), 4);
	for (int i = 0; i < 4; i++) {
		assert_string_equal(st[i].name, w2[i].name);
		assert_int_equal(st[i].at, w2[i].at);
	}
	assert_int_equal(sched_steps(&f->c, &o, st, 0), 0);
}

static void
test_quiet_hours(void **state)
{
	struct fx *f = *state;
	struct occ o;
	const struct want_step w[] = {
		{ "remind-7d", hcm(2024, 3, 7, 7, 30), -7, AUD_UNIT, false },
		{ "remind-3d", hcm(2024, 3, 11, 7, 30), -3, AUD_UNIT, false },
		{ "remind-1d", hcm(2024, 3, 13, 7, 30), -1, AUD_UNIT, false },
		{ "remind+0d", hcm(2024, 3, 14, 7, 30), 0, AUD_UNIT, false },
		{ "escalate+1d", hcm(2024, 3, 15, 7, 30), 1, AUD_HEAD, true },
	};

	f->pol[0].at = 19 * 60;
	f->pol[0].nescalate = 1;
	f->pol[0].repeat = 0;
	assert_int_equal(sched_occurrence(&f->c, "q1/2024-03-13", &o), 0);
	check_steps(&f->c, &o, w, 5);
	/* early morning is quiet too: 06:00 -> 07:30 the same day */
	f->pol[0].at = 6 * 60;
	f->pol[0].nremind = 1;
	f->pol[0].nescalate = 0;
	{
		const struct want_step w1[] = {
			{ "remind-7d", hcm(2024, 3, 6, 7, 30), -7, AUD_UNIT, false },
		};

		check_steps(&f->c, &o, w1, 1);
	}
	/* a window that doesn't wrap: 12:00-13:00 */
	f->pol[0].at = 12 * 60 + 30;
	f->pol[0].quiet_from = 12 * 60;
	f->pol[0].quiet_to = 13 * 60;
	{
		const struct want_step w1[] = {
			{ "remind-7d", hcm(2024, 3, 6, 13, 0), -7, AUD_UNIT, false },
		};

		check_steps(&f->c, &o, w1, 1);
	}
	/* no quiet window */
	f->pol[0].quiet_from = -1;
	f->pol[0].quiet_to = -1;
	{
		const struct want_step w1[] = {
			{ "remind-7d", hcm(2024, 3, 6, 12, 30), -7, AUD_UNIT, false },
		};

		check_steps(&f->c, &o, w1, 1);
	}
}

static void
test_repeat_until(void **state)
{
	struct fx *f = *state;
	struct step esc[] = { { 7, AUD_CHIEF }, { 40, AUD_CHIEF } };
	struct notice_step st[SCHED_MAX_STEPS];
	struct occ o;
	int n;

	f->pol[0].nremind = 0;
	f->pol[0].escalate = esc;
	f->pol[0].nescalate = 2;
	f->pol[0].quiet_from = -1;
	assert_int_equal(sched_occurrence(&f->c, "q1/2024-03-13", &o), 0);
	/* +40d is past until (30d): dropped, and its repeats with it */
	n = sched_steps(&f->c, &o, st, SCHED_MAX_STEPS);
	assert_int_equal(n, 1);
	assert_string_equal(st[0].name, "escalate+7d");

	f->pol[0].nescalate = 1;
	{
		const struct want_step w[] = {
			{ "escalate+7d", hcm(2024, 3, 20, 8, 0), 7, AUD_CHIEF, true },
			{ "repeat+10d", hcm(2024, 3, 23, 8, 0), 10, AUD_CHIEF, true },
			{ "repeat+13d", hcm(2024, 3, 26, 8, 0), 13, AUD_CHIEF, true },
			{ "repeat+16d", hcm(2024, 3, 29, 8, 0), 16, AUD_CHIEF, true },
			{ "repeat+19d", hcm(2024, 4, 1, 8, 0), 19, AUD_CHIEF, true },
			{ "repeat+22d", hcm(2024, 4, 4, 8, 0), 22, AUD_CHIEF, true },
			{ "repeat+25d", hcm(2024, 4, 7, 8, 0), 25, AUD_CHIEF, true },
			{ "repeat+28d", hcm(2024, 4, 10, 8, 0), 28, AUD_CHIEF, true },
		};

		check_steps(&f->c, &o, w, 8);
	}

	/* until 0: no limit but a year of repeats */
	f->pol[0].until = 0;
	f->pol[0].repeat = DAYS(30);
	n = sched_steps(&f->c, &o, st, SCHED_MAX_STEPS);
	/* +7d, then +37d .. +367d is 12 repeats within 366 days after due_at
	 * (+367d 08:00 is 366d 8h after the due midnight: out) */
	assert_int_equal(n, 1 + 11);
	assert_string_equal(st[n - 1].name, "repeat+337d");

	/* no escalation: the last remind step repeats */
	f->pol[0].remind = city_remind;
	f->pol[0].nremind = 4;
	f->pol[0].nescalate = 0;
	f->pol[0].repeat = DAYS(2);
	f->pol[0].until = DAYS(5);
	{
		const struct want_step w[] = {
			{ "remind-7d", hcm(2024, 3, 6, 8, 0), -7, AUD_UNIT, false },
			{ "remind-3d", hcm(2024, 3, 10, 8, 0), -3, AUD_UNIT, false },
			{ "remind-1d", hcm(2024, 3, 12, 8, 0), -1, AUD_UNIT, false },
			{ "remind+0d", hcm(2024, 3, 13, 8, 0), 0, AUD_UNIT, false },
			{ "repeat+2d", hcm(2024, 3, 15, 8, 0), 2, AUD_UNIT, true },
			{ "repeat+4d", hcm(2024, 3, 17, 8, 0), 4, AUD_UNIT, true },
		};

		check_steps(&f->c, &o, w, 6);
	}

	/* sub-day repeats add seconds and keep distinct names; quiet hours
	 * still apply, so two may land on the same instant */
	f->pol[0].nremind = 0;
	f->pol[0].escalate = city_escalate;
	f->pol[0].nescalate = 1;
	f->pol[0].repeat = 12 * 3600;
	f->pol[0].until = DAYS(2);
	f->pol[0].quiet_from = 18 * 60;
	f->pol[0].quiet_to = 7 * 60 + 30;
	{
		const struct want_step w[] = {
			{ "escalate+1d", hcm(2024, 3, 14, 8, 0), 1, AUD_HEAD, true },
			{ "repeat+1d20h00", hcm(2024, 3, 15, 7, 30), 1, AUD_HEAD, true },
			{ "repeat+2d08h00", hcm(2024, 3, 15, 8, 0), 2, AUD_HEAD, true },
			{ "repeat+2d20h00", hcm(2024, 3, 16, 7, 30), 2, AUD_HEAD, true },
		};

		check_steps(&f->c, &o, w, 4);
	}
}

static void
test_berlin_dst_steps(void **state)
{
	struct fx f;
	struct occ o;
	struct notice_step st[SCHED_MAX_STEPS];
	struct md apr3 = { 4, 3 };
	int n;

	(void)state;
	fx_init(&f, "Europe/Berlin", false);
	f.cyc[0].yearly = &apr3;
	f.cyc[0].period_to = apr3;
	assert_int_equal(sched_occurrence(&f.c, "q1/2024-04-03", &o), 0);
	/* midnight CEST at the end of 3 April = 22:00 UTC */
	assert_int_equal(o.due_at, days_from_civil(2024, 4, 3) * 86400 + 22 * 3600);
	n = sched_steps(&f.c, &o, st, SCHED_MAX_STEPS);
	assert_true(n >= 4);
	/* 08:00 stays 08:00 across the change on 31 March */
	assert_string_equal(st[0].name, "remind-7d");
	assert_int_equal(st[0].at, days_from_civil(2024, 3, 27) * 86400 + 7 * 3600);
	assert_string_equal(st[3].name, "remind+0d");
	assert_int_equal(st[3].at, days_from_civil(2024, 4, 3) * 86400 + 6 * 3600);
	fx_free(&f);
}

/* ------------------------------------------------------------------- plan */

struct rows {
	struct buf b;
	const struct conf *c;
	size_t n, stop_at;
	tstamp last;
};

static int
collect(void *ctx, const struct plan_row *r)
{
	struct rows *rs = ctx;
	char iso[17];

	assert_true(r->at >= rs->last);
	rs->last = r->at;
	tz_format_iso(rs->c->tz, r->at, iso);
	buf_printf(&rs->b, "%s %s %s %s %s %s %s\n", iso, r->occ->id,
		   r->unit->id, r->step->name, audience_name(r->aud),
		   channel_name(r->ch), r->recipients);
	rs->n++;
	return rs->stop_at != 0 && rs->n >= rs->stop_at;
}

static bool
sub_tu_phap(void *ctx, const char *occ, const char *unit)
{
	int *calls = ctx;

	(*calls)++;
	return strcmp(occ, "q1/2024-03-13") == 0 && strcmp(unit, "tu-phap") == 0;
}

static void
test_plan_order(void **state)
{
	struct fx *f = *state;
	struct rows rs = { .c = &f->c };
	int calls = 0;

	buf_init(&rs.b);
	/* the +3d escalation of q1/2024-03-13 */
	assert_int_equal(sched_plan(&f->c, hcm(2024, 3, 16, 0, 0),
				    hcm(2024, 3, 17, 0, 0), NULL, NULL, NULL,
				    collect, &rs), 0);
	assert_string_equal(buf_str(&rs.b),
		"2024-03-16T08:00 q1/2024-03-13 ld-tbxh escalate+3d head email truongphong.ldtbxh@example.vn\n"
		"2024-03-16T08:00 q1/2024-03-13 ld-tbxh escalate+3d secretariat email thuongtruc@example.vn\n"
		"2024-03-16T08:00 q1/2024-03-13 mttq escalate+3d secretariat email thuongtruc@example.vn\n"
		"2024-03-16T08:00 q1/2024-03-13 p-tan-loi escalate+3d unit webhook http://127.0.0.1:8471/hooks/tan-loi\n"
		"2024-03-16T08:00 q1/2024-03-13 p-tan-loi escalate+3d head email chutich.tanloi@example.vn\n"
		"2024-03-16T08:00 q1/2024-03-13 p-tan-loi escalate+3d secretariat email thuongtruc@example.vn\n"
		"2024-03-16T08:00 q1/2024-03-13 tu-phap escalate+3d head email truongphong.tuphap@example.vn\n"
		"2024-03-16T08:00 q1/2024-03-13 tu-phap escalate+3d secretariat email thuongtruc@example.vn\n");

	/* the due day, with one unit's report recorded */
	buf_reset(&rs.b);
	rs.last = 0;
	assert_int_equal(sched_plan(&f->c, hcm(2024, 3, 13, 0, 0),
				    hcm(2024, 3, 14, 0, 0), NULL, sub_tu_phap,
				    &calls, collect, &rs), 0);
	assert_string_equal(buf_str(&rs.b),
		"2024-03-13T08:00 q1/2024-03-13 ld-tbxh remind+0d unit email ldtbxh@example.vn\n"
		"2024-03-13T08:00 q1/2024-03-13 mttq remind+0d unit email mttq@example.vn,vanphong.mttq@example.vn\n"
		"2024-03-13T08:00 q1/2024-03-13 p-tan-loi remind+0d unit email bcd.tanloi@example.vn\n"
		"2024-03-13T08:00 q1/2024-03-13 p-tan-loi remind+0d unit webhook http://127.0.0.1:8471/hooks/tan-loi\n");
	assert_int_equal(calls, 4);

	/* one unit only; unknown unit is an error */
	buf_reset(&rs.b);
	rs.last = 0;
	assert_int_equal(sched_plan(&f->c, hcm(2024, 3, 1, 0, 0),
				    hcm(2024, 3, 15, 0, 0), "mttq", NULL, NULL,
				    collect, &rs), 0);
	assert_string_equal(buf_str(&rs.b),
		"2024-03-06T08:00 q1/2024-03-13 mttq remind-7d unit email mttq@example.vn,vanphong.mttq@example.vn\n"
		"2024-03-10T08:00 q1/2024-03-13 mttq remind-3d unit email mttq@example.vn,vanphong.mttq@example.vn\n"
		"2024-03-12T08:00 q1/2024-03-13 mttq remind-1d unit email mttq@example.vn,vanphong.mttq@example.vn\n"
		"2024-03-13T08:00 q1/2024-03-13 mttq remind+0d unit email mttq@example.vn,vanphong.mttq@example.vn\n");
	assert_int_equal(sched_plan(&f->c, 0, 1, "nope", NULL, NULL, collect,
				    &rs), -1);

	/* the callback stops the walk */
	buf_reset(&rs.b);
	rs.n = 0;
	rs.last = 0;
	rs.stop_at = 3;
	assert_int_equal(sched_plan(&f->c, hcm(2024, 1, 1, 0, 0),
				    hcm(2025, 1, 1, 0, 0), NULL, NULL, NULL,
				    collect, &rs), 0);
	assert_int_equal(rs.n, 3);
	buf_free(&rs.b);
}

static void
test_plan_ties(void **state)
{
	struct fx *f = *state;
	struct step rem[] = { { 0, AUD_UNIT } };
	struct step esc[] = { { 0, AUD_HEAD } };
	struct md mar13 = { 3, 13 };
	size_t two[] = { 0, 1 };
	struct rows rs = { .c = &f->c };

	/* two cycles due the same day, two steps at the same instant */
	f->pol[0].remind = rem;
	f->pol[0].nremind = 1;
	f->pol[0].escalate = esc;
	f->pol[0].nescalate = 1;
	f->pol[0].repeat = 0;
	f->cyc[1].yearly = &mar13;
	f->cyc[0].units = two;
	f->cyc[0].nunits = 2;
	f->cyc[1].units = two;
	f->cyc[1].nunits = 2;
	buf_init(&rs.b);
	assert_int_equal(sched_plan(&f->c, hcm(2024, 3, 13, 0, 0),
				    hcm(2024, 3, 14, 0, 0), NULL, NULL, NULL,
				    collect, &rs), 0);
	assert_string_equal(buf_str(&rs.b),
		"2024-03-13T08:00 h1/2024-03-13 ld-tbxh escalate+0d head email truongphong.ldtbxh@example.vn\n"
		"2024-03-13T08:00 h1/2024-03-13 ld-tbxh remind+0d unit email ldtbxh@example.vn\n"
		"2024-03-13T08:00 h1/2024-03-13 tu-phap escalate+0d head email truongphong.tuphap@example.vn\n"
		"2024-03-13T08:00 h1/2024-03-13 tu-phap remind+0d unit email tuphap@example.vn\n"
		"2024-03-13T08:00 q1/2024-03-13 ld-tbxh escalate+0d head email truongphong.ldtbxh@example.vn\n"
		"2024-03-13T08:00 q1/2024-03-13 ld-tbxh remind+0d unit email ldtbxh@example.vn\n"
		"2024-03-13T08:00 q1/2024-03-13 tu-phap escalate+0d head email truongphong.tuphap@example.vn\n"
		"2024-03-13T08:00 q1/2024-03-13 tu-phap remind+0d unit email tuphap@example.vn\n");
	buf_free(&rs.b);
}

static int
count_row(void *ctx, const struct plan_row *r)
{
	size_t *n = ctx;

	(void)r;
	(*n)++;
	return 0;
}

static bool
sub_none(void *ctx, const char *occ, const char *unit)
{
	(void)ctx;
	(void)occ;
	(void)unit;
	return false;
}

static void
test_plan_scale(void **state)
{
	struct fx *f = *state;
	const size_t N = 10000;
	struct unit *u = calloc(N, sizeof(*u));
	size_t *idx = calloc(N, sizeof(*idx));
	char (*ids)[16] = calloc(N, sizeof(*ids));
	char *email[] = { "x@example.vn" };
	size_t rows = 0;
	clock_t t0;
	double secs;

	assert_non_null(u);
	assert_non_null(idx);
	assert_non_null(ids);
	for (size_t i = 0; i < N; i++) {
		/* conf order differs from id order */
		snprintf(ids[i], sizeof(ids[i]), "u%05zu", (i * 7919) % N);
		u[i] = (struct unit){ .id = ids[i], .email = email, .nemail = 1,
				      .head = "head@example.vn" };
		idx[i] = i;
	}
	f->c.units = u;
	f->c.nunits = N;
	for (int i = 0; i < 4; i++) {
		f->cyc[i].units = idx;
		f->cyc[i].nunits = N;
	}
	t0 = clock();
	assert_int_equal(sched_plan(&f->c, hcm(2024, 1, 1, 0, 0),
				    hcm(2024, 1, 1, 0, 0) + DAYS(400), NULL,
				    sub_none, NULL, count_row, &rows), 0);
	secs = (double)(clock() - t0) / CLOCKS_PER_SEC;
	print_message("plan: %zu rows in %.3f s\n", rows, secs);
	/* 4 occurrences in the window (y/2024 through q1/2025 partly) */
	assert_true(rows > 4 * N * 10);
	/* well under 1 s optimised; leave room for the sanitizers */
	assert_true(secs < 3.0);
	free(u);
	free(idx);
	free(ids);
}

/* ------------------------------------------- through the real conf.c */

/* The example configuration (conf/city-2024.conf), cut
 * down to three units. */
static const char city_conf[] =
	"[daemon]\n"
	"timezone   = Asia/Ho_Chi_Minh\n"
	"state      = ../var/state.db\n"
	"listen     = 127.0.0.1:8470\n"
	"public_url = http://127.0.0.1:8470\n"
	"holidays   = holidays-vn.ics\n"
	"workdays   = mon-fri\n"
	"\n"
	"[mail]\n"
	"transport = maildir\n"
	"maildir   = ../var/mail\n"
	"from      = Thường trực Ban Chỉ đạo 138 Thành phố <thuongtruc@example.vn>\n"
	"\n"
	"[secretariat]\n"
	"name  = Công an Thành phố - Thường trực Ban Chỉ đạo\n"
	"email = thuongtruc@example.vn\n"
	"chief = truongban@example.vn\n"
	"\n"
	"[policy standard]\n"
	"at       = 08:00\n"
	"remind   = -7d -3d -1d 0d\n"
	"escalate = +1d head, +3d head secretariat, +7d chief\n"
	"repeat   = 3d\n"
	"until    = 30d\n"
	"quiet    = 18:00-07:30\n"
	"shift    = next-workday\n"
	"\n"
	"[cycle q1]\n"
	"title  = Báo cáo quý I\n"
	"due    = 03-13\n"
	"period = 12-15 .. 03-13\n"
	"policy = standard\n"
	"units  = *\n"
	"\n"
	"[cycle h1]\n"
	"title  = Báo cáo sơ kết 6 tháng\n"
	"due    = 06-13\n"
	"period = 12-15 .. 06-13\n"
	"policy = standard\n"
	"units  = *\n"
	"\n"
	"[cycle q3]\n"
	"title  = Báo cáo quý III\n"
	"due    = 09-13\n"
	"period = 06-13 .. 09-13\n"
	"policy = standard\n"
	"units  = *\n"
	"\n"
	"[cycle y]\n"
	"title  = Báo cáo tổng kết năm\n"
	"due    = 12-13\n"
	"period = 12-15 .. 12-13\n"
	"policy = standard\n"
	"units  = *\n"
	"\n"
	"[unit tu-phap]\n"
	"name   = Phòng Tư pháp\n"
	"email  = tuphap@example.vn\n"
	"head   = truongphong.tuphap@example.vn\n"
	"groups = phong-ban\n"
	"\n"
	"[unit p-tan-loi]\n"
	"name    = Ban Chỉ đạo phường Tân Lợi\n"
	"email   = bcd.tanloi@example.vn\n"
	"head    = chutich.tanloi@example.vn\n"
	"webhook = http://127.0.0.1:8471/hooks/tan-loi\n"
	"groups  = phuong-xa\n"
	"\n"
	"[unit mttq]\n"
	"name   = Ủy ban Mặt trận Tổ quốc Việt Nam Thành phố\n"
	"email  = mttq@example.vn\n"
	"head   = chutich.mttq@example.vn\n"
	"groups = doan-the\n";

static void
test_real_conf(void **state)
{
	struct diag d;
	struct conf *c;
	struct occ *o = NULL, one;
	size_t n = 0;
	struct rows rs;
	static const char *want_ids[] = {
		"q1/2025-03-13", "h1/2025-06-13", "q3/2025-09-13", "y/2025-12-13",
	};
	static const int want_due[][3] = {
		{ 2025, 3, 13 }, { 2025, 6, 13 }, { 2025, 9, 15 }, { 2025, 12, 15 },
	};

	(void)state;
	diag_init(&d);
	c = conf_parse("city.conf", city_conf, sizeof(city_conf) - 1,
		       CONF_NO_FILES, &d);
	diag_print(&d, stderr);
	assert_non_null(c);
	assert_int_equal(holidays_load(shipped(), &c->hol, &d), 0);

	assert_int_equal(sched_occurrences(c, hcm(2025, 1, 1, 0, 0),
					   hcm(2026, 1, 1, 0, 0), &o, &n), 0);
	assert_int_equal(n, 4);
	for (size_t i = 0; i < n; i++) {
		assert_string_equal(o[i].id, want_ids[i]);
		assert_ymd(o[i].due, want_due[i][0], want_due[i][1], want_due[i][2]);
	}
	free(o);
	assert_int_equal(sched_occurrence(c, "q3/2025-09-13", &one), 0);
	assert_ymd(one.period_from, 2025, 6, 13);
	assert_ymd(one.period_to, 2025, 9, 13);
	/* default due time: end of the (shifted) due day */
	assert_int_equal(one.due_at, hcm(2025, 9, 16, 0, 0));

	memset(&rs, 0, sizeof(rs));
	rs.c = c;
	buf_init(&rs.b);
	/* Monday 15/9/2025 is the shifted due day; -1d is Sunday 14/9, so
	 * under send_days = workdays it goes out on Friday 12/9, where it
	 * meets -3d: one notice, -1d */
	assert_int_equal(sched_plan(c, hcm(2025, 9, 11, 0, 0),
				    hcm(2025, 9, 16, 0, 0), NULL, NULL, NULL,
				    collect, &rs), 0);
	assert_string_equal(buf_str(&rs.b),
		"2025-09-12T08:00 q3/2025-09-13 mttq remind-1d unit email mttq@example.vn\n"
		"2025-09-12T08:00 q3/2025-09-13 p-tan-loi remind-1d unit email bcd.tanloi@example.vn\n"
		"2025-09-12T08:00 q3/2025-09-13 p-tan-loi remind-1d unit webhook http://127.0.0.1:8471/hooks/tan-loi\n"
		"2025-09-12T08:00 q3/2025-09-13 tu-phap remind-1d unit email tuphap@example.vn\n"
		"2025-09-15T08:00 q3/2025-09-13 mttq remind+0d unit email mttq@example.vn\n"
		"2025-09-15T08:00 q3/2025-09-13 p-tan-loi remind+0d unit email bcd.tanloi@example.vn\n"
		"2025-09-15T08:00 q3/2025-09-13 p-tan-loi remind+0d unit webhook http://127.0.0.1:8471/hooks/tan-loi\n"
		"2025-09-15T08:00 q3/2025-09-13 tu-phap remind+0d unit email tuphap@example.vn\n");
	buf_free(&rs.b);
	conf_free(c);
	diag_free(&d);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_city_due_dates, setup, teardown),
		cmocka_unit_test_setup_teardown(test_periods_and_lookup, setup, teardown),
		cmocka_unit_test_setup_teardown(test_once_leap_previous, setup, teardown),
		cmocka_unit_test_setup_teardown(test_rrule, setup, teardown),
		cmocka_unit_test_setup_teardown(test_shift, setup, teardown),
		cmocka_unit_test_setup_teardown(test_city_steps, setup, teardown),
		cmocka_unit_test_setup_teardown(test_quiet_hours, setup, teardown),
		cmocka_unit_test_setup_teardown(test_repeat_until, setup, teardown),
		cmocka_unit_test_setup_teardown(test_berlin_dst_steps, setup, teardown),
		cmocka_unit_test_setup_teardown(test_plan_order, setup, teardown),
		cmocka_unit_test_setup_teardown(test_plan_ties, setup, teardown),
		cmocka_unit_test_setup_teardown(test_plan_scale, setup, teardown),
		cmocka_unit_test(test_real_conf),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
