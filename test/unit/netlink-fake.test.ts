/**
 * The unit tests' netlink fake keeps the promises the backends rely on (the
 * same ones test/e2e/netlink.test.ts checks on a real kernel): ensures
 * report changes only, deletes report whether something was there, a
 * deleted link takes its objects with it, and subscribers hear of changes.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { parseCidr, parseIp } from '../../src/ip/ipv4';
import { parseCidr6, parseIp6 } from '../../src/ip/ipv6';
import type { KernelChange } from '../../src/netlink';
import { FakeNetlink } from '../helpers/netlink-fake';

const ip = (s: string): number => parseIp(s) as number;
const cidr = (s: string) => parseCidr(s, true) as { ip: number; prefix: number };
const changed = (rs: ReadonlyArray<{ changed: boolean; error?: Error }>): Array<boolean | string> => rs.map((r) => r.error?.message ?? r.changed);

describe('FakeNetlink', () => {
  it('ensure reports a change once; a dump-less ensure always writes; a stale copy at another metric goes', async () => {
    const k = new FakeNetlink();
    const eth0 = k.addLink('eth0', 'veth');
    const spec = { dst: cidr('10.0.2.0/24'), oif: eth0.index, gateway: ip('198.18.0.2') };
    assert.deepEqual(changed(await k.ensureRoutes([spec])), [true]);
    assert.deepEqual(changed(await k.ensureRoutes([spec])), [false]);
    assert.deepEqual(changed(await k.ensureRoutes([spec], { dump: false })), [true]);
    k.addRoute({ dst: cidr('10.0.2.0/24'), oif: eth0.index, metric: 7 });
    assert.deepEqual(changed(await k.ensureRoutes([spec])), [true]);
    assert.deepEqual(k.routes.map((r) => r.metric), [0]);
    assert.deepEqual(changed(await k.ensureRoutes([{ ...spec, oif: 99 }])), ['replace route 10.0.2.0/24: ENODEV']);
    assert.deepEqual((await k.ensureMtu(eth0.index, 1500)).changed, false);
    assert.deepEqual((await k.ensureMtu(eth0.index, 1400)).changed, true);
  });

  it('delete reports whether something was there; failOn fails one item of a batch', async () => {
    const k = new FakeNetlink();
    const dev = k.addLink('rudder.1', 'vxlan');
    await k.ensureNeighbors([{ index: dev.index, ip: ip('10.0.2.0'), mac: '02:00:00:00:00:02' }]);
    assert.deepEqual(changed(await k.deleteNeighbors([{ index: dev.index, ip: ip('10.0.2.0') }, { index: dev.index, ip: ip('10.0.3.0') }])), [true, false]);
    k.failOn = 'ensureFdb 02:00:00:00:00:03';
    const r = await k.ensureFdbs([
      { index: dev.index, mac: '02:00:00:00:00:02', dst: ip('198.18.0.2') },
      { index: dev.index, mac: '02:00:00:00:00:03', dst: ip('198.18.0.3') },
    ]);
    assert.deepEqual([r[0]?.changed, r[1]?.error !== undefined], [true, true]);
    assert.deepEqual(k.fdb.map((f) => f.mac), ['02:00:00:00:00:02']);
  });

  it('a deleted link takes its routes, neighbors, FDB entries and addresses; subscribers hear of it after the call', async () => {
    const k = new FakeNetlink();
    const dev = k.addLink('rudder.1', 'vxlan');
    const other = k.addLink('eth0', 'veth');
    const heard: KernelChange[] = [];
    const unwatch = k.watchKernel((index) => index === dev.index, (ch) => heard.push(ch));
    const first = k.ensureAddresses(dev.index, [{ ip: ip('10.0.1.0'), prefix: 32 }]);
    assert.equal(heard.length, 0, 'heard during the call');
    await first;
    await k.ensureRoutes([{ dst: cidr('10.0.2.0/24'), oif: dev.index, gateway: ip('10.0.2.0'), onlink: true }]);
    await k.ensureNeighbors([{ index: other.index, ip: ip('198.18.0.9'), mac: '02:00:00:00:00:09' }]);
    await Promise.resolve();
    assert.deepEqual(heard.map((c) => `${c.kind} ${'op' in c ? c.op : ''}`), ['addr new', 'route new']);
    assert.equal(await k.deleteLink(dev.index), true);
    assert.deepEqual([k.routes, k.addrs, await k.deleteLink(dev.index)], [[], [], false]);
    await Promise.resolve();
    assert.deepEqual(heard.slice(2).map((c) => `${c.kind} ${'op' in c ? c.op : ''}`), ['route del', 'link del']);
    unwatch();
    assert.equal(k.watching, 0);
  });

  it('IPv6 routes and addresses: metric 1024 by default, ensure/delete report changes, route6 notifications, a deleted link takes them', async () => {
    const k = new FakeNetlink();
    const eth0 = k.addLink('eth0', 'veth');
    const heard: string[] = [];
    k.watchKernel((index) => index === eth0.index, (ch) => heard.push(ch.kind === 'lost' ? 'lost' : `${ch.kind} ${ch.op}`));
    const dst = parseCidr6('fd42:42:0:5::/64', true) as { ip: bigint; prefix: number };
    const spec = { dst, oif: eth0.index, gateway: parseIp6('2001:2::2') as bigint };
    assert.deepEqual(changed(await k.ensureRoutes6([spec])), [true]);
    assert.deepEqual(changed(await k.ensureRoutes6([spec])), [false]);
    assert.deepEqual(k.routes6.map((r) => r.metric), [1024]);
    k.addRoute6({ dst, oif: eth0.index, metric: 7 });
    assert.deepEqual(changed(await k.ensureRoutes6([spec])), [true]);
    assert.deepEqual(k.routes6.map((r) => r.metric), [1024]);
    assert.deepEqual((await k.listRoutes6({ protocol: 0x52 })).length, 1);
    assert.deepEqual(k.calls.slice(-1), ['ensureRoute6 fd42:42:0:5::/64 via 2001:2::2 oif 10']);
    assert.equal((await k.ensureAddresses6(eth0.index, [{ ip: parseIp6('2001:2::1') as bigint, prefix: 64 }])).changed, true);
    assert.equal((await k.ensureAddresses6(eth0.index, [{ ip: parseIp6('2001:2::1') as bigint, prefix: 64 }])).changed, false);
    assert.equal((await k.listAddresses6(eth0.index)).length, 1);
    assert.deepEqual(changed(await k.deleteRoutes6([{ dst }, { dst }])), [true, false]);
    await k.ensureRoutes6([spec]);
    await k.deleteLink(eth0.index);
    assert.deepEqual([k.routes6, k.addrs6], [[], []]);
    await Promise.resolve();
    assert.deepEqual(heard, ['route6 new', 'route6 new', 'route6 del', 'addr new', 'route6 del', 'route6 new', 'route6 del', 'link del']);
  });
});
