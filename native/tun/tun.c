/*
 * TUN device creation. Threads and locking: none; tun_open runs on the
 * caller's thread (the JS thread, through dp_open) and only touches the fds it
 * creates (one per queue). Addresses, MTU and routes are the backend's business (rtnetlink),
 * so this file stops at TUNSETIFF, the offload ioctls plus one sysctl the
 * data plane relies on.
 *
 * Offloads: with `offloads`, the device is created with IFF_VNET_HDR (every
 * read and write starts with a struct virtio_net_hdr) and TUNSETOFFLOAD
 * asks for TCP super-packets (TSO4/TSO6, with ECN), UDP super-packets
 * (USO4|USO6, Linux >= 6.2: the kernel then also takes GSO_UDP_L4 writes)
 * and partial checksums. Each step falls back when the kernel refuses it: no
 * IFF_VNET_HDR means a plain TUN; a refused USO asks again without it (TSO
 * only, UDP written datagram by datagram); a refused TUNSETOFFLOAD keeps the
 * header (the data plane can still write coalesced TCP) without TSO. What was granted and why not
 * goes back in struct tun_caps.
 */
#define _GNU_SOURCE
#include "tun/tun.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/if.h>
#include <linux/if_tun.h>
#ifndef TUN_F_USO4
#define TUN_F_USO4 0x20 /* Linux >= 6.2 uapi; older kernels refuse it (EINVAL) */
#define TUN_F_USO6 0x40
#endif
#include <linux/virtio_net.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

static int fail(char *err, size_t errlen, int e, const char *what, const char *name)
{
	const char *en = strerrorname_np(e);
	snprintf(err, errlen, "TUN %s: %s: %s (%s)", name, what, strerror(e), en ? en : "?");
	return -e;
}

/*
 * ICMP errors the data plane generates carry the TUN's own address as source
 * and are written back into the TUN; the kernel treats a packet arriving with
 * one of its own addresses as source as martian unless accept_local is set.
 * Best effort: without it forwarding still works, only those ICMP errors are
 * lost, so a failure here must not fail the open.
 */
static void enable_accept_local(const char *ifname)
{
	char path[96];
	snprintf(path, sizeof path, "/proc/sys/net/ipv4/conf/%s/accept_local", ifname);
	int fd = open(path, O_WRONLY | O_CLOEXEC);
	if (fd < 0)
		return;
	if (write(fd, "1\n", 2) < 0) {
		/* nothing to do: see above */
	}
	close(fd);
}

static void add_note(struct tun_caps *caps, const char *what, int e)
{
	size_t used = strlen(caps->note);
	snprintf(caps->note + used, sizeof caps->note - used, "%s%s: %s", used ? "; " : "", what, strerror(e));
}

/*
 * Further queues of a multi-queue device: the same flags and name; device
 * settings (vnet header size, offloads) are the device's, set once on the
 * first queue. The kernel steers each flow to one queue (by its hash, and to
 * the queue its packets were last written from), so a flow stays with one
 * worker.
 */
static unsigned attach_queues(const struct ifreq *first, unsigned queues, int *fds, struct tun_caps *caps)
{
	unsigned n = 1;
	while (n < queues) {
		int fd = open("/dev/net/tun", O_RDWR | O_NONBLOCK | O_CLOEXEC);
		if (fd < 0) {
			add_note(caps, "open /dev/net/tun for another queue", errno);
			break;
		}
		struct ifreq ifr = *first;
		ifr.ifr_flags &= (short)~IFF_TUN_EXCL;
		if (ioctl(fd, TUNSETIFF, &ifr) < 0) {
			add_note(caps, "TUNSETIFF for another queue", errno);
			close(fd);
			break;
		}
		fds[n++] = fd;
	}
	return n;
}

/* TUNSETIFF flags of the first queue: a multi-queue device must be new (IFF_TUN_EXCL, see tun_open). */
static short tun_flags(bool mq, bool vnet_hdr)
{
	return (short)(IFF_TUN | IFF_NO_PI | (mq ? IFF_MULTI_QUEUE | IFF_TUN_EXCL : 0) | (vnet_hdr ? IFF_VNET_HDR : 0));
}

int tun_open(const char *name, bool offloads, unsigned queues, int *fds, char *ifname, struct tun_caps *caps,
        char *err, size_t errlen)
{
	memset(caps, 0, sizeof *caps);
	size_t len = strlen(name);
	if (len == 0 || len >= IFNAMSIZ || strchr(name, '/') != NULL || strchr(name, '%') != NULL) {
		snprintf(err, errlen, "TUN name '%s' is invalid (1..%d characters, no '/' or '%%')", name,
		        IFNAMSIZ - 1);
		return -EINVAL;
	}
	int fd = open("/dev/net/tun", O_RDWR | O_NONBLOCK | O_CLOEXEC);
	if (fd < 0)
		return fail(err, errlen, errno, "open /dev/net/tun", name);

	struct ifreq ifr;
	memset(&ifr, 0, sizeof ifr);
	short mq = queues > 1 ? IFF_MULTI_QUEUE : 0;
	/*
	 * A multi-queue device takes more queues from anyone who asks, so the
	 * first queue insists on a new device (IFF_TUN_EXCL: EBUSY if the name
	 * exists): a second daemon must fail here as it does with one queue,
	 * not join our device. The further queues attach without it.
	 */
	ifr.ifr_flags = tun_flags(mq, offloads);
	memcpy(ifr.ifr_name, name, len);
	int rc = ioctl(fd, TUNSETIFF, &ifr);
	/*
	 * EINVAL: no multi-queue TUN here. EBUSY: the name exists. Asked again as
	 * one queue, a free persistent TUN (ip tuntap add) is taken as before
	 * multi-queue and one another process holds fails with EBUSY; a
	 * multi-queue one answers EINVAL to that, which is reported as the EBUSY
	 * it is (it belongs to another data plane, or persists: not ours to join).
	 */
	bool exists = false;
	if (rc < 0 && mq && (errno == EINVAL || errno == EBUSY)) {
		exists = errno == EBUSY;
		add_note(caps, exists ? "TUNSETIFF with IFF_MULTI_QUEUE|IFF_TUN_EXCL (the device exists)" : "TUNSETIFF with IFF_MULTI_QUEUE", errno);
		mq = 0;
		queues = 1;
		ifr.ifr_flags = tun_flags(false, offloads);
		rc = ioctl(fd, TUNSETIFF, &ifr);
		if (rc < 0 && exists && errno == EINVAL) {
			close(fd);
			return fail(err, errlen, EBUSY, "TUNSETIFF: a multi-queue device of this name exists", name);
		}
	}
	if (rc < 0 && offloads && errno == EINVAL) {
		add_note(caps, "TUNSETIFF with IFF_VNET_HDR", errno);
		ifr.ifr_flags = tun_flags(mq, false);
		rc = ioctl(fd, TUNSETIFF, &ifr);
	} else if (rc == 0 && offloads) {
		caps->vnet_hdr = true;
	}
	if (rc < 0) {
		int e = errno;
		close(fd);
		return fail(err, errlen, e, "TUNSETIFF", name);
	}
	if (caps->vnet_hdr) {
		int sz = sizeof(struct virtio_net_hdr);
		unsigned long want = TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6 | TUN_F_TSO_ECN;
		if (ioctl(fd, TUNSETVNETHDRSZ, &sz) < 0) {
			add_note(caps, "TUNSETVNETHDRSZ", errno);
		} else if (ioctl(fd, TUNSETOFFLOAD, want | TUN_F_USO4 | TUN_F_USO6) == 0) {
			caps->tso = caps->uso = true;
		} else if (ioctl(fd, TUNSETOFFLOAD, want) == 0) {
			add_note(caps, "TUNSETOFFLOAD USO4|USO6", errno);
			caps->tso = true;
		} else {
			add_note(caps, "TUNSETOFFLOAD CSUM|TSO4|TSO6|TSO_ECN", errno);
			if (ioctl(fd, TUNSETOFFLOAD, 0UL) < 0) {
				/* The header stays; the kernel simply sends nothing offloaded. */
			}
		}
	}
	memcpy(ifname, ifr.ifr_name, IFNAMSIZ);
	ifname[IFNAMSIZ - 1] = '\0';
	enable_accept_local(ifname);
	fds[0] = fd;
	return (int)(mq ? attach_queues(&ifr, queues, fds, caps) : 1);
}
