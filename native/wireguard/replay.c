/*
 * Anti-replay sliding window (see replay.h; RFC 6479 section 2 describes the
 * bitmap-ring idea). Threads and locking: none inside; the caller serialises
 * calls per window.
 */
#include "replay.h"

#include <string.h>

#define WORD_MASK (WG_REPLAY_WORDS - 1)

void wg_replay_init(struct wg_replay *r)
{
	memset(r, 0, sizeof *r);
}

bool wg_replay_check(struct wg_replay *r, uint64_t counter, uint64_t limit)
{
	if (counter >= limit)
		return false;
	uint64_t word = counter >> 6;
	if (counter >= r->top) {
		/* Moving forward: clear the words between the old top word and the
		 * new one (at most the whole ring), then the new counter is fresh. */
		uint64_t have = r->top ? ((r->top - 1) >> 6) : 0;
		uint64_t steps = word - have;
		if (r->top == 0) {
			memset(r->bits, 0, sizeof r->bits);
		} else if (steps >= WG_REPLAY_WORDS) {
			memset(r->bits, 0, sizeof r->bits);
		} else {
			for (uint64_t i = 1; i <= steps; i++)
				r->bits[(have + i) & WORD_MASK] = 0;
		}
		r->top = counter + 1;
	} else if (r->top - 1 - counter > WG_REPLAY_WINDOW) {
		return false; /* too old to tell */
	}
	uint64_t *w = &r->bits[word & WORD_MASK];
	uint64_t bit = 1ULL << (counter & 63);
	if (*w & bit)
		return false;
	*w |= bit;
	return true;
}
