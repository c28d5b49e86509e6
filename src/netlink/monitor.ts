/**
 * Kernel change notifications (rtnetlink multicast groups), so a backend can
 * re-read the kernel only when something changed instead of on a short
 * timer. A socket of its own (the facade's socket carries requests), unref'd
 * like the facade's: socket.ts, the addon's NETLINK_ROUTE socket joined to
 * the groups below; ENOBUFS (a burst overran its receive buffer) and a
 * truncated datagram are reported as `lost`.
 *
 * Cheap by design: every notification about our own writes arrives here too
 * (5,000 routes at start, one per lease event afterwards), so each message is
 * filtered on a byte or two of its fixed header (rtm_protocol, the ifindex)
 * before anything is decoded, and the few fields a backend judges are read
 * straight from the bytes: no message or attribute objects per
 * notification (a parser that made several per message made garbage that
 * under churn was promoted and kept the heap grown).
 */
import { RudderError } from '../errors';
import { describeError } from '../errors';
import { RtnlSocket } from './socket';
import { AF_BRIDGE, AF_INET } from './conn';
import { RTPROT_RUDDER, type KernelChange, type Route6Info, type RouteInfo, type RouteInfoOf } from './types';
import { AF_INET6, NDA_DST, NDA_LLADDR, NLMSG_HDRLEN, readIp6, RTA_DST, RTA_GATEWAY, RTA_OIF, RTA_PREFSRC, RTA_PRIORITY, RTA_TABLE, RTNH_F_ONLINK } from './wire';

/** rtnetlink multicast groups (include/uapi/linux/rtnetlink.h, RTNLGRP_*). */
const RTNLGRP = { LINK: 1, NEIGH: 3, IPV4_IFADDR: 5, IPV4_ROUTE: 7, IPV6_IFADDR: 9, IPV6_ROUTE: 11 } as const;
const GROUPS = [RTNLGRP.LINK, RTNLGRP.NEIGH, RTNLGRP.IPV4_IFADDR, RTNLGRP.IPV4_ROUTE, RTNLGRP.IPV6_IFADDR, RTNLGRP.IPV6_ROUTE];
/** The message types (RTM_*). */
const T = {
  NEWROUTE: 24,
  DELROUTE: 25,
  NEWLINK: 16,
  DELLINK: 17,
  NEWADDR: 20,
  DELADDR: 21,
  NEWNEIGH: 28,
  DELNEIGH: 29,
} as const;

type Msg = { type: number; data: Buffer };


/** Calls `fn(type, offset, length)` for each attribute from `from` on (netlink TLVs, 4-byte aligned). */
function forEachAttr(d: Buffer, from: number, fn: (type: number, at: number, len: number) => void): void {
  let at = from;
  while (at + 4 <= d.length) {
    const len = d.readUInt16LE(at);
    if (len < 4 || at + len > d.length) throw new RangeError(`bad attribute length ${len} at ${at}`);
    fn(d.readUInt16LE(at + 2) & 0x3fff, at + 4, len - 4); // without NLA_F_NESTED / NLA_F_NET_BYTEORDER
    at += (len + 3) & ~3;
  }
}

const HEX: readonly string[] = Array.from({ length: 256 }, (_, i) => i.toString(16).padStart(2, '0'));

function macAt(d: Buffer, at: number): string {
  const h = (i: number): string => HEX[d[at + i] as number] as string;
  return `${h(0)}:${h(1)}:${h(2)}:${h(3)}:${h(4)}:${h(5)}`;
}

/**
 * A route notification's body (struct rtmsg + attributes) as listRoutes
 * (listRoutes6) reports it: addresses of `addrLen` bytes read with `addr`.
 */
function routeOf<A extends number | bigint>(d: Buffer, addrLen: 4 | 16, addr: (at: number) => A, zero: A): RouteInfoOf<A> {
  let dst = zero;
  let oif: number | undefined;
  let gateway: A | undefined;
  let metric = 0;
  let prefsrc: A | undefined;
  let table: number = d[4] as number;
  forEachAttr(d, 12, (type, at, len) => {
    if (len === addrLen && (type === RTA_DST || type === RTA_GATEWAY || type === RTA_PREFSRC)) {
      if (type === RTA_DST) dst = addr(at);
      else if (type === RTA_GATEWAY) gateway = addr(at);
      else prefsrc = addr(at);
    } else if (len === 4) {
      if (type === RTA_OIF) oif = d.readUInt32LE(at);
      else if (type === RTA_PRIORITY) metric = d.readUInt32LE(at);
      else if (type === RTA_TABLE) table = d.readUInt32LE(at);
    }
  });
  return {
    dst: { ip: dst, prefix: d[1] as number },
    table,
    oif,
    gateway,
    onlink: (d.readUInt32LE(8) & RTNH_F_ONLINK) !== 0,
    protocol: d[5] as number,
    type: d[7] as number,
    metric,
    prefsrc,
  };
}

export function routeInfoOf(d: Buffer): RouteInfo {
  return { ...routeOf(d, 4, (at) => d.readUInt32BE(at), 0), scope: d[6] as number };
}

export function route6InfoOf(d: Buffer): Route6Info {
  return routeOf(d, 16, (at) => readIp6(d, at), 0n);
}

/** Splits one datagram into its netlink messages; throws on a malformed header. */
export function splitMessages(b: Buffer): Msg[] {
  const out: Msg[] = [];
  let at = 0;
  while (at + NLMSG_HDRLEN <= b.length) {
    const len = b.readUInt32LE(at);
    if (len < NLMSG_HDRLEN || at + len > b.length) throw new RangeError(`bad message length ${len} at ${at}`);
    out.push({ type: b.readUInt16LE(at + 4), data: b.subarray(at + NLMSG_HDRLEN, at + len) });
    at += (len + 3) & ~3;
  }
  return out;
}

/** ndm_state bit: resolution failed, or (for a permanent entry) the entry is being deleted. */
export const NUD_FAILED = 0x20;

/**
 * One notification → the change it reports, or null when it is none of the
 * subscriber's business (decided on the fixed header before any decoding).
 * A NEWNEIGH in state FAILED is reported as a deletion: the kernel sends one
 * just before the DELNEIGH of every neighbor deleted on request (our own
 * deletions of peers too), and either way the entry is unusable. Reported as
 * "new", each looked like a foreign entry appearing and started a full
 * reconcile (thousands of objects read back) during churn.
 */
export function decodeChange(m: Msg, interested: (index: number) => boolean): KernelChange | null {
  const d = m.data;
  if (d.length < 8) return null;
  switch (m.type) {
    case T.NEWROUTE:
    case T.DELROUTE: {
      // struct rtmsg: family, dst_len, src_len, tos, table, protocol, scope, type
      if (d[5] !== RTPROT_RUDDER || d.length < 12) return null;
      const op = m.type === T.NEWROUTE ? 'new' : 'del';
      if (d[0] === AF_INET) return { kind: 'route', op, route: routeInfoOf(d) };
      if (d[0] === AF_INET6) return { kind: 'route6', op, route: route6InfoOf(d) };
      return null;
    }
    case T.NEWLINK:
    case T.DELLINK: {
      // struct ifinfomsg: family, pad, type u16, index s32
      const index = d.readInt32LE(4);
      return interested(index) ? { kind: 'link', op: m.type === T.NEWLINK ? 'new' : 'del', index } : null;
    }
    case T.NEWADDR:
    case T.DELADDR: {
      // struct ifaddrmsg: family, prefixlen, flags, scope, index u32
      const index = d.readUInt32LE(4);
      return (d[0] === AF_INET || d[0] === AF_INET6) && interested(index) ? { kind: 'addr', op: m.type === T.NEWADDR ? 'new' : 'del', index } : null;
    }
    case T.NEWNEIGH:
    case T.DELNEIGH: {
      // struct ndmsg: family, pad1, pad2 u16, ifindex s32, state u16, flags u8, type u8
      const index = d.readInt32LE(4);
      if (!interested(index)) return null;
      if (d.length < 12 || (d[0] !== AF_INET && d[0] !== AF_INET6 && d[0] !== AF_BRIDGE)) return null;
      const failed = (d.readUInt16LE(8) & NUD_FAILED) !== 0;
      const op = m.type === T.NEWNEIGH && !failed ? 'new' : 'del';
      // NDA_DST: 4 bytes (IPv4), 16 (IPv6; for an FDB entry, an IPv6 remote).
      let dst: number | undefined;
      let dst6: bigint | undefined;
      let mac: string | undefined;
      forEachAttr(d, 12, (type, at, len) => {
        if (type === NDA_DST && len === 4) dst = d.readUInt32BE(at);
        else if (type === NDA_DST && len === 16) dst6 = readIp6(d, at);
        else if (type === NDA_LLADDR && len === 6) mac = macAt(d, at);
      });
      if (d[0] === AF_INET) return dst === undefined ? null : { kind: 'neigh', op, index, ip: dst, mac };
      if (d[0] === AF_INET6) return dst6 === undefined ? null : { kind: 'neigh6', op, index, ip: dst6, mac };
      if (mac === undefined) return null;
      if (dst6 !== undefined) return { kind: 'fdb6', op, index, mac, dst: dst6 };
      return dst === undefined ? null : { kind: 'fdb', op, index, mac, dst };
    }
  }
  return null;
}

export function watchKernel(interested: (index: number) => boolean, onChange: (ch: KernelChange) => void): () => void {
  const emit = (ch: KernelChange): void => {
    try {
      onChange(ch);
    } catch {
      // a consumer's bug must not kill the socket's event handler
    }
  };
  const onDatagram = (b: Buffer): void => {
    let msgs: Msg[];
    try {
      msgs = splitMessages(b);
    } catch (e) {
      emit({ kind: 'lost', reason: `undecodable notification: ${describeError(e)}` });
      return;
    }
    for (const m of msgs) {
      try {
        const ch = decodeChange(m, interested);
        if (ch !== null) emit(ch);
      } catch (e) {
        emit({ kind: 'lost', reason: `undecodable notification: ${describeError(e)}` });
      }
    }
  };
  let sock: RtnlSocket;
  try {
    // Datagrams in, split and filtered here (no parsed message objects); unreferenced, so
    // an idle subscription never keeps node alive.
    sock = new RtnlSocket({ groups: GROUPS, rcvbuf: 1 << 20, onDatagram, onLost: (reason) => emit({ kind: 'lost', reason }) });
  } catch (e) {
    throw new RudderError('E_NETLINK', `netlink: subscribe to kernel notifications: ${describeError(e)}`, { cause: e });
  }
  let closed = false;
  return () => {
    if (closed) return;
    closed = true;
    sock.close();
  };
}
