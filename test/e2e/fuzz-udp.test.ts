/**
 * Hostile input on the udp backend's port, end to end: a 2-host udp cluster
 * (real etcd, bin/rudder daemons, pods), host 1's daemon serving
 * -metrics-addr. Two senders:
 *   - a NON-PEER: an extra namespace on the underlay switch at 198.18.0.200,
 *     which holds no lease;
 *   - the PEER: host 2's namespace, bound to host 2's underlay address (the
 *     data plane allows senders by PublicIP) with a port other than 8285.
 * Checks: a valid packet for a pod from the non-peer is never delivered while
 * the same packet from the peer is (so the check is proven, not a broken
 * path); 100 000 hostile datagrams (test/helpers/bad-input-fuzz-sender.ts)
 * while the pods ping each other: the daemon stays up and ready, every drop
 * is counted under the reason the sender's model predicts (datagrams the
 * kernel itself dropped for a full socket buffer, UDP RcvbufErrors in host
 * 1's namespace, are accounted separately), the pods keep talking during
 * and after.
 */
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { formatIp, maskOf, parseCidr } from '../../src/ip/ipv4';
import { Netns, addVethPair, createCluster, type Cluster, type Host, type Pod, type SubnetEnv } from '../../src/topology';
import { FUZZ_SENDER, type FuzzSendResult } from '../helpers/bad-input-fuzz-sender';
import { skipUnlessEtcd, skipUnlessRoot } from '../helpers/env';
import { waitUntil } from '../helpers/wait';
import { fetchIn } from '../helpers/fetch-in-ns';
import { parseMetrics } from '../helpers/prometheus';
import { ipv4Udp } from '../helpers/packets';

const GIVE_UP_MS = 90_000;
const METRICS_PORT = 9108;
const UDP_PORT = 8285;
const NONPEER_IP = '198.18.0.200';
const CONFIG = { Network: '10.66.0.0/16', SubnetMin: '10.66.1.0', Backend: { Type: 'udp' } };
const PER_SENDER = 50_000;
const PY = '/usr/bin/python3';

/** Sends `count` copies of one datagram (hex) from BIND_IP:BIND_PORT. */
const SEND_SAME = `
import socket, sys
host, port, bind_ip, bind_port, count, hexdata = sys.argv[1:7]
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind((bind_ip, int(bind_port)))
for _ in range(int(count)): s.sendto(bytes.fromhex(hexdata), (host, int(port)))
`;

const get = (m: Map<string, number>, s: string): number => m.get(s) ?? 0;
const drop = (m: Map<string, number>, reason: string): number => get(m, `rudder_dataplane_drops_total{reason="${reason}"}`);
const REASONS = ['unknown_sender', 'malformed', 'ttl', 'not_local'] as const;

function leaseCidr(env: SubnetEnv): string {
  const c = parseCidr(env.subnet);
  assert.ok(c, env.subnet);
  return `${formatIp((c.ip & maskOf(c.prefix)) >>> 0)}/${c.prefix}`;
}

/** Kernel UDP counters of a namespace (/proc/net/snmp is per namespace). */
async function udpSnmp(ns: { exec: Netns['exec'] }): Promise<Record<string, number>> {
  const r = await ns.exec(['cat', '/proc/net/snmp']);
  const lines = r.stdout.split('\n').filter((l) => l.startsWith('Udp:'));
  const keys = (lines[0] ?? '').split(/\s+/).slice(1);
  const vals = (lines[1] ?? '').split(/\s+/).slice(1).map(Number);
  return Object.fromEntries(keys.map((k, i) => [k, vals[i] ?? 0]));
}

describe('hostile datagrams on the udp port (peer and non-peer senders)', { skip: skipUnlessRoot || skipUnlessEtcd }, () => {
  let c: Cluster;
  let h1: Host;
  let h2: Host;
  let p1: Pod;
  let p2: Pod;
  let lease1 = '';
  let lease2 = '';
  let attacker: Netns;
  let base = '';

  const scrape = async (): Promise<Map<string, number>> => {
    const j = await fetchIn(attacker, `${base}/metrics`);
    assert.equal(j.status, 200, `GET ${base}/metrics: ${j.raw}`);
    return parseMetrics(j.body ?? '');
  };
  const healthy = async (): Promise<void> => {
    assert.ok(h1.rudder?.running, `rudder on h1 is running; log:\n${h1.rudderLog(3000)}`);
    const r = await fetchIn(attacker, `${base}/readyz`);
    assert.equal(r.status, 200, `readyz: ${r.raw}`);
  };

  before(async () => {
    c = await createCluster({ hosts: 2, rudderArgs: ['-v=1'], giveUpMs: GIVE_UP_MS });
    h1 = c.host(1);
    h2 = c.host(2);
    h1.rudderArgs.push(`-metrics-addr=${h1.underlayIp}:${METRICS_PORT}`);
    base = `http://${h1.underlayIp}:${METRICS_PORT}`;
    await c.putConfig(CONFIG);
    const [u1, u2] = await Promise.all([h1.up(), h2.up()]);
    p1 = u1.pod;
    p2 = u2.pod;
    lease1 = leaseCidr(u1.env);
    lease2 = leaseCidr(u2.env);
    // The non-peer: on the underlay switch like any host, but it holds no lease.
    attacker = await Netns.create(c.tag.name('x'), c.cleanup);
    await c.quietNamespace(attacker);
    await addVethPair({ ns: c.switchNs, ifname: 'sw-x' }, { ns: attacker, ifname: 'eth0' }, c.underlayMtu);
    await c.switchNs.setMaster('sw-x', 'br0');
    await attacker.addAddress('eth0', `${NONPEER_IP}/15`);
    await waitUntil(async () => (await p1.ping(p2.ip, { count: 1, replyWaitS: 1 })).received === 1, { giveUpMs: GIVE_UP_MS, what: 'ping pod h1 → pod h2' });
    await waitUntil(async () => (await scrape()).has('rudder_dataplane_drops_total{reason="unknown_sender"}') || undefined, {
      giveUpMs: GIVE_UP_MS,
      what: 'data plane series on /metrics',
    });
  });

  after(async () => {
    await c?.teardown();
  });

  it('a valid packet for a pod is not delivered from a non-peer, and is delivered from the peer', async (t) => {
    const dir = fs.mkdtempSync(path.join(c.dir, 'recv-'));
    const file = path.join(dir, 'received');
    const port = 7777;
    const listener = await p1.ns.spawn(['socat', '-u', `UDP-RECV:${port}`, `OPEN:${file},creat,append`], {
      logFile: path.join(dir, 'socat.log'),
      label: 'udp listener in pod of h1',
    });
    try {
      // socat binds before it reads; a pod-local probe shows when it listens.
      await waitUntil(async () => {
        await p1.exec([PY, '-c', `import socket; socket.socket(socket.AF_INET, socket.SOCK_DGRAM).sendto(b'probe\\n', ('${p1.ip}', ${port}))`]);
        return fs.existsSync(file) && fs.readFileSync(file, 'utf8').includes('probe') ? true : undefined;
      }, { giveUpMs: GIVE_UP_MS, what: 'the pod listener' });
      const before = await scrape();
      const fromNonPeer = ipv4Udp(p2.ip, p1.ip, port, Buffer.from('FROM-NON-PEER\n'));
      const fromPeer = ipv4Udp(p2.ip, p1.ip, port, Buffer.from('FROM-PEER\n'));
      const n = 200;
      await attacker.exec([PY, '-c', SEND_SAME, h1.underlayIp, String(UDP_PORT), NONPEER_IP, '0', String(n), fromNonPeer.toString('hex')]);
      // Then the peer's copy, from host 2's address but not from its daemon's socket.
      await h2.exec([PY, '-c', SEND_SAME, h1.underlayIp, String(UDP_PORT), h2.underlayIp, '41000', '1', fromPeer.toString('hex')]);
      await waitUntil(() => (fs.readFileSync(file, 'utf8').includes('FROM-PEER') ? true : undefined), {
        giveUpMs: GIVE_UP_MS,
        what: 'the peer\'s packet to reach the pod',
      });
      // The non-peer's datagrams were queued before the peer's on the same socket: all of them were handled by now.
      const got = fs.readFileSync(file, 'utf8');
      assert.ok(!got.includes('FROM-NON-PEER'), `the pod received a packet from a non-peer: ${JSON.stringify(got)}`);
      const afterM = await waitUntil(async () => {
        const m = await scrape();
        return drop(m, 'unknown_sender') - drop(before, 'unknown_sender') >= n ? m : undefined;
      }, { giveUpMs: GIVE_UP_MS, what: `${n} unknown_sender drops` });
      assert.equal(drop(afterM, 'unknown_sender') - drop(before, 'unknown_sender'), n);
      t.diagnostic(`non-peer copies: ${n} sent, ${n} counted unknown_sender, 0 delivered; peer copy delivered`);
    } finally {
      await listener.stop(5000);
    }
  });

  it('100 000 hostile datagrams from a non-peer and from the peer: daemon up, every drop counted by reason, pods keep talking', async (t) => {
    const before = await scrape();
    const snmpBefore = await udpSnmp(h1);
    const send = async (ns: Netns, bindIp: string, bindPort: number, mode: string, seed: number): Promise<FuzzSendResult> => {
      const r = await ns.exec([PY, '-c', FUZZ_SENDER, h1.underlayIp, String(UDP_PORT), bindIp, String(bindPort), mode, String(PER_SENDER), String(seed), lease1, p2.ip, p1.ip, formatIp((parseCidr(lease2)?.ip ?? 0) + 9)]);
      return JSON.parse(r.stdout.trim().split('\n').pop() ?? '{}') as FuzzSendResult;
    };
    const t0 = Date.now();
    // Pods keep pinging while the datagrams arrive.
    const during = p1.ping(p2.ip, { count: 40, intervalS: 0.2, replyWaitS: 2 });
    const [nonPeer, peer] = await Promise.all([
      send(attacker, NONPEER_IP, 0, 'nonpeer', 11),
      send(h2.ns, h2.underlayIp, 41001, 'peer', 12),
    ]);
    const duringPing = await during;
    const sendSeconds = (Date.now() - t0) / 1000;
    const sent = nonPeer.sent + peer.sent;
    assert.equal(sent, 2 * PER_SENDER, `all sent: ${JSON.stringify({ nonPeer, peer })}`);
    const want: Record<string, number> = {
      unknown_sender: nonPeer.want.unknown_sender + peer.want.unknown_sender,
      malformed: peer.want.malformed,
      ttl: peer.want.ttl,
      not_local: peer.want.not_local,
    };
    for (const r of REASONS) assert.ok(want[r]! > 0, `the mix exercises ${r}: ${JSON.stringify(want)}`);
    assert.ok(peer.want.deliver > 0);

    // Counters settle once the data plane has read everything; the kernel's own drops are accounted for.
    let kernelDrops = 0;
    const counted = (m: Map<string, number>): Record<string, number> => Object.fromEntries(REASONS.map((r) => [r, drop(m, r) - drop(before, r)]));
    const settled = await waitUntil(async () => {
      const m = await scrape();
      const snmp = await udpSnmp(h1);
      kernelDrops = (snmp.RcvbufErrors ?? 0) - (snmpBefore.RcvbufErrors ?? 0);
      const d = counted(m);
      const shortfall = REASONS.reduce((s, r) => s + (want[r]! - d[r]!), 0);
      return shortfall <= kernelDrops ? m : undefined;
    }, { giveUpMs: GIVE_UP_MS, intervalMs: 500, what: `drops to be counted (want ${JSON.stringify(want)})` });
    const got = counted(settled);
    const rxDelta = get(settled, 'rudder_dataplane_packets_total{direction="rx"}') - get(before, 'rudder_dataplane_packets_total{direction="rx"}');
    const tunErr = get(settled, 'rudder_dataplane_errors_total{kind="tun"}') - get(before, 'rudder_dataplane_errors_total{kind="tun"}');
    const report = { sent, bytes: nonPeer.bytes + peer.bytes, want, got, kernelDrops, deliverExpected: peer.want.deliver, rxDelta, tunErr, senderSeconds: [nonPeer.seconds, peer.seconds], withPingSeconds: sendSeconds };
    t.diagnostic(JSON.stringify(report));
    for (const r of REASONS) {
      if (kernelDrops === 0) assert.equal(got[r], want[r], `${r}: ${JSON.stringify(report)}`);
      else assert.ok(got[r]! <= want[r]!, `${r} never over-counted: ${JSON.stringify(report)}`);
    }
    // Well-formed packets from the peer for h1's lease went into the TUN (plus the pods' own traffic).
    assert.ok(rxDelta + tunErr + kernelDrops >= peer.want.deliver, `delivered: ${JSON.stringify(report)}`);

    // The daemon stayed up and ready; the pods kept talking during the flood and do after it.
    await healthy();
    assert.ok(duringPing.received >= duringPing.transmitted * 0.9, `ping during the flood: ${duringPing.received}/${duringPing.transmitted}\n${duringPing.output}`);
    const afterPing = await p1.ping(p2.ip, { count: 5, intervalS: 0.2, replyWaitS: 2 });
    assert.equal(afterPing.received, 5, afterPing.output);
    const back = await p2.ping(p1.ip, { count: 5, intervalS: 0.2, replyWaitS: 2 });
    assert.equal(back.received, 5, back.output);
    t.diagnostic(`ping during: ${duringPing.received}/${duringPing.transmitted}; after: 5/5 both ways`);
    // The result for docs/reliability.md, when asked for.
    if (process.env.RUDDER_FUZZ_REPORT) fs.writeFileSync(process.env.RUDDER_FUZZ_REPORT, JSON.stringify({ ...report, duringPing: `${duringPing.received}/${duringPing.transmitted}` }, null, 2));
  });
});
