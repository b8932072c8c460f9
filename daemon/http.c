/*
 * http.c - the HTTP server: libmicrohttpd driven by the libev loop (no
 * thread of its own), the route table, and every decision about what goes
 * on the wire (status, headers, caching).  The views hand it bytes (a
 * struct doc, or the body of a struct http_resp); nothing else here knows
 * of MHD.
 *
 * MHD runs in "external epoll" mode: one ev_io watches its epoll fd and one
 * ev_timer is re-armed after every MHD_run.  The timer is armed at most a
 * second ahead while any connection is open (and for one run after the
 * last one closed): at the connection limit MHD takes its listening socket
 * out of epoll and puts it back only inside MHD_run, so a burst that fills
 * every slot and then closes would otherwise leave the server deaf for
 * good.  With nothing open it follows MHD's own timeout: no idle wake-ups.
 *
 * The accept policy is ours, not MHD's: a per-address count kept from the
 * connection notifications, refusals counted and logged once a minute
 * (MHD would log one line per refused connection).  MHD's inactivity
 * timeout restarts with every byte received, so a client that dribbles its
 * headers would keep a slot for ever: each connection also has a deadline
 * for its whole request, kept in a list ordered by deadline (all deadlines
 * are now + the same constant, so appending keeps it sorted).
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
#define CONN_TIMEOUT 30              /* seconds of inactivity */
#define REQUEST_TIMEOUT 10.0         /* seconds to send a whole request */
/* MHD's per-connection pool holds the request headers and the answer's
 * header lines (bodies are ours).  libmicrohttpd 0.9.75 mmaps a pool over
 * 32 KB on every connection and clears the whole pool on every keep-alive
 * request: 16 KB keeps both cheap and still takes 12 KB of headers. */
#define CONN_MEMORY (16 * 1024)
#define RUN_CAP 1.0                  /* seconds, while connections are open */
#define REFUSED_LOG_EVERY 60.0       /* seconds between refusal reports */
#define IP_BUCKETS 256

#define CSP "default-src 'none'; style-src 'unsafe-inline'; img-src 'self' data:;" \
	" form-action 'self'; frame-ancestors 'none'; base-uri 'none'"

/* connections open from one client address */
struct ipcount {
	struct ipcount *next;
	unsigned char addr[16];  /* IPv4 as v4-mapped IPv6 */
	unsigned n;
};

/* per connection (MHD's socket context) */
struct sock {
	struct sock *prev, *next;   /* in http.waiting while waiting */
	struct ipcount *ip;
	double deadline;            /* monotonic seconds */
	MHD_socket fd;
	bool waiting;               /* the request is not all in yet */
	bool cut;                   /* shut down for being too slow */
};

struct http {
	struct app *a;
	struct MHD_Daemon *d;
	ev_io io;
	ev_timer timer;
	unsigned max_conns, per_ip;
	unsigned nconns;            /* open connections (notifications) */
	bool had_conns;             /* some were open after the last run */
	struct sock *wait_head, *wait_tail;
	struct ipcount *ips[IP_BUCKETS];
	/* refusals and cuts since the last report */
	unsigned long refused_ip, refused_full, cut_slow, client_errors;
	unsigned cut_open;          /* cut, not closed yet */
	unsigned cut_pending;       /* cut, MHD's closing line still to come */
	double reported;            /* monotonic time of the last report */
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

/* The headers of a shared document, chosen by what it is.  The status
 * views are revalidated on every use (no-cache): they change with every
 * submission; the feeds may be kept a few minutes by calendar clients. */
static bool doc_headers(struct MHD_Response *r, const struct doc *doc)
{
	char date[40], serial[24];
	bool cal = strcmp(doc->type, DOC_CALENDAR) == 0;
	bool html = strcmp(doc->type, DOC_HTML) == 0;

	if (doc->modified > 0) {
		http_date(doc->modified, date, sizeof(date));
		if (MHD_add_response_header(r, "Last-Modified",
					    date) != MHD_YES)
			return false;
	}
	/* which build this is: the tests see that views are not rebuilt
	 * per request */
	if (doc->serial > 0) {
		snprintf(serial, sizeof(serial), "%lu", doc->serial);
		if (MHD_add_response_header(r, "X-Cutoffd-Built",
					    serial) != MHD_YES)
			return false;
	}
	if (html &&
	    (MHD_add_response_header(r, "Content-Security-Policy",
				     CSP) != MHD_YES ||
	     MHD_add_response_header(r, "X-Frame-Options", "DENY") != MHD_YES))
		return false;
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

	if (!doc) {
		*status = 503;
		return reply(mc, 503, "feed unavailable\n", NULL);
	}
	if (not_modified(mc, doc)) {
		*status = 304;
		/* made once per document, like the full response */
		if (!doc->resp304) {
			r = MHD_create_response_from_buffer(
				0, (void *)"", MHD_RESPMEM_PERSISTENT);
			if (!r)
				return MHD_NO;
			if (!doc_headers(r, doc)) {
				MHD_destroy_response(r);
				return MHD_NO;
			}
			doc->resp304 = r;
			doc->resp_free = response_free;
		}
		return MHD_queue_response(mc, 304, doc->resp304);
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
	const char *tok, *have;
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
	/* held in memory since the last start or reload */
	have = feeds_token(h->a->feeds, h->a->conf, u);
	if (have) {
		ok = ct_streq(tok, have);
	} else {
		if (db_unit_token(h->a->db, u->id, &want) < 0) {
			*status = 503;
			return reply(mc, 503, "state store unavailable\n",
				     NULL);
		}
		ok = ct_streq(tok, want);
		free(want);
	}
	if (!ok) {
		*status = 404;
		return reply(mc, 404, "not found\n", NULL);
	}
	return serve_doc(mc, feeds_unit(h->a, u), status);
}

static bool retry_after(struct MHD_Response *mr, int seconds)
{
	char v[16];

	snprintf(v, sizeof(v), "%d", seconds);
	return MHD_add_response_header(mr, "Retry-After", v) == MHD_YES;
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
	{ "/status.csv", "GET, HEAD", true, api_status_csv },
	{ "/login", "POST", false, auth_login },
	{ "/logout", "POST", false, auth_logout },
	{ "/mark", "POST", false, page_mark },
	{ "/undo", "POST", false, page_undo },
	{ "/extend", "POST", false, page_extend },
	{ "/proposal", "POST", false, page_proposal },
	{ "/metrics", "GET, HEAD", false, metrics_get },
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
	if (strncmp(p, "/confirm/", 9) == 0) {
		link_route(a, q, r, p + 8);
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
	q.host = MHD_lookup_connection_value(mc, MHD_HEADER_KIND, "Host");
	q.origin = MHD_lookup_connection_value(mc, MHD_HEADER_KIND, "Origin");
	q.sec_fetch_site = MHD_lookup_connection_value(mc, MHD_HEADER_KIND,
						       "Sec-Fetch-Site");
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
	if (r.doc) {
		ret = serve_doc(mc, r.doc, status);
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
	    /* a spreadsheet: saved under a name, opened by Excel/Calc */
	    (strncmp(ctype, "text/csv", 8) == 0 &&
	     MHD_add_response_header(mr, "Content-Disposition",
				     "attachment; filename=\"status.csv\"")
	     != MHD_YES) ||
	    (r.location && (str_has_crlf(r.location) ||
	     MHD_add_response_header(mr, "Location",
				     r.location) != MHD_YES)) ||
	    (r.set_cookie && (str_has_crlf(r.set_cookie) ||
	     MHD_add_response_header(mr, "Set-Cookie",
				     r.set_cookie) != MHD_YES)) ||
	    (r.retry_after > 0 && !retry_after(mr, r.retry_after)) ||
	    !extra_headers(mr, &r)) {
		MHD_destroy_response(mr);
		*status = 500;
		ret = reply(mc, 500, "internal error\n", NULL);
		goto out;
	}
	ret = MHD_queue_response(mc, (unsigned)*status, mr);
	MHD_destroy_response(mr);
out:
	doc_unref(r.doc);
	buf_free(&r.body);
	free(r.location);
	free(r.set_cookie);
	return ret;
}

/* 200 ok, or 503 and the one line db_health gives as the reason: a real
 * read of the store, not SELECT 1 (see db.c). */
static enum MHD_Result route_health(struct http *h, struct MHD_Connection *mc,
				    int *status)
{
	char why[256], line[264], im[200];

	if (db_health(h->a->db, why, sizeof(why)) == 0) {
		/* the store decides; the mailbox is a detail on the next
		 * line (a dead IMAP server stalls nothing else) */
		if (imap_health(h->a->imap, im, sizeof(im)) != NULL) {
			for (char *p = im; *p != '\0'; p++)
				if ((unsigned char)*p < 0x20 || *p == 0x7f)
					*p = '?';
			snprintf(line, sizeof(line), "ok\n%s\n", im);
			*status = 200;
			return reply(mc, 200, line, NULL);
		}
		*status = 200;
		return reply(mc, 200, "ok\n", NULL);
	}
	snprintf(line, sizeof(line), "%s\n", why);
	*status = 503;
	return reply(mc, 503, line, NULL);
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
		return route_health(h, mc, status);
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

	if (!log_enabled(LOG_DEBUG))   /* a request's work: keep it small */
		return;
	buf_init(&b);
	buf_put_escaped(&b, method, 16);
	buf_putc(&b, ' ');
	if (strncmp(url, "/confirm/", 9) == 0 && strrchr(url, '.') != NULL) {
		/* a confirmation link's MAC is a capability: not in logs */
		char *head = xstrndup(url, (size_t)(strrchr(url, '.') - url));

		buf_put_escaped(&b, head, 256);
		buf_puts(&b, ".<mac>");
		free(head);
	} else {
		buf_put_escaped(&b, url, 256);
	}
	log_debug("http: %s -> %d", buf_str(&b), status);
	buf_free(&b);
}

struct sock;
static struct sock *sock_of(struct MHD_Connection *mc);
static void wait_unlink(struct http *h, struct sock *s);
static void wait_start(struct http *h, struct sock *s);

/* The whole request is in: its deadline no longer applies. */
static void settle(struct http *h, struct MHD_Connection *mc)
{
	struct sock *s = sock_of(mc);

	if (s)
		wait_unlink(h, s);
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
			settle(h, mc);
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
	settle(h, mc);
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
	struct sock *s = sock_of(mc);

	(void)toe;
	/* the answer is out: the next request has its own deadline */
	if (s)
		wait_start(cls, s);
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

/* libmicrohttpd 0.9.75's messages about one connection that its client
 * broke: closed early, malformed, gone while we answered. */
static bool client_caused(const char *msg)
{
	static const char *const prefixes[] = {
		"Socket has been disconnected",
		"Connection socket is closed",
		"Connection was closed by remote side",
		"Failed to send",
		"Error processing request",
		"Received HTTP/1.1 request without",
		"Too large value of 'Content-Length'",
		"Failed to parse `Content-Length'",
	};

	for (size_t i = 0; i < sizeof(prefixes) / sizeof(prefixes[0]); i++)
		if (strncmp(msg, prefixes[i], strlen(prefixes[i])) == 0)
			return true;
	return false;
}

__attribute__((format(printf, 2, 0)))
static void on_mhd_log(void *cls, const char *fmt, va_list ap)
{
	struct http *h = cls;
	char msg[512];
	struct buf b;
	size_t n;

	vsnprintf(msg, sizeof(msg), fmt, ap);
	/* one per connection turned away at the limit: counted instead */
	if (strncmp(msg, "Server reached connection limit", 31) == 0) {
		h->refused_full++;
		return;
	}
	n = strlen(msg);
	while (n > 0 && (msg[n - 1] == '\n' || msg[n - 1] == '\r'))
		msg[--n] = '\0';
	/* the library may quote what a client sent */
	buf_init(&b);
	buf_put_escaped(&b, msg, sizeof(msg));
	if (client_caused(msg)) {
		/* any client can cause these at will: a count a minute;
		 * those we shut down ourselves were counted already */
		if (h->cut_pending > 0)
			h->cut_pending--;
		else
			h->client_errors++;
		log_debug("http: %s", buf_str(&b));
	} else {
		log_warn("http: %s", buf_str(&b));
	}
	buf_free(&b);
}

/* --------------------------------------------------------- accept policy */

static double mono(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* the address as 16 bytes; false for what is neither IPv4 nor IPv6 */
static bool addr_key(const struct sockaddr *sa, unsigned char out[16])
{
	if (!sa)
		return false;
	if (sa->sa_family == AF_INET) {
		const struct sockaddr_in *in = (const struct sockaddr_in *)sa;

		memset(out, 0, 10);
		out[10] = out[11] = 0xff;
		memcpy(out + 12, &in->sin_addr, 4);
		return true;
	}
	if (sa->sa_family == AF_INET6) {
		memcpy(out, &((const struct sockaddr_in6 *)sa)->sin6_addr, 16);
		return true;
	}
	return false;
}

static unsigned addr_bucket(const unsigned char k[16])
{
	uint32_t h = 2166136261u;

	for (int i = 0; i < 16; i++)
		h = (h ^ k[i]) * 16777619u;
	return h % IP_BUCKETS;
}

static struct ipcount *ip_find(struct http *h, const unsigned char k[16],
			       bool create)
{
	struct ipcount **pp = &h->ips[addr_bucket(k)], *e;

	for (e = *pp; e; e = e->next)
		if (memcmp(e->addr, k, 16) == 0)
			return e;
	if (!create)
		return NULL;
	e = xcalloc(1, sizeof(*e));
	memcpy(e->addr, k, 16);
	e->next = *pp;
	*pp = e;
	return e;
}

static void ip_release(struct http *h, struct ipcount *e)
{
	struct ipcount **pp;

	if (!e || --e->n > 0)
		return;
	for (pp = &h->ips[addr_bucket(e->addr)]; *pp; pp = &(*pp)->next)
		if (*pp == e) {
			*pp = e->next;
			free(e);
			return;
		}
}

/* One line a minute at most, however many were refused or cut. */
static void report(struct http *h, bool force)
{
	double now = mono();
	struct buf b;

	if (!h->refused_ip && !h->refused_full && !h->cut_slow &&
	    !h->client_errors)
		return;
	if (!force && now - h->reported < REFUSED_LOG_EVERY)
		return;
	buf_init(&b);
	if (h->refused_ip)
		buf_printf(&b, "; refused %lu connections over "
			   "max_connections_per_ip = %u", h->refused_ip,
			   h->per_ip);
	if (h->refused_full)
		buf_printf(&b, "; refused %lu connections at max_connections"
			   " = %u", h->refused_full, h->max_conns);
	if (h->cut_slow)
		buf_printf(&b, "; closed %lu connections that sent no whole "
			   "request within %.0f s", h->cut_slow,
			   REQUEST_TIMEOUT);
	if (h->client_errors)
		buf_printf(&b, "; %lu connections broken by their clients"
			   " (details with -v)", h->client_errors);
	log_warn("http: %s", buf_str(&b) + 2);
	buf_free(&b);
	h->refused_ip = h->refused_full = h->cut_slow = h->client_errors = 0;
	h->reported = now;
}

/* Called by MHD for every accepted socket before it becomes a connection;
 * the count is exact because the STARTED notification follows at once, in
 * the same call, on this single thread. */
static enum MHD_Result on_accept(void *cls, const struct sockaddr *addr,
				 socklen_t addrlen)
{
	struct http *h = cls;
	unsigned char k[16];
	struct ipcount *e;

	(void)addrlen;
	/* read at every accept, so that a reload changes it at once */
	h->per_ip = h->a->conf->daemon.max_connections_per_ip ?
		    h->a->conf->daemon.max_connections_per_ip : h->max_conns;
	if (!addr_key(addr, k))
		return MHD_YES;
	e = ip_find(h, k, false);
	if (e && e->n >= h->per_ip) {
		h->refused_ip++;
		report(h, false);
		return MHD_NO;
	}
	return MHD_YES;
}

static void wait_unlink(struct http *h, struct sock *s)
{
	if (!s->waiting)
		return;
	if (s->prev)
		s->prev->next = s->next;
	else
		h->wait_head = s->next;
	if (s->next)
		s->next->prev = s->prev;
	else
		h->wait_tail = s->prev;
	s->prev = s->next = NULL;
	s->waiting = false;
}

/* The next request is due within REQUEST_TIMEOUT from now. */
static void wait_start(struct http *h, struct sock *s)
{
	wait_unlink(h, s);
	if (s->cut)
		return;
	s->deadline = mono() + REQUEST_TIMEOUT;
	s->waiting = true;
	s->prev = h->wait_tail;
	s->next = NULL;
	if (h->wait_tail)
		h->wait_tail->next = s;
	else
		h->wait_head = s;
	h->wait_tail = s;
}

static struct sock *sock_of(struct MHD_Connection *mc)
{
	const union MHD_ConnectionInfo *ci;

	ci = MHD_get_connection_info(mc, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
	return ci ? ci->socket_context : NULL;
}

static void on_connection(void *cls, struct MHD_Connection *mc,
			  void **socket_context,
			  enum MHD_ConnectionNotificationCode code)
{
	struct http *h = cls;
	struct sock *s = *socket_context;

	if (code == MHD_CONNECTION_NOTIFY_STARTED) {
		const union MHD_ConnectionInfo *ci;
		unsigned char k[16];

		s = xcalloc(1, sizeof(*s));
		ci = MHD_get_connection_info(mc,
					     MHD_CONNECTION_INFO_CONNECTION_FD);
		s->fd = ci ? ci->connect_fd : MHD_INVALID_SOCKET;
		ci = MHD_get_connection_info(mc,
					     MHD_CONNECTION_INFO_CLIENT_ADDRESS);
		if (ci && addr_key(ci->client_addr, k)) {
			s->ip = ip_find(h, k, true);
			s->ip->n++;
		}
		h->nconns++;
		wait_start(h, s);
		*socket_context = s;
		return;
	}
	if (!s)
		return;
	/* MHD's line about a connection comes before this notification:
	 * with every cut one gone, none is still to come */
	if (s->cut && h->cut_open > 0 && --h->cut_open == 0)
		h->cut_pending = 0;
	wait_unlink(h, s);
	ip_release(h, s->ip);
	if (h->nconns > 0)
		h->nconns--;
	free(s);
	*socket_context = NULL;
}

/* Shuts down the connections past their deadline; MHD then reads the end
 * of the stream and closes them the usual way (notifications included). */
static void cut_slow(struct http *h)
{
	double now = mono();

	while (h->wait_head && h->wait_head->deadline <= now) {
		struct sock *s = h->wait_head;

		wait_unlink(h, s);
		s->cut = true;
		if (s->fd != MHD_INVALID_SOCKET) {
			shutdown(s->fd, SHUT_RDWR);
			h->cut_pending++;
			h->cut_open++;
		}
		h->cut_slow++;
	}
}

/* ------------------------------------------------------------ event loop */

static void rearm(struct http *h)
{
	struct ev_loop *loop = h->a->loop;
	MHD_UNSIGNED_LONG_LONG ms;
	double t = -1, now = mono();

	ev_timer_stop(loop, &h->timer);
	if (MHD_get_timeout(h->d, &ms) == MHD_YES)
		t = (double)ms / 1000.0;
	/* see the top of the file: never rely on MHD's answer alone while
	 * connections come and go */
	if ((h->nconns > 0 || h->had_conns) && (t < 0 || t > RUN_CAP))
		t = RUN_CAP;
	h->had_conns = h->nconns > 0;
	if (h->wait_head) {
		double w = h->wait_head->deadline - now;

		if (w < 0)
			w = 0;
		if (t < 0 || w < t)
			t = w;
	}
	if (h->refused_ip || h->refused_full || h->cut_slow ||
	    h->client_errors) {
		double r = h->reported + REFUSED_LOG_EVERY - now;

		if (r < 0)
			r = 0;
		if (t < 0 || r < t)
			t = r;
	}
	if (t >= 0) {
		ev_timer_set(&h->timer, t, 0.);
		ev_timer_start(loop, &h->timer);
	}
}

static void run(struct http *h)
{
	MHD_run(h->d);
	cut_slow(h);
	report(h, false);
	rearm(h);
}

static void on_io(struct ev_loop *loop, ev_io *w, int revents)
{
	(void)loop;
	(void)revents;
	run(w->data);
}

static void on_timer(struct ev_loop *loop, ev_timer *w, int revents)
{
	(void)loop;
	(void)revents;
	run(w->data);
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
		    listen(fd, 511) == 0)   /* as nginx: bursts wait here */
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
	h->max_conns = a->conf->daemon.max_connections ?
		       a->conf->daemon.max_connections : 512;
	h->per_ip = a->conf->daemon.max_connections_per_ip ?
		    a->conf->daemon.max_connections_per_ip : h->max_conns;
	h->reported = mono() - REFUSED_LOG_EVERY;
	h->d = MHD_start_daemon(MHD_USE_EPOLL | MHD_USE_ERROR_LOG, 0,
		on_accept, h, on_request, h,
		/* first, so that MHD logs nothing to stderr on its own */
		MHD_OPTION_EXTERNAL_LOGGER, on_mhd_log, h,
		MHD_OPTION_LISTEN_SOCKET, (MHD_socket)fd,
		/* at the limit MHD stops accepting: clients wait in the
		 * listen queue rather than being turned away */
		MHD_OPTION_CONNECTION_LIMIT, h->max_conns,
		MHD_OPTION_CONNECTION_TIMEOUT, (unsigned int)CONN_TIMEOUT,
		MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)CONN_MEMORY,
		MHD_OPTION_NOTIFY_COMPLETED, on_completed, h,
		MHD_OPTION_NOTIFY_CONNECTION, on_connection, h,
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
	report(h, true);
	/* quiesce hands the listening socket back to us to close */
	fd = MHD_quiesce_daemon(h->d);
	MHD_stop_daemon(h->d);
	if (fd != MHD_INVALID_SOCKET)
		close(fd);
	/* the CLOSED notifications released every count; be safe anyway */
	for (size_t i = 0; i < IP_BUCKETS; i++)
		while (h->ips[i]) {
			struct ipcount *e = h->ips[i];

			h->ips[i] = e->next;
			free(e);
		}
	free(h);
}
