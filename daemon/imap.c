/*
 * imap.c - the secretariat's mailbox ([imap]), polled for reports the
 * units send and for delivery status notifications of our notices.
 *
 * Through libcurl's IMAP on the event loop (curlev.c), one connection,
 * one command per transfer, every one a custom request on a URL without
 * a mailbox:
 *
 *   EXAMINE "INBOX"                      read-only: UIDVALIDITY, nothing
 *                                        the server marks
 *   UID SEARCH UID n:*                   the new messages since the last
 *   UID FETCH u (BODY.PEEK[]<0.N>)       PEEK: never sets \Seen
 *
 * Never SELECT, STORE, COPY or EXPUNGE: libcurl's own fetch (a URL with
 * ;UID=) would SELECT and send BODY[], which marks the message seen.  A
 * custom command's literal ({N} then N bytes) is not handed to the write
 * callback by libcurl, so the message bytes are taken from the response
 * lines libcurl reports to the debug callback (CURLINFO_HEADER_IN), which
 * are the server's bytes as read.  Were the connection to drop between
 * EXAMINE and FETCH, the FETCH on the new one fails ("no mailbox
 * selected") instead of reading anything in read-write mode.
 *
 * The mailbox's UIDVALIDITY and the last UID read live in the state
 * store's meta table; every message read is in imap_seen by Message-ID,
 * so a restart or a new UIDVALIDITY (everything read again) never counts
 * a message twice.  A dead, slow or refusing server costs a failed
 * transfer and a longer wait (backoff), never the loop.
 */
#include <ctype.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <curl/curl.h>
#include <ev.h>

#include "cutoffd.h"

/* Bytes of a message read: its header, a report's parts, the first
 * parts' headers; attachment names past them come from BODYSTRUCTURE.
 * (libcurl refuses a command's answer over 300 KiB.) */
#define FETCH_MAX (128 * 1024)
#define RAW_MAX (FETCH_MAX + 80 * 1024)
#define OUT_MAX (1024 * 1024)        /* untagged lines (SEARCH) */
#define PER_POLL 200                 /* messages per poll, then go on */
#define BACKOFF_MAX (30 * 60)

enum imstep { ST_IDLE, ST_EXAMINE, ST_SEARCH, ST_FETCH };

struct imap {
	struct app *a;
	struct curlev *cv;
	CURL *easy;
	ev_timer timer;
	enum imstep st;
	bool busy;
	struct buf out;           /* write callback: untagged lines */
	struct buf raw;           /* debug callback: response bytes */
	bool raw_over;
	char err[CURL_ERROR_SIZE];
	char *base;               /* the URL without the mailbox */
	char *mailbox;            /* decoded, for EXAMINE */
	char *key;                /* url + user: whose UIDs are stored */
	int64_t uidvalidity;
	int64_t last_uid;
	int64_t *uids;
	size_t nuids, iuid;
	int fails;                /* consecutive failed polls */
	int fetch_fails;          /* of the current UID */
	bool more;                /* PER_POLL cut the list: poll again */
};

/* Counters for /metrics and /healthz (since start). */
static struct {
	uint64_t polls, poll_failures;
	tstamp last_poll, last_ok;
	uint64_t msg[IMAP_OUTCOMES];
	char last_error[160];
} stats;

static const char *const outcome_names[IMAP_OUTCOMES] = {
	[IMAP_RECORDED] = "recorded", [IMAP_PROPOSED] = "proposed",
	[IMAP_BOUNCED] = "bounced", [IMAP_AUTOREPLY] = "autoreply",
	[IMAP_UNKNOWN_SENDER] = "unknown_sender",
	[IMAP_UNMATCHED] = "unmatched", [IMAP_ALREADY] = "already",
	[IMAP_UNREADABLE] = "unreadable",
};

const char *
imap_outcome_name(enum imap_outcome o)
{
	return o < IMAP_OUTCOMES ? outcome_names[o] : "?";
}

void
imap_metrics_write(struct buf *b)
{
	buf_puts(b, "# HELP cutoffd_imap_last_poll_timestamp_seconds Last "
		 "successful poll of the [imap] mailbox.\n# TYPE "
		 "cutoffd_imap_last_poll_timestamp_seconds gauge\n");
	buf_printf(b, "cutoffd_imap_last_poll_timestamp_seconds %lld\n",
		   (long long)stats.last_ok);
	buf_puts(b, "# HELP cutoffd_imap_poll_failures_total Polls that "
		 "failed (connection, TLS, login, command).\n# TYPE "
		 "cutoffd_imap_poll_failures_total counter\n");
	buf_printf(b, "cutoffd_imap_poll_failures_total %llu\n",
		   (unsigned long long)stats.poll_failures);
	buf_puts(b, "# HELP cutoffd_imap_messages_total Messages read from "
		 "the mailbox, by what came of them.\n# TYPE "
		 "cutoffd_imap_messages_total counter\n");
	for (int i = 0; i < IMAP_OUTCOMES; i++)
		buf_printf(b, "cutoffd_imap_messages_total{outcome=\"%s\"} "
			   "%llu\n", outcome_names[i],
			   (unsigned long long)stats.msg[i]);
}

const char *
imap_health(const struct imap *im, char *out, size_t size)
{
	if (im == NULL)
		return NULL;
	if (im->fails == 0)
		snprintf(out, size, "imap ok");
	else
		snprintf(out, size, "imap failing (%d polls): %s", im->fails,
			 stats.last_error);
	return out;
}

/* ------------------------------------------------------------- matching */

/* Latin letters with diacritics (Vietnamese ones included) and their base
 * letter, for comparing titles the way people type them. */
struct fold_ent {
	uint16_t cp;
	char base;
};
static const struct fold_ent fold_tab[] = {
#include "imap_fold.h"
};

static int
fold_cmp(const void *k, const void *e)
{
	uint16_t a = *(const uint16_t *)k, b = *(const uint16_t *)e;

	return a < b ? -1 : a > b;
}

/* s lowercased, diacritics dropped, every run of other characters made
 * one space, with a space at each end ("bao cao quy i"). */
static char *
fold(const char *s)
{
	const unsigned char *p = (const unsigned char *)s;
	struct buf b;
	bool sp = true;
	char *r;

	buf_init(&b);
	buf_putc(&b, ' ');
	while (*p) {
		uint32_t cp;
		int k;
		char c = 0;

		if (*p < 0x80) {
			cp = *p;
			k = 1;
		} else if ((*p & 0xe0) == 0xc0 && p[1]) {
			cp = (uint32_t)(*p & 0x1f) << 6 | (p[1] & 0x3f);
			k = 2;
		} else if ((*p & 0xf0) == 0xe0 && p[1] && p[2]) {
			cp = (uint32_t)(*p & 0x0f) << 12 |
			     (uint32_t)(p[1] & 0x3f) << 6 | (p[2] & 0x3f);
			k = 3;
		} else {
			cp = 0;
			k = 1;
			while (p[k] && (p[k] & 0xc0) == 0x80 && k < 4)
				k++;
		}
		if (cp < 0x80 && isalnum((int)cp)) {
			c = (char)tolower((int)cp);
		} else if (cp >= 0x80 && cp <= 0xffff) {
			uint16_t key = (uint16_t)cp;
			const struct fold_ent *f = bsearch(&key, fold_tab,
				sizeof(fold_tab) / sizeof(fold_tab[0]),
				sizeof(fold_tab[0]), fold_cmp);

			if (f != NULL)
				c = f->base;
		}
		if (c != 0) {
			buf_putc(&b, c);
			sp = false;
		} else if (!sp) {
			buf_putc(&b, ' ');
			sp = true;
		}
		p += k;
	}
	if (!sp)
		buf_putc(&b, ' ');
	r = buf_steal(&b);
	return r;
}

/* Out-of-office subjects (Vietnamese and English), folded. */
static bool
ooo_subject(const char *folded)
{
	static const char *const pats[] = {
		" out of office ", " out of the office ", " automatic reply ",
		" auto reply ", " autoreply ", " auto response ",
		" away from the office ", " on vacation ", " vacation reply ",
		" tra loi tu dong ", " thu tra loi tu dong ",
		" tu dong tra loi ", " vang mat ", " khong co mat ",
		" nghi phep ", " khong o van phong ", " abwesenheitsnotiz ",
		NULL,
	};

	for (int i = 0; pats[i]; i++)
		if (strstr(folded, pats[i]) != NULL)
			return true;
	return false;
}

/* Whether a unit has addr among its addresses (or as its head). */
static bool
unit_has(const struct unit *u, const char *addr)
{
	for (size_t i = 0; i < u->nemail; i++) {
		char *e = mime_addr(u->email[i]);
		bool eq = e != NULL && strcmp(e, addr) == 0;

		free(e);
		if (eq)
			return true;
	}
	if (u->head != NULL) {
		char **v;
		size_t n = split_list(u->head, ",", &v);
		bool eq = false;

		for (size_t i = 0; i < n && !eq; i++) {
			char *e = mime_addr(v[i]);

			eq = e != NULL && strcmp(e, addr) == 0;
			free(e);
		}
		free_list(v, n);
		if (eq)
			return true;
	}
	return false;
}

struct match {
	enum imap_outcome outcome;
	char occ[OCC_ID_MAX];
	const struct unit *unit;
	bool confident;
	char why[256];
};

/* How well the folded text names o: 0 not at all; its title 2, with the
 * year of its period or due date 3, with their month and year 4; its id
 * 10. */
static int
names_occ(const char *text, const struct occ *o)
{
	char *t = fold(o->cycle->title != NULL ? o->cycle->title :
		       o->cycle->id);
	char *id = fold(o->id);
	int score = 0;

	if (strstr(text, id) != NULL) {
		score = 10;
	} else if (strlen(t) > 3 && strstr(text, t) != NULL) {
		struct ymd d[2] = { o->nominal, o->period_to };
		int nd = o->has_period ? 2 : 1;
		char w[32];

		score = 2;
		for (int k = 0; k < nd; k++) {
			/* "03/2024", "3/2024" (folded: " 3 2024 ") */
			snprintf(w, sizeof(w), " %d %d ", d[k].m, d[k].y);
			if (strstr(text, w) != NULL)
				score = 4;
			snprintf(w, sizeof(w), " %02d %d ", d[k].m, d[k].y);
			if (strstr(text, w) != NULL)
				score = 4;
			snprintf(w, sizeof(w), " %d ", d[k].y);
			if (score < 3 && strstr(text, w) != NULL)
				score = 3;
		}
	}
	free(t);
	free(id);
	return score;
}

/* The open occurrence of u the text names best (its title and period or
 * id), nearest to `at` among equals; false when none does. */
static bool
weak_match(struct app *a, const struct unit *u, const char *text, tstamp at,
	   char *occ_out)
{
	const struct conf *c = a->conf;
	tstamp now = clock_now(&a->clk);
	struct occ *v = NULL;
	size_t n = 0, ui = (size_t)(u - c->units);
	int best = 0;
	int64_t bestd = 0;

	if (sched_occurrences(c, now - c->daemon.history,
			      now + c->daemon.horizon, &v, &n) < 0)
		return false;
	for (size_t i = 0; i < n; i++) {
		struct submission sub;
		int sc, r;
		int64_t d;

		if (!conf_cycle_has(v[i].cycle, ui))
			continue;
		sc = names_occ(text, &v[i]);
		if (sc == 0)
			continue;
		r = db_sub_get(a->db, v[i].id, u->id, &sub);
		if (r == 0) {
			submission_clear(&sub);
			continue;
		}
		d = v[i].due_at > at ? v[i].due_at - at : at - v[i].due_at;
		if (sc > best || (sc == best && d < bestd)) {
			best = sc;
			bestd = d;
			snprintf(occ_out, OCC_ID_MAX, "%s", v[i].id);
		}
	}
	free(v);
	return best > 0;
}

/* What m is: a bounce of one of our notices, a report (confident or not)
 * for (occurrence, unit), or nothing. */
static void
classify(struct app *a, const struct mime_msg *m, const char *folded,
	 struct match *r)
{
	const struct conf *c = a->conf;
	const struct unit *u = NULL;
	struct notice n;
	bool thread = false;

	memset(r, 0, sizeof(*r));
	if (m->dsn) {
		r->outcome = IMAP_UNMATCHED;
		snprintf(r->why, sizeof(r->why), "delivery report for a "
			 "message not ours");
		return;        /* the caller handles bounces */
	}
	if (m->auto_reply || (m->subject != NULL && ooo_subject(folded))) {
		r->outcome = IMAP_AUTOREPLY;
		snprintf(r->why, sizeof(r->why), "auto-reply (%s)",
			 m->auto_why != NULL ? m->auto_why : "Subject");
		return;
	}
	if (m->from != NULL)
		for (size_t i = 0; i < c->nunits && u == NULL; i++)
			if (unit_has(&c->units[i], m->from))
				u = &c->units[i];
	if (u == NULL) {
		r->outcome = IMAP_UNKNOWN_SENDER;
		snprintf(r->why, sizeof(r->why), "sender is no unit's "
			 "address");
		return;
	}
	r->unit = u;
	/* a reply in the thread of one of the unit's reminders */
	for (size_t i = 0; i < m->nrefs && !thread; i++) {
		if (db_notice_by_message_id(a->db, m->refs[i], &n) != 0)
			continue;
		if (strcmp(n.unit, u->id) == 0 &&
		    (n.aud == AUD_UNIT || n.aud == AUD_HEAD) &&
		    conf_unit(c, n.unit) == u) {
			snprintf(r->occ, sizeof(r->occ), "%s", n.occurrence);
			thread = true;
		}
		notice_clear(&n);
	}
	if (thread) {
		/* ... unless what it says names another open report of the
		 * unit and not this one: then that one, proposed */
		struct occ o;
		char other[OCC_ID_MAX] = "";

		if (sched_occurrence(c, r->occ, &o) == 0 &&
		    names_occ(folded, &o) == 0 &&
		    weak_match(a, u, folded, m->has_date ? m->date :
			       clock_now(&a->clk), other) &&
		    strcmp(other, r->occ) != 0) {
			snprintf(r->why, sizeof(r->why), "answers the reminder"
				 " for %.96s but names %.96s", r->occ, other);
			snprintf(r->occ, sizeof(r->occ), "%s", other);
			r->confident = false;
		} else {
			r->confident = true;
			snprintf(r->why, sizeof(r->why), "answers a reminder "
				 "(In-Reply-To/References)");
		}
		r->outcome = IMAP_PROPOSED;
		return;
	}
	if (weak_match(a, u, folded, m->has_date ? m->date :
		       clock_now(&a->clk), r->occ)) {
		r->outcome = IMAP_PROPOSED;
		snprintf(r->why, sizeof(r->why), "from the unit, names the "
			 "report in its subject or attachments");
		return;
	}
	r->outcome = IMAP_UNMATCHED;
	snprintf(r->why, sizeof(r->why), "from the unit, names none of its "
		 "open reports");
}

/* A delivery report: each failed recipient of the notice it returns is
 * marked bounced.  Returns the outcome. */
static enum imap_outcome
bounce(struct app *a, const struct mime_msg *m, const char *report_id,
       char *occ, char *unit, struct buf *detail)
{
	struct notice n;
	int marked = 0;
	tstamp now = clock_now(&a->clk);

	if (m->dsn_orig_id == NULL ||
	    db_notice_by_message_id(a->db, m->dsn_orig_id, &n) != 0)
		return IMAP_UNMATCHED;
	snprintf(occ, OCC_ID_MAX, "%s", n.occurrence);
	snprintf(unit, 72, "%s", n.unit);
	for (size_t i = 0; i < m->nrcpt; i++) {
		const struct mime_rcpt *r = &m->rcpt[i];
		const char *addr = r->recipient;
		struct buf esc;

		if (r->action == NULL || strcmp(r->action, "failed") != 0)
			continue;
		if (addr == NULL)
			addr = n.recipients;
		if (db_bounce_add(a->db, n.id, addr, r->status, r->diagnostic,
				  report_id, now) < 0)
			continue;
		marked++;
		buf_init(&esc);
		buf_put_escaped(&esc, addr, 120);
		buf_puts(&esc, " ");
		buf_put_escaped(&esc, r->status ? r->status : "", 16);
		buf_puts(&esc, " ");
		buf_put_escaped(&esc, r->diagnostic ? r->diagnostic : "",
				200);
		{
			/* the sender's per-address refusals too, so that
			 * every place that lists them (page, digest) names
			 * this address; the structured report stays in
			 * notice_bounce */
			struct buf rep;

			buf_init(&rep);
			buf_puts(&rep, "bounced (delivery report): ");
			buf_put_escaped(&rep, r->status ? r->status : "", 16);
			buf_puts(&rep, " ");
			buf_put_escaped(&rep, r->diagnostic ? r->diagnostic :
					"", 200);
			(void)outbox_refused_add(a->db, n.id, addr,
						 buf_str(&rep), now);
			buf_free(&rep);
		}
		log_warn("imap: notice %s to %s (%s) bounced: %s",
			 n.message_id, n.unit, n.occurrence, buf_str(&esc));
		if (detail->len > 0)
			buf_puts(detail, "; ");
		buf_puts(detail, buf_str(&esc));
		buf_free(&esc);
	}
	notice_clear(&n);
	return marked > 0 ? IMAP_BOUNCED : IMAP_UNMATCHED;
}

/* A key for a message without a Message-ID: its bytes' hash. */
static void
content_key(const char *s, size_t n, char *out, size_t size)
{
	uint64_t h = 1469598103934665603ULL;    /* FNV-1a, 64 bits */

	for (size_t i = 0; i < n; i++) {
		h ^= (unsigned char)s[i];
		h *= 1099511628211ULL;
	}
	snprintf(out, size, "<nomid.%016" PRIx64 ".%zu@cutoffd>", h, n);
}

enum imap_outcome
imap_process(struct app *a, const char *msg, size_t len, const char *bs,
	     size_t bslen, int64_t uidvalidity, int64_t uid)
{
	struct mime_msg m;
	struct match r;
	char key[300], occ[OCC_ID_MAX] = "", unitid[72] = "";
	char *folded = NULL;
	struct buf detail, esc;
	enum imap_outcome out;
	tstamp now = clock_now(&a->clk), at;
	int tok, seen;
	bool changed = false;

	memset(&r, 0, sizeof(r));
	if (mime_parse(msg, len, &m) < 0) {
		content_key(msg, len, key, sizeof(key));
		if (db_imap_seen(a->db, key) == 0)
			(void)db_imap_mark(a->db, key, uidvalidity, uid,
					   "unreadable", NULL, NULL, NULL, now);
		stats.msg[IMAP_UNREADABLE]++;
		return IMAP_UNREADABLE;
	}
	if (bs != NULL)
		mime_bodystructure_files(bs, bslen, &m);
	if (m.message_id != NULL)
		snprintf(key, sizeof(key), "%s", m.message_id);
	else
		content_key(msg, len, key, sizeof(key));
	seen = db_imap_seen(a->db, key);
	if (seen != 0) {
		mime_clear(&m);
		return seen > 0 ? IMAP_ALREADY : IMAP_UNREADABLE;
	}
	buf_init(&detail);
	buf_init(&esc);
	{
		struct buf t;

		buf_init(&t);
		buf_puts(&t, m.subject != NULL ? m.subject : "");
		for (size_t i = 0; i < m.nfiles; i++) {
			buf_puts(&t, " ");
			buf_puts(&t, m.files[i]);
		}
		folded = fold(buf_str(&t));
		buf_free(&t);
	}
	if (db_part_begin(a->db, &tok) < 0) {
		out = IMAP_UNREADABLE;
		goto done;
	}
	if (m.dsn) {
		out = bounce(a, &m, key, occ, unitid, &detail);
		if (out == IMAP_BOUNCED)
			changed = true;
		else
			buf_puts(&detail, "delivery report for no notice of "
				 "ours");
	} else {
		classify(a, &m, folded, &r);
		out = r.outcome;
		buf_puts(&detail, r.why);
		if (r.unit != NULL)
			snprintf(unitid, sizeof(unitid), "%s", r.unit->id);
		snprintf(occ, sizeof(occ), "%s", r.occ);
	}
	if (out == IMAP_PROPOSED) {
		struct submission sub;
		char actor[LEDGER_ACTOR_MAX + 1];
		char note[DB_NOTE_MAX];

		at = m.has_date && m.date <= now ? m.date : now;
		snprintf(actor, sizeof(actor), "%s", m.from ? m.from : "");
		snprintf(note, sizeof(note), "Message-ID: %s", key);
		if (db_sub_get(a->db, occ, unitid, &sub) == 0) {
			submission_clear(&sub);
			out = IMAP_ALREADY;
		} else if (r.confident && a->conf->imap.record) {
			if (ledger_receive(a->db, occ, unitid, at, false,
					   "imap", actor, note, now) == 0) {
				out = IMAP_RECORDED;
				changed = true;
			}
		} else {
			char *subj = NULL;

			if (m.subject != NULL && m.subject[0] != '\0') {
				size_t k = strlen(m.subject);

				/* at most 300 bytes, cut at a character */
				if (k > 300)
					k = 300;
				while (k > 0 && !utf8_valid(m.subject, k))
					k--;
				subj = xstrndup(m.subject, k);
			}
			/* evidence: the subject (note), the Message-ID */
			if (ledger_propose(a->db, occ, unitid, at, "imap",
					   actor, subj, key, now) == 0)
				changed = true;
			free(subj);
		}
	}
	if (db_imap_mark(a->db, key, uidvalidity, uid, imap_outcome_name(out),
			 occ[0] ? occ : NULL, unitid[0] ? unitid : NULL,
			 buf_str(&detail), now) < 0) {
		(void)db_part_end(a->db, tok, false);
		out = IMAP_UNREADABLE;
		changed = false;
		goto done;
	}
	if (db_part_end(a->db, tok, true) < 0) {
		out = IMAP_UNREADABLE;
		changed = false;
		goto done;
	}
	stats.msg[out]++;
	buf_put_escaped(&esc, key, 120);
	buf_puts(&esc, " from ");
	buf_put_escaped(&esc, m.from != NULL ? m.from : "?", 120);
	log_msg(out == IMAP_RECORDED || out == IMAP_PROPOSED ||
		out == IMAP_BOUNCED ? LOG_INFO : LOG_DEBUG,
		"imap: uid %" PRId64 " %s: %s%s%s%s%s (%s)", uid,
		buf_str(&esc), imap_outcome_name(out), occ[0] ? " " : "",
		occ, unitid[0] ? " " : "", unitid, buf_str(&detail));
	if (changed && a->changed != NULL)
		a->changed(a);
done:
	free(folded);
	buf_free(&detail);
	buf_free(&esc);
	mime_clear(&m);
	return out;
}

/* ----------------------------------------------------------------- IMAP */

static size_t
write_cb(char *p, size_t size, size_t n, void *ctx)
{
	struct imap *im = ctx;

	if (im->out.len + size * n > OUT_MAX)
		return 0;                    /* abort: a runaway answer */
	buf_add(&im->out, p, size * n);
	return size * n;
}

static int
debug_cb(CURL *e, curl_infotype t, char *p, size_t n, void *ctx)
{
	struct imap *im = ctx;

	(void)e;
	/* only what the server sent; what we send holds the password */
	if (t != CURLINFO_HEADER_IN || im->st != ST_FETCH)
		return 0;
	if (im->raw.len + n > RAW_MAX) {
		im->raw_over = true;
		return 0;
	}
	buf_add(&im->raw, p, n);
	return 0;
}

static void schedule(struct imap *im, double secs);
static void step_start(struct imap *im, enum imstep st);

/* The FETCH answer in raw: the literal after "BODY[]<0> {N}\r\n" (the
 * message's first bytes) and where BODYSTRUCTURE's list starts (before or
 * after it; NULL when absent). */
static bool
fetch_parts(const struct buf *raw, const char **msg, size_t *len,
	    const char **bs, size_t *bslen)
{
	const char *s = raw->p, *end, *p, *q, *lit;
	unsigned long long n;
	char *e;

	if (s == NULL)
		return false;
	end = s + raw->len;
	p = memmem(s, raw->len, "BODY[]<0> {", 11);
	if (p == NULL)
		return false;
	n = strtoull(p + 11, &e, 10);
	if (*e != '}' || n > FETCH_MAX)
		return false;
	lit = e + 1;
	if (lit < end && *lit == '\r')
		lit++;
	if (lit < end && *lit == '\n')
		lit++;
	*msg = lit;
	*len = (size_t)(end - lit) < n ? (size_t)(end - lit) : (size_t)n;
	*bs = NULL;
	*bslen = 0;
	q = memmem(s, (size_t)(p - s), "BODYSTRUCTURE (", 15);
	if (q != NULL) {
		*bs = q + 14;
		*bslen = (size_t)(p - *bs);
	} else if (lit + *len < end &&
		   (q = memmem(lit + *len, (size_t)(end - lit - *len),
			       "BODYSTRUCTURE (", 15)) != NULL) {
		*bs = q + 14;
		*bslen = (size_t)(end - *bs);
	}
	return true;
}

static void
parse_examine(struct imap *im)
{
	const char *p = strstr(buf_str(&im->out), "[UIDVALIDITY ");

	im->uidvalidity = p != NULL ? strtoll(p + 13, NULL, 10) : 0;
}

static int
cmp_i64(const void *a, const void *b)
{
	int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;

	return x < y ? -1 : x > y;
}

static void
parse_search(struct imap *im)
{
	const char *s = buf_str(&im->out), *p;
	size_t cap = 0;

	im->nuids = im->iuid = 0;
	im->more = false;
	for (p = s; (p = strstr(p, "* SEARCH")) != NULL; ) {
		p += 8;
		while (*p == ' ') {
			char *q;
			long long v = strtoll(p + 1, &q, 10);

			if (q == p + 1)
				break;
			p = q;
			if (v <= im->last_uid)
				continue;    /* n:* gives the last one anyway */
			if (im->nuids == cap) {
				cap = cap ? cap * 2 : 64;
				im->uids = xrealloc(im->uids,
						    cap * sizeof(*im->uids));
			}
			im->uids[im->nuids++] = v;
		}
	}
	if (im->nuids > 1)
		qsort(im->uids, im->nuids, sizeof(*im->uids), cmp_i64);
	if (im->nuids > PER_POLL) {
		im->nuids = PER_POLL;
		im->more = true;
	}
}

/* The stored position in this mailbox: a new UIDVALIDITY (or another
 * mailbox) starts from UID 0; imap_seen keeps what was read. */
static int
load_position(struct imap *im)
{
	struct db *db = im->a->db;
	char *key = NULL, *v = NULL;
	int64_t stored_v = -1;

	im->last_uid = 0;
	if (db_meta_get(db, "imap.mailbox", &key) == 0 &&
	    strcmp(key, im->key) == 0 &&
	    db_meta_get(db, "imap.uidvalidity", &v) == 0) {
		stored_v = strtoll(v, NULL, 10);
		free(v);
		v = NULL;
		if (stored_v == im->uidvalidity &&
		    db_meta_get(db, "imap.last_uid", &v) == 0)
			im->last_uid = strtoll(v, NULL, 10);
	}
	free(v);
	if (stored_v != im->uidvalidity || key == NULL ||
	    strcmp(key, im->key) != 0) {
		char num[32];

		if (stored_v >= 0)
			log_info("imap: UIDVALIDITY %" PRId64 " (was %" PRId64
				 "): reading the mailbox again; messages "
				 "already read are skipped by Message-ID",
				 im->uidvalidity, stored_v);
		snprintf(num, sizeof(num), "%" PRId64, im->uidvalidity);
		if (db_meta_set(db, "imap.mailbox", im->key) < 0 ||
		    db_meta_set(db, "imap.uidvalidity", num) < 0 ||
		    db_meta_set(db, "imap.last_uid", "0") < 0) {
			free(key);
			return -1;
		}
	}
	free(key);
	return 0;
}

static int
save_uid(struct imap *im, int64_t uid)
{
	char num[32];

	snprintf(num, sizeof(num), "%" PRId64, uid);
	if (db_meta_set(im->a->db, "imap.last_uid", num) < 0)
		return -1;
	im->last_uid = uid;
	return 0;
}

/* quick: a FETCH failed on a server that had just answered EXAMINE and
 * SEARCH, so the message may be at fault: try again soon (it is skipped
 * after the third time), without growing the backoff. */
static void
poll_failed_how(struct imap *im, const char *what, bool quick)
{
	int64_t wait = im->a->conf->imap.poll;
	struct buf esc;

	stats.poll_failures++;
	im->fails++;
	if (quick && wait > 10)
		wait = 10;
	for (int i = 1; !quick && i < im->fails && wait < BACKOFF_MAX; i++)
		wait *= 2;
	if (wait > BACKOFF_MAX)
		wait = BACKOFF_MAX > im->a->conf->imap.poll ? BACKOFF_MAX :
		       im->a->conf->imap.poll;
	buf_init(&esc);
	buf_put_escaped(&esc, what, 150);
	snprintf(stats.last_error, sizeof(stats.last_error), "%s",
		 buf_str(&esc));
	/* the first failure and then every tenth, not one line a poll */
	if (im->fails == 1 || im->fails % 10 == 0)
		log_warn("imap: %s: %s (failed %d time%s, next try in %llds)",
			 im->base, buf_str(&esc), im->fails,
			 im->fails == 1 ? "" : "s", (long long)wait);
	buf_free(&esc);
	/* a fresh connection next time */
	if (im->easy != NULL) {
		curl_easy_cleanup(im->easy);
		im->easy = NULL;
	}
	im->st = ST_IDLE;
	schedule(im, (double)wait);
}

static void
poll_failed(struct imap *im, const char *what)
{
	poll_failed_how(im, what, false);
}

static void
poll_done(struct imap *im)
{
	stats.last_ok = clock_now(&im->a->clk);
	if (im->fails > 0)
		log_info("imap: %s answers again", im->base);
	im->fails = 0;
	im->st = ST_IDLE;
	schedule(im, im->more ? 0.0 : (double)im->a->conf->imap.poll);
}

static void
next_fetch(struct imap *im)
{
	if (im->iuid >= im->nuids) {
		poll_done(im);
		return;
	}
	step_start(im, ST_FETCH);
}

static void
on_done(void *ctx, void *easy, int result)
{
	struct imap *im = ctx;
	char what[CURL_ERROR_SIZE + 64];

	(void)easy;
	im->busy = false;
	if (result != CURLE_OK) {
		snprintf(what, sizeof(what), "%s: %s (curl %d)",
			 im->st == ST_EXAMINE ? "EXAMINE" :
			 im->st == ST_SEARCH ? "UID SEARCH" : "UID FETCH",
			 im->err[0] ? im->err :
			 curl_easy_strerror((CURLcode)result), result);
		if (im->st == ST_FETCH && ++im->fetch_fails >= 3) {
			/* this one message, three times: skip it, not the
			 * whole mailbox */
			log_warn("imap: uid %" PRId64 " cannot be read (%s); "
				 "skipped", im->uids[im->iuid], what);
			stats.msg[IMAP_UNREADABLE]++;
			(void)save_uid(im, im->uids[im->iuid]);
			im->fetch_fails = 0;
		}
		poll_failed_how(im, what, im->st == ST_FETCH);
		return;
	}
	switch (im->st) {
	case ST_EXAMINE:
		parse_examine(im);
		if (im->uidvalidity <= 0) {
			poll_failed(im, "EXAMINE: no UIDVALIDITY in the answer");
			return;
		}
		if (load_position(im) < 0) {
			poll_failed(im, "state store");
			return;
		}
		step_start(im, ST_SEARCH);
		break;
	case ST_SEARCH:
		parse_search(im);
		im->fetch_fails = 0;
		next_fetch(im);
		break;
	case ST_FETCH: {
		const char *msg, *bs;
		size_t len, bslen;
		int64_t uid = im->uids[im->iuid];

		if (!fetch_parts(&im->raw, &msg, &len, &bs, &bslen)) {
			/* expunged since the SEARCH, or over the bound */
			log_debug("imap: uid %" PRId64 ": no message in the "
				  "answer%s", uid, im->raw_over ?
				  " (too large)" : "");
		} else {
			enum imap_outcome o = imap_process(im->a, msg, len,
							   bs, bslen,
							   im->uidvalidity,
							   uid);

			if (o == IMAP_UNREADABLE && !db_ok(im->a->db)) {
				poll_failed(im, "state store");
				return;
			}
		}
		if (save_uid(im, uid) < 0) {
			poll_failed(im, "state store");
			return;
		}
		im->iuid++;
		im->fetch_fails = 0;
		next_fetch(im);
		break;
	}
	default:
		break;
	}
}

/* Sets the connection options once per handle. */
static CURL *
make_easy(struct imap *im)
{
	const struct conf *c = im->a->conf;
	CURL *e = curl_easy_init();

	if (e == NULL)
		return NULL;
	curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "imap,imaps");
	curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(e, CURLOPT_ERRORBUFFER, im->err);
	curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, write_cb);
	curl_easy_setopt(e, CURLOPT_WRITEDATA, im);
	curl_easy_setopt(e, CURLOPT_DEBUGFUNCTION, debug_cb);
	curl_easy_setopt(e, CURLOPT_DEBUGDATA, im);
	curl_easy_setopt(e, CURLOPT_VERBOSE, 1L);
	/* response lines up to this long reach the debug callback whole */
	curl_easy_setopt(e, CURLOPT_BUFFERSIZE, 256L * 1024);
	if (!strncasecmp(c->imap.url, "imap://", 7)) {
		long m = c->imap.starttls == STARTTLS_REQUIRED ?
			 (long)CURLUSESSL_ALL :
			 c->imap.starttls == STARTTLS_TRY ?
			 (long)CURLUSESSL_TRY : (long)CURLUSESSL_NONE;

		curl_easy_setopt(e, CURLOPT_USE_SSL, m);
	}
	curl_easy_setopt(e, CURLOPT_SSL_VERIFYPEER, c->imap.tls_verify ? 1L : 0L);
	curl_easy_setopt(e, CURLOPT_SSL_VERIFYHOST, c->imap.tls_verify ? 2L : 0L);
	if (c->imap.user != NULL)
		curl_easy_setopt(e, CURLOPT_USERNAME, c->imap.user);
	if (c->imap.password != NULL)
		curl_easy_setopt(e, CURLOPT_PASSWORD, c->imap.password);
	curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT, 20L);
	curl_easy_setopt(e, CURLOPT_SERVER_RESPONSE_TIMEOUT, 60L);
	/* a server that trickles: under 64 bytes/s for a minute */
	curl_easy_setopt(e, CURLOPT_LOW_SPEED_LIMIT, 64L);
	curl_easy_setopt(e, CURLOPT_LOW_SPEED_TIME, 60L);
	curl_easy_setopt(e, CURLOPT_TIMEOUT, 300L);
	curl_easy_setopt(e, CURLOPT_URL, im->base);
	return e;
}

/* IMAP quoted string of the mailbox name; '%' doubled as %25 because
 * libcurl URL-decodes a custom request. */
static void
put_quoted_mailbox(struct buf *b, const char *s)
{
	buf_putc(b, '"');
	for (; *s; s++) {
		if (*s == '"' || *s == '\\')
			buf_putc(b, '\\');
		if (*s == '%')
			buf_puts(b, "%25");
		else
			buf_putc(b, *s);
	}
	buf_putc(b, '"');
}

static void
step_start(struct imap *im, enum imstep st)
{
	struct buf cmd;

	if (im->a->stopping)
		return;
	if (im->easy == NULL && (im->easy = make_easy(im)) == NULL) {
		poll_failed(im, "curl_easy_init failed");
		return;
	}
	im->st = st;
	buf_reset(&im->out);
	buf_reset(&im->raw);
	im->raw_over = false;
	im->err[0] = '\0';
	buf_init(&cmd);
	switch (st) {
	case ST_EXAMINE:
		buf_puts(&cmd, "EXAMINE ");
		put_quoted_mailbox(&cmd, im->mailbox);
		break;
	case ST_SEARCH:
		buf_printf(&cmd, "UID SEARCH UID %" PRId64 ":*",
			   im->last_uid + 1);
		break;
	case ST_FETCH:
		buf_printf(&cmd, "UID FETCH %" PRId64 " (UID BODYSTRUCTURE "
			   "BODY.PEEK[]<0.%d>)", im->uids[im->iuid], FETCH_MAX);
		break;
	default:
		buf_free(&cmd);
		return;
	}
	curl_easy_setopt(im->easy, CURLOPT_CUSTOMREQUEST, buf_str(&cmd));
	buf_free(&cmd);         /* libcurl copies strings */
	if (curlev_add(im->cv, im->easy) < 0) {
		poll_failed(im, "curl_multi_add_handle failed");
		return;
	}
	im->busy = true;
}

static void
on_timer(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct imap *im = w->data;

	(void)loop;
	(void)revents;
	if (im->busy || im->a->stopping)
		return;
	stats.polls++;
	stats.last_poll = clock_now(&im->a->clk);
	step_start(im, ST_EXAMINE);
}

static void
schedule(struct imap *im, double secs)
{
	ev_timer_stop(im->a->loop, &im->timer);
	ev_timer_set(&im->timer, secs, 0.0);
	ev_timer_start(im->a->loop, &im->timer);
}

/* "imaps://user@host:993/INBOX" -> base "imaps://user@host:993/" and the
 * mailbox, percent-decoded. */
static void
split_url(const char *url, char **base, char **mailbox)
{
	const char *h = strstr(url, "://") + 3;
	const char *slash = strchr(h, '/');
	struct buf b;

	*base = xstrndup(url, (size_t)(slash - url + 1));
	buf_init(&b);
	for (const char *p = slash + 1; *p; p++) {
		if (*p == '%' && isxdigit((unsigned char)p[1]) &&
		    isxdigit((unsigned char)p[2])) {
			char hx[3] = { p[1], p[2], 0 };

			buf_putc(&b, (char)strtol(hx, NULL, 16));
			p += 2;
		} else {
			buf_putc(&b, *p);
		}
	}
	*mailbox = buf_steal(&b);
}

struct imap *
imap_start(struct app *a)
{
	const struct conf *c = a->conf;
	struct imap *im;

	if (!c->imap.enabled || c->imap.url == NULL)
		return NULL;
	im = xcalloc(1, sizeof(*im));
	im->a = a;
	buf_init(&im->out);
	buf_init(&im->raw);
	split_url(c->imap.url, &im->base, &im->mailbox);
	im->key = xasprintf("%s %s", c->imap.url,
			    c->imap.user != NULL ? c->imap.user : "");
	im->cv = curlev_new(a->loop, on_done, im);
	if (im->cv == NULL) {
		log_err("imap: cannot start curl");
		imap_stop(im);
		return NULL;
	}
	ev_timer_init(&im->timer, on_timer, 0.0, 0.0);
	im->timer.data = im;
	log_info("imap: polling %s every %llds (%s)", c->imap.url,
		 (long long)c->imap.poll, c->imap.record ? "mode record" :
		 "mode propose");
	schedule(im, 0.5);
	return im;
}

void
imap_stop(struct imap *im)
{
	if (im == NULL)
		return;
	ev_timer_stop(im->a->loop, &im->timer);
	if (im->easy != NULL) {
		if (im->busy)
			curlev_remove(im->cv, im->easy);
		curl_easy_cleanup(im->easy);
	}
	curlev_free(im->cv);
	buf_free(&im->out);
	buf_free(&im->raw);
	free(im->uids);
	free(im->base);
	free(im->mailbox);
	free(im->key);
	free(im);
}
