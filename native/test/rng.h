/*
 * The test programs' random numbers: xorshift64*, seeded by rng_seed() from
 * the seed on the command line so that a failing case can be run again.
 * Not for anything but tests. Threads and locking: single-threaded.
 */
#ifndef RUDDER_TEST_RNG_H
#define RUDDER_TEST_RNG_H

#include <stdint.h>

static uint64_t rng_state;

static inline void rng_seed(uint64_t seed)
{
	rng_state = seed * 0x9E3779B97F4A7C15ULL + 1;
}

static inline uint64_t rnd(void)
{
	rng_state ^= rng_state >> 12;
	rng_state ^= rng_state << 25;
	rng_state ^= rng_state >> 27;
	return rng_state * 0x2545F4914F6CDD1DULL;
}

/* 0..n-1 (0 when n is 0) */
static inline uint32_t rn(uint32_t n)
{
	return n ? (uint32_t)(rnd() % n) : 0;
}

#endif
