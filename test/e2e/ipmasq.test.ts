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
 */
import assert from 'node:assert/strict';
import * as path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { Netns, addVethPair, createCluster, type Cluster, type Host, type ManagedProcess, type Pod } from '../../src/topology';
import { skipUnlessEtcd, skipUnlessRoot } from '../helpers/env';
import { waitUntil } from '../helpers/wait';

const GIVE_UP_MS = 90_000;
const NETWORK = '10.62.0.0/16';
const OUT_H1 = '198.19.0.1';
const OUT_IP = '198.19.0.2';
const PORT = 7000;

/** A listener that answers every connection with the address it came from. */
async function peerEcho(ns: Netns, dir: string, label: string): Promise<ManagedProcess> {
  return ns.spawn(['socat', `TCP-LISTEN:${PORT},reuseaddr,fork`, 'SYSTEM:echo $SOCAT_PEERADDR'], {
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
