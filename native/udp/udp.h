/*
 * The data plane's UDP sockets: one per worker, in a SO_REUSEPORT group on
 * the one port; the UDP GSO/GRO offload probe; and (static inline, per
 * message on the hot path) the UDP_SEGMENT and UDP_GRO control messages.
 * Threads and locking: udp_open_group and udp_probe_offloads run on the
 * caller's thread at open and only touch the fds they create; the inline
 * helpers work on the calling thread's own message headers.
 */
#ifndef RUDDER_UDP_H
#define RUDDER_UDP_H

#include <netinet/in.h>
#include <netinet/udp.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/socket.h>

/* UDP GSO limits: segments per sendmsg (UDP_MAX_SEGMENTS is 64 on older kernels) and bytes of one UDP payload. */
#define UDP_GSO_MAXSEGS 64
#define UDP_MAX_PAYLOAD 65507

/* Room for one message's UDP_SEGMENT (send) or UDP_GRO (receive) control message. */
union udp_cmsg_segment {
	char buf[CMSG_SPACE(sizeof(uint16_t))];
	struct cmsghdr align;
};
union udp_cmsg_gro {
	char buf[CMSG_SPACE(sizeof(int))];
	struct cmsghdr align;
};

/*
 * A peer's underlay address, as sendmmsg takes it and recvmmsg fills it:
 * IPv4 or IPv6 (the data plane's sockets are of one family, fixed at open).
 */
union udp_addr {
	struct sockaddr sa;
	struct sockaddr_in v4;
	struct sockaddr_in6 v6;
};

/* The size of `a` for msg_namelen / sendto. */
static inline socklen_t udp_addr_len(const union udp_addr *a)
{
	return a->sa.sa_family == AF_INET6 ? (socklen_t)sizeof a->v6 : (socklen_t)sizeof a->v4;
}

/* An IPv4 address and port (host order). */
static inline void udp_addr_set4(union udp_addr *a, uint32_t ip, uint16_t port)
{
	memset(a, 0, sizeof *a);
	a->v4.sin_family = AF_INET;
	a->v4.sin_addr.s_addr = htonl(ip);
	a->v4.sin_port = htons(port);
}

/* An IPv6 address (16 bytes, network order) and port (host order). */
static inline void udp_addr_set6(union udp_addr *a, const uint8_t ip6[16], uint16_t port)
{
	memset(a, 0, sizeof *a);
	a->v6.sin6_family = AF_INET6;
	memcpy(&a->v6.sin6_addr, ip6, 16);
	a->v6.sin6_port = htons(port);
}

/* The port of `a` (host order); 0 for an address of neither family. */
static inline uint16_t udp_addr_port(const union udp_addr *a)
{
	return a->sa.sa_family == AF_INET6 ? ntohs(a->v6.sin6_port) : a->sa.sa_family == AF_INET ? ntohs(a->v4.sin_port)
	                                                                                         : 0;
}

/* Whether a and b are the same address and port. */
static inline bool udp_addr_same(const union udp_addr *a, const union udp_addr *b)
{
	if (a->sa.sa_family != b->sa.sa_family)
		return false;
	if (a->sa.sa_family == AF_INET6)
		return a->v6.sin6_port == b->v6.sin6_port && memcmp(&a->v6.sin6_addr, &b->v6.sin6_addr, 16) == 0;
	return a->v4.sin_port == b->v4.sin_port && a->v4.sin_addr.s_addr == b->v4.sin_addr.s_addr;
}

/*
 * The address bytes then the port (network order) of `a`, as WireGuard's
 * cookie MACs take a sender: 6 bytes for IPv4, 18 for IPv6. Returns the length.
 */
static inline size_t udp_addr_bytes(const union udp_addr *a, uint8_t out[18])
{
	if (a->sa.sa_family == AF_INET6) {
		memcpy(out, &a->v6.sin6_addr, 16);
		memcpy(out + 16, &a->v6.sin6_port, 2);
		return 18;
	}
	memcpy(out, &a->v4.sin_addr.s_addr, 4);
	memcpy(out + 4, &a->v4.sin_port, 2);
	return 6;
}

struct udp_caps {
	bool gso; /* UDP_SEGMENT: one sendmsg carries many datagrams */
	bool gro; /* UDP_GRO: one recvmsg returns many datagrams */
	char note[128]; /* why one is off, else empty */
};

/*
 * Opens `n` non-blocking, close-on-exec sockets into fds[], in a
 * SO_REUSEPORT group when n > 1 (after a plain bind that proves the port is
 * free, see udp.c). IPv4 (v6 false): bound to bind_addr:port (host order;
 * 0 = any). IPv6 (v6 true): AF_INET6 with IPV6_V6ONLY, bound to [::]:port.
 * Returns 0, or -errno with a description in `err` and nothing left open.
 */
int udp_open_group(bool v6, uint32_t bind_addr, uint16_t port, unsigned n, int *fds, char *err, size_t errlen);

/* Which of UDP GSO and GRO the kernel takes on `fd` (GRO is switched on when it does). */
void udp_probe_offloads(int fd, struct udp_caps *caps);

/* Switches UDP GRO on for a further socket of the group (after the probe found it). */
void udp_enable_gro(int fd);

/* Marks `mh` as a UDP GSO message of gso_size datagrams (the kernel cuts it; the last may be shorter). */
static inline void udp_set_segment(struct msghdr *mh, union udp_cmsg_segment *cm, uint16_t gso_size)
{
	mh->msg_control = cm->buf;
	mh->msg_controllen = sizeof cm->buf;
	struct cmsghdr *c = CMSG_FIRSTHDR(mh);
	c->cmsg_level = SOL_UDP;
	c->cmsg_type = UDP_SEGMENT;
	c->cmsg_len = CMSG_LEN(sizeof(uint16_t));
	memcpy(CMSG_DATA(c), &gso_size, sizeof gso_size);
}

/* The UDP_GRO segment size of a received message, or 0 when it is one datagram. */
static inline size_t udp_gro_size(struct msghdr *mh)
{
	for (struct cmsghdr *c = CMSG_FIRSTHDR(mh); c; c = CMSG_NXTHDR(mh, c)) {
		if (c->cmsg_level == SOL_UDP && c->cmsg_type == UDP_GRO && c->cmsg_len >= CMSG_LEN(sizeof(int))) {
			int v;
			memcpy(&v, CMSG_DATA(c), sizeof v);
			return v > 0 ? (size_t)v : 0;
		}
	}
	return 0;
}

#endif
