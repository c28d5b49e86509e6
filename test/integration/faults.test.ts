/**
 * Control-plane faults against a real etcd on loopback (no kernel needed):
 *  - a watcher partitioned from etcd (a TCP proxy that cuts or black-holes
 *    its connections) while etcd keeps changing and is compacted past what
 *    the watcher saw: afterwards its known set equals etcd's and the events
 *    it delivered are exactly the difference — no spurious removal of a live
 *    lease, no missed change;
 *  - 200 SubnetManagers over 4 etcd clients acquiring at once (and 200 of
 *    them racing for exactly 200 subnets, and 30 racing for one remembered
 *    subnet): every subnet held by exactly one manager, and what each
 *    manager believes it holds is what etcd says.
 * The "no double allocation" argument these back is in docs/reliability.md.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { EtcdClient } from '../../src/etcd/client';
import { parseConfig } from '../../src/config';
import { isRudderError } from '../../src/errors';
import { formatCidr, formatIp, parseCidr, parseIp } from '../../src/ip/ipv4';
import { type Logger, memoryLogger } from '../../src/log';
import { EtcdRegistry } from '../../src/subnet/etcd-registry';
import type { Lease, LeaseEvent } from '../../src/subnet/lease';
import { SubnetManager } from '../../src/subnet/manager';
import { LeaseWatcher } from '../../src/subnet/watcher';
import { EtcdServer, startEtcd } from '../../src/topology/etcd';
import { waitUntil } from '../../src/topology/util';
import { skipUnlessEtcd } from '../helpers/env';
import { FaultProxy } from '../helpers/faults-proxy';

let etcd: EtcdServer;
let raw: EtcdClient;
let prefixN = 0;
const regs: EtcdRegistry[] = [];
const proxies: FaultProxy[] = [];

describe('faults (integration)', { skip: skipUnlessEtcd }, () => {
  before(async () => {
    etcd = await startEtcd();
    raw = new EtcdClient({ endpoints: etcd.endpoints });
  });
  after(async () => {
    for (const r of regs) r.close();
    for (const p of proxies) await p.close();
    raw?.close();
    await etcd?.dispose();
  });

  const freshPrefix = (): string => `/faults${++prefixN}/network`;
  const registry = (prefix: string, endpoint = etcd.endpoints[0] as string): EtcdRegistry => {
    const r = new EtcdRegistry({ endpoints: [endpoint], prefix, requestTimeoutMs: 3000 });
    regs.push(r);
    return r;
  };
  const value = (publicIP: string, extra: Record<string, unknown> = {}): string => JSON.stringify({ PublicIP: publicIP, BackendType: 'udp', BackendData: extra });
  /** Lease as the watcher would describe it: "subnet publicIP backendData". */
  const attrs = (l: Lease): string => `${formatCidr(l.subnet)} ${formatIp(l.publicIP)} ${JSON.stringify(l.backendData)}`;
  const describeEvents = (evs: readonly LeaseEvent[]): string[] => evs.map((e) => `${e.type} ${attrs(e.lease)}`).sort();

  /** etcd's current leases under `prefix`, in the same form. */
  async function etcdView(prefix: string): Promise<string[]> {
    const list = await registry(prefix).listLeases();
    return list.records.map((r) => attrs(r.lease)).sort();
  }
  const knownView = (w: LeaseWatcher): string[] => [...w.known.values()].map(attrs).sort();

  interface ProxiedWatcher {
    proxy: FaultProxy;
    log: Logger & { lines: string[] };
    w: LeaseWatcher;
    /** Every event delivered to the consumer, in order. */
    events: LeaseEvent[];
    /** How many of `events` were the initial list: what follows is the faults' doing. */
    seenBefore: number;
  }

  /**
   * Runs `body` with a LeaseWatcher on `prefix` that talks to etcd through a
   * fresh FaultProxy, once its consumer has been handed the initial list of
   * `initial` leases (not just once the watcher's own view has them, or the
   * initial events would count as the fault's). The watcher is stopped however
   * `body` ends.
   */
  async function withProxiedWatcher(prefix: string, initial: number, body: (x: ProxiedWatcher) => Promise<void>): Promise<void> {
    const proxy = await FaultProxy.start(etcd.endpoints[0] as string);
    proxies.push(proxy);
    const log = memoryLogger();
    const events: LeaseEvent[] = [];
    const w = new LeaseWatcher(registry(prefix, proxy.url), log, async (evs) => void events.push(...evs));
    const ac = new AbortController();
    const running = w.run(ac.signal);
    try {
      await waitUntil(() => w.known.size === initial, { what: `initial list of ${initial} leases` });
      await w.settled();
      await body({ proxy, log, w, events, seenBefore: events.length });
    } finally {
      ac.abort();
      await running;
    }
  }

  async function compactNow(): Promise<string> {
    const head = await raw.put('/faults-compaction-marker', String(Date.now()));
    await raw.compact(head.revision);
    return head.revision;
  }

  test('a watcher cut off from etcd while leases change and etcd compacts: known set = etcd, events = exactly the diff', async () => {
    const prefix = freshPrefix();
    const key = (n: number): string => `${prefix}/subnets/10.110.${n}.0-24`;
    for (const n of [1, 2, 3, 4, 5]) await raw.put(key(n), value(`198.18.10.${n}`));
    await withProxiedWatcher(prefix, 5, async ({ proxy, log, w, events, seenBefore }) => {
      const before = knownView(w);
      proxy.cut();
      // The watcher must have noticed (its stream broke and re-listing fails) before etcd changes.
      await waitUntil(() => log.lines.some((l) => l.includes('etcd unreachable')), { what: 'the watcher to fail to re-list through the cut proxy' });
      await raw.deleteRange(key(1)); //                                  removed
      await raw.put(key(2), value('198.18.10.102')); //              moved: removed + added
      await raw.put(key(3), value('198.18.10.3')); //                rewritten, same attributes: nothing
      await raw.deleteRange(key(4));
      await raw.put(key(4), value('198.18.10.4')); //                deleted and back, same attributes: nothing
      await raw.put(key(6), value('198.18.10.6')); //                new: added
      await raw.put(key(7), value('198.18.10.7'));
      await raw.deleteRange(key(7)); //                                   came and went unseen: nothing
      //                                                                   key(5) untouched: nothing
      const compactedAt = await compactNow();
      proxy.heal();

      const want = await etcdView(prefix);
      await waitUntil(() => knownView(w).join('|') === want.join('|'), { what: `known set to equal etcd's (${want.join(', ')})` });
      await w.settled();
      await new Promise((r) => setTimeout(r, 1000)); // room for a late duplicate or spurious event
      const got = describeEvents(events.slice(seenBefore));
      assert.deepEqual(knownView(w), want, 'known set equals etcd');
      assert.deepEqual(
        got,
        [
          'added 10.110.2.0/24 198.18.10.102 {}',
          'added 10.110.6.0/24 198.18.10.6 {}',
          'removed 10.110.1.0/24 198.18.10.1 {}',
          'removed 10.110.2.0/24 198.18.10.2 {}',
        ],
        `exactly the diff of ${before.join(', ')} → ${want.join(', ')} (compacted at ${compactedAt})`,
      );
      assert.ok(w.lists >= 2, `re-listed after the partition (lists=${w.lists})`);
    });
  });

  test('a black-holed watch that falls behind while etcd compacts: no spurious removal, no missed change', async (t) => {
    const prefix = freshPrefix();
    const key = (n: number): string => `${prefix}/subnets/10.111.${n}.0-24`;
    for (const n of [1, 2, 3]) await raw.put(key(n), value(`198.18.11.${n}`));
    await withProxiedWatcher(prefix, 3, async ({ proxy, log, w, events, seenBefore }) => {
      const start = new Map([...w.known].map(([k, l]) => [k, l]));
      proxy.pause();
      // Far more event data than socket and HTTP/2 buffers hold (≈ 2.5 MB), so etcd's
      // watcher for us falls behind ("unsynced") while we are unreachable.
      const pad = 'x'.repeat(1500);
      const puts: Array<Promise<unknown>> = [];
      for (let i = 0; i < 1600; i++) {
        const n = 100 + (i % 100);
        puts.push(raw.put(key(n), value(`198.18.12.${n - 99}`, { pad, round: Math.floor(i / 100) })));
        if (puts.length === 50) await Promise.all(puts.splice(0));
      }
      await Promise.all(puts);
      for (let n = 100; n < 150; n++) await raw.deleteRange(key(n)); // half of them go again
      await raw.deleteRange(key(1)); //                               a pre-existing lease goes
      await raw.put(key(2), value('198.18.11.102')); //           one moves; key(3) stays untouched
      await compactNow();
      proxy.resume();

      const want = await etcdView(prefix);
      await waitUntil(() => knownView(w).join('|') === want.join('|'), { what: `known set to equal etcd's (${want.length} leases)`, giveUpMs: 120_000 });
      await w.settled();
      await new Promise((r) => setTimeout(r, 1000));
      assert.deepEqual(knownView(w), want, 'known set equals etcd');
      const after = events.slice(seenBefore);
      // Replaying what was delivered on top of the view before the pause gives etcd's state, in order.
      const replay = new Map(start);
      for (const e of after) {
        const k = formatCidr(e.lease.subnet);
        if (e.type === 'removed') {
          assert.ok([...replay.values()].some((l) => attrs(l) === attrs(e.lease)), `removal of a lease the consumer had: ${attrs(e.lease)}`);
          replay.delete([...replay.entries()].find(([, l]) => attrs(l) === attrs(e.lease))![0]);
        } else {
          assert.ok(![...replay.values()].some((l) => formatCidr(l.subnet) === k), `addition of a lease the consumer did not have: ${attrs(e.lease)}`);
          replay.set(k, e.lease);
        }
      }
      assert.deepEqual([...replay.values()].map(attrs).sort(), want, 'the events lead exactly to etcd\'s state');
      assert.ok(!after.some((e) => e.type === 'removed' && formatCidr(e.lease.subnet) === '10.111.3.0/24'), 'the untouched live lease was never removed');
      // etcd cancels a watcher that fell behind a compaction ("watch compacted at revision N").
      const compacted = log.lines.some((l) => /lease watch interrupted.*(compacted|Watcher canceled)/.test(l));
      t.diagnostic(`delivered ${after.length} events after the pause; lists=${w.lists}; watch cancelled by the compaction: ${compacted}; ${log.lines.filter((l) => /interrupted|unreachable/.test(l)).join(' / ')}`);
      // Whether etcd cancelled the slow watch or the stream drained in order, both paths must hold the above;
      // the cancelled path is the one that re-lists, and must produce no event for an unchanged lease.
      if (compacted) {
        assert.ok(w.lists >= 2, 're-listed after the compaction');
        assert.ok(!after.some((e) => formatCidr(e.lease.subnet) === '10.111.3.0/24'), 'no event at all for the untouched lease');
      }
    });
  });

  function manager(reg: EtcdRegistry, cfgText: string, publicIP: string, log = memoryLogger()): SubnetManager {
    return new SubnetManager({
      registry: reg,
      config: parseConfig(cfgText),
      publicIP: parseIp(publicIP) as number,
      backendType: 'udp',
      backendData: {},
      ttlMs: 120_000,
      renewMarginMs: 10_000,
      log,
    });
  }
  const hostIp = (i: number): string => `198.18.${20 + Math.floor(i / 250)}.${(i % 250) + 1}`;

  /** Each manager's belief matches etcd: one key per manager, naming its PublicIP; no subnet twice. */
  async function checkBeliefs(prefix: string, held: ReadonlyArray<{ ip: string; subnet: string }>): Promise<void> {
    const subnets = held.map((h) => h.subnet);
    assert.equal(new Set(subnets).size, subnets.length, 'no subnet is believed held by two managers');
    const list = await registry(prefix).listLeases();
    assert.equal(list.records.length, held.length, 'one key per manager in etcd');
    const byIp = new Map(list.records.map((r) => [formatIp(r.lease.publicIP), formatCidr(r.lease.subnet)]));
    for (const h of held) assert.equal(byIp.get(h.ip), h.subnet, `etcd agrees with the manager of ${h.ip}`);
    assert.ok(list.records.every((r) => r.etcdLeaseId !== '0'), 'all leases, no reservation taken');
  }

  test('200 managers over 4 clients acquire at once: 200 distinct subnets', async (t) => {
    const prefix = freshPrefix();
    const clients = Array.from({ length: 4 }, () => registry(prefix));
    const cfg = '{"Network":"10.120.0.0/16","SubnetLen":24}';
    const logs = Array.from({ length: 200 }, () => memoryLogger());
    const t0 = Date.now();
    const leases = await Promise.all(logs.map((log, i) => manager(clients[i % 4] as EtcdRegistry, cfg, hostIp(i), log).acquire(null)));
    const ms = Date.now() - t0;
    const held = leases.map((l, i) => ({ ip: hostIp(i), subnet: formatCidr(l.subnet) }));
    assert.equal(new Set(held.map((h) => h.subnet)).size, 200);
    await checkBeliefs(prefix, held);
    const conflicts = logs.reduce((s, l) => s + l.lines.filter((x) => x.includes('subnet taken concurrently')).length, 0);
    t.diagnostic(`200 acquisitions in ${ms} ms; ${conflicts} create-if-absent conflicts (lost races) retried`);
  });

  test('200 managers racing for exactly 200 subnets: each held once, then the 201st gets a clear "full"', async (t) => {
    const prefix = freshPrefix();
    const clients = Array.from({ length: 4 }, () => registry(prefix));
    // 10.121.0.0 .. 10.121.199.0: exactly 200 /24s.
    const cfg = '{"Network":"10.121.0.0/16","SubnetLen":24,"SubnetMin":"10.121.0.0","SubnetMax":"10.121.199.0"}';
    const logs = Array.from({ length: 200 }, () => memoryLogger());
    let retries = 0;
    // As the daemon does (Daemon.retrying): E_ACQUIRE (10 lost races in a row) is retried.
    const acquire = async (i: number): Promise<Lease> => {
      for (;;) {
        try {
          return await manager(clients[i % 4] as EtcdRegistry, cfg, hostIp(i), logs[i]).acquire(null);
        } catch (e) {
          if (!isRudderError(e, 'E_ACQUIRE')) throw e;
          retries++;
        }
      }
    };
    const t0 = Date.now();
    const leases = await Promise.all(logs.map((_, i) => acquire(i)));
    const ms = Date.now() - t0;
    const held = leases.map((l, i) => ({ ip: hostIp(i), subnet: formatCidr(l.subnet) }));
    await checkBeliefs(prefix, held);
    assert.equal(new Set(held.map((h) => h.subnet)).size, 200, 'all 200 subnets, each once');
    await assert.rejects(manager(clients[0] as EtcdRegistry, cfg, '198.18.99.1').acquire(null), (e: unknown) => isRudderError(e, 'E_SUBNET_FULL'));
    const conflicts = logs.reduce((s, l) => s + l.lines.filter((x) => x.includes('subnet taken concurrently')).length, 0);
    t.diagnostic(`200 acquisitions of the last free subnets in ${ms} ms; ${conflicts} lost races, ${retries} E_ACQUIRE retries`);
  });

  test('30 managers remembering the same free subnet: exactly one gets it, nobody believes otherwise', async () => {
    const prefix = freshPrefix();
    const clients = Array.from({ length: 3 }, () => registry(prefix));
    const cfg = '{"Network":"10.122.0.0/16"}';
    const remembered = parseCidr('10.122.7.0/24');
    const leases = await Promise.all(Array.from({ length: 30 }, (_, i) => manager(clients[i % 3] as EtcdRegistry, cfg, hostIp(i)).acquire(remembered)));
    const held = leases.map((l, i) => ({ ip: hostIp(i), subnet: formatCidr(l.subnet) }));
    assert.equal(held.filter((h) => h.subnet === '10.122.7.0/24').length, 1, 'one winner');
    await checkBeliefs(prefix, held);
  });
});
