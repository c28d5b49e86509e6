/**
 * The one-machine cluster of docs/architecture.md ("Testing"), used
 * by the e2e tests and `rudder sandbox`:
 *
 *        [etcd ns: eth0 198.18.0.250/15, etcd on :2379]
 *                         |
 *   ------------- switch ns: bridge br0 (the underlay L2 segment) -------------
 *        |                          |                          |
 *   [h1: eth0 198.18.0.1/15]   [h2: eth0 198.18.0.2/15]   ...  hN
 *     default via .250           ip_forward=1
 *     rudder daemon  -> subnet.env (RUDDER_SUBNET=10.0.5.1/24 ...)
 *     rbr0 10.0.5.1/24 (the docker0-like bridge, MTU RUDDER_MTU)
 *        |
 *   [p1: eth0 10.0.5.2/24, default via 10.0.5.1]    (the "container")
 *
 * With `ipv6: true` the underlay is dual-stack: every host's eth0 also gets
 * 2001:2::<N>/64 (etcd 2001:2::250; 2001:2::/48 is RFC 5180's benchmarking
 * range), IPv6 forwarding is on, and a pod whose subnet file carries
 * RUDDER_IPV6_SUBNET gets an IPv6 address behind rbr0 and an IPv6 default
 * route. Duplicate address detection and router solicitations are off, so
 * nothing waits on them.
 *
 * Namespaces are `<prefix><tag>-<role>` (rdk3x9-sw, rdk3x9-etcd, rdk3x9-h1,
 * rdk3x9-p1). Interfaces live inside those namespaces, so their names need
 * no tag. 198.18.0.0/15 is the RFC 2544 benchmarking range: it cannot clash
 * with a real network the machine is on.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { formatCidr, formatIp, parseCidr } from '../ip/ipv4';
import { formatIp6, parseCidr6 } from '../ip/ipv6';
import { UAPI_DIR_ENV } from '../backend/wireguard/uapi';
import { parseSubnetFile } from '../subnet/file';
import { DEFAULT_ETCD_PREFIX } from '../subnet/registry';
import { EtcdCluster, EtcdServer, cleanEtcdEnv, startEtcd, startEtcdCluster } from './etcd';
import { ManagedProcess, TopologyError, formatCommand, run, tailFile, type RunOptions, type RunResult } from './exec';
import { Cleanup, Netns, RunTag, addVethPair, removeLeftovers } from './netns';
import { giveUp, makeTempDir, repoRoot, waitUntil } from './util';

export const UNDERLAY_NETWORK = '198.18.0.0/15';
const UNDERLAY_PREFIX_LEN = 15;
/** Address of the (first) etcd namespace; also every host's default gateway. */
export const ETCD_IP = '198.18.0.250';
export const MAX_HOSTS = 249; // .1 .. .249; .250 and up belong to etcd members
export { DEFAULT_ETCD_PREFIX };

export function hostUnderlayIp(index: number): string {
  if (!Number.isInteger(index) || index < 1 || index > MAX_HOSTS) {
    throw new TopologyError('E_INTERNAL', `host index ${index} outside 1..${MAX_HOSTS}`);
  }
  return `198.18.0.${index}`;
}

function etcdMemberIp(i: number): string {
  return `198.18.0.${250 + i}`;
}

/** The IPv6 underlay prefix of a cluster made with `ipv6` (one /64 of 2001:2::/48: one L2 segment). */
export const UNDERLAY_NETWORK_V6 = '2001:2::/64';
const UNDERLAY_PREFIX_LEN_V6 = 64;

/** Host N's IPv6 underlay address: `2001:2::N` (N written as is, so h12 is 2001:2::12). */
export function hostUnderlayIpv6(index: number): string {
  hostUnderlayIp(index); // the same range check
  return `2001:2::${index}`;
}

function etcdMemberIpv6(i: number): string {
  return `2001:2::${250 + i}`;
}

// ---------------------------------------------------------------------------
// The subnet file (contract: docs/architecture.md, "The subnet file")

export interface SubnetEnv {
  /** RUDDER_NETWORK, e.g. 10.0.0.0/16 (0.0.0.0/0 in an IPv6-only file) */
  network: string;
  /** RUDDER_SUBNET, e.g. 10.0.5.1/24: the bridge address with the lease's length (0.0.0.0/0 in an IPv6-only file) */
  subnet: string;
  /** False for an IPv6-only file (no RUDDER_NETWORK/RUDDER_SUBNET). */
  ipv4: boolean;
  /** RUDDER_IPV6_NETWORK, e.g. fd42:42::/48 (IPv6 on). */
  ipv6Network?: string;
  /** RUDDER_IPV6_SUBNET, e.g. fd42:42:0:5::1/64: the bridge's IPv6 address with the lease's length (IPv6 on). */
  ipv6Subnet?: string;
  mtu: number;
  ipMasq: boolean;
  /** Every KEY=value line, as written. */
  raw: Record<string, string>;
}

/**
 * Parses a subnet file as the daemon writes it (every key there); throws
 * E_SUBNET_FILE naming the key that is missing or malformed. The format and
 * its checks are subnet/file.ts's; this is the harness's string view of it.
 */
export function parseSubnetEnv(text: string, source = 'subnet file'): SubnetEnv {
  const f = parseSubnetFile(text, source, { complete: true });
  return {
    network: formatCidr(f.network),
    subnet: `${formatIp(f.address.ip)}/${f.address.prefix}`,
    ipv4: f.ipv4,
    ...(f.ipv6Network !== undefined ? { ipv6Network: f.ipv6Network } : {}),
    ...(f.ipv6Subnet !== undefined ? { ipv6Subnet: f.ipv6Subnet } : {}),
    mtu: f.mtu,
    ipMasq: f.ipMasq,
    raw: Object.fromEntries(f.raw),
  };
}

// ---------------------------------------------------------------------------
// ping

export interface PingOptions {
  count?: number;
  /** Seconds between packets (below 0.2 needs root, which the harness has). */
  intervalS?: number;
  /** Seconds to wait for each reply before counting it lost. */
  replyWaitS?: number;
  /** ICMP payload size (-s). */
  size?: number;
  /** IP TTL of the requests (-t). */
  ttl?: number;
  /** Set DF and do not fragment locally (-M do), to probe the path MTU. */
  dontFragment?: boolean;
}

export interface PingReply {
  seq: number;
  ttl: number;
  timeMs: number;
}

export interface PingResult {
  target: string;
  transmitted: number;
  received: number;
  /** ICMP errors reported by ping ("+N errors"). */
  errorCount: number;
  replies: PingReply[];
  /** Lines such as "From 10.0.5.0 icmp_seq=1 Destination Net Unreachable". */
  errors: string[];
  rtt: { min: number; avg: number; max: number; mdev: number } | null;
  exitCode: number | null;
  output: string;
}

export function parsePing(target: string, out: string, exitCode: number | null): PingResult {
  const replies: PingReply[] = [];
  const errors: string[] = [];
  let transmitted = -1;
  let received = 0;
  let errorCount = 0;
  let rtt: PingResult['rtt'] = null;
  for (const line of out.split('\n')) {
    const reply = /bytes from .*icmp_seq=(\d+) ttl=(\d+) time=([\d.]+) ms/.exec(line);
    if (reply) {
      replies.push({ seq: Number(reply[1]), ttl: Number(reply[2]), timeMs: Number(reply[3]) });
      continue;
    }
    if (/^From \S+.*icmp_seq=/.test(line)) {
      errors.push(line.trim());
      continue;
    }
    const stats = /(\d+) packets transmitted, (\d+) received(?:, \+(\d+) errors)?/.exec(line);
    if (stats) {
      transmitted = Number(stats[1]);
      received = Number(stats[2]);
      errorCount = Number(stats[3] ?? 0);
      continue;
    }
    const r = /= ([\d.]+)\/([\d.]+)\/([\d.]+)\/([\d.]+) ms/.exec(line);
    if (r) rtt = { min: Number(r[1]), avg: Number(r[2]), max: Number(r[3]), mdev: Number(r[4]) };
  }
  if (transmitted < 0) {
    throw new TopologyError('E_INTERNAL', `ping ${target} did not run (exit status ${exitCode}): ${out.trim()}`, { exitCode });
  }
  return { target, transmitted, received, errorCount, replies, errors, rtt, exitCode, output: out };
}

/** Pings from inside `ns`. Loss is a result, not an exception; only a ping that cannot run throws. */
export async function ping(ns: Netns, target: string, opts: PingOptions = {}): Promise<PingResult> {
  const args = ['ping', '-n', '-c', String(opts.count ?? 3), '-i', String(opts.intervalS ?? 0.2), '-W', String(opts.replyWaitS ?? 2)];
  if (opts.size !== undefined) args.push('-s', String(opts.size));
  if (opts.ttl !== undefined) args.push('-t', String(opts.ttl));
  if (opts.dontFragment) args.push('-M', 'do');
  args.push(target);
  const r = await ns.exec(args, { allowFailure: true });
  return parsePing(target, r.stdout + r.stderr, r.code);
}

// ---------------------------------------------------------------------------
// Pods and hosts

/** A pod's IPv6 side (a subnet file with RUDDER_IPV6_SUBNET). */
export interface PodV6 {
  /** e.g. fd42:42:0:5::2 */
  readonly ip: string;
  /** The bridge's IPv6 address = default gateway, e.g. fd42:42:0:5::1 */
  readonly gateway: string;
  readonly prefixLen: number;
}

/** A "container": a namespace behind the host's rbr0 bridge. */
export class Pod {
  constructor(
    readonly ns: Netns,
    /** Pod address, e.g. 10.0.5.2 (the IPv6 one in an IPv6-only network) */
    readonly ip: string,
    /** Bridge address = default gateway, e.g. 10.0.5.1 (IPv6 in an IPv6-only network) */
    readonly gateway: string,
    readonly prefixLen: number,
    readonly mtu: number,
    /** The IPv6 address, gateway and length when the subnet file has RUDDER_IPV6_SUBNET. */
    readonly v6: PodV6 | null = null,
    /** False in an IPv6-only network (then `ip` is the IPv6 address). */
    readonly hasIpv4 = true,
  ) {}

  /** The pod's IPv4 address; null in an IPv6-only network. */
  get ipv4(): string | null {
    return this.hasIpv4 ? this.ip : null;
  }

  /** The pod's IPv6 address; null without IPv6. */
  get ipv6(): string | null {
    return this.v6?.ip ?? null;
  }

  exec(argv: readonly string[], opts?: RunOptions): Promise<RunResult> {
    return this.ns.exec(argv, opts);
  }

  ping(target: string, opts?: PingOptions): Promise<PingResult> {
    return ping(this.ns, target, opts);
  }
}

/** Identity of one version of the subnet file (it is replaced by rename, so each write has a new inode). */
export interface FileStamp {
  ino: number;
  mtimeMs: number;
}

export interface WaitSubnetOptions {
  /**
   * Only accept a file written after this one (from subnetFileStamp()), e.g.
   * after a restart. Compared by identity, not by clock: file times come from
   * a coarse kernel clock and can be older than a Date.now() taken before.
   */
  changedSince?: FileStamp | null;
  giveUpMs?: number;
}

export class Host {
  /** `rudder` process while started (possibly already exited). */
  rudder: ManagedProcess | null = null;
  pod: Pod | null = null;
  /** Extra daemon flags of this host, used by every start. */
  readonly rudderArgs: string[];

  constructor(
    readonly cluster: Cluster,
    readonly index: number,
    readonly ns: Netns,
    rudderArgs: string[],
  ) {
    this.rudderArgs = rudderArgs;
    fs.mkdirSync(this.dir, { recursive: true });
  }

  /** `h1`, `h2`, ... */
  get name(): string {
    return `h${this.index}`;
  }

  get underlayIp(): string {
    return hostUnderlayIp(this.index);
  }

  /** The host's IPv6 underlay address (2001:2::N); only on a cluster made with `ipv6`. */
  get underlayIpv6(): string {
    if (!this.cluster.ipv6) throw new TopologyError('E_INTERNAL', `${this.name} has no IPv6 underlay: create the cluster with ipv6: true`);
    return hostUnderlayIpv6(this.index);
  }

  /** This host's files: subnet.env, rudder.log. */
  get dir(): string {
    return path.join(this.cluster.dir, this.name);
  }

  get subnetFile(): string {
    return path.join(this.dir, 'subnet.env');
  }

  get logFile(): string {
    return path.join(this.dir, 'rudder.log');
  }

  /**
   * The daemon's WireGuard status socket directory (RUDDER_TEST_UAPI_DIR):
   * `<dir>/run/wireguard`, so that bind-mounting `<dir>/run` over /run shows
   * it to wg(8) where it looks, /var/run/wireguard.
   */
  get uapiDir(): string {
    return path.join(this.dir, 'run', 'wireguard');
  }

  exec(argv: readonly string[], opts?: RunOptions): Promise<RunResult> {
    return this.ns.exec(argv, opts);
  }

  ping(target: string, opts?: PingOptions): Promise<PingResult> {
    return ping(this.ns, target, opts);
  }

  /** The daemon's command line (without the `ip netns exec` prefix). */
  rudderArgv(extraArgs: readonly string[] = []): string[] {
    return [
      this.cluster.rudderBin,
      `-etcd-endpoint=${this.cluster.etcdEndpoints.join(',')}`,
      `-subnet-file=${this.subnetFile}`,
      ...this.cluster.rudderArgs,
      ...this.rudderArgs,
      ...extraArgs,
    ];
  }

  /**
   * Starts the daemon in this host's namespace, output appended to rudder.log.
   * Does not wait for anything; see waitSubnetFile() / up().
   */
  async startRudder(extraArgs: readonly string[] = []): Promise<ManagedProcess> {
    if (this.rudder?.running) throw new TopologyError('E_INTERNAL', `rudder on ${this.name} already runs (pid ${this.rudder.pid})`);
    const argv = this.rudderArgv(extraArgs);
    fs.appendFileSync(this.logFile, `--- harness: starting ${formatCommand(argv)} in ${this.ns.name} at ${new Date().toISOString()}\n`);
    // Each host its own WireGuard status socket directory: the hosts share one file system.
    const env = { ...this.cluster.rudderEnv, [UAPI_DIR_ENV]: this.uapiDir };
    this.rudder = await this.ns.spawn(argv, { logFile: this.logFile, label: `rudder ${this.name}`, env });
    return this.rudder;
  }

  /** SIGTERM (graceful shutdown), SIGKILL after `graceMs`. */
  async stopRudder(graceMs = 15_000): Promise<void> {
    await this.rudder?.stop(graceMs);
  }

  /** SIGKILL: a crash. */
  async killRudder(): Promise<void> {
    await this.rudder?.kill();
  }

  async restartRudder(extraArgs: readonly string[] = []): Promise<ManagedProcess> {
    await this.stopRudder();
    return this.startRudder(extraArgs);
  }

  /** Which version of the subnet file is there now; null if none. */
  subnetFileStamp(): FileStamp | null {
    const st = fs.statSync(this.subnetFile, { throwIfNoEntry: false });
    return st ? { ino: st.ino, mtimeMs: st.mtimeMs } : null;
  }

  /** The subnet file if it is there and complete; null if not written yet. */
  readSubnetFile(): SubnetEnv | null {
    let text: string;
    try {
      text = fs.readFileSync(this.subnetFile, 'utf8');
    } catch {
      return null;
    }
    return parseSubnetEnv(text, this.subnetFile);
  }

  /** Waits for the daemon to write its subnet file; fails at once, with the log, if it exits first. */
  async waitSubnetFile(opts: WaitSubnetOptions = {}): Promise<SubnetEnv> {
    return waitUntil(
      () => {
        if (this.rudder && !this.rudder.running) giveUp(this.rudderExitedError('before writing its subnet file'));
        const since = opts.changedSince;
        if (since) {
          const now = this.subnetFileStamp();
          if (!now || (now.ino === since.ino && now.mtimeMs === since.mtimeMs)) return undefined;
        }
        return this.readSubnetFile() ?? undefined;
      },
      { giveUpMs: opts.giveUpMs ?? this.cluster.giveUpMs, intervalMs: 100, what: `${this.subnetFile} (rudder on ${this.name}; log ${this.logFile})` },
    );
  }

  rudderLog(maxBytes = 8000): string {
    return tailFile(this.logFile, maxBytes);
  }

  private rudderExitedError(when: string): TopologyError {
    const ex = this.rudder?.exit;
    const how = ex ? (ex.signal ? `signal ${ex.signal}` : `exit status ${ex.code}`) : 'unknown';
    const argv = formatCommand(this.rudder?.argv ?? []);
    return new TopologyError('E_INTERNAL', `rudder on ${this.name} exited (${how}) ${when}: ${argv}; log ${this.logFile}:\n${this.rudderLog(3000)}`, {
      command: argv,
      exitCode: ex?.code ?? null,
      stderr: this.rudderLog(3000),
    });
  }

  /**
   * Builds what a user builds from the subnet file: bridge rbr0 carrying
   * RUDDER_SUBNET with MTU RUDDER_MTU, and a pod namespace on it at
   * network+2 routed via the bridge. With RUDDER_IPV6_SUBNET (on a cluster
   * made with `ipv6`) the same for IPv6: the bridge takes that address, the
   * pod the lease's ::2, and an IPv6 default route via the bridge. Replaces
   * an earlier pod of this host (e.g. after the daemon got a different subnet).
   */
  async setupPod(env: SubnetEnv): Promise<Pod> {
    const cidr = env.ipv4 ? parseCidr(env.subnet) : null;
    if (env.ipv4 && !cidr) throw new TopologyError('E_SUBNET_FILE', `RUDDER_SUBNET=${env.subnet} is not an address/length`);
    let v6: PodV6 | null = null;
    if (env.ipv6Subnet !== undefined) {
      if (!this.cluster.ipv6) throw new TopologyError('E_INTERNAL', `${this.name}: the subnet file has RUDDER_IPV6_SUBNET but IPv6 is off in this cluster: create it with ipv6: true`);
      const c6 = parseCidr6(env.ipv6Subnet);
      if (!c6) throw new TopologyError('E_SUBNET_FILE', `RUDDER_IPV6_SUBNET=${env.ipv6Subnet} is not an IPv6 address/length`);
      v6 = { ip: formatIp6(c6.ip + 2n), gateway: env.ipv6Subnet.split('/')[0] ?? '', prefixLen: c6.prefix };
    }
    if (!cidr && !v6) throw new TopologyError('E_SUBNET_FILE', `${this.subnetFile}: neither RUDDER_SUBNET nor RUDDER_IPV6_SUBNET`);
    await this.removePod();

    await this.ns.addBridge('rbr0', env.mtu);
    if (cidr) await this.ns.addAddress('rbr0', env.subnet);
    if (v6) await this.ns.ip(['-6', 'addr', 'add', `${v6.gateway}/${v6.prefixLen}`, 'dev', 'rbr0', 'nodad']);
    await this.ns.linkUp('rbr0');

    const podNs = await Netns.create(this.cluster.tag.name(`p${this.index}`), this.cluster.cleanup);
    await this.cluster.quietNamespace(podNs);
    await addVethPair({ ns: this.ns, ifname: 'veth-pod' }, { ns: podNs, ifname: 'eth0' }, env.mtu);
    await this.ns.setMaster('veth-pod', 'rbr0');
    if (cidr) {
      const gateway = env.subnet.split('/')[0] ?? '';
      const podIp = formatIp(cidr.ip + 2);
      await podNs.addAddress('eth0', `${podIp}/${cidr.prefix}`);
      await podNs.ip(['route', 'add', 'default', 'via', gateway, 'dev', 'eth0']);
      this.pod = new Pod(podNs, podIp, gateway, cidr.prefix, env.mtu, v6);
    } else {
      this.pod = new Pod(podNs, (v6 as PodV6).ip, (v6 as PodV6).gateway, (v6 as PodV6).prefixLen, env.mtu, v6, false);
    }
    if (v6) {
      await podNs.ip(['-6', 'addr', 'add', `${v6.ip}/${v6.prefixLen}`, 'dev', 'eth0', 'nodad']);
      await podNs.ip(['-6', 'route', 'add', 'default', 'via', v6.gateway, 'dev', 'eth0']);
    }
    return this.pod;
  }

  async removePod(): Promise<void> {
    if (this.pod) {
      await this.pod.ns.delete();
      this.pod = null;
    }
    // The veth went with the pod namespace; the bridge stays unless removed.
    await this.ns.ip(['link', 'del', 'rbr0'], { allowFailure: true });
  }

  /** Start the daemon, wait for its subnet file, build the pod: a host as a user would set it up. */
  async up(extraArgs: readonly string[] = []): Promise<{ env: SubnetEnv; pod: Pod }> {
    await this.startRudder(extraArgs);
    const env = await this.waitSubnetFile();
    const pod = await this.setupPod(env);
    return { env, pod };
  }
}

// ---------------------------------------------------------------------------
// The cluster

export interface ClusterOptions {
  /** Hosts to create now (more later with addHost). Default 2. */
  hosts?: number;
  /** Namespace name prefix (the tag follows). Default `rd`. */
  prefix?: string;
  /** MTU of the underlay links. Default 1500. */
  underlayMtu?: number;
  /** etcd members: 0 (none), 1 (default, at 198.18.0.250) or 3 (at .250, .251, .252). */
  etcdMembers?: 0 | 1 | 3;
  /** Key prefix used by putConfig()/listSubnets(). Default /coreos.com/network. */
  etcdPrefix?: string;
  /** The daemon. Default: bin/rudder of this repository. */
  rudderBin?: string;
  /** Flags for every host's daemon. */
  rudderArgs?: string[];
  /** Environment of the daemons. Default: ours without RUDDER_* (so a developer's shell cannot change a test). */
  rudderEnv?: NodeJS.ProcessEnv;
  /** Keep the run directory (logs) after teardown. Default: env RUDDER_KEEP_TMP=1. */
  keepDir?: boolean;
  /** Give-up for waits (etcd health, subnet files). Generous; not a speed check. */
  giveUpMs?: number;
  /** Switch IPv6 off in every namespace so router solicitations etc. do not add noise. Default true; ignored with `ipv6`. */
  disableIpv6?: boolean;
  /**
   * A dual-stack underlay (hosts at 2001:2::N/64 beside their IPv4 address,
   * IPv6 forwarding on) and IPv6 pods from RUDDER_IPV6_SUBNET. Default false.
   */
  ipv6?: boolean;
  /**
   * With `ipv6`: the hosts' eth0 has only its IPv6 address (2001:2::N/64) and
   * an IPv6 default route, and etcd is reached at [2001:2::250] (one member):
   * an IPv6-only underlay. Default false.
   */
  ipv6OnlyHosts?: boolean;
  /** First remove leftovers of killed runs with this prefix (the sandbox does). Default false. */
  sweepLeftovers?: boolean;
}

export interface HostOptions {
  /** Extra daemon flags for this host. */
  rudderArgs?: string[];
}


/**
 * The caller's environment without RUDDER_* (flags must come from the test), except
 * the udp data plane knobs: `RUDDER_UDP_OFFLOADS=0 npm test -- e2e` runs the udp daemons
 * with the data plane's offloads forced off (likewise RUDDER_UDP_QUEUES, RUDDER_UDP_BUSY_POLL, and
 * RUDDER_WG_CRYPTO=evp, WireGuard's sealing through EVP).
 */
const PASSED_RUDDER_ENV = new Set(['RUDDER_UDP_OFFLOADS', 'RUDDER_UDP_QUEUES', 'RUDDER_UDP_BUSY_POLL', 'RUDDER_WG_CRYPTO']);

function defaultRudderEnv(): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) if (!k.startsWith('RUDDER_') || PASSED_RUDDER_ENV.has(k)) env[k] = v;
  return env;
}

export class Cluster {
  readonly tag: RunTag;
  readonly cleanup: Cleanup;
  /** Run directory: etcd data and log, one subdirectory per host. */
  readonly dir: string;
  readonly hosts: Host[] = [];
  readonly etcdPrefix: string;
  readonly rudderBin: string;
  readonly rudderArgs: string[];
  readonly rudderEnv: NodeJS.ProcessEnv;
  readonly underlayMtu: number;
  readonly giveUpMs: number;
  switchNs!: Netns;
  /** Namespaces of the etcd members (one by default). */
  etcdNs: Netns[] = [];
  /** etcd servers, in the order of etcdNs. */
  etcdServers: EtcdServer[] = [];
  /** The underlay and the pods carry IPv6 too (ClusterOptions.ipv6). */
  readonly ipv6: boolean;
  /** Hosts without IPv4 on the underlay (ClusterOptions.ipv6OnlyHosts). */
  readonly ipv6OnlyHosts: boolean;
  private readonly disableIpv6: boolean;
  private torn = false;

  private constructor(opts: ClusterOptions) {
    this.tag = RunTag.create(opts.prefix);
    this.cleanup = new Cleanup(`cluster ${this.tag.name('*')}`);
    const tag = this.tag;
    this.cleanup.addHook(() => tag.release(), () => tag.release());
    this.dir = makeTempDir(`rudder-${tag.prefix}${tag.tag}-`);
    tag.recordDir(this.dir);
    const keep = opts.keepDir ?? process.env.RUDDER_KEEP_TMP === '1';
    if (!keep) this.cleanup.addDir(this.dir);
    this.etcdPrefix = opts.etcdPrefix ?? DEFAULT_ETCD_PREFIX;
    this.rudderBin = opts.rudderBin ?? path.join(repoRoot(), 'bin', 'rudder');
    this.rudderArgs = opts.rudderArgs ?? [];
    this.rudderEnv = opts.rudderEnv ?? defaultRudderEnv();
    this.underlayMtu = opts.underlayMtu ?? 1500;
    this.giveUpMs = opts.giveUpMs ?? 90_000;
    this.ipv6 = opts.ipv6 ?? false;
    this.ipv6OnlyHosts = opts.ipv6OnlyHosts ?? false;
    if (this.ipv6OnlyHosts && (!this.ipv6 || (opts.etcdMembers ?? 1) !== 1)) {
      throw new TopologyError('E_INTERNAL', 'ipv6OnlyHosts needs ipv6: true and one etcd member');
    }
    this.disableIpv6 = !this.ipv6 && (opts.disableIpv6 ?? true);
  }

  /** Builds the switch, etcd and `hosts` hosts. Anything built is removed again if a step fails. */
  static async create(opts: ClusterOptions = {}): Promise<Cluster> {
    if (opts.sweepLeftovers) removeLeftovers(opts.prefix);
    const c = new Cluster(opts);
    try {
      await c.buildSwitch();
      await c.buildEtcd(opts.etcdMembers ?? 1);
      for (let i = 0; i < (opts.hosts ?? 2); i++) await c.addHost();
      return c;
    } catch (e) {
      await c.teardown().catch(() => undefined);
      throw e;
    }
  }

  /** Client URLs of etcd as seen from the hosts. */
  get etcdEndpoints(): string[] {
    return this.etcdServers.map((s) => s.clientUrl);
  }

  /** The first etcd server (the only one unless etcdMembers is 3). */
  get etcd(): EtcdServer {
    const s = this.etcdServers[0];
    if (!s) throw new TopologyError('E_INTERNAL', 'this cluster has no etcd');
    return s;
  }

  host(which: number | string): Host {
    const h = typeof which === 'number' ? this.hosts.find((x) => x.index === which) : this.hosts.find((x) => x.name === which);
    if (!h) throw new TopologyError('E_INTERNAL', `no host ${which} (have ${this.hosts.map((x) => x.name).join(', ') || 'none'})`);
    return h;
  }

  /** Per-namespace settings every namespace of the topology gets. */
  async quietNamespace(ns: Netns): Promise<void> {
    if (this.ipv6) {
      // IPv6 on, without the noise and the waits: no duplicate address detection, no router solicitations or SLAAC.
      for (const conf of ['all', 'default']) {
        for (const [k, v] of [['accept_dad', 0], ['dad_transmits', 0], ['router_solicitations', 0], ['accept_ra', 0], ['autoconf', 0]] as const) {
          await ns.exec(['sysctl', '-q', '-w', `net.ipv6.conf.${conf}.${k}=${v}`], { allowFailure: true });
        }
      }
      return;
    }
    if (!this.disableIpv6) return;
    // Set before interfaces exist so they inherit it; a kernel without IPv6 has nothing to switch off.
    for (const k of ['net.ipv6.conf.all.disable_ipv6', 'net.ipv6.conf.default.disable_ipv6']) {
      await ns.exec(['sysctl', '-q', '-w', `${k}=1`], { allowFailure: true });
    }
  }

  private async buildSwitch(): Promise<void> {
    this.switchNs = await Netns.create(this.tag.name('sw'), this.cleanup);
    await this.quietNamespace(this.switchNs);
    await this.switchNs.addBridge('br0', this.underlayMtu);
    // No querier on this segment: without snooping, neighbour discovery's multicast reaches every port.
    if (this.ipv6) await this.switchNs.ip(['link', 'set', 'br0', 'type', 'bridge', 'mcast_snooping', '0']);
    await this.switchNs.linkUp('br0');
  }

  /** A namespace plugged into the switch with `eth0` at `ip`/15 (none if null) and `ip6`/64; `port` is its switch-side interface. */
  private async plugIn(role: string, port: string, ip: string | null, ip6?: string): Promise<Netns> {
    const ns = await Netns.create(this.tag.name(role), this.cleanup);
    await this.quietNamespace(ns);
    await addVethPair({ ns: this.switchNs, ifname: port }, { ns, ifname: 'eth0' }, this.underlayMtu);
    await this.switchNs.setMaster(port, 'br0');
    if (ip !== null) await ns.addAddress('eth0', `${ip}/${UNDERLAY_PREFIX_LEN}`);
    if (this.ipv6 && ip6 !== undefined) await ns.ip(['-6', 'addr', 'add', `${ip6}/${UNDERLAY_PREFIX_LEN_V6}`, 'dev', 'eth0', 'nodad']);
    return ns;
  }

  private async buildEtcd(members: number): Promise<void> {
    if (members === 0) return;
    const nss: Netns[] = [];
    for (let i = 0; i < members; i++) {
      const role = members === 1 ? 'etcd' : `etcd${i + 1}`;
      nss.push(await this.plugIn(role, `sw-${role}`, etcdMemberIp(i), etcdMemberIpv6(i)));
    }
    this.etcdNs = nss;
    const etcdDir = path.join(this.dir, 'etcd');
    if (members === 1) {
      const ns = nss[0] as Netns;
      const server = await startEtcd({
        netns: ns,
        host: this.ipv6OnlyHosts ? `[${etcdMemberIpv6(0)}]` : etcdMemberIp(0),
        dataDir: path.join(etcdDir, 'data'),
        logFile: path.join(etcdDir, 'etcd.log'),
        cleanup: this.cleanup,
        giveUpMs: this.giveUpMs,
      });
      this.etcdServers = [server];
    } else {
      const cl: EtcdCluster = await startEtcdCluster({
        members: nss.map((ns, i) => ({ netns: ns, host: etcdMemberIp(i) })),
        cleanup: this.cleanup,
        giveUpMs: this.giveUpMs,
      });
      this.etcdServers = cl.members;
    }
  }

  /** Adds host h<N+1> (also after daemons run elsewhere: a late join). */
  async addHost(opts: HostOptions = {}): Promise<Host> {
    const index = this.hosts.reduce((m, h) => Math.max(m, h.index), 0) + 1;
    const ns = await this.plugIn(`h${index}`, `sw-h${index}`, this.ipv6OnlyHosts ? null : hostUnderlayIp(index), hostUnderlayIpv6(index));
    await ns.sysctl('net.ipv4.ip_forward', 1);
    // The daemon finds its underlay interface through the default route.
    if (!this.ipv6OnlyHosts) await ns.ip(['route', 'add', 'default', 'via', ETCD_IP, 'dev', 'eth0']);
    if (this.ipv6) {
      await ns.sysctl('net.ipv6.conf.all.forwarding', 1);
      await ns.ip(['-6', 'route', 'add', 'default', 'via', etcdMemberIpv6(0), 'dev', 'eth0']);
    }
    const host = new Host(this, index, ns, opts.rudderArgs ?? []);
    this.hosts.push(host);
    return host;
  }

  /** etcdctl (API v3) run in the etcd namespace against all members. */
  etcdctl(args: readonly string[], opts: RunOptions = {}): Promise<RunResult> {
    const ns = this.etcdNs[0];
    if (!ns) return Promise.reject(new TopologyError('E_ETCD', 'this cluster has no etcd'));
    return run(['ip', 'netns', 'exec', ns.name, 'etcdctl', `--endpoints=${this.etcdEndpoints.join(',')}`, ...args], {
      errorCode: 'E_ETCD',
      ...opts,
      env: cleanEtcdEnv({ ETCDCTL_API: '3', ...(opts.env ?? {}) }),
    });
  }

  /** Publishes the network config (`<prefix>/config`) as the operator would. */
  async putConfig(config: object | string, prefix = this.etcdPrefix): Promise<void> {
    const value = typeof config === 'string' ? config : JSON.stringify(config);
    await this.etcdctl(['put', `${prefix}/config`, value]);
  }

  /** Value of a key, or null if absent. */
  async getKey(key: string): Promise<string | null> {
    const kvs = await this.getPrefix(key, false);
    return kvs[0]?.value ?? null;
  }

  /** Keys and values under a prefix (or one key, with `isPrefix` false). */
  async getPrefix(key: string, isPrefix = true): Promise<Array<{ key: string; value: string; lease: string }>> {
    const r = await this.etcdctl(['get', key, ...(isPrefix ? ['--prefix'] : []), '-w', 'json']);
    const parsed = JSON.parse(r.stdout) as { kvs?: Array<{ key: string; value?: string; lease?: number | string }> };
    return (parsed.kvs ?? []).map((kv) => ({
      key: Buffer.from(kv.key, 'base64').toString('utf8'),
      value: Buffer.from(kv.value ?? '', 'base64').toString('utf8'),
      // etcdctl prints the lease ID as a JSON number; large IDs lose precision, so it is only good as "0 or not".
      lease: String(kv.lease ?? 0),
    }));
  }

  /** The subnet leases in etcd (`<prefix>/subnets/...`), values parsed. */
  async listSubnets(prefix = this.etcdPrefix): Promise<Array<{ subnet: string; value: Record<string, unknown>; hasLease: boolean }>> {
    const kvs = await this.getPrefix(`${prefix}/subnets/`);
    return kvs.map((kv) => {
      const k = kv.key.slice(`${prefix}/subnets/`.length);
      const dash = k.lastIndexOf('-');
      return {
        subnet: dash < 0 ? k : `${k.slice(0, dash)}/${k.slice(dash + 1)}`,
        value: JSON.parse(kv.value) as Record<string, unknown>,
        hasLease: kv.lease !== '0',
      };
    });
  }

  /**
   * Removes everything: daemons first (SIGTERM, so they can clean up after
   * themselves while etcd is still there), then etcd and every other
   * process, then the namespaces, then the run directory.
   */
  async teardown(): Promise<void> {
    if (this.torn) return;
    this.torn = true;
    await Promise.all(this.hosts.map((h) => h.stopRudder().catch(() => undefined)));
    await this.cleanup.run();
  }
}

/** Shorthand: `const c = await createCluster({ hosts: 2 })`. */
export function createCluster(opts: ClusterOptions = {}): Promise<Cluster> {
  return Cluster.create(opts);
}
