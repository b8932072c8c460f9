/* test_holiday.c - the holidays .ics: shipped file, RRULE, errors. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cutoffd.h"

static int64_t
day(int y, int m, int d)
{
	return days_from_civil(y, m, d);
}

/* the shipped file, whether run from the top or from tests/unit */
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

static int
parse(const char *text, struct holidays *h, struct diag *d)
{
	return holidays_parse("t.ics", text, strlen(text), h, d);
}

static bool
diag_has(const struct diag *d, const char *s)
{
	for (size_t i = 0; i < d->n; i++)
		if (strstr(d->msg[i], s) != NULL)
			return true;
	return false;
}

static void
test_shipped(void **state)
{
	struct holidays h = { 0 };
	struct diag d;

	(void)state;
	diag_init(&d);
	assert_int_equal(holidays_load(shipped(), &h, &d), 0);
	assert_int_equal(d.n, 0);
	/* the blocks as the notices state them, weekends included:
	 * 2024: 1 + 7 + 1 + 5 + 4; 2025: 1 + 9 + 1 + 5 + 4;
	 * 2026: 4 + 9 + 2 + 4 + 5 */
	assert_int_equal(h.n, 18 + 20 + 24);
	for (size_t i = 1; i < h.n; i++)
		assert_true(h.days[i - 1] < h.days[i]);
	assert_int_equal(h.last_year, 2026);

	assert_true(holidays_has(&h, day(2024, 1, 1)));
	assert_false(holidays_has(&h, day(2024, 1, 2)));
	assert_false(holidays_has(&h, day(2024, 2, 7)));
	assert_true(holidays_has(&h, day(2024, 2, 8)));
	assert_true(holidays_has(&h, day(2024, 2, 14)));
	assert_false(holidays_has(&h, day(2024, 2, 15)));
	assert_true(holidays_has(&h, day(2024, 4, 18)));
	assert_true(holidays_has(&h, day(2024, 4, 29)));
	assert_true(holidays_has(&h, day(2024, 5, 1)));
	assert_false(holidays_has(&h, day(2024, 5, 2)));
	assert_true(holidays_has(&h, day(2024, 8, 31)));
	assert_true(holidays_has(&h, day(2024, 9, 3)));
	assert_false(holidays_has(&h, day(2024, 9, 4)));

	assert_true(holidays_has(&h, day(2025, 1, 25)));
	assert_true(holidays_has(&h, day(2025, 2, 2)));
	assert_false(holidays_has(&h, day(2025, 2, 3)));
	assert_true(holidays_has(&h, day(2025, 4, 7)));
	assert_true(holidays_has(&h, day(2025, 5, 2)));
	assert_true(holidays_has(&h, day(2025, 9, 1)));
	assert_true(holidays_has(&h, day(2025, 9, 2)));

	/* the two days the 0.1 file lacked */
	assert_true(holidays_has(&h, day(2026, 1, 2)));
	assert_true(holidays_has(&h, day(2026, 8, 31)));
	assert_false(holidays_has(&h, day(2026, 1, 5)));
	assert_false(holidays_has(&h, day(2026, 2, 13)));
	assert_true(holidays_has(&h, day(2026, 2, 14)));
	assert_true(holidays_has(&h, day(2026, 2, 22)));
	assert_false(holidays_has(&h, day(2026, 2, 23)));
	assert_true(holidays_has(&h, day(2026, 4, 27)));
	assert_true(holidays_has(&h, day(2026, 9, 1)));
	assert_true(holidays_has(&h, day(2026, 9, 2)));
	assert_false(holidays_has(&h, day(2026, 9, 3)));

	/* the Saturdays worked in exchange, and nothing else */
	assert_int_equal(h.nwork, 4);
	assert_true(holidays_workday(&h, day(2024, 5, 4)));
	assert_true(holidays_workday(&h, day(2025, 4, 26)));
	assert_true(holidays_workday(&h, day(2026, 1, 10)));
	assert_true(holidays_workday(&h, day(2026, 8, 22)));
	assert_false(holidays_workday(&h, day(2025, 5, 17)));
	for (size_t i = 0; i < h.nwork; i++) {
		assert_int_equal(ymd_wday(civil_from_days(h.work[i])), 6);
		assert_false(holidays_has(&h, h.work[i]));
	}
	holidays_free(&h);
	holidays_free(&h);
	holidays_free(NULL);
	diag_free(&d);
}

static void
test_rrule_duration(void **state)
{
	struct holidays h = { 0 };
	struct diag d;
	const char *text =
		"BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//t//t//EN\r\n"
		"BEGIN:VEVENT\r\nUID:ny\r\nDTSTAMP:20240101T000000Z\r\n"
		"DTSTART;VALUE=DATE:20200101\r\nRRULE:FREQ=YEARLY\r\n"
		"EXDATE;VALUE=DATE:20220101\r\n"
		"SUMMARY:Tết Dương lịch\r\nEND:VEVENT\r\n"
		"BEGIN:VEVENT\r\nUID:two\r\nDTSTAMP:20240101T000000Z\r\n"
		"DTSTART;VALUE=DATE:20240430\r\nDURATION:P2D\r\n"
		"SUMMARY:30/4 1/5\r\nEND:VEVENT\r\n"
		"BEGIN:VEVENT\r\nUID:one\r\nDTSTAMP:20240101T000000Z\r\n"
		"DTSTART;VALUE=DATE:20240501\r\nSUMMARY:dup\r\nEND:VEVENT\r\n"
		"BEGIN:VEVENT\r\nUID:gone\r\nDTSTAMP:20240101T000000Z\r\n"
		"DTSTART;VALUE=DATE:20240601\r\nSTATUS:CANCELLED\r\n"
		"SUMMARY:cancelled\r\nEND:VEVENT\r\n"
		"END:VCALENDAR\r\n";

	(void)state;
	diag_init(&d);
	assert_int_equal(parse(text, &h, &d), 0);
	assert_int_equal(d.n, 0);
	/* 2020..2100 is 81 new years, minus the EXDATE; 30/4 and 1/5 once */
	assert_int_equal(h.n, 81 - 1 + 2);
	assert_true(holidays_has(&h, day(2020, 1, 1)));
	assert_false(holidays_has(&h, day(2022, 1, 1)));
	assert_true(holidays_has(&h, day(2026, 1, 1)));
	assert_true(holidays_has(&h, day(2100, 1, 1)));
	assert_false(holidays_has(&h, day(2101, 1, 1)));
	assert_true(holidays_has(&h, day(2024, 4, 30)));
	assert_true(holidays_has(&h, day(2024, 5, 1)));
	assert_false(holidays_has(&h, day(2024, 5, 2)));
	assert_false(holidays_has(&h, day(2024, 6, 1)));
	holidays_free(&h);
	diag_free(&d);
}

static void
test_lf_and_empty(void **state)
{
	struct holidays h = { 0 };
	struct diag d;

	(void)state;
	diag_init(&d);
	/* plain LF line ends, as an admin's editor may write them */
	assert_int_equal(parse("BEGIN:VCALENDAR\nVERSION:2.0\nPRODID:x\n"
			       "BEGIN:VEVENT\nUID:a\nDTSTART;VALUE=DATE:20240902\n"
			       "DTEND;VALUE=DATE:20240904\nEND:VEVENT\n"
			       "END:VCALENDAR\n", &h, &d), 0);
	assert_int_equal(h.n, 2);
	assert_int_equal(h.days[0], day(2024, 9, 2));
	holidays_free(&h);
	assert_int_equal(parse("BEGIN:VCALENDAR\nVERSION:2.0\nPRODID:x\n"
			       "END:VCALENDAR\n", &h, &d), 0);
	assert_int_equal(h.n, 0);
	assert_false(holidays_has(&h, day(2024, 9, 2)));
	holidays_free(&h);
	assert_int_equal(d.n, 0);
	diag_free(&d);
}

static void
test_errors(void **state)
{
	struct holidays h = { (int64_t *)0x1, 42, NULL, 0, 0 };
	struct diag d;

	(void)state;
	diag_init(&d);
	assert_int_equal(parse("this is not a calendar", &h, &d), -1);
	assert_true(d.n >= 1);
	assert_true(diag_has(&d, "t.ics"));
	diag_free(&d);

	diag_init(&d);
	assert_int_equal(parse("BEGIN:VCALENDAR\nVERSION:2.0\nPRODID:x\n"
			       "BEGIN:VEVENT\nUID:timed-1\n"
			       "DTSTART:20240902T080000\nSUMMARY:Họp\n"
			       "END:VEVENT\nEND:VCALENDAR\n", &h, &d), -1);
	assert_int_equal(d.n, 1);
	assert_true(diag_has(&d, "t.ics:5:"));
	assert_true(diag_has(&d, "timed-1"));
	assert_true(diag_has(&d, "all-day"));
	diag_free(&d);

	diag_init(&d);
	/* every bad event is reported, not only the first */
	assert_int_equal(parse("BEGIN:VCALENDAR\nVERSION:2.0\nPRODID:x\n"
			       "BEGIN:VEVENT\nUID:e1\nDTSTART;VALUE=DATE:20240902\n"
			       "DTEND;VALUE=DATE:20240902\nEND:VEVENT\n"
			       "BEGIN:VEVENT\nUID:e2\nSUMMARY:no start\nEND:VEVENT\n"
			       "BEGIN:VEVENT\nUID:e3\nDTSTART;VALUE=DATE:20240902\n"
			       "DURATION:PT3H\nEND:VEVENT\n"
			       "BEGIN:VEVENT\nUID:e4\nDTSTART;VALUE=DATE:20240902\n"
			       "RRULE:FREQ=HOURLY\nEND:VEVENT\n"
			       "BEGIN:VEVENT\nUID:e5\nDTSTART;VALUE=DATE:20240902\n"
			       "DTEND:20240903T000000\nEND:VEVENT\n"
			       "END:VCALENDAR\n", &h, &d), -1);
	assert_int_equal(d.n, 5);
	assert_true(diag_has(&d, "e1"));
	assert_true(diag_has(&d, "e2"));
	assert_true(diag_has(&d, "e3"));
	assert_true(diag_has(&d, "e4"));
	assert_true(diag_has(&d, "e5"));
	diag_free(&d);

	diag_init(&d);
	/* a VEVENT outside any VCALENDAR */
	assert_int_equal(parse("BEGIN:VEVENT\nUID:x\nDTSTART;VALUE=DATE:20240902\n"
			       "END:VEVENT\n", &h, &d), -1);
	assert_int_equal(d.n, 1);
	diag_free(&d);

	diag_init(&d);
	/* the cap on the number of days */
	assert_int_equal(parse("BEGIN:VCALENDAR\nVERSION:2.0\nPRODID:x\n"
			       "BEGIN:VEVENT\nUID:daily\nDTSTART;VALUE=DATE:19000101\n"
			       "RRULE:FREQ=DAILY\nEND:VEVENT\n"
			       "BEGIN:VEVENT\nUID:daily2\nDTSTART;VALUE=DATE:19000102\n"
			       "RRULE:FREQ=DAILY\nEND:VEVENT\nEND:VCALENDAR\n",
			       &h, &d), -1);
	assert_true(diag_has(&d, "more than"));
	diag_free(&d);

	diag_init(&d);
	assert_int_equal(holidays_load("/nonexistent/holidays.ics", &h, &d), -1);
	assert_true(diag_has(&d, "/nonexistent/holidays.ics"));
	diag_free(&d);

	/* untouched on failure */
	assert_ptr_equal(h.days, (int64_t *)0x1);
	assert_int_equal(h.n, 42);
}

#define CAL_HEAD "BEGIN:VCALENDAR\nVERSION:2.0\nPRODID:x\n"
#define CAL_TAIL "END:VCALENDAR\n"

/* A WORKDAY event makes a day a working day whatever the week says, and
 * only that day; a day both off and worked is refused at the worked one. */
static void
test_workday(void **state)
{
	struct holidays h = { 0 };
	struct conf c;
	struct diag d;

	(void)state;
	diag_init(&d);
	assert_int_equal(parse(CAL_HEAD
		"BEGIN:VEVENT\nUID:off\nDTSTART;VALUE=DATE:20260101\n"
		"DTEND;VALUE=DATE:20260105\nEND:VEVENT\n"
		"BEGIN:VEVENT\nUID:sat\nDTSTART;VALUE=DATE:20260110\n"
		"CATEGORIES:WORKDAY\nSUMMARY:Làm bù\nEND:VEVENT\n"
		/* one of several categories, any case, in a second property */
		"BEGIN:VEVENT\nUID:sat2\nDTSTART;VALUE=DATE:20260822\n"
		"CATEGORIES:HOLIDAY\nCATEGORIES:x, workday\nEND:VEVENT\n"
		/* WORKDAY as part of a longer word is not one */
		"BEGIN:VEVENT\nUID:not\nDTSTART;VALUE=DATE:20260815\n"
		"CATEGORIES:WORKDAYS\nEND:VEVENT\n"
		CAL_TAIL, &h, &d), 0);
	assert_int_equal(d.n, 0);
	assert_int_equal(h.n, 4 + 1);
	assert_int_equal(h.nwork, 2);
	assert_true(holidays_workday(&h, day(2026, 1, 10)));
	assert_true(holidays_workday(&h, day(2026, 8, 22)));
	assert_false(holidays_workday(&h, day(2026, 8, 15)));
	assert_true(holidays_has(&h, day(2026, 8, 15)));
	assert_false(holidays_has(&h, day(2026, 1, 10)));

	memset(&c, 0, sizeof(c));
	c.daemon.workdays = 0x3e;          /* mon-fri */
	c.hol = h;
	assert_false(conf_workday(&c, day(2026, 1, 2)));   /* Friday, off */
	assert_true(conf_workday(&c, day(2026, 1, 10)));   /* Saturday, worked */
	assert_false(conf_workday(&c, day(2026, 1, 17)));  /* a plain Saturday */
	assert_false(conf_workday(&c, day(2026, 1, 11)));  /* Sunday */
	assert_true(conf_workday(&c, day(2026, 1, 12)));   /* Monday */
	assert_true(conf_workday(&c, day(2026, 8, 22)));
	holidays_free(&h);
	assert_null(h.work);
	assert_int_equal(h.nwork, 0);

	/* both a day off and a working day: an error at the WORKDAY's line */
	assert_int_equal(parse(CAL_HEAD
		"BEGIN:VEVENT\nUID:off\nDTSTART;VALUE=DATE:20260101\n"
		"DTEND;VALUE=DATE:20260105\nEND:VEVENT\n"
		"BEGIN:VEVENT\nUID:clash\nDTSTART;VALUE=DATE:20260102\n"
		"DTEND;VALUE=DATE:20260104\nCATEGORIES:WORKDAY\nEND:VEVENT\n"
		CAL_TAIL, &h, &d), -1);
	assert_int_equal(d.n, 2);
	assert_true(diag_has(&d, "t.ics:10: 02/01/2026 is a WORKDAY"));
	assert_true(diag_has(&d, "t.ics:10: 03/01/2026 is a WORKDAY"));
	assert_true(diag_has(&d, "(line 5)"));
	assert_null(h.days);
	diag_free(&d);
}

/* The last covered year is that of the dated events; recurring ones (a
 * fixed 1/1 every year) say nothing about Tết of a year. */
static void
test_coverage(void **state)
{
	struct holidays h = { 0 };
	struct conf c;
	struct diag d;
	char *w, buf[512];
	FILE *f;

	(void)state;
	diag_init(&d);
	assert_int_equal(parse(CAL_HEAD
		"BEGIN:VEVENT\nUID:ny\nDTSTART;VALUE=DATE:20200101\n"
		"RRULE:FREQ=YEARLY\nEND:VEVENT\n"
		"BEGIN:VEVENT\nUID:tet\nDTSTART;VALUE=DATE:20261231\n"
		"DTEND;VALUE=DATE:20270102\nEND:VEVENT\n"
		"BEGIN:VEVENT\nUID:w\nDTSTART;VALUE=DATE:20250104\n"
		"RDATE;VALUE=DATE:20250111\nCATEGORIES:WORKDAY\nEND:VEVENT\n"
		CAL_TAIL, &h, &d), 0);
	assert_int_equal(d.n, 0);
	/* a block running into the next year covers that year's first days
	 * only, but it is the year the admin last wrote down */
	assert_int_equal(h.last_year, 2027);
	assert_null(holidays_coverage(&h, "h.ics", 2027));
	assert_null(holidays_coverage(&h, "h.ics", 2020));
	w = holidays_coverage(&h, "h.ics", 2029);
	assert_non_null(w);
	assert_string_equal(w, "h.ics: holidays file covers up to 2027; "
			    "horizon reaches 2029: dates after 31/12/2027 "
			    "assume no public holiday");
	free(w);

	/* the conf-level call: horizon from now, in the zone (NULL: UTC) */
	memset(&c, 0, sizeof(c));
	c.daemon.holidays = "h.ics";
	c.daemon.horizon = 400 * 86400LL;
	c.hol = h;
	f = tmpfile();
	assert_non_null(f);
	/* 2026-12-03 + 400 days = 2028-01-07 */
	holidays_warn(&c, (tstamp)days_from_civil(2026, 12, 3) * 86400, f);
	/* 2026-06-01 + 400 days = 2027-07-06: inside */
	holidays_warn(&c, (tstamp)days_from_civil(2026, 6, 1) * 86400, f);
	rewind(f);
	memset(buf, 0, sizeof(buf));
	assert_true(fread(buf, 1, sizeof(buf) - 1, f) > 0);
	fclose(f);
	assert_string_equal(buf, "warning: h.ics: holidays file covers up to "
			    "2027; horizon reaches 2028: dates after "
			    "31/12/2027 assume no public holiday\n");
	holidays_free(&h);

	/* only recurrences: no year is covered, nothing to warn about */
	assert_int_equal(parse(CAL_HEAD
		"BEGIN:VEVENT\nUID:ny\nDTSTART;VALUE=DATE:20200101\n"
		"RRULE:FREQ=YEARLY\nEND:VEVENT\n" CAL_TAIL, &h, &d), 0);
	assert_int_equal(h.last_year, 0);
	assert_null(holidays_coverage(&h, "h.ics", 2100));
	holidays_free(&h);
	assert_null(holidays_coverage(NULL, "h.ics", 2100));
	diag_free(&d);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_shipped),
		cmocka_unit_test(test_rrule_duration),
		cmocka_unit_test(test_lf_and_empty),
		cmocka_unit_test(test_errors),
		cmocka_unit_test(test_workday),
		cmocka_unit_test(test_coverage),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
