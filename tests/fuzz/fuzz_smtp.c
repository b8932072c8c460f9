/* fuzz_smtp.c - libFuzzer target: any bytes as a server's replies through
 * smtp_reply_parse, the way smtp.c reads them: reply after reply from the
 * front of the buffer.  A reply it accepts must lie inside the input, end
 * in a newline, carry a code 200-599 that its last line starts with, and
 * a longer input must never turn a complete reply into an incomplete one. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "cutoffd.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *buf;
	char *copy;
	size_t off = 0;

	if (size > 65536)
		return 0;
	/* an exact-size copy: ASan sees any read past the end */
	copy = malloc(size ? size : 1);
	if (!copy)
		return 0;
	memcpy(copy, data, size);
	buf = copy;
	while (off < size) {
		int code = 0;
		size_t ls = 0, ll = 0;
		ssize_t r = smtp_reply_parse(buf + off, size - off, &code, &ls,
					     &ll);

		if (r <= 0)
			break;
		if ((size_t)r > size - off || buf[off + (size_t)r - 1] != '\n' ||
		    code < 200 || code > 599 || ls + ll > (size_t)r ||
		    ll < 3 || ll > SMTP_LINE_MAX ||
		    buf[off + ls] != '0' + code / 100 ||
		    buf[off + ls + 1] != '0' + code / 10 % 10 ||
		    buf[off + ls + 2] != '0' + code % 10)
			__builtin_trap();
		/* the same reply, read with only its own bytes, is the same */
		{
			int c2 = 0;
			size_t ls2 = 0, ll2 = 0;

			if (smtp_reply_parse(buf + off, (size_t)r, &c2, &ls2,
					     &ll2) != r || c2 != code ||
			    ls2 != ls || ll2 != ll)
				__builtin_trap();
		}
		off += (size_t)r;
	}
	free(copy);
	return 0;
}
