/**
 * Links: lookup, up, MTU, delete, and VXLAN creation. IFLA_LINKINFO is a raw
 * buffer in rtmsg.ts, so its nested attributes (kind, VXLAN data)
 * are encoded and decoded here.
 */
import type * as rt from './rtmsg';
import { RudderError } from '../errors';
import { formatIp6 } from '../ip/ipv6';
import { bufToIp, bufToMac, Conn, CREATE_EXCL, dev, formatIp, ipToBuf, KernelError, macToBuf } from './conn';
import { bufToIp6, ip6ToBuf } from './wire';
import type { EnsureResult, LinkInfo, VxlanSpec } from './types';

// include/uapi/linux/if_link.h
const IFLA_INFO_KIND = 1;
const IFLA_INFO_DATA = 2;
const IFLA_VXLAN_ID = 1;
const IFLA_VXLAN_LINK = 3;
const IFLA_VXLAN_LOCAL = 4;
const IFLA_VXLAN_LEARNING = 7;
const IFLA_VXLAN_PORT = 15; // big-endian u16
const IFLA_VXLAN_GROUP6 = 16; // 16 bytes, network order
const IFLA_VXLAN_LOCAL6 = 17;
const NLA_TYPE_MASK = 0x3fff; // strips NLA_F_NESTED / NLA_F_NET_BYTEORDER

/** Splits a buffer of netlink attributes into type → payload. */
export function parseAttrs(buf: Buffer): Map<number, Buffer> {
  const out = new Map<number, Buffer>();
  let off = 0;
  while (off + 4 <= buf.length) {
    const len = buf.readUInt16LE(off);
    const type = buf.readUInt16LE(off + 2) & NLA_TYPE_MASK;
    if (len < 4 || off + len > buf.length) break;
    out.set(type, buf.subarray(off + 4, off + len));
    off += (len + 3) & ~3;
  }
  return out;
}

export function encodeAttr(type: number, payload: Buffer): Buffer {
  const len = 4 + payload.length;
  const b = Buffer.alloc((len + 3) & ~3);
  b.writeUInt16LE(len, 0);
  b.writeUInt16LE(type, 2);
  payload.copy(b, 4);
  return b;
}

function u32(v: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32LE(v >>> 0, 0);
  return b;
}

function kindOf(linkinfo: Buffer | undefined): string | undefined {
  if (linkinfo === undefined) return undefined;
  const k = parseAttrs(linkinfo).get(IFLA_INFO_KIND);
  return k === undefined ? undefined : k.toString('latin1').replace(/\0+$/, '');
}

export function toLinkInfo(m: rt.LinkMessage): LinkInfo {
  const kind = kindOf(m.attrs.linkinfo);
  const vx = kind === 'vxlan' ? vxlanAttrsOf(m) : null;
  return {
    index: m.data.index ?? 0,
    name: m.attrs.ifname ?? '',
    mtu: m.attrs.mtu ?? 0,
    up: m.data.flags?.up === true,
    kind,
    mac: bufToMac(m.attrs.address),
    ...(vx?.vni !== undefined && vx.port !== undefined ? { vxlan: { vni: vx.vni, port: vx.port, ...(vx.local6 !== undefined || vx.group6 !== undefined ? { ipv6: true } : {}) } } : {}),
  };
}

export async function listLinks(c: Conn): Promise<LinkInfo[]> {
  const msgs = await c.call('list', 'links', (s) => s.getLinks());
  return msgs.map(toLinkInfo);
}

async function rawLink(c: Conn, by: { name: string } | { index: number }): Promise<rt.LinkMessage | null> {
  const what = 'name' in by ? `link ${by.name}` : `link ${dev(by.index)}`;
  const msgs = await c.callTolerant<rt.LinkMessage[]>('get', what, ['ENODEV'], [], (s) =>
    'name' in by ? s.getLink({}, { ifname: by.name }) : s.getLink({ index: by.index }),
  );
  return msgs[0] ?? null;
}

export async function linkByName(c: Conn, name: string): Promise<LinkInfo | null> {
  const m = await rawLink(c, { name });
  return m === null ? null : toLinkInfo(m);
}

export async function linkByIndex(c: Conn, index: number): Promise<LinkInfo | null> {
  const m = await rawLink(c, { index });
  return m === null ? null : toLinkInfo(m);
}

async function mustLink(c: Conn, op: string, index: number): Promise<LinkInfo> {
  const l = await linkByIndex(c, index);
  if (l === null) throw new RudderError('E_NETLINK', `netlink: ${op} ${dev(index)}: no such link`, { cause: new KernelError('ENODEV', undefined) });
  return l;
}

export async function deleteLink(c: Conn, index: number): Promise<boolean> {
  return c.callTolerant('delete', `link ${dev(index)}`, ['ENODEV'], false, async (s) => {
    await s.delLink({ index });
    return true;
  });
}

export async function ensureLinkUp(c: Conn, index: number): Promise<EnsureResult> {
  const l = await mustLink(c, 'set up', index);
  if (l.up) return { changed: false };
  await c.call('set up', `link ${l.name}`, (s) => s.setLink({ index, flags: { up: true }, change: { up: true } }));
  return { changed: true };
}

export async function ensureMtu(c: Conn, index: number, mtu: number): Promise<EnsureResult> {
  const l = await mustLink(c, `set mtu ${mtu}`, index);
  if (l.mtu === mtu) return { changed: false };
  await c.call(`set mtu ${mtu}`, `link ${l.name}`, (s) => s.setLink({ index }, { mtu }));
  return { changed: true };
}

interface VxlanAttrs {
  vni: number | undefined;
  port: number | undefined;
  local: number | undefined;
  local6: bigint | undefined;
  group6: bigint | undefined;
  underlay: number | undefined;
  learning: boolean | undefined;
}

function vxlanAttrsOf(m: rt.LinkMessage): VxlanAttrs | null {
  if (m.attrs.linkinfo === undefined) return null;
  const info = parseAttrs(m.attrs.linkinfo);
  const data = info.get(IFLA_INFO_DATA);
  if (data === undefined) return null;
  const a = parseAttrs(data);
  const id = a.get(IFLA_VXLAN_ID);
  const port = a.get(IFLA_VXLAN_PORT);
  const link = a.get(IFLA_VXLAN_LINK);
  const learning = a.get(IFLA_VXLAN_LEARNING);
  return {
    vni: id && id.length >= 4 ? id.readUInt32LE(0) : undefined,
    port: port && port.length >= 2 ? port.readUInt16BE(0) : undefined,
    local: bufToIp(a.get(IFLA_VXLAN_LOCAL)),
    local6: bufToIp6(a.get(IFLA_VXLAN_LOCAL6)),
    group6: bufToIp6(a.get(IFLA_VXLAN_GROUP6)),
    underlay: link && link.length >= 4 ? link.readUInt32LE(0) : undefined,
    learning: learning && learning.length >= 1 ? learning[0] !== 0 : undefined,
  };
}

function vxlanMatches(m: rt.LinkMessage, spec: VxlanSpec): boolean {
  if (kindOf(m.attrs.linkinfo) !== 'vxlan') return false;
  const a = vxlanAttrsOf(m);
  if (a === null) return false;
  return (
    a.vni === spec.vni &&
    a.port === spec.port &&
    (a.local ?? 0) === (spec.local ?? 0) &&
    (a.local6 ?? 0n) === (spec.local6 ?? 0n) &&
    (a.group6 ?? 0n) === (spec.group6 ?? 0n) &&
    (a.underlay ?? 0) === (spec.underlay ?? 0) &&
    (a.learning ?? true) === (spec.learning ?? false) &&
    (spec.mac === undefined || bufToMac(m.attrs.address) === spec.mac.toLowerCase())
  );
}

function encodeVxlanInfo(spec: VxlanSpec): Buffer {
  const port = Buffer.alloc(2);
  port.writeUInt16BE(spec.port, 0);
  const data: Buffer[] = [
    encodeAttr(IFLA_VXLAN_ID, u32(spec.vni)),
    encodeAttr(IFLA_VXLAN_PORT, port),
    encodeAttr(IFLA_VXLAN_LEARNING, Buffer.from([spec.learning === true ? 1 : 0])),
  ];
  if (spec.local) data.push(encodeAttr(IFLA_VXLAN_LOCAL, ipToBuf(spec.local)));
  if (spec.group6) data.push(encodeAttr(IFLA_VXLAN_GROUP6, ip6ToBuf(spec.group6)));
  if (spec.local6) data.push(encodeAttr(IFLA_VXLAN_LOCAL6, ip6ToBuf(spec.local6)));
  if (spec.underlay) data.push(encodeAttr(IFLA_VXLAN_LINK, u32(spec.underlay)));
  return Buffer.concat([encodeAttr(IFLA_INFO_KIND, Buffer.from('vxlan\0', 'latin1')), encodeAttr(IFLA_INFO_DATA, Buffer.concat(data))]);
}

/**
 * VXLAN parameters cannot be changed on a live device, so a device with the
 * right name but other parameters (or another kind) is deleted and recreated.
 */
export async function ensureVxlan(c: Conn, spec: VxlanSpec): Promise<LinkInfo & EnsureResult> {
  const local = spec.local ? `, local ${formatIp(spec.local)}` : spec.local6 ? `, local ${formatIp6(spec.local6)}` : '';
  const what = `vxlan ${spec.name} (vni ${spec.vni}, port ${spec.port}${local})`;
  const existing = await rawLink(c, { name: spec.name });
  if (existing !== null) {
    if (vxlanMatches(existing, spec)) return { ...toLinkInfo(existing), changed: false };
    await deleteLink(c, existing.data.index ?? 0);
  }
  await c.call('create', what, (s) =>
    s.newLink(
      { family: 0 },
      {
        ifname: spec.name,
        linkinfo: encodeVxlanInfo(spec),
        ...(spec.mac !== undefined ? { address: macToBuf(spec.mac) } : {}),
      },
      { flags: CREATE_EXCL },
    ),
  );
  const created = await linkByName(c, spec.name);
  if (created === null) throw new RudderError('E_NETLINK', `netlink: create ${what}: link missing after creation`);
  return { ...created, changed: true };
}
