/**
 * The control plane against a real etcd server (Debian etcd-server) on a
 * free loopback port: acquisition, reservations, renewal, re-creation,
 * expiry and watch semantics through restarts and compaction.
 */
import { describe, test } from 'node:test';
import { useEtcd } from '../helpers/etcd-fixture';
import assert from 'node:assert/strict';
import { parseConfig } from '../../src/config';
import { isRudderError } from '../../src/errors';
import { formatCidr, parseCidr, parseIp } from '../../src/ip/ipv4';
import { memoryLogger } from '../../src/log';
import { EtcdRegistry } from '../../src/subnet/etcd-registry';
import type { LeaseEvent } from '../../src/subnet/lease';
import { SubnetManager } from '../../src/subnet/manager';
import { LeaseWatcher } from '../../src/subnet/watcher';
import { waitUntil } from '../../src/topology/util';

const fx = useEtcd('test');
const fresh = (): ReturnType<typeof fx.fresh> => fx.fresh();

function ip(s: string): number {
  const v = parseIp(s);
  assert.notEqual(v, null);
  return v as number;
}

function manager(reg: EtcdRegistry, cfgText: string, publicIP: string, extra: Partial<{ ttlMs: number; renewMarginMs: number }> = {}): SubnetManager {
  return new SubnetManager({
    registry: reg,
    config: parseConfig(cfgText),
    publicIP: ip(publicIP),
    backendType: 'udp',
    backendData: {},
    ttlMs: extra.ttlMs ?? 60_000,
    renewMarginMs: extra.renewMarginMs ?? 10_000,
    log: memoryLogger(),
  });
}

describe('acquisition', () => {
  test('50 concurrent acquisitions get 50 distinct subnets', async () => {
    const { reg } = fresh();
    const clients = Array.from({ length: 5 }, () => reg());
    const cfg = '{"Network":"10.10.0.0/16","SubnetLen":24,"SubnetMin":"10.10.0.0","SubnetMax":"10.10.63.0"}';
    const leases = await Promise.all(
      Array.from({ length: 50 }, (_, i) => manager(clients[i % 5] as EtcdRegistry, cfg, `198.18.1.${i + 1}`).acquire(null)),
    );
    const subnets = new Set(leases.map((l) => formatCidr(l.subnet)));
    assert.equal(subnets.size, 50);
    const listed = await (clients[0] as EtcdRegistry).listLeases();
    assert.equal(listed.records.length, 50);
    for (const r of listed.records) assert.ok(r.lease.subnet.ip >= ip('10.10.0.0') && r.lease.subnet.ip <= ip('10.10.63.0'));
  });

  test('a full range is a clear error, not a loop', async () => {
    const { reg } = fresh();
    const r = reg();
    const cfg = '{"Network":"10.20.0.0/16","SubnetMin":"10.20.0.0","SubnetMax":"10.20.1.0"}';
    await manager(r, cfg, '198.18.2.1').acquire(null);
    await manager(r, cfg, '198.18.2.2').acquire(null);
    await assert.rejects(manager(r, cfg, '198.18.2.3').acquire(null), (e: unknown) => {
      assert.ok(isRudderError(e, 'E_SUBNET_FULL'), String(e));
      assert.match((e as Error).message, /no free subnet: all 2 subnets of \/24 from 10\.20\.0\.0 to 10\.20\.1\.0/);
      return true;
    });
  });

  test('a restart with the same PublicIP gets the same subnet; the remembered subnet is reused only if free', async () => {
    const { reg } = fresh();
    const r = reg();
    const cfg = '{"Network":"10.30.0.0/16"}';
    const first = await manager(r, cfg, '198.18.3.1').acquire(null);
    const again = await manager(r, cfg, '198.18.3.1').acquire(null);
    assert.equal(formatCidr(again.subnet), formatCidr(first.subnet));
    assert.equal((await r.listLeases()).records.length, 1, 'no second key for the same host');

    // Remembered and free: taken again even with a new PublicIP.
    const remembered = parseCidr('10.30.77.0/24');
    const m = await manager(r, cfg, '198.18.3.2').acquire(remembered);
    assert.equal(formatCidr(m.subnet), '10.30.77.0/24');
    // Remembered but held by another host: never overwritten.
    const other = await manager(r, cfg, '198.18.3.3').acquire(remembered);
    assert.notEqual(formatCidr(other.subnet), '10.30.77.0/24');
    const held = (await r.listLeases()).records.find((x) => formatCidr(x.lease.subnet) === '10.30.77.0/24');
    assert.equal(held?.lease.publicIP, ip('198.18.3.2'));
  });

  test('a reservation is honoured: its host gets it without a lease, nobody else takes it', async () => {
    const { prefix, reg } = fresh();
    const r = reg();
    const cfg = '{"Network":"10.40.0.0/16","SubnetMin":"10.40.0.0","SubnetMax":"10.40.1.0"}';
    await fx.raw.put(`${prefix}/subnets/10.40.0.0-24`, '{"PublicIP":"198.18.4.9","BackendType":"udp","BackendData":{}}');
    const others = await manager(r, cfg, '198.18.4.1').acquire(null);
    assert.equal(formatCidr(others.subnet), '10.40.1.0/24');
    await assert.rejects(manager(r, cfg, '198.18.4.2').acquire(null), (e: unknown) => isRudderError(e, 'E_SUBNET_FULL'));
    const m = manager(r, cfg, '198.18.4.9', { ttlMs: 5_000, renewMarginMs: 4_000 });
    const mine = await m.acquire(null);
    assert.equal(formatCidr(mine.subnet), '10.40.0.0/24');
    assert.equal(mine.expiresAt, null);
    assert.ok(m.isReservation);
    // Keep it for a while: a reservation is never renewed into a lease.
    const ac = new AbortController();
    const keeping = m.keep(ac.signal);
    await new Promise((res) => setTimeout(res, 1500));
    ac.abort();
    await keeping;
    const rec = (await r.listLeases()).records.find((x) => formatCidr(x.lease.subnet) === '10.40.0.0/24');
    assert.equal(rec?.etcdLeaseId, '0');
  });
});

describe('keeping the lease', () => {
  test('renewal keeps a short lease alive past several TTLs', async () => {
    const { reg } = fresh();
    const r = reg();
    const m = manager(r, '{"Network":"10.50.0.0/16"}', '198.18.5.1', { ttlMs: 3_000, renewMarginMs: 2_000 });
    const l = await m.acquire(null);
    const ac = new AbortController();
    const keeping = m.keep(ac.signal);
    await new Promise((res) => setTimeout(res, 8_000));
    const rec = (await r.listLeases()).records.find((x) => formatCidr(x.lease.subnet) === formatCidr(l.subnet));
    ac.abort();
    await keeping;
    assert.ok(rec, 'lease key still present after 8 s with a 3 s TTL');
    const ttl = await r.timeToLive(rec.etcdLeaseId);
    assert.ok(ttl !== null && ttl > 0);
  });

  test('a deleted own key is re-created with the same subnet', async () => {
    const { prefix, reg } = fresh();
    const r = reg();
    const m = manager(r, '{"Network":"10.60.0.0/16"}', '198.18.6.1');
    const l = await m.acquire(null);
    const events: LeaseEvent[] = [];
    const w = new LeaseWatcher(reg(), memoryLogger(), async (evs) => {
      events.push(...evs);
      for (const e of evs) if (formatCidr(e.lease.subnet) === formatCidr(l.subnet)) m.ownKeyChanged(e.type === 'added' ? e.lease : null);
    });
    const ac = new AbortController();
    const watching = w.run(ac.signal);
    const keeping = m.keep(ac.signal);
    await waitUntil(() => events.length >= 1, { what: 'initial list' });
    await fx.raw.deleteRange(`${prefix}/subnets/${formatCidr(l.subnet).replace('/', '-')}`);
    await waitUntil(async () => events.filter((e) => e.type === 'added').length >= 2, { what: 're-created key seen by the watcher' });
    ac.abort();
    await Promise.all([watching, keeping]);
    const recs = (await r.listLeases()).records;
    assert.equal(recs.length, 1);
    assert.equal(formatCidr(recs[0]!.lease.subnet), formatCidr(l.subnet));
    assert.equal(recs[0]!.lease.publicIP, ip('198.18.6.1'));
    assert.deepEqual(events.map((e) => e.type), ['added', 'removed', 'added']);
  });
});

describe('watching', () => {
  test('lease expiry produces exactly one removal on each watcher', async () => {
    const { reg } = fresh();
    const r = reg();
    const cfg = '{"Network":"10.70.0.0/16"}';
    const gone = await manager(r, cfg, '198.18.7.1', { ttlMs: 2_000, renewMarginMs: 1_000 }).acquire(null); // never kept: it expires
    const stays = await manager(r, cfg, '198.18.7.2').acquire(null);
    const seen: LeaseEvent[][] = [[], []];
    const ac = new AbortController();
    const runs = seen.map((bucket) => new LeaseWatcher(reg(), memoryLogger(), async (evs) => void bucket.push(...evs)).run(ac.signal));
    await waitUntil(() => seen.every((b) => b.some((e) => e.type === 'removed')), { what: 'expiry seen by both watchers' });
    await new Promise((res) => setTimeout(res, 1_000)); // room for a duplicate to show up
    ac.abort();
    await Promise.all(runs);
    for (const b of seen) {
      const removed = b.filter((e) => e.type === 'removed');
      assert.equal(removed.length, 1);
      assert.equal(formatCidr(removed[0]!.lease.subnet), formatCidr(gone.subnet));
      assert.ok(!b.some((e) => e.type === 'removed' && formatCidr(e.lease.subnet) === formatCidr(stays.subnet)));
    }
  });

  test('a watcher survives an etcd restart and a compaction without missing or inventing events', async () => {
    const { prefix, reg } = fresh();
    const r = reg();
    const put = async (n: number): Promise<unknown> =>
      await fx.raw.put(`${prefix}/subnets/10.80.${n}.0-24`, JSON.stringify({ PublicIP: `198.18.8.${n}`, BackendType: 'udp', BackendData: {} }));
    const del = async (n: number): Promise<unknown> => await fx.raw.deleteRange(`${prefix}/subnets/10.80.${n}.0-24`);
    for (const n of [1, 2, 3]) await put(n);

    const w = new LeaseWatcher(r, memoryLogger(), async () => undefined);
    const log: LeaseEvent[] = [];
    const w2 = new LeaseWatcher(reg(), memoryLogger(), async (evs) => void log.push(...evs));
    const ac = new AbortController();
    const runs = [w.run(ac.signal), w2.run(ac.signal)];
    const view = (x: LeaseWatcher): string[] => [...x.known.values()].map((l) => formatCidr(l.subnet)).sort();
    await waitUntil(() => view(w2).length === 3, { what: 'initial list' });

    // While etcd is down, nothing happens to the known leases.
    await fx.etcd.stop();
    await new Promise((res) => setTimeout(res, 1_500));
    assert.deepEqual(view(w2), ['10.80.1.0/24', '10.80.2.0/24', '10.80.3.0/24']);
    assert.equal(log.filter((e) => e.type === 'removed').length, 0, 'no spurious removal during the outage');
    await fx.etcd.restart();
    await del(1);
    await put(4);
    await waitUntil(() => view(w2).join() === '10.80.2.0/24,10.80.3.0/24,10.80.4.0/24', { what: 'changes after the restart' });

    // Compact past changes the watcher has not seen: it must re-list and diff.
    const listsBefore = w2.lists;
    await del(2);
    await put(5);
    const head = await fx.raw.put(`${prefix}/unrelated`, 'x');
    await fx.raw.compact(head.revision);
    await put(6);
    await waitUntil(() => view(w2).join() === '10.80.3.0/24,10.80.4.0/24,10.80.5.0/24,10.80.6.0/24', { what: 'changes around the compaction' });
    ac.abort();
    await Promise.all(runs);
    assert.ok(w2.lists >= 2, `re-listed after the restart (lists=${w2.lists}, before compaction ${listsBefore})`);
    const removedKeys = log.filter((e) => e.type === 'removed').map((e) => formatCidr(e.lease.subnet)).sort();
    assert.deepEqual(removedKeys, ['10.80.1.0/24', '10.80.2.0/24'], 'exactly the deleted leases were removed, once each');
    const addedKeys = log.filter((e) => e.type === 'added').map((e) => formatCidr(e.lease.subnet)).sort();
    assert.deepEqual(addedKeys, ['10.80.1.0/24', '10.80.2.0/24', '10.80.3.0/24', '10.80.4.0/24', '10.80.5.0/24', '10.80.6.0/24']);
  });

  test('a watch starting before the compacted revision is reported broken (so the watcher re-lists)', async () => {
    const { prefix, reg } = fresh();
    const r = reg();
    const first = await fx.raw.put(`${prefix}/subnets/10.81.1.0-24`, '{"PublicIP":"198.18.8.1"}');
    const head = await fx.raw.put(`${prefix}/subnets/10.81.2.0-24`, '{"PublicIP":"198.18.8.2"}');
    await fx.raw.compact(head.revision);
    const reason = await new Promise<unknown>((resolve) => {
      void r.watchLeases(first.revision, { onEvents: () => resolve(new Error('events from a compacted revision')), onBroken: resolve });
    });
    assert.match(String((reason as Error).message), /compacted|canceled/);
  });
});

describe('the daemon', () => {
  test('waits for a config written after it started, then takes a lease and writes the subnet file', async () => {
    const { Daemon } = await import('../../src/daemon');
    const { etcdSource } = await import('../../src/subnet/source');
    const fs = await import('node:fs');
    const os = await import('node:os');
    const path = await import('node:path');
    const { prefix, reg } = fresh();
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'rudder-daemon-'));
    const file = path.join(dir, 'subnet.env');
    const applied: LeaseEvent[] = [];
    const notes: string[] = [];
    const log = memoryLogger();
    const d = new Daemon(
      { subnetFile: file, ttlMs: 60_000, renewMarginMs: 10_000, ipMasq: false, portFlag: undefined },
      {
        source: etcdSource(reg(), prefix),
        log,
        resolveIface: async () => ({ name: 'eth0', index: 2, address: ip('198.18.9.1'), publicIP: ip('198.18.9.1'), mtu: 1500 }),
        // A recording backend: the daemon's wiring is under test here, not a data path.
        createBackend: () => ({
          type: 'udp',
          overhead: 28,
          prepare: async () => ({}),
          start: async () => ({ mtu: 1472, apply: async (evs) => void applied.push(...evs), stop: async () => undefined }),
        }),
        notify: (s) => void notes.push(s),
      },
    );
    const ac = new AbortController();
    const running = d.run(ac.signal);
    try {
      await waitUntil(() => log.lines.some((l) => l.includes('waiting for the network config')), { what: 'the daemon to wait for config' });
      await fx.raw.put(`${prefix}/config`, '{"Network":"10.90.0.0/16","SubnetLen":20}');
      await waitUntil(() => d.state === 'ready', { what: 'daemon ready' });
      const env = fs.readFileSync(file, 'utf8');
      assert.match(env, /^RUDDER_NETWORK=10\.90\.0\.0\/16$/m);
      assert.match(env, /^RUDDER_SUBNET=10\.90\.\d+\.1\/20$/m);
      assert.match(env, /^RUDDER_MTU=1472$/m);
      assert.match(env, /^RUDDER_IPMASQ=false$/m);
      assert.ok(notes.some((n) => n.startsWith('READY=1')));
      // A peer appears: the backend is told; the daemon's own lease is not handed to it.
      // (The peer's subnet is one the daemon did not draw: overwriting its own lease is another test.)
      const peer = env.includes('RUDDER_SUBNET=10.90.240.1/20') ? '10.90.224.0' : '10.90.240.0';
      await fx.raw.put(`${prefix}/subnets/${peer}-20`, '{"PublicIP":"198.18.9.2","BackendType":"udp","BackendData":{}}');
      await waitUntil(() => applied.length === 1, { what: 'peer lease event' });
      assert.equal(applied[0]?.type, 'added');
      assert.equal(formatCidr(applied[0]?.lease.subnet), `${peer}/20`);
    } finally {
      ac.abort();
      await running;
      fs.rmSync(dir, { recursive: true, force: true });
    }
    assert.equal(d.state, 'stopped');
  });

  test('an invalid config is reported with key, value and expected form, and a fixed one is picked up', async () => {
    const { Daemon } = await import('../../src/daemon');
    const { etcdSource } = await import('../../src/subnet/source');
    const { prefix, reg } = fresh();
    await fx.raw.put(`${prefix}/config`, '{"Network":"10.91.0.0/16","SubnetLen":12}');
    const log = memoryLogger();
    const d = new Daemon(
      { subnetFile: `/tmp/rudder-test-${process.pid}-${prefix.split("/")[1]}.env`, ttlMs: 60_000, renewMarginMs: 10_000, ipMasq: false, portFlag: undefined, hostId: 'test-host-b' },
      {
        source: etcdSource(reg(), prefix),
        log,
        resolveIface: async () => ({ name: 'eth0', index: 2, address: ip('198.18.9.3'), publicIP: ip('198.18.9.3'), mtu: 1500 }),
        createBackend: () => ({ type: 'udp', overhead: 28, prepare: async () => ({}), start: async () => ({ mtu: 1472, apply: async () => undefined, stop: async () => undefined }) }),
        notify: () => undefined,
      },
    );
    const ac = new AbortController();
    const running = d.run(ac.signal);
    try {
      const line = await waitUntil(() => log.lines.find((l) => l.includes('invalid network config')), { what: 'config error logged' });
      assert.match(line, /SubnetLen=12/);
      assert.match(line, /expected an integer larger than the Network prefix \(16\) and at most 30/);
      assert.equal(d.state, 'waiting-config');
      await fx.raw.put(`${prefix}/config`, '{"Network":"10.91.0.0/16"}');
      await waitUntil(() => d.state === 'ready', { what: 'daemon ready after the fix' });
    } finally {
      ac.abort();
      await running;
      (await import('node:fs')).rmSync(`/tmp/rudder-test-${process.pid}-${prefix.split("/")[1]}.env`, { force: true });
    }
  });
});

describe('host identity (one PublicIP, one holder)', () => {
  const hostIdAt = async (key: string): Promise<unknown> => (JSON.parse((await fx.raw.get(key)) ?? '{}') as { RudderHostID?: unknown }).RudderHostID;
  function withId(reg: EtcdRegistry, cfgText: string, publicIP: string, hostId: string, prefix: string): SubnetManager {
    return new SubnetManager({
      registry: reg,
      config: parseConfig(cfgText),
      publicIP: ip(publicIP),
      backendType: 'udp',
      backendData: {},
      hostId,
      etcdPrefix: prefix,
      ttlMs: 60_000,
      renewMarginMs: 10_000,
      log: memoryLogger(),
    });
  }

  test('two clients, one PublicIP, two identities: the second is refused and writes nothing', async () => {
    const { prefix, reg } = fresh();
    const [r1, r2] = [reg(), reg()];
    const cfg = '{"Network":"10.60.0.0/16"}';
    const first = await withId(r1, cfg, '198.18.6.9', 'host-one', prefix).acquire(null);
    const key = `${prefix}/subnets/${formatCidr(first.subnet).replace('/', '-')}`;
    assert.equal(await hostIdAt(key), 'host-one');
    const revBefore = (await r1.listLeases()).revision;
    await assert.rejects(withId(r2, cfg, '198.18.6.9', 'host-two', prefix).acquire(first.subnet), (e: unknown) => {
      assert.ok(isRudderError(e, 'E_PUBLIC_IP_CONFLICT'), String(e));
      for (const s of [key, 'host-one', 'host-two', '198.18.6.9', '-public-ip']) assert.ok((e as Error).message.includes(s), s);
      return true;
    });
    assert.equal((await r1.listLeases()).revision, revBefore, 'no write at all');
    // The first host restarting (same identity) keeps its subnet; renewal keeps the identity.
    const m = withId(r1, cfg, '198.18.6.9', 'host-one', prefix);
    const again = await m.acquire(null);
    assert.equal(formatCidr(again.subnet), formatCidr(first.subnet));
    const rec = (await r1.listLeases()).records.find((x) => formatCidr(x.lease.subnet) === formatCidr(first.subnet));
    assert.ok(rec && (await r1.renewLease(rec)) !== null);
    assert.equal(await hostIdAt(key), 'host-one');
    assert.equal((await r1.listLeases()).records.length, 1);
  });

  test("a flannel-shaped lease (no identity) on our PublicIP is taken over in place and gains our identity", async () => {
    const { prefix, reg } = fresh();
    const r = reg();
    const key = `${prefix}/subnets/10.61.7.0-24`;
    await fx.raw.put(key, '{"PublicIP":"198.18.6.10","BackendType":"udp","BackendData":null}', { lease: await fx.raw.leaseGrant(60) });
    const got = await withId(r, '{"Network":"10.61.0.0/16"}', '198.18.6.10', 'host-three', prefix).acquire(null);
    assert.equal(formatCidr(got.subnet), '10.61.7.0/24');
    assert.equal(await hostIdAt(key), 'host-three');
  });
});
