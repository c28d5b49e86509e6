/*
 * A NETLINK_ROUTE socket for the JS netlink facade (no N-API here; the
 * binding is addon/netlink.c): open and bind it, join multicast groups, send
 * one request, receive one datagram without blocking. Threads and locking:
 * none; every call runs on the caller's thread (the JS thread) on the
 * caller's descriptor.
 */
#ifndef RUDDER_NETLINK_RTNL_H
#define RUDDER_NETLINK_RTNL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* More groups than rtnetlink has (RTNLGRP_MAX is below 64). */
#define RTNL_MAX_GROUPS 64

/*
 * Opens a non-blocking, close-on-exec NETLINK_ROUTE socket bound to a port the
 * kernel picks, joined to `groups` (RTNLGRP_* numbers), with SO_RCVBUF
 * `rcvbuf` when it is not 0. Returns the descriptor, or -errno with a
 * description in `err`.
 */
int rtnl_open(const uint32_t *groups, size_t ngroups, uint32_t rcvbuf, char *err, size_t errlen);

/* Sends one datagram (one or more netlink messages) to the kernel. Returns 0 or -errno. */
int rtnl_send(int fd, const void *buf, size_t len);

/*
 * Receives one datagram into buf (cap bytes), without blocking. Returns its
 * length, or -errno (-EAGAIN: nothing queued; -ENOBUFS: the kernel dropped
 * messages for this socket, which stays usable). A datagram longer than `cap`
 * is cut to `cap`: *truncated says so, and the return value is its full length.
 */
ssize_t rtnl_recv(int fd, void *buf, size_t cap, bool *truncated);

#endif
