/**
 * The netlink facade against a real kernel, in a namespace made for this run.
 * Every ensure is checked four ways with `ip -j`/`bridge -j`: it creates
 * missing state, leaves matching state alone (changed=false, state
 * identical), replaces wrong state and removes stale state.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'child_process';
import { existsSync } from 'fs';
import { join } from 'path';
import { createInterface } from 'readline';
import { createTestNs, startFacadeChild, type ChildError, type FacadeChild, type TestNs } from '../helpers/netlink-ns';
import { formatIp, parseCidr, parseIp } from '../../src/ip/ipv4';
import { formatCidr6, formatIp6, parseCidr6, parseIp6, type Cidr6 } from '../../src/ip/ipv6';
import { IPV6_DEFAULT_METRIC, RTPROT_RUDDER, type DefaultRouteIface, type EnsureResult, type LinkInfo, type Route6Info, type RouteInfo } from '../../src/netlink';

type J = Record<string, unknown>;
const ip = (s: string): number => parseIp(s) as number;
const cidr = (s: string) => parseCidr(s, true) as { ip: number; prefix: number };
const ip6 = (s: string): bigint => parseIp6(s) as bigint;
const cidr6 = (s: string): Cidr6 => parseCidr6(s, true) as Cidr6;

describe('netlink facade (in a network namespace)', () => {
  let ns: TestNs;
  let nl: FacadeChild;
  const idx = (name: string): number => (ns.ipJson<J[]>('link', 'show', 'dev', name)[0] as J).ifindex as number;
  const routesTo = (dst: string): J[] => ns.ipJson<J[]>('route', 'show', 'exact', dst);
  const inet = (dev: string): string[] =>
    ((ns.ipJson<J[]>('-4', 'addr', 'show', 'dev', dev)[0] as J).addr_info as J[]).map((a) => `${a.local as string}/${a.prefixlen as number}`).sort();

  before(() => {
    ns = createTestNs('rnl');
    const sh = (...a: string[]) => ns.ip(...a);
    sh('link', 'set', 'lo', 'up');
    for (const [a, b] of [['a0', 'a1'], ['b0', 'b1'], ['c0', 'c1']] as const) sh('link', 'add', a, 'type', 'veth', 'peer', 'name', b);
    for (const d of ['a0', 'a1', 'b0', 'b1', 'c1']) sh('link', 'set', d, 'up');
    sh('link', 'set', 'b0', 'mtu', '1400');
    // A first address on a0 in another subnet: the pick must follow the gateway, not the order.
    sh('addr', 'add', '198.18.2.7/24', 'dev', 'a0');
    sh('addr', 'add', '198.18.0.2/24', 'dev', 'a0');
    sh('addr', 'add', '198.18.1.2/24', 'dev', 'b0');
    sh('route', 'add', 'default', 'via', '198.18.0.1', 'dev', 'a0', 'metric', '100');
    sh('route', 'add', 'default', 'via', '198.18.1.1', 'dev', 'b0', 'metric', '50');
    nl = startFacadeChild(ns);
  });

  after(async () => {
    try {
      await nl?.close();
    } finally {
      ns?.destroy();
    }
  });

  it('finds the default route interface with the lowest metric, its address and MTU', async () => {
    const d = await nl.call<DefaultRouteIface>('defaultRouteInterface');
    assert.equal(d.link.name, 'b0');
    assert.equal(d.link.index, idx('b0'));
    assert.equal(formatIp(d.address), '198.18.1.2');
    assert.equal(d.link.mtu, (ns.ipJson<J[]>('link', 'show', 'dev', 'b0')[0] as J).mtu);
    assert.equal(formatIp(d.gateway as number), '198.18.1.1');

    ns.ip('route', 'del', 'default', 'via', '198.18.1.1', 'dev', 'b0', 'metric', '50');
    const d2 = await nl.call<DefaultRouteIface>('defaultRouteInterface');
    assert.equal(d2.link.name, 'a0');
    assert.equal(formatIp(d2.address), '198.18.0.2');
    assert.equal(d2.prefix, 24);
    assert.equal(d2.link.mtu, (ns.ipJson<J[]>('link', 'show', 'dev', 'a0')[0] as J).mtu);
  });

  it('finds links by name, index and IPv4 address', async () => {
    const byName = await nl.call<LinkInfo>('linkByName', 'b0');
    assert.equal(byName.index, idx('b0'));
    assert.equal(byName.mtu, 1400);
    assert.equal(byName.kind, 'veth');
    const byIndex = await nl.call<LinkInfo>('linkByIndex', idx('c0'));
    assert.equal(byIndex.name, 'c0');
    const byAddr = await nl.call<LinkInfo>('linkByAddress', ip('198.18.1.2'));
    assert.equal(byAddr.name, 'b0');
    assert.equal(await nl.call('linkByName', 'nosuch0'), null);
    assert.equal(await nl.call('linkByAddress', ip('198.19.9.9')), null);
  });

  it('ensureLinkUp sets a down link up, then leaves it alone', async () => {
    const c0 = idx('c0');
    const flags = (): string[] => (ns.ipJson<J[]>('link', 'show', 'dev', 'c0')[0] as J).flags as string[];
    assert.ok(!flags().includes('UP'));
    assert.deepEqual(await nl.call<EnsureResult>('ensureLinkUp', c0), { changed: true });
    assert.ok(flags().includes('UP'));
    assert.deepEqual(await nl.call<EnsureResult>('ensureLinkUp', c0), { changed: false });
    assert.ok(flags().includes('UP'));
  });

  it('ensureMtu sets, keeps and repairs the MTU', async () => {
    const c0 = idx('c0');
    const mtu = (): number => (ns.ipJson<J[]>('link', 'show', 'dev', 'c0')[0] as J).mtu as number;
    assert.deepEqual(await nl.call<EnsureResult>('ensureMtu', c0, 1320), { changed: true });
    assert.equal(mtu(), 1320);
    assert.deepEqual(await nl.call<EnsureResult>('ensureMtu', c0, 1320), { changed: false });
    ns.ip('link', 'set', 'c0', 'mtu', '1500');
    assert.deepEqual(await nl.call<EnsureResult>('ensureMtu', c0, 1320), { changed: true });
    assert.equal(mtu(), 1320);
  });

  it('ensureAddresses makes the address list exact', async () => {
    const c0 = idx('c0');
    ns.ip('addr', 'add', '198.18.3.9/24', 'dev', 'c0'); // stale
    ns.ip('addr', 'add', '10.0.5.0/24', 'dev', 'c0'); // right IP, wrong prefix
    const want = [
      { ip: ip('10.0.5.0'), prefix: 32 },
      { ip: ip('198.18.3.1'), prefix: 24 },
    ];
    const r1 = await nl.call<{ changed: boolean; added: unknown[]; removed: unknown[] }>('ensureAddresses', c0, want);
    assert.equal(r1.changed, true);
    assert.equal(r1.added.length, 2);
    assert.equal(r1.removed.length, 2);
    assert.deepEqual(inet('c0'), ['10.0.5.0/32', '198.18.3.1/24']);

    const r2 = await nl.call<{ changed: boolean }>('ensureAddresses', c0, want);
    assert.equal(r2.changed, false);
    assert.deepEqual(inet('c0'), ['10.0.5.0/32', '198.18.3.1/24']);

    const listed = await nl.call<Array<{ ip: number; prefix: number }>>('listAddresses', c0);
    assert.deepEqual(listed.map((a) => `${formatIp(a.ip)}/${a.prefix}`).sort(), inet('c0'));
  });

  it('ensureRoute creates, keeps, replaces and de-duplicates a route', async () => {
    const c0 = idx('c0');
    const spec = { dst: cidr('10.0.0.0/16'), oif: c0, scope: 'link' };
    assert.deepEqual(await nl.call<EnsureResult>('ensureRoute', spec), { changed: true });
    let rs = routesTo('10.0.0.0/16');
    assert.equal(rs.length, 1);
    assert.equal(rs[0]?.dev, 'c0');
    assert.equal(rs[0]?.scope, 'link');
    assert.equal(String(rs[0]?.protocol), String(RTPROT_RUDDER));

    assert.deepEqual(await nl.call<EnsureResult>('ensureRoute', spec), { changed: false });
    assert.deepEqual(routesTo('10.0.0.0/16'), rs);

    // wrong state: someone pointed it elsewhere
    ns.ip('route', 'replace', '10.0.0.0/16', 'dev', 'a0');
    assert.equal(routesTo('10.0.0.0/16')[0]?.dev, 'a0');
    assert.deepEqual(await nl.call<EnsureResult>('ensureRoute', spec), { changed: true });
    rs = routesTo('10.0.0.0/16');
    assert.equal(rs.length, 1);
    assert.equal(rs[0]?.dev, 'c0');
    assert.equal(String(rs[0]?.protocol), String(RTPROT_RUDDER));

    // stale copy of ours at another metric goes; a foreign one stays
    ns.ip('route', 'add', '10.0.0.0/16', 'dev', 'a0', 'metric', '7', 'proto', String(RTPROT_RUDDER));
    ns.ip('route', 'add', '10.0.0.0/16', 'dev', 'b0', 'metric', '9', 'proto', 'static');
    assert.equal(routesTo('10.0.0.0/16').length, 3);
    assert.deepEqual(await nl.call<EnsureResult>('ensureRoute', spec), { changed: true });
    rs = routesTo('10.0.0.0/16');
    assert.deepEqual(rs.map((r) => `${r.dev as string}/${(r.metric as number | undefined) ?? 0}`).sort(), ['b0/9', 'c0/0']);
    ns.ip('route', 'del', '10.0.0.0/16', 'dev', 'b0', 'metric', '9');
  });

  it('ensureRoute handles gateway routes with onlink', async () => {
    const c0 = idx('c0');
    const spec = { dst: cidr('10.0.7.0/24'), oif: c0, gateway: ip('10.0.7.0'), onlink: true };
    assert.deepEqual(await nl.call<EnsureResult>('ensureRoute', spec), { changed: true });
    const rs = routesTo('10.0.7.0/24');
    assert.equal(rs.length, 1);
    assert.equal(rs[0]?.gateway, '10.0.7.0');
    assert.equal(rs[0]?.dev, 'c0');
    assert.ok((rs[0]?.flags as string[]).includes('onlink'));
    assert.deepEqual(await nl.call<EnsureResult>('ensureRoute', spec), { changed: false });
    // same dst and metric, other gateway: replaced in place
    assert.deepEqual(await nl.call<EnsureResult>('ensureRoute', { ...spec, gateway: ip('10.0.7.5') }), { changed: true });
    const rs2 = routesTo('10.0.7.0/24');
    assert.equal(rs2.length, 1);
    assert.equal(rs2[0]?.gateway, '10.0.7.5');
  });

  it('listRoutes filters by protocol and oif like the kernel reports them', async () => {
    ns.ip('route', 'add', '10.0.9.0/24', 'dev', 'a0', 'proto', String(RTPROT_RUDDER));
    const ours = await nl.call<RouteInfo[]>('listRoutes', { protocol: RTPROT_RUDDER });
    const fmt = (r: { dst: { ip: number; prefix: number } }) => `${formatIp(r.dst.ip)}/${r.dst.prefix}`;
    const expected = ns.ipJson<J[]>('route', 'show', 'proto', String(RTPROT_RUDDER)).map((r) => r.dst as string).sort();
    assert.deepEqual(ours.map(fmt).sort(), expected);
    assert.ok(expected.includes('10.0.9.0/24'));
    const onC0 = await nl.call<RouteInfo[]>('listRoutes', { oif: idx('c0') });
    assert.deepEqual(onC0.map(fmt).sort(), ns.ipJson<J[]>('route', 'show', 'dev', 'c0').map((r) => (r.dst as string).includes('/') ? (r.dst as string) : `${r.dst as string}/32`).sort());
  });

  it('deleteRoute removes a route and reports when there was none', async () => {
    assert.equal(await nl.call('deleteRoute', { dst: cidr('10.0.9.0/24') }), true);
    assert.equal(routesTo('10.0.9.0/24').length, 0);
    assert.equal(await nl.call('deleteRoute', { dst: cidr('10.0.9.0/24') }), false);
  });

  it('ensureUnreachableRoute sits beside the route to the same destination and answers only without it', async () => {
    const c0 = idx('c0');
    const MAX = 4294967295;
    const dst = cidr('10.3.0.0/16');
    const spec = { dst, metric: MAX };
    const show = (): string[] =>
      routesTo('10.3.0.0/16').map((r) => `${(r.type as string | undefined) ?? 'unicast'} ${(r.dev as string | undefined) ?? '-'} ${(r.metric as number | undefined) ?? 0} ${String(r.protocol)}`);
    const get = (): string => {
      try {
        return ns.ip('route', 'get', '10.3.1.1');
      } catch (e) {
        return `error: ${String((e as { stderr?: unknown }).stderr ?? e)}`;
      }
    };
    assert.deepEqual(await nl.call<EnsureResult>('ensureRoute', { dst, oif: c0, scope: 'link' }), { changed: true });
    assert.deepEqual(await nl.call<EnsureResult>('ensureUnreachableRoute', spec), { changed: true });
    assert.deepEqual(await nl.call<EnsureResult>('ensureUnreachableRoute', spec), { changed: false });
    assert.deepEqual(show().sort(), [`unicast c0 0 ${RTPROT_RUDDER}`, `unreachable - ${MAX} ${RTPROT_RUDDER}`]);
    assert.match(get(), /dev c0/, 'the unicast route wins while it exists');
    // ensureRoute for the unicast route leaves the unreachable one (another type) alone.
    assert.deepEqual(await nl.call<EnsureResult>('ensureRoute', { dst, oif: c0, scope: 'link' }), { changed: false });
    assert.equal(show().length, 2);

    assert.equal(await nl.call('deleteRoute', { dst, oif: c0 }), true);
    assert.deepEqual(show(), [`unreachable - ${MAX} ${RTPROT_RUDDER}`]);
    assert.match(get(), /No route to host/, 'refused once the unicast route is gone');
    assert.equal(await nl.call('deleteRoute', { dst, metric: MAX }), true);
    assert.deepEqual(show(), []);
    assert.equal(await nl.call('deleteRoute', { dst, metric: MAX }), false);
  });

  describe('vxlan pieces', () => {
    let vx: LinkInfo;
    const vxInfo = (): J => ((ns.ipJson<J[]>('-d', 'link', 'show', 'dev', 'rudder.1')[0] as J).linkinfo as J).info_data as J;

    it('ensureVxlan creates the device, keeps it, and recreates it when parameters differ', async () => {
      const spec = { name: 'rudder.1', vni: 1, port: 8472, local: ip('198.18.0.2'), mac: 'ae:00:00:00:00:01' };
      vx = await nl.call<LinkInfo & EnsureResult>('ensureVxlan', spec);
      assert.equal((vx as LinkInfo & EnsureResult).changed, true);
      let info = vxInfo();
      assert.equal(info.id, 1);
      assert.equal(info.port, 8472);
      assert.equal(info.learning, false);
      assert.equal(info.local, '198.18.0.2');
      assert.equal((ns.ipJson<J[]>('link', 'show', 'dev', 'rudder.1')[0] as J).address, 'ae:00:00:00:00:01');

      const again = await nl.call<LinkInfo & EnsureResult>('ensureVxlan', spec);
      assert.equal(again.changed, false);
      assert.equal(again.index, vx.index);

      const other = await nl.call<LinkInfo & EnsureResult>('ensureVxlan', { ...spec, vni: 2 });
      assert.equal(other.changed, true);
      info = vxInfo();
      assert.equal(info.id, 2);
      vx = other;
    });

    it('ensureNeighbor creates a permanent entry, keeps it, replaces a wrong MAC', async () => {
      const spec = { index: vx.index, ip: ip('10.0.7.0'), mac: 'aa:00:00:00:00:01' };
      const neigh = (): J[] => ns.ipJson<J[]>('neigh', 'show', 'dev', 'rudder.1');
      assert.deepEqual(await nl.call<EnsureResult>('ensureNeighbor', spec), { changed: true });
      assert.deepEqual(neigh(), [{ dst: '10.0.7.0', lladdr: 'aa:00:00:00:00:01', state: ['PERMANENT'] }]);
      assert.deepEqual(await nl.call<EnsureResult>('ensureNeighbor', spec), { changed: false });
      assert.deepEqual(await nl.call<EnsureResult>('ensureNeighbor', { ...spec, mac: 'aa:00:00:00:00:02' }), { changed: true });
      assert.deepEqual(neigh(), [{ dst: '10.0.7.0', lladdr: 'aa:00:00:00:00:02', state: ['PERMANENT'] }]);
      assert.equal(await nl.call('deleteNeighbor', vx.index, ip('10.0.7.0')), true);
      assert.deepEqual(neigh(), []);
      assert.equal(await nl.call('deleteNeighbor', vx.index, ip('10.0.7.0')), false);
    });

    it('ensureFdb creates an entry, keeps it, and moves it to a new remote', async () => {
      const spec = { index: vx.index, mac: 'aa:00:00:00:00:01', dst: ip('198.18.0.3') };
      const fdb = (): string[] =>
        ns
          .bridgeJson<J[]>('fdb', 'show', 'dev', 'rudder.1')
          .filter((f) => f.dst !== undefined)
          .map((f) => `${f.mac as string}>${f.dst as string}`)
          .sort();
      assert.deepEqual(await nl.call<EnsureResult>('ensureFdb', spec), { changed: true });
      assert.deepEqual(fdb(), ['aa:00:00:00:00:01>198.18.0.3']);
      assert.deepEqual(await nl.call<EnsureResult>('ensureFdb', spec), { changed: false });
      // the peer's PublicIP moved: one entry, at the new remote
      assert.deepEqual(await nl.call<EnsureResult>('ensureFdb', { ...spec, dst: ip('198.18.0.4') }), { changed: true });
      assert.deepEqual(fdb(), ['aa:00:00:00:00:01>198.18.0.4']);
      const listed = await nl.call<Array<{ mac: string; dst: number }>>('listFdb', vx.index);
      assert.deepEqual(listed.map((f) => `${f.mac}>${formatIp(f.dst)}`), fdb());
      assert.equal(await nl.call('deleteFdb', { ...spec, dst: ip('198.18.0.4') }), true);
      assert.deepEqual(fdb(), []);
      assert.equal(await nl.call('deleteFdb', { ...spec, dst: ip('198.18.0.4') }), false);
    });

    it('deleteLink removes the device', async () => {
      assert.equal(await nl.call('deleteLink', vx.index), true);
      assert.equal(await nl.call('linkByName', 'rudder.1'), null);
      assert.equal(await nl.call('deleteLink', vx.index), false);
    });
  });

  describe('IPv6 routes and addresses', () => {
    let d0: number;
    const routes6To = (dst: string): J[] => ns.ipJson<J[]>('-6', 'route', 'show', 'exact', dst);
    const inet6 = (dev: string): string[] =>
      (ns.ipJson<J[]>('-6', 'addr', 'show', 'dev', dev, 'scope', 'global')[0]?.addr_info as J[] | undefined ?? [])
        .filter((a) => a.local !== undefined)
        .map((a) => `${a.local as string}/${a.prefixlen as number}${a.tentative === true ? ' tentative' : ''}`)
        .sort();

    before(() => {
      ns.ip('link', 'add', 'd0', 'type', 'veth', 'peer', 'name', 'd1');
      ns.ip('link', 'set', 'd0', 'up');
      ns.ip('link', 'set', 'd1', 'up');
      ns.ip('-6', 'addr', 'add', '2001:2:0:9::7/64', 'dev', 'd0', 'nodad'); // stale
      d0 = idx('d0');
    });

    it('ensureAddresses6 makes the global addresses exact, usable at once, and leaves link-local ones alone', async () => {
      const want = [{ ip: ip6('2001:2:0:1::1'), prefix: 64 }, { ip: ip6('fd42:42:0:5::'), prefix: 128 }];
      const r1 = await nl.call<{ changed: boolean; added: unknown[]; removed: unknown[] }>('ensureAddresses6', d0, want);
      assert.deepEqual([r1.changed, r1.added.length, r1.removed.length], [true, 2, 1]);
      assert.deepEqual(inet6('d0'), ['2001:2:0:1::1/64', 'fd42:42:0:5::/128'], 'no address left tentative (nodad)');
      const r2 = await nl.call<{ changed: boolean }>('ensureAddresses6', d0, want);
      assert.equal(r2.changed, false);
      const listed = await nl.call<Array<{ ip: bigint; prefix: number }>>('listAddresses6', d0);
      assert.deepEqual(listed.map((a) => `${formatIp6(a.ip)}/${a.prefix}`).sort(), inet6('d0'));
      const linkLocal = ns.ipJson<J[]>('-6', 'addr', 'show', 'dev', 'd0', 'scope', 'link');
      assert.equal(((linkLocal[0] as J).addr_info as J[]).filter((a) => a.local !== undefined).length, 1, 'the kernel\'s fe80:: address stays');
    });

    it('ensureRoute6 creates (metric 1024), keeps, replaces and de-duplicates a route via a gateway', async () => {
      const spec = { dst: cidr6('fd42:42:0:6::/64'), oif: d0, gateway: ip6('2001:2:0:1::2') };
      assert.deepEqual(await nl.call<EnsureResult>('ensureRoute6', spec), { changed: true });
      let rs = routes6To('fd42:42:0:6::/64');
      assert.equal(rs.length, 1);
      assert.deepEqual([rs[0]?.dev, rs[0]?.gateway, rs[0]?.metric, String(rs[0]?.protocol)], ['d0', '2001:2:0:1::2', IPV6_DEFAULT_METRIC, String(RTPROT_RUDDER)]);
      assert.deepEqual(await nl.call<EnsureResult>('ensureRoute6', spec), { changed: false });
      assert.deepEqual(routes6To('fd42:42:0:6::/64'), rs);

      ns.ip('-6', 'route', 'replace', 'fd42:42:0:6::/64', 'via', '2001:2:0:1::9', 'dev', 'd0', 'proto', String(RTPROT_RUDDER));
      assert.deepEqual(await nl.call<EnsureResult>('ensureRoute6', spec), { changed: true });
      rs = routes6To('fd42:42:0:6::/64');
      assert.deepEqual(rs.map((r) => r.gateway), ['2001:2:0:1::2']);

      ns.ip('-6', 'route', 'add', 'fd42:42:0:6::/64', 'dev', 'd0', 'metric', '7', 'proto', String(RTPROT_RUDDER));
      ns.ip('-6', 'route', 'add', 'fd42:42:0:6::/64', 'dev', 'd0', 'metric', '9', 'proto', 'static');
      assert.deepEqual(await nl.call<EnsureResult>('ensureRoute6', spec), { changed: true });
      rs = routes6To('fd42:42:0:6::/64');
      assert.deepEqual(rs.map((r) => `${String(r.protocol)}/${r.metric as number}`).sort(), [`${RTPROT_RUDDER}/1024`, 'static/9']);
      ns.ip('-6', 'route', 'del', 'fd42:42:0:6::/64', 'metric', '9');

      const ours = await nl.call<Route6Info[]>('listRoutes6', { protocol: RTPROT_RUDDER });
      assert.deepEqual(ours.map((r) => `${formatCidr6(r.dst)} via ${formatIp6(r.gateway as bigint)} oif ${r.oif as number} metric ${r.metric}`), [`fd42:42:0:6::/64 via 2001:2:0:1::2 oif ${d0} metric 1024`]);
      // The kernel's own IPv6 routes (the connected prefix, fe80::/64) are listed with their protocol.
      const all = await nl.call<Route6Info[]>('listRoutes6', { oif: d0 });
      assert.ok(all.some((r) => formatCidr6(r.dst) === '2001:2:0:1::/64'));
    });

    it('ensureRoute6 with onlink: a next hop on no connected prefix', async () => {
      const spec = { dst: cidr6('fd42:42:0:7::/64'), oif: d0, gateway: ip6('fd42:42:0:7::'), onlink: true };
      assert.deepEqual(await nl.call<EnsureResult>('ensureRoute6', spec), { changed: true });
      const rs = routes6To('fd42:42:0:7::/64');
      assert.equal(rs[0]?.gateway, 'fd42:42:0:7::');
      assert.ok((rs[0]?.flags as string[]).includes('onlink'));
      assert.deepEqual(await nl.call<EnsureResult>('ensureRoute6', spec), { changed: false });
      assert.equal(await nl.call('deleteRoute6', { dst: cidr6('fd42:42:0:7::/64'), oif: d0 }), true);
      assert.deepEqual(routes6To('fd42:42:0:7::/64'), []);
      assert.equal(await nl.call('deleteRoute6', { dst: cidr6('fd42:42:0:7::/64'), oif: d0 }), false);
    });

    it('ensureUnreachableRoute6 sits beside the unicast route and answers only without it', async () => {
      const MAX = 4294967295;
      const dst = cidr6('fd42:43::/48');
      const get = (): string => {
        try {
          return ns.ip('-6', 'route', 'get', 'fd42:43::5');
        } catch (e) {
          return `error: ${String((e as { stderr?: unknown }).stderr ?? e)}`;
        }
      };
      assert.deepEqual(await nl.call<EnsureResult>('ensureRoute6', { dst, oif: d0 }), { changed: true });
      assert.deepEqual(await nl.call<EnsureResult>('ensureUnreachableRoute6', { dst, metric: MAX }), { changed: true });
      assert.deepEqual(await nl.call<EnsureResult>('ensureUnreachableRoute6', { dst, metric: MAX }), { changed: false });
      assert.equal(routes6To('fd42:43::/48').length, 2);
      assert.match(get(), /dev d0/);
      assert.equal(await nl.call('deleteRoute6', { dst, metric: IPV6_DEFAULT_METRIC }), true);
      assert.doesNotMatch(get(), /dev d0/, 'refused once the unicast route is gone');
      assert.equal(await nl.call('deleteRoute6', { dst, metric: MAX }), true);
      assert.deepEqual(routes6To('fd42:43::/48'), []);
    });

    it('an interface with IPv6 only is the underlay of an IPv6-only network (by name or IPv6 address), never of one with IPv4', async () => {
      type Ext = { name: string; index: number; address: number; publicIP: number };
      const byName = await nl.call<Ext>('resolveExternalInterface', 'd0', undefined, { ipv4: false });
      assert.deepEqual([byName.name, byName.index, byName.address, byName.publicIP], ['d0', d0, 0, 0]);
      const byIp6 = await nl.call<Ext>('resolveExternalInterface', '2001:2:0:1::1', undefined, { ipv4: false });
      assert.deepEqual([byIp6.name, byIp6.address], ['d0', 0]);
      await assert.rejects(nl.call('resolveExternalInterface', 'd0', undefined, { ipv4: true }), (e: ChildError) => e.code === 'E_IFACE' && /no IPv4 address/.test(e.message));
      await assert.rejects(nl.call('resolveExternalInterface', '2001:2:0:1::1', undefined, {}), (e: ChildError) => e.code === 'E_IFACE' && /d0 has no IPv4 address/.test(e.message));
      // An interface with both families named by its IPv6 address: its (first) IPv4 address is the one used.
      ns.ip('-6', 'addr', 'add', '2001:2:0:a::2/64', 'dev', 'a0', 'nodad');
      const a0 = await nl.call<Ext>('resolveExternalInterface', '2001:2:0:a::2', undefined, {});
      assert.deepEqual([a0.name, formatIp(a0.address), formatIp(a0.publicIP)], ['a0', '198.18.2.7', '198.18.2.7']);
    });

    it('IPv6 failures are E_NETLINK naming the route and the errno', async () => {
      await assert.rejects(nl.call('ensureRoute6', { dst: cidr6('fd42:44::/64'), oif: 99999 }), (e: ChildError) => {
        assert.equal(e.code, 'E_NETLINK');
        assert.equal(e.errno, 'ENODEV');
        assert.match(e.message, /replace route fd42:44::\/64/);
        return true;
      });
    });
  });

  it('reports kernel failures as E_NETLINK naming the operation, with the errno', async () => {
    await assert.rejects(nl.call('ensureMtu', 99999, 1400), (e: ChildError) => {
      assert.equal(e.code, 'E_NETLINK');
      assert.equal(e.errno, 'ENODEV');
      assert.match(e.message, /set mtu 1400/);
      return true;
    });
    await assert.rejects(nl.call('ensureRoute', { dst: cidr('10.0.0.0/16'), oif: 99999 }), (e: ChildError) => {
      assert.equal(e.code, 'E_NETLINK');
      assert.equal(e.errno, 'ENODEV');
      assert.match(e.message, /replace route 10\.0\.0\.0\/16/);
      return true;
    });
    await assert.rejects(nl.call('ensureAddresses', idx('c0'), [{ ip: ip('10.0.5.0'), prefix: 40 }]), (e: ChildError) => {
      assert.equal(e.code, 'E_NETLINK');
      assert.match(e.message, /add address 10\.0\.5\.0\/40/);
      return true;
    });
  });
});

const ADDON = join(__dirname, '..', '..', '..', 'native', 'build', 'Release', 'rudder_native.node');

describe('udp backend on a real kernel (in a network namespace)', () => {
  it('configures rudder0, removes stale Rudder routes, and leaves nothing after stop', { skip: existsSync(ADDON) ? false : 'native addon not built' }, async () => {
    const ns = createTestNs('rnl');
    try {
      ns.ip('link', 'add', 'e0', 'type', 'veth', 'peer', 'name', 'e1');
      ns.ip('link', 'set', 'e0', 'up');
      ns.ip('link', 'set', 'e1', 'up');
      ns.ip('addr', 'add', '198.18.0.1/24', 'dev', 'e0');
      ns.ip('route', 'add', '10.0.8.0/24', 'via', '198.18.0.2', 'dev', 'e0', 'proto', String(RTPROT_RUDDER)); // left by an earlier run
      const script = join(__dirname, '..', 'helpers', 'netlink-udp-child.js');
      const child = spawn('ip', ['netns', 'exec', ns.name, process.execPath, script, '10.0.0.0/16', '10.0.5.0/24', '10.0.7.0/24', '198.18.0.2', 'e0', '198.18.0.1'], { stdio: ['pipe', 'pipe', 'inherit'] });
      const lines = createInterface({ input: child.stdout })[Symbol.asyncIterator]();
      const next = async (): Promise<string> => ((await lines.next()).value as string | undefined) ?? 'eof';
      try {
        assert.equal(await next(), 'started');
        const tun = ns.ipJson<J[]>('-4', 'addr', 'show', 'dev', 'rudder0')[0] as J;
        assert.deepEqual((tun.addr_info as J[]).map((a) => `${a.local as string}/${a.prefixlen as number}`), ['10.0.5.0/32']);
        assert.equal(tun.mtu, 1500 - 28);
        assert.ok((tun.flags as string[]).includes('UP'));
        const rs = ns.ipJson<J[]>('route', 'show', 'proto', String(RTPROT_RUDDER));
        // The Network to rudder0, and the fallback that refuses it when rudder0 is gone.
        assert.deepEqual(
          rs.map((r) => `${(r.type as string | undefined) ?? 'unicast'} ${r.dst as string} ${(r.dev as string | undefined) ?? '-'} ${(r.metric as number | undefined) ?? 0}`),
          ['unicast 10.0.0.0/16 rudder0 0', 'unreachable 10.0.0.0/16 - 4294967295'],
        );
        child.stdin.end();
        assert.equal(await next(), 'stopped');
      } finally {
        if (child.exitCode === null && child.pid !== undefined) process.kill(child.pid, 'SIGKILL');
      }
      assert.equal(ns.ipJson<J[]>('link', 'show').filter((l) => l.ifname === 'rudder0').length, 0);
      assert.deepEqual(ns.ipJson<J[]>('route', 'show', 'proto', String(RTPROT_RUDDER)), []);
    } finally {
      ns.destroy();
    }
  });
});
