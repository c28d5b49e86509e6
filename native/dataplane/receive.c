/*
 * The receive path: UDP -> TUN. Each worker's rx thread takes a batch with
 * one recvmmsg (with UDP GRO, a message may hold many datagrams: split here
 * by its UDP_GRO size), drops datagrams from senders that are no peer's
 * endpoint address (PublicIP, or PublicIPv6 on an IPv6 underlay), validates each inner packet (ip.h, or ip6.h by the version
 * nibble), coalesces consecutive segments of a flow into super-packets where
 * the TUN takes them (offload/gro.c) and writes each, straight from the
 * receive buffers.
 * A super-packet the TUN refuses is written packet by packet instead.
 *
 * Threads and locking: an rx pass runs under w->rx_lock, on the rx thread
 * or on the tx thread serving the socket (rx_serve_pass, wait.c); the lock
 * makes struct rx_state, the READER_RX slot and the order of receives and
 * writes belong to one thread at a time. The rx thread's reply fast path
 * and its serving run a tx pass under w->tx_lock (send.c): the reply pass
 * only while the tx thread is not busy, taken with trylock (lock order
 * rx_lock, then tx_lock). The route table
 * is read inside one read section per batch; in WireGuard mode the batch's
 * open receive run (wg.h: its keypair, its peer's rx_lock) ends before it.
 */
#define _GNU_SOURCE
#include "dataplane/state.h"

#include "common/sys.h"
#include "tun/vnet.h"
#include "udp/udp.h"

#include <arpa/inet.h>
#include <errno.h>
#include <poll.h>
#include <string.h>

/*
 * ---- per-packet transform slot -------------------------------------------
 * Where each received datagram's payload becomes an inner packet for the
 * coalescer. Today the payload is the inner packet, referenced in place. A
 * transform (a WireGuard backend decrypting) goes here and only here: it
 * would decrypt the datagram straight into a coalescing buffer and hand
 * that to the checks instead; coalescing and writing stay as they are.
 * Returns how many packets it added at st->pkts[np] (0 or 1).
 */
static inline size_t rx_take(struct dp *dp, struct rx_state *st, size_t np, uint8_t *p, size_t len, bool trunc,
        uint64_t *cnt)
{
	if (len >= 1 && (p[0] >> 4) == 6 ? !ip6_accept_in(&dp->ip, p, len, trunc, cnt) : !ip4_accept_in(&dp->ip, p, len, trunc, cnt))
		return 0;
	st->pkts[np].p = p;
	st->pkts[np].len = (uint32_t)len;
	return 1;
}

/* WireGuard mode: the datagram is opened in place (wg.c), then checked like a plain one. */
static inline size_t rx_take_wg(struct worker *w, const struct rtable *t, struct wgp *peer, struct rx_state *st,
        size_t np, uint8_t *p, size_t len, bool trunc, uint64_t *cnt)
{
	if (trunc) {
		cnt[DP_DROP_MALFORMED]++;
		return 0;
	}
	uint8_t *inner = NULL;
	size_t ilen = wg_rx_take(w, t, peer, p, len, &inner, cnt);
	if (ilen == 0)
		return 0;
	return rx_take(w->dp, st, np, inner, ilen, false, cnt);
}
/* ---- end of the transform slot ------------------------------------------- */

/* Writes one coalescer item to the TUN: a super-packet behind its virtio header, or one packet as it came. */
static void rx_write_item(struct worker *w, struct rx_state *st, const struct gro_item *it, uint64_t *cnt)
{
	const struct gro_pkt *pk = st->pkts;
	if (it->count == 1) {
		if (tun_write1(w->tun_fd, w->dp->off.tun_vnet_hdr, pk[it->first].p, pk[it->first].len) < 0) {
			cnt[DP_TUN_ERRORS]++;
		} else {
			cnt[DP_RX_PACKETS]++;
			cnt[DP_RX_BYTES] += pk[it->first].len;
		}
		return;
	}
	struct iovec *v = st->wiov;
	int nv = 0;
	tun_super_hdr(&v[nv++], it);
	v[nv].iov_base = pk[it->first].p;
	v[nv++].iov_len = pk[it->first].len;
	uint64_t bytes = pk[it->first].len;
	for (uint32_t i = st->next[it->first]; i != GRO_END; i = st->next[i]) {
		v[nv].iov_base = pk[i].p + it->hdr_len;
		v[nv++].iov_len = pk[i].len - it->hdr_len;
		bytes += pk[i].len;
	}
	if (tun_writev(w->tun_fd, v, nv) >= 0) {
		cnt[DP_RX_PACKETS] += it->count;
		cnt[DP_RX_BYTES] += bytes;
		cnt[DP_RX_GRO_PACKETS]++;
		return;
	}
	/* Refused as a super-packet: put the first packet back as it came and write them one by one. */
	gro_item_undo(pk, it);
	for (uint32_t i = it->first; i != GRO_END; i = st->next[i]) {
		if (tun_write1(w->tun_fd, w->dp->off.tun_vnet_hdr, pk[i].p, pk[i].len) < 0) {
			cnt[DP_TUN_ERRORS]++;
		} else {
			cnt[DP_RX_PACKETS]++;
			cnt[DP_RX_BYTES] += pk[i].len;
		}
	}
}

/*
 * Serving the TUN queue (wait.c): the tx pass for what the writes just made
 * (a bulk flow's ACKs), from this thread. False: stop.
 */
static bool rx_serve_tx(struct worker *w, struct spin_local *sl, uint64_t *cnt)
{
	if (!sl || !serving(w, READER_RX))
		return true;
	uint64_t served = 0;
	bool ok = tx_reply_pass(w, cnt, &served);
	serve_note(w->dp, sl, cnt, served);
	return ok;
}

/*
 * One rx pass: batches until the socket is drained, each validated,
 * coalesced and written; counters flushed. The caller holds w->rx_lock.
 * `sl` is the rx thread's busy-polling state (its reply fast path and its
 * serving), NULL when the tx thread serves the socket. False: stop.
 */
static bool rx_pass(struct worker *w, struct spin_local *sl, uint64_t *cnt, uint64_t *moved)
{
	struct dp *dp = w->dp;
	struct rx_state *st = w->rx;
	/* With GRO a message may be 64 KB: fewer per call keep a batch in the cache for the passes over it. */
	int vlen = dp->off.udp_gro ? RX_GRO_BATCH : BATCH;
	for (;;) {
		for (int i = 0; i < vlen; i++) {
			struct msghdr *mh = &st->msgs[i].msg_hdr;
			memset(mh, 0, sizeof *mh);
			mh->msg_name = &st->srcs[i];
			mh->msg_namelen = sizeof st->srcs[i];
			mh->msg_iov = &st->iov[i];
			mh->msg_iovlen = 1;
			if (dp->off.udp_gro) {
				mh->msg_control = st->cm[i].buf;
				mh->msg_controllen = sizeof st->cm[i].buf;
			}
		}
		int n = sys_recvmmsg(w->udp_fd, st->msgs, (unsigned)vlen, MSG_DONTWAIT);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno != EAGAIN) {
				cnt[DP_SOCKET_ERRORS]++;
				dp_counters_flush(dp->c, cnt);
				if (wait_stop(dp, 100))
					return false;
			}
			break;
		}
		/* Split GRO'd messages into their datagrams (one inner packet each) and validate each. */
		size_t np = 0;
		const struct rtable *t = rcu_enter(w, READER_RX);
		for (int i = 0; i < n; i++) {
			struct msghdr *mh = &st->msgs[i].msg_hdr;
			size_t len = st->msgs[i].msg_len;
			bool trunc = (mh->msg_flags & MSG_TRUNC) != 0;
			size_t seg = dp->off.udp_gro ? udp_gro_size(mh) : 0;
			if (seg == 0 || seg > len)
				seg = len ? len : 1;
			size_t chunks = len ? (len + seg - 1) / seg : 1;
			struct ip6key sender = ul_key(&st->srcs[i]);
			struct wgp *peer = NULL;
			if (dp->wg ? !(peer = rt_wg_peer(t, sender, udp_addr_port(&st->srcs[i]))) : !rt_is_peer(t, sender)) {
				cnt[DP_DROP_UNKNOWN_SENDER] += chunks;
				continue;
			}
			uint8_t *base = st->iov[i].iov_base;
			for (size_t off = 0; off < len || (len == 0 && off == 0); off += seg) {
				size_t cl = len - off < seg ? len - off : seg;
				if (np == RX_MAXPKT) {
					cnt[DP_DROP_MALFORMED]++;
				} else if (peer) {
					np += rx_take_wg(w, t, peer, st, np, base + off, cl, trunc, cnt);
				} else {
					np += rx_take(dp, st, np, base + off, cl, trunc, cnt);
				}
				if (len == 0)
					break;
			}
		}
		if (dp->wg)
			wg_rx_flush(w, cnt); /* the run's keypair is only valid inside the read section */
		rcu_exit(w, READER_RX);
		*moved += np;
		if (dp->off.tun_vnet_hdr) {
			/* WireGuard: the AEAD authenticated each packet, its checksum need not be verified again. */
			unsigned gf = (dp->off.tun_uso ? GRO_UDP : 0) | (dp->wg ? GRO_CSUM_TRUSTED : 0);
			size_t ni = gro_coalesce(st->pkts, np, st->next, st->items, gf);
			for (size_t k = 0; k < ni; k++)
				rx_write_item(w, st, &st->items[k], cnt);
		} else {
			for (size_t k = 0; k < np; k++) {
				if (tun_write1(w->tun_fd, dp->off.tun_vnet_hdr, st->pkts[k].p, st->pkts[k].len) < 0) {
					cnt[DP_TUN_ERRORS]++;
				} else {
					cnt[DP_RX_PACKETS]++;
					cnt[DP_RX_BYTES] += st->pkts[k].len;
				}
			}
		}
		dp_counters_flush(dp->c, cnt);
		/*
		 * Reply fast path (low rates only): the kernel answers much of
		 * what was just written (a ping, a request to a local service)
		 * inside the write itself, so the reply already waits in the TUN.
		 * Sending it from here saves the hop through the tx thread's
		 * wake-up, as a single-threaded forwarder would. tx_reply_pass
		 * takes w->tx_lock, which keeps reads and sends in order; if the
		 * tx thread holds it, that thread has the reply. A busy tx thread
		 * (a bulk sender, whose rx thread sees only ACKs) has it too.
		 */
		if (sl && dp->off.busy_poll && sl->low_rate && np > 0 && !spin_other_busy(w, READER_RX)) {
			uint64_t replied = 0;
			if (!tx_reply_pass(w, cnt, &replied))
				return false;
		}
		if (n < vlen)
			break;
		if (np > 0 && !rx_serve_tx(w, sl, cnt)) /* more batches follow: their ACKs need not wait */
			return false;
	}
	return rx_serve_tx(w, sl, cnt);
}

bool rx_serve_pass(struct worker *w, uint64_t *cnt, uint64_t *moved)
{
	if (pthread_mutex_trylock(&w->rx_lock) != 0)
		return true;
	bool ok = rx_pass(w, NULL, cnt, moved);
	pthread_mutex_unlock(&w->rx_lock);
	return ok;
}

void *rx_main(void *arg)
{
	struct worker *w = arg;
	struct dp *dp = w->dp;
	struct rx_state *st = w->rx;
	uint64_t cnt[DP_NCOUNTERS] = {0};
	struct pollfd pf[4] = {{.fd = w->udp_fd, .events = POLLIN}, {.fd = dp->stop_fd, .events = POLLIN}, {.fd = -1}, {.fd = -1}};
	struct spin_local sl = {.budget = SPIN_START_NS, .low_rate = true};

	for (int i = 0; i < BATCH; i++) {
		st->iov[i].iov_base = st->bufs + (size_t)i * BUFSZ;
		st->iov[i].iov_len = BUFSZ;
	}
	for (;;) {
		bool spun;
		enum wake wk = wait_ready(w, READER_RX, &sl, pf, &spun, cnt);
		if (wk == WAKE_STOP)
			break;
		if (wk == WAKE_AGAIN)
			continue;
		uint64_t moved = 0;
		pthread_mutex_lock(&w->rx_lock);
		bool ok = rx_pass(w, &sl, cnt, &moved);
		pthread_mutex_unlock(&w->rx_lock);
		if (!ok)
			return NULL;
		spin_note(w, READER_RX, &sl, moved, spun);
	}
	return NULL;
}
