/* Unit tests for hook.c: webhook JSON and the Standard Webhooks signature,
 * checked against an HMAC computed independently by Python. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <curl/curl.h>
#include <jansson.h>

#include "cutoffd.h"
#include "fixture.h"


static const char conf_text[] =
	"[daemon]\n"
	"timezone = Asia/Ho_Chi_Minh\n"
	"public_url = http://127.0.0.1:8470\n"
	"[mail]\n"
	"transport = maildir\n"
	"maildir = mail\n"
	"from = Thường trực Ban Chỉ đạo <thuongtruc@example.vn>\n"
	"[secretariat]\n"
	"name = Công an Thành phố - Thường trực Ban Chỉ đạo\n"
	"email = thuongtruc@example.vn\n"
	"chief = truongban@example.vn\n"
	"[policy standard]\n"
	"at = 08:00\n"
	"remind = -7d -3d -1d 0d\n"
	"escalate = +1d head, +3d head secretariat, +7d chief\n"
	"[cycle q1]\n"
	"title = Báo cáo quý I\n"
	"due = 03-13\n"
	"period = 12-15 .. 03-13\n"
	"policy = standard\n"
	"units = *\n"
	"[cycle h1]\n"
	"title = Báo cáo sơ kết 6 tháng\n"
	"due = 06-13\n"
	"time = 17:00\n"
	"policy = standard\n"
	"units = *\n"
	"[unit p-tan-loi]\n"
	"name = Ban Chỉ đạo phường Tân Lợi\n"
	"email = bcd.tanloi@example.vn\n"
	"webhook = http://127.0.0.1:8471/hooks/tan-loi\n";

/* The key, as raw bytes, and the same as hex for Python. */
static const unsigned char key[] = "k\x00\x01\xfe secret key \xff";
#define KEY_LEN (sizeof key - 1)


static int
setup(void **state)
{
	*state = fix_new(conf_text);
	return 0;
}

static int
teardown(void **state)
{
	fix_free(*state);
	return 0;
}

static void
notice_init(struct notice *n, const char *occ, const char *step,
	    enum audience aud)
{
	memset(n, 0, sizeof *n);
	n->id = 42;
	snprintf(n->occurrence, sizeof n->occurrence, "%s", occ);
	snprintf(n->unit, sizeof n->unit, "p-tan-loi");
	snprintf(n->step, sizeof n->step, "%s", step);
	n->aud = aud;
	n->ch = CH_WEBHOOK;
	n->recipients = xstrdup("http://127.0.0.1:8471/hooks/tan-loi");
	snprintf(n->message_id, sizeof n->message_id,
		 "<%s.p-tan-loi.%s.webhook@cutoffd.test>", occ, step);
}

static const char *
header(const struct curl_slist *h, const char *name)
{
	size_t n = strlen(name);

	for (; h != NULL; h = h->next)
		if (strncmp(h->data, name, n) == 0 && h->data[n] == ':')
			return h->data + n + 2;
	return NULL;
}

static size_t
header_count(const struct curl_slist *h)
{
	size_t n = 0;

	for (; h != NULL; h = h->next)
		n++;
	return n;
}

/* HMAC-SHA256 of "id.ts.body" by Python's hmac module, "v1,<base64>" */
static char *
py_signature(const struct fix *f, const char *id, const char *ts,
	     const char *body)
{
	char *bpath = xasprintf("%s/body", f->dir);
	char hex[2 * KEY_LEN + 1];
	char *cmd;
	char line[256];
	FILE *fp;

	for (size_t i = 0; i < KEY_LEN; i++)
		snprintf(hex + 2 * i, 3, "%02x", key[i]);
	fp = fopen(bpath, "wb");
	assert_non_null(fp);
	fputs(body, fp);
	fclose(fp);
	cmd = xasprintf("/usr/bin/python3 -c 'import sys, hmac, hashlib, base64; "
			"k = bytes.fromhex(sys.argv[1]); "
			"msg = sys.argv[2].encode() + b\".\" + sys.argv[3].encode() + "
			"b\".\" + open(sys.argv[4], \"rb\").read(); "
			"print(\"v1,\" + base64.b64encode(hmac.new(k, msg, "
			"hashlib.sha256).digest()).decode())' %s '%s' %s '%s'",
			hex, id, ts, bpath);
	fp = popen(cmd, "r");
	assert_non_null(fp);
	assert_non_null(fgets(line, sizeof line, fp));
	assert_int_equal(pclose(fp), 0);
	line[strcspn(line, "\n")] = '\0';
	free(cmd);
	free(bpath);
	return xstrdup(line);
}

static void
test_signed_reminder(void **state)
{
	struct fix *f = *state;
	struct notice n;
	struct curl_slist *h = NULL;
	struct ymd day = { 2024, 3, 10 };
	tstamp now = tz_mktime(f->c->tz, day, 8 * 60);
	char *body, *want, ts[32];
	json_t *j;
	json_error_t jerr;

	f->c->webhook.secret = xmalloc(KEY_LEN);
	memcpy(f->c->webhook.secret, key, KEY_LEN);
	f->c->webhook.secret_len = KEY_LEN;
	notice_init(&n, "q1/2024-03-13", "remind-3d", AUD_UNIT);
	body = hook_build(f->c, f->db, &n, now, &h);
	assert_non_null(body);
	assert_non_null(h);
	assert_int_equal(header_count(h), 5);
	assert_string_equal(header(h, "Content-Type"), "application/json");
	assert_string_equal(header(h, "User-Agent"), "cutoffd/" CUTOFFD_VERSION);
	assert_string_equal(header(h, "webhook-id"),
			    "q1/2024-03-13.p-tan-loi.remind-3d.webhook@cutoffd.test");
	snprintf(ts, sizeof ts, "%lld", (long long)now);
	assert_string_equal(header(h, "webhook-timestamp"), ts);
	want = py_signature(f, header(h, "webhook-id"), ts, body);
	assert_string_equal(header(h, "webhook-signature"), want);
	free(want);

	j = json_loads(body, 0, &jerr);
	assert_non_null(j);
	assert_string_equal(json_string_value(json_object_get(j, "event")), "reminder");
	assert_string_equal(json_string_value(json_object_get(j, "unit")), "p-tan-loi");
	assert_string_equal(json_string_value(json_object_get(j, "unit_name")),
			    "Ban Chỉ đạo phường Tân Lợi");
	assert_string_equal(json_string_value(json_object_get(j, "occurrence")),
			    "q1/2024-03-13");
	assert_string_equal(json_string_value(json_object_get(j, "cycle")), "q1");
	assert_string_equal(json_string_value(json_object_get(j, "title")), "Báo cáo quý I");
	assert_string_equal(json_string_value(json_object_get(j, "due")),
			    "2024-03-13T23:59:59+07:00");
	assert_string_equal(json_string_value(json_object_get(j, "due_date")), "2024-03-13");
	assert_int_equal(json_integer_value(json_object_get(j, "days")), -3);
	assert_string_equal(json_string_value(json_object_get(j, "step")), "remind-3d");
	assert_non_null(strstr(json_string_value(json_object_get(j, "text")),
			       "Kính gửi: Ban Chỉ đạo phường Tân Lợi\n"));
	assert_non_null(strstr(json_string_value(json_object_get(j, "feed_url")),
			       "http://127.0.0.1:8470/units/p-tan-loi.ics?token="));
	json_decref(j);
	curl_slist_free_all(h);
	free(body);
	notice_clear(&n);
}

static void
test_escalation_unsigned_and_text(void **state)
{
	struct fix *f = *state;
	struct notice n;
	struct curl_slist *h = NULL;
	struct ymd day = { 2024, 6, 14 };
	tstamp now = tz_mktime(f->c->tz, day, 8 * 60);
	char *body;
	json_t *j;
	json_error_t jerr;

	notice_init(&n, "h1/2024-06-13", "escalate+1d", AUD_HEAD);
	body = hook_build(f->c, f->db, &n, now, &h);
	assert_non_null(body);
	assert_int_equal(header_count(h), 2);
	assert_null(header(h, "webhook-signature"));
	j = json_loads(body, 0, &jerr);
	assert_non_null(j);
	assert_string_equal(json_string_value(json_object_get(j, "event")), "escalation");
	assert_int_equal(json_integer_value(json_object_get(j, "days")), 1);
	/* a due time of 17:00 is that instant */
	assert_string_equal(json_string_value(json_object_get(j, "due")),
			    "2024-06-13T17:00:00+07:00");
	json_decref(j);
	curl_slist_free_all(h);
	free(body);

	/* format = text: {"text": subject + body} only */
	f->c->webhook.format = HOOK_TEXT;
	h = NULL;
	body = hook_build(f->c, f->db, &n, now, &h);
	assert_non_null(body);
	j = json_loads(body, 0, &jerr);
	assert_non_null(j);
	assert_int_equal(json_object_size(j), 1);
	assert_non_null(strstr(json_string_value(json_object_get(j, "text")),
			       "V/v chậm gửi Báo cáo sơ kết 6 tháng đầu năm 2024 – Ban Chỉ đạo phường Tân Lợi\n\n"));
	json_decref(j);
	curl_slist_free_all(h);
	free(body);
	notice_clear(&n);

	/* an unknown occurrence: NULL, headers untouched */
	notice_init(&n, "h1/2024-06-12", "escalate+1d", AUD_HEAD);
	h = NULL;
	assert_null(hook_build(f->c, f->db, &n, now, &h));
	assert_null(h);
	notice_clear(&n);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_signed_reminder, setup, teardown),
		cmocka_unit_test_setup_teardown(test_escalation_unsigned_and_text,
						setup, teardown),
	};

	log_init("test_hook", 0);
	return cmocka_run_group_tests_name("hook", tests, NULL, NULL);
}
