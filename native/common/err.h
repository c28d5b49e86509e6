/*
 * Error text for the data plane's setup paths: "<what>: <strerror> (<ENAME>)"
 * into the caller's buffer, returning -errno. No state, no threads, no locking.
 */
#ifndef RUDDER_COMMON_ERR_H
#define RUDDER_COMMON_ERR_H

#include <stddef.h>
#include <stdio.h>
#include <string.h>

/* `fmt` takes one string argument (pass "" when it has no %s). */
static inline int errf(char *err, size_t errlen, int e, const char *fmt, const char *arg)
{
	char what[128];
	snprintf(what, sizeof what, fmt, arg);
	const char *en = strerrorname_np(e);
	snprintf(err, errlen, "%s: %s (%s)", what, strerror(e), en ? en : "?");
	return -e;
}

#endif
