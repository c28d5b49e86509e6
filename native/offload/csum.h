/*
 * Internet checksums (RFC 1071) for the data plane and the offload code.
 * No I/O, no allocation, no state apart from the test switch below.
 * Threads and locking: none; any thread calls these on its own buffers.
 */
#ifndef RUDDER_OFFLOAD_CSUM_H
#define RUDDER_OFFLOAD_CSUM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

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

/* Sum of the upper-layer pseudo-header of an IPv6 packet `ip` (RFC 8200 8.1): addresses, `l4len`, `proto`. */
uint64_t csum_pseudo6(const uint8_t *ip, uint8_t proto, uint32_t l4len);

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

#endif
