/*
 * The data path's side of the TUN device: the only place that reads or
 * writes the virtio-net header in front of each packet (when the device was
 * opened with IFF_VNET_HDR). A read is split into the packet and what the
 * header says about it (a plain packet, or a TCP/UDP super-packet to cut into
 * segments of gso_size); writes put a zero header in front of a plain packet
 * and the coalescer's header (offload/gro.c fills it) in front of a
 * super-packet. All static inline: called per packet on the hot path.
 * No state, no threads, no locking (each worker thread uses its own fd).
 */
#ifndef RUDDER_TUN_VNET_H
#define RUDDER_TUN_VNET_H

#include <errno.h>
#include <linux/virtio_net.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/uio.h>

#include "common/sys.h"
#include "offload/csum.h"
#include "offload/gro.h"

#define TUN_VNET_LEN sizeof(struct virtio_net_hdr)

/* What one TUN read holds, once its virtio header is taken off. */
enum tun_kind {
	TUN_PLAIN, /* one packet (a partial checksum already completed) */
	TUN_TCP4_GSO, /* a TCP/IPv4 super-packet to cut into gso_size segments */
	TUN_UDP4_GSO, /* a UDP/IPv4 super-packet (only when USO was granted) */
	TUN_TCP6_GSO, /* a TCP/IPv6 super-packet */
	TUN_UDP6_GSO, /* a UDP/IPv6 super-packet (only when USO was granted) */
	TUN_MALFORMED, /* short read, bad checksum offsets, or a GSO type never asked for */
};

struct tun_pkt {
	uint8_t *p;
	size_t len;
	uint16_t gso_size; /* payload bytes per segment, for the *_GSO kinds */
};

/*
 * Takes the virtio header off one read of `len` bytes at `buf` (when the
 * device has one: `vnet`), completes a partial checksum (NEEDS_CSUM) of a
 * plain IPv4 or IPv6 packet in place, and says what the packet is. `uso`: the
 * device was granted UDP super-packets. No copy of the packet.
 */
static inline enum tun_kind tun_parse(bool vnet, bool uso, uint8_t *buf, size_t len, struct tun_pkt *out)
{
	struct virtio_net_hdr vh;
	out->p = buf;
	out->len = len;
	out->gso_size = 0;
	if (!vnet)
		return TUN_PLAIN;
	if (len < TUN_VNET_LEN)
		return TUN_MALFORMED;
	memcpy(&vh, buf, TUN_VNET_LEN);
	uint8_t *p = buf + TUN_VNET_LEN;
	len -= TUN_VNET_LEN;
	out->p = p;
	out->len = len;
	uint8_t gso = vh.gso_type & (uint8_t)~VIRTIO_NET_HDR_GSO_ECN;
	if (gso == VIRTIO_NET_HDR_GSO_NONE) {
		if ((vh.flags & VIRTIO_NET_HDR_F_NEEDS_CSUM) && len >= 1 && ((p[0] >> 4) == 4 || (p[0] >> 4) == 6) &&
		        !gso_complete_csum(p, len, vh.csum_start, vh.csum_offset))
			return TUN_MALFORMED;
		return TUN_PLAIN;
	}
	out->gso_size = vh.gso_size;
	if (gso == VIRTIO_NET_HDR_GSO_TCPV4)
		return TUN_TCP4_GSO;
	if (gso == VIRTIO_NET_HDR_GSO_UDP_L4 && uso)
		return len >= 1 && (p[0] >> 4) == 6 ? TUN_UDP6_GSO : TUN_UDP4_GSO;
	if (gso == VIRTIO_NET_HDR_GSO_TCPV6)
		return TUN_TCP6_GSO;
	return TUN_MALFORMED; /* a GSO type never asked for */
}

static const struct virtio_net_hdr tun_zero_vnet;

/* Writes one packet to the TUN (behind a zero virtio header when the device has them). */
static inline ssize_t tun_write1(int fd, bool vnet, const void *pkt, size_t len)
{
	struct iovec v[2] = {{(void *)&tun_zero_vnet, TUN_VNET_LEN}, {(void *)pkt, len}};
	ssize_t r;
	do
		r = vnet ? sys_writev(fd, v, 2) : sys_write(fd, pkt, len);
	while (r < 0 && errno == EINTR);
	return r;
}

/* The first iovec of a super-packet write: the coalescer's virtio header. */
static inline void tun_super_hdr(struct iovec *v, const struct gro_item *it)
{
	v->iov_base = (void *)&it->vh;
	v->iov_len = TUN_VNET_LEN;
}

/* Writes a super-packet: v[0] from tun_super_hdr, then the packet's pieces. */
static inline ssize_t tun_writev(int fd, const struct iovec *v, int nv)
{
	ssize_t r;
	do
		r = sys_writev(fd, v, nv);
	while (r < 0 && errno == EINTR);
	return r;
}

#endif
