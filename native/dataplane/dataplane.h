/*
 * The udp backend's packet mover: TUN <-> UDP on its own threads (no N-API
 * here). This is the API the addon calls; the files of this folder share
 * dataplane/state.h. Preconditions on the values (ranges) are checked once,
 * in src/dataplane/native.ts, before the addon is called.
 * Threads and locking: these functions are called from one thread (the JS
 * thread); dp_set_routes swaps the table while the data plane's own threads
 * keep moving packets (routes.c); dp_close stops and joins them.
 */
#ifndef RUDDER_DATAPLANE_H
#define RUDDER_DATAPLANE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "dataplane/counters.h"

/* Most TUN queues (worker pairs) one data plane runs. */
#define DP_MAX_QUEUES 16

/* WireGuard mode's settings (dp_config.wg); the key bytes are copied at open. */
struct dp_wg_config {
	const uint8_t *private_key; /* 32 bytes */
	const uint8_t *psk; /* 32 bytes, or NULL: no preshared key (one for every peer) */
	uint32_t persistent_keepalive; /* seconds, 0 = off */
	const uint8_t *tai64n_floor; /* 12 bytes: the last TAI64N this host sent (persisted), or NULL */
};

/* All addresses in host byte order; ranges as src/dataplane/native.ts checks them. */
struct dp_config {
	const char *tun_name;
	uint32_t bind_addr; /* 0 = any (IPv4 underlay only) */
	bool ipv6_underlay; /* the sockets are IPv6 ([::]:port) and every peer is reached at its public_ip6 */
	uint16_t port; /* 1..65535 */
	uint32_t local_net;
	uint8_t local_prefix; /* 0..32 */
	uint32_t icmp_source;
	/* IPv6: this host's IPv6 subnet (network order) and the ICMPv6 source; local6_prefix 0: no IPv6 subnet */
	uint8_t local6_net[16];
	uint8_t local6_prefix; /* 0..128 */
	uint8_t icmp6_source[16]; /* all zero: no ICMPv6 errors */
	uint32_t mtu; /* the TUN's MTU: a larger IPv6 packet is answered packet-too-big; 0: no check */
	bool offloads; /* try TUN TSO/checksum offload, UDP GSO and UDP GRO (each falls back if refused) */
	bool busy_poll; /* at low packet rates, spin briefly for the reply instead of sleeping (see dataplane/wait.c) */
	uint32_t queues; /* TUN queues = worker pairs, 1..DP_MAX_QUEUES; 0: one per CPU the process may use */
	const struct dp_wg_config *wg; /* NULL: plain udp mode; else WireGuard mode (dp_wg_set_peers, not dp_set_routes) */
};

/* What dp_open got from the kernel, for the backend to log. */
struct dp_offloads {
	bool requested;
	bool tun_vnet_hdr; /* TUN reads/writes carry a virtio_net_hdr: coalesced writes possible */
	bool tun_tso; /* the TUN hands over TCP super-packets, segmented here */
	bool tun_uso; /* the TUN takes and hands over UDP super-packets (GSO_UDP_L4): rx coalesces UDP too */
	bool udp_gso; /* UDP_SEGMENT: one sendmsg carries many datagrams */
	bool udp_gro; /* UDP_GRO: one recvmsg returns many datagrams */
	bool busy_poll; /* low-rate busy polling in use (asked for and its eventfds created) */
	uint32_t queues; /* TUN queues (worker pairs) running; fewer than asked if the kernel refused some */
	char note[256]; /* why something requested is off, else empty */
};

/* A route: subnet to the peer's PublicIP (IPv4 underlay) or public_ip6 (IPv6 underlay) and port (host order). */
struct dp_route {
	uint32_t net;
	uint8_t prefix;
	uint32_t public_ip;
	uint16_t port;
	uint8_t public_ip6[16]; /* network order */
};

/* An IPv6 route: subnet (network order bytes) to the peer's endpoint, as struct dp_route. */
struct dp_route6 {
	uint8_t net[16];
	uint8_t prefix; /* 0..128 */
	uint32_t public_ip;
	uint16_t port;
	uint8_t public_ip6[16];
};

struct dp;

/*
 * Opens the TUN device and the UDP socket and starts the threads. `counters`
 * must stay valid until dp_close returns; it is zeroed here. On success
 * returns 0 and the kernel's device name in `ifname` (16 bytes); on failure
 * -errno and a description in `err`, with nothing left open.
 */
int dp_open(const struct dp_config *cfg, struct dp_counters *counters, struct dp **out, char *ifname,
        char *err, size_t errlen);

/* The offloads in use (fixed at open). */
void dp_get_offloads(const struct dp *dp, struct dp_offloads *out);

/* Replaces the route table, both families at once (single writer at a time); traffic keeps flowing. */
int dp_set_routes(struct dp *dp, const struct dp_route *routes, size_t n, const struct dp_route6 *routes6, size_t n6,
        char *err, size_t errlen);

/* A WireGuard peer: public key, pinned endpoint, allowed IPs (its lease subnets). */
struct dp_wg_peer {
	uint8_t pub[32];
	uint32_t ip; /* IPv4 underlay */
	uint8_t ip6[16]; /* IPv6 underlay (network order) */
	uint16_t port;
	const uint32_t *nets;
	const uint8_t *prefixes;
	size_t nallowed;
	/* IPv6 allowed IPs: nallowed6 subnets of 16 bytes each (network order) at nets6, lengths 0..128 */
	const uint8_t *nets6;
	const uint8_t *prefixes6;
	size_t nallowed6;
};

/*
 * WireGuard mode: replaces the peer set (and with it the route table:
 * allowed IPs -> peer). A peer whose key and endpoint stay keeps its
 * session; a removed one is wiped once no thread can reach it.
 */
int dp_wg_set_peers(struct dp *dp, const struct dp_wg_peer *peers, size_t n, char *err, size_t errlen);

#define DP_WG_STATUS_ALLOWED 64
struct dp_wg_status {
	uint8_t pub[32];
	uint32_t ip; /* IPv4 underlay; 0 on an IPv6 one */
	uint8_t ip6[16]; /* IPv6 underlay; zero on an IPv4 one */
	uint16_t port;
	uint64_t last_handshake_ns; /* CLOCK_REALTIME; 0 = never */
	uint64_t rx_bytes, tx_bytes; /* transport messages on the wire */
	uint32_t nallowed; /* the first DP_WG_STATUS_ALLOWED are in nets/prefixes */
	uint32_t nets[DP_WG_STATUS_ALLOWED];
	uint8_t prefixes[DP_WG_STATUS_ALLOWED];
	uint32_t nallowed6; /* IPv6 allowed IPs: the first DP_WG_STATUS_ALLOWED in nets6/prefixes6 */
	uint8_t nets6[DP_WG_STATUS_ALLOWED][16];
	uint8_t prefixes6[DP_WG_STATUS_ALLOWED];
};
/* Calls fn once per peer (on the caller's thread, with the writers' lock held). */
void dp_wg_status(struct dp *dp, void (*fn)(void *ctx, const struct dp_wg_status *s), void *ctx);
/*
 * WireGuard mode: this host's new private key (32 bytes, copied). The
 * mac1/cookie keys and every peer's static DH follow; handshakes and
 * sessions made under the old key end (peers keep their endpoints, allowed
 * IPs and staged packets and handshake again on the next packet).
 */
int dp_wg_set_private_key(struct dp *dp, const uint8_t priv[32], char *err, size_t errlen);
/* The last TAI64N this host sent (or the floor it was opened with): for the caller to persist. */
void dp_wg_last_tai64n(struct dp *dp, uint8_t out[12]);

/* Stops and joins the threads, closes the fds, frees dp. Never touches counters afterwards. */
void dp_close(struct dp *dp);

#endif
