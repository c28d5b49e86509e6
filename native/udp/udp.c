/*
 * The data plane's UDP sockets (see udp.h). Threads and locking: none; runs
 * on the caller's thread (dp_open) and only touches the fds it creates.
 */
#define _GNU_SOURCE
#include "udp/udp.h"

#include "common/err.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

static void add_note(struct udp_caps *caps, const char *what, int e)
{
	size_t used = strlen(caps->note);
	snprintf(caps->note + used, sizeof caps->note - used, "%s%s: %s", used ? "; " : "", what, strerror(e));
}

/* UDP GSO and GRO, each only if the kernel takes the socket option (Linux >= 4.18 / 5.0). */
void udp_probe_offloads(int fd, struct udp_caps *caps)
{
	memset(caps, 0, sizeof *caps);
	int v = 0;
	socklen_t vl = sizeof v;
	if (getsockopt(fd, SOL_UDP, UDP_SEGMENT, &v, &vl) == 0)
		caps->gso = true;
	else
		add_note(caps, "UDP_SEGMENT", errno);
	v = 1;
	if (setsockopt(fd, SOL_UDP, UDP_GRO, &v, sizeof v) == 0)
		caps->gro = true;
	else
		add_note(caps, "UDP_GRO", errno);
}

void udp_enable_gro(int fd)
{
	int v = 1;
	setsockopt(fd, SOL_UDP, UDP_GRO, &v, sizeof v);
}

/* One socket of the port; in a SO_REUSEPORT group when the data plane has more than one queue. */
static int udp_socket(bool v6, uint32_t bind_addr, uint16_t port, bool reuseport, char *err, size_t errlen)
{
	int fd = socket(v6 ? AF_INET6 : AF_INET, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return errf(err, errlen, errno, "UDP%s socket", v6 ? " IPv6" : "");
	/* Let the kernel fragment oversized outer datagrams instead of failing them with EMSGSIZE. */
	int v = v6 ? IPV6_PMTUDISC_DONT : IP_PMTUDISC_DONT;
	if (v6)
		setsockopt(fd, IPPROTO_IPV6, IPV6_MTU_DISCOVER, &v, sizeof v);
	else
		setsockopt(fd, IPPROTO_IP, IP_MTU_DISCOVER, &v, sizeof v);
	/* An IPv6 underlay is IPv6 only: no IPv4-mapped peers beside it. */
	v = 1;
	if (v6 && setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &v, sizeof v) < 0) {
		int e = errno;
		close(fd);
		return errf(err, errlen, e, "UDP socket option IPV6_V6ONLY%s", "");
	}
	/* Bigger buffers absorb bursts between batches; FORCE needs CAP_NET_ADMIN, else capped by sysctl. */
	v = 4 << 20;
	if (setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &v, sizeof v) < 0)
		setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &v, sizeof v);
	if (setsockopt(fd, SOL_SOCKET, SO_SNDBUFFORCE, &v, sizeof v) < 0)
		setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &v, sizeof v);
	v = 1;
	if (reuseport && setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &v, sizeof v) < 0) {
		int e = errno;
		close(fd);
		return errf(err, errlen, e, "UDP socket option SO_REUSEPORT%s", "");
	}

	union udp_addr sa;
	if (v6)
		udp_addr_set6(&sa, (const uint8_t[16]){0}, port);
	else
		udp_addr_set4(&sa, bind_addr, port);
	if (bind(fd, &sa.sa, udp_addr_len(&sa)) < 0) {
		int e = errno;
		char where[64];
		if (v6)
			snprintf(where, sizeof where, "[::]:%u", port);
		else
			snprintf(where, sizeof where, "%s:%u", inet_ntoa(sa.v4.sin_addr), port);
		close(fd);
		return errf(err, errlen, e, "bind UDP %s", where);
	}
	return fd;
}

/*
 * With several sockets, a plain bind comes first and is let go at once: a
 * port another process holds (another daemon, even one in its own
 * SO_REUSEPORT group) fails here with EADDRINUSE exactly as with one queue,
 * and no other daemon can join our group later, since its own plain bind
 * fails against it. The kernel spreads received datagrams over the group by
 * the outer addresses and ports, so everything from one peer reaches one
 * worker, in order.
 */
int udp_open_group(bool v6, uint32_t bind_addr, uint16_t port, unsigned n, int *fds, char *err, size_t errlen)
{
	if (n > 1) {
		int probe = udp_socket(v6, bind_addr, port, false, err, errlen);
		if (probe < 0)
			return probe;
		close(probe);
	}
	for (unsigned k = 0; k < n; k++) {
		int fd = udp_socket(v6, bind_addr, port, n > 1, err, errlen);
		if (fd < 0) {
			while (k > 0)
				close(fds[--k]);
			return fd;
		}
		fds[k] = fd;
	}
	return 0;
}
