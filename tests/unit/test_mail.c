/* Unit tests for mail.c: QP, RFC 2047 headers checked by Python's email
 * parser, header injection, Maildir delivery. */
#include <dirent.h>
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
#include <jansson.h>
#include <openssl/evp.h>

#include "cutoffd.h"
#include "fixture.h"


#define LONG_TITLE "Báo cáo quý I năm 2024 về công tác phòng, chống tội phạm, " \
	"tệ nạn xã hội và bảo vệ an ninh Tổ quốc"

static const char conf_text[] =
	"[daemon]\n"
	"timezone = Asia/Ho_Chi_Minh\n"
	"public_url = http://127.0.0.1:8470\n"
	"[mail]\n"
	"transport = maildir\n"
	"maildir = mail\n"
	"from = Thường trực Ban Chỉ đạo 138 Thành phố <thuongtruc@example.vn>\n"
	"[secretariat]\n"
	"name = Công an Thành phố - Thường trực Ban Chỉ đạo\n"
	"email = thuongtruc@example.vn\n"
	"chief = truongban@example.vn\n"
	"[policy standard]\n"
	"at = 08:00\n"
	"remind = -7d -3d -1d 0d\n"
	"escalate = +1d head, +3d head secretariat, +7d chief\n"
	"[cycle q1]\n"
	"title = " LONG_TITLE "\n"
	"due = 03-13\n"
	"period = 12-15 .. 03-13\n"
	"policy = standard\n"
	"units = *\n"
	"[cycle ke-hoach]\n"
	"title = Kế hoạch triển khai\n"
	"due = 2023-08-15\n"
	"policy = standard\n"
	"[unit tu-phap]\n"
	"name = Phòng Tư pháp\n"
	"email = tuphap@example.vn, vanthu.tuphap@example.vn\n"
	"head = truongphong.tuphap@example.vn\n"
	"[unit gd-dt]\n"
	"name = Phòng Giáo dục và Đào tạo\n"
	"email = gddt@example.vn\n"
	"head = truongphong.gddt@example.vn\n";

/* Decodes a message with Python's own email package (policy=default) and
 * prints what a mail client would show, as JSON. */
static const char py_decode[] =
	"import sys, json, email, email.policy\n"
	"raw = open(sys.argv[1], 'rb').read()\n"
	"m = email.message_from_bytes(raw, policy=email.policy.default)\n"
	"f = m['From'].addresses[0]\n"
	"defects = [str(d) for d in m.defects]\n"
	"for k, v in m.items():\n"
	"    defects += [k + ': ' + str(d) for d in getattr(v, 'defects', ())]\n"
	"print(json.dumps({'subject': str(m['Subject']),\n"
	"    'from_name': f.display_name, 'from_addr': f.addr_spec,\n"
	"    'to': [a.addr_spec for a in m['To'].addresses],\n"
	"    'to_name': m['To'].addresses[0].display_name,\n"
	"    'date': m['Date'].datetime.isoformat(),\n"
	"    'message_id': m['Message-ID'],\n"
	"    'auto': m['Auto-Submitted'],\n"
	"    'body': m.get_body().get_content().replace('\\r\\n', '\\n'),\n"
	"    'defects': defects}))\n";


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

static tstamp
at(const struct conf *c, int y, int m, int d, int hh, int mm)
{
	struct ymd day = { y, m, d };

	return tz_mktime(c->tz, day, hh * 60 + mm);
}

static void
notice_init(struct notice *n, const char *unit, const char *step,
	    enum audience aud, const char *rcpt)
{
	memset(n, 0, sizeof *n);
	snprintf(n->occurrence, sizeof n->occurrence, "q1/2024-03-13");
	snprintf(n->unit, sizeof n->unit, "%s", unit);
	snprintf(n->step, sizeof n->step, "%s", step);
	n->aud = aud;
	n->ch = CH_EMAIL;
	n->recipients = xstrdup(rcpt);
	snprintf(n->message_id, sizeof n->message_id,
		 "<q1-2024-03-13.%s.%s@cutoffd.test>", unit, step);
}

/* Writes msg to a file, runs the Python decoder, returns its JSON. */
static json_t *
py_parse(const struct fix *f, const char *msg, size_t len)
{
	char *mpath = xasprintf("%s/msg.eml", f->dir);
	char *spath = xasprintf("%s/decode.py", f->dir);
	char *cmd = xasprintf("/usr/bin/python3 '%s' '%s'", spath, mpath);
	FILE *fp;
	struct buf out;
	char chunk[4096];
	size_t r;
	json_error_t jerr;
	json_t *j;

	fp = fopen(mpath, "wb");
	assert_non_null(fp);
	assert_int_equal(fwrite(msg, 1, len, fp), len);
	fclose(fp);
	fp = fopen(spath, "w");
	assert_non_null(fp);
	fputs(py_decode, fp);
	fclose(fp);
	fp = popen(cmd, "r");
	assert_non_null(fp);
	buf_init(&out);
	for (;;) {
		r = fread(chunk, 1, sizeof chunk, fp);
		if (r == 0)
			break;
		buf_add(&out, chunk, r);
	}
	assert_int_equal(pclose(fp), 0);
	j = json_loads(buf_str(&out), 0, &jerr);
	if (j == NULL)
		print_error("python said: %s\n", buf_str(&out));
	assert_non_null(j);
	buf_free(&out);
	free(mpath);
	free(spath);
	free(cmd);
	return j;
}

static const char *
jstr(json_t *j, const char *key)
{
	const char *s = json_string_value(json_object_get(j, key));

	assert_non_null(s);
	return s;
}

/* every line ends in CRLF and is at most 78 (header) / 76 (body) long */
static void
check_lines(const char *msg, size_t len)
{
	const char *p = msg, *end = msg + len;
	bool body = false;

	while (p < end) {
		const char *nl = memchr(p, '\n', (size_t)(end - p));
		size_t n;

		assert_non_null(nl);
		assert_true(nl > p && nl[-1] == '\r');
		n = (size_t)(nl - p) - 1;
		if (n > (body ? 76u : 78u))
			print_error("line too long: %.*s\n", (int)n, p);
		assert_true(n <= (body ? 76u : 78u));
		for (const char *k = p; k < nl - 1; k++)
			assert_true((unsigned char)*k >= 0x20 && (unsigned char)*k < 0x7f);
		if (n == 0)
			body = true;
		p = nl + 1;
	}
	assert_true(body);
}

/* every encoded-word of the message's headers holds whole UTF-8 characters
 * and is at most 75 characters long (RFC 2047) */
static void
check_encoded_words(const char *msg)
{
	const char *hend = strstr(msg, "\r\n\r\n");
	const char *p = msg;
	int words = 0;

	assert_non_null(hend);
	for (p = strstr(p, "=?UTF-8?B?"); p != NULL && p < hend;
	     p = strstr(p, "=?UTF-8?B?")) {
		const char *b = p + 10, *e = strstr(b, "?=");
		unsigned char out[128];
		int n, pad = 0;

		assert_non_null(e);
		assert_true(e + 2 - p <= 75);
		assert_true((e - b) % 4 == 0 && e - b < 160);
		n = EVP_DecodeBlock(out, (const unsigned char *)b, (int)(e - b));
		assert_true(n >= 0);
		if (e - b >= 1 && e[-1] == '=')
			pad++;
		if (e - b >= 2 && e[-2] == '=')
			pad++;
		assert_true(utf8_valid((const char *)out, (size_t)(n - pad)));
		words++;
		p = e + 2;
	}
	assert_true(words > 2);
}

/* a QP decoder of our own, only to test round trips */
static char *
qp_decode(const char *s)
{
	struct buf b;

	buf_init(&b);
	buf_add(&b, "", 0);
	while (*s) {
		if (s[0] == '=' && s[1] == '\r' && s[2] == '\n') {
			s += 3;
		} else if (s[0] == '=') {
			unsigned v;

			assert_int_equal(sscanf(s + 1, "%2X", &v), 1);
			buf_putc(&b, (char)v);
			s += 3;
		} else {
			buf_putc(&b, *s++);
		}
	}
	return buf_steal(&b);
}

/* The first encoder (one byte at a time through buf_putc), kept as the
 * reference the table-driven one must match byte for byte. */
static void
qp_reference(struct buf *out, const char *text, size_t len)
{
	static const char hx[] = "0123456789ABCDEF";
	size_t i = 0;

	buf_add(out, "", 0);
	while (i <= len) {
		size_t end = i, col = 0;

		while (end < len && text[end] != '\n')
			end++;
		size_t stop = (end > i && text[end - 1] == '\r') ? end - 1 : end;

		if (i == len)
			break;
		for (size_t k = i; k < stop; k++) {
			unsigned char c = (unsigned char)text[k];
			bool last = k + 1 == stop;
			bool lit = (c >= 33 && c <= 126 && c != '=') ||
				   ((c == ' ' || c == '\t') && !last);
			size_t tok = lit ? 1 : 3;
			size_t limit = last ? 76 : 75;

			if (col + tok > limit) {
				buf_puts(out, "=\r\n");
				col = 0;
			}
			if (lit) {
				buf_putc(out, (char)c);
			} else {
				buf_putc(out, '=');
				buf_putc(out, hx[c >> 4]);
				buf_putc(out, hx[c & 15]);
			}
			col += tok;
		}
		buf_puts(out, "\r\n");
		i = end + 1;
	}
}

static void
test_qp_matches_reference(void **state)
{
	static const char alphabet[] = "ab =\t\r\n\xc3\xa1\x01\x7f~!";
	char text[600];
	uint64_t x = 88172645463325252ULL;
	(void)state;

	for (int round = 0; round < 3000; round++) {
		size_t len = (size_t)(round % 600);
		struct buf a, b;

		for (size_t i = 0; i < len; i++) {
			x ^= x << 13;
			x ^= x >> 7;
			x ^= x << 17;
			/* long runs of one class, to reach the 76-column edges */
			text[i] = (x % 7 == 0) ? alphabet[x % (sizeof alphabet - 1)] :
				  (round & 1 ? 'x' : '=');
		}
		buf_init(&a);
		buf_init(&b);
		mail_qp_encode(&a, text, len);
		qp_reference(&b, text, len);
		assert_int_equal(a.len, b.len);
		assert_memory_equal(buf_str(&a), buf_str(&b), a.len);
		buf_free(&a);
		buf_free(&b);
	}
}

static void
test_qp_roundtrip(void **state)
{
	struct buf enc, want;
	char *dec;
	const char *text =
		"Kính gửi: Phòng Tư pháp\n"
		"Thực hiện chế độ thông tin, báo cáo của Ban Chỉ đạo, Công an Thành phố "
		"- Thường trực Ban Chỉ đạo trân trọng đề nghị quý đơn vị gửi Báo cáo quý I "
		"trước 13/03/2024 23:59 (còn 7 ngày).   \n"
		"a=b, tab\tend\t\n"
		"\n"
		"x\n";
	(void)state;

	buf_init(&enc);
	mail_qp_encode(&enc, text, strlen(text));
	/* only printable ASCII, CRLF, lines <= 76 */
	for (const char *p = enc.p, *nl; *p; p = nl + 2) {
		nl = strstr(p, "\r\n");
		assert_non_null(nl);
		assert_true(nl - p <= 76);
		for (const char *k = p; k < nl; k++)
			assert_true((*k >= 0x20 && *k < 0x7f) || *k == '\t');
		/* no white space before a hard line end */
		if (nl > p)
			assert_true(nl[-1] != ' ' && nl[-1] != '\t');
	}
	dec = qp_decode(enc.p);
	buf_init(&want);
	for (const char *p = text; *p; p++) {
		if (*p == '\n')
			buf_putc(&want, '\r');
		buf_putc(&want, *p);
	}
	assert_string_equal(dec, want.p);
	free(dec);
	buf_free(&enc);
	buf_free(&want);
}

static void
test_remind_message(void **state)
{
	struct fix *f = *state;
	struct notice n, *ns[1] = { &n };
	struct notice_text nt;
	tstamp now = at(f->c, 2024, 3, 6, 8, 0);
	size_t len = 0;
	char *msg, *token = NULL, *feed;
	json_t *j, *to;

	notice_init(&n, "tu-phap", "remind-7d", AUD_UNIT,
		    "tuphap@example.vn,vanthu.tuphap@example.vn");
	msg = mail_build(f->c, f->db, ns, 1, now, &len);
	assert_non_null(msg);
	assert_int_equal(strlen(msg), len);
	check_lines(msg, len);
	check_encoded_words(msg);
	assert_non_null(strstr(msg, "\r\nMIME-Version: 1.0\r\n"));
	assert_non_null(strstr(msg, "\r\nContent-Type: text/plain; charset=utf-8\r\n"));
	assert_non_null(strstr(msg, "\r\nX-Auto-Response-Suppress: All\r\n"));
	assert_non_null(strstr(msg, "\r\nX-Cutoffd-Notice: q1/2024-03-13 tu-phap remind-7d\r\n"));
	assert_non_null(strstr(msg, "\r\nDate: Wed, 06 Mar 2024 08:00:00 +0700\r\n"));

	assert_int_equal(notice_render(f->c, f->db, ns, 1, now, &nt), 0);
	assert_int_equal(nt.kind, TMPL_REMIND);
	assert_int_equal(nt.days, -7);
	assert_false(nt.escalation);

	j = py_parse(f, msg, len);
	assert_int_equal(json_array_size(json_object_get(j, "defects")), 0);
	assert_string_equal(jstr(j, "subject"),
			    "Nhắc gửi " LONG_TITLE " – hạn 13/03/2024");
	assert_string_equal(jstr(j, "subject"), nt.subject);
	assert_string_equal(jstr(j, "from_name"), "Thường trực Ban Chỉ đạo 138 Thành phố");
	assert_string_equal(jstr(j, "from_addr"), "thuongtruc@example.vn");
	assert_string_equal(jstr(j, "message_id"), n.message_id);
	assert_string_equal(jstr(j, "auto"), "auto-generated");
	assert_string_equal(jstr(j, "date"), "2024-03-06T08:00:00+07:00");
	to = json_object_get(j, "to");
	assert_int_equal(json_array_size(to), 2);
	assert_string_equal(json_string_value(json_array_get(to, 1)),
			    "vanthu.tuphap@example.vn");
	assert_string_equal(jstr(j, "body"), nt.body);
	assert_non_null(strstr(nt.body, "Kính gửi: Phòng Tư pháp\n"));
	/* end of day reads 24:00, as on the status page and in the plans
	 * ("trước 24 giờ ngày ..."); 23:59 would be a minute early */
	assert_non_null(strstr(nt.body, "trước 13/03/2024 24:00 (còn 7 ngày)"));
	assert_non_null(strstr(nt.body, "Thời gian lấy số liệu: 15/12/2023 – 13/03/2024"));
	assert_int_equal(db_unit_token(f->db, "tu-phap", &token), 0);
	feed = xasprintf("http://127.0.0.1:8470/units/tu-phap.ics?token=%s", token);
	assert_string_equal(nt.feed_url, feed);
	assert_non_null(strstr(nt.body, feed));
	free(feed);
	free(token);
	json_decref(j);
	notice_text_clear(&nt);
	free(msg);
	notice_clear(&n);
	notice_clear(&n);
}

/* The render cache: a second unit of the same (occurrence, step, audience,
 * day) gets its own name, id and feed token, never the first one's; a new
 * day re-renders; a cleared cache gives the same text. */
static void
test_render_cache(void **state)
{
	struct fix *f = *state;
	struct notice a, b, *na[1] = { &a }, *nb[1] = { &b };
	struct notice_text ta, tb, tb2, tc;
	tstamp now = at(f->c, 2024, 3, 6, 8, 0);
	char *tok_a = NULL, *tok_b = NULL;

	notice_init(&a, "tu-phap", "remind-7d", AUD_UNIT, "tuphap@example.vn");
	notice_init(&b, "gd-dt", "remind-7d", AUD_UNIT, "gddt@example.vn");
	assert_int_equal(db_unit_token(f->db, "tu-phap", &tok_a), 0);
	assert_int_equal(db_unit_token(f->db, "gd-dt", &tok_b), 0);
	assert_int_equal(notice_render(f->c, f->db, na, 1, now, &ta), 0);
	assert_int_equal(notice_render(f->c, f->db, nb, 1, now, &tb), 0);
	assert_non_null(strstr(ta.body, "Kính gửi: Phòng Tư pháp\n"));
	assert_non_null(strstr(tb.body, "Kính gửi: Phòng Giáo dục và Đào tạo\n"));
	assert_string_equal(ta.subject, tb.subject);
	assert_null(strstr(tb.body, "Tư pháp"));
	assert_non_null(strstr(tb.body, tok_b));
	assert_null(strstr(tb.body, tok_a));
	assert_non_null(strstr(ta.body, tok_a));
	assert_string_equal(tb.feed_url + strlen(tb.feed_url) - strlen(tok_b),
			    tok_b);
	assert_non_null(strstr(tb.body, "còn 7 ngày"));
	/* the body assembled from lines encoded once is the body encoded */
	{
		struct notice_text *all[2] = { &ta, &tb };

		for (int i = 0; i < 2; i++) {
			struct buf q;

			buf_init(&q);
			mail_qp_encode(&q, all[i]->body, strlen(all[i]->body));
			assert_non_null(all[i]->body_qp);
			assert_int_equal(all[i]->body_qp_len, q.len);
			assert_memory_equal(all[i]->body_qp, q.p, q.len);
			buf_free(&q);
		}
	}
	notice_cache_clear(f->c);
	assert_int_equal(notice_render(f->c, f->db, nb, 1, now, &tb2), 0);
	assert_string_equal(tb.subject, tb2.subject);
	assert_string_equal(tb.body, tb2.body);
	/* a day later the same step reads one day less */
	assert_int_equal(notice_render(f->c, f->db, nb, 1, now + 86400, &tc), 0);
	assert_non_null(strstr(tc.body, "còn 6 ngày"));
	notice_text_clear(&ta);
	notice_text_clear(&tb);
	notice_text_clear(&tb2);
	notice_text_clear(&tc);
	free(tok_a);
	free(tok_b);
	notice_clear(&a);
	notice_clear(&b);
}

static void
test_escalation_and_digest(void **state)
{
	struct fix *f = *state;
	struct notice a, b, *ns[2] = { &a, &b };
	struct notice_text nt;
	tstamp now = at(f->c, 2024, 3, 16, 8, 0);
	size_t len = 0;
	char *msg;
	json_t *j;

	/* +3d to the head: the escalate template */
	notice_init(&a, "tu-phap", "escalate+3d", AUD_HEAD,
		    "truongphong.tuphap@example.vn");
	assert_int_equal(notice_render(f->c, f->db, ns, 1, now, &nt), 0);
	assert_int_equal(nt.kind, TMPL_ESCALATE);
	assert_true(nt.escalation);
	assert_int_equal(nt.days, 3);
	assert_non_null(strstr(nt.subject, "Phòng Tư pháp"));
	assert_non_null(strstr(nt.body, "quá hạn kể từ 14/03/2024 00:00, đã 3 ngày"));
	notice_text_clear(&nt);
	notice_clear(&a);

	/* +3d to the secretariat, two late units: one digest */
	notice_init(&a, "tu-phap", "escalate+3d", AUD_SECRETARIAT,
		    "thuongtruc@example.vn");
	notice_init(&b, "gd-dt", "escalate+3d", AUD_SECRETARIAT,
		    "thuongtruc@example.vn");
	msg = mail_build(f->c, f->db, ns, 2, now, &len);
	assert_non_null(msg);
	check_lines(msg, len);
	assert_non_null(strstr(msg, "\r\nX-Cutoffd-Notice: q1/2024-03-13 gd-dt escalate+3d\r\n"));
	j = py_parse(f, msg, len);
	assert_int_equal(json_array_size(json_object_get(j, "defects")), 0);
	assert_non_null(strstr(jstr(j, "subject"), "2 đơn vị"));
	assert_non_null(strstr(jstr(j, "body"),
			       "- Phòng Tư pháp (tu-phap): quá hạn 3 ngày\n"
			       "- Phòng Giáo dục và Đào tạo (gd-dt): quá hạn 3 ngày\n"));
	assert_non_null(strstr(jstr(j, "body"), "http://127.0.0.1:8470/calendar.ics"));
	json_decref(j);
	free(msg);
	notice_clear(&a);
	notice_clear(&b);
}

static void
test_header_injection(void **state)
{
	struct fix *f = *state;
	struct notice n, *ns[1] = { &n };
	tstamp now = at(f->c, 2024, 3, 6, 8, 0);
	size_t len = 0;
	char *from;

	notice_init(&n, "tu-phap", "remind-7d", AUD_UNIT,
		    "tuphap@example.vn\r\nBcc: evil@example.org");
	assert_null(mail_build(f->c, f->db, ns, 1, now, &len));
	notice_clear(&n);
	notice_init(&n, "tu-phap", "remind-7d", AUD_UNIT, "tuphap@example.vn\n");
	assert_null(mail_build(f->c, f->db, ns, 1, now, &len));
	notice_clear(&n);
	notice_init(&n, "tu-phap", "remind-7d", AUD_UNIT, "a b@example.vn");
	assert_null(mail_build(f->c, f->db, ns, 1, now, &len));
	notice_clear(&n);

	notice_init(&n, "tu-phap", "remind-7d", AUD_UNIT, "tuphap@example.vn");
	snprintf(n.message_id, sizeof n.message_id, "<a@b>\r\nBcc: x@y");
	assert_null(mail_build(f->c, f->db, ns, 1, now, &len));
	snprintf(n.message_id, sizeof n.message_id, "<a@b>");
	from = f->c->mail.from;
	f->c->mail.from = xstrdup("X <x@example.vn>\nBcc: y@example.vn");
	assert_null(mail_build(f->c, f->db, ns, 1, now, &len));
	free(f->c->mail.from);
	f->c->mail.from = from;
	/* unknown unit or occurrence: NULL, not a crash */
	snprintf(n.unit, sizeof n.unit, "nope");
	assert_null(mail_build(f->c, f->db, ns, 1, now, &len));
	snprintf(n.unit, sizeof n.unit, "tu-phap");
	snprintf(n.occurrence, sizeof n.occurrence, "q1/2024-03-14");
	assert_null(mail_build(f->c, f->db, ns, 1, now, &len));
	notice_clear(&n);
	notice_clear(NULL);
}

static void
test_ascii_from(void **state)
{
	struct fix *f = *state;
	struct notice n, *ns[1] = { &n };
	tstamp now = at(f->c, 2024, 3, 6, 8, 0);
	size_t len = 0;
	char *msg, *from = f->c->mail.from;
	json_t *j;

	f->c->mail.from = xstrdup("Steering Committee, Office <office@example.vn>");
	notice_init(&n, "tu-phap", "remind-7d", AUD_UNIT, "tuphap@example.vn");
	msg = mail_build(f->c, f->db, ns, 1, now, &len);
	assert_non_null(msg);
	assert_true(strncmp(msg, "From: \"Steering Committee, Office\" "
			    "<office@example.vn>\r\n", 50) == 0);
	j = py_parse(f, msg, len);
	assert_string_equal(jstr(j, "from_name"), "Steering Committee, Office");
	json_decref(j);
	free(msg);
	free(f->c->mail.from);
	f->c->mail.from = from;
	notice_clear(&n);
}

/* Addresses in the configuration may carry a display name ("Name
 * <addr>"): the To header keeps it, encoded, and stays one mailbox. */
static void
test_named_recipients(void **state)
{
	struct fix *f = *state;
	struct notice n, *ns[1] = { &n };
	tstamp now = at(f->c, 2024, 3, 6, 8, 0);
	size_t len = 0;
	char *msg;
	json_t *j, *to;

	notice_init(&n, "tu-phap", "remind-7d", AUD_UNIT,
		    "Phòng Tư pháp Thành phố (văn thư) <tuphap@example.vn>,"
		    "vanthu.tuphap@example.vn, Van Thu <a@example.vn>");
	msg = mail_build(f->c, f->db, ns, 1, now, &len);
	assert_non_null(msg);
	check_lines(msg, len);
	j = py_parse(f, msg, len);
	assert_int_equal(json_array_size(json_object_get(j, "defects")), 0);
	to = json_object_get(j, "to");
	assert_int_equal(json_array_size(to), 3);
	assert_string_equal(json_string_value(json_array_get(to, 0)),
			    "tuphap@example.vn");
	assert_string_equal(json_string_value(json_array_get(to, 1)),
			    "vanthu.tuphap@example.vn");
	assert_string_equal(json_string_value(json_array_get(to, 2)),
			    "a@example.vn");
	assert_string_equal(jstr(j, "to_name"),
			    "Phòng Tư pháp Thành phố (văn thư)");
	json_decref(j);
	free(msg);
	notice_clear(&n);
}

/* A one-off date with the default period (previous) has no earlier due
 * date: the data period is "up to" its date, never a blank field. */
static void
test_period_without_previous(void **state)
{
	struct fix *f = *state;
	struct notice n, *ns[1] = { &n };
	struct notice_text nt;
	tstamp now = at(f->c, 2023, 8, 8, 8, 0);

	notice_init(&n, "tu-phap", "remind-7d", AUD_UNIT, "tuphap@example.vn");
	snprintf(n.occurrence, sizeof n.occurrence, "ke-hoach/2023-08-15");
	assert_int_equal(notice_render(f->c, f->db, ns, 1, now, &nt), 0);
	assert_null(strstr(nt.body, "Thời gian lấy số liệu: \n"));
	assert_non_null(strstr(nt.body,
			       "Thời gian lấy số liệu: đến ngày 15/08/2023\n"));
	notice_text_clear(&nt);
	notice_clear(&n);
}

static size_t
count_files(const char *dir)
{
	DIR *d = opendir(dir);
	struct dirent *e;
	size_t n = 0;

	assert_non_null(d);
	for (e = readdir(d); e != NULL; e = readdir(d))
		if (e->d_name[0] != '.')
			n++;
	closedir(d);
	return n;
}

static void
test_maildir(void **state)
{
	struct fix *f = *state;
	char *md = xasprintf("%s/var/mail", f->dir);
	char *sub;
	struct stat st;
	const char msg[] = "Subject: x\r\n\r\nbody\r\n";
	tstamp now = 1709686800;
	(void)state;

	assert_int_equal(maildir_deliver(md, msg, strlen(msg), now), 0);
	sub = xasprintf("%s/new", md);
	assert_int_equal(count_files(sub), 1);
	assert_int_equal(stat(sub, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0700);
	free(sub);
	sub = xasprintf("%s/tmp", md);
	assert_int_equal(count_files(sub), 0);
	free(sub);
	sub = xasprintf("%s/cur", md);
	assert_int_equal(count_files(sub), 0);
	free(sub);
	/* a second one at the same second gets its own name */
	assert_int_equal(maildir_deliver(md, msg, strlen(msg), now), 0);
	sub = xasprintf("%s/new", md);
	assert_int_equal(count_files(sub), 2);
	free(sub);
	/* a maildir that cannot be created: -1 */
	free(md);
	md = xasprintf("%s/state.db/mail", f->dir);
	assert_int_equal(maildir_deliver(md, msg, strlen(msg), now), -1);
	free(md);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_qp_roundtrip),
		cmocka_unit_test(test_qp_matches_reference),
		cmocka_unit_test_setup_teardown(test_render_cache, setup, teardown),
		cmocka_unit_test_setup_teardown(test_remind_message, setup, teardown),
		cmocka_unit_test_setup_teardown(test_escalation_and_digest, setup, teardown),
		cmocka_unit_test_setup_teardown(test_header_injection, setup, teardown),
		cmocka_unit_test_setup_teardown(test_ascii_from, setup, teardown),
		cmocka_unit_test_setup_teardown(test_named_recipients, setup, teardown),
		cmocka_unit_test_setup_teardown(test_period_without_previous, setup, teardown),
		cmocka_unit_test_setup_teardown(test_maildir, setup, teardown),
	};

	log_init("test_mail", 0);
	return cmocka_run_group_tests_name("mail", tests, NULL, NULL);
}
