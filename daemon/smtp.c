/*
 * smtp.c - mail transactions on connections that libcurl opens.
 *
 * libcurl opens each connection (CURLOPT_CONNECT_ONLY): name lookup, TCP,
 * TLS (smtps:// or STARTTLS), EHLO and AUTH, the part where care matters
 * more than speed.  The transactions on it are ours, through
 * curl_easy_send/recv (so through libcurl's TLS): libcurl runs one
 * transaction per transfer, one command per round trip, and sets each
 * transfer up anew; measured, that was five round trips and 26 system
 * calls per message, and a third of smtp-source's rate.
 *
 * With PIPELINING (RFC 2920) one message costs one round trip: the text
 * of a message and its end of data go out in one write together with the
 * next message's MAIL, RCPTs and DATA (the message text may begin a group,
 * DATA must end it), and their replies come back together.  Without
 * PIPELINING the same commands go one at a time.  Replies are matched to
 * commands in order (`exp`).
 *
 * Each connection has a multi handle of its own: on a shared one libcurl
 * takes an idle connect-only connection with unread input for a dead one
 * and closes it when it opens another (url.c, prune_dead_connections).
 *
 * A message whose text never went out (the connection broke, or the
 * server said 421, before its DATA was answered) moves to another
 * connection once; one whose text went out and whose end of data got no
 * answer is reported as a temporary failure: it may have been delivered.
 *
 * A connection that fails while others are open or opening fails no
 * message (servers limit connections per client, often below `parallel`):
 * no more open until those close, and if they all fail, the last one
 * fails a message for each of them, as each would have failed its own.
 */
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/types.h>

#include <curl/curl.h>
#include <ev.h>

#include "cutoffd.h"

#define IN_MAX 16384          /* a reply longer than this is an error */
#define IDLE_SECONDS 30.0     /* an unused connection is closed after */
#define QUIT_SECONDS 2.0      /* the wait for QUIT's reply */
#define REQUEUE_MAX 1         /* moves of an unsent message, at most */
#define KEEP_MAX 512          /* bytes of a reply line kept */

enum expkind { E_RSET, E_MAIL, E_RCPT, E_DATA, E_DOT, E_QUIT };

struct exp {
	enum expkind k;
	struct smtp_msg *m;
	size_t i;                 /* E_RCPT: which address */
	size_t clen;              /* bytes of its command in `cmds` */
};

enum cstate { C_CONNECTING, C_READY, C_QUITTING };

struct conn {
	struct smtp *p;
	struct curlev *cv;
	CURL *easy;
	curl_socket_t fd;
	enum cstate st;
	bool pipelining;
	bool stale;               /* opened with settings since changed */
	bool dead;                /* closed: waits in `grave` to be freed */
	bool need_rset;           /* a transaction was left open */
	bool drain_close;         /* close once the transaction ends (a stop) */
	bool want_write;
	ev_io io;
	ev_timer tm;
	struct buf out;           /* bytes to write, from outoff */
	size_t outoff;
	struct buf later;         /* what comes while `out` waits to be
				     written: TLS wants a retried write to
				     pass the same buffer */
	struct buf cmds;          /* without PIPELINING: commands not yet sent */
	size_t cmdoff;
	char in[IN_MAX];
	size_t inlen;
	struct exp *exp;          /* replies awaited: exp[hexp..nexp) */
	size_t hexp, nexp, capexp;
	size_t nsent;             /* of those, commands already sent */
	struct smtp_msg *cur, *next;  /* the transaction, the one behind */
	char *last;               /* the last reply line of the connect phase */
	char err[CURL_ERROR_SIZE];
	struct conn *prev2, *next2;
};

struct smtp {
	struct ev_loop *loop;
	smtp_done_fn done;
	void *ctx;
	struct conn *conns;
	size_t nconns;
	struct conn *grave;       /* closed, freed on the next loop turn */
	ev_prepare reap;
	struct smtp_msg *qhead, *qtail;
	size_t nq;
	char *key;                /* the settings connections are opened with */
	char *url, *user, *password;
	enum starttls starttls;
	bool verify;
	int parallel;
	int cap;                  /* connections to open at most, lowered
				     when one failed while others were
				     open (0: `parallel`) */
	size_t owed;              /* such failures while no other was open
				     yet: messages that the last connection
				     fails, if all fail */
	double timeout;
	bool draining;            /* a stop: nothing new starts */
};

static void conn_fail(struct conn *c, const char *why);
static void dispatch(struct smtp *p);

/* ------------------------------------------------------- the reply */

ssize_t smtp_reply_parse(const char *buf, size_t len, int *code,
			 size_t *lstart, size_t *llen)
{
	size_t pos = 0;
	int first = -1;

	for (;;) {
		const char *nl = memchr(buf + pos, '\n', len - pos);
		size_t end, k;
		int c;

		if (!nl)
			return len - pos > SMTP_LINE_MAX ? -1 : 0;
		end = (size_t)(nl - buf);
		k = end;
		if (k > pos && buf[k - 1] == '\r')
			k--;
		if (k - pos > SMTP_LINE_MAX || k - pos < 3)
			return -1;
		for (size_t i = pos; i < pos + 3; i++) {
			if (buf[i] < '0' || buf[i] > '9')
				return -1;
		}
		c = (buf[pos] - '0') * 100 + (buf[pos + 1] - '0') * 10 +
		    (buf[pos + 2] - '0');
		if (c < 200 || c > 599 || (first >= 0 && c != first))
			return -1;
		first = c;
		if (k - pos == 3 || buf[pos + 3] == ' ') {
			*code = c;
			*lstart = pos;
			*llen = k - pos;
			return (ssize_t)(end + 1);
		}
		if (buf[pos + 3] != '-')
			return -1;
		pos = end + 1;
	}
}

/* ------------------------------------------------------- messages */

static void msg_reset(struct smtp_msg *m)
{
	m->mail_ok = m->body_sent = m->empty = false;
	m->accepted = 0;
	if (m->rcpt_reply) {
		for (size_t i = 0; i < m->nrcpt; i++) {
			free(m->rcpt_reply[i]);
			m->rcpt_reply[i] = NULL;
		}
	}
	free(m->reply);
	m->reply = NULL;
	m->fail_code = 0;
	free(m->fail_stage);
	m->fail_stage = NULL;
}

void smtp_msg_clear(struct smtp_msg *m)
{
	msg_reset(m);
	free(m->rcpt_reply);
	m->rcpt_reply = NULL;
	free(m->error);
	m->error = NULL;
}

/* The outcome is known: hand the message back. */
static void msg_done(struct smtp *p, struct smtp_msg *m, enum smtp_status st,
		     char *error)
{
	m->status = st;
	free(m->error);
	m->error = error;
	p->done(p->ctx, m);
}

static void reply_keep(char **slot, const char *line, size_t n)
{
	free(*slot);
	*slot = xstrndup(line, n > KEEP_MAX ? KEEP_MAX : n);
}

/* A failure the server stated: the first one of the transaction counts. */
static void msg_refused(struct smtp_msg *m, const char *stage, int code,
			const char *line, size_t n)
{
	if (m->fail_code)
		return;
	m->fail_code = code;
	m->fail_stage = xstrdup(stage);
	reply_keep(&m->reply, line, n);
}

/* Every address was refused: the last refusal is the message's answer. */
static void all_refused(struct smtp_msg *m)
{
	for (size_t i = m->nrcpt; i-- > 0;) {
		if (m->rcpt_reply && m->rcpt_reply[i]) {
			msg_refused(m, "RCPT failed, every address refused",
				    m->last_refused, m->rcpt_reply[i],
				    strlen(m->rcpt_reply[i]));
			return;
		}
	}
}

static void msg_finish(struct smtp *p, struct smtp_msg *m)
{
	enum smtp_status st;

	if (!m->fail_code) {
		msg_done(p, m, SMTP_SENT, NULL);
		return;
	}
	st = m->fail_code >= 500 ? SMTP_PERMFAIL : SMTP_TEMPFAIL;
	msg_done(p, m, st, xasprintf("%s: %s", m->fail_stage,
				     m->reply ? m->reply : ""));
}

static void queue_push(struct smtp *p, struct smtp_msg *m, bool front)
{
	m->qnext = NULL;
	if (front) {
		m->qnext = p->qhead;
		p->qhead = m;
		if (!p->qtail)
			p->qtail = m;
	} else {
		if (p->qtail)
			p->qtail->qnext = m;
		else
			p->qhead = m;
		p->qtail = m;
	}
	p->nq++;
}

static struct smtp_msg *queue_pop(struct smtp *p)
{
	struct smtp_msg *m = p->qhead;

	if (!m)
		return NULL;
	p->qhead = m->qnext;
	if (!p->qhead)
		p->qtail = NULL;
	m->qnext = NULL;
	p->nq--;
	return m;
}

/* ----------------------------------------------------- connections */

static void conn_timer(struct conn *c, double secs)
{
	c->tm.repeat = secs;
	ev_timer_again(c->p->loop, &c->tm);
}

static void conn_watch(struct conn *c, bool write)
{
	if (c->want_write == write && ev_is_active(&c->io))
		return;
	c->want_write = write;
	ev_io_stop(c->p->loop, &c->io);
	ev_io_set(&c->io, c->fd, EV_READ | (write ? EV_WRITE : 0));
	ev_io_start(c->p->loop, &c->io);
}

static void conn_free(struct conn *c)
{
	free(c->exp);
	buf_free(&c->out);
	buf_free(&c->later);
	buf_free(&c->cmds);
	free(c->last);
	free(c);
}

/* Tears the connection down without a word to the server: libcurl's own
 * goodbye (QUIT, then a blocking wait for its reply) will meet a socket
 * that is already shut.  The handles are freed on the next loop turn
 * (reap): this may run inside libcurl's callback for this very handle. */
static void conn_close(struct conn *c)
{
	struct smtp *p = c->p;

	if (c->dead)
		return;
	c->dead = true;
	ev_io_stop(p->loop, &c->io);
	ev_timer_stop(p->loop, &c->tm);
	if (c->fd != CURL_SOCKET_BAD)
		shutdown(c->fd, SHUT_RDWR);
	if (c->prev2)
		c->prev2->next2 = c->next2;
	else
		p->conns = c->next2;
	if (c->next2)
		c->next2->prev2 = c->prev2;
	p->nconns--;
	if (p->nconns == 0)
		p->cap = 0;       /* the next burst may try `parallel` again */
	c->prev2 = NULL;
	c->next2 = p->grave;
	p->grave = c;
	ev_prepare_start(p->loop, &p->reap);
}

static void reap_all(struct smtp *p)
{
	while (p->grave) {
		struct conn *c = p->grave;

		p->grave = c->next2;
		if (c->easy) {
			curlev_remove(c->cv, c->easy);
			curl_easy_cleanup(c->easy);
		}
		curlev_free(c->cv);
		conn_free(c);
	}
	ev_prepare_stop(p->loop, &p->reap);
}

static void on_reap(struct ev_loop *loop, ev_prepare *w, int revents)
{
	(void)loop;
	(void)revents;
	reap_all(w->data);
}

static struct exp *exp_push(struct conn *c, enum expkind k,
			    struct smtp_msg *m, size_t i, size_t clen)
{
	struct exp *e;

	if (c->hexp > 0 && c->hexp == c->nexp)
		c->hexp = c->nexp = c->nsent = 0;
	if (c->nexp == c->capexp) {
		if (c->hexp > 0) {
			memmove(c->exp, c->exp + c->hexp,
				(c->nexp - c->hexp) * sizeof(*c->exp));
			c->nexp -= c->hexp;
			c->nsent -= c->hexp;
			c->hexp = 0;
		}
		if (c->nexp == c->capexp) {
			c->capexp = c->capexp ? 2 * c->capexp : 16;
			c->exp = xrealloc(c->exp, c->capexp * sizeof(*c->exp));
		}
	}
	e = &c->exp[c->nexp++];
	e->k = k;
	e->m = m;
	e->i = i;
	e->clen = clen;
	return e;
}

/* Where new output goes: `out`, unless a write of it met a full socket
 * (want_write) and must be retried with the same bytes.  Not merely when
 * `out` holds unwritten bytes: those are added to until conn_write runs,
 * so that a message's text, its end of data and the next message's
 * commands leave in one write. */
static struct buf *out_buf(struct conn *c)
{
	return c->want_write ? &c->later : &c->out;
}

/* A command: queued in `cmds` (sent in order, at once with PIPELINING,
 * else after the previous reply) with the reply it awaits. */
static void command(struct conn *c, enum expkind k, struct smtp_msg *m,
		    size_t i, const char *a, const char *b, const char *z)
{
	size_t before = c->cmds.len;

	buf_puts(&c->cmds, a);
	if (b)
		buf_puts(&c->cmds, b);
	if (z)
		buf_puts(&c->cmds, z);
	buf_add(&c->cmds, "\r\n", 2);
	exp_push(c, k, m, i, c->cmds.len - before);
}

/* Moves commands that may go now from `cmds` to `out`: all of them with
 * PIPELINING, else the next one once every earlier one is answered. */
static void release_commands(struct conn *c)
{
	while (c->nsent < c->nexp) {
		struct exp *e = &c->exp[c->nsent];

		if (!c->pipelining && c->nsent > c->hexp)
			break;
		if (e->clen > 0) {
			buf_add(out_buf(c), c->cmds.p + c->cmdoff, e->clen);
			c->cmdoff += e->clen;
		}
		c->nsent++;
	}
	if (c->cmdoff == c->cmds.len) {
		buf_reset(&c->cmds);
		c->cmdoff = 0;
	}
}

static void conn_write(struct conn *c)
{
	while (c->outoff < c->out.len) {
		size_t n = 0;
		CURLcode rc = curl_easy_send(c->easy, c->out.p + c->outoff,
					     c->out.len - c->outoff, &n);

		if (rc == CURLE_AGAIN) {
			conn_watch(c, true);
			return;
		}
		if (rc != CURLE_OK) {
			conn_fail(c, curl_easy_strerror(rc));
			return;
		}
		c->outoff += n;
		if (c->outoff == c->out.len && c->later.len > 0) {
			struct buf t = c->out;

			c->out = c->later;
			c->later = t;
			buf_reset(&c->later);
			c->outoff = 0;
		}
	}
	buf_reset(&c->out);
	c->outoff = 0;
	conn_watch(c, false);
}

static bool addr_ok(const char *a)
{
	if (!*a)
		return false;
	for (const unsigned char *s = (const unsigned char *)a; *s; s++) {
		/* a control character, space, or bracket would let the
		 * address end the command or start another */
		if (*s <= ' ' || *s == 0x7f || *s == '<' || *s == '>')
			return false;
	}
	return true;
}

/* Starts a transaction: MAIL, RCPT per address, DATA. */
static void issue(struct conn *c, struct smtp_msg *m)
{
	if (c->need_rset) {
		command(c, E_RSET, NULL, 0, "RSET", NULL, NULL);
		c->need_rset = false;
	}
	command(c, E_MAIL, m, 0, "MAIL FROM:<", m->from, ">");
	for (size_t i = 0; i < m->nrcpt; i++)
		command(c, E_RCPT, m, i, "RCPT TO:<", m->rcpt[i], ">");
	command(c, E_DATA, m, 0, "DATA", NULL, NULL);
	if (c->cur)
		c->next = m;
	else
		c->cur = m;
}

/* The message text, dot-stuffed (RFC 5321 4.5.2), and the end of data. */
void smtp_put_text(struct buf *out, const char *d, size_t n)
{
	size_t i = 0;

	while (i < n) {
		const char *nl = memchr(d + i, '\n', n - i);
		size_t e = nl ? (size_t)(nl - d) + 1 : n;

		if (d[i] == '.')
			buf_putc(out, '.');
		buf_add(out, d + i, e - i);
		i = e;
	}
	if (n > 0 && d[n - 1] != '\n')
		buf_add(out, "\r\n", 2);
	buf_add(out, ".\r\n", 3);
}

static bool can_take(const struct conn *c)
{
	if (c->st != C_READY || c->stale || c->dead)
		return false;
	if (!c->cur)
		return true;
	/* behind a transaction whose text went out, with PIPELINING */
	return c->pipelining && !c->next && c->cur->body_sent;
}

static void conn_idle_check(struct conn *c)
{
	if (c->cur || c->hexp < c->nexp)
		conn_timer(c, c->p->timeout);
	else if (c->stale)
		conn_fail(c, NULL);
	else
		conn_timer(c, IDLE_SECONDS);
}

/* m's transaction ended (its outcome is known): the one behind it leads. */
static void transaction_over(struct conn *c, struct smtp_msg *m)
{
	c->cur = c->next;
	c->next = NULL;
	msg_finish(c->p, m);
}

/* One reply.  Returns false when the connection is gone. */
static bool on_reply(struct conn *c, int code, const char *line, size_t n)
{
	struct smtp *p = c->p;
	struct exp e;
	struct smtp_msg *m;

	if (c->hexp == c->nexp || c->hexp == c->nsent) {
		conn_fail(c, "a reply to no command");
		return false;
	}
	e = c->exp[c->hexp++];
	m = e.m;
	if (e.k == E_QUIT) {
		conn_fail(c, NULL);
		return false;
	}
	if (code == 421) {
		char *why;

		/* refused, so not delivered: it may go again elsewhere */
		if (e.k == E_DOT && m)
			m->body_sent = false;
		why = xasprintf("server closing: %.*s", (int)n, line);

		conn_fail(c, why);
		free(why);
		return false;
	}
	switch (e.k) {
	case E_RSET:
		if (code / 100 != 2) {
			conn_fail(c, "RSET refused");
			return false;
		}
		break;
	case E_MAIL:
		if (code / 100 == 2)
			m->mail_ok = true;
		else
			msg_refused(m, "server replied to MAIL FROM", code,
				    line, n);
		break;
	case E_RCPT:
		/* behind a refused MAIL the answer ("503 need MAIL") says
		 * nothing about the address: not a refusal to record */
		if (!m->mail_ok)
			break;
		if (code / 100 == 2) {
			m->accepted++;
		} else {
			if (!m->rcpt_reply)
				m->rcpt_reply = xcalloc(m->nrcpt,
							sizeof(*m->rcpt_reply));
			reply_keep(&m->rcpt_reply[e.i], line, n);
			m->last_refused = code;
		}
		break;
	case E_DATA:
		if (code == 354 && m->mail_ok && m->accepted > 0) {
			smtp_put_text(out_buf(c), m->data, m->len);
			m->body_sent = true;
			exp_push(c, E_DOT, m, 0, 0);
			c->nsent = c->nexp;   /* the text is written below */
			/* the next message rides with this one's text */
			if (c->pipelining && p->qhead && !c->next)
				issue(c, queue_pop(p));
			break;
		}
		if (code == 354) {
			/* no address accepted, yet the server wants the text:
			 * end it empty */
			buf_add(out_buf(c), ".\r\n", 3);
			m->empty = true;
			exp_push(c, E_DOT, m, 0, 0);
			c->nsent = c->nexp;
			break;
		}
		if (m->mail_ok)
			c->need_rset = true;
		if (m->mail_ok && m->accepted == 0)
			all_refused(m);
		msg_refused(m, "server replied to DATA", code, line, n);
		transaction_over(c, m);
		break;
	case E_DOT:
		if (m->empty) {
			all_refused(m);
			msg_refused(m, "server replied", code, line, n);
		} else if (code / 100 == 2) {
			reply_keep(&m->reply, line, n);
		} else {
			msg_refused(m, "server replied", code, line, n);
		}
		transaction_over(c, m);
		break;
	case E_QUIT:
		break;
	}
	if (c->drain_close && !c->cur) {
		conn_fail(c, NULL);
		return false;
	}
	return true;
}

/* After replies: send what may go now, take queued messages, set the
 * timer. */
static void conn_progress(struct conn *c)
{
	struct smtp *p = c->p;

	while (can_take(c) && p->qhead)
		issue(c, queue_pop(p));
	release_commands(c);
	if (c->out.len > c->outoff && !c->want_write)
		conn_write(c);
	if (!c->dead)
		conn_idle_check(c);
}

/* Every complete reply in the input.  false: the connection is gone. */
static bool parse_input(struct conn *c)
{
	size_t off = 0, ls, ll;
	ssize_t r = 0;
	int code;

	while (off < c->inlen &&
	       (r = smtp_reply_parse(c->in + off, c->inlen - off, &code, &ls,
				     &ll)) > 0) {
		if (!on_reply(c, code, c->in + off + ls, ll))
			return false;
		off += (size_t)r;
	}
	if (r < 0) {
		/* quoted (the sender escapes it): what the server said is what
		 * the operator needs to see */
		const char *l = c->in + off;
		size_t n = c->inlen - off, k = 0;
		char *why;

		while (k < n && k < 100 && l[k] != '\r' && l[k] != '\n')
			k++;
		why = xasprintf("malformed server reply: %.*s", (int)k, l);
		conn_fail(c, why);
		free(why);
		return false;
	}
	memmove(c->in, c->in + off, c->inlen - off);
	c->inlen -= off;
	return true;
}

static void on_conn_io(struct ev_loop *loop, ev_io *w, int revents)
{
	struct conn *c = w->data;
	struct smtp *p = c->p;

	(void)loop;
	if (revents & EV_WRITE)
		conn_write(c);
	/* read until libcurl says AGAIN: TLS may hold decrypted bytes the
	 * socket no longer signals */
	while (!c->dead && (revents & EV_READ)) {
		size_t n = 0;
		CURLcode rc;

		if (c->inlen == sizeof(c->in)) {
			conn_fail(c, "server reply too long");
			break;
		}
		rc = curl_easy_recv(c->easy, c->in + c->inlen,
				    sizeof(c->in) - c->inlen, &n);
		if (rc == CURLE_AGAIN)
			break;
		if (rc != CURLE_OK) {
			conn_fail(c, curl_easy_strerror(rc));
			break;
		}
		if (n == 0) {
			if (parse_input(c))
				conn_fail(c, c->cur ? "connection closed by "
					  "the server" : NULL);
			break;
		}
		c->inlen += n;
		if (!parse_input(c))
			break;
	}
	if (!c->dead)
		conn_progress(c);
	dispatch(p);
}

static void on_conn_timer(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct conn *c = w->data;
	struct smtp *p = c->p;
	bool idle = !c->cur && c->hexp == c->nexp;

	(void)loop;
	(void)revents;
	if (c->st == C_QUITTING) {
		conn_fail(c, NULL);
	} else if (idle && c->st == C_READY) {
		/* unused: say goodbye, and close at its answer */
		c->st = C_QUITTING;
		command(c, E_QUIT, NULL, 0, "QUIT", NULL, NULL);
		release_commands(c);
		conn_write(c);
		if (!c->dead)
			conn_timer(c, QUIT_SECONDS);
	} else {
		conn_fail(c, "timed out waiting for the server");
	}
	dispatch(p);
}

/* The connection broke (why: NULL for a quiet close).  Its messages go
 * back to the queue, or fail when their text may have gone out. */
static void conn_fail(struct conn *c, const char *why)
{
	struct smtp *p = c->p;
	struct smtp_msg *ms[2] = { c->next, c->cur };
	size_t moved = 0;

	c->cur = c->next = NULL;
	for (size_t i = 0; i < 2; i++) {
		struct smtp_msg *m = ms[i];

		if (!m)
			continue;
		if (!m->body_sent && p->draining) {
			msg_done(p, m, SMTP_ABORTED, NULL);
		} else if (!m->body_sent && m->requeued < REQUEUE_MAX) {
			moved++;
			m->requeued++;
			msg_reset(m);
					queue_push(p, m, true);
		} else {
			msg_done(p, m, SMTP_TEMPFAIL, xasprintf(
				"%s%s", why ? why : "connection closed",
				m->body_sent ? " (after the message was sent; "
				"it may have been delivered)" : ""));
		}
	}
	if (why && moved > 0) {
		struct buf b;

		/* the messages that fail are logged by the sender; these
		 * would leave no trace */
		buf_init(&b);
		buf_put_escaped(&b, why, KEEP_MAX);
		log_warn("mail: connection lost (%s); %zu message%s moved to "
			 "another connection", buf_str(&b), moved,
			 moved == 1 ? "" : "s");
		buf_free(&b);
	}
	conn_close(c);
}

/* The other connections with the current settings, open or opening;
 * *ready: whether one of them is open. */
static int others_live(const struct conn *c, bool *ready)
{
	int n = 0;

	*ready = false;
	for (const struct conn *k = c->p->conns; k; k = k->next2) {
		if (k != c && !k->stale && !k->dead && k->st != C_QUITTING) {
			n++;
			*ready = *ready || k->st == C_READY;
		}
	}
	return n;
}

/* libcurl has connected, upgraded, greeted and logged in, or failed. */
static void on_connected(void *ctx, void *easy, int result)
{
	struct conn *c = ctx;
	struct smtp *p = c->p;
	curl_socket_t fd = CURL_SOCKET_BAD;

	(void)easy;
	if (result == CURLE_OK &&
	    curl_easy_getinfo(c->easy, CURLINFO_ACTIVESOCKET, &fd) ==
	    CURLE_OK && fd != CURL_SOCKET_BAD) {
		c->fd = fd;
		c->st = C_READY;
		p->owed = 0;      /* the server works: nothing failed for it */
		ev_io_init(&c->io, on_conn_io, fd, EV_READ);
		c->io.data = c;
		ev_io_start(p->loop, &c->io);
		conn_progress(c);
	} else {
		long code = 0;
		const char *msg = c->err[0] ? c->err :
			curl_easy_strerror((CURLcode)result);
		bool ready = false;
		int live = c->stale ? 0 : others_live(c, &ready);
		size_t nfail = 1;
		char *e;

		curl_easy_getinfo(c->easy, CURLINFO_RESPONSE_CODE, &code);
		if (c->last)
			e = xasprintf("%s (server replied: %s)", msg, c->last);
		else
			e = xstrdup(msg);
		conn_close(c);
		if (live > 0) {
			/* Others are open or opening: the server may take no
			 * more connections (a limit per client, often below
			 * `parallel`).  No message fails for this one yet, and
			 * none opens until those have closed; if they all fail
			 * too, the last one fails the messages owed. */
			if (p->cap == 0) {
				struct buf b;

				buf_init(&b);
				buf_put_escaped(&b, e, 300);
				log_info("smtp: a connection failed while %d "
					 "other%s open or opening (%s): no new "
					 "one until they close", live, live == 1 ?
					 " is" : "s are", buf_str(&b));
				buf_free(&b);
			}
			if (p->cap == 0 || p->cap > live)
				p->cap = live;
			if (!ready)
				p->owed++;   /* the server may be down */
			nfail = 0;
		} else if (!c->stale) {
			nfail += p->owed;
			p->owed = 0;
		}
		for (; nfail > 0; nfail--) {
			struct smtp_msg *m = queue_pop(p);
			bool perm = (code >= 500 && code <= 599) ||
				result == CURLE_URL_MALFORMAT ||
				result == CURLE_UNSUPPORTED_PROTOCOL;

			if (!m)
				break;
			msg_done(p, m, perm ? SMTP_PERMFAIL : SMTP_TEMPFAIL,
				 xstrdup(e));
		}
		free(e);
	}
	dispatch(p);
}

static bool has_word(const char *s, size_t n, const char *w)
{
	size_t k = strlen(w);

	return n >= k && strncasecmp(s, w, k) == 0 &&
	       (n == k || s[k] == ' ' || s[k] == '=');
}

/* The connect phase's replies: the EHLO keywords (the last EHLO counts:
 * after STARTTLS the server says them again), and the last line for an
 * error message. */
static size_t header_cb(char *s, size_t size, size_t nitems, void *userp)
{
	struct conn *c = userp;
	size_t n = size * nitems, k = n;

	while (k > 0 && (s[k - 1] == '\n' || s[k - 1] == '\r'))
		k--;
	if (k >= 3 && strncmp(s, "220", 3) == 0)
		c->pipelining = false;
	if (k > 4 && strncmp(s, "250", 3) == 0) {
		if (has_word(s + 4, k - 4, "PIPELINING"))
			c->pipelining = true;
	}
	if (k >= 3) {
		free(c->last);    /* raw: the sender escapes what it shows */
		c->last = xstrndup(s, k < KEEP_MAX ? k : KEEP_MAX);
	}
	return n;
}

static void conn_open(struct smtp *p)
{
	struct conn *c = xcalloc(1, sizeof(*c));
	CURL *e;

	c->p = p;
	c->fd = CURL_SOCKET_BAD;
	c->st = C_CONNECTING;
	buf_init(&c->out);
	buf_init(&c->later);
	buf_init(&c->cmds);
	ev_init(&c->tm, on_conn_timer);
	c->tm.data = c;
	c->next2 = p->conns;
	if (p->conns)
		p->conns->prev2 = c;
	p->conns = c;
	p->nconns++;
	c->cv = curlev_new(p->loop, on_connected, c);
	e = c->easy = curl_easy_init();
	if (!c->cv || !e) {
			on_connected(c, NULL, CURLE_OUT_OF_MEMORY);
		return;
	}
	curlev_keep(c->cv);
	curl_easy_setopt(e, CURLOPT_URL, p->url);
	curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "smtp,smtps");
	curl_easy_setopt(e, CURLOPT_CONNECT_ONLY, 1L);
	curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(e, CURLOPT_ERRORBUFFER, c->err);
	curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, header_cb);
	curl_easy_setopt(e, CURLOPT_HEADERDATA, c);
	curl_easy_setopt(e, CURLOPT_USE_SSL,
			 p->starttls == STARTTLS_REQUIRED ? (long)CURLUSESSL_ALL :
			 p->starttls == STARTTLS_TRY ? (long)CURLUSESSL_TRY :
			 (long)CURLUSESSL_NONE);
	if (p->user) {
		curl_easy_setopt(e, CURLOPT_USERNAME, p->user);
		if (p->password)
			curl_easy_setopt(e, CURLOPT_PASSWORD, p->password);
	}
	curl_easy_setopt(e, CURLOPT_SSL_VERIFYPEER, p->verify ? 1L : 0L);
	curl_easy_setopt(e, CURLOPT_SSL_VERIFYHOST, p->verify ? 2L : 0L);
	curl_easy_setopt(e, CURLOPT_TIMEOUT, (long)p->timeout);
	if (curlev_add(c->cv, e) < 0) {
		snprintf(c->err, sizeof(c->err), "curl multi refused the "
			 "connection");
			on_connected(c, NULL, CURLE_FAILED_INIT);
	}
}

/* Queued messages go to connections that can take them, and new
 * connections open (up to `parallel`) for those still waiting. */
static void dispatch(struct smtp *p)
{
	size_t connecting = 0;
	bool again = true;

	if (p->draining)
		return;
	while (again && p->qhead) {
		again = false;
		for (struct conn *c = p->conns, *nx; c && p->qhead; c = nx) {
			nx = c->next2;
			if (can_take(c)) {
				conn_progress(c);
				if (c->dead)
					again = true;  /* its messages are back */
			}
		}
	}
	for (struct conn *c = p->conns; c; c = c->next2) {
		if (c->st == C_CONNECTING)
			connecting++;
	}
	while (p->qhead && connecting < p->nq &&
	       p->nconns < (size_t)(p->cap > 0 && p->cap < p->parallel ?
				    p->cap : p->parallel)) {
		size_t before = p->nq;

		conn_open(p);
		connecting++;
		if (p->nq < before)
			connecting--;    /* it failed at once, taking one */
	}
}

/* ------------------------------------------------------------- API */

struct smtp *smtp_new(struct ev_loop *loop, smtp_done_fn done, void *ctx)
{
	struct smtp *p = xcalloc(1, sizeof(*p));

	p->loop = loop;
	p->done = done;
	p->ctx = ctx;
	ev_prepare_init(&p->reap, on_reap);
	p->reap.data = p;
	return p;
}

static void settings(struct smtp *p, const struct conf *c)
{
	char *key = xasprintf("%s\n%s\n%s\n%d\n%d", c->mail.url ? c->mail.url : "",
			      c->mail.user ? c->mail.user : "",
			      c->mail.password ? c->mail.password : "",
			      (int)c->mail.starttls, (int)c->mail.tls_verify);

	p->parallel = c->mail.parallel > 0 ? c->mail.parallel : 1;
	p->timeout = c->mail.timeout > 0 ? (double)c->mail.timeout : 300.;
	if (p->key && strcmp(p->key, key) == 0) {
		free(key);
		return;
	}
	/* new server or credentials: the open connections finish what they
	 * have and close */
	free(p->key);
	p->key = key;
	free(p->url);
	free(p->user);
	free(p->password);
	p->url = xstrdup(c->mail.url ? c->mail.url : "");
	p->user = c->mail.user && *c->mail.user ? xstrdup(c->mail.user) : NULL;
	p->password = c->mail.password ? xstrdup(c->mail.password) : NULL;
	p->starttls = c->mail.starttls;
	p->verify = c->mail.tls_verify;
	for (struct conn *k = p->conns; k; k = k->next2)
		k->stale = true;
	p->cap = 0;
	p->owed = 0;
}

void smtp_submit(struct smtp *p, const struct conf *c, struct smtp_msg *m)
{
	settings(p, c);
	m->requeued = 0;
	msg_reset(m);
	for (size_t i = 0; i < m->nrcpt; i++) {
		if (!addr_ok(m->rcpt[i])) {
			msg_done(p, m, SMTP_PERMFAIL,
				 xstrdup("unusable recipient address"));
			return;
		}
	}
	if (!m->from || (*m->from && !addr_ok(m->from)) || m->nrcpt == 0) {
		msg_done(p, m, SMTP_PERMFAIL, xstrdup(m->nrcpt ?
			 "unusable sender address" : "no usable recipient"));
		return;
	}
	/* stale idle connections go now, before dispatch counts the slots:
	 * closed after it, they would leave this message queued with no
	 * connection or timer left to start one for it */
	for (struct conn *k = p->conns, *nx; k; k = nx) {
		nx = k->next2;
		if (k->stale && k->st == C_READY && !k->cur &&
		    k->hexp == k->nexp)
			conn_fail(k, NULL);
	}
	queue_push(p, m, false);
	dispatch(p);
}

void smtp_drain(struct smtp *p)
{
	struct smtp_msg *m;

	if (!p || p->draining)
		return;
	p->draining = true;
	while ((m = queue_pop(p)) != NULL)
		msg_done(p, m, SMTP_ABORTED, NULL);
	for (struct conn *c = p->conns, *nx; c; c = nx) {
		nx = c->next2;
		if (c->st == C_CONNECTING || (c->cur && !c->cur->body_sent)) {
			conn_fail(c, NULL);      /* aborts what it carries */
		} else if (c->cur) {
			/* its text went out: wait for the answer, but the one
			 * behind it (commands only) goes back */
			if (c->next) {
				m = c->next;
				c->next = NULL;
				msg_done(p, m, SMTP_ABORTED, NULL);
			}
			c->drain_close = true;
		}
	}
}

void smtp_free(struct smtp *p)
{
	if (!p)
		return;
	/* a stop: idle connections get a QUIT (not waited for), the rest is
	 * cut; messages in flight are dropped unreported (their rows stay
	 * pending) */
	while (p->conns) {
		struct conn *c = p->conns;

		if (c->st == C_READY && !c->cur && c->hexp == c->nexp) {
			size_t n = 0;

			curl_easy_send(c->easy, "QUIT\r\n", 6, &n);
		}
		c->cur = c->next = NULL;
		conn_close(c);
	}
	reap_all(p);
	p->qhead = p->qtail = NULL;
	free(p->key);
	free(p->url);
	free(p->user);
	free(p->password);
	free(p);
}
