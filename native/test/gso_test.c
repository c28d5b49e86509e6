/*
 * Property tests of native/offload/ (csum.c, gso.c, gro.c), standalone (no N-API, no I/O but stdout).
 * Threads and locking: single-threaded.
 *
 *   gso_test [cases] [seed]     default 10000 cases, seed 1
 *
 * For random inputs from a fixed seed:
 *   - csum_acc/csum_fold16 agree with a byte-by-byte reference, also when a
 *     sum is accumulated in pieces;
 *   - gso_complete_csum yields packets whose checksum verifies;
 *   - segmenting a random TCP/IPv4 super-packet gives segments with valid IP
 *     and TCP checksums, IP ID + i, seq + i*mss, CWR only on the first, PSH
 *     and FIN only on the last, the rest of the headers unchanged, payload
 *     split in order; coalescing those segments gives back the super-packet
 *     byte for byte with the right virtio header;
 *   - coalescing a random mix (several flows interleaved, pure ACKs, PSH,
 *     UDP and ICMP, corrupted, lost and duplicated segments) keeps every
 *     packet exactly once, keeps each flow in order, leaves unmerged packets
 *     untouched, and every merged super-packet segments back into exactly its
 *     original packets; gro_item_undo restores the first packet.
 *   - the same for UDP (GRO_UDP): segmenting a random UDP/IPv4 super-packet
 *     gives datagrams with valid IP and UDP checksums, IP ID + i, UDP length,
 *     all of gso_size but the last (which may be shorter); coalescing them
 *     gives back the super-packet with a GSO_UDP_L4 virtio header (groups of
 *     GRO_MAX_SEGS beyond that), and nothing at all without GRO_UDP; random
 *     mixes include UDP flows (short, zero-checksum, corrupted, lost,
 *     reordered-ID datagrams) and only same-flow, same-size consecutive
 *     datagrams merge.
 *   - IPv6: segmenting a random TCP/IPv6 or UDP/IPv6 super-packet gives
 *     segments with the right payload length, seq + i*mss and flags (TCP) or
 *     UDP length, a checksum that verifies over the IPv6 pseudo-header
 *     (computed here byte by byte), the rest of the headers unchanged and
 *     the payload split in order; coalescing TCP/IPv6 segments gives back
 *     the super-packet (TCPV6 virtio header, checksum completed verifies),
 *     UDP/IPv6 stays unmerged; malformed super-packets are refused.
 * Exit status 0 if every case passed; the first failures are printed.
 */
#include "offload/csum.h"
#include "offload/gro.h"
#include "offload/gso.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rng.h"

static int failures;
static long checks;
#define CHECK(cond, ...) \
	do { \
		checks++; \
		if (!(cond)) { \
			if (failures < 20) { \
				printf("FAIL %s:%d: %s: ", __FILE__, __LINE__, #cond); \
				printf(__VA_ARGS__); \
				printf("\n"); \
			} \
			failures++; \
		} \
	} while (0)

static uint16_t g16(const uint8_t *p)
{
	return (uint16_t)((p[0] << 8) | p[1]);
}
static uint32_t g32(const uint8_t *p)
{
	return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3];
}
static void p16(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t)(v >> 8);
	p[1] = (uint8_t)v;
}
static void p32(uint8_t *p, uint32_t v)
{
	p16(p, (uint16_t)(v >> 16));
	p16(p + 2, (uint16_t)v);
}

/* Reference: one's-complement sum of big-endian 16-bit words, folded, not complemented. */
static uint32_t ref_add(const uint8_t *p, size_t len, uint32_t s)
{
	for (size_t i = 0; i + 1 < len; i += 2)
		s += (uint32_t)(p[i] << 8 | p[i + 1]);
	if (len & 1)
		s += (uint32_t)p[len - 1] << 8;
	return s;
}
static uint16_t ref_fold(uint32_t s)
{
	while (s >> 16)
		s = (s & 0xffff) + (s >> 16);
	return (uint16_t)s;
}
static bool ref_ip_ok(const uint8_t *ip)
{
	return ref_fold(ref_add(ip, (size_t)(ip[0] & 0xf) * 4, 0)) == 0xffff;
}
static bool ref_l4_ok(const uint8_t *ip, size_t len)
{
	size_t ihl = (size_t)(ip[0] & 0xf) * 4;
	uint8_t ph[12];
	memcpy(ph, ip + 12, 8);
	ph[8] = 0;
	ph[9] = ip[9];
	p16(ph + 10, (uint16_t)(len - ihl));
	return ref_fold(ref_add(ip + ihl, len - ihl, ref_add(ph, 12, 0))) == 0xffff;
}
static void fill(uint8_t *p, size_t n)
{
	for (size_t i = 0; i < n; i++)
		p[i] = (uint8_t)rnd();
}

/* ---- checksums ---------------------------------------------------------- */

static void test_csum1(void)
{
	static uint8_t buf[4100];
	size_t len = rn(4097);
	fill(buf, len + 3);
	size_t off = rn(4) & ~(size_t)1; /* regions start at an even offset of the data */
	const uint8_t *p = buf + off;
	if (rn(8) == 0)
		memset(buf, 0xff, len + 3);
	uint16_t want = ref_fold(ref_add(p, len, 0));
	uint16_t got = csum_fold16(csum_acc(p, len, 0));
	/* 0x0000 and 0xffff are the same number in one's complement: a non-empty all-zero region sums to either. */
	CHECK(got == want || (len && ((got == 0 && want == 0xffff) || (got == 0xffff && want == 0))), "len %zu off %zu got %04x want %04x", len, off, got, want);
	size_t cut = rn((uint32_t)len + 1) & ~(size_t)1;
	uint16_t split = csum_fold16(csum_acc(p + cut, len - cut, csum_acc(p, cut, 0)));
	CHECK(split == got, "split at %zu: %04x vs %04x", cut, split, got);
}

/* Both bulk paths (SIMD where the CPU has it, and the portable one) against the reference. */
static void test_csum(void)
{
	uint64_t saved = rng_state;
	gso_csum_scalar_only = false;
	test_csum1();
	rng_state = saved;
	gso_csum_scalar_only = true;
	test_csum1();
	gso_csum_scalar_only = false;
}

/* ---- packet builders ----------------------------------------------------- */

struct flow {
	uint8_t src[4], dst[4];
	uint16_t sport, dport;
	uint32_t seq, ack;
	uint16_t id, win;
	uint8_t tos, ttl, df, doff;
	uint8_t opts[40];
};

static void random_flow(struct flow *f)
{
	fill(f->src, 4);
	fill(f->dst, 4);
	f->sport = (uint16_t)rnd();
	f->dport = (uint16_t)rnd();
	f->seq = (uint32_t)rnd();
	f->ack = (uint32_t)rnd();
	f->id = (uint16_t)rnd();
	f->win = (uint16_t)rnd();
	f->tos = (uint8_t)rnd();
	f->ttl = (uint8_t)(1 + rn(255));
	f->df = rn(4) != 0;
	f->doff = (uint8_t)(rn(3) == 0 ? 5 : 5 + rn(11));
	fill(f->opts, sizeof f->opts);
}

/* A TCP/IPv4 packet of flow f with `pay` payload bytes; checksum either full or the NEEDS_CSUM pseudo sum. */
static size_t build_tcp(uint8_t *out, const struct flow *f, size_t ihl, uint8_t flags, const uint8_t *payload,
        size_t pay, bool partial)
{
	size_t thl = (size_t)f->doff * 4, len = ihl + thl + pay;
	memset(out, 0, ihl + thl);
	out[0] = (uint8_t)(0x40 | (ihl / 4));
	out[1] = f->tos;
	p16(out + 2, (uint16_t)len);
	p16(out + 4, f->id);
	p16(out + 6, f->df ? 0x4000 : 0);
	out[8] = f->ttl;
	out[9] = 6;
	memcpy(out + 12, f->src, 4);
	memcpy(out + 16, f->dst, 4);
	for (size_t i = 20; i < ihl; i++)
		out[i] = 1; /* NOP options */
	uint8_t *t = out + ihl;
	p16(t, f->sport);
	p16(t + 2, f->dport);
	p32(t + 4, f->seq);
	p32(t + 8, f->ack);
	t[12] = (uint8_t)(f->doff << 4);
	t[13] = flags;
	p16(t + 14, f->win);
	memcpy(t + 20, f->opts, thl - 20);
	memcpy(out + ihl + thl, payload, pay);
	ip4_csum_set(out);
	uint16_t ps = csum_fold16(csum_pseudo4(out, 6, (uint32_t)(thl + pay)));
	if (partial) {
		p16(t + 16, ps);
	} else {
		p16(t + 16, 0);
		p16(t + 16, (uint16_t)~csum_fold16(csum_acc(t, thl + pay, csum_pseudo4(out, 6, (uint32_t)(thl + pay)))));
	}
	return len;
}

static size_t build_other(uint8_t *out, const struct flow *f, uint8_t proto, size_t pay)
{
	size_t len = 20 + 8 + pay;
	memset(out, 0, 28);
	out[0] = 0x45;
	p16(out + 2, (uint16_t)len);
	p16(out + 4, (uint16_t)rnd());
	out[8] = 64;
	out[9] = proto;
	memcpy(out + 12, f->src, 4);
	memcpy(out + 16, f->dst, 4);
	fill(out + 20, 8 + pay);
	if (proto == 17)
		p16(out + 24, (uint16_t)(8 + pay));
	ip4_csum_set(out);
	return len;
}

/* A UDP/IPv4 datagram of flow f (no options) with a full checksum, or the NEEDS_CSUM pseudo sum. */
static size_t build_udp(uint8_t *out, const struct flow *f, const uint8_t *payload, size_t pay, bool partial)
{
	size_t len = 28 + pay;
	memset(out, 0, 28);
	out[0] = 0x45;
	out[1] = f->tos;
	p16(out + 2, (uint16_t)len);
	p16(out + 4, f->id);
	p16(out + 6, f->df ? 0x4000 : 0);
	out[8] = f->ttl;
	out[9] = 17;
	memcpy(out + 12, f->src, 4);
	memcpy(out + 16, f->dst, 4);
	p16(out + 20, f->sport);
	p16(out + 22, f->dport);
	p16(out + 24, (uint16_t)(8 + pay));
	memcpy(out + 28, payload, pay);
	ip4_csum_set(out);
	uint64_t ps = csum_pseudo4(out, 17, (uint32_t)(8 + pay));
	if (partial) {
		p16(out + 26, csum_fold16(ps));
	} else {
		uint16_t c = (uint16_t)~csum_fold16(csum_acc(out + 20, 8 + pay, ps));
		p16(out + 26, c ? c : 0xffff);
	}
	return len;
}

/* ---- NEEDS_CSUM ----------------------------------------------------------- */

static void test_complete(void)
{
	static uint8_t pkt[3000], pay[2000];
	struct flow f;
	random_flow(&f);
	size_t n = rn(1500);
	fill(pay, n);
	size_t len;
	size_t off;
	if (rn(2)) {
		len = build_tcp(pkt, &f, 20, TCP_FL_ACK, pay, n, true);
		off = 16;
	} else {
		len = build_other(pkt, &f, 17, n);
		p16(pkt + 26, csum_fold16(csum_pseudo4(pkt, 17, (uint32_t)(len - 20))));
		off = 6;
	}
	CHECK(gso_complete_csum(pkt, len, 20, off), "complete refused");
	CHECK(ref_l4_ok(pkt, len), "completed checksum does not verify (proto %u len %zu)", pkt[9], len);
	CHECK(!gso_complete_csum(pkt, len, len, 0), "start past the end accepted");
	CHECK(!gso_complete_csum(pkt, len, 20, len - 21), "field past the end accepted");
}

/* ---- segment -> coalesce -------------------------------------------------- */

#define MAXSEG 1100
static uint8_t hdrs[MAXSEG * GSO_HDR_MAX];
static struct gso_seg segs[MAXSEG];
static uint8_t segbuf[MAXSEG][1600 + GSO_HDR_MAX];
static uint8_t segorig[MAXSEG][1600 + GSO_HDR_MAX];
static struct gro_pkt pk[MAXSEG];

/* Segment i as one datagram in segbuf[i] (a copy kept in segorig[i]), registered as pk[i]. */
static uint8_t *flatten_seg(int i, const struct gso_seg *g)
{
	uint8_t *s = segbuf[i];
	size_t slen = g->hdr_len + g->pay_len;
	memcpy(s, g->hdr, g->hdr_len);
	memcpy(s + g->hdr_len, g->pay, g->pay_len);
	memcpy(segorig[i], s, slen);
	pk[i].p = s;
	pk[i].len = (uint32_t)slen;
	return s;
}
static uint32_t nxt[MAXSEG];
static struct gro_item items[MAXSEG];

/* Writes item `it` as one packet into out; returns its length. */
static size_t item_bytes(const struct gro_item *it, uint8_t *out)
{
	size_t o = 0;
	uint32_t i = it->first;
	memcpy(out, pk[i].p, pk[i].len);
	o = pk[i].len;
	for (i = nxt[i]; i != GRO_END; i = nxt[i]) {
		memcpy(out + o, pk[i].p + it->hdr_len, pk[i].len - it->hdr_len);
		o += pk[i].len - it->hdr_len;
	}
	return o;
}

static void test_segment(void)
{
	static uint8_t super[65536], payload[65536], out[70000];
	struct flow f;
	random_flow(&f);
	size_t ihl = rn(5) == 0 ? 20 + 4 * rn(4) : 20;
	size_t hl = ihl + (size_t)f.doff * 4;
	size_t mss = rn(4) == 0 ? 1 + rn(64) : 500 + rn(1001);
	size_t maxpay = 65535 - hl;
	size_t pay = rn(10) == 0 ? 0 : rn((uint32_t)maxpay + 1);
	if (rn(2) && pay > 64 * mss)
		pay = 1 + rn((uint32_t)(64 * mss)); /* mostly in what one coalesced packet can hold */
	if (pay / mss >= MAXSEG - 1)
		pay = mss * (MAXSEG - 2);
	fill(payload, pay);
	uint8_t flags = (uint8_t)(TCP_FL_ACK | (rnd() & (TCP_FL_PSH | TCP_FL_FIN | TCP_FL_CWR | TCP_FL_ECE)));
	size_t len = build_tcp(super, &f, ihl, flags, payload, pay, true);

	int n = gso_tcp4_segment(super, len, mss, hdrs, segs, MAXSEG);
	size_t want_n = pay == 0 ? 1 : (pay + mss - 1) / mss;
	CHECK(n == (int)want_n, "segments %d want %zu (pay %zu mss %zu)", n, want_n, pay, mss);
	if (n != (int)want_n)
		return;
	CHECK(gso_tcp4_count(super, len, mss) == want_n, "count disagrees");
	size_t got_pay = 0;
	for (int i = 0; i < n; i++) {
		uint8_t *s = flatten_seg(i, &segs[i]);
		size_t slen = pk[i].len;
		const uint8_t *t = s + ihl;
		CHECK(segs[i].hdr_len == hl, "hdr_len %u", segs[i].hdr_len);
		CHECK(i + 1 == n ? segs[i].pay_len <= mss && (pay == 0 || segs[i].pay_len > 0) : segs[i].pay_len == mss,
		        "seg %d of %d pay %u mss %zu", i, n, segs[i].pay_len, mss);
		CHECK(g16(s + 2) == slen, "tot_len");
		CHECK(g16(s + 4) == (uint16_t)(f.id + i), "ip id %u want %u", g16(s + 4), (uint16_t)(f.id + i));
		CHECK(ref_ip_ok(s), "ip checksum of seg %d", i);
		CHECK(ref_l4_ok(s, slen), "tcp checksum of seg %d/%d", i, n);
		CHECK(g32(t + 4) == f.seq + (uint32_t)(i * mss), "seq");
		uint8_t wf = flags;
		if (i > 0)
			wf &= (uint8_t)~TCP_FL_CWR;
		if (i + 1 < n)
			wf &= (uint8_t) ~(TCP_FL_PSH | TCP_FL_FIN);
		CHECK(t[13] == wf, "flags of seg %d/%d: %02x want %02x", i, n, t[13], wf);
		/* Everything else of the headers as in the super-packet. */
		CHECK(memcmp(s, super, 2) == 0 && memcmp(s + 6, super + 6, 4) == 0 && memcmp(s + 12, super + 12, ihl - 12) == 0,
		        "ip header fields changed");
		CHECK(memcmp(t, super + ihl, 4) == 0 && memcmp(t + 8, super + ihl + 8, 5) == 0 &&
		                memcmp(t + 14, super + ihl + 14, 2) == 0 && memcmp(t + 18, super + ihl + 18, hl - ihl - 18) == 0,
		        "tcp header fields changed");
		CHECK(memcmp(s + hl, payload + got_pay, segs[i].pay_len) == 0, "payload of seg %d", i);
		got_pay += segs[i].pay_len;
	}
	CHECK(got_pay == pay, "payload total %zu want %zu", got_pay, pay);

	size_t ni = gro_coalesce(pk, (size_t)n, nxt, items, rn(2) ? GRO_UDP : 0);
	if (ihl != 20 || pay == 0) {
		CHECK(ni == (size_t)n, "options/no payload: %zu items for %d packets", ni, n);
		for (size_t k = 0; k < ni; k++)
			CHECK(items[k].count == 1 && memcmp(pk[items[k].first].p, segorig[items[k].first], pk[items[k].first].len) == 0,
			        "unmergeable packet changed");
		return;
	}
	if (n == 1) {
		CHECK(ni == 1 && items[0].count == 1 && items[0].vh.gso_type == 0 && items[0].vh.flags == 0, "single segment");
		return;
	}
	if (n > GRO_MAX_SEGS) {
		size_t o = 0, segsum = 0;
		for (size_t k = 0; k < ni; k++) {
			size_t bl = item_bytes(&items[k], out);
			CHECK(memcmp(out + hl, payload + o, bl - hl) == 0, "payload of group %zu", k);
			o += bl - hl;
			segsum += items[k].count;
			CHECK(items[k].count <= GRO_MAX_SEGS, "group of %u", items[k].count);
		}
		CHECK(o == pay && segsum == (size_t)n, "groups cover %zu of %zu bytes", o, pay);
		CHECK(ni == ((size_t)n + GRO_MAX_SEGS - 1) / GRO_MAX_SEGS, "%zu groups for %d segments", ni, n);
		return;
	}
	CHECK(ni == 1 && items[0].count == (uint32_t)n, "%zu items for %d segments (mss %zu)", ni, n, mss);
	if (ni != 1)
		return;
	size_t bl = item_bytes(&items[0], out);
	CHECK(bl == len && memcmp(out, super, len) == 0, "coalesced packet differs from the super-packet (len %zu vs %zu)", bl, len);
	const struct virtio_net_hdr *vh = &items[0].vh;
	CHECK(vh->flags == VIRTIO_NET_HDR_F_NEEDS_CSUM && vh->csum_start == 20 && vh->csum_offset == 16, "csum fields");
	CHECK((vh->gso_type & ~VIRTIO_NET_HDR_GSO_ECN) == VIRTIO_NET_HDR_GSO_TCPV4 &&
	                !!(vh->gso_type & VIRTIO_NET_HDR_GSO_ECN) == !!(flags & TCP_FL_CWR),
	        "gso_type %02x", vh->gso_type);
	CHECK(vh->gso_size == mss && vh->hdr_len == hl, "gso_size %u hdr_len %u", vh->gso_size, vh->hdr_len);
	CHECK(items[0].total == len, "total");
	/* Checksum completion of the coalesced packet gives a packet that verifies. */
	gso_complete_csum(out, bl, vh->csum_start, vh->csum_offset);
	CHECK(ref_l4_ok(out, bl), "completed super-packet checksum");
	gro_item_undo(pk, &items[0]);
	CHECK(memcmp(pk[0].p, segorig[0], pk[0].len) == 0, "undo");
}

static void test_udp_segment(void)
{
	static uint8_t super[65536], payload[65536], out[70000];
	struct flow f;
	random_flow(&f);
	size_t mss = rn(4) == 0 ? 1 + rn(64) : 1 + rn(1500); /* segbuf holds 1600 bytes a datagram */
	size_t maxpay = 65535 - 28;
	size_t pay = 1 + rn((uint32_t)maxpay);
	if (rn(2) && pay > 64 * mss)
		pay = 1 + rn((uint32_t)(64 * mss));
	if (pay / mss >= MAXSEG - 1)
		pay = mss * (MAXSEG - 2);
	fill(payload, pay);
	size_t len = build_udp(super, &f, payload, pay, true);
	int n = gso_udp4_segment(super, len, mss, hdrs, segs, MAXSEG);
	size_t want_n = (pay + mss - 1) / mss;
	CHECK(n == (int)want_n, "udp segments %d want %zu (pay %zu mss %zu)", n, want_n, pay, mss);
	if (n != (int)want_n)
		return;
	CHECK(gso_udp4_count(super, len, mss) == want_n, "udp count disagrees");
	CHECK(gso_udp4_segment(super, 28, mss, hdrs, segs, MAXSEG) == GSO_ERR_MALFORMED, "empty payload accepted");
	CHECK(n == 1 || gso_udp4_segment(super, len, mss, hdrs, segs, n - 1) == GSO_ERR_TOO_MANY, "max ignored");
	n = gso_udp4_segment(super, len, mss, hdrs, segs, MAXSEG);
	size_t got = 0;
	for (int i = 0; i < n; i++) {
		uint8_t *s = flatten_seg(i, &segs[i]);
		size_t slen = pk[i].len;
		CHECK(segs[i].hdr_len == 28 && (i + 1 == n ? segs[i].pay_len >= 1 && segs[i].pay_len <= mss : segs[i].pay_len == mss),
		        "udp seg %d of %d: pay %u mss %zu", i, n, segs[i].pay_len, mss);
		CHECK(g16(s + 2) == slen && g16(s + 24) == slen - 20, "udp seg lengths");
		CHECK(g16(s + 4) == (uint16_t)(f.id + i), "udp seg ip id");
		CHECK(ref_ip_ok(s) && ref_l4_ok(s, slen) && g16(s + 26) != 0, "udp seg %d checksums", i);
		CHECK(memcmp(s, super, 2) == 0 && memcmp(s + 6, super + 6, 4) == 0 && memcmp(s + 12, super + 12, 12) == 0,
		        "udp seg header fields changed");
		CHECK(memcmp(s + 28, payload + got, segs[i].pay_len) == 0, "udp payload of seg %d", i);
		got += segs[i].pay_len;
	}
	CHECK(got == pay, "udp payload total");

	if (rn(4) == 0) { /* without GRO_UDP nothing merges and nothing changes */
		size_t ni = gro_coalesce(pk, (size_t)n, nxt, items, 0);
		CHECK(ni == (size_t)n, "udp merged without GRO_UDP");
		for (int i = 0; i < n; i++)
			CHECK(memcmp(pk[i].p, segorig[i], pk[i].len) == 0, "udp changed without GRO_UDP");
		return;
	}
	size_t ni = gro_coalesce(pk, (size_t)n, nxt, items, GRO_UDP);
	if (n == 1) {
		CHECK(ni == 1 && items[0].count == 1 && items[0].vh.gso_type == 0 && memcmp(pk[0].p, segorig[0], pk[0].len) == 0,
		        "udp single");
		return;
	}
	if (n > GRO_MAX_SEGS) {
		size_t o = 0, cnt = 0;
		for (size_t k = 0; k < ni; k++) {
			size_t bl = item_bytes(&items[k], out);
			CHECK(memcmp(out + 28, payload + o, bl - 28) == 0, "udp payload of group %zu", k);
			o += bl - 28;
			cnt += items[k].count;
		}
		CHECK(o == pay && cnt == (size_t)n && ni == ((size_t)n + GRO_MAX_SEGS - 1) / GRO_MAX_SEGS, "udp groups");
		return;
	}
	CHECK(ni == 1 && items[0].count == (uint32_t)n, "udp: %zu items for %d datagrams (mss %zu)", ni, n, mss);
	if (ni != 1)
		return;
	size_t bl = item_bytes(&items[0], out);
	CHECK(bl == len && memcmp(out, super, len) == 0, "coalesced udp differs from the super-packet (%zu vs %zu)", bl, len);
	const struct virtio_net_hdr *vh = &items[0].vh;
	CHECK(vh->flags == VIRTIO_NET_HDR_F_NEEDS_CSUM && vh->csum_start == 20 && vh->csum_offset == 6 &&
	                vh->gso_type == VIRTIO_NET_HDR_GSO_UDP_L4 && vh->gso_size == mss && vh->hdr_len == 28,
	        "udp vh");
	gso_complete_csum(out, bl, vh->csum_start, vh->csum_offset);
	CHECK(ref_l4_ok(out, bl), "completed udp super-packet checksum");
	gro_item_undo(pk, &items[0]);
	CHECK(memcmp(pk[0].p, segorig[0], pk[0].len) == 0, "udp undo");
}

/* ---- IPv6 segmentation ------------------------------------------------------ */

/* Reference: the upper-layer checksum of an IPv6 packet without extension headers verifies. */
static bool ref_l4_ok6(const uint8_t *ip, size_t len)
{
	uint8_t ph[40];
	memcpy(ph, ip + 8, 32);
	p32(ph + 32, (uint32_t)(len - 40));
	ph[36] = ph[37] = ph[38] = 0;
	ph[39] = ip[6];
	return ref_fold(ref_add(ip + 40, len - 40, ref_add(ph, 40, 0))) == 0xffff;
}

static void test_segment6(void)
{
	static uint8_t super[65536], payload[65536], out[70000];
	bool udp = rn(3) == 0;
	size_t thl = udp ? 8 : 20 + 4 * rn(11);
	size_t hl = 40 + thl;
	size_t mss = rn(4) == 0 ? 1 + rn(64) : 500 + rn(1001);
	size_t pay = rn(10) == 0 && !udp ? 0 : 1 + rn((uint32_t)(65535 - hl - 1));
	if (pay > 64 * mss && rn(2))
		pay = 1 + rn((uint32_t)(64 * mss));
	if (pay / mss >= MAXSEG - 1)
		pay = mss * (MAXSEG - 2);
	fill(payload, pay);
	size_t len = hl + pay;
	fill(super, hl);
	super[0] = (uint8_t)(0x60 | (super[0] & 0xf));
	p16(super + 4, (uint16_t)(len - 40));
	super[6] = udp ? 17 : 6;
	super[7] = (uint8_t)(1 + rn(255));
	uint8_t *t = super + 40;
	uint8_t flags = (uint8_t)(TCP_FL_ACK | (rnd() & (TCP_FL_PSH | TCP_FL_FIN | TCP_FL_CWR | TCP_FL_ECE)));
	if (udp) {
		p16(t + 4, (uint16_t)(8 + pay));
	} else {
		t[12] = (uint8_t)((thl / 4) << 4);
		t[13] = flags;
	}
	memcpy(super + hl, payload, pay);
	uint32_t seq = g32(t + 4);

	int n = udp ? gso_udp6_segment(super, len, mss, hdrs, segs, MAXSEG) : gso_tcp6_segment(super, len, mss, hdrs, segs, MAXSEG);
	size_t want_n = pay == 0 ? 1 : (pay + mss - 1) / mss;
	CHECK(n == (int)want_n, "v6 segments %d want %zu (udp %d pay %zu mss %zu)", n, want_n, udp, pay, mss);
	if (n != (int)want_n)
		return;
	CHECK((udp ? gso_udp6_count(super, len, mss) : gso_tcp6_count(super, len, mss)) == want_n, "v6 count disagrees");
	CHECK(n == 1 || (udp ? gso_udp6_segment(super, len, mss, hdrs, segs, n - 1) : gso_tcp6_segment(super, len, mss, hdrs, segs, n - 1)) == GSO_ERR_TOO_MANY,
	        "v6 max ignored");
	n = udp ? gso_udp6_segment(super, len, mss, hdrs, segs, MAXSEG) : gso_tcp6_segment(super, len, mss, hdrs, segs, MAXSEG);
	size_t got = 0;
	for (int i = 0; i < n; i++) {
		uint8_t *s = flatten_seg(i, &segs[i]);
		size_t slen = pk[i].len;
		const uint8_t *st = s + 40;
		CHECK(segs[i].hdr_len == hl, "v6 hdr_len %u want %zu", segs[i].hdr_len, hl);
		CHECK(g16(s + 4) == slen - 40, "v6 payload length");
		CHECK(ref_l4_ok6(s, slen), "v6 checksum of seg %d/%d (udp %d)", i, n, udp);
		CHECK(memcmp(s, super, 4) == 0 && memcmp(s + 6, super + 6, 34) == 0, "v6 header fields changed");
		if (udp) {
			CHECK(g16(st + 4) == slen - 40 && g16(st + 6) != 0, "v6 udp length/checksum");
			CHECK(memcmp(st, super + 40, 4) == 0, "v6 udp ports changed");
		} else {
			CHECK(g32(st + 4) == seq + (uint32_t)(i * mss), "v6 seq");
			uint8_t wf = flags;
			if (i > 0)
				wf &= (uint8_t)~TCP_FL_CWR;
			if (i + 1 < n)
				wf &= (uint8_t) ~(TCP_FL_PSH | TCP_FL_FIN);
			CHECK(st[13] == wf, "v6 flags of seg %d/%d", i, n);
			CHECK(memcmp(st, super + 40, 4) == 0 && memcmp(st + 8, super + 48, 5) == 0 && memcmp(st + 14, super + 54, 2) == 0 &&
			                memcmp(st + 18, super + 58, thl - 18) == 0,
			        "v6 tcp header fields changed");
		}
		CHECK(memcmp(s + hl, payload + got, segs[i].pay_len) == 0, "v6 payload of seg %d", i);
		got += segs[i].pay_len;
	}
	CHECK(got == pay, "v6 payload total");
	size_t ni = gro_coalesce(pk, (size_t)n, nxt, items, GRO_UDP);
	if (udp || pay == 0 || n == 1) {
		/* UDP/IPv6 is not merged; a single segment or one without payload stays as it is. */
		CHECK(ni == (size_t)n, "v6: %zu items for %d packets", ni, n);
		for (int i = 0; i < n; i++)
			CHECK(memcmp(pk[i].p, segorig[i], pk[i].len) == 0 && items[i].count == 1, "v6 packet changed by the coalescer");
	} else if (n > GRO_MAX_SEGS) {
		size_t o = 0, cnt = 0;
		for (size_t k = 0; k < ni; k++) {
			size_t bl = item_bytes(&items[k], out);
			CHECK(memcmp(out + hl, payload + o, bl - hl) == 0, "v6 payload of group %zu", k);
			o += bl - hl;
			cnt += items[k].count;
		}
		CHECK(o == pay && cnt == (size_t)n && ni == ((size_t)n + GRO_MAX_SEGS - 1) / GRO_MAX_SEGS, "v6 groups");
	} else {
		/* TCP/IPv6 segments of one super-packet merge back into it (the checksum field aside). */
		CHECK(ni == 1 && items[0].count == (uint32_t)n, "v6: %zu items for %d segments (mss %zu)", ni, n, mss);
		if (ni == 1) {
			size_t bl = item_bytes(&items[0], out);
			CHECK(bl == len && memcmp(out, super, 56) == 0 && memcmp(out + 58, super + 58, len - 58) == 0,
			        "coalesced v6 packet differs from the super-packet (len %zu vs %zu)", bl, len);
			const struct virtio_net_hdr *vh = &items[0].vh;
			CHECK(vh->flags == VIRTIO_NET_HDR_F_NEEDS_CSUM && vh->csum_start == 40 && vh->csum_offset == 16 &&
			                (vh->gso_type & ~VIRTIO_NET_HDR_GSO_ECN) == VIRTIO_NET_HDR_GSO_TCPV6 &&
			                !!(vh->gso_type & VIRTIO_NET_HDR_GSO_ECN) == !!(flags & TCP_FL_CWR) && vh->gso_size == mss &&
			                vh->hdr_len == hl,
			        "v6 vh");
			gso_complete_csum(out, bl, vh->csum_start, vh->csum_offset);
			CHECK(ref_l4_ok6(out, bl), "completed v6 super-packet checksum");
			gro_item_undo(pk, &items[0]);
			CHECK(memcmp(pk[0].p, segorig[0], pk[0].len) == 0, "v6 undo");
		}
	}
	/* Malformed: a payload length that lies, another next header, IPv4. */
	p16(super + 4, (uint16_t)(len - 39));
	CHECK((udp ? gso_udp6_count(super, len, mss) : gso_tcp6_count(super, len, mss)) == 0, "v6 bad payload length accepted");
	p16(super + 4, (uint16_t)(len - 40));
	super[6] = 44;
	CHECK((udp ? gso_udp6_count(super, len, mss) : gso_tcp6_count(super, len, mss)) == 0, "v6 extension header accepted");
	super[6] = udp ? 17 : 6;
	super[0] = 0x45;
	CHECK((udp ? gso_udp6_count(super, len, mss) : gso_tcp6_count(super, len, mss)) == 0, "IPv4 accepted as IPv6");
}

/* ---- random mixes ---------------------------------------------------------- */

static void test_mix(void)
{
	static uint8_t payload[1500], out[70000], super[70000];
	static int flow_of[MAXSEG];
	static uint8_t ghdrs[GRO_MAX_SEGS * GSO_HDR_MAX];
	static struct gso_seg gsegs[GRO_MAX_SEGS];
	struct flow fl[12];
	int nf = 1 + (int)rn(12);
	for (int i = 0; i < nf; i++) {
		random_flow(&fl[i]);
		if (i > 0 && rn(3) == 0) { /* same addresses, other ports: a parallel connection */
			memcpy(fl[i].src, fl[0].src, 4);
			memcpy(fl[i].dst, fl[0].dst, 4);
		}
		if (rn(2))
			fl[i].doff = 8; /* timestamps-like, common */
	}
	bool is_udp[12];
	for (int i = 0; i < nf; i++)
		is_udp[i] = rn(3) == 0;
	size_t mss[12];
	for (int i = 0; i < nf; i++)
		mss[i] = 1 + rn(1400);
	/* A trusted mix (GRO_CSUM_TRUSTED, WireGuard's) has no corrupted segments: the AEAD would have refused them. */
	bool trusted = rn(4) == 0;
	int n = 0, want = 100 + (int)rn(400);
	while (n < want) {
		int fi = (int)rn((uint32_t)nf);
		struct flow *f = &fl[fi];
		uint8_t *s = segbuf[n];
		size_t len;
		uint32_t r = rn(100);
		if (is_udp[fi] && r < 85) {
			size_t pay = rn(6) == 0 ? 1 + rn((uint32_t)mss[fi]) : mss[fi];
			fill(payload, pay);
			len = build_udp(s, f, payload, pay, false);
			if (rn(40) == 0)
				p16(s + 26, 0); /* no checksum */
			else if (!trusted && rn(50) == 0)
				s[28 + rn((uint32_t)pay)] ^= (uint8_t)(1 + rn(255)); /* corrupted in transit */
			f->id++;
			if (rn(30) == 0)
				f->id += (uint16_t)(1 + rn(10)); /* lost, or another sender's IDs */
		} else if (r < 70) {
			size_t pay = rn(6) == 0 ? 1 + rn((uint32_t)mss[fi]) : mss[fi];
			fill(payload, pay);
			uint8_t flags = TCP_FL_ACK;
			if (rn(10) == 0)
				flags |= TCP_FL_PSH;
			if (rn(40) == 0)
				flags |= TCP_FL_CWR;
			if (rn(100) == 0)
				flags |= (uint8_t[]){TCP_FL_FIN, TCP_FL_URG, TCP_FL_RST, TCP_FL_SYN}[rn(4)];
			len = build_tcp(s, f, 20, flags, payload, pay, false);
			if (!trusted && rn(50) == 0)
				s[20 + f->doff * 4 + rn((uint32_t)pay)] ^= (uint8_t)(1 + rn(255)); /* corrupted in transit */
			if (rn(30) != 0) { /* else: this segment's successor "was lost" (seq jumps) */
				f->seq += (uint32_t)pay;
			} else {
				f->seq += (uint32_t)pay + 1 + rn(5000);
			}
			f->id++;
			if (rn(60) == 0)
				f->ack += 1 + rn(1000);
			if (rn(80) == 0)
				f->id += (uint16_t)(1 + rn(10));
		} else if (r < 85) {
			len = build_tcp(s, f, 20, TCP_FL_ACK, payload, 0, false); /* pure ACK */
			f->id++;
		} else if (r < 95) {
			len = build_other(s, f, rn(2) ? 17 : 1, rn(1400));
		} else if (n > 0) {
			int d = (int)rn((uint32_t)n); /* duplicate an earlier packet */
			len = pk[d].len;
			memcpy(s, segbuf[d], len);
			fi = flow_of[d];
		} else {
			continue;
		}
		pk[n].p = s;
		pk[n].len = (uint32_t)len;
		flow_of[n] = fi;
		memcpy(segorig[n], s, len);
		n++;
	}

	unsigned gflags = (rn(4) ? GRO_UDP : 0) | (trusted ? GRO_CSUM_TRUSTED : 0);
	size_t ni = gro_coalesce(pk, (size_t)n, nxt, items, gflags);
	static int seen[MAXSEG], order[MAXSEG];
	memset(seen, 0, sizeof(int) * (size_t)n);
	int no = 0;
	for (size_t k = 0; k < ni; k++) {
		const struct gro_item *it = &items[k];
		uint32_t c = 0;
		for (uint32_t i = it->first; i != GRO_END; i = nxt[i]) {
			CHECK(i < (uint32_t)n, "index %u", i);
			if (i >= (uint32_t)n)
				return;
			seen[i]++;
			order[no++] = (int)i;
			c++;
			if (nxt[i] == GRO_END)
				CHECK(i == it->last, "last");
		}
		CHECK(c == it->count, "count %u walked %u", it->count, c);
		if (it->count == 1) {
			uint32_t i = it->first;
			CHECK(memcmp(pk[i].p, segorig[i], pk[i].len) == 0 && it->vh.gso_type == 0 && it->vh.flags == 0,
			        "single packet %u changed", i);
			continue;
		}
		/* A merged super-packet: valid IP header, right virtio header, segments back into its packets. */
		size_t bl = item_bytes(it, super);
		CHECK(bl == it->total && g16(super + 2) == bl && ref_ip_ok(super), "super-packet header");
		bool uitem = super[9] == 17;
		CHECK(!uitem || (gflags & GRO_UDP), "UDP merged without GRO_UDP");
		if (uitem) {
			CHECK(it->vh.flags == VIRTIO_NET_HDR_F_NEEDS_CSUM && it->vh.csum_start == 20 && it->vh.csum_offset == 6 &&
			                it->vh.gso_type == VIRTIO_NET_HDR_GSO_UDP_L4 && it->vh.hdr_len == 28 &&
			                g16(super + 24) == bl - 20,
			        "udp vh");
			/* Same size but the last; the merged datagrams are one flow's consecutive IDs. */
			uint32_t c2 = 0;
			for (uint32_t i = it->first; i != GRO_END; i = nxt[i], c2++) {
				CHECK(nxt[i] == GRO_END ? pk[i].len - 28 <= it->vh.gso_size : pk[i].len - 28 == it->vh.gso_size,
				        "udp datagram %u of %u in a group of size %u", pk[i].len - 28, it->count, it->vh.gso_size);
				CHECK(flow_of[i] == flow_of[it->first], "udp group mixes flows");
			}
		} else {
			CHECK(it->vh.flags == VIRTIO_NET_HDR_F_NEEDS_CSUM && it->vh.csum_start == 20 && it->vh.csum_offset == 16 &&
			                (it->vh.gso_type & ~VIRTIO_NET_HDR_GSO_ECN) == VIRTIO_NET_HDR_GSO_TCPV4,
			        "vh");
		}
		/* Checksum completion as the kernel would do it gives a valid packet. */
		memcpy(out, super, bl);
		gso_complete_csum(out, bl, it->vh.csum_start, it->vh.csum_offset);
		CHECK(ref_l4_ok(out, bl), "completed super-packet checksum (proto %u)", super[9]);
		int m = uitem ? gso_udp4_segment(super, bl, it->vh.gso_size, ghdrs, gsegs, GRO_MAX_SEGS)
		              : gso_tcp4_segment(super, bl, it->vh.gso_size, ghdrs, gsegs, GRO_MAX_SEGS);
		CHECK(m == (int)it->count, "re-segmented into %d, merged %u", m, it->count);
		if (m != (int)it->count)
			continue;
		int j = 0;
		for (uint32_t i = it->first; i != GRO_END; i = nxt[i], j++) {
			size_t sl = gsegs[j].hdr_len + gsegs[j].pay_len;
			memcpy(out, gsegs[j].hdr, gsegs[j].hdr_len);
			memcpy(out + gsegs[j].hdr_len, gsegs[j].pay, gsegs[j].pay_len);
			CHECK(sl == pk[i].len && memcmp(out, segorig[i], sl) == 0, "segment %d of group %zu is not packet %u", j,
			        k, i);
		}
		gro_item_undo(pk, it);
		CHECK(memcmp(pk[it->first].p, segorig[it->first], pk[it->first].len) == 0, "undo");
	}
	for (int i = 0; i < n; i++)
		CHECK(seen[i] == 1, "packet %d written %d times", i, seen[i]);
	/* Per flow (addresses, protocol, and ports for TCP) the write order is the arrival order. */
	static uint8_t keys[MAXSEG][13];
	static int last_of[MAXSEG];
	int nk = 0;
	for (int a = 0; a < no; a++) {
		const uint8_t *x = segorig[order[a]];
		uint8_t key[13];
		memcpy(key, x + 12, 8);
		key[8] = x[9];
		if (x[9] == 6 || x[9] == 17)
			memcpy(key + 9, x + 20, 4);
		else
			memset(key + 9, 0, 4);
		int k = 0;
		while (k < nk && memcmp(keys[k], key, 13) != 0)
			k++;
		if (k == nk) {
			memcpy(keys[nk], key, 13);
			last_of[nk++] = -1;
		}
		CHECK(order[a] > last_of[k], "packet %d written after %d of the same flow", order[a], last_of[k]);
		last_of[k] = order[a];
	}
}

/* A segment whose checksum does not verify merges only when the caller vouches for it (GRO_CSUM_TRUSTED). */
static void test_trusted(void)
{
	static uint8_t a[1600], b[1600], pay[1400];
	struct flow f;
	random_flow(&f);
	f.doff = 5;
	size_t n = 100 + rn(1300);
	fill(pay, n);
	size_t la = build_tcp(a, &f, 20, TCP_FL_ACK, pay, n, false);
	f.seq += (uint32_t)n;
	f.id++;
	size_t lb = build_tcp(b, &f, 20, TCP_FL_ACK, pay, n, false);
	b[40 + rn((uint32_t)n)] ^= (uint8_t)(1 + rn(255));
	for (int t = 0; t < 2; t++) {
		struct gro_pkt pk[2] = {{a, (uint32_t)la}, {b, (uint32_t)lb}};
		uint32_t nxt[2];
		struct gro_item items[2];
		size_t ni = gro_coalesce(pk, 2, nxt, items, t ? GRO_CSUM_TRUSTED : 0);
		CHECK(t ? ni == 1 && items[0].count == 2 : ni == 2, "bad checksum, trusted %d: %zu items", t, ni);
		if (ni == 1)
			gro_item_undo(pk, &items[0]);
	}
}

int main(int argc, char **argv)
{
	long cases = argc > 1 ? strtol(argv[1], NULL, 10) : 10000;
	uint64_t seed = argc > 2 ? strtoull(argv[2], NULL, 10) : 1;
	rng_seed(seed);
	for (long c = 0; c < cases && failures == 0; c++) {
		test_csum();
		test_complete();
		test_segment();
		test_udp_segment();
		test_segment6();
		if (c % 4 == 0)
			test_mix();
		test_trusted();
	}
	printf("gso_test: %ld cases, seed %" PRIu64 ", %ld checks, %d failures\n", cases, seed, checks, failures);
	return failures ? 1 : 0;
}
