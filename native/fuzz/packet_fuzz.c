/*
 * Randomized property test ("fuzz") of the data plane's packet validation:
 * ip4_accept_in (UDP -> TUN: after the sender allow-list, IPv4 header
 * checks) and ip4_route_out (TUN -> UDP: route lookup, TTL, ICMP errors) of
 * native/dataplane/ip.h, with the route table of native/dataplane/routes.c.
 * Standalone: no N-API, no threads, no TUN device. Threads and locking:
 * single-threaded.
 *
 *   packet_fuzz [cases] [seed]        default 200000 cases, seed 1
 *
 * Linked with dataplane/ip.c, dataplane/routes.c, dataplane/counters.c and
 * offload/csum.c, compiled unchanged; no struct dp is needed, only the
 * struct ip_ctx the checks read. Every packet is handed over in a heap
 * block of exactly its length, so under AddressSanitizer any read past the
 * datagram is an error (the real buffers are 64 KB and would hide it).
 *
 * Inputs, from a fixed seed: well-formed packets from a peer, the same with
 * random mutations (bit flips, byte writes, lies in IHL / total length /
 * fragment fields, bad checksums, wrong destinations, truncation, extension),
 * random bytes of random length (0..2000, sometimes up to 65535), random
 * senders, and the "truncated" flag.
 *
 * Checked for every rx case:
 *   - exactly one outcome: delivered, or exactly one drop counter +1;
 *   - an accepted packet is from a peer, not truncated, version 4, IHL >= 5,
 *     IHL*4 <= length, total length == datagram length, header checksum valid
 *     (recomputed here, independently), TTL > 0, destination inside the local
 *     subnet, source not 0/broadcast/multicast/loopback;
 *   - a well-formed packet from a peer for the local subnet is delivered
 *     (so a data plane that drops everything fails);
 *   - the verdict equals an independent reference model of the documented
 *     checks (docs/architecture.md: accept only from PublicIPs of current leases,
 *     validate every header).
 * Checked for every tx case:
 *   - exactly one outcome: sent, or exactly one drop counter +1;
 *   - a sent packet is IPv4, IHL >= 5, total length == length, its TTL was
 *     >= 2 and is one less, its checksum is still valid if it was valid, the
 *     rest of the packet is unchanged, and it goes to the PublicIP:port of the
 *     longest route covering its destination;
 *   - every ICMP error written to the "TUN" is a valid IPv4/ICMP packet of at
 *     most 576 bytes from the ICMP source to the original sender, type 3 or
 *     11, both checksums valid, quoting the start of the original packet.
 * IPv6 (a second run of the same number of cases): ip6_accept_in and
 * ip6_route_out of native/dataplane/ip6.h behind the version-nibble dispatch
 * of receive.c / send.c, with IPv6 routes in the same table, against their
 * own reference model (payload length == datagram length - 40, source not
 * unspecified/loopback/multicast/link-local/IPv4-mapped, hop limit,
 * destination in the local IPv6 subnet; tx: link-local and multicast
 * destinations never sent, longest IPv6 route, hop limit > 1 and
 * decremented, nothing above the tunnel MTU). Every ICMPv6 error is checked:
 * at most 1280 bytes, from the ICMPv6 source to the original sender, type
 * 1/2/3 (2 carrying the MTU), checksum valid over the pseudo-header
 * (computed here independently), quoting the original's start, never about
 * an ICMPv6 error or a multicast destination.
 * Underlay: each case picks an IPv4 or an IPv6 one (the same routes in two
 * tables, their endpoints the PublicIP or the PublicIPv6 2001:2::<PublicIP>):
 * the sender check takes the sender in that family, and a sent packet's
 * endpoint must be the route's in that family.
 * Exit status 0 if every case passed; the first failures are printed.
 * Built with -DFUZZ_SELFTEST_BROKEN_RX the header checks are skipped, and the
 * run must fail (test/unit/native-fuzz.test.ts checks that it does).
 */
#define _GNU_SOURCE
#include "dataplane/counters.h"
#include "dataplane/ip.h"
#include "dataplane/ip6.h"
#include "dataplane/routes.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "test/rng.h"

static unsigned long failures, checks;
#define CHECK(cond, ...) \
	do { \
		checks++; \
		if (!(cond)) { \
			if (failures++ < 20) { \
				printf("FAIL case %lu (%s:%d): %s: ", cur_case, __FILE__, __LINE__, #cond); \
				printf(__VA_ARGS__); \
				printf("\n"); \
			} \
		} \
	} while (0)
static unsigned long cur_case;

/* ---- independent helpers (deliberately not the data plane's) ---------- */

static uint32_t rd32(const uint8_t *p)
{
	return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3];
}
static unsigned rd16(const uint8_t *p)
{
	return ((unsigned)p[0] << 8) | p[1];
}
static void wr16(uint8_t *p, unsigned v)
{
	p[0] = (uint8_t)(v >> 8);
	p[1] = (uint8_t)v;
}
static void wr32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)(v >> 24);
	p[1] = (uint8_t)(v >> 16);
	p[2] = (uint8_t)(v >> 8);
	p[3] = (uint8_t)v;
}
/* RFC 1071, byte by byte: true if the one's-complement sum of p[0..n) is 0xffff. */
static unsigned ones_sum(const uint8_t *p, size_t n)
{
	uint64_t s = 0;
	for (size_t i = 0; i < n; i++)
		s += (i & 1) ? p[i] : (uint64_t)p[i] << 8;
	while (s >> 16)
		s = (s & 0xffff) + (s >> 16);
	return (unsigned)s;
}
static bool sum_ok(const uint8_t *p, size_t n)
{
	return ones_sum(p, n) == 0xffff;
}
static void set_ip_csum(uint8_t *p, size_t ihl)
{
	wr16(p + 10, 0);
	wr16(p + 10, (~ones_sum(p, ihl)) & 0xffff);
}

/* ---- the world: this host, its peers, their routes ---------------------- */

#define LOCAL_NET 0x0a050100u /* 10.5.1.0/24: this host's lease */
#define LOCAL_MASK 0xffffff00u
#define ICMP_SRC 0x0a050100u
#define PORT 8285
/* A peer's PublicIPv6 (the IPv6 underlay runs): 2001:2::a.b.c.d of its PublicIP a.b.c.d, so one model serves both. */
#define U6(a, b, c, d) \
	{ \
		0x20, 0x01, 0, 0x02, 0, 0, 0, 0, 0, 0, 0, 0, a, b, c, d \
	}

/* This case's underlay: IPv6 (the table's endpoints are PublicIPv6s) or IPv4. */
static bool under6;

/* A sender as the receive path sees it, on this case's underlay (IPv6: 2001:2::<sender>). */
static struct ip6key sender_key(uint32_t sender)
{
	union udp_addr a;
	uint8_t ip6[16] = U6(sender >> 24, sender >> 16 & 0xff, sender >> 8 & 0xff, sender & 0xff);
	if (under6)
		udp_addr_set6(&a, ip6, 4242);
	else
		udp_addr_set4(&a, sender, 4242);
	return ul_key(&a);
}

/* Whether dst is the endpoint public_ip:port on this case's underlay. */
static bool is_endpoint(const union udp_addr *dst, uint32_t public_ip, uint16_t port)
{
	union udp_addr want;
	uint8_t ip6[16] = U6(public_ip >> 24, public_ip >> 16 & 0xff, public_ip >> 8 & 0xff, public_ip & 0xff);
	if (under6)
		udp_addr_set6(&want, ip6, port);
	else
		udp_addr_set4(&want, public_ip, port);
	return udp_addr_same(dst, &want) && udp_addr_len(dst) == (under6 ? sizeof dst->v6 : sizeof dst->v4);
}

static const struct dp_route routes[] = {
        {0x0a050200u, 24, 0xc6120002u, PORT, U6(0xc6, 0x12, 0x00, 0x02)}, /* 10.5.2.0/24 via 198.18.0.2 */
        {0x0a050300u, 24, 0xc6120003u, PORT, U6(0xc6, 0x12, 0x00, 0x03)}, /* 10.5.3.0/24 via 198.18.0.3 */
        {0x0a058000u, 17, 0xc6120004u, 9000, U6(0xc6, 0x12, 0x00, 0x04)}, /* 10.5.128.0/17 via 198.18.0.4:9000 (another prefix length) */
        {0x0a05c100u, 24, 0xc6120005u, PORT, U6(0xc6, 0x12, 0x00, 0x05)}, /* 10.5.193.0/24 inside the /17: longest match wins */
        {0x0a050400u, 24, 0xc6120002u, PORT, U6(0xc6, 0x12, 0x00, 0x02)}, /* a second lease of 198.18.0.2 */
};
#define NROUTES (sizeof routes / sizeof routes[0])

static bool ref_is_peer(uint32_t ip)
{
	for (size_t i = 0; i < NROUTES; i++)
		if (routes[i].public_ip == ip)
			return true;
	return false;
}
static const struct dp_route *ref_route(uint32_t dst)
{
	const struct dp_route *best = NULL;
	for (size_t i = 0; i < NROUTES; i++) {
		uint32_t m = routes[i].prefix ? 0xffffffffu << (32 - routes[i].prefix) : 0;
		if ((dst & m) == (routes[i].net & m) && (!best || routes[i].prefix > best->prefix))
			best = &routes[i];
	}
	return best;
}
static bool martian(uint32_t a)
{
	return a == 0 || a == 0xffffffffu || ((a >> 24) >= 224 && (a >> 24) <= 239) || (a >> 24) == 127;
}

/* A random non-martian unicast address, often one of the overlay's. */
static uint32_t rand_addr(void)
{
	switch (rn(4)) {
	case 0:
		return LOCAL_NET | rn(256);
	case 1:
		return 0x0a050000u | rn(65536);
	case 2:
		return routes[rn(NROUTES)].public_ip;
	default:
		return (uint32_t)rnd();
	}
}

/* A well-formed IPv4 packet of total length `len` (>= 20 + options). */
static size_t make_packet(uint8_t *p, size_t cap, uint32_t src, uint32_t dst)
{
	size_t ihl = 20 + 4 * rn(rn(4) == 0 ? 11 : 1); /* sometimes options */
	size_t len = ihl + (rn(8) == 0 ? rn(9000) : rn(200));
	if (rn(500) == 0)
		len = ihl + rn(65535 - (uint32_t)ihl + 1);
	if (len > cap)
		len = cap;
	for (size_t i = 0; i < len; i++)
		p[i] = (uint8_t)rnd();
	p[0] = (uint8_t)(0x40 | (ihl / 4));
	wr16(p + 2, (unsigned)len);
	unsigned frag = rn(3) == 0 ? 0x4000 : 0; /* DF */
	if (rn(10) == 0)
		frag = (rn(2) ? 0x2000 : 0) | rn((uint32_t)((65535 - len) / 8) + 1); /* a fragment that fits */
	wr16(p + 6, frag);
	p[8] = (uint8_t)(1 + rn(255));
	static const uint8_t protos[] = {1, 6, 17, 47, 50, 132};
	p[9] = rn(4) ? protos[rn(sizeof protos)] : (uint8_t)rnd();
	wr32(p + 12, src);
	wr32(p + 16, dst);
	set_ip_csum(p, ihl);
	return len;
}

/* Random damage; may leave the packet valid (the model decides). Returns the new length. */
static size_t mutate(uint8_t *p, size_t len, size_t cap)
{
	int rounds = 1 + (int)rn(3);
	for (int r = 0; r < rounds; r++) {
		switch (rn(14)) {
		case 0: /* flip a bit in the header */
			if (len)
				p[rn(len < 60 ? (uint32_t)len : 60)] ^= (uint8_t)(1u << rn(8));
			break;
		case 1: /* a random byte anywhere */
			if (len)
				p[rn((uint32_t)len)] = (uint8_t)rnd();
			break;
		case 2: /* lie in the total length */
			if (len >= 4)
				wr16(p + 2, rn(3) == 0 ? (unsigned)rnd() & 0xffff : (unsigned)(len + rn(5)) - 2);
			break;
		case 3: /* lie in the IHL */
			if (len)
				p[0] = (uint8_t)((p[0] & 0xf0) | rn(16));
			break;
		case 4: /* wrong version */
			if (len)
				p[0] = (uint8_t)((p[0] & 0x0f) | (rn(16) << 4));
			break;
		case 5: /* truncate */
			len = rn((uint32_t)len + 1);
			break;
		case 6: /* extend with garbage */
		{
			size_t add = 1 + rn(64);
			if (len + add > cap)
				add = cap - len;
			for (size_t i = 0; i < add; i++)
				p[len + i] = (uint8_t)rnd();
			len += add;
			break;
		}
		case 7: /* break the checksum */
			if (len >= 12)
				wr16(p + 10, rd16(p + 10) ^ (1u + rn(0xffff)));
			break;
		case 8: /* wrong destination, checksum fixed up */
			if (len >= 20) {
				wr32(p + 16, rn(2) ? (uint32_t)rnd() : rand_addr());
				if ((size_t)(p[0] & 0xf) * 4 <= len && (p[0] & 0xf) >= 5)
					set_ip_csum(p, (size_t)(p[0] & 0xf) * 4);
			}
			break;
		case 9: /* martian source, checksum fixed up */
			if (len >= 20) {
				static const uint32_t bad[] = {0, 0xffffffffu, 0xe0000001u, 0x7f000001u, 0xefffffffu};
				wr32(p + 12, bad[rn(5)]);
				set_ip_csum(p, 20);
			}
			break;
		case 10: /* fragment fields: reserved bit, offsets past 64 KB */
			if (len >= 8)
				wr16(p + 6, (unsigned)rnd() & 0xffff);
			if (len >= 20 && rn(2))
				set_ip_csum(p, 20);
			break;
		case 11: /* TTL 0 or 1, checksum fixed up */
			if (len >= 20) {
				p[8] = (uint8_t)rn(2);
				if ((size_t)(p[0] & 0xf) * 4 <= len && (p[0] & 0xf) >= 5)
					set_ip_csum(p, (size_t)(p[0] & 0xf) * 4);
			}
			break;
		case 12: /* IHL and length consistent with each other, checksum recomputed */
			if (len >= 20) {
				size_t ihl = 20 + 4 * rn(11);
				if (ihl <= len) {
					p[0] = (uint8_t)(0x40 | (ihl / 4));
					wr16(p + 2, (unsigned)len);
					set_ip_csum(p, ihl);
				}
			}
			break;
		default: /* ICMP error quoting: an ICMP error inside */
			if (len >= 28 && (size_t)(p[0] & 0xf) * 4 < len) {
				p[9] = 1;
				p[(p[0] & 0xf) * 4] = (uint8_t)(rn(2) ? 3 : 8);
			}
			break;
		}
	}
	return len;
}

/* ---- reference model ---------------------------------------------------- */

enum outcome { O_DELIVER = -1 }; /* else a DP_* counter index */

static int ref_rx(const uint8_t *p, size_t len, uint32_t sender, bool trunc)
{
	if (!ref_is_peer(sender))
		return DP_DROP_UNKNOWN_SENDER;
	if (trunc || len < 20)
		return DP_DROP_MALFORMED;
	size_t ihl = (size_t)(p[0] & 0xf) * 4;
	unsigned frag = rd16(p + 6);
	if ((p[0] >> 4) != 4 || ihl < 20 || ihl > len || rd16(p + 2) != len || !sum_ok(p, ihl) || (frag & 0x8000) ||
	        (size_t)(frag & 0x1fff) * 8 + len > 65535 || martian(rd32(p + 12)))
		return DP_DROP_MALFORMED;
	if (p[8] == 0)
		return DP_DROP_TTL;
	if ((rd32(p + 16) & LOCAL_MASK) != LOCAL_NET)
		return DP_DROP_NOT_LOCAL;
	return O_DELIVER;
}

static int ref_tx(const uint8_t *p, size_t len)
{
	if (len < 1 || (p[0] >> 4) != 4)
		return DP_DROP_NOT_IPV4;
	size_t ihl = (size_t)(p[0] & 0xf) * 4;
	if (len < 20 || ihl < 20 || ihl > len || rd16(p + 2) != len)
		return DP_DROP_MALFORMED;
	if (!ref_route(rd32(p + 16)))
		return DP_DROP_NO_ROUTE;
	if (p[8] <= 1)
		return DP_DROP_TTL;
	return O_DELIVER;
}

static const char *oname(int o)
{
	return o == O_DELIVER ? "deliver" : dp_counter_names[o];
}

/* ---- the harness -------------------------------------------------------- */

/*
 * The per-datagram steps of the data plane's threads, as rx_main and the tx
 * path take them for one plain (non-GSO/GRO) packet: the sender check against
 * the route table's peers, then ip4_accept_in; ip4_route_out with a wire
 * count of 1. If those signatures change, only these two need to follow.
 */
static bool h_rx(const struct ip_ctx *ip, const struct rtable *t, const uint8_t *p, size_t len, uint32_t sender, bool trunc,
        uint64_t *cnt)
{
	if (!rt_is_peer(t, sender_key(sender))) {
		cnt[DP_DROP_UNKNOWN_SENDER]++;
		return false;
	}
#ifdef FUZZ_SELFTEST_BROKEN_RX
	/* Self-test of the harness: skip the header checks; the run must fail. */
	(void)ip, (void)p, (void)len, (void)trunc;
	return true;
#endif
	return ip4_accept_in(ip, p, len, trunc, cnt);
}

static int tun_pair[2]; /* [0] is the "TUN" ip4_route_out writes its ICMP errors to */

static bool h_tx(struct ip_ctx *ip, const struct rtable *t, uint8_t *p, size_t len, union udp_addr *dst, uint64_t *cnt)
{
	return ip4_route_out(ip, tun_pair[0], t, p, len, dst, 1, cnt);
}

static bool h_tx6(struct ip_ctx *ip, const struct rtable *t, uint8_t *p, size_t len, union udp_addr *dst, uint64_t *cnt)
{
	if (len >= 1 && (p[0] >> 4) == 6)
		return ip6_route_out(ip, tun_pair[0], t, p, len, len, dst, 1, cnt);
	return ip4_route_out(ip, tun_pair[0], t, p, len, dst, 1, cnt);
}

/* ---- IPv6: the world, the model, the harness ------------------------------ */

#define MTU6 1400
static const uint8_t local6[16] = {0xfd, 0x42, 0, 0x42, 0, 0, 0, 5}; /* fd42:42:0:5::/64 */
static const uint8_t icmp6_src[16] = {0xfd, 0x42, 0, 0x42, 0, 0, 0, 5};

static const struct dp_route6 routes6[] = {
        {{0xfd, 0x42, 0, 0x42, 0, 0, 0, 6}, 64, 0xc6120002u, PORT, U6(0xc6, 0x12, 0x00, 0x02)}, /* fd42:42:0:6::/64 via 198.18.0.2 */
        {{0xfd, 0x42, 0, 0x42, 0, 0, 0, 7}, 64, 0xc6120003u, PORT, U6(0xc6, 0x12, 0x00, 0x03)},
        {{0xfd, 0x42, 0, 0x42, 0x80, 0}, 33, 0xc6120004u, 9000, U6(0xc6, 0x12, 0x00, 0x04)}, /* fd42:42:8000::/33: another prefix length */
        {{0xfd, 0x42, 0, 0x42, 0x80, 0, 0, 1}, 64, 0xc6120005u, PORT, U6(0xc6, 0x12, 0x00, 0x05)}, /* inside the /33: longest match wins */
        {{0xfd, 0x42, 0, 0x42, 0, 0, 0, 8}, 64, 0xc6120006u, PORT, U6(0xc6, 0x12, 0x00, 0x06)}, /* a peer with an IPv6 lease only */
};
#define NROUTES6 (sizeof routes6 / sizeof routes6[0])

static bool in_prefix6(const uint8_t *a, const uint8_t *net, unsigned prefix)
{
	for (unsigned i = 0; i < prefix; i++) {
		unsigned m = 0x80u >> (i % 8);
		if ((a[i / 8] & m) != (net[i / 8] & m))
			return false;
	}
	return true;
}
static const struct dp_route6 *ref_route6(const uint8_t *dst)
{
	const struct dp_route6 *best = NULL;
	for (size_t i = 0; i < NROUTES6; i++)
		if (in_prefix6(dst, routes6[i].net, routes6[i].prefix) && (!best || routes6[i].prefix > best->prefix))
			best = &routes6[i];
	return best;
}
static bool ref_is_peer6(uint32_t ip)
{
	for (size_t i = 0; i < NROUTES6; i++)
		if (routes6[i].public_ip == ip)
			return true;
	return ref_is_peer(ip);
}
static bool martian6(const uint8_t *a)
{
	static const uint8_t z[16];
	static const uint8_t mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
	if (memcmp(a, z, 15) == 0 && a[15] <= 1)
		return true; /* :: and ::1 */
	if (memcmp(a, mapped, 12) == 0)
		return true;
	return a[0] == 0xff || (a[0] == 0xfe && (a[1] >> 6) == 2);
}
static bool link_scope6(const uint8_t *a)
{
	return a[0] == 0xff || (a[0] == 0xfe && (a[1] >> 6) == 2);
}

/* A random address: often in the local subnet or a route's, sometimes anything. */
static void rand_addr6(uint8_t *a)
{
	for (int i = 0; i < 16; i++)
		a[i] = (uint8_t)rnd();
	switch (rn(5)) {
	case 0:
		memcpy(a, local6, 8);
		break;
	case 1:
	case 2:
		memcpy(a, routes6[rn(NROUTES6)].net, 8);
		break;
	case 3: /* a martian or link-scope one */
	{
		static const uint8_t pre[][2] = {{0xff, 0x02}, {0xfe, 0x80}, {0, 0}, {0xfd, 0x42}};
		const uint8_t *q = pre[rn(4)];
		a[0] = q[0];
		a[1] = q[1];
		if (q[0] == 0) {
			memset(a, 0, 15);
			a[15] = (uint8_t)rn(3);
			if (rn(2)) {
				a[10] = a[11] = 0xff;
			}
		}
		break;
	}
	default:
		break;
	}
}

static size_t make_packet6(uint8_t *p, size_t cap, const uint8_t *src, const uint8_t *dst)
{
	size_t len = 40 + (rn(8) == 0 ? rn(9000) : rn(1500));
	if (rn(500) == 0)
		len = 40 + rn(65535 + 1);
	if (len > cap)
		len = cap;
	for (size_t i = 0; i < len; i++)
		p[i] = (uint8_t)rnd();
	p[0] = (uint8_t)(0x60 | (p[0] & 0xf));
	wr16(p + 4, (unsigned)(len - 40));
	static const uint8_t nhs[] = {6, 17, 58, 58, 0, 44, 43, 60, 59};
	p[6] = rn(5) ? nhs[rn(sizeof nhs)] : (uint8_t)rnd();
	p[7] = (uint8_t)(1 + rn(255));
	memcpy(p + 8, src, 16);
	memcpy(p + 24, dst, 16);
	if (p[6] == 58 && len > 40)
		p[40] = rn(2) ? (uint8_t)rn(128) : (uint8_t)(128 + rn(128)); /* an error or an informational type */
	return len;
}

static size_t mutate6(uint8_t *p, size_t len, size_t cap)
{
	int rounds = 1 + (int)rn(3);
	for (int r = 0; r < rounds; r++) {
		switch (rn(10)) {
		case 0:
			if (len)
				p[rn(len < 48 ? (uint32_t)len : 48)] ^= (uint8_t)(1u << rn(8));
			break;
		case 1:
			if (len)
				p[rn((uint32_t)len)] = (uint8_t)rnd();
			break;
		case 2: /* lie in the payload length */
			if (len >= 6)
				wr16(p + 4, rn(3) == 0 ? (unsigned)rnd() & 0xffff : (unsigned)(len + rn(5)) - 42);
			break;
		case 3: /* wrong version */
			if (len)
				p[0] = (uint8_t)((p[0] & 0x0f) | (rn(16) << 4));
			break;
		case 4:
			len = rn((uint32_t)len + 1);
			break;
		case 5: {
			size_t add = 1 + rn(64);
			if (len + add > cap)
				add = cap - len;
			for (size_t i = 0; i < add; i++)
				p[len + i] = (uint8_t)rnd();
			len += add;
			break;
		}
		case 6: /* another destination */
			if (len >= 40)
				rand_addr6(p + 24);
			break;
		case 7: /* another source */
			if (len >= 24)
				rand_addr6(p + 8);
			break;
		case 8: /* hop limit 0 or 1 */
			if (len >= 8)
				p[7] = (uint8_t)rn(2);
			break;
		default: /* ICMPv6, error or not, right after the header */
			if (len > 40) {
				p[6] = 58;
				p[40] = (uint8_t)(rn(2) ? 1 + rn(4) : 128 + rn(2));
			}
			break;
		}
	}
	return len;
}

static int ref_rx6(const uint8_t *p, size_t len, uint32_t sender, bool trunc)
{
	if (!ref_is_peer6(sender))
		return DP_DROP_UNKNOWN_SENDER;
	if (len < 1 || (p[0] >> 4) != 6)
		return ref_rx(p, len, routes[0].public_ip, trunc); /* a peer either way: the IPv4 model from here */
	if (!ref_is_peer6(sender))
		return DP_DROP_UNKNOWN_SENDER;
	if (trunc || len < 40 || rd16(p + 4) + 40u != len || martian6(p + 8))
		return DP_DROP_MALFORMED;
	if (p[7] == 0)
		return DP_DROP_TTL;
	if (!in_prefix6(p + 24, local6, 64))
		return DP_DROP_NOT_LOCAL;
	return O_DELIVER;
}

static int ref_tx6(const uint8_t *p, size_t len)
{
	if (len < 1 || (p[0] >> 4) != 6)
		return ref_tx(p, len);
	if (len < 40 || rd16(p + 4) + 40u != len)
		return DP_DROP_MALFORMED;
	if (link_scope6(p + 24))
		return DP_DROP_LINK_LOCAL;
	if (!ref_route6(p + 24))
		return DP_DROP_NO_ROUTE;
	if (p[7] <= 1)
		return DP_DROP_TTL;
	if (len > MTU6)
		return DP_DROP_TOO_BIG;
	return O_DELIVER;
}

/* receive.c's and send.c's dispatch on the version nibble, for one plain packet. */
static bool h_rx6(const struct ip_ctx *ip, const struct rtable *t, const uint8_t *p, size_t len, uint32_t sender, bool trunc,
        uint64_t *cnt)
{
	if (!rt_is_peer(t, sender_key(sender))) {
		cnt[DP_DROP_UNKNOWN_SENDER]++;
		return false;
	}
	return len >= 1 && (p[0] >> 4) == 6 ? ip6_accept_in(ip, p, len, trunc, cnt) : ip4_accept_in(ip, p, len, trunc, cnt);
}

#define CAP 65535

static unsigned long stat_rx[DP_NCOUNTERS + 1], stat_tx[DP_NCOUNTERS + 1], icmp_seen;

/* The one counter that moved (or O_DELIVER if none); -2 if more than one moved. */
static int moved(const uint64_t *before, const uint64_t *after, bool delivered, const int *which, int nwhich)
{
	int found = delivered ? O_DELIVER : -3;
	int n = delivered ? 1 : 0;
	for (int i = 0; i < nwhich; i++) {
		uint64_t d = after[which[i]] - before[which[i]];
		if (d == 1) {
			found = which[i];
			n++;
		} else if (d != 0) {
			n += 2;
		}
	}
	return n == 1 ? found : -2;
}

static unsigned long icmp6_seen;

/* One ICMPv6 error as written to the "TUN", about `orig` (len bytes). */
static void check_icmp6(const uint8_t *buf, size_t n, const uint8_t *orig, size_t len)
{
	icmp6_seen++;
	CHECK(n >= 48 && n <= 1280, "ICMPv6 error of %zu bytes", n);
	if (n < 48)
		return;
	CHECK(rd16(buf + 4) + 40u == n, "ICMPv6 error: payload length %u, written %zu", rd16(buf + 4), n);
	CHECK(buf[6] == 58 && buf[7] > 0, "ICMPv6 error: next header %u hop limit %u", buf[6], buf[7]);
	CHECK(memcmp(buf + 8, icmp6_src, 16) == 0, "ICMPv6 error: not from the ICMPv6 source");
	CHECK(len >= 40 && memcmp(buf + 24, orig + 8, 16) == 0, "ICMPv6 error: not sent to the original source");
	CHECK(buf[40] == 1 || buf[40] == 2 || buf[40] == 3, "ICMPv6 error: type %u", buf[40]);
	if (buf[40] == 2)
		CHECK(rd32(buf + 44) == MTU6, "packet too big: MTU %u", rd32(buf + 44));
	/* The checksum over the pseudo-header (addresses, upper-layer length, next header), byte by byte. */
	uint64_t sum = 0;
	for (size_t i = 8; i < 40; i++)
		sum += (i & 1) ? buf[i] : (uint64_t)buf[i] << 8;
	sum += (n - 40) + 58;
	for (size_t i = 40; i < n; i++)
		sum += (i & 1) ? buf[i] : (uint64_t)buf[i] << 8;
	while (sum >> 16)
		sum = (sum & 0xffff) + (sum >> 16);
	CHECK(sum == 0xffff, "ICMPv6 error: bad checksum");
	size_t q = n - 48;
	CHECK(q <= len && memcmp(buf + 48, orig, q) == 0, "ICMPv6 error: quote of %zu bytes is not the original's start", q);
	CHECK(q == len || n == 1280, "ICMPv6 error: quoted %zu of %zu bytes in %zu", q, len, n);
	CHECK(len >= 40 && !martian6(orig + 8) && orig[24] != 0xff, "ICMPv6 error about a martian source or a multicast destination");
	CHECK(!(len > 40 && orig[6] == 58 && orig[40] < 128), "ICMPv6 error about an ICMPv6 error");
}

static void drain_icmp(const uint8_t *orig, size_t len)
{
	uint8_t buf[70000];
	for (;;) {
		ssize_t r = recv(tun_pair[1], buf, sizeof buf, MSG_DONTWAIT);
		if (r < 0)
			break;
		size_t n = (size_t)r;
		if (n >= 1 && (buf[0] >> 4) == 6) {
			check_icmp6(buf, n, orig, len);
			continue;
		}
		icmp_seen++;
		CHECK(n >= 28 && n <= 576, "ICMP error of %zu bytes", n);
		if (n < 28)
			continue;
		CHECK(buf[0] == 0x45, "ICMP error: first byte %#x", buf[0]);
		CHECK(rd16(buf + 2) == n, "ICMP error: total length %u, written %zu", rd16(buf + 2), n);
		CHECK(sum_ok(buf, 20), "ICMP error: bad IP checksum");
		CHECK(buf[9] == 1 && buf[8] > 0, "ICMP error: protocol %u TTL %u", buf[9], buf[8]);
		CHECK(rd32(buf + 12) == ICMP_SRC, "ICMP error: source %#x", rd32(buf + 12));
		CHECK(len >= 16 && rd32(buf + 16) == rd32(orig + 12), "ICMP error: not sent to the original source");
		CHECK(buf[20] == 3 || buf[20] == 11, "ICMP error: type %u", buf[20]);
		CHECK(sum_ok(buf + 20, n - 20), "ICMP error: bad ICMP checksum");
		size_t q = n - 28;
		CHECK(q <= len && memcmp(buf + 28, orig, q) == 0, "ICMP error: quote of %zu bytes is not the original's start", q);
		CHECK(!martian(rd32(orig + 12)), "ICMP error about a packet from a martian source");
	}
}

int main(int argc, char **argv)
{
	unsigned long cases = argc > 1 ? strtoul(argv[1], NULL, 10) : 200000;
	unsigned long seed = argc > 2 ? strtoul(argv[2], NULL, 10) : 1;
	rng_seed(seed);

	static struct ip_ctx ipc;
	struct ip_ctx *ip = &ipc;
	if (socketpair(AF_UNIX, SOCK_DGRAM | SOCK_NONBLOCK, 0, tun_pair) < 0) {
		perror("setup");
		return 2;
	}
	int big = 1 << 20;
	setsockopt(tun_pair[0], SOL_SOCKET, SO_SNDBUF, &big, sizeof big);
	setsockopt(tun_pair[1], SOL_SOCKET, SO_RCVBUF, &big, sizeof big);
	ip_ctx_init(ip, LOCAL_NET, 24, ICMP_SRC); /* LOCAL_MASK is /24 */
	ip6_ctx_init(ip, local6, 64, icmp6_src, MTU6);
	/* The same routes over either underlay: each case picks one (under6). */
	struct rtable *tables[2], *t;
	char err[256];
	for (int u = 0; u < 2; u++) {
		struct rt_input in = {.v4 = routes, .n4 = NROUTES, .v6 = routes6, .n6 = NROUTES6, .v6_underlay = u == 1};
		if (rt_new(&in, &tables[u], err, sizeof err) != 0) {
			printf("rt_new: %s\n", err);
			return 2;
		}
	}

	static const int rx_reasons[] = {DP_DROP_UNKNOWN_SENDER, DP_DROP_MALFORMED, DP_DROP_TTL, DP_DROP_NOT_LOCAL, DP_DROP_NO_ROUTE, DP_DROP_NOT_IPV4};
	static const int tx_reasons[] = {DP_DROP_NOT_IPV4, DP_DROP_MALFORMED, DP_DROP_NO_ROUTE, DP_DROP_TTL, DP_DROP_UNKNOWN_SENDER, DP_DROP_NOT_LOCAL};
	uint8_t *scratch = malloc(CAP);
	unsigned long valid_rx = 0, valid_tx = 0;

	for (cur_case = 0; cur_case < cases; cur_case++) {
		under6 = rn(2);
		t = tables[under6];
		/* Build the datagram in scratch, then copy it to a block of exactly its size. */
		size_t len;
		bool pristine = false;
		int kind = (int)rn(10);
		if (kind <= 1) { /* random bytes */
			len = rn(8) == 0 ? rn(CAP + 1) : rn(2001);
			for (size_t i = 0; i < len; i++)
				scratch[i] = (uint8_t)rnd();
			if (len && rn(2))
				scratch[0] = (uint8_t)(0x40 | (scratch[0] & 0xf)); /* at least looks like IPv4 */
		} else {
			uint32_t dst = rn(3) ? (LOCAL_NET | rn(256)) : rand_addr();
			uint32_t src = rn(2) ? (0x0a050200u | rn(256)) : rand_addr();
			len = make_packet(scratch, CAP, src, dst);
			if (kind <= 3) {
				pristine = (dst & LOCAL_MASK) == LOCAL_NET && !martian(src);
			} else {
				len = mutate(scratch, len, CAP);
			}
		}
		uint8_t *p = malloc(len ? len : 1);
		memcpy(p, scratch, len);

		/* rx: UDP -> TUN */
		uint32_t sender = rn(5) == 0 ? (rn(2) ? (uint32_t)rnd() : 0xc6120063u) : routes[rn(NROUTES)].public_ip;
		bool trunc = rn(50) == 0;
		uint64_t cnt[DP_NCOUNTERS] = {0}, before[DP_NCOUNTERS];
		memcpy(before, cnt, sizeof cnt);
		bool v = h_rx(ip, t, p, len, sender, trunc, cnt);
		int got = moved(before, cnt, v, rx_reasons, 6);
		int want = ref_rx(p, len, sender, trunc);
		CHECK(got != -2 && got != -3, "rx: not exactly one outcome (verdict %d)", v);
		CHECK(got == want, "rx: data plane says %s, reference says %s (len %zu, sender %#x, trunc %d)",
		        got < -1 ? "?" : oname(got), oname(want), len, sender, trunc);
		CHECK(memcmp(p, scratch, len) == 0, "rx modified the packet");
		stat_rx[got < -1 ? DP_NCOUNTERS : (got == O_DELIVER ? DP_NCOUNTERS : got)] += got >= 0;
		if (v) {
			size_t ihl = len >= 1 ? (size_t)(p[0] & 0xf) * 4 : 0;
			valid_rx++;
			CHECK(ref_is_peer(sender) && !trunc, "rx accepted from %#x trunc %d", sender, trunc);
			CHECK(len >= 20 && (p[0] >> 4) == 4 && ihl >= 20 && ihl <= len, "rx accepted a bad header (len %zu)", len);
			if (len >= 20 && ihl >= 20 && ihl <= len) {
				CHECK(rd16(p + 2) == len, "rx accepted total length %u for %zu bytes", rd16(p + 2), len);
				CHECK(sum_ok(p, ihl), "rx accepted a bad checksum");
				CHECK(p[8] > 0, "rx accepted TTL 0");
				CHECK((rd32(p + 16) & LOCAL_MASK) == LOCAL_NET, "rx accepted destination %#x", rd32(p + 16));
				CHECK(!martian(rd32(p + 12)), "rx accepted source %#x", rd32(p + 12));
			}
		}
		if (pristine && ref_is_peer(sender) && !trunc)
			CHECK(v, "rx dropped a well-formed packet from a peer (%s)", got < -1 ? "?" : oname(got));

		/* tx: TUN -> UDP (ip4_route_out may rewrite the TTL and checksum in place) */
		memcpy(before, cnt, sizeof cnt);
		ip->icmp_tokens = ICMP_BURST; /* exercise every ICMP error, not the rate limit */
		union udp_addr dst;
		memset(&dst, 0, sizeof dst);
		bool ok = h_tx(ip, t, p, len, &dst, cnt);
		got = moved(before, cnt, ok, tx_reasons, 6);
		want = ref_tx(scratch, len);
		CHECK(got != -2 && got != -3, "tx: not exactly one outcome (ok %d)", ok);
		CHECK(got == want, "tx: data plane says %s, reference says %s (len %zu)", got < -1 ? "?" : oname(got),
		        oname(want), len);
		stat_tx[got < -1 ? DP_NCOUNTERS : (got == O_DELIVER ? DP_NCOUNTERS : got)] += got >= 0;
		if (ok) {
			valid_tx++;
			size_t ihl = (size_t)(p[0] & 0xf) * 4;
			CHECK(len >= 20 && (p[0] >> 4) == 4 && ihl >= 20 && ihl <= len && rd16(p + 2) == len, "tx sent a bad header");
			CHECK(scratch[8] >= 2 && p[8] == scratch[8] - 1, "tx TTL %u -> %u", scratch[8], p[8]);
			if (len >= 20 && ihl >= 20 && ihl <= len && sum_ok(scratch, ihl))
				CHECK(sum_ok(p, ihl), "tx broke a valid checksum");
			CHECK(memcmp(p, scratch, 8) == 0 && memcmp(p + 9, scratch + 9, 1) == 0 && memcmp(p + 12, scratch + 12, len - 12) == 0,
			        "tx changed more than TTL and checksum");
			const struct dp_route *r = ref_route(rd32(p + 16));
			CHECK(r && is_endpoint(&dst, r->public_ip, r->port), "tx to family %d port %u, expected the route's endpoint (IPv6 underlay %d)",
			        dst.sa.sa_family, udp_addr_port(&dst), under6);
		}
		drain_icmp(scratch, len);
		free(p);
	}
	printf("rx: delivered %lu, unknown_sender %lu, malformed %lu, ttl %lu, not_local %lu\n", valid_rx,
	        stat_rx[DP_DROP_UNKNOWN_SENDER], stat_rx[DP_DROP_MALFORMED], stat_rx[DP_DROP_TTL], stat_rx[DP_DROP_NOT_LOCAL]);
	printf("tx: sent %lu, not_ipv4 %lu, malformed %lu, no_route %lu, ttl %lu, icmp errors checked %lu\n", valid_tx,
	        stat_tx[DP_DROP_NOT_IPV4], stat_tx[DP_DROP_MALFORMED], stat_tx[DP_DROP_NO_ROUTE], stat_tx[DP_DROP_TTL], icmp_seen);

	/* ---- IPv6 ---- */
	static const int rx6_reasons[] = {DP_DROP_UNKNOWN_SENDER, DP_DROP_MALFORMED, DP_DROP_TTL, DP_DROP_NOT_LOCAL, DP_DROP_NO_ROUTE, DP_DROP_NOT_IPV4, DP_DROP_TOO_BIG, DP_DROP_LINK_LOCAL};
	static const int tx6_reasons[] = {DP_DROP_NOT_IPV4, DP_DROP_MALFORMED, DP_DROP_NO_ROUTE, DP_DROP_TTL, DP_DROP_UNKNOWN_SENDER, DP_DROP_NOT_LOCAL, DP_DROP_TOO_BIG, DP_DROP_LINK_LOCAL};
	static unsigned long stat_rx6[DP_NCOUNTERS + 1], stat_tx6[DP_NCOUNTERS + 1];
	unsigned long valid_rx6 = 0, valid_tx6 = 0;
	for (cur_case = 0; cur_case < cases; cur_case++) {
		under6 = rn(2);
		t = tables[under6];
		size_t len;
		bool pristine = false;
		int kind = (int)rn(10);
		if (kind == 0) {
			len = rn(8) == 0 ? rn(CAP + 1) : rn(2001);
			for (size_t i = 0; i < len; i++)
				scratch[i] = (uint8_t)rnd();
			if (len)
				scratch[0] = (uint8_t)(0x60 | (scratch[0] & 0xf));
		} else {
			uint8_t src[16], dst[16];
			rand_addr6(src);
			rand_addr6(dst);
			if (rn(3)) {
				memcpy(dst, local6, 8);
			}
			len = make_packet6(scratch, CAP, src, dst);
			if (kind <= 3)
				pristine = in_prefix6(dst, local6, 64) && !martian6(src);
			else
				len = mutate6(scratch, len, CAP);
		}
		uint8_t *p = malloc(len ? len : 1);
		memcpy(p, scratch, len);

		uint32_t sender = rn(6) == 0 ? (rn(2) ? (uint32_t)rnd() : 0xc6120063u) : routes6[rn(NROUTES6)].public_ip;
		bool trunc = rn(50) == 0;
		uint64_t cnt[DP_NCOUNTERS] = {0}, before[DP_NCOUNTERS] = {0};
		bool v = h_rx6(ip, t, p, len, sender, trunc, cnt);
		int got = moved(before, cnt, v, rx6_reasons, 8);
		int want = ref_rx6(p, len, sender, trunc);
		CHECK(got != -2 && got != -3, "rx6: not exactly one outcome (verdict %d)", v);
		CHECK(got == want, "rx6: data plane says %s, reference says %s (len %zu, sender %#x, trunc %d)",
		        got < -1 ? "?" : oname(got), oname(want), len, sender, trunc);
		CHECK(memcmp(p, scratch, len) == 0, "rx6 modified the packet");
		stat_rx6[got < -1 ? DP_NCOUNTERS : (got == O_DELIVER ? DP_NCOUNTERS : got)] += got >= 0;
		if (v && len >= 1 && (p[0] >> 4) == 6) {
			valid_rx6++;
			CHECK(ref_is_peer6(sender) && !trunc, "rx6 accepted from %#x trunc %d", sender, trunc);
			CHECK(len >= 40 && rd16(p + 4) + 40u == len, "rx6 accepted a bad length (%zu)", len);
			if (len >= 40) {
				CHECK(p[7] > 0, "rx6 accepted hop limit 0");
				CHECK(in_prefix6(p + 24, local6, 64), "rx6 accepted a destination outside the local subnet");
				CHECK(!martian6(p + 8), "rx6 accepted a martian source");
				CHECK(cnt[DP_RX_IPV6_PACKETS] == 1, "rx6: IPv6 packet not counted");
			}
		}
		if (pristine && ref_is_peer6(sender) && !trunc)
			CHECK(v, "rx6 dropped a well-formed packet from a peer (%s)", got < -1 ? "?" : oname(got));

		memset(cnt, 0, sizeof cnt);
		memset(before, 0, sizeof before);
		ip->icmp_tokens = ICMP_BURST;
		union udp_addr dst;
		memset(&dst, 0, sizeof dst);
		bool ok = h_tx6(ip, t, p, len, &dst, cnt);
		got = moved(before, cnt, ok, tx6_reasons, 8);
		want = ref_tx6(scratch, len);
		CHECK(got != -2 && got != -3, "tx6: not exactly one outcome (ok %d)", ok);
		CHECK(got == want, "tx6: data plane says %s, reference says %s (len %zu)", got < -1 ? "?" : oname(got),
		        oname(want), len);
		stat_tx6[got < -1 ? DP_NCOUNTERS : (got == O_DELIVER ? DP_NCOUNTERS : got)] += got >= 0;
		if (ok && len >= 40 && (p[0] >> 4) == 6) {
			valid_tx6++;
			CHECK(scratch[7] >= 2 && p[7] == scratch[7] - 1, "tx6 hop limit %u -> %u", scratch[7], p[7]);
			CHECK(memcmp(p, scratch, 7) == 0 && memcmp(p + 8, scratch + 8, len - 8) == 0, "tx6 changed more than the hop limit");
			CHECK(len <= MTU6, "tx6 sent %zu bytes over an MTU of %u", len, MTU6);
			const struct dp_route6 *r = ref_route6(p + 24);
			CHECK(r && is_endpoint(&dst, r->public_ip, r->port), "tx6 to family %d port %u, expected the route's endpoint (IPv6 underlay %d)",
			        dst.sa.sa_family, udp_addr_port(&dst), under6);
			CHECK(cnt[DP_TX_IPV6_PACKETS] == 1, "tx6: IPv6 packet not counted");
		}
		drain_icmp(scratch, len);
		free(p);
	}
	printf("rx6: delivered %lu, unknown_sender %lu, malformed %lu, ttl %lu, not_local %lu\n", valid_rx6,
	        stat_rx6[DP_DROP_UNKNOWN_SENDER], stat_rx6[DP_DROP_MALFORMED], stat_rx6[DP_DROP_TTL], stat_rx6[DP_DROP_NOT_LOCAL]);
	printf("tx6: sent %lu, link_local %lu, malformed %lu, no_route %lu, ttl %lu, too_big %lu, icmp6 errors checked %lu\n", valid_tx6,
	        stat_tx6[DP_DROP_LINK_LOCAL], stat_tx6[DP_DROP_MALFORMED], stat_tx6[DP_DROP_NO_ROUTE], stat_tx6[DP_DROP_TTL],
	        stat_tx6[DP_DROP_TOO_BIG], icmp6_seen);
	printf("%lu cases, seed %lu, %lu checks, %lu failures\n", cases, seed, checks, failures);
	free(scratch);
	rt_free(tables[0]);
	rt_free(tables[1]);
	close(tun_pair[0]);
	close(tun_pair[1]);
	ip_ctx_destroy(ip);
	return failures ? 1 : 0;
}
