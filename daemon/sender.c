/*
 * sender.c - drains the outbox.
 *
 * Due rows become jobs: one email (a digest for secretariat/chief rows that
 * share step, recipients and send time), or one webhook POST.  SMTP and
 * HTTP run as curl easy handles on one multi handle on the loop (curlev.c),
 * so a dead mail server only ever occupies its own `parallel` slots and
 * webhooks keep flowing in theirs.  Maildir delivery is local and done
 * synchronously.  Outcomes are written back to their rows in batches (up
 * to FLUSH_BATCH finished transfers or FLUSH_DELAY seconds), each batch in
 * one transaction: sent, retry at T (backoff with jitter, or the server's
 * Retry-After), failed for good, or cancelled when the unit's report
 * turned up meanwhile.  A row stays pending while in flight and until its
 * outcome is written, so a crash repeats at most the transfers of one
 * batch and those in flight (FLUSH_BATCH + twice `parallel`, or one maildir
 * round).
 *
 * Per notice the work is kept to what differs: rows are read once (a
 * cursor per channel walks the due rows in index order, so rows in flight
 * are not read again), the text comes from the render cache (tmpl.c), the
 * rows sent in one iteration are marked in one statement.  The sender
 * sleeps until the next retry is due or the engine kicks it; with nothing
 * pending no timer runs at all.
 *
 * Mail goes out through smtp.c, pipelined on `parallel` connections; two
 * messages per connection are handed over at once, so that the next one's
 * commands can ride with the current one's text.  Its answer per message:
 * the server's last reply ("250 ... queued as ..."), logged with the
 * Message-ID, and the refusal of each refused address, recorded
 * (outbox_refused) while the other addresses get the mail.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <curl/curl.h>
#include <ev.h>

#include "cutoffd.h"

#define HOOK_PARALLEL 8       /* webhook transfers in flight */
#define POOL_MAX 16           /* idle easy handles kept for reuse */
#define MAILDIR_BATCH 200     /* rows per local-delivery round */
#define MAILDIR_ROUNDS 5      /* rounds per kick before yielding the loop */
#define DIGEST_MAX 2000       /* late units in one digest (more: another) */
#define SYNC_AFTER 1.0        /* real seconds: outcomes become power-safe */
#define FLUSH_BATCH 32        /* finished jobs written together, at most */
#define FLUSH_DELAY 0.02      /* real seconds an outcome may wait for others */
#define REPLY_LOG_MAX 300     /* bytes of a server reply kept and logged */
#define RETRY_AFTER_MAX 86400 /* a webhook's Retry-After is honoured up to */
#define HELD_MIN 0.1          /* real seconds: first retry of held outcomes */
#define HELD_MAX 2.0          /* and the longest wait between tries */
#define STOP_BUSY_MS 2000     /* the last flush at stop waits this long */

enum outcome { OUT_SENT, OUT_RETRY, OUT_FAILED };

struct job {
	struct sender *s;
	CURL *easy;
	enum channel ch;
	struct notice *rows;
	size_t nrows;
	int64_t *ids;             /* the rows' ids, sorted: in_flight() */
	char *data;               /* the message or the JSON body */
	size_t len;
	struct curl_slist *list;  /* HTTP headers */
	char err[CURL_ERROR_SIZE];
	enum outcome out;         /* once finished: how it went */
	char *error;
	char *reply;              /* the server's last reply, escaped */
	double jit;
	int64_t min_wait;         /* Retry-After, seconds */
	char **rcpt;              /* SMTP: the envelope addresses, in order */
	size_t nrcpt;
	char *from;
	struct smtp_msg msg;      /* SMTP: the transaction */
	char **refused;           /* address, reply, address, reply, ... */
	size_t nrefused;
	struct job *prev, *next;
};

struct sender {
	struct app *a;
	struct curlev *cv;        /* webhooks */
	struct smtp *smtp;        /* mail */
	ev_timer retry;           /* next row's next_try */
	ev_timer soon;            /* continue a long maildir backlog */
	struct job *jobs;
	struct job *done;         /* finished, outcome not yet written */
	ev_prepare flush;         /* starts new work once per loop iteration */
	ev_timer flushtm;         /* writes `done` at the latest FLUSH_DELAY on */
	size_t ndone;
	bool flush_due;
	/* Another process holds the write lock: the outcomes in `done` could
	 * not be written.  They are kept (their rows stay pending in the
	 * store, and in_flight() keeps them from being sent again), no new
	 * send starts until they are written, and `held` retries the write
	 * with backoff. */
	bool holding, held_warned;
	double held_wait;
	ev_timer held;
	int nmail, nhook;
	CURL *pool[POOL_MAX];
	size_t npool;
	bool draining, kicking, again;
	ev_timer sync;            /* makes unsynced outcome commits durable */
	uint64_t rng;
	/* per channel: the last row read, to read on from (none: start) */
	struct notice cur[2];
	bool have_cur[2];
	bool rearm;               /* a retry was written: re-read next_try */
	/* Threads: per occurrence, whether no mail to a unit had been sent
	 * when looked at after the last kick, and a bit per unit index for
	 * those this process sent since.  A unit without its bit then has no
	 * thread yet: no query per notice for a first mass send. */
	struct thr {
		char occ[OCC_ID_MAX];
		bool none_before;
		unsigned char *sent;
		size_t nunits;
	} thr[4];
	size_t thr_next;
};

/* ------------------------------------------------------------ helpers */

/* xorshift64*: jitter only, no need for good randomness */
static double jitter(struct sender *s)
{
	uint64_t x = s->rng;

	x ^= x >> 12;
	x ^= x << 25;
	x ^= x >> 27;
	s->rng = x;
	x *= UINT64_C(0x2545f4914f6cdd1d);
	return (double)(x >> 11) / (double)(UINT64_C(1) << 53) * 2.0 - 1.0;
}

static enum outcome classify_http(int res, long code)
{
	if (res != CURLE_OK) {
		if (res == CURLE_URL_MALFORMAT ||
		    res == CURLE_UNSUPPORTED_PROTOCOL)
			return OUT_FAILED;
		return OUT_RETRY;
	}
	if (code >= 200 && code <= 299)
		return OUT_SENT;
	if (code == 408 || code == 429 || (code >= 500 && code <= 599))
		return OUT_RETRY;
	return OUT_FAILED;       /* other 4xx, and 3xx: no redirects */
}

/* What goes to the log for a row's recipients: addresses escaped; for a
 * webhook only scheme and host, since the path often is the secret. */
static void put_recipients(struct buf *b, const struct notice *n)
{
	const char *r = n->recipients ? n->recipients : "";

	if (n->ch == CH_WEBHOOK) {
		const char *p = strstr(r, "://");
		size_t k = p ? (size_t)(p + 3 - r) + strcspn(p + 3, "/?#") :
			       strlen(r);
		char *host = xstrndup(r, k);

		buf_put_escaped(b, host, 200);
		if (r[k])
			buf_puts(b, "/...");
		free(host);
		return;
	}
	buf_put_escaped(b, r, 1000);
}

/* "2024-03-06T08:10+07:00": a time an operator reads, with its zone */
static void fmt_local(const struct conf *c, tstamp t, char *out, size_t size)
{
	char iso[24];
	int off = tz_offset(c->tz, t) / 60;

	tz_format_iso(c->tz, t, iso);
	snprintf(out, size, "%s%c%02d:%02d", iso, off < 0 ? '-' : '+',
		 (off < 0 ? -off : off) / 60 % 100, (off < 0 ? -off : off) % 60);
}

/* One line per row and outcome.  Everything that came from outside (the
 * recipients, the server's reply, the error) is escaped. */
static void log_outcome(struct sender *s, const struct notice *n,
			enum outcome o, int deferred, const char *error,
			const char *reply, tstamp next)
{
	struct buf rb, eb, mb;
	char when[40];

	metrics_notice(n->ch, o == OUT_SENT ? METRICS_SENT : deferred == 0 ? METRICS_DEFERRED : METRICS_FAILED);
	buf_init(&rb);
	buf_init(&eb);
	buf_init(&mb);
	put_recipients(&rb, n);
	buf_put_escaped(&mb, n->message_id, 200);
	if (o == OUT_SENT)
		buf_put_escaped(&eb, reply ? reply : "", REPLY_LOG_MAX);
	else if (error)
		buf_put_escaped(&eb, error, REPLY_LOG_MAX + 200);
	if (o == OUT_SENT) {
		/* a Maildir delivery has no server reply to quote */
		log_info("notice sent: %s %s %s %s %s to %s %s%s%s",
			 n->occurrence, n->unit, n->step, audience_name(n->aud),
			 channel_name(n->ch), buf_str(&rb), buf_str(&mb),
			 eb.len > 0 ? ": " : "", buf_str(&eb));
	} else if (deferred == 0) {
		fmt_local(s->a->conf, next, when, sizeof(when));
		log_warn("notice deferred (attempt %d, next try at %s): %s %s "
			 "%s %s %s to %s %s: %s", n->attempts + 1, when,
			 n->occurrence, n->unit, n->step, audience_name(n->aud),
			 channel_name(n->ch), buf_str(&rb), buf_str(&mb),
			 buf_str(&eb));
	} else {
		log_err("notice failed (attempt %d): %s %s %s %s %s to %s %s: %s",
			n->attempts + 1, n->occurrence, n->unit, n->step,
			audience_name(n->aud), channel_name(n->ch),
			buf_str(&rb), buf_str(&mb), buf_str(&eb));
	}
	buf_free(&rb);
	buf_free(&eb);
	buf_free(&mb);
}

/* Writes a row's retry or failure (sent rows are written in one batch by
 * flush_done) and logs it.  The rows of one digest share jit, so that they
 * come due again together.  Returns true when a retry was scheduled. */
static bool settle(struct sender *s, const struct notice *n, enum outcome o,
		   const char *error, double jit, int64_t min_wait)
{
	struct db *db = s->a->db;
	tstamp now = clock_now(&s->a->clk), next = 0;
	int rc;

	switch (o) {
	case OUT_SENT:
		break;
	case OUT_RETRY:
		rc = outbox_defer_until(db, s->a->conf, n, now, error, jit,
					min_wait, &next);
		if (rc >= 0)
			log_outcome(s, n, o, rc, error, NULL, next);
		return rc == 0;
	case OUT_FAILED:
		if (outbox_mark_failed(db, n->id, now, error) == 0)
			log_outcome(s, n, o, 1, error, NULL, 0);
		break;
	}
	return false;
}

/* A digest may hold thousands of rows: look ids up by bisection. */
static bool in_list(const struct job *j, int64_t id)
{
	for (; j; j = j->next) {
		if (j->ids && bsearch(&id, j->ids, j->nrows, sizeof(*j->ids),
				      cmp_int64))
			return true;
	}
	return false;
}

static bool in_flight(const struct sender *s, int64_t id)
{
	return in_list(s->jobs, id) || in_list(s->done, id);
}

/* Last checks before a row goes out; refreshes its recipients from the
 * current configuration.  false: the row was cancelled (or is unusable). */
static bool prepare_row(struct sender *s, struct notice *n, tstamp now)
{
	const struct conf *c = s->a->conf;
	struct submission sub;
	const struct unit *u;
	const char *why = NULL;
	char *r = NULL;
	int rc;

	rc = db_sub_get(s->a->db, n->occurrence, n->unit, &sub);
	if (rc < 0)
		return false;
	if (rc == 0) {
		submission_clear(&sub);
		why = "report recorded";
	} else {
		u = conf_unit(c, n->unit);
		if (!u)
			why = "unit removed";
		else
			r = outbox_recipients(c, u, n->aud, n->ch);
		if (u && !r)
			why = "no address for this audience";
	}
	if (why) {
		if (outbox_mark_cancelled(s->a->db, n->id, now, why) == 0)
			log_info("notice cancelled: %s %s %s %s %s (%s)",
				 n->occurrence, n->unit, n->step,
				 audience_name(n->aud), channel_name(n->ch),
				 why);
		return false;
	}
	free(n->recipients);
	n->recipients = r;
	return true;
}

/* ------------------------------------------------------------ threads */

static struct thr *thr_get(struct sender *s, const char *occ, bool load)
{
	const struct conf *c = s->a->conf;
	size_t n = sizeof(s->thr) / sizeof(s->thr[0]);
	struct thr *t;
	int rc;

	for (size_t i = 0; i < n; i++) {
		if (s->thr[i].occ[0] && strcmp(s->thr[i].occ, occ) == 0)
			return &s->thr[i];
	}
	if (!load)
		return NULL;
	rc = outbox_occ_has_mail(s->a->db, occ);
	if (rc < 0)
		return NULL;
	t = &s->thr[s->thr_next];
	s->thr_next = (s->thr_next + 1) % n;
	free(t->sent);
	memset(t, 0, sizeof(*t));
	snprintf(t->occ, sizeof(t->occ), "%s", occ);
	t->none_before = rc == 0;
	t->nunits = c->nunits;
	t->sent = xcalloc(c->nunits / 8 + 1, 1);
	return t;
}

static ptrdiff_t unit_index(const struct conf *c, const char *id)
{
	const struct unit *u = conf_unit(c, id);

	if (!u || !c->units || u < c->units || u >= c->units + c->nunits)
		return -1;
	return u - c->units;
}

/* The Message-ID a unit's mail answers ("" for the first). */
static void thread_of(struct sender *s, struct notice *n)
{
	struct thr *t = thr_get(s, n->occurrence, true);
	ptrdiff_t k = unit_index(s->a->conf, n->unit);

	n->thread[0] = '\0';
	if (!(t && t->none_before && k >= 0 && (size_t)k < t->nunits &&
	      !(t->sent[k / 8] & (1u << (k % 8)))) &&
	    outbox_thread_root(s->a->db, n, n->thread, sizeof(n->thread)) == 0)
		return;
	n->thread[0] = '\0';
	/* none sent yet: a mail to the unit (or its head) still in flight,
	 * or sent but not yet written, starts the thread (one step to both
	 * audiences sends them at once) */
	for (int l = 0; l < 2; l++) {
		for (const struct job *j = l ? s->done : s->jobs; j; j = j->next) {
			const struct notice *r = &j->rows[0];

			if (j->ch != CH_EMAIL || j->nrows != 1 || r->id == n->id ||
			    (l == 1 && j->out != OUT_SENT) ||
			    !(r->aud & (AUD_UNIT | AUD_HEAD)) ||
			    strcmp(r->unit, n->unit) != 0 ||
			    strcmp(r->occurrence, n->occurrence) != 0)
				continue;
			snprintf(n->thread, sizeof(n->thread), "%s",
				 r->thread[0] ? r->thread : r->message_id);
			return;
		}
	}
}

/* A mail to a unit went out: it may start the unit's thread. */
static void thread_sent(struct sender *s, const struct notice *n)
{
	struct thr *t;
	ptrdiff_t k;

	if (n->ch != CH_EMAIL || !(n->aud & (AUD_UNIT | AUD_HEAD)))
		return;
	t = thr_get(s, n->occurrence, false);
	k = unit_index(s->a->conf, n->unit);
	if (t && k >= 0 && (size_t)k < t->nunits)
		t->sent[k / 8] |= (unsigned char)(1u << (k % 8));
}

/* ---------------------------------------------------------- curl jobs */

static CURL *easy_get(struct sender *s)
{
	CURL *e;

	if (s->npool > 0) {
		e = s->pool[--s->npool];
		curl_easy_reset(e);
		return e;
	}
	return curl_easy_init();
}

static void easy_put(struct sender *s, CURL *e)
{
	if (!e)
		return;
	if (s->npool < POOL_MAX)
		s->pool[s->npool++] = e;
	else
		curl_easy_cleanup(e);
}

static void job_free(struct job *j)
{
	if (!j)
		return;
	for (size_t i = 0; i < j->nrows; i++)
		notice_clear(&j->rows[i]);
	free(j->rows);
	free(j->ids);
	free(j->data);
	free(j->error);
	free(j->reply);
	free_list(j->rcpt, j->nrcpt);
	free(j->from);
	smtp_msg_clear(&j->msg);
	free_list(j->refused, j->nrefused);
	curl_slist_free_all(j->list);
	free(j);
}

static void job_link(struct sender *s, struct job *j)
{
	j->ids = xcalloc(j->nrows ? j->nrows : 1, sizeof(*j->ids));
	for (size_t i = 0; i < j->nrows; i++)
		j->ids[i] = j->rows[i].id;
	qsort(j->ids, j->nrows, sizeof(*j->ids), cmp_int64);
	j->next = s->jobs;
	if (s->jobs)
		s->jobs->prev = j;
	s->jobs = j;
	if (j->ch == CH_EMAIL)
		s->nmail++;
	else
		s->nhook++;
}

static void job_unlink(struct sender *s, struct job *j)
{
	if (j->prev)
		j->prev->next = j->next;
	else
		s->jobs = j->next;
	if (j->next)
		j->next->prev = j->prev;
	j->prev = j->next = NULL;
	if (j->ch == CH_EMAIL)
		s->nmail--;
	else
		s->nhook--;
}

static size_t discard_cb(char *p, size_t size, size_t nitems, void *userp)
{
	(void)p;
	(void)userp;
	return size * nitems;
}

/* "Name <addr>" -> addr; a bare address stays as it is (trimmed). */
static char *bare_address(const char *s)
{
	const char *lt = strrchr(s, '<');
	const char *gt = lt ? strchr(lt, '>') : NULL;
	char *t;

	if (lt && gt)
		return xstrndup(lt + 1, (size_t)(gt - lt - 1));
	t = xstrdup(s);
	strtrim(t);
	return t;
}

/* The envelope of a mail job, handed to smtp.c. */
static int smtp_submit_job(struct sender *s, struct job *j)
{
	const struct conf *c = s->a->conf;
	char **rcpt = NULL;
	size_t n;

	n = split_list(j->rows[0].recipients, ",", &rcpt);
	j->rcpt = xcalloc(n ? n : 1, sizeof(*j->rcpt));
	for (size_t i = 0; i < n; i++) {
		char *a = bare_address(rcpt[i]);

		if (*a)
			j->rcpt[j->nrcpt++] = a;
		else
			free(a);
	}
	free_list(rcpt, n);
	if (j->nrcpt == 0)
		return -1;
	j->from = bare_address(c->mail.from ? c->mail.from : "");
	j->msg.from = j->from;
	j->msg.rcpt = j->rcpt;
	j->msg.nrcpt = j->nrcpt;
	j->msg.data = j->data;
	j->msg.len = j->len;
	j->msg.arg = j;
	job_link(s, j);
	smtp_submit(s->smtp, c, &j->msg);
	return 0;
}

static bool has_header(const struct curl_slist *l, const char *name)
{
	size_t n = strlen(name);

	for (; l; l = l->next) {
		if (strncasecmp(l->data, name, n) == 0 && l->data[n] == ':')
			return true;
	}
	return false;
}

static int hook_setup(struct sender *s, struct job *j)
{
	const struct conf *c = s->a->conf;
	CURL *e = j->easy;

	if (!has_header(j->list, "Content-Type"))
		j->list = curl_slist_append(j->list,
					    "Content-Type: application/json");
	/* no "100-continue" round trip for bodies over 1 KiB */
	j->list = curl_slist_append(j->list, "Expect:");
	curl_easy_setopt(e, CURLOPT_URL, j->rows[0].recipients);
	curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
	curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, 0L);
	curl_easy_setopt(e, CURLOPT_POST, 1L);
	curl_easy_setopt(e, CURLOPT_POSTFIELDS, j->data);
	curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)j->len);
	curl_easy_setopt(e, CURLOPT_HTTPHEADER, j->list);
	curl_easy_setopt(e, CURLOPT_USERAGENT, "cutoffd/" CUTOFFD_VERSION);
	curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, discard_cb);
	curl_easy_setopt(e, CURLOPT_TIMEOUT,
			 (long)(c->webhook.timeout > 0 ? c->webhook.timeout : 10));
	return 0;
}

/* Settles every row of a job that never reached the network. */
/* A job is finished: its outcome is written with the others of this loop
 * iteration (flush_done).  Takes ownership of error. */
static void job_finish(struct sender *s, struct job *j, enum outcome o,
		       char *error)
{
	j->out = o;
	j->error = error;
	j->jit = jitter(s);
	j->prev = NULL;
	j->next = s->done;
	s->done = j;
	s->ndone++;
	ev_prepare_start(s->a->loop, &s->flush);
}

static void job_fail_local(struct sender *s, struct job *j, const char *error)
{
	job_finish(s, j, OUT_RETRY, xstrdup(error));
}

/* The outcomes in `done` could not be written for another process's
 * lock: keep them and try again a little later (see struct sender). */
static void hold(struct sender *s)
{
	if (!s->held_warned) {
		size_t n = 0;

		for (const struct job *j = s->done; j; j = j->next)
			n += j->nrows;
		log_warn("sender: the state store is locked by another process;"
			 " %zu sent or failed notice%s wait%s to be written, no "
			 "new sends until then", n, n == 1 ? "" : "s",
			 n == 1 ? "s" : "");
		s->held_warned = true;
	}
	s->holding = true;
	s->held_wait = s->held_wait > 0 ? s->held_wait * 2 : HELD_MIN;
	if (s->held_wait > HELD_MAX)
		s->held_wait = HELD_MAX;
	ev_timer_stop(s->a->loop, &s->held);
	ev_timer_set(&s->held, s->held_wait, 0.);
	ev_timer_start(s->a->loop, &s->held);
}

/* Writes the outcomes of finished jobs, in a transaction of its own when
 * `own` (else the caller's): every row sent in one statement, refused
 * addresses, retries and failures one by one (they are few).  Returns
 * false when another process's lock kept them from being written: they
 * stay in `done` (hold). */
static bool flush_done(struct sender *s, bool own)
{
	struct job *list = s->done, *j;
	struct db *db = s->a->db;
	tstamp now = clock_now(&s->a->clk);
	bool txn = false;
	int64_t *ids;
	size_t nids = 0;
	int marked;

	if (!list)
		return true;
	/* without a transaction each row would still be written on its own,
	 * but under another's lock each write fails: the rows would stay
	 * pending and go out again */
	if (own) {
		txn = db_begin(db) == 0;
		if (!txn && db_busy(db)) {
			hold(s);
			return false;
		}
	}
	if (s->held_warned)
		log_info("sender: the held outcomes are written");
	s->holding = s->held_warned = false;
	s->held_wait = 0;
	ev_timer_stop(s->a->loop, &s->held);
	s->done = NULL;
	s->ndone = 0;
	s->flush_due = false;
	ev_timer_stop(s->a->loop, &s->flushtm);
	for (j = list; j; j = j->next) {
		if (j->out == OUT_SENT)
			nids += j->nrows;
	}
	ids = xcalloc(nids ? nids : 1, sizeof(*ids));
	nids = 0;
	for (j = list; j; j = j->next) {
		for (size_t i = 0; j->out == OUT_SENT && i < j->nrows; i++)
			ids[nids++] = j->rows[i].id;
	}
	marked = outbox_mark_sent_all(db, ids, nids, now);
	free(ids);
	for (j = list; j; j = j->next) {
		for (size_t i = 0; i < j->nrows; i++) {
			const struct notice *n = &j->rows[i];

			for (size_t k = 0; k + 1 < j->nrefused; k += 2) {
				struct buf ab;

				outbox_refused_add(db, n->id, j->refused[k],
						   j->refused[k + 1], now);
				buf_init(&ab);
				buf_put_escaped(&ab, j->refused[k], 200);
				log_warn("notice address refused: %s %s %s %s "
					 "email to %s: %s", n->occurrence,
					 n->unit, n->step,
					 audience_name(n->aud), buf_str(&ab),
					 j->refused[k + 1]);
				buf_free(&ab);
			}
			if (j->out != OUT_SENT) {
				if (settle(s, n, j->out, j->error, j->jit,
					   j->min_wait))
					s->rearm = true;
			} else if (marked < 0) {
				log_err("outbox: notice %lld was sent but not "
					"marked", (long long)n->id);
			} else {
				thread_sent(s, n);
				log_outcome(s, n, OUT_SENT, 0, NULL, j->reply, 0);
			}
		}
	}
	if (txn && db_commit(db) < 0) {
		db_rollback(db);
		log_err("outbox: outcomes could not be written; the rows stay "
			"pending and will be sent again");
	}
	while (list) {
		j = list;
		list = j->next;
		job_free(j);
	}
	return true;
}

/* Takes ownership of rows[0..n).  Maildir: delivered here; else queued on
 * the multi handle. */
static void job_start(struct sender *s, enum channel ch, struct notice *rows,
		      size_t n)
{
	const struct conf *c = s->a->conf;
	struct db *db = s->a->db;
	tstamp now = clock_now(&s->a->clk);
	struct job *j = xcalloc(1, sizeof(*j));

	j->s = s;
	j->ch = ch;
	j->rows = rows;
	j->nrows = n;
	if (ch == CH_EMAIL) {
		struct notice **ptrs = xcalloc(n, sizeof(*ptrs));

		/* a unit's mails about one occurrence form one thread */
		rows[0].thread[0] = '\0';
		if (n == 1 && (rows[0].aud & (AUD_UNIT | AUD_HEAD)))
			thread_of(s, &rows[0]);

		for (size_t i = 0; i < n; i++)
			ptrs[i] = &rows[i];
		j->data = mail_build(c, db, ptrs, n, now, &j->len);
		free(ptrs);
		if (!j->data) {
			job_fail_local(s, j, "message could not be built");
			return;
		}
		if (c->mail.transport == TRANSPORT_MAILDIR) {
			if (maildir_deliver(c->mail.maildir, j->data, j->len,
					    now) == 0) {
				job_finish(s, j, OUT_SENT, NULL);
			} else {
				char *e = xasprintf("maildir: %s",
						    strerror(errno));

				job_fail_local(s, j, e);
				free(e);
			}
			return;
		}
	} else {
		j->data = hook_build(c, db, &rows[0], now, &j->list);
		if (!j->data) {
			job_fail_local(s, j, "webhook body could not be built");
			return;
		}
		j->len = strlen(j->data);
	}

	if (ch == CH_EMAIL) {
		if (smtp_submit_job(s, j) < 0)
			job_fail_local(s, j, "no usable recipient");
		return;
	}
	j->easy = easy_get(s);
	if (!j->easy) {
		job_fail_local(s, j, "curl_easy_init failed");
		return;
	}
	hook_setup(s, j);
	curl_easy_setopt(j->easy, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(j->easy, CURLOPT_ERRORBUFFER, j->err);
	curl_easy_setopt(j->easy, CURLOPT_PRIVATE, j);
	job_link(s, j);
	if (curlev_add(s->cv, j->easy) < 0) {
		job_unlink(s, j);
		easy_put(s, j->easy);
		j->easy = NULL;
		job_fail_local(s, j, "curl multi refused the transfer");
	}
}

static void sender_run(struct sender *s);

static char *escaped(const char *t, size_t max)
{
	struct buf b;

	buf_init(&b);
	buf_put_escaped(&b, t ? t : "", max);
	return buf_steal(&b);
}

/* smtp.c: a message's outcome. */
static void on_smtp_done(void *ctx, struct smtp_msg *m)
{
	struct sender *s = ctx;
	struct job *j = m->arg;
	enum outcome o;

	if (m->status == SMTP_ABORTED) {
		/* a stop, before any of it went out: the row stays pending */
		job_unlink(s, j);
		job_free(j);
		return;
	}
	o = m->status == SMTP_SENT ? OUT_SENT :
			 m->status == SMTP_PERMFAIL ? OUT_FAILED : OUT_RETRY;

	if (m->reply)
		j->reply = escaped(m->reply, REPLY_LOG_MAX);
	for (size_t i = 0; m->rcpt_reply && i < m->nrcpt; i++) {
		if (!m->rcpt_reply[i])
			continue;
		if (!j->refused)
			j->refused = xcalloc(2 * m->nrcpt, sizeof(*j->refused));
		j->refused[j->nrefused++] = xstrdup(j->rcpt[i]);
		j->refused[j->nrefused++] = escaped(m->rcpt_reply[i],
						    REPLY_LOG_MAX);
	}
	job_unlink(s, j);
	job_finish(s, j, o, o == OUT_SENT ? NULL :
		   escaped(m->error ? m->error : "not sent",
			   REPLY_LOG_MAX + 200));
}

/* curlev: one webhook transfer finished. */
static void on_done(void *ctx, void *easy, int result)
{
	struct sender *s = ctx;
	struct job *j;
	char *priv = NULL;
	long code = 0;
	enum outcome o;
	char *error = NULL;

	curl_easy_getinfo(easy, CURLINFO_PRIVATE, &priv);
	j = (struct job *)priv;
	if (!j)
		return;
	curl_easy_getinfo(easy, CURLINFO_RESPONSE_CODE, &code);
	o = classify_http(result, code);
	if (result == CURLE_OK)
		j->reply = xasprintf("HTTP %ld", code);
	if (code == 429 || code == 503) {
		curl_off_t ra = 0;

		/* seconds or an HTTP-date, which libcurl turns into seconds
		 * from now; bounded */
		if (curl_easy_getinfo(easy, CURLINFO_RETRY_AFTER, &ra) ==
		    CURLE_OK && ra > 0)
			j->min_wait = ra > RETRY_AFTER_MAX ?
				RETRY_AFTER_MAX : (int64_t)ra;
	}
	if (o != OUT_SENT || result != CURLE_OK) {
		const char *msg = j->err[0] ? j->err :
			curl_easy_strerror((CURLcode)result);

		if (result == CURLE_OK)
			error = xasprintf("HTTP status %ld%s", code,
					  j->min_wait > 0 ? " (Retry-After)" : "");
		else if (code > 0)
			error = xasprintf("%s (server replied %ld)", msg, code);
		else
			error = xasprintf("%s", msg);
	}
	job_unlink(s, j);
	easy_put(s, j->easy);
	j->easy = NULL;
	job_finish(s, j, o, error);
}

static void on_flush(struct ev_loop *loop, ev_prepare *w, int revents)
{
	(void)loop;
	(void)revents;
	sender_run(w->data);
}

/* --------------------------------------------------------- scheduling */

/* Starts jobs for due rows of one channel.  Returns true when rows remain
 * that a later round should look at (maildir backlog). */
static bool start_channel(struct sender *s, enum channel ch, tstamp now)
{
	const struct conf *c = s->a->conf;
	bool local = ch == CH_EMAIL && c->mail.transport == TRANSPORT_MAILDIR;
	/* mail: two per connection, the second rides with the first's text */
	int limit = ch == CH_EMAIL ? 2 * (c->mail.parallel > 0 ? c->mail.parallel : 1)
				   : HOOK_PARALLEL;
	int busy = ch == CH_EMAIL ? s->nmail : s->nhook;
	int free_slots = local ? MAILDIR_BATCH : limit - busy;
	struct notice *rows;
	size_t n = 0, want, i;
	bool more;

	if (free_slots <= 0)
		return false;
	/* From the cursor on, rows in flight are behind it: read only what
	 * the free slots take.  From the start (after a kick, a retry timer,
	 * or the end of the due rows), rows in flight are still pending and
	 * come first: read enough to see past them (a digest holds many). */
	want = (size_t)free_slots;
	if (!s->have_cur[ch]) {
		for (const struct job *j = s->jobs; j; j = j->next) {
			if (j->ch == ch)
				want += j->nrows;
		}
		for (const struct job *j = s->done; j; j = j->next) {
			if (j->ch == ch)
				want += j->nrows;
		}
	}
	rows = xcalloc(want, sizeof(*rows));
	if (outbox_due_after(s->a->db, now, ch,
			     s->have_cur[ch] ? &s->cur[ch] : NULL, want, rows,
			     &n) < 0) {
		free(rows);
		s->have_cur[ch] = false;
		return false;
	}
	more = local && n == want;
	for (i = 0; i < n && free_slots > 0; i++) {
		struct notice *r = &rows[i];
		char *stored;

		if (r->id < 0 || in_flight(s, r->id))
			continue;
		stored = xstrdup(r->recipients);
		if (!prepare_row(s, r, now)) {
			free(stored);
			continue;
		}
		if (ch == CH_EMAIL &&
		    (r->aud == AUD_SECRETARIAT || r->aud == AUD_CHIEF)) {
			/* one digest for every late unit of this send */
			struct notice like = *r, *grp, *keep;
			size_t ng = 0, nk = 0;

			like.recipients = stored;
			grp = xcalloc(DIGEST_MAX, sizeof(*grp));
			if (outbox_due_digest(s->a->db, now, &like, DIGEST_MAX,
					      grp, &ng) < 0)
				ng = 0;
			keep = xcalloc(ng + 1, sizeof(*keep));
			keep[nk++] = *r;        /* the row itself leads */
			r->recipients = NULL;
			/* later rows of this batch that belong to the digest
			 * are taken (or settled) here: skip them below */
			for (size_t k = i + 1; k < n; k++) {
				for (size_t m = 0; m < ng; m++) {
					if (rows[k].id == grp[m].id)
						rows[k].id = -1;
				}
			}
			for (size_t k = 0; k < ng; k++) {
				if (grp[k].id == keep[0].id ||
				    in_flight(s, grp[k].id) ||
				    !prepare_row(s, &grp[k], now)) {
					notice_clear(&grp[k]);
					continue;
				}
				keep[nk++] = grp[k];
			}
			free(grp);
			free(stored);
			job_start(s, ch, keep, nk);
		} else {
			struct notice *one = xmalloc(sizeof(*one));

			free(stored);
			*one = *r;
			r->recipients = NULL;
			job_start(s, ch, one, 1);
		}
		if (!local)
			free_slots--;
	}
	/* The cursor: the last row looked at.  All rows read and fewer than
	 * asked: the end of the due rows, start over next time. */
	if (i == n && n < want) {
		s->have_cur[ch] = false;
	} else {
		/* a row a digest took has id -1: the cursor stays before it
		 * (it is in flight when read again) */
		for (size_t k = i; k-- > 0;) {
			if (rows[k].id >= 0) {
				s->cur[ch].id = rows[k].id;
				s->cur[ch].next_try = rows[k].next_try;
				s->have_cur[ch] = true;
				break;
			}
		}
	}
	for (size_t k = 0; k < n; k++)
		notice_clear(&rows[k]);
	free(rows);
	return more;
}

/* Sleeps until the earliest retry (no timer at all when none is pending):
 * new rows come with a kick from the engine, finished transfers with
 * curl's callbacks.  Asked of the store only when that time may have
 * moved (a retry was written, a kick, the timer itself). */
static void arm_retry(struct sender *s, tstamp now)
{
	tstamp t;

	if (!s->rearm && !s->draining)
		return;
	s->rearm = false;
	ev_timer_stop(s->a->loop, &s->retry);
	if (s->draining)
		return;
	if (outbox_next_try(s->a->db, now, &t) == 0) {
		ev_timer_set(&s->retry, clock_delay(&s->a->clk, t) + 0.05, 0.);
		ev_timer_start(s->a->loop, &s->retry);
	}
}

static void sender_run(struct sender *s)
{
	struct db *db = s->a->db;
	tstamp now;
	bool more = false, txn = false, unsynced = false, flush;
	int64_t changes = 0;

	if (s->kicking) {
		/* called back from inside a round (a local delivery finished):
		 * the outer loop goes round once more */
		s->again = true;
		return;
	}
	ev_prepare_stop(s->a->loop, &s->flush);
	if (s->draining || s->a->stopping) {
		if (!s->holding)
			flush_done(s, true);
		return;
	}
	/* outcomes held by another's lock: the `held` timer tries again;
	 * nothing starts meanwhile (finished transfers join `done`) */
	if (s->holding)
		return;
	/* One transaction per round: the outcomes of the transfers that
	 * finished since the last one, cancellations and the reads that pick
	 * the next rows share one commit and one lock.
	 *
	 * Those writes need not reach the platter before the next send: an
	 * outcome lost in a power cut only makes that notice go out once more
	 * after the restart, never lost (its outbox row, the promise, was
	 * committed with a full sync by the engine), and a crash of the
	 * process loses no commit at all in WAL mode.  So rounds with
	 * outcomes commit without an fsync, and SYNC_AFTER seconds after the
	 * first unsynced one a checkpoint makes them all durable.  Measured:
	 * the fsync per round was the largest cost of a mass send (bench-send:
	 * about 2,100 -> 3,400 notices/s). */
	/* Outcomes are written in batches: up to FLUSH_BATCH finished jobs
	 * or FLUSH_DELAY seconds, whichever comes first, and at once when
	 * nothing else is in flight.  Each write costs a transaction and a
	 * statement whatever its size (callgrind: 25k instructions for one
	 * row); finished rows wait in `done`, where in_flight() sees them.
	 * A crash repeats at most those and the ones in flight. */
	flush = s->done && (s->flush_due || s->ndone >= FLUSH_BATCH || !s->jobs);
	if (s->done && !flush && !ev_is_active(&s->flushtm)) {
		ev_timer_set(&s->flushtm, FLUSH_DELAY, 0.);
		ev_timer_start(s->a->loop, &s->flushtm);
	}
	if (flush) {
		changes = db_total_changes(db);
		unsynced = db_sync_full(db, false) == 0;
	}
	/* the round's reads share one transaction: in autocommit each query
	 * would take and drop the WAL locks (system calls) on its own */
	txn = db_begin(db) == 0;
	if (flush) {
		if (!txn && db_busy(db))
			hold(s);     /* begun in vain just now: no second wait */
		else
			flush_done(s, !txn);
	}
	s->kicking = true;
	now = clock_now(&s->a->clk);
	for (int round = 0; round < MAILDIR_ROUNDS && !s->holding; round++) {
		s->again = false;
		more = start_channel(s, CH_WEBHOOK, now);
		more = start_channel(s, CH_EMAIL, now) || more;
		if (!more && !s->again)
			break;
	}
	s->kicking = false;
	if (more && !ev_is_active(&s->soon)) {
		/* a long local backlog: let the loop breathe, then go on */
		ev_timer_set(&s->soon, 0., 0.);
		ev_timer_start(s->a->loop, &s->soon);
	}
	arm_retry(s, now);
	if (txn && db_commit(db) < 0) {
		db_rollback(db);
		log_err("outbox: outcomes could not be written; the rows stay "
			"pending and will be sent again");
	}
	if (unsynced) {
		db_sync_full(db, true);   /* everyone else commits in full */
		if (db_total_changes(db) != changes &&
		    !ev_is_active(&s->sync)) {
			ev_timer_set(&s->sync, SYNC_AFTER, 0.);
			ev_timer_start(s->a->loop, &s->sync);
		}
	}
}

static void on_flushtm(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct sender *s = w->data;

	(void)loop;
	(void)revents;
	s->flush_due = true;
	sender_run(s);
}

static void on_held(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct sender *s = w->data;

	(void)loop;
	(void)revents;
	s->holding = false;       /* try the write again */
	s->flush_due = true;
	if (s->draining || s->a->stopping)
		flush_done(s, true);
	else
		sender_run(s);
}

static void on_sync(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct sender *s = w->data;

	(void)loop;
	(void)revents;
	db_sync(s->a->db);
}

static void thr_clear(struct sender *s)
{
	for (size_t i = 0; i < sizeof(s->thr) / sizeof(s->thr[0]); i++) {
		free(s->thr[i].sent);
		memset(&s->thr[i], 0, sizeof(s->thr[i]));
	}
}

/* Rows may be due that sit before a cursor: read from the start. */
static void restart(struct sender *s)
{
	thr_clear(s);     /* the configuration (unit indices) may be new */
	s->have_cur[CH_EMAIL] = s->have_cur[CH_WEBHOOK] = false;
	s->rearm = true;
}

static void on_timer(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct sender *s = w->data;

	(void)loop;
	(void)revents;
	if (w == &s->retry)
		restart(s);
	sender_run(s);
}

/* ---------------------------------------------------------------- API */

struct sender *sender_start(struct app *a)
{
	struct sender *s = xcalloc(1, sizeof(*s));

	s->a = a;
	s->cv = curlev_new(a->loop, on_done, s);
	s->smtp = smtp_new(a->loop, on_smtp_done, s);
	if (!s->cv) {
		log_err("sender: curl_multi_init failed");
		smtp_free(s->smtp);
		free(s);
		return NULL;
	}
	s->rng = (uint64_t)clock_now(&a->clk) * UINT64_C(6364136223846793005) +
		 (uint64_t)(uintptr_t)s;
	if (s->rng == 0)
		s->rng = 1;
	ev_init(&s->retry, on_timer);
	s->retry.data = s;
	ev_init(&s->soon, on_timer);
	s->soon.data = s;
	ev_prepare_init(&s->flush, on_flush);
	s->flush.data = s;
	ev_init(&s->sync, on_sync);
	s->sync.data = s;
	ev_init(&s->flushtm, on_flushtm);
	s->flushtm.data = s;
	ev_init(&s->held, on_held);
	s->held.data = s;
	if (a->conf->mail.auth_needs_tls) {
		struct buf u;

		buf_init(&u);
		buf_put_escaped(&u, a->conf->mail.url, 200);
		log_info("mail: user set and %s is not a loopback address: "
			 "STARTTLS is required before AUTH (starttls = try; "
			 "allow_plaintext_auth = yes to allow it)", buf_str(&u));
		buf_free(&u);
	}
	restart(s);
	sender_run(s);
	return s;
}

void sender_kick(struct sender *s)
{
	if (!s)
		return;
	/* the state changed (new rows, a report, a reload): rows may sit
	 * before the cursors, and rendered texts may be stale */
	notice_cache_clear(s->a->conf);
	restart(s);
	sender_run(s);
}

bool sender_drain(struct sender *s)
{
	if (!s)
		return true;
	s->draining = true;
	ev_timer_stop(s->a->loop, &s->retry);
	ev_timer_stop(s->a->loop, &s->soon);
	/* mail none of whose text went out waits for no server */
	smtp_drain(s->smtp);
	if (!s->holding)
		flush_done(s, true);
	return s->jobs == NULL && s->done == NULL;
}

void sender_stop(struct sender *s)
{
	if (!s)
		return;
	ev_timer_stop(s->a->loop, &s->retry);
	ev_timer_stop(s->a->loop, &s->soon);
	ev_timer_stop(s->a->loop, &s->sync);
	ev_prepare_stop(s->a->loop, &s->flush);
	ev_timer_stop(s->a->loop, &s->held);
	/* the last chance to write what was sent: wait for a lock longer */
	db_set_busy_timeout(s->a->db, STOP_BUSY_MS);
	if (!flush_done(s, true)) {
		log_err("sender: outcomes could not be written before the stop;"
			" those notices stay pending and will be sent again");
		while (s->done) {
			struct job *j = s->done;

			s->done = j->next;
			job_free(j);
		}
	}
	db_set_busy_timeout(s->a->db, DB_LOOP_BUSY_MS);
	db_sync(s->a->db);        /* the last outcomes, power-safe */
	/* aborted rows stay pending: the next start sends them */
	smtp_free(s->smtp);
	while (s->jobs) {
		struct job *j = s->jobs;

		job_unlink(s, j);
		if (j->easy) {
			curlev_remove(s->cv, j->easy);
			curl_easy_cleanup(j->easy);
			j->easy = NULL;
		}
		job_free(j);
	}
	while (s->npool > 0)
		curl_easy_cleanup(s->pool[--s->npool]);
	thr_clear(s);
	curlev_free(s->cv);
	free(s);
}
