/*
 * WireGuard's primitives over OpenSSL libcrypto (see crypto.h). Whitepaper
 * section 5.4 names them: DH = X25519, AEAD = ChaCha20-Poly1305 with a 64-bit
 * little-endian counter nonce, Hash = BLAKE2s-256, Mac = keyed BLAKE2s-128,
 * Hmac = HMAC-BLAKE2s, Kdf_n = HKDF built from that HMAC, XAEAD =
 * XChaCha20-Poly1305 (cookies, section 5.4.7).
 *
 * Threads and locking: the algorithm handles and the direct entry points
 * below are set once by wg_crypto_init() (before any other thread runs) and
 * only read afterwards; libcrypto's fetched objects are safe to share.
 * Besides them only the keystream scratch ks_buf, one per thread
 * (_Thread_local).
 * A struct wg_aead belongs to one thread at a time (no lock inside).
 */
#include "crypto.h"

#include <dlfcn.h>
#include <stdlib.h>
#include <string.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/params.h>
#include <openssl/rand.h>

/* Fetched once, read-only afterwards. */
static EVP_CIPHER *chacha_alg; /* ChaCha20 */
static EVP_MAC *poly_alg; /* POLY1305 */
static EVP_MD *blake2s_alg; /* BLAKE2s-256 */
static EVP_MAC *kmac_alg; /* BLAKE2SMAC */
static EVP_MAC *hmac_alg; /* HMAC */
#if defined(__x86_64__)
static bool have_avx2; /* the CPU has AVX2 (xor_bytes); set once by wg_crypto_init */
#endif

/* Zeros: ChaCha20's input for keystream, Poly1305's padding (64 for HChaCha20). */
static const uint8_t zeros[WG_AEAD_CHUNK];

/*
 * The direct path: libcrypto's ChaCha20 and Poly1305 below EVP, the same code
 * EVP ends in. EVP's per-message cost (the provider's IV and parameter
 * handling, the MAC context's) is a fifth to a quarter of sealing a 1.4 KB
 * packet on the bench machine (bench/crypto.ts), so the data plane calls
 * these when the process exports them: Node's bundled OpenSSL does, a
 * libcrypto.so does not. Their signatures
 * have been libcrypto's since 1.1.0; wg_crypto_init checks the pair against
 * the EVP path before taking it. All four set, or none.
 */
typedef void chacha_ctr32_fn(unsigned char *out, const unsigned char *in, size_t len, const unsigned int key[8],
        const unsigned int counter[4]);
typedef size_t poly_size_fn(void);
typedef void poly_init_fn(void *st, const unsigned char key[32]);
typedef void poly_update_fn(void *st, const unsigned char *in, size_t len);
typedef void poly_final_fn(void *st, unsigned char mac[16]);
static struct {
	chacha_ctr32_fn *chacha;
	poly_init_fn *init;
	poly_update_fn *update;
	poly_final_fn *final;
	size_t size; /* bytes of a POLY1305 state, a multiple of 64 */
} direct;

void wg_crypto_fini(void)
{
	EVP_CIPHER_free(chacha_alg);
	EVP_MAC_free(poly_alg);
	EVP_MD_free(blake2s_alg);
	EVP_MAC_free(kmac_alg);
	EVP_MAC_free(hmac_alg);
	chacha_alg = NULL;
	poly_alg = NULL;
	blake2s_alg = NULL;
	kmac_alg = NULL;
	hmac_alg = NULL;
}

static void direct_init(void);

int wg_crypto_init(void)
{
	if (chacha_alg && poly_alg && blake2s_alg && kmac_alg && hmac_alg)
		return 0;
	wg_crypto_fini();
	chacha_alg = EVP_CIPHER_fetch(NULL, "ChaCha20", NULL);
	poly_alg = EVP_MAC_fetch(NULL, "POLY1305", NULL);
	blake2s_alg = EVP_MD_fetch(NULL, "BLAKE2S-256", NULL);
	kmac_alg = EVP_MAC_fetch(NULL, "BLAKE2SMAC", NULL);
	hmac_alg = EVP_MAC_fetch(NULL, "HMAC", NULL);
#if defined(__x86_64__)
	have_avx2 = __builtin_cpu_supports("avx2");
#endif
	if (!chacha_alg || !poly_alg || !blake2s_alg || !kmac_alg || !hmac_alg) {
		wg_crypto_fini();
		return -1;
	}
	direct_init();
	return 0;
}

const char *wg_crypto_path(void)
{
	return direct.chacha ? "direct" : "evp";
}

void wg_wipe(void *p, size_t n)
{
	OPENSSL_cleanse(p, n);
}

bool wg_equal(const void *a, const void *b, size_t n)
{
	return CRYPTO_memcmp(a, b, n) == 0;
}

int wg_random(void *out, size_t n)
{
	if (n > (size_t)INT32_MAX)
		return -1;
	return RAND_bytes(out, (int)n) == 1 ? 0 : -1;
}

/* ---- X25519 ------------------------------------------------------------- */

int wg_x25519_generate(uint8_t priv[WG_KEY_LEN], uint8_t pub[WG_KEY_LEN])
{
	/* libcrypto's X25519 key generation clamps the stored scalar (RFC 7748 5). */
	EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new_from_name(NULL, "X25519", NULL);
	EVP_PKEY *pk = NULL;
	size_t l1 = WG_KEY_LEN, l2 = WG_KEY_LEN;
	int rc = -1;
	if (!ctx || EVP_PKEY_keygen_init(ctx) != 1 || EVP_PKEY_generate(ctx, &pk) != 1)
		goto out;
	if (EVP_PKEY_get_raw_private_key(pk, priv, &l1) != 1 || l1 != WG_KEY_LEN)
		goto out;
	if (EVP_PKEY_get_raw_public_key(pk, pub, &l2) != 1 || l2 != WG_KEY_LEN)
		goto out;
	rc = 0;
out:
	EVP_PKEY_free(pk); /* frees (and cleanses) the private key copy */
	EVP_PKEY_CTX_free(ctx);
	if (rc)
		wg_wipe(priv, WG_KEY_LEN);
	return rc;
}

int wg_x25519_public(uint8_t pub[WG_KEY_LEN], const uint8_t priv[WG_KEY_LEN])
{
	EVP_PKEY *pk = EVP_PKEY_new_raw_private_key_ex(NULL, "X25519", NULL, priv, WG_KEY_LEN);
	size_t l = WG_KEY_LEN;
	int rc = (pk && EVP_PKEY_get_raw_public_key(pk, pub, &l) == 1 && l == WG_KEY_LEN) ? 0 : -1;
	EVP_PKEY_free(pk);
	return rc;
}

int wg_x25519(uint8_t out[WG_KEY_LEN], const uint8_t priv[WG_KEY_LEN], const uint8_t pub[WG_KEY_LEN])
{
	EVP_PKEY *me = EVP_PKEY_new_raw_private_key_ex(NULL, "X25519", NULL, priv, WG_KEY_LEN);
	EVP_PKEY *peer = EVP_PKEY_new_raw_public_key_ex(NULL, "X25519", NULL, pub, WG_KEY_LEN);
	EVP_PKEY_CTX *ctx = me ? EVP_PKEY_CTX_new_from_pkey(NULL, me, NULL) : NULL;
	size_t l = WG_KEY_LEN;
	int rc = -1;
	if (!ctx || EVP_PKEY_derive_init(ctx) != 1 || EVP_PKEY_derive_set_peer(ctx, peer) != 1)
		goto out;
	/* libcrypto refuses an all-zero shared secret; checked again below. */
	if (EVP_PKEY_derive(ctx, out, &l) != 1 || l != WG_KEY_LEN)
		goto out;
	rc = wg_equal(out, zeros, WG_KEY_LEN) ? -1 : 0;
out:
	EVP_PKEY_CTX_free(ctx);
	EVP_PKEY_free(me);
	EVP_PKEY_free(peer);
	if (rc)
		wg_wipe(out, WG_KEY_LEN);
	return rc;
}

/* ---- BLAKE2s, keyed BLAKE2s, HMAC, HKDF ---------------------------------- */

int wg_hash2(uint8_t out[WG_HASH_LEN], const void *a, size_t alen, const void *b, size_t blen)
{
	EVP_MD_CTX *ctx = EVP_MD_CTX_new();
	unsigned int l = 0;
	int ok = ctx && EVP_DigestInit_ex2(ctx, blake2s_alg, NULL) == 1 && EVP_DigestUpdate(ctx, a, alen) == 1 &&
	        (blen == 0 || EVP_DigestUpdate(ctx, b, blen) == 1) && EVP_DigestFinal_ex(ctx, out, &l) == 1 &&
	        l == WG_HASH_LEN;
	EVP_MD_CTX_free(ctx);
	return ok ? 0 : -1;
}

static int mac_run(EVP_MAC *alg, const OSSL_PARAM *params, uint8_t *out, size_t outlen, const uint8_t *key,
        size_t keylen, const void *d1, size_t l1, const void *d2, size_t l2)
{
	EVP_MAC_CTX *ctx = EVP_MAC_CTX_new(alg);
	size_t l = 0;
	int ok = ctx && EVP_MAC_init(ctx, key, keylen, params) == 1 && EVP_MAC_update(ctx, d1, l1) == 1 &&
	        (l2 == 0 || EVP_MAC_update(ctx, d2, l2) == 1) && EVP_MAC_final(ctx, out, &l, outlen) == 1 &&
	        l == outlen;
	EVP_MAC_CTX_free(ctx); /* cleanses the key copy */
	return ok ? 0 : -1;
}

int wg_mac(uint8_t out[WG_MAC_LEN], const uint8_t *key, size_t keylen, const void *data, size_t len)
{
	size_t sz = WG_MAC_LEN;
	OSSL_PARAM p[] = {OSSL_PARAM_construct_size_t(OSSL_MAC_PARAM_SIZE, &sz), OSSL_PARAM_construct_end()};
	if (keylen == 0 || keylen > 32)
		return -1;
	return mac_run(kmac_alg, p, out, WG_MAC_LEN, key, keylen, data, len, NULL, 0);
}

static int hmac2(uint8_t out[WG_HASH_LEN], const uint8_t *key, size_t keylen, const void *d1, size_t l1,
        const void *d2, size_t l2)
{
	char digest[] = "BLAKE2S-256";
	OSSL_PARAM p[] = {OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, digest, 0),
	        OSSL_PARAM_construct_end()};
	if (keylen > 64)
		return -1;
	return mac_run(hmac_alg, p, out, WG_HASH_LEN, key, keylen, d1, l1, d2, l2);
}

int wg_hmac(uint8_t out[WG_HASH_LEN], const uint8_t *key, size_t keylen, const void *data, size_t len)
{
	return hmac2(out, key, keylen, data, len, NULL, 0);
}

int wg_kdf(uint8_t *out1, uint8_t *out2, uint8_t *out3, const uint8_t ck[WG_KEY_LEN], const void *input, size_t len)
{
	/* tau0 = Hmac(ck, input); tau1 = Hmac(tau0, 0x1); tau_i = Hmac(tau0, tau_{i-1} || i) */
	uint8_t t0[WG_HASH_LEN], t[3][WG_HASH_LEN];
	uint8_t one = 1, two = 2, three = 3;
	int rc = -1;
	if (!out1)
		return -1;
	if (hmac2(t0, ck, WG_KEY_LEN, input, len, NULL, 0) || hmac2(t[0], t0, sizeof t0, &one, 1, NULL, 0))
		goto out;
	if ((out2 || out3) && hmac2(t[1], t0, sizeof t0, t[0], WG_HASH_LEN, &two, 1))
		goto out;
	if (out3 && hmac2(t[2], t0, sizeof t0, t[1], WG_HASH_LEN, &three, 1))
		goto out;
	memcpy(out1, t[0], WG_HASH_LEN);
	if (out2)
		memcpy(out2, t[1], WG_HASH_LEN);
	if (out3)
		memcpy(out3, t[2], WG_HASH_LEN);
	rc = 0;
out:
	wg_wipe(t0, sizeof t0);
	wg_wipe(t, sizeof t);
	return rc;
}

/* ---- ChaCha20-Poly1305 ---------------------------------------------------- */

/*
 * The AEAD of RFC 8439 section 2.8, put together from libcrypto's ChaCha20
 * and Poly1305 rather than run through its ChaCha20-Poly1305 cipher: that
 * one makes three ChaCha20 calls per message (the Poly1305 key block, the
 * bulk, the last partial block), and a short call costs about as much as
 * the whole bulk of a 1.4 KB packet (a serial block through the vector
 * unit), so two thirds of a packet's ChaCha20 time went to 128 bytes. Here
 * one call makes the keystream for the key block and the whole padded
 * message at once (whole blocks, into a scratch buffer); the message is
 * XORed with it while being gathered into place (what the copy cost
 * anyway); Poly1305 (libcrypto's EVP_MAC) runs over AD || pad || ciphertext
 * || pad || le64 lengths. Opening authenticates before it writes a byte.
 * kat_test checks it against libcrypto's own ChaCha20-Poly1305.
 */

/*
 * The keystream scratch: one per thread, not per context (a context per
 * keypair per direction would make thousands of peers cost 8 KB each). A
 * message's keystream stays here until the thread's next message.
 */
static _Thread_local uint8_t ks_buf[WG_AEAD_CHUNK] __attribute__((aligned(64)));

static void nonce_of(uint8_t iv[16], uint64_t counter)
{
	/* libcrypto's ChaCha20 IV: the 32-bit block counter (0: the Poly1305 key block), then the
	 * 96-bit nonce, which whitepaper 5.4 makes 32 bits of zeros and the 64-bit little-endian counter. */
	memset(iv, 0, 8);
	for (int i = 0; i < 8; i++)
		iv[8 + i] = (uint8_t)(counter >> (8 * i));
}

int wg_aead_init(struct wg_aead *a)
{
	memset(a, 0, sizeof *a);
	if (direct.chacha) {
		a->direct = true;
		a->mac = aligned_alloc(64, direct.size);
		return a->mac ? 0 : -1;
	}
	a->cipher = EVP_CIPHER_CTX_new();
	a->mac = EVP_MAC_CTX_new(poly_alg);
	if (!a->cipher || !a->mac) {
		wg_aead_free(a);
		return -1;
	}
	return 0;
}

void wg_aead_free(struct wg_aead *a)
{
	if (a->direct) {
		if (a->mac)
			wg_wipe(a->mac, direct.size);
		free(a->mac);
		wg_wipe(a->key, sizeof a->key);
	} else {
		EVP_CIPHER_CTX_free(a->cipher); /* frees and cleanses the key schedule */
		EVP_MAC_CTX_free(a->mac);
	}
	a->cipher = a->mac = NULL;
	a->keyed = false;
}

static uint32_t le32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

int wg_aead_setkey(struct wg_aead *a, const uint8_t key[WG_KEY_LEN])
{
	if (a->direct) {
		for (int i = 0; i < 8; i++)
			a->key[i] = le32(key + 4 * i);
		a->keyed = true;
		return 0;
	}
	a->keyed = EVP_EncryptInit_ex2(a->cipher, chacha_alg, key, NULL, NULL) == 1;
	return a->keyed ? 0 : -1;
}

static int len_ok(size_t n)
{
	return n <= (size_t)INT32_MAX - 64;
}

static size_t min_sz(size_t a, size_t b)
{
	return a < b ? a : b;
}

typedef uint8_t v16 __attribute__((vector_size(16)));
typedef uint8_t v32 __attribute__((vector_size(32)));

/* out = x ^ y over n bytes, 16 at a time; out may equal x. */
static void xor_bytes_v16(uint8_t *out, const uint8_t *x, const uint8_t *y, size_t n)
{
	size_t i = 0;
	for (; i + 16 <= n; i += 16) {
		v16 a, b;
		memcpy(&a, x + i, 16);
		memcpy(&b, y + i, 16);
		a ^= b;
		memcpy(out + i, &a, 16);
	}
	for (; i < n; i++)
		out[i] = x[i] ^ y[i];
}

#if defined(__x86_64__)
/* The same, 64 bytes per step with AVX2 (the keystream and the message are in L1: the loads decide). */
__attribute__((target("avx2"))) static void xor_bytes_avx2(uint8_t *out, const uint8_t *x, const uint8_t *y, size_t n)
{
	size_t i = 0;
	for (; i + 64 <= n; i += 64) {
		v32 a, b, c, d;
		memcpy(&a, x + i, 32);
		memcpy(&b, x + i + 32, 32);
		memcpy(&c, y + i, 32);
		memcpy(&d, y + i + 32, 32);
		a ^= c;
		b ^= d;
		memcpy(out + i, &a, 32);
		memcpy(out + i + 32, &b, 32);
	}
	for (; i + 32 <= n; i += 32) {
		v32 a, c;
		memcpy(&a, x + i, 32);
		memcpy(&c, y + i, 32);
		a ^= c;
		memcpy(out + i, &a, 32);
	}
	xor_bytes_v16(out + i, x + i, y + i, n - i);
}
#endif

/* out = x ^ y over n bytes; out may equal x. */
static void xor_bytes(uint8_t *out, const uint8_t *x, const uint8_t *y, size_t n)
{
#if defined(__x86_64__)
	if (have_avx2 && n >= 32) {
		xor_bytes_avx2(out, x, y, n);
		return;
	}
#endif
	xor_bytes_v16(out, x, y, n);
}

/* out[0..n) = bytes [off, off + n) of the message p1 || p2 || zeros, XOR ks[0..n). */
static void xor_span(uint8_t *out, const uint8_t *ks, size_t off, size_t n, const uint8_t *p1, size_t l1,
        const uint8_t *p2, size_t l2)
{
	size_t i = 0;
	if (off < l1) {
		i = min_sz(n, l1 - off);
		xor_bytes(out, p1 + off, ks, i);
	}
	if (i < n && off + i < l1 + l2) {
		size_t o = off + i - l1, k = min_sz(n - i, l2 - o);
		xor_bytes(out + i, p2 + o, ks + i, k);
		i += k;
	}
	if (i < n)
		memcpy(out + i, ks + i, n - i);
}

/* The next n keystream bytes (a multiple of 64) into ks_buf. */
static int ks_next(struct wg_aead *a, size_t n)
{
	if (a->direct) {
		direct.chacha(ks_buf, zeros, n, a->key, a->block);
		a->block[0] += (uint32_t)(n / 64); /* a message is far below 2^32 blocks */
		return 0;
	}
	int l = 0;
	return EVP_EncryptUpdate(a->cipher, ks_buf, &l, zeros, (int)n) == 1 && (size_t)l == n ? 0 : -1;
}

/* Keystream blocks 0.. of this counter's nonce, n bytes (a multiple of 64), into ks_buf. */
static int ks_start(struct wg_aead *a, uint64_t counter, size_t n)
{
	if (a->direct) {
		/* ChaCha20_ctr32's counter words: the block, then the nonce (4 zero bytes, the 64-bit counter). */
		a->block[0] = 0;
		a->block[1] = 0;
		a->block[2] = (uint32_t)counter;
		a->block[3] = (uint32_t)(counter >> 32);
		return ks_next(a, n);
	}
	uint8_t iv[16];
	nonce_of(iv, counter);
	if (EVP_EncryptInit_ex2(a->cipher, NULL, NULL, iv, NULL) != 1)
		return -1;
	return ks_next(a, n);
}

static int mac_start(struct wg_aead *a, const uint8_t key[32])
{
	if (a->direct) {
		direct.init(a->mac, key);
		return 0;
	}
	return EVP_MAC_init(a->mac, key, 32, NULL) == 1 ? 0 : -1;
}

static int mac_feed(struct wg_aead *a, const uint8_t *p, size_t n)
{
	if (a->direct) {
		direct.update(a->mac, p, n);
		return 0;
	}
	return EVP_MAC_update(a->mac, p, n) == 1 ? 0 : -1;
}

static int mac_final(struct wg_aead *a, uint8_t tag[WG_TAG_LEN])
{
	if (a->direct) {
		direct.final(a->mac, tag);
		return 0;
	}
	size_t l = 0;
	return EVP_MAC_final(a->mac, tag, &l, WG_TAG_LEN) == 1 && l == WG_TAG_LEN ? 0 : -1;
}

/*
 * Starts a message: the first keystream chunk (key block, then up to
 * WG_AEAD_CHUNK - 64 bytes for a message of len bytes) in ks_buf; Poly1305
 * keyed from it, the AD fed. Returns the message bytes ks_buf + 64 covers.
 */
static long aead_start(struct wg_aead *a, uint64_t counter, const uint8_t *ad, size_t adlen, size_t len)
{
	size_t first = min_sz(((len + 63) & ~(size_t)63), WG_AEAD_CHUNK - 64);
	if (ks_start(a, counter, 64 + first) != 0)
		return -1;
	int keyed = mac_start(a, ks_buf);
	wg_wipe(ks_buf, 64); /* the message's one-time Poly1305 key: nothing reads it again */
	if (keyed != 0)
		return -1;
	if (adlen && (mac_feed(a, ad, adlen) != 0 || ((adlen & 15) && mac_feed(a, zeros, 16 - (adlen & 15)) != 0)))
		return -1;
	return (long)min_sz(first, len);
}

/* The next keystream chunk into ks_buf, for the message bytes that remain (rem > 0). */
static long aead_more(struct wg_aead *a, size_t rem)
{
	size_t n = min_sz((rem + 63) & ~(size_t)63, WG_AEAD_CHUNK);
	return ks_next(a, n) == 0 ? (long)min_sz(n, rem) : -1;
}

/* Poly1305's last block: the AD's and the ciphertext's lengths, 64-bit little-endian. */
static void lens_block(uint8_t lens[16], size_t adlen, size_t len)
{
	for (int i = 0; i < 8; i++) {
		lens[i] = (uint8_t)((uint64_t)adlen >> (8 * i));
		lens[8 + i] = (uint8_t)((uint64_t)len >> (8 * i));
	}
}

/* Feeds the ciphertext's padding and the lengths block, and takes the tag. */
static int aead_tag(struct wg_aead *a, size_t adlen, size_t len, uint8_t tag[WG_TAG_LEN])
{
	uint8_t lens[16];
	lens_block(lens, adlen, len);
	if ((len & 15) && mac_feed(a, zeros, 16 - (len & 15)) != 0)
		return -1;
	if (mac_feed(a, lens, sizeof lens) != 0)
		return -1;
	return mac_final(a, tag);
}

/*
 * Seals p1 || p2 || pad zero bytes (p2 may be NULL with l2 0) into out, tag
 * after. A ciphertext of whole 16-byte blocks (every padded transport
 * message) needs no Poly1305 padding: its lengths block is written where
 * the tag goes and fed with the last chunk, one Poly1305 call fewer.
 */
static int seal_pieces(struct wg_aead *a, uint64_t counter, const uint8_t *ad, size_t adlen, const uint8_t *p1,
        size_t l1, const uint8_t *p2, size_t l2, size_t pad, uint8_t *out)
{
	if (!a->keyed || pad > 15 || !len_ok(l1) || !len_ok(l2) || !len_ok(l1 + l2 + pad) || !len_ok(adlen))
		return -1;
	size_t len = l1 + l2 + pad, done = 0;
	bool joined = len > 0 && (len & 15) == 0;
	long n = aead_start(a, counter, ad, adlen, len);
	const uint8_t *ks = ks_buf + 64;
	while (n >= 0 && done < len) {
		xor_span(out + done, ks, done, (size_t)n, p1, l1, p2, l2);
		size_t fed = (size_t)n;
		if (joined && done + fed == len) {
			lens_block(out + len, adlen, len);
			fed += 16;
		}
		if (mac_feed(a, out + done, fed) != 0)
			return -1;
		done += (size_t)n;
		ks = ks_buf;
		if (done < len)
			n = aead_more(a, len - done);
	}
	if (n < 0)
		return -1;
	return joined ? mac_final(a, out + len) : aead_tag(a, adlen, len, out + len);
}

int wg_aead_seal(struct wg_aead *a, uint64_t counter, const uint8_t *ad, size_t adlen, const uint8_t *pt, size_t len,
        size_t pad, uint8_t *out)
{
	return seal_pieces(a, counter, ad, adlen, pt, len, NULL, 0, pad, out);
}

int wg_aead_seal2(struct wg_aead *a, uint64_t counter, const uint8_t *p1, size_t l1, const uint8_t *p2, size_t l2,
        size_t pad, uint8_t *out)
{
	return seal_pieces(a, counter, NULL, 0, p1, l1, p2, l2, pad, out);
}

int wg_aead_open(struct wg_aead *a, uint64_t counter, const uint8_t *ad, size_t adlen, const uint8_t *ct, size_t len,
        uint8_t *out)
{
	uint8_t tag[WG_TAG_LEN];
	if (!a->keyed || len < WG_TAG_LEN || !len_ok(len) || !len_ok(adlen))
		return -1;
	len -= WG_TAG_LEN;
	/* Authenticate first (Poly1305 reads the ciphertext only); then decrypt, chunk by chunk. */
	long n = aead_start(a, counter, ad, adlen, len);
	if (n < 0)
		return -1;
	if (out == ct && len > 0 && (len & 15) == 0) {
		/* In place, whole blocks: the lengths block stands in for the tag while Poly1305 reads (as sealing does). */
		uint8_t *lens = out + len, got[WG_TAG_LEN];
		memcpy(tag, lens, WG_TAG_LEN);
		lens_block(lens, adlen, len);
		int fed = mac_feed(a, ct, len + 16) == 0 && mac_final(a, got) == 0;
		memcpy(lens, tag, WG_TAG_LEN);
		if (!fed || !wg_equal(tag, got, WG_TAG_LEN))
			return -1;
	} else if ((len && mac_feed(a, ct, len) != 0) || aead_tag(a, adlen, len, tag) != 0 ||
	        !wg_equal(tag, ct + len, WG_TAG_LEN)) {
		return -1;
	}
	size_t done = 0;
	const uint8_t *ks = ks_buf + 64;
	while (done < len) {
		xor_bytes(out + done, ct + done, ks, (size_t)n);
		done += (size_t)n;
		ks = ks_buf;
		if (done < len && (n = aead_more(a, len - done)) < 0) {
			wg_wipe(out, done); /* all or nothing */
			return -1;
		}
	}
	return 0;
}

int wg_aead_seal_once(const uint8_t key[WG_KEY_LEN], uint64_t counter, const uint8_t *ad, size_t adlen,
        const uint8_t *pt, size_t len, uint8_t *out)
{
	struct wg_aead a;
	int rc = -1;
	if (wg_aead_init(&a))
		return -1;
	if (!wg_aead_setkey(&a, key))
		rc = wg_aead_seal(&a, counter, ad, adlen, pt, len, 0, out);
	wg_aead_free(&a);
	return rc;
}

int wg_aead_open_once(const uint8_t key[WG_KEY_LEN], uint64_t counter, const uint8_t *ad, size_t adlen,
        const uint8_t *ct, size_t len, uint8_t *out)
{
	struct wg_aead a;
	int rc = -1;
	if (wg_aead_init(&a))
		return -1;
	if (!wg_aead_setkey(&a, key))
		rc = wg_aead_open(&a, counter, ad, adlen, ct, len, out);
	wg_aead_free(&a);
	return rc;
}

/* A libcrypto symbol of this process, or NULL (no object-to-function pointer cast). */
#define RESOLVE(fn, name) \
	do { \
		void *sym_ = dlsym(RTLD_DEFAULT, name); \
		if (sym_) \
			memcpy(&(fn), &sym_, sizeof(fn)); \
	} while (0)

/*
 * Takes the direct path when this process exports libcrypto's ChaCha20_ctr32
 * and Poly1305_* and they seal exactly as EVP does (a message with AD over two
 * keystream chunks) and open what they sealed; RUDDER_WG_CRYPTO=evp keeps EVP.
 */
static void direct_init(void)
{
	const char *want = getenv("RUDDER_WG_CRYPTO");
	poly_size_fn *size = NULL;
	memset(&direct, 0, sizeof direct);
	if (want && strcmp(want, "evp") == 0)
		return;
	typeof(direct) d = {0};
	RESOLVE(d.chacha, "ChaCha20_ctr32");
	RESOLVE(d.init, "Poly1305_Init");
	RESOLVE(d.update, "Poly1305_Update");
	RESOLVE(d.final, "Poly1305_Final");
	RESOLVE(size, "Poly1305_ctx_size");
	if (!d.chacha || !d.init || !d.update || !d.final || !size)
		return;
	d.size = (size() + 63) & ~(size_t)63;
	if (d.size == 0 || d.size > 4096)
		return;
	enum { LEN = WG_AEAD_CHUNK + 100 };
	uint8_t key[WG_KEY_LEN], ad[13], msg[LEN], evp[LEN + WG_TAG_LEN], got[LEN + WG_TAG_LEN];
	const uint64_t counter = 0x0123456789abcdefull;
	for (size_t i = 0; i < sizeof key; i++)
		key[i] = (uint8_t)(7 * i + 1);
	for (size_t i = 0; i < sizeof ad; i++)
		ad[i] = (uint8_t)(3 * i + 2);
	for (size_t i = 0; i < sizeof msg; i++)
		msg[i] = (uint8_t)(13 * i + 5);
	if (wg_aead_seal_once(key, counter, ad, sizeof ad, msg, LEN, evp) != 0)
		return;
	direct = d;
	bool same = wg_aead_seal_once(key, counter, ad, sizeof ad, msg, LEN, got) == 0 &&
	        memcmp(evp, got, sizeof got) == 0 && wg_aead_open_once(key, counter, ad, sizeof ad, got, sizeof got, got) == 0 &&
	        memcmp(got, msg, LEN) == 0;
	if (!same)
		memset(&direct, 0, sizeof direct);
}

/* ---- HChaCha20 and XChaCha20-Poly1305 ---------------------------------- */

static void put_le32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)v;
	p[1] = (uint8_t)(v >> 8);
	p[2] = (uint8_t)(v >> 16);
	p[3] = (uint8_t)(v >> 24);
}

/*
 * libcrypto has no HChaCha20. A ChaCha20 block is (permuted state) + (input
 * state), word by word; HChaCha20 (draft-irtf-cfrg-xchacha section 2.2) is
 * words 0-3 and 12-15 of the permuted state with the 16-byte nonce in words
 * 12-15. libcrypto's 16-byte ChaCha20 "IV" is exactly words 12-15 (counter
 * then nonce, little-endian), so one block of keystream with IV = nonce,
 * minus the known input words, gives HChaCha20.
 */
int wg_hchacha20(uint8_t out[32], const uint8_t key[32], const uint8_t nonce[16])
{
	static const uint8_t sigma[16] = "expand 32-byte k";
	EVP_CIPHER_CTX *c = EVP_CIPHER_CTX_new();
	uint8_t block[64];
	int l = 0, rc = -1;
	if (!c || EVP_EncryptInit_ex2(c, chacha_alg, key, nonce, NULL) != 1 ||
	        EVP_EncryptUpdate(c, block, &l, zeros, 64) != 1 || l != 64)
		goto out;
	for (int i = 0; i < 4; i++) {
		put_le32(out + 4 * i, le32(block + 4 * i) - le32(sigma + 4 * i));
		put_le32(out + 16 + 4 * i, le32(block + 48 + 4 * i) - le32(nonce + 4 * i));
	}
	rc = 0;
out:
	EVP_CIPHER_CTX_free(c);
	wg_wipe(block, sizeof block);
	return rc;
}

static int xsubkey(uint8_t sub[32], uint64_t *counter, const uint8_t key[32], const uint8_t nonce[24])
{
	uint64_t n = 0;
	for (int i = 0; i < 8; i++)
		n |= (uint64_t)nonce[16 + i] << (8 * i);
	*counter = n; /* the ChaCha20 nonce is 4 zero bytes || nonce[16..24) */
	return wg_hchacha20(sub, key, nonce);
}

int wg_xaead_seal(const uint8_t key[WG_KEY_LEN], const uint8_t nonce[WG_XNONCE_LEN], const uint8_t *ad, size_t adlen,
        const uint8_t *pt, size_t len, uint8_t *out)
{
	uint8_t sub[32];
	uint64_t ctr;
	int rc = xsubkey(sub, &ctr, key, nonce) ? -1 : wg_aead_seal_once(sub, ctr, ad, adlen, pt, len, out);
	wg_wipe(sub, sizeof sub);
	return rc;
}

int wg_xaead_open(const uint8_t key[WG_KEY_LEN], const uint8_t nonce[WG_XNONCE_LEN], const uint8_t *ad, size_t adlen,
        const uint8_t *ct, size_t len, uint8_t *out)
{
	uint8_t sub[32];
	uint64_t ctr;
	int rc = xsubkey(sub, &ctr, key, nonce) ? -1 : wg_aead_open_once(sub, ctr, ad, adlen, ct, len, out);
	wg_wipe(sub, sizeof sub);
	return rc;
}
