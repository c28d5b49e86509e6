/**
 * End-to-end proof of the native udp data plane on a real kernel: two hosts
 * are network namespaces joined by a veth pair (underlay 198.18.0.0/24), each
 * running dataplane-child (a node process holding an open DataPlane). The test
 * configures the TUN devices with iproute2 the way the udp backend does over
 * rtnetlink: lease network address /32, MTU, up, the whole Network routed in.
 */
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { NativeDataPlaneCounters } from '../../src/dataplane/native';
import { openDataPlane } from '../../src/dataplane/native';
import type { DataPlaneOffloads, DataPlaneOptions, DataPlaneRoute } from '../../src/dataplane/types';
import { isRudderError } from '../../src/errors';
import {
  ChildError,
  DataPlaneChild,
  fixHeaderChecksum,
  icmpEcho,
  ip4,
  ipv4Packet,
  must,
  run,
  Sandbox,
  type RunResult,
} from '../helpers/dataplane-net';

const PORT = 8285;
const NETWORK = '10.42.0.0/16';
const H1 = { underlay: '198.18.0.1', stranger: '198.18.0.3', subnet: '10.42.1.0' };
const H2 = { underlay: '198.18.0.2', subnet: '10.42.2.0' };
type Host = typeof H1 | typeof H2;

const isRoot = process.getuid?.() === 0;

/** The offloads-on pass also runs two TUN queues (worker pairs), whatever the CPU count; the off pass one. */
const queuesFor = (offloads: boolean): number => (offloads ? 2 : 1);

function optsFor(h: Host, offloads = true): DataPlaneOptions {
  return {
    offloads,
    queues: queuesFor(offloads),
    tunName: 'rudder0',
    bindAddress: ip4(h.underlay),
    port: PORT,
    localSubnet: { ip: ip4(h.subnet), prefix: 24 },
    icmpSource: ip4(h.subnet),
    mtu: 1472,
  };
}

function route(subnet: string, prefix: number, publicIP: string): DataPlaneRoute {
  return { ip: ip4(subnet), prefix, publicIP: ip4(publicIP), port: PORT };
}

/** Waits for a condition with a generous give-up (not a timing assertion). */
async function waitFor(what: string, cond: () => Promise<boolean>, giveUpMs = 15000): Promise<void> {
  const end = Date.now() + giveUpMs;
  while (Date.now() < end) {
    if (await cond()) return;
    await new Promise((r) => setTimeout(r, 50));
  }
  assert.fail(`gave up waiting for ${what}`);
}

function received(r: RunResult): { sent: number; got: number } {
  const m = /(\d+) packets transmitted, (\d+) received/.exec(r.stdout);
  assert.ok(m, `no ping summary in: ${r.stdout}${r.stderr}`);
  return { sent: Number(m[1]), got: Number(m[2]) };
}

/** Every test of the pair of hosts runs twice: offloads on (the default) and forced off. */
for (const offloads of [true, false]) {
describe(`native udp data plane between two namespaced hosts (offloads ${offloads ? 'on' : 'off'}, ${queuesFor(offloads)} queue${queuesFor(offloads) > 1 ? 's' : ''})`, { skip: !isRoot && 'needs root (network namespaces, TUN)' }, () => {
  let sb: Sandbox;
  let ns1 = '';
  let ns2 = '';
  let h1: DataPlaneChild;
  let h2: DataPlaneChild;
  const got = new Map<DataPlaneChild, DataPlaneOffloads>();

  const counters = (c: DataPlaneChild): Promise<NativeDataPlaneCounters> =>
    c.request<NativeDataPlaneCounters>('counters', { key: 'main' });
  const ping = (ns: string, ...args: string[]): Promise<RunResult> => run('ip', ['netns', 'exec', ns, 'ping', ...args]);
  const send = (from: string, to: string, pkt: Buffer): Promise<void> =>
    h1.request('sendUdp', { from, to, port: PORT, hex: pkt.toString('hex') });

  async function configureTun(ns: string, h: Host): Promise<void> {
    await must('ip', ['-n', ns, 'link', 'set', 'rudder0', 'mtu', '1472', 'up']);
    await must('ip', ['-n', ns, 'addr', 'add', `${h.subnet}/32`, 'dev', 'rudder0']);
    await must('ip', ['-n', ns, 'route', 'add', NETWORK, 'dev', 'rudder0']);
  }

  async function startHost(c: DataPlaneChild, ns: string, h: Host, routes: DataPlaneRoute[]): Promise<void> {
    const r = await c.request<{ ifname: string; offloads: DataPlaneOffloads }>('open', { key: 'main', opts: optsFor(h, offloads) });
    assert.equal(r.ifname, 'rudder0');
    got.set(c, r.offloads);
    await configureTun(ns, h);
    await c.request('setRoutes', { key: 'main', routes });
  }

  const h1Routes = [route(H2.subnet, 24, H2.underlay)];
  const h2Routes = [route(H1.subnet, 24, H1.underlay)];

  before(async () => {
    sb = new Sandbox();
    ns1 = await sb.netns('h1');
    ns2 = await sb.netns('h2');
    await must('ip', ['-n', ns1, 'link', 'add', 'v1', 'type', 'veth', 'peer', 'name', 'v2', 'netns', ns2]);
    await must('ip', ['-n', ns1, 'addr', 'add', `${H1.underlay}/24`, 'dev', 'v1']);
    await must('ip', ['-n', ns1, 'addr', 'add', `${H1.stranger}/24`, 'dev', 'v1']);
    await must('ip', ['-n', ns2, 'addr', 'add', `${H2.underlay}/24`, 'dev', 'v2']);
    await must('ip', ['-n', ns1, 'link', 'set', 'v1', 'up']);
    await must('ip', ['-n', ns2, 'link', 'set', 'v2', 'up']);
    h1 = await DataPlaneChild.start(sb, ns1);
    h2 = await DataPlaneChild.start(sb, ns2);
    await startHost(h1, ns1, H1, h1Routes);
    await startHost(h2, ns2, H2, h2Routes);
  });

  after(() => {
    sb?.cleanupSync();
  });

  it('carries pings both ways, decrementing TTL once on the way in (valid incremental checksum)', async () => {
    const b1 = await counters(h1);
    const b2 = await counters(h2);
    const r1 = await ping(ns1, '-c', '3', '-i', '0.2', '-W', '5', H2.subnet);
    assert.equal(r1.code, 0, r1.stdout + r1.stderr);
    assert.deepEqual(received(r1), { sent: 3, got: 3 });
    // 64 at the sender, 63 after the remote data plane's decrement; the kernel would drop a bad checksum.
    assert.match(r1.stdout, /ttl=63/);
    const r2 = await ping(ns2, '-c', '3', '-i', '0.2', '-W', '5', H1.subnet);
    assert.equal(r2.code, 0, r2.stdout + r2.stderr);
    assert.deepEqual(received(r2), { sent: 3, got: 3 });

    const a1 = await counters(h1);
    const a2 = await counters(h2);
    for (const [b, a] of [
      [b1, a1],
      [b2, a2],
    ] as const) {
      assert.ok(a.txPackets - b.txPackets >= 6, `tx ${b.txPackets} -> ${a.txPackets}`);
      assert.ok(a.rxPackets - b.rxPackets >= 6, `rx ${b.rxPackets} -> ${a.rxPackets}`);
      assert.ok(a.txBytes - b.txBytes >= 6 * 84, `txBytes ${b.txBytes} -> ${a.txBytes}`);
      assert.ok(a.rxBytes - b.rxBytes >= 6 * 84, `rxBytes ${b.rxBytes} -> ${a.rxBytes}`);
      assert.equal(a.socketErrors, 0);
      assert.equal(a.tunErrors, 0);
    }
  });

  it('reports the offloads it got: all off when forced off, else each on or explained', () => {
    for (const [name, o] of [
      ['h1', got.get(h1)],
      ['h2', got.get(h2)],
    ] as const) {
      assert.ok(o, `${name} reported no offloads`);
      assert.equal(o.requested, offloads);
      if (!offloads) {
        assert.deepEqual(o, { requested: false, tunVnetHdr: false, tso: false, uso: false, udpGso: false, udpGro: false, busyPoll: true, queues: 1, note: '' });
      } else {
        const all = o.tunVnetHdr && o.tso && o.uso && o.udpGso && o.udpGro;
        assert.equal(all, o.note === '', `${name}: ${JSON.stringify(o)}`);
        assert.ok(!o.tso || o.tunVnetHdr, 'TSO without the virtio header');
        assert.ok(!o.uso || o.tso, 'USO without TSO');
      }
    }
  });

  it('runs one tx/rx thread pair per TUN queue, the device having that many queues', async () => {
    const want = queuesFor(offloads);
    for (const [c, ns] of [
      [h1, ns1],
      [h2, ns2],
    ] as const) {
      assert.equal(got.get(c)?.queues, want);
      const pid = c.proc.pid;
      assert.ok(pid, 'child has no pid');
      // `ip netns exec` execs node, so the child's PID is the data plane's process.
      const names = fs.readdirSync(`/proc/${pid}/task`).map((t) => fs.readFileSync(`/proc/${pid}/task/${t}/comm`, 'utf8').trim());
      const workers = names.filter((n) => /^rudder-(tx|rx)\d*$/.test(n)).sort();
      const expected = want === 1 ? ['rudder-rx', 'rudder-tx'] : Array.from({ length: want }, (_, k) => [`rudder-rx${k}`, `rudder-tx${k}`]).flat().sort();
      assert.deepEqual(workers, expected);
      const q = await run('ip', ['netns', 'exec', ns, 'ls', '/sys/class/net/rudder0/queues']);
      const txq = q.stdout.split(/\s+/).filter((x) => x.startsWith('tx-'));
      assert.equal(txq.length, want, `queues of rudder0: ${q.stdout}`);
    }
  });

  it('carries pings of mixed sizes with DF set both ways, every reply intact', async (t) => {
    // 1444 = MTU 1472 - 28: the largest that fits unfragmented.
    // Each size must cross both ways (a reply at least of 3: on a loaded machine
    // the kernel may drop one ICMP), every reply intact, and nearly every ping
    // answered overall (a size the data plane mishandles loses all of its own).
    let sentAll = 0;
    let gotAll = 0;
    for (const size of ['0', '1', '7', '56', '200', '999', '1000', '1400', '1444']) {
      for (const [ns, to] of [
        [ns1, H2.subnet],
        [ns2, H1.subnet],
      ] as const) {
        const r = await ping(ns, '-c', '3', '-i', '0.05', '-W', '5', '-s', size, '-M', 'do', '-p', 'a5c3', to);
        assert.equal(r.code, 0, `size ${size}: ${r.stdout}${r.stderr}`);
        const { sent, got } = received(r);
        assert.equal(sent, 3, `size ${size}`);
        assert.ok(got >= 1, `size ${size} to ${to}: no reply of ${sent}`);
        if (got < sent) t.diagnostic(`size ${size} to ${to}: ${got}/${sent} replies`);
        sentAll += sent;
        gotAll += got;
        assert.doesNotMatch(r.stdout, /wrong data|DUP!/, `size ${size}`);
      }
    }
    assert.ok(gotAll >= sentAll * 0.9, `${gotAll}/${sentAll} replies over every size`);
  });

  it('iperf3 -P 4 in both directions: TCP flows through, super-packets cut and coalesced when offloads are on', async () => {
    const port = 5202;
    const server = spawn('ip', ['netns', 'exec', ns2, 'iperf3', '-s', '-B', H2.subnet, '-p', String(port)], { stdio: 'ignore' });
    sb.track(server);
    try {
      await waitFor('iperf3 to listen', async () => (await run('ip', ['netns', 'exec', ns2, 'ss', '-Hltn', `sport = :${port}`])).stdout.includes(`:${port}`));
      for (const reverse of [false, true]) {
        const b1 = await counters(h1);
        const b2 = await counters(h2);
        const r = await run('ip', ['netns', 'exec', ns1, 'iperf3', '-c', H2.subnet, '-p', String(port), '-P', '4', '-t', '2', '-J', ...(reverse ? ['-R'] : [])]);
        const j = JSON.parse(r.stdout) as { error?: string; end?: { sum_received?: { bytes: number }; sum_sent?: { bytes: number } } };
        assert.equal(j.error, undefined, `iperf3${reverse ? ' -R' : ''}: ${j.error}`);
        assert.equal(r.code, 0, r.stderr);
        const rx = j.end?.sum_received?.bytes ?? 0;
        assert.ok(rx > 1_000_000, `iperf3${reverse ? ' -R' : ''} received ${rx} bytes`);
        const a1 = await counters(h1);
        const a2 = await counters(h2);
        const [sender, sBefore, receiver, rBefore, sOff, rOff] = reverse ? [a2, b2, a1, b1, got.get(h2), got.get(h1)] : [a1, b1, a2, b2, got.get(h1), got.get(h2)];
        assert.ok(receiver.rxBytes - rBefore.rxBytes >= rx, `data plane delivered ${receiver.rxBytes - rBefore.rxBytes} < ${rx} bytes`);
        for (const [a, b] of [
          [a1, b1],
          [a2, b2],
        ] as const) {
          assert.equal(a.tunErrors, b.tunErrors, 'TUN write errors');
          assert.equal(a.dropMalformed, b.dropMalformed, 'malformed drops');
          assert.equal(a.dropNotLocal, b.dropNotLocal);
        }
        if (sOff?.tso) assert.ok(sender.txGsoPackets > sBefore.txGsoPackets, 'offloads on but no super-packet was segmented');
        else assert.equal(sender.txGsoPackets, sBefore.txGsoPackets);
        if (rOff?.tunVnetHdr) assert.ok(receiver.rxGroPackets > rBefore.rxGroPackets, 'offloads on but nothing was coalesced');
        else assert.equal(receiver.rxGroPackets, rBefore.rxGroPackets);
      }
    } finally {
      stopChild(server);
    }
  });

  it('one bulk TCP flow: its ACKs are served by the busy data threads (no wake-up each), pings both ways still answered', async () => {
    const port = 5204;
    const server = spawn('ip', ['netns', 'exec', ns2, 'iperf3', '-s', '-B', H2.subnet, '-p', String(port)], { stdio: 'ignore' });
    sb.track(server);
    try {
      await waitFor('iperf3 to listen', async () => (await run('ip', ['netns', 'exec', ns2, 'ss', '-Hltn', `sport = :${port}`])).stdout.includes(`:${port}`));
      const b1 = await counters(h1);
      const b2 = await counters(h2);
      const [r, p12, p21] = await Promise.all([
        run('ip', ['netns', 'exec', ns1, 'iperf3', '-c', H2.subnet, '-p', String(port), '-t', '3', '-J']),
        ping(ns1, '-c', '20', '-i', '0.1', '-W', '2', H2.subnet),
        ping(ns2, '-c', '20', '-i', '0.1', '-W', '2', H1.subnet),
      ]);
      const j = JSON.parse(r.stdout) as { error?: string; end?: { sum_received?: { bytes: number } } };
      assert.equal(j.error, undefined, `iperf3: ${j.error}`);
      const rx = j.end?.sum_received?.bytes ?? 0;
      assert.ok(rx > 1_000_000, `iperf3 received ${rx} bytes`);
      const a1 = await counters(h1);
      const a2 = await counters(h2);
      // h2's rx thread, busy with the data, sends the ACKs its writes made; h1's tx thread, busy
      // sending, takes the ACKs in between its reads (native/dataplane/wait.c, serving).
      const acksSent = a2.txPackets - b2.txPackets;
      const acksGot = a1.rxPackets - b1.rxPackets;
      const served2 = a2.servedPackets - b2.servedPackets;
      const served1 = a1.servedPackets - b1.servedPackets;
      console.log(`# served: h2 sent ${served2} of ${acksSent} datagrams from its rx thread; h1 took ${served1} of ${acksGot} on its tx thread`);
      assert.ok(served2 * 2 >= acksSent, `h2 served only ${served2} of the ${acksSent} datagrams it sent`);
      assert.ok(served1 * 2 >= acksGot, `h1 served only ${served1} of the ${acksGot} packets it received`);
      // The busy threads linger (poll, yielding the CPU) when their fds run dry, and most
      // lingers find the next batch instead of sleeping for it (wait.c).
      const lingers = a1.lingers - b1.lingers + a2.lingers - b2.lingers;
      const found = a1.lingerFound - b1.lingerFound + a2.lingerFound - b2.lingerFound;
      console.log(`# lingering: ${found} of ${lingers} lingers found work`);
      assert.ok(found > 0 && found <= lingers, `lingers ${lingers}, found work ${found}`);
      for (const [name, pr] of [['h1 → h2', p12], ['h2 → h1', p21]] as const) {
        const { sent, got: n } = received(pr);
        assert.ok(n >= sent * 0.9, `${name}: ${n} of ${sent} pings answered during the flow`);
      }
      // Served threads are handed their fds back once the flow ends: a ping after it is answered.
      const after = received(await ping(ns2, '-c', '3', '-i', '0.2', '-W', '2', H1.subnet));
      assert.equal(after.got, after.sent, 'pings after the flow');
      // At a ping's rate no thread lingers: a low-rate thread sleeps at once.
      const l1 = await counters(h1);
      const l2 = await counters(h2);
      const slow = received(await ping(ns2, '-c', '10', '-i', '0.1', '-W', '2', H1.subnet));
      assert.equal(slow.got, slow.sent, 'pings at 10/s');
      const e1 = await counters(h1);
      const e2 = await counters(h2);
      assert.equal(e1.lingers - l1.lingers + e2.lingers - l2.lingers, 0, 'a thread lingered at 10 packets/s');
    } finally {
      stopChild(server);
    }
  });

  it('UDP of several sizes arrives with valid checksums (partial checksums completed on the way out)', async () => {
    const port = 5204;
    const server = spawn('ip', ['netns', 'exec', ns2, 'iperf3', '-s', '-B', H2.subnet, '-p', String(port)], { stdio: 'ignore' });
    sb.track(server);
    const csumErrors = async (): Promise<number> => {
      const r = await run('ip', ['netns', 'exec', ns2, 'cat', '/proc/net/snmp']);
      const lines = r.stdout.split('\n').filter((l) => l.startsWith('Udp:'));
      const names = (lines[0] ?? '').split(/\s+/);
      const values = (lines[1] ?? '').split(/\s+/);
      return Number(values[names.indexOf('InCsumErrors')] ?? NaN);
    };
    try {
      await waitFor('iperf3 to listen', async () => (await run('ip', ['netns', 'exec', ns2, 'ss', '-Hltn', `sport = :${port}`])).stdout.includes(`:${port}`));
      const before = await csumErrors();
      assert.ok(Number.isInteger(before), 'no Udp InCsumErrors in /proc/net/snmp');
      for (const len of ['16', '333', '1000', '1444']) {
        // 2,000 datagrams a second whatever their size: what is checked is that each size arrives
        // intact, not how many tiny datagrams a loaded machine keeps up with.
        const rate = `${Math.ceil((Number(len) * 8 * 2000) / 1000)}K`;
        const r = await run('ip', ['netns', 'exec', ns1, 'iperf3', '-c', H2.subnet, '-p', String(port), '-u', '-l', len, '-b', rate, '-t', '1', '-J']);
        const j = JSON.parse(r.stdout) as { error?: string; end?: { sum?: { packets: number; lost_packets: number } } };
        assert.equal(j.error, undefined, `iperf3 -u -l ${len}: ${j.error}`);
        const sum = j.end?.sum;
        assert.ok(sum && sum.packets > 0, `-l ${len}: nothing sent`);
        assert.ok(sum.lost_packets <= sum.packets / 10, `-l ${len}: ${sum.lost_packets} of ${sum.packets} lost`);
      }
      assert.equal(await csumErrors(), before, 'UDP datagrams with bad checksums reached h2');
    } finally {
      stopChild(server);
    }
  });

  it('a 1 GB TCP transfer arrives byte for byte (sha256 of both ends)', async () => {
    const port = 5203;
    const bytes = 1 << 30;
    // Own process groups, so that the shell pipelines go with their socat/sha256sum when ended.
    const recv = spawn('ip', ['netns', 'exec', ns2, 'bash', '-c', `socat -u TCP-LISTEN:${port},bind=${H2.subnet},reuseaddr STDOUT | sha256sum`], {
      stdio: ['ignore', 'pipe', 'pipe'],
      detached: true,
    });
    sb.track(recv);
    const recvOut = collect(recv);
    try {
      await waitFor('socat to listen', async () => (await run('ip', ['netns', 'exec', ns2, 'ss', '-Hltn', `sport = :${port}`])).stdout.includes(`:${port}`));
      const b2 = await counters(h2);
      const send = await run('ip', [
        'netns', 'exec', ns1, 'bash', '-c',
        `set -o pipefail; head -c ${bytes} /dev/urandom | tee >(sha256sum >&2) | socat -u STDIN TCP:${H2.subnet}:${port}`,
      ]);
      assert.equal(send.code, 0, `sender: ${send.stderr}`);
      const r = await recvOut;
      assert.equal(r.code, 0, `receiver: ${r.stderr}`);
      const sent = /^([0-9a-f]{64})\s/m.exec(send.stderr)?.[1];
      const gotSum = /^([0-9a-f]{64})\s/m.exec(r.stdout)?.[1];
      assert.ok(sent, `no sha256 from the sender: ${send.stderr}`);
      assert.equal(gotSum, sent, 'sha256 of what arrived differs from what was sent');
      const a2 = await counters(h2);
      assert.ok(a2.rxBytes - b2.rxBytes >= bytes, `h2 delivered only ${a2.rxBytes - b2.rxBytes} bytes`);
    } finally {
      if (recv.pid !== undefined && recv.exitCode === null) {
        try {
          process.kill(-recv.pid, 'SIGKILL'); // the group this test created
        } catch {
          // already gone
        }
      }
    }
  });

  it('carries 1472- and 8000-byte pings with DF clear (fragments through the tunnel)', async () => {
    const b1 = await counters(h1);
    for (const size of ['1472', '8000']) {
      const r = await ping(ns1, '-c', '2', '-i', '0.2', '-W', '5', '-s', size, '-M', 'dont', H2.subnet);
      assert.equal(r.code, 0, r.stdout + r.stderr);
      assert.deepEqual(received(r), { sent: 2, got: 2 }, `size ${size}`);
    }
    const a1 = await counters(h1);
    // 1500-byte packets need 2 fragments at MTU 1472, 8028-byte ones 6.
    assert.ok(a1.txPackets - b1.txPackets >= 2 * 2 + 2 * 6, `tx ${b1.txPackets} -> ${a1.txPackets}`);
    assert.ok(a1.txBytes - b1.txBytes >= 2 * 1500 + 2 * 8028, `txBytes ${b1.txBytes} -> ${a1.txBytes}`);
    assert.ok(a1.rxBytes - b1.rxBytes >= 2 * 1500 + 2 * 8028, `rxBytes ${b1.rxBytes} -> ${a1.rxBytes}`);
  });

  it('drops a valid packet from an address in no route (unknownSender) but delivers it from the peer', async () => {
    const pkt = ipv4Packet({ src: '10.42.1.77', dst: H2.subnet, proto: 1, payload: icmpEcho(0x4242, 1) });
    const b = await counters(h2);
    await send(H1.stranger, H2.underlay, pkt);
    await waitFor('unknownSender to count the stranger', async () => (await counters(h2)).dropUnknownSender > b.dropUnknownSender);
    const a = await counters(h2);
    assert.equal(a.dropUnknownSender, b.dropUnknownSender + 1);
    assert.equal(a.rxPackets, b.rxPackets, 'the stranger’s packet reached the TUN');

    // Control: the same bytes from the peer's PublicIP are delivered.
    await send(H1.underlay, H2.underlay, pkt);
    await waitFor('rxPackets to count the peer’s packet', async () => (await counters(h2)).rxPackets > a.rxPackets);
    const c = await counters(h2);
    assert.equal(c.rxPackets, a.rxPackets + 1);
    assert.equal(c.dropUnknownSender, a.dropUnknownSender);
  });

  it('drops malformed datagrams and packets for other subnets from a peer, counting each reason', async () => {
    const good = (): Buffer => ipv4Packet({ src: '10.42.1.9', dst: H2.subnet, proto: 1, payload: icmpEcho(7, 1) });
    const badChecksum = good();
    badChecksum[10] = (badChecksum[10] ?? 0) ^ 0xff;
    const badVersion = good();
    badVersion[0] = 0x65;
    fixHeaderChecksum(badVersion);
    const shortIhl = good();
    shortIhl[0] = 0x44;
    fixHeaderChecksum(shortIhl);
    const longer = good();
    longer.writeUInt16BE(longer.length + 10, 2);
    fixHeaderChecksum(longer);
    const truncated = good().subarray(0, 30);
    const runt = Buffer.from('0123456789');
    const malformed = [badChecksum, badVersion, shortIhl, longer, truncated, runt];
    const notLocal = ipv4Packet({ src: '10.42.1.9', dst: '10.42.3.5', proto: 1, payload: icmpEcho(7, 2) });

    const b = await counters(h2);
    for (const p of malformed) await send(H1.underlay, H2.underlay, p);
    await send(H1.underlay, H2.underlay, notLocal);
    await waitFor(
      'malformed and notLocal drops to be counted',
      async () => {
        const c = await counters(h2);
        return c.dropMalformed >= b.dropMalformed + malformed.length && c.dropNotLocal > b.dropNotLocal;
      },
    );
    const a = await counters(h2);
    assert.equal(a.dropMalformed, b.dropMalformed + malformed.length);
    assert.equal(a.dropNotLocal, b.dropNotLocal + 1);
    assert.equal(a.rxPackets, b.rxPackets, 'a bad packet reached the TUN');
    assert.equal(a.dropUnknownSender, b.dropUnknownSender);
  });

  it('answers ICMP net-unreachable (from the TUN address) for a destination in no route', async () => {
    const b = await counters(h1);
    const r = await ping(ns1, '-c', '1', '-W', '3', '10.42.9.1');
    assert.notEqual(r.code, 0);
    assert.match(r.stdout, /From 10\.42\.1\.0 .*Destination Net Unreachable/);
    const a = await counters(h1);
    assert.equal(a.dropNoRoute - b.dropNoRoute, 1);
    assert.equal(a.icmpSent - b.icmpSent, 1);
    assert.equal(a.txPackets, b.txPackets);
  });

  it('sends no ICMP error about a non-first fragment', async () => {
    // 8028 bytes at MTU 1472 leave h1 as 6 fragments: only the first may be answered.
    const b = await counters(h1);
    const r = await ping(ns1, '-c', '1', '-W', '3', '-s', '8000', '-M', 'dont', '10.42.9.1');
    assert.match(r.stdout, /Destination Net Unreachable/);
    const a = await counters(h1);
    assert.equal(a.dropNoRoute - b.dropNoRoute, 6);
    assert.equal(a.icmpSent - b.icmpSent, 1);
  });

  it('sends no ICMP error about an ICMP error', async () => {
    // From a source in no route, h2 tunnels a UDP datagram to a closed port of h1: h1's kernel answers
    // port-unreachable towards 10.42.9.5, which has no route; that error must not be answered in turn.
    const udp = Buffer.alloc(8 + 4);
    udp.writeUInt16BE(40000, 0);
    udp.writeUInt16BE(9, 2);
    udp.writeUInt16BE(udp.length, 4); // checksum 0: none, allowed over IPv4
    const pkt = ipv4Packet({ src: '10.42.9.5', dst: H1.subnet, proto: 17, payload: udp });
    const b = await counters(h1);
    await h2.request('sendUdp', { from: H2.underlay, to: H1.underlay, port: PORT, hex: pkt.toString('hex') });
    await waitFor('h1 to drop its port-unreachable for lack of a route', async () => (await counters(h1)).dropNoRoute > b.dropNoRoute);
    const a = await counters(h1);
    assert.equal(a.rxPackets - b.rxPackets, 1);
    assert.equal(a.dropNoRoute - b.dropNoRoute, 1);
    assert.equal(a.icmpSent, b.icmpSent, 'answered an ICMP error with an ICMP error');
  });

  it('answers ICMP time-exceeded when the TTL would reach 0', async () => {
    const b = await counters(h1);
    const r = await ping(ns1, '-c', '1', '-t', '1', '-W', '3', H2.subnet);
    assert.notEqual(r.code, 0);
    assert.match(r.stdout, /From 10\.42\.1\.0 .*Time to live exceeded/);
    const a = await counters(h1);
    assert.equal(a.dropTtl - b.dropTtl, 1);
    assert.equal(a.icmpSent - b.icmpSent, 1);
    assert.equal(a.txPackets, b.txPackets, 'the expiring packet was sent on');
  });

  it('keeps the path while route tables are replaced under a ping flood', async () => {
    // Every table holds a path to the peer, through different shapes (split /25s, a covering /16).
    const t1 = [
      h1Routes,
      [route('10.42.2.0', 25, H2.underlay), route('10.42.2.128', 25, H2.underlay), route('10.42.3.0', 24, '198.18.0.9')],
      [route('10.42.0.0', 16, '198.18.0.77'), route(H2.subnet, 24, H2.underlay), route('10.42.7.0', 24, '198.18.0.7')],
    ];
    const t2 = [
      h2Routes,
      [route('10.42.1.0', 25, H1.underlay), route('10.42.1.128', 25, H1.underlay), route('10.42.3.0', 24, '198.18.0.9')],
      [route('10.42.0.0', 16, '198.18.0.77'), route(H1.subnet, 24, H1.underlay), route('10.42.7.0', 24, '198.18.0.7')],
    ];
    const b1 = await counters(h1);
    const b2 = await counters(h2);
    let done = false;
    const flood = ping(ns1, '-q', '-i', '0.005', '-c', '600', '-W', '3', H2.subnet).finally(() => (done = true));
    let swaps = 0;
    while (!done) {
      const i = swaps % 3;
      await Promise.all([
        h1.request('setRoutes', { key: 'main', routes: t1[i] }),
        h2.request('setRoutes', { key: 'main', routes: t2[(i + 1) % 3] }),
      ]);
      swaps++;
    }
    const r = await flood;
    await h1.request('setRoutes', { key: 'main', routes: h1Routes });
    await h2.request('setRoutes', { key: 'main', routes: h2Routes });
    const a1 = await counters(h1);
    const a2 = await counters(h2);
    const { sent, got } = received(r);
    assert.ok(swaps >= 20, `only ${swaps} table swaps overlapped the flood`);
    assert.equal(a1.dropNoRoute, b1.dropNoRoute, 'h1 lost its route during a swap');
    assert.equal(a2.dropNoRoute, b2.dropNoRoute, 'h2 lost its route during a swap');
    assert.equal(sent, 600);
    assert.ok(got >= sent * 0.99, `${got}/${sent} replies during ${swaps} swaps`);
  });

  it('reports kernel failures as RudderError E_DATAPLANE with the errno, leaving the running plane alone', async () => {
    const expectErr = async (p: Promise<unknown>, re: RegExp): Promise<void> => {
      await assert.rejects(p, (e: unknown) => {
        assert.ok(e instanceof ChildError);
        assert.equal(e.errorName, 'RudderError');
        assert.equal(e.code, 'E_DATAPLANE');
        assert.match(e.message, re);
        return true;
      });
    };
    await expectErr(h1.request('open', { key: 'dup', opts: optsFor(H1, offloads) }), /bind UDP 198\.18\.0\.1:8285: .*EADDRINUSE/);
    await expectErr(h1.request('open', { key: 'dup', opts: { ...optsFor(H1, offloads), port: 8286 } }), /TUNSETIFF: .*EBUSY/);
    // A failed open leaves no device behind.
    await expectErr(h1.request('open', { key: 'dup', opts: { ...optsFor(H1, offloads), tunName: 'rdpleak0' } }), /EADDRINUSE/);
    assert.notEqual((await run('ip', ['-n', ns1, 'link', 'show', 'rdpleak0'])).code, 0, 'rdpleak0 was left behind');
    await expectErr(
      h1.request('setRoutes', { key: 'main', routes: [...h1Routes, route(H2.subnet, 24, '198.18.0.5')] }),
      /duplicate route for 10\.42\.2\.0\/24/,
    );
    await expectErr(
      h1.request('setRoutes', { key: 'main', routes: [...h1Routes, { ...route('10.42.9.0', 24, '198.18.0.5'), port: 0 }] }),
      new RegExp(`routes\\[${h1Routes.length}\\]\\.port must be an integer 1\\.\\.65535, got 0`),
    );
    const r = await ping(ns1, '-c', '1', '-W', '5', H2.subnet);
    assert.equal(r.code, 0, `the running plane was disturbed: ${r.stdout}`);
  });

  it('takes a free persistent TUN of its name as one queue; a second data plane cannot join a multi-queue one', async () => {
    await must('ip', ['-n', ns1, 'tuntap', 'add', 'dev', 'rdppers0', 'mode', 'tun']);
    try {
      const r = await h1.request<{ ifname: string; offloads: DataPlaneOffloads }>('open', {
        key: 'pers',
        opts: { ...optsFor(H1, offloads), tunName: 'rdppers0', port: 8287, queues: 2 },
      });
      assert.equal(r.ifname, 'rdppers0');
      assert.equal(r.offloads.queues, 1, JSON.stringify(r.offloads));
      assert.match(r.offloads.note, /IFF_MULTI_QUEUE\|IFF_TUN_EXCL \(the device exists\)/);
      await h1.request('stop', { key: 'pers' });
    } finally {
      await run('ip', ['-n', ns1, 'link', 'del', 'rdppers0']);
    }
    // The running multi-queue (or single-queue) rudder0 takes no queue from another opener.
    await assert.rejects(
      h1.request('open', { key: 'join', opts: { ...optsFor(H1, offloads), port: 8288, queues: 2 } }),
      (e: unknown) => e instanceof ChildError && e.code === 'E_DATAPLANE' && /TUNSETIFF: .*EBUSY/.test(e.message),
    );
  });

  it('stops, then opens again with the same TUN name in the same process', async () => {
    const final = await h2.request<NativeDataPlaneCounters>('stop', { key: 'main' });
    assert.ok(final.rxPackets > 0);
    assert.notEqual((await run('ip', ['-n', ns2, 'link', 'show', 'rudder0'])).code, 0, 'rudder0 survived stop');
    const down = await ping(ns1, '-c', '1', '-W', '1', H2.subnet);
    assert.notEqual(down.code, 0, 'ping answered with the peer stopped');

    await startHost(h2, ns2, H2, h2Routes);
    const fresh = await counters(h2);
    assert.equal(fresh.rxPackets, 0);
    assert.equal(fresh.dropUnknownSender, 0);
    const r = await ping(ns1, '-c', '2', '-i', '0.2', '-W', '5', H2.subnet);
    assert.equal(r.code, 0, r.stdout + r.stderr);
    assert.deepEqual(received(r), { sent: 2, got: 2 });
    const a = await counters(h2);
    assert.ok(a.rxPackets >= 2 && a.txPackets >= 2, JSON.stringify(a));
  });

  it('sdNotify sends one datagram to a unix datagram socket, abstract (@name) or by path', async () => {
    const receive = async (addr: string, target: string, ready: () => Promise<boolean>): Promise<void> => {
      const socat = spawn('ip', ['netns', 'exec', ns1, 'socat', '-u', addr, 'STDOUT'], { stdio: ['ignore', 'pipe', 'pipe'] });
      sb.track(socat);
      let out = '';
      socat.stdout.on('data', (d: Buffer) => (out += d.toString()));
      try {
        let sent = false;
        await waitFor(`socat ${addr} to receive`, async () => {
          if (!sent && (await ready())) {
            try {
              await h1.request('notify', { path: target, message: 'READY=1\nSTATUS=test' });
              sent = true;
            } catch (e) {
              if (!(e instanceof ChildError && /ECONNREFUSED|ENOENT/.test(e.message))) throw e;
            }
          }
          return out.includes('READY=1\nSTATUS=test');
        });
      } finally {
        stopChild(socat);
      }
    };
    const name = `rdp-${sb.tag}-notify`;
    await receive(`ABSTRACT-RECV:${name}`, `@${name}`, async () => true);
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'rdp-notify-'));
    try {
      const sock = path.join(dir, 'notify.sock');
      await receive(`UNIX-RECV:${sock}`, sock, async () => fs.existsSync(sock));
      await assert.rejects(h1.request('notify', { path: path.join(dir, 'absent.sock'), message: 'READY=1' }), (e: unknown) => {
        assert.ok(e instanceof ChildError);
        assert.equal(e.code, 'E_NOTIFY');
        assert.match(e.message, /ENOENT/);
        return true;
      });
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});

}

function collect(p: ChildProcess): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    let stdout = '';
    let stderr = '';
    p.stdout?.on('data', (d: Buffer) => (stdout += d.toString()));
    p.stderr?.on('data', (d: Buffer) => (stderr += d.toString()));
    p.once('error', reject);
    p.once('close', (code) => resolve({ code: code ?? -1, stdout, stderr }));
  });
}

function stopChild(p: ChildProcess): void {
  if (p.pid !== undefined && p.exitCode === null && p.signalCode === null) {
    try {
      process.kill(p.pid, 'SIGTERM');
    } catch {
      // already gone
    }
  }
}

describe('native data plane API without a kernel', () => {
  const opts: DataPlaneOptions = {
    tunName: 'rudder0',
    bindAddress: 0,
    port: PORT,
    localSubnet: { ip: ip4('10.42.1.0'), prefix: 24 },
    icmpSource: ip4('10.42.1.0'),
    mtu: 1472,
  };

  it('rejects invalid options as E_DATAPLANE before touching the kernel', () => {
    for (const bad of [
      { ...opts, tunName: '' },
      { ...opts, tunName: 'a-name-far-too-long' },
      { ...opts, port: 0 },
      { ...opts, port: 70000 },
      { ...opts, mtu: 20 },
      { ...opts, localSubnet: { ip: 1, prefix: 33 } },
      { ...opts, bindAddress: -1 },
      { ...opts, queues: 17 },
      { ...opts, queues: 1.5 },
    ]) {
      assert.throws(
        () => openDataPlane(bad),
        (e: unknown) => isRudderError(e, 'E_DATAPLANE'),
        JSON.stringify(bad),
      );
    }
  });

  it('tells to run ./build when the addon is missing', async () => {
    // A copy of the compiled module where no addon was built next to it.
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'rdp-noaddon-'));
    try {
      const dist = path.resolve(__dirname, '..', '..');
      fs.mkdirSync(path.join(dir, 'dist', 'src', 'dataplane'), { recursive: true });
      fs.copyFileSync(path.join(dist, 'src', 'errors.js'), path.join(dir, 'dist', 'src', 'errors.js'));
      for (const f of ['native.js', 'addon.js', 'limits.js']) fs.copyFileSync(path.join(dist, 'src', 'dataplane', f), path.join(dir, 'dist', 'src', 'dataplane', f));
      const script = `
        const n = require(${JSON.stringify(path.join(dir, 'dist', 'src', 'dataplane', 'native.js'))});
        try { n.openDataPlane(${JSON.stringify(opts)}); console.log('no error'); }
        catch (e) { console.log(JSON.stringify({ name: e.name, code: e.code, message: e.message })); }`;
      const r = await run(process.execPath, ['-e', script]);
      const e = JSON.parse(r.stdout) as { name: string; code: string; message: string };
      assert.equal(e.name, 'RudderError');
      assert.equal(e.code, 'E_DATAPLANE');
      assert.match(e.message, /native addon not found at .*rudder_native\.node: run \.\/build/);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});
