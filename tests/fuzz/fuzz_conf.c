/* fuzz_conf.c - libFuzzer target: any bytes through conf_parse. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include "cutoffd.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct diag d;
	struct conf *c;
	char *s;

	diag_init(&d);
	c = conf_parse("fuzz.conf", (const char *)data, size, CONF_NO_FILES,
		       &d);
	if (c != NULL) {
		/* a valid result must be consistent */
		s = conf_summary(c);
		free(s);
		if (c->nunits > 0 && conf_unit(c, c->units[0].id) == NULL)
			__builtin_trap();
		if (c->ncycles > 0 && conf_cycle(c, c->cycles[0].id) == NULL)
			__builtin_trap();
	}
	conf_free(c);
	diag_free(&d);
	return 0;
}
