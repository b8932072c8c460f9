/*
 * api.c - the machine-readable side: GET /status.json and /status.csv
 * (from memory, see status.c) and the ledger's API (Bearer admin token;
 * the admin it belongs to is the actor recorded in the history):
 *   GET|POST   /api/submissions                     list / record
 *   GET|DELETE /api/submissions/CYCLE/YYYY-MM-DD/UNIT
 *   GET|POST   /api/extensions                      list / set
 *   DELETE     /api/extensions/CYCLE/YYYY-MM-DD[/UNIT]
 */
#include "cutoffd.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#define DAY 86400
#define FUTURE_SLACK 3600           /* `at` may be this far ahead (clocks) */

/* A store the lock of another process holds up longer than the loop's
 * short busy timeout (DB_LOOP_BUSY_MS) is not waited for: 503 and the
 * client tries again (README "State store"); any other failure is 500. */
static void
store_failed(struct app *a, struct http_resp *r)
{
	if (db_busy(a->db)) {
		resp_error(r, 503, "state store busy, try again");
		resp_hdr(r, "Retry-After", "1");
	} else {
		resp_error(r, 500, "state store unavailable");
	}
}

static void
build_json(const struct conf *c, const struct status *s,
	   const struct status_filter *f, void *ctx, struct buf *out)
{
	(void)f;
	(void)ctx;
	status_json_write(c, s, out);
}

static void
build_csv(const struct conf *c, const struct status *s,
	  const struct status_filter *f, void *ctx, struct buf *out)
{
	(void)f;
	(void)ctx;
	status_csv_write(c, s, out);
}

/* A status document from memory (see status.c): the same access rule and
 * filters for every one. */
static void
serve_view(struct app *a, const struct http_req *q, struct http_resp *r,
	   enum view_slot slot, const char *type, view_build_fn build)
{
	struct form args;
	struct status_filter f;
	const char *err;
	tstamp now = clock_now(&a->clk);
	struct doc *d;

	form_parse(&args, q->query, q->query ? strlen(q->query) : 0);
	if (!auth_read_allowed(a, q, &args, now)) {
		resp_error(r, 401, "token required");
		goto out;
	}
	err = status_filter_set(a->conf, form_get(&args, "cycle"),
				form_get(&args, "group"), &f);
	if (err != NULL) {
		resp_error(r, 400, err);
		goto out;
	}
	d = views_doc(a->views, a->conf, a->db, now, &f, slot, type, build,
		      NULL);
	if (d == NULL) {
		store_failed(a, r);
		goto out;
	}
	r->status = 200;
	r->doc = doc_ref(d);
out:
	form_free(&args);
}

/* /status.csv?occurrence=: one occurrence, built per request (the views
 * in memory are per cycle and group) */
static void
csv_one(struct app *a, const struct http_req *q, struct http_resp *r,
	const char *occ)
{
	struct form args;
	struct status_filter f;
	struct status *s = NULL;
	const char *err;
	tstamp now = clock_now(&a->clk);
	int rc;

	form_parse(&args, q->query, q->query ? strlen(q->query) : 0);
	if (!auth_read_allowed(a, q, &args, now)) {
		resp_error(r, 401, "token required");
		goto out;
	}
	err = status_filter_set(a->conf, form_get(&args, "cycle"),
				form_get(&args, "group"), &f);
	if (err != NULL) {
		resp_error(r, 400, err);
		goto out;
	}
	f.occ = occ;
	rc = status_build(a->conf, a->db, now, &f, &s);
	if (rc == 1) {
		resp_error(r, 404, "unknown occurrence");
		goto out;
	}
	if (rc != 0) {
		resp_error(r, 500, "state store unavailable");
		goto out;
	}
	r->status = 200;
	r->content_type = DOC_CSV;
	buf_reset(&r->body);
	status_csv_write(a->conf, s, &r->body);
out:
	status_free(s);
	form_free(&args);
}

void
api_status(struct app *a, const struct http_req *q, struct http_resp *r)
{
	serve_view(a, q, r, VIEW_JSON, DOC_JSON, build_json);
}

void
api_status_csv(struct app *a, const struct http_req *q, struct http_resp *r)
{
	struct form args;
	char occ[OCC_ID_MAX];
	const char *o;

	form_parse(&args, q->query, q->query ? strlen(q->query) : 0);
	o = form_get(&args, "occurrence");
	if (o != NULL && strlen(o) >= sizeof occ) {
		form_free(&args);
		resp_error(r, 404, "unknown occurrence");
		return;
	}
	snprintf(occ, sizeof occ, "%s", o != NULL ? o : "");
	form_free(&args);
	if (o != NULL) {
		csv_one(a, q, r, occ);
		return;
	}
	serve_view(a, q, r, VIEW_CSV, DOC_CSV, build_csv);
}

static void
notify_changed(struct app *a)
{
	if (a->changed != NULL)
		a->changed(a);
}

/* ext: the extensions, to judge "late" against the unit's own due */
static json_t *
sub_json(const struct conf *c, const struct extension *ext, size_t next,
	 const struct submission *s)
{
	struct occ o;
	json_t *j = json_object();
	char t[20];

	json_object_set_new(j, "occurrence", json_string(s->occurrence));
	json_object_set_new(j, "unit", json_string(s->unit));
	json_object_set_new(j, "state", json_string(s->nil ? "nil"
							    : "submitted"));
	json_object_set_new(j, "nil", json_boolean(s->nil));
	tz_format_iso(c->tz, s->at, t);
	json_object_set_new(j, "at", json_string(t));
	if (sched_occurrence(c, s->occurrence, &o) == 0) {
		sched_extend(c, &o, ext, next, s->unit);
		json_object_set_new(j, "late", json_boolean(s->at > o.due_at));
	}
	tz_format_iso(c->tz, s->recorded, t);
	json_object_set_new(j, "recorded", json_string(t));
	json_object_set_new(j, "source", json_string(s->source));
	if (s->actor[0] != '\0' && utf8_valid(s->actor, strlen(s->actor)))
		json_object_set_new(j, "actor", json_string(s->actor));
	if (s->note != NULL && utf8_valid(s->note, strlen(s->note)))
		json_object_set_new(j, "note", json_string(s->note));
	return j;
}

/* ISO 8601 with a zone designator: "2024-03-12T09:30[:SS](Z|+07:00|+0700)".
 * Returns 1 when s has no designator (then it is local time). */
static int
parse_iso_offset(const char *s, tstamp *out)
{
	size_t n = strlen(s), tlen;
	int y, mo, d, hh, mi, ss = 0, sign, oh, om;
	const char *z;

	/* anything not shaped like this is tz_parse_local's to judge */
	if (n < 16 || (s[10] != 'T' && s[10] != ' '))
		return 1;
	tlen = n >= 19 && s[16] == ':' ? 19 : 16;
	z = s + tlen;
	if (*z == '\0')
		return 1;
	for (size_t i = 0; i < tlen; i++) {
		bool sep = i == 4 || i == 7 || i == 10 || i == 13 || i == 16;

		if (!sep && (s[i] < '0' || s[i] > '9'))
			return -1;
	}
	if (s[4] != '-' || s[7] != '-' || s[13] != ':')
		return -1;
	y = atoi(s);
	mo = (s[5] - '0') * 10 + (s[6] - '0');
	d = (s[8] - '0') * 10 + (s[9] - '0');
	hh = (s[11] - '0') * 10 + (s[12] - '0');
	mi = (s[14] - '0') * 10 + (s[15] - '0');
	if (tlen == 19)
		ss = (s[17] - '0') * 10 + (s[18] - '0');
	if (!ymd_valid((struct ymd){ y, mo, d }) || hh > 23 || mi > 59 ||
	    ss > 59)
		return -1;
	if (strcmp(z, "Z") == 0) {
		sign = 1;
		oh = om = 0;
	} else if ((z[0] == '+' || z[0] == '-') && isdigit((unsigned char)z[1])
		   && isdigit((unsigned char)z[2])) {
		const char *m = z + 3;

		sign = z[0] == '+' ? 1 : -1;
		oh = (z[1] - '0') * 10 + (z[2] - '0');
		if (*m == ':')
			m++;
		if (!isdigit((unsigned char)m[0]) ||
		    !isdigit((unsigned char)m[1]) || m[2] != '\0')
			return -1;
		om = (m[0] - '0') * 10 + (m[1] - '0');
		if (oh > 23 || om > 59)
			return -1;
	} else {
		return -1;
	}
	*out = days_from_civil(y, mo, d) * DAY + hh * 3600 + mi * 60 + ss -
	       sign * (oh * 3600 + om * 60);
	return 0;
}


static void
api_post(struct app *a, const struct http_req *q, struct http_resp *r)
{
	const struct conf *c = a->conf;
	json_t *j = NULL, *v;
	json_error_t jerr;
	const char *key, *unit = NULL, *occ = NULL, *at_s = NULL, *note = NULL;
	size_t note_len = 0;
	const struct unit *u;
	struct occ o;
	struct submission sub;
	struct extension *ext = NULL;
	size_t next = 0;
	tstamp now = clock_now(&a->clk), at = now;
	bool nil = false;
	int rc;

	if (!req_type_is(q, "application/json")) {
		resp_error(r, 415, "Content-Type must be application/json");
		return;
	}
	j = json_loadb(q->body ? q->body : "", q->body ? q->body_len : 0,
		       JSON_REJECT_DUPLICATES, &jerr);
	if (j == NULL) {
		char msg[200];

		snprintf(msg, sizeof(msg), "invalid JSON: %s (line %d)",
			 jerr.text, jerr.line);
		/* jansson's text may quote the input: keep it valid UTF-8 */
		resp_error(r, 400, utf8_valid(msg, strlen(msg)) ? msg
			   : "invalid JSON");
		return;
	}
	if (!json_is_object(j)) {
		resp_error(r, 400, "the body must be a JSON object");
		goto out;
	}
	json_object_foreach(j, key, v) {
		const char **slot;

		if (strcmp(key, "unit") == 0)
			slot = &unit;
		else if (strcmp(key, "occurrence") == 0)
			slot = &occ;
		else if (strcmp(key, "at") == 0)
			slot = &at_s;
		else if (strcmp(key, "note") == 0)
			slot = &note;
		else if (strcmp(key, "nil") == 0) {
			/* "không phát sinh": nothing to report this time */
			if (!json_is_boolean(v)) {
				resp_error(r, 400, "nil must be true or false");
				goto out;
			}
			nil = json_is_true(v);
			continue;
		} else {
			resp_error(r, 400, "unknown key (allowed: unit, "
				   "occurrence, at, note, nil)");
			goto out;
		}
		if (!json_is_string(v)) {
			resp_error(r, 400, "every value must be a string");
			goto out;
		}
		*slot = json_string_value(v);
		if (slot == &note)
			note_len = json_string_length(v);
	}
	if (unit == NULL || occ == NULL) {
		resp_error(r, 400, "unit and occurrence are required");
		goto out;
	}
	if (strlen(occ) >= OCC_ID_MAX || sched_occurrence(c, occ, &o) < 0) {
		resp_error(r, 400, "unknown occurrence");
		goto out;
	}
	u = conf_unit(c, unit);
	if (u == NULL) {
		resp_error(r, 400, "unknown unit");
		goto out;
	}
	if (!conf_cycle_has(o.cycle, (size_t)(u - c->units))) {
		resp_error(r, 400, "the unit does not report in this cycle");
		goto out;
	}
	if (at_s != NULL) {
		rc = parse_iso_offset(at_s, &at);
		if (rc == 1)
			rc = tz_parse_local(c->tz, at_s, &at);
		if (rc != 0) {
			resp_error(r, 400, "at: expected ISO 8601, e.g. "
				   "2024-03-12T09:30 (local) or with Z/+07:00");
			goto out;
		}
		if (at > now + FUTURE_SLACK) {
			resp_error(r, 400, "at is in the future");
			goto out;
		}
	}
	if (note != NULL) {
		const char *p = note_problem(note, note_len);

		if (p != NULL) {
			char *msg = xasprintf("note %s", p);

			resp_error(r, 400, msg);
			free(msg);
			goto out;
		}
		if (note_len == 0)
			note = NULL;
	}

	rc = ledger_receive(a->db, o.id, u->id, at, nil, "api",
			    auth_actor(a, q, now), note, now);
	if (rc < 0) {
		store_failed(a, r);
		goto out;
	}
	if (db_sub_get(a->db, o.id, u->id, &sub) != 0 ||
	    ledger_extensions(a->db, o.id, &ext, &next) < 0) {
		store_failed(a, r);
		goto out;
	}
	if (rc == 1) {
		resp_json(r, 409, json_pack("{s:s,s:o}", "error",
					    "already recorded", "record",
					    sub_json(c, ext, next, &sub)));
	} else {
		log_info("received %s %s%s (api)", o.id, u->id,
			 nil ? " nil" : "");
		resp_json(r, 201, sub_json(c, ext, next, &sub));
		free(r->location);
		r->location = xasprintf("/api/submissions/%s/%s", o.id, u->id);
		notify_changed(a);
	}
	submission_clear(&sub);
out:
	extensions_free(ext, next);
	json_decref(j);
}

struct list_ctx {
	const struct conf *c;
	const char *unit;
	json_t *arr;
	struct extension *ext;
	size_t next;
};

static int
list_one(void *ctx, const struct submission *s)
{
	struct list_ctx *l = ctx;

	if (l->unit == NULL || strcmp(l->unit, s->unit) == 0)
		json_array_append_new(l->arr, sub_json(l->c, l->ext, l->next,
							s));
	return 0;
}

static void
api_list(struct app *a, const struct http_req *q, struct http_resp *r)
{
	struct form args;
	struct list_ctx l = { .c = a->conf };
	const char *occ;
	struct occ o;

	form_parse(&args, q->query, q->query ? strlen(q->query) : 0);
	occ = form_get(&args, "occurrence");
	l.unit = form_get(&args, "unit");
	l.arr = json_array();
	/* a moved occurrence's old id lists the new one's records */
	if (occ != NULL && sched_occurrence(a->conf, occ, &o) == 0)
		occ = o.id;
	if (ledger_extensions(a->db, occ, &l.ext, &l.next) < 0 ||
	    db_sub_foreach(a->db, occ, list_one, &l) < 0) {
		json_decref(l.arr);
		store_failed(a, r);
	} else {
		resp_json(r, 200, json_pack("{s:o}", "submissions", l.arr));
	}
	extensions_free(l.ext, l.next);
	form_free(&args);
}

/* /api/submissions/CYCLE/YYYY-MM-DD/UNIT: the occurrence id has a '/' */
static void
api_one(struct app *a, const struct http_req *q, struct http_resp *r,
	const char *rest)
{
	const struct conf *c = a->conf;
	const char *slash = strrchr(rest, '/');
	char occ[OCC_ID_MAX];
	const struct unit *u;
	struct occ o;
	struct submission sub;
	struct extension *ext = NULL;
	size_t next = 0;
	int rc;

	if (slash == NULL || (size_t)(slash - rest) >= sizeof(occ)) {
		resp_error(r, 404, "no such submission");
		return;
	}
	memcpy(occ, rest, (size_t)(slash - rest));
	occ[slash - rest] = '\0';
	u = conf_unit(c, slash + 1);
	if (u == NULL || sched_occurrence(c, occ, &o) < 0) {
		resp_error(r, 404, "unknown occurrence or unit");
		return;
	}
	if (strcmp(q->method, "DELETE") == 0) {
		tstamp now = clock_now(&a->clk);

		rc = ledger_undo(a->db, o.id, u->id, "api",
				 auth_actor(a, q, now), now);
		if (rc < 0) {
			store_failed(a, r);
		} else if (rc == 1) {
			resp_error(r, 404, "nothing recorded");
		} else {
			log_info("undo %s %s (api)", o.id, u->id);
			resp_json(r, 200, json_pack("{s:b,s:s,s:s}", "deleted",
						    1, "occurrence", o.id,
						    "unit", u->id));
			notify_changed(a);
		}
		return;
	}
	rc = db_sub_get(a->db, o.id, u->id, &sub);
	if (rc == 0 && ledger_extensions(a->db, o.id, &ext, &next) < 0) {
		submission_clear(&sub);
		rc = -1;
	}
	if (rc < 0) {
		store_failed(a, r);
	} else if (rc == 1) {
		resp_error(r, 404, "nothing recorded");
	} else {
		resp_json(r, 200, sub_json(c, ext, next, &sub));
		submission_clear(&sub);
	}
	extensions_free(ext, next);
}

/* ---------------------------------------------------------- extensions */

static json_t *
ext_json(const struct conf *c, const struct extension *e)
{
	json_t *j = json_object();
	struct occ o;
	char t[20];

	json_object_set_new(j, "occurrence", json_string(e->occurrence));
	json_object_set_new(j, "unit", e->unit[0] ? json_string(e->unit)
						  : json_null());
	if (sched_occurrence(c, e->occurrence, &o) == 0) {
		tz_format_iso(c->tz, o.due_at, t);
		json_object_set_new(j, "planned_due", json_string(t));
		sched_extend(c, &o, e, 1, e->unit[0] ? e->unit : NULL);
		tz_format_iso(c->tz, o.due_at, t);
		json_object_set_new(j, "due", json_string(t));
		ymd_format_vn(o.due, t);
		json_object_set_new(j, "due_date", json_string(t));
	}
	tz_format_iso(c->tz, e->recorded, t);
	json_object_set_new(j, "recorded", json_string(t));
	json_object_set_new(j, "source", json_string(e->source));
	if (e->actor[0] != '\0' && utf8_valid(e->actor, strlen(e->actor)))
		json_object_set_new(j, "actor", json_string(e->actor));
	if (e->note != NULL && utf8_valid(e->note, strlen(e->note)))
		json_object_set_new(j, "note", json_string(e->note));
	return j;
}

/* the body of a POST as a JSON object, else r filled and NULL */
static json_t *
json_body(const struct http_req *q, struct http_resp *r)
{
	json_error_t jerr;
	json_t *j;

	if (!req_type_is(q, "application/json")) {
		resp_error(r, 415, "Content-Type must be application/json");
		return NULL;
	}
	j = json_loadb(q->body ? q->body : "", q->body ? q->body_len : 0,
		       JSON_REJECT_DUPLICATES, &jerr);
	if (j == NULL) {
		char msg[200];

		snprintf(msg, sizeof(msg), "invalid JSON: %s (line %d)",
			 jerr.text, jerr.line);
		resp_error(r, 400, utf8_valid(msg, strlen(msg)) ? msg
			   : "invalid JSON");
		return NULL;
	}
	if (!json_is_object(j)) {
		resp_error(r, 400, "the body must be a JSON object");
		json_decref(j);
		return NULL;
	}
	return j;
}

static void
ext_post(struct app *a, const struct http_req *q, struct http_resp *r)
{
	const struct conf *c = a->conf;
	const char *key, *occ = NULL, *due_s = NULL, *unit = NULL, *note = NULL;
	const char *why;
	size_t note_len = 0, next = 0;
	struct extension *ext = NULL;
	const struct unit *u = NULL;
	struct ymd due;
	struct occ o;
	tstamp now = clock_now(&a->clk);
	json_t *j, *v;
	bool existed = false;
	int minute, rc;

	j = json_body(q, r);
	if (j == NULL)
		return;
	json_object_foreach(j, key, v) {
		const char **slot;

		if (strcmp(key, "occurrence") == 0)
			slot = &occ;
		else if (strcmp(key, "due") == 0)
			slot = &due_s;
		else if (strcmp(key, "unit") == 0)
			slot = &unit;
		else if (strcmp(key, "note") == 0)
			slot = &note;
		else {
			resp_error(r, 400, "unknown key (allowed: occurrence, "
				   "due, unit, note)");
			goto out;
		}
		if (!json_is_string(v)) {
			resp_error(r, 400, "every value must be a string");
			goto out;
		}
		*slot = json_string_value(v);
		if (slot == &note)
			note_len = json_string_length(v);
	}
	if (occ == NULL || due_s == NULL) {
		resp_error(r, 400, "occurrence and due are required");
		goto out;
	}
	if (strlen(occ) >= OCC_ID_MAX || sched_occurrence(c, occ, &o) < 0) {
		resp_error(r, 400, "unknown occurrence");
		goto out;
	}
	if (unit != NULL) {
		u = conf_unit(c, unit);
		if (u == NULL) {
			resp_error(r, 400, "unknown unit");
			goto out;
		}
		if (!conf_cycle_has(o.cycle, (size_t)(u - c->units))) {
			resp_error(r, 400, "the unit does not report in this "
				   "cycle");
			goto out;
		}
	}
	if (ledger_parse_due(due_s, &due, &minute) < 0) {
		resp_error(r, 400, "due: expected YYYY-MM-DD or "
			   "YYYY-MM-DDTHH:MM (local time)");
		goto out;
	}
	why = ledger_extension_problem(&o, due);
	if (why != NULL) {
		char *msg = xasprintf("due %s", why);

		resp_error(r, 400, msg);
		free(msg);
		goto out;
	}
	if (note != NULL) {
		why = note_problem(note, note_len);
		if (why != NULL) {
			char *msg = xasprintf("note %s", why);

			resp_error(r, 400, msg);
			free(msg);
			goto out;
		}
		if (note_len == 0)
			note = NULL;
	}
	if (ledger_extensions(a->db, o.id, &ext, &next) < 0)
		goto fail;
	for (size_t i = 0; i < next; i++)
		if (strcmp(ext[i].unit, u != NULL ? u->id : "") == 0)
			existed = true;
	extensions_free(ext, next);
	ext = NULL;
	rc = ledger_extend(a->db, o.id, u != NULL ? u->id : NULL, due, minute,
			   "api", auth_actor(a, q, now), note, now);
	if (rc < 0 || ledger_extensions(a->db, o.id, &ext, &next) < 0)
		goto fail;
	log_info("extended %s%s%s until %s (api)", o.id, u ? " for " : "",
		 u ? u->id : "", due_s);
	for (size_t i = 0; i < next; i++) {
		if (strcmp(ext[i].unit, u != NULL ? u->id : "") == 0) {
			resp_json(r, existed ? 200 : 201, ext_json(c, &ext[i]));
			break;
		}
	}
	notify_changed(a);
	goto out;
fail:
	resp_error(r, 500, "state store unavailable");
out:
	extensions_free(ext, next);
	json_decref(j);
}

static void
ext_list(struct app *a, const struct http_req *q, struct http_resp *r)
{
	struct form args;
	struct extension *ext = NULL;
	size_t next = 0;
	json_t *arr;

	form_parse(&args, q->query, q->query ? strlen(q->query) : 0);
	if (ledger_extensions(a->db, form_get(&args, "occurrence"), &ext,
			      &next) < 0) {
		resp_error(r, 500, "state store unavailable");
	} else {
		arr = json_array();
		for (size_t i = 0; i < next; i++)
			json_array_append_new(arr, ext_json(a->conf, &ext[i]));
		resp_json(r, 200, json_pack("{s:o}", "extensions", arr));
	}
	extensions_free(ext, next);
	form_free(&args);
}

/* DELETE /api/extensions/CYCLE/YYYY-MM-DD[/UNIT] */
static void
ext_delete(struct app *a, const struct http_req *q, struct http_resp *r,
	   const char *rest)
{
	const struct conf *c = a->conf;
	const char *s1 = strchr(rest, '/'), *s2;
	char occ[OCC_ID_MAX];
	const char *unit = NULL;
	size_t n;
	struct occ o;
	tstamp now = clock_now(&a->clk);
	int rc;

	s2 = s1 != NULL ? strchr(s1 + 1, '/') : NULL;
	n = s2 != NULL ? (size_t)(s2 - rest) : strlen(rest);
	if (s1 == NULL || n >= sizeof(occ)) {
		resp_error(r, 404, "no such extension");
		return;
	}
	memcpy(occ, rest, n);
	occ[n] = '\0';
	if (s2 != NULL) {
		unit = s2 + 1;
		if (conf_unit(c, unit) == NULL) {
			resp_error(r, 404, "unknown unit");
			return;
		}
	}
	if (sched_occurrence(c, occ, &o) < 0) {
		resp_error(r, 404, "unknown occurrence");
		return;
	}
	rc = ledger_unextend(a->db, o.id, unit, "api", auth_actor(a, q, now),
			     now);
	if (rc < 0) {
		resp_error(r, 500, "state store unavailable");
	} else if (rc == 1) {
		resp_error(r, 404, "no extension");
	} else {
		log_info("extension of %s%s%s cancelled (api)", o.id,
			 unit ? " for " : "", unit ? unit : "");
		resp_json(r, 200, json_pack("{s:b,s:s,s:o}", "deleted", 1,
					    "occurrence", o.id, "unit",
					    unit ? json_string(unit)
						 : json_null()));
		notify_changed(a);
	}
}

static void
ext_route(struct app *a, const struct http_req *q, struct http_resp *r,
	  const char *p)
{
	if (*p == '\0' || strcmp(p, "/") == 0) {
		if (req_method_is(q, "POST"))
			ext_post(a, q, r);
		else if (req_is_get(q))
			ext_list(a, q, r);
		else
			resp_not_allowed(r, "GET, HEAD, POST", true);
		return;
	}
	if (req_method_is(q, "DELETE"))
		ext_delete(a, q, r, p + 1);
	else
		resp_not_allowed(r, "DELETE", true);
}

void
api_route(struct app *a, const struct http_req *q, struct http_resp *r,
	  const char *p)
{
	static const char sub_prefix[] = "/submissions";
	static const char ext_prefix[] = "/extensions";

	if (strncmp(p, ext_prefix, sizeof(ext_prefix) - 1) == 0 &&
	    (p[sizeof(ext_prefix) - 1] == '\0' ||
	     p[sizeof(ext_prefix) - 1] == '/')) {
		if (auth_api(a, q, r) == 0)
			ext_route(a, q, r, p + sizeof(ext_prefix) - 1);
		return;
	}
	if (strncmp(p, sub_prefix, sizeof(sub_prefix) - 1) != 0 ||
	    (p[sizeof(sub_prefix) - 1] != '\0' &&
	     p[sizeof(sub_prefix) - 1] != '/')) {
		resp_error(r, 404, "no such API");
		return;
	}
	if (auth_api(a, q, r) < 0)
		return;
	p += sizeof(sub_prefix) - 1;
	if (*p == '\0' || strcmp(p, "/") == 0) {
		if (req_method_is(q, "POST"))
			api_post(a, q, r);
		else if (req_is_get(q))
			api_list(a, q, r);
		else
			resp_not_allowed(r, "GET, HEAD, POST", true);
		return;
	}
	if (req_method_is(q, "DELETE") || req_is_get(q))
		api_one(a, q, r, p + 1);
	else
		resp_not_allowed(r, "GET, HEAD, DELETE", true);
}
