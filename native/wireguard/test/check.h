/*
 * Tiny check helpers shared by the WireGuard test programs: hex decoding and
 * a CHECK macro that counts checks and failures (the node:test driver reads
 * the final "N checks, 0 failures" line). Threads and locking: single-threaded.
 */
#ifndef RUDDER_WG_TEST_CHECK_H
#define RUDDER_WG_TEST_CHECK_H

#include <stdio.h>
#include <stdint.h>
#include <string.h>
#include <stdlib.h>

static unsigned long n_checks, n_failures;

#define CHECK(cond, ...) \
	do { \
		n_checks++; \
		if (!(cond)) { \
			n_failures++; \
			if (n_failures <= 20) { \
				printf("FAIL %s:%d: ", __FILE__, __LINE__); \
				printf(__VA_ARGS__); \
				printf("\n"); \
			} \
		} \
	} while (0)

static inline size_t unhex(uint8_t *out, size_t cap, const char *hex)
{
	size_t n = strlen(hex) / 2;
	if (n > cap) {
		printf("unhex: vector of %zu bytes does not fit %zu\n", n, cap);
		abort();
	}
	for (size_t i = 0; i < n; i++) {
		unsigned v;
		sscanf(hex + 2 * i, "%2x", &v);
		out[i] = (uint8_t)v;
	}
	return n;
}

static inline int eqhex(const uint8_t *p, const char *hex)
{
	uint8_t buf[1024];
	size_t n = unhex(buf, sizeof buf, hex);
	return memcmp(p, buf, n) == 0;
}

#endif
