/** Limits of the native data plane that JS checks before calling it (no addon needed to read them). */

/** DP_MAX_QUEUES in native/dataplane/dataplane.h: most TUN queues (worker pairs) one data plane runs. */
export const MAX_QUEUES = 16;
