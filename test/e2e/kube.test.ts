/**
 * Kubernetes mode against the real kube-apiserver (v1.20.2 from the
 * anchors) on the topology's real etcd, run in the etcd namespace. The test
 * plays kube-controller-manager: it creates the Node objects with their
 * podCIDRs (and one annotation each, as flanneld needs). One rudder per host
 * namespace runs with -kube-subnet-mgr, a kubeconfig with a bearer token and
 * NODE_NAME; each host gets a bridge and a pod from the subnet file Rudder
 * wrote.
 *
 * One cluster and one API server hold three networks side by side: vxlan,
 * host-gw and udp, three hosts each, each network its own net-conf file,
 * Network and annotation prefix (vxlan the default `rudder.io`), so a
 * daemon routes only its own network's Nodes and sees the others' as
 * invalid entries. Each scenario runs for the three at once, one subtest
 * per backend: every pod reaches every other, the annotations and
 * NetworkUnavailable=False are on the Nodes, a deleted Node's routes go
 * everywhere, a new Node is reached, and one 30 s API-server outage that
 * all three networks run through loses no packet, is caught up with
 * afterwards and is counted in rudder_kube_* (not rudder_etcd_*). A kubeconfig
 * `exec` plugin is checked against the real server's 401s; upstream flanneld
 * shares a fourth (vxlan) network with Rudder nodes under flannel's
 * prefix. For vxlan also
 * a real `410 Gone` is recovered: with the API server's watch cache off
 * (watches served by etcd), a host cut off while the server ends its watch
 * and Nodes change and etcd is compacted resumes that watch from a compacted
 * resourceVersion, is answered 410, lists again and diffs.
 *
 * Waits have generous give-ups; nothing asserts speed.
 */
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { after, before, describe, it, type TestContext } from 'node:test';
import { ETCD_IP, Netns, createCluster, ping, sleep, type Cluster, type Host, type SubnetEnv } from '../../src/topology';
import { CNI_PATH, CniRuntime, type ConfList } from '../helpers/cni-runtime';
import { skipUnlessAnchor } from '../helpers/anchors';
import { skipUnlessEtcd, skipUnlessRoot } from '../helpers/env';
import { fetchIn } from '../helpers/fetch-in-ns';
import { eventually, fdb, fullMesh, podReaches, rudderRoutes } from '../helpers/kernel-backends-net';
import { Flanneld, flanneldBinary, skipUnlessFlanneld } from '../helpers/flanneld';
import { KubeApiServer } from '../helpers/kube-apiserver';
import { parseMetrics } from '../helpers/prometheus';
import { parseYamlDocuments } from '../../src/subnet/kube/yaml';

type Kind = 'vxlan' | 'host-gw' | 'udp';
const KINDS: Kind[] = ['vxlan', 'host-gw', 'udp'];
const MTU: Record<Kind, number> = { udp: 1472, vxlan: 1450, 'host-gw': 1500 };
/** Each network's annotation prefix; vxlan runs with the default (no flag). */
const PREFIXES: Record<Kind, string> = { vxlan: 'rudder.io', 'host-gw': 'host-gw.rudder.io', udp: 'udp.rudder.io' };
const HOSTS_PER_KIND = 3;
const METRICS_PORT = 9478;
const skipUnlessPlugins: string | false = ['bridge', 'host-local', 'portmap'].every((p) => fs.existsSync(path.join(CNI_PATH, p))) ? false : `needs the CNI plugins in ${CNI_PATH} (Debian containernetworking-plugins)`;
const MANIFEST = path.resolve(__dirname, '..', '..', '..', 'packaging', 'kubernetes', 'rudder.yaml');
const CLIENT_JS = path.resolve(__dirname, '..', '..', 'src', 'subnet', 'kube', 'client.js');

/** One backend's network in the shared cluster. */
interface Net {
  readonly kind: Kind;
  readonly network: string;
  readonly prefix: string;
  podCIDR(i: number): string;
  netConf: string;
  /** Its three hosts (pods from the harness), the first serving -metrics-addr. */
  hosts: Host[];
  /** The host that joined later (the "new Node" scenario). */
  joined?: Host;
}

describe('kubernetes mode (real kube-apiserver; vxlan, host-gw and udp side by side)', { skip: skipUnlessRoot || skipUnlessEtcd || skipUnlessAnchor('kube-apiserver'), concurrency: 1 }, () => {
  let c: Cluster;
  let api: KubeApiServer;
  const nets: Net[] = KINDS.map((kind, n) => ({
    kind,
    network: `10.${60 + n}.0.0/16`,
    prefix: PREFIXES[kind],
    podCIDR: (i: number): string => `10.${60 + n}.${i}.0/24`,
    netConf: '',
    hosts: [],
  }));
  const net = (kind: Kind): Net => nets.find((x) => x.kind === kind)!;

  /** The scenario for every network at once, one subtest each (a failure names its backend). */
  async function eachNet(t: TestContext, fn: (g: Net, t: TestContext) => Promise<void>): Promise<void> {
    await Promise.all(nets.map((g) => t.test(g.kind, (st) => fn(g, st))));
  }

  /** The daemon's flags for a host of `g`. */
  function rudderFlags(g: Net, h: Host): string[] {
    return [
      '-kube-subnet-mgr',
      `-kubeconfig-file=${api.kubeconfigFile}`,
      `-net-config-path=${g.netConf}`,
      '-iface=eth0',
      ...(g.prefix === 'rudder.io' ? [] : [`-kube-annotation-prefix=${g.prefix}`]),
      ...(h === g.hosts[0] ? [`-metrics-addr=${h.underlayIp}:${METRICS_PORT}`] : []),
    ];
  }

  /** Starts rudder in kube mode on a host (NODE_NAME = the host's name; `env`: more VAR=value). */
  async function start(g: Net, h: Host, env: string[] = []): Promise<SubnetEnv> {
    const argv = ['env', `NODE_NAME=${h.name}`, ...env, ...h.rudderArgv(rudderFlags(g, h))];
    fs.appendFileSync(h.logFile, `--- harness: starting ${argv.join(' ')} in ${h.ns.name} at ${new Date().toISOString()}\n`);
    h.rudder = await h.ns.spawn(argv, { logFile: h.logFile, label: `rudder ${h.name}`, env: c.rudderEnv });
    return h.waitSubnetFile();
  }

  /** start(), then the host's pod. */
  async function up(g: Net, h: Host): Promise<SubnetEnv> {
    const env = await start(g, h);
    await h.setupPod(env);
    return env;
  }

  /**
   * `h` no longer routes `subnet` (whose pod was `podIp`): for vxlan and
   * host-gw its kernel route is gone; udp routes the whole Network to its
   * TUN, so there the sender's own data plane answers net-unreachable.
   */
  async function routeGone(g: Net, h: Host, subnet: string, podIp: string): Promise<boolean> {
    if (g.kind !== 'udp') return !(await rudderRoutes(h)).some((r) => r.dst === subnet);
    const p = await h.pod!.ping(podIp, { count: 1, replyWaitS: 1 });
    return p.errors.some((e) => /Destination Net Unreachable/.test(e));
  }

  /** The metrics of `g`'s first host, scraped from the etcd namespace. */
  async function scrape(g: Net): Promise<Map<string, number>> {
    const h = g.hosts[0]!;
    const r = await fetchIn(api.ns, `http://${h.underlayIp}:${METRICS_PORT}/metrics`);
    assert.equal(r.status, 200, `GET /metrics of ${h.name}: ${JSON.stringify(r)}`);
    return parseMetrics(r.body ?? '');
  }
  const sum = (m: Map<string, number>, name: string, labels: RegExp = /.*/): number =>
    [...m].filter(([k]) => (k === name || k.startsWith(`${name}{`)) && labels.test(k)).reduce((a, [, v]) => a + v, 0);

  before(async () => {
    c = await createCluster({ hosts: HOSTS_PER_KIND * KINDS.length, prefix: 'rk' });
    api = await KubeApiServer.start(c);
    for (const [n, g] of nets.entries()) {
      g.hosts = c.hosts.slice(n * HOSTS_PER_KIND, (n + 1) * HOSTS_PER_KIND);
      g.netConf = path.join(c.dir, `net-conf-${g.kind}.json`);
      fs.writeFileSync(g.netConf, JSON.stringify({ Network: g.network, Backend: { Type: g.kind } }));
    }
  });
  after(async () => {
    for (const h of c?.hosts ?? []) await h.stopRudder().catch(() => undefined);
    await api?.stop();
    await c?.teardown();
  });

  it('each host takes its Node’s podCIDR and every pod reaches every other', { concurrency: true }, async (t) => {
    await eachNet(t, async (g) => {
      for (const h of g.hosts) await api.createNode(h.name, g.podCIDR(h.index));
      await Promise.all(
        g.hosts.map(async (h) => {
          const env = await up(g, h);
          assert.equal(env.network, g.network);
          assert.equal(env.subnet, g.podCIDR(h.index).replace(/\.0\/24$/, '.1/24'), `${h.name} subnet from its podCIDR`);
          assert.equal(env.mtu, MTU[g.kind]);
        }),
      );
      await fullMesh(c, g.hosts);
    });
  });

  it('annotations and NetworkUnavailable=False are on every Node', { concurrency: true }, async (t) => {
    await eachNet(t, async (g) => {
      for (const h of g.hosts) {
        await eventually(c, `Node ${h.name} NetworkUnavailable=False`, async () => {
          const node = await api.getNode(h.name);
          return (node.status?.conditions ?? []).some((x) => x.type === 'NetworkUnavailable' && x.status === 'False' && x.reason === 'RudderIsUp');
        });
        const a = (await api.getNode(h.name)).metadata.annotations ?? {};
        assert.equal(a[`${g.prefix}/public-ip`], h.underlayIp, JSON.stringify(a));
        assert.equal(a[`${g.prefix}/backend-type`], g.kind);
        assert.equal(a[`${g.prefix}/kube-subnet-manager`], 'true');
        const data = JSON.parse(a[`${g.prefix}/backend-data`] ?? 'null') as Record<string, unknown>;
        if (g.kind === 'vxlan') assert.match(String(data['VtepMAC']), /^[0-9a-f]{2}(:[0-9a-f]{2}){5}$/);
        assert.equal(a['test.rudder/created-by'], 'kube.test', 'the annotations others set are kept');
      }
      // `rudder leases -kube-subnet-mgr` shows the same table from the Nodes (those of its prefix).
      const r = await g.hosts[0]!.exec([c.rudderBin, 'leases', '-kube-subnet-mgr', `-kubeconfig-file=${api.kubeconfigFile}`, `-kube-annotation-prefix=${g.prefix}`], { env: c.rudderEnv });
      const rows = r.stdout.trim().split('\n').slice(1).map((l) => l.trim().split(/\s+/));
      assert.deepEqual(
        rows.map((x) => `${x[0]} ${x[1]} ${x[2]}`),
        g.hosts.map((h) => `${g.podCIDR(h.index)} ${h.underlayIp} ${g.kind}`),
        r.stdout + r.stderr,
      );
    });
  });

  it('a kubeconfig exec plugin gives the token: run again after a 401 and when it expires', async () => {
    const g = net('vxlan');
    const h = g.hosts[0]!;
    const dir = path.join(c.dir, 'exec-plugin');
    fs.mkdirSync(dir, { recursive: true });
    const count = path.join(dir, 'runs');
    // Its first answer is a token the server refuses (401); later ones the real token, valid for 10 s.
    fs.writeFileSync(
      path.join(dir, 'plugin.sh'),
      `#!/bin/sh
n=$(( $(cat "$RUNS" 2>/dev/null || echo 0) + 1 )); echo $n > "$RUNS"
printf '%s' "$KUBERNETES_EXEC_INFO" > "$RUNS.info"
tok="$GOOD"; [ "$n" = 1 ] && tok=not-a-token
exp=$(date -u -d "+10 sec" +%Y-%m-%dT%H:%M:%SZ)
printf '{"apiVersion":"client.authentication.k8s.io/v1beta1","kind":"ExecCredential","status":{"token":"%s","expirationTimestamp":"%s"}}\\n' "$tok" "$exp"
`,
      { mode: 0o755 },
    );
    const kubeconfig = path.join(api.dir, 'kubeconfig-exec');
    fs.writeFileSync(
      kubeconfig,
      fs.readFileSync(api.kubeconfigFile, 'utf8').replace(
        / {4}token: .*\n/,
        `    exec:
      apiVersion: client.authentication.k8s.io/v1beta1
      command: ../exec-plugin/plugin.sh
      env:
      - name: RUNS
        value: ${count}
      - name: GOOD
        value: ${api.token}
`,
      ),
    );
    const runs = (): number => Number(fs.readFileSync(count, 'utf8').trim());
    const r = await h.exec([c.rudderBin, 'leases', '-kube-subnet-mgr', `-kubeconfig-file=${kubeconfig}`], { env: c.rudderEnv });
    assert.match(r.stdout, new RegExp(`^${g.podCIDR(h.index).replace(/\./g, '\\.')} +${h.underlayIp} `, 'm'), r.stdout + r.stderr);
    assert.equal(runs(), 2, 'the plugin ran again after the 401');
    assert.equal((JSON.parse(fs.readFileSync(`${count}.info`, 'utf8')) as { kind?: string }).kind, 'ExecCredential');
    // One client: the token is kept while valid (10 s, used until 5 s before), then the plugin runs again.
    const script = `
const { KubeClient, readKubeconfig } = require(${JSON.stringify(CLIENT_JS)});
const fs = require('node:fs');
const runs = () => Number(fs.readFileSync(${JSON.stringify(count)}, 'utf8'));
(async () => {
  const k = new KubeClient(readKubeconfig(${JSON.stringify(kubeconfig)}));
  const out = [];
  await k.request('GET', '/api/v1/nodes'); out.push(runs());
  await k.request('GET', '/api/v1/nodes'); out.push(runs());
  await new Promise((r) => setTimeout(r, 5500));
  await k.request('GET', '/api/v1/nodes'); out.push(runs());
  k.close();
  process.stdout.write(JSON.stringify(out));
})().catch((e) => { process.stderr.write(String(e && e.stack || e)); process.exit(1); });
`;
    const s = await h.exec([process.execPath, '-e', script], { env: c.rudderEnv });
    assert.deepEqual(JSON.parse(s.stdout), [3, 3, 4], s.stdout + s.stderr);
  });

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

  it('a pod attached by the real CNI plugins from the conflist Rudder wrote reaches the other pods (host-gw)', { skip: skipUnlessPlugins }, async () => {
    const g = net('host-gw');
    // A new node with no harness bridge: its pods come from `rudder cni-config` and the plugins only.
    const h4 = await c.addHost();
    await api.createNode(h4.name, g.podCIDR(h4.index));
    await start(g, h4);
    const outDir = path.join(h4.dir, 'cni');
    await h4.exec([c.rudderBin, 'cni-config', '--out', outDir, `-subnet-file=${h4.subnetFile}`, '-ipam-data-dir', path.join(h4.dir, 'ipam')], { env: c.rudderEnv });
    const list = JSON.parse(fs.readFileSync(path.join(outDir, '10-rudder.conflist'), 'utf8')) as ConfList;
    const ns = await Netns.create(c.tag.name('cp4'), c.cleanup);
    await c.quietNamespace(ns);
    const result = await new CniRuntime(h4.ns).add(list, { containerId: `rudder-kube-e2e-${h4.name}`, netnsPath: `/var/run/netns/${ns.name}`, ifName: 'eth0' });
    const ip = result.ips?.[0]?.address.split('/')[0];
    const sub = g.podCIDR(h4.index);
    assert.ok(ip?.startsWith(sub.replace(/0\/24$/, '')), `an address of ${sub}: ${JSON.stringify(result)}`);
    for (const h of g.hosts) {
      await eventually(c, `container on ${h4.name} (${ip}) reaching the pod of ${h.name}`, async () => (await ping(ns, h.pod!.ip, { count: 1, replyWaitS: 1 })).received === 1);
      await eventually(c, `pod of ${h.name} reaching the container on ${h4.name} (${ip})`, async () => (await h.pod!.ping(ip!, { count: 1, replyWaitS: 1 })).received === 1);
    }
  });

  /**
   * The real flanneld in kube mode beside Rudder nodes, all under flannel's
   * annotation prefix: a fourth network (vxlan) on three more hosts of the
   * cluster. flanneld misses Nodes that change while it starts (its list and
   * watch leave a window), so it starts first and the Rudder nodes after a
   * pause. All three are stopped afterwards.
   */
  it('flanneld nodes and Rudder nodes under flannel.alpha.coreos.com reach each other (vxlan)', { skip: skipUnlessFlanneld }, async () => {
    const FLANNEL_PREFIX = 'flannel.alpha.coreos.com';
    const podCIDR = (i: number): string => `10.66.${i}.0/24`;
    const bin = await flanneldBinary();
    const netConf = path.join(c.dir, 'net-conf-flannel.json');
    fs.writeFileSync(netConf, JSON.stringify({ Network: '10.66.0.0/16', Backend: { Type: 'vxlan' } }));
    const hosts: Host[] = [];
    for (let i = 0; i < 3; i++) hosts.push(await c.addHost());
    const [h1, h2, h3] = hosts as [Host, Host, Host];
    for (const h of hosts) await api.createNode(h.name, podCIDR(h.index));
    const flannel = new (class extends Flanneld {
      override argv(): string[] {
        return ['env', `NODE_NAME=${h2.name}`, bin, '-kube-subnet-mgr', `-kubeconfig-file=${api.kubeconfigFile}`, `-net-config-path=${netConf}`, '-iface=eth0', `-subnet-file=${this.subnetFile}`];
      }
    })(c, h2, bin);
    try {
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
    } finally {
      await flannel.stop().catch(() => undefined);
      for (const h of [h1, h3]) await h.stopRudder().catch(() => undefined);
    }
  });

  it('a deleted Node’s routes go on every other host', { concurrency: true }, async (t) => {
    await eachNet(t, async (g) => {
      const [h1, h2, h3] = g.hosts as [Host, Host, Host];
      const gone = g.podCIDR(h3.index);
      if (g.kind !== 'udp') for (const h of [h1, h2]) assert.ok((await rudderRoutes(h)).some((r) => r.dst === gone), `${h.name} routes ${gone} first`);
      await h3.stopRudder();
      await api.deleteNode(h3.name);
      for (const h of [h1, h2]) await eventually(c, `${h.name} drops the route to ${gone}`, () => routeGone(g, h, gone, h3.pod!.ip));
    });
  });

  it('a new Node joins and is reached by everyone', { concurrency: true }, async (t) => {
    for (const g of nets) {
      g.joined = await c.addHost(); // one at a time: addHost picks the next free index
      await api.createNode(g.joined.name, g.podCIDR(g.joined.index));
    }
    await eachNet(t, async (g) => {
      const h4 = g.joined!;
      await up(g, h4);
      for (const h of g.hosts.filter((x) => x.rudder?.running)) {
        await podReaches(c, h, h4);
        await podReaches(c, h4, h);
      }
    });
  });

  it('the API server stopped for 30 s: no packet lost on any network; restarted: rudder catches up and counted the outage as Kubernetes API failures', { concurrency: true }, async (t) => {
    const before = new Map(await Promise.all(nets.map(async (g) => [g.kind, await scrape(g)] as const)));
    await api.stop();
    await eachNet(t, async (g) => {
      const [h1, h2] = g.hosts as [Host, Host];
      const p = await h1.pod!.ping(h2.pod!.ip, { count: 150, intervalS: 0.2, replyWaitS: 2 }); // 30 s
      assert.equal(p.received, p.transmitted, `pod ${h1.pod!.ip} → ${h2.pod!.ip} with the API server down: ${p.received}/${p.transmitted}`);
    });
    for (const g of nets) for (const h of [...g.hosts.slice(0, 2), g.joined!]) assert.ok(h.rudder?.running, `${h.name} rudder still runs`);
    // Back with its watch cache off (watches served by etcd itself), as the 410 test below needs: one restart for both.
    await api.restart({ watchCache: false });
    await eachNet(t, async (g) => {
      // Caught up: a Node deleted after the restart is seen (the watch came back).
      const [h1, h2] = g.hosts as [Host, Host];
      const h4 = g.joined!;
      const gone = g.podCIDR(h4.index);
      await sleep(1000);
      await h4.stopRudder();
      await api.deleteNode(h4.name);
      await eventually(c, `${h1.name} drops the route to ${gone} after the API server came back`, () => routeGone(g, h1, gone, h4.pod!.ip));
      await podReaches(c, h1, h2);
      // Counted as Kubernetes API failures: requests without an answer, a broken watch, its recovery; none as etcd's.
      const was = before.get(g.kind)!;
      let now = await scrape(g);
      await eventually(c, `${g.hosts[0]!.name} counts the watch re-established`, async () => {
        now = await scrape(g);
        return sum(now, 'rudder_kube_reconnects_total', /component="watch"/) > sum(was, 'rudder_kube_reconnects_total', /component="watch"/);
      });
      const diff = (name: string, labels?: RegExp): number => sum(now, name, labels) - sum(was, name, labels);
      t.diagnostic(`${g.kind}: ${[...now].filter(([k]) => k.startsWith('rudder_kube_')).map(([k, v]) => `${k} ${v}`).join('; ')}`);
      assert.ok(diff('rudder_kube_api_requests_total', /code="none"/) > 0, 'requests without an answer counted');
      assert.ok(diff('rudder_kube_errors_total', /component="watch"/) > 0, 'failed Node lists counted');
      assert.ok(diff('rudder_kube_watch_restarts_total', /reason="broken"/) > 0, 'the broken watch counted');
      assert.ok(sum(now, 'rudder_kube_api_requests_total', /verb="list",code="200"/) >= 2, 'the list after the outage counted');
      assert.equal(sum(now, 'rudder_etcd_errors_total'), 0, 'no etcd in Kubernetes mode: nothing counted as etcd errors');
      assert.equal(sum(now, 'rudder_etcd_reconnects_total'), 0);
    });
  });

  it('a watch expired by compaction (410 from the real server) is recovered by a re-list, without spurious removals (vxlan)', async (t) => {
    const g = net('vxlan');
    const PREFIX = g.prefix;
    const [h1, h2] = g.hosts as [Host, Host];
    // The API server runs with its watch cache off since the outage test: a watch from a compacted resourceVersion is answered 410.
    assert.equal(api.watchCache, false);
    // h1's watch ends after 3 s (the server's end, as after timeoutSeconds) and is resumed from the last resourceVersion.
    await h1.stopRudder();
    await start(g, h1, ['RUDDER_KUBE_WATCH_TIMEOUT=3']);
    // Two Nodes without a daemon, annotated as another node's Rudder would: one to delete, one to move.
    const fake = (name: string, i: number, ip: string): Promise<unknown> =>
      api.createNode(name, g.podCIDR(i), {
        [`${PREFIX}/public-ip`]: ip,
        [`${PREFIX}/backend-type`]: 'vxlan',
        [`${PREFIX}/backend-data`]: JSON.stringify({ VtepMAC: `0a:52:00:00:00:${i.toString(16)}` }),
        [`${PREFIX}/kube-subnet-manager`]: 'true',
      });
    const [gone, moved, kept] = [g.podCIDR(200), g.podCIDR(201), g.podCIDR(h2.index)];
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
      await api.createNode(h5.name, g.podCIDR(h5.index));
      await up(g, h5);
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
      return !dsts.includes(gone) && [moved, kept, g.podCIDR(newcomer.index)].every((d) => dsts.includes(d));
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
    const m = await scrape(g);
    assert.ok(sum(m, 'rudder_kube_watch_restarts_total', /reason="gone"/) >= 1, `the 410 counted: ${[...m].filter(([k]) => k.includes('watch_restarts')).join('; ')}`);
    assert.ok(sum(m, 'rudder_kube_watch_restarts_total', /reason="timeout"/) >= 1, 'the watch the server ended (3 s) counted');
  });
});
