/*
 * link.c - the unit's "Đơn vị đã gửi báo cáo" link in its reminders.
 *
 * TOKEN = UNIT "." CYCLE "." YYYY-MM-DD "." MAC, MAC the base64url (no
 * padding) of HMAC-SHA256(key, "cutoffd link v1\n" UNIT "\n" OCCURRENCE).
 * Unit and cycle ids are [a-z0-9_-], so the dots split it unambiguously
 * and the token needs no escaping in a URL or a mail.  The key is 32
 * random bytes made once in the state store (db_link_key).  Nothing else
 * is stored per link: the expiry is computed at each use from the
 * configuration (the policy's `until` after the unit's due date, an
 * extension included), so extending a deadline extends its links.
 *
 * GET /confirm/TOKEN only shows a page (mail scanners fetch every link in
 * a mail: a GET must never change anything).  Its form POSTs back to the
 * same path and records `proposed` (or, with `[policy] link = record`,
 * the submission itself) with source `link`.
 *
 * Cross-site forgery: the token is the capability, and whoever holds it
 * may confirm; what must not happen is another site making a browser that
 * holds the link post it.  A POST is refused when the browser says it is
 * cross-site (Sec-Fetch-Site other than same-origin/none, or an Origin
 * whose host is not the request's Host), and it must carry the form's
 * nonce, an HMAC of the token under the same key with another label:
 * only a page we served has it (a scanner that blindly POSTs does not).
 *
 * Wrong tokens are throttled per client address (throttle.c, the admin
 * login's policy, in a table of the app's own: app->link_throttle): a few
 * free, then a doubling wait during which every request from there gets
 * 429.
 */
#include "cutoffd.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#define LINK_LABEL "cutoffd link v1\n"
#define NONCE_LABEL "cutoffd link form v1\n"
#define LINK_DEFAULT_VALID (31 * 86400)   /* a policy without until */
#define LINK_B64_LEN 43                   /* 32 bytes, unpadded */

/* ------------------------------------------------------------- tokens */

/* base64url without padding (RFC 4648 section 5), through OpenSSL's
 * base64: the URL-safe alphabet differs in two characters only. */
static void
b64url(const unsigned char *in, size_t n, char *out)
{
	unsigned char tmp[4 * ((LINK_MAC_LEN + 2) / 3) + 1];
	int len;

	if (n > LINK_MAC_LEN)
		n = LINK_MAC_LEN;
	len = EVP_EncodeBlock(tmp, in, (int)n);
	while (len > 0 && tmp[len - 1] == '=')
		len--;
	for (int i = 0; i < len; i++)
		out[i] = tmp[i] == '+' ? '-' : tmp[i] == '/' ? '_' : (char)tmp[i];
	out[len] = '\0';
}

/* exactly LINK_B64_LEN characters of the URL-safe alphabet into 32 bytes,
 * in their one canonical spelling (the re-encoding must give them back) */
static int
unb64url(const char *s, unsigned char out[LINK_MAC_LEN])
{
	unsigned char in[LINK_B64_LEN + 2], dec[LINK_MAC_LEN + 3];
	char again[LINK_B64_LEN + 2];

	for (size_t i = 0; i < LINK_B64_LEN; i++) {
		char ch = s[i];

		if (!((ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') ||
		      (ch >= '0' && ch <= '9') || ch == '-' || ch == '_'))
			return -1;
		in[i] = ch == '-' ? '+' : ch == '_' ? '/' : (unsigned char)ch;
	}
	in[LINK_B64_LEN] = '=';           /* 32 bytes: one pad character */
	if (EVP_DecodeBlock(dec, in, LINK_B64_LEN + 1) != LINK_MAC_LEN + 1)
		return -1;
	b64url(dec, LINK_MAC_LEN, again);
	if (memcmp(again, s, LINK_B64_LEN) != 0)
		return -1;
	memcpy(out, dec, LINK_MAC_LEN);
	return 0;
}

static bool
id_char(char ch)
{
	return (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') ||
	       ch == '_' || ch == '-';
}

int
link_parse(const char *tok, size_t len, char unit[72], char occ[OCC_ID_MAX],
	   unsigned char mac[LINK_MAC_LEN])
{
	size_t i = 0, a, ul, cl;
	const char *cy;

	if (tok == NULL || len > LINK_TOKEN_MAX)
		return -1;
	for (a = i; i < len && id_char(tok[i]); i++)
		;
	ul = i - a;
	if (ul == 0 || ul > 64 || i >= len || tok[i] != '.')
		return -1;
	cy = tok + ++i;
	for (a = i; i < len && id_char(tok[i]); i++)
		;
	cl = i - a;
	if (cl == 0 || cl > 64 || i >= len || tok[i] != '.')
		return -1;
	i++;
	/* YYYY-MM-DD, checked as a date by whoever resolves it */
	if (len - i < 11 || tok[i + 4] != '-' || tok[i + 7] != '-' ||
	    tok[i + 10] != '.')
		return -1;
	for (size_t k = 0; k < 10; k++)
		if (k != 4 && k != 7 && (tok[i + k] < '0' || tok[i + k] > '9'))
			return -1;
	if (len - (i + 11) != LINK_B64_LEN ||
	    unb64url(tok + i + 11, mac) < 0)
		return -1;
	memcpy(unit, tok, ul);
	unit[ul] = '\0';
	snprintf(occ, OCC_ID_MAX, "%.*s", (int)cl, cy);
	/* the config's own rule for ids (a leading '-' is none) */
	if (!valid_id(unit) || !valid_id(occ))
		return -1;
	snprintf(occ, OCC_ID_MAX, "%.*s/%.10s", (int)cl, cy, tok + i);
	return 0;
}

static int
mac_of(const unsigned char key[32], const char *label, const char *a,
       const char *b, unsigned char out[LINK_MAC_LEN])
{
	char *msg = xasprintf("%s%s\n%s", label, a, b);
	unsigned int n = 0;
	unsigned char *r;

	r = HMAC(EVP_sha256(), key, 32, (const unsigned char *)msg,
		 strlen(msg), out, &n);
	free(msg);
	return r != NULL && n == LINK_MAC_LEN ? 0 : -1;
}

/* The key, read once per store (a process has one store). */
static int
key_of(struct db *db, bool create, unsigned char key[32])
{
	static struct db *kdb;
	static unsigned char k[32];

	if (db == NULL)
		return -1;
	if (kdb != db) {
		int rc = db_link_key(db, create, k);

		if (rc != 0)
			return rc;
		kdb = db;
	}
	memcpy(key, k, 32);
	return 0;
}

/* "unit.cycle.date.MAC" for occ "cycle/date"; -1 when occ is not of
 * that shape or there is no key */
static int
token_make(struct db *db, const char *unit, const char *occ, char *out,
	   size_t size)
{
	unsigned char key[32], mac[LINK_MAC_LEN];
	char m[LINK_B64_LEN + 1], u2[72], o2[OCC_ID_MAX];
	unsigned char mac2[LINK_MAC_LEN];
	const char *slash = strrchr(occ, '/');
	int n;

	if (slash == NULL || key_of(db, true, key) != 0 ||
	    mac_of(key, LINK_LABEL, unit, occ, mac) < 0)
		return -1;
	OPENSSL_cleanse(key, sizeof key);
	b64url(mac, sizeof mac, m);
	n = snprintf(out, size, "%s.%.*s.%s.%s", unit, (int)(slash - occ), occ,
		     slash + 1, m);
	if (n < 0 || (size_t)n >= size ||
	    link_parse(out, (size_t)n, u2, o2, mac2) < 0)
		return -1;
	return 0;
}

char *
link_url(const struct conf *c, struct db *db, const char *unit,
	 const char *occ)
{
	const char *base = c->daemon.public_url != NULL ? c->daemon.public_url : "";
	char tok[LINK_TOKEN_MAX + 1];

	if (token_make(db, unit, occ, tok, sizeof tok) < 0) {
		log_warn("no confirmation link for %s %s", occ, unit);
		return xstrdup("");
	}
	return xasprintf("%s/confirm/%s", base, tok);
}

/* ----------------------------------------------------------- throttle */

/* Wrong tokens counted per client address (throttle.c, the policy of the
 * admin login); a valid link does not reset the count. */
static void
link_fail(struct app *a, const struct http_req *q, const char *why)
{
	double wait = 0;
	unsigned fails = throttle_fail(a->link_throttle, q->client, &wait);
	struct buf b;

	buf_init(&b);
	buf_put_escaped(&b, q->client != NULL ? q->client : "?", 64);
	log_warn("confirmation link: %s from %s (%u in a row)%s", why,
		 buf_str(&b), fails, wait > 0 ? "; throttled" : "");
	buf_free(&b);
}

/* -------------------------------------------------------------- pages */

static void
page_start(struct http_resp *r, int status, const char *title)
{
	r->status = status;
	r->content_type = DOC_HTML;
	buf_reset(&r->body);
	buf_puts(&r->body, "<!DOCTYPE html>\n<html lang=\"vi\"><head>"
		 "<meta charset=\"utf-8\"><meta name=\"viewport\" "
		 "content=\"width=device-width\"><meta name=\"robots\" "
		 "content=\"noindex\"><title>");
	html_esc(&r->body, title);
	buf_puts(&r->body, "</title><style>body{font-family:sans-serif;"
		 "max-width:40em;margin:2em auto;padding:0 1em}button{"
		 "font-size:1.1em;padding:.5em 1em}</style></head><body><h1>");
	html_esc(&r->body, title);
	buf_puts(&r->body, "</h1>\n");
}

static void
page_end(struct http_resp *r)
{
	buf_puts(&r->body, "</body></html>\n");
	/* the token is in the URL: keep it out of other sites' logs */
	resp_hdr(r, "Referrer-Policy", "no-referrer");
	resp_hdr(r, "Cache-Control", "no-store");
}

static void
plain_page(struct http_resp *r, int status, const char *msg)
{
	page_start(r, status, "cutoffd");
	buf_puts(&r->body, "<p>");
	html_esc(&r->body, msg);
	buf_puts(&r->body, "</p>\n");
	page_end(r);
}

static void
facts(struct http_resp *r, const struct conf *c, const struct unit *u,
      const struct occ *o)
{
	char due[16];

	(void)c;
	ymd_format_vn(o->due, due);
	buf_puts(&r->body, "<p>Đơn vị: <strong>");
	html_esc(&r->body, u->name != NULL ? u->name : u->id);
	buf_puts(&r->body, "</strong></p>\n<p>Báo cáo: <strong>");
	html_esc(&r->body, o->cycle->title != NULL ? o->cycle->title
						    : o->cycle->id);
	buf_puts(&r->body, "</strong></p>\n<p>Hạn gửi: ");
	html_esc(&r->body, due);
	if (o->extended)
		buf_puts(&r->body, " (đã gia hạn)");
	buf_puts(&r->body, "</p>\n");
}

/* ------------------------------------------------------------ handler */

struct proposal_scan {
	bool proposed;
};

static int
scan_event(void *ctx, const struct ledger_event *e)
{
	struct proposal_scan *ps = ctx;

	if (e->unit[0] == '\0')
		return 0;           /* an occurrence-wide extension */
	if (strcmp(e->action, "proposed") == 0 &&
	    strcmp(e->source, "link") == 0)
		ps->proposed = true;
	else if (strcmp(e->action, "undo") == 0 ||
		 strcmp(e->action, "rejected") == 0)
		ps->proposed = false;   /* a new round may propose again */
	return 0;
}

/* Sec-Fetch-Site and Origin say a browser sent this from our own page:
 * Origin is the request's Host, or public_url's origin (a reverse proxy
 * may pass its own Host) */
static bool
same_site(const struct conf *c, const struct http_req *q)
{
	const char *o = q->origin, *h, *pu = c->daemon.public_url;

	if (q->sec_fetch_site != NULL &&
	    strcmp(q->sec_fetch_site, "same-origin") != 0 &&
	    strcmp(q->sec_fetch_site, "none") != 0)
		return false;
	if (o == NULL)
		return true;
	if (pu != NULL && strncasecmp(pu, o, strlen(o)) == 0 &&
	    (pu[strlen(o)] == '\0' || pu[strlen(o)] == '/'))
		return true;
	if (q->host == NULL)
		return false;
	/* scheme://host[:port], compared to the Host header */
	h = strstr(o, "://");
	if (h == NULL)
		return false;
	return strcmp(h + 3, q->host) == 0;
}

void
link_route(struct app *a, const struct http_req *q, struct http_resp *r,
	   const char *rest)
{
	const struct conf *c = a->conf;
	tstamp now = clock_now(&a->clk);
	char unit[72], occ[OCC_ID_MAX], nonce[LINK_B64_LEN + 1];
	unsigned char mac[LINK_MAC_LEN], want[LINK_MAC_LEN], key[32];
	const struct unit *u;
	struct occ o;
	struct submission sub;
	struct proposal_scan ps = { false };
	struct form fm = { .n = 0 };
	bool post = req_method_is(q, "POST");
	int64_t valid;
	int wait, rc;

	if (!post && !req_is_get(q)) {
		resp_not_allowed(r, "GET, HEAD, POST", false);
		return;
	}
	if ((wait = throttle_wait(a->link_throttle, q->client)) > 0) {
		plain_page(r, 429, "Quá nhiều yêu cầu sai từ địa chỉ này. "
			   "Hãy thử lại sau ít phút.");
		r->retry_after = wait;
		return;
	}
	if (rest[0] != '/' ||
	    link_parse(rest + 1, strlen(rest + 1), unit, occ, mac) < 0) {
		link_fail(a, q, "malformed token");
		plain_page(r, 403, "Đường dẫn xác nhận không hợp lệ.");
		return;
	}
	rc = key_of(a->db, false, key);
	if (rc < 0) {
		plain_page(r, 503, "Dữ liệu đang bận, xin thử lại sau.");
		resp_hdr(r, "Retry-After", "1");
		return;
	}
	if (rc != 0 || mac_of(key, LINK_LABEL, unit, occ, want) < 0 ||
	    CRYPTO_memcmp(mac, want, LINK_MAC_LEN) != 0) {
		OPENSSL_cleanse(key, sizeof key);
		link_fail(a, q, "wrong token");
		plain_page(r, 403, "Đường dẫn xác nhận không hợp lệ.");
		return;
	}
	/* the nonce of this token's form */
	rc = mac_of(key, NONCE_LABEL, unit, occ, want);
	OPENSSL_cleanse(key, sizeof key);
	if (rc < 0) {
		plain_page(r, 500, "Lỗi nội bộ.");
		return;
	}
	b64url(want, LINK_MAC_LEN, nonce);

	/* a genuine link: from here on no strike (it was ours once) */
	u = conf_unit(c, unit);
	if (u == NULL || sched_occurrence(c, occ, &o) < 0 ||
	    !conf_cycle_has(o.cycle, (size_t)(u - c->units))) {
		plain_page(r, 410, "Kỳ báo cáo hoặc đơn vị này không còn trong "
			   "cấu hình; đường dẫn không còn hiệu lực.");
		return;
	}
	if (ledger_effective(c, a->db, &o, u->id) < 0) {
		plain_page(r, 500, "Không đọc được dữ liệu.");
		return;
	}
	valid = o.cycle->policy != NULL && o.cycle->policy->until > 0
		? o.cycle->policy->until : LINK_DEFAULT_VALID;
	if (now > o.due_at + valid) {
		plain_page(r, 410, "Đường dẫn xác nhận đã hết hạn.");
		return;
	}
	rc = db_sub_get(a->db, o.id, u->id, &sub);
	if (rc < 0) {
		plain_page(r, 503, "Dữ liệu đang bận, xin thử lại sau.");
		resp_hdr(r, "Retry-After", "1");
		return;
	}
	if (rc == 0) {
		submission_clear(&sub);
		page_start(r, 200, "Báo cáo đã được ghi nhận");
		facts(r, c, u, &o);
		buf_puts(&r->body, "<p>Văn phòng đã ghi nhận báo cáo này của "
			 "đơn vị. Không cần làm gì thêm.</p>\n");
		page_end(r);
		return;
	}
	if (ledger_history(a->db, o.id, u->id, scan_event, &ps) < 0) {
		plain_page(r, 500, "Không đọc được dữ liệu.");
		return;
	}

	if (!post) {
		page_start(r, 200, ps.proposed ? "Đã báo gửi báo cáo"
					       : "Đơn vị đã gửi báo cáo");
		facts(r, c, u, &o);
		if (ps.proposed) {
			buf_puts(&r->body, "<p>Đơn vị đã báo là đã gửi báo cáo "
				 "này; văn phòng sẽ kiểm tra và xác nhận.</p>\n");
		} else {
			buf_puts(&r->body, "<p>Nếu đơn vị đã gửi báo cáo này "
				 "cho văn phòng, hãy bấm nút dưới đây.</p>\n"
				 "<form method=\"post\"><input type=\"hidden\" "
				 "name=\"nonce\" value=\"");
			buf_puts(&r->body, nonce);
			buf_puts(&r->body, "\"><button type=\"submit\">Xác nhận "
				 "đơn vị đã gửi báo cáo</button></form>\n");
		}
		page_end(r);
		return;
	}

	if (!same_site(c, q)) {
		plain_page(r, 403, "Yêu cầu từ trang khác bị từ chối.");
		return;
	}
	if (req_form(q, r, &fm) < 0)
		return;
	{
		const char *n = form_get(&fm, "nonce");

		if (n == NULL || strlen(n) != LINK_B64_LEN ||
		    CRYPTO_memcmp(n, nonce, LINK_B64_LEN) != 0) {
			form_free(&fm);
			plain_page(r, 403, "Biểu mẫu không hợp lệ; hãy mở lại "
				   "đường dẫn trong thư.");
			return;
		}
	}
	form_free(&fm);
	if (o.cycle->policy != NULL && o.cycle->policy->link_record) {
		rc = ledger_receive(a->db, o.id, u->id, now, false, "link",
				    u->id, NULL, now);
	} else if (ps.proposed) {
		rc = 1;              /* idempotent: proposed once */
	} else {
		rc = ledger_propose(a->db, o.id, u->id, now, "link", u->id,
				    NULL, NULL, now);
	}
	if (rc < 0) {
		plain_page(r, db_busy(a->db) ? 503 : 500,
			   "Không ghi được dữ liệu, xin thử lại sau.");
		if (db_busy(a->db))
			resp_hdr(r, "Retry-After", "1");
		return;
	}
	if (rc == 0) {
		log_info("%s %s %s (confirmation link)",
			 o.cycle->policy != NULL && o.cycle->policy->link_record
			 ? "received" : "proposed", o.id, u->id);
		if (a->changed != NULL)
			a->changed(a);
	}
	page_start(r, 200, "Cảm ơn");
	facts(r, c, u, &o);
	buf_puts(&r->body, o.cycle->policy != NULL &&
		 o.cycle->policy->link_record
		 ? "<p>Đã ghi nhận: đơn vị đã gửi báo cáo.</p>\n"
		 : "<p>Đã ghi nhận thông báo của đơn vị; văn phòng sẽ kiểm tra "
		   "và xác nhận.</p>\n");
	page_end(r);
}
