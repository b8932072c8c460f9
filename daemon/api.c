/*
 * api.c - the JSON side: GET /status.json and the submissions API
 * (Bearer admin token):
 *   GET|POST   /api/submissions                     list / record
 *   GET|DELETE /api/submissions/CYCLE/YYYY-MM-DD/UNIT
 */
#include "cutoffd.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#define DAY 86400
#define FUTURE_SLACK 3600           /* `at` may be this far ahead (clocks) */

void
api_status(struct app *a, const struct http_req *q, struct http_resp *r)
{
	struct form args;
	struct status_filter f;
	struct status *s = NULL;
	const char *err;
	tstamp now = clock_now(&a->clk);

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
	if (status_build(a->conf, a->db, now, &f, &s) != 0) {
		resp_error(r, 500, "state store unavailable");
		goto out;
	}
	r->status = 200;
	r->content_type = DOC_JSON;
	buf_reset(&r->body);
	status_json_write(a->conf, s, &r->body);
out:
	status_free(s);
	form_free(&args);
}

static void
notify_changed(struct app *a)
{
	if (a->changed != NULL)
		a->changed(a);
}

static json_t *
sub_json(const struct conf *c, const struct submission *s)
{
	struct occ o;
	json_t *j = json_object();
	char t[20];

	json_object_set_new(j, "occurrence", json_string(s->occurrence));
	json_object_set_new(j, "unit", json_string(s->unit));
	tz_format_iso(c->tz, s->at, t);
	json_object_set_new(j, "at", json_string(t));
	if (sched_occurrence(c, s->occurrence, &o) == 0)
		json_object_set_new(j, "late", json_boolean(s->at > o.due_at));
	tz_format_iso(c->tz, s->recorded, t);
	json_object_set_new(j, "recorded", json_string(t));
	json_object_set_new(j, "source", json_string(s->source));
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
	tstamp now = clock_now(&a->clk), at = now;
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
		else {
			resp_error(r, 400, "unknown key (allowed: unit, "
				   "occurrence, at, note)");
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

	rc = db_sub_record(a->db, o.id, u->id, at, "api", note, now);
	if (rc < 0) {
		resp_error(r, 500, "state store unavailable");
		goto out;
	}
	if (db_sub_get(a->db, o.id, u->id, &sub) != 0) {
		resp_error(r, 500, "state store unavailable");
		goto out;
	}
	if (rc == 1) {
		resp_json(r, 409, json_pack("{s:s,s:o}", "error",
					    "already recorded", "record",
					    sub_json(c, &sub)));
	} else {
		log_info("received %s %s (api)", o.id, u->id);
		resp_json(r, 201, sub_json(c, &sub));
		free(r->location);
		r->location = xasprintf("/api/submissions/%s/%s", o.id, u->id);
		notify_changed(a);
	}
	submission_clear(&sub);
out:
	json_decref(j);
}

struct list_ctx {
	const struct conf *c;
	const char *unit;
	json_t *arr;
};

static int
list_one(void *ctx, const struct submission *s)
{
	struct list_ctx *l = ctx;

	if (l->unit == NULL || strcmp(l->unit, s->unit) == 0)
		json_array_append_new(l->arr, sub_json(l->c, s));
	return 0;
}

static void
api_list(struct app *a, const struct http_req *q, struct http_resp *r)
{
	struct form args;
	struct list_ctx l = { .c = a->conf };
	const char *occ;

	form_parse(&args, q->query, q->query ? strlen(q->query) : 0);
	occ = form_get(&args, "occurrence");
	l.unit = form_get(&args, "unit");
	l.arr = json_array();
	if (db_sub_foreach(a->db, occ, list_one, &l) < 0) {
		json_decref(l.arr);
		resp_error(r, 500, "state store unavailable");
	} else {
		resp_json(r, 200, json_pack("{s:o}", "submissions", l.arr));
	}
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
		rc = db_sub_undo(a->db, o.id, u->id, "api",
				 clock_now(&a->clk));
		if (rc < 0) {
			resp_error(r, 500, "state store unavailable");
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
	if (rc < 0) {
		resp_error(r, 500, "state store unavailable");
	} else if (rc == 1) {
		resp_error(r, 404, "nothing recorded");
	} else {
		resp_json(r, 200, sub_json(c, &sub));
		submission_clear(&sub);
	}
}

void
api_route(struct app *a, const struct http_req *q, struct http_resp *r,
	  const char *p)
{
	static const char sub_prefix[] = "/submissions";

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
