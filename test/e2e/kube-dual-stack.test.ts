/**
 * Kubernetes mode, dual-stack and IPv6-only, with the whole daemon
 * (`bin/rudder -kube-subnet-mgr` in each host namespace) against the real
 * kube-apiserver (v1.20.2 from the anchors, with its IPv6DualStack feature
 * gate on) in the etcd namespace of one cluster whose underlay carries both
 * families (198.18.0.N and 2001:2::N). The test plays
 * kube-controller-manager: it creates Nodes with spec.podCIDRs of both
 * families (or the IPv6 one alone); each host gets a bridge and a pod from
 * the subnet file Rudder wrote.
 *
 * Four networks side by side, three hosts each, each its own net-conf file,
 * Network, IPv6Network and annotation prefix (so a daemon routes only its
 * own network's Nodes): dual-stack vxlan, host-gw and wireguard (the latter
 * over the IPv4 underlay), and an IPv6-only vxlan network (EnableIPv4
 * false). Each scenario runs for all of them at once, one subtest each:
 *
 *   every pod pings every other, over IPv4 and IPv6 (IPv6 alone when
 *   IPv6-only); the subnet files have both families (or the IPv6 one alone)
 *   the Nodes carry the annotations the daemon writes (public-ip,
 *   public-ipv6, backend-type, backend-data, backend-v6-data,
 *   kube-subnet-manager) and NetworkUnavailable=False; `rudder leases
 *   -kube-subnet-mgr` shows both subnets of each Node
 *   a restarted daemon keeps both subnets, and its pod is reached again
 *   (host-gw) public-ipv6-overwrite on a Node is what its daemon publishes,
 *   and the others route its IPv6 subnet via that address
 *   a deleted Node's routes (both families) go on every other host
 *
 * And on the vxlan network, a late Node without an IPv6 podCIDR: the daemon
 * logs an error naming the Node and spec.podCIDRs and retries until the Node
 * comes back dual-stack; then its pod is reached over both families.
 *
 * Waits have generous give-ups; nothing asserts speed.
 */
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { after, before, describe, it, type TestContext } from 'node:test';
import { UAPI_DIR_ENV } from '../../src/backend/wireguard/uapi';
import { createCluster, run, type Cluster, type Host, type SubnetEnv } from '../../src/topology';
import { skipUnlessAnchor } from '../helpers/anchors';
import { skipUnlessEtcd, skipUnlessRoot } from '../helpers/env';
import { eventually } from '../helpers/kernel-backends-net';
import { KubeApiServer } from '../helpers/kube-apiserver';
import { reaches } from '../helpers/pods6';

type Kind = 'vxlan' | 'host-gw' | 'wireguard' | 'v6only';
const KINDS: Kind[] = ['vxlan', 'host-gw', 'wireguard', 'v6only'];
const HOSTS_PER_NET = 3;

/** One network of the shared cluster. */
interface Net {
  readonly kind: Kind;
  readonly backend: 'vxlan' | 'host-gw' | 'wireguard';
  readonly prefix: string;
  /** null: IPv6-only. */
  readonly network: string | null;
  readonly ipv6Network: string;
  podCIDRs(i: number): string[];
  netConf: string;
  hosts: Host[];
}

function makeNet(kind: Kind, n: number): Net {
  const v4 = kind !== 'v6only';
  const o = 70 + n;
  return {
    kind,
    backend: kind === 'v6only' ? 'vxlan' : kind,
    prefix: kind === 'vxlan' ? 'rudder.io' : `${kind}.rudder.io`,
    network: v4 ? `10.${o}.0.0/16` : null,
    ipv6Network: `fd${o}::/48`,
    podCIDRs: (i) => [...(v4 ? [`10.${o}.${i}.0/24`] : []), `fd${o}:0:0:${i.toString(16)}::/64`],
    netConf: '',
    hosts: [],
  };
}

interface IpRoute {
  dst: string;
  dev?: string;
}

async function ipJson<T>(h: Host, args: readonly string[]): Promise<T[]> {
  const r = await run(['ip', '-n', h.ns.name, '-j', ...args], { allowFailure: true });
  const text = r.stdout.trim();
  return r.code !== 0 || text === '' ? [] : (JSON.parse(text) as T[]);
}

/** Rudder's routes (protocol 82) of the main table, both families. */
async function rudderRoutes(h: Host): Promise<string[]> {
  const all = await Promise.all(['-4', '-6'].map((f) => ipJson<IpRoute>(h, [f, 'route', 'show', 'table', 'main', 'proto', '82'])));
  return all.flat().map((r) => r.dst);
}

/** The allowed IPs of rudder-wg on `h`, as wg(8) shows them through the daemon's status socket. */
async function wgAllowedIps(h: Host): Promise<string> {
  const r = await h.exec(['unshare', '--mount', '--propagation', 'private', 'sh', '-c', 'mount --bind "$0" /run && exec "$@"', path.dirname(h.uapiDir), 'wg', 'show', 'rudder-wg', 'allowed-ips'], { allowFailure: true });
  return r.stdout;
}


const families = (g: Net): Array<4 | 6> => (g.network !== null ? [4, 6] : [6]);

/** Every pod of `hosts` reaches every other, over each family of `g`, all pairs at once. */
async function fullMesh(c: Cluster, g: Net, hosts: readonly Host[] = g.hosts): Promise<void> {
  const probes: Array<Promise<void>> = [];
  for (const a of hosts) for (const b of hosts) if (a !== b) for (const f of families(g)) probes.push(reaches(c, a, b, f));
  await Promise.all(probes);
}

/** The subnet file's subnets of a host whose Node has `cidrs` (the bridge's address: the subnet's .1 / ::1). */
function expectedEnv(g: Net, cidrs: string[]): { subnet?: string; ipv6Subnet: string } {
  const v6 = cidrs.find((x) => x.includes(':'))!.replace(/::\/64$/, '::1/64');
  const v4 = cidrs.find((x) => !x.includes(':'));
  return g.network !== null ? { subnet: v4!.replace(/\.0\/24$/, '.1/24'), ipv6Subnet: v6 } : { ipv6Subnet: v6 };
}

describe('kubernetes mode dual-stack and IPv6-only (real kube-apiserver; the whole daemon)', { skip: skipUnlessRoot || skipUnlessEtcd || skipUnlessAnchor('kube-apiserver'), concurrency: 1 }, () => {
  let c: Cluster;
  let api: KubeApiServer;
  const nets: Net[] = KINDS.map(makeNet);
  const net = (kind: Kind): Net => nets.find((x) => x.kind === kind)!;

  async function eachNet(t: TestContext, fn: (g: Net) => Promise<void>): Promise<void> {
    await Promise.all(nets.map((g) => t.test(g.kind, () => fn(g))));
  }

  /** A Node as kube-controller-manager leaves it in a dual-stack (or IPv6-only) cluster. */
  function createNode(name: string, podCIDRs: string[]): Promise<unknown> {
    return api.call('POST', '/api/v1/nodes', { apiVersion: 'v1', kind: 'Node', metadata: { name }, spec: { podCIDR: podCIDRs[0], podCIDRs } });
  }

  /** Starts rudder in kube mode on a host (NODE_NAME = the host's name). */
  async function start(g: Net, h: Host): Promise<void> {
    const flags = [
      '-kube-subnet-mgr',
      `-kubeconfig-file=${api.kubeconfigFile}`,
      `-net-config-path=${g.netConf}`,
      '-iface=eth0',
      ...(g.prefix === 'rudder.io' ? [] : [`-kube-annotation-prefix=${g.prefix}`]),
      ...(g.backend === 'wireguard' ? [`-wireguard-key-file=${path.join(h.dir, 'wireguard.key')}`] : []),
    ];
    const argv = ['env', `NODE_NAME=${h.name}`, ...h.rudderArgv(flags)];
    fs.appendFileSync(h.logFile, `--- harness: starting ${argv.join(' ')} in ${h.ns.name} at ${new Date().toISOString()}\n`);
    // Each host its own WireGuard status socket directory (the hosts share one file system).
    h.rudder = await h.ns.spawn(argv, { logFile: h.logFile, label: `rudder ${h.name}`, env: { ...c.rudderEnv, [UAPI_DIR_ENV]: h.uapiDir } });
  }

  /** start(), the subnet file (checked against the Node's podCIDRs), then the host's pod. */
  async function up(g: Net, h: Host): Promise<SubnetEnv> {
    await start(g, h);
    const env = await h.waitSubnetFile();
    const want = expectedEnv(g, g.podCIDRs(h.index));
    assert.equal(env.ipv4, g.network !== null, `${h.name}: IPv4 keys only when IPv4 is on`);
    if (g.network !== null) {
      assert.equal(env.network, g.network);
      assert.equal(env.subnet, want.subnet, `${h.name} subnet from its podCIDRs`);
    }
    assert.equal(env.ipv6Network, g.ipv6Network);
    assert.equal(env.ipv6Subnet, want.ipv6Subnet, `${h.name} IPv6 subnet from its podCIDRs`);
    await h.setupPod(env);
    return env;
  }

  before(async () => {
    c = await createCluster({ hosts: HOSTS_PER_NET * KINDS.length, ipv6: true, prefix: 'rk6' });
    // v1.20 drops a Node's second podCIDR unless dual-stack is on (it is GA, and on, from 1.23).
    api = await KubeApiServer.start(c, { featureGates: ['IPv6DualStack=true'] });
    for (const [n, g] of nets.entries()) {
      g.hosts = c.hosts.slice(n * HOSTS_PER_NET, (n + 1) * HOSTS_PER_NET);
      g.netConf = path.join(c.dir, `net-conf-${g.kind}.json`);
      const conf = g.network !== null ? { Network: g.network } : { EnableIPv4: false };
      fs.writeFileSync(g.netConf, JSON.stringify({ ...conf, EnableIPv6: true, IPv6Network: g.ipv6Network, Backend: { Type: g.backend } }));
    }
  });
  after(async () => {
    for (const h of c?.hosts ?? []) await h.stopRudder().catch(() => undefined);
    await api?.stop();
    await c?.teardown();
  });

  it('each host takes both podCIDRs of its Node (the IPv6 one alone when IPv6-only); every pod pings every other over each family', { concurrency: true }, async (t) => {
    await eachNet(t, async (g) => {
      for (const h of g.hosts) await createNode(h.name, g.podCIDRs(h.index));
      const stored = await api.call<{ spec: { podCIDRs?: string[] } }>('GET', `/api/v1/nodes/${g.hosts[0]!.name}`);
      assert.deepEqual(stored.spec.podCIDRs, g.podCIDRs(g.hosts[0]!.index), 'the API server keeps both podCIDRs');
      await Promise.all(g.hosts.map((h) => up(g, h)));
      await fullMesh(c, g);
    });
  });

  it('the Nodes carry the annotations of both families and NetworkUnavailable=False; `rudder leases` shows both subnets', { concurrency: true }, async (t) => {
    await eachNet(t, async (g) => {
      const p = g.prefix;
      for (const h of g.hosts) {
        await eventually(c, `Node ${h.name} NetworkUnavailable=False`, async () => {
          const node = await api.getNode(h.name);
          return (node.status?.conditions ?? []).some((x) => x.type === 'NetworkUnavailable' && x.status === 'False' && x.reason === 'RudderIsUp');
        });
        const a = (await api.getNode(h.name)).metadata.annotations ?? {};
        const all = JSON.stringify(a);
        assert.equal(a[`${p}/public-ip`], h.underlayIp, all);
        assert.equal(a[`${p}/public-ipv6`], h.underlayIpv6, all);
        assert.equal(a[`${p}/backend-type`], g.backend, all);
        assert.equal(a[`${p}/kube-subnet-manager`], 'true', all);
        const data = JSON.parse(a[`${p}/backend-data`] ?? 'undefined') as Record<string, unknown> | null;
        const data6 = JSON.parse(a[`${p}/backend-v6-data`] ?? 'undefined') as Record<string, unknown> | null;
        if (g.backend === 'vxlan') {
          const mac = /^[0-9a-f]{2}(:[0-9a-f]{2}){5}$/;
          assert.match(String(data6?.['VtepMAC']), mac, all);
          if (g.network !== null) {
            assert.match(String(data?.['VtepMAC']), mac, all);
            assert.notEqual(data?.['VtepMAC'], data6?.['VtepMAC'], 'one MAC per device');
          }
        } else if (g.backend === 'wireguard') {
          assert.match(String(data?.['PublicKey']), /^[A-Za-z0-9+/]{43}=$/, all);
          assert.deepEqual(data6, data, 'the same key in both');
        } else {
          assert.ok(data6 !== undefined, all);
        }
      }
      const r = await g.hosts[0]!.exec([c.rudderBin, 'leases', '-kube-subnet-mgr', `-kubeconfig-file=${api.kubeconfigFile}`, `-kube-annotation-prefix=${p}`], { env: c.rudderEnv });
      assert.match(r.stdout, /^SUBNET\s+IPV6 SUBNET\s+PUBLIC IP\s+PUBLIC IPV6\s+BACKEND/m, r.stdout + r.stderr);
      const rows = r.stdout.trim().split('\n').slice(1).map((l) => l.trim().split(/\s+/).join(' '));
      for (const h of g.hosts) {
        const [v4, v6] = g.network !== null ? g.podCIDRs(h.index) : ['-', g.podCIDRs(h.index)[0]];
        assert.ok(rows.includes(`${v4} ${v6} ${h.underlayIp} ${h.underlayIpv6} ${g.backend} reservation`), `${h.name} in:\n${r.stdout}${r.stderr}`);
      }
    });
  });

  it('a restarted daemon keeps both subnets, and its pod is reached again over each family', { concurrency: true }, async (t) => {
    await eachNet(t, async (g) => {
      const h = g.hosts[0]!;
      const was = h.readSubnetFile();
      const stamp = h.subnetFileStamp();
      await h.stopRudder();
      await start(g, h);
      const env = await h.waitSubnetFile({ changedSince: stamp });
      assert.equal(env.subnet, was?.subnet);
      assert.equal(env.ipv6Subnet, was?.ipv6Subnet);
      assert.equal(env.ipv6Subnet, expectedEnv(g, g.podCIDRs(h.index)).ipv6Subnet);
      await fullMesh(c, g);
    });
  });

  it('public-ipv6-overwrite on a Node is what its daemon publishes (as flannel), and the others route to it (host-gw)', async () => {
    const g = net('host-gw');
    const h = g.hosts[0]!;
    const other = `2001:2::1:${h.index.toString(16)}`;
    await h.exec(['ip', '-6', 'addr', 'add', `${other}/64`, 'dev', 'eth0', 'nodad']);
    await api.annotateNode(h.name, { [`${g.prefix}/public-ipv6-overwrite`]: other });
    await h.stopRudder();
    await start(g, h);
    await eventually(c, `Node ${h.name} publishes public-ipv6 ${other}`, async () => (await api.getNode(h.name)).metadata.annotations?.[`${g.prefix}/public-ipv6`] === other);
    const sub6 = g.podCIDRs(h.index)[1]!;
    for (const p of g.hosts.filter((x) => x !== h)) {
      await eventually(c, `${p.name} routes ${sub6} via ${other}`, async () => (await ipJson<{ dst: string; gateway?: string }>(p, ['-6', 'route', 'show', sub6])).some((r) => r.gateway === other));
    }
    await fullMesh(c, g);
  });

  it('a Node without an IPv6 podCIDR: the daemon says so, naming the Node, and retries until the Node is dual-stack; then it is reached (vxlan)', async () => {
    const g = net('vxlan');
    const h = await c.addHost();
    const cidrs = g.podCIDRs(h.index);
    await createNode(h.name, [cidrs[0]!]);
    const from = fs.existsSync(h.logFile) ? fs.statSync(h.logFile).size : 0;
    await start(g, h);
    const want = new RegExp(
      `Node ${h.name} has no IPv6 entry in spec\\.podCIDRs \\(${cidrs[0]!.replace(/\./g, '\\.')}\\), and EnableIPv6 needs one: run a dual-stack cluster \\(kube-controller-manager --allocate-node-cidrs=true --cluster-cidr=${g.network!.replace(/\./g, '\\.')},${g.ipv6Network}\\); waiting`,
    );
    await eventually(c, `${h.name} logs that its Node has no IPv6 podCIDR`, async () => want.test(fs.readFileSync(h.logFile, 'utf8').slice(from)));
    assert.ok(h.rudder?.running, 'still retrying');
    assert.equal(h.readSubnetFile(), null, 'no subnet file yet');
    // podCIDRs cannot change once set: the Node comes back dual-stack.
    await api.deleteNode(h.name);
    await createNode(h.name, cidrs);
    const env = await h.waitSubnetFile();
    assert.deepEqual([env.subnet, env.ipv6Subnet], [expectedEnv(g, cidrs).subnet, expectedEnv(g, cidrs).ipv6Subnet]);
    await h.setupPod(env);
    g.hosts.push(h);
    await fullMesh(c, g);
  });

  it('a deleted Node’s routes of both families go on every other host', { concurrency: true }, async (t) => {
    await eachNet(t, async (g) => {
      const gone = g.hosts[g.hosts.length - 1]!;
      const others = g.hosts.filter((x) => x !== gone);
      const subnets = g.podCIDRs(gone.index);
      /** Whether `h` still routes any of the gone Node's subnets: kernel routes, or (wireguard) rudder-wg's allowed IPs. */
      const routed = async (h: Host): Promise<string[]> => {
        if (g.backend === 'wireguard') {
          const shown = await wgAllowedIps(h);
          return subnets.filter((s) => shown.includes(s));
        }
        const dsts = await rudderRoutes(h);
        return subnets.filter((s) => dsts.includes(s));
      };
      for (const h of others) assert.deepEqual(await routed(h), subnets, `${h.name} routes ${subnets.join(', ')} first`);
      await gone.stopRudder();
      await api.deleteNode(gone.name);
      for (const h of others) await eventually(c, `${h.name} drops ${subnets.join(', ')}`, async () => (await routed(h)).length === 0);
      g.hosts = others;
      await fullMesh(c, g);
    });
  });
});
