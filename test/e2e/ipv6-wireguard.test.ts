/**
 * The wireguard backend carrying IPv6: a dual-stack network over the IPv4
 * underlay, real daemons and the native data plane in WireGuard mode, pods
 * with both families. Each peer's IPv6 subnet is an allowed IP of its
 * session: what arrives sealed from a peer must come from its subnets.
 * One shared cluster; waits are convergence waits, never speed checks.
 */
import assert from 'node:assert/strict';
import * as path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { createCluster, run, type Cluster, type Host, type PingResult, type Pod, type SubnetEnv } from '../../src/topology';
import { skipUnlessEtcd, skipUnlessRoot } from '../helpers/env';
import { fetchIn } from '../helpers/fetch-in-ns';
import { parseMetrics } from '../helpers/prometheus';
import { pod6, podOf, sha256, tcp6 } from '../helpers/pods6';
import { tempDir } from '../helpers/tmp';
import { waitUntil } from '../helpers/wait';

const CONFIG = { Network: '10.7.0.0/16', EnableIPv6: true, IPv6Network: 'fd42:7::/48', Backend: { Type: 'wireguard' } };
const GIVE_UP_MS = 90_000;
const METRICS_PORT = 9108;

/** A data plane counter of host h, from its /metrics. */
async function metric(h: Host, series: string): Promise<number> {
  const res = await fetchIn(h.ns, `http://${h.underlayIp}:${METRICS_PORT}/metrics`);
  return parseMetrics(res.body ?? '').get(series) ?? 0;
}

async function waitPingOk(from: Pod, fromName: string, to: string): Promise<PingResult> {
  return waitUntil(
    async () => {
      const r = await from.ping(to, { count: 2, intervalS: 0.2, replyWaitS: 1 });
      if (r.transmitted > 0 && r.received === r.transmitted) return r;
      throw new Error(`${fromName} → ${to}: ${r.output.trim()}`);
    },
    { giveUpMs: GIVE_UP_MS, intervalMs: 200, what: `ping ${fromName} → ${to} to work` },
  );
}

describe('wireguard backend carries IPv6 (dual-stack network, IPv4 underlay)', { skip: skipUnlessRoot || skipUnlessEtcd }, () => {
  let c: Cluster;

  before(async () => {
    c = await createCluster({ hosts: 2, ipv6: true, giveUpMs: GIVE_UP_MS });
    for (const x of c.hosts) x.rudderArgs.push(`-wireguard-key-file=${path.join(x.dir, 'wireguard.key')}`, `-metrics-addr=${x.underlayIp}:${METRICS_PORT}`);
    await c.putConfig(CONFIG);
    await Promise.all(c.hosts.map((h) => h.up()));
  });

  after(async () => {
    await c?.teardown();
  });

  it('both pods reach each other over IPv6 and IPv4; the IPv6Network is routed to rudder-wg', async () => {
    const [a, b] = c.hosts as [Host, Host];
    for (const h of [a, b]) {
      const env = h.readSubnetFile() as SubnetEnv;
      assert.ok(env.ipv6Subnet?.startsWith('fd42:7:'), `RUDDER_IPV6_SUBNET of ${h.name}: ${env.ipv6Subnet}`);
      const routes = (await h.exec(['ip', '-6', 'route', 'show', 'fd42:7::/48'])).stdout;
      assert.match(routes, /dev rudder-wg/, routes);
    }
    for (const [x, y] of [
      [a, b],
      [b, a],
    ] as const) {
      await waitPingOk(podOf(x), `pod of ${x.name}`, pod6(y));
      await waitPingOk(podOf(x), `pod of ${x.name}`, podOf(y).ip);
      // wg show (the status socket) lists the peer's IPv6 subnet beside its IPv4 one.
      const shown = await x.exec(['unshare', '--mount', '--propagation', 'private', 'sh', '-c', 'mount --bind "$0" /run && exec "$@"', path.dirname(x.uapiDir), 'wg', 'show', 'rudder-wg', 'allowed-ips'], { allowFailure: true });
      const want6 = (y.readSubnetFile() as SubnetEnv).ipv6Subnet?.replace(/::1\/64$/, '::/64') ?? '?';
      assert.ok(shown.stdout.includes(want6) && shown.stdout.includes(podOf(y).ip.replace(/\.2$/, '.0/24')), `wg show on ${x.name}: ${shown.stdout}${shown.stderr}`);
    }
  });

  it('a 20 MB TCP transfer over IPv6 through the WireGuard tunnel arrives intact', async (t) => {
    const [a, b] = c.hosts as [Host, Host];
    await waitPingOk(podOf(a), `pod of ${a.name}`, pod6(b));
    const dir = tempDir(t, 'rudder-wg6-tcp-');
    const src = path.join(dir, 'in');
    await run(['sh', '-c', `head -c 20M /dev/urandom > '${src}'`]);
    const dst = await tcp6(a, b, src, dir, 5003);
    assert.equal(await sha256(dst), await sha256(src), 'sha256 of what arrived equals what was sent');
  });

  it('a packet from a peer whose source is outside its allowed IPs is dropped (a spoofed IPv6 source from a pod)', async () => {
    const [a, b] = c.hosts as [Host, Host];
    await waitPingOk(podOf(a), `pod of ${a.name}`, pod6(b));
    // Pod a sends from an address of b's own subnet: a's data plane seals it (the route is by destination),
    // b's must refuse it (its source is not a's allowed IP). nodad: usable at once.
    const spoof = pod6(b).replace(/::2$/, '::99');
    const series = 'rudder_dataplane_drops_total{reason="wg_allowed_ips"}';
    const before = await metric(b, series);
    await podOf(a).exec(['ip', '-6', 'addr', 'add', `${spoof}/128`, 'dev', 'eth0', 'nodad']);
    try {
      const r = await podOf(a).exec(['ping', '-n', '-c', '2', '-i', '0.2', '-W', '1', '-I', spoof, pod6(b)], { allowFailure: true });
      assert.match(r.stdout, / 0 received/, r.stdout);
      // Counted where it was refused: by b's data plane, as a source outside a's allowed IPs.
      assert.ok((await metric(b, series)) >= before + 2, `${series} on ${b.name} grew by 2`);
      // From its own address it still works (-I: with the spoofed address on eth0, source selection would pick it).
      const ok = await podOf(a).exec(['ping', '-n', '-c', '1', '-W', '2', '-I', pod6(a), pod6(b)], { allowFailure: true });
      assert.match(ok.stdout, / 1 received/, ok.stdout);
    } finally {
      await podOf(a).exec(['ip', '-6', 'addr', 'del', `${spoof}/128`, 'dev', 'eth0'], { allowFailure: true });
    }
    await waitPingOk(podOf(a), `pod of ${a.name}`, pod6(b));
  });
});
