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
	/* 0.2: texts people would sign */
	"today", "period_label", "report", "ref", "basis", "deadline",
	"period_text", "extended", "extended_due", "confirm_url",
	"bounces",   /* digests: the listed units' bounced addresses */
	NULL,
};
/* indices of the per-unit ones in known_vars (the render cache's holes) */
enum { V_UNIT = 0, V_UNIT_ID = 1, V_FEED_URL = 14, V_UNITS = 20,
	V_CONFIRM_URL = 31 };

static const char *const tmpl_files[TMPL_COUNT] = {
	"remind.txt", "escalate.txt", "digest.txt", "remind-head.txt",
	"escalate-head.txt", "digest-secretariat.txt", "digest-chief.txt",
};
/* what a missing per-audience file falls back on (itself: required) */
static const enum tmpl_kind tmpl_fallback[TMPL_COUNT] = {
	TMPL_REMIND, TMPL_ESCALATE, TMPL_DIGEST, TMPL_REMIND, TMPL_ESCALATE,
	TMPL_DIGEST, TMPL_DIGEST,
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

struct rcache;

struct tmplset {
	char *lang;
	struct tmpl t[TMPL_COUNT];
	struct rcache *cache;  /* notice texts rendered so far (see below) */
};

static void rcache_free(struct rcache *rc);

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

static bool
str_ends(const char *s, const char *tail)
{
	size_t n = strlen(s), t = strlen(tail);

	return n >= t && strcmp(s + n - t, tail) == 0 &&
	       (n == t || s[n - t - 1] == '/');
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
	bool ok = true, present[TMPL_COUNT] = { false };

	/* the hole indices name the list's entries (checked, not trusted) */
	if (strcmp(known_vars[V_UNIT], "unit") != 0 ||
	    strcmp(known_vars[V_UNIT_ID], "unit_id") != 0 ||
	    strcmp(known_vars[V_FEED_URL], "feed_url") != 0 ||
	    strcmp(known_vars[V_UNITS], "units") != 0 ||
	    strcmp(known_vars[V_CONFIRM_URL], "confirm_url") != 0)
		fatal("tmpl.c: the V_* indices do not match known_vars");

	if (lang == NULL)
		lang = "vi";
	ts = xcalloc(1, sizeof *ts);
	ts->lang = xstrdup(lang);
	for (int k = 0; k < TMPL_COUNT; k++) {
		char *path = NULL, *text = NULL;
		size_t len, i;
		int r = -1;

		/* the first directory holding the file wins: an admin's
		 * override of one template keeps the others' defaults.  In
		 * each directory the kind's own file, then its fallback (0.1's
		 * generic one), so that an admin's old escalate.txt still
		 * beats the installed escalate-head.txt */
		errno = ENOENT;
		for (i = 0; i < ndirs && r < 0 && errno == ENOENT; i++) {
			enum tmpl_kind f = tmpl_fallback[k];

			if (dirs[i] == NULL)
				continue;
			free(path);
			path = xasprintf("%s/%s/%s", dirs[i], lang,
					 tmpl_files[k]);
			r = read_file(path, TMPL_MAX_SIZE, &text, &len);
			if (r < 0 && errno == ENOENT && f != (enum tmpl_kind)k) {
				free(path);
				path = xasprintf("%s/%s/%s", dirs[i], lang,
						 tmpl_files[f]);
				r = read_file(path, TMPL_MAX_SIZE, &text, &len);
			}
		}
		if (r < 0) {
			/* a missing file is told below, with its fallback */
			if (errno != ENOENT) {
				diag_add(d, path, 0, "cannot read template: %s",
					 strerror(errno));
				ok = false;
			}
		} else {
			/* read as another kind's fallback: that kind reads the
			 * same file and tells its problems, once */
			bool as_fallback = !str_ends(path, tmpl_files[k]);
			struct diag quiet;

			diag_init(&quiet);
			present[k] = true;
			if (tmpl_parse(path, text, len, &ts->t[k],
				       as_fallback ? &quiet : d) < 0)
				ok = false;
			diag_free(&quiet);
			free(text);
		}
		free(path);
	}
	/* every kind a notice may use needs its file or its fallback's
	 * (TMPL_DIGEST itself is only the digests' fallback); a required
	 * fallback's absence is told once, as its own */
	for (int k = 0; k < TMPL_COUNT; k++) {
		enum tmpl_kind f = tmpl_fallback[k];
		char *path;

		if (k == TMPL_DIGEST || present[k] || present[f] ||
		    (f != (enum tmpl_kind)k && f != TMPL_DIGEST))
			continue;
		if (ndirs > 1) {
			struct buf where;

			buf_init(&where);
			for (size_t i = 0; i < ndirs; i++)
				if (dirs[i] != NULL)
					buf_printf(&where, "%s%s", where.len ?
						   ", " : "", dirs[i]);
			if (f == (enum tmpl_kind)k)
				diag_add(d, conf, line, "template %s/%s not "
					 "found in %s", lang, tmpl_files[k],
					 where.len ? buf_str(&where) :
					 "(no directory)");
			else
				diag_add(d, conf, line, "template %s/%s (nor "
					 "its fallback %s) not found in %s",
					 lang, tmpl_files[k], tmpl_files[f],
					 where.len ? buf_str(&where) :
					 "(no directory)");
			buf_free(&where);
			ok = false;
			continue;
		}
		path = xasprintf("%s/%s/%s", dirs[0] != NULL ? dirs[0] : ".",
				 lang, tmpl_files[k]);
		if (f == (enum tmpl_kind)k)
			diag_add(d, path, 0, "cannot read template: %s",
				 strerror(ENOENT));
		else
			diag_add(d, path, 0, "cannot read template (nor its "
				 "fallback %s): %s", tmpl_files[f],
				 strerror(ENOENT));
		free(path);
		ok = false;
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
	rcache_free(t->cache);
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

/* A rendered part with holes: the text of every placeholder but those in
 * `holes` (a bit per known_vars index), whose places are remembered so
 * that a unit's values can be put in later (pre_fill). */
struct pre {
	struct buf text;
	struct hole {
		size_t off;
		int var;
	} *h;
	size_t nh;
};

static void
put_value(struct buf *out, const char *v, bool one_line)
{
	if (!one_line) {
		buf_puts(out, v);
		return;
	}
	/* a subject stays one line whatever a value holds */
	for (; *v != '\0'; v++)
		buf_putc(out, (*v == '\r' || *v == '\n' || *v == '\t') ? ' ' : *v);
}

/*
 * A body line whose placeholders all came out empty is left out: "- Thời
 * gian lấy số liệu: {{period_text}}" for a report without a period,
 * "{{ref}}" without a plan reference.  The language has no conditionals
 * and needs none for this.  A line with a hole is kept (the holes are a
 * unit's name, id, feed: never empty).  Lines are the body's "\n"
 * segments (tmpl_parse adds each line end as a segment of its own).
 */
static void
render_part_holes(const struct part *p, const struct tmpl_var *vars,
		  size_t nvars, bool one_line, uint64_t holes, struct buf *out,
		  struct pre *pre)
{
	size_t line_start = out->len;
	bool line_vars = false, line_full = false;

	for (size_t i = 0; i < p->n; i++) {
		int var = p->seg[i].var;
		const char *v;

		if (p->seg[i].text != NULL) {
			if (p->seg[i].len == 1 && p->seg[i].text[0] == '\n') {
				if (line_vars && !line_full) {
					out->len = line_start;
				} else {
					buf_add(out, "\n", 1);
				}
				line_start = out->len;
				line_vars = line_full = false;
				continue;
			}
			buf_add(out, p->seg[i].text, p->seg[i].len);
			continue;
		}
		line_vars = true;
		if (pre != NULL && (holes & (UINT64_C(1) << var))) {
			pre->h = xrealloc(pre->h, (pre->nh + 1) * sizeof *pre->h);
			pre->h[pre->nh].off = out->len;
			pre->h[pre->nh].var = var;
			pre->nh++;
			line_full = true;
			continue;
		}
		v = lookup(vars, nvars, known_vars[var]);
		if (*v != '\0')
			line_full = true;
		put_value(out, v, one_line);
	}
	buf_add(out, "", 0);
}

static void
render_part(const struct part *p, const struct tmpl_var *vars, size_t nvars,
	    bool one_line, struct buf *out)
{
	render_part_holes(p, vars, nvars, one_line, 0, out, NULL);
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

#define NVARS 40

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

/* "20/03/2024" for an end-of-day deadline, "17:00 ngày 20/03/2024"
 * ("17:00 on 20/03/2024") for a timed one. */
static void
when_text(const struct conf *c, const struct occ *o, char *out, size_t size)
{
	struct ymd day;
	char d[16];
	int minute;

	if (o->cycle != NULL && occ_due_minute(o) >= 1440) {
		ymd_format_vn(o->due, out);
		return;
	}
	tz_local(c->tz, o->due_at, &day, &minute, NULL);
	ymd_format_vn(day, d);
	snprintf(out, size, lang_en(c) ? "%02d:%02d on %s" : "%02d:%02d ngày %s",
		 minute / 60, minute % 60, d);
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
	/* as people write a deadline: the day, or the time and the day */
	when_text(c, o, when, sizeof when);
	old = *o;
	old.extended = false;         /* the plan's own time of day */
	old.due = o->was_due;
	old.due_at = o->was_due_at;
	when_text(c, &old, was, sizeof was);
	var_own(vs, "extended_due", xstrdup(when));
	var_own(vs, "extended", xasprintf(lang_en(c)
		? "The deadline has been extended until %s (it was %s).\n\n"
		: "Hạn gửi báo cáo đã được gia hạn đến %s (hạn trước đây: "
		  "%s).\n\n", when, was));
}

/* ------------------------------------------- texts people would sign */

/*
 * {{period_label}}: the period as plans name it, with its year ("quý
 * I/2024", "06 tháng đầu năm 2024", "09 tháng năm 2024", "năm 2024",
 * "tháng 3/2024").  Its kind comes from `[cycle] label` (a kind, or a text
 * where %Y is the year), else from the title's words ("quý", "6 tháng",
 * "9 tháng", "tháng", "năm" and their English equivalents).  The year and
 * the quarter or month are those of the period's last day, or of the
 * nominal due date when there is no period: a report due 13/03 on data to
 * 13/03 is quý I, one due 15/04 on data to 31/03 is quý I too.
 */
static enum cycle_label
label_kind(const struct cycle *cy)
{
	static const struct { const char *w; enum cycle_label l; } words[] = {
		/* the longer phrases first: "6 tháng" is not "tháng" */
		{ "9 tháng", LABEL_NINE_MONTHS }, { "chín tháng", LABEL_NINE_MONTHS },
		{ "nine-month", LABEL_NINE_MONTHS }, { "nine month", LABEL_NINE_MONTHS },
		{ "6 tháng", LABEL_HALF }, { "sáu tháng", LABEL_HALF },
		{ "half", LABEL_HALF }, { "six-month", LABEL_HALF },
		{ "six month", LABEL_HALF },
		{ "quý", LABEL_QUARTER }, { "Quý", LABEL_QUARTER },
		{ "QUÝ", LABEL_QUARTER }, { "quarter", LABEL_QUARTER },
		{ "Quarter", LABEL_QUARTER },
		{ "tháng", LABEL_MONTH }, { "Tháng", LABEL_MONTH },
		{ "month", LABEL_MONTH }, { "Month", LABEL_MONTH },
		{ "năm", LABEL_YEAR }, { "Năm", LABEL_YEAR }, { "NĂM", LABEL_YEAR },
		{ "annual", LABEL_YEAR }, { "Annual", LABEL_YEAR },
		{ "year", LABEL_YEAR }, { "Year", LABEL_YEAR },
	};

	if (cy->label != LABEL_AUTO)
		return cy->label;
	/* a Decree 09 period preset says what the period is */
	switch (cy->period) {
	case PERIOD_MONTH: return LABEL_MONTH;
	case PERIOD_QUARTER: return LABEL_QUARTER;
	case PERIOD_HALF: return LABEL_HALF;
	case PERIOD_NINE_MONTHS: return LABEL_NINE_MONTHS;
	case PERIOD_YEAR: return LABEL_YEAR;
	default: break;
	}
	if (cy->title == NULL)
		return LABEL_NONE;
	for (size_t i = 0; i < sizeof words / sizeof words[0]; i++)
		if (strstr(cy->title, words[i].w) != NULL)
			return words[i].l;
	return LABEL_NONE;
}

static const char *const roman[] = { "I", "II", "III", "IV" };
static const char *const month_en[] = {
	"January", "February", "March", "April", "May", "June", "July",
	"August", "September", "October", "November", "December",
};

static bool
ends_with(const char *s, const char *tail)
{
	size_t n = strlen(s), t = strlen(tail);

	/* ASCII case only: "Quý"/"quý" differ in their first letter */
	return n >= t && strncasecmp(s + n - t, tail, t) == 0 &&
	       (n == t || s[n - t - 1] == ' ');
}

/* label and report into the two buffers */
static void
label_texts(const struct conf *c, const struct occ *o, struct buf *label,
	    struct buf *report)
{
	const struct cycle *cy = o->cycle;
	const char *title = cy->title != NULL ? cy->title : cy->id;
	struct ymd r = o->has_period ? o->period_to : o->nominal;
	enum cycle_label k = label_kind(cy);
	bool en = lang_en(c);
	int q = (r.m - 1) / 3;
	char tail[64];

	tail[0] = '\0';
	switch (k) {
	case LABEL_AUTO:
	case LABEL_NONE:
		buf_puts(report, title);
		return;   /* (no label: nothing to add) */
	case LABEL_TEXT:
		for (const char *p = cy->label_text; *p != '\0'; p++) {
			if (p[0] == '%' && p[1] == 'Y') {
				buf_printf(label, "%d", r.y);
				p++;
			} else {
				buf_putc(label, *p);
			}
		}
		buf_printf(report, "%s %s", title, buf_str(label));
		goto done;
	case LABEL_MONTH:
		if (en)
			buf_printf(label, "%s %d", month_en[r.m - 1], r.y);
		else
			buf_printf(label, "tháng %d/%d", r.m, r.y);
		snprintf(tail, sizeof tail, "tháng %d", r.m);
		if (!en && ends_with(title, tail)) {
			buf_printf(report, "%s/%d", title, r.y);
			goto done;
		}
		if (!en && ends_with(title, "tháng")) {
			buf_printf(report, "%s %d/%d", title, r.m, r.y);
			goto done;
		}
		break;
	case LABEL_QUARTER:
		if (en)
			buf_printf(label, "Q%d %d", q + 1, r.y);
		else
			buf_printf(label, "quý %s/%d", roman[q], r.y);
		snprintf(tail, sizeof tail, "quý %s", roman[q]);
		if (!en && ends_with(title, tail)) {
			buf_printf(report, "%s/%d", title, r.y);
			goto done;
		}
		if (!en && ends_with(title, "quý")) {
			buf_printf(report, "%s %s/%d", title, roman[q], r.y);
			goto done;
		}
		break;
	case LABEL_HALF:
		if (en)
			buf_printf(label, "first half of %d", r.y);
		else
			buf_printf(label, "06 tháng đầu năm %d", r.y);
		if (!en && ends_with(title, "6 tháng đầu năm")) {
			buf_printf(report, "%s %d", title, r.y);
			goto done;
		}
		if (!en && ends_with(title, "6 tháng")) {
			buf_printf(report, "%s đầu năm %d", title, r.y);
			goto done;
		}
		break;
	case LABEL_NINE_MONTHS:
		if (en)
			buf_printf(label, "first nine months of %d", r.y);
		else
			buf_printf(label, "09 tháng năm %d", r.y);
		if (!en && ends_with(title, "9 tháng năm")) {
			buf_printf(report, "%s %d", title, r.y);
			goto done;
		}
		if (!en && ends_with(title, "9 tháng")) {
			buf_printf(report, "%s năm %d", title, r.y);
			goto done;
		}
		break;
	case LABEL_YEAR:
		if (en)
			buf_printf(label, "%d", r.y);
		else
			buf_printf(label, "năm %d", r.y);
		if (!en && ends_with(title, "năm")) {
			buf_printf(report, "%s %d", title, r.y);
			goto done;
		}
		break;
	}
	/* a title that does not name the period: the label follows it */
	if (en)
		buf_printf(report, "%s (%s)", title, buf_str(label));
	else
		buf_printf(report, "%s %s", title, buf_str(label));
done:
	/* "Báo cáo quý I năm 2024 về ...": the title names its year already */
	snprintf(tail, sizeof tail, "%d", r.y);
	if (strstr(title, tail) != NULL) {
		buf_reset(report);
		buf_puts(report, title);
	}
}

void
occ_label(const struct conf *c, const struct occ *o, char *out, size_t size)
{
	struct buf label, report;

	buf_init(&label);
	buf_init(&report);
	label_texts(c, o, &label, &report);
	snprintf(out, size, "%s", buf_str(&report));
	buf_free(&label);
	buf_free(&report);
}

void
occ_period_label(const struct conf *c, const struct occ *o, char *out,
		 size_t size)
{
	struct buf label, report;

	buf_init(&label);
	buf_init(&report);
	label_texts(c, o, &label, &report);
	snprintf(out, size, "%s", buf_str(&label));
	buf_free(&label);
	buf_free(&report);
}

/* {{deadline}}: "trước ngày 13/03/2024" for an end-of-day deadline, as
 * plans write it; "trước 17:00 ngày 13/03/2024" for a timed one. */
static char *
deadline_text(const struct conf *c, const struct occ *o)
{
	char d[16];
	struct ymd day;
	int minute;

	if (o->cycle != NULL && occ_due_minute(o) >= 1440) {
		ymd_format_vn(o->due, d);
		return xasprintf(lang_en(c) ? "by the end of %s" :
				 "trước ngày %s", d);
	}
	tz_local(c->tz, o->due_at, &day, &minute, NULL);
	ymd_format_vn(day, d);
	return xasprintf(lang_en(c) ? "before %02d:%02d on %s" :
			 "trước %02d:%02d ngày %s", minute / 60, minute % 60, d);
}

/* The 0.2 placeholders of an occurrence (none depends on the unit). */
static void
signed_vars(const struct conf *c, const struct occ *o, int days,
	    struct varset *vs)
{
	struct buf label, report;
	const char *ref = o->cycle->ref;
	char d[16];

	buf_init(&label);
	buf_init(&report);
	ymd_format_vn(civil_from_days(days_from_civil(o->due.y, o->due.m,
				      o->due.d) + days), d);
	var_own(vs, "today", xstrdup(d));
	label_texts(c, o, &label, &report);
	var_own(vs, "period_label", buf_steal(&label));
	var_own(vs, "report", buf_steal(&report));
	var_set(vs, "ref", ref != NULL ? ref : "");
	if (ref != NULL)
		var_own(vs, "basis", xasprintf(lang_en(c) ? "Under %s" :
						"Thực hiện %s", ref));
	else
		var_set(vs, "basis", lang_en(c) ?
			"Under the steering committee's reporting rules" :
			"Thực hiện chế độ thông tin, báo cáo của Ban Chỉ đạo");
	var_own(vs, "deadline", deadline_text(c, o));
	if (o->has_period) {
		char from[16], to[16];

		ymd_format_vn(o->period_from, from);
		ymd_format_vn(o->period_to, to);
		var_own(vs, "period_text", xasprintf(lang_en(c) ?
			"from %s to %s" : "từ ngày %s đến ngày %s", from, to));
	} else {
		var_set(vs, "period_text", "");   /* its line is left out */
	}
	buf_free(&label);
	buf_free(&report);
}

/* Feed tokens never change once created (db.c inserts them once), so each
 * unit's is read from the store once per configuration and kept in the
 * render cache (below); NULL when the unit is not the configuration's. */
static const char *unit_token(const struct conf *c, struct db *db,
			      const struct unit *u);

static char *
unit_feed_url(const struct conf *c, struct db *db, const struct unit *u)
{
	const char *base = c->daemon.public_url != NULL ? c->daemon.public_url : "";
	const char *token = unit_token(c, db, u);
	char *own = NULL, *url;

	if (token == NULL && (db == NULL || db_unit_token(db, u->id, &own) < 0)) {
		log_warn("no feed token for unit %s", u->id);
		return xstrdup("");
	}
	if (token == NULL)
		token = own;
	/* concatenated by hand: one per notice, printf is most of its cost */
	{
		size_t lb = strlen(base), li = strlen(u->id), lt = strlen(token);
		char *o;

		o = url = xmalloc(lb + 7 + li + 11 + lt + 1);
		memcpy(o, base, lb);
		o += lb;
		memcpy(o, "/units/", 7);
		o += 7;
		memcpy(o, u->id, li);
		o += li;
		memcpy(o, ".ics?token=", 11);
		o += 11;
		memcpy(o, token, lt + 1);
	}
	free(own);
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

/*
 * The render cache.  A mass send renders the same (occurrence, step,
 * audience) for thousands of units on the same day: everything but the
 * unit's own values (its name, id, line of a digest, feed URL) is the
 * same, so it is rendered once with holes and each notice only fills them
 * (profile before: notice_render 14 % of a send, sched_occurrence twice
 * and sched_steps once per notice).  Entries are keyed by what the text
 * depends on besides the unit: occurrence, step, audience, today's local
 * date; the configuration owns the cache (it dies with it, on reload),
 * and notice_cache_clear drops it whenever the state changes (an
 * extension may move a due date).  Digests of several units are rendered
 * in full each time: there are few.
 */
#define RCACHE_SLOTS 16
/* the placeholders that differ between the units of one entry */
#define UNIT_HOLES ((UINT64_C(1) << V_UNIT) | (UINT64_C(1) << V_UNIT_ID) | \
		    (UINT64_C(1) << V_UNITS) | (UINT64_C(1) << V_FEED_URL) | \
		    (UINT64_C(1) << V_CONFIRM_URL))
_Static_assert(sizeof(known_vars) / sizeof(known_vars[0]) <= 64,
	       "hole masks are 64 bits");

struct rentry {
	bool used;
	char occ[OCC_ID_MAX];
	char step[STEP_NAME_MAX];
	enum audience aud;
	int64_t day;
	tstamp ext_due;              /* the unit's extended due; 0 = none */
	struct notice_text base;     /* facts; subject/body NULL; feed_url
					set for digests only */
	struct pre subject, body;
	/* the body's lines for quoted-printable: runs of lines without a
	 * hole, encoded once (QP works line by line), and the lines with
	 * holes, [a, b] in body.text (b: its '\n' or the end) */
	struct qpseg {
		bool dirty;
		size_t a, b;
		struct buf enc;
	} *qs;
	size_t nqs;
};

#define XMEMO_SLOTS 16
struct rcache {
	struct rentry e[RCACHE_SLOTS];
	size_t next;                 /* round-robin victim */
	struct {                     /* occurrences with extensions */
		bool used, ext;
		char occ[OCC_ID_MAX];
	} xm[XMEMO_SLOTS];
	size_t xnext;
	struct db *db;               /* the store tokens were read from */
	char **token;                /* per unit index, NULL = not read */
	size_t ntoken;
};

static void
pre_free(struct pre *p)
{
	buf_free(&p->text);
	free(p->h);
	p->h = NULL;
	p->nh = 0;
}

static void
rentry_clear(struct rentry *e)
{
	pre_free(&e->subject);
	pre_free(&e->body);
	free(e->base.feed_url);
	for (size_t i = 0; i < e->nqs; i++)
		buf_free(&e->qs[i].enc);
	free(e->qs);
	memset(e, 0, sizeof *e);
}

static void
rcache_free(struct rcache *rc)
{
	if (rc == NULL)
		return;
	for (size_t i = 0; i < RCACHE_SLOTS; i++)
		rentry_clear(&rc->e[i]);
	for (size_t i = 0; i < rc->ntoken; i++)
		free(rc->token[i]);
	free(rc->token);
	free(rc);
}

static struct rcache *
rcache(const struct conf *c)
{
	/* the set is the configuration's; the cache inside it is mutable
	 * state of this single-threaded process */
	if (c->tmpl->cache == NULL)
		c->tmpl->cache = xcalloc(1, sizeof *c->tmpl->cache);
	return c->tmpl->cache;
}

void
notice_cache_clear(const struct conf *c)
{
	struct rcache *rc;

	if (c == NULL || c->tmpl == NULL || c->tmpl->cache == NULL)
		return;
	rc = c->tmpl->cache;
	for (size_t i = 0; i < RCACHE_SLOTS; i++)
		rentry_clear(&rc->e[i]);
	memset(rc->xm, 0, sizeof rc->xm);
}

struct token_load {
	const struct conf *c;
	struct rcache *rc;
};

static int
token_loaded(void *ctx, const char *unit, const char *token)
{
	struct token_load *tl = ctx;
	const struct unit *u = conf_unit(tl->c, unit);

	if (u != NULL && u >= tl->c->units && u < tl->c->units + tl->c->nunits &&
	    tl->rc->token[u - tl->c->units] == NULL)
		tl->rc->token[u - tl->c->units] = xstrdup(token);
	return 0;
}

static const char *
unit_token(const struct conf *c, struct db *db, const struct unit *u)
{
	struct rcache *rc;
	size_t i;
	char *token = NULL;

	if (db == NULL || c->tmpl == NULL || c->units == NULL ||
	    u < c->units || u >= c->units + c->nunits)
		return NULL;
	rc = rcache(c);
	if (rc->db != db || rc->ntoken != c->nunits) {
		struct token_load tl = { c, rc };

		for (i = 0; i < rc->ntoken; i++)
			free(rc->token[i]);
		free(rc->token);
		rc->token = xcalloc(c->nunits ? c->nunits : 1, sizeof *rc->token);
		rc->ntoken = c->nunits;
		rc->db = db;
		/* all at once: a mass send has one notice per unit */
		db_unit_token_foreach(db, token_loaded, &tl);
	}
	i = (size_t)(u - c->units);
	if (rc->token[i] == NULL) {
		if (db_unit_token(db, u->id, &token) < 0)
			return NULL;
		rc->token[i] = token;
	}
	return rc->token[i];
}

static bool
is_digest(enum tmpl_kind k)
{
	return k == TMPL_DIGEST || k == TMPL_DIGEST_SECRETARIAT ||
	       k == TMPL_DIGEST_CHIEF;
}

/* Whether any extension names occ (ledger.c), read once per cache
 * lifetime (notice_cache_clear runs whenever the state changes): only an
 * extended occurrence costs a read of the unit's own deadline per notice. */
static bool
occ_has_ext(const struct conf *c, struct db *db, const char *occ)
{
	struct rcache *rc = rcache(c);
	struct extension *v = NULL;
	size_t n = 0, i;
	bool ext = true;         /* unknown: resolve per notice */

	for (i = 0; i < XMEMO_SLOTS; i++)
		if (rc->xm[i].used && strcmp(rc->xm[i].occ, occ) == 0)
			return rc->xm[i].ext;
	if (ledger_extensions(db, occ, &v, &n) == 0)
		ext = n > 0;
	extensions_free(v, n);
	i = rc->xnext;
	rc->xnext = (rc->xnext + 1) % XMEMO_SLOTS;
	rc->xm[i].used = true;
	rc->xm[i].ext = ext;
	snprintf(rc->xm[i].occ, sizeof rc->xm[i].occ, "%s", occ);
	return ext;
}

/* The facts of ns[0]'s occurrence and step as of today (local): eff, when
 * given, is the occurrence with the unit's own deadline. */
static int
notice_facts(const struct conf *c, struct db *db, const struct occ *eff,
	     const struct notice *n0, struct ymd today, struct notice_text *nt)
{
	if (eff != NULL) {
		nt->occ = *eff;
	} else if (sched_occurrence(c, n0->occurrence, &nt->occ) < 0) {
		log_err("notice for unknown occurrence %s", n0->occurrence);
		return -1;
	} else if (db != NULL && occ_has_ext(c, db, n0->occurrence) &&
		   ledger_effective(c, db, &nt->occ, NULL) < 0) {
		return -1;     /* a digest: the occurrence-wide deadline */
	}
	nt->days = (int)(days_from_civil(today.y, today.m, today.d) -
			 days_from_civil(nt->occ.due.y, nt->occ.due.m,
					 nt->occ.due.d));
	nt->escalation = step_is_escalation(c, &nt->occ, n0->step, nt->days);
	/* each audience has its own salutation and voice */
	if (n0->aud & AUD_CHIEF)
		nt->kind = TMPL_DIGEST_CHIEF;
	else if (n0->aud & AUD_SECRETARIAT)
		nt->kind = TMPL_DIGEST_SECRETARIAT;
	else if (n0->aud & AUD_HEAD)
		nt->kind = nt->escalation ? TMPL_ESCALATE_HEAD : TMPL_REMIND_HEAD;
	else if (nt->escalation)
		nt->kind = TMPL_ESCALATE;
	else
		nt->kind = TMPL_REMIND;
	if (!c->tmpl->t[nt->kind].loaded)
		nt->kind = tmpl_fallback[nt->kind];
	return 0;
}

/* The variables that are the same for every unit of (occurrence, step,
 * audience, day).  feed_url is set here for digests (the secretariat's
 * feed), else it is the unit's. */
static void
common_vars(const struct conf *c, const struct notice *n0,
	    const struct notice_text *nt, size_t n, struct varset *vs)
{
	struct buf tmp;
	char when[32];

	buf_init(&tmp);
	var_set(vs, "cycle", nt->occ.cycle->id);
	var_set(vs, "title", nt->occ.cycle->title);
	var_set(vs, "occurrence", nt->occ.id);
	format_due(c, &nt->occ, when, sizeof when);
	var_own(vs, "due", xstrdup(when));
	tz_format_vn(c->tz, nt->occ.due_at, when);
	var_own(vs, "late_since", xstrdup(when));
	ymd_format_vn(nt->occ.due, when);
	var_own(vs, "due_date", xstrdup(when));
	var_own(vs, "days", xasprintf("%d", nt->days));
	var_own(vs, "days_left", xasprintf("%d", nt->days < 0 ? -nt->days : 0));
	var_own(vs, "days_late", xasprintf("%d", nt->days > 0 ? nt->days : 0));
	remaining_text(c, nt->days, &tmp);
	var_own(vs, "remaining", buf_steal(&tmp));
	if (nt->occ.has_period) {
		char from[16], to[16];

		ymd_format_vn(nt->occ.period_from, from);
		ymd_format_vn(nt->occ.period_to, to);
		var_own(vs, "period_from", xstrdup(from));
		var_own(vs, "period_to", xstrdup(to));
		var_own(vs, "period", xasprintf("%s – %s", from, to));
	} else {
		/* `previous` with no earlier due date: data up to the
		 * nominal date (cut-offs don't move), not a blank field */
		char to[16];

		ymd_format_vn(nt->occ.nominal, to);
		var_set(vs, "period_from", "");
		var_own(vs, "period_to", xstrdup(to));
		var_own(vs, "period", xasprintf("%s %s", lang_en(c) ?
			"up to" : "đến ngày", to));
	}
	var_own(vs, "status_url", xasprintf("%s/",
		c->daemon.public_url != NULL ? c->daemon.public_url : ""));
	var_set(vs, "submit_to", c->secretariat.email);
	var_set(vs, "secretariat", c->secretariat.name);
	var_set(vs, "step", n0->step);
	var_own(vs, "count", xasprintf("%zu", n));
	extended_vars(c, &nt->occ, vs);
	buf_free(&tmp);
	signed_vars(c, &nt->occ, nt->days, vs);
}

/* Fills pre's holes with one unit's values: the length is known first,
 * so the text is assembled in one allocation. */
static char *
pre_fill(const struct pre *pre, const char *const *val, bool one_line)
{
	size_t total = pre->text.len, from = 0, vl;
	char *out, *o;

	for (size_t i = 0; i < pre->nh; i++)
		total += strlen(val[pre->h[i].var]);
	o = out = xmalloc(total + 1);
	for (size_t i = 0; i < pre->nh; i++) {
		memcpy(o, pre->text.p + from, pre->h[i].off - from);
		o += pre->h[i].off - from;
		vl = strlen(val[pre->h[i].var]);
		memcpy(o, val[pre->h[i].var], vl);
		if (one_line) {
			/* a subject stays one line whatever a value holds */
			for (size_t k = 0; k < vl; k++)
				if (o[k] == '\r' || o[k] == '\n' || o[k] == '\t')
					o[k] = ' ';
		}
		o += vl;
		from = pre->h[i].off;
	}
	if (pre->text.len > from)
		memcpy(o, pre->text.p + from, pre->text.len - from);
	o += pre->text.len - from;
	*o = '\0';
	return out;
}

static bool
pre_has(const struct pre *pre, int var)
{
	for (size_t i = 0; i < pre->nh; i++)
		if (pre->h[i].var == var)
			return true;
	return false;
}

/* Splits the body into runs of clean lines (encoded here, once) and lines
 * with holes (encoded per notice). */
static void
qp_segments(struct rentry *e)
{
	const char *t = e->body.text.p != NULL ? e->body.text.p : "";
	size_t len = e->body.text.len, a = 0, h = 0;

	while (a < len) {
		const char *nl = memchr(t + a, '\n', len - a);
		size_t b = nl != NULL ? (size_t)(nl - t) : len;
		bool dirty = false;
		struct qpseg *q;

		while (h < e->body.nh && e->body.h[h].off < a)
			h++;
		if (h < e->body.nh && e->body.h[h].off <= b)
			dirty = true;
		q = e->nqs > 0 ? &e->qs[e->nqs - 1] : NULL;
		if (dirty || q == NULL || q->dirty) {
			e->qs = xrealloc(e->qs, (e->nqs + 1) * sizeof *e->qs);
			q = &e->qs[e->nqs++];
			memset(q, 0, sizeof *q);
			q->dirty = dirty;
			q->a = a;
		}
		q->b = b;
		a = b + 1;
	}
	for (size_t i = 0; i < e->nqs; i++) {
		struct qpseg *q = &e->qs[i];
		size_t end = q->b < len ? q->b + 1 : len;

		buf_init(&q->enc);
		if (!q->dirty)
			mail_qp_encode(&q->enc, t + q->a, end - q->a);
	}
}

/* The body in quoted-printable from the segments: clean runs copied,
 * lines with holes filled and encoded. */
static char *
qp_fill(const struct rentry *e, const char *const *val, size_t *len)
{
	const char *t = e->body.text.p != NULL ? e->body.text.p : "";
	struct buf out, line;
	size_t h = 0;

	buf_init(&out);
	buf_init(&line);
	buf_add(&out, "", 0);
	for (size_t i = 0; i < e->nqs; i++) {
		const struct qpseg *q = &e->qs[i];
		size_t end = q->b < e->body.text.len ? q->b + 1 : e->body.text.len;
		size_t from = q->a;

		if (!q->dirty) {
			buf_add(&out, q->enc.p, q->enc.len);
			continue;
		}
		buf_reset(&line);
		while (h < e->body.nh && e->body.h[h].off < q->a)
			h++;
		for (; h < e->body.nh && e->body.h[h].off <= q->b; h++) {
			buf_add(&line, t + from, e->body.h[h].off - from);
			buf_puts(&line, val[e->body.h[h].var]);
			from = e->body.h[h].off;
		}
		buf_add(&line, t + from, end - from);
		mail_qp_encode(&out, line.p, line.len);
	}
	buf_free(&line);
	*len = out.len;
	return buf_steal(&out);
}

static struct rentry *
rentry_get(const struct conf *c, struct db *db, const struct notice *n0,
	   struct ymd today)
{
	struct rcache *rc = rcache(c);
	int64_t day = days_from_civil(today.y, today.m, today.d);
	struct varset vs = { .n = 0 };
	struct rentry *e;
	const struct tmpl *t;
	struct occ eo;
	bool have_eo = false;
	tstamp ext_due = 0;

	/* an extended occurrence: the unit's own deadline is part of the
	 * key (units with and without their own extension differ) */
	if (db != NULL && occ_has_ext(c, db, n0->occurrence)) {
		if (sched_occurrence(c, n0->occurrence, &eo) < 0 ||
		    ledger_effective(c, db, &eo, n0->unit) < 0)
			return NULL;
		have_eo = true;
		ext_due = eo.extended ? eo.due_at : 0;
	}
	for (size_t i = 0; i < RCACHE_SLOTS; i++) {
		e = &rc->e[i];
		if (e->used && e->day == day && e->aud == n0->aud &&
		    e->ext_due == ext_due &&
		    strcmp(e->occ, n0->occurrence) == 0 &&
		    strcmp(e->step, n0->step) == 0)
			return e;
	}
	e = &rc->e[rc->next];
	rc->next = (rc->next + 1) % RCACHE_SLOTS;
	rentry_clear(e);
	if (notice_facts(c, db, have_eo ? &eo : NULL, n0, today, &e->base) < 0)
		return NULL;
	e->ext_due = ext_due;
	t = &c->tmpl->t[e->base.kind];
	if (!t->loaded) {
		log_err("notice %s %s %s: template not loaded", n0->occurrence,
			n0->unit, n0->step);
		return NULL;
	}
	if (is_digest(e->base.kind)) {
		e->base.feed_url = secretariat_feed_url(c);
		var_set(&vs, "feed_url", e->base.feed_url);
	}
	common_vars(c, n0, &e->base, 1, &vs);
	render_part_holes(&t->subject, vs.v, vs.n, true, UNIT_HOLES,
			  &e->subject.text, &e->subject);
	render_part_holes(&t->body, vs.v, vs.n, false, UNIT_HOLES,
			  &e->body.text, &e->body);
	varset_free(&vs);
	qp_segments(e);
	snprintf(e->occ, sizeof e->occ, "%s", n0->occurrence);
	snprintf(e->step, sizeof e->step, "%s", n0->step);
	e->aud = n0->aud;
	e->day = day;
	e->used = true;
	return e;
}

/* One unit's notice from the cache. */
static int
render_one(const struct conf *c, struct db *db, const struct notice *n0,
	   struct ymd today, struct notice_text *out)
{
	const char *val[sizeof(known_vars) / sizeof(known_vars[0])] = { 0 };
	const struct unit *u = conf_unit(c, n0->unit);
	struct rentry *e;
	struct buf line;
	struct notice_text nt;

	if (u == NULL) {
		log_err("notice for unknown unit %s", n0->unit);
		return -1;
	}
	e = rentry_get(c, db, n0, today);
	if (e == NULL)
		return -1;
	nt = e->base;
	nt.unit = u;
	nt.feed_url = is_digest(e->base.kind) ? xstrdup(e->base.feed_url) :
						     unit_feed_url(c, db, u);
	buf_init(&line);
	if (pre_has(&e->body, V_UNITS)) {
		unit_line(c, u, nt.days, NULL, &line);
		if (line.len > 0 && line.p[line.len - 1] == '\n')
			line.p[--line.len] = '\0';
	}
	val[V_UNIT] = u->name != NULL ? u->name : u->id;
	val[V_UNIT_ID] = u->id;
	val[V_UNITS] = buf_str(&line);
	val[V_FEED_URL] = nt.feed_url;
	/* the unit's own link, to the unit or its head; none in a digest */
	nt.confirm_url = e->base.kind == TMPL_DIGEST ? xstrdup("") :
			 link_url(c, db, u->id, nt.occ.id);
	val[V_CONFIRM_URL] = nt.confirm_url;
	nt.subject = pre_fill(&e->subject, val, true);
	nt.body = pre_fill(&e->body, val, false);
	nt.body_qp = qp_fill(e, val, &nt.body_qp_len);
	buf_free(&line);
	*out = nt;
	return 0;
}

/* A remote server's words in a mail body: control characters become
 * spaces, at most max bytes, cut at a character. */
static void
put_remote(struct buf *b, const char *s, size_t max)
{
	size_t n = strlen(s);

	if (n > max)
		n = max;
	while (n > 0 && !utf8_valid(s, n))
		n--;
	for (size_t i = 0; i < n; i++) {
		unsigned char ch = (unsigned char)s[i];

		buf_putc(b, ch < 0x20 || ch == 0x7f ? ' ' : (char)ch);
	}
}

struct bounce_ctx {
	const struct conf *c;
	struct notice *const *ns;
	size_t n;
	struct buf *out;
	char **seen;             /* "occ unit address" listed already */
	size_t nseen;
};

static int
bounce_line(void *ctx, const struct db_bounce *x)
{
	struct bounce_ctx *bc = ctx;
	const struct unit *u = conf_unit(bc->c, x->unit);
	bool listed = false;
	char *key;

	for (size_t i = 0; i < bc->n && !listed; i++)
		listed = strcmp(bc->ns[i]->occurrence, x->occurrence) == 0 &&
			 strcmp(bc->ns[i]->unit, x->unit) == 0;
	if (!listed || u == NULL)
		return 0;
	/* one line per address, whichever of its notices bounced */
	key = xasprintf("%s %s %s", x->occurrence, x->unit, x->address);
	for (size_t i = 0; i < bc->nseen; i++) {
		if (strcmp(bc->seen[i], key) == 0) {
			free(key);
			return 0;
		}
	}
	bc->seen = xrealloc(bc->seen, (bc->nseen + 1) * sizeof(*bc->seen));
	bc->seen[bc->nseen++] = key;
	buf_puts(bc->out, lang_en(bc->c)
		 ? "- A unit's address does not receive mail: "
		 : "- Địa chỉ thư của đơn vị không nhận được thư: ");
	put_remote(bc->out, x->address, 200);
	buf_puts(bc->out, " (");
	put_remote(bc->out, x->status != NULL ? x->status : "", 20);
	if (x->diagnostic != NULL && x->diagnostic[0] != '\0') {
		buf_putc(bc->out, ' ');
		put_remote(bc->out, x->diagnostic, 300);
	}
	buf_printf(bc->out, ") – %s (%s)\n", u->name != NULL ? u->name : u->id,
		   u->id);
	return 0;
}

/* {{bounces}} of a digest: a line per bounced address (RFC 3464 reports
 * the mailbox found, imap.c) of the units it lists; "" when none. */
static char *
digest_bounces(const struct conf *c, struct db *db, struct notice *const *ns,
	       size_t n)
{
	struct buf out;
	struct bounce_ctx bc = { c, ns, n, &out, NULL, 0 };

	buf_init(&out);
	if (db != NULL && (ns[0]->aud & (AUD_SECRETARIAT | AUD_CHIEF))) {
		for (size_t i = 0; i < n; i++) {
			bool done = false;

			for (size_t k = 0; k < i && !done; k++)
				done = strcmp(ns[k]->occurrence,
					      ns[i]->occurrence) == 0;
			if (!done && db_bounce_foreach(db, ns[i]->occurrence,
						       bounce_line, &bc) < 0)
				log_warn("notice %s: the bounced addresses "
					 "could not be read",
					 ns[i]->occurrence);
		}
	}
	for (size_t i = 0; i < bc.nseen; i++)
		free(bc.seen[i]);
	free(bc.seen);
	if (out.len > 0 && out.p[out.len - 1] == '\n')
		out.p[--out.len] = '\0';
	return buf_steal(&out);
}

int
notice_render(const struct conf *c, struct db *db, struct notice *const *ns,
	      size_t n, tstamp now, struct notice_text *out)
{
	struct notice_text nt = { 0 };
	struct varset vs = { .n = 0 };
	struct buf units, names, ids;
	struct ymd today;
	bool same_occ = true;
	char *bounces;
	int rc = -1;

	if (c == NULL || ns == NULL || n == 0 || ns[0] == NULL)
		return -1;
	if (c->tmpl == NULL) {
		log_err("notice %s %s %s: no templates loaded", ns[0]->occurrence,
			ns[0]->unit, ns[0]->step);
		return -1;
	}
	today = local_date(c, now);
	/* a digest naming a bounced address is rendered in full: {{bounces}}
	 * is no hole of the cache (a hole is never empty) */
	bounces = digest_bounces(c, db, ns, n);
	if (n == 1 && bounces[0] == '\0') {
		free(bounces);
		return render_one(c, db, ns[0], today, out);
	}

	/* a digest of several units: rendered in full */
	nt.unit = conf_unit(c, ns[0]->unit);
	if (nt.unit == NULL) {
		log_err("notice for unknown unit %s", ns[0]->unit);
		free(bounces);
		return -1;
	}
	if (notice_facts(c, db, NULL, ns[0], today, &nt) < 0) {
		free(bounces);
		return -1;
	}
	buf_init(&units);
	buf_init(&names);
	buf_init(&ids);
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
	var_own(&vs, "bounces", bounces);
	bounces = NULL;
	if (is_digest(nt.kind))
		nt.feed_url = secretariat_feed_url(c);
	else
		nt.feed_url = unit_feed_url(c, db, nt.unit);
	var_set(&vs, "feed_url", nt.feed_url);
	nt.confirm_url = xstrdup("");    /* several units: no one link */
	var_set(&vs, "confirm_url", nt.confirm_url);
	common_vars(c, ns[0], &nt, n, &vs);

	if (tmpl_render(c->tmpl, nt.kind, vs.v, vs.n, &nt.subject, &nt.body) < 0) {
		log_err("notice %s %s %s: template not loaded", ns[0]->occurrence,
			ns[0]->unit, ns[0]->step);
		goto out;
	}
	*out = nt;
	memset(&nt, 0, sizeof nt);
	rc = 0;
out:
	free(bounces);
	buf_free(&units);
	buf_free(&names);
	buf_free(&ids);
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
	free(t->body_qp);
	free(t->confirm_url);
	t->subject = t->body = t->feed_url = t->body_qp = NULL;
	t->confirm_url = NULL;
}
