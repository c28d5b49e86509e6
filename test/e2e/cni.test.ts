/**
 * `rudder cni-config` with the real CNI plugins (Debian containernetworking-plugins),
 * invoked as a container runtime invokes them (test/helpers/cni-runtime.ts,
 * libcni's way of running a conflist), on two namespaced hosts running the
 * udp backend:
 *
 *   [h1: rudder, cni0 10.6.a.1/24] ---- udp ---- [h2: rudder, cni0 10.6.b.1/24]
 *          |                                             |
 *   [c1: eth0 10.6.a.x, by bridge+host-local]     [c2: eth0 10.6.b.y]
 *
 * The hosts are started without the harness's pod (no rbr0), so the lease's
 * .1 address lives on one bridge only: the CNI bridge. host-local's store is
 * in a temp dir (the conflist's ipam dataDir), so nothing is written to
 * /var/lib/cni; the plugins run inside the host namespaces (bridge, veths,
 * portmap's iptables rules are made there) and the "containers" are
 * namespaces of this run, all removed however the test ends.
 *
 * Tests run in order on shared state: ADD and traffic, portmap, a lease change
 * followed by -watch, then DEL of every attachment made.
 */
import assert from 'node:assert/strict';
import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { contains, formatIp, maskOf, parseCidr, parseIp } from '../../src/ip/ipv4';
import { DEFAULT_ETCD_PREFIX, Netns, createCluster, type Cluster, type Host, type ManagedProcess, type SubnetEnv } from '../../src/topology';
import { CNI_PATH, CniRuntime, type CniResult, type CniRuntimeConf, type ConfList } from '../helpers/cni-runtime';
import { skipUnlessEtcd, skipUnlessRoot } from '../helpers/env';
import { makeTempDir, removeDir } from '../../src/topology/util';
import { waitUntil } from '../helpers/wait';

const NETWORK = '10.6.0.0/16';
const CONFIG = { Network: NETWORK, SubnetMin: '10.6.1.0', Backend: { Type: 'udp' } };
/** Generous: only keeps a broken run from hanging (2 shared cores). */
const GIVE_UP_MS = 90_000;
const HOST_PORT = 8080;
const CONTAINER_PORT = 8000;

const skipUnlessPlugins: string | false = ['bridge', 'host-local', 'portmap'].every((p) => fs.existsSync(path.join(CNI_PATH, p)))
  ? false
  : `needs the CNI plugins in ${CNI_PATH} (Debian containernetworking-plugins; ./build installs it)`;

function leaseOf(env: SubnetEnv): { ip: string; prefix: number; cidr: string; key: string } {
  const c = parseCidr(env.subnet);
  assert.ok(c, `RUDDER_SUBNET=${env.subnet}`);
  const ip = formatIp((c.ip & maskOf(c.prefix)) >>> 0);
  return { ip, prefix: c.prefix, cidr: `${ip}/${c.prefix}`, key: `${DEFAULT_ETCD_PREFIX}/subnets/${ip}-${c.prefix}` };
}

type BridgeConf = { type: string; bridge: string; mtu: number; ipam: { dataDir?: string; ranges: Array<Array<{ subnet: string; gateway: string }>> } };

function bridgeOf(list: ConfList): BridgeConf {
  const b = list.plugins[0] as unknown as BridgeConf;
  assert.equal(b.type, 'bridge');
  return b;
}

/** One container attached through the conflist. */
interface Attachment {
  host: Host;
  list: ConfList;
  ns: Netns;
  rt: CniRuntimeConf;
  result: CniResult;
  /** Container address without length. */
  ip: string;
  deleted: boolean;
}

async function ipv4Addrs(ns: Netns, ifname: string): Promise<string[]> {
  const r = await ns.ip(['-j', '-4', 'addr', 'show', 'dev', ifname]);
  const links = JSON.parse(r.stdout) as Array<{ addr_info?: Array<{ local: string; prefixlen: number }> }>;
  return links.flatMap((l) => (l.addr_info ?? []).map((a) => `${a.local}/${a.prefixlen}`));
}

async function linkExists(ns: Netns, ifname: string): Promise<boolean> {
  return (await ns.ip(['link', 'show', 'dev', ifname], { allowFailure: true })).code === 0;
}

async function waitPing(from: Netns, fromName: string, to: string): Promise<void> {
  await waitUntil(
    async () => {
      const r = await from.exec(['ping', '-n', '-c', '2', '-i', '0.2', '-W', '1', to], { allowFailure: true });
      if (r.code === 0 && / 0% packet loss/.test(r.stdout)) return true;
      throw new Error(`${fromName} → ${to}: ${(r.stdout + r.stderr).trim()}`);
    },
    { giveUpMs: GIVE_UP_MS, intervalMs: 300, what: `ping ${fromName} → ${to}` },
  );
}

/** What a TCP client in `from` reads from `addr:port` (the listener answers with the peer address it sees). */
async function fetchLine(from: Netns, fromName: string, addr: string, port: number): Promise<string> {
  return waitUntil(
    async () => {
      const r = await from.exec(['socat', '-u', `TCP:${addr}:${port},connect-timeout=2`, 'STDOUT'], { allowFailure: true });
      const line = r.stdout.trim();
      if (r.code === 0 && line.startsWith('peer=')) return line;
      throw new Error(`${fromName} → ${addr}:${port}: exit ${r.code}: ${(r.stdout + r.stderr).trim()}`);
    },
    { giveUpMs: GIVE_UP_MS, intervalMs: 300, what: `a reply from ${addr}:${port} in ${fromName}` },
  );
}

describe('cni-config with the real CNI plugins (bridge, host-local, portmap) on two Rudder hosts', { skip: skipUnlessRoot || skipUnlessEtcd || skipUnlessPlugins }, () => {
  let c: Cluster;
  let dir: string;
  const attachments: Attachment[] = [];
  const listeners: ManagedProcess[] = [];
  let h1: Host;
  let h2: Host;

  before(async () => {
    dir = makeTempDir('rudder-cni-e2e-');
    c = await createCluster({ hosts: 2, giveUpMs: GIVE_UP_MS });
    await c.putConfig(CONFIG);
    h1 = c.host(1);
    h2 = c.host(2);
    // The daemon and its subnet file only: no harness bridge (rbr0) and pod.
    for (const h of [h1, h2]) await h.startRudder();
    await Promise.all([h1, h2].map((h) => h.waitSubnetFile()));
  });

  after(async () => {
    for (const l of listeners) await l.stop(2_000).catch(() => undefined);
    await c?.teardown();
    if (dir && process.env.RUDDER_KEEP_TMP !== '1') removeDir(dir);
  });

  /** `rudder cni-config --out DIR` in the host's namespace against its subnet file; the parsed conflist. */
  async function cniConfig(h: Host, outDir: string): Promise<{ list: ConfList; file: string; stderr: string }> {
    const r = await h.exec([c.rudderBin, 'cni-config', '--out', outDir, `-subnet-file=${h.subnetFile}`, '-ipam-data-dir', path.join(dir, `ipam-${h.name}`)], {
      env: c.rudderEnv,
    });
    const file = path.join(outDir, '10-rudder.conflist');
    return { list: JSON.parse(fs.readFileSync(file, 'utf8')) as ConfList, file, stderr: r.stderr };
  }

  /** A new container namespace on `h`, attached with ADD through `list`. */
  async function attach(h: Host, list: ConfList, role: string, capabilityArgs?: Record<string, unknown>): Promise<Attachment> {
    const ns = await Netns.create(c.tag.name(role), c.cleanup);
    await c.quietNamespace(ns);
    const rt: CniRuntimeConf = {
      containerId: `rudder-e2e-${crypto.randomBytes(8).toString('hex')}`,
      netnsPath: `/var/run/netns/${ns.name}`,
      ifName: 'eth0',
      ...(capabilityArgs ? { capabilityArgs } : {}),
    };
    const result = await new CniRuntime(h.ns).add(list, rt);
    const addr = result.ips?.[0]?.address;
    assert.ok(addr, `an IP in the ADD result: ${JSON.stringify(result)}`);
    const a: Attachment = { host: h, list, ns, rt, result, ip: addr.split('/')[0] as string, deleted: false };
    attachments.push(a);
    return a;
  }

  /** Checks an attachment against the host's current subnet file: address, gateway, route, MTU, bridge, IPAM store. */
  async function checkAttachment(a: Attachment): Promise<void> {
    const env = a.host.readSubnetFile() as SubnetEnv;
    const lease = leaseOf(env);
    const leaseCidr = parseCidr(lease.cidr, true);
    assert.ok(leaseCidr);
    const gw = env.subnet.split('/')[0] as string;
    const ip = parseIp(a.ip);
    assert.ok(ip !== null && contains(leaseCidr, ip), `${a.ip} lies in ${a.host.name}'s subnet ${lease.cidr}`);
    assert.notEqual(a.ip, gw, 'not the gateway');
    assert.notEqual(a.ip, lease.ip, 'not the network address');
    assert.equal(a.result.ips?.[0]?.address, `${a.ip}/${lease.prefix}`);
    assert.equal(a.result.ips?.[0]?.gateway, gw);
    // In the container: the address on eth0, the default route via the bridge, RUDDER_MTU.
    assert.deepEqual(await ipv4Addrs(a.ns, 'eth0'), [`${a.ip}/${lease.prefix}`]);
    const routes = (await a.ns.ip(['-4', 'route', 'show', 'default'])).stdout;
    assert.match(routes, new RegExp(`default via ${gw.replace(/\./g, '\\.')} dev eth0`), routes);
    const link = (JSON.parse((await a.ns.ip(['-j', 'link', 'show', 'dev', 'eth0'])).stdout) as Array<{ mtu: number }>)[0];
    assert.equal(link?.mtu, env.mtu, 'eth0 MTU = RUDDER_MTU');
    // On the host: the bridge holds the lease's .1 (and nothing else); the harness's rbr0 does not exist.
    assert.deepEqual(await ipv4Addrs(a.host.ns, 'cni0'), [env.subnet], `cni0 on ${a.host.name} carries exactly ${env.subnet}`);
    assert.equal(await linkExists(a.host.ns, 'rbr0'), false, 'no second bridge with the .1 address');
    // host-local recorded the address for this container in the temp store.
    const store = path.join(bridgeOf(a.list).ipam.dataDir as string, a.list.name, a.ip);
    assert.ok(fs.existsSync(store), `${store} exists`);
    assert.equal(fs.readFileSync(store, 'utf8').split(/\s+/)[0], a.rt.containerId);
  }

  it('writes a conflist per host from its subnet file; ADD (bridge → portmap) puts each container in its host\'s subnet; the containers ping each other through Rudder', async () => {
    for (const h of [h1, h2]) {
      const env = h.readSubnetFile() as SubnetEnv;
      const { list, stderr } = await cniConfig(h, path.join(dir, `net.d-${h.name}`));
      assert.match(stderr, /wrote .*10-rudder\.conflist/);
      assert.equal(list.cniVersion, '1.0.0');
      assert.deepEqual(list.plugins.map((p) => p.type), ['bridge', 'portmap']);
      const b = bridgeOf(list);
      assert.deepEqual(b.ipam.ranges, [[{ subnet: leaseOf(env).cidr, gateway: env.subnet.split('/')[0] }]]);
      assert.equal(b.mtu, env.mtu);
      assert.equal(b.ipam.dataDir, path.join(dir, `ipam-${h.name}`), 'host-local writes under the temp dir, not /var/lib/cni');
    }
    const l1 = (await cniConfig(h1, path.join(dir, `net.d-${h1.name}`))).list;
    const l2 = (await cniConfig(h2, path.join(dir, `net.d-${h2.name}`))).list;
    const a1 = await attach(h1, l1, 'c1', { portMappings: [{ hostPort: HOST_PORT, containerPort: CONTAINER_PORT, protocol: 'tcp' }] });
    const a2 = await attach(h2, l2, 'c2');
    await checkAttachment(a1);
    await checkAttachment(a2);
    assert.notEqual(leaseOf(h1.readSubnetFile() as SubnetEnv).cidr, leaseOf(h2.readSubnetFile() as SubnetEnv).cidr);
    await waitPing(a1.ns, 'c1', a2.ip);
    await waitPing(a2.ns, 'c2', a1.ip);
    // CHECK of the bridge plugin agrees with what ADD made. Not portmap's: Debian's portmap (1.1.x) fails CHECK
    // for IPv4-only containers by looking for an IPv6 chain (containernetworking/plugins#819).
    const bridgeOnly = (l: ConfList): ConfList => ({ ...l, plugins: l.plugins.filter((p) => p.type === 'bridge') });
    await new CniRuntime(h1.ns).check(bridgeOnly(l1), a1.rt, a1.result);
    await new CniRuntime(h2.ns).check(bridgeOnly(l2), a2.rt, a2.result);
  });

  it('portmap: the host port on h1 reaches the container from h2; container to container keeps the container\'s own source address', async () => {
    const a1 = attachments.find((a) => a.host === h1 && !a.deleted);
    const a2 = attachments.find((a) => a.host === h2 && !a.deleted);
    assert.ok(a1 && a2, 'the containers of the first test');
    const l = await a1.ns.spawn(['socat', `TCP-LISTEN:${CONTAINER_PORT},fork,reuseaddr`, 'SYSTEM:echo peer=$SOCAT_PEERADDR'], {
      logFile: path.join(dir, 'listener-c1.log'),
      label: 'tcp listener in c1',
    });
    listeners.push(l);
    // Through h1's underlay address and the mapped port, from h2's namespace.
    const viaHostPort = await fetchLine(h2.ns, h2.name, h1.underlayIp, HOST_PORT);
    assert.equal(viaHostPort, `peer=${h2.underlayIp}`);
    // Pod to pod across hosts: no masquerade on the way (the conflist's ipMasq is false).
    const direct = await fetchLine(a2.ns, 'c2', a1.ip, CONTAINER_PORT);
    assert.equal(direct, `peer=${a2.ip}`);
    const nat = (await h1.exec(['iptables-save', '-t', 'nat'])).stdout;
    assert.ok(nat.includes(a1.rt.containerId), 'portmap\'s rules for the container are in h1\'s namespace');
  });

  it('-watch rewrites the conflist when the lease changes; a container added after it gets the new subnet and reaches h1\'s container', async () => {
    const a1 = attachments.find((a) => a.host === h1 && !a.deleted);
    assert.ok(a1);
    const before = h2.readSubnetFile() as SubnetEnv;
    const oldLease = leaseOf(before);
    const outDir = path.join(dir, 'net.d-watch');
    const file = path.join(outDir, '10-rudder.conflist');
    const watcher = await h2.ns.spawn(
      [c.rudderBin, 'cni-config', '--watch', '--out', outDir, `-subnet-file=${h2.subnetFile}`, '-ipam-data-dir', path.join(dir, `ipam-${h2.name}`), '-check-interval=2s'],
      { logFile: path.join(dir, 'cni-watch.log'), label: 'cni-config --watch on h2', env: c.rudderEnv },
    );
    const subnetInFile = (): string | undefined => {
      try {
        return bridgeOf(JSON.parse(fs.readFileSync(file, 'utf8')) as ConfList).ipam.ranges[0]?.[0]?.subnet;
      } catch {
        return undefined;
      }
    };
    try {
      await waitUntil(() => subnetInFile() === oldLease.cidr, { giveUpMs: GIVE_UP_MS, what: `${file} for ${oldLease.cidr}; log: ${watcher.logTail()}` });

      // New lease: stop the daemon, delete its key and its subnet file (so it does not remember the subnet), and
      // reserve 10.6.0.0/24 (outside SubnetMin..Max, so never a random pick) for h2; the restarted daemon takes it.
      const newCidr = '10.6.0.0/24';
      assert.notEqual(oldLease.cidr, newCidr);
      await h2.stopRudder();
      await c.etcdctl(['del', oldLease.key]);
      await c.etcdctl(['put', `${DEFAULT_ETCD_PREFIX}/subnets/10.6.0.0-24`, JSON.stringify({ PublicIP: h2.underlayIp, BackendType: 'udp', BackendData: {} })]);
      fs.rmSync(h2.subnetFile);
      await h2.startRudder();
      const env = await h2.waitSubnetFile();
      assert.equal(leaseOf(env).cidr, newCidr, 'the daemon took the reserved subnet');

      await waitUntil(() => subnetInFile() === newCidr, { giveUpMs: GIVE_UP_MS, what: `${file} for ${newCidr}; log: ${watcher.logTail()}` });
      const list = JSON.parse(fs.readFileSync(file, 'utf8')) as ConfList;
      assert.deepEqual(bridgeOf(list).ipam.ranges, [[{ subnet: newCidr, gateway: '10.6.0.1' }]]);
      assert.ok(watcher.running, 'still watching');

      const a3 = await attach(h2, list, 'c3');
      // Also: cni0 now carries only the new .1 (forceAddress replaced the old one).
      await checkAttachment(a3);
      await waitPing(a3.ns, 'c3', a1.ip);
      await waitPing(a1.ns, 'c1', a3.ip);
    } finally {
      const ex = await watcher.stop(10_000);
      assert.deepEqual(ex, { code: 0, signal: null }, `cni-config --watch ends cleanly on SIGTERM: ${watcher.logTail()}`);
    }
    const log = fs.readFileSync(path.join(dir, 'cni-watch.log'), 'utf8');
    assert.match(log, /waiting for the subnet file/, 'it saw the file disappear and waited');
    assert.equal((log.match(/wrote CNI config/g) ?? []).length, 2, `one write per lease: ${log}`);
  });

  it('DEL (portmap → bridge) removes every attachment: container interface and host veth gone, address released, port mapping removed', async () => {
    assert.ok(attachments.length >= 3, 'the attachments of the earlier tests');
    for (const a of attachments) {
      const vethName = (a.result.interfaces ?? []).filter((i) => !i.sandbox).map((i) => i.name).find((n) => n !== bridgeOf(a.list).bridge);
      assert.ok(vethName, `host veth of ${a.rt.containerId}`);
      assert.equal(await linkExists(a.host.ns, vethName), true, `${vethName} exists before DEL`);
      const store = path.join(bridgeOf(a.list).ipam.dataDir as string, a.list.name, a.ip);
      assert.ok(fs.existsSync(store), `${store} before DEL`);

      const rt = new CniRuntime(a.host.ns);
      await rt.del(a.list, a.rt, a.result);
      a.deleted = true;
      assert.equal(await linkExists(a.host.ns, vethName), false, `${vethName} gone from ${a.host.name}`);
      assert.equal(await linkExists(a.ns, 'eth0'), false, 'eth0 gone from the container');
      assert.equal(fs.existsSync(store), false, `${a.ip} released in host-local's store`);
      const nat = (await a.host.exec(['iptables-save', '-t', 'nat'])).stdout;
      assert.ok(!nat.includes(a.rt.containerId), `no NAT rule of ${a.rt.containerId} left on ${a.host.name}`);
      // A second DEL is not an error (the CNI spec asks plugins to tolerate it).
      await rt.del(a.list, a.rt, a.result);
      await a.ns.delete();
    }
    for (const h of [h1, h2]) {
      const left = (await h.ns.ip(['-j', 'link', 'show', 'type', 'veth'])).stdout;
      const veths = (JSON.parse(left) as Array<{ ifname: string }>).map((l) => l.ifname).filter((n) => n !== 'eth0');
      assert.deepEqual(veths, [], `no container veth left on ${h.name}`);
    }
  });
});
