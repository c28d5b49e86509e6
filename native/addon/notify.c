/*
 * N-API face of sd_notify (native/notify/): notify(socketPath, message).
 * Conversion only. Threads and locking: JS thread only; each call sends on
 * its own short-lived socket.
 */
#include "addon/convert.h"
#include "notify/notify.h"

#include <stdlib.h>

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
		addon_throw(env, err);
	return NULL;
}

napi_value addon_notify_init(napi_env env, napi_value exports)
{
	napi_value fn;
	CHECK(env, napi_create_function(env, "notify", NAPI_AUTO_LENGTH, js_notify, NULL, &fn));
	CHECK(env, napi_set_named_property(env, exports, "notify", fn));
	return exports;
}
