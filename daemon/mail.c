/*
 * mail.c - the RFC 5322/MIME message of an email notice, and delivery into
 * a Maildir.
 *
 * Everything that goes into a header is checked for CR/LF (header
 * injection) and non-ASCII text is RFC 2047 encoded; the body is UTF-8 in
 * quoted-printable so the message is 7-bit clean for any relay.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/evp.h>

#include "cutoffd.h"

#define LINE_MAX_HDR 78
/* "=?UTF-8?B?" + "?=" */
#define EW_OVERHEAD 12

void
notice_clear(struct notice *n)
{
	if (n == NULL)
		return;
	free(n->recipients);
	n->recipients = NULL;
}

/* ------------------------------------------------------------- encodings */

static const char hexd[] = "0123456789ABCDEF";

/* Each byte's quoted-printable form: its length (1 literal, 3 "=XX") and
 * text.  White space is literal here; at the end of a line it is encoded
 * (RFC 2045 rule 3), handled apart. */
struct qp_tok {
	unsigned char len;
	char s[3];
};
static struct qp_tok qp_tab[256];

static void
qp_init(void)
{
	for (int c = 0; c < 256; c++) {
		bool lit = (c >= 33 && c <= 126 && c != '=') || c == ' ' ||
			   c == '\t';

		qp_tab[c].len = lit ? 1 : 3;
		qp_tab[c].s[0] = lit ? (char)c : '=';
		qp_tab[c].s[1] = hexd[c >> 4];
		qp_tab[c].s[2] = hexd[c & 15];
	}
}

/* Table-driven, into one buffer sized for the worst case: each byte gives
 * at most 3, a soft break "=\r\n" comes at most once per 73 output bytes
 * and a line end grows by one, so 4 * len + 8 always fits; the text is
 * then copied once.  All but a line's last byte must leave room for a
 * soft break's "=" (75 columns); the last may reach 76. */
void
mail_qp_encode(struct buf *out, const char *text, size_t len)
{
	const unsigned char *p = (const unsigned char *)text;
	const unsigned char *end = p + len;
	char *dst = xmalloc(4 * len + 8), *o = dst;

	if (qp_tab['A'].len == 0)
		qp_init();
	while (p < end) {
		const unsigned char *nl = memchr(p, '\n', (size_t)(end - p));
		const unsigned char *le = nl != NULL ? nl : end;
		/* a CR before the LF is part of the line end, not content */
		const unsigned char *stop = (le > p && le[-1] == '\r') ? le - 1 : le;
		char *lim = o + 75;     /* the soft-break column of this line */

		if (p < stop) {
			for (; p < stop - 1; p++) {
				const struct qp_tok *t = &qp_tab[*p];

				if (o + t->len > lim) {
					memcpy(o, "=\r\n", 3);
					o += 3;
					lim = o + 75;
				}
				memcpy(o, t->s, 3);   /* 4 * len + 8 leaves room */
				o += t->len;
			}
			/* the last byte: trailing white space is encoded */
			{
				const struct qp_tok *t = &qp_tab[*p];
				size_t n = (*p == ' ' || *p == '\t') ? 3 : t->len;

				if (o + n > lim + 1) {
					memcpy(o, "=\r\n", 3);
					o += 3;
				}
				if (n == 3) {
					o[0] = '=';
					o[1] = hexd[*p >> 4];
					o[2] = hexd[*p & 15];
				} else {
					o[0] = (char)*p;
				}
				o += n;
				p++;
			}
		}
		*o++ = '\r';
		*o++ = '\n';
		p = nl != NULL ? nl + 1 : end;
	}
	buf_add(out, dst, (size_t)(o - dst));
	free(dst);
}

static void
put_b64(struct buf *out, const unsigned char *p, size_t n)
{
	unsigned char enc[4 * 64 / 3 + 8];

	while (n > 0) {
		size_t chunk = n > 48 ? 48 : n;
		int k = EVP_EncodeBlock(enc, p, (int)chunk);

		buf_add(out, enc, (size_t)k);
		p += chunk;
		n -= chunk;
	}
}

/* length of the UTF-8 sequence starting with byte c (1 for stray bytes) */
static size_t
u8len(unsigned char c)
{
	if (c >= 0xf0)
		return 4;
	if (c >= 0xe0)
		return 3;
	if (c >= 0xc0)
		return 2;
	return 1;
}

/* Writes s as RFC 2047 encoded-words, starting at column col, folding
 * before each further word so no line exceeds 78 characters; a word never
 * splits a UTF-8 sequence.  Returns the column after the last word. */
static size_t
put_encoded_words(struct buf *out, size_t col, const char *s)
{
	const unsigned char *p = (const unsigned char *)s;
	size_t n = strlen(s), i = 0;
	bool first = true;

	while (i < n || first) {
		size_t room, maxbytes, take = 0;

		if (!first) {
			buf_puts(out, "\r\n ");
			col = 1;
		}
		room = LINE_MAX_HDR - col;
		maxbytes = room > EW_OVERHEAD ? (room - EW_OVERHEAD) / 4 * 3 : 0;
		if (maxbytes > 45)
			maxbytes = 45;
		if (maxbytes < 4 && first && col > 1) {
			buf_puts(out, "\r\n ");
			col = 1;
			maxbytes = 45;
		}
		while (i + take < n) {
			size_t k = u8len(p[i + take]);

			if (i + take + k > n)
				k = n - i - take;
			if (take + k > maxbytes)
				break;
			take += k;
		}
		if (take == 0 && i < n)
			take = 1;    /* cannot happen with maxbytes >= 4 */
		buf_puts(out, "=?UTF-8?B?");
		put_b64(out, p + i, take);
		buf_puts(out, "?=");
		col += EW_OVERHEAD + (take + 2) / 3 * 4;
		i += take;
		first = false;
	}
	return col;
}

static bool
is_plain_ascii(const char *s)
{
	for (const unsigned char *p = (const unsigned char *)s; *p; p++)
		if (*p < 0x20 || *p > 0x7e)
			return false;
	return strstr(s, "=?") == NULL;
}

static bool
header_safe(const char *what, const char *s)
{
	if (s == NULL) {
		log_err("mail: no %s", what);
		return false;
	}
	for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
		if (*p == '\r' || *p == '\n' || *p < 0x20 || *p == 0x7f) {
			struct buf b;

			buf_init(&b);
			buf_put_escaped(&b, s, 200);
			log_err("mail: refusing a control character in %s: %s",
				what, buf_str(&b));
			buf_free(&b);
			return false;
		}
	}
	return true;
}

/* An address: no spaces, controls, or brackets, one '@' with text around. */
static bool
addr_ok(const char *a)
{
	const char *at = strchr(a, '@');

	if (at == NULL || at == a || at[1] == '\0' || strchr(at + 1, '@'))
		return false;
	for (const unsigned char *p = (const unsigned char *)a; *p; p++)
		if (*p <= 0x20 || *p == 0x7f || strchr("<>()[],;:\\\"", *p))
			return false;
	return true;
}

static bool
needs_quotes(const char *s)
{
	for (const char *p = s; *p; p++)
		if (strchr("()<>[]:;@\\,.\"", *p))
			return true;
	return false;
}

static bool
is_atom(const char *w, size_t n)
{
	if (n >= 2 && w[0] == '=' && w[1] == '?')
		return false;
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)w[i];

		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
		      (c >= '0' && c <= '9') || strchr("!#$%&'*+-/=?^_`{|}~", c)))
			return false;
	}
	return true;
}

/* Appends one token, after a space or a fold, keeping lines <= 78. */
static size_t
put_token(struct buf *out, size_t col, bool first, const char *tok, size_t n)
{
	if (!first) {
		if (col + 1 + n > LINE_MAX_HDR) {
			buf_puts(out, "\r\n");
			col = 0;
		}
		buf_putc(out, ' ');
		col++;
	}
	buf_add(out, tok, n);
	return col + n;
}

/*
 * A display name (an RFC 5322 phrase): plain words stay atoms, and each run
 * of other words becomes encoded-words.  Keeping the atoms between the
 * runs matters: white space between two adjacent encoded-words is dropped
 * by RFC 2047 decoders but kept by some parsers (Python's), so splitting
 * a name only next to an atom reads the same everywhere.  With lead, the
 * first word follows a space or a fold too (a later mailbox of a list).
 */
static size_t
put_phrase(struct buf *out, size_t col, const char *name, bool lead)
{
	char **w;
	size_t n = split_list(name, " \t", &w), i = 0;
	bool first = !lead;

	while (i < n) {
		struct buf run, enc;
		size_t j;

		if (is_atom(w[i], strlen(w[i]))) {
			col = put_token(out, col, first, w[i], strlen(w[i]));
			first = false;
			i++;
			continue;
		}
		buf_init(&run);
		for (j = i; j < n && !is_atom(w[j], strlen(w[j])); j++) {
			/* a run too long for one encoded-word is split at a
			 * word, the space inside the earlier word (RFC) */
			if (run.len > 0 && run.len + 1 + strlen(w[j]) > 45) {
				buf_putc(&run, ' ');
				break;
			}
			if (run.len > 0)
				buf_putc(&run, ' ');
			buf_puts(&run, w[j]);
		}
		buf_init(&enc);
		put_encoded_words(&enc, 0, buf_str(&run));
		if (strstr(buf_str(&enc), "\r\n") != NULL) {
			/* a single word longer than an encoded-word: fold as is */
			if (!first) {
				buf_putc(out, ' ');
				col++;
			}
			col = put_encoded_words(out, col, buf_str(&run));
		} else {
			col = put_token(out, col, first, enc.p, enc.len);
		}
		first = false;
		buf_free(&enc);
		buf_free(&run);
		i = j;
	}
	free_list(w, n);
	return col;
}

/* Splits a trimmed "Name <addr>" or "addr" in place; *name is NULL when
 * there is none. */
static void
split_mailbox(char *s, char **name, char **addr)
{
	char *lt = strrchr(s, '<'), *gt = strrchr(s, '>'), *nm;
	size_t nl;

	*name = NULL;
	*addr = s;
	if (lt == NULL || gt == NULL || gt < lt || gt[1] != '\0')
		return;
	*lt = '\0';
	*gt = '\0';
	*addr = strtrim(lt + 1);
	nm = strtrim(s);
	nl = strlen(nm);
	if (nl >= 2 && nm[0] == '"' && nm[nl - 1] == '"') {
		nm[nl - 1] = '\0';
		nm++;
	}
	if (*nm != '\0')
		*name = nm;
}

/* One mailbox at col (after a space or fold when lead), folded so no line
 * exceeds 78 characters.  Returns the column after it. */
static size_t
put_mailbox(struct buf *out, size_t col, const char *name, const char *addr,
	    bool lead)
{
	struct buf b;

	if (name == NULL)
		return put_token(out, col, !lead, addr, strlen(addr));
	buf_init(&b);
	if (is_plain_ascii(name)) {
		if (needs_quotes(name)) {
			buf_putc(&b, '"');
			for (const char *p = name; *p; p++) {
				if (*p == '"' || *p == '\\')
					buf_putc(&b, '\\');
				buf_putc(&b, *p);
			}
			buf_putc(&b, '"');
		} else {
			buf_puts(&b, name);
		}
		buf_printf(&b, " <%s>", addr);
	}
	/* a short ASCII name goes as it is, whole on its line */
	if (b.len > 0 && (lead ? 1 : col) + b.len <= LINE_MAX_HDR) {
		col = put_token(out, col, !lead, b.p, b.len);
	} else {
		buf_reset(&b);
		buf_printf(&b, "<%s>", addr);
		col = put_phrase(out, col, name, lead);
		col = put_token(out, col, false, b.p, b.len);
	}
	buf_free(&b);
	return col;
}

/* "From: " with a display name encoded as needed. */
static int
put_from(struct buf *out, const char *from)
{
	char *copy, *name, *addr;
	int rc = -1;

	if (!header_safe("From", from))
		return -1;
	copy = xstrdup(from);
	split_mailbox(strtrim(copy), &name, &addr);
	if (!addr_ok(addr)) {
		log_err("mail: bad From address");
		goto out;
	}
	buf_puts(out, "From: ");
	put_mailbox(out, 6, name, addr, false);
	buf_puts(out, "\r\n");
	rc = 0;
out:
	free(copy);
	return rc;
}

/* "To: a, Name <b>" folded between and inside mailboxes when long */
static int
put_addr_header(struct buf *out, const char *hdr, const char *recipients)
{
	char **v, *name, *addr;
	size_t n, col, c0 = strlen(hdr) + 2;
	int rc = 0;

	if (!header_safe("recipients", recipients))
		return -1;
	n = split_list(recipients, ",", &v);
	buf_puts(out, hdr);
	buf_puts(out, ": ");
	col = c0;
	for (size_t i = 0; i < n && rc == 0; i++) {
		split_mailbox(strtrim(v[i]), &name, &addr);
		if (*addr == '\0' && name == NULL)
			continue;
		if (!addr_ok(addr)) {
			struct buf b;

			buf_init(&b);
			buf_put_escaped(&b, addr, 200);
			log_err("mail: bad recipient address %s", buf_str(&b));
			buf_free(&b);
			rc = -1;
			break;
		}
		if (col > c0) {
			buf_putc(out, ',');
			col++;
		}
		col = put_mailbox(out, col, name, addr, col > c0);
	}
	if (rc == 0 && col == c0) {
		log_err("mail: no recipients");
		rc = -1;
	}
	buf_puts(out, "\r\n");
	free_list(v, n);
	return rc;
}

static int
put_to(struct buf *out, const char *recipients)
{
	return put_addr_header(out, "To", recipients);
}

static void
put_subject(struct buf *out, const char *subject)
{
	buf_puts(out, "Subject: ");
	if (is_plain_ascii(subject) && 9 + strlen(subject) <= LINE_MAX_HDR)
		buf_puts(out, subject);
	else
		put_encoded_words(out, 9, subject);
	buf_puts(out, "\r\n");
}

static void
put_date(struct buf *out, const struct conf *c, tstamp now)
{
	static const char *const wd[] = { "Sun", "Mon", "Tue", "Wed", "Thu",
		"Fri", "Sat" };
	static const char *const mo[] = { "Jan", "Feb", "Mar", "Apr", "May",
		"Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec" };
	struct ymd d;
	int minute, second;
	int64_t off = tz_offset(c->tz, now) / 60;

	tz_local(c->tz, now, &d, &minute, &second);
	buf_printf(out, "Date: %s, %02d %s %04d %02d:%02d:%02d %c%02d%02d\r\n",
		   wd[ymd_wday(d)], d.d, mo[(d.m - 1) % 12], d.y, minute / 60,
		   minute % 60, second, off < 0 ? '-' : '+',
		   (int)((off < 0 ? -off : off) / 60),
		   (int)((off < 0 ? -off : off) % 60));
}

/* The headers that repeat from one mail to the next are encoded once:
 * From (the configuration's), Subject (the same for every unit of a mass
 * send unless the template names the unit), Date (the same second).  One
 * entry each, keyed by the input text; this process is single-threaded. */
struct hdr_cache {
	char *key;
	struct buf out;
	int rc;
};

static bool
hdr_cached(struct hdr_cache *hc, const char *key, struct buf *m)
{
	if (hc->key == NULL || strcmp(hc->key, key) != 0)
		return false;
	if (hc->rc == 0)
		buf_add(m, hc->out.p, hc->out.len);
	return true;
}

static void
hdr_store(struct hdr_cache *hc, const char *key, const char *from, size_t n,
	  int rc)
{
	free(hc->key);
	hc->key = xstrdup(key);
	buf_reset(&hc->out);
	buf_add(&hc->out, from, n);
	hc->rc = rc;
}

static int
put_from_cached(struct buf *m, const char *from)
{
	static struct hdr_cache hc;
	size_t start = m->len;
	int rc;

	if (from != NULL && hdr_cached(&hc, from, m))
		return hc.rc;
	rc = put_from(m, from);
	if (from != NULL)
		hdr_store(&hc, from, m->p + start, rc == 0 ? m->len - start : 0,
			  rc);
	if (rc < 0)
		m->len = start;
	return rc;
}

static int
put_reply_to_cached(struct buf *m, const char *addrs)
{
	static struct hdr_cache hc;
	size_t start = m->len;
	int rc;

	if (hdr_cached(&hc, addrs, m))
		return hc.rc;
	rc = put_addr_header(m, "Reply-To", addrs);
	hdr_store(&hc, addrs, m->p + start, rc == 0 ? m->len - start : 0, rc);
	if (rc < 0)
		m->len = start;
	return rc;
}

static void
put_subject_cached(struct buf *m, const char *subject)
{
	static struct hdr_cache hc;
	size_t start = m->len;

	if (hdr_cached(&hc, subject, m))
		return;
	put_subject(m, subject);
	hdr_store(&hc, subject, m->p + start, m->len - start, 0);
}

static void
put_date_cached(struct buf *m, const struct conf *c, tstamp now)
{
	static struct hdr_cache hc;
	size_t start = m->len;
	char key[128];

	snprintf(key, sizeof key, "%lld %s", (long long)now,
		 c->tz != NULL ? tz_name(c->tz) : "UTC");
	if (hdr_cached(&hc, key, m))
		return;
	put_date(m, c, now);
	hdr_store(&hc, key, m->p + start, m->len - start, 0);
}

char *
mail_build(const struct conf *c, struct db *db, struct notice *const *ns,
	   size_t n, tstamp now, size_t *len)
{
	struct notice_text nt = { 0 };
	struct buf m;
	const char *mid;

	if (c == NULL || ns == NULL || n == 0 || ns[0] == NULL)
		return NULL;
	mid = ns[0]->message_id;
	if (!header_safe("Message-ID", mid))
		return NULL;
	if (mid[0] != '<' || mid[strlen(mid) - 1] != '>' || strchr(mid, ' ')) {
		log_err("mail: malformed Message-ID");
		return NULL;
	}
	for (size_t i = 0; i < n; i++) {
		if (!header_safe("occurrence", ns[i]->occurrence) ||
		    !header_safe("unit", ns[i]->unit) ||
		    !header_safe("step", ns[i]->step) ||
		    !header_safe("recipients", ns[i]->recipients))
			return NULL;
	}
	if (notice_render(c, db, ns, n, now, &nt) < 0)
		return NULL;
	if (!header_safe("Subject", nt.subject) || !utf8_valid(nt.subject, strlen(nt.subject)))
		goto fail_nobuf;

	buf_init(&m);
	buf_add(&m, "", 0);
	if (put_from_cached(&m, c->mail.from) < 0)
		goto fail;
	if (put_to(&m, ns[0]->recipients) < 0)
		goto fail;
	/* a unit answers the secretariat (the mailbox cutoffd may read) */
	if (!(ns[0]->aud & (AUD_SECRETARIAT | AUD_CHIEF)) &&
	    c->secretariat.email != NULL &&
	    put_reply_to_cached(&m, c->secretariat.email) < 0)
		goto fail;
	put_subject_cached(&m, nt.subject);
	put_date_cached(&m, c, now);
	buf_puts(&m, "Message-ID: ");
	buf_puts(&m, mid);
	buf_puts(&m, "\r\n");
	/* one thread per unit and occurrence: the later mails answer the
	 * first (RFC 5322 3.6.4) */
	if (ns[0]->thread[0] != '\0') {
		const char *t = ns[0]->thread;

		if (!header_safe("thread", t) || t[0] != '<' ||
		    t[strlen(t) - 1] != '>' || strchr(t, ' ') != NULL) {
			log_err("mail: malformed thread Message-ID");
			goto fail;
		}
		buf_puts(&m, "In-Reply-To: ");
		buf_puts(&m, t);
		buf_puts(&m, "\r\nReferences: ");
		buf_puts(&m, t);
		buf_puts(&m, "\r\n");
	}
	buf_puts(&m, "MIME-Version: 1.0\r\n"
		 "Content-Type: text/plain; charset=utf-8\r\n"
		 "Content-Transfer-Encoding: quoted-printable\r\n"
		 "Auto-Submitted: auto-generated\r\n"
		 "X-Auto-Response-Suppress: All\r\n");
	for (size_t i = 0; i < n; i++)
		buf_printf(&m, "X-Cutoffd-Notice: %s %s %s\r\n",
			   ns[i]->occurrence, ns[i]->unit, ns[i]->step);
	buf_puts(&m, "\r\n");
	if (nt.body_qp != NULL)
		buf_add(&m, nt.body_qp, nt.body_qp_len);
	else
		mail_qp_encode(&m, nt.body, strlen(nt.body));
	notice_text_clear(&nt);
	*len = m.len;
	return buf_steal(&m);
fail:
	buf_free(&m);
fail_nobuf:
	notice_text_clear(&nt);
	return NULL;
}

/* ---------------------------------------------------------------- maildir */

static int
mkdir_p(const char *path, mode_t mode)
{
	char *p = xstrdup(path);
	int rc = 0;

	for (char *s = p + 1; *s; s++) {
		if (*s != '/')
			continue;
		*s = '\0';
		if (mkdir(p, mode) < 0 && errno != EEXIST)
			rc = -1;
		*s = '/';
		if (rc < 0)
			break;
	}
	if (rc == 0 && mkdir(p, mode) < 0 && errno != EEXIST)
		rc = -1;
	free(p);
	return rc;
}

static int
fsync_dir(const char *dir)
{
	int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	int rc;

	if (fd < 0)
		return -1;
	rc = fsync(fd);
	close(fd);
	return rc;
}

/* the host name with '/' and ':' escaped, as the Maildir spec asks */
static void
safe_hostname(char *out, size_t size)
{
	char host[256];
	struct buf b;

	if (gethostname(host, sizeof host) < 0)
		strcpy(host, "localhost");
	host[sizeof host - 1] = '\0';
	buf_init(&b);
	for (const char *p = host; *p; p++) {
		if (*p == '/')
			buf_puts(&b, "\\057");
		else if (*p == ':')
			buf_puts(&b, "\\072");
		else
			buf_putc(&b, *p);
	}
	snprintf(out, size, "%s", buf_str(&b));
	buf_free(&b);
}

static int
write_all(int fd, const char *p, size_t n)
{
	while (n > 0) {
		ssize_t w = write(fd, p, n);

		if (w < 0) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		p += w;
		n -= (size_t)w;
	}
	return 0;
}

int
maildir_deliver(const char *maildir, const char *msg, size_t len, tstamp now)
{
	static unsigned long counter;
	char host[300], *tmp = NULL, *new = NULL, *dir;
	int fd = -1, saved;
	const char *sub[] = { "tmp", "new", "cur" };

	if (maildir == NULL || msg == NULL) {
		log_err("maildir: no maildir configured");
		return -1;
	}
	for (int i = 0; i < 3; i++) {
		dir = xasprintf("%s/%s", maildir, sub[i]);
		if (mkdir_p(dir, 0700) < 0) {
			log_err("maildir: cannot create %s: %s", dir, strerror(errno));
			free(dir);
			return -1;
		}
		free(dir);
	}
	safe_hostname(host, sizeof host);
	for (int tries = 0; tries < 100 && fd < 0; tries++) {
		char *name = xasprintf("%lld.%ld_%lu.%s", (long long)now,
				       (long)getpid(), ++counter, host);

		free(tmp);
		free(new);
		tmp = xasprintf("%s/tmp/%s", maildir, name);
		new = xasprintf("%s/new/%s", maildir, name);
		free(name);
		fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
		if (fd < 0 && errno != EEXIST)
			break;
		/* a file in new/ with that name would be overwritten by rename */
		if (fd >= 0 && access(new, F_OK) == 0) {
			close(fd);
			unlink(tmp);
			fd = -1;
		}
	}
	if (fd < 0) {
		log_err("maildir: cannot create %s: %s", tmp, strerror(errno));
		goto fail;
	}
	if (write_all(fd, msg, len) < 0 || fsync(fd) < 0) {
		saved = errno;
		log_err("maildir: cannot write %s: %s", tmp, strerror(saved));
		close(fd);
		unlink(tmp);
		goto fail;
	}
	if (close(fd) < 0) {
		log_err("maildir: cannot write %s: %s", tmp, strerror(errno));
		unlink(tmp);
		goto fail;
	}
	if (rename(tmp, new) < 0) {
		log_err("maildir: cannot move %s into new/: %s", tmp,
			strerror(errno));
		unlink(tmp);
		goto fail;
	}
	dir = xasprintf("%s/new", maildir);
	if (fsync_dir(dir) < 0) {
		log_err("maildir: cannot sync %s: %s", dir, strerror(errno));
		free(dir);
		goto fail;
	}
	free(dir);
	free(tmp);
	free(new);
	return 0;
fail:
	free(tmp);
	free(new);
	return -1;
}
