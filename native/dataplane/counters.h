/*
 * The data plane's counters, listed once. DP_COUNTERS(X) expands X(ID, name)
 * for each: the enum (DP_ID), the names the addon exports (counterNames, in
 * this order: the layout of the shared memory JavaScript reads) and the
 * struct all come from this list. Append only.
 * Threads and locking: each data-plane thread counts into locals and adds
 * them to the shared words once per batch (dp_counters_flush, relaxed
 * atomic adds); JavaScript reads the words directly (aligned 64-bit loads).
 */
#ifndef RUDDER_DATAPLANE_COUNTERS_H
#define RUDDER_DATAPLANE_COUNTERS_H

#include <stdatomic.h>
#include <stdint.h>

#define DP_COUNTERS(X) \
	X(TX_PACKETS, txPackets) /* datagrams sent (TUN -> UDP), per segment */ \
	X(TX_BYTES, txBytes) \
	X(RX_PACKETS, rxPackets) /* packets written to the TUN (UDP -> TUN), per segment */ \
	X(RX_BYTES, rxBytes) \
	X(DROP_NO_ROUTE, dropNoRoute) /* tx: no route covers the destination */ \
	X(DROP_UNKNOWN_SENDER, dropUnknownSender) /* rx: the sender is no peer's PublicIP */ \
	X(DROP_MALFORMED, dropMalformed) \
	X(DROP_TTL, dropTtl) \
	X(DROP_NOT_LOCAL, dropNotLocal) /* rx: destination outside this host's subnet */ \
	X(TUN_ERRORS, tunErrors) \
	X(SOCKET_ERRORS, socketErrors) \
	X(ICMP_SENT, icmpSent) /* ICMP errors written back into the TUN */ \
	X(DROP_NOT_IPV4, dropNotIPv4) /* tx: neither IPv4 nor IPv6 (a version nibble of another value) */ \
	X(TX_GSO_PACKETS, txGsoPackets) /* TCP/UDP super-packets read from the TUN and segmented */ \
	X(RX_GRO_PACKETS, rxGroPackets) /* coalesced super-packets written to the TUN */ \
	X(WG_HANDSHAKES_SENT, wgHandshakesSent) /* WireGuard: initiations sent */ \
	X(WG_HANDSHAKES_RECEIVED, wgHandshakesReceived) /* initiations accepted (responses sent) */ \
	X(WG_HANDSHAKES_COMPLETED, wgHandshakesCompleted) /* sessions in use (response consumed, or confirmed) */ \
	X(WG_COOKIES_SENT, wgCookiesSent) /* cookie replies sent under load */ \
	X(WG_DROP_BAD_MAC, wgDropBadMac) /* handshake mac1 or transport tag wrong, or handshake not decryptable */ \
	X(WG_DROP_REPLAY, wgDropReplay) /* counter seen or too old, or a stale initiation timestamp */ \
	X(WG_DROP_UNKNOWN_INDEX, wgDropUnknownIndex) /* no keypair/handshake of the peer has the receiver index, or unknown key */ \
	X(WG_DROP_COOKIE_REQUIRED, wgDropCookieRequired) /* under load without a valid mac2 (answered by a cookie) */ \
	X(WG_DROP_ALLOWED_IPS, wgDropAllowedIps) /* decrypted packet's source is not in the peer's allowed IPs */ \
	X(WG_DROP_NO_KEYPAIR, wgDropNoKeypair) /* tx: no session and the staging queue full (or a super-packet) */ \
	X(WG_DROP_EXPIRED, wgDropExpired) /* keypair past REJECT_AFTER_TIME/messages */ \
	X(TX_IPV6_PACKETS, txIPv6Packets) /* of txPackets: IPv6 inner packets, per segment */ \
	X(RX_IPV6_PACKETS, rxIPv6Packets) /* of the packets accepted for rxPackets: IPv6 ones */ \
	X(DROP_TOO_BIG, dropTooBig) /* tx: IPv6 packet (or segment) above the tunnel MTU: answered packet-too-big */ \
	X(DROP_LINK_LOCAL, dropLinkLocal) /* tx: IPv6 to a link-local or multicast destination (router solicitations, MLD): never carried */ \
	X(TX_GSO_REFUSED, txGsoRefused) /* tx: UDP GSO messages the kernel refused at send time, resent datagram by datagram */ \
	X(SERVED_PACKETS, servedPackets) /* moved by the other thread of their worker serving this one's fd (a bulk flow's ACKs) */ \
	X(LINGERS, lingers) /* waits in which a busy thread lingered before sleeping (wait.c) */ \
	X(LINGER_FOUND, lingerFound) /* of lingers: those that found work, so the thread did not sleep */

enum dp_counter {
#define DP_COUNTER_ENUM(id, name) DP_##id,
	DP_COUNTERS(DP_COUNTER_ENUM)
#undef DP_COUNTER_ENUM
	        DP_NCOUNTERS
};

/* The JavaScript names, indexed by enum dp_counter (dataplane/counters.c). */
extern const char *const dp_counter_names[DP_NCOUNTERS];

/* Shared with JS as raw memory: plain 64-bit words, written only by the data plane. */
struct dp_counters {
	_Atomic uint64_t v[DP_NCOUNTERS];
};

/*
 * Adds a thread's local counts to the shared words and clears them; each
 * thread calls it once per batch.
 */
static inline void dp_counters_flush(struct dp_counters *c, uint64_t *local)
{
	for (int i = 0; i < DP_NCOUNTERS; i++) {
		if (local[i]) {
			atomic_fetch_add_explicit(&c->v[i], local[i], memory_order_relaxed);
			local[i] = 0;
		}
	}
}

#endif
