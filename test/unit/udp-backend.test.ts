/**
 * The udp backend's own logic with a fake data plane and a fake netlink
 * facade: what it asks for, the peer table it hands over, undo on failure.
 * The kernel side is proven by test/e2e/netlink.test.ts.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { validateConfig } from '../../src/config';
import { isRudderError } from '../../src/errors';
import { formatCidr, parseCidr, parseIp } from '../../src/ip/ipv4';
import { memoryLogger } from '../../src/log';
import type { DataPlane, DataPlaneCounters, DataPlaneOffloads, DataPlaneOptions, DataPlaneRoute, DataPlaneRoute6 } from '../../src/dataplane/types';
import { formatCidr6, parseCidr6 } from '../../src/ip/ipv6';
import { NO_IPV4 } from '../../src/subnet/lease';
import { RTN_UNICAST, RTN_UNREACHABLE } from '../../src/netlink';
import type { Lease, LeaseEvent } from '../../src/subnet/lease';
import { RTPROT_RUDDER, type RouteInfo } from '../../src/netlink';
import { FALLBACK_METRIC, UdpPeerTable as PeerTable, QUEUES_ENV, SwapPacer, createUdpBackend, queuesFromEnv, type PacerClock } from '../../src/backend/udp';
import { FakeNetlink, describeRequest, type FakeRequest } from '../helpers/netlink-fake';
import { createBackend } from '../../src/backend';
import type { BackendContext } from '../../src/backend/types';

const ip = (s: string): number => parseIp(s) as number;
const cidr = (s: string) => parseCidr(s, true) as { ip: number; prefix: number };

function lease(subnet: string, publicIP: string, backendType = 'udp', backendData: Record<string, unknown> = {}): Lease {
  return { subnet: cidr(subnet), publicIP: ip(publicIP), backendType, backendData, expiresAt: null };
}

const zero: DataPlaneCounters = {
  txPackets: 0, txBytes: 0, rxPackets: 0, rxBytes: 0, dropNoRoute: 0, dropUnknownSender: 0,
  dropMalformed: 0, dropTtl: 0, dropNotLocal: 0, tunErrors: 0, socketErrors: 0, icmpSent: 0,
};

/** Time only moves when a test (or a fake swap's cost) moves it. */
class FakeClock implements PacerClock {
  t = 1000;
  private timers: Array<{ at: number; fn: () => void; live: boolean }> = [];
  now = (): number => this.t;
  after = (ms: number, fn: () => void): (() => void) => {
    assert.ok(ms > 0, `timer of ${ms} ms: a swap that may run now must not wait`);
    const timer = { at: this.t + ms, fn, live: true };
    this.timers.push(timer);
    return () => void (timer.live = false);
  };
  get waiting(): number {
    return this.timers.filter((x) => x.live).length;
  }
  /** Moves time forward, running the timers that fall due (in order). */
  advance(ms: number): void {
    const until = this.t + ms;
    for (;;) {
      const due = this.timers.filter((x) => x.live && x.at <= until).sort((a, b) => a.at - b.at)[0];
      if (due === undefined) break;
      due.live = false;
      this.t = Math.max(this.t, due.at);
      due.fn();
    }
    this.t = Math.max(this.t, until);
    this.timers = this.timers.filter((x) => x.live);
  }
}

/** Lets promise callbacks run (the pacer resolves its callers from a timer). */
const flush = (): Promise<void> => new Promise((r) => setImmediate(r));

/** This file's text for the requests it asserts on: link indexes, and a route's scope and protocol. */
function describeUdp(r: FakeRequest): string {
  switch (r.op) {
    case 'ensureAddresses':
      return `ensureAddresses ${r.index} ${r.want.map((a) => `${a.ip}/${a.prefix}`).join(',')}`;
    case 'ensureMtu':
      return `ensureMtu ${r.index} ${r.mtu}`;
    case 'ensureLinkUp':
    case 'deleteLink':
      return `${r.op} ${r.index}`;
    case 'ensureRoute':
      return `ensureRoute ${formatCidr(r.spec.dst)} oif=${r.spec.oif} scope=${r.spec.scope} proto=${r.spec.protocol}`;
    case 'ensureUnreachableRoute':
      return `ensureUnreachableRoute ${formatCidr(r.spec.dst)} metric=${r.spec.metric} proto=${r.spec.protocol}`;
    default:
      return describeRequest(r);
  }
}

class World {
  /** The data plane's steps and the netlink requests, in order. */
  calls: string[] = [];
  readonly nl = new FakeNetlink({ describe: describeUdp });
  opts: DataPlaneOptions | undefined;
  tables: DataPlaneRoute[][] = [];
  tables6: DataPlaneRoute6[][] = [];
  counters: DataPlaneCounters = { ...zero };
  dpStopped = 0;
  failOn: string | undefined;
  onCall: ((op: string) => void) | undefined;
  tick: (() => void) | undefined;
  cancelled = 0;
  offloads: DataPlaneOffloads | undefined;
  /** Added to `clock.t` by every setRoutes: what a swap costs. */
  swapCostMs = 0;
  readonly clock = new FakeClock();

  constructor() {
    this.nl.onCall = (op) => {
      this.calls.push(op);
      this.onCall?.(op);
      if (this.failOn === op) throw new Error(`injected failure in ${op}`);
    };
  }

  get tun() {
    return this.nl.link('rudder0') ?? null;
  }

  get routes(): RouteInfo[] {
    return this.nl.routes;
  }

  set routes(v: RouteInfo[]) {
    this.nl.routes = v;
  }

  get nlClosed(): number {
    return this.nl.closed;
  }

  private step(op: string): void {
    this.calls.push(op);
    this.onCall?.(op);
    if (this.failOn === op) throw new Error(`injected failure in ${op}`);
  }

  openDataPlane = (o: DataPlaneOptions): DataPlane => {
    this.step('openDataPlane');
    this.opts = o;
    this.nl.addLink(o.tunName, 'tun', undefined, { index: 7, up: false });
    return {
      ...(this.offloads !== undefined ? { offloads: this.offloads } : {}),
      setRoutes: (r, r6 = []) => {
        this.tables.push([...r]);
        this.tables6.push([...r6]);
        this.clock.t += this.swapCostMs;
      },
      counters: () => ({ ...this.counters }),
      stop: () => {
        this.dpStopped++;
        this.nl.removeLink(7); // the data plane removes its TUN and, with it, the TUN's routes
      },
    };
  };

  openNetlink = (): FakeNetlink => this.nl;

  every = (_ms: number, fn: () => void): (() => void) => {
    this.tick = fn;
    return () => void this.cancelled++;
  };
}

function setup(opts: { config?: unknown; portFlag?: number; mtu?: number; env?: NodeJS.ProcessEnv; fakeClock?: boolean } = {}) {
  const world = new World();
  const log = memoryLogger(1);
  const ctx: BackendContext = {
    config: validateConfig(opts.config ?? { Network: '10.0.0.0/16' }),
    extIface: { name: 'eth0', index: 2, address: ip('198.18.0.1'), publicIP: ip('198.18.0.1'), mtu: opts.mtu ?? 1500 },
    log,
    portFlag: opts.portFlag,
  };
  const backend = createUdpBackend(ctx, {
    openDataPlane: world.openDataPlane,
    openNetlink: world.openNetlink,
    every: world.every,
    env: opts.env ?? {},
    ...(opts.fakeClock === true ? { clock: world.clock } : {}),
  });
  return { world, log, backend, own: lease('10.0.5.0/24', '198.18.0.1') };
}

const signal = (): AbortSignal => new AbortController().signal;

describe('udp backend', () => {
  it('publishes a Port only when this host overrides the network port', async () => {
    assert.deepEqual(await setup().backend.prepare(signal()), {});
    assert.deepEqual(await setup({ portFlag: 9000 }).backend.prepare(signal()), { Port: 9000 });
    assert.deepEqual(await setup({ portFlag: 9000, config: { Network: '10.0.0.0/16', Backend: { Type: 'udp', Port: 9000 } } }).backend.prepare(signal()), {});
    const b = setup().backend;
    assert.equal(b.type, 'udp');
    assert.equal(b.overhead, 28);
  });

  it('queues: one per CPU by default (0), RUDDER_UDP_QUEUES=1..16 sets them, bad values refused by name; in use logged', async () => {
    for (const v of [undefined, '', ' auto ', 'AUTO']) assert.equal(queuesFromEnv(v === undefined ? {} : { [QUEUES_ENV]: v }), 0, String(v));
    for (const [v, n] of [['1', 1], ['4', 4], [' 16 ', 16]] as const) assert.equal(queuesFromEnv({ [QUEUES_ENV]: v }), n);
    for (const v of ['0', '17', '-1', '2.5', 'two', '1e1']) {
      assert.throws(
        () => queuesFromEnv({ [QUEUES_ENV]: v }),
        (e: unknown) => isRudderError(e) && e.code === 'E_BACKEND' && e.message.includes(`RUDDER_UDP_QUEUES=${v}: expected auto or a whole number 1..16`),
        v,
      );
    }
    const w = setup({ env: { [QUEUES_ENV]: '3' } });
    w.world.offloads = { requested: true, tunVnetHdr: true, tso: true, uso: true, udpGso: true, udpGro: true, busyPoll: true, queues: 3, note: '' };
    await w.backend.start(w.own, signal());
    assert.equal(w.world.opts?.queues, 3);
    assert.ok(w.log.lines.some((l) => /udp data plane offloads on .*queues=3/.test(l)), w.log.lines.join('\n'));
    const bad = setup({ env: { [QUEUES_ENV]: 'many' } });
    await assert.rejects(bad.backend.start(bad.own, signal()), /RUDDER_UDP_QUEUES=many: expected auto/);
    assert.ok(!bad.world.calls.includes('openDataPlane'), 'opened a data plane despite a bad RUDDER_UDP_QUEUES');
  });

  it('offloads: on by default, off with RUDDER_UDP_OFFLOADS=0/false, bad values refused; what the data plane got is logged', async () => {
    const all = { requested: true, tunVnetHdr: true, tso: true, uso: true, udpGso: true, udpGro: true, busyPoll: true, queues: 1, note: '' };
    const on = setup();
    on.world.offloads = all;
    await on.backend.start(on.own, signal());
    assert.equal(on.world.opts?.offloads, true);
    assert.ok(on.log.lines.some((l) => /info .*udp data plane offloads on .*tso=true uso=true udpGso=true udpGro=true coalesce=true busyPoll=true/.test(l)), on.log.lines.join('\n'));

    for (const v of ['0', 'false', 'OFF']) {
      const off = setup({ env: { RUDDER_UDP_OFFLOADS: v } });
      off.world.offloads = { requested: false, tunVnetHdr: false, tso: false, uso: false, udpGso: false, udpGro: false, busyPoll: true, queues: 1, note: '' };
      await off.backend.start(off.own, signal());
      assert.equal(off.world.opts?.offloads, false, v);
      assert.ok(off.log.lines.some((l) => /udp data plane offloads off .*RUDDER_UDP_OFFLOADS/.test(l)), off.log.lines.join('\n'));
    }
    for (const v of ['1', 'true', '']) {
      const w = setup({ env: { RUDDER_UDP_OFFLOADS: v } });
      await w.backend.start(w.own, signal());
      assert.equal(w.world.opts?.offloads, true, v);
    }

    const partial = setup();
    partial.world.offloads = { ...all, tso: false, note: 'TUNSETOFFLOAD CSUM|TSO4|TSO6|TSO_ECN: Invalid argument' };
    await partial.backend.start(partial.own, signal());
    assert.ok(
      partial.log.lines.some((l) => /warn .*offloads partly unavailable.*tso=false.*TUNSETOFFLOAD/.test(l)),
      partial.log.lines.join('\n'),
    );

    const bad = setup({ env: { RUDDER_UDP_OFFLOADS: 'maybe' } });
    await assert.rejects(bad.backend.start(bad.own, signal()), (e: unknown) => {
      assert.ok(isRudderError(e, 'E_BACKEND'));
      assert.match((e as Error).message, /RUDDER_UDP_OFFLOADS=maybe: expected/);
      return true;
    });
    assert.equal(bad.world.opts, undefined, 'the data plane was opened despite the bad value');
  });

  it('start opens the data plane and configures rudder0 for the own lease', async () => {
    const { world, backend, own } = setup({ config: { Network: '10.0.0.0/16', Backend: { Type: 'udp', Port: 9100 } }, mtu: 1450 });
    const net = await backend.start(own, signal());
    assert.equal(net.mtu, 1450 - 28);
    assert.deepEqual(world.opts, {
      tunName: 'rudder0',
      bindAddress: ip('198.18.0.1'),
      port: 9100,
      localSubnet: cidr('10.0.5.0/24'),
      icmpSource: ip('10.0.5.0'),
      mtu: 1422,
      offloads: true,
      busyPoll: true,
      queues: 0,
    });
    assert.ok(world.calls.includes(`ensureAddresses 7 ${ip('10.0.5.0')}/32`));
    assert.ok(world.calls.includes('ensureMtu 7 1422'));
    assert.ok(world.calls.includes('ensureLinkUp 7'));
    assert.ok(world.calls.includes(`ensureRoute 10.0.0.0/16 oif=7 scope=link proto=${RTPROT_RUDDER}`));
    // The fallback comes first: the Network is never routed out the default route, not even
    // while the daemon is dead (the TUN and its route go with the process; this route stays).
    const fallback = `ensureUnreachableRoute 10.0.0.0/16 metric=${FALLBACK_METRIC} proto=${RTPROT_RUDDER}`;
    assert.ok(world.calls.includes(fallback));
    assert.ok(world.calls.indexOf(fallback) < world.calls.indexOf(`ensureRoute 10.0.0.0/16 oif=7 scope=link proto=${RTPROT_RUDDER}`));
    // the data plane exists before rudder0 is configured
    assert.ok(world.calls.indexOf('openDataPlane') < world.calls.indexOf('ensureMtu 7 1422'));
  });

  it('dual-stack: the data plane gets the IPv6 subnet, rudder0 its /128 and the IPv6Network (fail closed too); IPv6 peers routed', async () => {
    const c6 = (t: string) => parseCidr6(t, true) as { ip: bigint; prefix: number };
    const config = { Network: '10.0.0.0/16', EnableIPv6: true, IPv6Network: 'fd42:42::/48' };
    const { world, backend } = setup({ config });
    assert.equal(backend.carriesIPv6, true);
    const own: Lease = { ...lease('10.0.5.0/24', '198.18.0.1'), ipv6Subnet: c6('fd42:42:0:5::/64') };
    // A stale IPv6 route of an earlier run goes; the IPv6Network's routes are (re)made.
    world.nl.routes6.push({ dst: c6('fd42:42:0:9::/64'), table: 254, oif: 3, gateway: undefined, onlink: false, protocol: RTPROT_RUDDER, type: RTN_UNICAST, metric: 1024, prefsrc: undefined });
    const net = await backend.start(own, signal());
    assert.deepEqual(world.opts?.localSubnet6, c6('fd42:42:0:5::/64'));
    assert.equal(world.opts?.icmpSource6, c6('fd42:42:0:5::/64').ip);
    assert.deepEqual(world.opts?.localSubnet, cidr('10.0.5.0/24'));
    assert.ok(world.calls.includes('ensureAddresses6 rudder0 fd42:42:0:5::/128'), world.calls.join('\n'));
    assert.deepEqual(
      world.nl.routes6.map((r) => `${formatCidr6(r.dst)} ${r.type === RTN_UNREACHABLE ? 'unreachable' : `oif=${r.oif}`}`).sort(),
      ['fd42:42::/48 oif=7', 'fd42:42::/48 unreachable'],
    );
    await net.apply([{ type: 'added', lease: { ...lease('10.0.7.0/24', '198.18.0.7'), ipv6Subnet: c6('fd42:42:0:7::/64') } }]);
    assert.deepEqual(world.tables6.at(-1), [{ ip: c6('fd42:42:0:7::/64').ip, prefix: 64, publicIP: ip('198.18.0.7'), port: 8285 }]);
    assert.deepEqual(world.tables.at(-1)?.map((r) => formatCidr(r)), ['10.0.7.0/24']);
    await net.stop();
    assert.deepEqual(world.nl.routes6, [], 'stop leaves IPv6 routes');
  });

  it('IPv6-only: no IPv4 address, route or local subnet on rudder0', async () => {
    const c6 = (t: string) => parseCidr6(t, true) as { ip: bigint; prefix: number };
    const { world, backend } = setup({ config: { EnableIPv4: false, EnableIPv6: true, IPv6Network: 'fd42:42::/48' } });
    const own: Lease = { ...lease('0.0.0.0/0', '198.18.0.1'), subnet: NO_IPV4, ipv6Subnet: c6('fd42:42:0:5::/64') };
    await backend.start(own, signal());
    assert.deepEqual(world.opts?.localSubnet, { ip: 0, prefix: 32 });
    assert.equal(world.opts?.icmpSource, 0);
    assert.ok(world.calls.includes('ensureAddresses 7 '), world.calls.join('\n'));
    assert.ok(!world.calls.some((c) => c.startsWith('ensureRoute ') || c.startsWith('ensureUnreachableRoute ')), world.calls.join('\n'));
    assert.equal(world.nl.routes6.filter((r) => formatCidr6(r.dst) === 'fd42:42::/48').length, 2);
  });

  it('start removes routes an earlier run left behind, and nobody else’s', async () => {
    const { world, backend, own } = setup();
    const stale = (dst: string, protocol: number): RouteInfo => ({ dst: cidr(dst), table: 254, oif: 3, gateway: ip('198.18.0.2'), onlink: false, scope: 0, protocol, type: 1, metric: 0, prefsrc: undefined });
    const unreachable = (dst: string, metric: number): RouteInfo => ({ ...stale(dst, RTPROT_RUDDER), oif: undefined, gateway: undefined, type: 7, metric });
    world.routes.push(stale('10.0.8.0/24', RTPROT_RUDDER), stale('192.0.2.0/24', 4));
    // A crashed run's fallback is kept; one for a Network no longer configured is not.
    world.routes.push(unreachable('10.0.0.0/16', FALLBACK_METRIC), unreachable('10.9.0.0/16', FALLBACK_METRIC));
    await backend.start(own, signal());
    assert.deepEqual(world.routes.map((r) => `${formatCidr(r.dst)} ${r.type}`).sort(), ['10.0.0.0/16 1', '10.0.0.0/16 7', '192.0.2.0/24 1']);
    assert.equal(world.calls.filter((c) => c.startsWith('ensureUnreachableRoute')).length, 1);
  });

  it('apply hands the complete peer table to the data plane', async () => {
    const { world, backend, own, log } = setup({ portFlag: 9000 });
    const net = await backend.start(own, signal());
    const a = lease('10.0.7.0/24', '198.18.0.7');
    const b = lease('10.0.3.0/24', '198.18.0.3', 'udp', { Port: 9999 });
    await net.apply([{ type: 'added', lease: a }, { type: 'added', lease: b }]);
    assert.deepEqual(world.tables.at(-1), [
      { ip: ip('10.0.3.0'), prefix: 24, publicIP: ip('198.18.0.3'), port: 9999 },
      // no published Port: the network's port, not this host's -port
      { ip: ip('10.0.7.0'), prefix: 24, publicIP: ip('198.18.0.7'), port: 8285 },
    ]);
    assert.ok(log.lines.some((l) => l.includes('route set') && l.includes('10.0.7.0/24')));

    // PublicIP moved: the route follows
    await net.apply([{ type: 'added', lease: lease('10.0.7.0/24', '198.18.0.77') }]);
    assert.deepEqual(world.tables.at(-1)?.map((r) => r.publicIP), [ip('198.18.0.3'), ip('198.18.0.77')]);

    // removed
    await net.apply([{ type: 'removed', lease: b }]);
    assert.deepEqual(world.tables.at(-1)?.map((r) => formatCidr(r)), ['10.0.7.0/24']);
    assert.ok(log.lines.some((l) => l.includes('route removed') && l.includes('10.0.3.0/24')));

    // nothing changed: nothing pushed
    const pushes = world.tables.length;
    await net.apply([{ type: 'added', lease: lease('10.0.7.0/24', '198.18.0.77') }]);
    await net.apply([{ type: 'added', lease: own }]);
    assert.equal(world.tables.length, pushes);
  });

  it('ignores leases of other backends, logging each once', async () => {
    const { world, backend, own, log } = setup();
    const net = await backend.start(own, signal());
    const vx = lease('10.0.9.0/24', '198.18.0.9', 'vxlan', { VtepMAC: 'aa:00:00:00:00:01' });
    const ev: LeaseEvent[] = [{ type: 'added', lease: vx }];
    await net.apply(ev);
    await net.apply(ev);
    assert.equal(log.lines.filter((l) => l.includes('another backend') && l.includes('10.0.9.0/24')).length, 1);
    assert.ok(world.tables.every((t) => t.every((r) => r.ip !== ip('10.0.9.0'))));

    // a udp lease that switches to vxlan loses its route
    await net.apply([{ type: 'added', lease: lease('10.0.4.0/24', '198.18.0.4') }]);
    assert.equal(world.tables.at(-1)?.length, 1);
    await net.apply([{ type: 'added', lease: lease('10.0.4.0/24', '198.18.0.4', 'host-gw') }]);
    assert.deepEqual(world.tables.at(-1), []);
  });

  it('a failing later step undoes the earlier ones', async () => {
    const { world, backend, own } = setup();
    world.failOn = `ensureRoute 10.0.0.0/16 oif=7 scope=link proto=${RTPROT_RUDDER}`;
    await assert.rejects(backend.start(own, signal()), /injected failure/);
    assert.equal(world.dpStopped, 1);
    assert.equal(world.nlClosed, 1);
    assert.equal(world.tun, null);
    assert.deepEqual(world.routes, []);
  });

  it('an abort during start leaves no half state', async () => {
    const { world, backend, own } = setup();
    const ac = new AbortController();
    world.onCall = (op) => {
      if (op.startsWith('ensureMtu')) ac.abort(new Error('shutdown'));
    };
    await assert.rejects(backend.start(own, ac.signal), (e: unknown) => isRudderError(e, 'E_BACKEND'));
    assert.ok(!world.calls.some((c) => c.startsWith('ensureLinkUp') || c.startsWith('ensureRoute')));
    assert.equal(world.dpStopped, 1);
    assert.equal(world.nlClosed, 1);

    const pre = setup();
    const aborted = new AbortController();
    aborted.abort();
    await assert.rejects(pre.backend.start(pre.own, aborted.signal), (e: unknown) => isRudderError(e, 'E_BACKEND'));
    assert.equal(pre.world.opts, undefined);
  });

  it('stop undoes start in reverse, once', async () => {
    const { world, backend, own } = setup();
    const net = await backend.start(own, signal());
    const n = world.calls.length;
    await Promise.all([net.stop(), net.stop()]);
    const undo = world.calls.slice(n);
    assert.equal(undo[0], 'deleteRoute 10.0.0.0/16');
    assert.ok(undo.includes(`deleteRoute 10.0.0.0/16 metric=${FALLBACK_METRIC}`), 'a clean stop removes the fallback too');
    assert.equal(world.dpStopped, 1);
    assert.equal(world.nlClosed, 1);
    assert.equal(world.cancelled, 1);
    assert.deepEqual(world.routes, []);
    await assert.rejects(net.apply([]), (e: unknown) => isRudderError(e, 'E_BACKEND'));
  });

  it('logs the counters periodically, only when they changed', async () => {
    const { world, backend, own, log } = setup();
    await backend.start(own, signal());
    const tick = world.tick as () => void;
    const count = (): number => log.lines.filter((l) => l.includes('data plane counters')).length;
    tick();
    assert.equal(count(), 1);
    tick();
    assert.equal(count(), 1);
    world.counters.dropUnknownSender = 3;
    tick();
    assert.equal(count(), 2);
    assert.ok(log.lines.at(-1)?.includes('dropUnknownSender=3'));
  });

  it('refuses an underlay MTU too small to carry anything', async () => {
    const { backend, own, world } = setup({ mtu: 90 });
    await assert.rejects(backend.start(own, signal()), /MTU 90/);
    assert.equal(world.opts, undefined);
  });
});

describe('udp peer table', () => {
  const own = lease('10.0.5.0/24', '198.18.0.1');
  const key = (r: DataPlaneRoute): string => `${r.ip}/${r.prefix}`;
  const show = (r: DataPlaneRoute): string => `${formatCidr(r)} ${r.publicIP}:${r.port}`;

  it('matches a rebuild-and-sort model over random batches (order, set, removed)', () => {
    // Deterministic LCG: a failure reproduces.
    let seed = 12345;
    const rnd = (n: number): number => {
      seed = (Math.imul(seed, 1103515245) + 12345) >>> 0;
      return (seed >>> 8) % n;
    };
    const t = new PeerTable(8285, own);
    const model = new Map<string, DataPlaneRoute>();
    for (let round = 0; round < 400; round++) {
      const events: LeaseEvent[] = [];
      for (let i = 0, n = 1 + rnd(12); i < n; i++) {
        // A small space of subnets (incl. our own, and two prefix lengths at one address) so keys repeat within a batch.
        const third = rnd(40);
        const subnet = rnd(10) === 0 ? '10.0.5.0/24' : `10.0.${third}.0/${rnd(8) === 0 ? 25 : 24}`;
        const type = rnd(3) === 0 ? 'removed' : 'added';
        const backend = rnd(10) === 0 ? 'vxlan' : 'udp';
        const data = rnd(4) === 0 ? { Port: 9000 + rnd(3) } : {};
        events.push({ type, lease: lease(subnet, `198.18.1.${rnd(4) + 1}`, backend, data) });
      }
      const before = new Map(model);
      for (const ev of events) {
        const c = ev.lease.subnet;
        const k = `${c.ip}/${c.prefix}`;
        if (k === key({ ...own.subnet, publicIP: 0, port: 0 })) continue;
        if (ev.type === 'removed' || ev.lease.backendType !== 'udp') model.delete(k);
        else model.set(k, { ip: c.ip, prefix: c.prefix, publicIP: ev.lease.publicIP, port: (ev.lease.backendData['Port'] as number | undefined) ?? 8285 });
      }
      const ch = t.apply(events);
      const want = [...model.values()].sort((a, b) => a.ip - b.ip || a.prefix - b.prefix);
      assert.deepEqual([...t.table()], want, `round ${round}`);
      assert.equal(t.size, model.size);
      const wantSet = [...model].filter(([k, r]) => before.get(k) === undefined || show(before.get(k) as DataPlaneRoute) !== show(r)).map(([, r]) => show(r));
      const wantRemoved = [...before].filter(([k]) => !model.has(k)).map(([, r]) => show(r));
      assert.deepEqual(ch.set.map(show).sort(), wantSet.sort(), `set, round ${round}`);
      assert.deepEqual(ch.removed.map(show).sort(), wantRemoved.sort(), `removed, round ${round}`);
    }
    assert.ok(t.size > 10, 'the random walk never grew the table');
  });

  it('a batch that adds and removes the same peer reports nothing', () => {
    const t = new PeerTable(8285, own);
    const a = lease('10.0.7.0/24', '198.18.0.7');
    const ch = t.apply([{ type: 'added', lease: a }, { type: 'removed', lease: a }]);
    assert.deepEqual([ch.set.length, ch.removed.length, t.table().length], [0, 0, 0]);
  });

  it('a changed peer keeps the route object of nobody else (the table is not rebuilt)', () => {
    const t = new PeerTable(8285, own);
    t.apply([{ type: 'added', lease: lease('10.0.7.0/24', '198.18.0.7') }, { type: 'added', lease: lease('10.0.3.0/24', '198.18.0.3') }]);
    const first = t.table()[0];
    t.apply([{ type: 'added', lease: lease('10.0.7.0/24', '198.18.0.8') }]);
    assert.equal(t.table()[0], first, 'an untouched peer got a new route object');
    assert.equal(t.table()[1]?.publicIP, ip('198.18.0.8'));
  });
});

describe('udp peer table, IPv6', () => {
  const c6 = (t: string) => parseCidr6(t, true) as { ip: bigint; prefix: number };
  const dual = (v4: string, v6: string, publicIP: string, data: Record<string, unknown> = {}): Lease => ({ ...lease(v4, publicIP, 'udp', data), ipv6Subnet: c6(v6) });
  const only6 = (v6: string, publicIP: string): Lease => ({ ...lease('0.0.0.0/0', publicIP), subnet: NO_IPV4, ipv6Subnet: c6(v6) });
  const show6 = (r: DataPlaneRoute6): string => `${formatCidr6(r)} ${r.publicIP}:${r.port}`;

  it('a dual-stack host routes both subnets of each peer to its PublicIP, sorted by address', () => {
    const t = new PeerTable(8285, dual('10.0.5.0/24', 'fd42:42:0:5::/64', '198.18.0.1'));
    const ch = t.apply([
      { type: 'added', lease: dual('10.0.7.0/24', 'fd42:42:0:7::/64', '198.18.0.7', { Port: 9000 }) },
      { type: 'added', lease: dual('10.0.3.0/24', 'fd42:42:0:3::/64', '198.18.0.3') },
      { type: 'added', lease: dual('10.0.5.0/24', 'fd42:42:0:5::/64', '198.18.0.1') }, // our own: never a route
    ]);
    assert.deepEqual(t.table().map((r) => formatCidr(r)), ['10.0.3.0/24', '10.0.7.0/24']);
    assert.deepEqual(t.table6().map(show6), [`fd42:42:0:3::/64 ${ip('198.18.0.3')}:8285`, `fd42:42:0:7::/64 ${ip('198.18.0.7')}:9000`]);
    assert.deepEqual([ch.set.length, ch.set6.length, ch.removed.length, ch.removed6.length], [2, 2, 0, 0]);
    const gone = t.apply([{ type: 'removed', lease: dual('10.0.3.0/24', 'fd42:42:0:3::/64', '198.18.0.3') }]);
    assert.deepEqual(gone.removed6.map(show6), [`fd42:42:0:3::/64 ${ip('198.18.0.3')}:8285`]);
    assert.deepEqual(t.table6().map((r) => formatCidr6(r)), ['fd42:42:0:7::/64']);
  });

  it('IPv6-only leases (all 0.0.0.0-0&...) are distinct peers with an IPv6 route and no IPv4 route', () => {
    const t = new PeerTable(8285, only6('fd42:42:0:5::/64', '198.18.0.1'));
    t.apply([
      { type: 'added', lease: only6('fd42:42:0:9::/64', '198.18.0.9') },
      { type: 'added', lease: only6('fd42:42:0:2::/64', '198.18.0.2') },
      { type: 'added', lease: only6('fd42:42:0:5::/64', '198.18.0.1') },
    ]);
    assert.equal(t.size, 2);
    assert.deepEqual(t.table(), []);
    assert.deepEqual(t.table6().map((r) => formatCidr6(r)), ['fd42:42:0:2::/64', 'fd42:42:0:9::/64']);
    t.apply([{ type: 'removed', lease: only6('fd42:42:0:9::/64', '198.18.0.9') }]);
    assert.deepEqual(t.table6().map((r) => formatCidr6(r)), ['fd42:42:0:2::/64']);
  });

  it('an IPv4-only host ignores peers\' IPv6 subnets; a lease without an IPv4 PublicIP is reported, not routed', () => {
    const t4 = new PeerTable(8285, lease('10.0.5.0/24', '198.18.0.1'));
    t4.apply([{ type: 'added', lease: dual('10.0.7.0/24', 'fd42:42:0:7::/64', '198.18.0.7') }]);
    assert.deepEqual([t4.table().length, t4.table6().length], [1, 0]);
    const t = new PeerTable(8285, dual('10.0.5.0/24', 'fd42:42:0:5::/64', '198.18.0.1'));
    const ch = t.apply([{ type: 'added', lease: { ...dual('10.0.8.0/24', 'fd42:42:0:8::/64', '0.0.0.0'), publicIPv6: 1n } }]);
    assert.deepEqual([t.table().length, t.table6().length], [0, 0]);
    assert.equal(ch.invalid.length, 1);
    assert.match(ch.invalid[0]?.why ?? '', /IPv4 PublicIP/);
  });
});

describe('udp table-swap pacing', () => {
  const pacer = (cost = 0, opts = {}) => {
    const clock = new FakeClock();
    const swapped: number[] = [];
    let fail: Error | null = null;
    const p = new SwapPacer(
      () => {
        swapped.push(clock.t);
        clock.t += cost;
        if (fail) throw fail;
      },
      clock,
      opts,
    );
    return { clock, swapped, p, failWith: (e: Error | null) => void (fail = e) };
  };

  it('swaps at once after a quiet spell', async () => {
    const { clock, swapped, p } = pacer(1);
    const done = p.request();
    assert.deepEqual(swapped, [1000], 'the first swap was not synchronous');
    await done;
    clock.advance(100);
    void p.request();
    assert.deepEqual(swapped, [1000, 1101]);
    assert.equal(clock.waiting, 0);
  });

  it('within the gap: one swap at its end, shared by every request made meanwhile', async () => {
    const { clock, swapped, p } = pacer(1, { factor: 4 });
    await p.request(); // 1000..1001, gap 4 ms
    assert.equal(p.gapMs, 4);
    clock.advance(1);
    let resolved = 0;
    const a = p.request().then(() => resolved++);
    const b = p.request().then(() => resolved++);
    assert.equal(swapped.length, 1, 'swapped inside the gap');
    clock.advance(2); // t = 1004: one ms short of 1001 + 4
    await flush();
    assert.equal(swapped.length, 1);
    assert.equal(resolved, 0, 'a request resolved before its swap ran');
    clock.advance(1);
    await Promise.all([a, b]);
    assert.deepEqual(swapped, [1000, 1005]);
    assert.equal(resolved, 2);
    assert.equal(p.swaps, 2);
  });

  it('the gap follows the swap cost (smoothed) and is capped', async () => {
    const cheap = pacer(0.01);
    await cheap.p.request();
    assert.ok(cheap.p.gapMs < 0.1, `gap ${cheap.p.gapMs} ms for a 0.01 ms swap`);

    const { clock, p } = pacer(50, { factor: 4, maxGapMs: 20 });
    await p.request();
    assert.equal(p.gapMs, 20);
    clock.advance(20);
    await p.request();
    assert.equal(p.gapMs, 20);

    // One slow swap (a GC pause) among cheap ones moves the gap only partly.
    const s = pacer(1, { factor: 4, maxGapMs: 1000 });
    await s.p.request();
    s.clock.advance(10);
    await s.p.request();
    assert.equal(s.p.gapMs, 4);
    const slow = new SwapPacer(() => void (s.clock.t += 0), s.clock);
    assert.equal(slow.gapMs, 0, 'a pacer that never swapped has a gap');
  });

  it('a failed swap rejects its requests; the next one runs normally', async () => {
    const { clock, p, failWith, swapped } = pacer(1);
    failWith(new Error('injected'));
    await assert.rejects(p.request(), /injected/);
    const waiting = p.request();
    clock.advance(10);
    await assert.rejects(waiting, /injected/);
    failWith(null);
    clock.advance(10);
    await p.request();
    assert.equal(swapped.length, 3);
  });

  it('cancel drops a waiting swap and rejects its callers', async () => {
    const { clock, p, swapped } = pacer(1);
    await p.request();
    const waiting = p.request();
    p.cancel(new Error('stopping'));
    await assert.rejects(waiting, /stopping/);
    clock.advance(100);
    assert.equal(swapped.length, 1, 'a cancelled swap ran');
    p.cancel(new Error('nothing waits')); // no-op
  });
});

describe('udp backend under churn', () => {
  it('a burst of lease events makes few swaps, each with the complete table; a lone event is swapped at once', async () => {
    const { world, backend, own } = setup({ fakeClock: true });
    world.swapCostMs = 1;
    const net = await backend.start(own, signal());
    const peer = (i: number): Lease => lease(`10.0.${10 + i}.0/24`, `198.18.1.${i + 1}`);

    // A lone event: in the data plane before apply returns to the event loop.
    const first = net.apply([{ type: 'added', lease: peer(0) }]);
    assert.equal(world.tables.length, 1);
    await first;

    // Events 1 ms apart (shorter than the gap after a 1 ms swap): the watcher
    // hands the ones that arrive during a wait over as the next batch.
    let applying: Promise<void> | null = null;
    const queued: LeaseEvent[] = [];
    const deliver = (ev: LeaseEvent): void => {
      queued.push(ev);
      if (applying !== null) return;
      const run = async (): Promise<void> => {
        while (queued.length > 0) await net.apply(queued.splice(0));
        applying = null;
      };
      applying = run();
    };
    for (let i = 1; i <= 40; i++) {
      world.clock.advance(1);
      deliver({ type: 'added', lease: peer(i) });
      await flush();
    }
    world.clock.advance(50);
    await flush();
    await (applying ?? Promise.resolve());
    const swaps = world.tables.length - 1;
    assert.ok(swaps >= 2 && swaps <= 12, `${swaps} swaps for 40 events 1 ms apart`);
    assert.deepEqual(world.tables.at(-1)?.map((r) => formatCidr(r)), Array.from({ length: 41 }, (_, i) => `10.0.${10 + i}.0/24`));

    // Quiet again: the next lone event is not held back.
    world.clock.advance(100);
    const n = world.tables.length;
    const last = net.apply([{ type: 'removed', lease: peer(3) }]);
    assert.equal(world.tables.length, n + 1);
    await last;
    assert.equal(world.tables.at(-1)?.length, 40);
  });

  it('stop drops a swap still waiting for its turn', async () => {
    const { world, backend, own } = setup({ fakeClock: true });
    world.swapCostMs = 1;
    const net = await backend.start(own, signal());
    await net.apply([{ type: 'added', lease: lease('10.0.7.0/24', '198.18.0.7') }]);
    const waiting = net.apply([{ type: 'added', lease: lease('10.0.8.0/24', '198.18.0.8') }]);
    assert.equal(world.clock.waiting, 1);
    await net.stop();
    await assert.rejects(waiting, (e: unknown) => isRudderError(e, 'E_BACKEND') && /stopped before/.test((e as Error).message));
    world.clock.advance(100);
    assert.equal(world.tables.length, 1);
  });
});

describe('backend registry', () => {
  const ctx = (type: string): BackendContext => ({
    config: validateConfig({ Network: '10.0.0.0/16', Backend: { Type: type } }),
    extIface: { name: 'eth0', index: 2, address: 1, publicIP: 1, mtu: 1500 },
    log: memoryLogger(0),
    portFlag: undefined,
  });

  it('creates the udp backend', () => {
    const b = createBackend(ctx('udp'));
    assert.equal(b.type, 'udp');
    assert.equal(b.overhead, 28);
  });

  it('creates the kernel backends too (vxlan, host-gw)', () => {
    assert.deepEqual([createBackend(ctx('vxlan')), createBackend(ctx('host-gw'))].map((b) => [b.type, b.overhead]), [['vxlan', 50], ['host-gw', 0]]);
  });
});
