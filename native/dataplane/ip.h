/*
 * IPv4 checks of the data path, both ways, and the ICMP errors the send path
 * answers with (no route, TTL exceeded). The per-packet checks are static
 * inline; generating an ICMP error (rare) is in ip.c.
 * Threads and locking: struct ip_ctx is set at open and read-only after,
 * except the ICMP rate limit and id, which every worker's tx passes share
 * under icmp_lock. The checks touch only the packet and the caller's
 * counters.
 *
 * IPv6: ip6.h holds the twins (ip6_route_out, ip6_accept_in, ICMPv6); the
 * callers in send.c and receive.c branch on the version nibble. Their
 * settings sit in struct ip_ctx below, beside the IPv4 ones.
 */
#ifndef RUDDER_DATAPLANE_IP_H
#define RUDDER_DATAPLANE_IP_H

#include <netinet/in.h>
#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "common/bytes.h"
#include "dataplane/counters.h"
#include "dataplane/routes.h"
#include "offload/csum.h"

/* Like Linux's icmp_msgs_per_sec / icmp_msgs_burst. */
#define ICMP_RATE 1000
#define ICMP_BURST 50
/* RFC 1812 4.3.2.3: an ICMP error should not exceed 576 bytes. */
#define ICMP_MAX 576

struct ip_ctx {
	/* Fixed at open, read-only after. */
	uint32_t local_net; /* this host's subnet: where received packets may go */
	uint32_t local_mask;
	uint32_t icmp_source; /* source of the ICMP errors written into the TUN; 0: none */
	bool tun_vnet_hdr; /* the TUN wants a virtio header in front of each write */
	/* IPv6 (ip6.h), fixed at open: this host's IPv6 subnet, the ICMPv6 source, the tunnel MTU. */
	bool local6_on; /* false: no IPv6 subnet here, every received IPv6 packet is not local */
	struct ip6key local6_net, local6_mask;
	uint8_t icmp6_source[16]; /* all zero: no ICMPv6 errors */
	uint32_t mtu; /* IPv6 packets (or segments) above it are answered packet-too-big; 0: no check */

	/* icmp_lock guards the rate limit (ICMP and ICMPv6 share it) and the IP id below (shared by every worker; rare). */
	pthread_mutex_t icmp_lock;
	double icmp_tokens;
	struct timespec icmp_last;
	uint16_t icmp_id;
};

void ip_ctx_init(struct ip_ctx *ip, uint32_t local_net, uint8_t local_prefix, uint32_t icmp_source);
void ip_ctx_destroy(struct ip_ctx *ip);

/*
 * Writes an ICMP error of `type`/`code` about `orig` (a structurally valid
 * IPv4 packet of `len` bytes) into the TUN queue `tun_fd`, unless RFC 1122
 * or the rate limit says not to. For a super-packet one error answers all
 * its segments, as the kernel does for a GSO packet it cannot forward.
 */
void icmp_error(struct ip_ctx *ip, int tun_fd, const uint8_t *orig, size_t len, uint8_t type, uint8_t code,
        uint64_t *cnt);

/* Takes one token of the ICMP rate limit (under icmp_lock); false: over the limit, send nothing. */
bool icmp_rate_ok(struct ip_ctx *ip);

static inline bool is_martian_src(uint32_t a)
{
	return a == 0 || a == 0xffffffffu || (a >> 28) == 0xe || (a >> 24) == 127;
}

/* RFC 1624 eqn. 3: HC' = ~(~HC + ~m + m'), m = the 16-bit word holding TTL. */
static inline void ttl_decrement(uint8_t *h)
{
	uint16_t m = get16(h + 8);
	h[8]--;
	uint16_t m2 = get16(h + 8);
	uint32_t sum = (uint32_t)(uint16_t)~get16(h + 10) + (uint16_t)~m + m2;
	sum = (sum & 0xffff) + (sum >> 16);
	sum = (sum & 0xffff) + (sum >> 16);
	put16(h + 10, (uint16_t)~sum);
}

/*
 * Send path: returns true if the packet is to be sent to *dst (TTL already
 * decremented). `wire` is how many packets it stands for (a super-packet's
 * segment count), so drops are counted per packet that would have been on
 * the wire. The TTL of a super-packet is decremented once in the headers
 * every segment copies. ICMP errors go into the TUN queue `tun_fd`.
 */
static inline bool ip4_route_out(struct ip_ctx *ip, int tun_fd, const struct rtable *t, uint8_t *p, size_t len,
        union udp_addr *dst, uint64_t wire, uint64_t *cnt)
{
	if (len < 1 || (p[0] >> 4) != 4) {
		cnt[DP_DROP_NOT_IPV4] += wire;
		return false;
	}
	size_t ihl = (size_t)(p[0] & 0xf) * 4;
	if (len < 20 || ihl < 20 || ihl > len || get16(p + 2) != len) {
		cnt[DP_DROP_MALFORMED] += wire;
		return false;
	}
	const struct rt_entry *e = rt_lookup(t, get32(p + 16));
	if (!e) {
		cnt[DP_DROP_NO_ROUTE] += wire;
		icmp_error(ip, tun_fd, p, len, 3, 0, cnt);
		return false;
	}
	if (p[8] <= 1) {
		cnt[DP_DROP_TTL] += wire;
		icmp_error(ip, tun_fd, p, len, 11, 0, cnt);
		return false;
	}
	ttl_decrement(p);
	*dst = e->dst;
	return true;
}

/* Receive path: validates one inner packet from a peer (the sender was checked by the caller). */
static inline bool ip4_accept_in(const struct ip_ctx *ip, const uint8_t *p, size_t len, bool truncated, uint64_t *cnt)
{
	size_t ihl = len ? (size_t)(p[0] & 0xf) * 4 : 0;
	if (truncated || len < 20 || (p[0] >> 4) != 4 || ihl < 20 || ihl > len || get16(p + 2) != len ||
	        !ip4_csum_ok(p) || (get16(p + 6) & 0x8000) ||
	        (size_t)(get16(p + 6) & 0x1fff) * 8 + len > 65535 || is_martian_src(get32(p + 12))) {
		cnt[DP_DROP_MALFORMED]++;
		return false;
	}
	if (p[8] == 0) {
		cnt[DP_DROP_TTL]++;
		return false;
	}
	if ((get32(p + 16) & ip->local_mask) != ip->local_net) {
		cnt[DP_DROP_NOT_LOCAL]++;
		return false;
	}
	return true;
}

#endif
