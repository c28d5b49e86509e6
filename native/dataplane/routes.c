/*
 * The route table (see routes.h; IPv4 and IPv6 routes in one block, their
 * endpoints in the data plane's underlay family) and how a new one is
 * published.
 *
 * Threads and locking: rt_new and rt_free touch only their own table.
 * dp_set_routes runs on the caller's (JS) thread; dp->wlock serialises it
 * with close and guards dp->retired. Readers (every worker thread) take no
 * lock: a tx pass or an rx batch enters a read section (rcu_enter in
 * state.h: its slot in w->readers gets the current generation, then it loads
 * dp->table) and leaves it after the batch.
 *
 * Publishing: the new table is swapped in with one atomic exchange; the
 * writer then bumps dp->gen, and a retired table is freed once every reader
 * slot is 0 (outside a section) or newer than the bump. Retired tables are
 * reclaimed on the next dp_set_routes and at close, so the writer never
 * blocks. All generation and pointer accesses are seq_cst; the argument is
 * in docs/architecture.md.
 */
#define _GNU_SOURCE
#include "dataplane/routes.h"

#include "common/err.h"
#include "dataplane/state.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct rt_build {
	uint32_t net;
	uint8_t prefix;
	union udp_addr ep;
	struct wgp *peer;
};

/* A route's endpoint in the underlay's family. */
static void route_ep(const struct rt_input *in, union udp_addr *ep, uint32_t ip, const uint8_t ip6[16], uint16_t port)
{
	if (in->v6_underlay)
		udp_addr_set6(ep, ip6, port);
	else
		udp_addr_set4(ep, ip, port);
}

static int rt_build_cmp(const void *a, const void *b)
{
	const struct rt_build *x = a, *y = b;
	if (x->prefix != y->prefix)
		return x->prefix > y->prefix ? -1 : 1;
	if (x->net != y->net)
		return x->net < y->net ? -1 : 1;
	return 0;
}

static int key_cmp(const void *a, const void *b)
{
	return ip6key_cmp(*(const struct ip6key *)a, *(const struct ip6key *)b);
}

static int wpeer_cmp(const void *a, const void *b)
{
	const struct rt_wpeer *x = a;
	return rt_wpeer_cmp(x->ip, x->port, b);
}

void rt_free(struct rtable *t)
{
	if (!t)
		return;
	for (uint32_t i = 0; i < t->nwpeers && t->put_peer; i++)
		t->put_peer(t->wpeers[i].peer);
	free(t);
}

struct rt6_build {
	struct ip6key net;
	uint8_t prefix;
	union udp_addr ep;
	struct wgp *peer;
};

static int rt6_build_cmp(const void *a, const void *b)
{
	const struct rt6_build *x = a, *y = b;
	if (x->prefix != y->prefix)
		return x->prefix > y->prefix ? -1 : 1;
	if (x->net.hi != y->net.hi)
		return x->net.hi < y->net.hi ? -1 : 1;
	if (x->net.lo != y->net.lo)
		return x->net.lo < y->net.lo ? -1 : 1;
	return 0;
}

/* The IPv6 part of rt_new: sorted, checked for duplicates, grouped into t (entries6 already placed). */
static int rt6_fill(const struct rt_input *in, struct rtable *t, char *err, size_t errlen)
{
	size_t n = in->n6;
	if (n == 0)
		return 0;
	struct rt6_build *tmp = malloc(n * sizeof *tmp);
	if (!tmp)
		return errf(err, errlen, ENOMEM, "route table%s", "");
	for (size_t i = 0; i < n; i++) {
		const struct dp_route6 *r = &in->v6[i];
		struct ip6key k = ip6_key(r->net), m = ip6_mask(r->prefix);
		tmp[i].net.hi = k.hi & m.hi;
		tmp[i].net.lo = k.lo & m.lo;
		tmp[i].prefix = r->prefix;
		route_ep(in, &tmp[i].ep, r->public_ip, r->public_ip6, r->port);
		tmp[i].peer = in->v6_peer ? in->v6_peer[i] : NULL;
	}
	qsort(tmp, n, sizeof *tmp, rt6_build_cmp);
	for (size_t i = 1; i < n; i++) {
		if (rt6_build_cmp(&tmp[i - 1], &tmp[i]) == 0) {
			uint8_t a[16];
			char txt[INET6_ADDRSTRLEN];
			put64(a, tmp[i].net.hi);
			put64(a + 8, tmp[i].net.lo);
			inet_ntop(AF_INET6, a, txt, sizeof txt);
			snprintf(err, errlen, "duplicate route for %s/%u", txt, tmp[i].prefix);
			free(tmp);
			return -EINVAL;
		}
	}
	for (size_t i = 0; i < n; i++) {
		struct rt6_entry *e = &t->entries6[i];
		e->net = tmp[i].net;
		e->dst = tmp[i].ep;
		e->peer = tmp[i].peer;
		if (i == 0 || tmp[i].prefix != tmp[i - 1].prefix) {
			struct rt6_group *g = &t->groups6[t->ngroups6++];
			g->mask = ip6_mask(tmp[i].prefix);
			g->start = (uint32_t)i;
		}
		t->groups6[t->ngroups6 - 1].count++;
		t->peers[in->n4 + i] = ul_key(&tmp[i].ep);
	}
	free(tmp);
	return 0;
}

/* One allocation: header, entries, IPv6 entries, WireGuard peers, PublicIPs. */
int rt_new(const struct rt_input *in, struct rtable **out, char *err, size_t errlen)
{
	size_t n = in->n4, n6 = in->n6, nwpeers = in->nwpeers;
	if (n > 1000000 || n6 > 1000000) {
		snprintf(err, errlen, "route table too large (%zu + %zu entries)", n, n6);
		return -E2BIG;
	}
	struct rt_build *tmp = NULL;
	if (n) {
		tmp = malloc(n * sizeof *tmp);
		if (!tmp)
			return errf(err, errlen, ENOMEM, "route table%s", "");
	}
	for (size_t i = 0; i < n; i++) {
		const struct dp_route *r = &in->v4[i];
		tmp[i].net = r->net & ip4_mask(r->prefix);
		tmp[i].prefix = r->prefix;
		route_ep(in, &tmp[i].ep, r->public_ip, r->public_ip6, r->port);
		tmp[i].peer = in->v4_peer ? in->v4_peer[i] : NULL;
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

	size_t sz = sizeof(struct rtable) + n * sizeof(struct rt_entry) + n6 * sizeof(struct rt6_entry) +
	        nwpeers * sizeof(struct rt_wpeer) + (n + n6) * sizeof(struct ip6key);
	struct rtable *t = calloc(1, sz);
	if (!t) {
		free(tmp);
		return errf(err, errlen, ENOMEM, "route table%s", "");
	}
	t->entries = (struct rt_entry *)(t + 1);
	t->entries6 = (struct rt6_entry *)(t->entries + n);
	t->wpeers = (struct rt_wpeer *)(t->entries6 + n6);
	t->peers = (struct ip6key *)(t->wpeers + nwpeers);
	for (size_t i = 0; i < n; i++) {
		struct rt_entry *e = &t->entries[i];
		e->net = tmp[i].net;
		e->dst = tmp[i].ep;
		e->peer = tmp[i].peer;
		if (i == 0 || tmp[i].prefix != tmp[i - 1].prefix) {
			struct rt_group *g = &t->groups[t->ngroups++];
			g->mask = ip4_mask(tmp[i].prefix);
			g->start = (uint32_t)i;
		}
		t->groups[t->ngroups - 1].count++;
		t->peers[i] = ul_key(&tmp[i].ep);
	}
	free(tmp);
	int rc = rt6_fill(in, t, err, errlen);
	if (rc) {
		free(t); /* no peer references taken yet */
		return rc;
	}
	if (nwpeers) {
		memcpy(t->wpeers, in->wpeers, nwpeers * sizeof *in->wpeers);
		qsort(t->wpeers, nwpeers, sizeof *in->wpeers, wpeer_cmp);
		t->nwpeers = (uint32_t)nwpeers;
	}
	if (n + n6) {
		qsort(t->peers, n + n6, sizeof *t->peers, key_cmp);
		uint32_t k = 1;
		for (size_t i = 1; i < n + n6; i++)
			if (ip6key_cmp(t->peers[i], t->peers[k - 1]) != 0)
				t->peers[k++] = t->peers[i];
		t->npeers = k;
	}
	*out = t;
	return 0;
}

/* Caller holds wlock. */
static void rcu_reclaim(struct dp *dp)
{
	struct rtable **pp = &dp->retired;
	while (*pp) {
		struct rtable *t = *pp;
		bool busy = false;
		uint64_t tg = dp->wg ? atomic_load(&dp->wg->timer_reader) : 0;
		if (tg != 0 && tg <= t->retired_gen)
			busy = true;
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

void routes_publish(struct dp *dp, struct rtable *t)
{
	struct rtable *old = atomic_exchange(&dp->table, t);
	/* Readers that may still hold `old` saw a generation <= the one before this bump. */
	old->retired_gen = atomic_fetch_add(&dp->gen, 1);
	old->next_retired = dp->retired;
	dp->retired = old;
	rcu_reclaim(dp);
}

int dp_set_routes(struct dp *dp, const struct dp_route *routes, size_t n, const struct dp_route6 *routes6, size_t n6,
        char *err, size_t errlen)
{
	if (dp->wg) {
		snprintf(err, errlen, "a WireGuard data plane takes peers (setPeers), not routes");
		return -EINVAL;
	}
	struct rtable *t;
	struct rt_input in = {.v4 = routes, .n4 = n, .v6 = routes6, .n6 = n6, .v6_underlay = dp->v6_underlay};
	int rc = rt_new(&in, &t, err, errlen);
	if (rc)
		return rc;
	pthread_mutex_lock(&dp->wlock);
	routes_publish(dp, t);
	pthread_mutex_unlock(&dp->wlock);
	return 0;
}

/* At close, after the threads are joined: the current table and every retired one. */
void routes_free_all(struct dp *dp)
{
	rt_free(atomic_load(&dp->table));
	atomic_store(&dp->table, NULL);
	while (dp->retired) {
		struct rtable *t = dp->retired;
		dp->retired = t->next_retired;
		rt_free(t);
	}
}
