/*
 * main.c - cutoffd: arguments, start-up order, the event loop, reload and
 * teardown in reverse order.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <math.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include <ev.h>

#include "cutoffd.h"

#define DEFAULT_CONF "/etc/cutoffd/cutoffd.conf"
/* How long a stop waits for in-flight sends before leaving them queued. */
#define STOP_GRACE 10.0
/* Poll of the state store for changes made by cutoffctl, only when no
 * inotify watch can be had (see watch_start). */
#define STATE_POLL 2.0
/* A second look after the last change seen: a writer updates the WAL index
 * (shared memory, no inotify event) only after its WAL write and fsync. */
#define STATE_RECHECK 0.25

static struct app app;
static ev_signal sig_hup, sig_term, sig_int;
static ev_timer state_poll, state_recheck, stop_timer;
static ev_io state_io;
static int state_ifd = -1;
static char *state_base;      /* the store's file name in its directory */
static ev_timer watchdog;
static double stop_began;

static void
usage(FILE *f)
{
	fprintf(f,
		"usage: cutoffd [-c FILE] [--check] [--now TIME] [--speed N] [-v]\n"
		"\n"
		"Reporting-deadline scheduler: publishes iCalendar feeds of the\n"
		"reporting cycles in FILE and chases late units by mail and webhook.\n"
		"\n"
		"  -c, --config FILE  configuration (default " DEFAULT_CONF ")\n"
		"      --check        validate the configuration, print a summary (and\n"
		"                     the recorded occurrences a reload would move), exit\n"
		"      --now TIME     start the clock at TIME (local, 2024-03-06T07:59)\n"
		"      --speed N      run the clock N times faster than real time\n"
		"  -v, --verbose      log debug messages\n"
		"  -h, --help         this text\n"
		"      --version      print the version\n"
		"\n"
		"Signals: HUP reloads the configuration, TERM/INT stop cleanly.\n"
		"See cutoffd(8) and cutoffd.conf(5).\n");
}

void
app_changed(struct app *a)
{
	a->data_version = db_data_version(a->db);
	if (a->feeds != NULL)
		feeds_invalidate(a->feeds);
	views_invalidate(a->views);
	if (a->engine != NULL)
		engine_replan(a->engine);
	if (a->sender != NULL)
		sender_kick(a->sender);
}

/* Every unit's feed token, created in one transaction: otherwise the first
 * mail to each unit would create it with a commit (an fsync) of its own. */
static void
ensure_tokens(struct app *a)
{
	char *token;
	size_t i;

	if (db_begin(a->db) < 0)
		return;
	for (i = 0; i < a->conf->nunits; i++) {
		if (db_unit_token(a->db, a->conf->units[i].id, &token) < 0) {
			db_rollback(a->db);
			return;
		}
		free(token);
	}
	if (db_commit(a->db) < 0)
		db_rollback(a->db);
}

static void
log_diag(const struct diag *d)
{
	size_t i;

	for (i = 0; i < d->n; i++)
		log_err("%s", d->msg[i]);
}

static void
notify_status(struct app *a, const char *what)
{
	sd_notifyf("STATUS=%s: %zu units, %zu cycles", what, a->conf->nunits,
		   a->conf->ncycles);
}

/* STATEDIR/reload.status, "GENERATION PID RESULT": how `cutoffctl reload`
 * (the unit's ExecReload) learns that the reload it asked for is done and
 * whether it took, so that `systemctl reload` returns only then and fails
 * when the daemon kept its old configuration. */
static unsigned reload_gen;

static void
reload_status(struct app *a, const char *result)
{
	char *path = conf_reload_status_path(a->conf), *tmp, line[64];
	int fd, n, ok;

	tmp = xasprintf("%s.new", path);
	n = snprintf(line, sizeof line, "%u %ld %s\n", reload_gen,
		     (long)getpid(), result);
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	ok = fd >= 0 && write(fd, line, (size_t)n) == n;
	if (fd >= 0)
		close(fd);
	if (!ok || rename(tmp, path) < 0) {
		log_warn("cannot write %s: %s", path, strerror(errno));
		(void)unlink(tmp);
	}
	free(tmp);
	free(path);
}

static void
reload(struct app *a)
{
	struct timespec ts;
	struct conf *nc, *old;
	struct diag d;
	char *err = NULL;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	sd_notifyf("RELOADING=1\nMONOTONIC_USEC=%lld\nSTATUS=reloading",
		   (long long)ts.tv_sec * 1000000LL + ts.tv_nsec / 1000);
	log_info("reloading %s", a->conf_path);
	diag_init(&d);
	nc = conf_load(a->conf_path, 0, &d);
	if (nc == NULL) {
		log_diag(&d);
		metrics_reloaded(false, clock_now(&a->clk));
		log_err("configuration has errors, not reloading; still "
			"running on the previous one");
		diag_free(&d);
		sd_notify_msg("READY=1\nSTATUS=running (reload rejected: "
			      "configuration has errors)");
		reload_gen++;
		reload_status(a, "rejected");
		return;
	}
	diag_free(&d);
	if (strcmp(nc->daemon.state, a->conf->daemon.state) != 0)
		log_warn("state = %s: a new state store takes effect only "
			 "after a restart", nc->daemon.state);
	regime_apply_state(a->db, nc, clock_now(&a->clk), true);
	regime_moves(a->db, nc, a->conf, clock_now(&a->clk), true, NULL);
	regime_apply_state(a->db, nc, clock_now(&a->clk), true);
	old = a->conf;
	a->conf = nc;
	log_set_zone(nc->daemon.timezone);
	if (strcmp(nc->daemon.listen, old->daemon.listen) != 0 ||
	    nc->daemon.max_connections != old->daemon.max_connections) {
		/* Only a changed listen address costs a server restart;
		 * otherwise no request is dropped by a reload. */
		http_stop(a->http);
		a->http = http_start(a, &err);
		if (a->http == NULL) {
			log_err("listen = %s: %s; keeping the previous address",
				nc->daemon.listen, err);
			free(err);
			free(nc->daemon.listen);
			nc->daemon.listen = xstrdup(old->daemon.listen);
			a->http = http_start(a, &err);
			if (a->http == NULL)
				fatal("cannot listen again on %s: %s",
				      old->daemon.listen, err);
		}
	}
	ensure_tokens(a);
	feeds_reload(a, old);
	/* the poller restarts on the new [imap] (its position is stored) */
	imap_stop(a->imap);
	a->imap = imap_start(a);
	app_changed(a);
	conf_free(old);
	metrics_reloaded(true, clock_now(&a->clk));
	log_info("reloaded: %zu units, %zu cycles%s", nc->nunits, nc->ncycles,
		 nc->nunits == 0 || nc->ncycles == 0 ? " (nothing is chased)" :
		 "");
	holidays_warn(nc, clock_now(&a->clk), NULL);
	sd_notify_msg("READY=1");
	notify_status(a, "running");
	reload_gen++;
	reload_status(a, "ok");
}

static void
on_hup(struct ev_loop *loop, ev_signal *w, int revents)
{
	struct app *a = w->data;

	(void)loop;
	(void)revents;
	/* a reload now would announce READY again and could restart the
	 * HTTP server that the stop just closed */
	if (a->stopping) {
		log_info("stopping: reload ignored");
		return;
	}
	reload(a);
}

static void
on_stop_tick(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct app *a = w->data;

	(void)revents;
	if (a->sender == NULL || sender_drain(a->sender) ||
	    ev_now(loop) - stop_began >= STOP_GRACE)
		ev_break(loop, EVBREAK_ALL);
}

static void
on_term(struct ev_loop *loop, ev_signal *w, int revents)
{
	struct app *a = w->data;

	(void)revents;
	if (a->stopping) {
		log_warn("second stop signal: leaving now");
		ev_break(loop, EVBREAK_ALL);
		return;
	}
	a->stopping = true;
	log_info("stopping (signal %d)", w->signum);
	sd_notify_msg("STOPPING=1\nSTATUS=stopping");
	http_stop(a->http);
	a->http = NULL;
	engine_stop(a->engine);
	a->engine = NULL;
	imap_stop(a->imap);
	a->imap = NULL;
	ev_io_stop(loop, &state_io);
	ev_timer_stop(loop, &state_poll);
	ev_timer_stop(loop, &state_recheck);
	/* Give in-flight sends a bounded time; what does not finish stays
	 * pending in the outbox for the next start. */
	stop_began = ev_now(loop);
	ev_timer_init(&stop_timer, on_stop_tick, 0.0, 0.1);
	stop_timer.data = a;
	ev_timer_start(loop, &stop_timer);
}

/* The newest ledger event logged (or there at start): events after it
 * that another process (cutoffctl) recorded get a log line each, so the
 * daemon's log tells every change of what it chases. */
static int64_t ledger_seen;

struct seenctx {
	int64_t last;
	int n;
};

static int
log_event(void *ctx, const struct ledger_event *e)
{
	struct seenctx *x = ctx;
	struct buf b;
	static const char *const own[] = { "api", "page", "imap", "link" };
	bool mine = false;

	x->last = e->id;
	x->n++;
	/* the daemon logs its own writes where it makes them */
	for (size_t i = 0; i < sizeof(own) / sizeof(own[0]); i++)
		if (strcmp(e->source, own[i]) == 0)
			mine = true;
	if (mine)
		return 0;
	buf_init(&b);
	buf_puts(&b, "recorded by another process: ");
	buf_put_escaped(&b, e->action, 16);
	buf_puts(&b, " ");
	buf_put_escaped(&b, e->occurrence, OCC_ID_MAX);
	buf_puts(&b, " ");
	buf_put_escaped(&b, e->unit[0] ? e->unit : "*", 72);
	if (e->detail != NULL && e->detail[0] != '\0') {
		buf_puts(&b, " ");
		buf_put_escaped(&b, e->detail, 64);
	}
	buf_puts(&b, " (source ");
	buf_put_escaped(&b, e->source[0] ? e->source : "-", 16);
	buf_puts(&b, ", actor ");
	buf_put_escaped(&b, e->actor[0] ? e->actor : "-", LEDGER_ACTOR_MAX);
	buf_puts(&b, ")");
	log_info("%s", buf_str(&b));
	buf_free(&b);
	return 0;
}

static void
log_new_events(struct app *a)
{
	struct seenctx x;

	do {
		x.last = ledger_seen;
		x.n = 0;
		if (ledger_events_after(a->db, ledger_seen, 64, log_event,
					&x) < 0)
			return;         /* logged; the next change tries again */
		ledger_seen = x.last;
	} while (x.n == 64);
}

static void
check_state(struct app *a)
{
	int64_t v = db_data_version(a->db);

	/* data_version moves only when another connection (cutoffctl)
	 * committed: a submission recorded or undone. */
	if (v != a->data_version) {
		log_debug("state store changed by another process");
		log_new_events(a);
		app_changed(a);
	}
}

static void
on_state_poll(struct ev_loop *loop, ev_timer *w, int revents)
{
	(void)loop;
	(void)revents;
	check_state(w->data);
}

/*
 * Changes by other processes, seen with inotify instead of a poll: every
 * commit of another connection writes the WAL (SQLite's WAL needs all
 * connections on one host, so the kernel sees each write), watched for
 * writes; the directory is watched only for names coming and going (the
 * store deleted or replaced, the WAL re-created), so that a busy neighbour
 * file (a log) costs nothing.
 */
static void
watch_wal(void)
{
	char *wal = xasprintf("%s-wal", app.conf->daemon.state);

	/* a missing WAL is fine: its IN_CREATE in the directory re-adds it */
	inotify_add_watch(state_ifd, wal, IN_MODIFY | IN_CLOSE_WRITE);
	free(wal);
}

static void
on_state_event(struct ev_loop *loop, ev_io *w, int revents)
{
	char buf[4096] __attribute__((aligned(__alignof__(struct inotify_event))));
	size_t blen = strlen(state_base);
	bool changed = false, gone = false;
	ssize_t n;

	(void)revents;
	while ((n = read(state_ifd, buf, sizeof(buf))) > 0) {
		for (char *p = buf; p < buf + n;) {
			const struct inotify_event *ev = (const void *)p;
			const char *rest;

			p += sizeof(*ev) + ev->len;
			if (ev->mask & (IN_Q_OVERFLOW | IN_MODIFY |
					IN_CLOSE_WRITE)) {
				changed = true;     /* the WAL: a commit */
				continue;
			}
			if (ev->mask & (IN_DELETE_SELF | IN_MOVE_SELF)) {
				gone = true;        /* the directory */
				continue;
			}
			if (ev->len == 0 ||
			    strncmp(ev->name, state_base, blen) != 0)
				continue;
			rest = ev->name + blen;
			if (*rest == '\0') {
				gone = true;
			} else if (strcmp(rest, "-wal") == 0 &&
				   (ev->mask & (IN_CREATE | IN_MOVED_TO))) {
				watch_wal();
				changed = true;
			}
		}
	}
	if (gone) {
		char why[512];

		if (db_health(app.db, why, sizeof(why)) < 0)
			log_err("%s: %s", app.conf->daemon.state, why);
	}
	if (changed) {
		check_state(w->data);
		ev_timer_stop(loop, &state_recheck);
		ev_timer_set(&state_recheck, STATE_RECHECK, 0.);
		ev_timer_start(loop, &state_recheck);
	}
}

static void
watch_start(struct ev_loop *loop, const char *path)
{
	char *copy = xstrdup(path), *dir, *base;

	base = strrchr(copy, '/');
	if (base) {
		*base++ = '\0';
		dir = *copy ? copy : "/";
	} else {
		base = copy;
		dir = ".";
	}
	state_base = xstrdup(base);
	state_ifd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
	if (state_ifd >= 0 &&
	    inotify_add_watch(state_ifd, dir, IN_CREATE | IN_DELETE |
			      IN_MOVED_FROM | IN_MOVED_TO | IN_DELETE_SELF |
			      IN_MOVE_SELF | IN_ONLYDIR) >= 0) {
		watch_wal();
		ev_io_init(&state_io, on_state_event, state_ifd, EV_READ);
		state_io.data = &app;
		ev_io_start(loop, &state_io);
	} else {
		log_warn("cannot watch %s with inotify (%s): looking for "
			 "changes by cutoffctl every %g s", dir, strerror(errno),
			 STATE_POLL);
		if (state_ifd >= 0)
			close(state_ifd);
		state_ifd = -1;
		ev_timer_set(&state_poll, STATE_POLL, STATE_POLL);
		ev_timer_start(loop, &state_poll);
	}
	free(copy);
}

/* WATCHDOG=1 from the loop itself: a wedged loop misses it and systemd
 * restarts the service.  Armed only when systemd asks (WatchdogSec=). */
static void
on_watchdog(struct ev_loop *loop, ev_timer *w, int revents)
{
	(void)loop;
	(void)w;
	(void)revents;
	sd_notify_msg("WATCHDOG=1");
}

/* No admin_token_file configured: make STATEDIR/admin.token once, whole or
 * not at all (written aside, then linked into place), mode 0600. */
static int
create_admin_token(struct conf *c)
{
	unsigned char raw[24];
	char hex[2 * sizeof raw + 2], *tmp;
	size_t i, n;
	int fd, ok;

	if (getrandom(raw, sizeof raw, 0) != (ssize_t)sizeof raw) {
		log_err("admin token: no random bytes: %s", strerror(errno));
		return -1;
	}
	for (i = 0; i < sizeof raw; i++)
		snprintf(hex + 2 * i, 3, "%02x", raw[i]);
	n = 2 * sizeof raw;
	hex[n++] = '\n';
	tmp = xasprintf("%s.new", c->daemon.admin_token_file);
	(void)unlink(tmp);
	fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	ok = fd >= 0 && write(fd, hex, n) == (ssize_t)n && fsync(fd) == 0;
	if (fd >= 0)
		close(fd);
	if (ok && link(tmp, c->daemon.admin_token_file) < 0)
		ok = 0;
	if (!ok) {
		log_err("admin token: cannot create %s: %s",
			c->daemon.admin_token_file, strerror(errno));
		(void)unlink(tmp);
		free(tmp);
		return -1;
	}
	(void)unlink(tmp);
	free(tmp);
	hex[n - 1] = '\0';
	c->daemon.admin_token = xstrdup(hex);
	log_info("created the admin token in %s (cutoffctl admin-token "
		 "prints it)", c->daemon.admin_token_file);
	return 0;
}

static int
parse_speed(const char *s, double *out)
{
	char *end;
	double v;

	errno = 0;
	v = strtod(s, &end);
	if (errno != 0 || end == s || *end != '\0' || !isfinite(v) || v <= 0 ||
	    v > 1e7)
		return -1;
	*out = v;
	return 0;
}

int
main(int argc, char **argv)
{
	static const struct option opts[] = {
		{"config", required_argument, NULL, 'c'},
		{"check", no_argument, NULL, 'C'},
		{"now", required_argument, NULL, 'N'},
		{"speed", required_argument, NULL, 'S'},
		{"verbose", no_argument, NULL, 'v'},
		{"help", no_argument, NULL, 'h'},
		{"version", no_argument, NULL, 'V'},
		{NULL, 0, NULL, 0},
	};
	const char *conf_path = DEFAULT_CONF, *now_arg = NULL;
	struct ev_loop *loop;
	struct diag d;
	char *err = NULL, *summary;
	tstamp start = 0;
	double speed = 1.0;
	bool check = false;
	int verbose = 0, c;

	while ((c = getopt_long(argc, argv, "c:vh", opts, NULL)) != -1) {
		switch (c) {
		case 'c': conf_path = optarg; break;
		case 'C': check = true; break;
		case 'N': now_arg = optarg; break;
		case 'S':
			if (parse_speed(optarg, &speed) < 0) {
				fprintf(stderr, "cutoffd: --speed %s: expected a "
					"positive number\n", optarg);
				return 1;
			}
			break;
		case 'v': verbose++; break;
		case 'h': usage(stdout); return 0;
		case 'V': printf("cutoffd %s\n", CUTOFFD_VERSION); return 0;
		default: usage(stderr); return 1;
		}
	}
	if (optind != argc) {
		usage(stderr);
		return 1;
	}
	log_init("cutoffd", verbose);

	diag_init(&d);
	app.conf = conf_load(conf_path, 0, &d);
	if (app.conf == NULL) {
		/* bare FILE:LINE lines as the contract says, at priority
		 * err when ExecStartPre/ExecReload run this under journald */
		for (size_t i = 0; i < d.n; i++)
			log_plain(LOG_ERR, d.msg[i]);
		if (d.n == 0) {
			summary = xasprintf("%s: cannot load", conf_path);
			log_plain(LOG_ERR, summary);
			free(summary);
		}
		diag_free(&d);
		return 1;
	}
	diag_free(&d);
	log_set_zone(app.conf->daemon.timezone);
	if (check) {
		summary = conf_summary(app.conf);
		printf("%s\n", summary);
		free(summary);
		holidays_warn(app.conf, (tstamp)time(NULL), stderr);
		/* what a reload of this file would move or lose */
		if (access(app.conf->daemon.state, F_OK) == 0) {
			app.db = db_open(app.conf->daemon.state, false, &err);
			if (app.db != NULL) {
				tstamp t = (tstamp)time(NULL);

				regime_apply_state(app.db, app.conf, t, false);
				regime_moves(app.db, app.conf, NULL, t, false,
					     stdout);
				db_close(app.db);
			} else {
				free(err);
			}
		}
		conf_free(app.conf);
		return 0;
	}
	app.conf_path = conf_path;
	app.changed = app_changed;

	if (now_arg != NULL &&
	    tz_parse_local(app.conf->tz, now_arg, &start) < 0) {
		fprintf(stderr, "cutoffd: --now %s: expected local ISO 8601 "
			"time such as 2024-03-06T07:59\n", now_arg);
		conf_free(app.conf);
		return 1;
	}
	clock_init(&app.clk, now_arg != NULL || speed != 1.0,
		   now_arg != NULL ? start : (tstamp)time(NULL), speed);
	if (app.clk.fake) {
		char iso[32];

		tz_format_iso(app.conf->tz, clock_now(&app.clk), iso);
		log_warn("clock is simulated: starts at %s (%s), runs %gx real "
			 "time; for demos and tests only", iso,
			 tz_name(app.conf->tz), speed);
	}

	signal(SIGPIPE, SIG_IGN);
	app.db = db_open(app.conf->daemon.state, true, &err);
	if (app.db == NULL) {
		log_err("%s", err);
		free(err);
		conf_free(app.conf);
		return 1;
	}
	ensure_tokens(&app);
	{       /* the confirmation links' key (link.c), made before any
		 * reminder needs it, not inside the sender's read */
		unsigned char lk[32];

		if (db_link_key(app.db, true, lk) < 0)
			log_warn("no key for confirmation links yet");
		memset(lk, 0, sizeof lk);
	}
	/* a file edited while we were stopped moves dates as a reload does */
	regime_apply_state(app.db, app.conf, clock_now(&app.clk), true);
	regime_moves(app.db, app.conf, NULL, clock_now(&app.clk), true, NULL);
	regime_apply_state(app.db, app.conf, clock_now(&app.clk), true);
	app.data_version = db_data_version(app.db);
	if (ledger_last_event_id(app.db, &ledger_seen) < 0)
		ledger_seen = INT64_MAX;  /* unreadable: log none, not all */
	/* from here on the loop never waits long for another process's
	 * lock: writers retry later, the API answers 503 (see db.c) */
	db_set_busy_timeout(app.db, DB_LOOP_BUSY_MS);
	if (app.conf->daemon.admin_token == NULL &&
	    app.conf->daemon.admin_token_auto)
		(void)create_admin_token(app.conf);

	loop = ev_default_loop(EVFLAG_AUTO);
	if (loop == NULL)
		fatal("cannot initialise the event loop");
	app.loop = loop;
	app.feeds = feeds_new();
	app.views = views_new();
	app.auth = auth_new();
	feeds_reload(&app, NULL);
	app.http = http_start(&app, &err);
	if (app.http == NULL) {
		log_err("listen = %s: %s", app.conf->daemon.listen, err);
		free(err);
		feeds_free(app.feeds);
		db_close(app.db);
		conf_free(app.conf);
		return 1;
	}
	app.sender = sender_start(&app);
	app.engine = engine_start(&app);
	app.imap = imap_start(&app);

	ev_signal_init(&sig_hup, on_hup, SIGHUP);
	ev_signal_init(&sig_term, on_term, SIGTERM);
	ev_signal_init(&sig_int, on_term, SIGINT);
	sig_hup.data = sig_term.data = sig_int.data = &app;
	ev_signal_start(loop, &sig_hup);
	ev_signal_start(loop, &sig_term);
	ev_signal_start(loop, &sig_int);

	ev_init(&state_poll, on_state_poll);
	ev_init(&state_recheck, on_state_poll);
	state_poll.data = state_recheck.data = &app;
	watch_start(loop, app.conf->daemon.state);
	if (sd_watchdog_interval() > 0) {
		ev_timer_init(&watchdog, on_watchdog, 0.0,
			      sd_watchdog_interval() / 2);
		ev_timer_start(loop, &watchdog);
	}

	holidays_warn(app.conf, clock_now(&app.clk), NULL);
	metrics_reloaded(true, clock_now(&app.clk));
	log_info("cutoffd %s started: %zu units, %zu cycles, listening on %s",
		 CUTOFFD_VERSION, app.conf->nunits, app.conf->ncycles,
		 app.conf->daemon.listen);
	if (app.conf->nunits == 0 || app.conf->ncycles == 0)
		log_info("no %s configured: nothing is chased (an empty "
			 "calendar) until %s gets some",
			 app.conf->nunits == 0 ? "units" : "cycles",
			 app.conf_path);
	sd_notify_msg("READY=1");
	notify_status(&app, "running");
	reload_status(&app, "started");

	ev_run(loop, 0);

	/* Teardown in reverse order of start-up. */
	ev_timer_stop(loop, &stop_timer);
	ev_timer_stop(loop, &watchdog);
	ev_signal_stop(loop, &sig_hup);
	ev_signal_stop(loop, &sig_term);
	ev_signal_stop(loop, &sig_int);
	ev_io_stop(loop, &state_io);
	ev_timer_stop(loop, &state_poll);
	ev_timer_stop(loop, &state_recheck);
	if (state_ifd >= 0)
		close(state_ifd);
	free(state_base);
	imap_stop(app.imap);
	engine_stop(app.engine);
	sender_stop(app.sender);
	http_stop(app.http);
	/* revisions of what entered the window since the last reload */
	feeds_revise(NULL, app.conf, app.db, clock_now(&app.clk));
	feeds_free(app.feeds);
	views_free(app.views);
	auth_free(app.auth);
	db_close(app.db);
	conf_free(app.conf);
	ev_loop_destroy(loop);
	log_info("stopped");
	log_set_zone(NULL);
	return 0;
}
