/*
 * test_status.c - the status model, `cutoffctl status`, /status.json, the
 * page and the submissions API, through http_dispatch (the route table)
 * with hand-made requests (no HTTP server).  Includes api.c and status.c
 * to reach their statics.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "../../daemon/api.c"
#include "../../daemon/status.c"

#include <sqlite3.h>
#include <strings.h>

#include <dirent.h>
#include <unistd.h>

static const char conf_text[] =
	"[daemon]\n"
	"timezone = Asia/Ho_Chi_Minh\n"
	"state = /nonexistent/state.db\n"
	"listen = 127.0.0.1:8470\n"
	"public_url = http://127.0.0.1:8470\n"
	"history = 200d\n"
	"\n"
	"[mail]\n"
	"transport = maildir\n"
	"maildir = /nonexistent/mail\n"
	"from = Thường trực <thuongtruc@example.vn>\n"
	"\n"
	"[secretariat]\n"
	"name = Văn phòng <Ban> & Co\n"
	"email = thuongtruc@example.vn\n"
	"chief = truongban@example.vn\n"
	"\n"
	"[policy p]\n"
	"at = 08:00\n"
	"remind = -1d\n"
	"\n"
	"[cycle q1]\n"
	"title = Báo cáo quý I\n"
	"due = 03-13\n"
	"time = 17:00\n"
	"period = 12-15 .. 03-13\n"
	"policy = p\n"
	"units = *\n"
	"\n"
	"[cycle m]\n"
	"title = Kế hoạch riêng\n"
	"due = 2024-04-10\n"
	"policy = p\n"
	"units = @g2\n"
	"\n"
	"[unit a]\n"
	"name = Phòng <Tư pháp>\n"
	"email = a@example.vn\n"
	"groups = g1\n"
	"\n"
	"[unit b]\n"
	"name = Phòng B\n"
	"email = b@example.vn\n"
	"groups = g1\n"
	"\n"
	"[unit c]\n"
	"name = Ban Chỉ đạo phường C\n"
	"email = c@example.vn\n"
	"groups = g2\n";

#define TOKEN "s3cret-admin-token-0123456789abcdef"

struct fix {
	struct app a;
	char dir[64];
	tstamp now;
};

static int changed;

/* main.c's app_changed, counted here */
static void
count_changed(struct app *a)
{
	(void)a;
	changed++;
}

static tstamp
local(struct fix *f, const char *s)
{
	tstamp t = 0;

	assert_int_equal(tz_parse_local(f->a.conf->tz, s, &t), 0);
	return t;
}

static int
setup(void **state)
{
	struct fix *f = xcalloc(1, sizeof(*f));
	struct diag d;
	char *err = NULL, *path;

	diag_init(&d);
	f->a.conf = conf_parse("test.conf", conf_text, strlen(conf_text),
			       CONF_NO_FILES, &d);
	if (f->a.conf == NULL) {
		diag_print(&d, stderr);
		diag_free(&d);
		free(f);
		return -1;
	}
	diag_free(&d);
	free(f->a.conf->daemon.admin_token);
	f->a.conf->daemon.admin_token = xstrdup(TOKEN);
	snprintf(f->dir, sizeof(f->dir), "/tmp/cutoffd-test-status.XXXXXX");
	if (mkdtemp(f->dir) == NULL)
		return -1;
	path = xasprintf("%s/state.db", f->dir);
	f->a.db = db_open(path, true, &err);
	free(path);
	if (f->a.db == NULL) {
		fprintf(stderr, "db_open: %s\n", err);
		free(err);
		return -1;
	}
	f->now = local(f, "2024-03-14T10:00");
	clock_init(&f->a.clk, true, f->now, 1.0);
	f->a.changed = count_changed;
	f->a.views = views_new();
	f->a.auth = auth_new();
	changed = 0;
	*state = f;
	return 0;
}

static int
teardown(void **state)
{
	struct fix *f = *state;
	DIR *dir;
	struct dirent *e;

	views_free(f->a.views);
	auth_free(f->a.auth);
	db_close(f->a.db);
	conf_free(f->a.conf);
	dir = opendir(f->dir);
	while (dir != NULL && (e = readdir(dir)) != NULL) {
		char *p;

		if (e->d_name[0] == '.')
			continue;
		p = xasprintf("%s/%s", f->dir, e->d_name);
		unlink(p);
		free(p);
	}
	if (dir != NULL)
		closedir(dir);
	rmdir(f->dir);
	free(f);
	return 0;
}

/* a on time, b late, c missing for q1; c early for m */
static void
seed(struct fix *f)
{
	assert_int_equal(db_sub_record(f->a.db, "q1/2024-03-13", "a",
				       local(f, "2024-03-12T09:00"), "cli",
				       NULL, f->now), 0);
	assert_int_equal(db_sub_record(f->a.db, "q1/2024-03-13", "b",
				       local(f, "2024-03-14T08:00"), "cli",
				       NULL, f->now), 0);
	assert_int_equal(db_sub_record(f->a.db, "m/2024-04-10", "c",
				       local(f, "2024-03-01T08:30"), "cli",
				       NULL, f->now), 0);
}

struct call {
	struct http_req q;
	struct http_resp r;
	json_t *j;
};

static void
call_free(struct call *c)
{
	buf_free(&c->r.body);
	free(c->r.location);
	free(c->r.set_cookie);
	json_decref(c->j);
	memset(c, 0, sizeof(*c));
}

static int
run(struct fix *f, struct call *c, const char *method, const char *path,
    const char *query, const char *body)
{
	int rc;

	memset(&c->r, 0, sizeof(c->r));
	buf_init(&c->r.body);
	c->q.method = method;
	c->q.path = path;
	c->q.query = query;
	c->q.body = body;
	c->q.body_len = body ? strlen(body) : 0;
	rc = http_dispatch(&f->a, &c->q, &c->r);
	if (c->r.doc != NULL) {
		/* a shared document from memory: read it as a body */
		buf_add(&c->r.body, c->r.doc->body, c->r.doc->len);
		c->r.content_type = c->r.doc->type;
		doc_unref(c->r.doc);
		c->r.doc = NULL;
	}
	if (rc == 0 && c->r.content_type != NULL &&
	    strncmp(c->r.content_type, "application/json", 16) == 0) {
		c->j = json_loads(buf_str(&c->r.body), 0, NULL);
		assert_non_null(c->j);
	}
	return rc;
}

static const char *
hdr(const struct http_resp *r, const char *name)
{
	for (size_t i = 0; i < sizeof(r->hdr) / sizeof(r->hdr[0]); i++)
		if (r->hdr[i].name != NULL &&
		    strcasecmp(r->hdr[i].name, name) == 0)
			return r->hdr[i].value;
	return NULL;
}

/* POST /api/submissions with the right token */
static int
post(struct fix *f, struct call *c, const char *body)
{
	memset(c, 0, sizeof(*c));
	c->q.authorization = "Bearer " TOKEN;
	c->q.content_type = "application/json; charset=utf-8";
	assert_int_equal(run(f, c, "POST", "/api/submissions", NULL, body), 0);
	return c->r.status;
}

static const char *
jerr(const struct call *c)
{
	return json_string_value(json_object_get(c->j, "error"));
}

/* ------------------------------------------------------------- tests */

static void
test_print(void **state)
{
	struct fix *f = *state;
	char *text = NULL;
	size_t len = 0;
	FILE *out;

	seed(f);
	out = open_memstream(&text, &len);
	assert_int_equal(status_print(f->a.conf, f->a.db, f->now, NULL, out), 0);
	fclose(out);
	/* q1 of 2023 is past history? no: 200d back reaches 2023-08-27 */
	assert_non_null(strstr(text,
		"q1/2024-03-13  Báo cáo quý I  due 13/03/2024 17:00  submitted 2/3\n"
		"a\tsubmitted\t2024-03-12T09:00\n"
		"b\tsubmitted\t2024-03-14T08:00\tlate\n"
		"c\tmissing\n"));
	assert_non_null(strstr(text,
		"m/2024-04-10  Kế hoạch riêng  due 10/04/2024 24:00  submitted 1/1\n"
		"c\tsubmitted\t2024-03-01T08:30\n"));
	/* the yearly cycle's next one (2025) is shown though > 45 days */
	assert_non_null(strstr(text, "q1/2025-03-13  "));
	assert_non_null(strstr(text, "a\tnot-due\n"));
	assert_null(strstr(text, "q1/2023-03-13"));
	free(text);

	/* one occurrence */
	text = NULL;
	out = open_memstream(&text, &len);
	assert_int_equal(status_print(f->a.conf, f->a.db, f->now,
				      "q1/2024-03-13", out), 0);
	fclose(out);
	assert_null(strstr(text, "m/2024"));
	assert_non_null(strstr(text, "c\tmissing\n"));
	free(text);

	/* unknown: user error, nothing printed */
	text = NULL;
	out = open_memstream(&text, &len);
	assert_int_equal(status_print(f->a.conf, f->a.db, f->now,
				      "q1/2024-03-14", out), 1);
	assert_int_equal(status_print(f->a.conf, f->a.db, f->now,
				      "nope/2024-03-13", out), 1);
	fclose(out);
	assert_int_equal(len, 0);
	free(text);
}

static void
test_print_failed(void **state)
{
	struct fix *f = *state;
	sqlite3 *h = (sqlite3 *)db_handle(f->a.db);
	char *text = NULL;
	size_t len = 0;
	FILE *out;

	assert_int_equal(sqlite3_exec(h,
		"INSERT INTO outbox(occurrence, unit, step, audience, channel,"
		" recipients, send_at, created, state, attempts, next_try,"
		" last_error, message_id, done_at) VALUES ('q1/2024-03-13', 'c',"
		" 'remind-1d', 'unit', 'email', 'c@example.vn', 1, 1, 'failed',"
		" 3, 1, '550 no such user' || char(10) || 'x', '<m@x>', 5)",
		NULL, NULL, NULL), SQLITE_OK);
	out = open_memstream(&text, &len);
	assert_int_equal(status_print(f->a.conf, f->a.db, f->now, NULL, out), 0);
	fclose(out);
	/* the remote text is escaped: one line per notice */
	assert_non_null(strstr(text, "failed\tq1/2024-03-13\tc\tremind-1d\t"
				     "email\t550 no such user\\nx\n"));
	free(text);
}

static void
test_json(void **state)
{
	struct fix *f = *state;
	struct call c = { 0 };
	json_t *occs, *o = NULL, *u;
	size_t i;

	seed(f);
	assert_int_equal(run(f, &c, "GET", "/status.json", NULL, NULL), 0);
	assert_int_equal(c.r.status, 200);
	assert_string_equal(c.r.content_type, "application/json; charset=utf-8");
	assert_string_equal(json_string_value(json_object_get(c.j, "now")),
			    "2024-03-14T10:00");
	occs = json_object_get(c.j, "occurrences");
	json_array_foreach(occs, i, u) {
		if (strcmp(json_string_value(json_object_get(u, "id")),
			   "q1/2024-03-13") == 0)
			o = u;
	}
	assert_non_null(o);
	assert_string_equal(json_string_value(json_object_get(o, "cycle")), "q1");
	assert_string_equal(json_string_value(json_object_get(o, "due")),
			    "2024-03-13T17:00");
	assert_string_equal(json_string_value(json_object_get(o, "due_date")),
			    "13/03/2024");
	assert_string_equal(json_string_value(json_object_get(o, "period_from")),
			    "2023-12-15");
	assert_int_equal(json_integer_value(json_object_get(o, "submitted")), 2);
	assert_int_equal(json_integer_value(json_object_get(o, "total")), 3);
	assert_int_equal(json_integer_value(json_object_get(o, "missing")), 1);
	u = json_array_get(json_object_get(o, "units"), 1);
	assert_string_equal(json_string_value(json_object_get(u, "unit")), "b");
	assert_string_equal(json_string_value(json_object_get(u, "state")),
			    "submitted");
	assert_true(json_is_true(json_object_get(u, "late")));
	assert_string_equal(json_string_value(json_object_get(u, "at")),
			    "2024-03-14T08:00");
	u = json_array_get(json_object_get(o, "units"), 0);
	assert_null(json_object_get(u, "late"));
	assert_string_equal(json_string_value(json_object_get(u, "name")),
			    "Phòng <Tư pháp>");
	u = json_array_get(json_object_get(o, "units"), 2);
	assert_string_equal(json_string_value(json_object_get(u, "state")),
			    "missing");
	assert_true(json_is_array(json_object_get(c.j, "failed")));
	call_free(&c);

	/* filters */
	assert_int_equal(run(f, &c, "GET", "/status.json", "cycle=m", NULL), 0);
	occs = json_object_get(c.j, "occurrences");
	assert_int_equal(json_array_size(occs), 1);
	call_free(&c);
	assert_int_equal(run(f, &c, "GET", "/status.json", "group=g1&cycle=",
			     NULL), 0);
	json_array_foreach(json_object_get(c.j, "occurrences"), i, o) {
		assert_string_equal(json_string_value(json_object_get(o,
				    "cycle")), "q1");
		assert_int_equal(json_integer_value(json_object_get(o, "total")),
				 2);
	}
	call_free(&c);
	assert_int_equal(run(f, &c, "GET", "/status.json", "cycle=zz", NULL), 0);
	assert_int_equal(c.r.status, 400);
	call_free(&c);
	assert_int_equal(run(f, &c, "POST", "/status.json", NULL, NULL), 0);
	assert_int_equal(c.r.status, 405);
	assert_non_null(hdr(&c.r, "Allow"));
	call_free(&c);
	/* not ours */
	assert_int_equal(run(f, &c, "GET", "/calendar.ics", NULL, NULL), 1);
	call_free(&c);
	assert_int_equal(run(f, &c, "GET", "/api/nope", NULL, NULL), 0);
	assert_int_equal(c.r.status, 404);
	call_free(&c);
}

static void
test_api_auth(void **state)
{
	struct fix *f = *state;
	struct call c = { 0 };
	const char *body = "{\"unit\":\"c\",\"occurrence\":\"q1/2024-03-13\"}";

	c.q.content_type = "application/json";
	assert_int_equal(run(f, &c, "POST", "/api/submissions", NULL, body), 0);
	assert_int_equal(c.r.status, 401);
	assert_non_null(hdr(&c.r, "WWW-Authenticate"));
	assert_string_equal(jerr(&c), "missing or wrong admin token");
	call_free(&c);

	c.q.content_type = "application/json";
	c.q.authorization = "Bearer wrong";
	assert_int_equal(run(f, &c, "POST", "/api/submissions", NULL, body), 0);
	assert_int_equal(c.r.status, 401);
	call_free(&c);

	c.q.authorization = "Basic " TOKEN;
	assert_int_equal(run(f, &c, "DELETE",
			     "/api/submissions/q1/2024-03-13/c", NULL, NULL), 0);
	assert_int_equal(c.r.status, 401);
	call_free(&c);

	/* no token configured: the API is off */
	free(f->a.conf->daemon.admin_token);
	f->a.conf->daemon.admin_token = NULL;
	c.q.content_type = "application/json";
	c.q.authorization = "Bearer " TOKEN;
	assert_int_equal(run(f, &c, "POST", "/api/submissions", NULL, body), 0);
	assert_int_equal(c.r.status, 403);
	call_free(&c);
	assert_int_equal(changed, 0);
}

static void
expect_400(struct fix *f, const char *body, const char *msg)
{
	struct call c;

	assert_int_equal(post(f, &c, body), 400);
	assert_non_null(jerr(&c));
	if (msg != NULL && strstr(jerr(&c), msg) == NULL)
		fail_msg("%s: got \"%s\", want \"%s\"", body, jerr(&c), msg);
	call_free(&c);
}

static void
test_api_bad_input(void **state)
{
	struct fix *f = *state;
	struct call c = { 0 };
	char *big;

	c.q.authorization = "Bearer " TOKEN;
	c.q.content_type = "text/plain";
	assert_int_equal(run(f, &c, "POST", "/api/submissions", NULL, "{}"), 0);
	assert_int_equal(c.r.status, 415);
	call_free(&c);

	expect_400(f, "{\"unit\":", "invalid JSON");
	expect_400(f, "", "invalid JSON");
	expect_400(f, "{\"unit\":\"c\"} x", "invalid JSON");
	expect_400(f, "[\"c\"]", "object");
	expect_400(f, "{\"unit\":\"c\",\"unit\":\"a\","
		   "\"occurrence\":\"q1/2024-03-13\"}", "invalid JSON");
	expect_400(f, "{\"unit\":\"c\",\"occurrence\":\"q1/2024-03-13\","
		   "\"by\":\"x\"}", "unknown key");
	expect_400(f, "{\"unit\":1,\"occurrence\":\"q1/2024-03-13\"}", "string");
	expect_400(f, "{\"unit\":\"c\",\"occurrence\":null}", "string");
	expect_400(f, "{\"unit\":\"c\"}", "required");
	expect_400(f, "{\"unit\":\"zz\",\"occurrence\":\"q1/2024-03-13\"}",
		   "unknown unit");
	expect_400(f, "{\"unit\":\"a\",\"occurrence\":\"m/2024-04-10\"}",
		   "does not report");
	expect_400(f, "{\"unit\":\"c\",\"occurrence\":\"q1/2024-03-14\"}",
		   "unknown occurrence");
	expect_400(f, "{\"unit\":\"c\",\"occurrence\":\"xx/2024-03-13\"}",
		   "unknown occurrence");
	expect_400(f, "{\"unit\":\"c\",\"occurrence\":\"q1/2024-03-13\","
		   "\"at\":\"13/03/2024\"}", "at:");
	expect_400(f, "{\"unit\":\"c\",\"occurrence\":\"q1/2024-03-13\","
		   "\"at\":\"2024-02-30T10:00\"}", "at:");
	expect_400(f, "{\"unit\":\"c\",\"occurrence\":\"q1/2024-03-13\","
		   "\"at\":\"2024-03-13T25:00\"}", "at:");
	expect_400(f, "{\"unit\":\"c\",\"occurrence\":\"q1/2024-03-13\","
		   "\"at\":\"2024-03-13T10:00+7\"}", "at:");
	expect_400(f, "{\"unit\":\"c\",\"occurrence\":\"q1/2024-03-13\","
		   "\"at\":\"2024-03-20T10:00\"}", "future");
	expect_400(f, "{\"unit\":\"c\",\"occurrence\":\"q1/2024-03-13\","
		   "\"note\":\"a\\u0007b\"}", "control");
	expect_400(f, "{\"unit\":\"c\",\"occurrence\":\"q1/2024-03-13\","
		   "\"note\":\"a\\u0000b\"}", "invalid JSON");

	big = xmalloc(1200);
	snprintf(big, 1200, "{\"unit\":\"c\",\"occurrence\":\"q1/2024-03-13\","
		 "\"note\":\"%01001d\"}", 0);
	expect_400(f, big, "too long");
	free(big);

	assert_int_equal(changed, 0);
	c.q.authorization = "Bearer " TOKEN;
	assert_int_equal(run(f, &c, "GET", "/api/submissions",
			     "occurrence=q1/2024-03-13", NULL), 0);
	assert_int_equal(c.r.status, 200);
	assert_int_equal(json_array_size(json_object_get(c.j, "submissions")), 0);
	call_free(&c);
}

static void
test_api_record_undo(void **state)
{
	struct fix *f = *state;
	struct call c;
	struct submission s;

	assert_int_equal(post(f, &c, "{\"unit\":\"c\",\"occurrence\":"
			      "\"q1/2024-03-13\",\"at\":\"2024-03-14T09:15\","
			      "\"note\":\"qua email\\nbản giấy sau\"}"), 201);
	assert_string_equal(json_string_value(json_object_get(c.j, "at")),
			    "2024-03-14T09:15");
	assert_true(json_is_true(json_object_get(c.j, "late")));
	assert_string_equal(json_string_value(json_object_get(c.j, "source")),
			    "api");
	assert_string_equal(c.r.location, "/api/submissions/q1/2024-03-13/c");
	assert_int_equal(changed, 1);
	call_free(&c);
	assert_int_equal(db_sub_get(f->a.db, "q1/2024-03-13", "c", &s), 0);
	assert_string_equal(s.note, "qua email\nbản giấy sau");
	assert_string_equal(s.source, "api");
	submission_clear(&s);

	/* twice: 409, the first record stands */
	assert_int_equal(post(f, &c, "{\"unit\":\"c\",\"occurrence\":"
			      "\"q1/2024-03-13\"}"), 409);
	assert_string_equal(json_string_value(json_object_get(
		json_object_get(c.j, "record"), "at")), "2024-03-14T09:15");
	assert_int_equal(changed, 1);
	call_free(&c);

	/* UTC and offsets */
	assert_int_equal(post(f, &c, "{\"unit\":\"a\",\"occurrence\":"
			      "\"q1/2024-03-13\",\"at\":\"2024-03-13T02:30Z\"}"),
			 201);
	assert_string_equal(json_string_value(json_object_get(c.j, "at")),
			    "2024-03-13T09:30");
	assert_true(json_is_false(json_object_get(c.j, "late")));
	call_free(&c);
	assert_int_equal(post(f, &c, "{\"unit\":\"b\",\"occurrence\":"
			      "\"q1/2024-03-13\",\"at\":"
			      "\"2024-03-13T17:00:01+07:00\"}"), 201);
	assert_true(json_is_true(json_object_get(c.j, "late")));
	call_free(&c);

	/* read one back, list */
	memset(&c, 0, sizeof(c));
	c.q.authorization = "bearer  " TOKEN " ";
	assert_int_equal(run(f, &c, "GET", "/api/submissions/q1/2024-03-13/a",
			     NULL, NULL), 0);
	assert_int_equal(c.r.status, 200);
	assert_string_equal(json_string_value(json_object_get(c.j, "unit")), "a");
	call_free(&c);
	c.q.authorization = "Bearer " TOKEN;
	assert_int_equal(run(f, &c, "GET", "/api/submissions",
			     "occurrence=q1%2F2024-03-13&unit=b", NULL), 0);
	assert_int_equal(json_array_size(json_object_get(c.j, "submissions")), 1);
	call_free(&c);

	/* delete */
	c.q.authorization = "Bearer " TOKEN;
	assert_int_equal(run(f, &c, "DELETE", "/api/submissions/q1/2024-03-13/c",
			     NULL, NULL), 0);
	assert_int_equal(c.r.status, 200);
	assert_true(json_is_true(json_object_get(c.j, "deleted")));
	assert_int_equal(changed, 4);
	call_free(&c);
	assert_int_equal(db_sub_get(f->a.db, "q1/2024-03-13", "c", &s), 1);
	c.q.authorization = "Bearer " TOKEN;
	assert_int_equal(run(f, &c, "DELETE", "/api/submissions/q1/2024-03-13/c",
			     NULL, NULL), 0);
	assert_int_equal(c.r.status, 404);
	call_free(&c);
	c.q.authorization = "Bearer " TOKEN;
	assert_int_equal(run(f, &c, "DELETE", "/api/submissions/q1/2024-03-13/zz",
			     NULL, NULL), 0);
	assert_int_equal(c.r.status, 404);
	call_free(&c);
	c.q.authorization = "Bearer " TOKEN;
	assert_int_equal(run(f, &c, "DELETE", "/api/submissions/c", NULL, NULL),
			 0);
	assert_int_equal(c.r.status, 404);
	call_free(&c);
	c.q.authorization = "Bearer " TOKEN;
	assert_int_equal(run(f, &c, "PUT", "/api/submissions", NULL, NULL), 0);
	assert_int_equal(c.r.status, 405);
	call_free(&c);
	assert_int_equal(changed, 4);
}

static void
test_page(void **state)
{
	struct fix *f = *state;
	struct call c = { 0 };
	const char *html;

	seed(f);
	assert_int_equal(run(f, &c, "GET", "/", NULL, NULL), 0);
	assert_int_equal(c.r.status, 200);
	assert_string_equal(c.r.content_type, "text/html; charset=utf-8");
	html = buf_str(&c.r.body);
	assert_non_null(strstr(html, "<!DOCTYPE html>"));
	assert_non_null(strstr(html, "Tình hình nộp báo cáo"));
	assert_non_null(strstr(html, "Phòng &lt;Tư pháp&gt;"));
	assert_null(strstr(html, "<Tư pháp>"));
	assert_non_null(strstr(html, "Văn phòng &lt;Ban&gt; &amp; Co"));
	assert_non_null(strstr(html, "Ban Chỉ đạo phường C"));
	assert_non_null(strstr(html, "Đúng hạn"));
	assert_non_null(strstr(html, "Nộp muộn"));
	assert_non_null(strstr(html, "Chưa nộp"));
	assert_non_null(strstr(html, "Chưa đến hạn"));
	assert_non_null(strstr(html, "13/03/2024 17:00"));
	assert_null(strstr(html, "<script"));
	/* not logged in: no marking forms, a login form */
	assert_null(strstr(html, "action=\"/mark\""));
	assert_non_null(strstr(html, "action=\"/login\""));
	call_free(&c);

	assert_int_equal(run(f, &c, "GET", "/", "group=g2", NULL), 0);
	html = buf_str(&c.r.body);
	assert_null(strstr(html, "Phòng B"));
	assert_non_null(strstr(html, "<option value=\"g2\" selected>"));
	call_free(&c);

	assert_int_equal(run(f, &c, "GET", "/", "group=%3Cx%3E", NULL), 0);
	assert_int_equal(c.r.status, 400);
	call_free(&c);
}

/* session cookie of a successful login, "session=..." */
static char *
login(struct fix *f)
{
	struct call c = { 0 };
	char *cookie;

	c.q.content_type = "application/x-www-form-urlencoded";
	assert_int_equal(run(f, &c, "POST", "/login", NULL,
			     "token=" TOKEN), 0);
	assert_int_equal(c.r.status, 303);
	assert_string_equal(c.r.location, "/");
	assert_non_null(c.r.set_cookie);
	assert_non_null(strstr(c.r.set_cookie, "HttpOnly"));
	assert_non_null(strstr(c.r.set_cookie, "SameSite=Strict"));
	cookie = xstrndup(c.r.set_cookie, strcspn(c.r.set_cookie, ";"));
	call_free(&c);
	return cookie;
}

static void
test_page_mark(void **state)
{
	struct fix *f = *state;
	struct call c = { 0 };
	char *cookie, *csrf_body;
	char csrf[65];
	struct submission s;
	const char *html;

	seed(f);
	/* wrong token */
	c.q.content_type = "application/x-www-form-urlencoded";
	assert_int_equal(run(f, &c, "POST", "/login", NULL, "token=nope"), 0);
	assert_int_equal(c.r.status, 303);
	assert_string_equal(c.r.location, "/?login=failed");
	assert_null(c.r.set_cookie);
	call_free(&c);

	cookie = login(f);
	c.q.cookie = cookie;
	assert_int_equal(run(f, &c, "GET", "/", NULL, NULL), 0);
	html = buf_str(&c.r.body);
	assert_non_null(strstr(html, "action=\"/mark\""));
	assert_non_null(strstr(html, "name=\"csrf\""));
	call_free(&c);

	c.q.cookie = cookie;
	assert_true(auth_session(&f->a, &c.q, f->now, csrf));

	/* no session, wrong csrf, wrong type */
	c.q.content_type = "application/x-www-form-urlencoded";
	assert_int_equal(run(f, &c, "POST", "/mark", NULL,
			     "occurrence=q1%2F2024-03-13&unit=c"), 0);
	assert_int_equal(c.r.status, 403);
	call_free(&c);
	c.q.cookie = cookie;
	c.q.content_type = "application/x-www-form-urlencoded";
	assert_int_equal(run(f, &c, "POST", "/mark", NULL,
			     "occurrence=q1%2F2024-03-13&unit=c&csrf=00"), 0);
	assert_int_equal(c.r.status, 403);
	call_free(&c);
	c.q.cookie = "session=99999999999.0000";
	c.q.content_type = "application/x-www-form-urlencoded";
	csrf_body = xasprintf("occurrence=q1%%2F2024-03-13&unit=c&csrf=%s",
			      csrf);
	assert_int_equal(run(f, &c, "POST", "/mark", NULL, csrf_body), 0);
	assert_int_equal(c.r.status, 403);
	call_free(&c);
	c.q.cookie = cookie;
	c.q.content_type = "text/plain";
	assert_int_equal(run(f, &c, "POST", "/mark", NULL, csrf_body), 0);
	assert_int_equal(c.r.status, 415);
	call_free(&c);
	assert_int_equal(db_sub_get(f->a.db, "q1/2024-03-13", "c", &s), 1);
	assert_int_equal(changed, 0);

	/* right */
	c.q.cookie = cookie;
	c.q.content_type = "application/x-www-form-urlencoded";
	free(csrf_body);
	csrf_body = xasprintf("occurrence=q1%%2F2024-03-13&unit=c&csrf=%s"
			      "&group=g2&cycle=", csrf);
	assert_int_equal(run(f, &c, "POST", "/mark", NULL, csrf_body), 0);
	assert_int_equal(c.r.status, 303);
	assert_string_equal(c.r.location, "/?group=g2#o-q1-2024-03-13");
	call_free(&c);
	assert_int_equal(changed, 1);
	assert_int_equal(db_sub_get(f->a.db, "q1/2024-03-13", "c", &s), 0);
	assert_string_equal(s.source, "page");
	submission_clear(&s);

	/* logout clears the cookie */
	c.q.cookie = cookie;
	c.q.content_type = "application/x-www-form-urlencoded";
	free(csrf_body);
	csrf_body = xasprintf("csrf=%s", csrf);
	assert_int_equal(run(f, &c, "POST", "/logout", NULL, csrf_body), 0);
	assert_int_equal(c.r.status, 303);
	assert_non_null(strstr(c.r.set_cookie, "Max-Age=0"));
	call_free(&c);
	/* ... and ends the session: the old cookie opens nothing */
	c.q.cookie = cookie;
	assert_false(auth_session(&f->a, &c.q, f->now, NULL));
	c.q.content_type = "application/x-www-form-urlencoded";
	assert_int_equal(run(f, &c, "POST", "/mark", NULL, csrf_body), 0);
	assert_int_equal(c.r.status, 403);
	call_free(&c);
	free(cookie);
	cookie = login(f);

	/* a session dies with its expiry */
	c.q.cookie = cookie;
	assert_false(auth_session(&f->a, &c.q, f->now + 30 * DAY + 1, NULL));
	free(csrf_body);
	free(cookie);
}

static void
test_calendar_token(void **state)
{
	struct fix *f = *state;
	struct call c = { 0 };
	char *cookie;

	f->a.conf->daemon.calendar_token = xstrdup("cal-tok");
	assert_int_equal(run(f, &c, "GET", "/", NULL, NULL), 0);
	assert_int_equal(c.r.status, 401);
	assert_null(strstr(buf_str(&c.r.body), "Phòng B"));
	call_free(&c);
	assert_int_equal(run(f, &c, "GET", "/status.json", "token=bad", NULL), 0);
	assert_int_equal(c.r.status, 401);
	call_free(&c);
	assert_int_equal(run(f, &c, "GET", "/status.json", "token=cal-tok",
			     NULL), 0);
	assert_int_equal(c.r.status, 200);
	call_free(&c);
	assert_int_equal(run(f, &c, "GET", "/", "token=cal-tok", NULL), 0);
	assert_int_equal(c.r.status, 200);
	assert_non_null(strstr(buf_str(&c.r.body), "name=\"token\" value=\"cal-tok\""));
	call_free(&c);
	cookie = login(f);
	c.q.cookie = cookie;
	assert_int_equal(run(f, &c, "GET", "/", NULL, NULL), 0);
	assert_int_equal(c.r.status, 200);
	call_free(&c);
	free(cookie);
}

/* review fixes: /mark keeps to the cycle's units; a token reader keeps the
 * token on the JSON link and sees why a login failed */
static void
test_page_review(void **state)
{
	struct fix *f = *state;
	struct call c = { 0 };
	char *cookie, *body;
	char csrf[65];
	struct submission s;

	cookie = login(f);
	c.q.cookie = cookie;
	assert_true(auth_session(&f->a, &c.q, f->now, csrf));
	/* a owes nothing for m (units = @g2) */
	c.q.content_type = "application/x-www-form-urlencoded";
	body = xasprintf("occurrence=m%%2F2024-04-10&unit=a&csrf=%s", csrf);
	assert_int_equal(run(f, &c, "POST", "/mark", NULL, body), 0);
	assert_int_equal(c.r.status, 400);
	call_free(&c);
	assert_int_equal(db_sub_get(f->a.db, "m/2024-04-10", "a", &s), 1);
	assert_int_equal(changed, 0);
	free(body);
	free(cookie);

	f->a.conf->daemon.calendar_token = xstrdup("cal tok&x");
	assert_int_equal(run(f, &c, "GET", "/", "token=cal+tok%26x", NULL), 0);
	assert_int_equal(c.r.status, 200);
	assert_non_null(strstr(buf_str(&c.r.body),
			       "href=\"/status.json?token=cal%20tok%26x\""));
	call_free(&c);
	assert_int_equal(run(f, &c, "GET", "/status.json",
			     "token=cal%20tok%26x", NULL), 0);
	assert_int_equal(c.r.status, 200);
	call_free(&c);
	assert_int_equal(run(f, &c, "GET", "/", "login=failed", NULL), 0);
	assert_int_equal(c.r.status, 401);
	assert_non_null(strstr(buf_str(&c.r.body), "Mã quản trị không đúng."));
	call_free(&c);
}

static void
test_helpers(void **state)
{
	struct form fm;
	tstamp t = 0;

	(void)state;
	form_parse(&fm, "a=1+2&b=%41%2f&c&&d=%zz&e=%00x&a=dup", 36);
	assert_string_equal(form_get(&fm, "a"), "1 2");
	assert_string_equal(form_get(&fm, "b"), "A/");
	assert_null(form_get(&fm, "c"));
	assert_string_equal(form_get(&fm, "d"), "%zz");
	assert_null(form_get(&fm, "e"));
	form_free(&fm);
	form_parse(&fm, "x=%4", 4);
	assert_string_equal(form_get(&fm, "x"), "%4");
	form_free(&fm);

	assert_int_equal(parse_iso_offset("2024-03-13T02:30Z", &t), 0);
	assert_int_equal(t, days_from_civil(2024, 3, 13) * DAY + 9000);
	assert_int_equal(parse_iso_offset("2024-03-13T09:30:15+0700", &t), 0);
	assert_int_equal(t, days_from_civil(2024, 3, 13) * DAY + 9015);
	assert_int_equal(parse_iso_offset("2024-03-13T09:30", &t), 1);
	assert_int_equal(parse_iso_offset("2024-03-13", &t), 1);
	assert_int_equal(parse_iso_offset("2024-03-13T09:30+25:00", &t), -1);
	assert_int_equal(parse_iso_offset("2024-13-13T09:30Z", &t), -1);
	assert_int_equal(parse_iso_offset("2024-03-13T09:3xZ", &t), -1);

	assert_null(note_problem("dòng 1\ndòng 2", strlen("dòng 1\ndòng 2")));
	assert_non_null(note_problem("a\rb", 3));
	assert_non_null(note_problem("a\xc2\x85", 3));
	assert_non_null(note_problem("\xff", 1));
}

/* the state of unit i of the first occurrence in a /status.json answer */
static const char *
first_state(const struct call *c, size_t i)
{
	json_t *o = json_array_get(json_object_get(c->j, "occurrences"), 0);

	return json_string_value(json_object_get(json_array_get(
		json_object_get(o, "units"), i), "state"));
}

/* The views come from memory: built once per change, not per request. */
static void
test_views(void **state)
{
	struct fix *f = *state;
	struct call c = { 0 };
	unsigned long n;

	seed(f);
	assert_int_equal(run(f, &c, "GET", "/status.json", NULL, NULL), 0);
	assert_int_equal(c.r.status, 200);
	call_free(&c);
	n = views_builds(f->a.views);
	assert_int_equal(n, 1);
	assert_int_equal(run(f, &c, "GET", "/status.json", NULL, NULL), 0);
	call_free(&c);
	assert_int_equal(run(f, &c, "HEAD", "/status.json", NULL, NULL), 0);
	call_free(&c);
	assert_int_equal(views_builds(f->a.views), n);

	/* the anonymous page too; an admin's is rendered per request */
	assert_int_equal(run(f, &c, "GET", "/", NULL, NULL), 0);
	call_free(&c);
	assert_int_equal(run(f, &c, "GET", "/", NULL, NULL), 0);
	call_free(&c);
	assert_int_equal(views_builds(f->a.views), n + 1);

	/* a submission makes them stale */
	assert_int_equal(post(f, &c, "{\"unit\": \"c\", \"occurrence\": "
			      "\"q1/2024-03-13\"}"), 201);
	call_free(&c);
	assert_int_equal(run(f, &c, "GET", "/status.json", "cycle=q1", NULL),
			 0);
	assert_string_equal(first_state(&c, 2), "submitted");
	call_free(&c);
	assert_int_equal(views_builds(f->a.views), n + 2);

	/* and so does time: not due at 16:59:30, missing at 17:00:05 */
	assert_int_equal(db_sub_undo(f->a.db, "q1/2024-03-13", "c", "cli",
				     f->now), 0);
	clock_init(&f->a.clk, true, local(f, "2024-03-13T16:59:30"), 0.0);
	assert_int_equal(run(f, &c, "GET", "/status.json", "cycle=q1", NULL),
			 0);
	assert_string_equal(first_state(&c, 2), "not-due");
	call_free(&c);
	clock_init(&f->a.clk, true, local(f, "2024-03-13T17:00") + 5, 0.0);
	assert_int_equal(run(f, &c, "GET", "/status.json", "cycle=q1", NULL),
			 0);
	assert_string_equal(first_state(&c, 2), "missing");
	call_free(&c);

	/* a store that cannot be read: the last view is served */
	n = views_builds(f->a.views);
	assert_int_equal(sqlite3_exec((sqlite3 *)db_handle(f->a.db),
				      "DROP TABLE outbox", NULL, NULL, NULL),
			 SQLITE_OK);
	views_invalidate(f->a.views);
	assert_int_equal(run(f, &c, "GET", "/status.json", "cycle=q1", NULL),
			 0);
	assert_int_equal(c.r.status, 200);
	assert_string_equal(first_state(&c, 2), "missing");
	call_free(&c);
	assert_int_equal(views_builds(f->a.views), n);
}

static void
test_csv(void **state)
{
	struct fix *f = *state;
	struct call c = { 0 };
	const char *csv;

	seed(f);
	assert_int_equal(post(f, &c, "{\"unit\": \"c\", \"occurrence\": "
			      "\"q1/2024-03-13\", \"note\": "
			      "\"=1, \\\"hai\\\"\\ndòng\"}"), 201);
	call_free(&c);
	assert_int_equal(run(f, &c, "GET", "/status.csv", "cycle=q1", NULL), 0);
	assert_int_equal(c.r.status, 200);
	assert_string_equal(c.r.content_type,
			    "text/csv; charset=utf-8; header=present");
	csv = buf_str(&c.r.body);
	assert_memory_equal(csv, "\xEF\xBB\xBFoccurrence,title,due,unit,name,"
			    "state,received,source,note\r\n", 59);
	assert_non_null(strstr(csv, "\r\nq1/2024-03-13,Báo cáo quý I,"
			       "13/03/2024,b,Phòng B,submitted,"
			       "14/03/2024 08:00,cli,\r\n"));
	/* RFC 4180 quoting; a formula is defused */
	assert_non_null(strstr(csv, ",c,Ban Chỉ đạo phường C,submitted,"
			       "14/03/2024 10:00,api,\"'=1, \"\"hai\"\"\n"
			       "dòng\"\r\n"));
	assert_null(strstr(csv, "\n\n"));
	call_free(&c);
}

/* The unit rows are written by hand: byte for byte what jansson writes. */
static void
test_json_str(void **state)
{
	static const char *const v[] = {
		"", "a", "Tên \"lạ\" \\ <b>\t/x", "\x01\x1f\x7f\b\f\n\r",
		"Ủy ban Mặt trận Tổ quốc", "\xe2\x80\xa8 end",
	};

	(void)state;
	for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
		struct buf b;
		json_t *j = json_string(v[i]);
		char *want = json_dumps(j, JSON_ENCODE_ANY);

		json_decref(j);
		buf_init(&b);
		json_str(&b, v[i]);
		assert_non_null(want);
		assert_string_equal(buf_str(&b), want);
		free(want);
		buf_free(&b);
	}
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_helpers),
		cmocka_unit_test(test_json_str),
		cmocka_unit_test_setup_teardown(test_print, setup, teardown),
		cmocka_unit_test_setup_teardown(test_print_failed, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_json, setup, teardown),
		cmocka_unit_test_setup_teardown(test_api_auth, setup, teardown),
		cmocka_unit_test_setup_teardown(test_api_bad_input, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_api_record_undo, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_page, setup, teardown),
		cmocka_unit_test_setup_teardown(test_page_mark, setup, teardown),
		cmocka_unit_test_setup_teardown(test_page_review, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_calendar_token, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_views, setup, teardown),
		cmocka_unit_test_setup_teardown(test_csv, setup, teardown),
	};

	log_init("test_status", 0);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
