/**
 * The udp backend carrying IPv6, end to end: a dual-stack network
 * (EnableIPv6) over the IPv4 underlay, real etcd and `bin/rudder` daemons in
 * host namespaces, the native data plane moving IPv6 packets between TUN
 * and UDP, and dual-stack pods behind each host's bridge.
 *
 * One cluster is shared (building it is the slow part). Every test first
 * waits for the paths it relies on ("precondition", a convergence wait with
 * a generous give-up) and puts back what it changed in `finally`. Waits are
 * never assertions about speed.
 *
 * What the data plane itself answers is told apart from what the kernels on
 * the way answer by the source: the data plane's ICMPv6 errors come from
 * the TUN's address, the lease's IPv6 network address (fd42:6:0:N::).
 */
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { formatIp6, parseCidr6 } from '../../src/ip/ipv6';
import { createCluster, parsePing, run, type Cluster, type Host, type PingResult, type Pod, type SubnetEnv } from '../../src/topology';
import { skipUnlessEtcd, skipUnlessRoot } from '../helpers/env';
import { fetchIn } from '../helpers/fetch-in-ns';
import { parseMetrics } from '../helpers/prometheus';
import { pod6, podOf, sha256, tcp6 } from '../helpers/pods6';
import { tempDir } from '../helpers/tmp';
import { waitUntil } from '../helpers/wait';

const CONFIG = { Network: '10.6.0.0/16', SubnetMin: '10.6.1.0', EnableIPv6: true, IPv6Network: 'fd42:6::/48', Backend: { Type: 'udp' } };
/** Generous: only keeps a broken run from hanging (2 shared cores). */
const GIVE_UP_MS = 90_000;
/** RUDDER_MTU on a 1500-byte underlay: 1500 − 28. */
const TUNNEL_MTU = 1472;
const METRICS_PORT = 9108;

/** The data plane's counters of host h (rudder_dataplane_other_total by name), from its /metrics. */
async function counters(h: Host): Promise<Map<string, number>> {
  const res = await fetchIn(h.ns, `http://${h.underlayIp}:${METRICS_PORT}/metrics`);
  return parseMetrics(res.body ?? '');
}
const other = (m: Map<string, number>, name: string): number => m.get(`rudder_dataplane_other_total{name="${name}"}`) ?? 0;

/** The lease's IPv6 network address (fd42:6:0:5::1/64 → fd42:6:0:5::): rudder0's address, the source of the data plane's ICMPv6 errors. */
function tunAddress6(h: Host): string {
  const env = h.readSubnetFile() as SubnetEnv;
  const c = parseCidr6(env.ipv6Subnet ?? '');
  assert.ok(c, `RUDDER_IPV6_SUBNET=${env.ipv6Subnet}`);
  return formatIp6(c.ip); // parsed as the subnet (host bits cleared)
}

function describePing(from: string, r: PingResult): string {
  return `${from} → ${r.target}: ${r.received}/${r.transmitted} received; ${r.output.trim()}`;
}

async function waitPingOk(from: Pod, fromName: string, to: string, size?: number): Promise<PingResult> {
  return waitUntil(
    async () => {
      const r = await from.ping(to, { count: 2, intervalS: 0.2, replyWaitS: 1, ...(size === undefined ? {} : { size }) });
      if (r.transmitted > 0 && r.received === r.transmitted) return r;
      throw new Error(describePing(fromName, r));
    },
    { giveUpMs: GIVE_UP_MS, intervalMs: 200, what: `ping ${fromName} → ${to} to work` },
  );
}

/** Every ordered pair of pods pings the other over IPv6 and over IPv4. */
async function waitMesh(hosts: readonly Host[]): Promise<number> {
  const jobs: Array<Promise<PingResult>> = [];
  for (const a of hosts) {
    for (const b of hosts) {
      if (a === b) continue;
      jobs.push(waitPingOk(podOf(a), `pod of ${a.name}`, pod6(b)));
      jobs.push(waitPingOk(podOf(a), `pod of ${a.name}`, podOf(b).ip));
    }
  }
  return (await Promise.all(jobs)).length;
}

/** A ping with the exact argv given (-M do, -t: hop limit). */
async function pingArgs(p: Pod, args: readonly string[], target: string): Promise<PingResult> {
  const r = await p.exec(['ping', '-n', ...args, target], { allowFailure: true });
  return parsePing(target, r.stdout + r.stderr, r.code);
}

describe('udp backend carries IPv6 (dual-stack network, IPv4 underlay)', { skip: skipUnlessRoot || skipUnlessEtcd }, () => {
  let c: Cluster;
  const members: Host[] = [];

  before(async () => {
    c = await createCluster({ hosts: 3, ipv6: true, giveUpMs: GIVE_UP_MS });
    for (const x of c.hosts) x.rudderArgs.push(`-metrics-addr=${x.underlayIp}:${METRICS_PORT}`);
    await c.putConfig(CONFIG);
    await Promise.all(c.hosts.map((h) => h.up()));
    members.push(...c.hosts);
  });

  after(async () => {
    await c?.teardown();
  });

  it('3 dual-stack hosts: both subnets in each lease; every pod pings every other over IPv6 and IPv4', async () => {
    const subnets = await c.listSubnets();
    for (const h of members) {
      const env = h.readSubnetFile() as SubnetEnv;
      assert.ok(env.ipv6Subnet?.startsWith('fd42:6:'), `RUDDER_IPV6_SUBNET of ${h.name}: ${env.ipv6Subnet}`);
      assert.equal(env.ipv6Network, 'fd42:6::/48');
      assert.equal(env.mtu, TUNNEL_MTU);
      const s = subnets.find((x) => x.value.PublicIP === h.underlayIp);
      assert.ok(s, `lease of ${h.name}: ${JSON.stringify(subnets)}`);
      assert.match(s.subnet, /&fd42:6:/, `a dual-stack lease key: ${s.subnet}`);
      // rudder0 carries the lease's IPv6 network address; the IPv6Network is routed to it.
      const addrs = (await h.exec(['ip', '-6', '-o', 'addr', 'show', 'dev', 'rudder0', 'scope', 'global'])).stdout;
      assert.match(addrs, new RegExp(`inet6 ${tunAddress6(h)}/128`), addrs);
      const routes = (await h.exec(['ip', '-6', 'route', 'show', 'fd42:6::/48'])).stdout;
      assert.match(routes, /dev rudder0/, routes);
      assert.match(routes, /unreachable fd42:6::\/48/, `the fail-closed twin: ${routes}`);
    }
    assert.equal(await waitMesh(members), 12);
  });

  it('a 50 MB TCP transfer over IPv6 between pods on two hosts arrives intact', async (t) => {
    const [a, b] = [members[0] as Host, members[1] as Host];
    await waitMesh([a, b]);
    const dir = tempDir(t, 'rudder-udp6-tcp-');
    const src = path.join(dir, 'in');
    await run(['sh', '-c', `head -c 50M /dev/urandom > '${src}'`]);
    const [ca, cb] = [await counters(a), await counters(b)];
    const dst = await tcp6(a, b, src, dir, 5001);
    assert.equal(fs.statSync(dst).size, 50 * 1024 * 1024, 'received size');
    assert.equal(await sha256(dst), await sha256(src), 'sha256 of what arrived equals what was sent');
    // Carried as IPv6 by both data planes; with offloads the sender cut TSO6 super-packets and the receiver coalesced (GSO_TCPV6).
    const [ca2, cb2] = [await counters(a), await counters(b)];
    const sent = other(ca2, 'tx_ipv6_packets') - other(ca, 'tx_ipv6_packets');
    const got = other(cb2, 'rx_ipv6_packets') - other(cb, 'rx_ipv6_packets');
    t.diagnostic(`IPv6 packets: ${sent} sent by ${a.name}, ${got} taken by ${b.name}; super-packets: ${other(ca2, 'tx_gso_packets') - other(ca, 'tx_gso_packets')} cut, ${other(cb2, 'rx_gro_packets') - other(cb, 'rx_gro_packets')} coalesced`);
    assert.ok(sent > 30_000 && got > 30_000, `IPv6 counters: ${sent} sent, ${got} received`);
  });

  it('a 1,400-byte ping6 crosses the tunnel both ways', async () => {
    const [a, b] = [members[1] as Host, members[2] as Host];
    await waitMesh([a, b]);
    const r = await waitPingOk(podOf(a), `pod of ${a.name}`, pod6(b), 1400);
    assert.ok(r.replies.length > 0);
    await waitPingOk(podOf(b), `pod of ${b.name}`, pod6(a), 1400);
  });

  it('hop limit: a packet that reaches the data plane with hop limit 1 is answered time-exceeded by the data plane', async () => {
    const [a, b] = [members[0] as Host, members[2] as Host];
    await waitMesh([a, b]);
    // Hop limit 2: the host's kernel forwards it to rudder0 with 1 left, which the data plane may not send on.
    const r = await waitUntil(
      async () => {
        const p = await pingArgs(podOf(a), ['-c', '1', '-W', '1', '-t', '2'], pod6(b));
        if (p.errors.some((e) => /Time exceeded/i.test(e))) return p;
        throw new Error(describePing(`pod of ${a.name}`, p));
      },
      { giveUpMs: GIVE_UP_MS, intervalMs: 300, what: `time exceeded for a hop limit of 2 from ${a.name}` },
    );
    assert.equal(r.received, 0);
    assert.ok(r.errors.some((e) => e.startsWith(`From ${tunAddress6(a)} `)), `from the data plane's address ${tunAddress6(a)}: ${r.output}`);
    // Hop limit 4 is enough: host a's kernel, its data plane, host b's kernel each take one, the pod needs one left.
    const ok = await pingArgs(podOf(a), ['-c', '1', '-W', '2', '-t', '4'], pod6(b));
    assert.equal(ok.received, 1, ok.output);
  });

  it('path MTU: a packet above the tunnel MTU gets packet-too-big from the data plane, the sender learns the MTU, TCP still works', async (t) => {
    const [a, b] = [members[1] as Host, members[0] as Host];
    await waitMesh([a, b]);
    const big = 1500;
    // Let 1500-byte packets reach the data plane: pod, bridge and rudder0 of host a at 1500 (the data plane keeps its tunnel MTU).
    const setMtu = async (mtu: number): Promise<void> => {
      await podOf(a).exec(['ip', 'link', 'set', 'dev', 'eth0', 'mtu', String(mtu)]);
      for (const dev of ['veth-pod', 'rbr0', 'rudder0']) await a.exec(['ip', 'link', 'set', 'dev', dev, 'mtu', String(mtu)]);
    };
    try {
      await setMtu(big);
      const r = await waitUntil(
        async () => {
          const p = await pingArgs(podOf(a), ['-c', '1', '-W', '1', '-M', 'do', '-s', String(big - 48)], pod6(b));
          if (p.errors.some((e) => /Packet too big/i.test(e))) return p;
          throw new Error(describePing(`pod of ${a.name}`, p));
        },
        { giveUpMs: GIVE_UP_MS, intervalMs: 300, what: `packet-too-big for a ${big}-byte ping6 from ${a.name}` },
      );
      t.diagnostic(r.errors[0] ?? '');
      assert.ok(r.errors.some((e) => e.startsWith(`From ${tunAddress6(a)} `) && e.includes(`mtu=${TUNNEL_MTU}`)), `from the data plane, with its MTU: ${r.output}`);
      // The sender keeps the path MTU it learnt.
      const get = (await podOf(a).exec(['ip', '-6', 'route', 'get', pod6(b)])).stdout;
      assert.match(get, new RegExp(`mtu ${TUNNEL_MTU}\\b`), get);
      const again = await pingArgs(podOf(a), ['-c', '1', '-W', '1', '-M', 'do', '-s', String(big - 48)], pod6(b));
      assert.equal(again.received, 0);
      assert.match(again.output, /too long|mtu[=:] ?1472/i, again.output);
      // Packets that fit still pass, and TCP goes on (segments sized for the path).
      await waitPingOk(podOf(a), `pod of ${a.name}`, pod6(b), TUNNEL_MTU - 48);
      const dir = tempDir(t, 'rudder-udp6-pmtu-');
      const src = path.join(dir, 'in');
      await run(['sh', '-c', `head -c 5M /dev/urandom > '${src}'`]);
      const dst = await tcp6(a, b, src, dir, 5002);
      assert.equal(await sha256(dst), await sha256(src), 'TCP over the learnt path MTU');
    } finally {
      await setMtu(TUNNEL_MTU);
      await podOf(a).exec(['ip', '-6', 'route', 'flush', 'cache'], { allowFailure: true });
    }
    await waitMesh([a, b]);
  });
});
