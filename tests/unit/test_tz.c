/* test_tz.c - local <-> UTC conversions, DST edges, parsing, formatting. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <libical/ical.h>
#include <string.h>

#include "cutoffd.h"

/* seconds since the epoch of a UTC wall time */
static tstamp
utc(int y, int m, int d, int hh, int mm)
{
	return days_from_civil(y, m, d) * 86400 + hh * 3600 + mm * 60;
}

static struct ymd
D(int y, int m, int d)
{
	struct ymd r = { y, m, d };

	return r;
}

static void
test_load(void **state)
{
	struct tz *tz;

	(void)state;
	tz = tz_load("Asia/Ho_Chi_Minh");
	assert_non_null(tz);
	assert_string_equal(tz_name(tz), "Asia/Ho_Chi_Minh");
	tz_free(tz);
	tz = tz_load("UTC");
	assert_non_null(tz);
	assert_int_equal(tz_mktime(tz, D(2024, 3, 13), 480), utc(2024, 3, 13, 8, 0));
	tz_free(tz);
	assert_null(tz_load("Mars/Olympus_Mons"));
	assert_null(tz_load(""));
	assert_null(tz_load("../../../etc/passwd"));
	assert_null(tz_load("/etc/localtime"));
	assert_null(tz_load("Asia/Ho Chi Minh"));
	assert_null(tz_load(NULL));
	tz_free(NULL);
}

/* tz_offset, and NULL standing for UTC everywhere (a configuration
 * loaded without a zone) */
static void
test_offset_and_utc(void **state)
{
	struct tz *hcm = tz_load("Asia/Ho_Chi_Minh");
	struct tz *ber = tz_load("Europe/Berlin");
	struct ymd d;
	int minute;
	char out[32];

	(void)state;
	assert_int_equal(tz_offset(hcm, 1710300000), 7 * 3600);
	assert_int_equal(tz_offset(ber, 1704067200), 3600);     /* January */
	assert_int_equal(tz_offset(ber, 1719792000), 7200);     /* July */
	assert_int_equal(tz_offset(NULL, 1710300000), 0);
	tz_local(NULL, 1710300000, &d, &minute, NULL);     /* 2024-03-13 03:20 */
	assert_int_equal(d.d, 13);
	assert_int_equal(minute, 3 * 60 + 20);
	tz_format_vn(NULL, 1710300000, out);
	assert_string_equal(out, "13/03/2024 03:20");
	tz_free(hcm);
	tz_free(ber);
}

static void
test_hcm(void **state)
{
	struct tz *tz = tz_load("Asia/Ho_Chi_Minh");
	struct ymd d;
	int minute = -1, second = -1;

	(void)state;
	assert_int_equal(tz_mktime(tz, D(2024, 3, 13), 8 * 60),
			 utc(2024, 3, 13, 1, 0));
	/* 1440 = the next midnight */
	assert_int_equal(tz_mktime(tz, D(2024, 12, 31), 1440),
			 utc(2024, 12, 31, 17, 0));
	assert_int_equal(tz_mktime(tz, D(2024, 12, 31), 1440),
			 tz_mktime(tz, D(2025, 1, 1), 0));
	tz_local(tz, utc(2024, 12, 31, 17, 0), &d, &minute, &second);
	assert_int_equal(d.y, 2025);
	assert_int_equal(d.m, 1);
	assert_int_equal(d.d, 1);
	assert_int_equal(minute, 0);
	assert_int_equal(second, 0);
	tz_local(tz, utc(2024, 2, 29, 16, 59) + 59, &d, &minute, &second);
	assert_int_equal(d.m, 2);
	assert_int_equal(d.d, 29);
	assert_int_equal(minute, 23 * 60 + 59);
	assert_int_equal(second, 59);
	/* before 1970 too */
	assert_int_equal(tz_mktime(tz, D(1969, 12, 31), 0) % 60, 0);
	tz_free(tz);
}

static void
test_berlin_dst(void **state)
{
	struct tz *tz = tz_load("Europe/Berlin");
	struct ymd d;
	int minute, second;

	(void)state;
	assert_non_null(tz);
	assert_int_equal(tz_mktime(tz, D(2024, 1, 15), 480), utc(2024, 1, 15, 7, 0));
	assert_int_equal(tz_mktime(tz, D(2024, 7, 1), 480), utc(2024, 7, 1, 6, 0));
	/* around the spring-forward change (01:00 UTC, 31 March 2024) */
	assert_int_equal(tz_mktime(tz, D(2024, 3, 31), 60), utc(2024, 3, 31, 0, 0));
	assert_int_equal(tz_mktime(tz, D(2024, 3, 31), 180), utc(2024, 3, 31, 1, 0));
	/* 02:30 does not exist: it moves forward to 03:30 CEST */
	assert_int_equal(tz_mktime(tz, D(2024, 3, 31), 150), utc(2024, 3, 31, 1, 30));
	assert_int_equal(tz_mktime(tz, D(2024, 3, 31), 1440), utc(2024, 3, 31, 22, 0));
	/* 02:30 happens twice on 27 October 2024: the first one */
	assert_int_equal(tz_mktime(tz, D(2024, 10, 27), 150), utc(2024, 10, 27, 0, 30));
	assert_int_equal(tz_mktime(tz, D(2024, 10, 27), 240), utc(2024, 10, 27, 3, 0));
	/* far future years keep the rule */
	assert_int_equal(tz_mktime(tz, D(2090, 7, 1), 480), utc(2090, 7, 1, 6, 0));

	tz_local(tz, utc(2024, 3, 31, 0, 59), &d, &minute, &second);
	assert_int_equal(minute, 1 * 60 + 59);
	tz_local(tz, utc(2024, 3, 31, 1, 0), &d, &minute, &second);
	assert_int_equal(minute, 3 * 60);
	tz_local(tz, utc(2024, 10, 27, 1, 30), &d, &minute, &second);
	assert_int_equal(minute, 2 * 60 + 30);
	tz_local(tz, utc(2024, 12, 31, 23, 0), &d, &minute, &second);
	assert_int_equal(d.y, 2025);
	assert_int_equal(minute, 0);
	tz_free(tz);
}

static void
test_round_trip(void **state)
{
	const char *zones[] = { "Europe/Berlin", "Asia/Ho_Chi_Minh", "America/New_York" };

	(void)state;
	for (size_t z = 0; z < 3; z++) {
		struct tz *tz = tz_load(zones[z]);

		assert_non_null(tz);
		/* every hour of 2024: UTC -> local -> UTC is the identity
		 * except inside repeated hours, where the first wins */
		for (tstamp t = utc(2024, 1, 1, 0, 0); t < utc(2025, 1, 1, 0, 0);
		     t += 3600) {
			struct ymd d;
			int minute, second;
			tstamp back;

			tz_local(tz, t, &d, &minute, &second);
			back = tz_mktime(tz, d, minute) + second;
			assert_true(back == t || back == t - 3600);
		}
		tz_free(tz);
	}
}

static void
test_parse_format(void **state)
{
	struct tz *tz = tz_load("Asia/Ho_Chi_Minh");
	char buf[17];
	tstamp t = 42;

	(void)state;
	assert_int_equal(tz_parse_local(tz, "2024-03-06T07:59", &t), 0);
	assert_int_equal(t, utc(2024, 3, 6, 0, 59));
	assert_int_equal(tz_parse_local(tz, "2024-03-06T07:59:30", &t), 0);
	assert_int_equal(t, utc(2024, 3, 6, 0, 59) + 30);
	assert_int_equal(tz_parse_local(tz, "2024-03-06 07:59", &t), 0);
	assert_int_equal(t, utc(2024, 3, 6, 0, 59));
	assert_int_equal(tz_parse_local(tz, "2024-03-06", &t), 0);
	assert_int_equal(t, utc(2024, 3, 5, 17, 0));
	t = 42;
	assert_int_equal(tz_parse_local(tz, "2024-03-06T24:00", &t), -1);
	assert_int_equal(tz_parse_local(tz, "2024-02-30T07:59", &t), -1);
	assert_int_equal(tz_parse_local(tz, "2024-03-06T7:59", &t), -1);
	assert_int_equal(tz_parse_local(tz, "2024-03-06T07:59Z", &t), -1);
	assert_int_equal(tz_parse_local(tz, "2024-03-06T07:60", &t), -1);
	assert_int_equal(tz_parse_local(tz, "2024-03-06T07:59:", &t), -1);
	assert_int_equal(tz_parse_local(tz, "garbage", &t), -1);
	assert_int_equal(tz_parse_local(tz, "", &t), -1);
	assert_int_equal(t, 42);

	tz_format_iso(tz, utc(2024, 3, 6, 0, 59) + 30, buf);
	assert_string_equal(buf, "2024-03-06T07:59");
	tz_format_vn(tz, utc(2024, 3, 6, 0, 59), buf);
	assert_string_equal(buf, "06/03/2024 07:59");
	tz_format_iso(tz, utc(2024, 12, 31, 17, 0), buf);
	assert_string_equal(buf, "2025-01-01T00:00");
	tz_free(tz);
}

static void
test_vtimezone(void **state)
{
	const char *names[] = { "Asia/Ho_Chi_Minh", "Europe/Berlin", "UTC" };

	(void)state;
	for (size_t i = 0; i < 3; i++) {
		struct tz *tz = tz_load(names[i]);
		icalcomponent *c = tz_vtimezone(tz), *c2;
		icalproperty *p;

		assert_non_null(c);
		assert_int_equal(icalcomponent_isa(c), ICAL_VTIMEZONE_COMPONENT);
		p = icalcomponent_get_first_property(c, ICAL_TZID_PROPERTY);
		assert_non_null(p);
		assert_string_equal(icalproperty_get_tzid(p), names[i]);
		/* a fresh copy each time, owned by the caller */
		c2 = tz_vtimezone(tz);
		assert_ptr_not_equal(c, c2);
		icalcomponent_free(c);
		icalcomponent_free(c2);
		tz_free(tz);
	}
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_load),
		cmocka_unit_test(test_offset_and_utc),
		cmocka_unit_test(test_hcm),
		cmocka_unit_test(test_berlin_dst),
		cmocka_unit_test(test_round_trip),
		cmocka_unit_test(test_parse_format),
		cmocka_unit_test(test_vtimezone),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
