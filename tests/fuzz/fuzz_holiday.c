/* fuzz_holiday.c - libFuzzer target: any bytes through holidays_parse.
 *
 *   clang -fsanitize=fuzzer,address,undefined -Idaemon \
 *       tests/fuzz/fuzz_holiday.c daemon/holiday.c daemon/util.c \
 *       $(pkg-config --cflags --libs libical)
 */
#include <stddef.h>
#include <stdint.h>

#include "cutoffd.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct holidays h = { 0 };
	struct diag d;

	diag_init(&d);
	if (holidays_parse("fuzz.ics", (const char *)data, size, &h, &d) == 0) {
		/* the results must be sorted and unique, and no day both
		 * off and worked (CATEGORIES:WORKDAY) */
		for (size_t i = 1; i < h.n; i++)
			if (h.days[i - 1] >= h.days[i])
				__builtin_trap();
		for (size_t i = 1; i < h.nwork; i++)
			if (h.work[i - 1] >= h.work[i])
				__builtin_trap();
		for (size_t i = 0; i < h.nwork; i++)
			if (holidays_has(&h, h.work[i]) ||
			    !holidays_workday(&h, h.work[i]))
				__builtin_trap();
		if (h.last_year != 0 &&
		    (h.last_year < 1900 || h.last_year > 2101))
			__builtin_trap();
		holidays_free(&h);
	}
	diag_free(&d);
	return 0;
}
