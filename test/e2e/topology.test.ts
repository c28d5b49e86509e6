/**
 * The one-machine topology itself (no Rudder daemon involved): namespaces,
 * underlay, etcd in its namespace, the daemon-starting helpers (against a
 * stand-in script that follows the daemon's contract), pods, and clean-up
 * however a run ends.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { isRudderError } from '../../src/errors';
import {
  Cleanup,
  ETCD_IP,
  Netns,
  createCluster,
  listNetns,
  parsePing,
  parseSubnetEnv,
  pidAlive,
  removeLeftovers,
  run,
  type Cluster,
} from '../../src/topology';
import { skipUnlessRoot } from '../helpers/env';
import { tempDir, writeFile } from '../helpers/tmp';
import { waitUntil } from '../helpers/wait';

const tagged = async (c: Cluster): Promise<string[]> => (await listNetns()).filter((n) => n.startsWith(c.tag.name('')));

async function linkJson(nsName: string, ifname: string): Promise<{ mtu: number; operstate: string; master?: string }> {
  const r = await run(['ip', '-n', nsName, '-j', 'link', 'show', 'dev', ifname]);
  const arr = JSON.parse(r.stdout) as Array<{ mtu: number; operstate: string; master?: string }>;
  const l = arr[0];
  if (!l) assert.fail(`no link ${ifname} in ${nsName}`);
  return l;
}

async function addrsOf(nsName: string, ifname: string): Promise<string[]> {
  const r = await run(['ip', '-n', nsName, '-j', '-4', 'addr', 'show', 'dev', ifname]);
  const arr = JSON.parse(r.stdout) as Array<{ addr_info: Array<{ local: string; prefixlen: number }> }>;
  return (arr[0]?.addr_info ?? []).map((a) => `${a.local}/${a.prefixlen}`);
}

/** What the root namespace has that this harness could have put there by mistake. */
async function rootFootprint(): Promise<string> {
  const addrs = (await run(['ip', '-o', '-4', 'addr'])).stdout;
  const routes = (await run(['ip', '-4', 'route', 'show', 'table', 'all'])).stdout;
  return [...addrs.split('\n'), ...routes.split('\n')].filter((l) => l.includes('198.18.') || l.includes('198.19.')).join('\n');
}

describe('topology: switch, etcd and hosts in namespaces', { skip: skipUnlessRoot }, () => {
  let c: Cluster;
  let rootBefore: string;
  before(async () => {
    rootBefore = await rootFootprint();
    c = await createCluster({ hosts: 2 });
  });
  after(async () => {
    await c?.teardown();
  });

  it('creates switch, etcd and host namespaces named with the run tag', async () => {
    const names = await tagged(c);
    for (const role of ['sw', 'etcd', 'h1', 'h2']) assert.ok(names.includes(c.tag.name(role)), `${c.tag.name(role)} in ${names.join(',')}`);
    assert.match(c.tag.name('h1'), /^rd[a-z0-9]{4}-h1$/);
    assert.deepEqual(
      c.hosts.map((h) => [h.name, h.underlayIp]),
      [
        ['h1', '198.18.0.1'],
        ['h2', '198.18.0.2'],
      ],
    );
  });

  it('hosts reach each other and etcd over the underlay', async () => {
    const pairs: Array<[number, string]> = [
      [1, '198.18.0.2'],
      [2, '198.18.0.1'],
      [1, ETCD_IP],
      [2, ETCD_IP],
    ];
    for (const [from, to] of pairs) {
      const r = await c.host(from).ping(to, { count: 2 });
      assert.equal(r.transmitted, 2);
      assert.equal(r.received, 2, `h${from} -> ${to}:\n${r.output}`);
      assert.ok(r.replies.every((x) => x.ttl === 64), 'one L2 hop: TTL untouched');
    }
  });

  it('an address outside the underlay gets no answer (the topology is closed)', async () => {
    const r = await c.host(1).ping('198.18.0.77', { count: 1, replyWaitS: 1 });
    assert.equal(r.received, 0);
  });

  it('prepares each host for the daemon: eth0 at MTU 1500, ip_forward, default route via etcd', async () => {
    for (const h of c.hosts) {
      assert.deepEqual(await addrsOf(h.ns.name, 'eth0'), [`${h.underlayIp}/15`]);
      const eth0 = await linkJson(h.ns.name, 'eth0');
      assert.equal(eth0.mtu, 1500);
      assert.equal(eth0.operstate, 'UP');
      assert.equal(await h.ns.sysctlGet('net.ipv4.ip_forward'), '1');
      const routes = JSON.parse((await h.ns.ip(['-j', 'route', 'show', 'default'])).stdout) as Array<{ gateway?: string; dev?: string }>;
      assert.deepEqual(
        routes.map((r) => [r.gateway, r.dev]),
        [[ETCD_IP, 'eth0']],
      );
    }
    // The switch ports hang off its bridge.
    const port = await linkJson(c.switchNs.name, 'sw-h1');
    assert.equal(port.master, 'br0');
  });

  it('runs etcd inside its namespace; etcdctl publishes and reads the network config', async () => {
    assert.deepEqual(c.etcdEndpoints, ['http://198.18.0.250:2379']);
    const pid = c.etcd.pid;
    assert.ok(pid !== null && pidAlive(pid));
    // The etcd process lives in the etcd namespace, not in the root one.
    assert.ok((await c.etcdNs[0]?.pids())?.includes(pid));

    const cfg = { Network: '10.0.0.0/16', Backend: { Type: 'udp' } };
    await c.putConfig(cfg);
    assert.deepEqual(JSON.parse((await c.getKey('/coreos.com/network/config')) ?? 'null'), cfg);
    assert.equal(await c.getKey('/coreos.com/network/nothing-here'), null);

    await c.etcdctl(['put', '/coreos.com/network/subnets/10.0.5.0-24', '{"PublicIP":"198.18.0.1","BackendType":"udp"}']);
    assert.deepEqual(await c.listSubnets(), [
      { subnet: '10.0.5.0/24', value: { PublicIP: '198.18.0.1', BackendType: 'udp' }, hasLease: false },
    ]);
  });

  it('late join: a host added afterwards reaches the others', async () => {
    const h3 = await c.addHost();
    assert.equal(h3.name, 'h3');
    assert.equal(h3.underlayIp, '198.18.0.3');
    assert.ok((await tagged(c)).includes(c.tag.name('h3')));
    assert.equal((await h3.ping('198.18.0.1', { count: 2 })).received, 2);
    assert.equal((await c.host(2).ping('198.18.0.3', { count: 2 })).received, 2);
  });

  it('adds no address or route for the underlay to the root namespace', async () => {
    assert.equal(await rootFootprint(), rootBefore);
  });
});

describe('topology: 3-member etcd for fault tests', { skip: skipUnlessRoot }, () => {
  it('puts the members in their own namespaces at .250-.252; the cluster survives losing one', async (t) => {
    const c = await createCluster({ hosts: 1, etcdMembers: 3 });
    t.after(() => c.teardown());
    assert.deepEqual(c.etcdEndpoints, ['http://198.18.0.250:2379', 'http://198.18.0.251:2379', 'http://198.18.0.252:2379']);
    assert.deepEqual(
      c.etcdNs.map((n) => n.name),
      [c.tag.name('etcd1'), c.tag.name('etcd2'), c.tag.name('etcd3')],
    );
    for (const ip of ['198.18.0.250', '198.18.0.251', '198.18.0.252']) {
      assert.equal((await c.host(1).ping(ip, { count: 1 })).received, 1, `h1 -> ${ip}`);
    }
    await c.putConfig({ Network: '10.0.0.0/16' });
    await c.etcdServers[0]?.kill();
    // Quorum is 2 of 3: reads and writes go on (the wait only covers a leader election).
    await waitUntil(() => c.putConfig({ Network: '10.1.0.0/16' }).then(() => true), { what: 'a write after losing one member' });
    assert.deepEqual(JSON.parse((await c.getKey('/coreos.com/network/config')) ?? 'null'), { Network: '10.1.0.0/16' });
  });
});

describe('topology: teardown', { skip: skipUnlessRoot }, () => {
  it('removes every namespace, process and file of the run', async () => {
    const c = await createCluster({ hosts: 2 });
    const h1 = c.host(1);
    const pod = await h1.setupPod(parseSubnetEnv('RUDDER_NETWORK=10.0.0.0/16\nRUDDER_SUBNET=10.0.9.1/24\nRUDDER_MTU=1472\nRUDDER_IPMASQ=false\n'));
    const extra = await h1.ns.spawn(['sleep', '100000'], { logFile: path.join(h1.dir, 'sleep.log') });
    const pids = [c.etcd.pid, extra.pid];
    assert.ok(pids.every((p) => p !== null && pidAlive(p)));
    assert.equal((await tagged(c)).length, 5, 'sw, etcd, h1, h2, p1');
    assert.ok((await tagged(c)).includes(pod.ns.name));

    await c.teardown();

    assert.deepEqual(await tagged(c), []);
    for (const p of pids) assert.ok(p !== null && !pidAlive(p), `pid ${p} ended`);
    assert.equal(fs.existsSync(c.dir), false);
    await c.teardown(); // idempotent
  });
});

/**
 * A stand-in for bin/rudder that follows its contract: reads -etcd-endpoint
 * and -subnet-file, writes the subnet file atomically, keeps running. The
 * subnet depends on the host's underlay address, which proves it ran inside
 * that host's namespace.
 */
const FAKE_DAEMON = `#!/bin/sh
for a in "$@"; do
  case "$a" in
    -subnet-file=*) f="\${a#-subnet-file=}" ;;
    -etcd-endpoint=*) e="\${a#-etcd-endpoint=}" ;;
    -fail-now) echo "fake rudder: failing on purpose"; exit 7 ;;
  esac
done
ip=$(ip -4 -o addr show dev eth0 | awk '{print $4}' | cut -d/ -f1)
n=\${ip##*.}
echo "fake rudder: etcd=$e ip=$ip"
printf 'RUDDER_NETWORK=10.0.0.0/16\\nRUDDER_SUBNET=10.0.%s.1/24\\nRUDDER_MTU=1472\\nRUDDER_IPMASQ=false\\n' "$n" > "$f.tmp"
mv "$f.tmp" "$f"
exec sleep 100000
`;

describe('topology: daemon helpers and pods (stand-in daemon)', { skip: skipUnlessRoot }, () => {
  let c: Cluster;
  // Registered at suite level so the script outlives the before() hook.
  const dir = tempDir({ after });
  before(async () => {
    const bin = writeFile(dir, 'fake-rudder', FAKE_DAEMON, 0o755);
    c = await createCluster({ hosts: 2, rudderBin: bin });
  });
  after(async () => {
    await c?.teardown();
  });

  it('up(): starts the daemon in the host namespace with the contract flags, reads its subnet file, builds rbr0 and the pod', async () => {
    const h1 = c.host(1);
    const { env, pod } = await h1.up();
    assert.deepEqual(
      { network: env.network, subnet: env.subnet, mtu: env.mtu, ipMasq: env.ipMasq },
      { network: '10.0.0.0/16', subnet: '10.0.1.1/24', mtu: 1472, ipMasq: false },
    );
    assert.ok(h1.rudder?.running);
    assert.match(h1.rudderLog(), /fake rudder: etcd=http:\/\/198\.18\.0\.250:2379 ip=198\.18\.0\.1\n/);
    assert.ok((await h1.ns.pids()).includes(h1.rudder?.pid ?? -1), 'daemon runs inside h1');

    assert.deepEqual(await addrsOf(h1.ns.name, 'rbr0'), ['10.0.1.1/24']);
    assert.equal((await linkJson(h1.ns.name, 'rbr0')).mtu, 1472);
    assert.equal((await linkJson(h1.ns.name, 'veth-pod')).master, 'rbr0');
    assert.equal(pod.ip, '10.0.1.2');
    assert.equal(pod.gateway, '10.0.1.1');
    assert.deepEqual(await addrsOf(pod.ns.name, 'eth0'), ['10.0.1.2/24']);
    assert.equal((await linkJson(pod.ns.name, 'eth0')).mtu, 1472);

    // The pod reaches its bridge and, through the default route, its host's underlay address.
    assert.equal((await pod.ping('10.0.1.1', { count: 2 })).received, 2);
    const viaHost = await pod.ping('198.18.0.1', { count: 2 });
    assert.equal(viaHost.received, 2, viaHost.output);
  });

  it('each host gets its own daemon and subnet file', async () => {
    const { env } = await c.host(2).up();
    assert.equal(env.subnet, '10.0.2.1/24');
    assert.notEqual(c.host(2).subnetFile, c.host(1).subnetFile);
    assert.notEqual(c.host(2).rudder?.pid, c.host(1).rudder?.pid);
  });

  it('restart: a new process, and waitSubnetFile({changedSince}) waits for the new file', async () => {
    const h1 = c.host(1);
    const oldPid = h1.rudder?.pid;
    const stamp = h1.subnetFileStamp();
    assert.ok(stamp);
    await h1.restartRudder();
    assert.ok(oldPid !== undefined && !pidAlive(oldPid));
    assert.notEqual(h1.rudder?.pid, oldPid);
    const env = await h1.waitSubnetFile({ changedSince: stamp });
    assert.equal(env.subnet, '10.0.1.1/24');
    assert.notDeepEqual(h1.subnetFileStamp(), stamp);
    assert.equal((h1.rudderLog().match(/--- harness: starting/g) ?? []).length, 2, 'log appended across restarts');
  });

  it('kill is a SIGKILL; stop is a SIGTERM', async () => {
    const h2 = c.host(2);
    await h2.killRudder();
    assert.equal(h2.rudder?.exit?.signal, 'SIGKILL');
    await h2.startRudder();
    await h2.stopRudder();
    assert.equal(h2.rudder?.exit?.signal, 'SIGTERM');
  });

  it('a daemon that exits early fails waitSubnetFile at once, with its exit status and log', async () => {
    const h3 = await c.addHost();
    await h3.startRudder(['-fail-now']);
    const err = await h3.waitSubnetFile().then(
      () => null,
      (e: unknown) => e,
    );
    if (!isRudderError(err)) assert.fail(`expected a RudderError, got ${String(err)}`);
    assert.match(err.message, /exit status 7/);
    assert.match(err.message, /fake rudder: failing on purpose/);
    assert.match(err.message, /-fail-now/);
  });
});

/** The stand-in for an IPv6 network: `-v6only` writes an IPv6-only file, else a dual-stack one. */
const FAKE_DAEMON_V6 = `#!/bin/sh
v6only=
for a in "$@"; do
  case "$a" in
    -subnet-file=*) f="\${a#-subnet-file=}" ;;
    -v6only) v6only=1 ;;
  esac
done
ip=$(ip -4 -o addr show dev eth0 | awk '{print $4}' | cut -d/ -f1)
n=\${ip##*.}
if [ -n "$v6only" ]; then
  printf 'RUDDER_IPV6_NETWORK=fd42:42::/48\\nRUDDER_IPV6_SUBNET=fd42:42:0:%s::1/64\\nRUDDER_MTU=1500\\nRUDDER_IPMASQ=false\\n' "$n" > "$f.tmp"
else
  printf 'RUDDER_NETWORK=10.0.0.0/16\\nRUDDER_SUBNET=10.0.%s.1/24\\nRUDDER_IPV6_NETWORK=fd42:42::/48\\nRUDDER_IPV6_SUBNET=fd42:42:0:%s::1/64\\nRUDDER_MTU=1500\\nRUDDER_IPMASQ=false\\n' "$n" "$n" > "$f.tmp"
fi
mv "$f.tmp" "$f"
exec sleep 100000
`;

describe('topology: IPv6 underlay and IPv6 pods (stand-in daemon)', { skip: skipUnlessRoot }, () => {
  let c: Cluster;
  const dir = tempDir({ after });
  before(async () => {
    const bin = writeFile(dir, 'fake-rudder-v6', FAKE_DAEMON_V6, 0o755);
    c = await createCluster({ hosts: 2, etcdMembers: 0, rudderBin: bin, ipv6: true });
  });
  after(async () => {
    await c?.teardown();
  });

  it('hosts have 2001:2::N/64 beside their IPv4 address, usable at once, and reach each other over IPv6', async () => {
    const [h1, h2] = [c.host(1), c.host(2)];
    assert.equal(h1.underlayIpv6, '2001:2::1');
    const a6 = JSON.parse((await h1.ns.ip(['-j', '-6', 'addr', 'show', 'dev', 'eth0', 'scope', 'global'])).stdout) as Array<{ addr_info: Array<{ local?: string; prefixlen?: number; tentative?: boolean }> }>;
    assert.deepEqual(a6[0]?.addr_info.filter((a) => a.local !== undefined).map((a) => `${a.local}/${a.prefixlen}${a.tentative ? ' tentative' : ''}`), ['2001:2::1/64']);
    assert.equal(await h1.ns.sysctlGet('net.ipv6.conf.all.forwarding'), '1');
    const r = await h1.ping(h2.underlayIpv6, { count: 2 });
    assert.equal(r.received, 2, r.output);
    assert.equal((await h2.ping(h1.underlayIp, { count: 1 })).received, 1, 'IPv4 as before');
  });

  it('a dual-stack subnet file gives the pod both families; an IPv6-only one gives it IPv6 only', async () => {
    const h1 = c.host(1);
    const { env, pod } = await h1.up();
    assert.deepEqual([env.ipv4, env.subnet, env.ipv6Subnet], [true, '10.0.1.1/24', 'fd42:42:0:1::1/64']);
    assert.deepEqual([pod.ip, pod.ipv4, pod.ipv6, pod.v6?.gateway, pod.v6?.prefixLen], ['10.0.1.2', '10.0.1.2', 'fd42:42:0:1::2', 'fd42:42:0:1::1', 64]);
    assert.equal((await pod.ping('fd42:42:0:1::1', { count: 1 })).received, 1, 'the bridge over IPv6');
    const viaHost = await pod.ping('2001:2::1', { count: 1 });
    assert.equal(viaHost.received, 1, `the host's IPv6 underlay address through the IPv6 default route: ${viaHost.output}`);
    assert.equal((await pod.ping('10.0.1.1', { count: 1 })).received, 1);

    const h2 = c.host(2);
    const up2 = await h2.up(['-v6only']);
    assert.deepEqual([up2.env.ipv4, up2.env.ipv6Subnet], [false, 'fd42:42:0:2::1/64']);
    assert.deepEqual([up2.pod.ip, up2.pod.ipv4, up2.pod.ipv6, up2.pod.gateway], ['fd42:42:0:2::2', null, 'fd42:42:0:2::2', 'fd42:42:0:2::1']);
    assert.equal((await up2.pod.ping('2001:2::2', { count: 1 })).received, 1);
    const v4 = JSON.parse((await up2.pod.ns.ip(['-j', '-4', 'addr', 'show', 'dev', 'eth0'])).stdout) as unknown[];
    assert.deepEqual(v4, [], 'no IPv4 address on an IPv6-only pod');
  });
});

interface ChildInfo {
  namespaces: string[];
  pids: number[];
  dir: string;
}

const CHILD = path.join(__dirname, '..', 'helpers', 'topology-child.js');

/** Starts the child, returns what it built once it is up, and its exit. */
async function startChild(prefix: string, mode: string): Promise<{ info: ChildInfo; pid: number; exited: Promise<{ code: number | null; signal: NodeJS.Signals | null; stderr: string }> }> {
  const child = spawn(process.execPath, [CHILD, prefix, mode], { stdio: ['ignore', 'pipe', 'pipe'] });
  let stderr = '';
  child.stderr.on('data', (b: Buffer) => (stderr += b.toString()));
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null; stderr: string }>((resolve) =>
    child.on('exit', (code, signal) => resolve({ code, signal, stderr })),
  );
  const info = await new Promise<ChildInfo>((resolve, reject) => {
    let out = '';
    child.stdout.on('data', (b: Buffer) => {
      out += b.toString();
      const nl = out.indexOf('\n');
      if (nl >= 0) resolve(JSON.parse(out.slice(0, nl)) as ChildInfo);
    });
    void exited.then((e) => reject(new Error(`child exited before it was up (${e.code ?? e.signal}): ${e.stderr}`)));
  });
  if (child.pid === undefined) assert.fail('child has no pid');
  return { info, pid: child.pid, exited };
}

async function assertGone(info: ChildInfo): Promise<void> {
  const names = await listNetns();
  assert.deepEqual(
    info.namespaces.filter((n) => names.includes(n)),
    [],
    'no namespace of the run is left',
  );
  // Processes are SIGKILLed before the namespaces go; waitUntil only covers reaping.
  await waitUntil(() => info.pids.every((p) => !pidAlive(p)), { what: `pids ${info.pids.join(',')} to end` });
  assert.equal(fs.existsSync(info.dir), false, 'run directory removed');
}

describe('topology: clean-up however the run ends', { skip: skipUnlessRoot }, () => {
  for (const mode of ['throw', 'reject', 'exit'] as const) {
    it(`child process ends by ${mode === 'throw' ? 'an uncaught exception' : mode === 'reject' ? 'an unhandled rejection' : 'process.exit()'}`, async () => {
      const { info, exited } = await startChild('rdc', mode);
      assert.ok(info.namespaces.length >= 3);
      const e = await exited;
      assert.notEqual(e.code, 0, 'the child failed as intended');
      await assertGone(info);
    });
  }

  for (const sig of ['SIGINT', 'SIGTERM'] as const) {
    it(`child process gets ${sig}`, async () => {
      const { info, pid, exited } = await startChild('rdc', 'wait');
      process.kill(pid, sig);
      const e = await exited;
      assert.equal(e.signal, sig, 'the signal keeps its default meaning after clean-up');
      await assertGone(info);
    });
  }

  it('after SIGKILL: daemons die with the run, removeLeftovers() removes its namespaces, live runs are untouched', async (t) => {
    const prefix = 'rdk';
    const live = await createCluster({ prefix, hosts: 1, etcdMembers: 0 });
    t.after(() => live.teardown());
    // A namespace that merely starts with the prefix but is not shaped like a run's.
    const foreignCleanup = new Cleanup('foreign');
    t.after(() => foreignCleanup.run());
    const foreign = await Netns.create(`${prefix}-foreign${process.pid}`, foreignCleanup);
    const { info, pid, exited } = await startChild(prefix, 'wait');
    process.kill(pid, 'SIGKILL');
    await exited;

    // Namespaces outlive a SIGKILLed run (nothing can run in it any more) ...
    const names = await listNetns();
    assert.ok(info.namespaces.every((n) => names.includes(n)), 'namespaces are left over');
    // ... but its processes do not (parent-death signal).
    await waitUntil(() => info.pids.every((p) => !pidAlive(p)), { what: 'processes of the killed run to die with it' });

    const report = removeLeftovers(prefix);
    assert.deepEqual([...report.namespaces].sort(), [...info.namespaces].sort());
    assert.ok(report.dirs.includes(info.dir));
    await assertGone(info);

    // The live run with the same prefix kept everything.
    const liveNames = await listNetns();
    assert.ok(live.cleanup.trackedNamespaces.every((n) => liveNames.includes(n)));
    assert.equal((await live.host(1).ping('198.18.0.1', { count: 1 })).received, 1);
    assert.ok(liveNames.includes(foreign.name), 'a namespace not named like a run is not touched');
  });
});

describe('topology: processes die with their parent', () => {
  it('a parent SIGKILLed the moment it has started processes leaves none of them behind', async () => {
    // The window between fork and the parent-death signal being armed: a parent
    // killed in it used to leave the child running forever (a sandbox killed while
    // starting daemons left a daemon behind).
    // A second `sleep` operand (seconds are summed) that names this run.
    const tag = `0.${process.pid}${Date.now() % 100000}1`;
    const exec = path.join(__dirname, '..', '..', 'src', 'topology', 'exec.js');
    const script = `const { ManagedProcess } = require(${JSON.stringify(exec)});
      void ManagedProcess.start(['sleep', '600', process.argv[1]], { logFile: '/dev/null', label: 'sleeper' });
      process.kill(process.pid, 'SIGKILL');`;
    // Several parents: the window is short and not every attempt lands in it.
    for (let i = 0; i < 10; i++) {
      const child = spawn(process.execPath, ['-e', script, `${tag}${i}`], { stdio: 'ignore' });
      const exit = await new Promise<NodeJS.Signals | null>((resolve) => child.on('exit', (_c, sig) => resolve(sig)));
      assert.equal(exit, 'SIGKILL');
    }
    const sleepers = (): number[] =>
      fs
        .readdirSync('/proc')
        .filter((d) => /^\d+$/.test(d))
        .filter((d) => {
          try {
            return fs.readFileSync(`/proc/${d}/cmdline`, 'utf8').includes(tag) && pidAlive(Number(d));
          } catch {
            return false;
          }
        })
        .map(Number);
    try {
      await waitUntil(() => sleepers().length === 0, { what: `the killed parent's children (${tag}) to end` });
    } finally {
      for (const pid of sleepers()) process.kill(pid, 'SIGKILL');
    }
  });
});

describe('topology: parsers', () => {
  it('parseSubnetEnv reads the contract format and names bad keys', () => {
    const env = parseSubnetEnv('RUDDER_NETWORK=10.0.0.0/16\nRUDDER_SUBNET=10.0.5.1/24\nRUDDER_MTU=1472\nRUDDER_IPMASQ=true\n');
    assert.deepEqual(
      { network: env.network, subnet: env.subnet, mtu: env.mtu, ipMasq: env.ipMasq },
      { network: '10.0.0.0/16', subnet: '10.0.5.1/24', mtu: 1472, ipMasq: true },
    );
    assert.throws(() => parseSubnetEnv('RUDDER_NETWORK=10.0.0.0/16\nRUDDER_SUBNET=10.0.5.1/24\nRUDDER_MTU=1472\n'), /RUDDER_IPMASQ missing/);
    assert.throws(() => parseSubnetEnv('RUDDER_NETWORK=10.0.0.0/16\nRUDDER_SUBNET=10.0.5.1/24\nRUDDER_MTU=big\nRUDDER_IPMASQ=false'), /RUDDER_MTU=big/);
    assert.throws(() => parseSubnetEnv('RUDDER_NETWORK=10.0.0.1/16\nRUDDER_SUBNET=10.0.5.1/24\nRUDDER_MTU=1472\nRUDDER_IPMASQ=false'), /RUDDER_NETWORK=10\.0\.0\.1\/16/);
  });

  it('parsePing reads replies, ICMP errors and statistics', () => {
    const ok = parsePing(
      '10.0.6.2',
      [
        'PING 10.0.6.2 (10.0.6.2) 56(84) bytes of data.',
        '64 bytes from 10.0.6.2: icmp_seq=1 ttl=62 time=0.311 ms',
        '64 bytes from 10.0.6.2: icmp_seq=3 ttl=62 time=0.250 ms',
        '',
        '--- 10.0.6.2 ping statistics ---',
        '3 packets transmitted, 2 received, 33.3333% packet loss, time 402ms',
        'rtt min/avg/max/mdev = 0.250/0.280/0.311/0.030 ms',
      ].join('\n'),
      0,
    );
    assert.deepEqual(ok.replies, [
      { seq: 1, ttl: 62, timeMs: 0.311 },
      { seq: 3, ttl: 62, timeMs: 0.25 },
    ]);
    assert.equal(ok.transmitted, 3);
    assert.equal(ok.received, 2);
    assert.deepEqual(ok.rtt, { min: 0.25, avg: 0.28, max: 0.311, mdev: 0.03 });

    const unreachable = parsePing(
      '10.9.0.1',
      [
        'PING 10.9.0.1 (10.9.0.1) 56(84) bytes of data.',
        'From 10.0.5.0 icmp_seq=1 Destination Net Unreachable',
        '',
        '--- 10.9.0.1 ping statistics ---',
        '1 packets transmitted, 0 received, +1 errors, 100% packet loss, time 0ms',
      ].join('\n'),
      1,
    );
    assert.equal(unreachable.received, 0);
    assert.equal(unreachable.errorCount, 1);
    assert.deepEqual(unreachable.errors, ['From 10.0.5.0 icmp_seq=1 Destination Net Unreachable']);
    assert.equal(unreachable.rtt, null);

    assert.throws(() => parsePing('x', 'ping: x: Name or service not known', 2), /did not run/);
  });
});
