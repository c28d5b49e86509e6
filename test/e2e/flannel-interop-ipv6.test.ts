/**
 * Rudder beside the real flanneld (upstream v0.20.2, from the project's
 * anchors) in a dual-stack vxlan network: one cluster with an IPv6 underlay
 * (2001:2::N beside 198.18.0.N) and real etcd, h1 and h3 running rudder and
 * h2 flanneld, each host with a bridge and a pod built from its own daemon's
 * subnet file. Every pod reaches every other over IPv4 and over IPv6 (the
 * IPv6 overlay: flannel's `flannel-v6.1` and Rudder's `rudder-v6.1`, both
 * IPv6 VTEPs, each side reading the other's BackendV6Data). Then the flannel
 * host is switched to Rudder in place: it keeps its lease, and Rudder takes
 * over both of flanneld's devices. Its own cluster (the other interop cases
 * run on an IPv4-only underlay).
 *
 * flanneld's quirks (see the anchors' README): hosts start one after another
 * with a pause after the flannel host; its exit status is never looked at.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { createCluster, sleep, type Cluster, type Host, type Pod } from '../../src/topology';
import { skipUnlessEtcd, skipUnlessRoot } from '../helpers/env';
import { Flanneld, flanneldBinary, skipUnlessFlanneld } from '../helpers/flanneld';
import { link } from '../helpers/kernel-backends-net';
import { waitUntil } from '../helpers/wait';

const FLANNEL_SETTLE_MS = 2000;
const CONFIG = { Network: '10.62.0.0/16', EnableIPv6: true, IPv6Network: 'fd62:62::/48', IPv6SubnetLen: 64, Backend: { Type: 'vxlan' } };

interface Member {
  host: Host;
  flanneld: Flanneld | null;
}

const label = (m: Member): string => `${m.host.name} (${m.flanneld?.running ? 'flanneld' : 'rudder'})`;
const logsOf = (m: Member): string => [m.flanneld?.logFile, m.host.rudder ? m.host.logFile : undefined].filter((x) => x !== undefined).join(', ');

function podAddr(p: Pod, family: 4 | 6): string {
  const a = family === 6 ? p.ipv6 : p.ipv4;
  if (a === null) throw new Error(`pod ${p.ip} has no IPv${family} address`);
  return a;
}

describe('flannel interop: dual-stack vxlan', { skip: skipUnlessRoot || skipUnlessEtcd || skipUnlessFlanneld }, () => {
  let c: Cluster;
  let bin: string;
  const members: Member[] = [];

  async function reaches(a: Member, b: Member, family: 4 | 6): Promise<void> {
    const src = a.host.pod;
    const dst = b.host.pod;
    if (!src || !dst) throw new Error(`${label(a)} → ${label(b)}: pod missing`);
    const to = podAddr(dst, family);
    await waitUntil(
      async () => {
        const r = await src.ping(to, { count: 1, replyWaitS: 1 });
        if (r.received < 1) throw new Error(`no reply: ${r.output.trim()}`);
        return true;
      },
      { giveUpMs: c.giveUpMs, intervalMs: 300, what: `IPv${family}: pod of ${label(a)} reaching pod of ${label(b)} (${to}); logs ${logsOf(a)}; ${logsOf(b)}` },
    );
  }

  /** Every pod reaches every other over both families (all pairs at once). */
  async function fullMesh(): Promise<void> {
    const probes: Array<Promise<void>> = [];
    for (const a of members) for (const b of members) if (a !== b) for (const f of [4, 6] as const) probes.push(reaches(a, b, f));
    await Promise.all(probes);
  }

  /** The lease key and value whose PublicIP is this host's. */
  async function leaseOf(h: Host): Promise<{ key: string; value: Record<string, unknown> }> {
    const kvs = await c.getPrefix(`${c.etcdPrefix}/subnets/`);
    const mine = kvs.filter((kv) => (JSON.parse(kv.value) as { PublicIP?: string }).PublicIP === h.underlayIp);
    if (mine.length !== 1) throw new Error(`${h.name}: expected one lease with PublicIP ${h.underlayIp}, found ${JSON.stringify(kvs)}`);
    const kv = mine[0] as { key: string; value: string };
    return { key: kv.key, value: JSON.parse(kv.value) as Record<string, unknown> };
  }

  before(async () => {
    bin = await flanneldBinary();
    c = await createCluster({ hosts: 3, ipv6: true, underlayMtu: 1500 });
    await c.putConfig(CONFIG);
  });
  after(async () => {
    await c?.teardown();
  });

  it('rudder, flanneld, rudder: both families in every subnet file and lease; every pod reaches every other over IPv4 and IPv6', async () => {
    for (const i of [1, 2, 3]) {
      const host = c.host(i);
      const m: Member = { host, flanneld: i === 2 ? new Flanneld(c, host, bin) : null };
      members.push(m);
      if (m.flanneld) {
        const env = await m.flanneld.up();
        assert.match(env.ipv6Subnet ?? '', /^fd62:62:0:[0-9a-f]+::1\/64$/, `flanneld's FLANNEL_IPV6_SUBNET (log ${m.flanneld.logFile})`);
        await sleep(FLANNEL_SETTLE_MS);
      } else {
        const { env } = await host.up();
        assert.match(env.ipv6Subnet ?? '', /^fd62:62:0:[0-9a-f]+::1\/64$/);
        assert.equal(env.network, CONFIG.Network);
      }
    }
    for (const m of members) {
      const { key, value } = await leaseOf(m.host);
      assert.match(key, /\/subnets\/10\.62\.\d+\.0-24&fd62:62:0:[0-9a-f]+::-64$/, key);
      assert.equal(value['PublicIPv6'], m.host.underlayIpv6, `${label(m)}: ${JSON.stringify(value)}`);
      const v6 = value['BackendV6Data'] as { VNI?: number; VtepMAC?: string } | undefined;
      assert.equal(v6?.VNI, 1, `${label(m)} BackendV6Data: ${JSON.stringify(value)}`);
      assert.match(v6?.VtepMAC ?? '', /^[0-9a-f]{2}(:[0-9a-f]{2}){5}$/);
      const dev = await link(m.host, m.flanneld ? 'flannel-v6.1' : 'rudder-v6.1');
      assert.equal(dev?.address, v6?.VtepMAC, `${label(m)}: the IPv6 device's MAC is the published one`);
    }
    await fullMesh();
  });

  it("the flannel host switched to Rudder in place keeps its lease; Rudder replaces flannel.1 and flannel-v6.1; the mesh holds", async () => {
    const m = members[1] as Member;
    const before = await leaseOf(m.host);
    const flannelEnv = m.flanneld!.readSubnetFile()!;
    await m.flanneld!.stop();
    await m.host.startRudder();
    const env = await m.host.waitSubnetFile();
    assert.deepEqual([env.subnet, env.ipv6Subnet], [flannelEnv.subnet, flannelEnv.ipv6Subnet], `both of flanneld's subnets kept (log ${m.host.logFile})`);
    assert.equal((await leaseOf(m.host)).key, before.key, 'the same lease key');
    const log = m.host.rudderLog(20_000);
    assert.match(log, /replaced flannel's VXLAN device.*flannel\.1\b/, `log ${m.host.logFile}`);
    assert.match(log, /replaced flannel's VXLAN device.*flannel-v6\.1\b/, `log ${m.host.logFile}`);
    assert.equal(await link(m.host, 'flannel-v6.1'), null);
    await fullMesh();
  });
});
