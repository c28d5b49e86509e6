/**
 * The typed face of the addon's NETLINK_ROUTE socket (native/netlink/rtnl.c,
 * native/addon/netlink.c): open (bound to a kernel-picked port, joined to
 * multicast groups), send one request datagram, receive datagrams on node's
 * own event loop (a uv_poll on the descriptor: no thread), close.
 *
 * Receive errors become `lost` (ENOBUFS: the kernel dropped messages meant
 * for this socket, e.g. notifications during a burst), and so does a
 * datagram longer than the addon's receive buffer (MSG_TRUNC): its tail is
 * gone, so it is not passed on. The socket stays open either way.
 */
import { constants as osConstants } from 'node:os';
import { getSystemErrorName } from 'node:util';
import { requireAddon } from '../dataplane/addon';
import { RudderError } from '../errors';

/** Opaque handle owned by the addon (an N-API External). */
interface RawHandle {
  readonly __rudderNetlinkHandle: never;
}

type RawOnDatagram = (datagram: Buffer | undefined, errno: number, truncated: boolean) => void;

/** The socket part of rudder_native.node, exactly as native/addon/netlink.c takes it. */
interface RawNetlinkAddon {
  netlinkOpen(groups: Uint32Array, rcvbuf: number, onDatagram: RawOnDatagram): RawHandle;
  /** 0, or a negative errno. */
  netlinkSend(handle: RawHandle, request: Buffer): number;
  netlinkRef(handle: RawHandle, on: boolean): void;
  netlinkClose(handle: RawHandle): void;
}

function isRawNetlinkAddon(v: unknown): v is RawNetlinkAddon {
  if (typeof v !== 'object' || v === null) return false;
  const o = v as Record<string, unknown>;
  return ['netlinkOpen', 'netlinkSend', 'netlinkRef', 'netlinkClose'].every((k) => typeof o[k] === 'function');
}

let raw: RawNetlinkAddon | undefined;

function addon(): RawNetlinkAddon {
  if (raw !== undefined) return raw;
  const mod = requireAddon('E_NETLINK');
  if (!isRawNetlinkAddon(mod)) throw new RudderError('E_NETLINK', 'native addon has no netlink socket (netlinkOpen...): run ./build to rebuild it');
  raw = mod;
  return raw;
}

/** An errno number (either sign) as its name: ENOBUFS, EBADF, ... */
export function errnoName(errno: number): string {
  try {
    return getSystemErrorName(errno < 0 ? errno : -errno);
  } catch {
    return `errno ${Math.abs(errno)}`;
  }
}

export interface RtnlSocketOptions {
  /** rtnetlink multicast groups (RTNLGRP_*) to join; none for a request socket. */
  readonly groups?: readonly number[];
  /** SO_RCVBUF in bytes; 0 or absent keeps the system default. */
  readonly rcvbuf?: number;
  /** Called with each datagram received (one or more netlink messages); the Buffer is the callee's. */
  readonly onDatagram: (datagram: Buffer) => void;
  /** Called when messages were lost: a receive error (ENOBUFS) or a truncated datagram. */
  readonly onLost: (reason: string) => void;
}

/** One NETLINK_ROUTE socket. Unreferenced when opened: it never keeps node alive unless `ref(true)`. */
export class RtnlSocket {
  private readonly a: RawNetlinkAddon;
  private readonly h: RawHandle;
  private closed = false;

  constructor(opts: RtnlSocketOptions) {
    const a = addon();
    const groups = Uint32Array.from(opts.groups ?? []);
    const onRaw: RawOnDatagram = (d, errno, truncated) => {
      if (this.closed) return;
      if (d !== undefined && !truncated) opts.onDatagram(d);
      else if (truncated) opts.onLost(`truncated datagram (${d?.length ?? 0} bytes kept)`);
      else opts.onLost(errno === osConstants.errno.ENOBUFS ? 'ENOBUFS: the kernel dropped messages for this socket (receive buffer overrun)' : errnoName(errno));
    };
    try {
      this.h = a.netlinkOpen(groups, opts.rcvbuf ?? 0, onRaw);
    } catch (e) {
      throw new RudderError('E_NETLINK', `netlink: open rtnetlink socket: ${e instanceof Error ? e.message : String(e)}`, { cause: e });
    }
    this.a = a;
    a.netlinkRef(this.h, false);
  }

  /** Sends one request datagram; 0, or the negative errno of a failed send (EBADF once closed). */
  send(request: Buffer): number {
    return this.closed ? -osConstants.errno.EBADF : this.a.netlinkSend(this.h, request);
  }

  /** Whether the socket keeps node's event loop alive (true while replies are due). */
  ref(on: boolean): void {
    if (!this.closed) this.a.netlinkRef(this.h, on);
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.a.netlinkClose(this.h);
  }
}
