/*
 * The module rudder_native.node: registers the data plane's functions
 * (dataplane.c), sd_notify's (notify.c) and
 * the rtnetlink socket's (netlink.c). Threads and locking: runs once
 * on the JS thread that loads the module.
 */
#include "addon/convert.h"

static napi_value init(napi_env env, napi_value exports)
{
	if (!addon_dataplane_init(env, exports) || !addon_notify_init(env, exports) ||
	        !addon_netlink_init(env, exports))
		return NULL;
	return exports;
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, init)
