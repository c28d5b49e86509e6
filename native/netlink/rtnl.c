/*
 * NETLINK_ROUTE socket calls (see rtnl.h). Threads and locking: none; each
 * call runs on the caller's thread on the caller's descriptor.
 */
#define _GNU_SOURCE
#include "netlink/rtnl.h"

#include "common/err.h"

#include <errno.h>
#include <linux/netlink.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#ifndef SOL_NETLINK
#define SOL_NETLINK 270
#endif

int rtnl_open(const uint32_t *groups, size_t ngroups, uint32_t rcvbuf, char *err, size_t errlen)
{
	int fd = socket(AF_NETLINK, SOCK_RAW | SOCK_NONBLOCK | SOCK_CLOEXEC, NETLINK_ROUTE);
	if (fd < 0)
		return errf(err, errlen, errno, "netlink socket%s", "");
	int e;
	if (rcvbuf != 0) {
		int v = rcvbuf > (uint32_t)(1 << 30) ? 1 << 30 : (int)rcvbuf;
		if (setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &v, sizeof v) < 0) {
			e = errf(err, errlen, errno, "netlink SO_RCVBUF%s", "");
			goto fail;
		}
	}
	struct sockaddr_nl sa;
	memset(&sa, 0, sizeof sa);
	sa.nl_family = AF_NETLINK; /* nl_pid 0: the kernel picks a free port */
	if (bind(fd, (struct sockaddr *)&sa, sizeof sa) < 0) {
		e = errf(err, errlen, errno, "netlink bind%s", "");
		goto fail;
	}
	for (size_t i = 0; i < ngroups; i++) {
		int g = (int)groups[i];
		if (setsockopt(fd, SOL_NETLINK, NETLINK_ADD_MEMBERSHIP, &g, sizeof g) < 0) {
			char what[40];
			snprintf(what, sizeof what, "%u", groups[i]);
			e = errf(err, errlen, errno, "netlink join group %s", what);
			goto fail;
		}
	}
	return fd;
fail:
	close(fd);
	return e;
}

int rtnl_send(int fd, const void *buf, size_t len)
{
	struct sockaddr_nl kernel;
	memset(&kernel, 0, sizeof kernel);
	kernel.nl_family = AF_NETLINK;
	for (;;) {
		ssize_t n = sendto(fd, buf, len, MSG_DONTWAIT, (struct sockaddr *)&kernel, sizeof kernel);
		if (n >= 0)
			return n == (ssize_t)len ? 0 : -EMSGSIZE;
		if (errno != EINTR)
			return -errno;
	}
}

ssize_t rtnl_recv(int fd, void *buf, size_t cap, bool *truncated)
{
	struct sockaddr_nl from;
	struct iovec iov = {.iov_base = buf, .iov_len = cap};
	for (;;) {
		struct msghdr mh = {.msg_name = &from, .msg_namelen = sizeof from, .msg_iov = &iov, .msg_iovlen = 1};
		/* MSG_TRUNC: the full length even when it did not fit. */
		ssize_t n = recvmsg(fd, &mh, MSG_DONTWAIT | MSG_TRUNC);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		/* Only the kernel (port 0) speaks on this socket; anything else is dropped. */
		if (from.nl_pid != 0)
			continue;
		*truncated = (mh.msg_flags & MSG_TRUNC) != 0 || (size_t)n > cap;
		return n;
	}
}
