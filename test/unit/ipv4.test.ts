import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import {
  cidrEquals,
  cidrToKey,
  contains,
  containsCidr,
  firstHost,
  formatCidr,
  formatIp,
  isAligned,
  keyToCidr,
  lastIp,
  maskOf,
  nthSubnet,
  overlaps,
  parseCidr,
  parseIp,
  sizeOf,
  subnetCount,
} from '../../src/ip/ipv4';

/** Independent reference: dotted quad from four octets. */
const ip = (a: number, b: number, c: number, d: number): number => ((a * 256 + b) * 256 + c) * 256 + d;
const cidr = (s: string) => {
  const c = parseCidr(s);
  assert.ok(c, s);
  return c;
};

describe('parseIp / formatIp', () => {
  it('parses dotted quads to unsigned 32-bit numbers', () => {
    assert.equal(parseIp('0.0.0.0'), 0);
    assert.equal(parseIp('10.0.5.1'), ip(10, 0, 5, 1));
    assert.equal(parseIp('192.168.1.254'), ip(192, 168, 1, 254));
    assert.equal(parseIp('255.255.255.255'), 0xffffffff);
    assert.equal(parseIp('128.0.0.0'), 2 ** 31, 'no sign bit trouble');
  });
  it('round-trips through formatIp', () => {
    for (const s of ['0.0.0.0', '1.2.3.4', '10.0.0.1', '127.255.0.1', '128.0.0.0', '198.18.0.250', '255.255.255.255']) {
      const v = parseIp(s);
      assert.notEqual(v, null, s);
      assert.equal(formatIp(v as number), s);
    }
  });
  it('formats negative (signed) inputs as their unsigned address', () => {
    assert.equal(formatIp(-1), '255.255.255.255');
    assert.equal(formatIp(0x80000000 | 0), '128.0.0.0');
  });
  it('rejects anything that is not a canonical dotted quad', () => {
    for (const s of ['', '1.2.3', '1.2.3.4.5', '256.0.0.1', '1.2.3.256', '999.1.1.1', '01.2.3.4', '1.2.3.04', '1.02.3.4', '00.0.0.0',
      '1..2.3', '1.2.3.', '.1.2.3', 'a.b.c.d', '1.2.3.4/24', '-1.2.3.4', '1.2.3.+4', '0x1.2.3.4', '1.2.3.4a', '::1', '1234.1.1.1', '1 .2.3.4']) {
      assert.equal(parseIp(s), null, JSON.stringify(s));
    }
  });
});

describe('masks and sizes', () => {
  it('maskOf covers 0..32', () => {
    assert.equal(maskOf(0), 0);
    assert.equal(maskOf(1), 0x80000000);
    assert.equal(maskOf(8), 0xff000000);
    assert.equal(maskOf(24), 0xffffff00);
    assert.equal(maskOf(31), 0xfffffffe);
    assert.equal(maskOf(32), 0xffffffff);
    for (let p = 0; p <= 32; p++) {
      const m = maskOf(p);
      assert.ok(m >= 0, `mask /${p} is unsigned`);
      // p leading ones followed by zeros.
      assert.equal(m.toString(2).padStart(32, '0'), '1'.repeat(p) + '0'.repeat(32 - p));
    }
  });
  it('sizeOf counts addresses', () => {
    assert.equal(sizeOf(32), 1);
    assert.equal(sizeOf(24), 256);
    assert.equal(sizeOf(16), 65536);
    assert.equal(sizeOf(0), 2 ** 32);
  });
});

describe('parseCidr / formatCidr', () => {
  it('parses and formats', () => {
    assert.deepEqual(parseCidr('10.0.0.0/16'), { ip: ip(10, 0, 0, 0), prefix: 16 });
    assert.deepEqual(parseCidr('0.0.0.0/0'), { ip: 0, prefix: 0 });
    assert.deepEqual(parseCidr('255.255.255.255/32'), { ip: 0xffffffff, prefix: 32 });
    assert.equal(formatCidr(cidr('172.16.0.0/12')), '172.16.0.0/12');
    assert.equal(formatCidr(cidr('10.0.5.0/24')), '10.0.5.0/24');
  });
  it('masks host bits, or rejects them when strict', () => {
    assert.deepEqual(parseCidr('10.0.5.7/24'), { ip: ip(10, 0, 5, 0), prefix: 24 });
    assert.deepEqual(parseCidr('255.255.255.255/0'), { ip: 0, prefix: 0 });
    assert.equal(parseCidr('10.0.5.7/24', true), null);
    assert.equal(parseCidr('10.0.0.1/16', true), null);
    assert.deepEqual(parseCidr('10.0.5.0/24', true), { ip: ip(10, 0, 5, 0), prefix: 24 });
    assert.deepEqual(parseCidr('10.0.5.7/32', true), { ip: ip(10, 0, 5, 7), prefix: 32 });
  });
  it('rejects malformed CIDRs', () => {
    for (const s of ['10.0.0.0', '10.0.0.0/', '/24', '10.0.0.0/33', '10.0.0.0/99', '10.0.0.0/-1', '10.0.0.0/100', '10.0.0.0/2a',
      '10.0.0/8', '256.0.0.0/8', '010.0.0.0/8', '10.0.0.0/8/8', '10.0.0.0/08', '10.0.0.0/00', '10.0.0.0/+8', 'x/8']) {
      assert.equal(parseCidr(s), null, s);
    }
  });
  it('cidrEquals compares network and prefix', () => {
    assert.ok(cidrEquals(cidr('10.0.0.0/8'), cidr('10.1.2.3/8')));
    assert.ok(!cidrEquals(cidr('10.0.0.0/8'), cidr('10.0.0.0/9')));
    assert.ok(!cidrEquals(cidr('10.0.0.0/24'), cidr('10.0.1.0/24')));
  });
});

describe('containment, overlap, alignment', () => {
  it('contains', () => {
    const n = cidr('10.0.0.0/16');
    assert.ok(contains(n, ip(10, 0, 0, 0)));
    assert.ok(contains(n, ip(10, 0, 255, 255)));
    assert.ok(!contains(n, ip(10, 1, 0, 0)));
    assert.ok(!contains(n, ip(9, 255, 255, 255)));
    assert.ok(contains(cidr('0.0.0.0/0'), 0xffffffff));
    assert.ok(contains(cidr('0.0.0.0/0'), 0));
    assert.ok(contains(cidr('128.0.0.0/1'), 0xffffffff), 'high addresses (sign bit set)');
    assert.ok(!contains(cidr('128.0.0.0/1'), ip(127, 255, 255, 255)));
    assert.ok(contains(cidr('255.255.255.255/32'), 0xffffffff));
    assert.ok(!contains(cidr('255.255.255.255/32'), 0xfffffffe));
  });
  it('containsCidr and overlaps', () => {
    const n = cidr('10.0.0.0/16');
    assert.ok(containsCidr(n, cidr('10.0.5.0/24')));
    assert.ok(containsCidr(n, n));
    assert.ok(!containsCidr(cidr('10.0.5.0/24'), n));
    assert.ok(!containsCidr(n, cidr('10.1.0.0/24')));
    assert.ok(overlaps(n, cidr('10.0.5.0/24')));
    assert.ok(overlaps(cidr('10.0.5.0/24'), n));
    assert.ok(!overlaps(cidr('10.0.5.0/24'), cidr('10.0.6.0/24')));
    assert.ok(overlaps(cidr('0.0.0.0/0'), cidr('255.255.255.255/32')));
  });
  it('isAligned', () => {
    assert.ok(isAligned(ip(10, 0, 5, 0), 24));
    assert.ok(!isAligned(ip(10, 0, 5, 1), 24));
    assert.ok(isAligned(ip(10, 0, 5, 128), 25));
    assert.ok(!isAligned(ip(10, 0, 5, 128), 24));
    assert.ok(isAligned(0, 0));
    assert.ok(!isAligned(1, 0));
    assert.ok(isAligned(0xffffffff, 32));
    assert.ok(isAligned(0xffffff00, 24), 'high addresses (sign bit set)');
    assert.ok(!isAligned(0xffffff80, 24));
  });
  it('lastIp and firstHost', () => {
    assert.equal(lastIp(cidr('10.0.5.0/24')), ip(10, 0, 5, 255));
    assert.equal(lastIp(cidr('10.0.0.0/16')), ip(10, 0, 255, 255));
    assert.equal(lastIp(cidr('0.0.0.0/0')), 0xffffffff);
    assert.equal(lastIp(cidr('255.255.255.0/24')), 0xffffffff);
    assert.equal(lastIp(cidr('1.2.3.4/32')), ip(1, 2, 3, 4));
    assert.equal(firstHost(cidr('10.0.5.0/24')), ip(10, 0, 5, 1));
    assert.equal(formatIp(firstHost(cidr('10.0.0.0/16'))), '10.0.0.1');
  });
});

describe('etcd key form', () => {
  it('formats 10.0.5.0/24 as 10.0.5.0-24 and back', () => {
    assert.equal(cidrToKey(cidr('10.0.5.0/24')), '10.0.5.0-24');
    assert.equal(cidrToKey(cidr('0.0.0.0/0')), '0.0.0.0-0');
    assert.deepEqual(keyToCidr('10.0.5.0-24'), { ip: ip(10, 0, 5, 0), prefix: 24 });
    assert.deepEqual(keyToCidr('255.255.255.255-32'), { ip: 0xffffffff, prefix: 32 });
    for (const s of ['10.0.0.0/8', '10.0.5.128/25', '192.168.0.0/30', '0.0.0.0/0']) {
      const c = cidr(s);
      assert.deepEqual(keyToCidr(cidrToKey(c)), c, s);
    }
  });
  it('rejects keys that are not a canonical subnet', () => {
    for (const s of ['', '10.0.5.0', '10.0.5.0/24', '10.0.5.1-24', '10.0.5.0-33', '10.0.5.0-', '-24', '10.0.5.0-24-1', 'x-24', '10.0.5.0_24',
      ' 10.0.5.0-24', '10.0.5.0-24 ', '10.0.5.0- 24', '10.0.5.0-024', '010.0.5.0-24']) {
      assert.equal(keyToCidr(s), null, s);
    }
  });
});

describe('subnetCount / nthSubnet', () => {
  it('counts subnets in [min, max]', () => {
    assert.equal(subnetCount(ip(10, 0, 0, 0), ip(10, 0, 255, 0), 24), 256);
    assert.equal(subnetCount(ip(10, 0, 5, 0), ip(10, 0, 5, 0), 24), 1);
    assert.equal(subnetCount(ip(10, 0, 6, 0), ip(10, 0, 5, 0), 24), 0);
    assert.equal(subnetCount(ip(10, 0, 0, 0), ip(10, 255, 255, 0), 24), 65536);
  });
  it('handles the whole address space', () => {
    // 0.0.0.0/0 cut in /24s: 2^24 subnets, the last at 255.255.255.0.
    assert.equal(subnetCount(0, ip(255, 255, 255, 0), 24), 2 ** 24);
    assert.equal(subnetCount(0, 0xffffffff, 32), 2 ** 32);
    assert.equal(subnetCount(0xffffffff, 0xffffffff, 32), 1);
    assert.equal(subnetCount(0, ip(128, 0, 0, 0), 1), 2);
    assert.equal(subnetCount(ip(255, 255, 255, 252), ip(255, 255, 255, 252), 30), 1);
  });
  it('nthSubnet steps by the subnet size', () => {
    const min = ip(10, 0, 0, 0);
    assert.equal(formatCidr(nthSubnet(min, 24, 0)), '10.0.0.0/24');
    assert.equal(formatCidr(nthSubnet(min, 24, 5)), '10.0.5.0/24');
    assert.equal(formatCidr(nthSubnet(min, 24, 255)), '10.0.255.0/24');
    assert.equal(formatCidr(nthSubnet(min, 26, 5)), '10.0.1.64/26');
    assert.equal(formatCidr(nthSubnet(0, 24, 2 ** 24 - 1)), '255.255.255.0/24');
    assert.equal(formatCidr(nthSubnet(0, 32, 2 ** 32 - 1)), '255.255.255.255/32');
    assert.equal(formatCidr(nthSubnet(ip(128, 0, 0, 0), 1, 0)), '128.0.0.0/1');
  });
  it('nthSubnet over [0, count) enumerates exactly [min, max]', () => {
    const min = ip(192, 168, 4, 0);
    const max = ip(192, 168, 7, 192);
    const n = subnetCount(min, max, 26);
    assert.equal(n, 16);
    const seen = new Set<string>();
    for (let i = 0; i < n; i++) {
      const c = nthSubnet(min, 26, i);
      assert.ok(c.ip >= min && c.ip <= max);
      assert.ok(isAligned(c.ip, 26));
      seen.add(formatCidr(c));
    }
    assert.equal(seen.size, n);
    assert.equal(nthSubnet(min, 26, n - 1).ip, max);
  });
});
