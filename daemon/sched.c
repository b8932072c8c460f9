/*
 * sched.c - the pure schedule engine.
 *
 * (conf, holidays, recorded submissions, a time window) -> occurrences and
 * the notices that would be sent.  No I/O and no clock: every instant comes
 * from the caller, so the daemon, cutoffctl and the tests agree exactly.
 *
 * Vocabulary: a cycle has nominal due dates (yearly MM-DD, one-off dates, an
 * RRULE); the policy's shift moves each off non-working days to the
 * effective due date; steps are offsets in days from the effective date.
 */
#include "cutoffd.h"

#include <libical/ical.h>
#include <stdlib.h>
#include <string.h>

#define SHIFT_CAP 366          /* days a due date may move */
#define RRULE_CAP 10000        /* recurrence iterations per expansion */
#define REPEAT_SPAN 366        /* days of repeats when until = 0 */
#define DAY 86400

/* The engine only works within these years; wider windows are clamped so
 * callers may pass "everything" without overflowing the calendar. */
#define T_MIN ((tstamp)-2208988800LL)   /* 1900-01-01 */
#define T_MAX ((tstamp)7258118400LL)    /* 2200-01-01 */

static int64_t
day_of(struct ymd d)
{
	return days_from_civil(d.y, d.m, d.d);
}

static tstamp
clamp_t(tstamp t)
{
	return t < T_MIN ? T_MIN : t > T_MAX ? T_MAX : t;
}

static int64_t
local_day(const struct conf *c, tstamp t)
{
	struct ymd d;

	tz_local(c->tz, t, &d, NULL, NULL);
	return day_of(d);
}

/* ------------------------------------------------------ nominal due dates */

struct dvec {
	int64_t *v;
	size_t n, cap;
};

static void
dvec_push(struct dvec *dv, int64_t day)
{
	if (dv->n == dv->cap) {
		dv->cap = dv->cap ? dv->cap * 2 : 16;
		dv->v = xrealloc(dv->v, dv->cap * sizeof(*dv->v));
	}
	dv->v[dv->n++] = day;
}


/* MM-DD in year y.  02-29 is the last day of February in common years,
 * as for period ends (period_date) and as the Civil Code ends a period on
 * a day the month lacks: skipping those years would silently leave three
 * reports in four unchased. */
static bool
md_day(int y, struct md m, int64_t *day)
{
	struct ymd d = { y, m.m, m.d };

	if (!ymd_valid(d) && m.m == 2 && m.d == 29)
		d.d = 28;
	if (!ymd_valid(d))
		return false;
	*day = day_of(d);
	return true;
}

static icalrecur_iterator *
rrule_iter(const struct cycle *cy)
{
	struct icalrecurrencetype r;
	struct icaltimetype st;
	char date[16];

	if (cy->rrule == NULL || !ymd_valid(cy->start))
		return NULL;
	r = icalrecurrencetype_from_string(cy->rrule);
	if (r.freq == ICAL_NO_RECURRENCE)
		return NULL;
	/* A DATE parsed from text: icaltime_null_date() leaves the time
	 * fields at -1, and libical 3.0 then steps WEEKLY by 6 days and
	 * never moves DAILY. */
	snprintf(date, sizeof date, "%04d%02d%02d", cy->start.y % 10000,
		 cy->start.m % 100, cy->start.d % 100);
	st = icaltime_from_string(date);
	if (icaltime_is_null_time(st))
		return NULL;
	return icalrecur_iterator_new(r, st);
}

/* Next instance of the rule as a day number; false at the end. */
static bool
rrule_next(icalrecur_iterator *it, int64_t *day)
{
	struct icaltimetype t = icalrecur_iterator_next(it);
	struct ymd d;

	if (icaltime_is_null_time(t))
		return false;
	d.y = t.year;
	d.m = t.month;
	d.d = t.day;
	if (!ymd_valid(d))
		return false;
	*day = day_of(d);
	return true;
}

/* Every nominal date of the cycle within [lo, hi], sorted and unique. */
static void
nominal_range(const struct cycle *cy, int64_t lo, int64_t hi,
	      struct dvec *out)
{
	int ylo = civil_from_days(lo).y, yhi = civil_from_days(hi).y;
	int64_t day;

	out->n = 0;
	for (int y = ylo; y <= yhi; y++)
		for (size_t i = 0; i < cy->nyearly; i++)
			if (md_day(y, cy->yearly[i], &day) && day >= lo &&
			    day <= hi)
				dvec_push(out, day);
	for (size_t i = 0; i < cy->nonce; i++) {
		day = day_of(cy->once[i]);
		if (day >= lo && day <= hi)
			dvec_push(out, day);
	}
	if (cy->rrule != NULL) {
		icalrecur_iterator *it = rrule_iter(cy);

		for (int i = 0; it != NULL && i < RRULE_CAP; i++) {
			if (!rrule_next(it, &day) || day > hi)
				break;
			if (day >= lo)
				dvec_push(out, day);
		}
		if (it != NULL)
			icalrecur_iterator_free(it);
	}
	if (out->n > 1) {
		size_t w = 1;

		qsort(out->v, out->n, sizeof(*out->v), cmp_int64);
		for (size_t i = 1; i < out->n; i++)
			if (out->v[i] != out->v[w - 1])
				out->v[w++] = out->v[i];
		out->n = w;
	}
}

/* The latest nominal date before `day`; false when there is none. */
static bool
nominal_prev(const struct cycle *cy, int64_t day, int64_t *prev)
{
	int y0 = civil_from_days(day).y;
	int64_t best = INT64_MIN, d;
	bool found = false;

	/* 8 years back covers 02-29 across a skipped leap year (2100) */
	for (int y = y0; y > y0 - 9 && !found; y--) {
		for (size_t i = 0; i < cy->nyearly; i++) {
			if (md_day(y, cy->yearly[i], &d) && d < day) {
				found = true;
				if (d > best)
					best = d;
			}
		}
	}
	for (size_t i = 0; i < cy->nonce; i++) {
		d = day_of(cy->once[i]);
		if (d < day && d > best) {
			best = d;
			found = true;
		}
	}
	if (cy->rrule != NULL) {
		icalrecur_iterator *it = rrule_iter(cy);

		for (int i = 0; it != NULL && i < RRULE_CAP; i++) {
			if (!rrule_next(it, &d) || d >= day)
				break;
			if (d > best) {
				best = d;
				found = true;
			}
		}
		if (it != NULL)
			icalrecur_iterator_free(it);
	}
	if (found)
		*prev = best;
	return found;
}

static bool
is_nominal(const struct cycle *cy, struct ymd date)
{
	int64_t day = day_of(date), d;
	bool yes = false;

	for (size_t i = 0; i < cy->nyearly; i++)
		if (md_day(date.y, cy->yearly[i], &d) && d == day)
			return true;
	for (size_t i = 0; i < cy->nonce; i++)
		if (ymd_cmp(cy->once[i], date) == 0)
			return true;
	if (cy->rrule != NULL) {
		icalrecur_iterator *it = rrule_iter(cy);

		for (int i = 0; it != NULL && i < RRULE_CAP; i++) {
			if (!rrule_next(it, &d) || d > day)
				break;
			if (d == day) {
				yes = true;
				break;
			}
		}
		if (it != NULL)
			icalrecur_iterator_free(it);
	}
	return yes;
}

/* ------------------------------------------------------------ occurrences */

static struct ymd
shift_due(const struct conf *c, enum shift s, struct ymd nominal)
{
	int64_t day = day_of(nominal);
	int dir = s == SHIFT_PREV ? -1 : 1;

	if (s == SHIFT_NONE)
		return nominal;
	/* a whole holiday block (Tết) is crossed; with no working day at
	 * all within the cap the nominal date stands */
	for (int i = 0; i <= SHIFT_CAP; i++)
		if (conf_workday(c, day + (int64_t)i * dir))
			return civil_from_days(day + (int64_t)i * dir);
	return nominal;
}

/* MM-DD in year y, 02-29 falling back to 02-28 (to) or 03-01 (from) */
static struct ymd
period_date(int y, struct md m, bool is_from)
{
	struct ymd d = { y, m.m, m.d };

	if (!ymd_valid(d) && m.m == 2 && m.d == 29)
		d = is_from ? (struct ymd){ y, 3, 1 } : (struct ymd){ y, 2, 28 };
	return d;
}

static int
md_cmp(int m1, int d1, int m2, int d2)
{
	if (m1 != m2)
		return m1 < m2 ? -1 : 1;
	return (d1 > d2) - (d1 < d2);
}

/*
 * The Decree 09/2019/ND-CP presets: each kind's periods end on the 14th of
 * some months and start on the 15th `span` months earlier.  Of that kind,
 * the period whose last day is nearest the nominal due date is the one the
 * report covers (a quarter I report due 01/03 or 13/03: 15/12 .. 14/03); on
 * a tie the earlier one, which has ended.
 */
static bool
preset_period(enum period_kind k, struct ymd nominal, struct ymd *from,
	      struct ymd *to)
{
	static const int q[] = { 3, 6, 9, 12 }, h[] = { 6, 12 }, n9[] = { 9 },
			 yr[] = { 12 };
	const int *months = NULL;
	int nm = 0, span = 0;
	int64_t day = day_of(nominal), bestd = INT64_MAX;
	struct ymd e, bm = { 0, 0, 0 };

	switch (k) {
	case PERIOD_MONTH: span = 1; break;
	case PERIOD_QUARTER: months = q; nm = 4; span = 3; break;
	case PERIOD_HALF: months = h; nm = 2; span = 6; break;
	case PERIOD_NINE_MONTHS: months = n9; nm = 1; span = 9; break;
	case PERIOD_YEAR: months = yr; nm = 1; span = 12; break;
	default: return false;
	}
	for (int y = nominal.y - 1; y <= nominal.y + 1; y++) {
		for (int m = 1; m <= 12; m++) {
			int64_t ed, dist;
			bool in = months == NULL;

			for (int i = 0; i < nm && !in; i++)
				in = months[i] == m;
			if (!in)
				continue;
			e = (struct ymd){ y, m, 14 };
			ed = day_of(e);
			dist = ed > day ? ed - day : day - ed;
			if (dist < bestd) {     /* ascending: ties keep earlier */
				bestd = dist;
				bm = e;
			}
		}
	}
	*to = bm;
	e.y = bm.y;
	e.m = bm.m - span;
	while (e.m < 1) {
		e.m += 12;
		e.y--;
	}
	e.d = 15;
	*from = e;
	return true;
}

static void
fill_occ(const struct conf *c, const struct cycle *cy, int64_t nominal,
	 bool has_prev, int64_t prev, struct occ *o)
{
	const struct policy *p = cy->policy;
	enum shift s = p != NULL ? p->shift : SHIFT_NEXT;

	memset(o, 0, sizeof(*o));
	o->cycle = cy;
	o->nominal = civil_from_days(nominal);
	o->due = shift_due(c, s, o->nominal);
	o->due_at = tz_mktime(c->tz, o->due, cy->due_minute);
	if (cy->period >= PERIOD_MONTH) {
		o->has_period = preset_period(cy->period, o->nominal,
					      &o->period_from, &o->period_to);
	} else if (cy->period_fixed || cy->period == PERIOD_FIXED) {
		struct md t = cy->period_to, f = cy->period_from;
		int yt = o->nominal.y, yf;

		/* the period ends on or before the nominal date */
		if (md_cmp(t.m, t.d, o->nominal.m, o->nominal.d) > 0)
			yt--;
		yf = md_cmp(f.m, f.d, t.m, t.d) > 0 ? yt - 1 : yt;
		o->has_period = true;
		o->period_from = period_date(yf, f, true);
		o->period_to = period_date(yt, t, false);
	} else if (cy->period == PERIOD_PREVIOUS && has_prev) {
		o->has_period = true;
		o->period_from = civil_from_days(prev + 1);
		o->period_to = o->nominal;
	}
	snprintf(o->id, sizeof(o->id), "%s/%04d-%02d-%02d", cy->id,
		 o->nominal.y, o->nominal.m, o->nominal.d);
}

struct ovec {
	struct occ *v;
	size_t n, cap;
};

static struct occ *
ovec_push(struct ovec *ov)
{
	if (ov->n == ov->cap) {
		ov->cap = ov->cap ? ov->cap * 2 : 16;
		ov->v = xrealloc(ov->v, ov->cap * sizeof(*ov->v));
	}
	return &ov->v[ov->n++];
}

/* Occurrences of cy whose effective due date lies in [dlo, dhi] (days). */
static void
cycle_occs(const struct conf *c, const struct cycle *cy, int64_t dlo,
	   int64_t dhi, struct dvec *tmp, struct ovec *out)
{
	int64_t prev = 0;
	bool has_prev;

	nominal_range(cy, dlo - SHIFT_CAP, dhi + SHIFT_CAP, tmp);
	if (tmp->n == 0)
		return;
	has_prev = cy->period == PERIOD_PREVIOUS &&
		   nominal_prev(cy, tmp->v[0], &prev);
	for (size_t i = 0; i < tmp->n; i++) {
		struct occ o;
		int64_t due;

		if (i > 0) {
			has_prev = true;
			prev = tmp->v[i - 1];
		}
		fill_occ(c, cy, tmp->v[i], has_prev, prev, &o);
		due = day_of(o.due);
		/* before since: neither chased nor listed anywhere */
		if (due >= dlo && due <= dhi && !sched_before_since(c, &o))
			*ovec_push(out) = o;
	}
}

static int
cmp_occ(const void *a, const void *b)
{
	const struct occ *x = a, *y = b;

	if (x->due_at != y->due_at)
		return x->due_at < y->due_at ? -1 : 1;
	return strcmp(x->id, y->id);
}

int
sched_occurrences(const struct conf *c, tstamp from, tstamp to,
		  struct occ **out, size_t *n)
{
	struct ovec ov = { 0 };
	struct dvec tmp = { 0 };
	size_t w = 0;
	int64_t dlo, dhi;

	from = clamp_t(from);
	to = clamp_t(to);
	if (to > from) {
		/* due_at is on the due date or (1440) the next midnight */
		dlo = local_day(c, from) - 1;
		dhi = local_day(c, to);
		for (size_t i = 0; i < c->ncycles; i++)
			cycle_occs(c, &c->cycles[i], dlo, dhi, &tmp, &ov);
	}
	free(tmp.v);
	for (size_t i = 0; i < ov.n; i++)
		if (ov.v[i].due_at >= from && ov.v[i].due_at < to)
			ov.v[w++] = ov.v[i];
	ov.n = w;
	if (ov.n > 1)
		qsort(ov.v, ov.n, sizeof(*ov.v), cmp_occ);
	if (ov.v == NULL)
		ov.v = xmalloc(1);
	*out = ov.v;
	*n = ov.n;
	return 0;
}

int
sched_occurrence(const struct conf *c, const char *id, struct occ *out)
{
	const char *slash;
	const struct cycle *cy;
	char cid[72];
	struct ymd date;
	int64_t prev = 0;
	bool has_prev;
	size_t clen;

	if (id == NULL)
		return -1;
	slash = strrchr(id, '/');
	if (slash == NULL)
		return -1;
	clen = (size_t)(slash - id);
	if (clen == 0 || clen >= sizeof(cid))
		return -1;
	memcpy(cid, id, clen);
	cid[clen] = '\0';
	cy = conf_cycle(c, cid);
	if (cy == NULL || parse_ymd(slash + 1, &date) < 0)
		return -1;
	if (!is_nominal(cy, date)) {
		/* an id a reload moved resolves to its new occurrence */
		const struct occ_alias *al = NULL;
		size_t lo = 0, hi = c->naliases;

		while (lo < hi) {
			size_t mid = lo + (hi - lo) / 2;
			int r = strcmp(c->aliases[mid].from, id);

			if (r == 0) {
				al = &c->aliases[mid];
				break;
			}
			if (r < 0)
				lo = mid + 1;
			else
				hi = mid;
		}
		if (al == NULL || strcmp(al->to, id) == 0 ||
		    strncmp(al->to, id, clen + 1) != 0 ||
		    parse_ymd(al->to + clen + 1, &date) < 0 ||
		    !is_nominal(cy, date))
			return -1;
	}
	has_prev = cy->period == PERIOD_PREVIOUS &&
		   nominal_prev(cy, day_of(date), &prev);
	fill_occ(c, cy, day_of(date), has_prev, prev, out);
	return 0;
}

/* ------------------------------------------------------------ extensions */

bool
sched_extend(const struct conf *c, struct occ *o, const struct extension *ext,
	     size_t n, const char *unit)
{
	const struct extension *e = NULL;
	int minute;

	for (size_t i = 0; i < n; i++) {
		if (strcmp(ext[i].occurrence, o->id) != 0)
			continue;
		if (unit != NULL && strcmp(ext[i].unit, unit) == 0) {
			e = &ext[i];
			break;          /* the unit's own wins */
		}
		if (ext[i].unit[0] == '\0')
			e = &ext[i];
	}
	if (e == NULL || !ymd_valid(e->due))
		return false;
	minute = e->minute >= 0 ? e->minute : o->cycle->due_minute;
	if (!o->extended) {
		o->was_due = o->due;
		o->was_due_at = o->due_at;
	}
	/* the date the admin chose stands: no holiday shift */
	o->due = e->due;
	o->due_at = tz_mktime(c->tz, e->due, minute);
	o->ext_minute = minute;
	o->extended = true;
	return true;
}

/* ------------------------------------------------------------------ steps */

struct gstep {
	struct notice_step st;
	tstamp raw;              /* before the quiet-hours move */
	int idx;                 /* generation order, for stable sorting */
};

struct gen {
	const struct conf *c;
	const struct occ *o;
	const struct policy *p;
	struct gstep v[SCHED_MAX_STEPS];
	size_t n;
};

static void
gen_add(struct gen *g, tstamp at, int days, unsigned aud, bool esc,
	const char *name)
{
	struct gstep *s;

	if (g->n >= SCHED_MAX_STEPS)
		return;
	if (g->p->until > 0 && at - g->o->due_at > g->p->until)
		return;
	s = &g->v[g->n];
	memset(s, 0, sizeof(*s));
	s->raw = at;
	s->idx = (int)g->n;
	s->st.at = at;
	s->st.days = days;
	s->st.aud = aud;
	s->st.escalation = esc;
	snprintf(s->st.name, sizeof(s->st.name), "%s", name);
	g->n++;
}

static tstamp
day_at(const struct gen *g, int days, int minute)
{
	return tz_mktime(g->c->tz, ymd_add_days(g->o->due, days), minute);
}

static void
gen_repeats(struct gen *g)
{
	const struct policy *p = g->p;
	const struct step *base = NULL, *list = p->escalate;
	size_t nlist = p->nescalate;
	int64_t limit = p->until > 0 ? p->until : (int64_t)REPEAT_SPAN * DAY;
	char name[STEP_NAME_MAX];

	if (nlist == 0) {
		list = p->remind;
		nlist = p->nremind;
	}
	for (size_t i = 0; i < nlist; i++)
		if (base == NULL || list[i].days > base->days)
			base = &list[i];
	if (base == NULL || p->repeat <= 0)
		return;

	if (p->repeat % DAY == 0) {
		/* whole days: calendar arithmetic keeps 08:00 at 08:00
		 * across DST changes */
		int64_t rd = p->repeat / DAY;

		for (int64_t k = 1; g->n < SCHED_MAX_STEPS; k++) {
			int64_t days = base->days + k * rd;
			tstamp at;

			if (days * DAY > limit + 2 * DAY)
				break;
			at = day_at(g, (int)days, p->at);
			if (at - g->o->due_at > limit)
				break;
			snprintf(name, sizeof(name), "repeat%+dd", (int)days);
			gen_add(g, at, (int)days, base->aud, true, name);
		}
	} else {
		tstamp base_at = day_at(g, base->days, p->at);
		int64_t due_day = day_of(g->o->due);

		for (int64_t k = 1; g->n < SCHED_MAX_STEPS; k++) {
			tstamp at = base_at + k * p->repeat;
			struct ymd d;
			int minute, days;

			if (at - g->o->due_at > limit)
				break;
			tz_local(g->c->tz, at, &d, &minute, NULL);
			days = (int)(day_of(d) - due_day);
			/* sub-day repeats share a day: the local time keeps
			 * the names (the outbox key) distinct */
			snprintf(name, sizeof(name), "repeat%+dd%02dh%02d",
				 days, minute / 60, minute % 60);
			gen_add(g, at, days, base->aud, true, name);
		}
	}
}

/* Moves t out of the quiet window [from, to) to the window's end. */
static tstamp
quiet_move(const struct conf *c, const struct policy *p, tstamp t)
{
	struct ymd d;
	int m;
	int qf = p->quiet_from, qt = p->quiet_to;

	if (qf < 0 || qt < 0 || qf == qt)
		return t;
	tz_local(c->tz, t, &d, &m, NULL);
	if (qf < qt) {
		if (m >= qf && m < qt)
			return tz_mktime(c->tz, d, qt);
	} else {
		/* wraps midnight, e.g. 18:00-07:30 */
		if (m >= qf)
			return tz_mktime(c->tz, ymd_add_days(d, 1), qt);
		if (m < qt)
			return tz_mktime(c->tz, d, qt);
	}
	return t;
}

#define WORKDAY_CAP 31        /* days a send may move off non-working days */

bool
sched_before_since(const struct conf *c, const struct occ *o)
{
	return c->daemon.since_day != INT64_MIN &&
	       day_of(o->due) < c->daemon.since_day;
}

tstamp
sched_hold(const struct conf *c, const struct policy *p, tstamp t)
{
	struct ymd d;

	if (p == NULL)
		return t;
	for (int i = 0; i <= WORKDAY_CAP; i++) {
		t = quiet_move(c, p, t);
		tz_local(c->tz, t, &d, NULL, NULL);
		if (p->send_all_days || conf_workday(c, day_of(d)))
			return t;
		/* the next day at the policy's send time */
		t = tz_mktime(c->tz, ymd_add_days(d, 1), p->at);
	}
	return t;
}

/* A step's send time under send_days and quiet: off a non-working day to
 * the working day before it when the day is before the due date, else to
 * the one after (contract, "Added for 0.2"), keeping its time of day. */
static tstamp
step_time(const struct conf *c, const struct policy *p, const struct occ *o,
	  tstamp raw)
{
	struct ymd d;
	int minute;
	int64_t day, due = day_of(o->due);
	int dir;

	if (!p->send_all_days) {
		tz_local(c->tz, raw, &d, &minute, NULL);
		day = day_of(d);
		dir = day < due ? -1 : 1;
		for (int i = 0; i < WORKDAY_CAP && !conf_workday(c, day); i++)
			day += dir;
		if (day != day_of(d))
			raw = tz_mktime(c->tz, civil_from_days(day), minute);
	}
	return sched_hold(c, p, raw);
}

static int
cmp_gstep(const void *a, const void *b)
{
	const struct gstep *x = a, *y = b;

	if (x->st.at != y->st.at)
		return x->st.at < y->st.at ? -1 : 1;
	return (x->idx > y->idx) - (x->idx < y->idx);
}

/* An extended deadline re-arms the plan: its steps are new notices (the
 * outbox key has the step name), not the ones already sent for the old
 * date, so the name carries the new due date. */
static void
ext_names(const struct occ *o, struct gen *g)
{
	char tag[16];

	snprintf(tag, sizeof(tag), "~%04d%02d%02d", o->due.y % 10000,
		 o->due.m % 100, o->due.d % 100);
	for (size_t i = 0; i < g->n; i++) {
		size_t l = strlen(g->v[i].st.name);

		snprintf(g->v[i].st.name + l, sizeof(g->v[i].st.name) - l, "%s",
			 tag);
	}
}

/* All steps of o into g, quiet-adjusted and in time order. */
static void
gen_steps(const struct conf *c, const struct occ *o, struct gen *g)
{
	const struct policy *p = o->cycle->policy;
	char name[STEP_NAME_MAX];

	g->c = c;
	g->o = o;
	g->p = p;
	g->n = 0;
	if (p == NULL)
		return;
	for (size_t i = 0; i < p->nremind; i++) {
		const struct step *s = &p->remind[i];

		snprintf(name, sizeof(name), "remind%+dd", s->days);
		gen_add(g, day_at(g, s->days, p->at), s->days, s->aud, false,
			name);
	}
	for (size_t i = 0; i < p->nescalate; i++) {
		const struct step *s = &p->escalate[i];

		snprintf(name, sizeof(name), "escalate%+dd", s->days);
		gen_add(g, day_at(g, s->days, p->at), s->days, s->aud, true,
			name);
	}
	gen_repeats(g);
	for (size_t i = 0; i < g->n; i++)
		g->v[i].st.at = step_time(c, p, o, g->v[i].raw);
	if (o->extended)
		ext_names(o, g);
	qsort(g->v, g->n, sizeof(g->v[0]), cmp_gstep);
	/* Steps moved off non-working days may meet (-3d and -1d both on
	 * the Friday): one notice, the one nearer the due date, when it
	 * reaches everyone the other would. */
	if (!p->send_all_days) {
		size_t w = 0;

		for (size_t i = 0; i < g->n; i++) {
			bool drop = false;

			for (size_t k = 0; k < g->n && !drop; k++)
				drop = k != i && g->v[k].st.at == g->v[i].st.at &&
				       g->v[k].st.days > g->v[i].st.days &&
				       (g->v[i].st.aud & ~g->v[k].st.aud) == 0;
			if (!drop)
				g->v[w++] = g->v[i];
		}
		g->n = w;
	}
}

int
sched_steps(const struct conf *c, const struct occ *o,
	    struct notice_step *out, size_t max)
{
	struct gen *g = xmalloc(sizeof(*g));
	size_t n;

	gen_steps(c, o, g);
	n = g->n < max ? g->n : max;
	for (size_t i = 0; i < n; i++)
		out[i] = g->v[i].st;
	free(g);
	return (int)n;
}

/* ------------------------------------------------------------------- plan */

struct pevent {
	tstamp at;
	size_t occ;              /* index into the plan's occurrences */
	struct notice_step st;
};

struct plan {
	const struct conf *c;
	struct ovec occ;
	struct pevent *ev;
	size_t nev, capev;
	size_t *rank;            /* unit index -> position by id */
	char **joined;           /* unit index -> emails joined, lazily */
	unsigned char **subm;    /* occ -> unit -> 0 unknown, 1 no, 2 yes */
	submitted_fn submitted;
	void *sctx;
	/* extensions: occurrences [nbase, occ.n) are one unit's own
	 * (only[i - nbase] = its index); skip[oi] marks the units of a base
	 * occurrence that have one (NULL: none) */
	const struct extension *ext;
	size_t next, nbase;
	size_t *only;
	bool **skip;
};

static int
cmp_event(const void *a, const void *b, void *arg)
{
	const struct plan *pl = arg;
	const struct pevent *x = a, *y = b;
	int r;

	if (x->at != y->at)
		return x->at < y->at ? -1 : 1;
	if (x->occ != y->occ) {
		r = strcmp(pl->occ.v[x->occ].id, pl->occ.v[y->occ].id);
		if (r != 0)
			return r;
	}
	r = strcmp(x->st.name, y->st.name);
	if (r != 0)
		return r;
	return (x->occ > y->occ) - (x->occ < y->occ);
}

static int
cmp_unit_id(const void *a, const void *b, void *arg)
{
	const struct plan *pl = arg;
	size_t x = *(const size_t *)a, y = *(const size_t *)b;

	return strcmp(pl->c->units[x].id, pl->c->units[y].id);
}

static int
cmp_rank(const void *a, const void *b, void *arg)
{
	const struct plan *pl = arg;
	size_t x = pl->rank[*(const size_t *)a];
	size_t y = pl->rank[*(const size_t *)b];

	return (x > y) - (x < y);
}

/* Days a policy's steps reach before (lo <= 0) and after (hi) the due date. */
void
sched_policy_span(const struct policy *p, int64_t *lo, int64_t *hi)
{
	int64_t l = 0, h = 0;

	if (p != NULL) {
		for (size_t i = 0; i < p->nremind; i++) {
			l = p->remind[i].days < l ? p->remind[i].days : l;
			h = p->remind[i].days > h ? p->remind[i].days : h;
		}
		for (size_t i = 0; i < p->nescalate; i++) {
			l = p->escalate[i].days < l ? p->escalate[i].days : l;
			h = p->escalate[i].days > h ? p->escalate[i].days : h;
		}
		if (p->repeat > 0) {
			int64_t r = p->until > 0 ? p->until / DAY + 1
						 : REPEAT_SPAN;

			h = r > h ? r : h;
		}
	}
	*lo = l;
	*hi = h;
}

static const char *
unit_recipients(struct plan *pl, size_t ui)
{
	const struct unit *u = &pl->c->units[ui];
	struct buf b;

	if (u->nemail == 0)
		return NULL;
	if (u->nemail == 1)
		return u->email[0];
	if (pl->joined[ui] == NULL) {
		buf_init(&b);
		for (size_t i = 0; i < u->nemail; i++) {
			if (i > 0)
				buf_putc(&b, ',');
			buf_puts(&b, u->email[i]);
		}
		pl->joined[ui] = buf_steal(&b);
	}
	return pl->joined[ui];
}

static bool
is_submitted(struct plan *pl, size_t oi, size_t ui)
{
	unsigned char *m;

	if (pl->submitted == NULL)
		return false;
	if (pl->subm[oi] == NULL)
		pl->subm[oi] = xcalloc(pl->c->nunits, 1);
	m = pl->subm[oi];
	if (m[ui] == 0)
		m[ui] = pl->submitted(pl->sctx, pl->occ.v[oi].id,
				      pl->c->units[ui].id) ? 2 : 1;
	return m[ui] == 2;
}

/* Rows of one (event, unit) in audience, channel order; non-zero = stop. */
static int
emit(struct plan *pl, const struct pevent *e, size_t ui, plan_fn fn,
     void *ctx)
{
	static const enum audience auds[AUD_COUNT] = {
		AUD_UNIT, AUD_HEAD, AUD_SECRETARIAT, AUD_CHIEF
	};
	const struct conf *c = pl->c;
	const struct unit *u = &c->units[ui];
	struct plan_row row;
	int r;

	row.at = e->at;
	row.occ = &pl->occ.v[e->occ];
	row.unit = u;
	row.step = &e->st;
	for (size_t i = 0; i < AUD_COUNT; i++) {
		const char *rcpt = NULL;

		if (e->st.aud & auds[i]) {
			switch (auds[i]) {
			case AUD_UNIT:
				rcpt = unit_recipients(pl, ui);
				break;
			case AUD_HEAD:
				rcpt = u->head;
				break;
			case AUD_SECRETARIAT:
				rcpt = c->secretariat.email;
				break;
			case AUD_CHIEF:
				rcpt = c->secretariat.chief;
				break;
			}
		}
		if (rcpt != NULL && *rcpt != '\0') {
			row.aud = auds[i];
			row.ch = CH_EMAIL;
			row.recipients = rcpt;
			r = fn(ctx, &row);
			if (r != 0)
				return r;
		}
		/* the unit's chat hears every notice about it */
		if (auds[i] == AUD_UNIT && u->webhook != NULL &&
		    *u->webhook != '\0') {
			row.aud = AUD_UNIT;
			row.ch = CH_WEBHOOK;
			row.recipients = u->webhook;
			r = fn(ctx, &row);
			if (r != 0)
				return r;
		}
	}
	return 0;
}


static ssize_t
plan_find(const struct plan *pl, size_t n, const char *id)
{
	for (size_t i = 0; i < n; i++)
		if (strcmp(pl->occ.v[i].id, id) == 0)
			return (ssize_t)i;
	return -1;
}

/* Applies the extensions to the collected occurrences, adds those only
 * an extension brings near the window, and one occurrence per unit with
 * a deadline of its own.  gen_steps drops what is outside the window. */
static void
plan_extensions(struct plan *pl)
{
	const struct conf *c = pl->c;
	size_t nonly = 0;

	for (size_t i = 0; i < pl->occ.n; i++)
		sched_extend(c, &pl->occ.v[i], pl->ext, pl->next, NULL);
	for (size_t i = 0; i < pl->next; i++) {
		const struct extension *e = &pl->ext[i];
		struct occ o;

		if (e->unit[0] != '\0' ||
		    plan_find(pl, pl->occ.n, e->occurrence) >= 0)
			continue;
		if (sched_occurrence(c, e->occurrence, &o) < 0)
			continue;
		sched_extend(c, &o, pl->ext, pl->next, NULL);
		*ovec_push(&pl->occ) = o;
	}
	pl->nbase = pl->occ.n;
	pl->only = xcalloc(pl->next + 1, sizeof(*pl->only));
	pl->skip = xcalloc(pl->nbase + 1, sizeof(*pl->skip));
	for (size_t i = 0; i < pl->next; i++) {
		const struct extension *e = &pl->ext[i];
		const struct unit *u;
		struct occ o;
		ssize_t base;
		size_t ui;

		if (e->unit[0] == '\0' || (u = conf_unit(c, e->unit)) == NULL)
			continue;
		ui = (size_t)(u - c->units);
		if (sched_occurrence(c, e->occurrence, &o) < 0 ||
		    !conf_cycle_has(o.cycle, ui))
			continue;
		sched_extend(c, &o, pl->ext, pl->next, e->unit);
		base = plan_find(pl, pl->nbase, e->occurrence);
		if (base >= 0) {
			if (pl->skip[base] == NULL)
				pl->skip[base] = xcalloc(c->nunits + 1, 1);
			pl->skip[base][ui] = true;
		}
		*ovec_push(&pl->occ) = o;
		pl->only[nonly++] = ui;
	}
}

/* whether unit ui gets occurrence oi's notices (see plan_extensions) */
static bool
plan_for(const struct plan *pl, size_t oi, size_t ui)
{
	if (oi >= pl->nbase)
		return pl->only[oi - pl->nbase] == ui;
	return pl->skip == NULL || pl->skip[oi] == NULL || !pl->skip[oi][ui];
}

static void
plan_collect(struct plan *pl, tstamp from, tstamp to)
{
	const struct conf *c = pl->c;
	struct dvec tmp = { 0 };
	struct gen *g = xmalloc(sizeof(*g));
	int64_t dfrom = local_day(c, from), dto = local_day(c, to);

	for (size_t i = 0; i < c->ncycles; i++) {
		int64_t lo, hi;

		sched_policy_span(c->cycles[i].policy, &lo, &hi);
		/* a step is on due + days, moved by quiet hours and off
		 * non-working days by up to WORKDAY_CAP + 1 */
		cycle_occs(c, &c->cycles[i], dfrom - hi - WORKDAY_CAP - 2,
			   dto - lo + WORKDAY_CAP + 2, &tmp, &pl->occ);
	}
	free(tmp.v);
	plan_extensions(pl);
	for (size_t oi = 0; oi < pl->occ.n; oi++) {
		gen_steps(c, &pl->occ.v[oi], g);
		for (size_t k = 0; k < g->n; k++) {
			struct pevent *e;

			if (g->v[k].st.at < from || g->v[k].st.at >= to)
				continue;
			if (pl->nev == pl->capev) {
				pl->capev = pl->capev ? pl->capev * 2 : 64;
				pl->ev = xrealloc(pl->ev,
						  pl->capev * sizeof(*pl->ev));
			}
			e = &pl->ev[pl->nev++];
			e->at = g->v[k].st.at;
			e->occ = oi;
			e->st = g->v[k].st;
		}
	}
	free(g);
}

int
sched_plan(const struct conf *c, tstamp from, tstamp to, const char *unit_id,
	   submitted_fn submitted, void *sctx, plan_fn fn, void *ctx)
{
	return sched_plan_ext(c, from, to, unit_id, NULL, 0, submitted, sctx,
			      fn, ctx);
}

int
sched_plan_ext(const struct conf *c, tstamp from, tstamp to,
	       const char *unit_id, const struct extension *ext, size_t next,
	       submitted_fn submitted, void *sctx, plan_fn fn, void *ctx)
{
	struct plan pl;
	size_t only = 0, *order = NULL, **members = NULL, *nmembers = NULL;
	int rc = 0;

	if (unit_id != NULL) {
		const struct unit *u = conf_unit(c, unit_id);

		if (u == NULL)
			return -1;
		only = (size_t)(u - c->units);
	}
	from = clamp_t(from);
	to = clamp_t(to);
	if (to <= from)
		return 0;

	memset(&pl, 0, sizeof(pl));
	pl.c = c;
	pl.submitted = submitted;
	pl.sctx = sctx;
	pl.ext = ext;
	pl.next = ext != NULL ? next : 0;
	plan_collect(&pl, from, to);
	if (pl.nev == 0)
		goto out;

	qsort_r(pl.ev, pl.nev, sizeof(*pl.ev), cmp_event, &pl);

	/* units by id, once; each cycle's members in that order */
	pl.rank = xcalloc(c->nunits ? c->nunits : 1, sizeof(*pl.rank));
	pl.joined = xcalloc(c->nunits ? c->nunits : 1, sizeof(*pl.joined));
	pl.subm = xcalloc(pl.occ.n, sizeof(*pl.subm));
	members = xcalloc(c->ncycles ? c->ncycles : 1, sizeof(*members));
	nmembers = xcalloc(c->ncycles ? c->ncycles : 1, sizeof(*nmembers));
	if (unit_id == NULL) {
		const size_t *sorted = c->unit_index;

		if (sorted == NULL) {
			order = xcalloc(c->nunits ? c->nunits : 1,
					sizeof(*order));
			for (size_t i = 0; i < c->nunits; i++)
				order[i] = i;
			qsort_r(order, c->nunits, sizeof(*order), cmp_unit_id,
				&pl);
			sorted = order;
		}
		for (size_t i = 0; i < c->nunits; i++)
			pl.rank[sorted[i]] = i;
	}
	for (size_t i = 0; i < c->ncycles; i++) {
		const struct cycle *cy = &c->cycles[i];

		if (unit_id != NULL) {
			if (conf_cycle_has(cy, only)) {
				members[i] = xmalloc(sizeof(size_t));
				members[i][0] = only;
				nmembers[i] = 1;
			}
			continue;
		}
		members[i] = xcalloc(cy->nunits ? cy->nunits : 1,
				     sizeof(size_t));
		memcpy(members[i], cy->units, cy->nunits * sizeof(size_t));
		nmembers[i] = cy->nunits;
		qsort_r(members[i], nmembers[i], sizeof(size_t), cmp_rank,
			&pl);
	}

	/* groups of events sharing (time, occurrence): unit-major inside */
	for (size_t i = 0; i < pl.nev;) {
		size_t j = i + 1, oi = pl.ev[i].occ, ci;

		while (j < pl.nev && pl.ev[j].at == pl.ev[i].at &&
		       pl.ev[j].occ == oi)
			j++;
		ci = (size_t)(pl.occ.v[oi].cycle - c->cycles);
		for (size_t m = 0; m < nmembers[ci]; m++) {
			size_t ui = members[ci][m];

			if (!plan_for(&pl, oi, ui) || is_submitted(&pl, oi, ui))
				continue;
			for (size_t k = i; k < j; k++)
				if (emit(&pl, &pl.ev[k], ui, fn, ctx) != 0)
					goto out;
		}
		i = j;
	}
out:
	for (size_t i = 0; members != NULL && i < c->ncycles; i++)
		free(members[i]);
	free(members);
	free(nmembers);
	free(order);
	for (size_t i = 0; pl.joined != NULL && i < c->nunits; i++)
		free(pl.joined[i]);
	free(pl.joined);
	for (size_t i = 0; pl.subm != NULL && i < pl.occ.n; i++)
		free(pl.subm[i]);
	free(pl.subm);
	for (size_t i = 0; pl.skip != NULL && i < pl.nbase; i++)
		free(pl.skip[i]);
	free(pl.skip);
	free(pl.only);
	free(pl.rank);
	free(pl.ev);
	free(pl.occ.v);
	return rc;
}

/* ------------------------------------------------------ moved due dates */

/*
 * The matching rule (README, "Moved due dates").  An id with recorded state
 * that the configuration no longer has was moved, not dropped, when its
 * cycle still exists and has a new date near it: a nominal date of the
 * same cycle within MOVE_MAX days that has no recorded state of its own.
 * Pairs are taken best first: the same year and month before another
 * month (13/03 -> 15/03, and a monthly day 05 -> 28 stays in its month),
 * then the nearer date, then the earlier id; each date inherits once.
 * Everything else vanishes, its state kept under the old id.
 */
#define MOVE_MAX 45

struct mpair {
	size_t v;                /* index into the vanished list */
	int64_t to;              /* candidate day */
	int other_month;
	int64_t dist;
};

struct vanished {
	const struct cycle *cy;
	const char *id;
	int64_t day;
	bool done;
};

static int
cmp_mpair(const void *a, const void *b)
{
	const struct mpair *x = a, *y = b;

	if (x->other_month != y->other_month)
		return x->other_month - y->other_month;
	if (x->dist != y->dist)
		return x->dist < y->dist ? -1 : 1;
	if (x->v != y->v)
		return x->v < y->v ? -1 : 1;
	return (x->to > y->to) - (x->to < y->to);
}

static int
cmp_move(const void *a, const void *b)
{
	return strcmp(((const struct occ_move *)a)->from,
		      ((const struct occ_move *)b)->from);
}

static bool
id_listed(char *const *ids, size_t n, const char *id)
{
	size_t lo = 0, hi = n;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		int r = strcmp(ids[mid], id);

		if (r == 0)
			return true;
		if (r < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	return false;
}

int
sched_moves(const struct conf *c, char *const *ids, size_t nids,
	    struct occ_move **out, size_t *n)
{
	struct vanished *van = xcalloc(nids ? nids : 1, sizeof(*van));
	struct occ_move *mv = xcalloc(nids ? nids : 1, sizeof(*mv));
	struct mpair *pairs = NULL;
	int64_t *claimed = NULL;
	const struct cycle **claimed_cy = NULL;
	size_t nvan = 0, nmv = 0, npairs = 0, cap = 0, nclaimed = 0;
	struct dvec tmp = { 0 };
	struct occ probe;

	for (size_t i = 0; i < nids; i++) {
		const char *slash = strrchr(ids[i], '/');
		char cid[72];
		struct ymd date;
		const struct cycle *cy;
		size_t clen;

		if (slash == NULL || (clen = (size_t)(slash - ids[i])) == 0 ||
		    clen >= sizeof(cid) || parse_ymd(slash + 1, &date) < 0)
			continue;       /* not an occurrence id: not ours */
		memcpy(cid, ids[i], clen);
		cid[clen] = '\0';
		cy = conf_cycle(c, cid);
		if (cy != NULL && is_nominal(cy, date))
			continue;       /* still there */
		if (cy != NULL && sched_occurrence(c, ids[i], &probe) == 0)
			continue;       /* moved by an earlier reload */
		if (cy == NULL) {
			struct occ_move *m = &mv[nmv++];

			snprintf(m->from, sizeof(m->from), "%s", ids[i]);
			m->why = "its cycle is no longer configured";
			continue;
		}
		van[nvan].cy = cy;
		van[nvan].id = ids[i];
		van[nvan].day = day_of(date);
		nvan++;
	}
	for (size_t v = 0; v < nvan; v++) {
		struct ymd from = civil_from_days(van[v].day);

		nominal_range(van[v].cy, van[v].day - MOVE_MAX,
			      van[v].day + MOVE_MAX, &tmp);
		for (size_t k = 0; k < tmp.n; k++) {
			struct ymd to = civil_from_days(tmp.v[k]);
			char id[OCC_ID_MAX];

			snprintf(id, sizeof(id), "%s/%04d-%02d-%02d",
				 van[v].cy->id, to.y, to.m, to.d);
			if (id_listed(ids, nids, id))
				continue;       /* has state of its own */
			if (npairs == cap) {
				cap = cap ? 2 * cap : 16;
				pairs = xrealloc(pairs, cap * sizeof(*pairs));
			}
			pairs[npairs].v = v;
			pairs[npairs].to = tmp.v[k];
			pairs[npairs].other_month = !(to.y == from.y &&
						      to.m == from.m);
			pairs[npairs].dist = tmp.v[k] > van[v].day
				? tmp.v[k] - van[v].day : van[v].day - tmp.v[k];
			npairs++;
		}
	}
	free(tmp.v);
	if (npairs > 1)
		qsort(pairs, npairs, sizeof(*pairs), cmp_mpair);
	claimed = xcalloc(nvan ? nvan : 1, sizeof(*claimed));
	claimed_cy = xcalloc(nvan ? nvan : 1, sizeof(*claimed_cy));
	for (size_t i = 0; i < npairs; i++) {
		struct vanished *vn = &van[pairs[i].v];
		bool taken = false;
		struct ymd to;
		struct occ_move *m;

		if (vn->done)
			continue;
		for (size_t k = 0; k < nclaimed && !taken; k++)
			taken = claimed_cy[k] == vn->cy &&
				claimed[k] == pairs[i].to;
		if (taken)
			continue;
		claimed_cy[nclaimed] = vn->cy;
		claimed[nclaimed++] = pairs[i].to;
		vn->done = true;
		to = civil_from_days(pairs[i].to);
		m = &mv[nmv++];
		snprintf(m->from, sizeof(m->from), "%s", vn->id);
		snprintf(m->to, sizeof(m->to), "%s/%04d-%02d-%02d",
			 vn->cy->id, to.y, to.m, to.d);
	}
	for (size_t v = 0; v < nvan; v++) {
		if (van[v].done)
			continue;
		snprintf(mv[nmv].from, sizeof(mv[nmv].from), "%s", van[v].id);
		mv[nmv].why = "no new date of its cycle is near it";
		nmv++;
	}
	free(claimed);
	free(claimed_cy);
	free(pairs);
	free(van);
	if (nmv > 1)
		qsort(mv, nmv, sizeof(*mv), cmp_move);
	*out = mv;
	*n = nmv;
	return 0;
}
