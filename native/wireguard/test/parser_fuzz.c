/*
 * Seeded random-mutation fuzzer of every WireGuard message parser in
 * native/wireguard, run under AddressSanitizer/UBSan by the unit test
 * wireguard-fuzz with a fixed case count (clang/libFuzzer is not assumed).
 *
 *   parser_fuzz [cases] [seed]
 *
 * Inputs: genuine messages made by a second instance of the core (initiation,
 * response, cookie reply, transport data and keepalive), mutated (bit flips,
 * byte writes, truncation, extension, a lie in the type field) or replaced by
 * random bytes of random length. Each input lives in a heap block of exactly
 * its length, so a read past the datagram is an ASan error.
 *
 * Checked for every case, through the receive pipeline the data plane will
 * use (wg_cookie_check then the message's parser):
 *   - initiation: accepted only if the bytes differ from the genuine message
 *     at most in mac2, and not even there when under load;
 *   - response: accepted only if the bytes differ at most in mac2; a refused
 *     response leaves the handshake usable (the genuine one still completes);
 *   - cookie reply: accepted only if the bytes differ at most in the receiver
 *     index (routing, not authenticated);
 *   - transport: accepted only if byte-identical to the genuine message; a
 *     refused mutation never moves the replay window (the genuine message is
 *     still accepted afterwards, exactly once);
 *   - wg_receiver_index never reads past the input.
 * Threads and locking: single-threaded.
 */
#include "../cookie.h"
#include "../crypto.h"
#include "../noise.h"
#include "../timers.h"
#include "../../test/rng.h"
#include "check.h"

#include <stdlib.h>

static struct wg_identity ia, ib;
static struct wg_peer pa, pb; /* pa: A's view of B; pb: B's view of A */
static const uint8_t SRC[6] = {198, 18, 0, 1, 0xca, 0x6c};

static struct wg_peer *lookup_b(void *ctx, const uint8_t pub[WG_KEY_LEN])
{
	(void)ctx;
	return memcmp(pub, pb.remote_static, WG_KEY_LEN) == 0 ? &pb : NULL;
}

/* A heap copy of exactly n bytes (at least 1 allocated so malloc(0) is not special). */
static uint8_t *exact(const uint8_t *p, size_t n)
{
	uint8_t *q = malloc(n ? n : 1);
	if (n)
		memcpy(q, p, n);
	return q;
}

/* Mutates src (len n) into a new heap block; *outlen its length. */
static uint8_t *mutate(const uint8_t *src, size_t n, size_t *outlen)
{
	uint8_t buf[2048];
	size_t m = n;
	memcpy(buf, src, n);
	switch (rn(8)) {
	case 0: /* random bytes, random length */
		m = rn(4) ? rn(200) : rn(1600);
		for (size_t i = 0; i < m; i++)
			buf[i] = (uint8_t)rnd();
		if (m >= 4 && rn(2)) {
			buf[0] = (uint8_t)(1 + rn(4));
			buf[1] = buf[2] = buf[3] = 0;
		}
		break;
	case 1: /* truncate */
		m = rn((uint32_t)n + 1);
		break;
	case 2: /* extend */
		m = n + 1 + rn(64);
		for (size_t i = n; i < m; i++)
			buf[i] = (uint8_t)rnd();
		break;
	case 3: /* lie in the type / reserved bytes */
		buf[rn(4)] = (uint8_t)rnd();
		break;
	case 4: /* nothing: the genuine message */
		break;
	default: { /* 1..4 bit flips or byte writes */
		unsigned k = 1 + rn(4);
		for (unsigned i = 0; i < k && n; i++) {
			size_t at = rn((uint32_t)n);
			if (rn(2))
				buf[at] ^= (uint8_t)(1u << rn(8));
			else
				buf[at] = (uint8_t)rnd();
		}
	}
	}
	*outlen = m;
	return exact(buf, m);
}

/* Whether a and b (lengths la, lb) differ only inside [from, to). */
static bool differs_only_in(const uint8_t *a, size_t la, const uint8_t *b, size_t lb, size_t from, size_t to)
{
	if (la != lb)
		return false;
	for (size_t i = 0; i < la; i++)
		if (a[i] != b[i] && (i < from || i >= to))
			return false;
	return true;
}

static uint64_t t_now; /* the transport session's clock: stays within its lifetime */
static uint64_t now = 1000 * WG_NS_PER_S, wall = 1700000000ULL * WG_NS_PER_S;

static void fuzz_initiation(void)
{
	uint8_t init[WG_INITIATION_LEN], ts[12];
	wall += WG_NS_PER_S;
	wg_tai64n(ts, wall, NULL);
	CHECK(wg_create_initiation(&ia, &pa, 1, ts, now, init) == 0, "initiation");
	size_t n;
	uint8_t *m = mutate(init, sizeof init, &n);
	(void)wg_receiver_index(m, n);
	struct wg_initiation in;
	bool under_load = rn(4) == 0;
	bool ok = wg_cookie_check(&ib.cookies, m, n, SRC, sizeof SRC, under_load, now) == WG_COOKIE_OK &&
	        wg_open_initiation(&ib, m, n, lookup_b, NULL, &in) == 0;
	if (ok) {
		CHECK(in.peer == &pb, "initiation opened for the right peer");
		/* Under load mac2 counts too (A holds a cookie once a reply case ran). */
		CHECK(differs_only_in(m, n, init, sizeof init, 132, 148) && (!under_load || !memcmp(m + 132, init + 132, 16)),
		        "a changed initiation was accepted (len %zu)", n);
		wg_initiation_wipe(&in);
	}
	free(m);
}

static void fuzz_response(void)
{
	uint8_t init[WG_INITIATION_LEN], resp[WG_RESPONSE_LEN], ts[12];
	struct wg_initiation in;
	struct wg_keypair *ret[2];
	wall += WG_NS_PER_S;
	now += WG_NS_PER_S;
	wg_tai64n(ts, wall, NULL);
	CHECK(wg_create_initiation(&ia, &pa, 2, ts, now, init) == 0 && wg_open_initiation(&ib, init, sizeof init, lookup_b, NULL, &in) == 0 &&
	                wg_accept_initiation(&pb, &in, now) == 0 && wg_create_response(&ib, &pb, 3, now, resp, ret) == 0,
	        "genuine handshake up to the response");
	wg_keypair_free(ret[0]);
	wg_keypair_free(ret[1]);
	size_t n;
	uint8_t *m = mutate(resp, sizeof resp, &n);
	bool ok = wg_cookie_check(&ia.cookies, m, n, SRC, sizeof SRC, false, now) == WG_COOKIE_OK &&
	        wg_receiver_index(m, n) == pa.hs_local_index && wg_consume_response(&ia, &pa, m, n, now, ret) == 0;
	if (ok) {
		CHECK(differs_only_in(m, n, resp, sizeof resp, 76, 92), "a changed response was accepted (len %zu)", n);
		wg_keypair_free(ret[0]);
		wg_keypair_free(ret[1]);
	} else {
		CHECK(wg_consume_response(&ia, &pa, resp, sizeof resp, now, ret) == 0, "refused response disturbed the handshake");
		wg_keypair_free(ret[0]);
		wg_keypair_free(ret[1]);
	}
	free(m);
}

static void fuzz_cookie_reply(void)
{
	uint8_t init[WG_INITIATION_LEN], ts[12], reply[WG_COOKIE_REPLY_LEN];
	wall += WG_NS_PER_S;
	wg_tai64n(ts, wall, NULL);
	CHECK(wg_create_initiation(&ia, &pa, 4, ts, now, init) == 0 &&
	                wg_cookie_reply(&ib.cookies, init, sizeof init, SRC, sizeof SRC, now, reply) == 0,
	        "cookie reply");
	size_t n;
	uint8_t *m = mutate(reply, sizeof reply, &n);
	(void)wg_receiver_index(m, n);
	struct wg_cookie_maker saved = pa.cookie;
	if (wg_cookie_consume_reply(&pa.cookie, m, n, now) == 0)
		CHECK(differs_only_in(m, n, reply, sizeof reply, 4, 8), "a changed cookie reply was accepted (len %zu)", n);
	else
		CHECK(wg_cookie_consume_reply(&saved, reply, sizeof reply, now) == 0, "genuine reply refused after a bad one");
	free(m);
}

static void fuzz_transport(struct wg_keypair *send, struct wg_keypair *recv)
{
	uint8_t pt[1500], msg[1600], out[1600];
	size_t len = rn(3) ? rn(1421) : 0;
	for (size_t i = 0; i < len; i++)
		pt[i] = (uint8_t)rnd();
	long n = wg_transport_seal(send, pt, len, 1420, t_now, msg, NULL);
	CHECK(n >= 32, "seal");
	if (n < 32)
		return;
	size_t ml;
	uint8_t *m = mutate(msg, (size_t)n, &ml);
	uint8_t *o = malloc(ml > 32 ? ml - 32 + 16 : 16);
	(void)wg_receiver_index(m, ml);
	long r = wg_transport_open(recv, m, ml, t_now, o);
	if (r >= 0) {
		CHECK(ml == (size_t)n && memcmp(m, msg, ml) == 0, "a changed transport message was accepted");
		CHECK(wg_transport_open(recv, msg, (size_t)n, t_now, out) == WG_ERR_REPLAY, "replay after acceptance");
	} else {
		CHECK(wg_transport_open(recv, msg, (size_t)n, t_now, out) == (long)n - 32, "refused mutation moved the window");
	}
	free(o);
	free(m);
}

int main(int argc, char **argv)
{
	unsigned long cases = argc > 1 ? strtoul(argv[1], NULL, 10) : 20000;
	unsigned long seed = argc > 2 ? strtoul(argv[2], NULL, 10) : 1;
	rng_seed(seed);
	if (wg_crypto_init())
		return 1;
	uint8_t ka[32], kb[32], qa[32], qb[32], psk[32];
	CHECK(wg_x25519_generate(ka, qa) == 0 && wg_x25519_generate(kb, qb) == 0, "keys");
	memset(psk, 7, sizeof psk);
	CHECK(wg_identity_init(&ia, ka) == 0 && wg_identity_init(&ib, kb) == 0 && wg_peer_init(&pa, &ia, qb, psk) == 0 &&
	                wg_peer_init(&pb, &ib, qa, psk) == 0,
	        "setup");
	/* One session for the transport cases. */
	uint8_t init[WG_INITIATION_LEN], resp[WG_RESPONSE_LEN], ts[12];
	struct wg_initiation in;
	struct wg_keypair *ret[2];
	wg_tai64n(ts, wall, NULL);
	CHECK(wg_create_initiation(&ia, &pa, 10, ts, now, init) == 0 && wg_open_initiation(&ib, init, sizeof init, lookup_b, NULL, &in) == 0 &&
	                wg_accept_initiation(&pb, &in, now) == 0 && wg_create_response(&ib, &pb, 11, now, resp, ret) == 0 &&
	                wg_consume_response(&ia, &pa, resp, sizeof resp, now, ret) == 0,
	        "session");
	t_now = now;
	struct wg_keypair *a_send = pa.current, *b_recv = pb.next;
	pa.current = NULL; /* keep them out of the slot rotation below */
	pb.next = NULL;
	for (unsigned long c = 0; c < cases; c++) {
		switch (rn(4)) {
		case 0:
			fuzz_initiation();
			break;
		case 1:
			fuzz_response();
			break;
		case 2:
			fuzz_cookie_reply();
			break;
		default:
			fuzz_transport(a_send, b_recv);
			break;
		}
		if (n_failures)
			break;
	}
	wg_keypair_free(a_send);
	wg_keypair_free(b_recv);
	wg_peer_wipe(&pa);
	wg_peer_wipe(&pb);
	wg_identity_wipe(&ia);
	wg_identity_wipe(&ib);
	wg_crypto_fini();
	printf("%lu cases, seed %lu, %lu checks, %lu failures\n", cases, seed, n_checks, n_failures);
	return n_failures ? 1 : 0;
}
