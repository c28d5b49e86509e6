/*
 * Pure packet code for the udp data plane's offloads: Internet checksums,
 * TCP/IPv4 and UDP/IPv4 segmentation of a TUN super-packet (what the
 * kernel's tcp_gso_segment and __udp_gso_segment do) and coalescing of
 * received TCP/IPv4 segments and UDP/IPv4 datagrams into super-packets (what
 * the kernel's tcp_gro_receive and udp_gro_receive_segment do). No I/O, no
 * allocation, no N-API, no global state: native/test/gso_test.c drives these
 * functions standalone.
 */
#ifndef RUDDER_GSO_H
#define RUDDER_GSO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <linux/virtio_net.h>

/* Room for one segment's headers: IPv4 (<= 60) + TCP (<= 60). */
#define GSO_HDR_MAX 120
/* Most segments one coalesced super-packet may hold (the kernel's GRO allows 64 too). */
#define GRO_MAX_SEGS 64
/* Open flows the coalescer tracks at once (the kernel's GRO keeps 8 per NAPI list too). */
#define GRO_FLOWS 8

#define TCP_FL_FIN 0x01
#define TCP_FL_SYN 0x02
#define TCP_FL_RST 0x04
#define TCP_FL_PSH 0x08
#define TCP_FL_ACK 0x10
#define TCP_FL_URG 0x20
#define TCP_FL_ECE 0x40
#define TCP_FL_CWR 0x80

/*
 * One's-complement sum, accumulated 64 bits at a time. `p` must start at an
 * even offset of the checksummed data; only the last region added may have an
 * odd length. Start with acc = 0; csum_fold16 gives the 16-bit sum in network
 * order as a number (not complemented).
 */
uint64_t csum_acc(const uint8_t *p, size_t len, uint64_t acc);
/* Tests only: true makes csum_acc skip its SIMD path (same results, checked by gso_test). */
extern bool gso_csum_scalar_only;
uint16_t csum_fold16(uint64_t acc);

/* Sum of the TCP/UDP pseudo-header of an IPv4 packet `ip` for an L4 length `l4len` and protocol `proto`. */
uint64_t csum_pseudo4(const uint8_t *ip, uint8_t proto, uint32_t l4len);

/* True if the IPv4 header checksum of `ip` (ihl from its first byte) verifies. */
bool ip4_csum_ok(const uint8_t *ip);
/* Recomputes the IPv4 header checksum in place. */
void ip4_csum_set(uint8_t *ip);

/*
 * VIRTIO_NET_HDR_F_NEEDS_CSUM for a packet without GSO: the field at
 * csum_start + csum_offset holds the pseudo-header sum; the checksum over
 * [csum_start, len) is folded, complemented and stored there. Returns false
 * (packet untouched) if the offsets do not fit in the packet.
 */
bool gso_complete_csum(uint8_t *pkt, size_t len, size_t csum_start, size_t csum_offset);

/* One MTU-sized segment: headers in a caller buffer, payload a slice of the super-packet. */
struct gso_seg {
	uint8_t *hdr;
	const uint8_t *pay;
	uint16_t hdr_len;
	uint16_t pay_len;
};

enum { GSO_ERR_MALFORMED = -1, GSO_ERR_TOO_MANY = -2 };

/* Header length (IP + TCP) of a structurally valid TCP/IPv4 packet, 0 if it is not one. */
size_t tcp4_hdr_len(const uint8_t *pkt, size_t len);

/*
 * Splits a TCP/IPv4 super-packet (IPv4 total length == len, no fragment)
 * into segments of at most `mss` payload bytes. Segment i's headers are
 * written to hdrs + i * GSO_HDR_MAX: IP total length, IP ID + i, IP
 * checksum, TCP seq + i * mss, CWR only on the first segment, FIN and PSH
 * only on the last, full TCP checksum (pseudo-header included). The
 * super-packet's own checksum field is ignored. Its payload is not copied:
 * segs[i].pay points into `pkt`. A packet without payload is one segment.
 * Returns the segment count, GSO_ERR_MALFORMED, or GSO_ERR_TOO_MANY when more
 * than `max` segments would be needed.
 */
int gso_tcp4_segment(const uint8_t *pkt, size_t len, size_t mss, uint8_t *hdrs, struct gso_seg *segs, int max);

/* Segment count gso_tcp4_segment would produce (>= 1), or 0 if malformed. */
size_t gso_tcp4_count(const uint8_t *pkt, size_t len, size_t mss);

/* VIRTIO_NET_HDR_GSO_UDP_L4 (Linux >= 6.2 headers; the value is fixed by the virtio spec). */
#ifndef VIRTIO_NET_HDR_GSO_UDP_L4
#define VIRTIO_NET_HDR_GSO_UDP_L4 5
#endif
/* UDP/IPv4 headers without IP options: what a UDP super-packet and each of its segments carries. */
#define GSO_UDP_HDR 28

/*
 * Splits a UDP/IPv4 super-packet (no IP options, IPv4 total length == len,
 * UDP length == len - 20, no fragment) into datagrams of `mss` payload bytes,
 * the last possibly shorter, as the kernel's UDP GSO does: segment i gets
 * IP total length, IP ID + i, IP checksum, UDP length and a full UDP
 * checksum (0xffff for a sum of 0). The super-packet's checksum field is
 * ignored. Headers go to hdrs + i * GSO_HDR_MAX, payloads stay in `pkt`.
 * Returns the segment count (>= 1), GSO_ERR_MALFORMED (also for an empty
 * payload) or GSO_ERR_TOO_MANY.
 */
int gso_udp4_segment(const uint8_t *pkt, size_t len, size_t mss, uint8_t *hdrs, struct gso_seg *segs, int max);

/* Segment count gso_udp4_segment would produce (>= 1), or 0 if malformed. */
size_t gso_udp4_count(const uint8_t *pkt, size_t len, size_t mss);

/* ---- coalescing (receive side) ------------------------------------------- */

/* A received IPv4 packet, already validated (version 4, ihl sane, total length == len, header checksum). */
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
size_t gro_coalesce(struct gro_pkt *pkts, size_t n, uint32_t *next, struct gro_item *items, unsigned flags);

/* Restores a merged item's first packet to its original bytes (for writing the packets one by one). */
void gro_item_undo(const struct gro_pkt *pkts, const struct gro_item *it);

#endif
