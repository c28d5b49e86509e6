/* TUN device handling for the udp backend's data plane (no N-API here). */
#ifndef RUDDER_TUN_H
#define RUDDER_TUN_H

#include <stddef.h>

/*
 * Creates (or attaches to) the TUN device `name` with IFF_TUN|IFF_NO_PI and
 * returns a non-blocking, close-on-exec fd, or -errno with a description in
 * `err`. The kernel's chosen name is copied to `ifname` (IFNAMSIZ bytes).
 */
int tun_open(const char *name, char *ifname, char *err, size_t errlen);

#endif
