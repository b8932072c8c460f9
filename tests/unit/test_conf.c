/* test_conf.c - configuration parsing, values, and FILE:LINE diagnostics. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "cutoffd.h"

/* A minimal valid configuration: 10 lines. */
#define BASE \
	"[secretariat]\n"           /* 1 */ \
	"email = s@example.vn\n"    /* 2 */ \
	"[policy p]\n"              /* 3 */ \
	"remind = -1d\n"            /* 4 */ \
	"[unit a]\n"                /* 5 */ \
	"name = A\n"                /* 6 */ \
	"email = a@example.vn\n"    /* 7 */ \
	"[cycle c]\n"               /* 8 */ \
	"title = T\n"               /* 9 */ \
	"due = 03-13\n"             /* 10 */

static struct conf *
parse(const char *text, struct diag *d)
{
	return conf_parse("t.conf", text, strlen(text), CONF_NO_FILES, d);
}

/* true when some message starts with prefix and contains part */
static bool
has(const struct diag *d, const char *prefix, const char *part)
{
	size_t i;

	for (i = 0; i < d->n; i++)
		if (strncmp(d->msg[i], prefix, strlen(prefix)) == 0 &&
		    strstr(d->msg[i], part) != NULL)
			return true;
	return false;
}

static void
dump(const struct diag *d)
{
	diag_print(d, stderr);
}

#define EXPECT(d, prefix, part) \
	do { \
		if (!has(d, prefix, part)) { \
			dump(d); \
			fail_msg("no diagnostic %s ... %s", prefix, part); \
		} \
	} while (0)

static void
test_city_example(void **state)
{
	struct diag d;
	struct conf *c;
	const struct policy *po;
	const struct cycle *cy;
	const struct unit *u;
	char *text, *sum;
	size_t len, i;

	(void)state;
	diag_init(&d);
	assert_int_equal(read_file("tests/unit/data/city.conf", 1 << 20,
				   &text, &len), 0);
	c = conf_parse("tests/unit/data/city.conf", text, len, CONF_NO_FILES,
		       &d);
	free(text);
	if (c == NULL)
		dump(&d);
	assert_non_null(c);
	assert_int_equal(d.n, 0);
	assert_int_equal(c->nunits, 11);
	assert_int_equal(c->ncycles, 4);
	assert_int_equal(c->npolicies, 1);
	assert_int_equal(c->ngroups, 4);
	assert_string_equal(c->groups[0], "doan-the");
	assert_string_equal(c->groups[3], "tu-phap-khoi");
	assert_string_equal(c->daemon.timezone, "Asia/Ho_Chi_Minh");
	assert_non_null(c->tz);
	assert_string_equal(c->daemon.state, "tests/unit/data/../var/state.db");
	assert_string_equal(c->daemon.holidays,
			    "tests/unit/data/holidays-vn.ics");
	assert_string_equal(c->daemon.templates, "tests/unit/data/templates");
	assert_string_equal(c->daemon.public_url, "http://127.0.0.1:8470");
	assert_string_equal(c->daemon.listen, "127.0.0.1:8470");
	assert_int_equal(c->daemon.workdays, 0x3e);
	assert_int_equal(c->daemon.horizon, 400 * 86400);
	assert_string_equal(c->daemon.lang, "vi");
	assert_int_equal(c->mail.transport, TRANSPORT_MAILDIR);
	assert_string_equal(c->mail.maildir, "tests/unit/data/../var/mail");
	assert_string_equal(c->mail.from, "Thường trực Ban Chỉ đạo 138 "
			    "Thành phố <thuongtruc@example.vn>");
	assert_int_equal(c->mail.parallel, 8);
	assert_true(c->mail.tls_verify);
	assert_int_equal(c->webhook.timeout, 10);
	assert_string_equal(c->secretariat.chief, "truongban@example.vn");

	po = &c->policies[0];
	assert_string_equal(po->id, "standard");
	assert_int_equal(po->line, 30);
	assert_int_equal(po->at, 480);
	assert_int_equal(po->nremind, 4);
	assert_int_equal(po->remind[0].days, -7);
	assert_int_equal(po->remind[3].days, 0);
	assert_int_equal(po->remind[2].aud, AUD_UNIT);
	assert_int_equal(po->nescalate, 3);
	assert_int_equal(po->escalate[0].days, 1);
	assert_int_equal(po->escalate[0].aud, AUD_HEAD);
	assert_int_equal(po->escalate[1].days, 3);
	assert_int_equal(po->escalate[1].aud, AUD_HEAD | AUD_SECRETARIAT);
	assert_int_equal(po->escalate[2].days, 7);
	assert_int_equal(po->escalate[2].aud, AUD_CHIEF);
	assert_int_equal(po->repeat, 3 * 86400);
	assert_int_equal(po->until, 30 * 86400);
	assert_int_equal(po->quiet_from, 18 * 60);
	assert_int_equal(po->quiet_to, 7 * 60 + 30);
	assert_int_equal(po->shift, SHIFT_NEXT);

	cy = conf_cycle(c, "q1");
	assert_non_null(cy);
	assert_ptr_equal(cy, &c->cycles[0]);
	assert_string_equal(cy->title, "Báo cáo quý I");
	assert_int_equal(cy->nyearly, 1);
	assert_int_equal(cy->yearly[0].m, 3);
	assert_int_equal(cy->yearly[0].d, 13);
	assert_int_equal(cy->nonce, 0);
	assert_null(cy->rrule);
	assert_true(cy->period_fixed);
	assert_int_equal(cy->period_from.m, 12);
	assert_int_equal(cy->period_from.d, 15);
	assert_int_equal(cy->period_to.m, 3);
	assert_int_equal(cy->period_to.d, 13);
	assert_int_equal(cy->due_minute, 1440);
	assert_ptr_equal(cy->policy, po);
	assert_int_equal(cy->nunits, 11);
	for (i = 0; i < cy->nunits; i++)
		assert_int_equal(cy->units[i], i);
	assert_string_equal(conf_cycle(c, "y")->title, "Báo cáo tổng kết năm");
	assert_null(conf_cycle(c, "q2"));

	/* units in file order, found by id */
	assert_string_equal(c->units[0].id, "ld-tbxh");
	u = conf_unit(c, "p-tan-loi");
	assert_non_null(u);
	assert_ptr_equal(u, &c->units[8]);
	assert_int_equal(u->line, 115);
	assert_string_equal(u->name, "Ban Chỉ đạo phường Tân Lợi");
	assert_int_equal(u->nemail, 1);
	assert_string_equal(u->email[0], "bcd.tanloi@example.vn");
	assert_string_equal(u->head, "chutich.tanloi@example.vn");
	assert_string_equal(u->webhook, "http://127.0.0.1:8471/hooks/tan-loi");
	assert_int_equal(u->ngroups, 1);
	assert_string_equal(u->groups[0], "phuong-xa");
	assert_null(conf_unit(c, "nope"));
	assert_null(conf_unit(c, "tu-phap")->webhook);

	sum = conf_summary(c);
	assert_string_equal(sum, "tests/unit/data/city.conf: 11 units, "
			    "4 cycles, 1 policy, 4 groups, 0 holidays, "
			    "timezone Asia/Ho_Chi_Minh");
	free(sum);
	conf_free(c);
	diag_free(&d);
}

static void
test_values(void **state)
{
	static const char text[] =
		"[daemon]\n"
		"workdays = mon,wed-fri\n"
		"public_url = https://x.example.vn/base/\n"
		"horizon = 30d\n"
		"history = 10d\n"
		"lang = en\n"
		"listen = [::1]:8080\n"
		"calendar_token = abc-123\n"
		"[mail]\n"
		"transport = maildir\n"
		"starttls = required\n"
		"tls_verify = no\n"
		"parallel = 3\n"
		"from = Văn phòng <vp@example.vn>\n"
		"retry_min = 1m\n"
		"url = smtps://mail.example.vn:465\n"
		"[webhook]\n"
		"format = text\n"
		"timeout = 30s\n"
		"[secretariat]\n"
		"email = s@example.vn\n"
		"chief = c@example.vn\n"
		"[policy p]\n"
		"at = 07:30\n"
		"remind = -7d, 0d unit head\n"
		"escalate = +1d +3d head secretariat +7d chief\n"
		"repeat = 2d\n"
		"until = 20d\n"
		"quiet = 22:00-06:00\n"
		"shift = previous-workday\n"
		"[policy q]\n"
		"quiet = none\n"
		"shift = none\n"
		"[cycle c]\n"
		"title = C\n"
		"due = 02-29 2025-08-15, 03-13 2024-01-05 03-13\n"
		"period = 12-15 .. 03-14\n"
		"time = 17:00\n"
		"policy = p\n"
		"units = @ward tu-phap\n"
		"[cycle r]\n"
		"title = R\n"
		"rrule = FREQ=MONTHLY;BYMONTHDAY=15\n"
		"start = 2024-01-15\n"
		"policy = q\n"
		"period = previous\n"
		"[unit z]\n"
		"name = Z\n"
		"email = z@example.vn\n"
		"groups = ward\n"
		"[unit x]\n"
		"name = X ; an inline comment\n"
		"email = x@example.vn\n"
		"[unit tu-phap]\n"
		"name = TP\n"
		"email = Tư pháp <tp@example.vn>, tp2@example.vn\n"
		"head = h@example.vn\n"
		"[unit y]\n"
		"name = Y\n"
		"email = y@example.vn\n"
		"groups = ward, other ward\n";
	struct diag d;
	struct conf *c;
	const struct policy *p;
	const struct cycle *cy;

	(void)state;
	diag_init(&d);
	c = parse(text, &d);
	if (c == NULL)
		dump(&d);
	assert_non_null(c);
	assert_int_equal(c->daemon.workdays, 1 << 1 | 1 << 3 | 1 << 4 | 1 << 5);
	assert_string_equal(c->daemon.public_url, "https://x.example.vn/base");
	assert_int_equal(c->daemon.horizon, 30 * 86400);
	assert_int_equal(c->daemon.history, 10 * 86400);
	assert_string_equal(c->daemon.lang, "en");
	assert_string_equal(c->daemon.listen, "[::1]:8080");
	assert_string_equal(c->daemon.calendar_token, "abc-123");
	assert_string_equal(c->daemon.templates, "templates");
	assert_int_equal(c->mail.transport, TRANSPORT_MAILDIR);
	assert_int_equal(c->mail.starttls, STARTTLS_REQUIRED);
	assert_false(c->mail.tls_verify);
	assert_int_equal(c->mail.parallel, 3);
	assert_int_equal(c->mail.retry_min, 60);
	assert_int_equal(c->mail.retry_max, 6 * 3600);
	assert_int_equal(c->mail.give_up, 3 * 86400);
	assert_int_equal(c->mail.timeout, 300);
	assert_string_equal(c->mail.from, "Văn phòng <vp@example.vn>");
	assert_string_equal(c->mail.url, "smtps://mail.example.vn:465");
	assert_int_equal(c->webhook.format, HOOK_TEXT);
	assert_int_equal(c->webhook.timeout, 30);

	p = &c->policies[0];
	assert_int_equal(p->at, 450);
	assert_int_equal(p->nremind, 2);
	assert_int_equal(p->remind[0].days, -7);
	assert_int_equal(p->remind[0].aud, AUD_UNIT);
	assert_int_equal(p->remind[1].days, 0);
	assert_int_equal(p->remind[1].aud, AUD_UNIT | AUD_HEAD);
	assert_int_equal(p->nescalate, 3);
	assert_int_equal(p->escalate[0].aud, AUD_HEAD);   /* the default */
	assert_int_equal(p->escalate[1].days, 3);
	assert_int_equal(p->escalate[1].aud, AUD_HEAD | AUD_SECRETARIAT);
	assert_int_equal(p->escalate[2].aud, AUD_CHIEF);
	assert_int_equal(p->repeat, 2 * 86400);
	assert_int_equal(p->until, 20 * 86400);
	assert_int_equal(p->quiet_from, 22 * 60);
	assert_int_equal(p->quiet_to, 6 * 60);
	assert_int_equal(p->shift, SHIFT_PREV);
	p = &c->policies[1];
	assert_int_equal(p->at, 480);
	assert_int_equal(p->quiet_from, -1);
	assert_int_equal(p->shift, SHIFT_NONE);
	assert_int_equal(p->nremind, 0);
	assert_int_equal(p->repeat, 0);
	assert_int_equal(p->until, 0);

	cy = conf_cycle(c, "c");
	assert_int_equal(cy->nyearly, 2);
	assert_int_equal(cy->yearly[0].m, 2);
	assert_int_equal(cy->yearly[0].d, 29);
	assert_int_equal(cy->yearly[1].m, 3);
	assert_int_equal(cy->yearly[1].d, 13);
	assert_int_equal(cy->nonce, 2);
	assert_int_equal(cy->once[0].y, 2024);
	assert_int_equal(cy->once[0].m, 1);
	assert_int_equal(cy->once[0].d, 5);
	assert_int_equal(cy->once[1].y, 2025);
	assert_int_equal(cy->once[1].m, 8);
	assert_int_equal(cy->period_to.d, 14);
	assert_int_equal(cy->due_minute, 17 * 60);
	assert_ptr_equal(cy->policy, &c->policies[0]);
	/* @ward = z, y; plus tu-phap; x left out; file order */
	assert_int_equal(cy->nunits, 3);
	assert_int_equal(cy->units[0], 0);
	assert_int_equal(cy->units[1], 2);
	assert_int_equal(cy->units[2], 3);

	cy = conf_cycle(c, "r");
	assert_string_equal(cy->rrule, "FREQ=MONTHLY;BYMONTHDAY=15");
	assert_int_equal(cy->start.y, 2024);
	assert_int_equal(cy->start.d, 15);
	assert_false(cy->period_fixed);
	assert_ptr_equal(cy->policy, &c->policies[1]);
	assert_int_equal(cy->nunits, 4);     /* default: * */

	assert_string_equal(conf_unit(c, "x")->name, "X");
	assert_int_equal(conf_unit(c, "tu-phap")->nemail, 2);
	assert_string_equal(conf_unit(c, "tu-phap")->email[0],
			    "Tư pháp <tp@example.vn>");
	assert_int_equal(conf_unit(c, "y")->ngroups, 2);
	assert_int_equal(c->ngroups, 2);
	assert_string_equal(c->groups[0], "other");

	/* 2024-03-13 was a Wednesday, 03-12 a Tuesday */
	assert_true(conf_workday(c, days_from_civil(2024, 3, 13)));
	assert_false(conf_workday(c, days_from_civil(2024, 3, 12)));
	assert_false(conf_workday(c, days_from_civil(2024, 3, 16)));

	assert_string_equal(audience_name(AUD_SECRETARIAT), "secretariat");
	assert_string_equal(audience_name(AUD_UNIT), "unit");
	assert_string_equal(channel_name(CH_WEBHOOK), "webhook");
	assert_string_equal(channel_name(CH_EMAIL), "email");
	conf_free(c);
	diag_free(&d);
}

static void
test_continuation_and_paths(void **state)
{
	static const char text[] =
		"[daemon]\n"
		"state = s.db\n"
		"maildir_unused = 1\n"
		BASE
		"[unit b]\n"
		"name = B\n"
		"email = b1@example.vn,\n"
		"   b2@example.vn\n"
		"\n"
		"   b3@example.vn ; comment\n";
	static const char text2[] =
		"[daemon]\n"
		"state = s.db\n"
		"holidays = /abs/h.ics\n"
		"admin_token_file = tok\n"
		"[mail]\n"
		"maildir = m\n"
		BASE
		"[unit b]\n"
		"name = B\n"
		"email = b1@example.vn,\n"
		"   b2@example.vn\n"
		"\n"
		"   b3@example.vn ; comment\n";
	struct diag d;
	struct conf *c;
	const struct unit *u;

	(void)state;
	diag_init(&d);
	c = parse(text, &d);
	assert_null(c);
	EXPECT(&d, "t.conf:3: ", "unknown key 'maildir_unused' in [daemon]");
	diag_free(&d);

	c = conf_parse("/etc/x/cutoffd.conf", text2, strlen(text2),
		       CONF_NO_FILES, &d);
	if (c == NULL)
		dump(&d);
	assert_non_null(c);
	assert_string_equal(c->dir, "/etc/x");
	assert_string_equal(c->daemon.state, "/etc/x/s.db");
	assert_string_equal(c->daemon.holidays, "/abs/h.ics");
	assert_string_equal(c->daemon.admin_token_file, "/etc/x/tok");
	assert_null(c->daemon.admin_token);      /* CONF_NO_FILES */
	assert_string_equal(c->mail.maildir, "/etc/x/m");
	assert_string_equal(c->daemon.templates, "/etc/x/templates");
	/* default From: the secretariat */
	assert_string_equal(c->mail.from, "s@example.vn");
	u = conf_unit(c, "b");
	assert_int_equal(u->nemail, 3);
	assert_string_equal(u->email[1], "b2@example.vn");
	assert_string_equal(u->email[2], "b3@example.vn");
	conf_free(c);
	diag_free(&d);
}

static void
test_errors(void **state)
{
	static const char text[] =
		"[daemon]\n"                          /* 1 */
		"timezone = Asia/Ho_Chi_Minh\n"       /* 2 */
		"bogus = 1\n"                         /* 3 */
		"timezone = UTC\n"                    /* 4 */
		"[nosuch]\n"                          /* 5 */
		"x = 1\n"                             /* 6 */
		"[secretariat]\n"                     /* 7 */
		"email = s@example.vn\n"              /* 8 */
		"[policy p]\n"                        /* 9 */
		"escalate = +1d head, +1d chief\n"    /* 10 */
		"quiet = 25:00-07:00\n"               /* 11 */
		"[unit a]\n"                          /* 12 */
		"name = A\n"                          /* 13 */
		"email = not-an-address\n"            /* 14 */
		"[unit Bad]\n"                        /* 15 */
		"[unit b]\n"                          /* 16 */
		"[unit a]\n"                          /* 17 */
		"name = A2\n"                         /* 18 */
		"email = a2@example.vn\n"             /* 19 */
		"[cycle c]\n"                         /* 20 */
		"title = T\n"                         /* 21 */
		"due = 13-03\n"                       /* 22 */
		"units = a @nogroup zz\n"             /* 23 */
		"policy = nope\n"                     /* 24 */
		"[cycle d]\n"                         /* 25 */
		"units = *\n"                         /* 26 */
		"[cycle e]\n"                         /* 27 */
		"title = E\n"                         /* 28 */
		"rrule = FREQ=YEARLY;BYMONTH=3\n"     /* 29 */
		"[cycle f]\n"                         /* 30 */
		"title = F\n"                         /* 31 */
		"due = 03-13\n"                       /* 32 */
		"rrule = FREQ=YEARLY\n"               /* 33 */
		"start = 2024-01-01\n"                /* 34 */
		"[daemon]\n"                          /* 35 */
		"no equals here\n"                    /* 36 */
		"[cycle g]\n"                         /* 37 */
		"title = G\n"                         /* 38 */
		"due = 02-29, 2024-02-30\n"           /* 39 */
		"start = 2024-01-01\n"                /* 40 */
		"[cycle h]\n"                         /* 41 */
		"title = H\n"                         /* 42 */
		"rrule = FREQ=SOMETIMES\n"            /* 43 */
		"start = 2024-01-01\n"                /* 44 */
		"[policy q]\n"                        /* 45 */
		"remind = -3d unit, secretariat -5d\n" /* 46 */
		"escalate = 0d\n"                     /* 47 */
		"at = 24:00\n"                        /* 48 */
		"repeat = 36h\n"                      /* 49 */
		"[unit c]\n"                          /* 50 */
		"name = C\n"                          /* 51 */
		"email = c@example.vn\n"              /* 52 */
		"head = Head <h@example.vn\n"         /* 53 */
		"webhook = ftp://x\n"                 /* 54 */
		"groups = Bad_Group\n"                /* 55 */
		"[mail]\n"                            /* 56 */
		"url = http://mail\n"                 /* 57 */
		"starttls = maybe\n"                  /* 58 */
		"parallel = 65\n"                     /* 59 */
		"from = a@b.vn, c@d.vn\n"             /* 60 */
		"[cycle i]\n"                         /* 61 */
		"title = I\n"                         /* 62 */
		"due = 03-13\n"                       /* 63 */
		"policy = p\n"                        /* 64 */
		"[webhook]\n"                         /* 65 */
		"format = fancy\n"                    /* 66 */
		"=novalue\n"                          /* 67 */
		"[cycle]\n"                           /* 68 */
		"[daemon\n";                          /* 69 */
	struct diag d;
	struct conf *c;

	(void)state;
	diag_init(&d);
	c = parse(text, &d);
	assert_null(c);
	EXPECT(&d, "t.conf:3: ", "unknown key 'bogus' in [daemon]");
	EXPECT(&d, "t.conf:4: ", "duplicate key 'timezone' (first at line 2)");
	EXPECT(&d, "t.conf:5: ", "unknown section [nosuch]");
	EXPECT(&d, "t.conf:10: ", "strictly increasing");
	EXPECT(&d, "t.conf:11: ", "quiet: invalid value '25:00-07:00'");
	EXPECT(&d, "t.conf:14: ", "email: invalid value 'not-an-address'");
	EXPECT(&d, "t.conf:15: ", "invalid unit id 'Bad'");
	EXPECT(&d, "t.conf:16: ", "unit 'b' has no name");
	EXPECT(&d, "t.conf:16: ", "unit 'b' has no email");
	EXPECT(&d, "t.conf:17: ", "duplicate section [unit a] (first at "
	       "line 12)");
	EXPECT(&d, "t.conf:22: ", "due: invalid value '13-03'");
	EXPECT(&d, "t.conf:23: ", "undefined group 'nogroup'");
	EXPECT(&d, "t.conf:23: ", "undefined unit 'zz'");
	EXPECT(&d, "t.conf:24: ", "undefined policy 'nope'");
	EXPECT(&d, "t.conf:25: ", "cycle 'd' has no title");
	EXPECT(&d, "t.conf:25: ", "needs due = or rrule =");
	EXPECT(&d, "t.conf:29: ", "rrule: needs start =");
	EXPECT(&d, "t.conf:33: ", "due or rrule, not both (due at line 32)");
	EXPECT(&d, "t.conf:35: ", "duplicate section [daemon] (first at "
	       "line 1)");
	EXPECT(&d, "t.conf:36: ", "expected 'key = value'");
	EXPECT(&d, "t.conf:39: ", "due: invalid value '2024-02-30'");
	EXPECT(&d, "t.conf:40: ", "start: only used with rrule");
	EXPECT(&d, "t.conf:43: ", "rrule: invalid value 'FREQ=SOMETIMES'");
	/* two policies: a cycle must name one */
	EXPECT(&d, "t.conf:27: ", "needs policy = (2 policies are defined)");
	EXPECT(&d, "t.conf:46: ", "remind: offsets must be strictly "
	       "increasing");
	EXPECT(&d, "t.conf:47: ", "escalation offsets must be after the due");
	EXPECT(&d, "t.conf:48: ", "at: invalid value '24:00'");
	EXPECT(&d, "t.conf:49: ", "repeat: invalid value '36h'");
	EXPECT(&d, "t.conf:53: ", "head: invalid value 'Head <h@example.vn'");
	EXPECT(&d, "t.conf:54: ", "webhook: invalid value 'ftp://x'");
	EXPECT(&d, "t.conf:55: ", "groups: invalid value 'Bad_Group'");
	EXPECT(&d, "t.conf:57: ", "url: invalid value 'http://mail'");
	EXPECT(&d, "t.conf:58: ", "starttls: invalid value 'maybe'");
	EXPECT(&d, "t.conf:59: ", "parallel: invalid value '65'");
	EXPECT(&d, "t.conf:60: ", "from: invalid value");
	EXPECT(&d, "t.conf:66: ", "format: invalid value 'fancy'");
	EXPECT(&d, "t.conf:67: ", "missing key name");
	EXPECT(&d, "t.conf:68: ", "section [cycle] needs an id");
	EXPECT(&d, "t.conf:69: ", "missing ']'");
	diag_free(&d);
}

static void
test_errors_sorted_and_clean_lines(void **state)
{
	static const char text[] =
		BASE
		"[unit b]\n"                       /* 11 */
		"email = b@example.vn\n"           /* 12 */
		"nmae = typo\n";                   /* 13 */
	struct diag d;
	struct conf *c;

	(void)state;
	diag_init(&d);
	c = parse(text, &d);
	assert_null(c);
	/* exactly two problems, in line order */
	assert_int_equal(d.n, 2);
	assert_string_equal(d.msg[0], "t.conf:11: unit 'b' has no name");
	assert_string_equal(d.msg[1], "t.conf:13: unknown key 'nmae' in [unit]");
	diag_free(&d);

	/* the base itself is valid, and a single policy is the default */
	c = parse(BASE, &d);
	assert_non_null(c);
	assert_int_equal(d.n, 0);
	assert_ptr_equal(c->cycles[0].policy, &c->policies[0]);
	conf_free(c);
	diag_free(&d);
}

static void
test_long_line(void **state)
{
	char text[1024], name[300];
	struct diag d;
	struct conf *c;

	(void)state;
	memset(name, 'x', sizeof name);
	/* "name = " + 243 = 250 bytes */
	snprintf(text, sizeof text, BASE "[unit b]\nname = %.243s\n"
		 "email = b@example.vn\n", name);
	diag_init(&d);
	c = parse(text, &d);
	assert_null(c);
	EXPECT(&d, "t.conf:12: ", "line too long (250 bytes; at most 199)");
	/* no cascade: the dropped line isn't reported as a missing name */
	assert_int_equal(d.n, 1);
	diag_free(&d);

	/* 199 bytes is still fine */
	snprintf(text, sizeof text, BASE "[unit b]\nname = %.192s\n"
		 "email = b@example.vn\n", name);
	c = parse(text, &d);
	if (c == NULL)
		dump(&d);
	assert_non_null(c);
	assert_int_equal(strlen(conf_unit(c, "b")->name), 192);
	conf_free(c);
	diag_free(&d);
}

static void
test_bytes(void **state)
{
	static const char crlf[] = "[secretariat]\r\nemail = s@example.vn\r\n";
	static const char text[] =
		BASE
		"[unit b]\n"                       /* 11 */
		"name = B\xff\n"                   /* 12 */
		"email = b@example.vn\n"           /* 13 */
		"[unit c]\n"                       /* 14 */
		"name = C\rX\n"                    /* 15 */
		"email = c@example.vn\n"           /* 16 */
		"[unit \xc3\x28]\n"                /* 17 */
		"name = D\x1b[31m\n";              /* 18 */
	struct diag d;
	struct conf *c;
	char buf[64];

	(void)state;
	diag_init(&d);
	c = parse(text, &d);
	assert_null(c);
	EXPECT(&d, "t.conf:12: ", "invalid UTF-8");
	EXPECT(&d, "t.conf:15: ", "carriage return");
	EXPECT(&d, "t.conf:17: ", "invalid UTF-8");
	EXPECT(&d, "t.conf:18: ", "control character");
	diag_free(&d);

	c = parse(crlf, &d);
	assert_null(c);
	EXPECT(&d, "t.conf:1: ", "CR LF");
	assert_false(has(&d, "t.conf:2: ", "CR LF"));    /* told once */
	diag_free(&d);

	/* NUL inside the text */
	memcpy(buf, "[secretariat]\nemail = s@\0x\n", 27);
	c = conf_parse("t.conf", buf, 27, CONF_NO_FILES, &d);
	assert_null(c);
	EXPECT(&d, "t.conf:2: ", "NUL byte");
	diag_free(&d);

	/* a UTF-8 BOM is fine */
	c = parse("\xEF\xBB\xBF" BASE, &d);
	assert_non_null(c);
	conf_free(c);
	diag_free(&d);
}

static void
test_global_errors(void **state)
{
	struct diag d;
	struct conf *c;

	(void)state;
	diag_init(&d);
	/* an empty file is the installed, inert configuration: valid, no
	 * unit, no cycle, nothing chased */
	c = parse("", &d);
	assert_non_null(c);
	assert_int_equal(c->nunits, 0);
	assert_int_equal(c->ncycles, 0);
	assert_int_equal(d.n, 0);
	conf_free(c);
	/* units need a secretariat to escalate to */
	c = parse("[unit a]\nname = A\nemail = a@example.vn\n", &d);
	assert_null(c);
	EXPECT(&d, "t.conf: ", "missing [secretariat] section");
	assert_int_equal(d.n, 1);
	diag_free(&d);
	diag_init(&d);

	c = parse("x = 1\n" BASE, &d);
	assert_null(c);
	EXPECT(&d, "t.conf:1: ", "outside of any [section]");
	diag_free(&d);

	c = parse("[daemon]\ntimezone = Nowhere/Land\n" BASE, &d);
	assert_null(c);
	EXPECT(&d, "t.conf:2: ", "cannot load zone 'Nowhere/Land'");
	diag_free(&d);

	c = parse("[daemon]\ntimezone = ../../etc/passwd\n" BASE, &d);
	assert_null(c);
	EXPECT(&d, "t.conf:2: ", "timezone: invalid value");
	diag_free(&d);

	/* chief used, none configured: reported at the escalate line */
	c = parse(BASE "[policy q]\nescalate = +1d chief\n", &d);
	assert_null(c);
	EXPECT(&d, "t.conf:12: ", "'chief' is used");
	EXPECT(&d, "t.conf:8: ", "needs policy =");
	diag_free(&d);

	/* no policy at all */
	c = parse("[secretariat]\nemail = s@example.vn\n[unit a]\nname = A\n"
		  "email = a@example.vn\n[cycle c]\ntitle = T\ndue = 01-01\n",
		  &d);
	assert_null(c);
	EXPECT(&d, "t.conf:6: ", "no [policy ID] section");
	diag_free(&d);

	/* the secretariat needs an email; rrule that yields nothing */
	c = parse("[secretariat]\nname = S\n[policy p]\n[unit a]\nname = A\n"
		  "email = a@example.vn\n[cycle c]\ntitle = T\n"
		  "rrule = FREQ=YEARLY;BYMONTH=2;BYMONTHDAY=30\n"
		  "start = 2024-01-01\n", &d);
	assert_null(c);
	EXPECT(&d, "t.conf:1: ", "[secretariat] has no email");
	EXPECT(&d, "t.conf:9: ", "rrule:");
	diag_free(&d);
}

static char *
write_tmp(const char *dir, const char *name, const char *text)
{
	char *path = xasprintf("%s/%s", dir, name);
	FILE *f = fopen(path, "w");

	assert_non_null(f);
	fputs(text, f);
	fclose(f);
	return path;
}

static void
test_load_files(void **state)
{
	char dir[] = "/tmp/test_conf.XXXXXX", cwd[4096], *conf, *text;
	char *paths[4];
	struct diag d;
	struct conf *c;

	(void)state;
	assert_non_null(mkdtemp(dir));
	assert_non_null(getcwd(cwd, sizeof cwd));
	paths[0] = write_tmp(dir, "admin.token",
			     "0123456789abcdef0123456789abcdef\n");
	paths[1] = write_tmp(dir, "smtp.pw", "pa ss\n");
	/* "whsec_" + base64("secret-key!") */
	paths[2] = write_tmp(dir, "hook.key", "whsec_c2VjcmV0LWtleSE=\n");
	text = xasprintf("[daemon]\nholidays = %s/conf/holidays-vn.ics\n"
			 "templates = %s/conf/templates\n"
			 "admin_token_file = admin.token\n"
			 "[mail]\npassword_file = smtp.pw\n"
			 "[webhook]\nsecret_file = hook.key\n" BASE, cwd, cwd);
	conf = write_tmp(dir, "cutoffd.conf", text);
	free(text);
	diag_init(&d);
	c = conf_load(conf, 0, &d);
	if (c == NULL)
		dump(&d);
	assert_non_null(c);
	assert_string_equal(c->daemon.admin_token,
			    "0123456789abcdef0123456789abcdef");
	assert_string_equal(c->mail.password, "pa ss");
	assert_int_equal(c->webhook.secret_len, 11);
	assert_memory_equal(c->webhook.secret, "secret-key!", 11);
	assert_true(c->hol.n > 0);
	assert_non_null(c->tmpl);
	conf_free(c);

	/* a short token and a missing file, each at its key's line */
	free(write_tmp(dir, "admin.token", "short\n"));
	unlink(paths[1]);
	c = conf_load(conf, 0, &d);
	assert_null(c);
	text = xasprintf("%s:4: ", conf);
	EXPECT(&d, text, "at least 32 characters (it has 5");
	free(text);
	text = xasprintf("%s:6: ", conf);
	EXPECT(&d, text, "password_file: cannot read");
	free(text);
	diag_free(&d);

	/* a missing config file */
	c = conf_load("/nonexistent/cutoffd.conf", 0, &d);
	assert_null(c);
	EXPECT(&d, "/nonexistent/cutoffd.conf: ", "cannot read");
	diag_free(&d);

	unlink(paths[0]);
	unlink(paths[2]);
	unlink(conf);
	rmdir(dir);
	free(paths[0]);
	free(paths[1]);
	free(paths[2]);
	free(conf);
}

static void
test_many_units(void **state)
{
	struct buf b;
	struct diag d;
	struct conf *c;
	struct timespec t0, t1;
	double ms;
	char id[32];
	int i;

	(void)state;
	buf_init(&b);
	buf_puts(&b, "[secretariat]\nemail = s@example.vn\n[policy p]\n"
		 "[cycle c]\ntitle = T\ndue = 03-13\nunits = @g1 u-00042\n");
	for (i = 0; i < 10000; i++)
		buf_printf(&b, "[unit u-%05d]\nname = Unit %d\n"
			   "email = u%d@example.vn\nhead = h%d@example.vn\n"
			   "groups = g%d\n", i, i, i, i, i % 7);
	diag_init(&d);
	clock_gettime(CLOCK_MONOTONIC, &t0);
	c = conf_parse("big.conf", b.p, b.len, CONF_NO_FILES, &d);
	clock_gettime(CLOCK_MONOTONIC, &t1);
	ms = (t1.tv_sec - t0.tv_sec) * 1e3 + (t1.tv_nsec - t0.tv_nsec) / 1e6;
	fprintf(stderr, "10000 units parsed in %.1f ms\n", ms);
	if (c == NULL)
		dump(&d);
	assert_non_null(c);
	/* generous: this runs under ASan; unsanitised it is ~10x faster */
	assert_true(ms < 1000);
	assert_int_equal(c->nunits, 10000);
	assert_int_equal(c->ngroups, 7);
	for (i = 0; i < 10000; i += 997) {
		snprintf(id, sizeof id, "u-%05d", i);
		assert_ptr_equal(conf_unit(c, id), &c->units[i]);
	}
	assert_null(conf_unit(c, "u-10000"));
	/* g1: units 1, 8, 15, ...; plus 42 (in g0) */
	assert_int_equal(c->cycles[0].nunits, 1429 + 1);
	assert_int_equal(c->cycles[0].units[0], 1);
	assert_int_equal(c->cycles[0].units[6], 42);
	conf_free(c);
	diag_free(&d);
	buf_free(&b);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_city_example),
		cmocka_unit_test(test_values),
		cmocka_unit_test(test_continuation_and_paths),
		cmocka_unit_test(test_errors),
		cmocka_unit_test(test_errors_sorted_and_clean_lines),
		cmocka_unit_test(test_long_line),
		cmocka_unit_test(test_bytes),
		cmocka_unit_test(test_global_errors),
		cmocka_unit_test(test_load_files),
		cmocka_unit_test(test_many_units),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
