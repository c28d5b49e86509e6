/*
 * Opening the TUN device for the udp backend's data plane, one fd per queue
 * (no N-API here; the per-packet side is tun/vnet.h). Threads and locking:
 * tun_open runs on the caller's thread and touches only the fds it creates.
 */
#ifndef RUDDER_TUN_H
#define RUDDER_TUN_H

#include <stdbool.h>
#include <stddef.h>

struct tun_caps {
	bool vnet_hdr; /* reads and writes carry a struct virtio_net_hdr first */
	bool tso; /* TUNSETOFFLOAD granted: reads may be TCP super-packets, partial checksums */
	bool uso; /* USO4|USO6 granted too (Linux >= 6.2): UDP super-packets both ways */
	char note[256]; /* why an offload asked for is off, else empty */
};

/*
 * Creates (or attaches to) the TUN device `name` with IFF_TUN|IFF_NO_PI (and,
 * with `offloads`, IFF_VNET_HDR + TUNSETOFFLOAD where the kernel allows), with
 * up to `queues` queues (IFF_MULTI_QUEUE when more than one), and puts one
 * non-blocking, close-on-exec fd per queue in fds[]. Returns the number of
 * queues opened (>= 1; fewer than asked when the kernel refuses more, said in
 * caps->note), or -errno with a description in `err` and nothing left open.
 * The kernel's chosen name is copied to `ifname` (IFNAMSIZ bytes); what was
 * granted to `caps`.
 */
int tun_open(const char *name, bool offloads, unsigned queues, int *fds, char *ifname, struct tun_caps *caps,
        char *err, size_t errlen);

#endif
