/*
 * One-datagram sender for systemd's NOTIFY_SOCKET (no N-API here; the
 * binding is addon/notify.c). Threads and locking: none; each call uses its
 * own short-lived socket on the caller's thread.
 */
#ifndef RUDDER_NOTIFY_H
#define RUDDER_NOTIFY_H

#include <stddef.h>

/*
 * Sends `msg` (len bytes) as one datagram to the unix datagram socket at
 * `path`; a leading '@' names an abstract socket. Returns 0 or -errno with a
 * description in `err`.
 */
int rudder_notify(const char *path, const char *msg, size_t len, char *err, size_t errlen);

#endif
