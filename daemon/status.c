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

#define DAY 86400
#define SOON (45 * DAY)             /* upcoming occurrences shown */
#define DEFAULT_HISTORY (180 * DAY) /* when the config says 0 */
#define DEFAULT_HORIZON (400 * DAY)
#define FAILED_MAX 50               /* failed notices listed */
#define FAILED_SCAN 1000            /* rows read before filtering */
/* A view is rebuilt at least this often (virtual seconds), for what the
 * time of day changes on it ("overdue 3 hours", "updated at"). */
#define VIEW_MAX_AGE 60
#define VIEW_RETRY 5                /* after a failed rebuild */
#define VIEWS_MAX 64                /* cached filter combinations */
#define VIEWS_MAX_BYTES (64u << 20) /* their documents and models */
#define MIN(a, b) ((a) < (b) ? (a) : (b))
#define REFUSED_MAX 50              /* refused addresses listed */

static const char *const ustate_name[] = { "submitted", "missing", "not-due",
					   "nil" };

const char *
status_state_name(enum ustate s)
{
	return (unsigned)s < sizeof(ustate_name) / sizeof(ustate_name[0])
		? ustate_name[s] : "?";
}

/* ------------------------------------------------------------ the model */

struct subrec {
	char occ[OCC_ID_MAX];
	char unit[72];
	tstamp at;
	bool nil;
	char source[16];
	char *note;              /* moved into the model when matched */
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
	r->nil = s->nil;
	snprintf(r->source, sizeof(r->source), "%s", s->source);
	r->note = xstrdup(s->note);
	return 0;
}

static void
subset_free(struct subset *set)
{
	for (size_t i = 0; i < set->n; i++)
		free(set->v[i].note);
	free(set->v);
}

static int
collect_prop(void *ctx, const char *occ, const char *unit,
	     const char *source, tstamp at)
{
	struct submission sub = { .at = at };

	snprintf(sub.occurrence, sizeof(sub.occurrence), "%s", occ);
	snprintf(sub.unit, sizeof(sub.unit), "%s", unit);
	snprintf(sub.source, sizeof(sub.source), "%s", source);
	return collect_sub(ctx, &sub);
}

static struct subrec *
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

/* The occurrences to show, see the comment at the top.  *change: the
 * earliest instant after now at which time alone changes what is shown
 * (an occurrence falls due, enters the upcoming window or leaves the
 * history). */
static int
pick_occs(const struct conf *c, tstamp now, const struct status_filter *f,
	  struct occ **out, size_t *n, tstamp *change)
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
		if (keep) {
			v[k++] = *o;
			if (o->due_at > now)
				*change = MIN(*change, o->due_at);
			*change = MIN(*change, o->due_at + hist);
		} else if (o->due_at > now + SOON) {
			*change = MIN(*change, o->due_at - SOON);
		}
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
	for (size_t i = 0; i < s->nocc; i++) {
		for (size_t j = 0; j < s->occ[i].nu; j++)
			free(s->occ[i].u[j].note);
		free(s->occ[i].u);
	}
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
	for (size_t i = 0; i < s->nbounce; i++) {
		struct st_bounce *x = &s->bounce[i];

		free(x->occ);
		free(x->unit);
		free(x->step);
		free(x->addr);
		free(x->status);
		free(x->diag);
	}
	free(s->bounce);
	free(s);
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

struct fail_ctx {
	const struct conf *c;
	const struct status_filter *f;
	struct status *s;
};

static int
collect_fail(void *ctx, const struct outbox_trouble *t)
{
	struct fail_ctx *fc = ctx;
	struct st_fail *x;

	if (fc->s->nfail == FAILED_MAX)
		return 1;
	if (!fail_matches(fc->c, fc->f, t->occurrence, t->unit))
		return 0;
	x = &fc->s->fail[fc->s->nfail++];
	x->occ = xstrdup(t->occurrence);
	x->unit = xstrdup(t->unit);
	x->step = xstrdup(t->step);
	x->aud = xstrdup(t->audience);
	x->ch = xstrdup(t->channel);
	x->err = xstrdup(t->error);
	x->at = t->at;
	x->retrying = t->retrying;
	return 0;
}

/* Notices that failed for good, and those waiting to be retried after a
 * temporary failure, newest first: the secretariat must see them, since
 * nobody else will. */
static int
load_failed(const struct conf *c, struct db *db,
	    const struct status_filter *f, struct status *s)
{
	struct fail_ctx fc = { c, f, s };

	s->fail = xcalloc(FAILED_MAX, sizeof(*s->fail));
	if (outbox_troubles(db, FAILED_SCAN, collect_fail, &fc) < 0) {
		log_err("status: cannot read the failed notices");
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

struct bounce_ctx {
	const struct conf *c;
	const struct status_filter *f;
	struct status *s;
	size_t cap;
};

static int
collect_bounce(void *ctx, const struct db_bounce *b)
{
	struct bounce_ctx *bc = ctx;
	struct st_bounce *x;

	if (bc->s->nbounce >= FAILED_MAX)
		return 1;
	if (!fail_matches(bc->c, bc->f, b->occurrence, b->unit))
		return 0;
	if (bc->s->nbounce == bc->cap) {
		bc->cap = bc->cap ? bc->cap * 2 : 8;
		bc->s->bounce = xrealloc(bc->s->bounce,
					 bc->cap * sizeof(*bc->s->bounce));
	}
	x = &bc->s->bounce[bc->s->nbounce++];
	x->occ = xstrdup(b->occurrence);
	x->unit = xstrdup(b->unit);
	x->step = xstrdup(b->step);
	x->addr = xstrdup(b->address);
	x->status = xstrdup(b->status ? b->status : "");
	x->diag = xstrdup(b->diagnostic ? b->diagnostic : "");
	x->at = b->at;
	return 0;
}

/* Addresses that delivery reports in the [imap] mailbox said bounced. */
static int
load_bounces(const struct conf *c, struct db *db,
	     const struct status_filter *f, struct status *s)
{
	struct bounce_ctx bc = { c, f, s, 0 };

	if (db_bounce_foreach(db, f->occ, collect_bounce, &bc) < 0) {
		log_err("status: cannot read the bounced notices");
		return -1;
	}
	return 0;
}

const char *
status_unit_state(const struct st_unit *su)
{
	if (su->proposed && (su->state == US_MISSING ||
			     su->state == US_NOTDUE))
		return "proposed";
	return status_state_name(su->state);
}

int
status_build(const struct conf *c, struct db *db, tstamp now,
	     const struct status_filter *f, struct status **out)
{
	struct status *s;
	struct subset set = { 0 }, props = { 0 };
	struct occ *occs = NULL;
	struct extension *ext = NULL;
	size_t nocc = 0, next = 0;
	int rc;

	tstamp change = now + VIEW_MAX_AGE;

	rc = pick_occs(c, now, f, &occs, &nocc, &change);
	if (rc != 0)
		return rc;
	/* by the resolved id: a moved occurrence's old id names the new */
	if (db_sub_foreach(db, f->occ != NULL && nocc == 1 ? occs[0].id : NULL,
			   collect_sub, &set) < 0 ||
	    ledger_extensions(db, f->occ != NULL && nocc == 1 ? occs[0].id : NULL,
			      &ext, &next) < 0 ||
	    ledger_proposals(db, f->occ != NULL && nocc == 1 ? occs[0].id : NULL,
			     collect_prop, &props) < 0) {
		free(occs);
		subset_free(&set);
		subset_free(&props);
		extensions_free(ext, next);
		return -1;
	}
	if (set.n > 1)
		qsort(set.v, set.n, sizeof(*set.v), subrec_cmp);
	if (props.n > 1)
		qsort(props.v, props.n, sizeof(*props.v), subrec_cmp);

	s = xcalloc(1, sizeof(*s));
	s->now = now;
	s->stale_at = change;
	s->occ = xcalloc(nocc + 1, sizeof(*s->occ));
	for (size_t i = 0; i < nocc; i++) {
		const struct cycle *cy = occs[i].cycle;
		struct st_occ *so = &s->occ[s->nocc];

		so->o = occs[i];
		/* the occurrence's own extension; a unit's own below */
		sched_extend(c, &so->o, ext, next, NULL);
		so->u = xcalloc(cy->nunits + 1, sizeof(*so->u));
		for (size_t j = 0; j < cy->nunits; j++) {
			const struct unit *u = &c->units[cy->units[j]];
			struct subrec *r;
			struct st_unit *su;
			struct occ uo = so->o;

			if (f->group != NULL && !unit_in_group(u, f->group))
				continue;
			su = &so->u[so->nu++];
			su->u = u;
			for (size_t k = 0; k < next; k++) {
				if (strcmp(ext[k].unit, u->id) == 0 &&
				    strcmp(ext[k].occurrence, uo.id) == 0) {
					su->own_due = sched_extend(c, &uo, ext,
								   next, u->id);
					break;
				}
			}
			su->due_at = uo.due_at;
			su->due = uo.due;
			r = subset_find(&set, so->o.id, u->id);
			if (r != NULL) {
				su->state = r->nil ? US_NIL : US_SUBMITTED;
				su->at = r->at;
				memcpy(su->source, r->source,
				       sizeof(su->source));
				su->note = r->note;
				r->note = NULL;
				su->late = r->at > su->due_at;
				so->nsub++;
				if (r->nil)
					so->nnil++;
				if (su->late)
					so->nlate++;
			} else if (su->due_at <= now) {
				su->state = US_MISSING;
				so->nmiss++;
			} else {
				su->state = US_NOTDUE;
				so->nnotdue++;
			}
			if (r == NULL &&
			    (r = subset_find(&props, so->o.id, u->id)) != NULL) {
				su->proposed = true;
				memcpy(su->proposed_source, r->source,
				       sizeof(su->proposed_source));
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
	subset_free(&set);
	subset_free(&props);
	extensions_free(ext, next);
	s->bytes = sizeof(*s) + nocc * sizeof(*s->occ);
	for (size_t i = 0; i < s->nocc; i++)
		s->bytes += s->occ[i].nu * sizeof(struct st_unit);
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
	if (load_bounces(c, db, f, s) < 0) {
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
void
status_fmt_due(const struct occ *o, char *out, size_t size)
{
	char d[16];
	int m = occ_due_minute(o);

	ymd_format_vn(o->due, d);
	snprintf(out, size, "%s %02d:%02d", d, m / 60 % 100, m % 60);
}

/* -------------------------------------------------- cutoffctl status */

/* "bounced  OCC  UNIT  STEP  ADDRESS  STATUS DIAGNOSTIC": what a remote
 * server said, escaped. */
static int
print_bounce(void *ctx, const struct db_bounce *x)
{
	struct buf *b = ctx;

	buf_puts(b, "bounced\t");
	buf_put_escaped(b, x->occurrence, 200);
	buf_putc(b, '\t');
	buf_put_escaped(b, x->unit, 200);
	buf_putc(b, '\t');
	buf_put_escaped(b, x->step, 100);
	buf_putc(b, '\t');
	buf_put_escaped(b, x->address, 200);
	buf_putc(b, '\t');
	buf_put_escaped(b, x->status ? x->status : "", 20);
	buf_putc(b, ' ');
	buf_put_escaped(b, x->diagnostic ? x->diagnostic : "", 300);
	buf_putc(b, '\n');
	return 0;
}

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
		buf_printf(&b, "%s  %s  due %s", so->o.id,
			   so->o.cycle->title ? so->o.cycle->title : "", due);
		if (so->o.extended) {
			struct occ was = so->o;

			was.extended = false;
			was.due = so->o.was_due;
			status_fmt_due(&was, due, sizeof(due));
			buf_printf(&b, " (extended, was %s)", due);
		}
		buf_printf(&b, "  submitted %zu/%zu\n", so->nsub, so->nu);
		for (size_t j = 0; j < so->nu; j++) {
			const struct st_unit *su = &so->u[j];
			char at[20];

			buf_printf(&b, "%s\t%s", su->u->id,
				   status_unit_state(su));
			if (su->state == US_SUBMITTED || su->state == US_NIL) {
				tz_format_iso(c->tz, su->at, at);
				buf_printf(&b, "\t%s%s", at,
					   su->late ? "\tlate" : "");
			}
			/* a unit's own deadline: "due" and the date */
			if (su->own_due) {
				tz_format_iso(c->tz, su->due_at, at);
				buf_printf(&b, "\tdue %s", at);
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
	/* delivery reports found in the [imap] mailbox */
	(void)db_bounce_foreach(db, occ, print_bounce, &b);
	fputs(buf_str(&b), out);
	buf_free(&b);
	status_free(s);
	return 0;
}

/* ---------------------------------------------------------------- JSON */
/* One occurrence as a JSON object, without its units. */
static json_t *
json_occ(const struct conf *c, const struct st_occ *so)
{
	char t[20];
	json_t *jo = json_object();
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
	json_object_set_new(jo, "nil", json_integer((json_int_t)so->nnil));
	if (so->o.extended) {
		json_object_set_new(jo, "extended", json_true());
		tz_format_iso(c->tz, so->o.was_due_at, t);
		json_object_set_new(jo, "planned_due", json_string(t));
	}
	return jo;
}

/* s as a JSON string, as jansson writes it (UTF-8 kept, control
 * characters escaped): the unit rows are the bulk of the document, and
 * an object per row would cost a few allocations each. */
static void
json_str(struct buf *b, const char *s)
{
	static const char hex[] = "0123456789ABCDEF";
	const char *run = s;

	if (!utf8_valid(s, strlen(s)))
		s = run = "(not UTF-8)";
	buf_putc(b, '"');
	for (; *s != '\0'; s++) {
		unsigned char ch = (unsigned char)*s;
		char esc[7] = "\\u00";

		if (ch >= 0x20 && ch != '"' && ch != '\\')
			continue;
		buf_add(b, run, (size_t)(s - run));
		run = s + 1;
		switch (ch) {
		case '"': buf_puts(b, "\\\""); break;
		case '\\': buf_puts(b, "\\\\"); break;
		case '\b': buf_puts(b, "\\b"); break;
		case '\f': buf_puts(b, "\\f"); break;
		case '\n': buf_puts(b, "\\n"); break;
		case '\r': buf_puts(b, "\\r"); break;
		case '\t': buf_puts(b, "\\t"); break;
		default:
			esc[4] = hex[ch >> 4];
			esc[5] = hex[ch & 15];
			esc[6] = '\0';
			buf_puts(b, esc);
			break;
		}
	}
	buf_add(b, run, (size_t)(s - run));
	buf_putc(b, '"');
}

static void
json_units(const struct conf *c, const struct st_occ *so, struct buf *b)
{
	char t[20];

	buf_puts(b, "[");
	for (size_t j = 0; j < so->nu; j++) {
		const struct st_unit *su = &so->u[j];

		buf_puts(b, j > 0 ? ",{\"unit\":" : "{\"unit\":");
		json_str(b, su->u->id);
		buf_puts(b, ",\"name\":");
		json_str(b, su->u->name ? su->u->name : su->u->id);
		buf_puts(b, ",\"state\":\"");
		buf_puts(b, status_unit_state(su));
		buf_putc(b, '"');
		if (status_unit_state(su)[0] == 'p') {
			buf_puts(b, ",\"proposed_by\":");
			json_str(b, su->proposed_source);
		}
		if (su->state == US_SUBMITTED || su->state == US_NIL) {
			tz_format_iso(c->tz, su->at, t);
			buf_puts(b, ",\"at\":\"");
			buf_puts(b, t);
			buf_putc(b, '"');
			if (su->late)
				buf_puts(b, ",\"late\":true");
			buf_puts(b, ",\"source\":");
			json_str(b, su->source);
			if (su->note != NULL &&
			    utf8_valid(su->note, strlen(su->note))) {
				buf_puts(b, ",\"note\":");
				json_str(b, su->note);
			}
		}
		/* a unit's own deadline; else the occurrence's holds (at
		 * 10,000 units, two fields each would cost half a megabyte) */
		if (su->own_due) {
			char d[16];

			tz_format_iso(c->tz, su->due_at, t);
			buf_puts(b, ",\"due\":\"");
			buf_puts(b, t);
			ymd_format_vn(su->due, d);
			buf_puts(b, "\",\"due_date\":\"");
			buf_puts(b, d);
			buf_puts(b, "\",\"extended\":true");
		}
		buf_putc(b, '}');
	}
	buf_puts(b, "]");
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
		/* the object's closing brace gives way to its units */
		if (b->len > 0 && b->p[b->len - 1] == '}') {
			b->len--;
			buf_puts(b, ",\"units\":");
			json_units(c, &s->occ[i], b);
			buf_putc(b, '}');
		}
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
	buf_puts(b, ",\"bounced\":");
	fails = json_array();
	for (size_t i = 0; i < s->nbounce; i++) {
		const struct st_bounce *x = &s->bounce[i];
		json_t *jf = json_object();

		json_object_set_new(jf, "occurrence", json_string(x->occ));
		json_object_set_new(jf, "unit", json_string(x->unit));
		json_object_set_new(jf, "step", json_string(x->step));
		json_object_set_new(jf, "address", json_string(x->addr));
		json_object_set_new(jf, "status", json_string(x->status));
		/* mime.c gives clean UTF-8 */
		json_object_set_new(jf, "diagnostic", json_string(x->diag));
		tz_format_iso(c->tz, x->at, t);
		json_object_set_new(jf, "at", json_string(t));
		json_array_append_new(fails, jf);
	}
	json_put(b, fails);
	buf_puts(b, "}\n");
}

/* ----------------------------------------------------------------- CSV */

/* One RFC 4180 field: quoted when it holds a comma, quote, CR or LF (and
 * when it starts with = + - @, which a spreadsheet would run as a
 * formula: a leading apostrophe inside the quotes defuses it). */
static void
csv_field(struct buf *b, const char *s, bool last)
{
	bool formula = s[0] == '=' || s[0] == '+' || s[0] == '-' ||
		       s[0] == '@';

	if (formula || strpbrk(s, ",\"\r\n") != NULL) {
		buf_putc(b, '"');
		if (formula)
			buf_putc(b, '\'');
		for (; *s != '\0'; s++) {
			if (*s == '"')
				buf_putc(b, '"');
			buf_putc(b, *s);
		}
		buf_putc(b, '"');
	} else {
		buf_puts(b, s);
	}
	buf_puts(b, last ? "\r\n" : ",");
}

/* /status.csv: one row per (occurrence, unit), for Excel and LibreOffice:
 * UTF-8 with a BOM, CRLF line ends, RFC 4180 quoting, dates dd/mm/yyyy. */
void
status_csv_write(const struct conf *c, const struct status *s, struct buf *b)
{
	buf_puts(b, "\xEF\xBB\xBF");
	buf_puts(b, "occurrence,title,due,unit,name,state,received,source,"
		 "note\r\n");
	for (size_t i = 0; i < s->nocc; i++) {
		const struct st_occ *so = &s->occ[i];

		for (size_t j = 0; j < so->nu; j++) {
			const struct st_unit *su = &so->u[j];
			bool sub = su->state == US_SUBMITTED ||
				   su->state == US_NIL;
			char at[20] = "", due[16];

			/* the unit's own due date: extended where extended */
			ymd_format_vn(su->due, due);
			if (sub)
				tz_format_vn(c->tz, su->at, at);
			csv_field(b, so->o.id, false);
			csv_field(b, so->o.cycle->title ? so->o.cycle->title
							 : so->o.cycle->id,
				  false);
			csv_field(b, due, false);
			csv_field(b, su->u->id, false);
			csv_field(b, su->u->name ? su->u->name : su->u->id,
				  false);
			csv_field(b, status_unit_state(su), false);
			csv_field(b, at, false);
			csv_field(b, sub ? su->source : "", false);
			/* a note that is not UTF-8 (written into the store by
			 * hand) would spoil the whole file for Excel */
			csv_field(b, sub && su->note != NULL &&
				  utf8_valid(su->note, strlen(su->note))
				  ? su->note : "", true);
		}
	}
}

int
status_print_csv(const struct conf *c, struct db *db, tstamp now,
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
	status_csv_write(c, s, &b);
	fwrite(b.p != NULL ? b.p : "", 1, b.len, out);
	buf_free(&b);
	status_free(s);
	return 0;
}

/* ---------------------------------------------------- views in memory */

/* The model and its documents per filter, built once per change of
 * configuration or state and kept until the next one:
 *   - stale when views_invalidate was called (a reload, a submission:
 *     main.c's app_changed), when this connection changed a row since
 *     (an outbox outcome, the engine's new rows), or at the instant time
 *     alone changes the model (status_build's stale_at);
 *   - rebuilt on the first request after that, so a burst of requests
 *     costs one build;
 *   - each document is a shared struct doc: any number of readers, slow
 *     ones included, send the same bytes.
 * Filter combinations come from the configuration (ids checked against
 * it), so they are few; they are still bounded by count and bytes, the
 * least recently used going first. */
struct view {
	char key[160];           /* "cycle|group" */
	struct status *s;
	struct doc *doc[VIEW_SLOTS];
	size_t bytes;
	unsigned gen;
	int64_t changes;         /* db_total_changes at the build */
	uint64_t used;
};

struct views {
	unsigned gen;
	uint64_t tick;
	unsigned long builds;
	struct view *v[VIEWS_MAX];
	size_t n;
	size_t bytes;
};

struct views *
views_new(void)
{
	struct views *vs = xcalloc(1, sizeof(*vs));

	vs->gen = 1;
	return vs;
}

static void
view_clear(struct views *vs, struct view *e)
{
	for (size_t k = 0; k < VIEW_SLOTS; k++) {
		doc_release(e->doc[k]);
		e->doc[k] = NULL;
	}
	status_free(e->s);
	e->s = NULL;
	vs->bytes -= e->bytes;
	e->bytes = 0;
}

void
views_free(struct views *vs)
{
	if (vs == NULL)
		return;
	for (size_t i = 0; i < vs->n; i++) {
		view_clear(vs, vs->v[i]);
		free(vs->v[i]);
	}
	free(vs);
}

void
views_invalidate(struct views *vs)
{
	if (vs != NULL)
		vs->gen++;
}

unsigned long
views_builds(const struct views *vs)
{
	return vs != NULL ? vs->builds : 0;
}

/* Drops least recently used views other than keep until the bounds hold. */
static void
views_trim(struct views *vs, const struct view *keep)
{
	while (vs->n > 0 && (vs->n > VIEWS_MAX - 1 ||
			     vs->bytes > VIEWS_MAX_BYTES)) {
		size_t victim = SIZE_MAX;

		for (size_t i = 0; i < vs->n; i++)
			if (vs->v[i] != keep &&
			    (victim == SIZE_MAX ||
			     vs->v[i]->used < vs->v[victim]->used))
				victim = i;
		if (victim == SIZE_MAX)
			return;
		view_clear(vs, vs->v[victim]);
		free(vs->v[victim]);
		vs->v[victim] = vs->v[--vs->n];
	}
}

/* The view of f with a fresh model, or NULL when it cannot be built. */
static struct view *
view_get(struct views *vs, const struct conf *c, struct db *db, tstamp now,
	 const struct status_filter *f)
{
	struct view *e = NULL;
	struct status *s = NULL;
	char key[160];
	int64_t changes = db_total_changes(db);

	snprintf(key, sizeof(key), "%s|%s", f->cycle ? f->cycle->id : "",
		 f->group ? f->group : "");
	for (size_t i = 0; i < vs->n; i++)
		if (strcmp(vs->v[i]->key, key) == 0)
			e = vs->v[i];
	if (e != NULL && e->s != NULL && e->gen == vs->gen &&
	    e->changes == changes && now >= e->s->now && now < e->s->stale_at) {
		e->used = ++vs->tick;
		return e;
	}
	if (status_build(c, db, now, f, &s) != 0) {
		if (e == NULL || e->s == NULL)
			return NULL;
		/* the state store cannot be read (locked, gone): the last
		 * view is better than none; try again in a few seconds, not
		 * on every request */
		log_warn("status view [%s]: cannot rebuild; serving the last "
			 "one", key);
		e->gen = vs->gen;
		e->changes = changes;
		e->s->stale_at = now + VIEW_RETRY;
		e->used = ++vs->tick;
		return e;
	}
	if (e == NULL) {
		if (vs->n == VIEWS_MAX)
			views_trim(vs, NULL);
		e = xcalloc(1, sizeof(*e));
		snprintf(e->key, sizeof(e->key), "%s", key);
		vs->v[vs->n++] = e;
	}
	view_clear(vs, e);
	e->s = s;
	e->bytes = s->bytes;
	vs->bytes += e->bytes;
	e->gen = vs->gen;
	e->changes = changes;
	e->used = ++vs->tick;
	log_debug("status view [%s]: model built, %zu occurrences", key,
		  s->nocc);
	views_trim(vs, e);
	return e;
}

const struct status *
views_status(struct views *vs, const struct conf *c, struct db *db,
	     tstamp now, const struct status_filter *f)
{
	struct view *e = vs != NULL ? view_get(vs, c, db, now, f) : NULL;

	return e != NULL ? e->s : NULL;
}

struct doc *
views_doc(struct views *vs, const struct conf *c, struct db *db, tstamp now,
	  const struct status_filter *f, enum view_slot slot,
	  const char *type, view_build_fn build, void *ctx)
{
	struct view *e = vs != NULL ? view_get(vs, c, db, now, f) : NULL;
	struct buf b;
	size_t len;

	if (e == NULL || (unsigned)slot >= VIEW_SLOTS)
		return NULL;
	if (e->doc[slot] != NULL)
		return e->doc[slot];
	buf_init(&b);
	build(c, e->s, f, ctx, &b);
	len = b.len;
	e->doc[slot] = doc_new(buf_steal(&b), len, type);
	e->doc[slot]->built = e->s->now;
	e->doc[slot]->serial = ++vs->builds;
	e->bytes += len;
	vs->bytes += len;
	log_debug("status view [%s] %d: built, %zu bytes, etag %s", e->key,
		  (int)slot, len, e->doc[slot]->etag);
	views_trim(vs, e);
	return e->doc[slot];
}
