/*
 * util.c - allocation, buffers, small parsers, calendar arithmetic and
 * diagnostics shared by every module.
 */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cutoffd.h"

/* ------------------------------------------------------------ allocation */

static void NORETURN
oom(size_t n)
{
	/* Nothing sensible can continue without memory; say so and stop. */
	fprintf(stderr, "cutoffd: out of memory (%zu bytes)\n", n);
	abort();
}

void *
xmalloc(size_t n)
{
	void *p = malloc(n ? n : 1);

	if (p == NULL)
		oom(n);
	return p;
}

void *
xcalloc(size_t n, size_t size)
{
	void *p = calloc(n ? n : 1, size ? size : 1);

	if (p == NULL)
		oom(n * size);
	return p;
}

void *
xrealloc(void *p, size_t n)
{
	void *q = realloc(p, n ? n : 1);

	if (q == NULL)
		oom(n);
	return q;
}

char *
xstrdup(const char *s)
{
	if (s == NULL)
		return NULL;
	return xstrndup(s, strlen(s));
}

char *
xstrndup(const char *s, size_t n)
{
	size_t len = strnlen(s, n);
	char *p = xmalloc(len + 1);

	memcpy(p, s, len);
	p[len] = '\0';
	return p;
}

char *
xasprintf(const char *fmt, ...)
{
	va_list ap;
	char *p;
	int n;

	va_start(ap, fmt);
	n = vasprintf(&p, fmt, ap);
	va_end(ap);
	if (n < 0)
		oom(0);
	return p;
}

/* ---------------------------------------------------------------- buffers */

void
buf_init(struct buf *b)
{
	b->p = NULL;
	b->len = b->cap = 0;
}

void
buf_free(struct buf *b)
{
	free(b->p);
	buf_init(b);
}

void
buf_reset(struct buf *b)
{
	b->len = 0;
	if (b->p != NULL)
		b->p[0] = '\0';
}

static void
buf_grow(struct buf *b, size_t extra)
{
	size_t need = b->len + extra + 1;

	if (need <= b->cap)
		return;
	if (b->cap == 0)
		b->cap = 64;
	while (b->cap < need)
		b->cap *= 2;
	b->p = xrealloc(b->p, b->cap);
}

void
buf_add(struct buf *b, const void *data, size_t n)
{
	buf_grow(b, n);
	if (n > 0)
		memcpy(b->p + b->len, data, n);
	b->len += n;
	b->p[b->len] = '\0';
}

void
buf_puts(struct buf *b, const char *s)
{
	buf_add(b, s, strlen(s));
}

void
buf_putc(struct buf *b, char c)
{
	buf_add(b, &c, 1);
}

void
buf_printf(struct buf *b, const char *fmt, ...)
{
	va_list ap;
	size_t room;
	int n;

	/* Format straight into the spare room; grow and redo if short. */
	buf_grow(b, 64);
	room = b->cap - b->len;
	va_start(ap, fmt);
	n = vsnprintf(b->p + b->len, room, fmt, ap);
	va_end(ap);
	if (n < 0) {
		b->p[b->len] = '\0';
		return;
	}
	if ((size_t)n >= room) {
		buf_grow(b, (size_t)n);
		va_start(ap, fmt);
		vsnprintf(b->p + b->len, (size_t)n + 1, fmt, ap);
		va_end(ap);
	}
	b->len += (size_t)n;
}

char *
buf_steal(struct buf *b)
{
	char *p = b->p;

	if (p == NULL)
		p = xstrdup("");
	buf_init(b);
	return p;
}

const char *
buf_str(struct buf *b)
{
	return b->p != NULL ? b->p : "";
}

/* Length of the valid UTF-8 sequence at s (at most n bytes), 0 if invalid. */
static size_t
utf8_seq(const unsigned char *s, size_t n)
{
	size_t len, i;
	uint32_t cp;

	if (s[0] < 0x80)
		return 1;
	if (s[0] >= 0xc2 && s[0] <= 0xdf) {
		len = 2;
		cp = s[0] & 0x1f;
	} else if (s[0] >= 0xe0 && s[0] <= 0xef) {
		len = 3;
		cp = s[0] & 0x0f;
	} else if (s[0] >= 0xf0 && s[0] <= 0xf4) {
		len = 4;
		cp = s[0] & 0x07;
	} else {
		return 0;
	}
	if (n < len)
		return 0;
	for (i = 1; i < len; i++) {
		if ((s[i] & 0xc0) != 0x80)
			return 0;
		cp = (cp << 6) | (s[i] & 0x3f);
	}
	/* overlong forms, surrogates and values past U+10FFFF */
	if ((len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000) ||
	    (cp >= 0xd800 && cp <= 0xdfff) || cp > 0x10ffff)
		return 0;
	return len;
}

bool
utf8_valid(const char *s, size_t n)
{
	const unsigned char *p = (const unsigned char *)s;
	size_t i = 0, k;

	while (i < n) {
		k = utf8_seq(p + i, n - i);
		if (k == 0)
			return false;
		i += k;
	}
	return true;
}

void
buf_put_escaped(struct buf *b, const char *s, size_t max)
{
	const unsigned char *p = (const unsigned char *)s;
	size_t n, i = 0, k;

	if (s == NULL) {
		buf_puts(b, "(null)");
		return;
	}
	n = strlen(s);
	while (i < n && i < max) {
		if (p[i] == '\n') {
			buf_puts(b, "\\n");
			i++;
		} else if (p[i] == '\r') {
			buf_puts(b, "\\r");
			i++;
		} else if (p[i] == '\t') {
			buf_puts(b, "\\t");
			i++;
		} else if (p[i] == '\\') {
			buf_puts(b, "\\\\");
			i++;
		} else if (p[i] < 0x20 || p[i] == 0x7f) {
			buf_printf(b, "\\x%02x", p[i]);
			i++;
		} else if (p[i] < 0x80) {
			buf_putc(b, (char)p[i]);
			i++;
		} else {
			k = utf8_seq(p + i, n - i);
			/* C1 controls (U+0080..U+009F) are escaped too */
			if (k == 0 || (k == 2 && p[i] == 0xc2 && p[i + 1] < 0xa0)) {
				buf_printf(b, "\\x%02x", p[i]);
				i++;
			} else {
				buf_add(b, p + i, k);
				i += k;
			}
		}
	}
	if (i < n)
		buf_puts(b, "...");
}

/* ------------------------------------------------------------------ files */

int
read_file(const char *path, size_t max, char **out, size_t *len)
{
	struct buf b;
	char chunk[8192];
	ssize_t r;
	int fd, saved;

	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -1;
	buf_init(&b);
	buf_add(&b, "", 0);
	for (;;) {
		r = read(fd, chunk, sizeof chunk);
		if (r < 0) {
			if (errno == EINTR)
				continue;
			goto fail;
		}
		if (r == 0)
			break;
		if (b.len + (size_t)r > max) {
			errno = EFBIG;
			goto fail;
		}
		buf_add(&b, chunk, (size_t)r);
	}
	close(fd);
	if (len != NULL)
		*len = b.len;
	*out = buf_steal(&b);
	return 0;
fail:
	saved = errno;
	close(fd);
	buf_free(&b);
	errno = saved;
	return -1;
}

/* ---------------------------------------------------------------- parsers */

int
parse_duration(const char *s, int64_t *secs)
{
	int64_t v = 0, mult;
	const char *p = s;

	if (!isdigit((unsigned char)*p))
		return -1;
	while (isdigit((unsigned char)*p)) {
		v = v * 10 + (*p - '0');
		if (v > 100000000)
			return -1;
		p++;
	}
	switch (*p) {
	case 's': mult = 1; break;
	case 'm': mult = 60; break;
	case 'h': mult = 3600; break;
	case 'd': mult = 86400; break;
	default: return -1;
	}
	if (p[1] != '\0')
		return -1;
	*secs = v * mult;
	return 0;
}

int
parse_hhmm(const char *s, bool allow_24, int *minutes)
{
	int h, m;

	if (!isdigit((unsigned char)s[0]) || !isdigit((unsigned char)s[1]) ||
	    s[2] != ':' || !isdigit((unsigned char)s[3]) ||
	    !isdigit((unsigned char)s[4]) || s[5] != '\0')
		return -1;
	h = (s[0] - '0') * 10 + (s[1] - '0');
	m = (s[3] - '0') * 10 + (s[4] - '0');
	if (m > 59 || h > 24 || (h == 24 && (m != 0 || !allow_24)))
		return -1;
	*minutes = h * 60 + m;
	return 0;
}

char *
strtrim(char *s)
{
	size_t n = strlen(s);
	char *p = s;

	while (n > 0 && isspace((unsigned char)s[n - 1]))
		s[--n] = '\0';
	while (isspace((unsigned char)*p))
		p++;
	if (p != s)
		memmove(s, p, strlen(p) + 1);
	return s;
}

bool
str_has_crlf(const char *s)
{
	return strpbrk(s, "\r\n") != NULL;
}

bool
valid_id(const char *s)
{
	size_t i;

	if (!((s[0] >= 'a' && s[0] <= 'z') || (s[0] >= '0' && s[0] <= '9')))
		return false;
	for (i = 1; s[i] != '\0'; i++) {
		if (i >= 64)
			return false;
		if (!((s[i] >= 'a' && s[i] <= 'z') ||
		      (s[i] >= '0' && s[i] <= '9') || s[i] == '_' ||
		      s[i] == '-'))
			return false;
	}
	return true;
}

bool
ct_streq(const char *a, const char *b)
{
	size_t la = strlen(a), lb = strlen(b), i;
	unsigned char diff = (unsigned char)(la != lb);

	/* Walk the secret's length whatever the guess, so timing says nothing
	 * about how much of it matched. */
	for (i = 0; i < lb; i++)
		diff |= (unsigned char)(b[i] ^ (i < la ? a[i] : 0));
	return diff == 0;
}

int
random_hex(char *out, size_t nbytes)
{
	static const char hex[] = "0123456789abcdef";
	unsigned char raw[64];
	size_t i, got = 0;
	ssize_t r;

	if (nbytes > sizeof raw)
		return -1;
	while (got < nbytes) {
		r = getrandom(raw + got, nbytes - got, 0);
		if (r < 0) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		got += (size_t)r;
	}
	for (i = 0; i < nbytes; i++) {
		out[2 * i] = hex[raw[i] >> 4];
		out[2 * i + 1] = hex[raw[i] & 15];
	}
	out[2 * nbytes] = '\0';
	return 0;
}

size_t
split_list(const char *s, const char *seps, char ***out)
{
	char **v = NULL;
	size_t n = 0, len;
	const char *p = s;

	while (*p != '\0') {
		p += strspn(p, seps);
		if (*p == '\0')
			break;
		len = strcspn(p, seps);
		v = xrealloc(v, (n + 1) * sizeof *v);
		v[n++] = xstrndup(p, len);
		p += len;
	}
	*out = v;
	return n;
}

void
free_list(char **v, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++)
		free(v[i]);
	free(v);
}

int
cmp_int64(const void *a, const void *b)
{
	int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;

	return (x > y) - (x < y);
}

/* ------------------------------------------------------ calendar arithmetic */

/* Howard Hinnant's days-from-civil algorithm (public domain description),
 * exact for the whole proleptic Gregorian calendar. */
int64_t
days_from_civil(int y, int m, int d)
{
	int64_t yy = (int64_t)y - (m <= 2);
	int64_t era = (yy >= 0 ? yy : yy - 399) / 400;
	int64_t yoe = yy - era * 400;
	int64_t doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
	int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;

	return era * 146097 + doe - 719468;
}

struct ymd
civil_from_days(int64_t z)
{
	struct ymd r;
	int64_t era, doe, yoe, doy, mp;

	z += 719468;
	era = (z >= 0 ? z : z - 146096) / 146097;
	doe = z - era * 146097;
	yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
	doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
	mp = (5 * doy + 2) / 153;
	r.d = (int)(doy - (153 * mp + 2) / 5 + 1);
	r.m = (int)(mp < 10 ? mp + 3 : mp - 9);
	r.y = (int)(yoe + era * 400 + (r.m <= 2));
	return r;
}

int
ymd_wday(struct ymd d)
{
	int64_t z = days_from_civil(d.y, d.m, d.d);

	/* 1970-01-01 was a Thursday (4) */
	return (int)(((z + 4) % 7 + 7) % 7);
}

bool
ymd_valid(struct ymd d)
{
	static const int mdays[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
	int max;

	if (d.y < 1 || d.y > 9999 || d.m < 1 || d.m > 12 || d.d < 1)
		return false;
	max = mdays[d.m - 1];
	if (d.m == 2 && ((d.y % 4 == 0 && d.y % 100 != 0) || d.y % 400 == 0))
		max = 29;
	return d.d <= max;
}

int
ymd_cmp(struct ymd a, struct ymd b)
{
	if (a.y != b.y)
		return a.y < b.y ? -1 : 1;
	if (a.m != b.m)
		return a.m < b.m ? -1 : 1;
	if (a.d != b.d)
		return a.d < b.d ? -1 : 1;
	return 0;
}

struct ymd
ymd_add_days(struct ymd d, int64_t n)
{
	return civil_from_days(days_from_civil(d.y, d.m, d.d) + n);
}

int
parse_ymd(const char *s, struct ymd *out)
{
	struct ymd d;
	int i;

	for (i = 0; i < 10; i++) {
		if (i == 4 || i == 7) {
			if (s[i] != '-')
				return -1;
		} else if (!isdigit((unsigned char)s[i])) {
			return -1;
		}
	}
	if (s[10] != '\0')
		return -1;
	d.y = atoi(s);
	d.m = (s[5] - '0') * 10 + (s[6] - '0');
	d.d = (s[8] - '0') * 10 + (s[9] - '0');
	if (!ymd_valid(d))
		return -1;
	*out = d;
	return 0;
}

void
ymd_format_vn(struct ymd d, char *out)
{
	unsigned dd = (unsigned)d.d % 100, mm = (unsigned)d.m % 100;
	unsigned yy = (unsigned)d.y % 10000;

	snprintf(out, 11, "%02u/%02u/%04u", dd, mm, yy);
}

/* ------------------------------------------------------------ diagnostics */

void
diag_init(struct diag *d)
{
	d->msg = NULL;
	d->n = d->cap = 0;
}

void
diag_free(struct diag *d)
{
	size_t i;

	if (d == NULL)
		return;
	for (i = 0; i < d->n; i++)
		free(d->msg[i]);
	free(d->msg);
	diag_init(d);
}

void
diag_add(struct diag *d, const char *file, int line, const char *fmt, ...)
{
	struct buf b;
	char *text;
	va_list ap;
	int n;

	if (d == NULL)
		return;
	va_start(ap, fmt);
	n = vasprintf(&text, fmt, ap);
	va_end(ap);
	if (n < 0)
		return;
	buf_init(&b);
	if (file != NULL && line > 0)
		buf_printf(&b, "%s:%d: ", file, line);
	else if (file != NULL)
		buf_printf(&b, "%s: ", file);
	/* Messages may quote config text: keep them one safe line. */
	buf_put_escaped(&b, text, 2000);
	free(text);
	if (d->n == d->cap) {
		d->cap = d->cap ? d->cap * 2 : 8;
		d->msg = xrealloc(d->msg, d->cap * sizeof *d->msg);
	}
	d->msg[d->n++] = buf_steal(&b);
}

void
diag_print(const struct diag *d, FILE *f)
{
	size_t i;

	for (i = 0; i < d->n; i++)
		fprintf(f, "%s\n", d->msg[i]);
}
