/* test_cidr.c - the address ranges of metrics_allow: strict parsing and
 * matching, IPv4, IPv6 and v4-mapped clients. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/socket.h>

#include "cutoffd.h"

static bool
match(const char *range, const char *client)
{
	struct sockaddr_in6 s6;
	struct sockaddr_in s4;
	struct cidr c;
	const char *why;

	assert_int_equal(cidr_parse(range, &c, &why), 0);
	memset(&s4, 0, sizeof(s4));
	memset(&s6, 0, sizeof(s6));
	if (inet_pton(AF_INET, client, &s4.sin_addr) == 1) {
		s4.sin_family = AF_INET;
		return cidr_match(&c, 1, (struct sockaddr *)&s4);
	}
	assert_int_equal(inet_pton(AF_INET6, client, &s6.sin6_addr), 1);
	s6.sin6_family = AF_INET6;
	return cidr_match(&c, 1, (struct sockaddr *)&s6);
}

static void
test_parse(void **state)
{
	static const char *const bad[] = {
		"", "10.0.0.1/8", "127.0.0.0/33", "::1/129", "10/8", "10.0.0/8",
		"010.0.0.0/8", "fe80::1%eth0", "127.0.0.0/08", "127.0.0.0/+8",
		"127.0.0.0/-1", "127.0.0.0/", "127.0.0.0/8/8", " 127.0.0.1",
		"127.0.0.1 ", "localhost", "1.2.3.4/99999999999999999999",
		"2001:db8::1/32",
	};
	struct cidr c;
	const char *why;
	char text[80];

	(void)state;
	for (size_t i = 0; i < sizeof(bad) / sizeof(*bad); i++) {
		why = NULL;
		assert_int_equal(cidr_parse(bad[i], &c, &why), -1);
		assert_non_null(why);
	}
	assert_int_equal(cidr_parse("10.0.0.1/8", &c, &why), -1);
	assert_non_null(strstr(why, "past the prefix"));

	assert_int_equal(cidr_parse("192.168.0.0/16", &c, &why), 0);
	assert_int_equal(c.family, AF_INET);
	assert_int_equal(c.bits, 16);
	cidr_format(&c, text, sizeof(text));
	assert_string_equal(text, "192.168.0.0/16");
	assert_int_equal(cidr_parse("192.0.2.7", &c, &why), 0);
	assert_int_equal(c.bits, 32);
	assert_int_equal(cidr_parse("0.0.0.0/0", &c, &why), 0);
	assert_int_equal(cidr_parse("2001:DB8::/32", &c, &why), 0);
	assert_int_equal(c.family, AF_INET6);
	cidr_format(&c, text, sizeof(text));
	assert_string_equal(text, "2001:db8::/32");
	assert_int_equal(cidr_parse("::1", &c, &why), 0);
	assert_int_equal(c.bits, 128);
	assert_int_equal(cidr_parse("::/0", &c, &why), 0);
}

static void
test_match(void **state)
{
	(void)state;
	assert_true(match("127.0.0.1/32", "127.0.0.1"));
	assert_false(match("127.0.0.1/32", "127.0.0.2"));
	assert_true(match("127.0.0.0/8", "127.255.0.2"));
	assert_false(match("127.0.0.0/8", "128.0.0.1"));
	assert_true(match("10.1.128.0/17", "10.1.200.9"));
	assert_false(match("10.1.128.0/17", "10.1.127.9"));
	assert_true(match("0.0.0.0/0", "203.0.113.5"));
	assert_false(match("0.0.0.0/0", "::1"));           /* families apart */
	assert_true(match("2001:db8::/32", "2001:db8:ffff::1"));
	assert_false(match("2001:db8::/32", "2001:db9::1"));
	assert_true(match("::1", "::1"));
	assert_false(match("::1", "::2"));
	/* a v4 client on a dual-stack socket: both views match */
	assert_true(match("127.0.0.0/8", "::ffff:127.0.0.9"));
	assert_true(match("::ffff:0:0/96", "::ffff:127.0.0.9"));
	assert_false(match("10.0.0.0/8", "::ffff:127.0.0.9"));
	assert_false(cidr_match(NULL, 0, NULL));
}

static void
test_loopback(void **state)
{
	struct sockaddr_in s4;
	struct sockaddr_in6 s6;
	struct sockaddr sa;

	(void)state;
	memset(&s4, 0, sizeof(s4));
	s4.sin_family = AF_INET;
	inet_pton(AF_INET, "127.3.4.5", &s4.sin_addr);
	assert_true(cidr_loopback((struct sockaddr *)&s4));
	inet_pton(AF_INET, "192.0.2.1", &s4.sin_addr);
	assert_false(cidr_loopback((struct sockaddr *)&s4));
	memset(&s6, 0, sizeof(s6));
	s6.sin6_family = AF_INET6;
	inet_pton(AF_INET6, "::1", &s6.sin6_addr);
	assert_true(cidr_loopback((struct sockaddr *)&s6));
	inet_pton(AF_INET6, "::ffff:127.0.0.1", &s6.sin6_addr);
	assert_true(cidr_loopback((struct sockaddr *)&s6));
	inet_pton(AF_INET6, "fe80::1", &s6.sin6_addr);
	assert_false(cidr_loopback((struct sockaddr *)&s6));
	memset(&sa, 0, sizeof(sa));
	sa.sa_family = AF_UNIX;
	assert_false(cidr_loopback(&sa));
	assert_false(cidr_loopback(NULL));
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_parse),
		cmocka_unit_test(test_match),
		cmocka_unit_test(test_loopback),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
