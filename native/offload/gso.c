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

int gso_tcp4_segment(const uint8_t *pkt, size_t len, size_t mss, uint8_t *hdrs, struct gso_seg *segs, int max)
{
	size_t n = gso_tcp4_count(pkt, len, mss);
	if (n == 0)
		return GSO_ERR_MALFORMED;
	if (n > (size_t)max)
		return GSO_ERR_TOO_MANY;
	size_t ihl = (size_t)(pkt[0] & 0xf) * 4;
	size_t hl = seg_hdr_len(pkt, len);
	size_t thl = hl - ihl;
	size_t pay = len - hl;
	uint16_t id = get16(pkt + 4);
	uint32_t seq = get32(pkt + ihl + 4);
	uint8_t flags = pkt[ihl + 13];
	/* Source and destination words of the pseudo-header are the same for every segment. */
	uint64_t addrs = csum_acc(pkt + 12, 8, 0);

	for (size_t i = 0; i < n; i++) {
		uint8_t *h = hdrs + i * GSO_HDR_MAX;
		size_t off = i * mss;
		size_t plen = pay - off < mss ? pay - off : mss;
		if (pay == 0)
			plen = 0;
		memcpy(h, pkt, hl);
		put16(h + 2, (uint16_t)(hl + plen));
		put16(h + 4, (uint16_t)(id + i));
		ip4_csum_set(h);

		uint8_t *th = h + ihl;
		put32(th + 4, seq + (uint32_t)off);
		uint8_t f = flags;
		if (i > 0)
			f &= (uint8_t)~TCP_FL_CWR;
		if (i + 1 < n)
			f &= (uint8_t) ~(TCP_FL_FIN | TCP_FL_PSH);
		th[13] = f;
		th[16] = th[17] = 0;
		uint32_t l4 = (uint32_t)(thl + plen);
		uint8_t tail[4] = {0, 6, (uint8_t)(l4 >> 8), (uint8_t)l4};
		uint64_t acc = csum_acc(tail, 4, addrs);
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

int gso_udp4_segment(const uint8_t *pkt, size_t len, size_t mss, uint8_t *hdrs, struct gso_seg *segs, int max)
{
	size_t n = gso_udp4_count(pkt, len, mss);
	if (n == 0)
		return GSO_ERR_MALFORMED;
	if (n > (size_t)max)
		return GSO_ERR_TOO_MANY;
	size_t pay = len - GSO_UDP_HDR;
	uint16_t id = get16(pkt + 4);
	uint64_t addrs = csum_acc(pkt + 12, 8, 0);
	for (size_t i = 0; i < n; i++) {
		uint8_t *h = hdrs + i * GSO_HDR_MAX;
		size_t off = i * mss;
		size_t plen = pay - off < mss ? pay - off : mss;
		memcpy(h, pkt, GSO_UDP_HDR);
		put16(h + 2, (uint16_t)(GSO_UDP_HDR + plen));
		put16(h + 4, (uint16_t)(id + i));
		ip4_csum_set(h);
		uint8_t *uh = h + 20;
		uint32_t l4 = (uint32_t)(8 + plen);
		put16(uh + 4, (uint16_t)l4);
		uh[6] = uh[7] = 0;
		uint8_t tail[4] = {0, 17, (uint8_t)(l4 >> 8), (uint8_t)l4};
		uint64_t acc = csum_acc(tail, 4, addrs);
		acc = csum_acc(uh, 8, acc);
		acc = csum_acc(pkt + GSO_UDP_HDR + off, plen, acc);
		uint16_t c = (uint16_t)~csum_fold16(acc);
		put16(uh + 6, c ? c : 0xffff); /* RFC 768: a computed 0 is sent as all ones */
		segs[i].hdr = h;
		segs[i].hdr_len = GSO_UDP_HDR;
		segs[i].pay = pkt + GSO_UDP_HDR + off;
		segs[i].pay_len = (uint16_t)plen;
	}
	return (int)n;
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

/* The pseudo-header's address part (the same for every segment) plus its length and next-header word. */
static uint64_t pseudo6_tail(uint64_t addrs, uint32_t l4, uint8_t proto)
{
	uint8_t tail[8] = {(uint8_t)(l4 >> 24), (uint8_t)(l4 >> 16), (uint8_t)(l4 >> 8), (uint8_t)l4, 0, 0, 0, proto};
	return csum_acc(tail, 8, addrs);
}

int gso_tcp6_segment(const uint8_t *pkt, size_t len, size_t mss, uint8_t *hdrs, struct gso_seg *segs, int max)
{
	size_t n = gso_tcp6_count(pkt, len, mss);
	if (n == 0)
		return GSO_ERR_MALFORMED;
	if (n > (size_t)max)
		return GSO_ERR_TOO_MANY;
	size_t hl = tcp6_hdr_len(pkt, len);
	size_t thl = hl - 40;
	size_t pay = len - hl;
	uint32_t seq = get32(pkt + 40 + 4);
	uint8_t flags = pkt[40 + 13];
	uint64_t addrs = csum_acc(pkt + 8, 32, 0);

	for (size_t i = 0; i < n; i++) {
		uint8_t *h = hdrs + i * GSO_HDR_MAX;
		size_t off = i * mss;
		size_t plen = pay - off < mss ? pay - off : mss;
		if (pay == 0)
			plen = 0;
		memcpy(h, pkt, hl);
		put16(h + 4, (uint16_t)(thl + plen));
		uint8_t *th = h + 40;
		put32(th + 4, seq + (uint32_t)off);
		uint8_t f = flags;
		if (i > 0)
			f &= (uint8_t)~TCP_FL_CWR;
		if (i + 1 < n)
			f &= (uint8_t) ~(TCP_FL_FIN | TCP_FL_PSH);
		th[13] = f;
		th[16] = th[17] = 0;
		uint64_t acc = pseudo6_tail(addrs, (uint32_t)(thl + plen), 6);
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

int gso_udp6_segment(const uint8_t *pkt, size_t len, size_t mss, uint8_t *hdrs, struct gso_seg *segs, int max)
{
	size_t n = gso_udp6_count(pkt, len, mss);
	if (n == 0)
		return GSO_ERR_MALFORMED;
	if (n > (size_t)max)
		return GSO_ERR_TOO_MANY;
	size_t pay = len - GSO_UDP6_HDR;
	uint64_t addrs = csum_acc(pkt + 8, 32, 0);
	for (size_t i = 0; i < n; i++) {
		uint8_t *h = hdrs + i * GSO_HDR_MAX;
		size_t off = i * mss;
		size_t plen = pay - off < mss ? pay - off : mss;
		memcpy(h, pkt, GSO_UDP6_HDR);
		uint32_t l4 = (uint32_t)(8 + plen);
		put16(h + 4, (uint16_t)l4);
		uint8_t *uh = h + 40;
		put16(uh + 4, (uint16_t)l4);
		uh[6] = uh[7] = 0;
		uint64_t acc = pseudo6_tail(addrs, l4, 17);
		acc = csum_acc(uh, 8, acc);
		acc = csum_acc(pkt + GSO_UDP6_HDR + off, plen, acc);
		uint16_t c = (uint16_t)~csum_fold16(acc);
		put16(uh + 6, c ? c : 0xffff); /* RFC 8200 8.1: a computed 0 is sent as all ones */
		segs[i].hdr = h;
		segs[i].hdr_len = GSO_UDP6_HDR;
		segs[i].pay = pkt + GSO_UDP6_HDR + off;
		segs[i].pay_len = (uint16_t)plen;
	}
	return (int)n;
}
