/*
 * cidr.c - address ranges ("127.0.0.0/8", "::1/128", "192.0.2.7") and
 * whether a client address falls inside one.
 *
 * The parser is strict on purpose: an access list that quietly meant
 * something else (a stray host part, "10/8", an octal-looking "010.0.0.1",
 * a zone id) would open or close a door without anyone noticing.  So the
 * address is what inet_pton accepts and nothing more, the prefix is plain
 * decimal within the family's width, and the bits past the prefix must be
 * zero.
 */
#include "cutoffd.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/socket.h>

#define CIDR_TEXT_MAX 64     /* longer than any IPv6 address with /128 */

/* Sets the bits of addr past the prefix to zero; returns whether any was
 * set. */
static bool
clear_host_bits(unsigned char *addr, int len, int bits)
{
	bool was = false;

	for (int i = 0; i < len; i++) {
		int keep = bits - i * 8;
		unsigned char mask;

		if (keep >= 8)
			continue;
		mask = keep <= 0 ? 0 : (unsigned char)(0xff << (8 - keep));
		if (addr[i] & ~mask)
			was = true;
		addr[i] &= mask;
	}
	return was;
}

int
cidr_parse(const char *s, struct cidr *out, const char **why)
{
	char text[CIDR_TEXT_MAX + 1];
	const char *slash;
	struct cidr c;
	size_t alen;
	int len, bits;

	memset(&c, 0, sizeof(c));
	if (s == NULL || *s == '\0' || strlen(s) > CIDR_TEXT_MAX) {
		*why = "expected an address range like 127.0.0.0/8 or ::1/128";
		return -1;
	}
	slash = strchr(s, '/');
	alen = slash != NULL ? (size_t)(slash - s) : strlen(s);
	memcpy(text, s, alen);
	text[alen] = '\0';
	if (inet_pton(AF_INET, text, c.addr) == 1) {
		c.family = AF_INET;
		len = 4;
	} else if (inet_pton(AF_INET6, text, c.addr) == 1) {
		c.family = AF_INET6;
		len = 16;
	} else {
		*why = "not an IPv4 or IPv6 address (expected a range like "
		       "127.0.0.0/8 or ::1/128)";
		return -1;
	}
	bits = len * 8;
	if (slash != NULL) {
		const char *p = slash + 1;

		/* plain decimal, no sign, no leading zero, no trailing junk */
		if (*p < '0' || *p > '9' || (p[0] == '0' && p[1] != '\0')) {
			*why = "the prefix length must be a decimal number";
			return -1;
		}
		bits = 0;
		for (; *p != '\0'; p++) {
			if (*p < '0' || *p > '9' || bits > len * 8) {
				*why = "the prefix length must be a decimal "
				       "number";
				return -1;
			}
			bits = bits * 10 + (*p - '0');
		}
		if (bits > len * 8) {
			*why = c.family == AF_INET ?
				"the prefix length of an IPv4 range is 0 to 32" :
				"the prefix length of an IPv6 range is 0 to 128";
			return -1;
		}
	}
	if (clear_host_bits(c.addr, len, bits)) {
		*why = "address bits set past the prefix length (write the "
		       "network address, e.g. 10.0.0.0/8)";
		return -1;
	}
	c.bits = bits;
	*out = c;
	return 0;
}

void
cidr_format(const struct cidr *c, char *out, size_t size)
{
	char a[INET6_ADDRSTRLEN];

	if (inet_ntop(c->family, c->addr, a, sizeof(a)) == NULL)
		snprintf(a, sizeof(a), "?");
	snprintf(out, size, "%s/%d", a, c->bits);
}

static bool
prefix_equal(const unsigned char *a, const unsigned char *b, int bits)
{
	int whole = bits / 8, rest = bits % 8;

	if (memcmp(a, b, (size_t)whole) != 0)
		return false;
	if (rest == 0)
		return true;
	return ((a[whole] ^ b[whole]) & (0xff << (8 - rest)) & 0xff) == 0;
}

bool
cidr_match(const struct cidr *v, size_t n, const struct sockaddr *sa)
{
	static const unsigned char mapped[12] = {
		0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff,
	};
	unsigned char a4[4], a6[16];
	bool has4 = false, has6 = false;

	if (sa == NULL)
		return false;
	if (sa->sa_family == AF_INET) {
		const struct sockaddr_in *s4 = (const void *)sa;

		memcpy(a4, &s4->sin_addr, 4);
		has4 = true;
	} else if (sa->sa_family == AF_INET6) {
		const struct sockaddr_in6 *s6 = (const void *)sa;

		memcpy(a6, &s6->sin6_addr, 16);
		has6 = true;
		/* a v4 client on a dual-stack socket is also a v4 client */
		if (memcmp(a6, mapped, sizeof(mapped)) == 0) {
			memcpy(a4, a6 + 12, 4);
			has4 = true;
		}
	} else {
		return false;
	}
	for (size_t i = 0; i < n; i++) {
		if (has4 && v[i].family == AF_INET &&
		    prefix_equal(v[i].addr, a4, v[i].bits))
			return true;
		if (has6 && v[i].family == AF_INET6 &&
		    prefix_equal(v[i].addr, a6, v[i].bits))
			return true;
	}
	return false;
}

bool
cidr_loopback(const struct sockaddr *sa)
{
	static const struct cidr lo[2] = {
		{ AF_INET, { 127 }, 8 },
		{ AF_INET6, { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1 },
		  128 },
	};

	return cidr_match(lo, 2, sa);
}
