/*
 * Segmentation, coalescing and checksums for the udp data plane (see gso.h):
 * TCP and UDP over IPv4 both ways.
 *
 * Threads and locking: none. Every function works only on the memory its
 * caller passes and keeps no state between calls, so each data plane
 * thread calls them on its own buffers without any lock; the standalone
 * test (native/test/gso_test.c) calls them the same way.
 *
 * Checksums: one's-complement sums are accumulated on native-endian 64-bit
 * loads (in bulk as 32-bit halves in four independent sums, else with
 * end-around carry); since 2^16 == 1 modulo 0xffff, folding that
 * to 16 bits gives the sum of the 16-bit words in host order, and a byte
 * swap on little-endian hosts turns it into the network-order value.
 */
#include "gso.h"
#include "bytes.h"

#include <string.h>

static inline uint64_t add64c(uint64_t a, uint64_t b)
{
	a += b;
	return a + (a < b);
}

bool gso_csum_scalar_only;

/*
 * The bulk of a sum: the 32-bit native words of n 32-byte blocks, added as
 * plain integers (no carry chain; 2^32 == 1 modulo 0xffff too). Neither
 * version can overflow before 2^31 blocks, far beyond any packet, and both
 * return the same integer, so which one ran never shows in a checksum.
 */
static uint64_t sum_blocks_scalar(const uint8_t *p, size_t n)
{
	uint64_t a0 = 0, a1 = 0, a2 = 0, a3 = 0, w0, w1, w2, w3;
	for (; n; n--, p += 32) {
		memcpy(&w0, p, 8);
		memcpy(&w1, p + 8, 8);
		memcpy(&w2, p + 16, 8);
		memcpy(&w3, p + 24, 8);
		a0 += (uint32_t)w0;
		a0 += w0 >> 32;
		a1 += (uint32_t)w1;
		a1 += w1 >> 32;
		a2 += (uint32_t)w2;
		a2 += w2 >> 32;
		a3 += (uint32_t)w3;
		a3 += w3 >> 32;
	}
	return a0 + a1 + a2 + a3;
}

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
/*
 * AVX2 (checked at run time): each 32-byte load widened to 64-bit lanes, the
 * lanes summed at the end. Verifying the checksums of received TCP segments
 * before coalescing is a pass over every byte, about a fifth of the rx
 * thread with the scalar loop; this one is about twice as fast.
 */
__attribute__((target("avx2"))) static uint64_t sum_blocks_avx2(const uint8_t *p, size_t n)
{
	const __m256i z = _mm256_setzero_si256();
	__m256i a = z, b = z;
	for (; n; n--, p += 32) {
		__m256i v = _mm256_loadu_si256((const __m256i *)(const void *)p);
		a = _mm256_add_epi64(a, _mm256_unpacklo_epi32(v, z));
		b = _mm256_add_epi64(b, _mm256_unpackhi_epi32(v, z));
	}
	uint64_t l[4];
	_mm256_storeu_si256((__m256i *)(void *)l, _mm256_add_epi64(a, b));
	return l[0] + l[1] + l[2] + l[3];
}

static uint64_t sum_blocks(const uint8_t *p, size_t n)
{
	if (n >= 2 && !gso_csum_scalar_only && __builtin_cpu_supports("avx2"))
		return sum_blocks_avx2(p, n);
	return sum_blocks_scalar(p, n);
}
#else
static uint64_t sum_blocks(const uint8_t *p, size_t n)
{
	return sum_blocks_scalar(p, n);
}
#endif

uint64_t csum_acc(const uint8_t *p, size_t len, uint64_t acc)
{
	uint64_t w0;
	if (len >= 32) {
		acc = add64c(acc, sum_blocks(p, len / 32));
		p += len & ~(size_t)31;
		len &= 31;
	}
	while (len >= 8) {
		memcpy(&w0, p, 8);
		acc = add64c(acc, w0);
		p += 8;
		len -= 8;
	}
	if (len >= 4) {
		uint32_t w;
		memcpy(&w, p, 4);
		acc = add64c(acc, w);
		p += 4;
		len -= 4;
	}
	if (len >= 2) {
		uint16_t w;
		memcpy(&w, p, 2);
		acc = add64c(acc, w);
		p += 2;
		len -= 2;
	}
	if (len) {
#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
		acc = add64c(acc, p[0]);
#else
		acc = add64c(acc, (uint64_t)p[0] << 8);
#endif
	}
	return acc;
}

uint16_t csum_fold16(uint64_t acc)
{
	acc = (acc & 0xffffffffu) + (acc >> 32);
	acc = (acc & 0xffffffffu) + (acc >> 32);
	acc = (acc & 0xffff) + (acc >> 16);
	acc = (acc & 0xffff) + (acc >> 16);
	uint16_t v = (uint16_t)acc;
#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
	v = (uint16_t)((v >> 8) | (v << 8));
#endif
	return v;
}

uint64_t csum_pseudo4(const uint8_t *ip, uint8_t proto, uint32_t l4len)
{
	uint8_t tail[4] = {0, proto, (uint8_t)(l4len >> 8), (uint8_t)l4len};
	return csum_acc(tail, 4, csum_acc(ip + 12, 8, 0));
}

bool ip4_csum_ok(const uint8_t *ip)
{
	return csum_fold16(csum_acc(ip, (size_t)(ip[0] & 0xf) * 4, 0)) == 0xffff;
}

void ip4_csum_set(uint8_t *ip)
{
	ip[10] = ip[11] = 0;
	put16(ip + 10, (uint16_t)~csum_fold16(csum_acc(ip, (size_t)(ip[0] & 0xf) * 4, 0)));
}

bool gso_complete_csum(uint8_t *pkt, size_t len, size_t csum_start, size_t csum_offset)
{
	if (csum_start >= len || csum_offset > len - csum_start || len - csum_start - csum_offset < 2)
		return false;
	/* The sum is over the region as it stands: the field already holds the pseudo-header sum. */
	uint64_t acc = csum_acc(pkt + csum_start, len - csum_start, 0);
	if (csum_start & 1) {
		/* An odd start shifts every word by one byte: the sum of the shifted words is the byte-swapped sum. */
		uint16_t s = csum_fold16(acc);
		s = (uint16_t)((s >> 8) | (s << 8));
		put16(pkt + csum_start + csum_offset, (uint16_t)~s);
		return true;
	}
	put16(pkt + csum_start + csum_offset, (uint16_t)~csum_fold16(acc));
	return true;
}

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
			f &= (uint8_t)~(TCP_FL_FIN | TCP_FL_PSH);
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

/* A UDP/IPv4 datagram we may segment or merge: no IP options, whole, not a fragment, UDP length == IP payload. */
static bool udp4_whole(const uint8_t *pkt, size_t len)
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

/* ---- coalescing ---------------------------------------------------------- */

/*
 * A UDP/IPv4 datagram that may take part in a merge: whole, with payload and
 * a non-zero checksum that verifies (a datagram without checksum would get
 * one on segmentation: not the same packet).
 */
static bool gro_udp_candidate(const uint8_t *p, uint32_t len)
{
	if (len <= GSO_UDP_HDR || !udp4_whole(p, len) || get16(p + 26) == 0)
		return false;
	return csum_fold16(csum_acc(p + 20, len - 20, csum_pseudo4(p, 17, len - 20))) == 0xffff;
}

/*
 * What makes a packet able to take part in a merge: a TCP/IPv4 packet
 * without IP options, not a fragment, with payload and a valid checksum,
 * and none of URG/RST/SYN (the kernel never merges those either).
 */
static bool gro_candidate(const uint8_t *p, uint32_t len, size_t *hl_out)
{
	if (len < 40 || p[0] != 0x45 || p[9] != 6 || (get16(p + 6) & 0xbfff) != 0)
		return false;
	size_t hl = tcp4_hdr_len(p, len);
	if (!hl || hl >= len)
		return false;
	if (p[20 + 13] & (TCP_FL_URG | TCP_FL_RST | TCP_FL_SYN))
		return false;
	uint64_t acc = csum_acc(p + 20, len - 20, csum_pseudo4(p, 6, len - 20));
	if (csum_fold16(acc) != 0xffff)
		return false;
	*hl_out = hl;
	return true;
}

/* Addresses (12..19) of two IPv4 headers, plus the ports (20..23) when both lack IP options. */
static bool same_addrs(const uint8_t *a, const uint8_t *b)
{
	return memcmp(a + 12, b + 12, 8) == 0;
}

static bool same_ports(const uint8_t *a, const uint8_t *b)
{
	return memcmp(a + 20, b + 20, 4) == 0;
}

static void drop_open(uint32_t *open, size_t *nopen, size_t k)
{
	memmove(open + k, open + k + 1, (*nopen - k - 1) * sizeof open[0]);
	(*nopen)--;
}

static bool can_append(const struct gro_pkt *pkts, const struct gro_item *it, const uint8_t *q, uint32_t qlen,
		       size_t qhl)
{
	const uint8_t *f = pkts[it->first].p;
	const uint8_t *l = pkts[it->last].p;
	uint32_t llen = pkts[it->last].len;
	uint32_t qpay = qlen - (uint32_t)qhl;
	if (qhl != it->hdr_len || it->count >= GRO_MAX_SEGS || it->total + qpay > 65535)
		return false;
	/* IP: TOS, DF, TTL equal, ID of the previous + 1. */
	if (q[1] != f[1] || get16(q + 6) != get16(f + 6) || q[8] != f[8] ||
	    get16(q + 4) != (uint16_t)(get16(l + 4) + 1))
		return false;
	if (q[9] == 17) /* ports were compared by the caller; sizes are all that is left */
		return qpay >= 1 && qpay <= it->mss;
	const uint8_t *qt = q + 20, *ft = f + 20, *lt = l + 20;
	if (qt[13] & TCP_FL_CWR)
		return false;
	if (((qt[13] ^ ft[13]) & (uint8_t) ~(TCP_FL_CWR | TCP_FL_FIN | TCP_FL_PSH)) != 0)
		return false;
	/* ack, doff, window, urgent pointer, options; seq right after the last. */
	if (memcmp(qt + 8, ft + 8, 5) != 0 || memcmp(qt + 14, ft + 14, 2) != 0 || memcmp(qt + 18, ft + 18, qhl - 38) != 0)
		return false;
	if (get32(qt + 4) != get32(lt + 4) + (llen - (uint32_t)qhl))
		return false;
	return qpay >= 1 && qpay <= it->mss;
}

static void gro_finish(struct gro_pkt *pkts, struct gro_item *it)
{
	memset(&it->vh, 0, sizeof it->vh);
	if (it->count < 2) {
		it->total = pkts[it->first].len;
		return;
	}
	uint8_t *f = pkts[it->first].p;
	uint8_t *l = pkts[it->last].p;
	memcpy(it->saved, f, it->hdr_len);
	put16(f + 2, (uint16_t)it->total);
	ip4_csum_set(f);
	if (f[9] == 17) {
		/* As a UDP GSO sender leaves it: UDP length of the whole, pseudo-header sum in the checksum field. */
		put16(f + 24, (uint16_t)(it->total - 20));
		put16(f + 26, csum_fold16(csum_pseudo4(f, 17, it->total - 20)));
		it->vh.flags = VIRTIO_NET_HDR_F_NEEDS_CSUM;
		it->vh.gso_type = VIRTIO_NET_HDR_GSO_UDP_L4;
		it->vh.hdr_len = GSO_UDP_HDR;
		it->vh.gso_size = it->mss;
		it->vh.csum_start = 20;
		it->vh.csum_offset = 6;
		return;
	}
	f[20 + 13] |= (uint8_t)(l[20 + 13] & (TCP_FL_FIN | TCP_FL_PSH));
	put16(f + 20 + 16, csum_fold16(csum_pseudo4(f, 6, it->total - 20)));
	it->vh.flags = VIRTIO_NET_HDR_F_NEEDS_CSUM;
	it->vh.gso_type = VIRTIO_NET_HDR_GSO_TCPV4;
	if (f[20 + 13] & TCP_FL_CWR)
		it->vh.gso_type |= VIRTIO_NET_HDR_GSO_ECN;
	it->vh.hdr_len = it->hdr_len;
	it->vh.gso_size = it->mss;
	it->vh.csum_start = 20;
	it->vh.csum_offset = 16;
}

void gro_item_undo(const struct gro_pkt *pkts, const struct gro_item *it)
{
	if (it->count >= 2)
		memcpy(pkts[it->first].p, it->saved, it->hdr_len);
}

size_t gro_coalesce(struct gro_pkt *pkts, size_t n, uint32_t *next, struct gro_item *items, unsigned flags)
{
	uint32_t open[GRO_FLOWS]; /* item indexes of groups that may still grow, oldest first */
	size_t nopen = 0, nitems = 0;

	for (size_t i = 0; i < n; i++) {
		uint8_t *q = pkts[i].p;
		uint32_t qlen = pkts[i].len;
		next[i] = GRO_END;
		size_t qhl = 0;
		bool udp = qlen >= 20 && q[9] == 17 && (flags & GRO_UDP);
		bool cand;
		if (udp) {
			cand = gro_udp_candidate(q, qlen);
			qhl = cand ? GSO_UDP_HDR : 0;
		} else {
			cand = gro_candidate(q, qlen, &qhl);
		}
		/*
		 * A TCP (or, when merged, UDP) packet that cannot merge closes the
		 * groups of its protocol it might belong to (same addresses: ports
		 * are not reliable for fragments or with IP options), so nothing
		 * later of its flow is written before it.
		 */
		if (qlen >= 20 && (q[9] == 6 || udp)) {
			for (size_t k = 0; k < nopen;) {
				struct gro_item *it = &items[open[k]];
				const uint8_t *f = pkts[it->first].p;
				if (f[9] != q[9] || !same_addrs(f, q) || (cand && !same_ports(f, q))) {
					k++;
					continue;
				}
				if (cand && can_append(pkts, it, q, qlen, qhl)) {
					next[it->last] = (uint32_t)i;
					it->last = (uint32_t)i;
					it->count++;
					it->total += qlen - (uint32_t)qhl;
					if ((qlen - qhl) < it->mss || (!udp && (q[20 + 13] & (TCP_FL_FIN | TCP_FL_PSH))))
						drop_open(open, &nopen, k);
					goto next_pkt;
				}
				drop_open(open, &nopen, k);
				if (cand)
					break; /* one open group per flow */
			}
		}

		struct gro_item *it = &items[nitems];
		it->first = it->last = (uint32_t)i;
		it->count = 1;
		it->total = qlen;
		it->hdr_len = (uint16_t)qhl;
		it->mss = (uint16_t)(qlen - qhl);
		if (cand && (udp || !(q[20 + 13] & (TCP_FL_FIN | TCP_FL_PSH)))) {
			if (nopen == GRO_FLOWS)
				drop_open(open, &nopen, 0);
			open[nopen++] = (uint32_t)nitems;
		}
		nitems++;
	next_pkt:;
	}
	for (size_t k = 0; k < nitems; k++)
		gro_finish(pkts, &items[k]);
	return nitems;
}
