/*
 * The data plane's WireGuard mode: the device (this host's identity, the
 * cookie checker, the retired keypairs, the timer thread) and its peers
 * (the protocol state of native/wireguard plus what the data plane adds:
 * endpoint, allowed IPs, staged packets, byte counts). The per-packet parts
 * are called from send.c and receive.c only when dp->wg is set; the plain
 * udp mode never reaches this file.
 *
 * Threads and locking:
 *   - struct wg_dev is set at open and read-only after, except the fields
 *     under id_lock, cookie_lock, tai_lock and retired_lock (declared next
 *     to them).
 *   - a struct wgp is reached only through a route table (routes.h), inside
 *     a read section; it is shared by consecutive tables (refs, counted by
 *     the writer under dp->wlock) and wiped when the last table holding it
 *     is freed, after the RCU grace period.
 *   - wgp.lock guards the handshake state, the keypair slots, the timers and
 *     the staging queue; wgp.rx_lock guards the receive contexts and replay
 *     windows of its keypairs (one rx thread per peer in practice: the
 *     SO_REUSEPORT hash keeps a pinned endpoint on one socket).
 *   - a keypair displaced from a slot goes on the device's retired list with
 *     the generation of dp->gen before a bump, and is freed by the timer
 *     thread once no reader slot holds a generation <= that (the route
 *     table's RCU argument, docs/architecture.md): a thread that loaded a
 *     slot inside its read section may use the keypair until it leaves it.
 *   - each tx pass seals with its own cipher contexts (struct wg_txcache in
 *     struct tx_state, guarded by tx_lock), keyed by the keypair's serial.
 *   - the rx thread's run (struct wg_rxrun in struct rx_state) is its own;
 *     it holds a keypair only inside one read section.
 */
#ifndef RUDDER_DATAPLANE_WG_H
#define RUDDER_DATAPLANE_WG_H

#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "udp/udp.h"
#include "wireguard/noise.h"
#include "wireguard/timers.h"

struct dp;
struct worker;
struct rtable;

/* Packets kept per peer while it has no keypair (as wireguard-go keeps a small queue). */
#define WG_STAGED_MAX 64
/* Handshake messages per second above which the device is under load (mac2 wanted, cookie replies). */
#define WG_UNDER_LOAD_RATE 64
/* Per-pass cipher contexts, direct-mapped by keypair serial. */
#define WG_TXCACHE 8

struct wg_staged {
	uint8_t *p;
	uint32_t len;
};

struct wgp {
	/* Read-only after creation (routes.c, under dp->wlock). */
	union udp_addr ep; /* pinned endpoint, of the underlay's family */
	uint32_t nallowed;
	struct {
		uint32_t net;
		uint8_t prefix;
	} * allowed;
	uint32_t nallowed6; /* IPv6 allowed IPs: for dp_wg_status only (the route table is what checks) */
	struct wg_allowed6 {
		uint8_t net[16];
		uint8_t prefix;
	} * allowed6;
	int refs; /* tables holding this peer: dp->wlock */

	/* guards: st's handshake state and slots, timers, staged, last_init_sent, last_handshake
	 * (st.static_dh: the device's id_lock) */
	pthread_mutex_t lock;
	struct wg_peer st;
	struct wg_timers timers;
	struct wg_staged staged[WG_STAGED_MAX];
	unsigned nstaged;
	uint64_t last_init_sent; /* monotonic ns of the last initiation or response sent; 0 = never */
	_Atomic uint64_t last_handshake; /* realtime ns of the latest completed handshake; 0 = none */

	pthread_mutex_t rx_lock; /* guards every keypair's recv context and replay window of this peer */

	_Atomic uint64_t rx_bytes, tx_bytes; /* transport messages' bytes on the wire, relaxed adds */
};

struct wg_dev {
	/* guards id (its cookie checker also needs cookie_lock) and every peer's
	 * st.static_dh: shared by handshakes, exclusive by dp_wg_set_private_key */
	pthread_rwlock_t id_lock;
	struct wg_identity id;
	uint8_t psk[WG_KEY_LEN];
	bool has_psk;
	uint64_t keepalive_ns;

	pthread_mutex_t cookie_lock; /* guards id.cookies' secret and the load window below */
	uint64_t load_win_start;
	uint32_t load_win_count;

	pthread_mutex_t tai_lock; /* guards last_tai (the TAI64N floor, advanced by every initiation) */
	uint8_t last_tai[WG_TAI64N_LEN];

	pthread_mutex_t retired_lock; /* guards the retired keypair list */
	struct wg_keypair *retired;

	_Atomic uint64_t serial; /* keypair serials handed out */

	/* Opened with a TAI64N floor, i.e. this key ran before (a restart): the peers of the first peer set
	 * that names any get a handshake at once, as they may still hold sessions with the old run.
	 * Cleared once that set is published (dp->wlock). */
	bool greet_first_peers;

	pthread_t timer_thread;
	bool timer_started;
	_Atomic uint64_t timer_reader; /* the timer thread's RCU slot (like struct reader_slot.gen) */
};

/*
 * The rx thread's current run: consecutive transport messages of one rx
 * batch from one peer under one keypair (a UDP GRO message is such a run).
 * The keypair is looked up once per run and the protocol's bookkeeping
 * after authentication (slot confirmation, timers, byte count, rekey) is
 * done once per run, at its end (wg_rx_flush), instead of per message:
 * one wgp.lock section per run rather than two per message. An open run
 * holds peer->rx_lock. Under worker.rx_lock (an rx pass); valid only inside
 * the batch's read section.
 */
struct wg_rxrun {
	struct wgp *peer; /* NULL: no run open; else its rx_lock is held */
	struct wg_keypair *kp;
	uint32_t idx; /* kp's local index, as the messages name it */
	uint64_t now; /* monotonic ns at the run's start */
	uint32_t nauth, ndata; /* messages authenticated (and fresh); those of them carrying data */
	uint64_t bytes; /* their bytes on the wire */
};

/* One tx pass's cipher contexts (tx_lock). */
struct wg_txcache {
	struct wg_aead aead[WG_TXCACHE];
	uint64_t serial[WG_TXCACHE]; /* 0 = empty */
};

/* ---- device (lifecycle.c) ---- */
int wg_dev_open(struct dp *dp, const uint8_t priv[WG_KEY_LEN], const uint8_t *psk, uint32_t keepalive_s,
        const uint8_t *tai_floor, char *err, size_t errlen);
int wg_dev_start(struct dp *dp, char *err, size_t errlen);
/* After every data-plane thread is joined. */
void wg_dev_close(struct dp *dp);
void wg_dev_stop(struct dp *dp); /* joins the timer thread (dp->stopping set, stop_fd written) */

/* ---- peers (routes.c, under dp->wlock) ---- */
struct wgp *wgp_new(struct wg_dev *dev, const uint8_t pub[WG_KEY_LEN], const union udp_addr *ep, const uint32_t *nets,
        const uint8_t *prefixes, size_t n);
void wgp_put(struct wgp *p); /* drops a table's reference; wipes and frees at 0 */

/* ---- per-packet (send.c, receive.c) ---- */
/*
 * Send: the keypair to seal with for peer p, or NULL after staging
 * (len bytes of pkt copied) and, if due, starting a handshake. The keypair
 * stays valid until the caller leaves its read section.
 */
struct wg_keypair *wg_tx_keypair(struct worker *w, struct wgp *p, const uint8_t *pkt, size_t len, uint64_t now,
        uint64_t *cnt);
/* The sealed length of an inner packet of len bytes. */
static inline size_t wg_sealed_len(size_t len)
{
	return WG_TRANSPORT_OVERHEAD + ((len + 15) & ~(size_t)15);
}
/*
 * Takes n consecutive send counters of kp, the first returned: one atomic
 * add for a super-packet's datagrams rather than one each. A counter taken
 * and not used (a datagram not sent) is a gap the receiver's window allows.
 */
static inline uint64_t wg_tx_counters(struct wg_keypair *kp, uint64_t n)
{
	return atomic_fetch_add_explicit(&kp->send_counter, n, memory_order_relaxed);
}
/*
 * Seals p1[0..l1) || p2[0..l2) (p2 may be NULL, l2 0) into out
 * (wg_sealed_len(l1 + l2) bytes) with counter ctr (from wg_tx_counters);
 * neither piece may overlap out. -1: keypair exhausted.
 */
long wg_tx_seal(struct wg_txcache *c, struct wg_keypair *kp, uint64_t ctr, const uint8_t *p1, size_t l1,
        const uint8_t *p2, size_t l2, uint8_t *out);
/*
 * Receive: one datagram from peer p (already matched to its endpoint).
 * Transport data is decrypted in place; returns the inner packet's length
 * at *inner (its allowed IPs checked), or 0 when there is nothing to
 * deliver (a handshake message handled here, a keepalive, a drop counted).
 */
size_t wg_rx_take(struct worker *w, const struct rtable *t, struct wgp *p, uint8_t *msg, size_t len, uint8_t **inner,
        uint64_t *cnt);
/* Ends the rx thread's run (struct wg_rxrun): once per batch, before it leaves its read section. */
void wg_rx_flush(struct worker *w, uint64_t *cnt);
void wg_txcache_free(struct wg_txcache *c);

#endif
