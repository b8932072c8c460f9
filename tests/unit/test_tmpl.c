/* Unit tests for tmpl.c: template parsing, errors with FILE:LINE, render. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "cutoffd.h"

#ifndef TEMPLATES_DIR
#define TEMPLATES_DIR "conf/templates"
#endif

static const char good[] =
	"Subject: Nhắc gửi {{title}} – hạn {{due_date}}\n"
	"\n"
	"Kính gửi: {{unit}}\n"
	"Đề nghị quý đơn vị gửi báo cáo trước {{ due }}.\n"
	"{{units}}\n";

static char *
mktempdir(void)
{
	char tmpl[] = "/tmp/cutoffd-tmpl-XXXXXX";
	char *d = mkdtemp(tmpl);

	assert_non_null(d);
	return xstrdup(d);
}

static void
write_text(const char *path, const char *text)
{
	FILE *f = fopen(path, "w");

	assert_non_null(f);
	fputs(text, f);
	fclose(f);
}

static void
rm_rf(const char *dir)
{
	char *cmd = xasprintf("rm -rf '%s'", dir);

	assert_int_equal(system(cmd), 0);
	free(cmd);
}

/* a template dir <tmp>/vi with the three files */
static char *
make_dir(const char *remind, const char *escalate, const char *digest)
{
	char *dir = mktempdir(), *p;

	p = xasprintf("%s/vi", dir);
	assert_int_equal(mkdir(p, 0700), 0);
	free(p);
	if (remind != NULL) {
		p = xasprintf("%s/vi/remind.txt", dir);
		write_text(p, remind);
		free(p);
	}
	if (escalate != NULL) {
		p = xasprintf("%s/vi/escalate.txt", dir);
		write_text(p, escalate);
		free(p);
	}
	if (digest != NULL) {
		p = xasprintf("%s/vi/digest.txt", dir);
		write_text(p, digest);
		free(p);
	}
	return dir;
}

static bool
diag_has(const struct diag *d, const char *msg)
{
	for (size_t i = 0; i < d->n; i++)
		if (strcmp(d->msg[i], msg) == 0)
			return true;
	return false;
}

static void
dump(const struct diag *d)
{
	for (size_t i = 0; i < d->n; i++)
		print_message("diag: %s\n", d->msg[i]);
}

static void
test_shipped_templates_load(void **state)
{
	struct diag d;
	(void)state;

	diag_init(&d);
	for (int i = 0; i < 2; i++) {
		struct tmplset *t = tmpl_load(TEMPLATES_DIR, i ? "en" : "vi", &d);

		dump(&d);
		assert_non_null(t);
		tmpl_free(t);
	}
	assert_int_equal(d.n, 0);
	diag_free(&d);
}

static void
test_good_dir(void **state)
{
	struct diag d;
	struct tmplset *t;
	char *dir = make_dir(good, good, good);
	(void)state;

	diag_init(&d);
	t = tmpl_load(dir, "vi", &d);
	dump(&d);
	assert_non_null(t);
	assert_int_equal(d.n, 0);
	tmpl_free(t);
	diag_free(&d);
	rm_rf(dir);
	free(dir);
}

static void
test_unknown_placeholder(void **state)
{
	struct diag d;
	char *dir = make_dir(good,
			     "Subject: Quá hạn {{title}}\n\nKính gửi {{unit}}\n\n"
			     "Hạn {{due}}, {{deu_date}}.\n", good);
	char *want = xasprintf("%s/vi/escalate.txt:5: unknown placeholder {{deu_date}}",
			       dir);
	(void)state;

	diag_init(&d);
	assert_null(tmpl_load(dir, "vi", &d));
	dump(&d);
	assert_int_equal(d.n, 1);
	assert_string_equal(d.msg[0], want);
	free(want);
	diag_free(&d);
	rm_rf(dir);
	free(dir);
}

static void
test_unknown_in_subject(void **state)
{
	struct diag d;
	(void)state;

	diag_init(&d);
	assert_null(tmpl_parse_text("x.txt", TMPL_REMIND,
				    "Subject: {{nope}}\n\nbody\n", 24, "vi", &d));
	assert_true(diag_has(&d, "x.txt:1: unknown placeholder {{nope}}"));
	diag_free(&d);
}

static void
test_missing_file(void **state)
{
	struct diag d;
	char *dir = make_dir(good, NULL, good);
	char *want = xasprintf("%s/vi/escalate.txt: cannot read template: "
			       "No such file or directory", dir);
	(void)state;

	diag_init(&d);
	assert_null(tmpl_load(dir, "vi", &d));
	dump(&d);
	assert_int_equal(d.n, 1);
	assert_string_equal(d.msg[0], want);
	free(want);
	diag_free(&d);
	rm_rf(dir);
	free(dir);
}

static void
check_bad(const char *text, const char *want)
{
	struct diag d;

	diag_init(&d);
	assert_null(tmpl_parse_text("t.txt", TMPL_DIGEST, text, strlen(text),
				    "vi", &d));
	dump(&d);
	assert_true(diag_has(&d, want));
	diag_free(&d);
}

static void
test_bad_shapes(void **state)
{
	(void)state;
	check_bad("Subject: a\n\nx {{unit\n", "t.txt:3: unbalanced braces: '{{' without '}}'");
	check_bad("Subject: a\n\nx\ny unit}} z\n", "t.txt:4: unbalanced braces: '}}' without '{{'");
	check_bad("Hello\n\nbody\n", "t.txt:1: the first line must be \"Subject: ...\"");
	check_bad("Subject: a\nsecond subject line\nbody\n",
		  "t.txt:2: line 2 must be blank (the Subject is one line)");
	check_bad("Subject: a\n\n\n\n", "t.txt:3: empty body");
	check_bad("Subject: a", "t.txt:1: a blank line and the body must follow the Subject line");
	check_bad("Subject: {{units}}\n\nx\n",
		  "t.txt:1: {{units}} is a block of lines and cannot be in the Subject");
	check_bad("Subject: a\n\nb\xc3\x28\n", "t.txt:3: template is not valid UTF-8");
	check_bad("Subject: a\n\nb\x01\n", "t.txt:3: control character in template");
	check_bad("Subject:   \n\nb\n", "t.txt:1: empty Subject");
}

static void
test_render(void **state)
{
	struct diag d;
	struct tmplset *t;
	char *subject = NULL, *body = NULL;
	const struct tmpl_var vars[] = {
		{ "title", "Báo cáo quý I" },
		{ "due_date", "13/03/2024" },
		{ "unit", "Phòng Tư pháp" },
		{ "due", "13/03/2024 23:59" },
		{ "units", "- A (a): quá hạn 1 ngày\n- B (b): quá hạn 2 ngày" },
	};
	/* CRLF line ends and a BOM are accepted */
	const char *text = "\xef\xbb\xbfSubject: Nhắc gửi {{title}} – hạn {{due_date}}\r\n"
			   "\r\n"
			   "Kính gửi: {{unit}}\r\n"
			   "Đề nghị quý đơn vị gửi báo cáo trước {{ due }}.\r\n"
			   "{{units}}\r\n\r\n\r\n";
	(void)state;

	diag_init(&d);
	t = tmpl_parse_text("t.txt", TMPL_DIGEST, text, strlen(text), "vi", &d);
	dump(&d);
	assert_non_null(t);
	assert_int_equal(tmpl_render(t, TMPL_DIGEST, vars, 5, &subject, &body), 0);
	assert_string_equal(subject, "Nhắc gửi Báo cáo quý I – hạn 13/03/2024");
	assert_string_equal(body, "Kính gửi: Phòng Tư pháp\n"
			    "Đề nghị quý đơn vị gửi báo cáo trước 13/03/2024 23:59.\n"
			    "- A (a): quá hạn 1 ngày\n- B (b): quá hạn 2 ngày\n");
	free(subject);
	free(body);
	/* kinds not in the set are refused; missing vars render empty */
	assert_int_equal(tmpl_render(t, TMPL_REMIND, vars, 5, &subject, &body), -1);
	assert_int_equal(tmpl_render(t, TMPL_DIGEST, vars, 0, &subject, &body), 0);
	assert_string_equal(subject, "Nhắc gửi  – hạn ");
	free(subject);
	free(body);
	tmpl_free(t);
	tmpl_free(NULL);
	diag_free(&d);
}

static void
test_subject_stays_one_line(void **state)
{
	struct diag d;
	struct tmplset *t;
	char *subject, *body;
	const struct tmpl_var vars[] = { { "title", "a\r\nBcc: x@y" } };
	const char *text = "Subject: {{title}}\n\n{{title}}\n";
	(void)state;

	diag_init(&d);
	t = tmpl_parse_text("t.txt", TMPL_REMIND, text, strlen(text), "vi", &d);
	assert_non_null(t);
	assert_int_equal(tmpl_render(t, TMPL_REMIND, vars, 1, &subject, &body), 0);
	assert_string_equal(subject, "a  Bcc: x@y");
	assert_string_equal(body, "a\r\nBcc: x@y\n");
	free(subject);
	free(body);
	tmpl_free(t);
	diag_free(&d);
}

/* 0.2's per-audience files fall back on 0.1's; with neither, both the
 * file and its fallback are named */
static void
test_missing_digest_and_fallback(void **state)
{
	struct diag d;
	char *dir = make_dir(good, good, NULL);
	char *want = xasprintf("%s/vi/digest-secretariat.txt: cannot read "
			       "template (nor its fallback digest.txt): "
			       "No such file or directory", dir);
	(void)state;

	diag_init(&d);
	assert_null(tmpl_load(dir, "vi", &d));
	dump(&d);
	assert_int_equal(d.n, 2);   /* secretariat's and chief's */
	assert_string_equal(d.msg[0], want);
	free(want);
	diag_free(&d);
	rm_rf(dir);
	free(dir);
}

/* A line whose placeholders are all empty is left out; a line with a
 * literal and one filled placeholder stays, and so does a plain line. */
static void
test_empty_lines_left_out(void **state)
{
	struct diag d;
	struct tmplset *t;
	char *subject, *body;
	const struct tmpl_var vars[] = {
		{ "unit", "U" }, { "ref", "" }, { "period_text", "" },
	};
	const char *text = "Subject: {{ref}}s\n\nA {{ref}}\n"
			   "- x: {{period_text}}{{ref}}\n{{unit}} {{ref}}\n\nB\n"
			   "{{period_text}}\n";
	(void)state;

	diag_init(&d);
	t = tmpl_parse_text("t.txt", TMPL_REMIND, text, strlen(text), "vi", &d);
	assert_non_null(t);
	assert_int_equal(tmpl_render(t, TMPL_REMIND, vars, 3, &subject, &body), 0);
	assert_string_equal(subject, "s");
	assert_string_equal(body, "U \n\nB\n");
	free(subject);
	free(body);
	tmpl_free(t);
	diag_free(&d);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_shipped_templates_load),
		cmocka_unit_test(test_good_dir),
		cmocka_unit_test(test_unknown_placeholder),
		cmocka_unit_test(test_unknown_in_subject),
		cmocka_unit_test(test_missing_file),
		cmocka_unit_test(test_bad_shapes),
		cmocka_unit_test(test_render),
		cmocka_unit_test(test_subject_stays_one_line),
		cmocka_unit_test(test_missing_digest_and_fallback),
		cmocka_unit_test(test_empty_lines_left_out),
	};

	return cmocka_run_group_tests_name("tmpl", tests, NULL, NULL);
}
