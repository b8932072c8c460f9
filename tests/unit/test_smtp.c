/* test_smtp.c - what smtp.c reads and writes on the wire: server replies
 * (single, multi-line, pipelined, incomplete, malformed) and the message
 * text with its dots stuffed. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "cutoffd.h"

static ssize_t
parse(const char *s, int *code, char *line, size_t size)
{
	size_t ls = 0, ll = 0;
	ssize_t r = smtp_reply_parse(s, strlen(s), code, &ls, &ll);

	if (r > 0)
		snprintf(line, size, "%.*s", (int)ll, s + ls);
	return r;
}

static void
test_replies(void **state)
{
	char line[600];
	int code = 0;
	const char *pipe = "250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n354 go ahead\r\n";
	const char *multi = "550-5.1.1 no such\r\n550-5.1.1 user\r\n"
			    "550 5.1.1 here\r\n250 next";

	(void)state;
	assert_int_equal(parse("250 2.0.0 Ok: queued as X\r\n", &code, line,
			       sizeof(line)), 27);
	assert_int_equal(code, 250);
	assert_string_equal(line, "250 2.0.0 Ok: queued as X");
	/* pipelined: one reply at a time, from the front */
	assert_int_equal(parse(pipe, &code, line, sizeof(line)), 14);
	assert_string_equal(line, "250 2.1.0 Ok");
	assert_int_equal(parse(pipe + 28, &code, line, sizeof(line)), 14);
	assert_int_equal(code, 354);
	/* multi-line: the last line speaks for it; what follows waits */
	assert_int_equal(parse(multi, &code, line, sizeof(line)), 51);
	assert_int_equal(code, 550);
	assert_string_equal(line, "550 5.1.1 here");
	assert_int_equal(parse(multi + 51, &code, line, sizeof(line)), 0);
	/* a bare code, a bare LF */
	assert_int_equal(parse("221\r\n", &code, line, sizeof(line)), 5);
	assert_int_equal(code, 221);
	assert_int_equal(parse("250 ok\n", &code, line, sizeof(line)), 7);
	/* incomplete */
	assert_int_equal(parse("", &code, line, sizeof(line)), 0);
	assert_int_equal(parse("250-first\r\n", &code, line, sizeof(line)), 0);
	assert_int_equal(parse("25", &code, line, sizeof(line)), 0);
}

static void
test_malformed(void **state)
{
	static const char *bad[] = {
		"25O ok\r\n", "ok\r\n", "\r\n", "099 low\r\n", "600 high\r\n",
		"250x no separator\r\n", "250-a\r\n354 other code\r\n",
		"25\r\n",
	};
	char line[64], *longline;
	int code;

	(void)state;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		assert_int_equal(parse(bad[i], &code, line, sizeof(line)), -1);
	/* a line without end beyond the limit is an error, not a wait */
	longline = malloc(SMTP_LINE_MAX + 10);
	memset(longline, 'a', SMTP_LINE_MAX + 9);
	memcpy(longline, "250 ", 4);
	longline[SMTP_LINE_MAX + 9] = '\0';
	assert_int_equal(parse(longline, &code, line, sizeof(line)), -1);
	free(longline);
}

static const char *
stuffed(struct buf *b, const char *text)
{
	buf_reset(b);
	smtp_put_text(b, text, strlen(text));
	return buf_str(b);
}

static void
test_dot_stuffing(void **state)
{
	struct buf b;

	(void)state;
	buf_init(&b);
	assert_string_equal(stuffed(&b, "Subject: x\r\n\r\nhi\r\n"),
			    "Subject: x\r\n\r\nhi\r\n.\r\n");
	assert_string_equal(stuffed(&b, ".\r\n..two\r\nmid.dle\r\n.\r\n"),
			    "..\r\n...two\r\nmid.dle\r\n..\r\n.\r\n");
	/* a text that does not end its last line gets CRLF first */
	assert_string_equal(stuffed(&b, "a\r\n.b"), "a\r\n..b\r\n.\r\n");
	assert_string_equal(stuffed(&b, ""), ".\r\n");
	buf_free(&b);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_replies),
		cmocka_unit_test(test_malformed),
		cmocka_unit_test(test_dot_stuffing),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
