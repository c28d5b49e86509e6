/**
 * The vxlan backend's IPv6 side with plain data and the fake netlink facade:
 * the IPv6 VTEP MAC, the IPv6 peer table (keyed by the whole lease key; a
 * lease without IPv6 reported once), the order of kernel steps, stale state,
 * and the devices of dual-stack and IPv6-only networks. The kernel side is
 * proven by test/e2e/ipv6-vxlan.test.ts.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { validateConfig } from '../../src/config';
import { parseCidr, parseIp } from '../../src/ip/ipv4';
import { parseCidr6, parseIp6, type Cidr6 } from '../../src/ip/ipv6';
import { memoryLogger } from '../../src/log';
import { NO_IPV4, type Lease, type LeaseEvent } from '../../src/subnet/lease';
import { IPV6_DEFAULT_METRIC, RTPROT_RUDDER } from '../../src/netlink';
import type { BackendContext } from '../../src/backend/types';
import { createVxlanBackend, vtepMac, type Vxlan6Peer } from '../../src/backend/vxlan';
import {
  Vxlan6PeerTable,
  changeSteps6,
  describeStep6,
  isKernelNeighbor6,
  peerUse6,
  planReconcile6,
  programSteps6,
  stopSteps6,
  unprogramSteps6,
  vtepMac6,
} from '../../src/backend/vxlan/peers';
import { FakeNetlink } from '../helpers/netlink-fake';
import { FakeTimer } from '../helpers/fake-timer';

const ip = (s: string): number => parseIp(s) as number;
const v6 = (s: string): bigint => parseIp6(s) as bigint;
const cidr = (s: string) => parseCidr(s, true) as { ip: number; prefix: number };
const cidr6 = (s: string): Cidr6 => parseCidr6(s, true) as Cidr6;
const MAC2 = '02:00:00:00:00:02';
const MAC6_2 = '02:00:00:00:06:02';
const MAC6_3 = '02:00:00:00:06:03';

/** A dual-stack lease of host N (10.0.N.0/24, fd00:42:0:N::/64, 198.18.0.N, 2001:2::N); `v4: false` makes it IPv6-only, `v6: false` IPv4-only. */
function lease(n: number, o: { v4?: boolean; v6?: boolean; mac?: string; mac6?: string | null; type?: string } = {}): Lease {
  const withV6 = o.v6 ?? true;
  return {
    subnet: o.v4 === false ? NO_IPV4 : cidr(`10.0.${n}.0/24`),
    publicIP: ip(`198.18.0.${n}`),
    backendType: o.type ?? 'vxlan',
    backendData: o.v4 === false ? {} : { VtepMAC: o.mac ?? `02:00:00:00:00:0${n}` },
    ...(withV6
      ? {
          ipv6Subnet: cidr6(`fd00:42:0:${n}::/64`),
          publicIPv6: v6(`2001:2::${n}`),
          ...(o.mac6 === null ? {} : { backendV6Data: { VNI: 1, VtepMAC: o.mac6 ?? `02:00:00:00:06:0${n}` } }),
        }
      : {}),
    expiresAt: null,
  };
}
const add = (l: Lease): LeaseEvent => ({ type: 'added', lease: l });
const del = (l: Lease): LeaseEvent => ({ type: 'removed', lease: l });
const peer6 = (n: number, mac = `02:00:00:00:06:0${n}`): Vxlan6Peer => ({ key: `10.0.${n}.0-24&fd00:42:0:${n}::-64`, subnet: cidr6(`fd00:42:0:${n}::/64`), publicIPv6: v6(`2001:2::${n}`), mac });

describe('vtepMac6', () => {
  it('is stable, locally administered unicast, per host and VNI, and never the IPv4 device’s', () => {
    const a = vtepMac6(v6('2001:2::1'), 1);
    assert.equal(a, vtepMac6(v6('2001:2::1'), 1));
    assert.match(a, /^[0-9a-f]{2}(:[0-9a-f]{2}){5}$/);
    assert.equal(parseInt(a.slice(0, 2), 16) & 0x03, 0x02);
    assert.notEqual(vtepMac6(v6('2001:2::2'), 1), a);
    assert.notEqual(vtepMac6(v6('2001:2::1'), 2), a);
    assert.notEqual(vtepMac(ip('198.18.0.1'), 1), a);
  });
});

describe('Vxlan6PeerTable', () => {
  it('adds leases with an IPv6 subnet, PublicIPv6 and BackendV6Data VtepMAC; never our own', () => {
    const t = new Vxlan6PeerTable(lease(1));
    const ch = t.apply([add(lease(1)), add(lease(2, { mac6: MAC6_2.toUpperCase() })), add(lease(3))]);
    assert.deepEqual(ch.added, [peer6(2), peer6(3)]);
    assert.deepEqual([ch.removed, ch.invalid, ch.ignored], [[], [], []]);
    assert.equal(t.byVtep(v6('fd00:42:0:2::'))?.mac, MAC6_2);
    assert.equal(t.byMac(MAC6_3)?.publicIPv6, v6('2001:2::3'));
    assert.equal(t.bySubnet(cidr6('fd00:42:0:3::/64'))?.key, peer6(3).key);
    assert.deepEqual(t.list(), [peer6(2), peer6(3)]);
  });

  it('keys IPv6-only leases by the whole key: 0.0.0.0/0 is every such lease’s IPv4 part', () => {
    const t = new Vxlan6PeerTable(lease(1, { v4: false }));
    const ch = t.apply([add(lease(2, { v4: false })), add(lease(3, { v4: false }))]);
    assert.deepEqual(ch.added.map((p) => p.key), ['0.0.0.0-0&fd00:42:0:2::-64', '0.0.0.0-0&fd00:42:0:3::-64']);
    assert.deepEqual(t.apply([del(lease(2, { v4: false }))]).removed.map((p) => p.key), ['0.0.0.0-0&fd00:42:0:2::-64']);
    assert.equal(t.size, 1);
  });

  it('a lease without IPv6 (an IPv4-only host) or without a BackendV6Data MAC is reported once, until it changes', () => {
    const t = new Vxlan6PeerTable(lease(1));
    assert.equal(t.apply([add(lease(2, { v6: false }))]).invalid.length, 1);
    assert.equal(t.apply([add(lease(2, { v6: false }))]).invalid.length, 0, 'once');
    assert.equal(t.apply([add(lease(3, { mac6: null }))]).invalid.length, 1);
    assert.deepEqual(t.apply([add(lease(3))]).added, [peer6(3)], 'usable once it has its MAC');
    assert.equal(t.apply([add(lease(4, { type: 'host-gw' }))]).ignored.length, 1);
  });

  it('a moved PublicIPv6 or MAC replaces the peer; the same lease again changes nothing', () => {
    const t = new Vxlan6PeerTable(lease(1));
    t.apply([add(lease(2))]);
    assert.deepEqual(t.apply([add(lease(2))]), { removed: [], added: [], ignored: [], invalid: [] });
    const ch = t.apply([add(lease(2, { mac6: MAC6_3 }))]);
    assert.deepEqual([ch.removed, ch.added], [[peer6(2)], [peer6(2, MAC6_3)]]);
  });
});

describe('IPv6 kernel steps', () => {
  it('programs neighbor, FDB, route; undoes them in reverse, keeping what another peer still uses', () => {
    const p = peer6(2);
    assert.deepEqual(programSteps6(p).map(describeStep6), ['neighbor fd00:42:0:2:: lladdr 02:00:00:00:06:02', 'fdb 02:00:00:00:06:02 dst 2001:2::2', 'route fd00:42:0:2::/64 via fd00:42:0:2:: onlink']);
    assert.deepEqual(unprogramSteps6(p, 10, peerUse6([])).map(describeStep6), [
      'delete route fd00:42:0:2::/64 via fd00:42:0:2:: oif 10',
      'delete fdb 02:00:00:00:06:02 dst 2001:2::2',
      'delete neighbor fd00:42:0:2::',
    ]);
    const moved = { ...peer6(9, MAC6_2), publicIPv6: v6('2001:2::2') };
    assert.deepEqual(unprogramSteps6(p, 10, peerUse6([moved])).map((s) => s.kind), ['del-route', 'del-neigh'], 'the FDB entry is the moved peer’s too');
    assert.deepEqual(changeSteps6({ removed: [p], added: [moved] }, 10, peerUse6([moved])).map((s) => s.kind), ['del-route', 'del-neigh', 'add-neigh', 'add-fdb', 'add-route']);
    assert.deepEqual(stopSteps6([p, moved], 10).map((s) => s.kind), ['del-route', 'del-route', 'del-fdb', 'del-neigh', 'del-neigh']);
    const r = unprogramSteps6(p, 10, peerUse6([]))[0];
    assert.equal(r?.kind === 'del-route' ? r.metric : 0, IPV6_DEFAULT_METRIC);
  });

  it('planReconcile6: matching state stays, stale routes/FDB/neighbors go first, missing ones follow; the kernel’s own NDP entries are left alone', () => {
    const p = peer6(2);
    const q = peer6(3);
    const route = (dst: string, gw: string, oif: number, onlink = true) => ({ dst: cidr6(dst), table: 254, metric: IPV6_DEFAULT_METRIC, oif, gateway: v6(gw), onlink });
    const plan = planReconcile6(
      [p, q],
      {
        routes: [route('fd00:42:0:2::/64', 'fd00:42:0:2::', 10), route('fd00:42:0:3::/64', '2001:2::3', 2, false), route('fd00:42:0:9::/64', 'fd00:42:0:9::', 10)],
        neighbors: [
          { index: 10, ip: v6('fd00:42:0:2::'), mac: MAC6_2 },
          { index: 10, ip: v6('fd00:42:0:9::'), mac: '02:00:00:00:06:09' },
          { index: 10, ip: v6('ff02::16'), mac: '33:33:00:00:00:16' },
          { index: 10, ip: v6('fe80::1'), mac: '02:00:00:00:00:99' },
        ],
        fdb: [{ index: 10, mac: MAC6_2, dst: v6('2001:2::2') }, { index: 10, mac: '02:00:00:00:06:09', dst: v6('2001:2::9') }],
      },
      10,
    );
    assert.deepEqual(plan.map(describeStep6), [
      'delete route fd00:42:0:3::/64 via 2001:2::3 oif 2',
      'delete route fd00:42:0:9::/64 via fd00:42:0:9:: oif 10',
      'delete fdb 02:00:00:00:06:09 dst 2001:2::9',
      'delete neighbor fd00:42:0:9::',
      'neighbor fd00:42:0:3:: lladdr 02:00:00:00:06:03',
      'fdb 02:00:00:00:06:03 dst 2001:2::3',
      'route fd00:42:0:3::/64 via fd00:42:0:3:: onlink',
    ]);
    assert.deepEqual(planReconcile6([p], { routes: [route('fd00:42:0:2::/64', 'fd00:42:0:2::', 10)], neighbors: [{ index: 10, ip: v6('fd00:42:0:2::'), mac: MAC6_2 }], fdb: [{ index: 10, mac: MAC6_2, dst: v6('2001:2::2') }] }, 10), []);
    assert.deepEqual([isKernelNeighbor6(v6('ff02::1')), isKernelNeighbor6(v6('fe80::5')), isKernelNeighbor6(v6('fd00::1')), isKernelNeighbor6(v6('2001:2::1'))], [true, true, false, false]);
  });
});

function setup(o: { v4?: boolean; vni?: number } = {}) {
  const k = new FakeNetlink();
  const timer = new FakeTimer();
  const log = memoryLogger(1);
  const eth0 = k.addLink('eth0', undefined, '52:54:00:00:00:01');
  const v4 = o.v4 ?? true;
  const ctx: BackendContext = {
    config: validateConfig({
      ...(v4 ? { Network: '10.0.0.0/16' } : { EnableIPv4: false }),
      EnableIPv6: true,
      IPv6Network: 'fd00:42::/48',
      Backend: { Type: 'vxlan', ...(o.vni !== undefined ? { VNI: o.vni } : {}) },
    }),
    extIface: { name: 'eth0', index: eth0.index, address: ip('198.18.0.1'), publicIP: ip('198.18.0.1'), mtu: 1500, publicIPv6: v6('2001:2::1') },
    log,
    portFlag: undefined,
  };
  const backend = createVxlanBackend(ctx, { openNetlink: () => k, every: timer.every, after: timer.after });
  return { k, timer, log, backend, own: lease(1, { v4, mac: vtepMac(ip('198.18.0.1'), o.vni ?? 1), mac6: vtepMac6(v6('2001:2::1'), o.vni ?? 1) }), eth0 };
}

describe('vxlan backend, dual-stack', () => {
  it('publishes BackendData and BackendV6Data {VNI, VtepMAC}; builds rudder.<VNI> and rudder-v6.<VNI>, an IPv6 VTEP; MTU 1430', async () => {
    const { k, backend, own, eth0 } = setup({ vni: 4 });
    assert.equal(backend.carriesIPv6, true);
    assert.equal(backend.overhead, 70);
    assert.deepEqual(await backend.prepare(new AbortController().signal), { VtepMAC: vtepMac(ip('198.18.0.1'), 4) });
    const mac6 = vtepMac6(v6('2001:2::1'), 4);
    assert.deepEqual(backend.backendV6Data, { VNI: 4, VtepMAC: mac6 });
    const net = await backend.start(own, new AbortController().signal);
    assert.equal(net.mtu, 1430, 'the smaller of the two devices');
    assert.deepEqual(k.vxlanSpecs.find((s) => s.name === 'rudder-v6.4'), { name: 'rudder-v6.4', vni: 4, port: 8472, local6: v6('2001:2::1'), underlay: eth0.index, mac: mac6, learning: false });
    const d4 = k.link('rudder.4');
    const d6 = k.link('rudder-v6.4');
    assert.ok(d4 && d6);
    assert.deepEqual([d4.mtu, d6.mtu, d6.up, d6.mac], [1450, 1430, true, mac6]);
    assert.deepEqual(k.addrs6.filter((a) => a.index === d6.index).map((a) => [a.ip, a.prefix]), [[v6('fd00:42:0:1::'), 128]]);
    await net.stop();
    assert.deepEqual([k.link('rudder.4'), k.link('rudder-v6.4')], [undefined, undefined]);
  });

  it('a dual-stack peer is programmed on both devices; an IPv4-only host is reached over IPv4 only, logged once', async () => {
    const { k, backend, own, log } = setup();
    const net = await backend.start(own, new AbortController().signal);
    k.calls = [];
    await net.apply([add(lease(2))]);
    assert.deepEqual(k.calls.sort(), [
      `ensureFdb ${MAC2} 198.18.0.2`,
      `ensureFdb6 ${MAC6_2} 2001:2::2`,
      `ensureNeighbor 10.0.2.0 ${MAC2}`,
      `ensureNeighbor6 fd00:42:0:2:: ${MAC6_2}`,
      'ensureRoute 10.0.2.0/24 via 10.0.2.0 onlink oif ' + k.link('rudder.1')?.index,
      'ensureRoute6 fd00:42:0:2::/64 via fd00:42:0:2:: onlink oif ' + k.link('rudder-v6.1')?.index,
    ]);
    assert.equal(k.routes6[0]?.protocol, RTPROT_RUDDER);
    k.calls = [];
    await net.apply([add(lease(3, { v6: false }))]);
    await net.apply([add(lease(3, { v6: false }))]);
    assert.deepEqual(k.calls.filter((c) => c.includes('6')).length, 0, 'nothing IPv6 for it');
    assert.ok(k.routes.some((r) => r.dst.ip === ip('10.0.3.0')), 'routed over IPv4');
    assert.equal(log.lines.filter((l) => l.includes('reached over IPv4 only')).length, 1, log.lines.join('\n'));
    await net.apply([del(lease(2))]);
    assert.deepEqual([k.routes6.length, k.neigh6.length, k.fdb6.length], [0, 0, 0]);
    await net.stop();
  });

  it('takes over flanneld’s flannel-v6.<VNI> (same VNI and port, IPv6) beside flannel.<VNI>, and logs both', async () => {
    const { k, backend, own, log } = setup();
    k.addLink('flannel.1', 'vxlan', '02:00:00:00:00:f1', { vxlan: { vni: 1, port: 8472 } });
    k.addLink('flannel-v6.1', 'vxlan', '02:00:00:00:00:f6', { vxlan: { vni: 1, port: 8472, ipv6: true } });
    const net = await backend.start(own, new AbortController().signal);
    assert.deepEqual([k.link('flannel.1'), k.link('flannel-v6.1')], [undefined, undefined]);
    assert.ok(log.lines.some((l) => l.includes("replaced flannel's VXLAN device") && l.includes('flannel-v6.1')), log.lines.join('\n'));
    await net.stop();
  });

  it('another IPv6 device holding the VNI and port is an error naming it; an IPv4 one is not in the IPv6 device’s way', async () => {
    const { k, backend, own } = setup();
    k.addLink('other6', 'vxlan', '02:00:00:00:00:e6', { vxlan: { vni: 1, port: 8472, ipv6: true } });
    await assert.rejects(backend.start(own, new AbortController().signal), /device other6 already holds VNI 1 on UDP port 8472 \(IPv6\)/);
    assert.equal(k.link('rudder.1'), undefined, 'the failed start undid the IPv4 side');
  });

  it('a peer’s IPv6 FDB entry deleted by hand pokes a round that restores it; our own writes do not', async () => {
    const { k, backend, own, timer } = setup();
    const net = await backend.start(own, new AbortController().signal);
    await timer.runPending();
    await net.apply([add(lease(2))]);
    await new Promise((r) => setImmediate(r));
    assert.equal(timer.waiting, 0, 'our own writes poked a round');
    const dev = k.link('rudder-v6.1')!;
    await k.deleteFdbs6([{ index: dev.index, mac: MAC6_2, dst: v6('2001:2::2') }]);
    await new Promise((r) => setImmediate(r));
    assert.equal(timer.waiting, 1);
    await timer.runPending();
    assert.deepEqual(k.fdb6.map((f) => [f.mac, f.dst]), [[MAC6_2, v6('2001:2::2')]]);
    await net.stop();
  });
});

describe('vxlan backend, IPv6-only', () => {
  it('only rudder-v6.<VNI>: no BackendData MAC, a stale rudder.<VNI> removed, IPv6-only leases programmed', async () => {
    const { k, backend, own } = setup({ v4: false });
    k.addLink('rudder.1', 'vxlan', '02:00:00:00:00:11', { vxlan: { vni: 1, port: 8472 } });
    assert.deepEqual(await backend.prepare(new AbortController().signal), {});
    const net = await backend.start(own, new AbortController().signal);
    assert.equal(net.mtu, 1430);
    assert.equal(k.link('rudder.1'), undefined, 'stale');
    assert.ok(k.link('rudder-v6.1'));
    await net.apply([add(lease(2, { v4: false })), add(lease(3, { v4: false }))]);
    assert.deepEqual(k.routes6.map((r) => r.dst.ip).sort(), [v6('fd00:42:0:2::'), v6('fd00:42:0:3::')]);
    assert.deepEqual(k.routes, [], 'no IPv4 route, never 0.0.0.0/0');
    await net.stop();
  });
});
