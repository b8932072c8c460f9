/*
 * req.c - the request and response helpers of the web side: query strings
 * and form bodies, headers the handlers read, and the JSON, HTML and
 * redirect answers they give.  Plain data (struct http_req, http_resp):
 * no server types, so every handler runs in a unit test or a fuzzer; what
 * goes on the wire is decided in http.c.
 */
#include "cutoffd.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <jansson.h>

void
resp_hdr(struct http_resp *r, const char *name, const char *value)
{
	size_t n = sizeof(r->hdr) / sizeof(r->hdr[0]);

	for (size_t i = 0; i < n; i++) {
		if (r->hdr[i].name == NULL ||
		    strcasecmp(r->hdr[i].name, name) == 0) {
			r->hdr[i].name = name;
			r->hdr[i].value = value;
			return;
		}
	}
}

/* steals j */
void
resp_json(struct http_resp *r, int status, json_t *j)
{
	char *s = json_dumps(j, JSON_COMPACT);

	json_decref(j);
	r->status = status;
	r->content_type = DOC_JSON;
	buf_reset(&r->body);
	if (s != NULL) {
		buf_puts(&r->body, s);
		free(s);
	} else {
		r->status = 500;
		buf_puts(&r->body, "{\"error\":\"internal error\"}");
	}
	buf_putc(&r->body, '\n');
}

void
resp_error(struct http_resp *r, int status, const char *msg)
{
	resp_json(r, status, json_pack("{s:s}", "error", msg));
}

void
html_esc(struct buf *b, const char *s)
{
	for (; s != NULL && *s != '\0'; s++) {
		switch (*s) {
		case '&': buf_puts(b, "&amp;"); break;
		case '<': buf_puts(b, "&lt;"); break;
		case '>': buf_puts(b, "&gt;"); break;
		case '"': buf_puts(b, "&quot;"); break;
		case '\'': buf_puts(b, "&#39;"); break;
		default: buf_putc(b, *s); break;
		}
	}
}

/* A small page for errors of the forms (no JSON for browsers). */
void
resp_html_msg(struct http_resp *r, int status, const char *msg)
{
	r->status = status;
	r->content_type = DOC_HTML;
	buf_reset(&r->body);
	buf_puts(&r->body, "<!DOCTYPE html>\n<html lang=\"vi\"><head>"
		 "<meta charset=\"utf-8\"><title>cutoffd</title></head><body><p>");
	html_esc(&r->body, msg);
	buf_puts(&r->body, "</p><p><a href=\"/\">Quay lại</a></p></body></html>\n");
}

void
resp_redirect(struct http_resp *r, const char *location)
{
	r->status = 303;
	free(r->location);
	r->location = xstrdup(location);
	r->content_type = "text/plain; charset=utf-8";
	buf_reset(&r->body);
	buf_puts(&r->body, "See Other\n");
}

void
resp_not_allowed(struct http_resp *r, const char *allow, bool json)
{
	if (json)
		resp_error(r, 405, "method not allowed");
	else
		resp_html_msg(r, 405, "Phương thức không được hỗ trợ.");
	resp_hdr(r, "Allow", allow);
}

/* percent-encodes all but RFC 3986 unreserved characters */
void
url_esc(struct buf *b, const char *s)
{
	for (; *s != '\0'; s++) {
		unsigned char ch = (unsigned char)*s;

		if ((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
		    (ch >= '0' && ch <= '9') || ch == '-' || ch == '.' ||
		    ch == '_' || ch == '~')
			buf_putc(b, (char)ch);
		else
			buf_printf(b, "%%%02X", ch);
	}
}


/* --------------------------------------------------------- requests */

static int
hexval(char ch)
{
	if (ch >= '0' && ch <= '9')
		return ch - '0';
	if (ch >= 'a' && ch <= 'f')
		return ch - 'a' + 10;
	if (ch >= 'A' && ch <= 'F')
		return ch - 'A' + 10;
	return -1;
}

/* Decodes s[0..n); NULL when it holds a NUL byte (never a valid value). */
static char *
url_decode(const char *s, size_t n)
{
	char *out = xmalloc(n + 1), *p = out;

	for (size_t i = 0; i < n; i++) {
		int hi = i + 2 < n ? hexval(s[i + 1]) : -1;
		int lo = i + 2 < n ? hexval(s[i + 2]) : -1;

		if (s[i] == '+') {
			*p++ = ' ';
		} else if (s[i] == '%' && hi >= 0 && lo >= 0) {
			if (hi == 0 && lo == 0) {
				free(out);
				return NULL;
			}
			*p++ = (char)(hi * 16 + lo);
			i += 2;
		} else {
			*p++ = s[i];
		}
	}
	*p = '\0';
	return out;
}

void
form_parse(struct form *f, const char *s, size_t len)
{
	size_t i = 0;

	memset(f, 0, sizeof(*f));
	while (s != NULL && i < len && f->n < FORM_MAX_FIELDS) {
		size_t start = i, eq = SIZE_MAX;
		char *k, *v;

		while (i < len && s[i] != '&' && s[i] != ';') {
			if (s[i] == '=' && eq == SIZE_MAX)
				eq = i;
			i++;
		}
		if (i > start) {
			if (eq == SIZE_MAX)
				eq = i;
			k = url_decode(s + start, eq - start);
			v = url_decode(s + eq + (eq < i ? 1 : 0),
				       i - eq - (eq < i ? 1 : 0));
			if (k != NULL && v != NULL) {
				f->name[f->n] = k;
				f->value[f->n] = v;
				f->n++;
			} else {
				free(k);
				free(v);
			}
		}
		i++;
	}
}

/* the first value of name, NULL when absent; "" counts as absent */
const char *
form_get(const struct form *f, const char *name)
{
	for (size_t i = 0; i < f->n; i++)
		if (strcmp(f->name[i], name) == 0)
			return f->value[i][0] != '\0' ? f->value[i] : NULL;
	return NULL;
}

void
form_free(struct form *f)
{
	for (size_t i = 0; i < f->n; i++) {
		free(f->name[i]);
		free(f->value[i]);
	}
	f->n = 0;
}


/* "application/json" with optional parameters, case-insensitive */
bool
req_type_is(const struct http_req *q, const char *want)
{
	const char *ct = q->content_type;
	size_t n = strlen(want);

	if (ct == NULL)
		return false;
	while (*ct == ' ' || *ct == '\t')
		ct++;
	if (strncasecmp(ct, want, n) != 0)
		return false;
	ct += n;
	return *ct == '\0' || *ct == ';' || *ct == ' ' || *ct == '\t';
}

bool
req_method_is(const struct http_req *q, const char *m)
{
	return q->method != NULL && strcmp(q->method, m) == 0;
}

bool
req_is_get(const struct http_req *q)
{
	return req_method_is(q, "GET") || req_method_is(q, "HEAD");
}

int
req_form(const struct http_req *q, struct http_resp *r, struct form *out)
{
	if (!req_type_is(q, "application/x-www-form-urlencoded")) {
		resp_html_msg(r, 415, "Dữ liệu gửi lên không đúng dạng.");
		return -1;
	}
	form_parse(out, q->body, q->body ? q->body_len : 0);
	return 0;
}

/* the token of "Bearer TOKEN", or NULL (into out, >= size) */
bool
req_bearer(const struct http_req *q, char *out, size_t size)
{
	const char *h = q->authorization;
	size_t n;

	if (h == NULL)
		return false;
	while (*h == ' ')
		h++;
	if (strncasecmp(h, "Bearer", 6) != 0 || (h[6] != ' ' && h[6] != '\t'))
		return false;
	h += 6;
	while (*h == ' ' || *h == '\t')
		h++;
	n = strlen(h);
	while (n > 0 && (h[n - 1] == ' ' || h[n - 1] == '\t'))
		n--;
	if (n == 0 || n >= size)
		return false;
	memcpy(out, h, n);
	out[n] = '\0';
	return true;
}
