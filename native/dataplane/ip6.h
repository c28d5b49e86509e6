/*
 * IPv6 checks of the data path, both ways, and the ICMPv6 errors the send
 * path answers with (no route, hop limit exceeded, packet too big): the
 * twins of ip.h's IPv4 ones, called where send.c and receive.c branch on
 * the version nibble. The per-packet checks are static inline; writing an
 * ICMPv6 error (rare) is in ip6.c.
 * Threads and locking: the settings (struct ip_ctx's IPv6 part) are set at
 * open and read-only after; the ICMP rate limit is ip.c's, under icmp_lock.
 * The checks touch only the packet and the caller's counters.
 *
 * Only the fixed header is parsed: extension headers travel as payload, as
 * a router forwards them (the ICMPv6 code walks them only to find out
 * whether a packet is itself an ICMPv6 error).
 */
#ifndef RUDDER_DATAPLANE_IP6_H
#define RUDDER_DATAPLANE_IP6_H

#include "dataplane/ip.h"

/* RFC 4443 2.4(c): an ICMPv6 error fits in the minimum IPv6 MTU. */
#define ICMP6_MAX 1280
#define IP6_HDR 40

/* Fills ip's IPv6 part (dp_config's local6_*, icmp6_source, mtu); local6_prefix 0: no IPv6 subnet. */
void ip6_ctx_init(struct ip_ctx *ip, const uint8_t local6_net[16], uint8_t local6_prefix, const uint8_t icmp6_source[16],
        uint32_t mtu);

/*
 * Writes an ICMPv6 error of `type`/`code` (with `info`: the MTU of a
 * packet-too-big) about `orig` (an IPv6 packet of `len` bytes, at least the
 * fixed header) into the TUN queue `tun_fd`, unless RFC 4443 2.4(e) or the
 * rate limit says not to: never about an ICMPv6 error, a multicast
 * destination, or an unspecified, multicast or loopback source.
 */
void icmp6_error(struct ip_ctx *ip, int tun_fd, const uint8_t *orig, size_t len, uint8_t type, uint8_t code,
        uint32_t info, uint64_t *cnt);

/* Sources a router never forwards: unspecified, loopback, multicast, link-local, IPv4-mapped. */
static inline bool is_martian_src6(const uint8_t *a)
{
	uint64_t hi = get64(a), lo = get64(a + 8);
	if (hi == 0 && (lo <= 1 || (lo >> 32) == 0xffff))
		return true;
	return a[0] == 0xff || (a[0] == 0xfe && (a[1] & 0xc0) == 0x80);
}

/* Destinations never carried: multicast and link-local (router solicitations, MLD, neighbour discovery). */
static inline bool is_link_scope6(const uint8_t *a)
{
	return a[0] == 0xff || (a[0] == 0xfe && (a[1] & 0xc0) == 0x80);
}

/*
 * Send path, IPv6: returns true if the packet is to be sent to *dst (hop
 * limit already decremented). `seg_len` is the size of the largest datagram
 * it becomes (its length, or a super-packet's headers + gso_size), checked
 * against the tunnel MTU; `wire` as in ip4_route_out. ICMPv6 errors go into
 * the TUN queue `tun_fd`.
 */
static inline bool ip6_route_out(struct ip_ctx *ip, int tun_fd, const struct rtable *t, uint8_t *p, size_t len,
        size_t seg_len, union udp_addr *dst, uint64_t wire, uint64_t *cnt)
{
	if (len < IP6_HDR || (size_t)get16(p + 4) + IP6_HDR != len) {
		cnt[DP_DROP_MALFORMED] += wire;
		return false;
	}
	if (is_link_scope6(p + 24)) {
		cnt[DP_DROP_LINK_LOCAL] += wire;
		return false;
	}
	const struct rt6_entry *e = rt6_lookup(t, ip6_key(p + 24));
	if (!e) {
		cnt[DP_DROP_NO_ROUTE] += wire;
		icmp6_error(ip, tun_fd, p, len, 1, 0, 0, cnt); /* destination unreachable: no route */
		return false;
	}
	if (p[7] <= 1) {
		cnt[DP_DROP_TTL] += wire;
		icmp6_error(ip, tun_fd, p, len, 3, 0, 0, cnt); /* time exceeded: hop limit */
		return false;
	}
	if (ip->mtu && seg_len > ip->mtu) {
		cnt[DP_DROP_TOO_BIG] += wire;
		icmp6_error(ip, tun_fd, p, len, 2, 0, ip->mtu, cnt); /* packet too big */
		return false;
	}
	p[7]--;
	*dst = e->dst;
	cnt[DP_TX_IPV6_PACKETS] += wire;
	return true;
}

/* Receive path, IPv6: validates one inner packet from a peer (the sender was checked by the caller). */
static inline bool ip6_accept_in(const struct ip_ctx *ip, const uint8_t *p, size_t len, bool truncated, uint64_t *cnt)
{
	if (truncated || len < IP6_HDR || (p[0] >> 4) != 6 || (size_t)get16(p + 4) + IP6_HDR != len ||
	        is_martian_src6(p + 8)) {
		cnt[DP_DROP_MALFORMED]++;
		return false;
	}
	if (p[7] == 0) {
		cnt[DP_DROP_TTL]++;
		return false;
	}
	struct ip6key d = ip6_key(p + 24);
	if (!ip->local6_on || (d.hi & ip->local6_mask.hi) != ip->local6_net.hi ||
	        (d.lo & ip->local6_mask.lo) != ip->local6_net.lo) {
		cnt[DP_DROP_NOT_LOCAL]++;
		return false;
	}
	cnt[DP_RX_IPV6_PACKETS]++;
	return true;
}

#endif
