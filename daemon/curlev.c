/*
 * curlev.c - libcurl's multi interface driven by libev.
 *
 * libcurl tells us which sockets to watch (CURLMOPT_SOCKETFUNCTION) and when
 * to call it back (CURLMOPT_TIMERFUNCTION); we keep one ev_io per socket and
 * one ev_timer, call curl_multi_socket_action from their callbacks, then
 * hand every finished transfer to the owner.  Nothing here blocks.
 *
 * Every socket libcurl opens goes through open_cb, so that an abort (and
 * the final cleanup) can shut it down first: libcurl ends an SMTP
 * transfer or connection politely (end of data, QUIT) and waits for the
 * reply, which against a stalled server would block the loop for minutes.
 */
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

#include <curl/curl.h>
#include <ev.h>

#include "cutoffd.h"

struct sock {
	ev_io io;
	curl_socket_t fd;
	void *easy;               /* the transfer that last asked for it */
	struct curlev *cv;
	struct sock *prev, *next;
};

struct curlev {
	struct ev_loop *loop;
	CURLM *multi;
	ev_timer timer;
	curlev_done_fn done;
	void *ctx;
	struct sock *socks;       /* every watched socket, to free at the end */
	curl_socket_t *fds;       /* every open socket, watched or idle */
	size_t nfds, capfds;
	int running;
	bool keep;                /* finished handles stay added */
};

static void check_info(struct curlev *cv)
{
	CURLMsg *msg;
	int left;

	for (;;) {
		msg = curl_multi_info_read(cv->multi, &left);
		if (!msg)
			break;
		if (msg->msg == CURLMSG_DONE) {
			CURL *easy = msg->easy_handle;
			CURLcode res = msg->data.result;

			/* msg is invalid after remove; copy first. */
			if (!cv->keep)
				curl_multi_remove_handle(cv->multi, easy);
			cv->done(cv->ctx, easy, (int)res);
		}
	}
}

static void on_io(struct ev_loop *loop, ev_io *w, int revents)
{
	struct sock *s = w->data;
	struct curlev *cv = s->cv;
	int action = 0;
	CURLMcode rc;

	(void)loop;
	if (revents & EV_READ)
		action |= CURL_CSELECT_IN;
	if (revents & EV_WRITE)
		action |= CURL_CSELECT_OUT;
	/* s may be freed inside this call (CURL_POLL_REMOVE): use the fd now */
	rc = curl_multi_socket_action(cv->multi, s->fd, action, &cv->running);
	if (rc != CURLM_OK)
		log_err("curl: %s", curl_multi_strerror(rc));
	check_info(cv);
}

static void on_timer(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct curlev *cv = w->data;
	CURLMcode rc;

	(void)loop;
	(void)revents;
	rc = curl_multi_socket_action(cv->multi, CURL_SOCKET_TIMEOUT, 0,
				      &cv->running);
	if (rc != CURLM_OK)
		log_err("curl: %s", curl_multi_strerror(rc));
	check_info(cv);
}

/* CURLMOPT_TIMERFUNCTION: only (re)arms the timer.  Calling libcurl from
 * here would recurse into it; a 0 ms timeout fires on the next loop turn. */
static int timer_cb(CURLM *multi, long timeout_ms, void *userp)
{
	struct curlev *cv = userp;

	(void)multi;
	ev_timer_stop(cv->loop, &cv->timer);
	if (timeout_ms >= 0) {
		ev_timer_set(&cv->timer, (double)timeout_ms / 1000.0, 0.);
		ev_timer_start(cv->loop, &cv->timer);
	}
	return 0;
}

static void sock_free(struct curlev *cv, struct sock *s)
{
	ev_io_stop(cv->loop, &s->io);
	if (s->prev)
		s->prev->next = s->next;
	else
		cv->socks = s->next;
	if (s->next)
		s->next->prev = s->prev;
	free(s);
}

/* CURLMOPT_SOCKETFUNCTION: keep one ev_io per socket in step with what
 * libcurl wants.  REMOVE may come for a socket we never saw (socketp NULL). */
static int sock_cb(CURL *easy, curl_socket_t fd, int what, void *userp,
		   void *socketp)
{
	struct curlev *cv = userp;
	struct sock *s = socketp;
	int events = 0;

	if (what == CURL_POLL_REMOVE) {
		if (s) {
			curl_multi_assign(cv->multi, fd, NULL);
			sock_free(cv, s);
		}
		return 0;
	}
	if (!s) {
		s = xcalloc(1, sizeof(*s));
		s->fd = fd;
		s->cv = cv;
		s->next = cv->socks;
		if (cv->socks)
			cv->socks->prev = s;
		cv->socks = s;
		ev_init(&s->io, on_io);
		s->io.data = s;
		curl_multi_assign(cv->multi, fd, s);
	} else {
		/* an active watcher must be stopped before it is changed */
		ev_io_stop(cv->loop, &s->io);
	}
	if (what & CURL_POLL_IN)
		events |= EV_READ;
	if (what & CURL_POLL_OUT)
		events |= EV_WRITE;
	s->fd = fd;
	s->easy = easy;
	ev_io_set(&s->io, fd, events);
	ev_io_start(cv->loop, &s->io);
	return 0;
}

static curl_socket_t open_cb(void *clientp, curlsocktype purpose,
			     struct curl_sockaddr *addr)
{
	struct curlev *cv = clientp;
	int fd;

	(void)purpose;
	fd = socket(addr->family, addr->socktype | SOCK_CLOEXEC,
		    addr->protocol);
	if (fd < 0)
		return CURL_SOCKET_BAD;
	if (cv->nfds == cv->capfds) {
		cv->capfds = cv->capfds ? 2 * cv->capfds : 16;
		cv->fds = xrealloc(cv->fds, cv->capfds * sizeof(*cv->fds));
	}
	cv->fds[cv->nfds++] = fd;
	return fd;
}

static int close_cb(void *clientp, curl_socket_t fd)
{
	struct curlev *cv = clientp;

	for (size_t i = 0; i < cv->nfds; i++) {
		if (cv->fds[i] == fd) {
			cv->fds[i] = cv->fds[--cv->nfds];
			break;
		}
	}
	return close(fd);
}

struct curlev *curlev_new(struct ev_loop *loop, curlev_done_fn done,
			  void *ctx)
{
	struct curlev *cv = xcalloc(1, sizeof(*cv));

	cv->loop = loop;
	cv->done = done;
	cv->ctx = ctx;
	cv->multi = curl_multi_init();
	if (!cv->multi) {
		free(cv);
		return NULL;
	}
	ev_init(&cv->timer, on_timer);
	cv->timer.data = cv;
	curl_multi_setopt(cv->multi, CURLMOPT_SOCKETFUNCTION, sock_cb);
	curl_multi_setopt(cv->multi, CURLMOPT_SOCKETDATA, cv);
	curl_multi_setopt(cv->multi, CURLMOPT_TIMERFUNCTION, timer_cb);
	curl_multi_setopt(cv->multi, CURLMOPT_TIMERDATA, cv);
	return cv;
}

int curlev_add(struct curlev *cv, void *easy)
{
	CURLMcode rc;

	/* set on every add: the owner may curl_easy_reset a reused handle */
	curl_easy_setopt(easy, CURLOPT_OPENSOCKETFUNCTION, open_cb);
	curl_easy_setopt(easy, CURLOPT_OPENSOCKETDATA, cv);
	curl_easy_setopt(easy, CURLOPT_CLOSESOCKETFUNCTION, close_cb);
	curl_easy_setopt(easy, CURLOPT_CLOSESOCKETDATA, cv);
	rc = curl_multi_add_handle(cv->multi, easy);
	if (rc != CURLM_OK) {
		log_err("curl: %s", curl_multi_strerror(rc));
		return -1;
	}
	/* libcurl now calls timer_cb(0): the transfer starts on the loop */
	return 0;
}

void curlev_remove(struct curlev *cv, void *easy)
{
	if (!cv || !easy)
		return;
	/* an abort: nothing more is said to the server (see the top) */
	for (struct sock *s = cv->socks; s; s = s->next) {
		if (s->easy == easy)
			shutdown(s->fd, SHUT_RDWR);
	}
	curl_multi_remove_handle(cv->multi, easy);
}

void curlev_keep(struct curlev *cv)
{
	cv->keep = true;
}

void curlev_free(struct curlev *cv)
{
	if (!cv)
		return;
	/* cleanup closes cached connections: don't let it call back into a
	 * half-torn-down curlev; the watchers are freed below */
	curl_multi_setopt(cv->multi, CURLMOPT_SOCKETFUNCTION, NULL);
	curl_multi_setopt(cv->multi, CURLMOPT_TIMERFUNCTION, NULL);
	/* cached connections would get a QUIT and a wait for its reply */
	for (size_t i = 0; i < cv->nfds; i++)
		shutdown(cv->fds[i], SHUT_RDWR);
	curl_multi_cleanup(cv->multi);
	while (cv->socks)
		sock_free(cv, cv->socks);
	ev_timer_stop(cv->loop, &cv->timer);
	free(cv->fds);
	free(cv);
}
