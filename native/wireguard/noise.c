/*
 * Noise_IKpsk2 as WireGuard uses it, transport messages and keypair slots
 * (see noise.h for the layouts and the locking plan; whitepaper 5.4.2-5.4.6).
 * Threads and locking: no lock inside; every function documents in noise.h
 * which of the caller's per-peer locks must be held. Intermediate secrets
 * live on the stack and are wiped before return; peer state is changed only
 * after a message fully authenticated, so a forged or damaged message never
 * disturbs a handshake in progress.
 */
#include "noise.h"
#include "timers.h"

#include <stdlib.h>
#include <string.h>

static const char CONSTRUCTION[] = "Noise_IKpsk2_25519_ChaChaPoly_BLAKE2s";
static const char IDENTIFIER[] = "WireGuard v1 zx2c4 Jason@zx2c4.com";

/* Offsets (noise.h has the layouts). */
enum {
	I_SENDER = 4,
	I_EPH = 8,
	I_STATIC = 40,
	I_TS = 88,
	I_MAC1 = 116,
	R_SENDER = 4,
	R_RECEIVER = 8,
	R_EPH = 12,
	R_EMPTY = 44,
	R_MAC1 = 60,
	T_RECEIVER = 4,
	T_COUNTER = 8,
};

static uint32_t get32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static void put32(uint8_t *p, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static void header(uint8_t *p, uint8_t type)
{
	p[0] = type;
	p[1] = p[2] = p[3] = 0;
}

static bool is_type(const uint8_t *p, uint8_t type)
{
	return get32(p) == type; /* the three reserved bytes must be zero */
}

/* h = Hash(h || data) */
static int mix_hash(uint8_t h[WG_HASH_LEN], const void *data, size_t len)
{
	return wg_hash2(h, h, WG_HASH_LEN, data, len);
}

/* ck = Kdf1(ck, data) */
static int mix_key(uint8_t ck[WG_KEY_LEN], const void *data, size_t len)
{
	return wg_kdf(ck, NULL, NULL, ck, data, len);
}

/* (ck, k) = Kdf2(ck, DH(priv, pub)) */
static int mix_dh(uint8_t ck[WG_KEY_LEN], uint8_t k[WG_KEY_LEN], const uint8_t priv[WG_KEY_LEN],
        const uint8_t pub[WG_KEY_LEN])
{
	uint8_t s[WG_KEY_LEN];
	int rc = wg_x25519(s, priv, pub) || wg_kdf(ck, k, NULL, ck, s, sizeof s) ? -1 : 0;
	wg_wipe(s, sizeof s);
	return rc;
}

/* ck = C0 = Hash(Construction); h = Hash(Hash(C0 || Identifier) || responder's static) */
static int initial_state(uint8_t ck[WG_KEY_LEN], uint8_t h[WG_HASH_LEN], const uint8_t responder_static[WG_KEY_LEN])
{
	if (wg_hash2(ck, CONSTRUCTION, sizeof CONSTRUCTION - 1, NULL, 0) ||
	        wg_hash2(h, ck, WG_KEY_LEN, IDENTIFIER, sizeof IDENTIFIER - 1))
		return -1;
	return mix_hash(h, responder_static, WG_KEY_LEN);
}

int wg_identity_init(struct wg_identity *id, const uint8_t priv[WG_KEY_LEN])
{
	memset(id, 0, sizeof *id);
	memcpy(id->priv, priv, WG_KEY_LEN);
	if (wg_x25519_public(id->pub, priv) || wg_cookie_checker_init(&id->cookies, id->pub)) {
		wg_identity_wipe(id);
		return -1;
	}
	return 0;
}

void wg_identity_wipe(struct wg_identity *id)
{
	wg_wipe(id, sizeof *id);
}

int wg_peer_init(struct wg_peer *p, const struct wg_identity *id, const uint8_t remote_static[WG_KEY_LEN],
        const uint8_t *psk)
{
	memset(p, 0, sizeof *p);
	memcpy(p->remote_static, remote_static, WG_KEY_LEN);
	if (psk)
		memcpy(p->psk, psk, WG_KEY_LEN);
	if (wg_x25519(p->static_dh, id->priv, remote_static) || wg_cookie_maker_init(&p->cookie, remote_static)) {
		wg_wipe(p, sizeof *p);
		return -1;
	}
	return 0;
}

void wg_keypair_free(struct wg_keypair *kp)
{
	if (!kp)
		return;
	wg_aead_free(&kp->send);
	wg_aead_free(&kp->recv);
	wg_wipe(kp, sizeof *kp);
	free(kp);
}

void wg_peer_wipe(struct wg_peer *p)
{
	wg_keypair_free(p->current);
	wg_keypair_free(p->previous);
	wg_keypair_free(p->next);
	wg_wipe(p, sizeof *p);
}

static void clear_handshake(struct wg_peer *p)
{
	wg_wipe(p->hash, sizeof p->hash);
	wg_wipe(p->chain, sizeof p->chain);
	wg_wipe(p->eph_priv, sizeof p->eph_priv);
	wg_wipe(p->remote_eph, sizeof p->remote_eph);
	p->state = WG_HS_NONE;
}

/* ---- TAI64N ----------------------------------------------------------- */

void wg_tai64n(uint8_t out[WG_TAI64N_LEN], uint64_t realtime_ns, const uint8_t *floor_in)
{
	uint8_t floor_copy[WG_TAI64N_LEN]; /* out may be the floor itself */
	const uint8_t *floor = NULL;
	if (floor_in) {
		memcpy(floor_copy, floor_in, WG_TAI64N_LEN);
		floor = floor_copy;
	}
	uint64_t secs = (1ULL << 62) + realtime_ns / WG_NS_PER_S;
	uint32_t nsec = (uint32_t)(realtime_ns % WG_NS_PER_S) & ~((1u << 24) - 1);
	for (int i = 0; i < 8; i++)
		out[i] = (uint8_t)(secs >> (56 - 8 * i));
	for (int i = 0; i < 4; i++)
		out[8 + i] = (uint8_t)(nsec >> (24 - 8 * i));
	if (floor && memcmp(out, floor, WG_TAI64N_LEN) <= 0) {
		/* floor + 1 ns (carrying into the seconds at 10^9) */
		uint64_t fs = 0;
		uint32_t fn = 0;
		for (int i = 0; i < 8; i++)
			fs = fs << 8 | floor[i];
		for (int i = 0; i < 4; i++)
			fn = fn << 8 | floor[8 + i];
		if (++fn >= WG_NS_PER_S) {
			fn = 0;
			fs++;
		}
		for (int i = 0; i < 8; i++)
			out[i] = (uint8_t)(fs >> (56 - 8 * i));
		for (int i = 0; i < 4; i++)
			out[8 + i] = (uint8_t)(fn >> (24 - 8 * i));
	}
}

/* ---- initiation --------------------------------------------------------- */

/* The initiation with the ephemeral key pair (e, e_pub) given. */
static int create_initiation(const struct wg_identity *id, struct wg_peer *p, uint32_t local_index,
        const uint8_t timestamp[WG_TAI64N_LEN], uint64_t now, const uint8_t e[WG_KEY_LEN],
        const uint8_t e_pub[WG_KEY_LEN], uint8_t out[WG_INITIATION_LEN])
{
	uint8_t ck[WG_KEY_LEN], h[WG_HASH_LEN], k[WG_KEY_LEN];
	int rc = -1;
	memset(out, 0, WG_INITIATION_LEN);
	header(out, WG_MSG_INITIATION);
	put32(out + I_SENDER, local_index);
	memcpy(out + I_EPH, e_pub, WG_KEY_LEN);
	if (initial_state(ck, h, p->remote_static))
		goto out;
	/* e: ck = Kdf1(ck, E_pub); h = Hash(h || E_pub) */
	if (mix_key(ck, out + I_EPH, WG_KEY_LEN) || mix_hash(h, out + I_EPH, WG_KEY_LEN))
		goto out;
	/* es: (ck, k) = Kdf2(ck, DH(E_priv, S_r)); static = AEAD(k, 0, S_i, h) */
	if (mix_dh(ck, k, e, p->remote_static) ||
	        wg_aead_seal_once(k, 0, h, WG_HASH_LEN, id->pub, WG_KEY_LEN, out + I_STATIC) ||
	        mix_hash(h, out + I_STATIC, WG_KEY_LEN + WG_TAG_LEN))
		goto out;
	/* ss: (ck, k) = Kdf2(ck, DH(S_i, S_r)) (precomputed); timestamp = AEAD(k, 0, TAI64N, h) */
	if (wg_kdf(ck, k, NULL, ck, p->static_dh, WG_KEY_LEN) ||
	        wg_aead_seal_once(k, 0, h, WG_HASH_LEN, timestamp, WG_TAI64N_LEN, out + I_TS) ||
	        mix_hash(h, out + I_TS, WG_TAI64N_LEN + WG_TAG_LEN))
		goto out;
	if (wg_cookie_add_macs(&p->cookie, out, WG_INITIATION_LEN, now))
		goto out;
	memcpy(p->hash, h, sizeof h);
	memcpy(p->chain, ck, sizeof ck);
	memcpy(p->eph_priv, e, WG_KEY_LEN);
	p->hs_local_index = local_index;
	p->state = WG_HS_INITIATION_SENT;
	rc = 0;
out:
	wg_wipe(ck, sizeof ck);
	wg_wipe(h, sizeof h);
	wg_wipe(k, sizeof k);
	return rc;
}

int wg_create_initiation(const struct wg_identity *id, struct wg_peer *p, uint32_t local_index,
        const uint8_t timestamp[WG_TAI64N_LEN], uint64_t now, uint8_t out[WG_INITIATION_LEN])
{
	uint8_t e[WG_KEY_LEN], e_pub[WG_KEY_LEN];
	int rc = wg_x25519_generate(e, e_pub) ? -1 : create_initiation(id, p, local_index, timestamp, now, e, e_pub, out);
	wg_wipe(e, sizeof e);
	return rc;
}

int wg_create_initiation_with(const struct wg_identity *id, struct wg_peer *p, uint32_t local_index,
        const uint8_t timestamp[WG_TAI64N_LEN], uint64_t now, const uint8_t eph_priv[WG_KEY_LEN],
        uint8_t out[WG_INITIATION_LEN])
{
	uint8_t e_pub[WG_KEY_LEN];
	return wg_x25519_public(e_pub, eph_priv) ? -1
	                                         : create_initiation(id, p, local_index, timestamp, now, eph_priv, e_pub, out);
}

void wg_initiation_wipe(struct wg_initiation *in)
{
	wg_wipe(in, sizeof *in);
}

int wg_open_initiation(const struct wg_identity *id, const uint8_t *msg, size_t len, wg_peer_lookup lookup, void *ctx,
        struct wg_initiation *in)
{
	uint8_t ck[WG_KEY_LEN], h[WG_HASH_LEN], k[WG_KEY_LEN], s[WG_KEY_LEN];
	int rc = -1;
	memset(in, 0, sizeof *in);
	if (len != WG_INITIATION_LEN || !is_type(msg, WG_MSG_INITIATION))
		return -1;
	if (initial_state(ck, h, id->pub) || mix_key(ck, msg + I_EPH, WG_KEY_LEN) ||
	        mix_hash(h, msg + I_EPH, WG_KEY_LEN) || mix_dh(ck, k, id->priv, msg + I_EPH))
		goto out;
	if (wg_aead_open_once(k, 0, h, WG_HASH_LEN, msg + I_STATIC, WG_KEY_LEN + WG_TAG_LEN, s) ||
	        mix_hash(h, msg + I_STATIC, WG_KEY_LEN + WG_TAG_LEN))
		goto out;
	in->peer = lookup(ctx, s);
	if (!in->peer)
		goto out;
	if (wg_kdf(ck, k, NULL, ck, in->peer->static_dh, WG_KEY_LEN) ||
	        wg_aead_open_once(k, 0, h, WG_HASH_LEN, msg + I_TS, WG_TAI64N_LEN + WG_TAG_LEN, in->timestamp) ||
	        mix_hash(h, msg + I_TS, WG_TAI64N_LEN + WG_TAG_LEN))
		goto out;
	memcpy(in->hash, h, sizeof h);
	memcpy(in->chain, ck, sizeof ck);
	memcpy(in->remote_eph, msg + I_EPH, WG_KEY_LEN);
	in->sender = get32(msg + I_SENDER);
	rc = 0;
out:
	if (rc)
		wg_initiation_wipe(in);
	wg_wipe(ck, sizeof ck);
	wg_wipe(h, sizeof h);
	wg_wipe(k, sizeof k);
	wg_wipe(s, sizeof s);
	return rc;
}

int wg_accept_initiation(struct wg_peer *p, struct wg_initiation *in, uint64_t now)
{
	int rc = -1;
	if (in->peer != p)
		goto out;
	/* Replay: the timestamp must be newer than any accepted before (5.1). */
	if (memcmp(in->timestamp, p->latest_timestamp, WG_TAI64N_LEN) <= 0)
		goto out;
	/* Flood: at most one initiation per WG_HANDSHAKE_INITIATION_RATE. */
	if (p->last_initiation_accepted && now - p->last_initiation_accepted < WG_HANDSHAKE_INITIATION_RATE)
		goto out;
	memcpy(p->latest_timestamp, in->timestamp, WG_TAI64N_LEN);
	p->last_initiation_accepted = now ? now : 1;
	clear_handshake(p);
	memcpy(p->hash, in->hash, WG_HASH_LEN);
	memcpy(p->chain, in->chain, WG_KEY_LEN);
	memcpy(p->remote_eph, in->remote_eph, WG_KEY_LEN);
	p->hs_remote_index = in->sender;
	p->state = WG_HS_INITIATION_CONSUMED;
	rc = 0;
out:
	wg_initiation_wipe(in);
	return rc;
}

/* ---- response and session --------------------------------------------- */

static struct wg_keypair *new_keypair(const uint8_t send[WG_KEY_LEN], const uint8_t recv[WG_KEY_LEN], uint64_t now,
        uint32_t local, uint32_t remote, bool we_initiated)
{
	struct wg_keypair *kp = calloc(1, sizeof *kp);
	if (!kp)
		return NULL;
	if (wg_aead_init(&kp->send) || wg_aead_init(&kp->recv) || wg_aead_setkey(&kp->send, send) ||
	        wg_aead_setkey(&kp->recv, recv)) {
		wg_keypair_free(kp);
		return NULL;
	}
	memcpy(kp->send_key, send, WG_KEY_LEN);
	memcpy(kp->recv_key, recv, WG_KEY_LEN);
	atomic_init(&kp->send_counter, 0);
	wg_replay_init(&kp->replay);
	kp->birth = now;
	kp->local_index = local;
	kp->remote_index = remote;
	kp->we_initiated = we_initiated;
	return kp;
}

/* The common tail of both sides (5.4.3): ck mixes E_r, DH(E_r, E_i), DH(E_r, S_i)
 * (the caller did those), then (ck, tau, k) = Kdf3(ck, Q); h = Hash(h || tau). */
static int psk_step(uint8_t ck[WG_KEY_LEN], uint8_t h[WG_HASH_LEN], uint8_t k[WG_KEY_LEN], const uint8_t psk[WG_KEY_LEN])
{
	uint8_t tau[WG_KEY_LEN];
	int rc = wg_kdf(ck, tau, k, ck, psk, WG_KEY_LEN) || mix_hash(h, tau, sizeof tau) ? -1 : 0;
	wg_wipe(tau, sizeof tau);
	return rc;
}

static int dh_into(uint8_t ck[WG_KEY_LEN], const uint8_t priv[WG_KEY_LEN], const uint8_t pub[WG_KEY_LEN])
{
	uint8_t s[WG_KEY_LEN];
	int rc = wg_x25519(s, priv, pub) || mix_key(ck, s, sizeof s) ? -1 : 0;
	wg_wipe(s, sizeof s);
	return rc;
}

/* The response with the ephemeral key pair (e, e_pub) given. */
static int create_response(struct wg_peer *p, uint32_t local_index, uint64_t now, const uint8_t e[WG_KEY_LEN],
        const uint8_t e_pub[WG_KEY_LEN], uint8_t out[WG_RESPONSE_LEN], struct wg_keypair *retired[2])
{
	uint8_t ck[WG_KEY_LEN], h[WG_HASH_LEN], k[WG_KEY_LEN], t1[WG_KEY_LEN], t2[WG_KEY_LEN];
	struct wg_keypair *kp = NULL;
	int rc = -1;
	retired[0] = retired[1] = NULL;
	if (p->state != WG_HS_INITIATION_CONSUMED)
		return -1;
	memcpy(ck, p->chain, sizeof ck);
	memcpy(h, p->hash, sizeof h);
	memset(out, 0, WG_RESPONSE_LEN);
	header(out, WG_MSG_RESPONSE);
	put32(out + R_SENDER, local_index);
	put32(out + R_RECEIVER, p->hs_remote_index);
	memcpy(out + R_EPH, e_pub, WG_KEY_LEN);
	if (mix_key(ck, out + R_EPH, WG_KEY_LEN) || mix_hash(h, out + R_EPH, WG_KEY_LEN))
		goto out;
	/* ee, se */
	if (dh_into(ck, e, p->remote_eph) || dh_into(ck, e, p->remote_static) || psk_step(ck, h, k, p->psk))
		goto out;
	/* empty = AEAD(k, 0, "", h) */
	if (wg_aead_seal_once(k, 0, h, WG_HASH_LEN, NULL, 0, out + R_EMPTY) || mix_hash(h, out + R_EMPTY, WG_TAG_LEN))
		goto out;
	if (wg_cookie_add_macs(&p->cookie, out, WG_RESPONSE_LEN, now))
		goto out;
	/* (T_recv, T_send) = Kdf2(ck, "") on the responder's side */
	if (wg_kdf(t1, t2, NULL, ck, NULL, 0) ||
	        !(kp = new_keypair(t2, t1, now, local_index, p->hs_remote_index, false)))
		goto out;
	/* Responder: the new keypair waits in `next` for confirmation. */
	retired[0] = p->next;
	retired[1] = p->previous;
	p->previous = NULL;
	p->next = kp;
	clear_handshake(p);
	rc = 0;
out:
	wg_wipe(ck, sizeof ck);
	wg_wipe(h, sizeof h);
	wg_wipe(k, sizeof k);
	wg_wipe(t1, sizeof t1);
	wg_wipe(t2, sizeof t2);
	if (rc)
		memset(out, 0, WG_RESPONSE_LEN);
	return rc;
}

int wg_create_response(const struct wg_identity *id, struct wg_peer *p, uint32_t local_index, uint64_t now,
        uint8_t out[WG_RESPONSE_LEN], struct wg_keypair *retired[2])
{
	uint8_t e[WG_KEY_LEN], e_pub[WG_KEY_LEN];
	(void)id;
	retired[0] = retired[1] = NULL;
	int rc = wg_x25519_generate(e, e_pub) ? -1 : create_response(p, local_index, now, e, e_pub, out, retired);
	wg_wipe(e, sizeof e);
	return rc;
}

int wg_create_response_with(const struct wg_identity *id, struct wg_peer *p, uint32_t local_index, uint64_t now,
        const uint8_t eph_priv[WG_KEY_LEN], uint8_t out[WG_RESPONSE_LEN], struct wg_keypair *retired[2])
{
	uint8_t e_pub[WG_KEY_LEN];
	(void)id;
	retired[0] = retired[1] = NULL;
	return wg_x25519_public(e_pub, eph_priv) ? -1 : create_response(p, local_index, now, eph_priv, e_pub, out, retired);
}

uint32_t wg_receiver_index(const uint8_t *msg, size_t len)
{
	if (len >= WG_TRANSPORT_MIN_LEN && is_type(msg, WG_MSG_TRANSPORT))
		return get32(msg + T_RECEIVER);
	if (len == WG_RESPONSE_LEN && is_type(msg, WG_MSG_RESPONSE))
		return get32(msg + R_RECEIVER);
	if (len == WG_COOKIE_REPLY_LEN && is_type(msg, WG_MSG_COOKIE))
		return get32(msg + 4);
	return 0;
}

int wg_consume_response(const struct wg_identity *id, struct wg_peer *p, const uint8_t *msg, size_t len, uint64_t now,
        struct wg_keypair *retired[2])
{
	uint8_t ck[WG_KEY_LEN], h[WG_HASH_LEN], k[WG_KEY_LEN], t1[WG_KEY_LEN], t2[WG_KEY_LEN], nothing[1];
	struct wg_keypair *kp = NULL;
	int rc = -1;
	retired[0] = retired[1] = NULL;
	if (len != WG_RESPONSE_LEN || !is_type(msg, WG_MSG_RESPONSE) || p->state != WG_HS_INITIATION_SENT ||
	        get32(msg + R_RECEIVER) != p->hs_local_index)
		return -1;
	memcpy(ck, p->chain, sizeof ck);
	memcpy(h, p->hash, sizeof h);
	if (mix_key(ck, msg + R_EPH, WG_KEY_LEN) || mix_hash(h, msg + R_EPH, WG_KEY_LEN))
		goto out;
	if (dh_into(ck, p->eph_priv, msg + R_EPH) || dh_into(ck, id->priv, msg + R_EPH) || psk_step(ck, h, k, p->psk))
		goto out;
	if (wg_aead_open_once(k, 0, h, WG_HASH_LEN, msg + R_EMPTY, WG_TAG_LEN, nothing) ||
	        mix_hash(h, msg + R_EMPTY, WG_TAG_LEN))
		goto out;
	/* (T_send, T_recv) = Kdf2(ck, "") on the initiator's side */
	if (wg_kdf(t1, t2, NULL, ck, NULL, 0) ||
	        !(kp = new_keypair(t1, t2, now, p->hs_local_index, get32(msg + R_SENDER), true)))
		goto out;
	/* Initiator: usable at once. An unconfirmed `next` (we were also a
	 * responder meanwhile) becomes previous; the old current retires. */
	if (p->next) {
		retired[0] = p->current;
		retired[1] = p->previous;
		p->previous = p->next;
		p->next = NULL;
	} else {
		retired[0] = p->previous;
		p->previous = p->current;
	}
	p->current = kp;
	clear_handshake(p);
	rc = 0;
out:
	wg_wipe(ck, sizeof ck);
	wg_wipe(h, sizeof h);
	wg_wipe(k, sizeof k);
	wg_wipe(t1, sizeof t1);
	wg_wipe(t2, sizeof t2);
	return rc;
}

void wg_received_with(struct wg_peer *p, struct wg_keypair *kp, struct wg_keypair **retired)
{
	*retired = NULL;
	if (!kp || kp != p->next)
		return;
	*retired = p->previous;
	p->previous = p->current;
	p->current = kp;
	p->next = NULL;
}

/* ---- transport ---------------------------------------------------------- */

long wg_transport_seal(struct wg_keypair *kp, const uint8_t *pt, size_t len, size_t mtu, uint64_t now, uint8_t *out,
        uint64_t *counter_out)
{
	if (len > (size_t)1 << 20)
		return -1;
	size_t padded = (len + 15) & ~(size_t)15;
	if (len <= mtu && padded > mtu)
		padded = mtu;
	if (wg_keypair_expired(now - kp->birth, atomic_load_explicit(&kp->send_counter, memory_order_relaxed)))
		return -1;
	uint64_t ctr = atomic_fetch_add_explicit(&kp->send_counter, 1, memory_order_relaxed);
	if (ctr >= WG_REJECT_AFTER_MESSAGES)
		return -1;
	header(out, WG_MSG_TRANSPORT);
	put32(out + T_RECEIVER, kp->remote_index);
	for (int i = 0; i < 8; i++)
		out[T_COUNTER + i] = (uint8_t)(ctr >> (8 * i));
	if (wg_aead_seal(&kp->send, ctr, NULL, 0, pt, len, padded - len, out + WG_TRANSPORT_HEADER_LEN))
		return -1;
	if (counter_out)
		*counter_out = ctr;
	return (long)(WG_TRANSPORT_HEADER_LEN + padded + WG_TAG_LEN);
}

long wg_transport_open(struct wg_keypair *kp, const uint8_t *msg, size_t len, uint64_t now, uint8_t *out)
{
	if (len < WG_TRANSPORT_MIN_LEN || len > ((size_t)1 << 20) || !is_type(msg, WG_MSG_TRANSPORT) ||
	        get32(msg + T_RECEIVER) != kp->local_index)
		return WG_ERR_MALFORMED;
	uint64_t ctr = 0;
	for (int i = 0; i < 8; i++)
		ctr |= (uint64_t)msg[T_COUNTER + i] << (8 * i);
	if (wg_keypair_expired(now - kp->birth, ctr))
		return WG_ERR_EXPIRED;
	if (wg_aead_open(&kp->recv, ctr, NULL, 0, msg + WG_TRANSPORT_HEADER_LEN, len - WG_TRANSPORT_HEADER_LEN, out))
		return WG_ERR_AUTH;
	if (!wg_replay_check(&kp->replay, ctr, WG_REJECT_AFTER_MESSAGES))
		return WG_ERR_REPLAY;
	return (long)(len - WG_TRANSPORT_OVERHEAD);
}
