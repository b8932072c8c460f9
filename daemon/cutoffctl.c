/*
 * cutoffctl.c - the admin's command line: check, plan, status, received,
 * undo, confirm, reject, extend, history, feed-url.  It shares conf, sched and db with the daemon and talks
 * to the state store directly, so it works whether or not the daemon runs;
 * a running daemon notices the store's changes at once (see main.c).
 *
 * Exit status: 0 success, 1 user error, 2 state store unreachable.
 */
#include <errno.h>
#include <getopt.h>
#include <grp.h>
#include <pwd.h>
#include <signal.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "cutoffd.h"

#define DEFAULT_CONF "/etc/cutoffd/cutoffd.conf"
#define EXIT_USER 1
#define EXIT_STATE 2

static const char *conf_path = DEFAULT_CONF;
static const char *now_arg;

static void
usage(FILE *f)
{
	fprintf(f,
		"usage: cutoffctl [-c FILE] [--now TIME] COMMAND [ARGS]\n"
		"\n"
		"Commands:\n"
		"  check                          validate the configuration\n"
		"  plan [--from DATE] [--to DATE] [--unit ID]\n"
		"                                 every notice that would be sent\n"
		"  status [OCCURRENCE]            who submitted, who is missing\n"
		"  status --csv [OCCURRENCE]      the same as /status.csv\n"
		"  received UNIT OCCURRENCE [--at TIME] [--note TEXT] [--nil]\n"
		"                                 record that a report arrived (--nil:\n"
		"                                 nothing to report, \"không phát sinh\")\n"
		"  undo UNIT OCCURRENCE           remove that record\n"
		"  confirm UNIT OCCURRENCE        record the proposed report (mailbox,\n"
		"                                 link) with its source and time\n"
		"  reject UNIT OCCURRENCE [--note TEXT]\n"
		"                                 drop the proposal\n"
		"  extend OCCURRENCE DATE [--unit UNIT] [--note TEXT]\n"
		"                                 move the deadline, for every unit or one\n"
		"  extend OCCURRENCE --cancel [--unit UNIT]\n"
		"                                 back to the planned deadline\n"
		"  history [--unit UNIT] [--occurrence OCCURRENCE]\n"
		"                                 every recorded event, who and from where\n"
		"  feed-url UNIT                  the unit's private calendar URL\n"
		"  admin-token                    the API's admin token\n"
		"  reload [PID]                   reload the daemon (default\n"
		"                                 $MAINPID), wait for the outcome\n"
		"\n"
		"  -c, --config FILE  configuration (default " DEFAULT_CONF ")\n"
		"      --now TIME     act as if it were TIME (local ISO 8601)\n"
		"  -h, --help         this text\n"
		"      --version      print the version\n"
		"\n"
		"DATE is YYYY-MM-DD or YYYY-MM-DDTHH:MM, local time. OCCURRENCE is\n"
		"CYCLE/YYYY-MM-DD (the nominal due date). Exit status: 0 ok, 1 user\n"
		"error, 2 state store unreachable. See cutoffctl(8).\n");
}

static void PRINTF_LIKE(1, 2)
user_error(const char *fmt, ...)
{
	va_list ap;

	fputs("cutoffctl: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
}

static struct conf *
load_conf(void)
{
	struct conf *c;
	struct diag d;

	diag_init(&d);
	c = conf_load(conf_path, 0, &d);
	if (c == NULL) {
		diag_print(&d, stderr);
		if (d.n == 0)
			fprintf(stderr, "%s: cannot load\n", conf_path);
	}
	diag_free(&d);
	return c;
}

/* Never creates the store: only the daemon does (a store made here would
 * be one the daemon does not use when the paths differ, and the two would
 * disagree silently).  Missing, empty or foreign: exit 2 with the path. */
static struct db *
open_state(const struct conf *c)
{
	struct db *db;
	char *err = NULL;

	db = db_open(c->daemon.state, false, &err);
	if (db == NULL) {
		fprintf(stderr, "cutoffctl: %s\n", err);
		free(err);
	}
	return db;
}

/* "YYYY-MM-DD" or a local ISO time.  A bare date is the start of that day,
 * or its end when `end` (so `--to 2024-03-31` includes the 31st). */
static int
parse_when(const struct conf *c, const char *s, bool end, tstamp *out)
{
	struct ymd d;

	if (parse_ymd(s, &d) == 0) {
		*out = tz_mktime(c->tz, d, end ? 1440 : 0);
		return 0;
	}
	return tz_parse_local(c->tz, s, out);
}

/* A reported time may run this far ahead of ours (clocks differ); the
 * API allows the same. */
#define FUTURE_SLACK 3600


/* Who runs us, for the history: the user behind sudo, else our own. */
static const char *
actor_name(void)
{
	static char name[LEDGER_ACTOR_MAX + 1];
	const char *sudo = getenv("SUDO_USER");
	struct passwd *pw;

	if (name[0] != '\0')
		return name;
	if (getuid() == 0 && sudo != NULL && *sudo != '\0' &&
	    note_problem(sudo, strlen(sudo)) == NULL)
		snprintf(name, sizeof(name), "%s", sudo);
	else if ((pw = getpwuid(getuid())) != NULL && pw->pw_name != NULL)
		snprintf(name, sizeof(name), "%s", pw->pw_name);
	else
		snprintf(name, sizeof(name), "uid %u", (unsigned)getuid());
	return name;
}

static tstamp
now_of(const struct conf *c)
{
	tstamp t;

	if (now_arg != NULL && tz_parse_local(c->tz, now_arg, &t) == 0)
		return t;
	return (tstamp)time(NULL);
}

/* The configuration's state-dependent parts, as the daemon sets them: the
 * default since (the store's first start) and the ids reloads moved.
 * Without a store nothing has started: no since. */
static void
apply_state(struct conf *c)
{
	struct db *db = NULL;
	char *err = NULL;

	if (access(c->daemon.state, F_OK) == 0) {
		db = db_open(c->daemon.state, false, &err);
		free(err);
	}
	regime_apply_state(db, c, now_of(c), false);
	db_close(db);
}

static int
cmd_check(struct conf *c)
{
	char *s = conf_summary(c), *err = NULL;
	struct db *db = NULL;

	printf("%s\n", s);
	free(s);
	holidays_warn(c, (tstamp)time(NULL), stderr);
	/* as cutoffd --check: what a reload of this file would move */
	if (access(c->daemon.state, F_OK) == 0)
		db = db_open(c->daemon.state, false, &err);
	free(err);
	if (db != NULL)
		regime_moves(db, c, NULL, now_of(c), false, stdout);
	db_close(db);
	return 0;
}

struct plan_ctx {
	const struct conf *conf;
	struct db *db;
};

static bool
plan_submitted(void *ctx, const char *occ, const char *unit)
{
	struct plan_ctx *p = ctx;
	struct submission s;

	if (p->db == NULL || db_sub_get(p->db, occ, unit, &s) != 0)
		return false;
	submission_clear(&s);
	return true;
}

static int
plan_row(void *ctx, const struct plan_row *r)
{
	struct plan_ctx *p = ctx;
	char when[32];

	tz_format_iso(p->conf->tz, r->at, when);
	printf("%s\t%s\t%s\t%s\t%s\t%s\n", when, r->occ->id, r->unit->id,
	       r->step->name, channel_name(r->ch), r->recipients);
	return 0;
}

static int
cmd_plan(struct conf *c, int argc, char **argv)
{
	static const struct option opts[] = {
		{"from", required_argument, NULL, 'f'},
		{"to", required_argument, NULL, 't'},
		{"unit", required_argument, NULL, 'u'},
		{NULL, 0, NULL, 0},
	};
	struct plan_ctx p = {c, NULL};
	struct extension *ext = NULL;
	size_t next = 0;
	const char *unit = NULL;
	tstamp from = now_of(c), to = 0;
	bool have_to = false;
	int o, rc;

	optind = 0;  /* 0: GNU getopt re-initialises (drops the "+" of main) */
	while ((o = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (o) {
		case 'f':
			if (parse_when(c, optarg, false, &from) < 0) {
				user_error("--from %s: expected YYYY-MM-DD", optarg);
				return EXIT_USER;
			}
			break;
		case 't':
			if (parse_when(c, optarg, true, &to) < 0) {
				user_error("--to %s: expected YYYY-MM-DD", optarg);
				return EXIT_USER;
			}
			have_to = true;
			break;
		case 'u':
			unit = optarg;
			break;
		default:
			return EXIT_USER;
		}
	}
	if (optind != argc) {
		user_error("plan: unexpected argument %s", argv[optind]);
		return EXIT_USER;
	}
	if (unit != NULL && conf_unit(c, unit) == NULL) {
		user_error("no unit %s in %s", unit, c->path);
		return EXIT_USER;
	}
	if (!have_to)
		to = from + c->daemon.horizon;
	if (to < from) {
		user_error("--to is before --from");
		return EXIT_USER;
	}
	/* A plan needs no daemon; without a state store nothing is recorded
	 * yet, so every notice is still to come. */
	if (access(c->daemon.state, F_OK) == 0) {
		p.db = open_state(c);
		if (p.db == NULL)
			return EXIT_STATE;
	}
	if (p.db != NULL && ledger_extensions(p.db, NULL, &ext, &next) < 0) {
		db_close(p.db);
		return EXIT_STATE;
	}
	rc = sched_plan_ext(c, from, to, unit, ext, next, plan_submitted, &p,
			    plan_row, &p);
	extensions_free(ext, next);
	db_close(p.db);
	if (rc < 0) {
		user_error("plan: cannot expand the schedule");
		return EXIT_USER;
	}
	return 0;
}

static int
cmd_status(struct conf *c, int argc, char **argv)
{
	struct db *db;
	const char *occ = NULL;
	bool csv = false;
	int rc;

	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--csv") == 0 && !csv) {
			csv = true;
		} else if (argv[i][0] != '-' && occ == NULL) {
			occ = argv[i];
		} else {
			usage(stderr);
			return EXIT_USER;
		}
	}
	db = open_state(c);
	if (db == NULL)
		return EXIT_STATE;
	rc = csv ? status_print_csv(c, db, now_of(c), occ, stdout)
		 : status_print(c, db, now_of(c), occ, stdout);
	db_close(db);
	if (rc == 1) {
		user_error("no occurrence %s", occ);
		return EXIT_USER;
	}
	return rc < 0 ? EXIT_STATE : 0;
}

/* Checks UNIT and OCCURRENCE and that the unit reports in that cycle. */
static int
check_pair(const struct conf *c, const char *unit, const char *occ_id,
	   struct occ *occ)
{
	const struct unit *u = conf_unit(c, unit);

	if (u == NULL) {
		user_error("no unit %s in %s", unit, c->path);
		return -1;
	}
	if (sched_occurrence(c, occ_id, occ) < 0) {
		user_error("no occurrence %s (expected CYCLE/YYYY-MM-DD with a "
			   "due date of that cycle)", occ_id);
		return -1;
	}
	if (conf_cycle_has(occ->cycle, (size_t)(u - c->units)))
		return 0;
	user_error("unit %s does not report in cycle %s", unit,
		   occ->cycle->id);
	return -1;
}

static int
cmd_received(struct conf *c, int argc, char **argv)
{
	static const struct option opts[] = {
		{"at", required_argument, NULL, 'a'},
		{"note", required_argument, NULL, 'n'},
		{"nil", no_argument, NULL, 'z'},
		{NULL, 0, NULL, 0},
	};
	const char *note = NULL;
	bool nil = false;
	struct submission s;
	struct occ occ;
	struct db *db;
	tstamp now = now_of(c), at = now;
	char when[32];
	int o, rc;

	optind = 0;  /* 0: GNU getopt re-initialises (drops the "+" of main) */
	while ((o = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (o) {
		case 'a':
			if (parse_when(c, optarg, false, &at) < 0) {
				user_error("--at %s: expected YYYY-MM-DDTHH:MM", optarg);
				return EXIT_USER;
			}
			break;
		case 'n':
			note = optarg;
			break;
		case 'z':
			nil = true;
			break;
		default:
			return EXIT_USER;
		}
	}
	if (argc - optind != 2) {
		usage(stderr);
		return EXIT_USER;
	}
	if (note != NULL && note_problem(note, strlen(note)) != NULL) {
		user_error("--note: %s", note_problem(note, strlen(note)));
		return EXIT_USER;
	}
	if (at > now + FUTURE_SLACK) {
		tz_format_iso(c->tz, at, when);
		user_error("--at %s is in the future", when);
		return EXIT_USER;
	}
	if (check_pair(c, argv[optind], argv[optind + 1], &occ) < 0)
		return EXIT_USER;
	db = open_state(c);
	if (db == NULL)
		return EXIT_STATE;
	rc = ledger_receive(db, occ.id, argv[optind], at, nil, "cli",
			    actor_name(), note, now);
	/* late against the unit's own deadline */
	if (rc == 0 && ledger_effective(c, db, &occ, argv[optind]) < 0)
		rc = -1;
	if (rc == 1 && db_sub_get(db, occ.id, argv[optind], &s) == 0) {
		tz_format_iso(c->tz, s.at, when);
		user_error("%s already recorded for %s (at %s)", argv[optind],
			   occ.id, when);
		submission_clear(&s);
	}
	db_close(db);
	if (rc < 0)
		return EXIT_STATE;
	if (rc == 1)
		return EXIT_USER;
	tz_format_iso(c->tz, at, when);
	printf("recorded %s %s at %s%s%s\n", argv[optind], occ.id, when,
	       nil ? " (nil: nothing to report)" : "",
	       at > occ.due_at ? " (late)" : "");
	return 0;
}

static int
cmd_undo(struct conf *c, int argc, char **argv)
{
	struct occ occ;
	struct db *db;
	int rc;

	if (argc != 3) {
		usage(stderr);
		return EXIT_USER;
	}
	if (check_pair(c, argv[1], argv[2], &occ) < 0)
		return EXIT_USER;
	db = open_state(c);
	if (db == NULL)
		return EXIT_STATE;
	rc = ledger_undo(db, occ.id, argv[1], "cli", actor_name(), now_of(c));
	db_close(db);
	if (rc < 0)
		return EXIT_STATE;
	if (rc == 1) {
		user_error("nothing recorded for %s %s", argv[1], occ.id);
		return EXIT_USER;
	}
	printf("removed %s %s\n", argv[1], occ.id);
	return 0;
}

/* confirm / reject: a proposal (ledger_propose) settled by a person */
static int
cmd_settle(struct conf *c, int argc, char **argv, bool confirm)
{
	static const struct option opts[] = {
		{"note", required_argument, NULL, 'n'},
		{NULL, 0, NULL, 0},
	};
	const char *note = NULL;
	struct ledger_proposal p;
	struct occ occ;
	struct db *db;
	char when[32];
	int o, rc;

	optind = 0;
	while ((o = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		if (o != 'n' || confirm)
			return EXIT_USER;
		note = optarg;
	}
	if (argc - optind != 2) {
		usage(stderr);
		return EXIT_USER;
	}
	if (note != NULL && note_problem(note, strlen(note)) != NULL) {
		user_error("--note: %s", note_problem(note, strlen(note)));
		return EXIT_USER;
	}
	if (check_pair(c, argv[optind], argv[optind + 1], &occ) < 0)
		return EXIT_USER;
	db = open_state(c);
	if (db == NULL)
		return EXIT_STATE;
	rc = ledger_proposal_get(db, occ.id, argv[optind], &p);
	if (rc == 0)
		rc = confirm ? ledger_confirm(db, occ.id, argv[optind], "cli",
					      actor_name(), now_of(c))
			     : ledger_reject(db, occ.id, argv[optind], "cli",
					     actor_name(), note, now_of(c));
	db_close(db);
	if (rc < 0) {
		ledger_proposal_clear(&p);
		return EXIT_STATE;
	}
	if (rc == 1) {
		user_error("no open proposal for %s %s", argv[optind], occ.id);
		return EXIT_USER;
	}
	tz_format_iso(c->tz, p.at, when);
	if (confirm)
		printf("confirmed %s %s at %s (source %s)%s\n", argv[optind],
		       occ.id, when, p.source,
		       p.at > occ.due_at ? " (late)" : "");
	else
		printf("rejected the proposal of %s %s (source %s)\n",
		       argv[optind], occ.id, p.source);
	ledger_proposal_clear(&p);
	return 0;
}

static int
cmd_extend(struct conf *c, int argc, char **argv)
{
	static const struct option opts[] = {
		{"unit", required_argument, NULL, 'u'},
		{"note", required_argument, NULL, 'n'},
		{"cancel", no_argument, NULL, 'x'},
		{NULL, 0, NULL, 0},
	};
	const char *unit = NULL, *note = NULL, *occ_id;
	bool cancel = false;
	struct occ occ, plan;
	struct ymd due = { 0, 0, 0 };
	struct db *db;
	char d1[16], d2[16];
	int o, rc, minute = -1;

	optind = 0;
	while ((o = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (o) {
		case 'u': unit = optarg; break;
		case 'n': note = optarg; break;
		case 'x': cancel = true; break;
		default: return EXIT_USER;
		}
	}
	if (argc - optind != (cancel ? 1 : 2) || (cancel && note != NULL)) {
		usage(stderr);
		return EXIT_USER;
	}
	occ_id = argv[optind];
	if (unit != NULL) {
		if (check_pair(c, unit, occ_id, &occ) < 0)
			return EXIT_USER;
	} else if (sched_occurrence(c, occ_id, &occ) < 0) {
		user_error("no occurrence %s (expected CYCLE/YYYY-MM-DD with a "
			   "due date of that cycle)", occ_id);
		return EXIT_USER;
	}
	if (note != NULL && note_problem(note, strlen(note)) != NULL) {
		user_error("--note: %s", note_problem(note, strlen(note)));
		return EXIT_USER;
	}
	plan = occ;
	if (!cancel) {
		const char *why;

		if (ledger_parse_due(argv[optind + 1], &due, &minute) < 0) {
			user_error("%s: expected YYYY-MM-DD or YYYY-MM-DDTHH:MM",
				   argv[optind + 1]);
			return EXIT_USER;
		}
		why = ledger_extension_problem(&plan, due);
		if (why != NULL) {
			ymd_format_vn(plan.due, d1);
			user_error("%s %s (%s)", argv[optind + 1], why, d1);
			return EXIT_USER;
		}
	}
	db = open_state(c);
	if (db == NULL)
		return EXIT_STATE;
	if (cancel)
		rc = ledger_unextend(db, occ.id, unit, "cli", actor_name(),
				     now_of(c));
	else
		rc = ledger_extend(db, occ.id, unit, due, minute, "cli",
				   actor_name(), note, now_of(c));
	if (rc == 0 && ledger_effective(c, db, &occ, unit) < 0)
		rc = -1;
	db_close(db);
	if (rc < 0)
		return EXIT_STATE;
	if (rc == 1) {
		user_error("no extension of %s%s%s to cancel", occ.id,
			   unit != NULL ? " for " : "", unit != NULL ? unit : "");
		return EXIT_USER;
	}
	ymd_format_vn(occ.due, d2);
	if (cancel)
		printf("cancelled the extension of %s (%s); due %s\n", occ.id,
		       unit != NULL ? unit : "every unit", d2);
	else
		printf("extended %s (%s) until %s\n", occ.id,
		       unit != NULL ? unit : "every unit", d2);
	return 0;
}

struct hist_ctx {
	const struct conf *conf;
	const char *unit;        /* --unit, or NULL */
	struct buf b;
};

static int
hist_row(void *ctx, const struct ledger_event *e)
{
	struct hist_ctx *h = ctx;
	const struct unit *u;
	struct occ o;
	char t[20];

	/* a unit's history: occurrence-wide extensions of its cycles only */
	if (h->unit != NULL && e->unit[0] == '\0' &&
	    (u = conf_unit(h->conf, h->unit)) != NULL &&
	    sched_occurrence(h->conf, e->occurrence, &o) == 0 &&
	    !conf_cycle_has(o.cycle, (size_t)(u - h->conf->units)))
		return 0;

	tz_format_iso(h->conf->tz, e->recorded, t);
	buf_printf(&h->b, "%s\t", t);
	buf_put_escaped(&h->b, e->occurrence, 200);
	buf_putc(&h->b, '\t');
	buf_put_escaped(&h->b, e->unit[0] ? e->unit : "*", 200);
	buf_printf(&h->b, "\t%s\t", e->action);
	buf_put_escaped(&h->b, e->source[0] ? e->source : "-", 50);
	buf_putc(&h->b, '\t');
	buf_put_escaped(&h->b, e->actor[0] ? e->actor : "-", 100);
	buf_putc(&h->b, '\t');
	if (strcmp(e->action, "extend") == 0) {
		if (e->detail != NULL && strcmp(e->detail, "cancelled") == 0)
			buf_puts(&h->b, "cancelled");
		else {
			buf_puts(&h->b, "until ");
			buf_put_escaped(&h->b, e->detail ? e->detail : "?", 40);
		}
	} else if (e->at != 0) {
		tz_format_iso(h->conf->tz, e->at, t);
		buf_printf(&h->b, "at %s", t);
		if (e->detail != NULL && strcmp(e->detail, "nil") == 0)
			buf_puts(&h->b, " (nil)");
	} else {
		buf_putc(&h->b, '-');
	}
	buf_putc(&h->b, '\t');
	/* notes are typed by people: one line, escaped, on the terminal */
	buf_put_escaped(&h->b, e->note ? e->note : "", DB_NOTE_MAX);
	buf_putc(&h->b, '\n');
	if (h->b.len > 1 << 16) {
		fputs(buf_str(&h->b), stdout);
		buf_reset(&h->b);
	}
	return 0;
}

static int
cmd_history(struct conf *c, int argc, char **argv)
{
	static const struct option opts[] = {
		{"unit", required_argument, NULL, 'u'},
		{"occurrence", required_argument, NULL, 'o'},
		{NULL, 0, NULL, 0},
	};
	const char *unit = NULL, *occ = NULL;
	struct hist_ctx h = { .conf = c };
	struct db *db;
	int o, rc;

	optind = 0;
	while ((o = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (o) {
		case 'u': unit = optarg; break;
		case 'o': occ = optarg; break;
		default: return EXIT_USER;
		}
	}
	if (optind != argc) {
		user_error("history: unexpected argument %s", argv[optind]);
		return EXIT_USER;
	}
	/* ids no longer in the configuration still have their history */
	if (unit != NULL && !valid_id(unit)) {
		user_error("--unit %s: not a unit id", unit);
		return EXIT_USER;
	}
	if (occ != NULL && (strlen(occ) >= OCC_ID_MAX ||
			    note_problem(occ, strlen(occ)) != NULL)) {
		user_error("--occurrence: not an occurrence id");
		return EXIT_USER;
	}
	db = open_state(c);
	if (db == NULL)
		return EXIT_STATE;
	h.unit = unit;
	buf_init(&h.b);
	rc = ledger_history(db, occ, unit, hist_row, &h);
	fputs(buf_str(&h.b), stdout);
	buf_free(&h.b);
	db_close(db);
	return rc < 0 ? EXIT_STATE : 0;
}

static int
cmd_feed_url(struct conf *c, int argc, char **argv)
{
	struct db *db;
	char *token = NULL;
	int rc;

	if (argc != 2) {
		usage(stderr);
		return EXIT_USER;
	}
	if (conf_unit(c, argv[1]) == NULL) {
		user_error("no unit %s in %s", argv[1], c->path);
		return EXIT_USER;
	}
	db = open_state(c);
	if (db == NULL)
		return EXIT_STATE;
	rc = db_unit_token(db, argv[1], &token);
	db_close(db);
	if (rc < 0)
		return EXIT_STATE;
	printf("%s/units/%s.ics?token=%s\n", c->daemon.public_url, argv[1],
	       token);
	free(token);
	return 0;
}

/* Run by root on the service's state (/var/lib/cutoffd, owned by user
 * cutoffd): become that owner before SQLite touches anything, or a
 * state.db, -wal or -shm created by root would lock the daemon out. */
static int
become_state_owner(const struct conf *c)
{
	const char *slash = strrchr(c->daemon.state, '/');
	char *dir;
	struct stat st;
	int r;

	if (geteuid() != 0)
		return 0;
	dir = slash == NULL ? xstrdup(".") : slash == c->daemon.state ?
		xstrdup("/") : xstrndup(c->daemon.state,
					(size_t)(slash - c->daemon.state));
	r = stat(dir, &st);
	free(dir);
	if (r < 0 || st.st_uid == 0)
		return 0;
	if (setgroups(0, NULL) < 0 || setgid(st.st_gid) < 0 ||
	    setuid(st.st_uid) < 0) {
		user_error("cannot become the owner (uid %u) of %s's directory: "
			   "%s", (unsigned)st.st_uid, c->daemon.state,
			   strerror(errno));
		return -1;
	}
	return 0;
}

/* "GEN PID RESULT" from the daemon's reload.status; -1 when absent/bad */
static int
read_reload_status(const char *path, unsigned *gen, long *pid, char *result)
{
	char *text;
	size_t len;
	int r;

	if (read_file(path, 256, &text, &len) < 0)
		return -1;
	r = sscanf(text, "%u %ld %15s", gen, pid, result);
	free(text);
	return r == 3 ? 0 : -1;
}

/* SIGHUP to the daemon, then wait until it reports this reload: ExecReload
 * returns only once the new configuration serves, and fails when the
 * daemon rejected it (its errors are in its log at priority err). */
static int
cmd_reload(struct conf *c, int argc, char **argv)
{
	const char *arg = argc == 2 ? argv[1] : getenv("MAINPID");
	char *path, *end, result[16];
	unsigned gen0 = 0, gen;
	long pid, p;
	bool had;
	int i;

	if (argc > 2 || arg == NULL || arg[0] == '\0') {
		user_error("reload: which daemon? give its PID (systemd sets "
			   "$MAINPID)");
		return EXIT_USER;
	}
	errno = 0;
	pid = strtol(arg, &end, 10);
	if (errno != 0 || *end != '\0' || pid <= 1) {
		user_error("reload: bad PID %s", arg);
		return EXIT_USER;
	}
	path = conf_reload_status_path(c);
	had = read_reload_status(path, &gen0, &p, result) == 0 && p == pid;
	if (kill((pid_t)pid, SIGHUP) < 0) {
		user_error("reload: cannot signal %ld: %s", pid, strerror(errno));
		free(path);
		return EXIT_STATE;
	}
	/* a reload takes milliseconds; 60 s covers a very large regime */
	for (i = 0; i < 1200; i++) {
		if (read_reload_status(path, &gen, &p, result) == 0 &&
		    p == pid && (!had || gen != gen0) &&
		    strcmp(result, "started") != 0) {
			free(path);
			if (strcmp(result, "ok") == 0) {
				printf("reloaded\n");
				return 0;
			}
			user_error("the daemon rejected the configuration and "
				   "keeps the previous one (its log names each "
				   "error)");
			return EXIT_USER;
		}
		usleep(50 * 1000);
	}
	user_error("reload: no answer from %ld in %s", pid, path);
	free(path);
	return EXIT_STATE;
}

/* The token the API and the page's forms need: admin_token_file's, or the
 * one the daemon made in its state directory on its first start. */
static int
cmd_admin_token(struct conf *c, int argc)
{
	if (argc != 1) {
		usage(stderr);
		return EXIT_USER;
	}
	if (c->daemon.admin_token == NULL) {
		user_error("no admin token yet: cutoffd creates %s on its "
			   "first start", c->daemon.admin_token_file);
		return EXIT_STATE;
	}
	printf("%s\n", c->daemon.admin_token);
	return 0;
}

int
main(int argc, char **argv)
{
	static const struct option opts[] = {
		{"config", required_argument, NULL, 'c'},
		{"now", required_argument, NULL, 'N'},
		{"help", no_argument, NULL, 'h'},
		{"version", no_argument, NULL, 'V'},
		{NULL, 0, NULL, 0},
	};
	struct conf *c;
	const char *cmd;
	int o, rc;

	/* "+": options after the command belong to the command */
	while ((o = getopt_long(argc, argv, "+c:h", opts, NULL)) != -1) {
		switch (o) {
		case 'c': conf_path = optarg; break;
		case 'N': now_arg = optarg; break;
		case 'h': usage(stdout); return 0;
		case 'V': printf("cutoffctl %s\n", CUTOFFD_VERSION); return 0;
		default: usage(stderr); return EXIT_USER;
		}
	}
	if (optind >= argc) {
		usage(stderr);
		return EXIT_USER;
	}
	log_init("cutoffctl", 0);
	cmd = argv[optind];
	argc -= optind;
	argv += optind;
	if (strcmp(cmd, "help") == 0) {
		usage(stdout);
		return 0;
	}
	if (strcmp(cmd, "check") != 0 && strcmp(cmd, "plan") != 0 &&
	    strcmp(cmd, "status") != 0 && strcmp(cmd, "received") != 0 &&
	    strcmp(cmd, "undo") != 0 && strcmp(cmd, "feed-url") != 0 &&
	    strcmp(cmd, "extend") != 0 && strcmp(cmd, "history") != 0 &&
	    strcmp(cmd, "admin-token") != 0 && strcmp(cmd, "reload") != 0 &&
	    strcmp(cmd, "confirm") != 0 && strcmp(cmd, "reject") != 0) {
		user_error("unknown command %s (see cutoffctl --help)", cmd);
		return EXIT_USER;
	}
	c = load_conf();
	if (c == NULL)
		return EXIT_USER;
	log_set_zone(c->daemon.timezone);   /* the library's log lines */
	if (become_state_owner(c) < 0) {
		conf_free(c);
		return EXIT_STATE;
	}
	if (now_arg != NULL) {
		tstamp t;

		if (tz_parse_local(c->tz, now_arg, &t) < 0) {
			user_error("--now %s: expected YYYY-MM-DDTHH:MM", now_arg);
			conf_free(c);
			return EXIT_USER;
		}
	}
	apply_state(c);
	if (strcmp(cmd, "check") == 0 && argc != 1) {
		user_error("check: unexpected argument %s", argv[1]);
		rc = EXIT_USER;
	} else if (strcmp(cmd, "check") == 0)
		rc = cmd_check(c);
	else if (strcmp(cmd, "plan") == 0)
		rc = cmd_plan(c, argc, argv);
	else if (strcmp(cmd, "status") == 0)
		rc = cmd_status(c, argc, argv);
	else if (strcmp(cmd, "received") == 0)
		rc = cmd_received(c, argc, argv);
	else if (strcmp(cmd, "undo") == 0)
		rc = cmd_undo(c, argc, argv);
	else if (strcmp(cmd, "extend") == 0)
		rc = cmd_extend(c, argc, argv);
	else if (strcmp(cmd, "confirm") == 0 || strcmp(cmd, "reject") == 0)
		rc = cmd_settle(c, argc, argv, cmd[1] == 'o');
	else if (strcmp(cmd, "history") == 0)
		rc = cmd_history(c, argc, argv);
	else if (strcmp(cmd, "admin-token") == 0)
		rc = cmd_admin_token(c, argc);
	else if (strcmp(cmd, "reload") == 0)
		rc = cmd_reload(c, argc, argv);
	else
		rc = cmd_feed_url(c, argc, argv);
	conf_free(c);
	log_set_zone(NULL);
	return rc;
}
