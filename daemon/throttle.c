/*
 * throttle.c - wrong attempts counted per client address, for whatever
 * takes a secret from the network (admin tokens, confirmation links).
 *
 * A client is its address, an IPv6 one cut to its /64 (one host commonly
 * holds a whole /64).  THROTTLE_FREE wrong attempts are free; then each
 * one doubles a wait, from 1 s up to THROTTLE_MAX_WAIT, during which the
 * caller refuses every attempt.  A quiet THROTTLE_FORGET after the last
 * wait forgets the address.  The table is bounded: when full, the address
 * quiet for longest gives its slot.  Real (monotonic) time, not the
 * daemon's clock: guessing happens at the wall clock's speed whatever
 * --speed says.
 */
#include "cutoffd.h"

#include <arpa/inet.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define THROTTLE_FREE 5
#define THROTTLE_MAX_WAIT 3600.0
#define THROTTLE_FORGET 3600.0

struct strike {
	char key[48];
	unsigned fails;
	double last;                 /* monotonic seconds */
	double until;                /* no attempt before this */
};

struct throttle {
	size_t n, cap;
	struct strike t[];
};

static double
mono(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static void
client_key(const char *client, char *out, size_t size)
{
	struct in6_addr a6;

	if (client != NULL && strchr(client, ':') != NULL &&
	    inet_pton(AF_INET6, client, &a6) == 1) {
		memset(a6.s6_addr + 8, 0, 8);
		if (inet_ntop(AF_INET6, &a6, out, (socklen_t)size) != NULL) {
			snprintf(out + strlen(out), size - strlen(out), "/64");
			return;
		}
	}
	snprintf(out, size, "%s", client != NULL ? client : "?");
}

struct throttle *
throttle_new(size_t slots)
{
	struct throttle *t;

	if (slots == 0)
		slots = 1;
	t = xcalloc(1, sizeof(*t) + slots * sizeof(t->t[0]));
	t->cap = slots;
	return t;
}

void
throttle_free(struct throttle *t)
{
	free(t);
}

static struct strike *
find(struct throttle *th, const char *client, double now, bool create)
{
	char key[48];
	size_t victim = 0;

	client_key(client, key, sizeof(key));
	for (size_t i = 0; i < th->n; i++) {
		struct strike *t = &th->t[i];

		if (strcmp(t->key, key) != 0)
			continue;
		if (now - t->last > THROTTLE_FORGET && now >= t->until) {
			t->fails = 0;
			t->until = 0;
		}
		return t;
	}
	if (!create)
		return NULL;
	if (th->n < th->cap) {
		victim = th->n++;
	} else {
		for (size_t i = 1; i < th->n; i++)
			if (th->t[i].last < th->t[victim].last)
				victim = i;
	}
	memset(&th->t[victim], 0, sizeof(th->t[victim]));
	snprintf(th->t[victim].key, sizeof(th->t[victim].key), "%s", key);
	return &th->t[victim];
}

int
throttle_wait(struct throttle *th, const char *client)
{
	double now = mono();
	struct strike *t;

	if (th == NULL)
		return 0;
	t = find(th, client, now, false);
	if (t == NULL || now >= t->until)
		return 0;
	return (int)ceil(t->until - now);
}

unsigned
throttle_fail(struct throttle *th, const char *client, double *wait)
{
	double now = mono();
	struct strike *t;

	*wait = 0;
	if (th == NULL)
		return 0;
	t = find(th, client, now, true);
	t->fails++;
	t->last = now;
	if (t->fails >= THROTTLE_FREE) {
		unsigned e = t->fails - THROTTLE_FREE;

		*wait = ldexp(1.0, (int)(e < 12 ? e : 12));
		if (*wait > THROTTLE_MAX_WAIT)
			*wait = THROTTLE_MAX_WAIT;
		t->until = now + *wait;
	}
	return t->fails;
}

void
throttle_ok(struct throttle *th, const char *client)
{
	struct strike *t;

	if (th == NULL)
		return;
	t = find(th, client, mono(), false);
	if (t != NULL) {
		t->fails = 0;
		t->until = 0;
	}
}
