/**
 * Kubernetes mode against the real kube-apiserver (v1.20.2 from the
 * anchors) on the topology's real etcd, run in the etcd namespace. The test
 * plays kube-controller-manager: it creates the Node objects with their
 * podCIDRs (and one annotation each, as flanneld needs). One rudder per host
 * namespace runs with -kube-subnet-mgr, a kubeconfig with a bearer token and
 * NODE_NAME; each host gets a bridge and a pod from the subnet file Rudder
 * wrote. For vxlan, host-gw and udp: every pod reaches every other, the
 * annotations and NetworkUnavailable=False are on the Nodes. For vxlan also:
 * a deleted Node's routes go everywhere, a new Node is reached, an API
 * server stopped for 30 s loses no packet and is caught up with afterwards,
 * and a real `410 Gone` is recovered: with the API server's watch cache off
 * (watches served by etcd), a host cut off while the server ends its watch
 * and Nodes change and etcd is compacted resumes that watch from a compacted
 * resourceVersion, is answered 410, lists again and diffs.
 *
 * The clusters run one after another (a kube-apiserver is heavy for the
 * shared machine); waits have generous give-ups, nothing asserts speed.
 */
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { ETCD_IP, Netns, createCluster, ping, sleep, type Cluster, type Host, type SubnetEnv } from '../../src/topology';
import { CNI_PATH, CniRuntime, type ConfList } from '../helpers/cni-runtime';
import { skipUnlessAnchor } from '../helpers/anchors';
import { skipUnlessEtcd, skipUnlessRoot } from '../helpers/env';
import { eventually, fdb, fullMesh, podReaches, rudderRoutes } from '../helpers/kernel-backends-net';
import { Flanneld, flanneldBinary, skipUnlessFlanneld } from '../helpers/flanneld';
import { KubeApiServer } from '../helpers/kube-apiserver';
import { parseYamlDocuments } from '../../src/subnet/kube/yaml';

type Kind = 'vxlan' | 'host-gw' | 'udp';
const KINDS: Kind[] = ['vxlan', 'host-gw', 'udp'];
const MTU: Record<Kind, number> = { udp: 1472, vxlan: 1450, 'host-gw': 1500 };
const PREFIX = 'rudder.io';
const skipUnlessPlugins: string | false = ['bridge', 'host-local', 'portmap'].every((p) => fs.existsSync(path.join(CNI_PATH, p))) ? false : `needs the CNI plugins in ${CNI_PATH} (Debian containernetworking-plugins)`;
const MANIFEST = path.resolve(__dirname, '..', '..', '..', 'packaging', 'kubernetes', 'rudder.yaml');

describe('kubernetes mode (real kube-apiserver)', { skip: skipUnlessRoot || skipUnlessEtcd || skipUnlessAnchor('kube-apiserver'), concurrency: 1 }, () => {
  for (const [n, kind] of KINDS.entries()) {
    const octet = 60 + n;
    const network = `10.${octet}.0.0/16`;
    const podCIDR = (i: number): string => `10.${octet}.${i}.0/24`;

    describe(kind, { concurrency: 1 }, () => {
      let c: Cluster;
      let api: KubeApiServer;
      let netConf: string;

      /** Starts rudder in kube mode on a host (NODE_NAME = the host's name; `env`: more VAR=value). */
      async function start(h: Host, env: string[] = []): Promise<SubnetEnv> {
        const argv = ['env', `NODE_NAME=${h.name}`, ...env, ...h.rudderArgv(['-kube-subnet-mgr', `-kubeconfig-file=${api.kubeconfigFile}`, `-net-config-path=${netConf}`, '-iface=eth0'])];
        fs.appendFileSync(h.logFile, `--- harness: starting ${argv.join(' ')} in ${h.ns.name} at ${new Date().toISOString()}\n`);
        h.rudder = await h.ns.spawn(argv, { logFile: h.logFile, label: `rudder ${h.name}`, env: c.rudderEnv });
        return h.waitSubnetFile();
      }

      /** start(), then the host's pod. */
      async function up(h: Host): Promise<SubnetEnv> {
        const env = await start(h);
        await h.setupPod(env);
        return env;
      }

      before(async () => {
        c = await createCluster({ hosts: 3, prefix: 'rk' });
        api = await KubeApiServer.start(c);
        netConf = path.join(c.dir, 'net-conf.json');
        fs.writeFileSync(netConf, JSON.stringify({ Network: network, Backend: { Type: kind } }));
      });
      after(async () => {
        for (const h of c?.hosts ?? []) await h.stopRudder().catch(() => undefined);
        await api?.stop();
        await c?.teardown();
      });

      it('each host takes its Node’s podCIDR and every pod reaches every other', async () => {
        for (const h of c.hosts) await api.createNode(h.name, podCIDR(h.index));
        for (const h of c.hosts) {
          const env = await up(h);
          assert.equal(env.network, network);
          assert.equal(env.subnet, `10.${octet}.${h.index}.1/24`, `${h.name} subnet from its podCIDR`);
          assert.equal(env.mtu, MTU[kind]);
        }
        await fullMesh(c, c.hosts);
      });

      it('annotations and NetworkUnavailable=False are on every Node', async () => {
        for (const h of c.hosts) {
          await eventually(c, `Node ${h.name} NetworkUnavailable=False`, async () => {
            const node = await api.getNode(h.name);
            return (node.status?.conditions ?? []).some((x) => x.type === 'NetworkUnavailable' && x.status === 'False' && x.reason === 'RudderIsUp');
          });
          const a = (await api.getNode(h.name)).metadata.annotations ?? {};
          assert.equal(a[`${PREFIX}/public-ip`], h.underlayIp, JSON.stringify(a));
          assert.equal(a[`${PREFIX}/backend-type`], kind);
          assert.equal(a[`${PREFIX}/kube-subnet-manager`], 'true');
          const data = JSON.parse(a[`${PREFIX}/backend-data`] ?? 'null') as Record<string, unknown>;
          if (kind === 'vxlan') assert.match(String(data['VtepMAC']), /^[0-9a-f]{2}(:[0-9a-f]{2}){5}$/);
          assert.equal(a['test.rudder/created-by'], 'kube.test', 'the annotations others set are kept');
        }
        // `rudder leases -kube-subnet-mgr` shows the same table from the Nodes.
        const r = await c.hosts[0]!.exec([c.rudderBin, 'leases', '-kube-subnet-mgr', `-kubeconfig-file=${api.kubeconfigFile}`], { env: c.rudderEnv });
        const rows = r.stdout.trim().split('\n').slice(1).map((l) => l.trim().split(/\s+/));
        assert.deepEqual(
          rows.map((x) => `${x[0]} ${x[1]} ${x[2]}`),
          c.hosts.map((h) => `${podCIDR(h.index)} ${h.underlayIp} ${kind}`),
          r.stdout + r.stderr,
        );
      });

      if (kind === 'host-gw') {
        it('the manifest is accepted by the real API server (everything created, the DaemonSet stored)', async () => {
          const objs = parseYamlDocuments(fs.readFileSync(MANIFEST, 'utf8')) as Array<{ kind: string; metadata: { name: string; namespace?: string } }>;
          const paths: Record<string, string> = {
            Namespace: '/api/v1/namespaces',
            ServiceAccount: '/api/v1/namespaces/NS/serviceaccounts',
            ClusterRole: '/apis/rbac.authorization.k8s.io/v1/clusterroles',
            ClusterRoleBinding: '/apis/rbac.authorization.k8s.io/v1/clusterrolebindings',
            ConfigMap: '/api/v1/namespaces/NS/configmaps',
            DaemonSet: '/apis/apps/v1/namespaces/NS/daemonsets',
          };
          for (const o of objs) {
            const p = paths[o.kind];
            assert.ok(p, `a path for ${o.kind}`);
            const r = await api.request('POST', p.replace('NS', o.metadata.namespace ?? ''), o);
            assert.equal(r.status, 201, `${o.kind} ${o.metadata.name}: ${r.error ?? r.body ?? ''}`);
          }
          const ds = await api.call<{ spec: { template: { spec: { hostNetwork?: boolean } } } }>('GET', '/apis/apps/v1/namespaces/kube-rudder/daemonsets/rudder');
          assert.equal(ds.spec.template.spec.hostNetwork, true);
        });

        it('a pod attached by the real CNI plugins from the conflist Rudder wrote reaches the other pods', { skip: skipUnlessPlugins }, async () => {
          // A new node with no harness bridge: its pods come from `rudder cni-config` and the plugins only.
          const h4 = await c.addHost();
          await api.createNode(h4.name, podCIDR(h4.index));
          const argv = ['env', `NODE_NAME=${h4.name}`, ...h4.rudderArgv(['-kube-subnet-mgr', `-kubeconfig-file=${api.kubeconfigFile}`, `-net-config-path=${netConf}`, '-iface=eth0'])];
          h4.rudder = await h4.ns.spawn(argv, { logFile: h4.logFile, label: `rudder ${h4.name}`, env: c.rudderEnv });
          await h4.waitSubnetFile();
          const outDir = path.join(h4.dir, 'cni');
          await h4.exec([c.rudderBin, 'cni-config', '--out', outDir, `-subnet-file=${h4.subnetFile}`, '-ipam-data-dir', path.join(h4.dir, 'ipam')], { env: c.rudderEnv });
          const list = JSON.parse(fs.readFileSync(path.join(outDir, '10-rudder.conflist'), 'utf8')) as ConfList;
          const ns = await Netns.create(c.tag.name('cp4'), c.cleanup);
          await c.quietNamespace(ns);
          const result = await new CniRuntime(h4.ns).add(list, { containerId: `rudder-kube-e2e-${h4.name}`, netnsPath: `/var/run/netns/${ns.name}`, ifName: 'eth0' });
          const ip = result.ips?.[0]?.address.split('/')[0];
          assert.ok(ip?.startsWith(`10.${octet}.${h4.index}.`), `an address of ${podCIDR(h4.index)}: ${JSON.stringify(result)}`);
          for (const h of c.hosts.filter((x) => x.pod)) {
            await eventually(c, `container on ${h4.name} (${ip}) reaching the pod of ${h.name}`, async () => (await ping(ns, h.pod!.ip, { count: 1, replyWaitS: 1 })).received === 1);
            await eventually(c, `pod of ${h.name} reaching the container on ${h4.name} (${ip})`, async () => (await h.pod!.ping(ip!, { count: 1, replyWaitS: 1 })).received === 1);
          }
        });
      }

      if (kind !== 'vxlan') return;

      it('a deleted Node’s routes go on every other host', async () => {
        const [h1, h2, h3] = c.hosts as [Host, Host, Host];
        const gone = podCIDR(h3.index);
        for (const h of [h1, h2]) assert.ok((await rudderRoutes(h)).some((r) => r.dst === gone), `${h.name} routes ${gone} first`);
        await h3.stopRudder();
        await api.deleteNode(h3.name);
        for (const h of [h1, h2]) await eventually(c, `${h.name} drops the route to ${gone}`, async () => !(await rudderRoutes(h)).some((r) => r.dst === gone));
      });

      it('a new Node joins and is reached by everyone', async () => {
        const h4 = await c.addHost();
        await api.createNode(h4.name, podCIDR(h4.index));
        await up(h4);
        const live = c.hosts.filter((h) => h.rudder?.running);
        for (const h of live) if (h !== h4) {
          await podReaches(c, h, h4);
          await podReaches(c, h4, h);
        }
      });

      it('the API server stopped: no packet lost; restarted: rudder catches up', async () => {
        const [h1, h2] = c.hosts as [Host, Host];
        const src = h1.pod!;
        const dst = h2.pod!;
        await api.stop();
        const p = await src.ping(dst.ip, { count: 150, intervalS: 0.2, replyWaitS: 2 }); // 30 s
        assert.equal(p.received, p.transmitted, `pod ${src.ip} → ${dst.ip} with the API server down: ${p.received}/${p.transmitted}`);
        for (const h of c.hosts.filter((x) => x.rudder?.running)) assert.ok(h.rudder?.running, `${h.name} rudder still runs`);
        await api.restart();
        // Caught up: a Node deleted after the restart is seen (the watch came back).
        const h4 = c.hosts.find((h) => h.index === 4)!;
        const gone = podCIDR(4);
        await sleep(1000);
        await h4.stopRudder();
        await api.deleteNode(h4.name);
        await eventually(c, `${h1.name} drops the route to ${gone} after the API server came back`, async () => !(await rudderRoutes(h1)).some((r) => r.dst === gone));
        await podReaches(c, h1, h2);
      });

      it('a watch expired by compaction (410 from the real server) is recovered by a re-list, without spurious removals', async (t) => {
        const [h1, h2] = c.hosts as [Host, Host];
        // Watches served by etcd itself: a watch from a compacted resourceVersion is answered 410.
        await api.restart({ watchCache: false });
        // h1's watch ends after 3 s (the server's end, as after timeoutSeconds) and is resumed from the last resourceVersion.
        await h1.stopRudder();
        await start(h1, ['RUDDER_KUBE_WATCH_TIMEOUT=3']);
        // Two Nodes without a daemon, annotated as another node's Rudder would: one to delete, one to move.
        const fake = (name: string, i: number, ip: string): Promise<unknown> =>
          api.createNode(name, podCIDR(i), {
            [`${PREFIX}/public-ip`]: ip,
            [`${PREFIX}/backend-type`]: 'vxlan',
            [`${PREFIX}/backend-data`]: JSON.stringify({ VtepMAC: `0a:52:00:00:00:${i.toString(16)}` }),
            [`${PREFIX}/kube-subnet-manager`]: 'true',
          });
        const [gone, moved, kept] = [podCIDR(200), podCIDR(201), podCIDR(h2.index)];
        await fake('rk-gone', 200, '198.19.0.200');
        await fake('rk-moved', 201, '198.19.0.201');
        await eventually(c, `${h1.name} routes ${gone}, ${moved} and ${kept}`, async () => {
          const dsts = (await rudderRoutes(h1)).map((r) => r.dst);
          return [gone, moved, kept].every((d) => dsts.includes(d));
        });
        await sleep(1500); // the watch events were read
        const logFrom = fs.statSync(h1.logFile).size;
        // h1 cut off from the API server (both ways, in h1's namespace): the server ends h1's watch, the end is not delivered.
        const cut = path.join(c.dir, 'cut-api.nft');
        fs.writeFileSync(
          cut,
          `table ip rudder_test_cut {\n  chain in { type filter hook input priority 0; ip saddr ${ETCD_IP} drop; }\n  chain out { type filter hook output priority 0; ip daddr ${ETCD_IP} drop; }\n}\n`,
        );
        await h1.exec(['nft', '-f', cut]);
        let h5: Host | undefined;
        try {
          await sleep(5000); // > the 3 s watch timeout
          await api.deleteNode('rk-gone');
          await api.annotateNode('rk-moved', { [`${PREFIX}/public-ip`]: '198.19.0.202' });
          h5 = await c.addHost();
          await api.createNode(h5.name, podCIDR(h5.index));
          await up(h5);
          const st = JSON.parse((await c.etcdctl(['endpoint', 'status', '-w', 'json'])).stdout) as { Status: { header: { revision: number } } }[];
          await c.etcdctl(['compact', String(Math.max(...st.map((x) => x.Status.header.revision)))]);
        } finally {
          await h1.exec(['nft', 'delete', 'table', 'ip', 'rudder_test_cut']);
        }
        const newcomer = h5;
        const since = (): string => fs.readFileSync(h1.logFile, 'utf8').slice(logFrom);
        const took = /^.*lease watch interrupted; listing again reason=.*(410 Gone|: 410 ).*$/m;
        await eventually(c, `${h1.name} logs the 410 and lists again`, async () => took.test(since()));
        await eventually(c, `${h1.name} routes exactly the Nodes that exist`, async () => {
          const dsts = (await rudderRoutes(h1)).map((r) => r.dst);
          return !dsts.includes(gone) && [moved, kept, podCIDR(newcomer.index)].every((d) => dsts.includes(d));
        });
        const dev = (await rudderRoutes(h1)).find((r) => r.dst === moved)?.dev ?? '';
        await eventually(c, `${h1.name} sends ${moved} to its new public IP`, async () => (await fdb(h1, dev)).some((f) => f.mac === '0a:52:00:00:00:c9' && f.dst === '198.19.0.202'));
        await podReaches(c, h1, newcomer);
        await podReaches(c, newcomer, h1);
        await podReaches(c, h1, h2);
        const lines = since().split('\n').filter((l) => /peer lease|lease watch/.test(l));
        for (const l of lines) t.diagnostic(`${h1.name}: ${l}`);
        const removed = lines.filter((l) => l.includes('peer lease removed'));
        const goneAt = lines.findIndex((l) => l.includes(`peer lease removed subnet=${gone}`));
        assert.ok(goneAt > lines.findIndex((l) => took.test(l)), `the deleted Node's lease removed after the 410, by the re-list:\n${lines.join('\n')}`);
        assert.ok(!removed.some((l) => l.includes(`subnet=${kept}`)), `no removal of the unchanged ${h2.name} (${kept}):\n${removed.join('\n')}`);
      });
    });
  }
});

/**
 * The real flanneld in kube mode beside Rudder nodes, all under flannel's
 * annotation prefix: one vxlan network. flanneld misses Nodes that change
 * while it starts (its list and watch leave a window), so it starts first
 * and the Rudder nodes after a pause.
 */
describe('kubernetes mode beside flanneld (vxlan, flannel.alpha.coreos.com)', { skip: skipUnlessRoot || skipUnlessEtcd || skipUnlessAnchor('kube-apiserver') || skipUnlessFlanneld }, () => {
  const network = '10.66.0.0/16';
  const podCIDR = (i: number): string => `10.66.${i}.0/24`;
  const FLANNEL_PREFIX = 'flannel.alpha.coreos.com';
  let c: Cluster;
  let api: KubeApiServer;
  let netConf: string;
  let flannel: Flanneld;

  before(async () => {
    const bin = await flanneldBinary();
    c = await createCluster({ hosts: 3, prefix: 'rf' });
    api = await KubeApiServer.start(c);
    netConf = path.join(c.dir, 'net-conf.json');
    fs.writeFileSync(netConf, JSON.stringify({ Network: network, Backend: { Type: 'vxlan' } }));
    for (const h of c.hosts) await api.createNode(h.name, podCIDR(h.index));
    const h2 = c.hosts[1]!;
    flannel = new (class extends Flanneld {
      override argv(): string[] {
        return ['env', `NODE_NAME=${h2.name}`, bin, '-kube-subnet-mgr', `-kubeconfig-file=${api.kubeconfigFile}`, `-net-config-path=${netConf}`, '-iface=eth0', `-subnet-file=${this.subnetFile}`];
      }
    })(c, h2, bin);
  });
  after(async () => {
    for (const h of c?.hosts ?? []) await h.stopRudder().catch(() => undefined);
    await flannel?.stop().catch(() => undefined);
    await api?.stop();
    await c?.teardown();
  });

  it('flannel nodes and Rudder nodes reach each other', async () => {
    const [h1, h2, h3] = c.hosts as [Host, Host, Host];
    const fenv = await flannel.up();
    assert.equal(fenv.subnet, `10.66.${h2.index}.1/24`);
    await sleep(2000);
    for (const h of [h1, h3]) {
      const argv = ['env', `NODE_NAME=${h.name}`, ...h.rudderArgv(['-kube-subnet-mgr', `-kubeconfig-file=${api.kubeconfigFile}`, `-net-config-path=${netConf}`, '-iface=eth0', `-kube-annotation-prefix=${FLANNEL_PREFIX}`])];
      h.rudder = await h.ns.spawn(argv, { logFile: h.logFile, label: `rudder ${h.name}`, env: c.rudderEnv });
      await h.setupPod(await h.waitSubnetFile());
    }
    for (const h of [h1, h3]) {
      const a = (await api.getNode(h.name)).metadata.annotations ?? {};
      assert.equal(a[`${FLANNEL_PREFIX}/public-ip`], h.underlayIp, JSON.stringify(a));
      assert.equal(a[`${FLANNEL_PREFIX}/kube-subnet-manager`], 'true');
    }
    await fullMesh(c, [h1, h2, h3]);
  });
});
