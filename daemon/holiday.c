/*
 * holiday.c - non-working days from an .ics file of all-day VEVENTs.
 *
 * The government publishes the days off every year, so they are data the
 * admin edits, never code.  Each VEVENT is a block of dates: DTSTART as a
 * DATE, DTEND exclusive (or DURATION, or one day), optionally repeated by an
 * RRULE/RDATE minus EXDATEs.  The result is a sorted set of day numbers.
 *
 * An event with CATEGORIES:WORKDAY says the opposite: those days are worked
 * although they would be off (a Saturday worked in exchange for a bridge
 * day).  A day may not be both; that is a mistake in the file.  The file
 * also tells how far it reaches: the last year one of its dated (not
 * recurring) events falls in, so that a horizon past it can be warned of.
 */
#include "cutoffd.h"

#include <errno.h>
#include <libical/ical.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define HOL_MAX_DAYS 100000    /* total, over every event and repetition */
#define HOL_MAX_BLOCK 366      /* days one event instance may span */
#define HOL_MAX_YEAR 2100
#define HOL_MAX_ITER 1000000   /* recurrence iterations, whole file */
#define HOL_MAX_FILE (4 << 20)
#define HOL_DEFAULT_HORIZON (400 * 86400)  /* as conf.c's default */

/* Days as read, with the line of their event for messages. */
struct hent {
	int64_t day;
	int line;
};

struct hacc {
	struct hent *v;
	size_t n, cap;
	bool full;
};

/* One parse: where errors go and what they can point at. */
struct hctx {
	const char *file;
	const char *text;       /* NUL-terminated copy of the input */
	struct hacc acc;        /* days off */
	struct hacc work;       /* WORKDAY days */
	size_t total;           /* days of both, against HOL_MAX_DAYS */
	int last_year;          /* of the dated (non-recurring) events */
	struct diag *d;
	int ncal;
	long budget;            /* recurrence iterations left */
};

static void
hacc_add(struct hacc *a, int64_t day, int line)
{
	if (a->n >= HOL_MAX_DAYS) {
		a->full = true;
		return;
	}
	if (a->n == a->cap) {
		a->cap = a->cap ? a->cap * 2 : 64;
		a->v = xrealloc(a->v, a->cap * sizeof(*a->v));
	}
	a->v[a->n].day = day;
	a->v[a->n].line = line;
	a->n++;
}

static int
hent_cmp(const void *pa, const void *pb)
{
	const struct hent *a = pa, *b = pb;

	if (a->day != b->day)
		return a->day < b->day ? -1 : 1;
	return (a->line > b->line) - (a->line < b->line);
}

/* Sorts, drops repeated days (keeping the first line) and returns the bare
 * day numbers, xmalloc'ed (NULL when empty). */
static int64_t *
hacc_days(struct hacc *a, size_t *n)
{
	int64_t *days;
	size_t w = 0;

	*n = 0;
	if (a->n == 0)
		return NULL;
	qsort(a->v, a->n, sizeof(*a->v), hent_cmp);
	days = xmalloc(a->n * sizeof(*days));
	for (size_t i = 0; i < a->n; i++)
		if (w == 0 || days[w - 1] != a->v[i].day)
			days[w++] = a->v[i].day;
	*n = w;
	return days;
}


/* libical keeps no line numbers: find the event's UID line in the text so
 * the admin is pointed at the right place (0 when not found). */
static int
uid_line(const char *text, const char *uid)
{
	size_t ulen;
	int line = 1;

	if (uid == NULL || *uid == '\0')
		return 0;
	ulen = strlen(uid);
	for (const char *p = text; *p != '\0'; p++) {
		if (p == text || p[-1] == '\n') {
			if (strncmp(p, "UID:", 4) == 0 &&
			    strncmp(p + 4, uid, ulen) == 0 &&
			    (p[4 + ulen] == '\r' || p[4 + ulen] == '\n' ||
			     p[4 + ulen] == '\0'))
				return line;
		}
		if (*p == '\n')
			line++;
	}
	return 0;
}

/* "UID x (SUMMARY)" for messages, escaped because the file is untrusted */
static char *
event_label(icalcomponent *ev)
{
	const char *uid = icalcomponent_get_uid(ev);
	const char *sum = icalcomponent_get_summary(ev);
	struct buf b;

	buf_init(&b);
	buf_puts(&b, "event");
	if (uid != NULL && *uid != '\0') {
		buf_puts(&b, " ");
		buf_put_escaped(&b, uid, 80);
	}
	if (sum != NULL && *sum != '\0') {
		buf_puts(&b, " (");
		buf_put_escaped(&b, sum, 80);
		buf_puts(&b, ")");
	}
	return buf_steal(&b);
}

static bool
date_ok(struct icaltimetype t)
{
	struct ymd d = { t.year, t.month, t.day };

	return !icaltime_is_null_time(t) && ymd_valid(d) && t.year >= 1900 &&
	       t.year <= HOL_MAX_YEAR;
}

static int64_t
ical_day(struct icaltimetype t)
{
	return days_from_civil(t.year, t.month, t.day);
}

/* ex is sorted */
static bool
is_excluded(int64_t day, const int64_t *ex, size_t nex)
{
	return nex > 0 && bsearch(&day, ex, nex, sizeof(*ex), cmp_int64) != NULL;
}

/* An event being read: its label and line for messages, and where its
 * days go. */
struct hev {
	icalcomponent *ev;
	char *label;
	int line;
	struct hacc *to;        /* &h->acc, or &h->work for a WORKDAY */
};

static void
add_block(struct hctx *h, struct hev *e, int64_t start, int64_t len,
	  const int64_t *ex, size_t nex)
{
	if (is_excluded(start, ex, nex))
		return;
	for (int64_t i = 0; i < len && !e->to->full; i++) {
		if (h->total >= HOL_MAX_DAYS) {
			e->to->full = true;
			break;
		}
		h->total++;
		hacc_add(e->to, start + i, e->line);
	}
}

/* A dated block: it counts for the years the file covers. */
static void
add_dated(struct hctx *h, struct hev *e, int64_t start, int64_t len,
	  const int64_t *ex, size_t nex)
{
	struct ymd last = civil_from_days(start + len - 1);

	if (last.y > h->last_year)
		h->last_year = last.y;
	add_block(h, e, start, len, ex, nex);
}

/* CATEGORIES holds a comma separated list, possibly over several
 * properties: is WORKDAY one of its items? */
static bool
is_workday_event(icalcomponent *ev)
{
	for (icalproperty *p = icalcomponent_get_first_property(
		     ev, ICAL_CATEGORIES_PROPERTY);
	     p != NULL;
	     p = icalcomponent_get_next_property(ev, ICAL_CATEGORIES_PROPERTY)) {
		const char *v = icalproperty_get_categories(p);

		while (v != NULL && *v != '\0') {
			size_t n = strcspn(v, ",");
			const char *a = v, *b = v + n;

			while (a < b && (*a == ' ' || *a == '\t'))
				a++;
			while (b > a && (b[-1] == ' ' || b[-1] == '\t'))
				b--;
			if (b - a == 7 && strncasecmp(a, "WORKDAY", 7) == 0)
				return true;
			v += n;
			if (*v == ',')
				v++;
		}
	}
	return false;
}

/* Block length in days from DTEND or DURATION; 1 when neither. */
static int
block_length(struct hctx *h, struct hev *e, struct icaltimetype start,
	     int64_t *len)
{
	icalproperty *pe = icalcomponent_get_first_property(e->ev,
							    ICAL_DTEND_PROPERTY);
	icalproperty *pd = icalcomponent_get_first_property(e->ev,
							    ICAL_DURATION_PROPERTY);
	int64_t n = 1;

	if (pe != NULL) {
		struct icaltimetype end = icalproperty_get_dtend(pe);

		if (!end.is_date || !date_ok(end)) {
			diag_add(h->d, h->file, e->line,
				 "%s: DTEND must be a date", e->label);
			return -1;
		}
		n = ical_day(end) - ical_day(start);
	} else if (pd != NULL) {
		struct icaldurationtype dur = icalproperty_get_duration(pd);
		int secs = icaldurationtype_as_int(dur);

		if (icaldurationtype_is_bad_duration(dur) || secs % 86400 != 0) {
			diag_add(h->d, h->file, e->line,
				 "%s: DURATION must be whole days", e->label);
			return -1;
		}
		n = secs / 86400;
	}
	if (n < 1 || n > HOL_MAX_BLOCK) {
		diag_add(h->d, h->file, e->line,
			 "%s: must last 1 to %d days (DTEND is exclusive)",
			 e->label, HOL_MAX_BLOCK);
		return -1;
	}
	*len = n;
	return 0;
}

static int
expand_rrule(struct hctx *h, struct hev *e, struct icaltimetype start,
	     int64_t len, const int64_t *ex, size_t nex)
{
	for (icalproperty *p = icalcomponent_get_first_property(
		     e->ev, ICAL_RRULE_PROPERTY);
	     p != NULL;
	     p = icalcomponent_get_next_property(e->ev, ICAL_RRULE_PROPERTY)) {
		struct icalrecurrencetype r = icalproperty_get_rrule(p);
		icalrecur_iterator *it;

		/* sub-day rules make no sense for dates and only burn time */
		if (r.freq != ICAL_YEARLY_RECURRENCE &&
		    r.freq != ICAL_MONTHLY_RECURRENCE &&
		    r.freq != ICAL_WEEKLY_RECURRENCE &&
		    r.freq != ICAL_DAILY_RECURRENCE) {
			diag_add(h->d, h->file, e->line,
				 "%s: RRULE must be YEARLY, MONTHLY, WEEKLY or DAILY",
				 e->label);
			return -1;
		}
		it = icalrecur_iterator_new(r, start);
		if (it == NULL) {
			diag_add(h->d, h->file, e->line, "%s: bad RRULE",
				 e->label);
			return -1;
		}
		while (!e->to->full) {
			struct icaltimetype t;

			/* a rule whose instances are all excluded must still
			 * end: the budget is shared by the whole file */
			if (h->budget-- <= 0) {
				diag_add(h->d, h->file, e->line,
					 "%s: recurrences expand too far",
					 e->label);
				icalrecur_iterator_free(it);
				return -1;
			}
			t = icalrecur_iterator_next(it);
			if (icaltime_is_null_time(t) || !date_ok(t))
				break;
			add_block(h, e, ical_day(t), len, ex, nex);
		}
		icalrecur_iterator_free(it);
	}
	return 0;
}

static int
parse_event(struct hctx *h, icalcomponent *ev)
{
	struct hev e = { ev, NULL, 0, &h->acc };
	icalproperty *ps;
	struct icaltimetype start;
	int64_t len, *ex = NULL;
	size_t nex = 0, cap = 0;
	int rc = -1;

	if (icalcomponent_get_status(ev) == ICAL_STATUS_CANCELLED)
		return 0;
	e.label = event_label(ev);
	e.line = uid_line(h->text, icalcomponent_get_uid(ev));
	if (is_workday_event(ev))
		e.to = &h->work;
	ps = icalcomponent_get_first_property(ev, ICAL_DTSTART_PROPERTY);
	if (ps == NULL) {
		diag_add(h->d, h->file, e.line, "%s: no valid DTSTART",
			 e.label);
		goto out;
	}
	start = icalproperty_get_dtstart(ps);
	if (!start.is_date) {
		diag_add(h->d, h->file, e.line,
			 "%s: DTSTART has a time; holidays must be all-day "
			 "(DTSTART;VALUE=DATE:YYYYMMDD)", e.label);
		goto out;
	}
	if (!date_ok(start)) {
		diag_add(h->d, h->file, e.line, "%s: bad DTSTART date",
			 e.label);
		goto out;
	}
	if (block_length(h, &e, start, &len) < 0)
		goto out;

	for (icalproperty *p = icalcomponent_get_first_property(
		     ev, ICAL_EXDATE_PROPERTY);
	     p != NULL;
	     p = icalcomponent_get_next_property(ev, ICAL_EXDATE_PROPERTY)) {
		struct icaltimetype t = icalproperty_get_exdate(p);

		if (!date_ok(t))
			continue;
		if (nex == cap) {
			cap = cap ? cap * 2 : 8;
			ex = xrealloc(ex, cap * sizeof(*ex));
		}
		ex[nex++] = ical_day(t);
	}

	if (nex > 1)
		qsort(ex, nex, sizeof(*ex), cmp_int64);
	if (icalcomponent_get_first_property(ev, ICAL_RRULE_PROPERTY) != NULL) {
		/* the iterator yields DTSTART itself as the first instance */
		if (expand_rrule(h, &e, start, len, ex, nex) < 0)
			goto out;
	} else {
		add_dated(h, &e, ical_day(start), len, ex, nex);
	}
	for (icalproperty *p = icalcomponent_get_first_property(
		     ev, ICAL_RDATE_PROPERTY);
	     p != NULL;
	     p = icalcomponent_get_next_property(ev, ICAL_RDATE_PROPERTY)) {
		struct icaldatetimeperiodtype r = icalproperty_get_rdate(p);

		if (date_ok(r.time))
			add_dated(h, &e, ical_day(r.time), len, ex, nex);
	}
	rc = 0;
out:
	free(ex);
	free(e.label);
	return rc;
}

static int
walk(struct hctx *h, icalcomponent *c)
{
	int rc = 0;
	icalcomponent_kind k = icalcomponent_isa(c);

	if (k != ICAL_VCALENDAR_COMPONENT && k != ICAL_XROOT_COMPONENT)
		return 0;
	if (k == ICAL_VCALENDAR_COMPONENT)
		h->ncal++;
	for (icalcomponent *s = icalcomponent_get_first_component(
		     c, ICAL_ANY_COMPONENT);
	     s != NULL;
	     s = icalcomponent_get_next_component(c, ICAL_ANY_COMPONENT)) {
		icalcomponent_kind sk = icalcomponent_isa(s);

		/* a VEVENT only counts inside a VCALENDAR */
		if (sk == ICAL_VEVENT_COMPONENT) {
			if (k == ICAL_VCALENDAR_COMPONENT &&
			    parse_event(h, s) < 0)
				rc = -1;
		} else if (sk == ICAL_VCALENDAR_COMPONENT &&
			   k == ICAL_XROOT_COMPONENT) {
			if (walk(h, s) < 0)
				rc = -1;
		}
	}
	return rc;
}

int
holidays_parse(const char *name, const char *text, size_t len,
	       struct holidays *out, struct diag *d)
{
	struct hctx h = { 0 };
	icalcomponent *root;
	int64_t *days, *work;
	size_t n, nwork;
	char *copy;
	int rc = -1;
	size_t errs = d->n;

	h.file = name;
	h.d = d;
	h.budget = HOL_MAX_ITER;
	/* the parser wants a C string; the input may not be one */
	copy = xstrndup(text, len);
	h.text = copy;
	root = icalparser_parse_string(copy);
	if (root == NULL) {
		diag_add(d, name, 0, "not an iCalendar file");
		goto out;
	}
	walk(&h, root);
	icalcomponent_free(root);
	if (h.ncal == 0)
		diag_add(d, name, 0, "no VCALENDAR in the file");
	if (h.acc.full || h.work.full)
		diag_add(d, name, 0, "more than %d holidays", HOL_MAX_DAYS);
	if (d->n != errs)
		goto out;

	days = hacc_days(&h.acc, &n);
	work = hacc_days(&h.work, &nwork);
	/* both lists are sorted: a merge finds the days that are both */
	for (size_t i = 0, j = 0; i < h.acc.n && j < h.work.n;) {
		if (h.acc.v[i].day < h.work.v[j].day) {
			i++;
		} else if (h.acc.v[i].day > h.work.v[j].day) {
			j++;
		} else {
			char vn[16];

			ymd_format_vn(civil_from_days(h.work.v[j].day), vn);
			diag_add(d, name, h.work.v[j].line,
				 "%s is a WORKDAY and also a day off (line %d)",
				 vn, h.acc.v[i].line);
			/* the same day may repeat in either list */
			while (i < h.acc.n && h.acc.v[i].day == h.work.v[j].day)
				i++;
			j++;
		}
	}
	if (d->n != errs) {
		free(days);
		free(work);
		goto out;
	}
	out->days = days;
	out->n = n;
	out->work = work;
	out->nwork = nwork;
	out->last_year = h.last_year;
	rc = 0;
out:
	free(h.acc.v);
	free(h.work.v);
	free(copy);
	return rc;
}

int
holidays_load(const char *path, struct holidays *out, struct diag *d)
{
	char *text;
	size_t len;
	int rc;

	if (read_file(path, HOL_MAX_FILE, &text, &len) < 0) {
		diag_add(d, path, 0, "cannot read holidays: %s",
			 strerror(errno));
		return -1;
	}
	rc = holidays_parse(path, text, len, out, d);
	free(text);
	return rc;
}

void
holidays_free(struct holidays *h)
{
	if (h == NULL)
		return;
	free(h->days);
	free(h->work);
	h->days = h->work = NULL;
	h->n = h->nwork = 0;
	h->last_year = 0;
}

static bool
day_in(const int64_t *v, size_t n, int64_t day)
{
	size_t lo = 0, hi = n;

	if (v == NULL)
		return false;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;

		if (v[mid] < day)
			lo = mid + 1;
		else if (v[mid] > day)
			hi = mid;
		else
			return true;
	}
	return false;
}

bool
holidays_has(const struct holidays *h, int64_t day)
{
	return h != NULL && day_in(h->days, h->n, day);
}

bool
holidays_workday(const struct holidays *h, int64_t day)
{
	return h != NULL && day_in(h->work, h->nwork, day);
}

char *
holidays_coverage(const struct holidays *h, const char *path,
		  int horizon_year)
{
	if (h == NULL || h->last_year <= 0 || horizon_year <= h->last_year)
		return NULL;
	return xasprintf("%s: holidays file covers up to %d; horizon reaches "
			 "%d: dates after 31/12/%d assume no public holiday",
			 path != NULL ? path : "holidays", h->last_year,
			 horizon_year, h->last_year);
}

void
holidays_warn(const struct conf *c, tstamp now, FILE *f)
{
	int64_t hor = c->daemon.horizon > 0 ? c->daemon.horizon
					    : HOL_DEFAULT_HORIZON;
	struct ymd end;
	int minute, second;
	char *w;

	if (c->daemon.holidays == NULL)
		return;
	tz_local(c->tz, now + hor, &end, &minute, &second);
	w = holidays_coverage(&c->hol, c->daemon.holidays, end.y);
	if (w == NULL)
		return;
	if (f != NULL)
		fprintf(f, "warning: %s\n", w);
	else
		log_warn("%s", w);
	free(w);
}
