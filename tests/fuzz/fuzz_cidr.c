/* fuzz_cidr.c - libFuzzer target: any bytes through cidr_parse, the
 * parser of `metrics_allow`.  What it accepts must print and parse back to
 * the same range, and contain its own network address. */
#include <netinet/in.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "cutoffd.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct cidr c, again;
	const char *why = NULL;
	char *s, text[80];

	if (size > 256)
		return 0;
	s = xstrndup((const char *)data, size);
	if (cidr_parse(s, &c, &why) == 0) {
		struct sockaddr_in6 s6;
		struct sockaddr_in s4;
		const struct sockaddr *sa;

		if ((c.family != AF_INET && c.family != AF_INET6) || c.bits < 0 ||
		    c.bits > (c.family == AF_INET ? 32 : 128))
			__builtin_trap();
		cidr_format(&c, text, sizeof(text));
		if (cidr_parse(text, &again, &why) != 0 ||
		    memcmp(&c, &again, sizeof(c)) != 0)
			__builtin_trap();
		memset(&s4, 0, sizeof(s4));
		memset(&s6, 0, sizeof(s6));
		if (c.family == AF_INET) {
			s4.sin_family = AF_INET;
			memcpy(&s4.sin_addr, c.addr, 4);
			sa = (const struct sockaddr *)&s4;
		} else {
			s6.sin6_family = AF_INET6;
			memcpy(&s6.sin6_addr, c.addr, 16);
			sa = (const struct sockaddr *)&s6;
		}
		if (!cidr_match(&c, 1, sa))
			__builtin_trap();
	} else if (why == NULL || *why == '\0') {
		__builtin_trap();
	}
	free(s);
	return 0;
}
