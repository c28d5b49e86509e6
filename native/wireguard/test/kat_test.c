/*
 * Known-answer tests of native/wireguard/crypto.c: every primitive against
 * published vectors (RFC 7748 X25519, RFC 8439 ChaCha20-Poly1305, BLAKE2s
 * reference KATs, draft-irtf-cfrg-xchacha-03 HChaCha20 and
 * XChaCha20-Poly1305); keyed BLAKE2s-128, HMAC-BLAKE2s and Kdf_n against
 * values computed with Python's hashlib/hmac (an independent
 * implementation). Also tampering, length checks and context reuse, and
 * crypto.c's composed ChaCha20-Poly1305 against libcrypto's own at many lengths.
 * Threads and locking: single-threaded. Prints "N checks, 0 failures".
 */
#include "../crypto.h"
#include "check.h"

#include <openssl/evp.h>

static const char *LADIES =
        "Ladies and Gentlemen of the class of '99: If I could offer you only one tip for the future, sunscreen would be it.";

static void x25519_kats(void)
{
	uint8_t a[32], b[32], pa[32], pb[32], s1[32], s2[32], u[32], k[32], out[32];
	unhex(a, 32, "77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a");
	unhex(b, 32, "5dab087e624a8a4b79e17f8b83800ee66f3bb1292618b6fd1c2f8b27ff88e0eb");
	CHECK(wg_x25519_public(pa, a) == 0 && eqhex(pa, "8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a"),
	        "RFC 7748 6.1 Alice public");
	CHECK(wg_x25519_public(pb, b) == 0 && eqhex(pb, "de9edb7d7b7dc1b4d35b61c2ece435373f8343c85b78674dadfc7e146f882b4f"),
	        "RFC 7748 6.1 Bob public");
	CHECK(wg_x25519(s1, a, pb) == 0 && wg_x25519(s2, b, pa) == 0 && memcmp(s1, s2, 32) == 0 &&
	                eqhex(s1, "4a5d9d5ba4ce2de1728e3bf480350f25e07e21c947d19e3376f09b3c1e161742"),
	        "RFC 7748 6.1 shared secret");
	unhex(k, 32, "a546e36bf0527c9d3b16154b82465edd62144c0ac1fc5a18506a2244ba449ac4");
	unhex(u, 32, "e6db6867583030db3594c1a424b15f7c726624ec26b3353b10a903a6d0ab1c4c");
	CHECK(wg_x25519(out, k, u) == 0 && eqhex(out, "c3da55379de9c6908e94ea4df28d084f32eccf03491c71f754b4075577a28552"),
	        "RFC 7748 5.2 vector 1");
	/* A low-order point gives an all-zero secret: refused. */
	memset(u, 0, 32);
	CHECK(wg_x25519(out, k, u) != 0, "all-zero DH result refused");
	u[0] = 1;
	CHECK(wg_x25519(out, k, u) != 0, "order-1 point refused");
	/* Generation: clamped private key, public matches, DH agrees. */
	for (int i = 0; i < 20; i++) {
		uint8_t p1[32], q1[32], p2[32], q2[32], q[32];
		CHECK(wg_x25519_generate(p1, q1) == 0 && wg_x25519_generate(p2, q2) == 0, "generate");
		CHECK((p1[0] & 7) == 0 && (p1[31] & 0x80) == 0 && (p1[31] & 0x40) != 0, "clamped");
		CHECK(wg_x25519_public(q, p1) == 0 && memcmp(q, q1, 32) == 0, "public from private");
		CHECK(wg_x25519(s1, p1, q2) == 0 && wg_x25519(s2, p2, q1) == 0 && memcmp(s1, s2, 32) == 0, "DH agrees");
	}
}

static void blake2s_kats(void)
{
	uint8_t out[32], key[64], data[128];
	CHECK(wg_hash2(out, "", 0, NULL, 0) == 0 &&
	                eqhex(out, "69217a3079908094e11121d042354a7c1f55b6482ca1a51e1b250dfd1ed0eef9"),
	        "BLAKE2s-256 empty");
	CHECK(wg_hash2(out, "a", 1, "bc", 2) == 0 &&
	                eqhex(out, "508c5e8c327c14e2e1a72ba34eeb452f37458b209ed63a294d999b4c86675982"),
	        "BLAKE2s-256 abc (RFC 7693 appendix B), in two pieces");
	unhex(key, 64, "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f");
	CHECK(wg_mac(out, key, 32, "abc", 3) == 0 && eqhex(out, "61ba5f165c194692e09d12520cc4c74a"), "keyed BLAKE2s-128");
	for (int i = 0; i < 64; i++)
		data[i] = (uint8_t)i;
	CHECK(wg_mac(out, key, 16, data, 64) == 0 && eqhex(out, "dd55c51c98f8ab96ed272882941f0b6a"),
	        "keyed BLAKE2s-128, 16-byte key (mac2's cookie)");
	CHECK(wg_mac(out, key, 0, data, 1) != 0 && wg_mac(out, key, 33, data, 1) != 0, "mac key length checked");
	CHECK(wg_hmac(out, key, 32, "WireGuard", 9) == 0 &&
	                eqhex(out, "5415924543576b3f5ee867c94e1aab70586d33b32fae3fccd2c635b3e1d7198d"),
	        "HMAC-BLAKE2s");
	for (int i = 0; i < 64; i++)
		key[i] = (uint8_t)i;
	memset(data, 'x', 100);
	CHECK(wg_hmac(out, key, 64, data, 100) == 0 &&
	                eqhex(out, "92ad3ca6b5cc024090ab6986a60437a151e64560914da426747b2fefdf11694b"),
	        "HMAC-BLAKE2s 64-byte key");
	uint8_t t1[32], t2[32], t3[32];
	CHECK(wg_kdf(t1, t2, t3, key, "input", 5) == 0 &&
	                eqhex(t1, "87b7f70b24183c6db5dc4f6d9f4c47cdb203321aa2a0bef714896adb3107a040") &&
	                eqhex(t2, "538a02e1eb2e31b7e4d4b82476d1fe2acf50085d3fb584537279195f5d1f5824") &&
	                eqhex(t3, "9ad858025593be88de0f9442a589cfe84a88dc19e4753d93684d1c5efc4837f9"),
	        "Kdf3");
	uint8_t ck[32];
	memcpy(ck, key, 32);
	CHECK(wg_kdf(ck, NULL, NULL, ck, "input", 5) == 0 && memcmp(ck, t1, 32) == 0, "Kdf1 in place");
	/* The Noise initial chaining key and hash WireGuard starts from. */
	static const char C[] = "Noise_IKpsk2_25519_ChaChaPoly_BLAKE2s", I[] = "WireGuard v1 zx2c4 Jason@zx2c4.com";
	CHECK(wg_hash2(ck, C, strlen(C), NULL, 0) == 0 &&
	                eqhex(ck, "60e26daef327efc02ec335e2a025d2d016eb4206f87277f52d38d1988b78cd36"),
	        "C0");
	CHECK(wg_hash2(out, ck, 32, I, strlen(I)) == 0 &&
	                eqhex(out, "2211b361081ac566691243db458ad5322d9c6c662293e8b70ee19c65ba079ef3"),
	        "H0");
}

static void chachapoly_kats(void)
{
	/* RFC 8439 2.8.2 has a nonce whose first word is not zero, which WireGuard's
	 * nonce layout cannot express: run it through libcrypto directly, to pin
	 * the library, then check our layout with XChaCha (below) and round trips. */
	uint8_t key[32], nonce[24], ad[12], ct[256], pt[256], tag[16];
	size_t n = strlen(LADIES);
	int l = 0;
	unhex(key, 32, "808182838485868788898a8b8c8d8e8f909192939495969798999a9b9c9d9e9f");
	unhex(nonce, 12, "070000004041424344454647");
	unhex(ad, 12, "50515253c0c1c2c3c4c5c6c7");
	EVP_CIPHER_CTX *c = EVP_CIPHER_CTX_new();
	int ok = EVP_EncryptInit_ex(c, EVP_chacha20_poly1305(), NULL, key, nonce) == 1 &&
	        EVP_EncryptUpdate(c, NULL, &l, ad, 12) == 1 && EVP_EncryptUpdate(c, ct, &l, (const uint8_t *)LADIES, (int)n) == 1 &&
	        EVP_EncryptFinal_ex(c, ct + n, &l) == 1 && EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_AEAD_GET_TAG, 16, tag) == 1;
	EVP_CIPHER_CTX_free(c);
	CHECK(ok && eqhex(ct, "d31a8d34648e60db7b86afbc53ef7ec2a4aded51296e08fea9e2b5a736ee62d63dbea45e8ca9671282fafb69da92728b"
	                      "1a71de0a9e060b2905d6a5b67ecd3b3692ddbd7f2d778b8c9803aee328091b58fab324e4fad675945585808b4831d7bc"
	                      "3ff4def08e4b7a9de576d26586cec64b6116") &&
	                eqhex(tag, "1ae10b594f09e26a7e902ecbd0600691"),
	        "RFC 8439 2.8.2 (libcrypto pinned)");

	/* Our layout: nonce = 4 zero bytes || LE64 counter; reused context; padding. */
	struct wg_aead a;
	CHECK(wg_aead_init(&a) == 0 && wg_aead_setkey(&a, key) == 0, "aead init");
	for (uint64_t ctr = 0; ctr < 40; ctr += 7) {
		size_t len = (size_t)(ctr * 3 % 200), pad = (16 - len % 16) % 16;
		uint8_t buf[256 + 32], back[256 + 32];
		for (size_t i = 0; i < len; i++)
			pt[i] = (uint8_t)(i * 7 + ctr);
		CHECK(wg_aead_seal(&a, ctr, NULL, 0, pt, len, pad, buf) == 0, "seal");
		/* The same with a one-shot context and explicit zero padding. */
		uint8_t padded[256], buf2[256 + 32];
		memcpy(padded, pt, len);
		memset(padded + len, 0, pad);
		CHECK(wg_aead_seal_once(key, ctr, NULL, 0, padded, len + pad, buf2) == 0 &&
		                memcmp(buf, buf2, len + pad + 16) == 0,
		        "padding fed from the zero block == explicit padding");
		/* Two pieces split anywhere (a segment's headers and payload) == one piece. */
		size_t cut = len ? (size_t)(ctr * 5) % len : 0;
		CHECK(wg_aead_seal2(&a, ctr, pt, cut, pt + cut, len - cut, pad, buf2) == 0 &&
		                memcmp(buf, buf2, len + pad + 16) == 0,
		        "two pieces == one");
		CHECK(wg_aead_open(&a, ctr, NULL, 0, buf, len + pad + 16, back) == 0 && memcmp(back, padded, len + pad) == 0,
		        "round trip");
		CHECK(wg_aead_open(&a, ctr + 1, NULL, 0, buf, len + pad + 16, back) != 0, "wrong counter refused");
		buf[(ctr * 13) % (len + pad + 16)] ^= 0x20;
		CHECK(wg_aead_open(&a, ctr, NULL, 0, buf, len + pad + 16, back) != 0, "tampered byte refused");
		/* in place */
		memcpy(buf, pt, len);
		CHECK(wg_aead_seal(&a, ctr, pt, 3, buf, len, 0, buf) == 0 && wg_aead_open(&a, ctr, pt, 3, buf, len + 16, buf) == 0 &&
		                memcmp(buf, pt, len) == 0,
		        "in place with associated data");
	}
	CHECK(wg_aead_open(&a, 0, NULL, 0, ct, 15, pt) != 0, "shorter than a tag refused");
	CHECK(wg_aead_seal(&a, 0, NULL, 0, pt, 1, 16, ct) != 0, "pad > 15 refused");
	wg_aead_free(&a);
	struct wg_aead unkeyed;
	CHECK(wg_aead_init(&unkeyed) == 0 && wg_aead_seal(&unkeyed, 0, NULL, 0, pt, 1, 0, ct) != 0, "unkeyed refused");
	wg_aead_free(&unkeyed);
}

/* libcrypto's own ChaCha20-Poly1305 (pinned by RFC 8439 2.8.2 above) with WireGuard's nonce: the reference. */
static int evp_seal(const uint8_t key[32], uint64_t ctr, const uint8_t *ad, size_t adlen, const uint8_t *pt, size_t len,
        uint8_t *out)
{
	uint8_t iv[12] = {0};
	int l = 0;
	for (int i = 0; i < 8; i++)
		iv[4 + i] = (uint8_t)(ctr >> (8 * i));
	EVP_CIPHER_CTX *c = EVP_CIPHER_CTX_new();
	int ok = c && EVP_EncryptInit_ex(c, EVP_chacha20_poly1305(), NULL, key, iv) == 1 &&
	        (adlen == 0 || EVP_EncryptUpdate(c, NULL, &l, ad, (int)adlen) == 1) &&
	        (len == 0 || EVP_EncryptUpdate(c, out, &l, pt, (int)len) == 1) && EVP_EncryptFinal_ex(c, out + len, &l) == 1 &&
	        EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_AEAD_GET_TAG, 16, out + len) == 1;
	EVP_CIPHER_CTX_free(c);
	return ok ? 0 : -1;
}

/*
 * crypto.c composes the AEAD from ChaCha20 and Poly1305 (keystream chunks of
 * WG_AEAD_CHUNK bytes): byte for byte what libcrypto's AEAD gives, at every
 * length around a block, a chunk and a packet, with and without AD, in one
 * piece or two, in place; a bad tag leaves the output (in place: the whole
 * message) untouched.
 */
static void chachapoly_vs_libcrypto(void)
{
	static const size_t lens[] = {0, 1, 15, 16, 17, 63, 64, 65, 127, 128, 129, 1420, 1424, 1488, 4016, 4031, 4032,
	        4033, 4095, 4096, 4097, 8128, 8129, 9000, 20000, 65535};
	enum { MAX = 65535 + 16 };
	uint8_t *pt = malloc(MAX), *ref = malloc(MAX), *got = malloc(MAX), *back = malloc(MAX);
	uint8_t key[32], ad[40];
	for (int i = 0; i < 32; i++)
		key[i] = (uint8_t)(i * 29 + 3);
	for (int i = 0; i < 40; i++)
		ad[i] = (uint8_t)(i * 7 + 1);
	for (size_t i = 0; i < MAX; i++)
		pt[i] = (uint8_t)(i * 131 + (i >> 8));
	struct wg_aead a;
	CHECK(wg_aead_init(&a) == 0 && wg_aead_setkey(&a, key) == 0, "aead init");
	for (size_t k = 0; k < sizeof lens / sizeof lens[0]; k++) {
		size_t len = lens[k];
		uint64_t ctr = (uint64_t)k * 0x0101010101ull + (k == 3 ? UINT64_MAX - 1 : 0);
		for (size_t adlen = 0; adlen <= 40; adlen += 13) {
			CHECK(evp_seal(key, ctr, ad, adlen, pt, len, ref) == 0 &&
			                wg_aead_seal(&a, ctr, ad, adlen, pt, len, 0, got) == 0 && memcmp(ref, got, len + 16) == 0,
			        "seal == libcrypto, len %zu ad %zu", len, adlen);
			CHECK(wg_aead_open(&a, ctr, ad, adlen, ref, len + 16, back) == 0 && memcmp(back, pt, len) == 0,
			        "open libcrypto's, len %zu ad %zu", len, adlen);
		}
		size_t cut = len ? (len * 7 + 5) % len : 0, pad = len % 16 ? 16 - len % 16 : 0;
		if (len + pad <= 65535) {
			memcpy(back, pt, len);
			memset(back + len, 0, pad);
			CHECK(evp_seal(key, ctr, NULL, 0, back, len + pad, ref) == 0 &&
			                wg_aead_seal2(&a, ctr, pt, cut, pt + cut, len - cut, pad, got) == 0 &&
			                memcmp(ref, got, len + pad + 16) == 0,
			        "two pieces and padding == libcrypto, len %zu", len);
			memcpy(got, pt, len);
			CHECK(wg_aead_seal(&a, ctr, NULL, 0, got, len, pad, got) == 0 && memcmp(ref, got, len + pad + 16) == 0 &&
			                wg_aead_open(&a, ctr, NULL, 0, got, len + pad + 16, got) == 0 && memcmp(got, back, len + pad) == 0,
			        "in place, len %zu", len);
			memcpy(got, ref, len + pad + 16);
			got[(len * 3 + 1) % (len + pad + 16)] ^= 0x01;
			memcpy(back, got, len + pad + 16);
			CHECK(wg_aead_open(&a, ctr, NULL, 0, got, len + pad + 16, got) != 0 && memcmp(got, back, len + pad + 16) == 0,
			        "tampered in place refused, buffer untouched, len %zu", len);
		}
		CHECK(evp_seal(key, ctr, NULL, 0, pt, len, ref) == 0, "reference");
		ref[(len * 5 + 3) % (len + 16)] ^= 0x01;
		memset(back, 0xa5, len + 16);
		CHECK(wg_aead_open(&a, ctr, NULL, 0, ref, len + 16, back) != 0, "tampered refused, len %zu", len);
		size_t untouched = 0;
		while (untouched < len && back[untouched] == 0xa5)
			untouched++;
		CHECK(untouched == len, "a refused message writes nothing, len %zu", len);
	}
	wg_aead_free(&a);
	free(pt);
	free(ref);
	free(got);
	free(back);
}

static void xchacha_kats(void)
{
	uint8_t key[32], n16[16], out[32], nonce[24], ad[12], ct[256], pt[256];
	unhex(key, 32, "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f");
	unhex(n16, 16, "000000090000004a0000000031415927");
	CHECK(wg_hchacha20(out, key, n16) == 0 &&
	                eqhex(out, "82413b4227b27bfed30e42508a877d73a0f9e4d58a74a853c12ec41326d3ecdc"),
	        "HChaCha20 (xchacha draft 2.2.1)");
	size_t n = strlen(LADIES);
	unhex(key, 32, "808182838485868788898a8b8c8d8e8f909192939495969798999a9b9c9d9e9f");
	unhex(nonce, 24, "404142434445464748494a4b4c4d4e4f5051525354555657");
	unhex(ad, 12, "50515253c0c1c2c3c4c5c6c7");
	CHECK(wg_xaead_seal(key, nonce, ad, 12, (const uint8_t *)LADIES, n, ct) == 0 &&
	                eqhex(ct, "bd6d179d3e83d43b9576579493c0e939572a1700252bfaccbed2902c21396cbb731c7f1b0b4aa6440bf3a82f4eda7e39"
	                          "ae64c6708c54c216cb96b72e1213b4522f8c9ba40db5d945b11b69b982c1bb9e3f3fac2bc369488f76b2383565d3fff9"
	                          "21f9664c97637da9768812f615c68b13b52e") &&
	                eqhex(ct + n, "c0875924c1c7987947deafd8780acf49"),
	        "XChaCha20-Poly1305 (xchacha draft A.3.1)");
	CHECK(wg_xaead_open(key, nonce, ad, 12, ct, n + 16, pt) == 0 && memcmp(pt, LADIES, n) == 0, "XChaCha open");
	ad[0] ^= 1;
	CHECK(wg_xaead_open(key, nonce, ad, 12, ct, n + 16, pt) != 0, "XChaCha wrong AD refused");
}

int main(void)
{
	if (wg_crypto_init() != 0) {
		printf("wg_crypto_init failed: libcrypto lacks an algorithm\n");
		return 1;
	}
	printf("crypto path: %s\n", wg_crypto_path());
	x25519_kats();
	blake2s_kats();
	chachapoly_kats();
	chachapoly_vs_libcrypto();
	xchacha_kats();
	wg_crypto_fini();
	printf("%lu checks, %lu failures\n", n_checks, n_failures);
	return n_failures ? 1 : 0;
}
