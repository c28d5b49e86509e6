/*
 * The structs the data plane's files share: struct dp (one per open), struct
 * worker (one per TUN queue: a tx thread, an rx thread, a TUN fd and a UDP
 * socket), the per-thread batch state, and the few functions one file calls
 * in another. Each lock is declared next to the state it guards; state
 * without a lock says which thread owns it.
 *
 * Threads (per worker; workers share only the route table, the counters,
 * the stop eventfd and struct ip_ctx):
 *   - tx thread (send.c): TUN -> UDP.
 *   - rx thread (receive.c): UDP -> TUN; at low rates (its own and the tx
 *     thread's) it also runs one tx pass after its writes (the reply fast
 *     path), under w->tx_lock.
 *   - serving (wait.c): a busy thread whose partner is not busy runs the
 *     partner's passes too (tx_reply_pass under tx_lock, rx_serve_pass under
 *     rx_lock) and the partner sleeps without watching its fd.
 *   - the caller's thread (JS, through the addon): open, set routes, close
 *     (lifecycle.c, routes.c).
 */
#ifndef RUDDER_DATAPLANE_STATE_H
#define RUDDER_DATAPLANE_STATE_H

#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/uio.h>

#include "dataplane/dataplane.h"
#include "dataplane/ip.h"
#include "dataplane/ip6.h"
#include "dataplane/routes.h"
#include "dataplane/wg.h"
#include "offload/gro.h"
#include "offload/gso.h"
#include "udp/udp.h"

#define BATCH 32
/* Any IPv4 packet fits, whatever MTU someone sets on the device later; pages never written stay unbacked. */
#define BUFSZ 65536
/* A TUN read: virtio header + any IPv4 packet (a TCP super-packet is at most 64 KB too). */
#define TX_STRIDE (BUFSZ + 16)
/*
 * A tx pass stops reading at this many bytes (two TCP super-packets): the
 * reads, the segmentation and the send then work on data still in the cache,
 * where 32 reads of 64 KB would not be; small packets still batch 32.
 */
#define TX_BATCH_BYTES (128u << 10)
/* Messages per recvmmsg when UDP GRO may make each 64 KB (see receive.c); BATCH otherwise. */
#define RX_GRO_BATCH 8
/* Segments (and so datagrams) one tx batch may hold; a super-packet needing more is dropped as malformed. */
#define TX_MAXSEG 1024
#define TX_MAXMSG (TX_MAXSEG + BATCH)
/* WireGuard mode: a tx batch's sealed datagrams (any batch's reads plus per-datagram overhead fit). */
#define WG_WBUF ((size_t)BATCH * TX_STRIDE + (size_t)TX_MAXMSG * (WG_TRANSPORT_OVERHEAD + 16))
/* Inner packets one rx batch may hold: the kernel's UDP GRO merges at most 64 datagrams. */
#define RX_MAXPKT (BATCH * 64)
/* Route-table readers per worker (RCU slots) and busy-poll slots: one per thread. */
#define NREADERS 2
#define READER_TX 0
#define READER_RX 1

/*
 * One tx pass's batch: datagrams to send, built from up to BATCH TUN reads.
 * Guarded by worker.tx_lock (a tx pass runs on the tx thread or, for a
 * reply, on the rx thread; either holds the lock for the whole pass).
 */
struct tx_state {
	uint8_t *bufs; /* BATCH * TX_STRIDE */
	size_t lens[BATCH];
	uint8_t hdrs[TX_MAXSEG * GSO_HDR_MAX];
	struct gso_seg segs[TX_MAXSEG];
	struct iovec iov[2 * TX_MAXSEG + BATCH];
	struct mmsghdr msgs[TX_MAXMSG];
	union udp_addr dsts[TX_MAXMSG];
	uint16_t msg_segs[TX_MAXMSG]; /* datagrams each message carries */
	uint16_t msg_gso[TX_MAXMSG]; /* their size (the last may be shorter) */
	uint32_t msg_bytes[TX_MAXMSG];
	uint8_t msg_iovps[TX_MAXMSG]; /* iovecs per datagram: 2 for [header, payload] segments, 1 for packets as read */
	bool msg_open[TX_MAXMSG]; /* a message of packets as read that may take one more of the same size */
	union udp_cmsg_segment cm[TX_MAXMSG];
	int nseg, niov, nmsg;
	/* WireGuard mode: sealed datagrams of this batch (wbuf_used of WG_WBUF bytes) and the cipher contexts */
	uint8_t *wbuf;
	size_t wbuf_used;
	struct wg_txcache *wgc;
	uint64_t queued; /* datagrams handed to send_batch since the pass's caller last took the count */
};

/* One rx batch: under worker.rx_lock (the rx thread, or the tx thread serving the socket). */
struct rx_state {
	uint8_t *bufs; /* BATCH * BUFSZ */
	struct mmsghdr msgs[BATCH];
	struct iovec iov[BATCH];
	union udp_addr srcs[BATCH];
	union udp_cmsg_gro cm[BATCH];
	struct gro_pkt pkts[RX_MAXPKT];
	uint32_t next[RX_MAXPKT];
	struct gro_item items[RX_MAXPKT];
	struct iovec wiov[GRO_MAX_SEGS + 2];
	struct wg_rxrun wgr; /* WireGuard mode: the current run (wg.c) */
};

/* A route-table reader's RCU slot: its own thread writes it, the writer (routes.c) reads it. */
struct reader_slot {
	_Atomic uint64_t gen; /* generation seen on entering a read section; 0 outside one */
	char pad[64 - sizeof(uint64_t)]; /* keep the two readers off one cache line */
};

/* Low-rate busy polling (wait.c): one per thread, written by the other thread too; seq_cst, no lock. */
struct spin_slot {
	_Atomic uint64_t kick_at; /* CLOCK_MONOTONIC ns at which the other thread asked this one to spin; 0: none */
	_Atomic int asleep; /* this thread is (about to be) in poll() */
	_Atomic int busy; /* this thread's last rate window was above SPIN_MAX_RATE (relaxed) */
	_Atomic int served; /* the other thread serves this one's fd (wait.c): set and cleared by the other */
	int kick_fd; /* eventfd that wakes it from poll(); -1 without busy polling */
	char pad[64 - sizeof(uint64_t) - 4 * sizeof(int)];
};

/* Busy-polling state of one thread: that thread only. */
struct spin_local {
	uint64_t budget; /* ns this thread spins after a kick, adaptive */
	uint64_t win_start; /* rate window */
	uint64_t win_pkts;
	bool low_rate; /* the last window was under SPIN_MAX_RATE */
	uint64_t missed_kick; /* kick of the last spin that found nothing, 0 if none */
	uint64_t own_at; /* ns of this thread's last pass that moved packets of its own fd */
	uint64_t served_pkts; /* packets moved for the partner in the current window (serving) */
};

/*
 * One queue's worker pair: a TUN queue, a socket of the SO_REUSEPORT group,
 * a tx and an rx thread. Nothing in it is shared with another worker.
 * Fds, threads and buffers are set at open and closed at close (JS thread).
 */
struct worker {
	struct dp *dp;
	int tun_fd;
	int udp_fd;
	pthread_t tx_thread;
	pthread_t rx_thread;
	bool tx_started;
	bool rx_started;
	struct reader_slot readers[NREADERS]; /* READER_TX (under tx_lock), READER_RX (under rx_lock) */
	struct spin_slot spin[NREADERS]; /* indexed like readers */
	/*
	 * tx_lock guards `tx`, readers[READER_TX] and the order of TUN reads and
	 * UDP sends: held for a whole tx pass, by the tx thread or by the rx
	 * thread sending a reply (tx_reply_pass).
	 */
	pthread_mutex_t tx_lock;
	struct tx_state *tx;
	/*
	 * rx_lock guards `rx`, readers[READER_RX] and the order of UDP receives
	 * and TUN writes: held for a whole rx pass, by the rx thread or by the
	 * tx thread serving the socket (rx_serve_pass).
	 */
	pthread_mutex_t rx_lock;
	struct rx_state *rx;
};

struct dp {
	int stop_fd;
	/* Offloads in use, fixed at open (dp_open's detection) and read-only after. */
	struct dp_offloads off;
	struct dp_counters *c; /* shared with JS: atomic adds (dp_counters_flush), no lock */
	/* Local subnet, ICMP source and the ICMP rate limit (its own lock inside). */
	struct ip_ctx ip;

	struct worker *w; /* nalloc of them; the first nw run, one per TUN queue */
	unsigned nw, nalloc;

	/* The route table: readers load it lock-free inside a read section (rcu_enter). */
	_Atomic(struct rtable *) table;
	_Atomic uint64_t gen;
	_Atomic bool stopping; /* set by close, for a thread that is spinning */
	/* wlock serialises writers (dp_set_routes, close) and guards `retired`; never taken by readers. */
	pthread_mutex_t wlock;
	struct rtable *retired;
	/* The sockets' family, fixed at open: IPv6 (true) or IPv4; every endpoint in the table is of it. */
	bool v6_underlay;
	/* WireGuard mode (NULL in udp mode): set at open, see dataplane/wg.h. */
	struct wg_dev *wg;
};

/* ---- route table read sections (RCU-lite, see routes.c) ------------------- */

static inline const struct rtable *rcu_enter(struct worker *w, int r)
{
	struct dp *dp = w->dp;
	uint64_t g = atomic_load(&dp->gen);
	atomic_store(&w->readers[r].gen, g);
	return atomic_load(&dp->table);
}

static inline void rcu_exit(struct worker *w, int r)
{
	atomic_store(&w->readers[r].gen, 0);
}

/* routes.c: publishes t (caller holds dp->wlock) and frees retired tables no reader holds. */
void routes_publish(struct dp *dp, struct rtable *t);
/* routes.c: frees every table; only after the threads are joined. */
void routes_free_all(struct dp *dp);

/* ---- send.c / receive.c ---------------------------------------------------- */

void *tx_main(void *arg);
void *rx_main(void *arg);
/*
 * The rx thread's reply fast path: one tx pass if w->tx_lock is free right
 * now (else the tx thread is in a pass and will find the reply). Returns
 * false if stop was requested meanwhile.
 */
bool tx_reply_pass(struct worker *w, uint64_t *cnt, uint64_t *moved);
/*
 * The tx thread serving the socket (wait.c): one rx pass if w->rx_lock is
 * free right now, adding the packets it moved to *moved. Returns false if
 * stop was requested meanwhile.
 */
bool rx_serve_pass(struct worker *w, uint64_t *cnt, uint64_t *moved);

/* ---- wait.c: how a thread waits for work ----------------------------------- */

#define SPIN_START_NS 200000ull

enum wake { WAKE_WORK,
	WAKE_AGAIN,
	WAKE_STOP };

/*
 * A thread's wait for work on pf[0] (pf[1] is the stop eventfd, pf[2] and
 * pf[3] free for the kick eventfd and, serving, the other thread's fd): a
 * spin if the other thread of its pair asked for one, else, busy, a short
 * linger (counted in cnt: lingers, lingerFound) and then poll(); served,
 * only the kick and stop eventfds. WAKE_AGAIN: woken by a kick (spin next
 * round), a timeout or a transient poll error. *spun tells whether the work
 * was found spinning.
 */
enum wake wait_ready(struct worker *w, int me, struct spin_local *sl, struct pollfd *pf, bool *spun, uint64_t *cnt);
/* Thread `me` moved `npk` packets: at low rates, asks the other thread to spin for the reply. */
void spin_note(struct worker *w, int me, struct spin_local *sl, uint64_t npk, bool found_by_spin);
/* Whether the other thread of `me`'s worker is busy (above the spin rate): it finds its work unasked. */
bool spin_other_busy(struct worker *w, int me);
/* Whether thread `me` serves the other thread's fd now (it then runs the other's pass after its own). */
bool serving(struct worker *w, int me);
/* This thread moved `npk` packets for the other one while serving it: its rate, and servedPackets (flushed). */
void serve_note(struct dp *dp, struct spin_local *sl, uint64_t *cnt, uint64_t npk);
/* Sleeps up to ms unless stop is requested; returns true on stop. */
bool wait_stop(struct dp *dp, int ms);

#endif
