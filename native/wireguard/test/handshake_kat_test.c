/*
 * Known-answer tests of a whole WireGuard handshake: native/wireguard
 * (noise.c, cookie.c) against vectors/handshake_vectors.h, which an
 * independent Python reference written from the whitepaper computed
 * (vectors/make_handshake_vectors.py). With the vector's fixed keys,
 * ephemerals, indices, timestamp and PSK, each side is checked byte for byte
 * against the reference, never against our other side:
 *   - our initiator makes the vector's initiation; our responder takes the
 *     vector's initiation and makes the vector's response; our initiator
 *     takes the vector's response; both sides' transport keys are the
 *     vector's;
 *   - the first transport message each way (counter 0) and the initiator's
 *     keepalive (counter 1) are the vector's, and each side opens the
 *     vector's messages;
 *   - cookies: under load our responder makes the vector's cookie reply
 *     (fixed secret, source and nonce), our initiator takes the vector's
 *     reply and then makes the vector's initiation with mac2;
 *   - one byte changed in the initiation's static ciphertext, or in the
 *     response's empty AEAD tag, is refused.
 * Threads and locking: single-threaded. Prints "N checks, 0 failures".
 */
#include "../cookie.h"
#include "../crypto.h"
#include "../noise.h"
#include "../timers.h"
#include "check.h"
#include "vectors/handshake_vectors.h"

#define S WG_NS_PER_S
#define MTU 1420

struct side {
	struct wg_identity id;
	struct wg_peer peer; /* the other side */
};

static struct wg_peer *lookup(void *ctx, const uint8_t pub[WG_KEY_LEN])
{
	struct side *s = ctx;
	return memcmp(pub, s->peer.remote_static, WG_KEY_LEN) == 0 ? &s->peer : NULL;
}

/* Decodes a fixed-size field of the vector (aborts on a size mismatch). */
static void field(uint8_t *out, size_t len, const char *hex, const char *what)
{
	if (!hex || strlen(hex) != 2 * len) {
		printf("vector field %s: not %zu bytes\n", what, len);
		abort();
	}
	unhex(out, len, hex);
}

static void setup(const struct hs_vector *v, struct side *ini, struct side *res)
{
	uint8_t ipriv[32], rpriv[32], psk[32];
	field(ipriv, 32, v->initiator_static_private, "initiator_static_private");
	field(rpriv, 32, v->responder_static_private, "responder_static_private");
	if (v->psk)
		field(psk, 32, v->psk, "psk");
	CHECK(wg_identity_init(&ini->id, ipriv) == 0 && wg_identity_init(&res->id, rpriv) == 0, "%s: identities", v->name);
	CHECK(eqhex(ini->id.pub, v->initiator_static_public), "%s: initiator public key", v->name);
	CHECK(eqhex(res->id.pub, v->responder_static_public), "%s: responder public key", v->name);
	CHECK(wg_peer_init(&ini->peer, &ini->id, res->id.pub, v->psk ? psk : NULL) == 0 &&
	                wg_peer_init(&res->peer, &res->id, ini->id.pub, v->psk ? psk : NULL) == 0,
	        "%s: peers", v->name);
	wg_wipe(ipriv, 32);
	wg_wipe(rpriv, 32);
	wg_wipe(psk, 32);
}

static void teardown(struct side *ini, struct side *res)
{
	wg_peer_wipe(&ini->peer);
	wg_peer_wipe(&res->peer);
	wg_identity_wipe(&ini->id);
	wg_identity_wipe(&res->id);
}

static void free2(struct wg_keypair *r[2])
{
	wg_keypair_free(r[0]);
	wg_keypair_free(r[1]);
}

static bool keys_are(const struct wg_keypair *kp, const char *send, const char *recv)
{
	return kp && eqhex(kp->send_key, send) && eqhex(kp->recv_key, recv);
}

/* Seals pt with kp and compares the message with the vector's. */
static void seal_is(struct wg_keypair *kp, const char *pt_hex, const char *want_hex, uint64_t want_ctr, uint64_t now,
        const char *what)
{
	uint8_t pt[256], want[512], out[512];
	size_t len = pt_hex ? unhex(pt, sizeof pt, pt_hex) : 0, wlen = unhex(want, sizeof want, want_hex);
	uint64_t ctr = ~0ULL;
	long n = wg_transport_seal(kp, pt, len, MTU, now, out, &ctr);
	CHECK(n == (long)wlen && ctr == want_ctr && memcmp(out, want, wlen) == 0, "%s: equals the vector (%ld bytes)", what,
	        n);
}

/* Opens the vector's message with kp: the plaintext is pt padded with zeros to 16. */
static void opens_to(struct wg_keypair *kp, const char *msg_hex, const char *pt_hex, uint64_t now, const char *what)
{
	uint8_t msg[512], out[512], pt[256] = {0};
	size_t len = unhex(msg, sizeof msg, msg_hex), plen = pt_hex ? unhex(pt, sizeof pt, pt_hex) : 0;
	size_t padded = (plen + 15) & ~(size_t)15;
	long n = wg_transport_open(kp, msg, len, now, out);
	CHECK(n == (long)padded && memcmp(out, pt, padded) == 0, "%s: opens to the vector's plaintext (%ld)", what, n);
}

static void handshake(const struct hs_vector *v)
{
	struct side ini, res;
	uint8_t ts[WG_TAI64N_LEN], ei[32], er[32], vinit[WG_INITIATION_LEN], vresp[WG_RESPONSE_LEN];
	uint8_t msg[WG_INITIATION_LEN], bad[WG_INITIATION_LEN];
	struct wg_keypair *retired[2], *one;
	struct wg_initiation in;
	const uint64_t now = 1000 * S;
	setup(v, &ini, &res);
	field(ts, sizeof ts, v->timestamp, "timestamp");
	field(ei, 32, v->initiator_ephemeral_private, "initiator_ephemeral_private");
	field(er, 32, v->responder_ephemeral_private, "responder_ephemeral_private");
	field(vinit, sizeof vinit, v->initiation, "initiation");
	field(vresp, sizeof vresp, v->response, "response");

	/* Initiator: the vector's initiation, byte for byte. */
	CHECK(wg_create_initiation_with(&ini.id, &ini.peer, v->initiator_index, ts, now, ei, msg) == 0 &&
	                memcmp(msg, vinit, sizeof vinit) == 0,
	        "%s: our initiation equals the vector's", v->name);

	/* Responder, on the vector's initiation. A changed static ciphertext is refused first. */
	memcpy(bad, vinit, sizeof bad);
	bad[40 + 7] ^= 0x01;
	CHECK(wg_cookie_check(&res.id.cookies, bad, sizeof bad, (const uint8_t *)"src", 3, false, now) == WG_COOKIE_BAD_MAC1,
	        "%s: a changed static ciphertext fails mac1", v->name);
	CHECK(wg_open_initiation(&res.id, bad, sizeof bad, lookup, &res, &in) != 0,
	        "%s: a changed static ciphertext is refused (AEAD)", v->name);
	CHECK(wg_cookie_check(&res.id.cookies, vinit, sizeof vinit, (const uint8_t *)"src", 3, false, now) == WG_COOKIE_OK,
	        "%s: the vector's mac1 checks", v->name);
	CHECK(wg_open_initiation(&res.id, vinit, sizeof vinit, lookup, &res, &in) == 0 && in.peer == &res.peer &&
	                in.sender == v->initiator_index && memcmp(in.timestamp, ts, sizeof ts) == 0,
	        "%s: the vector's initiation opens (initiator, index, timestamp)", v->name);
	CHECK(wg_accept_initiation(&res.peer, &in, now) == 0, "%s: and is accepted", v->name);
	CHECK(wg_create_response_with(&res.id, &res.peer, v->responder_index, now, er, msg, retired) == 0 &&
	                memcmp(msg, vresp, sizeof vresp) == 0,
	        "%s: our response equals the vector's", v->name);
	free2(retired);
	CHECK(keys_are(res.peer.next, v->responder_send, v->responder_recv), "%s: the responder's transport keys",
	        v->name);
	CHECK(res.peer.next && res.peer.next->local_index == v->responder_index &&
	                res.peer.next->remote_index == v->initiator_index,
	        "%s: the responder's keypair indices", v->name);

	/* Initiator, on the vector's response. A changed empty AEAD tag is refused first. */
	memcpy(bad, vresp, sizeof vresp);
	bad[44 + 3] ^= 0x80;
	CHECK(wg_consume_response(&ini.id, &ini.peer, bad, sizeof vresp, now, retired) != 0 && !ini.peer.current,
	        "%s: a changed empty tag is refused", v->name);
	CHECK(wg_cookie_check(&ini.id.cookies, vresp, sizeof vresp, (const uint8_t *)"src", 3, false, now) == WG_COOKIE_OK,
	        "%s: the vector response's mac1 checks", v->name);
	CHECK(wg_receiver_index(vresp, sizeof vresp) == v->initiator_index, "%s: the response's receiver", v->name);
	CHECK(wg_consume_response(&ini.id, &ini.peer, vresp, sizeof vresp, now, retired) == 0,
	        "%s: the vector's response is taken", v->name);
	free2(retired);
	CHECK(keys_are(ini.peer.current, v->initiator_send, v->initiator_recv), "%s: the initiator's transport keys",
	        v->name);
	if (!ini.peer.current || !res.peer.next) {
		teardown(&ini, &res);
		return;
	}
	CHECK(ini.peer.current->local_index == v->initiator_index && ini.peer.current->remote_index == v->responder_index,
	        "%s: the initiator's keypair indices", v->name);

	/* Transport, each side against the vector. */
	seal_is(ini.peer.current, v->payload_i2r, v->transport_i2r, 0, now, "initiator -> responder, counter 0");
	opens_to(res.peer.next, v->transport_i2r, v->payload_i2r, now, "responder opens initiator's counter 0");
	wg_received_with(&res.peer, res.peer.next, &one);
	wg_keypair_free(one);
	CHECK(res.peer.current && !res.peer.next, "%s: the vector's transport message confirms the keypair", v->name);
	if (res.peer.current) {
		seal_is(res.peer.current, v->payload_r2i, v->transport_r2i, 0, now, "responder -> initiator, counter 0");
		opens_to(ini.peer.current, v->transport_r2i, v->payload_r2i, now, "initiator opens responder's counter 0");
		seal_is(ini.peer.current, NULL, v->keepalive_i2r, 1, now, "initiator's keepalive, counter 1");
		opens_to(res.peer.current, v->keepalive_i2r, NULL, now, "responder opens the keepalive");
	}
	teardown(&ini, &res);
}

static void cookie(const struct hs_vector *v)
{
	struct side ini, res;
	uint8_t ts[WG_TAI64N_LEN], ei[32], vinit[WG_INITIATION_LEN], vinit2[WG_INITIATION_LEN], msg[WG_INITIATION_LEN];
	uint8_t src[WG_MAX_SRC_LEN], nonce[WG_XNONCE_LEN], vreply[WG_COOKIE_REPLY_LEN], reply[WG_COOKIE_REPLY_LEN];
	const uint64_t now = 1000 * S;
	if (!v->cookie_reply)
		return;
	setup(v, &ini, &res);
	field(ts, sizeof ts, v->timestamp, "timestamp");
	field(ei, 32, v->initiator_ephemeral_private, "initiator_ephemeral_private");
	field(vinit, sizeof vinit, v->initiation, "initiation");
	field(vinit2, sizeof vinit2, v->initiation_mac2, "initiation_mac2");
	field(nonce, sizeof nonce, v->cookie_nonce, "cookie_nonce");
	field(vreply, sizeof vreply, v->cookie_reply, "cookie_reply");
	size_t srclen = unhex(src, sizeof src, v->cookie_source);

	/* Responder under load, with the vector's secret: no mac2, so the vector's reply. */
	field(res.id.cookies.secret, sizeof res.id.cookies.secret, v->cookie_secret, "cookie_secret");
	res.id.cookies.secret_born = now;
	CHECK(wg_cookie_check(&res.id.cookies, vinit, sizeof vinit, src, srclen, true, now) == WG_COOKIE_NEED_REPLY,
	        "%s: under load, the initiation without mac2 needs a reply", v->name);
	CHECK(wg_cookie_reply_with(&res.id.cookies, vinit, sizeof vinit, src, srclen, now, nonce, reply) == 0 &&
	                memcmp(reply, vreply, sizeof reply) == 0,
	        "%s: our cookie reply equals the vector's", v->name);

	/* Initiator: sends the initiation, takes the vector's reply, sends again with mac2. */
	CHECK(wg_create_initiation_with(&ini.id, &ini.peer, v->initiator_index, ts, now, ei, msg) == 0 &&
	                memcmp(msg, vinit, sizeof vinit) == 0,
	        "%s: our initiation equals the vector's", v->name);
	CHECK(wg_cookie_consume_reply(&ini.peer.cookie, vreply, sizeof vreply, now + S) == 0 &&
	                eqhex(ini.peer.cookie.cookie, v->cookie),
	        "%s: the vector's cookie reply gives the vector's cookie", v->name);
	CHECK(wg_create_initiation_with(&ini.id, &ini.peer, v->initiator_index, ts, now + 2 * S, ei, msg) == 0 &&
	                memcmp(msg, vinit2, sizeof vinit2) == 0,
	        "%s: our initiation with mac2 equals the vector's", v->name);
	CHECK(wg_cookie_check(&res.id.cookies, vinit2, sizeof vinit2, src, srclen, true, now + 2 * S) == WG_COOKIE_OK,
	        "%s: under load, the vector's mac2 checks", v->name);
	vinit2[WG_INITIATION_LEN - 1] ^= 1;
	CHECK(wg_cookie_check(&res.id.cookies, vinit2, sizeof vinit2, src, srclen, true, now + 2 * S) ==
	                WG_COOKIE_NEED_REPLY,
	        "%s: a changed mac2 does not", v->name);
	teardown(&ini, &res);
}

int main(void)
{
	if (wg_crypto_init()) {
		printf("wg_crypto_init failed\n");
		return 1;
	}
	size_t cookies = 0;
	for (size_t i = 0; i < sizeof HS_VECTORS / sizeof HS_VECTORS[0]; i++) {
		handshake(&HS_VECTORS[i]);
		cookie(&HS_VECTORS[i]);
		cookies += HS_VECTORS[i].cookie_reply != NULL;
	}
	CHECK(cookies > 0 && HS_VECTORS[0].psk == NULL && HS_VECTORS[1].psk != NULL,
	        "vectors with and without PSK, one with a cookie");
	wg_crypto_fini();
	printf("%lu checks, %lu failures\n", n_checks, n_failures);
	return n_failures ? 1 : 0;
}
