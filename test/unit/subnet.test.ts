import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { parseConfig } from '../../src/config';
import { formatCidr, parseCidr, parseIp } from '../../src/ip/ipv4';
import { pickFreeSubnet, rangeSize, subnetAllowed } from '../../src/subnet/allocator';
import { applyEvents, diffLeases, LeaseMap } from '../../src/subnet/diff';
import type { Lease } from '../../src/subnet/lease';
import { parseLeaseEntry } from '../../src/subnet/registry';
import { formatSubnetFile, parseSubnetFile } from '../../src/subnet/file';
import { backoffMs } from '../../src/util/backoff';

const cidr = (s: string) => parseCidr(s, true) ?? assert.fail(`bad cidr ${s}`);
const ip = (s: string) => parseIp(s) ?? assert.fail(`bad ip ${s}`);

function lease(subnet: string, pub: string, data: Record<string, unknown> = {}): Lease {
  return { subnet: cidr(subnet), publicIP: ip(pub), backendType: 'udp', backendData: data, expiresAt: null };
}

/** A deterministic [0,1) sequence so allocation tests are repeatable but not trivial. */
function lcg(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return s / 2 ** 32;
  };
}

describe('allocator', () => {
  const cfg = parseConfig('{"Network":"10.0.0.0/16","SubnetMin":"10.0.4.0","SubnetMax":"10.0.11.0"}');

  test('picks only allowed, untaken subnets and finds the last free one', () => {
    assert.equal(rangeSize(cfg), 8);
    const taken = ['10.0.4.0/24', '10.0.5.0/24', '10.0.6.0/24', '10.0.8.0/24', '10.0.9.0/24', '10.0.10.0/24', '10.0.11.0/24'].map(cidr);
    for (let seed = 1; seed < 50; seed++) {
      const p = pickFreeSubnet(cfg, taken, lcg(seed));
      assert.equal(p && formatCidr(p), '10.0.7.0/24');
    }
  });

  test('spreads picks over the free range (random, so simultaneous hosts rarely collide)', () => {
    const seen = new Set<string>();
    const rnd = lcg(7);
    for (let i = 0; i < 200; i++) {
      const p = pickFreeSubnet(cfg, [], rnd);
      assert.ok(p && subnetAllowed(cfg, p));
      seen.add(formatCidr(p));
    }
    assert.equal(seen.size, 8);
  });

  test('a full range returns null; a lease of another length blocks what it overlaps', () => {
    const all = Array.from({ length: 8 }, (_, i) => cidr(`10.0.${4 + i}.0/24`));
    assert.equal(pickFreeSubnet(cfg, all), null);
    const big = [cidr('10.0.4.0/22'), cidr('10.0.8.0/23'), cidr('10.0.10.0/24')]; // leaves 10.0.11.0 only
    for (let seed = 1; seed < 20; seed++) assert.equal(formatCidr(pickFreeSubnet(cfg, big, lcg(seed)) as never), '10.0.11.0/24');
  });

  test('subnetAllowed checks length, alignment and [Min, Max]', () => {
    assert.ok(subnetAllowed(cfg, cidr('10.0.4.0/24')));
    assert.ok(subnetAllowed(cfg, cidr('10.0.11.0/24')));
    assert.ok(!subnetAllowed(cfg, cidr('10.0.3.0/24')));
    assert.ok(!subnetAllowed(cfg, cidr('10.0.12.0/24')));
    assert.ok(!subnetAllowed(cfg, cidr('10.0.4.0/25')));
    assert.ok(!subnetAllowed(cfg, cidr('10.1.4.0/24')));
  });

  test('large ranges do not materialise the free list', () => {
    const wide = parseConfig('{"Network":"10.0.0.0/8","SubnetLen":30}');
    assert.equal(rangeSize(wide), 2 ** 22);
    const p = pickFreeSubnet(wide, [cidr('10.0.0.0/30')], lcg(3));
    assert.ok(p && subnetAllowed(wide, p) && formatCidr(p) !== '10.0.0.0/30');
  });
});

describe('lease diff', () => {
  test('a re-list after an outage yields exactly the changes', () => {
    const known: LeaseMap = new Map();
    applyEvents(known, diffLeases(known, [lease('10.0.1.0/24', '198.18.0.1'), lease('10.0.2.0/24', '198.18.0.2')]));
    assert.equal(known.size, 2);
    const ev = diffLeases(known, [lease('10.0.2.0/24', '198.18.0.2'), lease('10.0.3.0/24', '198.18.0.3')]);
    assert.deepEqual(ev.map((e) => `${e.type} ${formatCidr(e.lease.subnet)}`), ['removed 10.0.1.0/24', 'added 10.0.3.0/24']);
  });

  test('unchanged leases give no events; a moved PublicIP is removed then added', () => {
    const known: LeaseMap = new Map();
    applyEvents(known, diffLeases(known, [lease('10.0.1.0/24', '198.18.0.1')]));
    assert.deepEqual(diffLeases(known, [{ ...lease('10.0.1.0/24', '198.18.0.1'), expiresAt: 123 }]), []);
    const ev = diffLeases(known, [lease('10.0.1.0/24', '198.18.0.9')]);
    assert.deepEqual(ev.map((e) => `${e.type} ${formatCidr(e.lease.subnet)} ${e.lease.publicIP === ip('198.18.0.9') ? 'new' : 'old'}`), [
      'removed 10.0.1.0/24 old',
      'added 10.0.1.0/24 new',
    ]);
    const mac = diffLeases(known, [lease('10.0.1.0/24', '198.18.0.1', { VtepMAC: 'aa:bb:cc:dd:ee:ff' })]);
    assert.equal(mac.length, 2);
  });
});

describe('lease entries', () => {
  test('flannel-shaped values parse; bad ones say why', () => {
    const ok = parseLeaseEntry('10.0.5.0-24', '{"PublicIP":"198.18.0.5","BackendType":"vxlan","BackendData":{"VtepMAC":"aa:bb:cc:dd:ee:ff"}}', null);
    assert.ok('lease' in ok);
    assert.equal(formatCidr(ok.lease.subnet), '10.0.5.0/24');
    assert.equal(ok.lease.backendType, 'vxlan');
    assert.deepEqual(ok.lease.backendData, { VtepMAC: 'aa:bb:cc:dd:ee:ff' });
    const bad = (k: string, v: string): string => {
      const r = parseLeaseEntry(k, v, null);
      assert.ok('error' in r, `${k} ${v} should be rejected`);
      return r.error;
    };
    assert.match(bad('10.0.5.0-24', 'nope'), /not JSON/);
    assert.match(bad('10.0.5.0-24', '{"PublicIP":"300.1.1.1"}'), /PublicIP="300\.1\.1\.1": expected an IPv4 address/);
    assert.match(bad('10.0.5.1-24', '{"PublicIP":"198.18.0.5"}'), /not a subnet/);
    assert.match(bad('garbage', '{"PublicIP":"198.18.0.5"}'), /not a subnet/);
  });
});

describe('subnet file', () => {
  test('RUDDER_SUBNET is the first host address with the lease length; the text round-trips', () => {
    const text = formatSubnetFile({ network: cidr('10.0.0.0/16'), subnet: cidr('10.0.5.0/24'), mtu: 1472, ipMasq: false });
    assert.equal(text, 'RUDDER_NETWORK=10.0.0.0/16\nRUDDER_SUBNET=10.0.5.1/24\nRUDDER_MTU=1472\nRUDDER_IPMASQ=false\n');
    const env = parseSubnetFile(text, 'f').raw;
    assert.equal(env.get('RUDDER_SUBNET'), '10.0.5.1/24');
    assert.equal(env.get('RUDDER_MTU'), '1472');
    // The Network's first subnet: its bridge address is .1, not the network address.
    const first = formatSubnetFile({ network: cidr('10.0.0.0/16'), subnet: cidr('10.0.0.0/24'), mtu: 1450, ipMasq: true });
    assert.match(first, /^RUDDER_SUBNET=10\.0\.0\.1\/24$/m);
    assert.match(first, /^RUDDER_IPMASQ=true$/m);
  });
});

describe('backoff', () => {
  test('grows, is capped and jittered', () => {
    assert.equal(backoffMs(1, () => 0.5), 500);
    assert.equal(backoffMs(2, () => 0.5), 1000);
    assert.equal(backoffMs(30, () => 0.5), 10_000);
    assert.equal(backoffMs(30, () => 0), 5_000);
    assert.ok(backoffMs(30, () => 0.999) <= 15_000);
  });
});
