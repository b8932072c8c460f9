/*
 * engine.c - turns the plan into outbox rows as steps come due.
 *
 * The engine sleeps until the next step: an absolute ev_periodic at that
 * step's wall-clock time (converted from the virtual clock of --now and
 * --speed), so a clock step is followed, and nothing wakes in between; a
 * change of configuration or state (engine_replan) wakes it too.  Each
 * wake scans (last_scan, now] with sched_plan and writes the rows into the
 * outbox and the new last_scan into meta in one transaction, then kicks the
 * sender.  The rows' UNIQUE key makes a repeated scan (after a crash
 * between commit and the next wake, or a clock step backwards) harmless.
 *
 * last_scan is kept in memory and written only with rows queued (or on the
 * very first start): a wake that queues nothing commits nothing.  After a
 * restart the scan then covers a longer window, which gives the same rows:
 * the ones queued are in the outbox, the ones dropped are dropped again, and
 * a step skipped because the unit had reported counts as missed only if
 * that report was undone meanwhile (then its latest missed step goes out,
 * as the catch-up rule says).
 *
 * A write that another process's lock holds up (db_busy) is retried on a
 * timer, with backoff, instead of blocking the loop or being dropped.
 *
 * Catch-up rule (after downtime, or when the clock jumps forward):
 *   After downtime, for each unit and occurrence only the latest step it
 *   missed is sent (to every audience and channel of that step), once;
 *   missed steps of occurrences already past their policy's `until` are
 *   dropped.  A stale "due in 3 days" would only confuse a unit that is
 *   already late, and its head needs one escalation, not a backlog.
 * A step counts as missed when its send time is more than GRACE before the
 * scan; steps inside the grace are what a running daemon sends on time.
 */
#include <stdlib.h>
#include <string.h>

#include <ev.h>

#include "cutoffd.h"

#define RETRY_MIN 0.2             /* real seconds: a locked store */
#define RETRY_MAX 5.0
#define GRACE_MIN 300             /* virtual seconds: see catch-up rule */
#define DAY 86400
#define META_LAST_SCAN "last_scan"

struct engine {
	struct app *a;
	ev_periodic wake;         /* at the next step's wall-clock time */
	ev_timer retry;           /* a write the lock held up */
	double backoff;
	bool cancel_due;          /* a replan's cancellation still to do */
	tstamp last;              /* the scan mark in memory, 0 none yet */
};

/* ------------------------------------------------- submissions cache */

/* Submitted units of the occurrences the plan asks about, loaded once per
 * occurrence (one query instead of one per unit). */
struct subocc {
	char occ[OCC_ID_MAX];
	char **units;             /* sorted */
	size_t n, cap;
};

struct subcache {
	struct db *db;
	struct subocc *v;
	size_t n, cap;
	bool error;
};

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

static int sub_add(void *ctx, const struct submission *s)
{
	struct subocc *o = ctx;

	if (o->n == o->cap) {
		o->cap = o->cap ? 2 * o->cap : 16;
		o->units = xrealloc(o->units, o->cap * sizeof(*o->units));
	}
	o->units[o->n++] = xstrdup(s->unit);
	return 0;
}

static bool submitted(void *ctx, const char *occ_id, const char *unit_id)
{
	struct subcache *sc = ctx;
	struct subocc *o = NULL;

	for (size_t i = 0; i < sc->n; i++) {
		if (strcmp(sc->v[i].occ, occ_id) == 0) {
			o = &sc->v[i];
			break;
		}
	}
	if (!o) {
		if (sc->n == sc->cap) {
			sc->cap = sc->cap ? 2 * sc->cap : 8;
			sc->v = xrealloc(sc->v, sc->cap * sizeof(*sc->v));
		}
		o = &sc->v[sc->n++];
		memset(o, 0, sizeof(*o));
		snprintf(o->occ, sizeof(o->occ), "%s", occ_id);
		if (db_sub_foreach(sc->db, occ_id, sub_add, o) < 0)
			sc->error = true;
		if (o->n > 1)
			qsort(o->units, o->n, sizeof(*o->units), cmp_str);
	}
	if (o->n == 0)
		return false;
	return bsearch(&unit_id, o->units, o->n, sizeof(*o->units),
		       cmp_str) != NULL;
}

static void subcache_free(struct subcache *sc)
{
	for (size_t i = 0; i < sc->n; i++) {
		for (size_t k = 0; k < sc->v[i].n; k++)
			free(sc->v[i].units[k]);
		free(sc->v[i].units);
	}
	free(sc->v);
}

/* ------------------------------------------------------------- scan */

static int proposal_holds(struct db *db, const struct policy *p,
			  const struct notice *n);

/* A plan row, copied out of sched_plan's walk. */
struct due {
	struct notice n;
	tstamp cutoff;            /* due_at + until; 0 = no limit */
	const struct policy *p;
};

struct collect {
	struct due *v;
	size_t n, cap;
	const char *public_url;
};

static int collect_row(void *ctx, const struct plan_row *r)
{
	struct collect *col = ctx;
	const struct policy *p = r->occ->cycle->policy;
	struct due *d;

	if (col->n == col->cap) {
		col->cap = col->cap ? 2 * col->cap : 64;
		col->v = xrealloc(col->v, col->cap * sizeof(*col->v));
	}
	d = &col->v[col->n++];
	memset(d, 0, sizeof(*d));
	snprintf(d->n.occurrence, sizeof(d->n.occurrence), "%s", r->occ->id);
	snprintf(d->n.unit, sizeof(d->n.unit), "%s", r->unit->id);
	snprintf(d->n.step, sizeof(d->n.step), "%s", r->step->name);
	d->n.aud = r->aud;
	d->n.ch = r->ch;
	d->n.recipients = xstrdup(r->recipients);
	d->n.send_at = r->at;
	outbox_message_id(col->public_url, d->n.occurrence, d->n.unit,
			  d->n.step, d->n.aud, d->n.ch, d->n.message_id,
			  sizeof(d->n.message_id));
	d->cutoff = p && p->until > 0 ? r->occ->due_at + p->until : 0;
	d->p = p;
	return 0;
}

/* (occurrence, unit) order, the rows of the latest step of each first. */
static int cmp_due(const void *a, const void *b)
{
	const struct due *x = a, *y = b;
	int r;

	r = strcmp(x->n.occurrence, y->n.occurrence);
	if (r == 0)
		r = strcmp(x->n.unit, y->n.unit);
	if (r == 0 && x->n.send_at != y->n.send_at)
		r = x->n.send_at > y->n.send_at ? -1 : 1;
	if (r == 0)
		r = strcmp(x->n.step, y->n.step);
	return r;
}

static bool same_pair(const struct due *x, const struct due *y)
{
	return strcmp(x->n.occurrence, y->n.occurrence) == 0 &&
	       strcmp(x->n.unit, y->n.unit) == 0;
}

static int read_last_scan(struct db *db, tstamp *out)
{
	char *v = NULL, *end;
	long long t;
	int rc = db_meta_get(db, META_LAST_SCAN, &v);

	if (rc != 0)
		return rc;
	t = strtoll(v, &end, 10);
	if (end == v || *end) {
		log_warn("state: bad %s '%s', starting the scan afresh",
			 META_LAST_SCAN, v);
		free(v);
		return 1;
	}
	free(v);
	*out = (tstamp)t;
	return 0;
}

/*
 * Enqueues every step with send time in (last_scan, now], under the
 * catch-up rule, and moves last_scan to now, in one transaction.  Without
 * a last_scan (first start) the scan starts at `first` (<= now).  Returns
 * how many rows were added, or -1.  *scanned is in and out: the mark kept
 * in memory (0 none), and the effective scan time (never behind either
 * mark).  The mark is stored only with rows queued or when none is stored
 * yet (see the top of the file).
 */
static int scan(const struct conf *c, struct db *db, tstamp first, tstamp now,
		tstamp grace, tstamp *scanned)
{
	struct collect col = { .public_url = c->daemon.public_url };
	struct subcache sc = { .db = db };
	struct notice **pick = NULL;
	struct extension *ext = NULL;
	size_t npick = 0, next = 0;
	tstamp last = 0;
	char val[24];
	int rc, added = 0;
	bool stored;

	rc = read_last_scan(db, &last);
	if (rc < 0)
		return -1;
	stored = rc == 0;
	if (!stored) {
		/* first start: nothing from before our time is sent */
		last = first < now ? first : now;
	}
	if (*scanned > last)
		last = *scanned;
	if (now < last) {
		/* the clock went back: those steps are in the outbox already */
		*scanned = last;
		return 0;
	}
	/* extended deadlines: their steps before last_scan are never
	 * scanned, so an extension sends no burst of stale steps */
	if (ledger_extensions(db, NULL, &ext, &next) < 0)
		return -1;
	if (now > last &&
	    sched_plan_ext(c, last + 1, now + 1, NULL, ext, next, submitted,
			   &sc, collect_row, &col) < 0) {
		log_err("engine: the plan could not be computed");
		added = -1;
		goto out;
	}
	if (sc.error) {
		added = -1;
		goto out;
	}
	if (col.n > 1)
		qsort(col.v, col.n, sizeof(*col.v), cmp_due);

	/* pick the rows under the catch-up rule */
	pick = xcalloc(col.n ? col.n : 1, sizeof(*pick));
	for (size_t i = 0, head = 0; i < col.n; i++) {
		struct due *d = &col.v[i];
		bool late = now - d->n.send_at > grace;

		/* the first rows of a pair are its latest step: older steps
		 * are superseded (they can only be missed ones) */
		if (i == 0 || !same_pair(d, &col.v[i - 1]))
			head = i;
		else if (strcmp(d->n.step, col.v[head].n.step) != 0)
			continue;
		if (late && d->cutoff > 0 && now > d->cutoff)
			continue;
		/* a step caught up (downtime, a reload, a clock jump) waits
		 * for the end of quiet hours and for a send day like the
		 * planned ones do */
		if (d->n.send_at < now) {
			tstamp h = sched_hold(c, d->p, now);

			if (h > now)
				d->n.send_at = h;
		}
		/* born held: an open proposal pauses the head's escalation */
		if (proposal_holds(db, d->p, &d->n) == 1)
			d->n.next_try = OUTBOX_HELD_PROPOSAL;
		pick[npick++] = &d->n;
	}
	if (npick == 0 && stored) {
		*scanned = now;          /* nothing to commit */
		goto out;
	}
	if (db_begin(db) < 0) {
		added = -1;
		goto out;
	}
	added = outbox_add_all(db, (const struct notice *const *)pick, npick,
			       now);
	if (added < 0) {
		db_rollback(db);
		goto out;
	}
	snprintf(val, sizeof(val), "%lld", (long long)now);
	if (db_meta_set(db, META_LAST_SCAN, val) < 0 || db_commit(db) < 0) {
		db_rollback(db);
		added = -1;
		goto out;
	}
	*scanned = now;
	if (added > 0)
		log_info("%d notice%s queued", added, added == 1 ? "" : "s");
out:
	for (size_t i = 0; i < col.n; i++)
		notice_clear(&col.v[i].n);
	free(col.v);
	free(pick);
	subcache_free(&sc);
	extensions_free(ext, next);
	return added;
}

/* Earliest step time > after over every occurrence (units don't matter for
 * when to wake).  0 found, 1 none within the horizon. */
/* earliest step of o after `after` into *best */
static void earliest(const struct conf *c, const struct occ *o, tstamp after,
		     struct notice_step *st, tstamp *best, bool *found)
{
	int n = sched_steps(c, o, st, SCHED_MAX_STEPS);

	for (int k = 0; k < n; k++) {
		if (st[k].at > after) {
			if (!*found || st[k].at < *best)
				*best = st[k].at;
			*found = true;
			break;       /* steps are in time order */
		}
	}
}

static int next_step(const struct conf *c, struct db *db, tstamp after,
		     tstamp *out)
{
	struct extension *ext = NULL;
	size_t next = 0;
	int64_t back = 2 * DAY, ahead = 2 * DAY;
	struct notice_step *st;
	struct occ *occ = NULL;
	size_t nocc = 0;
	tstamp best = 0;
	bool found = false;

	/* reach of steps around their due date, as sched computes them */
	for (size_t i = 0; i < c->npolicies; i++) {
		int64_t lo, hi;

		sched_policy_span(&c->policies[i], &lo, &hi);
		back = (hi + 2) * DAY > back ? (hi + 2) * DAY : back;
		ahead = (2 - lo) * DAY > ahead ? (2 - lo) * DAY : ahead;
	}
	ahead += c->daemon.horizon > 0 ? c->daemon.horizon : 400 * DAY;
	if (sched_occurrences(c, after - back, after + ahead, &occ, &nocc) < 0)
		return -1;
	if (ledger_extensions(db, NULL, &ext, &next) < 0) {
		free(occ);
		return -1;
	}
	st = xcalloc(SCHED_MAX_STEPS, sizeof(*st));
	for (size_t i = 0; i < nocc; i++) {
		sched_extend(c, &occ[i], ext, next, NULL);
		earliest(c, &occ[i], after, st, &best, &found);
	}
	/* every extension's own steps, wherever its occurrence lies */
	for (size_t i = 0; i < next; i++) {
		struct occ o;

		if (sched_occurrence(c, ext[i].occurrence, &o) < 0)
			continue;
		sched_extend(c, &o, ext, next,
			     ext[i].unit[0] ? ext[i].unit : NULL);
		earliest(c, &o, after, st, &best, &found);
	}
	extensions_free(ext, next);
	free(st);
	free(occ);
	if (!found)
		return 1;
	*out = best;
	return 0;
}

/* ---------------------------------------------------------- the timer */

static tstamp grace_for(const struct clock *clk)
{
	/* a busy loop (fsync, a long maildir batch) delays a wake by a few
	 * real seconds; at --speed that is speed times more virtual time */
	double g = 10.0 * (clk->speed > 1.0 ? clk->speed : 1.0);

	return g > GRACE_MIN ? (tstamp)g : GRACE_MIN;
}

static void cancel_stale(struct engine *e);

/* The store was locked (or failed): try again soon, with backoff. */
static void retry_later(struct engine *e)
{
	struct app *a = e->a;

	if (!db_busy(a->db))
		log_warn("engine: the scan failed; trying again in %.1f s",
			 e->backoff ? e->backoff : RETRY_MIN);
	e->backoff = e->backoff ? e->backoff * 2 : RETRY_MIN;
	if (e->backoff > RETRY_MAX)
		e->backoff = RETRY_MAX;
	ev_timer_stop(a->loop, &e->retry);
	ev_timer_set(&e->retry, e->backoff, 0.);
	ev_timer_start(a->loop, &e->retry);
}

static void run(struct engine *e)
{
	struct app *a = e->a;
	tstamp now, scanned = e->last, next;
	int n;

	ev_periodic_stop(a->loop, &e->wake);
	ev_timer_stop(a->loop, &e->retry);
	if (a->stopping)
		return;
	if (e->cancel_due) {
		cancel_stale(e);
		if (e->cancel_due) {
			retry_later(e);
			return;
		}
	}
	now = clock_now(&a->clk);
	/* A first start with --now begins at that instant, not at the end
	 * of start-up (which at --speed may be hours of virtual time). */
	n = scan(a->conf, a->db, a->clk.fake ? a->clk.virt0 : now, now,
		 grace_for(&a->clk), &scanned);
	if (n < 0) {
		retry_later(e);
		return;
	}
	e->backoff = 0;
	e->last = scanned;
	metrics_scanned(scanned);
	if (n > 0)
		sender_kick(a->sender);
	n = next_step(a->conf, a->db, scanned, &next);
	if (n < 0) {
		retry_later(e);
		return;
	}
	if (n == 1) {
		/* nothing within the horizon: look again when it has moved
		 * on by as much (a reload or a submission wakes us sooner) */
		next = scanned + (a->conf->daemon.horizon > 0 ?
				  a->conf->daemon.horizon : 400 * DAY);
	}
	{
		char s1[32], s2[32];

		tz_format_iso(a->conf->tz, scanned, s1);
		tz_format_iso(a->conf->tz, next, s2);
		log_debug("engine: scanned up to %s, sleeping until %s", s1, s2);
	}
	ev_periodic_set(&e->wake, clock_real_at(&a->clk, next), 0., NULL);
	ev_periodic_start(a->loop, &e->wake);
}

static void on_wake(struct ev_loop *loop, ev_periodic *w, int revents)
{
	(void)loop;
	(void)revents;
	run(w->data);
}

static void on_retry(struct ev_loop *loop, ev_timer *w, int revents)
{
	(void)loop;
	(void)revents;
	run(w->data);
}

/* ----------------------------------------------------------- replan */

struct keepctx {
	const struct conf *c;
	struct db *db;
	/* the last occurrence looked up: rows come in id order, so rows of
	 * one scan (one occurrence) are neighbours */
	char occ_id[OCC_ID_MAX];
	int occ_rc;
	struct occ occ;
	struct notice_step *steps;
	int nsteps;
	char unit_id[72];
	struct extension *ext;    /* of occ_id */
	size_t next;
	tstamp due_at;            /* of the steps */
	bool extended;
	/* kept rows that would go out inside quiet hours or on a day
	 * without sends: held to the next allowed instant */
	tstamp now;
	struct hold { int64_t id; tstamp until; } *hold;
	size_t nhold, caphold;
	/* rows held for a proposal that no longer is: back to their time */
	struct hold *rel;
	size_t nrel, caprel;
};

static void hold_add(struct hold **v, size_t *n, size_t *cap, int64_t id,
		     tstamp until)
{
	if (*n == *cap) {
		*cap = *cap ? 2 * *cap : 16;
		*v = xrealloc(*v, *cap * sizeof(**v));
	}
	(*v)[*n].id = id;
	(*v)[(*n)++].until = until;
}

/* Whether an open proposal holds this row: [policy] proposal_pauses = head
 * (the default) pauses the escalations to the head until the secretariat
 * confirms or rejects it; the unit's own reminders go on.  One indexed
 * look-up, for head rows only.  -1: cannot tell (the caller keeps it). */
static int proposal_holds(struct db *db, const struct policy *p,
			  const struct notice *n)
{
	struct ledger_proposal lp;
	int rc;

	if (n->aud != AUD_HEAD || (p != NULL && p->proposal_keeps_head))
		return 0;
	rc = ledger_proposal_get(db, n->occurrence, n->unit, &lp);
	if (rc == 0)
		ledger_proposal_clear(&lp);
	return rc < 0 ? -1 : rc == 0;
}


/* Whether a pending row still stands under the current configuration and
 * the recorded submissions. */
static bool keep_row(void *ctx, const struct notice *n, const char **why)
{
	struct keepctx *k = ctx;
	const struct unit *u = conf_unit(k->c, n->unit);
	struct submission sub;
	char *r;
	bool step_ok = false;

	if (!u) {
		*why = "unit removed";
		return false;
	}
	if (strcmp(k->occ_id, n->occurrence) != 0 ||
	    strcmp(k->unit_id, n->unit) != 0) {
		struct occ o;

		/* steps per unit: a unit may have a deadline of its own */
		snprintf(k->unit_id, sizeof(k->unit_id), "%s", n->unit);
		if (strcmp(k->occ_id, n->occurrence) != 0) {
			snprintf(k->occ_id, sizeof(k->occ_id), "%s",
				 n->occurrence);
			k->occ_rc = sched_occurrence(k->c, n->occurrence,
						     &k->occ);
			extensions_free(k->ext, k->next);
			k->ext = NULL;
			k->next = 0;
			if (k->occ_rc == 0 &&
			    ledger_extensions(k->db, n->occurrence, &k->ext,
					      &k->next) < 0) {
				*why = NULL;
				return true;     /* keep it; try again later */
			}
			k->due_at = -1;
		}
		o = k->occ;
		if (k->occ_rc == 0)
			sched_extend(k->c, &o, k->ext, k->next, n->unit);
		if (k->occ_rc == 0 && (o.due_at != k->due_at ||
				       o.extended != k->extended)) {
			k->due_at = o.due_at;
			k->extended = o.extended;
			k->nsteps = sched_steps(k->c, &o, k->steps,
						SCHED_MAX_STEPS);
		} else if (k->occ_rc < 0) {
			k->nsteps = 0;
		}
	}
	if (k->occ_rc < 0) {
		*why = "occurrence removed";
		return false;
	}
	if (sched_before_since(k->c, &k->occ)) {
		*why = "due before since";
		return false;
	}
	if (!conf_cycle_has(k->occ.cycle, (size_t)(u - k->c->units))) {
		*why = "unit no longer in the cycle";
		return false;
	}
	r = outbox_recipients(k->c, u, n->aud, n->ch);
	if (!r) {
		*why = "no address for this audience";
		return false;
	}
	free(r);
	for (int i = 0; i < k->nsteps && !step_ok; i++) {
		/* webhooks carry every step, whatever its audience */
		step_ok = strcmp(k->steps[i].name, n->step) == 0 &&
			  (n->ch == CH_WEBHOOK || (k->steps[i].aud & n->aud));
	}
	if (!step_ok) {
		*why = k->extended || strchr(n->step, '~') != NULL
			? "deadline extended, or its extension cancelled"
			: "step removed from the policy";
		return false;
	}
	if (db_sub_get(k->db, n->occurrence, n->unit, &sub) == 0) {
		submission_clear(&sub);
		*why = "report recorded";
		return false;
	}
	switch (proposal_holds(k->db, k->occ.cycle->policy, n)) {
	case 1:
		hold_add(&k->hold, &k->nhold, &k->caphold, n->id,
			 OUTBOX_HELD_PROPOSAL);
		return true;
	case -1:
		return true;
	}
	{
		tstamp t0 = n->send_at > k->now ? n->send_at : k->now;
		tstamp h = sched_hold(k->c, k->occ.cycle->policy, t0);

		if (n->next_try >= OUTBOX_HELD_PROPOSAL)
			/* rejected (or the policy changed): it goes now, or
			 * when quiet hours end */
			hold_add(&k->rel, &k->nrel, &k->caprel, n->id,
				 h > t0 ? h : t0);
		else if (h > t0)
			hold_add(&k->hold, &k->nhold, &k->caphold, n->id, h);
	}
	return true;
}

/* ---------------------------------------------------------------- API */

struct engine *engine_start(struct app *a)
{
	struct engine *e = xcalloc(1, sizeof(*e));

	e->a = a;
	ev_init(&e->wake, on_wake);
	e->wake.data = e;
	ev_init(&e->retry, on_retry);
	e->retry.data = e;
	run(e);
	return e;
}

/* Cancels the pending rows the configuration and the submissions no
 * longer explain; cancel_due stays set when that could not be written. */
static void cancel_stale(struct engine *e)
{
	struct keepctx k;

	memset(&k, 0, sizeof(k));
	k.c = e->a->conf;
	k.db = e->a->db;
	k.steps = xcalloc(SCHED_MAX_STEPS, sizeof(*k.steps));
	k.now = clock_now(&e->a->clk);
	e->cancel_due = outbox_cancel(e->a->db, keep_row, &k, k.now) < 0;
	for (size_t i = 0; i < k.nhold; i++)
		db_outbox_hold(e->a->db, k.hold[i].id, k.hold[i].until);
	for (size_t i = 0; i < k.nrel; i++)
		db_outbox_release(e->a->db, k.rel[i].id, k.rel[i].until);
	if (k.nrel > 0)
		log_info("%zu escalation%s to the head released (proposal "
			 "settled)", k.nrel, k.nrel == 1 ? "" : "s");
	free(k.hold);
	free(k.rel);
	extensions_free(k.ext, k.next);
	free(k.steps);
}

void engine_replan(struct engine *e)
{
	if (!e || e->a->stopping)
		return;
	e->cancel_due = true;
	run(e);
}

void engine_stop(struct engine *e)
{
	if (!e)
		return;
	ev_periodic_stop(e->a->loop, &e->wake);
	ev_timer_stop(e->a->loop, &e->retry);
	free(e);
}
