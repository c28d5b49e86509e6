/*
 * Segmentation of TUN super-packets: TCP and UDP over IPv4 and IPv6, what
 * the kernel's tcp_gso_segment and __udp_gso_segment do. No I/O, no allocation,
 * no N-API, no global state: native/test/gso_test.c drives it standalone.
 * Threads and locking: none; any thread calls these on its own buffers.
 */
#ifndef RUDDER_OFFLOAD_GSO_H
#define RUDDER_OFFLOAD_GSO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Room for one segment's headers: IPv4 (<= 60) + TCP (<= 60), or IPv6 (40) + TCP (<= 60). */
#define GSO_HDR_MAX 120

#define TCP_FL_FIN 0x01
#define TCP_FL_SYN 0x02
#define TCP_FL_RST 0x04
#define TCP_FL_PSH 0x08
#define TCP_FL_ACK 0x10
#define TCP_FL_URG 0x20
#define TCP_FL_ECE 0x40
#define TCP_FL_CWR 0x80

/* One MTU-sized segment: headers in a caller buffer, payload a slice of the super-packet. */
struct gso_seg {
	uint8_t *hdr;
	const uint8_t *pay;
	uint16_t hdr_len;
	uint16_t pay_len;
};

enum { GSO_ERR_MALFORMED = -1,
	GSO_ERR_TOO_MANY = -2 };

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

/* A UDP/IPv4 datagram that may be segmented or merged: no IP options, whole, not a fragment, UDP length == IP payload. */
bool udp4_whole(const uint8_t *pkt, size_t len);

/* UDP/IPv6 headers (no extension headers): what an IPv6 UDP super-packet and each of its segments carries. */
#define GSO_UDP6_HDR 48

/* Header length (IPv6 + TCP) of a TCP/IPv6 packet without extension headers, 0 if it is not one. */
size_t tcp6_hdr_len(const uint8_t *pkt, size_t len);

/*
 * The IPv6 twins of the above, for packets without extension headers (the
 * next header is TCP or UDP) whose payload length == len - 40: segment i
 * gets the payload length, TCP seq + i * mss (CWR, FIN, PSH as for IPv4) or
 * the UDP length, and a full checksum over the IPv6 pseudo-header (a UDP sum
 * of 0 is sent as 0xffff). No IP ID, no header checksum. Same returns.
 */
int gso_tcp6_segment(const uint8_t *pkt, size_t len, size_t mss, uint8_t *hdrs, struct gso_seg *segs, int max);
size_t gso_tcp6_count(const uint8_t *pkt, size_t len, size_t mss);
int gso_udp6_segment(const uint8_t *pkt, size_t len, size_t mss, uint8_t *hdrs, struct gso_seg *segs, int max);
size_t gso_udp6_count(const uint8_t *pkt, size_t len, size_t mss);
/* A UDP/IPv6 datagram without extension headers, payload length == len - 40 == UDP length. */
bool udp6_whole(const uint8_t *pkt, size_t len);

#endif
