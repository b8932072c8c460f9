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
	/* 2024: 1 + 7 + 1 + 3 + 4; 2025: 1 + 9 + 1 + 5 + 4; 2026: 1 + 9 + 2 + 2 + 2 */
	assert_int_equal(h.n, 16 + 20 + 16);
	for (size_t i = 1; i < h.n; i++)
		assert_true(h.days[i - 1] < h.days[i]);

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

	assert_false(holidays_has(&h, day(2026, 2, 13)));
	assert_true(holidays_has(&h, day(2026, 2, 14)));
	assert_true(holidays_has(&h, day(2026, 2, 22)));
	assert_false(holidays_has(&h, day(2026, 2, 23)));
	assert_true(holidays_has(&h, day(2026, 4, 27)));
	assert_true(holidays_has(&h, day(2026, 9, 1)));
	assert_true(holidays_has(&h, day(2026, 9, 2)));
	assert_false(holidays_has(&h, day(2026, 9, 3)));
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
	struct holidays h = { (int64_t *)0x1, 42 };
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

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_shipped),
		cmocka_unit_test(test_rrule_duration),
		cmocka_unit_test(test_lf_and_empty),
		cmocka_unit_test(test_errors),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
