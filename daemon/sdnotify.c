/*
 * sdnotify.c - the systemd notification protocol, without libsystemd.
 *
 * The protocol is a single datagram of "KEY=VALUE\n" lines sent to the
 * AF_UNIX socket named in $NOTIFY_SOCKET (a leading '@' means the abstract
 * namespace).  That is a handful of lines; a library would add nothing.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "cutoffd.h"

int
sd_notify_msg(const char *msg)
{
	const char *path = getenv("NOTIFY_SOCKET");
	struct sockaddr_un sa;
	socklen_t salen;
	size_t plen;
	ssize_t r;
	int fd;

	if (path == NULL || path[0] == '\0')
		return 0;
	plen = strlen(path);
	if ((path[0] != '/' && path[0] != '@') || plen >= sizeof sa.sun_path)
		return -1;
	memset(&sa, 0, sizeof sa);
	sa.sun_family = AF_UNIX;
	memcpy(sa.sun_path, path, plen);
	if (path[0] == '@')
		sa.sun_path[0] = '\0';
	salen = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + plen);

	fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -1;
	do {
		r = sendto(fd, msg, strlen(msg), MSG_NOSIGNAL,
			   (struct sockaddr *)&sa, salen);
	} while (r < 0 && errno == EINTR);
	close(fd);
	return r < 0 ? -1 : 1;
}

int
sd_notifyf(const char *fmt, ...)
{
	char msg[1024];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof msg, fmt, ap);
	va_end(ap);
	return sd_notify_msg(msg);
}

double
sd_watchdog_interval(void)
{
	const char *usec = getenv("WATCHDOG_USEC"), *pid = getenv("WATCHDOG_PID");
	unsigned long long v;
	char *end;

	if (usec == NULL || usec[0] == '\0')
		return 0;
	/* the watchdog is meant for the main process, not a child that
	 * inherited the environment */
	if (pid != NULL && pid[0] != '\0' &&
	    strtoll(pid, NULL, 10) != (long long)getpid())
		return 0;
	errno = 0;
	v = strtoull(usec, &end, 10);
	if (errno != 0 || end == usec || *end != '\0' || v == 0)
		return 0;
	return (double)v / 1e6;
}
