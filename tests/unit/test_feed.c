/*
 * test_feed.c - the iCalendar feeds, read back with libical's parser.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <dirent.h>
#include <libical/ical.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cutoffd.h"

#define CONF_TEXT \
	"[daemon]\n" \
	"timezone = Asia/Ho_Chi_Minh\n" \
	"state = state.db\n" \
	"listen = 127.0.0.1:8470\n" \
	"public_url = http://127.0.0.1:8470\n" \
	"horizon = 400d\n" \
	"history = 30d\n" \
	"\n" \
	"[mail]\n" \
	"transport = maildir\n" \
	"maildir = mail\n" \
	"from = Thường trực <tt@example.vn>\n" \
	"\n" \
	"[secretariat]\n" \
	"name = Thường trực Ban Chỉ đạo\n" \
	"email = tt@example.vn\n" \
	"chief = chief@example.vn\n" \
	"\n" \
	"[policy standard]\n" \
	"at = 08:00\n" \
	"remind = -7d -3d -1d 0d\n" \
	"escalate = +1d head\n" \
	"quiet = 18:00-07:30\n" \
	"\n" \
	"[cycle q1]\n" \
	"title = %s\n" \
	"due = 03-13\n" \
	"period = 12-15 .. 03-13\n" \
	"policy = standard\n" \
	"units = *\n" \
	"%s" \
	"\n" \
	"[unit a]\n" \
	"name = Phòng A\n" \
	"email = a@example.vn\n" \
	"head = head.a@example.vn\n" \
	"\n" \
	"[unit b]\n" \
	"name = Phòng B\n" \
	"email = b@example.vn\n" \
	"\n" \
	"[unit c]\n" \
	"name = Phòng C\n" \
	"email = c@example.vn\n"

#define TIMED_CYCLE \
	"\n" \
	"[cycle h1]\n" \
	"title = Báo cáo 6 tháng\n" \
	"due = 06-13\n" \
	"time = 17:00\n" \
	"policy = standard\n" \
	"units = a b\n"

struct fix {
	char dir[64];
	char *path;
	struct db *db;
	struct conf *c;
	tstamp now;
};

static struct conf *make_conf(const char *title, bool timed)
{
	char *text = xasprintf(CONF_TEXT, title, timed ? TIMED_CYCLE : "");
	struct diag d;
	struct conf *c;

	diag_init(&d);
	c = conf_parse("test.conf", text, strlen(text), CONF_NO_FILES, &d);
	if (!c)
		diag_print(&d, stderr);
	diag_free(&d);
	free(text);
	return c;
}

static int setup(void **state)
{
	struct fix *f = xcalloc(1, sizeof(*f));
	char *err = NULL;

	snprintf(f->dir, sizeof(f->dir), "/tmp/cutoffd-test-feed.XXXXXX");
	if (!mkdtemp(f->dir)) {
		free(f);
		return -1;
	}
	f->path = xasprintf("%s/state.db", f->dir);
	f->db = db_open(f->path, true, &err);
	f->c = make_conf("Báo cáo quý I", true);
	if (!f->db || !f->c) {
		fprintf(stderr, "setup: %s\n", err ? err : "bad config");
		free(err);
		return -1;
	}
	f->now = tz_mktime(f->c->tz, (struct ymd){ 2024, 3, 1 }, 9 * 60);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fix *f = *state;
	DIR *d;
	struct dirent *e;

	db_close(f->db);
	conf_free(f->c);
	d = opendir(f->dir);
	while (d && (e = readdir(d)) != NULL) {
		char *p = xasprintf("%s/%s", f->dir, e->d_name);

		if (e->d_name[0] != '.')
			unlink(p);
		free(p);
	}
	if (d)
		closedir(d);
	rmdir(f->dir);
	free(f->path);
	free(f);
	return 0;
}

/* ------------------------------------------------------------- helpers */

static icalcomponent *parse(char *text)
{
	icalcomponent *cal;

	assert_non_null(text);
	cal = icalparser_parse_string(text);
	free(text);
	assert_non_null(cal);
	assert_int_equal(icalcomponent_isa(cal), ICAL_VCALENDAR_COMPONENT);
	/* the parser marks anything it did not like with X-LIC-ERROR */
	assert_int_equal(icalcomponent_count_errors(cal), 0);
	return cal;
}

static icalcomponent *sec_feed(struct fix *f, tstamp now)
{
	tstamp mod = -1;
	icalcomponent *cal = parse(feed_build_secretariat(f->c, f->db, now,
							  &mod));

	assert_true(mod > 0);
	return cal;
}

static icalcomponent *unit_feed(struct fix *f, const char *id, tstamp now)
{
	tstamp mod = -1;
	const struct unit *u = conf_unit(f->c, id);
	icalcomponent *cal;

	assert_non_null(u);
	cal = parse(feed_build_unit(f->c, f->db, u, now, &mod));
	assert_true(mod > 0);
	return cal;
}

static icalcomponent *event(icalcomponent *cal, const char *uid)
{
	icalcomponent *ev;

	for (ev = icalcomponent_get_first_component(cal, ICAL_VEVENT_COMPONENT);
	     ev; ev = icalcomponent_get_next_component(cal,
						       ICAL_VEVENT_COMPONENT))
		if (strcmp(icalcomponent_get_uid(ev), uid) == 0)
			return ev;
	fail_msg("no event %s", uid);
	return NULL;
}

static int count(icalcomponent *c, icalcomponent_kind kind)
{
	return icalcomponent_count_components(c, kind);
}

static int seq(icalcomponent *ev)
{
	icalproperty *p = icalcomponent_get_first_property(ev,
		ICAL_SEQUENCE_PROPERTY);

	assert_non_null(p);
	return icalproperty_get_sequence(p);
}

static const char *descr(icalcomponent *ev)
{
	const char *s = icalcomponent_get_description(ev);

	assert_non_null(s);
	return s;
}

/* the UIDs in order, one per line */
static char *uids(icalcomponent *cal)
{
	struct buf b;
	icalcomponent *ev;

	buf_init(&b);
	for (ev = icalcomponent_get_first_component(cal, ICAL_VEVENT_COMPONENT);
	     ev; ev = icalcomponent_get_next_component(cal,
						       ICAL_VEVENT_COMPONENT))
		buf_printf(&b, "%s\n", icalcomponent_get_uid(ev));
	return buf_steal(&b);
}

/* --------------------------------------------------------------- tests */

static void test_secretariat_calendar(void **state)
{
	struct fix *f = *state;
	icalcomponent *cal = sec_feed(f, f->now), *ev;
	icalproperty *p;

	assert_int_equal(icalcomponent_get_method(cal), ICAL_METHOD_PUBLISH);
	p = icalcomponent_get_first_property(cal, ICAL_VERSION_PROPERTY);
	assert_string_equal(icalproperty_get_version(p), "2.0");
	p = icalcomponent_get_first_property(cal, ICAL_NAME_PROPERTY);
	assert_non_null(p);
	assert_string_equal(icalproperty_get_name(p),
			    "Hạn báo cáo - Thường trực Ban Chỉ đạo");
	assert_non_null(icalcomponent_get_first_property(cal,
		ICAL_REFRESHINTERVAL_PROPERTY));
	/* window [now - history, now + 400d): q1 2024 and 2025, h1 2024 */
	assert_int_equal(count(cal, ICAL_VEVENT_COMPONENT), 3);
	ev = event(cal, "q1-2024-03-13@127.0.0.1");
	assert_non_null(strstr(descr(ev), "Đã nộp: 0/3 đơn vị"));
	assert_non_null(strstr(descr(ev), "Số liệu từ 15/12/2023 đến 13/03/2024"));
	assert_non_null(strstr(descr(ev), "- Phòng B\n"));
	assert_non_null(icalcomponent_get_first_property(ev,
		ICAL_DTSTAMP_PROPERTY));
	assert_non_null(icalcomponent_get_first_property(ev,
		ICAL_LASTMODIFIED_PROPERTY));
	event(cal, "q1-2025-03-13@127.0.0.1");
	event(cal, "h1-2024-06-13@127.0.0.1");
	/* the secretariat gets no alarms */
	assert_int_equal(count(ev, ICAL_VALARM_COMPONENT), 0);
	icalcomponent_free(cal);
}

static void test_uids_stable(void **state)
{
	struct fix *f = *state;
	icalcomponent *a = sec_feed(f, f->now);
	icalcomponent *b = sec_feed(f, f->now + 3600);
	char *ua = uids(a), *ub = uids(b);
	int s1 = seq(event(a, "q1-2024-03-13@127.0.0.1"));

	assert_string_equal(ua, ub);
	/* nothing changed: same SEQUENCE */
	assert_int_equal(seq(event(b, "q1-2024-03-13@127.0.0.1")), s1);
	free(ua);
	free(ub);
	icalcomponent_free(a);
	icalcomponent_free(b);
}

static void test_sequence_submission(void **state)
{
	struct fix *f = *state;
	icalcomponent *a = sec_feed(f, f->now), *b, *ev;
	int s1 = seq(event(a, "q1-2024-03-13@127.0.0.1"));
	int other = seq(event(a, "h1-2024-06-13@127.0.0.1"));
	tstamp late = tz_mktime(f->c->tz, (struct ymd){ 2024, 3, 14 }, 600);

	assert_int_equal(db_sub_record(f->db, "q1/2024-03-13", "b", f->now,
				       "cli", NULL, f->now), 0);
	assert_int_equal(db_sub_record(f->db, "q1/2024-03-13", "c", late,
				       "cli", NULL, f->now + 10), 0);
	b = sec_feed(f, f->now + 60);
	ev = event(b, "q1-2024-03-13@127.0.0.1");
	assert_true(seq(ev) > s1);
	assert_int_equal(seq(event(b, "h1-2024-06-13@127.0.0.1")), other);
	assert_non_null(strstr(descr(ev), "Đã nộp: 2/3 đơn vị"));
	assert_non_null(strstr(descr(ev), "Chưa nộp (1):\n- Phòng A\n"));
	assert_non_null(strstr(descr(ev), "Nộp muộn (1):\n- Phòng C (14/03/2024 10:00)"));
	assert_non_null(strstr(icalcomponent_get_summary(ev), "(2/3 đã nộp)"));

	/* undo is a change too: SEQUENCE never goes back */
	s1 = seq(ev);
	assert_int_equal(db_sub_undo(f->db, "q1/2024-03-13", "c", "cli",
				     f->now + 120), 0);
	icalcomponent_free(b);
	b = sec_feed(f, f->now + 180);
	assert_true(seq(event(b, "q1-2024-03-13@127.0.0.1")) > s1);
	icalcomponent_free(a);
	icalcomponent_free(b);
}

static void test_sequence_title(void **state)
{
	struct fix *f = *state;
	icalcomponent *a = sec_feed(f, f->now), *b;
	int s1 = seq(event(a, "q1-2024-03-13@127.0.0.1"));
	icalcomponent *ua = unit_feed(f, "a", f->now);
	int su = seq(event(ua, "q1-2024-03-13.a@127.0.0.1"));
	struct conf *old = f->c;

	icalcomponent_free(ua);
	f->c = make_conf("Báo cáo quý 1 (sửa)", true);
	assert_non_null(f->c);
	/* what the daemon does at a reload */
	assert_int_equal(feeds_revise(old, f->c, f->db, f->now + 30), 0);
	b = sec_feed(f, f->now + 60);
	assert_true(seq(event(b, "q1-2024-03-13@127.0.0.1")) > s1);
	assert_string_equal(icalcomponent_get_summary(
		event(b, "q1-2024-03-13@127.0.0.1")),
		"Báo cáo quý 1 (sửa) (0/3 đã nộp)");
	ua = unit_feed(f, "a", f->now + 60);
	assert_true(seq(event(ua, "q1-2024-03-13.a@127.0.0.1")) > su);
	icalcomponent_free(ua);
	conf_free(old);
	icalcomponent_free(a);
	icalcomponent_free(b);
}

static void test_unit_feed(void **state)
{
	struct fix *f = *state;
	icalcomponent *cal = unit_feed(f, "c", f->now), *ev;

	/* c is not in h1 */
	assert_int_equal(count(cal, ICAL_VEVENT_COMPONENT), 2);
	ev = event(cal, "q1-2024-03-13.c@127.0.0.1");
	assert_string_equal(icalcomponent_get_summary(ev), "Báo cáo quý I");
	assert_non_null(strstr(descr(ev), "Đơn vị: Phòng C"));
	assert_non_null(strstr(descr(ev), "chưa nộp"));
	assert_int_equal(count(ev, ICAL_VALARM_COMPONENT), 4);
	/* no due time: timed nowhere, so no VTIMEZONE either */
	assert_int_equal(count(cal, ICAL_VTIMEZONE_COMPONENT), 0);
	icalcomponent_free(cal);
}

static void test_unit_alarm_times(void **state)
{
	struct fix *f = *state;
	icalcomponent *cal = unit_feed(f, "a", f->now), *ev, *al;
	struct icaltriggertype tr;
	int secs[8], n = 0;

	ev = event(cal, "q1-2024-03-13.a@127.0.0.1");
	for (al = icalcomponent_get_first_component(ev, ICAL_VALARM_COMPONENT);
	     al && n < 8;
	     al = icalcomponent_get_next_component(ev, ICAL_VALARM_COMPONENT)) {
		icalproperty *p = icalcomponent_get_first_property(al,
			ICAL_TRIGGER_PROPERTY);

		assert_non_null(p);
		assert_int_equal(icalproperty_get_action(
			icalcomponent_get_first_property(al,
				ICAL_ACTION_PROPERTY)), ICAL_ACTION_DISPLAY);
		tr = icalproperty_get_trigger(p);
		secs[n++] = icaldurationtype_as_int(tr.duration);
	}
	/* all-day on 13/03: -7d, -3d, -1d, 0d at 08:00 local, counted from
	 * the day's start; -3d is Sunday 10/03, sent (send_days = workdays)
	 * on Friday 08/03 */
	assert_int_equal(n, 4);
	assert_int_equal(secs[0], -7 * 86400 + 8 * 3600);
	assert_int_equal(secs[1], -5 * 86400 + 8 * 3600);
	assert_int_equal(secs[2], -1 * 86400 + 8 * 3600);
	assert_int_equal(secs[3], 8 * 3600);

	/* h1 due 13/06 17:00: a 30-minute block ending then, alarms counted
	 * from 16:30 */
	ev = event(cal, "h1-2024-06-13.a@127.0.0.1");
	al = icalcomponent_get_first_component(ev, ICAL_VALARM_COMPONENT);
	assert_non_null(al);
	tr = icalproperty_get_trigger(icalcomponent_get_first_property(al,
		ICAL_TRIGGER_PROPERTY));
	assert_int_equal(icaldurationtype_as_int(tr.duration),
			 -7 * 86400 + 8 * 3600 - (16 * 3600 + 1800));

	/* past alarms are left out: on 12/03 at 09:00 only 0d remains */
	icalcomponent_free(cal);
	cal = unit_feed(f, "a", tz_mktime(f->c->tz, (struct ymd){ 2024, 3, 12 },
					  9 * 60));
	ev = event(cal, "q1-2024-03-13.a@127.0.0.1");
	assert_int_equal(count(ev, ICAL_VALARM_COMPONENT), 1);
	icalcomponent_free(cal);
}

static void test_unit_done(void **state)
{
	struct fix *f = *state;
	icalcomponent *a = unit_feed(f, "b", f->now), *b, *ev;
	int s1 = seq(event(a, "q1-2024-03-13.b@127.0.0.1"));
	icalcomponent *c2 = unit_feed(f, "c", f->now);
	int other = seq(event(c2, "q1-2024-03-13.c@127.0.0.1"));

	icalcomponent_free(c2);

	assert_int_equal(db_sub_record(f->db, "q1/2024-03-13", "b", f->now + 30,
				       "api", NULL, f->now + 30), 0);
	b = unit_feed(f, "b", f->now + 60);
	ev = event(b, "q1-2024-03-13.b@127.0.0.1");
	assert_true(seq(ev) > s1);
	assert_string_equal(icalcomponent_get_summary(ev),
			    "✓ Đã nộp: Báo cáo quý I");
	assert_int_equal(count(ev, ICAL_VALARM_COMPONENT), 0);
	assert_non_null(strstr(descr(ev), "Đã nhận báo cáo lúc 01/03/2024 09:00"));
	/* the other occurrence is still open */
	assert_true(count(event(b, "q1-2025-03-13.b@127.0.0.1"),
			  ICAL_VALARM_COMPONENT) > 0);
	/* another unit's event did not change */
	c2 = unit_feed(f, "c", f->now + 60);
	assert_int_equal(seq(event(c2, "q1-2024-03-13.c@127.0.0.1")), other);
	icalcomponent_free(c2);
	icalcomponent_free(a);
	icalcomponent_free(b);
}

static int alarms_seq(struct fix *f, tstamp now, int *nalarms,
		      tstamp *lastmod)
{
	icalcomponent *cal = unit_feed(f, "a", now);
	icalcomponent *ev = event(cal, "q1-2024-03-13.a@127.0.0.1");
	icalproperty *p = icalcomponent_get_first_property(ev,
		ICAL_LASTMODIFIED_PROPERTY);
	int s = seq(ev);

	*nalarms = count(ev, ICAL_VALARM_COMPONENT);
	*lastmod = icaltime_as_timet_with_zone(icalproperty_get_lastmodified(p),
					      icaltimezone_get_utc_timezone());
	icalcomponent_free(cal);
	return s;
}

/* A passing reminder drops its alarm: the event changed, so SEQUENCE and
 * LAST-MODIFIED move; a policy that drops past reminders must not bring
 * SEQUENCE back either. */
static void test_sequence_alarm_passes(void **state)
{
	struct fix *f = *state;
	tstamp t7 = tz_mktime(f->c->tz, (struct ymd){ 2024, 3, 7 }, 9 * 60);
	tstamp t11 = tz_mktime(f->c->tz, (struct ymd){ 2024, 3, 11 }, 9 * 60);
	tstamp m1, m2, m3;
	int n1, n2, n3, s1, s2, s3;
	struct conf *old = f->c;
	char *text, *at;

	s1 = alarms_seq(f, f->now, &n1, &m1);
	s2 = alarms_seq(f, t7, &n2, &m2);
	assert_int_equal(n1, 4);
	assert_int_equal(n2, 3);
	assert_true(s2 > s1);
	assert_true(m2 > m1);
	/* the same instant again: nothing moved */
	assert_int_equal(alarms_seq(f, t7, &n2, &m3), s2);
	assert_int_equal(m3, m2);

	/* -7d and -3d have passed; a new policy without them, and with
	 * another time for the ones left */
	s2 = alarms_seq(f, t11, &n2, &m2);
	assert_int_equal(n2, 2);
	text = xasprintf(CONF_TEXT, "Báo cáo quý I", TIMED_CYCLE);
	at = strstr(text, "remind = -7d -3d -1d 0d\n");
	assert_non_null(at);
	memcpy(at, "remind = -1d 0d        ", 23);
	strstr(text, "at = 08:00")[6] = '9';
	{
		struct diag d;

		diag_init(&d);
		f->c = conf_parse("test.conf", text, strlen(text),
				  CONF_NO_FILES, &d);
		if (!f->c)
			diag_print(&d, stderr);
		diag_free(&d);
	}
	free(text);
	assert_non_null(f->c);
	assert_int_equal(feeds_revise(old, f->c, f->db, t11 + 30), 0);
	s3 = alarms_seq(f, t11 + 60, &n3, &m3);
	assert_int_equal(n3, 2);
	assert_true(s3 > s2);
	conf_free(old);
}

static void test_allday_and_timed(void **state)
{
	struct fix *f = *state;
	icalcomponent *cal = sec_feed(f, f->now), *ev, *tz;
	icalproperty *p;
	struct icaltimetype t;
	icalparameter *par;

	ev = event(cal, "q1-2024-03-13@127.0.0.1");
	t = icalcomponent_get_dtstart(ev);
	assert_true(t.is_date);
	assert_int_equal(t.day, 13);
	t = icalcomponent_get_dtend(ev);
	assert_true(t.is_date);
	assert_int_equal(t.day, 14);

	ev = event(cal, "h1-2024-06-13@127.0.0.1");
	p = icalcomponent_get_first_property(ev, ICAL_DTEND_PROPERTY);
	par = icalproperty_get_first_parameter(p, ICAL_TZID_PARAMETER);
	assert_non_null(par);
	assert_string_equal(icalparameter_get_tzid(par), "Asia/Ho_Chi_Minh");
	t = icalproperty_get_dtend(p);
	assert_false(t.is_date);
	assert_int_equal(t.hour, 17);
	assert_int_equal(t.minute, 0);
	tz = icalcomponent_get_first_component(cal, ICAL_VTIMEZONE_COMPONENT);
	assert_non_null(tz);
	p = icalcomponent_get_first_property(tz, ICAL_TZID_PROPERTY);
	assert_string_equal(icalproperty_get_tzid(p), "Asia/Ho_Chi_Minh");
	icalcomponent_free(cal);

	/* without a timed cycle there is nothing to refer to a zone */
	conf_free(f->c);
	f->c = make_conf("Báo cáo quý I", false);
	assert_non_null(f->c);
	cal = sec_feed(f, f->now);
	assert_int_equal(count(cal, ICAL_VTIMEZONE_COMPONENT), 0);
	icalcomponent_free(cal);
}

static void test_cache(void **state)
{
	struct fix *f = *state;
	struct app a;
	const struct doc *d;
	char etag[48];
	tstamp mod;

	memset(&a, 0, sizeof(a));
	a.conf = f->c;
	a.db = f->db;
	clock_init(&a.clk, true, f->now, 0.0);
	a.feeds = feeds_new();

	d = feeds_secretariat(&a);
	assert_non_null(d);
	assert_null(d->resp);   /* made by the server on the first send */
	assert_true(d->len > 0 && d->len == strlen(d->body));
	assert_int_equal(d->etag[0], '"');
	assert_true(d->modified > 0);
	snprintf(etag, sizeof(etag), "%s", d->etag);
	mod = d->modified;
	assert_ptr_equal(feeds_secretariat(&a), d);

	/* invalidated without a change: the same document, same ETag */
	feeds_invalidate(a.feeds);
	d = feeds_secretariat(&a);
	assert_string_equal(d->etag, etag);

	assert_int_equal(db_sub_record(f->db, "q1/2024-03-13", "a", f->now,
				       "cli", NULL, f->now + 5), 0);
	feeds_invalidate(a.feeds);
	d = feeds_secretariat(&a);
	assert_string_not_equal(d->etag, etag);
	assert_true(d->modified >= mod);
	assert_non_null(strstr(d->body, "Đã nộp: 1/3"));

	d = feeds_unit(&a, conf_unit(f->c, "a"));
	assert_non_null(d);
	assert_non_null(strstr(d->body, "✓ Đã nộp"));
	assert_ptr_equal(feeds_unit(&a, conf_unit(f->c, "a")), d);
	assert_ptr_not_equal(feeds_unit(&a, conf_unit(f->c, "b")), d);
	feeds_free(a.feeds);
	feeds_free(NULL);
}

/* A GET builds feeds: that must not write the state store. */
static void test_build_writes_nothing(void **state)
{
	struct fix *f = *state;
	int64_t before;

	assert_int_equal(feeds_revise(NULL, f->c, f->db, f->now), 0);
	before = db_total_changes(f->db);
	free(feed_build_secretariat(f->c, f->db, f->now, NULL));
	free(feed_build_unit(f->c, f->db, conf_unit(f->c, "a"), f->now,
			     NULL));
	/* an occurrence with no stored revision yet (past REVISE_AHEAD) */
	free(feed_build_unit(f->c, f->db, conf_unit(f->c, "a"),
			     f->now + 300 * 86400LL, NULL));
	assert_int_equal(db_total_changes(f->db), before);
}

/* SEQUENCE grows across a reload that changes an occurrence shown before
 * any revision of it was stored, and never goes back on a restart. */
static void test_sequence_without_stored_revision(void **state)
{
	struct fix *f = *state;
	icalcomponent *a, *b;
	struct conf *old = f->c;
	int s1, s2;

	a = sec_feed(f, f->now);
	s1 = seq(event(a, "q1-2024-03-13@127.0.0.1"));
	f->c = make_conf("Báo cáo quý I (mới)", true);
	assert_non_null(f->c);
	assert_int_equal(feeds_revise(old, f->c, f->db, f->now + 30), 0);
	b = sec_feed(f, f->now + 60);
	s2 = seq(event(b, "q1-2024-03-13@127.0.0.1"));
	assert_true(s2 > s1);
	icalcomponent_free(b);
	/* a restart with the same configuration: the same SEQUENCE */
	assert_int_equal(feeds_revise(NULL, f->c, f->db, f->now + 90), 0);
	b = sec_feed(f, f->now + 120);
	assert_int_equal(seq(event(b, "q1-2024-03-13@127.0.0.1")), s2);
	icalcomponent_free(a);
	icalcomponent_free(b);
	conf_free(old);
}

/* A state store of 0.1 holds revisions under another hash: the first
 * start of this version counts that as a change, so SEQUENCE grows. */
static void test_sequence_after_upgrade(void **state)
{
	struct fix *f = *state;
	icalcomponent *a, *b;
	int64_t rseq;
	tstamp mod;
	int s1;

	assert_int_equal(db_rev(f->db, "occ", "q1/2024-03-13",
				"0123456789abcdef", f->now - 86400, &rseq,
				&mod), 0);
	assert_int_equal(db_rev(f->db, "occ", "q1/2024-03-13",
				"fedcba9876543210", f->now - 3600, &rseq,
				&mod), 0);
	assert_int_equal(rseq, 1);
	a = sec_feed(f, f->now);
	s1 = seq(event(a, "q1-2024-03-13@127.0.0.1"));
	assert_int_equal(s1, 1);
	assert_int_equal(feeds_revise(NULL, f->c, f->db, f->now + 30), 0);
	b = sec_feed(f, f->now + 60);
	assert_true(seq(event(b, "q1-2024-03-13@127.0.0.1")) > s1);
	icalcomponent_free(a);
	icalcomponent_free(b);
}

static void test_tokens_in_memory(void **state)
{
	struct fix *f = *state;
	struct feeds *fs = feeds_new();
	const struct unit *u = conf_unit(f->c, "b");
	char *want = NULL;

	assert_null(feeds_token(fs, f->c, u));
	assert_int_equal(feeds_load_tokens(fs, f->c, f->db), 0);
	assert_int_equal(db_unit_token(f->db, "b", &want), 0);
	assert_non_null(feeds_token(fs, f->c, u));
	assert_string_equal(feeds_token(fs, f->c, u), want);
	assert_string_not_equal(feeds_token(fs, f->c, conf_unit(f->c, "a")),
				want);
	/* loaded for another configuration: not trusted */
	assert_null(feeds_token(fs, NULL, u));
	free(want);
	feeds_free(fs);
}

static void test_cache_bounded_by_bytes(void **state)
{
	struct fix *f = *state;
	const char *ids[] = { "a", "b", "c" };
	struct app a;
	size_t one;

	memset(&a, 0, sizeof(a));
	a.conf = f->c;
	a.db = f->db;
	clock_init(&a.clk, true, f->now, 0.0);
	a.feeds = feeds_new();
	assert_non_null(feeds_unit(&a, conf_unit(f->c, "a")));
	one = feeds_bytes(a.feeds);
	assert_true(one > 0);
	/* room for two unit feeds, not three */
	feeds_set_limit(a.feeds, one * 2 + one / 2);
	for (int round = 0; round < 3; round++)
		for (size_t i = 0; i < 3; i++) {
			assert_non_null(feeds_unit(&a, conf_unit(f->c,
								 ids[i])));
			assert_true(feeds_bytes(a.feeds) <= one * 2 + one / 2);
		}
	/* the most recent stays */
	{
		const struct doc *d = feeds_unit(&a, conf_unit(f->c, "c"));

		assert_ptr_equal(feeds_unit(&a, conf_unit(f->c, "c")), d);
	}
	feeds_free(a.feeds);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_secretariat_calendar,
						setup, teardown),
		cmocka_unit_test_setup_teardown(test_uids_stable, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_sequence_submission,
						setup, teardown),
		cmocka_unit_test_setup_teardown(test_sequence_title, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_unit_feed, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_unit_alarm_times, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_unit_done, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_sequence_alarm_passes,
						setup, teardown),
		cmocka_unit_test_setup_teardown(test_allday_and_timed, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_cache, setup, teardown),
		cmocka_unit_test_setup_teardown(test_build_writes_nothing,
						setup, teardown),
		cmocka_unit_test_setup_teardown(
			test_sequence_without_stored_revision, setup, teardown),
		cmocka_unit_test_setup_teardown(test_sequence_after_upgrade,
						setup, teardown),
		cmocka_unit_test_setup_teardown(test_tokens_in_memory, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_cache_bounded_by_bytes,
						setup, teardown),
	};

	log_init("test_feed", 0);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
