/*
 * N-API face of the data plane (open, setRoutes, stop, counterNames):
 * converts JS values to C and back, nothing else (addon/convert.h).
 * Threads and locking: every function here runs on the JS thread; the data
 * plane's own threads never call into N-API. Lifetime: the handle (an
 * External) owns the struct dp and a strong reference to the counters
 * ArrayBuffer, so the counters memory outlives the threads that write it
 * whichever of stop() or garbage collection ends the data plane.
 */
#include "addon/convert.h"
#include "dataplane/dataplane.h"

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

/* open({tunName, bindAddress, port, localIp, localPrefix, icmpSource, queues, offloads?, busyPoll?}) -> {handle, counters, ifname, offloads} */
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
	uint32_t bind, port, lip, lpfx, icmp, queues;
	if (!get_u32(env, argv[0], "bindAddress", &bind) || !get_u32(env, argv[0], "port", &port) ||
	        !get_u32(env, argv[0], "localIp", &lip) || !get_u32(env, argv[0], "localPrefix", &lpfx) ||
	        !get_u32(env, argv[0], "icmpSource", &icmp) ||
	        !get_u32(env, argv[0], "queues", &queues))
		return NULL;
	bool offloads;
	bool busy_poll;
	if (!get_opt_bool(env, argv[0], "offloads", true, &offloads) ||
	        !get_opt_bool(env, argv[0], "busyPoll", true, &busy_poll))
		return NULL;
	CHECK(env, napi_get_named_property(env, argv[0], "tunName", &tn));
	char *name;
	if (!get_string(env, tn, "tunName", &name, NULL))
		return NULL;

	size_t csz = (sizeof(struct dp_counters) + 63) & ~(size_t)63;
	struct dp_counters *c = aligned_alloc(64, csz);
	struct handle *h = calloc(1, sizeof *h);
	if (!c || !h) {
		free(c);
		free(h);
		free(name);
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
		addon_throw(env, "cannot expose counters (external ArrayBuffer refused)");
		return NULL;
	}
	/* From here the ArrayBuffer owns c. */
	struct dp_config cfg = {
	        .tun_name = name,
	        .bind_addr = bind,
	        .port = (uint16_t)port,
	        .local_net = lip,
	        .local_prefix = (uint8_t)lpfx,
	        .icmp_source = icmp,
	        .offloads = offloads,
	        .busy_poll = busy_poll,
	        .queues = queues,
	};
	char err[ERRLEN], ifname[16] = {0};
	int rc = dp_open(&cfg, c, &h->dp, ifname, err, sizeof err);
	free(name);
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
	return result;
}

/* Fetches exactly `n` (<= 2) arguments; too few throws `usage`. */
static napi_value js_set_routes(napi_env env, napi_callback_info info)
{
	napi_value argv[2];
	if (!get_args(env, info, 2, argv, "setRoutes expects (handle, Uint32Array)"))
		return NULL;
	struct handle *h = get_handle(env, argv[0]);
	if (!h)
		return NULL;
	if (!h->dp) {
		addon_throw(env, "data plane is stopped");
		return NULL;
	}
	bool is_ta = false;
	napi_typedarray_type tt;
	size_t len = 0;
	void *data = NULL;
	if (napi_is_typedarray(env, argv[1], &is_ta) != napi_ok || !is_ta ||
	        napi_get_typedarray_info(env, argv[1], &tt, &len, &data, NULL, NULL) != napi_ok ||
	        tt != napi_uint32_array || len % 4 != 0) {
		addon_throw(env, "routes must be a Uint32Array of [net, prefix, publicIP, port] quadruples");
		return NULL;
	}
	size_t n = len / 4;
	const uint32_t *u = data;
	struct dp_route *routes = n ? calloc(n, sizeof *routes) : NULL;
	if (n && !routes) {
		addon_throw(env, "out of memory");
		return NULL;
	}
	for (size_t i = 0; i < n; i++) {
		const uint32_t *q = u + 4 * i;
		routes[i].net = q[0];
		routes[i].prefix = (uint8_t)q[1];
		routes[i].public_ip = q[2];
		routes[i].port = (uint16_t)q[3];
	}
	char err[ERRLEN];
	int rc = dp_set_routes(h->dp, routes, n, err, sizeof err);
	free(routes);
	if (rc < 0) {
		addon_throw(env, err);
		return NULL;
	}
	return NULL;
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
	CHECK(env, napi_create_function(env, "stop", NAPI_AUTO_LENGTH, js_stop, NULL, &fn));
	CHECK(env, napi_set_named_property(env, exports, "stop", fn));
	return exports;
}
