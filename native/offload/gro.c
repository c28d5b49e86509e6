/*
 * Coalescing of received TCP segments (IPv4 and IPv6) and UDP/IPv4
 * datagrams into super-packets (see gro.h), what the kernel's
 * tcp_gro_receive and udp_gro_receive_segment do. Threads and locking: none; pure functions on
 * the caller's memory (each rx thread passes its own tables).
 */
#include "offload/gro.h"
#include "common/bytes.h"
#include "offload/csum.h"
#include "offload/gso.h"

#include <string.h>

/*
 * A UDP/IPv4 datagram that may take part in a merge: whole, with payload and
 * a non-zero checksum that verifies (a datagram without checksum would get
 * one on segmentation: not the same packet).
 */
static bool gro_udp_candidate(const uint8_t *p, uint32_t len, bool trusted)
{
	if (len <= GSO_UDP_HDR || !udp4_whole(p, len) || get16(p + 26) == 0)
		return false;
	return trusted || csum_fold16(csum_acc(p + 20, len - 20, csum_pseudo4(p, 17, len - 20))) == 0xffff;
}

/*
 * What makes a packet able to take part in a merge: a TCP/IPv4 packet
 * without IP options, not a fragment, with payload and a valid checksum,
 * and none of URG/RST/SYN (the kernel never merges those either). With
 * `trusted` (GRO_CSUM_TRUSTED) the checksum is taken as valid.
 */
static bool gro_candidate(const uint8_t *p, uint32_t len, bool trusted, size_t *hl_out)
{
	if (len < 40 || p[0] != 0x45 || p[9] != 6 || (get16(p + 6) & 0xbfff) != 0)
		return false;
	size_t hl = tcp4_hdr_len(p, len);
	if (!hl || hl >= len)
		return false;
	if (p[20 + 13] & (TCP_FL_URG | TCP_FL_RST | TCP_FL_SYN))
		return false;
	if (!trusted && csum_fold16(csum_acc(p + 20, len - 20, csum_pseudo4(p, 6, len - 20))) != 0xffff)
		return false;
	*hl_out = hl;
	return true;
}

/*
 * The IPv6 twin of gro_candidate: TCP right after the fixed header (no
 * extension headers), payload length == len - 40 (checked on receive), with
 * payload and a valid checksum over the IPv6 pseudo-header, none of
 * URG/RST/SYN.
 */
static bool gro_candidate6(const uint8_t *p, uint32_t len, bool trusted, size_t *hl_out)
{
	if (len < 60 || p[6] != 6)
		return false;
	size_t hl = tcp6_hdr_len(p, len);
	if (!hl || hl >= len || (size_t)get16(p + 4) + 40 != len)
		return false;
	if (p[40 + 13] & (TCP_FL_URG | TCP_FL_RST | TCP_FL_SYN))
		return false;
	if (!trusted && csum_fold16(csum_acc(p + 40, len - 40, csum_pseudo6(p, 6, len - 40))) != 0xffff)
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

/* The TCP checks of can_append (th: TCP header offset, 20 or 40). */
static bool tcp_can_append(const uint8_t *f, const uint8_t *l, uint32_t llen, const uint8_t *q, size_t qhl, size_t th)
{
	const uint8_t *qt = q + th, *ft = f + th, *lt = l + th;
	if (qt[13] & TCP_FL_CWR)
		return false;
	if (((qt[13] ^ ft[13]) & (uint8_t) ~(TCP_FL_CWR | TCP_FL_FIN | TCP_FL_PSH)) != 0)
		return false;
	/* ack, doff, window, urgent pointer, options; seq right after the last. */
	if (memcmp(qt + 8, ft + 8, 5) != 0 || memcmp(qt + 14, ft + 14, 2) != 0 || memcmp(qt + 18, ft + 18, qhl - th - 18) != 0)
		return false;
	return get32(qt + 4) == get32(lt + 4) + (llen - (uint32_t)qhl);
}

/* IPv6: version, traffic class, flow label and hop limit equal (no ID to follow), then the TCP checks. */
static bool can_append6(const struct gro_pkt *pkts, const struct gro_item *it, const uint8_t *q, uint32_t qlen,
        size_t qhl)
{
	const uint8_t *f = pkts[it->first].p;
	uint32_t qpay = qlen - (uint32_t)qhl;
	if (qhl != it->hdr_len || it->count >= GRO_MAX_SEGS || it->total + qpay > 65535)
		return false;
	if (memcmp(q, f, 4) != 0 || q[7] != f[7])
		return false;
	if (!tcp_can_append(f, pkts[it->last].p, pkts[it->last].len, q, qhl, 40))
		return false;
	return qpay >= 1 && qpay <= it->mss;
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
	if ((f[0] >> 4) == 6) { /* TCP/IPv6: payload length, FIN/PSH of the last, pseudo-header sum for NEEDS_CSUM */
		put16(f + 4, (uint16_t)(it->total - 40));
		f[40 + 13] |= (uint8_t)(l[40 + 13] & (TCP_FL_FIN | TCP_FL_PSH));
		put16(f + 40 + 16, csum_fold16(csum_pseudo6(f, 6, it->total - 40)));
		it->vh.flags = VIRTIO_NET_HDR_F_NEEDS_CSUM;
		it->vh.gso_type = VIRTIO_NET_HDR_GSO_TCPV6;
		if (f[40 + 13] & TCP_FL_CWR)
			it->vh.gso_type |= VIRTIO_NET_HDR_GSO_ECN;
		it->vh.hdr_len = it->hdr_len;
		it->vh.gso_size = it->mss;
		it->vh.csum_start = 40;
		it->vh.csum_offset = 16;
		return;
	}
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
		/* IPv4 (TCP, UDP) and TCP/IPv6; anything else is an item of its own and touches no group. */
		bool v4 = qlen >= 20 && (q[0] >> 4) == 4;
		bool v6 = !v4 && qlen >= 40 && (q[0] >> 4) == 6;
		bool udp = v4 && q[9] == 17 && (flags & GRO_UDP);
		bool tcp = v4 ? q[9] == 6 : v6 && q[6] == 6;
		size_t th = v6 ? 40 : 20; /* TCP header offset of a candidate (IPv4 ones have no options) */
		bool cand, trusted = (flags & GRO_CSUM_TRUSTED) != 0;
		if (udp) {
			cand = gro_udp_candidate(q, qlen, trusted);
			qhl = cand ? GSO_UDP_HDR : 0;
		} else {
			cand = v6 ? gro_candidate6(q, qlen, trusted, &qhl) : gro_candidate(q, qlen, trusted, &qhl);
		}
		/*
		 * A TCP (or, when merged, UDP) packet that cannot merge closes the
		 * groups of its protocol it might belong to (same addresses: ports
		 * are not reliable for fragments or with IP options), so nothing
		 * later of its flow is written before it.
		 */
		if (tcp || udp) {
			for (size_t k = 0; k < nopen;) {
				struct gro_item *it = &items[open[k]];
				const uint8_t *f = pkts[it->first].p;
				bool other = (f[0] >> 4) != (q[0] >> 4) ||
				        (v6 ? f[6] != q[6] || memcmp(f + 8, q + 8, 32) != 0 || (cand && memcmp(f + 40, q + 40, 4) != 0)
				            : f[9] != q[9] || !same_addrs(f, q) || (cand && !same_ports(f, q)));
				if (other) {
					k++;
					continue;
				}
				if (cand && (v6 ? can_append6(pkts, it, q, qlen, qhl) : can_append(pkts, it, q, qlen, qhl))) {
					next[it->last] = (uint32_t)i;
					it->last = (uint32_t)i;
					it->count++;
					it->total += qlen - (uint32_t)qhl;
					if ((qlen - qhl) < it->mss || (!udp && (q[th + 13] & (TCP_FL_FIN | TCP_FL_PSH))))
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
		if (cand && (udp || !(q[th + 13] & (TCP_FL_FIN | TCP_FL_PSH)))) {
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
