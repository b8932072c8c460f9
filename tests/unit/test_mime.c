/* test_mime.c - mime.c, the reader of stored messages: encoded words,
 * folded fields, addresses, dates, RFC 2231 names, multipart bounds, and
 * RFC 3464 reports (postfix's and Exchange's layouts). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "cutoffd.h"

static void
words(const char *in, const char *want)
{
	char *got = mime_decode_words(in, strlen(in));

	assert_string_equal(got, want);
	free(got);
}

static void
test_encoded_words(void **state)
{
	(void)state;
	words("=?UTF-8?B?QsOhbyBjw6FvIHF1w70gSQ==?=", "Báo cáo quý I");
	words("=?utf-8?q?B=C3=A1o_c=C3=A1o?=", "Báo cáo");
	/* white space between two encoded words goes (RFC 2047 6.2) */
	words("=?UTF-8?Q?B=C3=A1o_?=  =?UTF-8?Q?c=C3=A1o?=", "Báo cáo");
	/* but not between a word and plain text */
	words("Re: =?UTF-8?Q?qu=C3=BD?= I", "Re: quý I");
	words("=?ISO-8859-1?Q?Cam_=F5n?=", "Cam õn");
	/* a charset we do not decode stays as written */
	words("=?KOI8-R?B?9MXT1A==?=", "=?KOI8-R?B?9MXT1A==?=");
	/* broken: no end, bad encoding */
	words("=?UTF-8?Q?abc", "=?UTF-8?Q?abc");
	words("=?UTF-8?X?abc?=", "=?UTF-8?X?abc?=");
	/* control characters and invalid UTF-8 never come out */
	words("=?UTF-8?Q?a=0Ab=1Bc=FF?=", "a b?c?");
	words("plain \xff text", "plain ? text");
}

static void
test_addr_date(void **state)
{
	char *a;
	tstamp t;

	(void)state;
	a = mime_addr("=?UTF-8?Q?Ph=C3=B2ng?= <TuPhap@Example.VN>");
	assert_string_equal(a, "tuphap@example.vn");
	free(a);
	a = mime_addr("\"Doe, <John>\" <j@x.vn>");
	assert_string_equal(a, "j@x.vn");
	free(a);
	a = mime_addr("MAILER-DAEMON@mx.example.vn (Mail Delivery System)");
	assert_string_equal(a, "mailer-daemon@mx.example.vn");
	free(a);
	assert_null(mime_addr("undisclosed-recipients:;"));
	assert_null(mime_addr("<a b@c>"));
	assert_int_equal(mime_date("Mon, 11 Mar 2024 09:13:58 +0700", &t), 0);
	assert_int_equal(t, 1710123238);
	assert_int_equal(mime_date("6 Mar 2024 01:00:19 GMT", &t), 0);
	assert_int_equal(t, 1709686819);
	assert_int_equal(mime_date("Wed,  6 Mar 2024 08:00:12 +0700 (+07)",
				   &t), 0);
	assert_int_equal(t, 1709686812);
	assert_int_equal(mime_date("Fri, 1 Mar 24 10:00 -0500", &t), 0);
	assert_int_equal(t, 1709305200);
	assert_int_equal(mime_date("31 Feb 2024 10:00 +0000", &t), -1);
	assert_int_equal(mime_date("yesterday", &t), -1);
}

static const char reply[] =
	"From: Ph <tp@example.vn>\r\n"
	"Subject: =?UTF-8?B?UmU6IELDoW8gY8OhbyBxdcO9IEk=?=\r\n"
	"Message-ID: <m1@x>\r\n"
	"In-Reply-To: <r1@cutoffd>\r\n"
	"References: <r0@cutoffd>\r\n <r1@cutoffd> <bad id@x>\r\n"
	"Date: Mon, 11 Mar 2024 09:13:58 +0700\r\n"
	"Content-Type: multipart/mixed; boundary=\"b\"\r\n"
	"\r\n"
	"preamble\r\n"
	"--b\r\n"
	"Content-Type: text/plain\r\n\r\nhello\r\n"
	"--bx\r\n"                       /* not a delimiter */
	"--b\r\n"
	"Content-Type: application/pdf\r\n"
	"Content-Disposition: attachment;\r\n"
	" filename*0*=UTF-8''B%C3%A1o%20c%C3%A1o;\r\n"
	" filename*1=\" q1.pdf\"\r\n\r\n"
	"JVBERi0=\r\n"
	"--b\r\n"
	"Content-Type: application/vnd.ms-excel; name=\"=?UTF-8?Q?b=E1=BA=A3ng.xls?=\"\r\n\r\n"
	"x\r\n"
	"--b--\r\n"
	"epilogue\r\n";

static void
test_reply(void **state)
{
	struct mime_msg m;

	(void)state;
	assert_int_equal(mime_parse(reply, strlen(reply), &m), 0);
	assert_string_equal(m.message_id, "<m1@x>");
	assert_int_equal(m.nrefs, 2);
	assert_string_equal(m.refs[0], "<r1@cutoffd>");
	assert_string_equal(m.refs[1], "<r0@cutoffd>");
	assert_string_equal(m.from, "tp@example.vn");
	assert_string_equal(m.subject, "Re: Báo cáo quý I");
	assert_true(m.has_date);
	assert_false(m.auto_reply);
	assert_false(m.dsn);
	assert_int_equal(m.nfiles, 2);
	assert_string_equal(m.files[0], "Báo cáo q1.pdf");
	assert_string_equal(m.files[1], "bảng.xls");
	mime_clear(&m);
}

static void
test_auto(void **state)
{
	static const char *const yes[] = {
		"Auto-Submitted: auto-replied\r\n",
		"Auto-Submitted: Auto-Generated (vacation)\r\n",
		"X-Autoreply: yes\r\n",
		"Precedence: bulk\r\n",
		"Precedence: auto_reply\r\n",
		"List-Id: <x.lists>\r\n",
	};
	static const char *const no[] = {
		"Auto-Submitted: no\r\n",
		"Auto-Submitted:  No ; comment\r\n",
		"Precedence: first-class\r\n",
	};
	struct mime_msg m;

	(void)state;
	for (size_t i = 0; i < sizeof(yes) / sizeof(yes[0]); i++) {
		char *s = xasprintf("From: a@b\r\n%s\r\nbody", yes[i]);

		assert_int_equal(mime_parse(s, strlen(s), &m), 0);
		assert_true(m.auto_reply);
		mime_clear(&m);
		free(s);
	}
	for (size_t i = 0; i < sizeof(no) / sizeof(no[0]); i++) {
		char *s = xasprintf("From: a@b\r\n%s\r\nbody", no[i]);

		assert_int_equal(mime_parse(s, strlen(s), &m), 0);
		assert_false(m.auto_reply);
		mime_clear(&m);
		free(s);
	}
}

/* RFC 3464's layout, as postfix writes it, with LF line ends. */
static const char dsn[] =
	"From: MAILER-DAEMON@mx (Mail Delivery System)\n"
	"Content-Type: multipart/report; report-type=\"delivery-status\";\n"
	"\tboundary=\"B.1/mx\"\n"
	"\n"
	"--B.1/mx\n"
	"Content-Type: text/plain\n\nsorry\n\n"
	"--B.1/mx\n"
	"Content-Type: message/delivery-status\n\n"
	"Reporting-MTA: dns; mx\n"
	"Arrival-Date: Wed,  6 Mar 2024 08:00:11 +0700\n\n"
	"Final-Recipient: rfc822; A@Example.vn\n"
	"Action: failed\n"
	"Status: 5.1.1 (user unknown)\n"
	"Diagnostic-Code: smtp; 550 5.1.1 <a@example.vn>: Recipient\n"
	"    address rejected\n\n"
	"Final-Recipient: rfc822; b@example.vn\n"
	"Action: delayed\n"
	"Status: 4.4.1\n\n"
	"--B.1/mx\n"
	"Content-Type: text/rfc822-headers\n\n"
	"From: tt@example.vn\n"
	"Message-ID: <orig.1@cutoffd>\n"
	"\n"
	"--B.1/mx--\n";

static void
test_dsn(void **state)
{
	struct mime_msg m;
	char *b64;

	(void)state;
	assert_int_equal(mime_parse(dsn, strlen(dsn), &m), 0);
	assert_true(m.dsn);
	assert_string_equal(m.dsn_orig_id, "<orig.1@cutoffd>");
	assert_int_equal(m.nrcpt, 2);
	assert_string_equal(m.rcpt[0].recipient, "a@example.vn");
	assert_string_equal(m.rcpt[0].action, "failed");
	assert_string_equal(m.rcpt[0].status, "5.1.1");
	assert_string_equal(m.rcpt[0].diagnostic,
			    "550 5.1.1 <a@example.vn>: Recipient    address "
			    "rejected");
	assert_string_equal(m.rcpt[1].action, "delayed");
	assert_null(m.rcpt[1].diagnostic);
	mime_clear(&m);

	/* a report part in base64 (some gateways) reads the same */
	b64 = xstrdup(
		"Content-Type: multipart/report; report-type=delivery-status; "
		"boundary=x\n\n--x\nContent-Type: message/delivery-status\n"
		"Content-Transfer-Encoding: base64\n\n"
		"UmVwb3J0aW5nLU1UQTogZG5zOyBteAoKRmluYWwtUmVjaXBpZW50OiByZmM4"
		"MjI7IGNAZXhhbXBsZS52bgpBY3Rpb246IGZhaWxlZApTdGF0dXM6IDUuMi4y"
		"Cg==\n--x--\n");
	assert_int_equal(mime_parse(b64, strlen(b64), &m), 0);
	assert_true(m.dsn);
	assert_int_equal(m.nrcpt, 1);
	assert_string_equal(m.rcpt[0].recipient, "c@example.vn");
	assert_string_equal(m.rcpt[0].status, "5.2.2");
	mime_clear(&m);
	free(b64);
	/* a delivery-status part outside a report is not a report */
	b64 = xstrdup("Content-Type: multipart/mixed; boundary=x\n\n--x\n"
		      "Content-Type: message/delivery-status\n\n"
		      "Final-Recipient: rfc822; d@e\nAction: failed\n--x--\n");
	assert_int_equal(mime_parse(b64, strlen(b64), &m), 0);
	assert_false(m.dsn);
	assert_int_equal(m.nrcpt, 0);
	mime_clear(&m);
	free(b64);
}

/* Bounds: deep nesting, many parts, a header over the limit. */
static void
test_bounds(void **state)
{
	struct buf b;
	struct mime_msg m;

	(void)state;
	buf_init(&b);
	buf_puts(&b, "From: a@b\r\n");
	for (int i = 0; i < 50; i++)
		buf_printf(&b, "Content-Type: multipart/mixed; boundary=b%d\r\n"
			   "\r\n--b%d\r\n", i, i);
	buf_puts(&b, "Content-Type: text/plain; name=deep.txt\r\n\r\nx\r\n");
	assert_int_equal(mime_parse(b.p, b.len, &m), 0);
	assert_int_equal(m.nfiles, 0);     /* deeper than DEPTH_MAX */
	mime_clear(&m);
	buf_reset(&b);
	buf_puts(&b, "From: a@b\r\nContent-Type: multipart/mixed; "
		 "boundary=z\r\n\r\n");
	for (int i = 0; i < 300; i++)
		buf_printf(&b, "--z\r\nContent-Disposition: attachment; "
			   "filename=f%d.pdf\r\n\r\nx\r\n", i);
	assert_int_equal(mime_parse(b.p, b.len, &m), 0);
	assert_int_equal(m.nfiles, MIME_MAX_FILES);
	mime_clear(&m);
	buf_reset(&b);
	buf_puts(&b, "Subject: ");
	for (int i = 0; i < 100000; i++)
		buf_puts(&b, "=?UTF-8?Q?a?= ");
	buf_puts(&b, "\r\n\r\n");
	assert_int_equal(mime_parse(b.p, b.len, &m), 0);
	assert_true(strlen(m.subject) <= 8192);
	mime_clear(&m);
	buf_free(&b);
	{
		char *w = mime_decode_words("=?UTF-8?Q?a?=", 13);

		assert_string_equal(w, "a");
		free(w);
	}
	assert_int_equal(mime_parse("no header here", 14, &m), -1);
}

static void
test_bodystructure(void **state)
{
	static const char bs[] =
		"((\"text\" \"plain\" (\"charset\" \"utf-8\") NIL NIL \"7bit\" 3 1"
		" NIL NIL NIL NIL)(\"application\" \"octet-stream\" (\"name\""
		" \"big.bin\") NIL NIL \"base64\" 2000000 NIL (\"attachment\""
		" (\"filename\" \"big.bin\")) NIL NIL)(\"application\" \"pdf\" NIL"
		" NIL NIL \"base64\" 10 NIL (\"attachment\" (\"filename*0*\""
		" \"UTF-8''B%C3%A1o%20c%C3%A1o\" \"filename*1\" \" q1.pdf\")) NIL"
		" NIL)(\"text\" \"plain\" (\"name\" {10}\r\nl\"it\"\\.txt) NIL NIL"
		" \"7bit\" 1 1 NIL NIL NIL NIL) \"mixed\" (\"boundary\" \"zz\")"
		" NIL NIL NIL)";
	struct mime_msg m;

	(void)state;
	memset(&m, 0, sizeof(m));
	mime_bodystructure_files(bs, strlen(bs), &m);
	assert_int_equal(m.nfiles, 3);
	assert_string_equal(m.files[0], "big.bin");
	assert_string_equal(m.files[1], "Báo cáo q1.pdf");
	assert_string_equal(m.files[2], "l\"it\"\\.txt");
	mime_clear(&m);
	/* unbalanced, truncated, a literal longer than the input */
	mime_bodystructure_files("((((\"name\" {99}\r\nab", 20, &m);
	assert_int_equal(m.nfiles, 0);
	mime_clear(&m);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_encoded_words),
		cmocka_unit_test(test_addr_date),
		cmocka_unit_test(test_reply),
		cmocka_unit_test(test_auto),
		cmocka_unit_test(test_dsn),
		cmocka_unit_test(test_bounds),
		cmocka_unit_test(test_bodystructure),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
