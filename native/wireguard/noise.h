/*
 * WireGuard's handshake (Noise_IKpsk2_25519_ChaChaPoly_BLAKE2s, whitepaper
 * section 5.4), its transport messages (5.4.6) and the keypair rotation with
 * key confirmation (5.4.6 / 6.1). Message layouts, all integers little-endian:
 *
 *   initiation (type 1, 148 B): type|0|0|0 sender[4] ephemeral[32] static[32+16] timestamp[12+16] mac1[16] mac2[16]
 *   response   (type 2,  92 B): type|0|0|0 sender[4] receiver[4] ephemeral[32] empty[0+16] mac1[16] mac2[16]
 *   cookie     (type 3,  64 B): see cookie.h
 *   transport  (type 4, >=32 B): type|0|0|0 receiver[4] counter[8] ciphertext (plaintext padded to 16) + tag[16]
 *
 * This file does no I/O, keeps no clock and no index table: the caller picks
 * unique random local indices (and maps them to peers/keypairs), supplies
 * `now` (monotonic ns) and TAI64N timestamps (wg_tai64n()), verifies mac1 /
 * mac2 with cookie.h before handing a handshake message here, and sends what
 * comes out.
 *
 * Threads and locking (the plan for the data plane):
 *   - struct wg_identity and a peer's configuration (remote_static, psk,
 *     precomputed static DH) are read-only after setup; no lock.
 *   - a peer's handshake state (and its cookie maker) is guarded by the
 *     peer's handshake lock, held around wg_create_initiation(),
 *     wg_accept_initiation(), wg_create_response(), wg_consume_response().
 *     wg_open_initiation() reads only read-only state and needs no lock.
 *   - a peer's keypair slots (current/previous/next) are guarded by the
 *     peer's keypair lock (or published with RCU); functions that change them
 *     hand back the keypairs they displaced in `retired`, for the caller to
 *     free once no thread can still use them (wg_keypair_free()).
 *   - in a keypair, the send counter is atomic (any sender thread may take
 *     one); the receive replay window is guarded by the caller's per-keypair
 *     receive serialisation (see replay.h); struct wg_aead contexts are one
 *     thread's each: the data plane will give each worker its own copy.
 */
#ifndef RUDDER_WG_NOISE_H
#define RUDDER_WG_NOISE_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cookie.h"
#include "crypto.h"
#include "replay.h"

#define WG_MSG_INITIATION 1
#define WG_MSG_RESPONSE 2
#define WG_MSG_COOKIE 3
#define WG_MSG_TRANSPORT 4
#define WG_INITIATION_LEN 148
#define WG_RESPONSE_LEN 92
#define WG_TRANSPORT_HEADER_LEN 16
#define WG_TRANSPORT_MIN_LEN (WG_TRANSPORT_HEADER_LEN + WG_TAG_LEN) /* a keepalive */
#define WG_TRANSPORT_OVERHEAD (WG_TRANSPORT_HEADER_LEN + WG_TAG_LEN)
#define WG_TAI64N_LEN 12

/* This host. Read-only after wg_identity_init(). */
struct wg_identity {
	uint8_t priv[WG_KEY_LEN], pub[WG_KEY_LEN];
	struct wg_cookie_checker cookies; /* its secret: the caller's device cookie lock */
};

struct wg_keypair {
	/* The session keys, kept (wiped on free) so that each worker thread can
	 * key its own struct wg_aead for this keypair; send/recv below are the
	 * contexts of the one thread that uses wg_transport_seal/open. */
	uint8_t send_key[WG_KEY_LEN], recv_key[WG_KEY_LEN];
	struct wg_aead send, recv;
	_Atomic uint64_t send_counter; /* next counter to use */
	struct wg_replay replay; /* caller serialises receives per keypair */
	uint64_t birth; /* monotonic ns */
	uint32_t local_index, remote_index;
	bool we_initiated;
	/* The caller's bookkeeping (zero from here): a unique id for its
	 * per-thread context caches, and its list of keypairs awaiting a grace
	 * period before wg_keypair_free(). */
	uint64_t serial;
	struct wg_keypair *next_retired;
	uint64_t retired_gen;
};

enum wg_handshake_state { WG_HS_NONE,
	WG_HS_INITIATION_SENT,
	WG_HS_INITIATION_CONSUMED };

struct wg_peer {
	/* configuration: read-only after wg_peer_init() */
	uint8_t remote_static[WG_KEY_LEN];
	uint8_t psk[WG_KEY_LEN]; /* zeros when none (Noise's default Q) */
	uint8_t static_dh[WG_KEY_LEN]; /* DH(our private, their public), computed once */
	/* handshake: guarded by the peer's handshake lock */
	struct wg_cookie_maker cookie;
	enum wg_handshake_state state;
	uint8_t hash[WG_HASH_LEN], chain[WG_KEY_LEN];
	uint8_t eph_priv[WG_KEY_LEN], remote_eph[WG_KEY_LEN];
	uint32_t hs_local_index, hs_remote_index;
	uint8_t latest_timestamp[WG_TAI64N_LEN]; /* greatest initiation timestamp accepted */
	uint64_t last_initiation_accepted; /* monotonic ns, flood limit */
	/* keypair slots: guarded by the peer's keypair lock (or RCU) */
	struct wg_keypair *current, *previous, *next;
};

int wg_identity_init(struct wg_identity *id, const uint8_t priv[WG_KEY_LEN]);
void wg_identity_wipe(struct wg_identity *id);
/* psk may be NULL. -1 if the public key is unusable (low order). */
int wg_peer_init(struct wg_peer *p, const struct wg_identity *id, const uint8_t remote_static[WG_KEY_LEN],
        const uint8_t *psk);
/* Wipes the peer and frees its keypairs (only when no thread can reach them). */
void wg_peer_wipe(struct wg_peer *p);

/*
 * TAI64N for initiations (whitepaper 5.1): 8-byte big-endian 2^62 + seconds,
 * 4-byte big-endian nanoseconds, of the wall clock `realtime_ns` (nanoseconds
 * are rounded down to a 2^24 ns grid so the timestamp does not serve as a
 * precise clock). Never goes backwards: the result is strictly greater than
 * `floor` (the last timestamp this host sent, 12 bytes, or NULL; it may be
 * `out` itself, to advance a stored timestamp in place). Peers drop
 * initiations whose timestamp is not greater than the last one they accepted
 * from us, so across restarts the caller must persist the last timestamp it
 * used (or a bound above it) and pass it as the floor: after a reboot with a
 * clock that went back, initiations still get through.
 */
void wg_tai64n(uint8_t out[WG_TAI64N_LEN], uint64_t realtime_ns, const uint8_t *floor);

/* Initiator: writes a 148-byte initiation (mac1/mac2 included). */
int wg_create_initiation(const struct wg_identity *id, struct wg_peer *p, uint32_t local_index,
        const uint8_t timestamp[WG_TAI64N_LEN], uint64_t now, uint8_t out[WG_INITIATION_LEN]);
/* The same with the ephemeral private key given instead of a fresh random
 * one: for known-answer tests only (an ephemeral key must never be reused). */
int wg_create_initiation_with(const struct wg_identity *id, struct wg_peer *p, uint32_t local_index,
        const uint8_t timestamp[WG_TAI64N_LEN], uint64_t now, const uint8_t eph_priv[WG_KEY_LEN],
        uint8_t out[WG_INITIATION_LEN]);

/* Responder, step 1 (no lock): decrypts an initiation whose macs were checked. */
struct wg_initiation {
	struct wg_peer *peer;
	uint8_t hash[WG_HASH_LEN], chain[WG_KEY_LEN], remote_eph[WG_KEY_LEN], timestamp[WG_TAI64N_LEN];
	uint32_t sender;
};
typedef struct wg_peer *(*wg_peer_lookup)(void *ctx, const uint8_t remote_static[WG_KEY_LEN]);
int wg_open_initiation(const struct wg_identity *id, const uint8_t *msg, size_t len, wg_peer_lookup lookup, void *ctx,
        struct wg_initiation *out);
/* Responder, step 2 (peer's handshake lock held): refuses a replayed or too
 * frequent initiation, else takes it as the peer's handshake state. */
int wg_accept_initiation(struct wg_peer *p, struct wg_initiation *in, uint64_t now);
void wg_initiation_wipe(struct wg_initiation *in);

/*
 * Responder: writes the 92-byte response and derives the session; the new
 * keypair becomes `next` (used for sending only after the initiator
 * confirmed it with its first transport message: wg_received_with()).
 * Displaced keypairs are put in retired[0..2) (NULL if none).
 */
int wg_create_response(const struct wg_identity *id, struct wg_peer *p, uint32_t local_index, uint64_t now,
        uint8_t out[WG_RESPONSE_LEN], struct wg_keypair *retired[2]);
/* The same with the ephemeral private key given: for known-answer tests only. */
int wg_create_response_with(const struct wg_identity *id, struct wg_peer *p, uint32_t local_index, uint64_t now,
        const uint8_t eph_priv[WG_KEY_LEN], uint8_t out[WG_RESPONSE_LEN], struct wg_keypair *retired[2]);
/* Receiver index of a response or transport message (to find the peer/keypair); 0 if too short. */
uint32_t wg_receiver_index(const uint8_t *msg, size_t len);
/* Initiator: consumes a response (macs checked, routed to p by receiver index);
 * the new keypair becomes current at once. */
int wg_consume_response(const struct wg_identity *id, struct wg_peer *p, const uint8_t *msg, size_t len, uint64_t now,
        struct wg_keypair *retired[2]);

/* Key confirmation: call after a transport message authenticated with kp.
 * If kp was `next`, it becomes current (the old previous goes to *retired). */
void wg_received_with(struct wg_peer *p, struct wg_keypair *kp, struct wg_keypair **retired);
void wg_keypair_free(struct wg_keypair *kp);

/*
 * Transport, send: encrypts pt[0..len) into out as one transport message;
 * the plaintext is padded with zeros to a multiple of 16 but not beyond `mtu`
 * (when len itself is not beyond it). Returns the message length (16 + padded
 * + 16), or -1 when the keypair may no longer send (expired or counter
 * exhausted: start a handshake). `len` 0 makes a keepalive. Either out does
 * not overlap pt, or pt == out + 16 (in place: the caller read the segment
 * 16 bytes into its send buffer, with room for padding + 16 after it).
 * *counter_out (if not NULL) receives the counter used.
 */
long wg_transport_seal(struct wg_keypair *kp, const uint8_t *pt, size_t len, size_t mtu, uint64_t now, uint8_t *out,
        uint64_t *counter_out);
/*
 * Transport, receive: authenticates and decrypts msg (routed to kp by its
 * receiver index) into out (len - 32 bytes; out may equal msg + 16), then
 * applies the replay window. Returns the padded plaintext length (0 is a
 * keepalive), or a negative wg_transport_error.
 */
enum wg_transport_error { WG_ERR_MALFORMED = -1,
	WG_ERR_EXPIRED = -2,
	WG_ERR_AUTH = -3,
	WG_ERR_REPLAY = -4 };
long wg_transport_open(struct wg_keypair *kp, const uint8_t *msg, size_t len, uint64_t now, uint8_t *out);

#endif
