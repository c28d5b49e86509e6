/*
 * ICMPv6 errors of the send path and the IPv6 settings (see ip6.h).
 * Threads and locking: ip6_ctx_init runs at open, before the threads;
 * icmp6_error is called from any worker's tx pass and takes the shared rate
 * limit under ip->icmp_lock (ip.c), the rest works on the caller's packet
 * and stack.
 */
#define _GNU_SOURCE
#include "dataplane/ip6.h"

#include "tun/vnet.h"

#include <string.h>

void ip6_ctx_init(struct ip_ctx *ip, const uint8_t local6_net[16], uint8_t local6_prefix, const uint8_t icmp6_source[16],
        uint32_t mtu)
{
	ip->local6_on = local6_prefix > 0;
	ip->local6_mask = ip6_mask(local6_prefix);
	struct ip6key k = ip6_key(local6_net);
	ip->local6_net.hi = k.hi & ip->local6_mask.hi;
	ip->local6_net.lo = k.lo & ip->local6_mask.lo;
	memcpy(ip->icmp6_source, icmp6_source, 16);
	ip->mtu = mtu;
}

/*
 * Whether `p` (len bytes) is an ICMPv6 error message, or may be one: the
 * extension headers are walked to the upper-layer header; a non-first
 * fragment (no upper-layer header to look at) counts as not an error, as
 * RFC 8200 4.5 lets a router answer it.
 */
static bool is_icmp6_error(const uint8_t *p, size_t len)
{
	uint8_t nh = p[6];
	size_t off = IP6_HDR;
	for (int i = 0; i < 8; i++) {
		if (nh == 58) /* ICMPv6: informational types have the high bit set */
			return off >= len || p[off] < 128;
		if (nh == 44) { /* fragment header */
			if (off + 8 > len)
				return true;
			if (get16(p + off + 2) & 0xfff8)
				return false;
			nh = p[off];
			off += 8;
			continue;
		}
		if (nh != 0 && nh != 43 && nh != 60 && nh != 51)
			return false;
		if (off + 2 > len)
			return true; /* cannot tell: do not answer */
		size_t hl = nh == 51 ? ((size_t)p[off + 1] + 2) * 4 : ((size_t)p[off + 1] + 1) * 8;
		nh = p[off];
		off += hl;
	}
	return true;
}

static bool is_zero16(const uint8_t *a)
{
	static const uint8_t z[16];
	return memcmp(a, z, 16) == 0;
}

void icmp6_error(struct ip_ctx *ip, int tun_fd, const uint8_t *orig, size_t len, uint8_t type, uint8_t code,
        uint32_t info, uint64_t *cnt)
{
	const uint8_t *src = orig + 8, *dst = orig + 24;
	/* RFC 4443 2.4(e): not to unspecified, loopback, multicast (or other martian) sources; not about multicast. */
	if (is_martian_src6(src) || dst[0] == 0xff || is_zero16(ip->icmp6_source) || is_icmp6_error(orig, len))
		return;
	if (!icmp_rate_ok(ip))
		return;

	uint8_t pkt[ICMP6_MAX];
	size_t quote = len < ICMP6_MAX - IP6_HDR - 8 ? len : ICMP6_MAX - IP6_HDR - 8;
	size_t plen = 8 + quote;
	memset(pkt, 0, IP6_HDR + 8);
	pkt[0] = 0x60;
	put16(pkt + 4, (uint16_t)plen);
	pkt[6] = 58;
	pkt[7] = 64;
	memcpy(pkt + 8, ip->icmp6_source, 16);
	memcpy(pkt + 24, src, 16);
	uint8_t *icmp = pkt + IP6_HDR;
	icmp[0] = type;
	icmp[1] = code;
	put32(icmp + 4, info);
	memcpy(icmp + 8, orig, quote);
	put16(icmp + 2, (uint16_t)~csum_fold16(csum_acc(icmp, plen, csum_pseudo6(pkt, 58, (uint32_t)plen))));

	if (tun_write1(tun_fd, ip->tun_vnet_hdr, pkt, IP6_HDR + plen) < 0)
		cnt[DP_TUN_ERRORS]++;
	else
		cnt[DP_ICMP_SENT]++;
}
