/*
 * hook.c - the body and headers of a webhook notice.
 *
 * The JSON carries the rendered text and the facts behind it, so a chat
 * bridge can show the text and a program can use the fields.  With a
 * secret, requests are signed the Standard Webhooks way: HMAC-SHA256 over
 * "id.timestamp.body", base64, as "v1,<sig>".
 */
#include <stdlib.h>
#include <string.h>

#include <curl/curl.h>
#include <jansson.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "cutoffd.h"

/* "2024-03-13T23:59:59+07:00" of t in the configured zone */
static void
iso_offset(const struct conf *c, tstamp t, char *out, size_t size)
{
	struct ymd d;
	int minute, second;
	int64_t off = tz_offset(c->tz, t) / 60;

	tz_local(c->tz, t, &d, &minute, &second);
	snprintf(out, size, "%04d-%02d-%02dT%02d:%02d:%02d%c%02d:%02d",
		 d.y, d.m, d.d, minute / 60, minute % 60, second,
		 off < 0 ? '-' : '+', (int)((off < 0 ? -off : off) / 60),
		 (int)((off < 0 ? -off : off) % 60));
}

static int
set_str(json_t *o, const char *key, const char *val)
{
	json_t *s = json_string(val != NULL ? val : "");

	if (s == NULL)   /* not UTF-8 */
		return -1;
	return json_object_set_new(o, key, s);
}

/* Appends "name: value" to the list; refuses CR/LF (header injection). */
static int
add_header(struct curl_slist **list, const char *name, const char *value)
{
	struct curl_slist *l;
	char *line;

	if (str_has_crlf(value))
		return -1;
	line = xasprintf("%s: %s", name, value);
	l = curl_slist_append(*list, line);
	free(line);
	if (l == NULL)
		return -1;
	*list = l;
	return 0;
}

/* webhook-id: the notice's Message-ID without the angle brackets */
static char *
hook_id(const struct notice *n)
{
	const char *m = n->message_id;
	size_t len = strlen(m);

	if (len >= 2 && m[0] == '<' && m[len - 1] == '>')
		return xstrndup(m + 1, len - 2);
	if (len > 0)
		return xstrdup(m);
	return xasprintf("msg_%lld", (long long)n->id);
}

static int
sign(const struct conf *c, const char *id, tstamp ts, const char *body,
     char **out)
{
	unsigned char mac[EVP_MAX_MD_SIZE];
	unsigned int maclen = 0;
	unsigned char b64[4 * (EVP_MAX_MD_SIZE + 2) / 3 + 4];
	char *msg = xasprintf("%s.%lld.%s", id, (long long)ts, body);

	if (HMAC(EVP_sha256(), c->webhook.secret, (int)c->webhook.secret_len,
		 (const unsigned char *)msg, strlen(msg), mac, &maclen) == NULL) {
		free(msg);
		return -1;
	}
	free(msg);
	EVP_EncodeBlock(b64, mac, (int)maclen);
	*out = xasprintf("v1,%s", (const char *)b64);
	return 0;
}

char *
hook_build(const struct conf *c, struct db *db, const struct notice *n,
	   tstamp now, struct curl_slist **headers)
{
	struct notice copy, *ns[1];
	struct notice_text nt = { 0 };
	struct curl_slist *h = NULL;
	json_t *o = NULL;
	char *dumped = NULL, *body = NULL, *id = NULL, *sig = NULL;
	char due[40];
	char date[16];
	int err = 0;

	if (c == NULL || n == NULL || headers == NULL)
		return NULL;
	/* a shallow copy: notice_render's array is of non-const pointers */
	copy = *n;
	ns[0] = &copy;
	if (notice_render(c, db, ns, 1, now, &nt) < 0)
		return NULL;
	o = json_object();
	if (c->webhook.format == HOOK_TEXT) {
		char *text = xasprintf("%s\n\n%s", nt.subject, nt.body);

		err |= set_str(o, "text", text);
		free(text);
	} else {
		/* end of day reads as 23:59:59 of the due date, not 00:00 after */
		tstamp t = nt.occ.due_at;

		if (occ_due_minute(&nt.occ) >= 1440)
			t -= 1;
		iso_offset(c, t, due, sizeof due);
		snprintf(date, sizeof date, "%04d-%02d-%02d", nt.occ.due.y,
			 nt.occ.due.m, nt.occ.due.d);
		err |= set_str(o, "event", nt.escalation ? "escalation" : "reminder");
		err |= set_str(o, "unit", nt.unit->id);
		err |= set_str(o, "unit_name", nt.unit->name);
		err |= set_str(o, "occurrence", nt.occ.id);
		err |= set_str(o, "cycle", nt.occ.cycle->id);
		err |= set_str(o, "title", nt.occ.cycle->title);
		err |= set_str(o, "due", due);
		err |= set_str(o, "due_date", date);
		err |= json_object_set_new(o, "days", json_integer(nt.days));
		err |= set_str(o, "step", n->step);
		err |= set_str(o, "audience", audience_name(n->aud));
		err |= set_str(o, "subject", nt.subject);
		err |= set_str(o, "text", nt.body);
		err |= set_str(o, "feed_url", nt.feed_url);
		err |= set_str(o, "confirm_url", nt.confirm_url);
	}
	if (err != 0) {
		log_err("webhook %s %s %s: text is not valid UTF-8", n->occurrence,
			n->unit, n->step);
		goto fail;
	}
	dumped = json_dumps(o, JSON_COMPACT);
	if (dumped == NULL)
		goto fail;
	body = xstrdup(dumped);
	free(dumped);

	if (add_header(&h, "Content-Type", "application/json") < 0 ||
	    add_header(&h, "User-Agent", "cutoffd/" CUTOFFD_VERSION) < 0)
		goto fail;
	if (c->webhook.secret != NULL && c->webhook.secret_len > 0) {
		char ts[24];

		id = hook_id(n);
		snprintf(ts, sizeof ts, "%lld", (long long)now);
		if (sign(c, id, now, body, &sig) < 0 ||
		    add_header(&h, "webhook-id", id) < 0 ||
		    add_header(&h, "webhook-timestamp", ts) < 0 ||
		    add_header(&h, "webhook-signature", sig) < 0) {
			log_err("webhook %s %s %s: cannot sign", n->occurrence,
				n->unit, n->step);
			goto fail;
		}
	}
	free(id);
	free(sig);
	json_decref(o);
	notice_text_clear(&nt);
	*headers = h;
	return body;
fail:
	curl_slist_free_all(h);
	free(id);
	free(sig);
	free(body);
	json_decref(o);
	notice_text_clear(&nt);
	return NULL;
}
