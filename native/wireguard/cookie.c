/*
 * mac1/mac2 and cookie replies (see cookie.h; whitepaper 5.3, 5.4.4, 5.4.7).
 * Threads and locking: none inside. The checker's secret is guarded by the
 * caller's device-wide cookie lock; a maker by its peer's handshake lock.
 */
#include "cookie.h"
#include "timers.h"

#include <string.h>

static const char LABEL_MAC1[] = "mac1----";
static const char LABEL_COOKIE[] = "cookie--";

/* Handshake message lengths: mac1 and mac2 are the last 32 bytes. */
static bool handshake_len(size_t len)
{
	return len == 148 || len == 92;
}

static int labelled(uint8_t out[WG_HASH_LEN], const char *label, const uint8_t pub[WG_KEY_LEN])
{
	return wg_hash2(out, label, 8, pub, WG_KEY_LEN);
}

int wg_cookie_checker_init(struct wg_cookie_checker *c, const uint8_t our_public[WG_KEY_LEN])
{
	memset(c, 0, sizeof *c);
	return labelled(c->mac1_key, LABEL_MAC1, our_public) || labelled(c->reply_key, LABEL_COOKIE, our_public) ? -1
	                                                                                                         : 0;
}

int wg_cookie_maker_init(struct wg_cookie_maker *m, const uint8_t peer_public[WG_KEY_LEN])
{
	memset(m, 0, sizeof *m);
	return labelled(m->mac1_key, LABEL_MAC1, peer_public) || labelled(m->reply_key, LABEL_COOKIE, peer_public)
	        ? -1
	        : 0;
}

void wg_cookie_checker_wipe(struct wg_cookie_checker *c)
{
	wg_wipe(c, sizeof *c);
}

void wg_cookie_maker_wipe(struct wg_cookie_maker *m)
{
	wg_wipe(m, sizeof *m);
}

/* cookie = Mac(secret, src) with the current secret; -1 if the secret is stale. */
static int cookie_of(const struct wg_cookie_checker *c, const uint8_t *src, size_t srclen, uint64_t now,
        uint8_t out[WG_MAC_LEN])
{
	if (!c->secret_born || now - c->secret_born >= WG_COOKIE_REFRESH_TIME || srclen == 0 || srclen > WG_MAX_SRC_LEN)
		return -1;
	return wg_mac(out, c->secret, sizeof c->secret, src, srclen);
}

enum wg_cookie_verdict wg_cookie_check(struct wg_cookie_checker *c, const uint8_t *msg, size_t len,
        const uint8_t *src, size_t srclen, bool under_load, uint64_t now)
{
	uint8_t mac[WG_MAC_LEN], cookie[WG_MAC_LEN];
	if (!handshake_len(len))
		return WG_COOKIE_BAD_MAC1;
	size_t m1 = len - 32, m2 = len - 16;
	if (wg_mac(mac, c->mac1_key, sizeof c->mac1_key, msg, m1) || !wg_equal(mac, msg + m1, WG_MAC_LEN))
		return WG_COOKIE_BAD_MAC1;
	if (!under_load)
		return WG_COOKIE_OK;
	enum wg_cookie_verdict v = WG_COOKIE_NEED_REPLY;
	if (!cookie_of(c, src, srclen, now, cookie) && !wg_mac(mac, cookie, sizeof cookie, msg, m2) &&
	        wg_equal(mac, msg + m2, WG_MAC_LEN))
		v = WG_COOKIE_OK;
	wg_wipe(cookie, sizeof cookie);
	return v;
}

int wg_cookie_reply(struct wg_cookie_checker *c, const uint8_t *msg, size_t len, const uint8_t *src, size_t srclen,
        uint64_t now, uint8_t out[WG_COOKIE_REPLY_LEN])
{
	uint8_t nonce[WG_XNONCE_LEN];
	return wg_random(nonce, sizeof nonce) ? -1 : wg_cookie_reply_with(c, msg, len, src, srclen, now, nonce, out);
}

int wg_cookie_reply_with(struct wg_cookie_checker *c, const uint8_t *msg, size_t len, const uint8_t *src,
        size_t srclen, uint64_t now, const uint8_t nonce[WG_XNONCE_LEN], uint8_t out[WG_COOKIE_REPLY_LEN])
{
	uint8_t cookie[WG_MAC_LEN];
	if (!handshake_len(len) || srclen == 0 || srclen > WG_MAX_SRC_LEN)
		return -1;
	if (!c->secret_born || now - c->secret_born >= WG_COOKIE_REFRESH_TIME) {
		if (wg_random(c->secret, sizeof c->secret))
			return -1;
		c->secret_born = now ? now : 1;
	}
	if (cookie_of(c, src, srclen, now, cookie))
		return -1;
	/* type 3, reserved, receiver = the message's sender index (bytes 4..8 of both handshake types) */
	memset(out, 0, 4);
	out[0] = 3;
	memcpy(out + 4, msg + 4, 4);
	memcpy(out + 8, nonce, WG_XNONCE_LEN);
	int rc = wg_xaead_seal(c->reply_key, out + 8, msg + len - 32, WG_MAC_LEN, cookie, sizeof cookie, out + 32) ? -1 : 0;
	wg_wipe(cookie, sizeof cookie);
	return rc;
}

int wg_cookie_add_macs(struct wg_cookie_maker *m, uint8_t *msg, size_t len, uint64_t now)
{
	if (!handshake_len(len))
		return -1;
	size_t m1 = len - 32, m2 = len - 16;
	if (wg_mac(msg + m1, m->mac1_key, sizeof m->mac1_key, msg, m1))
		return -1;
	memcpy(m->last_mac1, msg + m1, WG_MAC_LEN);
	m->have_last_mac1 = true;
	if (m->cookie_born && now - m->cookie_born < WG_COOKIE_REFRESH_TIME)
		return wg_mac(msg + m2, m->cookie, sizeof m->cookie, msg, m2);
	memset(msg + m2, 0, WG_MAC_LEN);
	return 0;
}

int wg_cookie_consume_reply(struct wg_cookie_maker *m, const uint8_t *reply, size_t len, uint64_t now)
{
	uint8_t cookie[WG_MAC_LEN];
	if (len != WG_COOKIE_REPLY_LEN || reply[0] != 3 || reply[1] || reply[2] || reply[3] || !m->have_last_mac1)
		return -1;
	if (wg_xaead_open(m->reply_key, reply + 8, m->last_mac1, WG_MAC_LEN, reply + 32, 32, cookie))
		return -1;
	memcpy(m->cookie, cookie, sizeof cookie);
	m->cookie_born = now ? now : 1;
	m->have_last_mac1 = false; /* one reply per message sent */
	wg_wipe(cookie, sizeof cookie);
	return 0;
}
