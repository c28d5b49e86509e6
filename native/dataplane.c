/*
 * The udp backend's data plane: IPv4 packets from the TUN device go to the
 * PublicIP:port of the route that covers their destination, inside one UDP
 * datagram each; datagrams from known peers go back into the TUN.
 *
 * Threads and locking
 *   - tx thread: TUN -> UDP. Reads the TUN until EAGAIN (no batched read
 *     exists for a TUN), then one sendmmsg per batch. Writes generated ICMP
 *     errors into the TUN.
 *   - rx thread: UDP -> TUN. One recvmmsg per batch, one write per packet.
 *   - the caller's thread (JS) opens, replaces routes and closes.
 *   Both fds are non-blocking; each thread sleeps in poll() on its fd plus a
 *   stop eventfd, so close wakes both at once without signals.
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

#include "tun.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define BATCH 32
/* Any IPv4 packet fits, whatever MTU someone sets on the device later; pages never written stay unbacked. */
#define BUFSZ 65536
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

struct dp {
	int tun_fd;
	int udp_fd;
	int stop_fd;
	uint32_t local_net;
	uint32_t local_mask;
	uint32_t icmp_source;
	uint32_t mtu; /* validated only: buffers take any IPv4 packet, and a TUN without GSO never hands over more than its MTU */
	struct dp_counters *c;

	pthread_t tx_thread;
	pthread_t rx_thread;
	bool tx_started;
	bool rx_started;

	_Atomic(struct rtable *) table;
	_Atomic uint64_t gen;
	struct reader_slot readers[NREADERS];
	pthread_mutex_t wlock; /* serialises writers (setRoutes, close); never taken by readers */
	struct rtable *retired;

	uint8_t *tx_bufs; /* BATCH * BUFSZ, tx thread only */
	uint8_t *rx_bufs; /* BATCH * BUFSZ, rx thread only */
	/* ICMP rate limit and IP ids: only the tx thread generates ICMP, so no atomics */
	double icmp_tokens;
	struct timespec icmp_last;
	uint16_t icmp_id;
};

/* ---- small helpers ---------------------------------------------------- */

static inline uint16_t get16(const uint8_t *p)
{
	return (uint16_t)((p[0] << 8) | p[1]);
}

static inline uint32_t get32(const uint8_t *p)
{
	return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3];
}

static inline void put16(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t)(v >> 8);
	p[1] = (uint8_t)v;
}

static inline void put32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)(v >> 24);
	p[1] = (uint8_t)(v >> 16);
	p[2] = (uint8_t)(v >> 8);
	p[3] = (uint8_t)v;
}

static inline uint32_t mask_of(unsigned prefix)
{
	return prefix == 0 ? 0 : 0xffffffffu << (32 - prefix);
}

static uint32_t csum_add(uint32_t sum, const uint8_t *p, size_t len)
{
	while (len > 1) {
		sum += get16(p);
		p += 2;
		len -= 2;
	}
	if (len)
		sum += (uint32_t)p[0] << 8;
	return sum;
}

static uint16_t csum_fold(uint32_t sum)
{
	while (sum >> 16)
		sum = (sum & 0xffff) + (sum >> 16);
	return (uint16_t)~sum;
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

static inline const struct rtable *rcu_enter(struct dp *dp, int r)
{
	uint64_t g = atomic_load(&dp->gen);
	atomic_store(&dp->readers[r].gen, g);
	return atomic_load(&dp->table);
}

static inline void rcu_exit(struct dp *dp, int r)
{
	atomic_store(&dp->readers[r].gen, 0);
}

/* Caller holds wlock. */
static void rcu_reclaim(struct dp *dp)
{
	struct rtable **pp = &dp->retired;
	while (*pp) {
		struct rtable *t = *pp;
		bool busy = false;
		for (int r = 0; r < NREADERS; r++) {
			uint64_t g = atomic_load(&dp->readers[r].gen);
			if (g != 0 && g <= t->retired_gen)
				busy = true;
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

/* `orig` is a structurally valid IPv4 packet of `len` bytes (header checked by the caller). */
static void icmp_error(struct dp *dp, const uint8_t *orig, size_t len, uint8_t type, uint8_t code,
		       uint64_t *cnt)
{
	size_t ihl = (size_t)(orig[0] & 0xf) * 4;
	/* RFC 1122 3.2.2: never about non-first fragments, ICMP errors, broadcast or multicast. */
	if (get16(orig + 6) & 0x1fff)
		return;
	uint32_t saddr = get32(orig + 12), daddr = get32(orig + 16);
	if (is_martian_src(saddr) || is_bcast_or_mcast(daddr))
		return;
	if (orig[9] == 1 && (len <= ihl || is_icmp_error_type(orig[ihl])))
		return;
	if (dp->icmp_source == 0 || !icmp_take_token(dp))
		return;

	uint8_t pkt[ICMP_MAX];
	size_t quote = len < ICMP_MAX - 28 ? len : ICMP_MAX - 28;
	size_t tot = 28 + quote;
	memset(pkt, 0, 28);
	pkt[0] = 0x45;
	pkt[1] = 0xc0; /* internetwork control, as routers mark ICMP errors */
	put16(pkt + 2, (uint16_t)tot);
	put16(pkt + 4, dp->icmp_id++);
	pkt[8] = 64;
	pkt[9] = 1;
	put32(pkt + 12, dp->icmp_source);
	put32(pkt + 16, saddr);
	put16(pkt + 10, csum_fold(csum_add(0, pkt, 20)));
	pkt[20] = type;
	pkt[21] = code;
	memcpy(pkt + 28, orig, quote);
	put16(pkt + 22, csum_fold(csum_add(0, pkt + 20, 8 + quote)));

	ssize_t w;
	do
		w = write(dp->tun_fd, pkt, tot);
	while (w < 0 && errno == EINTR);
	if (w < 0)
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
	put16(h + 10, csum_fold(sum));
}

/* Returns true if the packet is to be sent to *dst (TTL already decremented). */
static bool tx_packet(struct dp *dp, const struct rtable *t, uint8_t *p, size_t len, struct sockaddr_in *dst,
		      uint64_t *cnt)
{
	if (len < 1 || (p[0] >> 4) != 4) {
		cnt[DP_DROP_NOT_IPV4]++;
		return false;
	}
	size_t ihl = (size_t)(p[0] & 0xf) * 4;
	if (len < 20 || ihl < 20 || ihl > len || get16(p + 2) != len) {
		cnt[DP_DROP_MALFORMED]++;
		return false;
	}
	const struct rt_entry *e = rt_lookup(t, get32(p + 16));
	if (!e) {
		cnt[DP_DROP_NO_ROUTE]++;
		icmp_error(dp, p, len, 3, 0, cnt);
		return false;
	}
	if (p[8] <= 1) {
		cnt[DP_DROP_TTL]++;
		icmp_error(dp, p, len, 11, 0, cnt);
		return false;
	}
	ttl_decrement(p);
	*dst = e->dst;
	return true;
}

enum rx_verdict { RX_DELIVER, RX_DROP };

static enum rx_verdict rx_packet(struct dp *dp, const struct rtable *t, const uint8_t *p, size_t len,
				 uint32_t sender, bool truncated, uint64_t *cnt)
{
	if (!rt_is_peer(t, sender)) {
		cnt[DP_DROP_UNKNOWN_SENDER]++;
		return RX_DROP;
	}
	size_t ihl = len ? (size_t)(p[0] & 0xf) * 4 : 0;
	if (truncated || len < 20 || (p[0] >> 4) != 4 || ihl < 20 || ihl > len || get16(p + 2) != len ||
	    csum_fold(csum_add(0, p, ihl)) != 0 || (get16(p + 6) & 0x8000) ||
	    (size_t)(get16(p + 6) & 0x1fff) * 8 + len > 65535 || is_martian_src(get32(p + 12))) {
		cnt[DP_DROP_MALFORMED]++;
		return RX_DROP;
	}
	if (p[8] == 0) {
		cnt[DP_DROP_TTL]++;
		return RX_DROP;
	}
	if ((get32(p + 16) & dp->local_mask) != dp->local_net) {
		cnt[DP_DROP_NOT_LOCAL]++;
		return RX_DROP;
	}
	return RX_DELIVER;
}

/* ---- threads ------------------------------------------------------------ */

/* Sleeps up to ms unless stop is requested; returns true on stop. */
static bool wait_stop(struct dp *dp, int ms)
{
	struct pollfd pf = {.fd = dp->stop_fd, .events = POLLIN};
	return poll(&pf, 1, ms) > 0;
}

/* Sends msgs[0..n); returns false if stop was requested meanwhile. */
static bool send_batch(struct dp *dp, struct mmsghdr *msgs, int n, uint64_t *cnt)
{
	int sent = 0, stalls = 0;
	while (sent < n) {
		int r = sendmmsg(dp->udp_fd, msgs + sent, (unsigned)(n - sent), 0);
		if (r > 0) {
			for (int i = sent; i < sent + r; i++) {
				cnt[DP_TX_PACKETS]++;
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
			struct pollfd pf[2] = {{.fd = dp->udp_fd, .events = POLLOUT}, {.fd = dp->stop_fd, .events = POLLIN}};
			stalls++;
			if (poll(pf, 2, 10) > 0 && pf[1].revents)
				return false;
			continue;
		}
		/* This datagram failed (no route to the peer, firewall, ...): count it and go on. */
		cnt[DP_SOCKET_ERRORS]++;
		sent++;
		stalls = 0;
	}
	return true;
}

static void *tx_main(void *arg)
{
	struct dp *dp = arg;
	uint64_t cnt[DP_NCOUNTERS] = {0};
	struct mmsghdr msgs[BATCH];
	struct iovec iov[BATCH];
	struct sockaddr_in dsts[BATCH];
	size_t lens[BATCH];
	struct pollfd pf[2] = {{.fd = dp->tun_fd, .events = POLLIN}, {.fd = dp->stop_fd, .events = POLLIN}};

	for (;;) {
		int pr = poll(pf, 2, -1);
		if (pr < 0) {
			if (errno != EINTR && wait_stop(dp, 100))
				break;
			continue;
		}
		if (pf[1].revents)
			break;
		bool backoff = false;
		for (;;) {
			int n = 0;
			bool more = true;
			while (n < BATCH) {
				ssize_t r = read(dp->tun_fd, dp->tx_bufs + (size_t)n * BUFSZ, BUFSZ);
				if (r < 0) {
					if (errno == EINTR)
						continue;
					if (errno != EAGAIN) {
						cnt[DP_TUN_ERRORS]++;
						backoff = true;
					}
					more = false;
					break;
				}
				lens[n++] = (size_t)r;
			}
			int out = 0;
			const struct rtable *t = rcu_enter(dp, READER_TX);
			for (int i = 0; i < n; i++) {
				uint8_t *p = dp->tx_bufs + (size_t)i * BUFSZ;
				if (!tx_packet(dp, t, p, lens[i], &dsts[out], cnt))
					continue;
				iov[out].iov_base = p;
				iov[out].iov_len = lens[i];
				memset(&msgs[out].msg_hdr, 0, sizeof msgs[out].msg_hdr);
				msgs[out].msg_hdr.msg_name = &dsts[out];
				msgs[out].msg_hdr.msg_namelen = sizeof dsts[out];
				msgs[out].msg_hdr.msg_iov = &iov[out];
				msgs[out].msg_hdr.msg_iovlen = 1;
				out++;
			}
			rcu_exit(dp, READER_TX);
			bool running = send_batch(dp, msgs, out, cnt);
			counters_flush(dp, cnt);
			if (!running)
				return NULL;
			if (!more)
				break;
		}
		/* A TUN whose device vanished stays readable-with-error: do not spin on it. */
		if (backoff && wait_stop(dp, 100))
			break;
	}
	return NULL;
}

static void *rx_main(void *arg)
{
	struct dp *dp = arg;
	uint64_t cnt[DP_NCOUNTERS] = {0};
	struct mmsghdr msgs[BATCH];
	struct iovec iov[BATCH];
	struct sockaddr_in srcs[BATCH];
	bool deliver[BATCH];
	struct pollfd pf[2] = {{.fd = dp->udp_fd, .events = POLLIN}, {.fd = dp->stop_fd, .events = POLLIN}};

	for (int i = 0; i < BATCH; i++) {
		iov[i].iov_base = dp->rx_bufs + (size_t)i * BUFSZ;
		iov[i].iov_len = BUFSZ;
	}
	for (;;) {
		int pr = poll(pf, 2, -1);
		if (pr < 0) {
			if (errno != EINTR && wait_stop(dp, 100))
				break;
			continue;
		}
		if (pf[1].revents)
			break;
		for (;;) {
			for (int i = 0; i < BATCH; i++) {
				memset(&msgs[i].msg_hdr, 0, sizeof msgs[i].msg_hdr);
				msgs[i].msg_hdr.msg_name = &srcs[i];
				msgs[i].msg_hdr.msg_namelen = sizeof srcs[i];
				msgs[i].msg_hdr.msg_iov = &iov[i];
				msgs[i].msg_hdr.msg_iovlen = 1;
			}
			int n = recvmmsg(dp->udp_fd, msgs, BATCH, MSG_DONTWAIT, NULL);
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
			const struct rtable *t = rcu_enter(dp, READER_RX);
			for (int i = 0; i < n; i++) {
				bool trunc = (msgs[i].msg_hdr.msg_flags & MSG_TRUNC) != 0;
				uint32_t sender = srcs[i].sin_family == AF_INET ? ntohl(srcs[i].sin_addr.s_addr) : 0;
				deliver[i] = rx_packet(dp, t, iov[i].iov_base, msgs[i].msg_len, sender, trunc, cnt) ==
					     RX_DELIVER;
			}
			rcu_exit(dp, READER_RX);
			for (int i = 0; i < n; i++) {
				if (!deliver[i])
					continue;
				ssize_t w;
				do
					w = write(dp->tun_fd, iov[i].iov_base, msgs[i].msg_len);
				while (w < 0 && errno == EINTR);
				if (w < 0) {
					cnt[DP_TUN_ERRORS]++;
				} else {
					cnt[DP_RX_PACKETS]++;
					cnt[DP_RX_BYTES] += msgs[i].msg_len;
				}
			}
			counters_flush(dp, cnt);
			if (n < BATCH)
				break;
		}
	}
	return NULL;
}

/* ---- lifecycle ---------------------------------------------------------- */

static int udp_open(const struct dp_config *cfg, char *err, size_t errlen)
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

static int start_thread(pthread_t *th, void *(*fn)(void *), struct dp *dp, const char *name)
{
	/* Signals belong to Node's threads; ours must never run a handler mid-batch. */
	sigset_t all, old;
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	int rc = pthread_create(th, NULL, fn, dp);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (rc == 0)
		pthread_setname_np(*th, name);
	return rc;
}

void dp_close(struct dp *dp)
{
	if (!dp)
		return;
	if (dp->tx_started || dp->rx_started) {
		uint64_t one = 1;
		if (write(dp->stop_fd, &one, sizeof one) < 0) {
			/* an eventfd write only fails on overflow, which leaves it readable anyway */
		}
		if (dp->tx_started)
			pthread_join(dp->tx_thread, NULL);
		if (dp->rx_started)
			pthread_join(dp->rx_thread, NULL);
	}
	if (dp->tun_fd >= 0)
		close(dp->tun_fd);
	if (dp->udp_fd >= 0)
		close(dp->udp_fd);
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
	free(dp->tx_bufs);
	free(dp->rx_bufs);
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
	struct dp *dp = calloc(1, sizeof *dp);
	if (!dp)
		return errf(err, errlen, ENOMEM, "data plane%s", "");
	dp->tun_fd = dp->udp_fd = dp->stop_fd = -1;
	dp->local_mask = mask_of(cfg->local_prefix);
	dp->local_net = cfg->local_net & dp->local_mask;
	dp->icmp_source = cfg->icmp_source;
	dp->mtu = cfg->mtu;
	dp->c = counters;
	for (int i = 0; i < DP_NCOUNTERS; i++)
		atomic_store(&counters->v[i], 0);
	atomic_store(&dp->gen, 1);
	pthread_mutex_init(&dp->wlock, NULL);
	dp->icmp_tokens = ICMP_BURST;
	clock_gettime(CLOCK_MONOTONIC, &dp->icmp_last);

	int rc;
	struct rtable *empty;
	if ((rc = rt_new(NULL, 0, &empty, err, errlen)) != 0)
		goto fail;
	atomic_store(&dp->table, empty);

	dp->tx_bufs = malloc((size_t)BATCH * BUFSZ);
	dp->rx_bufs = malloc((size_t)BATCH * BUFSZ);
	if (!dp->tx_bufs || !dp->rx_bufs) {
		rc = errf(err, errlen, ENOMEM, "packet buffers%s", "");
		goto fail;
	}
	dp->stop_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (dp->stop_fd < 0) {
		rc = errf(err, errlen, errno, "eventfd%s", "");
		goto fail;
	}
	/* Socket first: a busy port must not leave a TUN device behind even briefly. */
	if ((rc = udp_open(cfg, err, errlen)) < 0)
		goto fail;
	dp->udp_fd = rc;
	if ((rc = tun_open(cfg->tun_name, ifname, err, errlen)) < 0)
		goto fail;
	dp->tun_fd = rc;

	if ((rc = start_thread(&dp->tx_thread, tx_main, dp, "rudder-tx")) != 0) {
		rc = errf(err, errlen, rc, "start tx thread%s", "");
		goto fail;
	}
	dp->tx_started = true;
	if ((rc = start_thread(&dp->rx_thread, rx_main, dp, "rudder-rx")) != 0) {
		rc = errf(err, errlen, rc, "start rx thread%s", "");
		goto fail;
	}
	dp->rx_started = true;
	*out = dp;
	return 0;

fail:
	dp_close(dp);
	return rc;
}
