/*
 * test_label.c - occ_label and occ_period_label (status.c): the titles
 * people read, with their year, from the cycle's title and period preset.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>

#include "cutoffd.h"

static void
check(const char *title, enum period_kind k, const char *rrule,
      struct ymd nominal, bool has_period, struct ymd to, const char *want,
      const char *want_period)
{
	struct cycle cy = { .id = "c", .title = (char *)title, .period = k,
			    .rrule = (char *)rrule };
	struct occ o = { .cycle = &cy, .nominal = nominal, .due = nominal,
			 .has_period = has_period, .period_to = to };
	struct conf c = { .daemon = { .lang = (char *)"vi" } };
	char out[256], per[64];

	/* the notices' words (tmpl.c), which the page shows too */
	occ_label(&c, &o, out, sizeof(out));
	occ_period_label(&c, &o, per, sizeof(per));
	assert_string_equal(out, want);
	assert_string_equal(per, want_period);
}

static void
test_labels(void **state)
{
	(void)state;
	/* the example's titles, fixed periods */
	check("Báo cáo quý I", PERIOD_FIXED, NULL, (struct ymd){ 2024, 3, 13 },
	      true, (struct ymd){ 2024, 3, 13 }, "Báo cáo quý I/2024", "quý I/2024");
	check("Báo cáo quý III", PERIOD_FIXED, NULL, (struct ymd){ 2024, 9, 13 },
	      true, (struct ymd){ 2024, 9, 13 }, "Báo cáo quý III/2024", "quý III/2024");
	check("Báo cáo tổng kết năm", PERIOD_FIXED, NULL,
	      (struct ymd){ 2024, 12, 13 }, true, (struct ymd){ 2024, 12, 13 },
	      "Báo cáo tổng kết năm 2024", "năm 2024");
	check("Báo cáo sơ kết 6 tháng", PERIOD_NONE, NULL,
	      (struct ymd){ 2025, 6, 13 }, false, (struct ymd){ 0, 0, 0 },
	      "Báo cáo sơ kết 6 tháng đầu năm 2025",
	      "06 tháng đầu năm 2025");
	/* a yearly report due in January covers the year before */
	check("Báo cáo năm", PERIOD_YEAR, NULL, (struct ymd){ 2025, 1, 15 },
	      true, (struct ymd){ 2024, 12, 14 }, "Báo cáo năm 2024",
	      "năm 2024");
	/* presets complete a title that stops at "quý" / "tháng" */
	check("Báo cáo quý", PERIOD_QUARTER, NULL, (struct ymd){ 2024, 6, 1 },
	      true, (struct ymd){ 2024, 6, 14 }, "Báo cáo quý II/2024",
	      "quý II/2024");
	check("Báo cáo tháng", PERIOD_MONTH, "FREQ=MONTHLY;BYMONTHDAY=20",
	      (struct ymd){ 2024, 3, 20 }, true, (struct ymd){ 2024, 3, 14 },
	      "Báo cáo tháng 3/2024", "tháng 3/2024");
	check("Báo cáo sơ kết", PERIOD_HALF, NULL, (struct ymd){ 2024, 6, 15 },
	      true, (struct ymd){ 2024, 6, 14 }, "Báo cáo sơ kết 06 tháng đầu năm 2024",
	      "06 tháng đầu năm 2024");
	check("Báo cáo 9 tháng", PERIOD_NINE_MONTHS, NULL,
	      (struct ymd){ 2024, 9, 15 }, true, (struct ymd){ 2024, 9, 14 },
	      "Báo cáo 9 tháng năm 2024", "09 tháng năm 2024");
	check("Báo cáo tổng kết", PERIOD_YEAR, NULL, (struct ymd){ 2024, 12, 15 },
	      true, (struct ymd){ 2024, 12, 14 }, "Báo cáo tổng kết năm 2024",
	      "năm 2024");
	check("Báo cáo", PERIOD_QUARTER, NULL, (struct ymd){ 2024, 3, 13 },
	      true, (struct ymd){ 2024, 3, 14 }, "Báo cáo quý I/2024",
	      "quý I/2024");
	/* a title with its year already, and a rrule monthly without preset */
	check("Kế hoạch 2023", PERIOD_NONE, NULL, (struct ymd){ 2023, 8, 15 },
	      false, (struct ymd){ 0, 0, 0 }, "Kế hoạch 2023", "");
	check("Báo cáo tháng", PERIOD_NONE, "FREQ=MONTHLY;BYMONTHDAY=20",
	      (struct ymd){ 2024, 4, 20 }, false, (struct ymd){ 0, 0, 0 },
	      "Báo cáo tháng 4/2024", "tháng 4/2024");
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_labels),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
