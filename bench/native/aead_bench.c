/*
 * Seal and open of one WireGuard transport payload through native/wireguard
 * (crypto.c), timed: what `node dist/bench/crypto.js` builds twice — linked
 * to a libcrypto.so (the EVP path) and with libcrypto linked in and exported
 * (the direct path, as in Node) — and runs. Prints one line per size:
 *   "<path> <bytes> seal <ns> open <ns>" (best of 5 runs of N messages).
 * Threads and locking: single-threaded.
 */
#include "wireguard/crypto.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static uint8_t pt[2048], ct[2048 + 16], back[2048];

static double now_ns(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)t.tv_sec * 1e9 + (double)t.tv_nsec;
}

int main(int argc, char **argv)
{
	long n = argc > 1 ? atol(argv[1]) : 200000;
	if (n <= 0 || wg_crypto_init() != 0) {
		printf("usage: aead_bench [messages > 0]; or libcrypto lacks an algorithm\n");
		return 1;
	}
	struct wg_aead a;
	uint8_t key[WG_KEY_LEN];
	for (int i = 0; i < WG_KEY_LEN; i++)
		key[i] = (uint8_t)(i * 7 + 1);
	if (wg_aead_init(&a) != 0 || wg_aead_setkey(&a, key) != 0)
		return 1;
	const size_t sizes[] = {1420, 64};
	for (size_t k = 0; k < sizeof sizes / sizeof sizes[0]; k++) {
		size_t len = sizes[k], pad = (16 - len % 16) % 16;
		double seal = 1e18, open = 1e18;
		for (int r = 0; r < 5; r++) {
			double t0 = now_ns();
			for (long i = 0; i < n; i++)
				if (wg_aead_seal(&a, (uint64_t)i, NULL, 0, pt, len, pad, ct) != 0)
					return 1;
			double t1 = now_ns();
			for (long i = 0; i < n; i++)
				if (wg_aead_open(&a, (uint64_t)n - 1, NULL, 0, ct, len + pad + WG_TAG_LEN, back) != 0)
					return 1;
			double t2 = now_ns();
			seal = (t1 - t0) / (double)n < seal ? (t1 - t0) / (double)n : seal;
			open = (t2 - t1) / (double)n < open ? (t2 - t1) / (double)n : open;
		}
		printf("%s %zu seal %.0f open %.0f\n", wg_crypto_path(), len, seal, open);
	}
	wg_aead_free(&a);
	return 0;
}
