/*
 * sd_notify without libsystemd. Threads and locking: none; runs on the
 * caller's thread with its own short-lived socket, so calls are independent.
 */
#define _GNU_SOURCE
#include "notify/notify.h"

#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

static int fail(char *err, size_t errlen, int e, const char *what, const char *path)
{
	const char *en = strerrorname_np(e);
	snprintf(err, errlen, "notify %s: %s: %s (%s)", path, what, strerror(e), en ? en : "?");
	return -e;
}

int rudder_notify(const char *path, const char *msg, size_t len, char *err, size_t errlen)
{
	struct sockaddr_un sa;
	memset(&sa, 0, sizeof sa);
	sa.sun_family = AF_UNIX;
	size_t plen = strlen(path);
	/* Abstract names are not NUL-terminated: the address length bounds them. */
	if (plen < 2 && (plen == 0 || path[0] == '@')) {
		snprintf(err, errlen, "notify: socket path '%s' is empty", path);
		return -EINVAL;
	}
	if (plen > sizeof sa.sun_path - (path[0] == '@' ? 0 : 1)) {
		snprintf(err, errlen, "notify: socket path '%s' is too long (max %zu)", path,
		        sizeof sa.sun_path - 1);
		return -ENAMETOOLONG;
	}
	memcpy(sa.sun_path, path, plen);
	socklen_t salen = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + plen);
	if (path[0] == '@')
		sa.sun_path[0] = '\0';
	else
		salen += 1;

	int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return fail(err, errlen, errno, "socket", path);
	ssize_t n;
	do
		n = sendto(fd, msg, len, MSG_NOSIGNAL, (struct sockaddr *)&sa, salen);
	while (n < 0 && errno == EINTR);
	int e = errno;
	close(fd);
	if (n < 0)
		return fail(err, errlen, e, "sendto", path);
	if ((size_t)n != len) {
		snprintf(err, errlen, "notify %s: short send (%zd of %zu bytes)", path, n, len);
		return -EIO;
	}
	return 0;
}
