/**
 * IPv6 address and CIDR math (pure), the 128-bit sibling of ipv4.ts.
 * Addresses are unsigned 128-bit integers held in bigints; every result is
 * masked to 128 bits, so comparisons and table keys never see a negative or
 * an overlong value. Text out is RFC 5952's canonical form (lower case, no
 * leading zeros, the longest run of two or more zero groups as `::`, the
 * first such run on a tie); there is no dotted-quad tail, as in Go's
 * formatting of non-mapped addresses, which is what flannel's lease keys use.
 */

export interface Cidr6 {
  /** Network address (host bits are zero for a canonical Cidr6). */
  readonly ip: bigint;
  /** Prefix length, 0..128. */
  readonly prefix: number;
}

export const ALL_ONES = (1n << 128n) - 1n;

const HEXGROUP = /^[0-9a-fA-F]{1,4}$/;
const DOTTED = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/;

function parseDotted(s: string): bigint | null {
  const m = DOTTED.exec(s);
  if (!m) return null;
  let v = 0n;
  for (let i = 1; i <= 4; i++) {
    const part = m[i] as string;
    if (part.length > 1 && part.startsWith('0')) return null;
    const o = Number(part);
    if (o > 255) return null;
    v = (v << 8n) | BigInt(o);
  }
  return v;
}

/** Groups of one side of `::` (or of a whole address); a dotted-quad tail counts as two. */
function parseGroups(s: string, allowDotted: boolean): bigint[] | null {
  if (s === '') return [];
  const parts = s.split(':');
  const out: bigint[] = [];
  for (let i = 0; i < parts.length; i++) {
    const p = parts[i] as string;
    if (allowDotted && i === parts.length - 1 && p.includes('.')) {
      const v4 = parseDotted(p);
      if (v4 === null) return null;
      out.push(v4 >> 16n, v4 & 0xffffn);
      continue;
    }
    if (!HEXGROUP.test(p)) return null;
    out.push(BigInt(`0x${p}`));
  }
  return out;
}

/**
 * Parses IPv6 text (`fd42:42::5`, `::`, `::ffff:198.18.0.1`, any case);
 * returns null if `s` is not one. No zone (`%eth0`), no brackets, no spaces.
 */
export function parseIp6(s: string): bigint | null {
  if (s.length < 2 || s.length > 45 || !/^[0-9a-fA-F:.]+$/.test(s)) return null;
  const dbl = s.indexOf('::');
  let groups: bigint[];
  if (dbl < 0) {
    const g = parseGroups(s, true);
    if (g === null || g.length !== 8) return null;
    groups = g;
  } else {
    if (s.indexOf('::', dbl + 1) >= 0) return null;
    const head = parseGroups(s.slice(0, dbl), false);
    const tail = parseGroups(s.slice(dbl + 2), true);
    if (head === null || tail === null || head.length + tail.length > 7) return null;
    groups = [...head, ...new Array<bigint>(8 - head.length - tail.length).fill(0n), ...tail];
  }
  let v = 0n;
  for (const g of groups) v = (v << 16n) | g;
  return v;
}

/** RFC 5952 canonical text of an address. */
export function formatIp6(ip: bigint): string {
  const v = ip & ALL_ONES;
  const groups: number[] = [];
  for (let i = 7; i >= 0; i--) groups.push(Number((v >> BigInt(i * 16)) & 0xffffn));
  // The longest run of zero groups (length >= 2), the first one on a tie.
  let bestAt = -1;
  let bestLen = 1;
  for (let i = 0; i < 8; ) {
    if (groups[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && groups[j] === 0) j++;
    if (j - i > bestLen) {
      bestAt = i;
      bestLen = j - i;
    }
    i = j;
  }
  const hex = (g: number[]): string => g.map((x) => x.toString(16)).join(':');
  if (bestAt < 0) return hex(groups);
  return `${hex(groups.slice(0, bestAt))}::${hex(groups.slice(bestAt + bestLen))}`;
}

export function maskOf6(prefix: number): bigint {
  return prefix === 0 ? 0n : (ALL_ONES << BigInt(128 - prefix)) & ALL_ONES;
}

/** Number of addresses in a prefix of this length. */
export function sizeOf6(prefix: number): bigint {
  return 1n << BigInt(128 - prefix);
}

/**
 * Parses `addr/n`. With `strict`, host bits must be zero; otherwise they are
 * masked off. Returns null if `s` is not an IPv6 CIDR.
 */
export function parseCidr6(s: string, strict = false): Cidr6 | null {
  const slash = s.indexOf('/');
  if (slash < 0) return null;
  const ip = parseIp6(s.slice(0, slash));
  const pstr = s.slice(slash + 1);
  if (ip === null || !/^(0|[1-9]\d{0,2})$/.test(pstr)) return null;
  const prefix = Number(pstr);
  if (prefix > 128) return null;
  const net = ip & maskOf6(prefix);
  if (strict && net !== ip) return null;
  return { ip: net, prefix };
}

export function formatCidr6(c: Cidr6): string {
  return `${formatIp6(c.ip)}/${c.prefix}`;
}

export function cidr6Equals(a: Cidr6, b: Cidr6): boolean {
  return a.ip === b.ip && a.prefix === b.prefix;
}

export function contains6(c: Cidr6, ip: bigint): boolean {
  return (ip & maskOf6(c.prefix)) === c.ip;
}

/** True if `inner` lies wholly within `outer`. */
export function containsCidr6(outer: Cidr6, inner: Cidr6): boolean {
  return inner.prefix >= outer.prefix && contains6(outer, inner.ip);
}

export function overlaps6(a: Cidr6, b: Cidr6): boolean {
  return containsCidr6(a, b) || containsCidr6(b, a);
}

/** Last address of the block. */
export function lastIp6(c: Cidr6): bigint {
  return (c.ip + sizeOf6(c.prefix) - 1n) & ALL_ONES;
}

/** True if `ip` is aligned to a block of `prefix` length. */
export function isAligned6(ip: bigint, prefix: number): boolean {
  return (ip & maskOf6(prefix)) === ip;
}

/** The first host address of a block (`::1` of a /64): what a bridge takes. */
export function firstHost6(c: Cidr6): bigint {
  return (c.ip + 1n) & ALL_ONES;
}

/** Subnet key form of flannel's lease keys: `fd42:42:0:5::-64`. */
export function cidr6ToKey(c: Cidr6): string {
  return `${formatIp6(c.ip)}-${c.prefix}`;
}

/** The canonical key form only, so that two spellings never name one subnet. */
export function keyToCidr6(s: string): Cidr6 | null {
  const dash = s.lastIndexOf('-');
  if (dash < 0) return null;
  const c = parseCidr6(`${s.slice(0, dash)}/${s.slice(dash + 1)}`, true);
  return c !== null && cidr6ToKey(c) === s ? c : null;
}

/** Count of subnets of length `subnetLen` in [min, max] (both subnet addresses). */
export function subnetCount6(min: bigint, max: bigint, subnetLen: number): bigint {
  if (max < min) return 0n;
  return (max - min) / sizeOf6(subnetLen) + 1n;
}

/** The i-th subnet of length `subnetLen` starting at `min`. */
export function nthSubnet6(min: bigint, subnetLen: number, i: bigint): Cidr6 {
  return { ip: (min + i * sizeOf6(subnetLen)) & ALL_ONES, prefix: subnetLen };
}

/** Index of the subnet of length `subnetLen` that holds `ip`, counted from `min` (may be negative). */
export function subnetIndex6(min: bigint, subnetLen: number, ip: bigint): bigint {
  const d = ip - min;
  const step = sizeOf6(subnetLen);
  // Floor division (bigint division truncates towards zero).
  return d >= 0n ? d / step : -((-d + step - 1n) / step);
}

const NOT_GLOBAL: readonly Cidr6[] = [
  { ip: 0n, prefix: 127 }, // :: and ::1
  { ip: 0xfe80n << 112n, prefix: 10 }, // link-local
  { ip: 0xffn << 120n, prefix: 8 }, // multicast
  { ip: 0xffffn << 32n, prefix: 96 }, // IPv4-mapped
];

/** Whether an address can be another host's destination: not unspecified, loopback, link-local, multicast or IPv4-mapped. */
export function isGlobalIpv6(ip: bigint): boolean {
  return !NOT_GLOBAL.some((c) => contains6(c, ip));
}

/** The same, for text: false when `s` is not IPv6. */
export function isGlobalIpv6Text(s: string): boolean {
  const ip = parseIp6(s);
  return ip !== null && isGlobalIpv6(ip);
}

/**
 * A uniform-enough random integer in [0, n) from `random` ([0, 1), as
 * Math.random): 32 bits per call, 64 bits more than n needs so that the
 * modulo bias is below 2^-64. Always terminates, even with a constant
 * `random` (as tests use).
 */
export function randomBelow(n: bigint, random: () => number = Math.random): bigint {
  if (n <= 1n) return 0n;
  const bits = n.toString(2).length + 64;
  let v = 0n;
  for (let have = 0; have < bits; have += 32) {
    v = (v << 32n) | BigInt(Math.floor(random() * 2 ** 32) >>> 0);
  }
  return v % n;
}
