/*
 * log.c - one-line log records on stderr.
 *
 * Under systemd (JOURNAL_STREAM set) each line starts with a "<N>" priority
 * prefix that journald turns into the record's priority (journald stamps
 * the time itself); elsewhere lines start with a local ISO 8601 time with
 * its UTC offset, in the configured zone (log_set_zone) or else the
 * process's TZ, so a terminal or a file read later is unambiguous.  Callers escape untrusted text with
 * buf_put_escaped before it gets here.
 */
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cutoffd.h"

static const char *log_ident = "cutoffd";
static int log_verbosity;
static bool log_journal;
static struct tz *log_zone;     /* NULL: the process's TZ (localtime_r) */

void
log_init(const char *ident, int verbosity)
{
	log_ident = ident;
	log_verbosity = verbosity;
	log_journal = log_to_journal();
}

void
log_set_zone(const char *name)
{
	struct tz *z = name != NULL ? tz_load(name) : NULL;

	tz_free(log_zone);
	log_zone = z;
}

bool
log_to_journal(void)
{
	const char *e = getenv("JOURNAL_STREAM");

	/* The contract says "when JOURNAL_STREAM is set"; systemd also
	 * suggests comparing its DEV:INO with stderr's, which would drop
	 * the prefixes for a child whose stderr was redirected, but would
	 * break tools that set the variable by hand to get them. */
	return e != NULL;
}

void
log_plain(enum log_level lvl, const char *line)
{
	if (log_journal)
		fprintf(stderr, "<%d>%s\n", (int)lvl, line);
	else
		fprintf(stderr, "%s\n", line);
	fflush(stderr);
}

bool
log_enabled(enum log_level lvl)
{
	return lvl != LOG_DEBUG || log_verbosity >= 1;
}

static const char *
level_word(enum log_level lvl)
{
	switch (lvl) {
	case LOG_ERR: return "error";
	case LOG_WARN: return "warning";
	case LOG_INFO: return "info";
	case LOG_DEBUG: return "debug";
	}
	return "?";
}

/* "2026-12-03T14:30:01+07:00" (26 bytes with the NUL) */
static void
log_stamp(char *out, size_t size)
{
	struct timespec ts;
	struct tm tm;
	long off;
	char sign = '+';

	clock_gettime(CLOCK_REALTIME, &ts);
	if (log_zone != NULL) {
		struct ymd d;
		int minute, second;

		tz_local(log_zone, (tstamp)ts.tv_sec, &d, &minute, &second);
		off = tz_offset(log_zone, (tstamp)ts.tv_sec);
		tm.tm_year = d.y - 1900;
		tm.tm_mon = d.m - 1;
		tm.tm_mday = d.d;
		tm.tm_hour = minute / 60;
		tm.tm_min = minute % 60;
		tm.tm_sec = second;
	} else {
		localtime_r(&ts.tv_sec, &tm);
		off = tm.tm_gmtoff;
	}
	if (off < 0) {
		sign = '-';
		off = -off;
	}
	snprintf(out, size, "%04d-%02d-%02dT%02d:%02d:%02d%c%02ld:%02ld",
		 (tm.tm_year + 1900) % 10000, (tm.tm_mon + 1) % 100,
		 tm.tm_mday % 100, tm.tm_hour % 100, tm.tm_min % 100,
		 tm.tm_sec % 100, sign, off / 3600 % 100, off / 60 % 60);
}

/* the attribute lets clang's -Wformat-nonliteral see fmt is checked */
static void log_v(enum log_level lvl, const char *fmt, va_list ap)
	__attribute__((format(printf, 2, 0)));

static void
log_v(enum log_level lvl, const char *fmt, va_list ap)
{
	char line[2048], stamp[48];
	size_t n;

	if (lvl == LOG_DEBUG && log_verbosity < 1)
		return;
	vsnprintf(line, sizeof line, fmt, ap);
	/* A record is one line whatever the message holds. */
	for (n = 0; line[n] != '\0'; n++)
		if (line[n] == '\n' || line[n] == '\r')
			line[n] = ' ';
	if (log_journal) {
		fprintf(stderr, "<%d>%s\n", (int)lvl, line);
	} else {
		log_stamp(stamp, sizeof stamp);
		fprintf(stderr, "%s %s[%s]: %s\n", stamp, log_ident,
			level_word(lvl), line);
	}
	fflush(stderr);
}

void
log_msg(enum log_level lvl, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	log_v(lvl, fmt, ap);
	va_end(ap);
}

void
fatal(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	log_v(LOG_ERR, fmt, ap);
	va_end(ap);
	exit(1);
}
