/*
 * tz.c - IANA time zones through libical's builtin (system zoneinfo) zones.
 *
 * libical only answers "what is the UTC offset at this instant"; every
 * conversion here is built from that one question plus our own calendar
 * arithmetic, which keeps the libical surface small and the DST edge cases
 * (gaps, repeated hours) decided in one place.
 */
#include "cutoffd.h"

#include <libical/ical.h>
#include <stdlib.h>
#include <string.h>

struct tz {
	char *name;
	icaltimezone *zone;     /* owned by libical */
};

/* libical turns the name into a path under the zoneinfo directory: accept
 * IANA-looking names only, never "..", so a config can't point it at an
 * arbitrary file. */
static bool
valid_zone_name(const char *name)
{
	size_t len;

	if (name == NULL)
		return false;
	len = strlen(name);
	if (len == 0 || len > 128 || name[0] == '/' || strstr(name, "..") != NULL)
		return false;
	for (size_t i = 0; i < len; i++) {
		char ch = name[i];

		if (!((ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') ||
		      (ch >= '0' && ch <= '9') || ch == '/' || ch == '_' ||
		      ch == '-' || ch == '+'))
			return false;
	}
	return true;
}

struct tz *
tz_load(const char *name)
{
	icaltimezone *zone;
	struct tz *tz;

	if (!valid_zone_name(name))
		return NULL;
	if (strcmp(name, "UTC") == 0)
		zone = icaltimezone_get_utc_timezone();
	else
		zone = icaltimezone_get_builtin_timezone(name);
	if (zone == NULL)
		return NULL;
	tz = xcalloc(1, sizeof(*tz));
	tz->name = xstrdup(name);
	tz->zone = zone;
	return tz;
}

void
tz_free(struct tz *tz)
{
	if (tz == NULL)
		return;
	free(tz->name);
	free(tz);
}

const char *
tz_name(const struct tz *tz)
{
	return tz->name;
}

static int64_t
floordiv(int64_t a, int64_t b)
{
	int64_t q = a / b;

	if ((a % b != 0) && ((a < 0) != (b < 0)))
		q--;
	return q;
}

/* UTC offset (seconds east) in effect at instant t; tz NULL is UTC. */
static int
offset_at(const struct tz *tz, tstamp t)
{
	struct icaltimetype it = icaltime_null_time();
	int64_t days = floordiv(t, 86400);
	int64_t sod = t - days * 86400;
	struct ymd d = civil_from_days(days);
	int dst = 0;

	if (tz == NULL)
		return 0;

	it.year = d.y;
	it.month = d.m;
	it.day = d.d;
	it.hour = (int)(sod / 3600);
	it.minute = (int)(sod / 60 % 60);
	it.second = (int)(sod % 60);
	return icaltimezone_get_utc_offset_of_utc_time(tz->zone, &it, &dst);
}

/* Local seconds-since-epoch (as if the zone were UTC) -> UTC instant.  In a
 * repeated hour the first instant wins; a time inside a gap moves forward by
 * the gap's length (02:30 on a spring-forward day -> 03:30), as mktime does. */
static tstamp
local_to_utc(const struct tz *tz, int64_t local)
{
	/* zones change offset at most once within a day around any time */
	int o1 = offset_at(tz, local - 86400);
	int o2 = offset_at(tz, local + 86400);
	tstamp t1 = local - o1, t2 = local - o2;
	bool ok1 = offset_at(tz, t1) == o1;
	bool ok2 = offset_at(tz, t2) == o2;

	if (ok1 && ok2)
		return t1 < t2 ? t1 : t2;
	if (ok1)
		return t1;
	if (ok2)
		return t2;
	return t1 > t2 ? t1 : t2;
}

int
tz_offset(const struct tz *tz, tstamp t)
{
	return offset_at(tz, t);
}

tstamp
tz_mktime(const struct tz *tz, struct ymd date, int minute)
{
	int64_t local = days_from_civil(date.y, date.m, date.d) * 86400 +
			(int64_t)minute * 60;

	return local_to_utc(tz, local);
}

void
tz_local(const struct tz *tz, tstamp t, struct ymd *date, int *minute,
	 int *second)
{
	int64_t local = t + offset_at(tz, t);
	int64_t days = floordiv(local, 86400);
	int64_t sod = local - days * 86400;

	if (date != NULL)
		*date = civil_from_days(days);
	if (minute != NULL)
		*minute = (int)(sod / 60);
	if (second != NULL)
		*second = (int)(sod % 60);
}

/* n decimal digits at s (exactly), or -1 */
static int
digits(const char *s, int n)
{
	int v = 0;

	for (int i = 0; i < n; i++) {
		if (s[i] < '0' || s[i] > '9')
			return -1;
		v = v * 10 + (s[i] - '0');
	}
	return v;
}

int
tz_parse_local(const struct tz *tz, const char *s, tstamp *out)
{
	struct ymd d;
	char date[11];
	int hh = 0, mm = 0, ss = 0;
	size_t len;

	if (s == NULL)
		return -1;
	len = strlen(s);
	if (len < 10)
		return -1;
	memcpy(date, s, 10);
	date[10] = '\0';
	if (parse_ymd(date, &d) < 0)
		return -1;
	s += 10;
	/* a bare date means its midnight, handy for --from/--to */
	if (*s != '\0') {
		if (*s != 'T' && *s != ' ')
			return -1;
		s++;
		if (strlen(s) != 5 && strlen(s) != 8)
			return -1;
		hh = digits(s, 2);
		mm = digits(s + 3, 2);
		if (s[2] != ':' || hh < 0 || hh > 23 || mm < 0 || mm > 59)
			return -1;
		if (s[5] != '\0') {
			ss = digits(s + 6, 2);
			if (s[5] != ':' || ss < 0 || ss > 59)
				return -1;
		}
	}
	*out = tz_mktime(tz, d, hh * 60 + mm) + ss;
	return 0;
}

/* Years are clamped to four digits so the fixed-size outputs always fit. */
static unsigned
clamp_year(int y)
{
	return y < 0 ? 0 : y > 9999 ? 9999 : (unsigned)y;
}

void
tz_format_iso(const struct tz *tz, tstamp t, char *out)
{
	struct ymd d;
	int minute, second;

	tz_local(tz, t, &d, &minute, &second);
	snprintf(out, 17, "%04u-%02u-%02uT%02u:%02u", clamp_year(d.y),
		 (unsigned)d.m % 100, (unsigned)d.d % 100,
		 (unsigned)minute / 60 % 100, (unsigned)minute % 60);
}

void
tz_format_vn(const struct tz *tz, tstamp t, char *out)
{
	struct ymd d;
	int minute, second;

	tz_local(tz, t, &d, &minute, &second);
	snprintf(out, 17, "%02u/%02u/%04u %02u:%02u", (unsigned)d.d % 100,
		 (unsigned)d.m % 100, clamp_year(d.y),
		 (unsigned)minute / 60 % 100, (unsigned)minute % 60);
}

/* libical has no component for its own UTC zone; feeds still want one. */
static icalcomponent *
utc_vtimezone(const char *name)
{
	icalcomponent *vtz = icalcomponent_new(ICAL_VTIMEZONE_COMPONENT);
	icalcomponent *std = icalcomponent_new(ICAL_XSTANDARD_COMPONENT);
	struct icaltimetype start = icaltime_null_time();

	start.year = 1970;
	start.month = 1;
	start.day = 1;
	icalcomponent_add_property(vtz, icalproperty_new_tzid(name));
	icalcomponent_add_property(std, icalproperty_new_dtstart(start));
	icalcomponent_add_property(std, icalproperty_new_tzoffsetfrom(0));
	icalcomponent_add_property(std, icalproperty_new_tzoffsetto(0));
	icalcomponent_add_property(std, icalproperty_new_tzname("UTC"));
	icalcomponent_add_component(vtz, std);
	return vtz;
}

/* The clone's TZID is the plain IANA name (libical's builtin ones carry a
 * "/freeassociation.sourceforge.net/" prefix), so that feeds can write
 * TZID=tz_name() and calendar clients recognise the zone. */
void *
tz_vtimezone(const struct tz *tz)
{
	icalcomponent *c = icaltimezone_get_component(tz->zone);
	icalproperty *p;

	if (c == NULL)
		return utc_vtimezone(tz->name);
	c = icalcomponent_new_clone(c);
	p = icalcomponent_get_first_property(c, ICAL_TZID_PROPERTY);
	if (p != NULL)
		icalproperty_set_tzid(p, tz->name);
	else
		icalcomponent_add_property(c, icalproperty_new_tzid(tz->name));
	return c;
}
