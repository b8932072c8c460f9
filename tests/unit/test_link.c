/* Unit tests for link.c: the key in the store, the token's documented
 * format (checked with an HMAC computed here), the parser's refusals, and
 * the handler's answers without a server. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "cutoffd.h"
#include "fixture.h"

static const char conf_text[] =
	"[daemon]\n"
	"timezone = Asia/Ho_Chi_Minh\n"
	"public_url = http://127.0.0.1:8470\n"
	"[mail]\ntransport = maildir\nmaildir = mail\n"
	"from = Thường trực <thuongtruc@example.vn>\n"
	"[secretariat]\nname = Thường trực\nemail = thuongtruc@example.vn\n"
	"[policy standard]\nat = 08:00\nremind = -7d 0d\nuntil = 10d\n"
	"[cycle q1]\ntitle = Báo cáo quý I\ndue = 03-13\npolicy = standard\n"
	"units = *\n"
	"[unit p-tan-loi]\nname = Ban Chỉ đạo phường Tân Lợi\n"
	"email = bcd.tanloi@example.vn\n"
	"[unit mttq]\nname = MTTQ\nemail = m@example.vn\n";

#define OCC "q1/2024-03-13"

/* one fixture for the file: link.c keeps the key of its one store */
static struct fix *F;

static int
setup(void **state)
{
	(void)state;
	F = fix_new(conf_text);
	return 0;
}

static int
teardown(void **state)
{
	(void)state;
	fix_free(F);
	return 0;
}

static void
test_key_made_once(void **state)
{
	unsigned char a[32], b[32];

	(void)state;
	assert_int_equal(db_link_key(F->db, false, a), 1);
	assert_int_equal(db_link_key(F->db, true, a), 0);
	assert_int_equal(db_link_key(F->db, true, b), 0);
	assert_memory_equal(a, b, 32);
	assert_int_equal(db_link_key(F->db, false, b), 0);
	assert_memory_equal(a, b, 32);
}

static void
test_token_format(void **state)
{
	unsigned char key[32], mac[32], got[32];
	unsigned int n = 0;
	const char *msg = "cutoffd link v1\np-tan-loi\n" OCC;
	char unit[72], occ[OCC_ID_MAX], *url, *tok;

	(void)state;
	url = link_url(F->c, F->db, "p-tan-loi", OCC);
	assert_non_null(strstr(url, "http://127.0.0.1:8470/confirm/"
				    "p-tan-loi.q1.2024-03-13."));
	tok = strstr(url, "/confirm/") + 9;
	assert_int_equal(link_parse(tok, strlen(tok), unit, occ, got), 0);
	assert_string_equal(unit, "p-tan-loi");
	assert_string_equal(occ, OCC);
	assert_int_equal(db_link_key(F->db, false, key), 0);
	HMAC(EVP_sha256(), key, 32, (const unsigned char *)msg, strlen(msg),
	     mac, &n);
	assert_int_equal(n, 32);
	assert_memory_equal(mac, got, 32);
	free(url);
}

static void
test_parse_refuses(void **state)
{
	static const char *const bad[] = {
		"",
		"p-tan-loi.q1.2024-03-13",
		"p-tan-loi.q1.2024-03-13.",
		"P-TAN-LOI.q1.2024-03-13.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
		"-x.q1.2024-03-13.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
		"x.q1.2024-3-13.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
		"x.q1.2024-03-13.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
		"x.q1.2024-03-13.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
		/* unused low bits set: a second spelling of one MAC */
		"x.q1.2024-03-13.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAB",
		"x.q1.2024-03-13.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",
		"x/y.q1.2024-03-13.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
	};
	char unit[72], occ[OCC_ID_MAX];
	unsigned char mac[32];
	const char ok[] = "x.q1.2024-03-13.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";
	char nul[sizeof ok];

	(void)state;
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
		assert_int_equal(link_parse(bad[i], strlen(bad[i]), unit, occ,
					    mac), -1);
	assert_int_equal(link_parse(ok, strlen(ok), unit, occ, mac), 0);
	memcpy(nul, ok, sizeof ok);
	nul[5] = '\0';         /* a NUL inside the given length */
	assert_int_equal(link_parse(nul, sizeof ok - 1, unit, occ, mac), -1);
}

struct count { int n; const char *action; };

static int
count_ev(void *ctx, const struct ledger_event *e)
{
	struct count *c = ctx;

	c->n++;
	c->action = strcmp(e->action, "proposed") == 0 ? "proposed" : "other";
	return 0;
}

static void
req(struct app *a, const char *method, const char *path, const char *body,
    struct http_resp *r)
{
	struct http_req q = {
		.method = method, .path = path, .body = body,
		.body_len = body ? strlen(body) : 0, .client = "127.0.0.1",
		.content_type = body ? "application/x-www-form-urlencoded" : NULL,
	};

	memset(r, 0, sizeof *r);
	buf_init(&r->body);
	assert_int_equal(http_dispatch(a, &q, r), 0);
}

static void
test_handler(void **state)
{
	struct app a = { .conf = F->c, .db = F->db };
	struct http_resp r;
	struct count cnt = { 0, NULL };
	char *url, *path, *body;
	const char *nv;

	(void)state;
	clock_init(&a.clk, true, tz_mktime(F->c->tz,
		   (struct ymd){ 2024, 3, 10 }, 8 * 60), 1.0);
	url = link_url(F->c, F->db, "mttq", OCC);
	path = strstr(url, "/confirm/");
	req(&a, "GET", path, NULL, &r);
	assert_int_equal(r.status, 200);
	assert_non_null(strstr(buf_str(&r.body), "MTTQ"));
	assert_non_null(strstr(buf_str(&r.body), "13/03/2024"));
	nv = strstr(buf_str(&r.body), "name=\"nonce\" value=\"");
	assert_non_null(nv);
	body = xasprintf("nonce=%.43s", nv + 20);
	buf_free(&r.body);
	assert_int_equal(ledger_history(F->db, OCC, "mttq", count_ev, &cnt), 0);
	assert_int_equal(cnt.n, 0);
	/* the other unit's MAC on this unit's name */
	{
		char *o = link_url(F->c, F->db, "p-tan-loi", OCC);
		char *mix = xasprintf("/confirm/mttq.q1.2024-03-13.%s",
				      strrchr(o, '.') + 1);

		req(&a, "GET", mix, NULL, &r);
		assert_int_equal(r.status, 403);
		buf_free(&r.body);
		free(mix);
		free(o);
	}
	req(&a, "POST", path, "nonce=wrong", &r);
	assert_int_equal(r.status, 403);
	buf_free(&r.body);
	req(&a, "POST", path, body, &r);
	assert_int_equal(r.status, 200);
	buf_free(&r.body);
	req(&a, "POST", path, body, &r);     /* idempotent */
	assert_int_equal(r.status, 200);
	buf_free(&r.body);
	cnt.n = 0;
	assert_int_equal(ledger_history(F->db, OCC, "mttq", count_ev, &cnt), 0);
	assert_int_equal(cnt.n, 1);
	assert_string_equal(cnt.action, "proposed");
	/* past until (10 days after the end of 13/03) */
	clock_init(&a.clk, true, tz_mktime(F->c->tz,
		   (struct ymd){ 2024, 3, 24 }, 8 * 60), 1.0);
	req(&a, "GET", path, NULL, &r);
	assert_int_equal(r.status, 410);
	buf_free(&r.body);
	free(body);
	free(url);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_key_made_once),
		cmocka_unit_test(test_token_format),
		cmocka_unit_test(test_parse_refuses),
		cmocka_unit_test(test_handler),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
