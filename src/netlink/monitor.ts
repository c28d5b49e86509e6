/**
 * Kernel change notifications (rtnetlink multicast groups), so a backend can
 * re-read the kernel only when something changed instead of on a short
 * timer. A socket of its own (the facade's socket carries requests), unref'd
 * like the facade's.
 *
 * Cheap by design: every notification about our own writes arrives here too
 * (5,000 routes at start, one per lease event afterwards), so each message is
 * filtered on a byte or two of its fixed header (rtm_protocol, the ifindex)
 * before anything is decoded.
 */
import { createNetlink, rt, type NetlinkSocket } from 'netlink';
import { RudderError } from '../errors';
import { describeError } from '../errors';
import { AF_BRIDGE, AF_INET, bufToIp, bufToMac } from './conn';
import { toRouteInfo } from './routes';
import { RTPROT_RUDDER, type KernelChange } from './types';

const NETLINK_ROUTE = 0;
const GROUPS = [rt.MulticastGroups.LINK, rt.MulticastGroups.NEIGH, rt.MulticastGroups.IPV4_IFADDR, rt.MulticastGroups.IPV4_ROUTE];
const T = rt.MessageType;

type Msg = { type: number; data: Buffer };

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
      if (d[0] !== AF_INET || d[5] !== RTPROT_RUDDER) return null;
      return { kind: 'route', op: m.type === T.NEWROUTE ? 'new' : 'del', route: toRouteInfo(rt.parseRouteMessage(d)) };
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
      return d[0] === AF_INET && interested(index) ? { kind: 'addr', op: m.type === T.NEWADDR ? 'new' : 'del', index } : null;
    }
    case T.NEWNEIGH:
    case T.DELNEIGH: {
      // struct ndmsg: family, pad1, pad2 u16, ifindex s32, state u16, flags u8, type u8
      const index = d.readInt32LE(4);
      if (!interested(index)) return null;
      const failed = d.length >= 10 && (d.readUInt16LE(8) & NUD_FAILED) !== 0;
      const op = m.type === T.NEWNEIGH && !failed ? 'new' : 'del';
      const n = rt.parseNeighborMessage(d);
      if (d[0] === AF_INET) {
        const ip = bufToIp(n.attrs.dst);
        return ip === undefined ? null : { kind: 'neigh', op, index, ip, mac: bufToMac(n.attrs.lladdr) };
      }
      if (d[0] === AF_BRIDGE) {
        const mac = bufToMac(n.attrs.lladdr);
        const dst = bufToIp(n.attrs.dst);
        return mac === undefined || dst === undefined ? null : { kind: 'fdb', op, index, mac, dst };
      }
      return null;
    }
  }
  return null;
}

export function watchKernel(interested: (index: number) => boolean, onChange: (ch: KernelChange) => void): () => void {
  let sock: NetlinkSocket;
  try {
    sock = createNetlink(NETLINK_ROUTE, { recvBufferSize: 1 << 20 } as Parameters<typeof createNetlink>[1]);
    for (const g of GROUPS) sock.addMembership(g);
  } catch (e) {
    throw new RudderError('E_NETLINK', `netlink: subscribe to kernel notifications: ${describeError(e)}`, { cause: e });
  }
  const emit = (ch: KernelChange): void => {
    try {
      onChange(ch);
    } catch {
      // a consumer's bug must not kill the socket's event handler
    }
  };
  sock.on('message', (msgs: Msg[]) => {
    for (const m of msgs) {
      try {
        const ch = decodeChange(m, interested);
        if (ch !== null) emit(ch);
      } catch (e) {
        emit({ kind: 'lost', reason: `undecodable notification: ${describeError(e)}` });
      }
    }
  });
  // ENOBUFS (the kernel dropped notifications: buffer overrun) and the like.
  sock.on('error', (e: unknown) => emit({ kind: 'lost', reason: describeError(e) }));
  sock.on('invalid', (e: unknown) => emit({ kind: 'lost', reason: describeError(e) }));
  let closed = false;
  return () => {
    if (closed) return;
    closed = true;
    sock.close();
  };
}
