/*
 * holiday.c - non-working days from an .ics file of all-day VEVENTs.
 *
 * The government publishes the days off every year, so they are data the
 * admin edits, never code.  Each VEVENT is a block of dates: DTSTART as a
 * DATE, DTEND exclusive (or DURATION, or one day), optionally repeated by an
 * RRULE/RDATE minus EXDATEs.  The result is a sorted set of day numbers.
 */
#include "cutoffd.h"

#include <errno.h>
#include <libical/ical.h>
#include <stdlib.h>
#include <string.h>

#define HOL_MAX_DAYS 100000    /* total, over every event and repetition */
#define HOL_MAX_BLOCK 366      /* days one event instance may span */
#define HOL_MAX_YEAR 2100
#define HOL_MAX_ITER 1000000   /* recurrence iterations, whole file */
#define HOL_MAX_FILE (4 << 20)

struct hacc {
	int64_t *days;
	size_t n, cap;
	bool full;
};

/* One parse: where errors go and what they can point at. */
struct hctx {
	const char *file;
	const char *text;       /* NUL-terminated copy of the input */
	struct hacc acc;
	struct diag *d;
	int ncal;
	long budget;            /* recurrence iterations left */
};

static void
hacc_add(struct hacc *a, int64_t day)
{
	if (a->n >= HOL_MAX_DAYS) {
		a->full = true;
		return;
	}
	if (a->n == a->cap) {
		a->cap = a->cap ? a->cap * 2 : 64;
		a->days = xrealloc(a->days, a->cap * sizeof(*a->days));
	}
	a->days[a->n++] = day;
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

static void
add_block(struct hacc *a, int64_t start, int64_t len, const int64_t *ex,
	  size_t nex)
{
	if (is_excluded(start, ex, nex))
		return;
	for (int64_t i = 0; i < len && !a->full; i++)
		hacc_add(a, start + i);
}

/* An event being read: its label and line for messages. */
struct hev {
	icalcomponent *ev;
	char *label;
	int line;
};

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
		while (!h->acc.full) {
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
			add_block(&h->acc, ical_day(t), len, ex, nex);
		}
		icalrecur_iterator_free(it);
	}
	return 0;
}

static int
parse_event(struct hctx *h, icalcomponent *ev)
{
	struct hev e = { ev, NULL, 0 };
	icalproperty *ps;
	struct icaltimetype start;
	int64_t len, *ex = NULL;
	size_t nex = 0, cap = 0;
	int rc = -1;

	if (icalcomponent_get_status(ev) == ICAL_STATUS_CANCELLED)
		return 0;
	e.label = event_label(ev);
	e.line = uid_line(h->text, icalcomponent_get_uid(ev));
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
		add_block(&h->acc, ical_day(start), len, ex, nex);
	}
	for (icalproperty *p = icalcomponent_get_first_property(
		     ev, ICAL_RDATE_PROPERTY);
	     p != NULL;
	     p = icalcomponent_get_next_property(ev, ICAL_RDATE_PROPERTY)) {
		struct icaldatetimeperiodtype r = icalproperty_get_rdate(p);

		if (date_ok(r.time))
			add_block(&h->acc, ical_day(r.time), len, ex, nex);
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
	if (h.acc.full)
		diag_add(d, name, 0, "more than %d holidays", HOL_MAX_DAYS);
	if (d->n != errs)
		goto out;

	if (h.acc.n > 0) {
		size_t w = 1;

		qsort(h.acc.days, h.acc.n, sizeof(*h.acc.days), cmp_int64);
		for (size_t i = 1; i < h.acc.n; i++)
			if (h.acc.days[i] != h.acc.days[w - 1])
				h.acc.days[w++] = h.acc.days[i];
		h.acc.n = w;
	}
	out->days = h.acc.days;
	out->n = h.acc.n;
	h.acc.days = NULL;
	rc = 0;
out:
	free(h.acc.days);
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
	h->days = NULL;
	h->n = 0;
}

bool
holidays_has(const struct holidays *h, int64_t day)
{
	size_t lo = 0, hi;

	if (h == NULL || h->days == NULL)
		return false;
	hi = h->n;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;

		if (h->days[mid] < day)
			lo = mid + 1;
		else if (h->days[mid] > day)
			hi = mid;
		else
			return true;
	}
	return false;
}
