/**
 * The host-gw backend's own logic with a fake netlink facade: peer diffing,
 * the "directly connected" rule, the NAT check, stale routes, reconcile and
 * stop. The kernel side is proven by test/e2e/kernel-backends.test.ts.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { validateConfig } from '../../src/config';
import { isRudderError } from '../../src/errors';
import { parseCidr, parseIp } from '../../src/ip/ipv4';
import { memoryLogger } from '../../src/log';
import type { Lease, LeaseEvent } from '../../src/subnet/lease';
import { RTPROT_RUDDER } from '../../src/netlink';
import type { BackendContext } from '../../src/backend/types';
import { HostGwPeerTable, createHostGwBackend, directlyConnected, planRoutes } from '../../src/backend/hostgw';
import { FALLBACK_METRIC } from '../../src/backend/udp';
import { FakeNetlink } from '../helpers/netlink-fake';
import { FakeTimer } from '../helpers/fake-timer';

const ip = (s: string): number => parseIp(s) as number;
const cidr = (s: string) => parseCidr(s, true) as { ip: number; prefix: number };

function lease(subnet: string, publicIP: string, backendType = 'host-gw'): Lease {
  return { subnet: cidr(subnet), publicIP: ip(publicIP), backendType, backendData: {}, expiresAt: null };
}
const add = (l: Lease): LeaseEvent => ({ type: 'added', lease: l });
const del = (l: Lease): LeaseEvent => ({ type: 'removed', lease: l });

describe('directlyConnected', () => {
  const addrs = [{ ip: ip('198.18.0.1'), prefix: 15 }, { ip: ip('192.0.2.7'), prefix: 32 }];
  it('accepts addresses on a connected subnet only', () => {
    assert.equal(directlyConnected(addrs, ip('198.19.255.1')), true);
    assert.equal(directlyConnected(addrs, ip('198.20.0.1')), false);
    assert.equal(directlyConnected(addrs, ip('192.0.2.8')), false, 'a /32 connects nothing');
    assert.equal(directlyConnected(addrs, ip('198.18.0.1')), false, 'our own address is no next hop');
  });
});

describe('HostGwPeerTable and planRoutes', () => {
  it('diffs leases: only host-gw, never our own, a moved PublicIP is removal + addition', () => {
    const t = new HostGwPeerTable(cidr('10.0.1.0/24'));
    const a = t.apply([add(lease('10.0.2.0/24', '198.18.0.2')), add(lease('10.0.1.0/24', '198.18.0.1')), add(lease('10.0.3.0/24', '198.18.0.3', 'vxlan'))]);
    assert.deepEqual(a.added.map((p) => p.key), ['10.0.2.0-24']);
    assert.deepEqual(a.ignored.map((l) => l.backendType), ['vxlan']);
    assert.deepEqual(t.apply([add(lease('10.0.3.0/24', '198.18.0.3', 'vxlan'))]).ignored, [], 'logged once');
    assert.deepEqual(t.apply([add(lease('10.0.2.0/24', '198.18.0.2'))]).added, [], 'unchanged');
    const moved = t.apply([add(lease('10.0.2.0/24', '198.18.0.9'))]);
    assert.deepEqual([moved.removed.map((p) => p.publicIP), moved.added.map((p) => p.publicIP)], [[ip('198.18.0.2')], [ip('198.18.0.9')]]);
    assert.deepEqual(t.apply([del(lease('10.0.2.0/24', '198.18.0.9'))]).removed.map((p) => p.key), ['10.0.2.0-24']);
  });

  it('planRoutes deletes every other Rudder route first and adds only missing ones', () => {
    const r = (dst: string, gw: string, oif: number) => ({ dst: cidr(dst), table: 254, oif, gateway: ip(gw), onlink: false, scope: 0, protocol: RTPROT_RUDDER, type: 1, metric: 0, prefsrc: undefined });
    const peers = [
      { key: '10.0.2.0-24', subnet: cidr('10.0.2.0/24'), publicIP: ip('198.18.0.2') },
      { key: '10.0.3.0-24', subnet: cidr('10.0.3.0/24'), publicIP: ip('198.18.0.3') },
    ];
    const plan = planRoutes(peers, [r('10.0.2.0/24', '198.18.0.2', 2), r('10.0.3.0/24', '10.0.3.0', 9), r('10.0.0.0/16', '0.0.0.0', 9)], 2);
    assert.deepEqual(plan.map((s) => `${s.kind} ${s.dst.ip >>> 8 & 255}/${s.dst.prefix}`), ['del-route 3/24', 'del-route 0/16', 'add-route 3/24']);
  });

  it("planRoutes removes the udp backend's unreachable fallback a crashed udp daemon left (backend switch)", () => {
    const fallback = { dst: cidr('10.0.0.0/16'), table: 254, oif: undefined, gateway: undefined, onlink: false, scope: 0, protocol: RTPROT_RUDDER, type: 7, metric: FALLBACK_METRIC, prefsrc: undefined };
    assert.deepEqual(planRoutes([], [fallback], 2), [{ kind: 'del-route', dst: cidr('10.0.0.0/16'), table: 254, metric: FALLBACK_METRIC }]);
  });
});

function setup(publicIP = '198.18.0.1') {
  const k = new FakeNetlink();
  const timer = new FakeTimer();
  const log = memoryLogger(1);
  const eth0 = k.addLink('eth0', undefined, '52:54:00:00:00:01');
  k.addrs.push({ index: eth0.index, ip: ip('198.18.0.1'), prefix: 15 });
  const ctx: BackendContext = {
    config: validateConfig({ Network: '10.0.0.0/16', Backend: { Type: 'host-gw' } }),
    extIface: { name: 'eth0', index: eth0.index, address: ip('198.18.0.1'), publicIP: ip(publicIP), mtu: 1500 },
    log,
    portFlag: undefined,
  };
  const backend = createHostGwBackend(ctx, { openNetlink: () => k, every: timer.every, after: timer.after });
  return { k, timer, log, backend, eth0, own: lease('10.0.1.0/24', publicIP) };
}

describe('host-gw backend', () => {
  it('fails with E_BACKEND when the PublicIP is not an interface address (NAT), touching nothing', async () => {
    const { k, backend, own } = setup('203.0.113.5');
    k.addRoute({ dst: cidr('10.0.5.0/24'), oif: 10, gateway: ip('198.18.0.5') });
    const nat = (e: unknown): boolean => isRudderError(e, 'E_BACKEND') && /203\.0\.113\.5 is not an address of eth0/.test(e.message);
    await assert.rejects(backend.prepare(new AbortController().signal), nat);
    await assert.rejects(backend.start(own, new AbortController().signal), nat);
    assert.deepEqual([k.calls, k.closed], [[], 2]);
  });

  it('removes stale routes and other backends\' devices at start; overhead 0', async () => {
    const { k, backend, own, eth0 } = setup();
    assert.equal(backend.overhead, 0);
    assert.deepEqual(await backend.prepare(new AbortController().signal), {});
    k.addLink('rudder0', 'tun');
    k.addLink('rudder.1', 'vxlan');
    k.addLink('rbr0', 'bridge');
    k.addRoute({ dst: cidr('10.0.5.0/24'), oif: eth0.index, gateway: ip('198.18.0.5') });
    k.addRoute({ dst: cidr('172.16.0.0/12'), oif: eth0.index, gateway: ip('198.18.0.250'), protocol: 3 });
    const net = await backend.start(own, new AbortController().signal);
    assert.equal(net.mtu, 1500);
    assert.deepEqual(k.links.map((l) => l.name).sort(), ['eth0', 'rbr0']);
    assert.deepEqual(k.routes.map((r) => r.protocol), [3]);
    await net.stop();
  });

  it('routes each reachable peer via its PublicIP; an unreachable one is logged once by lease and gets no route', async () => {
    const { k, backend, own, eth0, log, timer } = setup();
    const net = await backend.start(own, new AbortController().signal);
    k.calls = [];
    await net.apply([add(lease('10.0.2.0/24', '198.18.0.2')), add(lease('10.0.7.0/24', '192.0.2.9'))]);
    assert.deepEqual(k.calls, [`ensureRoute 10.0.2.0/24 via 198.18.0.2 oif ${eth0.index}`]);
    await timer.tick();
    await timer.tick();
    const errs = log.lines.filter((l) => l.includes('not routing lease 10.0.7.0-24') && l.includes('192.0.2.9'));
    assert.equal(errs.length, 1, log.lines.join('\n'));
    // Once the address is on a connected subnet, reconcile routes it.
    k.addrs.push({ index: eth0.index, ip: ip('192.0.2.1'), prefix: 24 });
    await timer.tick();
    assert.deepEqual(k.routes.map((r) => r.dst.ip).sort(), [ip('10.0.2.0'), ip('10.0.7.0')].sort());
    await net.stop();
  });

  it('reconcile restores a deleted route and removes a stray one; failures are logged, not thrown', async () => {
    const { k, backend, own, eth0, log, timer } = setup();
    const net = await backend.start(own, new AbortController().signal);
    await net.apply([add(lease('10.0.2.0/24', '198.18.0.2'))]);
    k.routes = [];
    k.addRoute({ dst: cidr('10.0.9.0/24'), oif: eth0.index, gateway: ip('198.18.0.9') });
    k.failOn = 'ensureRoute';
    await timer.tick();
    assert.ok(log.lines.some((l) => l.includes('reconcile failed')));
    k.failOn = undefined;
    await timer.tick();
    assert.deepEqual(k.routes.map((r) => [r.dst.ip, r.gateway]), [[ip('10.0.2.0'), ip('198.18.0.2')]]);
    await net.stop();
  });

  it('a removed lease loses its route; stop removes the rest, stops the timer and closes', async () => {
    const { k, backend, own, timer } = setup();
    const net = await backend.start(own, new AbortController().signal);
    const l2 = lease('10.0.2.0/24', '198.18.0.2');
    await net.apply([add(l2), add(lease('10.0.3.0/24', '198.18.0.3'))]);
    await net.apply([del(l2)]);
    assert.deepEqual(k.routes.map((r) => r.dst.ip), [ip('10.0.3.0')]);
    await net.stop();
    assert.deepEqual([k.routes, timer.cancelled, k.closed], [[], 1, 1]);
    await assert.rejects(net.apply([]), (e: unknown) => isRudderError(e, 'E_BACKEND'));
  });

  it('a kernel notification that a wanted route is gone starts a round; its own writes do not', async () => {
    const { k, backend, own, timer } = setup();
    const net = await backend.start(own, new AbortController().signal);
    assert.equal(k.watching, 1);
    await timer.runPending(); // the round after subscribing
    await net.apply([add(lease('10.0.2.0/24', '198.18.0.2'))]);
    await new Promise((r) => setImmediate(r));
    assert.equal(timer.waiting, 0, 'our own route write poked a round');
    k.removeRoutes((r) => r.dst.ip === ip('10.0.2.0'));
    await new Promise((r) => setImmediate(r));
    assert.equal(timer.waiting, 1);
    await timer.runPending();
    assert.deepEqual(k.routes.map((r) => r.dst.ip), [ip('10.0.2.0')]);
    await net.stop();
    assert.equal(k.watching, 0);
  });

  it('an aborted start closes the socket and leaves the routes as they were', async () => {
    const { k, backend, own } = setup();
    const ac = new AbortController();
    ac.abort();
    await assert.rejects(backend.start(own, ac.signal), (e: unknown) => isRudderError(e, 'E_BACKEND') && /aborted/.test(e.message));
    assert.equal(k.calls.length, 0);
  });
});
