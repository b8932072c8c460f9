/*
 * auth.c - who may do what on the web side: the admin token (Bearer for
 * the API; a session cookie and a CSRF token per session for the page's
 * forms), the throttle on wrong admin tokens, and the calendar token that
 * guards reading the status when set: then the page and /status.json need
 * it too (?token=), or an admin session or Bearer token, since they show
 * what the secretariat feed shows.
 *
 * Sessions live in this process's memory: a logout ends one for good (the
 * old cookie opens nothing), a changed admin token ends them all, and a
 * restart logs every admin out (they log in again; nothing else is lost).
 * The cookie is 32 random bytes; only its SHA-256 is kept.
 *
 * Several admins: [daemon] admin_token_file is the admin "admin", each
 * [admin ID] section one more with a token of its own.  A Bearer token or
 * a session says which admin acts; that id is the actor the ledger
 * records.  A session holds its admin's id and a fingerprint of that
 * admin's token, so changing one admin's token ends only their sessions.
 *
 * Wrong admin tokens are counted per client address (throttle.c: a few
 * free, then a doubling wait up to an hour) during which every attempt
 * from there, right or wrong, gets 429 with Retry-After.
 * Behind a reverse proxy every client has the proxy's address: a guesser
 * then delays the real admin too, which is the price of not trusting
 * X-Forwarded-For.
 */
#include "cutoffd.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>

#define DAY 86400
#define SESSION_TTL (7 * DAY)
#define SESSIONS_MAX 256
#define THROTTLE_SLOTS 1024         /* client addresses remembered */

struct session {
	bool used;
	unsigned char id[32];        /* SHA-256 of the cookie's value */
	unsigned char admin[32];     /* SHA-256 of the admin token then */
	char who[72];                /* the admin's id */
	char csrf[65];
	tstamp expires;              /* daemon clock */
};


struct auth {
	struct session s[SESSIONS_MAX];
	struct throttle *thr;        /* wrong admin tokens */
};

struct auth *
auth_new(void)
{
	struct auth *au = xcalloc(1, sizeof(struct auth));

	au->thr = throttle_new(THROTTLE_SLOTS);
	return au;
}

void
auth_free(struct auth *au)
{
	if (au == NULL)
		return;
	throttle_free(au->thr);
	OPENSSL_cleanse(au, sizeof(*au));
	free(au);
}

static void
sha256(const char *s, unsigned char out[32])
{
	unsigned int n = 32;

	if (EVP_Digest(s, strlen(s), out, &n, EVP_sha256(), NULL) != 1)
		fatal("SHA-256 unavailable");
}

/* ------------------------------------------------------------ throttle */

/* Seconds this client must still wait before trying a token, 0 if none. */
static int
login_wait(struct app *a, const struct http_req *q)
{
	return a->auth != NULL ? throttle_wait(a->auth->thr, q->client) : 0;
}

/* A wrong admin token from q's client: logged (with the address, which
 * getnameinfo made numeric, escaped all the same), counted, and a wait
 * set once the free ones are used up. */
static void
login_fail(struct app *a, const struct http_req *q, const char *what)
{
	double wait = 0;
	unsigned fails;
	struct buf b;

	fails = throttle_fail(a->auth != NULL ? a->auth->thr : NULL, q->client,
			      &wait);
	buf_init(&b);
	buf_put_escaped(&b, q->client != NULL ? q->client : "?", 64);
	if (wait > 0)
		log_warn("%s: wrong admin token from %s (%u in a row); its "
			 "next attempt waits %.0f s", what, buf_str(&b),
			 fails, wait);
	else
		log_warn("%s: wrong admin token from %s", what, buf_str(&b));
	buf_free(&b);
}

static void
login_ok(struct app *a, const struct http_req *q)
{
	if (a->auth != NULL)
		throttle_ok(a->auth->thr, q->client);
}

/* 429 with Retry-After when the client must wait, as JSON or a page */
static bool
throttled(struct app *a, const struct http_req *q, struct http_resp *r,
	  bool json)
{
	int wait = login_wait(a, q);

	if (wait <= 0)
		return false;
	if (json)
		resp_error(r, 429, "too many wrong admin tokens from this "
			   "address; retry later");
	else
		resp_html_msg(r, 429, "Nhập sai mã quản trị quá nhiều lần. "
			      "Hãy thử lại sau ít phút.");
	r->retry_after = wait;
	return true;
}

/* The default admin (admin_token_file) is named this in the history. */
#define DEFAULT_ADMIN "admin"

/* The token of admin id, NULL when there is none. */
static const char *
token_of(const struct app *a, const char *id)
{
	const struct conf *c = a->conf;
	const char *t = c->daemon.admin_token;

	if (strcmp(id, DEFAULT_ADMIN) == 0 && t != NULL && t[0] != '\0')
		return t;
	for (size_t i = 0; i < c->nadmins; i++)
		if (strcmp(c->admins[i].id, id) == 0 &&
		    c->admins[i].token != NULL)
			return c->admins[i].token;
	return NULL;
}

/* Whose token tok is: the admin's id, or NULL.  Every token is compared
 * (in constant time), so the answer's timing says nothing about which. */
static const char *
admin_of_token(const struct app *a, const char *tok)
{
	const struct conf *c = a->conf;
	const char *who = NULL, *t = c->daemon.admin_token;

	if (t != NULL && t[0] != '\0' && ct_streq(tok, t))
		who = DEFAULT_ADMIN;
	for (size_t i = 0; i < c->nadmins; i++)
		if (c->admins[i].token != NULL &&
		    ct_streq(tok, c->admins[i].token) && who == NULL)
			who = c->admins[i].id;
	return who;
}

const char *
auth_admin_token(const struct app *a)
{
	const struct conf *c = a->conf;
	const char *t = c->daemon.admin_token;

	if (t != NULL && t[0] != '\0')
		return t;
	for (size_t i = 0; i < c->nadmins; i++)
		if (c->admins[i].token != NULL)
			return c->admins[i].token;
	return NULL;
}

/* the admin whose Bearer token q carries, or NULL */
static const char *
bearer_admin(const struct app *a, const struct http_req *q)
{
	char tok[512];

	if (auth_admin_token(a) == NULL || !req_bearer(q, tok, sizeof(tok)))
		return NULL;
	return admin_of_token(a, tok);
}

static bool
bearer_ok(const struct app *a, const struct http_req *q)
{
	return bearer_admin(a, q) != NULL;
}

/* 0 when the request carries the admin token, else r is filled.  Only a
 * token that was sent and is wrong counts against the client: a request
 * without one is not a guess. */
int
auth_api(struct app *a, const struct http_req *q, struct http_resp *r)
{
	char tok[512];

	if (auth_admin_token(a) == NULL) {
		resp_error(r, 403, "API disabled: no admin token configured");
		return -1;
	}
	if (throttled(a, q, r, true))
		return -1;
	if (!bearer_ok(a, q)) {
		if (req_bearer(q, tok, sizeof(tok)))
			login_fail(a, q, "api");
		resp_error(r, 401, "missing or wrong admin token");
		resp_hdr(r, "WWW-Authenticate", "Bearer realm=\"cutoffd\"");
		return -1;
	}
	login_ok(a, q);
	return 0;
}

/* ------------------------------------------------------------ sessions */

/* The value of q's session cookie into out, or false. */
static bool
cookie_value(const struct http_req *q, char *out, size_t size)
{
	const char *p = q->cookie;

	while (p != NULL && *p != '\0') {
		size_t n;

		while (*p == ' ' || *p == ';')
			p++;
		n = strcspn(p, ";");
		if (n > 8 && strncmp(p, "session=", 8) == 0) {
			if (n - 8 >= size)
				return false;
			memcpy(out, p + 8, n - 8);
			out[n - 8] = '\0';
			return true;
		}
		p += n;
	}
	return false;
}

/* q's open session, or NULL: known, not expired, opened with the token
 * its admin still has. */
static struct session *
session_find(struct app *a, const struct http_req *q, tstamp now)
{
	const char *admin;
	unsigned char id[32], fp[32];
	char val[160];

	if (a->auth == NULL || auth_admin_token(a) == NULL ||
	    !cookie_value(q, val, sizeof(val)) || strlen(val) != 64)
		return NULL;
	sha256(val, id);
	for (size_t i = 0; i < SESSIONS_MAX; i++) {
		struct session *s = &a->auth->s[i];

		/* hashes of random values: comparing them leaks nothing */
		if (!s->used || memcmp(s->id, id, sizeof(id)) != 0)
			continue;
		admin = token_of(a, s->who);
		if (admin != NULL)
			sha256(admin, fp);
		if (s->expires <= now || admin == NULL ||
		    memcmp(s->admin, fp, sizeof(fp)) != 0) {
			memset(s, 0, sizeof(*s));
			return NULL;
		}
		return s;
	}
	return NULL;
}

/* A new session; its cookie value (64 hex) into cookie.  When the table
 * is full, the session closest to its end makes room. */
static int
session_open(struct app *a, tstamp now, const char *who, char cookie[65])
{
	struct session *s = NULL;

	for (size_t i = 0; i < SESSIONS_MAX; i++) {
		struct session *x = &a->auth->s[i];

		if (!x->used || x->expires <= now) {
			s = x;
			break;
		}
		if (s == NULL || x->expires < s->expires)
			s = x;
	}
	memset(s, 0, sizeof(*s));
	if (random_hex(cookie, 32) < 0 || random_hex(s->csrf, 32) < 0)
		return -1;
	sha256(cookie, s->id);
	sha256(token_of(a, who), s->admin);
	snprintf(s->who, sizeof(s->who), "%s", who);
	s->expires = now + SESSION_TTL;
	s->used = true;
	return 0;
}

const char *
auth_actor(struct app *a, const struct http_req *q, tstamp now)
{
	const char *who = bearer_admin(a, q);
	struct session *s;

	if (who != NULL)
		return who;
	s = session_find(a, q, now);
	/* the id as the configuration holds it: it outlives the request */
	return s != NULL ? (strcmp(s->who, DEFAULT_ADMIN) == 0 ? DEFAULT_ADMIN
			    : admin_of_token(a, token_of(a, s->who))) : NULL;
}

bool
auth_session(struct app *a, const struct http_req *q, tstamp now,
	     char csrf[65])
{
	struct session *s = session_find(a, q, now);

	if (s == NULL)
		return false;
	if (csrf != NULL)
		memcpy(csrf, s->csrf, 65);
	return true;
}

/* May this request read the status?  See the comment at the top. */
bool
auth_read_allowed(struct app *a, const struct http_req *q,
		  const struct form *args, tstamp now)
{
	const char *cal = a->conf->daemon.calendar_token, *tok;

	if (cal == NULL || cal[0] == '\0')
		return true;
	tok = form_get(args, "token");
	if (tok != NULL && ct_streq(tok, cal))
		return true;
	return bearer_ok(a, q) || session_find(a, q, now) != NULL;
}
int
auth_form(struct app *a, const struct http_req *q, const struct form *fm,
	  tstamp now, struct http_resp *r)
{
	struct session *s = session_find(a, q, now);
	const char *csrf = form_get(fm, "csrf");

	if (s == NULL) {
		resp_html_msg(r, 403, "Cần đăng nhập quản trị.");
		return -1;
	}
	if (csrf == NULL || !ct_streq(csrf, s->csrf)) {
		resp_html_msg(r, 403, "Phiên làm việc không hợp lệ, hãy tải lại "
			      "trang.");
		return -1;
	}
	return 0;
}

static bool
secure_cookie(const struct app *a)
{
	const char *u = a->conf->daemon.public_url;

	return u != NULL && strncmp(u, "https:", 6) == 0;
}

void
auth_login(struct app *a, const struct http_req *q, struct http_resp *r)
{
	const char *admin = auth_admin_token(a), *tok, *who = NULL;
	struct form fm;
	tstamp now = clock_now(&a->clk);
	char cookie[65];

	if (admin == NULL) {
		resp_html_msg(r, 403, "Chưa cấu hình mã quản trị.");
		return;
	}
	if (a->auth == NULL) {
		resp_html_msg(r, 503, "Không mở được phiên làm việc.");
		return;
	}
	if (req_form(q, r, &fm) < 0)
		return;
	if (throttled(a, q, r, false))
		goto out;
	tok = form_get(&fm, "token");
	if (tok != NULL)
		who = admin_of_token(a, tok);
	if (who == NULL) {
		login_fail(a, q, "status page login");
		resp_redirect(r, "/?login=failed");
		goto out;
	}
	login_ok(a, q);
	if (session_open(a, now, who, cookie) < 0) {
		resp_html_msg(r, 503, "Không mở được phiên làm việc.");
		goto out;
	}
	free(r->set_cookie);
	r->set_cookie = xasprintf("session=%s; Path=/; Max-Age=%d; HttpOnly; "
				  "SameSite=Strict%s", cookie, SESSION_TTL,
				  secure_cookie(a) ? "; Secure" : "");
	OPENSSL_cleanse(cookie, sizeof(cookie));
	resp_redirect(r, "/");
out:
	form_free(&fm);
}

/* Ends the session on the server: the cookie, wherever a copy of it went,
 * opens nothing any more. */
void
auth_logout(struct app *a, const struct http_req *q, struct http_resp *r)
{
	struct form fm;
	tstamp now = clock_now(&a->clk);

	if (req_form(q, r, &fm) < 0)
		return;
	if (auth_form(a, q, &fm, now, r) == 0) {
		memset(session_find(a, q, now), 0, sizeof(struct session));
		free(r->set_cookie);
		r->set_cookie = xasprintf("session=; Path=/; Max-Age=0; "
					  "HttpOnly; SameSite=Strict%s",
					  secure_cookie(a) ? "; Secure" : "");
		resp_redirect(r, "/");
	}
	form_free(&fm);
}
