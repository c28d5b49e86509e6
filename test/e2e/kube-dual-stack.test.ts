/**
 * Kubernetes mode, dual-stack and IPv6-only, against the real kube-apiserver
 * (v1.20.2 from the anchors, with its IPv6DualStack feature gate on) in the
 * etcd namespace of a small topology. The
 * test plays kube-controller-manager: it creates Nodes with spec.podCIDRs of
 * both families (or the IPv6 one alone). Kubernetes mode's source and keeper
 * run in a host namespace (test/helpers/kube-keeper-child.ts) — the daemon
 * itself refuses IPv6 on a backend that does not carry it yet — and write
 * the subnet file as the daemon does:
 *
 *   dual-stack Node         both subnets in the lease and the subnet file;
 *                           public-ipv6 / backend-v6-data on the Node; a
 *                           dual-stack peer read with its IPv6 half, also
 *                           by `rudder leases -kube-subnet-mgr`
 *   Node without IPv6       a clear error naming the Node and spec.podCIDRs,
 *                           retried until the Node has one
 *   IPv6-only Node          the IPv6 subnet alone, no RUDDER_NETWORK
 */
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { after, afterEach, before, describe, it } from 'node:test';
import { createCluster, waitUntil, type Cluster, type Host, type ManagedProcess } from '../../src/topology';
import { skipUnlessAnchor } from '../helpers/anchors';
import { skipUnlessEtcd, skipUnlessRoot } from '../helpers/env';
import { KubeApiServer } from '../helpers/kube-apiserver';

const CHILD = path.join(__dirname, '..', 'helpers', 'kube-keeper-child.js');
const BIN = path.resolve(__dirname, '..', '..', '..', 'bin', 'rudder');
const GIVE_UP_MS = 60_000;

interface ChildResult {
  lease: string;
  publicIPv6: string | null;
  peers: { key: string; publicIPv6: string | null; backendV6Data: unknown }[];
  invalid: { key: string; reason: string }[];
}

describe('kubernetes mode dual-stack (real kube-apiserver; source and keeper)', { skip: skipUnlessRoot || skipUnlessEtcd || skipUnlessAnchor('kube-apiserver') }, () => {
  let c: Cluster;
  let api: KubeApiServer;
  let h: Host;

  before(async () => {
    c = await createCluster({ hosts: 1, prefix: 'rk' });
    // v1.20 drops a Node's second podCIDR unless dual-stack is on (it is GA, and on, from 1.23).
    api = await KubeApiServer.start(c, { featureGates: ['IPv6DualStack=true'] });
    h = c.host(1);
  });

  /** Nodes and children of the current test, removed after it however it ends. */
  let made: { nodes: string[]; procs: ManagedProcess[] } = { nodes: [], procs: [] };
  afterEach(async () => {
    for (const p of made.procs) await p.stop(5_000);
    for (const n of made.nodes) await api.request('DELETE', `/api/v1/nodes/${n}`);
    made = { nodes: [], procs: [] };
  });

  after(async () => {
    await api?.stop();
    await c?.teardown();
  });

  /** A Node as kube-controller-manager leaves it in a dual-stack (or IPv6-only) cluster. */
  function createNode(name: string, podCIDRs: string[], annotations: Record<string, string> = {}): Promise<unknown> {
    if (!made.nodes.includes(name)) made.nodes.push(name);
    return api.call('POST', '/api/v1/nodes', { apiVersion: 'v1', kind: 'Node', metadata: { name, annotations }, spec: { podCIDR: podCIDRs[0], podCIDRs } });
  }

  function writeConf(name: string, conf: Record<string, unknown>): string {
    const file = path.join(c.dir, `net-conf-${name}.json`);
    fs.writeFileSync(file, JSON.stringify(conf));
    return file;
  }

  let runs = 0;
  /** Starts the source and keeper for `node` in the host namespace (its own log and subnet file). */
  async function runChild(node: string, netConf: string, extra: Record<string, string> = {}): Promise<{ proc: ManagedProcess; log: string; subnetFile: string }> {
    const run = ++runs;
    const log = path.join(h.dir, `keeper-${run}.log`);
    const subnetFile = path.join(h.dir, `subnet-${run}.env`);
    const arg = JSON.stringify({ kubeconfig: api.kubeconfigFile, netConf, node, subnetFile, publicIP: h.underlayIp, ...extra });
    const proc = await h.ns.spawn([process.execPath, CHILD, arg], { logFile: log, label: `keeper ${node}` });
    made.procs.push(proc);
    return { proc, log, subnetFile };
  }

  /** The child's final line, once it printed one. */
  async function result(r: { proc: ManagedProcess; log: string }): Promise<ChildResult> {
    return waitUntil(
      () => {
        const lines = fs.readFileSync(r.log, 'utf8').split('\n').filter((l) => l.startsWith('{"lease"'));
        if (lines[0]) return JSON.parse(lines[0]) as ChildResult;
        if (!r.proc.running) throw new Error(`keeper child exited: ${r.proc.logTail(3000)}`);
        return undefined;
      },
      { giveUpMs: GIVE_UP_MS, intervalMs: 200, what: `keeper child result (${r.log})` },
    );
  }

  function subnetFile(file: string): Record<string, string> {
    const out: Record<string, string> = {};
    for (const l of fs.readFileSync(file, 'utf8').split('\n')) {
      const m = /^(\w+)=(.*)$/.exec(l);
      if (m) out[m[1]!] = m[2]!;
    }
    return out;
  }

  it('a dual-stack Node gets both subnets in the lease and the subnet file; a dual-stack peer is read with its IPv6 half', async () => {
    const conf = writeConf('ds', { Network: '10.70.0.0/16', EnableIPv6: true, IPv6Network: 'fd70::/48', Backend: { Type: 'host-gw' } });
    await createNode('ds-peer', ['10.70.2.0/24', 'fd70:0:0:2::/64'], {
      'rudder.io/public-ip': '198.18.0.99',
      'rudder.io/public-ipv6': '2001:2::99',
      'rudder.io/backend-type': 'host-gw',
      'rudder.io/backend-data': 'null',
      'rudder.io/backend-v6-data': 'null',
    });
    const stored = await api.call<{ spec: { podCIDRs?: string[] } }>('GET', '/api/v1/nodes/ds-peer');
    assert.deepEqual(stored.spec.podCIDRs, ['10.70.2.0/24', 'fd70:0:0:2::/64'], 'the API server keeps both podCIDRs');
    await createNode(h.name, ['10.70.1.0/24', 'fd70:0:0:1::/64']);
    const child = await runChild(h.name, conf, { publicIPv6: '2001:2::1' });
    const r = await result(child);
    assert.equal(r.lease, '10.70.1.0-24&fd70:0:0:1::-64');
    assert.equal(r.publicIPv6, '2001:2::1');
    const env = subnetFile(child.subnetFile);
    assert.equal(env.RUDDER_NETWORK, '10.70.0.0/16');
    assert.equal(env.RUDDER_SUBNET, '10.70.1.1/24');
    assert.equal(env.RUDDER_IPV6_NETWORK, 'fd70::/48');
    assert.equal(env.RUDDER_IPV6_SUBNET, 'fd70:0:0:1::1/64');
    const n = await api.getNode(h.name);
    const a = n.metadata.annotations ?? {};
    assert.equal(a['rudder.io/public-ip'], h.underlayIp);
    assert.equal(a['rudder.io/public-ipv6'], '2001:2::1');
    assert.equal(a['rudder.io/backend-data'], '{"Test":4}');
    assert.equal(a['rudder.io/backend-v6-data'], '{"Test":6}');
    const peer = r.peers.find((p) => p.key.startsWith('10.70.2.0'));
    assert.deepEqual(peer, { key: '10.70.2.0-24&fd70:0:0:2::-64', publicIPv6: '2001:2::99', backendV6Data: {} });
    assert.ok(r.peers.some((p) => p.key === '10.70.1.0-24&fd70:0:0:1::-64'), 'its own Node, as the watcher sees it');
    // `rudder leases -kube-subnet-mgr` (no config at hand) shows both families of each Node.
    const ls = await h.exec([BIN, 'leases', '-kube-subnet-mgr', `-kubeconfig-file=${api.kubeconfigFile}`]);
    assert.match(ls.stdout, /^SUBNET\s+IPV6 SUBNET\s+PUBLIC IP\s+PUBLIC IPV6\s+BACKEND/m, ls.stdout);
    assert.match(ls.stdout, /^10\.70\.2\.0\/24\s+fd70:0:0:2::\/64\s+198\.18\.0\.99\s+2001:2::99\s+host-gw/m, ls.stdout);
  });

  it('a Node without an IPv6 podCIDR: an error naming the Node and spec.podCIDRs, retried until it has one', async () => {
    const conf = writeConf('ds2', { Network: '10.71.0.0/16', EnableIPv6: true, IPv6Network: 'fd71::/48', Backend: { Type: 'host-gw' } });
    await createNode(h.name, ['10.71.1.0/24']);
    const child = await runChild(h.name, conf);
    const err = await waitUntil(
      () => fs.readFileSync(child.log, 'utf8').split('\n').find((l) => l.startsWith('{"error"')),
      { giveUpMs: GIVE_UP_MS, intervalMs: 200, what: 'the keeper error' },
    );
    assert.match(
      (JSON.parse(err) as { error: string }).error,
      new RegExp(`^Node ${h.name} has no IPv6 entry in spec\\.podCIDRs \\(10\\.71\\.1\\.0/24\\), and EnableIPv6 needs one: run a dual-stack cluster \\(kube-controller-manager --allocate-node-cidrs=true --cluster-cidr=10\\.71\\.0\\.0/16,fd71::/48\\); waiting$`),
    );
    assert.ok(child.proc.running, 'still retrying');
    // podCIDRs cannot change once set: the Node comes back dual-stack.
    await api.deleteNode(h.name);
    await createNode(h.name, ['10.71.1.0/24', 'fd71:0:0:1::/64']);
    const r = await result(child);
    assert.equal(r.lease, '10.71.1.0-24&fd71:0:0:1::-64');
  });

  it('an IPv6-only Node: the IPv6 subnet alone, no IPv4 keys in the subnet file', async () => {
    const conf = writeConf('v6', { EnableIPv4: false, EnableIPv6: true, IPv6Network: 'fd72::/48', Backend: { Type: 'host-gw' } });
    await createNode(h.name, ['fd72:0:0:3::/64']);
    const child = await runChild(h.name, conf, { publicIPv6: '2001:2::3' });
    const r = await result(child);
    assert.equal(r.lease, '0.0.0.0-0&fd72:0:0:3::-64');
    const env = subnetFile(child.subnetFile);
    assert.equal(env.RUDDER_NETWORK, undefined);
    assert.equal(env.RUDDER_SUBNET, undefined);
    assert.equal(env.RUDDER_IPV6_SUBNET, 'fd72:0:0:3::1/64');
    const a = (await api.getNode(h.name)).metadata.annotations ?? {};
    assert.equal(a['rudder.io/public-ipv6'], '2001:2::3');
  });
});
