/*
 * N-API face of the data plane: converts JS values to C and back, nothing
 * else. Values arrive range-checked by src/dataplane/native.ts (the one
 * place that checks them); here only their types are (number, integer,
 * 0..2^32-1, string without NUL) before they are narrowed to the C fields. Threads and locking: every function here runs on the JS thread; the
 * data plane's own threads never call into N-API. Lifetime: the handle
 * (an External) owns the struct dp and a strong reference to the counters
 * ArrayBuffer, so the counters memory outlives the threads that write it
 * whichever of stop() or garbage collection ends the data plane.
 */
#include <errno.h>
#include <node_api.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dataplane/dataplane.h"
#include "notify/notify.h"

#define ERRLEN 320

struct handle {
	struct dp *dp;
	napi_ref counters;
};

static void throw_dp(napi_env env, const char *msg)
{
	napi_throw_error(env, "E_DATAPLANE", msg);
}

#define CHECK(env, call)                                                                                   \
	do {                                                                                               \
		if ((call) != napi_ok) {                                                                   \
			bool pending_ = false;                                                             \
			napi_is_exception_pending((env), &pending_);                                       \
			if (!pending_)                                                                     \
				throw_dp((env), "internal N-API failure: " #call);                          \
			return NULL;                                                                       \
		}                                                                                          \
	} while (0)

static bool get_u32(napi_env env, napi_value obj, const char *key, uint32_t *out)
{
	napi_value v;
	napi_valuetype t;
	double d;
	char msg[128];
	if (napi_get_named_property(env, obj, key, &v) != napi_ok || napi_typeof(env, v, &t) != napi_ok ||
	    t != napi_number || napi_get_value_double(env, v, &d) != napi_ok || d < 0 || d > 4294967295.0 ||
	    d != (double)(uint32_t)d) {
		snprintf(msg, sizeof msg, "option %s must be an integer 0..4294967295", key);
		throw_dp(env, msg);
		return false;
	}
	*out = (uint32_t)d;
	return true;
}

/* An optional boolean option: absent or undefined gives `dflt`. */
static bool get_opt_bool(napi_env env, napi_value obj, const char *key, bool dflt, bool *out)
{
	napi_value v;
	napi_valuetype t;
	char msg[128];
	if (napi_get_named_property(env, obj, key, &v) != napi_ok || napi_typeof(env, v, &t) != napi_ok) {
		throw_dp(env, "internal N-API failure reading an option");
		return false;
	}
	if (t == napi_undefined) {
		*out = dflt;
		return true;
	}
	if (t != napi_boolean || napi_get_value_bool(env, v, out) != napi_ok) {
		snprintf(msg, sizeof msg, "option %s must be a boolean", key);
		throw_dp(env, msg);
		return false;
	}
	return true;
}

static bool set_bool(napi_env env, napi_value obj, const char *key, bool b)
{
	napi_value v;
	return napi_get_boolean(env, b, &v) == napi_ok && napi_set_named_property(env, obj, key, v) == napi_ok;
}

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
static bool get_string(napi_env env, napi_value v, const char *what, char **out, size_t *len)
{
	napi_valuetype t;
	size_t n;
	char msg[128];
	if (napi_typeof(env, v, &t) != napi_ok || t != napi_string ||
	    napi_get_value_string_utf8(env, v, NULL, 0, &n) != napi_ok) {
		snprintf(msg, sizeof msg, "%s must be a string", what);
		throw_dp(env, msg);
		return false;
	}
	char *s = malloc(n + 1);
	if (!s || napi_get_value_string_utf8(env, v, s, n + 1, &n) != napi_ok) {
		free(s);
		throw_dp(env, "out of memory");
		return false;
	}
	if (strlen(s) != n) {
		snprintf(msg, sizeof msg, "%s must not contain NUL characters", what);
		free(s);
		throw_dp(env, msg);
		return false;
	}
	*out = s;
	if (len)
		*len = n;
	return true;
}

static struct handle *get_handle(napi_env env, napi_value v)
{
	napi_valuetype t;
	void *p = NULL;
	if (napi_typeof(env, v, &t) != napi_ok || t != napi_external || napi_get_value_external(env, v, &p) != napi_ok ||
	    !p) {
		throw_dp(env, "not a data plane handle");
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
		throw_dp(env, "open expects an options object");
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
		throw_dp(env, "out of memory");
		return NULL;
	}
	memset(c, 0, csz);
	napi_value ab;
	if (napi_create_external_arraybuffer(env, c, sizeof(struct dp_counters), counters_finalize, NULL, &ab) !=
	    napi_ok) {
		free(c);
		free(h);
		free(name);
		throw_dp(env, "cannot expose counters (external ArrayBuffer refused)");
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
		throw_dp(env, err);
		return NULL;
	}
	napi_value handle, result, ifn, offl;
	if (napi_create_reference(env, ab, 1, &h->counters) != napi_ok ||
	    napi_create_external(env, h, handle_finalize, NULL, &handle) != napi_ok) {
		handle_release(env, h);
		free(h);
		throw_dp(env, "internal N-API failure creating the handle");
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
		throw_dp(env, "internal N-API failure describing the offloads");
		return NULL;
	}
	CHECK(env, napi_set_named_property(env, result, "offloads", offl));
	return result;
}

/* Fetches exactly `n` (<= 2) arguments; too few throws `usage`. */
static bool get_args(napi_env env, napi_callback_info info, size_t n, napi_value *argv, const char *usage)
{
	size_t argc = n;
	if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok) {
		throw_dp(env, "internal N-API failure reading the arguments");
		return false;
	}
	if (argc < n) {
		throw_dp(env, usage);
		return false;
	}
	return true;
}

/* setRoutes(handle, Uint32Array [net, prefix, publicIP, port]*) */
static napi_value js_set_routes(napi_env env, napi_callback_info info)
{
	napi_value argv[2];
	if (!get_args(env, info, 2, argv, "setRoutes expects (handle, Uint32Array)"))
		return NULL;
	struct handle *h = get_handle(env, argv[0]);
	if (!h)
		return NULL;
	if (!h->dp) {
		throw_dp(env, "data plane is stopped");
		return NULL;
	}
	bool is_ta = false;
	napi_typedarray_type tt;
	size_t len = 0;
	void *data = NULL;
	if (napi_is_typedarray(env, argv[1], &is_ta) != napi_ok || !is_ta ||
	    napi_get_typedarray_info(env, argv[1], &tt, &len, &data, NULL, NULL) != napi_ok ||
	    tt != napi_uint32_array || len % 4 != 0) {
		throw_dp(env, "routes must be a Uint32Array of [net, prefix, publicIP, port] quadruples");
		return NULL;
	}
	size_t n = len / 4;
	const uint32_t *u = data;
	struct dp_route *routes = n ? calloc(n, sizeof *routes) : NULL;
	if (n && !routes) {
		throw_dp(env, "out of memory");
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
		throw_dp(env, err);
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

static napi_value js_notify(napi_env env, napi_callback_info info)
{
	napi_value argv[2];
	if (!get_args(env, info, 2, argv, "notify expects (socketPath, message)"))
		return NULL;
	char *path, *msg;
	size_t mlen;
	if (!get_string(env, argv[0], "socketPath", &path, NULL))
		return NULL;
	if (!get_string(env, argv[1], "message", &msg, &mlen)) {
		free(path);
		return NULL;
	}
	char err[ERRLEN];
	int rc = rudder_notify(path, msg, mlen, err, sizeof err);
	free(path);
	free(msg);
	if (rc < 0)
		throw_dp(env, err);
	return NULL;
}

static napi_value init(napi_env env, napi_value exports)
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
	CHECK(env, napi_create_function(env, "notify", NAPI_AUTO_LENGTH, js_notify, NULL, &fn));
	CHECK(env, napi_set_named_property(env, exports, "notify", fn));
	return exports;
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, init)
