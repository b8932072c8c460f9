/*
 * fuzz_link.c - libFuzzer target for link.c's token parser, the part of a
 * confirmation link (/confirm/TOKEN) that reads what anyone may send.
 * Every token it accepts must be canonical: its parts written back give
 * the input byte for byte (one spelling per (unit, occurrence, MAC), so
 * nothing but the MAC comparison decides), the unit and the cycle are
 * valid ids and the occurrence is "cycle/YYYY-MM-DD".
 */
#include <stdlib.h>
#include <string.h>

#include "cutoffd.h"

static const char b64u[] =
	"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

static size_t
enc(const unsigned char *in, size_t n, char *out)
{
	size_t o = 0;

	for (size_t i = 0; i < n; i += 3) {
		unsigned v = (unsigned)in[i] << 16;

		if (i + 1 < n)
			v |= (unsigned)in[i + 1] << 8;
		if (i + 2 < n)
			v |= in[i + 2];
		out[o++] = b64u[(v >> 18) & 63];
		out[o++] = b64u[(v >> 12) & 63];
		if (i + 1 < n)
			out[o++] = b64u[(v >> 6) & 63];
		if (i + 2 < n)
			out[o++] = b64u[v & 63];
	}
	out[o] = '\0';
	return o;
}

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size);

int
LLVMFuzzerTestOneInput(const unsigned char *data, size_t size)
{
	char unit[72], occ[OCC_ID_MAX], m[64], back[LINK_TOKEN_MAX + 128];
	unsigned char mac[LINK_MAC_LEN];
	char *tok = malloc(size + 1);
	const char *slash;
	int n;

	if (tok == NULL)
		return 0;
	memcpy(tok, data, size);
	tok[size] = '\0';
	/* the length is passed: a NUL inside must not end the token early */
	if (link_parse(tok, size, unit, occ, mac) == 0) {
		slash = strchr(occ, '/');
		if (!valid_id(unit) || slash == NULL || strlen(slash + 1) != 10)
			abort();
		*(char *)slash = '\0';
		if (!valid_id(occ))
			abort();
		enc(mac, sizeof mac, m);
		n = snprintf(back, sizeof back, "%s.%s.%s.%s", unit, occ,
			     slash + 1, m);
		if (n < 0 || (size_t)n != size || memcmp(back, data, size) != 0)
			abort();
	}
	free(tok);
	return 0;
}
