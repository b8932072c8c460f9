/* libFuzzer target: template text through the template parser and renderer.
 * Build: clang -fsanitize=fuzzer,address,undefined with the daemon objects
 * (all but main.o and cutoffctl.o). */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include "cutoffd.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const struct tmpl_var vars[] = {
		{ "unit", "Phòng Tư pháp" },
		{ "title", "Báo cáo quý I\r\n" },
		{ "units", "- a (a): quá hạn 1 ngày\n- b (b): quá hạn 2 ngày" },
		{ "due", "13/03/2024 23:59" },
	};
	struct diag d;
	struct tmplset *t;
	char *subject, *body;

	diag_init(&d);
	t = tmpl_parse_text("fuzz.txt", TMPL_DIGEST, (const char *)data, size,
			    "vi", &d);
	if (t != NULL) {
		if (d.n != 0)
			abort();    /* success means no complaint */
		if (tmpl_render(t, TMPL_DIGEST, vars, 4, &subject, &body) != 0)
			abort();
		/* the subject is one line whatever went in */
		for (const char *p = subject; *p; p++)
			if (*p == '\n' || *p == '\r')
				abort();
		free(subject);
		free(body);
	} else if (d.n == 0) {
		abort();            /* a failure always says why */
	}
	tmpl_free(t);
	diag_free(&d);
	return 0;
}
