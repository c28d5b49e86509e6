/*
 * Property test of native/wireguard/replay.c against a simple reference
 * model: a set of every counter ever accepted plus the highest one, and the
 * documented rule "accept iff below the limit, never accepted before, and
 * not more than 8,128 behind the highest accepted". Random sequences from a
 * fixed seed mix in-order runs, reordering near the top, replays of recent
 * and old counters, jumps of every size (one word, the whole ring, far
 * beyond) and counters at the limit.
 *
 *   replay_test [sequences] [seed]
 *
 * Threads and locking: single-threaded.
 */
#include "../replay.h"
#include "../../test/rng.h"
#include "check.h"

#include <stdlib.h>

#define LIMIT (UINT64_MAX - (1ULL << 13)) /* REJECT_AFTER_MESSAGES */
#define MAXOPS 4000

/* Reference model: sorted-free linear list (sequences are short). */
static uint64_t seen[MAXOPS];
static size_t nseen;
static bool have_top;
static uint64_t top;

static bool model_check(uint64_t c)
{
	if (c >= LIMIT)
		return false;
	for (size_t i = 0; i < nseen; i++)
		if (seen[i] == c)
			return false;
	if (have_top && c < top && top - c > WG_REPLAY_WINDOW)
		return false;
	seen[nseen++] = c;
	if (!have_top || c > top)
		top = c;
	have_top = true;
	return true;
}

static uint64_t pick(uint64_t base)
{
	switch (rn(10)) {
	case 0:
		return base + 1;
	case 1:
		return base + rn(64);
	case 2:
		return base > 100 ? base - rn(100) : rn(100); /* reorder / replay near the top */
	case 3:
		return base > WG_REPLAY_WINDOW ? base - WG_REPLAY_WINDOW + rn(3) - 1 : base; /* the edge */
	case 4:
		return base > 20000 ? base - 8000 - rn(400) : base; /* around the edge */
	case 5:
		return base + 64 * rn(130) + rn(64); /* jumps up to past the ring */
	case 6:
		return base + rn(1u << 20); /* far jumps */
	case 7:
		return nseen ? seen[rn((uint32_t)nseen)] : base; /* exact replay */
	case 8:
		return LIMIT - 2 + rn(4); /* at the limit */
	default:
		return base + rn(4);
	}
}

int main(int argc, char **argv)
{
	unsigned long seqs = argc > 1 ? strtoul(argv[1], NULL, 10) : 2000;
	unsigned long seed = argc > 2 ? strtoul(argv[2], NULL, 10) : 1;
	rng_seed(seed);
	struct wg_replay r;
	for (unsigned long s = 0; s < seqs; s++) {
		wg_replay_init(&r);
		nseen = 0;
		have_top = false;
		top = 0;
		uint64_t base = rn(4) == 0 ? rnd() >> 4 : rn(1000);
		uint32_t ops = 1 + rn(MAXOPS - 1);
		bool near_limit = false;
		for (uint32_t i = 0; i < ops; i++) {
			uint64_t c = pick(have_top ? top : base);
			if (c >= LIMIT - 4) {
				if (near_limit)
					continue; /* once per sequence keeps the model simple */
				near_limit = true;
			}
			bool want = model_check(c), got = wg_replay_check(&r, c, LIMIT);
			CHECK(want == got, "seq %lu op %u counter %llu: model %d window %d (top %llu)", s, i,
			        (unsigned long long)c, want, got, (unsigned long long)top);
			if (want != got)
				break;
		}
	}
	/* Fixed edge cases. */
	wg_replay_init(&r);
	CHECK(wg_replay_check(&r, 0, LIMIT) && !wg_replay_check(&r, 0, LIMIT), "0 once");
	CHECK(wg_replay_check(&r, WG_REPLAY_WINDOW, LIMIT), "window edge");
	CHECK(!wg_replay_check(&r, 0, LIMIT), "0 still seen");
	CHECK(wg_replay_check(&r, WG_REPLAY_WINDOW + 1, LIMIT) && !wg_replay_check(&r, 0, LIMIT), "0 now too old");
	CHECK(wg_replay_check(&r, 1, LIMIT), "1 exactly 8128 behind: inside, unseen");
	CHECK(wg_replay_check(&r, 2 * WG_REPLAY_WINDOW + 1, LIMIT) && !wg_replay_check(&r, WG_REPLAY_WINDOW, LIMIT) &&
	                wg_replay_check(&r, WG_REPLAY_WINDOW + 2, LIMIT),
	        "a jump of a whole window: 8129 behind refused, 8128 behind fresh");
	CHECK(!wg_replay_check(&r, LIMIT, LIMIT), "limit refused");
	printf("%lu sequences, seed %lu, %lu checks, %lu failures\n", seqs, seed, n_checks, n_failures);
	return n_failures ? 1 : 0;
}
