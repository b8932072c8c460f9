/*
 * test_outbox.c - the durable queue: idempotency, due order, backoff,
 * give-up, cancellation, Message-IDs.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <sqlite3.h>

#include "cutoffd.h"

struct fx {
	char dir[64];
	char path[96];
	struct db *db;
};

static int setup(void **state)
{
	struct fx *f = xcalloc(1, sizeof(*f));
	char *err = NULL;

	snprintf(f->dir, sizeof(f->dir), "/tmp/test_outbox.XXXXXX");
	assert_non_null(mkdtemp(f->dir));
	snprintf(f->path, sizeof(f->path), "%s/state.db", f->dir);
	f->db = db_open(f->path, true, &err);
	if (!f->db)
		fail_msg("db_open: %s", err ? err : "?");
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fx *f = *state;
	char p[128];

	db_close(f->db);
	unlink(f->path);
	snprintf(p, sizeof(p), "%s-wal", f->path);
	unlink(p);
	snprintf(p, sizeof(p), "%s-shm", f->path);
	unlink(p);
	rmdir(f->dir);
	free(f);
	return 0;
}

static struct notice mk(const char *occ, const char *unit, const char *step,
			enum audience aud, enum channel ch, const char *rcpt,
			tstamp send_at)
{
	struct notice n;

	memset(&n, 0, sizeof(n));
	snprintf(n.occurrence, sizeof(n.occurrence), "%s", occ);
	snprintf(n.unit, sizeof(n.unit), "%s", unit);
	snprintf(n.step, sizeof(n.step), "%s", step);
	n.aud = aud;
	n.ch = ch;
	n.recipients = (char *)rcpt;
	n.send_at = send_at;
	outbox_message_id("https://han.example.vn", occ, unit, step, aud, ch,
			  n.message_id, sizeof(n.message_id));
	return n;
}

static int64_t count(struct db *db, const char *where)
{
	char *sql = xasprintf("SELECT count(*) FROM outbox WHERE %s", where);
	sqlite3_stmt *st = NULL;
	int64_t v = -1;

	assert_int_equal(sqlite3_prepare_v2((sqlite3 *)db_handle(db), sql, -1,
					    &st, NULL), SQLITE_OK);
	if (sqlite3_step(st) == SQLITE_ROW)
		v = sqlite3_column_int64(st, 0);
	sqlite3_finalize(st);
	free(sql);
	return v;
}

static void clear_all(struct notice *v, size_t n)
{
	for (size_t i = 0; i < n; i++)
		notice_clear(&v[i]);
}

static void test_add_idempotent(void **state)
{
	struct fx *f = *state;
	struct notice n = mk("q1/2024-03-13", "tu-phap", "remind-7d", AUD_UNIT,
			     CH_EMAIL, "tuphap@example.vn", 1000);
	struct notice w = mk("q1/2024-03-13", "tu-phap", "remind-7d", AUD_UNIT,
			     CH_WEBHOOK, "http://127.0.0.1:1/h", 1000);

	assert_int_equal(outbox_add(f->db, &n, 900), 1);
	assert_int_equal(outbox_add(f->db, &n, 950), 0);
	n.send_at = 2000;              /* same key, other time: still ignored */
	assert_int_equal(outbox_add(f->db, &n, 990), 0);
	assert_int_equal(outbox_add(f->db, &w, 990), 1);
	assert_int_equal(count(f->db, "1"), 2);
	assert_int_equal(count(f->db, "send_at = 1000 AND next_try = 1000 "
			       "AND state = 'pending' AND attempts = 0"), 2);
}

static void test_due_order(void **state)
{
	struct fx *f = *state;
	struct notice a = mk("q1/2024-03-13", "a", "remind+0d", AUD_UNIT,
			     CH_EMAIL, "a@x.vn", 300);
	struct notice b = mk("q1/2024-03-13", "b", "remind+0d", AUD_UNIT,
			     CH_EMAIL, "b@x.vn", 100);
	struct notice c = mk("q1/2024-03-13", "c", "remind+0d", AUD_UNIT,
			     CH_WEBHOOK, "http://127.0.0.1/c", 200);
	struct notice out[8];
	size_t n = 99;

	assert_int_equal(outbox_add(f->db, &a, 1), 1);
	assert_int_equal(outbox_add(f->db, &b, 1), 1);
	assert_int_equal(outbox_add(f->db, &c, 1), 1);

	assert_int_equal(outbox_due(f->db, 50, -1, 8, out, &n), 0);
	assert_int_equal(n, 0);

	assert_int_equal(outbox_due(f->db, 250, -1, 8, out, &n), 0);
	assert_int_equal(n, 2);
	assert_string_equal(out[0].unit, "b");
	assert_string_equal(out[1].unit, "c");
	assert_int_equal(out[1].ch, CH_WEBHOOK);
	assert_string_equal(out[1].recipients, "http://127.0.0.1/c");
	assert_string_equal(out[0].message_id, b.message_id);
	clear_all(out, n);

	assert_int_equal(outbox_due(f->db, 1000, CH_EMAIL, 8, out, &n), 0);
	assert_int_equal(n, 2);
	assert_string_equal(out[0].unit, "b");
	assert_string_equal(out[1].unit, "a");
	clear_all(out, n);

	assert_int_equal(outbox_due(f->db, 1000, -1, 1, out, &n), 0);
	assert_int_equal(n, 1);
	assert_string_equal(out[0].unit, "b");
	clear_all(out, n);
}

static void test_backoff(void **state)
{
	(void)state;
	assert_int_equal(outbox_backoff(60, 3600, 1, 0.0), 60);
	assert_int_equal(outbox_backoff(60, 3600, 2, 0.0), 120);
	assert_int_equal(outbox_backoff(60, 3600, 3, 0.0), 240);
	assert_int_equal(outbox_backoff(60, 3600, 6, 0.0), 1920);
	assert_int_equal(outbox_backoff(60, 3600, 7, 0.0), 3600);
	assert_int_equal(outbox_backoff(60, 3600, 5000, 0.0), 3600);
	/* +-10 % jitter */
	assert_int_equal(outbox_backoff(60, 3600, 1, 1.0), 66);
	assert_int_equal(outbox_backoff(60, 3600, 1, -1.0), 54);
	assert_int_equal(outbox_backoff(60, 3600, 9, 1.0), 3960);
	assert_int_equal(outbox_backoff(60, 3600, 1, 7.0), 66);   /* clamped */
	for (int i = -10; i <= 10; i++) {
		int64_t v = outbox_backoff(100, 100000, 3, i / 10.0);

		assert_true(v >= 360 && v <= 440);
	}
}

static void test_retry_and_give_up(void **state)
{
	struct fx *f = *state;
	struct conf c;
	struct notice n = mk("q1/2024-03-13", "a", "escalate+1d", AUD_HEAD,
			     CH_EMAIL, "head@x.vn", 1000);
	struct notice out[4];
	enum outbox_state st;
	size_t k;
	tstamp t;

	memset(&c, 0, sizeof(c));
	c.mail.retry_min = 60;
	c.mail.retry_max = 3600;
	c.mail.give_up = 86400;
	assert_int_equal(outbox_add(f->db, &n, 1000), 1);
	assert_int_equal(outbox_next_try(f->db, 1000, &t), 1);

	/* first failure: retry after retry_min */
	assert_int_equal(outbox_due(f->db, 1000, -1, 4, out, &k), 0);
	assert_int_equal(k, 1);
	assert_int_equal(out[0].attempts, 0);
	assert_int_equal(outbox_defer(f->db, &c, &out[0], 1000, "421 busy", 0.0), 0);
	clear_all(out, k);
	assert_int_equal(outbox_next_try(f->db, 1000, &t), 0);
	assert_int_equal(t, 1060);
	assert_int_equal(outbox_due(f->db, 1059, -1, 4, out, &k), 0);
	assert_int_equal(k, 0);

	/* second failure: doubled */
	assert_int_equal(outbox_due(f->db, 1060, -1, 4, out, &k), 0);
	assert_int_equal(k, 1);
	assert_int_equal(out[0].attempts, 1);
	assert_int_equal(outbox_defer(f->db, &c, &out[0], 1060, "421 busy", 0.0), 0);
	clear_all(out, k);
	assert_int_equal(outbox_next_try(f->db, 1060, &t), 0);
	assert_int_equal(t, 1060 + 120);
	assert_int_equal(count(f->db, "attempts = 2 AND last_error = '421 busy'"), 1);

	/* past give_up: failed for good, never due again */
	assert_int_equal(outbox_due(f->db, 1000 + 86401, -1, 4, out, &k), 0);
	assert_int_equal(k, 1);
	assert_int_equal(outbox_defer(f->db, &c, &out[0], 1000 + 86401,
				      "421 still busy", 0.0), 1);
	clear_all(out, k);
	assert_int_equal(outbox_get(f->db, n.occurrence, n.unit, n.step,
				    n.aud, n.ch, NULL, &st), 0);
	assert_int_equal(st, OUTBOX_FAILED);
	assert_int_equal(count(f->db, "state = 'failed' AND attempts = 3 AND "
			       "done_at = 87401 AND last_error = '421 still busy'"), 1);
	assert_int_equal(outbox_due(f->db, 1000000, -1, 4, out, &k), 0);
	assert_int_equal(k, 0);
	assert_int_equal(outbox_next_try(f->db, 0, &t), 1);
}

/* A catch-up row: planned two days before it was queued.  give_up counts
 * from the queueing, so its first temporary failure is retried. */
static void test_give_up_counts_from_queueing(void **state)
{
	struct fx *f = *state;
	struct conf c;
	struct notice n = mk("q1/2024-03-13", "a", "escalate+1d", AUD_HEAD,
			     CH_EMAIL, "head@x.vn", 1000);
	struct notice out[2];
	enum outbox_state st;
	tstamp queued = 1000 + 2 * 86400;
	size_t k;

	memset(&c, 0, sizeof(c));
	c.mail.retry_min = 60;
	c.mail.retry_max = 3600;
	c.mail.give_up = 86400;
	assert_int_equal(outbox_add(f->db, &n, queued), 1);
	assert_int_equal(outbox_due(f->db, queued, -1, 2, out, &k), 0);
	assert_int_equal(k, 1);
	assert_int_equal(out[0].created, queued);
	assert_int_equal(outbox_defer(f->db, &c, &out[0], queued + 5,
				      "421 busy", 0.0), 0);
	clear_all(out, k);
	assert_int_equal(outbox_get(f->db, n.occurrence, n.unit, n.step,
				    n.aud, n.ch, NULL, &st), 0);
	assert_int_equal(st, OUTBOX_PENDING);
	/* a day after it was queued, the failure is final */
	assert_int_equal(outbox_due(f->db, queued + 86401, -1, 2, out, &k), 0);
	assert_int_equal(k, 1);
	assert_int_equal(outbox_defer(f->db, &c, &out[0], queued + 86401,
				      "421 busy", 0.0), 1);
	clear_all(out, k);
}

static void test_mark_final(void **state)
{
	struct fx *f = *state;
	struct notice n = mk("q1/2024-03-13", "a", "remind+0d", AUD_UNIT,
			     CH_EMAIL, "a@x.vn", 100);
	struct notice got;
	enum outbox_state st;

	assert_int_equal(outbox_add(f->db, &n, 1), 1);
	assert_int_equal(outbox_get(f->db, n.occurrence, n.unit, n.step,
				    n.aud, n.ch, &got, &st), 0);
	assert_int_equal(st, OUTBOX_PENDING);
	assert_int_equal(outbox_mark_sent(f->db, got.id, 150), 0);
	/* a final state is final: no retry, failure or cancel moves it */
	assert_int_equal(outbox_mark_retry(f->db, got.id, 999, "x"), 0);
	assert_int_equal(outbox_mark_failed(f->db, got.id, 160, "x"), 0);
	assert_int_equal(outbox_mark_cancelled(f->db, got.id, 170, "x"), 0);
	notice_clear(&got);
	assert_int_equal(outbox_get(f->db, n.occurrence, n.unit, n.step,
				    n.aud, n.ch, NULL, &st), 0);
	assert_int_equal(st, OUTBOX_SENT);
	assert_int_equal(count(f->db, "state = 'sent' AND done_at = 150 AND "
			       "attempts = 1 AND last_error IS NULL"), 1);
	/* and re-adding the key does not resurrect it */
	assert_int_equal(outbox_add(f->db, &n, 200), 0);
	assert_int_equal(outbox_get(f->db, n.occurrence, n.unit, "nope",
				    n.aud, n.ch, NULL, &st), 1);
}

static bool keep_not_b(void *ctx, const struct notice *n, const char **why)
{
	int *calls = ctx;

	(*calls)++;
	if (strcmp(n->unit, "b") == 0) {
		*why = "report recorded";
		return false;
	}
	return true;
}

static void test_cancel(void **state)
{
	struct fx *f = *state;
	struct notice a = mk("q1/2024-03-13", "a", "remind+0d", AUD_UNIT,
			     CH_EMAIL, "a@x.vn", 100);
	struct notice b1 = mk("q1/2024-03-13", "b", "remind+0d", AUD_UNIT,
			      CH_EMAIL, "b@x.vn", 100);
	struct notice b2 = mk("q1/2024-03-13", "b", "remind+0d", AUD_UNIT,
			      CH_WEBHOOK, "http://127.0.0.1/b", 100);
	struct notice b3 = mk("q1/2024-03-13", "b", "remind-1d", AUD_UNIT,
			      CH_EMAIL, "b@x.vn", 50);
	struct notice got, out[4];
	size_t k;
	int calls = 0;

	assert_int_equal(outbox_add(f->db, &a, 1), 1);
	assert_int_equal(outbox_add(f->db, &b1, 1), 1);
	assert_int_equal(outbox_add(f->db, &b2, 1), 1);
	assert_int_equal(outbox_add(f->db, &b3, 1), 1);
	/* b3 was sent already: cancelling never touches a done row */
	assert_int_equal(outbox_get(f->db, b3.occurrence, b3.unit, b3.step,
				    b3.aud, b3.ch, &got, NULL), 0);
	assert_int_equal(outbox_mark_sent(f->db, got.id, 60), 0);
	notice_clear(&got);

	assert_int_equal(outbox_cancel(f->db, keep_not_b, &calls, 500), 2);
	assert_int_equal(calls, 3);
	assert_int_equal(count(f->db, "state = 'cancelled' AND unit = 'b' AND "
			       "done_at = 500 AND last_error = 'report recorded'"), 2);
	assert_int_equal(count(f->db, "state = 'sent' AND unit = 'b'"), 1);
	assert_int_equal(outbox_due(f->db, 1000, -1, 4, out, &k), 0);
	assert_int_equal(k, 1);
	assert_string_equal(out[0].unit, "a");
	clear_all(out, k);
	/* nothing left to cancel */
	calls = 0;
	assert_int_equal(outbox_cancel(f->db, keep_not_b, &calls, 600), 0);
	assert_int_equal(calls, 1);
}

static void test_digest_rows(void **state)
{
	struct fx *f = *state;
	struct notice r[5] = {
		mk("q1/2024-03-13", "c", "escalate+3d", AUD_SECRETARIAT,
		   CH_EMAIL, "tt@x.vn", 500),
		mk("q1/2024-03-13", "a", "escalate+3d", AUD_SECRETARIAT,
		   CH_EMAIL, "tt@x.vn", 500),
		mk("q1/2024-03-13", "b", "escalate+3d", AUD_SECRETARIAT,
		   CH_EMAIL, "tt@x.vn", 500),
		mk("q1/2024-03-13", "d", "escalate+3d", AUD_SECRETARIAT,
		   CH_EMAIL, "tt@x.vn", 501),      /* other send time */
		mk("q1/2024-03-13", "e", "escalate+3d", AUD_HEAD,
		   CH_EMAIL, "tt@x.vn", 500),      /* not a digest audience */
	};
	struct notice out[8];
	size_t k;

	for (int i = 0; i < 5; i++)
		assert_int_equal(outbox_add(f->db, &r[i], 1), 1);
	assert_int_equal(outbox_due_digest(f->db, 1000, &r[0], 8, out, &k), 0);
	assert_int_equal(k, 3);
	assert_string_equal(out[0].unit, "a");
	assert_string_equal(out[1].unit, "b");
	assert_string_equal(out[2].unit, "c");
	assert_int_equal(out[0].aud, AUD_SECRETARIAT);
	clear_all(out, k);
	/* not due yet */
	assert_int_equal(outbox_due_digest(f->db, 499, &r[0], 8, out, &k), 0);
	assert_int_equal(k, 0);
}

static void test_message_id(void **state)
{
	char a[160], b[160], c[160], d[160];
	char longocc[OCC_ID_MAX];

	(void)state;
	outbox_message_id("https://Han.Example.vn:8443/base", "q1/2024-03-13",
			  "tu-phap", "remind-7d", AUD_UNIT, CH_EMAIL, a, sizeof(a));
	outbox_message_id("https://Han.Example.vn:8443/base", "q1/2024-03-13",
			  "tu-phap", "remind-7d", AUD_UNIT, CH_EMAIL, b, sizeof(b));
	assert_string_equal(a, b);
	assert_string_equal(a, "<q1/2024-03-13.tu-phap.remind-7d.unit.email"
			    "@han.example.vn>");
	outbox_message_id("https://han.example.vn", "q1/2024-03-13", "tu-phap",
			  "remind-7d", AUD_UNIT, CH_WEBHOOK, c, sizeof(c));
	assert_string_not_equal(a, c);

	/* no usable host: a reserved name */
	outbox_message_id(NULL, "q1/2024-03-13", "a", "remind+0d", AUD_HEAD,
			  CH_EMAIL, d, sizeof(d));
	assert_string_equal(d, "<q1/2024-03-13.a.remind+0d.head.email"
			    "@cutoffd.invalid>");
	outbox_message_id("http://bad host\r\n/", "q1/2024-03-13", "a",
			  "remind+0d", AUD_HEAD, CH_EMAIL, d, sizeof(d));
	assert_non_null(strstr(d, "@cutoffd.invalid>"));
	outbox_message_id("http://[::1]:8470", "q1/2024-03-13", "a",
			  "remind+0d", AUD_HEAD, CH_EMAIL, d, sizeof(d));
	assert_non_null(strstr(d, "@[::1]>"));
	outbox_message_id("http://127.0.0.1:8470", "x y\r\n", "a",
			  "remind+0d", AUD_HEAD, CH_EMAIL, d, sizeof(d));
	assert_string_equal(d, "<x-y--.a.remind+0d.head.email@127.0.0.1>");

	/* too long for a readable id: a stable hash of the key */
	memset(longocc, 'o', sizeof(longocc) - 1);
	longocc[sizeof(longocc) - 1] = '\0';
	outbox_message_id("https://han.example.vn", longocc,
			  "a-unit-with-a-rather-long-identifier-of-sixty-four-characters-x",
			  "remind-7d", AUD_SECRETARIAT, CH_EMAIL, a, sizeof(a));
	outbox_message_id("https://han.example.vn", longocc,
			  "a-unit-with-a-rather-long-identifier-of-sixty-four-characters-x",
			  "remind-7d", AUD_SECRETARIAT, CH_EMAIL, b, sizeof(b));
	outbox_message_id("https://han.example.vn", longocc,
			  "a-unit-with-a-rather-long-identifier-of-sixty-four-characters-x",
			  "remind-3d", AUD_SECRETARIAT, CH_EMAIL, c, sizeof(c));
	assert_string_equal(a, b);
	assert_string_not_equal(a, c);
	assert_int_equal(strncmp(a, "<cutoffd.", 9), 0);
	assert_non_null(strstr(a, "@han.example.vn>"));
	for (const char *p = a; *p; p++)
		assert_true(*p > ' ' && *p < 127);
}

static void test_recipients(void **state)
{
	struct conf c;
	struct unit u;
	char *emails[] = { "a@x.vn", "b@x.vn" };
	char *r;

	(void)state;
	memset(&c, 0, sizeof(c));
	memset(&u, 0, sizeof(u));
	c.secretariat.email = "tt@x.vn";
	c.secretariat.chief = NULL;
	u.id = "a";
	u.email = emails;
	u.nemail = 2;
	u.webhook = "http://127.0.0.1/h";

	r = outbox_recipients(&c, &u, AUD_UNIT, CH_EMAIL);
	assert_string_equal(r, "a@x.vn,b@x.vn");
	free(r);
	r = outbox_recipients(&c, &u, AUD_SECRETARIAT, CH_EMAIL);
	assert_string_equal(r, "tt@x.vn");
	free(r);
	r = outbox_recipients(&c, &u, AUD_HEAD, CH_WEBHOOK);
	assert_string_equal(r, "http://127.0.0.1/h");
	free(r);
	assert_null(outbox_recipients(&c, &u, AUD_HEAD, CH_EMAIL));
	assert_null(outbox_recipients(&c, &u, AUD_CHIEF, CH_EMAIL));
	u.webhook = NULL;
	assert_null(outbox_recipients(&c, &u, AUD_UNIT, CH_WEBHOOK));
}

struct refused_seen {
	int n;
	char addr[64], reply[128];
};

static int refused_cb(void *ctx, const struct outbox_refusal *r)
{
	struct refused_seen *s = ctx;

	s->n++;
	snprintf(s->addr, sizeof(s->addr), "%s", r->address);
	snprintf(s->reply, sizeof(s->reply), "%s", r->reply);
	return 0;
}

/* The sender's cursor: rows after (next_try, id) in index order, across a
 * group of equal next_try and on into later ones; never the ones before. */
static void test_due_after_cursor(void **state)
{
	struct fx *f = *state;
	struct notice n[5], out[8], cur;
	const char *units[5] = { "a", "b", "c", "d", "e" };
	tstamp at[5] = { 100, 100, 100, 200, 300 };
	size_t k = 0;

	for (int i = 0; i < 5; i++) {
		n[i] = mk("q1/2024-03-13", units[i], "remind-7d", AUD_UNIT,
			  CH_EMAIL, "x@y.vn", at[i]);
		assert_int_equal(outbox_add(f->db, &n[i], 1), 1);
	}
	assert_int_equal(outbox_due_after(f->db, 250, CH_EMAIL, NULL, 2, out,
					  &k), 0);
	assert_int_equal(k, 2);
	assert_string_equal(out[0].unit, "a");
	assert_string_equal(out[1].unit, "b");
	cur = out[1];
	notice_clear(&out[0]);
	assert_int_equal(outbox_due_after(f->db, 250, CH_EMAIL, &cur, 8, out,
					  &k), 0);
	notice_clear(&cur);
	/* c (same next_try, later id), then d; e is not due yet */
	assert_int_equal(k, 2);
	assert_string_equal(out[0].unit, "c");
	assert_string_equal(out[1].unit, "d");
	assert_int_equal(out[1].next_try, 200);
	cur = out[1];
	notice_clear(&out[0]);
	assert_int_equal(outbox_due_after(f->db, 250, CH_EMAIL, &cur, 8, out,
					  &k), 0);
	assert_int_equal(k, 0);
	assert_int_equal(outbox_due_after(f->db, 250, CH_WEBHOOK, NULL, 8, out,
					  &k), 0);
	assert_int_equal(k, 0);
	notice_clear(&cur);
}

/* Sent in one statement; only pending rows move; the refused addresses
 * and the thread root of a unit's later mails. */
static void test_sent_all_refused_thread(void **state)
{
	struct fx *f = *state;
	struct notice a = mk("q1/2024-03-13", "tp", "remind-7d", AUD_UNIT,
			     CH_EMAIL, "x@y.vn, z@y.vn", 100);
	struct notice b = mk("q1/2024-03-13", "tp", "remind-3d", AUD_UNIT,
			     CH_EMAIL, "x@y.vn", 400);
	struct notice c = mk("q1/2024-03-13", "tp", "escalate+1d", AUD_HEAD,
			     CH_EMAIL, "h@y.vn", 900);
	struct notice got, out[4];
	int64_t ids[3];
	char root[160];
	size_t k = 0;
	struct refused_seen seen = { 0 };

	assert_int_equal(outbox_add(f->db, &a, 1), 1);
	assert_int_equal(outbox_add(f->db, &b, 1), 1);
	assert_int_equal(outbox_add(f->db, &c, 1), 1);
	assert_int_equal(outbox_get(f->db, a.occurrence, "tp", "remind-7d",
				    AUD_UNIT, CH_EMAIL, &got, NULL), 0);
	ids[0] = got.id;
	/* nothing sent yet: the first mail starts the thread */
	assert_int_equal(outbox_thread_root(f->db, &got, root, sizeof(root)), 1);
	notice_clear(&got);
	assert_int_equal(outbox_mark_failed(f->db, ids[0] + 2, 50, "x"), 0);
	ids[1] = ids[0] + 1;
	ids[2] = ids[0] + 2;          /* failed: stays failed */
	assert_int_equal(outbox_mark_sent_all(f->db, ids, 3, 500), 0);
	assert_int_equal(count(f->db, "state = 'sent'"), 2);
	assert_int_equal(count(f->db, "state = 'failed' AND done_at = 50"), 1);
	assert_int_equal(count(f->db, "state = 'sent' AND attempts = 1 AND "
			       "done_at = 500"), 2);
	assert_int_equal(outbox_mark_sent_all(f->db, ids, 0, 500), 0);
	assert_int_equal(outbox_due(f->db, 10000, -1, 4, out, &k), 0);
	assert_int_equal(k, 0);

	assert_int_equal(outbox_refused_add(f->db, ids[0], "z@y.vn",
					    "550 5.1.1 unknown", 500), 0);
	assert_int_equal(outbox_refused_foreach(f->db, "q1/2024-03-13",
						refused_cb, &seen), 0);
	assert_int_equal(seen.n, 1);
	assert_string_equal(seen.addr, "z@y.vn");
	assert_string_equal(seen.reply, "550 5.1.1 unknown");
	seen.n = 0;
	assert_int_equal(outbox_refused_foreach(f->db, "h1/2024-06-13",
						refused_cb, &seen), 0);
	assert_int_equal(seen.n, 0);

	/* the later mails (to the unit or its head) answer the first */
	assert_int_equal(outbox_get(f->db, c.occurrence, "tp", "escalate+1d",
				    AUD_HEAD, CH_EMAIL, &got, NULL), 0);
	assert_int_equal(outbox_thread_root(f->db, &got, root, sizeof(root)), 0);
	assert_string_equal(root, a.message_id);
	notice_clear(&got);
}

/* Retry-After: the next try is not before the server's time, and the
 * backoff still applies when it is longer. */
static void test_defer_until(void **state)
{
	struct fx *f = *state;
	struct notice n = mk("q1/2024-03-13", "tp", "remind-7d", AUD_UNIT,
			     CH_WEBHOOK, "http://127.0.0.1/h", 1000);
	struct notice got;
	struct conf c = { 0 };
	tstamp next = 0;

	c.mail.retry_min = 60;
	c.mail.retry_max = 3600;
	c.mail.give_up = 86400;
	assert_int_equal(outbox_add(f->db, &n, 1000), 1);
	assert_int_equal(outbox_get(f->db, n.occurrence, "tp", "remind-7d",
				    AUD_UNIT, CH_WEBHOOK, &got, NULL), 0);
	assert_int_equal(outbox_defer_until(f->db, &c, &got, 1000, "HTTP 429",
					    0.0, 7200, &next), 0);
	assert_int_equal(next, 1000 + 7200);
	notice_clear(&got);
	assert_int_equal(outbox_get(f->db, n.occurrence, "tp", "remind-7d",
				    AUD_UNIT, CH_WEBHOOK, &got, NULL), 0);
	assert_int_equal(got.next_try, 8200);
	assert_int_equal(outbox_defer_until(f->db, &c, &got, 8200, "HTTP 503",
					    0.0, 10, &next), 0);
	assert_int_equal(next, 8200 + 120);      /* backoff 2 x 60 s */
	notice_clear(&got);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_add_idempotent, setup, teardown),
		cmocka_unit_test_setup_teardown(test_due_order, setup, teardown),
		cmocka_unit_test(test_backoff),
		cmocka_unit_test_setup_teardown(test_retry_and_give_up, setup, teardown),
		cmocka_unit_test_setup_teardown(test_give_up_counts_from_queueing,
						setup, teardown),
		cmocka_unit_test_setup_teardown(test_mark_final, setup, teardown),
		cmocka_unit_test_setup_teardown(test_cancel, setup, teardown),
		cmocka_unit_test_setup_teardown(test_digest_rows, setup, teardown),
		cmocka_unit_test(test_message_id),
		cmocka_unit_test(test_recipients),
		cmocka_unit_test_setup_teardown(test_due_after_cursor, setup, teardown),
		cmocka_unit_test_setup_teardown(test_sent_all_refused_thread,
						setup, teardown),
		cmocka_unit_test_setup_teardown(test_defer_until, setup, teardown),
	};

	log_init("test_outbox", 0);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
