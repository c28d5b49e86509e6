/**
 * The vxlan backend carrying IPv6, end to end on one cluster with an IPv6
 * underlay (hosts at 2001:2::N beside 198.18.0.N) and real etcd: a
 * dual-stack network (h1-h3, then a late h7) and an IPv6-only one (h4-h6,
 * its own etcd prefix and VNI) side by side. Every pod reaches every other of
 * its network over IPv6 (and IPv4 when on), through `rudder-v6.<VNI>`, an
 * IPv6 VTEP on the host's PublicIPv6; a 50 MB IPv6 TCP transfer arrives
 * intact; 1,400-byte IPv6 packets pass; a host joining late is reached; a
 * restarted daemon keeps both subnets. Waits have generous give-ups; nothing
 * asserts how fast anything happened.
 */
import assert from 'node:assert/strict';
import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { createCluster, run, type Cluster, type Host } from '../../src/topology';
import { skipUnlessEtcd, skipUnlessRoot } from '../helpers/env';
import { fdb, link } from '../helpers/kernel-backends-net';
import { tempDir } from '../helpers/tmp';
import { podIp, reaches } from '../helpers/pods6';

interface Net {
  readonly name: string;
  readonly prefix: string;
  readonly config: Record<string, unknown>;
  readonly v4: boolean;
  readonly dev6: string;
  readonly hosts: Host[];
}

const V6ONLY_PREFIX = '/rudder-v6only/network';


/** Every pod reaches every other, over IPv6 and (when on) IPv4, all pairs at once. */
async function fullMesh(c: Cluster, n: Net, hosts: readonly Host[] = n.hosts): Promise<void> {
  const families: Array<4 | 6> = n.v4 ? [4, 6] : [6];
  const probes: Array<Promise<void>> = [];
  for (const a of hosts) for (const b of hosts) if (a !== b) for (const f of families) probes.push(reaches(c, a, b, f));
  await Promise.all(probes);
}

/** The lease value (parsed) and key of a host, found by its PublicIPv6. */
async function leaseOf(c: Cluster, n: Net, h: Host): Promise<{ key: string; value: Record<string, unknown> }> {
  const kvs = await c.getPrefix(`${n.prefix}/subnets/`);
  const mine = kvs.filter((kv) => (JSON.parse(kv.value) as { PublicIPv6?: string }).PublicIPv6 === h.underlayIpv6);
  if (mine.length !== 1) throw new Error(`${h.name}: expected one lease with PublicIPv6 ${h.underlayIpv6}, found ${JSON.stringify(kvs)}`);
  const kv = mine[0] as { key: string; value: string };
  return { key: kv.key.slice(`${n.prefix}/subnets/`.length), value: JSON.parse(kv.value) as Record<string, unknown> };
}

async function ipJson<T>(h: Host, args: readonly string[]): Promise<T[]> {
  const r = await run(['ip', '-n', h.ns.name, '-j', ...args], { allowFailure: true });
  return r.code === 0 && r.stdout.trim() !== '' ? (JSON.parse(r.stdout) as T[]) : [];
}

async function sha256(file: string): Promise<string> {
  const hash = crypto.createHash('sha256');
  for await (const chunk of fs.createReadStream(file)) hash.update(chunk as Buffer);
  return hash.digest('hex');
}

describe('vxlan over IPv6', { skip: skipUnlessRoot || skipUnlessEtcd }, () => {
  let c: Cluster;
  const dual: Net = {
    name: 'dual-stack',
    prefix: '/coreos.com/network',
    config: { Network: '10.60.0.0/16', EnableIPv6: true, IPv6Network: 'fd60:60::/48', IPv6SubnetLen: 64, Backend: { Type: 'vxlan' } },
    v4: true,
    dev6: 'rudder-v6.1',
    hosts: [],
  };
  const v6only: Net = {
    name: 'IPv6-only',
    prefix: V6ONLY_PREFIX,
    config: { EnableIPv4: false, EnableIPv6: true, IPv6Network: 'fd61:61::/48', Backend: { Type: 'vxlan', VNI: 7 } },
    v4: false,
    dev6: 'rudder-v6.7',
    hosts: [],
  };

  before(async () => {
    c = await createCluster({ hosts: 0, ipv6: true, underlayMtu: 1500 });
    await c.putConfig(dual.config, dual.prefix);
    await c.putConfig(v6only.config, v6only.prefix);
    for (let i = 0; i < 3; i++) dual.hosts.push(await c.addHost());
    for (let i = 0; i < 3; i++) v6only.hosts.push(await c.addHost({ rudderArgs: [`-etcd-prefix=${V6ONLY_PREFIX}`] }));
  });
  after(async () => {
    await c?.teardown();
  });

  it('both networks: subnet files with both families (or IPv6 only), MTU 1430, every pod reaches every other', async () => {
    await Promise.all([...dual.hosts, ...v6only.hosts].map((h) => h.up()));
    for (const h of dual.hosts) {
      const env = h.readSubnetFile()!;
      assert.equal(env.network, '10.60.0.0/16');
      assert.equal(env.ipv6Network, 'fd60:60::/48');
      assert.match(env.ipv6Subnet ?? '', /^fd60:60:0:[0-9a-f]+::1\/64$/);
      assert.equal(env.mtu, 1430, `${h.name}: the IPv6 underlay's 70 bytes of overhead`);
    }
    for (const h of v6only.hosts) {
      const env = h.readSubnetFile()!;
      assert.equal(env.ipv4, false, `${h.name}: no IPv4 in an IPv6-only file`);
      assert.match(env.ipv6Subnet ?? '', /^fd61:61:0:[0-9a-f]+::1\/64$/);
      assert.equal(env.mtu, 1430);
    }
    await Promise.all([fullMesh(c, dual), fullMesh(c, v6only)]);
  });

  it('leases carry PublicIPv6 and BackendV6Data {VNI, VtepMAC}; each host programs an IPv6 VTEP and its peers', async () => {
    for (const n of [dual, v6only]) {
      for (const h of n.hosts) {
        const { key, value } = await leaseOf(c, n, h);
        assert.match(key, n.v4 ? /^10\.60\.\d+\.0-24&fd60:60:0:[0-9a-f]+::-64$/ : /^0\.0\.0\.0-0&fd61:61:0:[0-9a-f]+::-64$/, key);
        assert.equal(value['BackendType'], 'vxlan');
        const v6 = value['BackendV6Data'] as { VNI?: number; VtepMAC?: string };
        assert.equal(v6.VNI, n === dual ? 1 : 7, JSON.stringify(value));
        assert.match(v6.VtepMAC ?? '', /^[0-9a-f]{2}(:[0-9a-f]{2}){5}$/);
        if (n.v4) assert.notEqual((value['BackendData'] as { VtepMAC?: string }).VtepMAC, v6.VtepMAC, 'one MAC per device');

        const dev = await link(h, n.dev6);
        assert.ok(dev, `${h.name} has ${n.dev6}`);
        assert.equal(dev.address, v6.VtepMAC);
        assert.equal(dev.mtu, 1430);
        assert.equal(dev.linkinfo?.info_kind, 'vxlan');
        assert.equal(dev.linkinfo?.info_data?.id, n === dual ? 1 : 7);
        assert.equal((dev.linkinfo?.info_data as { local6?: string } | undefined)?.local6 ?? dev.linkinfo?.info_data?.local, h.underlayIpv6);
        assert.equal((await link(h, 'rudder.1')) !== null, n.v4, `${h.name}: the IPv4 device exists only with IPv4`);

        // Per peer: route via the peer's IPv6 network address onlink, NDP entry to its MAC, FDB to its PublicIPv6.
        const routes = await ipJson<{ dst: string; gateway?: string; dev?: string; flags?: string[] }>(h, ['-6', 'route', 'show', 'table', 'main', 'proto', '82']);
        const neigh = await ipJson<{ dst: string; lladdr?: string; state?: string[] }>(h, ['-6', 'neigh', 'show', 'dev', n.dev6]);
        const fdbs = await fdb(h, n.dev6);
        for (const p of n.hosts) {
          if (p === h) continue;
          const pl = await leaseOf(c, n, p);
          const sub = (pl.key.split('&')[1] as string).replace(/-(\d+)$/, '/$1');
          const gw = sub.split('/')[0] as string;
          const mac = (pl.value['BackendV6Data'] as { VtepMAC: string }).VtepMAC;
          const r = routes.find((x) => x.dst === sub);
          assert.ok(r, `${h.name} routes ${sub}: ${JSON.stringify(routes)}`);
          assert.deepEqual([r.gateway, r.dev, r.flags?.includes('onlink')], [gw, n.dev6, true], JSON.stringify(r));
          const ne = neigh.find((x) => x.dst === gw);
          assert.equal(ne?.lladdr, mac, `${h.name} NDP entry for ${gw}: ${JSON.stringify(neigh)}`);
          assert.ok(ne?.state?.includes('PERMANENT'));
          assert.deepEqual(fdbs.filter((x) => x.mac === mac).map((x) => x.dst), [p.underlayIpv6], `${h.name} FDB of ${mac}`);
        }
      }
    }
  });

  it('1,400-byte IPv6 packets pass (unfragmented), and a larger ping6 is fragmented by the pod and reassembled', async () => {
    for (const n of [dual, v6only]) {
      const [a, b] = n.hosts as [Host, Host];
      const to = podIp(b.pod!, 6);
      // 1352 bytes of payload + 8 ICMPv6 + 40 IPv6 = 1,400 bytes, with fragmentation forbidden.
      const r = await a.pod!.ping(to, { count: 3, size: 1352, dontFragment: true, replyWaitS: 2 });
      assert.equal(r.received, 3, `${n.name}: ${r.output}`);
      const big = await a.pod!.ping(to, { count: 2, size: 1400, replyWaitS: 2 });
      assert.equal(big.received, 2, `${n.name}: ${big.output}`);
    }
  });

  it('a 50 MB IPv6 TCP transfer between pods arrives intact', async (t) => {
    const [a, b] = dual.hosts as [Host, Host];
    const dir = tempDir(t, 'rudder-v6vx-tcp-');
    const src = path.join(dir, 'in');
    const dst = path.join(dir, 'out');
    await run(['sh', '-c', `head -c 50M /dev/urandom > '${src}'`]);
    const port = 5006;
    const listener = await b.pod!.ns.spawn(['socat', '-u', `TCP6-LISTEN:${port},reuseaddr`, `OPEN:${dst},creat,trunc`], {
      logFile: path.join(dir, 'socat-listen.log'),
      label: `socat listener in pod of ${b.name}`,
    });
    try {
      await a.pod!.exec(['socat', '-u', `FILE:${src}`, `TCP6:[${podIp(b.pod!, 6)}]:${port},retry=200,interval=0.2`]);
      const ex = await listener.exited;
      assert.deepEqual(ex, { code: 0, signal: null }, `listener: ${listener.logTail()}`);
    } finally {
      await listener.stop(2_000);
    }
    assert.equal(fs.statSync(dst).size, 50 * 1024 * 1024, 'received size');
    assert.equal(await sha256(dst), await sha256(src), 'sha256 of what arrived equals what was sent');
  });

  it('a dual-stack host joining late reaches, and is reached by, every pod without restarting anyone', async () => {
    const pids = [...dual.hosts, ...v6only.hosts].map((h) => h.rudder?.pid);
    const h7 = await c.addHost();
    await h7.up();
    dual.hosts.push(h7);
    await fullMesh(c, dual);
    assert.deepEqual(
      [...dual.hosts.slice(0, 3), ...v6only.hosts].map((h) => h.rudder?.pid),
      pids,
      'no daemon was restarted',
    );
  });

  it('a restarted daemon keeps both subnets (and an IPv6-only one its IPv6 subnet); the mesh comes back', async () => {
    for (const [n, h] of [
      [dual, dual.hosts[1]],
      [v6only, v6only.hosts[2]],
    ] as Array<[Net, Host]>) {
      const before = h.readSubnetFile()!;
      const key = (await leaseOf(c, n, h)).key;
      const stamp = h.subnetFileStamp();
      await h.restartRudder();
      const env = await h.waitSubnetFile({ changedSince: stamp });
      assert.deepEqual([env.subnet, env.ipv6Subnet], [before.subnet, before.ipv6Subnet], `${h.name} (log ${h.logFile})`);
      assert.equal((await leaseOf(c, n, h)).key, key, 'the same lease key');
    }
    await Promise.all([fullMesh(c, dual), fullMesh(c, v6only)]);
  });
});
