/**
 * A real etcd server (the `etcd` binary, Debian's etcd-server) for tests and
 * `rudder sandbox`: fresh data dir, its own ports, healthy before we return.
 *
 * Two placements:
 *  - loopback in the current namespace (integration tests): 127.0.0.1 on free
 *    ports; nothing is added to the namespace, etcd only listens;
 *  - inside a namespace of the one-machine topology (e2e): a fixed address
 *    such as 198.18.0.250 on the standard ports, which are free there because
 *    the namespace is ours alone.
 *
 * Members carry their cluster membership (`initialCluster`), so a 3-member
 * cluster for fault tests is three EtcdServers started together
 * (`startEtcdCluster`).
 */
import * as fs from 'node:fs';
import * as http from 'node:http';
import * as https from 'node:https';
import * as path from 'node:path';
import { ManagedProcess, TopologyError, formatCommand, run } from './exec';
import { Cleanup, type Netns } from './netns';
import { freePort, giveUp, makeTempDir, removeDir, waitUntil } from './util';

export interface EtcdOptions {
  /** Member name; `default` for a single server. */
  name?: string;
  /** Address etcd listens on and advertises. Default 127.0.0.1. */
  host?: string;
  /** Run inside this namespace (via `ip netns exec`); default: the current one. */
  netns?: Netns;
  /** Client port. Default: a free port on loopback, 2379 inside a namespace. */
  clientPort?: number;
  /** Peer port. Default: a free port on loopback, 2380 inside a namespace. */
  peerPort?: number;
  /** Where etcd keeps its data. Default: a new temp dir, removed by dispose(). */
  dataDir?: string;
  /** stdout+stderr of etcd (appended across restarts). Default: next to the data dir. */
  logFile?: string;
  /** Registry that ends etcd however the run ends. Default: a private one. */
  cleanup?: Cleanup;
  /** `name=peerURL,...` of all members; default: just this one. */
  initialCluster?: string;
  /** Default 'new'. 'existing' when adding a member to a running cluster. */
  initialClusterState?: 'new' | 'existing';
  clusterToken?: string;
  /** More etcd flags, e.g. `--auto-compaction-retention=1`. */
  extraArgs?: string[];
  /**
   * Serve clients over TLS (https:// client URLs) with this server
   * certificate; with `clientCA`, clients must present a certificate signed
   * by it (--client-cert-auth). Health probes then use `probe` as client.
   */
  clientTls?: {
    certFile: string;
    keyFile: string;
    clientCA?: string;
    /** CA, certificate and key the harness's health probe uses. */
    probe: { caFile: string; certFile?: string; keyFile?: string };
  };
  /** When to stop waiting for health (generous; not a speed check). */
  giveUpMs?: number;
  /** Don't wait for health in start() (members of a cluster wait for each other). */
  noWait?: boolean;
}

/** Environment for etcd/etcdctl without the caller's ETCD_* settings, which etcd would read as flags. */
export function cleanEtcdEnv(extra: NodeJS.ProcessEnv = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) {
    if (!k.startsWith('ETCD_') && !k.startsWith('ETCDCTL_')) env[k] = v;
  }
  return { ...env, ...extra };
}

function httpGet(url: string, tls?: { caFile: string; certFile?: string; keyFile?: string }): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const opts: https.RequestOptions = { timeout: 5000 };
    if (tls) {
      opts.ca = fs.readFileSync(tls.caFile);
      if (tls.certFile) opts.cert = fs.readFileSync(tls.certFile);
      if (tls.keyFile) opts.key = fs.readFileSync(tls.keyFile);
    }
    const req = (url.startsWith('https:') ? https : http).get(url, opts, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString('utf8') }));
      res.on('error', reject);
    });
    req.on('timeout', () => req.destroy(new Error(`GET ${url}: no answer`)));
    req.on('error', reject);
  });
}

export class EtcdServer {
  readonly name: string;
  readonly host: string;
  readonly netns: Netns | undefined;
  readonly clientPort: number;
  readonly peerPort: number;
  readonly dataDir: string;
  readonly logFile: string;
  readonly cleanup: Cleanup;
  private readonly opts: EtcdOptions;
  private readonly ownedDirs: string[];
  private readonly ownsCleanup: boolean;
  private proc: ManagedProcess | null = null;

  private constructor(opts: EtcdOptions, ports: { client: number; peer: number }, cleanup: Cleanup) {
    this.opts = opts;
    this.name = opts.name ?? 'default';
    this.host = opts.host ?? '127.0.0.1';
    this.netns = opts.netns;
    this.clientPort = ports.client;
    this.peerPort = ports.peer;
    this.cleanup = cleanup;
    this.ownedDirs = [];
    if (opts.dataDir) {
      this.dataDir = opts.dataDir;
    } else {
      const base = makeTempDir(`rudder-etcd-${this.name}-`);
      this.ownedDirs.push(base);
      this.dataDir = path.join(base, 'data');
    }
    this.logFile = opts.logFile ?? `${this.dataDir.replace(/\/+$/, '')}.log`;
    for (const d of this.ownedDirs) cleanup.addDir(d);
    this.ownsCleanup = opts.cleanup === undefined;
  }

  /** Creates the server object with its ports and directories; does not start it. */
  static async create(opts: EtcdOptions = {}): Promise<EtcdServer> {
    const inNs = opts.netns !== undefined;
    const host = opts.host ?? '127.0.0.1';
    const client = opts.clientPort ?? (inNs ? 2379 : await freePort(host));
    let peer = opts.peerPort ?? (inNs ? 2380 : await freePort(host));
    while (peer === client) peer = await freePort(host);
    return new EtcdServer(opts, { client, peer }, opts.cleanup ?? new Cleanup('etcd'));
  }

  get clientUrl(): string {
    return `${this.opts.clientTls ? 'https' : 'http'}://${this.host}:${this.clientPort}`;
  }

  get peerUrl(): string {
    return `http://${this.host}:${this.peerPort}`;
  }

  /** Client endpoints, ready for src/etcd's client or `-etcd-endpoint`. */
  get endpoints(): string[] {
    return [this.clientUrl];
  }

  get pid(): number | null {
    return this.proc?.running ? this.proc.pid : null;
  }

  get running(): boolean {
    return this.proc?.running ?? false;
  }

  get process(): ManagedProcess | null {
    return this.proc;
  }

  private argv(): string[] {
    return [
      'etcd',
      `--name=${this.name}`,
      `--data-dir=${this.dataDir}`,
      `--listen-client-urls=${this.clientUrl}`,
      `--advertise-client-urls=${this.clientUrl}`,
      `--listen-peer-urls=${this.peerUrl}`,
      `--initial-advertise-peer-urls=${this.peerUrl}`,
      `--initial-cluster=${this.opts.initialCluster ?? `${this.name}=${this.peerUrl}`}`,
      `--initial-cluster-state=${this.opts.initialClusterState ?? 'new'}`,
      `--initial-cluster-token=${this.opts.clusterToken ?? 'rudder-test'}`,
      '--logger=zap',
      '--log-outputs=stderr',
      ...this.tlsArgs(),
      ...(this.opts.extraArgs ?? []),
    ];
  }

  /** etcdctl's flags for the health probe's TLS identity (none without clientTls). */
  etcdctlTlsArgs(): string[] {
    const p = this.opts.clientTls?.probe;
    if (!p) return [];
    return [`--cacert=${p.caFile}`, ...(p.certFile ? [`--cert=${p.certFile}`] : []), ...(p.keyFile ? [`--key=${p.keyFile}`] : [])];
  }

  private tlsArgs(): string[] {
    const t = this.opts.clientTls;
    if (!t) return [];
    return [
      `--cert-file=${t.certFile}`,
      `--key-file=${t.keyFile}`,
      ...(t.clientCA ? ['--client-cert-auth', `--trusted-ca-file=${t.clientCA}`] : []),
    ];
  }

  /**
   * Starts etcd (same data dir and ports every time) and waits until healthy,
   * unless `wait` is false (cluster members, which need their peers first).
   */
  async start(wait = !this.opts.noWait): Promise<void> {
    if (this.running) return;
    fs.mkdirSync(path.dirname(this.dataDir), { recursive: true });
    fs.appendFileSync(this.logFile, `--- harness: starting etcd ${formatCommand(this.argv())} at ${new Date().toISOString()}\n`);
    const env = cleanEtcdEnv();
    this.proc = this.netns
      ? await this.netns.spawn(this.argv(), { logFile: this.logFile, label: `etcd ${this.name}`, env })
      : await ManagedProcess.start(this.argv(), { logFile: this.logFile, label: `etcd ${this.name}`, env });
    this.cleanup.addProcess(this.proc);
    if (wait) await this.waitHealthy();
  }

  /** One health probe: true when etcd answers /health with health=true. */
  async healthy(): Promise<boolean> {
    if (this.netns) {
      const r = await run(
        ['ip', 'netns', 'exec', this.netns.name, 'etcdctl', `--endpoints=${this.clientUrl}`, ...this.etcdctlTlsArgs(), '--dial-timeout=2s', '--command-timeout=5s', 'endpoint', 'health'],
        { env: cleanEtcdEnv({ ETCDCTL_API: '3' }), allowFailure: true },
      );
      return r.code === 0;
    }
    try {
      const r = await httpGet(`${this.clientUrl}/health`, this.opts.clientTls?.probe);
      return r.status === 200 && (JSON.parse(r.body) as { health?: unknown }).health === 'true';
    } catch {
      return false;
    }
  }

  /** Waits until healthy; fails at once, with the log, if etcd exits meanwhile. */
  async waitHealthy(): Promise<void> {
    const proc = this.proc;
    await waitUntil(
      async () => {
        if (!proc || !proc.running) giveUp(this.exitedError());
        return this.healthy();
      },
      { giveUpMs: this.opts.giveUpMs ?? 60_000, intervalMs: 150, what: `etcd ${this.name} at ${this.clientUrl} to be healthy` },
    ).catch((e: unknown) => {
      if (e instanceof TopologyError && e.code === 'E_ETCD') throw e;
      throw new TopologyError('E_ETCD', `${e instanceof Error ? e.message : String(e)}; log ${this.logFile}:\n${this.proc?.logTail(2000) ?? ''}`, { cause: e });
    });
  }

  private exitedError(): TopologyError {
    const ex = this.proc?.exit;
    const how = ex ? (ex.signal ? `signal ${ex.signal}` : `exit status ${ex.code}`) : 'not started';
    return new TopologyError('E_ETCD', `etcd ${this.name} exited (${how}) before it was healthy: ${formatCommand(this.argv())}; log ${this.logFile}:\n${this.proc?.logTail(2000) ?? ''}`, {
      command: formatCommand(this.argv()),
      exitCode: ex?.code ?? null,
      stderr: this.proc?.logTail(2000) ?? '',
    });
  }

  /** True when the last start failed because a port was taken (free ports can be raced). */
  portConflict(): boolean {
    return /address already in use/i.test(this.proc?.logTail(4000) ?? '');
  }

  /** SIGTERM, then SIGKILL after `graceMs`; the data dir is kept for start()/restart(). */
  async stop(graceMs = 10_000): Promise<void> {
    const p = this.proc;
    if (!p) return;
    await p.stop(graceMs);
    this.cleanup.forgetProcess(p);
  }

  /** SIGKILL: what a crash or an OOM kill looks like to the cluster. */
  async kill(): Promise<void> {
    const p = this.proc;
    if (!p) return;
    await p.kill();
    this.cleanup.forgetProcess(p);
  }

  /** Stop and start again with the same data dir and ports; waits until healthy. */
  async restart(): Promise<void> {
    await this.stop();
    await this.start(true);
  }

  /** Stops etcd and removes the directories it created. */
  async dispose(): Promise<void> {
    await this.stop();
    for (const d of this.ownedDirs) removeDir(d);
    if (this.ownsCleanup) await this.cleanup.run();
  }
}

/**
 * Starts one etcd server and waits until it is healthy. On loopback with
 * automatically chosen ports, a lost race for a port is retried with new ones.
 */
export async function startEtcd(opts: EtcdOptions = {}): Promise<EtcdServer> {
  const autoPorts = !opts.netns && opts.clientPort === undefined && opts.peerPort === undefined;
  for (let attempt = 1; ; attempt++) {
    const server = await EtcdServer.create(opts);
    try {
      await server.start();
      return server;
    } catch (e) {
      const conflict = server.portConflict();
      await server.dispose();
      if (!(autoPorts && conflict && attempt < 5)) throw e;
    }
  }
}

export interface EtcdClusterMember {
  /** Address of this member; default 127.0.0.1. */
  host?: string;
  netns?: Netns;
}

export interface EtcdClusterOptions {
  /** Members; default three on loopback. */
  members?: EtcdClusterMember[];
  cleanup?: Cleanup;
  giveUpMs?: number;
  extraArgs?: string[];
}

/** A multi-member etcd cluster (for fault tests: stop or kill single members). */
export class EtcdCluster {
  constructor(readonly members: EtcdServer[]) {}

  get endpoints(): string[] {
    return this.members.flatMap((m) => m.endpoints);
  }

  member(i: number): EtcdServer {
    const m = this.members[i];
    if (!m) throw new TopologyError('E_INTERNAL', `no etcd member ${i} (cluster of ${this.members.length})`);
    return m;
  }

  async stop(): Promise<void> {
    await Promise.all(this.members.map((m) => m.stop()));
  }

  async dispose(): Promise<void> {
    await Promise.all(this.members.map((m) => m.dispose()));
  }
}

/** Starts all members together (each waits for quorum) and returns when every one is healthy. */
export async function startEtcdCluster(opts: EtcdClusterOptions = {}): Promise<EtcdCluster> {
  const specs = opts.members ?? [{}, {}, {}];
  const cleanup = opts.cleanup ?? new Cleanup('etcd cluster');
  const created: EtcdServer[] = [];
  // Ports must be known before any member starts: each member's flags list all peers.
  const plan: Array<{ name: string; host: string; client: number; peer: number; netns?: Netns }> = [];
  for (const [i, s] of specs.entries()) {
    const host = s.host ?? '127.0.0.1';
    const name = `m${i + 1}`;
    const sameNsPeers = specs.filter((o) => o.netns === s.netns && (o.host ?? '127.0.0.1') === host).length;
    const useStd = s.netns !== undefined && sameNsPeers === 1;
    const client = useStd ? 2379 : await freePort(host);
    let peer = useStd ? 2380 : await freePort(host);
    while (peer === client) peer = await freePort(host);
    plan.push({ name, host, client, peer, ...(s.netns ? { netns: s.netns } : {}) });
  }
  const initialCluster = plan.map((p) => `${p.name}=http://${p.host}:${p.peer}`).join(',');
  const token = `rudder-${process.pid}-${Date.now().toString(36)}`;
  try {
    for (const p of plan) {
      const m = await EtcdServer.create({
        name: p.name,
        host: p.host,
        clientPort: p.client,
        peerPort: p.peer,
        initialCluster,
        clusterToken: token,
        cleanup,
        noWait: true,
        ...(p.netns ? { netns: p.netns } : {}),
        ...(opts.giveUpMs ? { giveUpMs: opts.giveUpMs } : {}),
        ...(opts.extraArgs ? { extraArgs: opts.extraArgs } : {}),
      });
      created.push(m);
      await m.start();
    }
    await Promise.all(created.map((m) => m.waitHealthy()));
    return new EtcdCluster(created);
  } catch (e) {
    await Promise.all(created.map((m) => m.dispose()));
    throw e;
  }
}
