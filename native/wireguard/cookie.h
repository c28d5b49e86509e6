/*
 * mac1, mac2 and cookie replies (whitepaper section 5.3 "Denial of Service
 * Mitigation and Cookies", 5.4.4 and 5.4.7): every handshake message carries
 * mac1 = Mac(Hash("mac1----" || receiver's public key), msg up to mac1);
 * under load the receiver also wants mac2 = Mac(cookie, msg up to mac2),
 * where cookie = Mac(secret, sender's address) and the secret changes every
 * 2 minutes; without a valid mac2 it answers with a cookie reply (type 3)
 * that carries the cookie XChaCha20-Poly1305-encrypted under
 * Hash("cookie--" || its public key) with the message's mac1 as AD.
 *
 * Two halves:
 *   struct wg_cookie_checker  (one per device) checks what arrives, makes replies;
 *   struct wg_cookie_maker    (one per peer)   stamps what we send to that peer
 *                                               and takes that peer's cookie replies.
 * Whether the device is "under load" is the caller's decision, an input.
 *
 * Threads and locking: wg_cookie_check() reads the checker's keys (read-only
 * after init) and, for mac2, its secret; wg_cookie_reply() may rotate the
 * secret. The caller guards the secret with one device-wide lock (a rwlock:
 * read for checks, write for replies; or one mutex). A maker is guarded by
 * its peer's handshake lock (it is used only when sending handshake messages
 * and when a cookie reply for that peer arrives).
 */
#ifndef RUDDER_WG_COOKIE_H
#define RUDDER_WG_COOKIE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "crypto.h"

#define WG_COOKIE_REPLY_LEN 64
#define WG_MAX_SRC_LEN 18 /* IPv6 address + port */

struct wg_cookie_checker {
	uint8_t mac1_key[WG_HASH_LEN]; /* Hash("mac1----" || our public key) */
	uint8_t reply_key[WG_HASH_LEN]; /* Hash("cookie--" || our public key) */
	uint8_t secret[WG_HASH_LEN]; /* guarded by the caller's device cookie lock */
	uint64_t secret_born; /* monotonic ns; 0 = no secret yet */
};

struct wg_cookie_maker {
	uint8_t mac1_key[WG_HASH_LEN]; /* Hash("mac1----" || peer's public key) */
	uint8_t reply_key[WG_HASH_LEN]; /* Hash("cookie--" || peer's public key) */
	uint8_t cookie[WG_MAC_LEN];
	uint64_t cookie_born; /* 0 = none */
	uint8_t last_mac1[WG_MAC_LEN];
	bool have_last_mac1;
};

int wg_cookie_checker_init(struct wg_cookie_checker *c, const uint8_t our_public[WG_KEY_LEN]);
int wg_cookie_maker_init(struct wg_cookie_maker *m, const uint8_t peer_public[WG_KEY_LEN]);
void wg_cookie_checker_wipe(struct wg_cookie_checker *c);
void wg_cookie_maker_wipe(struct wg_cookie_maker *m);

enum wg_cookie_verdict {
	WG_COOKIE_OK, /* process the message */
	WG_COOKIE_BAD_MAC1, /* drop silently */
	WG_COOKIE_NEED_REPLY, /* under load without a valid mac2: send wg_cookie_reply(), drop */
};

/*
 * Checks an initiation or a response (`len` 148 or 92, any other length is
 * BAD_MAC1): mac1 always; mac2 only when `under_load`. `src` is the sender's
 * address as bytes (IP then port, up to WG_MAX_SRC_LEN).
 */
enum wg_cookie_verdict wg_cookie_check(struct wg_cookie_checker *c, const uint8_t *msg, size_t len,
        const uint8_t *src, size_t srclen, bool under_load, uint64_t now);
/* Writes the 64-byte cookie reply to `msg` (which passed mac1) into out. */
int wg_cookie_reply(struct wg_cookie_checker *c, const uint8_t *msg, size_t len, const uint8_t *src, size_t srclen,
        uint64_t now, uint8_t out[WG_COOKIE_REPLY_LEN]);
/* The same with the 24-byte nonce given instead of a fresh random one: for
 * known-answer tests only (a nonce must never repeat under one key). */
int wg_cookie_reply_with(struct wg_cookie_checker *c, const uint8_t *msg, size_t len, const uint8_t *src,
        size_t srclen, uint64_t now, const uint8_t nonce[WG_XNONCE_LEN], uint8_t out[WG_COOKIE_REPLY_LEN]);

/* Fills mac1 and mac2 (zeros without a fresh cookie) of a message about to be sent. */
int wg_cookie_add_macs(struct wg_cookie_maker *m, uint8_t *msg, size_t len, uint64_t now);
/* Takes a cookie reply from this peer (already routed by its receiver index); 0 if accepted. */
int wg_cookie_consume_reply(struct wg_cookie_maker *m, const uint8_t *reply, size_t len, uint64_t now);

#endif
