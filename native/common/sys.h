/*
 * The data path's per-packet system calls, made directly. glibc wraps read,
 * write, writev, sendmmsg and recvmmsg as thread-cancellation points: around
 * each call it switches the thread's cancel type on and off again, a few
 * percent of a small-packet tx thread's time (perf). The data-plane threads
 * are never cancelled (they stop on an eventfd), so they call the kernel
 * directly. errno and return values are as with the libc functions.
 * No state, no threads, no locking.
 */
#ifndef RUDDER_SYS_H
#define RUDDER_SYS_H

#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <unistd.h>

static inline ssize_t sys_read(int fd, void *buf, size_t len)
{
	return (ssize_t)syscall(SYS_read, fd, buf, len);
}

static inline ssize_t sys_write(int fd, const void *buf, size_t len)
{
	return (ssize_t)syscall(SYS_write, fd, buf, len);
}

static inline ssize_t sys_writev(int fd, const struct iovec *v, int n)
{
	return (ssize_t)syscall(SYS_writev, fd, v, n);
}

static inline int sys_sendmmsg(int fd, struct mmsghdr *m, unsigned n, int flags)
{
	return (int)syscall(SYS_sendmmsg, fd, m, n, flags);
}

static inline int sys_recvmmsg(int fd, struct mmsghdr *m, unsigned n, int flags)
{
	return (int)syscall(SYS_recvmmsg, fd, m, n, flags, (void *)0);
}

#endif
