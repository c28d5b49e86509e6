/*
 * How a data-plane thread waits for work: poll() on its fd and the stop
 * eventfd, or, at low packet rates, a short spin when the other thread of
 * its pair expects a reply soon (busy polling, dp_config.busy_poll;
 * fallback: plain poll() when its eventfds cannot be made).
 *
 * A thread that moved packets it was woken for sets the other thread's
 * kick_at and, if that one is asleep, writes its kick eventfd; the other
 * thread then polls its fd with a zero timeout for up to its budget after
 * the kick (20 us..1 ms, adaptive). Above 20k packets/s per thread nobody
 * kicks or spins for a reply: batching amortises wake-ups there (a busy
 * thread only lingers, below). The rate is a worker's,
 * not a thread's: a thread whose partner is busy (a bulk TCP sender's rx
 * thread, which only sees ACKs) neither kicks it nor runs the reply pass —
 * a busy thread does not spin and finds the work in its next batch, so the
 * kick would only wake it for nothing and the reply pass would take its
 * packets (and its tx_lock) from under it. An idle daemon never spins (a
 * spin needs a kick, a kick needs a packet).
 *
 * Serving, the high-rate half: a thread whose window was busy while its
 * partner's was not (a bulk TCP flow's data thread; its partner sees only
 * the ACKs) marks the partner served. The server then runs the partner's
 * pass after each of its own and, when it sleeps, watches the partner's fd
 * as well; the served thread sleeps on its kick and stop eventfds alone. The
 * ACKs of a bulk flow then wake no thread on either host: the receiver's rx
 * thread sends them right after the writes that made them, the sender's tx
 * thread takes them in between its reads. Serving ends when the server's
 * own fd was quiet for SERVE_IDLE_NS or it moved more for the partner than
 * for itself in a window; the partner is kicked back to its fd, which is
 * level-triggered, so nothing that came meanwhile goes unseen.
 *
 * Lingering, for busy threads: a thread whose last window was busy and
 * whose fds (its own, and the partner's while serving) just ran dry polls
 * them again, sched_yield() in between, for up to LINGER_NS before it
 * sleeps. In a bulk flow the next batch is usually a few microseconds
 * away; sleeping for it cost a poll wake-up, a context switch and (on a
 * VM whose idle vCPU halts) a halt and an IPI, some 9k times a second on
 * the receiving host. The yield leaves the CPU to anything runnable there.
 *
 * Threads and locking: each function runs on the thread named by `me` and
 * touches its own struct spin_local; w->spin[] is written by both threads
 * of a worker, seq_cst (`busy`: relaxed, a hint), no lock. `served` is
 * written by the server only; with `asleep` it is a store-then-load pair on
 * each side, so either the served thread sees it cleared before it sleeps or
 * the server sees it asleep and kicks it.
 */
#define _GNU_SOURCE
#include "dataplane/state.h"

#include <errno.h>
#include <poll.h>
#include <sched.h>
#include <time.h>
#include <unistd.h>

#define NS_PER_S 1000000000ull
#define SPIN_MIN_NS 20000ull
#define SPIN_MAX_NS 1000000ull
#define SPIN_WINDOW_NS 2000000ull
/* Packets per second of one thread above which nobody spins: batching amortises wake-ups there. */
#define SPIN_MAX_RATE 20000ull
/* A server whose own fd moved nothing for this long hands the partner's fd back. */
#define SERVE_IDLE_NS 2000000ull
/* A served thread wakes this often to look at its flag (a safety net: the server kicks it). */
#define SERVED_POLL_MS 100
/* A busy thread whose fds ran dry polls them this long, yielding the CPU in between, before it sleeps. */
#define LINGER_NS 15000ull

static uint64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * NS_PER_S + (uint64_t)ts.tv_nsec;
}

/* Ends serving the other thread (if this one does) and kicks it back to its fd. */
static void serve_end(struct worker *w, int me)
{
	struct spin_slot *o = &w->spin[1 - me];
	if (!atomic_load(&o->served))
		return;
	atomic_store(&o->served, 0);
	if (atomic_load(&o->asleep)) {
		uint64_t one = 1;
		if (write(o->kick_fd, &one, sizeof one) < 0) {
			/* overflow only: it is readable anyway */
		}
	}
}

bool serving(struct worker *w, int me)
{
	return atomic_load_explicit(&w->spin[1 - me].served, memory_order_relaxed) != 0;
}

void serve_note(struct dp *dp, struct spin_local *sl, uint64_t *cnt, uint64_t npk)
{
	sl->served_pkts += npk;
	cnt[DP_SERVED_PACKETS] += npk;
	dp_counters_flush(dp->c, cnt);
}

/*
 * Thread `me` just moved `npk` packets. At a low rate, and unless it found
 * them by spinning (a reply does not call for another reply), the other
 * thread is asked to spin for what will likely come back, and woken now if
 * asleep: its wake-up then overlaps the packet's trip instead of following it.
 * At the end of each rate window it also starts or ends serving the other.
 */
void spin_note(struct worker *w, int me, struct spin_local *sl, uint64_t npk, bool found_by_spin)
{
	struct dp *dp = w->dp;
	if (!dp->off.busy_poll || npk == 0)
		return;
	uint64_t now = now_ns();
	sl->own_at = now;
	sl->win_pkts += npk;
	uint64_t el = now - sl->win_start;
	if (el >= SPIN_WINDOW_NS) {
		bool partner_heavy = sl->served_pkts > sl->win_pkts; /* a flow the other way: each thread its own */
		sl->low_rate = sl->win_pkts * NS_PER_S <= SPIN_MAX_RATE * el;
		sl->win_start = now;
		sl->win_pkts = 0;
		sl->served_pkts = 0;
		atomic_store_explicit(&w->spin[me].busy, !sl->low_rate, memory_order_relaxed);
		if (!sl->low_rate && !spin_other_busy(w, me) && !partner_heavy)
			atomic_store(&w->spin[1 - me].served, 1);
		else
			serve_end(w, me);
	}
	if (!sl->low_rate || found_by_spin || spin_other_busy(w, me))
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

bool spin_other_busy(struct worker *w, int me)
{
	return atomic_load_explicit(&w->spin[1 - me].busy, memory_order_relaxed) != 0;
}

/*
 * Looks at pf[0..n) with zero-timeout polls until one is readable (true;
 * *found, unless NULL, = when the look that found it started) or
 * `deadline` passes or stop is requested (false). `yield` gives the CPU
 * away between looks. Spinning and lingering both wait this way.
 */
static bool poll_until(struct dp *dp, struct pollfd *pf, nfds_t n, uint64_t deadline, bool yield, uint64_t *found)
{
	for (uint64_t now = now_ns(); now < deadline && !atomic_load_explicit(&dp->stopping, memory_order_relaxed);
	        now = now_ns()) {
		if (poll(pf, n, 0) > 0) {
			if (found)
				*found = now;
			return true;
		}
		if (yield)
			sched_yield();
	}
	return false;
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
	struct pollfd pf = {.fd = fd, .events = POLLIN};
	uint64_t found;
	if (poll_until(dp, &pf, 1, kick + sl->budget, false, &found)) {
		uint64_t b = (3 * sl->budget + 4 * (found - kick)) / 4;
		sl->budget = b < SPIN_MIN_NS ? SPIN_MIN_NS : b > SPIN_MAX_NS ? SPIN_MAX_NS
		                                                             : b;
		sl->missed_kick = 0;
		return true;
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
 * kick eventfd, and with `partner` (serving) the other thread's fd as
 * pf[3] for up to `ms`. Returns poll's result; *kicked is set when the kick
 * alone woke it (drained here), so the caller spins instead of reading.
 */
static int sleep_poll(struct worker *w, int me, struct pollfd *pf, int partner, int ms, bool *kicked)
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
	pf[3].fd = partner;
	pf[3].events = POLLIN;
	pf[3].revents = 0;
	int pr = poll(pf, partner >= 0 ? 4 : 3, ms);
	atomic_store(&s->asleep, 0);
	if (pr > 0 && pf[2].revents) {
		uint64_t v;
		if (read(s->kick_fd, &v, sizeof v) < 0) {
			/* EAGAIN: someone drained it already */
		}
		*kicked = !pf[0].revents && !pf[1].revents && !(partner >= 0 && pf[3].revents);
	}
	return pr;
}

/* A served thread's wait: its stop and kick eventfds only, until the server hands its fd back. */
static enum wake served_wait(struct worker *w, int me)
{
	struct spin_slot *s = &w->spin[me];
	struct pollfd pf[2] = {{.fd = w->dp->stop_fd, .events = POLLIN}, {.fd = s->kick_fd, .events = POLLIN}};
	atomic_store(&s->asleep, 1);
	if (!atomic_load(&s->served)) {
		atomic_store(&s->asleep, 0);
		return WAKE_AGAIN;
	}
	int pr = poll(pf, 2, SERVED_POLL_MS);
	atomic_store(&s->asleep, 0);
	if (pr > 0 && pf[0].revents)
		return WAKE_STOP;
	if (pr > 0 && pf[1].revents) {
		uint64_t v;
		if (read(s->kick_fd, &v, sizeof v) < 0) {
			/* EAGAIN: someone drained it already */
		}
	}
	return WAKE_AGAIN;
}

/* A busy thread's last look before sleeping (see the note on top): true if fd or partner became readable. */
static bool linger(struct dp *dp, int fd, int partner)
{
	struct pollfd pf[2] = {{.fd = fd, .events = POLLIN}, {.fd = partner, .events = POLLIN}};
	return poll_until(dp, pf, partner >= 0 ? 2 : 1, now_ns() + LINGER_NS, true, NULL);
}

/* Sleeps up to ms unless stop is requested; returns true on stop. */
bool wait_stop(struct dp *dp, int ms)
{
	struct pollfd pf = {.fd = dp->stop_fd, .events = POLLIN};
	return poll(&pf, 1, ms) > 0;
}

/*
 * A thread's wait for work on pf[0] (pf[1] is the stop eventfd): a spin if
 * the other thread of its pair asked for one, else poll(). WAKE_AGAIN: woken
 * by a kick (spin next round) or a transient poll error. *spun tells whether
 * the work was found spinning (busy polling's rate bookkeeping needs it).
 */
enum wake wait_ready(struct worker *w, int me, struct spin_local *sl, struct pollfd *pf, bool *spun, uint64_t *cnt)
{
	*spun = false;
	if (w->dp->off.busy_poll && atomic_load(&w->spin[me].served))
		return served_wait(w, me);
	*spun = spin_wait(w, me, sl, pf[0].fd);
	if (*spun)
		return WAKE_WORK;
	int partner = -1, ms = -1;
	if (serving(w, me)) {
		uint64_t quiet = now_ns() - sl->own_at;
		if (quiet >= SERVE_IDLE_NS) {
			serve_end(w, me);
		} else {
			partner = me == READER_TX ? w->udp_fd : w->tun_fd;
			ms = (int)((SERVE_IDLE_NS - quiet + 999999) / 1000000);
		}
	}
	if (w->dp->off.busy_poll && !sl->low_rate) {
		cnt[DP_LINGERS]++;
		if (linger(w->dp, pf[0].fd, partner)) {
			cnt[DP_LINGER_FOUND]++;
			return WAKE_WORK;
		}
	}
	bool kicked;
	int pr = sleep_poll(w, me, pf, partner, ms, &kicked);
	if (pr < 0)
		return errno != EINTR && wait_stop(w->dp, 100) ? WAKE_STOP : WAKE_AGAIN;
	if (pf[1].revents)
		return WAKE_STOP;
	if (kicked || pr == 0)
		return WAKE_AGAIN;
	spin_woke(w->dp, sl);
	return WAKE_WORK;
}
