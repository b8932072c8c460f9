/*
 * tmpl.c - message templates and the text of a notice.
 *
 * A template is a file `<dir>/<lang>/<kind>.txt`: a `Subject: ...` line, a
 * blank line, then the body, with {{name}} placeholders.  Templates are
 * parsed once, with the configuration, so that a typo in a placeholder is a
 * config error with FILE:LINE rather than a broken mail weeks later.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "cutoffd.h"

#define TMPL_MAX_SIZE (64 * 1024)
#define PLACEHOLDER_MAX 64

/* Every name a template may use; the order is irrelevant. */
static const char *const known_vars[] = {
	"unit", "unit_id", "cycle", "title", "occurrence", "due", "due_date",
	"days", "days_left", "days_late", "remaining", "period_from",
	"period_to", "period", "feed_url", "status_url", "submit_to",
	"secretariat", "late_since", "step", "units", "count",
	"extended", "extended_due", NULL,
};

static const char *const tmpl_files[TMPL_COUNT] = {
	"remind.txt", "escalate.txt", "digest.txt",
};

struct seg {
	const char *text;    /* literal (points into tmpl.src), or NULL */
	size_t len;
	int var;             /* index into known_vars when text is NULL */
};

struct part {
	struct seg *seg;
	size_t n, cap;
};

struct tmpl {
	char *src;           /* normalised file text, segments point into it */
	struct part subject, body;
	bool loaded;
};

struct tmplset {
	char *lang;
	struct tmpl t[TMPL_COUNT];
};

/* ---------------------------------------------------------------- parsing */

static void
part_add(struct part *p, const char *text, size_t len, int var)
{
	if (text != NULL && len == 0)
		return;
	if (p->n == p->cap) {
		p->cap = p->cap ? p->cap * 2 : 16;
		p->seg = xrealloc(p->seg, p->cap * sizeof *p->seg);
	}
	p->seg[p->n].text = text;
	p->seg[p->n].len = len;
	p->seg[p->n].var = var;
	p->n++;
}

static void
part_free(struct part *p)
{
	free(p->seg);
	p->seg = NULL;
	p->n = p->cap = 0;
}

static int
var_index(const char *name, size_t len)
{
	for (int i = 0; known_vars[i] != NULL; i++)
		if (strlen(known_vars[i]) == len &&
		    memcmp(known_vars[i], name, len) == 0)
			return i;
	return -1;
}

static const char *
find2(const char *s, const char *end, char c)
{
	for (; s + 1 < end; s++)
		if (s[0] == c && s[1] == c)
			return s;
	return NULL;
}

/* Splits one line [s, end) into literal and placeholder segments.  Returns
 * the number of problems reported. */
static int
parse_line(const char *file, int line, const char *s, const char *end,
	   bool subject, struct part *p, struct diag *d)
{
	int errs = 0;

	while (s < end) {
		const char *open = find2(s, end, '{');
		const char *close = find2(s, end, '}');
		const char *name, *name_end;
		int idx;

		if (close != NULL && (open == NULL || close < open)) {
			diag_add(d, file, line, "unbalanced braces: '}}' without '{{'");
			return errs + 1;
		}
		if (open == NULL) {
			part_add(p, s, (size_t)(end - s), -1);
			break;
		}
		part_add(p, s, (size_t)(open - s), -1);
		close = find2(open + 2, end, '}');
		if (close == NULL) {
			diag_add(d, file, line, "unbalanced braces: '{{' without '}}'");
			return errs + 1;
		}
		name = open + 2;
		name_end = close;
		while (name < name_end && (*name == ' ' || *name == '\t'))
			name++;
		while (name_end > name && (name_end[-1] == ' ' || name_end[-1] == '\t'))
			name_end--;
		idx = var_index(name, (size_t)(name_end - name));
		if (idx < 0) {
			size_t n = (size_t)(name_end - name);

			if (n > PLACEHOLDER_MAX)
				n = PLACEHOLDER_MAX;
			diag_add(d, file, line, "unknown placeholder {{%.*s}}",
				 (int)n, name);
			errs++;
		} else if (subject && strcmp(known_vars[idx], "units") == 0) {
			diag_add(d, file, line,
				 "{{units}} is a block of lines and cannot be in the Subject");
			errs++;
		} else {
			part_add(p, NULL, 0, idx);
		}
		s = close + 2;
	}
	return errs;
}

/* Normalises line ends to "\n", drops a UTF-8 BOM, and checks the bytes.
 * Returns the xmalloc'ed text or NULL. */
static char *
normalise(const char *file, const char *text, size_t len, struct diag *d)
{
	struct buf b;
	size_t i, start;
	int line = 1;
	bool bad = false;

	if (len >= 3 && memcmp(text, "\xef\xbb\xbf", 3) == 0) {
		text += 3;
		len -= 3;
	}
	buf_init(&b);
	buf_add(&b, "", 0);
	start = 0;
	for (i = 0; i <= len; i++) {
		unsigned char c = i < len ? (unsigned char)text[i] : '\n';

		if (c == '\n') {
			size_t end = i;

			if (end > start && text[end - 1] == '\r')
				end--;
			if (!utf8_valid(text + start, end - start)) {
				diag_add(d, file, line, "template is not valid UTF-8");
				bad = true;
			}
			for (size_t k = start; k < end; k++) {
				unsigned char ch = (unsigned char)text[k];

				if ((ch < 0x20 && ch != '\t') || ch == 0x7f) {
					diag_add(d, file, line,
						 "control character in template");
					bad = true;
					break;
				}
			}
			buf_add(&b, text + start, end - start);
			if (i < len)
				buf_putc(&b, '\n');
			start = i + 1;
			line++;
		}
	}
	if (bad) {
		buf_free(&b);
		return NULL;
	}
	return buf_steal(&b);
}

static void
tmpl_clear(struct tmpl *t)
{
	part_free(&t->subject);
	part_free(&t->body);
	free(t->src);
	t->src = NULL;
	t->loaded = false;
}

static int
tmpl_parse(const char *file, const char *text, size_t len, struct tmpl *out,
	   struct diag *d)
{
	struct tmpl t = { 0 };
	const char *s, *nl, *end, *subj;
	int errs = 0, line;

	t.src = normalise(file, text, len, d);
	if (t.src == NULL)
		return -1;
	s = t.src;
	end = s + strlen(s);

	/* line 1: the subject */
	nl = memchr(s, '\n', (size_t)(end - s));
	if (nl == NULL)
		nl = end;
	if (strncasecmp(s, "Subject:", 8) != 0) {
		diag_add(d, file, 1, "the first line must be \"Subject: ...\"");
		goto fail;
	}
	subj = s + 8;
	while (subj < nl && (*subj == ' ' || *subj == '\t'))
		subj++;
	{
		const char *se = nl;

		while (se > subj && (se[-1] == ' ' || se[-1] == '\t'))
			se--;
		if (se == subj) {
			diag_add(d, file, 1, "empty Subject");
			errs++;
		}
		errs += parse_line(file, 1, subj, se, true, &t.subject, d);
	}

	/* line 2: blank */
	if (nl == end) {
		diag_add(d, file, 1, "a blank line and the body must follow the Subject line");
		goto fail;
	}
	s = nl + 1;
	nl = memchr(s, '\n', (size_t)(end - s));
	if (nl == NULL)
		nl = end;
	for (const char *k = s; k < nl; k++) {
		if (*k != ' ' && *k != '\t') {
			diag_add(d, file, 2, "line 2 must be blank (the Subject is one line)");
			goto fail;
		}
	}

	/* the body: everything after, without trailing blank lines */
	s = nl < end ? nl + 1 : end;
	while (end > s && (end[-1] == '\n' || end[-1] == ' ' || end[-1] == '\t'))
		end--;
	if (s == end) {
		diag_add(d, file, 3, "empty body");
		goto fail;
	}
	line = 3;
	while (s < end) {
		nl = memchr(s, '\n', (size_t)(end - s));
		if (nl == NULL)
			nl = end;
		errs += parse_line(file, line, s, nl, false, &t.body, d);
		if (nl < end)
			part_add(&t.body, nl, 1, -1);
		s = nl + 1;
		line++;
	}
	part_add(&t.body, "\n", 1, -1);
	if (errs > 0)
		goto fail;
	t.loaded = true;
	*out = t;
	return 0;
fail:
	tmpl_clear(&t);
	return -1;
}

struct tmplset *
tmpl_parse_text(const char *name, enum tmpl_kind k, const char *text,
		size_t len, const char *lang, struct diag *d)
{
	struct tmplset *ts;

	if ((int)k < 0 || k >= TMPL_COUNT)
		return NULL;
	ts = xcalloc(1, sizeof *ts);
	ts->lang = xstrdup(lang != NULL ? lang : "vi");
	if (tmpl_parse(name, text, len, &ts->t[k], d) < 0) {
		tmpl_free(ts);
		return NULL;
	}
	return ts;
}

struct tmplset *
tmpl_load(const char *dir, const char *lang, struct diag *d)
{
	return tmpl_load_dirs(&dir, 1, lang, NULL, 0, d);
}

struct tmplset *
tmpl_load_dirs(const char *const *dirs, size_t ndirs, const char *lang,
	       const char *conf, int line, struct diag *d)
{
	struct tmplset *ts;
	bool ok = true;

	if (lang == NULL)
		lang = "vi";
	ts = xcalloc(1, sizeof *ts);
	ts->lang = xstrdup(lang);
	for (int k = 0; k < TMPL_COUNT; k++) {
		char *path = NULL, *text = NULL;
		size_t len, i;
		int r = -1;

		/* the first directory holding the file wins: an admin's
		 * override of one template keeps the others' defaults */
		errno = ENOENT;
		for (i = 0; i < ndirs && r < 0 && errno == ENOENT; i++) {
			if (dirs[i] == NULL)
				continue;
			free(path);
			path = xasprintf("%s/%s/%s", dirs[i], lang,
					 tmpl_files[k]);
			r = read_file(path, TMPL_MAX_SIZE, &text, &len);
		}
		if (r < 0 && errno == ENOENT && ndirs > 1) {
			struct buf where;

			buf_init(&where);
			for (i = 0; i < ndirs; i++)
				if (dirs[i] != NULL)
					buf_printf(&where, "%s%s", where.len ?
						   ", " : "", dirs[i]);
			diag_add(d, conf, line, "template %s/%s not found in %s",
				 lang, tmpl_files[k], where.len ? buf_str(&where) :
				 "(no directory)");
			buf_free(&where);
			ok = false;
		} else if (r < 0) {
			diag_add(d, path, 0, "cannot read template: %s",
				 strerror(errno));
			ok = false;
		} else {
			if (tmpl_parse(path, text, len, &ts->t[k], d) < 0)
				ok = false;
			free(text);
		}
		free(path);
	}
	if (!ok) {
		tmpl_free(ts);
		return NULL;
	}
	return ts;
}

void
tmpl_free(struct tmplset *t)
{
	if (t == NULL)
		return;
	for (int k = 0; k < TMPL_COUNT; k++)
		tmpl_clear(&t->t[k]);
	free(t->lang);
	free(t);
}

/* -------------------------------------------------------------- rendering */

static const char *
lookup(const struct tmpl_var *vars, size_t nvars, const char *name)
{
	for (size_t i = 0; i < nvars; i++)
		if (vars[i].name != NULL && strcmp(vars[i].name, name) == 0)
			return vars[i].value != NULL ? vars[i].value : "";
	return "";
}

static void
render_part(const struct part *p, const struct tmpl_var *vars, size_t nvars,
	    bool one_line, struct buf *out)
{
	for (size_t i = 0; i < p->n; i++) {
		const char *v;

		if (p->seg[i].text != NULL) {
			buf_add(out, p->seg[i].text, p->seg[i].len);
			continue;
		}
		v = lookup(vars, nvars, known_vars[p->seg[i].var]);
		if (!one_line) {
			buf_puts(out, v);
			continue;
		}
		/* a subject stays one line whatever a value holds */
		for (; *v != '\0'; v++)
			buf_putc(out, (*v == '\r' || *v == '\n' || *v == '\t') ? ' ' : *v);
	}
	buf_add(out, "", 0);
}

int
tmpl_render(const struct tmplset *t, enum tmpl_kind k,
	    const struct tmpl_var *vars, size_t nvars, char **subject,
	    char **body)
{
	struct buf s, b;

	if (t == NULL || (int)k < 0 || k >= TMPL_COUNT || !t->t[k].loaded)
		return -1;
	buf_init(&s);
	buf_init(&b);
	render_part(&t->t[k].subject, vars, nvars, true, &s);
	render_part(&t->t[k].body, vars, nvars, false, &b);
	*subject = buf_steal(&s);
	*body = buf_steal(&b);
	return 0;
}

/* ------------------------------------------------------- a notice's text */

/* generated phrases follow the language of the loaded templates */
static bool
lang_en(const struct conf *c)
{
	const char *lang = c->tmpl != NULL ? c->tmpl->lang : c->daemon.lang;

	return lang != NULL && strcmp(lang, "en") == 0;
}

/* local date of t */
static struct ymd
local_date(const struct conf *c, tstamp t)
{
	struct ymd d;

	tz_local(c->tz, t, &d, NULL, NULL);
	return d;
}

static void
remaining_text(const struct conf *c, int days, struct buf *b)
{
	if (lang_en(c)) {
		if (days < 0)
			buf_printf(b, "%d day%s left", -days, days == -1 ? "" : "s");
		else if (days == 0)
			buf_puts(b, "due today");
		else
			buf_printf(b, "%d day%s overdue", days, days == 1 ? "" : "s");
	} else {
		if (days < 0)
			buf_printf(b, "còn %d ngày", -days);
		else if (days == 0)
			buf_puts(b, "hạn cuối là hôm nay");
		else
			buf_printf(b, "đã quá hạn %d ngày", days);
	}
}

/* One line of the digest's {{units}} block. */
static void
unit_line(const struct conf *c, const struct unit *u, int days,
	  const char *title, struct buf *b)
{
	buf_printf(b, "- %s (%s): ", u->name != NULL ? u->name : u->id, u->id);
	if (lang_en(c)) {
		if (days > 0)
			buf_printf(b, "%d day%s late", days, days == 1 ? "" : "s");
		else
			remaining_text(c, days, b);
	} else {
		if (days > 0)
			buf_printf(b, "quá hạn %d ngày", days);
		else
			remaining_text(c, days, b);
	}
	if (title != NULL)
		buf_printf(b, " – %s", title);
	buf_putc(b, '\n');
}

/* Whether a step is an escalation, from the occurrence's own step list;
 * falls back on the step's name when the policy changed since. */
static bool
step_is_escalation(const struct conf *c, const struct occ *o, const char *step,
		   int days)
{
	struct notice_step *steps = xcalloc(SCHED_MAX_STEPS, sizeof *steps);
	int n = sched_steps(c, o, steps, SCHED_MAX_STEPS);
	bool esc;

	for (int i = 0; i < n; i++) {
		if (strcmp(steps[i].name, step) == 0) {
			esc = steps[i].escalation;
			free(steps);
			return esc;
		}
	}
	free(steps);
	if (strncmp(step, "escalate", 8) == 0)
		return true;
	if (strncmp(step, "remind", 6) == 0)
		return false;
	return days > 0;
}

/* The deadline as people read it, "dd/mm/yyyy HH:MM": end of day is
 * "24:00" of the due date, as on the status page and in the plans ("trước
 * 24 giờ ngày ..."); 23:59 would be a minute early, 00:00 a day late. */
static void
format_due(const struct conf *c, const struct occ *o, char *out, size_t size)
{
	char d[16];

	if (o->cycle != NULL && occ_due_minute(o) >= 1440) {
		ymd_format_vn(o->due, d);
		snprintf(out, size, "%s 24:00", d);
		return;
	}
	tz_format_vn(c->tz, o->due_at, out);   /* 17 bytes */
}

#define NVARS 32

struct varset {
	struct tmpl_var v[NVARS];
	char *owned[NVARS];
	size_t n;
};

static void
var_set(struct varset *vs, const char *name, const char *value)
{
	if (vs->n == NVARS)
		return;
	vs->v[vs->n].name = name;
	vs->v[vs->n].value = value != NULL ? value : "";
	vs->owned[vs->n] = NULL;
	vs->n++;
}

/* takes ownership of value */
static void
var_own(struct varset *vs, const char *name, char *value)
{
	if (vs->n == NVARS) {
		free(value);
		return;
	}
	var_set(vs, name, value);
	vs->owned[vs->n - 1] = value;
}

static void
varset_free(struct varset *vs)
{
	for (size_t i = 0; i < vs->n; i++)
		free(vs->owned[i]);
	vs->n = 0;
}

/* {{extended_due}}: the new deadline, "" when not extended;
 * {{extended}}: a paragraph saying so (with its blank line), or "". */
static void
extended_vars(const struct conf *c, const struct occ *o, struct varset *vs)
{
	char when[32], was[32];
	struct occ old;

	if (!o->extended) {
		var_set(vs, "extended_due", "");
		var_set(vs, "extended", "");
		return;
	}
	format_due(c, o, when, sizeof when);
	old = *o;
	old.due = o->was_due;
	old.due_at = o->was_due_at;
	format_due(c, &old, was, sizeof was);
	var_own(vs, "extended_due", xstrdup(when));
	var_own(vs, "extended", xasprintf(lang_en(c)
		? "The deadline has been extended until %s (it was %s).\n\n"
		: "Hạn gửi báo cáo đã được gia hạn đến %s (hạn trước đây: "
		  "%s).\n\n", when, was));
}

static char *
unit_feed_url(const struct conf *c, struct db *db, const char *unit)
{
	char *token = NULL, *url;

	if (db == NULL || db_unit_token(db, unit, &token) < 0) {
		log_warn("no feed token for unit %s", unit);
		return xstrdup("");
	}
	url = xasprintf("%s/units/%s.ics?token=%s",
			c->daemon.public_url != NULL ? c->daemon.public_url : "",
			unit, token);
	free(token);
	return url;
}

static char *
secretariat_feed_url(const struct conf *c)
{
	const char *base = c->daemon.public_url != NULL ? c->daemon.public_url : "";

	if (c->daemon.calendar_token != NULL)
		return xasprintf("%s/calendar.ics?token=%s", base,
				 c->daemon.calendar_token);
	return xasprintf("%s/calendar.ics", base);
}

int
notice_render(const struct conf *c, struct db *db, struct notice *const *ns,
	      size_t n, tstamp now, struct notice_text *out)
{
	struct notice_text nt = { 0 };
	struct varset vs = { .n = 0 };
	struct buf units, names, ids, tmp;
	struct ymd today;
	char when[32];
	bool same_occ = true;
	int rc = -1;

	if (c == NULL || ns == NULL || n == 0 || ns[0] == NULL)
		return -1;
	if (c->tmpl == NULL) {
		log_err("notice %s %s %s: no templates loaded", ns[0]->occurrence,
			ns[0]->unit, ns[0]->step);
		return -1;
	}
	if (sched_occurrence(c, ns[0]->occurrence, &nt.occ) < 0) {
		log_err("notice for unknown occurrence %s", ns[0]->occurrence);
		return -1;
	}
	nt.unit = conf_unit(c, ns[0]->unit);
	if (nt.unit == NULL) {
		log_err("notice for unknown unit %s", ns[0]->unit);
		return -1;
	}
	/* the deadline the unit owes, extended or not (ledger.c) */
	if (ledger_effective(c, db, &nt.occ, nt.unit->id) < 0)
		return -1;
	today = local_date(c, now);
	nt.days = (int)(days_from_civil(today.y, today.m, today.d) -
			days_from_civil(nt.occ.due.y, nt.occ.due.m, nt.occ.due.d));
	nt.escalation = step_is_escalation(c, &nt.occ, ns[0]->step, nt.days);
	if (ns[0]->aud & (AUD_SECRETARIAT | AUD_CHIEF))
		nt.kind = TMPL_DIGEST;
	else if (nt.escalation)
		nt.kind = TMPL_ESCALATE;
	else
		nt.kind = TMPL_REMIND;

	buf_init(&units);
	buf_init(&names);
	buf_init(&ids);
	buf_init(&tmp);
	for (size_t i = 1; i < n; i++)
		if (strcmp(ns[i]->occurrence, ns[0]->occurrence) != 0)
			same_occ = false;
	for (size_t i = 0; i < n; i++) {
		const struct unit *u = conf_unit(c, ns[i]->unit);
		struct occ o;
		int days;

		if (u == NULL || sched_occurrence(c, ns[i]->occurrence, &o) < 0 ||
		    ledger_effective(c, db, &o, u->id) < 0) {
			log_err("notice %s %s: unknown unit or occurrence",
				ns[i]->occurrence, ns[i]->unit);
			goto out;
		}
		days = (int)(days_from_civil(today.y, today.m, today.d) -
			     days_from_civil(o.due.y, o.due.m, o.due.d));
		unit_line(c, u, days, same_occ ? NULL : o.cycle->title, &units);
		buf_puts(&names, i ? ", " : "");
		buf_puts(&names, u->name != NULL ? u->name : u->id);
		buf_puts(&ids, i ? ", " : "");
		buf_puts(&ids, u->id);
	}
	/* the block is inserted on its own lines: no final newline of its own */
	if (units.len > 0 && units.p[units.len - 1] == '\n')
		units.p[--units.len] = '\0';

	var_own(&vs, "unit", buf_steal(&names));
	var_own(&vs, "unit_id", buf_steal(&ids));
	var_own(&vs, "units", buf_steal(&units));
	var_set(&vs, "cycle", nt.occ.cycle->id);
	var_set(&vs, "title", nt.occ.cycle->title);
	var_set(&vs, "occurrence", nt.occ.id);
	format_due(c, &nt.occ, when, sizeof when);
	var_own(&vs, "due", xstrdup(when));
	tz_format_vn(c->tz, nt.occ.due_at, when);
	var_own(&vs, "late_since", xstrdup(when));
	ymd_format_vn(nt.occ.due, when);
	var_own(&vs, "due_date", xstrdup(when));
	var_own(&vs, "days", xasprintf("%d", nt.days));
	var_own(&vs, "days_left", xasprintf("%d", nt.days < 0 ? -nt.days : 0));
	var_own(&vs, "days_late", xasprintf("%d", nt.days > 0 ? nt.days : 0));
	remaining_text(c, nt.days, &tmp);
	var_own(&vs, "remaining", buf_steal(&tmp));
	if (nt.occ.has_period) {
		char from[16], to[16];

		ymd_format_vn(nt.occ.period_from, from);
		ymd_format_vn(nt.occ.period_to, to);
		var_own(&vs, "period_from", xstrdup(from));
		var_own(&vs, "period_to", xstrdup(to));
		var_own(&vs, "period", xasprintf("%s – %s", from, to));
	} else {
		/* `previous` with no earlier due date: data up to the
		 * nominal date (cut-offs don't move), not a blank field */
		char to[16];

		ymd_format_vn(nt.occ.nominal, to);
		var_set(&vs, "period_from", "");
		var_own(&vs, "period_to", xstrdup(to));
		var_own(&vs, "period", xasprintf("%s %s", lang_en(c) ?
			"up to" : "đến ngày", to));
	}
	if (nt.kind == TMPL_DIGEST)
		nt.feed_url = secretariat_feed_url(c);
	else
		nt.feed_url = unit_feed_url(c, db, nt.unit->id);
	var_set(&vs, "feed_url", nt.feed_url);
	var_own(&vs, "status_url", xasprintf("%s/",
		c->daemon.public_url != NULL ? c->daemon.public_url : ""));
	var_set(&vs, "submit_to", c->secretariat.email);
	var_set(&vs, "secretariat", c->secretariat.name);
	var_set(&vs, "step", ns[0]->step);
	var_own(&vs, "count", xasprintf("%zu", n));
	extended_vars(c, &nt.occ, &vs);

	if (tmpl_render(c->tmpl, nt.kind, vs.v, vs.n, &nt.subject, &nt.body) < 0) {
		log_err("notice %s %s %s: template not loaded", ns[0]->occurrence,
			ns[0]->unit, ns[0]->step);
		goto out;
	}
	*out = nt;
	memset(&nt, 0, sizeof nt);
	rc = 0;
out:
	buf_free(&units);
	buf_free(&names);
	buf_free(&ids);
	buf_free(&tmp);
	varset_free(&vs);
	notice_text_clear(&nt);
	return rc;
}

void
notice_text_clear(struct notice_text *t)
{
	if (t == NULL)
		return;
	free(t->subject);
	free(t->body);
	free(t->feed_url);
	t->subject = t->body = t->feed_url = NULL;
}
