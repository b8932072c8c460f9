/* test_metrics.c - the /metrics text from a real state store: outbox
 * gauges, reports per source, missing units, the cache following every
 * change, label escaping, and who may read it. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "cutoffd.h"
#include "fixture.h"

static const char conf_text[] =
	"[daemon]\n"
	"timezone = Asia/Ho_Chi_Minh\n"
	"history = 30d\n"
	"[mail]\n"
	"transport = maildir\n"
	"maildir = mail\n"
	"from = Thường trực <thuongtruc@example.vn>\n"
	"[secretariat]\n"
	"name = Thường trực\n"
	"email = thuongtruc@example.vn\n"
	"[policy standard]\n"
	"at = 08:00\n"
	"remind = -7d 0d\n"
	"[cycle q1]\n"
	"title = Báo cáo quý I\n"
	"due = 03-13\n"
	"policy = standard\n"
	"[cycle h1]\n"
	"title = Báo cáo 6 tháng\n"
	"due = 06-13\n"
	"policy = standard\n"
	"[unit tu-phap]\n"
	"name = Phòng Tư pháp\n"
	"email = tuphap@example.vn\n"
	"[unit gd-dt]\n"
	"name = Phòng Giáo dục\n"
	"email = gddt@example.vn\n"
	"[unit mttq]\n"
	"name = Mặt trận\n"
	"email = mttq@example.vn\n";

struct fx {
	struct fix *f;
	struct app a;
	struct buf b;
};

static tstamp
at(int y, int m, int d, int h)
{
	return (tstamp)days_from_civil(y, m, d) * 86400 + (h - 7) * 3600;
}

static int
setup(void **state)
{
	struct fx *x = xcalloc(1, sizeof(*x));

	x->f = fix_new(conf_text);
	x->a.conf = x->f->c;
	x->a.db = x->f->db;
	/* 14/03/2024 09:00, the day after q1 was due */
	clock_init(&x->a.clk, true, at(2024, 3, 14, 9), 1.0);
	buf_init(&x->b);
	*state = x;
	return 0;
}

static int
teardown(void **state)
{
	struct fx *x = *state;

	buf_free(&x->b);
	fix_free(x->f);
	free(x);
	return 0;
}

/* The value of one sample line, e.g. "cutoffd_units_missing{cycle=\"q1\"}" */
static double
sample(struct fx *x, const char *series)
{
	const char *p;
	size_t n = strlen(series);

	buf_reset(&x->b);
	assert_int_equal(metrics_render(&x->a, &x->b), 0);
	for (p = buf_str(&x->b); p && *p; p = strchr(p, '\n') ? strchr(p, '\n') + 1 : NULL) {
		if (strncmp(p, series, n) == 0 && p[n] == ' ')
			return strtod(p + n + 1, NULL);
	}
	fail_msg("no sample %s in:\n%s", series, buf_str(&x->b));
	return -1;
}

static struct notice
mk(const char *unit, const char *step, enum channel ch)
{
	struct notice n;

	memset(&n, 0, sizeof(n));
	snprintf(n.occurrence, sizeof(n.occurrence), "q1/2024-03-13");
	snprintf(n.unit, sizeof(n.unit), "%s", unit);
	snprintf(n.step, sizeof(n.step), "%s", step);
	n.aud = AUD_UNIT;
	n.ch = ch;
	n.recipients = ch == CH_EMAIL ? "x@example.vn" : "http://127.0.0.1:1/h";
	n.send_at = at(2024, 3, 6, 8);
	snprintf(n.message_id, sizeof(n.message_id), "<%s.%s.%d@t>", unit,
		 step, (int)ch);
	return n;
}

static int64_t
row_id(struct db *db, const char *unit, const char *step, enum channel ch)
{
	struct notice n;
	int64_t id;

	assert_int_equal(outbox_get(db, "q1/2024-03-13", unit, step, AUD_UNIT,
				    ch, &n, NULL), 0);
	id = n.id;
	notice_clear(&n);
	return id;
}

static void
test_gauges_follow_the_store(void **state)
{
	struct fx *x = *state;
	struct db *db = x->a.db;
	struct notice n;
	tstamp now = at(2024, 3, 14, 9);

	assert_true(strstr((buf_reset(&x->b), metrics_render(&x->a, &x->b),
			    buf_str(&x->b)),
			   "# TYPE cutoffd_notices gauge\n") != NULL);
	assert_true(sample(x, "cutoffd_units_missing{cycle=\"q1\"}") == 3);
	assert_true(sample(x, "cutoffd_units_missing{cycle=\"h1\"}") == 0);
	assert_true(sample(x, "cutoffd_notices{state=\"pending\",channel=\"email\"}") == 0);
	assert_true(sample(x, "cutoffd_submissions_total{source=\"api\"}") == 0);
	assert_true(sample(x, "cutoffd_state_store_up") == 1);

	n = mk("tu-phap", "remind-7d", CH_EMAIL);
	assert_int_equal(outbox_add(db, &n, now), 1);
	n = mk("gd-dt", "remind-7d", CH_EMAIL);
	assert_int_equal(outbox_add(db, &n, now), 1);
	n = mk("mttq", "remind-7d", CH_EMAIL);
	assert_int_equal(outbox_add(db, &n, now), 1);
	n = mk("mttq", "remind-7d", CH_WEBHOOK);
	assert_int_equal(outbox_add(db, &n, now), 1);
	assert_true(sample(x, "cutoffd_notices{state=\"pending\",channel=\"email\"}") == 3);
	assert_true(sample(x, "cutoffd_notices{state=\"pending\",channel=\"webhook\"}") == 1);

	assert_int_equal(outbox_mark_sent(db, row_id(db, "tu-phap", "remind-7d",
						      CH_EMAIL), now), 0);
	assert_int_equal(outbox_mark_failed(db, row_id(db, "gd-dt", "remind-7d",
							CH_EMAIL), now, "550"), 0);
	assert_int_equal(outbox_mark_retry(db, row_id(db, "mttq", "remind-7d",
						       CH_EMAIL), now + 600,
					   "451"), 0);
	assert_true(sample(x, "cutoffd_notices{state=\"sent\",channel=\"email\"}") == 1);
	assert_true(sample(x, "cutoffd_notices{state=\"failed\",channel=\"email\"}") == 1);
	assert_true(sample(x, "cutoffd_notices{state=\"retrying\",channel=\"email\"}") == 1);
	assert_true(sample(x, "cutoffd_notices{state=\"pending\",channel=\"email\"}") == 0);
	assert_true(sample(x, "cutoffd_notices{state=\"pending\",channel=\"webhook\"}") == 1);

	/* reports: the missing count and the sources, an odd source escaped */
	assert_int_equal(db_sub_record(db, "q1/2024-03-13", "tu-phap", now,
				       "api", NULL, now), 0);
	assert_int_equal(db_sub_record(db, "q1/2024-03-13", "gd-dt", now,
				       "we\"ird\\", NULL, now), 0);
	assert_true(sample(x, "cutoffd_units_missing{cycle=\"q1\"}") == 1);
	assert_true(sample(x, "cutoffd_submissions_total{source=\"api\"}") == 1);
	assert_true(sample(x, "cutoffd_submissions_total{source=\"we\\\"ird\\\\\"}") == 1);
	/* an undo brings the unit back to missing; the counter stays */
	assert_int_equal(db_sub_undo(db, "q1/2024-03-13", "tu-phap", "api",
				     now), 0);
	assert_true(sample(x, "cutoffd_units_missing{cycle=\"q1\"}") == 2);
	assert_true(sample(x, "cutoffd_submissions_total{source=\"api\"}") == 1);
}

/* The missing count changes when a due time passes, with no write. */
static void
test_missing_follows_the_clock(void **state)
{
	struct fx *x = *state;

	clock_init(&x->a.clk, true, at(2024, 3, 13, 12), 1.0);
	assert_true(sample(x, "cutoffd_units_missing{cycle=\"q1\"}") == 0);
	/* q1 is due at the end of 13/03 */
	clock_init(&x->a.clk, true, at(2024, 3, 14, 0) + 1, 1.0);
	assert_true(sample(x, "cutoffd_units_missing{cycle=\"q1\"}") == 3);
	/* and leaves the 30-day window */
	clock_init(&x->a.clk, true, at(2024, 4, 13, 1), 1.0);
	assert_true(sample(x, "cutoffd_units_missing{cycle=\"q1\"}") == 0);
}

static void
test_counters_and_access(void **state)
{
	struct fx *x = *state;
	struct cidr r[2];
	const char *why;
	double sent = sample(x, "cutoffd_notices_sent_total{channel=\"webhook\"}");

	metrics_notice(CH_WEBHOOK, METRICS_SENT);
	metrics_notice(CH_EMAIL, METRICS_DEFERRED);
	metrics_notice(CH_EMAIL, METRICS_FAILED);
	assert_true(sample(x, "cutoffd_notices_sent_total{channel=\"webhook\"}") == sent + 1);
	metrics_reloaded(false, 1234);
	assert_true(sample(x, "cutoffd_config_last_reload_success") == 0);
	assert_true(sample(x, "cutoffd_config_last_reload_timestamp_seconds") == 1234);
	metrics_reloaded(true, 1235);
	assert_true(sample(x, "cutoffd_config_last_reload_success") == 1);
	metrics_scanned(99);
	assert_true(sample(x, "cutoffd_last_scan_timestamp_seconds") == 99);

	/* loopback by default */
	assert_true(metrics_allowed(x->a.conf, "127.0.0.1"));
	assert_true(metrics_allowed(x->a.conf, "127.9.9.9"));
	assert_true(metrics_allowed(x->a.conf, "::1"));
	assert_false(metrics_allowed(x->a.conf, "192.0.2.1"));
	assert_false(metrics_allowed(x->a.conf, "?"));
	assert_false(metrics_allowed(x->a.conf, NULL));
	/* a list replaces it */
	assert_int_equal(cidr_parse("127.0.0.1/32", &r[0], &why), 0);
	assert_int_equal(cidr_parse("2001:db8::/32", &r[1], &why), 0);
	x->a.conf->daemon.metrics_allow = r;
	x->a.conf->daemon.nmetrics_allow = 2;
	assert_true(metrics_allowed(x->a.conf, "127.0.0.1"));
	assert_false(metrics_allowed(x->a.conf, "127.0.0.2"));
	assert_false(metrics_allowed(x->a.conf, "::1"));
	assert_true(metrics_allowed(x->a.conf, "2001:db8::7"));
	x->a.conf->daemon.metrics_allow = NULL;
	x->a.conf->daemon.nmetrics_allow = 0;
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_gauges_follow_the_store,
						setup, teardown),
		cmocka_unit_test_setup_teardown(test_missing_follows_the_clock,
						setup, teardown),
		cmocka_unit_test_setup_teardown(test_counters_and_access,
						setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
