/*
 * cutoffd.h - the one header of cutoffd and cutoffctl.
 *
 * Every module's exports are declared here, grouped by the file that defines
 * them.  Conventions (see README "Code"):
 *   - one internal time type, `tstamp`: seconds since the epoch, UTC.  Local
 *     dates and times exist only at the edges (config, feeds, mails, CLI).
 *   - functions returning int: 0 on success, -1 on error, unless documented.
 *   - output parameters are written only on success.
 *   - destructors accept NULL.
 *   - x* allocators never return NULL (they abort on exhaustion).
 */
#ifndef CUTOFFD_H
#define CUTOFFD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/types.h>

#define CUTOFFD_VERSION "0.2.0"

#define PRINTF_LIKE(f, a) __attribute__((format(printf, f, a)))
#define NORETURN __attribute__((noreturn))

typedef int64_t tstamp;

/* ------------------------------------------------------------------ util.c */

void *xmalloc(size_t n);
void *xcalloc(size_t n, size_t size);
void *xrealloc(void *p, size_t n);
char *xstrdup(const char *s);          /* xstrdup(NULL) == NULL */
char *xstrndup(const char *s, size_t n);
char *xasprintf(const char *fmt, ...) PRINTF_LIKE(1, 2);

/* Growable byte buffer, always NUL-terminated once anything was added. */
struct buf {
	char *p;
	size_t len, cap;
};
void buf_init(struct buf *b);
void buf_free(struct buf *b);
void buf_reset(struct buf *b);            /* len = 0, keeps memory */
void buf_add(struct buf *b, const void *data, size_t n);
void buf_puts(struct buf *b, const char *s);
void buf_putc(struct buf *b, char c);
void buf_printf(struct buf *b, const char *fmt, ...) PRINTF_LIKE(2, 3);
char *buf_steal(struct buf *b);           /* caller frees; b is reset */
const char *buf_str(struct buf *b);       /* "" when empty */

/* Appends s with every byte outside printable ASCII/valid UTF-8, and every
 * control character, escaped (\n, \xNN) so untrusted text is safe in a log
 * line.  At most `max` input bytes are copied (then "..."). */
void buf_put_escaped(struct buf *b, const char *s, size_t max);

/* Reads a whole file (at most max bytes, else error EFBIG). Returns 0 or -1
 * with errno set.  *out is NUL-terminated. */
int read_file(const char *path, size_t max, char **out, size_t *len);

/* "90m", "36h", "7d", "30s": seconds. Returns -1 on anything else. */
int parse_duration(const char *s, int64_t *secs);
/* "08:00" -> 480.  "24:00" is accepted only when allow_24 (-> 1440). */
int parse_hhmm(const char *s, bool allow_24, int *minutes);
/* trims ASCII white space in place, returns s */
char *strtrim(char *s);
bool str_has_crlf(const char *s);
bool valid_id(const char *s);            /* [a-z0-9][a-z0-9_-]*, <= 64 bytes */
bool utf8_valid(const char *s, size_t n);
/* constant-time comparison of two NUL-terminated secrets */
bool ct_streq(const char *a, const char *b);
/* n random bytes as 2n lowercase hex chars + NUL into out (getrandom). */
int random_hex(char *out, size_t nbytes);
/* Splits a list on commas and/or white space; returns count, fills *out with
 * xstrdup'ed items (caller frees each and the array). */
size_t split_list(const char *s, const char *seps, char ***out);
void free_list(char **v, size_t n);
/* qsort/bsearch comparator of int64_t */
int cmp_int64(const void *a, const void *b);

/* Calendar arithmetic on the proleptic Gregorian calendar (pure). */
struct ymd {
	int y, m, d;
};
int64_t days_from_civil(int y, int m, int d);        /* 1970-01-01 == 0 */
struct ymd civil_from_days(int64_t days);
int ymd_wday(struct ymd d);                          /* 0 = Sunday */
bool ymd_valid(struct ymd d);
int ymd_cmp(struct ymd a, struct ymd b);
struct ymd ymd_add_days(struct ymd d, int64_t n);
int parse_ymd(const char *s, struct ymd *out);       /* YYYY-MM-DD */
/* "dd/mm/yyyy" into out (>= 11 bytes) - the form people read */
void ymd_format_vn(struct ymd d, char *out);

/* Diagnostics collected while loading: every problem, not only the first. */
struct diag {
	char **msg;
	size_t n, cap;
};
void diag_init(struct diag *d);
void diag_free(struct diag *d);
/* file may be NULL (then no prefix); line <= 0 means no line number */
void diag_add(struct diag *d, const char *file, int line, const char *fmt, ...)
	PRINTF_LIKE(4, 5);
void diag_print(const struct diag *d, FILE *f);

/* ------------------------------------------------------------------ cidr.c */

/* An address range, IPv4 or IPv6, bits past the prefix zero. */
struct cidr {
	int family;              /* AF_INET or AF_INET6 */
	unsigned char addr[16];  /* network order; 4 bytes used for IPv4 */
	int bits;
};
struct sockaddr;
/* "192.0.2.0/24", "2001:db8::/32", or a bare address (all bits).  Strict:
 * what inet_pton accepts, a decimal prefix within the family, no bits set
 * past it.  On error *why says what is wrong (a static string). */
int cidr_parse(const char *s, struct cidr *out, const char **why);
void cidr_format(const struct cidr *c, char *out, size_t size);  /* >= 64 */
/* Whether sa (AF_INET, AF_INET6; a v4-mapped v6 address matches v4 ranges
 * too) is in one of v[0..n). */
bool cidr_match(const struct cidr *v, size_t n, const struct sockaddr *sa);
bool cidr_loopback(const struct sockaddr *sa);  /* 127.0.0.0/8, ::1 */

/* ------------------------------------------------------------------- log.c */

enum log_level { LOG_ERR = 3, LOG_WARN = 4, LOG_INFO = 6, LOG_DEBUG = 7 };
/* journald priority prefixes ("<3>") when JOURNAL_STREAM is set. */
void log_init(const char *ident, int verbosity);
void log_msg(enum log_level lvl, const char *fmt, ...) PRINTF_LIKE(2, 3);
/* Whether lvl would be written: skip building a costly message if not. */
bool log_enabled(enum log_level lvl);
#define log_err(...) log_msg(LOG_ERR, __VA_ARGS__)
#define log_warn(...) log_msg(LOG_WARN, __VA_ARGS__)
#define log_info(...) log_msg(LOG_INFO, __VA_ARGS__)
#define log_debug(...) log_msg(LOG_DEBUG, __VA_ARGS__)
void fatal(const char *fmt, ...) PRINTF_LIKE(1, 2) NORETURN;
/* True when JOURNAL_STREAM is set: stderr is journald's. */
bool log_to_journal(void);
/* The zone of the time stamps on terminal lines (the configuration's
 * timezone); NULL or an unknown name: the process's TZ. */
void log_set_zone(const char *name);
/* A bare line on stderr ("FILE:LINE: message" of --check), with only the
 * "<N>" prefix when stderr is the journal. */
void log_plain(enum log_level lvl, const char *line);

/* -------------------------------------------------------------------- tz.c */

/* An IANA zone, through libical's builtin (system zoneinfo) zones. */
struct tz;
struct tz *tz_load(const char *name);         /* NULL when unknown */
void tz_free(struct tz *tz);
const char *tz_name(const struct tz *tz);
/* local date + minute of day (0..1440; 1440 = the next midnight) -> UTC */
tstamp tz_mktime(const struct tz *tz, struct ymd date, int minute);
/* The UTC offset in effect at t, seconds east.  In this function and
 * tz_local, tz_format_*, tz NULL means UTC (a configuration loaded for a
 * test or a fuzzer may have no zone). */
int tz_offset(const struct tz *tz, tstamp t);
/* UTC -> local date, minute of day (0..1439) and second (0..59) */
void tz_local(const struct tz *tz, tstamp t, struct ymd *date, int *minute,
	      int *second);
/* "2024-03-06T07:59" (seconds optional) as local time in tz */
int tz_parse_local(const struct tz *tz, const char *s, tstamp *out);
/* ISO 8601 local, "YYYY-MM-DDTHH:MM" into out (>= 17 bytes) */
void tz_format_iso(const struct tz *tz, tstamp t, char *out);
/* "dd/mm/yyyy HH:MM" into out (>= 17 bytes) */
void tz_format_vn(const struct tz *tz, tstamp t, char *out);
/* The zone's VTIMEZONE component (an icalcomponent *), owned by the caller. */
void *tz_vtimezone(const struct tz *tz);

/* --------------------------------------------------------------- holiday.c */

/* Non-working days, from an .ics of all-day VEVENTs (DTSTART;VALUE=DATE,
 * DTEND exclusive or DURATION; RRULE expanded up to the year 2100).  An
 * event with CATEGORIES:WORKDAY marks days worked although they would be
 * off (a Saturday worked in exchange); a day both off and worked is an
 * error. */
struct holidays {
	int64_t *days;       /* days_from_civil, sorted, unique */
	size_t n;
	int64_t *work;       /* the WORKDAY days, sorted, unique */
	size_t nwork;
	int last_year;       /* last year of a dated (non-RRULE) event; 0 none */
};
int holidays_load(const char *path, struct holidays *out, struct diag *d);
int holidays_parse(const char *name, const char *text, size_t len,
		   struct holidays *out, struct diag *d);
void holidays_free(struct holidays *h);
bool holidays_has(const struct holidays *h, int64_t day);
bool holidays_workday(const struct holidays *h, int64_t day);
/* "PATH: holidays file covers up to 2026; horizon reaches 2028: dates after
 * 31/12/2026 assume no public holiday" (xmalloc'ed), or NULL when the
 * horizon stays inside the covered years or the file dates nothing. */
char *holidays_coverage(const struct holidays *h, const char *path,
			int horizon_year);
struct conf;
/* That warning for c's holidays and horizon seen from now: "warning: ..."
 * on f, or logged (log_warn) when f is NULL. */
void holidays_warn(const struct conf *c, tstamp now, FILE *f);

/* ------------------------------------------------------------------ conf.c */

enum audience {
	AUD_UNIT = 1 << 0,
	AUD_HEAD = 1 << 1,
	AUD_SECRETARIAT = 1 << 2,
	AUD_CHIEF = 1 << 3,
};
#define AUD_COUNT 4
const char *audience_name(enum audience a);   /* "unit", "head", ... */

enum channel { CH_EMAIL, CH_WEBHOOK };
const char *channel_name(enum channel c);     /* "email", "webhook" */

enum shift { SHIFT_NEXT, SHIFT_PREV, SHIFT_NONE };
enum transport { TRANSPORT_SMTP, TRANSPORT_MAILDIR };
enum starttls { STARTTLS_TRY, STARTTLS_REQUIRED, STARTTLS_NO };
enum hookfmt { HOOK_STANDARD, HOOK_TEXT };

struct step {
	int days;            /* offset from the effective due date */
	unsigned aud;        /* enum audience bits */
};

struct policy {
	char *id;
	int line;
	int at;              /* local send time, minutes after midnight */
	struct step *remind;
	size_t nremind;
	struct step *escalate;
	size_t nescalate;
	int64_t repeat;      /* seconds; 0 = no repeat */
	int64_t until;       /* seconds after the due date; 0 = no limit */
	int quiet_from;      /* minutes; -1 when no quiet window */
	int quiet_to;
	enum shift shift;
	bool send_all_days;  /* send_days = all; default workdays only */
	bool proposal_keeps_head;  /* proposal_pauses = none; default head:
				      an open proposal holds escalations to
				      the head (engine.c) */
	bool link_record;    /* link = record: a unit's link records the
				submission; default propose (link.c) */
};

struct md {
	int m, d;
};

/* [cycle] period: none (default), MM-DD .. MM-DD, `previous`, or a preset
 * of Decree 09/2019/ND-CP Art. 12 (sched.c computes them). */
enum period_kind {
	PERIOD_NONE, PERIOD_FIXED, PERIOD_PREVIOUS, PERIOD_MONTH,
	PERIOD_QUARTER, PERIOD_HALF, PERIOD_NINE_MONTHS, PERIOD_YEAR
};

struct cycle {
	char *id;
	int line;
	char *title;
	struct md *yearly;   /* due = MM-DD entries */
	size_t nyearly;
	struct ymd *once;    /* due = YYYY-MM-DD entries */
	size_t nonce;
	char *rrule;         /* rrule = FREQ=...; NULL when unused */
	struct ymd start;    /* DTSTART of the rrule (key `start`); without
				the key, conf_apply_state sets it from since */
	bool start_given;    /* `start` was in the file */
	bool period_fixed;   /* PERIOD_FIXED (kept for old callers) */
	enum period_kind period;
	struct md period_from, period_to;
	int due_minute;      /* `time`; 1440 = end of day */
	char *ref;           /* `ref`: the plan's reference, NULL when unset */
	enum cycle_label {   /* `label`: how {{period_label}} is made */
		LABEL_AUTO,  /* from the title's words (tmpl.c) */
		LABEL_NONE, LABEL_MONTH, LABEL_QUARTER, LABEL_HALF,
		LABEL_NINE_MONTHS, LABEL_YEAR,
		LABEL_TEXT   /* label_text as written, %Y = the year */
	} label;
	char *label_text;
	const struct policy *policy;
	size_t *units;       /* indices into conf->units, ascending */
	size_t nunits;
};

struct unit {
	char *id;
	int line;
	char *name;
	char **email;
	size_t nemail;
	char *head;          /* may be NULL */
	char *webhook;       /* may be NULL */
	char **groups;
	size_t ngroups;
};

/* [admin ID]: an admin with a token of its own; the actor of what it
 * records.  [daemon] admin_token_file is the admin named "admin". */
struct admin {
	char *id;
	int line;
	char *name;          /* display name, may be NULL */
	char *token_file;    /* resolved; from `credential` too */
	char *token;         /* contents; NULL when not read */
};

/* [group ID]: a group of units' display name (groups are named by the
 * units' `groups` key; this section only names one) */
struct group_def {
	char *id;
	int line;
	char *name;
};

struct conf {
	char *path;          /* as given */
	char *dir;           /* directory of path, for relative paths */
	struct {
		char *timezone;
		char *state;          /* resolved path */
		char *listen;         /* "host:port" */
		char *public_url;     /* no trailing slash */
		char *holidays;       /* resolved path or NULL */
		unsigned workdays;    /* bit (1 << wday), 0 = Sunday */
		char *admin_token_file;
		char *admin_token;    /* contents, trimmed; NULL if no file */
		bool admin_token_auto; /* no admin_token_file: the daemon
					* creates STATEDIR/admin.token */
		char *calendar_token; /* NULL when not set */
		int64_t horizon;      /* seconds ahead feeds/plans look */
		int64_t history;      /* seconds back feeds/status look */
		char *templates;      /* resolved dir, overrides file by file */
		char *datadir;        /* installed defaults: templates/, holidays */
		char *lang;           /* "vi" | "en" */
		/* who may GET /metrics; NULL = loopback clients only */
		struct cidr *metrics_allow;
		size_t nmetrics_allow;
		/* the first day chased: from `since`, else the state store's
		 * first start (conf_apply_state); since_day INT64_MIN = none */
		int64_t since_day;
		bool since_given;
		unsigned max_connections;        /* HTTP, at once */
		unsigned max_connections_per_ip; /* from one client address */
	} daemon;
	struct {
		enum transport transport;
		char *url;
		enum starttls starttls;
		bool tls_verify;
		char *user;
		char *password_file;
		char *password;       /* contents or NULL */
		char *from;
		char *maildir;        /* resolved */
		int parallel;
		int64_t retry_min;    /* first backoff */
		int64_t retry_max;    /* backoff cap */
		int64_t give_up;      /* after this long, a temp failure is final */
		int64_t timeout;      /* per SMTP transaction */
		bool allow_plaintext_auth;  /* AUTH without TLS off loopback */
		bool auth_needs_tls;  /* starttls = try made required (user set,
					 server not a loopback literal) */
	} mail;
	struct {                  /* [imap]: the secretariat's mailbox */
		bool enabled;         /* the section is there */
		char *url;            /* imaps://host/MAILBOX, imap://... */
		enum starttls starttls;  /* default required */
		bool tls_verify;
		char *user;
		char *password_file;
		char *password;       /* contents or NULL */
		int64_t poll;         /* seconds, >= 2 */
		bool record;          /* mode = record (else propose) */
	} imap;
	struct {
		char *secret_file;
		unsigned char *secret;  /* raw key bytes or NULL */
		size_t secret_len;
		int64_t timeout;
		enum hookfmt format;
	} webhook;
	struct {
		char *name;
		char *email;
		char *chief;
	} secretariat;
	struct policy *policies;
	size_t npolicies;
	struct cycle *cycles;
	size_t ncycles;
	struct unit *units;
	size_t nunits;
	char **groups;          /* sorted unique group names */
	size_t ngroups;
	struct admin *admins;   /* [admin ID] sections */
	size_t nadmins;
	struct group_def *groupdefs;   /* [group ID] sections */
	size_t ngroupdefs;

	struct tz *tz;
	struct holidays hol;
	struct tmplset *tmpl;   /* NULL when loaded with CONF_NO_FILES */

	/* conf.c's lookup indices (ids sorted); NULL in a hand-built conf,
	 * then conf_unit/conf_cycle scan linearly. */
	size_t *unit_index;
	size_t *cycle_index;

	/* Occurrence ids moved by a reload (old -> new, sorted by old), from
	 * the state store (conf_apply_state): sched_occurrence resolves them */
	struct occ_alias {
		char *from, *to;
	} *aliases;
	size_t naliases;
};

enum conf_flags {
	CONF_NO_FILES = 1 << 0,  /* don't read holidays, secrets, templates (fuzz) */
};

/* Parses and validates; NULL when anything is wrong, every problem in d as
 * "FILE:LINE: message". */
struct conf *conf_load(const char *path, unsigned flags, struct diag *d);
struct conf *conf_parse(const char *name, const char *text, size_t len,
			unsigned flags, struct diag *d);
void conf_free(struct conf *c);
const struct unit *conf_unit(const struct conf *c, const char *id);
const struct cycle *conf_cycle(const struct conf *c, const char *id);
bool conf_workday(const struct conf *c, int64_t day);
/* [group ID] name of a group, NULL when it has none */
const char *conf_group_name(const struct conf *c, const char *id);
/* Whether the unit at conf->units[unit_index] reports in cycle cy. */
bool conf_cycle_has(const struct cycle *cy, size_t unit_index);
/* Sets what the configuration takes from the state store: the default
 * `since` (day number; INT64_MIN = none, then rrule cycles without `start`
 * count from today_day) and the moved-occurrence aliases (copied; may be
 * NULL/0).  Idempotent; call after loading, before using c. */
void conf_apply_state(struct conf *c, int64_t since_day, int64_t today_day,
		      const struct occ_alias *aliases, size_t naliases);
/* one line: "cutoffd.conf: 11 units, 4 cycles, 1 policy, 23 holidays" */
char *conf_summary(const struct conf *c);
/* STATEDIR/reload.status: the daemon's "GENERATION PID ok|rejected|started"
 * after each reload, read by `cutoffctl reload` (xmalloc'ed path). */
char *conf_reload_status_path(const struct conf *c);

/* ----------------------------------------------------------------- sched.c */

/* The pure schedule engine: (conf, submissions, time window) -> occurrences
 * and notices.  No I/O, no clock of its own. */

#define OCC_ID_MAX 96

struct occ {
	const struct cycle *cycle;
	struct ymd nominal;       /* the due date as configured: the id's date */
	struct ymd due;           /* after the non-working-day shift */
	tstamp due_at;            /* a report after this instant is late */
	bool has_period;
	struct ymd period_from, period_to;
	char id[OCC_ID_MAX];      /* "cycle/YYYY-MM-DD" */
	/* an extended deadline (sched_extend): due/due_at are the new ones,
	 * was_due/was_due_at those of the plan */
	bool extended;
	int ext_minute;           /* due time of the extended deadline */
	struct ymd was_due;
	tstamp was_due_at;
};

/* The due time of o in minutes (1440 = end of day): the extension's when
 * extended, else the cycle's `time`. */
static inline int
occ_due_minute(const struct occ *o)
{
	return o->extended ? o->ext_minute : o->cycle->due_minute;
}

/* Occurrences of every cycle whose due_at lies in [from, to), sorted by
 * due_at then id.  *out is xmalloc'ed (free it). */
int sched_occurrences(const struct conf *c, tstamp from, tstamp to,
		      struct occ **out, size_t *n);
/* Looks an id up; -1 when the cycle is unknown or the date isn't one of its
 * nominal due dates. */
int sched_occurrence(const struct conf *c, const char *id, struct occ *out);

#define STEP_NAME_MAX 40

struct notice_step {
	tstamp at;                /* quiet-hours adjusted send time */
	int days;                 /* offset from the due date (repeat included) */
	unsigned aud;             /* enum audience bits */
	bool escalation;
	char name[STEP_NAME_MAX]; /* "remind-7d", "remind+0d", "escalate+3d",
				     "repeat+10d" */
};

/* Every step of an occurrence, in time order (repeats until `until`).
 * Returns how many were written (at most max) or -1. */
int sched_steps(const struct conf *c, const struct occ *o,
		struct notice_step *out, size_t max);
#define SCHED_MAX_STEPS 256

struct plan_row {
	tstamp at;
	const struct occ *occ;
	const struct unit *unit;
	const struct notice_step *step;
	enum audience aud;
	enum channel ch;
	const char *recipients;   /* comma separated; the URL for webhooks */
};

/* true when (occurrence, unit) has a recorded report */
typedef bool (*submitted_fn)(void *ctx, const char *occ_id, const char *unit_id);
/* return non-zero to stop the walk */
typedef int (*plan_fn)(void *ctx, const struct plan_row *row);

/* Every notice with send time in [from, to), in order of (time, occurrence,
 * unit, step, audience, channel); unit_id NULL = all units. */
int sched_plan(const struct conf *c, tstamp from, tstamp to, const char *unit_id,
	       submitted_fn submitted, void *sctx, plan_fn fn, void *ctx);
struct extension;
/* sched_plan with extended deadlines: ext (n of them, any order) move the
 * steps of their occurrence, for every unit or one; an extended
 * occurrence's step names carry the new date ("remind-3d~20240320") so
 * that its steps are new notices, not the ones already sent. */
int sched_plan_ext(const struct conf *c, tstamp from, tstamp to,
		   const char *unit_id, const struct extension *ext, size_t n,
		   submitted_fn submitted, void *sctx, plan_fn fn, void *ctx);
/* Applies to o the extension among ext[0..n) that binds unit (its own,
 * else the occurrence-wide one; unit NULL: only the latter).  Returns
 * true when o was extended. */
bool sched_extend(const struct conf *c, struct occ *o,
		  const struct extension *ext, size_t n, const char *unit);
/* Days a policy's steps reach before (*lo <= 0) and after (*hi >= 0) the
 * due date, repeats included; p may be NULL (0, 0). */
void sched_policy_span(const struct policy *p, int64_t *lo, int64_t *hi);
/* The earliest instant >= t at which policy p may send: outside its quiet
 * window and, unless send_days = all, on a working day (a late step caught
 * up by the engine goes out then, not at once).  p NULL: t. */
tstamp sched_hold(const struct conf *c, const struct policy *p, tstamp t);
/* Whether the occurrence is due before `since` (never chased or listed). */
bool sched_before_since(const struct conf *c, const struct occ *o);

/* The reload's matching rule for moved due dates (README "Moved due
 * dates").  ids: occurrence ids with recorded state (submissions or sent
 * notices), sorted, unique.  For each id that c no longer has, one move:
 * to = the occurrence of the same cycle that inherits its state, or ""
 * when it vanishes (why says which).  *out xmalloc'ed, sorted by from. */
struct occ_move {
	char from[OCC_ID_MAX];
	char to[OCC_ID_MAX];     /* "" = vanishes */
	const char *why;         /* static text for a vanishing id */
};
int sched_moves(const struct conf *c, char *const *ids, size_t nids,
		struct occ_move **out, size_t *n);

/* -------------------------------------------------------------------- db.c */

struct db;

#define DB_SCHEMA_VERSION 6
/* longest submission note in bytes (valid UTF-8); longer ones are refused */
#define DB_NOTE_MAX 1000

/* Opens and migrates.  When create is true and nothing is at path, a new
 * store is built under a temporary name and moved into place (never over
 * an existing file); without create a missing store is an error that
 * names the path.  An empty file, a file that is not SQLite, and an SQLite
 * database without cutoffd's application_id (0x63757464) or 0.1.0 schema
 * are refused.  On error returns NULL and *err (xmalloc'ed) says why. */
struct db *db_open(const char *path, bool create, char **err);
/* How long a statement waits for another process's lock: DB_BUSY_MS after
 * db_open (the CLI, start-up); the daemon's loop sets DB_LOOP_BUSY_MS and
 * retries later (db_busy) rather than freezing every request. */
#define DB_BUSY_MS 5000
#define DB_LOOP_BUSY_MS 50
int db_set_busy_timeout(struct db *db, int ms);
/* Whether the last failed statement failed because another process held
 * the lock (SQLITE_BUSY): retry later, it is not an error. */
bool db_busy(const struct db *db);
/* Seconds since writes started failing on the lock (0 = they don't). */
double db_locked_for(const struct db *db);
/* A locked-out writer this long makes db_health fail. */
#define DB_LOCKED_TOO_LONG 30.0
/* /healthz: 0, or -1 with a one-line reason in why (without the path,
 * which is no business of an anonymous client): the path no longer
 * names the open file (deleted, replaced), a bad or truncated header, a
 * page of meta and outbox unreadable, writes locked out for more than
 * DB_LOCKED_TOO_LONG, or the last background integrity check (quick_check
 * on a connection of its own, started by this call when the file changed,
 * at most every few seconds) found damage. */
int db_health(struct db *db, char *why, size_t n);
void db_close(struct db *db);
int db_begin(struct db *db);        /* BEGIN IMMEDIATE */
int db_commit(struct db *db);
void db_rollback(struct db *db);
/* One write of several statements: a transaction of its own, or a
 * savepoint inside the caller's (a failure undoes only that part).
 * Pass the token to db_part_end, ok = whether to keep it. */
int db_part_begin(struct db *db, int *token);
int db_part_end(struct db *db, int token, bool ok);
/* Whether the next commits survive power loss (FULL, the default) or only
 * a crash of the process (NORMAL: no fsync) until the next FULL commit or
 * db_sync.  Only the sender's outcome writes use NORMAL; see sender.c. */
int db_sync_full(struct db *db, bool full);
/* Makes every commit so far power-safe (a WAL checkpoint, which syncs). */
int db_sync(struct db *db);
/* Rows changed through this connection since it opened. */
int64_t db_total_changes(struct db *db);
bool db_ok(struct db *db);          /* db_health(db, NULL, 0) == 0 */
/* PRAGMA data_version: changes when another connection committed. */
int64_t db_data_version(struct db *db);

int db_meta_get(struct db *db, const char *key, char **val);   /* 1: absent */
int db_meta_set(struct db *db, const char *key, const char *val);
/* The links' HMAC key (link.c): 32 random bytes made once (create) and
 * kept in meta.  0, 1 absent (not create), -1. */
int db_link_key(struct db *db, bool create, unsigned char key[32]);

/* The unit's private feed token, created (random) on first use. */
int db_unit_token(struct db *db, const char *unit, char **token);
/* Every stored token; fn returns non-zero to stop. */
int db_unit_token_foreach(struct db *db,
			  int (*fn)(void *ctx, const char *unit,
				    const char *token), void *ctx);

/* Revision tracking for SEQUENCE/LAST-MODIFIED: if hash differs from the
 * stored one, seq is incremented and modified set to now. */
int db_rev(struct db *db, const char *kind, const char *id, const char *hash,
	   tstamp now, int64_t *seq, tstamp *modified);
/* The stored revision, read only: 0, 1 when there is none, -1 error. */
int db_rev_get(struct db *db, const char *kind, const char *id, int64_t *seq,
	       tstamp *modified);
/* Stores (hash, seq 0, now) unless a revision is already stored. */
int db_rev_seed(struct db *db, const char *kind, const char *id,
		const char *hash, tstamp now);

/* The ledger's tables (submissions, their history, extensions) are
 * ledger.c's; db_sub_* are its names of 0.1 and stay for their callers. */
struct submission {
	char occurrence[OCC_ID_MAX];
	char unit[72];
	tstamp at;               /* when the report arrived */
	tstamp recorded;         /* when it was recorded */
	char source[16];         /* cli, api, page, imap, link */
	char *note;              /* xmalloc'ed or NULL */
	bool nil;                /* "không phát sinh": nothing to report */
	char actor[64];          /* who recorded it; "" when unknown */
};
void submission_clear(struct submission *s);  /* frees note */
/* What is wrong with a note people typed (too long, not UTF-8, control
 * characters but newline, which would reach terminals and logs), or NULL
 * when it is fine.  The text reads after "note " or "--note: ". */
const char *note_problem(const char *s, size_t n);

/* Records a report.  Returns 0, or 1 when one was already recorded (the
 * first record stands).  Writes a history event. */
int db_sub_record(struct db *db, const char *occ, const char *unit, tstamp at,
		  const char *source, const char *note, tstamp now);
/* Removes the record (as a history event).  1 when there was none. */
int db_sub_undo(struct db *db, const char *occ, const char *unit,
		const char *source, tstamp now);
/* 0 found, 1 absent, -1 error */
int db_sub_get(struct db *db, const char *occ, const char *unit,
	       struct submission *out);
/* Every current record, optionally for one occurrence; fn returns non-zero
 * to stop. */
int db_sub_foreach(struct db *db, const char *occ,
		   int (*fn)(void *ctx, const struct submission *s), void *ctx);
/* How many reports were recorded, per source (received, nil and confirmed
 * events of the history, undos not subtracted: a counter).  fn is called
 * once per source seen. */
int db_sub_count_sources(struct db *db,
			 void (*fn)(void *ctx, const char *source, int64_t n),
			 void *ctx);
/* History events for (occ, unit), occurrence-wide ones (an extension for
 * every unit) included; unit NULL = every event of the occurrence. */
int64_t db_sub_events(struct db *db, const char *occ, const char *unit);
/* When the latest of those was recorded; 0 when none, -1 on error. */
tstamp db_sub_last_event(struct db *db, const char *occ, const char *unit);

/* The regime's life cycle (0.2).  The first day this store was started
 * (the default `since`): 0 with *day set, 1 when none is recorded and
 * record is false, -1.  With record, today is recorded when none is. */
int db_first_day(struct db *db, int64_t today, bool record, int64_t *day);
/* Occurrence ids a reload moved (sorted by from; free with
 * db_aliases_free).  0 (maybe none), -1. */
struct occ_alias;
int db_aliases(struct db *db, struct occ_alias **out, size_t *n);
void db_aliases_free(struct occ_alias *v, size_t n);
/* Occurrence ids with recorded state (a submission or a sent notice),
 * sorted and unique (free_list). */
int db_state_ids(struct db *db, char ***out, size_t *n);
int db_state_count(struct db *db, const char *occ, int64_t *subs,
		   int64_t *sent);
/* One transaction: from's submissions, their history and its sent notices
 * become to's; its pending notices are cancelled; from resolves to to. */
int db_occ_move(struct db *db, const char *from, const char *to, tstamp now);
/* A pending outbox row is not tried before t (quiet hours held). */
int db_outbox_hold(struct db *db, int64_t id, tstamp t);
/* Moves a pending row's next_try back to t (a hold lifted). */
int db_outbox_release(struct db *db, int64_t id, tstamp t);
/* next_try of a row held while a proposal is open (engine.c): the end of
 * year 9999, released when the proposal is settled */
#define OUTBOX_HELD_PROPOSAL ((tstamp)253402300799LL)

/* The raw handle, for modules that keep their own prepared statements
 * (outbox.c).  Tables of every module are created by db.c's migrations. */
struct sqlite3;
struct sqlite3 *db_handle(struct db *db);
/* A statement of another module, prepared once per connection and kept
 * until db_close.  sql must be a string literal (the cache is keyed by its
 * address).  Give it back with db_stmt_done (reset, bindings cleared). */
struct sqlite3_stmt;
struct sqlite3_stmt *db_stmt(struct db *db, const char *sql);
void db_stmt_done(struct db *db, struct sqlite3_stmt *st);
/* Binds text (NULL: SQL NULL; the text must outlive the step) or an
 * integer to parameter i; -1, logged, when SQLite refuses. */
int db_bind_text(struct db *db, struct sqlite3_stmt *s, int i, const char *v);
int db_bind_int(struct db *db, struct sqlite3_stmt *s, int i, int64_t v);

/*
 * Schema version 1 (db.c creates all of it):
 *
 *   meta(key TEXT PRIMARY KEY, value TEXT)
 *   unit_token(unit TEXT PRIMARY KEY, token TEXT NOT NULL UNIQUE)
 *   rev(kind TEXT, id TEXT, hash TEXT, seq INTEGER, modified INTEGER,
 *       PRIMARY KEY(kind, id))
 *   submission(occurrence TEXT, unit TEXT, at INTEGER, recorded INTEGER,
 *       source TEXT, note TEXT, PRIMARY KEY(occurrence, unit))
 *   submission_event(id INTEGER PRIMARY KEY, occurrence TEXT, unit TEXT,
 *       action TEXT CHECK(action IN ('received','undo')), at INTEGER,
 *       recorded INTEGER, source TEXT, note TEXT)
 *   outbox(id INTEGER PRIMARY KEY,
 *       occurrence TEXT NOT NULL, unit TEXT NOT NULL, step TEXT NOT NULL,
 *       audience TEXT NOT NULL, channel TEXT NOT NULL,
 *       recipients TEXT NOT NULL,
 *       send_at INTEGER NOT NULL,      -- planned send time
 *       created INTEGER NOT NULL,
 *       state TEXT NOT NULL DEFAULT 'pending',
 *             -- pending | sent | failed | cancelled
 *       attempts INTEGER NOT NULL DEFAULT 0,
 *       next_try INTEGER NOT NULL,
 *       last_error TEXT,
 *       message_id TEXT NOT NULL,      -- same for every retry
 *       done_at INTEGER,
 *       UNIQUE(occurrence, unit, step, audience, channel))
 *   index outbox_due ON outbox(state, next_try)
 *
 * Schema version 2:
 *   index outbox_due_channel ON outbox(state, channel, next_try)
 *
 * Every store db.c creates carries PRAGMA application_id 0x63757464
 * ("cutd"); an 0.1.0 store gets it on its first open.
 */

/* ---------------------------------------------------------------- regime.c */

/* What a configuration takes from the state store (db NULL: nothing): the
 * default since (the store's first start, recorded now when record and
 * none is) and the ids earlier reloads moved. */
void regime_apply_state(struct db *db, struct conf *c, tstamp now,
			bool record);
/* Every occurrence with recorded state that c no longer has either moves
 * (its state to the new occurrence; with apply, written) or vanishes (its
 * state kept under its id).  Each is reported: to out (a check), or the
 * log when out is NULL.  old, when given, limits the vanishing reports to
 * ids it had (a reload does not repeat old news). */
void regime_moves(struct db *db, struct conf *c, const struct conf *old,
		  tstamp now, bool apply, FILE *out);
/* The mailbox's bookkeeping (imap.c), schema version 5:
 *   imap_seen(message_id PRIMARY KEY, uidvalidity, uid, seen, outcome,
 *       occurrence, unit, detail)      -- every message read, once
 *   notice_bounce(outbox_id, address, status, diagnostic, at, report_id,
 *       PRIMARY KEY(outbox_id, address))   -- RFC 3464 reports
 *   index outbox_message_id ON outbox(message_id)
 * db_imap_seen: 1 when message_id was read before, 0, -1.
 * db_imap_mark / db_bounce_add: 0 added, 1 already there, -1. */
int db_imap_seen(struct db *db, const char *message_id);
int db_imap_mark(struct db *db, const char *message_id, int64_t uidvalidity,
		 int64_t uid, const char *outcome, const char *occ,
		 const char *unit, const char *detail, tstamp now);
struct notice;
/* The sent email notice whose Message-ID is message_id: 0 (notice_clear
 * it), 1 none, -1. */
int db_notice_by_message_id(struct db *db, const char *message_id,
			    struct notice *out);
int db_bounce_add(struct db *db, int64_t outbox_id, const char *address,
		  const char *status, const char *diagnostic,
		  const char *report_id, tstamp now);
/* Every bounced address, optionally of one occurrence, in (occurrence,
 * unit, step, address) order; the strings live until fn returns, which
 * returns non-zero to stop. */
struct db_bounce {
	const char *occurrence, *unit, *step, *audience, *address, *status,
		*diagnostic;
	tstamp at;
};
typedef int (*db_bounce_fn)(void *ctx, const struct db_bounce *b);
int db_bounce_foreach(struct db *db, const char *occ, db_bounce_fn fn,
		      void *ctx);

/* ---------------------------------------------------------------- ledger.c */

/* The ledger: submissions, nil returns, extended deadlines and the history
 * of every change to them, each with its source (cli, api, page, imap,
 * link) and actor (an admin's name, the system user of cutoffctl).  Each
 * write is one transaction, or a savepoint inside the caller's. */

#define LEDGER_ACTOR_MAX 63

/* Records a report or (nil) a nil return; 0, 1 when one was already
 * recorded (the first stands), -1. */
int ledger_receive(struct db *db, const char *occ, const char *unit,
		   tstamp at, bool nil, const char *source, const char *actor,
		   const char *note, tstamp now);
/* Removes the record; 0, 1 when there was none, -1. */
int ledger_undo(struct db *db, const char *occ, const char *unit,
		const char *source, const char *actor, tstamp now);

/* A moved deadline: for one unit, or (unit "") every unit of the
 * occurrence.  The per-unit one wins over the occurrence-wide one. */
struct extension {
	char occurrence[OCC_ID_MAX];
	char unit[72];           /* "" = every unit */
	struct ymd due;          /* the new due date, as given (not shifted) */
	int minute;              /* due time; -1 = the cycle's `time` */
	tstamp recorded;
	char source[16];
	char actor[LEDGER_ACTOR_MAX + 1];
	char *note;              /* xmalloc'ed or NULL */
};
/* An extension's DATE: "YYYY-MM-DD" (minute -1: the cycle's time) or
 * "YYYY-MM-DDTHH:MM". */
int ledger_parse_due(const char *s, struct ymd *d, int *minute);
/* Why due is no extension of the planned occurrence (earlier than its
 * due date, or more than LEDGER_EXTEND_MAX_DAYS after), or NULL. */
#define LEDGER_EXTEND_MAX_DAYS 366
const char *ledger_extension_problem(const struct occ *plan, struct ymd due);
/* Sets (replaces) an extension; unit NULL or "" = every unit. */
int ledger_extend(struct db *db, const char *occ, const char *unit,
		  struct ymd due, int minute, const char *source,
		  const char *actor, const char *note, tstamp now);
/* Removes one; 0, 1 when there was none, -1. */
int ledger_unextend(struct db *db, const char *occ, const char *unit,
		    const char *source, const char *actor, tstamp now);
/* Every extension (occ NULL) or those of one occurrence, sorted by
 * (occurrence, unit) with the occurrence-wide one first. */
int ledger_extensions(struct db *db, const char *occ, struct extension **out,
		      size_t *n);
void extensions_free(struct extension *v, size_t n);
/* o as it applies to unit (NULL: the occurrence-wide view), extensions read
 * from db: the due date the unit owes.  0 (o may be unchanged), -1. */
int ledger_effective(const struct conf *c, struct db *db, struct occ *o,
		     const char *unit);

/* One history event. */
struct ledger_event {
	int64_t id;
	char occurrence[OCC_ID_MAX];
	char unit[72];           /* "" = every unit (an extension) */
	char action[16];         /* received nil undo extend proposed confirmed */
	tstamp at;               /* report time / new due instant; 0 = none */
	tstamp recorded;
	char source[16];
	char actor[LEDGER_ACTOR_MAX + 1];
	char *detail;            /* extend: the new due as given, "cancelled" */
	char *note;
};
/* Events in the order they were recorded; occ/unit NULL = any (a unit's
 * events include its occurrences' occurrence-wide ones). */
int ledger_history(struct db *db, const char *occ, const char *unit,
		   int (*fn)(void *ctx, const struct ledger_event *e),
		   void *ctx);
/* At most max events with id > after, in id order (what another process
 * recorded since the daemon last looked); 0 or -1. */
int ledger_events_after(struct db *db, int64_t after, int max,
			int (*fn)(void *ctx, const struct ledger_event *e),
			void *ctx);
/* The newest event's id into *id (0: none); 0 or -1. */
int ledger_last_event_id(struct db *db, int64_t *id);
/* Appends one event to the history (for other modules' events, e.g. a
 * report detected in the mailbox: "proposed", "confirmed"); at may be
 * NULL.  Refuses an action outside the list above.  0 or -1. */
int ledger_event_add(struct db *db, const char *occ, const char *unit,
		     const char *action, const tstamp *at, const char *source,
		     const char *actor, const char *detail, const char *note,
		     tstamp now);
/* Every proposal still open (a "proposed" event with no later received,
 * nil, undo, confirmed or rejected event for the pair, and no submission
 * standing),
 * optionally of one occurrence, by (occurrence, unit); a pair may come
 * more than once (several sources).  0 or -1. */
int ledger_proposals(struct db *db, const char *occ,
		     int (*fn)(void *ctx, const char *occ, const char *unit,
			       const char *source, tstamp at), void *ctx);
/* Latest recorded time of the events db_sub_events counts; 0 = none. */
tstamp ledger_last_event(struct db *db, const char *occ, const char *unit);

/* Proposals: a report detected (the mailbox, a unit's link) but not
 * confirmed.  Never a submission: the state is the history's newest open
 * "proposed" event (see ledger_proposals); confirm turns it into one. */
struct ledger_proposal {
	int64_t id;              /* of the "proposed" event */
	char occurrence[OCC_ID_MAX];
	char unit[72];
	char source[16];         /* imap, link */
	tstamp at;               /* when the unit sent it */
	tstamp recorded;
	char actor[LEDGER_ACTOR_MAX + 1];   /* imap: the sender's address */
	char *detail;            /* evidence: imap the Message-ID */
	char *note;              /* imap: the subject */
};
void ledger_proposal_clear(struct ledger_proposal *p);
/* The pair's newest open proposal: 0 (ledger_proposal_clear it), 1 none,
 * -1. */
int ledger_proposal_get(struct db *db, const char *occ, const char *unit,
			struct ledger_proposal *out);
/* Opens a proposal ("proposed" event): 0, 1 when nothing changed (a
 * submission stands, or the same source and detail are open already),
 * -1.  What imap.c and link.c call. */
int ledger_propose(struct db *db, const char *occ, const char *unit,
		   tstamp at, const char *source, const char *actor,
		   const char *note, const char *detail, tstamp now);
/* Turns the open proposal into a submission with its source, time and
 * note; the "confirmed" event keeps actor and via (cli, page, api) as its
 * detail.  0, 1 when none is open, -1. */
int ledger_confirm(struct db *db, const char *occ, const char *unit,
		   const char *via, const char *actor, tstamp now);
/* Drops every open proposal of the pair ("rejected" event, source via,
 * detail the proposal's source).  0, 1 when none is open, -1. */
int ledger_reject(struct db *db, const char *occ, const char *unit,
		  const char *via, const char *actor, const char *note,
		  tstamp now);

/*
 * Schema version 3 (ledger.c's tables, created by db.c's migrations):
 *   submission + nil INTEGER NOT NULL DEFAULT 0, actor TEXT
 *   submission_event(id, occurrence, unit, action CHECK(received nil undo
 *       extend proposed confirmed), at, recorded, source, actor, detail,
 *       note)                               -- unit '' = every unit
 *   extension(occurrence, unit, due_date TEXT, due_minute INTEGER,
 *       recorded, source, actor, note, PRIMARY KEY(occurrence, unit))
 * Schema version 4 (after the ledger's 3):
 *   outbox_refused(outbox_id INTEGER, address TEXT, reply TEXT,
 *       at INTEGER, PRIMARY KEY(outbox_id, address))
 *       -- recipients a server refused (RCPT) while others took the mail
 *   indexes outbox_due and outbox_due_channel dropped for partial ones:
 *   outbox_pending ON outbox(channel, next_try) WHERE state = 'pending',
 *   outbox_failed ON outbox(occurrence) WHERE state = 'failed'
 */

/* ---------------------------------------------------------------- clock.c */

/* The daemon's clock: real time, or started at --now and run --speed times
 * faster.  Everything asks this, never time(). */
struct clock {
	bool fake;
	tstamp virt0;            /* virtual time at start */
	double real0;            /* real time at start (CLOCK_REALTIME) */
	double speed;
};
void clock_init(struct clock *c, bool fake, tstamp start, double speed);
tstamp clock_now(const struct clock *c);
/* real seconds until virtual time t (>= 0) */
double clock_delay(const struct clock *c, tstamp t);
/* The wall-clock instant (CLOCK_REALTIME seconds, as ev_periodic takes it)
 * at which clock_now() reaches virtual time t: timers that must follow
 * clock steps (NTP, suspend) are absolute, not relative. */
double clock_real_at(const struct clock *c, tstamp t);

/* ------------------------------------------------------------- sdnotify.c */

/* systemd's notify protocol: one datagram to $NOTIFY_SOCKET; a no-op when
 * the variable is unset.  Returns 1 sent, 0 not under systemd, -1 error. */
int sd_notify_msg(const char *msg);
int sd_notifyf(const char *fmt, ...) PRINTF_LIKE(1, 2);
/* The watchdog interval systemd asks for (WATCHDOG_USEC, for this pid per
 * WATCHDOG_PID) in seconds, or 0 when none: WATCHDOG=1 is due at half. */
double sd_watchdog_interval(void);

/* ----------------------------------------------------------- the daemon */

struct ev_loop;
struct feeds;
struct views;
struct auth;
struct http;
struct sender;
struct engine;
struct tmplset;

/* The daemon's state, one instance, owned by main.c. */
struct app {
	struct ev_loop *loop;
	const char *conf_path;
	struct conf *conf;
	struct db *db;
	struct clock clk;
	struct feeds *feeds;
	struct views *views;     /* status.c: the status views in memory */
	struct auth *auth;       /* auth.c: admin sessions, login throttle */
	struct throttle *link_throttle;  /* link.c's wrong tokens */
	struct http *http;
	struct engine *engine;   /* issue 3: outbox filling */
	struct sender *sender;   /* issue 3: outbox draining */
	struct imap *imap;       /* imap.c: the mailbox poller, or NULL */
	int64_t data_version;
	tstamp started;
	bool stopping;
	/* Set by main.c to app_changed; the web side calls it after it
	 * recorded or undid a submission (NULL: nobody to tell). */
	void (*changed)(struct app *a);
};

/* main.c: call after anything changed state (a submission, a reload):
 * invalidates feeds and re-plans. */
void app_changed(struct app *a);

/* --------------------------------------------- engine.c, sender.c (notices) */

/* engine: watches the plan and writes due steps into the outbox. */
struct engine *engine_start(struct app *a);
void engine_replan(struct engine *e);      /* conf or submissions changed */
void engine_stop(struct engine *e);
/* sender: drains the outbox through curl multi on the loop (or maildir). */
struct sender *sender_start(struct app *a);
void sender_kick(struct sender *s);        /* new outbox rows may be due */
/* stop taking new work; returns true once nothing is in flight */
bool sender_drain(struct sender *s);
void sender_stop(struct sender *s);

/* One outbox row (outbox.c reads them; mail.c and hook.c render them). */
struct notice {
	int64_t id;
	char occurrence[OCC_ID_MAX];
	char unit[72];
	char step[STEP_NAME_MAX];
	enum audience aud;
	enum channel ch;
	char *recipients;        /* xmalloc'ed */
	tstamp send_at;
	int attempts;
	tstamp created;
	char message_id[160];    /* "<...@host>", the same for every retry */
	tstamp next_try;
	/* the Message-ID this mail answers (the first mail to the unit about
	 * the occurrence), "" when it is the first; the sender fills it */
	char thread[160];
};
void notice_clear(struct notice *n);

/* outbox.c: the durable queue (table `outbox`).  Every function works on
 * db's connection and doesn't open a transaction unless it says so. */
enum outbox_state { OUTBOX_PENDING, OUTBOX_SENT, OUTBOX_FAILED,
		    OUTBOX_CANCELLED };
int outbox_audience(const char *name, enum audience *out);  /* -1 unknown */
int outbox_channel(const char *name, enum channel *out);
/* "<occ.unit.step.aud.ch@host>" made header-safe (a hash when too long);
 * host is public_url's or "cutoffd.invalid".  Deterministic from the key. */
void outbox_message_id(const char *public_url, const char *occ,
		       const char *unit, const char *step, enum audience aud,
		       enum channel ch, char *out, size_t size);
/* Current recipients of a notice (comma separated, as in sched_plan; the
 * URL for webhooks), xmalloc'ed, or NULL when the audience has none. */
char *outbox_recipients(const struct conf *c, const struct unit *u,
			enum audience aud, enum channel ch);
/* INSERT OR IGNORE: 1 added, 0 the key was already there, -1 error.
 * n->message_id must be set; next_try = send_at. */
int outbox_add(struct db *db, const struct notice *n, tstamp now);
/* outbox_add for many: how many were new, or -1 (roll back the caller's
 * transaction then). */
int outbox_add_all(struct db *db, const struct notice *const *ns, size_t n,
		   tstamp now);
/* Pending rows with next_try <= now, oldest send_at first; channel -1 for
 * both.  Fills out[0..*count), at most max (notice_clear each). */
int outbox_due(struct db *db, tstamp now, int channel, size_t max,
	       struct notice *out, size_t *count);
/* Pending rows of one channel due at now, after `after` in (next_try, id)
 * order (NULL: from the start): the sender's cursor, so that rows in
 * flight are not read again. */
int outbox_due_after(struct db *db, tstamp now, enum channel ch,
		     const struct notice *after, size_t max, struct notice *out,
		     size_t *count);
/* Pending due secretariat/chief email rows with like's (step, recipients,
 * send_at): the rows of one digest. */
int outbox_due_digest(struct db *db, tstamp now, const struct notice *like,
		      size_t max, struct notice *out, size_t *count);
/* One row by key: 0 found, 1 absent, -1 error (out/state may be NULL). */
int outbox_get(struct db *db, const char *occ, const char *unit,
	       const char *step, enum audience aud, enum channel ch,
	       struct notice *out, enum outbox_state *state);
int outbox_mark_sent(struct db *db, int64_t id, tstamp now);
/* outbox_mark_sent for many rows in one statement. */
int outbox_mark_sent_all(struct db *db, const int64_t *ids, size_t n,
			 tstamp now);
int outbox_mark_retry(struct db *db, int64_t id, tstamp next_try,
		      const char *error);
int outbox_mark_failed(struct db *db, int64_t id, tstamp now,
		       const char *error);
int outbox_mark_cancelled(struct db *db, int64_t id, tstamp now,
			  const char *why);
/* min(max, min * 2^(attempts-1)) seconds, times 1 + 0.1 * jitter
 * (jitter in [-1, 1]). */
int64_t outbox_backoff(int64_t retry_min, int64_t retry_max, int attempts,
		       double jitter);
/* A temporary failure of n (attempts as read): retry with backoff (0), or
 * failed for good (1) once now - max(send_at, created) > mail.give_up;
 * -1 on error. */
int outbox_defer(struct db *db, const struct conf *c, const struct notice *n,
		 tstamp now, const char *error, double jitter);
/* Rows per state and channel, for /metrics: counts[state][channel], and
 * of the pending ones those tried before (retrying[channel]).  One grouped
 * query over the table: callers cache it. */
int outbox_counts(struct db *db, int64_t counts[4][2], int64_t retrying[2]);
/* outbox_defer waiting at least min_wait seconds (a server's Retry-After);
 * *next (may be NULL) gets the next try's time when it returns 0. */
int outbox_defer_until(struct db *db, const struct conf *c,
		       const struct notice *n, tstamp now, const char *error,
		       double jitter, int64_t min_wait, tstamp *next);
/* Records that the server refused one address of notice id (RCPT), with
 * its reply (escaped text); the other addresses got the mail. */
int outbox_refused_add(struct db *db, int64_t id, const char *address,
		       const char *reply, tstamp now);
/* Every refused address, optionally of one occurrence, in (occurrence,
 * unit, step, address) order; the strings live until fn returns, which
 * returns non-zero to stop. */
struct outbox_refusal {
	const char *occurrence, *unit, *step, *audience, *address, *reply;
	tstamp at;
};
typedef int (*outbox_refused_fn)(void *ctx, const struct outbox_refusal *r);
int outbox_refused_foreach(struct db *db, const char *occ,
			   outbox_refused_fn fn, void *ctx);
/* The thread of a mail to a unit (audience unit or head): the
 * Message-ID of the first email about n's occurrence sent to that unit,
 * other than n itself.  0 found, 1 none (n starts the thread), -1. */
int outbox_thread_root(struct db *db, const struct notice *n, char *out,
		       size_t size);
/* Whether any email to a unit (or its head) about occ was sent: 1, 0, -1. */
int outbox_occ_has_mail(struct db *db, const char *occ);
/* Earliest next_try > after among pending rows: 0, 1 when none, -1. */
int outbox_next_try(struct db *db, tstamp after, tstamp *t);
/* Cancels (one transaction) every pending row for which keep() returns
 * false, with *why as the recorded reason.  Returns how many, or -1. */
typedef bool (*outbox_keep_fn)(void *ctx, const struct notice *n,
			       const char **why);
int outbox_cancel(struct db *db, outbox_keep_fn keep, void *ctx, tstamp now);
/* Failed rows and pending rows already tried once, newest first (at most
 * scan rows read); fn returns non-zero to stop.  The strings are valid
 * during the call only. */
struct outbox_trouble {
	const char *occurrence, *unit, *step, *audience, *channel, *error;
	tstamp at;               /* failed: when; retrying: next try */
	bool retrying;
};
int outbox_troubles(struct db *db, size_t scan,
		    int (*fn)(void *ctx, const struct outbox_trouble *t),
		    void *ctx);

/* curlev.c: curl multi on a libev loop.  done() gets every finished easy
 * handle (already removed from the multi; the caller owns it). */
struct curlev;
typedef void (*curlev_done_fn)(void *ctx, void *easy, int result);
struct curlev *curlev_new(struct ev_loop *loop, curlev_done_fn done,
			  void *ctx);
int curlev_add(struct curlev *cv, void *easy);
void curlev_remove(struct curlev *cv, void *easy);  /* abort a transfer */
void curlev_free(struct curlev *cv);   /* remove every easy handle first */
/* done() gets finished handles still added (a CONNECT_ONLY connection
 * closes when its handle leaves the multi): curlev_remove them. */
void curlev_keep(struct curlev *cv);

/* smtp.c: mail transactions, pipelined where the server allows, on up to
 * `parallel` connections that libcurl opens (TLS, AUTH).  done() gets
 * each submitted message once with its outcome; it may run inside
 * smtp_submit (an unusable address, a connection that cannot even be
 * set up) and smtp_drain, so the caller must be ready for it before it
 * submits.  Messages in flight at smtp_free are dropped without it. */
#define SMTP_LINE_MAX 2048    /* a longer reply line is a protocol error */
/* SMTP_ABORTED: dropped by smtp_drain before any of its text went out */
enum smtp_status { SMTP_SENT, SMTP_TEMPFAIL, SMTP_PERMFAIL, SMTP_ABORTED };
struct smtp_msg {
	const char *from;         /* the envelope: bare addresses */
	char **rcpt;
	size_t nrcpt;
	const char *data;         /* the message, CRLF lines, not dot-stuffed */
	size_t len;
	void *arg;
	/* the outcome, when done() is called */
	enum smtp_status status;
	char *reply;              /* the server's last word on it, raw */
	char **rcpt_reply;        /* NULL, or per address its refusal (NULL:
				     accepted) */
	char *error;              /* why it was not sent */
	/* smtp.c's own */
	struct smtp_msg *qnext;
	int requeued, fail_code, last_refused;
	char *fail_stage;
	size_t accepted;
	bool mail_ok, body_sent, empty;
};
struct smtp;
typedef void (*smtp_done_fn)(void *ctx, struct smtp_msg *m);
struct smtp *smtp_new(struct ev_loop *loop, smtp_done_fn done, void *ctx);
void smtp_submit(struct smtp *p, const struct conf *c, struct smtp_msg *m);
void smtp_msg_clear(struct smtp_msg *m);  /* frees the outcome fields */
/* A stop begins: messages none of whose text went out come back at once
 * (SMTP_ABORTED), the others finish; no new connection opens. */
void smtp_drain(struct smtp *p);
void smtp_free(struct smtp *p);
/* One reply from buf[0..len): its length (> 0), with its code and where
 * its last line lies; 0 when incomplete; -1 when malformed.  Exposed for
 * the fuzz target. */
ssize_t smtp_reply_parse(const char *buf, size_t len, int *code,
			 size_t *lstart, size_t *llen);
/* Appends the text d[0..n) dot-stuffed, ended by CRLF if it is not, and
 * the end of data (".\r\n").  Exposed for tests. */
void smtp_put_text(struct buf *out, const char *d, size_t n);

/* mail.c: the complete RFC 5322 message for email notices.  n > 1 makes a
 * digest (secretariat/chief: every late unit of one send time, same step
 * name and recipients).  Returns NULL (with log) when it cannot be built. */
char *mail_build(const struct conf *c, struct db *db, struct notice *const *ns,
		 size_t n, tstamp now, size_t *len);
/* Writes a message into a Maildir (tmp/ then rename to new/), fsync'ed. */
int maildir_deliver(const char *maildir, const char *msg, size_t len,
		    tstamp now);
/* Quoted-printable (RFC 2045) of text: "\n" line ends become CRLF, no
 * encoded line is longer than 76 characters.  Exposed for tests. */
void mail_qp_encode(struct buf *out, const char *text, size_t len);

/* hook.c: the JSON body of a webhook notice and its headers ("Name: value"
 * strings, Standard Webhooks signature when a secret is set). */
struct curl_slist;
char *hook_build(const struct conf *c, struct db *db, const struct notice *n,
		 tstamp now, struct curl_slist **headers);

/* tmpl.c: message templates, loaded with the configuration so that an
 * unknown placeholder is a config error. */
struct tmplset *tmpl_load(const char *dir, const char *lang, struct diag *d);
/* Each file from the first of dirs[0..n) that has it (a missing file or
 * directory falls through to the next): an override directory over the
 * installed defaults.  A file found nowhere is an error at conf:line (the
 * configuration's templates key; NULL/0 for none) naming dirs. */
struct tmplset *tmpl_load_dirs(const char *const *dirs, size_t n,
			       const char *lang, const char *conf, int line,
			       struct diag *d);
void tmpl_free(struct tmplset *t);
/* One template per (step kind, audience); a file missing from the
 * directory falls back on the generic one (escalate-head.txt on
 * escalate.txt, digest-*.txt on digest.txt), so an older override
 * directory keeps working. */
enum tmpl_kind { TMPL_REMIND, TMPL_ESCALATE, TMPL_DIGEST, TMPL_REMIND_HEAD,
		 TMPL_ESCALATE_HEAD, TMPL_DIGEST_SECRETARIAT, TMPL_DIGEST_CHIEF,
		 TMPL_COUNT };
/* The template's subject line and body with {{name}} placeholders filled
 * from vars (name/value pairs, nvars of them).  Subject and body are
 * xmalloc'ed.  For TMPL_DIGEST, the placeholder {{units}} is a block. */
struct tmpl_var {
	const char *name;
	const char *value;
};
int tmpl_render(const struct tmplset *t, enum tmpl_kind k,
		const struct tmpl_var *vars, size_t nvars, char **subject,
		char **body);
/* One template's text, parsed as if read from file `name`, into a set that
 * holds only kind k (tests, fuzzing).  NULL with every problem in d. */
struct tmplset *tmpl_parse_text(const char *name, enum tmpl_kind k,
				const char *text, size_t len, const char *lang,
				struct diag *d);

/* A notice's rendered text and the facts behind it (tmpl.c), shared by
 * mail.c and hook.c.  The template is chosen from the step and audience:
 * remind, escalate, or digest for secretariat/chief (n > 1 only then). */
struct notice_text {
	char *subject;
	char *body;
	char *feed_url;
	struct occ occ;          /* of ns[0] */
	const struct unit *unit; /* of ns[0] */
	int days;                /* local days from the due date to now */
	bool escalation;
	enum tmpl_kind kind;
	/* body as mail_qp_encode gives it, when the render cache could put
	 * it together from lines encoded once (NULL: encode body) */
	char *body_qp;
	size_t body_qp_len;
	char *confirm_url;       /* the unit's signed link (link.c); "" for
				    digests */
};
int notice_render(const struct conf *c, struct db *db,
		  struct notice *const *ns, size_t n, tstamp now,
		  struct notice_text *out);
void notice_text_clear(struct notice_text *t);
/* The report's name with its year as the notices say it ({{report}}:
 * "Báo cáo quý I/2024", "Báo cáo sơ kết 6 tháng đầu năm 2024") and its
 * period label ({{period_label}}: "quý I/2024"; "" when none can be
 * told), in c's language: the page shows the same words. */
void occ_label(const struct conf *c, const struct occ *o, char *out,
	       size_t size);
void occ_period_label(const struct conf *c, const struct occ *o, char *out,
		      size_t size);
/* notice_render keeps the text common to the units of one (occurrence,
 * step, audience, day) and each unit's feed token in the configuration's
 * template set; this drops the texts (the state changed: a due date may
 * have moved).  The sender calls it on every kick. */
void notice_cache_clear(const struct conf *c);

/* ------------------------------------------------------------------ doc.c */

/* A built response body, immutable and reference-counted: a view builds
 * one per change, the HTTP server sends it to every client without a copy
 * (see doc.c).  One owner holds it and drops it with doc_release. */
#define DOC_CALENDAR "text/calendar; charset=utf-8"
#define DOC_JSON "application/json; charset=utf-8"
#define DOC_HTML "text/html; charset=utf-8"
#define DOC_CSV "text/csv; charset=utf-8; header=present"
struct doc {
	unsigned refs;
	char *body;
	size_t len;
	const char *type;        /* one of DOC_*: the server picks the
				    headers from it */
	char etag[48];           /* quoted strong ETag of the body */
	tstamp modified;         /* Last-Modified (0: not sent) */
	tstamp built;            /* clock time of the build */
	unsigned long serial;    /* a view's build number (0: not sent) */
	/* The server's response for this body, made on the first send, and
	 * what releases it; both NULL until then. */
	void *resp;
	void *resp304;          /* the same headers, no body */
	void (*resp_free)(void *resp);
};
/* Takes body (xmalloc'ed, NULL for an empty one); the ETag is a hash of
 * it.  refs = 1. */
struct doc *doc_new(char *body, size_t len, const char *type);
struct doc *doc_ref(struct doc *d);
void doc_unref(struct doc *d);
/* The owner's drop: releases the server's response (which keeps the body
 * alive until its last send finishes), then the owner's reference. */
void doc_release(struct doc *d);

/* ----------------------------------------------------------------- feed.c */

struct feeds *feeds_new(void);
void feeds_free(struct feeds *f);
/* Marks every cached document stale (config or state changed). */
void feeds_invalidate(struct feeds *f);
/* Returns the current document, building it when stale.  The pointer stays
 * valid until the next feeds_* call that rebuilds or invalidates (take a
 * reference to keep it longer). */
struct doc *feeds_secretariat(struct app *a);
struct doc *feeds_unit(struct app *a, const struct unit *u);
/* The revision bookkeeping behind SEQUENCE (one write transaction): call
 * where the configuration changes (start, reload with the old one, stop),
 * never on a request.  Builders only read what it stored. */
int feeds_revise(const struct conf *old, const struct conf *c, struct db *db,
		 tstamp now);
/* The units' feed tokens of c into memory (created where missing). */
int feeds_load_tokens(struct feeds *f, const struct conf *c, struct db *db);
/* u's token when loaded for this c, else NULL (then ask db_unit_token). */
const char *feeds_token(const struct feeds *f, const struct conf *c,
			const struct unit *u);
/* feeds_revise + feeds_load_tokens + invalidate, for a->conf. */
int feeds_reload(struct app *a, const struct conf *old);
size_t feeds_bytes(const struct feeds *f);   /* cached, for tests */
void feeds_set_limit(struct feeds *f, size_t bytes);  /* for tests */
/* Builders (pure views; they only read the store), for tests too: return
 * an xmalloc'ed VCALENDAR text. */
char *feed_build_secretariat(const struct conf *c, struct db *db, tstamp now,
			     tstamp *modified);
char *feed_build_unit(const struct conf *c, struct db *db, const struct unit *u,
		      tstamp now, tstamp *modified);

/* --------------------------------------------------------------- status.c */

/* The status model: who submitted what for the occurrences on show, and
 * the notices that failed (built from conf, state and now), and its views
 * as bytes: `cutoffctl status` text and /status.json. */
enum ustate { US_SUBMITTED, US_MISSING, US_NOTDUE, US_NIL };
const char *status_state_name(enum ustate s);   /* "submitted", ... */

struct st_unit {
	const struct unit *u;
	enum ustate state;
	bool late;
	tstamp at;
	/* the unit's own deadline (an extension), else the occurrence's */
	tstamp due_at;
	struct ymd due;
	bool own_due;            /* an extension for this unit alone */
	char source[16];         /* of the record; "" when none */
	char *note;              /* of the record, or NULL */
	/* missing or not due, but proposed (a unit's link, the mailbox):
	 * shown as "proposed" (status_unit_state) */
	bool proposed;
	char proposed_source[16];
};
/* su's state as printed: status_state_name, or "proposed" */
const char *status_unit_state(const struct st_unit *su);

struct st_occ {
	struct occ o;
	struct st_unit *u;
	size_t nu;
	size_t nsub, nlate, nmiss, nnotdue;
	size_t nnil;             /* nil returns, counted in nsub too */
};

struct st_fail {
	char *occ, *unit, *step, *aud, *ch, *err;
	tstamp at;               /* failed: when; retrying: next try */
	bool retrying;           /* a temporary failure, to be tried again */
};

/* An address a server refused while the notice's others got it (the
 * reply is stored escaped). */
struct st_refused {
	char *occ, *unit, *step, *aud, *addr, *reply;
	tstamp at;
};

/* An address a delivery report (RFC 3464, found in the [imap] mailbox)
 * says did not get a notice. */
struct st_bounce {
	char *occ, *unit, *step, *addr, *status, *diag;
	tstamp at;               /* when the report was read */
};

struct status {
	tstamp now;
	tstamp stale_at;         /* time alone may change the model from here */
	size_t bytes;            /* roughly, what it holds */
	struct st_occ *occ;
	size_t nocc;
	struct st_fail *fail;
	size_t nfail;
	struct st_refused *ref;
	size_t nref;
	struct st_bounce *bounce; /* db_bounce_foreach's rows, filtered */
	size_t nbounce;
};

/* What to show; every field NULL = the default window, every unit. */
struct status_filter {
	const char *occ;              /* one occurrence id */
	const struct cycle *cycle;
	const char *group;            /* points into conf->groups */
};
/* ?cycle= and ?group= (NULL when absent) into f: NULL, or "unknown cycle"
 * / "unknown group". */
const char *status_filter_set(const struct conf *c, const char *cycle,
			      const char *group, struct status_filter *f);
/* Builds the model: 0, 1 when f->occ is unknown, -1 on error. */
int status_build(const struct conf *c, struct db *db, tstamp now,
		 const struct status_filter *f, struct status **out);
void status_free(struct status *s);
/* The `cutoffctl status` text (occ NULL = every occurrence in the window). */
int status_print(const struct conf *c, struct db *db, tstamp now,
		 const char *occ, FILE *out);
/* The /status.json document of s, appended to b. */
void status_json_write(const struct conf *c, const struct status *s,
		       struct buf *b);
/* The /status.csv document of s (contract: BOM, CRLF, RFC 4180). */
void status_csv_write(const struct conf *c, const struct status *s,
		      struct buf *b);
/* "13/03/2024 17:00": an occurrence's due date and time as people read it
 * (out >= 32 bytes). */
void status_fmt_due(const struct occ *o, char *out, size_t size);
/* `cutoffctl status --csv`: the rows of status_csv_write */
int status_print_csv(const struct conf *c, struct db *db, tstamp now,
		     const char *occ, FILE *out);

/* The views in memory: per filter, the model and its documents, built
 * once per change of configuration or state (or when time alone changes
 * them) on the first request after it, and shared by every request until
 * then (see status.c).  A new view is one more slot and one builder. */
enum view_slot {
	VIEW_JSON,               /* /status.json */
	VIEW_CSV,                /* /status.csv */
	VIEW_PAGE,               /* the page for anonymous readers */
	VIEW_PAGE_TOKEN,         /* the same let in by the calendar token */
	VIEW_SLOTS
};
typedef void (*view_build_fn)(const struct conf *c, const struct status *s,
			      const struct status_filter *f, void *ctx,
			      struct buf *out);
struct views *views_new(void);
void views_free(struct views *vs);
/* Marks every view stale (configuration or submissions changed). */
void views_invalidate(struct views *vs);
/* The model for f, fresh; NULL when it cannot be built.  Valid until the
 * next views_* call. */
const struct status *views_status(struct views *vs, const struct conf *c,
				  struct db *db, tstamp now,
				  const struct status_filter *f);
/* The document of slot for f, built by build(ctx) into a doc of type when
 * missing or stale; NULL when the model cannot be built.  Valid until the
 * next views_* call (take a reference to keep it). */
struct doc *views_doc(struct views *vs, const struct conf *c, struct db *db,
		      tstamp now, const struct status_filter *f,
		      enum view_slot slot, const char *type,
		      view_build_fn build, void *ctx);
/* Documents built so far (tests). */
unsigned long views_builds(const struct views *vs);

/* ------------------------------------------------------------- throttle.c */

/* Wrong attempts per client address (an IPv6 one by its /64): a few free,
 * then each doubles a wait from 1 s up to an hour; a quiet hour forgets
 * the address; at most `slots` addresses (the quietest gives way).  A
 * NULL throttle counts nothing. */
struct throttle;
struct throttle *throttle_new(size_t slots);
#define LINK_THROTTLE_SLOTS 256   /* link.c's table (main.c makes it) */
void throttle_free(struct throttle *t);
/* Seconds the client must still wait before another attempt; 0 = none. */
int throttle_wait(struct throttle *t, const char *client);
/* One more wrong attempt: the count in a row; *wait the wait it set. */
unsigned throttle_fail(struct throttle *t, const char *client, double *wait);
/* A right one: the count starts again. */
void throttle_ok(struct throttle *t, const char *client);

/* ------------------------------------------------------------------ req.c */

/* A request and its answer as the web side's handlers see them: plain
 * data, no server types, so handlers (and their tests and fuzzers) run
 * without a connection.  http.c fills the request and turns the answer
 * into the server's response (it alone decides the headers). */
struct http_req {
	const char *method;
	const char *path;
	const char *body;
	size_t body_len;
	/* NULL when absent.  query is the raw query string without '?'
	 * (percent-encoded, '+' = space). */
	const char *query;
	const char *authorization;
	const char *content_type;
	const char *cookie;
	const char *client;      /* the peer's address ("127.0.0.1", "::1") */
	/* for link.c's cross-site check; NULL when absent */
	const char *host;
	const char *origin;
	const char *sec_fetch_site;
};

struct http_resp {
	int status;
	const char *content_type;
	struct buf body;
	/* or the answer is this shared document (a reference, dropped by
	 * http.c), served with its ETag and 304 on a conditional GET */
	struct doc *doc;
	char *location;          /* xmalloc'ed, for redirects */
	char *set_cookie;        /* xmalloc'ed */
	int retry_after;         /* > 0: a Retry-After header, seconds */
	/* extra headers (static strings), unused slots have name NULL:
	 * WWW-Authenticate (401), Allow (405) */
	struct http_hdr {
		const char *name, *value;
	} hdr[6];
};

/* Query strings and form bodies: name=value pairs, '+' is a space; a
 * field holding a NUL byte is dropped. */
#define FORM_MAX_FIELDS 64
struct form {
	char *name[FORM_MAX_FIELDS];
	char *value[FORM_MAX_FIELDS];
	size_t n;
};
void form_parse(struct form *f, const char *s, size_t len);
/* the first value of name, NULL when absent; "" counts as absent */
const char *form_get(const struct form *f, const char *name);
void form_free(struct form *f);
/* Content-Type is want (parameters allowed, case-insensitive) */
bool req_type_is(const struct http_req *q, const char *want);
bool req_method_is(const struct http_req *q, const char *m);
bool req_is_get(const struct http_req *q);          /* GET or HEAD */
/* the fields of a form POST into out, or -1 with a 415 page in r */
int req_form(const struct http_req *q, struct http_resp *r, struct form *out);
/* the token of "Authorization: Bearer TOKEN" into out (< size) */
bool req_bearer(const struct http_req *q, char *out, size_t size);

struct json_t;
void resp_hdr(struct http_resp *r, const char *name, const char *value);
/* j as the JSON body (steals j) */
void resp_json(struct http_resp *r, int status, struct json_t *j);
void resp_error(struct http_resp *r, int status, const char *msg);
/* a small HTML page saying msg (the forms' errors: no JSON for browsers) */
void resp_html_msg(struct http_resp *r, int status, const char *msg);
void resp_redirect(struct http_resp *r, const char *location);   /* 303 */
/* 405 with Allow, as JSON or as a page */
void resp_not_allowed(struct http_resp *r, const char *allow, bool json);
/* s escaped for HTML text and attribute values */
void html_esc(struct buf *b, const char *s);
/* s with all but RFC 3986 unreserved characters percent-encoded: safe in
 * a query and in an HTML attribute */
void url_esc(struct buf *b, const char *s);

/* ----------------------------------------------------------------- auth.c */

/* Who may do what: the admin token (Bearer for the API, a session cookie
 * and CSRF tokens for the page's forms) and the calendar token that
 * guards reading the status when set. */
struct auth *auth_new(void);           /* sessions and throttle, in memory */
void auth_free(struct auth *au);
const char *auth_admin_token(const struct app *a);   /* NULL: no admin */
/* The admin q acts as (Bearer token, else session): "admin" for
 * [daemon] admin_token_file, else an [admin ID]'s id; NULL: none. */
const char *auth_actor(struct app *a, const struct http_req *q, tstamp now);
/* 0 when q carries the admin token, else -1 with r filled (401/403, 429
 * while q's address is throttled for wrong tokens) */
int auth_api(struct app *a, const struct http_req *q, struct http_resp *r);
/* an admin session (cookie) is open: its CSRF token into csrf (may be
 * NULL) */
bool auth_session(struct app *a, const struct http_req *q, tstamp now,
		  char csrf[65]);
/* a form POST from an admin: session and its CSRF field, else -1 with a
 * 403 page in r */
int auth_form(struct app *a, const struct http_req *q, const struct form *fm,
	      tstamp now, struct http_resp *r);
/* May q read the status (page, JSON)?  args: its query. */
bool auth_read_allowed(struct app *a, const struct http_req *q,
		       const struct form *args, tstamp now);
/* POST /login (throttled per client address like the API's token) and
 * POST /logout (ends the session on the server) */
void auth_login(struct app *a, const struct http_req *q, struct http_resp *r);
void auth_logout(struct app *a, const struct http_req *q, struct http_resp *r);

/* ----------------------------------------------------------------- page.c */

/* GET / (the status page, HTML without JavaScript) and its admin forms:
 * POST /mark (a report, nil=1), POST /undo, POST /extend (due, note;
 * cancel=1 removes it) */
void page_get(struct app *a, const struct http_req *q, struct http_resp *r);
void page_mark(struct app *a, const struct http_req *q, struct http_resp *r);
void page_undo(struct app *a, const struct http_req *q, struct http_resp *r);
void page_extend(struct app *a, const struct http_req *q, struct http_resp *r);
/* POST /proposal: do=confirm or do=reject an open proposal (ledger.c) */
void page_proposal(struct app *a, const struct http_req *q,
		   struct http_resp *r);

/* ------------------------------------------------------------------ api.c */

/* GET /status.json and GET /status.csv */
void api_status(struct app *a, const struct http_req *q, struct http_resp *r);
/* (?cycle=, ?group=, ?occurrence=) */
void api_status_csv(struct app *a, const struct http_req *q,
		    struct http_resp *r);
/* /api/...: rest is the path after "/api" ("", "/submissions/..."). */
void api_route(struct app *a, const struct http_req *q, struct http_resp *r,
	       const char *rest);

/* ----------------------------------------------------------------- link.c */

/* The unit's "Đơn vị đã gửi báo cáo" link: /confirm/TOKEN, TOKEN =
 * UNIT "." CYCLE "." YYYY-MM-DD "." base64url(HMAC-SHA256(key, "cutoffd
 * link v1\n" UNIT "\n" OCCURRENCE)), the key from db_link_key.  Valid
 * until the policy's `until` after the unit's (extended) due date. */
#define LINK_TOKEN_MAX 256
#define LINK_MAC_LEN 32
/* The parts of a token (no MAC check): 0, or -1 when malformed. */
int link_parse(const char *tok, size_t len, char unit[72],
	       char occ[OCC_ID_MAX], unsigned char mac[LINK_MAC_LEN]);
/* public_url "/confirm/" TOKEN (xmalloc'ed), "" when no key. */
char *link_url(const struct conf *c, struct db *db, const char *unit,
	       const char *occ);
/* GET and POST /confirm/TOKEN; rest is TOKEN. */
void link_route(struct app *a, const struct http_req *q, struct http_resp *r,
		const char *rest);

/* ----------------------------------------------------------------- http.c */

/* The route table of everything but the feeds and /healthz: 1 when the
 * path is none of its routes, else 0 with r filled.  Needs no server (the
 * unit tests and fuzzers call it). */
int http_dispatch(struct app *a, const struct http_req *q,
		  struct http_resp *r);

/* metrics.c: GET /metrics, the Prometheus text format 0.0.4.  Counters
 * live in memory since start; gauges of the state store are read by one
 * grouped query each, cached until the store, the configuration or (for
 * the missing units) the next due time changes. */
enum metrics_outcome { METRICS_SENT, METRICS_DEFERRED, METRICS_FAILED };
void metrics_notice(enum channel ch, enum metrics_outcome o);
void metrics_scanned(tstamp scan_time);          /* engine: a scan done */
void metrics_reloaded(bool ok, tstamp when);     /* start-up and SIGHUP */
/* Whether the client (a numeric address, as http_req.client) may read
 * /metrics: metrics_allow, else loopback clients only. */
bool metrics_allowed(const struct conf *c, const char *client);
/* The exposition text for a's current state into out.  0 or -1. */
int metrics_render(struct app *a, struct buf *out);
/* GET /metrics (http.c's route table checks the method): 403 to a client
 * metrics_allowed refuses. */
void metrics_get(struct app *a, const struct http_req *q, struct http_resp *r);

/* Starts listening on conf->daemon.listen on a->loop. */
struct http *http_start(struct app *a, char **err);
void http_stop(struct http *h);

/* ------------------------------------------------------------------ mime.c */

/* A strict, bounded reader of a stored message (RFC 5322, 2045-2047, 2231,
 * 3464): what matching a reply or a bounce needs.  Strings are clean UTF-8
 * (no control characters), NULL when absent. */
#define MIME_MAX_REFS 32
#define MIME_MAX_FILES 16
#define MIME_MAX_RCPT 16
struct mime_rcpt {               /* one recipient of a delivery report */
	char *recipient;         /* Final-Recipient's address, lowercased */
	char *action;            /* "failed", "delayed", ... lowercased */
	char *status;            /* "5.1.1" */
	char *diagnostic;        /* Diagnostic-Code without its type */
};
struct mime_msg {
	char *message_id;        /* "<id>" */
	char **refs;             /* In-Reply-To then References ids, unique */
	size_t nrefs;
	char *from;              /* the From addr-spec, lowercased */
	char *subject;           /* RFC 2047 decoded (UTF-8, Latin-1) */
	tstamp date;
	bool has_date;
	bool auto_reply;         /* Auto-Submitted, X-Autoreply, Precedence */
	const char *auto_why;    /* the header that says so (static) */
	char **files;            /* attachment names (RFC 2231 / 2047) */
	size_t nfiles;
	bool dsn;                /* multipart/report; report-type=delivery-status */
	struct mime_rcpt *rcpt;
	size_t nrcpt;
	char *dsn_orig_id;       /* the returned message's Message-ID */
};
/* 0, or -1 when s holds no header field at all.  mime_clear after 0. */
int mime_parse(const char *s, size_t n, struct mime_msg *out);
void mime_clear(struct mime_msg *m);
/* RFC 2047 encoded words of a header value decoded (charsets other than
 * UTF-8 and Latin-1 left as written); xmalloc'ed, clean UTF-8. */
char *mime_decode_words(const char *s, size_t n);
/* The addr-spec of "Name <a@b>" or "a@b", lowercased; NULL if none. */
char *mime_addr(const char *v);
/* An RFC 5322 date-time; 0 or -1. */
int mime_date(const char *v, tstamp *out);
/* Adds to m->files the attachment names an IMAP BODYSTRUCTURE lists
 * (those past the part of a message that was fetched). */
void mime_bodystructure_files(const char *s, size_t n, struct mime_msg *m);

/* ------------------------------------------------------------------ imap.c */

/* The secretariat's mailbox ([imap]), polled read-only on the loop for
 * reports and delivery status notifications (see imap.c). */
enum imap_outcome {
	IMAP_RECORDED,           /* a confident match, mode = record */
	IMAP_PROPOSED,           /* a match shown for confirmation */
	IMAP_BOUNCED,            /* a DSN for one of our notices */
	IMAP_AUTOREPLY,          /* an auto-reply or out-of-office */
	IMAP_UNKNOWN_SENDER,     /* not from any unit's address */
	IMAP_UNMATCHED,          /* from a unit, names none of its reports;
				    a DSN for a message not ours */
	IMAP_ALREADY,            /* read before, or the report is recorded */
	IMAP_UNREADABLE,         /* not a message, or the store failed */
	IMAP_OUTCOMES
};
const char *imap_outcome_name(enum imap_outcome o);   /* "recorded", ... */
struct imap;
struct app;
/* NULL when there is no [imap] section. */
struct imap *imap_start(struct app *a);
void imap_stop(struct imap *im);
/* One message as the mailbox holds it: matched, recorded or proposed
 * (ledger.c) or marked bounced, and remembered by Message-ID; calls
 * a->changed when state changed.  msg may be the first bytes only;
 * bodystructure (may be NULL) is the FETCH's BODYSTRUCTURE, for the names
 * of attachments past them.  The poller's core, for tests too. */
enum imap_outcome imap_process(struct app *a, const char *msg, size_t len,
			       const char *bodystructure, size_t bslen,
			       int64_t uidvalidity, int64_t uid);
/* cutoffd_imap_* lines of /metrics (metrics.c appends them). */
void imap_metrics_write(struct buf *b);
/* "imap ok" or why it fails, into out; NULL when im is NULL. */
const char *imap_health(const struct imap *im, char *out, size_t size);

#endif
