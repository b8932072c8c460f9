/*
 * metrics.c - GET /metrics in the Prometheus text exposition format 0.0.4.
 *
 * A scrape must stay cheap at 10,000 units: nothing here walks every unit
 * or every outbox row per request.
 *   - Counters (notices sent/deferred/failed, scans, reloads) live in
 *     memory, bumped by one call from where the event happens.
 *   - The outbox and submission gauges come from one grouped query each,
 *     cached until the state store changes (the connection's change count
 *     or, for cutoffctl's writes, PRAGMA data_version moves) or the
 *     configuration is reloaded.
 *   - Missing units are counted per occurrence now overdue (the status
 *     page's window), with one indexed read of that occurrence's reports,
 *     cached like the above and also until the next due time passes.
 * The daemon is single-threaded (everything runs on the loop), so the
 * counters need no locking.
 */
#include "cutoffd.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#define DAY 86400
#define DEFAULT_HISTORY (180 * DAY)  /* as status.c: the page's window */
#define TYPE_TEXT "text/plain; version=0.0.4; charset=utf-8"
#define NSTATES 4

struct srccount {
	char *source;
	int64_t n;
};

static struct {
	uint64_t sent[2], deferred[2], failed[2];
	uint64_t scans;
	tstamp last_scan;
	bool reload_ok;
	tstamp reload_at;
	unsigned conf_gen;           /* bumped by every reload attempt */

	/* the cache of state-store gauges */
	bool valid;
	struct db *db;
	int64_t changes, data_version;
	unsigned gen;
	tstamp built, until;         /* missing counts hold in [built, until) */
	int64_t outbox[NSTATES][2], retrying[2];
	struct srccount *src;
	size_t nsrc;
	int64_t *missing;            /* per cycle of the conf it was built for */
	size_t ncycles;
} m = { .reload_ok = true };

/* ------------------------------------------------------------ counters */

void
metrics_notice(enum channel ch, enum metrics_outcome o)
{
	unsigned c = ch == CH_WEBHOOK ? 1 : 0;

	if (o == METRICS_SENT)
		m.sent[c]++;
	else if (o == METRICS_DEFERRED)
		m.deferred[c]++;
	else
		m.failed[c]++;
}

void
metrics_scanned(tstamp scan_time)
{
	m.scans++;
	m.last_scan = scan_time;
}

void
metrics_reloaded(bool ok, tstamp when)
{
	m.reload_ok = ok;
	m.reload_at = when;
	m.conf_gen++;
}

bool
metrics_allowed(const struct conf *c, const char *client)
{
	struct sockaddr_in6 s6;
	struct sockaddr_in s4;
	const struct sockaddr *sa;

	/* the server hands the address over as text: back to binary, and
	 * anything unparsable (unknown, a zone id) is refused */
	memset(&s4, 0, sizeof(s4));
	memset(&s6, 0, sizeof(s6));
	if (client != NULL && inet_pton(AF_INET, client, &s4.sin_addr) == 1) {
		s4.sin_family = AF_INET;
		sa = (const struct sockaddr *)&s4;
	} else if (client != NULL &&
		   inet_pton(AF_INET6, client, &s6.sin6_addr) == 1) {
		s6.sin6_family = AF_INET6;
		sa = (const struct sockaddr *)&s6;
	} else {
		return false;
	}
	if (c == NULL || c->daemon.metrics_allow == NULL)
		return cidr_loopback(sa);
	return cidr_match(c->daemon.metrics_allow, c->daemon.nmetrics_allow,
			  sa);
}

/* --------------------------------------------------------------- cache */

static void
cache_clear(void)
{
	for (size_t i = 0; i < m.nsrc; i++)
		free(m.src[i].source);
	free(m.src);
	free(m.missing);
	m.src = NULL;
	m.nsrc = 0;
	m.missing = NULL;
	m.ncycles = 0;
	m.valid = false;
}

static void
add_source(void *ctx, const char *source, int64_t n)
{
	(void)ctx;
	m.src = xrealloc(m.src, (m.nsrc + 1) * sizeof(*m.src));
	m.src[m.nsrc].source = xstrdup(source);
	m.src[m.nsrc].n = n;
	m.nsrc++;
}

struct missctx {
	const struct conf *c;
	const struct cycle *cy;
	int64_t reported;
};

static int
count_report(void *ctx, const struct submission *s)
{
	struct missctx *x = ctx;
	const struct unit *u = conf_unit(x->c, s->unit);

	/* a record for a unit since dropped from the cycle owes nothing */
	if (u != NULL && conf_cycle_has(x->cy, (size_t)(u - x->c->units)))
		x->reported++;
	return 0;
}

/* Units missing per cycle over the occurrences due in (now - history,
 * now], and until when that holds (the next due time, or the oldest
 * occurrence leaving the window). */
static int
count_missing(const struct conf *c, struct db *db, tstamp now)
{
	int64_t hist = c->daemon.history > 0 ? c->daemon.history
					     : DEFAULT_HISTORY;
	struct occ *occ = NULL, *next = NULL;
	size_t nocc = 0, nnext = 0;
	int rc = -1;

	m.ncycles = c->ncycles;
	m.missing = xcalloc(c->ncycles + 1, sizeof(*m.missing));
	m.until = now + hist;
	if (sched_occurrences(c, now - hist + 1, now + 1, &occ, &nocc) < 0)
		goto out;
	for (size_t i = 0; i < nocc; i++) {
		struct missctx x = { c, occ[i].cycle, 0 };
		size_t ci = (size_t)(occ[i].cycle - c->cycles);

		if (db_sub_foreach(db, occ[i].id, count_report, &x) < 0)
			goto out;
		if (ci < c->ncycles && (int64_t)occ[i].cycle->nunits > x.reported)
			m.missing[ci] += (int64_t)occ[i].cycle->nunits -
					 x.reported;
		if (occ[i].due_at + hist < m.until)
			m.until = occ[i].due_at + hist;
	}
	/* the first occurrence to come due changes the counts */
	if (sched_occurrences(c, now + 1, now + hist, &next, &nnext) < 0)
		goto out;
	if (nnext > 0 && next[0].due_at < m.until)
		m.until = next[0].due_at;
	rc = 0;
out:
	free(occ);
	free(next);
	return rc;
}

/* Reads the gauges of the state store unless the cached ones still hold. */
static int
refresh(struct app *a, tstamp now)
{
	int64_t changes = db_total_changes(a->db);
	int64_t dv = db_data_version(a->db);

	if (m.valid && m.db == a->db && m.changes == changes &&
	    m.data_version == dv && m.gen == m.conf_gen &&
	    now >= m.built && now < m.until &&
	    m.ncycles == a->conf->ncycles)
		return 0;
	cache_clear();
	if (outbox_counts(a->db, m.outbox, m.retrying) < 0 ||
	    db_sub_count_sources(a->db, add_source, NULL) < 0 ||
	    count_missing(a->conf, a->db, now) < 0) {
		cache_clear();
		return -1;
	}
	/* reading changes nothing, but take the counts after the reads */
	m.db = a->db;
	m.changes = db_total_changes(a->db);
	m.data_version = db_data_version(a->db);
	m.gen = m.conf_gen;
	m.built = now;     /* a clock set back (--now) rebuilds */
	m.valid = true;
	return 0;
}

/* -------------------------------------------------------------- render */

/* A label value: backslash, double quote and line feed escaped (the text
 * format's rules); anything else passes, the output is UTF-8. */
static void
put_label(struct buf *b, const char *v)
{
	for (; *v != '\0'; v++) {
		if (*v == '\\')
			buf_puts(b, "\\\\");
		else if (*v == '"')
			buf_puts(b, "\\\"");
		else if (*v == '\n')
			buf_puts(b, "\\n");
		else
			buf_putc(b, *v);
	}
}

static void
head(struct buf *b, const char *name, const char *type, const char *help)
{
	buf_printf(b, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

static void
per_channel(struct buf *b, const char *name, const char *help,
	    const uint64_t v[2])
{
	head(b, name, "counter", help);
	for (int c = 0; c < 2; c++)
		buf_printf(b, "%s{channel=\"%s\"} %llu\n", name,
			   channel_name((enum channel)c),
			   (unsigned long long)v[c]);
}

static bool
source_known(const char *s)
{
	for (size_t i = 0; i < m.nsrc; i++)
		if (strcmp(m.src[i].source, s) == 0)
			return true;
	return false;
}

int
metrics_render(struct app *a, struct buf *b)
{
	static const char *const known_sources[] = { "cli", "api", "page" };
	static const char *const state_label[NSTATES] = {
		[OUTBOX_PENDING] = "pending", [OUTBOX_SENT] = "sent",
		[OUTBOX_FAILED] = "failed", [OUTBOX_CANCELLED] = "cancelled",
	};
	const struct conf *c = a->conf;
	tstamp now = clock_now(&a->clk);
	bool store_ok = db_ok(a->db);
	bool have = store_ok && refresh(a, now) == 0;

	head(b, "cutoffd_build_info", "gauge",
	     "The running version (always 1).");
	buf_printf(b, "cutoffd_build_info{version=\"%s\"} 1\n",
		   CUTOFFD_VERSION);

	head(b, "cutoffd_state_store_up", "gauge",
	     "1 when the state store answers a read (as /healthz), else 0.");
	buf_printf(b, "cutoffd_state_store_up %d\n", store_ok ? 1 : 0);

	head(b, "cutoffd_config_last_reload_success", "gauge",
	     "1 when the last load of the configuration (start or SIGHUP) "
	     "succeeded, 0 when it was rejected.");
	buf_printf(b, "cutoffd_config_last_reload_success %d\n",
		   m.reload_ok ? 1 : 0);
	head(b, "cutoffd_config_last_reload_timestamp_seconds", "gauge",
	     "When the configuration was last loaded or a reload was "
	     "rejected, on the daemon's clock.");
	buf_printf(b, "cutoffd_config_last_reload_timestamp_seconds %lld\n",
		   (long long)m.reload_at);

	head(b, "cutoffd_last_scan_timestamp_seconds", "gauge",
	     "The time up to which the engine last scanned the plan, on the "
	     "daemon's clock (0 before the first scan).");
	buf_printf(b, "cutoffd_last_scan_timestamp_seconds %lld\n",
		   (long long)m.last_scan);

	per_channel(b, "cutoffd_notices_sent_total",
		    "Notices (outbox rows) delivered since start.", m.sent);
	per_channel(b, "cutoffd_notices_deferred_total",
		    "Temporary delivery failures since start, each to be "
		    "retried.", m.deferred);
	per_channel(b, "cutoffd_notices_failed_total",
		    "Notices that failed for good since start.", m.failed);

	head(b, "cutoffd_units", "gauge", "Units in the configuration.");
	buf_printf(b, "cutoffd_units %zu\n", c->nunits);

	head(b, "cutoffd_holidays_last_year", "gauge",
	     "The last year the holidays file gives days for (0: none).");
	buf_printf(b, "cutoffd_holidays_last_year %d\n", c->hol.last_year);

	/* without the state store, its gauges are absent rather than 0 */
	if (!have)
		return store_ok ? -1 : 0;

	head(b, "cutoffd_notices", "gauge",
	     "Notices in the outbox by state (retrying: pending after a "
	     "temporary failure) and channel.");
	for (int ch = 0; ch < 2; ch++) {
		const char *cn = channel_name((enum channel)ch);

		buf_printf(b, "cutoffd_notices{state=\"pending\",channel="
			   "\"%s\"} %lld\n", cn,
			   (long long)(m.outbox[OUTBOX_PENDING][ch] -
				       m.retrying[ch]));
		buf_printf(b, "cutoffd_notices{state=\"retrying\",channel="
			   "\"%s\"} %lld\n", cn, (long long)m.retrying[ch]);
		for (int st = OUTBOX_SENT; st < NSTATES; st++)
			buf_printf(b, "cutoffd_notices{state=\"%s\",channel="
				   "\"%s\"} %lld\n", state_label[st], cn,
				   (long long)m.outbox[st][ch]);
	}

	head(b, "cutoffd_submissions_total", "counter",
	     "Reports recorded in the state store, by source.");
	for (size_t i = 0; i < sizeof(known_sources) / sizeof(*known_sources);
	     i++)
		if (!source_known(known_sources[i]))
			buf_printf(b, "cutoffd_submissions_total{source=\"%s\"}"
				   " 0\n", known_sources[i]);
	for (size_t i = 0; i < m.nsrc; i++) {
		buf_puts(b, "cutoffd_submissions_total{source=\"");
		put_label(b, m.src[i].source);
		buf_printf(b, "\"} %lld\n", (long long)m.src[i].n);
	}

	head(b, "cutoffd_units_missing", "gauge",
	     "Units whose report is missing, summed over the cycle's "
	     "occurrences now overdue (within the status page's history).");
	for (size_t i = 0; i < c->ncycles && i < m.ncycles; i++) {
		buf_puts(b, "cutoffd_units_missing{cycle=\"");
		put_label(b, c->cycles[i].id);
		buf_printf(b, "\"} %lld\n", (long long)m.missing[i]);
	}
	if (a->imap != NULL)       /* [imap]: the mailbox poller's counters */
		imap_metrics_write(b);
	return 0;
}

/* --------------------------------------------------------------- route */

void
metrics_get(struct app *a, const struct http_req *q, struct http_resp *r)
{
	r->content_type = "text/plain; charset=utf-8";
	if (!metrics_allowed(a->conf, q->client)) {
		r->status = 403;
		buf_puts(&r->body, "forbidden\n");
		return;
	}
	/* what could be read is still worth a scrape */
	if (metrics_render(a, &r->body) < 0)
		log_warn("metrics: the state store could not be read");
	r->status = 200;
	r->content_type = TYPE_TEXT;
}
