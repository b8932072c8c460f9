/*
 * main.c - cutoffd: arguments, start-up order, the event loop, reload and
 * teardown in reverse order.
 */
#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <ev.h>

#include "cutoffd.h"

#define DEFAULT_CONF "/etc/cutoffd/cutoffd.conf"
/* How long a stop waits for in-flight sends before leaving them queued. */
#define STOP_GRACE 10.0
/* Fallback poll of the state store for changes made by cutoffctl, in case
 * the inotify watch on the WAL misses one (network file systems). */
#define STATE_POLL 2.0

static struct app app;
static ev_signal sig_hup, sig_term, sig_int;
static ev_stat wal_watch;
static ev_timer state_poll, stop_timer;
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
		"      --check        validate the configuration, print a summary, exit\n"
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
		log_err("configuration has errors, not reloading; still "
			"running on the previous one");
		diag_free(&d);
		sd_notify_msg("READY=1\nSTATUS=running (reload rejected: "
			      "configuration has errors)");
		return;
	}
	diag_free(&d);
	if (strcmp(nc->daemon.state, a->conf->daemon.state) != 0)
		log_warn("state = %s: a new state store takes effect only "
			 "after a restart", nc->daemon.state);
	old = a->conf;
	a->conf = nc;
	if (strcmp(nc->daemon.listen, old->daemon.listen) != 0) {
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
	/* the poller restarts on the new [imap] (its position is stored) */
	imap_stop(a->imap);
	a->imap = imap_start(a);
	app_changed(a);
	conf_free(old);
	log_info("reloaded: %zu units, %zu cycles", nc->nunits, nc->ncycles);
	sd_notify_msg("READY=1");
	notify_status(a, "running");
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
	ev_stat_stop(loop, &wal_watch);
	ev_timer_stop(loop, &state_poll);
	/* Give in-flight sends a bounded time; what does not finish stays
	 * pending in the outbox for the next start. */
	stop_began = ev_now(loop);
	ev_timer_init(&stop_timer, on_stop_tick, 0.0, 0.1);
	stop_timer.data = a;
	ev_timer_start(loop, &stop_timer);
}

static void
check_state(struct app *a)
{
	int64_t v = db_data_version(a->db);

	/* data_version moves only when another connection (cutoffctl)
	 * committed: a submission recorded or undone. */
	if (v != a->data_version) {
		log_debug("state store changed by another process");
		app_changed(a);
	}
}

static void
on_wal(struct ev_loop *loop, ev_stat *w, int revents)
{
	(void)loop;
	(void)revents;
	check_state(w->data);
}

static void
on_state_poll(struct ev_loop *loop, ev_timer *w, int revents)
{
	(void)loop;
	(void)revents;
	check_state(w->data);
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
	char *err = NULL, *summary, *wal;
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
		diag_print(&d, stderr);
		if (d.n == 0)
			fprintf(stderr, "%s: cannot load\n", conf_path);
		diag_free(&d);
		return 1;
	}
	diag_free(&d);
	if (check) {
		summary = conf_summary(app.conf);
		printf("%s\n", summary);
		free(summary);
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
	app.data_version = db_data_version(app.db);

	loop = ev_default_loop(EVFLAG_AUTO);
	if (loop == NULL)
		fatal("cannot initialise the event loop");
	app.loop = loop;
	app.feeds = feeds_new();
	app.views = views_new();
	app.auth = auth_new();
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

	wal = xasprintf("%s-wal", app.conf->daemon.state);
	ev_stat_init(&wal_watch, on_wal, wal, 0.0);
	wal_watch.data = &app;
	ev_stat_start(loop, &wal_watch);
	ev_timer_init(&state_poll, on_state_poll, STATE_POLL, STATE_POLL);
	state_poll.data = &app;
	ev_timer_start(loop, &state_poll);

	log_info("cutoffd %s started: %zu units, %zu cycles, listening on %s",
		 CUTOFFD_VERSION, app.conf->nunits, app.conf->ncycles,
		 app.conf->daemon.listen);
	sd_notify_msg("READY=1");
	notify_status(&app, "running");

	ev_run(loop, 0);

	/* Teardown in reverse order of start-up. */
	ev_timer_stop(loop, &stop_timer);
	ev_signal_stop(loop, &sig_hup);
	ev_signal_stop(loop, &sig_term);
	ev_signal_stop(loop, &sig_int);
	ev_stat_stop(loop, &wal_watch);
	ev_timer_stop(loop, &state_poll);
	imap_stop(app.imap);
	engine_stop(app.engine);
	sender_stop(app.sender);
	http_stop(app.http);
	feeds_free(app.feeds);
	views_free(app.views);
	auth_free(app.auth);
	db_close(app.db);
	conf_free(app.conf);
	free(wal);
	ev_loop_destroy(loop);
	log_info("stopped");
	return 0;
}
