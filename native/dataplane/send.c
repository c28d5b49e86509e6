/*
 * The send path: TUN -> UDP. Each worker's tx thread reads its TUN queue
 * until EAGAIN or BATCH reads (no batched read exists for a TUN), routes and
 * checks each packet (ip.h, or ip6.h by the version nibble), cuts super-packets into segments
 * (offload/gso.c), and sends the batch with one sendmmsg, as UDP GSO
 * messages where the socket allows.
 *
 * No copy: a segment's datagram is an iovec pair [its headers in
 * tx_state.hdrs, its payload slice of the read buffer]; a plain packet is one
 * iovec into the read buffer. Plain packets to one peer join one UDP GSO
 * message while they have its first datagram's size (tx_append_plain).
 *
 * Threads and locking: a tx pass runs under w->tx_lock, on the tx thread
 * (tx_main) or on the rx thread (tx_reply_pass: the low-rate reply fast
 * path, or serving, wait.c); the lock makes the tx state, the READER_TX
 * slot and the order of reads and sends belong to one thread at a time.
 * Serving the socket, the tx thread runs rx passes too (rx_serve_pass,
 * under w->rx_lock, never with tx_lock held). ICMP errors go through ip.c
 * (its own lock).
 */
#define _GNU_SOURCE
#include "dataplane/state.h"

#include "common/sys.h"
#include "tun/vnet.h"
#include "udp/udp.h"

#include <errno.h>
#include <poll.h>
#include <string.h>
#include <time.h>

/*
 * ---- per-packet transform slot -------------------------------------------
 * Where each datagram's payload enters the send batch. Today the payload is
 * the inner packet itself, referenced in place. A transform (a WireGuard
 * backend encrypting each segment) goes here and only here: it would write
 * the segment's ciphertext (headers + payload, plus its own header and tag)
 * straight into a per-batch send buffer and queue one iovec pointing there
 * instead of the slices; message building, UDP GSO and sending stay as they
 * are. Without a transform these stay static inline: no indirect call per
 * packet.
 */
static inline void tx_put_plain(struct tx_state *st, uint8_t *p, size_t len)
{
	st->iov[st->niov].iov_base = p;
	st->iov[st->niov++].iov_len = len;
}

static inline void tx_put_segment(struct tx_state *st, const struct gso_seg *s)
{
	st->iov[st->niov].iov_base = s->hdr;
	st->iov[st->niov++].iov_len = s->hdr_len;
	st->iov[st->niov].iov_base = (void *)s->pay;
	st->iov[st->niov++].iov_len = s->pay_len;
}

/*
 * WireGuard mode's transform: seals one inner packet or segment (p1: the
 * packet, or a segment's headers; p2: the segment's payload slice, or NULL)
 * straight from where it was read into the batch's send buffer, and
 * returns where the datagram starts; its length in *wl. NULL: the keypair
 * can no longer send (counted). The caller made room (tx_wg_room).
 */
static inline uint8_t *tx_wg_seal(struct tx_state *st, struct wg_keypair *kp, uint64_t ctr, const uint8_t *p1,
        size_t l1, const uint8_t *p2, size_t l2, size_t *wl, uint64_t *cnt)
{
	uint8_t *out = st->wbuf + st->wbuf_used;
	long n = wg_tx_seal(st->wgc, kp, ctr, p1, l1, p2, l2, out);
	if (n < 0) {
		cnt[DP_WG_DROP_EXPIRED]++;
		return NULL;
	}
	st->wbuf_used += (size_t)n;
	*wl = (size_t)n;
	return out;
}
/* ---- end of the transform slot ------------------------------------------- */

/* One datagram of a refused message, sent on its own. */
static void send_one(struct worker *w, struct msghdr *mh, struct iovec *iov, size_t niov, uint64_t *cnt)
{
	struct msghdr one = {.msg_name = mh->msg_name, .msg_namelen = mh->msg_namelen, .msg_iov = iov, .msg_iovlen = niov};
	ssize_t r;
	do
		r = sendmsg(w->udp_fd, &one, 0);
	while (r < 0 && errno == EINTR);
	if (r < 0) {
		cnt[DP_SOCKET_ERRORS]++;
	} else {
		cnt[DP_TX_PACKETS]++;
		cnt[DP_TX_BYTES] += (uint64_t)r;
	}
}

/*
 * A UDP GSO message the kernel refused outright (e.g. EMSGSIZE when a
 * segment does not fit the route's MTU; EIO without checksum offload on the
 * way, on older kernels) (counted: txGsoRefused):
 * its datagrams go one by one, each [header, payload] pair of its iovec, or
 * each datagram-sized slice of an iovec of packets as read (tx_append_plain
 * merges contiguous ones: every one but the last has the message's size).
 */
static void send_segments_singly(struct worker *w, struct tx_state *st, int m, uint64_t *cnt)
{
	struct msghdr *mh = &st->msgs[m].msg_hdr;
	size_t step = st->msg_iovps[m], gso = st->msg_gso[m];
	for (size_t k = 0; k + step <= mh->msg_iovlen; k += step) {
		struct iovec *v = mh->msg_iov + k;
		if (step != 1 || gso == 0 || v->iov_len <= gso) {
			send_one(w, mh, v, step, cnt);
			continue;
		}
		for (size_t off = 0; off < v->iov_len; off += gso) {
			struct iovec slice = {.iov_base = (uint8_t *)v->iov_base + off, .iov_len = v->iov_len - off < gso ? v->iov_len - off : gso};
			send_one(w, mh, &slice, 1, cnt);
		}
	}
}

/* Sends the batch's messages; returns false if stop was requested meanwhile. */
static bool send_batch(struct worker *w, struct tx_state *st, uint64_t *cnt)
{
	struct dp *dp = w->dp;
	struct mmsghdr *msgs = st->msgs;
	int n = st->nmsg, sent = 0, stalls = 0;
	for (int i = 0; i < n; i++)
		st->queued += st->msg_segs[i];
	while (sent < n) {
		int r = sys_sendmmsg(w->udp_fd, msgs + sent, (unsigned)(n - sent), 0);
		if (r > 0) {
			for (int i = sent; i < sent + r; i++) {
				cnt[DP_TX_PACKETS] += st->msg_segs[i];
				cnt[DP_TX_BYTES] += msgs[i].msg_len;
			}
			sent += r;
			stalls = 0;
			continue;
		}
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0 && (errno == EAGAIN || errno == ENOBUFS) && stalls < 100) {
			/* Socket buffer full: wait for room rather than drop, but not forever. */
			struct pollfd pf[2] = {{.fd = w->udp_fd, .events = POLLOUT}, {.fd = dp->stop_fd, .events = POLLIN}};
			stalls++;
			if (poll(pf, 2, 10) > 0 && pf[1].revents) {
				st->nseg = st->niov = st->nmsg = 0;
				st->wbuf_used = 0;
				return false;
			}
			continue;
		}
		if (st->msg_segs[sent] > 1 && r < 0 && errno != EAGAIN && errno != ENOBUFS) {
			cnt[DP_TX_GSO_REFUSED]++;
			send_segments_singly(w, st, sent, cnt);
		} else {
			/* This datagram failed (no route to the peer, firewall, ...): count it and go on. */
			cnt[DP_SOCKET_ERRORS] += st->msg_segs[sent];
		}
		sent++;
		stalls = 0;
	}
	st->nseg = st->niov = st->nmsg = 0;
	st->wbuf_used = 0;
	return true;
}

static void tx_add_msg(struct tx_state *st, const union udp_addr *dst, int iov0, int niov, uint16_t nsegs,
        uint16_t gso_size, uint32_t bytes)
{
	int m = st->nmsg++;
	struct msghdr *mh = &st->msgs[m].msg_hdr;
	st->dsts[m] = *dst;
	memset(mh, 0, sizeof *mh);
	mh->msg_name = &st->dsts[m];
	mh->msg_namelen = udp_addr_len(dst);
	mh->msg_iov = &st->iov[iov0];
	mh->msg_iovlen = (size_t)niov;
	st->msg_segs[m] = nsegs;
	st->msg_gso[m] = gso_size;
	st->msg_bytes[m] = bytes;
	st->msg_iovps[m] = nsegs > 0 && niov > nsegs ? 2 : 1;
	st->msg_open[m] = false;
	if (nsegs > 1)
		udp_set_segment(mh, &st->cm[m], gso_size);
}

/*
 * Packets read one by one (small ones, or any without TUN offloads) to the
 * peer of the batch's last message join that message as further UDP GSO
 * datagrams while they have its first datagram's size (a shorter one joins
 * and closes it): a stream of small packets then crosses the sending stack,
 * the underlay and the peer's GRO socket as one skb per group instead of one
 * per packet, which is most of what a small packet costs here.
 */
static bool tx_append_plain(struct tx_state *st, const union udp_addr *dst, uint8_t *p, size_t len)
{
	int m = st->nmsg - 1;
	if (m < 0 || !st->msg_open[m] || !udp_addr_same(&st->dsts[m], dst) || st->msg_segs[m] >= UDP_GSO_MAXSEGS || len > st->msg_gso[m] ||
	        st->msg_bytes[m] + len > UDP_MAX_PAYLOAD)
		return false;
	struct msghdr *mh = &st->msgs[m].msg_hdr;
	if (mh->msg_iov + mh->msg_iovlen != &st->iov[st->niov]) /* only the newest message can grow in place */
		return false;
	struct iovec *last = &st->iov[st->niov - 1];
	if ((uint8_t *)last->iov_base + last->iov_len == p) {
		last->iov_len += len; /* right after the last one (sealed datagrams are): one iovec, less per-iovec work in the kernel */
	} else {
		tx_put_plain(st, p, len);
		mh->msg_iovlen++;
	}
	if (++st->msg_segs[m] == 2)
		udp_set_segment(mh, &st->cm[m], st->msg_gso[m]);
	st->msg_bytes[m] += (uint32_t)len;
	if (len < st->msg_gso[m])
		st->msg_open[m] = false;
	return true;
}

static uint64_t mono_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* WireGuard mode: the peer of the route a packet already passed ip4_route_out / ip6_route_out with. */
static inline struct wgp *tx_wg_peer(const struct rtable *t, const uint8_t *p)
{
	if ((p[0] >> 4) == 6)
		return rt6_lookup(t, ip6_key(p + 24))->peer;
	return rt_lookup(t, get32(p + 16))->peer;
}

/* A super-packet's segments (gso.h), by family and protocol; its segment count was checked. */
static inline int tx_segment(bool v6, bool udp, const uint8_t *p, size_t len, size_t mss, uint8_t *hdrs,
        struct gso_seg *segs, int max)
{
	if (v6)
		return udp ? gso_udp6_segment(p, len, mss, hdrs, segs, max) : gso_tcp6_segment(p, len, mss, hdrs, segs, max);
	return udp ? gso_udp4_segment(p, len, mss, hdrs, segs, max) : gso_tcp4_segment(p, len, mss, hdrs, segs, max);
}

/* WireGuard mode: room in the batch for `bytes` of sealed datagrams and `nmsg` messages, sending it first if not. */
static bool tx_wg_room(struct worker *w, struct tx_state *st, size_t bytes, int nmsg, uint64_t *cnt)
{
	if (st->wbuf_used + bytes <= WG_WBUF && st->nmsg + nmsg <= TX_MAXMSG)
		return true;
	return send_batch(w, st, cnt);
}

/* WireGuard mode, one packet as read: sealed into the batch (or staged until a session exists). */
static bool tx_wg_plain(struct worker *w, const struct rtable *t, struct tx_state *st, const union udp_addr *dst,
        uint8_t *p, size_t len, uint64_t *cnt)
{
	struct wgp *peer = tx_wg_peer(t, p);
	struct wg_keypair *kp = wg_tx_keypair(w, peer, p, len, mono_ns(), cnt);
	if (!kp)
		return true;
	if (!tx_wg_room(w, st, wg_sealed_len(len), 1, cnt))
		return false;
	size_t wl;
	uint8_t *out = tx_wg_seal(st, kp, wg_tx_counters(kp, 1), p, len, NULL, 0, &wl, cnt);
	if (!out)
		return true;
	atomic_fetch_add_explicit(&peer->tx_bytes, (uint64_t)wl, memory_order_relaxed);
	if (w->dp->off.udp_gso && tx_append_plain(st, dst, out, wl))
		return true;
	tx_put_plain(st, out, wl);
	tx_add_msg(st, dst, st->niov - 1, 1, 1, (uint16_t)wl, (uint32_t)wl);
	st->msg_open[st->nmsg - 1] = true;
	return true;
}

/*
 * WireGuard mode, a super-packet of n segments: each segment (its headers
 * and its payload slice where it was read) sealed into the send buffer, the
 * sealed datagrams batched as UDP GSO messages like plain ones (below).
 */
static bool tx_wg_gso(struct worker *w, const struct rtable *t, struct tx_state *st, const union udp_addr *dst,
        uint8_t *p, size_t len, const struct tun_pkt *pk, bool v6, bool udp, size_t n, uint64_t *cnt)
{
	struct dp *dp = w->dp;
	struct wgp *peer = tx_wg_peer(t, p);
	struct wg_keypair *kp = wg_tx_keypair(w, peer, NULL, 0, mono_ns(), cnt);
	if (!kp) {
		cnt[DP_WG_DROP_NO_KEYPAIR] += n - 1; /* wg_tx_keypair counted one */
		return true;
	}
	size_t need = len + n * (GSO_HDR_MAX + WG_TRANSPORT_OVERHEAD + 16);
	if (st->nseg + (int)n > TX_MAXSEG && !send_batch(w, st, cnt))
		return false;
	if (!tx_wg_room(w, st, need, (int)n, cnt))
		return false;
	struct gso_seg *segs = &st->segs[st->nseg];
	uint8_t *hdrs = st->hdrs + (size_t)st->nseg * GSO_HDR_MAX;
	int k = tx_segment(v6, udp, p, len, pk->gso_size, hdrs, segs, (int)n);
	if (k <= 0) {
		cnt[DP_DROP_MALFORMED] += n;
		return true;
	}
	st->nseg += k;
	cnt[DP_TX_GSO_PACKETS]++;
	/*
	 * The sealed datagrams join the batch's newest message as plain packets
	 * do (tx_append_plain), so one super-packet's tail and the next one's
	 * head share a UDP GSO message: sealing makes 47 segments of a 64 KB
	 * super-packet outgrow one message (44 fit), and a message per remainder
	 * of 3 would double the messages every stack on the way handles.
	 */
	uint64_t ctr = wg_tx_counters(kp, (uint64_t)k), bytes = 0;
	for (int j = 0; j < k; j++) {
		size_t wl;
		uint8_t *out = tx_wg_seal(st, kp, ctr + (uint64_t)j, segs[j].hdr, segs[j].hdr_len, segs[j].pay, segs[j].pay_len, &wl, cnt);
		if (!out)
			continue;
		bytes += wl;
		if (dp->off.udp_gso && tx_append_plain(st, dst, out, wl))
			continue;
		tx_put_plain(st, out, wl);
		tx_add_msg(st, dst, st->niov - 1, 1, 1, (uint16_t)wl, (uint32_t)wl);
		st->msg_open[st->nmsg - 1] = true;
	}
	atomic_fetch_add_explicit(&peer->tx_bytes, bytes, memory_order_relaxed);
	return true;
}

/*
 * One TUN read: takes off the virtio header (tun/vnet.h), checks and routes
 * the packet, cuts a super-packet into MTU-sized segments (headers in
 * st->hdrs, payload left in place) and queues the datagrams, as UDP GSO
 * messages where the socket allows. Routing, the TTL check and decrement
 * happen once on a super-packet's header, which every segment copies; drops
 * count every segment. Returns false if stop was requested during a flush.
 */
static bool tx_one(struct worker *w, const struct rtable *t, struct tx_state *st, uint8_t *buf, size_t len, uint64_t *cnt)
{
	struct dp *dp = w->dp;
	struct tun_pkt pk;
	enum tun_kind kind = tun_parse(dp->off.tun_vnet_hdr, dp->off.tun_uso, buf, len, &pk);
	uint8_t *p = pk.p;
	len = pk.len;
	union udp_addr dst;
	switch (kind) {
	case TUN_MALFORMED:
		cnt[DP_DROP_MALFORMED]++;
		return true;
	case TUN_PLAIN:
		if (len >= 1 && (p[0] >> 4) == 6 ? !ip6_route_out(&dp->ip, w->tun_fd, t, p, len, len, &dst, 1, cnt)
		                                 : !ip4_route_out(&dp->ip, w->tun_fd, t, p, len, &dst, 1, cnt))
			return true;
		if (dp->wg)
			return tx_wg_plain(w, t, st, &dst, p, len, cnt);
		if (dp->off.udp_gso && tx_append_plain(st, &dst, p, len))
			return true;
		if (st->nmsg + 1 > TX_MAXMSG && !send_batch(w, st, cnt))
			return false;
		tx_put_plain(st, p, len);
		tx_add_msg(st, &dst, st->niov - 1, 1, 1, (uint16_t)len, (uint32_t)len);
		st->msg_open[st->nmsg - 1] = true;
		return true;
	case TUN_TCP4_GSO:
	case TUN_UDP4_GSO:
	case TUN_TCP6_GSO:
	case TUN_UDP6_GSO:
		break;
	}
	bool udp = kind == TUN_UDP4_GSO || kind == TUN_UDP6_GSO;
	bool v6 = kind == TUN_TCP6_GSO || kind == TUN_UDP6_GSO;
	/* A UDP super-packet's (UDP GSO sender) checksum field holds the pseudo-header sum: each segment gets a full one. */
	size_t n;
	if (v6)
		n = udp ? gso_udp6_count(p, len, pk.gso_size) : gso_tcp6_count(p, len, pk.gso_size);
	else
		n = udp ? gso_udp4_count(p, len, pk.gso_size) : gso_tcp4_count(p, len, pk.gso_size);
	if (n == 0 || n > TX_MAXSEG) {
		cnt[(!v6 && len >= 1 && (p[0] >> 4) != 4) ? DP_DROP_NOT_IPV4 : DP_DROP_MALFORMED]++;
		return true;
	}
	if (v6) {
		size_t seg = (udp ? GSO_UDP6_HDR : tcp6_hdr_len(p, len)) + pk.gso_size;
		if (!ip6_route_out(&dp->ip, w->tun_fd, t, p, len, seg < len ? seg : len, &dst, n, cnt))
			return true;
	} else if (!ip4_route_out(&dp->ip, w->tun_fd, t, p, len, &dst, n, cnt)) {
		return true;
	}
	if (dp->wg)
		return tx_wg_gso(w, t, st, &dst, p, len, &pk, v6, udp, n, cnt);
	if ((st->nseg + (int)n > TX_MAXSEG || st->nmsg + (int)n > TX_MAXMSG) && !send_batch(w, st, cnt))
		return false;
	struct gso_seg *segs = &st->segs[st->nseg];
	uint8_t *hdrs = st->hdrs + (size_t)st->nseg * GSO_HDR_MAX;
	int k = tx_segment(v6, udp, p, len, pk.gso_size, hdrs, segs, (int)n);
	if (k <= 0) { /* cannot happen after the count, but never trust it blindly */
		cnt[DP_DROP_MALFORMED] += n;
		return true;
	}
	st->nseg += k;
	cnt[DP_TX_GSO_PACKETS]++;
	for (int i = 0; i < k;) {
		int iov0 = st->niov, j = i;
		size_t bytes = 0;
		do {
			size_t sl = (size_t)segs[j].hdr_len + segs[j].pay_len;
			if (j > i && (bytes + sl > UDP_MAX_PAYLOAD || j - i >= UDP_GSO_MAXSEGS))
				break;
			tx_put_segment(st, &segs[j]);
			bytes += sl;
			j++;
		} while (j < k && dp->off.udp_gso);
		tx_add_msg(st, &dst, iov0, st->niov - iov0, (uint16_t)(j - i),
		        (uint16_t)(segs[i].hdr_len + segs[i].pay_len), (uint32_t)bytes);
		i = j;
	}
	return true;
}

/* What one tx pass found. */
enum tx_pass { TX_DRAINED,
	TX_MORE,
	TX_STOP,
	TX_BROKEN };

/*
 * One tx pass: up to BATCH TUN reads, routed, segmented and sent; counters
 * flushed. The caller holds w->tx_lock, which is what makes the tx state,
 * the READER_TX slot and the order of reads and sends belong to one thread
 * at a time. *moved gains the datagrams sent (the busy-poll rate counts
 * datagrams, not reads: one read may be 45 of them).
 */
static enum tx_pass tx_pass(struct worker *w, uint64_t *cnt, uint64_t *moved)
{
	struct dp *dp = w->dp;
	struct tx_state *st = w->tx;
	int n = 0;
	size_t bytes = 0;
	bool more = true, broken = false;
	while (n < BATCH && bytes < TX_BATCH_BYTES) {
		ssize_t r = sys_read(w->tun_fd, st->bufs + (size_t)n * TX_STRIDE, TX_STRIDE);
		if (r < 0) {
			if (errno == EINTR)
				continue;
			if (errno != EAGAIN) {
				cnt[DP_TUN_ERRORS]++;
				broken = true;
			}
			more = false;
			break;
		}
		st->lens[n++] = (size_t)r;
		bytes += (size_t)r;
	}
	bool running = true;
	const struct rtable *t = rcu_enter(w, READER_TX);
	for (int i = 0; i < n && running; i++)
		running = tx_one(w, t, st, st->bufs + (size_t)i * TX_STRIDE, st->lens[i], cnt);
	rcu_exit(w, READER_TX);
	if (running)
		running = send_batch(w, st, cnt);
	*moved += st->queued;
	st->queued = 0;
	dp_counters_flush(dp->c, cnt);
	return !running ? TX_STOP : broken ? TX_BROKEN
	        : more                     ? TX_MORE
	                                   : TX_DRAINED;
}

void *tx_main(void *arg)
{
	struct worker *w = arg;
	struct dp *dp = w->dp;
	uint64_t cnt[DP_NCOUNTERS] = {0};
	struct pollfd pf[4] = {{.fd = w->tun_fd, .events = POLLIN}, {.fd = dp->stop_fd, .events = POLLIN}, {.fd = -1}, {.fd = -1}};
	struct spin_local sl = {.budget = SPIN_START_NS, .low_rate = true};

	for (;;) {
		bool spun;
		enum wake wk = wait_ready(w, READER_TX, &sl, pf, &spun, cnt);
		if (wk == WAKE_STOP)
			break;
		if (wk == WAKE_AGAIN)
			continue;
		uint64_t moved = 0;
		enum tx_pass r;
		pthread_mutex_lock(&w->tx_lock);
		do
			r = tx_pass(w, cnt, &moved);
		while (r == TX_MORE);
		pthread_mutex_unlock(&w->tx_lock);
		if (r == TX_STOP)
			return NULL;
		spin_note(w, READER_TX, &sl, moved, spun);
		if (serving(w, READER_TX)) { /* a bulk sender takes its ACKs in between its reads (wait.c) */
			uint64_t served = 0;
			if (!rx_serve_pass(w, cnt, &served))
				return NULL;
			serve_note(dp, &sl, cnt, served);
		}
		/* A TUN whose device vanished stays readable-with-error: do not spin on it. */
		if (r == TX_BROKEN && wait_stop(dp, 100))
			break;
	}
	return NULL;
}

bool tx_reply_pass(struct worker *w, uint64_t *cnt, uint64_t *moved)
{
	if (pthread_mutex_trylock(&w->tx_lock) != 0)
		return true;
	enum tx_pass r = tx_pass(w, cnt, moved);
	pthread_mutex_unlock(&w->tx_lock);
	return r != TX_STOP;
}
