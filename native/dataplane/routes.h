/*
 * The route table: which peer (PublicIP:port) carries each overlay subnet,
 * and the set of peer PublicIPs the receive path accepts datagrams from.
 * A table is immutable once built; lookups are static inline (per packet).
 * Threads and locking: a table is read by every worker thread without a
 * lock; dp_set_routes (routes.c) publishes a new one and frees old ones
 * under the RCU-lite scheme described there.
 *
 * IPv6: the same table holds the IPv6 routes too (128-bit keys, grouped and
 * searched like the IPv4 ones), so one RCU pointer publishes both families
 * at once. Endpoints (either inner family) are of the data plane's underlay
 * family: the peer's PublicIP, or its PublicIPv6 on an IPv6 underlay.
 * Underlay addresses are compared as 128-bit keys (an IPv4 one mapped to
 * ::ffff:a.b.c.d), so the sender checks are one code path for both.
 */
#ifndef RUDDER_DATAPLANE_ROUTES_H
#define RUDDER_DATAPLANE_ROUTES_H

#include <netinet/in.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/bytes.h"
#include "dataplane/dataplane.h"
#include "udp/udp.h"

struct wgp;

/* An IPv6 address or mask as two host-order halves (bytes 0..7 and 8..15). */
struct ip6key {
	uint64_t hi, lo;
};

static inline int ip6key_cmp(struct ip6key a, struct ip6key b)
{
	if (a.hi != b.hi)
		return a.hi < b.hi ? -1 : 1;
	return a.lo < b.lo ? -1 : a.lo > b.lo;
}

/* An underlay address as a key: IPv6 as is, IPv4 mapped (::ffff:a.b.c.d); another family gives ::. */
static inline struct ip6key ul_key(const union udp_addr *a)
{
	struct ip6key k = {0, 0};
	if (a->sa.sa_family == AF_INET6) {
		k.hi = get64(a->v6.sin6_addr.s6_addr);
		k.lo = get64(a->v6.sin6_addr.s6_addr + 8);
	} else if (a->sa.sa_family == AF_INET) {
		k.lo = 0xffff00000000ull | ntohl(a->v4.sin_addr.s_addr);
	}
	return k;
}

struct rt_entry {
	uint32_t net;
	union udp_addr dst; /* the peer's endpoint, ready for sendmmsg */
	struct wgp *peer; /* WireGuard mode: the peer whose allowed IPs these are; NULL in udp mode */
};

/* WireGuard mode: a peer by its pinned endpoint (ul_key, port in host order), for the receive path. */
struct rt_wpeer {
	struct ip6key ip;
	uint16_t port;
	struct wgp *peer;
};

struct rt_group {
	uint32_t mask;
	uint32_t start;
	uint32_t count;
};

struct rt6_entry {
	struct ip6key net;
	union udp_addr dst; /* the peer's endpoint */
	struct wgp *peer; /* WireGuard mode: the peer whose allowed IPs these are; NULL in udp mode */
};

struct rt6_group {
	struct ip6key mask;
	uint32_t start;
	uint32_t count;
};

/*
 * Entries sorted by prefix length (longest first) then network, grouped by
 * prefix length, so a lookup is one binary search per distinct prefix length
 * (usually one: every lease has the same length). The sorted set of peer
 * PublicIPs sits in the same block, so the sender check and the route lookup
 * always agree on one table.
 */
struct rtable {
	uint32_t ngroups;
	uint32_t npeers;
	struct rt_group groups[33];
	struct rt_entry *entries;
	struct ip6key *peers;
	/* IPv6 routes, sorted and grouped the same way. */
	uint32_t ngroups6;
	struct rt6_group groups6[129];
	struct rt6_entry *entries6;
	/* WireGuard mode: the peers, sorted by endpoint; the table holds a reference on each (wgp_put on free) */
	uint32_t nwpeers;
	struct rt_wpeer *wpeers;
	void (*put_peer)(struct wgp *); /* drops the table's reference on each peer when it is freed (wg.c) */
	/* writer-only bookkeeping once retired (under dp->wlock) */
	struct rtable *next_retired;
	uint64_t retired_gen;
};

/* The netmask of an IPv4 prefix length (0..32; longer ones give /32). */
static inline uint32_t ip4_mask(unsigned prefix)
{
	return prefix == 0 ? 0 : prefix >= 32 ? 0xffffffffu
	                                      : 0xffffffffu << (32 - prefix);
}

/* The mask of an IPv6 prefix length (0..128). */
static inline struct ip6key ip6_mask(unsigned prefix)
{
	struct ip6key m;
	m.hi = prefix == 0 ? 0 : prefix >= 64 ? ~0ull
	                                      : ~0ull << (64 - prefix);
	m.lo = prefix <= 64 ? 0 : prefix >= 128 ? ~0ull
	                                        : ~0ull << (128 - prefix);
	return m;
}

/* The address at p (16 bytes, network order) as a key. */
static inline struct ip6key ip6_key(const uint8_t *p)
{
	struct ip6key k = {get64(p), get64(p + 8)};
	return k;
}

/* The routes of one build: IPv4 `v4` (n4), IPv6 `v6` (n6); in WireGuard mode each with its peer. */
struct rt_input {
	const struct dp_route *v4;
	struct wgp *const *v4_peer; /* NULL in udp mode */
	size_t n4;
	const struct dp_route6 *v6;
	struct wgp *const *v6_peer;
	size_t n6;
	const struct rt_wpeer *wpeers; /* WireGuard mode: the distinct peers (references the table takes over) */
	size_t nwpeers;
	bool v6_underlay; /* endpoints from the routes' public_ip6, else from public_ip */
};

/*
 * Builds a table of the input's routes (one allocation; free with rt_free).
 * Fails with -EINVAL on a duplicate subnet, -E2BIG or -ENOMEM, with a
 * description in `err`. Route values are in the ranges
 * src/dataplane/native.ts checks.
 */
int rt_new(const struct rt_input *in, struct rtable **out, char *err, size_t errlen);
void rt_free(struct rtable *t);

/* The longest route covering `dst` (host order), or NULL. */
static inline const struct rt_entry *rt_lookup(const struct rtable *t, uint32_t dst)
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

/* The longest IPv6 route covering `dst`, or NULL. */
static inline const struct rt6_entry *rt6_lookup(const struct rtable *t, struct ip6key dst)
{
	for (uint32_t g = 0; g < t->ngroups6; g++) {
		const struct rt6_group *gr = &t->groups6[g];
		struct ip6key key = {dst.hi & gr->mask.hi, dst.lo & gr->mask.lo};
		const struct rt6_entry *e = t->entries6 + gr->start;
		uint32_t lo = 0, hi = gr->count;
		while (lo < hi) {
			uint32_t mid = lo + (hi - lo) / 2;
			if (e[mid].net.hi == key.hi && e[mid].net.lo == key.lo)
				return &e[mid];
			if (e[mid].net.hi < key.hi || (e[mid].net.hi == key.hi && e[mid].net.lo < key.lo))
				lo = mid + 1;
			else
				hi = mid;
		}
	}
	return NULL;
}

/* Whether `ip` (ul_key) is a peer's endpoint address. */
static inline bool rt_is_peer(const struct rtable *t, struct ip6key ip)
{
	uint32_t lo = 0, hi = t->npeers;
	while (lo < hi) {
		uint32_t mid = lo + (hi - lo) / 2;
		int c = ip6key_cmp(t->peers[mid], ip);
		if (c == 0)
			return true;
		if (c < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	return false;
}

/* Order of WireGuard peers by endpoint: address, then port. */
static inline int rt_wpeer_cmp(struct ip6key ip, uint16_t port, const struct rt_wpeer *w)
{
	int c = ip6key_cmp(ip, w->ip);
	return c ? c : port < w->port ? -1
	                              : port > w->port;
}

/* WireGuard mode: the peer whose pinned endpoint is ip (ul_key) : port (host order), or NULL. */
static inline struct wgp *rt_wg_peer(const struct rtable *t, struct ip6key ip, uint16_t port)
{
	uint32_t lo = 0, hi = t->nwpeers;
	while (lo < hi) {
		uint32_t mid = lo + (hi - lo) / 2;
		int c = rt_wpeer_cmp(ip, port, &t->wpeers[mid]);
		if (c == 0)
			return t->wpeers[mid].peer;
		if (c > 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	return NULL;
}

#endif
