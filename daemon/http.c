/*
 * http.c - the HTTP server: libmicrohttpd driven by the libev loop (no
 * thread of its own), the route table, and every decision about what goes
 * on the wire (status, headers, caching).  The views hand it bytes (a
 * struct doc, or the body of a struct http_resp); nothing else here knows
 * of MHD.
 *
 * MHD runs in "external epoll" mode: one ev_io watches its epoll fd and one
 * ev_timer is re-armed from MHD_get_timeout after every MHD_run; without
 * the timer idle connections would never time out and buffered work could
 * stall.
 */
#include "cutoffd.h"

#include <errno.h>
#include <ev.h>
#include <microhttpd.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define BODY_MAX (64 * 1024)        /* request bodies (API, forms) */
#define CONN_LIMIT 256
#define PER_IP_LIMIT 32
#define CONN_TIMEOUT 30              /* seconds of inactivity */
#define CONN_MEMORY (64 * 1024)      /* MHD's per-connection pool */

#define CSP "default-src 'none'; style-src 'unsafe-inline'; img-src 'self' data:;" \
	" form-action 'self'; frame-ancestors 'none'; base-uri 'none'"

struct http {
	struct app *a;
	struct MHD_Daemon *d;
	ev_io io;
	ev_timer timer;
};

/* per request: made by the URI logger, freed on completion */
struct conn {
	char *query;             /* raw query string, without '?'; or NULL */
	struct buf body;         /* the upload accumulated so far */
	bool started;            /* the access handler saw the headers */
	bool too_big;
};

/* ------------------------------------------------------------ responses */

/* headers every response carries */
static bool common_headers(struct MHD_Response *r)
{
	return MHD_add_response_header(r, "X-Content-Type-Options",
				       "nosniff") == MHD_YES &&
	       MHD_add_response_header(r, "Referrer-Policy",
				       "no-referrer") == MHD_YES;
}

/* A small response made per request: errors, health, redirects. */
static enum MHD_Result reply(struct MHD_Connection *mc, int status,
			     const char *text, const char *allow)
{
	struct MHD_Response *r;
	enum MHD_Result ret;

	r = MHD_create_response_from_buffer(strlen(text), (void *)text,
					    MHD_RESPMEM_MUST_COPY);
	if (!r)
		return MHD_NO;
	if (!common_headers(r) ||
	    MHD_add_response_header(r, "Content-Type",
				    "text/plain; charset=utf-8") != MHD_YES ||
	    MHD_add_response_header(r, "Cache-Control", "no-store") != MHD_YES ||
	    (allow && MHD_add_response_header(r, "Allow", allow) != MHD_YES)) {
		MHD_destroy_response(r);
		return MHD_NO;
	}
	ret = MHD_queue_response(mc, (unsigned)status, r);
	MHD_destroy_response(r);
	return ret;
}

/* ------------------------------------------------------ conditional GET */

/* If-None-Match: "*" or a list of entity tags, compared weakly (RFC 7232
 * 2.3.2: opaque parts equal, W/ ignored). */
static bool etag_listed(const char *list, const char *etag)
{
	const char *ours = etag;
	size_t olen;

	if (ours[0] == 'W' && ours[1] == '/')
		ours += 2;
	olen = strlen(ours);
	while (*list) {
		const char *q, *end;

		while (*list == ' ' || *list == '\t' || *list == ',')
			list++;
		if (*list == '*')
			return true;
		if (list[0] == 'W' && list[1] == '/')
			list += 2;
		if (*list != '"') {
			/* not an entity tag: skip to the next element */
			list += strcspn(list, ",");
			continue;
		}
		q = list;
		end = strchr(q + 1, '"');
		if (!end)
			return false;
		if ((size_t)(end + 1 - q) == olen && memcmp(q, ours, olen) == 0)
			return true;
		list = end + 1;
	}
	return false;
}

/* HTTP-date in any of the three forms RFC 7231 7.1.1.1 asks recipients to
 * accept; false when none fits. */
static bool parse_http_date(const char *s, tstamp *out)
{
	static const char *const fmts[] = {
		"%a, %d %b %Y %H:%M:%S GMT",   /* IMF-fixdate */
		"%A, %d-%b-%y %H:%M:%S GMT",   /* RFC 850 */
		"%a %b %e %H:%M:%S %Y",        /* asctime */
	};

	for (size_t i = 0; i < sizeof(fmts) / sizeof(fmts[0]); i++) {
		struct tm tm;
		const char *end;

		memset(&tm, 0, sizeof(tm));
		end = strptime(s, fmts[i], &tm);
		if (end && *end == '\0') {
			*out = (tstamp)timegm(&tm);
			return true;
		}
	}
	return false;
}

static bool not_modified(struct MHD_Connection *mc, const struct doc *doc)
{
	const char *inm, *ims;
	tstamp t;

	inm = MHD_lookup_connection_value(mc, MHD_HEADER_KIND, "If-None-Match");
	if (inm)   /* when present, If-Modified-Since is ignored (7232 3.3) */
		return etag_listed(inm, doc->etag);
	ims = MHD_lookup_connection_value(mc, MHD_HEADER_KIND,
					  "If-Modified-Since");
	return ims && doc->modified > 0 && parse_http_date(ims, &t) &&
	       doc->modified <= t;
}

static void http_date(tstamp t, char *out, size_t n)
{
	time_t tt = (time_t)t;
	struct tm tm;

	if (!gmtime_r(&tt, &tm) ||
	    strftime(out, n, "%a, %d %b %Y %H:%M:%S GMT", &tm) == 0)
		snprintf(out, n, "Thu, 01 Jan 1970 00:00:00 GMT");
}

/* The headers of a shared document, chosen by what it is. */
static bool doc_headers(struct MHD_Response *r, const struct doc *doc)
{
	char date[40];
	bool cal = strcmp(doc->type, DOC_CALENDAR) == 0;

	if (doc->modified > 0) {
		http_date(doc->modified, date, sizeof(date));
		if (MHD_add_response_header(r, "Last-Modified",
					    date) != MHD_YES)
			return false;
	}
	return common_headers(r) &&
	       MHD_add_response_header(r, "Content-Type",
				       doc->type) == MHD_YES &&
	       MHD_add_response_header(r, "ETag", doc->etag) == MHD_YES &&
	       MHD_add_response_header(r, "Cache-Control",
				       cal ? "private, max-age=300"
					   : "private, no-cache") == MHD_YES;
}

static void doc_sent(void *cls)
{
	doc_unref(cls);
}

static void response_free(void *resp)
{
	MHD_destroy_response(resp);
}

/* The document's response, made on its first send and kept with it: MHD
 * counts the references of a response, and the response holds one on the
 * document, so a replaced document's body lives until its last send. */
static struct MHD_Response *doc_response(struct doc *doc)
{
	struct MHD_Response *r;

	if (doc->resp)
		return doc->resp;
	r = MHD_create_response_from_buffer_with_free_callback_cls(
		doc->len, doc->body, doc_sent, doc_ref(doc));
	if (!r) {
		doc_unref(doc);
		return NULL;
	}
	if (!doc_headers(r, doc)) {
		MHD_destroy_response(r);   /* drops its reference */
		return NULL;
	}
	doc->resp = r;
	doc->resp_free = response_free;
	return r;
}

static enum MHD_Result serve_doc(struct MHD_Connection *mc, struct doc *doc,
				 int *status)
{
	struct MHD_Response *r;
	enum MHD_Result ret;

	if (!doc) {
		*status = 503;
		return reply(mc, 503, "feed unavailable\n", NULL);
	}
	if (not_modified(mc, doc)) {
		*status = 304;
		r = MHD_create_response_from_buffer(0, (void *)"",
						    MHD_RESPMEM_PERSISTENT);
		if (!r)
			return MHD_NO;
		if (!doc_headers(r, doc)) {
			MHD_destroy_response(r);
			return MHD_NO;
		}
		ret = MHD_queue_response(mc, 304, r);
		MHD_destroy_response(r);
		return ret;
	}
	r = doc_response(doc);
	if (!r) {
		*status = 500;
		return reply(mc, 500, "internal error\n", NULL);
	}
	*status = 200;
	return MHD_queue_response(mc, 200, r);
}

/* ---------------------------------------------------------------- routes */

static bool is_read(const char *method)
{
	return strcmp(method, "GET") == 0 || strcmp(method, "HEAD") == 0;
}

static enum MHD_Result route_calendar(struct http *h, struct MHD_Connection *mc,
				      int *status)
{
	const char *want = h->a->conf->daemon.calendar_token;
	const char *tok;

	if (want && *want) {
		tok = MHD_lookup_connection_value(mc, MHD_GET_ARGUMENT_KIND,
						  "token");
		if (!tok || !ct_streq(tok, want)) {
			*status = 403;
			return reply(mc, 403, "forbidden\n", NULL);
		}
	}
	return serve_doc(mc, feeds_secretariat(h->a), status);
}

/* /units/ID.ics?token=T.  An unknown unit and a wrong token both answer
 * 404, so the server says nothing about which units exist. */
static enum MHD_Result route_unit(struct http *h, struct MHD_Connection *mc,
				  const char *rest, int *status)
{
	const struct unit *u = NULL;
	const char *tok;
	char id[72], *want = NULL;
	size_t n = strlen(rest);
	bool ok;

	if (n > 4 && n - 4 < sizeof(id) && strcmp(rest + n - 4, ".ics") == 0) {
		memcpy(id, rest, n - 4);
		id[n - 4] = '\0';
		if (valid_id(id))
			u = conf_unit(h->a->conf, id);
	}
	tok = MHD_lookup_connection_value(mc, MHD_GET_ARGUMENT_KIND, "token");
	if (!u || !tok) {
		*status = 404;
		return reply(mc, 404, "not found\n", NULL);
	}
	if (db_unit_token(h->a->db, u->id, &want) < 0) {
		*status = 503;
		return reply(mc, 503, "state store unavailable\n", NULL);
	}
	ok = ct_streq(tok, want);
	free(want);
	if (!ok) {
		*status = 404;
		return reply(mc, 404, "not found\n", NULL);
	}
	return serve_doc(mc, feeds_unit(h->a, u), status);
}

static bool extra_headers(struct MHD_Response *mr, const struct http_resp *r)
{
	for (size_t i = 0; i < sizeof(r->hdr) / sizeof(r->hdr[0]); i++) {
		if (!r->hdr[i].name || !r->hdr[i].value)
			continue;
		if (str_has_crlf(r->hdr[i].value) ||
		    MHD_add_response_header(mr, r->hdr[i].name,
					    r->hdr[i].value) != MHD_YES)
			return false;
	}
	return true;
}

/* The numeric address of the peer, for logs and per-client limits. */
static const char *client_address(struct MHD_Connection *mc, char *out,
				  size_t size)
{
	const union MHD_ConnectionInfo *ci;
	const struct sockaddr *sa;
	socklen_t len;

	ci = MHD_get_connection_info(mc, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
	sa = ci ? ci->client_addr : NULL;
	if (!sa)
		return "?";
	len = sa->sa_family == AF_INET6 ? sizeof(struct sockaddr_in6)
					: sizeof(struct sockaddr_in);
	if (getnameinfo(sa, len, out, (socklen_t)size, NULL, 0,
			NI_NUMERICHOST) != 0)
		return "?";
	return out;
}

/* The routes of the web side's handlers, which answer in a struct
 * http_resp; the feeds and /healthz are served in route() below. */
struct route {
	const char *path;
	const char *allow;       /* "GET, HEAD" or "POST" */
	bool json;               /* a 405 is JSON, else a page */
	void (*fn)(struct app *a, const struct http_req *q,
		   struct http_resp *r);
};

static const struct route routes[] = {
	{ "/", "GET, HEAD", false, page_get },
	{ "/status.json", "GET, HEAD", true, api_status },
	{ "/login", "POST", false, auth_login },
	{ "/logout", "POST", false, auth_logout },
	{ "/mark", "POST", false, page_mark },
};

int http_dispatch(struct app *a, const struct http_req *q,
		  struct http_resp *r)
{
	const char *p = q->path;

	if (!p)
		return 1;
	for (size_t i = 0; i < sizeof(routes) / sizeof(routes[0]); i++) {
		const struct route *rt = &routes[i];
		bool ok;

		if (strcmp(p, rt->path) != 0)
			continue;
		ok = rt->allow[0] == 'G' ? req_is_get(q)
					 : req_method_is(q, rt->allow);
		if (ok)
			rt->fn(a, q, r);
		else
			resp_not_allowed(r, rt->allow, rt->json);
		return 0;
	}
	if (strcmp(p, "/api") == 0 || strncmp(p, "/api/", 5) == 0) {
		api_route(a, q, r, p + 4);
		return 0;
	}
	return 1;
}

static enum MHD_Result route_status(struct http *h, struct MHD_Connection *mc,
				    const char *url, const char *method,
				    struct conn *cs, int *status)
{
	struct http_req q;
	struct http_resp r;
	struct MHD_Response *mr;
	enum MHD_Result ret = MHD_NO;
	const char *ctype;
	size_t len;
	char *body, client[INET6_ADDRSTRLEN];
	int rc;

	memset(&q, 0, sizeof(q));
	q.method = method;       /* for HEAD, MHD drops the body by itself */
	q.path = url;
	q.body = buf_str(&cs->body);
	q.body_len = cs->body.len;
	q.query = cs->query;
	q.client = client_address(mc, client, sizeof(client));
	q.authorization = MHD_lookup_connection_value(mc, MHD_HEADER_KIND,
						      "Authorization");
	q.content_type = MHD_lookup_connection_value(mc, MHD_HEADER_KIND,
						     "Content-Type");
	q.cookie = MHD_lookup_connection_value(mc, MHD_HEADER_KIND, "Cookie");
	memset(&r, 0, sizeof(r));
	r.status = 200;
	buf_init(&r.body);
	rc = http_dispatch(h->a, &q, &r);
	if (rc != 0) {
		*status = rc == 1 ? 404 : 500;
		ret = reply(mc, *status, rc == 1 ? "not found\n"
						 : "internal error\n", NULL);
		goto out;
	}
	*status = r.status >= 100 && r.status <= 599 ? r.status : 500;
	len = r.body.len;
	body = buf_steal(&r.body);
	if (body)
		mr = MHD_create_response_from_buffer_with_free_callback(
			len, body, free);
	else
		mr = MHD_create_response_from_buffer(0, (void *)"",
						     MHD_RESPMEM_PERSISTENT);
	if (!mr) {
		free(body);
		goto out;
	}
	ctype = r.content_type ? r.content_type : "text/plain; charset=utf-8";
	if (!common_headers(mr) ||
	    MHD_add_response_header(mr, "Content-Type", ctype) != MHD_YES ||
	    MHD_add_response_header(mr, "Cache-Control", "no-store") != MHD_YES ||
	    (strncmp(ctype, "text/html", 9) == 0 &&
	     (MHD_add_response_header(mr, "Content-Security-Policy",
				      CSP) != MHD_YES ||
	      MHD_add_response_header(mr, "X-Frame-Options",
				      "DENY") != MHD_YES)) ||
	    (r.location && (str_has_crlf(r.location) ||
	     MHD_add_response_header(mr, "Location",
				     r.location) != MHD_YES)) ||
	    (r.set_cookie && (str_has_crlf(r.set_cookie) ||
	     MHD_add_response_header(mr, "Set-Cookie",
				     r.set_cookie) != MHD_YES)) ||
	    !extra_headers(mr, &r)) {
		MHD_destroy_response(mr);
		*status = 500;
		ret = reply(mc, 500, "internal error\n", NULL);
		goto out;
	}
	ret = MHD_queue_response(mc, (unsigned)*status, mr);
	MHD_destroy_response(mr);
out:
	buf_free(&r.body);
	free(r.location);
	free(r.set_cookie);
	return ret;
}

static enum MHD_Result route(struct http *h, struct MHD_Connection *mc,
			     const char *url, const char *method,
			     struct conn *cs, int *status)
{
	if (strcmp(url, "/calendar.ics") == 0 ||
	    strncmp(url, "/units/", 7) == 0 || strcmp(url, "/healthz") == 0) {
		if (!is_read(method)) {
			*status = 405;
			return reply(mc, 405, "method not allowed\n",
				     "GET, HEAD");
		}
		if (url[1] == 'c')
			return route_calendar(h, mc, status);
		if (url[1] == 'u')
			return route_unit(h, mc, url + 7, status);
		if (db_ok(h->a->db)) {
			*status = 200;
			return reply(mc, 200, "ok\n", NULL);
		}
		*status = 503;
		return reply(mc, 503, "state store unavailable\n", NULL);
	}
	if (!is_read(method) && strcmp(method, "POST") != 0 &&
	    strcmp(method, "DELETE") != 0) {
		*status = 405;
		return reply(mc, 405, "method not allowed\n",
			     "GET, HEAD, POST, DELETE");
	}
	return route_status(h, mc, url, method, cs, status);
}

static void log_request(const char *method, const char *url, int status)
{
	struct buf b;

	buf_init(&b);
	buf_put_escaped(&b, method, 16);
	buf_putc(&b, ' ');
	buf_put_escaped(&b, url, 256);
	log_debug("http: %s -> %d", buf_str(&b), status);
	buf_free(&b);
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *mc,
				  const char *url, const char *method,
				  const char *version, const char *upload,
				  size_t *upload_size, void **con_cls)
{
	struct http *h = cls;
	struct conn *cs = *con_cls;
	enum MHD_Result ret;
	int status = 0;

	(void)version;
	if (!cs) {   /* the URI logger always makes one; be safe anyway */
		cs = xcalloc(1, sizeof(*cs));
		buf_init(&cs->body);
		*con_cls = cs;
	}
	if (!cs->started) {
		const char *cl;

		cs->started = true;
		/* refuse a declared oversized body before reading any */
		cl = MHD_lookup_connection_value(mc, MHD_HEADER_KIND,
						 "Content-Length");
		if (cl && strtoull(cl, NULL, 10) > BODY_MAX) {
			cs->too_big = true;
			log_request(method, url, 413);
			return reply(mc, 413, "request body too large\n", NULL);
		}
		return MHD_YES;
	}
	if (*upload_size > 0) {
		if (!cs->too_big && cs->body.len + *upload_size > BODY_MAX) {
			cs->too_big = true;
			buf_free(&cs->body);
		}
		if (!cs->too_big)
			buf_add(&cs->body, upload, *upload_size);
		*upload_size = 0;
		return MHD_YES;
	}
	if (cs->too_big) {
		log_request(method, url, 413);
		return reply(mc, 413, "request body too large\n", NULL);
	}
	ret = route(h, mc, url, method, cs, &status);
	log_request(method, url, status);
	return ret;
}

static void on_completed(void *cls, struct MHD_Connection *mc, void **con_cls,
			 enum MHD_RequestTerminationCode toe)
{
	struct conn *cs = *con_cls;

	(void)cls;
	(void)mc;
	(void)toe;
	if (!cs)
		return;
	buf_free(&cs->body);
	free(cs->query);
	free(cs);
	*con_cls = NULL;
}

/* Called with the raw request target before MHD decodes it: the only place
 * the query string is seen as sent.  The result becomes the con_cls. */
static void *on_uri(void *cls, const char *uri, struct MHD_Connection *mc)
{
	struct conn *cs = xcalloc(1, sizeof(*cs));
	const char *q = uri ? strchr(uri, '?') : NULL;

	(void)cls;
	(void)mc;
	buf_init(&cs->body);
	if (q)
		cs->query = xstrndup(q + 1, strcspn(q + 1, "#"));
	return cs;
}

__attribute__((format(printf, 2, 0)))
static void on_mhd_log(void *cls, const char *fmt, va_list ap)
{
	char msg[512];
	struct buf b;
	size_t n;

	(void)cls;
	vsnprintf(msg, sizeof(msg), fmt, ap);
	n = strlen(msg);
	while (n > 0 && (msg[n - 1] == '\n' || msg[n - 1] == '\r'))
		msg[--n] = '\0';
	/* the library may quote what a client sent */
	buf_init(&b);
	buf_put_escaped(&b, msg, sizeof(msg));
	log_warn("http: %s", buf_str(&b));
	buf_free(&b);
}

/* ------------------------------------------------------------ event loop */

static void rearm(struct http *h)
{
	struct ev_loop *loop = h->a->loop;
	MHD_UNSIGNED_LONG_LONG ms;

	ev_timer_stop(loop, &h->timer);
	if (MHD_get_timeout(h->d, &ms) == MHD_YES) {
		ev_timer_set(&h->timer, (double)ms / 1000.0, 0.);
		ev_timer_start(loop, &h->timer);
	}
}

static void on_io(struct ev_loop *loop, ev_io *w, int revents)
{
	struct http *h = w->data;

	(void)loop;
	(void)revents;
	MHD_run(h->d);
	rearm(h);
}

static void on_timer(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct http *h = w->data;

	(void)loop;
	(void)revents;
	MHD_run(h->d);
	rearm(h);
}

/* "127.0.0.1:8470", "[::1]:8470", ":8470" or "*:8470" (any address) */
static int split_listen(const char *s, char **host, char **port)
{
	const char *colon;

	if (!s || !*s)
		return -1;
	if (*s == '[') {
		const char *end = strchr(s, ']');

		if (!end || end[1] != ':' || !end[2])
			return -1;
		*host = xstrndup(s + 1, (size_t)(end - s - 1));
		*port = xstrdup(end + 2);
		return 0;
	}
	colon = strrchr(s, ':');
	if (!colon || !colon[1] || strchr(s, ':') != colon)
		return -1;
	if (colon == s || (colon == s + 1 && *s == '*'))
		*host = NULL;
	else
		*host = xstrndup(s, (size_t)(colon - s));
	*port = xstrdup(colon + 1);
	return 0;
}

static int listen_on(const char *spec, char **err)
{
	struct addrinfo hints, *res = NULL, *ai;
	char *host = NULL, *port = NULL;
	int fd = -1, rc, one = 1, saved = 0;

	if (split_listen(spec, &host, &port) < 0) {
		*err = xasprintf("listen = %s: expected HOST:PORT",
				 spec ? spec : "");
		return -1;
	}
	memset(&hints, 0, sizeof(hints));
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
	rc = getaddrinfo(host, port, &hints, &res);
	if (rc != 0) {
		*err = xasprintf("listen = %s: %s", spec, gai_strerror(rc));
		goto out;
	}
	for (ai = res; ai; ai = ai->ai_next) {
		fd = socket(ai->ai_family,
			    ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC,
			    ai->ai_protocol);
		if (fd < 0) {
			saved = errno;
			continue;
		}
		setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
		if (ai->ai_family == AF_INET6)
			setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one,
				   sizeof(one));
		if (bind(fd, ai->ai_addr, ai->ai_addrlen) == 0 &&
		    listen(fd, 128) == 0)
			break;
		saved = errno;
		close(fd);
		fd = -1;
	}
	if (fd < 0)
		*err = xasprintf("listen = %s: %s", spec,
				 strerror(saved ? saved : EADDRNOTAVAIL));
out:
	if (res)
		freeaddrinfo(res);
	free(host);
	free(port);
	return fd;
}

struct http *http_start(struct app *a, char **err)
{
	const union MHD_DaemonInfo *info;
	struct http *h;
	char *why = NULL;
	int fd;

	fd = listen_on(a->conf->daemon.listen, &why);
	if (fd < 0) {
		if (err)
			*err = why;
		else
			free(why);
		return NULL;
	}
	h = xcalloc(1, sizeof(*h));
	h->a = a;
	h->d = MHD_start_daemon(MHD_USE_EPOLL | MHD_USE_ERROR_LOG, 0,
		NULL, NULL, on_request, h,
		/* first, so that MHD logs nothing to stderr on its own */
		MHD_OPTION_EXTERNAL_LOGGER, on_mhd_log, h,
		MHD_OPTION_LISTEN_SOCKET, (MHD_socket)fd,
		MHD_OPTION_CONNECTION_LIMIT, (unsigned int)CONN_LIMIT,
		MHD_OPTION_PER_IP_CONNECTION_LIMIT, (unsigned int)PER_IP_LIMIT,
		MHD_OPTION_CONNECTION_TIMEOUT, (unsigned int)CONN_TIMEOUT,
		MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)CONN_MEMORY,
		MHD_OPTION_NOTIFY_COMPLETED, on_completed, h,
		MHD_OPTION_URI_LOG_CALLBACK, on_uri, h,
		MHD_OPTION_END);
	if (!h->d) {
		close(fd);
		free(h);
		if (err)
			*err = xasprintf("listen = %s: the HTTP server did not"
					 " start", a->conf->daemon.listen);
		return NULL;
	}
	info = MHD_get_daemon_info(h->d, MHD_DAEMON_INFO_EPOLL_FD);
	if (!info) {
		MHD_stop_daemon(h->d);
		free(h);
		if (err)
			*err = xstrdup("HTTP server: no epoll descriptor");
		return NULL;
	}
	ev_io_init(&h->io, on_io, info->epoll_fd, EV_READ);
	h->io.data = h;
	ev_io_start(a->loop, &h->io);
	ev_init(&h->timer, on_timer);
	h->timer.data = h;
	rearm(h);
	log_info("http: listening on %s", a->conf->daemon.listen);
	return h;
}

void http_stop(struct http *h)
{
	MHD_socket fd;

	if (!h)
		return;
	ev_io_stop(h->a->loop, &h->io);
	ev_timer_stop(h->a->loop, &h->timer);
	/* quiesce hands the listening socket back to us to close */
	fd = MHD_quiesce_daemon(h->d);
	MHD_stop_daemon(h->d);
	if (fd != MHD_INVALID_SOCKET)
		close(fd);
	free(h);
}
