/*
 * N-API face of the data plane (open, setRoutes, setPeers, setPrivateKey,
 * stop, counterNames):
 * converts JS values to C and back, nothing else (addon/convert.h).
 * Threads and locking: every function here runs on the JS thread; the data
 * plane's own threads never call into N-API. Lifetime: the handle (an
 * External) owns the struct dp and a strong reference to the counters
 * ArrayBuffer, so the counters memory outlives the threads that write it
 * whichever of stop() or garbage collection ends the data plane.
 */
#include "addon/convert.h"
#include "dataplane/dataplane.h"
#include "wireguard/crypto.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct handle {
	struct dp *dp;
	napi_ref counters;
};

/* {requested, tunVnetHdr, tso, uso, udpGso, udpGro, busyPoll, queues, note} */
static napi_value offloads_object(napi_env env, const struct dp_offloads *o)
{
	napi_value obj, s, q;
	if (napi_create_object(env, &obj) != napi_ok || !set_bool(env, obj, "requested", o->requested) ||
	        napi_create_uint32(env, o->queues, &q) != napi_ok || napi_set_named_property(env, obj, "queues", q) != napi_ok ||
	        !set_bool(env, obj, "tunVnetHdr", o->tun_vnet_hdr) || !set_bool(env, obj, "tso", o->tun_tso) ||
	        !set_bool(env, obj, "uso", o->tun_uso) ||
	        !set_bool(env, obj, "udpGso", o->udp_gso) || !set_bool(env, obj, "udpGro", o->udp_gro) ||
	        !set_bool(env, obj, "busyPoll", o->busy_poll) ||
	        napi_create_string_utf8(env, o->note, NAPI_AUTO_LENGTH, &s) != napi_ok ||
	        napi_set_named_property(env, obj, "note", s) != napi_ok)
		return NULL;
	return obj;
}

static void wipe_keys(uint8_t keys[2][32])
{
	volatile uint8_t *k = &keys[0][0];
	for (size_t i = 0; i < 64; i++)
		k[i] = 0;
}

/* Caller frees *out. */
static struct handle *get_handle(napi_env env, napi_value v)
{
	napi_valuetype t;
	void *p = NULL;
	if (napi_typeof(env, v, &t) != napi_ok || t != napi_external || napi_get_value_external(env, v, &p) != napi_ok ||
	        !p) {
		addon_throw(env, "not a data plane handle");
		return NULL;
	}
	return p;
}

static void handle_release(napi_env env, struct handle *h)
{
	if (h->dp) {
		dp_close(h->dp);
		h->dp = NULL;
	}
	if (h->counters) {
		napi_delete_reference(env, h->counters);
		h->counters = NULL;
	}
}

static void handle_finalize(napi_env env, void *data, void *hint)
{
	(void)hint;
	handle_release(env, data);
	free(data);
}

static void counters_finalize(napi_env env, void *data, void *hint)
{
	(void)env;
	(void)hint;
	free(data);
}

/*
 * open({tunName, bindAddress, port, localIp, localPrefix, icmpSource, queues, mtu, local6Prefix,
 *       local6Net?: Buffer(16), icmp6Source?: Buffer(16), offloads?, busyPoll?, ipv6Underlay?})
 *   -> {handle, counters, ifname, offloads, cipher? ("direct" | "evp", WireGuard only)}
 */
static napi_value js_open(napi_env env, napi_callback_info info)
{
	size_t argc = 1;
	napi_value argv[1], tn;
	CHECK(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
	napi_valuetype t;
	if (argc < 1 || napi_typeof(env, argv[0], &t) != napi_ok || t != napi_object) {
		addon_throw(env, "open expects an options object");
		return NULL;
	}
	uint32_t bind, port, lip, lpfx, icmp, queues, l6pfx, mtu;
	uint8_t *l6 = NULL, *icmp6 = NULL;
	if (!get_u32(env, argv[0], "bindAddress", &bind) || !get_u32(env, argv[0], "port", &port) ||
	        !get_u32(env, argv[0], "localIp", &lip) || !get_u32(env, argv[0], "localPrefix", &lpfx) ||
	        !get_u32(env, argv[0], "icmpSource", &icmp) ||
	        !get_u32(env, argv[0], "queues", &queues) || !get_u32(env, argv[0], "mtu", &mtu) ||
	        !get_u32(env, argv[0], "local6Prefix", &l6pfx) || !get_buffer(env, argv[0], "local6Net", 16, true, &l6) ||
	        !get_buffer(env, argv[0], "icmp6Source", 16, true, &icmp6))
		return NULL;
	bool offloads;
	bool busy_poll;
	bool v6_underlay;
	if (!get_opt_bool(env, argv[0], "offloads", true, &offloads) ||
	        !get_opt_bool(env, argv[0], "busyPoll", true, &busy_poll) ||
	        !get_opt_bool(env, argv[0], "ipv6Underlay", false, &v6_underlay))
		return NULL;
	CHECK(env, napi_get_named_property(env, argv[0], "tunName", &tn));
	/* WireGuard mode: {privateKey, psk?, persistentKeepalive, tai64nFloor?}; the key Buffers are wiped here. */
	napi_value wgv;
	napi_valuetype wgt;
	CHECK(env, napi_get_named_property(env, argv[0], "wireguard", &wgv));
	CHECK(env, napi_typeof(env, wgv, &wgt));
	struct dp_wg_config wg = {0};
	uint8_t *priv = NULL, *psk = NULL, *floor = NULL;
	uint8_t keys[2][32];
	if (wgt == napi_object) {
		if (!get_buffer(env, wgv, "privateKey", 32, false, &priv) || !get_buffer(env, wgv, "psk", 32, true, &psk) ||
		        !get_buffer(env, wgv, "tai64nFloor", 12, true, &floor) ||
		        !get_u32(env, wgv, "persistentKeepalive", &wg.persistent_keepalive))
			return NULL;
		memcpy(keys[0], priv, 32);
		memset(priv, 0, 32);
		wg.private_key = keys[0];
		if (psk) {
			memcpy(keys[1], psk, 32);
			memset(psk, 0, 32);
			wg.psk = keys[1];
		}
		wg.tai64n_floor = floor;
	}
	char *name;
	if (!get_string(env, tn, "tunName", &name, NULL)) {
		wipe_keys(keys);
		return NULL;
	}

	size_t csz = (sizeof(struct dp_counters) + 63) & ~(size_t)63;
	struct dp_counters *c = aligned_alloc(64, csz);
	struct handle *h = calloc(1, sizeof *h);
	if (!c || !h) {
		free(c);
		free(h);
		free(name);
		wipe_keys(keys);
		addon_throw(env, "out of memory");
		return NULL;
	}
	memset(c, 0, csz);
	napi_value ab;
	if (napi_create_external_arraybuffer(env, c, sizeof(struct dp_counters), counters_finalize, NULL, &ab) !=
	        napi_ok) {
		free(c);
		free(h);
		free(name);
		wipe_keys(keys);
		addon_throw(env, "cannot expose counters (external ArrayBuffer refused)");
		return NULL;
	}
	/* From here the ArrayBuffer owns c. */
	struct dp_config cfg = {
	        .tun_name = name,
	        .bind_addr = bind,
	        .ipv6_underlay = v6_underlay,
	        .port = (uint16_t)port,
	        .local_net = lip,
	        .local_prefix = (uint8_t)lpfx,
	        .icmp_source = icmp,
	        .local6_prefix = l6 ? (uint8_t)l6pfx : 0,
	        .mtu = mtu,
	        .offloads = offloads,
	        .busy_poll = busy_poll,
	        .queues = queues,
	        .wg = wg.private_key ? &wg : NULL,
	};
	if (l6)
		memcpy(cfg.local6_net, l6, 16);
	if (icmp6)
		memcpy(cfg.icmp6_source, icmp6, 16);
	char err[ERRLEN], ifname[16] = {0};
	int rc = dp_open(&cfg, c, &h->dp, ifname, err, sizeof err);
	free(name);
	wipe_keys(keys);
	if (rc < 0) {
		free(h);
		addon_throw(env, err);
		return NULL;
	}
	napi_value handle, result, ifn, offl;
	if (napi_create_reference(env, ab, 1, &h->counters) != napi_ok ||
	        napi_create_external(env, h, handle_finalize, NULL, &handle) != napi_ok) {
		handle_release(env, h);
		free(h);
		addon_throw(env, "internal N-API failure creating the handle");
		return NULL;
	}
	CHECK(env, napi_create_object(env, &result));
	CHECK(env, napi_create_string_utf8(env, ifname, NAPI_AUTO_LENGTH, &ifn));
	CHECK(env, napi_set_named_property(env, result, "handle", handle));
	CHECK(env, napi_set_named_property(env, result, "counters", ab));
	CHECK(env, napi_set_named_property(env, result, "ifname", ifn));
	struct dp_offloads o;
	dp_get_offloads(h->dp, &o);
	offl = offloads_object(env, &o);
	if (!offl) {
		addon_throw(env, "internal N-API failure describing the offloads");
		return NULL;
	}
	CHECK(env, napi_set_named_property(env, result, "offloads", offl));
	if (wgt == napi_object) {
		napi_value cipher;
		CHECK(env, napi_create_string_utf8(env, wg_crypto_path(), NAPI_AUTO_LENGTH, &cipher));
		CHECK(env, napi_set_named_property(env, result, "cipher", cipher));
	}
	return result;
}

/* The handle in `v` if its data plane is still running; else throws. */
static struct handle *running(napi_env env, napi_value v)
{
	struct handle *h = get_handle(env, v);
	if (h && !h->dp) {
		addon_throw(env, "data plane is stopped");
		return NULL;
	}
	return h;
}

/* The Uint32Array argv[i] (of `len` words, a multiple of `group`); false: thrown. */
static bool get_u32_array(napi_env env, napi_value v, size_t group, const uint32_t **data, size_t *len, const char *msg)
{
	bool is_ta = false;
	napi_typedarray_type tt;
	void *d = NULL;
	if (napi_is_typedarray(env, v, &is_ta) != napi_ok || !is_ta ||
	        napi_get_typedarray_info(env, v, &tt, len, &d, NULL, NULL) != napi_ok || tt != napi_uint32_array ||
	        *len % group != 0) {
		addon_throw(env, msg);
		return false;
	}
	*data = d;
	return true;
}

/* Four big-endian words (most significant first) as 16 bytes. */
static void words_to_bytes(const uint32_t *q, uint8_t out[16])
{
	for (int k = 0; k < 4; k++) {
		uint8_t *b = out + 4 * k;
		b[0] = (uint8_t)(q[k] >> 24);
		b[1] = (uint8_t)(q[k] >> 16);
		b[2] = (uint8_t)(q[k] >> 8);
		b[3] = (uint8_t)q[k];
	}
}

/*
 * setRoutes(handle, Uint32Array [net, prefix, ep x4, port, ...],
 *           Uint32Array [net x4, prefix, ep x4, port, ...]): swaps the whole table.
 * An IPv6 net is four big-endian 32-bit words, most significant first; the
 * endpoint `ep` too: the peer's IPv6 address on an IPv6 underlay, else its
 * IPv4 one in the last word (::ffff:a.b.c.d).
 */
static napi_value js_set_routes(napi_env env, napi_callback_info info)
{
	napi_value argv[3];
	size_t argc = 3;
	CHECK(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
	if (argc < 3) {
		addon_throw(env, "setRoutes expects (handle, Uint32Array, Uint32Array)");
		return NULL;
	}
	struct handle *h = running(env, argv[0]);
	if (!h)
		return NULL;
	const uint32_t *u, *u6;
	size_t len, len6;
	if (!get_u32_array(env, argv[1], 7, &u, &len, "routes must be a Uint32Array of [net, prefix, endpoint x4, port] groups") ||
	        !get_u32_array(env, argv[2], 10, &u6, &len6, "IPv6 routes must be a Uint32Array of [net x4, prefix, endpoint x4, port] groups"))
		return NULL;
	size_t n = len / 7, n6 = len6 / 10;
	struct dp_route *routes = n ? calloc(n, sizeof *routes) : NULL;
	struct dp_route6 *routes6 = n6 ? calloc(n6, sizeof *routes6) : NULL;
	if ((n && !routes) || (n6 && !routes6)) {
		free(routes);
		free(routes6);
		addon_throw(env, "out of memory");
		return NULL;
	}
	for (size_t i = 0; i < n; i++) {
		const uint32_t *q = u + 7 * i;
		routes[i].net = q[0];
		routes[i].prefix = (uint8_t)q[1];
		words_to_bytes(q + 2, routes[i].public_ip6);
		routes[i].public_ip = q[5];
		routes[i].port = (uint16_t)q[6];
	}
	for (size_t i = 0; i < n6; i++) {
		const uint32_t *q = u6 + 10 * i;
		words_to_bytes(q, routes6[i].net);
		routes6[i].prefix = (uint8_t)q[4];
		words_to_bytes(q + 5, routes6[i].public_ip6);
		routes6[i].public_ip = q[8];
		routes6[i].port = (uint16_t)q[9];
	}
	char err[ERRLEN];
	int rc = dp_set_routes(h->dp, routes, n, routes6, n6, err, sizeof err);
	free(routes);
	free(routes6);
	if (rc < 0) {
		addon_throw(env, err);
		return NULL;
	}
	return NULL;
}

/*
 * setPeers(handle, [{publicKey: Buffer(32), ip, ip6?: Buffer(16), port, allowed: Uint32Array [net, prefix, ...],
 *                    allowed6?: Uint32Array [net x4, prefix, ...]}]): ip6 is the endpoint on an IPv6 underlay.
 */
static napi_value js_set_peers(napi_env env, napi_callback_info info)
{
	napi_value argv[2];
	if (!get_args(env, info, 2, argv, "setPeers expects (handle, peers[])"))
		return NULL;
	struct handle *h = running(env, argv[0]);
	if (!h)
		return NULL;
	bool is_arr = false;
	uint32_t n = 0;
	if (napi_is_array(env, argv[1], &is_arr) != napi_ok || !is_arr || napi_get_array_length(env, argv[1], &n) != napi_ok) {
		addon_throw(env, "peers must be an array");
		return NULL;
	}
	struct dp_wg_peer *peers = calloc(n ? n : 1, sizeof *peers);
	size_t total = 0, total6 = 0;
	uint32_t *nets = NULL;
	uint8_t *prefixes = NULL, *nets6 = NULL, *prefixes6 = NULL;
	bool ok = peers != NULL;
	/* First pass: sizes; second: values. */
	for (int pass = 0; pass < 2 && ok; pass++) {
		size_t k = 0, k6 = 0;
		for (uint32_t i = 0; i < n && ok; i++) {
			napi_value o, al, al6;
			napi_valuetype t6 = napi_undefined;
			const uint32_t *d6 = NULL;
			size_t len6 = 0;
			uint8_t *pub, *ip6 = NULL;
			uint32_t ip, port;
			bool is_ta = false;
			napi_typedarray_type tt;
			size_t len = 0;
			void *data = NULL;
			ok = napi_get_element(env, argv[1], i, &o) == napi_ok && get_buffer(env, o, "publicKey", 32, false, &pub) &&
			        get_u32(env, o, "ip", &ip) && get_buffer(env, o, "ip6", 16, true, &ip6) && get_u32(env, o, "port", &port) &&
			        napi_get_named_property(env, o, "allowed", &al) == napi_ok;
			if (ok && (napi_is_typedarray(env, al, &is_ta) != napi_ok || !is_ta || napi_get_typedarray_info(env, al, &tt, &len, &data, NULL, NULL) != napi_ok || tt != napi_uint32_array || len % 2 != 0)) {
				addon_throw(env, "allowed must be a Uint32Array of [net, prefix] pairs");
				ok = false;
			}
			/* allowed6 (optional): [net x4 (big-endian words), prefix] groups */
			if (ok && (napi_get_named_property(env, o, "allowed6", &al6) != napi_ok || napi_typeof(env, al6, &t6) != napi_ok))
				ok = false;
			if (ok && t6 != napi_undefined)
				ok = get_u32_array(env, al6, 5, &d6, &len6, "allowed6 must be a Uint32Array of [net x4, prefix] groups");
			if (!ok)
				break;
			if (pass == 0) {
				total += len / 2;
				total6 += len6 / 5;
				continue;
			}
			struct dp_wg_peer *p = &peers[i];
			memcpy(p->pub, pub, 32);
			p->ip = ip;
			if (ip6)
				memcpy(p->ip6, ip6, 16);
			p->port = (uint16_t)port;
			p->nets = nets + k;
			p->prefixes = prefixes + k;
			p->nallowed = len / 2;
			for (size_t j = 0; j < len / 2; j++, k++) {
				nets[k] = ((const uint32_t *)data)[2 * j];
				prefixes[k] = (uint8_t)((const uint32_t *)data)[2 * j + 1];
			}
			p->nets6 = nets6 + 16 * k6;
			p->prefixes6 = prefixes6 + k6;
			p->nallowed6 = len6 / 5;
			for (size_t j = 0; j < len6 / 5; j++, k6++) {
				for (int w = 0; w < 4; w++) {
					uint32_t v = d6[5 * j + (size_t)w];
					uint8_t *b = nets6 + 16 * k6 + 4 * w;
					b[0] = (uint8_t)(v >> 24);
					b[1] = (uint8_t)(v >> 16);
					b[2] = (uint8_t)(v >> 8);
					b[3] = (uint8_t)v;
				}
				prefixes6[k6] = (uint8_t)d6[5 * j + 4];
			}
		}
		if (ok && pass == 0) {
			nets = calloc(total ? total : 1, sizeof *nets);
			prefixes = calloc(total ? total : 1, 1);
			nets6 = calloc(total6 ? total6 : 1, 16);
			prefixes6 = calloc(total6 ? total6 : 1, 1);
			if (!nets || !prefixes || !nets6 || !prefixes6) {
				addon_throw(env, "out of memory");
				ok = false;
			}
		}
	}
	if (!peers)
		addon_throw(env, "out of memory");
	char err[ERRLEN];
	int rc = ok ? dp_wg_set_peers(h->dp, peers, n, err, sizeof err) : 0;
	free(peers);
	free(nets);
	free(prefixes);
	free(nets6);
	free(prefixes6);
	if (rc < 0)
		addon_throw(env, err);
	return NULL;
}

struct status_ctx {
	napi_env env;
	napi_value arr;
	uint32_t n;
	bool failed;
};

static void status_one(void *vctx, const struct dp_wg_status *s)
{
	struct status_ctx *x = vctx;
	napi_env env = x->env;
	napi_value o, pub, v, al;
	void *d;
	uint32_t na = s->nallowed < DP_WG_STATUS_ALLOWED ? s->nallowed : DP_WG_STATUS_ALLOWED;
	napi_value ab;
	if (x->failed || napi_create_object(env, &o) != napi_ok || napi_create_buffer_copy(env, 32, s->pub, &d, &pub) != napi_ok ||
	        napi_set_named_property(env, o, "publicKey", pub) != napi_ok || napi_create_uint32(env, s->ip, &v) != napi_ok ||
	        napi_set_named_property(env, o, "ip", v) != napi_ok || napi_create_buffer_copy(env, 16, s->ip6, &d, &v) != napi_ok ||
	        napi_set_named_property(env, o, "ip6", v) != napi_ok || napi_create_uint32(env, s->port, &v) != napi_ok ||
	        napi_set_named_property(env, o, "port", v) != napi_ok ||
	        napi_create_double(env, (double)(s->last_handshake_ns / 1000000), &v) != napi_ok ||
	        napi_set_named_property(env, o, "lastHandshakeMs", v) != napi_ok ||
	        napi_create_double(env, (double)s->rx_bytes, &v) != napi_ok || napi_set_named_property(env, o, "rxBytes", v) != napi_ok ||
	        napi_create_double(env, (double)s->tx_bytes, &v) != napi_ok || napi_set_named_property(env, o, "txBytes", v) != napi_ok ||
	        napi_create_arraybuffer(env, (size_t)na * 8, &d, &ab) != napi_ok ||
	        napi_create_typedarray(env, napi_uint32_array, (size_t)na * 2, ab, 0, &al) != napi_ok) {
		x->failed = true;
		return;
	}
	uint32_t *u = d;
	for (uint32_t j = 0; j < na; j++) {
		u[2 * j] = s->nets[j];
		u[2 * j + 1] = s->prefixes[j];
	}
	/* allowed6: [net x4 (big-endian words), prefix, ...] */
	uint32_t na6 = s->nallowed6 < DP_WG_STATUS_ALLOWED ? s->nallowed6 : DP_WG_STATUS_ALLOWED;
	napi_value ab6, al6;
	void *d6;
	if (napi_create_arraybuffer(env, (size_t)na6 * 20, &d6, &ab6) != napi_ok ||
	        napi_create_typedarray(env, napi_uint32_array, (size_t)na6 * 5, ab6, 0, &al6) != napi_ok) {
		x->failed = true;
		return;
	}
	uint32_t *u6 = d6;
	for (uint32_t j = 0; j < na6; j++) {
		for (int w = 0; w < 4; w++) {
			const uint8_t *b = s->nets6[j] + 4 * w;
			u6[5 * j + (uint32_t)w] = (uint32_t)b[0] << 24 | (uint32_t)b[1] << 16 | (uint32_t)b[2] << 8 | b[3];
		}
		u6[5 * j + 4] = s->prefixes6[j];
	}
	if (napi_set_named_property(env, o, "allowed", al) != napi_ok || napi_set_named_property(env, o, "allowed6", al6) != napi_ok ||
	        napi_set_element(env, x->arr, x->n++, o) != napi_ok)
		x->failed = true;
}

/* peers(handle) -> [{publicKey, ip, ip6: Buffer(16), port, lastHandshakeMs, rxBytes, txBytes, allowed, allowed6}] */
static napi_value js_peers(napi_env env, napi_callback_info info)
{
	napi_value argv[1];
	if (!get_args(env, info, 1, argv, "peers expects a handle"))
		return NULL;
	struct handle *h = running(env, argv[0]);
	if (!h)
		return NULL;
	struct status_ctx x = {.env = env};
	CHECK(env, napi_create_array(env, &x.arr));
	dp_wg_status(h->dp, status_one, &x);
	if (x.failed) {
		addon_throw(env, "internal N-API failure describing the peers");
		return NULL;
	}
	return x.arr;
}

/* setPrivateKey(handle, Buffer(32)): the caller wipes its buffer */
static napi_value js_set_private_key(napi_env env, napi_callback_info info)
{
	napi_value argv[2];
	if (!get_args(env, info, 2, argv, "setPrivateKey expects (handle, privateKey)"))
		return NULL;
	struct handle *h = running(env, argv[0]);
	if (!h)
		return NULL;
	bool is_buf = false;
	void *data = NULL;
	size_t len = 0;
	if (napi_is_buffer(env, argv[1], &is_buf) != napi_ok || !is_buf ||
	        napi_get_buffer_info(env, argv[1], &data, &len) != napi_ok || len != 32) {
		addon_throw(env, "privateKey must be a Buffer of 32 bytes");
		return NULL;
	}
	char err[ERRLEN];
	if (dp_wg_set_private_key(h->dp, data, err, sizeof err) < 0)
		addon_throw(env, err);
	return NULL;
}

/* lastTai64n(handle) -> Buffer(12) */
static napi_value js_last_tai64n(napi_env env, napi_callback_info info)
{
	napi_value argv[1], b;
	if (!get_args(env, info, 1, argv, "lastTai64n expects a handle"))
		return NULL;
	struct handle *h = running(env, argv[0]);
	if (!h)
		return NULL;
	uint8_t t[12];
	void *d;
	dp_wg_last_tai64n(h->dp, t);
	CHECK(env, napi_create_buffer_copy(env, sizeof t, t, &d, &b));
	return b;
}

static napi_value js_stop(napi_env env, napi_callback_info info)
{
	napi_value argv[1];
	if (!get_args(env, info, 1, argv, "stop expects a handle"))
		return NULL;
	struct handle *h = get_handle(env, argv[0]);
	if (!h)
		return NULL;
	handle_release(env, h);
	return NULL;
}

napi_value addon_dataplane_init(napi_env env, napi_value exports)
{
	napi_value names, s, fn;
	CHECK(env, napi_create_array_with_length(env, DP_NCOUNTERS, &names));
	for (uint32_t i = 0; i < DP_NCOUNTERS; i++) {
		CHECK(env, napi_create_string_utf8(env, dp_counter_names[i], NAPI_AUTO_LENGTH, &s));
		CHECK(env, napi_set_element(env, names, i, s));
	}
	CHECK(env, napi_set_named_property(env, exports, "counterNames", names));
	CHECK(env, napi_create_function(env, "open", NAPI_AUTO_LENGTH, js_open, NULL, &fn));
	CHECK(env, napi_set_named_property(env, exports, "open", fn));
	CHECK(env, napi_create_function(env, "setRoutes", NAPI_AUTO_LENGTH, js_set_routes, NULL, &fn));
	CHECK(env, napi_set_named_property(env, exports, "setRoutes", fn));
	CHECK(env, napi_create_function(env, "setPeers", NAPI_AUTO_LENGTH, js_set_peers, NULL, &fn));
	CHECK(env, napi_set_named_property(env, exports, "setPeers", fn));
	CHECK(env, napi_create_function(env, "peers", NAPI_AUTO_LENGTH, js_peers, NULL, &fn));
	CHECK(env, napi_set_named_property(env, exports, "peers", fn));
	CHECK(env, napi_create_function(env, "setPrivateKey", NAPI_AUTO_LENGTH, js_set_private_key, NULL, &fn));
	CHECK(env, napi_set_named_property(env, exports, "setPrivateKey", fn));
	CHECK(env, napi_create_function(env, "lastTai64n", NAPI_AUTO_LENGTH, js_last_tai64n, NULL, &fn));
	CHECK(env, napi_set_named_property(env, exports, "lastTai64n", fn));
	CHECK(env, napi_create_function(env, "stop", NAPI_AUTO_LENGTH, js_stop, NULL, &fn));
	CHECK(env, napi_set_named_property(env, exports, "stop", fn));
	return exports;
}
