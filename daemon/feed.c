/*
 * feed.c - the iCalendar feeds: the secretariat's (every occurrence, who is
 * missing) and each unit's private one (its occurrences, alarms, done marks).
 *
 * Builders are pure views of (conf, state, now): they only read the state
 * store.  SEQUENCE and LAST-MODIFIED come from what is stored (a revision
 * per occurrence, bumped when its configuration changes, written by
 * feeds_revise at start, reload and stop, never on a GET), from the
 * submission history and from the alarms that have passed.  The cache
 * keeps one built document (doc.c) per feed; the HTTP server makes its
 * response once per document, so a request only queues a
 * reference-counted response; it is bounded by bytes (FEED_CACHE_BYTES), least recently
 * served out first.  The units' feed tokens are held in memory too.
 */
#include "cutoffd.h"

#include <libical/ical.h>
#include <sqlite3.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* The window slides and past alarms drop out, so even an untouched feed is
 * rebuilt this often (virtual seconds). */
#define FEED_TTL 3600
/* Bytes of built feeds kept (bodies and their bookkeeping): about 10,000
 * typical unit feeds.  More are built again when asked for. */
#define FEED_CACHE_BYTES (64u << 20)
/* feeds_revise records occurrences this far past the horizon, so that
 * those entering the window before the next reload have a stored
 * revision to grow from (virtual seconds). */
#define REVISE_AHEAD (62 * 86400)
/* Names listed per event in the secretariat feed before "and N more". */
#define LIST_MAX 100

#define FNV_INIT 0xcbf29ce484222325ULL

static uint64_t fnv(uint64_t h, const void *p, size_t n)
{
	const unsigned char *s = p;

	for (size_t i = 0; i < n; i++) {
		h ^= s[i];
		h *= 0x100000001b3ULL;
	}
	return h;
}

/* a field and a separator, so ("ab","c") and ("a","bc") differ */
static uint64_t fnv_str(uint64_t h, const char *s)
{
	if (s)
		h = fnv(h, s, strlen(s));
	return fnv(h, "", 1);
}

static uint64_t fnv_int(uint64_t h, int64_t v)
{
	char tmp[24];
	int n = snprintf(tmp, sizeof(tmp), "%lld;", (long long)v);

	return fnv(h, tmp, (size_t)n);
}

static uint64_t fnv_ymd(uint64_t h, struct ymd d)
{
	return fnv_int(h, days_from_civil(d.y, d.m, d.d));
}

/* ------------------------------------------------------------- revisions */

/* Everything about a cycle that shows in its events, O(its units): made
 * once per configuration by feeds_revise, never per request. */
static uint64_t cycle_hash(const struct conf *c, const struct cycle *cy)
{
	const struct policy *p = cy->policy;
	uint64_t h = FNV_INIT;

	h = fnv_str(h, "cycle2");
	h = fnv_str(h, cy->title);
	h = fnv_int(h, cy->due_minute);
	if (p) {
		h = fnv_int(h, p->at);
		h = fnv_int(h, p->quiet_from);
		h = fnv_int(h, p->quiet_to);
		for (size_t i = 0; i < p->nremind; i++) {
			h = fnv_int(h, p->remind[i].days);
			h = fnv_int(h, p->remind[i].aud);
		}
	}
	h = fnv_str(h, c->daemon.timezone);
	h = fnv_str(h, c->daemon.public_url);
	h = fnv_str(h, c->secretariat.name);
	h = fnv_str(h, c->secretariat.email);
	for (size_t i = 0; i < cy->nunits; i++) {
		const struct unit *u = &c->units[cy->units[i]];

		h = fnv_str(h, u->id);
		h = fnv_str(h, u->name);
	}
	return h;
}

/* The occurrence's own part on top of its cycle's: the dates. */
static void occ_hash(uint64_t ch, const struct occ *o, char out[17])
{
	uint64_t h = fnv_int(fnv_str(FNV_INIT, "occ2"), (int64_t)ch);

	h = fnv_ymd(h, o->nominal);
	h = fnv_ymd(h, o->due);
	h = fnv_int(h, o->due_at);
	h = fnv_int(h, o->has_period);
	if (o->has_period) {
		h = fnv_ymd(h, o->period_from);
		h = fnv_ymd(h, o->period_to);
	}
	snprintf(out, 17, "%016llx", (unsigned long long)h);
}

/* When an occurrence came into the window by time alone: what its
 * LAST-MODIFIED is until a revision is stored. */
static tstamp entered(const struct conf *c, const struct occ *o, tstamp now)
{
	tstamp t = o->due_at - c->daemon.horizon;

	return t < 0 ? 0 : t > now ? now : t;
}

/* Stores the revisions of the occurrences of c near the window: new ones
 * at seq 0, changed ones one higher.  With old (a reload), those of the
 * old configuration that were shown without a stored revision are stored
 * first as they were, so that a change made at this reload still counts. */
static int revise_conf(const struct conf *c, struct db *db, tstamp now,
		       bool update)
{
	struct occ *occs = NULL;
	uint64_t *ch;
	size_t n = 0;
	int rc = 0;

	if (sched_occurrences(c, now - c->daemon.history,
			      now + c->daemon.horizon + REVISE_AHEAD,
			      &occs, &n) < 0)
		return -1;
	ch = xcalloc(c->ncycles + 1, sizeof(*ch));
	for (size_t i = 0; i < c->ncycles; i++)
		ch[i] = cycle_hash(c, &c->cycles[i]);
	for (size_t i = 0; i < n && rc == 0; i++) {
		char hash[17];
		int64_t seq;
		tstamp mod;

		occ_hash(ch[occs[i].cycle - c->cycles], &occs[i], hash);
		/* a new one keeps the LAST-MODIFIED it was shown with */
		rc = db_rev_seed(db, "occ", occs[i].id, hash,
				 entered(c, &occs[i], now));
		if (rc == 0 && update)
			rc = db_rev(db, "occ", occs[i].id, hash, now, &seq,
				    &mod);
	}
	free(ch);
	free(occs);
	return rc;
}

int feeds_revise(const struct conf *old, const struct conf *c, struct db *db,
		 tstamp now)
{
	if (!c || !db)
		return -1;
	if (db_begin(db) < 0)
		return -1;
	if ((old && revise_conf(old, db, now, false) < 0) ||
	    revise_conf(c, db, now, true) < 0) {
		db_rollback(db);
		log_warn("feeds: cannot store revisions; SEQUENCE may lag");
		return -1;
	}
	if (db_commit(db) < 0) {
		db_rollback(db);
		return -1;
	}
	return 0;
}

struct rev {
	int64_t seq;
	int64_t conf_seq;        /* the part from config changes */
	tstamp modified;
};

static int occ_rev(const struct conf *c, struct db *db, const struct occ *o,
		   const char *unit, tstamp now, struct rev *out)
{
	int64_t seq = 0, ev;
	tstamp mod = 0, last;
	int rc;

	rc = db_rev_get(db, "occ", o->id, &seq, &mod);
	if (rc < 0)
		return -1;
	if (rc == 1) {           /* not stored yet (see feeds_revise) */
		seq = 0;
		mod = entered(c, o, now);
	}
	ev = db_sub_events(db, o->id, unit);
	if (ev < 0)
		return -1;
	last = db_sub_last_event(db, o->id, unit);
	if (last < 0)
		return -1;
	out->seq = seq + ev;
	/* an extension moves the alarms too (fewer may have passed) */
	out->conf_seq = seq + ev;
	out->modified = mod > last ? mod : last;
	return 0;
}

/* The latest instant at or before now at which time alone changed which
 * occurrences the window holds (for u's cycles, or all): one entered, or
 * one left.  The HTTP Last-Modified moves with it. */
static tstamp window_moved(const struct conf *c, const struct unit *u,
			   const struct occ *in, size_t nin, tstamp now)
{
	size_t idx = u ? (size_t)(u - c->units) : 0;
	struct occ *gone = NULL;
	size_t ngone = 0;
	tstamp t = 0, edge = now - c->daemon.history;

	for (size_t i = 0; i < nin; i++)
		if (!u || conf_cycle_has(in[i].cycle, idx)) {
			tstamp e = entered(c, &in[i], now);

			if (e > t)
				t = e;
		}
	if (sched_occurrences(c, edge - 400 * 86400LL, edge, &gone,
			      &ngone) == 0) {
		for (size_t i = 0; i < ngone; i++) {
			tstamp e = gone[i].due_at + c->daemon.history;

			if ((!u || conf_cycle_has(gone[i].cycle, idx)) &&
			    e > t && e <= now)
				t = e;
		}
		free(gone);
	}
	return t;
}

/* ------------------------------------------------------------ submissions */

struct sub {
	char unit[72];
	tstamp at;
};

struct subs {
	struct sub *v;
	size_t n, cap;
};

static int subs_add(void *ctx, const struct submission *s)
{
	struct subs *ss = ctx;

	if (ss->n == ss->cap) {
		ss->cap = ss->cap ? ss->cap * 2 : 16;
		ss->v = xrealloc(ss->v, ss->cap * sizeof(*ss->v));
	}
	snprintf(ss->v[ss->n].unit, sizeof(ss->v[ss->n].unit), "%s", s->unit);
	ss->v[ss->n].at = s->at;
	ss->n++;
	return 0;
}

static int sub_cmp(const void *a, const void *b)
{
	return strcmp(((const struct sub *)a)->unit,
		      ((const struct sub *)b)->unit);
}

static const struct sub *subs_find(const struct subs *ss, const char *unit)
{
	struct sub key;

	if (ss->n == 0)
		return NULL;
	snprintf(key.unit, sizeof(key.unit), "%s", unit);
	return bsearch(&key, ss->v, ss->n, sizeof(*ss->v), sub_cmp);
}

/* --------------------------------------------------------------- building */

static struct icaltimetype ical_utc(tstamp t)
{
	return icaltime_from_timet_with_zone((time_t)t, 0,
					     icaltimezone_get_utc_timezone());
}

static struct icaltimetype ical_date(struct ymd d)
{
	struct icaltimetype t = icaltime_null_date();

	t.year = d.y;
	t.month = d.m;
	t.day = d.d;
	return t;
}

/* local wall time of t in tz, as a floating value (TZID added apart) */
static struct icaltimetype ical_local(const struct tz *tz, tstamp t)
{
	struct icaltimetype it = icaltime_null_time();
	struct ymd d;
	int minute, sec;

	tz_local(tz, t, &d, &minute, &sec);
	it.year = d.y;
	it.month = d.m;
	it.day = d.d;
	it.hour = minute / 60;
	it.minute = minute % 60;
	it.second = sec;
	return it;
}

static struct icaldurationtype duration(int64_t secs)
{
	struct icaldurationtype d = icaldurationtype_null_duration();

	if (secs < 0) {
		d.is_neg = 1;
		secs = -secs;
	}
	d.days = (unsigned)(secs / 86400);
	d.hours = (unsigned)(secs % 86400 / 3600);
	d.minutes = (unsigned)(secs % 3600 / 60);
	d.seconds = (unsigned)(secs % 60);
	return d;
}

static void add_x(icalcomponent *comp, const char *name, const char *value)
{
	icalproperty *p = icalproperty_new_x(value);

	icalproperty_set_x_name(p, name);
	icalcomponent_add_property(comp, p);
}

/* "q1/2024-03-13" -> "q1-2024-03-13"; ids are [a-z0-9_-] so this stays
 * unique, and a unit id joins with '.' which no id contains. */
static void make_uid(const struct conf *c, const char *occ, const char *unit,
		     struct buf *b)
{
	const char *url = c->daemon.public_url, *h, *e;

	for (const char *s = occ; *s; s++)
		buf_putc(b, *s == '/' ? '-' : *s);
	if (unit) {
		buf_putc(b, '.');
		buf_puts(b, unit);
	}
	buf_putc(b, '@');
	h = url ? strstr(url, "://") : NULL;
	if (!h) {
		buf_puts(b, "cutoffd");
		return;
	}
	h += 3;
	if (*h == '[') {
		e = strchr(h, ']');
		e = e ? e + 1 : h + strlen(h);
	} else {
		e = h + strcspn(h, ":/?#");
	}
	if (e == h) {
		buf_puts(b, "cutoffd");
		return;
	}
	for (; h < e; h++) {
		char ch = *h;

		if (ch >= 'A' && ch <= 'Z')
			ch = (char)(ch - 'A' + 'a');
		buf_putc(b, ch);
	}
}

static icalcomponent *calendar_new(const struct conf *c, const char *who)
{
	icalcomponent *cal = icalcomponent_new(ICAL_VCALENDAR_COMPONENT);
	icalproperty *p;
	char *name;

	icalcomponent_add_property(cal, icalproperty_new_prodid(
		"-//cutoffd//cutoffd " CUTOFFD_VERSION "//VI"));
	icalcomponent_add_property(cal, icalproperty_new_version("2.0"));
	icalcomponent_add_property(cal, icalproperty_new_calscale("GREGORIAN"));
	icalcomponent_add_property(cal,
				   icalproperty_new_method(ICAL_METHOD_PUBLISH));
	name = who && *who ? xasprintf("Hạn báo cáo - %s", who)
			   : xstrdup("Hạn báo cáo");
	add_x(cal, "X-WR-CALNAME", name);
	icalcomponent_add_property(cal, icalproperty_new_name(name));
	free(name);
	if (c->daemon.timezone)
		add_x(cal, "X-WR-TIMEZONE", c->daemon.timezone);
	p = icalproperty_new_refreshinterval(duration(3600));
	icalproperty_add_parameter(p, icalparameter_new_value(
		ICAL_VALUE_DURATION));
	icalcomponent_add_property(cal, p);
	add_x(cal, "X-PUBLISHED-TTL", "PT1H");
	return cal;
}

/* The event's time: all-day on the effective due date when the cycle has
 * no due time (floating dates show on the right day everywhere), else a
 * 30-minute block ending at the due time in the configured zone.
 * Returns the start instant that relative alarm triggers count from. */
static tstamp event_times(const struct conf *c, const struct occ *o,
			  icalcomponent *ev, bool *timed)
{
	const char *tzid = tz_name(c->tz);
	icalproperty *p;
	tstamp start;

	if (o->cycle->due_minute >= 1440) {
		icalcomponent_add_property(ev,
			icalproperty_new_dtstart(ical_date(o->due)));
		icalcomponent_add_property(ev, icalproperty_new_dtend(
			ical_date(ymd_add_days(o->due, 1))));
		*timed = false;
		return tz_mktime(c->tz, o->due, 0);
	}
	start = o->due_at - 1800;
	p = icalproperty_new_dtstart(ical_local(c->tz, start));
	icalproperty_add_parameter(p, icalparameter_new_tzid(tzid));
	icalcomponent_add_property(ev, p);
	p = icalproperty_new_dtend(ical_local(c->tz, o->due_at));
	icalproperty_add_parameter(p, icalparameter_new_tzid(tzid));
	icalcomponent_add_property(ev, p);
	*timed = true;
	return start;
}

static void describe_due(const struct conf *c, const struct occ *o,
			 struct buf *b)
{
	char d1[16], d2[24];

	ymd_format_vn(o->due, d1);
	if (o->cycle->due_minute >= 1440) {
		buf_printf(b, "Hạn nộp: hết ngày %s\n", d1);
	} else {
		tz_format_vn(c->tz, o->due_at, d2);
		buf_printf(b, "Hạn nộp: %s\n", d2);
	}
	if (o->extended) {
		ymd_format_vn(o->was_due, d1);
		buf_printf(b, "(Đã gia hạn; hạn trước đây %s.)\n", d1);
	} else if (ymd_cmp(o->due, o->nominal) != 0) {
		ymd_format_vn(o->nominal, d1);
		buf_printf(b, "(Hạn theo kế hoạch %s trùng ngày nghỉ.)\n", d1);
	}
	if (o->has_period) {
		ymd_format_vn(o->period_from, d1);
		ymd_format_vn(o->period_to, d2);
		buf_printf(b, "Số liệu từ %s đến %s\n", d1, d2);
	}
}

/* the properties every event has, both feeds */
static icalcomponent *event_new(const struct conf *c, const struct occ *o,
				const char *unit, const struct rev *r,
				tstamp now)
{
	icalcomponent *ev = icalcomponent_new(ICAL_VEVENT_COMPONENT);
	struct buf b;

	buf_init(&b);
	make_uid(c, o->id, unit, &b);
	icalcomponent_add_property(ev, icalproperty_new_uid(buf_str(&b)));
	buf_free(&b);
	icalcomponent_add_property(ev, icalproperty_new_dtstamp(ical_utc(now)));
	icalcomponent_add_property(ev,
		icalproperty_new_lastmodified(ical_utc(r->modified)));
	icalcomponent_add_property(ev,
		icalproperty_new_sequence(r->seq > 1000000000 ? 1000000000
							      : (int)r->seq));
	icalcomponent_add_property(ev,
		icalproperty_new_status(ICAL_STATUS_CONFIRMED));
	/* a deadline is not a meeting: don't block the day as busy */
	icalcomponent_add_property(ev,
		icalproperty_new_transp(ICAL_TRANSP_TRANSPARENT));
	if (c->daemon.public_url && *c->daemon.public_url) {
		char *url = xasprintf("%s/", c->daemon.public_url);

		icalcomponent_add_property(ev, icalproperty_new_url(url));
		free(url);
	}
	return ev;
}

static char *finish(icalcomponent *cal)
{
	char *s = icalcomponent_as_ical_string_r(cal);
	char *out = xstrdup(s ? s : "");

	icalmemory_free_buffer(s);
	icalcomponent_free(cal);
	return out;
}

static void add_vtimezone(const struct conf *c, icalcomponent *cal)
{
	icalcomponent *vtz = tz_vtimezone(c->tz);

	/* VTIMEZONE goes before the events for the benefit of one-pass
	 * readers; icalcomponent_add_component appends, so events are added
	 * afterwards by the callers. */
	if (vtz)
		icalcomponent_add_component(cal, vtz);
}


static int window(const struct conf *c, tstamp now, struct occ **occs,
		  size_t *n)
{
	return sched_occurrences(c, now - c->daemon.history,
				 now + c->daemon.horizon, occs, n);
}

static bool any_timed(const struct occ *v, size_t n, const struct conf *c,
		      const struct unit *u)
{
	size_t idx = u ? (size_t)(u - c->units) : 0;

	for (size_t i = 0; i < n; i++)
		if (v[i].cycle->due_minute < 1440 &&
		    (!u || conf_cycle_has(v[i].cycle, idx)))
			return true;
	return false;
}

static void secretariat_event(const struct conf *c, const struct occ *o,
			      const struct subs *ss, const struct rev *r,
			      tstamp now, icalcomponent *cal)
{
	const struct cycle *cy = o->cycle;
	icalcomponent *ev = event_new(c, o, NULL, r, now);
	struct buf b, late, miss;
	size_t ndone = 0, nlate = 0, nmiss = 0;
	bool timed;
	char when[24];

	buf_init(&b);
	buf_init(&late);
	buf_init(&miss);
	for (size_t i = 0; i < cy->nunits; i++) {
		const struct unit *u = &c->units[cy->units[i]];
		const struct sub *s = subs_find(ss, u->id);

		if (s) {
			ndone++;
			if (s->at > o->due_at) {
				if (nlate++ < LIST_MAX) {
					tz_format_vn(c->tz, s->at, when);
					buf_printf(&late, "- %s (%s)\n",
						   u->name, when);
				}
			}
		} else if (nmiss++ < LIST_MAX) {
			buf_printf(&miss, "- %s\n", u->name);
		}
	}
	if (cy->nunits > 0 && ndone == cy->nunits)
		buf_puts(&b, "✓ ");
	buf_puts(&b, cy->title);
	if (cy->nunits > 0)
		buf_printf(&b, " (%zu/%zu đã nộp)", ndone, cy->nunits);
	icalcomponent_add_property(ev, icalproperty_new_summary(buf_str(&b)));

	buf_reset(&b);
	buf_printf(&b, "%s\n", cy->title);
	describe_due(c, o, &b);
	buf_printf(&b, "Đã nộp: %zu/%zu đơn vị\n", ndone, cy->nunits);
	if (nlate) {
		buf_printf(&b, "Nộp muộn (%zu):\n%s", nlate, buf_str(&late));
		if (nlate > LIST_MAX)
			buf_printf(&b, "- ... và %zu đơn vị khác\n",
				   nlate - LIST_MAX);
	}
	if (nmiss) {
		buf_printf(&b, "Chưa nộp (%zu):\n%s", nmiss, buf_str(&miss));
		if (nmiss > LIST_MAX)
			buf_printf(&b, "- ... và %zu đơn vị khác\n",
				   nmiss - LIST_MAX);
	}
	icalcomponent_add_property(ev,
				   icalproperty_new_description(buf_str(&b)));
	event_times(c, o, ev, &timed);
	icalcomponent_add_component(cal, ev);
	buf_free(&b);
	buf_free(&late);
	buf_free(&miss);
}

char *feed_build_secretariat(const struct conf *c, struct db *db, tstamp now,
			     tstamp *modified)
{
	struct occ *occs = NULL;
	size_t nocc = 0;
	icalcomponent *cal;
	struct subs ss = { 0 };
	tstamp maxmod = 0;
	char *out = NULL;

	if (window(c, now, &occs, &nocc) < 0)
		return NULL;
	cal = calendar_new(c, c->secretariat.name);
	if (any_timed(occs, nocc, c, NULL))
		add_vtimezone(c, cal);
	for (size_t i = 0; i < nocc; i++) {
		struct rev r;

		if (occ_rev(c, db, &occs[i], NULL, now, &r) < 0)
			goto fail;
		ss.n = 0;
		if (db_sub_foreach(db, occs[i].id, subs_add, &ss) < 0)
			goto fail;
		if (ss.n > 1)
			qsort(ss.v, ss.n, sizeof(*ss.v), sub_cmp);
		/* the revision is of the plan's occurrence; an extension
		 * counts through its history event */
		if (ledger_effective(c, db, &occs[i], NULL) < 0)
			goto fail;
		secretariat_event(c, &occs[i], &ss, &r, now, cal);
		if (r.modified > maxmod)
			maxmod = r.modified;
	}
	out = finish(cal);
	cal = NULL;
	if (modified) {
		tstamp w = window_moved(c, NULL, occs, nocc, now);

		*modified = maxmod > w ? maxmod : w;
	}
fail:
	if (cal)
		icalcomponent_free(cal);
	free(ss.v);
	free(occs);
	return out;
}

/* Escalations and repeats go to others: a unit's alarms are its reminders,
 * and only those still ahead; past ones would only pop up as "missed" in
 * clients that just subscribed. */
static bool reminder(const struct notice_step *st)
{
	return !st->escalation && strncmp(st->name, "remind", 6) == 0;
}

/* Each reminder that passes drops its alarm, so the event changes with
 * time alone: count those into SEQUENCE and LAST-MODIFIED, done or not.
 * Only a config change can lower that count, by less than SCHED_MAX_STEPS,
 * so a config change weighs that much more: the sum never goes back. */
static void alarm_rev(const struct notice_step *st, int n, tstamp now,
		      struct rev *r)
{
	r->seq += r->conf_seq * SCHED_MAX_STEPS;
	for (int i = 0; i < n; i++) {
		if (!reminder(&st[i]) || st[i].at >= now)
			continue;
		r->seq++;
		if (st[i].at > r->modified)
			r->modified = st[i].at;
	}
}

static void add_alarms(const struct conf *c, const struct occ *o,
		       const struct notice_step *st, int n, tstamp start,
		       tstamp now, icalcomponent *ev)
{
	char due[24];
	char *text;

	if (o->cycle->due_minute >= 1440)
		ymd_format_vn(o->due, due);
	else
		tz_format_vn(c->tz, o->due_at, due);
	text = xasprintf("Nhắc nộp %s - hạn %s", o->cycle->title, due);
	for (int i = 0; i < n; i++) {
		icalcomponent *al;
		struct icaltriggertype tr;

		if (!reminder(&st[i]) || st[i].at < now)
			continue;
		tr.time = icaltime_null_time();
		tr.duration = duration(st[i].at - start);
		al = icalcomponent_new(ICAL_VALARM_COMPONENT);
		icalcomponent_add_property(al,
			icalproperty_new_action(ICAL_ACTION_DISPLAY));
		icalcomponent_add_property(al, icalproperty_new_trigger(tr));
		icalcomponent_add_property(al,
			icalproperty_new_description(text));
		icalcomponent_add_component(ev, al);
	}
	free(text);
}

static int unit_event(const struct conf *c, struct db *db,
		      const struct unit *u, const struct occ *plan,
		      const struct rev *urev, tstamp now, icalcomponent *cal,
		      tstamp *modified)
{
	struct occ own = *plan, *o = &own;
	struct submission s;
	struct notice_step *st;
	struct rev r;
	icalcomponent *ev;
	struct buf b;
	bool timed, done;
	tstamp start;
	int rc, nst;

	if (occ_rev(c, db, plan, u->id, now, &r) < 0)
		return -1;
	/* the unit's own deadline (SEQUENCE counts the extension event) */
	if (ledger_effective(c, db, o, u->id) < 0)
		return -1;
	rc = db_sub_get(db, o->id, u->id, &s);
	if (rc < 0)
		return -1;
	done = rc == 0;
	r.seq += urev->seq;
	if (urev->modified > r.modified)
		r.modified = urev->modified;
	st = xcalloc(SCHED_MAX_STEPS, sizeof(*st));
	nst = sched_steps(c, o, st, SCHED_MAX_STEPS);
	alarm_rev(st, nst, now, &r);

	ev = event_new(c, o, u->id, &r, now);
	buf_init(&b);
	if (done)
		buf_puts(&b, "✓ Đã nộp: ");
	buf_puts(&b, o->cycle->title);
	icalcomponent_add_property(ev, icalproperty_new_summary(buf_str(&b)));

	buf_reset(&b);
	buf_printf(&b, "%s\nĐơn vị: %s\n", o->cycle->title, u->name);
	describe_due(c, o, &b);
	if (done) {
		char when[24];

		tz_format_vn(c->tz, s.at, when);
		buf_printf(&b, "Đã nhận báo cáo lúc %s%s.\n", when,
			   s.at > o->due_at ? " (muộn hạn)" : "");
		submission_clear(&s);
	} else {
		buf_puts(&b, "Trạng thái: chưa nộp.\n");
	}
	if (c->secretariat.name || c->secretariat.email) {
		buf_puts(&b, "Gửi về: ");
		if (c->secretariat.name)
			buf_puts(&b, c->secretariat.name);
		if (c->secretariat.name && c->secretariat.email)
			buf_puts(&b, " - ");
		if (c->secretariat.email)
			buf_puts(&b, c->secretariat.email);
		buf_putc(&b, '\n');
	}
	icalcomponent_add_property(ev,
				   icalproperty_new_description(buf_str(&b)));
	buf_free(&b);
	start = event_times(c, o, ev, &timed);
	if (!done)
		add_alarms(c, o, st, nst, start, now, ev);
	free(st);
	icalcomponent_add_component(cal, ev);
	if (r.modified > *modified)
		*modified = r.modified;
	return 0;
}

char *feed_build_unit(const struct conf *c, struct db *db, const struct unit *u,
		      tstamp now, tstamp *modified)
{
	struct occ *occs = NULL;
	size_t nocc = 0, idx;
	icalcomponent *cal;
	struct rev urev = { 0 };
	tstamp maxmod = 0;
	char *out = NULL;

	if (u < c->units || u >= c->units + c->nunits)
		return NULL;
	idx = (size_t)(u - c->units);
	/* 0.1 kept a revision per unit name; a rename now counts in the
	 * cycle's revision, but the old count stays in, read only, so that
	 * SEQUENCE never goes back */
	if (db_rev_get(db, "unit", u->id, &urev.seq, &urev.modified) != 0)
		urev.seq = urev.modified = 0;
	if (window(c, now, &occs, &nocc) < 0)
		return NULL;
	cal = calendar_new(c, u->name);
	if (any_timed(occs, nocc, c, u))
		add_vtimezone(c, cal);
	for (size_t i = 0; i < nocc; i++) {
		if (!conf_cycle_has(occs[i].cycle, idx))
			continue;
		if (unit_event(c, db, u, &occs[i], &urev, now, cal,
			       &maxmod) < 0)
			goto fail;
	}
	out = finish(cal);
	cal = NULL;
	if (modified) {
		tstamp w = window_moved(c, u, occs, nocc, now);

		*modified = maxmod > w ? maxmod : w;
	}
fail:
	if (cal)
		icalcomponent_free(cal);
	free(occs);
	return out;
}

/* ------------------------------------------------------------------ cache */

struct entry {
	struct doc *doc;
	unsigned gen;                /* generation it was built for */
	struct entry *hnext;         /* hash chain */
	struct entry *newer, *older; /* LRU list, unit feeds only */
	uint64_t chash;              /* content without DTSTAMP lines */
	tstamp built;
	size_t cost;                 /* bytes counted against the bound */
	char key[80];                /* "secretariat" or "unit/ID" */
};

#define TOKEN_LEN 64

struct feeds {
	unsigned gen;
	struct entry *sec;
	struct entry **tab;          /* unit feeds by key */
	size_t tabsize;              /* a power of two */
	size_t nunits, bytes, limit;
	struct entry *newest, *oldest;
	/* the units' feed tokens, by unit index of tok_conf */
	const struct conf *tok_conf;
	char (*tokens)[TOKEN_LEN + 1];
	size_t ntokens;
};

static void entry_free(struct entry *e)
{
	if (!e)
		return;
	doc_release(e->doc);
	free(e);
}

struct feeds *feeds_new(void)
{
	struct feeds *f = xcalloc(1, sizeof(*f));

	f->gen = 1;
	f->limit = FEED_CACHE_BYTES;
	f->tabsize = 1024;
	f->tab = xcalloc(f->tabsize, sizeof(*f->tab));
	return f;
}

void feeds_free(struct feeds *f)
{
	if (!f)
		return;
	entry_free(f->sec);
	for (size_t i = 0; i < f->tabsize; i++)
		while (f->tab[i]) {
			struct entry *e = f->tab[i];

			f->tab[i] = e->hnext;
			entry_free(e);
		}
	free(f->tab);
	free(f->tokens);
	free(f);
}

void feeds_invalidate(struct feeds *f)
{
	if (f)
		f->gen++;
}

size_t feeds_bytes(const struct feeds *f)
{
	return f ? f->bytes : 0;
}

void feeds_set_limit(struct feeds *f, size_t bytes)
{
	if (f)
		f->limit = bytes;
}

int feeds_load_tokens(struct feeds *f, const struct conf *c, struct db *db)
{
	char (*tok)[TOKEN_LEN + 1];

	if (!f || !c || !db)
		return -1;
	tok = xcalloc(c->nunits + 1, sizeof(*tok));
	for (size_t i = 0; i < c->nunits; i++) {
		char *t = NULL;

		if (db_unit_token(db, c->units[i].id, &t) == 0 && t &&
		    strlen(t) <= TOKEN_LEN)
			memcpy(tok[i], t, strlen(t) + 1);
		/* else left empty: the caller asks the store */
		free(t);
	}
	free(f->tokens);
	f->tokens = tok;
	f->ntokens = c->nunits;
	f->tok_conf = c;
	return 0;
}

const char *feeds_token(const struct feeds *f, const struct conf *c,
			const struct unit *u)
{
	size_t i;

	if (!f || !c || !u || f->tok_conf != c || u < c->units)
		return NULL;
	i = (size_t)(u - c->units);
	if (i >= f->ntokens || f->tokens[i][0] == '\0')
		return NULL;
	return f->tokens[i];
}

int feeds_reload(struct app *a, const struct conf *old)
{
	tstamp now;
	int rc;

	if (!a || !a->conf || !a->db)
		return -1;
	now = clock_now(&a->clk);
	rc = feeds_revise(old, a->conf, a->db, now);
	if (a->feeds && feeds_load_tokens(a->feeds, a->conf, a->db) < 0)
		rc = -1;
	feeds_invalidate(a->feeds);
	return rc;
}

/* DTSTAMP is the build time: two builds that differ only there are the
 * same document, and keeping the old one keeps its ETag. */
static uint64_t content_hash(const char *s)
{
	uint64_t h = FNV_INIT;

	while (*s) {
		size_t n = strcspn(s, "\n");

		if (strncmp(s, "DTSTAMP", 7) != 0)
			h = fnv(h, s, n);
		s += n;
		if (*s == '\n')
			s++;
	}
	return h;
}

static size_t key_bucket(const struct feeds *f, const char *key)
{
	return (size_t)fnv(FNV_INIT, key, strlen(key)) & (f->tabsize - 1);
}

static struct entry *find(struct feeds *f, const char *key)
{
	struct entry *e;

	if (strcmp(key, "secretariat") == 0)
		return f->sec;
	for (e = f->tab[key_bucket(f, key)]; e; e = e->hnext)
		if (strcmp(e->key, key) == 0)
			return e;
	return NULL;
}

static void lru_unlink(struct feeds *f, struct entry *e)
{
	if (e->newer)
		e->newer->older = e->older;
	else if (f->newest == e)
		f->newest = e->older;
	if (e->older)
		e->older->newer = e->newer;
	else if (f->oldest == e)
		f->oldest = e->newer;
	e->newer = e->older = NULL;
}

static void lru_front(struct feeds *f, struct entry *e)
{
	if (e == f->sec || f->newest == e)
		return;
	lru_unlink(f, e);
	e->older = f->newest;
	if (f->newest)
		f->newest->newer = e;
	f->newest = e;
	if (!f->oldest)
		f->oldest = e;
}

static void remove_entry(struct feeds *f, struct entry *e)
{
	struct entry **pp;

	if (e == f->sec) {
		f->sec = NULL;
	} else {
		for (pp = &f->tab[key_bucket(f, e->key)]; *pp;
		     pp = &(*pp)->hnext)
			if (*pp == e) {
				*pp = e->hnext;
				break;
			}
		lru_unlink(f, e);
		f->nunits--;
	}
	f->bytes -= e->cost;
	entry_free(e);
}

static void grow(struct feeds *f)
{
	size_t n = f->tabsize * 2;
	struct entry **t = xcalloc(n, sizeof(*t));

	for (size_t i = 0; i < f->tabsize; i++)
		while (f->tab[i]) {
			struct entry *e = f->tab[i];
			size_t b;

			f->tab[i] = e->hnext;
			b = (size_t)fnv(FNV_INIT, e->key, strlen(e->key)) &
			    (n - 1);
			e->hnext = t[b];
			t[b] = e;
		}
	free(f->tab);
	f->tab = t;
	f->tabsize = n;
}

static void insert(struct feeds *f, struct entry *e)
{
	f->bytes += e->cost;
	if (strcmp(e->key, "secretariat") == 0) {
		f->sec = e;
	} else {
		size_t b;

		if (f->nunits >= f->tabsize)
			grow(f);
		b = key_bucket(f, e->key);
		e->hnext = f->tab[b];
		f->tab[b] = e;
		f->nunits++;
		lru_front(f, e);
	}
	/* over the bound: the least recently served go, never this one */
	while (f->bytes > f->limit && f->oldest && f->oldest != e)
		remove_entry(f, f->oldest);
}

static struct doc *get_doc(struct app *a, const struct unit *u)
{
	struct feeds *f = a->feeds;
	struct entry *e, *ne;
	tstamp now, mod = 0;
	char key[80];
	char *body;

	if (!f || !a->conf || !a->db)
		return NULL;
	now = clock_now(&a->clk);
	if (u)
		snprintf(key, sizeof(key), "unit/%s", u->id);
	else
		snprintf(key, sizeof(key), "secretariat");
	e = find(f, key);
	if (e && e->gen == f->gen && now >= e->built &&
	    now - e->built < FEED_TTL) {
		lru_front(f, e);
		return e->doc;
	}
	body = u ? feed_build_unit(a->conf, a->db, u, now, &mod)
		 : feed_build_secretariat(a->conf, a->db, now, &mod);
	if (!body) {
		log_warn("feed %s: cannot build; serving the last one", key);
		if (e)
			lru_front(f, e);
		return e ? e->doc : NULL;
	}
	ne = xcalloc(1, sizeof(*ne));
	ne->chash = content_hash(body);
	if (e && e->chash == ne->chash) {
		free(body);
		free(ne);
		e->gen = f->gen;
		e->built = now;
		lru_front(f, e);
		return e->doc;
	}
	/* 0.1 kept a revision per feed, written on GETs: read only now, a
	 * floor, so that Last-Modified does not go back after an upgrade */
	{
		int64_t fseq;
		tstamp fmod;

		if (db_rev_get(a->db, "feed", key, &fseq, &fmod) == 0 &&
		    fmod > mod && fmod <= now)
			mod = fmod;
	}
	/* Last-Modified moves whenever the content does: also when the
	 * content changed in a way no revision shows */
	if (e && mod <= e->doc->modified)
		mod = e->doc->modified + 1 <= now ? e->doc->modified + 1 : now;
	snprintf(ne->key, sizeof(ne->key), "%s", key);
	ne->doc = doc_new(body, strlen(body), DOC_CALENDAR);
	ne->doc->modified = mod;
	ne->doc->built = now;
	ne->gen = f->gen;
	ne->built = now;
	ne->cost = ne->doc->len + sizeof(*ne) + 1024;   /* + responses */
	if (e)
		remove_entry(f, e);
	insert(f, ne);
	log_debug("feed %s: built, %zu bytes, etag %s", key, ne->doc->len,
		  ne->doc->etag);
	return ne->doc;
}

struct doc *feeds_secretariat(struct app *a)
{
	return get_doc(a, NULL);
}

struct doc *feeds_unit(struct app *a, const struct unit *u)
{
	if (!u)
		return NULL;
	return get_doc(a, u);
}
