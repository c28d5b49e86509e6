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
 * kicks or spins: batching amortises wake-ups there. The rate is a worker's,
 * not a thread's: a thread whose partner is busy (a bulk TCP sender's rx
 * thread, which only sees ACKs) neither kicks it nor runs the reply pass —
 * a busy thread does not spin and finds the work in its next batch, so the
 * kick would only wake it for nothing and the reply pass would take its
 * packets (and its tx_lock) from under it. An idle daemon never spins (a
 * spin needs a kick, a kick needs a packet).
 *
 * Threads and locking: each function runs on the thread named by `me` and
 * touches its own struct spin_local; w->spin[] is written by both threads
 * of a worker, seq_cst (`busy`: relaxed, a hint), no lock.
 */
#define _GNU_SOURCE
#include "dataplane/state.h"

#include <errno.h>
#include <poll.h>
#include <time.h>
#include <unistd.h>

#define NS_PER_S 1000000000ull
#define SPIN_MIN_NS 20000ull
#define SPIN_MAX_NS 1000000ull
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
void spin_note(struct worker *w, int me, struct spin_local *sl, uint64_t npk, bool found_by_spin)
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
		atomic_store_explicit(&w->spin[me].busy, !sl->low_rate, memory_order_relaxed);
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
			sl->budget = b < SPIN_MIN_NS ? SPIN_MIN_NS : b > SPIN_MAX_NS ? SPIN_MAX_NS
			                                                             : b;
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
enum wake wait_ready(struct worker *w, int me, struct spin_local *sl, struct pollfd *pf, bool *spun)
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
