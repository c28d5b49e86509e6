/**
 * Rudder beside the real flanneld (upstream v0.20.2, from the project's
 * anchors): for each of udp, vxlan and host-gw, one cluster with real etcd
 * where some hosts run flanneld and the others run rudder, each host with a
 * docker0-like bridge built from its own daemon's subnet file and a pod
 * behind it. Guards what users coming from flannel rely on: one network
 * (every pod reaches every other, both ways), leases each side reads, a
 * flannel host leaving (its routes go on the Rudder hosts) and joining
 * (reached by everyone), and a flannel host switched to Rudder in place
 * (same lease key, same subnet, the pod keeps working; with vxlan Rudder
 * replaces the flannel.1 that flanneld leaves behind), also when only
 * flanneld's subnet file is left of its lease; and a VXLAN device that is
 * not flanneld's holding the VNI stops Rudder with an error that names it and
 * says what to do, untouched, and Rudder starts once it is gone. The three
 * clusters run side by side; the tests inside each run in order.
 *
 * flanneld's quirks (see the anchors' README): it misses leases created
 * while it is starting, so hosts start one after another with a pause after
 * each flannel host; its exit status is never looked at. Waits have
 * generous give-ups; nothing asserts how fast anything happened.
 */
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import { after, before, describe, it } from 'node:test';
import { createCluster, run, sleep, type Cluster, type Host, type PingResult, type SubnetEnv } from '../../src/topology';
import { skipUnlessEtcd, skipUnlessRoot } from '../helpers/env';
import { Flanneld, flanneldBinary, skipUnlessFlanneld } from '../helpers/flanneld';
import { eventually, fdb, neighbors, rudderRoutes, type IpRoute } from '../helpers/kernel-backends-net';
import { waitUntil } from '../helpers/wait';

type Kind = 'udp' | 'vxlan' | 'host-gw';
type Role = 'rudder' | 'flannel';

interface Case {
  kind: Kind;
  /** Daemon of h1, h2, h3. */
  roles: [Role, Role, Role];
  /** The flannel host that leaves. */
  leaving: number;
  /** The flannel host switched to Rudder in place (issue 17, part 2). */
  migrating: number;
}

const CASES: Case[] = [
  { kind: 'udp', roles: ['rudder', 'flannel', 'flannel'], leaving: 3, migrating: 2 },
  {
    kind: 'vxlan',
    roles: ['rudder', 'flannel', 'rudder'],
    leaving: 2,
    migrating: 4,
  },
  { kind: 'host-gw', roles: ['flannel', 'rudder', 'flannel'], leaving: 1, migrating: 3 },
];

const MTU: Record<Kind, number> = { udp: 1472, vxlan: 1450, 'host-gw': 1500 };
/** Pause after a flannel host is up, so that no lease appears while it lists and starts its watch. */
const FLANNEL_SETTLE_MS = 2000;

const netAddr = (cidr: string): string => cidr.split('/')[0] as string;

/** One host of the mixed cluster and the daemon it runs now. */
interface Member {
  host: Host;
  role: Role;
  flanneld: Flanneld | null;
}

const logsOf = (m: Member): string => [m.flanneld?.logFile, m.host.rudder ? m.host.logFile : undefined].filter((x) => x !== undefined).join(', ');
const label = (m: Member): string => `${m.host.name} (${m.role})`;

function describePing(p: PingResult): string {
  return `${p.received}/${p.transmitted} replies${p.errors.length > 0 ? `, ${p.errors.join('; ')}` : ''}`;
}

// The three backends run side by side, each in its own cluster (own namespaces, own etcd).
describe('flannel interop', { skip: skipUnlessRoot || skipUnlessEtcd || skipUnlessFlanneld, concurrency: true }, () => {
  for (const [n, tc] of CASES.entries()) {
    const { kind } = tc;
    const octet = 50 + n;
    const network = `10.${octet}.0.0/16`;
    const config = { Network: network, Backend: { Type: kind } };
    const nFlannel = tc.roles.filter((r) => r === 'flannel').length;

    describe(`${kind}: ${3 - nFlannel} rudder + ${nFlannel} flanneld`, { concurrency: 1 }, () => {
      let c: Cluster;
      let bin: string;
      const members: Member[] = [];
      const member = (i: number): Member => {
        const m = members.find((x) => x.host.index === i);
        if (!m) throw new Error(`no member h${i}`);
        return m;
      };
      const present = (): Member[] => members.filter((m) => (m.role === 'rudder' ? m.host.rudder?.running : m.flanneld?.running));

      /** The lease (key, subnet, value) whose PublicIP is this host's. */
      async function leaseOf(h: Host): Promise<{ key: string; subnet: string; value: Record<string, unknown> }> {
        const kvs = await c.getPrefix(`${c.etcdPrefix}/subnets/`);
        const mine = kvs.filter((kv) => (JSON.parse(kv.value) as { PublicIP?: string }).PublicIP === h.underlayIp);
        if (mine.length !== 1) throw new Error(`${h.name}: expected one lease with PublicIP ${h.underlayIp}, found ${JSON.stringify(kvs)}`);
        const kv = mine[0] as { key: string; value: string };
        const k = kv.key.slice(`${c.etcdPrefix}/subnets/`.length);
        const dash = k.lastIndexOf('-');
        return { key: kv.key, subnet: `${k.slice(0, dash)}/${k.slice(dash + 1)}`, value: JSON.parse(kv.value) as Record<string, unknown> };
      }

      async function bringUp(i: number, role: Role): Promise<SubnetEnv> {
        const host = c.hosts.find((x) => x.index === i) ?? (await c.addHost());
        assert.equal(host.index, i);
        const m: Member = { host, role, flanneld: role === 'flannel' ? new Flanneld(c, host, bin) : null };
        members.push(m);
        if (m.flanneld) {
          const env = await m.flanneld.up();
          await sleep(FLANNEL_SETTLE_MS);
          return env;
        }
        return (await host.up()).env;
      }

      async function reaches(a: Member, b: Member): Promise<void> {
        const src = a.host.pod;
        const dst = b.host.pod;
        if (!src || !dst) throw new Error(`${label(a)} → ${label(b)}: pod missing`);
        await waitUntil(
          async () => {
            const p = await src.ping(dst.ip, { count: 1, replyWaitS: 1 });
            if (p.received < 1) throw new Error(describePing(p));
            return true;
          },
          { giveUpMs: c.giveUpMs, intervalMs: 300, what: `pod of ${label(a)} (${src.ip}) reaching pod of ${label(b)} (${dst.ip}); logs ${logsOf(a)}; ${logsOf(b)}` },
        );
      }

      /** Every pod reaches every other pod, both ways (all pairs at once). */
      async function fullMesh(ms: readonly Member[]): Promise<void> {
        const pairs: Array<[Member, Member]> = [];
        for (const a of ms) for (const b of ms) if (a !== b) pairs.push([a, b]);
        await Promise.all(pairs.map(([a, b]) => reaches(a, b)));
      }

      /** The main routing table of a host (flanneld stamps its routes with no protocol of its own). */
      async function flannelRoutes(h: Host): Promise<IpRoute[]> {
        const r = await run(['ip', '-n', h.ns.name, '-j', '-4', 'route', 'show', 'table', 'main'], { allowFailure: true });
        return r.code === 0 && r.stdout.trim() !== '' ? (JSON.parse(r.stdout) as IpRoute[]) : [];
      }

      /** What a Rudder host has programmed for a lease: a route (vxlan: also neighbor and FDB entry). */
      async function rudderHasState(viewer: Host, subnet: string, publicIp: string, vtepMac: string | undefined): Promise<{ route: boolean; neigh: boolean; fdb: boolean }> {
        const route = (await rudderRoutes(viewer)).some((r) => r.dst === subnet);
        if (kind !== 'vxlan') return { route, neigh: false, fdb: false };
        const neigh = (await neighbors(viewer, 'rudder.1')).some((x) => x.dst === netAddr(subnet));
        const f = (await fdb(viewer, 'rudder.1')).some((x) => (vtepMac !== undefined && x.mac === vtepMac) || x.dst === publicIp);
        return { route, neigh, fdb: f };
      }

      before(async () => {
        bin = await flanneldBinary();
        c = await createCluster({ hosts: 3, underlayMtu: 1500 });
        await c.putConfig(config);
      });
      after(async () => {
        await c?.teardown();
      });

      it('hosts of both daemons share one network: same MTU, every pod reaches every other', async () => {
        for (const [j, role] of tc.roles.entries()) {
          const env = await bringUp(j + 1, role);
          assert.equal(env.network, network, `${label(member(j + 1))} network`);
          assert.equal(env.mtu, MTU[kind], `${label(member(j + 1))} MTU of the ${kind} backend`);
        }
        await fullMesh(members);
      });

      it('leases: flannel-shaped values, each daemon reads and routes the other’s', async () => {
        const leases = new Map<number, Awaited<ReturnType<typeof leaseOf>>>();
        for (const m of members) leases.set(m.host.index, await leaseOf(m.host));
        for (const m of members) {
          const l = leases.get(m.host.index)!;
          const env = m.role === 'flannel' ? m.flanneld!.readSubnetFile() : m.host.readSubnetFile();
          assert.equal(env?.subnet, `${formatFirstHost(l.subnet)}`, `${label(m)} subnet file matches its lease ${l.subnet}`);
          if (m.role === 'flannel') {
            // flannel's own shapes: udp has no BackendType; vxlan carries its VTEP MAC.
            if (kind === 'udp') assert.equal(l.value['BackendType'], undefined, JSON.stringify(l.value));
            else assert.equal(l.value['BackendType'], kind, JSON.stringify(l.value));
          } else {
            assert.equal(l.value['BackendType'], kind, JSON.stringify(l.value));
          }
          if (kind === 'vxlan') {
            const data = l.value['BackendData'] as { VNI?: number; VtepMAC?: string } | undefined;
            assert.match(data?.VtepMAC ?? '', /^[0-9a-f]{2}(:[0-9a-f]{2}){5}$/, `${label(m)} VtepMAC: ${JSON.stringify(l.value)}`);
          }
        }

        // `rudder leases` on a Rudder host lists every lease, flanneld's with its backend, none invalid.
        const viewer = members.find((m) => m.role === 'rudder')!;
        // Flags before the subcommand: after it, `rudder leases` ignores them (see the report of issue 17).
        const r = await viewer.host.exec([c.rudderBin, `-etcd-endpoint=${c.etcdEndpoints.join(',')}`, `-etcd-prefix=${c.etcdPrefix}`, 'leases'], { env: c.rudderEnv });
        assert.doesNotMatch(r.stderr, /invalid/, r.stderr);
        const rows = r.stdout.trim().split('\n').slice(1).map((line) => line.trim().split(/\s+/));
        assert.equal(rows.length, members.length, r.stdout);
        for (const m of members) {
          const l = leases.get(m.host.index)!;
          const row = rows.find((x) => x[0] === l.subnet);
          assert.ok(row, `${label(m)}'s lease ${l.subnet} listed:\n${r.stdout}`);
          assert.equal(row[1], m.host.underlayIp, r.stdout);
          assert.equal(row[2], kind, r.stdout);
        }

        // Each side programmed the other's leases (udp routes by its data plane: the pings above show it).
        if (kind === 'udp') return;
        for (const v of members) {
          for (const p of members) {
            if (p === v) continue;
            const l = leases.get(p.host.index)!;
            if (v.role === 'rudder') {
              const mac = (l.value['BackendData'] as { VtepMAC?: string } | undefined)?.VtepMAC;
              const s = await rudderHasState(v.host, l.subnet, p.host.underlayIp, mac);
              assert.ok(s.route && (kind !== 'vxlan' || (s.neigh && s.fdb)), `${label(v)} programmed ${label(p)}'s ${l.subnet}: ${JSON.stringify(s)}`);
            } else {
              const route = (await flannelRoutes(v.host)).find((x) => x.dst === l.subnet);
              assert.ok(route, `flanneld on ${v.host.name} routes ${label(p)}'s ${l.subnet}`);
              if (kind === 'host-gw') assert.equal(route.gateway, p.host.underlayIp, JSON.stringify(route));
              else assert.equal(route.dev, 'flannel.1', JSON.stringify(route));
            }
          }
        }
      });

      it(`a flannel host leaving (flanneld stopped, lease deleted) is removed on the Rudder hosts`, async () => {
        const gone = member(tc.leaving);
        assert.equal(gone.role, 'flannel');
        const l = await leaseOf(gone.host);
        const mac = (l.value['BackendData'] as { VtepMAC?: string } | undefined)?.VtepMAC;
        const rudders = present().filter((m) => m.role === 'rudder');
        if (kind !== 'udp') {
          for (const v of rudders) {
            const s = await rudderHasState(v.host, l.subnet, gone.host.underlayIp, mac);
            assert.ok(s.route, `${label(v)} routes ${l.subnet} before: ${JSON.stringify(s)}`);
          }
        }
        await gone.flanneld!.stop();
        // flanneld keeps its lease for 24 h (no shorter TTL to ask for): delete the key as an expiry would.
        await c.etcdctl(['del', l.key]);

        for (const v of rudders) {
          if (kind === 'udp') {
            // No lease holds the subnet any more: the sender's own data plane answers net-unreachable.
            const src = v.host.pod!;
            const ownNet = netAddr((await leaseOf(v.host)).subnet);
            await waitUntil(
              async () => {
                const p = await src.ping(gone.host.pod!.ip, { count: 1, replyWaitS: 1 });
                if (p.received === 0 && p.errors.some((e) => e.startsWith(`From ${ownNet} `) && /Destination Net Unreachable/.test(e))) return true;
                throw new Error(describePing(p));
              },
              { giveUpMs: c.giveUpMs, intervalMs: 300, what: `net-unreachable from ${label(v)}'s data plane for ${l.subnet}; log ${v.host.logFile}` },
            );
          } else {
            await eventually(c, `${label(v)} removing its state for ${l.subnet}; log ${v.host.logFile}`, async () => {
              const s = await rudderHasState(v.host, l.subnet, gone.host.underlayIp, mac);
              return !s.route && !s.neigh && !s.fdb;
            });
          }
        }
        assert.equal(await c.getKey(l.key), null, 'nobody re-created the deleted lease');
        await fullMesh(present());
      });

      it('a flannel host joining is reached by every pod, and reaches every pod', async () => {
        const pids = present().map((m) => (m.role === 'rudder' ? m.host.rudder?.pid : m.flanneld?.proc?.pid));
        const h4 = c.hosts.length + 1;
        const env = await bringUp(h4, 'flannel');
        assert.equal(env.mtu, MTU[kind]);
        await fullMesh(present());
        assert.deepEqual(
          present().filter((m) => m.host.index !== h4).map((m) => (m.role === 'rudder' ? m.host.rudder?.pid : m.flanneld?.proc?.pid)),
          pids,
          'no daemon was restarted',
        );
      });

      {
        const which = tc.migrating;
        it(`a flannel host switched to Rudder in place keeps its lease and subnet; every pod still reaches every other`, async (t) => {
          const m = member(which);
          assert.equal(m.role, 'flannel');
          const before = await leaseOf(m.host);
          const flannelEnv = m.flanneld!.readSubnetFile()!;
          // The pods' traffic across the switch: a ping every 20 ms from the migrating host's pod
          // to another host's pod, from 1 s before flanneld stops until well after Rudder is up.
          const peer = present().find((x) => x !== m)!;
          const probe = m.host.pod!.ping(peer.host.pod!.ip, { count: PROBE_COUNT, intervalS: PROBE_INTERVAL_MS / 1000, replyWaitS: 1 });
          await sleep(1000);
          await m.flanneld!.stop();
          m.role = 'rudder';
          await m.host.startRudder();
          const env = await m.host.waitSubnetFile();
          const p = await probe;
          const gap = longestGapMs(p, PROBE_INTERVAL_MS);
          // Measured, not a limit (issue 17 asks for at most 1 s; docs/migrating-from-flannel.md has the figures).
          const open = p.replies.some((r) => r.seq === p.transmitted) ? '' : ', still lost when the probe ended';
          t.diagnostic(`${kind} migration: longest gap in pod traffic ${gap} ms (${p.transmitted - p.received} of ${p.transmitted} pings lost${open})`);
          assert.equal(env.subnet, flannelEnv.subnet, `RUDDER_SUBNET = flanneld's FLANNEL_SUBNET (log ${m.host.logFile})`);
          assert.equal(env.mtu, flannelEnv.mtu);
          const now = await leaseOf(m.host);
          assert.equal(now.key, before.key, 'the same lease key');
          assert.equal(now.value['BackendType'], kind);
          // The bridge and pod built from flannel's subnet file stay as they are.
          await fullMesh(present());
          if (kind === 'vxlan') {
            const log = fs.readFileSync(m.host.logFile, 'utf8');
            assert.match(log, /replaced flannel's VXLAN device.*flannel\.1/, `the takeover is logged (log ${m.host.logFile})`);
          }
          if (kind !== 'udp') {
            // The routes to the peers are Rudder's now (flanneld left its own behind).
            for (const p of present()) {
              if (p === m) continue;
              const l = await leaseOf(p.host);
              await eventually(c, `${label(m)} holding Rudder's route to ${label(p)}'s ${l.subnet}; log ${m.host.logFile}`, async () =>
                (await rudderRoutes(m.host)).some((r) => r.dst === l.subnet && (kind !== 'host-gw' || r.gateway === p.host.underlayIp)),
              );
            }
          }
        });

        it(`flanneld's lease gone but its subnet file kept: Rudder takes FLANNEL_SUBNET again`, async () => {
          const i = c.hosts.length + 1;
          await bringUp(i, 'flannel');
          const m = member(i);
          const before = await leaseOf(m.host);
          const flannelEnv = m.flanneld!.readSubnetFile()!;
          await m.flanneld!.stop();
          await c.etcdctl(['del', before.key]); // as an expiry would
          m.role = 'rudder';
          await m.host.startRudder([`-flannel-subnet-file=${m.flanneld!.subnetFile}`]);
          const env = await m.host.waitSubnetFile();
          assert.equal(env.subnet, flannelEnv.subnet, `RUDDER_SUBNET = the kept FLANNEL_SUBNET (log ${m.host.logFile})`);
          assert.match(m.host.rudderLog(), /remembering flanneld's subnet/);
          assert.equal((await leaseOf(m.host)).key, before.key, 'the same lease key, created again');
          await fullMesh(present());
        });
      }

      if (kind === 'vxlan') {
        it('a VXLAN device other than flannel.1 holding VNI 1 on port 8472: a clear error naming it; Rudder leaves it be, and starts once it is deleted', async () => {
          const host = await c.addHost();
          const ip = (args: string[]): Promise<{ stdout: string }> => run(['ip', '-n', host.ns.name, ...args]);
          // Someone else's device (not the flannel.<VNI> flanneld leaves), with a forwarding entry of its own.
          await ip(['link', 'add', 'foo0', 'type', 'vxlan', 'id', '1', 'dstport', '8472', 'local', host.underlayIp, 'dev', 'eth0', 'nolearning']);
          await ip(['link', 'set', 'foo0', 'up']);
          await run(['bridge', '-n', host.ns.name, 'fdb', 'append', '00:00:00:00:00:00', 'dev', 'foo0', 'dst', '198.18.0.77']);
          const foo0 = async (): Promise<unknown> => {
            const [l] = JSON.parse((await ip(['-d', '-j', 'link', 'show', 'foo0'])).stdout) as Array<{
              ifindex: number; address: string; mtu: number; operstate: string; linkinfo?: { info_kind?: string; info_data?: Record<string, unknown> };
            }>;
            assert.ok(l, 'foo0 exists');
            const fdbs = JSON.parse((await run(['bridge', '-n', host.ns.name, '-j', 'fdb', 'show', 'dev', 'foo0'])).stdout) as Array<{ mac: string; dst?: string }>;
            const d = l.linkinfo?.info_data ?? {};
            return {
              ifindex: l.ifindex, address: l.address, mtu: l.mtu, operstate: l.operstate, kind: l.linkinfo?.info_kind,
              id: d['id'], port: d['port'], local: d['local'], fdb: fdbs.map((f) => `${f.mac} ${f.dst ?? ''}`).sort(),
            };
          };
          const before = await foo0();
          assert.deepEqual((before as { fdb: string[] }).fdb, ['00:00:00:00:00:00 198.18.0.77']);

          const proc = await host.startRudder();
          const exit = await proc.exited;
          const log = host.rudderLog();
          assert.equal(exit.code, 1, `rudder stops with an error while foo0 holds the VNI: ${log}`);
          assert.match(log, /E_BACKEND/);
          assert.match(log, /device foo0 already holds VNI 1 on UDP port 8472, which rudder\.1 needs: delete it \(ip link del foo0\) or set another Backend\.VNI or Backend\.Port/, log);
          assert.doesNotMatch(log, /replaced flannel's VXLAN device/);
          assert.deepEqual(await foo0(), before, 'foo0 is as it was: same device, VNI, port, state and forwarding entry');
          const links = JSON.parse((await ip(['-j', 'link', 'show'])).stdout) as Array<{ ifname: string }>;
          assert.ok(!links.some((l) => l.ifname === 'rudder.1'), `no rudder.1 left behind: ${links.map((l) => l.ifname).join(', ')}`);

          // The operator does what the message says; started again (as systemd's Restart= would), Rudder comes up.
          await ip(['link', 'del', 'foo0']);
          const m: Member = { host, role: 'rudder', flanneld: null };
          members.push(m);
          const { env } = await host.up();
          assert.equal(env.mtu, MTU[kind]);
          await fullMesh(present());
        });
      }
    });
  }
});

/** The migration probe: 20 ms apart, 12 s in all (flanneld stops 1 s in). */
const PROBE_INTERVAL_MS = 20;
const PROBE_COUNT = 600;

/** The longest run of unanswered pings (icmp_seq 1..transmitted), as time. */
function longestGapMs(p: PingResult, intervalMs: number): number {
  const got = new Set(p.replies.map((r) => r.seq));
  let longest = 0;
  let run = 0;
  for (let seq = 1; seq <= p.transmitted; seq++) {
    run = got.has(seq) ? 0 : run + 1;
    longest = Math.max(longest, run);
  }
  return longest * intervalMs;
}

/** 10.5.52.0/24 → 10.5.52.1/24: what both daemons write as the subnet (the bridge address). */
function formatFirstHost(cidr: string): string {
  const [ip, len] = cidr.split('/') as [string, string];
  const o = ip.split('.').map(Number);
  o[3] = (o[3] ?? 0) + 1;
  return `${o.join('.')}/${len}`;
}
