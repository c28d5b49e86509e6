/**
 * Dual-stack and IPv6-only acquisition against a real etcd server (issue 15's
 * control plane): flannel's keys and values on the wire, reuse after a
 * restart, the remembered subnets, and concurrent hosts that never share a
 * subnet of either family. Backends do not carry IPv6 yet, so the subnet
 * manager is driven directly, as registry.test.ts does.
 */
import { describe, test } from 'node:test';
import { useEtcd } from '../helpers/etcd-fixture';
import assert from 'node:assert/strict';
import { parseConfig } from '../../src/config';
import { isRudderError } from '../../src/errors';
import { formatCidr, parseIp } from '../../src/ip/ipv4';
import { formatCidr6, formatIp6, parseCidr6, parseIp6, type Cidr6 } from '../../src/ip/ipv6';
import { memoryLogger } from '../../src/log';
import { EtcdRegistry } from '../../src/subnet/etcd-registry';
import { formatLeaseKey, hasIpv4, type LeaseEvent } from '../../src/subnet/lease';
import { SubnetManager } from '../../src/subnet/manager';
import { LeaseWatcher } from '../../src/subnet/watcher';
import { waitUntil } from '../../src/topology/util';

const fx = useEtcd('v6test');
const fresh = (): ReturnType<typeof fx.fresh> => fx.fresh();

const DUAL = '{"Network":"10.42.0.0/16","EnableIPv6":true,"IPv6Network":"fd42:42::/48","IPv6SubnetLen":64}';
const V6ONLY = '{"EnableIPv4":false,"EnableIPv6":true,"IPv6Network":"fd42:43::/48"}';

function manager(reg: EtcdRegistry, cfgText: string, publicIP: string, publicIPv6: string | null, backendV6Data: Record<string, unknown> = {}): SubnetManager {
  return new SubnetManager({
    registry: reg,
    config: parseConfig(cfgText),
    publicIP: parseIp(publicIP) as number,
    publicIPv6: publicIPv6 === null ? null : (parseIp6(publicIPv6)),
    backendType: 'udp',
    backendData: {},
    backendV6Data,
    ttlMs: 60_000,
    renewMarginMs: 10_000,
    log: memoryLogger(),
  });
}

async function keysUnder(prefix: string): Promise<Record<string, string>> {
  const r = await fx.raw.range(`${prefix}/subnets/`, { prefix: true });
  return Object.fromEntries(r.kvs.map((kv) => [kv.key.toString(), kv.value.toString()]));
}

describe('dual-stack acquisition', () => {
  test('one key in flannel\'s form holds both subnets; the value has PublicIPv6 and BackendV6Data', async () => {
    const { prefix, reg } = fresh();
    const lease = await manager(reg(), DUAL, '198.18.2.1', '2001:2::1', { Port: 8285 }).acquire(null);
    assert.ok(hasIpv4(lease) && lease.ipv6Subnet);
    assert.ok(parseCidr6('fd42:42::/48')!.ip <= lease.ipv6Subnet.ip && lease.ipv6Subnet.prefix === 64);
    const keys = await keysUnder(prefix);
    const key = `${prefix}/subnets/${formatCidr(lease.subnet).replace('/', '-')}&${formatCidr6(lease.ipv6Subnet).replace('/', '-')}`;
    assert.deepEqual(Object.keys(keys), [key]);
    assert.deepEqual(JSON.parse(keys[key]!), { PublicIP: '198.18.2.1', PublicIPv6: '2001:2::1', BackendType: 'udp', BackendData: {}, BackendV6Data: { Port: 8285 } });
  });

  test('IPv6-only: the key\'s IPv4 part is 0.0.0.0-0', async () => {
    const { prefix, reg } = fresh();
    const lease = await manager(reg(), V6ONLY, '0.0.0.0', '2001:2::2').acquire(null);
    assert.ok(!hasIpv4(lease) && lease.ipv6Subnet);
    const keys = Object.keys(await keysUnder(prefix));
    assert.deepEqual(keys, [`${prefix}/subnets/0.0.0.0-0&${formatCidr6(lease.ipv6Subnet).replace('/', '-')}`]);
  });

  test('a republished BackendData (a rotated wireguard key) keeps the IPv6 half, also on an IPv6-only key', async () => {
    for (const [cfg, ip4] of [[DUAL, '198.18.2.7'], [V6ONLY, '0.0.0.0']] as const) {
      const { prefix, reg } = fresh();
      const m = manager(reg(), cfg, ip4, '2001:2::7', { Port: 8285 });
      await m.acquire(null);
      const ac = new AbortController();
      const keeping = m.keep(ac.signal);
      m.setBackendData({ PublicKey: 'rotated' });
      let keys: Record<string, string> = {};
      for (let i = 0; i < 300; i++) {
        keys = await keysUnder(prefix);
        if (Object.values(keys).some((v) => v.includes('rotated'))) break;
        await new Promise((r) => setTimeout(r, 20));
      }
      ac.abort();
      await keeping;
      const vals = Object.values(keys).map((v) => JSON.parse(v) as Record<string, unknown>);
      assert.equal(vals.length, 1, `one key: ${JSON.stringify(keys)}`);
      assert.deepEqual(vals[0]?.['BackendData'], { PublicKey: 'rotated' }, JSON.stringify(keys));
      assert.equal(vals[0]?.['PublicIPv6'], '2001:2::7', JSON.stringify(keys));
      assert.deepEqual(vals[0]?.['BackendV6Data'], { Port: 8285 }, JSON.stringify(keys));
    }
  });

  test('a rotated key republished for both families (wireguard) replaces BackendV6Data too', async () => {
    const { prefix, reg } = fresh();
    const m = manager(reg(), DUAL, '198.18.2.8', '2001:2::8', { PublicKey: 'old', Port: 51820 });
    await m.acquire(null);
    const ac = new AbortController();
    const keeping = m.keep(ac.signal);
    m.setBackendData({ PublicKey: 'new', Port: 51820 }, { PublicKey: 'new', Port: 51820 });
    let vals: Array<Record<string, unknown>> = [];
    for (let i = 0; i < 300; i++) {
      vals = Object.values(await keysUnder(prefix)).map((v) => JSON.parse(v) as Record<string, unknown>);
      if (vals.some((v) => JSON.stringify(v['BackendV6Data']).includes('new'))) break;
      await new Promise((r) => setTimeout(r, 20));
    }
    ac.abort();
    await keeping;
    assert.equal(vals.length, 1, JSON.stringify(vals));
    assert.deepEqual(vals[0]?.['BackendData'], { PublicKey: 'new', Port: 51820 }, JSON.stringify(vals));
    assert.deepEqual(vals[0]?.['BackendV6Data'], { PublicKey: 'new', Port: 51820 }, JSON.stringify(vals));
  });

  test('a restarted host gets the same subnets back: by PublicIP, by PublicIPv6, and from the subnet file once the key is gone', async () => {
    const { prefix, reg } = fresh();
    const r = reg();
    const first = await manager(r, DUAL, '198.18.2.3', '2001:2::3').acquire(null);
    const again = await manager(reg(), DUAL, '198.18.2.3', '2001:2::3').acquire(null);
    assert.equal(formatLeaseKey(again), formatLeaseKey(first), 'same key after a restart');
    // IPv6-only host: only PublicIPv6 tells its lease apart.
    const v6a = await manager(r, V6ONLY, '0.0.0.0', '2001:2::4').acquire(null);
    const v6b = await manager(reg(), V6ONLY, '0.0.0.0', '2001:2::4').acquire(null);
    assert.equal(formatLeaseKey(v6b), formatLeaseKey(v6a));
    const other = await manager(reg(), V6ONLY, '0.0.0.0', '2001:2::5').acquire(null);
    assert.notEqual(formatLeaseKey(other), formatLeaseKey(v6a), 'another PublicIPv6 is another host');
    // The key is gone (expired while the host was down): the subnet file's subnets are taken again.
    await fx.raw.deleteRange(`${prefix}/subnets/`, { prefix: true });
    const back = await manager(reg(), DUAL, '198.18.2.3', '2001:2::3').acquire(first.subnet, first.ipv6Subnet ?? null);
    assert.equal(formatLeaseKey(back), formatLeaseKey(first));
    // Turning IPv6 on keeps the IPv4 subnet the file remembers.
    await fx.raw.deleteRange(`${prefix}/subnets/`, { prefix: true });
    const v4cfg = '{"Network":"10.42.0.0/16"}';
    const v4 = await manager(reg(), v4cfg, '198.18.2.6', null).acquire(null);
    await fx.raw.deleteRange(`${prefix}/subnets/`, { prefix: true });
    const switched = await manager(reg(), DUAL, '198.18.2.6', '2001:2::6').acquire(v4.subnet, null);
    assert.equal(formatCidr(switched.subnet), formatCidr(v4.subnet));
    assert.ok(switched.ipv6Subnet);
  });

  test('a remembered IPv6 subnet held by another host (under another IPv4 subnet) is not taken twice', async () => {
    const { prefix, reg } = fresh();
    const held = parseCidr6('fd42:42:0:7::/64') as Cidr6;
    await fx.raw.put(`${prefix}/subnets/10.42.9.0-24&fd42:42:0:7::-64`, JSON.stringify({ PublicIP: '198.18.2.9', PublicIPv6: '2001:2::9', BackendType: 'vxlan' }));
    const lease = await manager(reg(), DUAL, '198.18.2.10', '2001:2::10').acquire(null, held);
    assert.notEqual(formatCidr6(lease.ipv6Subnet!), formatCidr6(held));
    assert.notEqual(formatCidr(lease.subnet), '10.42.9.0/24');
  });

  test('the dual-stack create fails when any key was created after the listing it picked from', async () => {
    const { prefix, reg } = fresh();
    const r = reg();
    const v = { PublicIP: '198.18.2.20', PublicIPv6: '2001:2::20', BackendType: 'udp', BackendData: {}, BackendV6Data: {} };
    const listed = await r.listLeases();
    // Another host takes fd42:42:0:20::/64 under another IPv4 subnet: a different key, the same IPv6 half.
    await fx.raw.put(`${prefix}/subnets/10.42.21.0-24&fd42:42:0:20::-64`, JSON.stringify({ ...v, PublicIP: '198.18.2.21' }));
    const mine = { ipv6Subnet: parseCidr6('fd42:42:0:20::/64') as Cidr6, noKeyCreatedAfter: listed.revision };
    assert.equal(await r.createLease({ ip: parseIp('10.42.20.0') as number, prefix: 24 }, v, 60_000, mine), null, 'guarded create refused');
    const relisted = await r.listLeases();
    const ok = await r.createLease({ ip: parseIp('10.42.20.0') as number, prefix: 24 }, v, 60_000, { ipv6Subnet: parseCidr6('fd42:42:0:22::/64') as Cidr6, noKeyCreatedAfter: relisted.revision });
    assert.ok(ok, 'a create from a current listing goes through');
    // Renewals and rewrites of existing keys do not count as new keys.
    await fx.raw.put(`${prefix}/subnets/10.42.21.0-24&fd42:42:0:20::-64`, JSON.stringify({ ...v, PublicIP: '198.18.2.22' }));
    const again = await r.listLeases();
    await fx.raw.put(`${prefix}/subnets/10.42.21.0-24&fd42:42:0:20::-64`, JSON.stringify({ ...v, PublicIP: '198.18.2.23' }));
    assert.ok(await r.createLease({ ip: parseIp('10.42.23.0') as number, prefix: 24 }, v, 60_000, { ipv6Subnet: parseCidr6('fd42:42:0:23::/64') as Cidr6, noKeyCreatedAfter: again.revision }));
  });

  test('a full IPv6 range is a clear error', async () => {
    const { reg } = fresh();
    const cfg = '{"Network":"10.42.0.0/16","EnableIPv6":true,"IPv6Network":"fd42:44::/48","IPv6SubnetMin":"fd42:44:0:1::","IPv6SubnetMax":"fd42:44:0:2::"}';
    const r = reg();
    await manager(r, cfg, '198.18.3.1', '2001:2::31').acquire(null);
    await manager(r, cfg, '198.18.3.2', '2001:2::32').acquire(null);
    await assert.rejects(manager(r, cfg, '198.18.3.3', '2001:2::33').acquire(null), (e: unknown) => {
      assert.ok(isRudderError(e, 'E_SUBNET_FULL'), String(e));
      assert.match((e as Error).message, /all 2 subnets of \/64 from fd42:44:0:1:: to fd42:44:0:2:: in fd42:44::\/48/);
      return true;
    });
  });

  for (const [name, cfg, v6len] of [
    ['dual-stack', '{"Network":"10.42.0.0/16","SubnetMin":"10.42.0.0","SubnetMax":"10.42.63.0","EnableIPv6":true,"IPv6Network":"fd42:45::/56"}', 64],
    ['IPv6-only', '{"EnableIPv4":false,"EnableIPv6":true,"IPv6Network":"fd42:46::/56","IPv6SubnetLen":62}', 62],
  ] as const) {
    test(`50 concurrent ${name} acquisitions get distinct subnets of each family`, async () => {
      const { reg } = fresh();
      const clients = Array.from({ length: 5 }, () => reg());
      const v4on = name === 'dual-stack';
      const leases = await Promise.all(
        Array.from({ length: 50 }, (_, i) => manager(clients[i % 5] as EtcdRegistry, cfg, v4on ? `198.18.4.${i + 1}` : '0.0.0.0', `2001:2::4:${i + 1}`).acquire(null)),
      );
      const v6 = new Set(leases.map((l) => formatCidr6(l.ipv6Subnet!)));
      assert.equal(v6.size, 50, 'distinct IPv6 subnets');
      for (const l of leases) assert.equal(l.ipv6Subnet!.prefix, v6len);
      if (v4on) assert.equal(new Set(leases.map((l) => formatCidr(l.subnet))).size, 50, 'distinct IPv4 subnets');
      const listed = await (clients[0] as EtcdRegistry).listLeases();
      assert.equal(listed.records.length, 50);
      assert.equal(listed.invalid.length, 0);
    });
  }
});

describe('IPv6 keys in an IPv4-only network', () => {
  test('an IPv6-only key blocks no IPv4 subnet and reaches no IPv4-only backend', async () => {
    const { Daemon } = await import('../../src/daemon');
    const { etcdSource } = await import('../../src/subnet/source');
    const { prefix, reg } = fresh();
    const stray = `${prefix}/subnets/0.0.0.0-0&fd42:47::-64`;
    await fx.raw.put(stray, '{"PublicIP":"0.0.0.0","PublicIPv6":"2001:2::71","BackendType":"udp"}');
    const one = '{"Network":"10.47.0.0/16","SubnetMin":"10.47.3.0","SubnetMax":"10.47.3.0"}';
    const l = await manager(reg(), one, '198.18.7.1', null).acquire(null);
    assert.equal(formatCidr(l.subnet), '10.47.3.0/24');
    await fx.raw.deleteRange(`${prefix}/subnets/10.`, { prefix: true });
    await fx.raw.put(`${prefix}/config`, one);
    const applied: LeaseEvent[] = [];
    let startPeers: readonly unknown[] = [];
    const d = new Daemon(
      { subnetFile: `/tmp/rudder-v6-${process.pid}-${prefix.split("/")[1]}.env`, ttlMs: 60_000, renewMarginMs: 10_000, ipMasq: false, portFlag: undefined, hostId: 'v4-host-z' },
      {
        source: etcdSource(reg(), prefix),
        log: memoryLogger(),
        resolveIface: async () => ({ name: 'eth0', index: 2, address: parseIp('198.18.7.2') as number, publicIP: parseIp('198.18.7.2') as number, mtu: 1500 }),
        createBackend: () => ({
          type: 'udp',
          overhead: 28,
          prepare: async () => ({}),
          start: async (_own, _signal, peers) => {
            startPeers = peers ?? [];
            return { mtu: 1472, apply: async (evs) => void applied.push(...evs), stop: async () => undefined };
          },
        }),
        notify: () => undefined,
      },
    );
    const ac = new AbortController();
    const running = d.run(ac.signal);
    try {
      await waitUntil(() => d.state === 'ready', { what: 'daemon ready' });
      await fx.raw.put(`${prefix}/subnets/0.0.0.0-0&fd42:47:0:1::-64`, '{"PublicIP":"0.0.0.0","PublicIPv6":"2001:2::72","BackendType":"udp"}');
      await fx.raw.put(`${prefix}/subnets/10.47.9.0-24`, '{"PublicIP":"198.18.7.9","BackendType":"udp"}');
      await waitUntil(() => applied.length >= 1, { what: 'the IPv4 peer' });
      await new Promise((res) => setTimeout(res, 300));
      assert.deepEqual(applied.map((e) => formatLeaseKey(e.lease)), ['10.47.9.0-24']);
      assert.equal(startPeers.length, 0, 'the IPv6-only key is no peer at start either');
    } finally {
      ac.abort();
      await running;
      (await import('node:fs')).rmSync(`/tmp/rudder-v6-${process.pid}-${prefix.split("/")[1]}.env`, { force: true });
    }
  });
});

describe('watching dual-stack leases', () => {
  test('a watcher sees dual-stack leases come and go, deletions included', async () => {
    const { prefix, reg } = fresh();
    const seen: LeaseEvent[] = [];
    const w = new LeaseWatcher(reg(), memoryLogger(), async (evs) => void seen.push(...evs));
    const ac = new AbortController();
    const run = w.run(ac.signal);
    await waitUntil(() => w.lists >= 1, { what: 'first list' });
    const a = await manager(reg(), DUAL, '198.18.5.1', '2001:2::51').acquire(null);
    const b = await manager(reg(), V6ONLY, '0.0.0.0', '2001:2::52').acquire(null);
    await waitUntil(() => seen.filter((e) => e.type === 'added').length === 2, { what: 'two additions' });
    await fx.raw.deleteRange(`${prefix}/subnets/${formatLeaseKey(a)}`);
    await waitUntil(() => seen.some((e) => e.type === 'removed'), { what: 'the removal' });
    ac.abort();
    await run;
    const removed = seen.filter((e) => e.type === 'removed');
    assert.equal(removed.length, 1);
    assert.equal(formatLeaseKey(removed[0]!.lease), formatLeaseKey(a));
    assert.deepEqual([...w.known.values()].map((l) => formatLeaseKey(l)), [formatLeaseKey(b)]);
    assert.equal(formatIp6([...w.known.values()][0]!.publicIPv6!), '2001:2::52');
  });
});

describe('the daemon with EnableIPv6', () => {
  const ip = (s: string): number => parseIp(s) as number;
  const iface = async (): Promise<{ name: string; index: number; address: number; publicIP: number; mtu: number }> => ({
    name: 'eth0',
    index: 2,
    address: ip('198.18.6.1'),
    publicIP: ip('198.18.6.1'),
    mtu: 1500,
  });
  const recording = (carriesIPv6: boolean, applied: LeaseEvent[] = []) => () => ({
    type: 'udp',
    overhead: 28,
    ...(carriesIPv6 ? { carriesIPv6 } : {}),
    prepare: async () => ({}),
    start: async () => ({ mtu: 1472, apply: async (evs: readonly LeaseEvent[]) => void applied.push(...evs), stop: async () => undefined }),
  });

  test('refuses a backend that does not carry IPv6, naming it, before taking any lease', async () => {
    const { Daemon } = await import('../../src/daemon');
    const { etcdSource } = await import('../../src/subnet/source');
    const { prefix, reg } = fresh();
    await fx.raw.put(`${prefix}/config`, DUAL);
    const d = new Daemon(
      { subnetFile: `/tmp/rudder-v6-${process.pid}-${prefix.split("/")[1]}.env`, ttlMs: 60_000, renewMarginMs: 10_000, ipMasq: false, portFlag: undefined, hostId: 'v6-host-a' },
      { source: etcdSource(reg(), prefix), log: memoryLogger(), resolveIface: iface, resolvePublicIpv6: () => parseIp6('2001:2::61') as bigint, createBackend: recording(false), notify: () => undefined },
    );
    await assert.rejects(d.run(new AbortController().signal), (e: unknown) => {
      assert.ok(isRudderError(e, 'E_BACKEND'), String(e));
      assert.match((e as Error).message, /IPv6 is not yet carried by the udp backend/);
      return true;
    });
    assert.deepEqual(await keysUnder(prefix), {}, 'no lease taken');
  });

  test('EnableIPv6 on an interface without a global IPv6 (and no -public-ipv6) is an error naming the interface', async () => {
    const { Daemon } = await import('../../src/daemon');
    const { etcdSource } = await import('../../src/subnet/source');
    const { resolvePublicIpv6 } = await import('../../src/iface');
    const { prefix, reg } = fresh();
    await fx.raw.put(`${prefix}/config`, DUAL);
    const d = new Daemon(
      { subnetFile: `/tmp/rudder-v6-${process.pid}-${prefix.split("/")[1]}.env`, ttlMs: 60_000, renewMarginMs: 10_000, ipMasq: false, portFlag: undefined, hostId: 'v6-host-b' },
      {
        source: etcdSource(reg(), prefix),
        log: memoryLogger(),
        resolveIface: iface,
        resolvePublicIpv6: (ext) => resolvePublicIpv6(ext.name, undefined, { eth0: [] }),
        createBackend: recording(true),
        notify: () => undefined,
      },
    );
    await assert.rejects(d.run(new AbortController().signal), (e: unknown) => {
      assert.ok(isRudderError(e, 'E_IFACE'), String(e));
      assert.match((e as Error).message, /interface eth0 has no global IPv6 address/);
      return true;
    });
  });

  test('with a backend that carries IPv6: both families in the lease and the subnet file, and again after a restart', async () => {
    const { Daemon } = await import('../../src/daemon');
    const { etcdSource } = await import('../../src/subnet/source');
    const fs = await import('node:fs');
    const os = await import('node:os');
    const path = await import('node:path');
    const { prefix, reg } = fresh();
    await fx.raw.put(`${prefix}/config`, DUAL);
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'rudder-v6-daemon-'));
    const file = path.join(dir, 'subnet.env');
    const applied: LeaseEvent[] = [];
    const start = (): InstanceType<typeof Daemon> =>
      new Daemon(
        { subnetFile: file, ttlMs: 60_000, renewMarginMs: 10_000, ipMasq: false, portFlag: undefined, hostId: 'v6-host-c' },
        { source: etcdSource(reg(), prefix), log: memoryLogger(), resolveIface: iface, resolvePublicIpv6: () => parseIp6('2001:2::63') as bigint, createBackend: recording(true, applied), notify: () => undefined },
      );
    const runOnce = async (during: () => Promise<void>): Promise<string> => {
      const d = start();
      const ac = new AbortController();
      const running = d.run(ac.signal);
      try {
        await waitUntil(() => d.state === 'ready', { what: 'daemon ready' });
        await during();
        return fs.readFileSync(file, 'utf8');
      } finally {
        ac.abort();
        await running;
      }
    };
    // The peer's subnets are picked beside the ones this daemon drew at random, never on them.
    let peerKey = '';
    let peer6 = '';
    try {
      const env = await runOnce(async () => {
        const own = /RUDDER_SUBNET=10\.42\.(\d+)\.1\/24\n[^]*RUDDER_IPV6_SUBNET=fd42:42:0:([0-9a-f]+)::1\/64/.exec(fs.readFileSync(file, 'utf8'));
        assert.ok(own, 'the subnet file names both subnets');
        const octet = own[1] === '250' ? 251 : 250;
        peer6 = own[2] === 'fa' ? 'fb' : 'fa';
        peerKey = `10.42.${octet}.0-24&fd42:42:0:${peer6}::-64`;
        await fx.raw.put(`${prefix}/subnets/${peerKey}`, '{"PublicIP":"198.18.6.9","PublicIPv6":"2001:2::69","BackendType":"udp","BackendData":{},"BackendV6Data":{}}');
        await waitUntil(() => applied.length === 1, { what: 'peer event' });
      });
      assert.match(env, /^RUDDER_NETWORK=10\.42\.0\.0\/16\nRUDDER_SUBNET=10\.42\.\d+\.1\/24\nRUDDER_IPV6_NETWORK=fd42:42::\/48\nRUDDER_IPV6_SUBNET=fd42:42:0:[0-9a-f]+::1\/64\nRUDDER_MTU=1472\nRUDDER_IPMASQ=false\n$/);
      assert.equal(formatCidr6(applied[0]!.lease.ipv6Subnet!), `fd42:42:0:${peer6}::/64`);
      const keys = Object.keys(await keysUnder(prefix)).filter((k) => !k.endsWith(peerKey));
      assert.equal(keys.length, 1);
      // Restart with the key gone: the subnet file brings back both subnets.
      await fx.raw.deleteRange(keys[0]!);
      const env2 = await runOnce(async () => undefined);
      assert.equal(env2, env);
      assert.deepEqual(Object.keys(await keysUnder(prefix)).sort(), [...keys, `${prefix}/subnets/${peerKey}`].sort());
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});
