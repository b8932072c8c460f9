/*
 * auth.c - who may do what on the web side: the admin token (Bearer for
 * the API; a session cookie and a CSRF token per session for the page's
 * forms) and the calendar token that guards reading the status when set:
 * then the page and /status.json need it too (?token=), or an admin
 * session or Bearer token, since they show what the secretariat feed
 * shows.
 */
#include "cutoffd.h"

#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>
#include <openssl/hmac.h>

#define DAY 86400
#define SESSION_TTL (30 * DAY)


const char *
auth_admin_token(const struct app *a)
{
	const char *t = a->conf->daemon.admin_token;

	return t != NULL && t[0] != '\0' ? t : NULL;
}

static bool
bearer_ok(const struct app *a, const struct http_req *q)
{
	const char *admin = auth_admin_token(a);
	char tok[512];

	if (admin == NULL || !req_bearer(q, tok, sizeof(tok)))
		return false;
	return ct_streq(tok, admin);
}

/* 0 when the request carries the admin token, else r is filled */
int
auth_api(struct app *a, const struct http_req *q, struct http_resp *r)
{
	if (auth_admin_token(a) == NULL) {
		resp_error(r, 403, "API disabled: no admin token configured");
		return -1;
	}
	if (!bearer_ok(a, q)) {
		resp_error(r, 401, "missing or wrong admin token");
		resp_hdr(r, "WWW-Authenticate", "Bearer realm=\"cutoffd\"");
		return -1;
	}
	return 0;
}

/* ------------------------------------------------------------ sessions */

/* HMAC-SHA256(key, msg) as 64 hex chars */
static void
hmac_hex(const char *key, const char *msg, char out[65])
{
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned int len = 0;

	HMAC(EVP_sha256(), key, (int)strlen(key), (const unsigned char *)msg,
	     strlen(msg), md, &len);
	for (unsigned int i = 0; i < len && i < 32; i++)
		snprintf(out + 2 * i, 3, "%02x", md[i]);
	out[64] = '\0';
}

/* "EXPIRY.MAC": expiry in clock seconds, so a changed admin token or the
 * passing of time ends every session without server-side state. */
static char *
session_make(const char *admin, tstamp exp)
{
	char msg[64], mac[65];

	snprintf(msg, sizeof(msg), "session|%" PRId64, exp);
	hmac_hex(admin, msg, mac);
	return xasprintf("%" PRId64 ".%s", exp, mac);
}

/* The value of the session cookie when valid, into out. */
static bool
session_get(const struct app *a, const struct http_req *q, tstamp now,
	    char *out, size_t size)
{
	const char *admin = auth_admin_token(a), *p = q->cookie;
	char val[160], *dot, *end, *good;
	long long exp;
	bool ok;

	if (admin == NULL || p == NULL)
		return false;
	while (*p != '\0') {
		size_t n;

		while (*p == ' ' || *p == ';')
			p++;
		n = strcspn(p, ";");
		if (n > 8 && strncmp(p, "session=", 8) == 0) {
			if (n - 8 >= sizeof(val))
				return false;
			memcpy(val, p + 8, n - 8);
			val[n - 8] = '\0';
			break;
		}
		p += n;
	}
	if (*p == '\0')
		return false;
	dot = strchr(val, '.');
	if (dot == NULL)
		return false;
	errno = 0;
	exp = strtoll(val, &end, 10);
	if (end != dot || errno != 0 || exp <= now)
		return false;
	good = session_make(admin, (tstamp)exp);
	ok = ct_streq(val, good);
	free(good);
	if (!ok || strlen(val) >= size)
		return false;
	snprintf(out, size, "%s", val);
	return true;
}

static void
csrf_token(const char *admin, const char *session, char out[65])
{
	char *msg = xasprintf("csrf|%s", session);

	hmac_hex(admin, msg, out);
	free(msg);
}

bool
auth_session(struct app *a, const struct http_req *q, tstamp now,
	     char csrf[65])
{
	char sess[160];

	if (!session_get(a, q, now, sess, sizeof(sess)))
		return false;
	if (csrf != NULL)
		csrf_token(auth_admin_token(a), sess, csrf);
	return true;
}

/* May this request read the status?  See the comment at the top. */
bool
auth_read_allowed(struct app *a, const struct http_req *q,
		  const struct form *args, tstamp now)
{
	const char *cal = a->conf->daemon.calendar_token, *tok;
	char sess[160];

	if (cal == NULL || cal[0] == '\0')
		return true;
	tok = form_get(args, "token");
	if (tok != NULL && ct_streq(tok, cal))
		return true;
	return bearer_ok(a, q) || session_get(a, q, now, sess, sizeof(sess));
}
int
auth_form(struct app *a, const struct http_req *q, const struct form *fm,
	  tstamp now, struct http_resp *r)
{
	char sess[160], want[65];
	const char *csrf = form_get(fm, "csrf");

	if (!session_get(a, q, now, sess, sizeof(sess))) {
		resp_html_msg(r, 403, "Cần đăng nhập quản trị.");
		return -1;
	}
	csrf_token(auth_admin_token(a), sess, want);
	if (csrf == NULL || !ct_streq(csrf, want)) {
		resp_html_msg(r, 403, "Phiên làm việc không hợp lệ, hãy tải lại "
			      "trang.");
		return -1;
	}
	return 0;
}

void
auth_login(struct app *a, const struct http_req *q, struct http_resp *r)
{
	const char *admin = auth_admin_token(a), *tok;
	struct form fm;
	tstamp now = clock_now(&a->clk);
	char *sess;
	bool secure;

	if (admin == NULL) {
		resp_html_msg(r, 403, "Chưa cấu hình mã quản trị.");
		return;
	}
	if (req_form(q, r, &fm) < 0)
		return;
	tok = form_get(&fm, "token");
	if (tok == NULL || !ct_streq(tok, admin)) {
		log_warn("status page: failed admin login");
		resp_redirect(r, "/?login=failed");
		form_free(&fm);
		return;
	}
	sess = session_make(admin, now + SESSION_TTL);
	secure = strncmp(a->conf->daemon.public_url ?
			 a->conf->daemon.public_url : "", "https:", 6) == 0;
	free(r->set_cookie);
	r->set_cookie = xasprintf("session=%s; Path=/; Max-Age=%d; HttpOnly; "
				  "SameSite=Strict%s", sess, SESSION_TTL,
				  secure ? "; Secure" : "");
	free(sess);
	resp_redirect(r, "/");
	form_free(&fm);
}

void
auth_logout(struct app *a, const struct http_req *q, struct http_resp *r)
{
	struct form fm;

	if (req_form(q, r, &fm) < 0)
		return;
	if (auth_form(a, q, &fm, clock_now(&a->clk), r) == 0) {
		free(r->set_cookie);
		r->set_cookie = xstrdup("session=; Path=/; Max-Age=0; HttpOnly; "
					"SameSite=Strict");
		resp_redirect(r, "/");
	}
	form_free(&fm);
}
