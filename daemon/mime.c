/*
 * mime.c - a strict, bounded reader of the messages the secretariat's
 * mailbox returns (RFC 5322 headers, RFC 2045/2046 multipart, RFC 2047
 * encoded words, RFC 2231 parameters, RFC 3464 delivery status reports).
 *
 * It takes only what matching needs: the thread headers, the sender, the
 * date, the auto-reply markers, the subject, attachment names and, for a
 * report, each recipient's status and the returned message's Message-ID.
 * Everything is bounded (header bytes, fields, parts, depth, list sizes)
 * so that a hostile message costs a fixed amount of work; anything over a
 * bound is dropped, never an error: the input is what a server stored.
 * The strings it returns are valid UTF-8 without control characters.
 */
#include <ctype.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "cutoffd.h"

#define HDR_MAX (256 * 1024)     /* header block bytes looked at */
#define FIELD_MAX 8192           /* one unfolded field, more is cut */
#define FIELDS_MAX 500           /* fields per header block */
#define DEPTH_MAX 6              /* nested multiparts */
#define PARTS_MAX 128            /* parts per message */

struct span {
	const char *p;
	size_t n;
};

/* ----------------------------------------------------------- small helpers */

static bool
ci_eq(const char *s, size_t n, const char *w)
{
	return strlen(w) == n && strncasecmp(s, w, n) == 0;
}

static void
trim_span(struct span *s)
{
	while (s->n > 0 && isspace((unsigned char)s->p[0])) {
		s->p++;
		s->n--;
	}
	while (s->n > 0 && isspace((unsigned char)s->p[s->n - 1]))
		s->n--;
}

/* Appends a Latin-1 byte as UTF-8. */
static void
put_latin1(struct buf *b, unsigned char c)
{
	if (c < 0x80) {
		buf_putc(b, (char)c);
	} else {
		buf_putc(b, (char)(0xc0 | (c >> 6)));
		buf_putc(b, (char)(0x80 | (c & 0x3f)));
	}
}

/* Appends n bytes that claim to be text: valid UTF-8 sequences stay, every
 * other byte and every control character becomes '?' (tab and newline a
 * space), so the result can reach a log line or a page. */
static void
put_clean(struct buf *b, const char *s, size_t n)
{
	const unsigned char *p = (const unsigned char *)s;
	size_t i = 0, k;

	while (i < n) {
		unsigned char c = p[i];

		if (c < 0x80) {
			if (c == '\t' || c == '\n' || c == '\r')
				buf_putc(b, ' ');
			else if (c < 0x20 || c == 0x7f)
				buf_putc(b, '?');
			else
				buf_putc(b, (char)c);
			i++;
			continue;
		}
		k = c >= 0xf0 ? 4 : c >= 0xe0 ? 3 : c >= 0xc0 ? 2 : 1;
		if (k > 1 && i + k <= n && utf8_valid(s + i, k)) {
			/* C1 controls (U+0080..U+009F) are controls too */
			if (k == 2 && c == 0xc2 && p[i + 1] < 0xa0)
				buf_putc(b, '?');
			else
				buf_add(b, s + i, k);
			i += k;
		} else {
			buf_putc(b, '?');
			i++;
		}
	}
}

static int
hexval(int c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

static int
b64val(int c)
{
	if (c >= 'A' && c <= 'Z')
		return c - 'A';
	if (c >= 'a' && c <= 'z')
		return c - 'a' + 26;
	if (c >= '0' && c <= '9')
		return c - '0' + 52;
	if (c == '+')
		return 62;
	if (c == '/')
		return 63;
	return -1;
}

/* Lenient base64 (white space and junk skipped, stops at '='). */
static void
b64_decode(struct buf *out, const char *s, size_t n)
{
	unsigned acc = 0;
	int bits = 0;

	for (size_t i = 0; i < n; i++) {
		int v;

		if (s[i] == '=')
			break;
		v = b64val((unsigned char)s[i]);
		if (v < 0)
			continue;
		acc = (acc << 6) | (unsigned)v;
		bits += 6;
		if (bits >= 8) {
			bits -= 8;
			buf_putc(out, (char)((acc >> bits) & 0xff));
		}
	}
}

/* Quoted-printable; q (RFC 2047 "Q") also makes '_' a space. */
static void
qp_decode(struct buf *out, const char *s, size_t n, bool q)
{
	for (size_t i = 0; i < n; i++) {
		if (s[i] == '=' && i + 2 < n + 0 && hexval(s[i + 1]) >= 0 &&
		    hexval(s[i + 2]) >= 0) {
			buf_putc(out, (char)(hexval(s[i + 1]) * 16 +
					     hexval(s[i + 2])));
			i += 2;
		} else if (s[i] == '=' && !q) {
			/* soft line break: skip to after the line end */
			while (i + 1 < n && (s[i + 1] == ' ' || s[i + 1] == '\t'))
				i++;
			if (i + 1 < n && s[i + 1] == '\r')
				i++;
			if (i + 1 < n && s[i + 1] == '\n')
				i++;
		} else if (q && s[i] == '_') {
			buf_putc(out, ' ');
		} else {
			buf_putc(out, s[i]);
		}
	}
}

enum cs { CS_UTF8, CS_LATIN1, CS_OTHER };

static enum cs
charset_of(const char *s, size_t n)
{
	/* RFC 2231 section 5: "charset*language" */
	for (size_t i = 0; i < n; i++)
		if (s[i] == '*') {
			n = i;
			break;
		}
	if (ci_eq(s, n, "utf-8") || ci_eq(s, n, "utf8"))
		return CS_UTF8;
	if (ci_eq(s, n, "iso-8859-1") || ci_eq(s, n, "latin1") ||
	    ci_eq(s, n, "iso_8859-1") || ci_eq(s, n, "us-ascii") ||
	    ci_eq(s, n, "l1"))
		return CS_LATIN1;
	return CS_OTHER;
}

/* Bytes in charset cs appended as clean UTF-8. */
static void
put_charset(struct buf *b, enum cs cs, const char *s, size_t n)
{
	if (cs == CS_LATIN1) {
		struct buf t;

		buf_init(&t);
		for (size_t i = 0; i < n; i++)
			put_latin1(&t, (unsigned char)s[i]);
		put_clean(b, t.p, t.len);
		buf_free(&t);
	} else {
		put_clean(b, s, n);
	}
}

/* --------------------------------------------------------- RFC 2047 words */

/* One encoded word at s[0..n): its decoded text into b.  Returns the
 * word's length, 0 when s does not start with a word we decode. */
static size_t
one_word(struct buf *b, const char *s, size_t n)
{
	size_t i, cs_end, enc, txt, end;
	enum cs cs;
	struct buf raw;

	if (n < 8 || s[0] != '=' || s[1] != '?')
		return 0;
	for (i = 2; i < n && s[i] != '?'; i++)
		if (s[i] == ' ' || s[i] == '\t' || i > 64)
			return 0;
	if (i + 3 >= n || s[i + 2] != '?')
		return 0;
	cs_end = i;
	enc = i + 1;
	txt = i + 3;
	for (end = txt; end + 1 < n; end++) {
		if (s[end] == ' ' || s[end] == '\t' || s[end] == '\r' ||
		    s[end] == '\n')
			return 0;
		if (s[end] == '?' && s[end + 1] == '=')
			break;
	}
	if (end + 1 >= n)
		return 0;
	cs = charset_of(s + 2, cs_end - 2);
	if (cs == CS_OTHER)
		return 0;          /* left as it is: raw but readable */
	buf_init(&raw);
	if (s[enc] == 'B' || s[enc] == 'b')
		b64_decode(&raw, s + txt, end - txt);
	else if (s[enc] == 'Q' || s[enc] == 'q')
		qp_decode(&raw, s + txt, end - txt, true);
	else {
		buf_free(&raw);
		return 0;
	}
	put_charset(b, cs, raw.p != NULL ? raw.p : "", raw.len);
	buf_free(&raw);
	return end + 2;
}

char *
mime_decode_words(const char *s, size_t n)
{
	struct buf b;
	size_t i = 0, pending_ws = 0, ws_at = 0;
	bool last_word = false;

	buf_init(&b);
	while (i < n) {
		struct buf w;
		size_t k;

		buf_init(&w);
		k = one_word(&w, s + i, n - i);
		if (k > 0) {
			/* white space between two encoded words is dropped
			 * (RFC 2047 section 6.2), kept after plain text */
			if (pending_ws > 0 && !last_word && b.len > 0)
				buf_putc(&b, ' ');
			buf_add(&b, w.p != NULL ? w.p : "", w.len);
			buf_free(&w);
			i += k;
			pending_ws = 0;
			last_word = true;
			continue;
		}
		buf_free(&w);
		if (s[i] == ' ' || s[i] == '\t' || s[i] == '\r' ||
		    s[i] == '\n') {
			if (pending_ws == 0)
				ws_at = i;
			pending_ws++;
			i++;
			continue;
		}
		if (pending_ws > 0) {
			(void)ws_at;
			buf_putc(&b, ' ');
			pending_ws = 0;
		}
		last_word = false;
		/* a run of plain text up to the next space */
		{
			size_t j = i;

			while (j < n && s[j] != ' ' && s[j] != '\t' &&
			       s[j] != '\r' && s[j] != '\n' &&
			       !(j > i && s[j] == '=' && j + 1 < n &&
				 s[j + 1] == '?'))
				j++;
			put_clean(&b, s + i, j - i);
			i = j;
		}
	}
	if (pending_ws > 0 && !last_word)
		buf_putc(&b, ' ');
	{
		char *r = buf_steal(&b);
		struct span t;
		char *out;

		if (r == NULL)
			return xstrdup("");
		t.p = r;
		t.n = strlen(r);
		trim_span(&t);
		out = xstrndup(t.p, t.n);
		free(r);
		return out;
	}
}

/* ---------------------------------------------------------------- headers */

struct field {
	struct span name;
	char *value;              /* unfolded, NUL-terminated, xmalloc'ed */
};

struct hdr {
	struct field *f;
	size_t n;
};

static void
hdr_free(struct hdr *h)
{
	for (size_t i = 0; i < h->n; i++)
		free(h->f[i].value);
	free(h->f);
	h->f = NULL;
	h->n = 0;
}

/* Splits s into its header block (fields, unfolded) and *body.  Lines end
 * in LF or CRLF.  A line without ':' before the blank line is skipped
 * (a "From " mbox line, junk). */
static void
hdr_parse(const char *s, size_t n, struct hdr *h, struct span *body)
{
	size_t i = 0, cap = 0;
	size_t lim = n < HDR_MAX ? n : HDR_MAX;

	h->f = NULL;
	h->n = 0;
	body->p = s + n;
	body->n = 0;
	while (i < lim) {
		size_t ls = i, le, colon;
		struct buf v;

		while (i < n && s[i] != '\n')
			i++;
		le = i;
		if (le > ls && s[le - 1] == '\r')
			le--;
		if (i < n)
			i++;
		if (le == ls) {             /* the blank line */
			body->p = s + i;
			body->n = n - i;
			return;
		}
		if (s[ls] == ' ' || s[ls] == '\t')
			continue;           /* a stray continuation */
		for (colon = ls; colon < le && s[colon] != ':'; colon++)
			if (s[colon] == ' ' || s[colon] == '\t')
				break;
		if (colon >= le || s[colon] != ':' || colon == ls)
			continue;
		buf_init(&v);
		buf_add(&v, s + colon + 1, le - colon - 1 < FIELD_MAX ?
			le - colon - 1 : FIELD_MAX);
		/* continuation lines */
		while (i < n && (s[i] == ' ' || s[i] == '\t')) {
			size_t cs = i, ce;

			while (i < n && s[i] != '\n')
				i++;
			ce = i;
			if (ce > cs && s[ce - 1] == '\r')
				ce--;
			if (i < n)
				i++;
			if (v.len + (ce - cs) <= FIELD_MAX)
				buf_add(&v, s + cs, ce - cs);
		}
		if (h->n >= FIELDS_MAX) {
			buf_free(&v);
			continue;
		}
		if (h->n == cap) {
			cap = cap ? cap * 2 : 16;
			h->f = xrealloc(h->f, cap * sizeof(*h->f));
		}
		h->f[h->n].name.p = s + ls;
		h->f[h->n].name.n = colon - ls;
		{
			struct span t;
			char *raw = buf_steal(&v);

			if (raw == NULL)
				raw = xstrdup("");
			t.p = raw;
			t.n = strlen(raw);
			trim_span(&t);
			h->f[h->n].value = xstrndup(t.p, t.n);
			free(raw);
		}
		h->n++;
	}
	/* no blank line (or a header block over the bound): no body */
}

static const char *
hdr_get(const struct hdr *h, const char *name)
{
	for (size_t i = 0; i < h->n; i++)
		if (ci_eq(h->f[i].name.p, h->f[i].name.n, name))
			return h->f[i].value;
	return NULL;
}

/* ------------------------------------------------------------- parameters */

/* The "type/subtype" of a Content-Type value, lowercased, into out. */
static void
ctype_of(const char *v, char *out, size_t size)
{
	size_t k = 0;

	if (v != NULL)
		for (; *v == ' ' || *v == '\t'; v++)
			;
	if (v != NULL)
		for (; *v && *v != ';' && *v != ' ' && *v != '\t' &&
		       k + 1 < size; v++)
			out[k++] = (char)tolower((unsigned char)*v);
	out[k] = '\0';
}

/* Walks the ";name=value" parameters of v; for each calls fn with the name
 * and the value (quotes removed, backslash escapes resolved). */
typedef void (*param_fn)(void *ctx, const char *name, size_t nn,
			 const char *val, size_t vn);

static void
params_walk(const char *v, param_fn fn, void *ctx)
{
	const char *p;
	int quote = 0, comment = 0;

	if (v == NULL)
		return;
	/* skip the type, to the first ';' outside quotes */
	for (p = v; *p; p++) {
		if (*p == '"')
			quote = !quote;
		else if (*p == ';' && !quote)
			break;
	}
	while (*p == ';') {
		const char *ns, *ne;
		struct buf val;

		p++;
		while (*p == ' ' || *p == '\t')
			p++;
		ns = p;
		while (*p && *p != '=' && *p != ';')
			p++;
		ne = p;
		while (ne > ns && (ne[-1] == ' ' || ne[-1] == '\t'))
			ne--;
		if (*p != '=')
			continue;
		p++;
		while (*p == ' ' || *p == '\t')
			p++;
		buf_init(&val);
		if (*p == '"') {
			p++;
			while (*p && *p != '"') {
				if (*p == '\\' && p[1])
					p++;
				buf_putc(&val, *p++);
			}
			if (*p == '"')
				p++;
			while (*p && *p != ';')
				p++;
		} else {
			comment = 0;
			while (*p && *p != ';') {
				if (*p == '(')
					comment++;
				else if (*p == ')' && comment > 0)
					comment--;
				else if (!comment && *p != ' ' && *p != '\t')
					buf_putc(&val, *p);
				p++;
			}
		}
		fn(ctx, ns, (size_t)(ne - ns), val.p != NULL ? val.p : "",
		   val.len);
		buf_free(&val);
	}
}

/* One parameter, RFC 2231 continuations and charsets included:
 * name, name*, name*0, name*0*, name*1, ... */
#define SEGS_MAX 32
struct param_get {
	const char *want;
	char *plain;              /* name=value */
	char *seg[SEGS_MAX];      /* name*N[*]=value */
	bool seg_enc[SEGS_MAX];
	char *ext;                /* name*=value */
};

static void
param_get_cb(void *ctx, const char *name, size_t nn, const char *val,
	     size_t vn)
{
	struct param_get *g = ctx;
	size_t wl = strlen(g->want);

	if (nn < wl || strncasecmp(name, g->want, wl) != 0)
		return;
	if (nn == wl) {
		if (g->plain == NULL)
			g->plain = xstrndup(val, vn);
		return;
	}
	if (name[wl] != '*')
		return;
	if (nn == wl + 1) {
		if (g->ext == NULL)
			g->ext = xstrndup(val, vn);
		return;
	}
	{
		size_t i = wl + 1, idx = 0;
		bool enc = false;

		if (!isdigit((unsigned char)name[i]))
			return;
		while (i < nn && isdigit((unsigned char)name[i]) && idx < 1000)
			idx = idx * 10 + (size_t)(name[i++] - '0');
		if (i < nn && name[i] == '*') {
			enc = true;
			i++;
		}
		if (i != nn || idx >= SEGS_MAX || g->seg[idx] != NULL)
			return;
		g->seg[idx] = xstrndup(val, vn);
		g->seg_enc[idx] = enc;
	}
}

/* %XX decoding of an RFC 2231 extended value */
static void
pct_decode(struct buf *out, const char *s)
{
	for (; *s; s++) {
		if (*s == '%' && hexval(s[1]) >= 0 && hexval(s[2]) >= 0) {
			buf_putc(out, (char)(hexval(s[1]) * 16 + hexval(s[2])));
			s += 2;
		} else {
			buf_putc(out, *s);
		}
	}
}

/* The parameter's value as clean UTF-8 (xmalloc'ed), or NULL. */
static char *
param_get(const char *v, const char *want)
{
	struct param_get g;
	char *res = NULL;

	memset(&g, 0, sizeof(g));
	g.want = want;
	params_walk(v, param_get_cb, &g);
	if (g.ext != NULL || g.seg[0] != NULL) {
		/* charset'language'%-encoded in the first (or only) part */
		struct buf raw, out;
		enum cs cs = CS_UTF8;
		const char *first = g.ext != NULL ? g.ext : g.seg[0];
		bool first_enc = g.ext != NULL || g.seg_enc[0];
		const char *q1, *q2;

		buf_init(&raw);
		buf_init(&out);
		if (first_enc && (q1 = strchr(first, '\'')) != NULL &&
		    (q2 = strchr(q1 + 1, '\'')) != NULL) {
			cs = charset_of(first, (size_t)(q1 - first));
			pct_decode(&raw, q2 + 1);
		} else if (first_enc) {
			pct_decode(&raw, first);
		} else {
			buf_puts(&raw, first);
		}
		if (g.ext == NULL)
			for (size_t i = 1; i < SEGS_MAX && g.seg[i]; i++) {
				if (g.seg_enc[i])
					pct_decode(&raw, g.seg[i]);
				else
					buf_puts(&raw, g.seg[i]);
			}
		if (cs == CS_OTHER)
			put_clean(&out, raw.p ? raw.p : "", raw.len);
		else
			put_charset(&out, cs, raw.p ? raw.p : "", raw.len);
		res = buf_steal(&out);
		if (res == NULL)
			res = xstrdup("");
		buf_free(&raw);
	} else if (g.plain != NULL) {
		/* not allowed, but common: RFC 2047 words in a parameter */
		res = mime_decode_words(g.plain, strlen(g.plain));
	}
	free(g.plain);
	free(g.ext);
	for (size_t i = 0; i < SEGS_MAX; i++)
		free(g.seg[i]);
	return res;
}

/* --------------------------------------------------- addresses and ids */

/* "Name <a@b>", "a@b (Name)", "<a@b>": the addr-spec, lowercased, or
 * NULL when there is none that looks like one. */
char *
mime_addr(const char *v)
{
	const char *p, *s = NULL, *e = NULL;
	int quote = 0, comment = 0;
	char *out;

	if (v == NULL)
		return NULL;
	for (p = v; *p; p++) {
		if (quote) {
			if (*p == '\\' && p[1])
				p++;
			else if (*p == '"')
				quote = 0;
		} else if (comment) {
			if (*p == '(')
				comment++;
			else if (*p == ')')
				comment--;
		} else if (*p == '"') {
			quote = 1;
		} else if (*p == '(') {
			comment = 1;
		} else if (*p == '<') {
			s = p + 1;
			e = strchr(s, '>');
			break;
		}
	}
	if (s == NULL) {
		/* a bare addr-spec: the first word holding '@' */
		for (p = v; *p; ) {
			const char *w;

			while (*p == ' ' || *p == '\t' || *p == ',')
				p++;
			w = p;
			while (*p && *p != ' ' && *p != '\t' && *p != ',' &&
			       *p != '(')
				p++;
			if (memchr(w, '@', (size_t)(p - w)) != NULL) {
				s = w;
				e = p;
				break;
			}
			if (*p == '(')
				while (*p && *p != ')')
					p++;
			if (*p)
				p++;
		}
	}
	if (s == NULL || e == NULL || e <= s || e - s > 254)
		return NULL;
	if (memchr(s, '@', (size_t)(e - s)) == NULL)
		return NULL;
	out = xstrndup(s, (size_t)(e - s));
	for (char *q = out; *q; q++) {
		unsigned char c = (unsigned char)*q;

		if (c <= ' ' || c >= 0x7f || c == '<' || c == '>' ||
		    c == '"' || c == ',') {
			free(out);
			return NULL;
		}
		*q = (char)tolower(c);
	}
	return out;
}

/* Every "<id>" of v, at most max, appended to (*list, *n) unless there. */
static void
ids_add(const char *v, char ***list, size_t *n, size_t max)
{
	const char *p = v;

	while (p != NULL && (p = strchr(p, '<')) != NULL) {
		const char *e = p + 1;
		bool ok = true;
		char *id;

		while (*e && *e != '>') {
			if ((unsigned char)*e <= ' ' || (unsigned char)*e >= 0x7f ||
			    *e == '<')
				ok = false;
			e++;
		}
		if (*e != '>')
			return;
		if (ok && e - p > 2 && e - p < 250 && *n < max) {
			bool dup = false;

			id = xstrndup(p, (size_t)(e - p + 1));
			for (size_t i = 0; i < *n; i++)
				if (strcmp((*list)[i], id) == 0)
					dup = true;
			if (dup) {
				free(id);
			} else {
				*list = xrealloc(*list,
						 (*n + 1) * sizeof(**list));
				(*list)[(*n)++] = id;
			}
		}
		p = e + 1;
	}
}

static char *
first_id(const char *v)
{
	char **l = NULL;
	size_t n = 0;
	char *r;

	ids_add(v, &l, &n, 1);
	r = n > 0 ? l[0] : NULL;
	free(l);
	return r;
}

/* ------------------------------------------------------------------ dates */

static int
month_of(const char *s)
{
	static const char *const m[] = { "jan", "feb", "mar", "apr", "may",
		"jun", "jul", "aug", "sep", "oct", "nov", "dec" };

	for (int i = 0; i < 12; i++)
		if (strncasecmp(s, m[i], 3) == 0)
			return i + 1;
	return 0;
}

/* RFC 5322 date-time (obsolete zones too): 0 and *out, or -1. */
int
mime_date(const char *v, tstamp *out)
{
	const char *p = v;
	int d, mon, y, hh, mm, ss = 0, off = 0, k;
	char mname[4];

	if (v == NULL)
		return -1;
	while (*p == ' ' || *p == '\t')
		p++;
	if (isalpha((unsigned char)*p)) {      /* day-of-week */
		while (isalpha((unsigned char)*p))
			p++;
		while (*p == ',' || *p == ' ' || *p == '\t')
			p++;
	}
	k = 0;
	if (sscanf(p, "%2d %3[A-Za-z] %4d %2d:%2d%n", &d, mname, &y, &hh, &mm,
		   &k) != 5 || k == 0)
		return -1;
	p += k;
	if (*p == ':') {
		if (!isdigit((unsigned char)p[1]))
			return -1;
		ss = (int)strtol(p + 1, (char **)&p, 10);
	}
	mon = month_of(mname);
	if (y < 100)
		y += y < 50 ? 2000 : 1900;
	if (mon == 0 || d < 1 || d > 31 || hh > 23 || mm > 59 || ss > 60 ||
	    y < 1970 || y > 9999)
		return -1;
	while (*p == ' ' || *p == '\t')
		p++;
	if ((*p == '+' || *p == '-') && isdigit((unsigned char)p[1]) &&
	    isdigit((unsigned char)p[2]) && isdigit((unsigned char)p[3]) &&
	    isdigit((unsigned char)p[4])) {
		int z = (p[1] - '0') * 10 + (p[2] - '0');
		int zm = (p[3] - '0') * 10 + (p[4] - '0');

		off = (z * 60 + zm) * 60;
		if (*p == '-')
			off = -off;
	} else if (!strncasecmp(p, "EST", 3)) {
		off = -5 * 3600;
	} else if (!strncasecmp(p, "EDT", 3)) {
		off = -4 * 3600;
	} else if (!strncasecmp(p, "CST", 3)) {
		off = -6 * 3600;
	} else if (!strncasecmp(p, "CDT", 3)) {
		off = -5 * 3600;
	} else if (!strncasecmp(p, "MST", 3)) {
		off = -7 * 3600;
	} else if (!strncasecmp(p, "MDT", 3)) {
		off = -6 * 3600;
	} else if (!strncasecmp(p, "PST", 3)) {
		off = -8 * 3600;
	} else if (!strncasecmp(p, "PDT", 3)) {
		off = -7 * 3600;
	}   /* GMT, UT, Z, military, nothing: UTC */
	{
		struct ymd ymd = { y, mon, d };

		if (!ymd_valid(ymd))
			return -1;
		*out = days_from_civil(y, mon, d) * 86400 + hh * 3600 +
		       mm * 60 + (ss > 59 ? 59 : ss) - off;
	}
	return 0;
}

/* ---------------------------------------------------------------- bodies */

/* A part's body decoded per its Content-Transfer-Encoding. */
static void
body_decode(const struct hdr *h, struct span body, struct buf *out)
{
	const char *cte = hdr_get(h, "content-transfer-encoding");
	struct span t = { cte, cte ? strlen(cte) : 0 };

	trim_span(&t);
	if (t.p != NULL && ci_eq(t.p, t.n, "base64"))
		b64_decode(out, body.p, body.n);
	else if (t.p != NULL && ci_eq(t.p, t.n, "quoted-printable"))
		qp_decode(out, body.p, body.n, false);
	else
		buf_add(out, body.p, body.n);
}

/* Splits body into the parts of boundary b; calls fn for each. */
struct walk {
	struct mime_msg *m;
	int parts;
};

static void part(struct walk *w, const char *s, size_t n, int depth,
		 bool in_report);

static bool
is_delim(const char *line, size_t n, const char *b, size_t bl, bool *close)
{
	if (n < bl + 2 || line[0] != '-' || line[1] != '-' ||
	    memcmp(line + 2, b, bl) != 0)
		return false;
	*close = n >= bl + 4 && line[bl + 2] == '-' && line[bl + 3] == '-';
	/* only white space may follow (RFC 2046 transport padding) */
	for (size_t i = bl + 2 + (*close ? 2 : 0); i < n; i++)
		if (line[i] != ' ' && line[i] != '\t' && line[i] != '\r')
			return false;
	return true;
}

static void
multipart(struct walk *w, struct span body, const char *b, int depth,
	  bool in_report)
{
	size_t bl = strlen(b), i = 0;
	const char *start = NULL;

	if (bl == 0 || bl > 70 * 2)
		return;
	while (i < body.n) {
		size_t ls = i, le;
		bool close = false;

		while (i < body.n && body.p[i] != '\n')
			i++;
		le = i;
		if (i < body.n)
			i++;
		if (!is_delim(body.p + ls, le - ls, b, bl, &close))
			continue;
		if (start != NULL) {
			/* the CRLF before the delimiter belongs to it */
			size_t pe = ls;

			if (pe > (size_t)(start - body.p) &&
			    body.p[pe - 1] == '\n')
				pe--;
			if (pe > (size_t)(start - body.p) &&
			    body.p[pe - 1] == '\r')
				pe--;
			part(w, start, (size_t)(body.p + pe - start), depth + 1,
			     in_report);
		}
		if (close)
			return;
		start = body.p + i;
	}
	/* no closing delimiter (a truncated message): the last part too */
	if (start != NULL && start < body.p + body.n)
		part(w, start, (size_t)(body.p + body.n - start), depth + 1,
		     in_report);
}

static void
add_file(struct mime_msg *m, char *name)
{
	if (name == NULL)
		return;
	if (*name == '\0' || m->nfiles >= MIME_MAX_FILES) {
		free(name);
		return;
	}
	m->files = xrealloc(m->files, (m->nfiles + 1) * sizeof(*m->files));
	m->files[m->nfiles++] = name;
}

static char *
clean_dup(const char *s)
{
	struct buf b;
	char *r;

	buf_init(&b);
	put_clean(&b, s, strlen(s));
	r = buf_steal(&b);
	return r != NULL ? r : xstrdup("");
}

/* message/delivery-status: the per-message group, then one group per
 * recipient (RFC 3464 section 2.1), separated by blank lines. */
static void
delivery_status(struct mime_msg *m, const char *s, size_t n)
{
	size_t i = 0;
	bool first = true;

	while (i < n && m->nrcpt < MIME_MAX_RCPT) {
		struct hdr g;
		struct span rest;
		const char *fr, *act, *st, *diag;
		size_t used;

		/* blank lines between groups */
		while (i < n && (s[i] == '\r' || s[i] == '\n'))
			i++;
		if (i >= n)
			break;
		hdr_parse(s + i, n - i, &g, &rest);
		used = rest.n > 0 || rest.p != s + n ? (size_t)(rest.p - s) : n;
		if (used <= i)
			used = n;
		fr = hdr_get(&g, "final-recipient");
		act = hdr_get(&g, "action");
		st = hdr_get(&g, "status");
		diag = hdr_get(&g, "diagnostic-code");
		if (!first || fr != NULL) {
			if (fr != NULL || act != NULL || st != NULL) {
				struct mime_rcpt *r;
				const char *semi;

				m->rcpt = xrealloc(m->rcpt, (m->nrcpt + 1) *
						   sizeof(*m->rcpt));
				r = &m->rcpt[m->nrcpt++];
				memset(r, 0, sizeof(*r));
				if (fr == NULL)
					fr = hdr_get(&g, "original-recipient");
				/* "rfc822; a@b" */
				if (fr != NULL) {
					semi = strchr(fr, ';');
					r->recipient = mime_addr(semi ? semi + 1
								 : fr);
				}
				if (act != NULL) {
					r->action = clean_dup(act);
					for (char *q = r->action; *q; q++)
						*q = (char)tolower(
							(unsigned char)*q);
				}
				if (st != NULL) {
					struct span t = { st, strlen(st) };
					size_t k = 0;

					trim_span(&t);
					while (k < t.n && (isdigit(
						(unsigned char)t.p[k]) ||
						t.p[k] == '.'))
						k++;
					r->status = xstrndup(t.p, k);
				}
				if (diag != NULL) {
					semi = strchr(diag, ';');
					r->diagnostic = clean_dup(semi ?
						semi + 1 : diag);
					struct span t = { r->diagnostic,
						strlen(r->diagnostic) };
					trim_span(&t);
					memmove(r->diagnostic, t.p, t.n);
					r->diagnostic[t.n] = '\0';
				}
			}
		}
		first = false;
		hdr_free(&g);
		i = used;
	}
}

static void
part(struct walk *w, const char *s, size_t n, int depth, bool in_report)
{
	struct mime_msg *m = w->m;
	struct hdr h;
	struct span body;
	char ct[96];
	const char *ctv, *cd;

	if (depth > DEPTH_MAX || ++w->parts > PARTS_MAX)
		return;
	hdr_parse(s, n, &h, &body);
	ctv = hdr_get(&h, "content-type");
	ctype_of(ctv, ct, sizeof(ct));
	cd = hdr_get(&h, "content-disposition");
	{
		char *fn = cd != NULL ? param_get(cd, "filename") : NULL;

		if (fn == NULL && ctv != NULL && strncmp(ct, "multipart/", 10))
			fn = param_get(ctv, "name");
		add_file(m, fn);
	}
	if (!strncmp(ct, "multipart/", 10)) {
		char *b = param_get(ctv, "boundary");
		bool rep = false;

		if (!strcmp(ct, "multipart/report")) {
			char *rt = param_get(ctv, "report-type");

			rep = rt != NULL && !strcasecmp(rt, "delivery-status");
			free(rt);
			if (rep && depth <= 1)
				m->dsn = true;
		}
		if (b != NULL)
			multipart(w, body, b, depth, rep);
		free(b);
	} else if (in_report && (!strcmp(ct, "message/delivery-status") ||
				 !strcmp(ct, "message/global-delivery-status"))) {
		struct buf d;

		buf_init(&d);
		body_decode(&h, body, &d);
		delivery_status(m, d.p ? d.p : "", d.len);
		buf_free(&d);
	} else if (in_report && (!strcmp(ct, "message/rfc822") ||
				 !strcmp(ct, "text/rfc822-headers") ||
				 !strcmp(ct, "message/global") ||
				 !strcmp(ct, "message/global-headers"))) {
		struct buf d;
		struct hdr oh;
		struct span ob;
		const char *id;

		buf_init(&d);
		body_decode(&h, body, &d);
		hdr_parse(d.p ? d.p : "", d.len, &oh, &ob);
		id = hdr_get(&oh, "message-id");
		if (id != NULL && m->dsn_orig_id == NULL)
			m->dsn_orig_id = first_id(id);
		hdr_free(&oh);
		buf_free(&d);
	}
	hdr_free(&h);
}

/* ------------------------------------------------------- BODYSTRUCTURE */

/* The attachment names in an IMAP BODYSTRUCTURE (RFC 3501 section 7.4.2):
 * every parenthesized list of strings holding a "name" or "filename"
 * key (RFC 2231 forms included) is read as parameters.  A small reader
 * of the s-expression: atoms, quoted strings, {N} literals, lists. */
#define BS_DEPTH 32
#define BS_TOKENS 20000
#define BS_LIST 64

struct bs {
	const char *p, *end;
	int tokens;
	struct mime_msg *m;
};

static bool
bs_string(struct bs *b, struct buf *out, bool *is_str)
{
	*is_str = false;
	if (b->p >= b->end)
		return false;
	if (*b->p == '"') {
		b->p++;
		while (b->p < b->end && *b->p != '"') {
			if (*b->p == '\\' && b->p + 1 < b->end)
				b->p++;
			buf_putc(out, *b->p++);
		}
		if (b->p < b->end)
			b->p++;
		*is_str = true;
		return true;
	}
	if (*b->p == '{') {
		char *q;
		unsigned long long n = strtoull(b->p + 1, &q, 10);

		if (q >= b->end || *q != '}')
			return false;
		q++;
		if (q < b->end && *q == '\r')
			q++;
		if (q < b->end && *q == '\n')
			q++;
		if (n > (unsigned long long)(b->end - q))
			return false;
		buf_add(out, q, (size_t)n);
		b->p = q + n;
		*is_str = true;
		return true;
	}
	/* an atom (NIL, numbers) */
	while (b->p < b->end && *b->p != ' ' && *b->p != '(' && *b->p != ')' &&
	       *b->p != '\r' && *b->p != '\n')
		b->p++;
	return true;
}

static bool
param_key(const char *k)
{
	return !strncasecmp(k, "name", 4) || !strncasecmp(k, "filename", 8);
}

static void
bs_list(struct bs *b, int depth)
{
	char *items[BS_LIST];
	size_t n = 0;
	bool all_str = true;

	/* at '(' */
	b->p++;
	while (b->p < b->end && *b->p != ')' && ++b->tokens < BS_TOKENS) {
		if (*b->p == ' ' || *b->p == '\r' || *b->p == '\n') {
			b->p++;
			continue;
		}
		if (*b->p == '(') {
			all_str = false;
			if (depth >= BS_DEPTH) {
				b->p = b->end;
				break;
			}
			bs_list(b, depth + 1);
			if (b->p < b->end && *b->p == ')')
				b->p++;
			continue;
		}
		{
			struct buf t;
			bool str;

			buf_init(&t);
			if (!bs_string(b, &t, &str)) {
				buf_free(&t);
				b->p = b->end;
				break;
			}
			if (!str)
				all_str = false;
			if (str && n < BS_LIST) {
				items[n++] = buf_steal(&t);
				if (items[n - 1] == NULL)
					items[n - 1] = xstrdup("");
			}
			buf_free(&t);
		}
	}
	if (all_str && n >= 2 && n % 2 == 0) {
		struct buf v;
		bool any = false;

		buf_init(&v);
		buf_puts(&v, "x");
		for (size_t i = 0; i + 1 < n; i += 2) {
			if (!param_key(items[i]))
				continue;
			any = true;
			buf_printf(&v, "; %s=\"", items[i]);
			for (const char *q = items[i + 1]; *q; q++) {
				if (*q == '"' || *q == '\\')
					buf_putc(&v, '\\');
				buf_putc(&v, *q);
			}
			buf_putc(&v, '"');
		}
		if (any) {
			char *f = param_get(buf_str(&v), "filename");

			if (f == NULL)
				f = param_get(buf_str(&v), "name");
			if (f != NULL) {
				bool dup = false;

				for (size_t i = 0; i < b->m->nfiles; i++)
					if (strcmp(b->m->files[i], f) == 0)
						dup = true;
				if (dup)
					free(f);
				else
					add_file(b->m, f);
			}
		}
		buf_free(&v);
	}
	for (size_t i = 0; i < n; i++)
		free(items[i]);
}

void
mime_bodystructure_files(const char *s, size_t n, struct mime_msg *m)
{
	struct bs b = { s, s + n, 0, m };

	while (b.p < b.end && *b.p != '(')
		b.p++;
	if (b.p < b.end)
		bs_list(&b, 0);
}

/* ----------------------------------------------------------------- public */

static bool
auto_value(const char *v)
{
	struct span t = { v, strlen(v) };
	size_t k = 0;

	trim_span(&t);
	while (k < t.n && t.p[k] != ';' && t.p[k] != ' ' && t.p[k] != '(')
		k++;
	return !ci_eq(t.p, k, "no");
}

int
mime_parse(const char *s, size_t n, struct mime_msg *m)
{
	struct hdr h;
	struct span body;
	const char *v;
	struct walk w = { m, 0 };

	memset(m, 0, sizeof(*m));
	hdr_parse(s, n, &h, &body);
	if (h.n == 0) {
		hdr_free(&h);
		return -1;
	}
	if ((v = hdr_get(&h, "message-id")) != NULL)
		m->message_id = first_id(v);
	if ((v = hdr_get(&h, "in-reply-to")) != NULL)
		ids_add(v, &m->refs, &m->nrefs, MIME_MAX_REFS);
	if ((v = hdr_get(&h, "references")) != NULL)
		ids_add(v, &m->refs, &m->nrefs, MIME_MAX_REFS);
	if ((v = hdr_get(&h, "from")) != NULL)
		m->from = mime_addr(v);
	if ((v = hdr_get(&h, "subject")) != NULL)
		m->subject = mime_decode_words(v, strlen(v));
	if ((v = hdr_get(&h, "date")) != NULL && mime_date(v, &m->date) == 0)
		m->has_date = true;
	if ((v = hdr_get(&h, "auto-submitted")) != NULL && auto_value(v))
		m->auto_why = "Auto-Submitted";
	else if (hdr_get(&h, "x-autoreply") != NULL ||
		 hdr_get(&h, "x-autorespond") != NULL)
		m->auto_why = "X-Autoreply";
	else if ((v = hdr_get(&h, "precedence")) != NULL &&
		 (!strcasecmp(v, "bulk") || !strcasecmp(v, "junk") ||
		  !strcasecmp(v, "list") || !strcasecmp(v, "auto_reply")))
		m->auto_why = "Precedence";
	else if (hdr_get(&h, "list-id") != NULL)
		m->auto_why = "List-Id";
	m->auto_reply = m->auto_why != NULL;
	hdr_free(&h);
	/* the top part again, this time for its structure */
	part(&w, s, n, 0, false);
	return 0;
}

void
mime_clear(struct mime_msg *m)
{
	if (m == NULL)
		return;
	free(m->message_id);
	for (size_t i = 0; i < m->nrefs; i++)
		free(m->refs[i]);
	free(m->refs);
	free(m->from);
	free(m->subject);
	for (size_t i = 0; i < m->nfiles; i++)
		free(m->files[i]);
	free(m->files);
	for (size_t i = 0; i < m->nrcpt; i++) {
		free(m->rcpt[i].recipient);
		free(m->rcpt[i].action);
		free(m->rcpt[i].status);
		free(m->rcpt[i].diagnostic);
	}
	free(m->rcpt);
	free(m->dsn_orig_id);
	memset(m, 0, sizeof(*m));
}
