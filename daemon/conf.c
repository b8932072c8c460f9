/*
 * conf.c - the configuration: INI text -> an immutable struct conf.
 *
 * inih does the tokenising.  Our reader callback hands it one line at a
 * time, which gives us what the Debian build of inih lacks: line numbers
 * for FILE:LINE (the handler gets none), over-long lines reported instead
 * of silently split, and a check of every raw line for NUL, control bytes
 * and invalid UTF-8.  The reader mirrors inih's classification of a line
 * (comment, continuation, [section], key) so it knows the current section
 * itself (inih truncates section names to 50 bytes) and which lines
 * continue a multi-line value.
 *
 * A key's value is parsed once it is complete (after its continuation
 * lines); references between sections are resolved in a second pass.
 * Every problem is collected, sorted by line, then handed to the diag.
 */
#include "cutoffd.h"

#include <ctype.h>
#include <errno.h>
#include <ini.h>
#include <libical/ical.h>
#include <openssl/evp.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <unistd.h>

#ifndef INI_MAX_LINE
#define INI_MAX_LINE 200
#endif

/* 100,000 units with a head and groups each take about 13 MB */
#define CONF_MAX_BYTES (32u << 20)
#define SECRET_MAX_BYTES 65536
#define MAX_ERRORS 1000
#define MAX_STEPS 64
#define MAX_OFFSET_DAYS 3660
#define MAX_DURATION (3660 * 86400LL)
#define ADMIN_TOKEN_MIN 32
/* the installed defaults (templates/, holidays); the Makefile passes
 * $(DATADIR), CUTOFFD_DATADIR in the environment overrides it */
#ifndef CUTOFFD_DATADIR
#define CUTOFFD_DATADIR "/usr/local/share/cutoffd"
#endif
#define HOLIDAYS_FILE "holidays-vn.ics"

/* ------------------------------------------------------ sections and keys */

enum sec {
	S_NONE,          /* before the first section */
	S_SKIP,          /* inside a broken section: its keys are ignored */
	S_DAEMON,
	S_MAIL,
	S_WEBHOOK,
	S_SECRETARIAT,
	S_POLICY,
	S_CYCLE,
	S_UNIT,
	S_ADMIN,
	S_GROUP,         /* [group ID]: a group's display name */
	S_IMAP,
	S_COUNT
};

enum {
	KD_TIMEZONE, KD_STATE, KD_LISTEN, KD_PUBLIC_URL, KD_HOLIDAYS,
	KD_WORKDAYS, KD_ADMIN_TOKEN_FILE, KD_CALENDAR_TOKEN, KD_HORIZON,
	KD_HISTORY, KD_TEMPLATES, KD_LANG,
	KD_METRICS_ALLOW, KD_SINCE, KD_MAX_CONNECTIONS,
	KD_MAX_CONNECTIONS_PER_IP, KD_N
};
static const char *const daemon_keys[KD_N] = {
	[KD_TIMEZONE] = "timezone", [KD_STATE] = "state",
	[KD_LISTEN] = "listen", [KD_PUBLIC_URL] = "public_url",
	[KD_HOLIDAYS] = "holidays", [KD_WORKDAYS] = "workdays",
	[KD_ADMIN_TOKEN_FILE] = "admin_token_file",
	[KD_CALENDAR_TOKEN] = "calendar_token", [KD_HORIZON] = "horizon",
	[KD_HISTORY] = "history", [KD_TEMPLATES] = "templates",
	[KD_LANG] = "lang",
	[KD_METRICS_ALLOW] = "metrics_allow", [KD_SINCE] = "since",
	[KD_MAX_CONNECTIONS] = "max_connections",
	[KD_MAX_CONNECTIONS_PER_IP] = "max_connections_per_ip",
};

enum {
	KM_TRANSPORT, KM_URL, KM_STARTTLS, KM_TLS_VERIFY, KM_USER,
	KM_PASSWORD_FILE, KM_FROM, KM_MAILDIR, KM_PARALLEL, KM_RETRY_MIN,
	KM_RETRY_MAX, KM_GIVE_UP, KM_TIMEOUT, KM_ALLOW_PLAINTEXT_AUTH, KM_N
};
static const char *const mail_keys[KM_N] = {
	[KM_TRANSPORT] = "transport", [KM_URL] = "url",
	[KM_STARTTLS] = "starttls", [KM_TLS_VERIFY] = "tls_verify",
	[KM_USER] = "user", [KM_PASSWORD_FILE] = "password_file",
	[KM_FROM] = "from", [KM_MAILDIR] = "maildir",
	[KM_PARALLEL] = "parallel", [KM_RETRY_MIN] = "retry_min",
	[KM_RETRY_MAX] = "retry_max", [KM_GIVE_UP] = "give_up",
	[KM_TIMEOUT] = "timeout",
	[KM_ALLOW_PLAINTEXT_AUTH] = "allow_plaintext_auth",
};

enum { KW_SECRET_FILE, KW_TIMEOUT, KW_FORMAT, KW_N };
static const char *const webhook_keys[KW_N] = {
	[KW_SECRET_FILE] = "secret_file", [KW_TIMEOUT] = "timeout",
	[KW_FORMAT] = "format",
};

enum { KS_NAME, KS_EMAIL, KS_CHIEF, KS_N };
static const char *const secretariat_keys[KS_N] = {
	[KS_NAME] = "name", [KS_EMAIL] = "email", [KS_CHIEF] = "chief",
};

enum { KP_AT, KP_REMIND, KP_ESCALATE, KP_REPEAT, KP_UNTIL, KP_QUIET,
	KP_SHIFT, KP_SEND_DAYS, KP_LINK, KP_PROPOSAL_PAUSES, KP_N };
static const char *const policy_keys[KP_N] = {
	[KP_AT] = "at", [KP_REMIND] = "remind", [KP_ESCALATE] = "escalate",
	[KP_REPEAT] = "repeat", [KP_UNTIL] = "until", [KP_QUIET] = "quiet",
	[KP_SHIFT] = "shift", [KP_SEND_DAYS] = "send_days",
	[KP_PROPOSAL_PAUSES] = "proposal_pauses",
	[KP_LINK] = "link",
};

enum { KC_TITLE, KC_DUE, KC_RRULE, KC_START, KC_PERIOD, KC_TIME,
	KC_POLICY, KC_UNITS, KC_REF, KC_LABEL, KC_N };
static const char *const cycle_keys[KC_N] = {
	[KC_TITLE] = "title", [KC_DUE] = "due", [KC_RRULE] = "rrule",
	[KC_START] = "start", [KC_PERIOD] = "period", [KC_TIME] = "time",
	[KC_POLICY] = "policy", [KC_UNITS] = "units",
	[KC_REF] = "ref", [KC_LABEL] = "label",
};

enum { KU_NAME, KU_EMAIL, KU_HEAD, KU_WEBHOOK, KU_GROUPS, KU_N };
static const char *const unit_keys[KU_N] = {
	[KU_NAME] = "name", [KU_EMAIL] = "email", [KU_HEAD] = "head",
	[KU_WEBHOOK] = "webhook", [KU_GROUPS] = "groups",
};

/* [admin NAME]: one more admin, with a token of its own */
enum { KA_NAME, KA_TOKEN_FILE, KA_CREDENTIAL, KA_N };
static const char *const admin_keys[KA_N] = {
	[KA_NAME] = "name", [KA_TOKEN_FILE] = "token_file",
	[KA_CREDENTIAL] = "credential",
};

/* [group ID]: the name the page shows for a group of units */
enum { KG_NAME, KG_N };
static const char *const group_keys[KG_N] = { [KG_NAME] = "name" };
/* [imap]: the secretariat's mailbox, polled for reports and bounces */
enum { KI_URL, KI_STARTTLS, KI_TLS_VERIFY, KI_USER, KI_PASSWORD_FILE,
	KI_POLL, KI_MODE, KI_N };
static const char *const imap_keys[KI_N] = {
	[KI_URL] = "url", [KI_STARTTLS] = "starttls",
	[KI_TLS_VERIFY] = "tls_verify", [KI_USER] = "user",
	[KI_PASSWORD_FILE] = "password_file", [KI_POLL] = "poll",
	[KI_MODE] = "mode",
};

#define KMAX 16

struct secdef {
	const char *name;
	const char *const *keys;
	int nkeys;
	bool has_id;
	unsigned empty_ok;   /* bit per key: an empty value means "not set" */
};

static const struct secdef secdefs[S_COUNT] = {
	[S_DAEMON] = { "daemon", daemon_keys, KD_N, false,
		       1u << KD_HOLIDAYS | 1u << KD_ADMIN_TOKEN_FILE |
		       1u << KD_CALENDAR_TOKEN | 1u << KD_PUBLIC_URL },
	[S_MAIL] = { "mail", mail_keys, KM_N, false,
		     1u << KM_USER | 1u << KM_PASSWORD_FILE },
	[S_WEBHOOK] = { "webhook", webhook_keys, KW_N, false,
			1u << KW_SECRET_FILE },
	[S_SECRETARIAT] = { "secretariat", secretariat_keys, KS_N, false,
			    1u << KS_CHIEF },
	[S_POLICY] = { "policy", policy_keys, KP_N, true,
		       1u << KP_REMIND | 1u << KP_ESCALATE },
	[S_CYCLE] = { "cycle", cycle_keys, KC_N, true, 0 },
	[S_UNIT] = { "unit", unit_keys, KU_N, true,
		     1u << KU_HEAD | 1u << KU_WEBHOOK | 1u << KU_GROUPS },
	[S_ADMIN] = { "admin", admin_keys, KA_N, true, 0 },
	[S_GROUP] = { "group", group_keys, KG_N, true, 0 },
	[S_IMAP] = { "imap", imap_keys, KI_N, false,
		     1u << KI_USER | 1u << KI_PASSWORD_FILE },
};

/* What we remember of one section while parsing. */
struct secinfo {
	int line;            /* of its [header]; 0 = absent */
	int kl[KMAX];        /* line of each key; 0 = not set */
	bool bad;            /* a line in it was dropped: no "missing key" */
	char *policy;        /* cycles: raw references, resolved later */
	char *units;
};

struct perr {
	int line;
	size_t seq;
	char *msg;
};

struct pctx {
	const char *name;
	const char *text;
	size_t len, pos;
	int line;
	unsigned flags;
	struct conf *c;

	struct perr *errs;
	size_t nerr, errcap, dropped;

	/* the mirror of inih's state */
	bool prev_name;      /* a key was seen since the last [section] */
	bool cont;           /* the current line continues a value */
	bool crlf_told;

	enum sec sec;
	size_t idx;          /* of the current policy/cycle/unit */
	struct secinfo single[S_COUNT];
	struct secinfo *paux, *caux, *uaux, *aaux, *gaux;
	size_t pcap, ccap, ucap, acap, gcap;

	/* the key being collected */
	bool pend;
	int pkey, pline;
	struct buf pval;
};

static void err(struct pctx *p, int line, const char *fmt, ...)
	PRINTF_LIKE(3, 4);

static void
err(struct pctx *p, int line, const char *fmt, ...)
{
	va_list ap;
	char *m;

	if (p->nerr >= MAX_ERRORS) {
		p->dropped++;
		return;
	}
	va_start(ap, fmt);
	if (vasprintf(&m, fmt, ap) < 0)
		m = NULL;
	va_end(ap);
	if (m == NULL)
		m = xstrdup("out of memory");
	if (p->nerr == p->errcap) {
		p->errcap = p->errcap ? p->errcap * 2 : 16;
		p->errs = xrealloc(p->errs, p->errcap * sizeof *p->errs);
	}
	p->errs[p->nerr].line = line;
	p->errs[p->nerr].seq = p->nerr;
	p->errs[p->nerr].msg = m;
	p->nerr++;
}

/* User text quoted in a message: clipped on a character boundary (diag_add
 * escapes what is left). */
static char *
clip(const char *s)
{
	size_t n = strlen(s), k = 60;

	if (n <= k)
		return xstrdup(s);
	while (k > 0 && ((unsigned char)s[k] & 0xc0) == 0x80)
		k--;
	return xasprintf("%.*s...", (int)k, s);
}

static void
bad(struct pctx *p, int line, const char *key, const char *val,
    const char *why)
{
	char *q = clip(val);

	err(p, line, "%s: invalid value '%s': %s", key, q, why);
	free(q);
}

static void
replace(char **dst, char *val)
{
	free(*dst);
	*dst = val;
}

/* Next token of s separated by any of seps, NUL-terminated in place. */
static char *
next_tok(char **cur, const char *seps)
{
	char *s = *cur + strspn(*cur, seps), *e;

	if (*s == '\0') {
		*cur = s;
		return NULL;
	}
	e = s + strcspn(s, seps);
	if (*e != '\0')
		*e++ = '\0';
	*cur = e;
	return s;
}

static char *
resolve(const struct conf *c, const char *v)
{
	if (v[0] == '/' || strcmp(c->dir, ".") == 0)
		return xstrdup(v);
	return xasprintf("%s/%s", c->dir, v);
}

/* ----------------------------------------------------------- value syntax */

static int
lookup(const char *s, const char *const *names, int n)
{
	int i;

	for (i = 0; i < n; i++)
		if (names[i] != NULL && strcmp(s, names[i]) == 0)
			return i;
	return -1;
}

static int
parse_bool(const char *s, bool *out)
{
	if (!strcasecmp(s, "yes") || !strcasecmp(s, "true") ||
	    !strcasecmp(s, "on") || !strcmp(s, "1")) {
		*out = true;
		return 0;
	}
	if (!strcasecmp(s, "no") || !strcasecmp(s, "false") ||
	    !strcasecmp(s, "off") || !strcmp(s, "0")) {
		*out = false;
		return 0;
	}
	return -1;
}

/* A positive duration up to ten years; "0"/"none" only when zero_ok. */
static int
parse_dur(const char *s, bool zero_ok, int64_t *out)
{
	int64_t v;

	if (zero_ok && (!strcmp(s, "0") || !strcmp(s, "none"))) {
		*out = 0;
		return 0;
	}
	if (parse_duration(s, &v) < 0 || v > MAX_DURATION)
		return -1;
	if (v == 0 && !zero_ok)
		return -1;
	*out = v;
	return 0;
}

/* "-7d", "0d", "+3d": days only. */
static int
parse_offset(const char *s, int *days)
{
	int sign = 1, v = 0, nd = 0;

	if (*s == '+' || *s == '-') {
		sign = *s == '-' ? -1 : 1;
		s++;
	}
	while (isdigit((unsigned char)*s)) {
		if (++nd > 5)
			return -1;
		v = v * 10 + (*s - '0');
		s++;
	}
	if (nd == 0 || s[0] != 'd' || s[1] != '\0' || v > MAX_OFFSET_DAYS)
		return -1;
	*days = sign * v;
	return 0;
}

/* "MM-DD"; 02-29 is allowed (02-28 in common years, see sched.c). */
static int
parse_md(const char *s, struct md *out)
{
	struct ymd d;

	if (strlen(s) != 5 || !isdigit((unsigned char)s[0]) ||
	    !isdigit((unsigned char)s[1]) || s[2] != '-' ||
	    !isdigit((unsigned char)s[3]) || !isdigit((unsigned char)s[4]))
		return -1;
	d.y = 2000;
	d.m = (s[0] - '0') * 10 + (s[1] - '0');
	d.d = (s[3] - '0') * 10 + (s[4] - '0');
	if (!ymd_valid(d))
		return -1;
	out->m = d.m;
	out->d = d.d;
	return 0;
}

static int
parse_date(const char *s, struct ymd *out)
{
	struct ymd d;

	if (parse_ymd(s, &d) < 0 || d.y < 1900 || d.y > 2999)
		return -1;
	*out = d;
	return 0;
}

static const char *const wday_names[7] = {
	"sun", "mon", "tue", "wed", "thu", "fri", "sat"
};

static int
wday_index(const char *s)
{
	int i;

	for (i = 0; i < 7; i++)
		if (strcasecmp(s, wday_names[i]) == 0)
			return i;
	return -1;
}

/* "mon-fri", "mon,tue,wed", "sun-thu sat"; ranges may wrap (fri-mon). */
static int
parse_workdays(char *v, unsigned *out)
{
	unsigned mask = 0;
	char *cur = v, *t, *dash;
	int a, b, i;

	for (t = next_tok(&cur, ", \t"); t != NULL;
	     t = next_tok(&cur, ", \t")) {
		dash = strchr(t, '-');
		if (dash != NULL)
			*dash = '\0';
		a = wday_index(t);
		b = dash != NULL ? wday_index(dash + 1) : a;
		if (a < 0 || b < 0)
			return -1;
		for (i = a;; i = (i + 1) % 7) {
			mask |= 1u << i;
			if (i == b)
				break;
		}
	}
	if (mask == 0)
		return -1;
	*out = mask;
	return 0;
}

/* "HH:MM-HH:MM" (may wrap midnight) or "none". */
static int
parse_quiet(char *v, int *from, int *to)
{
	char *dash;
	int f, t;

	if (strcmp(v, "none") == 0) {
		*from = *to = -1;
		return 0;
	}
	dash = strchr(v, '-');
	if (dash == NULL)
		return -1;
	*dash = '\0';
	if (parse_hhmm(strtrim(v), false, &f) < 0 ||
	    parse_hhmm(strtrim(dash + 1), true, &t) < 0)
		return -1;
	t %= 1440;
	if (f == t)
		return -1;
	*from = f;
	*to = t;
	return 0;
}

static unsigned
audience_bit(const char *s)
{
	if (!strcmp(s, "unit"))
		return AUD_UNIT;
	if (!strcmp(s, "head"))
		return AUD_HEAD;
	if (!strcmp(s, "secretariat"))
		return AUD_SECRETARIAT;
	if (!strcmp(s, "chief"))
		return AUD_CHIEF;
	return 0;
}

/* Bare address: one '@', printable ASCII, none of the header-unsafe or
 * list-separating characters. */
static bool
valid_addr(const char *a, size_t n)
{
	size_t i, at = 0, nat = 0;

	if (n == 0 || n > 254)
		return false;
	for (i = 0; i < n; i++) {
		unsigned char ch = (unsigned char)a[i];

		if (ch <= 0x20 || ch >= 0x7f || strchr("<>,;()[]\\\"", ch))
			return false;
		if (ch == '@') {
			at = i;
			nat++;
		}
	}
	if (nat != 1 || at == 0 || at == n - 1)
		return false;
	if (a[at + 1] == '.' || a[n - 1] == '.')
		return false;
	return true;
}

/* "addr@dom" or "Display Name <addr@dom>" */
static bool
valid_mailbox(const char *s)
{
	const char *lt = strchr(s, '<'), *gt, *q;
	size_t n = strlen(s);

	if (lt == NULL)
		return valid_addr(s, n);
	gt = strchr(lt, '>');
	if (gt == NULL || gt != s + n - 1)
		return false;
	for (q = s; q < lt; q++)
		if (*q == '>' || *q == '"' || (unsigned char)*q < 0x20)
			return false;
	return valid_addr(lt + 1, (size_t)(gt - lt - 1));
}

/* Comma separated mailboxes.  On success *out and *nout get the trimmed items
 * (when out != NULL) and *norm the list re-joined with ", ". */
static int
parse_emails(char *v, char ***out, size_t *nout, char **norm, char **badp)
{
	char **items = NULL, *cur = v, *t;
	size_t n = 0, cap = 0, i;
	struct buf b;

	for (t = next_tok(&cur, ",\n"); t != NULL;
	     t = next_tok(&cur, ",\n")) {
		strtrim(t);
		if (*t == '\0')
			continue;
		if (!valid_mailbox(t)) {
			*badp = t;
			free_list(items, n);
			return -1;
		}
		if (n == cap) {
			cap = cap ? cap * 2 : 4;
			items = xrealloc(items, cap * sizeof *items);
		}
		items[n++] = xstrdup(t);
	}
	if (n == 0) {
		*badp = v;
		free(items);
		return -1;
	}
	if (norm != NULL) {
		buf_init(&b);
		for (i = 0; i < n; i++) {
			if (i > 0)
				buf_puts(&b, ", ");
			buf_puts(&b, items[i]);
		}
		*norm = buf_steal(&b);
	}
	if (out != NULL) {
		*out = items;
		*nout = n;
	} else {
		free_list(items, n);
	}
	return 0;
}

static int
email_value(struct pctx *p, int line, const char *key, char *v,
	    char **norm)
{
	char *badp = NULL;

	if (parse_emails(v, NULL, NULL, norm, &badp) < 0) {
		bad(p, line, key, badp, "expected addr@domain or "
		    "Name <addr@domain>, comma separated");
		return -1;
	}
	return 0;
}

static bool
url_chars_ok(const char *s)
{
	for (; *s != '\0'; s++) {
		unsigned char ch = (unsigned char)*s;

		if (ch <= 0x20 || ch == 0x7f || strchr("\"<>\\`{}|^", ch))
			return false;
	}
	return true;
}

/* scheme://host... with a non-empty host */
static bool
valid_url(const char *s, const char *const *schemes)
{
	size_t k;

	if (!url_chars_ok(s))
		return false;
	for (; *schemes != NULL; schemes++) {
		k = strlen(*schemes);
		if (strncasecmp(s, *schemes, k) == 0)
			return s[k] != '\0' && s[k] != '/' && s[k] != ':';
	}
	return false;
}

static const char *const http_schemes[] = { "http://", "https://", NULL };
static const char *const smtp_schemes[] = { "smtp://", "smtps://", NULL };
static const char *const imap_schemes[] = { "imap://", "imaps://", NULL };

/* "host:port" or "[v6]:port" */
static bool
valid_listen(const char *s)
{
	const char *port, *h, *e;
	long v;
	char *end;

	if (s[0] == '[') {
		e = strchr(s, ']');
		if (e == NULL || e == s + 1 || e[1] != ':')
			return false;
		for (h = s + 1; h < e; h++)
			if (!isxdigit((unsigned char)*h) && *h != ':' &&
			    *h != '.')
				return false;
		port = e + 2;
	} else {
		e = strrchr(s, ':');
		if (e == NULL || e == s)
			return false;
		for (h = s; h < e; h++)
			if (!isalnum((unsigned char)*h) && *h != '.' &&
			    *h != '-' && *h != '*')
				return false;
		port = e + 1;
	}
	if (!isdigit((unsigned char)port[0]) || strlen(port) > 5)
		return false;
	errno = 0;
	v = strtol(port, &end, 10);
	return *end == '\0' && errno == 0 && v >= 1 && v <= 65535;
}

/* Checked here so no odd name (a path, "..") reaches the zone loader. */
static bool
valid_tzname(const char *s)
{
	size_t n = strlen(s), i;

	if (n == 0 || n > 64 || s[0] == '/' || strstr(s, "..") != NULL)
		return false;
	for (i = 0; i < n; i++)
		if (!isalnum((unsigned char)s[i]) && !strchr("/_+-", s[i]))
			return false;
	return true;
}

/* A token in a URL query: unreserved characters only. */
static bool
valid_token(const char *s)
{
	if (*s == '\0')
		return false;
	for (; *s != '\0'; s++)
		if (!isalnum((unsigned char)*s) && !strchr("-._~", *s))
			return false;
	return true;
}

/* ----------------------------------------------------------- per section */

/* metrics_allow = CIDR, CIDR ...: the whole list or nothing, so that a
 * typo never leaves a half-open door; empty = loopback only. */
static void
set_metrics_allow(struct pctx *p, char *v, int line)
{
	struct conf *c = p->c;
	struct cidr *list = NULL;
	char **items = NULL;
	size_t n = split_list(v, ", \t", &items);
	bool ok = true;

	list = n > 0 ? xcalloc(n, sizeof(*list)) : NULL;
	for (size_t i = 0; i < n; i++) {
		const char *why;

		if (cidr_parse(items[i], &list[i], &why) < 0) {
			bad(p, line, "metrics_allow", items[i], why);
			ok = false;
		}
	}
	free_list(items, n);
	if (!ok) {
		free(list);
		return;
	}
	free(c->daemon.metrics_allow);
	c->daemon.metrics_allow = list;
	c->daemon.nmetrics_allow = n;
}

static void
set_daemon(struct pctx *p, int k, char *v, int line)
{
	struct conf *c = p->c;
	const char *key = daemon_keys[k];
	unsigned mask;
	int64_t dur;
	size_t n;
	char *copy;
	int r;

	switch (k) {
	case KD_TIMEZONE:
		if (!valid_tzname(v))
			bad(p, line, key, v, "expected an IANA zone name "
			    "like Asia/Ho_Chi_Minh");
		else
			replace(&c->daemon.timezone, xstrdup(v));
		break;
	case KD_STATE:
		replace(&c->daemon.state, resolve(c, v));
		break;
	case KD_LISTEN:
		if (!valid_listen(v))
			bad(p, line, key, v, "expected host:port or [v6]:port");
		else
			replace(&c->daemon.listen, xstrdup(v));
		break;
	case KD_PUBLIC_URL:
		if (*v == '\0') {
			replace(&c->daemon.public_url, NULL);
			break;
		}
		n = strlen(v);
		while (n > 0 && v[n - 1] == '/')
			v[--n] = '\0';
		if (!valid_url(v, http_schemes))
			bad(p, line, key, v, "expected an http:// or "
			    "https:// URL");
		else
			replace(&c->daemon.public_url, xstrdup(v));
		break;
	case KD_HOLIDAYS:
		replace(&c->daemon.holidays, *v ? resolve(c, v) : NULL);
		break;
	case KD_WORKDAYS:
		copy = xstrdup(v);
		r = parse_workdays(copy, &mask);
		free(copy);
		if (r < 0)
			bad(p, line, key, v, "expected day names and ranges "
			    "like mon-fri or mon,tue,thu");
		else
			c->daemon.workdays = mask;
		break;
	case KD_ADMIN_TOKEN_FILE:
		replace(&c->daemon.admin_token_file,
			*v ? resolve(c, v) : NULL);
		break;
	case KD_CALENDAR_TOKEN:
		if (*v != '\0' && !valid_token(v))
			bad(p, line, key, v, "use letters, digits and -._~ "
			    "only");
		else
			replace(&c->daemon.calendar_token,
				*v ? xstrdup(v) : NULL);
		break;
	case KD_HORIZON:
	case KD_HISTORY:
		if (parse_dur(v, false, &dur) < 0)
			bad(p, line, key, v, "expected a duration like 400d");
		else if (k == KD_HORIZON)
			c->daemon.horizon = dur;
		else
			c->daemon.history = dur;
		break;
	case KD_TEMPLATES:
		replace(&c->daemon.templates, resolve(c, v));
		break;
	case KD_LANG:
		if (strcmp(v, "vi") != 0 && strcmp(v, "en") != 0)
			bad(p, line, key, v, "expected vi or en");
		else
			replace(&c->daemon.lang, xstrdup(v));
		break;
	case KD_METRICS_ALLOW:
		set_metrics_allow(p, v, line);
		break;
	case KD_SINCE: {
		struct ymd d;

		if (parse_date(v, &d) < 0) {
			bad(p, line, key, v, "expected YYYY-MM-DD");
		} else {
			c->daemon.since_day = days_from_civil(d.y, d.m, d.d);
			c->daemon.since_given = true;
		}
		break;
	}
	case KD_MAX_CONNECTIONS:
	case KD_MAX_CONNECTIONS_PER_IP: {
		/* each connection is a descriptor; the usual soft limit of
		 * 1024 has to leave room for the store, mail and webhooks */
		char *end;
		long lv;

		errno = 0;
		lv = strtol(v, &end, 10);
		if (!isdigit((unsigned char)*v) || *end != '\0' || errno ||
		    lv < 1 || lv > 4096)
			bad(p, line, key, v, "expected a number from 1 to 4096");
		else if (k == KD_MAX_CONNECTIONS)
			c->daemon.max_connections = (unsigned)lv;
		else
			c->daemon.max_connections_per_ip = (unsigned)lv;
		break;
	}
	}
}

static void
set_mail(struct pctx *p, int k, char *v, int line)
{
	struct conf *c = p->c;
	const char *key = mail_keys[k];
	int64_t dur, *durp = NULL;
	char *norm, *end;
	long n;

	switch (k) {
	case KM_TRANSPORT:
		if (!strcmp(v, "smtp"))
			c->mail.transport = TRANSPORT_SMTP;
		else if (!strcmp(v, "maildir"))
			c->mail.transport = TRANSPORT_MAILDIR;
		else
			bad(p, line, key, v, "expected smtp or maildir");
		break;
	case KM_URL:
		if (!valid_url(v, smtp_schemes))
			bad(p, line, key, v, "expected smtp://host[:port] or "
			    "smtps://host[:port]");
		else
			replace(&c->mail.url, xstrdup(v));
		break;
	case KM_STARTTLS:
		if (!strcmp(v, "try"))
			c->mail.starttls = STARTTLS_TRY;
		else if (!strcmp(v, "required"))
			c->mail.starttls = STARTTLS_REQUIRED;
		else if (!strcmp(v, "no"))
			c->mail.starttls = STARTTLS_NO;
		else
			bad(p, line, key, v, "expected required, try or no");
		break;
	case KM_TLS_VERIFY:
		if (parse_bool(v, &c->mail.tls_verify) < 0)
			bad(p, line, key, v, "expected yes or no");
		break;
	case KM_USER:
		replace(&c->mail.user, *v ? xstrdup(v) : NULL);
		break;
	case KM_PASSWORD_FILE:
		replace(&c->mail.password_file, *v ? resolve(c, v) : NULL);
		break;
	case KM_FROM:
		if (strchr(v, ',') != NULL)
			bad(p, line, key, v, "expected one address");
		else if (email_value(p, line, key, v, &norm) == 0)
			replace(&c->mail.from, norm);
		break;
	case KM_MAILDIR:
		replace(&c->mail.maildir, resolve(c, v));
		break;
	case KM_PARALLEL:
		errno = 0;
		n = strtol(v, &end, 10);
		if (!isdigit((unsigned char)*v) || *end != '\0' || errno ||
		    n < 1 || n > 64)
			bad(p, line, key, v, "expected a number from 1 to 64");
		else
			c->mail.parallel = (int)n;
		break;
	case KM_RETRY_MIN:
		durp = &c->mail.retry_min;
		break;
	case KM_RETRY_MAX:
		durp = &c->mail.retry_max;
		break;
	case KM_GIVE_UP:
		durp = &c->mail.give_up;
		break;
	case KM_TIMEOUT:
		durp = &c->mail.timeout;
		break;
	case KM_ALLOW_PLAINTEXT_AUTH:
		if (parse_bool(v, &c->mail.allow_plaintext_auth) < 0)
			bad(p, line, key, v, "expected yes or no");
		break;
	}
	if (durp != NULL) {
		if (parse_dur(v, false, &dur) < 0)
			bad(p, line, key, v, "expected a duration like 5m");
		else
			*durp = dur;
	}
}

/* The host of scheme://[user@]host[:port]/... is a loopback literal or
 * localhost: the only place an IMAP password may travel in clear. */
static bool
url_host_loopback(const char *url)
{
	const char *h = strstr(url, "://"), *e;
	char host[64];
	size_t n;

	if (h == NULL)
		return false;
	h += 3;
	e = h + strcspn(h, "/?#");
	{
		const char *at = memchr(h, '@', (size_t)(e - h));

		if (at != NULL)
			h = at + 1;
	}
	if (*h == '[') {
		const char *rb = memchr(h, ']', (size_t)(e - h));

		if (rb == NULL)
			return false;
		n = (size_t)(rb - h - 1);
		if (n >= sizeof(host))
			return false;
		memcpy(host, h + 1, n);
		host[n] = '\0';
		return strcmp(host, "::1") == 0;
	}
	n = strcspn(h, ":/?#");
	if (n >= sizeof(host))
		return false;
	memcpy(host, h, n);
	host[n] = '\0';
	return strncmp(host, "127.", 4) == 0 || strcasecmp(host, "localhost") == 0;
}

static void
set_imap(struct pctx *p, int k, char *v, int line)
{
	struct conf *c = p->c;
	const char *key = imap_keys[k];
	int64_t dur;

	c->imap.enabled = true;
	switch (k) {
	case KI_URL: {
		const char *path = strstr(v, "://");

		path = path != NULL ? strchr(path + 3, '/') : NULL;
		if (!valid_url(v, imap_schemes) || path == NULL ||
		    path[1] == '\0' || strpbrk(path + 1, ";?#\"") != NULL)
			bad(p, line, key, v, "expected imaps://host[:port]/"
			    "MAILBOX or imap://host[:port]/MAILBOX");
		else
			replace(&c->imap.url, xstrdup(v));
		break;
	}
	case KI_STARTTLS:
		if (!strcmp(v, "try"))
			c->imap.starttls = STARTTLS_TRY;
		else if (!strcmp(v, "required"))
			c->imap.starttls = STARTTLS_REQUIRED;
		else if (!strcmp(v, "no"))
			c->imap.starttls = STARTTLS_NO;
		else
			bad(p, line, key, v, "expected required, try or no");
		break;
	case KI_TLS_VERIFY:
		if (parse_bool(v, &c->imap.tls_verify) < 0)
			bad(p, line, key, v, "expected yes or no");
		break;
	case KI_USER:
		replace(&c->imap.user, *v ? xstrdup(v) : NULL);
		break;
	case KI_PASSWORD_FILE:
		replace(&c->imap.password_file, *v ? resolve(c, v) : NULL);
		break;
	case KI_POLL:
		if (parse_dur(v, false, &dur) < 0 || dur < 2)
			bad(p, line, key, v, "expected a duration of at "
			    "least 2s, like 5m");
		else
			c->imap.poll = dur;
		break;
	case KI_MODE:
		if (!strcmp(v, "record"))
			c->imap.record = true;
		else if (!strcmp(v, "propose"))
			c->imap.record = false;
		else
			bad(p, line, key, v, "expected record or propose");
		break;
	}
}

static void
set_webhook(struct pctx *p, int k, char *v, int line)
{
	struct conf *c = p->c;
	const char *key = webhook_keys[k];
	int64_t dur;

	switch (k) {
	case KW_SECRET_FILE:
		replace(&c->webhook.secret_file, *v ? resolve(c, v) : NULL);
		break;
	case KW_TIMEOUT:
		if (parse_dur(v, false, &dur) < 0)
			bad(p, line, key, v, "expected a duration like 10s");
		else
			c->webhook.timeout = dur;
		break;
	case KW_FORMAT:
		if (!strcmp(v, "standard"))
			c->webhook.format = HOOK_STANDARD;
		else if (!strcmp(v, "text"))
			c->webhook.format = HOOK_TEXT;
		else
			bad(p, line, key, v, "expected standard or text");
		break;
	}
}

static void
set_secretariat(struct pctx *p, int k, char *v, int line)
{
	struct conf *c = p->c;
	char *norm;

	switch (k) {
	case KS_NAME:
		replace(&c->secretariat.name, xstrdup(v));
		break;
	case KS_EMAIL:
		if (email_value(p, line, "email", v, &norm) == 0)
			replace(&c->secretariat.email, norm);
		break;
	case KS_CHIEF:
		if (*v == '\0')
			replace(&c->secretariat.chief, NULL);
		else if (email_value(p, line, "chief", v, &norm) == 0)
			replace(&c->secretariat.chief, norm);
		break;
	}
}

/* remind/escalate: "-7d -3d 0d", "+1d head, +3d head secretariat". */
static int
parse_steps(struct pctx *p, int line, const char *key, char *v,
	    unsigned defaud, bool after_due, struct step **out, size_t *nout)
{
	struct step *st = NULL;
	size_t n = 0, i;
	char *cur = v, *t;
	unsigned a;
	int days;
	bool ok = true;

	if (strcmp(v, "none") == 0 || *v == '\0') {
		*out = NULL;
		*nout = 0;
		return 0;
	}
	for (t = next_tok(&cur, ", \t"); t != NULL;
	     t = next_tok(&cur, ", \t")) {
		if (t[0] == '+' || t[0] == '-' ||
		    isdigit((unsigned char)t[0])) {
			if (parse_offset(t, &days) < 0) {
				bad(p, line, key, t, "expected an offset in "
				    "days like -7d, 0d or +3d");
				ok = false;
				continue;
			}
			if (n == MAX_STEPS) {
				err(p, line, "%s: more than %d steps", key,
				    MAX_STEPS);
				ok = false;
				break;
			}
			if (n % 8 == 0)
				st = xrealloc(st, (n + 8) * sizeof *st);
			st[n].days = days;
			st[n].aud = 0;
			n++;
			continue;
		}
		a = audience_bit(t);
		if (a == 0) {
			bad(p, line, key, t, "expected an offset or one of "
			    "unit, head, secretariat, chief");
			ok = false;
		} else if (n == 0) {
			err(p, line, "%s: audience '%s' before any offset",
			    key, t);
			ok = false;
		} else {
			st[n - 1].aud |= a;
		}
	}
	for (i = 0; ok && i < n; i++) {
		if (st[i].aud == 0)
			st[i].aud = defaud;
		if (i > 0 && st[i].days <= st[i - 1].days) {
			err(p, line, "%s: offsets must be strictly increasing "
			    "(%+dd after %+dd)", key, st[i].days,
			    st[i - 1].days);
			ok = false;
		} else if (after_due && st[i].days <= 0) {
			err(p, line, "%s: escalation offsets must be after "
			    "the due date (+1d or later), not %+dd", key,
			    st[i].days);
			ok = false;
		}
	}
	if (!ok) {
		free(st);
		return -1;
	}
	*out = st;
	*nout = n;
	return 0;
}

static void
set_policy(struct pctx *p, int k, char *v, int line)
{
	struct policy *po = &p->c->policies[p->idx];
	const char *key = policy_keys[k];
	struct step *st;
	size_t n;
	int64_t dur;
	int m, qf, qt, r;
	char *copy;

	switch (k) {
	case KP_AT:
		if (parse_hhmm(v, false, &m) < 0)
			bad(p, line, key, v, "expected HH:MM");
		else
			po->at = m;
		break;
	case KP_REMIND:
	case KP_ESCALATE:
		if (parse_steps(p, line, key, v,
				k == KP_REMIND ? AUD_UNIT : AUD_HEAD,
				k == KP_ESCALATE, &st, &n) < 0)
			break;
		if (k == KP_REMIND) {
			free(po->remind);
			po->remind = st;
			po->nremind = n;
		} else {
			free(po->escalate);
			po->escalate = st;
			po->nescalate = n;
		}
		break;
	case KP_REPEAT:
		if (parse_dur(v, true, &dur) < 0 || dur % 86400 != 0)
			bad(p, line, key, v, "expected whole days like 3d, "
			    "or 0");
		else
			po->repeat = dur;
		break;
	case KP_UNTIL:
		if (parse_dur(v, true, &dur) < 0)
			bad(p, line, key, v, "expected a duration like 30d, "
			    "or 0");
		else
			po->until = dur;
		break;
	case KP_QUIET:
		copy = xstrdup(v);
		r = parse_quiet(copy, &qf, &qt);
		free(copy);
		if (r < 0) {
			bad(p, line, key, v, "expected HH:MM-HH:MM (may wrap "
			    "midnight) or none");
			break;
		}
		po->quiet_from = qf;
		po->quiet_to = qt;
		break;
	case KP_SHIFT:
		if (!strcmp(v, "next-workday"))
			po->shift = SHIFT_NEXT;
		else if (!strcmp(v, "previous-workday"))
			po->shift = SHIFT_PREV;
		else if (!strcmp(v, "none"))
			po->shift = SHIFT_NONE;
		else
			bad(p, line, key, v, "expected next-workday, "
			    "previous-workday or none");
		break;
	case KP_SEND_DAYS:
		if (!strcmp(v, "workdays"))
			po->send_all_days = false;
		else if (!strcmp(v, "all"))
			po->send_all_days = true;
		else
			bad(p, line, key, v, "expected workdays or all");
		break;
	case KP_PROPOSAL_PAUSES:
		if (!strcmp(v, "head"))
			po->proposal_keeps_head = false;
		else if (!strcmp(v, "none"))
			po->proposal_keeps_head = true;
		else
			bad(p, line, key, v, "expected head or none");
		break;
	case KP_LINK:
		if (!strcmp(v, "propose"))
			po->link_record = false;
		else if (!strcmp(v, "record"))
			po->link_record = true;
		else
			bad(p, line, key, v, "expected propose or record");
		break;
	}
}

static int
md_cmp(const void *a, const void *b)
{
	const struct md *x = a, *y = b;

	if (x->m != y->m)
		return x->m < y->m ? -1 : 1;
	return x->d < y->d ? -1 : x->d > y->d;
}

static int
ymd_qcmp(const void *a, const void *b)
{
	return ymd_cmp(*(const struct ymd *)a, *(const struct ymd *)b);
}

static void
set_due(struct pctx *p, struct cycle *cy, char *v, int line)
{
	struct md *yr = NULL, md;
	struct ymd *on = NULL, d;
	size_t ny = 0, no = 0, i, k;
	char *cur = v, *t;
	bool ok = true;

	for (t = next_tok(&cur, ", \t"); t != NULL;
	     t = next_tok(&cur, ", \t")) {
		if (parse_md(t, &md) == 0) {
			if (ny % 8 == 0)
				yr = xrealloc(yr, (ny + 8) * sizeof *yr);
			yr[ny++] = md;
		} else if (parse_date(t, &d) == 0) {
			if (no % 8 == 0)
				on = xrealloc(on, (no + 8) * sizeof *on);
			on[no++] = d;
		} else {
			bad(p, line, "due", t, "expected MM-DD (yearly) or "
			    "YYYY-MM-DD (once)");
			ok = false;
		}
	}
	if (!ok || ny + no == 0) {
		if (ok)
			err(p, line, "due: no date given");
		free(yr);
		free(on);
		return;
	}
	/* sorted, duplicates dropped: the same date twice is one due date */
	if (ny > 0) {
		qsort(yr, ny, sizeof *yr, md_cmp);
		for (i = k = 1; i < ny; i++)
			if (md_cmp(&yr[i], &yr[k - 1]) != 0)
				yr[k++] = yr[i];
		ny = k;
	}
	if (no > 0) {
		qsort(on, no, sizeof *on, ymd_qcmp);
		for (i = k = 1; i < no; i++)
			if (ymd_cmp(on[i], on[k - 1]) != 0)
				on[k++] = on[i];
		no = k;
	}
	free(cy->yearly);
	free(cy->once);
	cy->yearly = yr;
	cy->nyearly = ny;
	cy->once = on;
	cy->nonce = no;
}

/* Some BYMONTHDAY exists in some BYMONTH month (libical searches for
 * centuries before it gives up on such a rule). */
static bool
month_days_meet(const struct icalrecurrencetype *r)
{
	static const int mdays[12] = {
		31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31
	};
	int months[12], nm = 0, i, j, m, md;

	for (i = 0; i < ICAL_BY_MONTH_SIZE &&
	     r->by_month[i] != ICAL_RECURRENCE_ARRAY_MAX && nm < 12; i++) {
		m = icalrecurrencetype_month_month(r->by_month[i]);
		if (m >= 1 && m <= 12)
			months[nm++] = m;
	}
	if (nm == 0)
		for (m = 1; m <= 12; m++)
			months[nm++] = m;
	if (r->by_month_day[0] == ICAL_RECURRENCE_ARRAY_MAX)
		return true;
	for (i = 0; i < ICAL_BY_MONTHDAY_SIZE &&
	     r->by_month_day[i] != ICAL_RECURRENCE_ARRAY_MAX; i++) {
		md = abs(r->by_month_day[i]);
		for (j = 0; j < nm; j++)
			if (md >= 1 && md <= mdays[months[j] - 1])
				return true;
	}
	return false;
}

/* Only the parts that make sense for due dates (no times, no RSCALE),
 * each once, before libical sees the rule. */
static const char *
rrule_parts_ok(const char *v)
{
	static const char *const parts[] = {
		"FREQ", "INTERVAL", "COUNT", "UNTIL", "BYDAY", "BYMONTHDAY",
		"BYMONTH", "BYSETPOS", "BYYEARDAY", "BYWEEKNO", "WKST",
	};
	const size_t np = sizeof parts / sizeof parts[0];
	bool seen[sizeof parts / sizeof parts[0]] = { false };
	const char *s = v, *eq, *end;
	size_t i, n;

	while (*s != '\0') {
		end = s + strcspn(s, ";");
		eq = memchr(s, '=', (size_t)(end - s));
		if (eq == NULL || eq == s || eq + 1 == end)
			return "expected NAME=VALUE parts separated by ';'";
		n = (size_t)(eq - s);
		for (i = 0; i < np; i++)
			if (strlen(parts[i]) == n &&
			    strncasecmp(s, parts[i], n) == 0)
				break;
		if (i == np)
			return "only FREQ, INTERVAL, COUNT, UNTIL, BYDAY, "
			       "BYMONTHDAY, BYMONTH, BYSETPOS, BYYEARDAY, "
			       "BYWEEKNO and WKST are allowed";
		if (seen[i])
			return "a part is given twice";
		seen[i] = true;
		s = *end != '\0' ? end + 1 : end;
	}
	if (!seen[0])
		return "FREQ is required";
	return NULL;
}

/* Texts shown to people in the notices (`ref`, `label`): one line of
 * UTF-8 without control characters, bounded so a subject stays readable. */
#define CYCLE_TEXT_MAX 160

static void
cycle_text_key(struct pctx *p, struct cycle *cy, int k, const char *v,
	       int line)
{
	static const struct { const char *name; enum cycle_label l; } kinds[] = {
		{ "auto", LABEL_AUTO }, { "none", LABEL_NONE },
		{ "month", LABEL_MONTH }, { "quarter", LABEL_QUARTER },
		{ "half", LABEL_HALF }, { "nine-months", LABEL_NINE_MONTHS },
		{ "year", LABEL_YEAR },
	};
	const char *key = cycle_keys[k];
	size_t n = strlen(v);

	if (n == 0) {
		bad(p, line, key, v, "empty");
		return;
	}
	if (n > CYCLE_TEXT_MAX) {
		err(p, line, "%s: longer than %d bytes", key, CYCLE_TEXT_MAX);
		return;
	}
	if (!utf8_valid(v, n)) {
		err(p, line, "%s: invalid UTF-8", key);
		return;
	}
	for (size_t i = 0; i < n; i++) {
		unsigned char ch = (unsigned char)v[i];

		if (ch < 0x20 || ch == 0x7f) {
			bad(p, line, key, v, "control character (CR, LF, tab...)");
			return;
		}
	}
	if (strstr(v, "{{") != NULL || strstr(v, "}}") != NULL) {
		bad(p, line, key, v, "'{{' and '}}' are template syntax");
		return;
	}
	if (k == KC_REF) {
		replace(&cy->ref, xstrdup(v));
		return;
	}
	for (size_t i = 0; i < sizeof kinds / sizeof kinds[0]; i++) {
		if (strcmp(v, kinds[i].name) == 0) {
			cy->label = kinds[i].l;
			replace(&cy->label_text, NULL);
			return;
		}
	}
	cy->label = LABEL_TEXT;
	replace(&cy->label_text, xstrdup(v));
}

static void
set_cycle(struct pctx *p, int k, char *v, int line)
{
	struct cycle *cy = &p->c->cycles[p->idx];
	struct secinfo *a = &p->caux[p->idx];
	const char *key = cycle_keys[k];
	struct icalrecurrencetype r;
	struct md from, to;
	struct ymd d;
	char *dots, *copy;
	const char *why;
	int m;

	switch (k) {
	case KC_TITLE:
		replace(&cy->title, xstrdup(v));
		break;
	case KC_DUE:
		set_due(p, cy, v, line);
		break;
	case KC_RRULE:
		if (strncasecmp(v, "RRULE:", 6) == 0)
			v += 6;
		why = rrule_parts_ok(v);
		if (why != NULL) {
			bad(p, line, key, v, why);
			break;
		}
		r = icalrecurrencetype_from_string(v);
		if (r.freq == ICAL_NO_RECURRENCE)
			bad(p, line, key, v, "not an RFC 5545 RRULE with FREQ");
		else if (r.freq < ICAL_DAILY_RECURRENCE)
			bad(p, line, key, v, "FREQ must be DAILY, WEEKLY, "
			    "MONTHLY or YEARLY");
		else if (!month_days_meet(&r))
			bad(p, line, key, v, "no BYMONTHDAY exists in the "
			    "BYMONTH months");
		else
			replace(&cy->rrule, xstrdup(v));
		break;
	case KC_START:
		if (parse_date(v, &d) < 0) {
			bad(p, line, key, v, "expected YYYY-MM-DD");
		} else {
			cy->start = d;
			cy->start_given = true;
		}
		break;
	case KC_PERIOD: {
		static const struct {
			const char *name;
			enum period_kind k;
		} presets[] = {
			{ "none", PERIOD_NONE }, { "previous", PERIOD_PREVIOUS },
			{ "month", PERIOD_MONTH }, { "quarter", PERIOD_QUARTER },
			{ "half", PERIOD_HALF },
			{ "nine-months", PERIOD_NINE_MONTHS },
			{ "year", PERIOD_YEAR },
		};
		size_t i;

		for (i = 0; i < sizeof presets / sizeof presets[0]; i++)
			if (strcmp(v, presets[i].name) == 0)
				break;
		if (i < sizeof presets / sizeof presets[0]) {
			cy->period = presets[i].k;
			cy->period_fixed = false;
			break;
		}
	}
		copy = xstrdup(v);
		dots = strstr(copy, "..");
		if (dots != NULL)
			*dots = '\0';
		m = dots == NULL || parse_md(strtrim(copy), &from) < 0 ||
			parse_md(strtrim(dots + 2), &to) < 0;
		free(copy);
		if (m) {
			bad(p, line, key, v, "expected MM-DD .. MM-DD, month, "
			    "quarter, half, nine-months, year, previous or "
			    "none");
			break;
		}
		cy->period = PERIOD_FIXED;
		cy->period_fixed = true;
		cy->period_from = from;
		cy->period_to = to;
		break;
	case KC_TIME:
		if (parse_hhmm(v, true, &m) < 0)
			bad(p, line, key, v, "expected HH:MM (24:00 = end "
			    "of day)");
		else
			cy->due_minute = m;
		break;
	case KC_POLICY:
		if (!valid_id(v))
			bad(p, line, key, v, "expected a policy id");
		else
			replace(&a->policy, xstrdup(v));
		break;
	case KC_UNITS:
		replace(&a->units, xstrdup(v));
		break;
	case KC_REF:
	case KC_LABEL:
		cycle_text_key(p, cy, k, v, line);
		break;
	}
}

static int
str_qcmp(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

static void
set_unit(struct pctx *p, int k, char *v, int line)
{
	struct unit *u = &p->c->units[p->idx];
	const char *key = unit_keys[k];
	char **items, *norm, *badp = NULL, *cur = v, *t;
	size_t n, i, j;

	switch (k) {
	case KU_NAME:
		replace(&u->name, xstrdup(v));
		break;
	case KU_EMAIL:
		if (parse_emails(v, &items, &n, NULL, &badp) < 0) {
			bad(p, line, key, badp, "expected addr@domain or "
			    "Name <addr@domain>, comma separated");
			break;
		}
		free_list(u->email, u->nemail);
		u->email = items;
		u->nemail = n;
		break;
	case KU_HEAD:
		if (*v == '\0')
			replace(&u->head, NULL);
		else if (email_value(p, line, key, v, &norm) == 0)
			replace(&u->head, norm);
		break;
	case KU_WEBHOOK:
		if (*v == '\0')
			replace(&u->webhook, NULL);
		else if (!valid_url(v, http_schemes))
			bad(p, line, key, v, "expected an http:// or https:// "
			    "URL");
		else
			replace(&u->webhook, xstrdup(v));
		break;
	case KU_GROUPS:
		items = NULL;
		n = 0;
		for (t = next_tok(&cur, ", \t"); t != NULL;
		     t = next_tok(&cur, ", \t")) {
			if (!valid_id(t)) {
				bad(p, line, key, t, "group names look like "
				    "ids: [a-z0-9][a-z0-9_-]*");
				continue;
			}
			if (n % 8 == 0)
				items = xrealloc(items,
						 (n + 8) * sizeof *items);
			items[n++] = xstrdup(t);
		}
		if (n > 1) {
			qsort(items, n, sizeof *items, str_qcmp);
			for (i = j = 1; i < n; i++) {
				if (strcmp(items[i], items[j - 1]) == 0)
					free(items[i]);
				else
					items[j++] = items[i];
			}
			n = j;
		}
		free_list(u->groups, u->ngroups);
		u->groups = items;
		u->ngroups = n;
		break;
	}
}

static void
set_admin(struct pctx *p, int k, char *v, int line)
{
	struct conf *c = p->c;
	struct admin *ad = &c->admins[p->idx];
	const char *dir;

	switch (k) {
	case KA_NAME:
		if (str_has_crlf(v) || strlen(v) > 63) {
			bad(p, line, "name", v, "one line of at most 63 bytes");
			break;
		}
		replace(&ad->name, xstrdup(v));
		break;
	case KA_TOKEN_FILE:
		replace(&ad->token_file, resolve(c, v));
		break;
	case KA_CREDENTIAL:
		/* systemd's LoadCredential=: a file in $CREDENTIALS_DIRECTORY */
		if (strchr(v, '/') != NULL || strcmp(v, ".") == 0 ||
		    strcmp(v, "..") == 0) {
			bad(p, line, "credential", v, "a credential name, "
			    "not a path");
			break;
		}
		/* outside the service (cutoffctl, --check by hand) there is
		 * no credential: that admin just cannot log in here */
		dir = getenv("CREDENTIALS_DIRECTORY");
		if (dir == NULL || *dir == '\0')
			break;
		replace(&ad->token_file, xasprintf("%s/%s", dir, v));
		break;
	}
}

/* --------------------------------------------------------- line handling */

static struct secinfo *
cur_si(struct pctx *p)
{
	switch (p->sec) {
	case S_DAEMON:
	case S_MAIL:
	case S_WEBHOOK:
	case S_SECRETARIAT:
	case S_IMAP:
		return &p->single[p->sec];
	case S_POLICY:
		return &p->paux[p->idx];
	case S_CYCLE:
		return &p->caux[p->idx];
	case S_UNIT:
		return &p->uaux[p->idx];
	case S_ADMIN:
		return &p->aaux[p->idx];
	case S_GROUP:
		return &p->gaux[p->idx];
	default:
		return NULL;
	}
}

static bool
is_email_list(enum sec s, int k)
{
	return (s == S_UNIT && (k == KU_EMAIL || k == KU_HEAD)) ||
	       (s == S_SECRETARIAT && (k == KS_EMAIL || k == KS_CHIEF));
}

static struct group_def *
c_group(struct pctx *p)
{
	return &p->c->groupdefs[p->idx];
}

/* The key collected so far is complete: parse its value. */
static void
flush(struct pctx *p)
{
	const struct secdef *sd;
	char *v, *q;

	if (!p->pend)
		return;
	p->pend = false;
	v = p->pval.p != NULL ? p->pval.p : (char *)"";
	sd = &secdefs[p->sec];
	/* Continuation lines were joined with LF: a separator in address
	 * lists, a space everywhere else. */
	if (!is_email_list(p->sec, p->pkey))
		for (q = v; *q != '\0'; q++)
			if (*q == '\n')
				*q = ' ';
	v = strtrim(v);
	if (*v == '\0' && !(sd->empty_ok & (1u << p->pkey))) {
		err(p, p->pline, "%s: missing value", sd->keys[p->pkey]);
	} else {
		switch (p->sec) {
		case S_DAEMON: set_daemon(p, p->pkey, v, p->pline); break;
		case S_MAIL: set_mail(p, p->pkey, v, p->pline); break;
		case S_WEBHOOK: set_webhook(p, p->pkey, v, p->pline); break;
		case S_SECRETARIAT:
			set_secretariat(p, p->pkey, v, p->pline);
			break;
		case S_POLICY: set_policy(p, p->pkey, v, p->pline); break;
		case S_CYCLE: set_cycle(p, p->pkey, v, p->pline); break;
		case S_UNIT: set_unit(p, p->pkey, v, p->pline); break;
		case S_ADMIN: set_admin(p, p->pkey, v, p->pline); break;
		case S_GROUP:
			if (str_has_crlf(v) || strlen(v) > 200)
				bad(p, p->pline, "name", v, "one line of at "
				    "most 200 bytes");
			else
				replace(&c_group(p)->name, xstrdup(v));
			break;
		case S_IMAP: set_imap(p, p->pkey, v, p->pline); break;
		default: break;
		}
	}
	buf_reset(&p->pval);
}

static void
new_object(struct pctx *p, enum sec s, const char *id)
{
	struct conf *c = p->c;
	struct secinfo *si;
	size_t *cap, n;

	switch (s) {
	case S_POLICY:
		n = c->npolicies;
		cap = &p->pcap;
		if (n == *cap) {
			*cap = *cap ? *cap * 2 : 4;
			c->policies = xrealloc(c->policies,
					       *cap * sizeof *c->policies);
			p->paux = xrealloc(p->paux, *cap * sizeof *p->paux);
		}
		memset(&c->policies[n], 0, sizeof c->policies[n]);
		c->policies[n].id = xstrdup(id);
		c->policies[n].line = p->line;
		c->policies[n].at = 8 * 60;
		c->policies[n].quiet_from = -1;
		c->policies[n].quiet_to = -1;
		c->policies[n].shift = SHIFT_NEXT;
		si = &p->paux[n];
		c->npolicies++;
		break;
	case S_CYCLE:
		n = c->ncycles;
		cap = &p->ccap;
		if (n == *cap) {
			*cap = *cap ? *cap * 2 : 8;
			c->cycles = xrealloc(c->cycles,
					     *cap * sizeof *c->cycles);
			p->caux = xrealloc(p->caux, *cap * sizeof *p->caux);
		}
		memset(&c->cycles[n], 0, sizeof c->cycles[n]);
		c->cycles[n].id = xstrdup(id);
		c->cycles[n].line = p->line;
		c->cycles[n].due_minute = 1440;
		si = &p->caux[n];
		c->ncycles++;
		break;
	case S_GROUP:
		n = c->ngroupdefs;
		cap = &p->gcap;
		if (n == *cap) {
			*cap = *cap ? *cap * 2 : 4;
			c->groupdefs = xrealloc(c->groupdefs,
						*cap * sizeof *c->groupdefs);
			p->gaux = xrealloc(p->gaux, *cap * sizeof *p->gaux);
		}
		memset(&c->groupdefs[n], 0, sizeof c->groupdefs[n]);
		c->groupdefs[n].id = xstrdup(id);
		c->groupdefs[n].line = p->line;
		si = &p->gaux[n];
		c->ngroupdefs++;
		break;
	case S_ADMIN:
		n = c->nadmins;
		cap = &p->acap;
		if (n == *cap) {
			*cap = *cap ? *cap * 2 : 4;
			c->admins = xrealloc(c->admins,
					     *cap * sizeof *c->admins);
			p->aaux = xrealloc(p->aaux, *cap * sizeof *p->aaux);
		}
		memset(&c->admins[n], 0, sizeof c->admins[n]);
		c->admins[n].id = xstrdup(id);
		c->admins[n].line = p->line;
		si = &p->aaux[n];
		c->nadmins++;
		break;
	default:
		n = c->nunits;
		cap = &p->ucap;
		if (n == *cap) {
			*cap = *cap ? *cap * 2 : 16;
			c->units = xrealloc(c->units, *cap * sizeof *c->units);
			p->uaux = xrealloc(p->uaux, *cap * sizeof *p->uaux);
		}
		memset(&c->units[n], 0, sizeof c->units[n]);
		c->units[n].id = xstrdup(id);
		c->units[n].line = p->line;
		si = &p->uaux[n];
		c->nunits++;
		break;
	}
	memset(si, 0, sizeof *si);
	si->line = p->line;
	p->sec = s;
	p->idx = n;
}

/* inih's find_chars_or_comment: the first of chars, or an inline comment
 * (';' after white space), or the end. */
static const char *
find_sep(const char *s, const char *chars)
{
#if INI_ALLOW_INLINE_COMMENTS
	bool was_space = false;

	while (*s != '\0' && (chars == NULL || strchr(chars, *s) == NULL) &&
	       !(was_space && strchr(INI_INLINE_COMMENT_PREFIXES, *s))) {
		was_space = isspace((unsigned char)*s);
		s++;
	}
#else
	while (*s != '\0' && (chars == NULL || strchr(chars, *s) == NULL))
		s++;
#endif
	return s;
}

static void
section_line(struct pctx *p, const char *s)
{
	const char *e = find_sep(s + 1, "]"), *rest;
	char inner[INI_MAX_LINE + 1], *type, *id, *cur, *extra, *q;
	const struct secinfo *first;
	size_t n;
	int i;

	p->sec = S_SKIP;
	if (*e != ']') {
		err(p, p->line, "missing ']' in section header");
		return;
	}
	p->prev_name = false;     /* as inih: a new section ends a value */
	rest = e + 1;
	while (isspace((unsigned char)*rest))
		rest++;
	if (*rest != '\0' && strchr(";#", *rest) == NULL)
		err(p, p->line, "unexpected text after ']'");
	n = (size_t)(e - (s + 1));
	if (n > INI_MAX_LINE)
		n = INI_MAX_LINE;
	memcpy(inner, s + 1, n);
	inner[n] = '\0';
	cur = inner;
	type = next_tok(&cur, " \t");
	id = next_tok(&cur, " \t");
	extra = next_tok(&cur, " \t");
	if (type == NULL) {
		err(p, p->line, "empty section name");
		return;
	}
	for (i = S_DAEMON; i < S_COUNT; i++)
		if (strcmp(type, secdefs[i].name) == 0)
			break;
	if (i == S_COUNT) {
		q = clip(type);
		err(p, p->line, "unknown section [%s]", q);
		free(q);
		return;
	}
	if (extra != NULL) {
		err(p, p->line, "section header has too many words; "
		    "expected [%s%s]", type,
		    secdefs[i].has_id ? " ID" : "");
		return;
	}
	if (!secdefs[i].has_id) {
		if (id != NULL) {
			err(p, p->line, "[%s] takes no id", type);
			return;
		}
		first = &p->single[i];
		if (first->line > 0) {
			err(p, p->line, "duplicate section [%s] (first at "
			    "line %d)", type, first->line);
			return;
		}
		p->single[i].line = p->line;
		p->sec = (enum sec)i;
		return;
	}
	if (id == NULL) {
		err(p, p->line, "section [%s] needs an id: [%s ID]", type,
		    type);
		return;
	}
	if (!valid_id(id)) {
		q = clip(id);
		err(p, p->line, "invalid %s id '%s': expected "
		    "[a-z0-9][a-z0-9_-]*, at most 64 characters", type, q);
		free(q);
		return;
	}
	new_object(p, (enum sec)i, id);
}

/* What is wrong with a raw line, if anything (NULL: nothing). */
static const char *
line_problem(const char *s, size_t n, size_t limit)
{
	size_t i;

	if (n > limit)
		return "line too long";
	if (memchr(s, '\0', n) != NULL)
		return "NUL byte in line";
	if (!utf8_valid(s, n))
		return "invalid UTF-8";
	for (i = 0; i < n; i++) {
		unsigned char ch = (unsigned char)s[i];

		if (ch == '\r')
			return "carriage return (CR) in line";
		if ((ch < 0x20 && ch != '\t') || ch == 0x7f)
			return "control character in line";
	}
	return NULL;
}

static char *
reader(char *str, int num, void *stream)
{
	struct pctx *p = stream;
	const char *raw, *nl, *why, *s, *e;
	size_t n, limit;
	struct secinfo *si;

	p->cont = false;
	if (p->pos >= p->len || num < 2) {
		flush(p);
		return NULL;
	}
	raw = p->text + p->pos;
	nl = memchr(raw, '\n', p->len - p->pos);
	n = nl != NULL ? (size_t)(nl - raw) : p->len - p->pos;
	p->pos += n + (nl != NULL);
	p->line++;

	if (p->line == 1 && n >= 3 && memcmp(raw, "\xEF\xBB\xBF", 3) == 0) {
		raw += 3;
		n -= 3;
	}
	if (n > 0 && raw[n - 1] == '\r') {
		n--;
		if (!p->crlf_told)
			err(p, p->line, "line ends with CR LF: convert the "
			    "file to Unix (LF) line endings");
		p->crlf_told = true;
	}
	/* inih's buffer holds num - 1 bytes and a NUL */
	limit = (size_t)num - 1;
	if (limit > INI_MAX_LINE - 1)
		limit = INI_MAX_LINE - 1;
	why = line_problem(raw, n, limit);
	if (why != NULL) {
		if (n > limit)
			err(p, p->line, "line too long (%zu bytes; at most "
			    "%zu)", n, limit);
		else
			err(p, p->line, "%s", why);
		/* Don't let the next keys land in the previous section. */
		for (s = raw; s < raw + n && isspace((unsigned char)*s); s++)
			;
		if (s < raw + n && *s == '[') {
			flush(p);
			p->sec = S_SKIP;
		}
		si = cur_si(p);
		if (si != NULL)
			si->bad = true;
		str[0] = '\0';
		return str;
	}
	memcpy(str, raw, n);
	str[n] = '\0';

	/* classify the line the way inih will */
	s = str;
	while (isspace((unsigned char)*s))
		s++;
	if (*s == '\0' || strchr(INI_START_COMMENT_PREFIXES, *s) != NULL)
		return str;
#if INI_ALLOW_MULTILINE
	if (p->prev_name && s > str) {
		p->cont = true;
		return str;
	}
#endif
	flush(p);
	if (*s == '[') {
		section_line(p, s);
		return str;
	}
	e = find_sep(s, "=:");
	if (*e != '=' && *e != ':') {
		err(p, p->line, "expected 'key = value' or '[section]'");
		return str;
	}
	while (e > s && isspace((unsigned char)e[-1]))
		e--;
	p->prev_name = e > s;
	return str;
}

static int
handler(void *user, const char *section, const char *name, const char *value)
{
	struct pctx *p = user;
	const struct secdef *sd;
	struct secinfo *si;
	const char *e;
	char *q;
	int k;

	(void)section;   /* ours is the full one */
	if (p->cont) {
		if (p->pend) {
			/* inih r55 keeps inline comments on these lines */
			e = find_sep(value, NULL);
			buf_putc(&p->pval, '\n');
			buf_add(&p->pval, value, (size_t)(e - value));
		}
		return 1;
	}
	if (p->sec == S_SKIP)
		return 1;
	if (*name == '\0') {
		err(p, p->line, "missing key name before '='");
		return 1;
	}
	q = clip(name);
	if (p->sec == S_NONE) {
		err(p, p->line, "key '%s' outside of any [section]", q);
		goto out;
	}
	sd = &secdefs[p->sec];
	k = lookup(name, sd->keys, sd->nkeys);
	if (k < 0) {
		err(p, p->line, "unknown key '%s' in [%s]", q, sd->name);
		goto out;
	}
	si = cur_si(p);
	if (si->kl[k] > 0) {
		err(p, p->line, "duplicate key '%s' (first at line %d)", q,
		    si->kl[k]);
		goto out;
	}
	si->kl[k] = p->line;
	p->pend = true;
	p->pkey = k;
	p->pline = p->line;
	buf_reset(&p->pval);
	buf_puts(&p->pval, value);
out:
	free(q);
	return 1;
}

/* ------------------------------------------------------------ validation */

struct idpair {
	const char *id;
	size_t idx;
};

static int
idpair_cmp(const void *a, const void *b)
{
	const struct idpair *x = a, *y = b;
	int r = strcmp(x->id, y->id);

	if (r != 0)
		return r;
	return x->idx < y->idx ? -1 : x->idx > y->idx;
}

/* Sorts the ids (objects of `size` bytes, id and line first members
 * at the given offsets), reports duplicates, returns the index. */
static size_t *
build_index(struct pctx *p, const char *kind, const void *base, size_t n,
	    size_t size, size_t id_off, size_t line_off)
{
	struct idpair *v;
	size_t *idx, i, first = 0;
	const char *obj;
	int fl, l;

	if (n == 0)
		return NULL;
	v = xmalloc(n * sizeof *v);
	for (i = 0; i < n; i++) {
		obj = (const char *)base + i * size;
		v[i].id = *(char *const *)(obj + id_off);
		v[i].idx = i;
	}
	qsort(v, n, sizeof *v, idpair_cmp);
	idx = xmalloc(n * sizeof *idx);
	for (i = 0; i < n; i++) {
		idx[i] = v[i].idx;
		if (i > 0 && strcmp(v[i].id, v[i - 1].id) == 0) {
			obj = (const char *)base + v[first].idx * size;
			memcpy(&fl, obj + line_off, sizeof fl);
			obj = (const char *)base + v[i].idx * size;
			memcpy(&l, obj + line_off, sizeof l);
			err(p, l, "duplicate section [%s %s] (first at line "
			    "%d)", kind, v[i].id, fl);
		} else {
			first = i;
		}
	}
	free(v);
	return idx;
}

#define BUILD_INDEX(p, kind, arr, n, type) \
	build_index(p, kind, arr, n, sizeof(type), offsetof(type, id), \
		    offsetof(type, line))

static ssize_t
find_sorted(const size_t *index, size_t n, const void *base, size_t size,
	    const char *id)
{
	size_t lo = 0, hi = n, mid;
	const char *mid_id;
	int r;

	while (lo < hi) {
		mid = lo + (hi - lo) / 2;
		mid_id = *(char *const *)((const char *)base +
					  index[mid] * size);
		r = strcmp(id, mid_id);
		if (r == 0)
			return (ssize_t)index[mid];
		if (r < 0)
			hi = mid;
		else
			lo = mid + 1;
	}
	return -1;
}

static ssize_t
unit_pos(const struct conf *c, const char *id)
{
	size_t i;

	if (c->unit_index != NULL)
		return find_sorted(c->unit_index, c->nunits, c->units,
				   sizeof *c->units, id);
	for (i = 0; i < c->nunits; i++)
		if (strcmp(c->units[i].id, id) == 0)
			return (ssize_t)i;
	return -1;
}

static bool
has_group(const struct conf *c, const char *g)
{
	size_t lo = 0, hi = c->ngroups, mid;
	int r;

	while (lo < hi) {
		mid = lo + (hi - lo) / 2;
		r = strcmp(g, c->groups[mid]);
		if (r == 0)
			return true;
		if (r < 0)
			hi = mid;
		else
			lo = mid + 1;
	}
	return false;
}

static bool
unit_in_group(const struct unit *u, const char *g)
{
	size_t i;

	for (i = 0; i < u->ngroups; i++)
		if (strcmp(u->groups[i], g) == 0)
			return true;
	return false;
}

static void
collect_groups(struct conf *c)
{
	size_t total = 0, i, j, n = 0;
	char **all;

	for (i = 0; i < c->nunits; i++)
		total += c->units[i].ngroups;
	if (total == 0)
		return;
	all = xmalloc(total * sizeof *all);
	for (i = 0; i < c->nunits; i++)
		for (j = 0; j < c->units[i].ngroups; j++)
			all[n++] = c->units[i].groups[j];
	qsort(all, n, sizeof *all, str_qcmp);
	c->groups = xmalloc(n * sizeof *c->groups);
	for (i = 0; i < n; i++)
		if (i == 0 || strcmp(all[i], all[i - 1]) != 0)
			c->groups[c->ngroups++] = xstrdup(all[i]);
	free(all);
}

static void
resolve_units(struct pctx *p, struct cycle *cy, const struct secinfo *a)
{
	struct conf *c = p->c;
	int line = a->kl[KC_UNITS] > 0 ? a->kl[KC_UNITS] : cy->line;
	char *spec = xstrdup(a->units != NULL ? a->units : "*");
	char *cur = spec, *t, *q;
	bool *mark, ok = true;
	size_t i, n = 0;
	ssize_t pos;

	mark = xcalloc(c->nunits + 1, sizeof *mark);
	for (t = next_tok(&cur, ", \t"); t != NULL;
	     t = next_tok(&cur, ", \t")) {
		if (strcmp(t, "*") == 0) {
			for (i = 0; i < c->nunits; i++)
				mark[i] = true;
		} else if (t[0] == '@') {
			if (!has_group(c, t + 1)) {
				q = clip(t + 1);
				err(p, line, "units: undefined group '%s'", q);
				free(q);
				ok = false;
				continue;
			}
			for (i = 0; i < c->nunits; i++)
				if (unit_in_group(&c->units[i], t + 1))
					mark[i] = true;
		} else {
			pos = unit_pos(c, t);
			if (pos < 0) {
				q = clip(t);
				err(p, line, "units: undefined unit '%s'", q);
				free(q);
				ok = false;
				continue;
			}
			mark[pos] = true;
		}
	}
	for (i = 0; i < c->nunits; i++)
		n += mark[i];
	if (ok && n == 0 && c->nunits > 0)
		err(p, line, "units: no unit selected");
	if (n > 0) {
		cy->units = xmalloc(n * sizeof *cy->units);
		for (i = 0; i < c->nunits; i++)
			if (mark[i])
				cy->units[cy->nunits++] = i;
	}
	free(mark);
	free(spec);
}

/* Why a rule's dates depend on where it starts (then `start` is required),
 * or NULL when they don't: it then counts from `since` (contract, "Added
 * for 0.2").  Beyond INTERVAL > 1 and COUNT, a rule that takes its day,
 * weekday or month from DTSTART (RFC 5545 3.3.10) depends on it too. */
static const char *
rrule_needs_start(const char *rule)
{
	struct icalrecurrencetype r = icalrecurrencetype_from_string(rule);
	bool bymday = r.by_month_day[0] != ICAL_RECURRENCE_ARRAY_MAX;
	bool byday = r.by_day[0] != ICAL_RECURRENCE_ARRAY_MAX;
	bool bymonth = r.by_month[0] != ICAL_RECURRENCE_ARRAY_MAX;
	bool byyday = r.by_year_day[0] != ICAL_RECURRENCE_ARRAY_MAX;
	bool bywno = r.by_week_no[0] != ICAL_RECURRENCE_ARRAY_MAX;

	if (r.interval > 1)
		return "INTERVAL > 1 counts from it";
	if (r.count > 0)
		return "COUNT counts from it";
	switch (r.freq) {
	case ICAL_WEEKLY_RECURRENCE:
		return byday ? NULL : "FREQ=WEEKLY without BYDAY takes its "
				      "weekday from it";
	case ICAL_MONTHLY_RECURRENCE:
		return bymday || byday ? NULL : "FREQ=MONTHLY without "
			"BYMONTHDAY or BYDAY takes its day from it";
	case ICAL_YEARLY_RECURRENCE:
		if (byyday || bywno || (bymonth && (bymday || byday)) ||
		    (byday && !bymonth))
			return NULL;
		return "FREQ=YEARLY without BYMONTH and BYMONTHDAY (or BYDAY, "
		       "BYYEARDAY) takes its date from it";
	default:
		return NULL;
	}
}

/* The rule must expand from its start, to at least one date. */
static void
check_rrule(struct pctx *p, struct cycle *cy, int line)
{
	struct icalrecurrencetype r = icalrecurrencetype_from_string(cy->rrule);
	struct icaltimetype t, first;
	icalrecur_iterator *it;
	char date[16];

	/* a DATE value as libical makes it (a hand-made one can make the
	 * iterator search forever) */
	snprintf(date, sizeof date, "%04d%02d%02d", cy->start.y % 10000,
		 cy->start.m % 100, cy->start.d % 100);
	t = icaltime_from_string(date);
	it = icalrecur_iterator_new(r, t);
	if (it == NULL) {
		err(p, line, "rrule: libical cannot expand this rule");
		return;
	}
	first = icalrecur_iterator_next(it);
	icalrecur_iterator_free(it);
	if (icaltime_is_null_time(first))
		err(p, line, "rrule: the rule yields no date");
}

static void
check_cycle(struct pctx *p, struct cycle *cy, const struct secinfo *a,
	    const size_t *pidx)
{
	struct conf *c = p->c;
	const char *why;
	ssize_t pos;
	char *q;

	if (!a->bad && a->kl[KC_TITLE] == 0)
		err(p, cy->line, "cycle '%s' has no title", cy->id);
	if (a->kl[KC_DUE] > 0 && a->kl[KC_RRULE] > 0) {
		err(p, a->kl[KC_RRULE], "rrule: a cycle has due or rrule, "
		    "not both (due at line %d)", a->kl[KC_DUE]);
	} else if (a->kl[KC_DUE] == 0 && a->kl[KC_RRULE] == 0) {
		if (!a->bad)
			err(p, cy->line, "cycle '%s' needs due = or rrule =",
			    cy->id);
	} else if (a->kl[KC_RRULE] > 0 && a->kl[KC_START] == 0 &&
		   cy->rrule != NULL &&
		   (why = rrule_needs_start(cy->rrule)) != NULL) {
		err(p, a->kl[KC_RRULE], "rrule: needs start = YYYY-MM-DD "
		    "(%s)", why);
	} else if (cy->rrule != NULL && cy->start.y != 0) {
		check_rrule(p, cy, a->kl[KC_RRULE]);
	} else if (cy->rrule != NULL && a->kl[KC_START] == 0) {
		/* counts from since; any anchor shows the rule expands */
		cy->start = (struct ymd){ 2000, 1, 1 };
		check_rrule(p, cy, a->kl[KC_RRULE]);
		cy->start = (struct ymd){ 0, 0, 0 };
	}
	if (a->kl[KC_START] > 0 && a->kl[KC_RRULE] == 0)
		err(p, a->kl[KC_START], "start: only used with rrule");

	if (a->policy != NULL) {
		pos = -1;
		if (pidx != NULL)
			pos = find_sorted(pidx, c->npolicies, c->policies,
					  sizeof *c->policies, a->policy);
		if (pos < 0) {
			q = clip(a->policy);
			err(p, a->kl[KC_POLICY], "policy: undefined policy "
			    "'%s'", q);
			free(q);
		} else {
			cy->policy = &c->policies[pos];
		}
	} else if (a->kl[KC_POLICY] == 0) {
		if (c->npolicies == 1)
			cy->policy = &c->policies[0];
		else if (c->npolicies == 0)
			err(p, cy->line, "cycle '%s' needs a policy, and no "
			    "[policy ID] section is defined", cy->id);
		else
			err(p, cy->line, "cycle '%s' needs policy = (%zu "
			    "policies are defined)", cy->id, c->npolicies);
	}
	resolve_units(p, cy, a);
}

static unsigned
policy_audiences(const struct policy *po, int *which)
{
	unsigned a = 0;
	size_t i;

	*which = KP_REMIND;
	for (i = 0; i < po->nremind; i++)
		a |= po->remind[i].aud;
	if (a & AUD_CHIEF)
		return a;
	for (i = 0; i < po->nescalate; i++)
		a |= po->escalate[i].aud;
	*which = KP_ESCALATE;
	return a;
}

/* Secret files: contents without the trailing newline. */
static int
read_secret(struct pctx *p, const char *key, const char *path, int line,
	    char **out, size_t *len)
{
	char *text;
	size_t n;

	if (read_file(path, SECRET_MAX_BYTES, &text, &n) < 0) {
		err(p, line, "%s: cannot read %s: %s", key, path,
		    strerror(errno));
		return -1;
	}
	while (n > 0 && (text[n - 1] == '\n' || text[n - 1] == '\r'))
		text[--n] = '\0';
	if (n == 0 || memchr(text, '\0', n) != NULL || str_has_crlf(text)) {
		err(p, line, "%s: %s must hold one non-empty line", key, path);
		free(text);
		return -1;
	}
	*out = text;
	*len = n;
	return 0;
}


/* Standard base64 with optional padding; out must hold n bytes. */
static int
b64decode(const char *s, size_t n, unsigned char *out, size_t *outlen)
{
	size_t pad = 0;
	int k;

	/* OpenSSL's decoder counts padding as zero bytes: strip them after */
	if (n == 0 || n % 4 != 0 || n > INT32_MAX)
		return -1;
	while (pad < 2 && s[n - 1 - pad] == '=')
		pad++;
	k = EVP_DecodeBlock(out, (const unsigned char *)s, (int)n);
	if (k < 0 || (size_t)k < pad + 1)
		return -1;
	*outlen = (size_t)k - pad;
	return 0;
}

static void
load_secrets(struct pctx *p)
{
	struct conf *c = p->c;
	const unsigned char *q;
	size_t n, k;
	char *text;
	int line;

	if (c->daemon.admin_token_file == NULL) {
		/* None configured: the daemon's own, beside its state, made
		 * on its first start (main.c); read when it exists. */
		const char *slash = strrchr(c->daemon.state, '/');

		c->daemon.admin_token_auto = true;
		c->daemon.admin_token_file = slash == NULL ?
			xstrdup("admin.token") : xasprintf("%.*s/admin.token",
			(int)(slash - c->daemon.state), c->daemon.state);
	}
	if (c->daemon.admin_token_auto &&
	    access(c->daemon.admin_token_file, F_OK) < 0 && errno == ENOENT) {
		/* not created yet: no token until the daemon makes it */
	} else {
		line = p->single[S_DAEMON].kl[KD_ADMIN_TOKEN_FILE];
		if (line == 0)
			line = p->single[S_DAEMON].kl[KD_STATE];
		if (read_secret(p, "admin_token_file",
				c->daemon.admin_token_file, line, &text,
				&n) == 0) {
			for (q = (const unsigned char *)text; *q > 0x20 &&
			     *q < 0x7f; q++)
				;
			if (*q != '\0') {
				err(p, line, "admin_token_file: the token may "
				    "only hold printable ASCII without spaces");
				free(text);
			} else if (n < ADMIN_TOKEN_MIN) {
				err(p, line, "admin_token_file: the token in "
				    "%s must be at least %d characters (it "
				    "has %zu; e.g. openssl rand -hex 32)",
				    c->daemon.admin_token_file,
				    ADMIN_TOKEN_MIN, n);
				free(text);
			} else {
				c->daemon.admin_token = text;
			}
		}
	}
	for (size_t i = 0; i < c->nadmins; i++) {
		struct admin *ad = &c->admins[i];

		line = p->aaux[i].kl[KA_TOKEN_FILE] ? p->aaux[i].kl[KA_TOKEN_FILE]
			: p->aaux[i].kl[KA_CREDENTIAL];
		if (ad->token_file == NULL ||
		    read_secret(p, "token_file", ad->token_file, line, &text,
				&n) < 0)
			continue;
		for (q = (const unsigned char *)text; *q > 0x20 && *q < 0x7f;
		     q++)
			;
		if (*q != '\0' || n < ADMIN_TOKEN_MIN) {
			err(p, line, "admin '%s': the token must be at least %d "
			    "printable ASCII characters without spaces",
			    ad->id, ADMIN_TOKEN_MIN);
			free(text);
			continue;
		}
		/* the token tells who acts: two admins may not share one */
		if (c->daemon.admin_token != NULL &&
		    strcmp(text, c->daemon.admin_token) == 0)
			err(p, line, "admin '%s' has the token of [daemon] "
			    "admin_token_file", ad->id);
		for (size_t j = 0; j < i; j++)
			if (c->admins[j].token != NULL &&
			    strcmp(text, c->admins[j].token) == 0)
				err(p, line, "admin '%s' has the token of admin "
				    "'%s'", ad->id, c->admins[j].id);
		ad->token = text;
	}
	if (c->mail.password_file != NULL) {
		line = p->single[S_MAIL].kl[KM_PASSWORD_FILE];
		if (read_secret(p, "password_file", c->mail.password_file,
				line, &text, &n) == 0)
			c->mail.password = text;
	}
	if (c->imap.password_file != NULL) {
		line = p->single[S_IMAP].kl[KI_PASSWORD_FILE];
		if (read_secret(p, "password_file", c->imap.password_file,
				line, &text, &n) == 0)
			c->imap.password = text;
	}
	if (c->webhook.secret_file != NULL) {
		line = p->single[S_WEBHOOK].kl[KW_SECRET_FILE];
		if (read_secret(p, "secret_file", c->webhook.secret_file,
				line, &text, &n) == 0) {
			/* Standard Webhooks keys: "whsec_" + base64 */
			if (strncmp(text, "whsec_", 6) == 0) {
				c->webhook.secret = xmalloc(n);
				if (b64decode(text + 6, n - 6,
					      c->webhook.secret, &k) < 0) {
					err(p, line, "secret_file: bad base64 "
					    "after whsec_");
					free(c->webhook.secret);
					c->webhook.secret = NULL;
				} else {
					c->webhook.secret_len = k;
				}
				free(text);
			} else {
				c->webhook.secret = (unsigned char *)text;
				c->webhook.secret_len = n;
			}
		}
	}
}

/* Whether an smtp:// URL names a loopback address literally (127.0.0.0/8,
 * [::1]).  A name is never taken for loopback, not even "localhost": what
 * it resolves to is not in the file, and the decision must not depend on
 * a resolver. */
static bool
smtp_url_loopback(const char *url)
{
	const char *h = strstr(url, "://");
	unsigned a, b, cc, d;
	char tail;

	if (h == NULL)
		return false;
	h += 3;
	if (strchr(h, '@') != NULL)
		h = strrchr(h, '@') + 1;
	if (strncmp(h, "[::1]", 5) == 0)
		return strchr(":/", h[5]) != NULL;
	tail = '\0';
	if (sscanf(h, "%u.%u.%u.%u%c", &a, &b, &cc, &d, &tail) < 4)
		return false;
	return a == 127 && b < 256 && cc < 256 && d < 256 &&
	       (tail == '\0' || tail == ':' || tail == '/');
}

/* No SMTP password in clear: with `user` set over smtp:// to a server not
 * on loopback, `starttls = try` becomes `required` (a server or a
 * middlebox that offers no STARTTLS gets no password), and `starttls =
 * no` is an error, unless allow_plaintext_auth = yes. */
static void
check_plaintext_auth(struct pctx *p, const struct secinfo *si)
{
	struct conf *c = p->c;

	if (c->mail.transport != TRANSPORT_SMTP || c->mail.user == NULL ||
	    c->mail.allow_plaintext_auth || c->mail.url == NULL ||
	    strncmp(c->mail.url, "smtp://", 7) != 0 ||
	    smtp_url_loopback(c->mail.url))
		return;
	if (c->mail.starttls == STARTTLS_TRY) {
		c->mail.starttls = STARTTLS_REQUIRED;
		c->mail.auth_needs_tls = true;
	} else if (c->mail.starttls == STARTTLS_NO) {
		err(p, si->kl[KM_STARTTLS], "starttls = no with user set would "
		    "send the SMTP password in clear to a server not on "
		    "loopback; use starttls = required or smtps://, or write "
		    "allow_plaintext_auth = yes");
	}
}

static void
validate(struct pctx *p)
{
	struct conf *c = p->c;
	const struct secinfo *si;
	size_t *pidx, i;
	unsigned aud;
	int which, line;
	char *first, *lt;

	c->unit_index = BUILD_INDEX(p, "unit", c->units, c->nunits,
				    struct unit);
	c->cycle_index = BUILD_INDEX(p, "cycle", c->cycles, c->ncycles,
				     struct cycle);
	pidx = BUILD_INDEX(p, "policy", c->policies, c->npolicies,
			   struct policy);
	collect_groups(c);

	for (i = 0; i < c->nunits; i++) {
		si = &p->uaux[i];
		if (si->bad)
			continue;
		if (si->kl[KU_NAME] == 0)
			err(p, si->line, "unit '%s' has no name",
			    c->units[i].id);
		if (si->kl[KU_EMAIL] == 0)
			err(p, si->line, "unit '%s' has no email",
			    c->units[i].id);
	}

	free(BUILD_INDEX(p, "admin", c->admins, c->nadmins, struct admin));
	for (i = 0; i < c->nadmins; i++) {
		si = &p->aaux[i];
		if (si->bad)
			continue;
		if ((si->kl[KA_TOKEN_FILE] != 0) == (si->kl[KA_CREDENTIAL] != 0))
			err(p, si->line, "admin '%s' needs one of token_file "
			    "or credential", c->admins[i].id);
		if (strcmp(c->admins[i].id, "admin") == 0 &&
		    c->daemon.admin_token_file != NULL)
			err(p, si->line, "[admin admin]: 'admin' is the name of "
			    "the admin of [daemon] admin_token_file");
	}

	free(BUILD_INDEX(p, "group", c->groupdefs, c->ngroupdefs,
			 struct group_def));
	for (i = 0; i < c->ngroupdefs; i++) {
		si = &p->gaux[i];
		if (!si->bad && !has_group(c, c->groupdefs[i].id))
			err(p, si->line, "[group %s]: no unit is in this "
			    "group", c->groupdefs[i].id);
		else if (!si->bad && si->kl[KG_NAME] == 0)
			err(p, si->line, "[group %s] has no name",
			    c->groupdefs[i].id);
	}

	si = &p->single[S_SECRETARIAT];
	/* an installed configuration with no unit yet is valid and inert */
	if (si->line == 0 && c->nunits == 0)
		;
	else if (si->line == 0)
		err(p, 0, "missing [secretariat] section (its email "
		    "receives escalations)");
	else if (!si->bad && si->kl[KS_EMAIL] == 0)
		err(p, si->line, "[secretariat] has no email");

	for (i = 0; i < c->npolicies; i++) {
		aud = policy_audiences(&c->policies[i], &which);
		if ((aud & AUD_CHIEF) && c->secretariat.chief == NULL &&
		    p->single[S_SECRETARIAT].kl[KS_CHIEF] == 0)
			err(p, p->paux[i].kl[which], "%s: 'chief' is used but "
			    "[secretariat] has no chief",
			    policy_keys[which]);
	}

	for (i = 0; i < c->ncycles; i++)
		check_cycle(p, &c->cycles[i], &p->caux[i], pidx);
	free(pidx);

	/* Zero units or cycles is an empty calendar, not an error: the
	 * installed configuration starts inert until the admin fills it. */

	si = &p->single[S_DAEMON];
	if (c->daemon.timezone != NULL) {
		c->tz = tz_load(c->daemon.timezone);
		if (c->tz == NULL) {
			line = si->kl[KD_TIMEZONE] ? si->kl[KD_TIMEZONE] : 0;
			err(p, line, "timezone: cannot load zone '%s' "
			    "(is tzdata installed?)", c->daemon.timezone);
		}
	}
	if (c->daemon.public_url == NULL)
		c->daemon.public_url = xasprintf("http://%s",
						 c->daemon.listen);

	si = &p->single[S_MAIL];
	if (c->mail.retry_min > c->mail.retry_max)
		err(p, si->kl[KM_RETRY_MIN] ? si->kl[KM_RETRY_MIN] :
		    si->kl[KM_RETRY_MAX], "retry_min is longer than "
		    "retry_max");
	check_plaintext_auth(p, si);
	if (c->mail.from == NULL && c->secretariat.email != NULL) {
		/* the secretariat's first address, with its name */
		first = xstrndup(c->secretariat.email,
				 strcspn(c->secretariat.email, ","));
		lt = strchr(first, '<');
		if (lt == NULL && c->secretariat.name != NULL &&
		    strpbrk(c->secretariat.name, ",<>\"") == NULL) {
			c->mail.from = xasprintf("%s <%s>",
						 c->secretariat.name, first);
			free(first);
		} else {
			c->mail.from = first;
		}
	}

	si = &p->single[S_IMAP];
	if (si->line > 0 && !si->bad) {
		if (c->imap.url == NULL)
			err(p, si->line, "[imap]: url is required");
		else if (!strncasecmp(c->imap.url, "imap://", 7) &&
			 c->imap.starttls != STARTTLS_REQUIRED &&
			 !url_host_loopback(c->imap.url))
			/* a password in clear over the network */
			err(p, si->kl[KI_STARTTLS] ? si->kl[KI_STARTTLS] :
			    si->line, "[imap]: starttls = %s is only for a "
			    "server on loopback; use imaps:// or starttls = "
			    "required", c->imap.starttls == STARTTLS_NO ?
			    "no" : "try");
		if (c->imap.password_file != NULL && c->imap.user == NULL)
			err(p, si->kl[KI_PASSWORD_FILE], "[imap]: "
			    "password_file needs user");
		if (c->imap.user != NULL && c->imap.password_file == NULL)
			err(p, si->kl[KI_USER], "[imap]: user needs "
			    "password_file");
	}

	if (!(p->flags & CONF_NO_FILES))
		load_secrets(p);
}

/* ------------------------------------------------------------------ API */

static int
perr_cmp(const void *a, const void *b)
{
	const struct perr *x = a, *y = b;

	if (x->line != y->line)
		return x->line < y->line ? -1 : 1;
	return x->seq < y->seq ? -1 : x->seq > y->seq;
}

static void
set_defaults(struct conf *c, const char *name)
{
	const char *slash = strrchr(name, '/');

	c->path = xstrdup(name);
	if (slash == NULL)
		c->dir = xstrdup(".");
	else if (slash == name)
		c->dir = xstrdup("/");
	else
		c->dir = xstrndup(name, (size_t)(slash - name));

	c->daemon.timezone = xstrdup("Asia/Ho_Chi_Minh");
	c->daemon.state = xstrdup("/var/lib/cutoffd/state.db");
	c->daemon.listen = xstrdup("127.0.0.1:8470");
	c->daemon.workdays = 0x3e;   /* mon-fri */
	c->daemon.horizon = 400 * 86400LL;
	c->daemon.history = 400 * 86400LL;
	c->daemon.templates = resolve(c, "templates");
	c->daemon.datadir = xstrdup(getenv("CUTOFFD_DATADIR") != NULL &&
				    getenv("CUTOFFD_DATADIR")[0] != '\0' ?
				    getenv("CUTOFFD_DATADIR") : CUTOFFD_DATADIR);
	c->daemon.lang = xstrdup("vi");
	c->daemon.since_day = INT64_MIN;
	c->daemon.max_connections = 512;
	c->daemon.max_connections_per_ip = 256;

	c->mail.transport = TRANSPORT_SMTP;
	c->mail.url = xstrdup("smtp://127.0.0.1:25");
	c->mail.starttls = STARTTLS_TRY;
	c->mail.tls_verify = true;
	c->mail.maildir = xstrdup("/var/lib/cutoffd/mail");
	c->mail.parallel = 8;
	c->mail.retry_min = 5 * 60;
	c->mail.retry_max = 6 * 3600;
	c->mail.give_up = 3 * 86400;
	c->mail.timeout = 5 * 60;
	c->imap.starttls = STARTTLS_REQUIRED;
	c->imap.tls_verify = true;
	c->imap.poll = 5 * 60;

	c->webhook.timeout = 10;
	c->webhook.format = HOOK_STANDARD;
}

/* No holidays key: the file beside the configuration (an admin's copy in
 * /etc/cutoffd), else the installed one, else none. */
static char *
default_holidays(const struct conf *c)
{
	char *path = resolve(c, HOLIDAYS_FILE);

	if (access(path, F_OK) == 0)
		return path;
	free(path);
	path = xasprintf("%s/%s", c->daemon.datadir, HOLIDAYS_FILE);
	if (access(path, F_OK) == 0)
		return path;
	free(path);
	return NULL;
}

static void
free_aux(struct secinfo *a, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++) {
		free(a[i].policy);
		free(a[i].units);
	}
	free(a);
}

struct conf *
conf_parse(const char *name, const char *text, size_t len, unsigned flags,
	   struct diag *d)
{
	struct pctx p;
	struct conf *c;
	size_t i, nd0 = d != NULL ? d->n : 0;
	bool failed, hol_set;
	int r, tmpl_line;

	memset(&p, 0, sizeof p);
	c = xcalloc(1, sizeof *c);
	set_defaults(c, name);
	p.name = name;
	p.text = text;
	p.len = len;
	p.flags = flags;
	p.c = c;
	buf_init(&p.pval);

	r = ini_parse_stream(reader, &p, handler, &p);
	flush(&p);
	hol_set = p.single[S_DAEMON].kl[KD_HOLIDAYS] != 0;
	tmpl_line = p.single[S_DAEMON].kl[KD_TEMPLATES];
	if (r == -2) {
		err(&p, 0, "out of memory while parsing");
	} else if (r > 0) {
		/* inih saw a syntax error; we should have too */
		for (i = 0; i < p.nerr && p.errs[i].line != r; i++)
			;
		if (i == p.nerr)
			err(&p, r, "syntax error");
	}
	validate(&p);

	if (p.nerr > 0)
		qsort(p.errs, p.nerr, sizeof *p.errs, perr_cmp);
	for (i = 0; i < p.nerr; i++) {
		diag_add(d, name, p.errs[i].line, "%s", p.errs[i].msg);
		free(p.errs[i].msg);
	}
	if (p.dropped > 0)
		diag_add(d, name, 0, "%zu more errors not shown", p.dropped);
	failed = p.nerr > 0;
	free(p.errs);
	free_aux(p.paux, c->npolicies);
	free_aux(p.caux, c->ncycles);
	free_aux(p.uaux, c->nunits);
	free_aux(p.aaux, c->nadmins);
	free_aux(p.gaux, c->ngroupdefs);
	buf_free(&p.pval);

	if (!(flags & CONF_NO_FILES)) {
		size_t before = d != NULL ? d->n : 0;
		char *tdirs[2];

		if (!hol_set)
			c->daemon.holidays = default_holidays(c);
		if (c->daemon.holidays != NULL &&
		    holidays_load(c->daemon.holidays, &c->hol, d) < 0) {
			failed = true;
			if (d != NULL && d->n == before)
				diag_add(d, name, 0, "cannot load holidays "
					 "from %s", c->daemon.holidays);
		}
		before = d != NULL ? d->n : 0;
		tdirs[0] = c->daemon.templates;
		tdirs[1] = xasprintf("%s/templates", c->daemon.datadir);
		c->tmpl = tmpl_load_dirs((const char *const *)tdirs, 2,
					 c->daemon.lang, name, tmpl_line, d);
		if (c->tmpl == NULL) {
			failed = true;
			if (d != NULL && d->n == before)
				diag_add(d, name, 0, "cannot load templates "
					 "from %s", c->daemon.templates);
		}
		free(tdirs[1]);
	}
	if (failed || (d != NULL && d->n > nd0)) {
		conf_free(c);
		return NULL;
	}
	/* usable as loaded when since is in the file; else the state
	 * store's default comes with conf_apply_state */
	if (c->daemon.since_given)
		conf_apply_state(c, c->daemon.since_day, c->daemon.since_day,
				 NULL, 0);
	return c;
}

struct conf *
conf_load(const char *path, unsigned flags, struct diag *d)
{
	struct conf *c;
	char *text;
	size_t len;

	if (read_file(path, CONF_MAX_BYTES, &text, &len) < 0) {
		diag_add(d, path, 0, "cannot read: %s", errno == EFBIG ?
			 "larger than 32 MiB" : strerror(errno));
		return NULL;
	}
	c = conf_parse(path, text, len, flags, d);
	free(text);
	return c;
}

void
conf_free(struct conf *c)
{
	size_t i;

	if (c == NULL)
		return;
	free(c->path);
	free(c->dir);
	free(c->daemon.timezone);
	free(c->daemon.state);
	free(c->daemon.listen);
	free(c->daemon.public_url);
	free(c->daemon.holidays);
	free(c->daemon.admin_token_file);
	free(c->daemon.admin_token);
	free(c->daemon.calendar_token);
	free(c->daemon.metrics_allow);
	free(c->daemon.templates);
	free(c->daemon.datadir);
	free(c->daemon.lang);
	free(c->imap.url);
	free(c->imap.user);
	free(c->imap.password_file);
	free(c->imap.password);
	free(c->mail.url);
	free(c->mail.user);
	free(c->mail.password_file);
	free(c->mail.password);
	free(c->mail.from);
	free(c->mail.maildir);
	free(c->webhook.secret_file);
	free(c->webhook.secret);
	free(c->secretariat.name);
	free(c->secretariat.email);
	free(c->secretariat.chief);
	for (i = 0; i < c->npolicies; i++) {
		free(c->policies[i].id);
		free(c->policies[i].remind);
		free(c->policies[i].escalate);
	}
	free(c->policies);
	for (i = 0; i < c->nadmins; i++) {
		free(c->admins[i].id);
		free(c->admins[i].name);
		free(c->admins[i].token_file);
		free(c->admins[i].token);
	}
	free(c->admins);
	for (i = 0; i < c->ngroupdefs; i++) {
		free(c->groupdefs[i].id);
		free(c->groupdefs[i].name);
	}
	free(c->groupdefs);
	for (i = 0; i < c->ncycles; i++) {
		free(c->cycles[i].id);
		free(c->cycles[i].title);
		free(c->cycles[i].ref);
		free(c->cycles[i].label_text);
		free(c->cycles[i].yearly);
		free(c->cycles[i].once);
		free(c->cycles[i].rrule);
		free(c->cycles[i].units);
	}
	free(c->cycles);
	for (i = 0; i < c->nunits; i++) {
		free(c->units[i].id);
		free(c->units[i].name);
		free_list(c->units[i].email, c->units[i].nemail);
		free(c->units[i].head);
		free(c->units[i].webhook);
		free_list(c->units[i].groups, c->units[i].ngroups);
	}
	free(c->units);
	free_list(c->groups, c->ngroups);
	free(c->unit_index);
	free(c->cycle_index);
	for (i = 0; i < c->naliases; i++) {
		free(c->aliases[i].from);
		free(c->aliases[i].to);
	}
	free(c->aliases);
	tz_free(c->tz);
	holidays_free(&c->hol);
	tmpl_free(c->tmpl);
	free(c);
}

const struct unit *
conf_unit(const struct conf *c, const char *id)
{
	ssize_t pos;

	if (c == NULL || id == NULL)
		return NULL;
	pos = unit_pos(c, id);
	return pos < 0 ? NULL : &c->units[pos];
}

const struct cycle *
conf_cycle(const struct conf *c, const char *id)
{
	ssize_t pos = -1;
	size_t i;

	if (c == NULL || id == NULL)
		return NULL;
	if (c->cycle_index != NULL) {
		pos = find_sorted(c->cycle_index, c->ncycles, c->cycles,
				  sizeof *c->cycles, id);
	} else {
		for (i = 0; i < c->ncycles && pos < 0; i++)
			if (strcmp(c->cycles[i].id, id) == 0)
				pos = (ssize_t)i;
	}
	return pos < 0 ? NULL : &c->cycles[pos];
}

bool
conf_workday(const struct conf *c, int64_t day)
{
	int wd = (int)(((day + 4) % 7 + 7) % 7);   /* 1970-01-01: Thursday */

	if (holidays_workday(&c->hol, day))  /* a Saturday worked in exchange */
		return true;
	if (!(c->daemon.workdays & (1u << wd)))
		return false;
	return !holidays_has(&c->hol, day);
}

bool
conf_cycle_has(const struct cycle *cy, size_t unit_index)
{
	size_t lo = 0, hi = cy->nunits;

	/* cy->units is sorted: 10,000 units make a linear walk costly */
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;

		if (cy->units[mid] < unit_index)
			lo = mid + 1;
		else if (cy->units[mid] > unit_index)
			hi = mid;
		else
			return true;
	}
	return false;
}

char *
conf_summary(const struct conf *c)
{
	return xasprintf("%s: %zu unit%s, %zu cycle%s, %zu polic%s, "
			 "%zu group%s, %zu holiday%s, timezone %s",
			 c->path, c->nunits, c->nunits == 1 ? "" : "s",
			 c->ncycles, c->ncycles == 1 ? "" : "s",
			 c->npolicies, c->npolicies == 1 ? "y" : "ies",
			 c->ngroups, c->ngroups == 1 ? "" : "s",
			 c->hol.n, c->hol.n == 1 ? "" : "s",
			 c->daemon.timezone);
}

/* Beside the state store, as the admin token: the directory the daemon
 * may write and cutoffctl may read. */
char *
conf_reload_status_path(const struct conf *c)
{
	const char *slash = strrchr(c->daemon.state, '/');

	if (slash == NULL)
		return xstrdup("reload.status");
	return xasprintf("%.*s/reload.status", (int)(slash - c->daemon.state),
			 c->daemon.state);
}

const char *
audience_name(enum audience a)
{
	switch (a) {
	case AUD_UNIT: return "unit";
	case AUD_HEAD: return "head";
	case AUD_SECRETARIAT: return "secretariat";
	case AUD_CHIEF: return "chief";
	}
	return "?";
}

const char *
channel_name(enum channel c)
{
	switch (c) {
	case CH_EMAIL: return "email";
	case CH_WEBHOOK: return "webhook";
	}
	return "?";
}

static int
alias_qcmp(const void *a, const void *b)
{
	return strcmp(((const struct occ_alias *)a)->from,
		      ((const struct occ_alias *)b)->from);
}

void
conf_apply_state(struct conf *c, int64_t since_day, int64_t today_day,
		 const struct occ_alias *aliases, size_t naliases)
{
	int64_t anchor;
	size_t i;

	if (!c->daemon.since_given)
		c->daemon.since_day = since_day;
	/* A rule whose dates don't depend on its start counts from since.
	 * The anchor is 1 January of the year before, so that `previous`
	 * finds the date before the first one chased; the dates are the
	 * same from any anchor. */
	anchor = c->daemon.since_day != INT64_MIN ? c->daemon.since_day
						  : today_day;
	for (i = 0; i < c->ncycles; i++) {
		struct cycle *cy = &c->cycles[i];

		if (cy->rrule != NULL && !cy->start_given)
			cy->start = (struct ymd){ civil_from_days(anchor).y - 1,
						  1, 1 };
	}
	for (i = 0; i < c->naliases; i++) {
		free(c->aliases[i].from);
		free(c->aliases[i].to);
	}
	free(c->aliases);
	c->aliases = NULL;
	c->naliases = 0;
	if (naliases == 0)
		return;
	c->aliases = xcalloc(naliases, sizeof(*c->aliases));
	for (i = 0; i < naliases; i++) {
		c->aliases[i].from = xstrdup(aliases[i].from);
		c->aliases[i].to = xstrdup(aliases[i].to);
	}
	c->naliases = naliases;
	qsort(c->aliases, naliases, sizeof(*c->aliases), alias_qcmp);
}

const char *
conf_group_name(const struct conf *c, const char *id)
{
	for (size_t i = 0; id != NULL && i < c->ngroupdefs; i++)
		if (strcmp(c->groupdefs[i].id, id) == 0)
			return c->groupdefs[i].name;
	return NULL;
}
