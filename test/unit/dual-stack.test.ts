/**
 * Issue 15's control plane: the IPv6 config keys, flannel's dual-stack and
 * IPv6-only lease keys and values, the subnet file with both families, and
 * what docker-opts, cni-config, leases and -public-ipv6 make of them.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { RudderError } from '../../src/errors';
import { configToJson, ipv4Enabled, parseConfig, validateConfig, type NetworkConfig } from '../../src/config';
import { formatCidr, parseCidr, parseIp, type Cidr } from '../../src/ip/ipv4';
import { formatCidr6, formatIp6, parseCidr6, parseIp6, type Cidr6 } from '../../src/ip/ipv6';
import { NO_IPV4, formatLeaseKey, leaseName, parseLeaseKey, sameAttrs, sameKey } from '../../src/subnet/lease';
import { leaseValue, parseLeaseEntry, subnetKey } from '../../src/subnet/registry';
import { formatSubnetFile, parseSubnetFile, subnetFileOf } from '../../src/subnet/file';
import { buildConfList } from '../../src/cni/config';
import { dockerOptions, leasesTable } from '../../src/cli/commands';
import { globalIpv6Of, resolvePublicIpv6 } from '../../src/iface';
import { leaseFits, leaseOwner } from '../../src/subnet/manager';
import { daemonFlags } from '../../src/cli/flags';

const c4 = (s: string): Cidr => parseCidr(s, true) as Cidr;
const c6 = (s: string): Cidr6 => parseCidr6(s, true) as Cidr6;
const DUAL = { Network: '10.42.0.0/16', EnableIPv6: true, IPv6Network: 'fd42:42::/48', IPv6SubnetLen: 64 };

function rejects(o: unknown, ...fragments: string[]): void {
  assert.throws(
    () => validateConfig(o),
    (e: unknown) => {
      assert.ok(e instanceof RudderError && e.code === 'E_CONFIG', String(e));
      for (const f of fragments) assert.ok(e.message.includes(f), `${JSON.stringify(e.message)} lacks ${JSON.stringify(f)}`);
      return true;
    },
    JSON.stringify(o),
  );
}

describe('config: IPv6 keys', () => {
  it('dual-stack with defaults spelled out, and printed back as a config meaning the same', () => {
    const c = validateConfig({ Network: '10.42.0.0/16', EnableIPv6: true, IPv6Network: 'fd42:42::/48' });
    assert.ok(ipv4Enabled(c));
    assert.ok(c.ipv6);
    assert.equal(c.ipv6.subnetLen, 64, 'IPv6SubnetLen defaults to 64');
    assert.equal(formatIp6(c.ipv6.subnetMin), 'fd42:42::');
    assert.equal(formatIp6(c.ipv6.subnetMax), 'fd42:42:0:ffff::');
    const j = configToJson(c);
    assert.deepEqual(j, {
      Network: '10.42.0.0/16',
      SubnetLen: 24,
      SubnetMin: '10.42.0.0',
      SubnetMax: '10.42.255.0',
      EnableIPv6: true,
      IPv6Network: 'fd42:42::/48',
      IPv6SubnetLen: 64,
      IPv6SubnetMin: 'fd42:42::',
      IPv6SubnetMax: 'fd42:42:0:ffff::',
      Backend: { Type: 'udp' },
    });
    assert.deepEqual(validateConfig(j), c);
  });
  it('IPv6-only (EnableIPv4 false): no IPv4 part, IPv4 keys ignored as flannel does', () => {
    const c = parseConfig('{"EnableIPv4":false,"EnableIPv6":true,"IPv6Network":"fd42:42::/48","IPv6SubnetLen":80}');
    assert.equal(ipv4Enabled(c), false);
    assert.equal(c.ipv6?.subnetLen, 80);
    assert.deepEqual(configToJson(c), {
      EnableIPv4: false,
      EnableIPv6: true,
      IPv6Network: 'fd42:42::/48',
      IPv6SubnetLen: 80,
      IPv6SubnetMin: 'fd42:42::',
      IPv6SubnetMax: 'fd42:42:0:ffff:ffff::',
      Backend: { Type: 'udp' },
    });
    assert.deepEqual(validateConfig(configToJson(c)), c);
    assert.doesNotThrow(() => validateConfig({ EnableIPv4: false, Network: 'garbage', EnableIPv6: true, IPv6Network: 'fd42::/48' }));
  });
  it('IPv4-only configs are the same object as before; IPv6 keys are ignored while EnableIPv6 is off', () => {
    const plain = validateConfig({ Network: '10.0.0.0/16' });
    assert.deepEqual(validateConfig({ Network: '10.0.0.0/16', EnableIPv4: true, EnableIPv6: false, IPv6Network: 'fd00::/48' }), plain);
    assert.equal('ipv6' in plain, false);
    assert.equal('enableIPv4' in plain, false);
  });
  it('rejects each bad IPv6 value naming the key, the value and the expected form', () => {
    rejects({ ...DUAL, EnableIPv6: 'yes' }, 'EnableIPv6="yes"', 'true or false');
    rejects({ ...DUAL, EnableIPv4: 1 }, 'EnableIPv4=1', 'true or false');
    rejects({ EnableIPv4: false }, 'EnableIPv4=false', 'at least one address family');
    rejects({ Network: '10.0.0.0/16', EnableIPv6: true }, 'IPv6Network', 'mandatory when EnableIPv6');
    rejects({ ...DUAL, IPv6Network: 42 }, 'IPv6Network=42', 'IPv6 CIDR string');
    rejects({ ...DUAL, IPv6Network: 'fd42:42::' }, 'IPv6Network="fd42:42::"', 'IPv6 CIDR such as');
    rejects({ ...DUAL, IPv6Network: '10.0.0.0/8' }, 'IPv6Network="10.0.0.0/8"', 'IPv6 CIDR');
    rejects({ ...DUAL, IPv6Network: 'fd42:42::1/48' }, 'IPv6Network="fd42:42::1/48"', 'no host bits set (fd42:42::/48)');
    rejects({ ...DUAL, IPv6Network: 'fd42::/124', IPv6SubnetLen: 124 }, 'IPv6Network="fd42::/124"', 'at most /123');
    rejects({ ...DUAL, IPv6SubnetLen: 48 }, 'IPv6SubnetLen=48', 'larger than the IPv6Network prefix (48)', 'at most 124');
    rejects({ ...DUAL, IPv6SubnetLen: 125 }, 'IPv6SubnetLen=125', 'at most 124');
    rejects({ ...DUAL, IPv6SubnetLen: 64.5 }, 'IPv6SubnetLen=64.5', 'integer');
    rejects({ Network: '10.42.0.0/16', EnableIPv6: true, IPv6Network: 'fd42:42:0:0:1::/80' }, 'IPv6SubnetLen=64', 'default 64 does not fit');
    rejects({ ...DUAL, IPv6SubnetMin: 'fd42:43::' }, 'IPv6SubnetMin="fd42:43::"', 'inside IPv6Network fd42:42::/48');
    rejects({ ...DUAL, IPv6SubnetMin: 'fd42:42::5' }, 'IPv6SubnetMin="fd42:42::5"', 'network address of a /64');
    rejects({ ...DUAL, IPv6SubnetMax: 'zz::' }, 'IPv6SubnetMax="zz::"', 'an IPv6 address such as "fd42:42:0:ffff::"');
    rejects({ ...DUAL, IPv6SubnetMax: 7 }, 'IPv6SubnetMax=7', 'IPv6 address string');
    rejects({ ...DUAL, IPv6SubnetMin: 'fd42:42:0:9::', IPv6SubnetMax: 'fd42:42:0:8::' }, 'IPv6SubnetMin="fd42:42:0:9::"', 'not above IPv6SubnetMax (fd42:42:0:8::)');
    rejects({ ...DUAL, IPv6Subnetlen: 64 }, 'IPv6Subnetlen', 'one of the keys', 'IPv6SubnetLen');
  });
});

describe('lease keys and values: flannel\'s forms', () => {
  it('formats and parses IPv4, dual-stack and IPv6-only keys', () => {
    const dual = { subnet: c4('10.42.5.0/24'), ipv6Subnet: c6('fd42:42:0:5::/64') };
    assert.equal(formatLeaseKey(dual), '10.42.5.0-24&fd42:42:0:5::-64');
    assert.equal(formatLeaseKey({ subnet: NO_IPV4, ipv6Subnet: c6('fd42:42:0:5::/64') }), '0.0.0.0-0&fd42:42:0:5::-64');
    assert.equal(formatLeaseKey({ subnet: c4('10.42.5.0/24') }), '10.42.5.0-24');
    assert.equal(subnetKey('/coreos.com/network', dual.subnet, dual.ipv6Subnet), '/coreos.com/network/subnets/10.42.5.0-24&fd42:42:0:5::-64');
    for (const k of ['10.42.5.0-24', '10.42.5.0-24&fd42:42:0:5::-64', '0.0.0.0-0&fd42:42:0:5::-64', '10.0.0.0-16&fd00::-48', '10.1.2.0-24&2001:db8:0:1::-64']) {
      const p = parseLeaseKey(k);
      assert.ok(p, k);
      assert.equal(formatLeaseKey(p), k);
    }
    assert.ok(sameKey(parseLeaseKey('10.42.5.0-24&fd42:42:0:5::-64')!, dual));
    assert.ok(!sameKey(parseLeaseKey('10.42.5.0-24')!, dual));
    assert.equal(leaseName(dual), '10.42.5.0/24 fd42:42:0:5::/64');
    assert.equal(leaseName({ subnet: NO_IPV4, ipv6Subnet: dual.ipv6Subnet }), 'fd42:42:0:5::/64');
  });
  it('refuses other spellings, so two keys never name one subnet', () => {
    for (const k of ['10.42.5.0-24&', '10.42.5.0-24&fd42:42:0:5:0:0:0:0-64', '10.42.5.0-24&FD42:42:0:5::-64', '10.42.5.0-24&fd42:42:0:5::1-64',
      '10.42.5.1-24&fd42:42:0:5::-64', '10.42.5.0-24&fd42:42:0:5::-64&x', '&fd42:42:0:5::-64', '1.0.0.0-0&fd42::-64', '10.42.5.0-24&::-0', 'fd42:42:0:5::-64']) {
      assert.equal(parseLeaseKey(k), null, k);
    }
  });
  it('writes flannel\'s value shape with IPv6 on, and the old shape without', () => {
    const v4 = leaseValue(parseIp('198.18.0.1')!, 'udp', { a: 1 }, 'host-1');
    assert.equal(JSON.stringify(v4), '{"PublicIP":"198.18.0.1","BackendType":"udp","BackendData":{"a":1},"RudderHostID":"host-1"}');
    const dual = leaseValue(parseIp('198.18.0.1')!, 'vxlan', { VtepMAC: 'x' }, undefined, { publicIPv6: parseIp6('2001:2::1')!, backendV6Data: { VtepMAC: 'y' } });
    assert.equal(JSON.stringify(dual), '{"PublicIP":"198.18.0.1","PublicIPv6":"2001:2::1","BackendType":"vxlan","BackendData":{"VtepMAC":"x"},"BackendV6Data":{"VtepMAC":"y"}}');
    const none = leaseValue(parseIp('198.18.0.1')!, 'udp', {}, undefined, { publicIPv6: null, backendV6Data: {} });
    assert.equal(JSON.stringify(none), '{"PublicIP":"198.18.0.1","PublicIPv6":null,"BackendType":"udp","BackendData":{},"BackendV6Data":{}}');
  });
  it('reads what flanneld writes (dual-stack, IPv6-only, PublicIPv6 null) and rejects a bad PublicIPv6', () => {
    const dual = parseLeaseEntry('10.42.5.0-24&fd42:42:0:5::-64', '{"PublicIP":"198.18.0.2","PublicIPv6":"2001:2::2","BackendType":"vxlan","BackendData":{"VNI":1,"VtepMAC":"aa:bb:cc:dd:ee:01"},"BackendV6Data":{"VNI":1,"VtepMAC":"aa:bb:cc:dd:ee:02"}}', null);
    assert.ok('lease' in dual);
    assert.equal(formatCidr(dual.lease.subnet), '10.42.5.0/24');
    assert.equal(formatCidr6(dual.lease.ipv6Subnet!), 'fd42:42:0:5::/64');
    assert.equal(formatIp6(dual.lease.publicIPv6!), '2001:2::2');
    assert.deepEqual(dual.lease.backendV6Data, { VNI: 1, VtepMAC: 'aa:bb:cc:dd:ee:02' });
    const only = parseLeaseEntry('0.0.0.0-0&fd42:42:0:7::-64', '{"PublicIP":"0.0.0.0","PublicIPv6":"2001:2::7","BackendType":"host-gw"}', null);
    assert.ok('lease' in only);
    assert.equal(only.lease.publicIP, 0);
    assert.equal(only.lease.subnet.prefix, 0);
    const v4host = parseLeaseEntry('10.42.9.0-24', '{"PublicIP":"198.18.0.9","PublicIPv6":null,"BackendType":"udp","BackendData":null}', null);
    assert.ok('lease' in v4host);
    assert.equal(v4host.lease.publicIPv6, undefined);
    assert.equal(v4host.lease.ipv6Subnet, undefined);
    const bad = parseLeaseEntry('10.42.5.0-24&fd42:42:0:5::-64', '{"PublicIP":"198.18.0.2","PublicIPv6":"198.18.0.2"}', null);
    assert.ok('error' in bad && bad.error.includes('PublicIPv6="198.18.0.2"') && bad.error.includes('IPv6 address'));
    assert.ok('lease' in dual && 'lease' in only && !sameAttrs(dual.lease, only.lease));
  });
  it('owner and fit rules: PublicIP or PublicIPv6 is ours; a key must have the config\'s families', () => {
    const e = parseLeaseEntry('0.0.0.0-0&fd42:42:0:7::-64', '{"PublicIP":"0.0.0.0","PublicIPv6":"2001:2::7"}', null);
    assert.ok('lease' in e);
    assert.equal(leaseOwner(e.lease, { publicIP: 0, publicIPv6: parseIp6('2001:2::7')! }), 'mine');
    assert.equal(leaseOwner(e.lease, { publicIP: 0, publicIPv6: parseIp6('2001:2::8')! }), 'other', '0.0.0.0 is nobody\'s');
    const dual = validateConfig(DUAL);
    const only = validateConfig({ EnableIPv4: false, EnableIPv6: true, IPv6Network: 'fd42:42::/48' });
    assert.ok(leaseFits(only, e.lease));
    assert.ok(!leaseFits(dual, e.lease));
    assert.ok(leaseFits(dual, parseLeaseKey('10.42.5.0-24&fd42:42:0:5::-64')!));
    assert.ok(!leaseFits(dual, parseLeaseKey('10.42.5.0-24')!));
    assert.ok(!leaseFits(dual, parseLeaseKey('10.43.5.0-24&fd42:42:0:5::-64')!));
  });
});

describe('subnet file: both families', () => {
  const dual: NetworkConfig = validateConfig(DUAL);
  const lease = { subnet: c4('10.42.5.0/24'), ipv6Subnet: c6('fd42:42:0:5::/64'), publicIP: 1, backendType: 'udp', backendData: {}, expiresAt: null };
  it('writes and reads RUDDER_IPV6_NETWORK/RUDDER_IPV6_SUBNET beside the IPv4 pair', () => {
    const text = formatSubnetFile(subnetFileOf(dual, lease, 1472, false));
    assert.equal(text, 'RUDDER_NETWORK=10.42.0.0/16\nRUDDER_SUBNET=10.42.5.1/24\nRUDDER_IPV6_NETWORK=fd42:42::/48\nRUDDER_IPV6_SUBNET=fd42:42:0:5::1/64\nRUDDER_MTU=1472\nRUDDER_IPMASQ=false\n');
    const f = parseSubnetFile(text, 'f', { complete: true });
    assert.equal(f.ipv4, true);
    assert.equal(formatCidr6(f.ipv6Lease!), 'fd42:42:0:5::/64');
    assert.equal(formatCidr6(f.ipv6Address!), 'fd42:42:0:5::1/64');
    assert.equal(formatSubnetFile(f), text);
  });
  it('IPv6-only: no IPv4 pair', () => {
    const only = validateConfig({ EnableIPv4: false, EnableIPv6: true, IPv6Network: 'fd42:42::/48' });
    const text = formatSubnetFile(subnetFileOf(only, { ...lease, subnet: NO_IPV4 }, 1452, true));
    assert.equal(text, 'RUDDER_IPV6_NETWORK=fd42:42::/48\nRUDDER_IPV6_SUBNET=fd42:42:0:5::1/64\nRUDDER_MTU=1452\nRUDDER_IPMASQ=true\n');
    const f = parseSubnetFile(text, 'f', { complete: true });
    assert.equal(f.ipv4, false);
    assert.equal(formatCidr6(f.ipv6Lease!), 'fd42:42:0:5::/64');
    assert.equal(formatSubnetFile(f), text);
    assert.deepEqual(dockerOptions(text, 'f'), ['--ipv6', '--fixed-cidr-v6=fd42:42:0:5::/64', '--mtu=1452', '--ip-masq=false']);
  });
  it('flanneld\'s dual-stack file reads the same', () => {
    const f = parseSubnetFile('FLANNEL_NETWORK=10.42.0.0/16\nFLANNEL_SUBNET=10.42.5.1/24\nFLANNEL_IPV6_NETWORK=fd42:42::/48\nFLANNEL_IPV6_SUBNET=fd42:42:0:5::1/64\nFLANNEL_MTU=1450\nFLANNEL_IPMASQ=false\n', 'f', { flavour: 'flannel' });
    assert.equal(formatCidr6(f.ipv6Lease!), 'fd42:42:0:5::/64');
  });
  it('rejects an inconsistent IPv6 pair, naming the key and the expected form', () => {
    const base = 'RUDDER_NETWORK=10.42.0.0/16\nRUDDER_SUBNET=10.42.5.1/24\nRUDDER_MTU=1472\n';
    const bad = (extra: string, ...frag: string[]): void => {
      assert.throws(() => parseSubnetFile(base + extra, '/run/t.env'), (e: unknown) => {
        assert.ok(e instanceof RudderError && e.code === 'E_SUBNET_FILE', String(e));
        for (const f of ['/run/t.env', ...frag]) assert.ok(e.message.includes(f), `${e.message} lacks ${f}`);
        return true;
      });
    };
    bad('RUDDER_IPV6_SUBNET=fd42:42:0:5::1/64\n', 'RUDDER_IPV6_NETWORK missing');
    bad('RUDDER_IPV6_NETWORK=fd42:42::/48\n', 'RUDDER_IPV6_SUBNET missing');
    bad('RUDDER_IPV6_NETWORK=fd42:42::1/48\nRUDDER_IPV6_SUBNET=fd42:42:0:5::1/64\n', 'RUDDER_IPV6_NETWORK=fd42:42::1/48', 'no host bits');
    bad('RUDDER_IPV6_NETWORK=fd42:42::/48\nRUDDER_IPV6_SUBNET=fd43:42:0:5::1/64\n', 'RUDDER_IPV6_SUBNET=fd43:42:0:5::1/64', 'inside RUDDER_IPV6_NETWORK=fd42:42::/48');
    bad('RUDDER_IPV6_NETWORK=fd42:42::/48\nRUDDER_IPV6_SUBNET=fd42:42::1/40\n', 'longer than its /48');
  });
  it('docker-opts adds --ipv6 --fixed-cidr-v6; cni-config writes two ranges and both routes', () => {
    const text = formatSubnetFile(subnetFileOf(dual, lease, 1472, false));
    assert.deepEqual(dockerOptions(text, 'f'), ['--bip=10.42.5.1/24', '--ipv6', '--fixed-cidr-v6=fd42:42:0:5::/64', '--mtu=1472']);
    const f = parseSubnetFile(text, 'f');
    const ipam = (buildConfList(f).plugins[0] as { ipam: Record<string, unknown> }).ipam;
    assert.deepEqual(ipam.ranges, [[{ subnet: '10.42.5.0/24', gateway: '10.42.5.1' }], [{ subnet: 'fd42:42:0:5::/64', gateway: 'fd42:42:0:5::1' }]]);
    assert.deepEqual(ipam.routes, [{ dst: '0.0.0.0/0' }, { dst: '::/0' }]);
    const own = (buildConfList(f, { defaultRoute: false }).plugins[0] as { ipam: Record<string, unknown> }).ipam;
    assert.deepEqual(own.routes, [{ dst: '10.42.0.0/16' }, { dst: 'fd42:42::/48' }]);
    const v4 = (buildConfList(parseSubnetFile('RUDDER_NETWORK=10.42.0.0/16\nRUDDER_SUBNET=10.42.5.1/24\nRUDDER_MTU=1472\n', 'f')).plugins[0] as { ipam: Record<string, unknown> }).ipam;
    assert.deepEqual(v4.ranges, [[{ subnet: '10.42.5.0/24', gateway: '10.42.5.1' }]], 'IPv4-only as before');
  });
});

describe('rudder leases, -public-ipv6 and the interface\'s IPv6', () => {
  it('shows both families once any lease has IPv6', async () => {
    const recs = [
      parseLeaseEntry('10.42.5.0-24&fd42:42:0:5::-64', '{"PublicIP":"198.18.0.5","PublicIPv6":"2001:2::5","BackendType":"udp"}', null),
      parseLeaseEntry('10.42.1.0-24', '{"PublicIP":"198.18.0.1","BackendType":"udp"}', null),
    ].map((p) => {
      assert.ok('lease' in p);
      return { lease: p.lease, modRevision: '1', etcdLeaseId: '0' };
    });
    const out: string[] = [];
    await leasesTable({ listLeases: async () => ({ records: recs, revision: '1', invalid: [] }), timeToLive: async () => null }, { out: (s: string) => out.push(s), err: () => undefined });
    assert.match(out[0]!, /^SUBNET\s+IPV6 SUBNET\s+PUBLIC IP\s+PUBLIC IPV6\s+BACKEND\s+EXPIRES IN$/);
    assert.match(out[1]!, /^10\.42\.1\.0\/24\s+-\s+198\.18\.0\.1\s+-\s+udp\s+reservation$/);
    assert.match(out[2]!, /^10\.42\.5\.0\/24\s+fd42:42:0:5::\/64\s+198\.18\.0\.5\s+2001:2::5\s+udp\s+reservation$/);
  });
  it('-public-ipv6 wins; else the first global IPv6 of the interface; none is an error naming it', () => {
    const listing = {
      eth0: [
        { address: 'fe80::1', family: 'IPv6', netmask: 'ffff:ffff:ffff:ffff::', mac: '00:00:00:00:00:00', internal: false, cidr: 'fe80::1/64', scopeid: 2 },
        { address: '2001:2::9', family: 'IPv6', netmask: 'ffff:ffff:ffff:ffff::', mac: '00:00:00:00:00:00', internal: false, cidr: '2001:2::9/64', scopeid: 0 },
      ],
      eth1: [{ address: 'fe80::2', family: 'IPv6', netmask: 'ffff:ffff:ffff:ffff::', mac: '00:00:00:00:00:00', internal: false, cidr: 'fe80::2/64', scopeid: 3 }],
    } as unknown as Parameters<typeof globalIpv6Of>[1];
    assert.equal(formatIp6(globalIpv6Of('eth0', listing)!), '2001:2::9');
    assert.equal(formatIp6(resolvePublicIpv6('eth1', '2001:2::77', listing)), '2001:2::77');
    assert.throws(() => resolvePublicIpv6('eth1', undefined, listing), (e: unknown) => e instanceof RudderError && e.code === 'E_IFACE' && e.message.includes('eth1') && e.message.includes('-public-ipv6'));
    assert.throws(() => resolvePublicIpv6('eth0', 'fe80::5', listing), (e: unknown) => e instanceof RudderError && e.message.includes('-public-ipv6="fe80::5"'));
  });
  it('the -public-ipv6 flag is checked at parse time', () => {
    assert.throws(() => daemonFlags(['-public-ipv6=198.18.0.1'], {}), /public-ipv6.*198\.18\.0\.1.*global unicast IPv6/);
    assert.doesNotThrow(() => daemonFlags(['-public-ipv6', '2001:2::1'], {}));
  });
});
