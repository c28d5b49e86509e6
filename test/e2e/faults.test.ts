/**
 * Faults end to end: real etcd (one member, or three), real daemons in host
 * namespaces, pods pinging each other while something breaks.
 *
 *  - udp:      etcd stopped for 60 s under `ping -i 0.2` (0 loss, renewals
 *              around the outage, nobody's subnet changes); a daemon
 *              SIGKILLed and restarted (same subnet; the pause is measured
 *              from `ping -D` stamps and reported); a dead host's lease
 *              expires (peers answer net-unreachable for it); a host's
 *              PublicIP changes (peers follow; time reported); the underlay
 *              link flaps (rudder0 survives, traffic works).
 *  - vxlan, host-gw: SIGKILL + restart under `ping -i 0.1` both ways loses
 *              nothing; a dead host's lease expires and its routes (and
 *              vxlan neighbor/FDB entries) go from every other host; an
 *              underlay flap (the kernel drops routes via the downed link)
 *              is repaired.
 *  - a 3-member etcd: a follower, then the leader, is killed under
 *              `ping -i 0.2`: no packet lost, renewals go on, late-joining
 *              hosts still get leases.
 * Nothing here asserts a duration: waits have generous give-ups, durations
 * are reported with t.diagnostic (collected in docs/reliability.md).
 */
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import { after, before, describe, it } from 'node:test';
import { createCluster, sleep, type Cluster, type Host, type Pod } from '../../src/topology';
import { skipUnlessEtcd, skipUnlessRoot } from '../helpers/env';
import { firstReplyAfter, longestGap, startPing, summary } from '../helpers/faults-net';
import { fdb, fullMesh, leaseOf, neighbors, podReaches, rudderRoutes } from '../helpers/kernel-backends-net';
import { waitUntil } from '../helpers/wait';

const skip = skipUnlessRoot || skipUnlessEtcd;
const SHORT_LEASE = ['-subnet-lease-ttl=20s', '-subnet-lease-renew-margin=10s'];
const DYING_LEASE = ['-subnet-lease-ttl=5s', '-subnet-lease-renew-margin=2s'];

const podOf = (h: Host): Pod => {
  assert.ok(h.pod, `${h.name} has a pod`);
  return h.pod;
};

/** Byte offset of a host's log now, to read only what it logs afterwards. */
const logMark = (h: Host): number => fs.statSync(h.logFile, { throwIfNoEntry: false })?.size ?? 0;
const logSince = (h: Host, mark: number): string => {
  const buf = fs.readFileSync(h.logFile);
  return buf.subarray(Math.min(mark, buf.length)).toString('utf8');
};
const count = (text: string, re: RegExp): number => (text.match(new RegExp(re.source, 'g')) ?? []).length;
const leaseKeys = async (c: Cluster): Promise<string[]> => (await c.listSubnets()).map((l) => `${l.subnet} ${String(l.value['PublicIP'])} ${l.hasLease ? 'lease' : 'reservation'}`).sort();

/** Waits until `h` logs a renewal after `mark`; returns when (ms epoch). */
async function nextRenewal(c: Cluster, h: Host, mark: number): Promise<number> {
  await waitUntil(() => /lease renewed/.test(logSince(h, mark)), { giveUpMs: c.giveUpMs, intervalMs: 200, what: `a lease renewal on ${h.name} (log ${h.logFile})` });
  return Date.now();
}

// ---------------------------------------------------------------------------

describe('faults: udp', { skip }, () => {
  let c: Cluster;
  let dir: string;
  const h = (i: number): Host => c.host(i);

  before(async () => {
    c = await createCluster({ hosts: 2, rudderArgs: SHORT_LEASE });
    dir = c.dir;
    await c.putConfig({ Network: '10.150.0.0/16', SubnetMin: '10.150.1.0', Backend: { Type: 'udp' } });
    await h(1).up();
    await h(2).up();
    await fullMesh(c, [h(1), h(2)]);
  });
  after(async () => {
    await c?.teardown();
  });

  it('etcd stopped for 60 s under ping -i 0.2: no packet lost, daemons reconnect, leases renew, no subnet changes', async (t) => {
    const before = await leaseKeys(c);
    const marks = [h(1), h(2)].map(logMark);
    // 60 s outage + room on both sides: 325 packets at 0.2 s.
    const fwd = await startPing(podOf(h(1)), podOf(h(2)).ip, { intervalS: 0.2, count: 325, dir, label: '1to2' });
    const back = await startPing(podOf(h(2)), podOf(h(1)).ip, { intervalS: 0.2, count: 325, dir, label: '2to1' });
    await sleep(1500);
    const stoppedAt = Date.now();
    await c.etcd.stop();
    await sleep(60_000);
    for (const x of [h(1), h(2)]) assert.ok(x.rudder?.running, `${x.name}'s daemon runs through the outage`);
    await c.etcd.start();
    const startedAt = Date.now();
    const backMarks = [h(1), h(2)].map(logMark);
    const [r1, r2] = await Promise.all([fwd.done, back.done]);
    assert.deepEqual(r1.lost, [], `pod1 → pod2 through the outage: ${summary(r1)}`);
    assert.deepEqual(r2.lost, [], `pod2 → pod1 through the outage: ${summary(r2)}`);
    assert.equal(r1.received, 325);

    const renewedAt: number[] = [];
    for (const [i, x] of [h(1), h(2)].entries()) {
      // A renewal logged after etcd is back (the TTL is 20 s, so one is due within ~10 s).
      renewedAt.push(await nextRenewal(c, x, backMarks[i] as number));
      const all = logSince(x, marks[i] as number);
      assert.match(all, /etcd unreachable/, `${x.name} logs that etcd is unreachable`);
      assert.match(all, /etcd reachable again/, `${x.name} says it reconnected (lease keeping)`);
    }
    // The lease watch retries on its own backoff (up to 15 s), independent of the renewal: wait for it.
    for (const [i, x] of [h(1), h(2)].entries()) {
      await waitUntil(() => /lease watch re-established/.test(logSince(x, marks[i] as number)), { what: `${x.name} to say it reconnected (watch)`, giveUpMs: 90_000 });
    }
    await sleep(21_000); // longer than one TTL: the keys live through renewals, not by luck
    assert.deepEqual(await leaseKeys(c), before, 'the same hosts hold the same subnets, as leases');
    await fullMesh(c, [h(1), h(2)]);
    const failed = [h(1), h(2)].map((x, i) => count(logSince(x, marks[i] as number), /etcd unreachable/));
    // Retries back off (0.5 s doubling to 10 s, ±50 %: never sooner than 250 ms) in each of the two loops
    // that log this (lease keeping, lease watch): more attempts than that means a retry loop without backoff.
    const most = 2 * (Math.ceil((startedAt - stoppedAt) / 250) + 2);
    for (const [i, n] of failed.entries()) assert.ok(n <= most, `h${i + 1} retried etcd ${n} times during the outage: more than backoff allows (${most})`);
    t.diagnostic(`outage ${Math.round((startedAt - stoppedAt) / 1000)} s; pod1→pod2 ${summary(r1)}; pod2→pod1 ${summary(r2)}; longest reply gap ${Math.round(longestGap(r1).ms)} / ${Math.round(longestGap(r2).ms)} ms; failed etcd attempts logged h1 ${failed[0]}, h2 ${failed[1]}; first renewal after etcd was back: ${renewedAt.map((x) => `${((x - startedAt) / 1000).toFixed(1)} s`).join(', ')} (upper bound, polled)`);
  });

  it('a daemon SIGKILLed and restarted keeps its subnet; traffic resumes after the restart (gap reported)', async (t) => {
    const before1 = await leaseOf(c, h(1));
    const run = await startPing(podOf(h(2)), podOf(h(1)).ip, { intervalS: 0.1, count: 80, dir, label: 'kill-udp' });
    await sleep(1500);
    const killedAt = Date.now();
    await h(1).killRudder();
    await sleep(1000);
    const stamp = h(1).subnetFileStamp();
    const restartAt = Date.now();
    await h(1).startRudder();
    const env = await h(1).waitSubnetFile({ changedSince: stamp });
    const r = await run.done;
    assert.equal(env.subnet, podOf(h(1)).gateway + '/' + String(podOf(h(1)).prefixLen), 'same RUDDER_SUBNET');
    assert.equal((await leaseOf(c, h(1))).subnet, before1.subnet, 'same lease');
    const resumed = firstReplyAfter(r, restartAt);
    assert.ok(resumed !== null, `replies resume after the restart: ${summary(r)}`);
    const gap = longestGap(r);
    t.diagnostic(`udp kill+restart: ${summary(r)}; no replies for ${Math.round(gap.ms)} ms (killed at +0, restart at +${restartAt - killedAt} ms, first reply after restart at +${Math.round(resumed - killedAt)} ms, i.e. ${Math.round(resumed - restartAt)} ms after the restart began)`);
  });

  it("a dead host's lease expires: the others answer net-unreachable for its pod", async (t) => {
    const h3 = await c.addHost({ rudderArgs: DYING_LEASE });
    await h3.up();
    await podReaches(c, h(1), h3);
    const l3 = await leaseOf(c, h3);
    const podIp = podOf(h3).ip;
    await h3.killRudder();
    const killedAt = Date.now();
    await waitUntil(async () => !(await c.listSubnets()).some((l) => l.subnet === l3.subnet), { giveUpMs: c.giveUpMs, intervalMs: 250, what: `lease ${l3.subnet} to expire` });
    const expiredAt = Date.now();
    for (const x of [h(1), h(2)]) {
      const r = await waitUntil(
        async () => {
          const p = await podOf(x).ping(podIp, { count: 1, replyWaitS: 1 });
          return p.errors.some((e) => /Net Unreachable/i.test(e)) ? p : undefined;
        },
        { giveUpMs: c.giveUpMs, intervalMs: 250, what: `${x.name} answering net-unreachable for ${podIp}` },
      );
      assert.equal(r.received, 0);
    }
    const goneAt = Date.now();
    t.diagnostic(`lease ${l3.subnet} (TTL 5 s) gone from etcd ${((expiredAt - killedAt) / 1000).toFixed(1)} s after SIGKILL; net-unreachable on both peers ${((goneAt - killedAt) / 1000).toFixed(1)} s after SIGKILL (polled)`);
  });

  it('a host whose PublicIP changes: the others follow', async (t) => {
    const h2 = h(2);
    const old = await leaseOf(c, h2);
    const NEW_IP = '198.18.1.2';
    await h2.ns.addAddress('eth0', `${NEW_IP}/15`);
    const stamp = h2.subnetFileStamp();
    await h2.stopRudder();
    const restartAt = Date.now();
    await h2.startRudder([`-public-ip=${NEW_IP}`, `-iface=${NEW_IP}`]);
    const env = await h2.waitSubnetFile({ changedSince: stamp });
    const pod = await h2.setupPod(env);
    const mine = (await c.listSubnets()).filter((l) => l.value['PublicIP'] === NEW_IP);
    assert.equal(mine.length, 1, 'one lease names the new address');
    await waitUntil(async () => (await podOf(h(1)).ping(pod.ip, { count: 1, replyWaitS: 1 })).received === 1, { giveUpMs: c.giveUpMs, intervalMs: 100, what: `pod of h1 reaching ${pod.ip} behind ${NEW_IP}` });
    const followedAt = Date.now();
    await podReaches(c, h2, h(1));
    // The lease under the old address was not renewed by anyone: it expires and its peer entry goes.
    const sameSubnet = mine[0]?.subnet === old.subnet;
    if (!sameSubnet) {
      await waitUntil(async () => !(await c.listSubnets()).some((l) => l.subnet === old.subnet), { giveUpMs: c.giveUpMs, intervalMs: 500, what: `old lease ${old.subnet} to expire` });
    }
    t.diagnostic(`PublicIP 198.18.0.2 → ${NEW_IP}: subnet ${old.subnet} → ${mine[0]?.subnet}${sameSubnet ? '' : ' (the old lease still named the old address, so a new subnet was taken; the old one expired after its TTL)'}; h1's pod reached h2's pod ${followedAt - restartAt} ms after the daemon restart began (polled every 100 ms)`);
  });

  it('the underlay link flaps: rudder0 survives and traffic works again', async (t) => {
    const h1 = h(1);
    const tunBefore = (await h1.ns.ip(['-j', 'link', 'show', 'dev', 'rudder0'])).stdout;
    await h1.ns.ip(['link', 'set', 'eth0', 'down']);
    await sleep(2000);
    const during = await h1.ns.ip(['-j', 'link', 'show', 'dev', 'rudder0'], { allowFailure: true });
    await h1.ns.ip(['link', 'set', 'eth0', 'up']);
    const upAt = Date.now();
    try {
      assert.equal(during.code, 0, 'rudder0 still exists while eth0 is down');
      assert.equal((JSON.parse(during.stdout) as Array<{ ifindex: number }>)[0]?.ifindex, (JSON.parse(tunBefore) as Array<{ ifindex: number }>)[0]?.ifindex, 'the same rudder0');
      for (const x of c.hosts.filter((y) => y !== h1 && y.rudder?.running)) {
        await podReaches(c, h1, x);
        await podReaches(c, x, h1);
      }
      t.diagnostic(`udp: traffic in both directions again ${Date.now() - upAt} ms after eth0 came back up (polled)`);
      assert.ok(h1.rudder?.running);
    } finally {
      // The harness's default route went with the link; put it back as the host's network manager would.
      await h1.ns.ip(['route', 'replace', 'default', 'via', '198.18.0.250', 'dev', 'eth0'], { allowFailure: true });
    }
  });
});

// ---------------------------------------------------------------------------

for (const [n, kind] of (['vxlan', 'host-gw'] as const).entries()) {
  describe(`faults: ${kind}`, { skip }, () => {
    let c: Cluster;
    let dir: string;
    const h = (i: number): Host => c.host(i);
    const VXLAN_DEV = 'rudder.1';

    before(async () => {
        c = await createCluster({ hosts: 2 });
      dir = c.dir;
      await c.putConfig({ Network: `10.${151 + n}.0.0/16`, Backend: { Type: kind } });
      await h(1).up();
      await h(2).up();
      await fullMesh(c, [h(1), h(2)]);
    });
    after(async () => {
      await c?.teardown();
    });

    it('a daemon SIGKILLed and restarted: same subnet, ping -i 0.1 both ways loses nothing', async (t) => {
      const before1 = await leaseOf(c, h(1));
      const fwd = await startPing(podOf(h(1)), podOf(h(2)).ip, { intervalS: 0.1, count: 100, dir, label: `${kind}-1to2` });
      const back = await startPing(podOf(h(2)), podOf(h(1)).ip, { intervalS: 0.1, count: 100, dir, label: `${kind}-2to1` });
      await sleep(1500);
      await h(1).killRudder();
      await sleep(1000);
      const stamp = h(1).subnetFileStamp();
      await h(1).startRudder();
      await h(1).waitSubnetFile({ changedSince: stamp });
      const [r1, r2] = await Promise.all([fwd.done, back.done]);
      assert.equal((await leaseOf(c, h(1))).subnet, before1.subnet, 'same subnet');
      assert.deepEqual((await leaseOf(c, h(1))).value['BackendData'], before1.value['BackendData'], 'same BackendData');
      assert.deepEqual(r1.lost, [], `pod1 → pod2 across kill + restart of h1: ${summary(r1)}`);
      assert.deepEqual(r2.lost, [], `pod2 → pod1 across kill + restart of h1: ${summary(r2)}`);
      t.diagnostic(`${kind} kill+restart: ${summary(r1)} / ${summary(r2)}; longest reply gap ${Math.round(longestGap(r1).ms)} / ${Math.round(longestGap(r2).ms)} ms`);
    });

    it("a dead host's lease expires: its routes go from every other host", async (t) => {
      const h3 = await c.addHost({ rudderArgs: DYING_LEASE });
      await h3.up();
      await podReaches(c, h(1), h3);
      const l3 = await leaseOf(c, h3);
      const mac = (l3.value['BackendData'] as { VtepMAC?: string }).VtepMAC;
      const state = async (x: Host): Promise<string[]> => {
        const out: string[] = [];
        if ((await rudderRoutes(x)).some((r) => r.dst === l3.subnet)) out.push('route');
        if (kind === 'vxlan') {
          if ((await neighbors(x, VXLAN_DEV)).some((e) => e.dst === l3.subnet.split('/')[0])) out.push('neighbor');
          if ((await fdb(x, VXLAN_DEV)).some((e) => e.mac === mac)) out.push('fdb');
        }
        return out;
      };
      for (const x of [h(1), h(2)]) assert.deepEqual(await state(x), kind === 'vxlan' ? ['route', 'neighbor', 'fdb'] : ['route'], `${x.name} has ${h3.name}'s state first`);
      await h3.killRudder();
      const killedAt = Date.now();
      for (const x of [h(1), h(2)]) {
        await waitUntil(async () => (await state(x)).length === 0, { giveUpMs: c.giveUpMs, intervalMs: 250, what: `${x.name} dropping ${l3.subnet}` });
      }
      const goneAt = Date.now();
      assert.ok(!(await c.listSubnets()).some((l) => l.subnet === l3.subnet), 'the lease is gone from etcd');
      await fullMesh(c, [h(1), h(2)]);
      t.diagnostic(`${kind}: ${h3.name}'s ${l3.subnet} (TTL 5 s) gone from both peers ${((goneAt - killedAt) / 1000).toFixed(1)} s after SIGKILL (polled)`);
    });

    it('the underlay link flaps: routes and devices are restored, traffic works again', async (t) => {
      const h1 = h(1);
      const peer = await leaseOf(c, h(2));
      await h1.ns.ip(['link', 'set', 'eth0', 'down']);
      await sleep(1000);
      const routesDown = (await rudderRoutes(h1)).filter((r) => r.dst === peer.subnet);
      await h1.ns.ip(['link', 'set', 'eth0', 'up']);
      const upAt = Date.now();
      try {
        if (kind === 'host-gw') assert.equal(routesDown.length, 0, 'the kernel dropped the route via the downed link (the fault is real)');
        await waitUntil(async () => (await rudderRoutes(h1)).some((r) => r.dst === peer.subnet), { giveUpMs: c.giveUpMs, intervalMs: 100, what: `${h1.name}'s route to ${peer.subnet} back` });
        const routeAt = Date.now();
        if (kind === 'vxlan') {
          const mac = (peer.value['BackendData'] as { VtepMAC: string }).VtepMAC;
          await waitUntil(async () => (await fdb(h1, VXLAN_DEV)).some((e) => e.mac === mac && e.dst === h(2).underlayIp), { giveUpMs: c.giveUpMs, intervalMs: 100, what: 'the FDB entry of h2' });
        }
        await podReaches(c, h1, h(2));
        await podReaches(c, h(2), h1);
        t.diagnostic(`${kind}: routes via the downed link during the flap: ${routesDown.length}; route back ${routeAt - upAt} ms and pods reach each other ${Date.now() - upAt} ms after eth0 came up (polled)`);
      } finally {
        await h1.ns.ip(['route', 'replace', 'default', 'via', '198.18.0.250', 'dev', 'eth0'], { allowFailure: true });
      }
    });
  });
}

// ---------------------------------------------------------------------------

interface MemberStatus {
  endpoint: string;
  memberId: string;
  leader: string;
}

/** `etcdctl endpoint status -w json` of the members that answer (IDs kept as strings: they are uint64). */
async function endpointStatus(c: Cluster): Promise<MemberStatus[]> {
  const r = await c.etcdctl(['endpoint', 'status', '-w', 'json', '--command-timeout=3s', '--dial-timeout=2s'], { allowFailure: true });
  const text = r.stdout.trim().replace(/:(\d{10,})/g, ':"$1"');
  if (text === '') return [];
  const arr = JSON.parse(text) as Array<{ Endpoint: string; Status: { header: { member_id: string }; leader: string } }>;
  return arr.map((e) => ({ endpoint: e.Endpoint, memberId: String(e.Status.header.member_id), leader: String(e.Status.leader) }));
}

describe('faults: 3-member etcd', { skip }, () => {
  let c: Cluster;
  let dir: string;
  const h = (i: number): Host => c.host(i);

  before(async () => {
    c = await createCluster({ hosts: 2, etcdMembers: 3, rudderArgs: SHORT_LEASE });
    dir = c.dir;
    await c.putConfig({ Network: '10.153.0.0/16', SubnetMin: '10.153.1.0', Backend: { Type: 'udp' } });
    await h(1).up();
    await h(2).up();
    await fullMesh(c, [h(1), h(2)]);
  });
  after(async () => {
    await c?.teardown();
  });

  it('losing a follower, then the leader: no packet lost, renewals go on, late joiners get leases', async (t) => {
    assert.equal(c.etcdEndpoints.length, 3);
    assert.ok(h(1).rudderArgv().some((a) => a === `-etcd-endpoint=${c.etcdEndpoints.join(',')}`), 'daemons are given all three endpoints');
    const fwd = await startPing(podOf(h(1)), podOf(h(2)).ip, { intervalS: 0.2, count: 450, dir, label: 'etcd3-1to2' });
    const back = await startPing(podOf(h(2)), podOf(h(1)).ip, { intervalS: 0.2, count: 450, dir, label: 'etcd3-2to1' });
    const figures: string[] = [];

    const status0 = await endpointStatus(c);
    const leaderId = status0[0]?.leader;
    assert.ok(leaderId, `a leader: ${JSON.stringify(status0)}`);
    const leaderIdx = c.etcdServers.findIndex((s) => status0.find((x) => x.endpoint === s.clientUrl)?.memberId === leaderId);
    assert.ok(leaderIdx >= 0, `the leader is one of the members: ${JSON.stringify(status0)}`);
    const followerIdx = [0, 1, 2].find((i) => i !== leaderIdx) as number;

    // 1. A follower dies (SIGKILL).
    let marks = [h(1), h(2)].map(logMark);
    let t0 = Date.now();
    await c.etcdServers[followerIdx]!.kill();
    const r1 = await Promise.all([h(1), h(2)].map((x, i) => nextRenewal(c, x, marks[i] as number)));
    figures.push(`follower ${c.etcdServers[followerIdx]!.name} killed: next renewals after ${r1.map((x) => ((x - t0) / 1000).toFixed(1)).join(' / ')} s`);
    const h3 = await c.addHost();
    const j3 = Date.now();
    await h3.up();
    figures.push(`h3 joined with 2 of 3 members in ${Date.now() - j3} ms`);
    await podReaches(c, h3, h(1));
    await c.etcdServers[followerIdx]!.start();

    // 2. The leader dies (SIGKILL), found through endpoint status.
    await waitUntil(async () => (await endpointStatus(c)).length === 3, { giveUpMs: c.giveUpMs, intervalMs: 500, what: 'all three members answering again' });
    const status1 = await endpointStatus(c);
    const lead = c.etcdServers.findIndex((s) => status1.find((x) => x.endpoint === s.clientUrl)?.memberId === status1[0]?.leader);
    assert.ok(lead >= 0, `leader found: ${JSON.stringify(status1)}`);
    marks = [h(1), h(2), h3].map(logMark);
    t0 = Date.now();
    await c.etcdServers[lead]!.kill();
    const newLeader = await waitUntil(
      async () => {
        const s = await endpointStatus(c);
        const l = s[0]?.leader;
        return l && l !== '0' && s.some((x) => x.memberId === l) && l !== status1[0]?.leader ? l : undefined;
      },
      { giveUpMs: c.giveUpMs, intervalMs: 100, what: 'a new leader' },
    );
    const electedAt = Date.now();
    const r2 = await Promise.all([h(1), h(2), h3].map((x, i) => nextRenewal(c, x, marks[i] as number)));
    figures.push(`leader ${c.etcdServers[lead]!.name} killed: new leader ${newLeader} seen after ${electedAt - t0} ms (polled); next renewals after ${r2.map((x) => ((x - t0) / 1000).toFixed(1)).join(' / ')} s`);
    const h4 = await c.addHost();
    const j4 = Date.now();
    await h4.up();
    figures.push(`h4 joined after the leader loss in ${Date.now() - j4} ms`);
    await podReaches(c, h4, h(2));
    await podReaches(c, h(1), h4);

    const [p1, p2] = await Promise.all([fwd.done, back.done]);
    assert.deepEqual(p1.lost, [], `pod1 → pod2 through both member losses: ${summary(p1)}`);
    assert.deepEqual(p2.lost, [], `pod2 → pod1 through both member losses: ${summary(p2)}`);
    const subnets = (await c.listSubnets()).map((l) => l.subnet);
    assert.equal(new Set(subnets).size, 4, `four hosts, four subnets: ${subnets.join(', ')}`);
    for (const x of [h(1), h(2), h3, h4]) assert.ok(x.rudder?.running, `${x.name} runs`);
    figures.push(`pings ${summary(p1)} / ${summary(p2)}`);
    t.diagnostic(figures.join('; '));
  });
});
