/**
 * IPv4 address and CIDR math (pure). Addresses are unsigned 32-bit integers
 * held in JS numbers; every result is normalised with `>>> 0` so that
 * comparisons and table keys never see negative values.
 */

export interface Cidr {
  /** Network address (host bits are zero for a canonical Cidr). */
  readonly ip: number;
  /** Prefix length, 0..32. */
  readonly prefix: number;
}

const DOTTED = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/;

/** Parses dotted-quad IPv4; returns null if `s` is not one. */
export function parseIp(s: string): number | null {
  const m = DOTTED.exec(s.trim());
  if (!m) return null;
  let v = 0;
  for (let i = 1; i <= 4; i++) {
    const part = m[i] as string;
    if (part.length > 1 && part.startsWith('0')) return null; // no octal-looking octets
    const o = Number(part);
    if (o > 255) return null;
    v = v * 256 + o;
  }
  return v >>> 0;
}

export function formatIp(ip: number): string {
  const v = ip >>> 0;
  return `${v >>> 24}.${(v >>> 16) & 255}.${(v >>> 8) & 255}.${v & 255}`;
}

export function maskOf(prefix: number): number {
  return prefix === 0 ? 0 : (0xffffffff << (32 - prefix)) >>> 0;
}

/** Number of addresses in a prefix of this length. */
export function sizeOf(prefix: number): number {
  return 2 ** (32 - prefix);
}

/**
 * Parses `a.b.c.d/n`. With `strict`, host bits must be zero; otherwise they
 * are masked off. Returns null if `s` is not a CIDR.
 */
export function parseCidr(s: string, strict = false): Cidr | null {
  const slash = s.indexOf('/');
  if (slash < 0) return null;
  const ip = parseIp(s.slice(0, slash));
  const pstr = s.slice(slash + 1).trim();
  // Like octets, no leading zeros: "/08" is as suspicious as "010".
  if (ip === null || !/^(0|[1-9]\d?)$/.test(pstr)) return null;
  const prefix = Number(pstr);
  if (prefix > 32) return null;
  const net = (ip & maskOf(prefix)) >>> 0;
  if (strict && net !== ip) return null;
  return { ip: net, prefix };
}

export function formatCidr(c: Cidr): string {
  return `${formatIp(c.ip)}/${c.prefix}`;
}

export function cidrEquals(a: Cidr, b: Cidr): boolean {
  return a.ip === b.ip && a.prefix === b.prefix;
}

export function contains(c: Cidr, ip: number): boolean {
  return ((ip & maskOf(c.prefix)) >>> 0) === c.ip;
}

/** True if `inner` lies wholly within `outer`. */
export function containsCidr(outer: Cidr, inner: Cidr): boolean {
  return inner.prefix >= outer.prefix && contains(outer, inner.ip);
}

export function overlaps(a: Cidr, b: Cidr): boolean {
  return containsCidr(a, b) || containsCidr(b, a);
}

/** Last address of the block (broadcast for prefixes < 31). */
export function lastIp(c: Cidr): number {
  return (c.ip + sizeOf(c.prefix) - 1) >>> 0;
}

/** True if `ip` is aligned to a block of `prefix` length. */
export function isAligned(ip: number, prefix: number): boolean {
  return ((ip & maskOf(prefix)) >>> 0) === ip >>> 0;
}

/** The first host address of a block: what a bridge or `docker --bip` takes. */
export function firstHost(c: Cidr): number {
  return (c.ip + 1) >>> 0;
}

/** Subnet key form used in etcd: `10.0.5.0-24`. */
export function cidrToKey(c: Cidr): string {
  return `${formatIp(c.ip)}-${c.prefix}`;
}

export function keyToCidr(s: string): Cidr | null {
  const dash = s.lastIndexOf('-');
  if (dash < 0) return null;
  const c = parseCidr(`${s.slice(0, dash)}/${s.slice(dash + 1)}`, true);
  // Only the canonical spelling: " 10.0.5.0-24" must not name the same
  // subnet as "10.0.5.0-24", or two keys could hold one subnet.
  return c !== null && cidrToKey(c) === s ? c : null;
}

/** Count of subnets of length `subnetLen` in [min, max] (both subnet addresses). */
export function subnetCount(min: number, max: number, subnetLen: number): number {
  if (max < min) return 0;
  return Math.floor((max - min) / sizeOf(subnetLen)) + 1;
}

/** The i-th subnet of length `subnetLen` starting at `min`. */
export function nthSubnet(min: number, subnetLen: number, i: number): Cidr {
  return { ip: (min + i * sizeOf(subnetLen)) >>> 0, prefix: subnetLen };
}
