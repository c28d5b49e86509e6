/*
 * WireGuard's cryptographic primitives (whitepaper section 5.4, "Primitives"),
 * as thin wrappers over OpenSSL's libcrypto: no primitive is written here,
 * only the glue (lengths, nonce layout, HKDF steps, HChaCha20 derivation, and
 * RFC 8439's AEAD construction over libcrypto's ChaCha20 and Poly1305).
 *
 * Threads and locking: wg_crypto_init() must run once, before any other call
 * and before a second thread exists; after that the fetched algorithms are
 * read-only and shared. Every other function is re-entrant: the one-shot
 * calls make their own short-lived contexts; a struct wg_aead is a reusable
 * context owned by ONE thread at a time (the data plane keeps one per keypair
 * per worker thread) and needs no lock of its own.
 */
#ifndef RUDDER_WG_CRYPTO_H
#define RUDDER_WG_CRYPTO_H

#include <stddef.h>
#include <stdint.h>
#include <stdbool.h>

#define WG_KEY_LEN 32 /* X25519 keys, ChaCha20 keys, chaining keys */
#define WG_HASH_LEN 32 /* BLAKE2s-256 */
#define WG_MAC_LEN 16 /* keyed BLAKE2s-128 (mac1, mac2, cookies) */
#define WG_TAG_LEN 16 /* Poly1305 tag */
#define WG_XNONCE_LEN 24

/* 0 on success, -1 if libcrypto lacks an algorithm. Idempotent. */
int wg_crypto_init(void);
void wg_crypto_fini(void);

/* Wipes secrets (OPENSSL_cleanse: not optimised away). */
void wg_wipe(void *p, size_t n);
/* Constant-time equality of n bytes. */
bool wg_equal(const void *a, const void *b, size_t n);
/* n bytes from the CSPRNG; 0 or -1. */
int wg_random(void *out, size_t n);

/* ---- X25519 (RFC 7748) ---- */
/* A fresh private key (clamped as RFC 7748 section 5 says) and its public key. */
int wg_x25519_generate(uint8_t priv[WG_KEY_LEN], uint8_t pub[WG_KEY_LEN]);
int wg_x25519_public(uint8_t pub[WG_KEY_LEN], const uint8_t priv[WG_KEY_LEN]);
/* DH; -1 also when the result is all zero (a low-order point). */
int wg_x25519(uint8_t out[WG_KEY_LEN], const uint8_t priv[WG_KEY_LEN], const uint8_t pub[WG_KEY_LEN]);

/* ---- BLAKE2s ---- */
/* out = BLAKE2s-256(a || b); b may be NULL with blen 0. */
int wg_hash2(uint8_t out[WG_HASH_LEN], const void *a, size_t alen, const void *b, size_t blen);
/* out = keyed BLAKE2s with a 16-byte digest; key 1..32 bytes (mac1/mac2/cookie). */
int wg_mac(uint8_t out[WG_MAC_LEN], const uint8_t *key, size_t keylen, const void *data, size_t len);
/* HMAC(key, data) with BLAKE2s-256 (RFC 2104; key <= 64 bytes). */
int wg_hmac(uint8_t out[WG_HASH_LEN], const uint8_t *key, size_t keylen, const void *data, size_t len);
/*
 * The HKDF of the Noise construction (whitepaper 5.4, Kdf_n): from chaining
 * key `ck` and `input`, n = 1..3 outputs of 32 bytes each into out1..out3
 * (out2/out3 NULL when not wanted). Outputs may alias ck.
 */
int wg_kdf(uint8_t *out1, uint8_t *out2, uint8_t *out3, const uint8_t ck[WG_KEY_LEN], const void *input, size_t len);

/* ---- ChaCha20-Poly1305 (RFC 8439), WireGuard's nonce: 4 zero bytes, 64-bit LE counter ---- */
/* Keystream bytes one cipher call makes (a multiple of 64): a 1.4 KB packet and its key block take one. */
#define WG_AEAD_CHUNK 4096
struct wg_aead {
	void *cipher; /* EVP path: EVP_CIPHER_CTX *, ChaCha20, key set once; per message only the nonce */
	void *mac; /* EVP path: EVP_MAC_CTX * (Poly1305); direct path: libcrypto's POLY1305 state */
	uint32_t key[8]; /* direct path: the ChaCha20 key as libcrypto takes it (little-endian words) */
	uint32_t block[4]; /* direct path: the next keystream block's counter, then the nonce's words */
	bool direct; /* made for the direct path (wg_crypto_path) */
	bool keyed;
};
/*
 * Which ChaCha20 and Poly1305 calls wg_aead makes, fixed by wg_crypto_init:
 * "direct" (libcrypto's own ChaCha20_ctr32 and Poly1305_* entry points,
 * which Node's bundled OpenSSL exports, once checked against the EVP path)
 * or "evp" (EVP_CIPHER / EVP_MAC: a system libcrypto, or RUDDER_WG_CRYPTO=evp).
 */
const char *wg_crypto_path(void);
int wg_aead_init(struct wg_aead *a);
int wg_aead_setkey(struct wg_aead *a, const uint8_t key[WG_KEY_LEN]);
void wg_aead_free(struct wg_aead *a); /* also wipes the key schedule */
/*
 * out = ChaCha20-Poly1305(pt[0..len) || zero padding of pad bytes) || tag;
 * writes len + pad + 16 bytes. One ChaCha20 call makes the keystream of the
 * Poly1305 key and of the whole message (libcrypto's short calls are slow),
 * and the plaintext is XORed with it on its way into out. pad <= 15. out may
 * equal pt.
 */
int wg_aead_seal(struct wg_aead *a, uint64_t counter, const uint8_t *ad, size_t adlen,
        const uint8_t *pt, size_t len, size_t pad, uint8_t *out);
/*
 * The same without AD for a plaintext in two pieces (a segment's headers and
 * its payload slice, wherever each lies): out = Seal(p1 || p2 || pad zeros)
 * || tag; the pieces are XORed with the keystream on their way into out.
 * out must not overlap p1 or p2 (out == p1, p2 right after it, is fine).
 */
int wg_aead_seal2(struct wg_aead *a, uint64_t counter, const uint8_t *p1, size_t l1, const uint8_t *p2, size_t l2,
        size_t pad, uint8_t *out);
/*
 * Opens ct[0..len) (tag included, len >= 16) into out (len - 16 bytes); -1 on
 * a bad tag, and then out is untouched (the tag is checked before any
 * decryption). out may equal ct.
 */
int wg_aead_open(struct wg_aead *a, uint64_t counter, const uint8_t *ad, size_t adlen,
        const uint8_t *ct, size_t len, uint8_t *out);
/* One-shot forms for the handshake (its own context each call). */
int wg_aead_seal_once(const uint8_t key[WG_KEY_LEN], uint64_t counter, const uint8_t *ad, size_t adlen,
        const uint8_t *pt, size_t len, uint8_t *out);
int wg_aead_open_once(const uint8_t key[WG_KEY_LEN], uint64_t counter, const uint8_t *ad, size_t adlen,
        const uint8_t *ct, size_t len, uint8_t *out);

/* ---- HChaCha20 / XChaCha20-Poly1305 (draft-irtf-cfrg-xchacha-03) ---- */
int wg_hchacha20(uint8_t out[32], const uint8_t key[32], const uint8_t nonce[16]);
int wg_xaead_seal(const uint8_t key[WG_KEY_LEN], const uint8_t nonce[WG_XNONCE_LEN], const uint8_t *ad, size_t adlen,
        const uint8_t *pt, size_t len, uint8_t *out);
int wg_xaead_open(const uint8_t key[WG_KEY_LEN], const uint8_t nonce[WG_XNONCE_LEN], const uint8_t *ad, size_t adlen,
        const uint8_t *ct, size_t len, uint8_t *out);

#endif
