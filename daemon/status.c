/*
 * status.c - who submitted what: the model behind `cutoffctl status`,
 * GET /status.json, the status page at / and the submissions API.
 *
 * Routes (everything else returns 1 to http.c):
 *   GET  /                        the page (HTML, no JavaScript)
 *   GET  /status.json             the same data
 *   POST /login, /logout, /mark   the page's forms (session cookie + CSRF)
 *   GET|POST /api/submissions     list / record (Bearer admin token)
 *   GET|DELETE /api/submissions/CYCLE/YYYY-MM-DD/UNIT
 *
 * Which occurrences are shown by default: those due within
 * [now - history, now + 45 days], plus each cycle's next one even when
 * it is further away (a quarterly cycle would otherwise vanish for weeks).
 * The whole [now - history, now + horizon) window is never shown: 400 days
 * of future "not due" rows say nothing.
 *
 * When calendar_token is set, the page and /status.json need it too
 * (?token=), or an admin session or Bearer token: they show what the
 * secretariat feed shows.
 */
#include "cutoffd.h"

#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <jansson.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <sqlite3.h>

#define DAY 86400
#define SOON (45 * DAY)             /* upcoming occurrences shown */
#define DEFAULT_HISTORY (180 * DAY) /* when the config says 0 */
#define DEFAULT_HORIZON (400 * DAY)
#define FAILED_MAX 50               /* failed notices listed */
#define FAILED_SCAN 1000            /* rows read before filtering */
#define FUTURE_SLACK 3600           /* `at` may be this far ahead (clocks) */
#define SESSION_TTL (30 * DAY)
#define PAGE_COMPACT 40             /* above: on-time rows fold away */
#define PAGE_ROWS_MAX 300           /* unit rows of one kind per section */
#define FORM_MAX_FIELDS 64
#define JSON_TYPE "application/json; charset=utf-8"
#define HTML_TYPE "text/html; charset=utf-8"

/* main.c defines app_changed; unit tests link every object but main.o, so
 * the reference is weak: a test that doesn't provide it still links. */
#pragma weak app_changed

enum ustate { US_SUBMITTED, US_MISSING, US_NOTDUE };

static const char *const ustate_name[] = { "submitted", "missing", "not-due" };

struct st_unit {
	const struct unit *u;
	enum ustate state;
	bool late;
	tstamp at;
};

struct st_occ {
	struct occ o;
	struct st_unit *u;
	size_t nu;
	size_t nsub, nlate, nmiss, nnotdue;
};

struct st_fail {
	char *occ, *unit, *step, *aud, *ch, *err;
	tstamp at;               /* failed: when; retrying: next try */
	bool retrying;           /* a temporary failure, to be tried again */
};

struct status {
	tstamp now;
	struct st_occ *occ;
	size_t nocc;
	struct st_fail *fail;
	size_t nfail;
};

struct filter {
	const char *occ;              /* one occurrence id, or NULL */
	const struct cycle *cycle;    /* or NULL */
	const char *group;            /* or NULL */
};

/* ------------------------------------------------------------ the model */

struct subrec {
	char occ[OCC_ID_MAX];
	char unit[72];
	tstamp at;
};

struct subset {
	struct subrec *v;
	size_t n, cap;
};

static int
subrec_cmp(const void *pa, const void *pb)
{
	const struct subrec *a = pa, *b = pb;
	int c = strcmp(a->occ, b->occ);

	return c != 0 ? c : strcmp(a->unit, b->unit);
}

static int
collect_sub(void *ctx, const struct submission *s)
{
	struct subset *set = ctx;
	struct subrec *r;

	if (set->n == set->cap) {
		set->cap = set->cap ? set->cap * 2 : 64;
		set->v = xrealloc(set->v, set->cap * sizeof(*set->v));
	}
	r = &set->v[set->n++];
	snprintf(r->occ, sizeof(r->occ), "%s", s->occurrence);
	snprintf(r->unit, sizeof(r->unit), "%s", s->unit);
	r->at = s->at;
	return 0;
}

static const struct subrec *
subset_find(const struct subset *set, const char *occ, const char *unit)
{
	struct subrec key;

	if (set->n == 0)
		return NULL;
	snprintf(key.occ, sizeof(key.occ), "%s", occ);
	snprintf(key.unit, sizeof(key.unit), "%s", unit);
	return bsearch(&key, set->v, set->n, sizeof(*set->v), subrec_cmp);
}

static bool
unit_in_group(const struct unit *u, const char *group)
{
	for (size_t i = 0; i < u->ngroups; i++)
		if (strcmp(u->groups[i], group) == 0)
			return true;
	return false;
}


/* The occurrences to show, see the comment at the top. */
static int
pick_occs(const struct conf *c, tstamp now, const struct filter *f,
	  struct occ **out, size_t *n)
{
	struct occ *all = NULL, *v;
	size_t nall = 0, k = 0;
	int64_t hist = c->daemon.history > 0 ? c->daemon.history
					     : DEFAULT_HISTORY;
	int64_t hor = c->daemon.horizon > 0 ? c->daemon.horizon
					    : DEFAULT_HORIZON;
	bool *seen_next;

	if (f->occ != NULL) {
		v = xmalloc(sizeof(*v));
		if (sched_occurrence(c, f->occ, v) < 0) {
			free(v);
			return 1;
		}
		*out = v;
		*n = 1;
		return 0;
	}
	if (sched_occurrences(c, now - hist, now + hor, &all, &nall) < 0)
		return -1;
	seen_next = xcalloc(c->ncycles + 1, sizeof(*seen_next));
	v = xcalloc(nall + 1, sizeof(*v));
	for (size_t i = 0; i < nall; i++) {
		const struct occ *o = &all[i];
		size_t ci = (size_t)(o->cycle - c->cycles);
		bool keep = o->due_at <= now + SOON;

		if (f->cycle != NULL && o->cycle != f->cycle)
			continue;
		/* sorted by due_at: the first future one is the cycle's next */
		if (o->due_at > now && ci < c->ncycles && !seen_next[ci]) {
			seen_next[ci] = true;
			keep = true;
		}
		if (keep)
			v[k++] = *o;
	}
	free(seen_next);
	free(all);
	*out = v;
	*n = k;
	return 0;
}

static void
status_free(struct status *s)
{
	if (s == NULL)
		return;
	for (size_t i = 0; i < s->nocc; i++)
		free(s->occ[i].u);
	free(s->occ);
	for (size_t i = 0; i < s->nfail; i++) {
		struct st_fail *x = &s->fail[i];

		free(x->occ);
		free(x->unit);
		free(x->step);
		free(x->aud);
		free(x->ch);
		free(x->err);
	}
	free(s->fail);
	free(s);
}

static char *
col_text(sqlite3_stmt *st, int i)
{
	const unsigned char *t = sqlite3_column_text(st, i);

	return xstrdup(t != NULL ? (const char *)t : "");
}

static bool
fail_matches(const struct conf *c, const struct filter *f, const char *occ,
	     const char *unit)
{
	if (f->occ != NULL && strcmp(occ, f->occ) != 0)
		return false;
	if (f->cycle != NULL) {
		size_t l = strlen(f->cycle->id);

		if (strncmp(occ, f->cycle->id, l) != 0 || occ[l] != '/')
			return false;
	}
	if (f->group != NULL) {
		const struct unit *u = conf_unit(c, unit);

		if (u == NULL || !unit_in_group(u, f->group))
			return false;
	}
	return true;
}

/* Notices that failed for good, and those waiting to be retried after a
 * temporary failure, newest first: the secretariat must see them, since
 * nobody else will. */
static int
load_failed(const struct conf *c, struct db *db, const struct filter *f,
	    struct status *s)
{
	static const char sql[] =
		"SELECT occurrence, unit, step, audience, channel,"
		" COALESCE(last_error, ''), COALESCE(done_at, next_try),"
		" state = 'pending'"
		" FROM outbox WHERE state = 'failed'"
		" OR (state = 'pending' AND attempts > 0)"
		" ORDER BY COALESCE(done_at, next_try) DESC, id DESC LIMIT ?";
	sqlite3 *h = (sqlite3 *)db_handle(db);
	sqlite3_stmt *st = NULL;
	int rc;

	if (h == NULL)
		return -1;
	if (sqlite3_prepare_v2(h, sql, -1, &st, NULL) != SQLITE_OK) {
		log_err("status: failed notices: %s", sqlite3_errmsg(h));
		return -1;
	}
	sqlite3_bind_int(st, 1, FAILED_SCAN);
	s->fail = xcalloc(FAILED_MAX, sizeof(*s->fail));
	for (;;) {
		const char *occ, *unit;
		struct st_fail *x;

		rc = sqlite3_step(st);
		if (rc != SQLITE_ROW)
			break;
		if (s->nfail == FAILED_MAX)
			continue;
		occ = (const char *)sqlite3_column_text(st, 0);
		unit = (const char *)sqlite3_column_text(st, 1);
		if (occ == NULL || unit == NULL ||
		    !fail_matches(c, f, occ, unit))
			continue;
		x = &s->fail[s->nfail++];
		x->occ = col_text(st, 0);
		x->unit = col_text(st, 1);
		x->step = col_text(st, 2);
		x->aud = col_text(st, 3);
		x->ch = col_text(st, 4);
		x->err = col_text(st, 5);
		x->at = sqlite3_column_int64(st, 6);
		x->retrying = sqlite3_column_int(st, 7) != 0;
	}
	sqlite3_finalize(st);
	if (rc != SQLITE_DONE) {
		log_err("status: failed notices: %s", sqlite3_errmsg(h));
		return -1;
	}
	return 0;
}

/* Builds the model.  Returns 0, 1 when f->occ is unknown, -1 on error. */
static int
status_build(const struct conf *c, struct db *db, tstamp now,
	     const struct filter *f, struct status **out)
{
	struct status *s;
	struct subset set = { 0 };
	struct occ *occs = NULL;
	size_t nocc = 0;
	int rc;

	rc = pick_occs(c, now, f, &occs, &nocc);
	if (rc != 0)
		return rc;
	/* by the resolved id: a moved occurrence's old id names the new */
	if (db_sub_foreach(db, f->occ != NULL && nocc == 1 ? occs[0].id : NULL,
			   collect_sub, &set) < 0) {
		free(occs);
		free(set.v);
		return -1;
	}
	if (set.n > 1)
		qsort(set.v, set.n, sizeof(*set.v), subrec_cmp);

	s = xcalloc(1, sizeof(*s));
	s->now = now;
	s->occ = xcalloc(nocc + 1, sizeof(*s->occ));
	for (size_t i = 0; i < nocc; i++) {
		const struct cycle *cy = occs[i].cycle;
		struct st_occ *so = &s->occ[s->nocc];

		so->o = occs[i];
		so->u = xcalloc(cy->nunits + 1, sizeof(*so->u));
		for (size_t j = 0; j < cy->nunits; j++) {
			const struct unit *u = &c->units[cy->units[j]];
			const struct subrec *r;
			struct st_unit *su;

			if (f->group != NULL && !unit_in_group(u, f->group))
				continue;
			su = &so->u[so->nu++];
			su->u = u;
			r = subset_find(&set, so->o.id, u->id);
			if (r != NULL) {
				su->state = US_SUBMITTED;
				su->at = r->at;
				su->late = r->at > so->o.due_at;
				so->nsub++;
				if (su->late)
					so->nlate++;
			} else if (so->o.due_at <= now) {
				su->state = US_MISSING;
				so->nmiss++;
			} else {
				su->state = US_NOTDUE;
				so->nnotdue++;
			}
		}
		/* a group filter drops occurrences none of its units owe */
		if (so->nu == 0 && f->group != NULL) {
			free(so->u);
			memset(so, 0, sizeof(*so));
			continue;
		}
		s->nocc++;
	}
	free(occs);
	free(set.v);
	if (load_failed(c, db, f, s) < 0) {
		status_free(s);
		return -1;
	}
	*out = s;
	return 0;
}

/* ---------------------------------------------------------- formatting */

static void
fmt_ymd_iso(struct ymd d, char *out)
{
	snprintf(out, 11, "%04u-%02u-%02u", (unsigned)d.y % 10000u,
		 (unsigned)d.m % 100u, (unsigned)d.d % 100u);
}

/* "13/03/2024 17:00": the due date people read, the time of the cycle;
 * end of day reads "24:00" as in the plans ("trước 24 giờ ngày ..."). */
static void
fmt_due_vn(const struct occ *o, char *out, size_t size)
{
	char d[16];
	int m = o->cycle->due_minute;

	ymd_format_vn(o->due, d);
	snprintf(out, size, "%s %02d:%02d", d, m / 60 % 100, m % 60);
}

/* -------------------------------------------------- cutoffctl status */

int
status_print(const struct conf *c, struct db *db, tstamp now,
	     const char *occ, FILE *out)
{
	struct filter f = { .occ = occ };
	struct status *s = NULL;
	struct buf b;
	int rc;

	rc = status_build(c, db, now, &f, &s);
	if (rc != 0)
		return rc;
	buf_init(&b);
	for (size_t i = 0; i < s->nocc; i++) {
		const struct st_occ *so = &s->occ[i];
		char due[32];

		fmt_due_vn(&so->o, due, sizeof(due));
		buf_printf(&b, "%s  %s  due %s  submitted %zu/%zu\n", so->o.id,
			   so->o.cycle->title ? so->o.cycle->title : "", due,
			   so->nsub, so->nu);
		for (size_t j = 0; j < so->nu; j++) {
			const struct st_unit *su = &so->u[j];
			char at[20];

			buf_printf(&b, "%s\t%s", su->u->id,
				   ustate_name[su->state]);
			if (su->state == US_SUBMITTED) {
				tz_format_iso(c->tz, su->at, at);
				buf_printf(&b, "\t%s%s", at,
					   su->late ? "\tlate" : "");
			}
			buf_putc(&b, '\n');
		}
	}
	for (size_t i = 0; i < s->nfail; i++) {
		const struct st_fail *x = &s->fail[i];

		/* ids come from our own rows, the error from a remote server */
		buf_puts(&b, x->retrying ? "retrying\t" : "failed\t");
		buf_put_escaped(&b, x->occ, 200);
		buf_putc(&b, '\t');
		buf_put_escaped(&b, x->unit, 200);
		buf_putc(&b, '\t');
		buf_put_escaped(&b, x->step, 100);
		buf_putc(&b, '\t');
		buf_put_escaped(&b, x->ch, 100);
		buf_putc(&b, '\t');
		buf_put_escaped(&b, x->err, 300);
		buf_putc(&b, '\n');
	}
	fputs(buf_str(&b), out);
	buf_free(&b);
	status_free(s);
	return 0;
}

/* ---------------------------------------------------------------- JSON */
/* One occurrence and its units as a JSON object. */
static json_t *
json_occ(const struct conf *c, const struct st_occ *so)
{
	char t[20];
	json_t *jo = json_object(), *units = json_array();
	char d[20];

	json_object_set_new(jo, "id", json_string(so->o.id));
	json_object_set_new(jo, "cycle", json_string(so->o.cycle->id));
	json_object_set_new(jo, "title",
			    json_string(so->o.cycle->title ?
					so->o.cycle->title : ""));
	tz_format_iso(c->tz, so->o.due_at, t);
	json_object_set_new(jo, "due", json_string(t));
	ymd_format_vn(so->o.due, d);
	json_object_set_new(jo, "due_date", json_string(d));
	if (so->o.has_period) {
		fmt_ymd_iso(so->o.period_from, d);
		json_object_set_new(jo, "period_from", json_string(d));
		fmt_ymd_iso(so->o.period_to, d);
		json_object_set_new(jo, "period_to", json_string(d));
	} else {
		json_object_set_new(jo, "period_from", json_null());
		json_object_set_new(jo, "period_to", json_null());
	}
	json_object_set_new(jo, "submitted", json_integer((json_int_t)so->nsub));
	json_object_set_new(jo, "total", json_integer((json_int_t)so->nu));
	json_object_set_new(jo, "late", json_integer((json_int_t)so->nlate));
	json_object_set_new(jo, "missing", json_integer((json_int_t)so->nmiss));
	json_object_set_new(jo, "not_due",
			    json_integer((json_int_t)so->nnotdue));
	for (size_t j = 0; j < so->nu; j++) {
		const struct st_unit *su = &so->u[j];
		json_t *ju = json_object();

		json_object_set_new(ju, "unit", json_string(su->u->id));
		json_object_set_new(ju, "name",
				    json_string(su->u->name ?
						su->u->name : su->u->id));
		json_object_set_new(ju, "state",
				    json_string(ustate_name[su->state]));
		if (su->state == US_SUBMITTED) {
			tz_format_iso(c->tz, su->at, t);
			json_object_set_new(ju, "at", json_string(t));
			if (su->late)
				json_object_set_new(ju, "late", json_true());
		}
		json_array_append_new(units, ju);
	}
	json_object_set_new(jo, "units", units);
	return jo;
}

/* Appends j, compact, and releases it. */
static void
json_put(struct buf *b, json_t *j)
{
	char *text = json_dumps(j, JSON_COMPACT | JSON_ENCODE_ANY);

	json_decref(j);
	if (text == NULL)
		return;
	buf_puts(b, text);
	free(text);
}

/* The status as JSON, written one occurrence at a time: with 10,000 units
 * a whole document tree would cost tens of megabytes. */
static void
status_json_write(const struct conf *c, const struct status *s,
		  struct buf *b)
{
	json_t *fails;
	char t[20];

	tz_format_iso(c->tz, s->now, t);
	buf_puts(b, "{\"now\":");
	json_put(b, json_string(t));
	buf_puts(b, ",\"timezone\":");
	json_put(b, json_string(tz_name(c->tz)));
	buf_puts(b, ",\"occurrences\":[");
	for (size_t i = 0; i < s->nocc; i++) {
		if (i > 0)
			buf_putc(b, ',');
		json_put(b, json_occ(c, &s->occ[i]));
	}
	buf_puts(b, "],\"failed\":");
	fails = json_array();
	for (size_t i = 0; i < s->nfail; i++) {
		const struct st_fail *x = &s->fail[i];
		json_t *jf = json_object();

		json_object_set_new(jf, "occurrence", json_string(x->occ));
		json_object_set_new(jf, "unit", json_string(x->unit));
		json_object_set_new(jf, "step", json_string(x->step));
		json_object_set_new(jf, "audience", json_string(x->aud));
		json_object_set_new(jf, "channel", json_string(x->ch));
		json_object_set_new(jf, "state", json_string(x->retrying ?
						"retrying" : "failed"));
		/* a server's reply may be any bytes: json_string is NULL then */
		if (utf8_valid(x->err, strlen(x->err)))
			json_object_set_new(jf, "error", json_string(x->err));
		else
			json_object_set_new(jf, "error",
					    json_string("(not UTF-8)"));
		tz_format_iso(c->tz, x->at, t);
		json_object_set_new(jf, "at", json_string(t));
		json_array_append_new(fails, jf);
	}
	json_put(b, fails);
	buf_puts(b, "}\n");
}

/* ------------------------------------------------------ HTTP helpers */

static void
resp_hdr(struct http_resp *r, const char *name, const char *value)
{
	size_t n = sizeof(r->hdr) / sizeof(r->hdr[0]);

	for (size_t i = 0; i < n; i++) {
		if (r->hdr[i].name == NULL ||
		    strcasecmp(r->hdr[i].name, name) == 0) {
			r->hdr[i].name = name;
			r->hdr[i].value = value;
			return;
		}
	}
}

/* steals j */
static void
resp_json(struct http_resp *r, int status, json_t *j)
{
	char *s = json_dumps(j, JSON_COMPACT);

	json_decref(j);
	r->status = status;
	r->content_type = JSON_TYPE;
	buf_reset(&r->body);
	if (s != NULL) {
		buf_puts(&r->body, s);
		free(s);
	} else {
		r->status = 500;
		buf_puts(&r->body, "{\"error\":\"internal error\"}");
	}
	buf_putc(&r->body, '\n');
}

static void
resp_error(struct http_resp *r, int status, const char *msg)
{
	resp_json(r, status, json_pack("{s:s}", "error", msg));
}

static void
html_esc(struct buf *b, const char *s)
{
	for (; s != NULL && *s != '\0'; s++) {
		switch (*s) {
		case '&': buf_puts(b, "&amp;"); break;
		case '<': buf_puts(b, "&lt;"); break;
		case '>': buf_puts(b, "&gt;"); break;
		case '"': buf_puts(b, "&quot;"); break;
		case '\'': buf_puts(b, "&#39;"); break;
		default: buf_putc(b, *s); break;
		}
	}
}

/* A small page for errors of the forms (no JSON for browsers). */
static void
resp_html_msg(struct http_resp *r, int status, const char *msg)
{
	r->status = status;
	r->content_type = HTML_TYPE;
	buf_reset(&r->body);
	buf_puts(&r->body, "<!DOCTYPE html>\n<html lang=\"vi\"><head>"
		 "<meta charset=\"utf-8\"><title>cutoffd</title></head><body><p>");
	html_esc(&r->body, msg);
	buf_puts(&r->body, "</p><p><a href=\"/\">Quay lại</a></p></body></html>\n");
}

static void
resp_redirect(struct http_resp *r, const char *location)
{
	r->status = 303;
	free(r->location);
	r->location = xstrdup(location);
	r->content_type = "text/plain; charset=utf-8";
	buf_reset(&r->body);
	buf_puts(&r->body, "See Other\n");
}

/* Headers come in the fields http.c fills; without them (older http.c)
 * from the connection. */
static const char *
req_header(const struct http_req *q, const char *field, const char *name)
{
	if (field != NULL)
		return field;
	return q->conn != NULL ? http_header(q, name) : NULL;
}

#define REQ_AUTH(q) req_header(q, (q)->authorization, "Authorization")
#define REQ_CTYPE(q) req_header(q, (q)->content_type, "Content-Type")
#define REQ_COOKIE(q) req_header(q, (q)->cookie, "Cookie")

/* Query strings and form bodies: name=value pairs, '+' is a space. */
struct form {
	char *name[FORM_MAX_FIELDS];
	char *value[FORM_MAX_FIELDS];
	size_t n;
};

static int
hexval(char ch)
{
	if (ch >= '0' && ch <= '9')
		return ch - '0';
	if (ch >= 'a' && ch <= 'f')
		return ch - 'a' + 10;
	if (ch >= 'A' && ch <= 'F')
		return ch - 'A' + 10;
	return -1;
}

/* Decodes s[0..n); NULL when it holds a NUL byte (never a valid value). */
static char *
url_decode(const char *s, size_t n)
{
	char *out = xmalloc(n + 1), *p = out;

	for (size_t i = 0; i < n; i++) {
		int hi = i + 2 < n ? hexval(s[i + 1]) : -1;
		int lo = i + 2 < n ? hexval(s[i + 2]) : -1;

		if (s[i] == '+') {
			*p++ = ' ';
		} else if (s[i] == '%' && hi >= 0 && lo >= 0) {
			if (hi == 0 && lo == 0) {
				free(out);
				return NULL;
			}
			*p++ = (char)(hi * 16 + lo);
			i += 2;
		} else {
			*p++ = s[i];
		}
	}
	*p = '\0';
	return out;
}

static void
form_parse(struct form *f, const char *s, size_t len)
{
	size_t i = 0;

	memset(f, 0, sizeof(*f));
	while (s != NULL && i < len && f->n < FORM_MAX_FIELDS) {
		size_t start = i, eq = SIZE_MAX;
		char *k, *v;

		while (i < len && s[i] != '&' && s[i] != ';') {
			if (s[i] == '=' && eq == SIZE_MAX)
				eq = i;
			i++;
		}
		if (i > start) {
			if (eq == SIZE_MAX)
				eq = i;
			k = url_decode(s + start, eq - start);
			v = url_decode(s + eq + (eq < i ? 1 : 0),
				       i - eq - (eq < i ? 1 : 0));
			if (k != NULL && v != NULL) {
				f->name[f->n] = k;
				f->value[f->n] = v;
				f->n++;
			} else {
				free(k);
				free(v);
			}
		}
		i++;
	}
}

/* the first value of name, NULL when absent; "" counts as absent */
static const char *
form_get(const struct form *f, const char *name)
{
	for (size_t i = 0; i < f->n; i++)
		if (strcmp(f->name[i], name) == 0)
			return f->value[i][0] != '\0' ? f->value[i] : NULL;
	return NULL;
}

static void
form_free(struct form *f)
{
	for (size_t i = 0; i < f->n; i++) {
		free(f->name[i]);
		free(f->value[i]);
	}
	f->n = 0;
}

/* a query argument: from q->query (parsed into args), else the connection */
static const char *
req_arg(const struct http_req *q, const struct form *args, const char *name)
{
	const char *v;

	if (q->query != NULL || q->conn == NULL)
		return form_get(args, name);
	v = http_arg(q, name);
	return v != NULL && v[0] != '\0' ? v : NULL;
}

/* "application/json" with optional parameters, case-insensitive */
static bool
type_is(const char *ct, const char *want)
{
	size_t n = strlen(want);

	if (ct == NULL)
		return false;
	while (*ct == ' ' || *ct == '\t')
		ct++;
	if (strncasecmp(ct, want, n) != 0)
		return false;
	ct += n;
	return *ct == '\0' || *ct == ';' || *ct == ' ' || *ct == '\t';
}

/* the token of "Bearer TOKEN", or NULL (into out, >= size) */
static bool
bearer_token(const char *h, char *out, size_t size)
{
	size_t n;

	if (h == NULL)
		return false;
	while (*h == ' ')
		h++;
	if (strncasecmp(h, "Bearer", 6) != 0 || (h[6] != ' ' && h[6] != '\t'))
		return false;
	h += 6;
	while (*h == ' ' || *h == '\t')
		h++;
	n = strlen(h);
	while (n > 0 && (h[n - 1] == ' ' || h[n - 1] == '\t'))
		n--;
	if (n == 0 || n >= size)
		return false;
	memcpy(out, h, n);
	out[n] = '\0';
	return true;
}

static const char *
admin_token(const struct app *a)
{
	const char *t = a->conf->daemon.admin_token;

	return t != NULL && t[0] != '\0' ? t : NULL;
}

static bool
bearer_ok(const struct app *a, const struct http_req *q)
{
	const char *admin = admin_token(a);
	char tok[512];

	if (admin == NULL || !bearer_token(REQ_AUTH(q), tok, sizeof(tok)))
		return false;
	return ct_streq(tok, admin);
}

/* 0 when the request carries the admin token, else r is filled */
static int
api_auth(struct app *a, const struct http_req *q, struct http_resp *r)
{
	if (admin_token(a) == NULL) {
		resp_error(r, 403, "API disabled: no admin token configured");
		return -1;
	}
	if (!bearer_ok(a, q)) {
		resp_error(r, 401, "missing or wrong admin token");
		resp_hdr(r, "WWW-Authenticate", "Bearer realm=\"cutoffd\"");
		return -1;
	}
	return 0;
}

/* ------------------------------------------------------------ sessions */

/* HMAC-SHA256(key, msg) as 64 hex chars */
static void
hmac_hex(const char *key, const char *msg, char out[65])
{
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned int len = 0;

	HMAC(EVP_sha256(), key, (int)strlen(key), (const unsigned char *)msg,
	     strlen(msg), md, &len);
	for (unsigned int i = 0; i < len && i < 32; i++)
		snprintf(out + 2 * i, 3, "%02x", md[i]);
	out[64] = '\0';
}

/* "EXPIRY.MAC": expiry in clock seconds, so a changed admin token or the
 * passing of time ends every session without server-side state. */
static char *
session_make(const char *admin, tstamp exp)
{
	char msg[64], mac[65];

	snprintf(msg, sizeof(msg), "session|%" PRId64, exp);
	hmac_hex(admin, msg, mac);
	return xasprintf("%" PRId64 ".%s", exp, mac);
}

/* The value of the session cookie when valid, into out. */
static bool
session_get(const struct app *a, const struct http_req *q, tstamp now,
	    char *out, size_t size)
{
	const char *admin = admin_token(a), *p = REQ_COOKIE(q);
	char val[160], *dot, *end, *good;
	long long exp;
	bool ok;

	if (admin == NULL || p == NULL)
		return false;
	while (*p != '\0') {
		size_t n;

		while (*p == ' ' || *p == ';')
			p++;
		n = strcspn(p, ";");
		if (n > 8 && strncmp(p, "session=", 8) == 0) {
			if (n - 8 >= sizeof(val))
				return false;
			memcpy(val, p + 8, n - 8);
			val[n - 8] = '\0';
			break;
		}
		p += n;
	}
	if (*p == '\0')
		return false;
	dot = strchr(val, '.');
	if (dot == NULL)
		return false;
	errno = 0;
	exp = strtoll(val, &end, 10);
	if (end != dot || errno != 0 || exp <= now)
		return false;
	good = session_make(admin, (tstamp)exp);
	ok = ct_streq(val, good);
	free(good);
	if (!ok || strlen(val) >= size)
		return false;
	snprintf(out, size, "%s", val);
	return true;
}

static void
csrf_token(const char *admin, const char *session, char out[65])
{
	char *msg = xasprintf("csrf|%s", session);

	hmac_hex(admin, msg, out);
	free(msg);
}

/* May this request read the status?  See the comment at the top. */
static bool
read_allowed(struct app *a, const struct http_req *q, const struct form *args,
	     tstamp now)
{
	const char *cal = a->conf->daemon.calendar_token, *tok;
	char sess[160];

	if (cal == NULL || cal[0] == '\0')
		return true;
	tok = req_arg(q, args, "token");
	if (tok != NULL && ct_streq(tok, cal))
		return true;
	return bearer_ok(a, q) || session_get(a, q, now, sess, sizeof(sess));
}

/* ------------------------------------------------------------- the page */

static const char page_css[] =
	"body{font-family:system-ui,sans-serif;margin:1em auto;max-width:70em;"
	"padding:0 1em;color:#222;background:#fff}"
	"h1{font-size:1.5em;margin:.2em 0}h2{font-size:1.15em;margin:0;"
	"display:inline}"
	"table{border-collapse:collapse;margin:.5em 0;width:100%}"
	"th,td{border:1px solid #ccc;padding:.25em .5em;text-align:left;"
	"vertical-align:top}th{background:#f3f3f3}"
	"td.n{text-align:right}"
	".ok{background:#dff3df;color:#134d13}"
	".late{background:#fff0cc;color:#6b4800}"
	".miss{background:#fbdcdc;color:#7a1010;font-weight:bold}"
	".nd{background:#f1f1f1;color:#555}"
	".st{white-space:nowrap}"
	"section{border:1px solid #ddd;border-radius:4px;margin:1em 0;"
	"padding:.5em 1em}"
	"summary{cursor:pointer}"
	"form.i{display:inline;margin:0}"
	".bar{display:flex;flex-wrap:wrap;gap:1em;align-items:center;"
	"justify-content:space-between}"
	".muted{color:#666;font-size:.9em}"
	".err{color:#7a1010}body>form{margin:.6em 0}";

struct page {
	struct app *a;
	const struct status *s;
	const struct filter *f;
	bool logged;
	char csrf[65];
	struct buf *b;
};

/* percent-encodes all but RFC 3986 unreserved characters: the result is
 * safe in a query and in an HTML attribute */
static void
url_esc(struct buf *b, const char *s)
{
	for (; *s != '\0'; s++) {
		unsigned char ch = (unsigned char)*s;

		if ((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
		    (ch >= '0' && ch <= '9') || ch == '-' || ch == '.' ||
		    ch == '_' || ch == '~')
			buf_putc(b, (char)ch);
		else
			buf_printf(b, "%%%02X", ch);
	}
}

static void
put_opt(struct buf *b, const char *value, const char *label, bool sel)
{
	buf_puts(b, "<option value=\"");
	html_esc(b, value);
	buf_puts(b, sel ? "\" selected>" : "\">");
	html_esc(b, label);
	buf_puts(b, "</option>");
}

static void
put_anchor(struct buf *b, const char *occ_id)
{
	buf_puts(b, "o-");
	for (const char *p = occ_id; *p != '\0'; p++)
		buf_putc(b, *p == '/' ? '-' : *p);
}

static void
put_hidden(struct buf *b, const char *name, const char *value)
{
	if (value == NULL)
		return;
	buf_printf(b, "<input type=\"hidden\" name=\"%s\" value=\"", name);
	html_esc(b, value);
	buf_puts(b, "\">");
}

static void
page_unit_row(struct page *pg, const struct st_occ *so,
	      const struct st_unit *su)
{
	struct buf *b = pg->b;
	const struct conf *c = pg->a->conf;
	char t[20];

	buf_puts(b, "<tr><td>");
	html_esc(b, su->u->name ? su->u->name : su->u->id);
	buf_puts(b, " <span class=\"muted\">");
	html_esc(b, su->u->id);
	buf_puts(b, "</span></td>");
	switch (su->state) {
	case US_SUBMITTED:
		tz_format_vn(c->tz, su->at, t);
		buf_printf(b, "<td class=\"st %s\">%s</td><td>%s</td>",
			   su->late ? "late" : "ok",
			   su->late ? "&#9888; Nộp muộn" : "&#10003; Đúng hạn",
			   t);
		break;
	case US_MISSING: {
		int64_t late = pg->s->now - so->o.due_at;

		buf_puts(b, "<td class=\"st miss\">&#10007; Chưa nộp</td><td>");
		if (late >= DAY)
			buf_printf(b, "quá hạn %" PRId64 " ngày", late / DAY);
		else
			buf_printf(b, "quá hạn %" PRId64 " giờ",
				   late / 3600 > 0 ? late / 3600 : 1);
		buf_puts(b, "</td>");
		break;
	}
	case US_NOTDUE:
		buf_puts(b, "<td class=\"st nd\">&#8230; Chưa đến hạn</td>"
			 "<td></td>");
		break;
	}
	if (pg->logged) {
		buf_puts(b, "<td>");
		if (su->state != US_SUBMITTED) {
			buf_puts(b, "<form class=\"i\" method=\"post\" "
				 "action=\"/mark\">");
			put_hidden(b, "occurrence", so->o.id);
			put_hidden(b, "unit", su->u->id);
			put_hidden(b, "csrf", pg->csrf);
			if (pg->f->cycle != NULL)
				put_hidden(b, "cycle", pg->f->cycle->id);
			put_hidden(b, "group", pg->f->group);
			buf_puts(b, "<button type=\"submit\">Ghi nhận đã nộp"
				 "</button></form>");
		}
		buf_puts(b, "</td>");
	}
	buf_puts(b, "</tr>\n");
}

/* rows of one kind: missing, late, not due, on time */
enum rowkind { RK_MISS, RK_LATE, RK_NOTDUE, RK_OK };

static bool
row_is(const struct st_unit *su, enum rowkind k)
{
	switch (k) {
	case RK_MISS: return su->state == US_MISSING;
	case RK_LATE: return su->state == US_SUBMITTED && su->late;
	case RK_NOTDUE: return su->state == US_NOTDUE;
	case RK_OK: return su->state == US_SUBMITTED && !su->late;
	}
	return false;
}

static void
page_table_head(struct page *pg)
{
	buf_puts(pg->b, "<table><thead><tr><th>Đơn vị</th><th>Tình trạng</th>"
		 "<th>Thời điểm nhận</th>");
	if (pg->logged)
		buf_puts(pg->b, "<th></th>");
	buf_puts(pg->b, "</tr></thead><tbody>\n");
}

static void
page_rows(struct page *pg, const struct st_occ *so, enum rowkind k)
{
	size_t shown = 0, more = 0;

	for (size_t j = 0; j < so->nu; j++) {
		if (!row_is(&so->u[j], k))
			continue;
		if (shown < PAGE_ROWS_MAX) {
			page_unit_row(pg, so, &so->u[j]);
			shown++;
		} else {
			more++;
		}
	}
	/* 10,000 communes would make a page of megabytes nobody reads:
	 * the counts above stay exact, the filter shows the rest */
	if (more > 0)
		buf_printf(pg->b, "<tr><td colspan=\"%d\" class=\"muted\">"
			   "&#8230; và %zu đơn vị khác — chọn nhóm đơn vị "
			   "để xem hết</td></tr>\n", pg->logged ? 4 : 3, more);
}

static void
page_section(struct page *pg, const struct st_occ *so)
{
	struct buf *b = pg->b;
	char due[32], d1[16], d2[16];
	size_t nok = so->nsub - so->nlate;
	bool open = so->nmiss > 0 || so->nnotdue > 0;

	buf_puts(b, "<section id=\"");
	put_anchor(b, so->o.id);
	buf_printf(b, "\"><details%s><summary><h2>", open ? " open" : "");
	html_esc(b, so->o.cycle->title ? so->o.cycle->title : so->o.cycle->id);
	fmt_due_vn(&so->o, due, sizeof(due));
	buf_printf(b, "</h2> — hạn %s — đã nộp <b>%zu/%zu</b></summary>\n",
		   due, so->nsub, so->nu);
	buf_puts(b, "<p class=\"muted\">Mã kỳ: ");
	html_esc(b, so->o.id);
	if (so->o.has_period) {
		ymd_format_vn(so->o.period_from, d1);
		ymd_format_vn(so->o.period_to, d2);
		buf_printf(b, " · Kỳ số liệu: %s – %s", d1, d2);
	}
	buf_printf(b, "</p>\n<p><span class=\"st ok\">&#10003; Đúng hạn: %zu"
		   "</span> <span class=\"st late\">&#9888; Nộp muộn: %zu</span>"
		   " <span class=\"st miss\">&#10007; Chưa nộp: %zu</span>"
		   " <span class=\"st nd\">&#8230; Chưa đến hạn: %zu</span></p>\n",
		   nok, so->nlate, so->nmiss, so->nnotdue);

	/* What needs attention first; at hundreds of units the rest folds
	 * away so the page stays readable. */
	if (so->nu <= PAGE_COMPACT) {
		page_table_head(pg);
		page_rows(pg, so, RK_MISS);
		page_rows(pg, so, RK_LATE);
		page_rows(pg, so, RK_NOTDUE);
		page_rows(pg, so, RK_OK);
		buf_puts(b, "</tbody></table>\n");
	} else {
		if (so->nmiss + so->nlate > 0) {
			page_table_head(pg);
			page_rows(pg, so, RK_MISS);
			page_rows(pg, so, RK_LATE);
			buf_puts(b, "</tbody></table>\n");
		}
		if (so->nnotdue > 0) {
			buf_printf(b, "<details><summary>Chưa đến hạn (%zu)"
				   "</summary>", so->nnotdue);
			page_table_head(pg);
			page_rows(pg, so, RK_NOTDUE);
			buf_puts(b, "</tbody></table></details>\n");
		}
		if (nok > 0) {
			buf_printf(b, "<details><summary>Đúng hạn (%zu)"
				   "</summary>", nok);
			page_table_head(pg);
			page_rows(pg, so, RK_OK);
			buf_puts(b, "</tbody></table></details>\n");
		}
	}
	buf_puts(b, "</details></section>\n");
}

static void
page_filters(struct page *pg, const char *token)
{
	const struct conf *c = pg->a->conf;
	struct buf *b = pg->b;

	buf_puts(b, "<form method=\"get\" action=\"/\">"
		 "<label>Nhóm đơn vị <select name=\"group\">");
	put_opt(b, "", "Tất cả", pg->f->group == NULL);
	for (size_t i = 0; i < c->ngroups; i++)
		put_opt(b, c->groups[i], c->groups[i],
			pg->f->group != NULL &&
			strcmp(pg->f->group, c->groups[i]) == 0);
	buf_puts(b, "</select></label> <label>Loại báo cáo <select "
		 "name=\"cycle\">");
	put_opt(b, "", "Tất cả", pg->f->cycle == NULL);
	for (size_t i = 0; i < c->ncycles; i++)
		put_opt(b, c->cycles[i].id,
			c->cycles[i].title ? c->cycles[i].title
					   : c->cycles[i].id,
			pg->f->cycle == &c->cycles[i]);
	buf_puts(b, "</select></label> ");
	put_hidden(b, "token", token);
	buf_puts(b, "<button type=\"submit\">Lọc</button></form>\n");
}

static void
page_login(struct page *pg)
{
	struct buf *b = pg->b;

	if (admin_token(pg->a) == NULL)
		return;
	if (pg->logged) {
		buf_puts(b, "<form class=\"i\" method=\"post\" action=\"/logout\">"
			 "<span class=\"muted\">Đã đăng nhập quản trị</span> ");
		put_hidden(b, "csrf", pg->csrf);
		buf_puts(b, "<button type=\"submit\">Đăng xuất</button></form>");
		return;
	}
	buf_puts(b, "<form class=\"i\" method=\"post\" action=\"/login\">"
		 "<label>Mã quản trị <input type=\"password\" name=\"token\" "
		 "autocomplete=\"current-password\" required></label> "
		 "<button type=\"submit\">Đăng nhập</button></form>");
}

static void
page_head(struct buf *b, bool refresh)
{
	buf_puts(b, "<!DOCTYPE html>\n<html lang=\"vi\"><head>"
		 "<meta charset=\"utf-8\">"
		 "<meta name=\"viewport\" content=\"width=device-width,"
		 "initial-scale=1\">");
	/* the page is left open all day: keep it current without scripts */
	if (refresh)
		buf_puts(b, "<meta http-equiv=\"refresh\" content=\"120\">");
	buf_printf(b, "<title>Tình hình nộp báo cáo</title><style>%s</style>"
		   "</head><body>\n", page_css);
}

/* The k-th occurrence on the page: those already due, the latest first
 * (where units are missing now), then the upcoming ones, soonest first. */
static size_t
page_order(const struct status *s, size_t k)
{
	size_t npast = 0;

	while (npast < s->nocc && s->occ[npast].o.due_at <= s->now)
		npast++;
	return k < npast ? npast - 1 - k : k;
}

static void
page_render(struct page *pg, const char *token, const char *notice)
{
	const struct conf *c = pg->a->conf;
	const struct status *s = pg->s;
	struct buf *b = pg->b;
	char now[20];

	page_head(b, true);
	buf_puts(b, "<div class=\"bar\"><div><h1>Tình hình nộp báo cáo</h1>"
		 "<div class=\"muted\">");
	html_esc(b, c->secretariat.name);
	tz_format_vn(c->tz, s->now, now);
	buf_printf(b, " · Cập nhật lúc %s</div></div><div>", now);
	page_login(pg);
	buf_puts(b, "</div></div>\n");
	if (notice != NULL) {
		buf_puts(b, "<p class=\"err\">");
		html_esc(b, notice);
		buf_puts(b, "</p>\n");
	}
	page_filters(pg, token);

	if (s->nocc == 0) {
		buf_puts(b, "<p>Không có kỳ báo cáo nào trong khoảng thời gian "
			 "này.</p>\n");
	} else {
		/* overview, in the order of the sections below */
		buf_puts(b, "<table><thead><tr><th>Kỳ báo cáo</th><th>Hạn nộp"
			 "</th><th>Đã nộp</th><th>Đúng hạn</th><th>Nộp muộn"
			 "</th><th>Chưa nộp</th><th>Chưa đến hạn</th></tr>"
			 "</thead><tbody>\n");
		for (size_t k = 0; k < s->nocc; k++) {
			const struct st_occ *so = &s->occ[page_order(s, k)];
			char due[32];

			fmt_due_vn(&so->o, due, sizeof(due));
			buf_puts(b, "<tr><td><a href=\"#");
			put_anchor(b, so->o.id);
			buf_puts(b, "\">");
			html_esc(b, so->o.cycle->title ? so->o.cycle->title
						       : so->o.cycle->id);
			buf_printf(b, "</a></td><td>%s</td><td class=\"n\">"
				   "%zu/%zu</td><td class=\"n\">%zu</td>"
				   "<td class=\"n\">%zu</td><td class=\"n%s\">"
				   "%zu</td><td class=\"n\">%zu</td></tr>\n",
				   due, so->nsub, so->nu, so->nsub - so->nlate,
				   so->nlate, so->nmiss > 0 ? " miss" : "",
				   so->nmiss, so->nnotdue);
		}
		buf_puts(b, "</tbody></table>\n");
		for (size_t k = 0; k < s->nocc; k++)
			page_section(pg, &s->occ[page_order(s, k)]);
	}

	if (s->nfail > 0) {
		buf_puts(b, "<section><h2>Thông báo gửi thất bại</h2><table>"
			 "<thead><tr><th>Thời điểm</th><th>Tình trạng</th>"
			 "<th>Kỳ báo cáo</th>"
			 "<th>Đơn vị</th><th>Bước</th><th>Kênh</th><th>Lỗi</th>"
			 "</tr></thead><tbody>\n");
		for (size_t i = 0; i < s->nfail; i++) {
			const struct st_fail *x = &s->fail[i];
			char t[20];

			tz_format_vn(c->tz, x->at, t);
			buf_printf(b, "<tr><td>%s</td><td>%s</td><td>", t,
				   x->retrying ? "Đang thử lại" : "Thất bại");
			html_esc(b, x->occ);
			buf_puts(b, "</td><td>");
			html_esc(b, x->unit);
			buf_puts(b, "</td><td>");
			html_esc(b, x->step);
			buf_puts(b, " (");
			html_esc(b, x->aud);
			buf_puts(b, ")</td><td>");
			html_esc(b, x->ch);
			buf_puts(b, "</td><td>");
			html_esc(b, x->err);
			buf_puts(b, "</td></tr>\n");
		}
		buf_puts(b, "</tbody></table></section>\n");
	}
	/* a reader let in by ?token= needs it on the JSON too */
	buf_puts(b, "<p class=\"muted\">Dữ liệu dạng JSON: <a href=\""
		 "/status.json");
	if (token != NULL) {
		buf_puts(b, "?token=");
		url_esc(b, token);
	}
	buf_puts(b, "\">/status.json</a></p>\n</body></html>\n");
}

static void
page_locked(struct app *a, struct http_resp *r, bool login_failed)
{
	struct buf *b = &r->body;

	r->status = 401;
	r->content_type = HTML_TYPE;
	buf_reset(b);
	page_head(b, false);
	buf_puts(b, "<h1>Tình hình nộp báo cáo</h1>");
	/* a failed login lands here when the page needs a token */
	if (login_failed)
		buf_puts(b, "<p class=\"err\">Mã quản trị không đúng.</p>");
	buf_puts(b, "<p>Trang này cần mã truy "
		 "cập.</p><form method=\"get\" action=\"/\"><label>Mã truy cập "
		 "<input type=\"password\" name=\"token\" required></label> "
		 "<button type=\"submit\">Xem</button></form>\n");
	if (admin_token(a) != NULL)
		buf_puts(b, "<form method=\"post\" action=\"/login\"><label>Mã "
			 "quản trị <input type=\"password\" name=\"token\" "
			 "required></label> <button type=\"submit\">Đăng nhập"
			 "</button></form>\n");
	buf_puts(b, "</body></html>\n");
}

/* ?cycle= and ?group= into f; an error message or NULL */
static const char *
filter_from_args(const struct conf *c, const struct http_req *q,
		 const struct form *args, struct filter *f)
{
	const char *cy = req_arg(q, args, "cycle");
	const char *g = req_arg(q, args, "group");

	memset(f, 0, sizeof(*f));
	if (cy != NULL) {
		f->cycle = conf_cycle(c, cy);
		if (f->cycle == NULL)
			return "unknown cycle";
	}
	if (g != NULL) {
		size_t i;

		for (i = 0; i < c->ngroups; i++)
			if (strcmp(c->groups[i], g) == 0)
				break;
		if (i == c->ngroups)
			return "unknown group";
		f->group = c->groups[i];
	}
	return NULL;
}

static void
route_page(struct app *a, const struct http_req *q, struct http_resp *r,
	   bool json)
{
	struct form args;
	struct filter f;
	struct status *s = NULL;
	const char *err;
	tstamp now = clock_now(&a->clk);

	form_parse(&args, q->query, q->query ? strlen(q->query) : 0);
	if (!read_allowed(a, q, &args, now)) {
		if (json) {
			resp_error(r, 401, "token required");
		} else {
			page_locked(a, r, req_arg(q, &args, "login") != NULL);
		}
		goto out;
	}
	err = filter_from_args(a->conf, q, &args, &f);
	if (err != NULL) {
		if (json)
			resp_error(r, 400, err);
		else
			resp_html_msg(r, 400, strcmp(err, "unknown cycle") == 0
				      ? "Không có loại báo cáo này."
				      : "Không có nhóm đơn vị này.");
		goto out;
	}
	if (status_build(a->conf, a->db, now, &f, &s) != 0) {
		if (json)
			resp_error(r, 500, "state store unavailable");
		else
			resp_html_msg(r, 500, "Không đọc được dữ liệu.");
		goto out;
	}
	if (json) {
		r->status = 200;
		r->content_type = JSON_TYPE;
		buf_reset(&r->body);
		status_json_write(a->conf, s, &r->body);
	} else {
		struct page pg = { .a = a, .s = s, .f = &f, .b = &r->body };
		char sess[160];
		const char *cal = a->conf->daemon.calendar_token;
		const char *tok = cal != NULL && cal[0] != '\0'
				  ? req_arg(q, &args, "token") : NULL;

		pg.logged = session_get(a, q, now, sess, sizeof(sess));
		if (pg.logged)
			csrf_token(admin_token(a), sess, pg.csrf);
		r->status = 200;
		r->content_type = HTML_TYPE;
		buf_reset(&r->body);
		page_render(&pg, tok,
			    req_arg(q, &args, "login") != NULL
			    ? "Mã quản trị không đúng." : NULL);
		}
out:
	status_free(s);
	form_free(&args);
}

/* the form fields of a POST from the page, or an answer in r */
static int
page_form(const struct http_req *q, struct http_resp *r, struct form *out)
{
	if (!type_is(REQ_CTYPE(q), "application/x-www-form-urlencoded")) {
		resp_html_msg(r, 415, "Dữ liệu gửi lên không đúng dạng.");
		return -1;
	}
	form_parse(out, q->body, q->body ? q->body_len : 0);
	return 0;
}

/* a checked session and CSRF field, else r is filled */
static int
page_auth(struct app *a, const struct http_req *q, const struct form *fm,
	  tstamp now, struct http_resp *r)
{
	char sess[160], want[65];
	const char *csrf = form_get(fm, "csrf");

	if (!session_get(a, q, now, sess, sizeof(sess))) {
		resp_html_msg(r, 403, "Cần đăng nhập quản trị.");
		return -1;
	}
	csrf_token(admin_token(a), sess, want);
	if (csrf == NULL || !ct_streq(csrf, want)) {
		resp_html_msg(r, 403, "Phiên làm việc không hợp lệ, hãy tải lại "
			      "trang.");
		return -1;
	}
	return 0;
}

static void
route_login(struct app *a, const struct http_req *q, struct http_resp *r)
{
	const char *admin = admin_token(a), *tok;
	struct form fm;
	tstamp now = clock_now(&a->clk);
	char *sess;
	bool secure;

	if (admin == NULL) {
		resp_html_msg(r, 403, "Chưa cấu hình mã quản trị.");
		return;
	}
	if (page_form(q, r, &fm) < 0)
		return;
	tok = form_get(&fm, "token");
	if (tok == NULL || !ct_streq(tok, admin)) {
		log_warn("status page: failed admin login");
		resp_redirect(r, "/?login=failed");
		form_free(&fm);
		return;
	}
	sess = session_make(admin, now + SESSION_TTL);
	secure = strncmp(a->conf->daemon.public_url ?
			 a->conf->daemon.public_url : "", "https:", 6) == 0;
	free(r->set_cookie);
	r->set_cookie = xasprintf("session=%s; Path=/; Max-Age=%d; HttpOnly; "
				  "SameSite=Strict%s", sess, SESSION_TTL,
				  secure ? "; Secure" : "");
	free(sess);
	resp_redirect(r, "/");
	form_free(&fm);
}

static void
route_logout(struct app *a, const struct http_req *q, struct http_resp *r)
{
	struct form fm;

	if (page_form(q, r, &fm) < 0)
		return;
	if (page_auth(a, q, &fm, clock_now(&a->clk), r) == 0) {
		free(r->set_cookie);
		r->set_cookie = xstrdup("session=; Path=/; Max-Age=0; HttpOnly; "
					"SameSite=Strict");
		resp_redirect(r, "/");
	}
	form_free(&fm);
}

static void
notify_changed(struct app *a)
{
	if (app_changed != NULL)
		app_changed(a);
}

static void
route_mark(struct app *a, const struct http_req *q, struct http_resp *r)
{
	const struct conf *c = a->conf;
	struct form fm;
	struct occ o;
	const struct unit *u;
	const char *occ, *unit, *cy, *g;
	tstamp now = clock_now(&a->clk);
	struct buf loc;
	int rc;

	if (page_form(q, r, &fm) < 0)
		return;
	if (page_auth(a, q, &fm, now, r) < 0)
		goto out;
	occ = form_get(&fm, "occurrence");
	unit = form_get(&fm, "unit");
	u = unit != NULL ? conf_unit(c, unit) : NULL;
	if (occ == NULL || sched_occurrence(c, occ, &o) < 0 || u == NULL) {
		resp_html_msg(r, 400, "Không có kỳ báo cáo hoặc đơn vị này.");
		goto out;
	}
	/* as the API: a unit that does not owe this report has none to mark */
	if (!conf_cycle_has(o.cycle, (size_t)(u - c->units))) {
		resp_html_msg(r, 400, "Đơn vị này không nộp báo cáo kỳ này.");
		goto out;
	}
	rc = db_sub_record(a->db, o.id, u->id, now, "page", NULL, now);
	if (rc < 0) {
		resp_html_msg(r, 500, "Không ghi được dữ liệu.");
		goto out;
	}
	if (rc == 0) {
		log_info("received %s %s (status page)", o.id, u->id);
		notify_changed(a);
	}
	/* back to the same view; the ids are checked, so safe in a URL */
	buf_init(&loc);
	buf_puts(&loc, "/");
	cy = form_get(&fm, "cycle");
	g = form_get(&fm, "group");
	if (cy != NULL && conf_cycle(c, cy) != NULL)
		buf_printf(&loc, "?cycle=%s", cy);
	if (g != NULL && valid_id(g))
		buf_printf(&loc, "%sgroup=%s", loc.len > 1 ? "&" : "?", g);
	resp_redirect(r, buf_str(&loc));
	buf_free(&loc);
out:
	form_free(&fm);
}

/* ----------------------------------------------------- submissions API */

static json_t *
sub_json(const struct conf *c, const struct submission *s)
{
	struct occ o;
	json_t *j = json_object();
	char t[20];

	json_object_set_new(j, "occurrence", json_string(s->occurrence));
	json_object_set_new(j, "unit", json_string(s->unit));
	tz_format_iso(c->tz, s->at, t);
	json_object_set_new(j, "at", json_string(t));
	if (sched_occurrence(c, s->occurrence, &o) == 0)
		json_object_set_new(j, "late", json_boolean(s->at > o.due_at));
	tz_format_iso(c->tz, s->recorded, t);
	json_object_set_new(j, "recorded", json_string(t));
	json_object_set_new(j, "source", json_string(s->source));
	if (s->note != NULL && utf8_valid(s->note, strlen(s->note)))
		json_object_set_new(j, "note", json_string(s->note));
	return j;
}

/* ISO 8601 with a zone designator: "2024-03-12T09:30[:SS](Z|+07:00|+0700)".
 * Returns 1 when s has no designator (then it is local time). */
static int
parse_iso_offset(const char *s, tstamp *out)
{
	size_t n = strlen(s), tlen;
	int y, mo, d, hh, mi, ss = 0, sign, oh, om;
	const char *z;

	/* anything not shaped like this is tz_parse_local's to judge */
	if (n < 16 || (s[10] != 'T' && s[10] != ' '))
		return 1;
	tlen = n >= 19 && s[16] == ':' ? 19 : 16;
	z = s + tlen;
	if (*z == '\0')
		return 1;
	for (size_t i = 0; i < tlen; i++) {
		bool sep = i == 4 || i == 7 || i == 10 || i == 13 || i == 16;

		if (!sep && (s[i] < '0' || s[i] > '9'))
			return -1;
	}
	if (s[4] != '-' || s[7] != '-' || s[13] != ':')
		return -1;
	y = atoi(s);
	mo = (s[5] - '0') * 10 + (s[6] - '0');
	d = (s[8] - '0') * 10 + (s[9] - '0');
	hh = (s[11] - '0') * 10 + (s[12] - '0');
	mi = (s[14] - '0') * 10 + (s[15] - '0');
	if (tlen == 19)
		ss = (s[17] - '0') * 10 + (s[18] - '0');
	if (!ymd_valid((struct ymd){ y, mo, d }) || hh > 23 || mi > 59 ||
	    ss > 59)
		return -1;
	if (strcmp(z, "Z") == 0) {
		sign = 1;
		oh = om = 0;
	} else if ((z[0] == '+' || z[0] == '-') && isdigit((unsigned char)z[1])
		   && isdigit((unsigned char)z[2])) {
		const char *m = z + 3;

		sign = z[0] == '+' ? 1 : -1;
		oh = (z[1] - '0') * 10 + (z[2] - '0');
		if (*m == ':')
			m++;
		if (!isdigit((unsigned char)m[0]) ||
		    !isdigit((unsigned char)m[1]) || m[2] != '\0')
			return -1;
		om = (m[0] - '0') * 10 + (m[1] - '0');
		if (oh > 23 || om > 59)
			return -1;
	} else {
		return -1;
	}
	*out = days_from_civil(y, mo, d) * DAY + hh * 3600 + mi * 60 + ss -
	       sign * (oh * 3600 + om * 60);
	return 0;
}


static void
api_post(struct app *a, const struct http_req *q, struct http_resp *r)
{
	const struct conf *c = a->conf;
	json_t *j = NULL, *v;
	json_error_t jerr;
	const char *key, *unit = NULL, *occ = NULL, *at_s = NULL, *note = NULL;
	size_t note_len = 0;
	const struct unit *u;
	struct occ o;
	struct submission sub;
	tstamp now = clock_now(&a->clk), at = now;
	int rc;

	if (!type_is(REQ_CTYPE(q), "application/json")) {
		resp_error(r, 415, "Content-Type must be application/json");
		return;
	}
	j = json_loadb(q->body ? q->body : "", q->body ? q->body_len : 0,
		       JSON_REJECT_DUPLICATES, &jerr);
	if (j == NULL) {
		char msg[200];

		snprintf(msg, sizeof(msg), "invalid JSON: %s (line %d)",
			 jerr.text, jerr.line);
		/* jansson's text may quote the input: keep it valid UTF-8 */
		resp_error(r, 400, utf8_valid(msg, strlen(msg)) ? msg
			   : "invalid JSON");
		return;
	}
	if (!json_is_object(j)) {
		resp_error(r, 400, "the body must be a JSON object");
		goto out;
	}
	json_object_foreach(j, key, v) {
		const char **slot;

		if (strcmp(key, "unit") == 0)
			slot = &unit;
		else if (strcmp(key, "occurrence") == 0)
			slot = &occ;
		else if (strcmp(key, "at") == 0)
			slot = &at_s;
		else if (strcmp(key, "note") == 0)
			slot = &note;
		else {
			resp_error(r, 400, "unknown key (allowed: unit, "
				   "occurrence, at, note)");
			goto out;
		}
		if (!json_is_string(v)) {
			resp_error(r, 400, "every value must be a string");
			goto out;
		}
		*slot = json_string_value(v);
		if (slot == &note)
			note_len = json_string_length(v);
	}
	if (unit == NULL || occ == NULL) {
		resp_error(r, 400, "unit and occurrence are required");
		goto out;
	}
	if (strlen(occ) >= OCC_ID_MAX || sched_occurrence(c, occ, &o) < 0) {
		resp_error(r, 400, "unknown occurrence");
		goto out;
	}
	u = conf_unit(c, unit);
	if (u == NULL) {
		resp_error(r, 400, "unknown unit");
		goto out;
	}
	if (!conf_cycle_has(o.cycle, (size_t)(u - c->units))) {
		resp_error(r, 400, "the unit does not report in this cycle");
		goto out;
	}
	if (at_s != NULL) {
		rc = parse_iso_offset(at_s, &at);
		if (rc == 1)
			rc = tz_parse_local(c->tz, at_s, &at);
		if (rc != 0) {
			resp_error(r, 400, "at: expected ISO 8601, e.g. "
				   "2024-03-12T09:30 (local) or with Z/+07:00");
			goto out;
		}
		if (at > now + FUTURE_SLACK) {
			resp_error(r, 400, "at is in the future");
			goto out;
		}
	}
	if (note != NULL) {
		const char *p = note_problem(note, note_len);

		if (p != NULL) {
			char *msg = xasprintf("note %s", p);

			resp_error(r, 400, msg);
			free(msg);
			goto out;
		}
		if (note_len == 0)
			note = NULL;
	}

	rc = db_sub_record(a->db, o.id, u->id, at, "api", note, now);
	if (rc < 0) {
		resp_error(r, 500, "state store unavailable");
		goto out;
	}
	if (db_sub_get(a->db, o.id, u->id, &sub) != 0) {
		resp_error(r, 500, "state store unavailable");
		goto out;
	}
	if (rc == 1) {
		resp_json(r, 409, json_pack("{s:s,s:o}", "error",
					    "already recorded", "record",
					    sub_json(c, &sub)));
	} else {
		log_info("received %s %s (api)", o.id, u->id);
		resp_json(r, 201, sub_json(c, &sub));
		free(r->location);
		r->location = xasprintf("/api/submissions/%s/%s", o.id, u->id);
		notify_changed(a);
	}
	submission_clear(&sub);
out:
	json_decref(j);
}

struct list_ctx {
	const struct conf *c;
	const char *unit;
	json_t *arr;
};

static int
list_one(void *ctx, const struct submission *s)
{
	struct list_ctx *l = ctx;

	if (l->unit == NULL || strcmp(l->unit, s->unit) == 0)
		json_array_append_new(l->arr, sub_json(l->c, s));
	return 0;
}

static void
api_list(struct app *a, const struct http_req *q, struct http_resp *r)
{
	struct form args;
	struct list_ctx l = { .c = a->conf };
	const char *occ;
	struct occ o;

	form_parse(&args, q->query, q->query ? strlen(q->query) : 0);
	occ = req_arg(q, &args, "occurrence");
	l.unit = req_arg(q, &args, "unit");
	l.arr = json_array();
	/* a moved occurrence's old id lists the new one's records */
	if (occ != NULL && sched_occurrence(a->conf, occ, &o) == 0)
		occ = o.id;
	if (db_sub_foreach(a->db, occ, list_one, &l) < 0) {
		json_decref(l.arr);
		resp_error(r, 500, "state store unavailable");
	} else {
		resp_json(r, 200, json_pack("{s:o}", "submissions", l.arr));
	}
	form_free(&args);
}

/* /api/submissions/CYCLE/YYYY-MM-DD/UNIT: the occurrence id has a '/' */
static void
api_one(struct app *a, const struct http_req *q, struct http_resp *r,
	const char *rest)
{
	const struct conf *c = a->conf;
	const char *slash = strrchr(rest, '/');
	char occ[OCC_ID_MAX];
	const struct unit *u;
	struct occ o;
	struct submission sub;
	int rc;

	if (slash == NULL || (size_t)(slash - rest) >= sizeof(occ)) {
		resp_error(r, 404, "no such submission");
		return;
	}
	memcpy(occ, rest, (size_t)(slash - rest));
	occ[slash - rest] = '\0';
	u = conf_unit(c, slash + 1);
	if (u == NULL || sched_occurrence(c, occ, &o) < 0) {
		resp_error(r, 404, "unknown occurrence or unit");
		return;
	}
	if (strcmp(q->method, "DELETE") == 0) {
		rc = db_sub_undo(a->db, o.id, u->id, "api",
				 clock_now(&a->clk));
		if (rc < 0) {
			resp_error(r, 500, "state store unavailable");
		} else if (rc == 1) {
			resp_error(r, 404, "nothing recorded");
		} else {
			log_info("undo %s %s (api)", o.id, u->id);
			resp_json(r, 200, json_pack("{s:b,s:s,s:s}", "deleted",
						    1, "occurrence", o.id,
						    "unit", u->id));
			notify_changed(a);
		}
		return;
	}
	rc = db_sub_get(a->db, o.id, u->id, &sub);
	if (rc < 0) {
		resp_error(r, 500, "state store unavailable");
	} else if (rc == 1) {
		resp_error(r, 404, "nothing recorded");
	} else {
		resp_json(r, 200, sub_json(c, &sub));
		submission_clear(&sub);
	}
}

static bool
method_is(const struct http_req *q, const char *m)
{
	return q->method != NULL && strcmp(q->method, m) == 0;
}

static bool
is_get(const struct http_req *q)
{
	return method_is(q, "GET") || method_is(q, "HEAD");
}

static void
not_allowed(struct http_resp *r, const char *allow, bool json)
{
	if (json)
		resp_error(r, 405, "method not allowed");
	else
		resp_html_msg(r, 405, "Phương thức không được hỗ trợ.");
	resp_hdr(r, "Allow", allow);
}

int
status_route(struct app *a, const struct http_req *q, struct http_resp *r)
{
	const char *p = q->path;
	static const char sub_prefix[] = "/api/submissions";

	if (p == NULL)
		return 1;
	if (strcmp(p, "/") == 0 || strcmp(p, "/status.json") == 0) {
		bool json = p[1] != '\0';

		if (is_get(q))
			route_page(a, q, r, json);
		else
			not_allowed(r, "GET, HEAD", json);
		return 0;
	}
	if (strcmp(p, "/login") == 0 || strcmp(p, "/logout") == 0 ||
	    strcmp(p, "/mark") == 0) {
		if (!method_is(q, "POST"))
			not_allowed(r, "POST", false);
		else if (strcmp(p, "/login") == 0)
			route_login(a, q, r);
		else if (strcmp(p, "/logout") == 0)
			route_logout(a, q, r);
		else
			route_mark(a, q, r);
		return 0;
	}
	if (strncmp(p, "/api/", 5) != 0 && strcmp(p, "/api") != 0)
		return 1;
	if (strncmp(p, sub_prefix, sizeof(sub_prefix) - 1) != 0 ||
	    (p[sizeof(sub_prefix) - 1] != '\0' &&
	     p[sizeof(sub_prefix) - 1] != '/')) {
		resp_error(r, 404, "no such API");
		return 0;
	}
	if (api_auth(a, q, r) < 0)
		return 0;
	p += sizeof(sub_prefix) - 1;
	if (*p == '\0' || strcmp(p, "/") == 0) {
		if (method_is(q, "POST"))
			api_post(a, q, r);
		else if (is_get(q))
			api_list(a, q, r);
		else
			not_allowed(r, "GET, HEAD, POST", true);
		return 0;
	}
	if (method_is(q, "DELETE") || is_get(q))
		api_one(a, q, r, p + 1);
	else
		not_allowed(r, "GET, HEAD, DELETE", true);
	return 0;
}
