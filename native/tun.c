/*
 * TUN device creation. Threads and locking: none; tun_open runs on the
 * caller's thread (the JS thread, through dp_open) and only touches the fd it
 * creates. Addresses, MTU and routes are the backend's business (rtnetlink),
 * so this file stops at TUNSETIFF plus one sysctl the data plane relies on.
 */
#define _GNU_SOURCE
#include "tun.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/if.h>
#include <linux/if_tun.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

static int fail(char *err, size_t errlen, int e, const char *what, const char *name)
{
	const char *en = strerrorname_np(e);
	snprintf(err, errlen, "TUN %s: %s: %s (%s)", name, what, strerror(e), en ? en : "?");
	return -e;
}

/*
 * ICMP errors the data plane generates carry the TUN's own address as source
 * and are written back into the TUN; the kernel treats a packet arriving with
 * one of its own addresses as source as martian unless accept_local is set.
 * Best effort: without it forwarding still works, only those ICMP errors are
 * lost, so a failure here must not fail the open.
 */
static void enable_accept_local(const char *ifname)
{
	char path[96];
	snprintf(path, sizeof path, "/proc/sys/net/ipv4/conf/%s/accept_local", ifname);
	int fd = open(path, O_WRONLY | O_CLOEXEC);
	if (fd < 0)
		return;
	if (write(fd, "1\n", 2) < 0) {
		/* nothing to do: see above */
	}
	close(fd);
}

int tun_open(const char *name, char *ifname, char *err, size_t errlen)
{
	size_t len = strlen(name);
	if (len == 0 || len >= IFNAMSIZ || strchr(name, '/') != NULL || strchr(name, '%') != NULL) {
		snprintf(err, errlen, "TUN name '%s' is invalid (1..%d characters, no '/' or '%%')", name,
			 IFNAMSIZ - 1);
		return -EINVAL;
	}
	int fd = open("/dev/net/tun", O_RDWR | O_NONBLOCK | O_CLOEXEC);
	if (fd < 0)
		return fail(err, errlen, errno, "open /dev/net/tun", name);

	struct ifreq ifr;
	memset(&ifr, 0, sizeof ifr);
	ifr.ifr_flags = IFF_TUN | IFF_NO_PI;
	memcpy(ifr.ifr_name, name, len);
	if (ioctl(fd, TUNSETIFF, &ifr) < 0) {
		int e = errno;
		close(fd);
		return fail(err, errlen, e, "TUNSETIFF", name);
	}
	memcpy(ifname, ifr.ifr_name, IFNAMSIZ);
	ifname[IFNAMSIZ - 1] = '\0';
	enable_accept_local(ifname);
	return fd;
}
