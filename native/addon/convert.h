/*
 * The addon's conversion of JS values to C: types only (number, integer
 * 0..2^32-1, boolean, string without NUL); ranges are checked once, in
 * src/dataplane/native.ts. A failed conversion has thrown a JS error
 * (addon_throw) and returns false. Threads and locking: JS thread only.
 */
#ifndef RUDDER_ADDON_CONVERT_H
#define RUDDER_ADDON_CONVERT_H

#include <node_api.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define ERRLEN 320

/* Throws an Error with `msg`; native.ts wraps it into its RudderError. */
void addon_throw(napi_env env, const char *msg);

#define CHECK(env, call) \
	do { \
		if ((call) != napi_ok) { \
			bool pending_ = false; \
			napi_is_exception_pending((env), &pending_); \
			if (!pending_) \
				addon_throw((env), "internal N-API failure: " #call); \
			return NULL; \
		} \
	} while (0)

/* obj[key] as an integer 0..4294967295. */
bool get_u32(napi_env env, napi_value obj, const char *key, uint32_t *out);
/* An optional boolean option: absent or undefined gives `dflt`. */
bool get_opt_bool(napi_env env, napi_value obj, const char *key, bool dflt, bool *out);
bool set_bool(napi_env env, napi_value obj, const char *key, bool b);
/* A string without NUL characters, malloc'd into *out (caller frees); its length in *len if not NULL. */
bool get_string(napi_env env, napi_value v, const char *what, char **out, size_t *len);
/*
 * obj[key] as a Buffer of exactly `len` bytes: its memory in *data (valid
 * while the value lives), or *data NULL when absent/undefined and `optional`.
 */
bool get_buffer(napi_env env, napi_value obj, const char *key, size_t len, bool optional, uint8_t **data);
/* Fetches exactly `n` (<= 2) arguments; too few throws `usage`. */
bool get_args(napi_env env, napi_callback_info info, size_t n, napi_value *argv, const char *usage);

/* The functions each part adds to the module's exports. */
napi_value addon_dataplane_init(napi_env env, napi_value exports);
napi_value addon_notify_init(napi_env env, napi_value exports);
napi_value addon_netlink_init(napi_env env, napi_value exports);

#endif
