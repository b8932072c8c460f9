/*
 * doc.c - a built response body, immutable and reference-counted.
 *
 * The views (feeds, the status JSON, CSV and page) build one per change of
 * configuration or state; the HTTP server sends the same bytes to any
 * number of clients without copying them and keeps, beside the body, the
 * response it made for it on the first send.  A replaced document lives on
 * until its last send finishes: the owner drops its reference, the server's
 * response holds one of its own.
 *
 * Views know nothing of HTTP (no MHD here or in the views): the server
 * stores its response in `resp` together with the function that releases
 * it, so whoever frees the document need not know what it is.
 */
#include "cutoffd.h"

#include <stdlib.h>
#include <string.h>

static uint64_t
fnv1a(const void *p, size_t n)
{
	const unsigned char *s = p;
	uint64_t h = 0xcbf29ce484222325ULL;

	for (size_t i = 0; i < n; i++) {
		h ^= s[i];
		h *= 0x100000001b3ULL;
	}
	return h;
}

struct doc *
doc_new(char *body, size_t len, const char *type)
{
	struct doc *d = xcalloc(1, sizeof(*d));

	d->refs = 1;
	d->body = body != NULL ? body : xstrdup("");
	d->len = body != NULL ? len : 0;
	d->type = type;
	snprintf(d->etag, sizeof(d->etag), "\"%016llx\"",
		 (unsigned long long)fnv1a(d->body, d->len));
	return d;
}

struct doc *
doc_ref(struct doc *d)
{
	if (d != NULL)
		d->refs++;
	return d;
}

void
doc_unref(struct doc *d)
{
	if (d == NULL || --d->refs > 0)
		return;
	free(d->body);
	free(d);
}

void
doc_release(struct doc *d)
{
	void *r;

	if (d == NULL)
		return;
	/* the server's response may still be sending: it keeps its own
	 * reference to d and drops it when MHD is done with the response */
	r = d->resp;
	d->resp = NULL;
	if (r != NULL && d->resp_free != NULL)
		d->resp_free(r);
	r = d->resp304;
	d->resp304 = NULL;
	if (r != NULL && d->resp_free != NULL)
		d->resp_free(r);
	doc_unref(d);
}
