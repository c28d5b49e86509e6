/*
 * N-API face of the rtnetlink socket (netlink/rtnl.c), for src/netlink/socket.ts:
 *   netlinkOpen(groups: Uint32Array, rcvbuf, onDatagram) -> handle
 *   netlinkSend(handle, Buffer) -> 0 or -errno
 *   netlinkRef(handle, boolean), netlinkClose(handle)
 * Received datagrams reach JS on node's own event loop: a uv_poll on the
 * descriptor (no thread), which reads every queued datagram when it is
 * readable and calls onDatagram(datagram, 0, truncated) for each, or
 * onDatagram(undefined, errno, false) for a receive error (ENOBUFS: the
 * kernel dropped messages for this socket, which stays open).
 *
 * Threads and locking: none. Every function and the poll callback run on
 * the JS thread (libuv calls poll callbacks on the loop thread), so the
 * socket state below is only ever touched by that thread.
 */
#define _GNU_SOURCE
#include "addon/convert.h"
#include "netlink/rtnl.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <uv.h>

/* First receive buffer; a truncated datagram grows it (to at most MAX_CAP) for the next ones. */
#define FIRST_CAP (64 * 1024)
#define MAX_CAP (4 * 1024 * 1024)
/* Datagrams read per wake-up, so one busy socket cannot hold the loop (the poll is level-triggered). */
#define BURST 256

/* One socket; JS thread only (see above). Freed once both the poll handle is closed and the External is finalized. */
struct nl_sock {
	uv_poll_t poll; /* poll.data points back here */
	napi_env env;
	napi_ref cb; /* onDatagram; NULL once closed */
	napi_async_context actx;
	int fd; /* -1 once closed */
	bool poll_live; /* uv_poll_init succeeded and uv_close's callback has not run yet */
	bool finalized;
	uint8_t *buf;
	size_t cap;
};

static void sock_free_if_done(struct nl_sock *s)
{
	if (s->finalized && !s->poll_live) {
		free(s->buf);
		free(s);
	}
}

static void on_poll_closed(uv_handle_t *h)
{
	struct nl_sock *s = h->data;
	s->poll_live = false;
	sock_free_if_done(s);
}

/* Stops reading and closes the descriptor; idempotent. */
static void sock_close(struct nl_sock *s)
{
	if (s->fd < 0)
		return;
	if (s->poll_live) {
		uv_poll_stop(&s->poll);
		uv_close((uv_handle_t *)&s->poll, on_poll_closed);
	}
	close(s->fd);
	s->fd = -1;
	if (s->cb) {
		napi_delete_reference(s->env, s->cb);
		s->cb = NULL;
	}
	if (s->actx) {
		napi_async_destroy(s->env, s->actx);
		s->actx = NULL;
	}
}

static void sock_finalize(napi_env env, void *data, void *hint)
{
	(void)env;
	(void)hint;
	struct nl_sock *s = data;
	sock_close(s);
	s->finalized = true;
	sock_free_if_done(s);
}

/* Calls onDatagram(datagram or undefined, err, truncated) in its own handle scope. */
static void deliver(struct nl_sock *s, const uint8_t *data, size_t len, int err, bool truncated)
{
	napi_env env = s->env;
	napi_handle_scope scope;
	if (napi_open_handle_scope(env, &scope) != napi_ok)
		return;
	napi_value fn, recv, args[3], result;
	void *copy;
	bool ok = napi_get_reference_value(env, s->cb, &fn) == napi_ok && fn != NULL &&
	        napi_get_global(env, &recv) == napi_ok &&
	        (data ? napi_create_buffer_copy(env, len, data, &copy, &args[0])
	              : napi_get_undefined(env, &args[0])) == napi_ok &&
	        napi_create_int32(env, err, &args[1]) == napi_ok && napi_get_boolean(env, truncated, &args[2]) == napi_ok;
	if (ok && napi_make_callback(env, s->actx, recv, fn, 3, args, &result) != napi_ok) {
		/* The callback threw: node's uncaught-exception handling decides, as for any callback. */
		napi_value exc;
		if (napi_get_and_clear_last_exception(env, &exc) == napi_ok)
			napi_fatal_exception(env, exc);
	}
	napi_close_handle_scope(env, scope);
}

static void on_readable(uv_poll_t *p, int status, int events)
{
	(void)events;
	struct nl_sock *s = p->data;
	if (s->fd < 0)
		return;
	if (status < 0) {
		/*
		 * libuv reports EPOLLERR as UV_EBADF and stops the handle. On a
		 * netlink socket that is sk_err, usually ENOBUFS (an overrun): read
		 * (and so clear) it, report it, and poll again. Without a pending
		 * error the socket is unusable: report and close it, so that sends
		 * fail at once instead of waiting for replies that cannot come.
		 */
		int soerr = 0;
		socklen_t len = sizeof soerr;
		if (getsockopt(s->fd, SOL_SOCKET, SO_ERROR, &soerr, &len) < 0 || soerr == 0 ||
		        uv_poll_start(&s->poll, UV_READABLE, on_readable) != 0) {
			deliver(s, NULL, 0, soerr != 0 ? soerr : -status, false);
			sock_close(s);
			return;
		}
		deliver(s, NULL, 0, soerr, false);
	}
	for (int i = 0; i < BURST && s->fd >= 0; i++) {
		bool truncated = false;
		ssize_t n = rtnl_recv(s->fd, s->buf, s->cap, &truncated);
		if (n == -EAGAIN || n == -EWOULDBLOCK)
			return;
		if (n < 0) {
			deliver(s, NULL, 0, (int)-n, false);
			if (n == -ENOBUFS)
				continue; /* the socket is still good: read what is queued */
			return;
		}
		deliver(s, s->buf, truncated ? s->cap : (size_t)n, 0, truncated);
		if (truncated && (size_t)n > s->cap && (size_t)n <= MAX_CAP) {
			uint8_t *bigger = realloc(s->buf, (size_t)n);
			if (bigger) {
				s->buf = bigger;
				s->cap = (size_t)n;
			}
		}
	}
}

static bool get_sock(napi_env env, napi_value v, struct nl_sock **out)
{
	void *p = NULL;
	if (napi_get_value_external(env, v, &p) != napi_ok || p == NULL) {
		addon_throw(env, "netlink: expected a socket handle");
		return false;
	}
	*out = p;
	return true;
}

static napi_value js_open(napi_env env, napi_callback_info info)
{
	size_t argc = 3;
	napi_value argv[3];
	CHECK(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
	bool is_ta = false;
	napi_valuetype t2;
	uint32_t rcvbuf;
	if (argc < 3 || napi_is_typedarray(env, argv[0], &is_ta) != napi_ok || !is_ta ||
	        napi_get_value_uint32(env, argv[1], &rcvbuf) != napi_ok || napi_typeof(env, argv[2], &t2) != napi_ok ||
	        t2 != napi_function) {
		addon_throw(env, "netlinkOpen expects (groups: Uint32Array, rcvbuf: number, onDatagram: function)");
		return NULL;
	}
	napi_typedarray_type tt;
	size_t ngroups;
	void *gdata;
	CHECK(env, napi_get_typedarray_info(env, argv[0], &tt, &ngroups, &gdata, NULL, NULL));
	if (tt != napi_uint32_array || ngroups > RTNL_MAX_GROUPS) {
		addon_throw(env, "netlinkOpen: groups must be a Uint32Array of at most 64 group numbers");
		return NULL;
	}
	uv_loop_t *loop;
	CHECK(env, napi_get_uv_event_loop(env, &loop));

	struct nl_sock *s = calloc(1, sizeof *s);
	uint8_t *buf = malloc(FIRST_CAP);
	if (!s || !buf) {
		free(s);
		free(buf);
		addon_throw(env, "netlink: out of memory");
		return NULL;
	}
	s->env = env;
	s->buf = buf;
	s->cap = FIRST_CAP;
	s->poll.data = s;
	char err[ERRLEN];
	s->fd = rtnl_open(gdata, ngroups, rcvbuf, err, sizeof err);
	if (s->fd < 0) {
		free(buf);
		free(s);
		addon_throw(env, err);
		return NULL;
	}
	napi_value resource, name, handle;
	int uerr = uv_poll_init(loop, &s->poll, s->fd);
	if (uerr == 0) {
		s->poll_live = true;
		uerr = uv_poll_start(&s->poll, UV_READABLE, on_readable);
	}
	if (uerr != 0 || napi_create_object(env, &resource) != napi_ok ||
	        napi_create_string_utf8(env, "rudder:netlink", NAPI_AUTO_LENGTH, &name) != napi_ok ||
	        napi_async_init(env, resource, name, &s->actx) != napi_ok ||
	        napi_create_reference(env, argv[2], 1, &s->cb) != napi_ok ||
	        napi_create_external(env, s, sock_finalize, NULL, &handle) != napi_ok) {
		snprintf(err, sizeof err, "netlink: watch socket: %s", uerr != 0 ? uv_strerror(uerr) : "N-API failure");
		sock_close(s);
		s->finalized = true;
		sock_free_if_done(s);
		addon_throw(env, err);
		return NULL;
	}
	return handle;
}

static napi_value js_send(napi_env env, napi_callback_info info)
{
	napi_value argv[2], ret;
	struct nl_sock *s;
	if (!get_args(env, info, 2, argv, "netlinkSend expects (handle, Buffer)") || !get_sock(env, argv[0], &s))
		return NULL;
	bool is_buf = false;
	void *data;
	size_t len;
	if (napi_is_buffer(env, argv[1], &is_buf) != napi_ok || !is_buf ||
	        napi_get_buffer_info(env, argv[1], &data, &len) != napi_ok) {
		addon_throw(env, "netlinkSend: the request must be a Buffer");
		return NULL;
	}
	int rc = s->fd < 0 ? -EBADF : rtnl_send(s->fd, data, len);
	CHECK(env, napi_create_int32(env, rc, &ret));
	return ret;
}

static napi_value js_ref(napi_env env, napi_callback_info info)
{
	napi_value argv[2];
	struct nl_sock *s;
	bool on;
	if (!get_args(env, info, 2, argv, "netlinkRef expects (handle, boolean)") || !get_sock(env, argv[0], &s))
		return NULL;
	if (napi_get_value_bool(env, argv[1], &on) != napi_ok) {
		addon_throw(env, "netlinkRef: expected a boolean");
		return NULL;
	}
	if (s->fd >= 0 && s->poll_live) {
		if (on)
			uv_ref((uv_handle_t *)&s->poll);
		else
			uv_unref((uv_handle_t *)&s->poll);
	}
	return NULL;
}

static napi_value js_close(napi_env env, napi_callback_info info)
{
	napi_value argv[1];
	struct nl_sock *s;
	if (!get_args(env, info, 1, argv, "netlinkClose expects (handle)") || !get_sock(env, argv[0], &s))
		return NULL;
	sock_close(s);
	return NULL;
}

napi_value addon_netlink_init(napi_env env, napi_value exports)
{
	static const struct {
		const char *name;
		napi_callback fn;
	} fns[] = {{"netlinkOpen", js_open}, {"netlinkSend", js_send}, {"netlinkRef", js_ref}, {"netlinkClose", js_close}};
	for (size_t i = 0; i < sizeof fns / sizeof fns[0]; i++) {
		napi_value f;
		CHECK(env, napi_create_function(env, fns[i].name, NAPI_AUTO_LENGTH, fns[i].fn, NULL, &f));
		CHECK(env, napi_set_named_property(env, exports, fns[i].name, f));
	}
	return exports;
}
