/**
 * rtnetlink message bodies as objects, for the requests and dumps that are
 * not on a hot path (link lookups and changes, addresses, the route and
 * neighbor dumps): `{ data, attrs }` with the fixed header's fields in `data`
 * and the attributes by name in `attrs`, in the shapes the `netlink` npm
 * package used (links.ts, addrs.ts, neigh.ts and routes.ts read them), so
 * dropping the package (7.4 MB of RSS to load; docs/architecture.md) changed
 * nothing above conn.ts. Numbers where the package had enum names (route
 * protocol, scope, type; `enumNum` accepts both). Pure: no socket here.
 *
 * Encoding writes the header, then the attributes in the order of the
 * `attrs` object's keys (as the package did), each padded to 4 bytes.
 * Decoding keeps the attributes listed in the tables below and skips the
 * rest; an attribute whose length does not fit its type is skipped too.
 */

/** How an attribute's payload is read and written. */
type Kind = 'u8' | 'u16' | 'u32' | 's32' | 'string' | 'buffer';
type Table<A> = { readonly [N in keyof A]-?: readonly [type: number, kind: Kind] };

/** Named bits of a flags field; `__unknown` keeps bits without a name. */
type Bits<N extends string> = Partial<Record<N | '__unknown', boolean | number>>;

// include/uapi/linux/if.h (net_device_flags)
const IFF = ['up', 'broadcast', 'debug', 'loopback', 'pointopoint', 'notrailers', 'running', 'noarp', 'promisc', 'allmulti', 'master', 'slave', 'multicast', 'portsel', 'automedia', 'dynamic', 'lowerUp', 'dormant', 'echo'] as const;
// include/uapi/linux/if_addr.h (IFA_F_*, the u8 in ifaddrmsg)
const IFA_F = ['secondary', 'nodad', 'optimistic', 'dadfailed', 'homeaddress', 'deprecated', 'tentative', 'permanent'] as const;
// include/uapi/linux/neighbour.h (NUD_*, NTF_*)
const NUD = ['incomplete', 'reachable', 'stale', 'delay', 'probe', 'failed', 'noarp', 'permanent'] as const;
const NTF = ['use', 'self', 'master', 'proxy', 'extLearned', 'offloaded', 'sticky', 'router'] as const;

export type LinkFlags = Bits<(typeof IFF)[number]>;
export type AddressFlags = Bits<(typeof IFA_F)[number]>;
export type NeighborState = Bits<(typeof NUD)[number]>;
export type NeighborFlags = Bits<(typeof NTF)[number]>;

function decodeBits<N extends string>(names: readonly N[], v: number): Bits<N> {
  const out: Bits<N> = {};
  let rest = v >>> 0;
  names.forEach((n, i) => {
    const bit = 2 ** i;
    if ((rest & bit) !== 0) {
      out[n] = true;
      rest = (rest & ~bit) >>> 0;
    }
  });
  if (rest !== 0) out.__unknown = rest;
  return out;
}

function encodeBits<N extends string>(names: readonly N[], b: Bits<N> | undefined): number {
  if (b === undefined) return 0;
  let v = typeof b.__unknown === 'number' ? b.__unknown : 0;
  names.forEach((n, i) => {
    if (b[n] === true) v |= 2 ** i;
  });
  return v >>> 0;
}

// ---- messages ----

export interface LinkData {
  family?: number;
  type?: number;
  index?: number;
  flags?: LinkFlags;
  change?: LinkFlags;
}
export interface LinkAttrs {
  address?: Buffer;
  broadcast?: Buffer;
  ifname?: string;
  mtu?: number;
  link?: number;
  qdisc?: string;
  master?: number;
  txqlen?: number;
  operstate?: number;
  /** IFLA_LINKINFO, raw (its nested kind and data are read in links.ts). */
  linkinfo?: Buffer;
  afSpec?: Buffer;
  group?: number;
  promiscuity?: number;
  numTxQueues?: number;
  numRxQueues?: number;
  carrier?: number;
  linkNetnsid?: number;
  minMtu?: number;
  maxMtu?: number;
  permAddress?: Buffer;
}
// include/uapi/linux/if_link.h (IFLA_*)
const LINK_ATTRS: Table<LinkAttrs> = {
  address: [1, 'buffer'],
  broadcast: [2, 'buffer'],
  ifname: [3, 'string'],
  mtu: [4, 'u32'],
  link: [5, 'u32'],
  qdisc: [6, 'string'],
  master: [10, 'u32'],
  txqlen: [13, 'u32'],
  operstate: [16, 'u8'],
  linkinfo: [18, 'buffer'],
  afSpec: [26, 'buffer'],
  group: [27, 'u32'],
  promiscuity: [30, 'u32'],
  numTxQueues: [31, 'u32'],
  numRxQueues: [32, 'u32'],
  carrier: [33, 'u8'],
  linkNetnsid: [37, 's32'],
  minMtu: [50, 'u32'],
  maxMtu: [51, 'u32'],
  permAddress: [54, 'buffer'],
};

export interface AddressData {
  family?: number;
  prefixlen?: number;
  flags?: AddressFlags;
  scope?: number;
  index?: number;
}
export interface AddressAttrs {
  address?: Buffer;
  local?: Buffer;
  label?: string;
  broadcast?: Buffer;
  anycast?: Buffer;
  cacheinfo?: Buffer;
  multicast?: Buffer;
  /** IFA_FLAGS: all IFA_F_* bits (the header has only the low 8). */
  flags?: number;
  rtPriority?: number;
  proto?: number;
}
// include/uapi/linux/if_addr.h (IFA_*)
const ADDRESS_ATTRS: Table<AddressAttrs> = {
  address: [1, 'buffer'],
  local: [2, 'buffer'],
  label: [3, 'string'],
  broadcast: [4, 'buffer'],
  anycast: [5, 'buffer'],
  cacheinfo: [6, 'buffer'],
  multicast: [7, 'buffer'],
  flags: [8, 'u32'],
  rtPriority: [9, 'u32'],
  proto: [11, 'u8'],
};

export interface RouteData {
  family?: number;
  dstLen?: number;
  srcLen?: number;
  tos?: number;
  /** rtm_table, a u8; tables above 255 are only in attrs.table. */
  table?: number;
  protocol?: number;
  scope?: number;
  type?: number;
  /** rtm_flags (RTM_F_*, RTNH_F_*), as the wire number. */
  flags?: number;
}
export interface RouteAttrs {
  dst?: Buffer;
  src?: Buffer;
  iif?: number;
  oif?: number;
  gateway?: Buffer;
  priority?: number;
  prefsrc?: Buffer;
  metrics?: Buffer;
  multipath?: Buffer;
  flow?: number;
  cacheinfo?: Buffer;
  table?: number;
  mark?: number;
  via?: Buffer;
  pref?: number;
  encapType?: number;
  encap?: Buffer;
  uid?: number;
}
// include/uapi/linux/rtnetlink.h (RTA_*)
const ROUTE_ATTRS: Table<RouteAttrs> = {
  dst: [1, 'buffer'],
  src: [2, 'buffer'],
  iif: [3, 'u32'],
  oif: [4, 'u32'],
  gateway: [5, 'buffer'],
  priority: [6, 'u32'],
  prefsrc: [7, 'buffer'],
  metrics: [8, 'buffer'],
  multipath: [9, 'buffer'],
  flow: [11, 'u32'],
  cacheinfo: [12, 'buffer'],
  table: [15, 'u32'],
  mark: [16, 'u32'],
  via: [18, 'buffer'],
  pref: [20, 'u8'],
  encapType: [21, 'u16'],
  encap: [22, 'buffer'],
  uid: [25, 'u32'],
};

export interface NeighborData {
  family?: number;
  ifindex?: number;
  state?: NeighborState;
  flags?: NeighborFlags;
  type?: number;
}
export interface NeighborAttrs {
  dst?: Buffer;
  lladdr?: Buffer;
  cacheinfo?: Buffer;
  probes?: number;
  vlan?: number;
  vni?: number;
  ifindex?: number;
  master?: number;
  linkNetnsid?: number;
  srcVni?: number;
  protocol?: number;
}
// include/uapi/linux/neighbour.h (NDA_*)
const NEIGHBOR_ATTRS: Table<NeighborAttrs> = {
  dst: [1, 'buffer'],
  lladdr: [2, 'buffer'],
  cacheinfo: [3, 'buffer'],
  probes: [4, 'u32'],
  vlan: [5, 'u16'],
  vni: [7, 'u32'],
  ifindex: [8, 'u32'],
  master: [9, 'u32'],
  linkNetnsid: [10, 's32'],
  srcVni: [11, 'u32'],
  protocol: [12, 'u8'],
};

export interface LinkMessage {
  kind: 'link';
  data: LinkData;
  attrs: LinkAttrs;
}
export interface AddressMessage {
  kind: 'address';
  data: AddressData;
  attrs: AddressAttrs;
}
export interface RouteMessage {
  kind: 'route';
  data: RouteData;
  attrs: RouteAttrs;
}
export interface NeighborMessage {
  kind: 'neighbor';
  data: NeighborData;
  attrs: NeighborAttrs;
}

// ---- names the facade compares numbers with (rtnetlink.h) ----

export const RouteScope: Readonly<Record<string, number>> = { UNIVERSE: 0, SITE: 200, LINK: 253, HOST: 254, NOWHERE: 255 };
export const RouteProtocol: Readonly<Record<string, number>> = { UNSPEC: 0, REDIRECT: 1, KERNEL: 2, BOOT: 3, STATIC: 4 };
export const RouteType: Readonly<Record<string, number>> = { UNSPEC: 0, UNICAST: 1, LOCAL: 2, BROADCAST: 3, ANYCAST: 4, MULTICAST: 5, BLACKHOLE: 6, UNREACHABLE: 7, PROHIBIT: 8, THROW: 9, NAT: 10 };

/** rtm_flags as a number (they are kept as the wire number). */
export function formatRouteFlags(flags: number): number {
  return flags >>> 0;
}

// ---- attributes ----

function readValue(kind: Kind, b: Buffer, at: number, len: number): string | number | Buffer | undefined {
  switch (kind) {
    case 'u8':
      return len >= 1 ? b.readUInt8(at) : undefined;
    case 'u16':
      return len >= 2 ? b.readUInt16LE(at) : undefined;
    case 'u32':
      return len >= 4 ? b.readUInt32LE(at) : undefined;
    case 's32':
      return len >= 4 ? b.readInt32LE(at) : undefined;
    case 'string': {
      const end = b.indexOf(0, at);
      return b.toString('utf8', at, end === -1 || end > at + len ? at + len : end);
    }
    case 'buffer':
      return b.subarray(at, at + len);
  }
}

/** An attribute table by attribute type, made once per table. */
type ByType = ReadonlyMap<number, readonly [name: string, kind: Kind]>;

function byType<A extends object>(table: Table<A>): ByType {
  const m = new Map<number, readonly [string, Kind]>();
  for (const name of Object.keys(table) as Array<keyof A & string>) {
    const [type, kind] = table[name];
    m.set(type, [name, kind]);
  }
  return m;
}

function decodeAttrs<A extends object>(types: ByType, b: Buffer, from: number): A {
  const out: Record<string, unknown> = {};
  let at = from;
  while (at + 4 <= b.length) {
    const len = b.readUInt16LE(at);
    if (len < 4 || at + len > b.length) throw new RangeError(`bad attribute length ${len} at ${at}`);
    const known = types.get(b.readUInt16LE(at + 2) & 0x3fff);
    if (known !== undefined) {
      const v = readValue(known[1], b, at + 4, len - 4);
      if (v !== undefined) out[known[0]] = v;
    }
    at += (len + 3) & ~3;
  }
  return out as A;
}

function encodeValue(kind: Kind, v: unknown): Buffer {
  const num = (): number => {
    if (typeof v !== 'number' || !Number.isInteger(v)) throw new TypeError(`attribute value must be an integer, got ${String(v)}`);
    return v;
  };
  switch (kind) {
    case 'u8':
      return Buffer.from([num()]);
    case 'u16': {
      const b = Buffer.alloc(2);
      b.writeUInt16LE(num());
      return b;
    }
    case 'u32': {
      const b = Buffer.alloc(4);
      b.writeUInt32LE(num() >>> 0);
      return b;
    }
    case 's32': {
      const b = Buffer.alloc(4);
      b.writeInt32LE(num());
      return b;
    }
    case 'string':
      if (typeof v !== 'string') throw new TypeError('attribute value must be a string');
      return Buffer.from(`${v}\0`, 'utf8');
    case 'buffer':
      if (!Buffer.isBuffer(v)) throw new TypeError('attribute value must be a Buffer');
      return v;
  }
}

function encodeAttrs<A extends object>(table: Table<A>, attrs: A): Buffer[] {
  const out: Buffer[] = [];
  for (const [name, v] of Object.entries(attrs)) {
    if (v === undefined) continue;
    const spec = (table as Record<string, readonly [number, Kind] | undefined>)[name];
    if (spec === undefined) throw new TypeError(`unknown attribute ${name}`);
    const payload = encodeValue(spec[1], v);
    const len = 4 + payload.length;
    const a = Buffer.alloc((len + 3) & ~3);
    a.writeUInt16LE(len, 0);
    a.writeUInt16LE(spec[0], 2);
    payload.copy(a, 4);
    out.push(a);
  }
  return out;
}

const LINK_BY_TYPE = byType(LINK_ATTRS);
const ADDRESS_BY_TYPE = byType(ADDRESS_ATTRS);
const ROUTE_BY_TYPE = byType(ROUTE_ATTRS);
const NEIGHBOR_BY_TYPE = byType(NEIGHBOR_ATTRS);

// ---- bodies (fixed header + attributes) ----

export function formatLink(data: LinkData, attrs: LinkAttrs = {}): Buffer {
  const h = Buffer.alloc(16);
  h.writeUInt8(data.family ?? 0, 0);
  h.writeUInt16LE(data.type ?? 0, 2);
  h.writeInt32LE(data.index ?? 0, 4);
  h.writeUInt32LE(encodeBits(IFF, data.flags), 8);
  h.writeUInt32LE(encodeBits(IFF, data.change), 12);
  return Buffer.concat([h, ...encodeAttrs(LINK_ATTRS, attrs)]);
}

export function parseLink(b: Buffer): LinkMessage {
  if (b.length < 16) throw new RangeError(`link message of ${b.length} bytes`);
  return {
    kind: 'link',
    data: { family: b[0], type: b.readUInt16LE(2), index: b.readInt32LE(4), flags: decodeBits(IFF, b.readUInt32LE(8)), change: decodeBits(IFF, b.readUInt32LE(12)) },
    attrs: decodeAttrs(LINK_BY_TYPE, b, 16),
  };
}

export function formatAddress(data: AddressData, attrs: AddressAttrs = {}): Buffer {
  const h = Buffer.alloc(8);
  h.writeUInt8(data.family ?? 0, 0);
  h.writeUInt8(data.prefixlen ?? 0, 1);
  h.writeUInt8(encodeBits(IFA_F, data.flags) & 0xff, 2);
  h.writeUInt8(data.scope ?? 0, 3);
  h.writeUInt32LE(data.index ?? 0, 4);
  return Buffer.concat([h, ...encodeAttrs(ADDRESS_ATTRS, attrs)]);
}

export function parseAddress(b: Buffer): AddressMessage {
  if (b.length < 8) throw new RangeError(`address message of ${b.length} bytes`);
  return {
    kind: 'address',
    data: { family: b[0], prefixlen: b[1], flags: decodeBits(IFA_F, b[2] as number), scope: b[3], index: b.readUInt32LE(4) },
    attrs: decodeAttrs(ADDRESS_BY_TYPE, b, 8),
  };
}

export function formatRoute(data: RouteData, attrs: RouteAttrs = {}): Buffer {
  const h = Buffer.alloc(12);
  [data.family, data.dstLen, data.srcLen, data.tos, data.table, data.protocol, data.scope, data.type].forEach((v, i) => h.writeUInt8(v ?? 0, i));
  h.writeUInt32LE((data.flags ?? 0) >>> 0, 8);
  return Buffer.concat([h, ...encodeAttrs(ROUTE_ATTRS, attrs)]);
}

export function parseRouteMessage(b: Buffer): RouteMessage {
  if (b.length < 12) throw new RangeError(`route message of ${b.length} bytes`);
  return {
    kind: 'route',
    data: { family: b[0], dstLen: b[1], srcLen: b[2], tos: b[3], table: b[4], protocol: b[5], scope: b[6], type: b[7], flags: b.readUInt32LE(8) },
    attrs: decodeAttrs(ROUTE_BY_TYPE, b, 12),
  };
}

export function formatNeighbor(data: NeighborData, attrs: NeighborAttrs = {}): Buffer {
  const h = Buffer.alloc(12);
  h.writeUInt8(data.family ?? 0, 0);
  h.writeInt32LE(data.ifindex ?? 0, 4);
  h.writeUInt16LE(encodeBits(NUD, data.state) & 0xffff, 8);
  h.writeUInt8(encodeBits(NTF, data.flags) & 0xff, 10);
  h.writeUInt8(data.type ?? 0, 11);
  return Buffer.concat([h, ...encodeAttrs(NEIGHBOR_ATTRS, attrs)]);
}

export function parseNeighbor(b: Buffer): NeighborMessage {
  if (b.length < 12) throw new RangeError(`neighbor message of ${b.length} bytes`);
  return {
    kind: 'neighbor',
    data: { family: b[0], ifindex: b.readInt32LE(4), state: decodeBits(NUD, b.readUInt16LE(8)), flags: decodeBits(NTF, b[10] as number), type: b[11] },
    attrs: decodeAttrs(NEIGHBOR_BY_TYPE, b, 12),
  };
}
