/*
 * The udp backend's data plane: IPv4 packets from the TUN device go to the
 * PublicIP:port of the route that covers their destination, inside one UDP
 * datagram each; datagrams from known peers go back into the TUN.
 *
 * Threads and locking (per worker, see Queues below; workers share only the
 * route table, the counters, the stop eventfd and the ICMP rate limit)
 *   - tx thread: TUN -> UDP. Reads the TUN until EAGAIN or BATCH reads (no
 *     batched read exists for a TUN), then one sendmmsg per batch. Writes
 *     generated ICMP errors into the TUN. Uses struct tx_state under
 *     w->tx_lock.
 *   - rx thread: UDP -> TUN. One recvmmsg per batch, one write per packet
 *     or coalesced super-packet. Owns struct rx_state. At low rates it also
 *     runs one tx pass after its writes if it gets w->tx_lock without
 *     waiting (the reply fast path, see rx_main): reads and sends stay in
 *     one order because a whole pass (reads, then sends) is under the lock.
 *   - the caller's thread (JS) opens, replaces routes and closes.
 *   Both fds are non-blocking; each thread sleeps in poll() on its fd plus a
 *   stop eventfd, so close wakes both at once without signals (and sets
 *   dp->stopping for a thread that is spinning), plus its own kick eventfd
 *   (busy polling, below). Offload state (dp->off) is written once in
 *   dp_open before the threads start and only read afterwards. w->spin[i]
 *   (kick_at, asleep) is written by both threads, seq_cst, no lock.
 *
 * Offloads (each detected at open, each with its own fallback; all off when
 * dp_config.offloads is false). The pure packet code is in native/offload/.
 *   - TUN TSO: the TUN is opened with IFF_VNET_HDR and TUNSETOFFLOAD
 *     (CSUM|TSO4|TSO6|TSO_ECN), so a read may be a TCP super-packet of up to
 *     64 KB behind a virtio_net_hdr. tx cuts it into gso_size segments
 *     (gso_tcp4_segment: per-segment IP length, ID + i, IP checksum, seq, CWR
 *     on the first only, PSH/FIN on the last only, full TCP checksum); the
 *     headers go into tx_state.hdrs and the payload stays where it was read,
 *     each datagram being an iovec pair [header, payload slice]: no copy.
 *     Non-GSO reads with NEEDS_CSUM get their checksum completed. Routing,
 *     the TTL check and decrement happen once on the super-packet's header,
 *     which every segment copies; drops count every segment. Fallback: a
 *     kernel refusing IFF_VNET_HDR gives a plain TUN, one refusing
 *     TUNSETOFFLOAD a TUN that never hands over super-packets.
 *   - UDP GSO: the datagrams of one super-packet go in one message with a
 *     UDP_SEGMENT cmsg (at most 64 segments and 65507 bytes each; the last
 *     may be shorter, as UDP GSO wants). Fallback: one message per datagram
 *     (still one sendmmsg per batch); a GSO message the kernel refuses at
 *     send time (EINVAL/EIO: MTU, no checksum offload) is sent datagram by
 *     datagram.
 *   - UDP GRO: recvmmsg gets up to 64 KB per message; a UDP_GRO cmsg gives
 *     the datagram size, and the message is split into its datagrams. Each
 *     inner packet is validated on its own (sender allow-list per message).
 *     Fallback: one datagram per message.
 *   - Coalescing (needs the TUN's virtio header): the valid packets of a
 *     batch go through gro_coalesce, which merges consecutive TCP segments
 *     of a flow as the kernel's GRO would; a merged group is written with
 *     one writev [virtio_net_hdr GSO_TCPV4 + NEEDS_CSUM, first packet,
 *     further payloads] straight from the receive buffers; everything else
 *     is written as it came behind a zeroed header. If the TUN refuses a
 *     super-packet, its packets are written one by one instead.
 *   - UDP coalescing (needs TUN_F_USO4|USO6, Linux >= 6.2; TUNSETOFFLOAD
 *     without them is the fallback): gro_coalesce with GRO_UDP also merges
 *     consecutive same-size datagrams of one UDP flow (last may be shorter,
 *     IP ID + 1, valid non-zero checksum) into one GSO_UDP_L4 super-packet,
 *     written like a TCP one: a stream of small datagrams costs one TUN write
 *     per group (up to 64) instead of one per datagram, and the kernel
 *     forwards the group as one skb, segmenting it where it must. With USO
 *     granted the TUN may also hand over UDP super-packets (local senders
 *     using UDP GSO): tx cuts them with gso_udp4_segment like TCP ones.
 *   - Queues: the TUN has dp->nw queues (IFF_MULTI_QUEUE; default one per
 *     CPU), each served by its own worker = tx thread + rx thread + socket
 *     of a SO_REUSEPORT group on the one port (struct worker; nothing in it
 *     is shared with another worker). The kernel keeps a flow on one TUN
 *     queue (its hash, then the queue its packets were last written from),
 *     and spreads received datagrams over the sockets by outer addresses
 *     and ports, so all of one peer's traffic reaches one rx thread in
 *     order: nothing is reordered. Fallback: a kernel refusing
 *     IFF_MULTI_QUEUE (or a further queue) gives fewer workers.
 *   Buffers are allocated once at open, per worker (tx: BATCH * 64 KB reads
 *   + segment headers; rx: BATCH * 64 KB + coalescer tables; pages an idle
 *   worker never touches stay unbacked); nothing per packet.
 *
 * Low-rate busy polling (dp_config.busy_poll; fallback: plain poll() when
 * its eventfds cannot be made)
 *   A request/response crossing the tunnel wakes a sleeping thread at every
 *   hop (socat, one process, finds its reply with its single poll). Here a
 *   thread that moved packets it was woken for (not ones it found spinning:
 *   a reply needs no reply) sets the other thread's kick_at and, if that one
 *   is asleep, writes its kick eventfd: the other thread then wakes while
 *   the packet travels and polls its fd with a zero timeout for up to its
 *   budget after the kick. The budget (20 us..1 ms, start 200 us) tracks 4x
 *   the waits that found a packet and doubles when a packet came soon after
 *   a spin gave up. Only at low rates: each thread measures its packet rate
 *   over 2 ms windows (datagrams: a TCP super-packet counts as the segments
 *   it becomes) and above 20k packets/s neither kicks nor spins when
 *   kicked (TCP's ACK direction alone must not make the data direction
 *   poll), where batching
 *   already amortises wake-ups and spinning would take CPU from the
 *   applications on a small machine. An idle daemon never spins (a spin
 *   needs a kick, a kick needs a packet). Cost: at most one budget of CPU
 *   per thread per request at low rates.
 *
 * Route table (design notes)
 *   An immutable struct rtable: entries sorted by prefix length (longest
 *   first) then network, grouped by prefix length, so a lookup is one binary
 *   search per distinct prefix length (usually one: every lease has the same
 *   length). The sorted set of peer PublicIPs sits in the same block, so the
 *   sender check and the route lookup always agree on one table.
 *   setRoutes builds a new table and swaps a single atomic pointer: readers
 *   never wait and hold no lock. Freeing the old table uses an RCU-lite
 *   scheme: a global generation counter, and per reader the generation it
 *   saw when it entered its read section (0 outside one). A reader enters
 *   once per batch, not per packet. After the swap the writer bumps the
 *   generation; a retired table may be freed once every reader is outside a
 *   section or inside one that started after the bump. Retired tables are
 *   reclaimed on the next setRoutes and at close, so the writer never blocks.
 *   All generation and pointer accesses are seq_cst: the argument that a
 *   reader which was seen idle cannot still hold the old pointer relies on
 *   the single total order of those operations.
 *
 * Counters
 *   Each thread counts into locals and adds them to the shared 64-bit
 *   atomics once per batch; JS reads the words directly (aligned 64-bit
 *   loads are atomic on the platforms Node supports).
 *
 * Robustness
 *   Nothing here exits or aborts: every bad packet is a counted drop, every
 *   failed system call a counted error; persistent fd errors back off
 *   instead of spinning.
 */
#define _GNU_SOURCE
#include "dataplane.h"

#include "common/bytes.h"
#include "offload/csum.h"
#include "offload/gro.h"
#include "offload/gso.h"
#include "common/sys.h"
#include "tun.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/udp.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#define BATCH 32
/* Any IPv4 packet fits, whatever MTU someone sets on the device later; pages never written stay unbacked. */
#define BUFSZ 65536
#define VNET_LEN sizeof(struct virtio_net_hdr)
/* A TUN read: virtio header + any IPv4 packet (a TCP super-packet is at most 64 KB too). */
#define TX_STRIDE (BUFSZ + 16)
/*
 * A tx pass stops reading at this many bytes (two TCP super-packets): the
 * reads, the segmentation and the send then work on data still in the cache,
 * where 32 reads of 64 KB would not be; small packets still batch 32.
 */
#define TX_BATCH_BYTES (128u << 10)
/* Messages per recvmmsg when UDP GRO may make each 64 KB (see rx_main); BATCH otherwise. */
#define RX_GRO_BATCH 8
/* Segments (and so datagrams) one tx batch may hold; a super-packet needing more is dropped as malformed. */
#define TX_MAXSEG 1024
#define TX_MAXMSG (TX_MAXSEG + BATCH)
/* UDP GSO limits: segments per sendmsg (UDP_MAX_SEGMENTS is 64 on older kernels) and bytes of one UDP payload. */
#define UDP_GSO_MAXSEGS 64
#define UDP_MAX_PAYLOAD 65507
/* Inner packets one rx batch may hold: the kernel's UDP GRO merges at most 64 datagrams. */
#define RX_MAXPKT (BATCH * 64)
#define NREADERS 2
#define READER_TX 0
#define READER_RX 1
/* Like Linux's icmp_msgs_per_sec / icmp_msgs_burst. */
#define ICMP_RATE 1000
#define ICMP_BURST 50
/* RFC 1812 4.3.2.3: an ICMP error should not exceed 576 bytes. */
#define ICMP_MAX 576

const char *const dp_counter_names[DP_NCOUNTERS] = {
	[DP_TX_PACKETS] = "txPackets",
	[DP_TX_BYTES] = "txBytes",
	[DP_RX_PACKETS] = "rxPackets",
	[DP_RX_BYTES] = "rxBytes",
	[DP_DROP_NO_ROUTE] = "dropNoRoute",
	[DP_DROP_UNKNOWN_SENDER] = "dropUnknownSender",
	[DP_DROP_MALFORMED] = "dropMalformed",
	[DP_DROP_TTL] = "dropTtl",
	[DP_DROP_NOT_LOCAL] = "dropNotLocal",
	[DP_TUN_ERRORS] = "tunErrors",
	[DP_SOCKET_ERRORS] = "socketErrors",
	[DP_ICMP_SENT] = "icmpSent",
	[DP_DROP_NOT_IPV4] = "dropNotIPv4",
	[DP_TX_GSO_PACKETS] = "txGsoPackets",
	[DP_RX_GRO_PACKETS] = "rxGroPackets",
};

/* tx thread only: one batch of datagrams to send, built from up to BATCH TUN reads. */
struct tx_state {
	uint8_t *bufs; /* BATCH * TX_STRIDE */
	size_t lens[BATCH];
	uint8_t hdrs[TX_MAXSEG * GSO_HDR_MAX];
	struct gso_seg segs[TX_MAXSEG];
	struct iovec iov[2 * TX_MAXSEG + BATCH];
	struct mmsghdr msgs[TX_MAXMSG];
	struct sockaddr_in dsts[TX_MAXMSG];
	uint16_t msg_segs[TX_MAXMSG]; /* datagrams each message carries */
	uint16_t msg_gso[TX_MAXMSG];  /* their size (the last may be shorter) */
	uint32_t msg_bytes[TX_MAXMSG];
	uint8_t msg_iovps[TX_MAXMSG]; /* iovecs per datagram: 2 for [header, payload] segments, 1 for packets as read */
	bool msg_open[TX_MAXMSG];     /* a message of packets as read that may take one more of the same size */
	union {
		char buf[CMSG_SPACE(sizeof(uint16_t))];
		struct cmsghdr align;
	} cm[TX_MAXMSG];
	int nseg, niov, nmsg;
	uint64_t queued; /* datagrams handed to send_batch since the tx loop last took the count */
};

/* rx thread only. */
struct rx_state {
	uint8_t *bufs; /* BATCH * BUFSZ */
	struct mmsghdr msgs[BATCH];
	struct iovec iov[BATCH];
	struct sockaddr_in srcs[BATCH];
	union {
		char buf[CMSG_SPACE(sizeof(int))];
		struct cmsghdr align;
	} cm[BATCH];
	struct gro_pkt pkts[RX_MAXPKT];
	uint32_t next[RX_MAXPKT];
	struct gro_item items[RX_MAXPKT];
	struct iovec wiov[GRO_MAX_SEGS + 2];
};

struct rt_entry {
	uint32_t net;
	struct sockaddr_in dst;
};

struct rt_group {
	uint32_t mask;
	uint32_t start;
	uint32_t count;
};

struct rtable {
	uint32_t ngroups;
	uint32_t npeers;
	struct rt_group groups[33];
	struct rt_entry *entries;
	uint32_t *peers;
	/* writer-only bookkeeping once retired */
	struct rtable *next_retired;
	uint64_t retired_gen;
};

struct reader_slot {
	_Atomic uint64_t gen;
	char pad[64 - sizeof(uint64_t)]; /* keep the two readers off one cache line */
};

/* Low-rate busy polling (see the design notes): one per thread, written by the other thread. */
struct spin_slot {
	_Atomic uint64_t kick_at; /* CLOCK_MONOTONIC ns at which the other thread asked this one to spin; 0: none */
	_Atomic int asleep;        /* this thread is (about to be) in poll() */
	int kick_fd;               /* eventfd that wakes it from poll(); -1 without busy polling */
	char pad[64 - sizeof(uint64_t) - 2 * sizeof(int)];
};

/* Thread-local state of busy polling. */
struct spin_local {
	uint64_t budget;     /* ns this thread spins after a kick, adaptive */
	uint64_t win_start;  /* rate window */
	uint64_t win_pkts;
	bool low_rate;       /* the last window was under SPIN_MAX_RATE */
	uint64_t missed_kick; /* kick of the last spin that found nothing, 0 if none */
};

/*
 * One queue's worker pair: a TUN queue, a socket of the SO_REUSEPORT group,
 * a tx and an rx thread. Nothing in it is shared with another worker.
 */
struct worker {
	struct dp *dp;
	int tun_fd;
	int udp_fd;
	pthread_t tx_thread;
	pthread_t rx_thread;
	bool tx_started;
	bool rx_started;
	struct reader_slot readers[NREADERS]; /* READER_TX, READER_RX */
	struct spin_slot spin[NREADERS];      /* indexed like readers */
	pthread_mutex_t tx_lock; /* held for a tx pass: by tx, or by rx sending a reply (see rx_main) */
	struct tx_state *tx;
	struct rx_state *rx;
};

struct dp {
	int stop_fd;
	uint32_t local_net;
	uint32_t local_mask;
	uint32_t icmp_source;
	uint32_t mtu; /* validated only: buffers take any IPv4 packet or 64 KB super-packet; segments follow the sender's gso_size */
	/* Offloads in use, fixed at open (dp_open's detection) and read-only after. */
	struct dp_offloads off;
	struct dp_counters *c;

	struct worker *w; /* nalloc of them; the first nw run, one per TUN queue */
	unsigned nw, nalloc;

	_Atomic(struct rtable *) table;
	_Atomic uint64_t gen;
	_Atomic bool stopping;
	pthread_mutex_t wlock; /* serialises writers (setRoutes, close); never taken by readers */
	struct rtable *retired;

	/* ICMP rate limit and IP ids, shared by every worker's tx passes (rare: a lock is fine) */
	pthread_mutex_t icmp_lock;
	double icmp_tokens;
	struct timespec icmp_last;
	uint16_t icmp_id;
};

/* ---- small helpers ---------------------------------------------------- */

static inline uint32_t mask_of(unsigned prefix)
{
	return prefix == 0 ? 0 : 0xffffffffu << (32 - prefix);
}

static bool is_martian_src(uint32_t a)
{
	return a == 0 || a == 0xffffffffu || (a >> 28) == 0xe || (a >> 24) == 127;
}

static bool is_bcast_or_mcast(uint32_t a)
{
	return a == 0xffffffffu || (a >> 28) == 0xe;
}

static void counters_flush(struct dp *dp, uint64_t *local)
{
	for (int i = 0; i < DP_NCOUNTERS; i++) {
		if (local[i]) {
			atomic_fetch_add_explicit(&dp->c->v[i], local[i], memory_order_relaxed);
			local[i] = 0;
		}
	}
}

static int errf(char *err, size_t errlen, int e, const char *fmt, const char *arg)
{
	char what[128];
	snprintf(what, sizeof what, fmt, arg);
	const char *en = strerrorname_np(e);
	snprintf(err, errlen, "%s: %s (%s)", what, strerror(e), en ? en : "?");
	return -e;
}

/* ---- route table ------------------------------------------------------- */

static const struct rt_entry *rt_lookup(const struct rtable *t, uint32_t dst)
{
	for (uint32_t g = 0; g < t->ngroups; g++) {
		const struct rt_group *gr = &t->groups[g];
		uint32_t key = dst & gr->mask;
		const struct rt_entry *e = t->entries + gr->start;
		uint32_t lo = 0, hi = gr->count;
		while (lo < hi) {
			uint32_t mid = lo + (hi - lo) / 2;
			if (e[mid].net == key)
				return &e[mid];
			if (e[mid].net < key)
				lo = mid + 1;
			else
				hi = mid;
		}
	}
	return NULL;
}

static bool rt_is_peer(const struct rtable *t, uint32_t ip)
{
	uint32_t lo = 0, hi = t->npeers;
	while (lo < hi) {
		uint32_t mid = lo + (hi - lo) / 2;
		if (t->peers[mid] == ip)
			return true;
		if (t->peers[mid] < ip)
			lo = mid + 1;
		else
			hi = mid;
	}
	return false;
}

struct rt_build {
	uint32_t net;
	uint8_t prefix;
	uint32_t public_ip;
	uint16_t port;
};

static int rt_build_cmp(const void *a, const void *b)
{
	const struct rt_build *x = a, *y = b;
	if (x->prefix != y->prefix)
		return x->prefix > y->prefix ? -1 : 1;
	if (x->net != y->net)
		return x->net < y->net ? -1 : 1;
	return 0;
}

static int u32_cmp(const void *a, const void *b)
{
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
	return x < y ? -1 : x > y;
}

static void rt_free(struct rtable *t)
{
	free(t);
}

/* One allocation: header, entries, peers. */
static int rt_new(const struct dp_route *routes, size_t n, struct rtable **out, char *err, size_t errlen)
{
	if (n > 1000000) {
		snprintf(err, errlen, "route table too large (%zu entries)", n);
		return -E2BIG;
	}
	struct rt_build *tmp = NULL;
	if (n) {
		tmp = malloc(n * sizeof *tmp);
		if (!tmp)
			return errf(err, errlen, ENOMEM, "route table%s", "");
	}
	for (size_t i = 0; i < n; i++) {
		const struct dp_route *r = &routes[i];
		if (r->prefix > 32 || r->port == 0 || r->public_ip == 0) {
			struct in_addr a = {htonl(r->net)};
			snprintf(err, errlen, "invalid route %zu (%s/%u via port %u): prefix must be 0..32, port 1..65535, PublicIP not 0",
				 i, inet_ntoa(a), r->prefix, r->port);
			free(tmp);
			return -EINVAL;
		}
		tmp[i].net = r->net & mask_of(r->prefix);
		tmp[i].prefix = r->prefix;
		tmp[i].public_ip = r->public_ip;
		tmp[i].port = r->port;
	}
	if (n)
		qsort(tmp, n, sizeof *tmp, rt_build_cmp);
	for (size_t i = 1; i < n; i++) {
		if (rt_build_cmp(&tmp[i - 1], &tmp[i]) == 0) {
			struct in_addr a = {htonl(tmp[i].net)};
			snprintf(err, errlen, "duplicate route for %s/%u", inet_ntoa(a), tmp[i].prefix);
			free(tmp);
			return -EINVAL;
		}
	}

	size_t sz = sizeof(struct rtable) + n * sizeof(struct rt_entry) + n * sizeof(uint32_t);
	struct rtable *t = calloc(1, sz);
	if (!t) {
		free(tmp);
		return errf(err, errlen, ENOMEM, "route table%s", "");
	}
	t->entries = (struct rt_entry *)(t + 1);
	t->peers = (uint32_t *)(t->entries + n);
	for (size_t i = 0; i < n; i++) {
		struct rt_entry *e = &t->entries[i];
		e->net = tmp[i].net;
		e->dst.sin_family = AF_INET;
		e->dst.sin_addr.s_addr = htonl(tmp[i].public_ip);
		e->dst.sin_port = htons(tmp[i].port);
		if (i == 0 || tmp[i].prefix != tmp[i - 1].prefix) {
			struct rt_group *g = &t->groups[t->ngroups++];
			g->mask = mask_of(tmp[i].prefix);
			g->start = (uint32_t)i;
		}
		t->groups[t->ngroups - 1].count++;
		t->peers[i] = tmp[i].public_ip;
	}
	free(tmp);
	if (n) {
		qsort(t->peers, n, sizeof(uint32_t), u32_cmp);
		uint32_t k = 1;
		for (size_t i = 1; i < n; i++)
			if (t->peers[i] != t->peers[k - 1])
				t->peers[k++] = t->peers[i];
		t->npeers = k;
	}
	*out = t;
	return 0;
}

/* ---- RCU-lite ----------------------------------------------------------- */

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

/* Caller holds wlock. */
static void rcu_reclaim(struct dp *dp)
{
	struct rtable **pp = &dp->retired;
	while (*pp) {
		struct rtable *t = *pp;
		bool busy = false;
		for (unsigned k = 0; k < dp->nw; k++) {
			for (int r = 0; r < NREADERS; r++) {
				uint64_t g = atomic_load(&dp->w[k].readers[r].gen);
				if (g != 0 && g <= t->retired_gen)
					busy = true;
			}
		}
		if (busy) {
			pp = &t->next_retired;
		} else {
			*pp = t->next_retired;
			rt_free(t);
		}
	}
}

int dp_set_routes(struct dp *dp, const struct dp_route *routes, size_t n, char *err, size_t errlen)
{
	struct rtable *t;
	int rc = rt_new(routes, n, &t, err, errlen);
	if (rc)
		return rc;
	pthread_mutex_lock(&dp->wlock);
	struct rtable *old = atomic_exchange(&dp->table, t);
	/* Readers that may still hold `old` saw a generation <= the one before this bump. */
	old->retired_gen = atomic_fetch_add(&dp->gen, 1);
	old->next_retired = dp->retired;
	dp->retired = old;
	rcu_reclaim(dp);
	pthread_mutex_unlock(&dp->wlock);
	return 0;
}

/* ---- packet handling ---------------------------------------------------- */

static const struct virtio_net_hdr zero_vnet;

/* Writes one packet to the TUN (behind a zero virtio header when the device has them). */
static ssize_t tun_write1(struct worker *w, const void *pkt, size_t len)
{
	struct dp *dp = w->dp;
	struct iovec v[2] = {{(void *)&zero_vnet, VNET_LEN}, {(void *)pkt, len}};
	ssize_t r;
	do
		r = dp->off.tun_vnet_hdr ? sys_writev(w->tun_fd, v, 2) : sys_write(w->tun_fd, pkt, len);
	while (r < 0 && errno == EINTR);
	return r;
}

static bool icmp_take_token(struct dp *dp)
{
	struct timespec now;
	clock_gettime(CLOCK_MONOTONIC, &now);
	double dt = (double)(now.tv_sec - dp->icmp_last.tv_sec) + (double)(now.tv_nsec - dp->icmp_last.tv_nsec) / 1e9;
	dp->icmp_last = now;
	dp->icmp_tokens += dt * ICMP_RATE;
	if (dp->icmp_tokens > ICMP_BURST)
		dp->icmp_tokens = ICMP_BURST;
	if (dp->icmp_tokens < 1.0)
		return false;
	dp->icmp_tokens -= 1.0;
	return true;
}

static bool is_icmp_error_type(uint8_t type)
{
	return type == 3 || type == 4 || type == 5 || type == 11 || type == 12;
}

/*
 * `orig` is a structurally valid IPv4 packet of `len` bytes (header checked by
 * the caller); for a TCP super-packet one error answers all its segments, as
 * the kernel does for a GSO packet it cannot forward.
 */
static void icmp_error(struct worker *w, const uint8_t *orig, size_t len, uint8_t type, uint8_t code,
		       uint64_t *cnt)
{
	struct dp *dp = w->dp;
	size_t ihl = (size_t)(orig[0] & 0xf) * 4;
	/* RFC 1122 3.2.2: never about non-first fragments, ICMP errors, broadcast or multicast. */
	if (get16(orig + 6) & 0x1fff)
		return;
	uint32_t saddr = get32(orig + 12), daddr = get32(orig + 16);
	if (is_martian_src(saddr) || is_bcast_or_mcast(daddr))
		return;
	if (orig[9] == 1 && (len <= ihl || is_icmp_error_type(orig[ihl])))
		return;
	if (dp->icmp_source == 0)
		return;
	pthread_mutex_lock(&dp->icmp_lock);
	bool allowed = icmp_take_token(dp);
	uint16_t id = dp->icmp_id++;
	pthread_mutex_unlock(&dp->icmp_lock);
	if (!allowed)
		return;

	uint8_t pkt[ICMP_MAX];
	size_t quote = len < ICMP_MAX - 28 ? len : ICMP_MAX - 28;
	size_t tot = 28 + quote;
	memset(pkt, 0, 28);
	pkt[0] = 0x45;
	pkt[1] = 0xc0; /* internetwork control, as routers mark ICMP errors */
	put16(pkt + 2, (uint16_t)tot);
	put16(pkt + 4, id);
	pkt[8] = 64;
	pkt[9] = 1;
	put32(pkt + 12, dp->icmp_source);
	put32(pkt + 16, saddr);
	ip4_csum_set(pkt);
	pkt[20] = type;
	pkt[21] = code;
	memcpy(pkt + 28, orig, quote);
	put16(pkt + 22, (uint16_t)~csum_fold16(csum_acc(pkt + 20, 8 + quote, 0)));

	if (tun_write1(w, pkt, tot) < 0)
		cnt[DP_TUN_ERRORS]++;
	else
		cnt[DP_ICMP_SENT]++;
}

/* RFC 1624 eqn. 3: HC' = ~(~HC + ~m + m'), m = the 16-bit word holding TTL. */
static void ttl_decrement(uint8_t *h)
{
	uint16_t m = get16(h + 8);
	h[8]--;
	uint16_t m2 = get16(h + 8);
	uint32_t sum = (uint32_t)(uint16_t)~get16(h + 10) + (uint16_t)~m + m2;
	sum = (sum & 0xffff) + (sum >> 16);
	sum = (sum & 0xffff) + (sum >> 16);
	put16(h + 10, (uint16_t)~sum);
}

/*
 * Returns true if the packet is to be sent to *dst (TTL already decremented).
 * `wire` is how many packets it stands for (a super-packet's segment count),
 * so drops are counted per packet that would have been on the wire. The TTL
 * of a super-packet is decremented once in the headers every segment copies.
 */
static bool tx_packet(struct worker *w, const struct rtable *t, uint8_t *p, size_t len, struct sockaddr_in *dst,
		      uint64_t wire, uint64_t *cnt)
{
	if (len < 1 || (p[0] >> 4) != 4) {
		cnt[DP_DROP_NOT_IPV4] += wire;
		return false;
	}
	size_t ihl = (size_t)(p[0] & 0xf) * 4;
	if (len < 20 || ihl < 20 || ihl > len || get16(p + 2) != len) {
		cnt[DP_DROP_MALFORMED] += wire;
		return false;
	}
	const struct rt_entry *e = rt_lookup(t, get32(p + 16));
	if (!e) {
		cnt[DP_DROP_NO_ROUTE] += wire;
		icmp_error(w, p, len, 3, 0, cnt);
		return false;
	}
	if (p[8] <= 1) {
		cnt[DP_DROP_TTL] += wire;
		icmp_error(w, p, len, 11, 0, cnt);
		return false;
	}
	ttl_decrement(p);
	*dst = e->dst;
	return true;
}

/* Validates one inner packet from a peer (the sender was checked by the caller). */
static bool rx_packet(struct dp *dp, const uint8_t *p, size_t len, bool truncated, uint64_t *cnt)
{
	size_t ihl = len ? (size_t)(p[0] & 0xf) * 4 : 0;
	if (truncated || len < 20 || (p[0] >> 4) != 4 || ihl < 20 || ihl > len || get16(p + 2) != len ||
	    !ip4_csum_ok(p) || (get16(p + 6) & 0x8000) ||
	    (size_t)(get16(p + 6) & 0x1fff) * 8 + len > 65535 || is_martian_src(get32(p + 12))) {
		cnt[DP_DROP_MALFORMED]++;
		return false;
	}
	if (p[8] == 0) {
		cnt[DP_DROP_TTL]++;
		return false;
	}
	if ((get32(p + 16) & dp->local_mask) != dp->local_net) {
		cnt[DP_DROP_NOT_LOCAL]++;
		return false;
	}
	return true;
}

/* ---- low-rate busy polling ------------------------------------------------ */

#define NS_PER_S 1000000000ull
#define SPIN_MIN_NS 20000ull
#define SPIN_MAX_NS 1000000ull
#define SPIN_START_NS 200000ull
#define SPIN_WINDOW_NS 2000000ull
/* Packets per second of one thread above which nobody spins: batching amortises wake-ups there. */
#define SPIN_MAX_RATE 20000ull

static uint64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * NS_PER_S + (uint64_t)ts.tv_nsec;
}

/*
 * Thread `me` just moved `npk` packets. At a low rate, and unless it found
 * them by spinning (a reply does not call for another reply), the other
 * thread is asked to spin for what will likely come back, and woken now if
 * asleep: its wake-up then overlaps the packet's trip instead of following it.
 */
static void spin_note(struct worker *w, int me, struct spin_local *sl, uint64_t npk, bool found_by_spin)
{
	struct dp *dp = w->dp;
	if (!dp->off.busy_poll || npk == 0)
		return;
	uint64_t now = now_ns();
	sl->win_pkts += npk;
	uint64_t el = now - sl->win_start;
	if (el >= SPIN_WINDOW_NS) {
		sl->low_rate = sl->win_pkts * NS_PER_S <= SPIN_MAX_RATE * el;
		sl->win_start = now;
		sl->win_pkts = 0;
	}
	if (!sl->low_rate || found_by_spin)
		return;
	struct spin_slot *o = &w->spin[1 - me];
	atomic_store(&o->kick_at, now);
	if (atomic_load(&o->asleep)) {
		uint64_t one = 1;
		if (write(o->kick_fd, &one, sizeof one) < 0) {
			/* overflow only: it is readable anyway */
		}
	}
}

/*
 * If the other thread asked this one to spin, polls `fd` without sleeping
 * until it is readable (true) or the budget since the kick is spent (false).
 * The budget follows 4x the waits that found something (EWMA), doubles when
 * a packet came soon after a spin gave up, and stays within
 * [SPIN_MIN_NS, SPIN_MAX_NS].
 */
static bool spin_wait(struct worker *w, int me, struct spin_local *sl, int fd)
{
	struct dp *dp = w->dp;
	if (!dp->off.busy_poll)
		return false;
	uint64_t kick = atomic_exchange(&w->spin[me].kick_at, 0);
	if (kick == 0 || !sl->low_rate) /* a busy thread finds work anyway: spinning would only take CPU */
		return false;
	uint64_t deadline = kick + sl->budget, now = now_ns();
	struct pollfd pf = {.fd = fd, .events = POLLIN};
	while (now < deadline && !atomic_load_explicit(&dp->stopping, memory_order_relaxed)) {
		if (poll(&pf, 1, 0) > 0) {
			uint64_t b = (3 * sl->budget + 4 * (now - kick)) / 4;
			sl->budget = b < SPIN_MIN_NS ? SPIN_MIN_NS : b > SPIN_MAX_NS ? SPIN_MAX_NS : b;
			sl->missed_kick = 0;
			return true;
		}
		now = now_ns();
	}
	sl->missed_kick = kick;
	return false;
}

/* Woken from poll() with data: a packet soon after a spin gave up means the budget was too short. */
static void spin_woke(struct dp *dp, struct spin_local *sl)
{
	if (!dp->off.busy_poll || sl->missed_kick == 0)
		return;
	if (now_ns() - sl->missed_kick < 8 * sl->budget)
		sl->budget = sl->budget * 2 > SPIN_MAX_NS ? SPIN_MAX_NS : sl->budget * 2;
	sl->missed_kick = 0;
}

/*
 * Sleeps in poll() on pf[0..n) (data fd, stop eventfd) plus this thread's
 * kick eventfd. Returns poll's result; *kicked is set when the kick woke it
 * (drained here), so the caller spins instead of reading.
 */
static int sleep_poll(struct worker *w, int me, struct pollfd *pf, bool *kicked)
{
	struct dp *dp = w->dp;
	*kicked = false;
	struct spin_slot *s = &w->spin[me];
	if (!dp->off.busy_poll)
		return poll(pf, 2, -1);
	atomic_store(&s->asleep, 1);
	if (atomic_load(&s->kick_at) != 0) { /* kicked between the spin check and here */
		atomic_store(&s->asleep, 0);
		*kicked = true;
		return 0;
	}
	pf[2].fd = s->kick_fd;
	pf[2].events = POLLIN;
	pf[2].revents = 0;
	int pr = poll(pf, 3, -1);
	atomic_store(&s->asleep, 0);
	if (pr > 0 && pf[2].revents) {
		uint64_t v;
		if (read(s->kick_fd, &v, sizeof v) < 0) {
			/* EAGAIN: someone drained it already */
		}
		*kicked = !pf[0].revents && !pf[1].revents;
	}
	return pr;
}

/* ---- threads ------------------------------------------------------------ */

/* Sleeps up to ms unless stop is requested; returns true on stop. */
static bool wait_stop(struct dp *dp, int ms)
{
	struct pollfd pf = {.fd = dp->stop_fd, .events = POLLIN};
	return poll(&pf, 1, ms) > 0;
}

enum wake { WAKE_WORK, WAKE_AGAIN, WAKE_STOP };

/*
 * A thread's wait for work on pf[0] (pf[1] is the stop eventfd): a spin if
 * the other thread of its pair asked for one, else poll(). WAKE_AGAIN: woken
 * by a kick (spin next round) or a transient poll error. *spun tells whether
 * the work was found spinning (busy polling's rate bookkeeping needs it).
 */
static enum wake wait_ready(struct worker *w, int me, struct spin_local *sl, struct pollfd *pf, bool *spun)
{
	*spun = spin_wait(w, me, sl, pf[0].fd);
	if (*spun)
		return WAKE_WORK;
	bool kicked;
	int pr = sleep_poll(w, me, pf, &kicked);
	if (pr < 0)
		return errno != EINTR && wait_stop(w->dp, 100) ? WAKE_STOP : WAKE_AGAIN;
	if (pf[1].revents)
		return WAKE_STOP;
	if (kicked)
		return WAKE_AGAIN;
	spin_woke(w->dp, sl);
	return WAKE_WORK;
}


/*
 * A UDP GSO message the kernel refused outright (e.g. EINVAL when a segment
 * does not fit the route's MTU, EIO without checksum offload on the way):
 * its datagrams go one by one, each [header, payload] pair of its iovec.
 */
static void send_segments_singly(struct worker *w, struct tx_state *st, int m, uint64_t *cnt)
{
	struct msghdr *mh = &st->msgs[m].msg_hdr;
	size_t step = st->msg_iovps[m];
	for (size_t k = 0; k + step <= mh->msg_iovlen; k += step) {
		struct msghdr one = {.msg_name = mh->msg_name, .msg_namelen = mh->msg_namelen,
				     .msg_iov = mh->msg_iov + k, .msg_iovlen = step};
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
				return false;
			}
			continue;
		}
		if (st->msg_segs[sent] > 1 && r < 0 && errno != EAGAIN && errno != ENOBUFS) {
			send_segments_singly(w, st, sent, cnt);
		} else {
			/* This datagram failed (no route to the peer, firewall, ...): count it and go on. */
			cnt[DP_SOCKET_ERRORS] += st->msg_segs[sent];
		}
		sent++;
		stalls = 0;
	}
	st->nseg = st->niov = st->nmsg = 0;
	return true;
}

/* Marks message m as a UDP GSO message of gso_size datagrams (the kernel cuts it; the last may be shorter). */
static void tx_set_gso(struct tx_state *st, int m, uint16_t gso_size)
{
	struct msghdr *mh = &st->msgs[m].msg_hdr;
	mh->msg_control = st->cm[m].buf;
	mh->msg_controllen = sizeof st->cm[m].buf;
	struct cmsghdr *c = CMSG_FIRSTHDR(mh);
	c->cmsg_level = SOL_UDP;
	c->cmsg_type = UDP_SEGMENT;
	c->cmsg_len = CMSG_LEN(sizeof(uint16_t));
	memcpy(CMSG_DATA(c), &gso_size, sizeof gso_size);
}

static void tx_add_msg(struct tx_state *st, const struct sockaddr_in *dst, int iov0, int niov, uint16_t nsegs,
		       uint16_t gso_size, uint32_t bytes)
{
	int m = st->nmsg++;
	struct msghdr *mh = &st->msgs[m].msg_hdr;
	st->dsts[m] = *dst;
	memset(mh, 0, sizeof *mh);
	mh->msg_name = &st->dsts[m];
	mh->msg_namelen = sizeof st->dsts[m];
	mh->msg_iov = &st->iov[iov0];
	mh->msg_iovlen = (size_t)niov;
	st->msg_segs[m] = nsegs;
	st->msg_gso[m] = gso_size;
	st->msg_bytes[m] = bytes;
	st->msg_iovps[m] = nsegs > 0 && niov > nsegs ? 2 : 1;
	st->msg_open[m] = false;
	if (nsegs > 1)
		tx_set_gso(st, m, gso_size);
}

/*
 * Packets read one by one (small ones, or any without TUN offloads) to the
 * peer of the batch's last message join that message as further UDP GSO
 * datagrams while they have its first datagram's size (a shorter one joins
 * and closes it): a stream of small packets then crosses the sending stack,
 * the underlay and the peer's GRO socket as one skb per group instead of one
 * per packet, which is most of what a small packet costs here.
 */
static bool tx_append_plain(struct tx_state *st, const struct sockaddr_in *dst, uint8_t *p, size_t len)
{
	int m = st->nmsg - 1;
	if (m < 0 || !st->msg_open[m] || st->dsts[m].sin_addr.s_addr != dst->sin_addr.s_addr ||
	    st->dsts[m].sin_port != dst->sin_port || st->msg_segs[m] >= UDP_GSO_MAXSEGS || len > st->msg_gso[m] ||
	    st->msg_bytes[m] + len > UDP_MAX_PAYLOAD)
		return false;
	struct msghdr *mh = &st->msgs[m].msg_hdr;
	if (mh->msg_iov + mh->msg_iovlen != &st->iov[st->niov]) /* only the newest message can grow in place */
		return false;
	st->iov[st->niov].iov_base = p;
	st->iov[st->niov++].iov_len = len;
	mh->msg_iovlen++;
	if (++st->msg_segs[m] == 2)
		tx_set_gso(st, m, st->msg_gso[m]);
	st->msg_bytes[m] += (uint32_t)len;
	if (len < st->msg_gso[m])
		st->msg_open[m] = false;
	return true;
}

/*
 * One TUN read: checks and routes it, completes a partial checksum, cuts a
 * TCP super-packet into MTU-sized segments (headers in st->hdrs, payload
 * left in place) and queues the datagrams, as UDP GSO messages where the
 * socket allows. Returns false if stop was requested during a flush.
 */
static bool tx_one(struct worker *w, const struct rtable *t, struct tx_state *st, uint8_t *buf, size_t len, uint64_t *cnt)
{
	struct dp *dp = w->dp;
	struct virtio_net_hdr vh;
	memset(&vh, 0, sizeof vh);
	uint8_t *p = buf;
	if (dp->off.tun_vnet_hdr) {
		if (len < VNET_LEN) {
			cnt[DP_DROP_MALFORMED]++;
			return true;
		}
		memcpy(&vh, buf, VNET_LEN);
		p += VNET_LEN;
		len -= VNET_LEN;
	}
	struct sockaddr_in dst;
	uint8_t gso = vh.gso_type & (uint8_t)~VIRTIO_NET_HDR_GSO_ECN;
	if (gso == VIRTIO_NET_HDR_GSO_NONE) {
		if ((vh.flags & VIRTIO_NET_HDR_F_NEEDS_CSUM) && len >= 1 && (p[0] >> 4) == 4 &&
		    !gso_complete_csum(p, len, vh.csum_start, vh.csum_offset)) {
			cnt[DP_DROP_MALFORMED]++;
			return true;
		}
		if (!tx_packet(w, t, p, len, &dst, 1, cnt))
			return true;
		if (dp->off.udp_gso && tx_append_plain(st, &dst, p, len))
			return true;
		if (st->nmsg + 1 > TX_MAXMSG && !send_batch(w, st, cnt))
			return false;
		st->iov[st->niov].iov_base = p;
		st->iov[st->niov].iov_len = len;
		tx_add_msg(st, &dst, st->niov++, 1, 1, (uint16_t)len, (uint32_t)len);
		st->msg_open[st->nmsg - 1] = true;
		return true;
	}
	bool udp = gso == VIRTIO_NET_HDR_GSO_UDP_L4 && dp->off.tun_uso;
	if (gso != VIRTIO_NET_HDR_GSO_TCPV4 && !udp) {
		/* TCPv6 super-packets (IPv6 is not carried) or a GSO type never asked for. */
		cnt[gso == VIRTIO_NET_HDR_GSO_TCPV6 ? DP_DROP_NOT_IPV4 : DP_DROP_MALFORMED]++;
		return true;
	}
	/* A UDP super-packet's (UDP GSO sender) checksum field holds the pseudo-header sum: each segment gets a full one. */
	size_t n = udp ? gso_udp4_count(p, len, vh.gso_size) : gso_tcp4_count(p, len, vh.gso_size);
	if (n == 0 || n > TX_MAXSEG) {
		cnt[(len >= 1 && (p[0] >> 4) != 4) ? DP_DROP_NOT_IPV4 : DP_DROP_MALFORMED]++;
		return true;
	}
	if (!tx_packet(w, t, p, len, &dst, n, cnt))
		return true;
	if ((st->nseg + (int)n > TX_MAXSEG || st->nmsg + (int)n > TX_MAXMSG) && !send_batch(w, st, cnt))
		return false;
	struct gso_seg *segs = &st->segs[st->nseg];
	uint8_t *hdrs = st->hdrs + (size_t)st->nseg * GSO_HDR_MAX;
	int k = udp ? gso_udp4_segment(p, len, vh.gso_size, hdrs, segs, (int)n)
		    : gso_tcp4_segment(p, len, vh.gso_size, hdrs, segs, (int)n);
	if (k <= 0) { /* cannot happen after gso_tcp4_count, but never trust it blindly */
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
			st->iov[st->niov].iov_base = segs[j].hdr;
			st->iov[st->niov++].iov_len = segs[j].hdr_len;
			st->iov[st->niov].iov_base = (void *)segs[j].pay;
			st->iov[st->niov++].iov_len = segs[j].pay_len;
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
enum tx_pass { TX_DRAINED, TX_MORE, TX_STOP, TX_BROKEN };

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
	counters_flush(dp, cnt);
	return !running ? TX_STOP : broken ? TX_BROKEN : more ? TX_MORE : TX_DRAINED;
}

static void *tx_main(void *arg)
{
	struct worker *w = arg;
	struct dp *dp = w->dp;
	uint64_t cnt[DP_NCOUNTERS] = {0};
	struct pollfd pf[3] = {{.fd = w->tun_fd, .events = POLLIN}, {.fd = dp->stop_fd, .events = POLLIN}, {.fd = -1}};
	struct spin_local sl = {.budget = SPIN_START_NS, .low_rate = true};

	for (;;) {
		bool spun;
		enum wake wk = wait_ready(w, READER_TX, &sl, pf, &spun);
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
		/* A TUN whose device vanished stays readable-with-error: do not spin on it. */
		if (r == TX_BROKEN && wait_stop(dp, 100))
			break;
	}
	return NULL;
}

/* Writes one coalescer item to the TUN: a super-packet behind its virtio header, or one packet as it came. */
static void rx_write_item(struct worker *w, struct rx_state *st, const struct gro_item *it, uint64_t *cnt)
{
	const struct gro_pkt *pk = st->pkts;
	if (it->count == 1) {
		if (tun_write1(w, pk[it->first].p, pk[it->first].len) < 0) {
			cnt[DP_TUN_ERRORS]++;
		} else {
			cnt[DP_RX_PACKETS]++;
			cnt[DP_RX_BYTES] += pk[it->first].len;
		}
		return;
	}
	struct iovec *v = st->wiov;
	int nv = 0;
	v[nv].iov_base = (void *)&it->vh;
	v[nv++].iov_len = VNET_LEN;
	v[nv].iov_base = pk[it->first].p;
	v[nv++].iov_len = pk[it->first].len;
	uint64_t bytes = pk[it->first].len;
	for (uint32_t i = st->next[it->first]; i != GRO_END; i = st->next[i]) {
		v[nv].iov_base = pk[i].p + it->hdr_len;
		v[nv++].iov_len = pk[i].len - it->hdr_len;
		bytes += pk[i].len;
	}
	ssize_t r;
	do
		r = sys_writev(w->tun_fd, v, nv);
	while (r < 0 && errno == EINTR);
	if (r >= 0) {
		cnt[DP_RX_PACKETS] += it->count;
		cnt[DP_RX_BYTES] += bytes;
		cnt[DP_RX_GRO_PACKETS]++;
		return;
	}
	/* Refused as a super-packet: put the first packet back as it came and write them one by one. */
	gro_item_undo(pk, it);
	for (uint32_t i = it->first; i != GRO_END; i = st->next[i]) {
		if (tun_write1(w, pk[i].p, pk[i].len) < 0) {
			cnt[DP_TUN_ERRORS]++;
		} else {
			cnt[DP_RX_PACKETS]++;
			cnt[DP_RX_BYTES] += pk[i].len;
		}
	}
}

/* The UDP_GRO segment size of a received message, or 0 when it is one datagram. */
static size_t gro_size_of(struct msghdr *mh)
{
	for (struct cmsghdr *c = CMSG_FIRSTHDR(mh); c; c = CMSG_NXTHDR(mh, c)) {
		if (c->cmsg_level == SOL_UDP && c->cmsg_type == UDP_GRO && c->cmsg_len >= CMSG_LEN(sizeof(int))) {
			int v;
			memcpy(&v, CMSG_DATA(c), sizeof v);
			return v > 0 ? (size_t)v : 0;
		}
	}
	return 0;
}

static void *rx_main(void *arg)
{
	struct worker *w = arg;
	struct dp *dp = w->dp;
	struct rx_state *st = w->rx;
	uint64_t cnt[DP_NCOUNTERS] = {0};
	struct pollfd pf[3] = {{.fd = w->udp_fd, .events = POLLIN}, {.fd = dp->stop_fd, .events = POLLIN}, {.fd = -1}};
	struct spin_local sl = {.budget = SPIN_START_NS, .low_rate = true};

	for (int i = 0; i < BATCH; i++) {
		st->iov[i].iov_base = st->bufs + (size_t)i * BUFSZ;
		st->iov[i].iov_len = BUFSZ;
	}
	for (;;) {
		bool spun;
		enum wake wk = wait_ready(w, READER_RX, &sl, pf, &spun);
		if (wk == WAKE_STOP)
			break;
		if (wk == WAKE_AGAIN)
			continue;
		uint64_t moved = 0;
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
					counters_flush(dp, cnt);
					if (wait_stop(dp, 100))
						return NULL;
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
				size_t seg = dp->off.udp_gro ? gro_size_of(mh) : 0;
				if (seg == 0 || seg > len)
					seg = len ? len : 1;
				size_t chunks = len ? (len + seg - 1) / seg : 1;
				uint32_t sender = st->srcs[i].sin_family == AF_INET ? ntohl(st->srcs[i].sin_addr.s_addr) : 0;
				if (!rt_is_peer(t, sender)) {
					cnt[DP_DROP_UNKNOWN_SENDER] += chunks;
					continue;
				}
				uint8_t *base = st->iov[i].iov_base;
				for (size_t off = 0; off < len || (len == 0 && off == 0); off += seg) {
					size_t cl = len - off < seg ? len - off : seg;
					if (np == RX_MAXPKT) {
						cnt[DP_DROP_MALFORMED]++;
					} else if (rx_packet(dp, base + off, cl, trunc, cnt)) {
						st->pkts[np].p = base + off;
						st->pkts[np++].len = (uint32_t)cl;
					}
					if (len == 0)
						break;
				}
			}
			rcu_exit(w, READER_RX);
			moved += np;
			if (dp->off.tun_vnet_hdr) {
				size_t ni = gro_coalesce(st->pkts, np, st->next, st->items, dp->off.tun_uso ? GRO_UDP : 0);
				for (size_t k = 0; k < ni; k++)
					rx_write_item(w, st, &st->items[k], cnt);
			} else {
				for (size_t k = 0; k < np; k++) {
					if (tun_write1(w, st->pkts[k].p, st->pkts[k].len) < 0) {
						cnt[DP_TUN_ERRORS]++;
					} else {
						cnt[DP_RX_PACKETS]++;
						cnt[DP_RX_BYTES] += st->pkts[k].len;
					}
				}
			}
			counters_flush(dp, cnt);
			/*
			 * Reply fast path (low rates only): the kernel answers much of
			 * what was just written (a ping, a request to a local service)
			 * inside the write itself, so the reply already waits in the TUN.
			 * Sending it from here saves the hop through the tx thread's
			 * wake-up, as a single-threaded forwarder would. The tx lock keeps
			 * reads and sends in order; if tx holds it, tx has the reply.
			 */
			if (dp->off.busy_poll && sl.low_rate && np > 0 && pthread_mutex_trylock(&w->tx_lock) == 0) {
				uint64_t replied = 0;
				enum tx_pass r = tx_pass(w, cnt, &replied);
				pthread_mutex_unlock(&w->tx_lock);
				if (r == TX_STOP)
					return NULL;
			}
			if (n < vlen)
				break;
		}
		spin_note(w, READER_RX, &sl, moved, spun);
	}
	return NULL;
}

/* ---- lifecycle ---------------------------------------------------------- */

/* Appends "what: reason" to the offloads note (why an offload asked for is off). */
static void note(struct dp_offloads *o, const char *what, const char *why)
{
	size_t used = strlen(o->note);
	snprintf(o->note + used, sizeof o->note - used, "%s%s%s%s", used ? "; " : "", what, why ? ": " : "", why ? why : "");
}

/* UDP GSO and GRO, each only if the kernel takes the socket option (Linux >= 4.18 / 5.0). */
static void udp_offloads(int fd, struct dp_offloads *o)
{
	int v = 0;
	socklen_t vl = sizeof v;
	if (getsockopt(fd, SOL_UDP, UDP_SEGMENT, &v, &vl) == 0)
		o->udp_gso = true;
	else
		note(o, "UDP_SEGMENT", strerror(errno));
	v = 1;
	if (setsockopt(fd, SOL_UDP, UDP_GRO, &v, sizeof v) == 0)
		o->udp_gro = true;
	else
		note(o, "UDP_GRO", strerror(errno));
}

/* One socket of the port; in a SO_REUSEPORT group when the data plane has more than one queue. */
static int udp_socket(const struct dp_config *cfg, bool reuseport, char *err, size_t errlen)
{
	int fd = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return errf(err, errlen, errno, "UDP socket%s", "");
	/* Let the kernel fragment oversized outer datagrams instead of failing them with EMSGSIZE. */
	int v = IP_PMTUDISC_DONT;
	setsockopt(fd, IPPROTO_IP, IP_MTU_DISCOVER, &v, sizeof v);
	/* Bigger buffers absorb bursts between batches; FORCE needs CAP_NET_ADMIN, else capped by sysctl. */
	v = 4 << 20;
	if (setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &v, sizeof v) < 0)
		setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &v, sizeof v);
	if (setsockopt(fd, SOL_SOCKET, SO_SNDBUFFORCE, &v, sizeof v) < 0)
		setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &v, sizeof v);
	v = 1;
	if (reuseport && setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &v, sizeof v) < 0) {
		int e = errno;
		close(fd);
		return errf(err, errlen, e, "UDP socket option SO_REUSEPORT%s", "");
	}

	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(cfg->port)};
	sa.sin_addr.s_addr = htonl(cfg->bind_addr);
	if (bind(fd, (struct sockaddr *)&sa, sizeof sa) < 0) {
		int e = errno;
		char where[40];
		snprintf(where, sizeof where, "%s:%u", inet_ntoa(sa.sin_addr), cfg->port);
		close(fd);
		return errf(err, errlen, e, "bind UDP %s", where);
	}
	return fd;
}

/*
 * The workers' sockets. With several, a plain bind comes first and is let
 * go at once: a port another process holds (another daemon, even one in its
 * own SO_REUSEPORT group) fails here with EADDRINUSE exactly as with one
 * queue, and no other daemon can join our group later, since its own plain
 * bind fails against it. The kernel spreads received datagrams over the group by
 * the outer addresses and ports, so everything from one peer reaches one
 * worker, in order.
 */
static int udp_open_all(const struct dp_config *cfg, struct dp *dp, unsigned n, char *err, size_t errlen)
{
	if (n > 1) {
		int probe = udp_socket(cfg, false, err, errlen);
		if (probe < 0)
			return probe;
		close(probe);
	}
	for (unsigned k = 0; k < n; k++) {
		int fd = udp_socket(cfg, n > 1, err, errlen);
		if (fd < 0)
			return fd;
		dp->w[k].udp_fd = fd;
		if (!cfg->offloads)
			continue;
		if (k == 0) {
			udp_offloads(fd, &dp->off);
		} else if (dp->off.udp_gro) {
			int v = 1;
			setsockopt(fd, SOL_UDP, UDP_GRO, &v, sizeof v);
		}
	}
	return 0;
}

static int start_thread(pthread_t *th, void *(*fn)(void *), struct worker *w, const char *kind)
{
	char name[16];
	if (w->dp->nw > 1)
		snprintf(name, sizeof name, "rudder-%s%d", kind, (int)(w - w->dp->w));
	else
		snprintf(name, sizeof name, "rudder-%s", kind);
	/* Signals belong to Node's threads; ours must never run a handler mid-batch. */
	sigset_t all, old;
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	int rc = pthread_create(th, NULL, fn, w);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (rc == 0)
		pthread_setname_np(*th, name);
	return rc;
}

/* Queues when the caller leaves it to us: one per CPU this process may run on. */
static unsigned default_queues(void)
{
	cpu_set_t set;
	int n = sched_getaffinity(0, sizeof set, &set) == 0 ? CPU_COUNT(&set) : 1;
	return n < 1 ? 1 : n > DP_MAX_QUEUES ? DP_MAX_QUEUES : (unsigned)n;
}

void dp_get_offloads(const struct dp *dp, struct dp_offloads *out)
{
	*out = dp->off;
}

void dp_close(struct dp *dp)
{
	if (!dp)
		return;
	bool started = false;
	for (unsigned k = 0; k < dp->nalloc; k++)
		started = started || dp->w[k].tx_started || dp->w[k].rx_started;
	if (started) {
		uint64_t one = 1;
		atomic_store(&dp->stopping, true);
		if (write(dp->stop_fd, &one, sizeof one) < 0) {
			/* an eventfd write only fails on overflow, which leaves it readable anyway */
		}
		for (unsigned k = 0; k < dp->nalloc; k++) {
			if (dp->w[k].tx_started)
				pthread_join(dp->w[k].tx_thread, NULL);
			if (dp->w[k].rx_started)
				pthread_join(dp->w[k].rx_thread, NULL);
		}
	}
	for (unsigned k = 0; k < dp->nalloc; k++) {
		struct worker *w = &dp->w[k];
		if (w->tun_fd >= 0)
			close(w->tun_fd);
		if (w->udp_fd >= 0)
			close(w->udp_fd);
		for (int r = 0; r < NREADERS; r++)
			if (w->spin[r].kick_fd >= 0)
				close(w->spin[r].kick_fd);
		pthread_mutex_destroy(&w->tx_lock);
		if (w->tx)
			free(w->tx->bufs);
		if (w->rx)
			free(w->rx->bufs);
		free(w->tx);
		free(w->rx);
	}
	if (dp->stop_fd >= 0)
		close(dp->stop_fd);
	/* Threads are gone: every table can go. */
	rt_free(atomic_load(&dp->table));
	while (dp->retired) {
		struct rtable *t = dp->retired;
		dp->retired = t->next_retired;
		rt_free(t);
	}
	pthread_mutex_destroy(&dp->wlock);
	pthread_mutex_destroy(&dp->icmp_lock);
	free(dp->w);
	free(dp);
}

int dp_open(const struct dp_config *cfg, struct dp_counters *counters, struct dp **out, char *ifname,
	    char *err, size_t errlen)
{
	if (cfg->local_prefix > 32) {
		snprintf(err, errlen, "localSubnet prefix %u is not 0..32", cfg->local_prefix);
		return -EINVAL;
	}
	if (cfg->port == 0) {
		snprintf(err, errlen, "UDP port must be 1..65535");
		return -EINVAL;
	}
	if (cfg->mtu < 68 || cfg->mtu > 65535) {
		snprintf(err, errlen, "MTU %u is not 68..65535", cfg->mtu);
		return -EINVAL;
	}
	if (cfg->queues > DP_MAX_QUEUES) {
		snprintf(err, errlen, "queues %u is not 0 (one per CPU) or 1..%d", cfg->queues, DP_MAX_QUEUES);
		return -EINVAL;
	}
	unsigned nq = cfg->queues ? cfg->queues : default_queues();
	struct dp *dp = calloc(1, sizeof *dp);
	if (!dp)
		return errf(err, errlen, ENOMEM, "data plane%s", "");
	dp->stop_fd = -1;
	pthread_mutex_init(&dp->wlock, NULL);
	pthread_mutex_init(&dp->icmp_lock, NULL);
	dp->w = calloc(nq, sizeof *dp->w);
	if (!dp->w) {
		free(dp);
		return errf(err, errlen, ENOMEM, "data plane%s", "");
	}
	dp->nw = dp->nalloc = nq;
	for (unsigned k = 0; k < nq; k++) {
		struct worker *w = &dp->w[k];
		w->dp = dp;
		w->tun_fd = w->udp_fd = -1;
		w->spin[0].kick_fd = w->spin[1].kick_fd = -1;
		pthread_mutex_init(&w->tx_lock, NULL);
	}
	dp->local_mask = mask_of(cfg->local_prefix);
	dp->local_net = cfg->local_net & dp->local_mask;
	dp->icmp_source = cfg->icmp_source;
	dp->mtu = cfg->mtu;
	dp->c = counters;
	for (int i = 0; i < DP_NCOUNTERS; i++)
		atomic_store(&counters->v[i], 0);
	atomic_store(&dp->gen, 1);
	dp->icmp_tokens = ICMP_BURST;
	clock_gettime(CLOCK_MONOTONIC, &dp->icmp_last);

	int rc;
	struct rtable *empty;
	if ((rc = rt_new(NULL, 0, &empty, err, errlen)) != 0)
		goto fail;
	atomic_store(&dp->table, empty);

	dp->off.requested = cfg->offloads;
	for (unsigned k = 0; k < nq; k++) {
		struct worker *w = &dp->w[k];
		w->tx = calloc(1, sizeof *w->tx);
		w->rx = calloc(1, sizeof *w->rx);
		if (w->tx)
			w->tx->bufs = malloc((size_t)BATCH * TX_STRIDE);
		if (w->rx)
			w->rx->bufs = malloc((size_t)BATCH * BUFSZ);
		if (!w->tx || !w->rx || !w->tx->bufs || !w->rx->bufs) {
			rc = errf(err, errlen, ENOMEM, "packet buffers%s", "");
			goto fail;
		}
	}
	dp->stop_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (dp->stop_fd < 0) {
		rc = errf(err, errlen, errno, "eventfd%s", "");
		goto fail;
	}
	if (cfg->busy_poll) {
		/* Fallback: without its eventfds, the threads simply sleep in poll(). */
		dp->off.busy_poll = true;
		for (unsigned k = 0; k < nq; k++) {
			for (int r = 0; r < NREADERS; r++) {
				dp->w[k].spin[r].kick_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
				dp->off.busy_poll = dp->off.busy_poll && dp->w[k].spin[r].kick_fd >= 0;
			}
		}
		if (!dp->off.busy_poll)
			note(&dp->off, "busy poll eventfd", strerror(errno));
	}
	/* Sockets first: a busy port must not leave a TUN device behind even briefly. */
	if ((rc = udp_open_all(cfg, dp, nq, err, errlen)) < 0)
		goto fail;
	struct tun_caps caps;
	int fds[DP_MAX_QUEUES];
	if ((rc = tun_open(cfg->tun_name, cfg->offloads, nq, fds, ifname, &caps, err, errlen)) < 0)
		goto fail;
	for (int k = 0; k < rc; k++)
		dp->w[k].tun_fd = fds[k];
	if ((unsigned)rc < nq) {
		/* Fewer TUN queues than asked (no IFF_MULTI_QUEUE, or a queue refused): their sockets go too. */
		for (unsigned k = (unsigned)rc; k < nq; k++) {
			close(dp->w[k].udp_fd);
			dp->w[k].udp_fd = -1;
		}
		dp->nw = (unsigned)rc;
	}
	dp->off.queues = dp->nw;
	dp->off.tun_vnet_hdr = caps.vnet_hdr;
	dp->off.tun_tso = caps.tso;
	dp->off.tun_uso = caps.uso;
	if (caps.note[0])
		note(&dp->off, caps.note, NULL);

	for (unsigned k = 0; k < dp->nw; k++) {
		struct worker *w = &dp->w[k];
		if ((rc = start_thread(&w->tx_thread, tx_main, w, "tx")) != 0) {
			rc = errf(err, errlen, rc, "start tx thread%s", "");
			goto fail;
		}
		w->tx_started = true;
		if ((rc = start_thread(&w->rx_thread, rx_main, w, "rx")) != 0) {
			rc = errf(err, errlen, rc, "start rx thread%s", "");
			goto fail;
		}
		w->rx_started = true;
	}
	*out = dp;
	return 0;

fail:
	dp_close(dp);
	return rc;
}
