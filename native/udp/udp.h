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

struct udp_caps {
	bool gso; /* UDP_SEGMENT: one sendmsg carries many datagrams */
	bool gro; /* UDP_GRO: one recvmsg returns many datagrams */
	char note[128]; /* why one is off, else empty */
};

/*
 * Opens `n` non-blocking, close-on-exec sockets bound to bind_addr:port
 * (host order; 0 = any) into fds[], in a SO_REUSEPORT group when n > 1 (after
 * a plain bind that proves the port is free, see udp.c). Returns 0, or -errno
 * with a description in `err` and nothing left open.
 */
int udp_open_group(uint32_t bind_addr, uint16_t port, unsigned n, int *fds, char *err, size_t errlen);

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
