/**
 * host-gw carrying IPv6 end to end, on one shared cluster with an IPv6
 * underlay (2001:2::N/64 beside the IPv4 one), real etcd and the real
 * daemon: a dual-stack network on h1-h3 (and a late h7) and an IPv6-only
 * network, under its own etcd prefix, on h4-h6. Every pod pings every
 * other over IPv6 (and IPv4 when on); a 50 MB IPv6 TCP transfer arrives
 * intact; a 1,400-byte ping6 passes unfragmented; a route deleted by hand
 * comes back; a restarted daemon keeps both subnets. Waits have generous
 * give-ups; nothing asserts how fast anything happened.
 */
import assert from 'node:assert/strict';
import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { createCluster, run, type Cluster, type Host, type Pod } from '../../src/topology';
import { skipUnlessEtcd, skipUnlessRoot } from '../helpers/env';
import { eventually } from '../helpers/kernel-backends-net';
import { tempDir } from '../helpers/tmp';
import { waitUntil } from '../helpers/wait';

const V6ONLY_PREFIX = '/rudder-v6only/network';
const DUAL = { Network: '10.50.0.0/16', EnableIPv6: true, IPv6Network: 'fd50:50::/48', IPv6SubnetLen: 64, Backend: { Type: 'host-gw' } };
const V6ONLY = { EnableIPv4: false, EnableIPv6: true, IPv6Network: 'fd51:51::/48', IPv6SubnetLen: 64, Backend: { Type: 'host-gw' } };

interface IpRoute6 {
  dst: string;
  gateway?: string;
  dev?: string;
  metric?: number;
}

async function ipJson<T>(h: Host, args: readonly string[]): Promise<T[]> {
  const r = await run(['ip', '-n', h.ns.name, '-j', ...args], { allowFailure: true });
  const text = r.stdout.trim();
  return r.code !== 0 || text === '' ? [] : (JSON.parse(text) as T[]);
}

/** Rudder's routes (protocol 82) of the main table, of one family. */
const rudderRoutes = (h: Host, family: '-4' | '-6'): Promise<IpRoute6[]> => ipJson<IpRoute6>(h, [family, 'route', 'show', 'table', 'main', 'proto', '82']);

function podOf(h: Host): Pod {
  if (h.pod === null) throw new Error(`${h.name} has no pod`);
  return h.pod;
}

/** Waits until `from`'s pod gets an echo reply from `to`'s pod over one family. */
async function reaches(c: Cluster, from: Host, to: Host, family: 4 | 6): Promise<void> {
  const src = podOf(from);
  const dst = family === 6 ? podOf(to).ipv6 : podOf(to).ipv4;
  if (dst === null) throw new Error(`${to.name}'s pod has no IPv${family} address`);
  await waitUntil(
    async () => {
      const r = await src.ping(dst, { count: 1, replyWaitS: 1 });
      if (r.received < 1) throw new Error(`no reply: ${r.output.trim()}`);
      return true;
    },
    { giveUpMs: c.giveUpMs, intervalMs: 300, what: `pod of ${from.name} reaching ${dst} (pod of ${to.name}) over IPv${family} (logs: ${from.logFile}, ${to.logFile})` },
  );
}

/** Every pod reaches every other over each family given. */
async function mesh(c: Cluster, hosts: readonly Host[], families: ReadonlyArray<4 | 6>): Promise<void> {
  for (const a of hosts) for (const b of hosts) if (a !== b) for (const f of families) await reaches(c, a, b, f);
}

async function sha256(file: string): Promise<string> {
  const h = crypto.createHash('sha256');
  for await (const chunk of fs.createReadStream(file)) h.update(chunk as Buffer);
  return h.digest('hex');
}

describe('host-gw with IPv6 (dual-stack and IPv6-only, IPv6 underlay)', { skip: skipUnlessRoot || skipUnlessEtcd }, () => {
  let c: Cluster;
  const dual: Host[] = [];
  const v6only: Host[] = [];

  before(async () => {
    c = await createCluster({ hosts: 0, ipv6: true });
    await c.putConfig(DUAL);
    await c.putConfig(V6ONLY, V6ONLY_PREFIX);
    for (let i = 0; i < 3; i++) dual.push(await c.addHost());
    for (let i = 0; i < 3; i++) {
      // The last one names its interface by its IPv6 address.
      const args = [`-etcd-prefix=${V6ONLY_PREFIX}`, ...(i === 2 ? [`-iface=2001:2::${4 + i}`] : [])];
      v6only.push(await c.addHost({ rudderArgs: args }));
    }
    await Promise.all([...dual, ...v6only].map((h) => h.up()));
  });

  after(async () => {
    await c?.teardown();
  });

  it('dual-stack: both subnets in each subnet file and lease; every pod pings every other over IPv4 and IPv6', async () => {
    const keys = (await c.getPrefix(`${c.etcdPrefix}/subnets/`)).map((kv) => kv.key.slice(`${c.etcdPrefix}/subnets/`.length));
    for (const h of dual) {
      const env = h.readSubnetFile();
      assert.ok(env?.ipv4 && env.ipv6Subnet !== undefined, `${h.name}: ${JSON.stringify(env)}`);
      assert.equal(env.mtu, 1500);
      const key = `${env.subnet.replace(/\.1\/24$/, '.0-24')}&${env.ipv6Subnet.replace(/::1\/64$/, '::-64')}`;
      assert.ok(keys.includes(key), `lease key ${key} in ${JSON.stringify(keys)}`);
    }
    for (const kv of await c.getPrefix(`${c.etcdPrefix}/subnets/`)) {
      const v = JSON.parse(kv.value) as Record<string, unknown>;
      const h = dual.find((x) => x.underlayIp === v['PublicIP']);
      assert.ok(h, `lease ${kv.key}: ${kv.value}`);
      assert.equal(v['PublicIPv6'], h.underlayIpv6);
      assert.equal(v['BackendType'], 'host-gw');
    }
    await mesh(c, dual, [4, 6]);
  });

  it('dual-stack: each host routes each peer\'s IPv6 subnet via its PublicIPv6 on eth0 (and IPv4 as before)', async () => {
    for (const viewer of dual) {
      const r6 = await rudderRoutes(viewer, '-6');
      const r4 = await rudderRoutes(viewer, '-4');
      for (const peer of dual) {
        if (peer === viewer) continue;
        const env = peer.readSubnetFile();
        const v6 = (env?.ipv6Subnet ?? '').replace(/::1\/64$/, '::/64');
        const r = r6.find((x) => x.dst === v6);
        assert.ok(r, `${viewer.name} has a route to ${v6}: ${JSON.stringify(r6)}`);
        assert.deepEqual([r.gateway, r.dev, r.metric], [peer.underlayIpv6, 'eth0', 1024]);
        const v4 = (env?.subnet ?? '').replace(/\.1\/24$/, '.0/24');
        assert.equal(r4.find((x) => x.dst === v4)?.gateway, peer.underlayIp);
      }
      assert.equal(r6.length, dual.length - 1, `only peers' routes: ${JSON.stringify(r6)}`);
    }
  });

  it('IPv6-only: IPv6 subnets only (lease key 0.0.0.0-0&...), no IPv4 routes, every pod pings every other over IPv6', async () => {
    const keys = (await c.getPrefix(`${V6ONLY_PREFIX}/subnets/`)).map((kv) => kv.key.slice(`${V6ONLY_PREFIX}/subnets/`.length));
    assert.equal(keys.length, 3);
    for (const h of v6only) {
      const env = h.readSubnetFile();
      assert.ok(env && !env.ipv4 && env.ipv6Subnet?.startsWith('fd51:51:'), `${h.name}: ${JSON.stringify(env)}`);
      assert.equal(env.raw['RUDDER_SUBNET'], undefined);
      assert.ok(keys.includes(`0.0.0.0-0&${(env.ipv6Subnet ?? '').replace(/::1\/64$/, '::-64')}`), JSON.stringify(keys));
      assert.deepEqual(await rudderRoutes(h, '-4'), []);
    }
    await mesh(c, v6only, [6]);
    for (const viewer of v6only) assert.equal((await rudderRoutes(viewer, '-6')).length, 2, viewer.name);
  });

  it('a 50 MB TCP transfer over IPv6 between pods on two hosts arrives intact', async (t) => {
    const [a, b] = [dual[0] as Host, dual[1] as Host];
    const dir = tempDir(t, 'rudder-v6-tcp-');
    const src = path.join(dir, 'in');
    const dst = path.join(dir, 'out');
    await run(['sh', '-c', `head -c 50M /dev/urandom > '${src}'`]);
    const port = 5001;
    const listener = await podOf(b).ns.spawn(['socat', '-u', `TCP6-LISTEN:${port},reuseaddr`, `OPEN:${dst},creat,trunc`], {
      logFile: path.join(dir, 'socat-listen.log'),
      label: `socat listener in pod of ${b.name}`,
    });
    try {
      await podOf(a).exec(['socat', '-u', `FILE:${src}`, `TCP6:[${podOf(b).ipv6 as string}]:${port},retry=200,interval=0.2`]);
      const ex = await listener.exited;
      assert.deepEqual(ex, { code: 0, signal: null }, `listener: ${listener.logTail()}`);
    } finally {
      await listener.stop(2_000);
    }
    assert.equal(fs.statSync(dst).size, 50 * 1024 * 1024, 'received size');
    assert.equal(await sha256(dst), await sha256(src), 'sha256 of what arrived equals what was sent');
  });

  it('a 1,400-byte ping6 passes without fragmentation, on both networks', async () => {
    for (const [from, to] of [[dual[0], dual[2]], [v6only[0], v6only[1]]] as Array<[Host, Host]>) {
      const r = await podOf(from).ping(podOf(to).ipv6 as string, { count: 3, size: 1400, dontFragment: true });
      assert.equal(r.received, 3, r.output);
    }
  });

  it('an IPv6 route deleted by hand is restored (the kernel notification starts a reconcile)', async () => {
    const [viewer, target] = [dual[1] as Host, dual[2] as Host];
    const v6 = (target.readSubnetFile()?.ipv6Subnet ?? '').replace(/::1\/64$/, '::/64');
    await viewer.exec(['ip', '-6', 'route', 'del', v6]);
    await eventually(c, `${viewer.name} restoring its route to ${v6}`, async () => (await rudderRoutes(viewer, '-6')).some((r) => r.dst === v6));
    await reaches(c, viewer, target, 6);
  });

  it('a late-joining host is reached over both families without restarting the others', async () => {
    const pids = dual.map((h) => h.rudder?.pid);
    const late = await c.addHost();
    await late.up();
    for (const h of dual) {
      for (const f of [4, 6] as const) {
        await reaches(c, late, h, f);
        await reaches(c, h, late, f);
      }
    }
    assert.deepEqual(dual.map((h) => h.rudder?.pid), pids, 'no daemon was restarted');
    dual.push(late);
  });

  it('a restarted daemon keeps both subnets (dual-stack) and its IPv6 subnet (IPv6-only), and traffic works after', async () => {
    for (const h of [dual[0] as Host, v6only[0] as Host]) {
      const before1 = h.readSubnetFile();
      const stamp = h.subnetFileStamp();
      await h.restartRudder();
      const env = await h.waitSubnetFile({ changedSince: stamp });
      assert.deepEqual([env.subnet, env.ipv6Subnet], [before1?.subnet, before1?.ipv6Subnet], `${h.name} kept its subnets`);
    }
    await mesh(c, dual, [4, 6]);
    await mesh(c, v6only, [6]);
  });
});
