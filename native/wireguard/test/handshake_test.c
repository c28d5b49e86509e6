/*
 * Handshake and transport tests of native/wireguard (noise.c, cookie.c,
 * timers.c) between two instances of this code, A and B:
 *   - full handshakes both ways (A initiates, then B), with and without PSK;
 *     the derived keys agree (transport both ways), the responder's keypair
 *     stays `next` until the first transport message confirms it;
 *   - every single-byte change of an initiation or a response is refused
 *     (mac1, AEAD or type check) and leaves the handshake state usable;
 *   - a replayed initiation (same timestamp) is refused, a PSK mismatch
 *     fails, an unknown initiator fails, a too frequent initiation fails;
 *   - transport: padding to 16 (capped at the MTU), keepalives, tampering,
 *     replay, wrong keypair, expiry;
 *   - cookies: under load an initiation without mac2 gets a cookie reply,
 *     the initiator takes it, its next initiation carries a valid mac2;
 *     replies are refused when tampered or unsolicited; secret rotation;
 *   - TAI64N never goes backwards (floor), timers' decisions;
 *   - a restarted side: the handshake due at once for a restart's peers, on
 *     a transport index we lack only without a usable session, and the
 *     REKEY_TIMEOUT spacing of initiations.
 * Both sides being this code, a mistake made alike on both (a label, a hash
 * order, a KDF step) passes here: handshake_kat_test holds each side to
 * vectors from an independent reference.
 * Threads and locking: single-threaded. Prints "N checks, 0 failures".
 */
#include "../cookie.h"
#include "../crypto.h"
#include "../noise.h"
#include "../timers.h"
#include "check.h"

#define S WG_NS_PER_S

struct side {
	struct wg_identity id;
	struct wg_peer peer; /* the other side */
	uint32_t next_index;
};

static struct wg_peer *lookup(void *ctx, const uint8_t pub[WG_KEY_LEN])
{
	struct side *s = ctx;
	return memcmp(pub, s->peer.remote_static, WG_KEY_LEN) == 0 ? &s->peer : NULL;
}

static void setup(struct side *a, struct side *b, const uint8_t *psk_a, const uint8_t *psk_b)
{
	uint8_t pa[32], pb[32], qa[32], qb[32];
	CHECK(wg_x25519_generate(pa, qa) == 0 && wg_x25519_generate(pb, qb) == 0, "keys");
	CHECK(wg_identity_init(&a->id, pa) == 0 && wg_identity_init(&b->id, pb) == 0, "identities");
	CHECK(memcmp(a->id.pub, qa, 32) == 0, "identity public key");
	CHECK(wg_peer_init(&a->peer, &a->id, b->id.pub, psk_a) == 0 && wg_peer_init(&b->peer, &b->id, a->id.pub, psk_b) == 0,
	        "peers");
	a->next_index = 0x1000;
	b->next_index = 0x2000;
	wg_wipe(pa, 32);
	wg_wipe(pb, 32);
}

static void teardown(struct side *a, struct side *b)
{
	wg_peer_wipe(&a->peer);
	wg_peer_wipe(&b->peer);
	wg_identity_wipe(&a->id);
	wg_identity_wipe(&b->id);
}

static uint64_t wall = 1700000000ULL * S;

static void stamp(uint8_t ts[12], struct side *s)
{
	(void)s;
	wall += 50 * 1000 * 1000; /* 50 ms, beyond the 2^24 ns grid */
	wg_tai64n(ts, wall, NULL);
}

static void free2(struct wg_keypair *r[2])
{
	wg_keypair_free(r[0]);
	wg_keypair_free(r[1]);
}

/* Exchanges one transport message from `from` to `to` with the given keypairs. */
static bool transport_ok(struct wg_keypair *send, struct wg_keypair *recv, struct wg_peer *to, size_t len, uint64_t now)
{
	uint8_t pt[1500] = {0}, msg[1600], back[1600];
	for (size_t i = 0; i < len; i++)
		pt[i] = (uint8_t)(i * 31 + 7);
	long n = wg_transport_seal(send, pt, len, 1420, now, msg, NULL);
	if (n < 0 || (size_t)n != 32 + ((len + 15) & ~(size_t)15) || (size_t)n > 1420 + 32)
		if (!(len > 1408 && (size_t)n == 1420 + 32))
			return false;
	if (wg_receiver_index(msg, (size_t)n) != recv->local_index)
		return false;
	long m = wg_transport_open(recv, msg, (size_t)n, now, back);
	if (m != n - 32 || memcmp(back, pt, len) != 0)
		return false;
	for (long i = (long)len; i < m; i++)
		if (back[i])
			return false;
	struct wg_keypair *ret = NULL;
	wg_received_with(to, recv, &ret);
	wg_keypair_free(ret);
	return true;
}

/* A full handshake: i initiates to r. Returns 0 on success. */
static int handshake(struct side *i, struct side *r, uint64_t now)
{
	uint8_t init[WG_INITIATION_LEN], resp[WG_RESPONSE_LEN], ts[12];
	struct wg_initiation in;
	struct wg_keypair *ret[2];
	stamp(ts, i);
	if (wg_create_initiation(&i->id, &i->peer, i->next_index++, ts, now, init))
		return -1;
	if (wg_cookie_check(&r->id.cookies, init, sizeof init, (const uint8_t *)"src", 3, false, now) != WG_COOKIE_OK)
		return -2;
	if (wg_open_initiation(&r->id, init, sizeof init, lookup, r, &in) || wg_accept_initiation(&r->peer, &in, now))
		return -3;
	if (wg_create_response(&r->id, &r->peer, r->next_index++, now, resp, ret))
		return -4;
	free2(ret);
	if (wg_cookie_check(&i->id.cookies, resp, sizeof resp, (const uint8_t *)"src", 3, false, now) != WG_COOKIE_OK)
		return -5;
	if (wg_receiver_index(resp, sizeof resp) != i->peer.hs_local_index)
		return -6;
	if (wg_consume_response(&i->id, &i->peer, resp, sizeof resp, now, ret))
		return -7;
	free2(ret);
	return 0;
}

static void full_handshakes(const uint8_t *psk)
{
	struct side a, b;
	setup(&a, &b, psk, psk);
	uint64_t now = 1000 * S;
	CHECK(handshake(&a, &b, now) == 0, "A -> B handshake (psk %d)", psk != NULL);
	CHECK(a.peer.current && !a.peer.next && b.peer.next && !b.peer.current, "initiator current, responder next");
	CHECK(a.peer.current->remote_index == b.peer.next->local_index &&
	                b.peer.next->remote_index == a.peer.current->local_index,
	        "indices cross");
	CHECK(memcmp(a.peer.current->send_key, b.peer.next->recv_key, 32) == 0 &&
	                memcmp(a.peer.current->recv_key, b.peer.next->send_key, 32) == 0 &&
	                memcmp(a.peer.current->send_key, a.peer.current->recv_key, 32) != 0,
	        "keys cross and differ per direction");
	/* The responder cannot send before confirmation (it has no current). */
	CHECK(transport_ok(a.peer.current, b.peer.next, &b.peer, 0, now), "keepalive A -> B confirms");
	CHECK(b.peer.current && !b.peer.next, "key confirmation: next became current");
	for (size_t len = 0; len <= 1420; len += 37)
		CHECK(transport_ok(a.peer.current, b.peer.current, &b.peer, len, now) &&
		                transport_ok(b.peer.current, a.peer.current, &a.peer, len, now),
		        "transport both ways, %zu bytes", len);
	CHECK(transport_ok(a.peer.current, b.peer.current, &b.peer, 1415, now), "padding capped at the MTU");

	/* Now B initiates: B gets a new current, A a next; old keypairs still open. */
	struct wg_keypair *a_old = a.peer.current, *b_old = b.peer.current;
	CHECK(handshake(&b, &a, now + S) == 0, "B -> A handshake (psk %d)", psk != NULL);
	CHECK(b.peer.current != b_old && b.peer.previous == b_old && a.peer.next && a.peer.current == a_old,
	        "slots after the second handshake");
	CHECK(transport_ok(a.peer.current, b.peer.previous, &b.peer, 100, now + S), "old session still works");
	CHECK(transport_ok(b.peer.current, a.peer.next, &a.peer, 64, now + S), "new session confirmed by B's data");
	CHECK(a.peer.current && a.peer.previous == a_old && !a.peer.next, "A rotated");

	/* A answers B (A's new keypair waits in next), then A initiates itself
	 * before B sent anything: the unconfirmed next becomes previous (B may
	 * still use it), the old current retires, the new session is current. */
	struct wg_keypair *a_cur = a.peer.current;
	CHECK(handshake(&b, &a, now + 2 * S) == 0 && a.peer.next, "B -> A again: A holds a next");
	struct wg_keypair *a_next = a.peer.next, *b_cur = b.peer.current;
	CHECK(handshake(&a, &b, now + 3 * S) == 0, "A -> B while A's next is unconfirmed");
	CHECK(a.peer.previous == a_next && a.peer.current != a_cur && a.peer.current != a_next && !a.peer.next,
	        "unconfirmed next became previous, the old current retired");
	CHECK(transport_ok(b_cur, a.peer.previous, &a.peer, 80, now + 3 * S), "B's session (A's old next) still opens");
	CHECK(transport_ok(a.peer.current, b.peer.next, &b.peer, 80, now + 3 * S) && b.peer.current && !b.peer.next,
	        "the newest session confirmed");
	teardown(&a, &b);
}

static void tampering_and_replay(void)
{
	struct side a, b;
	uint8_t psk[32];
	memset(psk, 0x42, 32);
	setup(&a, &b, psk, psk);
	uint64_t now = 5000 * S;
	uint8_t init[WG_INITIATION_LEN], bad[WG_INITIATION_LEN], ts[12];
	struct wg_initiation in;
	stamp(ts, &a);
	CHECK(wg_create_initiation(&a.id, &a.peer, 77, ts, now, init) == 0, "initiation");
	/* Every single-byte change is refused, by mac1 or (with mac1 recomputed) by the AEAD / type check. */
	int refused = 0;
	for (size_t i = 0; i < sizeof init; i++) {
		memcpy(bad, init, sizeof init);
		bad[i] ^= (uint8_t)(1 + i % 255);
		if (i < 132) {
			if (wg_cookie_check(&b.id.cookies, bad, sizeof bad, (const uint8_t *)"x", 1, false, now) == WG_COOKIE_BAD_MAC1)
				refused++;
		} else {
			refused++; /* mac2 is not checked unless under load */
		}
		/* With a valid mac1 over the changed bytes, the body must still fail. */
		if (i < 116 && !(i >= 4 && i < 8)) {
			CHECK(wg_cookie_add_macs(&a.peer.cookie, bad, sizeof bad, now) == 0, "re-mac");
			CHECK(wg_open_initiation(&b.id, bad, sizeof bad, lookup, &b, &in) != 0, "tampered byte %zu opened", i);
		}
	}
	CHECK(refused == (int)sizeof init, "mac1 refused %d of %zu changes", refused, sizeof init);
	/* The genuine one still works after all that. */
	CHECK(wg_cookie_check(&b.id.cookies, init, sizeof init, (const uint8_t *)"x", 1, false, now) == WG_COOKIE_OK, "mac1");
	CHECK(wg_open_initiation(&b.id, init, sizeof init, lookup, &b, &in) == 0 && wg_accept_initiation(&b.peer, &in, now) == 0,
	        "genuine initiation accepted");
	/* Replayed initiation: same timestamp, refused even much later. */
	CHECK(wg_open_initiation(&b.id, init, sizeof init, lookup, &b, &in) == 0, "replay decrypts");
	CHECK(wg_accept_initiation(&b.peer, &in, now + 10 * S) != 0, "replayed initiation refused");
	/* A new initiation within 20 ms is refused (flood), later accepted. */
	stamp(ts, &a);
	CHECK(wg_create_initiation(&a.id, &a.peer, 78, ts, now, init) == 0, "second initiation");
	CHECK(wg_open_initiation(&b.id, init, sizeof init, lookup, &b, &in) == 0 &&
	                wg_accept_initiation(&b.peer, &in, now + 10 * 1000 * 1000) != 0,
	        "initiation within 20 ms refused");
	CHECK(wg_open_initiation(&b.id, init, sizeof init, lookup, &b, &in) == 0 && wg_accept_initiation(&b.peer, &in, now + S) == 0,
	        "later accepted");
	/* Response tampering: every byte change refused, then the genuine one works. */
	uint8_t resp[WG_RESPONSE_LEN], rbad[WG_RESPONSE_LEN];
	struct wg_keypair *ret[2];
	CHECK(wg_create_response(&b.id, &b.peer, 99, now + S, resp, ret) == 0, "response");
	free2(ret);
	for (size_t i = 0; i < sizeof resp; i++) {
		memcpy(rbad, resp, sizeof resp);
		rbad[i] ^= 0x80;
		if (i < 60)
			CHECK(wg_cookie_check(&a.id.cookies, rbad, sizeof rbad, (const uint8_t *)"x", 1, false, now) == WG_COOKIE_BAD_MAC1,
			        "response mac1 byte %zu", i);
		if (i < 60 && !(i >= 4 && i < 8)) {
			CHECK(wg_consume_response(&a.id, &a.peer, rbad, sizeof rbad, now + S, ret) != 0, "tampered response byte %zu", i);
			free2(ret);
		}
	}
	CHECK(wg_consume_response(&a.id, &a.peer, resp, sizeof resp, now + S, ret) == 0, "genuine response");
	free2(ret);
	CHECK(wg_consume_response(&a.id, &a.peer, resp, sizeof resp, now + S, ret) != 0, "response consumed only once");
	/* Transport: tamper, replay, wrong keypair, expiry. */
	struct wg_keypair *ka = a.peer.current, *kb = b.peer.next;
	uint8_t msg[200], out[200];
	long n = wg_transport_seal(ka, (const uint8_t *)"hello", 5, 1420, now + S, msg, NULL);
	CHECK(n == 48, "sealed 5 bytes into %ld", n);
	msg[20] ^= 1;
	CHECK(wg_transport_open(kb, msg, (size_t)n, now + S, out) == WG_ERR_AUTH, "tampered transport");
	msg[20] ^= 1;
	CHECK(wg_transport_open(kb, msg, (size_t)n, now + S, out) == 16, "transport");
	CHECK(wg_transport_open(kb, msg, (size_t)n, now + S, out) == WG_ERR_REPLAY, "replayed transport");
	CHECK(wg_transport_open(kb, msg, 31, now + S, out) == WG_ERR_MALFORMED, "short transport");
	CHECK(wg_transport_open(ka, msg, (size_t)n, now + S, out) == WG_ERR_MALFORMED, "wrong receiver index");
	/* In place both ways: the segment sits 16 bytes into the buffer; decrypted at msg + 16. */
	memcpy(msg + 16, "in place, 29 bytes of payload", 29);
	n = wg_transport_seal(ka, msg + 16, 29, 1420, now + S, msg, NULL);
	CHECK(n == 64 && wg_transport_open(kb, msg, (size_t)n, now + S, msg + 16) == 32 &&
	                memcmp(msg + 16, "in place, 29 bytes of payload\0\0", 32) == 0,
	        "in-place seal and open");
	n = wg_transport_seal(ka, (const uint8_t *)"x", 1, 1420, now + S, msg, NULL);
	CHECK(wg_transport_open(kb, msg, (size_t)n, now + S + WG_REJECT_AFTER_TIME, out) == WG_ERR_EXPIRED, "expired keypair");
	CHECK(wg_transport_seal(ka, (const uint8_t *)"x", 1, 1420, now + S + WG_REJECT_AFTER_TIME, msg, NULL) < 0,
	        "expired keypair does not send");
	teardown(&a, &b);

	/* PSK mismatch: the initiation opens (PSK enters only at the response), the response fails. */
	uint8_t other[32];
	memset(other, 0x43, 32);
	setup(&a, &b, psk, other);
	CHECK(handshake(&a, &b, now) == -7, "PSK mismatch fails at the response");
	teardown(&a, &b);
	setup(&a, &b, NULL, psk);
	CHECK(handshake(&a, &b, now) == -7, "PSK on one side only fails");
	teardown(&a, &b);

	/* Unknown initiator: B knows a different peer. */
	struct side c;
	setup(&a, &b, NULL, NULL);
	uint8_t pc[32], qc[32];
	wg_x25519_generate(pc, qc);
	wg_identity_init(&c.id, pc);
	wg_peer_init(&c.peer, &c.id, b.id.pub, NULL);
	stamp(ts, &c);
	CHECK(wg_create_initiation(&c.id, &c.peer, 5, ts, now, init) == 0, "stranger's initiation");
	CHECK(wg_cookie_check(&b.id.cookies, init, sizeof init, (const uint8_t *)"x", 1, false, now) == WG_COOKIE_OK,
	        "a stranger can have valid mac1 (it knows B's public key)");
	CHECK(wg_open_initiation(&b.id, init, sizeof init, lookup, &b, &in) != 0, "unknown static key refused");
	wg_peer_wipe(&c.peer);
	wg_identity_wipe(&c.id);
	teardown(&a, &b);
}

static void cookies(void)
{
	struct side a, b;
	setup(&a, &b, NULL, NULL);
	uint64_t now = 100 * S;
	const uint8_t src[6] = {198, 18, 0, 1, 0x1f, 0x90}, src2[6] = {198, 18, 0, 2, 0x1f, 0x90};
	uint8_t init[WG_INITIATION_LEN], ts[12], reply[WG_COOKIE_REPLY_LEN];
	stamp(ts, &a);
	CHECK(wg_create_initiation(&a.id, &a.peer, 11, ts, now, init) == 0, "initiation");
	CHECK(wg_cookie_check(&b.id.cookies, init, sizeof init, src, 6, true, now) == WG_COOKIE_NEED_REPLY,
	        "under load without mac2: reply");
	CHECK(wg_cookie_reply(&b.id.cookies, init, sizeof init, src, 6, now, reply) == 0, "cookie reply");
	CHECK(reply[0] == 3 && wg_receiver_index(reply, sizeof reply) == 11, "reply addressed to the sender index");
	uint8_t rbad[64];
	memcpy(rbad, reply, 64);
	rbad[40] ^= 1;
	CHECK(wg_cookie_consume_reply(&a.peer.cookie, rbad, 64, now) != 0, "tampered reply refused");
	CHECK(wg_cookie_consume_reply(&a.peer.cookie, reply, 64, now) == 0, "reply taken");
	CHECK(wg_cookie_consume_reply(&a.peer.cookie, reply, 64, now) != 0, "unsolicited (second) reply refused");
	stamp(ts, &a);
	CHECK(wg_create_initiation(&a.id, &a.peer, 12, ts, now + S, init) == 0, "initiation with mac2");
	CHECK(wg_cookie_check(&b.id.cookies, init, sizeof init, src, 6, true, now + S) == WG_COOKIE_OK, "mac2 valid");
	CHECK(wg_cookie_check(&b.id.cookies, init, sizeof init, src2, 6, true, now + S) == WG_COOKIE_NEED_REPLY,
	        "mac2 bound to the source address");
	CHECK(wg_cookie_check(&b.id.cookies, init, sizeof init, src, 6, true, now + WG_COOKIE_REFRESH_TIME) ==
	                WG_COOKIE_NEED_REPLY,
	        "secret rotated after 2 minutes");
	/* The maker stops using its cookie after 2 minutes. */
	stamp(ts, &a);
	CHECK(wg_create_initiation(&a.id, &a.peer, 13, ts, now + WG_COOKIE_REFRESH_TIME, init) == 0, "initiation");
	static const uint8_t z[16];
	CHECK(memcmp(init + 132, z, 16) == 0, "stale cookie: mac2 zero");
	CHECK(wg_cookie_check(&b.id.cookies, init, 100, src, 6, false, now) == WG_COOKIE_BAD_MAC1, "wrong length");
	teardown(&a, &b);
}

static void tai64n(void)
{
	uint8_t t1[12], t2[12], t3[12];
	wg_tai64n(t1, 1700000000ULL * S + 123456789, NULL);
	CHECK(t1[0] == 0x40 && t1[8] == 0x07 && (t1[11] == 0) && (t1[10] == 0), "TAI64N layout, 2^24 ns grid");
	wg_tai64n(t2, 1600000000ULL * S, t1); /* clock went back (reboot) */
	CHECK(memcmp(t2, t1, 12) > 0, "never backwards across a restart (floor)");
	wg_tai64n(t3, 1700000000ULL * S + 123456789, t2);
	CHECK(memcmp(t3, t2, 12) > 0, "strictly increasing on the same clock value");
	memcpy(t1, t3, 12);
	wg_tai64n(t1, 1600000000ULL * S, t1);
	CHECK(memcmp(t1, t3, 12) > 0, "floor == out: advanced in place");
	uint8_t f[12] = {0x40, 0, 0, 0, 0, 0, 0, 5, 0x3b, 0x9a, 0xc9, 0xff}; /* 999999999 ns */
	wg_tai64n(t1, 0, f);
	CHECK(t1[7] == 6 && t1[8] == 0 && t1[9] == 0 && t1[10] == 0 && t1[11] == 0, "floor carry into seconds");
}

static void timers(void)
{
	struct wg_timers t;
	wg_timers_init(&t, 25 * S);
	uint64_t now = 1000 * S;
	CHECK(wg_timers_next(&t) == 0 && wg_timers_due(&t, now, 0) == 0, "idle");
	wg_timers_on_handshake_initiated(&t, now, 100);
	CHECK(wg_timers_next(&t) == now + WG_REKEY_TIMEOUT + 100, "retry after 5 s + jitter");
	unsigned retries = 0, gave_up = 0;
	uint64_t tt = now;
	for (int i = 0; i < 40 && !gave_up; i++) {
		tt = wg_timers_next(&t);
		unsigned d = wg_timers_due(&t, tt, 0);
		retries += !!(d & WG_TIMER_RETRANSMIT_HANDSHAKE);
		gave_up += !!(d & WG_TIMER_GIVE_UP);
	}
	CHECK(retries == WG_MAX_TIMER_HANDSHAKES && gave_up == 1, "18 retries then give up (%u)", retries);
	CHECK(tt - now >= WG_REKEY_ATTEMPT_TIME && tt - now < WG_REKEY_ATTEMPT_TIME + 10 * S, "after ~90 s");
	wg_timers_stop(&t);
	wg_timers_on_data_received(&t, now);
	CHECK(wg_timers_due(&t, now + WG_KEEPALIVE_TIMEOUT - 1, 0) == 0, "no keepalive before 10 s");
	CHECK(wg_timers_due(&t, now + WG_KEEPALIVE_TIMEOUT, 0) == WG_TIMER_SEND_KEEPALIVE, "keepalive at 10 s");
	wg_timers_on_data_received(&t, now);
	wg_timers_on_authenticated_sent(&t, now + S);
	CHECK(wg_timers_due(&t, now + 20 * S, 0) == 0, "sending cancels the keepalive");
	wg_timers_on_data_sent(&t, now);
	CHECK(wg_timers_due(&t, now + 14 * S, 0) == 0 && wg_timers_due(&t, now + 15 * S, 0) == WG_TIMER_NEW_HANDSHAKE,
	        "new handshake 15 s after unanswered data");
	wg_timers_on_data_sent(&t, now);
	wg_timers_on_authenticated_received(&t, now + S);
	CHECK(wg_timers_due(&t, now + 20 * S, 0) == 0, "an answer cancels it");
	wg_timers_on_traversal(&t, now);
	CHECK(wg_timers_due(&t, now + 25 * S, 0) == WG_TIMER_PERSISTENT_KEEPALIVE, "persistent keepalive");
	wg_timers_on_session_derived(&t, now);
	CHECK(wg_timers_due(&t, now + 540 * S, 0) == WG_TIMER_ZERO_KEYS, "zero keys after 540 s");
	CHECK(wg_rekey_on_send(WG_REKEY_AFTER_TIME + 1, 0, true) && !wg_rekey_on_send(WG_REKEY_AFTER_TIME + 1, 0, false) &&
	                wg_rekey_on_send(0, WG_REKEY_AFTER_MESSAGES + 1, false) && !wg_rekey_on_send(S, 5, true),
	        "rekey on send");
	CHECK(wg_rekey_on_receive(166 * S, true) && !wg_rekey_on_receive(164 * S, true) && !wg_rekey_on_receive(170 * S, false),
	        "rekey on receive at 165 s");
	CHECK(wg_keypair_expired(WG_REJECT_AFTER_TIME, 0) && wg_keypair_expired(0, WG_REJECT_AFTER_MESSAGES) &&
	                !wg_keypair_expired(WG_REJECT_AFTER_TIME - 1, 5),
	        "expiry");
}

/* A restarted side: it brings a new session at once, within the protocol's rate limit. */
static void reconnect(void)
{
	struct wg_timers t;
	wg_timers_init(&t, 0);
	uint64_t now = 2000 * S;
	wg_timers_on_peer_started(&t, now);
	CHECK(wg_timers_next(&t) == now, "a restart's peer: a handshake is due at once");
	CHECK(wg_timers_due(&t, now, 0) == WG_TIMER_NEW_HANDSHAKE && wg_timers_next(&t) == 0, "fires once");
	wg_timers_on_data_sent(&t, now);
	wg_timers_on_peer_started(&t, now + S);
	CHECK(wg_timers_next(&t) == now + S, "brings a later 'no reply' handshake forward");
	wg_timers_stop(&t);
	wg_timers_on_peer_started(&t, 0);
	CHECK(wg_timers_next(&t) == 1 && wg_timers_due(&t, 1, 0) == WG_TIMER_NEW_HANDSHAKE, "armed even at clock 0 (0 = disarmed)");

	/* Transport with an index we do not have: handshake only without a usable session of our own. */
	CHECK(wg_handshake_on_unknown_index(false, 0, 0), "no session: we restarted");
	CHECK(!wg_handshake_on_unknown_index(true, S, 5), "a live session: a stale or forged index, nothing to do");
	CHECK(wg_handshake_on_unknown_index(true, WG_REJECT_AFTER_TIME, 5) &&
	                wg_handshake_on_unknown_index(true, S, WG_REJECT_AFTER_MESSAGES),
	        "an expired session counts as none");

	/* REKEY_TIMEOUT between initiations (or after a response), unless it is a retry. */
	CHECK(wg_initiation_allowed(now, 0, false), "never sent: go");
	CHECK(!wg_initiation_allowed(now, now - WG_REKEY_TIMEOUT + 1, false), "within 5 s: wait");
	CHECK(wg_initiation_allowed(now, now - WG_REKEY_TIMEOUT, false), "after 5 s: go");
	CHECK(wg_initiation_allowed(now, now, true), "a retry always goes");
}

int main(void)
{
	if (wg_crypto_init()) {
		printf("wg_crypto_init failed\n");
		return 1;
	}
	uint8_t psk[32];
	for (int i = 0; i < 32; i++)
		psk[i] = (uint8_t)(i * 3);
	full_handshakes(NULL);
	full_handshakes(psk);
	tampering_and_replay();
	cookies();
	tai64n();
	timers();
	reconnect();
	wg_crypto_fini();
	printf("%lu checks, %lu failures\n", n_checks, n_failures);
	return n_failures ? 1 : 0;
}
