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
import type { DataPlane, DataPlaneCounters, DataPlaneOffloads, DataPlaneOptions, DataPlaneRoute } from '../../src/dataplane/types';
import type { Lease, LeaseEvent } from '../../src/subnet/lease';
import { RTPROT_RUDDER, type AddrSpec, type LinkInfo, type RouteInfo, type RouteKey, type RouteSpec } from '../../src/netlink';
import { createUdpBackend, type UdpNetlink } from '../../src/backend/udp';
import { createBackend } from '../../src/backend/registry';
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

class World {
  calls: string[] = [];
  tun: LinkInfo | null = null;
  routes: RouteInfo[] = [];
  opts: DataPlaneOptions | undefined;
  tables: DataPlaneRoute[][] = [];
  counters: DataPlaneCounters = { ...zero };
  dpStopped = 0;
  nlClosed = 0;
  failOn: string | undefined;
  onCall: ((op: string) => void) | undefined;
  tick: (() => void) | undefined;
  cancelled = 0;
  offloads: DataPlaneOffloads | undefined;

  private step(op: string): void {
    this.calls.push(op);
    this.onCall?.(op);
    if (this.failOn === op) throw new Error(`injected failure in ${op}`);
  }

  openDataPlane = (o: DataPlaneOptions): DataPlane => {
    this.step('openDataPlane');
    this.opts = o;
    this.tun = { index: 7, name: o.tunName, mtu: 1500, up: false, kind: 'tun', mac: undefined };
    return {
      ...(this.offloads !== undefined ? { offloads: this.offloads } : {}),
      setRoutes: (r) => void this.tables.push([...r]),
      counters: () => ({ ...this.counters }),
      stop: () => {
        this.dpStopped++;
        this.tun = null; // the data plane removes its TUN and, with it, the TUN's routes
        this.routes = this.routes.filter((x) => x.oif !== 7);
      },
    };
  };

  openNetlink = (): UdpNetlink => ({
    listLinks: async () => (this.step('listLinks'), this.tun !== null ? [this.tun] : []),
    linkByName: async (name) => (this.step(`linkByName ${name}`), this.tun !== null && this.tun.name === name ? this.tun : null),
    ensureAddresses: async (index: number, want: readonly AddrSpec[]) => {
      this.step(`ensureAddresses ${index} ${want.map((a) => `${a.ip}/${a.prefix}`).join(',')}`);
      return { changed: true, added: [...want], removed: [] };
    },
    ensureMtu: async (index, mtu) => (this.step(`ensureMtu ${index} ${mtu}`), { changed: true }),
    ensureLinkUp: async (index) => (this.step(`ensureLinkUp ${index}`), { changed: true }),
    ensureRoute: async (s: RouteSpec) => {
      this.step(`ensureRoute ${formatCidr(s.dst)} oif=${s.oif} scope=${s.scope} proto=${s.protocol}`);
      this.routes.push({ dst: s.dst, table: 254, oif: s.oif, gateway: undefined, onlink: false, scope: 253, protocol: s.protocol ?? 0, type: 1, metric: 0, prefsrc: undefined });
      return { changed: true };
    },
    deleteRoute: async (k: RouteKey) => {
      this.step(`deleteRoute ${formatCidr(k.dst)}`);
      const before = this.routes.length;
      this.routes = this.routes.filter((r) => !(r.dst.ip === k.dst.ip && r.dst.prefix === k.dst.prefix && (k.oif === undefined || r.oif === k.oif)));
      return this.routes.length < before;
    },
    listRoutes: async (f = {}) => (this.step('listRoutes'), this.routes.filter((r) => f.protocol === undefined || r.protocol === f.protocol)),
    deleteLink: async (index) => (this.step(`deleteLink ${index}`), true),
    close: () => void this.nlClosed++,
  });

  every = (_ms: number, fn: () => void): (() => void) => {
    this.tick = fn;
    return () => void this.cancelled++;
  };
}

function setup(opts: { config?: unknown; portFlag?: number; mtu?: number; env?: NodeJS.ProcessEnv } = {}) {
  const world = new World();
  const log = memoryLogger(1);
  const ctx: BackendContext = {
    config: validateConfig(opts.config ?? { Network: '10.0.0.0/16' }),
    extIface: { name: 'eth0', index: 2, address: ip('198.18.0.1'), publicIP: ip('198.18.0.1'), mtu: opts.mtu ?? 1500 },
    log,
    portFlag: opts.portFlag,
  };
  const backend = createUdpBackend(ctx, { openDataPlane: world.openDataPlane, openNetlink: world.openNetlink, every: world.every, env: opts.env ?? {} });
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

  it('offloads: on by default, off with RUDDER_UDP_OFFLOADS=0/false, bad values refused; what the data plane got is logged', async () => {
    const all = { requested: true, tunVnetHdr: true, tso: true, uso: true, udpGso: true, udpGro: true, busyPoll: true, note: '' };
    const on = setup();
    on.world.offloads = all;
    await on.backend.start(on.own, signal());
    assert.equal(on.world.opts?.offloads, true);
    assert.ok(on.log.lines.some((l) => /info .*udp data plane offloads on .*tso=true uso=true udpGso=true udpGro=true coalesce=true busyPoll=true/.test(l)), on.log.lines.join('\n'));

    for (const v of ['0', 'false', 'OFF']) {
      const off = setup({ env: { RUDDER_UDP_OFFLOADS: v } });
      off.world.offloads = { requested: false, tunVnetHdr: false, tso: false, uso: false, udpGso: false, udpGro: false, busyPoll: true, note: '' };
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
    });
    assert.ok(world.calls.includes(`ensureAddresses 7 ${ip('10.0.5.0')}/32`));
    assert.ok(world.calls.includes('ensureMtu 7 1422'));
    assert.ok(world.calls.includes('ensureLinkUp 7'));
    assert.ok(world.calls.includes(`ensureRoute 10.0.0.0/16 oif=7 scope=link proto=${RTPROT_RUDDER}`));
    // the data plane exists before rudder0 is configured
    assert.ok(world.calls.indexOf('openDataPlane') < world.calls.indexOf('ensureMtu 7 1422'));
  });

  it('start removes routes an earlier run left behind, and nobody else’s', async () => {
    const { world, backend, own } = setup();
    const stale = (dst: string, protocol: number): RouteInfo => ({ dst: cidr(dst), table: 254, oif: 3, gateway: ip('198.18.0.2'), onlink: false, scope: 0, protocol, type: 1, metric: 0, prefsrc: undefined });
    world.routes.push(stale('10.0.8.0/24', RTPROT_RUDDER), stale('192.0.2.0/24', 4));
    await backend.start(own, signal());
    assert.deepEqual(world.routes.map((r) => formatCidr(r.dst)).sort(), ['10.0.0.0/16', '192.0.2.0/24']);
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
