/*
 * wg_probe: a minimal WireGuard peer built from native/wireguard, for the
 * interop test against the real wireguard-go (test/e2e/wireguard-interop).
 * One UDP socket, one peer, no TUN: it speaks ICMP echo itself.
 *
 *   wg_probe initiate|respond LISTEN_PORT PEER_IP PEER_PORT PRIV_HEX PEER_PUB_HEX PSK_HEX|- \
 *            LOCAL_OVERLAY REMOTE_OVERLAY COUNT [FLOOD [GIVE_UP_S]]
 *
 * initiate: handshake as initiator (retrying every 5 s), then COUNT ICMP echo
 *   requests LOCAL_OVERLAY -> REMOTE_OVERLAY, each encrypted with the session,
 *   and checks every decrypted echo reply (addresses, id, seq, payload,
 *   checksums). With FLOOD > 0 it first sends FLOOD copies of an initiation
 *   to push the peer under load, expects a cookie reply (XChaCha20-Poly1305,
 *   decrypted and taken), and then handshakes with mac2 set.
 * respond: waits for initiations, answers them, and answers COUNT decrypted
 *   echo requests to LOCAL_OVERLAY with encrypted echo replies (key
 *   confirmation: the session becomes current on the first transport message).
 * Environment: WG_PROBE_CLOCK_OFFSET_S shifts the wall clock (a reboot with
 * a clock that went back); WG_PROBE_TS_FILE holds the last TAI64N timestamp
 * sent, read at start as the floor and rewritten before each initiation (the
 * persistence wg_tai64n() asks of its caller).
 * Prints progress lines and finally "PROBE OK ..." (exit 0), or "PROBE FAIL
 * reason" (exit 1). Gives up after GIVE_UP_S seconds (default 40).
 * Threads and locking: single-threaded.
 */
#include "../cookie.h"
#include "../crypto.h"
#include "../noise.h"
#include "../timers.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static int sock = -1;
static struct sockaddr_in peer_addr;
static struct wg_identity id;
static struct wg_peer peer;
static uint32_t local_ip, remote_ip;

static uint64_t mono(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (uint64_t)t.tv_sec * WG_NS_PER_S + (uint64_t)t.tv_nsec;
}

static int64_t clock_offset_s; /* WG_PROBE_CLOCK_OFFSET_S: a wall clock that went back */
static const char *ts_file; /* WG_PROBE_TS_FILE: the persisted TAI64N floor */

static uint64_t wall(void)
{
	struct timespec t;
	clock_gettime(CLOCK_REALTIME, &t);
	return (uint64_t)((int64_t)t.tv_sec + clock_offset_s) * WG_NS_PER_S + (uint64_t)t.tv_nsec;
}

static int fail(const char *why)
{
	printf("PROBE FAIL %s\n", why);
	fflush(stdout);
	return 1;
}

static int parse_hex(uint8_t out[32], const char *s)
{
	if (strlen(s) != 64)
		return -1;
	for (int i = 0; i < 32; i++) {
		unsigned v;
		if (sscanf(s + 2 * i, "%2x", &v) != 1)
			return -1;
		out[i] = (uint8_t)v;
	}
	return 0;
}

static void send_dgram(const uint8_t *p, size_t n)
{
	if (sendto(sock, p, n, 0, (struct sockaddr *)&peer_addr, sizeof peer_addr) < 0)
		printf("sendto: %s\n", strerror(errno));
}

/* Receives one datagram from the peer's address within ms; length or -1. */
static long recv_dgram(uint8_t *buf, size_t cap, int ms)
{
	struct pollfd pfd = {.fd = sock, .events = POLLIN};
	if (poll(&pfd, 1, ms) <= 0)
		return -1;
	struct sockaddr_in from;
	socklen_t fl = sizeof from;
	ssize_t n = recvfrom(sock, buf, cap, 0, (struct sockaddr *)&from, &fl);
	if (n < 0 || from.sin_addr.s_addr != peer_addr.sin_addr.s_addr || from.sin_port != peer_addr.sin_port)
		return -2;
	return (long)n;
}

static uint16_t csum(const uint8_t *p, size_t n)
{
	uint32_t s = 0;
	for (size_t i = 0; i + 1 < n; i += 2)
		s += (uint32_t)(p[i] << 8 | p[i + 1]);
	if (n & 1)
		s += (uint32_t)p[n - 1] << 8;
	while (s >> 16)
		s = (s & 0xffff) + (s >> 16);
	return (uint16_t)~s;
}

static void put16(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t)(v >> 8);
	p[1] = (uint8_t)v;
}

static void put32be(uint8_t *p, uint32_t v)
{
	put16(p, (uint16_t)(v >> 16));
	put16(p + 2, (uint16_t)v);
}

static uint32_t get32be(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

#define PAYLOAD 56
#define ICMP_ID 0x5747

/* An IPv4 ICMP echo (type 8 request / 0 reply); returns its length. */
static size_t icmp_echo(uint8_t *p, uint32_t src, uint32_t dst, uint8_t type, uint16_t id16, uint16_t seq,
        const uint8_t *payload, size_t plen)
{
	size_t n = 20 + 8 + plen;
	memset(p, 0, 28);
	p[0] = 0x45;
	put16(p + 2, (uint16_t)n);
	put16(p + 4, seq);
	p[8] = 64;
	p[9] = 1;
	put32be(p + 12, src);
	put32be(p + 16, dst);
	put16(p + 10, csum(p, 20));
	p[20] = type;
	put16(p + 24, id16);
	put16(p + 26, seq);
	memcpy(p + 28, payload, plen);
	put16(p + 22, csum(p + 20, 8 + plen));
	return n;
}

/* Checks a decrypted IPv4 ICMP echo; fills type/id/seq/payload. */
static int parse_echo(const uint8_t *p, size_t n, uint32_t *src, uint32_t *dst, uint8_t *type, uint16_t *id16,
        uint16_t *seq, const uint8_t **payload, size_t *plen)
{
	if (n < 28 || p[0] != 0x45 || p[9] != 1)
		return -1;
	size_t tot = (size_t)(p[2] << 8 | p[3]);
	if (tot < 28 || tot > n || csum(p, 20) != 0 || csum(p + 20, tot - 20) != 0)
		return -1;
	*src = get32be(p + 12);
	*dst = get32be(p + 16);
	*type = p[20];
	*id16 = (uint16_t)(p[24] << 8 | p[25]);
	*seq = (uint16_t)(p[26] << 8 | p[27]);
	*payload = p + 28;
	*plen = tot - 28;
	return 0;
}

static struct wg_peer *lookup(void *ctx, const uint8_t pub[WG_KEY_LEN])
{
	(void)ctx;
	return memcmp(pub, peer.remote_static, WG_KEY_LEN) == 0 ? &peer : NULL;
}

static uint8_t last_ts[12];
static uint32_t next_index;

/* The next initiation timestamp: never behind the last one, which is
 * persisted (when WG_PROBE_TS_FILE is set) before the initiation leaves. */
static void next_timestamp(void)
{
	wg_tai64n(last_ts, wall(), last_ts[0] ? last_ts : NULL);
	if (ts_file) {
		FILE *f = fopen(ts_file, "wb");
		if (f) {
			fwrite(last_ts, 1, sizeof last_ts, f);
			fclose(f);
		}
	}
}

static void send_initiation(void)
{
	uint8_t msg[WG_INITIATION_LEN];
	next_timestamp();
	if (wg_create_initiation(&id, &peer, ++next_index, last_ts, mono(), msg) == 0)
		send_dgram(msg, sizeof msg);
}

static struct wg_keypair *keypair_for(uint32_t idx)
{
	struct wg_keypair *c[] = {peer.current, peer.next, peer.previous};
	for (int i = 0; i < 3; i++)
		if (c[i] && c[i]->local_index == idx)
			return c[i];
	return NULL;
}

static void retire(struct wg_keypair *r[2])
{
	wg_keypair_free(r[0]);
	wg_keypair_free(r[1]);
}

struct flood_result {
	int cookies_taken, cookie_replies, responses;
};

/* Sends `flood` copies of one fresh initiation, then for wait_ms counts what
 * comes back addressed to it; takes the first cookie reply and the first
 * response (which completes the handshake). */
static struct flood_result flood_round(int flood, int wait_ms)
{
	struct flood_result r = {0};
	uint8_t init[WG_INITIATION_LEN], buf[2048];
	uint32_t idx = ++next_index;
	next_timestamp();
	if (wg_create_initiation(&id, &peer, idx, last_ts, mono(), init))
		return r;
	for (int i = 0; i < flood; i++)
		send_dgram(init, sizeof init);
	uint64_t until = mono() + (uint64_t)wait_ms * 1000000ULL;
	while (mono() < until) {
		long n = recv_dgram(buf, sizeof buf, 200);
		if (n < 0 || wg_receiver_index(buf, (size_t)n) != idx)
			continue;
		if (n == WG_COOKIE_REPLY_LEN) {
			r.cookie_replies++;
			if (!r.cookies_taken && wg_cookie_consume_reply(&peer.cookie, buf, (size_t)n, mono()) == 0)
				r.cookies_taken++;
		} else if (n == WG_RESPONSE_LEN) {
			struct wg_keypair *old[2];
			r.responses++;
			if (wg_consume_response(&id, &peer, buf, (size_t)n, mono(), old) == 0) {
				retire(old);
				printf("handshake complete (initiator, under load)\n");
			}
		}
	}
	return r;
}

static int do_initiate(int count, int flood, uint64_t deadline)
{
	uint8_t buf[2048], pt[2048], pkt[1600], msg[1700];
	int cookies = 0;
	if (flood > 0) {
		/* Round 1: push the peer under load until it answers with a cookie reply. */
		struct flood_result r = {0};
		for (int round = 0; round < 6 && !r.cookies_taken && mono() < deadline; round++)
			r = flood_round(flood, 1500);
		if (!r.cookies_taken)
			return fail("no valid cookie reply to the flood");
		cookies += r.cookies_taken;
		printf("cookie reply decrypted and taken (round 1: %d cookie replies, %d responses)\n", r.cookie_replies,
		        r.responses);
		/* Round 2, at once (the peer stays under load >= 1 s): the same flood
		 * with mac2 gets responses, and no cookie reply. */
		r = flood_round(flood, 1500);
		printf("round 2 with mac2: %d cookie replies, %d responses\n", r.cookie_replies, r.responses);
		if (r.cookie_replies || !r.responses)
			return fail("mac2 not accepted under load");
		fflush(stdout);
	}
	uint64_t resend = 0;
	while (!peer.current) {
		if (mono() > deadline)
			return fail("no handshake response");
		if (mono() >= resend) {
			send_initiation();
			resend = mono() + WG_REKEY_TIMEOUT;
		}
		long n = recv_dgram(buf, sizeof buf, 500);
		if (n < 0)
			continue;
		if (n == WG_COOKIE_REPLY_LEN && wg_receiver_index(buf, (size_t)n) == peer.hs_local_index) {
			if (wg_cookie_consume_reply(&peer.cookie, buf, (size_t)n, mono()) == 0) {
				cookies++;
				printf("cookie reply taken; retrying with mac2\n");
				resend = 0;
			}
			continue;
		}
		if (n != WG_RESPONSE_LEN)
			continue;
		const uint8_t src[6] = {0};
		if (wg_cookie_check(&id.cookies, buf, (size_t)n, src, sizeof src, false, mono()) != WG_COOKIE_OK) {
			printf("response with a bad mac1\n");
			continue;
		}
		struct wg_keypair *r[2];
		if (wg_consume_response(&id, &peer, buf, (size_t)n, mono(), r) == 0) {
			retire(r);
			printf("handshake complete (initiator)\n");
		} else {
			printf("response refused\n");
		}
	}
	uint8_t payload[PAYLOAD];
	int replies = 0;
	for (int seq = 1; seq <= count && mono() < deadline; seq++) {
		for (int i = 0; i < PAYLOAD; i++)
			payload[i] = (uint8_t)(seq * 13 + i);
		size_t len = icmp_echo(pkt, local_ip, remote_ip, 8, ICMP_ID, (uint16_t)seq, payload, PAYLOAD);
		long m = wg_transport_seal(peer.current, pkt, len, 1420, mono(), msg, NULL);
		if (m < 0)
			return fail("seal");
		send_dgram(msg, (size_t)m);
		uint64_t until = mono() + 5 * WG_NS_PER_S;
		while (mono() < until) {
			long n = recv_dgram(buf, sizeof buf, 500);
			if (n < 0)
				continue;
			struct wg_keypair *kp = keypair_for(wg_receiver_index(buf, (size_t)n));
			if (!kp)
				continue;
			long p = wg_transport_open(kp, buf, (size_t)n, mono(), pt);
			if (p < 0) {
				printf("transport refused (%ld)\n", p);
				continue;
			}
			struct wg_keypair *old;
			wg_received_with(&peer, kp, &old);
			wg_keypair_free(old);
			if (p == 0) {
				printf("keepalive\n");
				continue;
			}
			uint32_t s, d;
			uint8_t type;
			uint16_t id16, sq;
			const uint8_t *pl;
			size_t plen;
			if (parse_echo(pt, (size_t)p, &s, &d, &type, &id16, &sq, &pl, &plen) || type != 0 || s != remote_ip ||
			        d != local_ip || id16 != ICMP_ID || sq != seq || plen != PAYLOAD || memcmp(pl, payload, PAYLOAD)) {
				printf("unexpected packet of %ld bytes\n", p);
				continue;
			}
			printf("echo reply seq %d ok\n", seq);
			fflush(stdout);
			replies++;
			break;
		}
	}
	if (replies != count)
		return fail("missing echo replies");
	printf("PROBE OK initiate replies=%d cookies=%d\n", replies, cookies);
	return 0;
}

static int do_respond(int count, uint64_t deadline)
{
	uint8_t buf[2048], pt[2048], pkt[1600], msg[1700];
	int answered = 0, handshakes = 0;
	while (answered < count) {
		if (mono() > deadline)
			return fail(handshakes ? "missing echo requests" : "no initiation");
		long n = recv_dgram(buf, sizeof buf, 500);
		if (n < 0)
			continue;
		if (n == WG_INITIATION_LEN) {
			const uint8_t src[6] = {0};
			struct wg_initiation in;
			uint8_t resp[WG_RESPONSE_LEN];
			struct wg_keypair *r[2];
			if (wg_cookie_check(&id.cookies, buf, (size_t)n, src, sizeof src, false, mono()) != WG_COOKIE_OK) {
				printf("initiation with a bad mac1\n");
				continue;
			}
			if (wg_open_initiation(&id, buf, (size_t)n, lookup, NULL, &in) || wg_accept_initiation(&peer, &in, mono())) {
				printf("initiation refused\n");
				continue;
			}
			if (wg_create_response(&id, &peer, ++next_index, mono(), resp, r))
				return fail("create response");
			retire(r);
			send_dgram(resp, sizeof resp);
			handshakes++;
			printf("handshake answered (responder)\n");
			fflush(stdout);
			continue;
		}
		struct wg_keypair *kp = keypair_for(wg_receiver_index(buf, (size_t)n));
		if (!kp)
			continue;
		long p = wg_transport_open(kp, buf, (size_t)n, mono(), pt);
		if (p < 0) {
			printf("transport refused (%ld)\n", p);
			continue;
		}
		bool was_next = kp == peer.next;
		struct wg_keypair *old;
		wg_received_with(&peer, kp, &old);
		wg_keypair_free(old);
		if (was_next)
			printf("key confirmed: next became current\n");
		if (p == 0)
			continue;
		uint32_t s, d;
		uint8_t type;
		uint16_t id16, sq;
		const uint8_t *pl;
		size_t plen;
		if (parse_echo(pt, (size_t)p, &s, &d, &type, &id16, &sq, &pl, &plen) || type != 8 || d != local_ip ||
		        s != remote_ip) {
			printf("not an echo request for us (%ld bytes)\n", p);
			continue;
		}
		size_t len = icmp_echo(pkt, local_ip, s, 0, id16, sq, pl, plen);
		long m = wg_transport_seal(peer.current, pkt, len, 1420, mono(), msg, NULL);
		if (m < 0)
			return fail("seal");
		send_dgram(msg, (size_t)m);
		answered++;
		printf("echo request seq %u answered\n", sq);
		fflush(stdout);
	}
	printf("PROBE OK respond answered=%d handshakes=%d\n", answered, handshakes);
	return 0;
}

int main(int argc, char **argv)
{
	setvbuf(stdout, NULL, _IOLBF, 0);
	if (argc < 11)
		return fail("usage: initiate|respond LISTEN_PORT PEER_IP PEER_PORT PRIV_HEX PEER_PUB_HEX PSK_HEX|- LOCAL REMOTE COUNT [FLOOD]");
	uint8_t priv[32], pub[32], psk[32];
	struct in_addr a;
	if (wg_crypto_init())
		return fail("crypto init");
	if (parse_hex(priv, argv[5]) || parse_hex(pub, argv[6]) || (strcmp(argv[7], "-") && parse_hex(psk, argv[7])))
		return fail("bad key");
	if (wg_identity_init(&id, priv) || wg_peer_init(&peer, &id, pub, strcmp(argv[7], "-") ? psk : NULL))
		return fail("identity/peer");
	wg_wipe(priv, sizeof priv);
	memset(&peer_addr, 0, sizeof peer_addr);
	peer_addr.sin_family = AF_INET;
	peer_addr.sin_port = htons((uint16_t)atoi(argv[4]));
	if (inet_pton(AF_INET, argv[3], &peer_addr.sin_addr) != 1)
		return fail("bad peer ip");
	if (inet_pton(AF_INET, argv[8], &a) != 1)
		return fail("bad local overlay");
	local_ip = ntohl(a.s_addr);
	if (inet_pton(AF_INET, argv[9], &a) != 1)
		return fail("bad remote overlay");
	remote_ip = ntohl(a.s_addr);
	if (getenv("WG_PROBE_CLOCK_OFFSET_S"))
		clock_offset_s = strtoll(getenv("WG_PROBE_CLOCK_OFFSET_S"), NULL, 10);
	ts_file = getenv("WG_PROBE_TS_FILE");
	if (ts_file) {
		FILE *f = fopen(ts_file, "rb");
		if (f) {
			if (fread(last_ts, 1, sizeof last_ts, f) != sizeof last_ts)
				memset(last_ts, 0, sizeof last_ts);
			fclose(f);
		}
	}
	int count = atoi(argv[10]), flood = argc > 11 ? atoi(argv[11]) : 0;
	sock = socket(AF_INET, SOCK_DGRAM, 0);
	struct sockaddr_in me = {.sin_family = AF_INET, .sin_port = htons((uint16_t)atoi(argv[2]))};
	if (sock < 0 || bind(sock, (struct sockaddr *)&me, sizeof me) < 0)
		return fail("bind");
	if (wg_random(&next_index, sizeof next_index))
		return fail("random");
	next_index &= 0x7fffffff;
	printf("probe listening on %s, public key ", argv[2]);
	for (int i = 0; i < 32; i++)
		printf("%02x", id.pub[i]);
	printf("\n");
	uint64_t give_up = argc > 12 ? strtoull(argv[12], NULL, 10) : 40;
	uint64_t deadline = mono() + give_up * WG_NS_PER_S;
	int rc = strcmp(argv[1], "initiate") == 0 ? do_initiate(count, flood, deadline)
	        : strcmp(argv[1], "respond") == 0 ? do_respond(count, deadline)
	                                          : fail("mode");
	wg_peer_wipe(&peer);
	wg_identity_wipe(&id);
	close(sock);
	wg_crypto_fini();
	return rc;
}
