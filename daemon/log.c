/*
 * log.c - one-line log records on stderr.
 *
 * Under systemd (JOURNAL_STREAM set) each line starts with a "<N>" priority
 * prefix that journald turns into the record's priority; elsewhere lines
 * carry a time stamp and level word.  Callers escape untrusted text with
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

void
log_init(const char *ident, int verbosity)
{
	log_ident = ident;
	log_verbosity = verbosity;
	log_journal = log_to_journal();
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

/* the attribute lets clang's -Wformat-nonliteral see fmt is checked */
static void log_v(enum log_level lvl, const char *fmt, va_list ap)
	__attribute__((format(printf, 2, 0)));

static void
log_v(enum log_level lvl, const char *fmt, va_list ap)
{
	char line[2048], stamp[32];
	struct timespec ts;
	struct tm tm;
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
		clock_gettime(CLOCK_REALTIME, &ts);
		localtime_r(&ts.tv_sec, &tm);
		strftime(stamp, sizeof stamp, "%Y-%m-%d %H:%M:%S", &tm);
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
