/*
 * The anti-replay window of WireGuard's transport counters (whitepaper
 * section 5.4.6, which refers to RFC 6479's algorithm): a ring of 128
 * 64-bit words, one of which is always the partly filled "current" word, so
 * every counter up to 8,128 (127 x 64) behind the highest seen is tracked.
 * O(1) per packet, no allocation.
 *
 * Threads and locking: no lock inside. One window belongs to one receiving
 * keypair; the caller serialises wg_replay_check() per keypair (the data
 * plane's per-peer receive order, or a spinlock next to the keypair).
 * Call it only AFTER the packet authenticated, so a forged counter can never
 * move the window.
 */
#ifndef RUDDER_WG_REPLAY_H
#define RUDDER_WG_REPLAY_H

#include <stdbool.h>
#include <stdint.h>

#define WG_REPLAY_WORDS 128
#define WG_REPLAY_WINDOW ((WG_REPLAY_WORDS - 1) * 64) /* 8128 */

struct wg_replay {
	uint64_t top; /* highest counter accepted + 1 (0 = nothing yet) */
	uint64_t bits[WG_REPLAY_WORDS];
};

void wg_replay_init(struct wg_replay *r);
/*
 * True (and the counter is marked seen) if `counter` is below `limit` (the
 * caller passes REJECT_AFTER_MESSAGES), was not seen before and is not too
 * old for the window; false otherwise, with the window unchanged.
 */
bool wg_replay_check(struct wg_replay *r, uint64_t counter, uint64_t limit);

#endif
