/*
 * Coalescing of received TCP segments (IPv4, and IPv6 without extension
 * headers) and UDP/IPv4 datagrams into super-packets, what the kernel's tcp_gro_receive and
 * udp_gro_receive_segment do. The result carries the virtio-net header the
 * TUN wants in front of a super-packet (filled here, written by tun/).
 * No I/O, no allocation, no N-API, no global state.
 * Threads and locking: none; each rx thread passes its own tables.
 */
#ifndef RUDDER_OFFLOAD_GRO_H
#define RUDDER_OFFLOAD_GRO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <linux/virtio_net.h>

#include "offload/gso.h"

/* VIRTIO_NET_HDR_GSO_UDP_L4 (Linux >= 6.2 headers; the value is fixed by the virtio spec). */
#ifndef VIRTIO_NET_HDR_GSO_UDP_L4
#define VIRTIO_NET_HDR_GSO_UDP_L4 5
#endif

/* Most segments one coalesced super-packet may hold (the kernel's GRO allows 64 too). */
#define GRO_MAX_SEGS 64
/* Open flows the coalescer tracks at once (the kernel's GRO keeps 8 per NAPI list too). */
#define GRO_FLOWS 8

/* A received packet, already validated (IPv4: ihl sane, total length == len, header checksum; IPv6: payload length == len - 40). */
struct gro_pkt {
	uint8_t *p;
	uint32_t len;
};

#define GRO_END UINT32_MAX

/*
 * One packet to write: `count` packets linked from `first` through next[]
 * (the last has next == GRO_END). With count == 1 the packet is unchanged and
 * vh is all zero. With count > 1 the first packet's headers were rewritten
 * into the super-packet's (total length, IP checksum; TCP: FIN/PSH of the
 * last segment; UDP: UDP length; the TCP/UDP checksum field = pseudo-header
 * sum for NEEDS_CSUM) and the
 * super-packet is: first packet whole, then each further packet's payload
 * (from its `hdr_len`). `saved` holds the first packet's original headers
 * so gro_item_undo can restore them.
 */
struct gro_item {
	uint32_t first;
	uint32_t last;
	uint32_t count;
	uint32_t total; /* bytes of the resulting packet */
	uint16_t hdr_len;
	uint16_t mss;
	struct virtio_net_hdr vh;
	uint8_t saved[GSO_HDR_MAX];
};

/*
 * Groups pkts[0..n) into items (at most n), in an order that keeps every
 * flow's packets in arrival order. Consecutive TCP segments of one flow merge
 * when the kernel's GRO would merge them: same addresses, ports, TOS, TTL,
 * DF, IP ID + 1, no IP options, same TCP header apart from seq, checksum and
 * CWR/PSH/FIN (CWR only on a group's first, PSH/FIN end a group), seq
 * contiguous, payload <= the first's (a shorter one ends the group), valid
 * TCP checksum, total <= 65535, <= GRO_MAX_SEGS. Anything else is an item of
 * its own, untouched. next[] must hold n entries. Returns the item count.
 * TCP/IPv6 segments merge by the same rules (no IP ID: traffic class, flow
 * label and hop limit equal instead) into a GSO_TCPV6 super-packet.
 */
/*
 * With GRO_UDP in `flags`, consecutive UDP datagrams of one flow merge too,
 * into a VIRTIO_NET_HDR_GSO_UDP_L4 super-packet: same addresses, ports, TOS,
 * TTL, DF, IP ID + 1, no IP options, not a fragment, UDP length == IP
 * payload, non-zero valid checksum, payload == the first's (a shorter one
 * ends the group), total <= 65535, <= GRO_MAX_SEGS. A UDP datagram that
 * cannot merge closes its flow's open group, as a TCP packet does.
 */
#define GRO_UDP 1u
/*
 * With GRO_CSUM_TRUSTED the caller vouches for every packet's TCP/UDP
 * checksum and it is not verified: a WireGuard packet was authenticated by
 * its AEAD, so it is exactly what the peer's stack sent (the kernel's own
 * WireGuard marks decrypted packets CHECKSUM_UNNECESSARY for the same
 * reason). A super-packet's checksum is recomputed by the kernel
 * (NEEDS_CSUM), so a segment the caller wrongly vouched for would arrive
 * with a valid one: plain UDP must never pass this flag.
 */
#define GRO_CSUM_TRUSTED 2u
size_t gro_coalesce(struct gro_pkt *pkts, size_t n, uint32_t *next, struct gro_item *items, unsigned flags);

/* Restores a merged item's first packet to its original bytes (for writing the packets one by one). */
void gro_item_undo(const struct gro_pkt *pkts, const struct gro_item *it);

#endif
