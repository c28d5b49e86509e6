/*
 * Open and close of the data plane: the workers (one per TUN queue), their
 * buffers, sockets (udp/), TUN queues (tun/) and threads; what the kernel
 * granted goes to dp->off. Threads and locking: dp_open and dp_close run on
 * the caller's (JS) thread; dp_open fills everything before it starts the
 * threads, dp_close stops and joins them before it frees anything. dp->off
 * and dp->ip's settings are read-only once the threads run.
 *
 * Offloads, each detected here with its own fallback (all off when
 * dp_config.offloads is false): TUN TSO/USO and the virtio header
 * (tun/tun.c), UDP GSO and GRO (udp/udp.c), coalescing on receive when the
 * TUN has the virtio header. Queues: the TUN has dp->nw queues
 * (IFF_MULTI_QUEUE; default one per CPU), each served by its own worker;
 * a kernel refusing a queue gives fewer workers.
 *
 * Buffers are allocated once here, per worker (tx: BATCH * 64 KB reads +
 * segment headers; rx: BATCH * 64 KB + coalescer tables; pages an idle
 * worker never touches stay unbacked); nothing per packet. Nothing here
 * exits or aborts.
 */
#define _GNU_SOURCE
#include "dataplane/state.h"

#include "common/err.h"
#include "tun/tun.h"
#include "udp/udp.h"

#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

/* Appends "what: reason" to the offloads note (why an offload asked for is off). */
static void note(struct dp_offloads *o, const char *what, const char *why)
{
	size_t used = strlen(o->note);
	snprintf(o->note + used, sizeof o->note - used, "%s%s%s%s", used ? "; " : "", what, why ? ": " : "", why ? why : "");
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
	return n < 1 ? 1 : n > DP_MAX_QUEUES ? DP_MAX_QUEUES
	                                     : (unsigned)n;
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
		wg_dev_stop(dp);
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
		pthread_mutex_destroy(&w->rx_lock);
		if (w->tx) {
			free(w->tx->bufs);
			free(w->tx->wbuf);
			if (w->tx->wgc)
				wg_txcache_free(w->tx->wgc);
			free(w->tx->wgc);
		}
		if (w->rx)
			free(w->rx->bufs);
		free(w->tx);
		free(w->rx);
	}
	if (dp->stop_fd >= 0)
		close(dp->stop_fd);
	/* Threads are gone: every table can go. */
	routes_free_all(dp);
	wg_dev_close(dp);
	pthread_mutex_destroy(&dp->wlock);
	ip_ctx_destroy(&dp->ip);
	free(dp->w);
	free(dp);
}

int dp_open(const struct dp_config *cfg, struct dp_counters *counters, struct dp **out, char *ifname,
        char *err, size_t errlen)
{
	/* Callers pass 0..DP_MAX_QUEUES (native.ts checks); more is never used to index. */
	unsigned nq = cfg->queues == 0 ? default_queues() : cfg->queues > DP_MAX_QUEUES ? DP_MAX_QUEUES
	                                                                                : cfg->queues;
	struct dp *dp = calloc(1, sizeof *dp);
	if (!dp)
		return errf(err, errlen, ENOMEM, "data plane%s", "");
	dp->stop_fd = -1;
	dp->v6_underlay = cfg->ipv6_underlay;
	pthread_mutex_init(&dp->wlock, NULL);
	ip_ctx_init(&dp->ip, cfg->local_net, cfg->local_prefix, cfg->icmp_source);
	ip6_ctx_init(&dp->ip, cfg->local6_net, cfg->local6_prefix, cfg->icmp6_source, cfg->mtu);
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
		pthread_mutex_init(&w->rx_lock, NULL);
	}
	dp->c = counters;
	for (int i = 0; i < DP_NCOUNTERS; i++)
		atomic_store(&counters->v[i], 0);
	atomic_store(&dp->gen, 1);

	int rc;
	struct rtable *empty;
	struct rt_input none = {0};
	if ((rc = rt_new(&none, &empty, err, errlen)) != 0)
		goto fail;
	if (cfg->wg && (rc = wg_dev_open(dp, cfg->wg->private_key, cfg->wg->psk, cfg->wg->persistent_keepalive, cfg->wg->tai64n_floor, err, errlen)) != 0)
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
		if (w->tx && dp->wg) {
			w->tx->wbuf = malloc(WG_WBUF);
			w->tx->wgc = calloc(1, sizeof *w->tx->wgc);
		}
		if (!w->tx || !w->rx || !w->tx->bufs || !w->rx->bufs || (dp->wg && (!w->tx->wbuf || !w->tx->wgc))) {
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
	int fds[DP_MAX_QUEUES];
	if ((rc = udp_open_group(cfg->ipv6_underlay, cfg->bind_addr, cfg->port, nq, fds, err, errlen)) < 0)
		goto fail;
	for (unsigned k = 0; k < nq; k++)
		dp->w[k].udp_fd = fds[k];
	if (cfg->offloads) {
		struct udp_caps uc;
		udp_probe_offloads(fds[0], &uc);
		dp->off.udp_gso = uc.gso;
		dp->off.udp_gro = uc.gro;
		if (uc.note[0])
			note(&dp->off, uc.note, NULL);
		for (unsigned k = 1; k < nq && uc.gro; k++)
			udp_enable_gro(fds[k]);
	}
	struct tun_caps caps;
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
	dp->ip.tun_vnet_hdr = caps.vnet_hdr;
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
	if (dp->wg && (rc = wg_dev_start(dp, err, errlen)) != 0)
		goto fail;
	*out = dp;
	return 0;

fail:
	dp_close(dp);
	return rc;
}
