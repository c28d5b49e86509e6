/*
 * Segmentation of TUN super-packets (see gso.h): TCP and UDP over IPv4 and IPv6, what
 * the kernel's tcp_gso_segment and __udp_gso_segment do. Threads and
 * locking: none; pure functions on the caller's memory.
 */
#include "offload/gso.h"
#include "common/bytes.h"
#include "offload/csum.h"

#include <string.h>

size_t tcp4_hdr_len(const uint8_t *pkt, size_t len)
{
	if (len < 40 || (pkt[0] >> 4) != 4 || pkt[9] != 6)
		return 0;
	size_t ihl = (size_t)(pkt[0] & 0xf) * 4;
	if (ihl < 20 || len < ihl + 20)
		return 0;
	size_t thl = (size_t)(pkt[ihl + 12] >> 4) * 4;
	if (thl < 20 || len < ihl + thl)
		return 0;
	return ihl + thl;
}

/* A TCP/IPv4 packet we may segment: whole (total length == len), not a fragment. */
static size_t seg_hdr_len(const uint8_t *pkt, size_t len)
{
	size_t hl = tcp4_hdr_len(pkt, len);
	if (!hl || get16(pkt + 2) != len || (get16(pkt + 6) & 0x3fff) != 0)
		return 0;
	return hl;
}

size_t gso_tcp4_count(const uint8_t *pkt, size_t len, size_t mss)
{
	size_t hl = seg_hdr_len(pkt, len);
	if (!hl || mss == 0)
		return 0;
	size_t pay = len - hl;
	return pay == 0 ? 1 : (pay + mss - 1) / mss;
}

bool udp4_whole(const uint8_t *pkt, size_t len)
{
	return len >= GSO_UDP_HDR && pkt[0] == 0x45 && pkt[9] == 17 && get16(pkt + 2) == len &&
	        (get16(pkt + 6) & 0x3fff) == 0 && get16(pkt + 24) == len - 20;
}

size_t gso_udp4_count(const uint8_t *pkt, size_t len, size_t mss)
{
	if (!udp4_whole(pkt, len) || mss == 0 || len == GSO_UDP_HDR)
		return 0;
	return (len - GSO_UDP_HDR + mss - 1) / mss;
}

/* ---- IPv6 ---------------------------------------------------------------- */

size_t tcp6_hdr_len(const uint8_t *pkt, size_t len)
{
	if (len < 60 || (pkt[0] >> 4) != 6 || pkt[6] != 6)
		return 0;
	size_t thl = (size_t)(pkt[40 + 12] >> 4) * 4;
	if (thl < 20 || len < 40 + thl)
		return 0;
	return 40 + thl;
}

size_t gso_tcp6_count(const uint8_t *pkt, size_t len, size_t mss)
{
	size_t hl = tcp6_hdr_len(pkt, len);
	if (!hl || (size_t)get16(pkt + 4) + 40 != len || mss == 0)
		return 0;
	size_t pay = len - hl;
	return pay == 0 ? 1 : (pay + mss - 1) / mss;
}

bool udp6_whole(const uint8_t *pkt, size_t len)
{
	return len >= GSO_UDP6_HDR && (pkt[0] >> 4) == 6 && pkt[6] == 17 && (size_t)get16(pkt + 4) + 40 == len &&
	        get16(pkt + 44) == len - 40;
}

size_t gso_udp6_count(const uint8_t *pkt, size_t len, size_t mss)
{
	if (!udp6_whole(pkt, len) || mss == 0 || len == GSO_UDP6_HDR)
		return 0;
	return (len - GSO_UDP6_HDR + mss - 1) / mss;
}

/*
 * ---- The segment loops, one per protocol for both families ----------------
 * `v6` is a constant at every call: each public function below gets its own
 * inlined copy with only its family's branches, as the twins had.
 */

/* The pseudo-header's address words, the same for every segment: IPv4's 12..19, IPv6's 8..39. */
static inline uint64_t pseudo_addrs(const uint8_t *pkt, bool v6)
{
	return v6 ? csum_acc(pkt + 8, 32, 0) : csum_acc(pkt + 12, 8, 0);
}

/* Adds the pseudo-header's length and protocol words: IPv4 {0, proto, l4 (16 bits)}, IPv6 {l4 (32 bits), 0, 0, 0, proto}. */
static inline uint64_t pseudo_tail(uint64_t addrs, uint32_t l4, uint8_t proto, bool v6)
{
	if (v6) {
		uint8_t tail[8] = {(uint8_t)(l4 >> 24), (uint8_t)(l4 >> 16), (uint8_t)(l4 >> 8), (uint8_t)l4, 0, 0, 0, proto};
		return csum_acc(tail, 8, addrs);
	}
	uint8_t tail[4] = {0, proto, (uint8_t)(l4 >> 8), (uint8_t)l4};
	return csum_acc(tail, 4, addrs);
}

/* A segment's IP header: IPv4 total length (ihl + l4), ID and header checksum; IPv6 payload length (l4). */
static inline void seg_ip(uint8_t *h, size_t ihl, size_t l4, uint16_t id, bool v6)
{
	if (v6) {
		put16(h + 4, (uint16_t)l4);
		return;
	}
	put16(h + 2, (uint16_t)(ihl + l4));
	put16(h + 4, id);
	ip4_csum_set(h);
}

static inline __attribute__((always_inline)) int tcp_segment(const uint8_t *pkt, size_t len, size_t mss, uint8_t *hdrs,
        struct gso_seg *segs, int max, bool v6)
{
	size_t n = v6 ? gso_tcp6_count(pkt, len, mss) : gso_tcp4_count(pkt, len, mss);
	if (n == 0)
		return GSO_ERR_MALFORMED;
	if (n > (size_t)max)
		return GSO_ERR_TOO_MANY;
	size_t ihl = v6 ? 40 : (size_t)(pkt[0] & 0xf) * 4;
	size_t hl = v6 ? tcp6_hdr_len(pkt, len) : seg_hdr_len(pkt, len);
	size_t thl = hl - ihl;
	size_t pay = len - hl;
	uint16_t id = v6 ? 0 : get16(pkt + 4);
	uint32_t seq = get32(pkt + ihl + 4);
	uint8_t flags = pkt[ihl + 13];
	uint64_t addrs = pseudo_addrs(pkt, v6);

	for (size_t i = 0; i < n; i++) {
		uint8_t *h = hdrs + i * GSO_HDR_MAX;
		size_t off = i * mss;
		size_t plen = pay - off < mss ? pay - off : mss;
		if (pay == 0)
			plen = 0;
		memcpy(h, pkt, hl);
		seg_ip(h, ihl, thl + plen, (uint16_t)(id + i), v6);

		uint8_t *th = h + ihl;
		put32(th + 4, seq + (uint32_t)off);
		uint8_t f = flags;
		if (i > 0)
			f &= (uint8_t)~TCP_FL_CWR;
		if (i + 1 < n)
			f &= (uint8_t) ~(TCP_FL_FIN | TCP_FL_PSH);
		th[13] = f;
		th[16] = th[17] = 0;
		uint64_t acc = pseudo_tail(addrs, (uint32_t)(thl + plen), 6, v6);
		acc = csum_acc(th, thl, acc);
		acc = csum_acc(pkt + hl + off, plen, acc);
		put16(th + 16, (uint16_t)~csum_fold16(acc));

		segs[i].hdr = h;
		segs[i].hdr_len = (uint16_t)hl;
		segs[i].pay = pkt + hl + off;
		segs[i].pay_len = (uint16_t)plen;
	}
	return (int)n;
}

static inline __attribute__((always_inline)) int udp_segment(const uint8_t *pkt, size_t len, size_t mss, uint8_t *hdrs,
        struct gso_seg *segs, int max, bool v6)
{
	size_t n = v6 ? gso_udp6_count(pkt, len, mss) : gso_udp4_count(pkt, len, mss);
	if (n == 0)
		return GSO_ERR_MALFORMED;
	if (n > (size_t)max)
		return GSO_ERR_TOO_MANY;
	size_t hl = v6 ? GSO_UDP6_HDR : GSO_UDP_HDR;
	size_t ihl = hl - 8;
	size_t pay = len - hl;
	uint16_t id = v6 ? 0 : get16(pkt + 4);
	uint64_t addrs = pseudo_addrs(pkt, v6);
	for (size_t i = 0; i < n; i++) {
		uint8_t *h = hdrs + i * GSO_HDR_MAX;
		size_t off = i * mss;
		size_t plen = pay - off < mss ? pay - off : mss;
		memcpy(h, pkt, hl);
		uint32_t l4 = (uint32_t)(8 + plen);
		seg_ip(h, ihl, l4, (uint16_t)(id + i), v6);
		uint8_t *uh = h + ihl;
		put16(uh + 4, (uint16_t)l4);
		uh[6] = uh[7] = 0;
		uint64_t acc = pseudo_tail(addrs, l4, 17, v6);
		acc = csum_acc(uh, 8, acc);
		acc = csum_acc(pkt + hl + off, plen, acc);
		uint16_t c = (uint16_t)~csum_fold16(acc);
		put16(uh + 6, c ? c : 0xffff); /* RFC 768, RFC 8200 8.1: a computed 0 is sent as all ones */
		segs[i].hdr = h;
		segs[i].hdr_len = (uint16_t)hl;
		segs[i].pay = pkt + hl + off;
		segs[i].pay_len = (uint16_t)plen;
	}
	return (int)n;
}

int gso_tcp4_segment(const uint8_t *pkt, size_t len, size_t mss, uint8_t *hdrs, struct gso_seg *segs, int max)
{
	return tcp_segment(pkt, len, mss, hdrs, segs, max, false);
}

int gso_tcp6_segment(const uint8_t *pkt, size_t len, size_t mss, uint8_t *hdrs, struct gso_seg *segs, int max)
{
	return tcp_segment(pkt, len, mss, hdrs, segs, max, true);
}

int gso_udp4_segment(const uint8_t *pkt, size_t len, size_t mss, uint8_t *hdrs, struct gso_seg *segs, int max)
{
	return udp_segment(pkt, len, mss, hdrs, segs, max, false);
}

int gso_udp6_segment(const uint8_t *pkt, size_t len, size_t mss, uint8_t *hdrs, struct gso_seg *segs, int max)
{
	return udp_segment(pkt, len, mss, hdrs, segs, max, true);
}
