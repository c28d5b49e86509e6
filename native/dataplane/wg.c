/*
 * The data plane's WireGuard mode (wg.h): sealing on send, opening on
 * receive, handshakes (types 1-3, handled in C on the rx thread that got
 * them), the per-peer staging queue and the timer thread that drives
 * retries, rekeys and keepalives with native/wireguard/timers.h.
 *
 * Threads and locking (see wg.h for what each lock guards):
 *   - tx threads call wg_tx_keypair (takes wgp.lock briefly) and wg_tx_seal
 *     (their own cipher contexts, under the worker's tx_lock);
 *   - rx passes (an rx thread's, or a tx thread's serving its socket, under
 *     the worker's rx_lock) call wg_rx_take: wgp.lock to find the keypair once per run
 *     (struct wg_rxrun: one peer, one keypair, one batch) and once for the
 *     run's events at its end (wg_rx_flush, before the read section ends);
 *     an open run holds its peer's wgp.rx_lock (decryption, replay window)
 *     and takes no other lock: run_end releases it first, and every path
 *     that takes another lock (a new run's lookup, a handshake message)
 *     ends the run before; dev->cookie_lock around mac checks and cookie
 *     replies;
 *   - the timer thread (wg_timer_main) reads the route table in its own RCU
 *     slot (dev->timer_reader), takes wgp.lock per peer, and frees retired
 *     keypairs after their grace period (retired_lock);
 *   - slow-path sends (handshake messages, keepalives, staged packets) seal
 *     with the keypair's own context kp->send, which wgp.lock guards; tx
 *     passes never use it.
 *   - this host's key (dev->id) and every peer's static DH are read under
 *     dev->id_lock (shared) by the handshake calls; dp_wg_set_private_key
 *     (JS thread, under dp->wlock) rewrites them holding it exclusively.
 * Lock order: dp->wlock, then wgp.lock, then dev->id_lock, then
 * dev->tai_lock or dev->retired_lock; dp->wlock, dev->id_lock (exclusive),
 * then cookie_lock (the key swap only); rx_lock and cookie_lock are
 * otherwise never held with another lock.
 */
#define _GNU_SOURCE
#include "dataplane/wg.h"

#include "common/bytes.h"
#include "common/err.h"
#include "dataplane/state.h"

#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static uint64_t clock_ns(clockid_t id)
{
	struct timespec ts;
	clock_gettime(id, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static uint64_t jitter(void)
{
	uint64_t j = 0;
	wg_random(&j, sizeof j);
	return j % WG_REKEY_TIMEOUT_JITTER_MAX;
}

static uint32_t new_index(void)
{
	uint32_t i = 0;
	while (i == 0 && wg_random(&i, sizeof i) == 0) {
	}
	return i;
}

static void le32_put(uint8_t *p, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static uint32_t le32_get(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static void send_to(int fd, const union udp_addr *to, const void *b, size_t n, uint64_t *cnt)
{
	ssize_t r;
	do
		r = sendto(fd, b, n, MSG_DONTWAIT, &to->sa, udp_addr_len(to));
	while (r < 0 && errno == EINTR);
	if (r < 0)
		cnt[DP_SOCKET_ERRORS]++;
}

/* ---- keypair lifetime ---------------------------------------------------- */

static void serialize(struct wg_dev *dev, struct wg_keypair *kp)
{
	if (kp && kp->serial == 0)
		kp->serial = atomic_fetch_add(&dev->serial, 1) + 1;
}

/* Puts a displaced keypair on the retired list (called after the slot changed, under wgp.lock). */
static void retire(struct dp *dp, struct wg_keypair *kp)
{
	if (!kp)
		return;
	struct wg_dev *dev = dp->wg;
	pthread_mutex_lock(&dev->retired_lock);
	kp->retired_gen = atomic_fetch_add(&dp->gen, 1);
	kp->next_retired = dev->retired;
	dev->retired = kp;
	pthread_mutex_unlock(&dev->retired_lock);
}

/* Frees retired keypairs no reader can still hold (timer thread, outside its section; or close). */
static void reclaim(struct dp *dp, bool all)
{
	struct wg_dev *dev = dp->wg;
	pthread_mutex_lock(&dev->retired_lock);
	struct wg_keypair **pp = &dev->retired;
	while (*pp) {
		struct wg_keypair *kp = *pp;
		bool busy = false;
		for (unsigned k = 0; k < dp->nw && !all; k++) {
			for (int r = 0; r < NREADERS; r++) {
				uint64_t g = atomic_load(&dp->w[k].readers[r].gen);
				busy = busy || (g != 0 && g <= kp->retired_gen);
			}
		}
		uint64_t g = atomic_load(&dev->timer_reader);
		busy = busy || (!all && g != 0 && g <= kp->retired_gen);
		if (busy) {
			pp = &kp->next_retired;
		} else {
			*pp = kp->next_retired;
			wg_keypair_free(kp);
		}
	}
	pthread_mutex_unlock(&dev->retired_lock);
}

/* ---- peers --------------------------------------------------------------- */

struct wgp *wgp_new(struct wg_dev *dev, const uint8_t pub[WG_KEY_LEN], const union udp_addr *ep, const uint32_t *nets,
        const uint8_t *prefixes, size_t n)
{
	struct wgp *p = calloc(1, sizeof *p);
	if (!p)
		return NULL;
	p->allowed = n ? calloc(n, sizeof *p->allowed) : NULL;
	pthread_rwlock_rdlock(&dev->id_lock);
	int rc = wg_peer_init(&p->st, &dev->id, pub, dev->has_psk ? dev->psk : NULL);
	pthread_rwlock_unlock(&dev->id_lock);
	if ((n && !p->allowed) || rc != 0) {
		free(p->allowed);
		wg_wipe(p, sizeof *p);
		free(p);
		return NULL;
	}
	for (size_t i = 0; i < n; i++) {
		p->allowed[i].net = nets[i];
		p->allowed[i].prefix = prefixes[i];
	}
	p->nallowed = (uint32_t)n;
	p->ep = *ep;
	pthread_mutex_init(&p->lock, NULL);
	pthread_mutex_init(&p->rx_lock, NULL);
	wg_timers_init(&p->timers, dev->keepalive_ns);
	if (dev->keepalive_ns) /* persistent keepalive: the first one goes at once (it starts a handshake) */
		p->timers.persistent_at = clock_ns(CLOCK_MONOTONIC);
	p->refs = 1;
	return p;
}

void wgp_put(struct wgp *p)
{
	if (!p || --p->refs > 0)
		return;
	for (unsigned i = 0; i < p->nstaged; i++)
		free(p->staged[i].p);
	free(p->allowed);
	free(p->allowed6);
	pthread_mutex_destroy(&p->lock);
	pthread_mutex_destroy(&p->rx_lock);
	wg_peer_wipe(&p->st); /* frees the slots' keypairs: no reader is left (RCU) */
	wg_wipe(p, sizeof *p);
	free(p);
}

/* Staged packets are kept with 16 bytes of room before and 32 after, to be sealed in place. */
static void stage(struct wgp *p, const uint8_t *pkt, size_t len, uint64_t *cnt)
{
	uint8_t *b = (pkt && len <= 65535 && p->nstaged < WG_STAGED_MAX) ? malloc(len + WG_TRANSPORT_OVERHEAD + 16) : NULL;
	if (!b) {
		cnt[DP_WG_DROP_NO_KEYPAIR]++;
		return;
	}
	memcpy(b + WG_TRANSPORT_HEADER_LEN, pkt, len);
	p->staged[p->nstaged].p = b;
	p->staged[p->nstaged++].len = (uint32_t)len;
}

/* Sends what is staged with the current keypair (wgp.lock held); drops it without one. */
static void flush_staged(struct wgp *p, int fd, uint64_t now, uint64_t *cnt)
{
	struct wg_keypair *kp = p->st.current;
	for (unsigned i = 0; i < p->nstaged; i++) {
		struct wg_staged *s = &p->staged[i];
		long n = kp ? wg_transport_seal(kp, s->p + WG_TRANSPORT_HEADER_LEN, s->len, 65535, now, s->p, NULL) : -1;
		if (n < 0) {
			cnt[DP_WG_DROP_NO_KEYPAIR]++;
		} else {
			send_to(fd, &p->ep, s->p, (size_t)n, cnt);
			cnt[DP_TX_PACKETS]++;
			cnt[DP_TX_BYTES] += (uint64_t)n;
			atomic_fetch_add_explicit(&p->tx_bytes, (uint64_t)n, memory_order_relaxed);
		}
		free(s->p);
	}
	if (p->nstaged && kp) {
		wg_timers_on_data_sent(&p->timers, now);
		wg_timers_on_authenticated_sent(&p->timers, now);
		wg_timers_on_traversal(&p->timers, now);
	}
	p->nstaged = 0;
}

static void drop_staged(struct wgp *p)
{
	for (unsigned i = 0; i < p->nstaged; i++)
		free(p->staged[i].p);
	p->nstaged = 0;
}

/* A handshake initiation to p, unless one went out less than REKEY_TIMEOUT ago (a retry always goes). */
static void initiate(struct dp *dp, struct wgp *p, int fd, uint64_t now, bool retry, uint64_t *cnt)
{
	struct wg_dev *dev = dp->wg;
	uint8_t msg[WG_INITIATION_LEN], ts[WG_TAI64N_LEN];
	pthread_mutex_lock(&p->lock);
	if (!wg_initiation_allowed(now, p->last_init_sent, retry)) {
		pthread_mutex_unlock(&p->lock);
		return;
	}
	pthread_mutex_lock(&dev->tai_lock);
	wg_tai64n(dev->last_tai, clock_ns(CLOCK_REALTIME), dev->last_tai);
	memcpy(ts, dev->last_tai, sizeof ts);
	pthread_mutex_unlock(&dev->tai_lock);
	pthread_rwlock_rdlock(&dev->id_lock);
	int rc = wg_create_initiation(&dev->id, &p->st, new_index(), ts, now, msg);
	pthread_rwlock_unlock(&dev->id_lock);
	if (rc == 0) {
		p->last_init_sent = now;
		if (!retry)
			wg_timers_on_handshake_initiated(&p->timers, now, jitter());
		wg_timers_on_authenticated_sent(&p->timers, now);
		wg_timers_on_traversal(&p->timers, now);
	}
	pthread_mutex_unlock(&p->lock);
	if (rc == 0) {
		send_to(fd, &p->ep, msg, sizeof msg, cnt);
		cnt[DP_WG_HANDSHAKES_SENT]++;
	}
}

/* A keepalive with the current keypair, or a handshake without one. */
static void keepalive(struct dp *dp, struct wgp *p, int fd, uint64_t now, uint64_t *cnt)
{
	uint8_t msg[WG_TRANSPORT_MIN_LEN];
	long n = -1;
	pthread_mutex_lock(&p->lock);
	if (p->st.current)
		n = wg_transport_seal(p->st.current, NULL, 0, 65535, now, msg, NULL);
	if (n > 0) {
		wg_timers_on_authenticated_sent(&p->timers, now);
		wg_timers_on_traversal(&p->timers, now);
	}
	pthread_mutex_unlock(&p->lock);
	if (n > 0)
		send_to(fd, &p->ep, msg, (size_t)n, cnt);
	else
		initiate(dp, p, fd, now, false, cnt);
}

/* ---- send ---------------------------------------------------------------- */

struct wg_keypair *wg_tx_keypair(struct worker *w, struct wgp *p, const uint8_t *pkt, size_t len, uint64_t now,
        uint64_t *cnt)
{
	bool start = false;
	pthread_mutex_lock(&p->lock);
	struct wg_keypair *kp = p->st.current;
	if (kp) {
		uint64_t age = now - kp->birth, ctr = atomic_load_explicit(&kp->send_counter, memory_order_relaxed);
		if (wg_keypair_expired(age, ctr)) {
			kp = NULL;
		} else {
			start = wg_rekey_on_send(age, ctr, kp->we_initiated);
			wg_timers_on_data_sent(&p->timers, now);
			wg_timers_on_authenticated_sent(&p->timers, now);
			wg_timers_on_traversal(&p->timers, now);
		}
	}
	if (!kp) {
		stage(p, pkt, len, cnt);
		start = true;
	}
	pthread_mutex_unlock(&p->lock);
	if (start)
		initiate(w->dp, p, w->udp_fd, now, false, cnt);
	return kp;
}

long wg_tx_seal(struct wg_txcache *c, struct wg_keypair *kp, uint64_t ctr, const uint8_t *p1, size_t l1,
        const uint8_t *p2, size_t l2, uint8_t *out)
{
	size_t len = l1 + l2;
	unsigned s = (unsigned)(kp->serial % WG_TXCACHE);
	struct wg_aead *a = &c->aead[s];
	if (c->serial[s] != kp->serial) {
		if (!a->mac && wg_aead_init(a) != 0)
			return -1;
		c->serial[s] = 0;
		if (wg_aead_setkey(a, kp->send_key) != 0)
			return -1;
		c->serial[s] = kp->serial;
	}
	if (ctr >= WG_REJECT_AFTER_MESSAGES)
		return -1;
	size_t padded = (len + 15) & ~(size_t)15;
	out[0] = WG_MSG_TRANSPORT;
	out[1] = out[2] = out[3] = 0;
	le32_put(out + 4, kp->remote_index);
	for (int i = 0; i < 8; i++)
		out[8 + i] = (uint8_t)(ctr >> (8 * i));
	if (wg_aead_seal2(a, ctr, p1, l1, p2, l2, padded - len, out + WG_TRANSPORT_HEADER_LEN) != 0)
		return -1;
	return (long)(WG_TRANSPORT_OVERHEAD + padded);
}

void wg_txcache_free(struct wg_txcache *c)
{
	for (int i = 0; i < WG_TXCACHE; i++) {
		if (c->aead[i].cipher || c->aead[i].mac)
			wg_aead_free(&c->aead[i]);
		c->serial[i] = 0;
	}
}

/* ---- receive ------------------------------------------------------------- */

static struct wg_peer *lookup_static(void *ctx, const uint8_t remote_static[WG_KEY_LEN])
{
	struct wgp *p = ctx;
	return wg_equal(remote_static, p->st.remote_static, WG_KEY_LEN) ? &p->st : NULL;
}

/* Counts one handshake message; true while more than WG_UNDER_LOAD_RATE arrived this second (cookie_lock held). */
static bool under_load(struct wg_dev *dev, uint64_t now)
{
	if (now - dev->load_win_start >= WG_NS_PER_S) {
		dev->load_win_start = now;
		dev->load_win_count = 0;
	}
	return ++dev->load_win_count > WG_UNDER_LOAD_RATE;
}

static void rx_handshake(struct worker *w, struct wgp *p, const uint8_t *msg, size_t len, uint64_t now,
        uint64_t *cnt)
{
	struct dp *dp = w->dp;
	struct wg_dev *dev = dp->wg;
	uint8_t src[18]; /* the sender (the pinned endpoint) for mac2: address bytes, then port */
	size_t srclen = udp_addr_bytes(&p->ep, src);
	uint8_t type = msg[0];
	if (type == WG_MSG_COOKIE) {
		pthread_mutex_lock(&p->lock);
		bool mine = len == WG_COOKIE_REPLY_LEN && p->st.state == WG_HS_INITIATION_SENT &&
		        le32_get(msg + 4) == p->st.hs_local_index;
		int rc = mine ? wg_cookie_consume_reply(&p->st.cookie, msg, len, now) : -1;
		pthread_mutex_unlock(&p->lock);
		if (!mine)
			cnt[DP_WG_DROP_UNKNOWN_INDEX]++;
		else if (rc != 0)
			cnt[DP_WG_DROP_BAD_MAC]++;
		return;
	}
	if ((type == WG_MSG_INITIATION && len != WG_INITIATION_LEN) || (type == WG_MSG_RESPONSE && len != WG_RESPONSE_LEN)) {
		cnt[DP_DROP_MALFORMED]++;
		return;
	}
	uint8_t reply[WG_COOKIE_REPLY_LEN];
	pthread_mutex_lock(&dev->cookie_lock);
	enum wg_cookie_verdict v = wg_cookie_check(&dev->id.cookies, msg, len, src, srclen, under_load(dev, now), now);
	int rrc = v == WG_COOKIE_NEED_REPLY ? wg_cookie_reply(&dev->id.cookies, msg, len, src, srclen, now, reply) : -1;
	pthread_mutex_unlock(&dev->cookie_lock);
	if (v == WG_COOKIE_BAD_MAC1) {
		cnt[DP_WG_DROP_BAD_MAC]++;
		return;
	}
	if (v == WG_COOKIE_NEED_REPLY) {
		cnt[DP_WG_DROP_COOKIE_REQUIRED]++;
		if (rrc == 0) {
			send_to(w->udp_fd, &p->ep, reply, sizeof reply, cnt);
			cnt[DP_WG_COOKIES_SENT]++;
		}
		return;
	}
	struct wg_keypair *retired[2] = {NULL, NULL};
	if (type == WG_MSG_INITIATION) {
		struct wg_initiation in;
		pthread_rwlock_rdlock(&dev->id_lock);
		int orc = wg_open_initiation(&dev->id, msg, len, lookup_static, p, &in);
		pthread_rwlock_unlock(&dev->id_lock);
		if (orc != 0) {
			/* Not decryptable with our key, or the static key is not this endpoint's peer. */
			cnt[DP_WG_DROP_UNKNOWN_INDEX]++;
			wg_initiation_wipe(&in);
			return;
		}
		uint8_t resp[WG_RESPONSE_LEN];
		pthread_mutex_lock(&p->lock);
		int rc = wg_accept_initiation(&p->st, &in, now);
		if (rc != 0) {
			pthread_mutex_unlock(&p->lock);
			wg_initiation_wipe(&in);
			cnt[DP_WG_DROP_REPLAY]++;
			return;
		}
		pthread_rwlock_rdlock(&dev->id_lock);
		rc = wg_create_response(&dev->id, &p->st, new_index(), now, resp, retired);
		pthread_rwlock_unlock(&dev->id_lock);
		if (rc == 0) {
			serialize(dev, p->st.next);
			retire(dp, retired[0]);
			retire(dp, retired[1]);
			/* Our data waits for the initiator's confirmation, not for a handshake of our own. */
			p->last_init_sent = now;
			wg_timers_on_session_derived(&p->timers, now);
			wg_timers_on_authenticated_sent(&p->timers, now);
			wg_timers_on_traversal(&p->timers, now);
		}
		pthread_mutex_unlock(&p->lock);
		wg_initiation_wipe(&in);
		if (rc == 0) {
			send_to(w->udp_fd, &p->ep, resp, sizeof resp, cnt);
			cnt[DP_WG_HANDSHAKES_RECEIVED]++;
		} else {
			cnt[DP_WG_DROP_BAD_MAC]++;
		}
		return;
	}
	/* A response: only to the initiation we have outstanding. */
	pthread_mutex_lock(&p->lock);
	if (p->st.state != WG_HS_INITIATION_SENT || wg_receiver_index(msg, len) != p->st.hs_local_index) {
		pthread_mutex_unlock(&p->lock);
		cnt[DP_WG_DROP_UNKNOWN_INDEX]++;
		return;
	}
	pthread_rwlock_rdlock(&dev->id_lock);
	int rc = wg_consume_response(&dev->id, &p->st, msg, len, now, retired);
	pthread_rwlock_unlock(&dev->id_lock);
	if (rc == 0) {
		serialize(dev, p->st.current);
		retire(dp, retired[0]);
		retire(dp, retired[1]);
		wg_timers_on_handshake_complete(&p->timers, now);
		wg_timers_on_session_derived(&p->timers, now);
		wg_timers_on_authenticated_received(&p->timers, now);
		wg_timers_on_traversal(&p->timers, now);
		atomic_store(&p->last_handshake, clock_ns(CLOCK_REALTIME));
		flush_staged(p, w->udp_fd, now, cnt);
	}
	pthread_mutex_unlock(&p->lock);
	if (rc != 0) {
		cnt[DP_WG_DROP_BAD_MAC]++;
		return;
	}
	cnt[DP_WG_HANDSHAKES_COMPLETED]++;
	/* The initiator confirms the session at once (the responder may not send before it). */
	keepalive(dp, p, w->udp_fd, now, cnt);
}

/*
 * Ends the run: what the protocol asks after authenticated messages, once
 * for all of the run's (wgp.lock): the keypair confirmed (next -> current),
 * the timers, the byte count, a rekey when due. Receiving data twice or
 * more arms what receiving it once does and asks for another keepalive.
 */
static void run_end(struct worker *w, struct wg_rxrun *r, uint64_t *cnt)
{
	struct wgp *p = r->peer;
	struct wg_keypair *kp = r->kp;
	if (!p)
		return;
	pthread_mutex_unlock(&p->rx_lock);
	r->peer = NULL;
	r->kp = NULL;
	if (r->nauth == 0)
		return;
	struct dp *dp = w->dp;
	uint64_t now = r->now;
	atomic_fetch_add_explicit(&p->rx_bytes, r->bytes, memory_order_relaxed);
	struct wg_keypair *retired = NULL;
	pthread_mutex_lock(&p->lock);
	bool confirmed = kp == p->st.next;
	wg_received_with(&p->st, kp, &retired);
	retire(dp, retired);
	wg_timers_on_authenticated_received(&p->timers, now);
	wg_timers_on_traversal(&p->timers, now);
	for (uint32_t i = 0; i < r->ndata && i < 2; i++)
		wg_timers_on_data_received(&p->timers, now);
	if (confirmed) {
		wg_timers_on_handshake_complete(&p->timers, now);
		atomic_store(&p->last_handshake, clock_ns(CLOCK_REALTIME));
		flush_staged(p, w->udp_fd, now, cnt);
	}
	bool rekey = kp == p->st.current && wg_rekey_on_receive(now - kp->birth, kp->we_initiated);
	pthread_mutex_unlock(&p->lock);
	if (confirmed)
		cnt[DP_WG_HANDSHAKES_COMPLETED]++;
	if (rekey)
		initiate(dp, p, w->udp_fd, now, false, cnt);
}

void wg_rx_flush(struct worker *w, uint64_t *cnt)
{
	run_end(w, &w->rx->wgr, cnt);
}

size_t wg_rx_take(struct worker *w, const struct rtable *t, struct wgp *p, uint8_t *msg, size_t len, uint8_t **inner,
        uint64_t *cnt)
{
	struct dp *dp = w->dp;
	struct wg_rxrun *r = &w->rx->wgr;
	if (len < 4 || msg[1] || msg[2] || msg[3] || msg[0] < WG_MSG_INITIATION || msg[0] > WG_MSG_TRANSPORT) {
		cnt[DP_DROP_MALFORMED]++;
		return 0;
	}
	if (msg[0] != WG_MSG_TRANSPORT) {
		run_end(w, r, cnt); /* a handshake may move the slots: the run's events go first */
		rx_handshake(w, p, msg, len, clock_ns(CLOCK_MONOTONIC), cnt);
		return 0;
	}
	if (len < WG_TRANSPORT_MIN_LEN) {
		cnt[DP_DROP_MALFORMED]++;
		return 0;
	}
	uint32_t idx = le32_get(msg + 4);
	if (r->peer != p || r->idx != idx) {
		run_end(w, r, cnt);
		uint64_t now = clock_ns(CLOCK_MONOTONIC);
		pthread_mutex_lock(&p->lock);
		struct wg_keypair *kp = NULL, *cur = p->st.current, *slots[3] = {p->st.current, p->st.previous, p->st.next};
		for (int i = 0; i < 3 && !kp; i++)
			if (slots[i] && slots[i]->local_index == idx)
				kp = slots[i];
		/* The peer (its endpoint is pinned, so the source is its own) still uses a session we lost: restarted. */
		bool lost = !kp && wg_handshake_on_unknown_index(cur != NULL, cur ? now - cur->birth : 0, cur ? atomic_load_explicit(&cur->send_counter, memory_order_relaxed) : 0);
		pthread_mutex_unlock(&p->lock);
		if (!kp) {
			cnt[DP_WG_DROP_UNKNOWN_INDEX]++;
			if (lost) /* at once rather than after the peer's 15 s without reply; REKEY_TIMEOUT rate limit */
				initiate(dp, p, w->udp_fd, now, false, cnt);
			return 0;
		}
		/* valid until this thread leaves its read section (retired keypairs wait for it) */
		*r = (struct wg_rxrun){.peer = p, .kp = kp, .idx = idx, .now = now};
		pthread_mutex_lock(&p->rx_lock); /* held while the run is open */
	}
	struct wg_keypair *kp = r->kp;
	uint64_t ctr = 0;
	for (int i = 0; i < 8; i++)
		ctr |= (uint64_t)msg[8 + i] << (8 * i);
	if (wg_keypair_expired(r->now - kp->birth, ctr)) {
		cnt[DP_WG_DROP_EXPIRED]++;
		return 0;
	}
	uint8_t *pt = msg + WG_TRANSPORT_HEADER_LEN;
	bool auth = wg_aead_open(&kp->recv, ctr, NULL, 0, pt, len - WG_TRANSPORT_HEADER_LEN, pt) == 0;
	bool fresh = auth && wg_replay_check(&kp->replay, ctr, WG_REJECT_AFTER_MESSAGES);
	if (!auth) {
		cnt[DP_WG_DROP_BAD_MAC]++;
		return 0;
	}
	if (!fresh) {
		cnt[DP_WG_DROP_REPLAY]++;
		return 0;
	}
	size_t plen = len - WG_TRANSPORT_OVERHEAD;
	r->nauth++;
	r->bytes += len;
	if (plen)
		r->ndata++;
	if (plen == 0)
		return 0; /* a keepalive */
	/* The inner packet, cut to its own length (the rest is padding); its source must be in the peer's allowed IPs. */
	if ((pt[0] >> 4) == 6) {
		if (plen < IP6_HDR || (size_t)get16(pt + 4) + IP6_HDR > plen) {
			cnt[DP_DROP_MALFORMED]++;
			return 0;
		}
		const struct rt6_entry *e6 = rt6_lookup(t, ip6_key(pt + 8));
		if (!e6 || e6->peer != p) {
			cnt[DP_WG_DROP_ALLOWED_IPS]++;
			return 0;
		}
		*inner = pt;
		return (size_t)get16(pt + 4) + IP6_HDR;
	}
	if (plen < 20 || (pt[0] >> 4) != 4 || get16(pt + 2) > plen || get16(pt + 2) < 20) {
		cnt[DP_DROP_MALFORMED]++;
		return 0;
	}
	size_t ilen = get16(pt + 2);
	const struct rt_entry *e = rt_lookup(t, get32(pt + 12));
	if (!e || e->peer != p) {
		cnt[DP_WG_DROP_ALLOWED_IPS]++;
		return 0;
	}
	*inner = pt;
	return ilen;
}

/* ---- timer thread and device --------------------------------------------- */

static void *wg_timer_main(void *arg)
{
	struct dp *dp = arg;
	struct wg_dev *dev = dp->wg;
	uint64_t cnt[DP_NCOUNTERS] = {0};
	int fd = dp->w[0].udp_fd;
	struct pollfd pf = {.fd = dp->stop_fd, .events = POLLIN};
	while (!atomic_load(&dp->stopping)) {
		if (poll(&pf, 1, 100) > 0 || atomic_load(&dp->stopping))
			break;
		uint64_t now = clock_ns(CLOCK_MONOTONIC);
		atomic_store(&dev->timer_reader, atomic_load(&dp->gen));
		const struct rtable *t = atomic_load(&dp->table);
		for (uint32_t i = 0; i < t->nwpeers; i++) {
			struct wgp *p = t->wpeers[i].peer;
			pthread_mutex_lock(&p->lock);
			unsigned due = wg_timers_due(&p->timers, now, jitter());
			if (due & WG_TIMER_GIVE_UP)
				drop_staged(p);
			if (due & WG_TIMER_ZERO_KEYS) {
				struct wg_keypair *k[3] = {p->st.current, p->st.previous, p->st.next};
				p->st.current = p->st.previous = p->st.next = NULL;
				for (int j = 0; j < 3; j++)
					retire(dp, k[j]);
			}
			pthread_mutex_unlock(&p->lock);
			if (due & (WG_TIMER_RETRANSMIT_HANDSHAKE | WG_TIMER_NEW_HANDSHAKE))
				initiate(dp, p, fd, now, (due & WG_TIMER_RETRANSMIT_HANDSHAKE) != 0, cnt);
			if (due & (WG_TIMER_SEND_KEEPALIVE | WG_TIMER_PERSISTENT_KEEPALIVE))
				keepalive(dp, p, fd, now, cnt);
		}
		atomic_store(&dev->timer_reader, 0);
		reclaim(dp, false);
		dp_counters_flush(dp->c, cnt);
	}
	return NULL;
}

int wg_dev_open(struct dp *dp, const uint8_t priv[WG_KEY_LEN], const uint8_t *psk, uint32_t keepalive_s,
        const uint8_t *tai_floor, char *err, size_t errlen)
{
	if (wg_crypto_init() != 0)
		return errf(err, errlen, ENOSYS, "WireGuard: libcrypto lacks X25519, ChaCha20-Poly1305 or BLAKE2s%s", "");
	struct wg_dev *dev = calloc(1, sizeof *dev);
	if (!dev)
		return errf(err, errlen, ENOMEM, "WireGuard device%s", "");
	if (wg_identity_init(&dev->id, priv) != 0) {
		free(dev);
		return errf(err, errlen, EINVAL, "WireGuard private key unusable%s", "");
	}
	if (psk) {
		memcpy(dev->psk, psk, WG_KEY_LEN);
		dev->has_psk = true;
	}
	if (tai_floor) {
		memcpy(dev->last_tai, tai_floor, WG_TAI64N_LEN);
		dev->greet_first_peers = true;
	}
	dev->keepalive_ns = (uint64_t)keepalive_s * WG_NS_PER_S;
	pthread_rwlock_init(&dev->id_lock, NULL);
	pthread_mutex_init(&dev->cookie_lock, NULL);
	pthread_mutex_init(&dev->tai_lock, NULL);
	pthread_mutex_init(&dev->retired_lock, NULL);
	dp->wg = dev;
	return 0;
}

int wg_dev_start(struct dp *dp, char *err, size_t errlen)
{
	struct wg_dev *dev = dp->wg;
	sigset_t all, old;
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	int rc = pthread_create(&dev->timer_thread, NULL, wg_timer_main, dp);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (rc != 0)
		return errf(err, errlen, rc, "start WireGuard timer thread%s", "");
	pthread_setname_np(dev->timer_thread, "rudder-wgtimer");
	dev->timer_started = true;
	return 0;
}

void wg_dev_stop(struct dp *dp)
{
	if (dp->wg && dp->wg->timer_started) {
		pthread_join(dp->wg->timer_thread, NULL);
		dp->wg->timer_started = false;
	}
}

void wg_dev_close(struct dp *dp)
{
	struct wg_dev *dev = dp->wg;
	if (!dev)
		return;
	reclaim(dp, true);
	pthread_rwlock_destroy(&dev->id_lock);
	pthread_mutex_destroy(&dev->cookie_lock);
	pthread_mutex_destroy(&dev->tai_lock);
	pthread_mutex_destroy(&dev->retired_lock);
	wg_identity_wipe(&dev->id);
	wg_wipe(dev, sizeof *dev);
	free(dev);
	dp->wg = NULL;
}

void dp_wg_last_tai64n(struct dp *dp, uint8_t out[WG_TAI64N_LEN])
{
	memset(out, 0, WG_TAI64N_LEN);
	if (!dp->wg)
		return;
	pthread_mutex_lock(&dp->wg->tai_lock);
	memcpy(out, dp->wg->last_tai, WG_TAI64N_LEN);
	pthread_mutex_unlock(&dp->wg->tai_lock);
}

/* ---- the peer set (JS thread, under dp->wlock) ---------------------------- */

/* The peer of the current table with this key and endpoint (wlock held), or NULL. */
static struct wgp *find_peer(const struct rtable *t, const struct dp_wg_peer *c, const union udp_addr *ep)
{
	for (uint32_t i = 0; i < t->nwpeers; i++) {
		struct wgp *p = t->wpeers[i].peer;
		if (udp_addr_same(&p->ep, ep) && wg_equal(p->st.remote_static, c->pub, WG_KEY_LEN))
			return p;
	}
	return NULL;
}

int dp_wg_set_peers(struct dp *dp, const struct dp_wg_peer *peers, size_t n, char *err, size_t errlen)
{
	if (!dp->wg) {
		snprintf(err, errlen, "setPeers needs a data plane opened in WireGuard mode");
		return -EINVAL;
	}
	size_t nr = 0, nr6 = 0;
	for (size_t i = 0; i < n; i++) {
		nr += peers[i].nallowed;
		nr6 += peers[i].nallowed6;
	}
	struct dp_route *routes = calloc(nr ? nr : 1, sizeof *routes);
	struct wgp **route_peer = calloc(nr ? nr : 1, sizeof *route_peer);
	struct dp_route6 *routes6 = calloc(nr6 ? nr6 : 1, sizeof *routes6);
	struct wgp **route6_peer = calloc(nr6 ? nr6 : 1, sizeof *route6_peer);
	struct rt_wpeer *wp = calloc(n ? n : 1, sizeof *wp);
	void **allowed = calloc(n ? n : 1, sizeof *allowed); /* new allowed-IP arrays of reused peers */
	struct wg_allowed6 **allowed6 = calloc(n ? n : 1, sizeof *allowed6); /* new IPv6 allowed-IP arrays of every peer */
	bool *reused = calloc(n ? n : 1, sizeof *reused);
	if (!routes || !route_peer || !routes6 || !route6_peer || !wp || !allowed || !allowed6 || !reused) {
		free(allowed6);
		free(reused);
		free(routes);
		free(route_peer);
		free(routes6);
		free(route6_peer);
		free(wp);
		free(allowed);
		return errf(err, errlen, ENOMEM, "WireGuard peers%s", "");
	}
	int rc = 0;
	size_t k = 0, k6 = 0, made = 0;
	pthread_mutex_lock(&dp->wlock);
	const struct rtable *cur = atomic_load(&dp->table);
	for (size_t i = 0; i < n && rc == 0; i++, made++) {
		const struct dp_wg_peer *c = &peers[i];
		if (c->nallowed6) {
			allowed6[i] = calloc(c->nallowed6, sizeof **allowed6);
			if (!allowed6[i]) {
				rc = errf(err, errlen, ENOMEM, "WireGuard peers%s", "");
				break; /* made == i: peers 0..i-1 hold a reference */
			}
			for (size_t j = 0; j < c->nallowed6; j++) {
				memcpy(allowed6[i][j].net, c->nets6 + 16 * j, 16);
				allowed6[i][j].prefix = c->prefixes6[j];
			}
		}
		union udp_addr ep;
		if (dp->v6_underlay)
			udp_addr_set6(&ep, c->ip6, c->port);
		else
			udp_addr_set4(&ep, c->ip, c->port);
		struct wgp *p = find_peer(cur, c, &ep);
		if (p) {
			p->refs++;
			reused[i] = true;
			allowed[i] = c->nallowed ? calloc(c->nallowed, sizeof *p->allowed) : NULL;
			if (c->nallowed && !allowed[i])
				rc = errf(err, errlen, ENOMEM, "WireGuard peers%s", "");
		} else {
			p = wgp_new(dp->wg, c->pub, &ep, c->nets, c->prefixes, c->nallowed);
			if (!p) {
				snprintf(err, errlen, "WireGuard peer %zu: public key unusable or out of memory", i);
				rc = -EINVAL;
				break; /* made == i (break skips the loop's made++): peers 0..i-1 hold a reference */
			}
			/* A restart's first peers: handshake at once (p is not published yet: no other thread sees it). */
			if (dp->wg->greet_first_peers)
				wg_timers_on_peer_started(&p->timers, clock_ns(CLOCK_MONOTONIC));
			p->allowed6 = allowed6[i];
			p->nallowed6 = (uint32_t)c->nallowed6;
			allowed6[i] = NULL;
		}
		wp[i] = (struct rt_wpeer){.ip = ul_key(&ep), .port = c->port, .peer = p};
		for (size_t j = 0; j < c->nallowed; j++, k++) {
			routes[k] = (struct dp_route){.net = c->nets[j], .prefix = c->prefixes[j], .public_ip = c->ip, .port = c->port};
			memcpy(routes[k].public_ip6, c->ip6, 16);
			route_peer[k] = p;
		}
		for (size_t j = 0; j < c->nallowed6; j++, k6++) {
			memcpy(routes6[k6].net, c->nets6 + 16 * j, 16);
			routes6[k6].prefix = c->prefixes6[j];
			routes6[k6].public_ip = c->ip;
			memcpy(routes6[k6].public_ip6, c->ip6, 16);
			routes6[k6].port = c->port;
			route6_peer[k6] = p;
		}
	}
	for (size_t i = 1; i < made && rc == 0; i++) {
		for (size_t j = 0; j < i; j++) {
			if (rt_wpeer_cmp(wp[i].ip, wp[i].port, &wp[j]) == 0) {
				snprintf(err, errlen, "WireGuard peers %zu and %zu share one endpoint", j, i);
				rc = -EINVAL;
			}
		}
	}
	struct rtable *t = NULL;
	struct rt_input in = {.v4 = routes, .v4_peer = route_peer, .n4 = nr, .v6 = routes6, .v6_peer = route6_peer, .n6 = nr6, .wpeers = wp, .nwpeers = n, .v6_underlay = dp->v6_underlay};
	if (rc == 0)
		rc = rt_new(&in, &t, err, errlen);
	if (rc == 0) {
		/* Reused peers take their new allowed IPs (read only here and by dp_wg_status, both under wlock). */
		for (size_t i = 0; i < n; i++) {
			if (!reused[i])
				continue;
			struct wgp *p = wp[i].peer;
			free(p->allowed);
			p->allowed = allowed[i];
			allowed[i] = NULL;
			p->nallowed = (uint32_t)peers[i].nallowed;
			for (size_t j = 0; j < peers[i].nallowed; j++) {
				p->allowed[j].net = peers[i].nets[j];
				p->allowed[j].prefix = peers[i].prefixes[j];
			}
			free(p->allowed6);
			p->allowed6 = allowed6[i];
			allowed6[i] = NULL;
			p->nallowed6 = (uint32_t)peers[i].nallowed6;
		}
		t->put_peer = wgp_put;
		routes_publish(dp, t);
		if (n > 0)
			dp->wg->greet_first_peers = false;
	} else {
		for (size_t i = 0; i < made; i++)
			wgp_put(wp[i].peer);
	}
	pthread_mutex_unlock(&dp->wlock);
	for (size_t i = 0; i < n; i++) {
		free(allowed[i]);
		free(allowed6[i]);
	}
	free(allowed);
	free(allowed6);
	free(reused);
	free(routes);
	free(route_peer);
	free(routes6);
	free(route6_peer);
	free(wp);
	return rc;
}

void dp_wg_status(struct dp *dp, void (*fn)(void *ctx, const struct dp_wg_status *s), void *ctx)
{
	if (!dp->wg)
		return;
	pthread_mutex_lock(&dp->wlock);
	const struct rtable *t = atomic_load(&dp->table);
	for (uint32_t i = 0; i < t->nwpeers; i++) {
		struct wgp *p = t->wpeers[i].peer;
		struct dp_wg_status s = {
		        .ip = p->ep.sa.sa_family == AF_INET ? ntohl(p->ep.v4.sin_addr.s_addr) : 0,
		        .port = t->wpeers[i].port,
		        .last_handshake_ns = atomic_load(&p->last_handshake),
		        .rx_bytes = atomic_load_explicit(&p->rx_bytes, memory_order_relaxed),
		        .tx_bytes = atomic_load_explicit(&p->tx_bytes, memory_order_relaxed),
		        .nallowed = p->nallowed,
		};
		memcpy(s.pub, p->st.remote_static, WG_KEY_LEN);
		if (p->ep.sa.sa_family == AF_INET6)
			memcpy(s.ip6, &p->ep.v6.sin6_addr, 16);
		for (uint32_t j = 0; j < p->nallowed && j < DP_WG_STATUS_ALLOWED; j++) {
			s.nets[j] = p->allowed[j].net;
			s.prefixes[j] = p->allowed[j].prefix;
		}
		s.nallowed6 = p->nallowed6;
		for (uint32_t j = 0; j < p->nallowed6 && j < DP_WG_STATUS_ALLOWED; j++) {
			memcpy(s.nets6[j], p->allowed6[j].net, 16);
			s.prefixes6[j] = p->allowed6[j].prefix;
		}
		fn(ctx, &s);
	}
	pthread_mutex_unlock(&dp->wlock);
}

/* ---- key rotation (JS thread) ---------------------------------------------- */

int dp_wg_set_private_key(struct dp *dp, const uint8_t priv[WG_KEY_LEN], char *err, size_t errlen)
{
	struct wg_dev *dev = dp->wg;
	if (!dev) {
		snprintf(err, errlen, "setPrivateKey needs a data plane opened in WireGuard mode");
		return -EINVAL;
	}
	struct wg_identity id;
	if (wg_identity_init(&id, priv) != 0)
		return errf(err, errlen, EINVAL, "WireGuard private key unusable%s", "");
	pthread_mutex_lock(&dp->wlock);
	const struct rtable *t = atomic_load(&dp->table);
	/* The identity (mac1 key and cookie secret with it) and every peer's static DH change together. */
	pthread_rwlock_wrlock(&dev->id_lock);
	pthread_mutex_lock(&dev->cookie_lock);
	wg_identity_wipe(&dev->id);
	dev->id = id;
	pthread_mutex_unlock(&dev->cookie_lock);
	for (uint32_t i = 0; i < t->nwpeers; i++) { /* cannot fail: wg_peer_init took each of these keys */
		struct wg_peer *st = &t->wpeers[i].peer->st;
		(void)wg_x25519(st->static_dh, dev->id.priv, st->remote_static);
	}
	pthread_rwlock_unlock(&dev->id_lock);
	wg_wipe(&id, sizeof id);
	/* Handshakes and sessions made under the old key end; the peers stay, with their staged packets. */
	uint64_t now = clock_ns(CLOCK_MONOTONIC);
	for (uint32_t i = 0; i < t->nwpeers; i++) {
		struct wgp *p = t->wpeers[i].peer;
		pthread_mutex_lock(&p->lock);
		struct wg_keypair *k[3] = {p->st.current, p->st.previous, p->st.next};
		p->st.current = p->st.previous = p->st.next = NULL;
		for (int j = 0; j < 3; j++)
			retire(dp, k[j]);
		p->st.state = WG_HS_NONE;
		wg_wipe(p->st.hash, sizeof p->st.hash);
		wg_wipe(p->st.chain, sizeof p->st.chain);
		wg_wipe(p->st.eph_priv, sizeof p->st.eph_priv);
		wg_wipe(p->st.remote_eph, sizeof p->st.remote_eph);
		p->st.hs_local_index = p->st.hs_remote_index = 0;
		p->last_init_sent = 0;
		wg_timers_init(&p->timers, dev->keepalive_ns);
		if (dev->keepalive_ns)
			p->timers.persistent_at = now;
		atomic_store(&p->last_handshake, 0);
		pthread_mutex_unlock(&p->lock);
	}
	pthread_mutex_unlock(&dp->wlock);
	return 0;
}
