/**
 * The change requests Rudder sends most (route and neighbor/FDB replace and
 * delete), encoded straight into one Buffer each (pure).
 *
 * Why not the netlink package's encoders: each request went through an
 * options object per field group, a Buffer per attribute and per struct, the
 * concatenation and a chain of four promises; under churn, with three
 * requests per vxlan lease event and pipelined requests alive across
 * scavenges, that garbage was a good part of what got promoted and kept the
 * heap (RSS) grown after a burst. Dumps and the rare link/address requests
 * go through rtmsg.ts. test/unit/netlink-wire.test.ts checks these bytes
 * against what the package's encoders produced.
 */

export const NLMSG_HDRLEN = 16;
export const AF_INET6 = 10;
export const NLMSG_ERROR = 2;
export const RTM_NEWROUTE = 24;
export const RTM_DELROUTE = 25;
export const RTM_NEWNEIGH = 28;
export const RTM_DELNEIGH = 29;

export const NLM_F_REQUEST = 0x1;
export const NLM_F_ACK = 0x4;
export const NLM_F_REPLACE = 0x100;
export const NLM_F_CREATE = 0x400;

// Attribute types and the rtm_flags bit, shared with the notification decoder (monitor.ts).
export const RTA_DST = 1;
export const RTA_OIF = 4;
export const RTA_GATEWAY = 5;
export const RTA_PRIORITY = 6;
export const RTA_PREFSRC = 7;
export const RTA_TABLE = 15;
export const NDA_DST = 1;
export const NDA_LLADDR = 2;
/** rtm_flags: the gateway need not be on a connected subnet (the package has no name for it). */
export const RTNH_F_ONLINK = 4;

export const NUD_PERMANENT = 0x80;
export const NTF_SELF = 0x02;

/**
 * The route fields a request carries (rtmsg + attributes); absent attributes
 * are not sent. Addresses are IPv4 numbers (4-byte attributes) or, for
 * AF_INET6, bigints (16-byte attributes).
 */
export interface RouteWire {
  readonly family: number;
  readonly dstLen: number;
  readonly table: number;
  readonly protocol: number;
  readonly scope: number;
  readonly type: number;
  readonly flags: number;
  readonly dst: number | bigint;
  readonly oif?: number | undefined;
  readonly gateway?: number | bigint | undefined;
  readonly priority?: number | undefined;
  /** RTA_TABLE, for tables above 255 (rtm_table is a u8). */
  readonly tableAttr?: number | undefined;
}

/** The neighbor fields a request carries (ndmsg + attributes). */
export interface NeighWire {
  readonly family: number;
  readonly ifindex: number;
  readonly state: number;
  readonly flags: number;
  /** An IPv4 number (4-byte NDA_DST) or an IPv6 bigint (16 bytes: an NDP entry, or an FDB entry's IPv6 remote). */
  readonly dst?: number | bigint | undefined;
  /** Six bytes, aa:bb:cc:dd:ee:ff already validated. */
  readonly lladdr?: string | undefined;
}

const U32_ATTR = 8; // header 4 + u32
const IP6_ATTR = 20; // header 4 + 16 bytes
const MAC_ATTR = 12; // header 4 + 6 bytes + 2 padding

function header(b: Buffer, type: number, flags: number, seq: number): void {
  b.writeUInt32LE(b.length, 0);
  b.writeUInt16LE(type, 4);
  b.writeUInt16LE(flags | NLM_F_REQUEST | NLM_F_ACK, 6);
  b.writeUInt32LE(seq >>> 0, 8);
  b.writeUInt32LE(0, 12); // nlmsg_pid: 0 is fine for requests; the kernel answers the sending socket
}

/** Writes a 4-byte attribute (network order when `be`); returns the next offset. */
function u32Attr(b: Buffer, at: number, type: number, v: number, be: boolean): number {
  b.writeUInt16LE(U32_ATTR, at);
  b.writeUInt16LE(type, at + 2);
  if (be) b.writeUInt32BE(v >>> 0, at + 4);
  else b.writeUInt32LE(v >>> 0, at + 4);
  return at + U32_ATTR;
}

/** An address attribute: 4 bytes for an IPv4 number, 16 for an IPv6 bigint (network order). */
function ipAttr(b: Buffer, at: number, type: number, v: number | bigint): number {
  if (typeof v === 'number') return u32Attr(b, at, type, v, true);
  b.writeUInt16LE(IP6_ATTR, at);
  b.writeUInt16LE(type, at + 2);
  writeIp6(b, at + 4, v);
  return at + IP6_ATTR;
}

const ipAttrLen = (v: number | bigint): number => (typeof v === 'number' ? U32_ATTR : IP6_ATTR);

/** Writes a 128-bit address in network order at `at`. */
export function writeIp6(b: Buffer, at: number, v: bigint): void {
  b.writeBigUInt64BE((v >> 64n) & 0xffffffffffffffffn, at);
  b.writeBigUInt64BE(v & 0xffffffffffffffffn, at + 8);
}

/** Reads a 128-bit address in network order at `at`. */
export function readIp6(b: Buffer, at: number): bigint {
  return (b.readBigUInt64BE(at) << 64n) | b.readBigUInt64BE(at + 8);
}

export function ip6ToBuf(v: bigint): Buffer {
  const b = Buffer.alloc(16);
  writeIp6(b, 0, v);
  return b;
}

export function bufToIp6(b: Buffer | undefined): bigint | undefined {
  return b !== undefined && b.length === 16 ? readIp6(b, 0) : undefined;
}

function macAttr(b: Buffer, at: number, type: number, mac: string): number {
  b.writeUInt16LE(10, at);
  b.writeUInt16LE(type, at + 2);
  for (let i = 0; i < 6; i++) b[at + 4 + i] = parseInt(mac.slice(3 * i, 3 * i + 2), 16);
  b[at + 10] = 0;
  b[at + 11] = 0;
  return at + MAC_ATTR;
}

/** RTM_NEWROUTE / RTM_DELROUTE with NLM_F_REQUEST|NLM_F_ACK and `nlFlags`. */
export function routeMessage(type: number, nlFlags: number, seq: number, r: RouteWire): Buffer {
  const n = (r.oif !== undefined ? 1 : 0) + (r.priority !== undefined ? 1 : 0) + (r.tableAttr !== undefined ? 1 : 0);
  const b = Buffer.allocUnsafe(NLMSG_HDRLEN + 12 + ipAttrLen(r.dst) + (r.gateway !== undefined ? ipAttrLen(r.gateway) : 0) + n * U32_ATTR);
  header(b, type, nlFlags, seq);
  // struct rtmsg: family, dst_len, src_len, tos, table, protocol, scope, type, flags u32
  const h = NLMSG_HDRLEN;
  b[h] = r.family;
  b[h + 1] = r.dstLen;
  b[h + 2] = 0;
  b[h + 3] = 0;
  b[h + 4] = r.table;
  b[h + 5] = r.protocol;
  b[h + 6] = r.scope;
  b[h + 7] = r.type;
  b.writeUInt32LE(r.flags >>> 0, h + 8);
  let at = h + 12;
  // Ascending attribute type, as the package writes them.
  at = ipAttr(b, at, RTA_DST, r.dst);
  if (r.oif !== undefined) at = u32Attr(b, at, RTA_OIF, r.oif, false);
  if (r.gateway !== undefined) at = ipAttr(b, at, RTA_GATEWAY, r.gateway);
  if (r.priority !== undefined) at = u32Attr(b, at, RTA_PRIORITY, r.priority, false);
  if (r.tableAttr !== undefined) u32Attr(b, at, RTA_TABLE, r.tableAttr, false);
  return b;
}

/** RTM_NEWNEIGH / RTM_DELNEIGH with NLM_F_REQUEST|NLM_F_ACK and `nlFlags`. */
export function neighMessage(type: number, nlFlags: number, seq: number, x: NeighWire): Buffer {
  const b = Buffer.allocUnsafe(NLMSG_HDRLEN + 12 + (x.dst !== undefined ? ipAttrLen(x.dst) : 0) + (x.lladdr !== undefined ? MAC_ATTR : 0));
  header(b, type, nlFlags, seq);
  // struct ndmsg: family, pad1, pad2 u16, ifindex s32, state u16, flags u8, type u8
  const h = NLMSG_HDRLEN;
  b[h] = x.family;
  b[h + 1] = 0;
  b.writeUInt16LE(0, h + 2);
  b.writeInt32LE(x.ifindex, h + 4);
  b.writeUInt16LE(x.state, h + 8);
  b[h + 10] = x.flags;
  b[h + 11] = 0;
  let at = h + 12;
  if (x.dst !== undefined) at = ipAttr(b, at, NDA_DST, x.dst);
  if (x.lladdr !== undefined) macAttr(b, at, NDA_LLADDR, x.lladdr);
  return b;
}

/** The errno of an NLMSG_ERROR reply (0 = acknowledged); undefined for another message. */
export function ackErrno(type: number, data: Buffer): number | undefined {
  if (type !== NLMSG_ERROR || data.length < 4) return undefined;
  return data.readInt32LE(0);
}
