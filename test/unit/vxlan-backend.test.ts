/**
 * The vxlan backend's own logic with a fake netlink facade: the VTEP MAC,
 * peer diffing, the order of kernel steps, stale-state removal, reconcile
 * and undo. The kernel side is proven by test/e2e/kernel-backends.test.ts.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { validateConfig } from '../../src/config';
import { isRudderError } from '../../src/errors';
import { parseCidr, parseIp } from '../../src/ip/ipv4';
import { memoryLogger } from '../../src/log';
import type { Lease, LeaseEvent } from '../../src/subnet/lease';
import { RTPROT_RUDDER } from '../../src/netlink';
import { FALLBACK_METRIC } from '../../src/backend/udp';
import type { BackendContext } from '../../src/backend/types';
import {
  VxlanPeerTable,
  changeSteps,
  createVxlanBackend,
  planReconcile,
  programSteps,
  unprogramSteps,
  peerUse,
  vtepMac,
  type VxlanPeer,
} from '../../src/backend/vxlan';
import { FakeNetlink } from '../helpers/netlink-fake';
import { FakeTimer } from '../helpers/fake-timer';

const ip = (s: string): number => parseIp(s) as number;
const cidr = (s: string) => parseCidr(s, true) as { ip: number; prefix: number };
const MAC2 = '02:00:00:00:00:02';
const MAC3 = '02:00:00:00:00:03';

function lease(subnet: string, publicIP: string, backendData: Record<string, unknown> = {}, backendType = 'vxlan'): Lease {
  return { subnet: cidr(subnet), publicIP: ip(publicIP), backendType, backendData, expiresAt: null };
}
const add = (l: Lease): LeaseEvent => ({ type: 'added', lease: l });
const del = (l: Lease): LeaseEvent => ({ type: 'removed', lease: l });
const peer = (subnet: string, publicIP: string, mac: string): VxlanPeer => ({ key: subnet.replace('/', '-'), subnet: cidr(subnet), publicIP: ip(publicIP), mac });

describe('vtepMac', () => {
  it('is stable, locally administered unicast, and differs per host and VNI', () => {
    const a = vtepMac(ip('198.18.0.1'), 1);
    assert.equal(a, vtepMac(ip('198.18.0.1'), 1));
    assert.match(a, /^[0-9a-f]{2}(:[0-9a-f]{2}){5}$/);
    const first = parseInt(a.slice(0, 2), 16);
    assert.equal(first & 0x01, 0, 'unicast');
    assert.equal(first & 0x02, 2, 'locally administered');
    assert.notEqual(vtepMac(ip('198.18.0.2'), 1), a);
    assert.notEqual(vtepMac(ip('198.18.0.1'), 2), a);
  });
});

describe('VxlanPeerTable', () => {
  const own = cidr('10.0.1.0/24');

  it('adds vxlan leases with a VtepMAC, never our own subnet', () => {
    const t = new VxlanPeerTable(own);
    const ch = t.apply([add(lease('10.0.2.0/24', '198.18.0.2', { VtepMAC: MAC2.toUpperCase() })), add(lease('10.0.1.0/24', '198.18.0.1', { VtepMAC: MAC3 }))]);
    assert.deepEqual(ch.added, [peer('10.0.2.0/24', '198.18.0.2', MAC2)]);
    assert.deepEqual(ch.removed, []);
    assert.deepEqual(t.list().map((p) => p.key), ['10.0.2.0-24']);
  });

  it('an unchanged lease changes nothing; a changed MAC or PublicIP is removal + addition', () => {
    const t = new VxlanPeerTable(own);
    t.apply([add(lease('10.0.2.0/24', '198.18.0.2', { VtepMAC: MAC2 }))]);
    const same = t.apply([add(lease('10.0.2.0/24', '198.18.0.2', { VtepMAC: MAC2 }))]);
    assert.deepEqual([same.added, same.removed], [[], []]);
    const moved = t.apply([add(lease('10.0.2.0/24', '198.18.0.9', { VtepMAC: MAC3 }))]);
    assert.deepEqual(moved.removed, [peer('10.0.2.0/24', '198.18.0.2', MAC2)]);
    assert.deepEqual(moved.added, [peer('10.0.2.0/24', '198.18.0.9', MAC3)]);
    const gone = t.apply([del(lease('10.0.2.0/24', '198.18.0.9', { VtepMAC: MAC3 }))]);
    assert.deepEqual(gone.removed, [peer('10.0.2.0/24', '198.18.0.9', MAC3)]);
    assert.deepEqual(t.list(), []);
  });

  it('reports leases of another backend and vxlan leases without a valid MAC once, and never programs them', () => {
    const t = new VxlanPeerTable(own);
    const udp = lease('10.0.3.0/24', '198.18.0.3', {}, 'udp');
    const bad = lease('10.0.4.0/24', '198.18.0.4', { VtepMAC: 'nope' });
    const first = t.apply([add(udp), add(bad)]);
    assert.deepEqual([first.ignored, first.invalid, first.added], [[udp], [bad], []]);
    const again = t.apply([add(udp), add(bad)]);
    assert.deepEqual([again.ignored, again.invalid], [[], []]);
    // A peer that switches away from vxlan loses its programming.
    t.apply([add(lease('10.0.5.0/24', '198.18.0.5', { VtepMAC: MAC2 }))]);
    const switched = t.apply([add(lease('10.0.5.0/24', '198.18.0.5', {}, 'host-gw'))]);
    assert.deepEqual(switched.removed.map((p) => p.key), ['10.0.5.0-24']);
  });
});

describe('vxlan kernel steps', () => {
  const p = peer('10.0.2.0/24', '198.18.0.2', MAC2);

  it('programs neighbor, FDB, route and undoes them in reverse', () => {
    assert.deepEqual(programSteps(p).map((s) => s.kind), ['add-neigh', 'add-fdb', 'add-route']);
    assert.deepEqual(unprogramSteps(p, 10, peerUse([])).map((s) => s.kind), ['del-route', 'del-fdb', 'del-neigh']);
  });

  it('keeps an FDB entry another current peer still uses (same host, new subnet)', () => {
    const moved = peer('10.0.7.0/24', '198.18.0.2', MAC2);
    assert.deepEqual(unprogramSteps(p, 10, peerUse([moved])).map((s) => s.kind), ['del-route', 'del-neigh']);
  });

  it('the peer table counts who uses an FDB entry and a VTEP address: the last user removed takes them', () => {
    const t = new VxlanPeerTable(cidr('10.0.1.0/24'));
    // One host (same PublicIP, same MAC) holding two subnets, as after a move whose old lease lives on.
    const a = lease('10.0.2.0/24', '198.18.0.2', { VtepMAC: MAC2 });
    const b = lease('10.0.7.0/24', '198.18.0.2', { VtepMAC: MAC2 });
    t.apply([add(a), add(b)]);
    const first = t.apply([del(a)]);
    assert.deepEqual(changeSteps(first, 10, t).map((s) => s.kind), ['del-route', 'del-neigh'], 'FDB kept: b still uses it');
    const last = t.apply([del(b)]);
    assert.deepEqual(changeSteps(last, 10, t).map((s) => s.kind), ['del-route', 'del-fdb', 'del-neigh']);
    assert.equal(t.usesFdb(MAC2, ip('198.18.0.2')), false);
    // A changed lease (new MAC) counts as remove + add: the old MAC's entry goes, the VTEP address stays in use.
    t.apply([add(a)]);
    const changed = t.apply([add(lease('10.0.2.0/24', '198.18.0.2', { VtepMAC: MAC3 }))]);
    assert.deepEqual(changeSteps(changed, 10, t).map((s) => s.kind), ['del-route', 'del-fdb', 'add-neigh', 'add-fdb', 'add-route']);
    assert.equal(t.usesVtep(ip('10.0.2.0')), true);
  });

  it('a batch removes everything before it adds anything', () => {
    const q = peer('10.0.3.0/24', '198.18.0.3', MAC3);
    const kinds = changeSteps({ removed: [p], added: [q] }, 10, peerUse([q])).map((s) => s.kind);
    assert.deepEqual(kinds, ['del-route', 'del-fdb', 'del-neigh', 'add-neigh', 'add-fdb', 'add-route']);
  });

  it("planReconcile removes the udp backend's unreachable fallback a crashed udp daemon left (backend switch)", () => {
    const fallback = { dst: cidr('10.0.0.0/16'), table: 254, oif: undefined, gateway: undefined, onlink: false, scope: 0, protocol: RTPROT_RUDDER, type: 7, metric: FALLBACK_METRIC, prefsrc: undefined };
    assert.deepEqual(planReconcile([], { routes: [fallback], neighbors: [], fdb: [] }, 10), [{ kind: 'del-route', dst: cidr('10.0.0.0/16'), table: 254, metric: FALLBACK_METRIC }]);
  });

  it('planReconcile removes stale routes/FDB/neighbors first, then adds only what is missing', () => {
    const q = peer('10.0.3.0/24', '198.18.0.3', MAC3);
    const route = (dst: string, via: string, oif: number, onlink = true) => ({
      dst: cidr(dst), table: 254, oif, gateway: ip(via), onlink, scope: 0, protocol: RTPROT_RUDDER, type: 1, metric: 0, prefsrc: undefined,
    });
    const plan = planReconcile(
      [p, q],
      {
        routes: [route('10.0.2.0/24', '10.0.2.0', 10), route('10.0.3.0/24', '198.18.0.3', 2, false), route('10.0.9.0/24', '10.0.9.0', 10)],
        neighbors: [{ index: 10, ip: ip('10.0.2.0'), mac: MAC2 }, { index: 10, ip: ip('10.0.9.0'), mac: '02:00:00:00:00:09' }],
        fdb: [{ index: 10, mac: MAC2, dst: ip('198.18.0.2') }, { index: 10, mac: '02:00:00:00:00:09', dst: ip('198.18.0.9') }],
      },
      10,
    );
    assert.deepEqual(
      plan.map((s) => `${s.kind} ${'dst' in s && typeof s.dst === 'object' ? `${s.dst.ip >>> 24}.${(s.dst.ip >>> 16) & 255}.${(s.dst.ip >>> 8) & 255}` : ''}`.trim()),
      ['del-route 10.0.3', 'del-route 10.0.9', 'del-fdb', 'del-neigh', 'add-neigh', 'add-fdb', 'add-route 10.0.3'],
    );
    assert.deepEqual(planReconcile([p], { routes: [route('10.0.2.0/24', '10.0.2.0', 10)], neighbors: [{ index: 10, ip: ip('10.0.2.0'), mac: MAC2 }], fdb: [{ index: 10, mac: MAC2, dst: ip('198.18.0.2') }] }, 10), []);
  });
});

function setup(opts: { vni?: number } = {}) {
  const k = new FakeNetlink();
  const timer = new FakeTimer();
  const log = memoryLogger(1);
  const eth0 = k.addLink('eth0', undefined, '52:54:00:00:00:01');
  const ctx: BackendContext = {
    config: validateConfig({ Network: '10.0.0.0/16', Backend: { Type: 'vxlan', ...(opts.vni !== undefined ? { VNI: opts.vni } : {}) } }),
    extIface: { name: 'eth0', index: eth0.index, address: ip('198.18.0.1'), publicIP: ip('198.18.0.1'), mtu: 1500 },
    log,
    portFlag: undefined,
  };
  const backend = createVxlanBackend(ctx, { openNetlink: () => k, every: timer.every, after: timer.after });
  const own = lease('10.0.1.0/24', '198.18.0.1', { VtepMAC: vtepMac(ip('198.18.0.1'), opts.vni ?? 1) });
  return { k, timer, log, backend, own, eth0 };
}

describe('vxlan backend', () => {
  it('prepare publishes the derived VTEP MAC; start builds rudder.<VNI> with it', async () => {
    const { k, backend, own, eth0 } = setup({ vni: 7 });
    assert.equal(backend.overhead, 50);
    const data = await backend.prepare(new AbortController().signal);
    assert.deepEqual(data, { VtepMAC: vtepMac(ip('198.18.0.1'), 7) });
    assert.equal(k.calls.length, 0, 'prepare touches no kernel state');
    const net = await backend.start(own, new AbortController().signal);
    assert.equal(net.mtu, 1450);
    assert.deepEqual(k.vxlanSpecs[0], { name: 'rudder.7', vni: 7, port: 8472, local: ip('198.18.0.1'), underlay: eth0.index, mac: data['VtepMAC'], learning: false });
    const dev = k.link('rudder.7');
    assert.ok(dev);
    assert.deepEqual([dev.mtu, dev.up, dev.mac], [1450, true, data['VtepMAC']]);
    assert.deepEqual(k.addrs.filter((a) => a.index === dev.index).map((a) => [a.ip, a.prefix]), [[ip('10.0.1.0'), 32]]);
    await net.stop();
  });

  it('takes over flannel.<VNI> holding its VNI and port (migration from flannel), and logs it', async () => {
    const { k, backend, own, log } = setup();
    k.addLink('flannel.1', 'vxlan', '02:00:00:00:00:f1', { vxlan: { vni: 1, port: 8472 } });
    k.addLink('flannel.2', 'vxlan', '02:00:00:00:00:f2', { vxlan: { vni: 2, port: 8472 } });
    const net = await backend.start(own, new AbortController().signal);
    assert.equal(k.link('flannel.1'), undefined, 'flannel.1 replaced');
    assert.ok(k.link('flannel.2'), 'a device of another VNI is not ours to touch');
    assert.ok(k.link('rudder.1'));
    assert.ok(log.lines.some((l) => l.includes("replaced flannel's VXLAN device") && l.includes('flannel.1')), log.lines.join('\n'));
    await net.stop();
  });

  it('refuses to start when another device holds its VNI and port, naming it and what to do', async () => {
    const { k, backend, own } = setup();
    k.addLink('vx0', 'vxlan', '02:00:00:00:00:aa', { vxlan: { vni: 1, port: 8472 } });
    await assert.rejects(backend.start(own, new AbortController().signal), (e: unknown) => {
      assert.ok(isRudderError(e, 'E_BACKEND'), String(e));
      assert.match(e.message, /device vx0 already holds VNI 1 on UDP port 8472, which rudder\.1 needs: delete it \(ip link del vx0\) or set another Backend\.VNI or Backend\.Port/);
      return true;
    });
    assert.ok(k.link('vx0'), 'left alone');
    assert.equal(k.link('rudder.1'), undefined, 'nothing of ours left behind');
  });

  it('removes other backends\' devices and stale Rudder routes/neighbors/FDB at start, and nothing else', async () => {
    const { k, backend, own, eth0 } = setup();
    k.addLink('rudder0', 'tun');
    k.addLink('rudder.9', 'vxlan', '02:00:00:00:00:99');
    k.addLink('docker0', 'bridge');
    k.addRoute({ dst: cidr('10.0.5.0/24'), oif: eth0.index, gateway: ip('198.18.0.5') }); // host-gw leftover
    k.addRoute({ dst: cidr('192.168.0.0/16'), oif: eth0.index, gateway: ip('198.18.0.250'), protocol: 4 }); // someone else's
    const old = k.addLink('rudder.1', 'vxlan', vtepMac(ip('198.18.0.1'), 1)); // our device from a crashed run
    k.neigh.push({ index: old.index, ip: ip('10.0.6.0'), mac: MAC2 });
    k.fdb.push({ index: old.index, mac: MAC2, dst: ip('198.18.0.6') });
    k.addRoute({ dst: cidr('10.0.6.0/24'), oif: old.index, gateway: ip('10.0.6.0'), onlink: true });
    const net = await backend.start(own, new AbortController().signal);
    assert.deepEqual(k.links.map((l) => l.name).sort(), ['docker0', 'eth0', 'rudder.1']);
    assert.equal(k.link('rudder.1')?.index, old.index, 'a matching device is kept');
    assert.deepEqual(k.routes.map((r) => r.protocol), [4]);
    assert.deepEqual([k.neigh, k.fdb], [[], []]);
    await net.stop();
  });

  it('apply programs neighbor, FDB, route per peer and removes them in reverse', async () => {
    const { k, backend, own } = setup();
    const net = await backend.start(own, new AbortController().signal);
    const l2 = lease('10.0.2.0/24', '198.18.0.2', { VtepMAC: MAC2 });
    k.calls = [];
    await net.apply([add(l2), add(lease('10.0.3.0/24', '198.18.0.3', {}, 'udp'))]);
    const idx = k.link('rudder.1')?.index;
    assert.deepEqual(k.calls, [`ensureNeighbor 10.0.2.0 ${MAC2}`, `ensureFdb ${MAC2} 198.18.0.2`, `ensureRoute 10.0.2.0/24 via 10.0.2.0 onlink oif ${idx}`]);
    k.calls = [];
    await net.apply([del(l2)]);
    assert.deepEqual(k.calls, ['deleteRoute 10.0.2.0/24', `deleteFdb ${MAC2} 198.18.0.2`, 'deleteNeighbor 10.0.2.0']);
    assert.deepEqual([k.routes, k.neigh, k.fdb], [[], [], []]);
    await net.stop();
  });

  it('a failing peer is reported, the others still programmed, and reconcile repairs it', async () => {
    const { k, backend, own, timer, log } = setup();
    const net = await backend.start(own, new AbortController().signal);
    k.failOn = `ensureFdb ${MAC2}`;
    await assert.rejects(
      net.apply([add(lease('10.0.2.0/24', '198.18.0.2', { VtepMAC: MAC2 })), add(lease('10.0.3.0/24', '198.18.0.3', { VtepMAC: MAC3 }))]),
      (e: unknown) => isRudderError(e, 'E_BACKEND'),
    );
    assert.ok(k.routes.some((r) => r.dst.ip === ip('10.0.3.0')));
    assert.ok(!k.routes.some((r) => r.dst.ip === ip('10.0.2.0')), 'no route before its FDB entry exists');
    await timer.tick(); // still failing: logged, not thrown
    assert.ok(log.lines.some((l) => l.includes('reconcile failed')));
    k.failOn = undefined;
    await timer.tick();
    assert.ok(k.routes.some((r) => r.dst.ip === ip('10.0.2.0')));
    assert.deepEqual(k.fdb.map((f) => f.mac).sort(), [MAC2, MAC3]);
    await net.stop();
  });

  it('reconcile re-creates a deleted device and re-programs every peer; restores a deleted route', async () => {
    const { k, backend, own, timer } = setup();
    const net = await backend.start(own, new AbortController().signal);
    await net.apply([add(lease('10.0.2.0/24', '198.18.0.2', { VtepMAC: MAC2 }))]);
    const dev = k.link('rudder.1');
    k.links = k.links.filter((l) => l !== dev);
    k.routes = [];
    k.neigh = [];
    k.fdb = [];
    await timer.tick();
    const again = k.link('rudder.1');
    assert.ok(again && again.up && again.mtu === 1450);
    assert.deepEqual([k.neigh.length, k.fdb.length, k.routes.length], [1, 1, 1]);
    assert.equal(k.routes[0]?.oif, again.index);
    k.routes = [];
    await timer.tick();
    assert.equal(k.routes.length, 1);
    await net.stop();
  });

  it('a notification that a peer\'s FDB entry is gone starts a round that restores it; its own writes do not', async () => {
    const { k, backend, own, timer } = setup();
    const net = await backend.start(own, new AbortController().signal);
    await timer.runPending(); // the round after subscribing
    await net.apply([add(lease('10.0.2.0/24', '198.18.0.2', { VtepMAC: MAC2 }))]);
    await new Promise((r) => setImmediate(r));
    assert.equal(timer.waiting, 0, 'our own writes poked a round');
    const dev = k.link('rudder.1');
    assert.ok(dev);
    await k.deleteFdbs([{ index: dev.index, mac: MAC2, dst: ip('198.18.0.2') }]);
    await new Promise((r) => setImmediate(r));
    assert.equal(timer.waiting, 1);
    await timer.runPending();
    assert.deepEqual(k.fdb.map((f) => [f.mac, f.dst]), [[MAC2, ip('198.18.0.2')]]);
    await net.stop();
  });

  it('start undoes itself on a failure or an abort', async () => {
    {
      const { k, backend, own } = setup();
      k.failOn = 'ensureMtu';
      await assert.rejects(backend.start(own, new AbortController().signal), /injected failure/);
      assert.equal(k.link('rudder.1'), undefined);
      assert.equal(k.closed, 1);
    }
    {
      const { k, backend, own } = setup();
      const ac = new AbortController();
      k.onCall = (c) => (c.startsWith('ensureLinkUp') ? ac.abort() : undefined);
      await assert.rejects(backend.start(own, ac.signal), (e: unknown) => isRudderError(e, 'E_BACKEND') && /aborted/.test(e.message));
      assert.equal(k.link('rudder.1'), undefined);
      assert.equal(k.closed, 1);
    }
  });

  it('stop unprograms peers, deletes the device, stops the timer and closes; apply after stop fails', async () => {
    const { k, backend, own, timer } = setup();
    const net = await backend.start(own, new AbortController().signal);
    await net.apply([add(lease('10.0.2.0/24', '198.18.0.2', { VtepMAC: MAC2 }))]);
    k.calls = [];
    await net.stop();
    await net.stop();
    assert.deepEqual(k.calls, ['deleteRoute 10.0.2.0/24', `deleteFdb ${MAC2} 198.18.0.2`, 'deleteNeighbor 10.0.2.0', 'deleteLink rudder.1']);
    assert.deepEqual([timer.cancelled, k.closed, k.link('rudder.1')], [1, 1, undefined]);
    await assert.rejects(net.apply([]), (e: unknown) => isRudderError(e, 'E_BACKEND'));
  });
});
