/*
 * fuzz_http.c - libFuzzer target for the request headers http.c parses
 * itself (libmicrohttpd parses the rest): If-None-Match lists and HTTP
 * dates of If-Modified-Since, plus the `listen` address splitter.  The
 * module is included to reach its static functions.
 */
#include "http.c"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *s = xstrndup((const char *)data, size);
	char *host = NULL, *port = NULL;
	tstamp t;

	(void)etag_listed(s, "\"0123456789abcdef\"");
	(void)etag_listed(s, "W/\"x\"");
	if (parse_http_date(s, &t)) {
		char back[40];

		http_date(t, back, sizeof back);
	}
	if (split_listen(s, &host, &port) == 0) {
		free(host);
		free(port);
	}
	free(s);
	return 0;
}
