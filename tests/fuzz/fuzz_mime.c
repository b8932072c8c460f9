/*
 * fuzz_mime.c - libFuzzer target for mime.c, the reader of what the
 * secretariat's mailbox returns: any bytes as a stored message, as an
 * IMAP BODYSTRUCTURE, then as a header value for the encoded-word, address and date readers.  Checks
 * that every string it returns is valid UTF-8 without control characters.
 */
#include <stdlib.h>
#include <string.h>

#include "cutoffd.h"

static void
clean(const char *s)
{
	if (s == NULL)
		return;
	if (!utf8_valid(s, strlen(s)))
		abort();
	for (const unsigned char *p = (const unsigned char *)s; *p; p++)
		if (*p < 0x20 || *p == 0x7f)
			abort();
}

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size);

int
LLVMFuzzerTestOneInput(const unsigned char *data, size_t size)
{
	struct mime_msg m;
	char *s = xstrndup((const char *)data, size), *w, *a;
	tstamp t;

	if (mime_parse((const char *)data, size, &m) == 0) {
		clean(m.message_id);
		clean(m.from);
		clean(m.subject);
		clean(m.dsn_orig_id);
		if (m.nrefs > MIME_MAX_REFS || m.nfiles > MIME_MAX_FILES ||
		    m.nrcpt > MIME_MAX_RCPT)
			abort();
		for (size_t i = 0; i < m.nrefs; i++)
			clean(m.refs[i]);
		for (size_t i = 0; i < m.nfiles; i++)
			clean(m.files[i]);
		for (size_t i = 0; i < m.nrcpt; i++) {
			clean(m.rcpt[i].recipient);
			clean(m.rcpt[i].action);
			clean(m.rcpt[i].status);
			clean(m.rcpt[i].diagnostic);
		}
		mime_clear(&m);
	}
	/* the same bytes as an IMAP BODYSTRUCTURE */
	memset(&m, 0, sizeof(m));
	mime_bodystructure_files((const char *)data, size, &m);
	if (m.nfiles > MIME_MAX_FILES)
		abort();
	for (size_t i = 0; i < m.nfiles; i++)
		clean(m.files[i]);
	mime_clear(&m);
	w = mime_decode_words(s, strlen(s));
	clean(w);
	free(w);
	a = mime_addr(s);
	clean(a);
	free(a);
	(void)mime_date(s, &t);
	free(s);
	return 0;
}
