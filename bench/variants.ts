/**
 * The paths the benchmark compares. Each variant is "a client namespace, a
 * server namespace and an address to reach", plus the processes whose CPU
 * time is the tunnel's cost (socat, rudder daemons; kernel paths have none).
 *
 * Two kinds of topology, both built with src/topology (veth pairs into a
 * bridge in a "switch" namespace, 198.18.0.0/15, MTU 1500):
 *  - the base cluster: two hosts, no etcd, no daemon. The underlay, the
 *    hand-made kernel VXLAN and the socat tunnel live here side by side in
 *    their own subnets, so they never disturb each other;
 *  - one cluster per rudder backend (etcd + two daemons), so a daemon can
 *    never touch the hand-made baselines (stale-route removal and the like)
 *    and the backends can all be up at once, measured interleaved.
 * All clusters are built identically, so their underlays are the same.
 *
 *  - one cluster per flanneld backend (etcd + the real upstream flanneld on
 *    both hosts, started 2 s apart): the same shape as Rudder's, so the
 *    ratios rudder X / flanneld X compare like with like. Without the
 *    anchors (src/topology/anchors.ts) these variants are "n/a" with the
 *    line that says what to set.
 *
 * Extension point: RUDDER_BACKENDS. A backend whose daemon does not come up
 * (not implemented yet, or broken) is reported "n/a" with the reason.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { type Cluster, type Host, type ManagedProcess, type Netns, createCluster, ping, sleep, waitUntil } from '../src/topology';
import { flanneldBinary, flanneldUnavailable } from '../src/topology/anchors';
import { Flanneld } from '../src/topology/flanneld';
import { startIperfServer } from './measure';
import { generatePrivateKey, publicKeyOf } from '../src/backend/wireguard/key';

export const IPERF_PORT = 5201;
/** Namespace prefix of the bench's topologies (rdb<tag>-h1 ...). */
export const NS_PREFIX = 'rdb';

export type Group = 'limit' | 'baseline' | 'rudder' | 'flannel' | 'wireguard';

export interface Prepared {
  client: Netns;
  server: Netns;
  /** Address the client sends to (iperf3, ping); an iperf3 server listens there. */
  target: string;
  /** Address the client sends from (iperf3 -B, ping -I), so replies take the path under test too. */
  source?: string;
  /** MTU of the path's innermost interface. */
  mtu: number;
  /** Processes that carry the packets in user space; their CPU time is reported. */
  cpuPids(): number[];
  /**
   * Host 1's and host 2's namespaces, where --host-cpus pins every process;
   * absent: [client], [server].
   */
  hosts?: readonly [readonly Netns[], readonly Netns[]];
  /** The overlay daemons of the path (rudder, flanneld), one per host: their RSS is read after the rounds. */
  daemonPids?(): number[];
}

export interface Variant {
  id: string;
  label: string;
  group: Group;
  /** A/B twin (--ab-baseline): the id of the variant it mirrors with the baseline checkout's daemon. */
  abTwinOf?: string;
  /** Further groups --only selects it by (rudder wireguard: "wireguard"; every IPv6 variant: "ipv6"). */
  alsoIn?: readonly string[];
  /** 6: the path carries IPv6 (over the IPv6 underlay); absent: IPv4. */
  family?: 6;
  /** Builds the path; throws (with a reason) when it cannot: the variant is then "n/a". */
  setup(env: BenchEnv): Promise<Prepared>;
}

/** Shared state of one bench run: the clusters and where logs go. */
export class BenchEnv {
  private base: Promise<Cluster> | null = null;
  private base6: Promise<Cluster> | null = null;
  private readonly rudder = new Map<string, Promise<RudderSetup>>();
  private readonly flannel = new Map<string, Promise<FlannelSetup>>();
  private readonly clusters: Cluster[] = [];

  constructor(readonly log: (msg: string) => void) {}

  /** The daemon-less two-host cluster of the underlay and the baselines, with an iperf3 server on h2. */
  baseCluster(): Promise<Cluster> {
    this.base ??= (async () => {
      const c = await createCluster({ hosts: 2, etcdMembers: 0, prefix: NS_PREFIX, sweepLeftovers: true });
      this.clusters.push(c);
      return c;
    })();
    return this.base;
  }

  /** The same with a dual-stack underlay (hosts also at 2001:2::N/64): the IPv6 underlay and hand-made IPv6 baselines. */
  baseCluster6(): Promise<Cluster> {
    this.base6 ??= (async () => {
      const c = await createCluster({ hosts: 2, etcdMembers: 0, prefix: NS_PREFIX, sweepLeftovers: true, ipv6: true });
      this.clusters.push(c);
      return c;
    })();
    return this.base6;
  }

  /**
   * One cluster per rudder backend type (and family): daemons up, pods
   * built, iperf3 servers on h2's overlay address and on p2. With `ipv6` a
   * dual-stack network on a dual-stack underlay, the servers on the IPv6
   * addresses.
   */
  rudderCluster(backendType: string, rudderBin?: string, ipv6 = false): Promise<RudderSetup> {
    const key = `${backendType} ${rudderBin ?? ''}${ipv6 ? ' ipv6' : ''}`;
    let p = this.rudder.get(key);
    if (!p) {
      p = setupRudder(this, backendType, rudderBin, ipv6);
      this.rudder.set(key, p);
    }
    return p;
  }

  /** One cluster per flanneld backend type: flanneld up on both hosts, an iperf3 server on h2's overlay address. */
  flannelCluster(backendType: string): Promise<FlannelSetup> {
    let p = this.flannel.get(backendType);
    if (!p) {
      p = setupFlannel(this, backendType);
      this.flannel.set(backendType, p);
    }
    return p;
  }

  track(c: Cluster): void {
    this.clusters.push(c);
  }

  async teardown(): Promise<void> {
    const errors: string[] = [];
    for (const c of this.clusters.splice(0).reverse()) {
      try {
        await c.teardown();
      } catch (e) {
        errors.push(e instanceof Error ? e.message : String(e));
      }
    }
    if (errors.length) throw new Error(`bench teardown: ${errors.join('; ')}`);
  }
}

// ---------------------------------------------------------------------------
// Underlay and baselines (base cluster)

async function checkReachable(from: Netns, target: string, what: string): Promise<void> {
  // A few tries: ARP/neighbour resolution and a tunnel that has just come up.
  await waitUntil(
    async () => {
      const r = await ping(from, target, { count: 1, replyWaitS: 1 });
      return r.received > 0;
    },
    { giveUpMs: 10_000, intervalMs: 200, what: `${what}: ${target} reachable from ${from.name}` },
  );
}

/** The end of every setup: the target answers the client's ping, an iperf3 server listens on it; returns the path. */
async function served(c: Cluster, what: string, p: Prepared): Promise<Prepared> {
  await checkReachable(p.client, p.target, what);
  await startIperfServer(p.server, p.target, IPERF_PORT, c.dir);
  return p;
}

/**
 * Kernel VXLAN by hand between the base cluster's two hosts, point to point
 * (remote set: no learning, no multicast): `dev` on each, MTU `mtu`,
 * address `addr(h)` (/24, or /64 without DAD), over the underlay of `family`.
 */
async function vxlanByHand(c: Cluster, o: { dev: string; id: number; family: 4 | 6; mtu: number; addr: (h: Host) => string }): Promise<void> {
  const hs = [c.host(1), c.host(2)];
  for (const [i, h] of hs.entries()) {
    const peer = hs[1 - i] as Host;
    const [local, remote] = o.family === 6 ? [h.underlayIpv6, peer.underlayIpv6] : [h.underlayIp, peer.underlayIp];
    await h.ns.ip(['link', 'add', o.dev, 'type', 'vxlan', 'id', String(o.id), 'local', local, 'remote', remote, 'dstport', '4789', 'dev', 'eth0']);
    await h.ns.setMtu(o.dev, o.mtu);
    if (o.family === 6) await h.ns.ip(['-6', 'addr', 'add', `${o.addr(h)}/64`, 'dev', o.dev, 'nodad']);
    else await h.ns.addAddress(o.dev, `${o.addr(h)}/24`);
    await h.ns.linkUp(o.dev);
  }
}

export const underlay: Variant = {
  id: 'underlay',
  label: 'underlay veth',
  group: 'limit',
  async setup(env) {
    const c = await env.baseCluster();
    const [h1, h2] = [c.host(1), c.host(2)];
    return served(c, 'underlay', { client: h1.ns, server: h2.ns, target: h2.underlayIp, source: h1.underlayIp, mtu: c.underlayMtu, cpuPids: () => [] });
  },
};

/** Kernel VXLAN by hand, point to point (remote set: no learning, no multicast). */
export const kernelVxlan: Variant = {
  id: 'kvxlan',
  label: 'kernel VXLAN (by hand)',
  group: 'baseline',
  async setup(env) {
    const c = await env.baseCluster();
    const mtu = c.underlayMtu - 50;
    await vxlanByHand(c, { dev: 'bvx0', id: 42, family: 4, mtu, addr: (h) => `10.201.0.${h.index}` });
    return served(c, 'kernel VXLAN', { client: c.host(1).ns, server: c.host(2).ns, target: '10.201.0.2', source: '10.201.0.1', mtu, cpuPids: () => [] });
  },
};

/**
 * The IPv6 underlay: host 1 → host 2 at 2001:2::N, on the dual-stack base
 * cluster. rudder host-gw IPv6 sends the same packets over the same veths;
 * it differs only by its route (the peer's subnet `via` its PublicIPv6,
 * metric 1024) and its target (h2's rbr0 address, delivered locally like
 * eth0's). Namespace settings (sysctl -a, no nftables, noqueue qdiscs) match.
 */
export const underlay6: Variant = {
  id: 'underlay6',
  label: 'underlay veth IPv6',
  group: 'limit',
  alsoIn: ['ipv6'],
  family: 6,
  async setup(env) {
    const c = await env.baseCluster6();
    const [h1, h2] = [c.host(1), c.host(2)];
    return served(c, 'IPv6 underlay', { client: h1.ns, server: h2.ns, target: h2.underlayIpv6, source: h1.underlayIpv6, mtu: c.underlayMtu, cpuPids: () => [] });
  },
};

/**
 * Kernel VXLAN by hand over the IPv6 underlay, carrying IPv6: the kvxlan of
 * IPv6, MTU underlay − 70. Against rudder vxlan IPv6 (compared on live
 * setups: ip -d link, routes, neighbours, FDB, ethtool -k, sysctl -a) the
 * same MTU, UDP checksums (the kernel's default udpcsum, no zero-checksum
 * IPv6: what flannel peers expect), offloads and ttl; it differs in port
 * (4789, rudder 8472), learning (on here: a source-MAC lookup per received
 * packet; off in rudder), next hop (a connected /64 and a resolved
 * neighbour, behind the `remote` default FDB entry; rudder: an onlink route
 * via the peer's VTEP address, a permanent neighbour and a per-peer FDB
 * entry) and target (this device's address; rudder's is h2's rbr0 address).
 * None of these costs rudder more per packet.
 */
export const kernelVxlan6: Variant = {
  id: 'kvxlan6',
  label: 'kernel VXLAN IPv6 (by hand)',
  group: 'baseline',
  alsoIn: ['ipv6'],
  family: 6,
  async setup(env) {
    const c = await env.baseCluster6();
    const mtu = c.underlayMtu - 70;
    const addr = (h: Host): string => `fd20:1::${h.index}`;
    await vxlanByHand(c, { dev: 'bvx6', id: 43, family: 6, mtu, addr });
    const [h1, h2] = [c.host(1), c.host(2)];
    return served(c, 'kernel VXLAN IPv6', { client: h1.ns, server: h2.ns, target: addr(h2), source: addr(h1), mtu, cpuPids: () => [] });
  },
};

/**
 * Starts a userspace tunnel process in `h`'s namespace and waits until
 * `ready()` says its device is there; fails at once, with its log, if it
 * exits first.
 */
async function spawnTunnel(h: Host, argv: readonly string[], logFile: string, what: string, ready: () => Promise<boolean>): Promise<ManagedProcess> {
  const p = await h.ns.spawn(argv, { logFile, label: `${argv[0] ?? '?'} ${h.name}` });
  await waitUntil(
    async () => {
      if (!p.running) throw new Error(`${argv[0] ?? '?'} on ${h.name} exited: ${p.logTail(500)}`);
      return ready();
    },
    { giveUpMs: 10_000, intervalMs: 100, what: `${what} on ${h.name}` },
  );
  return p;
}

/**
 * What a user scripts instead of an overlay daemon: socat between a TUN
 * device and a connected UDP socket, on each side, MTU 1472 (1500 - 28).
 * The command line is the plain one from the issue; nothing is tuned.
 */
export const socatTunnel: Variant = {
  id: 'socat',
  label: 'socat TUN/UDP',
  group: 'baseline',
  async setup(env) {
    const c = await env.baseCluster();
    const hs = [c.host(1), c.host(2)];
    const mtu = c.underlayMtu - 28;
    const procs: ManagedProcess[] = [];
    for (const [i, h] of hs.entries()) {
      const peer = hs[1 - i] as Host;
      const argv = [
        'socat',
        `TUN:10.202.0.${h.index}/24,tun-type=tun,iff-no-pi,up,tun-name=bsoc0`,
        `UDP:${peer.underlayIp}:5555,bind=${h.underlayIp}:5555`,
      ];
      procs.push(
        await spawnTunnel(h, argv, path.join(c.dir, `socat-${h.name}.log`), `socat TUN bsoc0`, async () => (await h.ns.ip(['link', 'show', 'bsoc0'], { allowFailure: true })).code === 0),
      );
      await h.ns.setMtu('bsoc0', mtu);
    }
    return served(c, 'socat tunnel', { client: hs[0]!.ns, server: hs[1]!.ns, target: '10.202.0.2', source: '10.202.0.1', mtu, cpuPids: () => procs.filter((p) => p.running).map((p) => p.pid) });
  },
};

/**
 * The reference userspace WireGuard: Debian's wireguard-go, one TUN per host
 * namespace, configured with `wg` point to point (keys made here, each
 * host's peer the other, endpoint pinned), MTU underlay − 80 as rudder
 * wireguard's. Its processes are the tunnel's CPU.
 */
export const wireguardGo: Variant = {
  id: 'wireguard-go',
  label: 'wireguard-go',
  group: 'wireguard',
  async setup(env) {
    const c = await env.baseCluster();
    const hs = [c.host(1), c.host(2)];
    const mtu = c.underlayMtu - 80;
    const port = 51820;
    // The UAPI socket (/var/run/wireguard/<name>.sock) is in the shared file system: a name per run and host.
    const ifname = (h: Host): string => `bwg${c.tag.tag}${h.index}`.slice(0, 15);
    const keys = hs.map((h) => {
      const priv = generatePrivateKey();
      const file = path.join(c.dir, `wireguard-go-${h.name}.key`);
      fs.writeFileSync(file, `${priv.toString('base64')}\n`, { mode: 0o600 });
      const pub = publicKeyOf(priv);
      priv.fill(0);
      return { file, pub };
    });
    const procs: ManagedProcess[] = [];
    for (const [i, h] of hs.entries()) {
      const dev = ifname(h);
      const log = path.join(c.dir, `wireguard-go-${h.name}.log`);
      procs.push(await spawnTunnel(h, ['wireguard-go', '-f', dev], log, `wireguard-go ${dev}`, async () => (await h.ns.exec(['wg', 'show', dev], { allowFailure: true })).code === 0));
      const peer = hs[1 - i] as Host;
      const k = keys[i]!;
      const pk = keys[1 - i]!;
      await h.ns.exec(['wg', 'set', dev, 'private-key', k.file, 'listen-port', String(port), 'peer', pk.pub, 'endpoint', `${peer.underlayIp}:${port}`, 'allowed-ips', `10.203.0.${peer.index}/32`]);
      await h.ns.setMtu(dev, mtu);
      await h.ns.addAddress(dev, `10.203.0.${h.index}/24`);
      await h.ns.linkUp(dev);
    }
    return served(c, 'wireguard-go', { client: hs[0]!.ns, server: hs[1]!.ns, target: '10.203.0.2', source: '10.203.0.1', mtu, cpuPids: () => procs.filter((p) => p.running).map((p) => p.pid) });
  },
};

// ---------------------------------------------------------------------------
// Rudder

export interface RudderSetup {
  cluster: Cluster;
  h1: Host;
  h2: Host;
  /** The hosts' overlay addresses (their rbr0: RUDDER_SUBNET's address; RUDDER_IPV6_SUBNET's in an IPv6 setup). */
  h1OverlayIp: string;
  h2OverlayIp: string;
  /** The pods' addresses of the measured family. */
  p1Ip: string;
  p2Ip: string;
  mtu: number;
}

/** Overlay Network per backend: separate clusters, but distinct ranges keep logs unambiguous. */
const NETWORKS: Record<string, string> = { udp: '10.50.0.0/16', vxlan: '10.51.0.0/16', 'host-gw': '10.52.0.0/16', wireguard: '10.53.0.0/16' };
/** IPv6Network per backend of the dual-stack clusters (EnableIPv6, IPv6SubnetLen 64). */
const NETWORKS6: Record<string, string> = { udp: 'fd50:50::/48', vxlan: 'fd51:51::/48', 'host-gw': 'fd52:52::/48', wireguard: 'fd53:53::/48' };
/** How long a daemon gets to write its subnet file before its backend counts as n/a. */
const RUDDER_UP_GIVEUP_MS = 30_000;

async function setupRudder(env: BenchEnv, backendType: string, rudderBin?: string, ipv6 = false): Promise<RudderSetup> {
  const c = await createCluster({ hosts: 2, prefix: NS_PREFIX, sweepLeftovers: true, ...(ipv6 ? { ipv6 } : {}), ...(rudderBin ? { rudderBin } : {}) });
  env.track(c);
  const name = `rudder ${backendType}${ipv6 ? ' IPv6' : ''}`;
  try {
    const v6 = ipv6 ? { EnableIPv6: true, IPv6Network: NETWORKS6[backendType] ?? 'fd59:59::/48', IPv6SubnetLen: 64 } : {};
    await c.putConfig({ Network: NETWORKS[backendType] ?? '10.59.0.0/16', ...v6, Backend: { Type: backendType } });
    const h1 = c.host(1);
    const h2 = c.host(2);
    // The hosts share one file system: each its own key (the default path would give both the same).
    if (backendType === 'wireguard') for (const h of [h1, h2]) h.rudderArgs.push(`-wireguard-key-file=${path.join(h.dir, 'wireguard.key')}`);
    await Promise.all([h1.startRudder(), h2.startRudder()]);
    const [e1, e2] = await Promise.all([
      h1.waitSubnetFile({ giveUpMs: RUDDER_UP_GIVEUP_MS }),
      h2.waitSubnetFile({ giveUpMs: RUDDER_UP_GIVEUP_MS }),
    ]);
    if (ipv6 && (e1.ipv6Subnet === undefined || e2.ipv6Subnet === undefined)) throw new Error('the subnet file has no RUDDER_IPV6_SUBNET');
    const p1 = await h1.setupPod(e1);
    const p2 = await h2.setupPod(e2);
    const addr = (subnet: string | undefined): string => (subnet ?? '').split('/')[0] as string;
    const h1OverlayIp = addr(ipv6 ? e1.ipv6Subnet : e1.subnet);
    const h2OverlayIp = addr(ipv6 ? e2.ipv6Subnet : e2.subnet);
    const p1Ip = ipv6 ? (p1.ipv6 as string) : p1.ip;
    const p2Ip = ipv6 ? (p2.ipv6 as string) : p2.ip;
    await checkReachable(h1.ns, h2OverlayIp, name);
    await checkReachable(p1.ns, p2Ip, `${name} pods`);
    await startIperfServer(h2.ns, h2OverlayIp, IPERF_PORT, c.dir);
    await startIperfServer(p2.ns, p2Ip, IPERF_PORT, c.dir);
    return { cluster: c, h1, h2, h1OverlayIp, h2OverlayIp, p1Ip, p2Ip, mtu: e1.mtu };
  } catch (e) {
    // The reason for the table: the daemon's own fatal error when there is one.
    const msg = e instanceof Error ? e.message.split('\n')[0]! : String(e);
    const logTail = c.host(1).rudderLog(4000);
    // The logger escapes quotes inside the value (set \"EnableIPv6\": false): read up to the closing one.
    const fatal = [...logTail.matchAll(/ error .*?error="((?:[^"\\]|\\.)*)"/g)].pop()?.[1]?.replace(/\\(.)/g, '$1');
    env.log(`${name}: not usable: ${msg}`);
    throw new Error(fatal ? `daemon did not start: ${fatal}` : msg, { cause: e });
  }
}

function daemonPids(s: RudderSetup): number[] {
  return [s.h1, s.h2].flatMap((h) => (h.rudder?.running ? [h.rudder.pid] : []));
}

/**
 * rudder with `Backend.Type` = backendType; traffic between the hosts' overlay
 * addresses (or the pods). With `baselineBin` it is the A/B twin: the same
 * topology and measurements, the daemons run from another checkout. With
 * `ipv6` (ids `rudder-X6`, group "ipv6" too) a dual-stack network on a
 * dual-stack underlay, measured between the IPv6 addresses.
 */
export function rudderVariant(backendType: string, opts: { pods?: boolean; baselineBin?: string; ipv6?: boolean } = {}): Variant {
  const v6 = opts.ipv6 === true;
  const id = `rudder-${backendType}${v6 ? '6' : ''}${opts.pods ? '-pods' : ''}`;
  const label = `rudder ${backendType}${v6 ? ' IPv6' : ''}${opts.pods ? ' (pod→pod)' : ''}`;
  const bin = opts.baselineBin;
  const alsoIn = v6 ? ['ipv6'] : backendType === 'wireguard' ? ['wireguard'] : [];
  return {
    id: bin ? `${id}-a` : id,
    label: bin ? `${label} (A)` : label,
    group: 'rudder',
    ...(bin ? { abTwinOf: id } : {}),
    ...(alsoIn.length ? { alsoIn } : {}),
    ...(v6 ? { family: 6 as const } : {}),
    async setup(env) {
      const s = await env.rudderCluster(backendType, bin, v6);
      if (opts.pods) {
        const p1 = s.h1.pod!;
        const p2 = s.h2.pod!;
        return {
          client: p1.ns,
          server: p2.ns,
          hosts: [[s.h1.ns, p1.ns], [s.h2.ns, p2.ns]],
          target: s.p2Ip,
          source: s.p1Ip,
          mtu: s.mtu,
          cpuPids: () => daemonPids(s),
        };
      }
      return { client: s.h1.ns, server: s.h2.ns, target: s.h2OverlayIp, source: s.h1OverlayIp, mtu: s.mtu, cpuPids: () => daemonPids(s), daemonPids: () => daemonPids(s) };
    },
  };
}

// ---------------------------------------------------------------------------
// The real flanneld (upstream v0.20.2, from the anchors: src/topology/anchors.ts)

export interface FlannelSetup {
  cluster: Cluster;
  daemons: [Flanneld, Flanneld];
  h1OverlayIp: string;
  h2OverlayIp: string;
  mtu: number;
}

/** Network per flanneld backend: apart from Rudder's, so logs and routes never look alike. */
const FLANNEL_NETWORKS: Record<string, string> = { udp: '10.60.0.0/16', vxlan: '10.61.0.0/16', 'host-gw': '10.62.0.0/16' };
/**
 * Pause after the first flanneld is up: flanneld misses leases created while
 * it lists and starts its watch (the anchors' README), and the bench should
 * measure its data path, not that window.
 */
const FLANNEL_SETTLE_MS = 2000;

async function setupFlannel(env: BenchEnv, backendType: string): Promise<FlannelSetup> {
  const why = flanneldUnavailable();
  if (why !== false) throw new Error(why);
  const bin = await flanneldBinary();
  const c = await createCluster({ hosts: 2, prefix: NS_PREFIX, sweepLeftovers: true });
  env.track(c);
  const daemons: [Flanneld, Flanneld] = [new Flanneld(c, c.host(1), bin), new Flanneld(c, c.host(2), bin)];
  try {
    await c.putConfig({ Network: FLANNEL_NETWORKS[backendType] ?? '10.69.0.0/16', Backend: { Type: backendType } });
    const e1 = await daemons[0].up();
    await sleep(FLANNEL_SETTLE_MS);
    const e2 = await daemons[1].up();
    const h1OverlayIp = e1.subnet.split('/')[0] as string;
    const h2OverlayIp = e2.subnet.split('/')[0] as string;
    await checkReachable(c.host(1).ns, h2OverlayIp, `flanneld ${backendType}`);
    await startIperfServer(c.host(2).ns, h2OverlayIp, IPERF_PORT, c.dir);
    return { cluster: c, daemons, h1OverlayIp, h2OverlayIp, mtu: e1.mtu };
  } catch (e) {
    const msg = e instanceof Error ? e.message.split('\n')[0]! : String(e);
    env.log(`flanneld ${backendType}: not usable: ${msg} (logs ${daemons.map((d) => d.logFile).join(', ')})`);
    throw e instanceof Error ? new Error(msg, { cause: e }) : new Error(msg);
  }
}

function flanneldPids(s: FlannelSetup): number[] {
  return s.daemons.flatMap((d) => (d.proc?.running ? [d.proc.pid] : []));
}

/**
 * flanneld with `Backend.Type` = backendType on both hosts; traffic between
 * the hosts' overlay addresses, like the rudder variants. Where the anchors
 * are missing the variant is n/a with the line that says what to set.
 */
export function flannelVariant(backendType: string): Variant {
  return {
    id: `flanneld-${backendType}`,
    label: `flanneld ${backendType}`,
    group: 'flannel',
    async setup(env) {
      const s = await env.flannelCluster(backendType);
      const c = s.cluster;
      return {
        client: c.host(1).ns,
        server: c.host(2).ns,
        target: s.h2OverlayIp,
        source: s.h1OverlayIp,
        mtu: s.mtu,
        // flanneld's udp backend forwards in its own process; the kernel does for vxlan and host-gw.
        cpuPids: () => flanneldPids(s),
        daemonPids: () => flanneldPids(s),
      };
    },
  };
}

/** flanneld backends measured beside Rudder's (issue 17). */
export const FLANNEL_BACKENDS = ['udp', 'vxlan', 'host-gw'];

/** Backends the bench tries; one whose daemon does not come up shows as n/a. */
export const RUDDER_BACKENDS = ['udp', 'vxlan', 'host-gw', 'wireguard'];

/** What `--only <group>` brings along: the variants the group's target ratios divide by. */
export const GROUP_COMPANIONS: Readonly<Record<string, readonly string[]>> = {
  wireguard: ['kvxlan', 'rudder-udp'],
  // Issue 15: rudder udp IPv6 / rudder udp (IPv4).
  ipv6: ['rudder-udp'],
};

/**
 * The default line-up, in table order. With `baselineBin` (--ab-baseline),
 * each rudder variant is followed by its "(A)" twin running that bin/rudder.
 */
export function defaultVariants(opts: { pods?: boolean; baselineBin?: string } = {}): Variant[] {
  // Each IPv6 variant right after its IPv4 one, so the table shows them side by side.
  const v: Variant[] = [underlay, underlay6, kernelVxlan, kernelVxlan6, socatTunnel];
  const add = (b: string, pods: boolean, ipv6: boolean): void => {
    v.push(rudderVariant(b, { pods, ipv6 }));
    if (opts.baselineBin) v.push(rudderVariant(b, { pods, ipv6, baselineBin: opts.baselineBin }));
  };
  for (const b of RUDDER_BACKENDS) {
    for (const ipv6 of [false, true]) {
      add(b, false, ipv6);
      if (opts.pods) add(b, true, ipv6);
    }
  }
  v.push(wireguardGo);
  for (const b of FLANNEL_BACKENDS) v.push(flannelVariant(b));
  return v;
}
