/*
 * Argument conversion shared by the addon's functions (see convert.h).
 * Threads and locking: JS thread only.
 */
#include "addon/convert.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void addon_throw(napi_env env, const char *msg)
{
	napi_throw_error(env, "E_DATAPLANE", msg);
}

bool get_u32(napi_env env, napi_value obj, const char *key, uint32_t *out)
{
	napi_value v;
	napi_valuetype t;
	double d;
	char msg[128];
	if (napi_get_named_property(env, obj, key, &v) != napi_ok || napi_typeof(env, v, &t) != napi_ok ||
	        t != napi_number || napi_get_value_double(env, v, &d) != napi_ok || d < 0 || d > 4294967295.0 ||
	        d != (double)(uint32_t)d) {
		snprintf(msg, sizeof msg, "option %s must be an integer 0..4294967295", key);
		addon_throw(env, msg);
		return false;
	}
	*out = (uint32_t)d;
	return true;
}

/* An optional boolean option: absent or undefined gives `dflt`. */
bool get_opt_bool(napi_env env, napi_value obj, const char *key, bool dflt, bool *out)
{
	napi_value v;
	napi_valuetype t;
	char msg[128];
	if (napi_get_named_property(env, obj, key, &v) != napi_ok || napi_typeof(env, v, &t) != napi_ok) {
		addon_throw(env, "internal N-API failure reading an option");
		return false;
	}
	if (t == napi_undefined) {
		*out = dflt;
		return true;
	}
	if (t != napi_boolean || napi_get_value_bool(env, v, out) != napi_ok) {
		snprintf(msg, sizeof msg, "option %s must be a boolean", key);
		addon_throw(env, msg);
		return false;
	}
	return true;
}

bool set_bool(napi_env env, napi_value obj, const char *key, bool b)
{
	napi_value v;
	return napi_get_boolean(env, b, &v) == napi_ok && napi_set_named_property(env, obj, key, v) == napi_ok;
}

/* {requested, tunVnetHdr, tso, uso, udpGso, udpGro, busyPoll, queues, note} */
bool get_string(napi_env env, napi_value v, const char *what, char **out, size_t *len)
{
	napi_valuetype t;
	size_t n;
	char msg[128];
	if (napi_typeof(env, v, &t) != napi_ok || t != napi_string ||
	        napi_get_value_string_utf8(env, v, NULL, 0, &n) != napi_ok) {
		snprintf(msg, sizeof msg, "%s must be a string", what);
		addon_throw(env, msg);
		return false;
	}
	char *s = malloc(n + 1);
	if (!s || napi_get_value_string_utf8(env, v, s, n + 1, &n) != napi_ok) {
		free(s);
		addon_throw(env, "out of memory");
		return false;
	}
	if (strlen(s) != n) {
		snprintf(msg, sizeof msg, "%s must not contain NUL characters", what);
		free(s);
		addon_throw(env, msg);
		return false;
	}
	*out = s;
	if (len)
		*len = n;
	return true;
}

bool get_args(napi_env env, napi_callback_info info, size_t n, napi_value *argv, const char *usage)
{
	size_t argc = n;
	if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok) {
		addon_throw(env, "internal N-API failure reading the arguments");
		return false;
	}
	if (argc < n) {
		addon_throw(env, usage);
		return false;
	}
	return true;
}

/* setRoutes(handle, Uint32Array [net, prefix, publicIP, port]*) */

bool get_buffer(napi_env env, napi_value obj, const char *key, size_t len, bool optional, uint8_t **data)
{
	napi_value v;
	napi_valuetype t;
	bool is_buf = false;
	void *d = NULL;
	size_t n = 0;
	char msg[96];
	*data = NULL;
	if (napi_get_named_property(env, obj, key, &v) != napi_ok || napi_typeof(env, v, &t) != napi_ok)
		goto bad;
	if (t == napi_undefined && optional)
		return true;
	if (napi_is_buffer(env, v, &is_buf) != napi_ok || !is_buf || napi_get_buffer_info(env, v, &d, &n) != napi_ok ||
	        n != len)
		goto bad;
	*data = d;
	return true;
bad:
	snprintf(msg, sizeof msg, "%s must be a Buffer of %zu bytes", key, len);
	addon_throw(env, msg);
	return false;
}
