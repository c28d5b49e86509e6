/**
 * host-gw with IPv6: the pure planners (which peer gets which family's
 * route, the IPv6 plan, the "directly connected" rule on IPv6) and the
 * backend against the fake facade in dual-stack and IPv6-only networks. The
 * kernel side is proven by test/e2e/ipv6-hostgw.test.ts.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { validateConfig } from '../../src/config';
import { isRudderError } from '../../src/errors';
import { parseCidr, parseIp } from '../../src/ip/ipv4';
import { formatCidr6, parseCidr6, parseIp6, type Cidr6 } from '../../src/ip/ipv6';
import { memoryLogger } from '../../src/log';
import { NO_IPV4, type Lease, type LeaseEvent } from '../../src/subnet/lease';
import { IPV6_DEFAULT_METRIC, RTPROT_RUDDER, type Route6Info } from '../../src/netlink';
import type { BackendContext } from '../../src/backend/types';
import { HostGwPeerTable, createHostGwBackend, directlyConnected6, hostGwPeer, planRoutes6, type HostGwPeer } from '../../src/backend/hostgw';
import { FakeNetlink } from '../helpers/netlink-fake';
import { FakeTimer } from '../helpers/fake-timer';

const ip = (s: string): number => parseIp(s) as number;
const cidr = (s: string) => parseCidr(s, true) as { ip: number; prefix: number };
const ip6 = (s: string): bigint => parseIp6(s) as bigint;
const cidr6 = (s: string): Cidr6 => parseCidr6(s, true) as Cidr6;

/** A host-gw lease: `subnet` '' for IPv6-only, `v6` [subnet, PublicIPv6] or none. */
function lease(subnet: string, publicIP: string, v6?: [string, string], backendType = 'host-gw'): Lease {
  return {
    subnet: subnet === '' ? NO_IPV4 : cidr(subnet),
    publicIP: publicIP === '' ? 0 : ip(publicIP),
    ...(v6 ? { ipv6Subnet: cidr6(v6[0]), publicIPv6: ip6(v6[1]) } : {}),
    backendType,
    backendData: {},
    expiresAt: null,
  };
}
const add = (l: Lease): LeaseEvent => ({ type: 'added', lease: l });
const del = (l: Lease): LeaseEvent => ({ type: 'removed', lease: l });
const DUAL = { ipv4: true, ipv6: true };
const V6ONLY = { ipv4: false, ipv6: true };

describe('host-gw IPv6 planners', () => {
  it('directlyConnected6: a next hop on an on-link prefix only', () => {
    const addrs = [{ ip: ip6('2001:2::1'), prefix: 64 }, { ip: ip6('fd00::1'), prefix: 128 }];
    assert.equal(directlyConnected6(addrs, ip6('2001:2::2')), true);
    assert.equal(directlyConnected6(addrs, ip6('2001:2:0:1::2')), false);
    assert.equal(directlyConnected6(addrs, ip6('fd00::2')), false, 'a /128 connects nothing');
    assert.equal(directlyConnected6(addrs, ip6('2001:2::1')), false, 'our own address is no next hop');
  });

  it('hostGwPeer: each family the network and the lease both have; why a lease is unusable', () => {
    const dual = hostGwPeer(lease('10.0.2.0/24', '198.18.0.2', ['fd42:42:0:2::/64', '2001:2::2']), 'k', DUAL) as HostGwPeer;
    assert.deepEqual([dual.publicIP, dual.publicIPv6, dual.ipv6Subnet && formatCidr6(dual.ipv6Subnet)], [ip('198.18.0.2'), ip6('2001:2::2'), 'fd42:42:0:2::/64']);
    const v4only = hostGwPeer(lease('10.0.3.0/24', '198.18.0.3'), 'k', DUAL) as HostGwPeer;
    assert.deepEqual([v4only.publicIP, v4only.ipv6Subnet], [ip('198.18.0.3'), undefined], 'an IPv4-only lease in a dual-stack network: IPv4 only');
    const inV6only = hostGwPeer(lease('10.0.4.0/24', '198.18.0.4', ['fd42:42:0:4::/64', '2001:2::4']), 'k', V6ONLY) as HostGwPeer;
    assert.deepEqual([inV6only.subnet, inV6only.publicIP], [NO_IPV4, 0], 'no IPv4 route in an IPv6-only network');
    assert.equal(hostGwPeer(lease('', '', ['fd42:42:0:5::/64', '2001:2::5']), 'k', { ipv4: true, ipv6: false }), 'no IPv4 subnet in an IPv4 network');
    assert.equal(hostGwPeer(lease('10.0.6.0/24', '198.18.0.6'), 'k', V6ONLY), 'no IPv6 subnet in an IPv6-only network');
  });

  it('the table keys IPv6-only leases by their whole key, never as our own 0.0.0.0/0, and finds peers by either subnet', () => {
    const own = lease('', '', ['fd42:42:0:1::/64', '2001:2::1']);
    const t = new HostGwPeerTable(own, V6ONLY);
    const a = t.apply([add(own), add(lease('', '', ['fd42:42:0:2::/64', '2001:2::2'])), add(lease('', '', ['fd42:42:0:3::/64', '2001:2::3']))]);
    assert.deepEqual(a.added.map((p) => p.key), ['0.0.0.0-0&fd42:42:0:2::-64', '0.0.0.0-0&fd42:42:0:3::-64']);
    assert.equal(t.byIpv6Subnet(cidr6('fd42:42:0:3::/64'))?.publicIPv6, ip6('2001:2::3'));
    const moved = t.apply([add(lease('', '', ['fd42:42:0:3::/64', '2001:2::9']))]);
    assert.deepEqual([moved.removed.map((p) => p.publicIPv6), moved.added.map((p) => p.publicIPv6)], [[ip6('2001:2::3')], [ip6('2001:2::9')]]);
    assert.equal(t.byIpv6Subnet(cidr6('fd42:42:0:3::/64'))?.publicIPv6, ip6('2001:2::9'));
    t.apply([del(lease('', '', ['fd42:42:0:3::/64', '2001:2::9']))]);
    assert.equal(t.byIpv6Subnet(cidr6('fd42:42:0:3::/64')), undefined);
    assert.equal(t.size, 1);
  });

  it('planRoutes6 keeps matching routes, deletes every other Rudder IPv6 route first, adds the missing ones', () => {
    const r = (dst: string, gw: string | undefined, oif: number, metric = IPV6_DEFAULT_METRIC, type = 1): Route6Info => ({
      dst: cidr6(dst),
      table: 254,
      oif,
      gateway: gw === undefined ? undefined : ip6(gw),
      onlink: false,
      protocol: RTPROT_RUDDER,
      type,
      metric,
      prefsrc: undefined,
    });
    const peers = [
      hostGwPeer(lease('10.0.2.0/24', '198.18.0.2', ['fd42:42:0:2::/64', '2001:2::2']), 'a', DUAL),
      hostGwPeer(lease('10.0.3.0/24', '198.18.0.3', ['fd42:42:0:3::/64', '2001:2::3']), 'b', DUAL),
      hostGwPeer(lease('10.0.4.0/24', '198.18.0.4'), 'c', DUAL),
    ] as HostGwPeer[];
    const have = [r('fd42:42:0:2::/64', '2001:2::2', 2), r('fd42:42:0:3::/64', '2001:2::7', 2), r('fd42:42:0:3::/64', '2001:2::3', 2, 7), r('fd42:42::/48', undefined, 1, 4294967295, 7)];
    const plan = planRoutes6(peers, have, 2);
    assert.deepEqual(
      plan.map((s) => `${s.kind} ${formatCidr6(s.dst)}${s.kind === 'del-route6' ? ` metric ${s.metric}` : ''}`),
      ['del-route6 fd42:42:0:3::/64 metric 1024', 'del-route6 fd42:42:0:3::/64 metric 7', 'del-route6 fd42:42::/48 metric 4294967295', 'add-route6 fd42:42:0:3::/64'],
    );
  });
});

function setup(config: object, v4 = true) {
  const k = new FakeNetlink();
  const timer = new FakeTimer();
  const log = memoryLogger(1);
  const eth0 = k.addLink('eth0', undefined, '52:54:00:00:00:01');
  if (v4) k.addrs.push({ index: eth0.index, ip: ip('198.18.0.1'), prefix: 15 });
  k.addrs6.push({ index: eth0.index, ip: ip6('2001:2::1'), prefix: 64 });
  const ctx: BackendContext = {
    config: validateConfig({ ...config, Backend: { Type: 'host-gw' } }),
    extIface: { name: 'eth0', index: eth0.index, address: v4 ? ip('198.18.0.1') : 0, publicIP: v4 ? ip('198.18.0.1') : 0, mtu: 1500, publicIPv6: ip6('2001:2::1') },
    log,
    portFlag: undefined,
  };
  const backend = createHostGwBackend(ctx, { openNetlink: () => k, every: timer.every, after: timer.after });
  return { k, timer, log, backend, eth0, ctx };
}
const DUAL_CONFIG = { Network: '10.0.0.0/16', EnableIPv6: true, IPv6Network: 'fd42:42::/48' };
const V6ONLY_CONFIG = { EnableIPv4: false, EnableIPv6: true, IPv6Network: 'fd42:42::/48' };
const routes6 = (k: FakeNetlink): string[] => k.routes6.map((r) => `${formatCidr6(r.dst)} via ${r.gateway === undefined ? '-' : r.gateway.toString(16)} metric ${r.metric}`).sort();

describe('host-gw backend with IPv6', () => {
  it('carries IPv6; a dual-stack peer gets both routes, an IPv4-only lease IPv4 only (logged once), stale IPv6 routes go at start', async () => {
    const { k, backend, eth0, log } = setup(DUAL_CONFIG);
    assert.equal(backend.carriesIPv6, true);
    k.addRoute6({ dst: cidr6('fd42:42:0:9::/64'), oif: eth0.index, gateway: ip6('2001:2::9') });
    k.addRoute6({ dst: cidr6('fd42:42:0:8::/64'), oif: eth0.index, gateway: ip6('2001:2::8'), protocol: 3 });
    const own = lease('10.0.1.0/24', '198.18.0.1', ['fd42:42:0:1::/64', '2001:2::1']);
    const net = await backend.start(own, new AbortController().signal);
    assert.deepEqual(routes6(k), ['fd42:42:0:8::/64 via 20010002000000000000000000000008 metric 1024'], 'the stale Rudder route is gone, a foreign one stays');
    k.calls = [];
    const v4only = lease('10.0.3.0/24', '198.18.0.3');
    await net.apply([add(lease('10.0.2.0/24', '198.18.0.2', ['fd42:42:0:2::/64', '2001:2::2'])), add(v4only)]);
    assert.deepEqual(k.calls, [`ensureRoute 10.0.2.0/24 via 198.18.0.2 oif ${eth0.index}`, `ensureRoute 10.0.3.0/24 via 198.18.0.3 oif ${eth0.index}`, `ensureRoute6 fd42:42:0:2::/64 via 2001:2::2 oif ${eth0.index}`]);
    await net.apply([add({ ...v4only, backendData: { x: 1 } })]);
    assert.equal(log.lines.filter((l) => l.includes('reaching it over IPv4 only')).length, 1, log.lines.join('\n'));
    await net.stop();
    assert.deepEqual([k.routes.length, routes6(k).length], [0, 1]);
  });

  it('IPv6-only: an interface without IPv4, IPv6 routes only, stale IPv4 routes removed, a reconcile restores a deleted IPv6 route', async () => {
    const { k, backend, eth0, timer } = setup(V6ONLY_CONFIG, false);
    await backend.prepare(new AbortController().signal);
    k.addRoute({ dst: cidr('10.0.9.0/24'), oif: eth0.index, gateway: ip('198.18.0.9') });
    const own = lease('', '', ['fd42:42:0:1::/64', '2001:2::1']);
    const net = await backend.start(own, new AbortController().signal, [lease('', '', ['fd42:42:0:2::/64', '2001:2::2'])]);
    assert.deepEqual(k.routes, []);
    assert.deepEqual(routes6(k), ['fd42:42:0:2::/64 via 20010002000000000000000000000002 metric 1024']);
    await net.apply([add(lease('', '', ['fd42:42:0:3::/64', '2001:2::3'])), add(lease('', '', ['fd42:42:0:4::/64', '2001:3::4']))]);
    assert.equal(routes6(k).length, 2, 'the peer whose PublicIPv6 is not on-link gets no route');
    await timer.runPending();
    k.removeRoutes6((r) => r.dst.ip === ip6('fd42:42:0:2::'));
    await new Promise((r) => setImmediate(r));
    assert.equal(timer.waiting, 1, 'the deleted IPv6 route poked a round');
    await timer.runPending();
    assert.equal(routes6(k).length, 2);
    await net.apply([del(lease('', '', ['fd42:42:0:3::/64', '2001:2::3']))]);
    assert.deepEqual(routes6(k), ['fd42:42:0:2::/64 via 20010002000000000000000000000002 metric 1024']);
    await net.stop();
    assert.deepEqual(routes6(k), []);
  });

  it('fails with E_BACKEND when the PublicIPv6 is not an interface address', async () => {
    const { k, ctx } = setup(DUAL_CONFIG);
    const backend = createHostGwBackend({ ...ctx, extIface: { ...ctx.extIface, publicIPv6: ip6('2001:db8::5') } }, { openNetlink: () => k });
    await assert.rejects(backend.prepare(new AbortController().signal), (e: unknown) => isRudderError(e, 'E_BACKEND') && /public IPv6 2001:db8::5 is not an address of eth0/.test(e.message));
  });
});
