/*
 * clock.c - the daemon's notion of "now".
 *
 * Real time by default; with --now/--speed a virtual clock that starts at a
 * chosen instant and runs `speed` times faster, for demos and tests.  Every
 * module asks clock_now(); nothing calls time() directly.
 */
#include <time.h>

#include "cutoffd.h"

static double
real_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

void
clock_init(struct clock *c, bool fake, tstamp start, double speed)
{
	c->fake = fake;
	c->real0 = real_now();
	c->virt0 = fake ? start : (tstamp)c->real0;
	c->speed = speed > 0 ? speed : 1.0;
}

tstamp
clock_now(const struct clock *c)
{
	double elapsed = real_now() - c->real0;

	if (!c->fake && c->speed == 1.0)
		return (tstamp)real_now();
	return c->virt0 + (tstamp)(elapsed * c->speed);
}

double
clock_delay(const struct clock *c, tstamp t)
{
	double d;

	if (!c->fake && c->speed == 1.0)
		d = (double)t - real_now();
	else
		d = ((double)t - ((double)c->virt0 +
				  (real_now() - c->real0) * c->speed)) /
		    c->speed;
	return d > 0 ? d : 0;
}

double
clock_real_at(const struct clock *c, tstamp t)
{
	/* half a virtual second in, so that clock_now() then reads t and not
	 * t - 1 through rounding (at speeds near the 1e7 limit the float error
	 * of real time is larger: the engine re-arms while clock_now() is
	 * still short of t) */
	if (!c->fake && c->speed == 1.0)
		return (double)t + 0.5;
	return c->real0 + ((double)(t - c->virt0) + 0.5) / c->speed;
}
