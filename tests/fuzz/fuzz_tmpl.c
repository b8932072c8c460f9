/* libFuzzer target: template text through the template parser and renderer,
 * and any bytes through the quoted-printable encoder (lines of at most 76
 * printable characters, and decoding gives the text back with CRLF line
 * ends).
 * Build: clang -fsanitize=fuzzer,address,undefined with the daemon objects
 * (all but main.o and cutoffctl.o). */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "cutoffd.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int
hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

static void
check_qp(const uint8_t *data, size_t size)
{
	struct buf enc, want, dec;
	size_t i, col = 0;

	buf_init(&enc);
	buf_init(&want);
	buf_init(&dec);
	mail_qp_encode(&enc, (const char *)data, size);
	/* what decoding must give: each line's content, CRLF after it */
	for (i = 0; i < size;) {
		size_t e = i;

		while (e < size && data[e] != '\n')
			e++;
		buf_add(&want, data + i, (e > i && data[e - 1] == '\r' &&
					  e < size) ? e - 1 - i : e - i);
		buf_add(&want, "\r\n", 2);
		i = e + 1;
	}
	buf_add(&want, "", 0);
	for (i = 0; i < enc.len; i++) {
		char c = enc.p[i];

		if (c == '\r') {
			if (i + 1 >= enc.len || enc.p[i + 1] != '\n')
				abort();
			/* no white space right before a line end */
			if (i > 0 && (enc.p[i - 1] == ' ' || enc.p[i - 1] == '\t'))
				abort();
			buf_add(&dec, "\r\n", 2);
			i++;
			col = 0;
			continue;
		}
		if (++col > 76 || (unsigned char)c > 126 ||
		    ((unsigned char)c < 32 && c != '\t'))
			abort();
		if (c != '=') {
			buf_add(&dec, &c, 1);
			continue;
		}
		if (i + 2 < enc.len && enc.p[i + 1] == '\r' &&
		    enc.p[i + 2] == '\n') {
			i += 2;          /* soft break */
			col = 0;
			continue;
		}
		if (i + 2 >= enc.len || hexval(enc.p[i + 1]) < 0 ||
		    hexval(enc.p[i + 2]) < 0)
			abort();
		c = (char)(hexval(enc.p[i + 1]) * 16 + hexval(enc.p[i + 2]));
		buf_add(&dec, &c, 1);
		i += 2;
		col += 2;
	}
	buf_add(&dec, "", 0);
	/* a CR that ends the text without a LF is content, kept as such */
	if (!(size > 0 && data[size - 1] == '\r') &&
	    (dec.len != want.len || memcmp(dec.p, want.p, dec.len) != 0))
		abort();
	buf_free(&enc);
	buf_free(&want);
	buf_free(&dec);
}

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

	check_qp(data, size);
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
