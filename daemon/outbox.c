/*
 * outbox.c - the durable queue of notices.
 *
 * A row is the promise that one notice (occurrence, unit, step, audience,
 * channel) will be sent: the engine inserts it (idempotently, in the same
 * transaction as its scan mark), the sender moves it to sent, failed or
 * cancelled, or pushes next_try forward.  Rows stay after they are done so
 * that the key is never sent twice and status can show failures.
 */
#include <ctype.h>
#include <stdlib.h>
#include <math.h>
#include <string.h>

#include <sqlite3.h>

#include "cutoffd.h"

static const char *state_name(enum outbox_state st)
{
	switch (st) {
	case OUTBOX_PENDING:
		return "pending";
	case OUTBOX_SENT:
		return "sent";
	case OUTBOX_FAILED:
		return "failed";
	case OUTBOX_CANCELLED:
		return "cancelled";
	}
	return "pending";
}

int outbox_audience(const char *name, enum audience *out)
{
	static const enum audience all[AUD_COUNT] = {
		AUD_UNIT, AUD_HEAD, AUD_SECRETARIAT, AUD_CHIEF,
	};

	for (size_t i = 0; i < AUD_COUNT; i++) {
		if (strcmp(name, audience_name(all[i])) == 0) {
			*out = all[i];
			return 0;
		}
	}
	return -1;
}

int outbox_channel(const char *name, enum channel *out)
{
	if (strcmp(name, channel_name(CH_EMAIL)) == 0) {
		*out = CH_EMAIL;
		return 0;
	}
	if (strcmp(name, channel_name(CH_WEBHOOK)) == 0) {
		*out = CH_WEBHOOK;
		return 0;
	}
	return -1;
}

/* RFC 5322 atext: what may appear in a dot-atom without quoting. */
static bool is_atext(unsigned char ch)
{
	return isalnum(ch) || (ch != 0 && strchr("!#$%&'*+-/=?^_`{|}~", ch));
}

/* The host part of the Message-ID: public_url's host when it is a plain
 * dot-atom (names, IPv4) or a bracketed literal, else cutoffd.invalid. */
static void msgid_host(const char *public_url, char *out, size_t size)
{
	const char *p, *end;
	size_t n;
	bool ok = true;

	snprintf(out, size, "cutoffd.invalid");
	if (!public_url)
		return;
	p = strstr(public_url, "://");
	if (!p)
		return;
	p += 3;
	if (strchr(p, '@') && strchr(p, '@') < p + strcspn(p, "/?#"))
		p = strchr(p, '@') + 1;           /* userinfo is no host */
	if (*p == '[') {
		end = strchr(p, ']');
		if (!end)
			return;
		end++;
		for (const char *q = p + 1; q < end - 1; q++) {
			if (!isxdigit((unsigned char)*q) && *q != ':' && *q != '.')
				ok = false;
		}
	} else {
		end = p + strcspn(p, ":/?#");
		for (const char *q = p; q < end; q++) {
			if (*q == '.' && (q == p || q[-1] == '.' || q + 1 == end))
				ok = false;
			else if (*q != '.' && !is_atext((unsigned char)*q))
				ok = false;
		}
	}
	n = (size_t)(end - p);
	if (!ok || n == 0 || n >= size || n > 100)
		return;
	memcpy(out, p, n);
	out[n] = '\0';
	for (char *q = out; *q; q++)
		*q = (char)tolower((unsigned char)*q);
}

/* One key field as dot-atom text: anything outside atext becomes '-'. */
static void put_atom(struct buf *b, const char *s)
{
	if (!*s) {
		buf_putc(b, '-');
		return;
	}
	for (; *s; s++)
		buf_putc(b, is_atext((unsigned char)*s) ? *s : '-');
}

/* FNV-1a, 64 bit: only needs to be stable, not secret. */
static uint64_t fnv1a(uint64_t h, const char *s)
{
	for (; *s; s++) {
		h ^= (unsigned char)*s;
		h *= UINT64_C(0x100000001b3);
	}
	h ^= 0xff;                           /* field separator */
	h *= UINT64_C(0x100000001b3);
	return h;
}

void outbox_message_id(const char *public_url, const char *occ,
		       const char *unit, const char *step, enum audience aud,
		       enum channel ch, char *out, size_t size)
{
	char host[128];
	struct buf b;

	msgid_host(public_url, host, sizeof(host));
	buf_init(&b);
	buf_putc(&b, '<');
	put_atom(&b, occ);
	buf_putc(&b, '.');
	put_atom(&b, unit);
	buf_putc(&b, '.');
	put_atom(&b, step);
	buf_putc(&b, '.');
	put_atom(&b, audience_name(aud));
	buf_putc(&b, '.');
	put_atom(&b, channel_name(ch));
	buf_printf(&b, "@%s>", host);
	if (b.len >= size) {
		/* Too long to read: a hash of the key is just as stable. */
		uint64_t h = UINT64_C(0xcbf29ce484222325);

		h = fnv1a(h, occ);
		h = fnv1a(h, unit);
		h = fnv1a(h, step);
		h = fnv1a(h, audience_name(aud));
		h = fnv1a(h, channel_name(ch));
		buf_reset(&b);
		buf_printf(&b, "<cutoffd.%016llx@%s>", (unsigned long long)h,
			   host);
	}
	snprintf(out, size, "%s", buf_str(&b));
	buf_free(&b);
}

char *outbox_recipients(const struct conf *c, const struct unit *u,
			enum audience aud, enum channel ch)
{
	struct buf b;

	if (ch == CH_WEBHOOK)
		return u && u->webhook ? xstrdup(u->webhook) : NULL;
	switch (aud) {
	case AUD_UNIT:
		if (!u || u->nemail == 0)
			return NULL;
		buf_init(&b);
		for (size_t i = 0; i < u->nemail; i++) {
			if (i)
				buf_putc(&b, ',');
			buf_puts(&b, u->email[i]);
		}
		return buf_steal(&b);
	case AUD_HEAD:
		return u && u->head ? xstrdup(u->head) : NULL;
	case AUD_SECRETARIAT:
		return c->secretariat.email ? xstrdup(c->secretariat.email) : NULL;
	case AUD_CHIEF:
		return c->secretariat.chief ? xstrdup(c->secretariat.chief) : NULL;
	}
	return NULL;
}

/* Statements are prepared once per connection (db_stmt): the sender asks
 * for due rows after every transfer. */
static sqlite3_stmt *prepare(struct db *db, const char *sql)
{
	return db_stmt(db, sql);
}

static int step_done(struct db *db, sqlite3_stmt *st)
{
	int rc = sqlite3_step(st);

	if (rc != SQLITE_DONE) {
		log_err("outbox: %s", sqlite3_errmsg(db_handle(db)));
		return -1;
	}
	return 0;
}

static void bind_text(sqlite3_stmt *st, int i, const char *s)
{
	if (s)
		sqlite3_bind_text(st, i, s, -1, SQLITE_TRANSIENT);
	else
		sqlite3_bind_null(st, i);
}

static sqlite3_stmt *prepare_add(struct db *db)
{
	return prepare(db,
		       "INSERT OR IGNORE INTO outbox(occurrence, unit, step, "
		       "audience, channel, recipients, send_at, created, state, "
		       "attempts, next_try, message_id) "
		       "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, 'pending', 0, "
		       "max(?7, ?10), ?9)");
}

static int add_one(struct db *db, sqlite3_stmt *st, const struct notice *n,
		   tstamp now)
{
	int rc;

	sqlite3_reset(st);
	sqlite3_clear_bindings(st);
	bind_text(st, 1, n->occurrence);
	bind_text(st, 2, n->unit);
	bind_text(st, 3, n->step);
	bind_text(st, 4, audience_name(n->aud));
	bind_text(st, 5, channel_name(n->ch));
	bind_text(st, 6, n->recipients ? n->recipients : "");
	sqlite3_bind_int64(st, 7, n->send_at);
	sqlite3_bind_int64(st, 8, now);
	bind_text(st, 9, n->message_id);
	/* a row born held (engine.c: an open proposal pauses the head's) */
	sqlite3_bind_int64(st, 10, n->next_try);
	if (step_done(db, st) < 0)
		return -1;
	rc = sqlite3_changes(db_handle(db)) > 0 ? 1 : 0;
	sqlite3_reset(st);
	return rc;
}

int outbox_add(struct db *db, const struct notice *n, tstamp now)
{
	sqlite3_stmt *st = prepare_add(db);
	int rc;

	if (!st)
		return -1;
	rc = add_one(db, st, n, now);
	db_stmt_done(db, st);
	return rc;
}

int outbox_add_all(struct db *db, const struct notice *const *ns, size_t n,
		   tstamp now)
{
	sqlite3_stmt *st;
	int added = 0, rc;

	if (n == 0)
		return 0;
	/* one statement for the whole batch: a scan may queue 10,000s */
	st = prepare_add(db);
	if (!st)
		return -1;
	for (size_t i = 0; i < n; i++) {
		rc = add_one(db, st, ns[i], now);
		if (rc < 0) {
			added = -1;
			break;
		}
		if (added < INT32_MAX)
			added += rc;
	}
	db_stmt_done(db, st);
	return added;
}

#define ROW_COLS "id, occurrence, unit, step, audience, channel, recipients, " \
	"send_at, attempts, created, message_id, next_try"

/* Fills n from a row selected with ROW_COLS; -1 on a value we can't read. */
static int read_row(sqlite3_stmt *st, struct notice *n)
{
	const char *aud = (const char *)sqlite3_column_text(st, 4);
	const char *ch = (const char *)sqlite3_column_text(st, 5);
	const char *s;

	memset(n, 0, sizeof(*n));
	n->id = sqlite3_column_int64(st, 0);
	if (!aud || outbox_audience(aud, &n->aud) < 0 || !ch ||
	    outbox_channel(ch, &n->ch) < 0)
		return -1;
	s = (const char *)sqlite3_column_text(st, 1);
	snprintf(n->occurrence, sizeof(n->occurrence), "%s", s ? s : "");
	s = (const char *)sqlite3_column_text(st, 2);
	snprintf(n->unit, sizeof(n->unit), "%s", s ? s : "");
	s = (const char *)sqlite3_column_text(st, 3);
	snprintf(n->step, sizeof(n->step), "%s", s ? s : "");
	s = (const char *)sqlite3_column_text(st, 6);
	n->recipients = xstrdup(s ? s : "");
	n->send_at = sqlite3_column_int64(st, 7);
	n->attempts = sqlite3_column_int(st, 8);
	n->created = sqlite3_column_int64(st, 9);
	s = (const char *)sqlite3_column_text(st, 10);
	snprintf(n->message_id, sizeof(n->message_id), "%s", s ? s : "");
	n->next_try = sqlite3_column_int64(st, 11);
	return 0;
}

/* Steps st, appending rows to out (at most max).  Rows that can't be read
 * (a hand-edited database) are logged and skipped. */
static int collect(struct db *db, sqlite3_stmt *st, struct notice *out,
		   size_t max, size_t *count)
{
	size_t k = 0;
	int rc;

	for (;;) {
		rc = sqlite3_step(st);
		if (rc == SQLITE_DONE)
			break;
		if (rc != SQLITE_ROW) {
			log_err("outbox: %s", sqlite3_errmsg(db_handle(db)));
			for (size_t i = 0; i < k; i++)
				notice_clear(&out[i]);
			return -1;
		}
		if (k == max)
			break;
		if (read_row(st, &out[k]) < 0) {
			log_warn("outbox: row %lld has a bad audience or channel",
				 (long long)sqlite3_column_int64(st, 0));
			notice_clear(&out[k]);
			continue;
		}
		k++;
	}
	*count = k;
	return 0;
}

int outbox_due(struct db *db, tstamp now, int channel, size_t max,
	       struct notice *out, size_t *count)
{
	sqlite3_stmt *st;
	int rc;

	/* Oldest due first, in index order: the cost is the LIMIT, not the
	 * backlog (a big send has thousands of due rows). */
	if (channel >= 0)
		return outbox_due_after(db, now, (enum channel)channel, NULL, max,
					out, count);
	st = prepare(db, "SELECT " ROW_COLS " FROM outbox "
		     "WHERE state = 'pending' AND next_try <= ?1 "
		     "ORDER BY next_try, id LIMIT ?3");
	if (!st)
		return -1;
	sqlite3_bind_int64(st, 1, now);
	sqlite3_bind_int64(st, 3, max > INT64_MAX ? INT64_MAX : (int64_t)max);
	rc = collect(db, st, out, max, count);
	db_stmt_done(db, st);
	return rc;
}

int outbox_due_after(struct db *db, tstamp now, enum channel ch,
		     const struct notice *after, size_t max, struct notice *out,
		     size_t *count)
{
	sqlite3_stmt *st;
	size_t got = 0, more = 0;
	int rc;

	/* Two seeks in index order (outbox_due_channel, then the rowid): the
	 * rest of the cursor's next_try, then the later ones.  A row value
	 * (next_try, id) > (?, ?) would read the whole group of equal
	 * next_try from its start, and a mass send is one such group. */
	if (after) {
		st = prepare(db, "SELECT " ROW_COLS " FROM outbox "
			     "WHERE state = 'pending' AND channel = ?2 "
			     "AND next_try = ?4 AND id > ?5 "
			     "ORDER BY id LIMIT ?3");
		if (!st)
			return -1;
		bind_text(st, 2, channel_name(ch));
		sqlite3_bind_int64(st, 3, max > INT64_MAX ? INT64_MAX : (int64_t)max);
		/* no "next_try <= now" here: with it the planner ranges on
		 * that instead of seeking (next_try, rowid); the cursor was
		 * due when read, and time only moves on */
		sqlite3_bind_int64(st, 4, after->next_try > now ? INT64_MIN :
					  after->next_try);
		sqlite3_bind_int64(st, 5, after->id);
		rc = collect(db, st, out, max, &got);
		db_stmt_done(db, st);
		if (rc < 0 || got == max) {
			if (rc == 0)
				*count = got;
			return rc;
		}
	}
	st = prepare(db, "SELECT " ROW_COLS " FROM outbox "
		     "WHERE state = 'pending' AND channel = ?2 "
		     "AND next_try <= ?1 AND next_try > ?4 "
		     "ORDER BY next_try, id LIMIT ?3");
	if (!st)
		rc = -1;
	else {
		sqlite3_bind_int64(st, 1, now);
		bind_text(st, 2, channel_name(ch));
		sqlite3_bind_int64(st, 3, (int64_t)(max - got));
		sqlite3_bind_int64(st, 4, after ? after->next_try : INT64_MIN);
		rc = collect(db, st, out + got, max - got, &more);
		db_stmt_done(db, st);
	}
	if (rc < 0) {
		for (size_t i = 0; i < got; i++)
			notice_clear(&out[i]);
		return -1;
	}
	*count = got + more;
	return 0;
}

int outbox_due_digest(struct db *db, tstamp now, const struct notice *like,
		      size_t max, struct notice *out, size_t *count)
{
	sqlite3_stmt *st;
	int rc;

	st = prepare(db, "SELECT " ROW_COLS " FROM outbox "
		     "WHERE state = 'pending' AND next_try <= ?1 "
		     "AND channel = 'email' "
		     "AND audience IN ('secretariat', 'chief') "
		     "AND step = ?2 AND recipients = ?3 AND send_at = ?4 "
		     "ORDER BY unit, id LIMIT ?5");
	if (!st)
		return -1;
	sqlite3_bind_int64(st, 1, now);
	bind_text(st, 2, like->step);
	bind_text(st, 3, like->recipients ? like->recipients : "");
	sqlite3_bind_int64(st, 4, like->send_at);
	sqlite3_bind_int64(st, 5, max > INT64_MAX ? INT64_MAX : (int64_t)max);
	rc = collect(db, st, out, max, count);
	db_stmt_done(db, st);
	return rc;
}

int outbox_get(struct db *db, const char *occ, const char *unit,
	       const char *step, enum audience aud, enum channel ch,
	       struct notice *out, enum outbox_state *state)
{
	sqlite3_stmt *st;
	struct notice n;
	const char *s;
	int rc;

	st = prepare(db, "SELECT " ROW_COLS ", state FROM outbox "
		     "WHERE occurrence = ?1 AND unit = ?2 AND step = ?3 "
		     "AND audience = ?4 AND channel = ?5");
	if (!st)
		return -1;
	bind_text(st, 1, occ);
	bind_text(st, 2, unit);
	bind_text(st, 3, step);
	bind_text(st, 4, audience_name(aud));
	bind_text(st, 5, channel_name(ch));
	rc = sqlite3_step(st);
	if (rc == SQLITE_DONE) {
		rc = 1;
	} else if (rc != SQLITE_ROW || read_row(st, &n) < 0) {
		rc = -1;
	} else {
		rc = 0;
		if (state) {
			s = (const char *)sqlite3_column_text(st, 12);
			*state = OUTBOX_PENDING;
			for (int i = OUTBOX_PENDING; s && i <= OUTBOX_CANCELLED; i++) {
				if (strcmp(s, state_name((enum outbox_state)i)) == 0)
					*state = (enum outbox_state)i;
			}
		}
		if (out)
			*out = n;
		else
			notice_clear(&n);
	}
	db_stmt_done(db, st);
	return rc;
}

/* Moves a pending row to a final state; counts the attempt when asked. */
static int finish(struct db *db, int64_t id, enum outbox_state to, tstamp now,
		  const char *error, bool attempt)
{
	sqlite3_stmt *st;
	int rc;

	st = prepare(db, "UPDATE outbox SET state = ?2, done_at = ?3, "
		     "last_error = coalesce(?4, last_error), "
		     "attempts = attempts + ?5 "
		     "WHERE id = ?1 AND state = 'pending'");
	if (!st)
		return -1;
	sqlite3_bind_int64(st, 1, id);
	bind_text(st, 2, state_name(to));
	sqlite3_bind_int64(st, 3, now);
	bind_text(st, 4, error);
	sqlite3_bind_int(st, 5, attempt ? 1 : 0);
	rc = step_done(db, st);
	db_stmt_done(db, st);
	return rc;
}

int outbox_mark_sent(struct db *db, int64_t id, tstamp now)
{
	return finish(db, id, OUTBOX_SENT, now, NULL, true);
}

int outbox_mark_sent_all(struct db *db, const int64_t *ids, size_t n,
			 tstamp now)
{
	sqlite3_stmt *st;
	struct buf b;
	int rc;

	if (n == 0)
		return 0;
	/* One statement for every row: each UPDATE of its own costs a
	 * statement journal and a VM run (callgrind: 36k instructions a row,
	 * the largest SQL cost of a mass send). */
	st = prepare(db, "UPDATE outbox SET state = 'sent', done_at = ?2, "
		     "attempts = attempts + 1 "
		     "WHERE id IN (SELECT value FROM json_each(?1)) "
		     "AND +state = 'pending'");  /* '+': by rowid, not by
						    scanning the state index */
	if (!st)
		return -1;
	buf_init(&b);
	buf_putc(&b, '[');
	for (size_t i = 0; i < n; i++)
		buf_printf(&b, i ? ",%lld" : "%lld", (long long)ids[i]);
	buf_putc(&b, ']');
	sqlite3_bind_text(st, 1, b.p, (int)b.len, SQLITE_STATIC);
	sqlite3_bind_int64(st, 2, now);
	rc = step_done(db, st);
	db_stmt_done(db, st);
	buf_free(&b);
	return rc;
}

int outbox_mark_failed(struct db *db, int64_t id, tstamp now,
		       const char *error)
{
	return finish(db, id, OUTBOX_FAILED, now, error ? error : "failed",
		      true);
}

int outbox_mark_cancelled(struct db *db, int64_t id, tstamp now,
			  const char *why)
{
	return finish(db, id, OUTBOX_CANCELLED, now, why, false);
}

int outbox_mark_retry(struct db *db, int64_t id, tstamp next_try,
		      const char *error)
{
	sqlite3_stmt *st;
	int rc;

	st = prepare(db, "UPDATE outbox SET next_try = ?2, last_error = ?3, "
		     "attempts = attempts + 1 "
		     "WHERE id = ?1 AND state = 'pending'");
	if (!st)
		return -1;
	sqlite3_bind_int64(st, 1, id);
	sqlite3_bind_int64(st, 2, next_try);
	bind_text(st, 3, error);
	rc = step_done(db, st);
	db_stmt_done(db, st);
	return rc;
}

int64_t outbox_backoff(int64_t retry_min, int64_t retry_max, int attempts,
		       double jitter)
{
	double d;

	if (retry_min <= 0)
		retry_min = 60;
	if (retry_max < retry_min)
		retry_max = retry_min;
	if (attempts < 1)
		attempts = 1;
	/* 2^62 s is far past any cap: stop doubling there (no overflow). */
	d = (double)retry_min * ldexp(1.0, attempts - 1 > 62 ? 62 : attempts - 1);
	if (d > (double)retry_max)
		d = (double)retry_max;
	if (jitter < -1.0)
		jitter = -1.0;
	if (jitter > 1.0)
		jitter = 1.0;
	d *= 1.0 + 0.1 * jitter;
	return d < 1.0 ? 1 : (int64_t)d;
}

int outbox_defer(struct db *db, const struct conf *c, const struct notice *n,
		 tstamp now, const char *error, double jitter)
{
	return outbox_defer_until(db, c, n, now, error, jitter, 0, NULL);
}

int outbox_defer_until(struct db *db, const struct conf *c,
		       const struct notice *n, tstamp now, const char *error,
		       double jitter, int64_t min_wait, tstamp *next)
{
	/* A row queued late (catch-up after downtime) counts from when it
	 * was queued: else its first temporary failure would be final. */
	tstamp since = n->created > n->send_at ? n->created : n->send_at;
	int64_t wait;

	if (c->mail.give_up > 0 && now - since > c->mail.give_up) {
		if (outbox_mark_failed(db, n->id, now, error) < 0)
			return -1;
		return 1;
	}
	wait = outbox_backoff(c->mail.retry_min, c->mail.retry_max,
			      n->attempts + 1, jitter);
	if (wait < min_wait)
		wait = min_wait;     /* the server said when (Retry-After) */
	if (outbox_mark_retry(db, n->id, now + wait, error) < 0)
		return -1;
	if (next)
		*next = now + wait;
	return 0;
}

/* Two statements rather than one with sum(attempts > 0); the second reads
 * only the pending rows (the partial index outbox_pending).  The first
 * reads every row since schema 4 dropped the covering index on (state,
 * channel) for the sender's sake: /metrics caches its result per change. */
int outbox_counts(struct db *db, int64_t counts[4][2], int64_t retrying[2])
{
	static const char *const states[4] = {
		[OUTBOX_PENDING] = "pending", [OUTBOX_SENT] = "sent",
		[OUTBOX_FAILED] = "failed", [OUTBOX_CANCELLED] = "cancelled",
	};
	sqlite3_stmt *st;
	enum channel c;
	int rc;

	memset(counts, 0, 4 * sizeof(counts[0]));
	retrying[0] = retrying[1] = 0;
	st = prepare(db, "SELECT state, channel, count(*) FROM outbox "
		     "GROUP BY state, channel");
	if (!st)
		return -1;
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		const char *state = (const char *)sqlite3_column_text(st, 0);
		const char *ch = (const char *)sqlite3_column_text(st, 1);

		if (!state || !ch || outbox_channel(ch, &c) < 0)
			continue;
		for (int i = 0; i < 4; i++)
			if (strcmp(state, states[i]) == 0)
				counts[i][c] = sqlite3_column_int64(st, 2);
	}
	db_stmt_done(db, st);
	if (rc != SQLITE_DONE)
		goto fail;
	st = prepare(db, "SELECT channel, count(*) FROM outbox "
		     "WHERE state = 'pending' AND attempts > 0 GROUP BY channel");
	if (!st)
		return -1;
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		const char *ch = (const char *)sqlite3_column_text(st, 0);

		if (ch && outbox_channel(ch, &c) == 0)
			retrying[c] = sqlite3_column_int64(st, 1);
	}
	db_stmt_done(db, st);
	if (rc == SQLITE_DONE)
		return 0;
fail:
	log_err("outbox: counts: %s", sqlite3_errmsg(db_handle(db)));
	return -1;
}

int outbox_refused_add(struct db *db, int64_t id, const char *address,
		       const char *reply, tstamp now)
{
	sqlite3_stmt *st;
	int rc;

	st = prepare(db, "INSERT OR REPLACE INTO outbox_refused(outbox_id, "
		     "address, reply, at) VALUES (?1, ?2, ?3, ?4)");
	if (!st)
		return -1;
	sqlite3_bind_int64(st, 1, id);
	bind_text(st, 2, address);
	bind_text(st, 3, reply ? reply : "");
	sqlite3_bind_int64(st, 4, now);
	rc = step_done(db, st);
	db_stmt_done(db, st);
	return rc;
}

int outbox_refused_foreach(struct db *db, const char *occ,
			   outbox_refused_fn fn, void *ctx)
{
	sqlite3_stmt *st;
	struct outbox_refusal r;
	int rc, ret = 0;

	st = prepare(db, "SELECT o.occurrence, o.unit, o.step, o.audience, "
		     "r.address, r.reply, r.at FROM outbox_refused r "
		     "JOIN outbox o ON o.id = r.outbox_id "
		     "WHERE ?1 IS NULL OR o.occurrence = ?1 "
		     "ORDER BY o.occurrence, o.unit, o.step, r.address");
	if (!st)
		return -1;
	bind_text(st, 1, occ);
	for (;;) {
		rc = sqlite3_step(st);
		if (rc == SQLITE_DONE)
			break;
		if (rc != SQLITE_ROW) {
			log_err("outbox: %s", sqlite3_errmsg(db_handle(db)));
			ret = -1;
			break;
		}
		memset(&r, 0, sizeof(r));
		r.occurrence = (const char *)sqlite3_column_text(st, 0);
		r.unit = (const char *)sqlite3_column_text(st, 1);
		r.step = (const char *)sqlite3_column_text(st, 2);
		r.audience = (const char *)sqlite3_column_text(st, 3);
		r.address = (const char *)sqlite3_column_text(st, 4);
		r.reply = (const char *)sqlite3_column_text(st, 5);
		r.at = sqlite3_column_int64(st, 6);
		if (!r.occurrence || !r.unit || !r.step || !r.audience ||
		    !r.address || !r.reply)
			continue;
		if (fn(ctx, &r) != 0)
			break;
	}
	db_stmt_done(db, st);
	return ret;
}

int outbox_thread_root(struct db *db, const struct notice *n, char *out,
		       size_t size)
{
	sqlite3_stmt *st;
	int64_t best_at = 0, best_id = 0;
	bool found = false;
	int rc;

	/* (occurrence, unit) is the prefix of the key's UNIQUE index: a
	 * seek to the few rows of this unit and occurrence; the earliest is
	 * picked here (an ORDER BY would open a sorter for each notice) */
	st = prepare(db, "SELECT message_id, done_at, id, audience, channel "
		     "FROM outbox WHERE occurrence = ?1 AND unit = ?2 "
		     "AND state = 'sent'");
	if (!st)
		return -1;
	bind_text(st, 1, n->occurrence);
	bind_text(st, 2, n->unit);
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		const char *m = (const char *)sqlite3_column_text(st, 0);
		int64_t at = sqlite3_column_int64(st, 1);
		int64_t id = sqlite3_column_int64(st, 2);
		const char *aud = (const char *)sqlite3_column_text(st, 3);
		const char *ch = (const char *)sqlite3_column_text(st, 4);

		if (!m || !*m || id == n->id || !aud || !ch ||
		    strcmp(ch, "email") != 0 ||
		    (strcmp(aud, "unit") != 0 && strcmp(aud, "head") != 0))
			continue;
		if (!found || at < best_at || (at == best_at && id < best_id)) {
			snprintf(out, size, "%s", m);
			best_at = at;
			best_id = id;
			found = true;
		}
	}
	if (rc != SQLITE_DONE) {
		log_err("outbox: %s", sqlite3_errmsg(db_handle(db)));
		db_stmt_done(db, st);
		return -1;
	}
	db_stmt_done(db, st);
	return found ? 0 : 1;
}

int outbox_occ_has_mail(struct db *db, const char *occ)
{
	sqlite3_stmt *st;
	int rc;

	st = prepare(db, "SELECT 1 FROM outbox WHERE occurrence = ?1 "
		     "AND state = 'sent' AND channel = 'email' "
		     "AND audience IN ('unit', 'head') LIMIT 1");
	if (!st)
		return -1;
	bind_text(st, 1, occ);
	rc = sqlite3_step(st);
	if (rc == SQLITE_ROW)
		rc = 1;
	else if (rc == SQLITE_DONE)
		rc = 0;
	else {
		log_err("outbox: %s", sqlite3_errmsg(db_handle(db)));
		rc = -1;
	}
	db_stmt_done(db, st);
	return rc;
}

int outbox_next_try(struct db *db, tstamp after, tstamp *t)
{
	sqlite3_stmt *st;
	int rc;

	/* one seek per channel in outbox_pending (channel, next_try) */
	st = prepare(db, "SELECT min(t) FROM ("
		     "SELECT min(next_try) AS t FROM outbox "
		     "WHERE state = 'pending' AND channel = 'email' "
		     "AND next_try > ?1 UNION ALL "
		     "SELECT min(next_try) FROM outbox "
		     "WHERE state = 'pending' AND channel = 'webhook' "
		     "AND next_try > ?1)");
	if (!st)
		return -1;
	sqlite3_bind_int64(st, 1, after);
	rc = sqlite3_step(st);
	if (rc != SQLITE_ROW) {
		log_err("outbox: %s", sqlite3_errmsg(db_handle(db)));
		rc = -1;
	} else if (sqlite3_column_type(st, 0) == SQLITE_NULL) {
		rc = 1;
	} else {
		*t = sqlite3_column_int64(st, 0);
		rc = 0;
	}
	db_stmt_done(db, st);
	return rc;
}

int outbox_cancel(struct db *db, outbox_keep_fn keep, void *ctx, tstamp now)
{
	struct notice *rows = NULL;
	size_t nrows = 0, cap = 0, ncancel = 0;
	const char **why = NULL;
	sqlite3_stmt *st;
	int rc, ret = -1;

	/* Read every pending row first: the predicate may query the database
	 * itself, and updating under a live SELECT is asking for trouble. */
	st = prepare(db, "SELECT " ROW_COLS " FROM outbox "
		     "WHERE state = 'pending' ORDER BY id");
	if (!st)
		return -1;
	for (;;) {
		rc = sqlite3_step(st);
		if (rc == SQLITE_DONE)
			break;
		if (rc != SQLITE_ROW) {
			log_err("outbox: %s", sqlite3_errmsg(db_handle(db)));
			db_stmt_done(db, st);
			goto out;
		}
		if (nrows == cap) {
			cap = cap ? 2 * cap : 64;
			rows = xrealloc(rows, cap * sizeof(*rows));
		}
		if (read_row(st, &rows[nrows]) < 0) {
			notice_clear(&rows[nrows]);
			continue;
		}
		nrows++;
	}
	db_stmt_done(db, st);

	why = xcalloc(nrows ? nrows : 1, sizeof(*why));
	for (size_t i = 0; i < nrows; i++) {
		const char *w = NULL;

		if (!keep(ctx, &rows[i], &w)) {
			why[i] = w ? w : "cancelled";
			ncancel++;
		}
	}
	if (ncancel == 0) {
		ret = 0;
		goto out;
	}
	if (db_begin(db) < 0)
		goto out;
	for (size_t i = 0; i < nrows; i++) {
		if (why[i] && outbox_mark_cancelled(db, rows[i].id, now,
						    why[i]) < 0) {
			db_rollback(db);
			goto out;
		}
	}
	if (db_commit(db) < 0) {
		db_rollback(db);
		goto out;
	}
	for (size_t i = 0; i < nrows; i++) {
		if (why[i])
			log_info("notice cancelled: %s %s %s %s %s (%s)",
				 rows[i].occurrence, rows[i].unit, rows[i].step,
				 audience_name(rows[i].aud),
				 channel_name(rows[i].ch), why[i]);
	}
	ret = (int)(ncancel > INT32_MAX ? INT32_MAX : ncancel);
out:
	for (size_t i = 0; i < nrows; i++)
		notice_clear(&rows[i]);
	free(rows);
	free(why);
	return ret;
}

/* For the status views: what the secretariat must see, since nobody else
 * will. */
int outbox_troubles(struct db *db, size_t scan,
		    int (*fn)(void *ctx, const struct outbox_trouble *t),
		    void *ctx)
{
	/* two branches, each on its partial index (outbox_failed,
	 * outbox_pending): an OR of them would read every row, sent ones
	 * included, and those pile up */
	static const char sql[] =
		"SELECT occurrence, unit, step, audience, channel,"
		" COALESCE(last_error, ''), COALESCE(done_at, next_try),"
		" state = 'pending', id"
		" FROM outbox WHERE state = 'failed'"
		" UNION ALL SELECT occurrence, unit, step, audience, channel,"
		" COALESCE(last_error, ''), COALESCE(done_at, next_try),"
		" state = 'pending', id"
		" FROM outbox WHERE state = 'pending' AND attempts > 0"
		" ORDER BY 7 DESC, 9 DESC LIMIT ?";
	sqlite3 *h = db_handle(db);
	sqlite3_stmt *st = NULL;
	int rc;

	if (!h || sqlite3_prepare_v2(h, sql, -1, &st, NULL) != SQLITE_OK)
		return -1;
	sqlite3_bind_int64(st, 1, (sqlite3_int64)scan);
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		struct outbox_trouble t;
		const char *col[6];

		for (int i = 0; i < 6; i++) {
			col[i] = (const char *)sqlite3_column_text(st, i);
			if (!col[i])
				col[i] = "";
		}
		t.occurrence = col[0];
		t.unit = col[1];
		t.step = col[2];
		t.audience = col[3];
		t.channel = col[4];
		t.error = col[5];
		t.at = sqlite3_column_int64(st, 6);
		t.retrying = sqlite3_column_int(st, 7) != 0;
		if (fn(ctx, &t) != 0) {
			rc = SQLITE_DONE;
			break;
		}
	}
	sqlite3_finalize(st);
	return rc == SQLITE_DONE ? 0 : -1;
}
