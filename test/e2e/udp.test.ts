/**
 * The udp backend end to end, with real everything: etcd in its namespace,
 * `bin/rudder` daemons in host namespaces, the native data plane moving
 * packets between TUN and UDP over the namespaced underlay, and pods behind
 * each host's docker0-like bridge.
 *
 * One cluster is shared (building it is the slow part). Every test first
 * waits for the paths it relies on to work ("precondition", a convergence
 * wait with a generous give-up) and puts back what it changed in `finally`,
 * so a test neither hides an earlier test's failure nor leaves one behind.
 * Waits are never assertions about speed.
 *
 * Config: Network 10.5.0.0/16 with SubnetMin 10.5.1.0, so no host picks the
 * first subnet 10.5.0.0/24 at random; the "first subnet" test gives it to a
 * host through a reservation key instead.
 */
import assert from 'node:assert/strict';
import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { after, before, describe, it, type TestContext } from 'node:test';
import { formatIp, maskOf, parseCidr } from '../../src/ip/ipv4';
import {
  DEFAULT_ETCD_PREFIX,
  createCluster,
  parsePing,
  run,
  type Cluster,
  type Host,
  type PingResult,
  type Pod,
  type SubnetEnv,
} from '../../src/topology';
import { skipUnlessEtcd, skipUnlessRoot } from '../helpers/env';
import { tempDir } from '../helpers/tmp';
import { waitUntil } from '../helpers/wait';
import { ipv4Udp } from '../helpers/packets';

const NETWORK = '10.5.0.0/16';
const CONFIG = { Network: NETWORK, SubnetMin: '10.5.1.0', Backend: { Type: 'udp' } };
const UDP_PORT = 8285;
/** Generous: only keeps a broken run from hanging (2 shared cores). */
const GIVE_UP_MS = 90_000;

// ---------------------------------------------------------------------------
// helpers

/** Network address of the lease behind RUDDER_SUBNET (10.5.7.1/24 → 10.5.7.0/24). */
function leaseOf(env: SubnetEnv): { ip: string; prefix: number; cidr: string; key: string } {
  const c = parseCidr(env.subnet);
  assert.ok(c, `RUDDER_SUBNET=${env.subnet}`);
  const ip = formatIp((c.ip & maskOf(c.prefix)) >>> 0);
  return { ip, prefix: c.prefix, cidr: `${ip}/${c.prefix}`, key: `${DEFAULT_ETCD_PREFIX}/subnets/${ip}-${c.prefix}` };
}

function podOf(h: Host): Pod {
  assert.ok(h.pod, `${h.name} has a pod`);
  return h.pod;
}

function describePing(from: string, r: PingResult): string {
  return `${from} → ${r.target}: ${r.received}/${r.transmitted} received; ${r.output.trim()}`;
}

/** Waits until a ping from `from` to `to` gets every reply; returns that result. */
async function waitPingOk(from: Pod | Host, fromName: string, to: string, size?: number): Promise<PingResult> {
  return waitUntil(
    async () => {
      const r = await from.ping(to, { count: 2, intervalS: 0.2, replyWaitS: 1, ...(size === undefined ? {} : { size }) });
      if (r.transmitted > 0 && r.received === r.transmitted) return r;
      throw new Error(describePing(fromName, r));
    },
    { giveUpMs: GIVE_UP_MS, intervalMs: 200, what: `ping ${fromName} → ${to} to work` },
  );
}

/** Every ordered pair of pods of `hosts` can ping each other (waits for convergence). */
async function waitMesh(hosts: readonly Host[]): Promise<Array<{ from: string; to: string; r: PingResult }>> {
  const jobs: Array<Promise<{ from: string; to: string; r: PingResult }>> = [];
  for (const a of hosts) {
    for (const b of hosts) {
      if (a === b) continue;
      jobs.push(waitPingOk(podOf(a), `pod of ${a.name}`, podOf(b).ip).then((r) => ({ from: a.name, to: b.name, r })));
    }
  }
  return Promise.all(jobs);
}

/** A ping with the exact argv given (for -M dont, which PingOptions has no word for). */
async function pingArgs(ns: { exec: Pod['exec'] }, args: readonly string[], target: string): Promise<PingResult> {
  const r = await ns.exec(['ping', '-n', ...args, target], { allowFailure: true });
  return parsePing(target, r.stdout + r.stderr, r.code);
}

async function linkMtu(h: Host | Pod, ifname: string): Promise<number> {
  const r = await h.exec(['ip', '-j', 'link', 'show', 'dev', ifname]);
  const l = (JSON.parse(r.stdout) as Array<{ mtu: number }>)[0];
  assert.ok(l, `link ${ifname}`);
  return l.mtu;
}

async function sha256(file: string): Promise<string> {
  const h = crypto.createHash('sha256');
  for await (const chunk of fs.createReadStream(file)) h.update(chunk as Buffer);
  return h.digest('hex');
}

/** Log text of the current (last started) run of the daemon on `h`. */
function currentRunLog(h: Host): string {
  const text = fs.readFileSync(h.logFile, 'utf8');
  const i = text.lastIndexOf('--- harness: starting');
  return i < 0 ? text : text.slice(i);
}

/** Latest value of a data plane counter from the -v=1 "data plane counters" summaries, 0 if none yet. */
function loggedCounter(text: string, name: string): number {
  let v = 0;
  const re = new RegExp(`data plane counters.*\\b${name}=(\\d+)`);
  for (const line of text.split('\n')) {
    const m = re.exec(line);
    if (m) v = Number(m[1]);
  }
  return v;
}

/**
 * A host as many distributions set one up: strict reverse-path filtering
 * (RHEL's default; Ubuntu uses loose). Packets from peers' pods and the data
 * plane's own ICMP errors must pass it.
 */
async function addHost(c: Cluster, rudderArgs: string[] = []): Promise<Host> {
  const h = await c.addHost({ rudderArgs });
  await h.ns.sysctl('net.ipv4.conf.all.rp_filter', 1);
  return h;
}

// ---------------------------------------------------------------------------

describe('udp backend end to end (etcd, daemons, data plane, pods in namespaces)', { skip: skipUnlessRoot || skipUnlessEtcd }, () => {
  let c: Cluster;
  /** Hosts with a daemon and a pod; the mesh every test keeps working. */
  const members: Host[] = [];

  before(async () => {
    // -v=1: the udp backend logs a data plane counter summary every 10 s (test 7 reads it).
    c = await createCluster({ hosts: 0, rudderArgs: ['-v=1'], giveUpMs: GIVE_UP_MS });
    for (let i = 0; i < 3; i++) await addHost(c);
    await c.putConfig(CONFIG);
    await Promise.all(c.hosts.map((h) => h.up()));
    members.push(...c.hosts);
  });

  after(async () => {
    await c?.teardown();
  });

  it('3 hosts: every pod pings every other pod (all 6 ordered pairs)', async () => {
    assert.equal(members.length, 3);
    const subnets = await c.listSubnets();
    const mine = members.map((h) => leaseOf(h.readSubnetFile() as SubnetEnv).cidr);
    assert.equal(new Set(mine).size, 3, `three distinct subnets: ${mine.join(', ')}`);
    for (const [i, h] of members.entries()) {
      const s = subnets.find((x) => x.subnet === mine[i]);
      assert.ok(s, `lease ${mine[i]} of ${h.name} in etcd: ${JSON.stringify(subnets)}`);
      assert.equal(s.value.PublicIP, h.underlayIp);
      assert.equal(s.value.BackendType, 'udp');
      assert.ok(s.hasLease, 'an ordinary lease (not a reservation)');
    }
    const pairs = await waitMesh(members);
    assert.equal(pairs.length, 6);
  });

  /**
   * `mb` MB of random bytes from a's pod to b's pod over TCP (socat, port `port`), checked byte for
   * byte; `prefix` wraps the sending socat (a `timeout` as a give-up).
   */
  async function podTransfer(t: TestContext, a: Host, b: Host, mb: number, port: number, prefix: string[] = []): Promise<void> {
    const dir = tempDir(t, 'rudder-udp-tcp-');
    const src = path.join(dir, 'in');
    const dst = path.join(dir, 'out');
    await run(['sh', '-c', `head -c ${mb}M /dev/urandom > '${src}'`]);
    assert.equal(fs.statSync(src).size, mb * 1024 * 1024);
    const listener = await podOf(b).ns.spawn(['socat', '-u', `TCP-LISTEN:${port},reuseaddr`, `OPEN:${dst},creat,trunc`], {
      logFile: path.join(dir, 'socat-listen.log'),
      label: `socat listener in pod of ${b.name}`,
    });
    try {
      // retry: the listener may not be bound yet.
      await podOf(a).exec([...prefix, 'socat', '-u', `FILE:${src}`, `TCP:${podOf(b).ip}:${port},retry=200,interval=0.2`]);
      const ex = await listener.exited;
      assert.deepEqual(ex, { code: 0, signal: null }, `listener: ${listener.logTail()}`);
    } finally {
      await listener.stop(2_000);
    }
    assert.equal(fs.statSync(dst).size, fs.statSync(src).size, 'received size');
    assert.equal(await sha256(dst), await sha256(src), 'sha256 of what arrived equals what was sent');
  }

  it('a 50 MB TCP transfer between pods on two hosts arrives intact', async (t) => {
    const [a, b] = [members[0] as Host, members[1] as Host];
    await waitMesh([a, b]);
    await podTransfer(t, a, b, 50, 5001);
  });

  it('a route MTU below the datagrams makes the kernel refuse UDP GSO: 32 MB of TCP still arrive intact, sent datagram by datagram', async (t) => {
    const [a, b] = [members[0] as Host, members[1] as Host];
    await waitMesh([a, b]);
    const before = loggedCounter(currentRunLog(a), 'txGsoRefused');
    // A UDP GSO sendmsg to b fails (EMSGSIZE) while one datagram alone is fragmented (no DF): the
    // data plane's fallback (send.c) must resend each refused message's datagrams one by one.
    const route = [`${b.underlayIp}/32`, 'dev', 'eth0', 'mtu', '1400'];
    await a.ns.ip(['route', 'add', ...route]);
    try {
      // A give-up: a fallback that lost the refused datagrams would leave TCP crawling on retransmissions.
      await podTransfer(t, a, b, 32, 5002, ['timeout', '120']);
    } finally {
      await a.ns.ip(['route', 'del', ...route]);
    }
    // The -v=1 counter summary (every 10 s when something changed) shows that the fallback ran.
    const after = await waitUntil(
      () => {
        const v = loggedCounter(currentRunLog(a), 'txGsoRefused');
        return v > before ? v : undefined;
      },
      { giveUpMs: 30_000, intervalMs: 500, what: `${a.name}'s logged txGsoRefused rising above ${before}` },
    );
    console.log(`# txGsoRefused on ${a.name}: ${before} → ${after}`);
  });

  it('a 4th host joins later and reaches, and is reached by, every other host without restarting anyone', async () => {
    await waitMesh(members);
    const pids = members.map((h) => h.rudder?.pid);
    const h4 = await addHost(c);
    await h4.up();
    members.push(h4);
    const pairs = await waitMesh(members);
    assert.equal(pairs.length, 12);
    for (const [i, h] of members.slice(0, -1).entries()) {
      assert.equal(h.rudder?.pid, pids[i], `${h.name}'s daemon is the same process`);
      assert.ok(h.rudder?.running, `${h.name}'s daemon still runs`);
    }
  });

  it('a restarted daemon (SIGTERM → start, SIGKILL → start) keeps its subnet and traffic resumes', async () => {
    const h = members[1] as Host;
    const others = members.filter((x) => x !== h);
    await waitMesh(members);
    const before = h.readSubnetFile() as SubnetEnv;
    const lease = leaseOf(before);

    const restart = async (how: 'stop' | 'kill'): Promise<void> => {
      const stamp = h.subnetFileStamp();
      if (how === 'stop') await h.stopRudder();
      else await h.killRudder();
      assert.ok(!h.rudder?.running, `daemon on ${h.name} ended (${how})`);
      const kv = await c.getKey(lease.key);
      assert.ok(kv, `the lease stays in etcd while the daemon is down (${how})`);
      // Down means down (so "works again" below is the restarted daemon's doing).
      const o0 = others[0] as Host;
      const down = await podOf(o0).ping(podOf(h).ip, { count: 1, replyWaitS: 1 });
      assert.equal(down.received, 0, `no reply while ${h.name}'s daemon is down: ${down.output}`);
      // Where the Network goes while the daemon is down: the TUN and its route went with the
      // process. After a crash the fallback route refuses it ("network unreachable") instead of
      // letting it follow the default route out unencapsulated; a clean stop removes every
      // route the daemon made.
      const rudderRoutes = (await h.exec(['ip', '-4', 'route', 'show', 'table', 'main', 'proto', '82'])).stdout.trim();
      const get = await h.exec(['ip', '-4', 'route', 'get', podOf(o0).ip], { allowFailure: true });
      if (how === 'kill') {
        assert.equal(rudderRoutes, `unreachable ${NETWORK} metric 4294967295`, `only the fallback is left after a crash`);
        assert.notEqual(get.code, 0, `no route to ${podOf(o0).ip} after a crash: ${get.stdout}`);
        assert.match(get.stderr, /No route to host/, 'refused by the unreachable route, not sent out the default route');
        const fromPod = await podOf(h).ping(podOf(o0).ip, { count: 1, replyWaitS: 1 });
        assert.equal(fromPod.received, 0);
        assert.match(fromPod.output, /Destination Host Unreachable/, `the pod is told: ${fromPod.output}`);
      } else {
        assert.equal(rudderRoutes, '', 'a clean stop removes every route it made');
      }
      await h.startRudder();
      const env = await h.waitSubnetFile({ changedSince: stamp });
      assert.equal(env.subnet, before.subnet, `same subnet after ${how} → start`);
      assert.equal(env.mtu, before.mtu);
      const subnets = await c.listSubnets();
      const own = subnets.filter((s) => s.value.PublicIP === h.underlayIp);
      assert.deepEqual(own.map((s) => s.subnet), [lease.cidr], `one lease for ${h.underlayIp} after ${how}`);
      // The pod and bridge were left as they were: traffic resumes both ways.
      for (const o of others) {
        await waitPingOk(podOf(o), `pod of ${o.name}`, podOf(h).ip);
        await waitPingOk(podOf(h), `pod of ${h.name}`, podOf(o).ip);
      }
    };
    try {
      await restart('stop');
      await restart('kill');
    } finally {
      // Whatever failed, later tests find a running daemon (their own preconditions check that it works).
      if (!h.rudder?.running) await h.startRudder();
    }
  });

  it('a lease deleted while its daemon is stopped makes its subnet unreachable: senders get ICMP net-unreachable', async (t) => {
    const h = members[2] as Host;
    const others = members.filter((x) => x !== h);
    await waitMesh(members);
    const lease = leaseOf(h.readSubnetFile() as SubnetEnv);
    await h.stopRudder();
    try {
      await c.etcdctl(['del', lease.key]);
      for (const o of others) {
        const r = await waitUntil(
          async () => {
            const p = await podOf(o).ping(podOf(h).ip, { count: 1, replyWaitS: 1 });
            if (p.errors.some((e) => /Destination Net Unreachable/.test(e))) return p;
            throw new Error(describePing(`pod of ${o.name}`, p));
          },
          { giveUpMs: GIVE_UP_MS, intervalMs: 200, what: `net-unreachable from ${o.name} for ${lease.cidr}` },
        );
        assert.equal(r.received, 0);
        t.diagnostic(`${o.name}: ${r.errors[0] ?? ''}`);
        // The error comes from the sender's own data plane (its rudder0 address = its lease's network address).
        const ownNet = leaseOf(o.readSubnetFile() as SubnetEnv).ip;
        assert.ok(r.errors.some((e) => e.startsWith(`From ${ownNet} `)), `error from ${ownNet}: ${r.output}`);
      }
      assert.equal(await c.getKey(lease.key), null, 'nobody re-created the key of a stopped daemon');
    } finally {
      // Back as it was: the daemon takes its remembered subnet again.
      const stamp = h.subnetFileStamp();
      await h.startRudder();
      await h.waitSubnetFile({ changedSince: stamp });
    }
    assert.equal(leaseOf(h.readSubnetFile() as SubnetEnv).cidr, lease.cidr, 'remembered subnet taken again');
    await waitMesh(members);
  });

  it('a running daemon re-creates its deleted lease key with the same subnet, and the path keeps working', async () => {
    const h = members[1] as Host;
    await waitMesh(members);
    const lease = leaseOf(h.readSubnetFile() as SubnetEnv);
    const pid = h.rudder?.pid;
    await c.etcdctl(['del', lease.key]);
    const value = await waitUntil(async () => (await c.getKey(lease.key)) ?? undefined, {
      giveUpMs: GIVE_UP_MS,
      intervalMs: 200,
      what: `${lease.key} to be re-created by ${h.name}`,
    });
    const v = JSON.parse(value) as { PublicIP?: string; BackendType?: string };
    assert.equal(v.PublicIP, h.underlayIp);
    assert.equal(v.BackendType, 'udp');
    const own = (await c.listSubnets()).filter((s) => s.value.PublicIP === h.underlayIp);
    assert.deepEqual(own.map((s) => [s.subnet, s.hasLease]), [[lease.cidr, true]], 'same subnet, attached to an etcd lease again');
    assert.equal(h.rudder?.pid, pid, 'not by restarting');
    assert.ok(h.rudder?.running);
    assert.equal(leaseOf(h.readSubnetFile() as SubnetEnv).cidr, lease.cidr);
    await waitMesh(members);
  });

  it("a host holding the Network's first subnet (10.5.0.0/24, network address = the Network's) works both ways", async () => {
    await waitMesh(members);
    const h = await addHost(c);
    // A reservation (key without an etcd lease) for this host's PublicIP: the way to give a host the first subnet
    // while the configured range (SubnetMin 10.5.1.0) keeps random picks away from it.
    const key = `${DEFAULT_ETCD_PREFIX}/subnets/10.5.0.0-24`;
    assert.equal(await c.getKey(key), null, 'nobody holds 10.5.0.0/24 yet');
    await c.etcdctl(['put', key, JSON.stringify({ PublicIP: h.underlayIp, BackendType: 'udp', BackendData: {} })]);
    const { env, pod } = await h.up();
    members.push(h);
    assert.equal(env.subnet, '10.5.0.1/24');
    assert.equal(pod.ip, '10.5.0.2');
    const addrs = (await h.exec(['ip', '-4', '-o', 'addr', 'show', 'dev', 'rudder0'])).stdout;
    assert.match(addrs, /inet 10\.5\.0\.0\/32 /, `rudder0 holds 10.5.0.0/32: ${addrs}`);
    const pairs = await waitMesh(members);
    assert.equal(pairs.length, members.length * (members.length - 1));
    // Also the addresses that look like the Network's own: the host's rudder0 (10.5.0.0) and bridge (10.5.0.1).
    const o = members[0] as Host;
    await waitPingOk(podOf(o), `pod of ${o.name}`, '10.5.0.1');
    await waitPingOk(podOf(o), `pod of ${o.name}`, '10.5.0.0');
    const kv = (await c.listSubnets()).find((s) => s.subnet === '10.5.0.0/24');
    assert.ok(kv && !kv.hasLease, 'still a reservation');
  });

  it('the first subnet by the ordinary allocator: a Network with room for two subnets, two hosts, both ways', async () => {
    // A second overlay under its own etcd prefix, on the same underlay: 10.6.0.0/23 holds exactly two /24s,
    // so with two hosts one of them necessarily gets 10.6.0.0/24 from the default range, no reservation.
    const prefix = '/rudder-e2e-small';
    await c.putConfig({ Network: '10.6.0.0/23', Backend: { Type: 'udp' } }, prefix);
    const pair = [await addHost(c, [`-etcd-prefix=${prefix}`]), await addHost(c, [`-etcd-prefix=${prefix}`])];
    try {
      const envs = await Promise.all(pair.map(async (h) => (await h.up()).env));
      assert.deepEqual(envs.map((e) => e.subnet).sort(), ['10.6.0.1/24', '10.6.1.1/24']);
      assert.deepEqual((await c.listSubnets(prefix)).map((s) => s.subnet).sort(), ['10.6.0.0/24', '10.6.1.0/24']);
      const routes = (await (pair[0] as Host).exec(['ip', '-4', 'route', 'show', 'dev', 'rudder0'])).stdout;
      assert.match(routes, /^10\.6\.0\.0\/23 /m, `the Network routed to rudder0: ${routes}`);
      await waitMesh(pair);
    } finally {
      await Promise.all(pair.map((h) => h.stopRudder()));
    }
  });

  it('a datagram to port 8285 from an address that holds no lease is not delivered, and is counted as an unknown-sender drop', async (t) => {
    const target = members[0] as Host;
    const peer = members[1] as Host;
    await waitMesh([target, peer]);
    // A namespace on the underlay with no daemon and no lease: 198.18.0.N.
    const rogue = await addHost(c);
    assert.ok(!(await c.listSubnets()).some((s) => s.value.PublicIP === rogue.underlayIp));
    const dir = tempDir(t, 'rudder-udp-rogue-');
    const got = path.join(dir, 'received');
    const port = 7777;
    const pod = podOf(target);
    // Inner source: the peer's pod, which the target routes via rudder0 (so reverse-path checks would pass).
    const packetFile = (tag: string): string => {
      const f = path.join(dir, `${tag}.pkt`);
      fs.writeFileSync(f, ipv4Udp(podOf(peer).ip, pod.ip, port, Buffer.from(`${tag}-datagram\n`)));
      return f;
    };
    const rogueFile = packetFile('rogue');
    const controlFile = packetFile('control');
    const listener = await pod.ns.spawn(['socat', '-u', `UDP-RECV:${port}`, `OPEN:${got},creat,append`], {
      logFile: path.join(dir, 'socat.log'),
      label: `udp listener in pod of ${target.name}`,
    });
    try {
      await waitUntil(async () => (await pod.exec(['ss', '-Hlun', `sport = :${port}`])).stdout.includes(`:${port}`), {
        giveUpMs: GIVE_UP_MS,
        what: 'the udp listener in the pod',
      });
      const send = (from: Host, file: string): Promise<unknown> =>
        from.exec(['socat', '-u', `FILE:${file}`, `UDP-SENDTO:${target.underlayIp}:${UDP_PORT}`]);

      const baseline = loggedCounter(currentRunLog(target), 'dropUnknownSender');
      const N = 5;
      for (let i = 0; i < N; i++) await send(rogue, rogueFile);
      // Control: the same datagram from a lease holder's address is delivered, so the listener and the packet
      // are fine. The target's data plane reads its socket in order, so once the control datagram is in, the
      // rogue ones (sent before it) were handled: not there means dropped, not slow.
      await waitUntil(
        async () => {
          await send(peer, controlFile);
          const text = fs.existsSync(got) ? fs.readFileSync(got, 'utf8') : '';
          return text.includes('control-datagram');
        },
        { giveUpMs: GIVE_UP_MS, intervalMs: 500, what: `the control datagram in ${got}` },
      );
      const text = fs.readFileSync(got, 'utf8');
      assert.ok(!text.includes('rogue'), `no rogue datagram reached the pod: ${JSON.stringify(text)}`);

      // Counted: the -v=1 summary (every 10 s, when counters changed) shows the drops.
      const seen = await waitUntil(
        () => {
          const v = loggedCounter(currentRunLog(target), 'dropUnknownSender');
          return v >= baseline + N ? v : undefined;
        },
        { giveUpMs: GIVE_UP_MS, intervalMs: 500, what: `dropUnknownSender ≥ ${baseline + N} in ${target.logFile}` },
      );
      assert.ok(seen >= baseline + N);
      t.diagnostic(`dropUnknownSender on ${target.name}: ${baseline} → ${seen} after ${N} rogue datagrams`);
    } finally {
      await listener.stop(2_000);
    }
  });

  it('MTU: 1472- and 8000-byte pings with DF clear work; with DF set the path MTU (1472) is reported to the sender', async (t) => {
    const [a, b] = [members[0] as Host, members[1] as Host];
    await waitMesh([a, b]);
    const env = a.readSubnetFile() as SubnetEnv;
    const mtu = env.mtu;
    assert.equal(mtu, c.underlayMtu - 28, 'RUDDER_MTU = underlay MTU − 28');
    assert.equal(await linkMtu(a, 'rudder0'), mtu);
    const target = podOf(b).ip;
    const pa = podOf(a);

    // DF clear: the pod (link MTU 1472) fragments; fragments cross the tunnel and are reassembled.
    for (const size of [1472, 8000]) {
      const r = await pingArgs(pa, ['-c', '3', '-i', '0.2', '-W', '2', '-M', 'dont', '-s', String(size)], target);
      assert.equal(r.received, 3, describePing(`pod of ${a.name} -s ${size}`, r));
    }
    // DF set, exactly the MTU (1444 + 28 = 1472): a full-size packet crosses the tunnel unfragmented.
    {
      const r = await pingArgs(pa, ['-c', '3', '-i', '0.2', '-W', '2', '-M', 'do', '-s', String(mtu - 28)], target);
      assert.equal(r.received, 3, describePing(`pod of ${a.name} -M do -s ${mtu - 28}`, r));
    }
    // DF set, above the MTU, from the host namespace: its route to the Network goes through rudder0, so the
    // local stack knows the path MTU and refuses with it ("message too long, mtu=1472").
    {
      const r = await pingArgs(a, ['-c', '1', '-W', '2', '-M', 'do', '-s', '1500'], target);
      assert.equal(r.received, 0);
      assert.match(r.output, new RegExp(`message too long, mtu=${mtu}`), r.output);
      t.diagnostic(`host ${a.name}: ${/.*message too long.*/.exec(r.output)?.[0] ?? ''}`);
    }
    // DF set, above the tunnel MTU, from a pod whose link MTU is 1500 (as if the bridge were not set from
    // RUDDER_MTU): the packet fits the pod's link, the host cannot forward it into rudder0, and the pod
    // learns the path MTU from the host's ICMP frag-needed. With DF clear the host fragments it instead.
    const ifs: Array<[Host | Pod, string]> = [
      [a, 'rbr0'],
      [a, 'veth-pod'],
      [pa, 'eth0'],
    ];
    try {
      // Bridge last: its MTU follows its ports' until set explicitly.
      for (const [ns, ifname] of [ifs[2], ifs[1], ifs[0]] as Array<[Host | Pod, string]>) await ns.exec(['ip', 'link', 'set', 'dev', ifname, 'mtu', '1500']);
      for (const [ns, ifname] of ifs) assert.equal(await linkMtu(ns, ifname), 1500);
      const r = await pingArgs(pa, ['-c', '2', '-i', '0.2', '-W', '2', '-M', 'do', '-s', '1472'], target);
      assert.equal(r.received, 0, r.output);
      const fragNeeded = new RegExp(`Frag needed and DF set \\(mtu = ${mtu}\\)|message too long, mtu=${mtu}`);
      assert.match(r.output, fragNeeded, `the pod learnt the path MTU ${mtu}: ${r.output}`);
      assert.ok(r.errors.some((e) => e.startsWith(`From ${pa.gateway} `) && /Frag needed/.test(e)), `frag-needed from the host (${pa.gateway}): ${r.output}`);
      t.diagnostic(`pod of ${a.name} (MTU 1500): ${r.errors[0] ?? ''}`);
      const big = await pingArgs(pa, ['-c', '3', '-i', '0.2', '-W', '2', '-M', 'dont', '-s', '1472'], target);
      assert.equal(big.received, 3, describePing(`pod of ${a.name} (MTU 1500) -M dont -s 1472`, big));
    } finally {
      for (const [ns, ifname] of ifs) await ns.exec(['ip', 'link', 'set', 'dev', ifname, 'mtu', String(mtu)]);
      await pa.exec(['ip', 'route', 'flush', 'cache']);
    }
    await waitMesh([a, b]);
  });
});
