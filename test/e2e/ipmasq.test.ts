/**
 * -ip-masq end to end. Two hosts with -ip-masq; beyond host 1 an "outside"
 * namespace on a point-to-point link (h1 out0 198.19.0.1/30 — outside eth0
 * 198.19.0.2/30) with no route to the overlay, standing in for the internet.
 *
 *   pod of h1 → outside      masqueraded: the outside sees 198.19.0.1
 *   pod of h1 → pod of h2    not masqueraded: h2's pod sees h1's pod address
 *   nft delete table         the daemon puts it back
 *   clean stop               the table is gone, and with it the outside's reply path
 *   crash, start without it  the left-over table is removed
 *
 * Listeners are socat processes that answer each connection with the peer
 * address they saw ($SOCAT_PEERADDR).
 *
 * IPv6 (EnableIPv6): the same rules in `table ip6 rudder`, checked with the
 * masquerade module itself inside a host namespace of the test's own (a pod
 * behind it, a second overlay subnet standing in for a remote pod, and an
 * outside on 2001:2:0:ff::/64 with no route to the overlay): the ruleset,
 * a pod's IPv6 connection to the outside masqueraded, pod to pod kept, and
 * both tables gone after stop. Then the daemon itself: two dual-stack
 * host-gw hosts with -ip-masq install both tables, and a pod's IPv6
 * connection to an outside beyond host 1 is masqueraded while pod to pod
 * over IPv6 keeps the pod's address.
 */
import assert from 'node:assert/strict';
import * as path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { IpMasq, type NftRunner } from '../../src/ipmasq';
import { parseCidr, type Cidr } from '../../src/ip/ipv4';
import { formatIp6, parseCidr6, parseIp6, type Cidr6 } from '../../src/ip/ipv6';
import { memoryLogger } from '../../src/log';
import { Cleanup, Netns, RunTag, addVethPair, createCluster, makeTempDir, type Cluster, type Host, type ManagedProcess, type Pod } from '../../src/topology';
import { skipUnlessEtcd, skipUnlessRoot } from '../helpers/env';
import { waitUntil } from '../helpers/wait';

const GIVE_UP_MS = 90_000;
const NETWORK = '10.62.0.0/16';
const OUT_H1 = '198.19.0.1';
const OUT_IP = '198.19.0.2';
const PORT = 7000;

/** A listener that answers every connection with the address it came from. */
async function peerEcho(ns: Netns, dir: string, label: string, listen = 'TCP-LISTEN'): Promise<ManagedProcess> {
  return ns.spawn(['socat', `${listen}:${PORT},reuseaddr,fork`, 'SYSTEM:echo $SOCAT_PEERADDR'], {
    logFile: path.join(dir, `${label}.log`),
    label,
  });
}

/** Connects from `pod` to ip:PORT and returns the peer address the listener saw. */
async function seenBy(pod: Pod, ip: string): Promise<string> {
  const r = await pod.exec(['socat', '-u', `TCP:${ip}:${PORT},connect-timeout=3`, '-'], { allowFailure: true });
  if (r.code !== 0) throw new Error(`connect ${pod.ip} → ${ip}:${PORT} failed: ${r.stderr.trim()}`);
  return r.stdout.trim();
}

async function table(h: Host): Promise<{ present: boolean; text: string }> {
  const r = await h.exec(['nft', 'list', 'table', 'ip', 'rudder'], { allowFailure: true });
  return { present: r.code === 0, text: r.stdout };
}

describe('ip masquerade end to end (-ip-masq)', { skip: skipUnlessRoot || skipUnlessEtcd }, () => {
  let c: Cluster;
  let h1: Host;
  let h2: Host;
  let p1: Pod;
  let p2: Pod;
  let outside: Netns;

  before(async () => {
    c = await createCluster({ hosts: 2, rudderArgs: ['-ip-masq'], giveUpMs: GIVE_UP_MS });
    h1 = c.host(1);
    h2 = c.host(2);
    outside = await Netns.create(c.tag.name('out'), c.cleanup);
    await c.quietNamespace(outside);
    await addVethPair({ ns: h1.ns, ifname: 'out0' }, { ns: outside, ifname: 'eth0' });
    await h1.ns.addAddress('out0', `${OUT_H1}/30`);
    await outside.addAddress('eth0', `${OUT_IP}/30`);
    await c.putConfig({ Network: NETWORK, Backend: { Type: 'udp' } });
    const [a, b] = await Promise.all([h1.up(), h2.up()]);
    assert.equal(a.env.ipMasq, true, 'RUDDER_IPMASQ=true');
    assert.equal(b.env.ipMasq, true);
    p1 = a.pod;
    p2 = b.pod;
    await peerEcho(outside, h1.dir, 'echo-outside');
    await peerEcho(p2.ns, h2.dir, 'echo-pod2');
  });

  after(async () => {
    await c?.teardown();
  });

  it('installs table ip rudder with the Network in it; the outside has no route to the overlay', async () => {
    const t = await table(h1);
    assert.ok(t.present, 'table ip rudder exists on h1');
    assert.match(t.text, /ip saddr 10\.62\.0\.0\/16 ip daddr 10\.62\.0\.0\/16 return/);
    assert.match(t.text, /masquerade/);
    assert.match(t.text, /hook forward/);
    const routes = await outside.exec(['ip', 'route', 'get', p1.ip], { allowFailure: true });
    assert.notEqual(routes.code, 0, `outside must not reach the overlay by itself: ${routes.stdout}`);
  });

  it('a pod reaches the outside, which sees host 1\'s address', async () => {
    const seen = await waitUntil(() => seenBy(p1, OUT_IP), { giveUpMs: GIVE_UP_MS, intervalMs: 300, what: 'pod of h1 → outside' });
    assert.equal(seen, OUT_H1);
  });

  it('pod-to-pod traffic keeps pod addresses', async () => {
    const seen = await waitUntil(() => seenBy(p1, p2.ip), { giveUpMs: GIVE_UP_MS, intervalMs: 300, what: 'pod of h1 → pod of h2' });
    assert.equal(seen, p1.ip);
    assert.notEqual(seen, h1.underlayIp);
  });

  it('puts the table back after `nft delete table ip rudder`', async () => {
    await h1.exec(['nft', 'delete', 'table', 'ip', 'rudder']);
    assert.equal((await table(h1)).present, false);
    const t = await waitUntil(async () => {
      const x = await table(h1);
      return x.present ? x : undefined;
    }, { giveUpMs: GIVE_UP_MS, intervalMs: 500, what: 'table ip rudder restored on h1' });
    assert.match(t.text, /masquerade/);
    assert.match(h1.rudderLog(20_000), /ip masquerade table is missing; restoring it/);
    assert.equal(await waitUntil(() => seenBy(p1, OUT_IP), { giveUpMs: GIVE_UP_MS, intervalMs: 300, what: 'pod of h1 → outside again' }), OUT_H1);
  });

  it('removes the table on a clean stop; the outside then gets no masqueraded traffic', async () => {
    await h1.stopRudder();
    assert.deepEqual(h1.rudder?.exit, { code: 0, signal: null }, h1.rudderLog(3000));
    assert.equal((await table(h1)).present, false, 'table ip rudder removed');
    assert.match(h1.rudderLog(4000), /ip masquerade rules removed/);
    // h1 still forwards, but without masquerade the outside cannot answer a pod address.
    const r = await p1.ping(OUT_IP, { count: 2, replyWaitS: 1 });
    assert.equal(r.received, 0, r.output);
    // h2 is untouched.
    assert.equal((await table(h2)).present, true);
  });

  it('a table left by a crash stays (traffic keeps flowing) and is removed by a start without -ip-masq', async () => {
    await h1.startRudder();
    await waitUntil(async () => (await table(h1)).present, { giveUpMs: GIVE_UP_MS, what: 'table ip rudder after the restart' });
    await h1.killRudder();
    assert.equal((await table(h1)).present, true, 'SIGKILL leaves the table');
    const stamp = h1.subnetFileStamp();
    await h1.startRudder(['-ip-masq=false']); // the last flag wins over the cluster's -ip-masq
    const env = await h1.waitSubnetFile({ changedSince: stamp });
    assert.equal(env.ipMasq, false, 'RUDDER_IPMASQ=false');
    assert.equal((await table(h1)).present, false, 'left-over table removed before the subnet file was written');
    assert.match(h1.rudderLog(4000), /removed ip masquerade table left by an earlier run/);
  });
});

describe('ip masquerade of IPv6 (table ip6 rudder)', { skip: skipUnlessRoot }, () => {
  const NET6 = 'fd62:62::/48';
  const OWN6 = 'fd62:62:0:3::/64';
  const POD6 = 'fd62:62:0:3::2';
  const REMOTE6 = 'fd62:62:0:4::2'; // another host's pod, as far as the rules are concerned
  const OUT_H6 = '2001:2:0:ff::1';
  const OUT6 = '2001:2:0:ff::2';
  let tag: RunTag;
  let cleanup: Cleanup;
  let dir: string;
  let host: Netns;
  let pod: Netns;
  let remote: Netns;
  let outside6: Netns;
  let masq: IpMasq;
  const log = memoryLogger();

  const c4 = (s: string): Cidr => parseCidr(s, true) ?? assert.fail(s);
  const c6 = (s: string): Cidr6 => parseCidr6(s, true) ?? assert.fail(s);
  /** Addresses without duplicate address detection, usable at once. */
  const addr6 = (ns: Netns, ifname: string, cidr: string): Promise<unknown> => ns.ip(['-6', 'addr', 'add', cidr, 'dev', ifname, 'nodad']);

  async function tableIn(family: string): Promise<{ present: boolean; text: string }> {
    const r = await host.exec(['nft', 'list', 'table', family, 'rudder'], { allowFailure: true });
    return { present: r.code === 0, text: r.stdout };
  }

  /** Connects from `from` to [ip]:PORT and returns the peer address the listener saw. */
  async function seen6(from: Netns, ip: string): Promise<string> {
    const r = await from.exec(['socat', '-u', `TCP6:[${ip}]:${PORT},connect-timeout=3`, '-'], { allowFailure: true });
    if (r.code !== 0) throw new Error(`connect → [${ip}]:${PORT} failed: ${r.stderr.trim()}`);
    const text = r.stdout.trim().replace(/^\[|\]$/g, ''); // socat writes every group in full
    const addr = parseIp6(text);
    return addr === null ? text : formatIp6(addr);
  }

  before(async () => {
    tag = RunTag.create();
    cleanup = new Cleanup(`ip6 masquerade ${tag.name('*')}`);
    cleanup.addHook(() => tag.release(), () => tag.release());
    dir = makeTempDir(`rudder-${tag.prefix}${tag.tag}-masq6-`);
    tag.recordDir(dir);
    cleanup.addDir(dir);
    host = await Netns.create(tag.name('m6h'), cleanup);
    pod = await Netns.create(tag.name('m6p'), cleanup);
    remote = await Netns.create(tag.name('m6r'), cleanup);
    outside6 = await Netns.create(tag.name('m6o'), cleanup);
    await host.sysctl('net.ipv6.conf.all.forwarding', 1);
    await addVethPair({ ns: host, ifname: 'pod0' }, { ns: pod, ifname: 'eth0' });
    await addVethPair({ ns: host, ifname: 'rem0' }, { ns: remote, ifname: 'eth0' });
    await addVethPair({ ns: host, ifname: 'out0' }, { ns: outside6, ifname: 'eth0' });
    await addr6(host, 'pod0', 'fd62:62:0:3::1/64');
    await addr6(pod, 'eth0', `${POD6}/64`);
    await pod.ip(['-6', 'route', 'add', 'default', 'via', 'fd62:62:0:3::1', 'dev', 'eth0']);
    await addr6(host, 'rem0', 'fd62:62:0:4::1/64');
    await addr6(remote, 'eth0', `${REMOTE6}/64`);
    await remote.ip(['-6', 'route', 'add', 'default', 'via', 'fd62:62:0:4::1', 'dev', 'eth0']);
    await addr6(host, 'out0', `${OUT_H6}/64`);
    await addr6(outside6, 'eth0', `${OUT6}/64`); // and no route to the overlay
    const nft: NftRunner = async (args, stdin) => {
      const r = await host.exec(['nft', ...args], { allowFailure: true, ...(stdin === undefined ? {} : { input: stdin }) });
      return { code: r.code ?? 1, stdout: r.stdout, stderr: r.stderr };
    };
    // Dual-stack: both tables, as the daemon sets them up with EnableIPv6.
    masq = new IpMasq({ params: { network: c4('10.62.0.0/16'), subnet: c4('10.62.3.0/24'), ipv6: { network: c6(NET6), subnet: c6(OWN6) } }, log, nft, intervalMs: 3_600_000 });
    await masq.start();
    await peerEcho(outside6, dir, 'echo-outside6', 'TCP6-LISTEN');
    await peerEcho(remote, dir, 'echo-remote6', 'TCP6-LISTEN');
  });

  after(async () => {
    await masq?.stop().catch(() => undefined);
    await cleanup?.run();
  });

  it('installs table ip6 rudder with the IPv6Network, beside table ip rudder', async () => {
    const t = await tableIn('ip6');
    assert.ok(t.present, 'table ip6 rudder exists');
    assert.match(t.text, /ip6 saddr fd62:62::\/48 ip6 daddr fd62:62::\/48 return/);
    assert.match(t.text, /ip6 saddr fd62:62::\/48 ip6 daddr != ff00::\/8 masquerade fully-random/);
    assert.match(t.text, /ip6 daddr fd62:62:0:3::\/64 return/);
    assert.match(t.text, /hook forward/);
    assert.match((await tableIn('ip')).text, /ip saddr 10\.62\.0\.0\/16 ip daddr 10\.62\.0\.0\/16 return/);
    assert.equal(await masq.ensure(), true, 'what nft lists is what was applied');
  });

  it('a pod\'s IPv6 connection to the outside is masqueraded to the host\'s address', async () => {
    const seen = await waitUntil(() => seen6(pod, OUT6), { giveUpMs: GIVE_UP_MS, intervalMs: 300, what: 'pod → outside over IPv6' });
    assert.equal(seen, OUT_H6);
  });

  it('pod to pod over IPv6 keeps the pod address', async () => {
    const seen = await waitUntil(() => seen6(pod, REMOTE6), { giveUpMs: GIVE_UP_MS, intervalMs: 300, what: 'pod → other subnet over IPv6' });
    assert.equal(seen, POD6);
  });

  it('stop removes both tables; the outside then cannot answer the pod', async () => {
    await masq.stop();
    assert.equal((await tableIn('ip6')).present, false);
    assert.equal((await tableIn('ip')).present, false);
    assert.ok(log.lines.some((l) => l.includes('ip masquerade rules removed') && l.includes('ip6 rudder')));
    const r = await pod.exec(['socat', '-u', `TCP6:[${OUT6}]:${PORT},connect-timeout=2`, '-'], { allowFailure: true });
    assert.notEqual(r.code, 0, `unmasqueraded pod address must get no answer: ${r.stdout}`);
  });
});

describe('ip masquerade of IPv6 by the daemon (dual-stack host-gw, -ip-masq)', { skip: skipUnlessRoot || skipUnlessEtcd }, () => {
  const NET6 = 'fd63:63::/48';
  const OUT_H6 = '2001:2:0:fe::1';
  const OUT6 = '2001:2:0:fe::2';
  let c: Cluster;
  let h1: Host;
  let p1: Pod;
  let p2: Pod;
  let outside6: Netns;

  before(async () => {
    c = await createCluster({ hosts: 2, ipv6: true, rudderArgs: ['-ip-masq'], giveUpMs: GIVE_UP_MS });
    h1 = c.host(1);
    outside6 = await Netns.create(c.tag.name('out6'), c.cleanup);
    await c.quietNamespace(outside6);
    await addVethPair({ ns: h1.ns, ifname: 'out6' }, { ns: outside6, ifname: 'eth0' });
    await h1.ns.ip(['-6', 'addr', 'add', `${OUT_H6}/64`, 'dev', 'out6', 'nodad']);
    await outside6.ip(['-6', 'addr', 'add', `${OUT6}/64`, 'dev', 'eth0', 'nodad']);
    await c.putConfig({ Network: '10.63.0.0/16', EnableIPv6: true, IPv6Network: NET6, Backend: { Type: 'host-gw' } });
    const [a, b] = await Promise.all([h1.up(), c.host(2).up()]);
    p1 = a.pod;
    p2 = b.pod;
    await peerEcho(outside6, h1.dir, 'echo-outside6', 'TCP6-LISTEN');
    await peerEcho(p2.ns, c.host(2).dir, 'echo-pod2-v6', 'TCP6-LISTEN');
  });

  after(async () => {
    await c?.teardown();
  });

  /** Connects from `pod` to [ip]:PORT and returns the peer address the listener saw (canonical). */
  async function seen6(pod: Pod, ip: string): Promise<string> {
    const r = await pod.exec(['socat', '-u', `TCP6:[${ip}]:${PORT},connect-timeout=3`, '-'], { allowFailure: true });
    if (r.code !== 0) throw new Error(`connect → [${ip}]:${PORT} failed: ${r.stderr.trim()}`);
    const text = r.stdout.trim().replace(/^\[|\]$/g, '');
    const addr = parseIp6(text);
    return addr === null ? text : formatIp6(addr);
  }

  it('installs table ip6 rudder for the IPv6Network beside table ip rudder', async () => {
    const t6 = await h1.exec(['nft', 'list', 'table', 'ip6', 'rudder'], { allowFailure: true });
    assert.equal(t6.code, 0, 'table ip6 rudder exists on h1');
    assert.match(t6.stdout, /ip6 saddr fd63:63::\/48 ip6 daddr fd63:63::\/48 return/);
    assert.equal((await table(h1)).present, true, 'table ip rudder too');
  });

  it('a pod\'s IPv6 connection to the outside is masqueraded; pod to pod over IPv6 keeps the pod address', async () => {
    const podIp6 = p1.ipv6 ?? assert.fail('pod 1 has an IPv6 address');
    const pod2Ip6 = p2.ipv6 ?? assert.fail('pod 2 has an IPv6 address');
    assert.equal(await waitUntil(() => seen6(p1, OUT6), { giveUpMs: GIVE_UP_MS, intervalMs: 300, what: 'pod of h1 → outside over IPv6' }), OUT_H6);
    assert.equal(await waitUntil(() => seen6(p1, pod2Ip6), { giveUpMs: GIVE_UP_MS, intervalMs: 300, what: 'pod of h1 → pod of h2 over IPv6' }), podIp6);
  });

  it('a clean stop removes both tables', async () => {
    await h1.stopRudder();
    assert.equal((await h1.exec(['nft', 'list', 'table', 'ip6', 'rudder'], { allowFailure: true })).code, 1);
    assert.equal((await table(h1)).present, false);
    assert.match(h1.rudderLog(4000), /ip masquerade rules removed.*ip rudder, ip6 rudder/);
  });
});
