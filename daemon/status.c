/*
 * status.c - who submitted what: the model behind `cutoffctl status`,
 * /status.json and the status page, and its views as bytes (the text of
 * `cutoffctl status`, the JSON document).  No HTTP here: page.c and api.c
 * serve what this builds.
 *
 * Which occurrences are shown by default: those due within
 * [now - history, now + 45 days], plus each cycle's next one even when
 * it is further away (a quarterly cycle would otherwise vanish for weeks).
 * The whole [now - history, now + horizon) window is never shown: 400 days
 * of future "not due" rows say nothing.
 */
#include "cutoffd.h"

#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <sqlite3.h>

#define DAY 86400
#define SOON (45 * DAY)             /* upcoming occurrences shown */
#define DEFAULT_HISTORY (180 * DAY) /* when the config says 0 */
#define DEFAULT_HORIZON (400 * DAY)
#define FAILED_MAX 50               /* failed notices listed */
#define FAILED_SCAN 1000            /* rows read before filtering */
#define REFUSED_MAX 50              /* refused addresses listed */

static const char *const ustate_name[] = { "submitted", "missing", "not-due" };

const char *
status_state_name(enum ustate s)
{
	return (unsigned)s < 3 ? ustate_name[s] : "?";
}

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


/* ?cycle= and ?group= into f */
const char *
status_filter_set(const struct conf *c, const char *cy, const char *g,
		  struct status_filter *f)
{
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

/* The occurrences to show, see the comment at the top. */
static int
pick_occs(const struct conf *c, tstamp now, const struct status_filter *f,
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

void
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
	for (size_t i = 0; i < s->nref; i++) {
		struct st_refused *x = &s->ref[i];

		free(x->occ);
		free(x->unit);
		free(x->step);
		free(x->aud);
		free(x->addr);
		free(x->reply);
	}
	free(s->ref);
	free(s);
}

static char *
col_text(sqlite3_stmt *st, int i)
{
	const unsigned char *t = sqlite3_column_text(st, i);

	return xstrdup(t != NULL ? (const char *)t : "");
}

static bool
fail_matches(const struct conf *c, const struct status_filter *f,
	     const char *occ, const char *unit)
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
load_failed(const struct conf *c, struct db *db, const struct status_filter *f,
	    struct status *s)
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

struct ref_ctx {
	const struct conf *c;
	const struct status_filter *f;
	struct status *s;
};

static int
collect_refused(void *ctx, const struct outbox_refusal *r)
{
	struct ref_ctx *rc = ctx;
	struct st_refused *x;

	if (!fail_matches(rc->c, rc->f, r->occurrence, r->unit))
		return 0;
	if (rc->s->nref == REFUSED_MAX)
		return 1;
	if (rc->s->ref == NULL)
		rc->s->ref = xcalloc(REFUSED_MAX, sizeof(*rc->s->ref));
	x = &rc->s->ref[rc->s->nref++];
	x->occ = xstrdup(r->occurrence);
	x->unit = xstrdup(r->unit);
	x->step = xstrdup(r->step);
	x->aud = xstrdup(r->audience);
	x->addr = xstrdup(r->address);
	x->reply = xstrdup(r->reply);
	x->at = r->at;
	return 0;
}

int
status_build(const struct conf *c, struct db *db, tstamp now,
	     const struct status_filter *f, struct status **out)
{
	struct status *s;
	struct subset set = { 0 };
	struct occ *occs = NULL;
	size_t nocc = 0;
	int rc;

	rc = pick_occs(c, now, f, &occs, &nocc);
	if (rc != 0)
		return rc;
	if (db_sub_foreach(db, f->occ, collect_sub, &set) < 0) {
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
	{
		struct ref_ctx rx = { c, f, s };

		if (outbox_refused_foreach(db, f->occ, collect_refused, &rx) < 0) {
			status_free(s);
			return -1;
		}
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
void
status_fmt_due(const struct occ *o, char *out, size_t size)
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
	struct status_filter f = { .occ = occ };
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

		status_fmt_due(&so->o, due, sizeof(due));
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
	for (size_t i = 0; i < s->nref; i++) {
		const struct st_refused *x = &s->ref[i];

		/* an address the server refused; the others got the mail */
		buf_puts(&b, "refused\t");
		buf_put_escaped(&b, x->occ, 200);
		buf_putc(&b, '\t');
		buf_put_escaped(&b, x->unit, 200);
		buf_putc(&b, '\t');
		buf_put_escaped(&b, x->step, 100);
		buf_putc(&b, '\t');
		buf_put_escaped(&b, x->addr, 200);
		buf_putc(&b, '\t');
		buf_put_escaped(&b, x->reply, 300);
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
void
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
	buf_puts(b, ",\"refused\":");
	fails = json_array();
	for (size_t i = 0; i < s->nref; i++) {
		const struct st_refused *x = &s->ref[i];
		json_t *jf = json_object();

		json_object_set_new(jf, "occurrence", json_string(x->occ));
		json_object_set_new(jf, "unit", json_string(x->unit));
		json_object_set_new(jf, "step", json_string(x->step));
		json_object_set_new(jf, "audience", json_string(x->aud));
		json_object_set_new(jf, "address",
				    utf8_valid(x->addr, strlen(x->addr)) ?
				    json_string(x->addr) :
				    json_string("(not UTF-8)"));
		json_object_set_new(jf, "reply",
				    utf8_valid(x->reply, strlen(x->reply)) ?
				    json_string(x->reply) :
				    json_string("(not UTF-8)"));
		tz_format_iso(c->tz, x->at, t);
		json_object_set_new(jf, "at", json_string(t));
		json_array_append_new(fails, jf);
	}
	json_put(b, fails);
	buf_puts(b, "}\n");
}
