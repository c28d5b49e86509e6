/*
 * The route table (see routes.h) and how a new one is published.
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
	uint32_t public_ip;
	uint16_t port;
	struct wgp *peer;
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

static int wpeer_cmp(const void *a, const void *b)
{
	const struct rt_wpeer *x = a, *y = b;
	uint64_t kx = (uint64_t)x->ip << 16 | x->port, ky = (uint64_t)y->ip << 16 | y->port;
	return kx < ky ? -1 : kx > ky;
}

void rt_free(struct rtable *t)
{
	if (!t)
		return;
	for (uint32_t i = 0; i < t->nwpeers && t->put_peer; i++)
		t->put_peer(t->wpeers[i].peer);
	free(t);
}

/* One allocation: header, entries, peers. */
int rt_new(const struct dp_route *routes, struct wgp *const *route_peer, size_t n, const struct rt_wpeer *wpeers,
        size_t nwpeers, struct rtable **out, char *err, size_t errlen)
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
		tmp[i].net = r->net & ip4_mask(r->prefix);
		tmp[i].prefix = r->prefix;
		tmp[i].public_ip = r->public_ip;
		tmp[i].port = r->port;
		tmp[i].peer = route_peer ? route_peer[i] : NULL;
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

	size_t sz = sizeof(struct rtable) + n * sizeof(struct rt_entry) + nwpeers * sizeof(struct rt_wpeer) +
	        n * sizeof(uint32_t);
	struct rtable *t = calloc(1, sz);
	if (!t) {
		free(tmp);
		return errf(err, errlen, ENOMEM, "route table%s", "");
	}
	t->entries = (struct rt_entry *)(t + 1);
	t->wpeers = (struct rt_wpeer *)(t->entries + n);
	t->peers = (uint32_t *)(t->wpeers + nwpeers);
	if (nwpeers) {
		memcpy(t->wpeers, wpeers, nwpeers * sizeof *wpeers);
		qsort(t->wpeers, nwpeers, sizeof *wpeers, wpeer_cmp);
		t->nwpeers = (uint32_t)nwpeers;
	}
	for (size_t i = 0; i < n; i++) {
		struct rt_entry *e = &t->entries[i];
		e->net = tmp[i].net;
		e->dst.sin_family = AF_INET;
		e->dst.sin_addr.s_addr = htonl(tmp[i].public_ip);
		e->dst.sin_port = htons(tmp[i].port);
		e->peer = tmp[i].peer;
		if (i == 0 || tmp[i].prefix != tmp[i - 1].prefix) {
			struct rt_group *g = &t->groups[t->ngroups++];
			g->mask = ip4_mask(tmp[i].prefix);
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

int dp_set_routes(struct dp *dp, const struct dp_route *routes, size_t n, char *err, size_t errlen)
{
	if (dp->wg) {
		snprintf(err, errlen, "a WireGuard data plane takes peers (setPeers), not routes");
		return -EINVAL;
	}
	struct rtable *t;
	int rc = rt_new(routes, NULL, n, NULL, 0, &t, err, errlen);
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
