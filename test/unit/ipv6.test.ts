/**
 * src/ip/ipv6.ts (128-bit prefix math) and the IPv6 allocator: fixed cases,
 * and property tests over seeded random addresses with independent oracles
 * (the WHATWG URL parser's IPv6 serialiser, which compresses as RFC 5952 does).
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import {
  ALL_ONES,
  cidr6Equals,
  cidr6ToKey,
  contains6,
  containsCidr6,
  firstHost6,
  formatCidr6,
  formatIp6,
  isAligned6,
  isGlobalIpv6,
  keyToCidr6,
  lastIp6,
  maskOf6,
  nthSubnet6,
  overlaps6,
  parseCidr6,
  parseIp6,
  randomBelow,
  sizeOf6,
  subnetCount6,
  subnetIndex6,
  type Cidr6,
} from '../../src/ip/ipv6';
import { pickFreeSubnet6, rangeSize6, subnetAllowed6 } from '../../src/subnet/allocator';
import type { Ipv6NetworkConfig } from '../../src/config';

/** Deterministic PRNG (mulberry32) so that a failing property replays. */
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** A random address with runs of zero groups (what makes `::` interesting). */
function randomAddr(r: () => number): bigint {
  let v = 0n;
  for (let g = 0; g < 8; g++) {
    const x = r();
    const group = x < 0.45 ? 0 : x < 0.55 ? 1 : Math.floor(r() * 0x10000);
    v = (v << 16n) | BigInt(group);
  }
  return v;
}

/** Oracle: the URL parser's serialisation of an IPv6 host (RFC 5952 compression, lower case). */
const urlForm = (s: string): string => new URL(`http://[${s}]/`).hostname.slice(1, -1);

const c6 = (s: string): Cidr6 => {
  const c = parseCidr6(s, true);
  assert.ok(c, s);
  return c;
};

describe('parseIp6 / formatIp6', () => {
  it('parses the usual forms', () => {
    assert.equal(parseIp6('::'), 0n);
    assert.equal(parseIp6('::1'), 1n);
    assert.equal(parseIp6('fd42:42::5'), (0xfd42n << 112n) | (0x42n << 96n) | 5n);
    assert.equal(parseIp6('FD42:0042:0:0:0:0:0:5'), parseIp6('fd42:42::5'), 'case and leading zeros');
    assert.equal(parseIp6('1:2:3:4:5:6:7::'), parseIp6('1:2:3:4:5:6:7:0'), ':: may stand for one group');
    assert.equal(parseIp6('::ffff:198.18.0.1'), (0xffffn << 32n) | 0xc6120001n);
    assert.equal(parseIp6('ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff'), ALL_ONES);
  });
  it('rejects what is not an address', () => {
    for (const s of ['', ':', ':::', '1::2::3', '1:2:3:4:5:6:7:8:9', '1:2:3:4:5:6:7', '12345::', 'g::', 'fe80::1%eth0', '[::1]', ' ::1', '::1 ',
      '1.2.3.4', '::256.0.0.1', '::01.2.3.4', '1.2.3.4::', ':1::', '1::2:', '1:2:3:4:5:6:7:8::', '::1:2:3:4:5:6:7:8']) {
      assert.equal(parseIp6(s), null, s);
    }
  });
  it('formats RFC 5952: lower case, no leading zeros, the longest zero run, the first on a tie, never one group', () => {
    const cases: [string, string][] = [
      ['0:0:0:0:0:0:0:0', '::'],
      ['0:0:0:0:0:0:0:1', '::1'],
      ['2001:db8:0:0:0:0:2:1', '2001:db8::2:1'],
      ['2001:db8:0:1:1:1:1:1', '2001:db8:0:1:1:1:1:1'],
      ['2001:0:0:1:0:0:0:1', '2001:0:0:1::1'],
      ['2001:db8:0:0:1:0:0:1', '2001:db8::1:0:0:1'],
      ['FD42:42:0:5:0:0:0:0', 'fd42:42:0:5::'],
      ['1:0:0:0:0:0:0:0', '1::'],
    ];
    for (const [i, o] of cases) assert.equal(formatIp6(parseIp6(i) as bigint), o, i);
  });
  it('property: format agrees with the URL serialiser and round-trips (2000 random addresses)', () => {
    const r = prng(6);
    for (let n = 0; n < 2000; n++) {
      const v = randomAddr(r);
      const s = formatIp6(v);
      assert.equal(parseIp6(s), v, s);
      assert.equal(s, urlForm(s), 'canonical');
      assert.equal(formatIp6(parseIp6(urlForm(s)) as bigint), s);
    }
  });
});

describe('IPv6 prefixes', () => {
  it('masks, sizes, CIDRs', () => {
    assert.equal(maskOf6(0), 0n);
    assert.equal(maskOf6(128), ALL_ONES);
    assert.equal(maskOf6(64), ALL_ONES ^ ((1n << 64n) - 1n));
    assert.equal(sizeOf6(64), 1n << 64n);
    assert.deepEqual(parseCidr6('fd42:42::5/48'), c6('fd42:42::/48'), 'host bits masked off');
    assert.equal(parseCidr6('fd42:42::5/48', true), null, 'strict: no host bits');
    for (const s of ['fd42::', 'fd42::/129', 'fd42::/-1', 'fd42::/048', 'fd42::/4.8', '10.0.0.0/8', 'fd42::/']) assert.equal(parseCidr6(s), null, s);
    assert.equal(formatCidr6(c6('fd42:42:0:5::/64')), 'fd42:42:0:5::/64');
    assert.ok(cidr6Equals(c6('fd00::/8'), c6('fd00::/8')));
    assert.ok(!cidr6Equals(c6('fd00::/8'), c6('fd00::/9')));
  });
  it('contains, overlaps, last and first host, alignment', () => {
    const net = c6('fd42:42::/48');
    assert.ok(contains6(net, parseIp6('fd42:42:0:ffff::1') as bigint));
    assert.ok(!contains6(net, parseIp6('fd42:43::') as bigint));
    assert.ok(containsCidr6(net, c6('fd42:42:0:5::/64')));
    assert.ok(!containsCidr6(c6('fd42:42:0:5::/64'), net));
    assert.ok(overlaps6(net, c6('fd42:42:0:5::/64')) && overlaps6(c6('fd42:42:0:5::/64'), net));
    assert.ok(!overlaps6(c6('fd42:42:0:5::/64'), c6('fd42:42:0:6::/64')));
    assert.equal(formatIp6(lastIp6(net)), 'fd42:42:0:ffff:ffff:ffff:ffff:ffff');
    assert.equal(formatIp6(firstHost6(c6('fd42:42:0:5::/64'))), 'fd42:42:0:5::1');
    assert.ok(isAligned6(parseIp6('fd42:42:0:5::') as bigint, 64));
    assert.ok(!isAligned6(parseIp6('fd42:42:0:5::1') as bigint, 64));
    assert.equal(formatIp6(lastIp6(c6('::/0'))), 'ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff');
  });
  it('keys in flannel\'s form, canonical spelling only', () => {
    assert.equal(cidr6ToKey(c6('fd42:42:0:5::/64')), 'fd42:42:0:5::-64');
    assert.deepEqual(keyToCidr6('fd42:42:0:5::-64'), c6('fd42:42:0:5::/64'));
    for (const s of ['fd42:42:0:5:0:0:0:0-64', 'FD42:42:0:5::-64', 'fd42:42:0:5::1-64', 'fd42:42:0:5::-064', 'fd42:42:0:5::', 'fd42:42:0:5::/64']) {
      assert.equal(keyToCidr6(s), null, s);
    }
  });
  it('nth subnet, counts and indexes, across the 64-bit boundary', () => {
    const min = parseIp6('fd42:42::') as bigint;
    assert.equal(subnetCount6(min, min + 5n * sizeOf6(64), 64), 6n);
    assert.equal(subnetCount6(min, min - 1n, 64), 0n);
    assert.equal(subnetCount6(0n, lastIp6(c6('::/0')) - sizeOf6(124) + 1n, 124), 1n << 124n);
    assert.equal(formatCidr6(nthSubnet6(min, 64, 5n)), 'fd42:42:0:5::/64');
    assert.equal(formatCidr6(nthSubnet6(min, 124, 1n)), 'fd42:42::10/124');
    assert.equal(subnetIndex6(min, 64, parseIp6('fd42:42:0:5::77') as bigint), 5n);
    assert.equal(subnetIndex6(min, 64, min - 1n), -1n, 'floor, not truncation');
  });
  it('property: nthSubnet6 and subnetIndex6 invert each other; subnets are aligned and inside', () => {
    const r = prng(7);
    for (let n = 0; n < 500; n++) {
      const len = 1 + Math.floor(r() * 124);
      const base = randomAddr(r) & maskOf6(len);
      const i = randomBelow(1n << 20n, r);
      if (base + i * sizeOf6(len) > ALL_ONES) continue; // past the top of the address space
      const s = nthSubnet6(base, len, i);
      assert.equal(subnetIndex6(base, len, s.ip), i);
      assert.ok(isAligned6(s.ip, len));
      assert.ok(contains6(s, s.ip + sizeOf6(len) - 1n));
    }
  });
  it('randomBelow stays in range, terminates with a constant source, and spreads', () => {
    for (const k of [0.0, 0.5, 0.999999]) {
      for (const n of [1n, 2n, 3n, 1000n, (1n << 123n) + 7n]) {
        const v = randomBelow(n, () => k);
        assert.ok(v >= 0n && v < n);
      }
    }
    const r = prng(8);
    const seen = new Set<bigint>();
    for (let n = 0; n < 300; n++) seen.add(randomBelow(1n << 80n, r) >> 72n);
    assert.ok(seen.size > 150, `top byte of 300 draws took ${seen.size} values`);
  });
  it('global addresses', () => {
    for (const s of ['2001:2::1', 'fd42::1', '2a00:1450::1']) assert.ok(isGlobalIpv6(parseIp6(s) as bigint), s);
    for (const s of ['::', '::1', 'fe80::1', 'ff02::1', '::ffff:10.0.0.1']) assert.ok(!isGlobalIpv6(parseIp6(s) as bigint), s);
  });
});

describe('IPv6 allocation', () => {
  const cfg = (net: string, len: number, min?: string, max?: string): Ipv6NetworkConfig => {
    const network = c6(net);
    return {
      network,
      subnetLen: len,
      subnetMin: min ? (parseIp6(min) as bigint) : network.ip,
      subnetMax: max ? (parseIp6(max) as bigint) : lastIp6(network) - sizeOf6(len) + 1n,
    };
  };
  it('picks from a range of 2^60 subnets without listing it', () => {
    const c = cfg('f000::/4', 64);
    assert.equal(rangeSize6(c), 1n << 60n);
    const r = prng(9);
    const s = pickFreeSubnet6(c, [], r);
    assert.ok(s && subnetAllowed6(c, s));
  });
  it('never picks a taken block, including one of another length, and reports a full range', () => {
    const c = cfg('fd42:42::/60', 64); // 16 subnets
    const taken = [c6('fd42:42:0:0::/64'), c6('fd42:42:0:4::/62'), c6('fd42:42:0:f::/64'), c6('fd42:43::/64')];
    const r = prng(10);
    const seen = new Set<string>();
    for (let n = 0; n < 400; n++) {
      const s = pickFreeSubnet6(c, taken, r);
      assert.ok(s);
      assert.ok(subnetAllowed6(c, s));
      assert.ok(!taken.some((t) => overlaps6(t, s)), formatCidr6(s));
      seen.add(formatCidr6(s));
    }
    assert.equal(seen.size, 16 - 1 - 4 - 1, 'every free subnet, and only those, is picked');
    const all = Array.from({ length: 16 }, (_, i) => nthSubnet6(c.subnetMin, 64, BigInt(i)));
    assert.equal(pickFreeSubnet6(c, all, r), null);
    assert.equal(pickFreeSubnet6(c, [c6('fd42:42::/48')], r), null, 'one covering block');
  });
  it('honours IPv6SubnetMin/Max', () => {
    const c = cfg('fd42:42::/48', 64, 'fd42:42:0:10::', 'fd42:42:0:12::');
    assert.equal(rangeSize6(c), 3n);
    const r = prng(11);
    for (let n = 0; n < 50; n++) {
      const s = pickFreeSubnet6(c, [c6('fd42:42:0:11::/64')], r) as Cidr6;
      assert.ok(['fd42:42:0:10::/64', 'fd42:42:0:12::/64'].includes(formatCidr6(s)), formatCidr6(s));
    }
    assert.ok(!subnetAllowed6(c, c6('fd42:42:0:13::/64')));
    assert.ok(!subnetAllowed6(c, c6('fd42:42:0:10::/65')));
  });
  it('property: with random taken sets the pick is free, aligned and in range', () => {
    const r = prng(12);
    for (let n = 0; n < 200; n++) {
      const c = cfg('fd42:42::/56', 64); // 256 subnets
      const taken: Cidr6[] = [];
      const k = Math.floor(r() * 300);
      for (let j = 0; j < k; j++) taken.push(nthSubnet6(c.subnetMin, 62 + Math.floor(r() * 3), randomBelow(256n, r) >> 2n));
      const s = pickFreeSubnet6(c, taken, r);
      const free = Array.from({ length: 256 }, (_, i) => nthSubnet6(c.subnetMin, 64, BigInt(i))).filter((x) => !taken.some((t) => overlaps6(t, x)));
      if (free.length === 0) assert.equal(s, null);
      else assert.ok(s && free.some((f) => cidr6Equals(f, s)));
    }
  });
});
