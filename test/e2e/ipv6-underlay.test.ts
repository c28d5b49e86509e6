/**
 * The udp and wireguard backends over an IPv6-only underlay, end to end:
 * hosts whose eth0 has only 2001:2::N (etcd at [2001:2::250]), so each
 * daemon's data plane opens IPv6 sockets and reaches its peers at their
 * PublicIPv6. A dual-stack network (both pod families ride on the IPv6
 * underlay), then an IPv6-only one. Real etcd and `bin/rudder` daemons in
 * host namespaces.
 *
 * One cluster per backend (building it is the slow part). Every test first
 * waits for the paths it relies on (a convergence wait with a generous
 * give-up); waits are never assertions about speed.
 */
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { createCluster, run, type Cluster, type Host, type PingResult, type Pod, type SubnetEnv } from '../../src/topology';
import { skipUnlessEtcd, skipUnlessRoot } from '../helpers/env';
import { fetchIn } from '../helpers/fetch-in-ns';
import { parseMetrics } from '../helpers/prometheus';
import { pod6, podOf, sha256, tcp6 } from '../helpers/pods6';
import { tempDir } from '../helpers/tmp';
import { waitUntil } from '../helpers/wait';

/** Generous: only keeps a broken run from hanging (2 shared cores). */
const GIVE_UP_MS = 90_000;
const METRICS = 'http://127.0.0.1:9108/metrics';
const PY = '/usr/bin/python3';

async function metrics(h: Host): Promise<Map<string, number>> {
  const res = await fetchIn(h.ns, METRICS);
  return parseMetrics(res.body ?? '');
}
const unknownSender = (m: Map<string, number>): number => m.get('rudder_dataplane_drops_total{reason="unknown_sender"}') ?? 0;

async function waitPingOk(from: Pod, fromName: string, to: string, size?: number): Promise<PingResult> {
  return waitUntil(
    async () => {
      const r = await from.ping(to, { count: 2, intervalS: 0.2, replyWaitS: 1, ...(size === undefined ? {} : { size }) });
      if (r.transmitted > 0 && r.received === r.transmitted) return r;
      throw new Error(`${fromName} → ${to}: ${r.received}/${r.transmitted} received; ${r.output.trim()}`);
    },
    { giveUpMs: GIVE_UP_MS, intervalMs: 200, what: `ping ${fromName} → ${to} to work` },
  );
}

/** Every ordered pair of pods pings the other over IPv6 and (unless `v4` is false) over IPv4. */
async function waitMesh(hosts: readonly Host[], v4 = true): Promise<number> {
  const jobs: Array<Promise<PingResult>> = [];
  for (const a of hosts) {
    for (const b of hosts) {
      if (a === b) continue;
      jobs.push(waitPingOk(podOf(a), `pod of ${a.name}`, pod6(b)));
      if (v4) jobs.push(waitPingOk(podOf(a), `pod of ${a.name}`, podOf(b).ip));
    }
  }
  return (await Promise.all(jobs)).length;
}

/** n UDP datagrams from [src] to [dst]:port (python: socat cannot pick the source address of a datagram reliably). */
const SEND6 = `import socket,sys
s=socket.socket(socket.AF_INET6,socket.SOCK_DGRAM); s.bind((sys.argv[1],0))
for _ in range(int(sys.argv[4])): s.sendto(b'\\x45'+b'\\0'*59,(sys.argv[2],int(sys.argv[3])))`;

interface Case {
  readonly type: 'udp' | 'wireguard';
  readonly config: object;
  readonly port: number;
  readonly dev: string;
  /** RUDDER_MTU on a 1500-byte IPv6 underlay. */
  readonly mtu: number;
}

const CASES: readonly Case[] = [
  { type: 'udp', config: { Network: '10.16.0.0/16', EnableIPv6: true, IPv6Network: 'fd42:16::/48', Backend: { Type: 'udp' } }, port: 8285, dev: 'rudder0', mtu: 1500 - 48 },
  { type: 'wireguard', config: { Network: '10.17.0.0/16', EnableIPv6: true, IPv6Network: 'fd42:17::/48', Backend: { Type: 'wireguard' } }, port: 51820, dev: 'rudder-wg', mtu: 1500 - 80 },
];

for (const k of CASES) {
  describe(`${k.type} backend over an IPv6-only underlay (dual-stack network)`, { skip: skipUnlessRoot || skipUnlessEtcd }, () => {
    let c: Cluster;
    let hosts: Host[] = [];

    before(async () => {
      c = await createCluster({ hosts: 3, ipv6: true, ipv6OnlyHosts: true, giveUpMs: GIVE_UP_MS });
      for (const x of c.hosts) {
        x.rudderArgs.push('-metrics-addr=127.0.0.1:9108');
        if (k.type === 'wireguard') x.rudderArgs.push(`-wireguard-key-file=${path.join(x.dir, 'wireguard.key')}`);
      }
      await c.putConfig(k.config);
      await Promise.all(c.hosts.map((h) => h.up()));
      hosts = [...c.hosts];
    });

    after(async () => {
      await c?.teardown();
    });

    it(`leases name only a PublicIPv6; RUDDER_MTU is ${k.mtu}; every pod pings every other over IPv6 and IPv4`, async () => {
      const subnets = await c.listSubnets();
      for (const h of hosts) {
        const env = h.readSubnetFile() as SubnetEnv;
        assert.equal(env.mtu, k.mtu, `RUDDER_MTU of ${h.name}`);
        const s = subnets.find((x) => x.value.PublicIPv6 === h.underlayIpv6);
        assert.ok(s, `lease of ${h.name} with PublicIPv6 ${h.underlayIpv6}: ${JSON.stringify(subnets)}`);
        assert.ok(s.value.PublicIP === undefined || s.value.PublicIP === '0.0.0.0', `no IPv4 PublicIP: ${JSON.stringify(s.value)}`);
        // The data plane's socket is IPv6, on [::]:port.
        const ss = (await h.exec(['ss', '-u', '-a', '-n', '-H'])).stdout;
        assert.match(ss, new RegExp(`\\[::\\]:${k.port}\\b|\\*:${k.port}\\b`), `an IPv6 socket on port ${k.port}: ${ss}`);
        assert.doesNotMatch(ss, new RegExp(`0\\.0\\.0\\.0:${k.port}\\b`), ss);
      }
      assert.equal(await waitMesh(hosts), 12);
    });

    it('a 50 MB TCP transfer over IPv6 between pods on two hosts arrives intact', async (t) => {
      const [a, b] = [hosts[0] as Host, hosts[1] as Host];
      await waitMesh([a, b]);
      const dir = tempDir(t, `rudder-${k.type}-u6-tcp-`);
      const src = path.join(dir, 'in');
      await run(['sh', '-c', `head -c 50M /dev/urandom > '${src}'`]);
      const dst = await tcp6(a, b, src, dir, 5001);
      assert.equal(fs.statSync(dst).size, 50 * 1024 * 1024, 'received size');
      assert.equal(await sha256(dst), await sha256(src), 'sha256 of what arrived equals what was sent');
    });

    it('a 1,400-byte ping crosses the tunnel both ways, over IPv6 and IPv4', async () => {
      const [a, b] = [hosts[1] as Host, hosts[2] as Host];
      await waitPingOk(podOf(a), `pod of ${a.name}`, pod6(b), 1400);
      await waitPingOk(podOf(b), `pod of ${b.name}`, pod6(a), 1400);
      await waitPingOk(podOf(a), `pod of ${a.name}`, podOf(b).ip, 1400);
    });

    it('datagrams from an IPv6 source that is no lease\'s PublicIPv6 are dropped and counted', async () => {
      const [a, b] = [hosts[0] as Host, hosts[2] as Host];
      await waitMesh([a, b]);
      const stranger = '2001:2::99';
      await a.exec(['ip', '-6', 'addr', 'add', `${stranger}/64`, 'dev', 'eth0', 'nodad']);
      try {
        const before = unknownSender(await metrics(b));
        const n = 20;
        await a.exec([PY, '-c', SEND6, stranger, b.underlayIpv6, String(k.port), String(n)]);
        const got = await waitUntil(
          async () => {
            const v = unknownSender(await metrics(b)) - before;
            return v >= n ? v : undefined;
          },
          { giveUpMs: GIVE_UP_MS, what: `${n} unknown_sender drops on ${b.name}` },
        );
        assert.equal(got, n);
      } finally {
        await a.exec(['ip', '-6', 'addr', 'del', `${stranger}/64`, 'dev', 'eth0'], { allowFailure: true });
      }
      await waitPingOk(podOf(a), `pod of ${a.name}`, pod6(b));
    });
  });
}

const V6ONLY: readonly Case[] = [
  { type: 'udp', config: { EnableIPv4: false, EnableIPv6: true, IPv6Network: 'fd42:18::/48', Backend: { Type: 'udp' } }, port: 8285, dev: 'rudder0', mtu: 1500 - 48 },
  { type: 'wireguard', config: { EnableIPv4: false, EnableIPv6: true, IPv6Network: 'fd42:19::/48', Backend: { Type: 'wireguard' } }, port: 51820, dev: 'rudder-wg', mtu: 1500 - 80 },
];

for (const k of V6ONLY) {
  describe(`${k.type} backend over an IPv6-only underlay (IPv6-only network)`, { skip: skipUnlessRoot || skipUnlessEtcd }, () => {
    let c: Cluster;
    let hosts: Host[] = [];

    before(async () => {
      c = await createCluster({ hosts: 3, ipv6: true, ipv6OnlyHosts: true, giveUpMs: GIVE_UP_MS });
      if (k.type === 'wireguard') for (const x of c.hosts) x.rudderArgs.push(`-wireguard-key-file=${path.join(x.dir, 'wireguard.key')}`);
      await c.putConfig(k.config);
      await Promise.all(c.hosts.map((h) => h.up()));
      hosts = [...c.hosts];
    });

    after(async () => {
      await c?.teardown();
    });

    it(`RUDDER_MTU is ${k.mtu}; every pod pings every other over IPv6, 1,400 bytes too`, async () => {
      for (const h of hosts) assert.equal((h.readSubnetFile() as SubnetEnv).mtu, k.mtu, `RUDDER_MTU of ${h.name}`);
      assert.equal(await waitMesh(hosts, false), 6);
      const [a, b] = [hosts[0] as Host, hosts[2] as Host];
      await waitPingOk(podOf(a), `pod of ${a.name}`, pod6(b), 1400);
    });
  });
}
